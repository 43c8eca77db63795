//! The ACME connector (`plugins/dist/acme.wasm`) against Debian's `pebble`, started by each
//! test on free loopback ports with a TLS certificate for 127.0.0.1 made here with openssl.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::helpers::{App, Server, free_port, http, sh};

/// A running pebble; killed on drop.
pub struct Pebble {
    pub dir: PathBuf,
    pub directory_url: String,
    pub origin: String,
    pub management: String,
    /// The self-signed certificate of pebble's HTTPS listeners (trust it as an extra CA).
    pub tls_root: PathBuf,
    child: std::process::Child,
    always_valid: bool,
    /// (ACME listener, management listener).
    ports: (u16, u16),
    va_sleeps: bool,
}

/// The EAB key id and MAC key (base64url) configured when binding is required.
pub const EAB_KID: &str = "kid-1";
pub const EAB_KEY: &str = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";

impl Pebble {
    /// Starts pebble. `always_valid` skips challenge validation; `http_port` is where its VA
    /// fetches http-01 answers; `eab` requires external account binding.
    pub fn start(dir: &Path, always_valid: bool, http_port: u16, eab: bool) -> Self {
        Self::start_with(dir, always_valid, http_port, eab, false)
    }

    /// [`Pebble::start`]; with `va_sleeps`, its VA waits a random 0–15 s before it validates,
    /// as a real CA's takes its time.
    pub fn start_with(dir: &Path, always_valid: bool, http_port: u16, eab: bool, va_sleeps: bool) -> Self {
        let (cert, key) = crate::helpers::localhost_tls(dir);
        let port = free_port();
        let mport = free_port();
        let mut config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{port}"),
            "managementListenAddress": format!("127.0.0.1:{mport}"),
            "certificate": cert, "privateKey": key,
            "httpPort": http_port, "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": eab,
            "retryAfter": {"authz": 1, "order": 1},
        }});
        if eab {
            config["pebble"]["externalAccountMACKeys"] = serde_json::json!({ EAB_KID: EAB_KEY });
        }
        std::fs::write(dir.join("pebble.json"), config.to_string()).expect("config");
        let origin = format!("https://127.0.0.1:{port}");
        let mut pebble = Self {
            dir: dir.to_owned(),
            directory_url: format!("{origin}/dir"),
            origin: origin.clone(),
            management: format!("https://127.0.0.1:{mport}"),
            tls_root: cert.clone(),
            child: Self::spawn(dir, always_valid, va_sleeps),
            always_valid,
            va_sleeps,
            ports: (port, mport),
        };
        pebble.wait_ready();
        pebble
    }

    fn spawn(dir: &Path, always_valid: bool, va_sleeps: bool) -> std::process::Child {
        let mut cmd = Command::new("pebble");
        cmd.arg("-config").arg(dir.join("pebble.json"));
        if !va_sleeps {
            cmd.env("PEBBLE_VA_NOSLEEP", "1");
        }
        if always_valid {
            cmd.env("PEBBLE_VA_ALWAYS_VALID", "1");
        }
        cmd.stdout(std::fs::File::create(dir.join("pebble.log")).expect("log"))
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("pebble (apt-get install pebble)")
    }

    fn wait_ready(&mut self) {
        let (port, mport) = self.ports;
        // Up to 30 s: a pebble restarted while the suite loads both cores took longer than 10.
        for _ in 0..300 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
                && std::net::TcpStream::connect(("127.0.0.1", mport)).is_ok()
            {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        panic!("pebble did not come up: {}", std::fs::read_to_string(self.dir.join("pebble.log")).unwrap_or_default());
    }

    /// Stops pebble and starts it again on the same addresses: it forgets every account and
    /// order (pebble keeps them in memory), as a CA whose database was reset would.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = Self::spawn(&self.dir, self.always_valid, self.va_sleeps);
        self.wait_ready();
    }

    /// A client trusting pebble's listeners.
    pub fn client(&self) -> reqwest::blocking::Client {
        let pem = std::fs::read(&self.tls_root).expect("tls root");
        reqwest::blocking::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("pem"))
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .expect("client")
    }

    /// Pebble's issuing root (regenerated at each start), written to `roots.pem`.
    pub fn root(&self) -> PathBuf {
        let pem =
            self.client().get(format!("{}/roots/0", self.management)).send().expect("roots").text().expect("text");
        let path = self.dir.join("root.pem");
        std::fs::write(&path, pem).expect("write root");
        path
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// certhost.toml with account `pebble` on the acme component, `params` appended, and
/// profile `web` (DNS and IP names) on it. Returns the config path.
pub fn configure(app: &App, pebble: &Pebble, params: &str, server: &str) -> PathBuf {
    let conf = app.path("conf");
    std::fs::create_dir_all(conf.join("profiles")).expect("mkdir");
    std::fs::write(
        conf.join("certhost.toml"),
        format!(
            "{server}\n[accounts.pebble]\nconnector = \"{}\"\nallowed_hosts = [\"{}\"]\nextra_ca_pems = [\"{}\"]\n\
             timeout_seconds = 60\nparams.directory_url = \"{}\"\nparams.contact_email = \"ops@example.com\"\n{params}\n",
            crate::wasm::component("acme").display(),
            pebble.origin,
            pebble.tls_root.display(),
            pebble.directory_url,
        ),
    )
    .expect("config");
    std::fs::write(
        conf.join("profiles/web.toml"),
        "accounts = [\"pebble\"]\n[sans]\nallowed_types = [\"DNS\", \"IP\"]\n",
    )
    .expect("profile");
    conf.join("certhost.toml")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf8")
}

/// Issues with the CLI into `out`; returns the run.
fn issue(app: &App, config: &Path, out: &Path, cn: &str, sans: &[&str]) -> crate::helpers::Run {
    let mut args = vec!["--config", s(config), "issue", "--profile", "web", "--cn", cn, "--out", s(out)];
    for san in sans {
        args.extend(["--san", san]);
    }
    app.run(&args)
}

/// The leaf verifies against pebble's root through the chain the connector returned.
fn assert_chains_to_pebble(pebble: &Pebble, out: &Path) {
    let root = pebble.root();
    let verify = sh(
        "openssl",
        &["verify", "-CAfile", s(&root), "-untrusted", s(&out.join("chain.pem")), s(&out.join("cert.pem"))],
    );
    assert!(verify.contains(": OK"), "{verify}");
}

#[test]
fn acme_issues_dns_and_ip_names_chained_to_pebbles_root() {
    let app = App::new();
    let pebble = Pebble::start(&app.path("pebble"), true, free_port(), false);
    let config = configure(&app, &pebble, "", "");
    app.run(&["--config", s(&config), "account", "test", "pebble"]).ok();
    let out = app.path("out");
    let r = issue(&app, &config, &out, "www.example.com", &["DNS:api.example.com", "IP:127.0.0.1"]);
    assert!(r.ok().contains("issued certificate #1"), "{}", r.stderr);
    assert_chains_to_pebble(&pebble, &out);
    let text = sh("openssl", &["x509", "-in", s(&out.join("cert.pem")), "-noout", "-text"]);
    assert!(
        text.contains("DNS:www.example.com")
            && text.contains("DNS:api.example.com")
            && text.contains("IP Address:127.0.0.1"),
        "{text}"
    );
}

/// EAB parameters, the MAC key in a file as a sensitive value must be.
fn eab_params(app: &App, mac_key: &str) -> String {
    let file = app.path("eab.key");
    std::fs::write(&file, mac_key).expect("write");
    format!(
        "params.eab_kid = \"{EAB_KID}\"\nparams.eab_hmac_key = {{ sensitive = true, value = {{ file = \"{}\" }} }}",
        file.display()
    )
}

#[test]
fn acme_with_external_account_binding_issues_and_a_wrong_key_is_a_clear_error() {
    let app = App::new();
    let pebble = Pebble::start(&app.path("pebble"), true, free_port(), true);
    // Without binding: the CA's requirement, in words.
    let config = configure(&app, &pebble, "", "");
    let r = issue(&app, &config, &app.path("none"), "www.example.com", &[]);
    let err = r.fails(1);
    assert!(err.contains("requires external account binding"), "{err}");
    // `account test` says so too, before any issuance (review of stop 33: it read only the
    // directory and passed).
    let r = app.run(&["--config", s(&config), "account", "test", "pebble"]);
    assert!(r.fails(1).contains("requires external account binding"), "{}\n{}", r.stdout, r.stderr);
    // A wrong MAC key: refused, saying why, without the key.
    let wrong = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let config = configure(&app, &pebble, &eab_params(&app, wrong), "");
    let r = issue(&app, &config, &app.path("wrong"), "www.example.com", &[]);
    let err = r.fails(1);
    assert!(err.contains("refused the new account"), "{err}");
    assert!(!err.contains(wrong), "{err}");
    // The right key: issued.
    let config = configure(&app, &pebble, &eab_params(&app, EAB_KEY), "");
    let out = app.path("out");
    let r = issue(&app, &config, &out, "www.example.com", &[]);
    assert!(r.ok().contains("issued certificate"), "{}", r.stderr);
    assert_chains_to_pebble(&pebble, &out);
}

#[test]
fn acme_revocation_through_revoke_cert_marks_the_certificate_revoked() {
    let app = App::new();
    let pebble = Pebble::start(&app.path("pebble"), true, free_port(), false);
    // An account key of the operator's own.
    let key = app.path("account.key");
    sh("openssl", &["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", s(&key)]);
    let config = configure(
        &app,
        &pebble,
        &format!("params.account_key = {{ sensitive = true, value = {{ file = \"{}\" }} }}", key.display()),
        "",
    );
    let out = app.path("out");
    issue(&app, &config, &out, "www.example.com", &[]).ok();
    let r = app.run(&["--config", s(&config), "revoke", "1", "--reason", "keyCompromise"]);
    assert!(r.ok().contains("revoked at its CA"), "{}", r.stderr);
    let shown = app.json(&["--config", s(&config), "show", "1", "--json"]);
    assert_eq!(shown["status"], "revoked", "{shown}");
}

/// The host cache outlives a command (stop 34): without `account_key`, the ACME account the
/// CLI's `issue` registered is the one the next command's `revoke` signs with — the CA lets
/// only the account that ordered a certificate revoke it with its account key. The cache
/// lived in each process's memory, so every command registered an account of its own.
#[test]
fn acme_without_an_account_key_every_command_uses_the_account_the_first_registered() {
    let app = App::new();
    let pebble = Pebble::start(&app.path("pebble"), true, free_port(), false);
    let config = configure(&app, &pebble, "", "");
    let first = app.run(&["--config", s(&config), "account", "test", "pebble"]);
    first.ok();
    let out = app.path("out");
    let r = issue(&app, &config, &out, "www.example.com", &[]);
    assert!(r.ok().contains("issued certificate #1"), "{}", r.stderr);
    // The account key and its URL; no CSR of the issued order (review of stop 34: one per
    // issuance filled the account's 256 entries within a week, and then a pending order's CSR
    // was dropped).
    let db = rusqlite::Connection::open(app.data_dir().join("certhost.db")).expect("db");
    let rows: i64 = db.query_row("SELECT count(*) FROM connector_cache", [], |r| r.get(0)).expect("count");
    assert_eq!(rows, 2, "cached: the account key and the account URL only");
    let r = app.run(&["--config", s(&config), "revoke", "1", "--reason", "superseded"]);
    assert!(r.ok().contains("revoked at its CA"), "{}", r.stderr);
    let shown = app.json(&["--config", s(&config), "show", "1", "--json"]);
    assert_eq!(shown["status"], "revoked", "{shown}");
}

/// Issues through `serve`'s API with `token`; returns the response body.
fn issue_via_api(server: &Server, token: &str, cn: &str, sans: &[&str]) -> serde_json::Value {
    let (status, body) = post_issue(server, token, cn, sans);
    assert_eq!(status, 201, "{body}\n{}", server.log());
    body
}

/// `POST /v1/certificates` on profile `web`: the status and the JSON answer.
fn post_issue(server: &Server, token: &str, cn: &str, sans: &[&str]) -> (u16, serde_json::Value) {
    let response = http()
        .post(format!("{}/v1/certificates", server.base))
        .bearer_auth(token)
        .json(&serde_json::json!({ "profile": "web", "cn": cn, "sans": sans }))
        .send()
        .expect("issue");
    (response.status().as_u16(), response.json().expect("json"))
}

#[test]
fn acme_http01_is_really_validated_by_pebble_against_serves_challenge_listener() {
    let app = App::new();
    let http01 = free_port();
    // Validation on: pebble's VA fetches http://127.0.0.1:{http01}/.well-known/acme-challenge/TOKEN.
    let pebble = Pebble::start(&app.path("pebble"), false, http01, false);
    let config = configure(&app, &pebble, "", &format!("[server]\nacme_http01_listen = \"127.0.0.1:{http01}\""));
    let server = Server::start(app, Some(&config));
    let token = server.token("ops", "admin");
    let body = issue_via_api(&server, &token, "127.0.0.1", &["IP:127.0.0.1"]);
    assert_eq!(body["disposition"], "issued", "{body}");
    assert!(server.log().contains("answered an ACME http-01 challenge"), "{}", server.log());
    // The answer was withdrawn once the authorization was decided.
    assert_answer_withdrawn(&server, http01);
}

/// The http-01 answer pebble fetched (named in `serve`'s log) is no longer served.
fn assert_answer_withdrawn(server: &Server, http01: u16) {
    let log = server.log();
    let token = log
        .lines()
        .filter(|l| l.contains("answered an ACME http-01 challenge"))
        .find_map(|l| l.split("token=").nth(1)?.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| panic!("pebble never fetched an answer: {log}"));
    let r = http().get(format!("http://127.0.0.1:{http01}/.well-known/acme-challenge/{token}")).send().expect("get");
    assert_eq!(r.status(), 404, "token {token} still answered");
}

#[test]
fn acme_dns01_runs_the_hook_with_present_and_cleanup_without_stalling_the_api() {
    let app = App::new();
    let pebble = Pebble::start(&app.path("pebble"), true, free_port(), false);
    let record = app.path("hook.log");
    let hook = app.path("dns01-hook.sh");
    // `present` takes a while, as a DNS provider's API does; it notes when it starts and ends.
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\necho \"$@\" >> {log}\nenv >> {log}.env\nif [ \"$1\" = present ]; then sleep 3; echo present-done >> {log}; fi\necho hook says $1\n",
            log = record.display()
        ),
    )
    .expect("hook");
    sh("chmod", &["+x", s(&hook)]);
    let config = configure(
        &app,
        &pebble,
        "params.challenge = \"dns-01\"",
        &format!("[server]\ndns01_hook = \"{}\"", hook.display()),
    );
    // One runtime worker: a hook run on it would stall every other request.
    let server = std::sync::Arc::new(Server::start_with_env(app, Some(&config), &[("TOKIO_WORKER_THREADS", "1")]));
    let token = server.token("ops", "admin");
    let issuing = {
        let server = server.clone();
        std::thread::spawn(move || issue_via_api(&server, &token, "www.example.com", &[]))
    };
    let hook_running = (0..600).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::read_to_string(&record).is_ok_and(|t| t.contains("present www.example.com"))
    });
    assert!(hook_running, "the hook never ran; log: {}", server.log());
    let health = http().get(format!("{}/healthz", server.base)).send().expect("healthz");
    assert_eq!(health.status(), 200);
    let calls = std::fs::read_to_string(&record).expect("hook log");
    assert!(!calls.contains("present-done"), "/healthz waited for the DNS hook: {calls}");

    let body = issuing.join().expect("issuing thread");
    assert_eq!(body["disposition"], "issued", "{body}");
    let calls = std::fs::read_to_string(&record).expect("the hook ran");
    let present: Vec<&str> = calls.lines().filter(|l| l.starts_with("present www.example.com ")).collect();
    assert_eq!(present.len(), 1, "{calls}");
    let value = present[0].rsplit(' ').next().unwrap_or_default();
    assert_eq!(value.len(), 43, "a base64url SHA-256: {calls}");
    assert!(calls.contains(&format!("cleanup www.example.com {value}")), "{calls}");
    assert!(server.log().contains("hook says present"), "{}", server.log());
    // Regression: the hook inherited CERTHOST_MASTER_KEY, the key to every secret stored.
    let env = std::fs::read_to_string(format!("{}.env", record.display())).expect("the hook's environment");
    assert!(env.contains("PATH=") && !env.contains("CERTHOST_MASTER_KEY"), "{env}");
    // The arguments as variables too, for a hook that must not parse a value as an option.
    assert!(env.contains(&format!("CERTHOST_DNS01_VALUE={value}")), "{env}");
    assert!(
        env.contains("CERTHOST_DNS01_DOMAIN=www.example.com") && env.contains("CERTHOST_DNS01_ACTION=present"),
        "{env}"
    );
    assert!(!env.contains(&server.app.master_key), "the master key reached the hook");
}

#[test]
fn acme_an_account_the_ca_forgot_is_registered_again_without_a_restart_of_serve() {
    let app = App::new();
    let mut pebble = Pebble::start(&app.path("pebble"), true, free_port(), false);
    let config = configure(&app, &pebble, "", "");
    let server = Server::start(app, Some(&config));
    let token = server.token("ops", "admin");
    let issue = |cn: &str| issue_via_api(&server, &token, cn, &[]);
    issue("before.example.com");
    // serve has the account URL cached; the restarted CA has never heard of it.
    pebble.restart();
    let body = issue("after.example.com");
    assert_eq!(body["disposition"], "issued", "{body}");
    assert!(server.log().contains("registering it again"), "{}", server.log());
}

/// ACME walkthrough of stop 46: `account test` said ok of an account the CA had forgotten,
/// reading only the directory; it now asks the CA for the account, and registers it again.
#[test]
fn acme_account_test_asks_the_ca_for_the_account_it_cached() {
    let app = App::new();
    let mut pebble = Pebble::start(&app.path("pebble"), true, free_port(), false);
    let config = configure(&app, &pebble, "", "");
    let c = config.to_str().expect("utf8");
    let first = app.run(&["--config", c, "account", "test", "pebble"]);
    assert!(!first.ok().is_empty() && !first.stderr.contains("registering it again"), "{}", first.stderr);
    pebble.restart();
    let again = app.run(&["--config", c, "account", "test", "pebble"]);
    again.ok();
    assert!(
        again.stderr.contains("the CA no longer knows the cached ACME account; registering it again"),
        "{}",
        again.stderr
    );
    // Registered again: the next test finds it as it is.
    let third = app.run(&["--config", c, "account", "test", "pebble"]);
    assert!(!third.ok().is_empty() && !third.stderr.contains("registering it again"), "{}", third.stderr);
}

#[test]
fn acme_a_slow_ca_gives_a_pending_order_that_serves_poller_finishes() {
    let app = App::new();
    let pebble = Pebble::start(&app.path("pebble"), true, free_port(), false);
    // wait_seconds 0: any wait on the CA ends the call with `pending` and the order URL.
    let config = configure(&app, &pebble, "params.wait_seconds = \"0\"", "");
    let server = Server::start(app, Some(&config));
    let token = server.token("ops", "admin");
    let (status, body) = post_issue(&server, &token, "www.example.com", &[]);
    assert_eq!(status, 202, "{body}\n{}", server.log());
    assert_eq!(body["disposition"], "pending", "{body}");
    let order = body["order_id"].as_i64().expect("order id");
    let o = settled_order(&server, &token, order, 60);
    assert_eq!(o["state"], "issued", "{o}\n{}", server.log());
    let ca_order = o["ca_order_id"].as_str().unwrap_or_default().to_owned();
    assert!(ca_order.starts_with(&pebble.origin), "the CA order id is the ACME order URL: {o}");
}

/// ACME review of stop 40: an order the CA no longer knows (pebble restarted: a CA whose
/// database was reset) answered every poll 404, which was retried as transient for good — a
/// renewal stuck this way let its certificate expire. It is rejected, saying why.
#[test]
fn acme_an_order_the_ca_lost_is_rejected_at_the_next_poll() {
    let app = App::new();
    let mut pebble = Pebble::start_with(&app.path("pebble"), true, free_port(), false, true);
    let config = configure(&app, &pebble, "params.wait_seconds = \"0\"", "");
    let server = Server::start(app, Some(&config));
    let token = server.token("ops", "admin");
    let (status, body) = post_issue(&server, &token, "lost.example.com", &[]);
    assert_eq!(status, 202, "{body}\n{}", server.log());
    let order = body["order_id"].as_i64().expect("order id");
    pebble.restart();
    let o = settled_order(&server, &token, order, 60);
    assert_eq!(o["state"], "rejected", "{o}\n{}", server.log());
    let error = o["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("the ACME server no longer has order") && error.contains("request the certificate again"),
        "{o}"
    );
}

/// Order `order` once it is no longer pending, read every half second at most `tries` times.
fn settled_order(server: &Server, token: &str, order: i64, tries: u32) -> serde_json::Value {
    (0..tries)
        .find_map(|_| {
            std::thread::sleep(std::time::Duration::from_millis(500));
            let o: serde_json::Value = http()
                .get(format!("{}/v1/orders/{order}", server.base))
                .bearer_auth(token)
                .send()
                .expect("order")
                .json()
                .expect("json");
            (o["state"] != "pending").then_some(o)
        })
        .unwrap_or_else(|| panic!("the poller never finished order {order}: {}", server.log()))
}

/// Regression (review of stop 33): when the wait ran out before the CA had validated, the call
/// withdrew its http-01 answer (and a dns-01 hook's record) on its way out with `pending`; the
/// CA then found nothing, and every validation slower than `wait_seconds` failed. The answer
/// stays published until a poll sees the order decided, and is withdrawn then.
#[test]
fn acme_a_validation_slower_than_the_wait_still_succeeds_and_its_answer_goes_afterwards() {
    let app = App::new();
    let http01 = free_port();
    // Pebble's VA takes up to 15 s: the call has long returned `pending` when it validates.
    let pebble = Pebble::start_with(&app.path("pebble"), false, http01, false, true);
    let config = configure(
        &app,
        &pebble,
        "params.wait_seconds = \"0\"",
        &format!("[server]\nacme_http01_listen = \"127.0.0.1:{http01}\""),
    );
    let server = Server::start(app, Some(&config));
    let token = server.token("ops", "admin");
    let (status, body) = post_issue(&server, &token, "127.0.0.1", &["IP:127.0.0.1"]);
    assert_eq!(status, 202, "{body}\n{}", server.log());
    let order = body["order_id"].as_i64().expect("order id");
    let state = settled_order(&server, &token, order, 90);
    assert_eq!(state["state"], "issued", "{state}\n{}", server.log());
    assert_answer_withdrawn(&server, http01);
}

/// Regression (review of stop 33): a dns-01 hook that failed was followed by answering the
/// challenge anyway, so the CA validated against nothing (against Let's Encrypt, a failed
/// validation counted toward the account's rate limit). The challenge is not answered now.
#[test]
fn acme_a_failed_dns01_hook_leaves_the_challenge_unanswered_and_says_why() {
    let app = App::new();
    // Validation always passes here: only a challenge never answered keeps the order from issuing.
    let pebble = Pebble::start(&app.path("pebble"), true, free_port(), false);
    let hook = app.path("failing-hook.sh");
    std::fs::write(&hook, "#!/bin/sh\necho \"zone update refused\" >&2\nexit 1\n").expect("hook");
    sh("chmod", &["+x", s(&hook)]);
    let config = configure(
        &app,
        &pebble,
        "params.challenge = \"dns-01\"",
        &format!("[server]\ndns01_hook = \"{}\"", hook.display()),
    );
    let server = Server::start(app, Some(&config));
    let token = server.token("ops", "admin");
    let (status, body) = post_issue(&server, &token, "www.example.com", &[]);
    assert_eq!(status, 502, "{body}\n{}", server.log());
    let detail = body["detail"].as_str().expect("detail");
    assert!(
        detail.contains("could not publish the dns-01 answer for www.example.com, so the challenge was not answered"),
        "{body}"
    );
}

/// Black-box review of stop 35: http-01 answers lived in `serve`'s memory, so a restart while
/// a CA was about to validate a pending order answered 404 and the order failed. They are kept
/// in the inventory and served again by the next run until withdrawn or lapsed. The test
/// component publishes an answer (`token0` → `ka`) for its order's names and stops.
#[test]
fn http01_answers_outlive_a_restart_of_serve() {
    let app = App::new();
    let conf = app.path("conf");
    std::fs::create_dir_all(conf.join("profiles")).expect("mkdir");
    let http01 = free_port();
    let config = conf.join("certhost.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nacme_http01_listen = \"127.0.0.1:{http01}\"\n\
             [accounts.flood]\nconnector = \"{}\"\nparams.mode = \"http01-flood\"\nparams.n = \"1\"\n",
            crate::wasm::component("hostile").display()
        ),
    )
    .expect("config");
    std::fs::write(conf.join("profiles/flood.toml"), "accounts = [\"flood\"]\n").expect("profile");
    let c = config.to_str().expect("utf8");
    let start = || {
        use std::io::BufRead;
        let mut child = app
            .command()
            .args(["--config", c, "serve", "--listen", "127.0.0.1:0"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(app.path("serve.log")).expect("log"))
            .spawn()
            .expect("serve");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("listening");
        (child, line.trim().rsplit(' ').next().unwrap_or_default().to_owned())
    };
    let answer = || {
        http()
            .get(format!("http://127.0.0.1:{http01}/.well-known/acme-challenge/token0"))
            .header("Host", "www.example.com")
            .send()
            .map(|r| (r.status().as_u16(), r.text().unwrap_or_default()))
            .unwrap_or((0, String::new()))
    };
    let (mut serve, base) = start();
    let token = app.run(&["token", "create", "--name", "ops", "--role", "operator"]).ok().trim().to_owned();
    let r = http()
        .post(format!("{base}/v1/certificates"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"profile": "flood", "cn": "www.example.com"}))
        .send()
        .expect("issue");
    assert!(r.text().expect("body").contains("all published"));
    assert_eq!(answer(), (200, "ka".to_owned()));
    // SIGTERM, as a restart or an upgrade does.
    // SAFETY: kill(2) with the pid of a child this test started.
    unsafe { libc::kill(serve.id() as i32, libc::SIGTERM) };
    serve.wait().expect("stopped");
    let (mut serve, _) = start();
    let served = answer();
    let _ = serve.kill();
    let _ = serve.wait();
    assert_eq!(
        served,
        (200, "ka".to_owned()),
        "{}",
        std::fs::read_to_string(app.path("serve.log")).unwrap_or_default()
    );
}
