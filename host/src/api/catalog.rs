//! `/v1/accounts`, `/v1/profiles`, `/v1/orders`, `/v1/audit`: read access (writes come next).

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::auth::{ADMIN, Caller, OPERATE, READ};
use super::{ApiError, AppState};
use crate::account::AccountStatus;
use crate::inventory::{AuditFilter, OrderState};
use crate::issue::{IssueOutcome, Pipeline};

/// Routes of these resources.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/accounts", get(accounts))
        .route("/v1/accounts/{name}", get(account))
        .route("/v1/accounts/{name}/activate", post(activate))
        .route("/v1/accounts/{name}/deactivate", post(deactivate))
        .route("/v1/accounts/{name}/test", post(test_account))
        .route("/v1/profiles", get(profiles))
        .route("/v1/profiles/{name}", get(profile))
        .route("/v1/orders", get(orders))
        .route("/v1/orders/{id}", get(order))
        .route("/v1/orders/{id}/poll", post(poll))
        .route("/v1/orders/{id}/approve", post(approve))
        .route("/v1/orders/{id}/decline", post(decline))
        .route("/v1/audit", get(audit))
}

async fn accounts(State(state): State<AppState>, caller: Caller) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(READ, "read accounts")?;
    let inv = state.inventory.lock().await;
    let views = inv.accounts()?.iter().map(|a| crate::view::account(&inv, a)).collect::<Result<Vec<_>, _>>()?;
    Ok(Json(serde_json::json!({ "items": views })))
}

async fn account(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(READ, "read accounts")?;
    let inv = state.inventory.lock().await;
    let a = inv.account(&name)?.ok_or_else(|| ApiError::NotFound(format!("account {name}")))?;
    Ok(Json(crate::view::account(&inv, &a)?))
}

async fn profiles(State(state): State<AppState>, caller: Caller) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(READ, "read profiles")?;
    let inv = state.inventory.lock().await;
    let views =
        inv.profiles()?.iter().map(|(n, d, o)| crate::view::profile(&inv, n, d, o)).collect::<Result<Vec<_>, _>>()?;
    Ok(Json(serde_json::json!({ "items": views })))
}

async fn profile(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(READ, "read profiles")?;
    let inv = state.inventory.lock().await;
    let (def, origin) = inv.profile(&name)?.ok_or_else(|| ApiError::NotFound(format!("profile {name}")))?;
    Ok(Json(crate::view::profile(&inv, &name, &def, &origin)?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OrdersQuery {
    state: Option<String>,
    limit: Option<u32>,
}

async fn orders(
    State(state): State<AppState>,
    caller: Caller,
    q: Result<Query<OrdersQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(READ, "read orders")?;
    let Query(q) = q.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let st = q
        .state
        .as_deref()
        .map(str::parse::<OrderState>)
        .transpose()
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let inv = state.inventory.lock().await;
    Ok(Json(serde_json::json!({ "items": inv.orders(st, q.limit.unwrap_or(100).clamp(1, 1000))? })))
}

async fn order(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(READ, "read orders")?;
    let inv = state.inventory.lock().await;
    let o = inv.order(id)?.ok_or_else(|| ApiError::NotFound(format!("order {id}")))?;
    Ok(Json(serde_json::to_value(o).map_err(|e| ApiError::Internal(e.to_string()))?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    object_type: Option<String>,
    object_id: Option<String>,
    action: Option<String>,
    limit: Option<u32>,
}

async fn audit(
    State(state): State<AppState>,
    caller: Caller,
    q: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(READ, "read the audit log")?;
    let Query(q) = q.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let inv = state.inventory.lock().await;
    let events = inv.audit_events(&AuditFilter {
        object_type: q.object_type,
        object_id: q.object_id,
        action_prefix: q.action,
        limit: q.limit.unwrap_or(100).clamp(1, 1000),
    })?;
    Ok(Json(serde_json::json!({ "items": events })))
}

async fn set_status(
    state: AppState,
    caller: Caller,
    name: String,
    status: AccountStatus,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(ADMIN, "change accounts")?;
    let mut inv = state.inventory.lock().await;
    inv.set_account_status(&name, status, &caller.actor())?;
    let a = inv.account(&name)?.ok_or_else(|| ApiError::NotFound(format!("account {name}")))?;
    Ok(Json(crate::view::account(&inv, &a)?))
}

async fn activate(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    set_status(state, caller, name, AccountStatus::Active).await
}

async fn deactivate(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    set_status(state, caller, name, AccountStatus::Inactive).await
}

async fn test_account(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(ADMIN, "test accounts")?;
    let actor = caller.actor();
    let mut inv = state.inventory.lock().await;
    let mut p = Pipeline { inventory: &mut inv, connectors: &*state.connectors, env: &*state.env, actor: &actor };
    let (ok, message) = p.test_account(&name).await?;
    Ok(Json(serde_json::json!({ "account": name, "ok": ok, "message": message })))
}

fn outcome_json(outcome: &IssueOutcome) -> serde_json::Value {
    match outcome {
        IssueOutcome::Issued { order_id, certificate_id } => {
            serde_json::json!({ "disposition": "issued", "order_id": order_id, "certificate_id": certificate_id })
        }
        IssueOutcome::Pending { order_id, next_poll_at } => {
            serde_json::json!({ "disposition": "pending", "order_id": order_id, "next_poll_at": crate::view::rfc3339(*next_poll_at) })
        }
        IssueOutcome::AwaitingApproval { order_id } => {
            serde_json::json!({ "disposition": "awaiting_approval", "order_id": order_id })
        }
    }
}

async fn poll(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(OPERATE, "poll orders")?;
    let actor = caller.actor();
    let mut inv = state.inventory.lock().await;
    let mut p = Pipeline { inventory: &mut inv, connectors: &*state.connectors, env: &*state.env, actor: &actor };
    Ok(Json(outcome_json(&p.poll(id).await?)))
}

/// Body of approve: sensitive dynamic parameters again (they are never stored).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApproveBody {
    #[serde(default)]
    params: std::collections::BTreeMap<String, String>,
}

async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
    body: Option<Json<ApproveBody>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(OPERATE, "approve orders")?;
    let actor = caller.actor();
    let params = body.map(|Json(b)| b.params).unwrap_or_default();
    let mut inv = state.inventory.lock().await;
    inv.approve_order(id, &actor)?;
    let mut p = Pipeline { inventory: &mut inv, connectors: &*state.connectors, env: &*state.env, actor: &actor };
    Ok(Json(outcome_json(&p.submit(id, &params).await?)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeclineBody {
    #[serde(default)]
    reason: Option<String>,
}

async fn decline(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
    body: Option<Json<DeclineBody>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(OPERATE, "decline orders")?;
    let reason = body.and_then(|Json(b)| b.reason).unwrap_or_else(|| "declined".into());
    let mut inv = state.inventory.lock().await;
    inv.decline_order(id, &reason, &caller.actor())?;
    let o = inv.order(id)?.ok_or_else(|| ApiError::NotFound(format!("order {id}")))?;
    Ok(Json(serde_json::to_value(o).map_err(|e| ApiError::Internal(e.to_string()))?))
}
