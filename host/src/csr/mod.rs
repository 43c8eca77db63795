//! Certificate signing requests: subject and SAN rules, building and signing our own, and
//! parsing and verifying uploaded ones.

mod build;
mod names;
mod parse;

pub use build::{Csr, CsrError, CsrParams, build};
pub use names::{MAX_CN, NameError, San, Subject, include_cn_in_sans, validate_dns_name};
pub(crate) use parse::stored_csr_public_key;
pub use parse::{CsrParseError, ParsedCsr, parse_csr};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::{HashAlg, KeyType};

    fn params(key_type: KeyType, hash: Option<HashAlg>) -> CsrParams {
        CsrParams {
            subject: Subject {
                common_name: Some("www.example.com".into()),
                organization: vec!["Example Ltd".into()],
                organizational_unit: vec!["Ops".into(), "Web".into()],
                locality: Some("Zürich".into()),
                state: Some("ZH".into()),
                country: Some("CH".into()),
                email: Some("ops@example.com".into()),
            },
            sans: vec![
                San::Dns("www.example.com".into()),
                San::Dns("*.example.com".into()),
                San::Ip("192.0.2.7".parse().expect("literal")),
                San::Ip("2001:db8::1".parse().expect("literal")),
                San::Email("ops@example.com".into()),
                San::Uri("spiffe://example.com/web".into()),
            ],
            key_type,
            hash,
        }
    }

    #[test]
    fn built_csrs_parse_back_with_subject_sans_and_key() {
        for (kt, hash) in [
            (KeyType::EcP256, None),
            (KeyType::EcP384, Some(HashAlg::Sha384)),
            (KeyType::Ed25519, None),
            (KeyType::Rsa2048, Some(HashAlg::Sha512)),
        ] {
            let p = params(kt, hash);
            let (key, csr) = p.generate().expect("generate");
            let parsed = parse_csr(csr.pem.as_bytes()).expect("parse pem");
            assert_eq!(parsed.common_name.as_deref(), Some("www.example.com"));
            assert_eq!(parsed.sans, p.sans);
            assert_eq!(parsed.key, kt.algorithm());
            assert_eq!(parsed.public_key_raw, key.public_key_raw());
            assert!(parsed.subject.contains("OU=Ops") && parsed.subject.contains("OU=Web"), "{}", parsed.subject);
            assert_eq!(parse_csr(&csr.der).expect("parse der").der, csr.der);
            // An order's stored CSR gives the same key without a second signature check.
            assert_eq!(super::stored_csr_public_key(&csr.pem).expect("stored"), key.public_key_raw());
        }
    }

    #[test]
    fn hash_must_suit_the_key() {
        let err = params(KeyType::EcP256, Some(HashAlg::Sha512)).validate().unwrap_err().to_string();
        assert!(err.contains("ec-p256 cannot sign with sha512"), "{err}");
        assert!(params(KeyType::Ed25519, Some(HashAlg::Sha256)).validate().is_err());
    }

    /// A CSR for CN=a.example.com, signed by a fresh P-256 key, whose attributes are exactly
    /// `attributes` (each a whole Attribute, DER): what a requester can send, built by hand.
    fn csr_with_attributes(attributes: &[Vec<u8>]) -> Vec<u8> {
        csr_with(&[(&[2, 5, 4, 3], "a.example.com")], attributes)
    }

    /// The same with the subject `rdns` (one attribute per RDN: OID arcs, UTF-8 value).
    fn csr_with(rdns: &[(&[u64], &str)], attributes: &[Vec<u8>]) -> Vec<u8> {
        use yasna::Tag;
        use yasna::models::ObjectIdentifier;
        let key = crate::key::PrivateKey::generate(KeyType::EcP256).expect("key");
        let info = yasna::construct_der(|w| {
            w.write_sequence(|w| {
                w.next().write_u8(0);
                w.next().write_sequence(|w| {
                    for (oid, value) in rdns {
                        w.next().write_set(|w| {
                            w.next().write_sequence(|w| {
                                w.next().write_oid(&ObjectIdentifier::from_slice(oid));
                                w.next().write_utf8_string(value);
                            })
                        });
                    }
                });
                w.next().write_der(&key.subject_public_key_info());
                w.next().write_tagged_implicit(Tag::context(0), |w| {
                    w.write_set_of(|w| {
                        for attribute in attributes {
                            w.next().write_der(attribute);
                        }
                    })
                });
            })
        });
        build::sign_info(&info, &key, None).expect("sign").der
    }

    /// An extensionRequest attribute with one subjectAltName extension per entry of
    /// `san_extensions` (each a GeneralNames, DER).
    fn extension_request(san_extensions: &[&[u8]]) -> Vec<u8> {
        use yasna::models::ObjectIdentifier;
        yasna::construct_der(|w| {
            w.write_sequence(|w| {
                w.next().write_oid(&ObjectIdentifier::from_slice(&[1, 2, 840, 113549, 1, 9, 14]));
                w.next().write_set(|w| {
                    w.next().write_sequence(|w| {
                        for names in san_extensions {
                            w.next().write_sequence(|w| {
                                w.next().write_oid(&ObjectIdentifier::from_slice(&[2, 5, 29, 17]));
                                w.next().write_bytes(names);
                            });
                        }
                    })
                });
            })
        })
    }

    fn dns_names(names: &[&str]) -> Vec<u8> {
        yasna::construct_der(|w| {
            w.write_sequence(|w| {
                for name in names {
                    w.next().write_tagged_implicit(yasna::Tag::context(2), |w| w.write_ia5_string(name));
                }
            })
        })
    }

    #[test]
    fn requested_names_a_profile_could_not_judge_are_refused() {
        let one = dns_names(&["a.example.com"]);
        let more = dns_names(&["a.example.com", "evil.bank.test"]);
        let plain = parse_csr(&csr_with_attributes(&[extension_request(&[&one])])).expect("one request, one SAN");
        assert_eq!(plain.sans, [San::Dns("a.example.com".into())]);
        // A CA copying the second attribute or extension would name what the policy never saw.
        let twice = parse_csr(&csr_with_attributes(&[extension_request(&[&one]), extension_request(&[&more])]));
        let err = twice.expect_err("two extensionRequest attributes").to_string();
        assert!(err.contains("ambiguous") && err.contains("2 extensionRequest attributes"), "{err}");
        let err = parse_csr(&csr_with_attributes(&[extension_request(&[&one, &more])]))
            .expect_err("two subjectAltName extensions")
            .to_string();
        assert!(err.contains("ambiguous") && err.contains("subjectAltName extension 2 times"), "{err}");
        // An otherName (a Microsoft UPN, "u@x") and an IP address of five bytes.
        let upn: &[u8] = &[
            0x30, 0x15, 0xa0, 0x13, 0x06, 0x0a, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x14, 0x02, 0x03, 0xa0, 0x05,
            0x0c, 0x03, b'u', b'@', b'x',
        ];
        let err = parse_csr(&csr_with_attributes(&[extension_request(&[upn])])).expect_err("otherName").to_string();
        assert!(err.contains("an otherName of type 1.3.6.1.4.1.311.20.2.3") && !err.contains("u@x"), "{err}");
        let ip5: &[u8] = &[0x30, 0x07, 0x87, 0x05, 1, 2, 3, 4, 5];
        let err = parse_csr(&csr_with_attributes(&[extension_request(&[ip5])])).expect_err("bad IP").to_string();
        assert!(err.contains("an IP address of 5 bytes"), "{err}");
    }

    #[test]
    fn a_subject_a_profile_could_not_judge_is_refused() {
        const CN: &[u64] = &[2, 5, 4, 3];
        let fields = parse_csr(&csr_with(&[(&[2, 5, 4, 10], "Example"), (&[2, 5, 4, 11], "Web"), (CN, "a")], &[]))
            .expect("modelled fields")
            .subject_fields;
        assert_eq!(
            (fields.organization, fields.organizational_unit, fields.common_name),
            (vec!["Example".to_owned()], vec!["Web".to_owned()], Some("a".to_owned()))
        );
        // serialNumber (2.5.4.5): a CA would copy it, and no profile rule speaks of it.
        let err = parse_csr(&csr_with(&[(&[2, 5, 4, 5], "42"), (CN, "a")], &[])).expect_err("serialNumber").to_string();
        assert!(err.contains("cannot be checked against a profile") && err.contains("attribute 2.5.4.5"), "{err}");
        let err = parse_csr(&csr_with(&[(CN, "a"), (CN, "b")], &[])).expect_err("two CNs").to_string();
        assert!(err.contains("CN more than once"), "{err}");
    }

    #[test]
    fn broken_uploads_are_refused_precisely() {
        let (_, csr) = params(KeyType::EcP256, None).generate().expect("generate");
        assert_eq!(parse_csr(b"  \n"), Err(CsrParseError::Empty));
        assert_eq!(parse_csr(&csr.der[..csr.der.len() - 5]), Err(CsrParseError::Truncated));
        let mut trailing = csr.der.clone();
        trailing.extend_from_slice(b"junk");
        assert_eq!(parse_csr(&trailing), Err(CsrParseError::TrailingGarbage(4)));
        let pem_trailing = format!("{}garbage\n", csr.pem);
        assert!(matches!(parse_csr(pem_trailing.as_bytes()), Err(CsrParseError::Pem(_))));
        let cut = &csr.pem[..csr.pem.len() / 2];
        assert!(parse_csr(cut.as_bytes()).is_err());
        // Flip a byte inside the signed part (the CN text): the signature no longer verifies.
        let mut tampered = csr.der.clone();
        let pos = tampered.windows(3).position(|w| w == b"www").expect("cn present");
        tampered[pos] = b'x';
        assert!(matches!(parse_csr(&tampered), Err(CsrParseError::BadSignature(_))));
        assert!(matches!(parse_csr(b"\x04\x02ab"), Err(CsrParseError::NotACsr(_))));
        // A PEM block with no DER inside is not "neither PEM nor DER" (API review of stop 38).
        let hollow = b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n";
        let err = parse_csr(hollow).unwrap_err().to_string();
        assert!(err.contains("its PEM block does not hold DER") && !err.contains("neither PEM"), "{err}");
        // A stored CSR that is not one is still an error, never a panic or an empty key.
        assert!(super::stored_csr_public_key(&csr.pem[..csr.pem.len() / 2]).is_err());
        assert!(matches!(super::stored_csr_public_key(""), Err(CsrParseError::Empty)));
    }
}
