//! WebAssembly component connectors: local-ca issuing for real, the sandbox holding against
//! hostile components, allowed hosts, the per-account cache and the compiled-component cache.
//! Components are built by `cargo xtask build-plugins` into plugins/dist/.

use std::path::{Path, PathBuf};
use std::time::Duration;

use certhost::connector::wasm::WasmConnector;
use certhost::connector::{Args, CertificateRequest, Connector, Disposition, Limits};
use certhost::csr::{CsrParams, San, Subject};
use certhost::key::KeyType;

use crate::helpers::{App, free_port, sh};

pub fn component(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/dist").join(format!("{name}.wasm"));
    assert!(p.is_file(), "{} is missing: run `cargo xtask build-plugins` (cargo xtask test does)", p.display());
    p
}

fn limits(timeout_s: u64, memory_mib: u64) -> Limits {
    Limits { timeout: Duration::from_secs(timeout_s), memory_bytes: memory_mib * 1024 * 1024, ..Limits::default() }
}

fn request() -> CertificateRequest {
    let params = CsrParams {
        subject: Subject { common_name: Some("wasm.example.com".into()), ..Subject::default() },
        sans: vec![San::Dns("wasm.example.com".into()), San::Ip("192.0.2.9".parse().expect("ip"))],
        key_type: KeyType::EcP256,
        hash: None,
    };
    let (_, csr) = params.generate().expect("csr");
    CertificateRequest { csr_pem: csr.pem, common_name: "wasm.example.com".into(), request_id: "req-w".into() }
}

fn ca_args() -> Args {
    let ca = certhost::root_ca::create("WASM Test CA", 30).expect("ca");
    let mut a = Args::new();
    a.insert("ca_certificate", ca.certificate_pem);
    a.insert_sensitive("ca_private_key", ca.key.to_pem().to_string());
    a
}

fn mode(m: &str) -> Args {
    let mut a = Args::new();
    a.insert("mode", m);
    a
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_components_get_clear_errors_while_a_concurrent_good_call_succeeds() {
    let good =
        WasmConnector::load(&component("local-ca"), "good", limits(20, 64), &[], None).await.expect("local-ca loads");
    let good_args = ca_args();
    let cases = [
        ("loop", limits(1, 64), "connector hostile: timed out after 1s"),
        ("memory", limits(20, 32), "connector hostile: exceeded its 32 MiB memory limit"),
        ("trap", limits(20, 64), "connector hostile: trapped: wasm `unreachable` instruction executed"),
        (
            "http",
            limits(20, 64),
            "connector hostile: misconfigured: the host denied the request to http://127.0.0.1:9/x: it is not among the CA account's allowed hosts",
        ),
    ];
    for (m, l, expected) in cases {
        let hostile = WasmConnector::load(&component("hostile"), "bad", l, &[], None).await.expect("hostile loads");
        let mut args = mode(m);
        args.insert("url", "http://127.0.0.1:9/x");
        let (req_bad, req_good) = (request(), request());
        let (bad, ok) =
            tokio::join!(hostile.certificate_request(&req_bad, &args), good.certificate_request(&req_good, &good_args));
        assert_eq!(bad.expect_err(m).to_string(), expected, "mode {m}");
        assert!(matches!(ok, Ok(Disposition::Issued { .. })), "the good call kept working during {m}: {ok:?}");
        // The same connector serves the next call in a fresh store.
        let after = hostile.certificate_request(&request(), &mode("good-log")).await.expect("fresh store");
        assert!(matches!(after, Disposition::Rejected { .. }));
    }
}

#[tokio::test]
async fn a_component_for_an_unknown_contract_version_is_refused() {
    let err = WasmConnector::load(&component("future-contract"), "x", limits(5, 64), &[], None)
        .await
        .err()
        .expect("refused")
        .to_string();
    assert_eq!(
        err,
        "connector future-contract: misconfigured: the component targets contract version 9.0.0, but this host supports 0.1.0"
    );
    let not_wasm = tempfile::NamedTempFile::new().expect("tmp");
    std::fs::write(not_wasm.path(), b"\0asm garbage").expect("write");
    let err =
        WasmConnector::load(not_wasm.path(), "x", limits(5, 64), &[], None).await.err().expect("refused").to_string();
    assert!(err.contains("not a valid component"), "{err}");
}

#[tokio::test]
async fn outbound_http_reaches_allowed_hosts_only() {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("index.html"), "hello").expect("write");
    let port = free_port();
    let mut server = std::process::Command::new("python3")
        .args(["-m", "http.server", &port.to_string(), "--bind", "127.0.0.1"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("http.server");
    for _ in 0..50 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let allowed = vec![format!("http://127.0.0.1:{port}")];
    let c = WasmConnector::load(&component("hostile"), "net", limits(10, 64), &allowed, None).await.expect("loads");
    let mut args = mode("http");
    args.insert("url", format!("http://127.0.0.1:{port}/index.html"));
    let ok = c.certificate_request(&request(), &args).await;
    let mut other = mode("http");
    other.insert("url", format!("http://localhost:{port}/index.html"));
    let denied = c.certificate_request(&request(), &other).await;
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(ok.expect("allowed"), Disposition::Rejected { reason: "fetched HTTP 200".into() });
    assert!(denied.expect_err("denied").to_string().contains("not among the CA account's allowed hosts"));
}

#[tokio::test]
async fn the_host_cache_survives_between_calls_and_compiled_code_is_cached_on_disk() {
    let cache_dir = tempfile::tempdir().expect("tmp");
    let c = WasmConnector::load(&component("hostile"), "cached", limits(10, 64), &[], Some(cache_dir.path()))
        .await
        .expect("loads");
    assert_eq!(
        c.certificate_request(&request(), &mode("good-log")).await.expect("1"),
        Disposition::Rejected { reason: "call 1".into() }
    );
    assert_eq!(
        c.certificate_request(&request(), &mode("good-log")).await.expect("2"),
        Disposition::Rejected { reason: "call 2".into() }
    );
    let cached: Vec<_> = std::fs::read_dir(cache_dir.path())
        .expect("dir")
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
        .collect();
    assert_eq!(cached.len(), 1, "one compiled component in the cache");
    // A second load (a restart) uses the cached code and works the same.
    let again = WasmConnector::load(&component("hostile"), "cached2", limits(10, 64), &[], Some(cache_dir.path()))
        .await
        .expect("loads from cache");
    assert_eq!(
        again.certificate_request(&request(), &mode("good-log")).await.expect("1"),
        Disposition::Rejected { reason: "call 1".into() }
    );
}

#[test]
fn local_ca_issues_through_a_profile_and_openssl_verifies_the_result() {
    let app = App::new();
    let ca = app.path("ca");
    app.run(&["ca", "init", "--out", ca.to_str().expect("utf8")]).ok();
    let conf = app.path("conf");
    std::fs::create_dir_all(conf.join("profiles")).expect("mkdir");
    std::fs::write(
        conf.join("certhost.toml"),
        format!(
            "[accounts.lab]\nconnector = \"{}\"\nparams.validity_days = \"7\"\nparams.ca_certificate = {{ file = \"{ca}/ca.pem\" }}\nparams.ca_private_key = {{ sensitive = true, value = {{ file = \"{ca}/ca.key\" }} }}\n",
            component("local-ca").display(),
            ca = ca.display()
        ),
    )
    .expect("config");
    std::fs::write(conf.join("profiles/lab.toml"), "accounts = [\"lab\"]\n[sans]\nallowed_types = [\"DNS\", \"IP\"]\n")
        .expect("profile");
    let out = app.path("out");
    let config = conf.join("certhost.toml");
    let r = app.run(&[
        "--config",
        config.to_str().expect("utf8"),
        "-v",
        "issue",
        "--profile",
        "lab",
        "--cn",
        "www.example.com",
        "--san",
        "IP:192.0.2.77",
        "--out",
        out.to_str().expect("utf8"),
    ]);
    assert!(r.ok().contains("issued certificate #1"), "{}", r.stderr);
    let verify = sh(
        "openssl",
        &["verify", "-CAfile", ca.join("ca.pem").to_str().expect("utf8"), out.join("cert.pem").to_str().expect("utf8")],
    );
    assert!(verify.contains(": OK"), "{verify}");
    let text = sh("openssl", &["x509", "-in", out.join("cert.pem").to_str().expect("utf8"), "-noout", "-text"]);
    assert!(
        text.contains("DNS:www.example.com") && text.contains("IP Address:192.0.2.77") && text.contains("CA:FALSE"),
        "{text}"
    );
    // The guest's log line reached the host log, in the account's span, without the key.
    assert!(r.stderr.contains("signed a certificate for www.example.com"), "{}", r.stderr);
    let key = std::fs::read_to_string(ca.join("ca.key")).expect("key");
    assert!(!r.stderr.contains(key.lines().nth(1).expect("key line")));
    assert!(
        app.run(&["--config", config.to_str().expect("utf8"), "account", "test", "lab"])
            .ok()
            .contains("test_connection ok")
    );
}

#[tokio::test]
async fn https_to_a_private_ca_server_works_only_with_the_accounts_extra_ca() {
    let app = App::new();
    let ca = app.path("ca");
    app.run(&["ca", "init", "--out", ca.to_str().expect("utf8")]).ok();
    let srv = app.path("srv");
    app.run(&["key-csr", "--cn", "127.0.0.1", "--san", "IP:127.0.0.1", "--out", srv.to_str().expect("utf8")]).ok();
    std::fs::write(srv.join("ext"), "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n").expect("ext");
    let p = |d: &Path, n: &str| d.join(n).to_str().expect("utf8").to_owned();
    sh(
        "openssl",
        &[
            "x509",
            "-req",
            "-in",
            &p(&srv, "csr.pem"),
            "-CA",
            &p(&ca, "ca.pem"),
            "-CAkey",
            &p(&ca, "ca.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &p(&srv, "ext"),
            "-out",
            &p(&srv, "cert.pem"),
        ],
    );
    std::fs::write(srv.join("index.html"), "hello over tls").expect("index");
    let port = free_port();
    let script = format!(
        "import http.server, ssl\nsrv = http.server.HTTPServer(('127.0.0.1', {port}), http.server.SimpleHTTPRequestHandler)\nctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\nctx.load_cert_chain('{}', '{}')\nsrv.socket = ctx.wrap_socket(srv.socket, server_side=True)\nsrv.serve_forever()\n",
        p(&srv, "cert.pem"),
        p(&srv, "key.pem")
    );
    let mut server = std::process::Command::new("python3")
        .args(["-c", &script])
        .current_dir(&srv)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("tls server");
    for _ in 0..50 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let allowed = vec![format!("https://127.0.0.1:{port}")];
    let mut args = mode("http");
    args.insert("url", format!("https://127.0.0.1:{port}/index.html"));
    let trusting = WasmConnector::load_with_trust(
        &component("hostile"),
        "tls",
        limits(10, 64),
        &allowed,
        &[ca.join("ca.pem")],
        None,
    )
    .await
    .expect("loads");
    let ok = trusting.certificate_request(&request(), &args).await;
    let untrusting =
        WasmConnector::load(&component("hostile"), "tls2", limits(10, 64), &allowed, None).await.expect("loads");
    let refused = untrusting.certificate_request(&request(), &args).await;
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(ok.expect("trusted private CA"), Disposition::Rejected { reason: "fetched HTTP 200".into() });
    let err = refused.expect_err("untrusted").to_string();
    assert!(err.contains("connector hostile"), "{err}");
}
