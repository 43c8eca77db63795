//! Invariant 1: the host verifies every certificate a connector returns before it can enter
//! the inventory — it parses, its public key is the CSR's, it covers the requested names, the
//! chain links through CA certificates that are valid, it is an end-entity certificate whose
//! subject CN is one of the names asked for, and it is currently valid (give or take
//! [`CLOCK_SKEW`]). A connector cannot store a wrong certificate.

use crate::cert::{self, CertError, CertificateInfo, LinkError};
use crate::csr::San;
use crate::view::rfc3339;

/// How far a CA's clock may run ahead of the host's: a certificate (or a chain certificate)
/// whose notBefore is at most this far in the future is accepted. Without it a CA a few
/// seconds fast made every order fail for good, the issued certificate thrown away.
pub const CLOCK_SKEW: i64 = 300;

/// The most chain certificates a connector may return. Real chains have one to three; a
/// longer one is stored and deployed with every renewal, and checked link by link.
pub const MAX_CHAIN: usize = 10;
/// Largest certificate (leaf or chain) the host stores, in DER bytes: a thousand names fit in
/// a tenth of it; a 20 MiB extension was stored, 28 MB of inventory an issuance
/// (hostile-connector review of stop 41).
pub const MAX_CERTIFICATE_DER: usize = 256 * 1024;

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
    /// Chain entries (1-based) the connector returned with no certificate in them, left out.
    /// Not refused: the CA has issued, and refusing would lose the certificate (diff review of
    /// stop 38); said in the log and as a failure by `plugin check` (author review of stop 38:
    /// `"chain": "junk"` passed without a word).
    pub ignored_chain_entries: Vec<usize>,
}

/// Why a returned certificate was refused. Each is phrased for the operator reading the order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerificationError {
    /// Nothing that looks like a certificate came back (the words a script's non-PEM string
    /// gets, so both runtimes say the same; author review of stop 38).
    #[error("the connector returned no PEM certificate (no -----BEGIN CERTIFICATE----- block)")]
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
    /// The certificate for the CSR's key is in the bundle, but not first: a connector that
    /// returned its CA before the leaf was told only "a different public key", which sent its
    /// author looking at keys (black-box review of stop 36).
    #[error(
        "the certificate for the CSR's key is number {position} of those returned, not the first: return the leaf first, then its chain"
    )]
    LeafNotFirst {
        /// Its place among everything returned, from 1.
        position: usize,
    },
    /// A requested name is missing from the certificate.
    #[error("the returned certificate does not cover the requested name {0}")]
    MissingName(String),
    /// The subject names something that was not asked for: a client that reads the CN
    /// would take the certificate for that name, which no policy looked at.
    #[error("the returned certificate's subject CN {0:?} is neither the requested CN nor one of its subjectAltNames")]
    UnexpectedCommonName(String),
    /// The subject's CNs cannot all be checked (several, or one that is not text).
    #[error("the returned certificate's subject cannot be checked: {0}")]
    UncheckableSubject(String),
    /// The certificate could sign other certificates: a CA handed out where an end-entity
    /// certificate was asked for (`reason` says which extension makes it one).
    #[error("the returned certificate is a CA certificate ({reason}), not an end-entity certificate")]
    NotEndEntity {
        /// basicConstraints or keyUsage, as found.
        reason: &'static str,
    },
    /// The certificate's extensions cannot be read the one way every client reads them.
    #[error("the returned certificate cannot be checked: {0}")]
    UncheckableExtension(String),
    /// The certificate may do what no end-entity certificate certhost asks for may do.
    #[error(
        "the returned certificate may be used for {0}, which certhost does not accept in an end-entity certificate"
    )]
    ForbiddenUsage(String),
    /// A link is signed with a hash that has known collisions.
    #[error(
        "certificate {position} (0 is the returned one) is signed with {algorithm}, whose hash is broken; certhost does not accept it"
    )]
    WeakSignature {
        /// 0 = the leaf, 1 = first chain element, ...
        position: usize,
        /// The algorithm's name.
        algorithm: String,
    },
    /// A certificate larger than any real one ([`MAX_CERTIFICATE_DER`]).
    #[error("{which} is {size} bytes; certhost stores certificates of at most {} KiB", MAX_CERTIFICATE_DER / 1024)]
    TooLarge {
        /// "the returned certificate" or "chain certificate N".
        which: String,
        /// Its DER size.
        size: usize,
    },
    /// More chain certificates than any real chain has.
    #[error("the chain has {0} certificates; certhost accepts at most {MAX_CHAIN}")]
    ChainTooLong(usize),
    /// The chain does not link.
    #[error("the chain does not link: certificate {position} was not issued by the next one")]
    ChainBroken {
        /// 0 = the leaf, 1 = first chain element, ...
        position: usize,
    },
    /// A link is signed with an algorithm the host cannot check; it may well be sound.
    #[error(
        "the chain cannot be checked: certificate {position} (0 is the returned one) is signed with {algorithm}, which certhost cannot verify (the signature may be valid)"
    )]
    UnsupportedSignature {
        /// 0 = the leaf, 1 = first chain element, ...
        position: usize,
        /// The algorithm (and key or parameters) as named by the host.
        algorithm: String,
    },
    /// A chain certificate signs the one before it but may not sign certificates.
    #[error("chain certificate {position} signs the certificate before it but is not a CA ({reason})")]
    IssuerNotCa {
        /// 1-based position in the chain.
        position: usize,
        /// basicConstraints or keyUsage, as found.
        reason: &'static str,
    },
    /// A chain certificate is outside its validity period.
    #[error("chain certificate {position} is not valid now: {}", validity_problem(*not_before, *not_after, *now))]
    IssuerNotValid {
        /// 1-based position in the chain.
        position: usize,
        /// Its notBefore, Unix seconds.
        not_before: i64,
        /// Its notAfter, Unix seconds.
        not_after: i64,
        /// The time it was checked at, Unix seconds.
        now: i64,
    },
    /// Not valid yet, even allowing for [`CLOCK_SKEW`].
    #[error(
        "the returned certificate is not valid until {} (more than {} minutes from now)",
        rfc3339(*not_before),
        CLOCK_SKEW / 60
    )]
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
    /// The certificate (its subject, names, issuer or extensions) or its chain holds a
    /// sensitive value of the call: stored, it would be shown to every role, in every listing
    /// and download.
    #[error("{0} holds a sensitive value of the call, which would be stored and shown in the clear")]
    HoldsSensitive(&'static str),
    /// A renewal answered with the certificate it renews.
    #[error("it is certificate {0}, the one being renewed: the CA issued nothing new")]
    NotRenewed(i64),
    /// A certificate the inventory already holds out of service
    /// ([`crate::inventory::InventoryError::NothingNew`]).
    #[error("it is certificate {certificate}, already in the inventory as {status}: the CA issued nothing new")]
    AlreadyStored {
        /// The certificate.
        certificate: i64,
        /// Its status.
        status: String,
    },
    /// Already expired.
    #[error("the returned certificate expired at {}", rfc3339(*not_after))]
    Expired {
        /// notAfter, Unix seconds.
        not_after: i64,
    },
}

impl VerificationError {
    /// The error with the text it quotes from the certificate (a CN, names a rule refused)
    /// passed through `redact`: a connector can put a sensitive value it was given in a
    /// certificate, and the refusal goes to the order, the audit log, the API and the CLI.
    pub fn redacted(self, redact: impl Fn(&str) -> String) -> Self {
        match self {
            Self::UnexpectedCommonName(cn) => Self::UnexpectedCommonName(redact(&cn)),
            Self::NotAllowed { profile, rule } => Self::NotAllowed { profile, rule: redact(&rule) },
            Self::UncheckableSubject(why) => Self::UncheckableSubject(redact(&why)),
            other => other,
        }
    }
}

/// Where among everything returned — the certificate field's blocks, then the chain's — the
/// certificate for the CSR's key is, counting from 1; read again from the texts (an error
/// path), since the chain above has lost copies of the first block.
fn leaf_position(expected: &Expected<'_>, certificate_pem: &str, chain_pems: &[String]) -> Option<usize> {
    std::iter::once(certificate_pem)
        .chain(chain_pems.iter().map(String::as_str))
        .flat_map(|pem| cert::pem_certificates(pem).unwrap_or_default())
        .position(|der| {
            cert::parse(&der).is_ok_and(|c| c.public_key().subject_public_key.data == expected.public_key_raw)
        })
        .map(|i| i + 1)
}

/// Refuses a certificate whose subject (as stored: every attribute, whatever its string
/// type), names, issuer or other bytes, or whose chain, hold one of the call's `secrets`: it
/// would be stored and shown to every role (a CA or a script that copied one into an OU, a
/// name or an extension; hostile-connector review of stop 41). Not when what the request itself supplied — `asked`: its CSR's subject, its CN
/// and names — holds one: a short secret that is a word of them would refuse every order,
/// and a refusal would tell a requester their guess was right (diff review). The pipeline
/// and `plugin check` both apply it.
pub fn holds_no_secret<'a>(
    secrets: impl Iterator<Item = &'a str>,
    asked: impl Iterator<Item = &'a str>,
    verified: &VerifiedCertificate,
) -> Result<(), VerificationError> {
    let secrets: Vec<&str> = secrets.collect();
    if secrets.is_empty() {
        return Ok(());
    }
    let rules = crate::connector::redact::Redactor::new(secrets.iter().copied());
    let holds = |text: &str| rules.redact(text) != text;
    let mut asked = asked;
    if asked.any(holds) {
        return Ok(());
    }
    if holds(&verified.info.subject) {
        return Err(VerificationError::HoldsSensitive("its subject"));
    }
    if verified.info.sans.iter().any(|san| holds(&san.to_string())) {
        return Err(VerificationError::HoldsSensitive("its subjectAltName list"));
    }
    // Beyond the subject and names: the issuer, an extension (a comment, a policy's CPS URI,
    // an AIA URL) or a chain certificate's names (red-team walkthrough of stop 48: a script
    // named its intermediate after the API key, and every role read it as the issuer). Text
    // fields hold their value's bytes as they are, so the DER's bytes are searched for each
    // value as it is — not for every encoded form the redaction knows, which cost 10% of an
    // issuance's CPU where the account's CA key is sensitive (`bench/ab.sh`). Only values of
    // `MIN_ANYWHERE` characters or more: a shorter one (a 4-digit PIN) stands in a CA's own
    // names and URLs ("Issuing CA 2024", "…/1234.crl") and would refuse every certificate.
    let long: Vec<&[u8]> = secrets
        .iter()
        .filter(|s| s.chars().count() >= crate::connector::redact::MIN_ANYWHERE)
        .map(|s| s.as_bytes())
        .collect();
    let holds_long = |bytes: &[u8]| long.iter().any(|v| bytes.windows(v.len()).any(|w| w == *v));
    if holds_long(verified.info.issuer.as_bytes()) {
        return Err(VerificationError::HoldsSensitive("its issuer"));
    }
    if holds_long(&verified.der) {
        return Err(VerificationError::HoldsSensitive("one of its extensions"));
    }
    if verified.chain.iter().any(|der| holds_long(der)) {
        return Err(VerificationError::HoldsSensitive("its chain"));
    }
    Ok(())
}

/// Verifies a connector's `issued` result.
///
/// `certificate_pem` may carry the chain after the leaf (Avi scripts return it that way);
/// such extra blocks are put in front of `chain_pems`. A copy of the leaf inside the chain, or
/// of a chain certificate, is dropped rather than stored twice.
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
    if der.len() > MAX_CERTIFICATE_DER {
        return Err(VerificationError::TooLarge { which: "the returned certificate".into(), size: der.len() });
    }
    // Each certificate is parsed once; the parsed forms borrow `der` and `chain`.
    let leaf = cert::parse(&der).map_err(VerificationError::Unparsable)?;
    let info = CertificateInfo::from_parsed(&der, &leaf).map_err(VerificationError::Unparsable)?;
    let mut chain = blocks;
    let mut ignored_chain_entries = Vec::new();
    for (i, pem) in chain_pems.iter().enumerate() {
        let found = cert::pem_certificates(pem)
            .map_err(|error| VerificationError::ChainUnparsable { position: i + 1, error })?;
        // An empty entry is a script saying "no chain"; text without a certificate is noted.
        if found.is_empty() && !pem.trim().is_empty() {
            ignored_chain_entries.push(i + 1);
        }
        chain.extend(found);
    }
    chain.retain(|c| *c != der);
    if chain.len() > MAX_CHAIN {
        return Err(VerificationError::ChainTooLong(chain.len()));
    }
    // Each certificate once: a chain of [CA, CA] verified (the CA signs itself) and was
    // stored and deployed with the copy (red-team walkthrough of stop 48).
    if chain.len() > 1 {
        let mut seen = std::collections::HashSet::new();
        chain.retain(|c| seen.insert(c.clone()));
    }
    if let Some((i, c)) = chain.iter().enumerate().find(|(_, c)| c.len() > MAX_CERTIFICATE_DER) {
        return Err(VerificationError::TooLarge { which: format!("chain certificate {}", i + 1), size: c.len() });
    }
    let mut issuers = Vec::with_capacity(chain.len());
    for (i, c) in chain.iter().enumerate() {
        let parsed = cert::parse(c)
            .and_then(|p| cert::check_supported(&p).map(|()| p))
            .map_err(|error| VerificationError::ChainUnparsable { position: i + 1, error })?;
        issuers.push(parsed);
    }

    if info.public_key_raw != expected.public_key_raw {
        return Err(match leaf_position(expected, certificate_pem, chain_pems) {
            Some(position) => VerificationError::LeafNotFirst { position },
            None => VerificationError::KeyMismatch,
        });
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
    let common_names = cert::common_names(&leaf).map_err(VerificationError::UncheckableSubject)?;
    if common_names.len() > 1 {
        return Err(VerificationError::UncheckableSubject(format!(
            "its subject has {} CNs, and certhost asks for one",
            common_names.len()
        )));
    }
    if let Some(cn) = common_names.first() {
        check_common_name(cn, expected.common_name, &info.sans)?;
    }
    let authority = cert::authority(&leaf);
    if authority.ca || info.is_ca {
        return Err(VerificationError::NotEndEntity { reason: "basicConstraints CA:TRUE" });
    }
    if authority.key_cert_sign == Some(true) {
        return Err(VerificationError::NotEndEntity { reason: "keyUsage keyCertSign" });
    }
    // After the CA checks, so that a CA certificate is named as one. Fail closed: a
    // basicConstraints the parser cannot read is CA:TRUE to some clients.
    if let Some(why) = crate::x509::uncheckable_extension(&leaf) {
        return Err(VerificationError::UncheckableExtension(why));
    }
    if let Ok(Some(ku)) = leaf.key_usage()
        && ku.value.crl_sign()
    {
        return Err(VerificationError::ForbiddenUsage("signing CRLs (keyUsage cRLSign)".into()));
    }
    if let Ok(Some(eku)) = leaf.extended_key_usage()
        && let Some(purpose) = crate::x509::forbidden_purpose(eku.value)
    {
        return Err(VerificationError::ForbiddenUsage(format!("{purpose} (extendedKeyUsage)")));
    }
    // Every signature a client checks, the leaf's first (chain or none); a root's signature
    // on itself proves nothing and is not checked by clients (old roots are SHA-1 signed).
    let signed = std::iter::once(&leaf).chain(issuers.iter()).enumerate();
    for (position, c) in signed.filter(|(position, c)| *position == 0 || c.subject() != c.issuer()) {
        if let Some(algorithm) = crate::x509::weak_signature(&c.signature_algorithm.algorithm) {
            return Err(VerificationError::WeakSignature { position, algorithm });
        }
    }
    let mut child = &leaf;
    for (i, issuer) in issuers.iter().enumerate() {
        match cert::check_link(child, issuer) {
            Ok(()) => {}
            Err(LinkError::UnsupportedSignature(algorithm)) => {
                return Err(VerificationError::UnsupportedSignature { position: i, algorithm });
            }
            Err(LinkError::NameMismatch | LinkError::BadSignature) => {
                return Err(VerificationError::ChainBroken { position: i });
            }
        }
        let position = i + 1;
        let authority = cert::authority(issuer);
        if !authority.ca {
            return Err(VerificationError::IssuerNotCa { position, reason: "basicConstraints does not say CA:TRUE" });
        }
        if authority.key_cert_sign == Some(false) {
            return Err(VerificationError::IssuerNotCa { position, reason: "its keyUsage lacks keyCertSign" });
        }
        let (not_before, not_after) = cert::validity(issuer);
        // The last of two or more chain certificates may be a cross-signature towards an older
        // root, kept by CAs after it expired (AddTrust, DST Root CA X3): clients that trust the
        // newer root stop before it. Every certificate below it must be valid.
        let trailing_cross_sign = position == issuers.len() && position >= 2;
        if !trailing_cross_sign && (expected.now + CLOCK_SKEW < not_before || expected.now > not_after) {
            return Err(VerificationError::IssuerNotValid { position, not_before, not_after, now: expected.now });
        }
        child = issuer;
    }
    if expected.now + CLOCK_SKEW < info.not_before {
        return Err(VerificationError::NotYetValid { not_before: info.not_before });
    }
    if expected.now > info.not_after {
        return Err(VerificationError::Expired { not_after: info.not_after });
    }
    Ok(VerifiedCertificate { info, der, chain, ignored_chain_entries })
}

/// The subject CN a certificate may carry: the requested CN, or one of the certificate's own
/// subjectAltNames (a CA may put a SAN there when the request had no CN; the SANs are held to
/// the profile's rules). DNS names and email addresses compare case-insensitively.
pub fn check_common_name(cn: &str, requested: Option<&str>, sans: &[San]) -> Result<(), VerificationError> {
    if requested.is_some_and(|r| r.eq_ignore_ascii_case(cn)) {
        return Ok(());
    }
    let named = sans.iter().any(|san| match san {
        San::Dns(d) | San::Email(d) => d.eq_ignore_ascii_case(cn),
        San::Ip(ip) => cn.parse::<std::net::IpAddr>().is_ok_and(|c| c == *ip),
        San::Uri(u) => u == cn,
    });
    if named {
        Ok(())
    } else {
        // Quoted from the certificate: at most 256 characters of it.
        let mut quoted: String = cn.chars().take(256).collect();
        if quoted.len() < cn.len() {
            quoted.push('…');
        }
        Err(VerificationError::UnexpectedCommonName(quoted))
    }
}

/// What is wrong with a validity period at `now`, for a message.
fn validity_problem(not_before: i64, not_after: i64, now: i64) -> String {
    if now > not_after {
        format!("it expired at {}", rfc3339(not_after))
    } else {
        format!("it is not valid until {}", rfc3339(not_before))
    }
}

/// Whether the certificate's SANs contain the requested one (DNS compared case-insensitively).
fn covers(info: &CertificateInfo, wanted: &San) -> bool {
    info.sans.iter().any(|have| match (have, wanted) {
        (San::Dns(a), San::Dns(b)) => a.eq_ignore_ascii_case(b),
        (San::Email(a), San::Email(b)) => a.eq_ignore_ascii_case(b),
        (a, b) => a == b,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A certificate with the requested SANs but CN=evil.bank.test was stored, and listed
    /// under that name.
    #[test]
    fn the_subject_cn_must_be_the_requested_one_or_one_of_the_certificates_names() {
        let sans = [
            San::Dns("www.example.com".into()),
            San::Ip("192.0.2.7".parse().expect("literal")),
            San::Email("ops@example.com".into()),
        ];
        assert_eq!(check_common_name("WWW.example.com", Some("www.example.com"), &[]), Ok(()));
        assert_eq!(check_common_name("Ops Team", Some("ops team"), &[]), Ok(()));
        for cn in ["www.EXAMPLE.com", "192.0.2.7", "Ops@Example.com"] {
            assert_eq!(check_common_name(cn, None, &sans), Ok(()), "{cn}");
        }
        assert_eq!(
            check_common_name("evil.bank.test", Some("www.example.com"), &sans),
            Err(VerificationError::UnexpectedCommonName("evil.bank.test".into()))
        );
    }

    /// Hostile-connector review of stop 41: a certificate carrying a 20 MiB extension was
    /// stored. One over the limit is refused before it is parsed.
    #[test]
    fn a_certificate_larger_than_any_real_one_is_refused() {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(vec!["big.example.com".to_owned()]).expect("params");
        params.custom_extensions = vec![rcgen::CustomExtension::from_oid_content(
            &[1, 3, 6, 1, 4, 1, 99999, 1],
            vec![0x41; MAX_CERTIFICATE_DER],
        )];
        let pem = params.self_signed(&key).expect("signed").pem();
        let expected = Expected {
            public_key_raw: key.public_key_raw(),
            common_name: None,
            sans: &[San::Dns("big.example.com".into())],
            now: crate::clock::unix_now(),
        };
        let err = verify_issued(&expected, &pem, &[]).expect_err("too large");
        assert!(matches!(err, VerificationError::TooLarge { .. }), "{err}");
        assert!(err.to_string().contains(" bytes; certhost stores certificates of at most 256 KiB"), "{err}");
    }

    /// Times in messages were Unix seconds; a CA clock a few seconds ahead failed the order.
    #[test]
    fn validity_messages_give_rfc_3339_times() {
        assert_eq!(
            VerificationError::Expired { not_after: 1_700_000_000 }.to_string(),
            "the returned certificate expired at 2023-11-14T22:13:20Z"
        );
        assert!(
            VerificationError::NotYetValid { not_before: 1_700_000_000 }
                .to_string()
                .starts_with("the returned certificate is not valid until 2023-11-14T22:13:20Z (more than 5 minutes")
        );
        let issuer = VerificationError::IssuerNotValid { position: 1, not_before: 0, not_after: 10, now: 11 };
        assert_eq!(issuer.to_string(), "chain certificate 1 is not valid now: it expired at 1970-01-01T00:00:10Z");
    }
}
