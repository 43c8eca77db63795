//! Outbound HTTP for components: denied by default, allowed only to the CA account's hosts,
//! with capped timeouts and a capped response body (the wasi-http send hook).

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use http_body_util::BodyExt;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

/// Longest a connection may take to establish, whatever the guest asks.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the first byte and between bytes when the guest sets none and the call's
/// deadline is shorter; a longer deadline raises it ([`HttpPolicy::read_cap`]).
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
    port: PortRule,
}

/// The ports a rule allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortRule {
    /// No port written: the request's scheme's default (443 for https, 80 for http), as a
    /// URL without a port means. `https://ca.internal` allowed `https://ca.internal:8443`, an
    /// admin API, and a bare `10.0.0.5` every port of that machine.
    Default,
    /// `host:*`: any port.
    Any,
    /// This port.
    Exact(u16),
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
        let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
            // An IPv6 address: `[::1]` or `[::1]:8443`; the brackets are not part of the host.
            let (addr, after) = bracketed.split_once(']')?;
            addr.parse::<std::net::Ipv6Addr>().ok()?;
            let port = match after {
                "" => PortRule::Default,
                ":*" => PortRule::Any,
                p => PortRule::Exact(p.strip_prefix(':')?.parse().ok()?),
            };
            (addr.to_owned(), port)
        } else if rest.matches(':').count() > 1 {
            // An unbracketed IPv6 address cannot tell its port from its last group.
            return None;
        } else {
            match rest.split_once(':') {
                Some((h, "*")) => (h.to_owned(), PortRule::Any),
                Some((h, p)) => (h.to_owned(), PortRule::Exact(p.parse().ok()?)),
                None => (rest.to_owned(), PortRule::Default),
            }
        };
        if host.is_empty() || host.contains('/') || host.contains('@') {
            return None;
        }
        Some(Self { scheme, host, port })
    }

    /// Whether a request to `scheme://host:port` matches (`host` as a URI gives it: an IPv6
    /// address in brackets).
    pub fn matches(&self, scheme: &str, host: &str, port: u16) -> bool {
        let host_ok = self.matches_host(scheme, host);
        let port_ok = match self.port {
            PortRule::Default => port == default_port(scheme),
            PortRule::Any => true,
            PortRule::Exact(p) => p == port,
        };
        host_ok && port_ok
    }

    /// The scheme this rule names when it names this host under another one.
    fn other_scheme_for(&self, scheme: &str, host: &str) -> Option<String> {
        let named = self.scheme.as_deref().filter(|s| *s != scheme)?;
        let any_scheme = Self { scheme: None, host: self.host.clone(), port: self.port };
        any_scheme.matches_host(scheme, host).then(|| named.to_owned())
    }

    /// Whether the rule names this scheme and host, whatever the port.
    fn matches_host(&self, scheme: &str, host: &str) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        let host_ok = match self.host.strip_prefix("*.") {
            Some(suffix) => host.ends_with(&format!(".{suffix}")),
            None => self.host == host,
        };
        host_ok && self.scheme.as_deref().is_none_or(|s| s == scheme)
    }
}

/// The port a URL of `scheme` means when it names none.
fn default_port(scheme: &str) -> u16 {
    if scheme == "http" { 80 } else { 443 }
}

/// Why the host stopped one of a call's requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The response body from this host ran past the account's `http_body_mib`.
    BodyCap {
        /// The host.
        host: String,
    },
    /// The URL carried credentials (`user:password@host`), which would be sent as part of the
    /// Host header (wasi-http builds it from the whole authority) and never as credentials.
    Credentials {
        /// The host.
        host: String,
    },
    /// A host the account allows, but only under another scheme (`https://ca:8443` allowed,
    /// `http://ca:8443` asked for; author review of stop 38).
    Scheme {
        /// The host.
        host: String,
        /// The scheme asked for.
        scheme: String,
        /// The scheme the rule names.
        allowed: String,
    },
    /// A host the account allows, at a port none of its rules allows.
    Port {
        /// The host.
        host: String,
        /// The port asked for.
        port: u16,
    },
    /// The host's TLS certificate failed verification against the account's trust.
    UntrustedCertificate {
        /// The host.
        host: String,
        /// rustls' reason (`UnknownIssuer`, `Expired`, `NotValidForName`, ...).
        reason: String,
    },
    /// An allowed host name resolved only to addresses a name may not lead to.
    Address {
        /// The name.
        host: String,
        /// The first forbidden address it resolved to.
        address: IpAddr,
    },
    /// A request that may change something at the CA (not GET, HEAD or OPTIONS) was sent and
    /// its answer did not come in time: the CA may have acted on it, so the call is not
    /// "unreachable", which fails over to the next CA and asks for a second certificate
    /// (author review of stop 40: a POST cut at 30 s, whatever the account's timeout,
    /// issued at both CAs).
    NoAnswer {
        /// The method.
        method: String,
        /// The host.
        host: String,
    },
}

/// Whether one call sent a request the CA may act on (any but GET, HEAD and OPTIONS). A
/// call that runs out of time before it did ordered nothing at the CA, and fails instead of
/// being held for an operator (walkthrough of stop 46). Closed when the call times out, so no
/// such request leaves after the call was judged to have sent none.
#[derive(Debug, Default)]
pub struct ChangeGate(std::sync::atomic::AtomicU8);

impl ChangeGate {
    const OPEN: u8 = 0;
    const SENT: u8 = 1;
    const CLOSED: u8 = 2;

    /// Records a request the CA may act on, about to be sent; false once the call is closed.
    pub fn send(&self) -> bool {
        use std::sync::atomic::Ordering::SeqCst;
        match self.0.compare_exchange(Self::OPEN, Self::SENT, SeqCst, SeqCst) {
            Ok(_) => true,
            Err(state) => state == Self::SENT,
        }
    }

    /// Closes the call to such requests; true when it had sent none.
    pub fn close(&self) -> bool {
        use std::sync::atomic::Ordering::SeqCst;
        self.0.compare_exchange(Self::OPEN, Self::CLOSED, SeqCst, SeqCst).is_ok()
    }
}

/// The send hook of one call.
pub struct HttpPolicy {
    /// Rules of the CA account.
    pub allowed: Vec<AllowedHost>,
    /// Cap on one response body.
    pub body_limit: u64,
    /// Cap on the waits for a response's first byte and between its bytes: the call's
    /// deadline, at least [`READ_TIMEOUT`]. A CA slower than 30 s under an account given
    /// `timeout_seconds = 60` was cut at 30 s and failed over.
    pub read_cap: Duration,
    /// TLS trust of the account (system roots + extra CA PEMs).
    pub tls: std::sync::Arc<rustls::ClientConfig>,
    /// Set when the host stopped a request for a reason of its own (a body past `body_limit`,
    /// a name leading to a forbidden address), so the call can report that instead of the
    /// error code the guest saw (which SDKs read as "unreachable").
    pub refused: std::sync::Arc<std::sync::OnceLock<Refusal>>,
    /// Set when a request that may change something at the CA went unanswered
    /// ([`Refusal::NoAnswer`]): kept apart from `refused`, whose first refusal wins, since
    /// it decides whether the call may fail over at all.
    pub unanswered: std::sync::Arc<std::sync::OnceLock<Refusal>>,
    /// Whether the call sent a request other than GET, HEAD or OPTIONS — one the CA may act
    /// on ([`ChangeGate`]).
    pub changes: std::sync::Arc<ChangeGate>,
    /// This call's [`MAX_REQUESTS_IN_FLIGHT`] permits; a request holds one until its
    /// connection closes.
    pub in_flight: std::sync::Arc<tokio::sync::Semaphore>,
    /// Refusals logged in this call so far ([`MAX_REFUSALS_LOGGED`]).
    pub refusals_logged: u32,
    /// This call's sensitive values: a guest chooses the host names it asks for, and can put
    /// a secret in one (`{secret}.evil.test`) to have the host's log carry it.
    pub sensitive: std::sync::Arc<[zeroize::Zeroizing<String>]>,
}

/// How many refused requests one call logs. A guest looping on a denied URL (a host name of
/// up to 64 KiB each time) wrote a warning per attempt, past the per-call cap on its own log.
pub const MAX_REFUSALS_LOGGED: u32 = 10;

/// A host name a guest asked for, as the log may show it: at most 253 characters (a DNS
/// name's most), every sensitive value of the call replaced.
fn shown_host(host: &str, sensitive: &[zeroize::Zeroizing<String>]) -> String {
    let values = || sensitive.iter().map(|v| v.as_str());
    // Redacted whole, then cut: a value straddling the cut would be shown in part.
    let redacted = if crate::connector::redact::might_hold_any(values(), host) {
        crate::connector::redact::Redactor::new(values()).redact(host)
    } else {
        host.to_owned()
    };
    redacted.chars().take(253).collect()
}

impl HttpPolicy {
    /// Whether to log one more refusal in this call; says once that later ones go unlogged.
    fn log_refusal(&mut self) -> bool {
        self.refusals_logged = self.refusals_logged.saturating_add(1);
        if self.refusals_logged == MAX_REFUSALS_LOGGED + 1 {
            tracing::warn!("the connector's further refused requests in this call are not logged");
        }
        self.refusals_logged <= MAX_REFUSALS_LOGGED
    }
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
        let port = uri.port_u16().unwrap_or_else(|| default_port(&scheme));
        let shown = shown_host(&host, &self.sensitive);
        if !self.allowed.iter().any(|a| a.matches(&scheme, &host, port)) {
            // Allowed but for the port: say so (a rule without a port meant every port before
            // stop 30, and a CA on :8443 stopped working with nothing else changed).
            if self.allowed.iter().any(|a| a.matches_host(&scheme, &host)) {
                let _ = self.refused.set(Refusal::Port { host: shown.clone(), port });
            } else if let Some(allowed) = self.allowed.iter().find_map(|a| a.other_scheme_for(&scheme, &host)) {
                // The guest chose the scheme as it chose the host: shown the same way.
                let scheme = shown_host(&scheme, &self.sensitive);
                let _ = self.refused.set(Refusal::Scheme { host: shown.clone(), scheme, allowed });
            }
            if self.log_refusal() {
                tracing::warn!(%scheme, host = %shown, port, "outbound request denied: host not in the CA account's allowed hosts");
            }
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            if self.log_refusal() {
                tracing::warn!(host = %shown, "outbound request refused: the URL carries credentials");
            }
            let _ = self.refused.set(Refusal::Credentials { host });
            return Box::new(async { Err(HttpError::HttpRequestUriInvalid) });
        }
        let cap = |asked: Option<Duration>, max: Duration| Some(asked.map_or(max, |a| a.min(max)));
        let opts = options.unwrap_or_default();
        let options = RequestOptions {
            connect_timeout: cap(opts.connect_timeout, CONNECT_TIMEOUT),
            first_byte_timeout: cap(opts.first_byte_timeout, self.read_cap.max(READ_TIMEOUT)),
            between_bytes_timeout: cap(opts.between_bytes_timeout, self.read_cap.max(READ_TIMEOUT)),
        };
        // Whether the CA may act on it: an unanswered one is then no reason to fail over.
        let changes = !matches!(request.method().as_str(), "GET" | "HEAD" | "OPTIONS");
        let method = request.method().as_str().to_owned();
        let limit = self.body_limit;
        let tls = self.tls.clone();
        let refused = self.refused.clone();
        let unanswered = self.unanswered.clone();
        let gate = self.changes.clone();
        let in_flight = self.in_flight.clone();
        let sensitive = self.sensitive.clone();
        Box::new(async move {
            // The semaphore lives as long as the call's state and is never closed.
            let permit =
                in_flight.acquire_owned().await.map_err(|_| HttpError::InternalError(Some("call ended".into())))?;
            let connect = options.connect_timeout.unwrap_or(CONNECT_TIMEOUT);
            let addrs = match tokio::time::timeout(connect, resolve(&host, port)).await {
                Err(_) => return Err(HttpError::DnsTimeout),
                Ok(Err(e)) => return Err(e),
                Ok(Ok(Resolved::Forbidden(address))) => {
                    let shown = shown_host(&host, &sensitive);
                    tracing::warn!(host = %shown, %address, "outbound request denied: the allowed host name resolves to a loopback or link-local address");
                    let _ = refused.set(Refusal::Address { host, address });
                    return Err(HttpError::DestinationIpProhibited);
                }
                Ok(Ok(Resolved::To(addrs))) => addrs,
            };
            if changes && !gate.send() {
                return Err(HttpError::InternalError(Some("the call ran out of time".into())));
            }
            let sent = super::sender::send(request, &addrs, options, tls).await;
            // A certificate the account does not trust reached the guest as a bare
            // "TlsProtocolError": keep rustls' reason, so the call can say what to fix.
            if let Err(HttpError::Tls(e)) = &sent
                && let Some(rustls::Error::InvalidCertificate(why)) =
                    e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>())
            {
                let _ = refused.set(Refusal::UntrustedCertificate { host: host.clone(), reason: format!("{why:?}") });
            }
            if changes && matches!(sent, Err(HttpError::ConnectionReadTimeout)) {
                let _ =
                    unanswered.set(Refusal::NoAnswer { method: method.clone(), host: shown_host(&host, &sensitive) });
            }
            let (response, io) = sent?;
            let io: super::sender::IoFuture = Box::new(async move {
                let done = Box::into_pin(io).await;
                drop(permit);
                done
            });
            let response = response.map(|body| {
                http_body_util::Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX))
                    .map_err(move |e| {
                        if e.is::<http_body_util::LengthLimitError>() {
                            let shown = shown_host(&host, &sensitive);
                            tracing::warn!(host = %shown, limit, "response body exceeded the CA account's http_body_mib");
                            let _ = refused.set(Refusal::BodyCap { host: host.clone() });
                            return HttpError::HttpResponseBodySize(Some(limit));
                        }
                        // An error of the body itself (a timeout, a reset) passes through.
                        match e.downcast::<HttpError>() {
                            Ok(inner) => {
                                if changes && matches!(*inner, HttpError::ConnectionReadTimeout) {
                                    let shown = shown_host(&host, &sensitive);
                                    let _ = unanswered.set(Refusal::NoAnswer { method: method.clone(), host: shown });
                                }
                                *inner
                            }
                            Err(other) => HttpError::InternalError(Some(other.to_string())),
                        }
                    })
                    .boxed_unsync()
            });
            Ok((response, io))
        })
    }
}

/// Where a request may connect.
enum Resolved {
    /// These addresses.
    To(Vec<SocketAddr>),
    /// Nowhere: the name resolved to this forbidden address (and to no allowed one).
    Forbidden(IpAddr),
}

/// Resolves `host` once, for the connection itself (no second lookup a rebinding DNS server
/// could answer differently). An allowed *name* must not lead to this machine or to the
/// link-local network — the cloud metadata service at 169.254.169.254 answers there — because
/// whoever controls the name's DNS is not the operator who allowed it. An address literal in
/// `allowed_hosts`, and `localhost` itself, are the operator's explicit choice and connect as
/// written. Private ranges (10/8, 192.168/16, fc00::/7) stay reachable by name: CAs inside a
/// company network live there.
async fn resolve(host: &str, port: u16) -> Result<Resolved, HttpError> {
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = literal.parse::<IpAddr>() {
        return Ok(Resolved::To(vec![SocketAddr::new(ip, port)]));
    }
    let found: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|_| HttpError::DnsError { rcode: None, info_code: None })?
        .collect();
    let names_this_machine =
        host.eq_ignore_ascii_case("localhost") || host.to_ascii_lowercase().ends_with(".localhost");
    if names_this_machine {
        return Ok(Resolved::To(found));
    }
    let (allowed, forbidden): (Vec<SocketAddr>, Vec<SocketAddr>) =
        found.into_iter().partition(|a| !forbidden_for_a_name(a.ip()));
    match (allowed.is_empty(), forbidden.first()) {
        (true, Some(first)) => Ok(Resolved::Forbidden(first.ip())),
        (true, None) => Err(HttpError::DnsError { rcode: None, info_code: None }),
        (false, _) => Ok(Resolved::To(allowed)),
    }
}

/// Loopback, link-local, unspecified, multicast and broadcast addresses (IPv4-mapped IPv6
/// forms included), and AWS's IPv6 metadata address.
fn forbidden_for_a_name(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            v4.is_loopback() || v4.is_link_local() || v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast()
        }
        IpAddr::V6(v6) => {
            const AWS_METADATA: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6 == AWS_METADATA
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Author review of stop 38: an http request to a host allowed only over https got the
    /// generic denial; the rule's scheme is named.
    #[test]
    fn a_host_allowed_under_another_scheme_is_told_apart() {
        let rule = AllowedHost::parse("https://127.0.0.1:8888").expect("rule");
        assert_eq!(rule.other_scheme_for("http", "127.0.0.1"), Some("https".to_owned()));
        assert_eq!(rule.other_scheme_for("https", "127.0.0.1"), None, "the same scheme");
        assert_eq!(rule.other_scheme_for("http", "10.0.0.1"), None, "another host");
        let bare = AllowedHost::parse("127.0.0.1:8888").expect("rule");
        assert_eq!(bare.other_scheme_for("http", "127.0.0.1"), None, "no scheme named");
    }

    /// A call judged at its deadline to have sent nothing the CA could act on sends nothing
    /// after: a send task still resolving its host is refused (review of stop 46's diff).
    #[test]
    fn a_call_closed_with_nothing_sent_sends_nothing_after() {
        let quiet = ChangeGate::default();
        assert!(quiet.close(), "nothing was sent");
        assert!(!quiet.send(), "and nothing is sent once closed");
        let busy = ChangeGate::default();
        assert!(busy.send() && busy.send(), "sending while open, more than once");
        assert!(!busy.close(), "a request was sent");
        assert!(busy.send(), "closing a call that sent changes nothing for its other requests");
    }

    /// Regression (review of stop 32): a denied request's host name went to the log as the
    /// guest wrote it, and a guest could put a secret in it.
    #[test]
    fn a_host_name_is_logged_without_the_calls_secrets() {
        let sensitive: Vec<zeroize::Zeroizing<String>> = vec![zeroize::Zeroizing::new("topsecretvalue123".into())];
        assert_eq!(shown_host("topsecretvalue123.evil.test", &sensitive), "***.evil.test");
        assert_eq!(shown_host("ca.example.com", &sensitive), "ca.example.com");
        assert_eq!(shown_host(&"a".repeat(300), &[]).len(), 253);
    }

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
        // IPv6: bracketed, with or without a port; bare is refused, not misread as host `::`.
        let v6 = AllowedHost::parse("http://[::1]:*").expect("rule");
        assert!(v6.matches("http", "[::1]", 8080));
        // Regression (review of stop 30): no port meant every port.
        let default = AllowedHost::parse("https://ca.internal").expect("rule");
        assert!(default.matches("https", "ca.internal", 443));
        assert!(!default.matches("https", "ca.internal", 8443));
        let bare = AllowedHost::parse("10.0.0.5").expect("rule");
        assert!(bare.matches("http", "10.0.0.5", 80) && bare.matches("https", "10.0.0.5", 443));
        assert!(!bare.matches("http", "10.0.0.5", 8443));
        assert!(AllowedHost::parse("10.0.0.5:*").expect("rule").matches("http", "10.0.0.5", 8443));
        assert!(!AllowedHost::parse("http://[::1]").expect("rule").matches("http", "[::1]", 8080));
        let v6_port = AllowedHost::parse("https://[2001:DB8::1]:8443").expect("rule");
        assert!(v6_port.matches("https", "[2001:db8::1]", 8443));
        assert!(!v6_port.matches("https", "[2001:db8::1]", 443));
        assert!(AllowedHost::parse("[::1]").expect("rule").matches("https", "[::1]", 443));
        for bad in ["::1", "http://::1:80", "[::1", "[nothost]", "[::1]80", "user@ca.example.com"] {
            assert!(AllowedHost::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn names_may_not_lead_to_this_machine_or_the_link_local_network() {
        for forbidden in [
            "127.0.0.1",
            "127.1.2.3",
            "169.254.169.254",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "fd00:ec2::254",
        ] {
            assert!(forbidden_for_a_name(forbidden.parse().expect("ip")), "{forbidden}");
        }
        for fine in ["10.0.0.5", "192.168.1.1", "172.16.0.1", "8.8.8.8", "fd12::1", "2001:db8::1", "::ffff:10.1.1.1"] {
            assert!(!forbidden_for_a_name(fine.parse().expect("ip")), "{fine}");
        }
    }
}
