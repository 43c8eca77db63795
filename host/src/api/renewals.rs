//! `/v1/renewals`: what the renewal scheduler will do next and what it did — the API's view
//! of `certhost renewals`, so a dashboard sees failing renewals without shell access.

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::{AUDIT, Caller};
use super::{ApiError, AppState, Problem};
use crate::inventory::{AuditEvent, ScheduledRenewal};

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
    /// Only the upcoming renewals whose last attempt failed (retried with backoff).
    failing: Option<bool>,
    /// Only the upcoming renewals of this profile (its exact name); the history is not filtered.
    profile: Option<String>,
}

/// The schedule and the history of automatic renewals.
#[derive(Debug, Serialize, ToSchema)]
pub struct Renewals {
    /// Soonest first.
    upcoming: Vec<ScheduledRenewal>,
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
    let Query(q) = q?;
    let limit = super::page_limit(q.limit)?;
    let inv = state.inventory.get().await?;
    let upcoming = inv.listed_renewals(q.failing.unwrap_or(false), q.profile.as_deref(), limit)?;
    Ok(Json(Renewals { upcoming, history: inv.auto_renewal_history(limit)? }))
}
