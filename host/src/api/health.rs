//! `/healthz` (the process answers) and `/readyz` (the database answers; accounts' last tests).

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;

use super::{ApiError, AppState};

/// Unauthenticated probes.
pub fn router() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz))
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn readyz(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let inv = state.inventory.lock().await;
    let accounts: Vec<serde_json::Value> = inv
        .accounts()?
        .iter()
        .map(|a| serde_json::json!({ "name": a.name, "status": a.def.status.as_str(), "last_test_ok": a.last_test.as_ref().map(|t| t.ok) }))
        .collect();
    inv.ping()?;
    Ok(Json(serde_json::json!({ "status": "ready", "database": "ok", "accounts": accounts })))
}
