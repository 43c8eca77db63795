//! HTTPS for `certhost serve`: a listener that accepts TCP connections and completes TLS
//! handshakes (rustls) in their own tasks, so a slow or broken client handshake never holds
//! up the next connection. Handshake failures are logged and dropped. At most a quarter of
//! the server's connection cap ([`MIN_HANDSHAKES`] at least) are between `accept` and the
//! server at once, so when the server's connections are all taken new clients wait in the
//! kernel's backlog, as on plain HTTP, rather than each holding a file descriptor here. The certificate and key can be read
//! again while serving ([`TlsReloader`]): a certificate host renews its own certificate too.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// A client gets this long to finish its handshake, and a finished one this long again to be
/// taken by the server.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The least number of connections in their handshake or handed over and not yet taken by the
/// server: a quarter of the server's connection cap, and at least this. Without a bound, a
/// flood of clients that finished their handshakes while the server was at its cap held a
/// file descriptor each until the process had none left; with a small one, a few hundred idle
/// connections kept every other client waiting (reviews of stop 33).
pub const MIN_HANDSHAKES: usize = 64;

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
    /// A reload found a certificate no client accepts now, while the one in use still is
    /// valid: clients would all fail until the next reload (day-two walkthrough of stop 49:
    /// an expired certificate was put in service with an INFO line).
    #[error("{path}: the certificate {why}; the one in use (valid until {in_use_until}) stays")]
    NotValidNow {
        /// The certificate file.
        path: PathBuf,
        /// `expired at …` or `is not valid until …`.
        why: String,
        /// The certificate in use's notAfter (RFC 3339).
        in_use_until: String,
    },
}

/// A TLS certificate's validity, Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// notBefore.
    pub not_before: i64,
    /// notAfter.
    pub not_after: i64,
}

/// How far ahead a renewed certificate's notBefore may be and still be taken at a reload: a CA
/// whose clock runs a little ahead, with no backdating, issues certificates valid seconds from
/// now, and one refused would stay out of service until the next SIGHUP (review of stop 49).
pub const NOT_BEFORE_SKEW: i64 = 300;

impl Validity {
    /// Why a client refuses the certificate at `now`, or `None` when it is valid then (or
    /// within [`NOT_BEFORE_SKEW`] of its notBefore).
    pub fn refused_at(&self, now: i64) -> Option<String> {
        if now > self.not_after {
            Some(format!("expired at {}", crate::view::rfc3339(self.not_after)))
        } else if now + NOT_BEFORE_SKEW < self.not_before {
            Some(format!("is not valid until {}", crate::view::rfc3339(self.not_before)))
        } else {
            None
        }
    }
}

/// A TCP listener that hands out finished TLS streams.
pub struct TlsListener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    reloader: TlsReloader,
}

/// Reads a listener's certificate and key files again; new handshakes use them, connections
/// already open keep theirs.
#[derive(Clone)]
pub struct TlsReloader {
    files: Arc<(PathBuf, PathBuf)>,
    acceptor: Arc<std::sync::RwLock<(TlsAcceptor, Validity)>>,
}

impl TlsReloader {
    /// Reads the files again and returns the new certificate's validity; on an error the
    /// certificate in use stays. A certificate expired or not yet valid is refused while the
    /// one in use is valid (taken, when that one is not valid either: it cannot be worse).
    pub fn reload(&self) -> Result<Validity, TlsError> {
        let (acceptor, validity) = acceptor(&self.files.0, &self.files.1)?;
        let now = crate::clock::unix_now();
        let in_use = self.validity();
        if let Some(why) = validity.refused_at(now)
            && in_use.refused_at(now).is_none()
        {
            return Err(TlsError::NotValidNow {
                path: self.files.0.clone(),
                why,
                in_use_until: crate::view::rfc3339(in_use.not_after),
            });
        }
        *self.acceptor.write().unwrap_or_else(|p| p.into_inner()) = (acceptor, validity);
        crate::metrics::tls_not_after(validity.not_after);
        Ok(validity)
    }

    /// The validity of the certificate in use.
    pub fn validity(&self) -> Validity {
        self.acceptor.read().unwrap_or_else(|p| p.into_inner()).1
    }

    fn current(&self) -> TlsAcceptor {
        self.acceptor.read().unwrap_or_else(|p| p.into_inner()).0.clone()
    }
}

impl TlsListener {
    /// Serves TLS on `listener` with the certificate chain and private key in the PEM files.
    pub fn new(listener: TcpListener, cert_pem: &Path, key_pem: &Path) -> Result<Self, TlsError> {
        let (first, validity) = acceptor(cert_pem, key_pem)?;
        crate::metrics::tls_not_after(validity.not_after);
        let reloader = TlsReloader {
            files: Arc::new((cert_pem.to_owned(), key_pem.to_owned())),
            acceptor: Arc::new(std::sync::RwLock::new((first, validity))),
        };
        let local = listener.local_addr().map_err(|e| TlsError::Config(e.to_string()))?;
        let (tx, rx) = mpsc::channel(64);
        let handshakes = (super::listen::connection_limit() / 4).max(MIN_HANDSHAKES);
        tokio::spawn(accept_loop(listener, reloader.clone(), tx, handshakes));
        Ok(Self { rx, local, reloader })
    }

    /// What reads this listener's certificate and key again (`serve` does on SIGHUP).
    pub fn reloader(&self) -> TlsReloader {
        self.reloader.clone()
    }
}

/// A TLS acceptor for the certificate chain and private key in the PEM files, and the leaf's
/// validity.
fn acceptor(cert_pem: &Path, key_pem: &Path) -> Result<(TlsAcceptor, Validity), TlsError> {
    let file_err = |path: &Path, reason: String| TlsError::File { path: path.to_owned(), reason };
    let cert_text = std::fs::read(cert_pem).map_err(|e| file_err(cert_pem, e.to_string()))?;
    let certs: Vec<rustls_pki_types::CertificateDer<'static>> = pem::parse_many(&cert_text)
        .map_err(|e| file_err(cert_pem, e.to_string()))?
        .into_iter()
        .filter(|p| p.tag() == "CERTIFICATE")
        .map(|p| rustls_pki_types::CertificateDer::from(p.into_contents()))
        .collect();
    let Some(leaf) = certs.first() else {
        return Err(file_err(cert_pem, "no CERTIFICATE block".into()));
    };
    let validity = {
        use x509_parser::prelude::FromDer;
        let (_, parsed) = x509_parser::certificate::X509Certificate::from_der(leaf)
            .map_err(|e| file_err(cert_pem, format!("its first certificate cannot be read: {e}")))?;
        let (not_before, not_after) = crate::cert::validity(&parsed);
        Validity { not_before, not_after }
    };
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
    Ok((TlsAcceptor::from(Arc::new(config)), validity))
}

async fn accept_loop(
    listener: TcpListener,
    reloader: TlsReloader,
    tx: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
    max_handshakes: usize,
) {
    let handshakes = Arc::new(tokio::sync::Semaphore::new(max_handshakes));
    loop {
        // Taken before accepting: at the bound, clients wait in the kernel's backlog.
        let Ok(permit) = handshakes.clone().acquire_owned().await else { return };
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
        let acceptor = reloader.current();
        let tx = tx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => {
                    if tokio::time::timeout(HANDSHAKE_TIMEOUT, tx.send((tls, peer))).await.is_err() {
                        tracing::debug!(%peer, "dropped a TLS connection the server had no room for");
                    }
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
