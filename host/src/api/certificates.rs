//! `/v1/certificates`: list, get, download, issue.

use std::collections::BTreeMap;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use super::auth::{Caller, ISSUE, READ};
use super::{ApiError, AppState};
use crate::csr::San;
use crate::inventory::{CertStatus, ListFilter};
use crate::issue::{IssueOutcome, IssueRequest, Pipeline};
use crate::view::CertView;

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/certificates", get(list).post(issue))
        .route("/v1/certificates/{id}", get(show))
        .route("/v1/certificates/{id}/pem", get(pem))
        .route("/v1/certificates/{id}/chain", get(chain))
        .route("/v1/certificates/{id}/fullchain", get(fullchain))
}

/// Query of the list endpoint.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    expiring_within_days: Option<u32>,
    status: Option<String>,
    search: Option<String>,
    issuer: Option<String>,
    cursor: Option<i64>,
    limit: Option<u32>,
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(READ, "read certificates")?;
    let Query(q) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let status = q.status.as_deref().map(str::parse::<CertStatus>).transpose()?;
    let filter = ListFilter {
        expiring_within_days: q.expiring_within_days,
        status,
        search: q.search,
        issuer: q.issuer,
        after_id: q.cursor,
        limit: limit + 1,
    };
    let inv = state.inventory.lock().await;
    let mut records = inv.list(&filter)?;
    let next = if records.len() > limit as usize {
        records.truncate(limit as usize);
        records.last().map(|r| r.id)
    } else {
        None
    };
    let now = now();
    let items: Vec<CertView<'_>> = records.iter().map(|r| CertView::new(r, now, false)).collect();
    Ok(Json(serde_json::json!({ "items": items, "next_cursor": next })))
}

async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(READ, "read certificates")?;
    let inv = state.inventory.lock().await;
    let r = inv.find(&id)?.ok_or_else(|| ApiError::NotFound(format!("certificate {id}")))?;
    Ok(Json(serde_json::to_value(CertView::new(&r, now(), true)).map_err(|e| ApiError::Internal(e.to_string()))?))
}

async fn download(
    state: AppState,
    caller: Caller,
    id: String,
    part: fn(&crate::inventory::CertificateRecord) -> String,
) -> Result<Response, ApiError> {
    caller.require(READ, "read certificates")?;
    let inv = state.inventory.lock().await;
    let r = inv.find(&id)?.ok_or_else(|| ApiError::NotFound(format!("certificate {id}")))?;
    Ok(([(header::CONTENT_TYPE, "application/pem-certificate-chain")], part(&r)).into_response())
}

async fn pem(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<Response, ApiError> {
    download(state, caller, id, |r| r.pem.clone()).await
}

async fn chain(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<Response, ApiError> {
    download(state, caller, id, |r| r.chain_pem.clone()).await
}

async fn fullchain(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    download(state, caller, id, |r| format!("{}{}", r.pem, r.chain_pem)).await
}

/// Body of an issue request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IssueBody {
    profile: String,
    cn: Option<String>,
    #[serde(default)]
    sans: Vec<String>,
    #[serde(default)]
    params: BTreeMap<String, String>,
    csr: Option<String>,
}

async fn issue(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<IssueBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    caller.require(ISSUE, "request certificates")?;
    let Json(body) = body?;
    let sans = body
        .sans
        .iter()
        .map(|s| s.parse::<San>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    let request = IssueRequest {
        profile: body.profile,
        common_name: body.cn,
        sans,
        subject: Default::default(),
        params: body.params,
        csr: body.csr.map(String::into_bytes),
    };
    let actor = caller.actor();
    let mut inv = state.inventory.lock().await;
    let mut pipeline =
        Pipeline { inventory: &mut inv, connectors: &*state.connectors, env: &*state.env, actor: &actor };
    let outcome = pipeline.issue(&request).await?;
    match outcome {
        IssueOutcome::Issued { order_id, certificate_id } => {
            let r = inv.find(&certificate_id.to_string())?.ok_or_else(|| ApiError::Internal("issued certificate vanished".into()))?;
            let body = serde_json::json!({ "disposition": "issued", "order_id": order_id, "certificate": CertView::new(&r, now(), true) });
            Ok((StatusCode::CREATED, Json(body)).into_response())
        }
        IssueOutcome::Pending { order_id, next_poll_at } => Ok((
            StatusCode::ACCEPTED,
            Json(serde_json::json!({ "disposition": "pending", "order_id": order_id, "next_poll_at": crate::view::rfc3339(next_poll_at) })),
        )
            .into_response()),
        IssueOutcome::AwaitingApproval { order_id } => {
            Ok((StatusCode::ACCEPTED, Json(serde_json::json!({ "disposition": "awaiting_approval", "order_id": order_id }))).into_response())
        }
    }
}
