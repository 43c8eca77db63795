//! WebAssembly component connectors (wasmtime, component model, contracts
//! `certhost:connector@0.1.0`, `@0.2.0` and `@0.3.0`).
//!
//! Layers: `bindings` (only `bindgen!`), `host_impl` (the host interface), `http` (the
//! outbound-HTTP policy), `runtime` (Engine, Linker, cache, Store state) and this file: the
//! [`WasmConnector`], one compiled component and `InstancePre` per CA account, a fresh Store
//! per call, under a deadline and a memory cap. WIT types become domain types here.

mod bindings;
mod host_impl;
mod http;
mod runtime;
mod sender;

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tracing::Instrument;
use wasmtime::component::Component;
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::WasiCtxBuilder;

use self::bindings::certhost::connector::types as wit;
use self::bindings::{CaConnector, CaConnectorPre};
use self::http::{AllowedHost, HttpPolicy};
use self::runtime::{MemoryLimiter, Runtime, State, StderrTail, bounded_table, http_ctx};
use super::{
    Args, CertificatePage, CertificateRequest, Connector, ConnectorError, Description, Disposition, Limits,
    ListedCertificate, Operation, OrderAction, ParameterSpec, RenewRequest, RevocationReason, RevokeRequest,
};
use crate::connector::cache::AccountCache;
use crate::connector::challenges::Scope;

pub use self::http::AllowedHost as AllowedHostRule;
pub use self::runtime::MAX_MEMORY_MIB;

/// The newest contract version this host implements.
pub const CONTRACT: &str = "certhost:connector/connector@0.3.0";
/// The older contract versions it still loads.
pub const CONTRACT_V0_2: &str = "certhost:connector/connector@0.2.0";
/// See [`CONTRACT_V0_2`].
pub const CONTRACT_V0_1: &str = "certhost:connector/connector@0.1.0";

/// A loaded component connector for one CA account.
pub struct WasmConnector {
    name: String,
    account: String,
    runtime: Arc<Runtime>,
    pre: Pre,
    limits: Limits,
    allowed: Vec<AllowedHost>,
    tls: Arc<rustls::ClientConfig>,
    cache: AccountCache,
    description: Description,
    /// [`Connector::declared_sensitive`], from `description`.
    declared: Vec<String>,
}

type CallFuture<'a, R> = Pin<Box<dyn Future<Output = wasmtime::Result<R>> + Send + 'a>>;

impl WasmConnector {
    /// Compiles (or loads from `cache_dir`) the component at `path`, checks the contract
    /// version it targets, and reads its description.
    pub async fn load(
        path: &Path,
        account: &str,
        limits: Limits,
        allowed_hosts: &[String],
        cache_dir: Option<&Path>,
    ) -> Result<Self, ConnectorError> {
        let cache = AccountCache::in_memory(account);
        Self::load_with_trust(path, account, limits, allowed_hosts, &[] as &[&Path], cache_dir, cache).await
    }

    /// [`WasmConnector::load`] with extra trusted CA certificates (PEM files) for outbound TLS,
    /// and the account's cache where the registry keeps it (the inventory).
    pub async fn load_with_trust(
        path: &Path,
        account: &str,
        limits: Limits,
        allowed_hosts: &[String],
        extra_ca_pems: &[impl AsRef<Path>],
        cache_dir: Option<&Path>,
        cache: AccountCache,
    ) -> Result<Self, ConnectorError> {
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("component").to_owned();
        let label = format!("connector {stem}");
        let mis = |message: String| ConnectorError::Misconfigured { connector: label.clone(), message };
        if path.is_dir() {
            return Err(mis(format!("{} is a directory, not a component file", path.display())));
        }
        if !path.is_file() {
            return Err(mis(format!("{} does not exist", path.display())));
        }
        if limits.memory_bytes > MAX_MEMORY_MIB << 20 {
            return Err(mis(format!(
                "a memory limit of {} MiB is above the {MAX_MEMORY_MIB} MiB a component may have",
                limits.memory_bytes >> 20
            )));
        }
        let runtime = Runtime::global().map_err(|e| mis(format!("the WebAssembly runtime cannot start: {e}")))?.clone();
        let component = runtime.load_component(path, cache_dir).map_err(|e| mis(e.to_string()))?;
        let version = check_contract(&runtime, &component).map_err(&mis)?;
        let allowed = allowed_hosts
            .iter()
            .map(|h| {
                AllowedHost::parse(h).ok_or_else(|| {
                    mis(format!(
                        "allowed host {h:?} is not https://host:port, host or *.domain (an IPv6 address goes in \
                     brackets: [::1] or https://[2001:db8::1]:8443)"
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let pre = runtime
            .linker
            .instantiate_pre(&component)
            .map_err(|e| mis(format!("the component needs imports this host does not offer: {e}")))?;
        let mismatch = |e: wasmtime::Error| mis(format!("the component does not match the contract: {e}"));
        let pre = match version {
            Version::V0_1 => Pre::V1(CaConnectorPre::new(pre).map_err(mismatch)?),
            Version::V0_2 => Pre::V2(bindings::v0_2::CaConnectorPre::new(pre).map_err(mismatch)?),
            Version::V0_3 => Pre::V3(bindings::v0_3::CaConnectorPre::new(pre).map_err(mismatch)?),
        };
        let tls = sender::tls_config(extra_ca_pems).map_err(&mis)?;
        let mut me = Self {
            name: stem,
            account: account.to_owned(),
            runtime,
            pre,
            limits,
            allowed,
            tls,
            cache,
            description: Description {
                name: String::new(),
                version: String::new(),
                parameters: vec![],
                operations: vec![],
            },
            declared: vec![],
        };
        let described = me
            .call(&Args::new(), |store, c| {
                Box::pin(async move { c.certhost_connector_connector().call_describe(store).await })
            })
            .await?;
        me.description = described.into();
        if let Some(why) = me.description.unusable() {
            return Err(ConnectorError::Misconfigured { connector: me.label_str(), message: why });
        }
        me.declared = me.description.declared_sensitive();
        if !me.description.name.is_empty() {
            me.name = me.description.name.clone();
        }
        Ok(me)
    }

    /// Calls `describe` in a fresh instance (what the load does): the bare per-call cost of a
    /// store, an instantiation and one export call, measured by the `wasm_call` benchmark.
    pub async fn describe_live(&self) -> Result<Description, ConnectorError> {
        let d = self
            .call(&Args::new(), |store, c| {
                Box::pin(async move { c.certhost_connector_connector().call_describe(store).await })
            })
            .await?;
        Ok(d.into())
    }

    fn label_str(&self) -> String {
        format!("connector {}", self.name)
    }

    /// One call in a fresh Store: instantiate, run `f`, drop everything.
    ///
    /// The guest runs on a fiber polled by the caller's task. Each epoch tick (10 ms) it yields
    /// back to the executor, so a guest that computes for long never holds a worker thread
    /// that other tasks need; once the call's deadline has passed, the next tick traps it.
    async fn call<R: Send + Outcome>(
        &self,
        args: &Args,
        f: impl for<'a> FnOnce(&'a mut Store<State>, &'a Instance) -> CallFuture<'a, R> + Send,
    ) -> Result<R, ConnectorError> {
        let label = self.label_str();
        let stderr = StderrTail::default();
        let wasi = WasiCtxBuilder::new()
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .stderr(stderr.clone())
            .build();
        let sensitive: Arc<[zeroize::Zeroizing<String>]> =
            // Values read from a reference too: redacted from what the guest logs, as from its errors.
            args.sensitive_values_for(&self.declared)
                .chain(args.read_values())
                .map(|v| zeroize::Zeroizing::new(v.to_owned()))
                .collect();
        let state = State {
            wasi,
            hooks: HttpPolicy {
                allowed: self.allowed.clone(),
                body_limit: self.limits.http_body_bytes,
                read_cap: self.limits.timeout,
                tls: self.tls.clone(),
                refused: Default::default(),
                unanswered: Default::default(),
                changes: Default::default(),
                in_flight: Arc::new(tokio::sync::Semaphore::new(http::MAX_REQUESTS_IN_FLIGHT)),
                refusals_logged: 0,
                sensitive: sensitive.clone(),
            },
            http: http_ctx(),
            table: bounded_table(),
            logged: 0,
            limits: MemoryLimiter::new(usize::try_from(self.limits.memory_bytes).unwrap_or(usize::MAX)),
            cache: self.cache.for_call(args),
            cache_set: false,
            cache_epoch: None,
            label: label.clone(),
            deadline: std::time::Instant::now() + self.limits.timeout,
            http01_published: 0,
            challenge_scope: Scope::new(&self.account, args.order_names().iter().map(String::as_str)),
            sensitive: sensitive.clone(),
            redactor: std::sync::OnceLock::new(),
        };
        let mut store = Store::new(&self.runtime.engine, state);
        store.limiter(|s| &mut s.limits);
        let deadline = Instant::now() + self.limits.timeout;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                // Raises `Trap::Interrupt`, reported below as "timed out".
                return Ok(UpdateDeadline::Interrupt);
            }
            Ok(UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now())))
        });
        // Guest log lines (and the host's own) carry the connector and the CA account. An
        // ERROR-level span is enabled under every filter that shows any guest line at all.
        let span = tracing::error_span!("connector_call", connector = %self.name, account = %self.account);
        let pre = &self.pre;
        let outcome = {
            let run = async {
                let instance = pre.instantiate_async(&mut store).await?;
                f(&mut store, &instance).await
            };
            // Epochs do not advance while the guest waits in a host call (HTTP): the tokio
            // timeout covers that case.
            tokio::time::timeout(self.limits.timeout + Duration::from_millis(500), run.instrument(span)).await
        };
        // What the call set is stored whatever its outcome: a token fetched before a trap is
        // still good.
        if store.data().cache_set {
            self.cache.flush().await;
        }
        // Closes the call to requests the CA could act on, and says whether it had sent one:
        // a send task still resolving a name when the deadline came can send nothing after
        // this (review of stop 46's diff: it could, after the flag was read).
        let timed_out = || ConnectorError::TimedOut {
            connector: label.clone(),
            after: self.limits.timeout,
            nothing_sent: store.data().hooks.changes.close(),
        };
        let refusal = || {
            let hooks = &store.data().hooks;
            // An unanswered request first: whatever else the call met, the CA may have it.
            hooks.unanswered.get().or_else(|| hooks.refused.get()).map(|refusal| match refusal {
                http::Refusal::BodyCap { host } => ConnectorError::Internal {
                    connector: label.clone(),
                    message: format!(
                        "response body from {host} exceeded the {} limit",
                        size_text(self.limits.http_body_bytes)
                    ),
                },
                http::Refusal::Credentials { host } => ConnectorError::Misconfigured {
                    connector: label.clone(),
                    message: format!(
                        "a request URL for {host} carries credentials (user:password@{host}), which would be sent \
                         in the Host header; send them in an Authorization header"
                    ),
                },
                http::Refusal::Scheme { host, scheme, allowed } => ConnectorError::Misconfigured {
                    connector: label.clone(),
                    message: format!(
                        "the {scheme} request to {host} was denied: the account's allowed_hosts allow {host} only \
                         over {allowed} (write a rule with {scheme}://, or one without a scheme for both)"
                    ),
                },
                http::Refusal::Port { host, port } => ConnectorError::Misconfigured {
                    connector: label.clone(),
                    message: format!(
                        "the request to {host}:{port} was denied: the account's allowed_hosts name {host} but not \
                         port {port} (a rule without a port allows only 443 for https and 80 for http; write \
                         {host}:{port}, or {host}:* for any port)"
                    ),
                },
                // Still "unreachable" (a CA whose certificate fails is failed over like one
                // that is down), but saying why and what to change.
                http::Refusal::UntrustedCertificate { host, reason } => ConnectorError::Unreachable {
                    connector: label.clone(),
                    message: format!(
                        "the TLS certificate of {host} is not trusted ({reason}); if the CA serves a private \
                         certificate, add the certificate of the CA that issued it to the account's extra_ca_pems"
                    ),
                },
                http::Refusal::NoAnswer { method, host } => ConnectorError::Interrupted {
                    connector: label.clone(),
                    message: format!("its {method} request to {host} was sent and no answer came in time"),
                },
                http::Refusal::Address { host, address } => ConnectorError::Misconfigured {
                    connector: label.clone(),
                    message: format!(
                        "allowed host {host} resolves to {address}, a loopback or link-local address, which a \
                         host name may not lead to; to reach it, put the address itself in allowed_hosts and \
                         the connector's URL"
                    ),
                },
            })
        };
        match outcome {
            Err(_) => Err(timed_out()),
            // The guest saw a failed body read or a refused connection and gave up: say why,
            // and never as "unreachable" (that would fail over to another CA for a local limit).
            Ok(Ok(r)) => match refusal() {
                Some(err) if r.failed() => Err(err),
                _ => Ok(r),
            },
            Ok(Err(e)) => {
                if store.data().limits.hit {
                    return Err(ConnectorError::MemoryExceeded {
                        connector: label.clone(),
                        limit_bytes: self.limits.memory_bytes,
                    });
                }
                if let Some(err) = refusal() {
                    return Err(err);
                }
                // What the guest wrote to stderr last: a Rust panic's message, before the trap.
                let last_words = stderr.last_words().map(|l| format!(" (its last output: {l})")).unwrap_or_default();
                let message = match e.downcast_ref::<wasmtime::Trap>() {
                    Some(wasmtime::Trap::Interrupt) => return Err(timed_out()),
                    Some(trap) => {
                        let text = trap.to_string();
                        let text = text.strip_prefix("wasm trap: ").unwrap_or(&text);
                        format!("trapped: {text}{last_words}")
                    }
                    None => format!("failed: {}{last_words}", error_text(&e)),
                };
                Err(ConnectorError::Internal {
                    connector: label.clone(),
                    message: args.redact_for(&self.declared, &message),
                })
            }
        }
    }

    fn error_from_wit(&self, e: wit::ConnectorError, args: &Args) -> ConnectorError {
        let connector = self.label_str();
        match e {
            wit::ConnectorError::Unreachable(m) => {
                ConnectorError::Unreachable { connector, message: args.redact_for(&self.declared, &m) }
            }
            wit::ConnectorError::Unauthorized(m) => {
                ConnectorError::Unauthorized { connector, message: args.redact_for(&self.declared, &m) }
            }
            wit::ConnectorError::Misconfigured(m) => {
                ConnectorError::Misconfigured { connector, message: args.redact_for(&self.declared, &m) }
            }
            wit::ConnectorError::Unsupported(m) => {
                ConnectorError::Unsupported { connector, message: args.redact_for(&self.declared, &m) }
            }
            wit::ConnectorError::Internal(m) => {
                ConnectorError::Internal { connector, message: args.redact_for(&self.declared, &m) }
            }
        }
    }

    fn disposition(
        &self,
        r: Result<wit::Disposition, wit::ConnectorError>,
        args: &Args,
    ) -> Result<Disposition, ConnectorError> {
        match r {
            Ok(wit::Disposition::Issued(i)) => {
                Ok(Disposition::Issued { certificate: i.certificate, chain: i.chain, ca_order_id: i.ca_order_id })
            }
            Ok(wit::Disposition::Pending(p)) => {
                Ok(Disposition::Pending { ca_order_id: p.ca_order_id, retry_after_s: p.retry_after_s })
            }
            Ok(wit::Disposition::Rejected(reason)) => {
                Ok(Disposition::Rejected { reason: args.redact_for(&self.declared, &reason) })
            }
            Err(e) => Err(self.error_from_wit(e, args)),
        }
    }
}

/// What a guest export returned, as far as [`WasmConnector::call`] needs to know: whether the
/// guest reported a failure (then a hit body cap explains it better than the guest can).
trait Outcome {
    /// The guest gave up in a way a request the host refused explains: unreachable,
    /// misconfigured (what the SDK makes of a denied request) or internal. One it answered
    /// with a reason of its own (unauthorized) is its answer, even after a refusal it handled.
    fn failed(&self) -> bool;
}

impl Outcome for wit::Description {
    fn failed(&self) -> bool {
        false
    }
}

impl<T> Outcome for Result<T, wit::ConnectorError> {
    fn failed(&self) -> bool {
        matches!(
            self,
            Err(wit::ConnectorError::Unreachable(_)
                | wit::ConnectorError::Misconfigured(_)
                | wit::ConnectorError::Internal(_))
        )
    }
}

/// `4 MiB`, or bytes when the size is not a whole number of MiB.
fn size_text(bytes: u64) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{bytes} bytes")
    }
}

/// Finds which contract version a component exports and refuses any but ours.
/// The contract versions a component may target.
#[derive(Clone, Copy)]
enum Version {
    V0_1,
    V0_2,
    V0_3,
}

/// The contract version a component exports, or why it cannot be loaded.
fn check_contract(runtime: &Runtime, component: &Component) -> Result<Version, String> {
    let ty = component.component_type();
    let exported: Vec<String> = ty.exports(&runtime.engine).map(|(name, _)| name.to_owned()).collect();
    if exported.iter().any(|n| n == CONTRACT) {
        return Ok(Version::V0_3);
    }
    if exported.iter().any(|n| n == CONTRACT_V0_2) {
        return Ok(Version::V0_2);
    }
    if exported.iter().any(|n| n == CONTRACT_V0_1) {
        return Ok(Version::V0_1);
    }
    match exported.iter().find(|n| n.starts_with("certhost:connector/connector@")) {
        Some(other) => Err(format!(
            "the component targets contract version {}, but this host supports {}, {} and {}",
            other.trim_start_matches("certhost:connector/connector@"),
            CONTRACT_V0_1.trim_start_matches("certhost:connector/connector@"),
            CONTRACT_V0_2.trim_start_matches("certhost:connector/connector@"),
            CONTRACT.trim_start_matches("certhost:connector/connector@")
        )),
        None => Err(format!("the component does not export {CONTRACT} (exports: {})", exported.join(", "))),
    }
}

fn wit_args(args: &Args) -> Vec<wit::Param> {
    args.iter().map(|(k, v)| wit::Param { name: k.to_owned(), value: v.to_owned() }).collect()
}

impl From<wit::Description> for Description {
    fn from(d: wit::Description) -> Self {
        Description {
            name: d.name,
            version: d.version,
            parameters: d
                .parameters
                .into_iter()
                .map(|p| ParameterSpec {
                    name: p.name,
                    description: p.description,
                    required: p.required,
                    sensitive: p.sensitive,
                    default: p.default,
                })
                .collect(),
            operations: d
                .operations
                .into_iter()
                .map(|o| match o {
                    wit::Operation::Poll => Operation::Poll,
                    wit::Operation::Renew => Operation::Renew,
                    wit::Operation::Revoke => Operation::Revoke,
                    wit::Operation::TestConnection => Operation::TestConnection,
                    wit::Operation::ListCertificates => Operation::ListCertificates,
                    wit::Operation::UpdateOrder => Operation::UpdateOrder,
                })
                .collect(),
        }
    }
}

impl From<&CertificateRequest> for wit::IssueRequest {
    fn from(r: &CertificateRequest) -> Self {
        wit::IssueRequest {
            csr_pem: r.csr_pem.clone(),
            common_name: r.common_name.clone(),
            request_id: r.request_id.clone(),
        }
    }
}

impl From<RevocationReason> for wit::RevocationReason {
    fn from(r: RevocationReason) -> Self {
        match r {
            RevocationReason::Unspecified => wit::RevocationReason::Unspecified,
            RevocationReason::KeyCompromise => wit::RevocationReason::KeyCompromise,
            RevocationReason::CaCompromise => wit::RevocationReason::CaCompromise,
            RevocationReason::AffiliationChanged => wit::RevocationReason::AffiliationChanged,
            RevocationReason::Superseded => wit::RevocationReason::Superseded,
            RevocationReason::CessationOfOperation => wit::RevocationReason::CessationOfOperation,
            RevocationReason::CertificateHold => wit::RevocationReason::CertificateHold,
            RevocationReason::PrivilegeWithdrawn => wit::RevocationReason::PrivilegeWithdrawn,
            RevocationReason::AaCompromise => wit::RevocationReason::AaCompromise,
        }
    }
}

impl From<OrderAction> for wit::OrderAction {
    fn from(a: OrderAction) -> Self {
        match a {
            OrderAction::Approve => wit::OrderAction::Approve,
            OrderAction::Decline => wit::OrderAction::Decline,
            OrderAction::Suspend => wit::OrderAction::Suspend,
            OrderAction::Resume => wit::OrderAction::Resume,
        }
    }
}

#[async_trait]
impl Connector for WasmConnector {
    fn name(&self) -> &str {
        &self.name
    }

    fn declared_sensitive(&self) -> &[String] {
        &self.declared
    }

    async fn describe(&self) -> Result<Description, ConnectorError> {
        Ok(self.description.clone())
    }

    async fn certificate_request(
        &self,
        request: &CertificateRequest,
        args: &Args,
    ) -> Result<Disposition, ConnectorError> {
        let (req, a) = (wit::IssueRequest::from(request), wit_args(args));
        let r = self
            .call(args, move |s, c| {
                Box::pin(async move { c.certhost_connector_connector().call_certificate_request(s, &req, &a).await })
            })
            .await?;
        self.disposition(r, args)
    }

    async fn poll(&self, ca_order_id: &str, args: &Args) -> Result<Disposition, ConnectorError> {
        let (id, a) = (ca_order_id.to_owned(), wit_args(args));
        let r = self
            .call(args, move |s, c| {
                Box::pin(async move { c.certhost_connector_connector().call_poll(s, &id, &a).await })
            })
            .await?;
        self.disposition(r, args)
    }

    async fn renew(&self, request: &RenewRequest, args: &Args) -> Result<Disposition, ConnectorError> {
        let req = wit::RenewRequest {
            prior_certificate_pem: request.prior_certificate_pem.clone(),
            prior_ca_order_id: request.prior_ca_order_id.clone(),
            request: (&request.request).into(),
        };
        let a = wit_args(args);
        let r = self
            .call(args, move |s, c| {
                Box::pin(async move { c.certhost_connector_connector().call_renew(s, &req, &a).await })
            })
            .await?;
        self.disposition(r, args)
    }

    async fn revoke(&self, request: &RevokeRequest, args: &Args) -> Result<(), ConnectorError> {
        let req = wit::RevokeRequest {
            certificate_pem: request.certificate_pem.clone(),
            serial: request.serial.clone(),
            reason: request.reason.into(),
            comment: request.comment.clone(),
        };
        let a = wit_args(args);
        let r = self
            .call(args, move |s, c| {
                Box::pin(async move { c.certhost_connector_connector().call_revoke(s, &req, &a).await })
            })
            .await?;
        r.map_err(|e| self.error_from_wit(e, args))
    }

    async fn test_connection(&self, args: &Args) -> Result<(), ConnectorError> {
        let a = wit_args(args);
        let r = self
            .call(args, move |s, c| {
                Box::pin(async move { c.certhost_connector_connector().call_test_connection(s, &a).await })
            })
            .await?;
        r.map_err(|e| self.error_from_wit(e, args))
    }

    async fn list_certificates(&self, args: &Args, cursor: Option<&str>) -> Result<CertificatePage, ConnectorError> {
        let (a, cur) = (wit_args(args), cursor.map(str::to_owned));
        let r = self
            .call(args, move |s, c| {
                Box::pin(
                    async move { c.certhost_connector_connector().call_list_certificates(s, &a, cur.as_deref()).await },
                )
            })
            .await?;
        let page = r.map_err(|e| self.error_from_wit(e, args))?;
        // Every item the guest listed is kept: the WIT types it fully, and an empty order id
        // means "none" (an item with neither that nor a certificate is counted failed by the import).
        Ok(CertificatePage {
            items: page
                .items
                .into_iter()
                .map(|i| ListedCertificate {
                    ca_order_id: Some(i.ca_order_id).filter(|id| !id.is_empty()),
                    status: i.status,
                    certificate: i.certificate,
                })
                .collect(),
            next_cursor: page.next_cursor,
            unusable: Vec::new(),
        })
    }

    async fn update_order(
        &self,
        ca_order_id: &str,
        action: OrderAction,
        args: &Args,
    ) -> Result<Disposition, ConnectorError> {
        let (id, act, a) = (ca_order_id.to_owned(), wit::OrderAction::from(action), wit_args(args));
        let r = self
            .call(args, move |s, c| {
                Box::pin(async move { c.certhost_connector_connector().call_update_order(s, &id, act, &a).await })
            })
            .await?;
        self.disposition(r, args)
    }
}

/// A component prepared for instantiation, by contract version.
enum Pre {
    V1(CaConnectorPre<State>),
    V2(bindings::v0_2::CaConnectorPre<State>),
    V3(bindings::v0_3::CaConnectorPre<State>),
}

impl Pre {
    async fn instantiate_async(&self, store: &mut Store<State>) -> wasmtime::Result<Instance> {
        Ok(match self {
            Pre::V1(p) => Instance::V1(p.instantiate_async(store).await?),
            Pre::V2(p) => Instance::V2(p.instantiate_async(store).await?),
            Pre::V3(p) => Instance::V3(p.instantiate_async(store).await?),
        })
    }
}

/// An instance of either contract version. Both export the same functions over 0.1's types
/// (see `bindings.rs`), so the old version is adapted here, once, and callers see one shape.
enum Instance {
    V1(CaConnector),
    V2(bindings::v0_2::CaConnector),
    V3(bindings::v0_3::CaConnector),
}

impl Instance {
    fn certhost_connector_connector(&self) -> Exports<'_> {
        match self {
            Instance::V1(i) => Exports::V1(i.certhost_connector_connector()),
            Instance::V2(i) => Exports::V2(i.certhost_connector_connector()),
            Instance::V3(i) => Exports::V3(i.certhost_connector_connector()),
        }
    }
}

/// The `connector` export of an [`Instance`].
enum Exports<'a> {
    V1(&'a bindings::exports::certhost::connector::connector::Guest),
    V2(&'a bindings::v0_2::exports::certhost::connector::connector::Guest),
    V3(&'a bindings::v0_3::exports::certhost::connector::connector::Guest),
}

/// Calls the same export on either version.
macro_rules! dispatch {
    ($self:ident, $method:ident($($arg:expr),*)) => {
        match $self {
            Exports::V1(g) => g.$method($($arg),*).await,
            Exports::V2(g) => g.$method($($arg),*).await,
            Exports::V3(g) => g.$method($($arg),*).await,
        }
    };
}

type WitResult<T> = wasmtime::Result<Result<T, wit::ConnectorError>>;

impl Exports<'_> {
    async fn call_describe(&self, s: &mut Store<State>) -> wasmtime::Result<wit::Description> {
        dispatch!(self, call_describe(s))
    }

    async fn call_certificate_request(
        &self,
        s: &mut Store<State>,
        req: &wit::IssueRequest,
        a: &[wit::Param],
    ) -> WitResult<wit::Disposition> {
        dispatch!(self, call_certificate_request(s, req, a))
    }

    async fn call_poll(&self, s: &mut Store<State>, id: &str, a: &[wit::Param]) -> WitResult<wit::Disposition> {
        dispatch!(self, call_poll(s, id, a))
    }

    async fn call_renew(
        &self,
        s: &mut Store<State>,
        req: &wit::RenewRequest,
        a: &[wit::Param],
    ) -> WitResult<wit::Disposition> {
        dispatch!(self, call_renew(s, req, a))
    }

    async fn call_revoke(&self, s: &mut Store<State>, req: &wit::RevokeRequest, a: &[wit::Param]) -> WitResult<()> {
        dispatch!(self, call_revoke(s, req, a))
    }

    async fn call_test_connection(&self, s: &mut Store<State>, a: &[wit::Param]) -> WitResult<()> {
        dispatch!(self, call_test_connection(s, a))
    }

    async fn call_list_certificates(
        &self,
        s: &mut Store<State>,
        a: &[wit::Param],
        cursor: Option<&str>,
    ) -> WitResult<wit::CertificatePage> {
        dispatch!(self, call_list_certificates(s, a, cursor))
    }

    async fn call_update_order(
        &self,
        s: &mut Store<State>,
        id: &str,
        action: wit::OrderAction,
        a: &[wit::Param],
    ) -> WitResult<wit::Disposition> {
        dispatch!(self, call_update_order(s, id, action, a))
    }
}

/// One line for a host-side error of a call (a handle table full, a header set over its
/// limit): each cause's first line, without wasmtime's "error while executing at wasm
/// backtrace" context, which alone said nothing.
fn error_text(e: &wasmtime::Error) -> String {
    let parts: Vec<String> = e
        .chain()
        .map(|c| c.to_string())
        .filter(|t| !t.starts_with("error while executing at wasm backtrace"))
        .filter_map(|t| t.lines().next().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned))
        .collect();
    if parts.is_empty() { "unknown error".to_owned() } else { parts.join(": ") }
}
