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
    // Regression (review of stop 30): a check made a data directory wherever it ran.
    assert!(!app.data_dir().exists(), "plugin check created {}", app.data_dir().display());
    let r = app.run(&["plugin", "check", crate::python::fixture("hostile/syntax_error.py").to_str().expect("utf8")]);
    assert!(r.fails(1).contains("SyntaxError"), "{}", r.stderr);
    // Black-box review of stop 35: a string was iterated (PARAMETERS = "tok" declared three
    // one-letter parameters) and a malformed entry was dropped without a word.
    for (declared, said) in [
        (r#""tok""#, "PARAMETERS must be a list of parameter names or {\"name\": ...} dicts, not a str"),
        (
            r#"["url", {"nam": "x"}]"#,
            "PARAMETERS entry 2 is neither a parameter name nor a dict with a \"name\" (found dict)",
        ),
        (r#"["url", 5]"#, "PARAMETERS entry 2 is neither a parameter name nor a dict with a \"name\" (found int)"),
        (
            r#"["url", ""]"#,
            "PARAMETERS entry 2 is neither a parameter name nor a dict with a \"name\" (found an empty name)",
        ),
        (r#"[{"name": "tok", "sensitve": True}]"#, "PARAMETERS entry 1 (tok) has the unknown key 'sensitve'"),
        (r#"["url", {"name": "url"}]"#, "PARAMETERS declares url twice"),
    ] {
        let script = app.path("declares.py");
        std::fs::write(
            &script,
            format!("PARAMETERS = {declared}\n\ndef certificate_request(csr, cn, args):\n    return None\n"),
        )
        .expect("script");
        let r = app.run(&["plugin", "check", script.to_str().expect("utf8")]);
        assert!(r.fails(1).contains(said), "{declared}: {}", r.stderr);
    }
}

/// Avi script review of stop 39: the check's CSR always carried an IP address, so a script for
/// a CA that issues DNS names only (Avi's ACME scripts) could never pass. `--cn`/`--san` choose
/// the names.
#[test]
fn plugin_check_asks_for_the_names_given_with_cn_and_san() {
    let app = App::new();
    let ca = app.path("ca");
    app.run(&["ca", "init", "--out", ca.to_str().expect("utf8")]).ok();
    let script = crate::python::fixture("dns_only_ca.py");
    let check = |names: &[&str]| {
        let mut args = vec![
            "plugin".to_owned(),
            "check".to_owned(),
            script.display().to_string(),
            "--param".to_owned(),
            format!("ca_cert={}", ca.join("ca.pem").display()),
            "--param".to_owned(),
            format!("ca_key={}", ca.join("ca.key").display()),
        ];
        args.extend(names.iter().map(|n| (*n).to_owned()));
        app.run(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let r = check(&[]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stdout.contains("FAIL certificate_request") && r.stdout.contains("IP address identifiers"),
        "{}",
        r.stdout
    );
    let r = check(&["--cn", "dns-only.example.com", "--san", "DNS:www.dns-only.example.com"]);
    let out = r.ok();
    assert!(out.contains("PASS certificate_request") && out.contains("PASS verification"), "{out}");
    // The certificate was verified against exactly these names: a CN, itself as a SAN, the SAN.
    let r = check(&["--san", "DNS:only.example.com"]);
    assert!(r.ok().contains("PASS verification"), "{}", r.stdout);
    let r = app.run(&["plugin", "check", script.to_str().expect("utf8"), "--san", "DNS:bad name"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
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

#[test]
fn plugin_check_passes_allowed_hosts_and_extra_ca_pems_to_a_component() {
    let app = App::new();
    let (ca_pem, server) = crate::wasm::private_ca_tls_server(&app);
    let hostile = crate::wasm::component("hostile");
    let url = format!("https://127.0.0.1:{}/index.html", server.port);
    let check = |extra: &[&str]| {
        let mut args = vec!["plugin", "check", hostile.to_str().expect("utf8"), "--param", "mode=http"];
        let url_param = format!("url={url}");
        let host = format!("https://127.0.0.1:{}", server.port);
        args.extend(["--param", &url_param, "--allowed-host", &host]);
        args.extend(extra);
        app.run(&args)
    };
    // hostile's "http" mode answers "rejected: fetched HTTP <status>": the fetch got through.
    let trusted = check(&["--extra-ca-pem", ca_pem.to_str().expect("utf8")]);
    assert!(trusted.stdout.contains("the CA rejected the request: fetched HTTP 200"), "{}", trusted.stdout);
    let untrusted = check(&[]);
    assert!(
        untrusted.stdout.contains("FAIL certificate_request") && !untrusted.stdout.contains("fetched HTTP"),
        "{}",
        untrusted.stdout
    );
    let denied = app.run(&[
        "plugin",
        "check",
        hostile.to_str().expect("utf8"),
        "--param",
        "mode=http",
        "--param",
        &format!("url={url}"),
    ]);
    assert!(denied.stdout.contains("not among the CA account's allowed hosts"), "{}", denied.stdout);

    // At RUST_LOG=trace, wasmtime's WASI HTTP bindings logged each host call's arguments: the
    // path and query of a sensitive URL in clear (security review of stop 36).
    let secret = "S3CRET-trace-4f1c9e";
    let out = app
        .command()
        .args(["plugin", "check", hostile.to_str().expect("utf8"), "--param", "mode=http"])
        .args([
            "--sensitive-param-env",
            "url=SECRET_URL",
            "--allowed-host",
            &format!("https://127.0.0.1:{}", server.port),
        ])
        .args(["--extra-ca-pem", ca_pem.to_str().expect("utf8")])
        .env("SECRET_URL", format!("{url}?apikey={secret}"))
        .env("RUST_LOG", "trace")
        .output()
        .expect("run certhost");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("fetched HTTP 200"), "the fetch was made: {stdout}{stderr}");
    assert!(stderr.contains("DEBUG"), "the log was on: {stderr}");
    assert!(!stdout.contains(secret) && !stderr.contains(secret), "{stdout}{stderr}");
}

/// Copies a directory tree, skipping build output.
fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir").flatten() {
        let name = entry.file_name();
        if name == "target" || name == "dist" {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(&name));
        if src.is_dir() { copy_tree(&src, &dst) } else { std::fs::copy(&src, &dst).map(|_| ()).expect("copy") }
    }
}

#[test]
fn plugin_new_creates_a_connector_that_builds_and_passes_plugin_check_untouched() {
    let app = App::new();
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let (work, plugins) = repo_copy(&app);
    let r = app.run(&["plugin", "new", "acme-lab", "--plugins-dir", plugins.to_str().expect("utf8")]);
    assert!(r.ok().contains("created"), "{}", r.stdout);
    assert!(std::fs::read_to_string(plugins.join("Cargo.toml")).expect("workspace").contains("\"acme-lab\""));
    let manifest = std::fs::read_to_string(plugins.join("acme-lab/Cargo.toml")).expect("manifest");
    assert!(
        manifest.contains("name = \"acme-lab\"") && manifest.contains("path = \"../../plugin-sdk/rust\""),
        "{manifest}"
    );
    for file in ["src/der.rs", "src/pem.rs", "testdata/ca.pem"] {
        assert!(plugins.join("acme-lab").join(file).is_file(), "the template carries {file}");
    }
    // Elsewhere, with the SDK somewhere else: the manifest says so. A path where no SDK is
    // is refused before anything is written (it used to show only at the crate's first build).
    let other = app.path("elsewhere");
    let other_dir = other.to_str().expect("utf8");
    let r = app.run(&["plugin", "new", "vault-pki", "--plugins-dir", other_dir, "--sdk", "/opt/sdk/rust"]);
    assert!(r.fails(1).contains("the plugin SDK is not at /opt/sdk/rust"), "{}", r.stderr);
    assert!(!other.join("vault-pki").exists(), "nothing written");
    let sdk = work.join("plugin-sdk/rust").display().to_string();
    let r = app.run(&["plugin", "new", "vault-pki", "--plugins-dir", other_dir, "--sdk", &sdk]);
    // No workspace there: the crate builds on its own, and the hint says how and where.
    let hint = format!(
        "  certhost plugin check {other_dir}/vault-pki/target/wasm32-wasip2/release/vault_pki.wasm --param-file ca_certificate=lab-ca/ca.pem --sensitive-param-file ca_private_key=lab-ca/ca.key"
    );
    assert!(
        r.ok().contains(&hint) && r.stdout.contains("cargo build --release --target wasm32-wasip2)"),
        "{}",
        r.stdout
    );
    let manifest = std::fs::read_to_string(other.join("vault-pki/Cargo.toml")).expect("manifest");
    for line in ["name = \"vault-pki\"", "description = \"certhost connector vault-pki\"", &format!("path = \"{sdk}\"")]
    {
        assert!(manifest.contains(line), "{line} in {manifest}");
    }
    assert!(!manifest.contains("local-ca") && !manifest.contains("license"), "{manifest}");
    // Built on its own, it is built as the shipped connectors are (stop 36's review).
    assert!(manifest.contains("[profile.release.package.p256]\nopt-level = 3"), "{manifest}");
    let config = std::fs::read_to_string(other.join("vault-pki/.cargo/config.toml")).expect("cargo config");
    assert!(config.contains("target-feature=+wide-arithmetic"), "{config}");
    // And with the toolchain (and its wasm32-wasip2 target) certhost's connectors use.
    let toolchain = std::fs::read_to_string(other.join("vault-pki/rust-toolchain.toml")).expect("toolchain file");
    assert!(toolchain.contains("targets = [\"wasm32-wasip2\"]"), "{toolchain}");
    assert!(
        app.run(&["plugin", "new", "acme-lab", "--plugins-dir", plugins.to_str().expect("utf8")])
            .fails(1)
            .contains("already exists")
    );
    assert!(
        app.run(&["plugin", "new", "Bad_Name", "--plugins-dir", plugins.to_str().expect("utf8")])
            .fails(1)
            .contains("is invalid")
    );
    // Build it the way `cargo xtask build-plugins` does, sharing its compiled dependencies.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(|d| std::path::PathBuf::from(d).join("plugins-wasm"))
        .unwrap_or_else(|| repo.join("plugins/target"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args(["build", "--release", "--target", "wasm32-wasip2", "-p", "acme-lab", "--manifest-path"])
        .arg(plugins.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .current_dir(&repo)
        .status()
        .expect("cargo");
    assert!(status.success(), "the new connector builds");
    let wasm = target.join("wasm32-wasip2/release/acme_lab.wasm");
    let ca = certhost::root_ca::create("Template CA", 10).expect("ca");
    let r = app.run(&[
        "plugin",
        "check",
        wasm.to_str().expect("utf8"),
        "--param",
        &format!("ca_certificate={}", ca.certificate_pem),
        "--param",
        &format!("ca_private_key={}", ca.key.to_pem().as_str()),
    ]);
    let out = r.ok();
    assert!(out.contains("PASS describe               acme-lab 0.1.0") && !out.contains("FAIL"), "{out}");
}

/// `plugin check` printed `PASS poll` for a poll that raised (right after `FAIL
/// certificate_request … poll failed`) and for one never called because the request failed.
#[test]
fn plugin_check_fails_a_poll_that_raised_or_never_ran() {
    let app = App::new();
    let script = crate::python::fixture("broken_poll.py");
    let script = script.to_str().expect("utf8");
    let r = app.run(&["plugin", "check", script]);
    assert_eq!(r.code, 1);
    assert!(
        r.stdout.contains(
            "FAIL poll                   failed while settling the request: script broken_poll: raised RuntimeError: poll is broken for order 7"
        ),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("PASS poll"), "{}", r.stdout);
    // The pending order is named, as `issue` names it.
    assert!(r.stdout.contains("FAIL certificate_request    pending as CA order 7, and poll failed: "), "{}", r.stdout);

    // A request that failed fails once: the poll it left nothing for is skipped, said so.
    let r = app.run(&["plugin", "check", script, "--param", "refuse=1"]);
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains("FAIL certificate_request"), "{}", r.stdout);
    assert!(
        r.stdout.contains("SKIP poll                   not exercised: certificate_request failed (above)"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains(": 2 passed, 1 failed, 1 skipped"), "{}", r.stdout);
}

/// Author review of stop 40: a connector declaring `poll` for a CA that issues at once could
/// never pass `plugin check` (FAIL poll: not exercised), so a CI job on it stayed red. The
/// poll is skipped, named, and the run passes.
#[test]
fn plugin_check_skips_a_poll_a_ca_that_issues_at_once_left_nothing_for() {
    let app = App::new();
    let ca = app.path("ca");
    app.run(&["ca", "init", "--out", ca.to_str().expect("utf8")]).ok();
    let script = crate::python::fixture("scripted_ca.py");
    std::fs::create_dir_all(app.path("state")).expect("state dir");
    let r = app.run(&[
        "plugin",
        "check",
        script.to_str().expect("utf8"),
        "--param",
        "mode=good",
        "--param",
        &format!("ca_cert={}", ca.join("ca.pem").display()),
        "--param",
        &format!("ca_key={}", ca.join("ca.key").display()),
        "--param",
        &format!("state_dir={}", app.path("state").display()),
    ]);
    let out = r.ok();
    assert!(out.contains("PASS certificate_request") && out.contains("PASS verification"), "{out}");
    assert!(
        out.contains("SKIP poll                   not exercised: the CA issued at once, leaving no order to poll"),
        "{out}"
    );
    assert!(!out.contains("FAIL"), "{out}");
    assert!(out.contains(" failed, 1 skipped"), "{out}");
}

/// Left alone in stop 41: `plugin check` passed a CA that copies a secret of the call into
/// the certificate's subject, which the pipeline refuses on every order. The check applies
/// the same rule, and the secret is not printed.
#[test]
fn plugin_check_fails_a_certificate_that_carries_a_secret_of_the_call() {
    let app = App::new();
    let ca = app.path("ca");
    app.run(&["ca", "init", "--out", ca.to_str().expect("utf8")]).ok();
    let script = crate::python::fixture("scripted_ca.py");
    std::fs::create_dir_all(app.path("state")).expect("state dir");
    let secret = "tok-5d1e9a77c3";
    let out = app
        .command()
        .args(["plugin", "check", script.to_str().expect("utf8"), "--param", "mode=ou_secret"])
        .args(["--param", &format!("ca_cert={}", ca.join("ca.pem").display())])
        .args(["--param", &format!("ca_key={}", ca.join("ca.key").display())])
        .args(["--param", &format!("state_dir={}", app.path("state").display())])
        .args(["--sensitive-param-env", "token=CA_TOKEN"])
        .env("CA_TOKEN", secret)
        .output()
        .expect("run certhost");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("FAIL certificate_request")
            && stdout.contains("its subject holds a sensitive value of the call, which would be stored"),
        "{stdout}{stderr}"
    );
    assert!(!stdout.contains(secret) && !stderr.contains(secret), "{stdout}{stderr}");
    // The CA issued it all the same: the refused certificate is revoked, not left valid
    // (diff review of stop 43).
    assert!(stdout.contains("PASS revoke") && stdout.contains("revoked the refused certificate, serial "), "{stdout}");
    let revoked: Vec<String> = std::fs::read_dir(app.path("state"))
        .expect("state dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("revoked-"))
        .collect();
    assert_eq!(revoked.len(), 1, "{revoked:?}");
    assert!(stdout.contains(&revoked[0]["revoked-".len()..]), "the serial revoked is the one said: {stdout}");
}

/// `plugin new --plugins-dir DIR` made a crate cargo refused when DIR lay inside another
/// workspace's tree (certhost's own checkout: "current package believes it's in a workspace
/// when it's not"); a crate outside a plugins workspace now declares a workspace of its own.
#[test]
fn plugin_new_outside_a_plugins_workspace_makes_a_crate_cargo_accepts_inside_another_workspace() {
    let app = App::new();
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let work = app.path("checkout");
    std::fs::create_dir_all(&work).expect("mkdir");
    std::fs::write(work.join("Cargo.toml"), "[workspace]\nresolver = \"3\"\nmembers = []\n").expect("root manifest");
    let sdk = repo.join("plugin-sdk/rust").canonicalize().expect("sdk").display().to_string();
    let connectors = work.join("connectors");
    let r = app.run(&["plugin", "new", "team-ca", "--plugins-dir", connectors.to_str().expect("utf8"), "--sdk", &sdk]);
    r.ok();
    let manifest = std::fs::read_to_string(connectors.join("team-ca/Cargo.toml")).expect("manifest");
    assert!(manifest.lines().any(|l| l == "[workspace]"), "{manifest}");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--no-deps", "--offline", "--format-version", "1"])
        .current_dir(connectors.join("team-ca"))
        .output()
        .expect("cargo metadata");
    assert!(out.status.success(), "cargo refused the crate: {}", String::from_utf8_lossy(&out.stderr));
}

/// `plugin new hostile` joined the plugins workspace beside `testdata/hostile`, whose package
/// is also named hostile, and cargo then built no connector at all ("two packages named
/// `hostile`"). Names cargo refuses, or that clash with the template's dependencies, were
/// accepted too.
#[test]
fn plugin_new_refuses_a_name_a_workspace_member_or_cargo_already_uses() {
    let app = App::new();
    let (_, plugins) = repo_copy(&app);
    let dir = plugins.to_str().expect("utf8");
    let before = std::fs::read_to_string(plugins.join("Cargo.toml")).expect("workspace");
    let r = app.run(&["plugin", "new", "hostile", "--plugins-dir", dir]);
    assert!(
        r.fails(1).contains("connector name \"hostile\" is taken") && r.stderr.contains("(testdata/hostile)"),
        "{}",
        r.stderr
    );
    for (name, why) in [
        ("test", "built-in test library"),
        ("std", "standard library"),
        ("core", "standard library"),
        ("fn", "Rust keyword"),
        ("p256", "a dependency of the template crate"),
        ("yasna", "a dependency of the template crate"),
    ] {
        let r = app.run(&["plugin", "new", name, "--plugins-dir", dir]);
        assert!(r.fails(1).contains(why), "{name}: {}", r.stderr);
        assert!(!plugins.join(name).exists(), "{name}: nothing written");
    }
    assert_eq!(std::fs::read_to_string(plugins.join("Cargo.toml")).expect("workspace"), before);
}

/// `plugin new` told authors to pass `"$(cat ca.pem)"`, a file nothing had made, and `plugin
/// check` then passed `describe` with the empty value before failing on the missing parameter.
#[test]
fn plugin_new_says_to_make_the_lab_ca_and_check_counts_an_empty_parameter_as_missing() {
    let app = App::new();
    let (_, plugins) = repo_copy(&app);
    let r = app.run(&["plugin", "new", "team-ca", "--plugins-dir", plugins.to_str().expect("utf8")]);
    let out = r.ok();
    let init = out.find("cargo xtask run -- ca init --out lab-ca").expect(out);
    let check = out.find("plugin check").expect(out);
    assert!(init < check && out.contains("--param-file ca_certificate=lab-ca/ca.pem"), "{out}");
    assert!(!out.contains("$(cat ca.pem)"), "{out}");

    let wasm = crate::wasm::component("local-ca");
    let r = app.run(&[
        "plugin",
        "check",
        wasm.to_str().expect("utf8"),
        "--param",
        "ca_certificate= ",
        "--sensitive-param",
        "ca_private_key=",
    ]);
    assert_eq!(r.code, 1);
    assert!(
        r.stdout.contains(
            "FAIL describe               required parameter(s) not given or empty: ca_certificate (--param ca_certificate=VALUE), \
             ca_private_key (--sensitive-param-file ca_private_key=PATH or --sensitive-param-env ca_private_key=VAR)"
        ),
        "{}",
        r.stdout
    );
}

/// Regression: `plugin check` took secrets only as `--sensitive-param NAME=VALUE`, so a CA key
/// or password sat in the process list (`/proc/PID/cmdline`) and the shell's history while
/// the check ran. Values now also come from files and environment variables.
#[test]
fn plugin_check_reads_parameters_from_files_and_the_environment() {
    let app = App::new();
    let lab = app.path("lab");
    app.run(&["ca", "init", "--out", lab.to_str().expect("utf8")]).ok();
    let wasm = crate::wasm::component("local-ca");
    let (wasm, cert, key) = (
        wasm.to_str().expect("utf8"),
        format!("ca_certificate={}", lab.join("ca.pem").display()),
        format!("ca_private_key={}", lab.join("ca.key").display()),
    );
    let by_file = app.run(&["plugin", "check", wasm, "--param-file", &cert, "--sensitive-param-file", &key]);
    assert!(by_file.ok().contains("PASS"), "{}", by_file.stdout);
    let key_pem = std::fs::read_to_string(lab.join("ca.key")).expect("key");
    let by_env = std::process::Command::new(crate::helpers::certhost_bin())
        .args(["plugin", "check", wasm, "--param-file", &cert, "--sensitive-param-env", "ca_private_key=LAB_KEY"])
        .env("CERTHOST_DATA_DIR", app.data_dir())
        .env("LAB_KEY", &key_pem)
        .output()
        .expect("check");
    assert!(by_env.status.success(), "{}", String::from_utf8_lossy(&by_env.stdout));
    // A name given twice, or a file that is not there: one sentence, no value echoed.
    let twice = app.run(&[
        "plugin",
        "check",
        wasm,
        "--param-file",
        &cert,
        "--sensitive-param-file",
        &key,
        "--sensitive-param",
        &key,
    ]);
    assert!(twice.fails(1).contains("parameter ca_private_key is given twice"), "{}", twice.stderr);
    let missing = app.run(&[
        "plugin",
        "check",
        wasm,
        "--param-file",
        &cert,
        "--sensitive-param-file",
        "ca_private_key=/nonexistent/k",
    ]);
    assert!(missing.fails(1).contains("/nonexistent/k"), "{}", missing.stderr);
}

/// A copy of the repository's `plugins` workspace and `plugin-sdk` under `app`, for `plugin new`
/// to add to: returns (the copy's root, its plugins directory).
fn repo_copy(app: &App) -> (std::path::PathBuf, std::path::PathBuf) {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let work = app.path("repo");
    copy_tree(&repo.join("plugins"), &work.join("plugins"));
    copy_tree(&repo.join("plugin-sdk"), &work.join("plugin-sdk"));
    let plugins = work.join("plugins");
    (work, plugins)
}

/// Regression (author review of stop 40): `plugin check` passed a pending order whose id held
/// a sensitive value, polled it (sending the secret to the CA in the poll), and `certhost
/// issue` then failed the same order: the check holds answers to the pipeline's rules.
#[test]
fn plugin_check_holds_an_order_id_to_the_rules_the_pipeline_does() {
    let app = App::new();
    let script = app.path("leaky_order.py");
    std::fs::write(
        &script,
        r#"PARAMETERS = [{"name": "api_key", "sensitive": True}]

def certificate_request(csr, common_name, args):
    return {"status": "pending", "order_id": "ord-" + args["api_key"]}

def poll(order_id, args):
    raise Exception("polled " + order_id)
"#,
    )
    .expect("script");
    let r = app
        .command()
        .args(["plugin", "check", script.to_str().expect("utf8"), "--sensitive-param-env", "api_key=LEAKY_KEY"])
        .env("LEAKY_KEY", "S3cr3t-ORDER-4242")
        .output()
        .expect("run");
    let out = String::from_utf8_lossy(&r.stdout);
    assert_eq!(r.status.code(), Some(1), "{out}");
    assert!(
        out.contains("FAIL certificate_request")
            && out.contains("returned an order id that holds the value of a sensitive parameter"),
        "{out}"
    );
    assert!(!out.contains("polled") && !out.contains("S3cr3t"), "{out}");
}
