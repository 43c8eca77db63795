//! The connection side of `serve`: one task per connection on hyper's HTTP/1 server, with a
//! deadline for each request's headers and a cap on open connections. `axum::serve` has
//! neither: idle or header-trickling clients stayed connected for ever, and a thousand of them
//! used up the file descriptors, after which no request was served at all.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;

/// How long a client has to send a request's headers, counted from when the connection is
/// waiting for them (just accepted, or idle between keep-alive requests). A slow body is
/// bounded by the request timeout instead.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a write to a client may make no progress before the connection is dropped. A
/// client that sends requests and never reads the answers (pipelined, a few hundred of them
/// fill the socket's buffers) held its connection — and a slot of the cap — for ever, and
/// kept `serve` from stopping on SIGTERM (review of stop 33).
pub const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a stopping `serve` waits for the requests in progress before it drops the
/// connections left: the request timeout and a write stall, with room to spare.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(180);

/// What hyper may buffer of one request's head (hyper reads up to about twice this before it
/// answers 431): a bearer-token API needs a few KiB of headers, and hyper's default (about
/// 400 KiB) let a thousand unauthenticated connections that never finished their headers
/// hold 400 MiB.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// File descriptors kept back from connections: database connections, components' outbound
/// requests, Python workers' pipes, the log.
const RESERVED_FDS: u64 = 512;

/// Raises the soft limit on open files to the hard one (a service manager's default soft
/// limit is often 1,024) and returns how many connections `serve` keeps open at most: what
/// the limit leaves after [`RESERVED_FDS`], between 64 and 10,000.
pub fn connection_limit() -> usize {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit read or write a valid rlimit; failures leave the limit as
    // it was, which is then what the cap is computed from.
    let soft = unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            1024
        } else {
            if limit.rlim_cur < limit.rlim_max {
                let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    limit.rlim_cur = limit.rlim_max;
                }
            }
            limit.rlim_cur
        }
    };
    usize::try_from(soft.saturating_sub(RESERVED_FDS).clamp(64, 10_000)).unwrap_or(10_000)
}

/// Serves `app` on `listener` until `shutdown` completes, then stops accepting and lets the
/// requests in progress finish. At most `max_connections` are open at once; when all are
/// taken, new clients wait in the listen backlog until one closes.
pub async fn serve<L>(
    mut listener: L,
    app: Router,
    max_connections: usize,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: axum::serve::Listener,
{
    let permits = Arc::new(tokio::sync::Semaphore::new(max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            biased;
            () = &mut shutdown => break,
            // The semaphore is never closed, so this never fails.
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (io, _addr) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            conn = listener.accept() => conn,
        };
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .max_buf_size(MAX_HEAD_BYTES)
            .max_headers(100);
        let io = TokioIo::new(WriteStall::new(io, WRITE_STALL_TIMEOUT));
        let conn = builder.serve_connection(io, TowerToHyperService::new(app.clone()));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("connection ended: {e}");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await.is_err() {
        tracing::warn!(
            "connections still open {} s after the stop was asked for were dropped",
            SHUTDOWN_GRACE.as_secs()
        );
    }
    Ok(())
}

/// A connection whose writes fail once one has made no progress for its timeout; reads pass
/// through (hyper bounds them: the header-read deadline, and the request timeout for bodies).
pub struct WriteStall<IO> {
    io: IO,
    timeout: Duration,
    /// Armed when a write first finds the client not reading; disarmed by any progress.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<IO> WriteStall<IO> {
    /// `io`, whose writes may stall for at most `timeout`.
    pub fn new(io: IO, timeout: Duration) -> Self {
        Self { io, timeout, stalled: None }
    }

    /// After the inner write answered `polled`: disarm on progress, else fail once the stall
    /// has lasted the timeout.
    fn watch<T>(&mut self, cx: &mut Context<'_>, polled: Poll<std::io::Result<T>>) -> Poll<std::io::Result<T>> {
        if polled.is_ready() {
            self.stalled = None;
            return polled;
        }
        let timeout = self.timeout;
        let sleep = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the client read nothing for {} s", timeout.as_secs()),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for WriteStall<IO> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for WriteStall<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        self.watch(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_flush(cx);
        self.watch(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_shutdown(cx);
        self.watch(cx, polled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// Regression (review of stop 33): a client that stopped reading held its connection for
    /// ever. A write that makes no progress for the timeout now fails, and one that does
    /// progress — however slowly — never does.
    #[tokio::test(start_paused = true)]
    async fn a_write_the_client_never_reads_fails_after_the_stall_timeout() {
        // `_client` stays open and never reads: a closed one would fail the write at once.
        let (server, _client) = tokio::io::duplex(1024);
        let mut guarded = WriteStall::new(server, Duration::from_secs(30));
        let started = tokio::time::Instant::now();
        let err = guarded.write_all(&[0u8; 64 * 1024]).await.expect_err("the client reads nothing");
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(30));

        // A reader that takes 10 s per kilobyte keeps the write alive: each bit of progress
        // starts the count again.
        let (server, mut reader) = tokio::io::duplex(1024);
        let mut guarded = WriteStall::new(server, Duration::from_secs(30));
        let slow = tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let mut total = 0;
            while total < 8 * 1024 {
                tokio::time::sleep(Duration::from_secs(10)).await;
                total += tokio::io::AsyncReadExt::read(&mut reader, &mut buf).await.expect("read");
            }
        });
        guarded.write_all(&[0u8; 8 * 1024]).await.expect("progress, slow but steady");
        slow.await.expect("reader");
    }
}
