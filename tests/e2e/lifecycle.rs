//! Lifecycle with nobody touching it: the running server renews a short-lived certificate,
//! deploys it to files and runs the post-hook; a kill -9 mid-renewal leaves exactly one
//! successor; renewal to another CA account; renew/reissue/revoke/delete/deploy/renewals from
//! the CLI; notifications by webhook and email.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::helpers::{App, Server, local_ca_lab, openssl_verify, scripted_lab};

/// Polls `f` every 250 ms until it returns Some, for at most `secs`.
fn wait_for<T>(secs: u64, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        if let Some(v) = f() {
            return Some(v);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    None
}

#[test]
fn a_short_lived_certificate_is_renewed_deployed_and_hooked_by_the_running_server() {
    let app = App::new();
    let deploy = app.path("deployed");
    let hook_log = app.path("hook.log");
    let profile = format!(
        r#"
[renewal]
before_minutes = 2
[[deploy]]
fullchain = "{d}/fullchain.pem"
key = "{d}/key.pem"
pkcs12 = "{d}/bundle.p12"
pre_hook = "test -d {d} || mkdir -p {d}"
post_hook = "echo deployed $CERTHOST_CERT_ID $CERTHOST_COMMON_NAME >> {log}"
"#,
        d = deploy.display(),
        log = hook_log.display()
    );
    let (config, ca) = local_ca_lab(&app, &profile);
    // Three minutes of validity: the account's component issues short-lived certificates.
    let text = std::fs::read_to_string(&config).expect("config") + "params.validity_seconds = \"180\"\n";
    std::fs::write(&config, text).expect("config");
    let server = Server::start(app, Some(&config));
    let token = server.token("ops", "operator");
    let issued: serde_json::Value = crate::helpers::http()
        .post(format!("{}/v1/certificates", server.base))
        .bearer_auth(&token)
        .json(&serde_json::json!({"profile": "lab", "cn": "short.example.com"}))
        .send()
        .expect("issue")
        .json()
        .expect("json");
    assert_eq!(issued["disposition"], "issued", "{issued}");
    assert_eq!(std::fs::read_to_string(&hook_log).expect("hook ran").trim(), "deployed 1 short.example.com");
    let key_mode = std::fs::metadata(deploy.join("key.pem")).expect("key").permissions().mode() & 0o777;
    assert_eq!(key_mode, 0o600);

    // Renewal is due two minutes before notAfter, i.e. about a minute from now.
    let renewed = wait_for(150, || {
        let list = server.app.json(&["list", "--json"]);
        let items = list.as_array()?;
        (items.len() == 2 && items[0]["status"] == "superseded").then(|| items[1].clone())
    })
    .unwrap_or_else(|| panic!("not renewed in time; log: {}", server.log()));
    assert_eq!(renewed["predecessor_id"], 1);
    assert_eq!(renewed["status"], "active");
    // Deployment follows the stored certificate (a failed deployment never loses it), so the
    // successor can be listed a moment before its post-hook has run.
    let hooks =
        wait_for(30, || std::fs::read_to_string(&hook_log).ok().filter(|h| h.contains("deployed 2 short.example.com")))
            .unwrap_or_else(|| panic!("the renewed certificate was not deployed; log: {}", server.log()));
    assert!(hooks.contains("deployed 1 short.example.com"), "{hooks}");
    let deployed = std::fs::read_to_string(deploy.join("fullchain.pem")).expect("fullchain");
    let shown = server.app.json(&["show", "2", "--json"]);
    assert!(deployed.starts_with(shown["pem"].as_str().expect("pem")), "the new certificate was deployed");
    assert!(openssl_verify(&ca.join("ca.pem"), &deploy.join("fullchain.pem")).contains(": OK"));
    // The PKCS#12 bundle opens with openssl (empty password) and holds the new certificate.
    let p12 = Command::new("openssl")
        .args(["pkcs12", "-in", deploy.join("bundle.p12").to_str().expect("utf8"), "-nokeys", "-passin", "pass:"])
        .output()
        .expect("openssl pkcs12");
    assert!(
        String::from_utf8_lossy(&p12.stdout).contains("BEGIN CERTIFICATE"),
        "{}",
        String::from_utf8_lossy(&p12.stderr)
    );
    // The auto-renewal is audited and shown by `certhost renewals`.
    let audit = server.app.json(&["audit", "--json", "--action", "certificate.auto_renew"]);
    assert_eq!(audit[0]["outcome"], "success", "{audit}");
    assert_eq!(audit[0]["actor"], "scheduler");
    let renewals = server.app.run(&["renewals"]);
    assert!(renewals.ok().contains("short.example.com"), "{}", renewals.stdout);
    assert!(!renewals.stderr.contains("note:"), "{}", renewals.stderr);
    assert!(renewals.stdout.contains("renewed as #2\n") || renewals.stdout.trim_end().ends_with("renewed as #2"));
    // A renewal whose deployment failed says so beside its success (operator review of stop
    // 39): the retry is put far ahead, so the running serve leaves it alone.
    let db = rusqlite::Connection::open(server.app.data_dir().join("certhost.db")).expect("db");
    db.execute(
        "INSERT INTO deploy_retries (certificate_id, target, failures, next_at) VALUES (2, 'files:elsewhere', 1, 4102444800)",
        [],
    )
    .expect("a failed deployment");
    let renewals = server.app.run(&["renewals"]);
    assert!(
        renewals.ok().contains("renewed as #2; its deployment failed and is retried (certhost show 2)"),
        "{}",
        renewals.stdout
    );
}

#[test]
fn kill_9_during_an_automatic_renewal_leaves_exactly_one_successor() {
    let app = App::new();
    // The first certificate has a day left and renews seven days before expiry: due the
    // moment it is issued. Its successors are the CA's usual 31-day certificates.
    let (config, _) = scripted_lab(
        &app,
        "slow",
        "slow",
        "timeout_seconds = 5\nparams.days = \"-29,1\"",
        &[("web", "accounts = [\"slow\"]\n[renewal]\nbefore_days = 7\n")],
    );
    let cfg = config.to_str().expect("utf8");
    app.run(&["--config", cfg, "issue", "--profile", "web", "--cn", "crash.example.com"]).ok();
    let text = std::fs::read_to_string(&config).expect("config").replace("params.days = \"-29,1\"", "");
    std::fs::write(&config, text).expect("config");

    let server = Server::start(app, Some(&config));
    // The scheduler picks it up and calls the (slow) CA: kill -9 while the call is in flight.
    let in_flight = wait_for(30, || {
        let orders = server.app.json(&["orders", "list", "--json"]);
        orders
            .as_array()?
            .iter()
            .find(|o| o["kind"] == "renew" && o["attempts"] == 1 && o["state"] == "pending")
            .cloned()
    });
    assert!(in_flight.is_some(), "no renewal in flight; log: {}", server.log());
    let app = {
        let mut server = server;
        Command::new("kill").args(["-KILL", &server.child.id().to_string()]).status().expect("kill");
        let _ = server.child.wait();
        // Keep the data directory: move the app out of the dead server.
        std::mem::replace(&mut server.app, App::new())
    };
    let server = Server::start(app, Some(&config));
    // After the call's lease runs out the scheduler resubmits the same order (same request id).
    let successor = wait_for(60, || {
        let list = server.app.json(&["list", "--json"]);
        let items = list.as_array()?;
        items.iter().any(|c| c["predecessor_id"] == 1).then(|| items.clone())
    })
    .unwrap_or_else(|| panic!("no successor; log: {}", server.log()));
    std::thread::sleep(Duration::from_secs(3));
    let list = server.app.json(&["list", "--json"]);
    let successors: Vec<_> = list.as_array().expect("list").iter().filter(|c| c["predecessor_id"] == 1).collect();
    assert_eq!(successors.len(), 1, "exactly one successor: {successor:?}");
    let orders = server.app.json(&["orders", "list", "--json"]);
    let renewals: Vec<_> = orders.as_array().expect("orders").iter().filter(|o| o["predecessor_id"] == 1).collect();
    assert_eq!(renewals.len(), 1, "one renewal order, resubmitted, not a second order: {orders}");
    assert_eq!(renewals[0]["state"], "issued");
    // Said as what happens: sent again by the scheduler, not "held for an operator" (operator
    // review of stop 39: the log and the audit contradicted the resubmission).
    let log = server.log();
    assert!(log.contains("automatic renewal interrupted (the process stopped); the scheduler sends it again"), "{log}");
    assert!(!log.contains("order held for an operator"), "{log}");
    let audit = server.app.json(&["audit", "--json", "--action", "order.interrupted"]);
    assert!(audit.to_string().contains("sent again by the scheduler with its request id"), "{audit}");
}

/// Parses an RFC 3339 time from the CLI's JSON into Unix seconds.
fn unix(v: &serde_json::Value) -> i64 {
    let text = v.as_str().unwrap_or_else(|| panic!("not a time: {v}"));
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .unix_timestamp()
}

/// Regression (renewal storm): `before_days` longer than the certificates the CA issues made
/// each one due the moment it was issued, so `serve` renewed one per round, forever. It now
/// renews at two thirds of the lifetime, says so, and a profile change reschedules the same way.
#[test]
fn a_before_days_longer_than_the_certificate_renews_at_two_thirds_of_its_lifetime() {
    let app = App::new();
    // The scripted CA issues 31-day certificates (from yesterday); the profile asks for 60 days.
    let (config, _) =
        scripted_lab(&app, "ca", "good", "", &[("web", "accounts = [\"ca\"]\n[renewal]\nbefore_days = 60\n")]);
    let cfg = config.to_str().expect("utf8");
    let t0 = issued_now();
    let issued = app.run(&["--config", cfg, "issue", "--profile", "web", "--cn", "storm.example.com"]);
    issued.ok();
    let t1 = issued_now();
    assert!(
        issued.stderr.contains("renews at two thirds of its lifetime instead")
            && issued.stderr.contains("certificate=1"),
        "a warning names the certificate: {}",
        issued.stderr
    );
    let shown = app.json(&["show", "1", "--json"]);
    let not_after = unix(&shown["not_after"]);
    // The lifetime counts from when the certificate was stored (between t0 and t1), not from
    // its backdated notBefore.
    let (earliest, latest) = (t0 + (not_after - t0) * 2 / 3, t1 + (not_after - t1) * 2 / 3);
    let renews_at = |app: &App| {
        let v = app.json(&["renewals", "--json"]);
        unix(&v["upcoming"][0]["renew_after"])
    };
    let at = renews_at(&app);
    // Two scheduled, one shown: more is said to be there (black-box review of stop 35).
    app.run(&["--config", cfg, "issue", "--profile", "web", "--cn", "second.example.com"]).ok();
    let cut = app.run(&["renewals", "--limit", "1"]);
    // Either: jitter decides which renews first.
    assert_eq!(cut.ok().matches(".example.com").count(), 1, "{}", cut.stdout);
    assert!(cut.stderr.contains("only the first 1 of the upcoming renewals are shown"), "{}", cut.stderr);
    assert!(!app.run(&["renewals"]).stderr.contains("note:"));
    // Jitter takes at most an hour off.
    assert!((earliest - 3600..=latest).contains(&at), "renews at {at}, two thirds is {earliest}..{latest}");
    assert!(at > issued_now() + 18 * 86_400, "not due now: {at}");

    // A profile change recomputes the schedule by the same rule: 10 days is honoured...
    let profile = config.parent().expect("dir").join("profiles/web.toml");
    std::fs::write(&profile, "accounts = [\"ca\"]\n[renewal]\nbefore_days = 10\n").expect("profile");
    app.run(&["--config", cfg, "profile", "list"]).ok();
    let at = renews_at(&app);
    assert!((not_after - 10 * 86_400 - 3600..=not_after - 10 * 86_400).contains(&at), "{at}");
    // ...90 days falls back to two thirds again.
    std::fs::write(&profile, "accounts = [\"ca\"]\n[renewal]\nbefore_days = 90\n").expect("profile");
    let reloaded = app.run(&["--config", cfg, "profile", "list"]);
    reloaded.ok();
    assert!(reloaded.stderr.contains("renew at two thirds of their lifetime instead"), "{}", reloaded.stderr);
    let at = renews_at(&app);
    assert!((earliest - 3600..=latest).contains(&at), "renews at {at}, two thirds is {earliest}..{latest}");
}

fn issued_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64
}

/// A scripted-CA lab whose first certificate (CN `cn`, profile `web`: before_days = 7) has a
/// day left, so it is due at once; then the account switches to `mode` (and the CA's usual
/// 31-day certificates) and `serve` starts with one-second renewal rounds.
fn due_certificate_lab(cn: &str, mode: &str) -> Server {
    let app = App::new();
    let (config, _) = scripted_lab(
        &app,
        "ca",
        "good",
        "params.days = \"-29,1\"\n[server]\nrenewal_interval_seconds = 1",
        &[("web", "accounts = [\"ca\"]\n[renewal]\nbefore_days = 7\n")],
    );
    let cfg = config.to_str().expect("utf8");
    app.run(&["--config", cfg, "issue", "--profile", "web", "--cn", cn]).ok();
    let text = std::fs::read_to_string(&config)
        .expect("config")
        .replace("params.days = \"-29,1\"", "")
        .replace("params.mode = \"good\"", &format!("params.mode = \"{mode}\""));
    std::fs::write(&config, text).expect("config");
    Server::start(app, Some(&config))
}

/// The renewal orders of certificate 1.
fn renewal_orders(app: &App) -> Vec<serde_json::Value> {
    let orders = app.json(&["orders", "list", "--json"]);
    orders.as_array().expect("orders").iter().filter(|o| o["predecessor_id"] == 1).cloned().collect()
}

/// The first upcoming renewal once it has a failed attempt.
fn failed_renewal(app: &App) -> Option<serde_json::Value> {
    let v = app.json(&["renewals", "--json"]);
    let entry = v["upcoming"].as_array()?.first()?.clone();
    (entry["attempts"].as_i64()? >= 1).then_some(entry)
}

/// Regression: a renewal the CA answered `pending` and later rejected was sent again every
/// round, with no attempt counted, no error recorded and no notification.
#[test]
fn a_renewal_rejected_after_pending_backs_off_and_is_not_sent_again_meanwhile() {
    let server = due_certificate_lab("later.example.com", "pending_reject");
    // The CA answers pending (polled after 5 s) and then rejects; rounds run every second.
    let entry = wait_for(40, || failed_renewal(&server.app))
        .unwrap_or_else(|| panic!("no failure recorded; log: {}", server.log()));
    assert_eq!(entry["attempts"], 1, "{entry}");
    let error = entry["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("rejected") && error.contains("the CA's validation team said no"), "{entry}");
    // The certificate's own view says it too (operator review of stop 41: only `renewals` did).
    let shown = server.app.json(&["show", "1", "--json"]);
    assert_eq!(shown["renewal"]["attempts"], 1, "{shown}");
    assert!(shown["renewal"]["last_error"].as_str().is_some_and(|e| e.contains("said no")), "{shown}");
    let text = server.app.run(&["show", "1"]);
    assert!(
        text.ok().contains("Renewal:") && text.stdout.contains("1 attempt(s) failed, the last: "),
        "{}",
        text.stdout
    );
    // While the order was pending, and in the minute of backoff after, nothing else was sent.
    std::thread::sleep(Duration::from_secs(4));
    let orders = renewal_orders(&server.app);
    assert_eq!(orders.len(), 1, "one renewal order: {orders:?}");
    assert_eq!(orders[0]["state"], "rejected");
    let audit = server.app.json(&["audit", "--json", "--action", "certificate.auto_renew"]);
    let failures: Vec<_> = audit.as_array().expect("audit").iter().filter(|e| e["outcome"] == "failure").collect();
    assert_eq!(failures.len(), 1, "{audit}");
    assert_eq!(failures[0]["object_id"], "1");
    // And `/metrics` has a gauge to alert on (it said nothing before the certificate expired).
    let metrics = crate::helpers::http().get(format!("{}/metrics", server.base)).send().expect("metrics");
    let metrics = metrics.text().expect("text");
    assert!(metrics.contains("\ncerthost_renewals_failing 1\n"), "{metrics}");
    // Failing, so no longer in the backlog of renewals waiting for a first attempt.
    assert!(metrics.contains("\ncerthost_renewals_due 0\n"), "{metrics}");
    // And `renewals --failing` lists it alone.
    let failing = server.app.json(&["renewals", "--failing", "--json"]);
    let ids: Vec<_> = failing["upcoming"].as_array().expect("upcoming").iter().map(|r| r["id"].clone()).collect();
    assert_eq!(ids, vec![serde_json::json!(1)], "{failing}");
    // Once the CA is fixed, nobody waits out the backoff (up to six hours): retried now, it is
    // sent in the next round (stop 45; the minute's backoff has most of its time left here).
    let r = server.app.run(&["renewals", "retry", "1"]);
    assert!(r.ok().contains("1 failing renewal(s) due now: #1"), "{} {}", r.stdout, r.stderr);
    wait_for(20, || (renewal_orders(&server.app).len() == 2).then_some(()))
        .unwrap_or_else(|| panic!("not sent again after the retry; log: {}", server.log()));
    let retried = server.app.json(&["audit", "--json", "--action", "certificate.renewal_retry"]);
    assert_eq!(retried.as_array().map(Vec::len), Some(1), "{retried}");
    // The same over HTTP: a certificate that does not exist is a 404 and retries nothing, and
    // so is a profile that does not (a typo read as "nothing failing").
    let token = server.token("ops", "operator");
    let retry = |body: serde_json::Value| {
        let r = crate::helpers::http()
            .post(format!("{}/v1/renewals/retry", server.base))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .expect("retry");
        (r.status().as_u16(), r.json::<serde_json::Value>().expect("json"))
    };
    let (status, body) = retry(serde_json::json!({"ids": [1, 999]}));
    assert_eq!(status, 404, "{body}");
    let (status, body) = retry(serde_json::json!({"profile": "nosuch"}));
    assert_eq!((status, &body["detail"]), (404, &serde_json::json!("profile nosuch not found")), "{body}");
    let (status, body) = retry(serde_json::json!({"ids": []}));
    assert_eq!(status, 400, "an empty list is not 'all': {body}");
    let r = server.app.run(&["renewals", "retry", "--profile", "nosuch"]);
    assert!(r.fails(1).contains("profile nosuch not found"), "{}", r.stderr);
    let r = server.app.run(&["renewals", "--profile", "nosuch"]);
    assert!(r.fails(1).contains("profile nosuch not found"), "{}", r.stderr);
}

/// Operator review of stop 41: a round renewed its batch one certificate after another, so a
/// CA that hangs until its deadline held up every other profile's renewals for as long
/// (twenty deadlines for a batch). Each CA account now renews in a lane of its own — not each
/// profile: five profiles on one hanging CA took every lane (scale review of stop 43); SIGTERM
/// waits for a lane's call in flight, which records its outcome before serve exits, and gives
/// back the claims not begun.
#[test]
fn a_hung_ca_holds_up_only_its_own_profiles_renewals() {
    let app = App::new();
    // Due a day before `web`'s certificate: first in the batch.
    let stuck = "accounts = [\"hung\"]\n[renewal]\nbefore_days = 8\n";
    let (config, _) = scripted_lab(
        &app,
        "ca",
        "good",
        "params.days = \"-29,1\"\n[server]\nrenewal_interval_seconds = 1",
        &[
            ("stuck1", stuck),
            ("stuck2", stuck),
            ("stuck3", stuck),
            ("stuck4", stuck),
            ("stuck5", stuck),
            ("web", "accounts = [\"ca\"]\n[renewal]\nbefore_days = 7\n"),
        ],
    );
    let text = std::fs::read_to_string(&config).expect("config");
    let hung = text.split("[server]").next().expect("the account").replace("[accounts.ca]", "[accounts.hung]");
    std::fs::write(&config, format!("{text}\n{hung}timeout_seconds = 15\n")).expect("config");
    for profile in ["stuck1", "stuck2", "stuck3", "stuck4", "stuck5", "web"] {
        app.run(&["--config", s(&config), "issue", "--profile", profile, "--cn", &format!("{profile}.example.com")])
            .ok();
    }
    // From now on the `hung` account's CA answers nothing until the call's deadline, and both
    // certificates are due.
    let text = std::fs::read_to_string(&config).expect("config");
    let (ca, hung) = text.split_once("[accounts.hung]").expect("two accounts");
    let hung = hung.replace("params.mode = \"good\"", "params.mode = \"block\"");
    std::fs::write(&config, format!("{}[accounts.hung]{hung}", ca.replace("params.days = \"-29,1\"", "")))
        .expect("config");
    let server = Server::start(app, Some(&config));
    let started = Instant::now();
    wait_for(60, || {
        let list = server.app.json(&["list", "--json"]);
        list.as_array()?.iter().any(|c| c["predecessor_id"] == 6).then_some(())
    })
    .unwrap_or_else(|| panic!("web's certificate was not renewed; log: {}", server.log()));
    let attempts = |app: &App| -> Vec<i64> {
        let renewals = app.json(&["renewals", "--json"]);
        let upcoming = renewals["upcoming"].as_array().expect("upcoming").clone();
        (1..=5)
            .map(|id| upcoming.iter().find(|r| r["id"] == id).and_then(|r| r["attempts"].as_i64()).unwrap_or(-1))
            .collect()
    };
    let now = attempts(&server.app);
    assert_eq!(
        now,
        vec![0; 5],
        "renewed after {:?}, once a hung call had ended; log: {}",
        started.elapsed(),
        server.log()
    );
    let mut server = server;
    crate::helpers::sh("kill", &["-TERM", &server.child.id().to_string()]);
    let status = server.child.wait().expect("wait");
    assert!(status.success(), "{status}; log: {}", server.log());
    // Each line a lane logs names its CA account and the certificate (scale review of stop
    // 43: a timeout's lines named neither), and the failure's reason is logged once.
    let log = server.log();
    let failed: Vec<&str> = log.lines().filter(|l| l.contains("renewal failed")).collect();
    assert!(
        !failed.is_empty()
            && failed
                .iter()
                .all(|l| l.contains("renewals{account=hung}") && l.contains("certificate=") && !l.contains("error=")),
        "{log}"
    );
    assert!(
        log.lines().any(|l| l.contains("renewals{account=hung}:renewal{certificate=") && l.contains("order failed:")),
        "{log}"
    );
    let app = std::mem::replace(&mut server.app, App::new());
    drop(server);
    // The call in flight ended and was recorded; those not begun were given back, not failed.
    let after = attempts(&app);
    assert!(after.contains(&1) && after.contains(&0) && !after.contains(&-1), "{after:?}");
}

/// Diff review of stop 43: the scheduler retried failed deployments before it claimed any
/// renewal, so a retried deployment whose hook ran long held up every renewal for as long.
/// Retries run beside the renewal lanes.
#[test]
fn a_deployment_retry_with_a_slow_hook_holds_up_no_renewal() {
    let app = App::new();
    let (deployed, fail, hang) = (app.path("deployed"), app.path("fail"), app.path("hang"));
    let (started, done) = (app.path("started"), app.path("done"));
    let hook = format!(
        "mkdir -p {d}; test ! -e {f} || exit 1; if [ -e {h} ]; then touch {started}; sleep 40; touch {done}; fi",
        d = deployed.display(),
        f = fail.display(),
        h = hang.display(),
        started = started.display(),
        done = done.display()
    );
    let hooked = format!(
        "accounts = [\"ca\"]\n[renewal]\nauto = false\n[[deploy]]\ncert = \"{}/cert.pem\"\npre_hook = {hook:?}\n",
        deployed.display()
    );
    let (config, _) = scripted_lab(
        &app,
        "ca",
        "good",
        "params.days = \"-29,1\"\n[server]\nrenewal_interval_seconds = 1",
        &[("hooked", &hooked), ("web", "accounts = [\"ca\"]\n[renewal]\nbefore_days = 7\n")],
    );
    std::fs::write(&fail, "").expect("flag");
    app.run(&["--config", s(&config), "issue", "--profile", "hooked", "--cn", "hooked.example.com"]).fails(3);
    app.run(&["--config", s(&config), "issue", "--profile", "web", "--cn", "web.example.com"]).ok();
    // The deployment is retried at once, and its hook now takes 40 s; certificate 2 is due.
    std::fs::remove_file(&fail).expect("flag");
    std::fs::write(&hang, "").expect("flag");
    let db = rusqlite::Connection::open(app.data_dir().join("certhost.db")).expect("db");
    assert_eq!(db.execute("UPDATE deploy_retries SET next_at = 0", []).expect("move time on"), 1);
    drop(db);
    let server = Server::start(app, Some(&config));
    wait_for(60, || {
        let list = server.app.json(&["list", "--json"]);
        list.as_array()?.iter().any(|c| c["predecessor_id"] == 2).then_some(())
    })
    .unwrap_or_else(|| panic!("web's certificate was not renewed; log: {}", server.log()));
    assert!(!done.exists(), "renewed only once the retried deployment's hook had ended; log: {}", server.log());
    wait_for(20, || started.exists().then_some(()))
        .unwrap_or_else(|| panic!("the deployment was not retried; log: {}", server.log()));
    assert!(!done.exists(), "{}", server.log());
}

/// Day-2 walkthrough of stop 46: an `expired` notification was never followed by anything when
/// the certificate then renewed at its first attempt (only a run of failures was closed).
#[test]
fn a_certificate_renewed_after_its_expiry_was_notified_is_notified_renewed() {
    let app = App::new();
    let (config, _) = scripted_lab(
        &app,
        "ca",
        "good",
        "params.days = \"-29,1\"",
        &[("web", "accounts = [\"ca\"]\n[renewal]\nbefore_days = 7\n")],
    );
    let cfg = s(&config);
    app.run(&["--config", cfg, "issue", "--profile", "web", "--cn", "late.example.com"]).ok();
    // Time passes beyond notAfter; the next command's look at the inventory finds it expired.
    let db = rusqlite::Connection::open(app.data_dir().join("certhost.db")).expect("db");
    db.execute("UPDATE certificates SET not_after = not_after - 3 * 86400", []).expect("age");
    drop(db);
    app.run(&["--config", cfg, "list"]).ok();
    let db = rusqlite::Connection::open(app.data_dir().join("certhost.db")).expect("db");
    let expired: String = db
        .query_row("SELECT subject FROM notifications WHERE kind = 'expired' AND certificate_id = 1", [], |r| r.get(0))
        .expect("an expired notification");
    assert!(expired.contains("expired before its automatic renewal ran"), "{expired}");
    app.run(&["--config", cfg, "renew", "1"]).ok();
    let (subject, detail): (String, String) = db
        .query_row(
            "SELECT subject, detail FROM notifications WHERE kind = 'renewal_recovered' AND certificate_id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("a renewal_recovered notification");
    assert!(subject.contains("certificate 1 (late.example.com) renewed after it expired"), "{subject}");
    let detail: serde_json::Value = serde_json::from_str(&detail).expect("json");
    assert_eq!(detail["failed_attempts"], 0, "{detail}");
}

/// Operator review of stop 41: a run of `renewal_failed` notifications ended in silence when
/// a renewal finally went through. The renewal that ends it queues `renewal_recovered`.
#[test]
fn the_renewal_that_ends_a_run_of_failures_is_notified() {
    let server = due_certificate_lab("mended.example.com", "pending_reject");
    wait_for(40, || failed_renewal(&server.app))
        .unwrap_or_else(|| panic!("no failure recorded; log: {}", server.log()));
    // The CA is mended, and the operator renews at once instead of waiting out the backoff.
    let config = server.app.path("conf/certhost.toml");
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(&config, text.replace("params.mode = \"pending_reject\"", "params.mode = \"good\""))
        .expect("config");
    server.app.run(&["--config", s(&config), "renew", "1"]).ok();
    let db = rusqlite::Connection::open(server.app.data_dir().join("certhost.db")).expect("db");
    let (subject, detail): (String, String) = db
        .query_row(
            "SELECT subject, detail FROM notifications WHERE kind = 'renewal_recovered' AND certificate_id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("a renewal_recovered notification");
    assert!(subject.contains("certificate 1 (mended.example.com) renewed after 1 failed attempt(s)"), "{subject}");
    let detail: serde_json::Value = serde_json::from_str(&detail).expect("json");
    assert_eq!(detail["failed_attempts"], 1, "{detail}");
    assert!(detail["successor_id"].as_i64().is_some_and(|s| s > 1), "{detail}");
    // The failure named its profile, for a receiver that routes by team.
    let failed: String = db
        .query_row("SELECT detail FROM notifications WHERE kind = 'renewal_failed' AND certificate_id = 1", [], |r| {
            r.get(0)
        })
        .expect("a renewal_failed notification");
    assert!(failed.contains("\"profile\":\"web\""), "{failed}");
}

/// The same when the order fails after pending: the certificate the CA finally sends is
/// refused by verification, the order fails, and that counts against the renewal.
#[test]
fn a_renewal_that_fails_after_pending_counts_as_a_failed_attempt() {
    let server = due_certificate_lab("refused.example.com", "pending_wrong_key");
    let entry = wait_for(40, || failed_renewal(&server.app))
        .unwrap_or_else(|| panic!("no failure recorded; log: {}", server.log()));
    let error = entry["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("failed") && error.contains("refused"), "{entry}");
    std::thread::sleep(Duration::from_secs(3));
    let orders = renewal_orders(&server.app);
    assert_eq!(orders.len(), 1, "one renewal order: {orders:?}");
    assert_eq!(orders[0]["state"], "failed");
}

/// Regression: the scheduler renewed with no dynamic parameters, so a profile with a required
/// one (the README's `requester`) could never renew automatically. Renewals now reuse what
/// the issuing request gave — except sensitive values, which are never stored: such a
/// certificate fails with a recorded error telling the operator to renew it by hand.
#[test]
fn automatic_and_manual_renewals_reuse_the_requests_dynamic_parameters_but_never_sensitive_ones() {
    let app = App::new();
    let (config, _) = scripted_lab(
        &app,
        "ca",
        "good",
        "params.days = \"-29,1\"\n[server]\nrenewal_interval_seconds = 1",
        &[
            (
                "team",
                "accounts = [\"ca\"]\n[params]\nrequester = { dynamic = true, required = true }\n[renewal]\nbefore_days = 7\n",
            ),
            (
                "otp",
                "accounts = [\"ca\"]\n[params]\notp = { dynamic = true, sensitive = true, required = true }\n[renewal]\nbefore_days = 7\n",
            ),
        ],
    );
    let cfg = config.to_str().expect("utf8");
    let issue = |profile: &str, cn: &str, param: &str| {
        app.run(&["--config", cfg, "issue", "--profile", profile, "--cn", cn, "--param", param]).ok();
    };
    issue("team", "team.example.com", "requester=alice");
    issue("otp", "otp.example.com", "otp=493817");
    // Both are due at once; the CA's next certificates are the usual 31-day ones.
    let text = std::fs::read_to_string(&config).expect("config").replace("params.days = \"-29,1\"", "");
    std::fs::write(&config, text).expect("config");
    let server = Server::start(app, Some(&config));
    let renewed = wait_for(30, || {
        let list = server.app.json(&["list", "--json"]);
        list.as_array()?.iter().find(|c| c["predecessor_id"] == 1).cloned()
    })
    .unwrap_or_else(|| panic!("the team certificate was not renewed; log: {}", server.log()));
    let orders = server.app.json(&["orders", "list", "--json"]);
    let order = orders.as_array().expect("orders").iter().find(|o| o["predecessor_id"] == 1).expect("renewal order");
    assert_eq!(order["params"]["requester"], "alice", "{order}");
    // The sensitive one cannot be reused: a recorded failure says what to do.
    let entry = wait_for(30, || {
        let v = server.app.json(&["renewals", "--json"]);
        v["upcoming"].as_array()?.iter().find(|r| r["id"] == 2 && r["attempts"].as_i64() >= Some(1)).cloned()
    })
    .unwrap_or_else(|| panic!("no failure recorded for the otp certificate; log: {}", server.log()));
    let error = entry["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("otp") && error.contains("renew the certificate by hand"), "{entry}");
    assert!(!error.contains("493817") && !server.log().contains("493817"), "the sensitive value never shows");
    let audit = server.app.json(&["audit", "--json", "--action", "certificate.auto_renew", "--object-id", "2"]);
    assert_eq!(audit[0]["outcome"], "failure", "{audit}");

    // By hand, the same rules: the recorded requester is reused, the sensitive value is asked for.
    let id = renewed["id"].to_string();
    let manual: serde_json::Value =
        serde_json::from_str(server.app.run(&["--config", cfg, "renew", &id, "--json"]).ok()).expect("json");
    let order = server.app.json(&["orders", "show", &manual["order_id"].to_string(), "--json"]);
    assert_eq!(order["params"]["requester"], "alice", "{order}");
    let refused = server.app.run(&["--config", cfg, "renew", "2"]);
    assert!(
        refused.fails(1).contains("renew the certificate by hand with --param-env NAME=VAR or --param-file NAME=PATH"),
        "{}",
        refused.stderr
    );
    server.app.run(&["--config", cfg, "renew", "2", "--param", "otp=551204"]).ok();
}

#[test]
fn cli_renews_to_another_account_reissues_revokes_deletes_and_redeploys() {
    let app = App::new();
    let deploy = app.path("out");
    // Two targets: one that works (owned by nobody:nogroup when we may chown), one whose
    // pre-deploy hook vetoes it.
    let owner = if Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n")) {
        "owner = \"nobody\"\ngroup = \"nogroup\"\n"
    } else {
        ""
    };
    let targets = format!(
        "[[deploy]]\ncert = \"{d}/cert.pem\"\n{owner}[[deploy]]\ncert = \"{d}/vetoed.pem\"\npre_hook = \"echo not today; exit 3\"\n",
        d = deploy.display()
    );
    let (config, ca) = local_ca_lab(&app, &targets);
    // A second account on the same component (another "CA"), for migration at renewal.
    let extra = std::fs::read_to_string(&config).expect("config").replace("[accounts.lab]", "[accounts.lab2]");
    let text = std::fs::read_to_string(&config).expect("config") + "\n" + &extra;
    std::fs::write(&config, text).expect("config");
    let cfg = config.to_str().expect("utf8");
    let run = |args: &[&str]| {
        let mut all = vec!["--config", cfg];
        all.extend_from_slice(args);
        app.run(&all)
    };
    // A target that fails makes the command fail, though the certificate is stored: a
    // consumer left on the old certificate would expire unnoticed (review of stop 32).
    let issued = run(&["issue", "--profile", "lab", "--cn", "m.example.com"]);
    // Exit 3, not 1: a wrapper retrying a failed issue would issue a second certificate.
    let err = issued.fails(3);
    assert!(err.contains("certificate #1 was issued and stored, but deploying it to files:"), "{err}");
    assert!(err.contains("vetoed.pem failed: pre-deploy hook failed") && err.contains("certhost deploy 1"), "{err}");
    assert!(
        issued.stdout.contains("issued certificate #1") && issued.stdout.contains("FAILED to deploy to files:"),
        "{}",
        issued.stdout
    );
    let db = rusqlite::Connection::open(app.data_dir().join("certhost.db")).expect("db");
    let (kind, subject): (String, String) = db
        .query_row("SELECT kind, subject FROM notifications WHERE certificate_id = 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .expect("a notification");
    assert_eq!(kind, "deploy_failed");
    assert!(
        subject.contains("deploying certificate 1 (m.example.com) to files:") && subject.contains("vetoed.pem failed"),
        "{subject}"
    );
    let r = run(&["renew", "1", "--account", "lab2", "--json"]);
    r.fails(3);
    // The successor's failed deployment names the certificate the files may still hold, and
    // when it expires (operator review of stop 41).
    let subject: String = db
        .query_row("SELECT subject FROM notifications WHERE certificate_id = 2 AND kind = 'deploy_failed'", [], |r| {
            r.get(0)
        })
        .expect("the successor's notification");
    assert!(subject.contains("; the files may still hold certificate 1, which expires 20"), "{subject}");
    let renewed: serde_json::Value = serde_json::from_str(&r.stdout).expect("json");
    assert_eq!(renewed["certificate"]["account"], "lab2", "renewed at another CA account");
    assert!(renewed["certificate"]["deployments"].as_array().is_some_and(|d| d.len() == 2), "{renewed}");
    assert_eq!(app.json(&["show", "1", "--json"])["status"], "superseded");
    run(&["reissue", "2"]).fails(3);
    let keys: Vec<String> = ["2", "3"]
        .iter()
        .map(|id| app.json(&["show", id, "--json"])["sha256"].as_str().expect("sha").to_owned())
        .collect();
    assert_ne!(keys[0], keys[1]);
    // local-ca has no revoke: a clear error, nothing changes.
    let refused = run(&["revoke", "3", "--reason", "keyCompromise"]);
    assert!(refused.fails(1).contains("nothing was changed"), "{}", refused.stderr);
    assert_eq!(app.json(&["show", "3", "--json"])["status"], "active");
    let bad = run(&["revoke", "3", "--reason", "because"]);
    assert!(bad.fails(2).contains("keyCompromise"), "{}", bad.stderr);
    // A certificate a renewal replaced is not put back on a server by mistake.
    let old = run(&["deploy", "1"]);
    // (2 renewed it, and 3 reissued 2: the active one is named.)
    assert!(old.fails(1).contains("certificate 3 replaced it"), "{}", old.stderr);
    assert!(old.stderr.contains("--force"), "{}", old.stderr);
    // Deploy again on demand; the file follows, the vetoed target stays unwritten.
    std::fs::remove_file(deploy.join("cert.pem")).expect("rm");
    let again = run(&["deploy", "3"]);
    assert_eq!(again.code, 1, "one target failed: {}", again.stdout);
    // The error says where what the hook printed is (operator review of stop 41), not what
    // it printed: the error is shown to every role that reads certificates (diff review).
    assert!(
        again.stdout.contains(
            "pre-deploy hook failed (exit status: 3); nothing was written; what it printed is in the audit log \
             (certhost audit --object-type certificate --object-id 3)"
        ),
        "{}",
        again.stdout
    );
    assert!(!again.stdout.contains("not today"), "{}", again.stdout);
    assert!(openssl_verify(&ca.join("ca.pem"), &deploy.join("cert.pem")).contains(": OK"));
    assert!(!deploy.join("vetoed.pem").exists(), "a failing pre-hook stops its target");
    if !owner.is_empty() {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(deploy.join("cert.pem")).expect("meta");
        let nobody = Command::new("id").args(["-u", "nobody"]).output().expect("id");
        assert_eq!(meta.uid().to_string(), String::from_utf8_lossy(&nobody.stdout).trim());
    }
    let shown = app.json(&["show", "3", "--json"]);
    let outcomes: Vec<&str> =
        shown["deployments"].as_array().expect("deployments").iter().filter_map(|d| d["outcome"].as_str()).collect();
    assert!(outcomes.contains(&"success") && outcomes.contains(&"failure"), "{shown}");
    let audit = app.json(&["audit", "--json", "--action", "certificate.deploy", "--object-id", "3"]);
    let vetoed = audit.as_array().expect("audit").iter().find(|e| e["outcome"] == "failure").expect("failure event");
    assert!(vetoed["detail"]["hook_output"].as_str().unwrap_or("").contains("not today"), "{vetoed}");
    run(&["delete", "3"]).ok();
    app.run(&["show", "3"]).fails(1);
    let audit = app.json(&["audit", "--json", "--object-type", "certificate", "--object-id", "3"]);
    assert!(audit.as_array().expect("audit").iter().any(|e| e["action"] == "certificate.delete"));
}

#[test]
fn renewal_failures_back_off_and_notify_by_webhook_and_email() {
    let app = App::new();
    // A local HTTP receiver and a local SMTP sink, both Python's standard library.
    let sink = app.path("sink");
    std::fs::create_dir_all(&sink).expect("mkdir");
    let (http_port, smtp_port) = (crate::helpers::free_port(), crate::helpers::free_port());
    let mut receivers = Command::new("python3")
        .arg(crate::python::fixture("notify_sink.py"))
        .args([&http_port.to_string(), &smtp_port.to_string(), sink.to_str().expect("utf8")])
        .spawn()
        .expect("sink");
    let secret_file = app.path("hook-secret");
    std::fs::write(&secret_file, "whsec-test-1234").expect("secret");
    let notify = format!(
        r#"
[notify]
expiring_within_days = 60
[notify.webhook]
url = "http://127.0.0.1:{http_port}/hook"
secret = {{ file = "{secret}" }}
[notify.email]
smtp_host = "127.0.0.1"
smtp_port = {smtp_port}
from = "certhost@example.com"
to = ["ops@example.com"]
"#,
        secret = secret_file.display()
    );
    // Certificates with a day left; `web` renews seven days before expiry: due at once.
    let (config, _) = scripted_lab(
        &app,
        "ca",
        "good",
        &format!("params.days = \"-29,1\"\n{notify}"),
        &[
            ("web", "accounts = [\"ca\"]\n[renewal]\nbefore_days = 7\n"),
            ("manual", "accounts = [\"ca\"]\n[renewal]\nauto = false\n"),
        ],
    );
    let cfg = config.to_str().expect("utf8");
    app.run(&["--config", cfg, "issue", "--profile", "web", "--cn", "fail.example.com"]).ok();
    app.run(&["--config", cfg, "issue", "--profile", "manual", "--cn", "manual.example.com"]).ok();
    // Now the CA breaks: every renewal fails.
    let broken = std::fs::read_to_string(&config)
        .expect("config")
        .replace("params.mode = \"good\"", "params.mode = \"wrong_key\"");
    std::fs::write(&config, broken).expect("config");
    let server = Server::start(app, Some(&config));
    let got = wait_for(60, || {
        let files: Vec<String> = std::fs::read_dir(&sink)
            .ok()?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        let hooks = files.iter().filter(|f| f.starts_with("hook-")).count();
        let mails = files.iter().filter(|f| f.starts_with("mail-")).count();
        (hooks >= 2 && mails >= 2).then_some(files)
    });
    let _ = receivers.kill();
    let _ = receivers.wait();
    let files = got.unwrap_or_else(|| panic!("notifications missing; log: {}", server.log()));
    let mut kinds = Vec::new();
    for f in files.iter().filter(|f| f.starts_with("hook-")) {
        let saved: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(sink.join(f)).expect("read")).expect("json");
        let body = saved["body"].as_str().expect("body");
        let expected = certhost_sig("whsec-test-1234", body);
        assert_eq!(saved["signature"], expected, "the HMAC signature verifies");
        let event: serde_json::Value = serde_json::from_str(body).expect("event");
        kinds.push(event["kind"].as_str().expect("kind").to_owned());
    }
    assert!(kinds.contains(&"renewal_failed".to_owned()), "{kinds:?}");
    assert!(kinds.contains(&"expiring".to_owned()), "{kinds:?}");
    let mail = files.iter().find(|f| f.starts_with("mail-")).expect("mail");
    let text = std::fs::read_to_string(sink.join(mail)).expect("mail");
    assert!(text.contains("ops@example.com") && text.contains("certhost: "), "{text}");
    // Words for a person, not the webhook's JSON.
    assert!(text.contains("certhost show ") && !text.contains("\"kind\""), "{text}");
    // The failure is visible with its attempt count and the retry time is backed off.
    let renewals = server.app.run(&["renewals", "--json"]);
    let v: serde_json::Value = serde_json::from_str(renewals.ok()).expect("json");
    let entry = &v["upcoming"][0];
    assert!(entry["attempts"].as_i64().unwrap_or(0) >= 1, "{v}");
    assert!(!entry["last_error"].as_str().unwrap_or("").is_empty(), "{v}");
}

/// `sha256=` + hex HMAC-SHA256, computed independently of certhost (Python's hmac).
fn certhost_sig(secret: &str, body: &str) -> String {
    let out = Command::new("python3")
        .args(["-c", "import hmac,hashlib,sys; print('sha256='+hmac.new(sys.argv[1].encode(), sys.stdin.buffer.read(), hashlib.sha256).hexdigest())", secret])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("stdin").write_all(body.as_bytes())?;
            c.wait_with_output()
        })
        .expect("python hmac");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn import_from_account_pages_through_the_ca_and_skips_what_is_already_there() {
    let app = App::new();
    let (config, _) = scripted_lab(&app, "ca", "good", "", &[("web", "accounts = [\"ca\"]\n")]);
    let cfg = config.to_str().expect("utf8");
    for cn in ["a.example.com", "b.example.com", "c.example.com"] {
        app.run(&["--config", cfg, "issue", "--profile", "web", "--cn", cn]).ok();
    }
    // The inventory forgets two of them; the CA still knows all three. Deleting an active
    // certificate says that nothing watches its names now (black-box review of stop 35).
    let deleted = app.run(&["delete", "1"]);
    deleted.ok();
    assert!(deleted.stderr.contains("note: it was active: certhost no longer renews"), "{}", deleted.stderr);
    assert!(deleted.stderr.contains("a.example.com"), "{}", deleted.stderr);
    app.run(&["delete", "3"]).ok();
    let r = app.run(&["--config", cfg, "import-from-account", "ca", "--json"]);
    let report: serde_json::Value = serde_json::from_str(r.ok()).expect("json");
    assert_eq!(report["imported"], 2, "{report}");
    assert_eq!(report["duplicate"], 1, "{report}");
    let list = app.json(&["list", "--json"]);
    let mut cns: Vec<&str> = list.as_array().expect("list").iter().filter_map(|c| c["common_name"].as_str()).collect();
    cns.sort();
    assert_eq!(cns, ["a.example.com", "b.example.com", "c.example.com"]);
    let again: serde_json::Value =
        serde_json::from_str(app.run(&["--config", cfg, "import-from-account", "ca", "--json"]).ok()).expect("json");
    assert_eq!((again["imported"].as_i64(), again["duplicate"].as_i64()), (Some(0), Some(3)));
}

/// Hostile-connector review of stop 41: a list whose cursor never ends (or comes back the
/// same) was followed to its end silently — 100,000 calls, then "0 imported … 0 failed" and
/// success. It stops, says why, and fails.
#[test]
fn import_from_account_says_why_it_stopped_following_a_list_that_does_not_end() {
    let app = App::new();
    let script = app.path("endless.py");
    std::fs::write(
        &script,
        "def certificate_request(csr, common_name, args):\n    raise RuntimeError('lists only')\n\n\
         def list_certificates(args, cursor):\n    n = int(cursor or 0)\n    \
         return {'items': [], 'next_cursor': str(n if args.get('same') else n + 1)}\n",
    )
    .expect("script");
    let script = script.display().to_string();
    app.run(&["account", "create", "endless", "--connector", &script]).ok();
    app.run(&["account", "create", "same", "--connector", &script, "--param", "same=1"]).ok();
    let r = app.run(&["import-from-account", "endless"]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains(
            "stopped at page 100: the connector returned 100 empty pages in a row, each with a cursor to another"
        ),
        "{}",
        r.stderr
    );
    let r = app.run(&["import-from-account", "same", "--json"]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    let report: serde_json::Value = serde_json::from_str(&r.stdout).expect("json");
    assert!(report["stopped"].as_str().is_some_and(|s| s.contains("returned the cursor it was given")), "{report}");
}

/// Regression: a post-hook that prints the key it checks (`openssl pkey -in
/// "$CERTHOST_KEY_FILE" -check` prints it) put the private key into the append-only audit
/// log, readable by the auditor role and never deletable.
#[test]
fn a_hook_that_prints_the_private_key_never_puts_it_in_the_audit_log() {
    let app = App::new();
    let deploy = app.path("deployed");
    let profile = format!(
        "[[deploy]]\nkey = \"{d}/key.pem\"\nfullchain = \"{d}/fullchain.pem\"\n\
         pre_hook = \"mkdir -p {d}\"\npost_hook = \"echo checking; openssl pkey -in \\\"$CERTHOST_KEY_FILE\\\" -check\"\n",
        d = deploy.display()
    );
    let (config, _) = local_ca_lab(&app, &profile);
    let c = s(&config);
    app.run(&["--config", c, "issue", "--profile", "lab", "--cn", "hooked.example.com"]).ok();
    let key = std::fs::read_to_string(deploy.join("key.pem")).expect("deployed key");
    let audit = app.run(&["audit", "--json"]);
    let text = audit.ok();
    // The hook's own words stay; the key is redacted (***) as the stored key's text.
    assert!(text.contains("checking\\nKey is valid\\n***"), "{text}");
    assert!(!text.contains("PRIVATE KEY-----"), "{text}");
    for line in key.lines().filter(|l| !l.starts_with("-----")) {
        assert!(!text.contains(line), "a line of the key is in the audit log: {line}");
    }
}

fn s(p: &std::path::Path) -> &str {
    p.to_str().expect("utf8")
}

/// Regression: hooks inherited the environment variables sensitive parameters are read from,
/// and a `set -x` hook put a CA secret into the audit log; later the same for the webhook's
/// signing secret and a PKCS#12 password, and (black-box review of stop 35) for a dynamic
/// sensitive parameter given with `--param-env`, or read by the hook from its `--param-file`.
#[test]
fn hooks_never_see_nor_print_a_secret_read_from_the_environment() {
    let app = App::new();
    let deploy = app.path("deployed");
    let otp_file = app.path("otp.txt");
    std::fs::write(&otp_file, "file-otp-2929\n").expect("otp");
    let profile = format!(
        "[params]\npin = {{ dynamic = true, sensitive = true }}\notp = {{ dynamic = true, sensitive = true }}\n\
         [[deploy]]\ncert = \"{d}/cert.pem\"\npre_hook = \"mkdir -p {d}\"\n\
         post_hook = \"echo token=$LAB_CA_KEY wh=$WH_SECRET pin=$PIN_VAR; env | grep -c -e LAB_CA_KEY -e PIN_VAR; cat {mk}; cat {otp}\"\n\
         [[deploy]]\npkcs12 = \"{d}/b.p12\"\npkcs12_password = {{ env = \"P12_PW\" }}\npost_hook = \"echo p12=$P12_PW.\"\n",
        d = deploy.display(),
        mk = app.path("master.key.copy").display(),
        otp = otp_file.display()
    );
    // A hook can read master.key (it runs as certhost's user): what it prints of it is
    // redacted (review of stop 31: the audit log, which auditors read, held it).
    std::fs::write(app.path("master.key.copy"), format!("{}\n", app.master_key)).expect("copy");
    let (config, ca) = local_ca_lab(&app, &profile);
    // The CA key comes from the environment now, and so does the webhook's secret.
    let text = std::fs::read_to_string(&config)
        .expect("config")
        .replace(&format!("{{ file = \"{}/ca.key\" }}", ca.display()), "{ env = \"LAB_CA_KEY\" }")
        + "[notify.webhook]\nurl = \"http://127.0.0.1:9/hook\"\nsecret = { env = \"WH_SECRET\" }\n";
    assert!(text.contains("LAB_CA_KEY"), "{text}");
    std::fs::write(&config, text).expect("config");
    let key = std::fs::read_to_string(ca.join("ca.key")).expect("ca key");
    let out = Command::new(crate::helpers::certhost_bin())
        .args(["--config", s(&config), "issue", "--profile", "lab", "--cn", "env.example.com"])
        .args(["--param-env", "pin=PIN_VAR", "--param-file", &format!("otp={}", otp_file.display())])
        .env("CERTHOST_DATA_DIR", app.data_dir())
        .env("CERTHOST_MASTER_KEY", &app.master_key)
        .env("PIN_VAR", "dynamic-pin-2929")
        .env("LAB_CA_KEY", &key)
        .env("WH_SECRET", "webhook-signing-secret-2929")
        .env("P12_PW", "pkcs12-password-2929")
        .output()
        .expect("issue");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let audit = app.run(&["audit", "--json"]);
    let text = audit.ok();
    // The hooks saw no such variables (empty values, counted zero times).
    assert!(text.contains("token= wh= pin=\\n0\\n"), "{text}");
    assert!(text.contains("p12=.\\n"), "{text}");
    assert!(!text.contains("2929"), "a secret is in the audit log: {text}");
    assert!(!text.contains(&app.master_key), "the master key is in the audit log: {text}");
    for line in key.lines().filter(|l| !l.starts_with("-----")) {
        assert!(!text.contains(line), "a line of the CA key is in the audit log");
    }
}

/// Operator review of stop 39: a webhook secret or a PKCS#12 password `serve` could not read
/// was noticed at the first notification or deployment, hours later. It says so at start.
#[test]
fn serve_says_at_start_which_secrets_it_cannot_read() {
    let app = App::new();
    let profile = format!(
        "[[deploy]]\npkcs12 = \"{}/bundle.p12\"\npkcs12_password = {{ env = \"NO_P12_PW\" }}\n",
        app.path("deployed").display()
    );
    let (config, _) = local_ca_lab(&app, &profile);
    let text = std::fs::read_to_string(&config).expect("config")
        + "[notify.webhook]\nurl = \"http://127.0.0.1:9/hook\"\nsecret = { env = \"NO_WH_SECRET\" }\n";
    std::fs::write(&config, text).expect("config");
    let server = Server::start(app, Some(&config));
    let log = server.log();
    assert!(
        log.contains("[notify.webhook] secret cannot be read now (environment variable NO_WH_SECRET is not set)"),
        "{log}"
    );
    assert!(
        log.contains(
            "profile lab's deploy target 1 pkcs12_password cannot be read now (environment variable NO_P12_PW"
        ),
        "{log}"
    );
}

/// Regression: a hook that ran past its timeout was reported timed out, but only `sh` was
/// killed and what it started ran on; and a hook that left a process in the background
/// holding its output was waited for until the timeout, its output dropped.
#[test]
fn a_timed_out_hook_is_killed_whole_and_a_backgrounded_one_does_not_hold_the_deploy() {
    let app = App::new();
    let deploy = app.path("deployed");
    let profile = format!(
        "[[deploy]]\ncert = \"{d}/a.pem\"\npre_hook = \"mkdir -p {d}; sleep 4097; echo checked\"\nhook_timeout_seconds = 2\n\
         [[deploy]]\ncert = \"{d}/b.pem\"\npre_hook = \"mkdir -p {d}\"\npost_hook = \"sleep 4098 & echo reloaded\"\n\
         hook_timeout_seconds = 20\n",
        d = deploy.display()
    );
    let (config, _) = local_ca_lab(&app, &profile);
    let started = Instant::now();
    let run = app.run(&["--config", s(&config), "issue", "--profile", "lab", "--cn", "hooks.example.com"]);
    let took = started.elapsed();
    assert!(run.fails(3).contains("timed out after 2s"), "{}\n{}", run.stdout, run.stderr);
    assert!(took < Duration::from_secs(15), "the backgrounded hook held the deploy for {took:?}");
    let audit = app.run(&["audit", "--json"]);
    assert!(audit.ok().contains("reloaded"), "{}", audit.stdout);
    let left = |pattern: &str| {
        let out = Command::new("pgrep").args(["-f", pattern]).output().expect("pgrep");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let deadline = Instant::now() + Duration::from_secs(3);
    while !left("sleep 4097").is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(left("sleep 4097"), "", "the timed-out hook's child still runs");
    // The backgrounded one was the hook's own choice: still running, ended here by the test.
    let _ = Command::new("pkill").args(["-f", "sleep 4098"]).status();
}

/// Regression: revoking a certificate for keyCompromise left its successor on the same key
/// (a profile that keeps keys) active, and renewing kept reusing the compromised key.
#[test]
fn a_key_revoked_for_compromise_is_never_reused_and_its_other_certificates_renew_now() {
    let app = App::new();
    let (config, _) = scripted_lab(
        &app,
        "lab",
        "good",
        "",
        &[(
            "keep",
            "accounts = [\"lab\"]\n[renewal]\nregenerate_key = false\nbefore_days = 10\n[sans]\nallowed_types = [\"DNS\"]\n",
        )],
    );
    let c = s(&config);
    let run = |args: &[&str]| app.run(&[&["--config", c][..], args].concat());
    run(&["issue", "--profile", "keep", "--cn", "kept.example.com"]).ok();
    // No targets: said so, without suggesting --force, which would not help.
    let none = run(&["deploy", "1"]);
    assert!(none.fails(1).contains("no deployment targets") && !none.stderr.contains("--force"), "{}", none.stderr);
    run(&["renew", "1"]).ok();
    let key_of = |id: &str| {
        let pem = app.path(&format!("cert{id}.pem"));
        std::fs::write(&pem, app.run(&["show", id, "--pem"]).ok()).expect("pem");
        crate::helpers::sh("openssl", &["x509", "-in", s(&pem), "-noout", "-pubkey"])
    };
    assert_eq!(key_of("1"), key_of("2"), "the profile keeps the key on renewal");
    run(&["revoke", "1", "--reason", "keyCompromise", "--comment", "disk sold"]).ok();
    let shown = run(&["show", "1"]);
    assert!(
        shown.ok().contains("Revoked:") && shown.stdout.contains("keyCompromise") && shown.stdout.contains("disk sold"),
        "{}",
        shown.stdout
    );
    let json = app.json(&["--config", c, "show", "1", "--json"]);
    assert_eq!(json["revocation"]["reason"], "keyCompromise", "{json}");
    assert!(json["revocation"]["by"].as_str().is_some_and(|b| b.starts_with("cli:")), "{json}");
    // The successor on the same key is due for renewal at once (audited), and renews onto a
    // new key though the profile keeps keys.
    let audit = app.json(&["audit", "--json", "--action", "certificate.key_compromised"]);
    assert_eq!(audit[0]["object_id"], "2", "{audit}");
    let renewals = app.json(&["renewals", "--json"]);
    let due = renewals["upcoming"].as_array().expect("upcoming").iter().find(|r| r["id"] == 2).cloned();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let renew_after = due.as_ref().and_then(|d| d["renew_after"].as_str()).expect("certificate 2 scheduled");
    let at = time::OffsetDateTime::parse(renew_after, &time::format_description::well_known::Rfc3339).expect("time");
    assert!(at.unix_timestamp() <= now, "due {renew_after}");
    run(&["renew", "2"]).ok();
    assert_ne!(key_of("3"), key_of("2"), "a compromised key was reused");
}

/// Regression: when `--out` could not be written, `issue` said only "Not a directory": the
/// certificate had been issued and stored, and an operator retrying issued another one. An
/// `--out` that cannot be a directory is now refused before anything is requested (review of
/// stop 33: a file, `/proc/…`); one that fails after the CA issued exits 3, not the 1 a
/// retrying wrapper issues again on, and `show ID --out` writes the files, key included.
#[test]
fn an_unwritable_out_directory_is_refused_first_and_a_late_failure_says_the_certificate_was_issued() {
    let app = App::new();
    let (config, _) = local_ca_lab(&app, "");
    let c = s(&config);
    for bad in ["/dev/null/x", "/proc/certhost-nope", "/etc/hostname"] {
        let err = app
            .run(&["--config", c, "issue", "--profile", "lab", "--cn", "out.example.com", "--out", bad])
            .fails(1)
            .to_owned();
        assert!(err.contains(bad) && err.contains("nothing was issued"), "{err}");
        let err = app.run(&["--config", c, "renew", "1", "--out", bad]).fails(1).to_owned();
        assert!(err.contains("not found"), "no certificate yet: {err}");
    }
    assert_eq!(app.json(&["list", "--json"]).as_array().expect("list").len(), 0, "nothing was requested");

    // key.pem is a directory: only the write finds that out, after the issuance.
    let out = app.path("out");
    std::fs::create_dir_all(out.join("key.pem")).expect("mkdir");
    let o = s(&out);
    let run =
        app.run(&["--config", c, "issue", "--profile", "lab", "--cn", "out.example.com", "--out", o, "--overwrite"]);
    let err = run.fails(3).to_owned();
    assert!(err.contains("certificate #1 was issued and stored (do not issue it again)"), "{err}");
    assert!(err.contains("certhost show 1 --out DIR writes them"), "{err}");
    assert_eq!(app.json(&["list", "--json"]).as_array().expect("list").len(), 1);
    let err = app.run(&["--config", c, "renew", "1", "--out", "/etc/hostname"]).fails(1).to_owned();
    assert!(err.contains("--out /etc/hostname is not a directory; nothing was requested"), "{err}");

    let again = app.path("again");
    let shown = app.run(&["show", "1", "--out", s(&again)]);
    assert!(
        shown.ok().contains("wrote cert.pem, chain.pem, fullchain.pem, key.pem of certificate #1"),
        "{}",
        shown.stdout
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(again.join("key.pem")).expect("key").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let key = std::fs::read_to_string(again.join("key.pem")).expect("key");
    assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "{key}");
    // Its own files again: written, as asked; another certificate's are refused (below), and
    // so is its certificate beside another key.
    app.run(&["show", "1", "--out", s(&again)]).ok();
    let mixed = app.path("mixed");
    app.run(&["show", "1", "--out", s(&mixed)]).ok();
    crate::helpers::sh(
        "openssl",
        &["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", s(&mixed.join("other.pem"))],
    );
    crate::helpers::sh(
        "openssl",
        &["pkcs8", "-topk8", "-nocrypt", "-in", s(&mixed.join("other.pem")), "-out", s(&mixed.join("key.pem"))],
    );
    let refused = app.run(&["show", "1", "--out", s(&mixed)]).fails(1).to_owned();
    assert!(refused.contains("already holds cert.pem"), "{refused}");
    let audit = app.json(&["audit", "--json", "--object-type", "certificate", "--object-id", "1"]);
    assert!(audit.to_string().contains("certificate.key_download"), "the key's export is audited: {audit}");

    // renew --out replaces the files of the certificate it renews (or of one for the same
    // names), never another certificate's without --overwrite (docs review of stop 40: renew
    // wrote over another name's key.pem without a word).
    app.run(&["--config", c, "issue", "--profile", "lab", "--cn", "other.example.com"]).ok();
    let err = app.run(&["--config", c, "renew", "2", "--out", s(&again)]).fails(1).to_owned();
    assert!(err.contains("already holds cert.pem") && err.contains("nothing was requested"), "{err}");
    let refused = app.run(&["show", "2", "--out", s(&again)]).fails(1).to_owned();
    assert!(refused.contains("already holds cert.pem") && refused.contains("nothing was written"), "{refused}");
    assert_eq!(std::fs::read_to_string(again.join("key.pem")).expect("kept"), key, "nothing was written");
    app.run(&["--config", c, "renew", "1", "--out", s(&again)]).ok();
    app.run(&["--config", c, "renew", "3", "--out", s(&again)]).ok();
    let renewed = app.json(&["list", "--json"]);
    assert_eq!(renewed.as_array().expect("list").len(), 4, "{renewed}");
    app.run(&["--config", c, "renew", "2", "--out", s(&again), "--overwrite"]).ok();
}

/// Regression: a target's files were renamed into place one by one, so a failure at the key
/// (a full disk) left the new certificate beside the old key; and a target path that was a
/// symbolic link was replaced by a regular file, leaving the file it pointed to stale.
#[test]
fn a_target_is_replaced_whole_or_not_at_all_and_symlinks_stay_links() {
    let app = App::new();
    let (d, k, l) = (app.path("d"), app.path("k"), app.path("l"));
    std::fs::create_dir_all(&l).expect("mkdir");
    std::fs::write(l.join("real.pem"), "OLD").expect("real");
    std::os::unix::fs::symlink("real.pem", l.join("link.pem")).expect("symlink");
    let profile = format!(
        "[[deploy]]\ncert = \"{d}/cert.pem\"\nkey = \"{k}/key.pem\"\n[[deploy]]\ncert = \"{l}/link.pem\"\n",
        d = d.display(),
        k = k.display(),
        l = l.display()
    );
    let (config, _) = local_ca_lab(&app, &profile);
    let c = s(&config);
    app.run(&["--config", c, "issue", "--profile", "lab", "--cn", "whole.example.com"]).ok();
    let first = app.run(&["show", "1", "--pem"]).ok().to_owned();
    assert!(first.starts_with(&std::fs::read_to_string(d.join("cert.pem")).expect("cert")));
    // Written through the link: the link is still one, and its target holds the certificate.
    assert!(std::fs::symlink_metadata(l.join("link.pem")).expect("link").file_type().is_symlink());
    assert!(first.starts_with(&std::fs::read_to_string(l.join("real.pem")).expect("real")));

    // The key's directory is now a file: that target fails as a whole at its last file, and its
    // certificate file still holds the first certificate, matching the key beside it.
    std::fs::remove_dir_all(&k).expect("rm");
    std::fs::write(&k, "not a directory").expect("file");
    let renewed = app.run(&["--config", c, "renew", "1"]);
    assert!(format!("{}{}", renewed.stdout, renewed.stderr).contains("key.pem"), "{}", renewed.stderr);
    assert!(first.starts_with(&std::fs::read_to_string(d.join("cert.pem")).expect("cert")), "cert.pem was replaced");
    let leftovers: Vec<_> = std::fs::read_dir(&d)
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("certhost-"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

/// A lister (`lister.py`) over three certificates, one per page, as account `ca` with `params`.
fn lister_account(app: &App, params: &str) -> std::path::PathBuf {
    let certs = app.path("listed");
    let ca = crate::helpers::OpensslCa::new(&app.path("lister-ca"), "lister-root");
    std::fs::create_dir_all(&certs).expect("mkdir");
    for cn in ["a.example.com", "b.example.com", "c.example.com"] {
        let (cert, _) = ca.issue(cn, 30);
        std::fs::copy(&cert, certs.join(format!("{cn}.pem"))).expect("copy");
    }
    let config = app.path("lister.toml");
    std::fs::write(
        &config,
        format!(
            "[accounts.ca]\nconnector = \"{}\"\nparams.certs_dir = \"{}\"\n{params}\n",
            crate::python::fixture("lister.py").display(),
            certs.display()
        ),
    )
    .expect("config");
    config
}

/// `import-from-account` dropped every item whose `order_id` was a number or missing, and
/// stopped after the first page when `next_cursor` was an integer — reporting "0 failed" and
/// exiting 0 either way.
#[test]
fn import_from_account_takes_numeric_or_missing_order_ids_and_integer_cursors() {
    for params in ["params.cursor = \"int\"", "params.order_ids = \"int\"", "params.order_ids = \"none\""] {
        let app = App::new();
        let config = lister_account(&app, params);
        let r = app.run(&["--config", config.to_str().expect("utf8"), "import-from-account", "ca", "--json"]);
        let report: serde_json::Value = serde_json::from_str(r.ok()).expect("json");
        assert_eq!(report["imported"], 3, "{params}: {report}");
        assert_eq!(report["failed"], serde_json::json!([]), "{params}: {report}");
        assert_eq!(app.json(&["list", "--json"]).as_array().map(Vec::len), Some(3), "{params}");
    }
}

/// Items a script listed that the host cannot use were skipped without a word; each is now a
/// failure with its reason, the command exits 1, and the usable items are still imported.
#[test]
fn import_from_account_counts_unusable_items_as_failed_with_their_reason() {
    let app = App::new();
    let config = lister_account(&app, "params.junk = \"1\"");
    let r = app.run(&["--config", config.to_str().expect("utf8"), "import-from-account", "ca"]);
    r.fails(1);
    let out = &r.stdout;
    assert!(out.contains("3 imported") && out.contains("3 failed"), "{out}");
    assert!(out.contains("item 1 is a str, not a dict"), "{out}");
    assert!(out.contains("item 2 has a certificate of type int; expected a PEM str"), "{out}");
    assert!(out.contains("item 3 has neither a certificate nor an order_id"), "{out}");
}

/// Regression: `import-from-account` took the first certificate of an item's PEM as its leaf:
/// a chain listed root first stored the root as the certificate (the leaf as its "chain"), and
/// unrelated certificates were stored as one's chain. They are now grouped as `import` groups a
/// bundle: any order, and an item that is not one leaf with its issuers is a failure.
#[test]
fn import_from_account_finds_the_leaf_in_any_order_and_refuses_unrelated_certificates() {
    let app = App::new();
    let certs = app.path("listed");
    std::fs::create_dir_all(&certs).expect("mkdir");
    let ca = crate::helpers::OpensslCa::new(&app.path("bundle-ca"), "bundle-root");
    let pem = |p: &std::path::Path| std::fs::read_to_string(p).expect("pem");
    let (a, _) = ca.issue("a.example.com", 30);
    let (b, _) = ca.issue("b.example.com", 30);
    let (c, _) = ca.issue("c.example.com", 30);
    std::fs::write(certs.join("1.pem"), pem(&ca.cert) + &pem(&a)).expect("root first");
    std::fs::write(certs.join("2.pem"), pem(&b) + &pem(&c)).expect("unrelated");
    let config = app.path("lister.toml");
    std::fs::write(
        &config,
        format!(
            "[accounts.ca]\nconnector = \"{}\"\nparams.certs_dir = \"{}\"\n",
            crate::python::fixture("lister.py").display(),
            certs.display()
        ),
    )
    .expect("config");
    let r = app.run(&["--config", s(&config), "import-from-account", "ca"]);
    let out = r.fails(1).to_owned() + &r.stdout;
    assert!(r.stdout.contains("1 imported") && r.stdout.contains("1 failed"), "{out}");
    assert!(r.stdout.contains("holds 2 unrelated leaf certificates"), "{out}");
    let list = app.json(&["list", "--json"]);
    let items = list.as_array().expect("list");
    assert_eq!(items.len(), 1, "{list}");
    assert_eq!(items[0]["common_name"], "a.example.com", "the root was stored as the leaf");
    let with_chain = app.run(&["show", "1", "--pem"]);
    assert!(with_chain.ok().trim_end().ends_with(pem(&ca.cert).trim()), "the root is the chain");
}

/// `notify_sink.py` (a webhook receiver and an SMTP sink) saving into its own directory; the
/// webhook answers as `hook_mode` says. Killed on drop.
struct Sinks {
    child: std::process::Child,
    dir: std::path::PathBuf,
    http_port: u16,
    smtp_port: u16,
}

impl Sinks {
    fn start(app: &App, hook_mode: &str) -> Self {
        let dir = app.path("sink");
        std::fs::create_dir_all(&dir).expect("mkdir");
        let (http_port, smtp_port) = (crate::helpers::free_port(), crate::helpers::free_port());
        let child = Command::new("python3")
            .arg(crate::python::fixture("notify_sink.py"))
            .args([&http_port.to_string(), &smtp_port.to_string(), s(&dir)])
            .spawn()
            .expect("sink");
        let sinks = Self { child, dir, http_port, smtp_port };
        sinks.hook_mode(hook_mode);
        wait_for(10, || std::net::TcpStream::connect(("127.0.0.1", smtp_port)).ok())
            .and_then(|_| wait_for(10, || std::net::TcpStream::connect(("127.0.0.1", http_port)).ok()))
            .expect("the sinks listen");
        sinks
    }

    /// `ok`, `500`, `slow` or `hang` from the next POST on.
    fn hook_mode(&self, mode: &str) {
        std::fs::write(self.dir.join("hook-mode"), mode).expect("hook mode");
    }

    /// The events the webhook received, in no particular order.
    fn hooks(&self) -> Vec<serde_json::Value> {
        self.saved("hook-", ".json")
            .iter()
            .map(|text| {
                let saved: serde_json::Value = serde_json::from_str(text).expect("json");
                serde_json::from_str(saved["body"].as_str().expect("body")).expect("event")
            })
            .collect()
    }

    /// The mails the SMTP sink received.
    fn mails(&self) -> Vec<String> {
        self.saved("mail-", ".txt")
    }

    fn saved(&self, prefix: &str, suffix: &str) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return Vec::new() };
        entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_str().is_some_and(|n| n.starts_with(prefix) && n.ends_with(suffix)))
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .collect()
    }

    /// `[notify]` with this webhook and SMTP on `smtp_port` (the sink's, or one nobody
    /// listens on).
    fn notify_toml(&self, smtp_port: u16) -> String {
        format!(
            "[notify]\nexpiring_within_days = 60\n[notify.webhook]\nurl = \"http://127.0.0.1:{}/hook\"\n\
             [notify.email]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {smtp_port}\nfrom = \"certhost@example.com\"\n\
             to = [\"ops@example.com\"]\n",
            self.http_port
        )
    }
}

impl Drop for Sinks {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A scripted-CA lab with `notify` in certhost.toml, one-second rounds, profiles `web`
/// (renews seven days before expiry) and `manual` (no auto-renew), and `manual` certificates
/// `m1.example.com`…`mN.example.com` with a day left: each queues an `expiring` notification
/// once `serve` runs. Returns the config.
fn notify_lab(app: &App, notify: &str, manual: usize) -> std::path::PathBuf {
    let (config, _) = scripted_lab(
        app,
        "ca",
        "good",
        &format!("params.days = \"-29,1\"\n{notify}[server]\nrenewal_interval_seconds = 1\n"),
        &[
            ("web", "accounts = [\"ca\"]\n[renewal]\nbefore_days = 7\n"),
            ("manual", "accounts = [\"ca\"]\n[renewal]\nauto = false\n"),
        ],
    );
    let cfg = s(&config);
    for i in 1..=manual {
        app.run(&["--config", cfg, "issue", "--profile", "manual", "--cn", &format!("m{i}.example.com")]).ok();
    }
    config
}

/// Regression: with both channels configured, a webhook that failed kept the mail from ever
/// being sent (delivery stopped at the first failing channel).
#[test]
fn a_failing_webhook_does_not_keep_the_mail_from_being_sent() {
    let app = App::new();
    let sinks = Sinks::start(&app, "500");
    let config = notify_lab(&app, &sinks.notify_toml(sinks.smtp_port), 1);
    let server = Server::start(app, Some(&config));
    let mails = wait_for(30, || Some(sinks.mails()).filter(|m| !m.is_empty()))
        .unwrap_or_else(|| panic!("no mail while the webhook fails; log: {}", server.log()));
    assert!(mails[0].contains("m1.example.com"), "{mails:?}");
    assert!(sinks.hooks().is_empty(), "the webhook refused every event");
    // A monitor sees the receiver refusing (day-two walkthrough of stop 49: only a WARN line
    // per retry said so).
    let metrics = wait_for(30, || {
        let text = crate::helpers::http().get(format!("{}/metrics", server.base)).send().ok()?.text().ok()?;
        text.contains("\ncerthost_notifications_failing 1\n").then_some(text)
    })
    .unwrap_or_else(|| panic!("no failing notification in /metrics; log: {}", server.log()));
    assert!(metrics.contains("\ncerthost_notifications_undelivered 1\n"), "{metrics}");
    assert!(metrics.contains("\ncerthost_accounts_failing 0\n"), "{metrics}");
}

/// Regression: a failing SMTP relay made the webhook receive the same event again on every
/// retry (one `sent_at` for both channels).
#[test]
fn a_failing_mail_relay_does_not_send_the_webhook_the_same_event_again() {
    let app = App::new();
    let sinks = Sinks::start(&app, "ok");
    // Nobody listens on this SMTP port.
    let config = notify_lab(&app, &sinks.notify_toml(crate::helpers::free_port()), 1);
    let server = Server::start(app, Some(&config));
    wait_for(30, || Some(sinks.hooks()).filter(|h| !h.is_empty()))
        .unwrap_or_else(|| panic!("the webhook got nothing; log: {}", server.log()));
    // The mail is retried after a minute; the webhook must not get the event a second time.
    wait_for(100, || (server.log().matches("notification not delivered").count() >= 2).then_some(()))
        .unwrap_or_else(|| panic!("no retry of the mail; log: {}", server.log()));
    std::thread::sleep(Duration::from_secs(1));
    let hooks = sinks.hooks();
    assert_eq!(hooks.len(), 1, "one delivery to the webhook: {hooks:?}");
    assert!(server.log().contains("email via 127.0.0.1"), "the mail's failure is what is retried");
}

/// Regression: events queued while no channel was configured were all delivered once one
/// was, months of revocations at once. A channel gets what is queued from the first `serve`
/// run that has it on.
#[test]
fn a_new_channel_does_not_receive_events_queued_before_it_was_configured() {
    let app = App::new();
    let sinks = Sinks::start(&app, "ok");
    let config = notify_lab(&app, "", 0);
    let c = s(&config);
    app.run(&["--config", c, "issue", "--profile", "manual", "--cn", "old.example.com"]).ok();
    app.run(&["--config", c, "revoke", "1", "--reason", "superseded"]).ok();
    // Queued times are in seconds: the channel comes on in a later one.
    std::thread::sleep(Duration::from_millis(1100));
    let mut toml = std::fs::read_to_string(&config).expect("config");
    toml.push_str(&sinks.notify_toml(sinks.smtp_port));
    std::fs::write(&config, toml).expect("config");
    let server = Server::start(app, Some(&config));
    server.app.run(&["--config", c, "issue", "--profile", "manual", "--cn", "new.example.com"]).ok();
    server.app.run(&["--config", c, "revoke", "2", "--reason", "superseded"]).ok();
    let revoked_new =
        |hooks: &[serde_json::Value]| hooks.iter().any(|h| h["kind"] == "revoked" && h["certificate_id"] == 2);
    wait_for(30, || Some(sinks.hooks()).filter(|h| revoked_new(h)))
        .unwrap_or_else(|| panic!("the new revocation was not sent; log: {}", server.log()));
    wait_for(30, || {
        Some(sinks.mails()).filter(|m| m.iter().any(|m| m.contains("certificate 2 (new.example.com) was revoked")))
    })
    .unwrap_or_else(|| panic!("the new revocation was not mailed; log: {}", server.log()));
    // A round later, still nothing about certificate 1.
    std::thread::sleep(Duration::from_secs(2));
    let old: Vec<_> = sinks.hooks().into_iter().filter(|h| h["certificate_id"] == 1).collect();
    assert!(old.is_empty(), "the backlog was delivered: {old:?}");
    assert!(!sinks.mails().iter().any(|m| m.contains("certificate 1 ")), "the backlog was mailed");
    assert!(server.log().contains("queued before the first serve run with a channel configured"), "{}", server.log());
}

/// Regression: a `serve` that could not listen (the address taken) had already recorded its
/// configuration's channels, none, so the running server's next start dropped what was queued.
#[test]
fn a_serve_that_fails_to_start_leaves_the_notification_channels_alone() {
    let app = App::new();
    let sinks = Sinks::start(&app, "ok");
    let config = notify_lab(&app, &sinks.notify_toml(sinks.smtp_port), 0);
    let server = Server::start(app, Some(&config));
    let since = |app: &App| -> Vec<(String, i64)> {
        let db = rusqlite::Connection::open(app.data_dir().join("certhost.db")).expect("db");
        let mut stmt = db.prepare("SELECT name, value FROM meta WHERE name LIKE 'notify%' ORDER BY name").expect("sql");
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).expect("query").collect::<Result<_, _>>().expect("rows")
    };
    let before = since(&server.app);
    assert_eq!(before.len(), 2, "both channels recorded: {before:?}");
    let taken = server.base.trim_start_matches("http://");
    let second = server.app.run(&["serve", "--listen", taken]);
    assert!(second.fails(1).contains("cannot listen"), "{}", second.stderr);
    assert_eq!(since(&server.app), before);
}

/// Regression: two `serve` processes on one data directory each sent every notification.
#[test]
fn two_servers_on_one_data_directory_send_each_notification_once() {
    let app = App::new();
    // A slow receiver keeps the first server busy while the second one looks for work.
    let sinks = Sinks::start(&app, "slow");
    let config = notify_lab(&app, &sinks.notify_toml(sinks.smtp_port), 4);
    let second_log = app.path("serve-2.log");
    let mut second = Command::new(crate::helpers::certhost_bin())
        .args(["--config", s(&config), "serve", "--listen", "127.0.0.1:0"])
        .env("CERTHOST_DATA_DIR", app.data_dir())
        .env("CERTHOST_MASTER_KEY", &app.master_key)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&second_log).expect("log"))
        .spawn()
        .expect("second serve");
    let server = Server::start(app, Some(&config));
    let got = wait_for(60, || Some(sinks.hooks()).filter(|h| h.len() >= 4));
    // Anything sent twice would arrive within a few more seconds.
    std::thread::sleep(Duration::from_secs(6));
    let _ = second.kill();
    let _ = second.wait();
    got.unwrap_or_else(|| panic!("notifications missing; log: {}", server.log()));
    let mut ids: Vec<i64> = sinks.hooks().iter().map(|e| e["id"].as_i64().expect("id")).collect();
    ids.sort_unstable();
    assert_eq!(ids, [1, 2, 3, 4], "each notification once");
    assert_eq!(sinks.mails().len(), 4, "each mail once");
}

/// Regression: notifications were sent one after another inside the renewal scheduler's loop,
/// so a webhook that never answered held up due renewals (10 s per notification) and
/// shutdown. Delivery now runs beside the scheduler, and SIGTERM abandons it, leaving the
/// undelivered notifications queued for the next start.
#[test]
fn a_webhook_that_never_answers_holds_up_neither_renewals_nor_shutdown() {
    let app = App::new();
    let sinks = Sinks::start(&app, "hang");
    let config = notify_lab(&app, &sinks.notify_toml(sinks.smtp_port), 4);
    let server = Server::start(app, Some(&config));
    // The first round queues the expiring notifications and starts sending them to a
    // receiver that does not answer.
    std::thread::sleep(Duration::from_secs(3));
    // A certificate due at once (a day left, renews seven days before) is renewed promptly.
    server.app.run(&["--config", s(&config), "issue", "--profile", "web", "--cn", "due.example.com"]).ok();
    let issued = Instant::now();
    wait_for(20, || {
        let list = server.app.json(&["list", "--json"]);
        list.as_array()?.iter().any(|c| c["predecessor_id"].is_number()).then_some(())
    })
    .unwrap_or_else(|| panic!("not renewed while the webhook hangs; log: {}", server.log()));
    assert!(issued.elapsed() < Duration::from_secs(10), "renewed after {:?}", issued.elapsed());
    // SIGTERM while the webhook calls are still waiting: serve exits at once.
    let mut server = server;
    let stopping = Instant::now();
    crate::helpers::sh("kill", &["-TERM", &server.child.id().to_string()]);
    let status = server.child.wait().expect("wait");
    assert!(status.success(), "{status}; log: {}", server.log());
    assert!(stopping.elapsed() < Duration::from_secs(5), "shutdown took {:?}", stopping.elapsed());
    // Nothing was lost: the next serve sends the four events to the webhook, once each.
    sinks.hook_mode("ok");
    let app = std::mem::replace(&mut server.app, App::new());
    drop(server);
    let restarted = Server::start(app, Some(&config));
    let hooks = wait_for(30, || Some(sinks.hooks()).filter(|h| h.len() >= 4))
        .unwrap_or_else(|| panic!("the queued notifications were not sent after restart; log: {}", restarted.log()));
    assert_eq!(sinks.mails().len(), 4, "the mails, sent before, are not sent again");
    assert!(hooks.iter().all(|h| h["kind"] == "expiring"), "{hooks:?}");
}

/// Regression: a certificate whose automatic renewal kept failing until notAfter became
/// `expired`, was never tried again, vanished from `certhost renewals`, and nobody was told;
/// and the backoff had put its last retry after notAfter.
#[test]
fn a_certificate_whose_renewal_fails_until_it_expires_is_still_retried_and_reported() {
    let app = App::new();
    let sinks = Sinks::start(&app, "ok");
    let (config, _) = scripted_lab(
        &app,
        "ca",
        "good",
        &format!(
            // Backdated two days: more than a CA's backdating (`profile::MAX_BACKDATE`), so its
            // lifetime counts from a day after notBefore and the renewal is due at once.
            "params.days = \"-2,0.0008\"\n{}[server]\nrenewal_interval_seconds = 1\n",
            sinks.notify_toml(sinks.smtp_port)
        ),
        &[("web", "accounts = [\"ca\"]\n[renewal]\nbefore_days = 7\n")],
    );
    let cfg = s(&config);
    // About 70 seconds left, due at once; then every renewal fails.
    app.run(&["--config", cfg, "issue", "--profile", "web", "--cn", "late.example.com"]).ok();
    let good = std::fs::read_to_string(&config).expect("config");
    std::fs::write(&config, good.replace("params.mode = \"good\"", "params.mode = \"wrong_key\"")).expect("config");
    let server = Server::start(app, Some(&config));
    let expired =
        wait_for(120, || sinks.hooks().into_iter().find(|e| e["kind"] == "expired" && e["certificate_id"] == 1))
            .unwrap_or_else(|| panic!("no `expired` notification; log: {}", server.log()));
    assert!(expired["subject"].as_str().unwrap_or_default().contains("late.example.com"), "{expired}");
    // The second attempt came before notAfter (the backoff's minute would have missed it).
    assert!(expired["detail"]["attempts"].as_i64().unwrap_or(0) >= 2, "{expired}");
    // Still scheduled, and shown.
    let shown = server.app.json(&["renewals", "--json"]);
    let upcoming = shown["upcoming"].as_array().expect("upcoming");
    assert!(upcoming.iter().any(|r| r["id"] == 1), "{shown}");
    // The CA recovers: the next retry renews the expired certificate.
    std::fs::write(&config, &good).expect("config");
    crate::helpers::sh("kill", &["-HUP", &server.child.id().to_string()]);
    wait_for(200, || {
        let list = server.app.json(&["list", "--json"]);
        list.as_array()?.iter().any(|c| c["predecessor_id"] == 1).then_some(())
    })
    .unwrap_or_else(|| panic!("the expired certificate was not renewed; log: {}", server.log()));
}

/// Regression: when an automatic renewal cut off by a crash was resubmitted and failed, the
/// failure was recorded nowhere (the dead process's claim on the certificate was still
/// running), and that claim blocked any retry for ten minutes.
#[test]
fn a_failed_resubmission_after_a_crash_is_recorded_and_retried() {
    let app = App::new();
    let (config, _) = scripted_lab(
        &app,
        "slow",
        "slow",
        "timeout_seconds = 5\nparams.days = \"-29,1\"\n[server]\nrenewal_interval_seconds = 1",
        &[("web", "accounts = [\"slow\"]\n[renewal]\nbefore_days = 7\n")],
    );
    app.run(&["--config", s(&config), "issue", "--profile", "web", "--cn", "crash.example.com"]).ok();
    let server = Server::start(app, Some(&config));
    wait_for(30, || {
        let orders = server.app.json(&["orders", "list", "--json"]);
        orders.as_array()?.iter().find(|o| o["kind"] == "renew" && o["state"] == "pending").cloned()
    })
    .unwrap_or_else(|| panic!("no renewal in flight; log: {}", server.log()));
    let app = {
        let mut server = server;
        Command::new("kill").args(["-KILL", &server.child.id().to_string()]).status().expect("kill");
        let _ = server.child.wait();
        std::mem::replace(&mut server.app, App::new())
    };
    // The CA now sends certificates for the wrong key: the resubmission fails verification.
    let text = std::fs::read_to_string(&config)
        .expect("config")
        .replace("params.mode = \"slow\"", "params.mode = \"wrong_key\"");
    std::fs::write(&config, text).expect("config");
    let server = Server::start(app, Some(&config));
    let entry = wait_for(60, || failed_renewal(&server.app))
        .unwrap_or_else(|| panic!("the failed resubmission was not recorded; log: {}", server.log()));
    assert_eq!(entry["attempts"], 1, "{entry}");
    let orders = renewal_orders(&server.app);
    assert_eq!(orders.len(), 1, "{orders:?}");
    assert_eq!(orders[0]["state"], "failed");
    let audit = server.app.json(&["audit", "--json", "--action", "certificate.auto_renew"]);
    let failures = audit.as_array().expect("audit").iter().filter(|e| e["outcome"] == "failure").count();
    assert_eq!(failures, 1, "recorded once: {audit}");
}

/// Regressions (reviews of stop 31):
/// - renewing a certificate issued from an uploaded CSR gave it a key the host generated, so
///   its requester (who holds the CSR's key) got a successor it could not use;
/// - a profile's `[key] type` held only for keys the host made: an uploaded CSR, or a key kept
///   at renewal after the profile changed type, was certified whatever its type;
/// - renewing under another profile skipped that profile's subject rules.
#[test]
fn renewals_keep_an_uploaded_csrs_key_and_every_key_and_subject_is_held_to_the_profile() {
    let app = App::new();
    let (config, _) = local_ca_lab(&app, "[renewal]\nregenerate_key = false\n[subject]\noverridable = [\"o\"]\n");
    let conf = config.parent().expect("conf").to_path_buf();
    std::fs::write(
        conf.join("profiles/fixed.toml"),
        "accounts = [\"lab\"]\n[subject]\no = [\"Good Corp\"]\n[sans]\nallowed_types = [\"DNS\"]\n",
    )
    .expect("profile");
    let c = s(&config);
    let run = |args: &[&str]| app.run(&[&["--config", c][..], args].concat());
    let pubkey = |pem: &str| {
        let file = app.path("pub-of.pem");
        std::fs::write(&file, pem).expect("pem");
        let kind = if pem.contains("CERTIFICATE REQUEST") { "req" } else { "x509" };
        crate::helpers::sh("openssl", &[kind, "-in", s(&file), "-noout", "-pubkey"])
    };

    // An Ed25519 CSR on an ec-p256 profile is refused, naming the rule; a P-256 one is issued.
    let key = app.path("k.pem");
    let csr = app.path("csr.pem");
    let make_csr = |algorithm: &[&str]| {
        crate::helpers::sh("openssl", &[&["genpkey"][..], algorithm, &["-out", s(&key)]].concat());
        crate::helpers::sh(
            "openssl",
            &[
                "req",
                "-new",
                "-key",
                s(&key),
                "-subj",
                "/CN=held.example.com",
                "-addext",
                "subjectAltName=DNS:held.example.com",
                "-out",
                s(&csr),
            ],
        );
    };
    make_csr(&["-algorithm", "ed25519"]);
    let refused = run(&["issue", "--profile", "lab", "--csr", s(&csr)]);
    assert!(
        refused
            .fails(1)
            .contains("the CSR's key is ed25519; the profile certifies ec-p256 keys (list others under [key] accept)"),
        "{}",
        refused.stderr
    );
    make_csr(&["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]);
    run(&["issue", "--profile", "lab", "--csr", s(&csr)]).ok();
    let csr_key = pubkey(&std::fs::read_to_string(&csr).expect("csr"));
    assert_eq!(pubkey(run(&["show", "1", "--pem"]).ok()), csr_key);
    // Renewed, by hand and so by the scheduler, on the CSR's key: the host has no other.
    run(&["renew", "1"]).ok();
    assert_eq!(pubkey(run(&["show", "2", "--pem"]).ok()), csr_key, "the renewal swapped the requester's key");
    assert_eq!(app.json(&["show", "2", "--json"])["has_private_key"], false);

    // A key kept at renewal must still be of a type the profile certifies.
    run(&["issue", "--profile", "lab", "--cn", "kept.example.com", "--o", "Evil Corp"]).ok();
    let p256 = pubkey(run(&["show", "3", "--pem"]).ok());
    let lab = conf.join("profiles/lab.toml");
    let text = std::fs::read_to_string(&lab).expect("profile");
    std::fs::write(&lab, format!("{text}\n[key]\ntype = \"ec-p384\"\n")).expect("profile");
    run(&["renew", "3"]).ok();
    let renewed = app.json(&["show", "4", "--json"]);
    assert_eq!(renewed["key_type"], "ec-p384", "{renewed}");
    assert_ne!(pubkey(run(&["show", "4", "--pem"]).ok()), p256);
    // Moved to a profile that fixes O, its subject is held to it.
    let moved = run(&["renew", "4", "--profile", "fixed"]);
    assert!(
        moved.fails(1).contains(
            "profile fixed refuses the request: the certificate's subject field O is not the profile's, which fixes it"
        ),
        "{}",
        moved.stderr
    );
    assert_eq!(app.json(&["show", "4", "--json"])["status"], "active", "nothing changed");
}

/// Regression (review of stop 32): an imported certificate with a bare CN renewed under a
/// profile that fixes O kept its bare subject, unlike every certificate issued under it.
#[test]
fn an_imported_certificate_renewed_under_a_profile_gets_the_fields_it_fixes() {
    let app = App::new();
    let (config, _) = local_ca_lab(&app, "[subject]\no = [\"Lab Org\"]\n");
    let other = crate::helpers::OpensslCa::new(&app.path("other"), "Other Root");
    let (leaf, _) = other.issue("bare.example.com", 30);
    let c = s(&config);
    app.run(&["--config", c, "import", s(&leaf)]).ok();
    assert_eq!(app.json(&["--config", c, "show", "1", "--json"])["subject"], "CN=bare.example.com");
    app.run(&["--config", c, "renew", "1", "--profile", "lab"]).ok();
    let renewed = app.json(&["--config", c, "show", "2", "--json"]);
    assert_eq!(renewed["subject"], "O=Lab Org, CN=bare.example.com", "{renewed}");
}

/// Black-box review of stop 35: a CSR without the O its profile fixes was issued a
/// certificate without it (the CA signs the CSR's subject as it stands). It is refused,
/// naming the field; with the field it is issued, and the certificate carries it.
#[test]
fn an_uploaded_csr_must_carry_the_subject_fields_its_profile_fixes() {
    let app = App::new();
    let (config, _) = local_ca_lab(&app, "[subject]\no = [\"Lab Org\"]\n");
    let c = s(&config);
    let (key, bare, full) = (app.path("k.pem"), app.path("bare.csr"), app.path("full.csr"));
    crate::helpers::openssl_csr(&key, &bare, "/CN=bare.example.com", &["subjectAltName=DNS:bare.example.com"]);
    let r = app.run(&["--config", c, "issue", "--profile", "lab", "--csr", s(&bare)]);
    let err = r.fails(1);
    assert!(err.contains("the CSR's subject has no O, which the profile fixes as \"Lab Org\""), "{err}");
    assert!(app.json(&["--config", c, "list", "--json"]).as_array().is_some_and(Vec::is_empty));
    crate::helpers::openssl_csr(
        &key,
        &full,
        "/O=Lab Org/CN=full.example.com",
        &["subjectAltName=DNS:full.example.com"],
    );
    app.run(&["--config", c, "issue", "--profile", "lab", "--csr", s(&full)]).ok();
    let issued = app.json(&["--config", c, "show", "1", "--json"]);
    assert_eq!(issued["subject"], "O=Lab Org, CN=full.example.com", "{issued}");
}

/// Regression (review of stop 33): a reading command in the wrong directory or with a
/// mistyped --data-dir made an empty inventory and a new master key there, and answered "no
/// certificates match".
#[test]
fn a_reading_command_finds_no_inventory_where_there_is_none_and_makes_none() {
    let app = App::new();
    let nowhere = app.path("typo");
    let d = s(&nowhere);
    for args in [&["list"][..], &["show", "1"], &["audit"], &["renewals"], &["token", "list"], &["orders", "list"]] {
        let run = app.run(&[&["--data-dir", d][..], args].concat());
        let err = run.fails(1);
        assert!(err.contains("there is no inventory in") && err.contains("--data-dir"), "{args:?}: {err}");
    }
    assert!(!nowhere.exists(), "nothing was created");
    // A command that writes still starts one.
    app.run(&["--data-dir", d, "token", "create", "--name", "first", "--role", "admin"]).ok();
    assert_eq!(app.json(&["--data-dir", d, "token", "list", "--json"]).as_array().map(Vec::len), Some(1));
}

/// Black-box review of stop 35: a deployment that failed was never tried again, so after an
/// automatic renewal the server kept the old certificate until it expired. `serve` now tries a
/// failed target again with backoff while the certificate is active, notifies once per run of
/// failures, and `show` says what is being retried. Time is moved on by editing the retry's
/// time in the database, as the backoff's first wait is five minutes.
#[test]
fn serve_tries_a_failed_deployment_again_until_it_succeeds() {
    let app = App::new();
    let deploy = app.path("deployed");
    let blocked = app.path("blocked");
    std::fs::write(&blocked, "").expect("flag");
    let profile = format!(
        "[[deploy]]\ncert = \"{d}/cert.pem\"\npre_hook = \"mkdir -p {d}; test ! -e {b}\"\n\
         [[deploy]]\ncert = \"{d}/second.pem\"\npre_hook = \"mkdir -p {d}; test ! -e {b}\"\n",
        d = deploy.display(),
        b = blocked.display()
    );
    let (config, _) = local_ca_lab(&app, &profile);
    let c = s(&config);
    let r = app.run(&["--config", c, "issue", "--profile", "lab", "--cn", "retry.example.com"]);
    // Both failed targets are named, in the profile's order.
    let err = r.fails(3).to_owned();
    let (first, second) = (err.find("cert.pem failed: pre-deploy hook failed"), err.find("second.pem failed"));
    assert!(first.is_some() && first < second, "{err}");
    assert!(err.contains("fix the targets"), "{err}");
    let shown = app.run(&["show", "1"]).ok().to_owned();
    assert!(shown.contains("Retrying:") && shown.contains("failed 1 time(s) in a row"), "{shown}");
    let db = rusqlite::Connection::open(app.data_dir().join("certhost.db")).expect("db");
    let due_now = || db.execute("UPDATE deploy_retries SET next_at = 0", []).expect("move time on");
    let failures = || -> Option<i64> {
        use rusqlite::OptionalExtension;
        db.query_row("SELECT failures FROM deploy_retries WHERE certificate_id = 1", [], |r| r.get(0))
            .optional()
            .expect("read")
    };

    due_now();
    let mut serve = app
        .command()
        .args(["--config", c, "serve", "--listen", "127.0.0.1:0", "--renewal-interval", "1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("serve");
    let wait_for = |what: &str, done: &dyn Fn() -> bool| {
        let started = Instant::now();
        while !done() {
            assert!(started.elapsed() < std::time::Duration::from_secs(30), "{what}");
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    };
    wait_for("a second failed attempt", &|| failures() == Some(2));
    let next_at: i64 =
        db.query_row("SELECT next_at FROM deploy_retries WHERE certificate_id = 1", [], |r| r.get(0)).expect("next");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64;
    assert!((now + 500..=now + 700).contains(&next_at), "the second wait is ten minutes: {next_at} vs {now}");

    std::fs::remove_file(&blocked).expect("unblock");
    due_now();
    wait_for("the retry that succeeds", &|| failures().is_none());
    assert!(deploy.join("cert.pem").exists() && deploy.join("second.pem").exists());
    let _ = serve.kill();
    let _ = serve.wait();
    let shown = app.run(&["show", "1"]).ok().to_owned();
    assert!(!shown.contains("Retrying:"), "{shown}");
    assert!(shown.contains("Deployed:    success"), "{shown}");
    let notified: i64 = db
        .query_row("SELECT count(*) FROM notifications WHERE kind = 'deploy_failed'", [], |r| r.get(0))
        .expect("notifications");
    assert_eq!(notified, 2, "one notification per target for the run of failures");
}

/// Chaos review of stop 40: a process killed while it deployed a certificate it had just
/// stored left it undeployed for good — nothing recorded that a deployment was owed — and the
/// consumer on the old certificate. The change that stores it records the deployment as owed;
/// the scheduler deploys it when no outcome came.
#[test]
fn a_deployment_cut_short_by_a_crash_is_done_by_serve_afterwards() {
    let app = App::new();
    let deploy = app.path("deployed");
    let kill = app.path("kill-once");
    let hook_pid = app.path("hook-pid");
    let script_pid = app.path("script-pid");
    std::fs::write(&kill, "").expect("flag");
    // The hook's shell runs under a watcher certhost started, which leads the hook's process
    // group: the first time, the script the hook runs in the foreground kills certhost (the
    // group leader's parent) mid-deployment and sleeps on.
    let script = app.path("crash.sh");
    std::fs::write(
        &script,
        format!(
            "leader=$(ps -o pgid= -p $$ | tr -d ' ')\ncerthost=$(ps -o ppid= -p $leader | tr -d ' ')\n\
             echo $$ > {g}\nkill -9 $certhost\nexec sleep 30\n",
            g = script_pid.display()
        ),
    )
    .expect("script");
    let profile = format!(
        "[[deploy]]\ncert = \"{d}/cert.pem\"\npre_hook = \"if [ -e {k} ]; then rm {k}; echo $$ > {p}; sh {s}; fi\"\n",
        d = deploy.display(),
        k = kill.display(),
        p = hook_pid.display(),
        s = script.display()
    );
    let (config, _) = local_ca_lab(&app, &profile);
    let c = s(&config);
    let r = app.run(&["--config", c, "issue", "--profile", "lab", "--cn", "crash.example.com"]);
    assert_eq!(r.code, -1, "killed by the hook: {}", r.stderr);
    // The hook dies with certhost (operator review of stop 41: it ran on, past its timeout,
    // while the deployment was redone), and so does the script it runs (day-two walkthrough of
    // stop 49: only the shell died).
    let started = Instant::now();
    for (what, file) in [("shell", &hook_pid), ("script", &script_pid)] {
        let pid = std::fs::read_to_string(file).expect("pid").trim().to_owned();
        while std::path::Path::new(&format!("/proc/{pid}")).exists()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default().contains(") Z ")
        {
            assert!(started.elapsed() < std::time::Duration::from_secs(10), "the hook's {what} outlived certhost");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    assert!(!deploy.join("cert.pem").exists(), "the crash came before the files");
    let db = rusqlite::Connection::open(app.data_dir().join("certhost.db")).expect("db");
    let owed: (String, i64) = db
        .query_row("SELECT target, failures FROM deploy_retries WHERE certificate_id = 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .expect("the deployment is owed");
    assert_eq!(owed, (format!("files:{}/cert.pem", deploy.display()), 0));
    // Not shown as a failure: none was seen.
    assert!(!app.run(&["show", "1"]).ok().contains("Retrying:"));
    db.execute("UPDATE deploy_retries SET next_at = 0", []).expect("the grace has passed");
    let mut serve = app
        .command()
        .args(["--config", c, "serve", "--listen", "127.0.0.1:0", "--renewal-interval", "1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("serve");
    let started = Instant::now();
    while !deploy.join("cert.pem").exists() {
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "serve never deployed it");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let cleared = || -> i64 { db.query_row("SELECT count(*) FROM deploy_retries", [], |r| r.get(0)).expect("count") };
    while cleared() != 0 {
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "the owed row stays");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let _ = serve.kill();
    let _ = serve.wait();
    assert!(app.run(&["show", "1"]).ok().contains("Deployed:    success"));
}

/// Black-box review of stop 35: an API client was answered a plain 201 when a deployment
/// failed (the CLI exits 3). The answer carries the certificate's deployments and retries.
#[test]
fn an_api_issuance_says_which_deployments_failed() {
    let app = App::new();
    let deploy = app.path("deployed");
    let profile = format!("[[deploy]]\ncert = \"{}/cert.pem\"\npre_hook = \"exit 7\"\n", deploy.display());
    let (config, _) = local_ca_lab(&app, &profile);
    let server = Server::start(app, Some(&config));
    let token = server.token("ops", "operator");
    let r = crate::helpers::http()
        .post(format!("{}/v1/certificates", server.base))
        .bearer_auth(&token)
        .json(&serde_json::json!({"profile": "lab", "cn": "fails.example.com"}))
        .send()
        .expect("issue");
    assert_eq!(r.status(), reqwest::StatusCode::CREATED);
    let body: serde_json::Value = r.json().expect("json");
    let cert = &body["certificate"];
    assert_eq!(cert["deployments"][0]["outcome"], "failure", "{body}");
    assert!(cert["deployments"][0]["message"].as_str().unwrap_or("").contains("pre-deploy hook failed"), "{body}");
    assert_eq!(cert["deploy_retries"][0]["failures"], 1, "{body}");
}

/// Operator review of stop 36: a profile's deploy paths are the same for every certificate it
/// issues, so the second name issued overwrote the first's files, and `show` said both were
/// deployed while the server presented only the last. A deployment over an active certificate
/// for other names is refused, naming it; `{cn}` in a path gives each name its own files; a
/// renewal (the same name) replaces its predecessor's files as before.
#[test]
fn a_deploy_target_holding_another_names_active_certificate_is_not_overwritten() {
    let app = App::new();
    let fixed = app.path("fixed");
    let per_name = app.path("per-name");
    let profile = format!(
        "[[deploy]]\nfullchain = \"{f}/fullchain.pem\"\nkey = \"{f}/key.pem\"\n[[deploy]]\nfullchain = \"{p}/{{cn}}/fullchain.pem\"\n",
        f = fixed.display(),
        p = per_name.display()
    );
    let (config, _) = local_ca_lab(&app, &profile);
    let c = config.to_str().expect("utf8");
    app.run(&["--config", c, "issue", "--profile", "lab", "--cn", "a.example.com"]).ok();
    let a_pem = std::fs::read_to_string(fixed.join("fullchain.pem")).expect("a deployed");
    let r = app.run(&["--config", c, "issue", "--profile", "lab", "--cn", "b.example.com"]);
    let err = r.fails(3);
    assert!(
        err.contains("holds certificate #1 (a.example.com), which is active and for other names; nothing was written"),
        "{err}"
    );
    assert!(err.contains("{cn}") && err.contains("certhost deploy 2 --replace-others"), "{err}");
    assert_eq!(std::fs::read_to_string(fixed.join("fullchain.pem")).expect("fullchain"), a_pem, "a's files stay");
    // A target mixing {cn} and a shared key path is refused when the profile is read.
    let mixed = config.parent().expect("conf").join("profiles/mixed.toml");
    std::fs::write(
        &mixed,
        format!(
            "accounts = [\"lab\"]\n[[deploy]]\nfullchain = \"{p}/{{cn}}.pem\"\nkey = \"{p}/key.pem\"\n",
            p = per_name.display()
        ),
    )
    .expect("mixed profile");
    let refused = app.run(&["--config", c, "issue", "--profile", "lab", "--cn", "x.example.com"]);
    assert!(
        refused.fails(1).contains("key.pem has no {cn} while another path of its target has"),
        "{}",
        refused.stderr
    );
    std::fs::remove_file(&mixed).expect("rm");
    // Each name has its own files under the `{cn}` target.
    for (id, name) in [(1, "a.example.com"), (2, "b.example.com")] {
        let pem = std::fs::read_to_string(per_name.join(name).join("fullchain.pem")).expect("per-name file");
        let shown = app.json(&["show", &id.to_string(), "--json"]);
        assert!(pem.starts_with(shown["pem"].as_str().expect("pem")), "{name}");
    }
    // `--force` (for inactive certificates) does not replace another name's files; an
    // operator's `deploy --replace-others` does.
    let forced = app.run(&["--config", c, "deploy", "2", "--force"]);
    forced.fails(1);
    assert!(forced.stdout.contains("nothing was written"), "{}", forced.stdout);
    let replaced = app.run(&["--config", c, "deploy", "2", "--replace-others"]);
    assert!(replaced.ok().contains("deployed"), "{}", replaced.stdout);
    let b_pem = app.json(&["show", "2", "--json"])["pem"].as_str().expect("pem").to_owned();
    assert!(std::fs::read_to_string(fixed.join("fullchain.pem")).expect("fullchain").starts_with(&b_pem));
    app.run(&["--config", c, "deploy", "1", "--replace-others"]).ok();
    // A renewal of a is for the same name: it replaces a's files.
    app.run(&["--config", c, "renew", "1"]).ok();
    let renewed = app.json(&["show", "3", "--json"]);
    // The superseded one names what replaced it.
    assert_eq!(app.json(&["show", "1", "--json"])["successor_id"], 3);
    assert!(app.run(&["show", "1"]).ok().contains("Successor:   3"));
    let now = std::fs::read_to_string(fixed.join("fullchain.pem")).expect("fullchain");
    assert!(now.starts_with(renewed["pem"].as_str().expect("pem")), "the renewal was deployed");
    // The superseded one put back in place (same name as its successor) stands for a.example.com:
    // b is still refused there.
    app.run(&["--config", c, "deploy", "1", "--force"]).ok();
    let b = app.run(&["--config", c, "deploy", "2"]);
    b.fails(1);
    assert!(b.stdout.contains("holds certificate #3 (a.example.com)"), "{}", b.stdout);
    // A certificate sharing a name (here a SAN without the CN) replaces it.
    app.run(&["--config", c, "issue", "--profile", "lab", "--cn", "www.a.example.com", "--san", "DNS:a.example.com"])
        .ok();
    let shared_pem = app.json(&["show", "4", "--json"])["pem"].as_str().expect("pem").to_owned();
    assert!(std::fs::read_to_string(fixed.join("fullchain.pem")).expect("fullchain").starts_with(&shared_pem));
}

/// Hostile-connector review of stop 41: a renewal answered with a certificate the inventory
/// already holds as superseded was stored as a success ("issued certificate #2"), retiring
/// the certificate in service for one out of service — the name left with no active
/// certificate and no renewal scheduled. It fails, naming the certificate, and the one in
/// service stays so.
#[test]
fn a_renewal_answered_with_a_superseded_certificate_fails_and_keeps_the_one_in_service() {
    let app = App::new();
    let (config, _) = scripted_lab(
        &app,
        "ca",
        "good",
        "",
        &[(
            "p",
            "accounts = [\"ca\"]\n[sans]\ndns_suffixes = [\".example.com\"]\n[params]\nreturn_file = { dynamic = true }\n",
        )],
    );
    // The scripted CA, except that it answers with the file `return_file` names when given.
    let script = app.path("returns_a_file.py");
    std::fs::write(
        &script,
        format!(
            "import sys\nsys.path.insert(0, {dir:?})\nimport scripted_ca\n\nPARAMETERS = scripted_ca.PARAMETERS + [{{\"name\": \"return_file\"}}]\n\n\
             def certificate_request(csr, common_name, args):\n    if args.get(\"return_file\"):\n        return open(args[\"return_file\"]).read()\n    \
             return scripted_ca.certificate_request(csr, common_name, args)\n",
            dir = crate::python::fixture("").display().to_string()
        ),
    )
    .expect("script");
    let text = std::fs::read_to_string(&config).expect("config");
    let scripted = crate::python::fixture("scripted_ca.py").display().to_string();
    std::fs::write(&config, text.replace(&scripted, &script.display().to_string())).expect("config");
    let config = config.display().to_string();
    let run = |args: &[&str]| {
        let mut all = vec!["--config", config.as_str()];
        all.extend_from_slice(args);
        app.run(&all)
    };
    let keys = app.path("keys");
    run(&["key-csr", "--cn", "www.example.com", "--out", keys.to_str().expect("utf8")]).ok();
    let csr = keys.join("csr.pem");
    for _ in 0..2 {
        run(&["issue", "--profile", "p", "--cn", "www.example.com", "--csr", csr.to_str().expect("utf8")]).ok();
    }
    let first = app.path("first.pem");
    std::fs::write(&first, run(&["show", "1", "--pem"]).ok()).expect("pem");
    // Renewing 2 with certificate 1, in service: the CA deduplicated; 2 steps aside for 1.
    run(&["renew", "2", "--param", &format!("return_file={}", first.display())]).ok();
    let second = app.path("second.pem");
    std::fs::write(&second, run(&["show", "2", "--pem"]).ok()).expect("pem");
    // Renewing 1 with certificate 2, superseded: nothing new, refused.
    let r = run(&["renew", "1", "--param", &format!("return_file={}", second.display())]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("it is certificate 2, already in the inventory as superseded: the CA issued nothing new"),
        "{}",
        r.stderr
    );
    let shown = run(&["show", "1"]).ok().to_owned();
    assert!(shown.contains("active"), "certificate 1 is still in service: {shown}");
}

/// New-user walkthrough of stop 46: a certificate whose connector cannot revoke (the shipped
/// local-ca) could not even be marked revoked, so a compromised key stayed usable. With
/// `--local-only` (API: `local_only`) it is marked revoked without asking the CA: audited as
/// such, no longer renewed, and for keyCompromise its key is refused from then on.
#[test]
fn a_certificate_its_ca_cannot_revoke_is_marked_revoked_locally() {
    let app = App::new();
    let (config, _) = local_ca_lab(&app, "");
    let c = config.to_str().expect("utf8");
    let out = app.path("issued");
    let o = out.to_str().expect("utf8");
    app.run(&["--config", c, "issue", "--profile", "lab", "--cn", "leak.example.com", "--out", o]).ok();
    let at_ca = app.run(&["--config", c, "revoke", "1", "--reason", "keyCompromise"]);
    assert!(at_ca.fails(1).contains(
        "revoke is not implemented by this connector; nothing was changed (to mark it revoked in the inventory only, \
         revoke it with --local-only, local_only in the API)"
    ));
    let local =
        app.run(&["--config", c, "revoke", "1", "--reason", "keyCompromise", "--comment", "laptop", "--local-only"]);
    assert!(local.ok().contains("marked revoked in the inventory; its CA was not asked"), "{}", local.stdout);
    let shown = app.json(&["show", "1", "--json"]);
    assert_eq!(
        (&shown["status"], &shown["revocation"]["reason"]),
        (&"revoked".into(), &"keyCompromise".into()),
        "{shown}"
    );
    let audit = app.json(&["audit", "--json", "--action", "certificate.revoke"]);
    let outcomes: Vec<(&str, bool)> = audit
        .as_array()
        .expect("events")
        .iter()
        .map(|e| (e["outcome"].as_str().unwrap_or(""), e["detail"]["at_ca"].as_bool().unwrap_or(true)))
        .collect();
    assert_eq!(outcomes, [("success", false), ("failure", true)], "{audit}");
    // Its key is refused from now on, as after a revocation at the CA.
    let csr = app.path("again.csr");
    crate::helpers::sh(
        "openssl",
        &[
            "req",
            "-new",
            "-key",
            &format!("{o}/key.pem"),
            "-subj",
            "/CN=again.example.com",
            "-out",
            csr.to_str().expect("utf8"),
        ],
    );
    let reused = app.run(&["--config", c, "issue", "--profile", "lab", "--csr", csr.to_str().expect("utf8")]);
    assert!(
        reused.fails(1).contains("the CSR's key was revoked for keyCompromise (certificate 1)"),
        "{}",
        reused.stderr
    );
    let again = app.run(&["--config", c, "revoke", "1", "--reason", "keyCompromise", "--local-only"]);
    assert!(again.fails(1).contains("it is already revoked"), "{}", again.stderr);
    // Its view says the CA was not asked; a revocation at the CA is still tried (and here
    // refused by the connector, said as such rather than "already revoked").
    assert_eq!(app.json(&["show", "1", "--json"])["revocation"]["at_ca"], false);
    let at_ca = app.run(&["--config", c, "revoke", "1", "--reason", "keyCompromise"]);
    assert!(at_ca.fails(1).contains("revoke is not implemented by this connector"), "{}", at_ca.stderr);
    // Over the API too.
    let issued = app.run(&["--config", c, "issue", "--profile", "lab", "--cn", "api.example.com"]);
    assert!(issued.ok().contains("issued certificate #2"), "{}", issued.stdout);
    let server = Server::start(app, Some(&config));
    let admin = server.token("admin", "admin");
    let r = crate::helpers::http()
        .post(format!("{}/v1/certificates/2/revoke", server.base))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"reason": "cessationOfOperation", "local_only": true}))
        .send()
        .expect("revoke");
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    let view: serde_json::Value = r.json().expect("json");
    assert_eq!(view["status"], "revoked", "{view}");
}

/// Regression (API walkthrough of stop 48): local-ca backdates notBefore by 5 minutes, so a
/// 2-minute certificate was two thirds through its lifetime, counted from notBefore, when it
/// was stored: `serve` renewed every successor the round it was stored, one a round, forever.
#[test]
fn a_short_certificate_with_a_backdated_not_before_is_not_due_when_stored() {
    let app = App::new();
    let (config, _) = local_ca_lab(&app, "");
    let text = std::fs::read_to_string(&config).expect("config") + "params.validity_seconds = \"120\"\n";
    std::fs::write(&config, text).expect("config");
    let cfg = config.to_str().expect("utf8");
    app.run(&["--config", cfg, "issue", "--profile", "lab", "--cn", "short.example.com"]).ok();
    let stored = issued_now();
    let shown = app.json(&["show", "1", "--json"]);
    assert!(unix(&shown["not_before"]) < stored - 200, "local-ca backdates notBefore: {shown}");
    let v = app.json(&["renewals", "--json"]);
    let at = unix(&v["upcoming"][0]["renew_after"]);
    // Two thirds of the 120 s left from when it was stored, less at most 1 s of jitter.
    assert!(at >= stored + 60, "renews at {at}, stored at {stored}: {v}");
}

/// Regression (red-team walkthrough of stop 48): a renewal keeping its key was at the CA when
/// the certificate was revoked for keyCompromise; its successor on the compromised key was
/// answered as a success (201, exit 0) and deployed. It is stored (the CA issued it), audited
/// as on a compromised key and due at once, but not deployed, and the command says not to use
/// it.
#[test]
fn a_renewal_the_ca_issued_on_a_key_revoked_meanwhile_is_not_deployed_or_handed_out() {
    let app = App::new();
    let out = app.path("deployed");
    let profile = format!(
        "accounts = [\"ca\"]\n[renewal]\nregenerate_key = false\n[[deploy]]\nfullchain = \"{}/fullchain.pem\"\n",
        out.display()
    );
    // `slow`: the CA takes 3 s to sign, long enough to revoke in.
    let (config, _) = scripted_lab(&app, "ca", "slow", "", &[("keep", &profile)]);
    let cfg = config.to_str().expect("utf8");
    app.run(&["--config", cfg, "issue", "--profile", "keep", "--cn", "race.example.com"]).ok();
    let first = std::fs::read_to_string(out.join("fullchain.pem")).expect("deployed");
    let mut renew = app.command();
    renew.args(["--config", cfg, "renew", "1"]);
    let renewing = std::thread::spawn(move || renew.output().expect("renew"));
    std::thread::sleep(Duration::from_millis(1200));
    app.run(&["--config", cfg, "revoke", "1", "--reason", "keyCompromise"]).ok();
    let renewed = crate::helpers::Run::from(renewing.join().expect("renew thread"));
    assert_eq!(renewed.code, 3, "stored, not handed out: {} {}", renewed.stdout, renewed.stderr);
    assert!(
        renewed.stderr.contains(
            "certificate 2 is on a key revoked for keyCompromise (the CA issued it while the order was at the CA"
        ) && renewed.stderr.contains("do not use it"),
        "{}",
        renewed.stderr
    );
    assert_eq!(std::fs::read_to_string(out.join("fullchain.pem")).expect("deployed"), first, "not deployed");
    let audit = app.run(&["audit", "--json"]);
    assert!(audit.ok().contains("issued_on_compromised_key"), "{}", audit.stdout);
    let v = app.json(&["renewals", "--json"]);
    assert_eq!(v["upcoming"][0]["id"], 2, "{v}");
    assert!(unix(&v["upcoming"][0]["renew_after"]) <= issued_now(), "due at once: {v}");
}

/// API walkthrough of stop 48: an IP address as the CN issued a certificate with no
/// subjectAltName, which TLS clients refuse; it is put among the SANs as an IP address.
#[test]
fn an_ip_address_cn_is_issued_as_an_ip_san() {
    let app = App::new();
    let (config, _) = local_ca_lab(&app, "");
    let cfg = config.to_str().expect("utf8");
    app.run(&["--config", cfg, "issue", "--profile", "lab", "--cn", "192.0.2.5"]).ok();
    let shown = app.json(&["show", "1", "--json"]);
    assert_eq!(shown["sans"], serde_json::json!(["IP:192.0.2.5"]), "{shown}");
}

/// Day-two walkthrough of stop 49: a target naming a `group` and no owner wrote its key 0600,
/// which that group cannot read — the services of Debian's `ssl-cert` group read keys so —,
/// and a `chmod` by hand was undone by the next renewal. With a group the key and the
/// PKCS#12 file are 0640; without, 0600 as before.
#[test]
fn a_target_naming_a_group_writes_keys_that_group_can_read() {
    use std::os::unix::fs::MetadataExt;
    let app = App::new();
    let (shared, private) = (app.path("shared"), app.path("private"));
    let profile = format!(
        "[[deploy]]\nkey = \"{s}/key.pem\"\npkcs12 = \"{s}/bundle.p12\"\nfullchain = \"{s}/fullchain.pem\"\ngroup = \"daemon\"\n\
         [[deploy]]\nkey = \"{p}/key.pem\"\nfullchain = \"{p}/fullchain.pem\"\n",
        s = shared.display(),
        p = private.display()
    );
    let (config, _) = local_ca_lab(&app, &profile);
    app.run(&["--config", s(&config), "issue", "--profile", "lab", "--cn", "grp.example.com"]).ok();
    let daemon_gid = crate::helpers::sh("getent", &["group", "daemon"]);
    let daemon_gid: u32 = daemon_gid.split(':').nth(2).and_then(|g| g.trim().parse().ok()).expect("daemon's gid");
    for (file, mode) in [("key.pem", 0o640), ("bundle.p12", 0o640), ("fullchain.pem", 0o644)] {
        let meta = std::fs::metadata(shared.join(file)).expect(file);
        assert_eq!((meta.permissions().mode() & 0o777, meta.gid()), (mode, daemon_gid), "{file}");
    }
    let meta = std::fs::metadata(private.join("key.pem")).expect("key");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "no group: the key stays the owner's");
}

/// Review of stop 49: a hook runs under a watcher, so its `$PPID` is no longer certhost; a
/// post-hook doing `kill -HUP $PPID` — serve reading its own renewed TLS certificate, or its
/// configuration — signalled the watcher, and nothing happened. The watcher passes it on.
/// Red team of stop 50: it passed TERM, INT, USR1 and USR2 on too, so a hook cleaning up its
/// process group (`trap 'kill 0' EXIT`) stopped serve, and USR1 killed it: only HUP goes on.
#[test]
fn a_hook_signalling_its_parent_reaches_serve() {
    let app = App::new();
    let deploy = app.path("deployed");
    let hook =
        "kill -HUP $PPID; for s in USR1 USR2 INT TERM; do kill -$s $PPID; done; trap 'kill 0' EXIT; sleep 1 & true";
    let profile = format!("[[deploy]]\ncert = \"{d}/cert.pem\"\npost_hook = \"{hook}\"\n", d = deploy.display());
    let (config, _) = local_ca_lab(&app, &profile);
    let server = Server::start(app, Some(&config));
    let token = server.token("ops", "operator");
    let issued = crate::helpers::http()
        .post(format!("{}/v1/certificates", server.base))
        .bearer_auth(&token)
        .json(&serde_json::json!({"profile": "lab", "cn": "hup.example.com"}))
        .send()
        .expect("issue");
    assert_eq!(issued.status(), reqwest::StatusCode::CREATED, "{}", server.log());
    let reloaded = wait_for(20, || server.log().contains("configuration reloaded").then_some(()));
    assert!(reloaded.is_some(), "the hook's SIGHUP did not reach serve: {}", server.log());
    let deployed = wait_for(20, || {
        let shown = server.app.json(&["show", "--json", "1"]);
        shown["deployments"].as_array().is_some_and(|d| !d.is_empty()).then_some(())
    });
    assert!(deployed.is_some(), "the deployment was recorded: {}", server.log());
    std::thread::sleep(std::time::Duration::from_millis(500));
    let mut server = server;
    assert!(server.child.try_wait().expect("wait").is_none(), "serve is still running: {}", server.log());
    let alive = crate::helpers::http().get(format!("{}/healthz", server.base)).send().expect("healthz");
    assert_eq!(alive.status(), reqwest::StatusCode::OK);
}

/// Scale walkthrough of stop 50: serve renewed 20 certificates per CA account per round (30 s
/// by default), however fast the CA: 6,000 certificates due at once took two and a half
/// hours, and most expired first. A lane now goes on with its account's next due ones once
/// its batch is done: 50 due together renew in the round that finds them.
#[test]
fn a_round_renews_every_certificate_due_not_only_its_first_batch() {
    let app = App::new();
    let (config, _) = local_ca_lab(&app, "[renewal]\nat_percent = 1\n");
    let text = std::fs::read_to_string(&config).expect("config") + "params.validity_seconds = \"3600\"\n";
    std::fs::write(&config, text).expect("config");
    // Rounds 30 s apart, the default: the first at the start, before anything is due.
    let serve_started = std::time::Instant::now();
    let server = Server::start(app, Some(&config));
    let token = server.token("ops", "operator");
    let c = crate::helpers::http();
    let started = std::time::Instant::now();
    for n in 0..50 {
        let issued = c
            .post(format!("{}/v1/certificates", server.base))
            .bearer_auth(&token)
            .json(&serde_json::json!({"profile": "lab", "cn": format!("storm{n}.example.com")}))
            .send()
            .expect("issue");
        assert_eq!(issued.status(), reqwest::StatusCode::CREATED, "{}", server.log());
    }
    // Due 36 s after issue (1 % of an hour): the round at 30 s finds none or some, the one
    // at 60 s all of them; renewed there, all 50 are superseded well before the round at 90 s.
    let originals_renewed = || {
        let list = server.app.json(&["list", "--json", "--status", "superseded", "--limit", "0"]);
        list.as_array().map_or(0, |l| l.iter().filter(|c| c["id"].as_i64().is_some_and(|id| id <= 50)).count())
    };
    // Before the round at 90 s from serve's start, where 20 a round would have got to 50.
    let left = 85u64.saturating_sub(serve_started.elapsed().as_secs());
    assert!(left > 50, "issuing took {:?}", serve_started.elapsed());
    let all = wait_for(left, || (originals_renewed() == 50).then_some(()));
    assert!(
        all.is_some(),
        "after {:?}, {} of 50 renewed; log: {}",
        started.elapsed(),
        originals_renewed(),
        server.log()
    );
}
