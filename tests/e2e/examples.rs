//! The shipped example configuration works with the shipped plugins, as the README says.

use crate::helpers::{App, sh};

#[test]
fn the_shipped_demo_profile_issues_with_the_shipped_openssl_plugin() {
    let app = App::new();
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    // A copy of the repository's example files, as a user's checkout has them.
    let work = app.path("checkout");
    std::fs::create_dir_all(work.join("profiles")).expect("mkdir");
    std::fs::copy(repo.join("certhost.toml"), work.join("certhost.toml")).expect("config");
    std::fs::copy(repo.join("profiles/demo.toml"), work.join("profiles/demo.toml")).expect("profile");
    std::fs::create_dir_all(work.join("plugins")).expect("mkdir");
    std::fs::copy(repo.join("plugins/openssl-ca.py"), work.join("plugins/openssl-ca.py")).expect("plugin");
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
}
