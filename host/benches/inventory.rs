//! Inventory at 10 k, 100 k and 1 M certificates (issue 9, issue 7's scale requirement):
//! insert, list expiring within 30 days (a page of 100, the API's default, and of 1000, its
//! maximum), and the renewal scheduler's scan (`mark_expired` + `claim_due_renewals`).
//! Run: `cargo bench -p certhost --bench inventory` (add `-- 1000000` style filters as usual).
//!
//! **Fixture.** Building 1 M rows through `insert_certificate` takes many minutes, so each
//! size is generated once with raw SQL in large transactions (schema and vault check made by
//! `Inventory::open`, so the file is a real inventory) into
//! `TARGET/release/bench-inventory/N/`, and reused by later runs (delete the directory to
//! rebuild it). Every row carries the same real certificate PEM (so listing costs what it costs
//! in production: PEM parse per row) with unique thumbprints, and one shared chain. "Now" is
//! pinned to [`NOW`]. Shape of the data, per row `i` (deterministic):
//! - 1 % expire within the next 30 days (the set `list --expiring-within 30` returns), of which
//!   a tenth is already past notAfter while still `active` (what `mark_expired` finds);
//! - 99 % expire 31–395 days from now; 10 % of all rows are `superseded`;
//! - active rows have `renew_after` = notAfter − 30 days, so the 1 % are due for renewal.
//!
//! Mutating benchmarks undo their changes (leases, statuses, inserted rows) with raw SQL
//! outside the timed section, so the fixture stays the same between runs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use certhost::inventory::{Inventory, ListFilter, NewCertificate};
use certhost::vault::MasterKey;
use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use rusqlite::{Connection, params};

/// Written when a fixture is complete; renamed whenever the fixture's shape changes (v2: every
/// row has a chain, schema 5; v3: no statistics, as in a real inventory).
const FIXTURE_MARKER: &str = "complete-v3";

/// The pinned "now" of every fixture (2027-01-15).
const NOW: i64 = 1_800_000_000;
const DAY: i64 = 86_400;
const SIZES: [u64; 3] = [10_000, 100_000, 1_000_000];
/// Base64 of 32 zero bytes: the fixture's master key.
const MASTER_KEY: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

fn vault() -> MasterKey {
    MasterKey::from_base64(MASTER_KEY).expect("literal key")
}

fn fixture_root() -> PathBuf {
    // The bench binary lives in TARGET/release/deps/.
    let exe = std::env::current_exe().expect("current exe");
    exe.parent().and_then(Path::parent).expect("target/release").join("bench-inventory")
}

/// A real certificate, DER and PEM, with a fresh key (unique thumbprint every call).
fn real_certificate(cn: &str) -> (Vec<u8>, String) {
    let key = rcgen::KeyPair::generate().expect("key");
    let params = rcgen::CertificateParams::new(vec![cn.to_owned()]).expect("params");
    let cert = params.self_signed(&key).expect("sign");
    (cert.der().to_vec(), cert.pem())
}

/// splitmix64: a deterministic spread of rows without a rand dependency.
fn mix(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The data directory holding `n` certificates, built on first use.
fn fixture(n: u64) -> PathBuf {
    let dir = fixture_root().join(n.to_string());
    // The marker names the fixture's shape; a fixture of an older shape is rebuilt.
    if dir.join(FIXTURE_MARKER).exists() {
        return dir;
    }
    let started = std::time::Instant::now();
    eprintln!("building the {n}-certificate fixture in {} (once)", dir.display());
    let _ = std::fs::remove_dir_all(&dir);
    drop(Inventory::open(&dir, vault()).expect("create inventory"));
    let (_, pem) = real_certificate("fixture.example.com");
    let mut conn = Connection::open(dir.join("certhost.db")).expect("open fixture");
    conn.pragma_update(None, "synchronous", "OFF").expect("pragma");
    // Every row shares one chain, as an inventory issued by one CA does (read per row by list).
    let (_, chain_pem) = real_certificate("Fixture CA");
    conn.execute("INSERT INTO chains (id, pem) VALUES (1, ?1)", [&chain_pem]).expect("chain");
    let mut i = 0u64;
    while i < n {
        let tx = conn.transaction().expect("tx");
        {
            let mut stmt = tx
                .prepare(
                    "INSERT INTO certificates (id, pem, serial, sha1, sha256, subject, issuer, common_name, sans,
                        not_before, not_after, key_algorithm, key_bits, status, source, profile, account,
                        created_at, renew_after, chain_id)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'CN=Bench CA', ?7, ?8, ?9, ?10, 'ec-p256', 256, ?11,
                        'issue', 'web', 'lab', ?9, ?12, 1)",
                )
                .expect("prepare");
            let end = (i + 50_000).min(n);
            while i < end {
                let h = mix(i);
                let not_after = if h.is_multiple_of(100) {
                    // 1 %: within 30 days; a tenth of those already past notAfter.
                    if (h / 100).is_multiple_of(10) {
                        NOW - 1 - (h >> 20) as i64 % DAY
                    } else {
                        NOW + (h >> 20) as i64 % (30 * DAY)
                    }
                } else {
                    NOW + 31 * DAY + (h >> 20) as i64 % (365 * DAY)
                };
                let status = if (h >> 8).is_multiple_of(10) { "superseded" } else { "active" };
                let renew_after = (status == "active").then_some(not_after - 30 * DAY);
                let cn = format!("host{i}.example.com");
                stmt.execute(params![
                    i as i64 + 1,
                    pem,
                    format!("{:016x}", h),
                    format!("{:040x}", i),
                    format!("{:064x}", i),
                    format!("CN={cn}"),
                    cn,
                    format!("[\"DNS:{cn}\"]"),
                    not_after - 90 * DAY,
                    not_after,
                    status,
                    renew_after,
                ])
                .expect("insert");
                i += 1;
            }
        }
        tx.commit().expect("commit");
    }
    // No ANALYZE: nothing runs it on a real inventory, and SQLite plans differently with
    // statistics (with them, the fixture hid a claim query that read every active row).
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);").expect("checkpoint");
    std::fs::write(dir.join(FIXTURE_MARKER), b"").expect("marker");
    eprintln!("built in {:.1?}", started.elapsed());
    dir
}

fn open(dir: &Path) -> (Inventory, Connection) {
    let mut inv = Inventory::open(dir, vault()).expect("open fixture");
    inv.set_clock(Some(NOW));
    let raw = Connection::open(dir.join("certhost.db")).expect("raw");
    raw.busy_timeout(Duration::from_secs(5)).expect("busy");
    (inv, raw)
}

fn list_expiring(c: &mut Criterion) {
    let mut g = c.benchmark_group("inventory_list_expiring_30d");
    g.sample_size(20);
    for n in SIZES {
        let (inv, _) = open(&fixture(n));
        for page in [100u32, 1000] {
            let filter = ListFilter { expiring_within_days: Some(30), limit: page, ..ListFilter::default() };
            g.bench_with_input(BenchmarkId::new(format!("page{page}"), n), &filter, |b, f| {
                b.iter(|| inv.list(f).expect("list"))
            });
        }
    }
    g.finish();
}

fn scheduler_scan(c: &mut Criterion) {
    let mut g = c.benchmark_group("inventory_scheduler_scan");
    g.sample_size(20);
    for n in SIZES {
        let (mut inv, raw) = open(&fixture(n));
        // The scheduler's round: expire what is past notAfter, then claim a batch (20) of due
        // renewals. Setup puts back what the previous iteration changed.
        g.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter_batched(
                || {
                    // Both through indexes (certificates_due, certificates_status_not_after):
                    // a full-table UPDATE here made one run of this group take many minutes.
                    raw.execute(
                        "UPDATE certificates SET renewal_lease_until = NULL
                         WHERE status = 'active' AND renew_after IS NOT NULL AND renew_after <= ?1
                           AND renewal_lease_until IS NOT NULL",
                        [NOW],
                    )
                    .expect("reset leases");
                    raw.execute("UPDATE certificates SET status = 'active' WHERE status = 'expired'", [])
                        .expect("reset expiry");
                },
                |()| {
                    let expired = inv.mark_expired("bench").expect("expire");
                    let (claimed, _) = inv.claim_due_renewals(600, 20).expect("claim");
                    (expired, claimed)
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

fn insert(c: &mut Criterion) {
    let mut g = c.benchmark_group("inventory_insert");
    g.sample_size(20);
    for n in SIZES {
        let (mut inv, raw) = open(&fixture(n));
        g.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter_batched(
                || real_certificate("insert.example.com").0,
                |der| {
                    let new = NewCertificate {
                        der: &der,
                        chain: &[],
                        key: None,
                        source: "bench-insert",
                        profile: None,
                        account: None,
                        predecessor_id: None,
                    };
                    inv.insert_certificate(&new, "bench").expect("insert")
                },
                BatchSize::PerIteration,
            )
        });
        raw.execute("DELETE FROM certificates WHERE source = 'bench-insert'", []).expect("clean up");
    }
    g.finish();
}

criterion_group!(benches, list_expiring, scheduler_scan, insert);
criterion_main!(benches);
