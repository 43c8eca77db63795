//! The HTTP API (`certhost serve`): JSON under `/v1`, bearer tokens with roles, errors as
//! problem+json, an OpenAPI 3.1 document generated from the handlers at `/v1/openapi.json`.
//! One file per resource, each with its own `router()`, merged here.
//!
//! The library never binds ports: the binary hands [`serve`] a listener (tests use port 0).

mod accounts;
mod acme_challenge;
mod audit;
mod auth;
mod certificates;
mod definitions;
mod deploy;
mod error;
mod health;
mod json;
mod listen;
mod openapi;
mod orders;
mod profiles;
mod renewals;
mod request_id;
mod tls;
mod tokens;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use utoipa::ToSchema;

pub use auth::Caller;
pub use error::{ApiError, ProblemCode};
pub use health::ExpiryGauges;
pub use openapi::document as openapi_document;
pub use tls::{TlsError, TlsListener, TlsReloader, Validity};

use crate::connector::ConnectorSource;
use crate::inventory::InventoryPool;

/// Requests larger than this are refused with 413 before they are read.
pub const BODY_LIMIT: usize = 1024 * 1024;
/// The largest page a list endpoint returns.
pub const MAX_PAGE: u32 = 1000;

/// The page size a list request asked for (100 when it did not): one outside 1 to
/// [`MAX_PAGE`] is refused rather than quietly changed, so a client never takes a short page
/// for the whole list.
pub(crate) fn page_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    match limit {
        None => Ok(100),
        Some(n @ 1..=MAX_PAGE) => Ok(n),
        Some(n) => Err(ApiError::BadRequest(format!("limit must be between 1 and {MAX_PAGE}, not {n}"))),
    }
}

/// What a list's `cursor` must be, said wherever one is refused.
pub(crate) const CURSOR_RULE: &str = "the query parameter cursor must be the next_cursor of an earlier page";

/// A list's `cursor`, which is the `next_cursor` of an earlier page: a positive id. `cursor=-5`
/// answered an empty page, as if the list ended there (API review of stop 38).
pub(crate) fn page_cursor(cursor: Option<i64>) -> Result<Option<i64>, ApiError> {
    match cursor {
        Some(c) if c < 1 => Err(ApiError::BadRequest(CURSOR_RULE.into())),
        other => Ok(other),
    }
}

/// A page asked for with `limit + 1` items cut to `limit`, and the cursor of the next page: the
/// page's last item's (its id, or whatever orders the list) when the extra one came back, so
/// there is more.
pub(crate) fn next_page<T, C>(items: &mut Vec<T>, limit: u32, id: impl Fn(&T) -> C) -> Option<C> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    if items.len() <= limit {
        return None;
    }
    items.truncate(limit);
    items.last().map(id)
}

/// A request that takes longer is answered 504 (connector calls have their own limits). A
/// connector call it started goes on to its end ([`to_completion`]).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// A 201 or 202 whose `Location` says where what it made is read from (RFC 9110 §10.2.2), so
/// a program follows the header instead of building the URL from the body.
pub(crate) fn located(
    status: axum::http::StatusCode,
    location: &str,
    body: impl axum::response::IntoResponse,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut resp = (status, body).into_response();
    // Every location is built from an id or a checked name (`account::check_name`), both
    // valid header text; were one not, the answer goes without the header rather than fail.
    if let Ok(value) = axum::http::HeaderValue::from_str(location) {
        resp.headers_mut().insert(axum::http::header::LOCATION, value);
    }
    resp
}

/// Runs `work` — a connector call and what it records — in a task of its own and waits for
/// it. A client that goes away, or the request timeout, drops only the wait: the call runs to
/// its end and its order records the outcome. Dropped halfway, a call left its order for an
/// operator with "the process stopped", though the CA may have issued.
pub(crate) async fn to_completion<T: Send + 'static>(
    work: impl std::future::Future<Output = Result<T, ApiError>> + Send + 'static,
) -> Result<T, ApiError> {
    // Answered just before the timeout layer would, so the 504 names the order the work began
    // (`issue::ORDER_SEEN`); the work goes on either way.
    to_completion_within(work, REQUEST_TIMEOUT.saturating_sub(Duration::from_secs(2))).await
}

async fn to_completion_within<T: Send + 'static>(
    work: impl std::future::Future<Output = Result<T, ApiError>> + Send + 'static,
    limit: Duration,
) -> Result<T, ApiError> {
    let seen = std::sync::Arc::new(std::sync::OnceLock::new());
    // In the request's span: the connector's log lines are about this request.
    let work = tracing::Instrument::instrument(work, tracing::Span::current());
    let task = tokio::spawn(crate::issue::ORDER_SEEN.scope(seen.clone(), work));
    match tokio::time::timeout(limit, task).await {
        Ok(joined) => joined.map_err(|e| ApiError::Internal(format!("the request's task ended: {e}")))?,
        Err(_) => Err(match seen.get() {
            Some(&order_id) => {
                ApiError::ForOrder { error: Box::new(ApiError::TimedOut), order_id, retry_after_s: None }
            }
            None => ApiError::TimedOut,
        }),
    }
}

/// A read that takes no query parameters (the lists of tokens, accounts and profiles; one
/// certificate, its downloads, one order, account or profile) refuses one, as the paged lists
/// refuse one they do not take: `?limit=0` answered 200 with every item, and a program
/// believed it had asked for something (black-box review of stop 36); `…/pem?format=der`
/// answered PEM (API walkthrough of stop 48). A list takes it as a `Result` so that the
/// caller's role is checked first; a single read after its `Caller`.
pub(crate) struct NoQuery;

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for NoQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, ApiError> {
        match parts.uri.query().filter(|q| !q.is_empty()) {
            None => Ok(NoQuery),
            Some(query) => {
                let first = query.split('&').next().unwrap_or_default();
                let name = first.split('=').next().unwrap_or_default();
                Err(ApiError::BadRequest(format!(
                    "the query string has an unknown parameter `{}`: this request takes none",
                    crate::view::echoed(name)
                )))
            }
        }
    }
}

/// A request that changes something (POST, PUT, DELETE) refuses a query string: none of them
/// takes one, and `POST /v1/certificates?dry_run=true` issued a certificate while its caller
/// believed it had only tried (API review of stop 36). Reads go through their own extractors.
async fn refuse_query_on_change(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Result<axum::response::Response, ApiError> {
    use axum::http::Method;
    let reads = matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if let Some(query) = request.uri().query().filter(|q| !q.is_empty() && !reads) {
        let first = query.split('&').next().unwrap_or_default();
        let name = first.split('=').next().unwrap_or_default();
        return Err(ApiError::BadRequest(format!(
            "the query string has an unknown parameter `{}`: a {} takes none, nothing was done",
            crate::view::echoed(name),
            request.method()
        )));
    }
    Ok(next.run(request).await)
}

/// Shared state of the server.
#[derive(Clone)]
pub struct AppState {
    /// The inventory: a pool of connections, one checked out per request, so a slow
    /// connector call holds one connection and never the whole API.
    pub inventory: InventoryPool,
    /// Connector loader.
    pub connectors: Arc<dyn ConnectorSource>,
    /// Environment lookup for `{ env = ... }` parameter references.
    pub env: crate::param::SharedEnvLookup,
    /// `/metrics`' expiry buckets, counted at most every few seconds.
    pub expiry_gauges: ExpiryGauges,
}

/// Where an issue request or an order step left the order: the certificate is in the answer,
/// the CA has it (poll the order, or wait: serve polls it), or a person must approve it first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IssueDisposition {
    /// The certificate was issued and stored.
    Issued,
    /// The order waits at the CA.
    Pending,
    /// The order waits for another person's approval.
    AwaitingApproval,
}

/// An RFC 9457 problem document, as every error response carries it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// Always `about:blank`: the status and `code` say what kind of problem it is.
    #[serde(rename = "type")]
    pub kind: String,
    /// The status's reason phrase.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What was wrong, in one sentence. Never a sensitive value.
    pub detail: String,
    /// What was wrong, for a program to branch on (`detail` may be reworded, a code is not).
    pub code: ProblemCode,
    /// The order the answer is about (also in `Location`): on a 409 or 410 for an
    /// `Idempotency-Key`, and on any error about an order the request made or acted on (a
    /// CA's failure or refusal, an order held for an operator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<i64>,
    /// The request's id, as in the answer's `X-Request-Id` (the caller's own, or a new one):
    /// the log lines about this request carry it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// Body of a secret PUT: `{"value": "..."}` as `application/json`, or the raw value as
/// `text/plain` (one trailing line ending dropped); any other content type is refused (415).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretBody {
    /// The sensitive value; stored encrypted, never shown again.
    pub value: String,
}

/// All routes, with the body limit and request timeout.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(health::router())
        .merge(certificates::router())
        .merge(accounts::router())
        .merge(profiles::router())
        .merge(orders::router())
        .merge(audit::router())
        .merge(deploy::router())
        .merge(renewals::router())
        .merge(tokens::router())
        .merge(openapi::router())
        .route_layer(axum::middleware::from_fn(refuse_query_on_change))
        .fallback(|| async { ApiError::NotFound("endpoint".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn(refuse_declared_oversize))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::GATEWAY_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(axum::middleware::map_response(error::plain_errors_as_problems))
        .layer(axum::middleware::map_response(response_headers))
        .layer(axum::middleware::from_fn(request_id::with_request_id))
        .with_state(state)
}

/// A client that asks first (`Expect: 100-continue`) to send a body whose `Content-Length` is
/// over [`BODY_LIMIT`] is refused before it sends a byte, instead of being invited to. One
/// that sends at once is refused once the limit is read: answered earlier, while it is still
/// writing, it would mostly see the connection reset, not the 413.
async fn refuse_declared_oversize(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Result<axum::response::Response, ApiError> {
    let headers = request.headers();
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let asks_first = headers
        .get(axum::http::header::EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    if asks_first && declared.is_some_and(|n| n > BODY_LIMIT as u64) {
        return Err(ApiError::TooLarge);
    }
    Ok(next.run(request).await)
}

/// Headers every answer carries: none is to be stored by a cache (private keys, new tokens,
/// the inventory all come this way), and its content type is the one sent.
async fn response_headers(mut response: axum::response::Response) -> axum::response::Response {
    use axum::http::{HeaderValue, header};
    let headers = response.headers_mut();
    headers.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

/// Serves plain HTTP until `shutdown` completes, then stops accepting and lets in-flight
/// requests finish.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    listen::serve(listener, router(state), listen::connection_limit(), shutdown).await
}

/// Serves HTTPS (see [`TlsListener`]) until `shutdown` completes.
pub async fn serve_tls(
    listener: TlsListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    listen::serve(listener, router(state), listen::connection_limit(), shutdown).await
}

/// Serves the ACME http-01 challenge answers (plain HTTP, port 80 or its stand-in) with the
/// same connection limits as the API, until the process ends.
pub async fn serve_acme_http01(listener: TcpListener) -> std::io::Result<()> {
    listen::serve(listener, acme_challenge::router(), listen::connection_limit(), std::future::pending()).await
}

/// The value of a secret PUT body: JSON `{"value": ...}` when sent as JSON, else the raw
/// text. The content type decides, not the first character: a raw secret may start with `{`.
pub(crate) fn secret_value(
    headers: &axum::http::HeaderMap,
    body: &[u8],
) -> Result<zeroize::Zeroizing<String>, ApiError> {
    let text = std::str::from_utf8(body).map_err(|_| ApiError::BadRequest("the secret is not UTF-8 text".into()))?;
    // Only the two documented types: any other body — `curl -d`'s form type, `curl -F`'s
    // multipart envelope, none at all — was stored whole as the secret, which is never shown
    // again, so the mistake surfaced only as a CA refusing the credential (API review of
    // stop 38).
    let essence = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim().to_ascii_lowercase());
    if !json::json_content_type(headers) && essence.as_deref() != Some("text/plain") {
        let sent = essence.map_or_else(|| "no content type".to_owned(), |e| format!("content type {e}"));
        return Err(ApiError::UnsupportedMediaType(format!(
            "send the secret as application/json ({{\"value\": \"...\"}}) or as text/plain (the raw value), not with {sent}; nothing was stored"
        )));
    }
    let value = if json::json_content_type(headers) {
        // Read as every other JSON body (an array was taken as `{"value": …}` by position, and
        // a wrong shape was a 400 here but a 422 elsewhere; black-box review of stop 36). The
        // errors name fields, never values.
        let parsed = json::parse(text.as_bytes())?;
        if !parsed.is_object() {
            return Err(ApiError::Unprocessable("the request body must be a JSON object: {\"value\": \"...\"}".into()));
        }
        json::from_value::<SecretBody>(parsed).map_err(ApiError::Unprocessable)?.value
    } else {
        text.trim_end_matches(['\r', '\n']).to_owned()
    };
    if value.is_empty() {
        return Err(ApiError::Unprocessable("the secret value is empty".into()));
    }
    Ok(zeroize::Zeroizing::new(value))
}

/// `PUT …/params/{param}/secret` for an account or a profile: admins only, the same checks as
/// `certhost secret set` ([`crate::param::ParamDef::accepts_stored_secret`], then the value's rules), stored
/// sealed, answered 204.
pub(crate) async fn put_secret(
    state: &AppState,
    caller: &Caller,
    owner: crate::inventory::SecretOwner,
    name: &str,
    param: &str,
    headers: &axum::http::HeaderMap,
    body: &[u8],
) -> Result<axum::response::Response, ApiError> {
    use crate::inventory::SecretOwner;
    caller.require(auth::ADMIN, "set secrets")?;
    let value = secret_value(headers, body)?;
    let mut inv = state.inventory.get().await?;
    let (what, def) = match owner {
        SecretOwner::Account => {
            let a = inv.account(name)?.ok_or_else(|| ApiError::NotFound(format!("account {name}")))?;
            ("account", a.def.params.get(param).cloned())
        }
        SecretOwner::Profile => {
            let (d, _) = inv.profile(name)?.ok_or_else(|| ApiError::NotFound(format!("profile {name}")))?;
            ("profile", d.params.get(param).cloned())
        }
    };
    let def = def.ok_or_else(|| ApiError::NotFound(format!("parameter {param} of {what} {name}")))?;
    // The code an issue request's parameter refusal has (red team of stop 50: the same regex
    // refusal was `invalid_request` here).
    let refused = |e: crate::param::ParamError| ApiError::Coded {
        error: Box::new(ApiError::Unprocessable(e.to_string())),
        code: ProblemCode::InvalidParameter,
    };
    def.accepts_stored_secret(param, &format!("{what} {name}")).map_err(refused)?;
    def.check_value(param, &value).map_err(refused)?;
    let stranded = inv.set_secret(owner, name, param, &value, &caller.actor())?;
    // A 204 has no body to carry it: the server's log and the audit event do.
    if let Some(warning) = crate::inventory::stranded_warning(owner, name, &stranded) {
        tracing::warn!("{warning}");
    }
    Ok(axum::response::IntoResponse::into_response(axum::http::StatusCode::NO_CONTENT))
}

#[cfg(test)]
mod completion_tests {
    use super::*;

    /// A request that runs out of time names the order its work began, and the work goes on.
    #[tokio::test]
    async fn a_timeout_names_the_order_begun_and_the_work_goes_on() {
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let work = async move {
            let _ = crate::issue::ORDER_SEEN.try_with(|seen| seen.set(42));
            tokio::time::sleep(Duration::from_millis(300)).await;
            let _ = done_tx.send(());
            Ok(())
        };
        let err = to_completion_within(work, Duration::from_millis(50)).await.expect_err("times out");
        assert!(matches!(err, ApiError::ForOrder { order_id: 42, .. }), "{err:?}");
        assert!(err.to_string().starts_with("the request took longer than 120 s"), "{err}");
        done_rx.await.expect("the work finished after the answer");
        let none =
            to_completion_within(std::future::pending::<Result<(), ApiError>>(), Duration::from_millis(10)).await;
        assert!(matches!(none, Err(ApiError::TimedOut)));
    }
}
