//! The auth matrix: every endpoint × every role × no token × a revoked token. Allowed calls
//! may still fail for other reasons (404 on a made-up id), but never with 401 or 403;
//! refused ones get exactly 401 or 403 and change nothing.

use reqwest::StatusCode;
use reqwest::blocking::RequestBuilder;

use crate::helpers::{App, Server, http, local_ca_lab};

const ROLES: [&str; 4] = ["admin", "operator", "requester", "auditor"];

/// (method, path, roles allowed). Ids and names are made up, so allowed calls touch nothing.
pub const ENDPOINTS: &[(&str, &str, &[&str])] = &[
    ("GET", "/v1/certificates", &ROLES),
    ("POST", "/v1/certificates", &["admin", "operator", "requester"]),
    ("GET", "/v1/certificates/999999", &ROLES),
    ("DELETE", "/v1/certificates/999999", &["admin", "operator"]),
    ("GET", "/v1/certificates/999999/pem", &ROLES),
    ("GET", "/v1/certificates/999999/chain", &ROLES),
    ("GET", "/v1/certificates/999999/fullchain", &ROLES),
    ("GET", "/v1/certificates/999999/der", &ROLES),
    ("GET", "/v1/certificates/999999/key", &["admin", "operator", "requester"]),
    ("POST", "/v1/certificates/999999/pkcs12", &["admin", "operator", "requester"]),
    ("POST", "/v1/certificates/999999/renew", &["admin", "operator", "requester"]),
    ("POST", "/v1/certificates/999999/reissue", &["admin", "operator"]),
    ("POST", "/v1/certificates/999999/revoke", &["admin", "operator"]),
    ("POST", "/v1/certificates/999999/deploy", &["admin", "operator"]),
    ("GET", "/v1/renewals", &["admin", "operator", "auditor"]),
    ("POST", "/v1/renewals/retry", &["admin", "operator"]),
    ("POST", "/v1/renew", &["admin", "operator", "requester"]),
    ("GET", "/v1/accounts", &ROLES),
    ("POST", "/v1/accounts", &["admin"]),
    ("GET", "/v1/accounts/nosuch", &ROLES),
    ("PUT", "/v1/accounts/nosuch", &["admin"]),
    ("DELETE", "/v1/accounts/nosuch", &["admin"]),
    ("POST", "/v1/accounts/nosuch/activate", &["admin"]),
    ("POST", "/v1/accounts/nosuch/deactivate", &["admin"]),
    ("POST", "/v1/accounts/nosuch/test", &["admin"]),
    ("PUT", "/v1/accounts/nosuch/params/p/secret", &["admin"]),
    ("GET", "/v1/profiles", &ROLES),
    ("POST", "/v1/profiles", &["admin"]),
    ("GET", "/v1/profiles/nosuch", &ROLES),
    ("PUT", "/v1/profiles/nosuch", &["admin"]),
    ("DELETE", "/v1/profiles/nosuch", &["admin"]),
    ("PUT", "/v1/profiles/nosuch/params/p/secret", &["admin"]),
    ("GET", "/v1/orders", &ROLES),
    ("GET", "/v1/orders/999999", &ROLES),
    ("POST", "/v1/orders/999999/poll", &["admin", "operator"]),
    ("POST", "/v1/orders/999999/approve", &["admin", "operator"]),
    ("POST", "/v1/orders/999999/decline", &["admin", "operator"]),
    ("GET", "/v1/audit", &["admin", "operator", "auditor"]),
    ("GET", "/v1/tokens", &["admin"]),
    ("POST", "/v1/tokens", &["admin"]),
    ("DELETE", "/v1/tokens/nosuch", &["admin"]),
];

fn request(c: &reqwest::blocking::Client, base: &str, method: &str, path: &str) -> RequestBuilder {
    let url = format!("{base}{path}");
    let body = serde_json::json!({});
    match method {
        "GET" => c.get(url),
        "POST" => c.post(url).json(&body),
        "PUT" => c.put(url).json(&body),
        "DELETE" => c.delete(url),
        other => panic!("method {other}"),
    }
}

#[test]
fn every_endpoint_times_every_role_no_token_and_a_revoked_token() {
    let app = App::new();
    let (config, _) = local_ca_lab(&app, "");
    let server = Server::start(app, Some(&config));
    let tokens: Vec<(&str, String)> = ROLES.iter().map(|r| (*r, server.token(&format!("t-{r}"), r))).collect();
    let revoked = server.token("gone", "admin");
    server.app.run(&["token", "revoke", "gone"]).ok();
    let c = http();
    let audit_count = || server.app.json(&["audit", "--json", "--limit", "100000"]).as_array().map(Vec::len);
    let audit_before = audit_count();
    let mut failures = Vec::new();
    for (method, path, allowed) in ENDPOINTS {
        for (who, token) in [("no token", None), ("revoked token", Some(revoked.as_str()))] {
            let mut req = request(&c, &server.base, method, path);
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let status = req.send().expect("send").status();
            if status != StatusCode::UNAUTHORIZED {
                failures.push(format!("{method} {path} with {who}: {status}, expected 401"));
            }
        }
        for (role, token) in &tokens {
            let status = request(&c, &server.base, method, path).bearer_auth(token).send().expect("send").status();
            let may = allowed.contains(role);
            let refused = status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN;
            if may == refused || status.is_server_error() {
                failures.push(format!("{method} {path} as {role}: {status} (allowed: {may})"));
            }
        }
    }
    assert!(failures.is_empty(), "auth matrix failures:\n{}\nlog: {}", failures.join("\n"), server.log());
    // Probes and the OpenAPI document need no token.
    for path in ["/healthz", "/readyz", "/metrics", "/v1/openapi.json"] {
        assert_eq!(c.get(format!("{}{path}", server.base)).send().expect("get").status(), StatusCode::OK, "{path}");
    }
    // Nothing changed: refused calls never act, and the allowed ones named objects that do not
    // exist or carried an empty body, so no audit event was written.
    assert_eq!(audit_count(), audit_before);
}

#[test]
fn an_approval_must_come_from_another_token_than_the_request() {
    let app = App::new();
    let (config, _) = local_ca_lab(&app, "approval_required = true");
    let server = Server::start(app, Some(&config));
    let alice = server.token("alice", "operator");
    let bob = server.token("bob", "operator");
    let c = http();
    let held: serde_json::Value = c
        .post(format!("{}/v1/certificates", server.base))
        .bearer_auth(&alice)
        .json(&serde_json::json!({"profile": "lab", "cn": "held.example.com"}))
        .send()
        .expect("issue")
        .json()
        .expect("json");
    assert_eq!(held["disposition"], "awaiting_approval", "{held}");
    let order = held["order_id"].as_i64().expect("order");
    let own = c.post(format!("{}/v1/orders/{order}/approve", server.base)).bearer_auth(&alice).send().expect("approve");
    // Not a state conflict nor bad input: this caller may not (403).
    assert_eq!(own.status(), StatusCode::FORBIDDEN);
    let body: serde_json::Value = own.json().expect("json");
    assert!(body["detail"].as_str().expect("detail").contains("someone other than its requester"), "{body}");
    // A mistyped parameter is refused and decides nothing: the order stays held.
    let typo = c
        .post(format!("{}/v1/orders/{order}/approve", server.base))
        .bearer_auth(&bob)
        .json(&serde_json::json!({"params": {"nosuch": "1"}}))
        .send()
        .expect("approve");
    assert_eq!(typo.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: serde_json::Value = typo.json().expect("json");
    assert!(body["detail"].as_str().expect("detail").contains("unknown parameter nosuch"), "{body}");
    let still: serde_json::Value = c
        .get(format!("{}/v1/orders/{order}", server.base))
        .bearer_auth(&alice)
        .send()
        .expect("get")
        .json()
        .expect("json");
    assert_eq!(still["state"], "awaiting_approval", "{still}");
    // An approver's alert can count it (operator review of stop 36: /metrics showed nothing
    // waiting for anyone).
    let metrics = c.get(format!("{}/metrics", server.base)).send().expect("metrics").text().expect("text");
    assert!(metrics.contains("certhost_orders_open{state=\"awaiting_approval\"} 1"), "{metrics}");
    assert!(metrics.contains("certhost_deploy_retries 0"), "{metrics}");
    let ok: serde_json::Value = c
        .post(format!("{}/v1/orders/{order}/approve", server.base))
        .bearer_auth(&bob)
        .send()
        .expect("approve")
        .json()
        .expect("json");
    assert_eq!(ok["disposition"], "issued", "{ok}");
    let shown: serde_json::Value = c
        .get(format!("{}/v1/orders/{order}", server.base))
        .bearer_auth(&alice)
        .send()
        .expect("get")
        .json()
        .expect("json");
    assert_eq!(shown["decided_by"], "token:bob");
    assert_eq!(shown["state"], "issued");
}
