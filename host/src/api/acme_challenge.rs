//! The ACME http-01 listener of `certhost serve`: `GET /.well-known/acme-challenge/{token}`
//! answers the key authorization a connector published (contract 0.2 `publish-http01`) when
//! the request's `Host` is one of the names of the order it was published for, 404
//! otherwise. No authentication: the CA's validation server calls it.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::connector::challenges::Challenges;

/// The router of the http-01 listener (its own port, apart from the API).
pub fn router() -> Router {
    Router::new().route("/.well-known/acme-challenge/{token}", get(answer))
}

async fn answer(Path(token): Path<String>, uri: Uri, headers: HeaderMap) -> impl IntoResponse {
    // HTTP/1.1 names the host in `Host`; an absolute-form target or HTTP/2 in the URI.
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
        .unwrap_or_default();
    match Challenges::global().http01_answer(&token, host) {
        Some(key_authorization) => {
            tracing::info!(token = %token, "answered an ACME http-01 challenge");
            (StatusCode::OK, [(header::CONTENT_TYPE, "application/octet-stream")], key_authorization).into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
