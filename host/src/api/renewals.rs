//! `/v1/renewals`: what the renewal scheduler will do next and what it did — the API's view
//! of `certhost renewals`, so a dashboard sees failing renewals without shell access.

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::{AUDIT, Caller};
use super::{ApiError, AppState, Problem};
use crate::inventory::{AuditEvent, AuditFilter, ScheduledRenewal};

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new().route("/v1/renewals", get(list))
}

/// How much of the schedule and the history.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RenewalsQuery {
    /// At most this many upcoming renewals and this many history events, 1-1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// One certificate the scheduler will renew.
#[derive(Debug, Serialize, ToSchema)]
pub struct UpcomingRenewal {
    /// Certificate id.
    id: i64,
    /// Its CN.
    common_name: Option<String>,
    /// Its profile.
    profile: Option<String>,
    /// When it is due (or retried after a failure), Unix seconds.
    renew_after: i64,
    /// Its notAfter, Unix seconds.
    not_after: i64,
    /// Failed automatic attempts so far (0: none failed).
    attempts: i64,
    /// The last failure, redacted of sensitive values.
    last_error: Option<String>,
}

impl From<ScheduledRenewal> for UpcomingRenewal {
    fn from(r: ScheduledRenewal) -> Self {
        Self {
            id: r.id,
            common_name: r.common_name,
            profile: r.profile,
            renew_after: r.renew_after,
            not_after: r.not_after,
            attempts: r.attempts,
            last_error: r.last_error,
        }
    }
}

/// The schedule and the history of automatic renewals.
#[derive(Debug, Serialize, ToSchema)]
pub struct Renewals {
    /// Soonest first.
    upcoming: Vec<UpcomingRenewal>,
    /// `certificate.auto_renew` events, newest first: `detail.successor_id` on success,
    /// `detail.error` on failure.
    history: Vec<AuditEvent>,
}

#[utoipa::path(get, operation_id = "list_renewals", path = "/v1/renewals", tag = "certificates", params(RenewalsQuery),
    responses((status = 200, body = Renewals), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    q: Result<Query<RenewalsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Renewals>, ApiError> {
    caller.require(AUDIT, "read the renewal schedule")?;
    let Query(q) = q.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let limit = super::page_limit(q.limit)?;
    let inv = state.inventory.get().await?;
    let upcoming = inv.scheduled_renewals(limit)?.into_iter().map(UpcomingRenewal::from).collect();
    let history = inv.audit_events(&AuditFilter {
        object_type: Some("certificate".into()),
        object_id: None,
        action_prefix: Some("certificate.auto_renew".into()),
        limit,
        before_id: None,
    })?;
    Ok(Json(Renewals { upcoming, history }))
}
