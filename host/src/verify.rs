//! Invariant 1: the host verifies every certificate a connector returns before it can enter
//! the inventory — it parses, its public key is the CSR's, it covers the requested names, the
//! chain links, and it is currently valid. A connector cannot store a wrong certificate.

use crate::cert::{self, CertError, CertificateInfo};
use crate::csr::San;

/// What the host asked for, against which the returned certificate is checked.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// Raw public key of the CSR (SPKI bit string contents).
    pub public_key_raw: &'a [u8],
    /// The requested common name, if any.
    pub common_name: Option<&'a str>,
    /// The requested SANs.
    pub sans: &'a [San],
    /// "Now", Unix seconds (a parameter so tests and renewals can pin it).
    pub now: i64,
}

/// A certificate that passed every check, with its chain in leaf-first order (DER).
#[derive(Debug, Clone)]
pub struct VerifiedCertificate {
    /// Parsed facts about the leaf.
    pub info: CertificateInfo,
    /// Leaf DER.
    pub der: Vec<u8>,
    /// Chain DER, leaf-first order, without the leaf.
    pub chain: Vec<Vec<u8>>,
}

/// Why a returned certificate was refused. Each is phrased for the operator reading the order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerificationError {
    /// Nothing that looks like a certificate came back.
    #[error("the connector returned no certificate")]
    NoCertificate,
    /// The leaf does not parse.
    #[error("the returned certificate does not parse: {0}")]
    Unparsable(CertError),
    /// A chain element does not parse.
    #[error("chain certificate {position} does not parse: {error}")]
    ChainUnparsable {
        /// 1-based position in the chain.
        position: usize,
        /// Why.
        error: CertError,
    },
    /// The certificate is for another key than the CSR's.
    #[error("the returned certificate is for a different public key than the CSR's")]
    KeyMismatch,
    /// A requested name is missing from the certificate.
    #[error("the returned certificate does not cover the requested name {0}")]
    MissingName(String),
    /// The chain does not link.
    #[error("the chain does not link: certificate {position} was not issued by the next one")]
    ChainBroken {
        /// 0 = the leaf, 1 = first chain element, ...
        position: usize,
    },
    /// Not valid yet.
    #[error("the returned certificate is not valid until {not_before} (Unix time)")]
    NotYetValid {
        /// notBefore, Unix seconds.
        not_before: i64,
    },
    /// The certificate names something its profile does not allow (a CA added it, or copied
    /// it from the CSR past the host's policy check).
    #[error("the returned certificate names what profile {profile} does not allow: {rule}")]
    NotAllowed {
        /// The order's profile.
        profile: String,
        /// The rule the certificate breaks.
        rule: String,
    },
    /// Already expired.
    #[error("the returned certificate expired at {not_after} (Unix time)")]
    Expired {
        /// notAfter, Unix seconds.
        not_after: i64,
    },
}

/// Verifies a connector's `issued` result.
///
/// `certificate_pem` may carry the chain after the leaf (Avi scripts return it that way);
/// such extra blocks are put in front of `chain_pems`. A copy of the leaf inside the chain is
/// dropped rather than stored twice.
pub fn verify_issued(
    expected: &Expected<'_>,
    certificate_pem: &str,
    chain_pems: &[String],
) -> Result<VerifiedCertificate, VerificationError> {
    let mut blocks = cert::pem_certificates(certificate_pem).map_err(VerificationError::Unparsable)?;
    if blocks.is_empty() {
        return Err(VerificationError::NoCertificate);
    }
    let der = blocks.remove(0);
    // Each certificate is parsed once; the parsed forms borrow `der` and `chain`.
    let leaf = cert::parse(&der).map_err(VerificationError::Unparsable)?;
    let info = CertificateInfo::from_parsed(&der, &leaf).map_err(VerificationError::Unparsable)?;
    let mut chain = blocks;
    for (i, pem) in chain_pems.iter().enumerate() {
        let found = cert::pem_certificates(pem)
            .map_err(|error| VerificationError::ChainUnparsable { position: i + 1, error })?;
        chain.extend(found);
    }
    chain.retain(|c| *c != der);
    let mut issuers = Vec::with_capacity(chain.len());
    for (i, c) in chain.iter().enumerate() {
        let parsed = cert::parse(c)
            .and_then(|p| cert::check_supported(&p).map(|()| p))
            .map_err(|error| VerificationError::ChainUnparsable { position: i + 1, error })?;
        issuers.push(parsed);
    }

    if info.public_key_raw != expected.public_key_raw {
        return Err(VerificationError::KeyMismatch);
    }
    for san in expected.sans {
        if !covers(&info, san) {
            return Err(VerificationError::MissingName(san.to_string()));
        }
    }
    if let Some(cn) = expected.common_name {
        let in_cn = info.common_name.as_deref().is_some_and(|c| c.eq_ignore_ascii_case(cn));
        let in_san = covers(&info, &San::Dns(cn.to_owned()));
        if !in_cn && !in_san {
            return Err(VerificationError::MissingName(format!("CN={cn}")));
        }
    }
    let mut child = &leaf;
    for (i, issuer) in issuers.iter().enumerate() {
        if !cert::signed_by(child, issuer) {
            return Err(VerificationError::ChainBroken { position: i });
        }
        child = issuer;
    }
    if expected.now < info.not_before {
        return Err(VerificationError::NotYetValid { not_before: info.not_before });
    }
    if expected.now > info.not_after {
        return Err(VerificationError::Expired { not_after: info.not_after });
    }
    Ok(VerifiedCertificate { info, der, chain })
}

/// Whether the certificate's SANs contain the requested one (DNS compared case-insensitively).
fn covers(info: &CertificateInfo, wanted: &San) -> bool {
    info.sans.iter().any(|have| match (have, wanted) {
        (San::Dns(a), San::Dns(b)) => a.eq_ignore_ascii_case(b),
        (San::Email(a), San::Email(b)) => a.eq_ignore_ascii_case(b),
        (a, b) => a == b,
    })
}
