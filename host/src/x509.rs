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
        match spki.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok()) {
            Some(curve) if curve == OID_EC_P256 => Ok(KeyAlgorithm::EcP256),
            Some(curve) if curve == OID_NIST_EC_P384 => Ok(KeyAlgorithm::EcP384),
            Some(curve) if curve == OID_NIST_EC_P521 => Ok(KeyAlgorithm::EcP521),
            Some(curve) => Err(format!("EC key on curve {}", curve.to_id_string())),
            None => Err("EC key without a named curve".into()),
        }
    } else if *alg == OID_SIG_ED25519 {
        Ok(KeyAlgorithm::Ed25519)
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
            (spki(EC, Some(&[0x2B, 0x81, 0x04, 0x00, 0x22]), &point), Ok(KeyAlgorithm::EcP384)),
            (spki(EC, Some(&[0x2B, 0x81, 0x04, 0x00, 0x23]), &point), Ok(KeyAlgorithm::EcP521)),
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
