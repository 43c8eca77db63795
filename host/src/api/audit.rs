//! `/v1/audit`: the audit log, newest first.

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::{AUDIT, Caller};
use super::{ApiError, AppState, Problem};
use crate::inventory::{AuditEvent, AuditFilter};

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new().route("/v1/audit", get(list))
}

/// Filters of the audit log.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// `certificate`, `order`, `account`, `profile`, `token`, ...
    object_type: Option<String>,
    /// The object's id or name.
    object_id: Option<String>,
    /// Action prefix, e.g. `certificate.` or `order.issued`.
    action: Option<String>,
    /// At most this many, 1-1000 (default 100).
    limit: Option<u32>,
}

/// Audit events.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditList {
    /// Newest first.
    items: Vec<AuditEvent>,
}

#[utoipa::path(get, path = "/v1/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = AuditList), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    q: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<AuditList>, ApiError> {
    caller.require(AUDIT, "read the audit log")?;
    let Query(q) = q.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let inv = state.inventory.get().await?;
    let items = inv.audit_events(&AuditFilter {
        object_type: q.object_type,
        object_id: q.object_id,
        action_prefix: q.action,
        limit: q.limit.unwrap_or(100).clamp(1, 1000),
    })?;
    Ok(Json(AuditList { items }))
}
