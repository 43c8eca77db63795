//! A request id for every API request: the caller's `X-Request-Id` when it is a plain token,
//! otherwise a new random one. It goes back in the answer's `X-Request-Id`, in a problem's
//! `request_id`, and on every log line written while the request is served, so a program's
//! report of a failed call leads an operator to the lines about it.

use axum::http::{HeaderName, HeaderValue};
use tracing::Instrument;

/// The header a request id travels in, both ways (what proxies and load balancers set).
pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The longest request id taken from a caller; longer ones are replaced.
const MAX_LEN: usize = 128;

tokio::task_local! {
    /// The id of the request the current task serves, for the error answers built deep inside
    /// it (a problem body is made where the error is, far from the middleware).
    static CURRENT: String;
}

/// The id of the request being served, if this runs inside one.
pub fn current() -> Option<String> {
    CURRENT.try_with(Clone::clone).ok()
}

/// Whether a caller's id can be used as it is: it goes into log lines and a header, so only
/// characters that can neither break a line nor a log parser's quoting. A proxy's UUID, a
/// trace id, `req-42`, `abc.def:1/2` all pass.
fn acceptable(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_LEN && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=@~".contains(&b))
}

/// A new id: 128 random bits in hex, as a trace id is.
fn fresh() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// The caller's id when [`acceptable`], else a fresh one: an id that does not pass is not
/// refused (a proxy sets it, not the program that would read the error), it is replaced, and
/// the answer's header says by what.
fn chosen(headers: &axum::http::HeaderMap) -> String {
    headers.get(&HEADER).and_then(|v| v.to_str().ok()).filter(|id| acceptable(id)).map_or_else(fresh, str::to_owned)
}

/// Middleware: serves the request inside a span naming its id (at WARN, so the warnings and
/// errors a default `serve` logs carry it) and the task-local [`current`] reads, and sets the
/// answer's header.
pub(crate) async fn with_request_id(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let id = chosen(request.headers());
    let span = tracing::warn_span!("request", request_id = %id);
    let mut response = CURRENT.scope(id.clone(), next.run(request)).instrument(span).await;
    // `chosen` keeps only visible ASCII, which every header value may hold.
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_id_is_kept_and_anything_else_replaced() {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(&HEADER, HeaderValue::from_static("0f8c1b2a-7d2e-4c1e-9a55-3c1d2e4f5a6b"));
        assert_eq!(chosen(&headers), "0f8c1b2a-7d2e-4c1e-9a55-3c1d2e4f5a6b");
        for hostile in ["two words", "a\"quote", "", &"x".repeat(129), "line\tbreak"] {
            if let Ok(value) = HeaderValue::from_str(hostile) {
                headers.insert(&HEADER, value);
                let id = chosen(&headers);
                assert_ne!(id, hostile);
                assert_eq!(id.len(), 32, "a fresh id is 128 bits in hex: {id}");
            }
        }
        assert!(acceptable(&"x".repeat(128)));
        headers.remove(&HEADER);
        assert_ne!(chosen(&headers), chosen(&headers), "fresh ids differ");
    }
}
