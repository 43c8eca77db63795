//! `/v1/tokens`: API tokens (admins only). A token's secret is shown once, at creation.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::{ADMIN, Caller};
use super::{ApiError, AppState, Problem};
use crate::inventory::{Role, TokenInfo};

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new().route("/v1/tokens", get(list).post(create)).route("/v1/tokens/{name}", axum::routing::delete(revoke))
}

/// Tokens (never their secrets).
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenList {
    /// By name.
    items: Vec<TokenInfo>,
}

#[utoipa::path(get, operation_id = "list_tokens", path = "/v1/tokens", tag = "tokens",
    responses((status = 200, body = TokenList), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<super::NoQuery, ApiError>,
) -> Result<Json<TokenList>, ApiError> {
    caller.require(ADMIN, "manage tokens")?;
    query?;
    let inv = state.inventory.get().await?;
    Ok(Json(TokenList { items: inv.tokens()? }))
}

/// A new token.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// Unique name (shown in the audit log as `token:NAME`).
    name: String,
    /// `admin`, `operator`, `requester` or `auditor`.
    role: Role,
    /// When the token stops being accepted (in the future): RFC 3339, or Unix seconds; absent,
    /// it lasts until revoked.
    #[serde(default, deserialize_with = "crate::view::time_input")]
    #[schema(schema_with = time_input_schema)]
    expires_at: Option<i64>,
}

/// What [`crate::view::time_input`] takes, said so to clients: the document claimed a date-time
/// string only while Unix seconds were accepted too.
fn time_input_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, OneOfBuilder, SchemaFormat, Type};
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))),
        )
        .item(
            ObjectBuilder::new().schema_type(Type::Integer).format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64))),
        )
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .description(Some(
            "When the token stops being accepted (in the future): RFC 3339, or Unix seconds; absent or null, it lasts \
             until revoked.",
        ))
        .build()
        .into()
}

/// The created token: its secret appears here and nowhere else, ever.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedToken {
    /// Name.
    name: String,
    /// Role.
    #[schema(value_type = Role)]
    role: &'static str,
    /// When it stops being accepted (RFC 3339); absent: until revoked.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "crate::view::time_text_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    expires_at: Option<i64>,
    /// The bearer token.
    token: String,
}

#[utoipa::path(post, operation_id = "create_token", path = "/v1/tokens", tag = "tokens", request_body = NewToken,
    responses((status = 201, body = CreatedToken), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<super::json::Body<NewToken>, ApiError>,
) -> Result<Response, ApiError> {
    caller.require(ADMIN, "manage tokens")?;
    let super::json::Body(body) = body?;
    let mut inv = state.inventory.get().await?;
    let token = inv.create_token(&body.name, body.role, body.expires_at, &caller.actor())?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            name: body.name,
            role: body.role.as_str(),
            expires_at: body.expires_at,
            token: token.to_string(),
        }),
    )
        .into_response())
}

#[utoipa::path(delete, operation_id = "revoke_token", path = "/v1/tokens/{name}", tag = "tokens", params(("name" = String, Path)),
    responses((status = 204, description = "Revoked (a token cannot revoke itself: 409)"), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn revoke(State(state): State<AppState>, caller: Caller, Path(name): Path<String>) -> Result<Response, ApiError> {
    caller.require(ADMIN, "manage tokens")?;
    if name == caller.name {
        // Revoking the token in hand could lock the last admin out of the API.
        return Err(ApiError::Conflict(
            "a token cannot revoke itself; use another admin token or `certhost token revoke`".into(),
        ));
    }
    let mut inv = state.inventory.get().await?;
    inv.revoke_token(&name, &caller.actor())?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
