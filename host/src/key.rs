//! Private keys: generation, PEM import (PKCS#8, PKCS#1, SEC1) and signing.
//!
//! Keys are held as PKCS#8 DER in zeroizing memory; `ring` signs (fast, constant-time), the
//! `rsa` crate only generates RSA keys (ring cannot). Everything that leaves this module as
//! text is PKCS#8 PEM, the one format every tool reads.

use std::fmt;
use std::str::FromStr;

use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// OIDs used when wrapping and describing keys.
pub(crate) mod oid {
    /// rsaEncryption
    pub const RSA: &[u64] = &[1, 2, 840, 113549, 1, 1, 1];
    /// id-ecPublicKey
    pub const EC_PUBLIC_KEY: &[u64] = &[1, 2, 840, 10045, 2, 1];
    /// prime256v1 / secp256r1
    pub const P256: &[u64] = &[1, 2, 840, 10045, 3, 1, 7];
    /// secp384r1
    pub const P384: &[u64] = &[1, 3, 132, 0, 34];
    /// secp521r1
    pub const P521: &[u64] = &[1, 3, 132, 0, 35];
    /// id-Ed25519
    pub const ED25519: &[u64] = &[1, 3, 101, 112];
}

/// The key types certhost generates and accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyType {
    /// RSA, 2048-bit modulus.
    #[serde(rename = "rsa-2048")]
    Rsa2048,
    /// RSA, 3072-bit modulus.
    #[serde(rename = "rsa-3072")]
    Rsa3072,
    /// RSA, 4096-bit modulus.
    #[serde(rename = "rsa-4096")]
    Rsa4096,
    /// ECDSA on NIST P-256.
    #[serde(rename = "ec-p256")]
    EcP256,
    /// ECDSA on NIST P-384.
    #[serde(rename = "ec-p384")]
    EcP384,
    /// Ed25519.
    #[serde(rename = "ed25519")]
    Ed25519,
}

impl KeyType {
    /// Every generatable key type, for help texts and tests.
    pub const ALL: [KeyType; 6] =
        [KeyType::Rsa2048, KeyType::Rsa3072, KeyType::Rsa4096, KeyType::EcP256, KeyType::EcP384, KeyType::Ed25519];

    /// The name used on the command line and in profiles.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::Rsa2048 => "rsa-2048",
            KeyType::Rsa3072 => "rsa-3072",
            KeyType::Rsa4096 => "rsa-4096",
            KeyType::EcP256 => "ec-p256",
            KeyType::EcP384 => "ec-p384",
            KeyType::Ed25519 => "ed25519",
        }
    }

    /// The key's family and size.
    pub fn algorithm(self) -> KeyAlgorithm {
        match self {
            KeyType::Rsa2048 => KeyAlgorithm::Rsa { bits: 2048 },
            KeyType::Rsa3072 => KeyAlgorithm::Rsa { bits: 3072 },
            KeyType::Rsa4096 => KeyAlgorithm::Rsa { bits: 4096 },
            KeyType::EcP256 => KeyAlgorithm::EcP256,
            KeyType::EcP384 => KeyAlgorithm::EcP384,
            KeyType::Ed25519 => KeyAlgorithm::Ed25519,
        }
    }

    /// The hash used when a request names none: the strongest match for the key's strength.
    pub fn default_hash(self) -> Option<HashAlg> {
        match self {
            KeyType::EcP384 => Some(HashAlg::Sha384),
            KeyType::Ed25519 => None,
            _ => Some(HashAlg::Sha256),
        }
    }

    /// Signature hashes this key type can sign with. Ed25519 hashes internally: none.
    pub fn allowed_hashes(self) -> &'static [HashAlg] {
        match self {
            KeyType::Rsa2048 | KeyType::Rsa3072 | KeyType::Rsa4096 => {
                &[HashAlg::Sha256, HashAlg::Sha384, HashAlg::Sha512]
            }
            KeyType::EcP256 => &[HashAlg::Sha256],
            KeyType::EcP384 => &[HashAlg::Sha384],
            KeyType::Ed25519 => &[],
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyType {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        KeyType::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| KeyError::UnknownKeyType(s.to_owned()))
    }
}

/// A key's family and size as found in a certificate, CSR or key file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum KeyAlgorithm {
    /// RSA with the given modulus size.
    Rsa {
        /// Modulus size in bits.
        bits: u32,
    },
    /// ECDSA P-256.
    EcP256,
    /// ECDSA P-384.
    EcP384,
    /// ECDSA P-521 (seen in the wild; certhost neither generates nor verifies it).
    EcP521,
    /// Ed25519.
    Ed25519,
}

impl KeyAlgorithm {
    /// Short name for tables and the database (`rsa`, `ec-p256`, ...).
    pub fn family(self) -> &'static str {
        match self {
            KeyAlgorithm::Rsa { .. } => "rsa",
            KeyAlgorithm::EcP256 => "ec-p256",
            KeyAlgorithm::EcP384 => "ec-p384",
            KeyAlgorithm::EcP521 => "ec-p521",
            KeyAlgorithm::Ed25519 => "ed25519",
        }
    }

    /// Key size in bits (the curve size for EC keys).
    pub fn bits(self) -> u32 {
        match self {
            KeyAlgorithm::Rsa { bits } => bits,
            KeyAlgorithm::EcP256 | KeyAlgorithm::Ed25519 => 256,
            KeyAlgorithm::EcP384 => 384,
            KeyAlgorithm::EcP521 => 521,
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyAlgorithm::Rsa { bits } => write!(f, "rsa-{bits}"),
            other => f.write_str(other.family()),
        }
    }
}

/// The hash a CSR is signed with, when the key type leaves a choice (RSA, ECDSA): a profile
/// may require a stronger one than the key type's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HashAlg {
    /// SHA-256
    Sha256,
    /// SHA-384
    Sha384,
    /// SHA-512
    Sha512,
}

impl HashAlg {
    /// Lowercase name (`sha256`).
    pub fn as_str(self) -> &'static str {
        match self {
            HashAlg::Sha256 => "sha256",
            HashAlg::Sha384 => "sha384",
            HashAlg::Sha512 => "sha512",
        }
    }
}

impl fmt::Display for HashAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for HashAlg {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().replace('-', "").as_str() {
            "sha256" => Ok(HashAlg::Sha256),
            "sha384" => Ok(HashAlg::Sha384),
            "sha512" => Ok(HashAlg::Sha512),
            _ => Err(KeyError::UnknownHash(s.to_owned())),
        }
    }
}

/// Errors of key generation, parsing and signing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key type name is not one certhost knows.
    #[error("unknown key type {0:?} (expected one of rsa-2048, rsa-3072, rsa-4096, ec-p256, ec-p384, ed25519)")]
    UnknownKeyType(String),
    /// The hash name is not one certhost knows.
    #[error("unknown signature hash {0:?} (expected sha256, sha384 or sha512)")]
    UnknownHash(String),
    /// The key type cannot sign with the requested hash.
    #[error("key type {key_type} cannot sign with {hash} (allowed: {allowed})")]
    HashNotAllowed {
        /// The key type.
        key_type: KeyType,
        /// The requested hash.
        hash: HashAlg,
        /// What the key type allows, comma-separated.
        allowed: String,
    },
    /// The system random number generator failed.
    #[error("key generation failed: {0}")]
    Generation(String),
    /// The input holds no private key block certhost can read.
    #[error("no private key found (expected a PEM block PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)")]
    NoKey,
    /// The input is PEM but broken.
    #[error("private key PEM is malformed: {0}")]
    MalformedPem(String),
    /// Encrypted keys need a passphrase, which import does not take.
    #[error("the private key is encrypted; decrypt it first (openssl pkey -in KEY -out PLAIN)")]
    Encrypted,
    /// The key parsed but is of a kind certhost does not support.
    #[error("unsupported private key: {0}")]
    Unsupported(String),
}

/// A private key, kept as PKCS#8 DER in memory that is wiped on drop, beside the key pair
/// ring parsed from it.
///
/// The parsed pair is kept because parsing is not free: ring recomputes an ECDSA key's public
/// point from the private scalar (a full scalar multiplication, as costly as a signature) to
/// check the document. Parsing once per key instead of once per signature took two of the
/// seven P-256 multiplications out of every host-generated issuance.
pub struct PrivateKey {
    algorithm: KeyAlgorithm,
    pkcs8: Zeroizing<Vec<u8>>,
    public_key: Vec<u8>,
    pair: Pair,
}

/// ring's parsed form of a [`PrivateKey`].
enum Pair {
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
    Rsa(RsaKeyPair),
}

impl fmt::Debug for PrivateKey {
    /// Never prints key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey").field("algorithm", &self.algorithm).finish_non_exhaustive()
    }
}

impl PrivateKey {
    /// Generates a fresh key of the given type from the system RNG.
    pub fn generate(key_type: KeyType) -> Result<Self, KeyError> {
        let rng = SystemRandom::new();
        let gen_err = |e: ring::error::Unspecified| KeyError::Generation(e.to_string());
        let pkcs8: Vec<u8> = match key_type {
            KeyType::EcP256 => EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
                .map_err(gen_err)?
                .as_ref()
                .to_vec(),
            KeyType::EcP384 => EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P384_SHA384_ASN1_SIGNING, &rng)
                .map_err(gen_err)?
                .as_ref()
                .to_vec(),
            KeyType::Ed25519 => {
                let v2 = Zeroizing::new(Ed25519KeyPair::generate_pkcs8(&rng).map_err(gen_err)?.as_ref().to_vec());
                ed25519_v1(&v2)?
            }
            KeyType::Rsa2048 | KeyType::Rsa3072 | KeyType::Rsa4096 => {
                use rsa::pkcs8::EncodePrivateKey;
                let bits = key_type.algorithm().bits() as usize;
                let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, bits)
                    .map_err(|e| KeyError::Generation(e.to_string()))?;
                key.to_pkcs8_der().map_err(|e| KeyError::Generation(e.to_string()))?.as_bytes().to_vec()
            }
        };
        Self::from_pkcs8_der(pkcs8)
    }

    /// Reads the first private key in a PEM text: PKCS#8 (`PRIVATE KEY`), PKCS#1
    /// (`RSA PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`). Other blocks (certificates) are skipped.
    pub fn from_pem(text: &str) -> Result<Self, KeyError> {
        let blocks = pem::parse_many(text).map_err(|e| KeyError::MalformedPem(crate::der::pem_error_sentence(&e)))?;
        for block in blocks {
            // OpenSSL's legacy encryption (`openssl ec -aes128`): a key block whose headers name
            // a cipher, the body ciphertext.
            let legacy_encrypted = block.headers().get("Proc-Type").is_some_and(|v| v.contains("ENCRYPTED"));
            match block.tag() {
                "PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY" if legacy_encrypted => {
                    return Err(KeyError::Encrypted);
                }
                "PRIVATE KEY" => return Self::from_pkcs8_der(block.into_contents()),
                "RSA PRIVATE KEY" => {
                    let inner = Zeroizing::new(block.into_contents());
                    return Self::from_pkcs8_der(wrap_pkcs8(oid::RSA, None, &inner));
                }
                "EC PRIVATE KEY" => {
                    let inner = Zeroizing::new(block.into_contents());
                    let curve = sec1_curve(&inner)?;
                    return Self::from_pkcs8_der(wrap_pkcs8(oid::EC_PUBLIC_KEY, Some(curve), &inner));
                }
                "ENCRYPTED PRIVATE KEY" => return Err(KeyError::Encrypted),
                _ => continue,
            }
        }
        Err(KeyError::NoKey)
    }

    /// Takes PKCS#8 DER and works out which supported key it holds.
    pub fn from_pkcs8_der(der: Vec<u8>) -> Result<Self, KeyError> {
        let pkcs8 = Zeroizing::new(der);
        let rng = SystemRandom::new();
        if let Ok(kp) = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, &pkcs8, &rng) {
            let public_key = kp.public_key().as_ref().to_vec();
            return Ok(Self { algorithm: KeyAlgorithm::EcP256, pkcs8, public_key, pair: Pair::Ecdsa(kp) });
        }
        if let Ok(kp) = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P384_SHA384_ASN1_SIGNING, &pkcs8, &rng) {
            let public_key = kp.public_key().as_ref().to_vec();
            return Ok(Self { algorithm: KeyAlgorithm::EcP384, pkcs8, public_key, pair: Pair::Ecdsa(kp) });
        }
        if let Ok(kp) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&pkcs8) {
            let public_key = kp.public_key().as_ref().to_vec();
            return Ok(Self { algorithm: KeyAlgorithm::Ed25519, pkcs8, public_key, pair: Pair::Ed25519(kp) });
        }
        match RsaKeyPair::from_pkcs8(&pkcs8) {
            Ok(kp) => {
                let bits = u32::try_from(kp.public().modulus_len() * 8).unwrap_or(u32::MAX);
                let public_key = kp.public_key().as_ref().to_vec();
                Ok(Self { algorithm: KeyAlgorithm::Rsa { bits }, pkcs8, public_key, pair: Pair::Rsa(kp) })
            }
            Err(e) => Err(KeyError::Unsupported(format!(
                "not an RSA key of 2048 to 4096 bits with a public exponent of at least 65537, nor a P-256, P-384 or Ed25519 key ({e})"
            ))),
        }
    }

    /// The key's family and size.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// The generatable key type this key is, if it is one.
    pub fn key_type(&self) -> Option<KeyType> {
        KeyType::ALL.into_iter().find(|k| k.algorithm() == self.algorithm)
    }

    /// The public key as it appears inside a SubjectPublicKeyInfo bit string (EC point,
    /// raw Ed25519 key, or PKCS#1 RSAPublicKey). Comparing these is how certhost matches keys
    /// to CSRs and certificates.
    pub fn public_key_raw(&self) -> &[u8] {
        &self.public_key
    }

    /// PKCS#8 DER, for encryption at rest.
    pub fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8
    }

    /// PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), wiped from memory on drop.
    pub fn to_pem(&self) -> Zeroizing<String> {
        Zeroizing::new(crate::der::pem_encode("PRIVATE KEY", &self.pkcs8))
    }

    /// DER SubjectPublicKeyInfo of this key.
    pub fn subject_public_key_info(&self) -> Vec<u8> {
        yasna::construct_der(|w| {
            w.write_sequence(|w| {
                w.next().write_sequence(|w| match self.algorithm {
                    KeyAlgorithm::Rsa { .. } => {
                        w.next().write_oid(&yasna::models::ObjectIdentifier::from_slice(oid::RSA));
                        w.next().write_null();
                    }
                    KeyAlgorithm::EcP256 | KeyAlgorithm::EcP384 | KeyAlgorithm::EcP521 => {
                        let curve = match self.algorithm {
                            KeyAlgorithm::EcP256 => oid::P256,
                            KeyAlgorithm::EcP384 => oid::P384,
                            _ => oid::P521,
                        };
                        w.next().write_oid(&yasna::models::ObjectIdentifier::from_slice(oid::EC_PUBLIC_KEY));
                        w.next().write_oid(&yasna::models::ObjectIdentifier::from_slice(curve));
                    }
                    KeyAlgorithm::Ed25519 => {
                        w.next().write_oid(&yasna::models::ObjectIdentifier::from_slice(oid::ED25519));
                    }
                });
                w.next().write_bitvec_bytes(&self.public_key, self.public_key.len() * 8);
            })
        })
    }

    /// Signs `message`, returning the signature and its AlgorithmIdentifier OID (with
    /// whether that identifier carries NULL parameters, as the RSA ones do).
    pub(crate) fn sign(&self, message: &[u8], hash: Option<HashAlg>) -> Result<Signature, KeyError> {
        let rng = SystemRandom::new();
        let sign_err = |e: ring::error::Unspecified| KeyError::Generation(format!("signing failed: {e}"));
        // `from_pkcs8_der` is the only constructor and sets `pair` from the same match as
        // `algorithm`, so this is unreachable; an error rather than a panic all the same.
        let mismatch = || KeyError::Unsupported(format!("{} key without its parsed pair", self.algorithm));
        let key_type = self.key_type();
        let check = |hash: Option<HashAlg>| -> Result<HashAlg, KeyError> {
            let kt = key_type.ok_or_else(|| KeyError::Unsupported(format!("{} keys cannot sign", self.algorithm)))?;
            let hash = hash.or(kt.default_hash()).unwrap_or(HashAlg::Sha256);
            if kt.allowed_hashes().contains(&hash) {
                Ok(hash)
            } else {
                Err(KeyError::HashNotAllowed {
                    key_type: kt,
                    hash,
                    allowed: kt.allowed_hashes().iter().map(|h| h.as_str()).collect::<Vec<_>>().join(", "),
                })
            }
        };
        match self.algorithm {
            KeyAlgorithm::EcP256 | KeyAlgorithm::EcP384 => {
                let hash = check(hash)?;
                // The pair was parsed with SHA-256 for P-256 and SHA-384 for P-384, the only
                // hashes `check` allows for them.
                let oid: &'static [u64] = match self.algorithm {
                    KeyAlgorithm::EcP256 => &[1, 2, 840, 10045, 4, 3, 2],
                    _ => &[1, 2, 840, 10045, 4, 3, 3],
                };
                debug_assert!(matches!(hash, HashAlg::Sha256 | HashAlg::Sha384));
                let Pair::Ecdsa(kp) = &self.pair else { return Err(mismatch()) };
                let sig = kp.sign(&rng, message).map_err(sign_err)?;
                Ok(Signature { bytes: sig.as_ref().to_vec(), oid, null_params: false })
            }
            KeyAlgorithm::Ed25519 => {
                if let Some(h) = hash {
                    return Err(KeyError::HashNotAllowed {
                        key_type: KeyType::Ed25519,
                        hash: h,
                        allowed: "none (Ed25519 hashes internally)".into(),
                    });
                }
                let Pair::Ed25519(kp) = &self.pair else { return Err(mismatch()) };
                Ok(Signature { bytes: kp.sign(message).as_ref().to_vec(), oid: oid::ED25519, null_params: false })
            }
            KeyAlgorithm::Rsa { .. } => {
                let hash = match key_type {
                    Some(_) => check(hash)?,
                    None => hash.unwrap_or(HashAlg::Sha256),
                };
                let (padding, oid): (&'static dyn signature::RsaEncoding, &'static [u64]) = match hash {
                    HashAlg::Sha256 => (&signature::RSA_PKCS1_SHA256, &[1, 2, 840, 113549, 1, 1, 11]),
                    HashAlg::Sha384 => (&signature::RSA_PKCS1_SHA384, &[1, 2, 840, 113549, 1, 1, 12]),
                    HashAlg::Sha512 => (&signature::RSA_PKCS1_SHA512, &[1, 2, 840, 113549, 1, 1, 13]),
                };
                let Pair::Rsa(kp) = &self.pair else { return Err(mismatch()) };
                let mut sig = vec![0u8; kp.public().modulus_len()];
                kp.sign(padding, &rng, message, &mut sig).map_err(sign_err)?;
                Ok(Signature { bytes: sig, oid, null_params: true })
            }
            KeyAlgorithm::EcP521 => Err(KeyError::Unsupported("P-521 keys cannot sign here".into())),
        }
    }
}

/// A signature with its algorithm identifier.
pub(crate) struct Signature {
    pub bytes: Vec<u8>,
    pub oid: &'static [u64],
    pub null_params: bool,
}

/// Rewrites ring's PKCS#8 v2 Ed25519 document (RFC 5958, with the public key) as the v1
/// form (RFC 8410) that OpenSSL 3.0 and most tools read.
fn ed25519_v1(v2: &[u8]) -> Result<Vec<u8>, KeyError> {
    let seed = yasna::parse_der(v2, |r| {
        r.read_sequence(|r| {
            let _version = r.next().read_u8()?;
            r.next().read_sequence(|r| r.next().read_oid())?;
            let inner = r.next().read_bytes()?;
            let _public =
                r.read_optional(|r| r.read_tagged_implicit(yasna::Tag::context(1), |r| r.read_bitvec_bytes()))?;
            Ok(inner)
        })
    })
    .map_err(|e| KeyError::Generation(format!("unexpected Ed25519 PKCS#8 layout: {e}")))?;
    let seed = Zeroizing::new(seed);
    Ok(wrap_pkcs8_without_params(oid::ED25519, &seed))
}

/// PKCS#8 v1 with an AlgorithmIdentifier that has no parameters (Ed25519).
fn wrap_pkcs8_without_params(alg: &[u64], inner: &[u8]) -> Vec<u8> {
    yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_u8(0);
            w.next().write_sequence(|w| w.next().write_oid(&yasna::models::ObjectIdentifier::from_slice(alg)));
            w.next().write_bytes(inner);
        })
    })
}

/// Wraps a PKCS#1 or SEC1 private key in a PKCS#8 PrivateKeyInfo.
fn wrap_pkcs8(alg: &[u64], params: Option<&[u64]>, inner: &[u8]) -> Vec<u8> {
    yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_u8(0);
            w.next().write_sequence(|w| {
                w.next().write_oid(&yasna::models::ObjectIdentifier::from_slice(alg));
                match params {
                    Some(curve) => w.next().write_oid(&yasna::models::ObjectIdentifier::from_slice(curve)),
                    None => w.next().write_null(),
                }
            });
            w.next().write_bytes(inner);
        })
    })
}

/// Finds the named curve inside a SEC1 ECPrivateKey (its `[0] parameters` field).
fn sec1_curve(der: &[u8]) -> Result<&'static [u64], KeyError> {
    let parsed = yasna::parse_der(der, |r| {
        r.read_sequence(|r| {
            let _version = r.next().read_u8()?;
            let _key = r.next().read_bytes()?;
            let curve = r.read_optional(|r| r.read_tagged(yasna::Tag::context(0), |r| r.read_oid()))?;
            let _public = r.read_optional(|r| r.read_tagged(yasna::Tag::context(1), |r| r.read_bitvec_bytes()))?;
            Ok(curve)
        })
    })
    .map_err(|_| KeyError::MalformedPem("EC PRIVATE KEY is not a valid SEC1 ECPrivateKey structure".into()))?;
    let curve = parsed.ok_or_else(|| KeyError::Unsupported("EC PRIVATE KEY names no curve".into()))?;
    let comps = curve.components().as_slice();
    [oid::P256, oid::P384]
        .into_iter()
        .find(|c| *c == comps)
        .ok_or_else(|| KeyError::Unsupported(format!("EC curve {curve} (supported: P-256, P-384)")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_type_generates_and_round_trips_through_pem() {
        for kt in [KeyType::EcP256, KeyType::EcP384, KeyType::Ed25519, KeyType::Rsa2048] {
            let key = PrivateKey::generate(kt).expect("generate");
            assert_eq!(key.key_type(), Some(kt));
            let back = PrivateKey::from_pem(&key.to_pem()).expect("parse");
            assert_eq!(back.public_key_raw(), key.public_key_raw());
        }
    }

    #[test]
    fn debug_never_prints_key_material() {
        let key = PrivateKey::generate(KeyType::EcP256).expect("generate");
        let dbg = format!("{key:?}");
        assert!(!dbg.contains("PRIVATE"));
        assert!(dbg.len() < 80);
    }

    #[test]
    fn key_type_names_parse() {
        assert_eq!("ec-p256".parse::<KeyType>().ok(), Some(KeyType::EcP256));
        assert!("dsa-1024".parse::<KeyType>().unwrap_err().to_string().contains("unknown key type"));
    }

    #[test]
    fn garbage_is_not_a_key() {
        assert!(matches!(PrivateKey::from_pem("hello"), Err(KeyError::NoKey)));
        let bad = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(PrivateKey::from_pem(bad).is_err());
    }
}
