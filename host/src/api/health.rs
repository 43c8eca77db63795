//! `/healthz` (the process answers), `/readyz` (the database answers; accounts' last tests)
//! and `/metrics` (Prometheus text). Unauthenticated, like every probe and scrape target.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use serde::Serialize;
use utoipa::ToSchema;

use super::{ApiError, AppState};

/// Unauthenticated probes.
pub fn router() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).route("/metrics", get(metrics))
}

/// Liveness.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    status: &'static str,
}

#[utoipa::path(get, path = "/healthz", tag = "health", security(()), responses((status = 200, body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Readiness: the database answers; each account's status and last test.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    /// `ready`.
    status: &'static str,
    /// `ok`.
    database: &'static str,
    /// Accounts.
    accounts: Vec<AccountReadiness>,
}

/// One account in `/readyz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountReadiness {
    /// Name.
    name: String,
    /// `active` or `inactive`.
    status: &'static str,
    /// Result of the last `test_connection` (null: never tested).
    last_test_ok: Option<bool>,
}

#[utoipa::path(get, path = "/readyz", tag = "health", security(()),
    responses((status = 200, body = Ready), (status = 500, description = "The database does not answer", body = super::Problem, content_type = "application/problem+json")))]
async fn readyz(State(state): State<AppState>) -> Result<Json<Ready>, ApiError> {
    let inv = state.inventory.get().await?;
    inv.ping()?;
    let accounts = inv
        .accounts()?
        .iter()
        .map(|a| AccountReadiness {
            name: a.name.clone(),
            status: a.def.status.as_str(),
            last_test_ok: a.last_test.as_ref().map(|t| t.ok),
        })
        .collect();
    Ok(Json(Ready { status: "ready", database: "ok", accounts }))
}

#[utoipa::path(get, path = "/metrics", tag = "health", security(()),
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let inv = state.inventory.get().await?;
    let buckets = inv.expiry_buckets()?;
    let pairs: Vec<(&str, u64)> = buckets.iter().map(|(k, v)| (*k, *v)).collect();
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], crate::metrics::render(&pairs)))
}
