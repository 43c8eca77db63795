//! The HTTP API (`certhost serve`): JSON under `/v1`, bearer tokens with roles, errors as
//! problem+json. One file per resource, each with its own `router()`, merged here.
//!
//! The library never binds ports: the binary hands [`serve`] a listener (tests use port 0).

mod auth;
mod catalog;
mod certificates;
mod error;
mod health;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tokio::net::TcpListener;
use tokio::sync::Mutex;

pub use auth::Caller;
pub use error::ApiError;

use crate::connector::ConnectorSource;
use crate::inventory::Inventory;

/// Requests larger than this are refused with 413 before they are read.
pub const BODY_LIMIT: usize = 1024 * 1024;
/// A request that takes longer is cut off (connector calls have their own, shorter limits).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Shared state of the server.
#[derive(Clone)]
pub struct AppState {
    /// The inventory. One connection behind an async mutex: simple and durable; the
    /// performance issue revisits this.
    pub inventory: Arc<Mutex<Inventory>>,
    /// Connector loader.
    pub connectors: Arc<dyn ConnectorSource>,
    /// Environment lookup for `{ env = ... }` parameter references.
    pub env: crate::param::SharedEnvLookup,
}

/// All routes, with the body limit and request timeout.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(health::router())
        .merge(certificates::router())
        .merge(catalog::router())
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .with_state(state)
}

/// Serves until `shutdown` completes, then stops accepting and lets in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await
}
