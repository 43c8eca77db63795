//! Property tests: no subject, SAN or upload input makes the CSR code panic.

use certhost::csr::{CsrParams, San, Subject, parse_csr};
use certhost::key::KeyType;
use proptest::prelude::*;

fn field() -> impl Strategy<Value = Option<String>> {
    prop::option::of(prop_oneof![".{0,80}", "[a-zA-Z0-9 .-]{1,70}", "\\PC{0,10}"])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

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
