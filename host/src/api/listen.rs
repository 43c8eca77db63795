//! The connection side of `serve`: one task per connection on hyper's HTTP/1 server, with a
//! deadline for each request's headers and a cap on open connections. `axum::serve` has
//! neither: idle or header-trickling clients stayed connected for ever, and a thousand of them
//! used up the file descriptors, after which no request was served at all.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;

/// How long a client has to send a request's headers, counted from when the connection is
/// waiting for them (just accepted, or idle between keep-alive requests). A slow body is
/// bounded by the request timeout instead.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(20);

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
        builder.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
        let conn = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(app.clone()));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("connection ended: {e}");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
