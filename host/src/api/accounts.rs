//! `/v1/accounts`: CA accounts — list, get, create, update, activate, deactivate, delete,
//! test, and write-only secrets.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::{ADMIN, Caller, READ};
use super::{ApiError, AppState, Problem, SecretBody};
use crate::account::{AccountDef, AccountStatus};
use crate::inventory::{InventoryError, SecretOwner};
use crate::issue::Pipeline;
use crate::view::AccountView;

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/accounts", get(list).post(create))
        .route("/v1/accounts/{name}", get(show).put(update).delete(delete))
        .route("/v1/accounts/{name}/activate", post(activate))
        .route("/v1/accounts/{name}/deactivate", post(deactivate))
        .route("/v1/accounts/{name}/test", post(test))
        .route("/v1/accounts/{name}/params/{param}/secret", put(set_secret))
}

/// A list of accounts.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountList {
    /// By name.
    items: Vec<AccountView>,
}

#[utoipa::path(get, operation_id = "list_accounts", path = "/v1/accounts", tag = "accounts",
    responses((status = 200, body = AccountList), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<super::NoQuery, ApiError>,
) -> Result<Json<AccountList>, ApiError> {
    caller.require(READ, "read accounts")?;
    query?;
    let inv = state.inventory.get().await?;
    let items = inv.accounts()?.iter().map(|a| view(&state, &inv, a)).collect::<Result<Vec<_>, _>>()?;
    Ok(Json(AccountList { items }))
}

#[utoipa::path(get, operation_id = "show_account", path = "/v1/accounts/{name}", tag = "accounts", params(("name" = String, Path)),
    responses((status = 200, body = AccountView), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn show(
    State(state): State<AppState>,
    caller: Caller,
    _: super::NoQuery,
    Path(name): Path<String>,
) -> Result<Json<AccountView>, ApiError> {
    caller.require(READ, "read accounts")?;
    let inv = state.inventory.get().await?;
    let a = inv.account(&name)?.ok_or_else(|| ApiError::NotFound(format!("account {name}")))?;
    Ok(Json(view(&state, &inv, &a)?))
}

/// The account's view with what only this process knows of it: whether its CA was found
/// unreachable lately, so it is tried after its profiles' other accounts for a while.
fn view(
    state: &AppState,
    inv: &crate::inventory::Inventory,
    a: &crate::account::Account,
) -> Result<AccountView, crate::inventory::InventoryError> {
    let mut view = crate::view::account(inv, a)?;
    view.tried_last_seconds = tried_last_seconds(state, a);
    Ok(view)
}

/// Seconds `a` is still tried last, rounded up: a "0" would read as "tried in its place".
pub(super) fn tried_last_seconds(state: &AppState, a: &crate::account::Account) -> Option<u64> {
    let left = state.connectors.tried_last(&a.name, &a.def)?;
    Some(left.as_secs() + u64::from(left.subsec_nanos() > 0))
}

/// A new account: its name and the fields of `[accounts.NAME]` in certhost.toml (described
/// in the API's document by [`super::definitions::NewAccountDefinition`]).
#[derive(Debug, Deserialize)]
pub struct NewAccount {
    /// Unique name (letters, digits, `-`, `_`, `.`).
    name: String,
    /// The definition, as in certhost.toml (`connector`, `params`, `allowed_hosts`, ...).
    #[serde(flatten)]
    definition: serde_json::Map<String, serde_json::Value>,
}

/// Parses a definition body; serde's own message is not echoed, since it could quote a value.
fn definition(map: serde_json::Map<String, serde_json::Value>) -> Result<AccountDef, ApiError> {
    let def: AccountDef = super::json::from_value(serde_json::Value::Object(map))
        .map_err(|e| ApiError::Unprocessable(format!("the account definition is not valid: {e}")))?;
    refuse_relative(crate::config::relative_path_in_account(&def))?;
    Ok(def)
}

/// Checks a definition, and it against its connector ([`AccountDef::check_connector`]).
async fn checked(state: &AppState, name: &str, def: &AccountDef) -> Result<(), ApiError> {
    def.check(name).map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    def.check_connector(name, &*state.connectors).await.map_err(|e| ApiError::Unprocessable(e.to_string()))
}

#[utoipa::path(post, operation_id = "create_account", path = "/v1/accounts", tag = "accounts", request_body = super::definitions::NewAccountDefinition,
    responses((status = 201, description = "Created (with `warnings` naming `{ env }` and `{ file }` values serve cannot read now)", body = AccountView, headers(("Location" = String, description = "/v1/accounts/{name}"))), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<super::json::Body<NewAccount>, ApiError>,
) -> Result<Response, ApiError> {
    caller.require(ADMIN, "create accounts")?;
    let super::json::Body(body) = body?;
    let def = definition(body.definition)?;
    checked(&state, &body.name, &def).await?;
    let mut inv = state.inventory.get().await?;
    // Create-only in one transaction: of two concurrent creations of one name, one gets 409.
    inv.create_account(&body.name, &def, "api", &caller.actor()).map_err(|e| match e {
        InventoryError::Conflict(_) => ApiError::Conflict(format!(
            "account {} already exists (PUT /v1/accounts/{} to change it)",
            body.name, body.name
        )),
        other => other.into(),
    })?;
    let a = inv.account(&body.name)?.ok_or_else(|| ApiError::Internal("created account vanished".into()))?;
    let mut view = crate::view::account(&inv, &a)?;
    view.warnings = unreadable_references(&state, &a.name, &a.def);
    Ok(super::located(StatusCode::CREATED, &format!("/v1/accounts/{}", a.name), Json(view)))
}

/// What the definition's `{ env }` and `{ file }` values name that `serve` cannot read now, as
/// warnings: the account is stored (the variable may be set before the next start), but each
/// of its calls fails until it can be read, and a 201 without a word hid that (API
/// walkthrough of stop 48). Only the reference and the reason are said, never a value.
fn unreadable_references(state: &AppState, name: &str, def: &AccountDef) -> Vec<String> {
    let owner = format!("account {name}");
    def.params
        .iter()
        .filter_map(|(param, d)| d.value.as_ref().map(|v| (param, v)))
        .filter(|(_, v)| !matches!(v, crate::param::ValueSource::Literal(_)))
        .filter_map(|(param, v)| crate::param::resolve(v, param, &owner, &*state.env).err())
        .map(|e| format!("{e}: every call of this account fails until serve can read it"))
        .collect()
}

#[utoipa::path(put, operation_id = "update_account", path = "/v1/accounts/{name}", tag = "accounts", params(("name" = String, Path)),
    request_body(content = super::definitions::AccountDefinition, description = "The whole definition, as in certhost.toml"),
    responses((status = 200, description = "Updated (with `warnings` when the change emptied the connector cache that orders pending at its CA need, or names `{ env }` and `{ file }` values serve cannot read now)", body = AccountView), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    body: Result<super::json::Body<serde_json::Map<String, serde_json::Value>>, ApiError>,
) -> Result<Json<AccountView>, ApiError> {
    caller.require(ADMIN, "change accounts")?;
    let super::json::Body(body) = body?;
    let gives_status = body.contains_key("status");
    let mut def = definition(body)?;
    {
        let inv = state.inventory.get().await?;
        let existing = inv.account(&name)?.ok_or_else(|| ApiError::NotFound(format!("account {name}")))?;
        refuse_file_defined(&existing.origin, "account", &name)?;
        // A definition without `status` leaves it as it is: an edit must not reactivate an
        // account an operator deactivated (review of stop 31).
        if !gives_status {
            def.status = existing.def.status;
        }
    }
    checked(&state, &name, &def).await?;
    let mut inv = state.inventory.get().await?;
    // Update-only, checked again in its transaction: an account deleted (or taken over by a
    // file) during the connector check above stays so, and this answers 404 (or 409).
    let stranded = inv.update_account(&name, &def, &caller.actor())?;
    let a = inv.account(&name)?.ok_or_else(|| ApiError::NotFound(format!("account {name}")))?;
    let mut view = crate::view::account(&inv, &a)?;
    if let Some(warning) = crate::inventory::stranded_warning(crate::inventory::SecretOwner::Account, &name, &stranded)
    {
        tracing::warn!("{warning}");
        view.warnings.push(warning);
    }
    view.warnings.extend(unreadable_references(&state, &name, &a.def));
    Ok(Json(view))
}

/// Refuses a relative path in a definition sent to the API, which has no directory to
/// resolve it against: stored as it is, it was read against each process's working
/// directory, and `account test` passed where `serve` failed (review of stop 31).
pub(super) fn refuse_relative(path: Option<&std::path::Path>) -> Result<(), ApiError> {
    match path {
        Some(p) => Err(ApiError::Unprocessable(format!(
            "{} is a relative path; give absolute paths to the API, which has no working directory",
            p.display()
        ))),
        None => Ok(()),
    }
}

/// Accounts and profiles from files are changed in their files (the next reload would undo
/// an API change silently otherwise).
pub(super) fn refuse_file_defined(origin: &str, what: &str, name: &str) -> Result<(), ApiError> {
    if crate::inventory::is_file_origin(origin) {
        return Err(ApiError::Conflict(format!(
            "{what} {name} is defined in a configuration file; change it there and reload (SIGHUP)"
        )));
    }
    Ok(())
}

#[utoipa::path(delete, operation_id = "delete_account", path = "/v1/accounts/{name}", tag = "accounts", params(("name" = String, Path)),
    responses((status = 204, description = "Deleted; its audit history stays"), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn delete(State(state): State<AppState>, caller: Caller, Path(name): Path<String>) -> Result<Response, ApiError> {
    caller.require(ADMIN, "delete accounts")?;
    let mut inv = state.inventory.get().await?;
    let existing = inv.account(&name)?.ok_or_else(|| ApiError::NotFound(format!("account {name}")))?;
    refuse_file_defined(&existing.origin, "account", &name)?;
    inv.delete_account(&name, &caller.actor())?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn set_status(
    state: AppState,
    caller: Caller,
    name: String,
    status: AccountStatus,
) -> Result<Json<AccountView>, ApiError> {
    caller.require(ADMIN, "change accounts")?;
    let mut inv = state.inventory.get().await?;
    inv.set_account_status(&name, status, &caller.actor())?;
    let a = inv.account(&name)?.ok_or_else(|| ApiError::NotFound(format!("account {name}")))?;
    Ok(Json(crate::view::account(&inv, &a)?))
}

#[utoipa::path(post, path = "/v1/accounts/{name}/activate", tag = "accounts", params(("name" = String, Path)),
    responses((status = 200, body = AccountView), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn activate(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<AccountView>, ApiError> {
    set_status(state, caller, name, AccountStatus::Active).await
}

#[utoipa::path(post, path = "/v1/accounts/{name}/deactivate", tag = "accounts", params(("name" = String, Path)),
    responses((status = 200, body = AccountView), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn deactivate(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<AccountView>, ApiError> {
    set_status(state, caller, name, AccountStatus::Inactive).await
}

/// Result of a connection test.
#[derive(Debug, Serialize, ToSchema)]
pub struct TestResult {
    /// Account.
    account: String,
    /// Whether `test_connection` succeeded; null when the connector has none (nothing tested).
    ok: Option<bool>,
    /// `ok`, the (redacted) error, or why nothing was tested.
    message: String,
}

#[utoipa::path(post, path = "/v1/accounts/{name}/test", tag = "accounts", params(("name" = String, Path)),
    responses((status = 200, body = TestResult), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn test(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<TestResult>, ApiError> {
    caller.require(ADMIN, "test accounts")?;
    let actor = caller.actor();
    let mut inv = state.inventory.get_for_call().await?;
    let mut p = Pipeline { inventory: &mut inv, connectors: &*state.connectors, env: &*state.env, actor: &actor };
    let result = p.test_account(&name).await?;
    Ok(Json(TestResult { account: name, ok: result.ok(), message: result.message() }))
}

#[utoipa::path(put, operation_id = "set_secret_account", path = "/v1/accounts/{name}/params/{param}/secret", tag = "accounts",
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
    super::put_secret(&state, &caller, SecretOwner::Account, &name, &param, &headers, &body).await
}
