//! One error type for the HTTP API, rendered as RFC 9457 problem+json in one place.
//! Client mistakes are 4xx with a detail naming what was wrong; a 5xx means a real server
//! fault, whose cause is logged and never sent (it could name paths or internals).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::inventory::InventoryError;
use crate::issue::IssueError;

/// What went wrong, for a program: the `code` member of every problem document. A client
/// branches on it rather than on the sentence in `detail`, which may be reworded; a code is
/// never renamed or reused (new ones may be added, so a client treats an unknown one by its
/// status). A retry may help only where the code says so below; with an `Idempotency-Key`,
/// retrying an issue request never issues twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ProblemCode {
    /// 401: no bearer token, an unknown or a revoked one.
    Unauthorized,
    /// 401: the token expired; an admin makes a new one.
    TokenExpired,
    /// 403: the token's role may not do this, or not with what the request names.
    Forbidden,
    /// 404: what the path names does not exist.
    NotFound,
    /// 404: the certificate exists, but certhost holds no private key for it (issued on an
    /// uploaded CSR, or imported without its key).
    KeyNotStored,
    /// 400: the request is malformed (body, query string, path, header).
    BadRequest,
    /// 413: the body is over the size limit.
    BodyTooLarge,
    /// 415: the body's content type is not one the endpoint reads.
    UnsupportedMediaType,
    /// 405: the path does not take that method.
    MethodNotAllowed,
    /// 409: the request conflicts with what is stored (a name taken, a renewal already open).
    Conflict,
    /// 409: the certificate is revoked already (a revoke sent again after a lost answer: what
    /// it asked for is done).
    AlreadyRevoked,
    /// 409: an order is not in a state this step applies to (approving an order already sent).
    WrongState,
    /// 422: the profile's rules refuse the request (a name, a key type, a lifetime); 409: they
    /// no longer allow an order made before the profile changed.
    PolicyRefused,
    /// 422: a parameter is unknown, missing, or not a value its definition allows.
    InvalidParameter,
    /// 422: an uploaded CSR is malformed, its signature fails, or it names other than the
    /// request; or the host could not build one.
    InvalidCsr,
    /// 422: the CSR's key was revoked for keyCompromise; a new key is needed. 409 on a key
    /// download: such a key is handed out to no one but an admin.
    CompromisedKey,
    /// 422: the request is well-formed but cannot be done (anything 422 not named above).
    InvalidRequest,
    /// 422: the profile has no active CA account to send the order to.
    NoActiveAccount,
    /// 422: the connector does not offer this operation (revocation, say).
    NotSupported,
    /// 422: the CA refused the order; sending it again will not help.
    CaRejected,
    /// 502: the CA or its connector failed (unreachable, an error, a trap); a retry may help.
    CaFailed,
    /// 502: polling an order pending at the CA failed; the order stays pending and is polled
    /// again (`Retry-After`).
    PollFailed,
    /// 502: the certificate the CA returned failed the host's verification; nothing stored.
    VerificationFailed,
    /// 502: the CA call ended without an answer the host can act on (timed out, or issued and
    /// not stored); the order is held for an operator, and a retry will not help.
    NeedsAttention,
    /// 409: the CA issued the certificate on a key revoked for keyCompromise meanwhile: it is
    /// stored but must not be used.
    IssuedOnCompromisedKey,
    /// 409: the `Idempotency-Key`'s order has no outcome to give yet (`Retry-After` when a
    /// retry can get it).
    IdempotencyKeyHeld,
    /// 410: the `Idempotency-Key`'s certificate was deleted; a new key issues again.
    IdempotencyKeyGone,
    /// 422: the `Idempotency-Key` was used for a different request.
    IdempotencyKeyReused,
    /// 503: the server's configuration stops it (a `{ env }` or `{ file }` value it cannot
    /// read); an operator must act.
    ConfigurationUnreadable,
    /// 503: another process holds the database's lock; a retry shortly may help.
    DatabaseBusy,
    /// 503: the disk or database failed (full, read-only, an I/O error); a retry once an
    /// operator fixed it.
    StorageFailed,
    /// 503: the server cannot serve this now (anything 503 not named above).
    Unavailable,
    /// 504: the request ran past the server's time limit; work it began goes on.
    TimedOut,
    /// 500: a server fault, logged on the server.
    Internal,
}

impl ProblemCode {
    /// The code of an error answer certhost did not write itself (axum's rejections, the
    /// timeout layer's), by its status.
    fn for_status(status: StatusCode) -> Self {
        match status {
            StatusCode::UNAUTHORIZED => ProblemCode::Unauthorized,
            StatusCode::FORBIDDEN => ProblemCode::Forbidden,
            StatusCode::NOT_FOUND => ProblemCode::NotFound,
            StatusCode::METHOD_NOT_ALLOWED => ProblemCode::MethodNotAllowed,
            StatusCode::PAYLOAD_TOO_LARGE => ProblemCode::BodyTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ProblemCode::UnsupportedMediaType,
            StatusCode::CONFLICT => ProblemCode::Conflict,
            StatusCode::UNPROCESSABLE_ENTITY => ProblemCode::InvalidRequest,
            StatusCode::SERVICE_UNAVAILABLE => ProblemCode::Unavailable,
            StatusCode::GATEWAY_TIMEOUT => ProblemCode::TimedOut,
            s if s.is_client_error() => ProblemCode::BadRequest,
            _ => ProblemCode::Internal,
        }
    }
}

/// Every failure the API answers, each with its status: one place decides what a client is
/// told (problem+json) and what is only logged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// 401: no token, an unknown one, or a revoked one.
    #[error("a valid bearer token is required")]
    Unauthorized,
    /// 401: a token past its expiry (the RFC 3339 time it expired).
    #[error("the bearer token expired at {0}; an admin can create a new one (`certhost token create`)")]
    TokenExpired(String),
    /// 403: the token's role does not allow this.
    #[error("role {role} may not {action}")]
    Forbidden {
        /// The caller's role.
        role: &'static str,
        /// What was attempted.
        action: &'static str,
    },
    /// 403: the role may do this in general, but not with what the request names.
    #[error("{0}")]
    NotAllowed(String),
    /// 404.
    #[error("{0} not found")]
    NotFound(String),
    /// 400: malformed request.
    #[error("{0}")]
    BadRequest(String),
    /// 413: the body is larger than the limit.
    #[error("the request body exceeds the {} KiB limit", super::BODY_LIMIT / 1024)]
    TooLarge,
    /// 415: the body's content type is not one the endpoint reads.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 405: the path exists, the method does not.
    #[error("this endpoint does not support that method")]
    MethodNotAllowed,
    /// 409: conflicts with current state.
    #[error("{0}")]
    Conflict(String),
    /// 409 for an `Idempotency-Key` whose order has no outcome to give yet: the order is named
    /// (`Location`, and `order_id` in the body), and `Retry-After` says when to ask again
    /// when asking again can help (the order is still running; not when an operator must act).
    #[error("{detail}")]
    KeyHeld {
        /// The sentence.
        detail: String,
        /// The order holding the key.
        order_id: i64,
        /// Whether the same request later can get the outcome.
        retry: bool,
    },
    /// 410: the order an `Idempotency-Key` names issued a certificate that was deleted since;
    /// no repeat of the request will ever get it.
    #[error("{detail}")]
    Gone {
        /// The sentence.
        detail: String,
        /// The order holding the key.
        order_id: i64,
    },
    /// 422: well-formed but refused (policy, parameters, CA refusal).
    #[error("{0}")]
    Unprocessable(String),
    /// 503: the server cannot serve the request now, through no fault of the client: its own
    /// configuration stops it (a parameter's file or variable unreadable) or another process
    /// holds the database's lock. Unlike a 500, it says what to fix or to retry.
    #[error("{0}")]
    Unavailable(String),
    /// 502: the CA or its connector failed.
    #[error("{0}")]
    Upstream(String),
    /// 504: the request ran past [`super::REQUEST_TIMEOUT`]; the work it began goes on.
    #[error(
        "the request took longer than {} s; if it had started a CA call, that call goes on and its order (GET /v1/orders) records the outcome",
        super::REQUEST_TIMEOUT.as_secs()
    )]
    TimedOut,
    /// 500: a server fault; the cause is logged, not sent.
    #[error("internal server error")]
    Internal(String),
    /// Any of the above with a [`ProblemCode`] finer than its variant's (a CA's refusal among
    /// the 422s, a failed verification among the 502s).
    #[error("{error}")]
    Coded {
        /// What went wrong.
        error: Box<ApiError>,
        /// Its code.
        code: ProblemCode,
    },
    /// Any of the above about an order the request made or acted on (a CA that failed or
    /// refused, an order held for an operator): the order is named as the 409 and 410 name
    /// theirs, in `order_id` and `Location`, so a client need not read it out of the
    /// sentence (API review of stop 38).
    #[error("{error}")]
    ForOrder {
        /// What went wrong.
        error: Box<ApiError>,
        /// The order.
        order_id: i64,
        /// When the order is tried again by itself (a failed poll's next poll), for
        /// `Retry-After`: a client polling it sooner only adds load on the CA.
        retry_after_s: Option<i64>,
    },
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized | ApiError::TokenExpired(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } | ApiError::NotAllowed(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Conflict(_) | ApiError::KeyHeld { .. } => StatusCode::CONFLICT,
            ApiError::Gone { .. } => StatusCode::GONE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::TimedOut => StatusCode::GATEWAY_TIMEOUT,
            ApiError::ForOrder { error, .. } | ApiError::Coded { error, .. } => error.status(),
        }
    }

    /// The `code` member: the finest one given, else the variant's.
    pub fn code(&self) -> ProblemCode {
        match self {
            ApiError::Unauthorized => ProblemCode::Unauthorized,
            ApiError::TokenExpired(_) => ProblemCode::TokenExpired,
            ApiError::Forbidden { .. } | ApiError::NotAllowed(_) => ProblemCode::Forbidden,
            ApiError::NotFound(_) => ProblemCode::NotFound,
            ApiError::BadRequest(_) => ProblemCode::BadRequest,
            ApiError::TooLarge => ProblemCode::BodyTooLarge,
            ApiError::MethodNotAllowed => ProblemCode::MethodNotAllowed,
            ApiError::UnsupportedMediaType(_) => ProblemCode::UnsupportedMediaType,
            ApiError::Conflict(_) => ProblemCode::Conflict,
            ApiError::KeyHeld { .. } => ProblemCode::IdempotencyKeyHeld,
            ApiError::Gone { .. } => ProblemCode::IdempotencyKeyGone,
            ApiError::Unprocessable(_) => ProblemCode::InvalidRequest,
            ApiError::Upstream(_) => ProblemCode::CaFailed,
            ApiError::Unavailable(_) => ProblemCode::Unavailable,
            ApiError::Internal(_) => ProblemCode::Internal,
            ApiError::TimedOut => ProblemCode::TimedOut,
            ApiError::Coded { code, .. } => *code,
            ApiError::ForOrder { error, .. } => error.code(),
        }
    }

    /// This error with a finer code than its variant's.
    fn coded(self, code: ProblemCode) -> Self {
        ApiError::Coded { error: Box::new(self), code }
    }

    /// The error under its wrappers (an order named, a finer code).
    fn innermost(&self) -> &ApiError {
        match self {
            ApiError::ForOrder { error, .. } | ApiError::Coded { error, .. } => error.innermost(),
            other => other,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(cause) = self.innermost() {
            tracing::error!(%cause, "internal error");
        }
        let mut resp = problem(self.status(), self.code(), &self.to_string(), self.order_id());
        if let Some(order_id) = self.order_id()
            && let Ok(location) = axum::http::HeaderValue::from_str(&format!("/v1/orders/{order_id}"))
        {
            resp.headers_mut().insert(axum::http::header::LOCATION, location);
        }
        match self {
            ApiError::KeyHeld { retry: true, .. } => {
                resp.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("5"));
            }
            ApiError::ForOrder { retry_after_s: Some(seconds), .. } => {
                resp.headers_mut()
                    .insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(seconds.max(1)));
            }
            _ => {}
        }
        resp
    }
}

impl ApiError {
    /// The order an answer is about, where the client needs it to go on (an idempotency key's).
    fn order_id(&self) -> Option<i64> {
        match self {
            ApiError::KeyHeld { order_id, .. }
            | ApiError::Gone { order_id, .. }
            | ApiError::ForOrder { order_id, .. } => Some(*order_id),
            _ => None,
        }
    }
}

const PROBLEM_JSON: &str = "application/problem+json";

/// The longest `detail` sent: room for a connector's message (4 KiB) and what frames it, and
/// no more of anything a client sent that an error quotes.
const MAX_DETAIL: usize = 8 * 1024;

/// The problem+json response for `status`, with the `code` extension member, and `order_id`
/// when an order is what the client must look at.
fn problem(status: StatusCode, code: ProblemCode, detail: &str, order_id: Option<i64>) -> Response {
    let detail = crate::connector::cut_at(shorten_long_words(detail), MAX_DETAIL);
    let mut body = serde_json::json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("error"),
        "status": status.as_u16(),
        "detail": detail,
        "code": code,
    });
    if let Some(id) = order_id {
        body["order_id"] = serde_json::json!(id);
    }
    if let Some(id) = super::request_id::current() {
        body["request_id"] = serde_json::json!(id);
    }
    let mut resp = (status, body.to_string()).into_response();
    resp.headers_mut().insert(axum::http::header::CONTENT_TYPE, axum::http::HeaderValue::from_static(PROBLEM_JSON));
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(axum::http::header::WWW_AUTHENTICATE, axum::http::HeaderValue::from_static("Bearer"));
    }
    resp
}

/// A word (a run without spaces) longer than this in a `detail` is something the client sent,
/// quoted back: a name in a path or a body, a content type. No word certhost writes, no URL
/// a connector names, comes near it.
const LONG_WORD: usize = 256;

/// `detail` with each word longer than [`LONG_WORD`] cut to its first 64 characters and "…":
/// a 10,000-character profile name in a path came back whole in its 404, and a 500,000-
/// character token name as 8 KiB of it (API review of stop 38); the start is enough to
/// recognise it.
fn shorten_long_words(detail: &str) -> String {
    if detail.len() <= LONG_WORD {
        return detail.to_owned();
    }
    let mut out = String::with_capacity(detail.len().min(MAX_DETAIL));
    let mut rest = detail;
    while !rest.is_empty() {
        let word_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let (word, tail) = rest.split_at(word_end);
        if word.len() > LONG_WORD {
            out.push_str(&crate::view::echoed(word));
        } else {
            out.push_str(word);
        }
        let space_end = tail.find(|c: char| !c.is_whitespace()).unwrap_or(tail.len());
        out.push_str(&tail[..space_end]);
        rest = &tail[space_end..];
    }
    out
}

/// Turns the error answers certhost does not write itself into problem+json, as the OpenAPI
/// document promises for every 4xx: axum's extractor rejections in plain text (a path segment
/// that is not an id, a raw body over the limit) and the timeout layer's empty 504.
pub(crate) async fn plain_errors_as_problems(resp: Response) -> Response {
    let status = resp.status();
    let is_problem = resp.headers().get(axum::http::header::CONTENT_TYPE).is_some_and(|v| v == PROBLEM_JSON);
    if is_problem || !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let detail = match status {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge.to_string(),
        // The same on every endpoint (the advice to send an issue request again with its
        // Idempotency-Key is in the issue endpoint's documentation).
        StatusCode::GATEWAY_TIMEOUT => ApiError::TimedOut.to_string(),
        _ => {
            // axum's rejection texts are one short line; a longer body is not one of them.
            let text = axum::body::to_bytes(resp.into_body(), 4096).await.unwrap_or_default();
            let text = String::from_utf8_lossy(&text);
            match text.trim() {
                "" => status.canonical_reason().unwrap_or("error").to_owned(),
                line => line.replace("Invalid URL: ", "the path is not valid: "),
            }
        }
    };
    problem(status, ProblemCode::for_status(status), &detail, None)
}

/// A query string axum could not read, in certhost's words: axum's text ("Failed to
/// deserialize query string: limit: invalid digit found in string") names the framework and
/// Rust's parser, not the parameter and what it takes.
impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(e: axum::extract::rejection::QueryRejection) -> Self {
        let text = e.body_text();
        let inner = text.strip_prefix("Failed to deserialize query string: ").unwrap_or(&text);
        // `limit=1&limit=2` said "duplicate field `limit`", serde's words (API review of stop 38).
        let duplicate = |why: &str| {
            why.strip_prefix("duplicate field `")
                .and_then(|rest| rest.split_once('`'))
                .map(|(name, _)| format!("the query parameter {name} is given more than once"))
        };
        let detail = match inner.split_once(": ") {
            _ if duplicate(inner).is_some() => duplicate(inner).unwrap_or_default(),
            Some((_, why)) if duplicate(why).is_some() => duplicate(why).unwrap_or_default(),
            Some((_, why)) if why.starts_with("unknown field") => {
                format!("the query string has an {}", why.replacen("unknown field", "unknown parameter", 1))
            }
            Some((name, why))
                if ["invalid digit", "number too large", "number too small", "cannot parse integer"]
                    .iter()
                    .any(|m| why.contains(m)) =>
            {
                // The range, where the parameter has one a client can be told (API review of
                // stop 38: `limit=-1` said only "in range").
                match name {
                    "limit" => {
                        format!("the query parameter limit must be a whole number from 1 to {}", super::MAX_PAGE)
                    }
                    "cursor" => super::CURSOR_RULE.to_owned(),
                    _ => format!("the query parameter {name} must be a whole number in range"),
                }
            }
            Some((name, why)) => format!("the query parameter {name} is not valid: {why}"),
            None => format!("the query string is not valid: {inner}"),
        };
        ApiError::BadRequest(detail)
    }
}

impl From<InventoryError> for ApiError {
    fn from(e: InventoryError) -> Self {
        match e {
            e if e.is_busy() => ApiError::Unavailable(
                "the inventory database is locked by another process (a backup, a long command); retry shortly".into(),
            )
            .coded(ProblemCode::DatabaseBusy),
            InventoryError::NotFound(what) => ApiError::NotFound(what),
            InventoryError::NotAllowed(why) => ApiError::NotAllowed(why),
            InventoryError::KeyHeld(order_id) => ApiError::KeyHeld { detail: e.to_string(), order_id, retry: true },
            InventoryError::InUse(_) | InventoryError::Conflict(_) => ApiError::Conflict(e.to_string()),
            InventoryError::RenewalOpen { order, .. } => ApiError::ForOrder {
                error: Box::new(ApiError::Conflict(e.to_string())),
                order_id: order,
                retry_after_s: None,
            },
            InventoryError::BadLookup(_) | InventoryError::InvalidStatus(_) | InventoryError::InvalidFilter(_) => {
                ApiError::BadRequest(e.to_string())
            }
            InventoryError::Invalid(_) | InventoryError::KeyMismatch => ApiError::Unprocessable(e.to_string()),
            // The cause names files and internals: logged, not sent.
            InventoryError::Storage(why) => {
                tracing::error!("storing a change failed: {why}");
                ApiError::Unavailable(
                    "the server could not store this change durably (a disk or database failure, logged on the server); \
                     retry once it is fixed"
                        .into(),
                )
                .coded(ProblemCode::StorageFailed)
            }
            // A full disk is a write's failure, said as one.
            InventoryError::Sqlite(rusqlite::Error::SqliteFailure(ref f, _))
                if f.code == rusqlite::ErrorCode::DiskFull =>
            {
                tracing::error!("storing a change failed: {e}");
                ApiError::Unavailable(
                    "the server could not store this change durably (its disk is full, logged on the server); retry once \
                     it is fixed"
                        .into(),
                )
                .coded(ProblemCode::StorageFailed)
            }
            // A read fails alike: not "could not store" (diff review of stop 39).
            e if e.is_storage_failure() => {
                tracing::error!("the inventory database failed: {e}");
                ApiError::Unavailable(
                    "the server could not use its database (a disk or database failure, logged on the server); retry \
                     once it is fixed"
                        .into(),
                )
                .coded(ProblemCode::StorageFailed)
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<IssueError> for ApiError {
    fn from(e: IssueError) -> Self {
        let order_id = match &e {
            IssueError::NoLongerAllowed { order_id, .. }
            | IssueError::NoActiveAccount { order_id, .. }
            | IssueError::Failed { order_id, .. }
            | IssueError::PollFailed { order_id, .. }
            | IssueError::NeedsAttention { order_id, .. }
            | IssueError::Rejected { order_id, .. }
            | IssueError::Verification { order_id, .. }
            | IssueError::Unconfigured { order_id, .. }
            | IssueError::IssuedOnCompromisedKey { order_id, .. }
            | IssueError::IdempotencyMismatch { order_id } => Some(*order_id),
            _ => None,
        };
        let retry_after_s = match &e {
            IssueError::PollFailed { retry_in_s, .. } => Some(*retry_in_s),
            _ => None,
        };
        let error = Self::from_issue(e);
        match order_id {
            Some(order_id) => ApiError::ForOrder { error: Box::new(error), order_id, retry_after_s },
            None => error,
        }
    }
}

impl ApiError {
    fn from_issue(e: IssueError) -> Self {
        let code = issue_code(&e);
        let error = Self::from_issue_status(e);
        match code {
            Some(code) => error.coded(code),
            None => error,
        }
    }

    fn from_issue_status(e: IssueError) -> Self {
        match e {
            IssueError::Inventory(inner) => inner.into(),
            IssueError::NoProfile(name) => ApiError::NotFound(format!("profile {name}")),
            IssueError::AccountNotListed { .. } => ApiError::NotAllowed(e.to_string()),
            IssueError::WrongState { .. }
            | IssueError::NoLongerAllowed { .. }
            | IssueError::Inactive { .. }
            | IssueError::Certificate { .. }
            | IssueError::AlreadyRevoked { .. }
            | IssueError::IssuedOnCompromisedKey { .. }
            | IssueError::NotDeployable { .. } => ApiError::Conflict(e.to_string()),
            IssueError::IdempotencyHeld { order_id, retry, .. } => {
                ApiError::KeyHeld { detail: e.to_string(), order_id, retry }
            }
            IssueError::IdempotencyGone { order_id, .. } => ApiError::Gone { detail: e.to_string(), order_id },
            // A certificate that failed the host's verification is the CA's or its connector's
            // fault, as a failed call is: 502, on which a client retries or fails over, not the
            // 422 that says its own request was wrong (two reviews of stop 36).
            IssueError::Failed { .. }
            | IssueError::PollFailed { .. }
            | IssueError::CaCall { .. }
            | IssueError::NeedsAttention { .. }
            | IssueError::Verification { .. } => ApiError::Upstream(e.to_string()),
            IssueError::Unconfigured { .. } => ApiError::Unavailable(e.to_string()),
            IssueError::Param(crate::param::ParamError::Unresolvable { .. }) => ApiError::Unavailable(format!(
                "the server cannot make this request until an operator fixes its configuration: {e} (nothing was \
                     stored)"
            )),
            other => ApiError::Unprocessable(other.to_string()),
        }
    }
}

/// The finer code of an issuance error, where its status's variant says less (an
/// inventory error carries its own).
fn issue_code(e: &IssueError) -> Option<ProblemCode> {
    use crate::param::ParamError;
    Some(match e {
        IssueError::Policy(_) | IssueError::NoLongerAllowed { .. } => ProblemCode::PolicyRefused,
        IssueError::Param(ParamError::Unresolvable { .. }) | IssueError::Unconfigured { .. } => {
            ProblemCode::ConfigurationUnreadable
        }
        IssueError::Param(_) => ProblemCode::InvalidParameter,
        IssueError::Csr(_) | IssueError::Upload(_) | IssueError::CsrMismatch { .. } => ProblemCode::InvalidCsr,
        IssueError::CompromisedKey { .. } => ProblemCode::CompromisedKey,
        IssueError::IssuedOnCompromisedKey { .. } => ProblemCode::IssuedOnCompromisedKey,
        IssueError::NoActiveAccount { .. } => ProblemCode::NoActiveAccount,
        IssueError::Rejected { .. } => ProblemCode::CaRejected,
        IssueError::PollFailed { .. } => ProblemCode::PollFailed,
        IssueError::Verification { .. } => ProblemCode::VerificationFailed,
        IssueError::NeedsAttention { .. } => ProblemCode::NeedsAttention,
        IssueError::NotSupported { .. } => ProblemCode::NotSupported,
        IssueError::IdempotencyMismatch { .. } => ProblemCode::IdempotencyKeyReused,
        IssueError::WrongState { .. } => ProblemCode::WrongState,
        IssueError::AlreadyRevoked { .. } => ProblemCode::AlreadyRevoked,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_name_quoted_back_is_cut_to_its_start() {
        let name = "p".repeat(10_000);
        let detail = shorten_long_words(&format!("profile {name} not found"));
        assert_eq!(detail, format!("profile {}… not found", "p".repeat(64)));
        let short = "order 7 failed: the CA said no (https://ca.example.com/acme/order/123)";
        assert_eq!(shorten_long_words(short), short);
        let many = format!("{} {}", "a ".repeat(200), "é".repeat(300));
        assert_eq!(shorten_long_words(&many), format!("{} {}…", "a ".repeat(200), "é".repeat(64)));
    }

    /// Regression (review of stop 33): a full disk answered 422, as if the request were
    /// wrong, though nothing about it was; the server's own trouble is a 503.
    #[test]
    fn a_storage_failure_is_the_servers_trouble_and_a_held_order_the_cas() {
        let full = ApiError::from(InventoryError::Storage("syncing /data/certhost.db-wal failed: disk full".into()));
        assert_eq!(full.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(full.to_string().starts_with("the server could not store this change durably"), "{full}");
        assert!(!full.to_string().contains("/data"), "the cause is logged, not sent: {full}");
        let held = ApiError::from(IssueError::NeedsAttention { order_id: 7, message: "timed out".into() });
        assert_eq!(held.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(held.to_string(), "order 7 needs attention: timed out");
        assert_eq!(held.order_id(), Some(7), "named for the client, as a 409's order is");
        let refused = ApiError::from(InventoryError::Invalid("bad name".into()));
        assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY, "the request's fault stays 422");
        // Operator review of stop 39: a database file that takes no writes (read-only,
        // immutable, an I/O error) answered 500.
        for code in [rusqlite::ffi::SQLITE_READONLY, rusqlite::ffi::SQLITE_IOERR, rusqlite::ffi::SQLITE_FULL] {
            let e = InventoryError::Sqlite(rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None));
            assert_eq!(ApiError::from(e).status(), StatusCode::SERVICE_UNAVAILABLE, "{code}");
        }
    }
}
