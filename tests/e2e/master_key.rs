//! `certhost master-key rotate`: everything sealed moves to the new key in one step, the old
//! key opens nothing afterwards, a running `serve` stops it, and a rotation cut short between
//! its commit and the key file's rename is finished by the next command.

use std::io::{BufRead, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::helpers::{App, Run, certhost_bin, local_ca_lab};

const TOKEN: &str = "tok-S3CRET-71c0de42";

/// local-ca's `lab` account and profile, plus account `cached` on the cache script with a
/// sensitive `token` set with `certhost secret set` (run with `key`: `None` = the key file).
fn lab(app: &App, key: Option<&str>) -> String {
    let (config, _) = local_ca_lab(app, "");
    let mut file = std::fs::OpenOptions::new().append(true).open(&config).expect("config");
    writeln!(
        file,
        "[accounts.cached]\nconnector = \"{}\"\nparams.token = {{ sensitive = true, required = true }}",
        crate::python::fixture("cache_ops.py").display()
    )
    .expect("append");
    let profiles = config.parent().expect("conf").join("profiles");
    std::fs::write(
        profiles.join("cached.toml"),
        "accounts = [\"cached\"]\n[params]\nops = { dynamic = true, required = true, sensitive = true }\n",
    )
    .expect("profile");
    let config = config.display().to_string();
    let mut cmd = command(app, key);
    let mut child = cmd
        .args(["--config", &config, "secret", "set", "cached", "token"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("secret set");
    child.stdin.take().expect("stdin").write_all(TOKEN.as_bytes()).expect("write");
    assert!(child.wait().expect("wait").success());
    config
}

fn command(app: &App, key: Option<&str>) -> Command {
    let mut cmd = Command::new(certhost_bin());
    cmd.env("CERTHOST_DATA_DIR", app.data_dir()).env_remove("RUST_LOG").env_remove("CERTHOST_NEW_MASTER_KEY");
    match key {
        Some(k) => cmd.env("CERTHOST_MASTER_KEY", k),
        None => cmd.env_remove("CERTHOST_MASTER_KEY"),
    };
    cmd
}

fn run(app: &App, key: Option<&str>, new: Option<&str>, args: &[&str]) -> Run {
    let mut cmd = command(app, key);
    if let Some(n) = new {
        cmd.env("CERTHOST_NEW_MASTER_KEY", n);
    }
    let out = cmd.args(args).output().expect("run certhost");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// What the cache script answered: its `reason`, the ops' results.
fn cache_ops(app: &App, key: Option<&str>, config: &str, ops: &str) -> String {
    let r = run(
        app,
        key,
        None,
        &[
            "--config",
            config,
            "issue",
            "--profile",
            "cached",
            "--cn",
            "c.example.com",
            "--param",
            &format!("ops={ops}"),
        ],
    );
    assert_eq!(r.code, 1, "the script answers rejected\n{}{}", r.stdout, r.stderr);
    r.stderr
}

/// The stored private key of certificate `id`, as `show --out` writes it.
fn key_pem(app: &App, key: Option<&str>, id: &str, out: &Path) -> String {
    let _ = std::fs::remove_dir_all(out);
    run(app, key, None, &["show", id, "--out", out.to_str().expect("utf8")]).ok();
    std::fs::read_to_string(out.join("key.pem")).expect("key.pem")
}

fn new_key() -> String {
    use base64::Engine;
    let bytes = ring::digest::digest(&ring::digest::SHA256, format!("{:?}", std::time::Instant::now()).as_bytes());
    base64::engine::general_purpose::STANDARD.encode(bytes.as_ref())
}

#[test]
fn rotate_with_the_key_in_the_environment_moves_everything_and_the_old_key_opens_nothing() {
    let app = App::new();
    let old = app.master_key.clone();
    let config = lab(&app, Some(&old));
    run(&app, Some(&old), None, &["--config", &config, "issue", "--profile", "lab", "--cn", "a.example.com"]).ok();
    let before = key_pem(&app, Some(&old), "1", &app.path("before"));
    let said = cache_ops(&app, Some(&old), &config, r#"[["set","k","value",0],["arg","token"]]"#);
    assert!(said.contains(&format!("[null, {}]", TOKEN.len())), "{said}");

    // A running serve has the directory open: refused, nothing changed.
    let mut serve = command(&app, Some(&old))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve");
    let mut line = String::new();
    std::io::BufReader::new(serve.stdout.take().expect("stdout")).read_line(&mut line).expect("listening");
    let new = new_key();
    let err = run(&app, Some(&old), Some(&new), &["master-key", "rotate"]).fails(1).to_owned();
    assert!(err.contains("another certhost process has it open"), "{err}");
    run(&app, Some(&old), None, &["list"]).ok();
    let _ = serve.kill();
    let _ = serve.wait();

    // With CERTHOST_MASTER_KEY set the new key has to come from the operator.
    let err = run(&app, Some(&old), None, &["master-key", "rotate"]).fails(1).to_owned();
    assert!(err.contains("CERTHOST_NEW_MASTER_KEY"), "{err}");
    let err = run(&app, Some(&old), Some("c2hvcnQ="), &["master-key", "rotate"]).fails(1).to_owned();
    assert!(err.contains("CERTHOST_NEW_MASTER_KEY") && err.contains("base64 of exactly 32 bytes"), "{err}");
    let err = run(&app, Some(&old), Some(&old), &["master-key", "rotate"]).fails(1).to_owned();
    assert!(err.contains("is the one the inventory is sealed under"), "{err}");
    run(&app, Some(&old), None, &["list"]).ok();

    let r = run(&app, Some(&old), Some(&new), &["master-key", "rotate"]);
    let out = r.ok().to_owned();
    // The certificate's key and the rejected order's.
    assert!(out.contains("2 private keys, 1 secret and 1 connector cache entry"), "{out}");
    assert!(out.contains("set CERTHOST_MASTER_KEY"), "{out}");
    for text in [&r.stdout, &r.stderr] {
        assert!(!text.contains(&new) && !text.contains(&old), "a master key printed: {text}");
    }

    let err = run(&app, Some(&old), None, &["list"]).fails(1).to_owned();
    assert!(err.contains("master key does not match"), "{err}");
    assert_eq!(key_pem(&app, Some(&new), "1", &app.path("after")), before, "the key opens under the new key");
    let said = cache_ops(&app, Some(&new), &config, r#"[["get","k"],["arg","token"]]"#);
    assert!(said.contains(&format!("[5, {}]", TOKEN.len())), "the cache and the secret open: {said}");
    let audit = run(&app, Some(&new), None, &["audit", "--json"]).ok().to_owned();
    assert!(audit.contains("master_key.rotate"), "{audit}");
}

#[test]
fn rotate_with_the_key_file_replaces_it_and_a_rotation_cut_short_is_finished_by_the_next_command() {
    let app = App::new();
    let config = lab(&app, None);
    run(&app, None, None, &["--config", &config, "issue", "--profile", "lab", "--cn", "a.example.com"]).ok();
    let before = key_pem(&app, None, "1", &app.path("before"));
    let key_file = app.data_dir().join("master.key");
    let staged = app.data_dir().join("master.key.new");
    let old = std::fs::read_to_string(&key_file).expect("master.key");

    let out = run(&app, None, None, &["master-key", "rotate"]).ok().to_owned();
    assert!(
        out.contains("1 private key, 1 secret and 0 connector cache entries") && out.contains("back it up now"),
        "{out}"
    );
    let new = std::fs::read_to_string(&key_file).expect("master.key");
    assert_ne!(new.trim(), old.trim());
    assert!(!out.contains(new.trim()), "the new key is not printed");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&key_file).expect("meta").permissions().mode() & 0o777, 0o600);
    assert!(!staged.exists(), "nothing staged is left");
    assert_eq!(key_pem(&app, None, "1", &app.path("after")), before);
    let err = run(&app, Some(old.trim()), None, &["list"]).fails(1).to_owned();
    assert!(err.contains("master key does not match"), "{err}");

    // The state a crash after the commit leaves: the old key in master.key, the new one staged.
    std::fs::write(&staged, &new).expect("staged");
    std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    std::fs::write(&key_file, &old).expect("old key back");
    // Several commands starting at once (serve and a cron job after a reboot): one finishes
    // the rename, and the others open with the key it put in place (review of stop 35).
    let started: Vec<_> = (0..6)
        .map(|_| command(&app, None).arg("list").stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("list"))
        .collect();
    let mut finished = 0;
    for child in started {
        let out = child.wait_with_output().expect("wait");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        finished += usize::from(stderr.contains("finished an interrupted master-key rotation"));
    }
    assert_eq!(finished, 1, "one of them finished it");
    assert_eq!(std::fs::read_to_string(&key_file).expect("master.key"), new);
    assert!(!staged.exists());

    // A crash before the commit leaves a staged key nothing is sealed under: ignored, and
    // the next rotation replaces it.
    std::fs::write(&staged, new_key()).expect("stale");
    std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    run(&app, None, None, &["list"]).ok();
    assert_eq!(std::fs::read_to_string(&key_file).expect("master.key"), new);
    run(&app, None, None, &["master-key", "rotate"]).ok();
    assert!(!staged.exists());
    assert_eq!(key_pem(&app, None, "1", &app.path("again")), before);
}
