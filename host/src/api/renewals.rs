//! `/v1/renewals`: what the renewal scheduler will do next and what it did — the API's view
//! of `certhost renewals`, so a dashboard sees failing renewals without shell access.

use axum::extract::{Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::{AUDIT, Caller, OPERATE};
use super::{ApiError, AppState, Problem};
use crate::inventory::{AuditEvent, RetriedRenewals, ScheduledRenewal};

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new().route("/v1/renewals", get(list)).route("/v1/renewals/retry", post(retry))
}

/// Which failing renewals to retry now.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryBody {
    /// Certificate ids whose failing renewal to retry; each must be failing (404 for no such
    /// certificate, 409 for one whose renewal is not failing, and then nothing is retried).
    /// Absent: every failing renewal; empty: refused (400).
    #[serde(default)]
    ids: Option<Vec<i64>>,
    /// Only this profile's failing renewals.
    #[serde(default)]
    profile: Option<String>,
}

/// Retries failing automatic renewals now instead of at the end of their backoff (up to six
/// hours), once their CA or profile is fixed; `serve` attempts them in its next round. The
/// attempt count stays, so one that fails again backs off as before.
#[utoipa::path(post, operation_id = "retry_renewals", path = "/v1/renewals/retry", tag = "certificates",
    request_body(content = Option<RetryBody>),
    responses((status = 200, body = RetriedRenewals), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn retry(
    State(state): State<AppState>,
    caller: Caller,
    body: super::json::MaybeJson,
) -> Result<Json<RetriedRenewals>, ApiError> {
    caller.require(OPERATE, "retry renewals")?;
    let body = super::json::optional::<RetryBody>(&body)?;
    let mut inv = state.inventory.get().await?;
    // An empty list is no way of saying "all" (a client's computed list that came out empty).
    let ids = match body.ids {
        Some(ids) if ids.is_empty() => {
            return Err(ApiError::BadRequest(
                "ids is empty: give the certificates whose failing renewal to retry, or leave ids out to retry every failing renewal".into(),
            ));
        }
        ids => ids.unwrap_or_default(),
    };
    Ok(Json(inv.retry_failing_renewals(body.profile.as_deref(), &ids, &caller.actor())?))
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
    /// `next_cursor` of the previous page: the upcoming renewals after that page's (the
    /// history is the newest events on every page; `/v1/audit?action=certificate.auto_renew`
    /// pages through all of it).
    cursor: Option<String>,
}

/// The schedule and the history of automatic renewals.
#[derive(Debug, Serialize, ToSchema)]
pub struct Renewals {
    /// Soonest first.
    upcoming: Vec<ScheduledRenewal>,
    /// `certificate.auto_renew` events, newest first: `detail.successor_id` on success,
    /// `detail.error` on failure.
    history: Vec<AuditEvent>,
    /// Pass as `cursor` for the next page of `upcoming`; null on the last one.
    next_cursor: Option<String>,
}

/// A page's cursor: the last listed renewal's due time and certificate id, which order the
/// schedule (many certificates fall due in the same second).
fn cursor_of(r: &ScheduledRenewal) -> String {
    format!("{}.{}", r.renew_after, r.id)
}

/// The `(renew_after, id)` a cursor names; anything but a `next_cursor` is refused.
fn parse_cursor(cursor: Option<&str>) -> Result<Option<(i64, i64)>, ApiError> {
    let Some(text) = cursor else { return Ok(None) };
    let parsed = text.split_once('.').and_then(|(at, id)| Some((at.parse::<i64>().ok()?, id.parse::<i64>().ok()?)));
    match parsed {
        Some((at, id)) if id >= 1 => Ok(Some((at, id))),
        _ => Err(ApiError::BadRequest(super::CURSOR_RULE.into())),
    }
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
    let after = parse_cursor(q.cursor.as_deref())?;
    let mut upcoming =
        inv.listed_renewals(q.failing.unwrap_or(false), q.profile.as_deref(), after, limit.saturating_add(1))?;
    let next_cursor = super::next_page(&mut upcoming, limit, cursor_of);
    Ok(Json(Renewals { upcoming, history: inv.auto_renewal_history(limit)?, next_cursor }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_is_a_listed_renewal_s_due_time_and_id_and_nothing_else() {
        let r = ScheduledRenewal {
            id: 42,
            common_name: None,
            profile: None,
            renew_after: 1_700_000_000,
            not_after: 1_800_000_000,
            attempts: 0,
            last_error: None,
        };
        assert_eq!(parse_cursor(Some(&cursor_of(&r))).expect("own cursor"), Some((1_700_000_000, 42)));
        assert_eq!(parse_cursor(None).expect("none"), None);
        for bad in ["", "42", "1700000000.", ".42", "1700000000.0", "a.b", "1.2.3", "1700000000.-4"] {
            assert!(parse_cursor(Some(bad)).is_err(), "{bad:?} was taken");
        }
    }
}
