//! The whole certificate lifecycle through the HTTP API of the real server: issue, download,
//! key download rules, renew, Keyfactor-style renew, reissue, revoke, delete; accounts,
//! profiles, secrets and tokens managed over HTTP; metrics; HTTPS.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{App, Server, http, local_ca_lab, openssl_verify, sh};

struct Api {
    server: Server,
    c: reqwest::blocking::Client,
}

impl Api {
    fn get(&self, token: &str, path: &str) -> reqwest::blocking::Response {
        self.c.get(format!("{}{path}", self.server.base)).bearer_auth(token).send().expect("GET")
    }
    fn post(&self, token: &str, path: &str, body: Value) -> reqwest::blocking::Response {
        self.c.post(format!("{}{path}", self.server.base)).bearer_auth(token).json(&body).send().expect("POST")
    }
    fn put(&self, token: &str, path: &str, body: Value) -> reqwest::blocking::Response {
        self.c.put(format!("{}{path}", self.server.base)).bearer_auth(token).json(&body).send().expect("PUT")
    }
    fn delete(&self, token: &str, path: &str) -> reqwest::blocking::Response {
        self.c.delete(format!("{}{path}", self.server.base)).bearer_auth(token).send().expect("DELETE")
    }
}

#[track_caller]
/// The `Location` header of a response, before its body is read.
fn location(resp: &reqwest::blocking::Response) -> Option<String> {
    resp.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_owned)
}

fn json_of(resp: reqwest::blocking::Response, status: StatusCode) -> Value {
    let got = resp.status();
    let body = resp.text().expect("body");
    assert_eq!(got, status, "body: {body}");
    serde_json::from_str(&body).unwrap_or(Value::Null)
}

#[test]
fn issue_download_renew_reissue_revoke_and_delete_over_http_on_local_ca() {
    let app = App::new();
    let (config, ca) = local_ca_lab(&app, "");
    let server = Server::start(app, Some(&config));
    let admin = server.token("root", "admin");
    let operator = server.token("ops", "operator");
    let requester = server.token("alice", "requester");
    let other = server.token("bob", "requester");
    let api = Api { server, c: http() };

    // Issue as a requester: 201 with the certificate, and where to read it.
    let resp = api.post(
        &requester,
        "/v1/certificates",
        json!({"profile": "lab", "cn": "www.example.com", "sans": ["IP:192.0.2.9"]}),
    );
    let at = location(&resp);
    let issued = json_of(resp, StatusCode::CREATED);
    assert_eq!(issued["disposition"], "issued");
    let id = issued["certificate"]["id"].as_i64().expect("id");
    assert_eq!(at, Some(format!("/v1/certificates/{id}")));
    assert!(issued["certificate"]["sans"].as_array().expect("sans").contains(&json!("IP:192.0.2.9")));
    // The 201 body is the stored row (read in the change that stored it): a later read of the
    // certificate returns the same view, deployments and the renewal schedule (detail views
    // only) aside.
    let mut stored = json_of(api.get(&requester, &format!("/v1/certificates/{id}")), StatusCode::OK);
    assert!(stored["renewal"]["renews_at"].is_string(), "{stored}");
    let mut answered = issued["certificate"].clone();
    for view in [&mut stored, &mut answered] {
        view.as_object_mut().expect("object").remove("deployments");
        view.as_object_mut().expect("object").remove("renewal");
    }
    assert_eq!(answered, stored);
    assert_eq!(answered["status"], "active");
    assert_eq!(answered["profile"], "lab");

    // Downloads: the full chain verifies against the CA with the real openssl.
    let fullchain = api.get(&requester, &format!("/v1/certificates/{id}/fullchain")).text().expect("pem");
    let file = api.server.app.path("fullchain.pem");
    std::fs::write(&file, &fullchain).expect("write");
    assert!(openssl_verify(&ca.join("ca.pem"), &file).contains(": OK"));
    let leaf = api.get(&requester, &format!("/v1/certificates/{id}/pem")).text().expect("pem");
    assert!(fullchain.starts_with(&leaf));

    // The private key: requesters and operators only where the profile allows (requesters only
    // their own), admins yes.
    let refused = json_of(api.get(&requester, &format!("/v1/certificates/{id}/key")), StatusCode::FORBIDDEN);
    assert!(refused["detail"].as_str().expect("detail").contains("key_download"), "{refused}");
    let refused = json_of(api.get(&operator, &format!("/v1/certificates/{id}/key")), StatusCode::FORBIDDEN);
    assert!(refused["detail"].as_str().expect("detail").contains("key_download"), "{refused}");
    let key = api.get(&admin, &format!("/v1/certificates/{id}/key"));
    assert_eq!(key.status(), StatusCode::OK);
    let key = key.text().expect("key");
    assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"));
    let key_file = api.server.app.path("key.pem");
    std::fs::write(&key_file, &key).expect("write");
    let leaf_file = api.server.app.path("leaf.pem");
    std::fs::write(&leaf_file, &leaf).expect("write");
    let key_pub = sh("openssl", &["pkey", "-in", key_file.to_str().expect("utf8"), "-pubout"]);
    let cert_pub = sh("openssl", &["x509", "-in", leaf_file.to_str().expect("utf8"), "-noout", "-pubkey"]);
    assert_eq!(key_pub, cert_pub, "the downloaded key is the certificate's");
    let audit = json_of(api.get(&admin, "/v1/audit?action=certificate.key_download"), StatusCode::OK);
    assert_eq!(audit["items"][0]["actor"], "token:root");
    // A requester's host-made key was of no use to it (plugin-author walkthrough of stop 47):
    // where the profile allows downloads, it downloads the keys of what it requested.
    json_of(
        api.post(&admin, "/v1/profiles", json!({"name": "dl", "accounts": ["lab"], "key_download": true})),
        StatusCode::CREATED,
    );
    let own = json_of(
        api.post(&requester, "/v1/certificates", json!({"profile": "dl", "cn": "dl.example.com"})),
        StatusCode::CREATED,
    );
    let own = own["certificate"]["id"].as_i64().expect("id");
    let key = api.get(&requester, &format!("/v1/certificates/{own}/key"));
    assert_eq!(key.status(), StatusCode::OK);
    assert!(key.text().expect("key").starts_with("-----BEGIN PRIVATE KEY-----"));
    let refused = json_of(api.get(&other, &format!("/v1/certificates/{own}/key")), StatusCode::FORBIDDEN);
    assert_eq!(
        refused["detail"], "role requester may not download the keys of certificates requested by someone else",
        "{refused}"
    );
    let audit = json_of(api.get(&admin, "/v1/audit?action=certificate.key_download"), StatusCode::OK);
    assert_eq!(audit["items"][0]["actor"], "token:alice");
    // Its successor, renewed by an operator, is still what she requested.
    let renewed =
        json_of(api.post(&operator, &format!("/v1/certificates/{own}/renew"), json!({})), StatusCode::CREATED);
    let successor = renewed["certificate"]["id"].as_i64().expect("id");
    assert_eq!(api.get(&requester, &format!("/v1/certificates/{successor}/key")).status(), StatusCode::OK);
    json_of(api.get(&other, &format!("/v1/certificates/{successor}/key")), StatusCode::FORBIDDEN);

    // Another requester may not renew alice's certificate; alice may.
    json_of(api.post(&other, &format!("/v1/certificates/{id}/renew"), json!({})), StatusCode::FORBIDDEN);
    let renewed =
        json_of(api.post(&requester, &format!("/v1/certificates/{id}/renew"), json!({})), StatusCode::CREATED);
    let id2 = renewed["certificate"]["id"].as_i64().expect("id2");
    assert_eq!(renewed["certificate"]["predecessor_id"], id);
    let old = json_of(api.get(&admin, &format!("/v1/certificates/{id}")), StatusCode::OK);
    assert_eq!(old["status"], "superseded");
    // A superseded certificate is not renewed again.
    let again = json_of(api.post(&operator, &format!("/v1/certificates/{id}/renew"), json!({})), StatusCode::CONFLICT);
    assert!(again["detail"].as_str().expect("detail").contains("superseded"), "{again}");

    // Keyfactor-shaped renew by thumbprint.
    let sha256 = renewed["certificate"]["sha256"].as_str().expect("sha").to_owned();
    let kf = json_of(
        api.post(
            &operator,
            "/v1/renew",
            json!({"lookup": {"type": "thumbprint", "value": sha256}, "metadata": {"ticket": "CHG-42"}}),
        ),
        StatusCode::OK,
    );
    assert_eq!(kf["disposition"], "issued", "{kf}");
    let id3: i64 = {
        let thumb = kf["thumbprint"].as_str().expect("thumbprint");
        json_of(api.get(&admin, &format!("/v1/certificates/{thumb}")), StatusCode::OK)["id"].as_i64().expect("id")
    };
    assert_eq!(json_of(api.get(&admin, &format!("/v1/certificates/{id2}")), StatusCode::OK)["status"], "superseded");
    let missing = json_of(
        api.post(
            &operator,
            "/v1/renew",
            json!({"lookup": {"type": "id", "value": "999999"}, "metadata": {"ticket": "CHG-43"}}),
        ),
        StatusCode::NOT_FOUND,
    );
    assert!(missing["detail"].as_str().expect("detail").contains("999999"));
    json_of(
        api.post(
            &other,
            "/v1/renew",
            json!({"lookup": {"type": "id", "value": id3.to_string()}, "metadata": {"ticket": "CHG-44"}}),
        ),
        StatusCode::FORBIDDEN,
    );
    // Only the renewal that went ahead is audited, against the certificate it found.
    let meta = json_of(api.get(&admin, "/v1/audit?action=certificate.renew_request"), StatusCode::OK);
    assert_eq!(meta["items"].as_array().map(Vec::len), Some(1), "{meta}");
    assert_eq!(meta["items"][0]["detail"]["metadata"]["ticket"], "CHG-42");
    assert_eq!(meta["items"][0]["object_id"], id2.to_string());

    // Reissue: a new key pair with the same names.
    let reissued =
        json_of(api.post(&operator, &format!("/v1/certificates/{id3}/reissue"), json!({})), StatusCode::CREATED);
    let id4 = reissued["certificate"]["id"].as_i64().expect("id4");
    let k3 = api.get(&admin, &format!("/v1/certificates/{id3}/key")).text().expect("k3");
    let k4 = api.get(&admin, &format!("/v1/certificates/{id4}/key")).text().expect("k4");
    assert_ne!(k3, k4, "reissue makes a new key");
    assert_eq!(reissued["certificate"]["sans"], renewed["certificate"]["sans"]);

    // Revoke on a connector without revoke: a clear error and nothing changes.
    let nope = json_of(
        api.post(&operator, &format!("/v1/certificates/{id4}/revoke"), json!({"reason": "keyCompromise"})),
        StatusCode::UNPROCESSABLE_ENTITY,
    );
    assert!(nope["detail"].as_str().expect("detail").contains("nothing was changed"), "{nope}");
    assert_eq!(json_of(api.get(&admin, &format!("/v1/certificates/{id4}")), StatusCode::OK)["status"], "active");
    json_of(
        api.post(&operator, &format!("/v1/certificates/{id4}/revoke"), json!({"reason": "becauseISaidSo"})),
        StatusCode::UNPROCESSABLE_ENTITY,
    );

    // Delete: gone from the inventory, the audit stays.
    assert_eq!(api.delete(&operator, &format!("/v1/certificates/{id4}")).status(), StatusCode::NO_CONTENT);
    json_of(api.get(&admin, &format!("/v1/certificates/{id4}")), StatusCode::NOT_FOUND);
    let deleted =
        json_of(api.get(&admin, &format!("/v1/audit?object_type=certificate&object_id={id4}")), StatusCode::OK);
    let actions: Vec<&str> =
        deleted["items"].as_array().expect("items").iter().filter_map(|e| e["action"].as_str()).collect();
    assert!(actions.contains(&"certificate.delete") && actions.contains(&"certificate.reissue"), "{actions:?}");

    // Metrics count what happened.
    let metrics = api.c.get(format!("{}/metrics", api.server.base)).send().expect("metrics").text().expect("text");
    assert!(metrics.contains("certhost_issuances_total{outcome=\"issued\"} 6"), "{metrics}");
    // By account, operation and outcome.
    let calls = |operation: &str| {
        format!(
            "certhost_connector_call_seconds_count{{connector=\"local-ca\",account=\"lab\",operation=\"{operation}\",outcome=\"ok\"}}"
        )
    };
    assert!(metrics.contains(&calls("request")), "{metrics}");
    assert!(metrics.contains("certhost_certificates_expiring{days=\"7-30\"}"), "{metrics}");
}

#[test]
fn accounts_profiles_secrets_and_tokens_are_managed_over_http() {
    let app = App::new();
    let (config, ca) = local_ca_lab(&app, "");
    let server = Server::start(app, Some(&config));
    let admin = server.token("root", "admin");
    let api = Api { server, c: http() };
    let script = crate::python::fixture("scripted_ca.py");

    // An account created over HTTP, with a sensitive parameter set write-only.
    let resp = api.post(
        &admin,
        "/v1/accounts",
        json!({"name": "scripted", "connector": script, "params": {
            "mode": "good", "ca_cert": ca.join("ca.pem"), "ca_key": ca.join("ca.key"),
            "api_token": {"sensitive": true, "required": true},
            "pin": {"sensitive": true, "regex": "[0-9]{4}"}}}),
    );
    assert_eq!(location(&resp).as_deref(), Some("/v1/accounts/scripted"));
    let created = json_of(resp, StatusCode::CREATED);
    assert_eq!(created["params"]["api_token"]["set"], false);
    json_of(api.post(&admin, "/v1/accounts", json!({"name": "scripted", "connector": script})), StatusCode::CONFLICT);
    // Regression (review of stop 31): a relative path was stored as given and read against
    // each process's working directory.
    let relative = json_of(
        api.post(&admin, "/v1/accounts", json!({"name": "rel", "connector": "plugins/cfssl.py"})),
        StatusCode::UNPROCESSABLE_ENTITY,
    );
    assert!(relative["detail"].as_str().expect("detail").contains("plugins/cfssl.py is a relative path"), "{relative}");
    let secret = "api-S3CRET-0b7e55";
    assert_eq!(
        api.put(&admin, "/v1/accounts/scripted/params/api_token/secret", json!({"value": secret})).status(),
        StatusCode::NO_CONTENT
    );
    let shown = api.get(&admin, "/v1/accounts/scripted").text().expect("text");
    assert!(!shown.contains(secret) && shown.contains("\"set\":true"), "{shown}");
    // Black-box review of stop 35: a field besides `value` was ignored (a typo'd body stored).
    let extra = json_of(
        api.put(&admin, "/v1/accounts/scripted/params/api_token/secret", json!({"value": secret, "extra": "x"})),
        StatusCode::UNPROCESSABLE_ENTITY,
    );
    let detail = extra["detail"].as_str().expect("detail");
    assert!(detail.contains("unknown field `extra`") && !detail.contains(secret), "{extra}");
    // Read as every JSON body is (stop 36's review): an array is not `{"value": …}` by position.
    let array = json_of(
        api.put(&admin, "/v1/accounts/scripted/params/api_token/secret", json!([secret])),
        StatusCode::UNPROCESSABLE_ENTITY,
    );
    assert!(!array.to_string().contains(secret), "{array}");
    json_of(
        api.put(&admin, "/v1/accounts/scripted/params/mode/secret", json!({"value": "x"})),
        StatusCode::UNPROCESSABLE_ENTITY,
    );
    // A secret is held to its parameter's rules when it is set, as `certhost secret set` holds it,
    // not found out by every issuance after; the refusal does not show the value.
    let refused = json_of(
        api.put(&admin, "/v1/accounts/scripted/params/pin/secret", json!({"value": "not-a-pin-S3CRET"})),
        StatusCode::UNPROCESSABLE_ENTITY,
    );
    let detail = refused["detail"].as_str().expect("detail");
    assert!(detail.contains("must match") && !detail.contains("not-a-pin-S3CRET"), "{refused}");
    assert_eq!(refused["code"], "invalid_parameter", "as an issue request's parameter is: {refused}");
    assert_eq!(
        api.put(&admin, "/v1/accounts/scripted/params/pin/secret", json!({"value": "1234"})).status(),
        StatusCode::NO_CONTENT
    );
    // A literal sensitive value is refused, without echoing it.
    let literal = json_of(
        api.post(
            &admin,
            "/v1/accounts",
            json!({"name": "leak", "connector": script,
            "params": {"k": {"sensitive": true, "value": "literal-S3CRET-99"}}}),
        ),
        StatusCode::UNPROCESSABLE_ENTITY,
    );
    assert!(!literal.to_string().contains("literal-S3CRET-99"));
    // A script that does not import is refused at create time with Python's line.
    let broken = json_of(
        api.post(
            &admin,
            "/v1/accounts",
            json!({"name": "broken", "connector": crate::python::fixture("hostile/syntax_error.py")}),
        ),
        StatusCode::UNPROCESSABLE_ENTITY,
    );
    assert!(broken["detail"].as_str().expect("detail").contains("line"), "{broken}");

    // A profile created over HTTP issues through the new account.
    let resp = api.post(
        &admin,
        "/v1/profiles",
        json!({"name": "web", "accounts": ["scripted"], "params": {"ticket": {"dynamic": true, "sensitive": true}}}),
    );
    assert_eq!(location(&resp).as_deref(), Some("/v1/profiles/web"));
    json_of(resp, StatusCode::CREATED);
    // Each request supplies a dynamic parameter: it takes no stored secret.
    let dynamic = json_of(
        api.put(&admin, "/v1/profiles/web/params/ticket/secret", json!({"value": "5678"})),
        StatusCode::UNPROCESSABLE_ENTITY,
    );
    assert!(dynamic["detail"].as_str().expect("detail").contains("is dynamic"), "{dynamic}");
    json_of(
        api.post(&admin, "/v1/profiles", json!({"name": "bad", "accounts": ["nosuch"]})),
        StatusCode::UNPROCESSABLE_ENTITY,
    );
    let issued = json_of(
        api.post(&admin, "/v1/certificates", json!({"profile": "web", "cn": "a.example.com"})),
        StatusCode::CREATED,
    );
    assert_eq!(issued["certificate"]["account"], "scripted");
    // Update, then the in-use rules: the account is used by the profile.
    let changed = json_of(
        api.put(&admin, "/v1/profiles/web", json!({"accounts": ["scripted"], "description": "changed"})),
        StatusCode::OK,
    );
    assert!(changed.get("warnings").is_none(), "{changed}");
    // What the CLI warns about a profile's deploy targets, the API says too (operator review
    // of stop 41): allowed, and told.
    let target = api.server.app.path("out/owned.pem");
    let owned = json_of(
        api.post(
            &admin,
            "/v1/profiles",
            json!({"name": "owned", "accounts": ["scripted"], "deploy": [{"cert": target, "owner": "no-such-user-4711"}]}),
        ),
        StatusCode::CREATED,
    );
    let warnings = owned["warnings"].as_array().expect("warnings");
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().is_some_and(|w| w.contains("owner no-such-user-4711 is not a user on this host"))),
        "{owned}"
    );
    json_of(api.delete(&admin, "/v1/profiles/owned"), StatusCode::NO_CONTENT);
    json_of(api.delete(&admin, "/v1/accounts/scripted"), StatusCode::CONFLICT);
    // File-defined objects are changed in their files.
    json_of(api.delete(&admin, "/v1/profiles/lab"), StatusCode::CONFLICT);
    json_of(api.put(&admin, "/v1/accounts/lab", json!({"connector": script})), StatusCode::CONFLICT);
    // Its certificate renews under it (review of stop 33): deleted later, with the certificate.
    let in_use = json_of(api.delete(&admin, "/v1/profiles/web"), StatusCode::CONFLICT);
    assert!(in_use["detail"].as_str().expect("detail").contains("is the profile of active certificates"), "{in_use}");
    json_of(api.post(&admin, "/v1/accounts/scripted/deactivate", json!({})), StatusCode::OK);
    // Regression (review of stop 31): an edit without `status` reactivated the account.
    let edited = json_of(
        api.put(&admin, "/v1/accounts/scripted", json!({"connector": script, "description": "edited"})),
        StatusCode::OK,
    );
    assert_eq!(edited["status"], "inactive", "{edited}");
    let test = json_of(api.post(&admin, "/v1/accounts/scripted/test", json!({})), StatusCode::CONFLICT);
    assert!(test["detail"].as_str().expect("detail").contains("inactive"), "{test}");
    // Regression (review of stop 31): an account that issued an active certificate was
    // deleted, and the certificate could no longer be revoked. (The profile moves to another
    // account first, so the account is not in use by it.)
    json_of(api.put(&admin, "/v1/profiles/web", json!({"accounts": ["lab"]})), StatusCode::OK);
    let in_use = json_of(api.delete(&admin, "/v1/accounts/scripted"), StatusCode::CONFLICT);
    assert!(in_use["detail"].as_str().expect("detail").contains("issued active certificates"), "{in_use}");
    let id = issued["certificate"]["id"].as_i64().expect("id");
    assert_eq!(api.delete(&admin, &format!("/v1/certificates/{id}")).status(), StatusCode::NO_CONTENT);
    assert_eq!(api.delete(&admin, "/v1/profiles/web").status(), StatusCode::NO_CONTENT);
    assert_eq!(api.delete(&admin, "/v1/accounts/scripted").status(), StatusCode::NO_CONTENT);

    // Tokens: created once with their secret, listed without it, revoked.
    let tok = json_of(api.post(&admin, "/v1/tokens", json!({"name": "ci", "role": "requester"})), StatusCode::CREATED);
    let secret_token = tok["token"].as_str().expect("token").to_owned();
    let list = api.get(&admin, "/v1/tokens").text().expect("list");
    assert!(list.contains("\"ci\"") && !list.contains(&secret_token));
    assert_eq!(api.get(&secret_token, "/v1/certificates").status(), StatusCode::OK);
    let far = api.post(&admin, "/v1/tokens", json!({"name": "far", "role": "requester", "expires_at": i64::MAX}));
    assert_eq!(far.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(far.text().expect("body").contains("past the year 9999"));
    let wide = api.get(&admin, "/v1/certificates?expiring_within_days=36501");
    assert_eq!(wide.status(), StatusCode::BAD_REQUEST);
    assert!(wide.text().expect("body").contains("expiring_within_days must be at most 36500"));
    let again = api.post(&admin, "/v1/tokens", json!({"name": "ci", "role": "requester"}));
    assert_eq!(again.status(), StatusCode::CONFLICT, "a live token's name is taken");
    assert_eq!(api.delete(&admin, "/v1/tokens/ci").status(), StatusCode::NO_CONTENT);
    assert_eq!(api.get(&secret_token, "/v1/certificates").status(), StatusCode::UNAUTHORIZED);
    // Black-box review of stop 35: "live token ci not found", and a name refused as existing.
    let twice = api.delete(&admin, "/v1/tokens/ci");
    assert_eq!(twice.status(), StatusCode::CONFLICT);
    assert!(twice.text().expect("body").contains("token ci is already revoked"));
    let reused = api.post(&admin, "/v1/tokens", json!({"name": "ci", "role": "requester"}));
    assert_eq!(reused.status(), StatusCode::CONFLICT);
    assert!(reused.text().expect("body").contains("a revoked token's name is not given again"));
    assert_eq!(api.delete(&admin, "/v1/tokens/nosuch").status(), StatusCode::NOT_FOUND);
    assert!(!api.server.log().contains(secret), "the server log holds the secret");
}

#[test]
fn serve_speaks_https_when_given_a_certificate() {
    let app = App::new();
    let (cert, key) = crate::helpers::localhost_tls(&app.path("tls"));
    let conf = app.path("certhost.toml");
    std::fs::write(&conf, format!("[server]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n", cert.display(), key.display()))
        .expect("config");
    let server = Server::start(app, Some(&conf));
    assert!(server.base.starts_with("https://"), "{}", server.base);
    let root = reqwest::Certificate::from_pem(&std::fs::read(&cert).expect("cert")).expect("root");
    let client = reqwest::blocking::Client::builder().add_root_certificate(root).build().expect("client");
    let health: Value = client.get(format!("{}/healthz", server.base)).send().expect("https").json().expect("json");
    assert_eq!(health["status"], "ok");
    // A client that does not trust the certificate fails the handshake; the server keeps serving.
    assert!(http().get(format!("{}/healthz", server.base)).send().is_err());
    assert_eq!(client.get(format!("{}/healthz", server.base)).send().expect("again").status(), StatusCode::OK);
    // Its own certificate renewed: SIGHUP reads the files again (review of stop 33: only a
    // restart did), and new connections get the new one.
    let (new_cert, new_key) = crate::helpers::localhost_tls(&server.app.path("tls2"));
    let old_cert = server.app.path("old.pem");
    std::fs::copy(&cert, &old_cert).expect("keep the old cert");
    std::fs::copy(&new_cert, &cert).expect("replace cert");
    std::fs::copy(&new_key, &key).expect("replace key");
    crate::helpers::sh("kill", &["-HUP", &server.child.id().to_string()]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !server.log().contains("TLS certificate and key read again") {
        assert!(std::time::Instant::now() < deadline, "no TLS reload: {}", server.log());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let trusting = |pem: &std::path::Path| {
        let root = reqwest::Certificate::from_pem(&std::fs::read(pem).expect("cert")).expect("root");
        reqwest::blocking::Client::builder().add_root_certificate(root).build().expect("client")
    };
    let renewed = trusting(&new_cert).get(format!("{}/healthz", server.base)).send().expect("the new certificate");
    assert_eq!(renewed.status(), StatusCode::OK);
    assert!(trusting(&old_cert).get(format!("{}/healthz", server.base)).send().is_err(), "still the old certificate");
    // Files that do not load leave the certificate in use.
    std::fs::write(&cert, "not a certificate").expect("break cert");
    crate::helpers::sh("kill", &["-HUP", &server.child.id().to_string()]);
    while !server.log().contains("TLS reload failed; the certificate in use stays") {
        assert!(std::time::Instant::now() < deadline, "no failed TLS reload: {}", server.log());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let kept = trusting(&new_cert).get(format!("{}/healthz", server.base)).send().expect("the kept certificate");
    assert_eq!(kept.status(), StatusCode::OK);
    // An expired certificate is refused while the one in use is valid (day-two walkthrough
    // of stop 49: put in service with an INFO line, and every client failed).
    let key_pair = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("params");
    params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(60);
    params.not_after = time::OffsetDateTime::now_utc() - time::Duration::days(30);
    let expired = params.self_signed(&key_pair).expect("self-signed");
    std::fs::write(&cert, expired.pem()).expect("expired cert");
    std::fs::write(&key, key_pair.serialize_pem()).expect("its key");
    crate::helpers::sh("kill", &["-HUP", &server.child.id().to_string()]);
    while !server.log().contains("the certificate expired at") {
        assert!(std::time::Instant::now() < deadline, "no refused TLS reload: {}", server.log());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(server.log().contains("the one in use (valid until"), "{}", server.log());
    let kept = trusting(&new_cert).get(format!("{}/healthz", server.base)).send().expect("still the valid one");
    assert_eq!(kept.status(), StatusCode::OK);
    // Its notAfter is a gauge a monitor alerts on.
    let metrics =
        trusting(&new_cert).get(format!("{}/metrics", server.base)).send().expect("metrics").text().expect("text");
    let not_after =
        crate::helpers::sh("openssl", &["x509", "-in", new_cert.to_str().expect("utf8"), "-noout", "-enddate"]);
    let not_after = time::PrimitiveDateTime::parse(
        not_after.trim().trim_start_matches("notAfter=").trim_end_matches(" GMT"),
        &time::macros::format_description!("[month repr:short] [day padding:space] [hour]:[minute]:[second] [year]"),
    )
    .expect("openssl's date")
    .assume_utc()
    .unix_timestamp();
    assert!(metrics.contains(&format!("certhost_tls_certificate_expiry_timestamp_seconds {not_after}\n")), "{metrics}");
}

#[test]
fn cfssl_py_lifecycle_over_http_issue_renew_and_revoke_reach_the_real_cfssl() {
    let app = App::new();
    let cfssl = crate::helpers::Cfssl::start(&app.path("cfssl"));
    let conf = app.path("conf");
    std::fs::create_dir_all(conf.join("profiles")).expect("mkdir");
    std::fs::write(
        conf.join("certhost.toml"),
        format!(
            "[accounts.cf]\nconnector = \"{}\"\nparams.url = \"{}\"\n",
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/cfssl.py").display(),
            cfssl.url
        ),
    )
    .expect("config");
    std::fs::write(conf.join("profiles/web.toml"), "accounts = [\"cf\"]\n").expect("profile");
    let server = Server::start(app, Some(&conf.join("certhost.toml")));
    let operator = server.token("ops", "operator");
    let api = Api { server, c: http() };

    let issued = json_of(
        api.post(&operator, "/v1/certificates", json!({"profile": "web", "cn": "cf.example.com"})),
        StatusCode::CREATED,
    );
    let id = issued["certificate"]["id"].as_i64().expect("id");
    let full = api.get(&operator, &format!("/v1/certificates/{id}/fullchain")).text().expect("pem");
    let leaf = api.server.app.path("cf-leaf.pem");
    std::fs::write(&leaf, &full).expect("write");
    assert!(openssl_verify(&cfssl.ca, &leaf).contains(": OK"));

    let renewed = json_of(api.post(&operator, &format!("/v1/certificates/{id}/renew"), json!({})), StatusCode::CREATED);
    let id2 = renewed["certificate"]["id"].as_i64().expect("id2");
    assert_eq!(json_of(api.get(&operator, &format!("/v1/certificates/{id}")), StatusCode::OK)["status"], "superseded");

    // Revocation goes to cfssl's /revoke; the inventory and the audit follow.
    let revoked = json_of(
        api.post(
            &operator,
            &format!("/v1/certificates/{id2}/revoke"),
            json!({"reason": "keyCompromise", "comment": "laptop lost"}),
        ),
        StatusCode::OK,
    );
    assert_eq!(revoked["status"], "revoked");
    // The certificate's view says why, when and by whom.
    let shown = json_of(api.get(&operator, &format!("/v1/certificates/{id2}")), StatusCode::OK);
    assert_eq!(shown["revocation"]["reason"], "keyCompromise", "{shown}");
    assert_eq!(shown["revocation"]["comment"], "laptop lost", "{shown}");
    assert_eq!(shown["revocation"]["by"], "token:ops", "{shown}");
    assert!(shown["revocation"]["at"].as_str().is_some_and(|t| t.ends_with('Z')), "{shown}");
    let before = json_of(api.get(&operator, &format!("/v1/certificates/{id}")), StatusCode::OK);
    assert!(before.get("revocation").is_none(), "a superseded certificate has no revocation: {before}");
    let serial = renewed["certificate"]["serial"].as_str().expect("serial");
    let decimal = sh("python3", &["-c", &format!("print(int('{serial}', 16))")]).trim().to_owned();
    let conn = rusqlite::Connection::open(&cfssl.db).expect("cfssl db");
    let (status, reason): (String, i64) = conn
        .query_row("SELECT status, reason FROM certificates WHERE serial_number = ?1", [&decimal], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .expect("cfssl row");
    assert_eq!((status.as_str(), reason), ("revoked", 1), "cfssl recorded the revocation with reason keyCompromise");
    let audit =
        json_of(api.get(&operator, &format!("/v1/audit?object_type=certificate&object_id={id2}")), StatusCode::OK);
    let event = audit["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|e| e["action"] == "certificate.revoke")
        .expect("revoke event")
        .clone();
    assert_eq!(event["detail"]["reason"], "keyCompromise");
    assert_eq!(event["detail"]["comment"], "laptop lost");
    // Revoking again is refused, and a revoked certificate is reissued, not renewed.
    json_of(
        api.post(&operator, &format!("/v1/certificates/{id2}/revoke"), json!({"reason": "superseded"})),
        StatusCode::CONFLICT,
    );
    json_of(api.post(&operator, &format!("/v1/certificates/{id2}/renew"), json!({})), StatusCode::CONFLICT);
    json_of(api.post(&operator, &format!("/v1/certificates/{id2}/reissue"), json!({})), StatusCode::CREATED);
}

/// Renewing was a way around a profile's rules: `renew {"profile": P}` into a profile with
/// `approval_required` issued at once, and `renew {"account": A}` issued at any account that
/// existed, listed by the profile or not, whoever asked.
#[test]
fn renewing_into_an_approval_profile_waits_and_a_requester_cannot_pick_an_unlisted_account() {
    let app = App::new();
    let (config, _ca) = local_ca_lab(&app, "");
    let conf = config.parent().expect("conf dir");
    let mut toml = std::fs::read_to_string(&config).expect("config");
    toml.push_str(&toml.replace("[accounts.lab]", "[accounts.other]"));
    std::fs::write(&config, toml).expect("config");
    std::fs::write(
        conf.join("profiles/held.toml"),
        "accounts = [\"lab\"]\napproval_required = true\n[sans]\nallowed_types = [\"DNS\"]\n",
    )
    .expect("profile");
    let server = Server::start(app, Some(&config));
    let operator = server.token("ops", "operator");
    let requester = server.token("alice", "requester");
    let api = Api { server, c: http() };
    let issue = |cn: &str| {
        let issued =
            json_of(api.post(&requester, "/v1/certificates", json!({"profile": "lab", "cn": cn})), StatusCode::CREATED);
        issued["certificate"]["id"].as_i64().expect("id")
    };

    // Into the approval profile: held, nothing issued, the certificate untouched.
    let id = issue("held.example.com");
    let resp = api.post(&requester, &format!("/v1/certificates/{id}/renew"), json!({"profile": "held"}));
    let at = location(&resp);
    let held = json_of(resp, StatusCode::ACCEPTED);
    assert_eq!(held["disposition"], "awaiting_approval");
    let order = held["order_id"].as_i64().expect("order");
    assert_eq!(at, Some(format!("/v1/orders/{order}")), "a 202 points at its order");
    let o = json_of(api.get(&operator, &format!("/v1/orders/{order}")), StatusCode::OK);
    assert_eq!((o["state"].as_str(), o["profile"].as_str()), (Some("awaiting_approval"), Some("held")));
    assert_eq!(json_of(api.get(&requester, &format!("/v1/certificates/{id}")), StatusCode::OK)["status"], "active");
    // Renewed again while that order is open: 409 naming it, as other conflicts about an order do.
    let resp = api.post(&requester, &format!("/v1/certificates/{id}/renew"), json!({}));
    assert_eq!(location(&resp), Some(format!("/v1/orders/{order}")));
    let again = json_of(resp, StatusCode::CONFLICT);
    assert_eq!(again["order_id"], order);
    assert_eq!(again["detail"], format!("certificate {id} already has renewal order {order} in progress"));
    // The Keyfactor-style route holds it the same way.
    let other_id = issue("held2.example.com");
    let lookup = json_of(
        api.post(
            &requester,
            "/v1/renew",
            json!({"lookup": {"type": "id", "value": other_id.to_string()}, "profile": "held"}),
        ),
        StatusCode::OK,
    );
    assert_eq!(lookup["disposition"], "pending");
    assert!(lookup["message"].as_str().expect("message").contains("awaits approval"), "{lookup}");
    // An account cannot be chosen for a held renewal: the approved order goes to the profile's.
    let third = issue("held3.example.com");
    let refused = json_of(
        api.post(&operator, &format!("/v1/certificates/{third}/renew"), json!({"profile": "held", "account": "lab"})),
        StatusCode::CONFLICT,
    );
    assert!(refused["detail"].as_str().expect("detail").contains("waits for approval"), "{refused}");

    // Once another person approves, it is issued under the new profile.
    let approved = json_of(api.post(&operator, &format!("/v1/orders/{order}/approve"), json!({})), StatusCode::OK);
    assert_eq!(approved["disposition"], "issued", "{approved}");
    let successor = approved["certificate_id"].as_i64().expect("id");
    // Acting again on the closed order is a state conflict (409) on every action, as poll
    // always was; approve and decline answered 422 before.
    for action in ["approve", "decline", "resubmit", "poll"] {
        let again =
            json_of(api.post(&operator, &format!("/v1/orders/{order}/{action}"), json!({})), StatusCode::CONFLICT);
        assert!(
            again["detail"].as_str().expect("detail").contains(&format!("order {order} is issued")),
            "{action}: {again}"
        );
    }
    let stored = json_of(api.get(&requester, &format!("/v1/certificates/{successor}")), StatusCode::OK);
    assert_eq!(stored["profile"], "held");
    assert_eq!(json_of(api.get(&requester, &format!("/v1/certificates/{id}")), StatusCode::OK)["status"], "superseded");
    // Renewing under the certificate's own profile stays automatic, approval profile or not.
    let again =
        json_of(api.post(&requester, &format!("/v1/certificates/{successor}/renew"), json!({})), StatusCode::CREATED);
    assert_eq!(again["certificate"]["profile"], "held");

    // A requester may only name one of the profile's accounts; an operator may migrate.
    let id = issue("acct.example.com");
    let refused = json_of(
        api.post(&requester, &format!("/v1/certificates/{id}/renew"), json!({"account": "other"})),
        StatusCode::FORBIDDEN,
    );
    assert_eq!(
        refused["detail"],
        "account other is not one of profile lab's CA accounts; only an operator or an administrator may renew at \
         another account"
    );
    let refused = json_of(
        api.post(
            &requester,
            "/v1/renew",
            json!({"lookup": {"type": "id", "value": id.to_string()}, "account": "other"}),
        ),
        StatusCode::FORBIDDEN,
    );
    assert!(refused["detail"].as_str().expect("detail").contains("account other"), "{refused}");
    let listed = json_of(
        api.post(&requester, &format!("/v1/certificates/{id}/renew"), json!({"account": "lab"})),
        StatusCode::CREATED,
    );
    let id = listed["certificate"]["id"].as_i64().expect("id");
    let migrated = json_of(
        api.post(&operator, &format!("/v1/certificates/{id}/renew"), json!({"account": "other"})),
        StatusCode::CREATED,
    );
    assert_eq!(migrated["certificate"]["account"], "other");
    // Renewed by an operator (or the scheduler), it is still the requester's to renew; it was
    // refused as "requested by someone else". Another requester still may not.
    let successor = migrated["certificate"]["id"].as_i64().expect("id");
    let bob = api.server.token("bob", "requester");
    let refused =
        json_of(api.post(&bob, &format!("/v1/certificates/{successor}/renew"), json!({})), StatusCode::FORBIDDEN);
    assert!(refused["detail"].as_str().expect("detail").contains("someone else"), "{refused}");
    json_of(api.post(&requester, &format!("/v1/certificates/{successor}/renew"), json!({})), StatusCode::CREATED);

    // The CLI holds a renewal into an approval profile too.
    let cli_id = issue("cli.example.com");
    let out = api.server.app.json(&[
        "--config",
        config.to_str().expect("utf8"),
        "renew",
        &cli_id.to_string(),
        "--profile",
        "held",
        "--json",
    ]);
    assert_eq!(out["disposition"], "awaiting_approval", "{out}");
}

/// `/v1/audit` and `/v1/orders` had no cursor: nothing older than the newest 1000 could ever
/// be read, and a `limit` out of range was quietly clamped, so a short page looked complete.
#[test]
fn audit_and_orders_page_back_to_the_oldest_and_an_out_of_range_limit_is_refused() {
    let app = App::new();
    let (config, _ca) = local_ca_lab(&app, "");
    let server = Server::start(app, Some(&config));
    let operator = server.token("ops", "operator");
    let api = Api { server, c: http() };
    for i in 0..5 {
        json_of(
            api.post(&operator, "/v1/certificates", json!({"profile": "lab", "cn": format!("p{i}.example.com")})),
            StatusCode::CREATED,
        );
    }
    let ids = |v: &Value| -> Vec<i64> {
        v["items"].as_array().expect("items").iter().map(|e| e["id"].as_i64().expect("id")).collect()
    };
    for path in ["/v1/audit", "/v1/orders"] {
        let everything = ids(&json_of(api.get(&operator, &format!("{path}?limit=1000")), StatusCode::OK));
        assert!(everything.len() >= 5, "{path}: {everything:?}");
        let (mut paged, mut cursor) = (Vec::new(), None::<i64>);
        loop {
            let query = cursor.map_or(String::new(), |c| format!("&cursor={c}"));
            let page = json_of(api.get(&operator, &format!("{path}?limit=2{query}")), StatusCode::OK);
            let got = ids(&page);
            assert!(got.len() <= 2, "{path}: {page}");
            paged.extend(got);
            match page["next_cursor"].as_i64() {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(paged, everything, "{path}: the pages, newest first, are the whole list down to the oldest");
    }
    for path in ["/v1/audit", "/v1/orders", "/v1/certificates"] {
        for limit in [0, 1001] {
            let refused = json_of(api.get(&operator, &format!("{path}?limit={limit}")), StatusCode::BAD_REQUEST);
            assert_eq!(refused["detail"], format!("limit must be between 1 and 1000, not {limit}"), "{path}");
        }
    }
}

/// Small wrong answers: an unknown path said "no such endpoint not found"; `bearer` in lower
/// case was a 401 though schemes are case-insensitive; a raw `text/plain` secret starting
/// with `{` was parsed as JSON and refused; a connector without revoke said "does not
/// support revoke is not implemented by this connector"; and a HEAD of a key, which sends
/// no key, was audited as a key download.
#[test]
fn small_answers_say_what_happened() {
    let app = App::new();
    let (config, _ca) = local_ca_lab(&app, "");
    let server = Server::start(app, Some(&config));
    let admin = server.token("root", "admin");
    let api = Api { server, c: http() };
    let base = api.server.base.clone();

    let unknown = json_of(api.get(&admin, "/v1/nosuch"), StatusCode::NOT_FOUND);
    assert_eq!(unknown["detail"], "endpoint not found");
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let r = api.c.get(format!("{base}/v1/certificates")).header("authorization", format!("{scheme} {admin}"));
        assert_eq!(r.send().expect("get").status(), StatusCode::OK, "{scheme}");
    }

    json_of(
        api.post(
            &admin,
            "/v1/profiles",
            json!({"name": "sec", "accounts": ["lab"], "params": {"stat": {"sensitive": true}}}),
        ),
        StatusCode::CREATED,
    );
    let raw = api
        .c
        .put(format!("{base}/v1/profiles/sec/params/stat/secret"))
        .bearer_auth(&admin)
        .header("content-type", "text/plain")
        .body("{my-p4ss}")
        .send()
        .expect("put");
    assert_eq!(raw.status(), StatusCode::NO_CONTENT, "{}", raw.text().unwrap_or_default());
    let as_json = api.put(&admin, "/v1/profiles/sec/params/stat/secret", json!({"value": "{also}"}));
    assert_eq!(as_json.status(), StatusCode::NO_CONTENT);
    // An empty value is a body of the wrong form, 422 as every other one (it was 400).
    let empty = json_of(
        api.put(&admin, "/v1/profiles/sec/params/stat/secret", json!({"value": ""})),
        StatusCode::UNPROCESSABLE_ENTITY,
    );
    assert_eq!(empty["detail"], "the secret value is empty");
    // `curl -d` without a content type sends a form type: refused, not stored as the secret.
    let form = api
        .c
        .put(format!("{base}/v1/profiles/sec/params/stat/secret"))
        .bearer_auth(&admin)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("{\"value\": \"x\"}")
        .send()
        .expect("put");
    assert_eq!(form.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Nor any other type, or none (API review of stop 38: `curl -F`'s multipart envelope, and
    // a body without a type, were stored whole as the secret).
    for content_type in [None, Some("multipart/form-data; boundary=x"), Some("application/xml")] {
        let mut put = api.c.put(format!("{base}/v1/profiles/sec/params/stat/secret")).bearer_auth(&admin);
        if let Some(t) = content_type {
            put = put.header("content-type", t);
        }
        let refused = json_of(put.body("{\"value\": \"x\"}").send().expect("put"), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let detail = refused["detail"].as_str().expect("detail");
        assert!(detail.contains("application/json") && detail.ends_with("nothing was stored"), "{detail}");
    }

    let issued = json_of(
        api.post(&admin, "/v1/certificates", json!({"profile": "lab", "cn": "rv.example.com"})),
        StatusCode::CREATED,
    );
    let id = issued["certificate"]["id"].as_i64().expect("id");
    let refused = api.post(&admin, &format!("/v1/certificates/{id}/revoke"), json!({"reason": "keyCompromise"}));
    assert!(refused.status().is_client_error(), "{}", refused.status());
    let detail = refused.json::<Value>().expect("json")["detail"].as_str().expect("detail").to_owned();
    assert!(detail.contains(": revoke is not implemented by this connector; nothing was changed"), "{detail}");
    assert!(!detail.contains("does not support"), "{detail}");

    let downloads = || {
        let audit = json_of(
            api.get(&admin, &format!("/v1/audit?action=certificate.key_download&object_id={id}")),
            StatusCode::OK,
        );
        audit["items"].as_array().expect("items").len()
    };
    let head = api.c.head(format!("{base}/v1/certificates/{id}/key")).bearer_auth(&admin).send().expect("head");
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(downloads(), 0, "a HEAD sends no key and records no download");
    let head = api.c.head(format!("{base}/v1/certificates/999/key")).bearer_auth(&admin).send().expect("head");
    assert_eq!(head.status(), StatusCode::NOT_FOUND);
    let key = api.get(&admin, &format!("/v1/certificates/{id}/key")).text().expect("key");
    assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "{key}");
    assert_eq!(downloads(), 1);
}

/// Deployment and the renewal schedule over HTTP, as `certhost deploy` and `certhost
/// renewals` give them: a program managing servers need not shell into the host.
#[test]
fn deploy_again_and_read_the_renewal_schedule_over_http() {
    let app = App::new();
    let out = app.path("deployed");
    let (config, ca) = local_ca_lab(&app, &format!("[[deploy]]\ncert = \"{}/cert.pem\"\n", out.display()));
    let server = Server::start(app, Some(&config));
    let operator = server.token("ops", "operator");
    let requester = server.token("alice", "requester");
    let api = Api { server, c: http() };
    let issued = json_of(
        api.post(&requester, "/v1/certificates", json!({"profile": "lab", "cn": "d.example.com"})),
        StatusCode::CREATED,
    );
    let id = issued["certificate"]["id"].as_i64().expect("id");
    let file = out.join("cert.pem");
    std::fs::remove_file(&file).expect("deployed at issuance");

    json_of(api.post(&requester, &format!("/v1/certificates/{id}/deploy"), json!({})), StatusCode::FORBIDDEN);
    let done = json_of(api.post(&operator, &format!("/v1/certificates/{id}/deploy"), Value::Null), StatusCode::OK);
    assert_eq!(done["ok"], true, "{done}");
    assert!(done["targets"][0]["target"].as_str().expect("target").contains("cert.pem"), "{done}");
    assert!(openssl_verify(&ca.join("ca.pem"), &file).contains(": OK"), "the file is back");
    let bad = json_of(
        api.post(&operator, &format!("/v1/certificates/{id}/deploy"), json!({"forse": true})),
        StatusCode::UNPROCESSABLE_ENTITY,
    );
    assert!(bad["detail"].as_str().expect("detail").contains("forse"), "{bad}");
    // serde fills a struct from an array by position: `[true]` must not mean force.
    json_of(
        api.post(&operator, &format!("/v1/certificates/{id}/deploy"), json!([true])),
        StatusCode::UNPROCESSABLE_ENTITY,
    );

    // Renewed: the old one is refused unless forced, naming the one to deploy instead.
    let renewed = json_of(api.post(&operator, &format!("/v1/certificates/{id}/renew"), json!({})), StatusCode::CREATED);
    let next = renewed["certificate"]["id"].as_i64().expect("id");
    let refused =
        json_of(api.post(&operator, &format!("/v1/certificates/{id}/deploy"), json!({})), StatusCode::CONFLICT);
    let detail = refused["detail"].as_str().expect("detail");
    assert!(detail.contains("superseded") && detail.contains(&format!("certificate {next} replaced it")), "{detail}");
    let forced =
        json_of(api.post(&operator, &format!("/v1/certificates/{id}/deploy"), json!({"force": true})), StatusCode::OK);
    assert_eq!(forced["ok"], true, "{forced}");
    let replaced = json_of(
        api.post(&operator, &format!("/v1/certificates/{next}/deploy"), json!({"replace_others": true})),
        StatusCode::OK,
    );
    assert_eq!(replaced["ok"], true, "{replaced}");
    json_of(api.post(&operator, "/v1/certificates/999/deploy", json!({})), StatusCode::NOT_FOUND);
    // The schedule: the active certificate renews automatically; the superseded one does not.
    json_of(api.get(&requester, "/v1/renewals"), StatusCode::FORBIDDEN);
    let schedule = json_of(api.get(&operator, "/v1/renewals?limit=10"), StatusCode::OK);
    let upcoming = schedule["upcoming"].as_array().expect("upcoming");
    let ids: Vec<i64> = upcoming.iter().map(|r| r["id"].as_i64().expect("id")).collect();
    assert_eq!(ids, [next], "{schedule}");
    assert_eq!(upcoming[0]["common_name"], "d.example.com");
    assert_eq!(upcoming[0]["attempts"], 0);
    // RFC 3339 UTC: text order is time order.
    let when = |f: &str| upcoming[0][f].as_str().expect("an RFC 3339 time").to_owned();
    assert!(when("renew_after").ends_with('Z') && when("renew_after") < when("not_after"), "{schedule}");
    assert!(schedule["history"].as_array().expect("history").is_empty(), "no automatic renewal yet: {schedule}");
    json_of(api.get(&operator, "/v1/renewals?limit=0"), StatusCode::BAD_REQUEST);
    assert_eq!(schedule["next_cursor"], Value::Null, "one page: {schedule}");
    // More than a page is paged through with `next_cursor` (it stopped at 1,000 before stop 45).
    let other = json_of(
        api.post(&operator, "/v1/certificates", json!({"profile": "lab", "cn": "e.example.com"})),
        StatusCode::CREATED,
    );
    let other = other["certificate"]["id"].as_i64().expect("id");
    let first = json_of(api.get(&operator, "/v1/renewals?limit=1"), StatusCode::OK);
    let cursor = first["next_cursor"].as_str().expect("a next page").to_owned();
    let second = json_of(api.get(&operator, &format!("/v1/renewals?limit=1&cursor={cursor}")), StatusCode::OK);
    assert_eq!(second["next_cursor"], Value::Null, "{second}");
    let mut paged: Vec<i64> =
        [&first, &second].iter().map(|p| p["upcoming"][0]["id"].as_i64().expect("one each")).collect();
    paged.sort_unstable();
    assert_eq!(paged, [next, other], "{first} {second}");
    let bad = json_of(api.get(&operator, "/v1/renewals?cursor=tomorrow"), StatusCode::BAD_REQUEST);
    assert!(bad["detail"].as_str().expect("detail").contains("next_cursor of an earlier page"), "{bad}");
    // A certificate whose profile was deleted since exists: 409 (its state), not 404.
    let admin = api.server.token("root", "admin");
    let target = format!("{}/gone.pem", out.display());
    json_of(
        api.post(&admin, "/v1/profiles", json!({"name": "gone", "accounts": ["lab"], "deploy": [{"cert": target}]})),
        StatusCode::CREATED,
    );
    let orphan = json_of(
        api.post(&operator, "/v1/certificates", json!({"profile": "gone", "cn": "gone.example.com"})),
        StatusCode::CREATED,
    );
    let orphan = orphan["certificate"]["id"].as_i64().expect("id");
    // A profile with active certificates can no longer be deleted (review of stop 33); an
    // inventory from before that rule can still hold such a certificate.
    json_of(api.delete(&admin, "/v1/profiles/gone"), StatusCode::CONFLICT);
    {
        let db = rusqlite::Connection::open(api.server.app.data_dir().join("certhost.db")).expect("open");
        db.busy_timeout(std::time::Duration::from_secs(10)).expect("timeout");
        db.execute("UPDATE certificates SET profile = 'vanished' WHERE id = ?1", [orphan]).expect("older inventory");
    }
    assert_eq!(api.delete(&admin, "/v1/profiles/gone").status(), StatusCode::NO_CONTENT);
    let gone =
        json_of(api.post(&operator, &format!("/v1/certificates/{orphan}/deploy"), json!({})), StatusCode::CONFLICT);
    assert!(gone["detail"].as_str().expect("detail").contains("profile vanished no longer exists"), "{gone}");
}

/// Black-box review of stop 35: revocations of one certificate sent at once all reached the
/// CA, and the losers were told the CA failed (502). One revokes; the others are told it is
/// revoked or being revoked (409), and the CA is asked once.
#[test]
fn revocations_of_one_certificate_at_once_revoke_it_once() {
    let app = App::new();
    let (config, _) = crate::helpers::scripted_lab(&app, "ca", "good", "", &[("web", "accounts = [\"ca\"]\n")]);
    let server = Server::start(app, Some(&config));
    let token = server.token("ops", "operator");
    let issued: Value = http()
        .post(format!("{}/v1/certificates", server.base))
        .bearer_auth(&token)
        .json(&json!({"profile": "web", "cn": "twice.example.com"}))
        .send()
        .expect("issue")
        .json()
        .expect("json");
    let id = issued["certificate"]["id"].as_i64().expect("id");
    let url = format!("{}/v1/certificates/{id}/revoke", server.base);
    let statuses: Vec<(u16, String)> = std::thread::scope(|s| {
        let calls: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    let r = http().post(&url).bearer_auth(&token).json(&json!({"reason": "superseded"})).send();
                    let r = r.expect("revoke");
                    (r.status().as_u16(), r.text().unwrap_or_default())
                })
            })
            .collect();
        calls.into_iter().map(|c| c.join().expect("thread")).collect()
    });
    assert_eq!(statuses.iter().filter(|(s, _)| *s == 200).count(), 1, "{statuses:?}");
    for (status, body) in statuses.iter().filter(|(s, _)| *s != 200) {
        assert_eq!(*status, 409, "{body}");
        assert!(body.contains("already revoked") || body.contains("already in progress"), "{body}");
        // A revoke that lost to the other is told it is done, in a code a program can read.
        if body.contains("already revoked") {
            assert!(body.contains("\"code\":\"already_revoked\""), "{body}");
        }
    }
    let again =
        http().post(&url).bearer_auth(&token).json(&json!({"reason": "superseded"})).send().expect("revoke again");
    assert_eq!(again.status().as_u16(), 409);
    let again: serde_json::Value = again.json().expect("problem");
    assert_eq!(again["code"], "already_revoked", "{again}");
    let audit = server.app.json(&["audit", "--json", "--action", "certificate.revoke", "--object-id", &id.to_string()]);
    assert_eq!(audit.as_array().expect("audit").len(), 1, "one revocation recorded: {audit}");
}

/// Two reviews of stop 36: a certificate that failed the host's verification (here one for
/// another key) was a 422, which tells a client its own request was wrong and not to send it
/// again; the CA's answer was at fault, so it is a 502, as a failed call is.
#[test]
fn a_returned_certificate_that_fails_verification_is_the_ca_s_fault_502() {
    let app = App::new();
    let (config, _) = crate::helpers::scripted_lab(&app, "ca", "wrong_key", "", &[("web", "accounts = [\"ca\"]\n")]);
    let server = Server::start(app, Some(&config));
    let token = server.token("ops", "operator");
    let resp = http()
        .post(format!("{}/v1/certificates", server.base))
        .bearer_auth(&token)
        .json(&json!({"profile": "web", "cn": "mismatch.example.com"}))
        .send()
        .expect("issue");
    assert_eq!(resp.status(), reqwest::StatusCode::BAD_GATEWAY);
    // The order is named as a 409's is (API review of stop 38: only in the sentence before).
    assert_eq!(location(&resp).as_deref(), Some("/v1/orders/1"));
    let body: Value = resp.json().expect("problem");
    assert_eq!(
        body["detail"], "order 1 failed: the returned certificate is for a different public key than the CSR's",
        "{body}"
    );
    assert_eq!(body["order_id"], 1, "{body}");
    // `serve` says so in its log at the default level, as it does a held order (author review
    // of stop 38: nothing, even at -vv).
    let log = server.log();
    assert!(
        log.contains(
            "order failed: the returned certificate was refused: the returned certificate is for a different public key"
        ),
        "{log}"
    );
    let order = server.app.json(&["orders", "show", "1", "--json"]);
    assert_eq!(order["state"], "failed", "{order}");
}

/// Stop 37 left alone, fixed in stop 38: `/v1/renew`'s `deployed_to` showed a `{cn}` target as
/// its template (`files:/tls/{cn}/fullchain.pem`), which names no file. It says where the
/// renewed certificate's files went, as `issue` does.
#[test]
fn keyfactor_renew_says_where_a_cn_target_put_the_files() {
    let app = App::new();
    let tls = app.path("tls");
    let profile = format!(
        "[[deploy]]\nfullchain = \"{t}/{{cn}}/fullchain.pem\"\nkey = \"{t}/{{cn}}/key.pem\"\n",
        t = tls.display()
    );
    let (config, _) = local_ca_lab(&app, &profile);
    let issued =
        app.run(&["--config", config.to_str().expect("utf8"), "issue", "--profile", "lab", "--cn", "kf.example.com"]);
    let expected = format!("files:{}/kf.example.com/fullchain.pem", tls.display());
    assert!(issued.ok().contains(&format!("deployed to {expected}")), "{}", issued.stdout);
    let server = Server::start(app, Some(&config));
    let operator = server.token("ops", "operator");
    let api = Api { server, c: http() };
    let kf = json_of(api.post(&operator, "/v1/renew", json!({"lookup": {"type": "id", "value": "1"}})), StatusCode::OK);
    assert_eq!(kf["disposition"], "issued", "{kf}");
    assert_eq!(kf["deployed_to"], json!([expected]), "{kf}");
    let renewed = std::fs::read_to_string(tls.join("kf.example.com/fullchain.pem")).expect("deployed");
    let thumb = kf["thumbprint"].as_str().expect("thumbprint");
    let shown = json_of(api.get(&operator, &format!("/v1/certificates/{thumb}")), StatusCode::OK);
    assert!(renewed.starts_with(shown["pem"].as_str().expect("pem")), "the renewal's files are in place");
}

/// Left alone since stop 40, done in stop 45: failover tried a dead first account on every
/// request, so each issuance and renewal of the profile paid its connect timeout first. An
/// account found unreachable is tried after the profile's others for a while (10 s the first
/// time; its end is a unit test on paused time), and first again at once when it is edited.
#[test]
fn an_unreachable_first_account_is_tried_last_for_a_while() {
    let app = App::new();
    let (config, _) =
        crate::helpers::scripted_lab(&app, "down", "unreachable", "", &[("ha", "accounts = [\"down\", \"backup\"]\n")]);
    let text = std::fs::read_to_string(&config).expect("config");
    let backup = text.replace("[accounts.down]", "[accounts.backup]").replace("\"unreachable\"", "\"good\"");
    std::fs::write(&config, format!("{text}\n{backup}")).expect("config");
    let server = Server::start(app, Some(&config));
    let token = server.token("ops", "operator");
    let issue = |cn: &str| -> Value {
        let r = http()
            .post(format!("{}/v1/certificates", server.base))
            .bearer_auth(&token)
            .json(&json!({"profile": "ha", "cn": cn}))
            .send()
            .expect("issue");
        assert_eq!(r.status(), StatusCode::CREATED, "log: {}", server.log());
        r.json().expect("json")
    };
    let order = |issued: &Value| {
        let id = issued["order_id"].as_i64().expect("order_id").to_string();
        server.app.json(&["orders", "show", &id, "--json"])
    };
    // The second request follows the first at once: well within the 10 s.
    let (first, second) = (issue("one.example.com"), issue("two.example.com"));
    assert_eq!(first["certificate"]["account"], "backup", "{first}");
    assert_eq!(order(&first)["attempts"], 2, "down, then backup");
    assert!(
        server.log().contains("trying the next one (it is tried after its profiles' other accounts for the next 10 s)"),
        "{}",
        server.log()
    );
    // Straight to the backup, the dead account not even called.
    assert_eq!(second["certificate"]["account"], "backup", "{second}");
    assert_eq!(order(&second)["attempts"], 1, "backup only");
    // The API says which account is sidelined and for how long; the other is in its place.
    let get = |path: &str| -> Value {
        let r = http().get(format!("{}{path}", server.base)).bearer_auth(&token).send().expect("get");
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        r.json().expect("json")
    };
    let down = get("/v1/accounts/down");
    let left = down["tried_last_seconds"].as_u64().unwrap_or_else(|| panic!("{down}"));
    assert!((1..=10).contains(&left), "{down}");
    assert!(get("/v1/accounts/backup").get("tried_last_seconds").is_none());
    let ready = get("/readyz");
    let of = |name: &str| ready["accounts"].as_array().expect("accounts").iter().find(|a| a["name"] == name).cloned();
    assert!(of("down").expect("down")["tried_last_seconds"].as_u64().is_some(), "{ready}");
    assert!(of("backup").expect("backup").get("tried_last_seconds").is_none(), "{ready}");
    // The account is fixed (here: its CA answers again) and reloaded: first again at once.
    std::fs::write(&config, format!("{}\n{backup}", text.replace("\"unreachable\"", "\"good\""))).expect("config");
    let pid = server.child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-HUP", &pid]).status().expect("kill").success());
    let reloaded = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        server.log().contains("configuration reloaded from")
    });
    assert!(reloaded, "log: {}", server.log());
    assert!(get("/v1/accounts/down").get("tried_last_seconds").is_none(), "in its place after the edit");
    let third = issue("three.example.com");
    assert_eq!(third["certificate"]["account"], "down", "{third}");
    assert_eq!(order(&third)["attempts"], 1);
}

/// Red team of stop 50: a requester renewed its certificate of a profile without key
/// downloads into one with them, keeping the key, and downloaded the key the first profile
/// kept from it (still in service on the servers that profile deploys to). Every profile the
/// key was certified under must allow it; and a key revoked for keyCompromise is handed out
/// to no one but an admin.
#[test]
fn a_key_is_downloaded_only_where_every_profile_it_served_allows_it() {
    let app = App::new();
    let (config, _) = local_ca_lab(&app, "");
    let server = Server::start(app, Some(&config));
    let (admin, requester) = (server.token("root", "admin"), server.token("alice", "requester"));
    let api = Api { server, c: http() };
    json_of(
        api.post(
            &admin,
            "/v1/profiles",
            json!({"name": "keep", "accounts": ["lab"], "key_download": true, "renewal": {"regenerate_key": false}}),
        ),
        StatusCode::CREATED,
    );
    let first = json_of(
        api.post(&requester, "/v1/certificates", json!({"profile": "lab", "cn": "pinned.example.com"})),
        StatusCode::CREATED,
    );
    let first = first["certificate"]["id"].as_i64().expect("id");
    json_of(api.get(&requester, &format!("/v1/certificates/{first}/key")), StatusCode::FORBIDDEN);
    let moved = json_of(
        api.post(&requester, &format!("/v1/certificates/{first}/renew"), json!({"profile": "keep"})),
        StatusCode::CREATED,
    );
    let moved = moved["certificate"]["id"].as_i64().expect("id");
    let refused = json_of(api.get(&requester, &format!("/v1/certificates/{moved}/key")), StatusCode::FORBIDDEN);
    assert!(refused["detail"].as_str().expect("detail").contains("also certified under profile lab"), "{refused}");
    let refused = api.post(&requester, &format!("/v1/certificates/{moved}/pkcs12"), json!({"password": "long enough"}));
    json_of(refused, StatusCode::FORBIDDEN);
    let admins = api.get(&admin, &format!("/v1/certificates/{moved}/key"));
    assert_eq!(admins.status(), StatusCode::OK);
    let first_key = api.get(&admin, &format!("/v1/certificates/{first}/key")).text().expect("key");
    assert_eq!(admins.text().expect("key"), first_key, "the renewal kept the key");
    // Nor once the first certificate is deleted (diff review of stop 50): its order remembers.
    assert_eq!(api.delete(&admin, &format!("/v1/certificates/{first}")).status(), StatusCode::NO_CONTENT);
    let refused = json_of(api.get(&requester, &format!("/v1/certificates/{moved}/key")), StatusCode::FORBIDDEN);
    assert!(refused["detail"].as_str().expect("detail").contains("also certified under profile lab"), "{refused}");

    // A key of its own under `keep` downloads, until it is revoked for keyCompromise.
    let own = json_of(
        api.post(&requester, "/v1/certificates", json!({"profile": "keep", "cn": "own.example.com"})),
        StatusCode::CREATED,
    );
    let own = own["certificate"]["id"].as_i64().expect("id");
    assert_eq!(api.get(&requester, &format!("/v1/certificates/{own}/key")).status(), StatusCode::OK);
    json_of(
        api.post(
            &admin,
            &format!("/v1/certificates/{own}/revoke"),
            json!({"reason": "keyCompromise", "local_only": true}),
        ),
        StatusCode::OK,
    );
    let refused = json_of(api.get(&requester, &format!("/v1/certificates/{own}/key")), StatusCode::CONFLICT);
    assert_eq!(refused["code"], "compromised_key", "{refused}");
    assert_eq!(api.get(&admin, &format!("/v1/certificates/{own}/key")).status(), StatusCode::OK);

    // A certificate on an uploaded CSR has no key here, which its 404 tells apart from a
    // certificate that does not exist.
    let (key, csr) = (api.server.app.path("up.key"), api.server.app.path("up.csr"));
    crate::helpers::openssl_csr(&key, &csr, "/CN=upload.example.com", &["subjectAltName=DNS:upload.example.com"]);
    let csr = std::fs::read_to_string(&csr).expect("csr");
    let uploaded =
        json_of(api.post(&requester, "/v1/certificates", json!({"profile": "keep", "csr": csr})), StatusCode::CREATED);
    let uploaded = uploaded["certificate"]["id"].as_i64().expect("id");
    let none = json_of(api.get(&requester, &format!("/v1/certificates/{uploaded}/key")), StatusCode::NOT_FOUND);
    assert_eq!(none["code"], "key_not_stored", "{none}");
    let unknown = json_of(api.get(&requester, "/v1/certificates/987654/key"), StatusCode::NOT_FOUND);
    assert_eq!(unknown["code"], "not_found", "{unknown}");
}
