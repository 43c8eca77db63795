//! Bearer-token authentication and the role checks every handler asks first.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::{ApiError, AppState};
use crate::inventory::{ConfigView, Role, TokenCheck};

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Token name.
    pub name: String,
    /// Token role.
    pub role: Role,
    /// The configuration generation the token was checked under. An issuance pins its
    /// profile and account lookups to it, so one request reads the generation once.
    pub config: Option<ConfigView>,
}

impl Caller {
    /// The audit actor for this caller.
    pub fn actor(&self) -> String {
        format!("token:{}", self.name)
    }

    /// Refuses unless the caller has one of `roles`.
    pub fn require(&self, roles: &[Role], action: &'static str) -> Result<(), ApiError> {
        if roles.contains(&self.role) { Ok(()) } else { Err(ApiError::Forbidden { role: self.role.as_str(), action }) }
    }
}

/// Every role may read the inventory.
pub const READ: &[Role] = &[Role::Admin, Role::Operator, Role::Requester, Role::Auditor];
/// Roles that may request certificates.
pub const ISSUE: &[Role] = &[Role::Admin, Role::Operator, Role::Requester];
/// Roles that may change orders of others (approve, decline, poll).
pub const OPERATE: &[Role] = &[Role::Admin, Role::Operator];
/// Roles that may read the audit log.
pub const AUDIT: &[Role] = &[Role::Admin, Role::Operator, Role::Auditor];
/// Roles that may ask for a private key (operators only where the profile allows, requesters
/// only there and for what they requested themselves).
pub const KEY_DOWNLOAD: &[Role] = &[Role::Admin, Role::Operator, Role::Requester];
/// Administration: accounts, profiles, tokens, secrets.
pub const ADMIN: &[Role] = &[Role::Admin];

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let mut given = parts.headers.get_all(axum::http::header::AUTHORIZATION).iter();
        let header = given.next().ok_or(ApiError::Unauthorized)?;
        // Two credentials are no credential: which one a proxy or a server honours differs.
        if given.next().is_some() {
            return Err(ApiError::BadRequest("the request has more than one Authorization header".into()));
        }
        // The scheme is case-insensitive (RFC 9110 §11.1): `bearer` and `BEARER` count too.
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .ok_or(ApiError::Unauthorized)?
            .1
            .trim();
        if token.is_empty() || token.len() > 200 {
            return Err(ApiError::Unauthorized);
        }
        let mut inv = state.inventory.get().await?;
        let config = inv.config_view()?;
        inv.pin_config(config);
        match inv.authenticate(token)? {
            TokenCheck::Valid(info) => Ok(Caller { name: info.name, role: info.role, config }),
            TokenCheck::Expired(info) => {
                tracing::info!(token = %info.name, "refused an expired API token");
                Err(ApiError::TokenExpired(crate::view::rfc3339(info.expires_at.unwrap_or_default())))
            }
            TokenCheck::Unknown => Err(ApiError::Unauthorized),
        }
    }
}
