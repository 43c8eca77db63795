//! `import`, `list`, `show`, `audit` through the real binary on a real SQLite file.

use std::fs;

use crate::helpers::{App, OpensslCa, sh};

fn s(p: &std::path::Path) -> &str {
    p.to_str().expect("utf8")
}

#[test]
fn import_with_key_then_list_show_and_audit() {
    let app = App::new();
    let ca = OpensslCa::new(&app.path("ca"), "Test Root");
    let (cert, key) = ca.issue("web.example.com", 90);
    let r = app.run(&["import", s(&cert), "--key", s(&key)]);
    assert!(r.ok().contains("1 imported, 0 duplicate, 0 failed"), "{}", r.stdout);
    assert!(r.stdout.contains("with its private key"));

    let list = app.json(&["list", "--json"]);
    let item = &list[0];
    assert_eq!(item["common_name"], "web.example.com");
    assert_eq!(item["status"], "active");
    assert_eq!(item["has_private_key"], true);
    assert_eq!(item["sans"], serde_json::json!(["DNS:web.example.com"]));
    assert!(item["days_left"].as_i64().is_some_and(|d| (88..=90).contains(&d)));

    // Thumbprints agree with openssl's, and show finds the certificate by each.
    let fp1 = sh("openssl", &["x509", "-in", s(&cert), "-noout", "-fingerprint", "-sha1"]);
    let sha1_colons = fp1.trim().split('=').nth(1).expect("fingerprint");
    assert_eq!(item["sha1"], sha1_colons.replace(':', "").to_lowercase());
    for lookup in
        [item["id"].to_string(), sha1_colons.to_owned(), item["sha256"].as_str().expect("sha256").to_uppercase()]
    {
        let shown = app.json(&["show", &lookup, "--json"]);
        assert_eq!(shown["id"], item["id"], "lookup {lookup}");
    }
    let pem = app.run(&["show", "1", "--pem"]);
    assert_eq!(pem.ok().trim(), fs::read_to_string(&cert).expect("cert").trim());
    let human = app.run(&["show", "1"]);
    assert!(human.ok().contains("Subject:") && human.stdout.contains("private key stored (encrypted)"));
    assert!(app.run(&["show", "999"]).fails(1).contains("no certificate with id or thumbprint 999"));
    assert!(app.run(&["show", "not-a-thumbprint"]).fails(1).contains("neither a certificate id nor"));
    // The thumbprint column of `list` is enough for `show` (it was refused before); fewer
    // digits than that are not.
    let sha256 = item["sha256"].as_str().expect("sha256");
    assert!(app.run(&["list"]).ok().contains(&sha256[..16]));
    assert_eq!(app.json(&["show", &sha256[..16], "--json"])["id"], item["id"]);
    // A SHA-1 prefix as well (API walkthrough of stop 48: it found nothing).
    let sha1 = item["sha1"].as_str().expect("sha1");
    assert_eq!(app.json(&["show", &sha1[..20], "--json"])["id"], item["id"]);
    // (Fifteen digits that happen to be all decimal read as an id, which does not exist.)
    let short = app.run(&["show", &sha256[..15]]);
    assert!(short.fails(1).contains("neither a certificate id nor") || short.stderr.contains("no certificate with id"));

    let audit = app.json(&["audit", "--json"]);
    assert_eq!(audit[0]["action"], "certificate.import");
    assert_eq!(audit[0]["object_id"], "1");
    assert!(audit[0]["actor"].as_str().expect("actor").starts_with("cli:"));
    assert!(app.run(&["audit"]).ok().contains("certificate.import"));
    assert!(app.run(&["list"]).ok().contains("web.example.com"));
}

#[test]
fn import_directory_with_bundles_der_and_bad_files_keeps_the_good_and_names_the_bad() {
    let app = App::new();
    let root = OpensslCa::new(&app.path("ca"), "Bundle Root");
    let (leaf1, _) = root.issue("one.example", 30);
    let (leaf2, _) = root.issue("two.example", 30);
    let dir = app.path("import");
    fs::create_dir_all(dir.join("nested/deeper")).expect("mkdir");
    // A leaf followed by its chain: one certificate with a one-element chain.
    let bundle =
        format!("{}{}", fs::read_to_string(&leaf1).expect("leaf"), fs::read_to_string(&root.cert).expect("root"));
    fs::write(dir.join("bundle.pem"), bundle).expect("write");
    // A DER certificate, deep in the tree.
    sh("openssl", &["x509", "-in", s(&leaf2), "-outform", "DER", "-out", s(&dir.join("nested/deeper/two.der"))]);
    // Bad files.
    fs::write(dir.join("garbage.pem"), "this is not a certificate\n").expect("write");
    // What lies beside certificates and is none (review of stop 32): passed over, not failed.
    fs::write(dir.join("serial"), "1000\n").expect("write");
    fs::write(dir.join("README"), "certificates for the web servers\n").expect("write");
    fs::write(dir.join("empty.txt"), "").expect("write");
    fs::copy(&root.cert, dir.join("nested/root.pem")).expect("root");
    let csr_key = app.path("csr.key");
    crate::helpers::openssl_csr(&csr_key, &dir.join("web.csr"), "/CN=web.example", &[]);
    let leaf_text = fs::read_to_string(&leaf2).expect("leaf");
    fs::write(dir.join("nested/truncated.pem"), &leaf_text[..leaf_text.len() / 2]).expect("write");
    // Links back up the tree (two of them once made the walk 2^40 paths long): each
    // directory is read once.
    std::os::unix::fs::symlink(".", dir.join("nested/self")).expect("symlink");
    std::os::unix::fs::symlink("..", dir.join("nested/deeper/up")).expect("symlink");
    std::os::unix::fs::symlink("../..", dir.join("nested/deeper/top")).expect("symlink");

    let r = app.run(&["import", s(&dir), "--json"]);
    assert_eq!(r.code, 1, "a failed file makes the exit code 1: {}", r.stderr);
    let report: serde_json::Value = serde_json::from_str(&r.stdout).expect("json");
    assert_eq!(report["imported"].as_array().map(Vec::len), Some(2), "{report}");
    let failed = report["failed"].as_array().expect("failed");
    assert_eq!(failed.len(), 2, "{report}");
    assert!(failed.iter().any(|f| f["source"].as_str().expect("src").ends_with("garbage.pem")
        && f["reason"].as_str().expect("r").contains("neither PEM nor a DER certificate")));
    assert!(failed.iter().any(|f| f["source"].as_str().expect("src").ends_with("truncated.pem")
        && f["reason"].as_str().expect("r").contains("malformed PEM")));
    let skipped = report["skipped"].to_string();
    for passed_over in ["serial", "README", "empty.txt", "web.csr", "root.pem"] {
        assert!(skipped.contains(passed_over), "{passed_over}: {report}");
    }
    assert!(skipped.contains("only CERTIFICATE REQUEST"), "{report}");
    // Named on the command line, a file without a certificate is a failure.
    let named = app.run(&["import", s(&dir.join("web.csr"))]);
    assert!(named.fails(1).contains("holds no certificate or private key"), "{}", named.stderr);

    let one = app.json(&["list", "--search", "one.example", "--json"]);
    let shown = app.json(&["show", &one[0]["id"].to_string(), "--json"]);
    assert_eq!(certhost::cert::pem_certificates(shown["chain_pem"].as_str().expect("chain")).expect("pem").len(), 1);

    // Importing again stores nothing twice.
    let again: serde_json::Value = serde_json::from_str(&app.run(&["import", s(&dir), "--json"]).stdout).expect("json");
    assert_eq!(again["imported"].as_array().map(Vec::len), Some(0));
    assert_eq!(again["duplicates"].as_array().map(Vec::len), Some(2));
    assert_eq!(app.json(&["list", "--json"]).as_array().map(Vec::len), Some(2));
}

#[test]
fn a_key_that_does_not_match_is_refused_and_nothing_is_stored() {
    let app = App::new();
    let ca = OpensslCa::new(&app.path("ca"), "Mismatch Root");
    let (cert, _) = ca.issue("a.example", 30);
    let (_, other_key) = ca.issue("b.example", 30);
    let r = app.run(&["import", s(&cert), "--key", s(&other_key)]);
    assert!(r.fails(1).contains("does not match this certificate"), "{}", r.stderr);
    assert_eq!(app.json(&["list", "--json"]).as_array().map(Vec::len), Some(0));
    let bad_key = app.path("bad.key");
    fs::write(&bad_key, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").expect("write");
    assert!(app.run(&["import", s(&cert), "--key", s(&bad_key)]).fails(1).contains("private key file"));
    // OpenSSL's legacy encrypted PEM (a Proc-Type header over ciphertext) is named as such.
    let (_, key) = ca.issue("c.example", 30);
    let legacy = app.path("legacy.key");
    sh("openssl", &["ec", "-in", s(&key), "-aes128", "-passout", "pass:x", "-out", s(&legacy)]);
    assert!(fs::read_to_string(&legacy).expect("legacy").contains("Proc-Type: 4,ENCRYPTED"));
    let r = app.run(&["import", s(&cert), "--key", s(&legacy)]);
    assert!(r.fails(1).contains("encrypted"), "{}", r.stderr);
    // Regression (review of stop 30): the same key inside a bundle lost its headers on the
    // way and was called "malformed".
    let c_cert = ca.dir.join("c.example.pem");
    let bundle = app.path("bundle.pem");
    let text = format!("{}{}", fs::read_to_string(&c_cert).expect("cert"), fs::read_to_string(&legacy).expect("key"));
    fs::write(&bundle, text).expect("write");
    let r = app.run(&["import", s(&bundle)]);
    assert!(r.fails(1).contains("the private key is encrypted; decrypt it first"), "{}", r.stderr);
}

#[test]
fn private_keys_are_not_readable_in_the_database_file() {
    let app = App::new();
    let ca = OpensslCa::new(&app.path("ca"), "Leak Root");
    let mut secrets: Vec<Vec<u8>> = Vec::new();
    for (i, (alg, opt)) in
        [("rsa", "rsa_keygen_bits:2048"), ("ec", "ec_paramgen_curve:P-384"), ("ed25519", "")].iter().enumerate()
    {
        let key = app.path(&format!("k{i}.key"));
        let csr = app.path(&format!("k{i}.csr"));
        let mut args = vec![
            "req",
            "-new",
            "-newkey",
            alg,
            "-nodes",
            "-subj",
            "/CN=leak.example",
            "-keyout",
            s(&key),
            "-out",
            s(&csr),
        ];
        if !opt.is_empty() {
            args.extend(["-pkeyopt", opt]);
        }
        sh("openssl", &args);
        let cert = ca.sign(&csr, 30, &format!("k{i}.pem"));
        app.run(&["import", s(&cert), "--key", s(&key)]).ok();
        let der = sh("openssl", &["pkey", "-in", s(&key), "-outform", "DER"]);
        let _ = der; // binary on stdout is lossy; read the PKCS#8 body from the PEM instead
        let pem_text = fs::read_to_string(&key).expect("key");
        let block = pem::parse(&pem_text).expect("pem");
        secrets.push(block.contents().to_vec());
        // Also the base64 body lines, in case anything stored PEM text.
        for line in pem_text.lines().filter(|l| !l.starts_with("-----")) {
            secrets.push(line.as_bytes().to_vec());
        }
    }
    assert_eq!(app.json(&["list", "--json"]).as_array().map(Vec::len), Some(3));
    let mut db = Vec::new();
    for entry in fs::read_dir(app.data_dir()).expect("data dir") {
        let path = entry.expect("entry").path();
        if path.file_name().is_some_and(|n| n.to_string_lossy().starts_with("certhost.db")) {
            db.extend(fs::read(path).expect("db"));
        }
    }
    assert!(db.len() > 4096);
    for secret in &secrets {
        // Every 24-byte window of the key material is searched for, not just the whole.
        for window in secret.chunks(24).filter(|c| c.len() == 24) {
            assert!(!db.windows(window.len()).any(|w| w == window), "private key bytes found in the database");
        }
    }
}

#[test]
fn a_wrong_master_key_is_a_clear_error_and_loses_nothing() {
    let app = App::new();
    let ca = OpensslCa::new(&app.path("ca"), "Key Root");
    let (cert, key) = ca.issue("k.example", 30);
    app.run(&["import", s(&cert), "--key", s(&key)]).ok();
    let other = "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=";
    let r = app.run_with_key(&["list"], Some(other));
    assert!(r.fails(1).contains("master key does not match this data directory"), "{}", r.stderr);
    assert!(app.run_with_key(&["list"], Some("short")).fails(1).contains("base64 of exactly 32 bytes"));
    assert_eq!(app.json(&["list", "--json"]).as_array().map(Vec::len), Some(1));
}

#[test]
fn without_an_environment_key_a_private_key_file_is_created_and_reused() {
    let app = App::new();
    app.run_with_key(&["init"], None).ok();
    let key_file = app.data_dir().join("master.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(fs::metadata(&key_file).expect("key file").permissions().mode() & 0o777, 0o600);
    app.run_with_key(&["list"], None).ok();
    // The environment key is not this file's key: refused.
    assert!(app.run(&["list"]).fails(1).contains("master key does not match"));
}

#[test]
fn a_database_from_a_newer_certhost_is_refused_and_left_untouched() {
    let app = App::new();
    assert!(app.run(&["init"]).ok().contains("created an inventory in"));
    assert!(app.run(&["init"]).ok().contains("already holds an inventory; nothing changed"));
    let db = app.data_dir().join("certhost.db");
    {
        let conn = rusqlite::Connection::open(&db).expect("open");
        conn.pragma_update(None, "user_version", 99).expect("bump");
    }
    let r = app.run(&["list"]);
    assert!(r.fails(1).contains("schema version 99"), "{}", r.stderr);
    let conn = rusqlite::Connection::open(&db).expect("open");
    let v: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).expect("version");
    assert_eq!(v, 99);
}

#[test]
fn list_filters_by_expiry_status_search_and_issuer() {
    let app = App::new();
    let ca_a = OpensslCa::new(&app.path("a"), "Alpha Root");
    let ca_b = OpensslCa::new(&app.path("b"), "Beta Root");
    let (soon, _) = ca_a.issue("soon.example", 10);
    let (later, _) = ca_a.issue("later.example", 200);
    let (beta, _) = ca_b.issue("beta.example", 20);
    app.run(&["import", s(&soon), s(&later), s(&beta)]).ok();
    let names = |args: &[&str]| -> Vec<String> {
        let mut a = vec!["list", "--json"];
        a.extend_from_slice(args);
        app.json(&a)
            .as_array()
            .expect("array")
            .iter()
            .map(|c| c["common_name"].as_str().expect("cn").to_owned())
            .collect()
    };
    assert_eq!(names(&["--expiring-within", "30"]), ["soon.example", "beta.example"]);
    assert_eq!(names(&["--expiring-within", "5"]), Vec::<String>::new());
    assert_eq!(names(&["--search", "LATER"]), ["later.example"]);
    assert_eq!(names(&["--issuer", "Beta"]), ["beta.example"]);
    assert_eq!(names(&["--status", "active", "--limit", "2"]), ["soon.example", "later.example"]);
    assert_eq!(names(&["--status", "revoked"]), Vec::<String>::new());
    assert_eq!(names(&["--search", "%"]), Vec::<String>::new(), "LIKE wildcards are literal");
    assert!(app.run(&["list", "--status", "bogus"]).fails(2).contains("unknown status"));
    // By serial, as openssl prints it (upper case, no sign byte) and with a browser's colons
    // (review of stop 33: no lookup took a serial).
    let printed = crate::helpers::sh("openssl", &["x509", "-in", s(&later), "-noout", "-serial"]);
    let serial = printed.trim().trim_start_matches("serial=").to_owned();
    assert_eq!(names(&["--serial", &serial]), ["later.example"]);
    let colons: Vec<String> = serial.as_bytes().chunks(2).map(|p| String::from_utf8_lossy(p).to_lowercase()).collect();
    assert_eq!(names(&["--serial", &format!("00:{}", colons.join(":"))]), ["later.example"]);
    assert!(app.run(&["list", "--serial", "xyz"]).fails(1).contains("serial \"xyz\" is not a hexadecimal number"));
}

/// Regression: two processes opening a new data directory at once both applied migration 1
/// ("table meta already exists"); migrations now take the write lock first.
#[test]
fn many_processes_opening_a_new_data_directory_at_once_all_succeed() {
    for with_env_key in [true, false] {
        let app = App::new();
        let children: Vec<std::process::Child> = (0..8)
            .map(|_| {
                let mut cmd = std::process::Command::new(crate::helpers::certhost_bin());
                cmd.args(["init"])
                    .env("CERTHOST_DATA_DIR", app.data_dir())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped());
                if with_env_key {
                    cmd.env("CERTHOST_MASTER_KEY", &app.master_key);
                } else {
                    cmd.env_remove("CERTHOST_MASTER_KEY");
                }
                cmd.spawn().expect("spawn")
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().expect("wait");
            assert!(
                out.status.success(),
                "concurrent open failed (env key: {with_env_key}): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let key = if with_env_key { Some(app.master_key.as_str()) } else { None };
        app.run_with_key(&["list"], key).ok();
    }
}

#[test]
fn a_directory_with_key_files_beside_certificates_imports_keys_and_a_later_key_is_added() {
    let app = App::new();
    let ca = OpensslCa::new(&app.path("ca"), "Dir Root");
    let dir = app.path("existing-certs");
    fs::create_dir_all(&dir).expect("mkdir");
    let (web, web_key) = ca.issue("web.example.com", 30);
    let (api, api_key) = ca.issue("api.example.com", 30);
    let (_, stray_key) = ca.issue("stray.example.com", 30);
    fs::copy(&web, dir.join("web.pem")).expect("copy");
    fs::copy(&web_key, dir.join("web.key")).expect("copy");
    fs::copy(&api, dir.join("api.pem")).expect("copy");
    fs::copy(&stray_key, dir.join("stray.key")).expect("copy");
    // The README's example: a directory and --key pointing into it.
    let r = app.run(&["import", s(&dir), "--key", s(&dir.join("web.key")), "--json"]);
    let report: serde_json::Value = serde_json::from_str(r.ok()).expect("json");
    assert_eq!(report["imported"].as_array().map(Vec::len), Some(2), "{report}");
    assert!(report["failed"].as_array().is_some_and(Vec::is_empty), "{report}");
    let skipped: Vec<&str> =
        report["skipped"].as_array().expect("skipped").iter().filter_map(|f| f["source"].as_str()).collect();
    assert!(
        skipped.iter().any(|s| s.ends_with("web.key")) && skipped.iter().any(|s| s.ends_with("stray.key")),
        "{skipped:?}"
    );
    let web_row = report["imported"]
        .as_array()
        .expect("imported")
        .iter()
        .find(|i| i["subject"].as_str().is_some_and(|s| s.contains("web")))
        .expect("web");
    assert_eq!(web_row["with_key"], true);
    let api_id = report["imported"]
        .as_array()
        .expect("imported")
        .iter()
        .find(|i| i["subject"].as_str().is_some_and(|s| s.contains("api")))
        .expect("api")["id"]
        .to_string();
    assert_eq!(app.json(&["show", &api_id, "--json"])["has_private_key"], false);
    // Importing the certificate again with its key adds the key to the stored certificate.
    let r = app.run(&["import", s(&api), "--key", s(&api_key), "--json"]);
    let again: serde_json::Value = serde_json::from_str(r.ok()).expect("json");
    assert_eq!(again["duplicates"][0]["with_key"], true, "{again}");
    assert_eq!(app.json(&["show", &api_id, "--json"])["has_private_key"], true);
    // A key file alone is offered to the stored certificates (walkthrough of stop 46: it was
    // called a key matching no certificate): one stored without its key gets it, one stored
    // with it is named, and only a key of no certificate at all is a stray.
    let (db, db_key) = ca.issue("db.example.com", 30);
    let db_id = app.json(&["import", s(&db), "--json"])["imported"][0]["id"].to_string();
    let r = app.run(&["import", s(&db_key), "--json"]);
    let added: serde_json::Value = serde_json::from_str(r.ok()).expect("json");
    assert_eq!(added["duplicates"][0]["id"].to_string(), db_id, "{added}");
    assert_eq!(added["duplicates"][0]["with_key"], true, "{added}");
    assert_eq!(app.json(&["show", &db_id, "--json"])["has_private_key"], true);
    let audit = app.json(&["audit", "--json", "--object-id", &db_id]);
    assert!(audit.as_array().expect("audit").iter().any(|e| e["action"] == "certificate.key_import"), "{audit}");
    let r = app.run(&["import", s(&dir.join("web.key")), s(&dir.join("stray.key"))]);
    let out = r.ok();
    assert!(
        out.contains(&format!("the private key of certificate #{}, already stored with it", web_row["id"])),
        "{out}"
    );
    assert!(
        out.contains("stray.key: a private key that matches no certificate of this import or of the inventory"),
        "{out}"
    );
    // A key revoked for keyCompromise is not stored again by a loose key file.
    let (old, old_key) = ca.issue("old.example.com", 30);
    let old_id = app.json(&["import", s(&old), "--json"])["imported"][0]["id"].to_string();
    app.run(&["revoke", &old_id, "--reason", "keyCompromise", "--local-only"]).ok();
    let r = app.run(&["import", s(&old_key)]);
    assert!(
        r.ok().contains(&format!("a private key revoked for keyCompromise with certificate #{old_id}")),
        "{}",
        r.stdout
    );
    assert_eq!(app.json(&["show", &old_id, "--json"])["has_private_key"], false);
}

#[test]
fn a_database_without_its_key_file_is_refused_and_no_new_key_is_made() {
    let app = App::new();
    let ca = OpensslCa::new(&app.path("ca"), "Keyfile Root");
    let (cert, _) = ca.issue("k.example.com", 30);
    app.run_with_key(&["import", s(&cert)], None).ok();
    fs::remove_file(app.data_dir().join("master.key")).expect("rm key");
    let r = app.run_with_key(&["list"], None);
    assert!(r.fails(1).contains("restore the key file or set CERTHOST_MASTER_KEY"), "{}", r.stderr);
    assert!(!app.data_dir().join("master.key").exists(), "no stray key file");
}

#[test]
fn an_expired_certificate_is_shown_expired_not_active() {
    let app = App::new();
    let ca = OpensslCa::new(&app.path("ca"), "Expiry Root");
    let (cert, _) = ca.issue("soon.example.com", 1);
    app.run(&["import", s(&cert)]).ok();
    assert_eq!(app.json(&["show", "1", "--json"])["status"], "active");
    // Age the stored row past notAfter (as a day passing would), then look again.
    let db = rusqlite::Connection::open(app.data_dir().join("certhost.db")).expect("db");
    db.execute("UPDATE certificates SET not_after = not_after - 3 * 86400", []).expect("age");
    drop(db);
    assert_eq!(app.json(&["list", "--status", "active", "--json"]).as_array().map(Vec::len), Some(0));
    assert_eq!(app.json(&["show", "1", "--json"])["status"], "expired");
    let audit = app.json(&["audit", "--json", "--action", "certificate.expired"]);
    assert_eq!(audit.as_array().map(Vec::len), Some(1));
}

/// Operator review of stop 39: a certificate that had already expired was imported without a
/// word, as if it were one in use.
#[test]
fn importing_an_expired_certificate_says_it_expired() {
    let app = App::new();
    let cert = app.path("old.pem");
    let script = "import datetime, sys\n\
from cryptography import x509\n\
from cryptography.hazmat.primitives import hashes, serialization\n\
from cryptography.hazmat.primitives.asymmetric import ec\n\
from cryptography.x509.oid import NameOID\n\
key = ec.generate_private_key(ec.SECP256R1())\n\
name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, 'old.example.com')])\n\
cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())\n\
    .serial_number(7).not_valid_before(datetime.datetime(2020, 1, 1)).not_valid_after(datetime.datetime(2020, 2, 1))\n\
    .sign(key, hashes.SHA256()))\n\
open(sys.argv[1], 'wb').write(cert.public_bytes(serialization.Encoding.PEM))\n";
    sh("python3", &["-c", script, s(&cert)]);
    let r = app.run(&["import", s(&cert)]);
    assert!(r.ok().contains("imported  #1      CN=old.example.com; expired 2020-02-01T00:00:00Z"), "{}", r.stdout);
    let report = app.json(&["import", s(&cert), "--json"]);
    assert_eq!(report["duplicates"][0]["expired_at"], "2020-02-01T00:00:00Z", "{report}");
    assert_eq!(app.json(&["show", "1", "--json"])["status"], "expired");
}

/// Regression: names from certificates reached the terminal raw, so an imported certificate
/// whose CN held `ESC[2J`, a colour code or a carriage return cleared the screen or overwrote
/// rows of `import`, `list` and `show`.
#[test]
fn control_characters_from_a_certificate_are_escaped_in_human_output_and_exact_in_json() {
    let app = App::new();
    let (cert, key) = (app.path("esc.pem"), app.path("esc.key"));
    sh(
        "openssl",
        &[
            "req",
            "-x509",
            "-utf8",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=ok\u{1b}[2J\u{1b}[31mFAKE\rID 99\u{7f}\u{9b}end",
            "-addext",
            "subjectAltName=DNS:ok\u{1b}[8m.example",
            "-keyout",
            s(&key),
            "-out",
            s(&cert),
        ],
    );
    // The CN as a terminal-safe cell, or inside the subject, escaped there per RFC 4514.
    let escaped_cn = r"ok\x1b[2J\x1b[31mFAKE\x0dID 99\x7f\u{9b}end";
    let escaped_dn = r"CN=ok\1B[2J\1B[31mFAKE\0DID 99\7F\C2\9Bend";
    let shows_it = |out: &str| out.contains(escaped_cn) || out.contains(escaped_dn);
    let is_clean = |out: &str| !out.chars().any(|c| c.is_control() && c != '\n');
    let import = app.run(&["import", s(&cert)]);
    assert!(shows_it(import.ok()) && is_clean(&import.stdout), "{:?}", import.stdout);
    for args in [&["list"][..], &["show", "1"]] {
        let out = app.run(args);
        assert!(shows_it(out.ok()) && is_clean(&out.stdout), "{args:?}: {:?}", out.stdout);
    }
    assert!(app.run(&["show", "1"]).stdout.contains(r"DNS:ok\x1b[8m.example"));
    // JSON keeps the exact text.
    let shown = app.json(&["show", "1", "--json"]);
    assert_eq!(shown["common_name"], "ok\u{1b}[2J\u{1b}[31mFAKE\rID 99\u{7f}\u{9b}end");
}

/// Regression: a `TRUSTED CERTIFICATE` block (`openssl x509 -addtrust`) was accepted by its
/// label and then refused for "14 bytes of trailing garbage" (its trust settings); a .p7b or
/// .p12 got the parser's Rust Debug text.
#[test]
fn a_trusted_certificate_block_imports_its_certificate_and_pkcs_containers_are_named() {
    let app = App::new();
    let ca = OpensslCa::new(&app.path("ca"), "Trust Root");
    let (cert, key) = ca.issue("trusted.example.com", 30);
    let d = |n: &str| app.path(n).to_str().expect("utf8").to_owned();
    sh("openssl", &["x509", "-in", s(&cert), "-addtrust", "serverAuth", "-out", &d("trusted.pem")]);
    assert!(fs::read_to_string(d("trusted.pem")).expect("pem").contains("BEGIN TRUSTED CERTIFICATE"));
    let r = app.run(&["import", &d("trusted.pem")]);
    assert!(r.ok().contains("1 imported, 0 duplicate, 0 failed"), "{} {}", r.stdout, r.stderr);
    assert_eq!(app.run(&["show", "1", "--pem"]).ok().trim(), fs::read_to_string(&cert).expect("cert").trim());

    sh("openssl", &["crl2pkcs7", "-nocrl", "-certfile", s(&cert), "-outform", "DER", "-out", &d("c.p7b")]);
    sh("openssl", &["crl2pkcs7", "-nocrl", "-certfile", s(&cert), "-out", &d("c.p7.pem")]);
    sh(
        "openssl",
        &["pkcs12", "-export", "-in", s(&cert), "-inkey", s(&key), "-passout", "pass:x", "-out", &d("c.p12")],
    );
    let r = app.run(&["import", &d("c.p7b"), &d("c.p7.pem"), &d("c.p12")]);
    r.fails(1);
    assert!(!r.stderr.contains("Tag("), "{}", r.stderr);
    assert_eq!(
        r.stderr.matches("it is a PKCS#7 file, not a certificate (PKCS#7 and PKCS#12 files are not supported").count(),
        2,
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("c.p12: not an X.509 certificate: it is a PKCS#12 file"), "{}", r.stderr);
}

/// Regression: a bundle in root, intermediate, leaf order was split into three inventory
/// certificates and the leaf got no chain: only a certificate that issued the one before it
/// in the file joined a chain.
#[test]
fn a_bundle_in_any_order_imports_its_leaf_with_the_chain() {
    let app = App::new();
    let root = OpensslCa::new(&app.path("ca"), "Order Root");
    let d = |n: &str| app.path(n).to_str().expect("utf8").to_owned();
    fs::write(d("ca.ext"), "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign\n").expect("ext");
    let new_csr = |name: &str, cn: &str| {
        let (key, csr) = (app.path(&format!("{name}.key")), app.path(&format!("{name}.csr")));
        crate::helpers::openssl_csr(&key, &csr, &format!("/CN={cn}"), &[]);
    };
    new_csr("int", "Order Intermediate");
    sh(
        "openssl",
        &[
            "x509",
            "-req",
            "-in",
            &d("int.csr"),
            "-CA",
            s(&root.cert),
            "-CAkey",
            s(&root.key),
            "-days",
            "30",
            "-extfile",
            &d("ca.ext"),
            "-out",
            &d("int.pem"),
        ],
    );
    new_csr("leaf", "order.example.com");
    sh(
        "openssl",
        &[
            "x509",
            "-req",
            "-in",
            &d("leaf.csr"),
            "-CA",
            &d("int.pem"),
            "-CAkey",
            &d("int.key"),
            "-days",
            "30",
            "-out",
            &d("leaf.pem"),
        ],
    );
    let pem = |n: &str| fs::read_to_string(d(n)).expect("pem");
    let (leaf, int, root_pem) = (pem("leaf.pem"), pem("int.pem"), fs::read_to_string(&root.cert).expect("root"));
    for (name, order) in [
        ("root-first.pem", [&root_pem, &int, &leaf]),
        ("middle.pem", [&int, &leaf, &root_pem]),
        ("leaf-first.pem", [&leaf, &int, &root_pem]),
    ] {
        let app = App::new();
        fs::write(d(name), order.iter().map(|p| p.as_str()).collect::<String>()).expect("bundle");
        let r = app.run(&["import", &d(name)]);
        assert!(r.ok().contains("1 imported, 0 duplicate, 0 failed"), "{name}: {}", r.stdout);
        let shown = app.json(&["show", "1", "--json"]);
        assert_eq!(shown["common_name"], "order.example.com", "{name}");
        // The chain runs leaf-ward to root: intermediate, then root.
        assert_eq!(shown["chain_pem"].as_str(), Some(format!("{int}{root_pem}").as_str()), "{name}");
    }
}

/// Regression: under a permissive umask, what certhost created was writable by every user —
/// the compiled-component cache (native code serve runs with the master key in memory), the
/// database, `key-csr --out`, `ca init --out` and `issue`/`show --out` directories — and a data directory others
/// could write to was used as it was.
#[test]
fn nothing_certhost_creates_is_writable_by_other_users_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let app = App::new();
    let (config, _) = crate::helpers::local_ca_lab(&app, "");
    let umask0 = |args: &[&str]| {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg("umask 000; exec \"$0\" \"$@\"")
            .arg(crate::helpers::certhost_bin())
            .args(args)
            .env("CERTHOST_DATA_DIR", app.data_dir())
            .env("CERTHOST_MASTER_KEY", &app.master_key)
            .output()
            .expect("certhost");
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let keys = app.path("keys/nested");
    let ca = app.path("ca2");
    let out = app.path("issued/nested");
    let shown = app.path("shown");
    umask0(&["--config", s(&config), "issue", "--profile", "lab", "--cn", "umask.example.com", "--out", s(&out)]);
    umask0(&["show", "1", "--out", s(&shown)]);
    umask0(&["key-csr", "--cn", "k.example.com", "--out", s(&keys)]);
    umask0(&["ca", "init", "--out", s(&ca)]);
    let mode = |p: &std::path::Path| fs::metadata(p).expect("exists").permissions().mode() & 0o777;
    let data = app.data_dir();
    let cache = data.join("wasm-cache");
    let compiled: Vec<_> = fs::read_dir(&cache).expect("cache").map(|e| e.expect("entry").path()).collect();
    assert!(!compiled.is_empty(), "the component was cached");
    // `--out` directories hold key.pem: another user who may write there can replace it (docs
    // review of stop 40: issue, show and renew made them 0777).
    let mut checked = vec![
        data.clone(),
        cache,
        data.join("certhost.db"),
        keys.clone(),
        app.path("keys"),
        ca,
        out.clone(),
        app.path("issued"),
        shown,
    ];
    checked.extend(compiled);
    for p in &checked {
        assert_eq!(mode(p) & 0o077, 0, "{} is mode {:o}", p.display(), mode(p));
    }

    // A data directory other users may write to is refused, naming it and the fix.
    fs::set_permissions(&data, fs::Permissions::from_mode(0o777)).expect("chmod");
    let refused = app.run(&["list"]);
    let err = refused.fails(1);
    assert!(err.contains(&format!("data directory {}", data.display())) && err.contains("chmod go-w"), "{err}");
}

/// Regression (review of stop 32): a certbot directory (`cert.pem`, `chain.pem`,
/// `fullchain.pem`, `privkey.pem`) stored the leaf without its chain and the intermediate as a
/// second managed certificate, and the chain in `fullchain.pem` was dropped as a duplicate;
/// a chain imported after its leaf was never added.
#[test]
fn a_certbot_directory_imports_one_certificate_with_its_chain_and_a_later_chain_is_added() {
    let app = App::new();
    let root = OpensslCa::new(&app.path("root"), "Certbot Root");
    let int_key = app.path("root/int.key");
    let int_csr = app.path("root/int.csr");
    crate::helpers::openssl_csr(&int_key, &int_csr, "/CN=Certbot Intermediate", &[]);
    let int_cert = root.sign_with(
        &int_csr,
        30,
        "int.pem",
        "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n",
        &[],
    );
    let int = OpensslCa { cert: int_cert.clone(), key: int_key, dir: app.path("root") };
    let (leaf, leaf_key) = int.issue("site.example.com", 30);
    let live = app.path("le/live/site");
    fs::create_dir_all(&live).expect("mkdir");
    let text = |p: &std::path::Path| fs::read_to_string(p).expect("read");
    fs::write(live.join("cert.pem"), text(&leaf)).expect("cert");
    fs::write(live.join("chain.pem"), text(&int_cert)).expect("chain");
    fs::write(live.join("fullchain.pem"), text(&leaf) + &text(&int_cert)).expect("fullchain");
    fs::write(live.join("privkey.pem"), text(&leaf_key)).expect("key");
    let r = app.run(&["import", s(&live), "--json"]);
    let report: serde_json::Value = serde_json::from_str(r.ok()).expect("json");
    assert_eq!(report["imported"].as_array().map(Vec::len), Some(1), "{report}");
    assert_eq!(report["imported"][0]["with_key"], true, "{report}");
    let skipped = report["skipped"].to_string();
    assert!(skipped.contains("chain.pem") && skipped.contains("stored as its chain"), "{report}");
    let shown = app.json(&["show", "1", "--json"]);
    assert_eq!(shown["chain_pem"].as_str(), Some(text(&int_cert).as_str()), "{shown}");
    assert_eq!(app.json(&["list", "--json"]).as_array().map(Vec::len), Some(1));

    // A leaf imported alone gets its chain when a bundle holding it is imported later.
    let other = App::new();
    other.run(&["import", s(&leaf)]).ok();
    assert_eq!(other.json(&["show", "1", "--json"])["chain_pem"], "");
    other.run(&["import", s(&live.join("fullchain.pem"))]).ok();
    assert_eq!(other.json(&["show", "1", "--json"])["chain_pem"].as_str(), Some(text(&int_cert).as_str()));
    let audit = other.run(&["audit", "--json"]);
    assert!(audit.ok().contains("certificate.complete"), "{}", audit.stdout);

    // A CA certificate beside the leaves it issued, in no bundle (an openssl CA directory),
    // is a certificate of its own: its expiry is tracked. The leaf gets it as its chain.
    let ca_dir = App::new();
    let dir = ca_dir.path("openssl-ca");
    fs::create_dir_all(dir.join("newcerts")).expect("mkdir");
    fs::write(dir.join("ca.pem"), text(&int_cert)).expect("ca");
    fs::write(dir.join("newcerts/01.pem"), text(&leaf)).expect("leaf");
    let r = ca_dir.run(&["import", s(&dir), "--json"]);
    let report: serde_json::Value = serde_json::from_str(r.ok()).expect("json");
    assert_eq!(report["imported"].as_array().map(Vec::len), Some(2), "{report}");
    let leaf_id = report["imported"]
        .as_array()
        .expect("imported")
        .iter()
        .find(|i| i["subject"] == "CN=site.example.com")
        .expect("leaf")["id"]
        .to_string();
    assert_eq!(ca_dir.json(&["show", &leaf_id, "--json"])["chain_pem"].as_str(), Some(text(&int_cert).as_str()));
}

/// Regression (review of stop 33): with `certhost.db` deleted or emptied, the next command
/// made a new, empty inventory beside the old master key and answered "no certificates"; a
/// `serve` would have stopped renewing everything quietly.
#[test]
fn a_master_key_whose_inventory_is_gone_is_not_given_a_new_one() {
    let app = App::new();
    app.run_with_key(&["init"], None).ok();
    let (db, key) = (app.data_dir().join("certhost.db"), app.data_dir().join("master.key"));
    let aged = || {
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        fs::File::options().write(true).open(&key).expect("key").set_modified(old).expect("age the key");
    };
    aged();
    for (how, damage) in [("deleted", None), ("emptied", Some(""))] {
        for f in ["certhost.db", "certhost.db-wal", "certhost.db-shm"] {
            let _ = fs::remove_file(app.data_dir().join(f));
        }
        if let Some(text) = damage {
            fs::write(&db, text).expect("empty db");
        }
        for args in [&["init"][..], &["token", "create", "--name", "x", "--role", "admin"]] {
            let err = app.run_with_key(args, None).fails(1).to_owned();
            assert!(
                err.contains("it has no inventory beside it (certhost.db is missing or empty)")
                    && err.contains("move master.key aside"),
                "{how}, {args:?}: {err}"
            );
        }
        assert!(fs::metadata(&db).map_or(true, |m| m.len() == 0), "{how}: no new inventory was made");
    }
    // Moved aside as told, a new inventory starts.
    fs::rename(&key, app.data_dir().join("master.key.old")).expect("move aside");
    fs::remove_file(&db).expect("rm");
    assert!(app.run_with_key(&["init"], None).ok().contains("created an inventory"));
}

/// Regression (review of stop 33): with `$USER` unset (cron, systemd, containers) the audit
/// log said `cli:unknown` for everyone; it names the real user now.
#[test]
fn without_user_in_the_environment_the_audit_names_the_real_user() {
    let app = App::new();
    let out =
        app.command().args(["token", "create", "--name", "cron", "--role", "auditor"]).env_remove("USER").output();
    assert!(out.expect("run").status.success());
    let events = app.json(&["audit", "--json"]);
    let actor = events[0]["actor"].as_str().expect("actor");
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    assert!(actor.starts_with("cli:") && actor != "cli:unknown" && actor != "cli:", "{actor}");
    if uid == 0 {
        assert_eq!(actor, "cli:root");
    }
}

/// Regression (review of stop 33): a database with tables but no certhost schema version
/// (another program's, or the inventory after a foreign `-wal` was replayed onto it) was
/// migrated as a new inventory; then it was refused only after being switched to WAL mode.
/// It is refused before anything is written.
#[test]
fn another_programs_database_is_refused_and_left_as_it_was() {
    let app = App::new();
    fs::create_dir_all(app.data_dir()).expect("mkdir");
    let db = app.data_dir().join("certhost.db");
    {
        let conn = rusqlite::Connection::open(&db).expect("open");
        conn.execute_batch("CREATE TABLE x (a); INSERT INTO x VALUES ('kept');").expect("foreign");
    }
    let before = fs::read(&db).expect("read");
    let err = app.run(&["init"]).fails(1).to_owned();
    assert!(err.contains("certhost.db is not a certhost inventory") && err.contains("nothing was changed"), "{err}");
    assert_eq!(fs::read(&db).expect("read"), before, "the file is untouched");
    assert!(!app.data_dir().join("certhost.db-wal").exists(), "not switched to WAL mode");
}

/// Upgrade review of stop 39: the CLI's opens took the directory's shared hold first, so the
/// exclusive one a schema migration asks for was already theirs: `certhost list` of a newer
/// certhost migrated under an older `serve`. It waits, then refuses, and migrates once alone.
#[test]
fn the_cli_does_not_migrate_an_inventory_another_process_has_open() {
    let app = App::new();
    app.run(&["init"]).ok();
    let db = app.data_dir().join("certhost.db");
    let version = || -> u32 {
        rusqlite::Connection::open(&db).expect("db").query_row("PRAGMA user_version", [], |r| r.get(0)).expect("v")
    };
    let current = version();
    rusqlite::Connection::open(&db).expect("db").pragma_update(None, "user_version", current - 1).expect("older");
    let older_serve = fs::File::open(app.data_dir().join("certhost.lock")).expect("lock file");
    older_serve.try_lock_shared().expect("shared");
    let err = app.run(&["list"]).fails(1).to_owned();
    assert!(err.contains("needs upgrading from schema version") && err.contains("another certhost process"), "{err}");
    assert_eq!(version(), current - 1, "nothing was migrated");
    drop(older_serve);
    app.run(&["list"]).ok();
    assert_eq!(version(), current);
}

/// Upgrade walkthrough of stop 49: a run with the wrong master key migrated the schema before
/// the key was found wrong — the older certhost went back to could no longer open the
/// inventory —, and an upgrade said nothing anywhere. The key is checked first, and the
/// upgrade is said once and audited.
#[test]
fn an_upgrade_checks_the_master_key_first_and_says_and_audits_what_it_did() {
    let app = App::new();
    let made = app.run(&["init"]);
    made.ok();
    assert!(!made.stderr.contains("upgraded"), "a new inventory is no upgrade: {}", made.stderr);
    let db = app.data_dir().join("certhost.db");
    let version = || -> u32 {
        rusqlite::Connection::open(&db).expect("db").query_row("PRAGMA user_version", [], |r| r.get(0)).expect("v")
    };
    let current = version();
    rusqlite::Connection::open(&db).expect("db").pragma_update(None, "user_version", current - 1).expect("older");
    use base64::Engine as _;
    let wrong = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let err = app.run_with_key(&["list"], Some(&wrong)).fails(1).to_owned();
    assert!(err.contains("the master key does not match this data directory"), "{err}");
    assert_eq!(version(), current - 1, "nothing was migrated with the wrong key");

    let listed = app.run(&["list"]);
    listed.ok();
    assert!(
        listed.stderr.contains(&format!("from schema version {} to {current}", current - 1))
            && listed.stderr.contains("an older certhost cannot open it now"),
        "{}",
        listed.stderr
    );
    assert_eq!(version(), current);
    let events = app.json(&["audit", "--json", "--action", "inventory.upgrade"]);
    let event = &events.as_array().expect("events")[0];
    assert_eq!(event["actor"], "certhost upgrade", "{events}");
    assert_eq!(event["detail"]["from_schema"], current - 1, "{events}");
    let again = app.run(&["list"]);
    again.ok();
    assert!(!again.stderr.contains("upgraded"), "said once: {}", again.stderr);
}

/// `show --out` (and `issue --out`) wrote an empty chain.pem without a word when no chain came
/// with the certificate (plugin-author walkthrough of stop 47): a server given it as its CA
/// file fails, and the operator could not tell why.
#[test]
fn an_empty_chain_pem_is_said_to_be_empty() {
    let app = App::new();
    let (cert, _key) = crate::helpers::localhost_tls(&app.path("tls"));
    app.run(&["import", cert.to_str().expect("utf8")]).ok();
    let out = app.path("out");
    let shown = app.run(&["show", "1", "--out", out.to_str().expect("utf8")]);
    assert!(
        shown.ok().contains(
            "wrote cert.pem, chain.pem (empty: no chain came with the certificate), fullchain.pem of certificate #1"
        ),
        "{}",
        shown.stdout
    );
    assert_eq!(std::fs::read_to_string(out.join("chain.pem")).expect("chain"), "");
}
