//! Connector call overhead (issues 3 and 4). Run: `cargo xtask build-plugins && cargo bench
//! -p certhost --bench connectors`.
//!
//! - `wasm_call/describe_fresh_instance`: a fresh Store, instantiate, `describe`, drop.
//! - `wasm_call/local_ca_issue`: a full certificate-request on local-ca, same lifecycle.
//! - `python_call/warm_worker`: a trivial script returning a fixed certificate, through the
//!   account's already-running worker (pipe round trip, JSON, Python call).

use std::path::Path;
use std::time::Duration;

use certhost::connector::python::PythonConnector;
use certhost::connector::wasm::WasmConnector;
use certhost::connector::{Args, CertificateRequest, Connector, Limits};
use certhost::csr::{CsrParams, San, Subject};
use certhost::key::KeyType;
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
}

fn python(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let worker = Path::new(env!("CARGO_BIN_EXE_certhost"));
    let connector = rt
        .block_on(PythonConnector::load(&repo("tests/fixtures/python/fixed_cert.py"), worker, Limits::default()))
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
