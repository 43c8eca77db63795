//! certhost's own sender for components' outbound HTTP, on hyper + rustls: the stock
//! wasi-http sender trusts only the public web PKI, but CA APIs often sit behind a private
//! CA. Trust = the system's roots plus the CA account's `extra_ca_pems`.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody};

/// The TLS client configuration of one CA account.
pub fn tls_config(extra_ca_pems: &[impl AsRef<Path>]) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert);
    }
    for path in extra_ca_pems {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| format!("extra CA {}: {e}", path.display()))?;
        let ders = crate::cert::pem_certificates(&text).map_err(|e| format!("extra CA {}: {e}", path.display()))?;
        if ders.is_empty() {
            return Err(format!("extra CA {} holds no PEM certificate", path.display()));
        }
        for der in ders {
            roots
                .add(rustls_pki_types::CertificateDer::from(der))
                .map_err(|e| format!("extra CA {}: {e}", path.display()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The connection driver future handed back to wasi-http.
pub type IoFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;

/// Sends one request to one of `addrs` (the request host's addresses, resolved and checked by
/// the caller) with the given timeouts and TLS trust.
pub async fn send(
    mut request: http::Request<WasiBody>,
    addrs: &[std::net::SocketAddr],
    options: RequestOptions,
    tls: Arc<rustls::ClientConfig>,
) -> Result<(http::Response<WasiBody>, IoFuture), Error> {
    let uri = request.uri().clone();
    let use_tls = uri.scheme_str() == Some("https");
    let host = uri.host().ok_or(Error::HttpRequestUriInvalid)?.trim_matches(|c| c == '[' || c == ']').to_owned();
    let connect = options.connect_timeout.unwrap_or(Duration::from_secs(10));
    let first_byte = options.first_byte_timeout.unwrap_or(Duration::from_secs(30));
    let between = options.between_bytes_timeout.unwrap_or(Duration::from_secs(30));
    let tcp = match tokio::time::timeout(connect, TcpStream::connect(addrs)).await {
        Ok(s) => s.map_err(Error::Connect)?,
        Err(_) => return Err(Error::ConnectionTimeout),
    };
    // Headers and body leave in separate writes: with Nagle's algorithm the second waits for
    // the peer's delayed ACK (40 ms on Linux) — a quarter of a second per ACME issuance.
    tcp.set_nodelay(true).map_err(Error::Connect)?;
    *request.uri_mut() = http::Uri::builder()
        .path_and_query(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
        .build()
        .map_err(|_| Error::HttpRequestUriInvalid)?;
    let (response, io): (http::Response<hyper::body::Incoming>, IoFuture) = if use_tls {
        let name = rustls_pki_types::ServerName::try_from(host.clone()).map_err(|_| Error::HttpRequestUriInvalid)?;
        let stream = match tokio::time::timeout(connect, tokio_rustls::TlsConnector::from(tls).connect(name, tcp)).await
        {
            Ok(s) => s.map_err(Error::Tls)?,
            Err(_) => return Err(Error::ConnectionTimeout),
        };
        exchange(TokioIo::new(stream), request, connect, first_byte).await?
    } else {
        exchange(TokioIo::new(tcp), request, connect, first_byte).await?
    };
    let response = response
        .map(|incoming| TimedBody { incoming, between, sleep: Box::pin(tokio::time::sleep(between)) }.boxed_unsync());
    Ok((response, io))
}

async fn exchange<S>(
    io: TokioIo<S>,
    request: http::Request<WasiBody>,
    connect: Duration,
    first_byte: Duration,
) -> Result<(http::Response<hyper::body::Incoming>, IoFuture), Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = match tokio::time::timeout(connect, hyper::client::conn::http1::handshake(io)).await {
        Ok(r) => r.map_err(Error::Hyper)?,
        Err(_) => return Err(Error::ConnectionTimeout),
    };
    let driver: IoFuture = Box::new(async move { conn.await.map_err(Error::Hyper) });
    // The connection must be driven while the request is sent: spawn the driver now and hand
    // wasi-http a future that waits for it.
    let handle = tokio::spawn(Box::into_pin(driver));
    let response = match tokio::time::timeout(first_byte, sender.send_request(request)).await {
        Ok(r) => r.map_err(Error::Hyper)?,
        Err(_) => return Err(Error::ConnectionReadTimeout),
    };
    let io: IoFuture = Box::new(async move { handle.await.map_err(|_| Error::ConnectionTerminated)? });
    Ok((response, io))
}

/// A response body that fails when no frame arrives within `between`.
struct TimedBody {
    incoming: hyper::body::Incoming,
    between: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl http_body::Body for TimedBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Error>>> {
        match Pin::new(&mut self.incoming).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let deadline = tokio::time::Instant::now() + self.between;
                self.sleep.as_mut().reset(deadline);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Error::Hyper(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match self.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Error::HttpResponseTimeout))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}
