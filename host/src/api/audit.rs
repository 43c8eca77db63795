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
    /// `next_cursor` of the previous page: events older than that one.
    #[param(minimum = 1)]
    cursor: Option<i64>,
    /// Page size, 1-1000 (default 100); anything else is refused.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// A page of audit events.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditList {
    /// Newest first.
    items: Vec<AuditEvent>,
    /// Pass as `cursor` for the next (older) page; null on the last one.
    next_cursor: Option<i64>,
}

#[utoipa::path(get, operation_id = "list_audit_events", path = "/v1/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = AuditList), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    q: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<AuditList>, ApiError> {
    caller.require(AUDIT, "read the audit log")?;
    let Query(q) = q?;
    let limit = super::page_limit(q.limit)?;
    let inv = state.inventory.get().await?;
    // One more than the page: whether it comes back says whether there is a next page.
    let mut items = inv.audit_events(&AuditFilter {
        object_type: q.object_type,
        object_id: q.object_id,
        action_prefix: q.action,
        limit: limit + 1,
        before_id: super::page_cursor(q.cursor)?,
    })?;
    let next_cursor = super::next_page(&mut items, limit, |e| e.id);
    Ok(Json(AuditList { items, next_cursor }))
}
