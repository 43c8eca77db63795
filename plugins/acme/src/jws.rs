//! The ACME account key and the JSON Web Signatures of RFC 8555 §6.2: ES256 with P-256 for
//! every request, HS256 for the external account binding (§7.3.4).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::Mac;
use p256::ecdsa::signature::Signer;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::AcmeError;

/// base64url without padding, as JOSE uses everywhere.
pub fn b64(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

/// The account key: a P-256 ECDSA key.
pub struct AccountKey {
    key: p256::ecdsa::SigningKey,
}

impl AccountKey {
    /// Reads a PKCS#8 or SEC1 PEM P-256 key.
    pub fn from_pem(pem: &str) -> Result<Self, AcmeError> {
        let secret = p256::SecretKey::from_pkcs8_pem(pem)
            .or_else(|_| p256::SecretKey::from_sec1_pem(pem))
            .map_err(|_| AcmeError::BadAccountKey)?;
        Ok(Self { key: p256::ecdsa::SigningKey::from(secret) })
    }

    /// A new key from the host's random bytes.
    pub fn generate() -> Result<Self, AcmeError> {
        // A 32-byte string is a valid scalar unless it is zero or ≥ the group order, which is
        // astronomically rare: a few attempts are plenty.
        for _ in 0..8 {
            let bytes = certhost_plugin_sdk::random_bytes(32);
            if let Ok(secret) = p256::SecretKey::from_slice(&bytes) {
                return Ok(Self { key: p256::ecdsa::SigningKey::from(secret) });
            }
        }
        Err(AcmeError::Internal("the host's random bytes never made a valid P-256 key".into()))
    }

    /// PKCS#8 PEM, to keep in the host cache.
    pub fn to_pem(&self) -> Result<String, AcmeError> {
        let secret = p256::SecretKey::from(&self.key);
        secret
            .to_pkcs8_pem(LineEnding::LF)
            .map(|p| p.to_string())
            .map_err(|_| AcmeError::Internal("cannot encode the account key as PEM".into()))
    }

    /// The public key as a JWK with its members in lexicographic order (RFC 7638), so its
    /// serialisation is also the input of the thumbprint.
    pub fn jwk(&self) -> Value {
        let point = self.key.verifying_key().to_encoded_point(false);
        let x = point.x().map(|x| b64(x)).unwrap_or_default();
        let y = point.y().map(|y| b64(y)).unwrap_or_default();
        json!({ "crv": "P-256", "kty": "EC", "x": x, "y": y })
    }

    /// RFC 7638 thumbprint of the JWK, base64url.
    pub fn thumbprint(&self) -> String {
        let jwk = self.jwk();
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            jwk["x"].as_str().unwrap_or_default(),
            jwk["y"].as_str().unwrap_or_default()
        );
        b64(&Sha256::digest(canonical.as_bytes()))
    }

    /// A flattened JWS (§6.2): `kid` when the account exists, the JWK otherwise; `payload`
    /// `None` is POST-as-GET (empty payload).
    pub fn sign(&self, url: &str, nonce: &str, kid: Option<&str>, payload: Option<&Value>) -> Value {
        let mut protected = json!({ "alg": "ES256", "nonce": nonce, "url": url });
        match kid {
            Some(k) => protected["kid"] = json!(k),
            None => protected["jwk"] = self.jwk(),
        }
        let protected = b64(protected.to_string().as_bytes());
        let payload = payload.map(|p| b64(p.to_string().as_bytes())).unwrap_or_default();
        let signature: p256::ecdsa::Signature = self.key.sign(format!("{protected}.{payload}").as_bytes());
        json!({ "protected": protected, "payload": payload, "signature": b64(&signature.to_bytes()) })
    }
}

/// The external account binding (§7.3.4): an HS256 JWS over the account JWK, keyed by the
/// MAC key the CA gave out of band (base64url; standard base64 and padding are accepted too).
pub fn external_account_binding(kid: &str, hmac_key: &str, url: &str, jwk: &Value) -> Result<Value, AcmeError> {
    let normalized: String = hmac_key
        .trim()
        .trim_end_matches('=')
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect();
    let key = URL_SAFE_NO_PAD.decode(normalized.as_bytes()).map_err(|_| AcmeError::BadEabKey)?;
    let protected = b64(json!({ "alg": "HS256", "kid": kid, "url": url }).to_string().as_bytes());
    let payload = b64(jwk.to_string().as_bytes());
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(&key).map_err(|_| AcmeError::BadEabKey)?;
    mac.update(format!("{protected}.{payload}").as_bytes());
    Ok(json!({ "protected": protected, "payload": payload, "signature": b64(&mac.finalize().into_bytes()) }))
}

/// The dns-01 TXT record value: base64url(SHA-256(key authorization)) (§8.4).
pub fn dns01_value(key_authorization: &str) -> String {
    b64(&Sha256::digest(key_authorization.as_bytes()))
}
