//! HTTPS for `certhost serve`: a listener that accepts TCP connections and completes TLS
//! handshakes (rustls) in their own tasks, so a slow or broken client handshake never holds
//! up the next connection. Handshake failures are logged and dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// A client gets this long to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file cannot be read or holds nothing usable.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// rustls refused the certificate and key.
    #[error("the TLS certificate and key do not work together: {0}")]
    Config(String),
}

/// A TCP listener that hands out finished TLS streams.
pub struct TlsListener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Serves TLS on `listener` with the certificate chain and private key in the PEM files.
    pub fn new(listener: TcpListener, cert_pem: &Path, key_pem: &Path) -> Result<Self, TlsError> {
        let file_err = |path: &Path, reason: String| TlsError::File { path: path.to_owned(), reason };
        let cert_text = std::fs::read(cert_pem).map_err(|e| file_err(cert_pem, e.to_string()))?;
        let certs: Vec<rustls_pki_types::CertificateDer<'static>> = pem::parse_many(&cert_text)
            .map_err(|e| file_err(cert_pem, e.to_string()))?
            .into_iter()
            .filter(|p| p.tag() == "CERTIFICATE")
            .map(|p| rustls_pki_types::CertificateDer::from(p.into_contents()))
            .collect();
        if certs.is_empty() {
            return Err(file_err(cert_pem, "no CERTIFICATE block".into()));
        }
        let key_text = std::fs::read(key_pem).map_err(|e| file_err(key_pem, e.to_string()))?;
        let key = crate::key::PrivateKey::from_pem(&String::from_utf8_lossy(&key_text))
            .map_err(|e| file_err(key_pem, e.to_string()))?;
        let key_der = rustls_pki_types::PrivateKeyDer::Pkcs8(key.pkcs8_der().to_vec().into());
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certs, key_der)
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let local = listener.local_addr().map_err(|e| TlsError::Config(e.to_string()))?;
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(accept_loop(listener, acceptor, tx));
        Ok(Self { rx, local })
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    tx: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: wait a moment rather than spin.
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if tx.is_closed() {
            return;
        }
        let acceptor = acceptor.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => {
                    let _ = tx.send((tls, peer)).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(conn) => conn,
            // The accept loop only ends when this listener is gone; never reached while we
            // are borrowed, so park forever (graceful shutdown stops the server instead).
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
