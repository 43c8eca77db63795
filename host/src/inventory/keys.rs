//! Private keys at rest: sealed PKCS#8 (invariant 3), bound to their public key.
//!
//! The associated data of each sealed key is its public key's SHA-256, so a sealed blob
//! copied onto another row does not open.

use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

use super::{CachedSql, Inventory, InventoryError};
use crate::key::PrivateKey;
use crate::vault::MasterKey;

fn aad(public_sha256: &str) -> Vec<u8> {
    format!("certhost/key/v1/{public_sha256}").into_bytes()
}

/// How a public key is named in the inventory (`keys`, `certificates`, `compromised_keys`): the
/// SHA-256 of its raw bits (a certificate's or CSR's subjectPublicKey), in hex.
pub(crate) fn public_sha256(public_key_raw: &[u8]) -> String {
    hex::encode(Sha256::digest(public_key_raw))
}

/// How a public key is named where compromise is concerned (`certificates.public_sha256`,
/// `compromised_keys`): [`public_sha256`], except that an RSA key is named by its modulus
/// alone. Whoever holds a compromised RSA key's primes can sign a CSR with the same modulus
/// and another public exponent, whose whole-key digest is new (review of stop 39).
pub(crate) fn identity_sha256(public_key_raw: &[u8]) -> String {
    // RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }, and nothing after.
    // An EC point starts 0x04 and an Ed25519 key has no such framing; should one ever parse,
    // it is still named the same way every time, which is all that matching needs.
    let modulus = crate::der::first_object(public_key_raw)
        .filter(|(tag, _, rest)| *tag == 0x30 && rest.is_empty())
        .and_then(|(_, body, _)| {
            let (n_tag, n, after) = crate::der::first_object(body)?;
            let (e_tag, _, end) = crate::der::first_object(after)?;
            (n_tag == 0x02 && e_tag == 0x02 && end.is_empty()).then_some(n)
        });
    match modulus {
        Some(n) => {
            let n = &n[n.iter().take_while(|b| **b == 0).count()..];
            format!("rsa-n:{}", hex::encode(Sha256::digest(n)))
        }
        None => public_sha256(public_key_raw),
    }
}

/// The key digests of a stored certificate's PEM: ([`identity_sha256`], [`public_sha256`]).
/// `None` for one that no longer parses (nothing can match it). For the rows stored before
/// schema 16 and the revocations made before it, which carry no digest of their own.
pub(crate) fn certificate_pem_digests(pem: &str) -> Option<(String, String)> {
    let der = crate::cert::pem_certificates(pem).ok()?.into_iter().next()?;
    let raw = crate::cert::CertificateInfo::from_der(&der).ok()?.public_key_raw;
    Some((identity_sha256(&raw), public_sha256(&raw)))
}

/// Stores `key` sealed, or returns the id of the identical key already stored.
pub(crate) fn insert(conn: &Connection, vault: &MasterKey, key: &PrivateKey, now: i64) -> Result<i64, InventoryError> {
    let public_sha256 = public_sha256(key.public_key_raw());
    if let Some(id) = conn
        .query_row_cached("SELECT id FROM keys WHERE public_sha256 = ?1", [&public_sha256], |r| r.get(0))
        .optional()?
    {
        return Ok(id);
    }
    let sealed = vault.seal(key.pkcs8_der(), &aad(&public_sha256));
    let alg = key.algorithm();
    conn.execute_cached(
        "INSERT INTO keys (algorithm, bits, public_sha256, sealed_pkcs8, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![alg.family(), alg.bits(), public_sha256, sealed, now],
    )?;
    Ok(conn.last_insert_rowid())
}

/// Seals every stored key again under `new` (master-key rotation, inside its transaction),
/// a batch of rows at a time so a million keys never sit in memory at once. A key `old` does
/// not open fails the rotation, naming the key: nothing is changed.
pub(super) fn reseal_all(conn: &Connection, old: &MasterKey, new: &MasterKey) -> Result<usize, InventoryError> {
    const BATCH: i64 = 1_000;
    let mut after = 0_i64;
    let mut count = 0;
    loop {
        let rows: Vec<(i64, String, Vec<u8>)> = conn
            .prepare_cached("SELECT id, public_sha256, sealed_pkcs8 FROM keys WHERE id > ?1 ORDER BY id LIMIT ?2")?
            .query_map(params![after, BATCH], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let Some(last) = rows.last() else { return Ok(count) };
        after = last.0;
        for (id, public_sha256, sealed) in rows {
            let aad = aad(&public_sha256);
            let der = old.open(&sealed, &aad).map_err(|e| {
                InventoryError::Corrupt(format!("key {id} does not open under the current master key ({e})"))
            })?;
            conn.execute_cached("UPDATE keys SET sealed_pkcs8 = ?1 WHERE id = ?2", params![new.seal(&der, &aad), id])?;
            count += 1;
        }
    }
}

impl Inventory {
    /// Decrypts a stored private key. Callers audit the access (key download is audited).
    pub fn private_key(&self, key_id: i64) -> Result<PrivateKey, InventoryError> {
        let (public_sha256, sealed): (String, Vec<u8>) = self
            .conn
            .query_row_cached("SELECT public_sha256, sealed_pkcs8 FROM keys WHERE id = ?1", [key_id], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?
            .ok_or(InventoryError::NotFound(format!("key {key_id}")))?;
        let der = self.vault.open(&sealed, &aad(&public_sha256))?;
        PrivateKey::from_pkcs8_der(der.to_vec()).map_err(|e| InventoryError::Corrupt(format!("key {key_id}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rsa_public(n: &[u8], e: &[u8]) -> Vec<u8> {
        let int = |v: &[u8]| [&[0x02, v.len() as u8][..], v].concat();
        let body = [int(n), int(e)].concat();
        [&[0x30, body.len() as u8][..], &body].concat()
    }

    /// Review of stop 39: an RSA key revoked for keyCompromise was certified again with the
    /// same modulus and another exponent, whose whole-key digest was new.
    #[test]
    fn an_rsa_key_is_named_by_its_modulus_alone() {
        let n: Vec<u8> = std::iter::once(0).chain((1..=64).map(|b: u8| b.wrapping_mul(37))).collect();
        let (e3, e65537) = (rsa_public(&n, &[3]), rsa_public(&n, &[1, 0, 1]));
        assert_ne!(public_sha256(&e3), public_sha256(&e65537));
        assert_eq!(identity_sha256(&e3), identity_sha256(&e65537));
        assert!(identity_sha256(&e3).starts_with("rsa-n:"));
        let other = rsa_public(&n[1..n.len() - 1], &[3]);
        assert_ne!(identity_sha256(&other), identity_sha256(&e3));
        // An EC point is named by its whole digest.
        let point = [&[4u8][..], &[7u8; 64]].concat();
        assert_eq!(identity_sha256(&point), public_sha256(&point));
    }
}
