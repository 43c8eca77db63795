//! The HTTP API through the real server on port 0, driven over real HTTP.

use reqwest::StatusCode;

use crate::helpers::{App, OpensslCa, Server, http};

fn problem(resp: reqwest::blocking::Response, status: StatusCode) -> serde_json::Value {
    assert_eq!(resp.status(), status);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let body: serde_json::Value = resp.json().expect("problem json");
    assert_eq!(body["status"], status.as_u16());
    assert!(body["title"].is_string() && body["detail"].is_string());
    assert!(body["code"].as_str().is_some_and(|c| !c.is_empty()), "every problem carries a code: {body}");
    body
}

/// Regression (review of stop 33): the listener layer as an attacker hits it. Every answer is
/// `no-store` and `nosniff`; a body over the limit that asks first is refused before it is
/// sent, not invited with `100 Continue`; two
/// `Authorization` headers are refused; a 400 quotes at most 64 characters of a lookup; a
/// request head of 100 KB is refused rather than buffered (hyper's own 431).
#[test]
fn the_listener_refuses_what_it_should_before_reading_it_and_marks_every_answer_private() {
    use std::io::{Read, Write};
    let server = Server::start(App::new(), None);
    let c = http();
    let admin = server.token("root", "admin");
    let health = c.get(format!("{}/healthz", server.base)).send().expect("healthz");
    assert_eq!(health.headers()["cache-control"], "no-store");
    assert_eq!(health.headers()["x-content-type-options"], "nosniff");
    let addr = server.base.trim_start_matches("http://").to_owned();
    let raw = |request: &str| -> String {
        let mut s = std::net::TcpStream::connect(&addr).expect("connect");
        s.set_read_timeout(Some(std::time::Duration::from_secs(10))).expect("timeout");
        s.write_all(request.as_bytes()).expect("send");
        let mut answer = vec![0u8; 4096];
        let n = s.read(&mut answer).unwrap_or(0);
        String::from_utf8_lossy(&answer[..n]).into_owned()
    };
    // Headers only, a 5 MB body declared and never sent: answered at once, no 100-continue.
    let answer = raw(&format!(
        "POST /v1/certificates HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {admin}\r\nContent-Type: application/json\r\n\
         Content-Length: 5000000\r\nExpect: 100-continue\r\n\r\n"
    ));
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("exceeds the 1024 KiB limit"), "{answer}");
    let answer = raw(&format!(
        "GET /v1/certificates HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {admin}\r\nAuthorization: Bearer cht_x\r\n\r\n"
    ));
    assert!(answer.starts_with("HTTP/1.1 400") && answer.contains("more than one Authorization header"), "{answer}");
    let body = problem(
        c.get(format!("{}/v1/certificates/{}", server.base, "a".repeat(5_000)))
            .bearer_auth(&admin)
            .send()
            .expect("get"),
        StatusCode::BAD_REQUEST,
    );
    assert!(body["detail"].as_str().expect("detail").len() < 200, "{body}");
    let answer = raw(&format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(100_000)));
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    assert_eq!(c.get(format!("{}/healthz", server.base)).send().expect("still serving").status(), StatusCode::OK);
}

/// Security review of stop 36: the master key, taken out of the environment at start, was
/// still in `/proc/PID/environ` (the environment the process started with), where root reads
/// it whatever the process's undumpable flag says. Only root (or the same user, were it
/// dumpable) can read that file; the test runs the check where it can.
#[test]
fn the_master_key_is_not_left_in_the_environment_the_server_started_with() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: only root reads an undumpable process's /proc/PID/environ");
        return;
    }
    let server = Server::start(App::new(), None);
    let environ = match std::fs::read(format!("/proc/{}/environ", server.child.id())) {
        Ok(bytes) => bytes,
        // Root without CAP_SYS_PTRACE (a default container) cannot read it either.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            eprintln!("skipped: reading an undumpable process's /proc/PID/environ needs CAP_SYS_PTRACE");
            return;
        }
        Err(e) => panic!("reading the server's /proc/PID/environ: {e}"),
    };
    let environ = String::from_utf8_lossy(&environ);
    assert!(environ.contains("CERTHOST_DATA_DIR="), "read the server's environment: {environ}");
    assert!(!environ.contains(&server.app.master_key), "the master key is readable in /proc/PID/environ");
}

/// A token made to expire is accepted until then and refused after with a 401 that says it
/// expired (not that it is unknown); one made through the API carries its expiry too.
#[test]
fn an_expiring_token_works_until_its_time_and_is_then_refused_as_expired() {
    let server = Server::start(App::new(), None);
    let c = http();
    let url = format!("{}/v1/certificates", server.base);
    let r = server.app.run(&["token", "create", "--name", "pipeline", "--role", "auditor", "--expires-in", "3s"]);
    let short = r.ok().trim().to_owned();
    assert!(r.stderr.contains("created, expires at 20"), "{}", r.stderr);
    let started = std::time::Instant::now();
    assert_eq!(c.get(&url).bearer_auth(&short).send().expect("live").status(), StatusCode::OK);
    let listed = server.app.run(&["token", "list"]);
    assert!(listed.ok().contains("EXPIRES"), "{}", listed.stdout);
    std::thread::sleep(std::time::Duration::from_secs(4).saturating_sub(started.elapsed()));
    let body = problem(c.get(&url).bearer_auth(&short).send().expect("expired"), StatusCode::UNAUTHORIZED);
    let detail = body["detail"].as_str().expect("detail");
    assert!(detail.starts_with("the bearer token expired at 20"), "{body}");
    assert!(server.app.run(&["token", "list"]).ok().contains("(expired)"));

    let bad = server.app.run(&["token", "create", "--name", "x", "--role", "admin", "--expires-in", "90"]);
    assert!(bad.fails(2).contains("has no unit: add s, m, h, d or w"), "{}", bad.stderr);

    let admin = server.token("root", "admin");
    let tokens = format!("{}/v1/tokens", server.base);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64;
    let created: serde_json::Value = c
        .post(&tokens)
        .bearer_auth(&admin)
        .json(&serde_json::json!({"name": "contractor", "role": "operator", "expires_at": now + 86_400}))
        .send()
        .expect("create")
        .json()
        .expect("json");
    // Answered in RFC 3339, as every time the API gives (API review of stop 38: Unix seconds).
    let day_later = time::OffsetDateTime::from_unix_timestamp(now + 86_400)
        .expect("time")
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format");
    assert_eq!(created["expires_at"], day_later.as_str(), "{created}");
    let token = created["token"].as_str().expect("token");
    assert_eq!(c.get(&url).bearer_auth(token).send().expect("live").status(), StatusCode::OK);
    let body = problem(
        c.post(&tokens)
            .bearer_auth(&admin)
            .json(&serde_json::json!({"name": "late", "role": "operator", "expires_at": now - 1}))
            .send()
            .expect("past"),
        StatusCode::UNPROCESSABLE_ENTITY,
    );
    assert!(body["detail"].as_str().expect("detail").ends_with("is not in the future"), "{body}");
    let listed: serde_json::Value = c.get(&tokens).bearer_auth(&admin).send().expect("list").json().expect("json");
    let expiries: Vec<_> = listed["items"].as_array().expect("items").iter().map(|t| t["expires_at"].clone()).collect();
    assert_eq!(expiries.len(), 3, "{listed}");
    assert!(expiries[1].is_null() && expiries[2] == day_later.as_str(), "{listed}");
    // RFC 3339 is taken as well as Unix seconds; anything else is refused, saying what to send.
    let created: serde_json::Value = c
        .post(&tokens)
        .bearer_auth(&admin)
        .json(&serde_json::json!({"name": "text-time", "role": "auditor", "expires_at": day_later}))
        .send()
        .expect("create")
        .json()
        .expect("json");
    assert_eq!(created["expires_at"], day_later.as_str(), "{created}");
    let body = problem(
        c.post(&tokens)
            .bearer_auth(&admin)
            .json(&serde_json::json!({"name": "bad-time", "role": "auditor", "expires_at": "tomorrow"}))
            .send()
            .expect("bad"),
        StatusCode::UNPROCESSABLE_ENTITY,
    );
    assert!(body["detail"].as_str().expect("detail").contains("give Unix seconds, or RFC 3339"), "{body}");
}

/// Operator review of stop 39: with the inventory's files taking no writes (made immutable,
/// as a failing disk does), a request that stores answered 500, `/readyz` said ready while
/// every renewal failed, and `list` and `renewals`, which only look, failed too.
#[test]
fn a_database_that_takes_no_writes_is_a_503_and_not_ready_and_commands_that_look_still_work() {
    let server = Server::start(App::new(), None);
    let admin = server.token("root", "admin");
    let files: Vec<std::path::PathBuf> = ["certhost.db", "certhost.db-wal"]
        .iter()
        .map(|f| server.app.data_dir().join(f))
        .filter(|p| p.exists())
        .collect();
    // chattr +i needs CAP_LINUX_IMMUTABLE (root) and a filesystem that keeps the flag.
    let frozen = std::process::Command::new("chattr").arg("+i").args(&files).status().is_ok_and(|s| s.success());
    if !frozen {
        eprintln!("skipped: chattr +i is not available to this user or on this filesystem");
        return;
    }
    struct Thaw(Vec<std::path::PathBuf>);
    impl Drop for Thaw {
        fn drop(&mut self) {
            let _ = std::process::Command::new("chattr").arg("-i").args(&self.0).status();
        }
    }
    let thaw = Thaw(files);
    let c = http();
    let ready = c.get(format!("{}/readyz", server.base)).send().expect("readyz");
    let body = problem(ready, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body["detail"].as_str().expect("detail").contains("cannot store changes"), "{body}");
    let made = c
        .post(format!("{}/v1/tokens", server.base))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"name": "while-frozen", "role": "auditor"}))
        .send()
        .expect("token");
    problem(made, StatusCode::SERVICE_UNAVAILABLE);
    // Commands that only look still answer from what is stored.
    server.app.run(&["list"]).ok();
    server.app.run(&["renewals"]).ok();
    drop(thaw);
    // And serve takes writes again once the disk does (the probe's result is kept 5 s, a
    // change the disk refused counts 10 s).
    let ready_again = (0..80).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(250));
        c.get(format!("{}/readyz", server.base)).send().expect("readyz").status() == StatusCode::OK
    });
    assert!(ready_again, "{}", server.log());
}

#[test]
fn probes_auth_and_errors_speak_problem_json() {
    let server = Server::start(App::new(), None);
    let c = http();
    assert_eq!(c.get(format!("{}/healthz", server.base)).send().expect("healthz").status(), StatusCode::OK);
    let ready: serde_json::Value =
        c.get(format!("{}/readyz", server.base)).send().expect("readyz").json().expect("json");
    assert_eq!(ready["database"], "ok");
    assert_eq!(ready["accounts_failing"], 0, "{ready}");
    // Account names only to a caller with a token: anyone who reaches the port may probe.
    assert!(ready.get("accounts").is_none(), "{ready}");

    let url = format!("{}/v1/certificates", server.base);
    problem(c.get(&url).send().expect("no token"), StatusCode::UNAUTHORIZED);
    problem(c.get(&url).bearer_auth("cht_not-a-real-token").send().expect("bad token"), StatusCode::UNAUTHORIZED);

    let auditor = server.token("audit-bot", "auditor");
    assert_eq!(c.get(&url).bearer_auth(&auditor).send().expect("list").status(), StatusCode::OK);
    let body = problem(
        c.post(&url).bearer_auth(&auditor).json(&serde_json::json!({"profile": "x", "cn": "a"})).send().expect("post"),
        StatusCode::FORBIDDEN,
    );
    assert_eq!(body["detail"], "role auditor may not request certificates");

    // A revoked token is refused at once.
    server.app.run(&["token", "revoke", "audit-bot"]).ok();
    problem(c.get(&url).bearer_auth(&auditor).send().expect("revoked"), StatusCode::UNAUTHORIZED);

    let admin = server.token("root", "admin");
    let ready: serde_json::Value =
        c.get(format!("{}/readyz", server.base)).bearer_auth(&admin).send().expect("readyz").json().expect("json");
    assert!(ready["accounts"].is_array(), "{ready}");
    // Query strings are refused in certhost's words, naming the parameter, not the framework.
    let body = problem(
        c.get(format!("{url}?bogus=1")).bearer_auth(&admin).send().expect("bad query"),
        StatusCode::BAD_REQUEST,
    );
    let detail = body["detail"].as_str().expect("detail");
    assert!(detail.starts_with("the query string has an unknown parameter `bogus`"), "{body}");
    let body = problem(
        c.get(format!("{url}?limit=ten")).bearer_auth(&admin).send().expect("bad limit"),
        StatusCode::BAD_REQUEST,
    );
    assert_eq!(body["detail"], "the query parameter limit must be a whole number from 1 to 1000");
    // A parameter twice, and a cursor no page gave, in certhost's words (API review of stop 38).
    for (query, said) in [
        ("limit=1&limit=2", "the query parameter limit is given more than once"),
        ("cursor=-5", "the query parameter cursor must be the next_cursor of an earlier page"),
        ("cursor=0", "the query parameter cursor must be the next_cursor of an earlier page"),
    ] {
        let body = problem(
            c.get(format!("{url}?{query}")).bearer_auth(&admin).send().expect("query"),
            StatusCode::BAD_REQUEST,
        );
        assert_eq!(body["detail"], said, "{query}");
    }
    // Lists that take no parameters refuse one too (`?limit=0` answered every item).
    for list in ["tokens", "accounts", "profiles"] {
        let body = problem(
            c.get(format!("{}/v1/{list}?limit=0", server.base)).bearer_auth(&admin).send().expect("list"),
            StatusCode::BAD_REQUEST,
        );
        assert_eq!(body["detail"], "the query string has an unknown parameter `limit`: this request takes none");
    }
    // A change refuses one before doing anything: `?dry_run=true` issued a certificate.
    let body = problem(
        c.post(format!("{url}?dry_run=true"))
            .bearer_auth(&admin)
            .json(&serde_json::json!({"profile": "x", "cn": "a"}))
            .send()
            .expect("post with query"),
        StatusCode::BAD_REQUEST,
    );
    assert_eq!(
        body["detail"],
        "the query string has an unknown parameter `dry_run`: a POST takes none, nothing was done"
    );
    let body = problem(
        c.delete(format!("{}/v1/tokens/root?force=1", server.base)).bearer_auth(&admin).send().expect("delete"),
        StatusCode::BAD_REQUEST,
    );
    assert!(body["detail"].as_str().expect("detail").contains("`force`: a DELETE takes none"), "{body}");
    assert_eq!(
        c.get(format!("{}/v1/tokens", server.base)).bearer_auth(&admin).send().expect("still").status(),
        StatusCode::OK
    );
    let body = problem(
        c.get(format!("{url}?serial=zz")).bearer_auth(&admin).send().expect("bad serial"),
        StatusCode::BAD_REQUEST,
    );
    assert_eq!(body["detail"], "serial \"zz\" is not a hexadecimal number");
    // Quoted as given, not as normalised.
    let body = problem(
        c.get(format!("{url}?serial=0xzz")).bearer_auth(&admin).send().expect("bad serial"),
        StatusCode::BAD_REQUEST,
    );
    assert_eq!(body["detail"], "serial \"0xzz\" is not a hexadecimal number");
    let body = problem(
        c.get(format!("{}/v1/orders?cursor=99999999999999999999", server.base))
            .bearer_auth(&admin)
            .send()
            .expect("big"),
        StatusCode::BAD_REQUEST,
    );
    assert_eq!(body["detail"], "the query parameter cursor must be the next_cursor of an earlier page");
    // An order id past what an id can be is not found, as for certificates.
    let body = problem(
        c.get(format!("{}/v1/orders/99999999999999999999", server.base)).bearer_auth(&admin).send().expect("big id"),
        StatusCode::NOT_FOUND,
    );
    assert_eq!(body["detail"], "order 99999999999999999999 not found");
    problem(
        c.post(&url)
            .bearer_auth(&admin)
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .expect("bad json"),
        StatusCode::BAD_REQUEST,
    );
    // Another content type is what is wrong: 415, as for a secret sent as a form.
    let body = problem(
        c.post(&url).bearer_auth(&admin).header("content-type", "text/plain").body("{}").send().expect("text"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
    );
    assert_eq!(body["detail"], "send the body as JSON in UTF-8 (content-type: application/json)");
    // Declared in another charset, it is not read as UTF-8.
    problem(
        c.post(&url)
            .bearer_auth(&admin)
            .header("content-type", "application/json; charset=latin1")
            .body("{}")
            .send()
            .expect("latin1"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
    );
    // A body where one may be left out is held to the same rule (a text/plain one renewed a
    // certificate); left out, any content type or none will do.
    let body = problem(
        c.post(format!("{}/v1/certificates/1/renew", server.base))
            .bearer_auth(&admin)
            .header("content-type", "text/plain")
            .body("{}")
            .send()
            .expect("text renew"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
    );
    assert_eq!(body["detail"], "send the body as JSON in UTF-8 (content-type: application/json)");
    let body = problem(
        c.post(format!("{}/v1/certificates/999999/renew", server.base))
            .bearer_auth(&admin)
            .header("content-type", "text/plain")
            .send()
            .expect("empty renew"),
        StatusCode::NOT_FOUND,
    );
    assert_eq!(body["detail"], "certificate 999999 not found");
    let missing = problem(
        c.post(&url)
            .bearer_auth(&admin)
            .json(&serde_json::json!({"profile": "nope", "cn": "a.example"}))
            .send()
            .expect("no profile"),
        StatusCode::NOT_FOUND,
    );
    assert_eq!(missing["detail"], "profile nope not found");
    problem(c.get(format!("{}/v1/nothing-here", server.base)).send().expect("404"), StatusCode::NOT_FOUND);
    // What axum itself refuses speaks problem+json too: a path segment that is not an id, a
    // raw body over the limit.
    let body = problem(
        c.get(format!("{}/v1/orders/abc", server.base)).bearer_auth(&admin).send().expect("bad id"),
        StatusCode::BAD_REQUEST,
    );
    assert_eq!(body["detail"], "\"abc\" is not an order id (a whole number)");
    let big_raw = c
        .post(format!("{}/v1/orders/1/decline", server.base))
        .bearer_auth(&admin)
        .body(vec![b' '; 2 * 1024 * 1024])
        .send()
        .expect("big raw");
    problem(big_raw, StatusCode::PAYLOAD_TOO_LARGE);
    // JSON of the wrong shape is 422 naming the field: a wrong type for an enum, a repeated
    // key (which serde would settle silently by keeping the last), a definition's field.
    let c = http();
    let body = problem(
        c.post(format!("{}/v1/tokens", server.base))
            .bearer_auth(&admin)
            .json(&serde_json::json!({"name": "x", "role": 5}))
            .send()
            .expect("role"),
        StatusCode::UNPROCESSABLE_ENTITY,
    );
    assert!(body["detail"].as_str().expect("detail").starts_with("role: "), "{body}");
    let body = problem(
        c.post(&url)
            .bearer_auth(&admin)
            .header("content-type", "application/json")
            .body(r#"{"profile": "p", "cn": "a.example", "params": {"who": "abc", "who": "xyz"}}"#)
            .send()
            .expect("duplicate"),
        StatusCode::UNPROCESSABLE_ENTITY,
    );
    assert!(body["detail"].as_str().expect("detail").contains("repeats the key \"who\""), "{body}");
    // Regression (review of stop 30): an array was read by position into the body's fields,
    // or refused as "expected struct IssueBody with 5 elements".
    let body = problem(
        c.post(&url).bearer_auth(&admin).json(&serde_json::json!(["p", "a.example"])).send().expect("array"),
        StatusCode::UNPROCESSABLE_ENTITY,
    );
    assert_eq!(body["detail"], "the request body must be a JSON object", "{body}");
    let body = problem(
        c.post(format!("{}/v1/accounts", server.base))
            .bearer_auth(&admin)
            .json(&serde_json::json!({"name": "t", "connector": "/x.py", "timeout_seconds": -1}))
            .send()
            .expect("definition"),
        StatusCode::UNPROCESSABLE_ENTITY,
    );
    assert!(body["detail"].as_str().expect("detail").contains("timeout_seconds: "), "{body}");
    let big = vec![b'x'; 2 * 1024 * 1024];
    let resp =
        c.post(&url).bearer_auth(&admin).header("content-type", "application/json").body(big).send().expect("big");
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Still serving after all of that. (A fresh client: the server rightly closes the
    // connection whose oversized body it refused to read, so a pooled one may be dead.)
    assert_eq!(http().get(format!("{}/healthz", server.base)).send().expect("healthz").status(), StatusCode::OK);
}

#[test]
fn inventory_reads_paginate_and_download_pem() {
    let app = App::new();
    let ca = OpensslCa::new(&app.path("ca"), "API Root");
    let mut certs = Vec::new();
    for i in 0..3 {
        let (cert, _) = ca.issue(&format!("host{i}.example"), 30);
        certs.push(cert);
    }
    let paths: Vec<&str> = certs.iter().map(|p| p.to_str().expect("utf8")).collect();
    let mut args = vec!["import"];
    args.extend(paths);
    app.run(&args).ok();
    let server = Server::start(app, None);
    let token = server.token("reader", "auditor");
    let c = http();
    let page1: serde_json::Value = c
        .get(format!("{}/v1/certificates?limit=2", server.base))
        .bearer_auth(&token)
        .send()
        .expect("page")
        .json()
        .expect("json");
    assert_eq!(page1["items"].as_array().map(Vec::len), Some(2));
    let cursor = page1["next_cursor"].as_i64().expect("cursor");
    let page2: serde_json::Value = c
        .get(format!("{}/v1/certificates?limit=2&cursor={cursor}", server.base))
        .bearer_auth(&token)
        .send()
        .expect("page")
        .json()
        .expect("json");
    assert_eq!(page2["items"].as_array().map(Vec::len), Some(1));
    assert!(page2["next_cursor"].is_null());
    let sha256 = page1["items"][0]["sha256"].as_str().expect("sha").to_owned();
    let one: serde_json::Value = c
        .get(format!("{}/v1/certificates/{sha256}", server.base))
        .bearer_auth(&token)
        .send()
        .expect("get")
        .json()
        .expect("json");
    assert_eq!(one["common_name"], "host0.example");
    let pem = c
        .get(format!("{}/v1/certificates/{sha256}/pem", server.base))
        .bearer_auth(&token)
        .send()
        .expect("pem")
        .text()
        .expect("text");
    assert_eq!(pem.trim(), std::fs::read_to_string(&certs[0]).expect("cert").trim());
    let audit: serde_json::Value = c
        .get(format!("{}/v1/audit?action=certificate.", server.base))
        .bearer_auth(&token)
        .send()
        .expect("audit")
        .json()
        .expect("json");
    assert_eq!(audit["items"].as_array().map(Vec::len), Some(3));
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let mut server = Server::start(App::new(), None);
    let pid = server.child.id();
    let status = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().expect("kill");
    assert!(status.success());
    let exit = server.child.wait().expect("wait");
    assert_eq!(exit.code(), Some(0), "log: {}", server.log());
}

#[test]
fn sighup_reloads_profiles_from_files() {
    let app = App::new();
    let (conf, config) = one_script_account(&app, "scripted_ca.py", "first");
    let server = Server::start(app, Some(&config));
    let token = server.token("reader", "auditor");
    let names = || profile_names(&server, &token);
    assert_eq!(names(), ["first"]);
    std::fs::write(conf.join("profiles/second.toml"), "accounts = [\"a\"]\n").expect("profile");
    let pid = server.child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-HUP", &pid]).status().expect("kill").success());
    let mut seen = Vec::new();
    for _ in 0..50 {
        seen = names();
        if seen.len() == 2 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(seen, ["first", "second"], "log: {}", server.log());
}

/// A profile file took over a profile of the same name made with the API on the next reload
/// (or CLI command), and deleting the file then deleted the profile; accounts alike.
#[test]
fn a_file_never_takes_over_a_profile_or_account_made_with_the_api() {
    let app = App::new();
    let conf = app.path("conf");
    std::fs::create_dir_all(conf.join("profiles")).expect("mkdir");
    let script = crate::python::fixture("scripted_ca.py");
    let config = conf.join("certhost.toml");
    let account = |name: &str| format!("[accounts.{name}]\nconnector = \"{}\"\n", script.display());
    std::fs::write(&config, account("a")).expect("config");
    let server = Server::start(app, Some(&config));
    let admin = server.token("root", "admin");
    let c = http();
    let get = |path: &str| c.get(format!("{}{path}", server.base)).bearer_auth(&admin).send().expect("get");
    let post = |path: &str, body: serde_json::Value| {
        c.post(format!("{}{path}", server.base)).bearer_auth(&admin).json(&body).send().expect("post")
    };
    let made = post("/v1/profiles", serde_json::json!({"name": "clash", "description": "from api", "accounts": ["a"]}));
    assert_eq!(made.status(), StatusCode::CREATED);
    let made = post("/v1/accounts", serde_json::json!({"name": "mine", "connector": script}));
    assert_eq!(made.status(), StatusCode::CREATED);
    let reloads = |word: &str| server.log().matches(word).count();
    let hup = |word: &str| {
        let before = reloads(word);
        let pid = server.child.id().to_string();
        assert!(std::process::Command::new("kill").args(["-HUP", &pid]).status().expect("kill").success());
        for _ in 0..100 {
            if reloads(word) > before {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("no {word:?} after SIGHUP; log: {}", server.log());
    };
    let stored = |path: &str| -> (String, String) {
        let r = get(path);
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let v: serde_json::Value = r.json().expect("json");
        (v["description"].as_str().unwrap_or_default().to_owned(), v["origin"].as_str().expect("origin").to_owned())
    };

    // A profile file of that name: a configuration error, and nothing of the files applies.
    std::fs::write(conf.join("profiles/clash.toml"), "description = \"from file\"\naccounts = [\"a\"]\n")
        .expect("file");
    std::fs::write(conf.join("profiles/other.toml"), "accounts = [\"a\"]\n").expect("file");
    hup("configuration reload failed");
    assert!(
        server.log().contains("profile clash already exists with origin api, and a file cannot take it over"),
        "log: {}",
        server.log()
    );
    assert_eq!(stored("/v1/profiles/clash"), ("from api".to_owned(), "api".to_owned()));
    assert_eq!(get("/v1/profiles/other").status(), StatusCode::NOT_FOUND, "nothing of the files applied");
    // Every CLI command syncs the files first: it refuses the same way, naming the file.
    let cfg = config.to_str().expect("utf8");
    let err = server.app.run(&["--config", cfg, "profile", "list"]).fails(1).to_owned();
    assert!(err.contains("clash.toml: profile clash already exists with origin api"), "{err}");
    assert_eq!(stored("/v1/profiles/clash"), ("from api".to_owned(), "api".to_owned()));

    // The file gone, the profile made with the API is still there.
    std::fs::remove_file(conf.join("profiles/clash.toml")).expect("rm");
    hup("configuration reloaded");
    assert_eq!(stored("/v1/profiles/clash"), ("from api".to_owned(), "api".to_owned()));
    assert_eq!(stored("/v1/profiles/other").1, "file", "the rest of the files applies again");

    // The same for an account defined in certhost.toml.
    std::fs::write(&config, account("a") + &account("mine")).expect("config");
    let err = server.app.run(&["--config", cfg, "account", "list"]).fails(1).to_owned();
    assert!(err.contains("account mine already exists with origin api"), "{err}");
    hup("configuration reload failed");
    assert_eq!(stored("/v1/accounts/mine").1, "api");
    std::fs::write(&config, account("a")).expect("config");
    hup("configuration reloaded");
    assert_eq!(stored("/v1/accounts/mine").1, "api", "not deleted with the file's definition");
}

/// Lost updates: concurrent creations of one name all answered 201 (each checked that the
/// name was free, then wrote over the others), and a PUT that was checking its connector
/// while a DELETE went through made the deleted account again.
#[test]
fn concurrent_creations_of_one_name_make_one_and_an_update_never_undoes_a_delete() {
    let app = App::new();
    // A connector slow to load holds each request in its connector check, the race window.
    let slow = app.path("slow_load.py");
    std::fs::write(&slow, "import time\ntime.sleep(1.5)\nPARAMETERS = []\n\ndef certificate_request(csr, common_name, args):\n    raise Exception('unused')\n")
        .expect("script");
    let slow = slow.to_str().expect("utf8").to_owned();
    let server = Server::start(app, None);
    let admin = server.token("root", "admin");
    let base = server.base.clone();
    let concurrently = |method: reqwest::Method, path: String, bodies: Vec<serde_json::Value>| -> Vec<StatusCode> {
        let threads: Vec<_> = bodies
            .into_iter()
            .map(|body| {
                let (method, url, token) = (method.clone(), format!("{base}{path}"), admin.clone());
                std::thread::spawn(move || {
                    http().request(method, url).bearer_auth(token).json(&body).send().expect("send").status()
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().expect("thread")).collect()
    };
    let created = |statuses: &[StatusCode]| statuses.iter().filter(|s| **s == StatusCode::CREATED).count();
    let audit = |name: &str| -> Vec<String> {
        let v: serde_json::Value = http()
            .get(format!("{base}/v1/audit?object_id={name}"))
            .bearer_auth(&admin)
            .send()
            .expect("audit")
            .json()
            .expect("json");
        v["items"]
            .as_array()
            .expect("items")
            .iter()
            .rev()
            .map(|e| e["action"].as_str().expect("action").to_owned())
            .collect()
    };

    let accounts: Vec<_> = (0..6)
        .map(|i| serde_json::json!({"name": "twin", "description": format!("writer {i}"), "connector": slow}))
        .collect();
    let statuses = concurrently(reqwest::Method::POST, "/v1/accounts".into(), accounts);
    assert_eq!(created(&statuses), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == StatusCode::CREATED || *s == StatusCode::CONFLICT), "{statuses:?}");
    assert_eq!(audit("twin"), ["account.create"]);

    // An account the server has not loaded yet (made with the CLI), so each profile request
    // waits in its connector check.
    server.app.run(&["account", "create", "cold", "--connector", &slow]).ok();
    let profiles: Vec<_> = (0..6)
        .map(|i| serde_json::json!({"name": "twin", "description": format!("writer {i}"), "accounts": ["cold"]}))
        .collect();
    let statuses = concurrently(reqwest::Method::POST, "/v1/profiles".into(), profiles);
    assert_eq!(created(&statuses), 1, "{statuses:?}");
    assert_eq!(audit("twin"), ["account.create", "profile.create"]);

    // PUT checks its (changed, so reloaded: slow) connector; a DELETE lands meanwhile.
    let put = {
        let (url, token, slow) = (format!("{base}/v1/accounts/twin"), admin.clone(), slow.clone());
        std::thread::spawn(move || {
            let body = serde_json::json!({"description": "v2", "connector": slow});
            let r = http().put(url).bearer_auth(token).json(&body).send().expect("put");
            (r.status(), r.text().expect("body"))
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(500));
    let c = http();
    // The profile made above uses another account; this one is free to go.
    let deleted = c.delete(format!("{base}/v1/accounts/twin")).bearer_auth(&admin).send().expect("delete");
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let (status, body) = put.join().expect("thread");
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body.contains("account twin not found"), "{body}");
    let gone = c.get(format!("{base}/v1/accounts/twin")).bearer_auth(&admin).send().expect("get");
    assert_eq!(gone.status(), StatusCode::NOT_FOUND, "the deleted account stays deleted");
    assert_eq!(audit("twin"), ["account.create", "profile.create", "account.delete"]);
}

/// `n` issue requests at profile `hang`, each on a thread of its own, answered when its call
/// ends.
fn hanging_requests(base: &str, token: &str, n: usize) -> Vec<std::thread::JoinHandle<reqwest::blocking::Response>> {
    (0..n)
        .map(|_| {
            let (base, token) = (base.to_owned(), token.to_owned());
            std::thread::spawn(move || {
                http()
                    .post(format!("{base}/v1/certificates"))
                    .bearer_auth(&token)
                    .json(&serde_json::json!({"profile": "hang", "cn": "loop.example.com"}))
                    .send()
                    .expect("issue")
            })
        })
        .collect()
}

#[test]
fn a_hanging_connector_costs_one_request_never_the_api() {
    let app = App::new();
    let conf = app.path("conf");
    std::fs::create_dir_all(conf.join("profiles")).expect("mkdir");
    std::fs::write(
        conf.join("certhost.toml"),
        format!(
            "[accounts.hang]\nconnector = \"{}\"\ntimeout_seconds = 4\n",
            crate::python::fixture("hostile/infinite_loop.py").display()
        ),
    )
    .expect("config");
    std::fs::write(conf.join("profiles/hang.toml"), "accounts = [\"hang\"]\n").expect("profile");
    let server = Server::start(app, Some(&conf.join("certhost.toml")));
    let token = server.token("ops", "operator");
    let base = server.base.clone();
    // More hanging requests than the pool has connections (32): each holds its connection
    // across its call, but calls may hold only their share of the pool.
    let hung = hanging_requests(&base, &token, 40);
    // While the scripts loop, everything else answers at once.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    for _ in 0..5 {
        let started = std::time::Instant::now();
        let r = http().get(format!("{base}/v1/certificates")).bearer_auth(&token).send().expect("list");
        assert_eq!(r.status(), StatusCode::OK);
        assert!(started.elapsed() < std::time::Duration::from_secs(2), "the API stalled behind the hanging call");
        let r = http().get(format!("{base}/readyz")).send().expect("readyz");
        assert_eq!(r.status(), StatusCode::OK);
    }
    // The script's account runs one call at a time: the first calls time out, the rest find
    // it busy.
    for h in hung {
        let body = problem(h.join().expect("thread"), StatusCode::BAD_GATEWAY);
        let detail = body["detail"].as_str().expect("detail");
        assert!(
            detail.contains("timed out after 4s")
                || detail.contains("the account is busy")
                || detail.contains("calls in flight"),
            "{body}"
        );
    }
}

/// Regression (review of stop 32): eighty requests at an account whose CA never answers held
/// every connection kept for connector calls, round after round of the account's timeout, and
/// an issuance at a healthy account waited a minute behind them. An account now has at most a
/// few calls in flight (a script's six), and more are refused at once.
#[test]
fn an_account_whose_ca_hangs_does_not_hold_up_issuance_at_another() {
    let app = App::new();
    let (config, _) = crate::helpers::local_ca_lab(&app, "");
    let conf = config.parent().expect("conf dir").to_owned();
    let mut text = std::fs::read_to_string(&config).expect("config");
    text.push_str(&format!(
        "\n[accounts.hang]\nconnector = \"{}\"\ntimeout_seconds = 40\n",
        crate::python::fixture("hostile/infinite_loop.py").display()
    ));
    std::fs::write(&config, text).expect("config");
    std::fs::write(conf.join("profiles/hang.toml"), "accounts = [\"hang\"]\n").expect("profile");
    let server = Server::start(app, Some(&config));
    let token = server.token("ops", "operator");
    let base = server.base.clone();
    let hung = hanging_requests(&base, &token, 40);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    // Behind forty hanging requests of 40 s each, a healthy account issues within seconds.
    let started = std::time::Instant::now();
    let r = http()
        .post(format!("{base}/v1/certificates"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"profile": "lab", "cn": "healthy.example.com"}))
        .send()
        .expect("issue");
    assert_eq!(r.status(), StatusCode::CREATED);
    let waited = started.elapsed();
    assert!(waited < std::time::Duration::from_secs(25), "the healthy account waited {waited:?}");
    let mut refused = 0;
    for h in hung {
        let body = problem(h.join().expect("thread"), StatusCode::BAD_GATEWAY);
        let detail = body["detail"].as_str().expect("detail");
        if detail.contains("calls in flight") {
            refused += 1;
        } else {
            assert!(detail.contains("timed out after 40s") || detail.contains("the account is busy"), "{body}");
        }
    }
    assert!(refused > 0, "no request was refused as stuck");
}

/// A script account runs one call at a time: the others wait their turn, up to one limit, and
/// each call's limit counts from when it has the worker; a request that waited the whole limit
/// is told the account is busy, never that its script "timed out".
#[test]
fn calls_queued_on_a_busy_script_account_wait_their_turn_or_are_told_it_is_busy() {
    let app = App::new();
    let (config, _) = crate::helpers::scripted_lab(
        &app,
        "slow",
        "slow",
        "timeout_seconds = 5",
        &[("slow", "accounts = [\"slow\"]\n")],
    );
    let server = Server::start(app, Some(&config));
    let token = server.token("ops", "operator");
    // Each call sleeps 3 s of its 5. The first runs at once; the second waits about 3 s; the
    // third and fourth cannot have the worker before 6 s, past their 5 s of waiting (they once
    // waited, ran, and got their certificate or a false "timed out", as the 10 s backstop fell).
    let calls: Vec<_> = (0..4)
        .map(|i| {
            let (base, token) = (server.base.clone(), token.clone());
            std::thread::spawn(move || {
                let resp = http()
                    .post(format!("{base}/v1/certificates"))
                    .bearer_auth(&token)
                    .json(&serde_json::json!({"profile": "slow", "cn": format!("q{i}.example.com")}))
                    .send()
                    .expect("issue");
                let status = resp.status();
                (status, resp.text().expect("body"))
            })
        })
        .collect();
    let answers: Vec<(StatusCode, String)> = calls.into_iter().map(|h| h.join().expect("thread")).collect();
    let issued = answers.iter().filter(|(s, _)| *s == StatusCode::CREATED).count();
    let busy =
        answers.iter().filter(|(s, b)| *s == StatusCode::BAD_GATEWAY && b.contains("the account is busy")).count();
    assert!(issued >= 1 && busy >= 2 && issued + busy == 4, "{answers:?}");
}

/// Regression: a client that gave up on a slow issuance (or the 120 s request timeout) dropped
/// the request's task with the CA call in it: the certificate the CA issued was never stored,
/// and the order waited for an operator with "the process stopped". The call now runs to its
/// end on its own, and its order records the outcome.
#[test]
fn a_client_that_goes_away_does_not_cut_the_ca_call_short() {
    let app = App::new();
    let (config, _) = crate::helpers::scripted_lab(
        &app,
        "slow",
        "slow",
        "timeout_seconds = 10",
        &[("slow", "accounts = [\"slow\"]\n")],
    );
    let server = Server::start(app, Some(&config));
    let token = server.token("ops", "operator");
    let impatient =
        reqwest::blocking::Client::builder().timeout(std::time::Duration::from_secs(1)).build().expect("client");
    let gave_up = impatient
        .post(format!("{}/v1/certificates", server.base))
        .bearer_auth(&token)
        .json(&serde_json::json!({"profile": "slow", "cn": "patient.example.com"}))
        .send();
    assert!(gave_up.is_err_and(|e| e.is_timeout()), "the client gives up after 1 s of the CA's 3");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let orders = loop {
        let orders: serde_json::Value = http()
            .get(format!("{}/v1/orders", server.base))
            .bearer_auth(&token)
            .send()
            .expect("orders")
            .json()
            .expect("json");
        if orders["items"][0]["state"] != "pending" || std::time::Instant::now() > deadline {
            break orders;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(orders["items"][0]["state"], "issued", "{orders}");
    let certs: serde_json::Value = http()
        .get(format!("{}/v1/certificates", server.base))
        .bearer_auth(&token)
        .send()
        .expect("list")
        .json()
        .expect("json");
    assert_eq!(certs["items"][0]["subject"], "CN=patient.example.com", "{certs}");
}

/// Regression: `cn` and `sans` beside `csr` in POST /v1/certificates were ignored (documented
/// as such), so a caller asking for one name got a certificate for another.
#[test]
fn names_posted_beside_a_csr_must_be_the_csrs() {
    let app = App::new();
    let (config, _) = crate::helpers::local_ca_lab(&app, "");
    let out = app.path("req");
    app.run(&["key-csr", "--cn", "csr.example", "--san", "DNS:csr.example", "--out", out.to_str().expect("utf8")]).ok();
    let csr = std::fs::read_to_string(out.join("csr.pem")).expect("csr");
    let server = Server::start(app, Some(&config));
    let admin = server.token("root", "admin");
    let c = http();
    let url = format!("{}/v1/certificates", server.base);
    let post = |body: serde_json::Value| c.post(&url).bearer_auth(&admin).json(&body).send().expect("post");
    let body = problem(
        post(serde_json::json!({"profile": "lab", "cn": "other.example", "csr": csr})),
        StatusCode::UNPROCESSABLE_ENTITY,
    );
    assert!(
        body["detail"].as_str().is_some_and(|d| d
            .starts_with("the requested common name (other.example) differs from the uploaded CSR's (csr.example)")),
        "{body}"
    );
    let body = problem(
        post(serde_json::json!({"profile": "lab", "sans": ["DNS:other.example"], "csr": csr})),
        StatusCode::UNPROCESSABLE_ENTITY,
    );
    assert!(body["detail"].as_str().is_some_and(|d| d.contains("requested subjectAltName list")), "{body}");
    let issued =
        post(serde_json::json!({"profile": "lab", "cn": "csr.example", "sans": ["DNS:csr.example"], "csr": csr}));
    assert_eq!(issued.status(), StatusCode::CREATED);
}

/// Regression: a command run beside `certhost.toml` (found as `./certhost.toml`) stored the
/// file's relative paths as they were written, relative to its own working directory; `serve`,
/// started elsewhere, read them against its own and every issuance failed — as a 422, blaming
/// the client for the server's configuration.
#[test]
fn a_command_run_beside_the_config_file_stores_paths_serve_can_read() {
    let app = App::new();
    let (config, _ca) = crate::helpers::local_ca_lab(&app, "");
    let conf = config.parent().expect("conf dir").to_owned();
    // The CA files by paths relative to the configuration file.
    let toml = std::fs::read_to_string(&config).expect("config");
    let ca_dir = app.path("ca").display().to_string();
    std::fs::write(&config, toml.replace(&ca_dir, "../ca")).expect("config");
    let server = Server::start(app, Some(&config));
    let admin = server.token("admin", "admin");
    let c = http();
    let issue = |cn: &str| {
        c.post(format!("{}/v1/certificates", server.base))
            .bearer_auth(&admin)
            .json(&serde_json::json!({"profile": "lab", "cn": cn}))
            .send()
            .expect("issue")
    };
    assert_eq!(issue("before.example.com").status(), StatusCode::CREATED);
    // An operator lists accounts from the configuration directory, without --config.
    let listed = std::process::Command::new(crate::helpers::certhost_bin())
        .args(["account", "list"])
        .current_dir(&conf)
        .env("CERTHOST_DATA_DIR", server.app.data_dir())
        .env("CERTHOST_MASTER_KEY", &server.app.master_key)
        .output()
        .expect("account list");
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    assert_eq!(issue("after.example.com").status(), StatusCode::CREATED);

    // A file the server cannot read is the server's problem: 503 naming it, not a 4xx.
    std::fs::rename(server.app.path("ca/ca.pem"), server.app.path("ca/moved.pem")).expect("move");
    let refused = problem(issue("moved.example.com"), StatusCode::SERVICE_UNAVAILABLE);
    let detail = refused["detail"].as_str().expect("detail");
    assert!(detail.contains("parameter ca_certificate of account lab") && detail.contains("ca.pem"), "{detail}");
    // And nothing of it is stored: no failed order holding a key, as a 503 promises.
    assert!(detail.ends_with("(nothing was stored)") && refused.get("order_id").is_none(), "{refused}");
    let orders = server.app.json(&["orders", "list", "--json"]);
    assert_eq!(orders.as_array().map(Vec::len), Some(2), "{orders}");
}

/// New-user walkthrough of stop 46: a profile's `{ env = … }` not set where `serve` runs was
/// found only by the first request. `serve` says so at start; a request is a 503 that stores
/// nothing, and goes through once the configuration is fixed.
#[test]
fn serve_names_at_start_a_parameter_value_it_cannot_read() {
    let app = App::new();
    let (config, _) = crate::helpers::local_ca_lab(
        &app,
        "[params]\nticket = { sensitive = true, value = { env = \"CERTHOST_TEST_UNSET_TICKET\" } }\n",
    );
    let server = Server::start(app, Some(&config));
    let said = "parameter ticket of profile lab cannot be read now (environment variable CERTHOST_TEST_UNSET_TICKET is not set)";
    assert!(server.log().contains(said), "{}", server.log());
    let admin = server.token("admin", "admin");
    let r = http()
        .post(format!("{}/v1/certificates", server.base))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"profile": "lab", "cn": "a.example.com"}))
        .send()
        .expect("issue");
    let refused = problem(r, StatusCode::SERVICE_UNAVAILABLE);
    assert!(refused["detail"].as_str().is_some_and(|d| d.contains("CERTHOST_TEST_UNSET_TICKET")), "{refused}");
    assert_eq!(server.app.json(&["orders", "list", "--json"]), serde_json::json!([]));
}

/// Review of stop 46: an approved order the server cannot send (a value it cannot read) was
/// answered "nothing was stored" while the approval was recorded and the order failed. The
/// 503 names the order it closed.
#[test]
fn an_approval_the_server_cannot_send_names_the_order_it_failed() {
    let app = App::new();
    let (config, _) = crate::helpers::local_ca_lab(
        &app,
        "approval_required = true\n[params]\nticket = { sensitive = true, value = { env = \"CERTHOST_TEST_UNSET_TICKET\" } }\n",
    );
    let server = Server::start(app, Some(&config));
    let (alice, bob) = (server.token("alice", "operator"), server.token("bob", "operator"));
    let held: serde_json::Value = http()
        .post(format!("{}/v1/certificates", server.base))
        .bearer_auth(&alice)
        .json(&serde_json::json!({"profile": "lab", "cn": "held.example.com"}))
        .send()
        .expect("issue")
        .json()
        .expect("json");
    let order = held["order_id"].as_i64().unwrap_or_else(|| panic!("{held}"));
    let r =
        http().post(format!("{}/v1/orders/{order}/approve", server.base)).bearer_auth(&bob).send().expect("approve");
    let refused = problem(r, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused["order_id"], order, "{refused}");
    let detail = refused["detail"].as_str().expect("detail");
    assert!(
        detail.starts_with(&format!("order {order} failed: the server cannot send it until an operator fixes"))
            && detail.contains("CERTHOST_TEST_UNSET_TICKET")
            && !detail.contains("nothing was stored"),
        "{detail}"
    );
    assert_eq!(server.app.json(&["orders", "show", &order.to_string(), "--json"])["state"], "failed");
}

/// Regression: serve's memory (the master key, unsealed secrets, private keys) could be
/// written to a core file. (It is also made undumpable, which hides `/proc/PID/mem` from other
/// processes of its user; these tests run as root, which sees it anyway.)
#[test]
fn serve_never_dumps_core_and_is_not_readable_through_proc() {
    let server = Server::start(App::new(), None);
    let pid = server.child.id();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let core = limits.lines().find(|l| l.starts_with("Max core file size")).expect("core line");
    assert_eq!(core.split_whitespace().collect::<Vec<_>>()[4..6], ["0", "0"], "{core}");
}

/// Regression: with another process holding the database's write lock, an issuance answered
/// 500 "internal server error" and the CLI waited four minutes before a raw SQLite error. Now
/// the API says 503 (retry) and a command gives up after 15 s naming the database.
#[test]
fn a_database_locked_by_another_process_is_a_503_and_a_clear_cli_error() {
    let app = App::new();
    let (config, _) = crate::helpers::local_ca_lab(&app, "");
    let server = Server::start(app, Some(&config));
    let admin = server.token("admin", "admin");
    let db = server.app.data_dir().join("certhost.db");
    // Python's sqlite3 holds the write lock for 40 s once it says so.
    let mut holder = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3, sys, time\nc = sqlite3.connect(sys.argv[1], isolation_level=None)\n\
             c.execute('BEGIN IMMEDIATE')\nprint('held', flush=True)\ntime.sleep(40)",
            db.to_str().expect("utf8"),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(holder.stdout.take().expect("stdout")), &mut line)
        .expect("held");
    assert_eq!(line.trim(), "held");
    let resp = http()
        .post(format!("{}/v1/certificates", server.base))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"profile": "lab", "cn": "locked.example.com"}))
        .send()
        .expect("issue");
    let body = problem(resp, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body["detail"].as_str().expect("detail").contains("locked by another process"), "{body}");
    let started = std::time::Instant::now();
    let listed = server.app.run(&["list"]);
    let err = listed.fails(1);
    assert!(err.contains(&format!("the inventory database {} is locked by another process", db.display())), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(35), "waited {:?}", started.elapsed());
    let _ = holder.kill();
    let _ = holder.wait();
    // Once the lock is gone, both work again.
    assert!(server.app.run(&["list"]).ok().contains("no certificates"), "after the lock");
}

/// Regression: serve never closed an idle client or one trickling its headers, and had no cap
/// on connections: a thousand of them, no token needed, used up its file descriptors and no
/// request was served until they left. Now a client has 20 s to send its headers, and the
/// soft limit on open files is raised to the hard one.
#[test]
fn idle_and_slow_clients_are_disconnected_and_others_are_served_meanwhile() {
    use std::io::{Read, Write};
    let server = Server::start(App::new(), None);
    let addr = server.base.trim_start_matches("http://").to_owned();
    let idle: Vec<std::net::TcpStream> =
        (0..50).map(|_| std::net::TcpStream::connect(&addr).expect("connect")).collect();
    let mut slow = std::net::TcpStream::connect(&addr).expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").expect("start");
    let started = std::time::Instant::now();
    // While they hang on, a real request is answered.
    let health = http().get(format!("{}/healthz", server.base)).send().expect("healthz");
    assert_eq!(health.status(), StatusCode::OK);
    // The slow one sends a header line every 2 s and never finishes; both kinds are closed.
    let mut closed_at = None;
    for i in 0..20 {
        std::thread::sleep(std::time::Duration::from_secs(2));
        if slow.write_all(format!("X-Slow-{i}: 1\r\n").as_bytes()).is_err() {
            closed_at = Some(started.elapsed());
            break;
        }
    }
    let closed_at = closed_at.expect("the header-trickling client is still connected after 40 s");
    assert!(closed_at >= std::time::Duration::from_secs(15), "closed after {closed_at:?}");
    for mut c in idle {
        c.set_read_timeout(Some(std::time::Duration::from_secs(10))).expect("timeout");
        let mut buf = [0u8; 256];
        // Closed: end of file (or a reset), never a timeout.
        match c.read(&mut buf) {
            Ok(n) => assert!(n == 0 || String::from_utf8_lossy(&buf[..n]).contains("408"), "{n} bytes"),
            Err(e) => assert_ne!(e.kind(), std::io::ErrorKind::WouldBlock, "an idle client is still connected"),
        }
    }
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.child.id())).expect("limits");
    let files = limits.lines().find(|l| l.starts_with("Max open files")).expect("files");
    let fields: Vec<&str> = files.split_whitespace().collect();
    assert_eq!(fields[3], fields[4], "the soft limit on open files is raised to the hard one: {files}");
}

/// API review of stop 40: a poll that failed answered 502 without saying when the order is
/// polled again by itself; a client polling it sooner only adds load on the CA.
#[test]
fn a_failed_poll_says_when_the_order_is_polled_again() {
    let app = App::new();
    let (_, config) = one_script_account(&app, "broken_poll.py", "web");
    let server = Server::start(app, Some(&config));
    let token = server.token("ops", "operator");
    let issued = http()
        .post(format!("{}/v1/certificates", server.base))
        .bearer_auth(&token)
        .json(&serde_json::json!({"profile": "web", "cn": "www.example.com"}))
        .send()
        .expect("issue");
    let status = issued.status();
    let order: serde_json::Value = issued.json().expect("json");
    assert_eq!(status, 202, "{order}");
    let id = order["order_id"].as_i64().expect("order id");
    let polled = http().post(format!("{}/v1/orders/{id}/poll", server.base)).bearer_auth(&token).send().expect("poll");
    assert_eq!(polled.status(), 502);
    assert_eq!(polled.headers()["location"], format!("/v1/orders/{id}").as_str());
    let after: i64 = polled.headers()["retry-after"].to_str().expect("ascii").parse().expect("seconds");
    assert!((1..=3600).contains(&after), "{after}");
    let problem: serde_json::Value = polled.json().expect("problem");
    assert!(
        problem["detail"].as_str().is_some_and(|d| d.contains("polling it failed") && d.contains("poll is broken")),
        "{problem}"
    );
}

/// Operator review of stop 41: one profile file with a typo kept `serve` from starting — and
/// every renewal, deployment retry and notification with it — where a SIGHUP with the same
/// typo keeps what was loaded. Once the file's definitions are stored, they are served, and
/// the error is logged.
#[test]
fn serve_starts_on_the_definitions_last_loaded_when_a_profile_file_breaks() {
    let app = App::new();
    let (conf, config) = one_script_account(&app, "scripted_ca.py", "web");
    let cfg = config.to_str().expect("utf8");
    assert!(app.run(&["--config", cfg, "profile", "list"]).ok().contains("web"));
    std::fs::write(conf.join("profiles/web.toml"), "accounts = [\"a\"]\noops = = 1\n").expect("broken");
    let server = Server::start(app, Some(&config));
    let token = server.token("reader", "auditor");
    assert_eq!(profile_names(&server, &token), ["web"]);
    let log = server.log();
    assert!(
        log.contains("configuration not loaded; serving the accounts and profiles as last loaded")
            && log.contains("web.toml"),
        "{log}"
    );
    // Fixed and reloaded: said as the end of a failure (diff review of stop 41).
    std::fs::write(conf.join("profiles/web.toml"), "accounts = [\"a\"]\n").expect("fixed");
    let pid = server.child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-HUP", &pid]).status().expect("kill").success());
    let mut resolved = false;
    for _ in 0..50 {
        if server.log().contains("the earlier reload's failure is resolved") {
            resolved = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(resolved, "{}", server.log());
}

/// A configuration directory with account `a` on the test script `fixture` and profile
/// `profile` on it: (the directory, its certhost.toml).
fn one_script_account(app: &App, fixture: &str, profile: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let conf = app.path("conf");
    std::fs::create_dir_all(conf.join("profiles")).expect("mkdir");
    let script = crate::python::fixture(fixture);
    std::fs::write(conf.join("certhost.toml"), format!("[accounts.a]\nconnector = \"{}\"\n", script.display()))
        .expect("config");
    std::fs::write(conf.join(format!("profiles/{profile}.toml")), "accounts = [\"a\"]\n").expect("profile");
    let config = conf.join("certhost.toml");
    (conf, config)
}

/// The names `GET /v1/profiles` lists.
fn profile_names(server: &Server, token: &str) -> Vec<String> {
    let v: serde_json::Value = http()
        .get(format!("{}/v1/profiles", server.base))
        .bearer_auth(token)
        .send()
        .expect("get")
        .json()
        .expect("json");
    v["items"].as_array().expect("items").iter().map(|p| p["name"].as_str().expect("name").to_owned()).collect()
}

/// `/readyz` counted an account as failing from a failed `account test` until the next test,
/// however many certificates it issued meanwhile (ACME walkthrough of stop 47): a call that
/// succeeded after the failed test now outweighs it, and a test failing after that counts
/// again.
#[test]
fn readyz_counts_a_failed_test_only_until_a_call_of_the_account_succeeds() {
    let app = App::new();
    let (config, ca) = crate::helpers::scripted_lab(&app, "lab", "good", "", &[("web", "accounts = [\"lab\"]\n")]);
    // The scripted CA with a connection test that fails while `down` is in its directory.
    let fixture = crate::python::fixture("scripted_ca.py");
    let script = app.path("tested_ca.py");
    let text = std::fs::read_to_string(&fixture).expect("fixture")
        + "\n\ndef test_connection(args_dict):\n    return not os.path.exists(os.path.join(args_dict[\"state_dir\"], \"down\"))\n";
    std::fs::write(&script, text).expect("script");
    let toml = std::fs::read_to_string(&config).expect("config");
    std::fs::write(&config, toml.replace(&fixture.display().to_string(), &script.display().to_string()))
        .expect("config");
    std::fs::write(ca.join("down"), "").expect("down");
    let cfg = config.to_str().expect("utf8").to_owned();
    app.run(&["--config", &cfg, "account", "test", "lab"]).fails(1);
    let server = Server::start(app, Some(&config));
    let (probe, admin) = (server.token("probe", "auditor"), server.token("root", "admin"));
    let c = http();
    let ready = || -> serde_json::Value {
        c.get(format!("{}/readyz", server.base)).bearer_auth(&probe).send().expect("readyz").json().expect("json")
    };
    let before = ready();
    assert_eq!(before["accounts_failing"], 1, "{before}");
    assert_eq!(before["accounts"][0]["failing"], true, "{before}");
    assert!(before["accounts"][0].get("last_success_at").is_none(), "{before}");

    // The CA is back; a certificate issued in a later second than the test.
    std::fs::remove_file(ca.join("down")).expect("up");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let issued = c
        .post(format!("{}/v1/certificates", server.base))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"profile": "web", "cn": "www.example.com"}))
        .send()
        .expect("issue");
    assert_eq!(issued.status(), StatusCode::CREATED, "{}", server.log());
    let after = ready();
    assert_eq!(after["accounts_failing"], 0, "{after}");
    let account = &after["accounts"][0];
    assert_eq!((&account["failing"], &account["last_test_ok"]), (&serde_json::json!(false), &serde_json::json!(false)));
    assert!(account["last_success_at"].as_str().is_some_and(|t| t.ends_with('Z')), "{after}");

    // A test failing after that success counts again.
    std::fs::write(ca.join("down"), "").expect("down");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    server.app.run(&["--config", &cfg, "account", "test", "lab"]).fails(1);
    let again = ready();
    assert_eq!(again["accounts_failing"], 1, "{again}");
}

/// Upgrade walkthrough of stop 49: an account whose connector file had moved failed every
/// issuance while `/readyz` said ready with no account failing. A connector that does not
/// load counts as failing, with why, until the file is back.
#[test]
fn readyz_counts_an_account_whose_connector_does_not_load() {
    let app = App::new();
    let (config, _) = crate::helpers::scripted_lab(&app, "lab", "good", "", &[("web", "accounts = [\"lab\"]\n")]);
    let fixture = crate::python::fixture("scripted_ca.py");
    let script = app.path("moved_ca.py");
    std::fs::copy(&fixture, &script).expect("script");
    let toml = std::fs::read_to_string(&config).expect("config");
    std::fs::write(&config, toml.replace(&fixture.display().to_string(), &script.display().to_string()))
        .expect("config");
    let server = Server::start(app, Some(&config));
    let (probe, admin) = (server.token("probe", "auditor"), server.token("root", "admin"));
    let c = http();
    let ready = || -> serde_json::Value {
        c.get(format!("{}/readyz", server.base)).bearer_auth(&probe).send().expect("readyz").json().expect("json")
    };
    let issue = || {
        c.post(format!("{}/v1/certificates", server.base))
            .bearer_auth(&admin)
            .json(&serde_json::json!({"profile": "web", "cn": "www.example.com"}))
            .send()
            .expect("issue")
            .status()
    };
    assert_eq!(issue(), StatusCode::CREATED, "{}", server.log());
    assert_eq!(ready()["accounts_failing"], 0);

    std::fs::rename(&script, app_path_aside(&script)).expect("move");
    assert_eq!(issue(), StatusCode::BAD_GATEWAY);
    let down = ready();
    assert_eq!(down["accounts_failing"], 1, "{down}");
    let metrics = c.get(format!("{}/metrics", server.base)).send().expect("metrics").text().expect("text");
    assert!(metrics.contains("\ncerthost_accounts_failing 1\n"), "{metrics}");
    assert!(!metrics.contains("certhost_notifications_undelivered"), "no channel, no delivery to count: {metrics}");
    let account = &down["accounts"][0];
    assert_eq!(account["failing"], true, "{down}");
    assert!(account["connector_error"].as_str().is_some_and(|e| e.contains("moved_ca.py")), "{down}");
    // Without a token: the count, no names or paths.
    let anonymous: serde_json::Value =
        c.get(format!("{}/readyz", server.base)).send().expect("readyz").json().expect("json");
    assert_eq!(anonymous["accounts_failing"], 1, "{anonymous}");
    assert!(!anonymous.to_string().contains("moved_ca"), "{anonymous}");

    // The file back: the next look sees it changed, and the next call loads it.
    std::fs::rename(app_path_aside(&script), &script).expect("back");
    let back = ready();
    assert_eq!(back["accounts_failing"], 0, "{back}");
    assert_eq!(issue(), StatusCode::CREATED, "{}", server.log());
}

fn app_path_aside(path: &std::path::Path) -> std::path::PathBuf {
    path.with_extension("py.aside")
}

/// Red-team walkthrough of stop 48: a 900 KB revocation comment was stored, listed and sent
/// in webhooks, and a search holding a NUL matched every certificate (SQLite's LIKE ends the
/// pattern there); a download ignored a query it does not take.
#[test]
fn an_overlong_comment_and_a_nul_in_a_search_are_refused() {
    let app = App::new();
    let (config, _) = crate::helpers::local_ca_lab(&app, "");
    let server = Server::start(app, Some(&config));
    let admin = server.token("root", "admin");
    let c = http();
    let issued: serde_json::Value = c
        .post(format!("{}/v1/certificates", server.base))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"profile": "lab", "cn": "www.example.com"}))
        .send()
        .expect("issue")
        .json()
        .expect("json");
    let id = issued["certificate"]["id"].as_i64().expect("id");
    let refused = c
        .post(format!("{}/v1/certificates/{id}/revoke", server.base))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"reason": "superseded", "comment": "x".repeat(2000), "local_only": true}))
        .send()
        .expect("revoke");
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: serde_json::Value = refused.json().expect("json");
    assert_eq!(body["detail"], "the comment is 2000 bytes long; at most 1024 are taken (nothing was changed)");
    let shown = server.app.json(&["show", &id.to_string(), "--json"]);
    assert_eq!(shown["status"], "active", "{shown}");
    let search =
        c.get(format!("{}/v1/certificates?search=%00zzzz", server.base)).bearer_auth(&admin).send().expect("search");
    assert_eq!(search.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = search.json().expect("json");
    assert_eq!(body["detail"], "search may not hold a NUL character", "{body}");
    // A download answered PEM to `?format=der` (API walkthrough of stop 48).
    let der =
        c.get(format!("{}/v1/certificates/{id}/pem?format=der", server.base)).bearer_auth(&admin).send().expect("pem");
    assert_eq!(der.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = der.json().expect("json");
    assert_eq!(body["detail"], "the query string has an unknown parameter `format`: this request takes none");
}

/// API walkthrough of stop 48: an account created with a `{ env }` value serve cannot read
/// answered 201 without a word, and every call of it failed later.
#[test]
fn an_account_naming_what_serve_cannot_read_is_created_with_a_warning() {
    let server = Server::start(App::new(), None);
    let admin = server.token("root", "admin");
    let script = crate::python::fixture("scripted_ca.py");
    let made = http()
        .post(format!("{}/v1/accounts", server.base))
        .bearer_auth(&admin)
        .json(&serde_json::json!({
            "name": "unset",
            "connector": script,
            "params": {"mode": "good", "token": {"env": "CERTHOST_E2E_NEVER_SET"}},
        }))
        .send()
        .expect("create");
    assert_eq!(made.status(), StatusCode::CREATED);
    let view: serde_json::Value = made.json().expect("json");
    let warnings = view["warnings"].as_array().expect("warnings");
    assert_eq!(warnings.len(), 1, "{view}");
    assert!(
        warnings[0].as_str().expect("text").contains(
            "parameter token of account unset: environment variable CERTHOST_E2E_NEVER_SET is not set: every call of this account fails"
        ),
        "{view}"
    );
}

/// API walkthrough of stop 48: the subject fields the CLI gives with `--ou` and the like could
/// reach the API only inside a CSR (`ou` was an unknown field).
#[test]
fn an_issue_request_gives_subject_fields_the_profile_lets_it_give() {
    let app = App::new();
    let (config, _) = crate::helpers::local_ca_lab(&app, "[subject]\nou = [\"Web\"]\noverridable = [\"ou\"]\n");
    let server = Server::start(app, Some(&config));
    let admin = server.token("root", "admin");
    let post = |body: serde_json::Value| {
        http().post(format!("{}/v1/certificates", server.base)).bearer_auth(&admin).json(&body).send().expect("issue")
    };
    let issued = post(serde_json::json!({"profile": "lab", "cn": "ou.example.com", "subject": {"ou": ["Payments"]}}));
    assert_eq!(issued.status(), StatusCode::CREATED);
    let view: serde_json::Value = issued.json().expect("json");
    assert!(view["certificate"]["subject"].as_str().expect("subject").contains("OU=Payments"), "{view}");
    // A field the profile does not let a request give is refused, naming it.
    let refused = post(serde_json::json!({"profile": "lab", "cn": "o.example.com", "subject": {"o": ["Evil Corp"]}}));
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: serde_json::Value = refused.json().expect("json");
    assert!(body["detail"].as_str().expect("detail").contains("O"), "{body}");
    let unknown = post(serde_json::json!({"profile": "lab", "cn": "x.example.com", "subject": {"cn": "x"}}));
    assert_eq!(unknown.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

/// API-client walkthrough of stop 48: an error carried only a sentence, so a program had to
/// match words to tell a CA's refusal from a CA that was down. Every problem now carries a
/// `code` from one documented list; each below is met through the real server, the real
/// script connector and the real CA it signs with.
#[test]
fn every_error_names_its_kind_in_a_code_a_program_can_branch_on() {
    let app = App::new();
    let (config, ca) = crate::helpers::scripted_lab(
        &app,
        "good",
        "good",
        "",
        &[("web", "accounts = [\"good\"]\n[cn]\nallowed = \"[a-z.]+[.]example[.]com\"\n")],
    );
    let server = Server::start(app, Some(&config));
    let c = http();
    let admin = server.token("root", "admin");
    let script = crate::python::fixture("scripted_ca.py");
    let post = |path: &str, body: serde_json::Value| {
        c.post(format!("{}{path}", server.base)).bearer_auth(&admin).json(&body).send().expect("post")
    };
    // One account per way a CA goes wrong, each with its own profile.
    for mode in ["wrong_key", "unreachable"] {
        let params = serde_json::json!({
            "mode": mode,
            "ca_cert": format!("{}/ca.pem", ca.display()),
            "ca_key": format!("{}/ca.key", ca.display()),
        });
        let made = post("/v1/accounts", serde_json::json!({"name": mode, "connector": script, "params": params}));
        assert_eq!(made.status(), StatusCode::CREATED, "{}", made.text().unwrap_or_default());
        let made = post("/v1/profiles", serde_json::json!({"name": mode, "accounts": [mode]}));
        assert_eq!(made.status(), StatusCode::CREATED, "{}", made.text().unwrap_or_default());
    }
    let code = |resp: reqwest::blocking::Response, status: StatusCode| -> String {
        let body = problem(resp, status);
        body["code"].as_str().unwrap_or_default().to_owned()
    };
    let issue = |body: serde_json::Value| post("/v1/certificates", body);

    assert_eq!(
        code(c.get(format!("{}/v1/certificates", server.base)).send().expect("get"), StatusCode::UNAUTHORIZED),
        "unauthorized"
    );
    assert_eq!(
        code(issue(serde_json::json!({"profile": "nope", "cn": "a.example.com"})), StatusCode::NOT_FOUND),
        "not_found"
    );
    assert_eq!(
        code(issue(serde_json::json!({"profile": "web", "cn": "www.example.org"})), StatusCode::UNPROCESSABLE_ENTITY),
        "policy_refused"
    );
    assert_eq!(
        code(
            issue(serde_json::json!({"profile": "web", "cn": "a.example.com", "params": {"colour": "red"}})),
            StatusCode::UNPROCESSABLE_ENTITY
        ),
        "invalid_parameter"
    );
    assert_eq!(
        code(
            issue(
                serde_json::json!({"profile": "web", "csr": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"})
            ),
            StatusCode::UNPROCESSABLE_ENTITY
        ),
        "invalid_csr"
    );
    assert_eq!(
        code(
            c.patch(format!("{}/v1/certificates", server.base)).bearer_auth(&admin).send().expect("patch"),
            StatusCode::METHOD_NOT_ALLOWED
        ),
        "method_not_allowed"
    );
    assert_eq!(
        code(
            c.post(format!("{}/v1/certificates", server.base))
                .bearer_auth(&admin)
                .header("content-type", "application/json")
                .body("{not json")
                .send()
                .expect("bad json"),
            StatusCode::BAD_REQUEST
        ),
        "bad_request"
    );
    let keyed = |key: &str, cn: &str| {
        c.post(format!("{}/v1/certificates", server.base))
            .bearer_auth(&admin)
            .header("Idempotency-Key", key)
            .json(&serde_json::json!({"profile": "web", "cn": cn}))
            .send()
            .expect("keyed")
    };
    assert_eq!(keyed("k-1", "a.example.com").status(), StatusCode::CREATED);
    assert_eq!(code(keyed("k-1", "b.example.com"), StatusCode::UNPROCESSABLE_ENTITY), "idempotency_key_reused");
    // The CA's faults: a certificate on another key fails verification, a CA that cannot be
    // reached fails the call; both name the order.
    let resp = issue(serde_json::json!({"profile": "wrong_key", "cn": "a.example.com"}));
    let body = problem(resp, StatusCode::BAD_GATEWAY);
    assert_eq!(body["code"], "verification_failed", "{body}");
    assert!(body["order_id"].is_i64(), "{body}");
    let body =
        problem(issue(serde_json::json!({"profile": "unreachable", "cn": "a.example.com"})), StatusCode::BAD_GATEWAY);
    assert_eq!(body["code"], "ca_failed", "{body}");
    // Revoking twice: a conflict with what is stored.
    let cert: serde_json::Value =
        issue(serde_json::json!({"profile": "web", "cn": "r.example.com"})).json().expect("json");
    let revoke = || {
        c.post(format!("{}/v1/certificates/{}/revoke", server.base, cert["certificate"]["id"]))
            .bearer_auth(&admin)
            .json(&serde_json::json!({"reason": "superseded"}))
            .send()
            .expect("revoke")
    };
    assert_eq!(revoke().status(), StatusCode::OK);
    assert_eq!(code(revoke(), StatusCode::CONFLICT), "already_revoked");

    // The list is in the OpenAPI document, as an enum a generated client can use.
    let doc: serde_json::Value =
        c.get(format!("{}/v1/openapi.json", server.base)).send().expect("openapi").json().expect("json");
    let codes = doc["components"]["schemas"]["ProblemCode"]["enum"].as_array().cloned().unwrap_or_default();
    for seen in ["unauthorized", "policy_refused", "verification_failed", "ca_failed", "idempotency_key_reused"] {
        assert!(codes.iter().any(|c| c == seen), "{seen} in {codes:?}");
    }
    assert!(
        doc["components"]["schemas"]["Problem"]["required"].as_array().is_some_and(|r| r.iter().any(|f| f == "code"))
    );
}

/// API walkthrough of stop 48: the API gave a certificate only as PEM and a key only as
/// PKCS#8 PEM, where Windows, Java and many appliances import DER and PKCS#12. The DER is
/// the stored leaf's; the PKCS#12 file opens with openssl under its password and holds the
/// key of the certificate, is allowed to whom the key download is, and audited as one.
#[test]
fn a_certificate_downloads_as_der_and_with_its_key_as_pkcs12() {
    let app = App::new();
    let (config, ca) = crate::helpers::local_ca_lab(&app, "key_download = true\n");
    let server = Server::start(app, Some(&config));
    let c = http();
    let (admin, auditor) = (server.token("root", "admin"), server.token("look", "auditor"));
    let issued: serde_json::Value = c
        .post(format!("{}/v1/certificates", server.base))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"profile": "lab", "cn": "p12.example.com"}))
        .send()
        .expect("issue")
        .json()
        .expect("json");
    let id = issued["certificate"]["id"].as_i64().expect("id");
    let base = format!("{}/v1/certificates/{id}", server.base);

    let der = c.get(format!("{base}/der")).bearer_auth(&auditor).send().expect("der");
    assert_eq!(der.status(), StatusCode::OK);
    assert_eq!(der.headers()["content-type"], "application/pkix-cert");
    let der = der.bytes().expect("bytes");
    let der_file = server.app.path("leaf.der");
    std::fs::write(&der_file, &der).expect("write");
    let pem = c.get(format!("{base}/pem")).bearer_auth(&auditor).send().expect("pem").text().expect("text");
    let from_der = crate::helpers::sh("openssl", &["x509", "-inform", "DER", "-in", der_file.to_str().expect("utf8")]);
    assert_eq!(from_der.trim(), pem.trim(), "the DER is the stored leaf");

    let password = "p12-S3CRET-pass";
    let p12 = c
        .post(format!("{base}/pkcs12"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"password": password}))
        .send()
        .expect("pkcs12");
    assert_eq!(p12.status(), StatusCode::OK);
    assert_eq!(p12.headers()["content-type"], "application/pkcs12");
    let p12_file = server.app.path("bundle.p12");
    std::fs::write(&p12_file, p12.bytes().expect("bytes")).expect("write");
    let p12_path = p12_file.to_str().expect("utf8");
    let pass = format!("pass:{password}");
    let key = crate::helpers::sh("openssl", &["pkcs12", "-in", p12_path, "-passin", &pass, "-nocerts", "-nodes"]);
    let certs = crate::helpers::sh("openssl", &["pkcs12", "-in", p12_path, "-passin", &pass, "-nokeys"]);
    assert!(certs.contains(pem.trim()), "the leaf is in it: {certs}");
    let ca_pem = std::fs::read_to_string(ca.join("ca.pem")).expect("ca");
    assert!(certs.contains(ca_pem.trim()), "and its chain: {certs}");
    let key_file = server.app.path("key.pem");
    std::fs::write(&key_file, &key).expect("key");
    let cert_file = server.app.path("leaf.pem");
    std::fs::write(&cert_file, &pem).expect("leaf");
    let public = |args: &[&str]| crate::helpers::sh("openssl", args);
    assert_eq!(
        public(&["pkey", "-in", key_file.to_str().expect("utf8"), "-pubout"]),
        public(&["x509", "-in", cert_file.to_str().expect("utf8"), "-noout", "-pubkey"]),
        "the key is the certificate's"
    );
    let wrong = std::process::Command::new("openssl")
        .args(["pkcs12", "-in", p12_path, "-passin", "pass:wrong", "-nokeys"])
        .output()
        .expect("openssl");
    assert!(!wrong.status.success(), "another password does not open it");

    // Refused: a role without key downloads, a password too short to protect anything.
    let refused = |token: &str, body: serde_json::Value| {
        let resp = c.post(format!("{base}/pkcs12")).bearer_auth(token).json(&body).send().expect("pkcs12");
        let status = resp.status();
        (status, resp.text().unwrap_or_default())
    };
    assert_eq!(refused(&auditor, serde_json::json!({"password": password})).0, StatusCode::FORBIDDEN);
    let (status, said) = refused(&admin, serde_json::json!({"password": "abc"}));
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(said.contains("4 to 1024 characters") && !said.contains("abc\""), "{said}");
    // Red team of stop 50: four NULs made a file an empty password opened; an emoji a 500.
    for (password, says) in
        [("\0\0\0\0", "control characters"), ("a\0\0\0", "control characters"), ("😀😀😀😀", "U+FFFF")]
    {
        let (status, said) = refused(&admin, serde_json::json!({ "password": password }));
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{said}");
        assert!(said.contains(says) && said.contains("\"code\":\"invalid_parameter\""), "{said}");
    }
    let (status, _) = refused(&admin, serde_json::json!({"password": "pässwörd-€"}));
    assert_eq!(status, StatusCode::OK, "characters of the BMP are fine");
    let downloads = server.app.json(&["audit", "--json", "--action", "certificate.key_download"]);
    let downloads = downloads.as_array().expect("events");
    assert_eq!(downloads.len(), 2, "{downloads:?}");
    assert_eq!(downloads[0]["detail"]["format"], "pkcs12");
    assert!(!server.log().contains(password), "the password is in no log line");
}

/// A program's report of a failed call names its request id (the answer's `X-Request-Id`, a
/// problem's `request_id`), and the server's log lines about that request carry it; with
/// `--log-format json` every line is one JSON object a log shipper can read.
#[test]
fn every_answer_names_its_request_id_and_json_log_lines_carry_it() {
    let app = App::new();
    let (config, _) = crate::helpers::scripted_lab(&app, "lab", "good", "", &[("web", "accounts = [\"lab\"]\n")]);
    let server = Server::start_with_env(app, Some(&config), &[("CERTHOST_LOG_FORMAT", "json")]);
    let admin = server.token("root", "admin");
    let c = http();
    let issued = c
        .post(format!("{}/v1/certificates", server.base))
        .bearer_auth(&admin)
        .header("X-Request-Id", "e2e-req-7")
        .json(&serde_json::json!({"profile": "web", "cn": "www.example.com"}))
        .send()
        .expect("issue");
    assert_eq!(issued.status(), StatusCode::CREATED, "{}", server.log());
    assert_eq!(issued.headers()["x-request-id"], "e2e-req-7");

    // No id sent, or one that could break a log line: a new one, in the header and the problem.
    for sent in [None, Some("two words\"")] {
        let mut request = c.get(format!("{}/v1/certificates/987654", server.base)).bearer_auth(&admin);
        if let Some(id) = sent {
            request = request.header("X-Request-Id", id);
        }
        let resp = request.send().expect("missing");
        let header = resp.headers()["x-request-id"].to_str().expect("ascii").to_owned();
        let body = problem(resp, StatusCode::NOT_FOUND);
        assert_eq!(body["request_id"], header, "{body}");
        assert!(header.len() == 32 && header.bytes().all(|b| b.is_ascii_hexdigit()), "{header}");
    }

    let log = server.log();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    assert!(lines.iter().all(|l| l["timestamp"].is_string() && l["level"].is_string()), "{log}");
    assert!(
        lines.iter().any(|l| {
            let spans = l["spans"].as_array().cloned().unwrap_or_default();
            spans.iter().any(|s| s["request_id"] == "e2e-req-7") && l["message"].is_string()
        }),
        "no line about the issuance carries its request id: {log}"
    );
}
