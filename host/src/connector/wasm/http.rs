//! Outbound HTTP for components: denied by default, allowed only to the CA account's hosts,
//! with capped timeouts and a capped response body (the wasi-http send hook).

use std::time::Duration;

use http_body_util::BodyExt;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

/// Longest a connection may take to establish, whatever the guest asks.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the first byte and between bytes.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Requests one call may have open at once; more wait for one to finish. Each holds a socket:
/// without a cap, one call that opened thirty thousand to a host that never answers used up
/// `serve`'s file descriptors, and the API stopped accepting connections.
pub const MAX_REQUESTS_IN_FLIGHT: usize = 16;

/// One allowed-host rule: `https://host:port`, `host`, or `*.example.com`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    scheme: Option<String>,
    host: String,
    port: Option<u16>,
}

impl AllowedHost {
    /// Parses a rule; `None` when it is not one.
    pub fn parse(rule: &str) -> Option<Self> {
        let rule = rule.trim().to_ascii_lowercase();
        let (scheme, rest) = match rule.split_once("://") {
            Some((s, r)) if s == "http" || s == "https" => (Some(s.to_owned()), r.to_owned()),
            Some(_) => return None,
            None => (None, rule.clone()),
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.contains(']') || h.ends_with(']') => (h.to_owned(), Some(p.parse().ok()?)),
            _ => (rest.to_owned(), None),
        };
        if host.is_empty() || host.contains('/') {
            return None;
        }
        Some(Self { scheme, host, port })
    }

    /// Whether a request to `scheme://host:port` matches.
    pub fn matches(&self, scheme: &str, host: &str, port: u16) -> bool {
        let host = host.to_ascii_lowercase();
        let host_ok = match self.host.strip_prefix("*.") {
            Some(suffix) => host.ends_with(&format!(".{suffix}")),
            None => self.host == host,
        };
        host_ok && self.scheme.as_deref().is_none_or(|s| s == scheme) && self.port.is_none_or(|p| p == port)
    }
}

/// The send hook of one call.
pub struct HttpPolicy {
    /// Rules of the CA account.
    pub allowed: Vec<AllowedHost>,
    /// `connector NAME`, for logs.
    pub label: String,
    /// Cap on one response body.
    pub body_limit: u64,
    /// TLS trust of the account (system roots + extra CA PEMs).
    pub tls: std::sync::Arc<rustls::ClientConfig>,
    /// Set to the host whose response body ran past `body_limit`, so the call can report
    /// that instead of the stream error the guest saw (which SDKs read as "unreachable").
    pub body_cap_hit: std::sync::Arc<std::sync::OnceLock<String>>,
    /// This call's [`MAX_REQUESTS_IN_FLIGHT`] permits; a request holds one until its
    /// connection closes.
    pub in_flight: std::sync::Arc<tokio::sync::Semaphore>,
}

impl WasiHttpHooks for HttpPolicy {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn std::future::Future<Output = Result<(), HttpError>> + Send>,
    ) -> Box<
        dyn std::future::Future<
                Output = Result<
                    (http::Response<WasiBody>, Box<dyn std::future::Future<Output = Result<(), HttpError>> + Send>),
                    HttpError,
                >,
            > + Send,
    > {
        drop(fut);
        let uri = request.uri().clone();
        let scheme = uri.scheme_str().unwrap_or("https").to_owned();
        let host = uri.host().unwrap_or_default().to_owned();
        let port = uri.port_u16().unwrap_or(if scheme == "http" { 80 } else { 443 });
        if !self.allowed.iter().any(|a| a.matches(&scheme, &host, port)) {
            tracing::warn!(connector = %self.label, %scheme, %host, port, "outbound request denied: host not in the CA account's allowed hosts");
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        let cap = |asked: Option<Duration>, max: Duration| Some(asked.map_or(max, |a| a.min(max)));
        let opts = options.unwrap_or_default();
        let options = RequestOptions {
            connect_timeout: cap(opts.connect_timeout, CONNECT_TIMEOUT),
            first_byte_timeout: cap(opts.first_byte_timeout, READ_TIMEOUT),
            between_bytes_timeout: cap(opts.between_bytes_timeout, READ_TIMEOUT),
        };
        let limit = self.body_limit;
        let tls = self.tls.clone();
        let hit = self.body_cap_hit.clone();
        let label = self.label.clone();
        let in_flight = self.in_flight.clone();
        Box::new(async move {
            // The semaphore lives as long as the call's state and is never closed.
            let permit =
                in_flight.acquire_owned().await.map_err(|_| HttpError::InternalError(Some("call ended".into())))?;
            let (response, io) = super::sender::send(request, options, tls).await?;
            let io: super::sender::IoFuture = Box::new(async move {
                let done = Box::into_pin(io).await;
                drop(permit);
                done
            });
            let response = response.map(|body| {
                http_body_util::Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX))
                    .map_err(move |e| {
                        if e.is::<http_body_util::LengthLimitError>() {
                            tracing::warn!(connector = %label, %host, limit, "response body exceeded the CA account's http_body_mib");
                            let _ = hit.set(host.clone());
                            return HttpError::HttpResponseBodySize(Some(limit));
                        }
                        // An error of the body itself (a timeout, a reset) passes through.
                        match e.downcast::<HttpError>() {
                            Ok(inner) => *inner,
                            Err(other) => HttpError::InternalError(Some(other.to_string())),
                        }
                    })
                    .boxed_unsync()
            });
            Ok((response, io))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_host_rules() {
        let exact = AllowedHost::parse("https://ca.example.com:8443").expect("rule");
        assert!(exact.matches("https", "ca.example.com", 8443));
        assert!(!exact.matches("http", "ca.example.com", 8443));
        assert!(!exact.matches("https", "ca.example.com", 443));
        let wild = AllowedHost::parse("*.example.com").expect("rule");
        assert!(wild.matches("https", "api.eu.example.com", 443));
        assert!(!wild.matches("https", "example.com", 443));
        assert!(!wild.matches("https", "evil-example.com", 443));
        assert!(AllowedHost::parse("ftp://x").is_none());
        assert!(AllowedHost::parse("127.0.0.1:8888").expect("rule").matches("http", "127.0.0.1", 8888));
    }
}
