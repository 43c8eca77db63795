//! `certhost plugin check` against real connectors.

use crate::helpers::{App, Cfssl};

fn plugin(name: &str) -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins").join(name).display().to_string()
}

#[test]
fn cfssl_py_passes_every_check_against_a_real_cfssl_and_hides_its_key() {
    let app = App::new();
    let cfssl = Cfssl::start(&app.path("cfssl"));
    let r = app.run(&[
        "plugin",
        "check",
        &plugin("cfssl.py"),
        "--param",
        &format!("url={}", cfssl.url),
        "--param",
        "profile=authed",
        "--param",
        &format!("auth_key={}", cfssl.auth_key),
    ]);
    let out = r.ok();
    for check in ["PASS describe", "PASS certificate_request", "PASS verification", "PASS test_connection"] {
        assert!(out.contains(check), "{check} missing:\n{out}");
    }
    assert!(!out.contains("FAIL"), "{out}");
    assert!(!out.contains(&cfssl.auth_key) && !r.stderr.contains(&cfssl.auth_key));
    // A wrong key fails the request check, with CFSSL's reason, and the exit code says so.
    let wrong = "00".repeat(32);
    let r = app.run(&[
        "plugin",
        "check",
        &plugin("cfssl.py"),
        "--param",
        &format!("url={}", cfssl.url),
        "--param",
        "profile=authed",
        "--param",
        &format!("auth_key={wrong}"),
    ]);
    assert_eq!(r.code, 1);
    assert!(
        r.stdout.contains("FAIL certificate_request") && r.stdout.contains("CFSSL authsign refused the request"),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains(&wrong));
}

#[test]
fn a_connector_returning_garbage_fails_the_check_with_exit_1() {
    let app = App::new();
    let script = crate::python::fixture("hostile/returns_none.py");
    let r = app.run(&["plugin", "check", script.to_str().expect("utf8")]);
    assert_eq!(r.code, 1);
    assert!(
        r.stdout.contains("FAIL certificate_request    script returns_none: returned None instead of a certificate"),
        "{}",
        r.stdout
    );
    let r = app.run(&["plugin", "check", crate::python::fixture("hostile/syntax_error.py").to_str().expect("utf8")]);
    assert!(r.fails(1).contains("SyntaxError"), "{}", r.stderr);
}

#[test]
fn local_ca_wasm_passes_every_check_and_a_garbage_returning_component_fails() {
    let app = App::new();
    let ca = certhost::root_ca::create("Check CA", 10).expect("ca");
    let local_ca = crate::wasm::component("local-ca");
    let r = app.run(&[
        "plugin",
        "check",
        local_ca.to_str().expect("utf8"),
        "--param",
        &format!("ca_certificate={}", ca.certificate_pem),
        "--param",
        &format!("ca_private_key={}", ca.key.to_pem().as_str()),
    ]);
    let out = r.ok();
    assert!(
        out.contains("PASS certificate_request")
            && out.contains("PASS verification")
            && out.contains("PASS test_connection"),
        "{out}"
    );
    assert!(!out.contains("PRIVATE KEY"), "the sensitive key is never printed");
    let hostile = crate::wasm::component("hostile");
    let r = app.run(&["plugin", "check", hostile.to_str().expect("utf8"), "--param", "mode=garbage"]);
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains("FAIL certificate_request") && r.stdout.contains("does not parse"), "{}", r.stdout);
}
