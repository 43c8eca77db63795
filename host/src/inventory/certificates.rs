//! Certificate rows: insert (deduplicated by SHA-256 thumbprint), list with filters, find.

use rusqlite::{OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

use super::audit::{self, NewAuditEvent};
use super::{CachedSql, Inventory, InventoryError, keys, like_escape};
use crate::cert::{self, CertificateInfo};
use crate::csr::San;
use crate::key::{KeyAlgorithm, PrivateKey};

/// Lifecycle status of an inventory certificate (DESIGN.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CertStatus {
    /// In use.
    Active,
    /// Replaced by a renewal.
    Superseded,
    /// Revoked at the CA.
    Revoked,
    /// Past notAfter.
    Expired,
}

impl CertStatus {
    /// The word stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            CertStatus::Active => "active",
            CertStatus::Superseded => "superseded",
            CertStatus::Revoked => "revoked",
            CertStatus::Expired => "expired",
        }
    }
}

impl std::str::FromStr for CertStatus {
    type Err = InventoryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "active" => Ok(CertStatus::Active),
            "superseded" => Ok(CertStatus::Superseded),
            "revoked" => Ok(CertStatus::Revoked),
            "expired" => Ok(CertStatus::Expired),
            other => Err(InventoryError::InvalidStatus(other.to_owned())),
        }
    }
}

/// One inventory certificate as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertificateRecord {
    /// Inventory id.
    pub id: i64,
    /// Status.
    pub status: CertStatus,
    /// Facts parsed when the certificate was stored, read back from their columns. `is_ca`
    /// and `public_key_raw` have no column and are left unset: a leaf never is a CA, and
    /// nothing matches keys against a stored record (parse `pem` for that). Reading them back
    /// by parsing every certificate cost a parse per row on every read, 6% of serve's CPU
    /// under issuance load, where the 201 body reads the stored row.
    #[serde(flatten)]
    pub info: CertificateInfo,
    /// Leaf PEM.
    pub pem: String,
    /// Chain PEM (leaf-first order, without the leaf); empty when unknown.
    pub chain_pem: String,
    /// How it got here: `import`, `issue`, ...
    pub source: String,
    /// Profile it was issued under.
    pub profile: Option<String>,
    /// CA account that issued it.
    pub account: Option<String>,
    /// Private key id, when the inventory holds the key.
    pub key_id: Option<i64>,
    /// The certificate this one replaced.
    pub predecessor_id: Option<i64>,
    /// When stored, Unix seconds.
    pub created_at: i64,
}

/// A certificate to store.
#[derive(Debug)]
pub struct NewCertificate<'a> {
    /// Leaf DER.
    pub der: &'a [u8],
    /// Chain DER, leaf-first order.
    pub chain: &'a [Vec<u8>],
    /// Its private key, when known; it must match the certificate.
    pub key: Option<&'a PrivateKey>,
    /// `import`, `issue`, `renew`, ...
    pub source: &'a str,
    /// Profile name.
    pub profile: Option<&'a str>,
    /// CA account name.
    pub account: Option<&'a str>,
    /// Predecessor id.
    pub predecessor_id: Option<i64>,
}

/// Result of an insert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertOutcome {
    /// Stored under this id.
    Inserted(i64),
    /// Already in the inventory under this id (same SHA-256 thumbprint); nothing changed.
    Duplicate(i64),
}

/// Filters for [`Inventory::list`]. All set filters must match.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Active certificates whose notAfter falls within this many days from now.
    pub expiring_within_days: Option<u32>,
    /// Only this status.
    pub status: Option<CertStatus>,
    /// Substring of CN or any SAN (case-insensitive).
    pub search: Option<String>,
    /// Substring of the issuer DN (case-insensitive).
    pub issuer: Option<String>,
    /// Only ids greater than this (cursor pagination).
    pub after_id: Option<i64>,
    /// The serial number, hex (colons, case and leading zeros as any tool prints them).
    pub serial: Option<String>,
    /// Only certificates issued or renewed by this profile (exact name).
    pub profile: Option<String>,
    /// At most this many rows (0 = no limit).
    pub limit: u32,
}

/// [`Inventory::list`]'s statement for the filters `filter` sets: `?1` the horizon, `?2` now,
/// `?3` the status, `?4` the search pattern, `?5` the issuer pattern, `?6` the cursor, `?7`
/// the serial, `?8` the limit, `?9` the profile.
fn list_sql(filter: &ListFilter) -> String {
    // Only the filters that are set go into the WHERE clause: a catch-all shape
    // (`?1 IS NULL OR ...`) hides the conditions from the planner, which then walks the
    // whole table in id order (350 ms for the 30-day window of 1 M certificates); with the
    // plain conditions it ranges over certificates_status_not_after (4 ms).
    let mut clauses = vec!["id > ?6"];
    if filter.expiring_within_days.is_some() {
        clauses.push("status = 'active' AND not_after >= ?2 AND not_after <= ?1");
    }
    // Most certificates are active or superseded: a page of those is found walking ids
    // (`+status`), where the status index read and sorted every one of them (45 ms at
    // 1 M for a page); a rare status (revoked, expired) is read through the index.
    match filter.status {
        Some(CertStatus::Active | CertStatus::Superseded) => clauses.push("+status = ?3"),
        Some(CertStatus::Revoked | CertStatus::Expired) => clauses.push("status = ?3"),
        None => {}
    }
    if filter.search.is_some() {
        clauses.push("(common_name LIKE ?4 ESCAPE '\\' OR sans LIKE ?4 ESCAPE '\\')");
    }
    if filter.issuer.is_some() {
        clauses.push("issuer LIKE ?5 ESCAPE '\\'");
    }
    // No index: a serial is looked up by hand, not by every issuance's write.
    if filter.serial.is_some() {
        clauses.push("ltrim(serial, '0') = ?7");
    }
    // Through `certificates_profile`, which holds each profile's ids in order.
    if filter.profile.is_some() {
        clauses.push("profile = ?9");
    }
    // The page's ids first, then their rows: sorting whole rows (certificate and chain PEM)
    // carried every match of the window through the sorter, not just the page — 55 ms for
    // a page of 1,000 of the 30-day window of 1 M certificates, 9 ms with the ids alone
    // (sorted straight off certificates_status_not_after, which holds them).
    format!(
        "SELECT {COLUMNS} FROM certificates WHERE id IN \
         (SELECT id FROM certificates WHERE {} ORDER BY id LIMIT ?8) ORDER BY id",
        clauses.join(" AND ")
    )
}

/// The chain is read from `chains` (schema migration 5); `certificates.chain_pem` is empty.
const COLUMNS: &str = "id, status, pem, \
     COALESCE((SELECT chains.pem FROM chains WHERE chains.id = certificates.chain_id), ''), \
     serial, sha1, sha256, subject, issuer, common_name, sans, not_before, not_after, \
     key_algorithm, key_bits, source, profile, account, key_id, predecessor_id, created_at";

fn from_row(r: &Row<'_>) -> rusqlite::Result<CertificateRecord> {
    let status: String = r.get(1)?;
    let pem: String = r.get(2)?;
    let sans: String = r.get(10)?;
    let family: String = r.get(13)?;
    let bits: u32 = r.get(14)?;
    let key = match family.as_str() {
        "ec-p256" => KeyAlgorithm::EcP256,
        "ec-p384" => KeyAlgorithm::EcP384,
        "ec-p521" => KeyAlgorithm::EcP521,
        "ed25519" => KeyAlgorithm::Ed25519,
        _ => KeyAlgorithm::Rsa { bits },
    };
    Ok(CertificateRecord {
        id: r.get(0)?,
        status: status.parse().unwrap_or(CertStatus::Active),
        info: CertificateInfo {
            serial: r.get(4)?,
            sha1: r.get(5)?,
            sha256: r.get(6)?,
            subject: r.get(7)?,
            issuer: r.get(8)?,
            common_name: r.get(9)?,
            sans: serde_json::from_str::<Vec<String>>(&sans)
                .unwrap_or_default()
                .iter()
                .filter_map(|s| San::from_stored(s))
                .collect(),
            not_before: r.get(11)?,
            not_after: r.get(12)?,
            key,
            is_ca: false,
            public_key_raw: Vec::new(),
            other_sans: Vec::new(),
            subject_emails: Vec::new(),
        },
        pem,
        chain_pem: r.get(3)?,
        source: r.get(15)?,
        profile: r.get(16)?,
        account: r.get(17)?,
        key_id: r.get(18)?,
        predecessor_id: r.get(19)?,
        created_at: r.get(20)?,
    })
}

impl Inventory {
    /// Stores a certificate (and its key, sealed) with an audit event, in one transaction.
    /// A certificate already present (same SHA-256) is reported, not inserted twice.
    pub fn insert_certificate(
        &mut self,
        new: &NewCertificate<'_>,
        actor: &str,
    ) -> Result<InsertOutcome, InventoryError> {
        let now = self.now();
        let tx = super::write_tx(&mut self.conn)?;
        let outcome = insert_in(&tx, &self.vault, now, new, Known::default(), actor)?.outcome();
        tx.commit()?;
        Ok(outcome)
    }

    /// Lists certificates matching `filter`, ordered by id.
    pub fn list(&self, filter: &ListFilter) -> Result<Vec<CertificateRecord>, InventoryError> {
        let now = self.now();
        let horizon = filter.expiring_within_days.map(|d| now + i64::from(d) * 86_400);
        // SQLite's LIKE ends a pattern at a NUL: `%00zzzz` matched every certificate
        // (red-team walkthrough of stop 48). No stored text holds one.
        for (name, text) in [("search", &filter.search), ("issuer", &filter.issuer)] {
            if text.as_ref().is_some_and(|t| t.contains('\0')) {
                return Err(InventoryError::InvalidFilter(format!("{name} may not hold a NUL character")));
            }
        }
        let search = filter.search.as_ref().map(|s| format!("%{}%", like_escape(s)));
        let issuer = filter.issuer.as_ref().map(|s| format!("%{}%", like_escape(s)));
        let limit = if filter.limit == 0 { i64::MAX } else { i64::from(filter.limit) };
        let serial = filter.serial.as_deref().map(normal_serial);
        if serial.as_deref().is_some_and(|s| !s.bytes().all(|b| b.is_ascii_hexdigit())) {
            // The text as given, not as normalised ("x732b" for "0x732b"; API review of stop 40).
            return Err(InventoryError::InvalidFilter(format!(
                "serial {:?} is not a hexadecimal number",
                crate::view::echoed(filter.serial.as_deref().unwrap_or_default())
            )));
        }
        let sql = list_sql(filter);
        let mut stmt = self.conn.prepare_cached(&sql)?;
        // Parameters a clause does not mention are still bound: rusqlite binds by index
        // and SQLite allows gaps only when the highest index is used: ?8 always is, and ?9
        // is bound only when its clause is there.
        let (status, after_id) = (filter.status.map(CertStatus::as_str), filter.after_id.unwrap_or(0));
        let mut values: Vec<&dyn rusqlite::ToSql> =
            vec![&horizon, &now, &status, &search, &issuer, &after_id, &serial, &limit];
        if let Some(profile) = &filter.profile {
            values.push(profile);
        }
        let rows = stmt.query_map(values.as_slice(), from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// What to deploy instead of certificate `id`: of the certificates that renewed or
    /// reissued it, and theirs in turn, the newest active one, else the newest.
    pub fn successor(&self, id: i64) -> Result<Option<i64>, InventoryError> {
        Ok(self
            .conn
            .query_row_cached(
                "WITH RECURSIVE later(id, status) AS (
                     SELECT id, status FROM certificates WHERE predecessor_id = ?1
                     UNION SELECT c.id, c.status FROM certificates c JOIN later ON c.predecessor_id = later.id)
                 SELECT id FROM later ORDER BY status = 'active' DESC, id DESC LIMIT 1",
                [id],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Finds one certificate by inventory id, SHA-1 or SHA-256 thumbprint (hex, colons and
    /// case ignored), or a SHA-256 or SHA-1 prefix of at least [`MIN_PREFIX`] hex digits — what `list`
    /// shows — when exactly one certificate has it.
    pub fn find(&self, id_or_thumbprint: &str) -> Result<Option<CertificateRecord>, InventoryError> {
        let needle: String =
            id_or_thumbprint.trim().chars().filter(|c| *c != ':').collect::<String>().to_ascii_lowercase();
        let hex = !needle.is_empty() && needle.bytes().all(|b| b.is_ascii_hexdigit());
        let column = match needle.len() {
            40 if hex => "sha1",
            64 if hex => "sha256",
            // Ids stay far below 16 digits; 16 or more are a prefix even when all digits.
            n if n < MIN_PREFIX && hex && needle.bytes().all(|b| b.is_ascii_digit()) => "id",
            n if (MIN_PREFIX..64).contains(&n) && hex => return self.find_by_prefix(&needle),
            _ => return Err(InventoryError::BadLookup(crate::view::echoed(id_or_thumbprint))),
        };
        if column == "id" {
            let id: i64 =
                needle.parse().map_err(|_| InventoryError::BadLookup(crate::view::echoed(id_or_thumbprint)))?;
            return by_id(&self.conn, id);
        }
        let sql = format!("SELECT {COLUMNS} FROM certificates WHERE {column} = ?1 ORDER BY id LIMIT 1");
        Ok(self.conn.query_row_cached(&sql, [&needle], from_row).optional()?)
    }

    /// The one certificate whose SHA-256 — or, shorter than one, SHA-1 — starts with `prefix`
    /// (lowercase hex), each read as a range of its index; two or more is an error naming the
    /// prefix, never a guess. (A SHA-1 prefix found nothing, though the refusal of a bad
    /// lookup offers "the first 16 or more hex digits" of either: API walkthrough of stop 48.)
    fn find_by_prefix(&self, prefix: &str) -> Result<Option<CertificateRecord>, InventoryError> {
        // 'g' sorts after every hex digit: [prefix, prefix + "g") is every hash with the prefix.
        let end = format!("{prefix}g");
        let mut found: Vec<CertificateRecord> = Vec::new();
        for column in ["sha256", "sha1"] {
            if column == "sha1" && prefix.len() >= 40 {
                break;
            }
            let sql = format!(
                "SELECT {COLUMNS} FROM certificates WHERE {column} >= ?1 AND {column} < ?2 ORDER BY id LIMIT 2"
            );
            let mut stmt = self.conn.prepare_cached(&sql)?;
            for record in stmt.query_map([prefix, end.as_str()], from_row)? {
                let record = record?;
                if !found.iter().any(|f| f.id == record.id) {
                    found.push(record);
                }
            }
        }
        match found.len() {
            0 | 1 => Ok(found.pop()),
            _ => Err(InventoryError::Invalid(format!(
                "thumbprint prefix {prefix} matches more than one certificate; give more of the thumbprint"
            ))),
        }
    }

    /// The stored certificates certifying any of `public_keys` (raw subjectPublicKey bits),
    /// whatever their status: what an import says of a key file that matches none of its own
    /// certificates (one stored without its key gets it). One scan for all the keys: the
    /// column has no index, which every issuance would pay for to serve a rare import.
    /// Certificates stored before schema 16 carry no digest and are parsed.
    pub fn certificates_on_keys(&self, public_keys: &[&[u8]]) -> Result<Vec<KeyHolder>, InventoryError> {
        let wanted: std::collections::HashSet<String> =
            public_keys.iter().map(|raw| keys::identity_sha256(raw)).collect();
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, pem, key_id IS NOT NULL, public_sha256 FROM certificates ORDER BY id")?;
        let mut rows = stmt.query([])?;
        let mut found = Vec::new();
        while let Some(r) = rows.next()? {
            let digest: Option<String> = r.get(3)?;
            if digest.as_ref().is_some_and(|d| !wanted.contains(d)) {
                continue;
            }
            let pem: String = r.get(1)?;
            let Some(der) = cert::pem_certificates(&pem).ok().and_then(|d| d.into_iter().next()) else { continue };
            let Ok(info) = CertificateInfo::from_der(&der) else { continue };
            // The digest names an RSA key by its modulus; the key itself must be the same.
            if public_keys.contains(&info.public_key_raw.as_slice()) {
                found.push(KeyHolder { id: r.get(0)?, der, has_key: r.get(2)?, info });
            }
        }
        Ok(found)
    }

    /// The profiles stored key `key_id` was requested or certified under — its certificates'
    /// and its orders' (which outlive a deleted certificate), those without a profile (an
    /// import) left out: a key kept through a renewal into another profile is still the first
    /// profile's too, and whether it may be handed out is every one of theirs to say.
    pub fn profiles_on_key(&self, key_id: i64) -> Result<Vec<String>, InventoryError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT profile FROM certificates WHERE key_id = ?1 AND profile IS NOT NULL
             UNION SELECT profile FROM orders WHERE key_id = ?1 AND profile IS NOT NULL AND profile <> ''",
        )?;
        let rows = stmt.query_map([key_id], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Number of certificates stored.
    pub fn count(&self) -> Result<u64, InventoryError> {
        Ok(self.conn.query_row_cached("SELECT COUNT(*) FROM certificates", [], |r| r.get(0))?)
    }
}

/// A stored certificate on a given public key ([`Inventory::certificates_on_keys`]).
#[derive(Debug)]
pub struct KeyHolder {
    /// Its inventory id.
    pub id: i64,
    /// The certificate, DER.
    pub der: Vec<u8>,
    /// Whether its private key is stored with it.
    pub has_key: bool,
    /// The certificate, parsed (its public key is the one asked for).
    pub info: CertificateInfo,
}

/// A serial number as stored (lowercase hex) without what tools add or drop: colons and
/// spaces (`openssl x509 -serial` writes none, browsers and `certutil` write them), case, and
/// leading zeros (DER's sign byte, which OpenSSL leaves out and the stored form keeps).
fn normal_serial(text: &str) -> String {
    let hex: String = text.chars().filter(|c| !matches!(c, ':' | ' ')).collect::<String>().to_ascii_lowercase();
    // `0x…`, as Python's hex() and many tools print a serial.
    let hex = hex.strip_prefix("0x").unwrap_or(&hex);
    hex.trim_start_matches('0').to_owned()
}

/// Fewest hex digits of a SHA-256 thumbprint that name a certificate: the 16 `list` shows.
pub const MIN_PREFIX: usize = 16;

/// The certificate stored under `id`, read on `conn` (inside a change: as that change sees it).
pub(crate) fn by_id(conn: &rusqlite::Connection, id: i64) -> Result<Option<CertificateRecord>, InventoryError> {
    Ok(conn
        .query_row_cached(&format!("SELECT {COLUMNS} FROM certificates WHERE id = ?1"), [id], from_row)
        .optional()?)
}

/// What the caller already has for a certificate being inserted, so it is not done twice.
#[derive(Default, Clone, Copy)]
pub(crate) struct Known<'a> {
    /// The certificate, parsed (by the verification of an issued certificate).
    pub info: Option<&'a CertificateInfo>,
    /// Its key's row, already sealed with the order; the caller proved it is the
    /// certificate's key (an issued certificate is verified against the order's CSR).
    pub key_id: Option<i64>,
}

/// Inserts inside the caller's transaction, so other changes (an order closing) commit with it.
pub(crate) fn insert_in(
    tx: &rusqlite::Connection,
    vault: &crate::vault::MasterKey,
    now: i64,
    new: &NewCertificate<'_>,
    known: Known<'_>,
    actor: &str,
) -> Result<Stored, InventoryError> {
    let parsed;
    let info = match known.info {
        Some(info) => info,
        None => {
            parsed = CertificateInfo::from_der(new.der).map_err(|e| InventoryError::Invalid(e.to_string()))?;
            &parsed
        }
    };
    if let Some(key) = new.key
        && key.public_key_raw() != info.public_key_raw
    {
        return Err(InventoryError::KeyMismatch);
    }
    // An imported certificate whose key the host holds for an order and for no certificate
    // (its certificate was fetched at the CA by hand) gets it: the key was stranded, sealed but
    // linked to nothing (diff review of stop 39). Only such a key: one another certificate
    // has would be handed to whatever names an import claims (a CA listing a certificate of
    // its choosing), and one revoked for keyCompromise is never handed out again. Imports
    // only: an issuance knows its key.
    let known = match (known.key_id, new.key, new.source) {
        (None, None, "import" | "ca-import") => Known {
            key_id: tx
                .query_row_cached(
                    "SELECT k.id FROM keys k WHERE k.public_sha256 = ?1
                       AND NOT EXISTS (SELECT 1 FROM certificates c WHERE c.key_id = k.id)
                       AND NOT EXISTS (SELECT 1 FROM compromised_keys ck WHERE ck.public_sha256 = ?2)",
                    params![keys::public_sha256(&info.public_key_raw), keys::identity_sha256(&info.public_key_raw)],
                    |r| r.get(0),
                )
                .optional()?,
            ..known
        },
        _ => known,
    };
    if let Some((id, key_id, stored_chain, account)) = tx
        .query_row_cached(
            "SELECT id, key_id, chain_id, account FROM certificates WHERE sha256 = ?1",
            [&info.sha256],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Option<i64>>(1)?,
                    r.get::<_, Option<i64>>(2)?,
                    r.get::<_, Option<String>>(3)?,
                ))
            },
        )
        .optional()?
    {
        // What a later source knows and the stored row lacks is added: the chain of a
        // certificate first imported alone (certbot's cert.pem, then fullchain.pem), the CA
        // account of one first imported from a file (then `import-from-account`), which is
        // what lets certhost revoke it.
        let chain_added = stored_chain.is_none() && !new.chain.is_empty();
        if chain_added {
            let chain_pem: String = new.chain.iter().map(|d| cert::to_pem(d)).collect();
            let chain = chain_id(tx, &chain_pem)?;
            tx.execute_cached("UPDATE certificates SET chain_id = ?2 WHERE id = ?1", params![id, chain])?;
        }
        let account_added = account.is_none() && new.account.is_some();
        if account_added {
            tx.execute_cached("UPDATE certificates SET account = ?2 WHERE id = ?1", params![id, new.account])?;
        }
        if chain_added || account_added {
            audit::record(
                tx,
                now,
                &NewAuditEvent {
                    actor,
                    action: "certificate.complete",
                    object_type: "certificate",
                    object_id: Some(id.to_string()),
                    outcome: "success",
                    detail: serde_json::json!({
                        "sha256": info.sha256,
                        "chain_added": chain_added,
                        "account": if account_added { new.account } else { None },
                    }),
                },
            )?;
        }
        // Already stored; a matching key it lacked so far is added (re-import with --key).
        let added = match (key_id, known.key_id, new.key) {
            (Some(_), ..) => None,
            (None, Some(id), _) => Some(id),
            (None, None, Some(key)) => Some(keys::insert(tx, vault, key, now)?),
            (None, None, None) => None,
        };
        if let Some(key_id) = added {
            tx.execute_cached("UPDATE certificates SET key_id = ?2 WHERE id = ?1", params![id, key_id])?;
            audit::record(
                tx,
                now,
                &NewAuditEvent {
                    actor,
                    action: "certificate.key_import",
                    object_type: "certificate",
                    object_id: Some(id.to_string()),
                    outcome: "success",
                    detail: serde_json::json!({ "sha256": info.sha256 }),
                },
            )?;
        }
        return Ok(Stored::Existing(id));
    }
    let key_id = match (known.key_id, new.key) {
        (Some(id), _) => Some(id),
        (None, Some(key)) => Some(keys::insert(tx, vault, key, now)?),
        (None, None) => None,
    };
    let status = if info.not_after < now { CertStatus::Expired } else { CertStatus::Active };
    let sans: Vec<String> = info.sans.iter().map(ToString::to_string).collect();
    let chain_pem: String = new.chain.iter().map(|d| cert::to_pem(d)).collect();
    let chain_id = chain_id(tx, &chain_pem)?;
    let pem = cert::to_pem(new.der);
    // The id is chosen here, above every id ever deleted (schema migration 9), so a new
    // certificate never inherits a deleted one's audit history.
    tx.execute_cached(
        "INSERT INTO certificates (id, pem, chain_id, serial, sha1, sha256, subject, issuer, common_name, sans,
             not_before, not_after, key_algorithm, key_bits, status, source, profile, account, key_id,
             predecessor_id, created_at, public_sha256)
         VALUES (max(coalesce((SELECT last_deleted FROM certificate_ids WHERE id = 1), 0),
                     (SELECT coalesce(max(id), 0) FROM certificates)) + 1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)",
        params![
            pem,
            chain_id,
            info.serial,
            info.sha1,
            info.sha256,
            info.subject,
            info.issuer,
            info.common_name,
            serde_json::to_string(&sans).unwrap_or_else(|_| "[]".into()),
            info.not_before,
            info.not_after,
            info.key.family(),
            info.key.bits(),
            status.as_str(),
            new.source,
            new.profile,
            new.account,
            key_id,
            new.predecessor_id,
            now,
            keys::identity_sha256(&info.public_key_raw)
        ],
    )?;
    let id = tx.last_insert_rowid();
    audit::record(
        tx,
        now,
        &NewAuditEvent {
            actor,
            action: &format!("certificate.{}", new.source),
            object_type: "certificate",
            object_id: Some(id.to_string()),
            outcome: "success",
            detail: serde_json::json!({
                "subject": info.subject,
                "sha256": info.sha256,
                "with_key": key_id.is_some(),
                "status": status.as_str(),
            }),
        },
    )?;
    // The row as `from_row` would read it back: the facts without the two that have no
    // column (see `CertificateRecord::info`).
    Ok(Stored::New(Box::new(CertificateRecord {
        id,
        status,
        info: CertificateInfo { is_ca: false, public_key_raw: Vec::new(), ..info.clone() },
        pem,
        chain_pem,
        source: new.source.to_owned(),
        profile: new.profile.map(str::to_owned),
        account: new.account.map(str::to_owned),
        key_id,
        predecessor_id: new.predecessor_id,
        created_at: now,
    })))
}

/// The id of `chain_pem` in `chains`, stored now if it is new; `None` for no chain. A chain is
/// kept once however many certificates came with it (schema migration 5).
fn chain_id(tx: &rusqlite::Connection, chain_pem: &str) -> Result<Option<i64>, InventoryError> {
    if chain_pem.is_empty() {
        return Ok(None);
    }
    if let Some(id) =
        tx.query_row_cached("SELECT id FROM chains WHERE pem = ?1", [chain_pem], |r| r.get(0)).optional()?
    {
        return Ok(Some(id));
    }
    tx.execute_cached("INSERT INTO chains (pem) VALUES (?1)", [chain_pem])?;
    Ok(Some(tx.last_insert_rowid()))
}

/// What [`insert_in`] did: the record it wrote (so the caller needs no read-back), or the id
/// of the certificate already stored with the same SHA-256.
#[derive(Debug)]
pub(crate) enum Stored {
    /// Inserted now.
    New(Box<CertificateRecord>),
    /// Already in the inventory under this id.
    Existing(i64),
}

impl Stored {
    /// The public form of the outcome.
    pub(crate) fn outcome(&self) -> InsertOutcome {
        match self {
            Stored::New(record) => InsertOutcome::Inserted(record.id),
            Stored::Existing(id) => InsertOutcome::Duplicate(*id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{ListFilter, list_sql};
    use crate::inventory::CertStatus;

    /// `list --profile` (and `GET /v1/certificates?profile=`) pages one profile's
    /// certificates through its index in id order, with or without a status, and a
    /// certificate of another profile is not listed.
    #[test]
    fn a_profiles_certificates_are_listed_through_its_index() {
        let (_dir, inv) = super::super::scratch();
        for (n, profile) in [("01", "web"), ("02", "mail"), ("03", "web"), ("04", "web")] {
            inv.conn
                .execute(
                    "INSERT INTO certificates (pem, serial, sha1, sha256, subject, issuer, sans, not_before, not_after,
                         key_algorithm, key_bits, status, source, created_at, profile)
                     VALUES ('leaf', ?1, ?1, ?1, 'CN=a', 'CN=ca', '[]', 0, 100000, 'ec-p256', 256, 'active', 'issue', 0, ?2)",
                    rusqlite::params![n, profile],
                )
                .expect("certificate");
        }
        for status in [None, Some(CertStatus::Active)] {
            let filter = ListFilter { profile: Some("web".into()), status, ..ListFilter::default() };
            let plan = super::super::query_plan(&inv.conn, &list_sql(&filter));
            assert!(plan.contains("INDEX certificates_profile "), "{plan}");
            assert!(!plan.contains("TEMP B-TREE"), "no sort: {plan}");
        }
        let ids = |filter: ListFilter| -> Vec<i64> { inv.list(&filter).expect("list").iter().map(|r| r.id).collect() };
        let web =
            |after_id, limit| ListFilter { profile: Some("web".into()), after_id, limit, ..ListFilter::default() };
        assert_eq!(ids(web(None, 0)), [1, 3, 4]);
        assert_eq!(ids(web(None, 2)), [1, 3], "a page");
        assert_eq!(ids(web(Some(3), 2)), [4], "the next page");
        assert!(ids(ListFilter { profile: Some("none".into()), ..ListFilter::default() }).is_empty());
        assert_eq!(ids(ListFilter::default()), [1, 2, 3, 4], "no profile filter: all");
    }
}
