//! CA accounts, profiles, parameters and secrets through the real binary, before any CA call.

use std::fs;
use std::io::Write;
use std::process::{Command, Stdio};

use crate::helpers::{App, certhost_bin};

const SECRET: &str = "sEcReT-7f3a9c1e-unique-value";

/// Writes a certhost.toml with one account and a profiles/ directory.
fn configure(app: &App, account_extra: &str, profile: &str) -> std::path::PathBuf {
    let dir = app.path("conf");
    fs::create_dir_all(dir.join("profiles")).expect("mkdir");
    fs::write(
        dir.join("certhost.toml"),
        format!(
            r#"
[accounts.acct-a]
connector = "plugins/some.wasm"
description = "first"
params.base_url = "https://ca.invalid"
params.api_token = {{ sensitive = true }}
{account_extra}
"#
        ),
    )
    .expect("config");
    fs::write(dir.join("profiles/web.toml"), profile).expect("profile");
    dir.join("certhost.toml")
}

const WEB_PROFILE: &str = r#"
description = "web servers"
accounts = ["acct-a"]
approval_required = true
[params]
requester = { dynamic = true, required = true, regex = "[a-z]+" }
ticket_pin = { dynamic = true, sensitive = true }
team = "platform"
[sans]
dns_suffixes = [".example.com"]
"#;

fn with_config(app: &App, config: &std::path::Path, args: &[&str]) -> crate::helpers::Run {
    let mut a = vec!["--config", config.to_str().expect("utf8")];
    a.extend_from_slice(args);
    app.run(&a)
}

fn secret_set(app: &App, config: &std::path::Path, owner: &str, name: &str, value: &str) -> (i32, String, String) {
    let mut child = Command::new(certhost_bin())
        .args(["--config", config.to_str().expect("utf8"), "secret", "set", owner, name])
        .env("CERTHOST_DATA_DIR", app.data_dir())
        .env("CERTHOST_MASTER_KEY", &app.master_key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child.stdin.take().expect("stdin").write_all(format!("{value}\n").as_bytes()).expect("write");
    let out = child.wait_with_output().expect("wait");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn accounts_and_profiles_load_from_files_and_secrets_are_write_only() {
    let app = App::new();
    let config = configure(&app, "", WEB_PROFILE);
    let accounts = app.json(&["--config", config.to_str().expect("utf8"), "account", "list", "--json"]);
    assert_eq!(accounts[0]["name"], "acct-a");
    assert_eq!(accounts[0]["status"], "active");
    assert_eq!(
        accounts[0]["params"]["api_token"],
        serde_json::json!({ "set": false, "sensitive": true, "dynamic": false, "required": false })
    );
    assert_eq!(accounts[0]["params"]["base_url"]["value"], "https://ca.invalid");

    let (code, stdout, stderr) = secret_set(&app, &config, "acct-a", "api_token", SECRET);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("api_token set") && !stdout.contains(SECRET));
    let shown = app.json(&["--config", config.to_str().expect("utf8"), "account", "show", "acct-a", "--json"]);
    assert_eq!(shown["params"]["api_token"]["set"], true);
    assert!(!shown.to_string().contains(SECRET));

    // Only sensitive, defined parameters can be set this way.
    let (code, _, stderr) = secret_set(&app, &config, "acct-a", "base_url", "x");
    assert_eq!(code, 1);
    assert!(stderr.contains("is not sensitive"), "{stderr}");
    let (code, _, stderr) = secret_set(&app, &config, "acct-a", "nope", "x");
    assert_eq!(code, 1);
    assert!(stderr.contains("defines no parameter nope"), "{stderr}");

    let profile = app.json(&["--config", config.to_str().expect("utf8"), "profile", "show", "web", "--json"]);
    assert_eq!(profile["params"]["ticket_pin"]["sensitive"], true);
    assert_eq!(profile["params"]["team"]["value"], "platform");
    assert_eq!(profile["approval_required"], true);

    // The secret is nowhere in plaintext: not in the database files, not in the audit.
    let audit = with_config(&app, &config, &["audit", "--json"]);
    assert!(audit.ok().contains("secret.set") && !audit.stdout.contains(SECRET));
    for entry in fs::read_dir(app.data_dir()).expect("dir") {
        let bytes = fs::read(entry.expect("entry").path()).expect("read");
        assert!(!bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()), "secret found in a data file");
    }
}

#[test]
fn bad_definitions_are_refused_naming_the_file_and_rule() {
    let app = App::new();
    let c = configure(&app, "params.password = { sensitive = true, value = \"hunter2-literal\" }", WEB_PROFILE);
    let r = with_config(&app, &c, &["account", "list"]);
    let err = r.fails(1);
    assert!(
        err.contains("certhost.toml")
            && err.contains("sensitive parameter password of account acct-a must not have a literal value"),
        "{err}"
    );
    assert!(!err.contains("hunter2-literal"));

    let app = App::new();
    let c = configure(&app, "", "accounts = [\"missing\"]\n");
    assert!(
        with_config(&app, &c, &["profile", "list"])
            .fails(1)
            .contains("it names CA account missing, which does not exist")
    );

    let app = App::new();
    let c = configure(&app, "", "accounts = [\"acct-a\"]\nparams.base_url = \"https://other\"\n");
    assert!(
        with_config(&app, &c, &["profile", "list"])
            .fails(1)
            .contains("parameter base_url is defined by both account acct-a and profile web")
    );

    let app = App::new();
    let c = configure(&app, "", "accounts = [\"acct-a\"]\nunknown_key = 1\n");
    let err = with_config(&app, &c, &["profile", "list"]).fails(1).to_owned();
    assert!(err.contains("web.toml") && err.contains("unknown field"), "{err}");
}

#[test]
fn dynamic_parameters_are_checked_before_anything_is_ordered() {
    let app = App::new();
    let config = configure(&app, "", WEB_PROFILE);
    let issue = |extra: &[&str]| {
        let mut a = vec!["issue", "--profile", "web", "--cn", "www.example.com"];
        a.extend_from_slice(extra);
        with_config(&app, &config, &a)
    };
    assert!(issue(&[]).fails(1).contains("required parameter requester of profile web has no value"));
    // Empty or blank is no value (author review of stop 38: it issued).
    for empty in ["requester=", "requester=  "] {
        assert!(
            issue(&["--param", empty]).fails(1).contains(
                "required parameter requester of profile web has no value (it was given empty or blank, which is not a value)"
            ),
            "{empty}"
        );
    }
    assert!(
        issue(&["--param", "requester=alice", "--param", "team=other"])
            .fails(1)
            .contains("parameter team is fixed by profile web")
    );
    assert!(
        issue(&["--param", "requester=alice", "--param", "color=blue"]).fails(1).contains("unknown parameter color")
    );
    assert!(issue(&["--param", "requester=Alice1"]).fails(1).contains("must match [a-z]+"));
    let r = issue(&["--param", "requester=alice", "--param", "ticket_pin=not-allowed-to-leak"]);
    // Walkthrough of stop 46: a sensitive value on the command line is said to be exposed.
    assert!(
        r.stderr.contains("warning: parameter ticket_pin is sensitive and was given with --param")
            && !r.stderr.contains("not-allowed-to-leak"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("parameter requester is sensitive"), "{}", r.stderr);
    // Policy: names outside the profile's suffixes are refused before an order exists.
    let bad = with_config(
        &app,
        &config,
        &["issue", "--profile", "web", "--cn", "www.evil.org", "--param", "requester=alice"],
    );
    assert!(bad.fails(1).contains("outside the allowed suffixes .example.com"));
    // A valid request on a profile that needs approval is held, without calling any CA.
    assert!(r.ok().contains("awaits approval"), "{}", r.stdout);
    let orders = app.json(&["--config", config.to_str().expect("utf8"), "orders", "list", "--json"]);
    assert_eq!(orders.as_array().map(Vec::len), Some(1), "refused requests leave no order");
    assert_eq!(orders[0]["state"], "awaiting_approval");
    assert_eq!(orders[0]["params"], serde_json::json!({ "requester": "alice", "ticket_pin": "***" }));
    assert!(!app.run(&["audit", "--json"]).ok().contains("not-allowed-to-leak"));
}

#[test]
fn approval_needs_someone_else_and_decline_closes_the_order() {
    let app = App::new();
    let config = configure(&app, "", WEB_PROFILE);
    with_config(&app, &config, &["issue", "--profile", "web", "--cn", "a.example.com", "--param", "requester=bob"])
        .ok();
    let as_user = |user: &str, args: &[&str]| {
        let out = Command::new(certhost_bin())
            .args(["--config", config.to_str().expect("utf8")])
            .args(args)
            .env("CERTHOST_DATA_DIR", app.data_dir())
            .env("CERTHOST_MASTER_KEY", &app.master_key)
            .env("USER", user)
            .output()
            .expect("run");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let order = app.json(&["orders", "show", "1", "--json"]);
    let requester = order["requested_by"].as_str().and_then(|a| a.strip_prefix("cli:")).expect("a CLI requester");
    let (code, _, err) = as_user(requester, &["orders", "approve", "1"]);
    assert_eq!(code, 1);
    assert!(err.contains("must be approved by someone other than its requester"), "{err}");
    // Mistyped arguments are refused before anything is decided: the order stays held.
    for (args, says) in [
        (&["orders", "approve", "1", "--param", "requester"][..], "NAME=VALUE"),
        (&["orders", "approve", "1", "--param", "nosuch=1"], "unknown parameter nosuch"),
    ] {
        let (code, _, err) = as_user("carol-approver", args);
        assert_eq!(code, 1, "{err}");
        assert!(err.contains(says), "{err}");
        let order = app.json(&["--config", config.to_str().expect("utf8"), "orders", "show", "1", "--json"]);
        assert_eq!(order["state"], "awaiting_approval", "{order}");
    }
    let (code, out, err) = as_user("carol-approver", &["orders", "decline", "1", "--reason", "not needed"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("declined"));
    let order = app.json(&["--config", config.to_str().expect("utf8"), "orders", "show", "1", "--json"]);
    assert_eq!(order["state"], "rejected");
    assert_eq!(order["decided_by"], "cli:carol-approver");
    let (code, _, err) = as_user("carol-approver", &["orders", "decline", "1"]);
    assert_eq!(code, 1);
    assert!(err.contains("only held, interrupted or pending-at-the-CA orders can be declined"), "{err}");
}

#[test]
fn an_account_in_use_cannot_be_deleted_and_deactivation_is_recorded() {
    let app = App::new();
    let config = configure(&app, "", WEB_PROFILE);
    // An account created with the CLI, used by a profile created with the CLI.
    let script = crate::python::fixture("scripted_ca.py");
    with_config(
        &app,
        &config,
        &["account", "create", "acct-cli", "--connector", script.to_str().expect("utf8"), "--param", "mode=good"],
    )
    .ok();
    let pfile = app.path("p2.toml");
    fs::write(&pfile, "accounts = [\"acct-cli\"]\n").expect("profile");
    with_config(&app, &config, &["profile", "create", "p2", "--file", pfile.to_str().expect("utf8")]).ok();
    let r = with_config(&app, &config, &["account", "delete", "acct-cli"]);
    assert!(r.fails(1).contains("used by profile(s) p2"), "{}", r.stderr);
    with_config(&app, &config, &["account", "deactivate", "acct-a"]).ok();
    // Reloading the file does not re-activate what an operator deactivated.
    let listed = app.json(&["--config", config.to_str().expect("utf8"), "account", "list", "--json"]);
    assert_eq!(listed[0]["status"], "inactive");
    let audit = app.json(&["audit", "--json", "--action", "account."]);
    assert!(audit.as_array().expect("array").iter().any(|e| e["action"] == "account.deactivate"));
}

/// Regression (review of stop 31): `account edit` could only add allowed hosts and extra CAs,
/// so an egress list could not be narrowed, and had no `--http-body-mib`.
#[test]
fn account_edit_replaces_an_allowed_host_and_sets_the_body_cap() {
    let app = App::new();
    let config = configure(&app, "", WEB_PROFILE);
    let script = crate::python::fixture("scripted_ca.py");
    let run = |args: &[&str]| with_config(&app, &config, args);
    run(&[
        "account",
        "create",
        "egress",
        "--connector",
        script.to_str().expect("utf8"),
        "--allowed-host",
        "https://old.example",
    ])
    .ok();
    run(&[
        "account",
        "edit",
        "egress",
        "--remove-allowed-host",
        "https://old.example",
        "--allowed-host",
        "https://new.example",
        "--allowed-host",
        "https://new.example",
        "--http-body-mib",
        "2",
    ])
    .ok();
    let shown = app.json(&["--config", config.to_str().expect("utf8"), "account", "show", "egress", "--json"]);
    assert_eq!(shown["allowed_hosts"], serde_json::json!(["https://new.example"]), "{shown}");
    let r = run(&["account", "edit", "egress", "--remove-allowed-host", "https://gone.example"]);
    assert!(r.fails(1).contains("account egress has no allowed host https://gone.example"), "{}", r.stderr);
}

#[test]
fn file_defined_accounts_change_in_their_file_and_removed_files_remove_their_profiles() {
    let app = App::new();
    let config = configure(&app, "", "accounts = [\"acct-a\"]\n");
    let dir = config.parent().expect("dir").to_path_buf();
    fs::write(dir.join("profiles/extra.toml"), "accounts = [\"acct-a\"]\n").expect("profile");
    let list = with_config(&app, &config, &["profile", "list", "--json"]);
    assert!(list.ok().contains("extra"), "{}", list.stdout);
    // A CLI edit of a file-defined account would be undone by the next command: refused.
    let r = with_config(&app, &config, &["account", "edit", "acct-a", "--description", "changed"]);
    assert!(r.fails(1).contains("defined in the configuration file"), "{}", r.stderr);
    let r = with_config(&app, &config, &["account", "delete", "acct-a"]);
    assert!(r.fails(1).contains("defined in the configuration file"), "{}", r.stderr);
    // The profile file goes: so does the profile (its audit history stays).
    fs::remove_file(dir.join("profiles/extra.toml")).expect("rm");
    let list = with_config(&app, &config, &["profile", "list", "--json"]);
    assert!(!list.ok().contains("\"extra\""), "{}", list.stdout);
    let audit = app.json(&["audit", "--json", "--object-type", "profile", "--object-id", "extra"]);
    assert!(audit.as_array().is_some_and(|a| a.len() >= 2), "{audit}");
}

/// Regression: `params.days = 30` or `debug = true` (a number or boolean in TOML) was refused
/// with "data did not match any variant of untagged enum ParamSpec"; and an array value was
/// read positionally as a table (`["a"]` became the value "a").
#[test]
fn numbers_and_booleans_are_parameter_text_and_an_array_is_refused_naming_the_parameter() {
    let app = App::new();
    let c = configure(
        &app,
        "params.days = 30\nparams.debug = true\nparams.ratio = { value = 1.5, description = \"x\" }",
        "accounts = [\"acct-a\"]\n[params]\nretries = 3\n",
    );
    let account = with_config(&app, &c, &["account", "show", "acct-a", "--json"]);
    let account: serde_json::Value = serde_json::from_str(account.ok()).expect("json");
    assert_eq!(account["params"]["days"]["value"], "30");
    assert_eq!(account["params"]["debug"]["value"], "true");
    assert_eq!(account["params"]["ratio"]["value"], "1.5");
    let profile = with_config(&app, &c, &["profile", "show", "web", "--json"]);
    let profile: serde_json::Value = serde_json::from_str(profile.ok()).expect("json");
    assert_eq!(profile["params"]["retries"]["value"], "3", "{profile}");

    for (extra, says) in [
        ("params.hosts = [\"a\", \"b\"]", "parameter hosts: an array is not a parameter definition"),
        ("params.limit = { value = [1] }", "parameter limit: not a parameter definition"),
        ("params.both = { env = \"A\", file = \"/f\" }", "parameter both: a value given by reference is"),
    ] {
        let app = App::new();
        let c = configure(&app, extra, WEB_PROFILE);
        let err = with_config(&app, &c, &["account", "list"]).fails(1).to_owned();
        assert!(err.contains("certhost.toml") && err.contains(says), "{extra}: {err}");
    }
}

/// Regression (review of stop 30): `account create --sensitive-param api_key=SECRET` (the
/// NAME=VALUE form `plugin check` takes) stored `api_key=SECRET` as the parameter's name, in
/// clear, shown by `account show` and the API.
#[test]
fn a_parameter_name_holding_a_value_is_refused_without_showing_the_value() {
    let app = App::new();
    let script = crate::python::fixture("scripted_ca.py");
    let script = script.to_str().expect("utf8");
    let r = app.run(&["account", "create", "lab", "--connector", script, "--sensitive-param", "api_key=S3CRET-v4lue"]);
    let err = r.fails(1).to_owned();
    assert!(err.contains("parameter name \"api_key=…\" of account lab is not a name"), "{err}");
    assert!(!err.contains("S3CRET") && !r.stdout.contains("S3CRET"), "{err}");
    assert_eq!(app.json(&["account", "list", "--json"]).as_array().map(Vec::len), Some(0));
}

/// Regression (review of stop 30): a failed `account test` printed the script's stderr over
/// several lines; every error is one line.
#[test]
fn a_failed_account_test_is_one_line() {
    let app = App::new();
    let script = crate::python::fixture("hostile/test_fails_loudly.py");
    app.run(&["account", "create", "loud", "--connector", script.to_str().expect("utf8")]).ok();
    let err = app.run(&["account", "test", "loud"]).fails(1).to_owned();
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("ca-cli: cannot connect / ca-cli: giving up"), "{err}");
}

/// Regression (review of stop 33): `profile create` replaced an existing profile without a
/// word (an approval requirement switched off by a second create), and `profile delete`
/// removed the profile active certificates renew under, so their renewals failed weeks later.
#[test]
fn a_profile_is_replaced_only_when_asked_and_not_deleted_under_its_certificates() {
    let app = App::new();
    let (config, _) = crate::helpers::local_ca_lab(&app, "");
    let c = config.to_str().expect("utf8");
    let file = app.path("held.toml");
    fs::write(&file, "accounts = [\"lab\"]\napproval_required = true\n").expect("profile");
    let f = file.to_str().expect("utf8");
    assert!(app.run(&["--config", c, "profile", "create", "held", "--file", f]).ok().contains("profile held created"));
    fs::write(&file, "accounts = [\"lab\"]\n").expect("profile");
    let refused = app.run(&["--config", c, "profile", "create", "held", "--file", f]);
    assert!(refused.fails(1).contains("profile held exists; nothing changed: give --replace"), "{}", refused.stderr);
    assert_eq!(app.json(&["--config", c, "profile", "show", "held", "--json"])["approval_required"], true);
    app.run(&["--config", c, "profile", "create", "held", "--file", f, "--replace"]).ok();
    assert_eq!(app.json(&["--config", c, "profile", "show", "held", "--json"])["approval_required"], false);

    app.run(&["--config", c, "issue", "--profile", "held", "--cn", "held.example.com"]).ok();
    let refused = app.run(&["--config", c, "profile", "delete", "held"]);
    let err = refused.fails(1);
    assert!(err.contains("profile held is the profile of active certificates (certificate 1 among them)"), "{err}");
    assert!(err.contains("certhost renew ID --profile OTHER"), "{err}");
    // Renewed under another profile, it is free to go.
    app.run(&["--config", c, "renew", "1", "--profile", "lab"]).ok();
    assert!(app.run(&["--config", c, "profile", "delete", "held"]).ok().contains("profile held deleted"));
    // Renewing it again names the certificate that superseded it.
    let again = app.run(&["--config", c, "renew", "1"]);
    assert!(again.fails(1).contains("renew its successor, certificate 2, instead"), "{}", again.stderr);
}

/// Regression (review of stop 33): a syntax error in certhost.toml stopped `account list`,
/// `profile show` and `orders list` too, when an operator most needs to look. They show what
/// the inventory holds, then the file's error, and fail; a command that changes anything
/// refuses before doing anything.
#[test]
fn a_broken_configuration_file_still_lets_an_operator_look() {
    let app = App::new();
    let (config, _) = crate::helpers::local_ca_lab(&app, "");
    let c = config.to_str().expect("utf8");
    app.run(&["--config", c, "account", "list"]).ok();
    let mut f = fs::OpenOptions::new().append(true).open(&config).expect("open");
    writeln!(f, "[accounts.broken").expect("append");
    for args in
        [&["account", "list"][..], &["account", "show", "lab"], &["profile", "show", "lab"], &["orders", "list"]]
    {
        let r = app.run(&[&["--config", c][..], args].concat());
        let err = r.fails(1);
        assert!(
            err.contains("certhost.toml") && err.contains("(shown above: what the inventory holds)"),
            "{args:?}: {err}"
        );
        let out = r.stdout.clone();
        if args[0] != "orders" {
            assert!(out.contains("lab"), "{args:?}: {out}");
        }
    }
    // An account only the broken file defines: the file's error is the cause, and is said
    // (black-box review of stop 35: only "does not exist" was).
    let r = app.run(&["--config", c, "account", "show", "broken"]);
    let err = r.fails(1);
    assert!(err.contains("in the inventory as stored; the configuration file does not load"), "{err}");
    assert!(err.contains("certhost.toml"), "{err}");
    let r = app.run(&["--config", c, "issue", "--profile", "lab", "--cn", "x.example.com"]);
    assert!(r.fails(1).contains("certhost.toml"), "{}", r.stderr);
}

/// Operator review of stop 36: an order held for approval was sent to the CA as it was made,
/// though its profile had changed since to refuse its names; the CA signed, and the host then
/// threw the certificate away (not allowed to store it). The approval is refused before the
/// CA is called, and the order stays held for a decline.
#[test]
fn approving_an_order_its_changed_profile_no_longer_allows_calls_no_ca() {
    let app = App::new();
    let (config, _) = crate::helpers::local_ca_lab(&app, "approval_required = true");
    let c = config.to_str().expect("utf8");
    // Asked for files that cannot be written yet: exit 5, not the 0 `issue --out D && reload` goes on
    // with (operator review of stop 36).
    let out = app.path("out");
    std::fs::create_dir_all(&out).expect("out");
    let o = out.to_str().expect("utf8");
    let held = app.run(&["--config", c, "issue", "--profile", "lab", "--cn", "z.example.com", "--out", o]);
    let err = held.fails(5);
    assert!(held.stdout.contains("awaits approval"), "{}", held.stdout);
    assert!(err.contains("order #1 has not issued yet; once it has, certhost show ID --out"), "{err}");
    // Approvers are told (operator review of stop 36: they had to poll).
    let db = rusqlite::Connection::open(app.data_dir().join("certhost.db")).expect("db");
    let subject: String = db
        .query_row("SELECT subject FROM notifications WHERE kind = 'awaiting_approval'", [], |r| r.get(0))
        .expect("an awaiting_approval notification");
    assert!(subject.starts_with("certhost: order 1 (z.example.com, profile lab) awaits approval"), "{subject}");
    let profile = config.parent().expect("conf").join("profiles/lab.toml");
    fs::write(
        &profile,
        "accounts = [\"lab\"]\napproval_required = true\n[sans]\nallowed_types = [\"DNS\"]\ndns_suffixes = [\".example.org\"]\n",
    )
    .expect("profile");
    let out = app.command().args(["--config", c, "orders", "approve", "1"]).env("USER", "bob").output().expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(
            "order 1 is not sent to the CA: profile lab has changed since it was made and no longer allows it"
        ),
        "{err}"
    );
    let order = app.json(&["--config", c, "orders", "show", "1", "--json"]);
    assert_eq!(order["state"], "awaiting_approval", "{order}");
    assert!(app.json(&["--config", c, "list", "--json"]).as_array().expect("list").is_empty());
}

/// Operator review of stop 36: one profile file with a mistake (mid-edit) refused every
/// command that changes anything, `revoke` of a compromised key among them. `revoke` and
/// `orders decline` go on with the definitions last loaded, saying why; the rest still refuse.
#[test]
fn a_broken_profile_file_does_not_block_a_revocation() {
    let app = App::new();
    let (config, _) = crate::helpers::scripted_lab(&app, "ca", "good", "", &[("web", "accounts = [\"ca\"]\n")]);
    let c = config.to_str().expect("utf8");
    app.run(&["--config", c, "issue", "--profile", "web", "--cn", "k.example.com"]).ok();
    let broken = config.parent().expect("conf").join("profiles/other.toml");
    fs::write(&broken, "accounts = [\"ca\"]\n[sans]\nmax = \"many\"\n").expect("broken profile");
    let refused = app.run(&["--config", c, "issue", "--profile", "web", "--cn", "l.example.com"]);
    assert!(refused.fails(1).contains("other.toml"), "{}", refused.stderr);
    let revoked = app.run(&["--config", c, "revoke", "1", "--reason", "keyCompromise"]);
    let out = revoked.ok();
    assert!(revoked.stderr.contains("warning:") && revoked.stderr.contains("other.toml"), "{}", revoked.stderr);
    assert!(revoked.stderr.contains("going on with the accounts and profiles as last loaded"), "{}", revoked.stderr);
    assert!(out.contains("revoked"), "{out}");
    assert_eq!(app.json(&["show", "1", "--json"])["status"], "revoked");
}

/// Operator review of stop 39: revoking for keyCompromise protected only keys the host made.
/// A key from an uploaded CSR went on being certified: another certificate on it kept its
/// renewal time, it renewed on the same key, and the same CSR was accepted again.
#[test]
fn a_key_from_an_uploaded_csr_revoked_for_compromise_is_never_certified_again() {
    let app = App::new();
    let (config, _) = crate::helpers::scripted_lab(
        &app,
        "ca",
        "good",
        "",
        &[("web", "accounts = [\"ca\"]\n[renewal]\nbefore_days = 30\n")],
    );
    let c = config.to_str().expect("utf8");
    let csr_dir = app.path("csr");
    app.run(&["key-csr", "--key-type", "ec-p256", "--cn", "m.example.com", "--out", csr_dir.to_str().expect("utf8")])
        .ok();
    let csr = csr_dir.join("csr.pem");
    let upload = || {
        app.run(&[
            "--config",
            c,
            "issue",
            "--profile",
            "web",
            "--cn",
            "m.example.com",
            "--csr",
            csr.to_str().expect("utf8"),
        ])
    };
    assert!(upload().ok().contains("issued certificate #1"));
    assert!(upload().ok().contains("issued certificate #2"));
    let before = app.json(&["--config", c, "renewals", "--json"]);
    app.run(&["--config", c, "revoke", "2", "--reason", "keyCompromise"]).ok();
    // #1, on the same key, is due at once, and says why.
    let after = app.json(&["--config", c, "renewals", "--json"]);
    let due = |v: &serde_json::Value| {
        v["upcoming"].as_array().expect("upcoming").iter().find(|r| r["id"] == 1).map(|r| r["renew_after"].clone())
    };
    assert_ne!(due(&before), due(&after), "{after}");
    let history = app.json(&["--config", c, "audit", "--object-type", "certificate", "--object-id", "1", "--json"]);
    assert!(history.to_string().contains("certificate.key_compromised"), "{history}");
    // Renewing #1 would send its CSR again: refused.
    let r = app.run(&["--config", c, "renew", "1"]);
    assert!(r.fails(1).contains("revoked for keyCompromise"), "{}", r.stderr);
    // And so is the CSR uploaded anew.
    let r = upload();
    assert!(
        r.fails(1)
            .contains("the CSR's key was revoked for keyCompromise (certificate 2), and no certificate is issued"),
        "{}",
        r.stderr
    );
    assert_eq!(app.json(&["--config", c, "list", "--json"]).as_array().expect("list").len(), 2);
}

/// Diff review of stop 39: an order open when its key was revoked for keyCompromise still got
/// a certificate — polled at the CA, it lived on the compromised key until its normal renewal
/// time; approved, it was issued on it. The polled one is due at once; the held one is closed.
#[test]
fn orders_open_when_their_key_is_revoked_for_compromise_do_not_keep_it() {
    let app = App::new();
    let (config, _) = crate::helpers::scripted_lab(
        &app,
        "ca",
        "good",
        "",
        &[
            ("web", "accounts = [\"ca\"]\n[renewal]\nbefore_days = 5\n"),
            ("slow", "accounts = [\"slowca\"]\n[renewal]\nbefore_days = 5\n"),
            ("held", "accounts = [\"ca\"]\napproval_required = true\n[renewal]\nbefore_days = 5\n"),
        ],
    );
    // The same lab CA as a second account that answers "pending".
    let text = fs::read_to_string(&config).expect("config");
    let slow = text.replace("[accounts.ca]", "[accounts.slowca]").replace("mode = \"good\"", "mode = \"pending\"");
    fs::write(&config, format!("{text}\n{slow}")).expect("config");
    let c = config.to_str().expect("utf8");
    let csr = app.path("csr");
    app.run(&["key-csr", "--key-type", "ec-p256", "--cn", "o.example.com", "--out", csr.to_str().expect("utf8")]).ok();
    let csr = csr.join("csr.pem");
    let upload = |profile: &str| {
        app.run(&[
            "--config",
            c,
            "issue",
            "--profile",
            profile,
            "--cn",
            "o.example.com",
            "--csr",
            csr.to_str().expect("utf8"),
        ])
    };
    assert!(upload("slow").ok().contains("pending at the CA"));
    assert!(upload("held").ok().contains("awaits approval"));
    assert!(upload("web").ok().contains("issued certificate #1"));
    app.run(&["--config", c, "revoke", "1", "--reason", "keyCompromise"]).ok();
    // Polled after the revoke: stored (the CA issued it), due for renewal at once, and not
    // handed out as issued (red-team walkthrough of stop 48).
    let polled = app.run(&["--config", c, "orders", "poll", "1"]);
    assert!(polled.fails(3).contains("certificate 2 is on a key revoked for keyCompromise"), "{}", polled.stderr);
    let renewals = app.json(&["--config", c, "renewals", "--json"]);
    let due = renewals["upcoming"].as_array().expect("upcoming").iter().find(|r| r["id"] == 2).expect("scheduled");
    let at = time::OffsetDateTime::parse(
        due["renew_after"].as_str().expect("time"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("rfc3339");
    assert!(at <= time::OffsetDateTime::now_utc() + time::Duration::minutes(1), "{due}");
    // Approved after the revoke: refused, and the order closed with why.
    let out = app.command().args(["--config", c, "orders", "approve", "2"]).env("USER", "bob").output().expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("revoked for keyCompromise (certificate 1)"), "{err}");
    let order = app.json(&["--config", c, "orders", "show", "2", "--json"]);
    assert_eq!(order["state"], "failed", "{order}");
    assert_eq!(app.json(&["--config", c, "list", "--json"]).as_array().expect("list").len(), 2);
}

/// Author review of stop 38: every command loads a `./certhost.toml` it finds, so
/// `certhost orders list` run in another project's directory, against this data directory,
/// replaced its accounts and profiles with that project's (and a running `serve` lost them
/// at once). A `./certhost.toml` that is not the file they came from is left unread, with a
/// warning; given with `--config`, it is loaded.
#[test]
fn a_certhost_toml_in_another_directory_does_not_replace_the_definitions_unasked() {
    let app = App::new();
    let local_ca = crate::wasm::component("local-ca");
    for (project, account, profile) in [("a", "acct-a", "pa"), ("c", "other", "pc")] {
        let dir = app.path(project);
        fs::create_dir_all(dir.join("profiles")).expect("mkdir");
        fs::write(dir.join("certhost.toml"), format!("[accounts.{account}]\nconnector = \"{}\"\n", local_ca.display()))
            .expect("config");
        fs::write(dir.join(format!("profiles/{profile}.toml")), format!("accounts = [\"{account}\"]\n"))
            .expect("profile");
    }
    let in_dir = |project: &str, args: &[&str]| {
        let out = app.command().args(args).current_dir(app.path(project)).output().expect("run");
        (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (listed, _) = in_dir("a", &["profile", "list"]);
    assert!(listed.contains("pa"), "{listed}");
    // From c: c's file is not read, a's definitions stay, and the warning names both files.
    let (orders, warning) = in_dir("c", &["orders", "list"]);
    assert!(orders.contains("no orders"), "{orders}");
    let a_file = app.path("a/certhost.toml");
    assert!(
        warning.contains(&format!("{} is not read", app.path("c/certhost.toml").display()))
            && warning.contains(&format!("come from {}", a_file.display()))
            && warning.contains("give --config"),
        "{warning}"
    );
    let (listed, _) = in_dir("c", &["profile", "list"]);
    assert!(listed.contains("pa") && !listed.contains("pc"), "{listed}");
    let deletes = app.json(&["audit", "--json", "--action", "profile.delete"]);
    assert_eq!(deletes.as_array().map(Vec::len), Some(0), "{deletes}");
    // Asked for by name, c's file is loaded and replaces a's definitions; then it is the one.
    let (listed, _) = in_dir("c", &["--config", "certhost.toml", "profile", "list"]);
    assert!(listed.contains("pc") && !listed.contains("pa"), "{listed}");
    let (listed, warning) = in_dir("c", &["profile", "list"]);
    assert!(listed.contains("pc") && warning.is_empty(), "{listed} {warning}");
    // `serve`, whose [server] and [notify] come from that file too, refuses to start on
    // defaults (diff review of stop 38).
    let serve =
        app.command().args(["serve", "--listen", "127.0.0.1:0"]).current_dir(app.path("a")).output().expect("serve");
    let said = String::from_utf8_lossy(&serve.stderr);
    assert!(!serve.status.success(), "{said}");
    assert!(
        said.contains("is not the configuration file this data directory's accounts and profiles come from")
            && said.contains(&format!("give --config {}", app.path("c/certhost.toml").display())),
        "{said}"
    );
    // A link switched to a new release of the same file is the same file (diff review of stop
    // 38: the recorded path had its links resolved, and each deployment made it "another").
    let (release1, release2, current) = (app.path("rel1"), app.path("rel2"), app.path("current"));
    for release in [&release1, &release2] {
        fs::create_dir_all(release.join("profiles")).expect("mkdir");
        fs::copy(app.path("c/certhost.toml"), release.join("certhost.toml")).expect("copy");
    }
    fs::write(release1.join("profiles/r1.toml"), "accounts = [\"other\"]\n").expect("r1");
    fs::write(release2.join("profiles/r2.toml"), "accounts = [\"other\"]\n").expect("r2");
    std::os::unix::fs::symlink(&release1, &current).expect("link");
    let from_current = |args: &[&str]| {
        let out = app.command().args(args).current_dir(&current).output().expect("run");
        (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let config = current.join("certhost.toml");
    let (listed, _) = from_current(&["--config", config.to_str().expect("utf8"), "profile", "list"]);
    assert!(listed.contains("r1"), "{listed}");
    fs::remove_file(&current).expect("unlink");
    std::os::unix::fs::symlink(&release2, &current).expect("relink");
    let (listed, warning) = from_current(&["profile", "list"]);
    assert!(listed.contains("r2") && !listed.contains("r1") && warning.is_empty(), "{listed} {warning}");
}

/// A parameter the connector does not declare is said (a typo like `validty_days`), but not a
/// dynamic one kept for the record with the order: the shipped demo profile's `requester`
/// warned on every command (author review of stop 38).
#[test]
fn an_undeclared_parameter_is_said_unless_it_is_dynamic() {
    let app = App::new();
    let (config, _) = crate::helpers::local_ca_lab(&app, "[params]\nrequester = { dynamic = true }\n");
    let c = config.to_str().expect("utf8");
    let quiet = app.run(&["--config", c, "profile", "list"]);
    assert!(!quiet.ok().is_empty() && !quiet.stderr.contains("declares"), "{}", quiet.stderr);
    let text = fs::read_to_string(&config).expect("config");
    fs::write(&config, format!("{text}params.validty_days = \"7\"\n")).expect("typo");
    let said = app.run(&["--config", c, "profile", "list"]);
    said.ok();
    assert!(
        said.stderr.contains("parameter validty_days of account lab is not one connector local-ca declares"),
        "{}",
        said.stderr
    );
    assert!(!said.stderr.contains("parameter requester"), "{}", said.stderr);
}

/// Author review of stop 38: a mistyped connector path in certhost.toml loaded without a word;
/// the first issuance failed. It is said when the file is loaded.
#[test]
fn a_connector_path_that_does_not_exist_is_said_when_the_file_loads() {
    let app = App::new();
    let (config, _) = crate::helpers::local_ca_lab(&app, "");
    let text = fs::read_to_string(&config).expect("config");
    let local_ca = crate::wasm::component("local-ca").display().to_string();
    fs::write(&config, text.replace(&local_ca, "/nowhere/local-caa.wasm")).expect("typo");
    let said = app.run(&["--config", config.to_str().expect("utf8"), "profile", "list"]);
    said.ok();
    assert!(
        said.stderr
            .contains("account lab: connector /nowhere/local-caa.wasm does not exist; every call through it will fail"),
        "{}",
        said.stderr
    );
}

/// Upgrade walkthrough of stop 49: an inventory a certhost from before the configuration
/// file was recorded had loaded (schema 15 and older record none) took the first
/// `./certhost.toml` a command found after the upgrade as its own — the shipped demo one,
/// run from the release checkout — and deleted the operator's profiles, an account and its
/// stored secret. Unrecorded, a file is taken as theirs only when it defines every one of
/// them; one that lacks any is left unread (`serve` refuses it), and `--config` says which.
#[test]
fn an_upgraded_inventory_that_never_recorded_its_file_is_not_taken_over_by_another() {
    let app = App::new();
    let local_ca = crate::wasm::component("local-ca");
    for (project, accounts, profiles) in
        [("ops", &["ca", "spare"][..], &["web", "spare"][..]), ("demo", &["demo"][..], &["demo"][..])]
    {
        let dir = app.path(project);
        fs::create_dir_all(dir.join("profiles")).expect("mkdir");
        let config: String =
            accounts.iter().map(|a| format!("[accounts.{a}]\nconnector = \"{}\"\n", local_ca.display())).collect();
        fs::write(dir.join("certhost.toml"), config).expect("config");
        for p in profiles {
            fs::write(dir.join(format!("profiles/{p}.toml")), format!("accounts = [\"{}\"]\n", accounts[0]))
                .expect("profile");
        }
    }
    let in_dir = |project: &str, args: &[&str]| {
        let out = app.command().args(args).current_dir(app.path(project)).output().expect("run");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (_, listed, _) = in_dir("ops", &["profile", "list"]);
    assert!(listed.contains("web") && listed.contains("spare"), "{listed}");
    // What an older certhost left: the definitions, and no record of their file.
    let db = rusqlite::Connection::open(app.data_dir().join("certhost.db")).expect("db");
    db.execute("DELETE FROM meta WHERE name = 'config_file'", []).expect("forget the file");
    drop(db);

    // The demo file lacks them: not read, nothing deleted, the missing ones named.
    let (_, listed, warning) = in_dir("demo", &["profile", "list"]);
    assert!(listed.contains("web") && listed.contains("spare") && !listed.contains("demo"), "{listed}");
    assert!(
        warning.contains(&format!("{} is not read", app.path("demo/certhost.toml").display()))
            && warning.contains("loaded by an earlier certhost")
            && warning.contains("does not define account ca, account spare, profile spare, profile web"),
        "{warning}"
    );
    let (started, _, said) = in_dir("demo", &["serve", "--listen", "127.0.0.1:0"]);
    assert!(!started && said.contains("loading it would delete them") && said.contains("give --config"), "{said}");
    let deletes = app.json(&["audit", "--json", "--action", "profile.delete"]);
    assert_eq!(deletes.as_array().map(Vec::len), Some(0), "{deletes}");
    let deletes = app.json(&["audit", "--json", "--action", "account.delete"]);
    assert_eq!(deletes.as_array().map(Vec::len), Some(0), "{deletes}");

    // Their own file, found beside a command, defines them all: taken, and recorded.
    let (_, listed, warning) = in_dir("ops", &["profile", "list"]);
    assert!(listed.contains("web") && warning.is_empty(), "{listed} {warning}");
    let (_, _, warning) = in_dir("demo", &["profile", "list"]);
    assert!(warning.contains(&format!("come from {}", app.path("ops/certhost.toml").display())), "{warning}");
}

/// Listing a configuration file's accounts makes the inventory that holds them (and a master
/// key): said once, since a mistyped --data-dir did it silently (author review of stop 40).
#[test]
fn listing_a_configuration_in_a_new_data_directory_says_it_made_an_inventory() {
    let app = App::new();
    let dir = app.path("conf");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let config = dir.join("certhost.toml");
    std::fs::write(&config, "[accounts.lab]\nconnector = \"/nonexistent/ca.wasm\"\n").expect("config");
    let first = with_config(&app, &config, &["account", "list"]);
    first.ok();
    assert!(first.stderr.contains("note: there was no inventory in"), "{}", first.stderr);
    let again = with_config(&app, &config, &["account", "list"]);
    again.ok();
    assert!(!again.stderr.contains("note:"), "{}", again.stderr);
}

/// Operator review of stop 41: a deploy target's `owner = "www-dta"` (a typo) was accepted,
/// and every deployment then failed. Said when the profile is made; not refused, since the
/// user may come later.
#[test]
fn a_deploy_owner_this_host_does_not_have_is_said_when_the_profile_is_made() {
    let app = App::new();
    app.run(&["account", "create", "lab", "--connector", crate::wasm::component("local-ca").to_str().expect("utf8")])
        .ok();
    let file = app.path("p.toml");
    std::fs::write(
        &file,
        format!(
            "accounts = [\"lab\"]\n[[deploy]]\ncert = \"{}\"\nowner = \"no-such-user-4711\"\n",
            app.path("out/cert.pem").display()
        ),
    )
    .expect("profile");
    let r = app.run(&["profile", "create", "web", "--file", file.to_str().expect("utf8")]);
    assert!(r.ok().contains("profile web created"), "{}", r.stdout);
    assert!(
        r.stderr.contains("warning: profile web: deploy target files:")
            && r.stderr.contains("owner no-such-user-4711 is not a user on this host; each deployment to it fails"),
        "{}",
        r.stderr
    );
}

/// An order pending at the CA is finished with what the connector cached when it was placed
/// (an ACME order's CSR and account key); an edit of the account empties that cache. The
/// edit says which orders it left without it, and the audit log keeps them; an edit that
/// keeps the cache (a description) says nothing.
#[test]
fn an_account_edit_that_empties_the_cache_names_the_orders_pending_at_the_ca() {
    let app = App::new();
    let script = app.path("pending_ca.py");
    fs::write(
        &script,
        r#"import certhost

PARAMETERS = [{"name": "url", "description": "the CA", "required": False}]

def certificate_request(csr, common_name, args):
    certhost.cache_set("order-7", "csr of order 7", 0)
    return {"status": "pending", "order_id": "7", "retry_after": 5}

def poll(order_id, args):
    return {"status": "rejected", "reason": "poll found: " + str(certhost.cache_get("order-" + order_id))}
"#,
    )
    .expect("script");
    let s = script.to_str().expect("utf8");
    app.run(&["account", "create", "ca", "--connector", s, "--param", "url=https://a.example"]).ok();
    let profile = app.path("p.toml");
    fs::write(&profile, "accounts = [\"ca\"]\n").expect("profile");
    app.run(&["profile", "create", "p", "--file", profile.to_str().expect("utf8")]).ok();
    let issued = app.run(&["issue", "--profile", "p", "--cn", "www.example.com"]);
    assert!(issued.ok().contains("order #1 is pending at the CA"), "{}", issued.stdout);
    let kept = app.run(&["account", "edit", "ca", "--description", "the lab CA"]);
    assert!(!kept.ok().contains("warning") && !kept.stderr.contains("warning"), "{}", kept.stderr);
    let edited = app.run(&["account", "edit", "ca", "--param", "url=https://b.example"]);
    assert!(edited.ok().contains("account ca updated"), "{}", edited.stdout);
    assert!(
        edited.stderr.contains("warning: account ca's connector cache was emptied")
            && edited.stderr.contains("while 1 of its orders may be at the CA (1)")
            && edited.stderr.contains("certhost orders decline ID"),
        "{}",
        edited.stderr
    );
    let audit = app.json(&["audit", "--action", "account.update", "--json"]);
    assert!(audit.to_string().contains("\"pending_orders_without_cache\":[1]"), "{audit}");
    // What the warning foretold: the poll finds nothing cached.
    let polled = app.run(&["orders", "poll", "1"]);
    assert!(format!("{}{}", polled.stdout, polled.stderr).contains("poll found: None"), "{}", polled.stderr);
    // The API's update answers with the same warning.
    app.run(&["issue", "--profile", "p", "--cn", "two.example.com"]).ok();
    let server = crate::helpers::Server::start(app, None);
    let token = server.token("admin", "admin");
    let r = reqwest::blocking::Client::new()
        .put(format!("{}/v1/accounts/ca", server.base))
        .bearer_auth(&token)
        .json(&serde_json::json!({"connector": s, "params": {"url": "https://c.example"}}))
        .send()
        .expect("put");
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    let view: serde_json::Value = r.json().expect("json");
    let warnings = view["warnings"].as_array().unwrap_or_else(|| panic!("{view}"));
    assert!(warnings[0].as_str().is_some_and(|w| w.contains("may be at the CA (2)")), "{view}");
    assert!(server.log().contains("may be at the CA (2)"), "{}", server.log());
}

/// Red team of stop 50: a `certhost.toml` found in the directory a command ran in was taken
/// on by an inventory whose accounts and profiles were made with the CLI — its accounts
/// added, itself recorded as the inventory's file, its connector script run —, and one
/// another user wrote would have run their code as the operator. A found file is taken on
/// only by an inventory with nothing of its own yet and only when it is the user's (or
/// root's) and not writable by anyone; `--config` still loads any.
#[test]
fn a_found_certhost_toml_is_not_taken_on_by_an_inventory_made_without_one_or_when_anyone_could_write_it() {
    use std::os::unix::fs::PermissionsExt;
    let app = App::new();
    let dir = app.path("stranger");
    fs::create_dir_all(&dir).expect("mkdir");
    let ran = app.path("ran");
    let script = dir.join("evil.py");
    fs::write(
        &script,
        format!(
            "open({:?}, 'w').write('ran')\ndef certificate_request(csr, common_name, args_dict):\n    return ''\n",
            ran.display().to_string()
        ),
    )
    .expect("script");
    fs::write(dir.join("certhost.toml"), "[accounts.evil]\nconnector = \"evil.py\"\n").expect("config");
    let in_dir = |args: &[&str]| {
        let out = app.command().args(args).current_dir(&dir).output().expect("run");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    // Anyone may write it: not read even by a new inventory.
    fs::set_permissions(dir.join("certhost.toml"), fs::Permissions::from_mode(0o666)).expect("chmod");
    let (code, listed, said) = in_dir(&["account", "list"]);
    assert!(
        said.contains("is not read: anyone may write it") && said.contains("give --config"),
        "{code:?} {listed} {said}"
    );
    assert!(!listed.contains("evil") && !ran.exists(), "{listed}");
    let serve = in_dir(&["serve", "--listen", "127.0.0.1:0"]);
    assert_eq!(serve.0, Some(1), "serve refuses to start without the file it found: {}", serve.2);
    fs::set_permissions(dir.join("certhost.toml"), fs::Permissions::from_mode(0o644)).expect("chmod");
    // SAFETY: geteuid takes nothing and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        std::os::unix::fs::chown(dir.join("certhost.toml"), Some(65534), None).expect("chown");
        let (_, listed, said) = in_dir(&["account", "list"]);
        assert!(said.contains("belongs to user id 65534, neither you nor root"), "{said}");
        assert!(!listed.contains("evil") && !ran.exists(), "{listed}");
        std::os::unix::fs::chown(dir.join("certhost.toml"), Some(0), None).expect("chown");
        // A stranger's link to a file is the stranger's: paths in it are read from the link's
        // directory (diff review of stop 50).
        let linked = app.path("linked");
        fs::create_dir_all(&linked).expect("mkdir");
        std::os::unix::fs::symlink(dir.join("certhost.toml"), linked.join("certhost.toml")).expect("link");
        std::os::unix::fs::lchown(linked.join("certhost.toml"), Some(65534), None).expect("lchown");
        let out = app.command().args(["account", "list"]).current_dir(&linked).output().expect("run");
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(said.contains("is a link that belongs to user id 65534"), "{said}");
        assert!(!ran.exists());
    }

    // An inventory whose accounts were made with the CLI: the found file is not read.
    let local_ca = crate::wasm::component("local-ca");
    app.run(&["account", "create", "own", "--connector", local_ca.to_str().expect("utf8")]).ok();
    let (_, listed, said) = in_dir(&["account", "list"]);
    assert!(
        said.contains("were made with the CLI or the API, not loaded from a file") && said.contains("give --config"),
        "{said}"
    );
    assert!(listed.contains("own") && !listed.contains("evil") && !ran.exists(), "{listed}");
    // Asked for by name, it is loaded (and its script runs: the operator chose it).
    let (_, listed, _) = in_dir(&["--config", "certhost.toml", "account", "list"]);
    assert!(listed.contains("evil") && listed.contains("own"), "{listed}");
}
