//! API bearer tokens. A token is shown once when created; the database keeps its SHA-256.

use base64::Engine;
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::audit::{self, NewAuditEvent};
use super::{CachedSql, Inventory, InventoryError};

/// 9999-12-31T23:59:59Z, the latest a token may expire: the last time RFC 3339 can write with a
/// four-digit year (`token list` printed the raw number past it).
pub const MAX_EXPIRY: i64 = 253_402_300_799;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Accounts, profiles, tokens, secrets — and everything an operator may do.
    Admin,
    /// Issue, renew, revoke, approve; key download where the profile allows.
    Operator,
    /// Issue and renew its own certificates.
    Requester,
    /// Read-only inventory and audit.
    Auditor,
}

impl Role {
    /// The stored word.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Requester => "requester",
            Role::Auditor => "auditor",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = InventoryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Role::Admin),
            "operator" => Ok(Role::Operator),
            "requester" => Ok(Role::Requester),
            "auditor" => Ok(Role::Auditor),
            other => Err(InventoryError::Invalid(format!(
                "unknown role {other:?} (expected admin, operator, requester or auditor)"
            ))),
        }
    }
}

/// A token as listed (never the secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TokenInfo {
    /// Id.
    pub id: i64,
    /// Unique name, used as the actor in audit events (`token:NAME`).
    pub name: String,
    /// Role.
    pub role: Role,
    /// Created (RFC 3339).
    #[serde(serialize_with = "crate::view::time_text")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    /// Revoked (RFC 3339).
    #[serde(serialize_with = "crate::view::time_text_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<i64>,
    /// When it stops being accepted (RFC 3339); never when absent.
    #[serde(serialize_with = "crate::view::time_text_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<i64>,
}

impl TokenInfo {
    /// Whether the token has stopped being accepted by `now` (Unix seconds).
    pub fn expired(&self, now: i64) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

/// What a presented bearer token turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenCheck {
    /// Live: neither revoked nor expired.
    Valid(TokenInfo),
    /// Not revoked, but past its expiry: the caller is told so, not only refused, because
    /// "expired" needs a new token while "unknown" needs the right one.
    Expired(TokenInfo),
    /// No such token, or a revoked one.
    Unknown,
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl Inventory {
    /// Creates a token that is accepted until `expires_at` (Unix seconds; for ever when
    /// `None`) and returns its secret text — the only time it is ever available.
    pub fn create_token(
        &mut self,
        name: &str,
        role: Role,
        expires_at: Option<i64>,
        actor: &str,
    ) -> Result<Zeroizing<String>, InventoryError> {
        if !crate::account::check_name(name) {
            return Err(InventoryError::Invalid(format!(
                "token name {name:?} is invalid: use 1-64 letters, digits, '-', '_' or '.'"
            )));
        }
        let now = self.now();
        // Past the year 9999 no date format shows it (`token list` printed the raw number).
        if expires_at.is_some_and(|at| at > MAX_EXPIRY) {
            return Err(InventoryError::Invalid("the token's expiry is past the year 9999".into()));
        }
        if let Some(at) = expires_at.filter(|at| *at <= now) {
            return Err(InventoryError::Invalid(format!(
                "the token's expiry ({}) is not in the future",
                crate::view::rfc3339(at)
            )));
        }
        let mut raw = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut raw);
        let token = Zeroizing::new(format!("cht_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)));
        let tx = super::write_tx(&mut self.conn)?;
        let revoked: Option<Option<i64>> =
            tx.query_row_cached("SELECT revoked_at FROM tokens WHERE name = ?1", [name], |r| r.get(0)).optional()?;
        match revoked {
            None => {}
            Some(None) => return Err(InventoryError::Conflict(format!("a token named {name} already exists"))),
            // The audit log names tokens: a new token under a revoked one's name would make
            // their actions one actor's.
            Some(Some(_)) => {
                return Err(InventoryError::Conflict(format!(
                    "token {name} was revoked, and a revoked token's name is not given again (the audit log \
                     names actors by it): choose another name"
                )));
            }
        }
        tx.execute_cached(
            "INSERT INTO tokens (name, role, hash, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![name, role.as_str(), hash(&token), now, expires_at],
        )?;
        audit::record(
            &tx,
            now,
            &NewAuditEvent {
                actor,
                action: "token.create",
                object_type: "token",
                object_id: Some(name.into()),
                outcome: "success",
                // RFC 3339, as every time an interface shows (API review of stop 40: Unix seconds).
                detail: serde_json::json!({
                    "role": role.as_str(),
                    "expires_at": expires_at.map(crate::view::rfc3339),
                }),
            },
        )?;
        tx.commit()?;
        Ok(token)
    }

    /// What `token` is: a live token, an expired one, or none the inventory accepts.
    pub fn authenticate(&self, token: &str) -> Result<TokenCheck, InventoryError> {
        let hash = hash(token);
        // Cached while the configuration is unchanged; expiry is a matter of time, so it is
        // judged on every use, after the lookup.
        let found = self.config_lookup(&hash, |inv| {
            Ok(inv
                .conn
                .query_row_cached(
                    "SELECT id, name, role, created_at, revoked_at, expires_at FROM tokens
                     WHERE hash = ?1 AND revoked_at IS NULL",
                    [&hash],
                    token_from_row,
                )
                .optional()?)
        })?;
        Ok(match found {
            Some(info) if info.expired(self.now()) => TokenCheck::Expired(info),
            Some(info) => TokenCheck::Valid(info),
            None => TokenCheck::Unknown,
        })
    }

    /// All tokens.
    pub fn tokens(&self) -> Result<Vec<TokenInfo>, InventoryError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, name, role, created_at, revoked_at, expires_at FROM tokens ORDER BY id")?;
        let rows = stmt.query_map([], token_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Revokes a token by name.
    pub fn revoke_token(&mut self, name: &str, actor: &str) -> Result<(), InventoryError> {
        let now = self.now();
        let tx = super::write_tx(&mut self.conn)?;
        let n = tx.execute_cached(
            "UPDATE tokens SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL",
            params![name, now],
        )?;
        if n == 0 {
            let known = tx.query_row_cached("SELECT 1 FROM tokens WHERE name = ?1", [name], |_| Ok(())).optional()?;
            return Err(match known {
                Some(()) => InventoryError::Conflict(format!("token {name} is already revoked")),
                None => InventoryError::NotFound(format!("token {name}")),
            });
        }
        audit::record(
            &tx,
            now,
            &NewAuditEvent {
                actor,
                action: "token.revoke",
                object_type: "token",
                object_id: Some(name.into()),
                outcome: "success",
                detail: serde_json::json!({}),
            },
        )?;
        tx.commit()?;
        Ok(())
    }
}

fn token_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TokenInfo> {
    let role: String = r.get(2)?;
    Ok(TokenInfo {
        id: r.get(0)?,
        name: r.get(1)?,
        role: role.parse().unwrap_or(Role::Auditor),
        created_at: r.get(3)?,
        revoked_at: r.get(4)?,
        expires_at: r.get(5)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::MasterKey;

    fn role(check: TokenCheck) -> Result<Role, TokenCheck> {
        match check {
            TokenCheck::Valid(info) => Ok(info.role),
            other => Err(other),
        }
    }

    #[test]
    fn a_token_is_accepted_until_its_expiry_and_then_named_as_expired() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut inv = Inventory::open(dir.path(), MasterKey::generate()).expect("open");
        inv.set_clock(Some(1_000));
        let lasting = inv.create_token("ci", Role::Operator, Some(2_000), "test").expect("token");
        let forever = inv.create_token("ops", Role::Auditor, None, "test").expect("token");
        assert_eq!(role(inv.authenticate(&lasting).expect("auth")), Ok(Role::Operator));
        inv.set_clock(Some(1_999));
        assert_eq!(role(inv.authenticate(&lasting).expect("auth")), Ok(Role::Operator), "a second before");
        inv.set_clock(Some(2_000));
        match inv.authenticate(&lasting).expect("auth") {
            TokenCheck::Expired(info) => assert_eq!((info.name.as_str(), info.expires_at), ("ci", Some(2_000))),
            other => panic!("expected expired, got {other:?}"),
        }
        inv.set_clock(Some(i64::MAX / 2));
        assert_eq!(role(inv.authenticate(&forever).expect("auth")), Ok(Role::Auditor), "no expiry: never");
        inv.revoke_token("ci", "test").expect("revoke");
        assert_eq!(inv.authenticate(&lasting).expect("auth"), TokenCheck::Unknown, "revoked outranks expired");
        let listed: Vec<_> = inv.tokens().expect("list").into_iter().map(|t| (t.name, t.expires_at)).collect();
        assert_eq!(listed, [("ci".to_owned(), Some(2_000)), ("ops".to_owned(), None)]);
    }

    #[test]
    fn a_token_that_would_be_born_expired_is_refused_and_nothing_is_stored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut inv = Inventory::open(dir.path(), MasterKey::generate()).expect("open");
        inv.set_clock(Some(1_000));
        for at in [1_000, 10, i64::MIN] {
            let err = inv.create_token("late", Role::Admin, Some(at), "test").expect_err("past expiry");
            assert!(err.to_string().contains("is not in the future"), "{err}");
        }
        assert!(inv.tokens().expect("list").is_empty());
    }
}
