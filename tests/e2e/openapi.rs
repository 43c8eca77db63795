//! The OpenAPI document: generated from the code, complete, and true — schemathesis (PyPI)
//! fuzzes every operation of the running server with a valid token and finds no 5xx and no
//! response outside its documented schema.

use crate::helpers::{App, Server, certhost_bin, http, local_ca_lab};

/// Where `cargo xtask test` installs schemathesis (TARGET/tools/schemathesis).
fn schemathesis() -> std::path::PathBuf {
    let target = std::path::Path::new(certhost_bin()).ancestors().nth(2).expect("target dir").to_path_buf();
    let st = target.join("tools/schemathesis/bin/st");
    assert!(st.is_file(), "{} missing: run the tests with `cargo xtask test`, which installs it", st.display());
    st
}

#[test]
fn the_openapi_document_lists_every_endpoint() {
    let server = Server::start(App::new(), None);
    let doc: serde_json::Value =
        http().get(format!("{}/v1/openapi.json", server.base)).send().expect("get").json().expect("json");
    assert_eq!(doc["openapi"], "3.1.0");
    for (method, path, _) in crate::api_auth::ENDPOINTS {
        let templated = path
            .replace("999999", "{id}")
            .replace("accounts/nosuch", "accounts/{name}")
            .replace("profiles/nosuch", "profiles/{name}")
            .replace("tokens/nosuch", "tokens/{name}")
            .replace("/params/p/", "/params/{param}/");
        let op = &doc["paths"][&templated][method.to_lowercase()];
        assert!(op.is_object(), "{method} {templated} is not in the OpenAPI document");
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    // OpenAPI requires operation ids to be unique; client generators name methods after them
    // (seven handlers called `list` all came out as `list`).
    let mut ids: Vec<&str> = doc["paths"]
        .as_object()
        .expect("paths")
        .values()
        .flat_map(|ops| ops.as_object().expect("operations").values())
        .filter_map(|op| op["operationId"].as_str())
        .collect();
    let all = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), all, "an operationId is used twice: {ids:?}");

    // Every word a field takes from a fixed set is an enum a generated client can check
    // (API walkthrough of stop 48: statuses, dispositions and reasons were bare strings).
    let schemas = &doc["components"]["schemas"];
    let words = |schema: &str| -> Vec<String> {
        schemas[schema]["enum"]
            .as_array()
            .unwrap_or_else(|| panic!("{schema}: {}", schemas[schema]))
            .iter()
            .filter_map(|w| w.as_str().map(str::to_owned))
            .collect()
    };
    assert_eq!(words("CertStatus"), ["active", "superseded", "revoked", "expired"]);
    assert_eq!(words("IssueDisposition"), ["issued", "pending", "awaiting_approval"]);
    assert_eq!(words("RenewDisposition"), ["issued", "pending", "failed"]);
    assert_eq!(words("AccountStatus"), ["active", "inactive"]);
    assert_eq!(words("Role"), ["admin", "operator", "requester", "auditor"]);
    assert!(words("RevocationReason").iter().any(|w| w == "cACompromise"));
    assert!(words("OrderState").iter().any(|w| w == "needs_attention"));
    let refers = |schema: &str, field: &str, to: &str| {
        let text = schemas[schema]["properties"][field].to_string();
        assert!(text.contains(&format!("#/components/schemas/{to}")), "{schema}.{field}: {text}");
    };
    refers("CertView", "status", "CertStatus");
    refers("IssueResponse", "disposition", "IssueDisposition");
    refers("OrderStep", "disposition", "IssueDisposition");
    refers("AccountView", "status", "AccountStatus");
    refers("RevokeBody", "reason", "RevocationReason");
    refers("NewToken", "role", "Role");
    refers("CreatedToken", "role", "Role");
    let status_param = doc["paths"]["/v1/certificates"]["get"]["parameters"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "status"))
        .map(|p| p.to_string())
        .unwrap_or_default();
    assert!(status_param.contains("CertStatus"), "{status_param}");
}

#[test]
fn schemathesis_finds_no_server_error_and_no_undocumented_response() {
    let st = schemathesis();
    let app = App::new();
    let (config, _) = local_ca_lab(&app, "");
    let server = Server::start(app, Some(&config));
    let token = server.token("schemathesis-admin-7f3c", "admin");
    // Some data to find: a certificate (id 1) and its order (id 1).
    let issued = http()
        .post(format!("{}/v1/certificates", server.base))
        .bearer_auth(&token)
        .json(&serde_json::json!({"profile": "lab", "cn": "seed.example.com"}))
        .send()
        .expect("issue");
    assert_eq!(issued.status(), reqwest::StatusCode::CREATED);
    let conf = server.app.path("schemathesis.toml");
    std::fs::write(&conf, "[parameters]\n\"path.id\" = \"1\"\n").expect("config");
    let out = std::process::Command::new(&st)
        .arg("--config-file")
        .arg(&conf)
        .args(["--no-color", "run", &format!("{}/v1/openapi.json", server.base)])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--checks", "not_a_server_error,response_schema_conformance,content_type_conformance"])
        .args(["--max-examples", "15", "--request-timeout", "30", "--seed", "20261124"])
        .current_dir(server.app.dir.path())
        .output()
        .expect("run schemathesis");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "schemathesis failed:\n{text}\nserver log:\n{}", server.log());
    assert!(text.contains("passed"), "{text}");
    // The token stayed valid throughout: the run really exercised the endpoints.
    assert!(!text.contains("Authentication failed"), "{text}");
    assert!(!server.log().contains("panicked"), "{}", server.log());
}
