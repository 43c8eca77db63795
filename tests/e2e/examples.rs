//! The shipped example configuration works with the shipped plugins, as the README says.

use crate::helpers::{App, sh};

#[test]
fn the_shipped_demo_profile_issues_with_the_shipped_plugins_and_fails_over_to_openssl() {
    let app = App::new();
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    // A copy of the repository's example files, as a user's checkout has them.
    let work = app.path("checkout");
    std::fs::create_dir_all(work.join("profiles")).expect("mkdir");
    std::fs::copy(repo.join("certhost.toml"), work.join("certhost.toml")).expect("config");
    std::fs::copy(repo.join("profiles/demo.toml"), work.join("profiles/demo.toml")).expect("profile");
    std::fs::create_dir_all(work.join("plugins")).expect("mkdir");
    std::fs::copy(repo.join("plugins/openssl-ca.py"), work.join("plugins/openssl-ca.py")).expect("plugin");
    std::fs::create_dir_all(work.join("plugins/dist")).expect("mkdir");
    std::fs::copy(crate::wasm::component("local-ca"), work.join("plugins/dist/local-ca.wasm")).expect("component");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(crate::helpers::certhost_bin())
            .args(args)
            .current_dir(&work)
            .env("CERTHOST_DATA_DIR", app.data_dir())
            .env("CERTHOST_MASTER_KEY", &app.master_key)
            .output()
            .expect("run");
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run(&["ca", "init", "--out", "demo-ca"]);
    let out = run(&[
        "issue",
        "--profile",
        "demo",
        "--cn",
        "www.example.com",
        "--param",
        "requester=alice",
        "--out",
        "issued",
    ]);
    assert!(out.contains("issued certificate #1"), "{out}");
    let verify = sh(
        "openssl",
        &[
            "verify",
            "-CAfile",
            work.join("demo-ca/ca.pem").to_str().expect("utf8"),
            work.join("issued/cert.pem").to_str().expect("utf8"),
        ],
    );
    assert!(verify.contains(": OK"));
    let shown: serde_json::Value = serde_json::from_str(&run(&["show", "1", "--json"])).expect("json");
    assert_eq!(shown["account"], "demo-local", "the component issues first");
    // With the component's account inactive, the profile's second account issues.
    run(&["account", "deactivate", "demo-local"]);
    run(&["issue", "--profile", "demo", "--cn", "api.example.com"]);
    let shown: serde_json::Value = serde_json::from_str(&run(&["show", "2", "--json"])).expect("json");
    assert_eq!(shown["account"], "demo-openssl");
    run(&["account", "activate", "demo-local"]);

    // The README's one-curl issuance against `serve` started in the checkout.
    let mut child = std::process::Command::new(crate::helpers::certhost_bin())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .current_dir(&work)
        .env("CERTHOST_DATA_DIR", app.data_dir())
        .env("CERTHOST_MASTER_KEY", &app.master_key)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("serve");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().expect("stdout")), &mut line)
        .expect("address");
    let base = line.trim().rsplit(' ').next().unwrap_or_default().to_owned();
    let token = run(&["token", "create", "--name", "me", "--role", "admin"]).trim().to_owned();
    let resp = crate::helpers::http()
        .post(format!("{base}/v1/certificates"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(r#"{"profile": "demo", "cn": "www.example.com"}"#)
        .send()
        .expect("curl");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(resp.status(), reqwest::StatusCode::CREATED);
    let body: serde_json::Value = resp.json().expect("json");
    assert_eq!(body["certificate"]["account"], "demo-local");
}
