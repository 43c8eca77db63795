//! `key-csr` and `inspect-csr` through the real binary, checked by the real openssl.

use std::os::unix::fs::PermissionsExt;

use crate::helpers::{App, sh};

#[test]
fn every_key_type_and_hash_gives_a_csr_openssl_verifies_with_the_requested_names() {
    let app = App::new();
    let combos = [
        ("rsa-2048", "sha256", "sha256WithRSAEncryption"),
        ("rsa-3072", "sha384", "sha384WithRSAEncryption"),
        ("rsa-4096", "sha512", "sha512WithRSAEncryption"),
        ("ec-p256", "sha256", "ecdsa-with-SHA256"),
        ("ec-p384", "sha384", "ecdsa-with-SHA384"),
        ("ed25519", "", "ED25519"),
    ];
    for (key_type, hash, sig_alg) in combos {
        let out = app.path(key_type);
        let out_s = out.to_str().expect("utf8");
        let mut args = vec![
            "key-csr",
            "--key-type",
            key_type,
            "--cn",
            "www.example.com",
            "--san",
            "DNS:www.example.com",
            "--san",
            "DNS:*.example.com",
            "--san",
            "IP:192.0.2.10",
            "--san",
            "IP:2001:db8::10",
            "--san",
            "EMAIL:ops@example.com",
            "--san",
            "URI:spiffe://example.com/web",
            "--o",
            "Example Ltd",
            "--ou",
            "Ops",
            "--ou",
            "Web",
            "--l",
            "Zurich",
            "--st",
            "ZH",
            "--c",
            "CH",
            "--email",
            "pki@example.com",
            "--out",
            out_s,
        ];
        if !hash.is_empty() {
            args.extend(["--hash", hash]);
        }
        app.run(&args).ok();
        let csr = out.join("csr.pem");
        let text = sh("openssl", &["req", "-in", csr.to_str().expect("utf8"), "-verify", "-noout", "-text"]);
        for needle in [
            "C = CH, ST = ZH, L = Zurich, O = Example Ltd, OU = Ops, OU = Web, CN = www.example.com, emailAddress = pki@example.com",
            "DNS:www.example.com",
            "DNS:*.example.com",
            "IP Address:192.0.2.10",
            "IP Address:2001:DB8:0:0:0:0:0:10",
            "email:ops@example.com",
            "URI:spiffe://example.com/web",
            sig_alg,
        ] {
            assert!(text.contains(needle), "{key_type}: {needle:?} missing from:\n{text}");
        }
        let mode = std::fs::metadata(out.join("key.pem")).expect("key").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{key_type} key mode");
        // The key openssl reads is the key the CSR is for.
        let key_pub = sh("openssl", &["pkey", "-in", out.join("key.pem").to_str().expect("utf8"), "-pubout"]);
        let csr_pub = sh("openssl", &["req", "-in", csr.to_str().expect("utf8"), "-pubkey", "-noout"]);
        assert_eq!(key_pub, csr_pub, "{key_type}");
        // And certhost's own upload check accepts what it built.
        let inspected = app.json(&["inspect-csr", csr.to_str().expect("utf8"), "--json"]);
        assert_eq!(inspected["common_name"], "www.example.com");
        assert_eq!(inspected["sans"].as_array().map(Vec::len), Some(6));
    }
}

#[test]
fn bad_subject_and_san_input_gets_one_sentence_naming_the_field() {
    let app = App::new();
    let out = app.path("bad");
    let out_s = out.to_str().expect("utf8");
    let long_cn = "a".repeat(65);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--cn", &long_cn], "CN is 65 characters long; at most 64"),
        (vec!["--cn", "x", "--c", "USA"], "C (country) must be exactly two letters"),
        (vec!["--cn", "x", "--san", "DNS:www.*.example.com"], "wildcard may only be the whole left-most label"),
        (vec!["--cn", "x", "--san", "DNS:bad_name.example"], "DNS name \"bad_name.example\" is invalid"),
        (vec!["--cn", "x", "--san", "IP:10.0.0.300"], "IP address \"10.0.0.300\" is invalid"),
        (vec!["--cn", "x", "--email", "nobody"], "emailAddress \"nobody\" is not a valid email address"),
        (vec!["--cn", "x", "--key-type", "ec-p256", "--hash", "sha512"], "ec-p256 cannot sign with sha512"),
    ];
    for (extra, expected) in cases {
        let mut args = vec!["key-csr", "--out", out_s];
        args.extend(extra.iter().copied());
        let r = app.run(&args);
        // SANs are checked while parsing arguments (a usage error, 2); the rest when building (1).
        let code = if extra.contains(&"--san") { 2 } else { 1 };
        let stderr = r.fails(code);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        if code == 1 {
            assert_eq!(stderr.trim().lines().count(), 1, "one sentence: {stderr}");
        }
        assert!(!out.join("key.pem").exists(), "nothing written for {args:?}");
    }
    let r = app.run(&["key-csr", "--out", out_s, "--cn", "x", "--key-type", "dsa-1024"]);
    assert!(r.fails(2).contains("unknown key type"), "{}", r.stderr);
}

/// Review of stop 31: a CN-only CSR names no host (clients ignore the CN), and profiles that
/// put the CN among the SANs refuse one; key-csr puts a host-name CN there itself.
#[test]
fn key_csr_puts_a_host_name_cn_among_the_sans_unless_told_not_to() {
    let app = App::new();
    for (dir, extra, expected) in [("with", &[][..], "DNS:www.example.com"), ("without", &["--no-cn-san"][..], "")] {
        let out = app.path(dir);
        let mut args = vec!["key-csr", "--cn", "www.example.com", "--out", out.to_str().expect("utf8")];
        args.extend_from_slice(extra);
        app.run(&args).ok();
        let text = sh("openssl", &["req", "-in", out.join("csr.pem").to_str().expect("utf8"), "-noout", "-text"]);
        assert_eq!(text.contains("DNS:www.example.com"), !expected.is_empty(), "{dir}: {text}");
    }
}

#[test]
fn key_csr_never_overwrites_an_existing_key() {
    let app = App::new();
    let out = app.path("keep");
    let out_s = out.to_str().expect("utf8");
    app.run(&["key-csr", "--cn", "a.example", "--out", out_s]).ok();
    let before = std::fs::read(out.join("key.pem")).expect("key");
    let r = app.run(&["key-csr", "--cn", "b.example", "--out", out_s]);
    assert!(r.fails(1).contains("already exists"), "{}", r.stderr);
    assert_eq!(std::fs::read(out.join("key.pem")).expect("key"), before);
}

#[test]
fn inspect_csr_refuses_what_the_host_must_not_accept() {
    let app = App::new();
    let dir = app.path("csrs");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let d = |n: &str| dir.join(n).to_str().expect("utf8").to_owned();
    // A good openssl CSR in DER form, with SANs.
    sh(
        "openssl",
        &[
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=ok.example",
            "-addext",
            "subjectAltName=DNS:ok.example,IP:192.0.2.1",
            "-keyout",
            &d("ok.key"),
            "-outform",
            "DER",
            "-out",
            &d("ok.der"),
        ],
    );
    let ok = app.json(&["inspect-csr", &d("ok.der"), "--json"]);
    assert_eq!(ok["sans"], serde_json::json!(["DNS:ok.example", "IP:192.0.2.1"]));
    assert_eq!(ok["key_bits"], 2048);
    // Unsupported keys: RSA-1024 and P-521.
    sh(
        "openssl",
        &[
            "req",
            "-new",
            "-newkey",
            "rsa:1024",
            "-nodes",
            "-subj",
            "/CN=small",
            "-keyout",
            &d("small.key"),
            "-out",
            &d("small.csr"),
        ],
    );
    assert!(app.run(&["inspect-csr", &d("small.csr")]).fails(1).contains("RSA with a 1024-bit modulus"));
    sh(
        "openssl",
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-521",
            "-nodes",
            "-subj",
            "/CN=p521",
            "-keyout",
            &d("p521.key"),
            "-out",
            &d("p521.csr"),
        ],
    );
    assert!(app.run(&["inspect-csr", &d("p521.csr")]).fails(1).contains("not supported: EC P-521"));
    // Trailing garbage, truncation, a bad signature.
    let der = std::fs::read(d("ok.der")).expect("der");
    let mut trailing = der.clone();
    trailing.extend_from_slice(b"garbage");
    std::fs::write(d("trailing.der"), &trailing).expect("write");
    assert!(app.run(&["inspect-csr", &d("trailing.der")]).fails(1).contains("7 bytes of trailing garbage"));
    std::fs::write(d("short.der"), &der[..der.len() - 20]).expect("write");
    assert!(app.run(&["inspect-csr", &d("short.der")]).fails(1).contains("truncated"));
    let mut tampered = der.clone();
    let pos = tampered.windows(10).position(|w| w == b"ok.example").expect("cn");
    tampered[pos] = b'O';
    std::fs::write(d("tampered.der"), &tampered).expect("write");
    assert!(app.run(&["inspect-csr", &d("tampered.der")]).fails(1).contains("signature does not verify"));
    std::fs::write(d("empty.csr"), "").expect("write");
    assert!(app.run(&["inspect-csr", &d("empty.csr")]).fails(1).contains("the CSR is empty"));
}

/// Valid CSRs signed with algorithms the host cannot check (P-256 with SHA-512; RSA-PSS with
/// the longest salt, openssl's choice) were refused as "signature does not verify", as if
/// forged.
#[test]
fn a_csr_signed_in_an_algorithm_the_host_cannot_check_is_called_unsupported_not_forged() {
    let app = App::new();
    let dir = app.path("csrs");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let d = |n: &str| dir.join(n).to_str().expect("utf8").to_owned();
    let req = |name: &str, newkey: &[&str], sign: &[&str]| {
        let (key, out) = (d(&format!("{name}.key")), d(&format!("{name}.csr")));
        let mut args = vec!["req", "-new", "-nodes", "-subj", "/CN=alg.example", "-keyout", &key, "-out", &out];
        args.extend_from_slice(newkey);
        args.extend_from_slice(sign);
        sh("openssl", &args);
        // openssl itself verifies it: the signature is valid.
        sh("openssl", &["req", "-in", &out, "-noout", "-verify"]);
        out
    };
    let p256 = req("p256", &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"], &["-sha512"]);
    let r = app.run(&["inspect-csr", &p256]);
    assert!(
        r.fails(1).contains(
            "the CSR's signature cannot be checked: certhost does not support ecdsa-with-SHA512 with an ec-p256 key"
        ),
        "{}",
        r.stderr
    );
    let pss = req(
        "pss",
        &["-newkey", "rsa:2048"],
        &["-sha256", "-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:max"],
    );
    let r = app.run(&["inspect-csr", &pss]);
    assert!(r.fails(1).contains("certhost does not support RSASSA-PSS with a 222-byte salt"), "{}", r.stderr);
    // PSS with a salt as long as the hash is checked, and verifies.
    let pss32 = req(
        "pss32",
        &["-newkey", "rsa:2048"],
        &["-sha256", "-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:digest"],
    );
    assert_eq!(app.json(&["inspect-csr", &pss32, "--json"])["key_bits"], 2048);
}

#[test]
fn ca_init_makes_a_root_that_openssl_can_sign_with_and_never_overwrites() {
    let app = App::new();
    let dir = app.path("root");
    let d = dir.to_str().expect("utf8");
    app.run(&["ca", "init", "--out", d, "--cn", "Lab Root"]).ok();
    let text =
        sh("openssl", &["x509", "-in", &format!("{d}/ca.pem"), "-noout", "-subject", "-ext", "basicConstraints"]);
    assert!(text.contains("CN = Lab Root") && text.contains("CA:TRUE"), "{text}");
    let mode = std::fs::metadata(dir.join("ca.key")).expect("key").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // The key and certificate work together: openssl signs a leaf that verifies against the root.
    app.run(&["key-csr", "--cn", "leaf.example", "--san", "DNS:leaf.example", "--out", &format!("{d}/leaf")]).ok();
    sh(
        "openssl",
        &[
            "x509",
            "-req",
            "-in",
            &format!("{d}/leaf/csr.pem"),
            "-CA",
            &format!("{d}/ca.pem"),
            "-CAkey",
            &format!("{d}/ca.key"),
            "-CAcreateserial",
            "-days",
            "5",
            "-out",
            &format!("{d}/leaf.pem"),
        ],
    );
    assert!(sh("openssl", &["verify", "-CAfile", &format!("{d}/ca.pem"), &format!("{d}/leaf.pem")]).contains("OK"));
    assert!(app.run(&["ca", "init", "--out", d]).fails(1).contains("refusing to overwrite a CA"));
}

/// Regression: subjects were shown without RFC 4514 escaping, so a CN of `x, O=Evil Corp`
/// read as two attributes, `CN=x, O=Evil Corp`, in every view and in `--issuer` searches.
#[test]
fn a_subject_value_that_looks_like_more_attributes_is_shown_escaped() {
    let app = App::new();
    let dir = app.path("csr");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let (key, csr) = (dir.join("key.pem"), dir.join("csr.pem"));
    crate::helpers::openssl_csr(&key, &csr, "/CN=x, O=Evil Corp", &[]);
    let inspected = app.json(&["inspect-csr", csr.to_str().expect("utf8"), "--json"]);
    assert_eq!(inspected["subject"], "CN=x\\, O=Evil Corp", "{inspected}");
}

/// An openssl CSR for `/CN=ext.example.com` with a SAN and each `-addext` of `extensions`,
/// written to `path` (the key beside it).
fn csr_with_extensions(path: &std::path::Path, extensions: &[&str]) {
    let key = std::path::PathBuf::from(format!("{}.key", path.display()));
    let mut all = vec!["subjectAltName=DNS:ext.example.com"];
    all.extend_from_slice(extensions);
    crate::helpers::openssl_csr(&key, path, "/CN=ext.example.com", &all);
}

/// Regression: only the SAN of a CSR's requested extensions was looked at, so a CSR asking
/// for CRL/OCSP pointers to the requester's server, name constraints, CA:TRUE or an unknown
/// critical extension was called valid — and a CA copying extensions issued them all.
#[test]
fn a_csr_requesting_an_extension_certhost_does_not_model_is_refused_naming_it() {
    let app = App::new();
    let dir = app.path("csrs");
    std::fs::create_dir_all(&dir).expect("mkdir");
    for (i, (extension, named)) in [
        ("crlDistributionPoints=URI:http://attacker.test/crl", "the crlDistributionPoints extension (2.5.29.31)"),
        ("authorityInfoAccess=OCSP;URI:http://attacker.test/ocsp", "the authorityInfoAccess extension"),
        ("nameConstraints=critical,permitted;DNS:.example.com", "the nameConstraints extension (2.5.29.30)"),
        ("basicConstraints=critical,CA:TRUE", "the basicConstraints extension with CA:TRUE"),
        ("1.2.3.4.5=critical,DER:0101ff", "the extension 1.2.3.4.5,"),
    ]
    .into_iter()
    .enumerate()
    {
        let csr = dir.join(format!("refused{i}.csr"));
        csr_with_extensions(&csr, &[extension]);
        let err = app.run(&["inspect-csr", csr.to_str().expect("utf8")]).fails(1).to_owned();
        assert!(err.contains(&format!("the CSR requests {named}")), "{extension}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    }
    // What certhost models is accepted: SAN, keyUsage, extendedKeyUsage, CA:FALSE, SKI.
    let csr = dir.join("modelled.csr");
    csr_with_extensions(
        &csr,
        &[
            "keyUsage=critical,digitalSignature",
            "extendedKeyUsage=serverAuth",
            "basicConstraints=critical,CA:FALSE",
            "subjectKeyIdentifier=hash",
        ],
    );
    let inspected = app.json(&["inspect-csr", csr.to_str().expect("utf8"), "--json"]);
    assert_eq!(inspected["sans"], serde_json::json!(["DNS:ext.example.com"]));
}

/// Regression: `openssl req -text` output (the decoded fields before the PEM block) and a
/// UTF-8 byte-order mark were reported as "it does not start with a DER SEQUENCE", and DER
/// that is not a request (a .p7b, a .p12, a certificate) got the parser's Rust Debug text.
#[test]
fn a_csr_behind_text_or_a_byte_order_mark_is_read_and_other_der_is_named() {
    let app = App::new();
    let dir = app.path("csrs");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let d = |n: &str| dir.join(n).to_str().expect("utf8").to_owned();
    csr_with_extensions(&dir.join("plain.csr"), &[]);
    let text = sh("openssl", &["req", "-in", &d("plain.csr"), "-text"]);
    assert!(text.starts_with("Certificate Request:"), "{text}");
    std::fs::write(d("text.csr"), &text).expect("write");
    std::fs::write(d("bom.csr"), format!("\u{feff}{}", std::fs::read_to_string(d("plain.csr")).expect("csr")))
        .expect("write");
    for name in ["text.csr", "bom.csr"] {
        let inspected = app.json(&["inspect-csr", &d(name), "--json"]);
        assert_eq!(inspected["common_name"], "ext.example.com", "{name}");
    }
    // A certificate, and the same certificate as PKCS#7 and PKCS#12.
    let (key, cert) = (d("plain.csr.key"), d("cert.pem"));
    sh(
        "openssl",
        &[
            "x509",
            "-req",
            "-in",
            &d("plain.csr"),
            "-key",
            &key,
            "-days",
            "2",
            "-outform",
            "DER",
            "-out",
            &d("cert.der"),
        ],
    );
    sh("openssl", &["x509", "-in", &d("cert.der"), "-inform", "DER", "-out", &cert]);
    sh("openssl", &["crl2pkcs7", "-nocrl", "-certfile", &cert, "-outform", "DER", "-out", &d("cert.p7b")]);
    sh("openssl", &["pkcs12", "-export", "-in", &cert, "-inkey", &key, "-passout", "pass:x", "-out", &d("cert.p12")]);
    std::fs::write(d("tiny.der"), [0x30, 0x03, 0x02, 0x01, 0x00]).expect("write");
    for (name, says) in [
        ("cert.der", "it is a certificate, not a certificate request"),
        ("cert.p7b", "it is a PKCS#7 file, not a certificate request (PKCS#7 and PKCS#12 files are not supported"),
        ("cert.p12", "it is a PKCS#12 file, not a certificate request"),
        ("tiny.der", "its DER does not have the structure of a certificate request"),
    ] {
        let err = app.run(&["inspect-csr", &d(name)]).fails(1).to_owned();
        assert!(err.contains(says) && !err.contains("Tag("), "{name}: {err}");
    }
}

/// Regression (review of stop 30): a CSR could ask for any key usage and purpose
/// (OCSPSigning makes a leaf the CA's OCSP responder, codeSigning a software signer), carry
/// its extensions in Microsoft's msExtReq attribute (which OpenSSL and AD CS copy like the
/// standard one) where no check looked, and be signed with SHA-1.
#[test]
fn a_csr_asking_for_more_than_a_tls_leaf_or_hiding_its_requests_is_refused() {
    let app = App::new();
    let dir = app.path("csrs");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let refused = |csr: &std::path::Path| {
        let err = app.run(&["inspect-csr", csr.to_str().expect("utf8")]).fails(1).to_owned();
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        err
    };
    for (i, (extension, named)) in [
        ("extendedKeyUsage=serverAuth,OCSPSigning", "extendedKeyUsage OCSPSigning"),
        ("extendedKeyUsage=codeSigning", "extendedKeyUsage codeSigning"),
        ("extendedKeyUsage=anyExtendedKeyUsage", "extendedKeyUsage anyExtendedKeyUsage"),
        ("extendedKeyUsage=1.3.6.1.4.1.311.20.2.2", "extendedKeyUsage 1.3.6.1.4.1.311.20.2.2"),
        ("keyUsage=critical,digitalSignature,cRLSign", "keyUsage keyCertSign or cRLSign"),
    ]
    .into_iter()
    .enumerate()
    {
        let csr = dir.join(format!("usage{i}.csr"));
        csr_with_extensions(&csr, &[extension]);
        let err = refused(&csr);
        assert!(err.contains(&format!("the CSR requests {named}, which certhost does not ask a CA for")), "{err}");
    }
    let csr = dir.join("tls.csr");
    csr_with_extensions(&csr, &["extendedKeyUsage=serverAuth,clientAuth,emailProtection"]);
    app.json(&["inspect-csr", csr.to_str().expect("utf8"), "--json"]);

    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/csr/with_attribute.py");
    let pairs = "1.3.6.1.4.1.311.13.2.1";
    for (name, oid, extra, named) in [
        ("ms", "1.3.6.1.4.1.311.2.1.14", None, "the attribute msExtReq (1.3.6.1.4.1.311.2.1.14)"),
        (
            "san-pair",
            pairs,
            Some("SAN=dns=evil.bank.test"),
            "the attribute enrollmentNameValuePair (1.3.6.1.4.1.311.13.2.1) with a SAN pair",
        ),
        ("unknown", "1.2.3.4", None, "the attribute 1.2.3.4,"),
    ] {
        let csr = dir.join(format!("{name}.csr"));
        let mut args = vec![script.to_str().expect("utf8"), csr.to_str().expect("utf8"), oid];
        args.extend(extra);
        sh("python3", &args);
        let err = refused(&csr);
        assert!(err.contains(&format!("the CSR carries {named}")), "{err}");
    }
    // What Windows' certreq writes for an AD CS template is not a name request.
    let template = dir.join("template.csr");
    sh(
        "python3",
        &[script.to_str().expect("utf8"), template.to_str().expect("utf8"), pairs, "CertificateTemplate=WebServer"],
    );
    app.json(&["inspect-csr", template.to_str().expect("utf8"), "--json"]);
    // A SAN pair in a second attribute of the same OID is read as itself, not as the first
    // (code review of stop 39: each attribute was judged by the first with its OID).
    let second = dir.join("second.csr");
    sh(
        "python3",
        &[
            script.to_str().expect("utf8"),
            second.to_str().expect("utf8"),
            pairs,
            "CertificateTemplate=WebServer",
            "+",
            "SAN=dns=evil.bank.test",
        ],
    );
    assert!(refused(&second).contains("enrollmentNameValuePair (1.3.6.1.4.1.311.13.2.1) with a SAN pair"));
    // The same extensions in the standard attribute are still read (and CA:TRUE refused).
    let standard = dir.join("standard.csr");
    sh("python3", &[script.to_str().expect("utf8"), standard.to_str().expect("utf8"), "1.2.840.113549.1.9.14"]);
    assert!(refused(&standard).contains("the CSR requests the basicConstraints extension with CA:TRUE"));

    let (key, sha1) = (dir.join("sha1.key"), dir.join("sha1.csr"));
    sh(
        "openssl",
        &[
            "req",
            "-new",
            "-sha1",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=old.example.com",
            "-keyout",
            key.to_str().expect("utf8"),
            "-out",
            sha1.to_str().expect("utf8"),
        ],
    );
    let err = refused(&sha1);
    assert!(err.contains("the CSR is signed with sha1WithRSAEncryption, whose hash is broken"), "{err}");
}

/// Regression (review of stop 30): errors that did not say what to do — a truncated PEM was
/// "malformedframing", `--state held` did not list the states, `--listen localhost` was
/// "invalid socket address syntax".
#[test]
fn errors_for_common_slips_say_what_is_expected() {
    let app = App::new();
    let cut = app.path("cut.csr");
    std::fs::write(&cut, "-----BEGIN CERTIFICATE REQUEST-----\nMIIBAAA\n").expect("write");
    let err = app.run(&["inspect-csr", cut.to_str().expect("utf8")]).fails(1).to_owned();
    assert!(err.contains("a block is cut short: its BEGIN line has no matching END line"), "{err}");
    let err = app.run(&["orders", "list", "--state", "held"]).fails(2).to_owned();
    assert!(err.contains("(one of awaiting_approval, pending, issued, rejected, failed, needs_attention)"), "{err}");
    let err = app.run(&["serve", "--listen", "localhost"]).fails(2).to_owned();
    assert!(err.contains("expected IP:PORT, such as 127.0.0.1:8443"), "{err}");
}
