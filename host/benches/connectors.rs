//! Connector call overhead (issues 3 and 4). Run: `cargo xtask build-plugins && cargo bench
//! -p certhost --bench connectors`.
//!
//! - `wasm_call/describe_fresh_instance`: a fresh Store, instantiate, `describe`, drop.
//! - `wasm_call/local_ca_issue`: a full certificate-request on local-ca, same lifecycle.
//! - `python_call/warm_worker`: a trivial script returning a fixed certificate, through the
//!   account's already-running worker (pipe round trip, JSON, Python call).
//! - `issuance_compute/local_ca`: the CPU one local-ca issuance cannot do without, on one
//!   thread: key + CSR, the local-ca call, the host's verification of its certificate, the
//!   key sealed for storage — no HTTP, no inventory, no disk. Issue 9's floor: `serve` spends
//!   this plus HTTP, scheduling and durable storage per issuance.
//! - `verify_issued/local_ca_host_signed`: the verification part of that alone — what `serve`
//!   pays for local-ca's answer, whose signature the host made (no ECDSA verification).

use std::path::Path;
use std::time::Duration;

use certhost::connector::python::PythonConnector;
use certhost::connector::wasm::WasmConnector;
use certhost::connector::{Args, CertificateRequest, Connector, Disposition, Limits};
use certhost::csr::{CsrParams, San, Subject};
use certhost::key::{KeyType, PrivateKey};
use certhost::vault::MasterKey;
use certhost::verify::{Expected, verify_issued};
use criterion::{Criterion, criterion_group, criterion_main};

fn repo(p: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(p)
}

fn request() -> CertificateRequest {
    let params = CsrParams {
        subject: Subject { common_name: Some("bench.example.com".into()), ..Subject::default() },
        sans: vec![San::Dns("bench.example.com".into())],
        key_type: KeyType::EcP256,
        hash: None,
    };
    let (_, csr) = params.generate().expect("csr");
    CertificateRequest { csr_pem: csr.pem, common_name: "bench.example.com".into(), request_id: "bench".into() }
}

/// What the host verifies local-ca's answer to `key`'s CSR against.
fn expected<'a>(key: &'a PrivateKey, sans: &'a [San], now: i64) -> Expected<'a> {
    Expected { public_key_raw: key.public_key_raw(), common_name: Some("bench.example.com"), sans, now }
}

fn wasm(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let limits = Limits { timeout: Duration::from_secs(30), ..Limits::default() };
    let connector = rt
        .block_on(WasmConnector::load(&repo("plugins/dist/local-ca.wasm"), "bench", limits, &[], None))
        .expect("build plugins first: cargo xtask build-plugins");
    let ca = certhost::root_ca::create("Bench CA", 10).expect("ca");
    let mut args = Args::new();
    args.insert("ca_certificate", ca.certificate_pem);
    args.insert_sensitive("ca_private_key", ca.key.to_pem().to_string());
    let req = request();
    let mut g = c.benchmark_group("wasm_call");
    g.bench_function("describe_fresh_instance", |b| {
        b.iter(|| rt.block_on(connector.describe_live()).expect("describe"))
    });
    g.bench_function("local_ca_issue", |b| {
        b.iter(|| rt.block_on(connector.certificate_request(&req, &args)).expect("issue"))
    });
    g.finish();

    let vault = MasterKey::generate();
    let params = CsrParams {
        subject: Subject { common_name: Some("bench.example.com".into()), ..Subject::default() },
        sans: vec![San::Dns("bench.example.com".into())],
        key_type: KeyType::EcP256,
        hash: None,
    };
    // Key + CSR, local-ca's answer, and what the host verifies it against.
    let issue = || {
        let (key, csr) = params.generate().expect("csr");
        let req = CertificateRequest {
            csr_pem: csr.pem,
            common_name: "bench.example.com".into(),
            request_id: "bench".into(),
        };
        let Disposition::Issued { certificate, chain, .. } =
            rt.block_on(connector.certificate_request(&req, &args)).expect("issue")
        else {
            panic!("local-ca answers at once")
        };
        (key, certificate, chain, time::OffsetDateTime::now_utc().unix_timestamp())
    };
    c.bench_function("issuance_compute/local_ca", |b| {
        b.iter(|| {
            let (key, certificate, chain, now) = issue();
            verify_issued(&expected(&key, &params.sans, now), &certificate, &chain).expect("verifies");
            vault.seal(key.pkcs8_der(), b"bench")
        })
    });

    // What `serve` pays to verify local-ca's answer: the host made its signature, so this is
    // reading PEM, parsing and checking, without an ECDSA verification.
    let (key, certificate, chain, now) = issue();
    let expected = expected(&key, &params.sans, now);
    c.bench_function("verify_issued/local_ca_host_signed", |b| {
        b.iter(|| verify_issued(&expected, &certificate, &chain).expect("verifies"))
    });
}

fn python(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let worker = Path::new(env!("CARGO_BIN_EXE_certhost"));
    let connector = rt
        .block_on(PythonConnector::load(
            &repo("tests/fixtures/python/fixed_cert.py"),
            worker,
            Limits::default(),
            certhost::connector::cache::AccountCache::in_memory("bench"),
        ))
        .expect("load");
    let req = request();
    let args = Args::new();
    rt.block_on(connector.certificate_request(&req, &args)).expect("warm up");
    c.bench_function("python_call/warm_worker", |b| {
        b.iter(|| rt.block_on(connector.certificate_request(&req, &args)).expect("call"))
    });
}

criterion_group!(benches, wasm, python);
criterion_main!(benches);
