//! Key + CSR generation per key type, uploaded-CSR parse and verify, the host's verification
//! of an issued certificate, and reading a returned certificate and chain (issue 9).
//! Run: `cargo bench -p certhost --bench crypto`.

use certhost::csr::{CsrParams, San, Subject, parse_csr};
use certhost::key::{KeyType, PrivateKey};
use certhost::verify::{Expected, verify_issued};
use criterion::{Criterion, criterion_group, criterion_main};

fn params(key_type: KeyType) -> CsrParams {
    CsrParams {
        subject: Subject {
            common_name: Some("bench.example.com".into()),
            organization: vec!["Bench".into()],
            ..Subject::default()
        },
        sans: vec![San::Dns("bench.example.com".into()), San::Ip("192.0.2.1".parse().expect("literal"))],
        key_type,
        hash: None,
    }
}

fn key_and_csr(c: &mut Criterion) {
    let mut g = c.benchmark_group("key_csr");
    for kt in [KeyType::EcP256, KeyType::EcP384, KeyType::Ed25519] {
        let p = params(kt);
        g.bench_function(kt.as_str(), |b| b.iter(|| p.generate().expect("generate")));
    }
    g.sample_size(10);
    let p = params(KeyType::Rsa2048);
    g.bench_function("rsa-2048", |b| b.iter(|| p.generate().expect("generate")));
    g.finish();
}

fn csr_parse(c: &mut Criterion) {
    let (_, csr) = params(KeyType::EcP256).generate().expect("csr");
    c.bench_function("csr_parse_verify/ec-p256", |b| b.iter(|| parse_csr(&csr.der).expect("parse")));
}

fn verify(c: &mut Criterion) {
    use rcgen::{BasicConstraints, CertificateParams, CertificateSigningRequestParams, IsCa, Issuer, KeyPair};
    let p = params(KeyType::EcP256);
    let (key, csr): (PrivateKey, _) = p.generate().expect("csr");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().expect("key");
    let ca_pem = ca_params.self_signed(&ca_key).expect("ca").pem();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf =
        CertificateSigningRequestParams::from_pem(&csr.pem).expect("csr").signed_by(&issuer).expect("sign").pem();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let expected =
        Expected { public_key_raw: key.public_key_raw(), common_name: Some("bench.example.com"), sans: &p.sans, now };
    let chain = vec![ca_pem];
    c.bench_function("verify_issued/ec-p256", |b| b.iter(|| verify_issued(&expected, &leaf, &chain).expect("valid")));

    // What a CA behind a script or ACME returns: leaf, intermediate, root.
    let mut root_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    root_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    root_params.distinguished_name.push(rcgen::DnType::CommonName, "Bench Root");
    let root_key = KeyPair::generate().expect("key");
    let root_pem = root_params.self_signed(&root_key).expect("root").pem();
    let root = Issuer::new(root_params, root_key);
    let mut mid_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    mid_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    mid_params.distinguished_name.push(rcgen::DnType::CommonName, "Bench Intermediate");
    let mid_key = KeyPair::generate().expect("key");
    let mid_pem = mid_params.signed_by(&mid_key, &root).expect("intermediate").pem();
    let mid = Issuer::new(mid_params, mid_key);
    let leaf = CertificateSigningRequestParams::from_pem(&csr.pem).expect("csr").signed_by(&mid).expect("sign").pem();
    let chain = vec![mid_pem, root_pem];
    c.bench_function("verify_issued/ec-p256-with-intermediate", |b| {
        b.iter(|| verify_issued(&expected, &leaf, &chain).expect("valid"))
    });

    // Reading the PEM an issuance returns (leaf, intermediate, root): certhost's reader
    // beside the `pem` crate's, which it falls back to for anything but plain PEM.
    let text = format!("{leaf}{}{}", chain[0], chain[1]);
    let mut g = c.benchmark_group("pem_read/leaf-intermediate-root");
    g.bench_function("certhost", |b| b.iter(|| certhost::cert::pem_certificates(&text).expect("PEM")));
    g.bench_function("pem-crate", |b| b.iter(|| pem::parse_many(&text).expect("PEM")));
    g.finish();
}

criterion_group!(benches, key_and_csr, csr_parse, verify);
criterion_main!(benches);
