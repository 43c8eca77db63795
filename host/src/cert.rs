//! Certificates as the inventory sees them: parsed once into [`CertificateInfo`].

use serde::{Deserialize, Serialize};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer;

use crate::csr::San;
use crate::der::{self, Framing};
use crate::key::KeyAlgorithm;
use crate::x509::{spki_algorithm, split_general_names};

/// Facts about one certificate, computed from its DER.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateInfo {
    /// Serial number, lowercase hex without separators.
    pub serial: String,
    /// SHA-1 over the DER, lowercase hex (what Windows and Keyfactor call the thumbprint).
    pub sha1: String,
    /// SHA-256 over the DER, lowercase hex.
    pub sha256: String,
    /// Subject, RFC 4514.
    pub subject: String,
    /// Issuer, RFC 4514.
    pub issuer: String,
    /// The subject's CN, if any.
    pub common_name: Option<String>,
    /// Subject alternative names.
    pub sans: Vec<San>,
    /// Start of validity, Unix seconds.
    pub not_before: i64,
    /// End of validity, Unix seconds.
    pub not_after: i64,
    /// Public key family and size.
    pub key: KeyAlgorithm,
    /// Whether basicConstraints says CA.
    pub is_ca: bool,
    /// Raw public key (SPKI bit string contents), for matching keys and CSRs.
    #[serde(skip)]
    pub public_key_raw: Vec<u8>,
    /// SANs of kinds `sans` cannot hold (otherName, directoryName, …), by kind: no profile
    /// rule allows them, so an issued certificate carrying one is refused. Not stored.
    #[serde(skip)]
    pub other_sans: Vec<String>,
    /// The subject's emailAddress values: an identity the profile's subject rules do not
    /// cover, so an issued certificate may carry one only where its request did. Not stored.
    #[serde(skip)]
    pub subject_emails: Vec<String>,
}

/// Why bytes are not a usable certificate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// The DER ends early.
    #[error("the certificate is truncated")]
    Truncated,
    /// Bytes follow the certificate.
    #[error("the certificate has {0} bytes of trailing garbage")]
    TrailingGarbage(usize),
    /// Not X.509.
    #[error("not an X.509 certificate: {0}")]
    Malformed(String),
    /// A key certhost cannot describe.
    #[error("the certificate's public key is not supported: {0}")]
    UnsupportedKey(String),
    /// PEM text holds no certificate.
    #[error("no PEM CERTIFICATE block found")]
    NoCertificate,
    /// PEM is broken.
    #[error("malformed PEM: {0}")]
    Pem(String),
}

impl CertificateInfo {
    /// Parses one DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, CertError> {
        Self::from_parsed(der, &parse(der)?)
    }

    /// The facts of `cert`, already parsed from `der` by [`parse`]: a caller that also needs
    /// the parsed form (chain verification) parses each certificate once.
    pub fn from_parsed(der: &[u8], cert: &X509Certificate<'_>) -> Result<Self, CertError> {
        let key = spki_algorithm(cert.public_key()).map_err(CertError::UnsupportedKey)?;
        let (mut sans, mut other_sans) = (Vec::new(), Vec::new());
        let mut is_ca = false;
        for ext in cert.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::SubjectAlternativeName(san) => {
                    let (known, other) = split_general_names(&san.general_names);
                    sans.extend(known);
                    other_sans.extend(other);
                }
                ParsedExtension::BasicConstraints(bc) => is_ca = bc.ca,
                _ => {}
            }
        }
        Ok(Self {
            serial: hex::encode(cert.raw_serial()),
            sha1: hex::encode(Sha1::digest(der)),
            sha256: hex::encode(Sha256::digest(der)),
            subject: crate::x509::dn_string(cert.subject()),
            issuer: crate::x509::dn_string(cert.issuer()),
            common_name: cert.subject().iter_common_name().next().and_then(|c| c.as_str().ok()).map(str::to_owned),
            sans,
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            key,
            is_ca,
            public_key_raw: cert.public_key().subject_public_key.data.to_vec(),
            other_sans,
            subject_emails: crate::x509::subject_emails(cert.subject()),
        })
    }
}

/// Parses exactly one DER certificate: no bytes missing, none after it.
pub fn parse(der: &[u8]) -> Result<X509Certificate<'_>, CertError> {
    match der::framing(der) {
        Framing::Exact => {}
        Framing::Truncated => return Err(CertError::Truncated),
        Framing::TrailingData(n) => return Err(CertError::TrailingGarbage(n)),
        Framing::NotASequence => return Err(CertError::Malformed("it does not start with a DER SEQUENCE".into())),
    }
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| match e {
        x509_parser::nom::Err::Incomplete(_) => CertError::Truncated,
        x509_parser::nom::Err::Error(e) | x509_parser::nom::Err::Failure(e) => {
            CertError::Malformed(match der::container_kind(der) {
                Some(kind) => der::container_sentence(kind, "a certificate"),
                None => crate::x509::parser_error_sentence(&e, "a certificate"),
            })
        }
    })?;
    Ok(cert)
}

/// Refuses a parsed chain certificate whose key certhost cannot describe, as
/// [`CertificateInfo::from_parsed`] would, without computing facts nobody keeps.
pub fn check_supported(cert: &X509Certificate<'_>) -> Result<(), CertError> {
    spki_algorithm(cert.public_key()).map(|_| ()).map_err(CertError::UnsupportedKey)
}

/// DER of every `CERTIFICATE` block in a PEM text, in order. Other blocks are ignored.
pub fn pem_certificates(text: &str) -> Result<Vec<Vec<u8>>, CertError> {
    if let Some(blocks) = crate::der::plain_pem_blocks(text) {
        return Ok(blocks.into_iter().filter(|(label, _)| *label == "CERTIFICATE").map(|(_, der)| der).collect());
    }
    let blocks = pem::parse_many(text).map_err(|e| CertError::Pem(crate::der::pem_error_sentence(&e)))?;
    Ok(blocks.into_iter().filter(|b| b.tag() == "CERTIFICATE").map(pem::Pem::into_contents).collect())
}

/// PEM text of one DER certificate.
pub fn to_pem(der: &[u8]) -> String {
    crate::der::pem_encode("CERTIFICATE", der)
}

/// Whether `issuer_der` issued `child_der`: names chain and the signature verifies — or is
/// one known to verify: made by the host with the issuer's key, or a link between CA
/// certificates verified before ([`crate::host_signatures`]).
pub fn issued_by(child_der: &[u8], issuer_der: &[u8]) -> bool {
    let (Ok((_, child)), Ok((_, issuer))) =
        (X509Certificate::from_der(child_der), X509Certificate::from_der(issuer_der))
    else {
        return false;
    };
    signed_by(&child, &issuer)
}

/// [`issued_by`] for certificates already parsed.
pub fn signed_by(child: &X509Certificate<'_>, issuer: &X509Certificate<'_>) -> bool {
    check_link(child, issuer).is_ok()
}

/// For each of `ders`, the index of its issuer among them: a certificate whose subject is its
/// issuer name and whose key verifies its signature ([`signed_by`]), trying at most
/// `max_same_name` certificates with that subject (a file of thousands of certificates with one
/// name would otherwise cost a signature check per pair). `None` for a certificate that does
/// not parse or whose issuer is not among them.
pub fn issuer_indices(ders: &[Vec<u8>], max_same_name: usize) -> Vec<Option<usize>> {
    let parsed: Vec<Option<X509Certificate<'_>>> = ders.iter().map(|der| parse(der).ok()).collect();
    let mut by_subject: std::collections::HashMap<&[u8], Vec<usize>> = std::collections::HashMap::new();
    for (i, c) in parsed.iter().enumerate() {
        if let Some(c) = c {
            by_subject.entry(c.subject().as_raw()).or_default().push(i);
        }
    }
    parsed
        .iter()
        .enumerate()
        .map(|(child, c)| {
            let c = c.as_ref()?;
            let candidates = by_subject.get(c.issuer().as_raw())?;
            candidates
                .iter()
                .take(max_same_name)
                .copied()
                .find(|&parent| parent != child && parsed[parent].as_ref().is_some_and(|p| signed_by(c, p)))
        })
        .collect()
}

/// Why a certificate is not taken as issued by another ([`check_link`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkError {
    /// The child's issuer name is not the issuer's subject.
    NameMismatch,
    /// The child is signed with an algorithm the host cannot check (named): the link may be
    /// sound, and the operator is told so rather than that the chain is broken.
    UnsupportedSignature(String),
    /// The signature does not verify with the issuer's key.
    BadSignature,
}

/// [`signed_by`] saying why not: names chain, then the signature verifies — or is one known
/// to verify ([`crate::host_signatures`]).
pub fn check_link(child: &X509Certificate<'_>, issuer: &X509Certificate<'_>) -> Result<(), LinkError> {
    if child.issuer() != issuer.subject() {
        return Err(LinkError::NameMismatch);
    }
    let algorithm = child.signature_algorithm.algorithm.to_id_string();
    let (spki, tbs, signature) =
        (issuer.public_key().raw, child.tbs_certificate.as_ref(), &child.signature_value.data[..]);
    if crate::host_signatures::known(spki, &algorithm, tbs, signature) {
        return Ok(());
    }
    match child.verify_signature(Some(issuer.public_key())) {
        Ok(()) => {
            // A CA certificate comes again with the next issuance from the same CA; a leaf never does.
            if child.is_ca() {
                crate::host_signatures::record(spki, &algorithm, tbs, signature);
            }
            Ok(())
        }
        Err(e) => Err(match crate::x509::signature_failure(&e, &child.signature_algorithm, issuer.public_key()) {
            crate::x509::SignatureFailure::Unsupported(name) => LinkError::UnsupportedSignature(name),
            crate::x509::SignatureFailure::Invalid => LinkError::BadSignature,
        }),
    }
}

/// What a certificate says about signing other certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Authority {
    /// basicConstraints CA:TRUE — or, with no basicConstraints, a self-signed X.509 v1
    /// certificate (old roots, which predate the extension; openssl counts them as CAs too).
    pub ca: bool,
    /// keyUsage keyCertSign, when the certificate has a keyUsage extension.
    pub key_cert_sign: Option<bool>,
}

/// [`Authority`] of a parsed certificate.
pub fn authority(cert: &X509Certificate<'_>) -> Authority {
    let ca = match cert.basic_constraints() {
        Ok(Some(bc)) => bc.value.ca,
        // A duplicated extension: not a CA the host can vouch for.
        Err(_) => false,
        Ok(None) => cert.version() == x509_parser::x509::X509Version::V1 && cert.subject() == cert.issuer(),
    };
    let key_cert_sign = match cert.key_usage() {
        Ok(Some(ku)) => Some(ku.value.key_cert_sign()),
        Ok(None) => None,
        Err(_) => Some(false),
    };
    Authority { ca, key_cert_sign }
}

/// notBefore and notAfter of a parsed certificate, Unix seconds.
pub fn validity(cert: &X509Certificate<'_>) -> (i64, i64) {
    (cert.validity().not_before.timestamp(), cert.validity().not_after.timestamp())
}

/// Every CN in a parsed certificate's subject, or why one is not text (a CN a client reads
/// and the host cannot is one no policy has checked).
pub fn common_names(cert: &X509Certificate<'_>) -> Result<Vec<String>, String> {
    cert.subject()
        .iter_common_name()
        .map(|cn| cn.as_str().map(str::to_owned).map_err(|_| "its subject has a CN that is not text".to_owned()))
        .collect()
}

/// The subject of a DER certificate as CSR fields, for a renewal "with the same subject".
pub fn subject_fields(der: &[u8]) -> Result<crate::csr::Subject, CertError> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| CertError::Malformed(e.to_string()))?;
    Ok(crate::x509::name_to_subject(cert.subject()))
}

#[cfg(test)]
mod tests {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    use x509_parser::prelude::FromDer;

    use super::*;

    fn ca(name: &str) -> (Vec<u8>, Issuer<'static, KeyPair>) {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("self-signed");
        (cert.der().to_vec(), Issuer::new(params, key))
    }

    /// The leaf's DER with its signature's last byte flipped (the TBS part is untouched).
    fn with_bad_signature(der: &[u8]) -> Vec<u8> {
        let mut bad = der.to_vec();
        if let Some(last) = bad.last_mut() {
            *last ^= 0x01;
        }
        bad
    }

    #[test]
    fn a_signature_is_taken_as_known_only_for_the_exact_key_algorithm_message_and_value() {
        let (ca_der, issuer) = ca("Memo CA");
        let leaf_key = KeyPair::generate().expect("key");
        let leaf = CertificateParams::new(vec!["memo.example".to_owned()])
            .expect("params")
            .signed_by(&leaf_key, &issuer)
            .expect("signed")
            .der()
            .to_vec();
        assert!(issued_by(&leaf, &ca_der), "a real signature verifies");
        let forged = with_bad_signature(&leaf);
        assert!(!issued_by(&forged, &ca_der), "a broken signature does not");

        // Had the host made the broken signature itself with the CA's key, it would be taken
        // on the host's word — for exactly that key, algorithm, message and value.
        let (_, c) = X509Certificate::from_der(&forged).expect("parses");
        let (_, ca_cert) = X509Certificate::from_der(&ca_der).expect("parses");
        let alg = c.signature_algorithm.algorithm.to_id_string();
        crate::host_signatures::record(
            ca_cert.public_key().raw,
            &alg,
            c.tbs_certificate.as_ref(),
            &c.signature_value.data,
        );
        assert!(issued_by(&forged, &ca_der));
        // Another CA of the same name (another key) gets a full verification, and fails.
        let (impostor, _) = ca("Memo CA");
        assert!(!issued_by(&forged, &impostor));
        assert!(!issued_by(&leaf, &impostor));
    }

    #[test]
    fn a_verified_link_between_ca_certificates_is_remembered_and_a_leaf_is_not() {
        let (root_der, root) = ca("Link Root");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "Link Intermediate");
        let mid_key = KeyPair::generate().expect("key");
        let mid_der = params.signed_by(&mid_key, &root).expect("signed").der().to_vec();
        let mid = Issuer::new(params, mid_key);
        let leaf_key = KeyPair::generate().expect("key");
        let leaf = CertificateParams::new(vec!["link.example".to_owned()])
            .expect("params")
            .signed_by(&leaf_key, &mid)
            .expect("signed")
            .der()
            .to_vec();
        let known = |child: &[u8], issuer: &[u8]| {
            let (_, c) = X509Certificate::from_der(child).expect("parses");
            let (_, i) = X509Certificate::from_der(issuer).expect("parses");
            crate::host_signatures::known(
                i.public_key().raw,
                &c.signature_algorithm.algorithm.to_id_string(),
                c.tbs_certificate.as_ref(),
                &c.signature_value.data,
            )
        };
        // A broken link is verified, fails, and is not remembered.
        let broken = with_bad_signature(&mid_der);
        assert!(!issued_by(&broken, &root_der));
        assert!(!known(&broken, &root_der));
        assert!(!known(&mid_der, &root_der), "nothing is known before a verification");
        assert!(issued_by(&mid_der, &root_der));
        assert!(known(&mid_der, &root_der), "the intermediate's signature is remembered");
        assert!(issued_by(&mid_der, &root_der), "and still verifies");
        assert!(issued_by(&leaf, &mid_der));
        assert!(!known(&leaf, &mid_der), "a leaf never comes twice, so it is not remembered");
    }
}
