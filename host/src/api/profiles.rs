//! `/v1/profiles`: list, get, create, update, delete, and write-only secrets.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::accounts::refuse_file_defined;
use super::auth::{ADMIN, Caller, READ};
use super::{ApiError, AppState, Problem, SecretBody};
use crate::inventory::{Inventory, InventoryError, SecretOwner};
use crate::profile::ProfileDef;

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/profiles", get(list).post(create))
        .route("/v1/profiles/{name}", get(show).put(update).delete(delete))
        .route("/v1/profiles/{name}/params/{param}/secret", put(set_secret))
}

/// A list of profiles.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProfileList {
    /// Profiles by name; sensitive parameters as `{"sensitive": true, "set": bool}`.
    #[schema(value_type = Vec<Object>)]
    items: Vec<serde_json::Value>,
}

#[utoipa::path(get, operation_id = "list_profiles", path = "/v1/profiles", tag = "profiles",
    responses((status = 200, body = ProfileList), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<super::NoQuery, ApiError>,
) -> Result<Json<ProfileList>, ApiError> {
    caller.require(READ, "read profiles")?;
    query?;
    let inv = state.inventory.get().await?;
    let items =
        inv.profiles()?.iter().map(|(n, d, o)| crate::view::profile(&inv, n, d, o)).collect::<Result<Vec<_>, _>>()?;
    Ok(Json(ProfileList { items }))
}

#[utoipa::path(get, operation_id = "show_profile", path = "/v1/profiles/{name}", tag = "profiles", params(("name" = String, Path)),
    responses((status = 200, description = "The profile", body = Object), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn show(
    State(state): State<AppState>,
    caller: Caller,
    _: super::NoQuery,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(READ, "read profiles")?;
    let inv = state.inventory.get().await?;
    let (def, origin) = inv.profile(&name)?.ok_or_else(|| ApiError::NotFound(format!("profile {name}")))?;
    Ok(Json(crate::view::profile(&inv, &name, &def, &origin)?))
}

/// A new profile: its name and the fields of `profiles/NAME.toml`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewProfile {
    /// Unique name.
    name: String,
    /// The definition, as in a profile file (`accounts`, `params`, `key`, `subject`, ...).
    #[serde(flatten)]
    #[schema(value_type = Object)]
    definition: serde_json::Map<String, serde_json::Value>,
}

/// The stored accounts' definitions by name.
fn stored_accounts(inv: &Inventory) -> Result<BTreeMap<String, crate::account::AccountDef>, ApiError> {
    Ok(inv.accounts()?.into_iter().map(|a| (a.name, a.def)).collect())
}

/// Parses and checks a profile definition against the stored `accounts` and their connectors.
async fn checked(
    state: &AppState,
    accounts: &BTreeMap<String, crate::account::AccountDef>,
    name: &str,
    map: serde_json::Map<String, serde_json::Value>,
) -> Result<ProfileDef, ApiError> {
    let def: ProfileDef = super::json::from_value(serde_json::Value::Object(map))
        .map_err(|e| ApiError::Unprocessable(format!("the profile definition is not valid: {e}")))?;
    super::accounts::refuse_relative(crate::config::relative_path_in_profile(&def))?;
    def.check(name).map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    crate::config::check_links(name, &def, accounts).map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    def.check_connectors(name, accounts, &*state.connectors)
        .await
        .map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    Ok(def)
}

#[utoipa::path(post, operation_id = "create_profile", path = "/v1/profiles", tag = "profiles", request_body = NewProfile,
    responses((status = 201, description = "Created (with `warnings` about its deploy targets when there are any)", body = Object, headers(("Location" = String, description = "/v1/profiles/{name}"))), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<super::json::Body<NewProfile>, ApiError>,
) -> Result<Response, ApiError> {
    caller.require(ADMIN, "create profiles")?;
    let super::json::Body(body) = body?;
    // No connection is held while connectors load for the checks (a script's imports may
    // take long): requests that hold one must be few and short.
    let accounts = stored_accounts(&*state.inventory.get().await?)?;
    let def = checked(&state, &accounts, &body.name, body.definition).await?;
    let warnings = deploy_warnings(&def).await;
    let mut inv = state.inventory.get().await?;
    // Create-only in one transaction: of two concurrent creations of one name, one gets 409.
    inv.create_profile(&body.name, &def, "api", &caller.actor()).map_err(|e| match e {
        InventoryError::Conflict(_) => ApiError::Conflict(format!(
            "profile {} already exists (PUT /v1/profiles/{} to change it)",
            body.name, body.name
        )),
        other => other.into(),
    })?;
    let view = with_warnings(crate::view::profile(&inv, &body.name, &def, "api")?, &body.name, warnings);
    Ok(super::located(StatusCode::CREATED, &format!("/v1/profiles/{}", body.name), Json(view)))
}

#[utoipa::path(put, operation_id = "update_profile", path = "/v1/profiles/{name}", tag = "profiles", params(("name" = String, Path)),
    request_body(content = Object, description = "The whole definition, as in a profile file"),
    responses((status = 200, description = "Updated (with `warnings` about its deploy targets when there are any)", body = Object), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    body: Result<super::json::Body<serde_json::Map<String, serde_json::Value>>, ApiError>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(ADMIN, "change profiles")?;
    let super::json::Body(body) = body?;
    let accounts = {
        let inv = state.inventory.get().await?;
        let (_, origin) = inv.profile(&name)?.ok_or_else(|| ApiError::NotFound(format!("profile {name}")))?;
        refuse_file_defined(&origin, "profile", &name)?;
        stored_accounts(&inv)?
    };
    // No connection is held while connectors load for the checks.
    let def = checked(&state, &accounts, &name, body).await?;
    let mut warnings = deploy_warnings(&def).await;
    let mut inv = state.inventory.get().await?;
    // Update-only, checked again in its transaction: a profile deleted during the checks
    // above stays deleted (404), and one made with the CLI keeps its origin.
    let stranded = inv.update_profile(&name, &def, &caller.actor())?;
    warnings.extend(crate::inventory::stranded_warning(crate::inventory::SecretOwner::Profile, &name, &stranded));
    let (def, origin) = inv.profile(&name)?.ok_or_else(|| ApiError::NotFound(format!("profile {name}")))?;
    Ok(Json(with_warnings(crate::view::profile(&inv, &name, &def, &origin)?, &name, warnings)))
}

/// The profile's view as made or changed, with `warnings`: what the CLI and a reloaded file
/// say about its deploy targets (a key and its certificate in different targets, an owner
/// this host lacks), which an API client was not told (operator review of stop 41). Allowed
/// changes, so not refused; logged as well.
fn with_warnings(mut view: serde_json::Value, name: &str, warnings: Vec<String>) -> serde_json::Value {
    for why in &warnings {
        tracing::warn!(profile = name, "{why}");
    }
    if let Some(obj) = view.as_object_mut()
        && !warnings.is_empty()
    {
        obj.insert("warnings".into(), warnings.into());
    }
    view
}

/// [`ProfileDef::deploy_warnings`] off the async workers: looking up an owner or group asks
/// the system's user database, which may be a directory server (review of stop 43).
async fn deploy_warnings(def: &ProfileDef) -> Vec<String> {
    let def = def.clone();
    tokio::task::spawn_blocking(move || def.deploy_warnings()).await.unwrap_or_default()
}

#[utoipa::path(delete, operation_id = "delete_profile", path = "/v1/profiles/{name}", tag = "profiles", params(("name" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn delete(State(state): State<AppState>, caller: Caller, Path(name): Path<String>) -> Result<Response, ApiError> {
    caller.require(ADMIN, "delete profiles")?;
    let mut inv = state.inventory.get().await?;
    let (_, origin) = inv.profile(&name)?.ok_or_else(|| ApiError::NotFound(format!("profile {name}")))?;
    refuse_file_defined(&origin, "profile", &name)?;
    inv.delete_profile(&name, &caller.actor())?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(put, operation_id = "set_secret_profile", path = "/v1/profiles/{name}/params/{param}/secret", tag = "profiles",
    params(("name" = String, Path), ("param" = String, Path)),
    request_body(content((SecretBody = "application/json"), (String = "text/plain"))),
    responses((status = 204, description = "Stored encrypted; never readable again"), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn set_secret(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, param)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    super::put_secret(&state, &caller, SecretOwner::Profile, &name, &param, &headers, &body).await
}
