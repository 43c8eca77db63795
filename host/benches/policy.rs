//! A profile's checks of a request: the policy every issuance passes before a key is made
//! (issue 9). Run: `cargo bench -p certhost --bench policy`.

use certhost::csr::{San, Subject};
use certhost::profile::{NameRequest, ProfileDef};
use criterion::{Criterion, criterion_group, criterion_main};

fn request() -> NameRequest {
    NameRequest {
        common_name: Some("www.example.com".into()),
        sans: ["www", "api", "mail", "shop", "static"].iter().map(|h| San::Dns(format!("{h}.example.com"))).collect(),
        subject: Subject::default(),
    }
}

fn check_request(c: &mut Criterion) {
    let plain: ProfileDef = toml::from_str(
        "accounts = [\"a\"]\n[sans]\nallowed_types = [\"DNS\"]\ndns_suffixes = [\".example.com\"]\nmax = 10\n",
    )
    .expect("profile");
    let patterns: ProfileDef = toml::from_str(
        "accounts = [\"a\"]\n[cn]\nallowed = '[a-z0-9.-]+'\n[sans]\nallowed_types = [\"DNS\"]\n\
         dns_suffixes = [\".example.com\"]\ndns_regex = '[a-z0-9-]+\\.example\\.com'\nmax = 10\n",
    )
    .expect("profile");
    let req = request();
    let mut g = c.benchmark_group("profile_check_request");
    g.bench_function("suffixes/5_sans", |b| b.iter(|| plain.check_request("p", &req).expect("allowed")));
    g.bench_function("patterns/5_sans", |b| b.iter(|| patterns.check_request("p", &req).expect("allowed")));
    g.finish();
}

criterion_group!(benches, check_request);
criterion_main!(benches);
