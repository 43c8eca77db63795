//! The ACME http-01 listener of `certhost serve`: `GET /.well-known/acme-challenge/{token}`
//! answers the key authorization a connector published (contract 0.2 `publish-http01`),
//! 404 otherwise. No authentication: the CA's validation server calls it.

use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::connector::challenges::Challenges;

/// The router of the http-01 listener (its own port, apart from the API).
pub fn router() -> Router {
    Router::new().route("/.well-known/acme-challenge/{token}", get(answer))
}

async fn answer(Path(token): Path<String>) -> impl IntoResponse {
    match Challenges::global().http01_answer(&token) {
        Some(key_authorization) => {
            tracing::info!(token = %token, "answered an ACME http-01 challenge");
            (StatusCode::OK, [(header::CONTENT_TYPE, "application/octet-stream")], key_authorization).into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
