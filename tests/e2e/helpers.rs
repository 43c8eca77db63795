//! Shared test helpers: a per-test data directory, running the binary, an openssl test CA.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine;

/// The `certhost` binary built by cargo for this test run.
pub fn certhost_bin() -> &'static str {
    env!("CARGO_BIN_EXE_certhost")
}

/// A fresh data directory and master key for one test.
pub struct App {
    pub dir: tempfile::TempDir,
    pub master_key: String,
}

/// Output of one command, as text.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from(out: Output) -> Self {
        Self {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Asserts exit 0 and returns stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "expected success\nstdout: {}\nstderr: {}", self.stdout, self.stderr);
        &self.stdout
    }

    /// Asserts the given exit code and that stderr is one clean error line (no panic, no backtrace).
    #[track_caller]
    pub fn fails(&self, code: i32) -> &str {
        assert_eq!(self.code, code, "expected exit {code}\nstdout: {}\nstderr: {}", self.stdout, self.stderr);
        assert!(!self.stderr.contains("panicked") && !self.stderr.contains("RUST_BACKTRACE"), "panic: {}", self.stderr);
        &self.stderr
    }
}

impl App {
    pub fn new() -> Self {
        let key = base64::engine::general_purpose::STANDARD.encode(rand_bytes());
        Self { dir: tempfile::tempdir().expect("tempdir"), master_key: key }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `certhost` with this app's data dir and master key, for a test that sets more of its
    /// environment or does not wait for it.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(certhost_bin());
        cmd.env("CERTHOST_DATA_DIR", self.data_dir())
            .env("CERTHOST_MASTER_KEY", &self.master_key)
            .env_remove("RUST_LOG");
        cmd
    }

    /// Runs `certhost ARGS` with this app's data dir and master key.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with_key(args, Some(&self.master_key))
    }

    /// Runs with a given master key (`None` = use the data directory's key file).
    pub fn run_with_key(&self, args: &[&str], key: Option<&str>) -> Run {
        let mut cmd = Command::new(certhost_bin());
        cmd.args(args).env("CERTHOST_DATA_DIR", self.data_dir()).env_remove("RUST_LOG");
        match key {
            Some(k) => cmd.env("CERTHOST_MASTER_KEY", k),
            None => cmd.env_remove("CERTHOST_MASTER_KEY"),
        };
        Run::from(cmd.output().expect("run certhost"))
    }

    /// Runs and parses `--json` output.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let r = self.run(args);
        serde_json::from_str(r.ok()).unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.stdout))
    }
}

fn rand_bytes() -> [u8; 32] {
    use std::time::{SystemTime, UNIX_EPOCH};
    // Distinct per test; quality does not matter for a test key, only uniqueness.
    let seed = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_nanos();
    let mut out = [0u8; 32];
    let digest =
        ring::digest::digest(&ring::digest::SHA256, format!("{seed}{:?}", std::thread::current().id()).as_bytes());
    out.copy_from_slice(digest.as_ref());
    out
}

/// Runs a program, asserting success; returns stdout.
#[track_caller]
pub fn sh(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program} not runnable: {e}"));
    assert!(out.status.success(), "{program} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A throw-away CA made with the real `openssl` command line.
pub struct OpensslCa {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub dir: PathBuf,
}

impl OpensslCa {
    /// Creates a P-256 root CA in `dir`.
    pub fn new(dir: &Path, name: &str) -> Self {
        Self::with_key(dir, name, &["ec", "-pkeyopt", "ec_paramgen_curve:P-256"])
    }

    /// Creates a root CA in `dir` whose key `openssl req -newkey` makes from `newkey`
    /// (`["rsa:1024"]`, `["ec", "-pkeyopt", ...]`).
    pub fn with_key(dir: &Path, name: &str, newkey: &[&str]) -> Self {
        std::fs::create_dir_all(dir).expect("mkdir");
        let cert = dir.join(format!("{name}.pem"));
        let key = dir.join(format!("{name}.key"));
        let subject = format!("/CN={name}/O=certhost tests");
        let mut args = vec!["req", "-x509", "-newkey"];
        args.extend_from_slice(newkey);
        args.extend([
            "-nodes",
            "-days",
            "365",
            "-subj",
            &subject,
            "-keyout",
            key.to_str().expect("utf8"),
            "-out",
            cert.to_str().expect("utf8"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        sh("openssl", &args);
        Self { cert, key, dir: dir.to_owned() }
    }

    /// Signs `csr` for `days`, copying its SANs; returns the certificate path.
    pub fn sign(&self, csr: &Path, days: u32, out_name: &str) -> PathBuf {
        self.sign_with(csr, days, out_name, "basicConstraints=CA:FALSE\n", &["-copy_extensions", "copy"])
    }

    /// `openssl x509 -req` of `csr` for `days` with the extensions in `ext` (extfile text) and
    /// `extra` arguments (`-sha1`, `-copy_extensions copy`); returns the certificate path.
    pub fn sign_with(&self, csr: &Path, days: u32, out_name: &str, ext: &str, extra: &[&str]) -> PathBuf {
        let out = self.dir.join(out_name);
        let extfile = self.dir.join(format!("{out_name}.ext"));
        std::fs::write(&extfile, ext).expect("ext");
        let days = days.to_string();
        let mut args = vec![
            "x509",
            "-req",
            "-in",
            csr.to_str().expect("utf8"),
            "-CA",
            self.cert.to_str().expect("utf8"),
            "-CAkey",
            self.key.to_str().expect("utf8"),
            "-CAcreateserial",
            "-days",
            &days,
            "-extfile",
            extfile.to_str().expect("utf8"),
            "-out",
            out.to_str().expect("utf8"),
        ];
        args.extend_from_slice(extra);
        sh("openssl", &args);
        out
    }

    /// Makes a key (openssl, P-256) and a certificate for `cn`; returns (cert, key).
    pub fn issue(&self, cn: &str, days: u32) -> (PathBuf, PathBuf) {
        let key = self.dir.join(format!("{cn}.key"));
        let csr = self.dir.join(format!("{cn}.csr"));
        openssl_csr(&key, &csr, &format!("/CN={cn}"), &[&format!("subjectAltName=DNS:{cn}")]);
        (self.sign(&csr, days, &format!("{cn}.pem")), key)
    }
}

/// `openssl req`: a new P-256 key at `key` and a CSR at `csr` for `subject` (`/CN=...`), with
/// each of `extensions` as an `-addext`.
pub fn openssl_csr(key: &Path, csr: &Path, subject: &str, extensions: &[&str]) {
    let mut args =
        vec!["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", subject];
    for ext in extensions {
        args.extend(["-addext", ext]);
    }
    args.extend(["-keyout", key.to_str().expect("utf8"), "-out", csr.to_str().expect("utf8")]);
    sh("openssl", &args);
}

/// A running `certhost serve` on 127.0.0.1:0 with its own data directory; killed on drop.
pub struct Server {
    pub app: App,
    pub base: String,
    pub child: std::process::Child,
    pub log: PathBuf,
}

impl Server {
    /// Starts the real binary with `config` (if any) and waits until it listens.
    pub fn start(app: App, config: Option<&Path>) -> Self {
        Self::start_with_env(app, config, &[])
    }

    /// [`Server::start`] with extra environment variables for the server process.
    pub fn start_with_env(app: App, config: Option<&Path>, env: &[(&str, &str)]) -> Self {
        use std::io::BufRead;
        let log = app.path("serve.log");
        let mut cmd = Command::new(certhost_bin());
        if let Some(c) = config {
            cmd.args(["--config", c.to_str().expect("utf8")]);
        }
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--poll-interval", "1"])
            .env("CERTHOST_DATA_DIR", app.data_dir())
            .env("CERTHOST_MASTER_KEY", &app.master_key)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"));
        let mut child = cmd.spawn().expect("spawn serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line).expect("first line");
        let base = line.trim().rsplit(' ').next().unwrap_or_default().to_owned();
        assert!(
            base.starts_with("http://127.0.0.1:") || base.starts_with("https://127.0.0.1:"),
            "unexpected first line {line:?}; log: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        Self { app, base, child, log }
    }

    /// Creates a token with the CLI (same data directory) and returns it.
    pub fn token(&self, name: &str, role: &str) -> String {
        let r = self.app.run(&["token", "create", "--name", name, "--role", role]);
        r.ok().trim().to_owned()
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A blocking HTTP client for tests.
pub fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(std::time::Duration::from_secs(60)).build().expect("client")
}

/// A free TCP port on 127.0.0.1 (bound then released; the window for a race is tiny).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// Debian's `cfssl serve` on 127.0.0.1 with a fresh CA made by `cfssl gencert -initca`.
/// Profile `default` is unauthenticated (/sign); profile `authed` needs the HMAC key.
pub struct Cfssl {
    pub url: String,
    /// cfssl's certificate database (sqlite).
    pub db: PathBuf,
    pub ca: PathBuf,
    pub auth_key: String,
    child: std::process::Child,
}

impl Cfssl {
    pub fn start(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).expect("mkdir");
        std::fs::write(
            dir.join("ca-csr.json"),
            r#"{"CN":"certhost test cfssl CA","key":{"algo":"ecdsa","size":256},"names":[{"O":"certhost tests"}]}"#,
        )
        .expect("csr");
        let out = Command::new("cfssl")
            .args(["gencert", "-initca", dir.join("ca-csr.json").to_str().expect("utf8")])
            .output()
            .expect("cfssl gencert (apt-get install golang-cfssl)");
        assert!(out.status.success(), "cfssl gencert: {}", String::from_utf8_lossy(&out.stderr));
        let generated: serde_json::Value = serde_json::from_slice(&out.stdout).expect("gencert json");
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, generated["cert"].as_str().expect("cert")).expect("write");
        std::fs::write(dir.join("ca-key.pem"), generated["key"].as_str().expect("key")).expect("write");
        let auth_key = hex::encode(ring::digest::digest(&ring::digest::SHA256, dir.to_string_lossy().as_bytes()));
        let config = serde_json::json!({
            "signing": {
                "default": { "expiry": "2160h", "usages": ["digital signature", "key encipherment", "server auth", "client auth"] },
                "profiles": { "authed": { "expiry": "2160h", "auth_key": "primary", "usages": ["digital signature", "key encipherment", "server auth"] } }
            },
            "auth_keys": { "primary": { "type": "standard", "key": auth_key } }
        });
        std::fs::write(dir.join("config.json"), config.to_string()).expect("config");
        // A certificate database, so /revoke works (cfssl 1.2's sqlite schema).
        let db = dir.join("certs.db");
        let schema = "CREATE TABLE certificates (serial_number blob NOT NULL, authority_key_identifier blob NOT NULL, \
            ca_label blob, status blob NOT NULL, reason int, expiry timestamp, revoked_at timestamp, pem blob NOT NULL, \
            PRIMARY KEY(serial_number, authority_key_identifier)); \
            CREATE TABLE ocsp_responses (serial_number blob NOT NULL, authority_key_identifier blob NOT NULL, \
            body blob NOT NULL, expiry timestamp, PRIMARY KEY(serial_number, authority_key_identifier));";
        let conn = rusqlite::Connection::open(&db).expect("cfssl db");
        conn.execute_batch(schema).expect("cfssl schema");
        drop(conn);
        std::fs::write(
            dir.join("db.json"),
            serde_json::json!({"driver": "sqlite3", "data_source": db.to_str().expect("utf8")}).to_string(),
        )
        .expect("db config");
        let port = free_port();
        let mut child = Command::new("cfssl")
            .args(["serve", "-address", "127.0.0.1", "-port", &port.to_string(), "-loglevel", "2"])
            .arg("-ca")
            .arg(&ca)
            .arg("-ca-key")
            .arg(dir.join("ca-key.pem"))
            .arg("-config")
            .arg(dir.join("config.json"))
            .arg("-db-config")
            .arg(dir.join("db.json"))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.join("cfssl.log")).expect("log"))
            .spawn()
            .expect("cfssl serve");
        let url = format!("http://127.0.0.1:{port}");
        let client = http();
        for _ in 0..100 {
            if client.post(format!("{url}/api/v1/cfssl/info")).body("{}").send().is_ok_and(|r| r.status().is_success())
            {
                return Self { url, db, ca, auth_key, child };
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("cfssl serve did not come up: {}", std::fs::read_to_string(dir.join("cfssl.log")).unwrap_or_default());
    }
}

impl Drop for Cfssl {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `certhost ca init` CA in APP/`ca_name` and an empty configuration directory APP/conf
/// (with profiles/). Returns (CA dir, conf dir).
fn lab_dirs(app: &App, ca_name: &str) -> (PathBuf, PathBuf) {
    let ca = app.path(ca_name);
    app.run(&["ca", "init", "--out", ca.to_str().expect("utf8")]).ok();
    let conf = app.path("conf");
    std::fs::create_dir_all(conf.join("profiles")).expect("mkdir");
    (ca, conf)
}

/// A lab configuration: `certhost ca init` CA, account `lab` on the local-ca component, and
/// profile `lab` (DNS and IP SANs) with `profile_extra` appended. Returns (config, CA dir).
pub fn local_ca_lab(app: &App, profile_extra: &str) -> (PathBuf, PathBuf) {
    let (ca, conf) = lab_dirs(app, "ca");
    std::fs::write(
        conf.join("certhost.toml"),
        format!(
            "[accounts.lab]\nconnector = \"{}\"\nparams.validity_days = \"7\"\nparams.ca_certificate = {{ file = \"{ca}/ca.pem\" }}\nparams.ca_private_key = {{ sensitive = true, value = {{ file = \"{ca}/ca.key\" }} }}\n",
            crate::wasm::component("local-ca").display(),
            ca = ca.display()
        ),
    )
    .expect("config");
    std::fs::write(
        conf.join("profiles/lab.toml"),
        format!("accounts = [\"lab\"]\n{profile_extra}\n[sans]\nallowed_types = [\"DNS\", \"IP\"]\n"),
    )
    .expect("profile");
    (conf.join("certhost.toml"), ca)
}

/// `openssl verify` of a PEM file against a CA file; returns openssl's output.
pub fn openssl_verify(ca: &Path, pem: &Path) -> String {
    sh("openssl", &["verify", "-CAfile", ca.to_str().expect("utf8"), pem.to_str().expect("utf8")])
}

/// A configuration with one account `name` on the scripted test CA (tests/fixtures/python/
/// scripted_ca.py) in `mode`, signing with a `certhost ca init` CA whose directory is also
/// its state directory; `account_extra` is appended to the account (or the file), and each
/// (name, body) of `profiles` becomes profiles/NAME.toml. Returns (config, CA dir).
pub fn scripted_lab(
    app: &App,
    name: &str,
    mode: &str,
    account_extra: &str,
    profiles: &[(&str, &str)],
) -> (PathBuf, PathBuf) {
    let (ca, conf) = lab_dirs(app, "script-ca");
    std::fs::write(
        conf.join("certhost.toml"),
        format!(
            "[accounts.{name}]\nconnector = \"{}\"\nparams.mode = \"{mode}\"\nparams.ca_cert = \"{c}/ca.pem\"\nparams.ca_key = \"{c}/ca.key\"\nparams.state_dir = \"{c}\"\n{account_extra}\n",
            crate::python::fixture("scripted_ca.py").display(),
            c = ca.display()
        ),
    )
    .expect("config");
    for (pname, body) in profiles {
        std::fs::write(conf.join(format!("profiles/{pname}.toml")), body).expect("profile");
    }
    (conf.join("certhost.toml"), ca)
}

/// A self-signed end-entity TLS certificate for 127.0.0.1 made with the real openssl (rustls
/// refuses a CA certificate as a server's); trust the certificate itself. Returns (cert, key).
pub fn localhost_tls(dir: &Path) -> (PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).expect("mkdir");
    let cert = dir.join("tls.pem");
    let key = dir.join("tls.key");
    sh(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-addext",
            "extendedKeyUsage=serverAuth",
            "-keyout",
            key.to_str().expect("utf8"),
            "-out",
            cert.to_str().expect("utf8"),
        ],
    );
    (cert, key)
}

/// The log lines of this thread's tracing events, captured for a test to read.
#[derive(Clone, Default)]
pub struct LogSink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl LogSink {
    /// Captures this thread's events (every level) until the guard drops.
    pub fn install() -> (Self, tracing::subscriber::DefaultGuard) {
        let sink = Self::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::TRACE)
            .finish();
        (sink, tracing::subscriber::set_default(subscriber))
    }

    /// What was logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("sink")).into_owned()
    }
}

impl std::io::Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("sink").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A server on 127.0.0.1 that reads each request and never answers (a CA that took the order
/// and went quiet); returns its port. It lives as long as the test process.
pub fn unanswering_server() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for mut stream in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = std::io::Read::read(&mut stream, &mut buf);
            held.push(stream);
        }
    });
    port
}
