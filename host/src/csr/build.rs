//! Encoding and signing PKCS#10 requests.
//!
//! The CSR is written by hand with `yasna` rather than through rcgen because a subject may
//! hold several OUs and O values (rcgen's distinguished name keeps one value per type).

use serde::{Deserialize, Serialize};
use yasna::models::ObjectIdentifier;
use yasna::{DERWriter, Tag};

use super::names::{NameError, San, Subject};
use crate::key::{HashAlg, KeyError, KeyType, PrivateKey};

/// Everything needed to build a CSR: subject, SANs, key type and signature hash.
///
/// Public fields with `Default`, as rcgen's `CertificateParams`: fill what you need, then
/// call [`CsrParams::validate`] (or let [`build`] do it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CsrParams {
    /// Subject fields.
    pub subject: Subject,
    /// Subject alternative names.
    pub sans: Vec<San>,
    /// Key type to generate when the caller does not bring a key.
    pub key_type: KeyType,
    /// Signature hash; `None` picks the key type's default.
    pub hash: Option<HashAlg>,
}

impl Default for CsrParams {
    fn default() -> Self {
        Self { subject: Subject::default(), sans: Vec::new(), key_type: KeyType::EcP256, hash: None }
    }
}

/// Why a CSR could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CsrError {
    /// A subject field or SAN breaks a rule.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The key cannot be made or cannot sign as asked.
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// A built CSR in both encodings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Csr {
    /// DER bytes.
    pub der: Vec<u8>,
    /// PEM text (`CERTIFICATE REQUEST`).
    pub pem: String,
}

impl CsrParams {
    /// Checks subject, SANs and hash before anything is generated or signed.
    pub fn validate(&self) -> Result<(), CsrError> {
        self.subject.validate()?;
        for san in &self.sans {
            san.validate()?;
        }
        if self.subject.common_name.is_none() && self.sans.is_empty() {
            return Err(NameError::NoNames.into());
        }
        if let Some(hash) = self.hash {
            let allowed = self.key_type.allowed_hashes();
            if !allowed.contains(&hash) {
                return Err(KeyError::HashNotAllowed {
                    key_type: self.key_type,
                    hash,
                    allowed: if allowed.is_empty() {
                        "none (Ed25519 hashes internally)".to_owned()
                    } else {
                        allowed.iter().map(|h| h.as_str()).collect::<Vec<_>>().join(", ")
                    },
                }
                .into());
            }
        }
        Ok(())
    }

    /// Validates, generates a key of `key_type`, and builds the CSR.
    pub fn generate(&self) -> Result<(PrivateKey, Csr), CsrError> {
        self.validate()?;
        let key = PrivateKey::generate(self.key_type)?;
        let csr = build(self, &key)?;
        Ok((key, csr))
    }
}

/// Validates `params` and builds a CSR signed by `key`.
pub fn build(params: &CsrParams, key: &PrivateKey) -> Result<Csr, CsrError> {
    params.validate()?;
    let info = yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_u8(0);
            write_name(w.next(), &params.subject);
            w.next().write_der(&key.subject_public_key_info());
            w.next().write_tagged_implicit(Tag::context(0), |w| {
                w.write_set_of(|w| {
                    if !params.sans.is_empty() {
                        w.next().write_der(&extension_request(&params.sans, params.subject.common_name.is_none()));
                    }
                })
            });
        })
    });
    sign_info(&info, key, params.hash)
}

/// A CSR from its CertificationRequestInfo (DER), signed by `key` (`hash` is ignored for
/// Ed25519, which has its own).
pub(super) fn sign_info(info: &[u8], key: &PrivateKey, hash: Option<HashAlg>) -> Result<Csr, CsrError> {
    let hash = match key.key_type() {
        Some(KeyType::Ed25519) => None,
        _ => hash,
    };
    let sig = key.sign(info, hash)?;
    let der = yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_der(info);
            w.next().write_sequence(|w| {
                w.next().write_oid(&ObjectIdentifier::from_slice(sig.oid));
                if sig.null_params {
                    w.next().write_null();
                }
            });
            w.next().write_bitvec_bytes(&sig.bytes, sig.bytes.len() * 8);
        })
    });
    let pem = crate::der::pem_encode("CERTIFICATE REQUEST", &der);
    Ok(Csr { der, pem })
}

/// Writes the subject Name in the conventional order C, ST, L, O, OU, CN, emailAddress.
fn write_name(w: DERWriter<'_>, s: &Subject) {
    const C: &[u64] = &[2, 5, 4, 6];
    const ST: &[u64] = &[2, 5, 4, 8];
    const L: &[u64] = &[2, 5, 4, 7];
    const O: &[u64] = &[2, 5, 4, 10];
    const OU: &[u64] = &[2, 5, 4, 11];
    const CN: &[u64] = &[2, 5, 4, 3];
    const EMAIL: &[u64] = &[1, 2, 840, 113549, 1, 9, 1];
    enum Enc {
        Utf8,
        Printable,
        Ia5,
    }
    let mut rdns: Vec<(&[u64], &str, Enc)> = Vec::new();
    if let Some(c) = &s.country {
        rdns.push((C, c, Enc::Printable));
    }
    if let Some(st) = &s.state {
        rdns.push((ST, st, Enc::Utf8));
    }
    if let Some(l) = &s.locality {
        rdns.push((L, l, Enc::Utf8));
    }
    rdns.extend(s.organization.iter().map(|o| (O, o.as_str(), Enc::Utf8)));
    rdns.extend(s.organizational_unit.iter().map(|ou| (OU, ou.as_str(), Enc::Utf8)));
    if let Some(cn) = &s.common_name {
        rdns.push((CN, cn, Enc::Utf8));
    }
    if let Some(e) = &s.email {
        rdns.push((EMAIL, e, Enc::Ia5));
    }
    w.write_sequence(|w| {
        for (oid, value, enc) in &rdns {
            w.next().write_set(|w| {
                w.next().write_sequence(|w| {
                    w.next().write_oid(&ObjectIdentifier::from_slice(oid));
                    match enc {
                        Enc::Utf8 => w.next().write_utf8_string(value),
                        Enc::Printable => w.next().write_printable_string(value),
                        Enc::Ia5 => w.next().write_ia5_string(value),
                    }
                })
            });
        }
    });
}

/// The PKCS#9 extensionRequest attribute carrying the SAN extension.
fn extension_request(sans: &[San], critical: bool) -> Vec<u8> {
    let general_names = yasna::construct_der(|w| {
        w.write_sequence(|w| {
            for san in sans {
                match san {
                    San::Email(v) => w.next().write_tagged_implicit(Tag::context(1), |w| w.write_ia5_string(v)),
                    San::Dns(v) => w.next().write_tagged_implicit(Tag::context(2), |w| w.write_ia5_string(v)),
                    San::Uri(v) => w.next().write_tagged_implicit(Tag::context(6), |w| w.write_ia5_string(v)),
                    San::Ip(ip) => {
                        let octets = match ip {
                            std::net::IpAddr::V4(a) => a.octets().to_vec(),
                            std::net::IpAddr::V6(a) => a.octets().to_vec(),
                        };
                        w.next().write_tagged_implicit(Tag::context(7), |w| w.write_bytes(&octets))
                    }
                }
            }
        })
    });
    yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_oid(&ObjectIdentifier::from_slice(&[1, 2, 840, 113549, 1, 9, 14]));
            w.next().write_set(|w| {
                w.next().write_sequence(|w| {
                    w.next().write_sequence(|w| {
                        w.next().write_oid(&ObjectIdentifier::from_slice(&[2, 5, 29, 17]));
                        if critical {
                            w.next().write_bool(true);
                        }
                        w.next().write_bytes(&general_names);
                    })
                })
            });
        })
    })
}
