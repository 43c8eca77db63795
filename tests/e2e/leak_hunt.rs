//! Invariant 2, hunted: unique sensitive values go through every command, the server, failing
//! calls included; then every output, log and raw database byte is searched for them.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::helpers::{App, Server, certhost_bin, http};

const ACCOUNT_SECRET: &str = "acct-S3CRET-4f9d21c7e0";
const DYNAMIC_SECRET: &str = "pin-S3CRET-88a1b2c3d4";

#[test]
fn no_sensitive_value_appears_in_any_output_log_or_database_byte() {
    let app = App::new();
    let ca = app.path("ca");
    app.run(&["ca", "init", "--out", ca.to_str().expect("utf8")]).ok();
    let conf = app.path("conf");
    std::fs::create_dir_all(conf.join("profiles")).expect("mkdir");
    let fixtures = crate::python::fixture("");
    std::fs::write(
        conf.join("certhost.toml"),
        format!(
            r#"
[accounts.good]
connector = "{f}/scripted_ca.py"
params.mode = "good"
params.ca_cert = "{ca}/ca.pem"
params.ca_key = "{ca}/ca.key"
params.api_token = {{ sensitive = true, required = true }}

[accounts.leaky]
connector = "{f}/hostile/prints_secret.py"
params.api_key = {{ sensitive = true, required = true }}
"#,
            f = fixtures.display(),
            ca = ca.display()
        ),
    )
    .expect("config");
    let profile = "[params]\nticket_pin = { dynamic = true, sensitive = true, required = true }\n";
    std::fs::write(conf.join("profiles/web.toml"), format!("accounts = [\"good\"]\n{profile}")).expect("profile");
    std::fs::write(conf.join("profiles/leaky.toml"), format!("accounts = [\"leaky\"]\n{profile}")).expect("profile");
    let config = conf.join("certhost.toml").display().to_string();

    let mut transcript = String::new();
    let mut run = |args: &[&str], stdin: Option<&str>| run_into(&mut transcript, &app, &config, args, stdin);
    assert_eq!(run(&["secret", "set", "good", "api_token"], Some(ACCOUNT_SECRET)), Some(0));
    assert_eq!(run(&["secret", "set", "leaky", "api_key"], Some(ACCOUNT_SECRET)), Some(0));
    let pin = format!("ticket_pin={DYNAMIC_SECRET}");
    assert_eq!(
        run(&["issue", "--profile", "web", "--cn", "www.example.com", "--param", &pin, "--json"], None),
        Some(0)
    );
    assert_eq!(
        run(&["issue", "--profile", "leaky", "--cn", "www.example.com", "--param", &pin], None),
        Some(1),
        "the leaky script fails"
    );
    let long_cn = "x".repeat(70);
    assert_eq!(run(&["issue", "--profile", "web", "--cn", &long_cn, "--param", &pin], None), Some(1));
    assert_eq!(
        run(
            &["issue", "--profile", "web", "--cn", "x.example.com", "--param", &format!("nosuch={DYNAMIC_SECRET}")],
            None
        ),
        Some(1)
    );
    assert_eq!(run(&["secret", "set", "good", "mode"], Some(ACCOUNT_SECRET)), Some(1), "not sensitive: refused");
    // local-ca declares `ca_private_key` sensitive: a literal for it is refused, as it would be
    // stored and shown like any plain setting.
    let local_ca = crate::wasm::component("local-ca").display().to_string();
    let literal_key = format!("ca_private_key={ACCOUNT_SECRET}");
    assert_eq!(
        run(&["account", "create", "literal", "--connector", &local_ca, "--param", &literal_key], None),
        Some(1),
        "a literal for a parameter the connector declares sensitive"
    );
    for args in [
        &["list"][..],
        &["list", "--json"],
        &["show", "1"],
        &["show", "1", "--json"],
        &["show", "1", "--pem"],
        &["audit"],
        &["audit", "--json"],
        &["orders", "list"],
        &["orders", "list", "--json"],
        &["orders", "show", "1"],
        &["orders", "show", "2", "--json"],
        &["account", "list"],
        &["account", "list", "--json"],
        &["account", "show", "good"],
        &["account", "show", "leaky", "--json"],
        &["profile", "list"],
        &["profile", "show", "web", "--json"],
        &["account", "test", "leaky"],
    ] {
        run(args, None);
    }
    let check = crate::python::fixture("hostile/prints_secret.py").display().to_string();
    run(&["plugin", "check", &check, "--sensitive-param", &format!("api_key={ACCOUNT_SECRET}")], None);
    assert!(transcript.contains("***"), "redaction markers expected in the transcript");

    // A TOML error beside a literal secret: toml's own message quotes the source line.
    let broken = conf.join("broken.toml");
    std::fs::write(
        &broken,
        format!("[accounts.x]\nconnector = \"/x.py\"\nparams.k = {{ sensitive = true, value = \"{ACCOUNT_SECRET}\", descripton = \"typo\" }}\n"),
    )
    .expect("broken config");
    let out = Command::new(certhost_bin())
        .args(["--config", broken.to_str().expect("utf8"), "account", "list"])
        .env("CERTHOST_DATA_DIR", app.data_dir())
        .env("CERTHOST_MASTER_KEY", &app.master_key)
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(stderr.contains("line 3, column"), "the error says where: {stderr}");
    transcript.push_str(&String::from_utf8_lossy(&out.stdout));
    transcript.push_str(&stderr);

    // The server: every GET, with the server's own log.
    let server = Server::start(app, Some(std::path::Path::new(&config)));
    let token = server.token("hunter", "admin");
    let c = http();
    for path in [
        "/v1/accounts",
        "/v1/accounts/good",
        "/v1/accounts/leaky",
        "/v1/profiles",
        "/v1/profiles/web",
        "/v1/orders",
        "/v1/orders/1",
        "/v1/orders/2",
        "/v1/audit?limit=1000",
        "/v1/certificates",
        "/v1/certificates/1",
        "/readyz",
    ] {
        let body =
            c.get(format!("{}{path}", server.base)).bearer_auth(&token).send().expect("get").text().expect("text");
        transcript.push_str(&body);
    }
    let failed = c
        .post(format!("{}/v1/certificates", server.base))
        .bearer_auth(&token)
        .json(&serde_json::json!({"profile": "leaky", "cn": "a.example.com", "params": {"ticket_pin": DYNAMIC_SECRET}}))
        .send()
        .expect("post");
    assert!(failed.status().is_client_error() || failed.status().is_server_error());
    transcript.push_str(&failed.text().expect("text"));
    // Error paths that carry a secret where secrets go (parameter and secret values; names and
    // ids are identifiers and are echoed on purpose): each problem+json body is collected.
    let base = server.base.clone();
    let bodies: Vec<(reqwest::Method, String, serde_json::Value)> = vec![
        // Wrong types and unknown parameters, with the secret as the value.
        (
            reqwest::Method::POST,
            "/v1/certificates".into(),
            serde_json::json!({"profile": "web", "cn": "a.example.com", "params": {"ticket_pin": 1, "x": DYNAMIC_SECRET}}),
        ),
        (
            reqwest::Method::POST,
            "/v1/certificates".into(),
            serde_json::json!({"profile": "web", "cn": "a.example.com", "params": {"nosuch": DYNAMIC_SECRET}}),
        ),
        (
            reqwest::Method::POST,
            "/v1/certificates".into(),
            serde_json::json!({"profile": "web", "cn": 7, "sans": [DYNAMIC_SECRET]}),
        ),
        (reqwest::Method::POST, "/v1/certificates/1/revoke".into(), serde_json::json!({"reason": DYNAMIC_SECRET})),
        // A literal secret in a definition is refused without being echoed.
        (
            reqwest::Method::POST,
            "/v1/accounts".into(),
            serde_json::json!({"name": "lit", "connector": "/x.py", "params": {"k": {"sensitive": true, "value": ACCOUNT_SECRET}}}),
        ),
        (
            reqwest::Method::POST,
            "/v1/accounts".into(),
            serde_json::json!({"name": "lit", "connector": "/x.py", "timeout_seconds": ACCOUNT_SECRET}),
        ),
        (
            reqwest::Method::PUT,
            "/v1/profiles/web".into(),
            serde_json::json!({"accounts": ["good"], "params": {"p": {"sensitive": true, "value": ACCOUNT_SECRET}}}),
        ),
        (
            reqwest::Method::POST,
            "/v1/profiles".into(),
            serde_json::json!({"name": "p12", "accounts": ["good"], "deploy": [{"pkcs12": "/tmp/b.p12", "pkcs12_password": ACCOUNT_SECRET}]}),
        ),
        (
            reqwest::Method::POST,
            "/v1/accounts".into(),
            serde_json::json!({"name": "literal", "connector": crate::wasm::component("local-ca"), "params": {"ca_private_key": ACCOUNT_SECRET}}),
        ),
        // Setting secrets: on a non-sensitive parameter, an unknown one, and for real.
        (
            reqwest::Method::PUT,
            "/v1/accounts/good/params/mode/secret".into(),
            serde_json::json!({"value": ACCOUNT_SECRET}),
        ),
        (
            reqwest::Method::PUT,
            "/v1/accounts/good/params/nosuch/secret".into(),
            serde_json::json!({"value": ACCOUNT_SECRET}),
        ),
        (
            reqwest::Method::PUT,
            "/v1/accounts/good/params/api_token/secret".into(),
            serde_json::json!({"value": ACCOUNT_SECRET}),
        ),
        (
            reqwest::Method::PUT,
            "/v1/accounts/good/params/api_token/secret".into(),
            serde_json::json!({"value": 5, "other": ACCOUNT_SECRET}),
        ),
    ];
    for (method, path, body) in bodies {
        let resp = c.request(method, format!("{base}{path}")).bearer_auth(&token).json(&body).send().expect("send");
        assert!(!resp.status().is_server_error() || path.contains("certificates"), "{path}: {}", resp.status());
        transcript.push_str(&resp.text().expect("text"));
    }
    // Every GET again, after the secret writes, including the OpenAPI document and metrics.
    for path in [
        "/v1/accounts",
        "/v1/accounts/good",
        "/v1/profiles/web",
        "/v1/audit?limit=1000",
        "/v1/orders",
        "/metrics",
        "/v1/openapi.json",
        "/v1/tokens",
    ] {
        transcript
            .push_str(&c.get(format!("{base}{path}")).bearer_auth(&token).send().expect("get").text().expect("text"));
    }
    // The same mistake in a profile file, picked up by a reload: the failure goes to the log.
    let mut web = std::fs::OpenOptions::new().append(true).open(conf.join("profiles/web.toml")).expect("open");
    writeln!(web, "typo = {{ sensitive = true, value = \"{ACCOUNT_SECRET}\", descripton = \"t\" }}").expect("append");
    crate::helpers::sh("kill", &["-HUP", &server.child.id().to_string()]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !server.log().contains("configuration reload failed") {
        assert!(std::time::Instant::now() < deadline, "no reload failure logged: {}", server.log());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    transcript.push_str(&server.log());

    for secret in [ACCOUNT_SECRET, DYNAMIC_SECRET] {
        if let Some(i) = transcript.find(secret) {
            panic!(
                "{secret} leaked into output or logs: ...{}...",
                &transcript[i.saturating_sub(300)..(i + 100).min(transcript.len())]
            );
        }
        // Every file under the data directory: the database, its WAL, the component cache.
        let mut dirs = vec![server.app.data_dir()];
        let mut files = Vec::new();
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).expect("data dir") {
                let path = entry.expect("entry").path();
                if path.is_dir() { dirs.push(path) } else { files.push(path) }
            }
        }
        for path in files {
            let bytes = std::fs::read(&path).expect("read");
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{secret} found in {}",
                path.display()
            );
        }
    }
}

/// A sensitive value with every character its encoded forms treat specially: `+`, `/`, `=`
/// (percent-encoding), `\`, quotes (repr, JSON) and non-ASCII letters (JSON's `\u00e4`).
const ENCODED_SECRET: &str = "q8Zr+Tk/3vXw==s3cr\\et-P\u{e4}ssw\u{f6}rd'\"";

/// Regression: only the exact value was redacted, so a script leaked its password through
/// `requests` (percent-encoded in the URL of a connection error), `"%r" % (args,)` and
/// `json.dumps(args)` into the log, the CLI's error, the order and the audit event.
#[test]
fn no_encoded_form_of_a_sensitive_value_appears_in_any_output_log_or_database_byte() {
    let app = App::new();
    let conf = app.path("conf");
    std::fs::create_dir_all(conf.join("profiles")).expect("mkdir");
    let fixture = crate::python::fixture("hostile/leaks_encoded_secret.py");
    std::fs::write(
        conf.join("certhost.toml"),
        format!(
            "[accounts.encoded]\nconnector = \"{}\"\nparams.password = {{ sensitive = true, required = true }}\n",
            fixture.display()
        ),
    )
    .expect("config");
    std::fs::write(
        conf.join("profiles/encoded.toml"),
        "accounts = [\"encoded\"]\n[params]\nhow = { dynamic = true, required = true }\n",
    )
    .expect("profile");
    let config = conf.join("certhost.toml").display().to_string();
    let mut transcript = String::new();
    let mut run = |args: &[&str], stdin: Option<&str>| run_into(&mut transcript, &app, &config, args, stdin);
    assert_eq!(run(&["secret", "set", "encoded", "password"], Some(ENCODED_SECRET)), Some(0));
    for how in ["requests", "url", "repr", "json", "basic"] {
        let how = format!("how={how}");
        assert_eq!(run(&["issue", "--profile", "encoded", "--cn", "www.example.com", "--param", &how], None), Some(1));
    }
    for args in
        [&["orders", "show", "1", "--json"][..], &["orders", "show", "2"], &["orders", "list"], &["audit", "--json"]]
    {
        run(args, None);
    }
    let check = fixture.display().to_string();
    let sensitive = format!("password={ENCODED_SECRET}");
    run(&["plugin", "check", &check, "--sensitive-param", &sensitive, "--param", "how=json"], None);
    assert!(
        transcript.contains("CA unreachable")
            && transcript.contains("raised RuntimeError: {'how': 'repr', 'password': '***'}"),
        "{transcript}"
    );
    assert!(transcript.contains("query: apikey=***"), "{transcript}");
    // Walkthrough of stop 46: a URL built by hand, re-quoted by `requests` its own way.
    assert!(transcript.contains("/x?token=***") && transcript.contains("token: ***"), "{transcript}");
    // "certhost:" is 9 bytes: its base64 stays, the value's is replaced.
    assert!(transcript.contains("Authorization: Basic Y2VydGhvc3Q6***"), "{transcript}");

    // Each form as the interpreter certhost is built against writes it (HTTP Basic's base64,
    // hex and a bytes repr too: those were shown whole before).
    let script = r#"
import base64, json, re, sys, urllib.parse as u
v = sys.stdin.read()
qs = [u.quote(v), u.quote(v, safe=""), u.quote_plus(v)]
qs += [re.sub("%[0-9A-F]{2}", lambda m: m.group(0).lower(), q) for q in qs]
b = v.encode()
qs += [base64.b64encode(b"certhost:" + b).decode(), b.hex(), b.hex().upper(), repr(b)[2:-1]]
import requests.utils
qs += [requests.utils.requote_uri(v), "".join(c if ord(c) < 128 else u.quote(c).lower() for c in v)]
print(json.dumps([v, repr(v)[1:-1], json.dumps(v)[1:-1], json.dumps(v, ensure_ascii=False)[1:-1]] + qs))
"#;
    let forms = python_forms(script, ENCODED_SECRET);
    for form in &forms {
        if let Some(i) = transcript.find(form.as_str()) {
            let start = (0..=i.saturating_sub(300)).rev().find(|j| transcript.is_char_boundary(*j)).unwrap_or(0);
            panic!("{form} leaked: ...{}...", &transcript[start..i + form.len()]);
        }
        for entry in std::fs::read_dir(app.data_dir()).expect("data dir") {
            let path = entry.expect("entry").path();
            let bytes = std::fs::read(&path).expect("read");
            assert!(!bytes.windows(form.len()).any(|w| w == form.as_bytes()), "{form} found in {}", path.display());
        }
    }
}

/// The JSON list of strings `script` prints when given `secret` on standard input, run by the
/// interpreter certhost is built against: each form as Python itself writes it.
fn python_forms(script: &str, secret: &str) -> Vec<String> {
    let mut python = Command::new(env!("CERTHOST_PYTHON_EXECUTABLE"))
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python");
    python.stdin.take().expect("stdin").write_all(secret.as_bytes()).expect("write");
    serde_json::from_slice(&python.wait_with_output().expect("python").stdout).expect("forms")
}

/// Runs `certhost --config CONFIG -vv ARGS` with `stdin`, appending its stdout and stderr to
/// `transcript` (where the hunt looks for secrets); returns the exit code.
fn run_into(transcript: &mut String, app: &App, config: &str, args: &[&str], stdin: Option<&str>) -> Option<i32> {
    let mut cmd = Command::new(certhost_bin());
    // Every library's debug lines too, as RUST_LOG=debug gives them (-vv alone is certhost's).
    cmd.args(["--config", config, "-vv"])
        .args(args)
        .env("RUST_LOG", "debug")
        .env("CERTHOST_DATA_DIR", app.data_dir())
        .env("CERTHOST_MASTER_KEY", &app.master_key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    if let Some(input) = stdin {
        child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write");
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("wait");
    transcript.push_str(&String::from_utf8_lossy(&out.stdout));
    transcript.push_str(&String::from_utf8_lossy(&out.stderr));
    out.status.code()
}

/// Regression: an account in `certhost.toml` could give a literal for a parameter its connector
/// declares sensitive (local-ca's `ca_private_key`); the CLI and the API refused that, the file
/// did not, so the value was stored unsealed and shown to every role by `account show` and
/// `GET /v1/accounts`. A profile's plain value (or plain dynamic parameter, recorded with each
/// order) for such a parameter was accepted everywhere. Now each is refused wherever it comes
/// from: a command's load, serve's start-up and reload, `profile create`, the API. And such a
/// parameter given by `{ file }` reference, which is fine, was not redacted from the script's
/// output and errors; it is now, as if it were defined sensitive.
#[test]
fn a_plain_value_for_what_a_connector_declares_sensitive_is_refused_from_files_and_profiles() {
    let app = App::new();
    let (config, ca) = crate::helpers::local_ca_lab(&app, "");
    let conf = config.parent().expect("conf dir").to_path_buf();
    let good = std::fs::read_to_string(&config).expect("config");
    let local_ca = crate::wasm::component("local-ca").display().to_string();
    // `bare` leaves ca_private_key to the profiles that use it.
    let bare = format!(
        "\n[accounts.bare]\nconnector = \"{local_ca}\"\nparams.ca_certificate = {{ file = \"{}/ca.pem\" }}\n",
        ca.display()
    );
    let config_arg = config.display().to_string();
    let mut transcript = String::new();
    let mut run = |args: &[&str]| run_into(&mut transcript, &app, &config_arg, args, None);

    std::fs::write(&config, format!("{good}{bare}params.ca_private_key = \"{ACCOUNT_SECRET}\"\n")).expect("config");
    assert_eq!(run(&["account", "list"]), Some(1), "a literal in the file");
    std::fs::write(&config, format!("{good}{bare}")).expect("config");
    let plain_profile = conf.join("profiles/plain.toml");
    std::fs::write(&plain_profile, format!("accounts = [\"bare\"]\n[params]\nca_private_key = \"{ACCOUNT_SECRET}\"\n"))
        .expect("profile");
    assert_eq!(run(&["account", "list"]), Some(1), "a literal in a profile file");
    std::fs::write(&plain_profile, "accounts = [\"bare\"]\n[params]\nca_private_key = { dynamic = true }\n")
        .expect("profile");
    assert_eq!(run(&["account", "list"]), Some(1), "a plain dynamic parameter in a profile file");
    std::fs::remove_file(&plain_profile).expect("rm");
    assert_eq!(run(&["account", "list"]), Some(0), "the lab itself loads");
    // Given by reference, a declared-sensitive value must be marked sensitive too (review of
    // stop 31: an unmarked `{ env }` one reached deploy hooks, which echoed it into the audit
    // log); marked, it is redacted from what the script prints and raises.
    let password = app.path("password.txt");
    std::fs::write(&password, format!("{ACCOUNT_SECRET}\n")).expect("password file");
    let leaky = crate::python::fixture("hostile/leaks_encoded_secret.py");
    let byref = |marked: &str| {
        format!(
            "{good}{bare}\n[accounts.byref]\nconnector = \"{}\"\nparams.password = {{ {marked}value = {{ file = \"{}\" }} }}\nparams.how = \"repr\"\n",
            leaky.display(),
            password.display()
        )
    };
    std::fs::write(&config, byref("")).expect("config");
    std::fs::write(conf.join("profiles/byref.toml"), "accounts = [\"byref\"]\n").expect("profile");
    assert_eq!(run(&["account", "list"]), Some(1), "an unmarked reference");
    std::fs::write(&config, byref("sensitive = true, ")).expect("config");
    assert_eq!(run(&["issue", "--profile", "byref", "--cn", "www.example.com"]), Some(1), "the script raises");
    std::fs::write(&config, format!("{good}{bare}")).expect("config");
    std::fs::remove_file(conf.join("profiles/byref.toml")).expect("rm");

    let cli_profile = app.path("cli-profile.toml");
    std::fs::write(&cli_profile, format!("accounts = [\"bare\"]\n[params]\nca_private_key = \"{ACCOUNT_SECRET}\"\n"))
        .expect("profile");
    let cli_profile = cli_profile.display().to_string();
    assert_eq!(run(&["profile", "create", "plain", "--file", &cli_profile]), Some(1), "profile create");
    assert!(transcript.contains("'password': '***'"), "the script's error, redacted: {transcript}");
    assert!(
        transcript.contains("parameter password of account byref is sensitive (its connector declares it so)"),
        "an unmarked reference is refused: {transcript}"
    );
    assert!(
        transcript.matches("parameter ca_private_key of ").count() >= 4
            && transcript.contains("of account bare is sensitive (its connector declares it so)")
            && transcript.contains("of profile plain is sensitive (its connector declares it so)"),
        "each refusal names the parameter and its owner: {transcript}"
    );

    // serve: the same mistake arriving by a reload is refused, the previous configuration stays.
    let server = Server::start(app, Some(&config));
    let token = server.token("hunter", "admin");
    std::fs::write(&config, format!("{good}{bare}params.ca_private_key = \"{ACCOUNT_SECRET}\"\n")).expect("config");
    crate::helpers::sh("kill", &["-HUP", &server.child.id().to_string()]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !server.log().contains("configuration reload failed") {
        assert!(std::time::Instant::now() < deadline, "no reload failure logged: {}", server.log());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(server.log().contains("of account bare is sensitive"), "{}", server.log());
    let c = http();
    let api_profile = c
        .post(format!("{}/v1/profiles", server.base))
        .bearer_auth(&token)
        .json(&serde_json::json!({"name": "plain", "accounts": ["bare"], "params": {"ca_private_key": ACCOUNT_SECRET}}))
        .send()
        .expect("post");
    assert_eq!(api_profile.status(), 422);
    transcript.push_str(&api_profile.text().expect("text"));
    let accounts = c.get(format!("{}/v1/accounts/bare", server.base)).bearer_auth(&token).send().expect("get");
    let accounts = accounts.text().expect("text");
    assert!(accounts.contains("\"ca_certificate\"") && !accounts.contains("ca_private_key"), "{accounts}");
    transcript.push_str(&accounts);
    transcript.push_str(&server.log());

    if let Some(i) = transcript.find(ACCOUNT_SECRET) {
        panic!("leaked: ...{}...", &transcript[i.saturating_sub(300)..(i + 100).min(transcript.len())]);
    }
    for entry in std::fs::read_dir(server.app.data_dir()).expect("data dir") {
        let path = entry.expect("entry").path();
        if path.is_file() {
            let bytes = std::fs::read(&path).expect("read");
            let found = bytes.windows(ACCOUNT_SECRET.len()).any(|w| w == ACCOUNT_SECRET.as_bytes());
            assert!(!found, "the value is in {}", path.display());
        }
    }
}

/// Regression (review of stop 31): a parameter not marked sensitive may still be read from
/// any file (or variable) the host can read; a connector's error quoting it ("Invalid URL
/// '-----BEGIN PRIVATE KEY-----…'") put another account's CA key in `last_test.message`, which
/// every role reads, and in the audit log. A value read from a reference is now redacted like
/// a sensitive one.
#[test]
fn a_file_read_into_a_plain_parameter_never_comes_back_in_an_error() {
    let app = App::new();
    let ca = app.path("ca");
    app.run(&["ca", "init", "--out", ca.to_str().expect("utf8")]).ok();
    let key = std::fs::read_to_string(ca.join("ca.key")).expect("key");
    let body = key.lines().nth(1).expect("a line of base64").to_owned();
    let config = app.path("certhost.toml");
    let cfssl = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/cfssl.py");
    std::fs::write(
        &config,
        format!(
            "[accounts.reader]\nconnector = \"{}\"\nparams.url = {{ file = \"{}/ca.key\" }}\n",
            cfssl.display(),
            ca.display()
        ),
    )
    .expect("config");
    let config_arg = config.display().to_string();
    let mut transcript = String::new();
    run_into(&mut transcript, &app, &config_arg, &["account", "test", "reader"], None);
    run_into(&mut transcript, &app, &config_arg, &["account", "show", "reader", "--json"], None);
    run_into(&mut transcript, &app, &config_arg, &["audit", "--json"], None);
    assert!(transcript.contains("Invalid URL") || transcript.contains("***"), "the test ran: {transcript}");
    assert!(!transcript.contains(&body) && !transcript.contains("BEGIN PRIVATE KEY"), "{transcript}");
}

/// A secret with the characters HTML, XML and Go's JSON escape (`&<>"'/`), as passwords and
/// base64 API keys hold them.
const MARKUP_SECRET: &str = "Mk-S3cr3t-9f2&<x>/\"q'";

/// Regression (review of stop 33): a CA's HTML error page, XML, and JSON as Go and PHP write
/// it echoed a secret in forms no rule covered, into the order, the audit log and the API; an
/// order id `list_certificates` made of a secret was printed by `import-from-account` as it
/// was; a deploy hook's output kept what a `{ file }` secret held; and a one-letter secret,
/// replaced inside every word, named itself (`l***ak: rais***d`).
#[test]
fn markup_echoes_listed_order_ids_hook_output_and_short_secrets_leak_nothing() {
    let app = App::new();
    let (config, _ca) = crate::helpers::local_ca_lab(&app, "");
    let conf = config.parent().expect("conf dir").to_path_buf();
    let echo = crate::python::fixture("hostile/echoes_secret_like_a_ca.py");
    let token_file = app.path("ca-token.txt");
    const FILE_SECRET: &str = "FileTok-Canary-6262";
    std::fs::write(&token_file, format!("{FILE_SECRET}\n")).expect("token file");
    let mut text = std::fs::read_to_string(&config).expect("config");
    text.push_str(&format!(
        "\n[accounts.echo]\nconnector = \"{e}\"\nparams.password = {{ sensitive = true, required = true }}\n\
         \n[accounts.short]\nconnector = \"{e}\"\nparams.password = {{ sensitive = true, required = true }}\n\
         \n[accounts.filed]\nconnector = \"{e}\"\nparams.password = {{ sensitive = true, value = {{ file = \"{t}\" }} }}\n",
        e = echo.display(),
        t = token_file.display()
    ));
    std::fs::write(&config, text).expect("config");
    let how = "[params]\nhow = { dynamic = true, required = true }\n";
    std::fs::write(conf.join("profiles/echo.toml"), format!("accounts = [\"echo\"]\n{how}")).expect("profile");
    std::fs::write(conf.join("profiles/short.toml"), format!("accounts = [\"short\"]\n{how}")).expect("profile");
    // A hook that shows what it runs and reads the file the `filed` account's secret is in.
    let hooked = format!(
        "accounts = [\"lab\"]\n[[deploy]]\ncert = \"{out}/cert.pem\"\npost_hook = \"set -x; T=$(cat {t}); echo token=$T\"\n",
        out = app.path("deployed").display(),
        t = token_file.display()
    );
    std::fs::write(conf.join("profiles/hooked.toml"), hooked).expect("profile");
    let config_arg = config.display().to_string();
    let mut transcript = String::new();
    let mut run = |args: &[&str], stdin: Option<&str>| run_into(&mut transcript, &app, &config_arg, args, stdin);
    assert_eq!(run(&["secret", "set", "echo", "password"], Some(MARKUP_SECRET)), Some(0));
    assert_eq!(run(&["secret", "set", "short", "password"], Some("e")), Some(0));
    for how in ["html", "xml", "upper"] {
        let how = format!("how={how}");
        assert_eq!(run(&["issue", "--profile", "echo", "--cn", "www.example.com", "--param", &how], None), Some(1));
    }
    // A dynamic parameter can come from a file or standard input, off the command line.
    let how_file = conf.join("how.txt");
    std::fs::write(&how_file, "gojson\n").expect("how file");
    let from_file = format!("how={}", how_file.display());
    let echo_issue = ["issue", "--profile", "echo", "--cn", "www.example.com", "--param-file"];
    assert_eq!(run(&[&echo_issue[..], &[from_file.as_str()]].concat(), None), Some(1));
    assert_eq!(run(&[&echo_issue[..], &["how=-"]].concat(), Some("phpjson\n")), Some(1));
    assert_eq!(
        run(&["issue", "--profile", "short", "--cn", "www.example.com", "--param", "how=release"], None),
        Some(1)
    );
    assert_eq!(run(&["import-from-account", "echo"], None), Some(1), "the listed item is no certificate");
    assert_eq!(run(&["import-from-account", "filed", "--json"], None), Some(1));
    assert_eq!(run(&["issue", "--profile", "hooked", "--cn", "www.example.com"], None), Some(0));
    for args in [&["orders", "list", "--json"][..], &["audit", "--json"], &["account", "show", "echo", "--json"]] {
        run(args, None);
    }
    let server = Server::start(app, Some(&config));
    let token = server.token("hunter", "admin");
    for path in ["/v1/orders", "/v1/audit?limit=1000"] {
        let c = http();
        transcript.push_str(
            &c.get(format!("{}{path}", server.base)).bearer_auth(&token).send().expect("get").text().expect("text"),
        );
    }
    transcript.push_str(&server.log());

    // The echoes were made and redacted; the short secret's neighbours are whole words.
    assert!(transcript.contains("<html><p>invalid key ***</p></html>"), "{transcript}");
    assert!(transcript.contains(r#"{"error": "invalid api key", "key": "***"}"#), "from a file: {transcript}");
    assert!(transcript.contains(r#"{"key": "***"}"#), "from standard input: {transcript}");
    assert!(transcript.contains("unknown mode release: ***"), "{transcript}");
    assert!(transcript.contains("CA order https://ca.example/orders/1?key=***"), "{transcript}");
    assert!(transcript.contains("token=***"), "the hook ran: {transcript}");
    let script = r#"
import html, json, sys
from xml.sax.saxutils import escape, quoteattr
v = sys.stdin.read()
go = json.dumps(v)[1:-1].replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
print(json.dumps([v, html.escape(v), escape(v), quoteattr(v)[1:-1], go, json.dumps(v)[1:-1].replace("/", "\\/"), v.upper()]))
"#;
    let mut forms = python_forms(script, MARKUP_SECRET);
    forms.push(FILE_SECRET.to_owned());
    for form in &forms {
        if let Some(i) = transcript.find(form.as_str()) {
            let start = (0..=i.saturating_sub(300)).rev().find(|j| transcript.is_char_boundary(*j)).unwrap_or(0);
            panic!("{form} leaked: ...{}...", &transcript[start..i + form.len()]);
        }
    }
    for entry in std::fs::read_dir(server.app.data_dir()).expect("data dir") {
        let path = entry.expect("entry").path();
        if path.is_file() {
            let bytes = std::fs::read(&path).expect("read");
            for form in &forms {
                assert!(!bytes.windows(form.len()).any(|w| w == form.as_bytes()), "{form} in {}", path.display());
            }
        }
    }
}

/// Regression (secrets review of stop 40): an account's connector cache was one for all its
/// profiles, so what a call cached under one profile's secret — a token fetched with its
/// credentials, or the secret itself — was read by the next profile's calls: a requester of
/// profile `pb` saw profile `pa`'s secret in a rejection. Each profile with secrets of its own
/// now has a scope of its own; profiles without share the account's, as before, and a later
/// call of the same profile (a poll, a renewal) finds what its issuance cached.
#[test]
fn a_profiles_cached_secret_is_not_another_profiles() {
    const PA_SECRET: &str = "pa-S3CRET-51505150";
    let app = App::new();
    let conf = app.path("conf");
    std::fs::create_dir_all(conf.join("profiles")).expect("mkdir");
    let script = conf.join("cache_echo.py");
    std::fs::write(
        &script,
        r#"import certhost

def certificate_request(csr, common_name, args):
    if args["mode"] == "set":
        certhost.cache_set("k", args.get("ptok", "none of its own"), 0)
        raise Exception("stored")
    raise Exception("got " + str(certhost.cache_get("k")))
"#,
    )
    .expect("script");
    std::fs::write(conf.join("certhost.toml"), format!("[accounts.shared]\nconnector = \"{}\"\n", script.display()))
        .expect("config");
    let mode = "mode = { dynamic = true, required = true }\n";
    let own = "ptok = { sensitive = true, required = true }\n";
    for (name, params) in [("pa", format!("{mode}{own}")), ("pb", format!("{mode}{own}")), ("pc", mode.to_owned())] {
        std::fs::write(
            conf.join(format!("profiles/{name}.toml")),
            format!("accounts = [\"shared\"]\n[params]\n{params}"),
        )
        .expect("profile");
    }
    let config = conf.join("certhost.toml").display().to_string();
    let mut transcript = String::new();
    let mut run = |args: &[&str], stdin: Option<&str>| run_into(&mut transcript, &app, &config, args, stdin);
    assert_eq!(run(&["secret", "set", "--profile", "pa", "ptok"], Some(PA_SECRET)), Some(0));
    assert_eq!(run(&["secret", "set", "--profile", "pb", "ptok"], Some("pb-other-secret-2468")), Some(0));
    let issue = |profile: &str, mode: &str| {
        let r = app.run(&[
            "--config",
            &config,
            "issue",
            "--profile",
            profile,
            "--cn",
            "www.example.com",
            "--param",
            &format!("mode={mode}"),
        ]);
        format!("{}{}", r.stdout, r.stderr)
    };
    assert!(issue("pa", "set").contains("stored"));
    assert!(issue("pc", "set").contains("stored"));
    let pb = issue("pb", "get");
    assert!(pb.contains("got None"), "profile pb sees nothing of pa's or the account's: {pb}");
    let pc = issue("pc", "get");
    assert!(pc.contains("got none of its own"), "profile pc has the account's scope: {pc}");
    let pa = issue("pa", "get");
    assert!(pa.contains("got ***"), "profile pa finds its own entry (redacted as its secret): {pa}");
    let orders = app.run(&["orders", "list", "--json"]);
    assert!(!orders.stdout.contains(PA_SECRET) && !transcript.contains(PA_SECRET), "{}", orders.stdout);
}

/// Regression (author review of stop 40): a script updated to declare a parameter sensitive
/// that its account gives as a plain value went on being called with it — the value shown to
/// every role by `account show` — until the account's definition was next edited. Every call
/// after the update refuses it, as `account create` would.
#[test]
fn a_connector_updated_to_declare_a_plain_value_sensitive_is_not_called_with_it() {
    let app = App::new();
    let conf = app.path("conf");
    std::fs::create_dir_all(conf.join("profiles")).expect("mkdir");
    let script = conf.join("ca.py");
    let body =
        "\ndef certificate_request(csr, common_name, args):\n    raise Exception('called with ' + args['url'])\n";
    std::fs::write(&script, format!("PARAMETERS = [{{\"name\": \"url\"}}]\n{body}")).expect("script");
    std::fs::write(
        conf.join("certhost.toml"),
        format!("[accounts.ca]\nconnector = \"{}\"\nparams.url = \"http://ca.internal\"\n", script.display()),
    )
    .expect("config");
    std::fs::write(conf.join("profiles/web.toml"), "accounts = [\"ca\"]\n").expect("profile");
    let config = conf.join("certhost.toml").display().to_string();
    let issue = || app.run(&["--config", &config, "issue", "--profile", "web", "--cn", "www.example.com"]);
    let before = issue();
    assert!(before.stderr.contains("called with http://ca.internal"), "{}", before.stderr);
    // The script's author now calls it sensitive; the file changes, the account does not.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    std::fs::write(&script, format!("PARAMETERS = [{{\"name\": \"url\", \"sensitive\": True}}]\n{body}"))
        .expect("script");
    let after = issue();
    assert!(
        after.stderr.contains("parameter url of account ca is sensitive (its connector declares it so)"),
        "{}",
        after.stderr
    );
    assert!(!after.stderr.contains("called with"), "the connector was not called: {}", after.stderr);
}

/// The same for a profile's plain value: a connector updated to declare sensitive a
/// parameter a profile gives in the clear (a static value, or a dynamic one each request
/// gives) is not called with it, whatever the profile file said when it was last checked
/// (left alone in stop 41, done in stop 42).
#[test]
fn a_connector_updated_to_declare_a_profiles_plain_value_sensitive_is_not_called_with_it() {
    let app = App::new();
    let conf = app.path("conf");
    std::fs::create_dir_all(conf.join("profiles")).expect("mkdir");
    let script = conf.join("ca.py");
    let body = "\ndef certificate_request(csr, common_name, args):\n    raise Exception('called with ' + args['team'] + '/' + args['ticket'])\n";
    std::fs::write(&script, format!("PARAMETERS = [{{\"name\": \"team\"}}, {{\"name\": \"ticket\"}}]\n{body}"))
        .expect("script");
    std::fs::write(conf.join("certhost.toml"), format!("[accounts.ca]\nconnector = \"{}\"\n", script.display()))
        .expect("config");
    std::fs::write(
        conf.join("profiles/web.toml"),
        "accounts = [\"ca\"]\n[params]\nteam = \"blue\"\nticket = { dynamic = true }\n",
    )
    .expect("profile");
    let config = conf.join("certhost.toml").display().to_string();
    let issue = || {
        app.run(&[
            "--config",
            &config,
            "issue",
            "--profile",
            "web",
            "--cn",
            "www.example.com",
            "--param",
            "ticket=T-42",
        ])
    };
    let before = issue();
    assert!(before.stderr.contains("called with blue/T-42"), "{}", before.stderr);
    for declared in ["team", "ticket"] {
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let parameters = ["team", "ticket"].map(|n| {
            let sensitive = if n == declared { ", \"sensitive\": True" } else { "" };
            format!("{{\"name\": \"{n}\"{sensitive}}}")
        });
        std::fs::write(&script, format!("PARAMETERS = [{}]\n{body}", parameters.join(", "))).expect("script");
        let after = issue();
        assert!(
            after
                .stderr
                .contains(&format!("parameter {declared} of profile web is sensitive (its connector declares it so)")),
            "{declared}: {}",
            after.stderr
        );
        assert!(!after.stderr.contains("called with"), "{declared}: the connector was not called: {}", after.stderr);
    }
}

/// A profile's later calls for an order — the poll of one left pending — see what its
/// issuance cached in the profile's scope (diff review of stop 40: untested).
#[test]
fn a_poll_finds_what_its_issuance_cached_in_the_profiles_scope() {
    let app = App::new();
    let conf = app.path("conf");
    std::fs::create_dir_all(conf.join("profiles")).expect("mkdir");
    let script = conf.join("pending_ca.py");
    std::fs::write(
        &script,
        r#"import certhost

def certificate_request(csr, common_name, args):
    certhost.cache_set("order-7", "csr of order 7", 0)
    return {"status": "pending", "order_id": "7", "retry_after": 5}

def poll(order_id, args):
    found = certhost.cache_get("order-" + order_id)
    return {"status": "rejected", "reason": "poll found: " + str(found)}
"#,
    )
    .expect("script");
    std::fs::write(conf.join("certhost.toml"), format!("[accounts.ca]\nconnector = \"{}\"\n", script.display()))
        .expect("config");
    std::fs::write(
        conf.join("profiles/own.toml"),
        "accounts = [\"ca\"]\n[params]\nptok = { sensitive = true, required = true }\n",
    )
    .expect("profile");
    let config = conf.join("certhost.toml").display().to_string();
    let mut transcript = String::new();
    assert_eq!(
        run_into(&mut transcript, &app, &config, &["secret", "set", "--profile", "own", "ptok"], Some("own-S3CRET-1")),
        Some(0)
    );
    let issued = app.run(&["--config", &config, "issue", "--profile", "own", "--cn", "www.example.com"]);
    assert!(issued.stdout.contains("pending"), "{}{}", issued.stdout, issued.stderr);
    let polled = app.run(&["--config", &config, "orders", "poll", "1"]);
    let text = format!("{}{}", polled.stdout, polled.stderr);
    assert!(text.contains("poll found: csr of order 7"), "{text}");
}

/// Regression (red-team walkthrough of stop 48): a script cached one requester's sensitive
/// dynamic value (`certhost.cache_set("last_pin", pin)`), and the next request's call read it
/// back into its error — shown to that requester, stored in its order and the audit log —
/// since that call's redaction knew only its own PIN. A call now caches nothing holding a
/// sensitive value its request gave.
#[test]
fn one_requests_sensitive_value_is_not_cached_for_the_next_request() {
    let app = App::new();
    let script = app.path("pins.py");
    std::fs::write(
        &script,
        "import certhost\n\n\ndef certificate_request(csr, common_name, args_dict):\n    \
         if args_dict[\"op\"] == \"put\":\n        certhost.cache_set(\"last_pin\", \"pin \" + args_dict[\"pin\"], 0)\n        \
         raise Exception(\"stored\")\n    raise Exception(\"cached value: %s\" % certhost.cache_get(\"last_pin\"))\n",
    )
    .expect("script");
    let conf = app.path("conf");
    std::fs::create_dir_all(conf.join("profiles")).expect("mkdir");
    let config = conf.join("certhost.toml");
    std::fs::write(&config, format!("[accounts.pins]\nconnector = \"{}\"\n", script.display())).expect("config");
    std::fs::write(
        conf.join("profiles/p.toml"),
        "accounts = [\"pins\"]\n[params]\npin = { dynamic = true, sensitive = true }\nop = { dynamic = true }\n",
    )
    .expect("profile");
    let config_arg = config.display().to_string();
    let mut transcript = String::new();
    let issue = |transcript: &mut String, op: &str, pin: &str| {
        let params = [format!("op={op}"), format!("pin={pin}")];
        let args = ["issue", "--profile", "p", "--cn", "www.example.com", "--param", &params[0], "--param", &params[1]];
        run_into(transcript, &app, &config_arg, &args, None)
    };
    issue(&mut transcript, "put", DYNAMIC_SECRET);
    let mut second = String::new();
    issue(&mut second, "get", "pin-of-another-requester-0000");
    assert!(second.contains("cached value: None"), "the second call ran and found nothing: {second}");
    transcript.push_str(&second);
    run_into(&mut transcript, &app, &config_arg, &["orders", "list", "--json"], None);
    run_into(&mut transcript, &app, &config_arg, &["audit", "--json"], None);
    assert!(transcript.contains("certhost.cache_set ignored"), "the refusal is logged: {transcript}");
    assert!(!transcript.contains(DYNAMIC_SECRET), "{transcript}");
}
