//! `/v1/orders`: list, get, poll now, approve, decline.

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::{Caller, OPERATE, READ};
use super::{ApiError, AppState, Problem};
use crate::inventory::{Order, OrderState};
use crate::issue::{Decision, IssueOutcome, Pipeline};

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/orders", get(list))
        .route("/v1/orders/{id}", get(show))
        .route("/v1/orders/{id}/poll", post(poll))
        .route("/v1/orders/{id}/approve", post(approve))
        .route("/v1/orders/{id}/decline", post(decline))
        .route("/v1/orders/{id}/resubmit", post(resubmit))
}

/// Query of the list endpoint.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OrdersQuery {
    /// `awaiting_approval`, `pending`, `issued`, `rejected`, `failed` or `needs_attention`.
    #[param(value_type = Option<OrderState>)]
    state: Option<String>,
    /// `next_cursor` of the previous page: orders older than that one.
    #[param(minimum = 1)]
    cursor: Option<i64>,
    /// Page size, 1-1000 (default 100), newest first; anything else is refused.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// A page of orders.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderList {
    /// Newest first.
    items: Vec<Order>,
    /// Pass as `cursor` for the next (older) page; null on the last one.
    next_cursor: Option<i64>,
}

#[utoipa::path(get, operation_id = "list_orders", path = "/v1/orders", tag = "orders", params(OrdersQuery),
    responses((status = 200, body = OrderList), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    q: Result<Query<OrdersQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<OrderList>, ApiError> {
    caller.require(READ, "read orders")?;
    let Query(q) = q?;
    let st = q
        .state
        .as_deref()
        .map(str::parse::<OrderState>)
        .transpose()
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let limit = super::page_limit(q.limit)?;
    let inv = state.inventory.get().await?;
    // One more than the page: whether it comes back says whether there is a next page.
    let mut items = inv.orders_before(st, super::page_cursor(q.cursor)?, limit + 1)?;
    let next_cursor = super::next_page(&mut items, limit, |o| o.id);
    Ok(Json(OrderList { items, next_cursor }))
}

#[utoipa::path(get, operation_id = "show_order", path = "/v1/orders/{id}", tag = "orders", params(("id" = i64, Path)),
    responses((status = 200, body = Order), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn show(
    State(state): State<AppState>,
    caller: Caller,
    _: super::NoQuery,
    Path(id): Path<String>,
) -> Result<Json<Order>, ApiError> {
    caller.require(READ, "read orders")?;
    let id = order_id(&id)?;
    let inv = state.inventory.get().await?;
    Ok(Json(inv.order(id)?.ok_or_else(|| ApiError::NotFound(format!("order {id}")))?))
}

/// Where an order stands after a poll or an approval.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderStep {
    /// `issued`, `pending` or `awaiting_approval`.
    disposition: super::IssueDisposition,
    /// The order.
    order_id: i64,
    /// The stored certificate, when issued.
    #[serde(skip_serializing_if = "Option::is_none")]
    certificate_id: Option<i64>,
    /// When pending: the next poll (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    next_poll_at: Option<String>,
}

fn step(outcome: &IssueOutcome) -> Result<OrderStep, ApiError> {
    Ok(match outcome {
        IssueOutcome::Issued { order_id, certificate, on_compromised_key: true, .. } => {
            return Err(crate::issue::IssueError::IssuedOnCompromisedKey {
                order_id: *order_id,
                certificate_id: certificate.id,
            }
            .into());
        }
        IssueOutcome::Issued { order_id, certificate, .. } => OrderStep {
            disposition: super::IssueDisposition::Issued,
            order_id: *order_id,
            certificate_id: Some(certificate.id),
            next_poll_at: None,
        },
        IssueOutcome::Pending { order_id, next_poll_at } => OrderStep {
            disposition: super::IssueDisposition::Pending,
            order_id: *order_id,
            certificate_id: None,
            next_poll_at: Some(crate::view::rfc3339(*next_poll_at)),
        },
        IssueOutcome::AwaitingApproval { order_id } => OrderStep {
            disposition: super::IssueDisposition::AwaitingApproval,
            order_id: *order_id,
            certificate_id: None,
            next_poll_at: None,
        },
    })
}

#[utoipa::path(post, path = "/v1/orders/{id}/poll", tag = "orders", params(("id" = i64, Path)),
    responses((status = 200, body = OrderStep), (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The CA or its connector failed; a failed poll of an order still pending says in `Retry-After` when it is polled again by itself", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = String, description = "Seconds until the order is polled again (a failed poll)"), ("Location" = String, description = "/v1/orders/{id}"))),
        (status = 503, description = "The server's configuration stops the request (a parameter's file or variable unreadable)", body = Problem, content_type = "application/problem+json")))]
async fn poll(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<OrderStep>, ApiError> {
    caller.require(OPERATE, "poll orders")?;
    let id = order_id(&id)?;
    let actor = caller.actor();
    let outcome = super::to_completion(async move {
        let mut inv = state.inventory.get_for_call().await?;
        let mut p = Pipeline { inventory: &mut inv, connectors: &*state.connectors, env: &*state.env, actor: &actor };
        Ok(p.poll(id).await?)
    })
    .await?;
    Ok(Json(step(&outcome)?))
}

/// Body of approve: sensitive dynamic parameters again (they are never stored).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveBody {
    /// Dynamic parameters to (re-)supply.
    #[serde(default)]
    params: std::collections::BTreeMap<String, String>,
}

#[utoipa::path(post, path = "/v1/orders/{id}/approve", tag = "orders", params(("id" = i64, Path)),
    request_body(content = Option<ApproveBody>),
    responses((status = 200, body = OrderStep), (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The CA or its connector failed", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The server's configuration stops the request (a parameter's file or variable unreadable)", body = Problem, content_type = "application/problem+json")))]
async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: super::json::MaybeJson,
) -> Result<Json<OrderStep>, ApiError> {
    caller.require(OPERATE, "approve orders")?;
    let id = order_id(&id)?;
    decide(state, &caller, id, &body, Decision::Approve).await
}

/// Approve or resubmit order `id` with the body's dynamic parameters, the CA call run to its
/// end whatever happens to the request.
async fn decide(
    state: AppState,
    caller: &Caller,
    id: i64,
    body: &super::json::MaybeJson,
    decision: Decision,
) -> Result<Json<OrderStep>, ApiError> {
    let actor = caller.actor();
    let params = super::json::optional::<ApproveBody>(body)?.params;
    let outcome = super::to_completion(async move {
        let mut inv = state.inventory.get_for_call().await?;
        let mut p = Pipeline { inventory: &mut inv, connectors: &*state.connectors, env: &*state.env, actor: &actor };
        Ok(p.decide(id, decision, &params).await?)
    })
    .await?;
    Ok(Json(step(&outcome)?))
}

#[utoipa::path(post, path = "/v1/orders/{id}/resubmit", tag = "orders", params(("id" = i64, Path)),
    request_body(content = Option<ApproveBody>),
    responses((status = 200, body = OrderStep), (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The CA or its connector failed", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The server's configuration stops the request (a parameter's file or variable unreadable)", body = Problem, content_type = "application/problem+json")))]
/// Sends an order whose CA call was interrupted (`needs_attention`) again, with the same
/// request id, once an operator has checked the CA did not issue it: what `certhost orders
/// resubmit` does, for programs.
async fn resubmit(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: super::json::MaybeJson,
) -> Result<Json<OrderStep>, ApiError> {
    caller.require(OPERATE, "resubmit orders")?;
    let id = order_id(&id)?;
    decide(state, &caller, id, &body, Decision::Resubmit).await
}

/// Body of decline.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeclineBody {
    /// Why (recorded with the order and in the audit log).
    #[serde(default)]
    reason: Option<String>,
}

#[utoipa::path(post, path = "/v1/orders/{id}/decline", tag = "orders", params(("id" = i64, Path)),
    request_body(content = Option<DeclineBody>),
    responses((status = 200, body = Order), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn decline(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: super::json::MaybeJson,
) -> Result<Json<Order>, ApiError> {
    caller.require(OPERATE, "decline orders")?;
    let id = order_id(&id)?;
    let reason = super::json::optional::<DeclineBody>(&body)?.reason.unwrap_or_else(|| "declined".into());
    let mut inv = state.inventory.get().await?;
    inv.decline_order(id, &reason, &caller.actor())?;
    Ok(Json(inv.order(id)?.ok_or_else(|| ApiError::NotFound(format!("order {id}")))?))
}

/// An order id from the path. Not a whole number is 400; a number past what an id can be is
/// 404, as certificates answer, since no order has it.
fn order_id(text: &str) -> Result<i64, ApiError> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().map_err(|_| ApiError::NotFound(format!("order {text}")));
    }
    Err(ApiError::BadRequest(format!("{text:?} is not an order id (a whole number)")))
}
