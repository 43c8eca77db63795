//! Property tests: no subject, SAN or upload input makes the CSR code panic.

use certhost::csr::{CsrParams, San, Subject, parse_csr};
use certhost::key::{HashAlg, KeyType};
use proptest::prelude::*;

fn field() -> impl Strategy<Value = Option<String>> {
    prop::option::of(prop_oneof![".{0,80}", "[a-zA-Z0-9 .-]{1,70}", "\\PC{0,10}"])
}

/// SANs that are mostly well-formed, so the build-and-parse-back path runs often.
fn plausible_san() -> impl Strategy<Value = String> {
    prop_oneof![
        "DNS:[a-z0-9]{1,12}(\\.[a-z0-9-]{1,12}){1,3}",
        "DNS:\\*\\.[a-z0-9]{1,10}\\.[a-z]{2,5}",
        (any::<u8>(), any::<u8>(), any::<u8>(), any::<u8>()).prop_map(|(a, b, c, d)| format!("IP:{a}.{b}.{c}.{d}")),
        any::<u128>().prop_map(|v| format!("IP:{}", std::net::Ipv6Addr::from(v))),
        "EMAIL:[a-z]{1,10}@[a-z]{1,10}\\.[a-z]{2,4}",
        "URI:https://[a-z]{1,10}\\.[a-z]{2,4}/[a-z0-9]{0,10}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn every_subject_field_key_type_and_hash_builds_and_parses_back(
        cn in prop::option::of("[a-z0-9]{1,20}\\.example\\.com"), o in prop::collection::vec("[a-zA-Z0-9][a-zA-Z0-9 ]{0,39}", 0..3),
        ou in prop::collection::vec("[a-zA-Z0-9][a-zA-Z0-9 ]{0,29}", 0..3), l in prop::option::of("[a-zA-Z][a-zA-Z ]{0,29}"),
        st in prop::option::of("[a-zA-Z][a-zA-Z ]{0,29}"), c in prop::option::of("[A-Z]{2}"),
        sans in prop::collection::vec(plausible_san(), 0..6),
        key in prop::sample::select(vec![KeyType::EcP256, KeyType::EcP384, KeyType::Ed25519]),
        hash in prop::option::of(prop::sample::select(vec![HashAlg::Sha256, HashAlg::Sha384, HashAlg::Sha512])),
    ) {
        let parsed: Vec<San> = sans.iter().filter_map(|s| s.parse().ok()).collect();
        let params = CsrParams {
            subject: Subject { common_name: cn, organization: o, organizational_unit: ou, locality: l, state: st, country: c, email: None },
            sans: parsed,
            key_type: key,
            hash,
        };
        // Only a hash the key type cannot use (Ed25519 with any, P-256 with SHA-384...) or no
        // name at all may be refused; everything else must build and parse back.
        match params.validate() {
            Ok(()) => {
                let (_, csr) = params.generate().expect("valid params build");
                let back = parse_csr(csr.pem.as_bytes()).expect("our CSR parses");
                prop_assert_eq!(back.sans, params.sans);
                prop_assert_eq!(back.common_name, params.subject.common_name);
            }
            Err(e) => {
                let text = e.to_string();
                prop_assert!(params.hash.is_some() || (params.subject.common_name.is_none() && params.sans.is_empty()), "{}", text);
            }
        }
    }

    #[test]
    fn random_subjects_and_sans_never_panic(
        cn in field(), c in field(), email in field(), ou in prop::collection::vec(".{0,70}", 0..3),
        sans in prop::collection::vec(prop_oneof!["DNS:.{0,70}", "IP:.{0,40}", "EMAIL:.{0,40}", "URI:.{0,40}", ".{0,40}"], 0..5),
    ) {
        let parsed: Vec<San> = sans.iter().filter_map(|s| s.parse().ok()).collect();
        let params = CsrParams {
            subject: Subject { common_name: cn, country: c, email, organizational_unit: ou, ..Subject::default() },
            sans: parsed,
            key_type: KeyType::EcP256,
            hash: None,
        };
        if params.validate().is_ok() {
            // Whatever validates must build, and what we build must parse back.
            let (_, csr) = params.generate().expect("valid params build");
            let back = parse_csr(csr.pem.as_bytes()).expect("our CSR parses");
            prop_assert_eq!(back.sans, params.sans);
        }
    }

    #[test]
    fn random_bytes_as_an_uploaded_csr_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = parse_csr(&bytes);
        let mut framed = vec![0x30, 0x82, 0x01, 0x00];
        framed.extend_from_slice(&bytes);
        let _ = parse_csr(&framed);
    }

    #[test]
    fn random_text_as_pem_never_panics(body in "[A-Za-z0-9+/=\n]{0,400}") {
        let text = format!("-----BEGIN CERTIFICATE REQUEST-----\n{body}\n-----END CERTIFICATE REQUEST-----\n");
        let _ = parse_csr(text.as_bytes());
        let _ = certhost::key::PrivateKey::from_pem(&text.replace("CERTIFICATE REQUEST", "PRIVATE KEY"));
    }
}
