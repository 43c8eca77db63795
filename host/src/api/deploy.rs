//! `POST /v1/certificates/{id}/deploy`: runs a certificate's deployment targets again, as
//! `certhost deploy ID` does — after a server lost its files, or a hook was fixed.

use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::{Caller, OPERATE};
use super::{ApiError, AppState, Problem};
use crate::issue::Pipeline;

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new().route("/v1/certificates/{id}/deploy", post(deploy))
}

/// Body of deploy (optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeployBody {
    /// Deploy it even when it is not active (revoked, expired, or replaced by a renewal);
    /// without it such a certificate is refused (409), naming its successor.
    #[serde(default)]
    force: bool,
    /// Write over files that hold another name's active certificate; without it such a
    /// target is left as it is, and its report says why.
    #[serde(default)]
    replace_others: bool,
}

/// One target's outcome.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeployedTarget {
    /// The target, as the profile describes it (its file paths).
    target: String,
    /// Whether everything, its hooks included, succeeded.
    ok: bool,
    /// What happened, one line (hook output redacted).
    message: String,
}

/// Every target's outcome; each is also in the audit log and the certificate's deployments.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeployResult {
    /// In the profile's order.
    targets: Vec<DeployedTarget>,
    /// Whether every target succeeded.
    ok: bool,
}

#[utoipa::path(post, path = "/v1/certificates/{id}/deploy", tag = "certificates",
    params(("id" = String, Path, description = "Id or thumbprint")), request_body(content = Option<DeployBody>),
    responses((status = 200, description = "Every target was tried; `ok` says whether all succeeded", body = DeployResult),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn deploy(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: super::json::MaybeJson,
) -> Result<Json<DeployResult>, ApiError> {
    caller.require(OPERATE, "deploy certificates")?;
    let body: DeployBody = super::json::optional(&body)?;
    let cert_id = {
        let inv = state.inventory.get().await?;
        inv.find(&id)?.ok_or_else(|| ApiError::NotFound(format!("certificate {id}")))?.id
    };
    let actor = caller.actor();
    let task_state = state.clone();
    // Hooks run to their end and are recorded even if the client goes away.
    let reports = super::to_completion(async move {
        let state = task_state;
        // Hooks may take minutes: counted with the connector calls, never all of the pool.
        let mut inv = state.inventory.get_for_call().await?;
        let mut p = Pipeline { inventory: &mut inv, connectors: &*state.connectors, env: &*state.env, actor: &actor };
        Ok(p.redeploy(cert_id, body.force, body.replace_others).await?)
    })
    .await?;
    let targets: Vec<DeployedTarget> =
        reports.into_iter().map(|r| DeployedTarget { target: r.target, ok: r.ok, message: r.message }).collect();
    let ok = targets.iter().all(|t| t.ok);
    Ok(Json(DeployResult { targets, ok }))
}
