//! Uploaded CSRs: parse (PEM or DER), verify the self-signature, extract what policy needs.

use serde::Serialize;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{ParsedExtension, X509Extension};
use x509_parser::prelude::FromDer;

use super::names::{San, Subject};
use crate::der::{self, Framing, PemError};
use crate::key::KeyAlgorithm;
use crate::x509::{SignatureFailure, checked_subject, signature_failure, spki_algorithm, split_general_names};

/// What certhost reads from an uploaded CSR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParsedCsr {
    /// DER bytes as received (after PEM decoding).
    #[serde(skip)]
    pub der: Vec<u8>,
    /// Canonical PEM of the same bytes.
    pub pem: String,
    /// Subject in RFC 4514 form.
    pub subject: String,
    /// The subject's CN, if any.
    pub common_name: Option<String>,
    /// Requested SANs.
    pub sans: Vec<San>,
    /// Key family and size.
    pub key: KeyAlgorithm,
    /// Raw public key (SPKI bit string contents), for matching certificates to the CSR.
    #[serde(skip)]
    pub public_key_raw: Vec<u8>,
    /// The subject as certhost's fields (every attribute it has is one of them), for the
    /// profile's subject rules: a CA copies the CSR's subject as it is.
    #[serde(skip)]
    pub subject_fields: Subject,
}

/// Why an uploaded CSR was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CsrParseError {
    /// Input is empty.
    #[error("the CSR is empty")]
    Empty,
    /// PEM framing is wrong.
    #[error("the CSR PEM is not usable: {0}")]
    Pem(#[from] PemError),
    /// The DER ends before the structure does.
    #[error("the CSR is truncated")]
    Truncated,
    /// Bytes after the DER structure.
    #[error("the CSR has {0} bytes of trailing garbage after its DER structure")]
    TrailingGarbage(usize),
    /// Not a PKCS#10 structure.
    #[error("the input is not a PKCS#10 certificate request: {0}")]
    NotACsr(String),
    /// The key is of a kind certhost does not accept.
    #[error("the CSR's public key is not supported: {0} (supported: RSA 2048-8192, EC P-256, EC P-384, Ed25519)")]
    UnsupportedKey(String),
    /// The self-signature does not verify: the requester does not hold the key, or the CSR was altered.
    #[error("the CSR's signature does not verify ({0})")]
    BadSignature(String),
    /// The self-signature uses an algorithm (or parameters) the host cannot check; it may be
    /// valid, so the requester is told to sign differently rather than that it is forged.
    #[error(
        "the CSR's signature cannot be checked: certhost does not support {0}; sign it with RSA (PKCS#1 v1.5, or PSS with a salt as long as the hash), ECDSA with SHA-256 or SHA-384, or Ed25519"
    )]
    UnsupportedSignature(String),
    /// The self-signature uses a hash with known collisions: CAs (Let's Encrypt among them)
    /// refuse such requests, and certhost says so before an order is placed.
    #[error("the CSR is signed with {0}, whose hash is broken; sign it with SHA-256 or stronger (openssl req -sha256)")]
    WeakSignature(String),
    /// A key usage or extended key usage beyond what an end-entity certificate for TLS or
    /// e-mail needs: an OCSPSigning leaf answers OCSP for its whole CA, a codeSigning or
    /// anyExtendedKeyUsage one signs software, a cRLSign one signs CRLs.
    #[error(
        "the CSR requests {0}, which certhost does not ask a CA for (allowed: keyUsage without keyCertSign and cRLSign; extendedKeyUsage serverAuth, clientAuth, emailProtection)"
    )]
    UnrequestableUsage(String),
    /// An attribute other than the extension request: CAs act on some of them (Microsoft's
    /// msExtReq carries extensions OpenSSL and AD CS copy; enrollment name-value pairs carry
    /// SANs), and no profile rule has looked at what they say.
    #[error(
        "the CSR carries the attribute {0}, which certhost cannot check against a profile (allowed: extensionRequest, challengePassword, unstructuredName, and Windows' informational enrollment attributes)"
    )]
    UncheckableAttribute(String),
    /// The requested names can be read more than one way, so a CA might honour names the
    /// profile never saw.
    #[error("the CSR's requested names are ambiguous: {0}")]
    Ambiguous(String),
    /// A subject attribute no profile rule covers, or a field given twice.
    #[error("the CSR cannot be checked against a profile: {0}")]
    UncheckableSubject(String),
    /// A requested subjectAltName of a kind no profile rule covers.
    #[error(
        "the CSR requests a subjectAltName that certhost cannot check against a profile: {0} (supported: DNS, IP, email, URI)"
    )]
    UncheckableName(String),
    /// A requested extension the host does not model: a CA that copies requested extensions
    /// (`openssl x509 -copy_extensions`, many in-house CAs) would put it in the certificate
    /// unseen by any profile rule — CRL or OCSP pointers to the requester's server, name
    /// constraints, a CA flag, a critical extension nobody can read.
    #[error(
        "the CSR requests the {0}, which certhost cannot check against a profile (allowed: subjectAltName, keyUsage, extendedKeyUsage, basicConstraints with CA:FALSE, subjectKeyIdentifier)"
    )]
    UncheckableExtension(String),
}

/// Parses and verifies an uploaded CSR in PEM (`CERTIFICATE REQUEST`) or DER form.
pub fn parse_csr(input: &[u8]) -> Result<ParsedCsr, CsrParseError> {
    let der = csr_der(input)?;
    let (csr, key) = decode(&der)?;
    let info = &csr.certification_request_info;
    if let Some(name) = crate::x509::weak_signature(&csr.signature_algorithm.algorithm) {
        return Err(CsrParseError::WeakSignature(name));
    }
    csr.verify_signature().map_err(|e| match signature_failure(&e, &csr.signature_algorithm, &info.subject_pki) {
        SignatureFailure::Unsupported(algorithm) => CsrParseError::UnsupportedSignature(algorithm),
        SignatureFailure::Invalid => CsrParseError::BadSignature(e.to_string()),
    })?;
    let subject_fields = checked_subject(&info.subject).map_err(CsrParseError::UncheckableSubject)?;
    let sans = requested_sans(&csr, &der)?;
    Ok(ParsedCsr {
        pem: der::pem_encode("CERTIFICATE REQUEST", &der),
        subject: crate::x509::dn_string(&info.subject),
        common_name: subject_fields.common_name.clone(),
        sans,
        key,
        public_key_raw: info.subject_pki.subject_public_key.data.to_vec(),
        subject_fields,
        der,
    })
}

/// The subjectAltNames a CSR requests — all of them, or an error. Profile policy is checked
/// against these names, while a CA copies the CSR's extension as it finds it: a second
/// extensionRequest attribute or SAN extension (which one would a CA honour?), or a name this
/// list cannot hold (otherName, directoryName, …), would let a certificate name what no
/// profile rule looked at.
fn requested_sans(csr: &X509CertificationRequest<'_>, der: &[u8]) -> Result<Vec<San>, CsrParseError> {
    use x509_parser::cri_attributes::ParsedCriAttribute;
    use x509_parser::oid_registry::{OID_PKCS9_EXTENSION_REQUEST, OID_X509_EXT_SUBJECT_ALT_NAME};
    // x509-parser keeps only the header of an attribute it does not know: each attribute is
    // checked as the DER has it. Looked up by OID instead, a second attribute with the same OID
    // (an enrollmentNameValuePair `SAN:dns=…` after a harmless `CertificateTemplate:…`) was
    // judged by the first one's value (code review of stop 39).
    let parsed = csr.certification_request_info.attributes();
    let raw = raw_attributes(der)
        .filter(|raw| raw.len() == parsed.len())
        .ok_or_else(|| CsrParseError::NotACsr("its attributes do not parse".into()))?;
    for (oid, value) in raw {
        check_attribute(&x509_parser::oid_registry::Oid::new(std::borrow::Cow::Borrowed(oid)), value)?;
    }
    let requests: Vec<_> =
        csr.certification_request_info.attributes().iter().filter(|a| a.oid == OID_PKCS9_EXTENSION_REQUEST).collect();
    if requests.len() > 1 {
        return Err(CsrParseError::Ambiguous(format!(
            "it carries {} extensionRequest attributes, and CAs differ in which they honour",
            requests.len()
        )));
    }
    let mut sans = Vec::new();
    let mut san_extensions = 0;
    for attribute in requests {
        let ParsedCriAttribute::ExtensionRequest(request) = attribute.parsed_attribute() else {
            return Err(CsrParseError::NotACsr("its extensionRequest attribute does not parse".into()));
        };
        for ext in &request.extensions {
            check_requested_extension(ext)?;
        }
        for ext in request.extensions.iter().filter(|e| e.oid == OID_X509_EXT_SUBJECT_ALT_NAME) {
            san_extensions += 1;
            let ParsedExtension::SubjectAlternativeName(san) = ext.parsed_extension() else {
                return Err(CsrParseError::NotACsr("its subjectAltName extension does not parse".into()));
            };
            let (known, other) = split_general_names(&san.general_names);
            if let Some(kind) = other.into_iter().next() {
                return Err(CsrParseError::UncheckableName(kind));
            }
            sans.extend(known);
        }
    }
    if san_extensions > 1 {
        return Err(CsrParseError::Ambiguous(format!(
            "it requests the subjectAltName extension {san_extensions} times"
        )));
    }
    Ok(sans)
}

/// Refuses an attribute a CA might act on unseen. Allowed: the PKCS#9 extensionRequest (read
/// and checked by the caller), challengePassword and unstructuredName (no CA issues from
/// them), and what Windows' `certreq` adds to describe the requesting machine (OS version,
/// client information, the CSP): requests made on Windows keep working. Refused: Microsoft's
/// msExtReq (OpenSSL and AD CS copy its extensions like the standard attribute's), enrollment
/// name-value pairs (`SAN:dns=...`, which AD CS honours), and anything unknown.
fn check_attribute(oid: &x509_parser::oid_registry::Oid<'_>, value: &[u8]) -> Result<(), CsrParseError> {
    const ALLOWED: [&str; 6] = [
        "1.2.840.113549.1.9.14",  // extensionRequest
        "1.2.840.113549.1.9.7",   // challengePassword
        "1.2.840.113549.1.9.2",   // unstructuredName
        "1.3.6.1.4.1.311.13.2.3", // Microsoft OS version
        "1.3.6.1.4.1.311.21.20",  // Microsoft request client info
        "1.3.6.1.4.1.311.13.2.2", // Microsoft enrollment CSP
    ];
    let id = oid.to_id_string();
    if ALLOWED.contains(&id.as_str()) {
        return Ok(());
    }
    // Windows' `certreq` writes `CertificateTemplate:WebServer` as a name-value pair; only a
    // pair named SAN (`SAN:dns=…`) requests names.
    if id == "1.3.6.1.4.1.311.13.2.1"
        && name_value_pairs(value).is_some_and(|names| !names.iter().any(|n| n.eq_ignore_ascii_case("san")))
    {
        return Ok(());
    }
    let name = match id.as_str() {
        "1.3.6.1.4.1.311.2.1.14" => format!("msExtReq ({id}), Microsoft's extension request"),
        "1.3.6.1.4.1.311.13.2.1" => format!("enrollmentNameValuePair ({id}) with a SAN pair, which requests names"),
        _ => id,
    };
    Err(CsrParseError::UncheckableAttribute(name))
}

/// Each attribute of a CSR's DER as (OID contents, the whole SET of its values).
fn raw_attributes(der: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    let (0x30, request, _) = der::first_object(der)? else { return None };
    let (0x30, info, _) = der::first_object(request)? else { return None };
    // version, subject, subjectPKInfo, then [0] attributes.
    let mut rest = info;
    for _ in 0..3 {
        rest = der::first_object(rest)?.2;
    }
    let (0xa0, mut attributes, _) = der::first_object(rest)? else { return None };
    let mut out = Vec::new();
    while !attributes.is_empty() {
        let (0x30, attribute, next) = der::first_object(attributes)? else { return None };
        let (0x06, oid, values) = der::first_object(attribute)? else { return None };
        out.push((oid, values));
        attributes = next;
    }
    Some(out)
}

/// The names of an enrollmentNameValuePair attribute's pairs (`SET OF SEQUENCE { name
/// BMPString, value BMPString }`), or `None` when it is not that.
fn name_value_pairs(value: &[u8]) -> Option<Vec<String>> {
    let (0x31, mut pairs, []) = der::first_object(value)? else { return None };
    let mut names = Vec::new();
    while !pairs.is_empty() {
        let (0x30, pair, rest) = der::first_object(pairs)? else { return None };
        let (0x1e, name, _) = der::first_object(pair)? else { return None };
        if name.len() % 2 != 0 {
            return None;
        }
        let units: Vec<u16> = name.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
        names.push(String::from_utf16(&units).ok()?);
        pairs = rest;
    }
    Some(names)
}

/// Refuses a requested extension other than those the host models (the SAN, checked by the
/// caller, and what the host's own CSRs could carry and a profile has no rule about: keyUsage,
/// extendedKeyUsage, basicConstraints with CA:FALSE, subjectKeyIdentifier). What a profile
/// never saw must not reach a CA that copies extensions.
fn check_requested_extension(ext: &X509Extension<'_>) -> Result<(), CsrParseError> {
    use x509_parser::oid_registry::{
        OID_X509_EXT_BASIC_CONSTRAINTS, OID_X509_EXT_EXTENDED_KEY_USAGE, OID_X509_EXT_KEY_USAGE,
        OID_X509_EXT_SUBJECT_ALT_NAME, OID_X509_EXT_SUBJECT_KEY_IDENTIFIER,
    };
    let named = || crate::x509::extension_name(&ext.oid);
    let parsed = ext.parsed_extension();
    if let ParsedExtension::ParseError { .. } = parsed {
        return Err(CsrParseError::NotACsr(format!("its requested {} does not parse", named())));
    }
    if ext.oid == OID_X509_EXT_BASIC_CONSTRAINTS {
        return match parsed {
            ParsedExtension::BasicConstraints(bc) if !bc.ca => Ok(()),
            _ => Err(CsrParseError::UncheckableExtension("basicConstraints extension with CA:TRUE".into())),
        };
    }
    match &parsed {
        ParsedExtension::KeyUsage(ku) if ku.key_cert_sign() || ku.crl_sign() => {
            return Err(CsrParseError::UnrequestableUsage("keyUsage keyCertSign or cRLSign".into()));
        }
        ParsedExtension::ExtendedKeyUsage(eku) => {
            if let Some(purpose) = crate::x509::unrequestable_purpose(eku) {
                return Err(CsrParseError::UnrequestableUsage(format!("extendedKeyUsage {purpose}")));
            }
        }
        _ => {}
    }
    let modelled = [
        OID_X509_EXT_SUBJECT_ALT_NAME,
        OID_X509_EXT_KEY_USAGE,
        OID_X509_EXT_EXTENDED_KEY_USAGE,
        OID_X509_EXT_SUBJECT_KEY_IDENTIFIER,
    ];
    if modelled.contains(&ext.oid) { Ok(()) } else { Err(CsrParseError::UncheckableExtension(named())) }
}

/// The raw public key of a CSR an order holds, for matching the issued certificate to it.
///
/// The self-signature is not checked again: an order's CSR was either built by the host or
/// passed [`parse_csr`] before the order was written, and a verification is the costliest
/// step of reading a CSR (an ECDSA verification per issuance).
pub(crate) fn stored_csr_public_key(pem: &str) -> Result<Vec<u8>, CsrParseError> {
    let der = csr_der(pem.as_bytes())?;
    Ok(decode(&der)?.0.certification_request_info.subject_pki.subject_public_key.data.to_vec())
}

/// DER of a CSR given as PEM or DER, with its framing checked.
fn csr_der(input: &[u8]) -> Result<Vec<u8>, CsrParseError> {
    if input.iter().all(u8::is_ascii_whitespace) {
        return Err(CsrParseError::Empty);
    }
    let pem = der::pem_start(input);
    let der = if let Some(start) = pem {
        let text = std::str::from_utf8(&input[start..]).map_err(|_| PemError::Malformed("not UTF-8 text".into()))?;
        der::single_pem_block(text, &["CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"])?
    } else {
        input.to_vec()
    };
    match der::framing(&der) {
        Framing::Exact => {}
        Framing::Truncated => return Err(CsrParseError::Truncated),
        Framing::TrailingData(n) => return Err(CsrParseError::TrailingGarbage(n)),
        // A PEM block with something else inside was "neither PEM (no -----BEGIN line)" (API
        // review of stop 38).
        Framing::NotASequence if pem.is_some() => {
            return Err(CsrParseError::NotACsr(
                "its PEM block does not hold DER (the decoded bytes do not start with a SEQUENCE)".into(),
            ));
        }
        Framing::NotASequence => {
            return Err(CsrParseError::NotACsr(
                "it is neither PEM (no -----BEGIN line) nor DER (it does not start with a SEQUENCE)".into(),
            ));
        }
    }
    Ok(der)
}

/// The PKCS#10 structure in `der` and its key type, refused when the key is not one certhost
/// accepts.
fn decode(der: &[u8]) -> Result<(X509CertificationRequest<'_>, KeyAlgorithm), CsrParseError> {
    let (_, csr) = X509CertificationRequest::from_der(der).map_err(|e| match e {
        x509_parser::nom::Err::Incomplete(_) => CsrParseError::Truncated,
        x509_parser::nom::Err::Error(e) | x509_parser::nom::Err::Failure(e) => {
            CsrParseError::NotACsr(match der::container_kind(der) {
                Some(kind) => der::container_sentence(kind, "a certificate request"),
                None if x509_parser::certificate::X509Certificate::from_der(der).is_ok() => {
                    "it is a certificate, not a certificate request".into()
                }
                None => crate::x509::parser_error_sentence(&e, "a certificate request"),
            })
        }
    })?;
    let info = &csr.certification_request_info;
    let key = spki_algorithm(&info.subject_pki).map_err(CsrParseError::UnsupportedKey)?;
    match key {
        KeyAlgorithm::Rsa { bits } if !(2048..=8192).contains(&bits) => {
            return Err(CsrParseError::UnsupportedKey(format!("RSA with a {bits}-bit modulus")));
        }
        KeyAlgorithm::EcP521 => return Err(CsrParseError::UnsupportedKey("EC P-521".into())),
        _ => {}
    }
    Ok((csr, key))
}
