//! Group commit must not weaken durability (issue 9): a 201 means the certificate survives a
//! crash. The real server issues under concurrent load and is killed with SIGKILL mid-stream;
//! every certificate a client was answered 201 for must then be in the SQLite file, and the
//! inventory must be consistent and usable.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::helpers::{App, Server, http, local_ca_lab};

const CLIENTS: usize = 16;
/// Answers to collect before the kill (enough that many groups were committed).
const BEFORE_KILL: usize = 300;

#[test]
fn every_certificate_answered_201_survives_kill_9_under_load() {
    let app = App::new();
    let (config, _) = local_ca_lab(&app, "[key]\ntype = \"ec-p256\"\n");
    let server = Server::start(app, Some(&config));
    let token = server.token("load", "operator");
    let url = format!("{}/v1/certificates", server.base);
    let answered: Arc<Mutex<BTreeMap<i64, String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (url, token, answered, stop) = (url.clone(), token.clone(), answered.clone(), stop.clone());
            std::thread::spawn(move || {
                let http = http();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let body = serde_json::json!({ "profile": "lab", "cn": format!("c{c}-{n}.example.com") });
                    // After the kill requests fail; before it, anything but 201 is a bug.
                    let Ok(resp) = http.post(&url).bearer_auth(&token).json(&body).send() else { break };
                    assert_eq!(resp.status(), StatusCode::CREATED, "issue before the kill");
                    let Ok(v) = resp.json::<serde_json::Value>() else { break };
                    let id = v["certificate"]["id"].as_i64().expect("certificate id");
                    let sha256 = v["certificate"]["sha256"].as_str().expect("sha256").to_owned();
                    answered.lock().expect("lock").insert(id, sha256);
                }
            })
        })
        .collect();
    let started = Instant::now();
    while answered.lock().expect("lock").len() < BEFORE_KILL && started.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(20));
    }
    // Requests are in flight right now: some orders are being written, some certificates
    // are in a group that has not committed yet.
    let mut server = server;
    Command::new("kill").args(["-KILL", &server.child.id().to_string()]).status().expect("kill");
    let _ = server.child.wait();
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("client thread");
    }
    let answered = answered.lock().expect("lock").clone();
    assert!(answered.len() >= BEFORE_KILL, "only {} issued before the deadline; log: {}", answered.len(), server.log());

    let db = rusqlite::Connection::open(server.app.data_dir().join("certhost.db")).expect("open db");
    for (id, sha256) in &answered {
        let stored: Option<String> =
            db.query_row("SELECT sha256 FROM certificates WHERE id = ?1", [id], |r| r.get(0)).ok();
        assert_eq!(stored.as_deref(), Some(sha256.as_str()), "certificate {id} was answered 201 but is not stored");
    }
    // Nothing half-written: each issued order has its certificate (and its key), each
    // certificate its issuing order and its renewal time, each certificate one audit event.
    let count = |sql: &str| -> i64 { db.query_row(sql, [], |r| r.get(0)).expect(sql) };
    let certs = count("SELECT COUNT(*) FROM certificates");
    assert!(certs >= answered.len() as i64);
    assert_eq!(count("SELECT COUNT(*) FROM orders WHERE state = 'issued'"), certs);
    assert_eq!(
        count(
            "SELECT COUNT(*) FROM orders o JOIN certificates c ON c.id = o.certificate_id WHERE o.state = 'issued' AND c.key_id = o.key_id"
        ),
        certs,
        "every certificate keeps its order's sealed key"
    );
    assert_eq!(count("SELECT COUNT(*) FROM certificates WHERE renew_after IS NULL"), 0, "every certificate scheduled");
    assert_eq!(count("SELECT COUNT(*) FROM audit_events WHERE action = 'certificate.issue'"), certs);
    let orders = count("SELECT COUNT(*) FROM orders");
    assert_eq!(count("SELECT COUNT(*) FROM audit_events WHERE action = 'order.create'"), orders);
    // Orders cut off by the kill are pending (their CA call outcome unknown), never lost.
    assert_eq!(count("SELECT COUNT(*) FROM orders WHERE state NOT IN ('issued', 'pending')"), 0);
    drop(db);

    // The inventory opens and serves again.
    let app = std::mem::replace(&mut server.app, App::new());
    drop(server);
    let server = Server::start(app, Some(&config));
    let list = server.app.json(&["list", "--json"]);
    assert_eq!(list.as_array().expect("list").len() as i64, certs);
}

/// `certhost backup` while `serve` issues (black-box review of stop 35: copying certhost.db
/// alone, the obvious backup, missed every certificate still in the WAL). The copy holds every
/// certificate answered 201 before it began, restores as a data directory of its own with the
/// same master key, and its keys open.
#[test]
fn a_backup_taken_while_serve_issues_restores_every_certificate_answered_before_it() {
    let app = App::new();
    let (config, _) = local_ca_lab(&app, "");
    let server = Server::start(app, Some(&config));
    let token = server.token("load", "operator");
    let url = format!("{}/v1/certificates", server.base);
    let issue = |cn: String| {
        let r = http().post(&url).bearer_auth(&token).json(&serde_json::json!({"profile": "lab", "cn": cn})).send();
        assert_eq!(r.expect("issue").status(), StatusCode::CREATED);
    };
    for i in 0..20 {
        issue(format!("before-{i}.example.com"));
    }
    let backup = server.app.path("inventory.backup");
    let b = backup.to_str().expect("utf8");
    let out = std::thread::scope(|s| {
        let load = s.spawn(|| (0..30).for_each(|i| issue(format!("during-{i}.example.com"))));
        let out = server.app.run(&["backup", b]).ok().to_owned();
        load.join().expect("load");
        out
    });
    let counted: usize = out
        .split("inventory to ")
        .nth(1)
        .and_then(|t| t.split(": ").nth(1))
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("certificates counted: {out}"));
    assert!((20..=50).contains(&counted), "{out}");
    assert!(server.app.run(&["backup", b]).fails(1).contains("it exists"));
    // A relative name starting with `file:` is a file of that name, not a URI naming another
    // (review of stop 35: SQLite wrote x.db, world-readable).
    let here = server.app.path("here");
    std::fs::create_dir(&here).expect("mkdir");
    let r = server.app.command().args(["backup", "file:x.db"]).current_dir(&here).output().expect("backup");
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(here.join("file:x.db")).expect("the named file").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(!here.join("x.db").exists());

    // Not over the inventory serve has open, even when asked to replace it.
    let busy = server.app.run(&["restore", b, "--replace"]);
    assert!(busy.fails(1).contains("another certhost process has it open"), "{}", busy.stderr);
    let restored = server.app.path("restored");
    let run = |key: &str, args: &[&str]| {
        Command::new(crate::helpers::certhost_bin())
            .args(args)
            .env("CERTHOST_DATA_DIR", &restored)
            .env("CERTHOST_MASTER_KEY", key)
            .output()
            .expect("run")
    };
    let wrong = run(&crate::helpers::App::new().master_key, &["restore", b]);
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert!(err.contains("nothing was restored") && err.contains("is sealed under another one"), "{err}");
    assert!(!restored.join("certhost.db").exists());
    let done = run(&server.app.master_key, &["restore", b]);
    let out = String::from_utf8_lossy(&done.stdout);
    assert!(done.status.success() && out.contains(&format!("{counted} certificates")), "{out}");
    let list = run(&server.app.master_key, &["list", "--json", "--limit", "1000"]);
    assert!(list.status.success(), "{}", String::from_utf8_lossy(&list.stderr));
    let listed: serde_json::Value = serde_json::from_slice(&list.stdout).expect("json");
    let names: Vec<&str> = listed.as_array().expect("array").iter().filter_map(|c| c["common_name"].as_str()).collect();
    assert_eq!(names.len(), counted);
    for i in 0..20 {
        assert!(names.contains(&format!("before-{i}.example.com").as_str()), "before-{i} is in the backup");
    }
    let out_dir = server.app.path("restored-out");
    let show = run(&server.app.master_key, &["show", "1", "--out", out_dir.to_str().expect("utf8")]);
    assert!(show.status.success(), "{}", String::from_utf8_lossy(&show.stderr));
    assert!(std::fs::read_to_string(out_dir.join("key.pem")).expect("key").contains("PRIVATE KEY"));
    let wrong = run(&crate::helpers::App::new().master_key, &["list"]);
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("master key does not match"));
    // A key in the variable and another in master.key: a command run without the variable
    // would not open what is restored, so nothing is (stop 36's review).
    let other = crate::helpers::App::new().master_key;
    std::fs::write(restored.join("master.key"), &other).expect("key file");
    std::fs::set_permissions(restored.join("master.key"), std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let split = run(&server.app.master_key, &["restore", b, "--replace"]);
    let err = String::from_utf8_lossy(&split.stderr);
    assert!(err.contains("CERTHOST_MASTER_KEY and") && err.contains("hold different keys"), "{err}");
}

/// A restore puts an older inventory in place; the certificates, orders and audit events made
/// after the backup are gone from it, but not from the API clients, webhook receivers, deploy
/// hooks and audit readers that were told their ids. The next ones go on from where the
/// replaced inventory's ended: no id names two things.
#[test]
fn after_a_restore_no_certificate_order_or_audit_id_is_handed_out_twice() {
    let app = App::new();
    let (config, _) = local_ca_lab(&app, "");
    let c = config.to_str().expect("utf8");
    let issue = |cn: &str| app.run(&["--config", c, "issue", "--profile", "lab", "--cn", cn]).ok().to_owned();
    let max_event = |app: &App| -> i64 {
        let events = app.json(&["audit", "--json", "--limit", "1000"]);
        events.as_array().expect("events").iter().filter_map(|e| e["id"].as_i64()).max().expect("an event")
    };
    for cn in ["a.example.com", "b.example.com"] {
        issue(cn);
    }
    let backup = app.path("inventory.backup");
    let b = backup.to_str().expect("utf8");
    app.run(&["backup", b]).ok();
    for cn in ["c.example.com", "d.example.com"] {
        issue(cn);
    }
    assert!(issue("e.example.com").contains("issued certificate #5 (order #5)"));
    let before = max_event(&app);
    let restored = app.run(&["restore", b, "--replace"]);
    assert!(restored.ok().contains("restored"), "{}", restored.stdout);
    // The certificates made since the backup are named, as gone from the restored inventory.
    assert!(
        restored.stdout.contains(
            "warning: 3 certificates of the inventory it replaced are not in the backup (issued, renewed or imported \
             since): #3 c.example.com, #4 d.example.com, #5 e.example.com;"
        ),
        "{}",
        restored.stdout
    );
    let events = app.json(&["audit", "--json", "--limit", "1000"]);
    let restore = events.as_array().expect("events").iter().find(|e| e["action"] == "inventory.restore").cloned();
    let restore_id = restore.as_ref().and_then(|e| e["id"].as_i64()).unwrap_or_else(|| panic!("{events}"));
    assert!(
        restore_id > before,
        "the restore's event ({restore_id}) comes after every event the replaced log had ({before})"
    );
    let next = issue("f.example.com");
    assert!(next.contains("issued certificate #6 (order #6)"), "{next}");
    assert!(max_event(&app) > restore_id);
    let listed = app.json(&["list", "--json"]);
    let ids: Vec<i64> = listed.as_array().expect("array").iter().filter_map(|c| c["id"].as_i64()).collect();
    assert_eq!(ids.len(), 3, "{listed}");
    assert!(ids.contains(&1) && ids.contains(&2) && ids.contains(&6), "{ids:?}");
}
