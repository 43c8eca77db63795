//! Python script connectors: the Avi contract, hostile scripts, and the pinned interpreter.
//! Each test drives real worker processes of the real `certhost` binary.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use certhost::connector::cache::AccountCache;
use certhost::connector::python::PythonConnector;
use certhost::connector::{Args, CertificateRequest, Connector, ConnectorError, Disposition, Limits};
use certhost::csr::{CsrParams, San, Subject};
use certhost::key::KeyType;

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/python").join(name)
}

/// The interpreter certhost is built against (host/build.rs: `PYO3_PYTHON`, else `python3` on
/// PATH), as pyo3 resolved it.
const PYTHON: &str = env!("CERTHOST_PYTHON_EXECUTABLE");

fn python(args: &[&str]) -> String {
    let out = std::process::Command::new(PYTHON).args(args).output().expect("run the pinned python");
    assert!(out.status.success(), "{PYTHON} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn limits(timeout_s: u64, memory_mib: u64) -> Limits {
    Limits { timeout: Duration::from_secs(timeout_s), memory_bytes: memory_mib * 1024 * 1024, ..Limits::default() }
}

async fn load(name: &str, limits: Limits) -> Result<PythonConnector, ConnectorError> {
    load_path(&fixture(name), limits).await
}

/// `source` written as NAME.py in a directory of its own (kept alive with the connector) and
/// loaded, for a test whose script is a few lines.
async fn load_source(name: &str, source: &str) -> (tempfile::TempDir, PythonConnector) {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join(format!("{name}.py"));
    std::fs::write(&script, source).expect("script");
    let c = load_path(&script, limits(20, 512)).await.expect("loads");
    (dir, c)
}

/// A script written by the test, loaded as an account's connector.
async fn load_path(script: &Path, limits: Limits) -> Result<PythonConnector, ConnectorError> {
    let name = script.file_stem().and_then(|s| s.to_str()).unwrap_or("script").to_owned();
    PythonConnector::load(script, Path::new(crate::helpers::certhost_bin()), limits, AccountCache::in_memory(&name))
        .await
}

fn request() -> CertificateRequest {
    let params = CsrParams {
        subject: Subject { common_name: Some("www.example.com".into()), ..Subject::default() },
        sans: vec![San::Dns("www.example.com".into())],
        key_type: KeyType::EcP256,
        hash: None,
    };
    let (_, csr) = params.generate().expect("csr");
    CertificateRequest { csr_pem: csr.pem, common_name: "www.example.com".into(), request_id: "req-1".into() }
}

/// A CA on disk for the scripted connector.
pub struct FileCa {
    pub dir: tempfile::TempDir,
}

impl FileCa {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tmp");
        let ca = certhost::root_ca::create("Script Test CA", 30).expect("ca");
        std::fs::write(dir.path().join("ca.pem"), &ca.certificate_pem).expect("write");
        std::fs::write(dir.path().join("ca.key"), ca.key.to_pem().as_bytes()).expect("write");
        Self { dir }
    }

    pub fn args(&self, mode: &str) -> Args {
        let mut a = Args::new();
        a.insert("mode", mode);
        a.insert("ca_cert", self.dir.path().join("ca.pem").display().to_string());
        a.insert("ca_key", self.dir.path().join("ca.key").display().to_string());
        a.insert("state_dir", self.dir.path().display().to_string());
        a
    }
}

/// The error of loading `name` or, when it loads, of its certificate_request with `args`.
async fn error_of(name: &str, l: Limits, args: Args) -> String {
    let c = match load(name, l).await {
        Ok(c) => c,
        Err(e) => return e.to_string(),
    };
    match c.certificate_request(&request(), &args).await {
        Ok(d) => panic!("{name} should fail, got {d:?}"),
        Err(e) => e.to_string(),
    }
}

const SECRET: &str = "k3y-5ecret-value-991";

fn secret_args() -> Args {
    let mut args = Args::new();
    args.insert_sensitive("api_key", SECRET);
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_scripts_each_get_a_clear_error_while_another_account_keeps_working() {
    let ca = FileCa::new();
    let good = load("scripted_ca.py", limits(20, 512)).await.expect("good script loads");
    let fixtures = fixture("hostile").display().to_string();
    let import_error = format!(
        "script import_error: misconfigured: cannot load {fixtures}/import_error.py: \
         ModuleNotFoundError: No module named 'module_that_does_not_exist' (line 1); install the package that \
         provides module_that_does_not_exist into the Python certhost runs scripts with: {} -m pip install PACKAGE",
        env!("CERTHOST_PYTHON_EXECUTABLE")
    );
    let cases: Vec<(&str, Limits, &str)> = vec![
        ("hostile/infinite_loop.py", limits(2, 512), "script infinite_loop: timed out after 2s"),
        ("hostile/ignores_sigterm.py", limits(2, 512), "script ignores_sigterm: timed out after 2s"),
        (
            "hostile/memory_bomb.py",
            limits(20, 256),
            "script memory_bomb: exceeded its 256 MiB memory limit (the account's memory_mib)",
        ),
        (
            "hostile/os_exit.py",
            limits(20, 512),
            "script os_exit: the script's worker exited with code 3 during the call of certificate_request; stderr: about to vanish",
        ),
        (
            // Its traceback took 12 s to read (a source line per frame), past the deadline.
            "hostile/deep_recursion.py",
            limits(10, 512),
            "script deep_recursion: raised RecursionError: maximum recursion depth exceeded (line 8 of \
             deep_recursion.py, in down)",
        ),
        (
            "hostile/many_threads.py",
            limits(20, 256),
            "script many_threads: raised RuntimeError: can't start new thread (line 8 of many_threads.py, in \
             certificate_request); the worker is capped at 256 MiB of address space (the account's memory_mib), each \
             thread's stack included: raise memory_mib",
        ),
        (
            "hostile/fd2_then_exit.py",
            limits(20, 512),
            "script fd2_then_exit: exited with code 1; stderr: Could not open file or URI for loading CA private key / \
             written to fd 2",
        ),
        (
            "hostile/sys_exit.py",
            limits(20, 512),
            "script sys_exit: exited with code 2; stderr: CA said: quota exceeded for www.example.com",
        ),
        (
            "hostile/raises.py",
            limits(20, 512),
            "script raises: raised ValueError: the CA returned HTTP 500 (line 2 of raises.py, in certificate_request)",
        ),
        (
            "hostile/returns_none.py",
            limits(20, 512),
            "script returns_none: returned None instead of a certificate; stdout ended: forgot to return",
        ),
        (
            "hostile/returns_deeply_nested.py",
            limits(20, 512),
            "script returns_deeply_nested: the script's answer cannot be sent to the host: it is nested deeper than \
             Python's recursion limit",
        ),
        (
            "hostile/returns_garbage.py",
            limits(20, 512),
            "script returns_garbage: returned a value of type int instead of a certificate (a PEM string or a status dict)",
        ),
        (
            "hostile/returns_not_pem.py",
            limits(20, 512),
            "script returns_not_pem: returned a string that is not a PEM certificate",
        ),
        (
            "hostile/returns_empty_stdout.py",
            limits(20, 512),
            "script returns_empty_stdout: returned an empty string instead of a PEM certificate; stderr: x509: Could \
             not open file or URI for loading CA key; stdout ended: signing www.example.com",
        ),
        (
            "hostile/returns_bytes_not_pem.py",
            limits(20, 512),
            "script returns_bytes_not_pem: returned bytes that are not a PEM certificate",
        ),
        (
            "hostile/returns_binary.py",
            limits(20, 512),
            "script returns_binary: returned bytes that are not a PEM certificate (not UTF-8 text)",
        ),
        ("hostile/import_error.py", limits(20, 512), &import_error),
        (
            "hostile/prints_secret.py",
            limits(20, 512),
            "script prints_secret: raised RuntimeError: auth failed with *** (line 8 of prints_secret.py, in \
             certificate_request); stderr: debug: key=***; stdout ended: using key ***",
        ),
    ];
    for (name, l, expected) in cases {
        let (req, good_args) = (request(), ca.args("good"));
        let mut bad_args = secret_args();
        bad_args.insert("mode", "hang");
        bad_args.insert("pid_file", ca.dir.path().join("pid").display().to_string());
        let (bad, ok) = tokio::join!(error_of(name, l, bad_args), good.certificate_request(&req, &good_args));
        assert_eq!(bad, expected, "{name}");
        assert!(matches!(ok, Ok(Disposition::Issued { .. })), "the good account kept working during {name}: {ok:?}");
    }
}

#[tokio::test]
async fn after_a_timeout_the_next_call_gets_a_fresh_worker() {
    let ca = FileCa::new();
    let c = load("scripted_ca.py", limits(2, 512)).await.expect("loads");
    let err = c.certificate_request(&request(), &ca.args("block")).await.expect_err("blocks");
    assert_eq!(err.to_string(), "script scripted_ca: timed out after 2s");
    let again = c.certificate_request(&request(), &ca.args("good")).await.expect("fresh worker");
    assert!(matches!(again, Disposition::Issued { .. }));
}

#[tokio::test]
async fn scripts_that_do_not_import_are_refused_at_load_with_the_python_error_and_line() {
    let err = load("hostile/syntax_error.py", limits(20, 512)).await.err().expect("refused").to_string();
    assert!(
        err.starts_with("script syntax_error: misconfigured: cannot load")
            && err.contains("SyntaxError")
            && err.contains("(line 2)"),
        "{err}"
    );
    let err = load("hostile/import_error.py", limits(20, 512)).await.err().expect("refused").to_string();
    assert!(err.contains("ModuleNotFoundError: No module named 'module_that_does_not_exist' (line 1)"), "{err}");
    let err = load("hostile/no_entry_point.py", limits(20, 512)).await.err().expect("refused").to_string();
    assert!(err.contains("defines no certificate_request(csr, common_name, args_dict)"), "{err}");
    let err = load("does_not_exist.py", limits(20, 512)).await.err().expect("refused").to_string();
    assert!(err.contains("does not exist"), "{err}");
}

#[tokio::test]
async fn sensitive_values_printed_by_a_script_are_redacted_from_its_error() {
    let c = load("hostile/prints_secret.py", limits(20, 512)).await.expect("loads");
    let err = c.certificate_request(&request(), &secret_args()).await.expect_err("fails").to_string();
    assert!(!err.contains(SECRET), "{err}");
    assert!(err.contains("raised RuntimeError: auth failed with ***") && err.contains("debug: key=***"), "{err}");
}

/// Regression (review of stop 32): one worker serves every profile of its account, so a
/// script's module state (an Avi session) kept one profile's password and printed it in
/// another profile's call, whose error was redacted only of its own values; a thread printing
/// it two calls later reached the log. A worker now redacts every value it was ever given.
#[tokio::test]
async fn a_value_from_an_earlier_call_is_redacted_from_a_later_call_of_another_profile() {
    let c = load("hostile/keeps_session.py", limits(20, 512)).await.expect("loads");
    let mut first = Args::new();
    first.insert_sensitive("api_password", SECRET);
    assert_eq!(
        c.certificate_request(&request(), &first).await.expect("first call"),
        Disposition::Rejected { reason: "logged in".into() }
    );
    // Another profile given the same value (under another name) shares the worker: what the
    // first call left is redacted from its error.
    let mut second = Args::new();
    second.insert_sensitive("profile_token", SECRET);
    let err = c.certificate_request(&request(), &second).await.expect_err("second call fails").to_string();
    assert!(err.contains("stale session {'password': '***'}"), "{err}");
    assert!(!err.contains(SECRET), "{err}");
    // The thread's late line went to the worker's stderr, redacted there too.
    tokio::time::sleep(Duration::from_millis(600)).await;
    // A call not given that value runs in a fresh worker (diff review of stop 40): the session,
    // and the value in it, are not there at all.
    let err = c.certificate_request(&request(), &Args::new()).await.expect_err("third call fails").to_string();
    assert!(err.contains("stale session {}"), "{err}");
    assert!(!err.contains(SECRET), "{err}");
}

/// Hostile-script review of stop 40: the worker redacts every sensitive value it was given,
/// whichever call gave it, so a script echoing its input ("unknown mode 4821") answered a
/// requester's guess of another profile's short secret with `***`. A call whose input holds a
/// value of another call gets a worker of its own, which redacts only its own values.
#[tokio::test]
async fn redaction_tells_no_requester_that_a_guess_is_another_calls_secret() {
    let (_dir, c) = load_source(
        "echo_mode",
        "def certificate_request(csr, common_name, args_dict):\n    \
         return {'status': 'rejected', 'reason': 'unknown mode ' + args_dict.get('mode', '')}\n",
    )
    .await;
    let mut other_profile = Args::new();
    other_profile.insert_sensitive("pin", "4821");
    other_profile.insert("mode", "x");
    c.certificate_request(&request(), &other_profile).await.expect("answers");
    for guess in ["4820", "4821", "4822"] {
        let mut requester = Args::new();
        requester.insert("mode", guess);
        let d = c.certificate_request(&request(), &requester).await.expect("answers");
        assert_eq!(d, Disposition::Rejected { reason: format!("unknown mode {guess}") }, "{guess}");
    }
    // The call's own sensitive values stay redacted from its own output.
    let mut own = Args::new();
    own.insert_sensitive("pin", "4821");
    own.insert("mode", "4821");
    let d = c.certificate_request(&request(), &own).await.expect("answers");
    assert_eq!(d, Disposition::Rejected { reason: "unknown mode ***".into() });
}

/// Regression (review of stop 32): a script that debug-logged the CA's answer in a loop made
/// a reply past the host's 32 MiB limit, and the certificate the CA had issued was lost; what
/// it printed was held whole in the worker. Log text is capped per call, printed text kept
/// as its tail.
#[tokio::test]
async fn a_script_that_logs_without_end_after_issuing_keeps_its_certificate() {
    let ca = FileCa::new();
    let c = load("hostile/logs_after_issuing.py", limits(120, 512)).await.expect("loads");
    let d = c.certificate_request(&request(), &ca.args("good")).await.expect("issued");
    assert!(matches!(d, Disposition::Issued { .. }), "{d:?}");
}

/// Regression (review of stop 32): after a MemoryError the worker was kept, and a script that
/// holds what it allocated failed every later call of its account until a restart.
#[tokio::test]
async fn a_worker_that_ran_out_of_memory_is_replaced_for_the_next_call() {
    let c = load("hostile/grows_each_call.py", limits(20, 256)).await.expect("loads");
    let pid_of = |d: Disposition| match d {
        Disposition::Rejected { reason } => reason,
        other => panic!("{other:?}"),
    };
    let mut pid = Args::new();
    pid.insert("mode", "pid");
    let before = pid_of(c.certificate_request(&request(), &pid).await.expect("pid"));
    let err = c.certificate_request(&request(), &Args::new()).await.expect_err("bomb");
    assert!(matches!(err, ConnectorError::MemoryExceeded { .. }), "{err}");
    let after = pid_of(c.certificate_request(&request(), &pid).await.expect("a fresh worker answers"));
    assert_ne!(before, after, "the full worker was replaced");
}

#[tokio::test]
async fn module_state_and_the_host_cache_persist_between_calls_of_one_account() {
    let c = load("stateful.py", limits(20, 512)).await.expect("loads");
    let first = c.certificate_request(&request(), &Args::new()).await.expect("call");
    let second = c.certificate_request(&request(), &Args::new()).await.expect("call");
    assert_eq!(first, Disposition::Rejected { reason: "calls=1 token=token-1 cached=None".into() });
    assert_eq!(second, Disposition::Rejected { reason: "calls=2 token=token-1 cached=hello".into() });
}

/// A local package named `name`, built by an in-tree PEP 517 backend (no build requirements,
/// so `pip install DIR` needs no network).
fn write_package(dir: &Path, name: &str) {
    std::fs::write(
        dir.join("pyproject.toml"),
        "[build-system]\nrequires = []\nbuild-backend = \"backend\"\nbackend-path = [\".\"]\n",
    )
    .expect("write");
    std::fs::write(dir.join(format!("{name}.py")), "PROBE = True\n").expect("write");
    std::fs::write(
        dir.join("backend.py"),
        format!(
            r#"import base64, hashlib, os, zipfile
NAME, VERSION = "{name}", "1.0"
DIST = NAME + "-" + VERSION + ".dist-info"

def get_requires_for_build_wheel(config_settings=None):
    return []

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    with open(NAME + ".py", "rb") as f:
        files = {{NAME + ".py": f.read()}}
    files[DIST + "/METADATA"] = ("Metadata-Version: 2.1\nName: " + NAME + "\nVersion: " + VERSION + "\n").encode()
    files[DIST + "/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: certhost-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append("%s,sha256=%s,%d" % (path, digest, len(data)))
    record.append(DIST + "/RECORD,,")
    files[DIST + "/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel = NAME + "-" + VERSION + "-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, wheel), "w") as z:
        for path, data in files.items():
            z.writestr(path, data)
    return wheel
"#
        ),
    )
    .expect("write");
}

/// Uninstalls the probe package however the test ends.
struct Installed(String);

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = std::process::Command::new(PYTHON).args(["-m", "pip", "uninstall", "-y", "-q", &self.0]).output();
    }
}

#[tokio::test]
async fn a_package_installed_the_readme_way_imports_inside_a_script() {
    // README: packages for scripts are installed with `python3 -m pip install NAME` into the
    // interpreter certhost was built against. The worker must import them from there, not
    // from another libpython's site-packages (Debian's /usr/lib/python3).
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_nanos();
    let name = format!("certhost_probe_{}_{nanos}", std::process::id());
    let package = tempfile::tempdir().expect("tmp");
    write_package(package.path(), &name);
    let out = std::process::Command::new(PYTHON)
        .args(["-m", "pip", "install", "-q"])
        .arg(package.path())
        .output()
        .expect("pip");
    let _installed = Installed(name.clone());
    assert!(out.status.success(), "pip install: {}", String::from_utf8_lossy(&out.stderr));
    let prefix = python(&["-c", "import sys; print(sys.prefix)"]);
    let site_dirs: Vec<String> =
        python(&["-c", "import site; print('\\n'.join(site.getsitepackages()))"]).lines().map(str::to_owned).collect();

    // The script lives elsewhere: its own directory is on sys.path.
    let scripts = tempfile::tempdir().expect("tmp");
    let script = scripts.path().join("uses_probe.py");
    std::fs::write(
        &script,
        format!(
            "import json\nimport requests\nimport {name}\n\n\ndef certificate_request(csr, common_name, args_dict):\n    \
             return {{\"status\": \"rejected\", \"reason\": json.dumps([{name}.__file__, requests.__file__])}}\n"
        ),
    )
    .expect("write");
    let c = load_path(&script, limits(20, 512)).await.expect("the script imports the package");
    let Disposition::Rejected { reason } = c.certificate_request(&request(), &Args::new()).await.expect("call") else {
        panic!("unexpected disposition")
    };
    let [probe, requests]: [String; 2] = serde_json::from_str(&reason).expect("json");
    let in_site = |f: &str| site_dirs.iter().any(|d| f.starts_with(&format!("{d}/")));
    assert!(probe.starts_with(&format!("{prefix}/")) && in_site(&probe), "{probe} (prefix {prefix}, {site_dirs:?})");
    assert!(!probe.starts_with("/usr/lib/python3"), "{probe}");
    assert!(in_site(&requests), "requests from {requests}, not from {site_dirs:?} of {PYTHON}");
}

fn send_frame(w: &mut impl Write, v: &serde_json::Value) {
    let bytes = v.to_string().into_bytes();
    w.write_all(&(bytes.len() as u32).to_be_bytes()).expect("write");
    w.write_all(&bytes).expect("write");
    w.flush().expect("flush");
}

fn read_frame(r: &mut impl Read) -> serde_json::Value {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).expect("reply");
    let mut buf = vec![0u8; u32::from_be_bytes(len) as usize];
    r.read_exact(&mut buf).expect("reply");
    serde_json::from_slice(&buf).expect("json")
}

#[test]
fn a_venv_s_site_packages_are_on_the_path_of_workers_of_a_certhost_built_from_it() {
    // Built from a venv's python, certhost bakes in what site_dirs.py prints (build.rs) and
    // starts workers with PYTHONHOME = the base prefix: that alone would hide the venv's
    // packages. Here: a real venv, site_dirs.py run with it, and a worker started as the host
    // starts one of such a build.
    let dir = tempfile::tempdir().expect("tmp");
    let venv = dir.path().join("venv");
    python(&["-m", "venv", "--without-pip", venv.to_str().expect("utf8")]);
    let site_dirs_py = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/connector/python/site_dirs.py");
    assert_eq!(python(&[site_dirs_py.to_str().expect("utf8")]), "", "a plain interpreter has no extra site dirs");
    let out = std::process::Command::new(venv.join("bin/python3")).arg(&site_dirs_py).output().expect("venv python");
    let site_dirs = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let venv_real = venv.canonicalize().expect("venv");
    let site = PathBuf::from(site_dirs.split(':').next().expect("a dir"));
    assert!(site.starts_with(&venv) || site.starts_with(&venv_real), "{site_dirs} should be the venv's site-packages");
    std::fs::write(site.join("venv_only_probe.py"), "PROBE = True\n").expect("write");
    let script = dir.path().join("uses_venv.py");
    std::fs::write(
        &script,
        "import sys\nimport venv_only_probe\n\n\ndef certificate_request(csr, common_name, args_dict):\n    \
         return {\"status\": \"rejected\", \"reason\": venv_only_probe.__file__}\n",
    )
    .expect("write");

    let mut worker = std::process::Command::new(crate::helpers::certhost_bin())
        .args([certhost::connector::python::WORKER_SUBCOMMAND, "--memory-bytes", "536870912"])
        .env("PYTHONHOME", env!("CERTHOST_PYTHON_HOME"))
        .env("PYTHONNOUSERSITE", "1")
        .env(certhost::connector::python::SITE_DIRS_ENV, &site_dirs)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("worker");
    let (mut to, mut from) = (worker.stdin.take().expect("stdin"), worker.stdout.take().expect("stdout"));
    send_frame(&mut to, &serde_json::json!({"op": "load", "path": script}));
    let loaded = read_frame(&mut from);
    assert_eq!(loaded["kind"], "ok", "{loaded}");
    let call = serde_json::json!({"op": "call", "function": "certificate_request", "argv": ["csr", "cn", {}], "request_id": null});
    send_frame(&mut to, &call);
    let reply = read_frame(&mut from);
    let file = PathBuf::from(reply["value"]["reason"].as_str().expect("reason"));
    assert_eq!(file.parent(), Some(site.as_path()), "{reply}");
    drop(to);
    assert!(worker.wait().expect("wait").success());
}

#[tokio::test]
async fn a_script_that_ignores_sigterm_is_killed_with_sigkill_at_its_deadline() {
    let dir = tempfile::tempdir().expect("tmp");
    let pid_file = dir.path().join("pid");
    let c = load("hostile/ignores_sigterm.py", limits(2, 512)).await.expect("loads");
    let mut hang = Args::new();
    hang.insert("mode", "hang");
    hang.insert("pid_file", pid_file.display().to_string());
    let started = Instant::now();
    let err = c.certificate_request(&request(), &hang).await.expect_err("killed");
    let took = started.elapsed();
    assert_eq!(err.to_string(), "script ignores_sigterm: timed out after 2s");
    // The deadline, then SIGTERM (ignored) and its grace, then SIGKILL.
    assert!(took >= Duration::from_millis(2400) && took < Duration::from_secs(8), "took {took:?}");
    let pid = std::fs::read_to_string(&pid_file).expect("pid written");
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "worker {pid} is still there");
    let again = c.certificate_request(&request(), &Args::new()).await.expect("a fresh worker answers");
    let Disposition::Issued { ca_order_id: Some(new_pid), .. } = again else { panic!("{again:?}") };
    assert_ne!(new_pid, pid, "a new worker");
}

#[tokio::test]
async fn scripts_returning_bytes_holding_pem_are_accepted_like_a_str() {
    let c = load("returns_bytes.py", limits(20, 512)).await.expect("loads");
    let pem = std::fs::read_to_string(fixture("fixed_cert.pem")).expect("pem");
    let got = c.certificate_request(&request(), &Args::new()).await.expect("issued");
    assert_eq!(got, Disposition::Issued { certificate: pem, chain: vec![], ca_order_id: None });
}

/// A unique, multi-line sensitive value shaped like a PEM private key.
fn pem_like_secret() -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut bytes = [0u8; 240];
    rand::thread_rng().fill_bytes(&mut bytes);
    let body = base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes);
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for chunk in body.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(chunk).expect("ascii"));
        pem.push('\n');
    }
    // A short last line, as PEM bodies often have.
    let mut tail = [0u8; 6];
    rand::thread_rng().fill_bytes(&mut tail);
    pem.push_str(&base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tail)[..6]);
    pem.push_str("\n-----END PRIVATE KEY-----\n");
    pem
}

/// Panics when any line of `secret`, or any 12 characters of a long line, appear in `text`.
fn assert_no_piece(secret: &str, text: &str, what: &str) {
    for line in secret.lines().map(str::trim) {
        let pieces: Vec<&str> = if line.starts_with("-----") || line.len() < 12 {
            vec![line]
        } else {
            (0..=line.len() - 12).map(|i| &line[i..i + 12]).collect()
        };
        for piece in pieces {
            if let Some(i) = text.find(piece) {
                panic!(
                    "{piece:?} of the sensitive value leaked into {what}: ...{}...",
                    &text[i.saturating_sub(200)..(i + 100).min(text.len())]
                );
            }
        }
    }
}

#[tokio::test]
async fn no_line_of_a_multi_line_sensitive_value_reaches_an_error_or_a_log() {
    let key = pem_like_secret();
    let c = load("hostile/leaks_multiline_secret.py", limits(20, 512)).await.expect("loads");
    let mut args = Args::new();
    args.insert_sensitive("ca_private_key", key.clone());
    let err = c.certificate_request(&request(), &args).await.expect_err("raises").to_string();
    assert_no_piece(&key, &err, "the error");
    assert!(err.starts_with("script leaks_multiline_secret: raised RuntimeError: xxx"), "{err}");
    assert!(err.contains("***") && err.contains("zzz; stdout ended: …yyy") && err.ends_with("yyy"), "{err}");

    // The logs: through the binary with its own logging (-vv), as leak_hunt reads them (a
    // thread-local tracing subscriber in this shared test binary misses events at random).
    let data = tempfile::tempdir().expect("tmp");
    let script = fixture("hostile/leaks_multiline_secret.py").display().to_string();
    let out = std::process::Command::new(crate::helpers::certhost_bin())
        .args(["-vv", "plugin", "check", &script, "--sensitive-param"])
        .arg(format!("ca_private_key={key}"))
        .env("CERTHOST_DATA_DIR", data.path())
        .output()
        .expect("certhost");
    let transcript = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_no_piece(&key, &transcript, "plugin check's output and log");
    for logged in ["raised RuntimeError: xxx", "stdout: ***", "stderr: ***", "key: ***"] {
        assert!(transcript.contains(logged), "{logged:?} expected in {transcript}");
    }
}

/// Walkthrough of stop 46: a script printing past what the worker keeps had only its last
/// lines logged, with nothing saying that more came before them.
#[test]
fn a_script_printing_past_what_is_kept_is_logged_with_how_much_came_before() {
    let dir = tempfile::tempdir().expect("tmp");
    let script = dir.path().join("chatty.py");
    std::fs::write(
        &script,
        "def certificate_request(csr, common_name, args_dict):\n    for i in range(30000):\n        \
         print('progress line', i)\n    return {'status': 'rejected', 'reason': 'done'}\n",
    )
    .expect("script");
    let out = std::process::Command::new(crate::helpers::certhost_bin())
        .args(["-vv", "plugin", "check"])
        .arg(&script)
        .env("CERTHOST_DATA_DIR", dir.path().join("data"))
        .output()
        .expect("certhost");
    let log = String::from_utf8_lossy(&out.stderr);
    let said = log.lines().find(|l| l.contains("stdout: the script printed")).expect("the cut is said");
    // 30,000 lines of 19–24 characters, the last 64 KiB kept.
    let dropped: u64 =
        said.split("printed ").nth(1).and_then(|t| t.split(' ').next()).and_then(|n| n.parse().ok()).expect("a count");
    assert!((500_000..700_000).contains(&dropped), "{said}");
    assert!(log.contains("stdout: progress line 29999"), "the last line is kept");
    assert!(!log.contains("stdout: progress line 0\n"), "the first is not");
}

fn cache_args(ops: serde_json::Value) -> Args {
    let mut a = Args::new();
    a.insert("ops", ops.to_string());
    a
}

async fn cache_ops(c: &PythonConnector, ops: serde_json::Value) -> serde_json::Value {
    match c.certificate_request(&request(), &cache_args(ops)).await {
        Ok(Disposition::Rejected { reason }) => serde_json::from_str(&reason).expect("json"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn the_script_cache_has_the_rules_of_the_wasm_cache_and_outlives_its_worker() {
    use serde_json::{Value, json};
    let c = load("cache_ops.py", limits(3, 512)).await.expect("loads");
    // ttl 0 (and None) never expire; ttl 1 expires after a second.
    let r = cache_ops(
        &c,
        json!([
            ["set", "forever", "abc", 0],
            ["set", "none", "abcd", null],
            ["set", "soon", "ab", 1],
            ["get", "soon"],
            ["sleep", 1.1],
            ["get", "soon"],
            ["get", "forever"],
            ["get", "none"]
        ]),
    )
    .await;
    assert_eq!(r, json!([null, null, null, 2, null, null, 3, 4]));
    // Values up to 64 KiB and keys up to 1 KiB, counted in UTF-8 bytes; larger ones are ignored.
    let (k1024, k1025) = ("k".repeat(1024), "k".repeat(1025));
    let r = cache_ops(
        &c,
        json!([
            ["set", "max", 65536, 0],
            ["set", "over", 65537, 0],
            ["set", "wide", "é".repeat(32769), 0],
            ["set", k1024, "v", 0],
            ["set", k1025, "v", 0],
            ["get", "max"],
            ["get", "over"],
            ["get", "wide"],
            ["get", k1024],
            ["get", k1025]
        ]),
    )
    .await;
    assert_eq!(r.as_array().expect("list")[5..], [json!(65536), Value::Null, Value::Null, json!(1), Value::Null]);
    // Strings only; ttl in whole seconds, 0..=u32::MAX.
    let r = cache_ops(
        &c,
        json!([
            ["bad_set", "k", 5, 0],
            ["bad_set", 5, "v", 0],
            ["bad_set", "k", "v", -1],
            ["bad_set", "k", "v", "60"],
            ["bad_set", "k", "v", 4_294_967_296u64],
            ["bad_set", "k", "v", 4_294_967_295u64],
            ["bad_set", "k", "v", 0.5]
        ]),
    )
    .await;
    assert_eq!(r, json!(["TypeError", "TypeError", "ValueError", "TypeError", "ValueError", "accepted", "accepted"]));
    // The cache belongs to the account, not to the worker: it survives a worker killed at its deadline.
    let err = c.certificate_request(&request(), &cache_args(json!([["hang"]]))).await.expect_err("killed");
    assert_eq!(err.to_string(), "script cache_ops: timed out after 3s");
    let r = cache_ops(&c, json!([["get", "forever"], ["get", "max"], ["get", "soon"]])).await;
    assert_eq!(r, json!([3, 65536, null]));

    // 256 entries: a new key first purges expired entries, and is ignored while the cache is full.
    let c = load("cache_ops.py", limits(10, 512)).await.expect("loads");
    let r = cache_ops(
        &c,
        json!([
            ["fill", "f", 255, 0],
            ["set", "brief", "b", 1],
            ["set", "extra", "e", 0],
            ["set", "f0", "changed", 0],
            ["get", "extra"],
            ["get", "f0"],
            ["sleep", 1.1],
            ["set", "extra", "e", 0],
            ["get", "extra"],
            ["set", "one_more", "m", 0],
            ["get", "one_more"]
        ]),
    )
    .await;
    assert_eq!(r, json!([null, null, null, null, null, 7, null, null, 1, null, null]));
}

#[tokio::test]
async fn describe_reports_parameters_and_optional_operations() {
    let c = load("scripted_ca.py", limits(20, 512)).await.expect("loads");
    let d = c.describe().await.expect("describe");
    assert_eq!(d.name, "scripted_ca");
    assert_eq!(
        d.operations,
        vec![
            certhost::connector::Operation::Poll,
            certhost::connector::Operation::Revoke,
            certhost::connector::Operation::ListCertificates
        ]
    );
    assert!(d.parameters.iter().any(|p| p.name == "mode" && p.required));
}

fn what(what: &str) -> Args {
    let mut a = Args::new();
    a.insert("what", what);
    a
}

/// Regression: the host read a worker's stderr as UTF-8 lines and stopped at the first byte
/// that was not; the pipe's read end closed, later stderr was lost and the next subprocess a
/// script ran died of SIGPIPE.
#[tokio::test]
async fn a_stderr_line_that_is_not_utf8_leaves_the_worker_s_stderr_working() {
    let c = load("hostile/writes_stderr.py", limits(20, 512)).await.expect("loads");
    let rejected = |r: &str| Disposition::Rejected { reason: r.into() };
    assert_eq!(c.certificate_request(&request(), &what("latin1")).await.expect("latin1"), rejected("latin1 done"));
    let after = c.certificate_request(&request(), &what("subprocess")).await.expect("the subprocess runs");
    assert_eq!(after, rejected("subprocess done"));
    let err = c.certificate_request(&request(), &what("die")).await.expect_err("dies").to_string();
    // (The subprocess's line may arrive after the tail was taken for this call: not checked.)
    assert!(
        err.contains("exited with code 3 during the call of certificate_request; stderr: ")
            && err.ends_with("latin1 \u{fffd}t\u{fffd} / last words"),
        "{err}"
    );
}

/// Regression: a script writing to stderr without newlines grew the host's memory without
/// bound (2.5 GiB in 12 s), one unfinished line. Now a line is cut at 8 KiB.
#[test]
fn a_script_flooding_stderr_without_newlines_does_not_grow_the_host() {
    let data = tempfile::tempdir().expect("tmp");
    let script = fixture("hostile/writes_stderr.py").display().to_string();
    let mut child = std::process::Command::new(crate::helpers::certhost_bin())
        .args(["-vv", "plugin", "check", &script, "--param", "what=flood"])
        .env("CERTHOST_DATA_DIR", data.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("certhost");
    // The host's peak resident memory, read until it exits (the worker is another process).
    let status = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0u64;
    let reader = std::thread::spawn({
        let mut out = child.stderr.take().expect("stderr");
        move || {
            let mut s = Vec::new();
            out.read_to_end(&mut s).expect("read");
            String::from_utf8_lossy(&s).into_owned()
        }
    });
    while child.try_wait().expect("wait").is_none() {
        if let Ok(text) = std::fs::read_to_string(&status) {
            let hwm = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
            peak_kib = peak_kib.max(hwm.unwrap_or(0));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = reader.join().expect("log");
    assert!(peak_kib > 0 && peak_kib < 128 * 1024, "the host peaked at {peak_kib} KiB");
    let cut = log.lines().find(|l| l.contains("stderr: AAAA")).expect("the flood's line is logged");
    assert!(cut.contains(&format!("{} [line cut at 8 KiB]", "A".repeat(100))) && cut.len() < 9 * 1024, "{cut:.200}");
}

/// A configuration with one account `huge` on `hostile/returns_huge.py` and a profile `huge`
/// whose dynamic `what` picks what the script returns. Returns the config path.
fn returns_huge_lab(app: &crate::helpers::App) -> String {
    let conf = app.path("conf");
    std::fs::create_dir_all(conf.join("profiles")).expect("mkdir");
    std::fs::write(
        conf.join("certhost.toml"),
        format!("[accounts.huge]\nconnector = \"{}\"\n", fixture("hostile/returns_huge.py").display()),
    )
    .expect("config");
    std::fs::write(conf.join("profiles/huge.toml"), "accounts = [\"huge\"]\n[params]\nwhat = { dynamic = true }\n")
        .expect("profile");
    conf.join("certhost.toml").display().to_string()
}

/// Regression: a 20 MiB rejection reason came back whole to the client and was written into
/// the append-only audit log; order ids and unknown statuses were kept whole as well.
#[test]
fn huge_values_a_script_returns_are_cut_or_refused_before_they_are_stored() {
    let app = crate::helpers::App::new();
    let config = returns_huge_lab(&app);
    let issue = |what: &str| {
        let r = app.run(&["--config", &config, "issue", "--profile", "huge", "--cn", "a.example.com", "--param", what]);
        let err = r.fails(1).to_owned();
        assert!(err.len() < 6 * 1024, "{} bytes: {:.300}", err.len(), err);
        err
    };
    let err = issue("what=reason");
    assert!(err.contains("no no no") && err.contains(" [cut at 4 KiB]"), "{err}");
    let err = issue("what=order_id");
    assert!(err.contains("script returns_huge: returned an order id longer than 4096 bytes"), "{err}");
    let err = issue("what=status");
    assert!(err.contains("returned an unknown status \"sss") && err.contains(" [cut at 4 KiB]"), "{err:.300}");
    for id in ["1", "2", "3"] {
        let order = app.json(&["--config", &config, "orders", "show", id, "--json"]);
        let error = order["error"].as_str().expect("the order says why");
        // The cut message, with the connector's label and the marker.
        assert!(error.len() <= 4096 + 100, "order {id}: {} bytes", error.len());
    }
    let audit = app.run(&["audit", "--json"]);
    assert!(audit.ok().len() < 64 * 1024, "the audit log holds {} bytes", audit.stdout.len());
}

/// Regression: a returned string over the 32 MiB frame limit ended the worker ("exited with
/// code 70"), and `sys.exit(True)` or `sys.exit(2**70)` gave "bad reply from the worker".
#[tokio::test]
async fn oversized_returns_and_odd_exit_codes_get_a_clear_error() {
    let c = load("hostile/returns_huge.py", limits(20, 512)).await.expect("loads");
    let poll = |id: &'static str| {
        let c = &c;
        async move { c.poll(id, &Args::new()).await.expect_err("fails").to_string() }
    };
    assert_eq!(poll("string").await, "script returns_huge: returned a value larger than 32 MiB");
    assert_eq!(poll("exit_true").await, "script returns_huge: exited with code 1");
    assert_eq!(poll("exit_huge").await, "script returns_huge: exited with code 1");
}

/// The state of process `pid` ('R', 'S', 'Z', ...), or `None` once it is gone.
fn process_state(pid: &str) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).ok()?;
    stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next())
}

/// Waits up to `within` for process `pid` to end (gone, or a zombie nobody reaped yet). A
/// multi-threaded process (a worker has a thread watching its parent) shows its leader as a
/// zombie while its other threads are still being torn down, before its parent can see it
/// exit: it has ended once no other thread is left.
fn ends_within(pid: &str, within: Duration) -> bool {
    let pid = pid.trim();
    let threads = || std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, Iterator::count);
    let started = Instant::now();
    while started.elapsed() < within {
        match process_state(pid) {
            None => return true,
            Some('Z') if threads() <= 1 => return true,
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn call_args(n: u32, fork: bool, child_pid_file: &Path) -> Args {
    let mut a = Args::new();
    a.insert("n", n.to_string());
    a.insert("fork", if fork { "yes" } else { "no" });
    a.insert("child_pid_file", child_pid_file.display().to_string());
    a
}

/// Regression: a script that forked and let the child return too had the child answer on the
/// worker's pipe and then read the account's requests: every later call got the previous
/// call's reply (in serve: "the returned certificate is for a different public key than the
/// CSR's"), and the child outlived serve.
#[tokio::test]
async fn a_script_that_forks_without_exiting_the_child_keeps_its_worker_answering_in_turn() {
    let dir = tempfile::tempdir().expect("tmp");
    let child_pid = dir.path().join("child.pid");
    let c = load("hostile/forks_without_exit.py", limits(20, 512)).await.expect("loads");
    for (n, fork) in [(1, true), (2, false), (3, true), (4, false), (5, false)] {
        let got = c.certificate_request(&request(), &call_args(n, fork, &child_pid)).await.expect("answers");
        assert_eq!(got, Disposition::Rejected { reason: format!("call {n}") }, "call {n}");
    }
    let pid = std::fs::read_to_string(&child_pid).expect("the child ran");
    assert!(ends_within(&pid, Duration::from_secs(2)), "the forked child {pid} is still running");
}

/// Regression (the host's side of the fork above): a reply written by another process on the
/// worker's pipe was taken as the answer to the next call. Replies carry the request's number
/// now; one out of turn replaces the worker, and the call after gets a fresh one. A stray
/// reply that arrives while the worker is idle is seen before the next call, which a fresh
/// worker answers.
#[tokio::test]
async fn a_reply_out_of_turn_replaces_the_worker_instead_of_answering_a_later_call() {
    let dir = tempfile::tempdir().expect("tmp");
    let child_pid = dir.path().join("child.pid");
    let c = load("hostile/forks_past_the_guard.py", limits(20, 512)).await.expect("loads");
    // The child answers call 1 at once and goes on reading requests; the worker's own answer
    // follows after two seconds, while call 2 (read by either, answered after four) waits.
    let mut first_args = call_args(1, true, &child_pid);
    first_args.insert("parent_sleep", "2");
    let first = c.certificate_request(&request(), &first_args).await.expect("answers");
    assert_eq!(first, Disposition::Rejected { reason: "call 1".into() });
    let mut second_args = call_args(2, false, &child_pid);
    second_args.insert("sleep", "4");
    let err = c.certificate_request(&request(), &second_args).await.expect_err("out of turn");
    assert_eq!(
        err.to_string(),
        "script forks_past_the_guard: the script's worker answered out of turn during the call of certificate_request \
         (a process the script forked wrote to its pipe); it was replaced"
    );
    let pid = std::fs::read_to_string(&child_pid).expect("the child ran");
    assert!(ends_within(&pid, Duration::from_secs(2)), "the forked child {pid} outlived its worker");
    let third = c.certificate_request(&request(), &call_args(3, false, &child_pid)).await.expect("a fresh worker");
    assert_eq!(third, Disposition::Rejected { reason: "call 3".into() });

    // The worker's own answer to call 4 comes while it is idle: call 5 goes to a new worker.
    std::fs::remove_file(&child_pid).expect("rm");
    let fourth = c.certificate_request(&request(), &call_args(4, true, &child_pid)).await.expect("answers");
    assert_eq!(fourth, Disposition::Rejected { reason: "call 4".into() });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let fifth = c.certificate_request(&request(), &call_args(5, false, &child_pid)).await.expect("a fresh worker");
    assert_eq!(fifth, Disposition::Rejected { reason: "call 5".into() });
    let pid = std::fs::read_to_string(&child_pid).expect("the child ran");
    assert!(ends_within(&pid, Duration::from_secs(2)), "the forked child {pid} outlived its worker");
}

/// Regression: `logging.basicConfig` at import bound its handler to the stderr buffer of the
/// import, replaced per call: nothing the script logged reached the host, nor its error.
#[tokio::test]
async fn logging_set_up_at_import_reaches_each_call_s_error() {
    let c = load("hostile/logging_at_import.py", limits(20, 512)).await.expect("loads");
    let ok = c.certificate_request(&request(), &Args::new()).await.expect("answers");
    assert_eq!(ok, Disposition::Rejected { reason: "logged".into() });
    let mut fail = Args::new();
    fail.insert("fail", "1");
    let err = c.certificate_request(&request(), &fail).await.expect_err("raises").to_string();
    assert_eq!(
        err,
        "script logging_at_import: raised RuntimeError: the CA refused (line 13 of logging_at_import.py, in \
         certificate_request); stderr: INFO requesting certificate for www.example.com / ERROR CA said: quota exceeded"
    );
}

/// Regression: a call killed at its deadline left the script's subprocesses running, holding
/// the worker's stderr pipe (and the host's reader of it) open.
#[tokio::test]
async fn a_timed_out_call_ends_the_script_s_subprocesses_too() {
    let dir = tempfile::tempdir().expect("tmp");
    let pid_file = dir.path().join("sub.pid");
    let c = load("hostile/spawns_and_hangs.py", limits(2, 512)).await.expect("loads");
    let mut args = Args::new();
    args.insert("pid_file", pid_file.display().to_string());
    let err = c.certificate_request(&request(), &args).await.expect_err("times out");
    assert_eq!(err.to_string(), "script spawns_and_hangs: timed out after 2s");
    let pid = std::fs::read_to_string(&pid_file).expect("the subprocess started");
    assert!(ends_within(&pid, Duration::from_secs(2)), "the script's subprocess {pid} outlived its worker");
}

/// Regression: a subprocess that left the worker's process group (`start_new_session`, a
/// daemon double-forked by a shell that exited) escaped the kill at the deadline and ran on.
#[tokio::test]
async fn a_timed_out_call_ends_subprocesses_that_left_the_process_group() {
    let c = load("hostile/spawns_and_hangs.py", limits(2, 512)).await.expect("loads");
    for escape in ["session", "daemon"] {
        let dir = tempfile::tempdir().expect("tmp");
        let pid_file = dir.path().join("sub.pid");
        let mut args = Args::new();
        args.insert("pid_file", pid_file.display().to_string());
        args.insert("escape", escape);
        let err = c.certificate_request(&request(), &args).await.expect_err("times out");
        assert_eq!(err.to_string(), "script spawns_and_hangs: timed out after 2s");
        let pid = std::fs::read_to_string(&pid_file).expect("the subprocess started").trim().to_owned();
        assert!(
            ends_within(&pid, Duration::from_secs(2)),
            "{escape}: the script's subprocess {pid} outlived its worker"
        );
    }
}

/// Regression (security review of stop 36): a worker that ended itself (`os._exit`) left its
/// script's new-session subprocesses to init, running on, and one holding a copy of the
/// worker's pipe kept the host waiting for a reply until the deadline; a subprocess that forks
/// and exits in a loop outran the one scan made at the deadline. The worker's keeper outlives
/// the interpreter and ends all of them.
#[tokio::test]
async fn a_worker_that_ends_itself_or_a_forking_subprocess_leaves_nothing_running() {
    let c = load("hostile/spawns_and_hangs.py", limits(2, 512)).await.expect("loads");
    let dir = tempfile::tempdir().expect("tmp");
    let call = |escape: &'static str| {
        let pid_file = dir.path().join(format!("{escape}.pid"));
        let mut args = Args::new();
        args.insert("pid_file", pid_file.display().to_string());
        args.insert("escape", escape);
        (args, pid_file)
    };
    let (args, pid_file) = call("exit");
    let err = c.certificate_request(&request(), &args).await.expect_err("the worker ends");
    // Not "timed out after 2s": the end is seen when it happens.
    assert_eq!(
        err.to_string(),
        "script spawns_and_hangs: the script's worker exited with code 0 during the call of certificate_request"
    );
    let pid = std::fs::read_to_string(&pid_file).expect("the subprocess started").trim().to_owned();
    assert!(ends_within(&pid, Duration::from_secs(2)), "the subprocess {pid} outlived the worker");

    let (args, pid_file) = call("hopper");
    let err = c.certificate_request(&request(), &args).await.expect_err("times out");
    assert_eq!(err.to_string(), "script spawns_and_hangs: timed out after 2s");
    let last = std::fs::read_to_string(&pid_file).expect("the subprocess started").trim().to_owned();
    assert!(ends_within(&last, Duration::from_secs(2)), "the forking subprocess {last} runs on");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(std::fs::read_to_string(&pid_file).expect("pid").trim(), last, "it forked on after the deadline");
}

/// Regression: a worker killed while idle (the OOM killer, an operator) failed the next call
/// with "the script's worker was killed by signal 9" instead of being replaced.
#[tokio::test]
async fn a_worker_killed_while_idle_is_replaced_at_the_next_call() {
    let c = load("hostile/ignores_sigterm.py", limits(20, 512)).await.expect("loads");
    let Disposition::Issued { ca_order_id: Some(pid), .. } =
        c.certificate_request(&request(), &Args::new()).await.expect("issues")
    else {
        panic!("no pid")
    };
    crate::helpers::sh("kill", &["-9", &pid]);
    assert!(ends_within(&pid, Duration::from_secs(2)), "worker {pid} survived SIGKILL");
    let again = c.certificate_request(&request(), &Args::new()).await.expect("a fresh worker answers");
    let Disposition::Issued { ca_order_id: Some(new_pid), .. } = again else { panic!("{again:?}") };
    assert_ne!(new_pid, pid);
}

/// Regression: a value read from a secret file saved with CRLF ended in "\r"; the script
/// stripped it and raised with the bare value, which redaction did not know.
#[tokio::test]
async fn a_sensitive_value_the_script_strips_is_still_redacted() {
    let c = load("hostile/strips_secret.py", limits(20, 512)).await.expect("loads");
    let mut args = Args::new();
    args.insert_sensitive("password", "CrLfSecret1\r");
    let err = c.certificate_request(&request(), &args).await.expect_err("raises").to_string();
    assert_eq!(
        err,
        "script strips_secret: raised RuntimeError: login failed for *** (line 6 of strips_secret.py, in certificate_request)"
    );
}

/// Regression: an edited script kept running its old code after a reload (the registry cached
/// the connector by the account's definition only), and switched silently at the next worker
/// restart while `describe` still told the old parameters.
#[tokio::test]
async fn an_edited_script_is_loaded_afresh_at_the_next_lookup() {
    use certhost::connector::{ConnectorSource, Registry};
    let dir = tempfile::tempdir().expect("tmp");
    let script = dir.path().join("edited.py");
    let version = |v: u32| {
        format!(
            "PARAMETERS = [\"p{v}\"]\n\ndef certificate_request(csr, common_name, args_dict):\n    return {{\"status\": \"rejected\", \"reason\": \"version {v}\"}}\n"
        )
    };
    std::fs::write(&script, version(1)).expect("script");
    let registry = Registry::new(crate::helpers::certhost_bin().into(), None);
    let account = crate::wasm::account(&script);
    let c = registry.connector("edited", &account).await.expect("loads");
    assert_eq!(
        c.certificate_request(&request(), &Args::new()).await.expect("v1"),
        Disposition::Rejected { reason: "version 1".into() }
    );
    let same = registry.connector("edited", &account).await.expect("cached");
    assert!(std::sync::Arc::ptr_eq(&c, &same), "an unchanged file keeps its connector");
    std::fs::write(&script, version(22)).expect("edit");
    let c = registry.connector("edited", &account).await.expect("loads again");
    assert_eq!(c.describe().await.expect("describe").parameters[0].name, "p22");
    assert_eq!(
        c.certificate_request(&request(), &Args::new()).await.expect("v22"),
        Disposition::Rejected { reason: "version 22".into() }
    );
}

/// Hostile-script review of stop 40: every caller queued behind a script whose import fails
/// (or hangs) imported it again, one after another, each for up to its deadline. A failed load
/// is answered from memory for a while — until the file or the account changes.
#[tokio::test]
async fn a_failed_load_is_not_tried_again_by_each_caller_until_the_file_changes() {
    use certhost::connector::{ConnectorSource, Registry};
    let dir = tempfile::tempdir().expect("tmp");
    let script = dir.path().join("broken.py");
    let imports = dir.path().join("imports");
    let broken = format!(
        "open({:?}, 'a').write('import\\n')\nraise RuntimeError('the CA library is missing')\n",
        imports.display().to_string()
    );
    std::fs::write(&script, &broken).expect("script");
    let registry = Registry::new(crate::helpers::certhost_bin().into(), None);
    let account = crate::wasm::account(&script);
    let first = registry.connector("broken", &account).await.err().expect("does not load").to_string();
    assert!(first.contains("the CA library is missing"), "{first}");
    for _ in 0..3 {
        let again = registry.connector("broken", &account).await.err().expect("still does not load").to_string();
        assert_eq!(again, first);
    }
    assert_eq!(std::fs::read_to_string(&imports).expect("imported").lines().count(), 1, "imported once");
    std::fs::write(&script, format!("{broken}# edited\n")).expect("edit");
    registry.connector("broken", &account).await.err().expect("the edit does not load either");
    assert_eq!(std::fs::read_to_string(&imports).expect("imported").lines().count(), 2, "an edit is tried at once");
}

/// Regression: a pending CA order id holding a sensitive value was stored, shown and audited
/// in the open. The pipeline refuses it, for both runtimes (`Bounded` in `connector`).
#[test]
fn an_order_id_holding_a_sensitive_value_is_never_stored_and_an_issued_certificate_is_kept_without_it() {
    let app = crate::helpers::App::new();
    let conf = app.path("conf");
    std::fs::create_dir_all(conf.join("profiles")).expect("mkdir");
    let key = "sk/Order+Key=99178";
    std::fs::write(conf.join("key.txt"), format!("{key}\n")).expect("key");
    std::fs::write(
        conf.join("certhost.toml"),
        format!(
            "[accounts.so]\nconnector = \"{}\"\nparams.api_key = {{ sensitive = true, value = {{ file = \"{}\" }} }}\n",
            fixture("hostile/secret_order_id.py").display(),
            conf.join("key.txt").display()
        ),
    )
    .expect("config");
    std::fs::write(conf.join("profiles/so.toml"), "accounts = [\"so\"]\n").expect("profile");
    let config = conf.join("certhost.toml").display().to_string();
    let r = app.run(&["--config", &config, "issue", "--profile", "so", "--cn", "so.example.com"]);
    let err = r.fails(1);
    assert!(
        err.contains("script secret_order_id: returned an order id that holds the value of a sensitive parameter"),
        "{err}"
    );
    let orders = app.run(&["--config", &config, "orders", "list", "--json"]);
    let audit = app.run(&["--config", &config, "audit", "--json"]);
    let mut seen = format!("{}{}{}{}{}", r.stdout, r.stderr, orders.ok(), audit.ok(), audit.stderr);
    for entry in std::fs::read_dir(app.data_dir()).expect("data dir") {
        let path = entry.expect("entry").path();
        if path.is_file() {
            seen.push_str(&String::from_utf8_lossy(&std::fs::read(&path).expect("read")));
        }
    }
    // Issued, the certificate is kept without the order id: the CA did issue it.
    app.run(&["ca", "init", "--out", app.path("ca").to_str().expect("utf8")]).ok();
    let issued = format!(
        "[accounts.so]\nconnector = \"{}\"\nparams.api_key = {{ sensitive = true, value = {{ file = \"{}\" }} }}\nparams.mode = \"issued\"\nparams.ca_cert = \"{ca}/ca.pem\"\nparams.ca_key = \"{ca}/ca.key\"\n",
        fixture("hostile/secret_order_id.py").display(),
        conf.join("key.txt").display(),
        ca = app.path("ca").display()
    );
    std::fs::write(conf.join("certhost.toml"), issued).expect("config");
    let r = app.run(&["--config", &config, "issue", "--profile", "so", "--cn", "so.example.com"]);
    assert!(r.ok().contains("issued certificate #1"), "{}", r.stderr);
    let order = app.run(&["--config", &config, "orders", "show", "2", "--json"]);
    assert!(order.ok().contains("\"ca_order_id\": null"), "{}", order.stdout);
    seen.push_str(&format!("{}{}{}", r.stdout, r.stderr, order.stdout));
    for entry in std::fs::read_dir(app.data_dir()).expect("data dir") {
        let path = entry.expect("entry").path();
        if path.is_file() {
            seen.push_str(&String::from_utf8_lossy(&std::fs::read(&path).expect("read")));
        }
    }
    for form in [key, "sk%2FOrder%2BKey%3D99178", "Order+Key", "Order%2BKey"] {
        assert!(!seen.contains(form), "{form:?} was stored or shown");
    }
}

/// Regression: a script that answered "pending" but defines no `poll` left an order pending
/// that failed at its first poll with "poll is not implemented". It fails at once, naming the
/// CA's order and what to do.
#[test]
fn a_pending_answer_from_a_script_without_poll_fails_at_once_naming_the_ca_order() {
    let app = crate::helpers::App::new();
    let conf = app.path("conf");
    std::fs::create_dir_all(conf.join("profiles")).expect("mkdir");
    let script = conf.join("waits.py");
    std::fs::write(
        &script,
        "def certificate_request(csr, common_name, args_dict):\n    return {\"status\": \"pending\", \"order_id\": \"ca-4711\"}\n",
    )
    .expect("script");
    std::fs::write(conf.join("certhost.toml"), format!("[accounts.w]\nconnector = \"{}\"\n", script.display()))
        .expect("config");
    std::fs::write(conf.join("profiles/w.toml"), "accounts = [\"w\"]\n").expect("profile");
    let config = conf.join("certhost.toml").display().to_string();
    let r = app.run(&["--config", &config, "issue", "--profile", "w", "--cn", "w.example.com"]);
    let err = r.fails(1);
    assert!(
        err.contains("script waits answered pending (CA order ca-4711) but implements no poll")
            && err.contains("certhost import"),
        "{err}"
    );
    let shown = app.run(&["--config", &config, "orders", "show", "1", "--json"]);
    let order: serde_json::Value = serde_json::from_str(shown.ok()).expect("json");
    assert_eq!(order["state"], "failed", "{order}");
    assert_eq!(order["next_poll_at"], serde_json::Value::Null, "{order}");
    assert_eq!(order["ca_order_id"], "ca-4711", "kept where an operator looks: {order}");
}

/// Regression: `certhost.log("critical", …)`, the level name Python's `logging` uses, was logged
/// at INFO, and an unknown level was quietly downgraded with no sign of it.
#[test]
fn python_logging_level_names_keep_their_severity() {
    let (sink, _guard) = crate::helpers::LogSink::install();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let answer = rt.block_on(async {
        let c = load("log_levels.py", limits(20, 512)).await.expect("loads");
        c.certificate_request(&request(), &Args::new()).await
    });
    assert_eq!(answer.expect("answers"), Disposition::Rejected { reason: "logged".into() });
    let log = sink.text();
    let level_of = |text: &str| {
        let line = log.lines().find(|l| l.contains(text)).unwrap_or_else(|| panic!("no {text:?} in {log}"));
        ["ERROR", "WARN", "INFO", "DEBUG", "TRACE"].into_iter().find(|l| line.contains(l)).expect("a level")
    };
    assert_eq!(level_of("line at critical"), "ERROR");
    assert_eq!(level_of("line at warning"), "WARN");
    assert_eq!(level_of("line at info"), "INFO");
    assert_eq!(level_of("line at debug"), "DEBUG");
    assert_eq!(level_of("line at bogus"), "INFO");
    assert!(log.contains(r#"(unknown log level "bogus") line at bogus"#), "{log}");
}

/// `account test` on a script without `test_connection` (any Avi script: that contract has
/// none) reported "test_connection failed", exited 1, stored a failed test and made `/readyz`
/// show the account as `last_test_ok: false`, though it issues fine.
#[test]
fn account_test_of_a_script_without_test_connection_is_not_tested_rather_than_failed() {
    let app = crate::helpers::App::new();
    let config = app.path("avi.toml");
    std::fs::write(&config, format!("[accounts.avi]\nconnector = \"{}\"\n", fixture("fixed_cert.py").display()))
        .expect("config");
    let cfg = config.to_str().expect("utf8");
    let r = app.run(&["--config", cfg, "account", "test", "avi"]);
    assert!(r.ok().contains("account avi: not tested: its connector has no connection test"), "{}", r.stdout);
    assert!(!r.stderr.contains("failed"), "{}", r.stderr);
    let shown = app.json(&["--config", cfg, "account", "show", "avi", "--json"]);
    assert!(shown["last_test"].is_null(), "{shown}");
    let listed = app.run(&["--config", cfg, "account", "list"]);
    assert!(!listed.ok().contains("FAILED"), "{}", listed.stdout);
    let audit = app.run(&["audit", "--json"]);
    assert!(audit.ok().contains("\"skipped\""), "{}", audit.stdout);

    let server = crate::helpers::Server::start(app, Some(&config));
    let token = server.token("probe", "auditor");
    let ready: serde_json::Value = crate::helpers::http()
        .get(format!("{}/readyz", server.base))
        .bearer_auth(&token)
        .send()
        .expect("readyz")
        .json()
        .expect("json");
    assert_eq!(ready["accounts"][0]["name"], "avi", "{ready}");
    assert_eq!(ready["accounts_failing"], 0, "{ready}");
    assert!(ready["accounts"][0]["last_test_ok"].is_null(), "{ready}");
}

/// Regression (review of stop 30): scripts written for Avi failed to load or to answer in
/// certhost — `avi.infrastructure.avi_logging` missing, a UTF-8 BOM refused, a dataclass under
/// postponed annotations broken (the module was not in sys.modules), `sys.stdout` lacking
/// `reconfigure`, `buffer` and a descriptor, a lone surrogate in printed text or a str
/// subclass as the answer making the host throw away a certificate the CA had issued;
/// `"sensitive": 1` in PARAMETERS counted as not sensitive, and `revoke` returning False as
/// revoked.
#[tokio::test]
async fn a_script_written_for_avi_loads_and_issues_unmodified() {
    let ca = FileCa::new();
    let c = load("avi_style.py", limits(20, 512)).await.expect("loads");
    let described = c.describe().await.expect("describe");
    let sensitive: Vec<&str> = described.parameters.iter().filter(|p| p.sensitive).map(|p| p.name.as_str()).collect();
    assert_eq!(sensitive, ["api_key"]);
    assert!(described.parameters.iter().any(|p| p.name == "ticket" && p.required), "{described:?}");
    let issued = c.certificate_request(&request(), &ca.args("good")).await.expect("issued");
    assert!(matches!(issued, Disposition::Issued { .. }), "{issued:?}");
    let revoke = certhost::connector::RevokeRequest {
        certificate_pem: String::new(),
        serial: "01".into(),
        reason: certhost::connector::RevocationReason::Unspecified,
        comment: String::new(),
    };
    let err = c.revoke(&revoke, &Args::new()).await.expect_err("False is a failure").to_string();
    assert_eq!(err, "script avi_style: revoke returned False: the CA did not revoke the certificate");
}

/// Black-box review of stop 36: Avi's Let's Encrypt script imports the Avi SDK (`avi.sdk`) and
/// the controller's `avi.infrastructure.avi_logging`. With the SDK installed the stand-in for
/// the second stood down ("No module named 'avi.infrastructure'"); it is now supplied inside
/// an installed `avi` package too. The script reaches its CA with urllib, whose refused
/// connection (URLError) was a plain failure: it is "unreachable", so the next account is tried.
#[tokio::test]
async fn avi_s_lets_encrypt_script_loads_beside_the_avi_sdk_and_a_refused_urllib_call_fails_over() {
    let c = load("avi_sdk/letsencrypt_style.py", limits(20, 512)).await.expect("loads beside the SDK");
    let mut args = Args::new();
    args.insert("directory_url", "http://127.0.0.1:9/directory");
    let err = c.certificate_request(&request(), &args).await.expect_err("the CA is down");
    assert!(matches!(err, ConnectorError::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains("raised URLError"), "{err}");
}

/// Regression (review of stop 30): the worker was ended at a deadline with SIGTERM, which
/// Python does not turn into an exception, so a script's `finally:` never ran and the key
/// file an Avi script writes to /tmp stayed there.
#[tokio::test]
async fn a_script_ended_at_its_deadline_runs_its_cleanup_first() {
    let dir = tempfile::tempdir().expect("tmp");
    let marker = dir.path().join("key.pem");
    let c = load("hostile/cleanup_at_deadline.py", limits(2, 512)).await.expect("loads");
    let mut args = Args::new();
    args.insert("marker", marker.display().to_string());
    let err = c.certificate_request(&request(), &args).await.expect_err("times out");
    assert_eq!(err.to_string(), "script cleanup_at_deadline: timed out after 2s");
    assert!(!marker.exists(), "the script's finally: removed its key file");
}

/// Regression (review of stop 30): a worker inherited every variable of the host — another
/// account's token read with `{ env = … }`, certhost's own settings, the operator shell's
/// PYTHONPATH — and a script could put the token in its error, in clear. Likewise (review of
/// stop 35) the variable a `--param-env` sensitive value came from.
#[test]
fn a_script_sees_no_variable_a_secret_is_read_from_nor_certhost_s_own() {
    let app = crate::helpers::App::new();
    let conf = app.path("conf");
    std::fs::create_dir_all(conf.join("profiles")).expect("mkdir");
    let script = fixture("hostile/reads_environment.py");
    std::fs::write(
        conf.join("certhost.toml"),
        format!(
            "[accounts.other]\nconnector = \"{s}\"\nparams.api_token = {{ sensitive = true, value = {{ env = \"OTHER_CA_TOKEN\" }} }}\n\
             [accounts.nosy]\nconnector = \"{s}\"\n",
            s = script.display()
        ),
    )
    .expect("config");
    std::fs::write(
        conf.join("profiles/nosy.toml"),
        "accounts = [\"nosy\"]\n[params]\npin = { dynamic = true, sensitive = true }\n",
    )
    .expect("profile");
    let token = "tok-S3CRET-7d2e91";
    let out = app
        .command()
        .args(["--config", conf.join("certhost.toml").to_str().expect("utf8")])
        .args(["issue", "--profile", "nosy", "--cn", "www.example.com", "--param-env", "pin=DYNAMIC_PIN"])
        .env("DYNAMIC_PIN", "pin-S3CRET-0b7c")
        .env("OTHER_CA_TOKEN", token)
        .env("PYTHONPATH", "/nowhere")
        .env("PYTHONWARNINGS", "ignore")
        .output()
        .expect("run certhost");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("seen: none; token: -; MALLOC_ARENA_MAX=2"), "{stderr}");
    assert!(!stdout.contains(token) && !stderr.contains(token));
    // `plugin check`'s worker neither (review of stop 35).
    let out = app
        .command()
        .args(["plugin", "check", script.to_str().expect("utf8"), "--sensitive-param-env", "api_token=DYNAMIC_PIN"])
        .env("DYNAMIC_PIN", "pin-S3CRET-0b7c")
        .output()
        .expect("run certhost");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(said.contains("seen: none"), "{said}");
}

/// A configuration with one script account `name` (fixture `script`, `extra` settings) whose
/// sensitive `password` comes from variable `var`, and a profile `name` on it; returns its path.
fn password_script(app: &crate::helpers::App, name: &str, script: &str, extra: &str, var: &str) -> std::path::PathBuf {
    let conf = app.path("conf");
    std::fs::create_dir_all(conf.join("profiles")).expect("mkdir");
    std::fs::write(
        conf.join("certhost.toml"),
        format!(
            "[accounts.{name}]\nconnector = \"{}\"\n{extra}params.password = {{ sensitive = true, value = {{ env = \"{var}\" }} }}\n",
            fixture(script).display()
        ),
    )
    .expect("config");
    std::fs::write(conf.join(format!("profiles/{name}.toml")), format!("accounts = [\"{name}\"]\n")).expect("profile");
    conf.join("certhost.toml")
}

/// Regression (security review of stop 36): a new worker's stderr was logged as it came, and
/// the host gives a worker its values with its first call, after the import: a script printing
/// at import what an earlier call left in the account's cache logged a password in clear. What
/// an import writes is held until the first call and redacted with its values.
#[test]
fn what_a_script_prints_at_import_is_redacted_with_its_first_call_s_values() {
    let app = crate::helpers::App::new();
    let config = password_script(&app, "stash", "hostile/prints_cache_at_import.py", "", "STASH_PW");
    let password = "pw-S3CRET-import-5e1a";
    let run = || {
        let out = app
            .command()
            .args(["--config", config.to_str().expect("utf8"), "-v"])
            .args(["issue", "--profile", "stash", "--cn", "www.example.com"])
            .env("STASH_PW", password)
            .output()
            .expect("run certhost");
        assert_eq!(out.status.code(), Some(1));
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    };
    let first = run();
    assert!(first.contains("stashed") && !first.contains("import sees"), "{first}");
    let second = run();
    assert!(second.contains("stderr: import sees ***"), "the import's line is logged, redacted: {second}");
    assert!(!second.contains(password), "{second}");
}

/// Operator review of stop 36: what a script printed to stdout before its call hung was lost
/// with the reply nobody read; it is logged at the deadline, redacted. Also when the script's
/// cleanup outlasts the grace (Avi script review of stop 39: a ThreadPoolExecutor's exit
/// joined a sleeping thread until the SIGKILL, and the lines went with it).
#[test]
fn what_a_hung_script_printed_is_logged_at_its_deadline() {
    let app = crate::helpers::App::new();
    for (name, script) in [("hang", "prints_then_hangs.py"), ("pool", "prints_then_waits_on_a_thread.py")] {
        let config = password_script(&app, name, script, "timeout_seconds = 2\n", "HANG_PW");
        let out = app
            .command()
            .args(["--config", config.to_str().expect("utf8"), "-v"])
            .args(["issue", "--profile", name, "--cn", "slow.example.com"])
            .env("HANG_PW", "pw-S3CRET-hang-91c2")
            .output()
            .expect("run certhost");
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(4), "{script}: {said}");
        assert!(said.contains("stdout before the deadline: waiting for the CA to sign slow.example.com"), "{said}");
        assert!(said.contains("stdout before the deadline: logging in to the CA as admin:***"), "{said}");
        assert!(!said.contains("pw-S3CRET-hang-91c2"), "{said}");
    }
}

/// Diff review of stop 39: the worker keeps the last 128 KiB of what a call prints, cut
/// mid-line when no line ends; the deadline's dump logged all of it, and with it the end of a
/// password the cut had split.
#[test]
fn a_password_split_by_the_worker_s_cut_is_not_logged_at_the_deadline() {
    let app = crate::helpers::App::new();
    let password = "pw-S3CRET-split-0c7d-token-value";
    let config = password_script(&app, "split", "hostile/long_line_then_hangs.py", "timeout_seconds = 2\n", "SPLIT_PW");
    let out = app
        .command()
        .args(["--config", config.to_str().expect("utf8"), "-v"])
        .args(["issue", "--profile", "split", "--cn", "split.example.com"])
        .env("SPLIT_PW", password)
        .output()
        .expect("run certhost");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(4), "{}", &said[..said.len().min(2000)]);
    assert!(said.contains("stdout before the deadline: "), "the dump ran");
    for piece in password.as_bytes().windows(8) {
        let piece = std::str::from_utf8(piece).expect("ascii");
        assert!(!said.contains(piece), "{piece:?} of the password was logged");
    }
}

/// The worker ends with the host, however the host ends. It used to ask the kernel
/// (PR_SET_PDEATHSIG), which acts when the *thread* that started the worker ends: in `serve`
/// a tokio thread that retired took its workers with it, mid-call. The worker now watches
/// its parent's pid.
#[test]
fn a_worker_ends_when_its_host_is_killed() {
    let app = crate::helpers::App::new();
    let conf = app.path("conf");
    std::fs::create_dir_all(conf.join("profiles")).expect("mkdir");
    let pid_file = app.path("worker.pid");
    std::fs::write(
        conf.join("certhost.toml"),
        format!(
            "[accounts.slow]\nconnector = \"{}\"\ntimeout_seconds = 300\nparams.pid_file = \"{}\"\n",
            fixture("hostile/writes_pid_and_waits.py").display(),
            pid_file.display()
        ),
    )
    .expect("config");
    std::fs::write(conf.join("profiles/slow.toml"), "accounts = [\"slow\"]\n").expect("profile");
    let mut host = app
        .command()
        .args(["--config", conf.join("certhost.toml").to_str().expect("utf8")])
        .args(["issue", "--profile", "slow", "--cn", "www.example.com"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run certhost");
    let started = Instant::now();
    let pid = loop {
        if let Ok(pid) = std::fs::read_to_string(&pid_file)
            && !pid.trim().is_empty()
        {
            break pid;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the script never ran");
        std::thread::sleep(Duration::from_millis(50));
    };
    host.kill().expect("SIGKILL the host");
    host.wait().expect("reap the host");
    assert!(ends_within(&pid, Duration::from_secs(5)), "worker {pid} outlived its host");
}

/// Regression (review of stop 30): a request with SANs only gave the script `common_name = ""`,
/// which Avi never does and scripts send on to their CA.
#[tokio::test]
async fn a_san_only_request_gives_the_script_its_first_dns_name_as_common_name() {
    let c = load("echoes_common_name.py", limits(20, 512)).await.expect("loads");
    let params = CsrParams {
        subject: Subject::default(),
        sans: vec![San::Ip("192.0.2.9".parse().expect("ip")), San::Dns("san-only.example.com".into())],
        key_type: KeyType::EcP256,
        hash: None,
    };
    let (_, csr) = params.generate().expect("csr");
    let request = CertificateRequest { csr_pem: csr.pem, common_name: String::new(), request_id: "req-2".into() };
    let got = c.certificate_request(&request, &Args::new()).await.expect("answers");
    assert_eq!(got, Disposition::Rejected { reason: "common_name=san-only.example.com".into() });
    let got = c.certificate_request(&self::request(), &Args::new()).await.expect("answers");
    assert_eq!(got, Disposition::Rejected { reason: "common_name=www.example.com".into() });
}

/// The connector cache outlives the process (stop 34): what one `certhost` command's script
/// cached, the next command's script reads — sealed on disk, neither key nor value in the
/// clear — and new parameters of the account start an empty one. It lived in each process's
/// memory, so every command (and every restart of `serve`) started empty.
#[test]
fn a_script_s_cache_outlives_the_command_sealed_and_new_parameters_empty_it() {
    let app = crate::helpers::App::new();
    let conf = app.path("conf");
    std::fs::create_dir_all(conf.join("profiles")).expect("mkdir");
    let config = conf.join("certhost.toml");
    let account = |region: &str, timeout: u32| {
        std::fs::write(
            &config,
            format!(
                "[accounts.cached]\nconnector = \"{}\"\ntimeout_seconds = {timeout}\nparams.region = \"{region}\"\n",
                fixture("cache_ops.py").display()
            ),
        )
        .expect("config");
    };
    account("eu", 20);
    std::fs::write(
        conf.join("profiles/cached.toml"),
        // Sensitive: the order keeps no copy of the key and value the ops name.
        "accounts = [\"cached\"]\n[params]\nops = { dynamic = true, required = true, sensitive = true }\n",
    )
    .expect("profile");
    let issue = |ops: String| {
        let out = app
            .command()
            .args(["--config", config.to_str().expect("utf8"), "issue", "--profile", "cached"])
            .args(["--cn", "cached.example.com", "--param-env", "ops=CACHE_OPS"])
            .env("CACHE_OPS", ops)
            .output()
            .expect("run certhost");
        // cache_ops.py answers "rejected" with what each op returned.
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!out.status.success(), "{said}");
        said
    };
    let (key, value) = ("cache-key-9c41d2", "cache-value-canary-5e8f7a3b21");
    let said = issue(format!(r#"[["set","{key}","{value}",0],["get","{key}"],["set","brief","x",8]]"#));
    // After the command: `brief` was set before this, so it expires before set_at + 8 s.
    let set_at = Instant::now();
    assert!(said.contains("[null, 29, null]"), "{said}");
    let said = issue(format!(r#"[["get","{key}"],["get","missing"],["get","brief"]]"#));
    assert!(said.contains("[29, null, 1]"), "the next command reads them: {said}");
    std::thread::sleep(Duration::from_millis(8500).saturating_sub(set_at.elapsed()));
    assert!(issue(r#"[["get","brief"]]"#.into()).contains("[null]"), "a ttl holds across processes");

    for entry in std::fs::read_dir(app.data_dir()).expect("data dir").flatten() {
        let bytes = std::fs::read(entry.path()).unwrap_or_default();
        for needle in [key, value] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{needle} in the clear in {}",
                entry.path().display()
            );
        }
    }

    account("eu", 21);
    let said = issue(format!(r#"[["get","{key}"]]"#));
    assert!(said.contains("[29]"), "a new timeout keeps the cache: {said}");
    account("us", 21);
    let said = issue(format!(r#"[["get","{key}"]]"#));
    assert!(said.contains("[null]"), "new parameters empty the cache: {said}");
}

/// Regression (review of stop 34): `serve`'s long-lived worker kept its own copy of the cache
/// from when it started, so a token cached before `certhost secret set` gave the account a new
/// credential (or before the account was deleted and made again) was still used, and what
/// another process stored was never seen. Each call now starts with what the store holds.
#[tokio::test]
async fn each_call_starts_with_the_cache_the_store_holds_then() {
    use certhost::connector::cache::{CacheStore, Entry};
    let dir = tempfile::tempdir().expect("tempdir");
    let (vault, _) = certhost::vault::MasterKey::load_or_create(dir.path(), None).expect("key");
    let mut inv = certhost::inventory::Inventory::open(dir.path(), vault).expect("inventory");
    let def: certhost::account::AccountDef =
        serde_json::from_value(serde_json::json!({ "connector": fixture("cache_ops.py") })).expect("def");
    inv.create_account("acct", &def, "cli", "test").expect("account");
    let store = std::sync::Arc::new(certhost::inventory::InventoryCacheStore::new(dir.path().to_owned(), None));
    store.prepare().expect("store opens");
    let cache = AccountCache::new(store.clone(), "acct");
    let c = PythonConnector::load(
        &fixture("cache_ops.py"),
        Path::new(crate::helpers::certhost_bin()),
        limits(20, 512),
        cache,
    )
    .await
    .expect("loads");

    let r = cache_ops(&c, serde_json::json!([["set", "token", 5, 0], ["get", "token"]])).await;
    assert_eq!(r, serde_json::json!([null, 5]));
    inv.set_secret(certhost::inventory::SecretOwner::Account, "acct", "api_key", "new", "test").expect("secret");
    let r = cache_ops(&c, serde_json::json!([["get", "token"]])).await;
    assert_eq!(r, serde_json::json!([null]), "a new credential emptied the cache, the worker's copy too");

    // A call under way when the credential changes: what it fetched with the old one is not
    // kept (the store refuses a call that began before the cache was emptied).
    let call = cache_ops(&c, serde_json::json!([["sleep", 1.5], ["set", "token", 7, 0]]));
    let rotate = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        inv.set_secret(certhost::inventory::SecretOwner::Account, "acct", "api_key", "newer", "test").expect("secret");
    };
    let (r, ()) = tokio::join!(call, rotate);
    assert_eq!(r, serde_json::json!([null, null]));
    let r = cache_ops(&c, serde_json::json!([["get", "token"]])).await;
    assert_eq!(r, serde_json::json!([null]), "set by a call that began before the new credential");

    // Another process stores an entry (as `certhost issue` would, beside `serve`).
    store.put("acct", None, &[Entry { key: "other".into(), value: "vvv".into(), expires_at_ms: None }]).expect("put");
    let r = cache_ops(&c, serde_json::json!([["get", "other"]])).await;
    assert_eq!(r, serde_json::json!([3]), "the next call sees it");
}

/// Author review of stop 38: an exception raised below `certificate_request` said only
/// "raised KeyError: 'url'". The error names the script's own line and function that raised it
/// (the innermost of its frames, not a library's), and the debug log has the whole traceback,
/// redacted.
#[tokio::test]
async fn an_exception_names_the_script_s_line_and_the_debug_log_has_its_traceback() {
    let (_dir, c) = load_source(
        "deep_raise",
        "import json\n\
         def helper(args):\n    return json.loads(args['payload'])\n\
         def certificate_request(csr, common_name, args_dict):\n    return helper(args_dict)\n",
    )
    .await;
    let mut args = Args::new();
    args.insert("payload", "{not json");
    let err = c.certificate_request(&request(), &args).await.expect_err("raises").to_string();
    assert!(err.starts_with("script deep_raise: raised JSONDecodeError: "), "{err}");
    assert!(err.contains("(line 3 of deep_raise.py, in helper)"), "the script's frame, not json's: {err}");
}

/// Author review of stop 38: `{"status": "issued", "cert": …}` said only "without a PEM
/// certificate"; the keys certhost does not read are named.
#[tokio::test]
async fn an_issued_answer_without_its_certificate_key_names_the_keys_it_had() {
    let (_dir, c) = load_source(
        "wrong_key",
        "def certificate_request(csr, common_name, args_dict):\n    return {'status': 'issued', 'cert': '-----BEGIN CERTIFICATE-----'}\n",
    )
    .await;
    let err = c.certificate_request(&request(), &Args::new()).await.expect_err("refused").to_string();
    assert_eq!(
        err,
        "script wrong_key: returned status issued without a PEM certificate under \"certificate\" (it also had \"cert\", \
         which certhost does not read)"
    );
}

/// Regression (author review of stop 40): requests' ReadTimeout — the request sent, its answer
/// late — was "unreachable", so the profile failed over and the next CA issued a second
/// certificate. A POST that timed out reading is held like a call past its deadline; a GET
/// is still unreachable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_whose_answer_timed_out_is_not_unreachable() {
    let port = crate::helpers::unanswering_server();
    let source = format!(
        r#"import urllib.request

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

def certificate_request(csr, common_name, args):
    url = "http://127.0.0.1:{port}/orders"
    how = args.get("how", "requests")
    method = args.get("method", "POST")
    if how == "urllib":
        data = None if method == "GET" else csr.encode()
        urllib.request.urlopen(urllib.request.Request(url, data=data, method=method), timeout=1)
    elif how == "retrying":
        session = requests.Session()
        session.mount("http://", HTTPAdapter(max_retries=Retry(total=1, read=1, allowed_methods=None)))
        session.request(method, url, data=csr, timeout=(5, 1))
    elif method == "GET":
        requests.get(url, timeout=(5, 1))
    else:
        requests.post(url, data=csr, timeout=(5, 1))
    return "never"
"#
    );
    let (_dir, c) = load_source("slow_ca", &source).await;
    for how in ["requests", "urllib", "retrying"] {
        let mut post = Args::new();
        post.insert("how", how);
        let err = c.certificate_request(&request(), &post).await.expect_err("no answer");
        assert!(matches!(err, ConnectorError::Interrupted { .. }), "{how}: {err:?}");
        assert!(err.to_string().ends_with("(the request was sent and no answer came in time)"), "{how}: {err}");
        let mut get = Args::new();
        get.insert("how", how);
        get.insert("method", "GET");
        let err = c.certificate_request(&request(), &get).await.expect_err("no answer");
        assert!(err.is_failover(), "{how}: a GET that timed out is unreachable: {err:?}");
    }
    // A connect that times out never sent anything: unreachable, whatever the method.
    let mut nowhere = Args::new();
    nowhere.insert("how", "urllib");
    let (_dir2, refused) =
        load_source("nowhere_ca", &source.replace(&format!("127.0.0.1:{port}"), "10.255.255.1:9")).await;
    let err = refused.certificate_request(&request(), &nowhere).await.expect_err("no route");
    assert!(!matches!(err, ConnectorError::Interrupted { .. }), "{err:?}");
}
