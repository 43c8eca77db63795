//! API bearer tokens. A token is shown once when created; the database keeps its SHA-256.

use base64::Engine;
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::audit::{self, NewAuditEvent};
use super::{CachedSql, Inventory, InventoryError};

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
    /// Created, Unix seconds.
    pub created_at: i64,
    /// Revoked, Unix seconds.
    pub revoked_at: Option<i64>,
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl Inventory {
    /// Creates a token and returns its secret text — the only time it is ever available.
    pub fn create_token(&mut self, name: &str, role: Role, actor: &str) -> Result<Zeroizing<String>, InventoryError> {
        if !crate::account::check_name(name) {
            return Err(InventoryError::Invalid(format!(
                "token name {name:?} is invalid: use 1-64 letters, digits, '-', '_' or '.'"
            )));
        }
        let mut raw = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut raw);
        let token = Zeroizing::new(format!("cht_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)));
        let now = self.now();
        let tx = super::write_tx(&mut self.conn)?;
        let exists: Option<i64> =
            tx.query_row_cached("SELECT id FROM tokens WHERE name = ?1", [name], |r| r.get(0)).optional()?;
        if exists.is_some() {
            return Err(InventoryError::Invalid(format!("a token named {name} already exists")));
        }
        tx.execute_cached(
            "INSERT INTO tokens (name, role, hash, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![name, role.as_str(), hash(&token), now],
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
                detail: serde_json::json!({ "role": role.as_str() }),
            },
        )?;
        tx.commit()?;
        Ok(token)
    }

    /// The live (not revoked) token matching `token`, if any.
    pub fn authenticate(&self, token: &str) -> Result<Option<TokenInfo>, InventoryError> {
        let hash = hash(token);
        self.config_lookup(&hash, |inv| {
            Ok(inv
                .conn
                .query_row_cached(
                    "SELECT id, name, role, created_at, revoked_at FROM tokens WHERE hash = ?1 AND revoked_at IS NULL",
                    [&hash],
                    token_from_row,
                )
                .optional()?)
        })
    }

    /// All tokens.
    pub fn tokens(&self) -> Result<Vec<TokenInfo>, InventoryError> {
        let mut stmt =
            self.conn.prepare_cached("SELECT id, name, role, created_at, revoked_at FROM tokens ORDER BY id")?;
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
            return Err(InventoryError::NotFound(format!("live token {name}")));
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
    })
}
