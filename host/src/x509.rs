//! Edge between `x509-parser` types and certhost's own: key algorithms, SANs, times.
//!
//! **Invariant:** only this module and the parsers built on it (`csr::parse`, `cert`)
//! interpret x509-parser structures; everything else sees certhost types.

use std::net::IpAddr;

use x509_parser::extensions::GeneralName;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::csr::San;
use crate::key::KeyAlgorithm;

/// A parser error as part of a sentence. The parser's own text for a DER-level error is Rust
/// `Debug` syntax (`Der(UnexpectedTag { expected: Some(Tag(16)), actual: Tag(2) })`), which
/// tells a user nothing; its other errors name the field that was wrong.
pub fn parser_error_sentence(error: &x509_parser::error::X509Error, structure: &str) -> String {
    use x509_parser::error::X509Error;
    match error {
        X509Error::Der(_) | X509Error::NomError(_) | X509Error::Generic => {
            format!("its DER does not have the structure of {structure}")
        }
        other => format!("its DER does not have the structure of {structure} ({other})"),
    }
}

/// Identifies a public key's family and size from its SubjectPublicKeyInfo.
///
/// OIDs are compared as encoded bytes (the registry's constants); the dotted text is only
/// made for an error. Every issuance's certificate passes through here.
pub fn spki_algorithm(spki: &SubjectPublicKeyInfo<'_>) -> Result<KeyAlgorithm, String> {
    use x509_parser::oid_registry::{
        OID_EC_P256, OID_KEY_TYPE_DSA, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_NIST_EC_P521,
        OID_PKCS1_RSAENCRYPTION, OID_SIG_ED25519,
    };
    let alg = &spki.algorithm.algorithm;
    if *alg == OID_PKCS1_RSAENCRYPTION {
        match spki.parsed() {
            Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => {
                let bits = rsa.key_size();
                Ok(KeyAlgorithm::Rsa { bits: u32::try_from(bits).unwrap_or(u32::MAX) })
            }
            _ => Err("RSA public key that does not parse".into()),
        }
    } else if *alg == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let (key, field_bytes) = match spki.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok()) {
            Some(curve) if curve == OID_EC_P256 => (KeyAlgorithm::EcP256, 32),
            Some(curve) if curve == OID_NIST_EC_P384 => (KeyAlgorithm::EcP384, 48),
            Some(curve) if curve == OID_NIST_EC_P521 => (KeyAlgorithm::EcP521, 66),
            Some(curve) => return Err(format!("EC key on curve {}", curve.to_id_string())),
            None => return Err("EC key without a named curve".into()),
        };
        // The curve label and the point must agree: a P-256 point labelled P-384 would match
        // a P-256 CSR byte for byte and be a certificate no TLS stack can load.
        let point = &spki.subject_public_key.data;
        let fits = match point.first() {
            Some(4) => point.len() == 1 + 2 * field_bytes,
            Some(2 | 3) => point.len() == 1 + field_bytes,
            _ => false,
        };
        if fits {
            Ok(key)
        } else {
            Err(format!("{key} key with a {}-byte point, the wrong size for that curve", point.len()))
        }
    } else if *alg == OID_SIG_ED25519 {
        match spki.subject_public_key.data.len() {
            32 => Ok(KeyAlgorithm::Ed25519),
            n => Err(format!("Ed25519 key of {n} bytes (an Ed25519 key is 32)")),
        }
    } else if *alg == OID_KEY_TYPE_DSA {
        Err("DSA key".into())
    } else {
        Err(format!("key algorithm {}", alg.to_id_string()))
    }
}

/// Converts the SAN kinds certhost handles; others (directoryName, otherName) are skipped.
pub fn general_name_to_san(name: &GeneralName<'_>) -> Option<San> {
    match name {
        GeneralName::DNSName(d) => Some(San::Dns((*d).to_owned())),
        GeneralName::RFC822Name(e) => Some(San::Email((*e).to_owned())),
        GeneralName::URI(u) => Some(San::Uri((*u).to_owned())),
        GeneralName::IPAddress(bytes) => match bytes.len() {
            4 => <[u8; 4]>::try_from(*bytes).ok().map(|b| San::Ip(IpAddr::from(b))),
            16 => <[u8; 16]>::try_from(*bytes).ok().map(|b| San::Ip(IpAddr::from(b))),
            _ => None,
        },
        _ => None,
    }
}

/// A SAN extension's names split into those certhost has a `San` for and the kinds of the
/// rest (`general_name_kind`): every reader decides representability here, in one place.
pub fn split_general_names(names: &[GeneralName<'_>]) -> (Vec<San>, Vec<String>) {
    let (mut known, mut other) = (Vec::new(), Vec::new());
    for name in names {
        match general_name_to_san(name) {
            Some(san) => known.push(san),
            None => other.push(general_name_kind(name)),
        }
    }
    (known, other)
}

/// What kind of name a GeneralName is, for messages about names `general_name_to_san` has no
/// `San` for (the value stays out of the message).
pub fn general_name_kind(name: &GeneralName<'_>) -> String {
    match name {
        GeneralName::OtherName(oid, _) => format!("an otherName of type {oid}"),
        GeneralName::X400Address(_) => "an x400Address".into(),
        GeneralName::DirectoryName(_) => "a directoryName".into(),
        GeneralName::EDIPartyName(_) => "an ediPartyName".into(),
        GeneralName::RegisteredID(_) => "a registeredID".into(),
        GeneralName::IPAddress(bytes) => format!("an IP address of {} bytes (4 or 16 expected)", bytes.len()),
        GeneralName::Invalid(..) => "a name that does not decode".into(),
        GeneralName::DNSName(_) | GeneralName::RFC822Name(_) | GeneralName::URI(_) => "a name".into(),
    }
}

/// The name of a signature algorithm whose hash has known collisions (MD2, MD5, SHA-1), or
/// `None`. Such a signature proves little: a chosen-prefix collision lets whoever controls a
/// request's contents obtain a second certificate signed alongside the first (SHA-1 since
/// 2020, MD5 since 2008). Issued certificates and uploaded CSRs are refused with it;
/// certificates imported from an existing inventory are not (they are the operator's record).
pub fn weak_signature(algorithm: &x509_parser::oid_registry::Oid<'_>) -> Option<String> {
    let weak = [
        "1.2.840.113549.1.1.2", // md2WithRSAEncryption
        "1.2.840.113549.1.1.4", // md5WithRSAEncryption
        "1.2.840.113549.1.1.5", // sha1WithRSAEncryption
        "1.3.14.3.2.29",        // sha1WithRSASignature (OIW)
        "1.2.840.10045.4.1",    // ecdsa-with-SHA1
        "1.2.840.10040.4.3",    // dsa-with-sha1
    ];
    let id = algorithm.to_id_string();
    weak.contains(&id.as_str()).then(|| signature_algorithm_name(algorithm))
}

/// An extension's short name and OID for a message (`basicConstraints extension
/// (2.5.29.19)`), or its OID alone when the registry has no name for it.
pub fn extension_name(oid: &x509_parser::oid_registry::Oid<'_>) -> String {
    match x509_parser::objects::oid2sn(oid, x509_parser::objects::oid_registry()) {
        Ok(name) => format!("{name} extension ({oid})"),
        Err(_) => format!("extension {oid}"),
    }
}

/// Why the extensions of an end-entity certificate cannot be vouched for, or `None`: an
/// extension given twice (which one does a client read?); an extension that decides what the
/// certificate may do (basicConstraints, keyUsage, extendedKeyUsage, subjectAltName,
/// nameConstraints) or is critical, and does not parse as DER — x509-parser keeps it as an
/// error where OpenSSL may read it (a basicConstraints with a BER boolean is CA:TRUE to
/// OpenSSL and absent to a strict reader); or a critical extension certhost does not know,
/// which every client refuses. Other unparsable extensions are left alone: a CA's quirk in
/// a policy or a logging extension changes nothing a profile rule covers.
pub fn uncheckable_extension(cert: &x509_parser::certificate::X509Certificate<'_>) -> Option<String> {
    use x509_parser::extensions::ParsedExtension;
    use x509_parser::oid_registry::{
        OID_X509_EXT_BASIC_CONSTRAINTS, OID_X509_EXT_EXTENDED_KEY_USAGE, OID_X509_EXT_KEY_USAGE,
        OID_X509_EXT_NAME_CONSTRAINTS, OID_X509_EXT_SUBJECT_ALT_NAME,
    };
    let deciding = [
        OID_X509_EXT_BASIC_CONSTRAINTS,
        OID_X509_EXT_KEY_USAGE,
        OID_X509_EXT_EXTENDED_KEY_USAGE,
        OID_X509_EXT_SUBJECT_ALT_NAME,
        OID_X509_EXT_NAME_CONSTRAINTS,
    ];
    let mut seen = std::collections::HashSet::new();
    for ext in cert.extensions() {
        if !seen.insert(ext.oid.as_bytes()) {
            return Some(format!("it has the {} twice", extension_name(&ext.oid)));
        }
        match ext.parsed_extension() {
            ParsedExtension::ParseError { .. } if ext.critical || deciding.contains(&ext.oid) => {
                return Some(format!("its {} does not parse as DER", extension_name(&ext.oid)));
            }
            ParsedExtension::UnsupportedExtension { .. } if ext.critical => {
                return Some(format!("its {} is critical and unknown to certhost", extension_name(&ext.oid)));
            }
            _ => {}
        }
    }
    None
}

/// The first purpose in `eku` a CSR may not ask for: anything but serverAuth, clientAuth and
/// emailProtection, the purposes of the end-entity certificates certhost issues.
pub fn unrequestable_purpose(eku: &x509_parser::extensions::ExtendedKeyUsage<'_>) -> Option<String> {
    forbidden_purpose(eku).or_else(|| eku.other.first().map(|oid| oid.to_id_string()))
}

/// The first purpose in `eku` an issued end-entity certificate may not carry, whoever put it
/// there: anyExtendedKeyUsage, codeSigning, timeStamping and OCSPSigning (an OCSPSigning leaf
/// issued by the CA answers OCSP for everything that CA issued). Purposes certhost has no
/// name for are left to the CA.
pub fn forbidden_purpose(eku: &x509_parser::extensions::ExtendedKeyUsage<'_>) -> Option<String> {
    [
        (eku.any, "anyExtendedKeyUsage"),
        (eku.code_signing, "codeSigning"),
        (eku.time_stamping, "timeStamping"),
        (eku.ocsp_signing, "OCSPSigning"),
    ]
    .into_iter()
    .find(|(set, _)| *set)
    .map(|(_, name)| name.to_owned())
}

/// Why a signature was not accepted, by what its failure means for the person reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureFailure {
    /// The host cannot check this algorithm (or these parameters of it): the signature may
    /// well be valid, and saying "does not verify" would send the operator after a forgery.
    Unsupported(String),
    /// The algorithm is one the host checks, and the signature is wrong for the message.
    Invalid,
}

/// Classifies x509-parser's verification error for a signature made with `algorithm` by the
/// key in `signer`: ring checks RSASSA-PSS only with a salt as long as the hash and reports
/// any other salt as a failed verification, so that case is named here too.
pub fn signature_failure(
    error: &x509_parser::error::X509Error,
    algorithm: &x509_parser::x509::AlgorithmIdentifier<'_>,
    signer: &SubjectPublicKeyInfo<'_>,
) -> SignatureFailure {
    use x509_parser::error::X509Error;
    use x509_parser::oid_registry::{
        OID_NIST_HASH_SHA256, OID_NIST_HASH_SHA384, OID_NIST_HASH_SHA512, OID_PKCS1_RSASSAPSS,
    };
    let name = signature_algorithm_name(&algorithm.algorithm);
    let key = spki_algorithm(signer);
    // ring verifies RSA signatures by keys of 2048 to 8192 bits only, and reports any other
    // size as a failed verification: "does not verify" would be untrue.
    if let Ok(KeyAlgorithm::Rsa { bits }) = key
        && !(2048..=8192).contains(&bits)
    {
        return SignatureFailure::Unsupported(format!(
            "{name} by a {bits}-bit RSA key (certhost verifies RSA keys of 2048 to 8192 bits)"
        ));
    }
    let key = key.map(|k| k.to_string()).unwrap_or_else(|e| e);
    match error {
        X509Error::SignatureUnsupportedAlgorithm => SignatureFailure::Unsupported(format!("{name} with an {key} key")),
        _ if algorithm.algorithm == OID_PKCS1_RSASSAPSS => {
            let Some(params) = algorithm
                .parameters
                .as_ref()
                .and_then(|p| x509_parser::signature_algorithm::RsaSsaPssParams::try_from(p).ok())
            else {
                return SignatureFailure::Invalid;
            };
            let hash = params.hash_algorithm_oid();
            let hash_len = if *hash == OID_NIST_HASH_SHA256 {
                32
            } else if *hash == OID_NIST_HASH_SHA384 {
                48
            } else if *hash == OID_NIST_HASH_SHA512 {
                64
            } else {
                return SignatureFailure::Unsupported(format!("{name} with hash {hash}"));
            };
            match params.salt_length() {
                salt if salt != hash_len => SignatureFailure::Unsupported(format!(
                    "{name} with a {salt}-byte salt (only salts as long as the hash, {hash_len} bytes, can be checked)"
                )),
                _ => SignatureFailure::Invalid,
            }
        }
        _ => SignatureFailure::Invalid,
    }
}

/// The usual name of a signature algorithm (as openssl prints it), or its dotted OID.
fn signature_algorithm_name(oid: &x509_parser::oid_registry::Oid<'_>) -> String {
    let dotted = oid.to_id_string();
    let name = match dotted.as_str() {
        "1.2.840.10045.4.1" => "ecdsa-with-SHA1",
        "1.2.840.10045.4.3.1" => "ecdsa-with-SHA224",
        "1.2.840.10045.4.3.2" => "ecdsa-with-SHA256",
        "1.2.840.10045.4.3.3" => "ecdsa-with-SHA384",
        "1.2.840.10045.4.3.4" => "ecdsa-with-SHA512",
        "1.2.840.113549.1.1.2" => "md2WithRSAEncryption",
        "1.2.840.113549.1.1.4" => "md5WithRSAEncryption",
        "1.3.14.3.2.29" => "sha1WithRSASignature",
        "1.2.840.113549.1.1.5" => "sha1WithRSAEncryption",
        "1.2.840.113549.1.1.10" => "RSASSA-PSS",
        "1.2.840.113549.1.1.11" => "sha256WithRSAEncryption",
        "1.2.840.113549.1.1.12" => "sha384WithRSAEncryption",
        "1.2.840.113549.1.1.13" => "sha512WithRSAEncryption",
        "1.2.840.113549.1.1.14" => "sha224WithRSAEncryption",
        "1.2.840.10040.4.3" => "dsa-with-SHA1",
        "2.16.840.1.101.3.4.3.2" => "dsa-with-SHA256",
        "1.3.101.112" => "Ed25519",
        "1.3.101.113" => "Ed448",
        _ => return format!("signature algorithm {dotted}"),
    };
    name.to_owned()
}

/// The subject fields certhost builds CSRs from (CN, O, OU, L, ST, C, emailAddress), read from
/// a parsed name; other attributes are left out. Used to renew "with the same subject".
pub fn name_to_subject(name: &x509_parser::x509::X509Name<'_>) -> crate::csr::Subject {
    let text = |attr: &x509_parser::x509::AttributeTypeAndValue<'_>| attr.as_str().ok().map(str::to_owned);
    let all = |it: &mut dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue<'_>>| {
        it.filter_map(text).collect::<Vec<String>>()
    };
    crate::csr::Subject {
        common_name: name.iter_common_name().next().and_then(text),
        organization: all(&mut name.iter_organization()),
        organizational_unit: all(&mut name.iter_organizational_unit()),
        locality: name.iter_locality().next().and_then(text),
        state: name.iter_state_or_province().next().and_then(text),
        country: name.iter_country().next().and_then(text),
        email: name.iter_email().next().and_then(text),
    }
}

/// A returned certificate's O, OU, L, ST and C values, every one of each (in order), for the
/// profile's fixed-field check ([`crate::profile::ProfileDef::check_issued_subject`]); a value
/// that is not text is an error, not left out as [`name_to_subject`] leaves it (diff review of
/// stop 41: a second O in a BMPString passed the check and was stored).
pub fn issued_subject_values(der: &[u8]) -> Result<crate::profile::IssuedSubject, String> {
    use x509_parser::oid_registry as oid;
    use x509_parser::prelude::FromDer;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der).map_err(|e| e.to_string())?;
    let mut s = crate::profile::IssuedSubject::default();
    for attr in cert.subject().iter().flat_map(|rdn| rdn.iter()) {
        let kind = attr.attr_type();
        let slot = match kind {
            k if *k == oid::OID_X509_ORGANIZATION_NAME => &mut s.o,
            k if *k == oid::OID_X509_ORGANIZATIONAL_UNIT => &mut s.ou,
            k if *k == oid::OID_X509_LOCALITY_NAME => &mut s.l,
            k if *k == oid::OID_X509_STATE_OR_PROVINCE_NAME => &mut s.st,
            k if *k == oid::OID_X509_COUNTRY_NAME => &mut s.c,
            _ => continue,
        };
        let value = attr.as_str().map_err(|_| format!("its subject attribute {kind} is not text"))?;
        slot.push(value.to_owned());
    }
    Ok(s)
}

/// An uploaded CSR's subject as certhost's fields, or why it cannot be checked against a
/// profile: an attribute certhost has no field for (a CA would copy it unchecked), a value
/// that is not text, or a single-valued field given twice. The strict twin of
/// [`name_to_subject`], which renewals use on certificates already stored.
pub fn checked_subject(name: &x509_parser::x509::X509Name<'_>) -> Result<crate::csr::Subject, String> {
    use x509_parser::oid_registry as oid;
    let mut s = crate::csr::Subject::default();
    for attr in name.iter().flat_map(|rdn| rdn.iter()) {
        let kind = attr.attr_type();
        let value =
            || attr.as_str().map(str::to_owned).map_err(|_| format!("its subject attribute {kind} is not text"));
        let once = |slot: &mut Option<String>, label: &str| -> Result<(), String> {
            match slot.replace(value()?) {
                Some(_) => Err(format!("its subject gives {label} more than once")),
                None => Ok(()),
            }
        };
        match kind {
            k if *k == oid::OID_X509_COMMON_NAME => once(&mut s.common_name, "CN")?,
            k if *k == oid::OID_X509_ORGANIZATION_NAME => s.organization.push(value()?),
            k if *k == oid::OID_X509_ORGANIZATIONAL_UNIT => s.organizational_unit.push(value()?),
            k if *k == oid::OID_X509_LOCALITY_NAME => once(&mut s.locality, "L")?,
            k if *k == oid::OID_X509_STATE_OR_PROVINCE_NAME => once(&mut s.state, "ST")?,
            k if *k == oid::OID_X509_COUNTRY_NAME => once(&mut s.country, "C")?,
            k if *k == oid::OID_PKCS9_EMAIL_ADDRESS => once(&mut s.email, "emailAddress")?,
            other => {
                return Err(format!(
                    "its subject has attribute {other}, which no profile rule covers (supported: CN, O, OU, L, ST, C, emailAddress)"
                ));
            }
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use x509_parser::prelude::FromDer;

    use super::*;

    /// A DER element: tag, length (short or long form), content.
    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        match content.len() {
            n @ 0..=127 => out.push(n as u8),
            n @ 128..=255 => out.extend([0x81, n as u8]),
            n => out.extend([0x82, (n >> 8) as u8, n as u8]),
        }
        out.extend_from_slice(content);
        out
    }

    /// A SubjectPublicKeyInfo with algorithm `oid`, optional curve `curve` and key bits `key`.
    fn spki(oid: &[u8], curve: Option<&[u8]>, key: &[u8]) -> Vec<u8> {
        let mut algorithm = tlv(0x06, oid);
        if let Some(curve) = curve {
            algorithm.extend(tlv(0x06, curve));
        }
        let mut bits = vec![0];
        bits.extend_from_slice(key);
        tlv(0x30, &[tlv(0x30, &algorithm), tlv(0x03, &bits)].concat())
    }

    #[test]
    fn every_key_family_is_named_by_its_oids() {
        const EC: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01];
        let point = [4u8; 65];
        let mut modulus = vec![0x00, 0xC1];
        modulus.extend([0x5A; 255]);
        let rsa_key = tlv(0x30, &[tlv(0x02, &modulus), tlv(0x02, &[0x01, 0x00, 0x01])].concat());
        let cases: Vec<(Vec<u8>, Result<KeyAlgorithm, String>)> = vec![
            (spki(EC, Some(&[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07]), &point), Ok(KeyAlgorithm::EcP256)),
            (spki(EC, Some(&[0x2B, 0x81, 0x04, 0x00, 0x22]), &[4; 97]), Ok(KeyAlgorithm::EcP384)),
            (spki(EC, Some(&[0x2B, 0x81, 0x04, 0x00, 0x22]), &[3; 49]), Ok(KeyAlgorithm::EcP384)),
            (spki(EC, Some(&[0x2B, 0x81, 0x04, 0x00, 0x23]), &[4; 133]), Ok(KeyAlgorithm::EcP521)),
            // A P-256 point labelled P-384 matched a P-256 CSR byte for byte: a certificate
            // no TLS stack can load was stored.
            (
                spki(EC, Some(&[0x2B, 0x81, 0x04, 0x00, 0x22]), &point),
                Err("ec-p384 key with a 65-byte point, the wrong size for that curve".into()),
            ),
            (spki(&[0x2B, 0x65, 0x70], None, &point), Err("Ed25519 key of 65 bytes (an Ed25519 key is 32)".into())),
            (spki(EC, Some(&[0x2B, 0x81, 0x04, 0x00, 0x0A]), &point), Err("EC key on curve 1.3.132.0.10".into())),
            (spki(EC, None, &point), Err("EC key without a named curve".into())),
            (spki(&[0x2B, 0x65, 0x70], None, &[7; 32]), Ok(KeyAlgorithm::Ed25519)),
            (
                spki(&[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01], None, &rsa_key),
                Ok(KeyAlgorithm::Rsa { bits: 2048 }),
            ),
            (
                spki(&[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01], None, &[1, 2, 3]),
                Err("RSA public key that does not parse".into()),
            ),
            (spki(&[0x2A, 0x86, 0x48, 0xCE, 0x38, 0x04, 0x01], None, &[2; 8]), Err("DSA key".into())),
            (spki(&[0x2A, 0x03, 0x04], None, &[2; 8]), Err("key algorithm 1.2.3.4".into())),
        ];
        for (der, expected) in cases {
            let (_, parsed) = SubjectPublicKeyInfo::from_der(&der).expect("a well-formed SubjectPublicKeyInfo");
            assert_eq!(spki_algorithm(&parsed), expected, "{der:02x?}");
        }
    }
}

/// The emailAddress values of `name` (a value that is not text as its hex, never equal to
/// a request's).
pub fn subject_emails(name: &x509_parser::x509::X509Name<'_>) -> Vec<String> {
    name.iter()
        .flat_map(|rdn| rdn.iter())
        .filter(|attr| *attr.attr_type() == x509_parser::oid_registry::OID_PKCS9_EMAIL_ADDRESS)
        .map(|attr| match attr.as_str() {
            Ok(text) => text.to_owned(),
            Err(_) => format!("#{}", hex::encode_upper(attr.attr_value().as_bytes())),
        })
        .collect()
}

/// A distinguished name as text, in the order and with the separators x509-parser prints
/// (`CN=a, O=b`, `+` within an RDN), each value escaped per RFC 4514 so that a value cannot
/// pose as more attributes: a CN of `x, O=Evil Corp` reads `CN=x\, O=Evil Corp`.
pub fn dn_string(name: &x509_parser::x509::X509Name<'_>) -> String {
    let registry = x509_parser::objects::oid_registry();
    let rdns: Vec<String> = name
        .iter()
        .map(|rdn| {
            let attrs: Vec<String> = rdn
                .iter()
                .map(|attr| {
                    let kind = x509_parser::objects::oid2abbrev(attr.attr_type(), registry)
                        .map(str::to_owned)
                        .unwrap_or_else(|_| attr.attr_type().to_id_string());
                    let value = match attr.as_str() {
                        Ok(text) => escape_dn_value(text),
                        // Not text: RFC 4514's `#` and the value's hex, as x509-parser prints it.
                        Err(_) => format!("#{}", hex::encode_upper(attr.attr_value().as_bytes())),
                    };
                    format!("{kind}={value}")
                })
                .collect();
            attrs.join(" + ")
        })
        .collect();
    rdns.join(", ")
}

/// RFC 4514 §2.4: `"`, `+`, `,`, `;`, `<`, `>` and `\` anywhere, `#` and space at the start,
/// space at the end, with a backslash; control characters as `\XX`.
fn escape_dn_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("\\{b:02X}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod dn_tests {
    use super::escape_dn_value;

    #[test]
    fn values_that_could_pose_as_more_attributes_are_escaped() {
        assert_eq!(escape_dn_value("x, O=Evil Corp"), "x\\, O=Evil Corp");
        assert_eq!(escape_dn_value("a+b;c<d>e\"f\\g"), "a\\+b\\;c\\<d\\>e\\\"f\\\\g");
        assert_eq!(escape_dn_value("#1 "), "\\#1\\ ");
        assert_eq!(escape_dn_value(" lead"), "\\ lead");
        assert_eq!(escape_dn_value("bell\u{7}"), "bell\\07");
        assert_eq!(escape_dn_value("www.example.com"), "www.example.com");
        assert_eq!(escape_dn_value("Zürich"), "Zürich");
    }
}
