//! `Idempotency-Key` on `POST /v1/certificates`, through the real server: a program whose
//! request timed out sends it again with the same key and gets the first request's order,
//! not a second certificate (left alone in stop 35's note: issuance was not idempotent).

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{App, Server, http};

/// POST /v1/certificates with `key` (if any); returns (status, replayed header, body).
fn issue(
    server: &Server,
    token: &str,
    key: Option<&str>,
    body: &serde_json::Value,
) -> (StatusCode, bool, serde_json::Value) {
    let mut request = http().post(format!("{}/v1/certificates", server.base)).bearer_auth(token).json(body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let resp = request.send().expect("issue");
    let replayed = resp.headers().get("idempotent-replayed").is_some_and(|v| v == "true");
    (resp.status(), replayed, resp.json().expect("json"))
}

fn get(server: &Server, token: &str, path: &str) -> serde_json::Value {
    http().get(format!("{}{path}", server.base)).bearer_auth(token).send().expect("get").json().expect("json")
}

#[test]
fn an_issue_request_sent_again_with_its_key_is_answered_with_the_first_certificate() {
    let app = App::new();
    let (config, _) = crate::helpers::local_ca_lab(&app, "");
    let server = Server::start(app, Some(&config));
    let bot = server.token("bot", "requester");
    let other = server.token("other", "requester");
    let body = json!({"profile": "lab", "cn": "once.example.com", "sans": ["DNS:once.example.com"]});
    let key = "5b1f0c2e-9a4d-4c61-8f0e-2d7a3b9c1e44";

    let (status, replayed, first) = issue(&server, &bot, Some(key), &body);
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert!(!replayed, "the first answer is not a replay");
    let (status, replayed, again) = issue(&server, &bot, Some(key), &body);
    assert_eq!(status, StatusCode::CREATED, "{again}");
    assert!(replayed, "the repeated request says it is answered from the first");
    assert_eq!(again["order_id"], first["order_id"]);
    assert_eq!(again["certificate"]["id"], first["certificate"]["id"]);
    assert_eq!(again["certificate"]["pem"], first["certificate"]["pem"]);

    // The same key with another request is the client's mistake, not a replay.
    let changed = json!({"profile": "lab", "cn": "twice.example.com"});
    let (status, _, problem) = issue(&server, &bot, Some(key), &changed);
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    let detail = problem["detail"].as_str().expect("detail");
    assert!(detail.contains("used for a different request"), "{detail}");
    // Keys are the caller's own: another token's same key is another request.
    let (status, replayed, theirs) = issue(&server, &other, Some(key), &body);
    assert_eq!(status, StatusCode::CREATED, "{theirs}");
    assert!(!replayed);
    assert_ne!(theirs["certificate"]["id"], first["certificate"]["id"]);
    // Without a key, a repeated request is a new one, as before.
    let (status, _, unkeyed) = issue(&server, &bot, None, &body);
    assert_eq!(status, StatusCode::CREATED);
    assert_ne!(unkeyed["certificate"]["id"], first["certificate"]["id"]);

    let admin = server.token("root", "admin");
    let certs = get(&server, &admin, "/v1/certificates");
    assert_eq!(certs["items"].as_array().expect("items").len(), 3, "one per request that was not a replay: {certs}");
    let order = get(&server, &admin, &format!("/v1/orders/{}", first["order_id"]));
    assert_eq!(order["idempotency_key"], key, "{order}");

    // Requests with one key at once: one certificate; the others are told to wait for it, or
    // are answered with it.
    let racing = json!({"profile": "lab", "cn": "race.example.com"});
    let answers: Vec<(StatusCode, bool, serde_json::Value)> = std::thread::scope(|s| {
        let runs: Vec<_> = (0..6).map(|_| s.spawn(|| issue(&server, &bot, Some("race-1"), &racing))).collect();
        runs.into_iter().map(|r| r.join().expect("request")).collect()
    });
    let fresh: Vec<_> =
        answers.iter().filter(|(status, replayed, _)| *status == StatusCode::CREATED && !replayed).collect();
    assert_eq!(fresh.len(), 1, "{answers:?}");
    for (status, replayed, body) in &answers {
        match *status {
            StatusCode::CREATED => assert_eq!(body["certificate"]["id"], fresh[0].2["certificate"]["id"], "{replayed}"),
            StatusCode::CONFLICT => assert_eq!(body["order_id"], fresh[0].2["order_id"], "{body}"),
            other => panic!("{other}: {body}"),
        }
    }
    // A deleted certificate is gone for good: 410 naming the order, not a 409 to retry forever.
    let id = first["certificate"]["id"].as_i64().expect("id");
    let deleted =
        http().delete(format!("{}/v1/certificates/{id}", server.base)).bearer_auth(&admin).send().expect("delete");
    assert!(deleted.status().is_success(), "{}", deleted.status());
    let gone = http()
        .post(format!("{}/v1/certificates", server.base))
        .bearer_auth(&bot)
        .header("Idempotency-Key", key)
        .json(&body)
        .send()
        .expect("issue");
    assert_eq!(gone.status(), StatusCode::GONE);
    assert_eq!(gone.headers()["location"], format!("/v1/orders/{}", first["order_id"]).as_str());
    let gone: serde_json::Value = gone.json().expect("problem");
    assert_eq!(gone["order_id"], first["order_id"], "{gone}");
    assert!(gone["detail"].as_str().expect("detail").contains("has since been deleted; send a new key"), "{gone}");

    // Malformed keys are refused before anything happens, naming the header.
    let long = "k".repeat(256);
    for bad in ["", "two words", long.as_str()] {
        let (status, _, problem) = issue(&server, &bot, Some(bad), &body);
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad:?}: {problem}");
        assert!(problem["detail"].as_str().expect("detail").starts_with("the Idempotency-Key header must be"));
    }
    let twice = http()
        .post(format!("{}/v1/certificates", server.base))
        .bearer_auth(&bot)
        .header("Idempotency-Key", "a")
        .header("Idempotency-Key", "b")
        .json(&body)
        .send()
        .expect("issue");
    assert_eq!(twice.status(), StatusCode::BAD_REQUEST);
    // One raced in, one deleted.
    assert_eq!(get(&server, &admin, "/v1/certificates")["items"].as_array().expect("items").len(), 3);
}

/// The key of a request still at the CA is a 409 naming the order; once the order is done the
/// same request gets its certificate. A failed order issued nothing, so its key runs the
/// request again; a pending one is answered with its order.
#[test]
fn a_key_whose_order_is_at_the_ca_waits_for_it_and_a_failed_order_frees_its_key() {
    let app = App::new();
    let (config, ca) = crate::helpers::scripted_lab(
        &app,
        "slow",
        "slow",
        "timeout_seconds = 20",
        &[
            ("slow", "accounts = [\"slow\"]\n"),
            ("down", "accounts = [\"down\"]\n"),
            ("later", "accounts = [\"later\"]\n"),
        ],
    );
    let script = crate::python::fixture("scripted_ca.py");
    let mut text = std::fs::read_to_string(&config).expect("config");
    for (name, mode) in [("down", "unreachable"), ("later", "pending")] {
        text.push_str(&format!(
            "[accounts.{name}]\nconnector = \"{}\"\nparams.mode = \"{mode}\"\nparams.ca_cert = \"{c}/ca.pem\"\nparams.ca_key = \"{c}/ca.key\"\nparams.state_dir = \"{c}\"\n",
            script.display(),
            c = ca.display()
        ));
    }
    std::fs::write(&config, text).expect("config");
    let server = Server::start(app, Some(&config));
    let bot = server.token("bot", "requester");

    let slow = json!({"profile": "slow", "cn": "patient.example.com"});
    let first = {
        let (base, bot, slow) = (server.base.clone(), bot.clone(), slow.clone());
        std::thread::spawn(move || {
            let resp = http()
                .post(format!("{base}/v1/certificates"))
                .bearer_auth(bot)
                .header("Idempotency-Key", "slow-1")
                .json(&slow)
                .send()
                .expect("issue");
            (resp.status(), resp.json::<serde_json::Value>().expect("json"))
        })
    };
    // The script sleeps 3 s before it signs; its order is written before the call.
    let admin = server.token("root", "admin");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while get(&server, &admin, "/v1/orders")["items"].as_array().is_none_or(Vec::is_empty) {
        assert!(std::time::Instant::now() < deadline, "the first request's order never appeared");
        std::thread::sleep(Duration::from_millis(50));
    }
    let held = http()
        .post(format!("{}/v1/certificates", server.base))
        .bearer_auth(&bot)
        .header("Idempotency-Key", "slow-1")
        .json(&slow)
        .send()
        .expect("issue");
    assert_eq!(held.status(), StatusCode::CONFLICT);
    assert_eq!(held.headers()["retry-after"], "5", "still running: ask again");
    let location = held.headers()["location"].to_str().expect("location").to_owned();
    let in_flight: serde_json::Value = held.json().expect("problem");
    assert_eq!(location, format!("/v1/orders/{}", in_flight["order_id"]));
    let detail = in_flight["detail"].as_str().expect("a 409 while the first request is at the CA");
    assert!(detail.contains("is still in progress"), "{detail}");
    let (status, issued) = first.join().expect("first request");
    assert_eq!(status, StatusCode::CREATED, "{issued}");
    assert!(detail.contains(&format!("order {}", issued["order_id"])), "{detail}");
    let (status, replayed, again) = issue(&server, &bot, Some("slow-1"), &slow);
    assert_eq!((status, replayed), (StatusCode::CREATED, true), "{again}");
    assert_eq!(again["certificate"]["id"], issued["certificate"]["id"]);

    // A failed order frees its key: the request runs again, as a new order.
    let down = json!({"profile": "down", "cn": "down.example.com"});
    let (status, _, failed) = issue(&server, &bot, Some("down-1"), &down);
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{failed}");
    let (status, replayed, failed_again) = issue(&server, &bot, Some("down-1"), &down);
    assert_eq!((status, replayed), (StatusCode::BAD_GATEWAY, false), "{failed_again}");
    assert_ne!(failed["detail"], failed_again["detail"], "two orders, each named: {failed} {failed_again}");

    // A request pending at the CA is answered with its order and next poll.
    let later = json!({"profile": "later", "cn": "later.example.com"});
    let (status, _, pending) = issue(&server, &bot, Some("later-1"), &later);
    assert_eq!(status, StatusCode::ACCEPTED, "{pending}");
    let (status, replayed, pending_again) = issue(&server, &bot, Some("later-1"), &later);
    assert_eq!((status, replayed), (StatusCode::ACCEPTED, true), "{pending_again}");
    assert_eq!(pending_again["order_id"], pending["order_id"]);
    assert_eq!(pending_again["disposition"], "pending");
    assert!(pending_again["next_poll_at"].is_string(), "{pending_again}");
    // The next poll as a header too, for a client's retry logic.
    let resp = http()
        .post(format!("{}/v1/certificates", server.base))
        .bearer_auth(&bot)
        .header("Idempotency-Key", "later-1")
        .json(&later)
        .send()
        .expect("issue");
    let after: i64 = resp.headers()["retry-after"].to_str().expect("ascii").parse().expect("seconds");
    assert!((1..=3600).contains(&after), "{after}");
    let orders = get(&server, &admin, "/v1/orders");
    assert_eq!(orders["items"].as_array().expect("orders").len(), 4, "slow once, down twice, later once: {orders}");
}
