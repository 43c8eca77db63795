//! Library-level tests of the verifier (invariant 1) and the inventory's guarantees.

use certhost::csr::{CsrParams, San, Subject};
use certhost::inventory::{AuditFilter, InsertOutcome, Inventory, NewCertificate};
use certhost::key::KeyType;
use certhost::vault::MasterKey;
use certhost::verify::{Expected, VerificationError, verify_issued};
use rcgen::{BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType, IsCa, Issuer, KeyPair};
use time::{Duration, OffsetDateTime};

struct TestCa {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn test_ca(name: &str) -> TestCa {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("self-signed");
    TestCa { pem: cert.pem(), issuer: Issuer::new(params, key) }
}

fn request(cn: &str, sans: Vec<San>) -> CsrParams {
    CsrParams {
        subject: Subject { common_name: Some(cn.into()), ..Subject::default() },
        sans,
        key_type: KeyType::EcP256,
        hash: None,
    }
}

fn sign(ca: &TestCa, csr_pem: &str, days_from: i64, days_to: i64) -> String {
    let mut csr = CertificateSigningRequestParams::from_pem(csr_pem).expect("csr");
    let now = OffsetDateTime::now_utc();
    csr.params.not_before = now + Duration::days(days_from);
    csr.params.not_after = now + Duration::days(days_to);
    csr.signed_by(&ca.issuer).expect("sign").pem()
}

/// A certificate as `certhost import` hands it to the inventory.
fn imported<'a>(der: &'a [u8], chain: &'a [Vec<u8>], key: Option<&'a certhost::key::PrivateKey>) -> NewCertificate<'a> {
    NewCertificate { der, chain, key, source: "import", profile: None, account: None, predecessor_id: None }
}

fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

#[test]
fn the_verifier_accepts_a_correct_certificate_and_refuses_each_kind_of_wrong_one() {
    let ca = test_ca("Verifier CA");
    let other_ca = test_ca("Other CA");
    let sans = vec![San::Dns("app.example".into()), San::Ip("192.0.2.5".parse().expect("ip"))];
    let req = request("app.example", sans.clone());
    let (key, csr) = req.generate().expect("csr");
    let expected =
        Expected { public_key_raw: key.public_key_raw(), common_name: Some("app.example"), sans: &sans, now: now() };

    let good = sign(&ca, &csr.pem, -1, 30);
    let ok = verify_issued(&expected, &good, std::slice::from_ref(&ca.pem)).expect("valid");
    assert_eq!(ok.chain.len(), 1);
    // Avi style: the chain appended to the certificate text, with a duplicate of the leaf.
    let ok = verify_issued(&expected, &format!("{good}{}", ca.pem), std::slice::from_ref(&good)).expect("valid");
    assert_eq!(ok.chain.len(), 1, "leaf duplicate dropped");
    // A chain certificate given twice is kept once (red-team walkthrough of stop 48).
    let ok = verify_issued(&expected, &good, &[ca.pem.clone(), ca.pem.clone()]).expect("valid");
    assert_eq!(ok.chain.len(), 1, "chain duplicate dropped");
    // A chain entry with no certificate in it is noted, not silently dropped (author review of
    // stop 38), nor refused (the CA has issued: diff review of stop 38); an empty one is "no
    // chain".
    let junk = verify_issued(&expected, &good, &["junk".to_owned(), ca.pem.clone()]).expect("stored");
    assert_eq!((junk.chain.len(), junk.ignored_chain_entries), (1, vec![1]));
    let ok = verify_issued(&expected, &good, &[String::new(), ca.pem.clone()]).expect("an empty entry is no chain");
    assert_eq!((ok.chain.len(), ok.ignored_chain_entries.len()), (1, 0));

    // Another key: a certificate for a different CSR.
    let (_, other_csr) = req.generate().expect("csr");
    let wrong_key = sign(&ca, &other_csr.pem, -1, 30);
    assert_eq!(verify_issued(&expected, &wrong_key, &[]).unwrap_err(), VerificationError::KeyMismatch);

    // Other names: same key, fewer SANs.
    let fewer = request("app.example", vec![San::Dns("app.example".into())]);
    let fewer_csr = certhost::csr::build(&fewer, &key).expect("csr");
    let missing = sign(&ca, &fewer_csr.pem, -1, 30);
    assert_eq!(
        verify_issued(&expected, &missing, &[]).unwrap_err(),
        VerificationError::MissingName("IP:192.0.2.5".into())
    );

    // Expired, and not yet valid.
    let expired = sign(&ca, &csr.pem, -30, -1);
    assert!(matches!(verify_issued(&expected, &expired, &[]), Err(VerificationError::Expired { .. })));
    let future = sign(&ca, &csr.pem, 2, 30);
    assert!(matches!(verify_issued(&expected, &future, &[]), Err(VerificationError::NotYetValid { .. })));

    // A chain that does not link.
    assert_eq!(
        verify_issued(&expected, &good, std::slice::from_ref(&other_ca.pem)).unwrap_err(),
        VerificationError::ChainBroken { position: 0 }
    );

    // Garbage.
    assert_eq!(verify_issued(&expected, "hello", &[]).unwrap_err(), VerificationError::NoCertificate);
    let broken = "-----BEGIN CERTIFICATE-----\nMIIBAAA=\n-----END CERTIFICATE-----\n";
    assert!(matches!(verify_issued(&expected, broken, &[]), Err(VerificationError::Unparsable(_))));
}

#[test]
fn inventory_stores_keys_sealed_dedups_and_audits_in_the_same_transaction() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut inv = Inventory::open(dir.path(), MasterKey::generate()).expect("open");
    let ca = test_ca("Inventory CA");
    let (key, csr) = request("inv.example", vec![San::Dns("inv.example".into())]).generate().expect("csr");
    let pem = sign(&ca, &csr.pem, -1, 30);
    let der = certhost::cert::pem_certificates(&pem).expect("pem").remove(0);
    let new = imported(&der, &[], Some(&key));
    let InsertOutcome::Inserted(id) = inv.insert_certificate(&new, "test").expect("insert") else {
        panic!("expected insert")
    };
    assert_eq!(inv.insert_certificate(&new, "test").expect("again"), InsertOutcome::Duplicate(id));
    assert_eq!(inv.count().expect("count"), 1);

    let record = inv.find(&id.to_string()).expect("find").expect("present");
    let back = inv.private_key(record.key_id.expect("key id")).expect("unseal");
    assert_eq!(back.public_key_raw(), key.public_key_raw());

    // A key that is not the certificate's is refused and nothing is written.
    let (other, _) = request("x.example", vec![]).generate().expect("csr");
    let der2 = certhost::cert::pem_certificates(&sign(
        &ca,
        &certhost::csr::build(&request("y.example", vec![]), &key).expect("csr").pem,
        -1,
        30,
    ))
    .expect("pem")
    .remove(0);
    let bad = NewCertificate { der: &der2, key: Some(&other), ..new };
    assert!(matches!(inv.insert_certificate(&bad, "test"), Err(certhost::inventory::InventoryError::KeyMismatch)));
    assert_eq!(inv.count().expect("count"), 1);
    let events = inv.audit_events(&AuditFilter::default()).expect("audit");
    assert_eq!(events.len(), 1, "one change, one event");
    assert_eq!(events[0].object_id.as_deref(), Some(id.to_string().as_str()));
}

#[test]
fn a_chain_is_stored_once_and_every_certificate_reads_its_own_back() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut inv = Inventory::open(dir.path(), MasterKey::generate()).expect("open");
    let (ca, other_ca) = (test_ca("Shared CA"), test_ca("Other CA"));
    let chain_der = |ca: &TestCa| certhost::cert::pem_certificates(&ca.pem).expect("pem");
    let (shared, other) = (chain_der(&ca), chain_der(&other_ca));
    let mut ids = Vec::new();
    for (n, (issuer, chain)) in
        [(&ca, shared.as_slice()), (&ca, shared.as_slice()), (&other_ca, other.as_slice()), (&ca, &[][..])]
            .into_iter()
            .enumerate()
    {
        let (_, csr) = request(&format!("c{n}.example"), vec![]).generate().expect("csr");
        let der = certhost::cert::pem_certificates(&sign(issuer, &csr.pem, -1, 30)).expect("pem").remove(0);
        let InsertOutcome::Inserted(id) = inv.insert_certificate(&imported(&der, chain, None), "test").expect("insert")
        else {
            panic!("expected insert")
        };
        ids.push(id);
    }
    let chains: Vec<String> =
        ids.iter().map(|id| inv.find(&id.to_string()).expect("find").expect("present").chain_pem).collect();
    assert_eq!(chains, [ca.pem.clone(), ca.pem.clone(), other_ca.pem.clone(), String::new()]);
    drop(inv);
    let db = rusqlite::Connection::open(dir.path().join("certhost.db")).expect("open db");
    let stored: i64 = db.query_row("SELECT COUNT(*) FROM chains", [], |r| r.get(0)).expect("count");
    assert_eq!(stored, 2, "two distinct chains, each once");
    let copies: i64 =
        db.query_row("SELECT COUNT(*) FROM certificates WHERE chain_pem <> ''", [], |r| r.get(0)).expect("count");
    assert_eq!(copies, 0, "no certificate row keeps a copy of its chain");
}

/// Issues `cn` from `ca` and imports it with its key; returns its id.
fn store(inv: &mut Inventory, ca: &TestCa, cn: &str) -> i64 {
    let (key, csr) = request(cn, vec![San::Dns(cn.into())]).generate().expect("csr");
    let der = certhost::cert::pem_certificates(&sign(ca, &csr.pem, -1, 30)).expect("pem").remove(0);
    match inv.insert_certificate(&imported(&der, &[], Some(&key)), "test").expect("insert") {
        InsertOutcome::Inserted(id) => id,
        InsertOutcome::Duplicate(id) => panic!("{cn} already stored as {id}"),
    }
}

/// Regression: ids were rowids, so deleting the newest certificate handed its id — and its
/// audit history, a keyCompromise revocation included — to the next certificate stored.
#[test]
fn a_deleted_certificates_id_and_history_never_pass_to_a_new_certificate() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut inv = Inventory::open(dir.path(), MasterKey::generate()).expect("open");
    let ca = test_ca("Id CA");
    let first = store(&mut inv, &ca, "one.example");
    let newest = store(&mut inv, &ca, "two.example");
    inv.record_revoked(newest, "keyCompromise", "", "test", true).expect("revoke");
    inv.delete_certificate(newest, "test").expect("delete");
    let next = store(&mut inv, &ca, "three.example");
    assert!(next > newest && newest > first, "ids {first}, {newest} (deleted), then {next}");
    let history = inv
        .audit_events(&AuditFilter {
            object_type: Some("certificate".into()),
            object_id: Some(next.to_string()),
            ..AuditFilter::default()
        })
        .expect("audit");
    let actions: Vec<&str> = history.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["certificate.import"], "only the new certificate's own history");
}

#[test]
fn audit_events_cannot_be_edited_or_deleted() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut inv = Inventory::open(dir.path(), MasterKey::generate()).expect("open");
    inv.audit(&certhost::inventory::NewAuditEvent {
        actor: "test",
        action: "test.event",
        object_type: "test",
        object_id: None,
        outcome: "success",
        detail: serde_json::json!({}),
    })
    .expect("audit");
    drop(inv);
    let conn = rusqlite::Connection::open(dir.path().join("certhost.db")).expect("open");
    let upd = conn.execute("UPDATE audit_events SET outcome = 'x'", []).unwrap_err().to_string();
    assert!(upd.contains("append-only"), "{upd}");
    assert!(conn.execute("DELETE FROM audit_events", []).unwrap_err().to_string().contains("append-only"));
}

/// Upgrade review of stop 39: a newer certhost migrated the inventory while an older `serve`
/// still had it open, and that serve went on writing rows as its own schema had them (a
/// keyCompromise revocation recorded nothing). A migration now waits for the directory to be
/// its own, and refuses, leaving the schema as it was, while another process holds it.
#[test]
fn an_inventory_is_not_migrated_while_another_process_has_it_open() {
    let dir = tempfile::tempdir().expect("tmp");
    let key = MasterKey::generate();
    drop(Inventory::open(dir.path(), key.clone()).expect("create"));
    let db = dir.path().join("certhost.db");
    let version = || -> u32 {
        rusqlite::Connection::open(&db)
            .expect("db")
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .expect("version")
    };
    let current = version();
    // As an older certhost left it: one version behind (the last migration is safe to run again).
    rusqlite::Connection::open(&db).expect("db").pragma_update(None, "user_version", current - 1).expect("older");
    // An older serve's hold, as an open file of its own.
    let older_serve = std::fs::File::open(dir.path().join("certhost.lock")).expect("lock file");
    older_serve.try_lock_shared().expect("shared");
    let started = std::time::Instant::now();
    let err = Inventory::open(dir.path(), key.clone()).expect_err("not while another process has it").to_string();
    assert!(
        err.contains(&format!("needs upgrading from schema version {} to {current}", current - 1))
            && err.contains("another certhost process has it open"),
        "{err}"
    );
    assert!(started.elapsed() >= std::time::Duration::from_secs(5), "it waited for the other process first");
    assert_eq!(version(), current - 1, "nothing was migrated");
    drop(older_serve);
    let inv = Inventory::open(dir.path(), key.clone()).expect("migrates once the directory is free");
    assert_eq!(version(), current);
    // The hold is shared again: another process may open the directory meanwhile.
    let other = std::fs::File::open(dir.path().join("certhost.lock")).expect("lock file");
    other.try_lock_shared().expect("shared beside the migrated open");
    drop(inv);
}

/// Regression (issue 9): concurrent issuance over HTTP failed one request in five with
/// "database is locked" — a deferred transaction that reads (the duplicate check) and then
/// writes cannot be upgraded after another connection committed, and SQLite does not wait for
/// that. Transactions now begin IMMEDIATE, so writers on separate connections queue.
#[test]
fn concurrent_writers_on_separate_connections_queue_instead_of_failing() {
    let dir = tempfile::tempdir().expect("tmp");
    let key = MasterKey::generate();
    drop(Inventory::open(dir.path(), key.clone()).expect("create"));
    let ca = test_ca("Concurrency CA");
    let ders: Vec<Vec<Vec<u8>>> = (0..4)
        .map(|t| {
            (0..25)
                .map(|i| {
                    let cn = format!("w{t}-{i}.example");
                    let (_, csr) = request(&cn, vec![San::Dns(cn.clone())]).generate().expect("csr");
                    certhost::cert::pem_certificates(&sign(&ca, &csr.pem, -1, 30)).expect("pem").remove(0)
                })
                .collect()
        })
        .collect();
    let path = dir.path();
    std::thread::scope(|s| {
        for batch in &ders {
            let key = key.clone();
            s.spawn(move || {
                let mut inv = Inventory::open(path, key).expect("open");
                for der in batch {
                    let new = NewCertificate {
                        der,
                        chain: &[],
                        key: None,
                        source: "import",
                        profile: None,
                        account: None,
                        predecessor_id: None,
                    };
                    inv.insert_certificate(&new, "test").expect("insert while others write");
                }
            });
        }
    });
    assert_eq!(Inventory::open(dir.path(), key).expect("open").count().expect("count"), 100);
}

/// Regression: `renewal.auto = false` did not stop a certificate in retry backoff — the
/// profile change only rescheduled certificates without failed attempts, and the scheduler
/// never asked the profile.
#[test]
fn auto_false_stops_a_certificate_in_retry_backoff_and_the_scheduler_skips_it() {
    use certhost::profile::ProfileDef;
    let dir = tempfile::tempdir().expect("tmp");
    let mut inv = Inventory::open(dir.path(), MasterKey::generate()).expect("open");
    // The profile's only CA account does not exist: every renewal fails and backs off.
    let mut profile = ProfileDef { accounts: vec!["gone".into()], ..ProfileDef::default() };
    inv.create_profile("web", &profile, "api", "test").expect("profile");
    let ca = test_ca("Backoff CA");
    let (key, csr) = request("b.example", vec![San::Dns("b.example".into())]).generate().expect("csr");
    let der = certhost::cert::pem_certificates(&sign(&ca, &csr.pem, -1, 30)).expect("pem").remove(0);
    let new = NewCertificate { profile: Some("web"), ..imported(&der, &[], Some(&key)) };
    let InsertOutcome::Inserted(id) = inv.insert_certificate(&new, "test").expect("insert") else { panic!("insert") };

    let registry = certhost::connector::Registry::new(crate::helpers::certhost_bin().into(), None);
    let env = |_: &str| None;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let round = |inv: &mut Inventory| {
        let mut p = certhost::issue::Pipeline {
            inventory: inv,
            connectors: &registry,
            env: &env,
            actor: certhost::renewal::ACTOR,
        };
        rt.block_on(certhost::renewal::round(&mut p, 600)).expect("round")
    };
    inv.set_renew_after(id, Some(now() - 10)).expect("due");
    assert_eq!(round(&mut inv).failed, vec![id]);
    let scheduled = inv.scheduled_renewals(10).expect("scheduled");
    assert_eq!((scheduled.len(), scheduled[0].attempts), (1, 1), "in retry backoff: {scheduled:?}");

    // The operator turns automatic renewal off: the retry goes too.
    profile.renewal.auto = false;
    inv.update_profile("web", &profile, "test").expect("profile");
    assert_eq!(inv.scheduled_renewals(10).expect("scheduled"), vec![], "auto = false clears the retry");

    // A schedule left behind anyway (an older version's) is cleared by the scheduler, not renewed.
    inv.set_renew_after(id, Some(now() - 10)).expect("leftover");
    let orders_before = inv.orders(None, 0).expect("orders").len();
    let report = round(&mut inv);
    assert!(report.failed.is_empty() && report.renewed.is_empty() && report.pending.is_empty(), "{report:?}");
    assert_eq!(inv.orders(None, 0).expect("orders").len(), orders_before, "no renewal order was written");
    assert_eq!(inv.scheduled_renewals(10).expect("scheduled"), vec![]);
}

/// Certificates `NAME.example` of profile `web`, signed by a new CA named `ca_name`, each due
/// for renewal now; their ids.
fn due_in_web(inv: &mut Inventory, ca_name: &str, names: &[&str]) -> Vec<i64> {
    let ca = test_ca(ca_name);
    names
        .iter()
        .map(|name| {
            let cn = format!("{name}.example");
            let (key, csr) = request(&cn, vec![San::Dns(cn.clone())]).generate().expect("csr");
            let der = certhost::cert::pem_certificates(&sign(&ca, &csr.pem, -1, 30)).expect("pem").remove(0);
            let new = NewCertificate { profile: Some("web"), ..imported(&der, &[], Some(&key)) };
            let InsertOutcome::Inserted(id) = inv.insert_certificate(&new, "test").expect("insert") else {
                panic!("insert")
            };
            inv.set_renew_after(id, Some(now() - 10)).expect("due");
            id
        })
        .collect()
}

/// Operator review of stop 36: a round renewed every certificate it had claimed, one after
/// another, before `serve` could stop, so a hanging CA held a shutdown for up to 20 calls'
/// deadlines. Told to stop, a round ends after the renewal in flight and gives back the rest,
/// due at once for the next round.
#[test]
fn a_round_told_to_stop_gives_back_the_renewals_it_has_not_begun() {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use certhost::profile::ProfileDef;
    let dir = tempfile::tempdir().expect("tmp");
    let mut inv = Inventory::open(dir.path(), MasterKey::generate()).expect("open");
    let profile = ProfileDef { accounts: vec!["gone".into()], ..ProfileDef::default() };
    inv.create_profile("web", &profile, "api", "test").expect("profile");
    let ids = due_in_web(&mut inv, "Stop CA", &["a", "b", "c"]);
    let registry = certhost::connector::Registry::new(crate::helpers::certhost_bin().into(), None);
    let env = |_: &str| None;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    // Asked before the renewals (1), before the first (2) and before the second (3): stop then.
    let asked = AtomicUsize::new(0);
    let stopping = || asked.fetch_add(1, Ordering::SeqCst) >= 2;
    let mut p = certhost::issue::Pipeline {
        inventory: &mut inv,
        connectors: &registry,
        env: &env,
        actor: certhost::renewal::ACTOR,
    };
    let report = rt.block_on(certhost::renewal::round_until(&mut p, 600, &stopping)).expect("round");
    assert_eq!(report.failed.len(), 1, "one renewal ran: {report:?}");
    let rest: Vec<i64> = ids.iter().copied().filter(|id| !report.failed.contains(id)).collect();
    // Given back unbegun: no attempt counted, and due now, not after the claim's lease.
    let report = rt.block_on(certhost::renewal::round(&mut p, 600)).expect("round");
    let mut again = report.failed.clone();
    again.sort();
    assert_eq!(again, rest, "the next round takes the two left: {report:?}");
}

/// Operator review of stop 39: a round cut short by a database error left its claims, and the
/// certificates waited out the whole lease (ten minutes) after the database recovered. The next
/// round gives them back first — each only while it is still that round's claim.
#[test]
fn a_round_gives_back_the_claims_a_failed_round_left_and_only_those() {
    use certhost::profile::ProfileDef;
    let dir = tempfile::tempdir().expect("tmp");
    let mut inv = Inventory::open(dir.path(), MasterKey::generate()).expect("open");
    let profile = ProfileDef { accounts: vec!["gone".into()], ..ProfileDef::default() };
    inv.create_profile("web", &profile, "api", "test").expect("profile");
    let ids = due_in_web(&mut inv, "Stranded CA", &["a", "b"]);
    // The failed round's claims, as the database kept them.
    let (claimed, until) = inv.claim_due_renewals(600, 20).expect("claim");
    assert_eq!(claimed.len(), 2);
    let registry = certhost::connector::Registry::new(crate::helpers::certhost_bin().into(), None);
    let env = |_: &str| None;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let mut p = certhost::issue::Pipeline {
        inventory: &mut inv,
        connectors: &registry,
        env: &env,
        actor: certhost::renewal::ACTOR,
    };
    // The scheduler remembers the first as its own; the second's claim ends at another time
    // (another scheduler's, say): left alone.
    let mut stranded = vec![(ids[0], until), (ids[1], until + 1)];
    let report = rt.block_on(certhost::renewal::round_keeping(&mut p, 600, &|| false, &mut stranded)).expect("round");
    assert_eq!(report.failed, vec![ids[0]], "the first is renewed (and fails: no account) at once: {report:?}");
    assert!(stranded.is_empty(), "{stranded:?}");
}

/// Operator review of stop 36: `/metrics` counted as expired only active certificates past
/// notAfter, and the scheduler marks those `expired` within a round: the gauge read 0 while
/// certificates had expired. It counts those expired in the last 30 days too, and older ones
/// whose renewal is still retried; not one let expire long ago.
#[test]
fn the_expired_gauge_counts_certificates_the_scheduler_marked_expired() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut inv = Inventory::open(dir.path(), MasterKey::generate()).expect("open");
    let ca = test_ca("Gauge CA");
    // Stored 70 days ago, when all were valid; the "retried" one's renewal failed then.
    let then = now() - 70 * 86_400;
    inv.set_clock(Some(then));
    let mut ids = Vec::new();
    for (name, to) in [("recent", -2), ("old", -60), ("retried", -61), ("live", 20)] {
        let (key, csr) = request(name, vec![San::Dns(format!("{name}.example"))]).generate().expect("csr");
        let der = certhost::cert::pem_certificates(&sign(&ca, &csr.pem, -90, to)).expect("pem").remove(0);
        let InsertOutcome::Inserted(id) =
            inv.insert_certificate(&imported(&der, &[], Some(&key)), "test").expect("insert")
        else {
            panic!("insert")
        };
        ids.push(id);
    }
    inv.set_renew_after(ids[2], Some(then - 10)).expect("due");
    let (claimed, until) = inv.claim_due_renewals(600, 10).expect("claim");
    assert_eq!(claimed, vec![ids[2]]);
    inv.record_renewal_failure(ids[2], until, "the CA is down", "test").expect("failure").expect("recorded");
    inv.set_clock(None);
    let expiring = |inv: &Inventory| inv.gauges().expect("gauges").expiring;
    assert_eq!(expiring(&inv)[0], ("expired", 3), "three active past notAfter");
    assert_eq!(inv.mark_expired("test").expect("marked").len(), 3);
    assert_eq!(expiring(&inv)[0], ("expired", 2), "the recent one and the retried one, not the old one");
    assert_eq!(expiring(&inv)[2], ("7-30", 1), "{:?}", expiring(&inv));
}

/// `ca` signing `csr` as `name` with the extensions in `ext` and `extra` arguments; the PEM.
fn openssl_signed(
    ca: &crate::helpers::OpensslCa,
    csr: &std::path::Path,
    name: &str,
    ext: &str,
    extra: &[&str],
) -> String {
    std::fs::read_to_string(ca.sign_with(csr, 30, &format!("{name}.pem"), ext, extra)).expect("certificate")
}

/// Regression (review of stop 30): the verifier vouched for leaves a client reads as more
/// than an end-entity certificate for its names — an OCSPSigning or codeSigning leaf, a
/// cRLSign one, a duplicated extension (which one does a client read?), an unknown critical
/// one — and for SHA-1 signatures; a chain could be of any
/// length, and an RSA-1024 issuer was reported as "does not link".
#[test]
fn the_verifier_refuses_leaves_clients_read_as_more_and_signatures_that_prove_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = crate::helpers::OpensslCa::new(dir.path(), "Purpose CA");
    let sans = vec![San::Dns("www.example.com".into())];
    let (key, csr) = request("www.example.com", sans.clone()).generate().expect("csr");
    let csr_path = dir.path().join("leaf.csr");
    std::fs::write(&csr_path, &csr.pem).expect("csr");
    let expected = Expected {
        public_key_raw: key.public_key_raw(),
        common_name: Some("www.example.com"),
        sans: &sans,
        now: now(),
    };
    let chain = [std::fs::read_to_string(&ca.cert).expect("ca")];
    let base = "subjectAltName=DNS:www.example.com\n";
    let check = |name: &str, ext: &str, extra: &[&str]| {
        let pem = openssl_signed(&ca, &csr_path, name, &format!("{base}{ext}"), extra);
        verify_issued(&expected, &pem, &chain).map(|_| ())
    };

    assert_eq!(
        check(
            "good",
            "basicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=critical,digitalSignature\n",
            &[]
        ),
        Ok(())
    );
    for (name, ext, usage) in [
        ("ocsp", "extendedKeyUsage=serverAuth,OCSPSigning\n", "OCSPSigning (extendedKeyUsage)"),
        ("code", "extendedKeyUsage=codeSigning\n", "codeSigning (extendedKeyUsage)"),
        ("any", "extendedKeyUsage=anyExtendedKeyUsage\n", "anyExtendedKeyUsage (extendedKeyUsage)"),
        ("crl", "keyUsage=critical,digitalSignature,cRLSign\n", "signing CRLs (keyUsage cRLSign)"),
    ] {
        assert_eq!(check(name, ext, &[]), Err(VerificationError::ForbiddenUsage(usage.into())), "{name}");
    }
    // A BER boolean (01, not FF): OpenSSL reads CA:TRUE, and so must the verifier.
    let ber = check("ber", "2.5.29.19=critical,DER:3003010101\n", &[]).unwrap_err();
    assert_eq!(ber, VerificationError::NotEndEntity { reason: "basicConstraints CA:TRUE" });
    // OpenSSL will not write an extension twice; rcgen adds its own SAN beside a custom one.
    let dup_ca = test_ca("Duplicate CA");
    let mut dup = CertificateSigningRequestParams::from_pem(&csr.pem).expect("csr");
    let mut san = vec![0x30, 0x11, 0x82, 0x0f];
    san.extend_from_slice(b"www.example.com");
    dup.params.custom_extensions.push(rcgen::CustomExtension::from_oid_content(&[2, 5, 29, 17], san));
    let twice = dup.signed_by(&dup_ca.issuer).expect("sign").pem();
    assert_eq!(
        verify_issued(&expected, &twice, std::slice::from_ref(&dup_ca.pem)).unwrap_err(),
        VerificationError::UncheckableExtension("it has the subjectAltName extension (2.5.29.17) twice".into())
    );
    let unknown = check("unknown", "1.2.3.4.5=critical,DER:0500\n", &[]).unwrap_err();
    assert_eq!(
        unknown,
        VerificationError::UncheckableExtension("its extension 1.2.3.4.5 is critical and unknown to certhost".into())
    );
    assert!(unknown.to_string().starts_with("the returned certificate cannot be checked: "), "{unknown}");

    // SHA-1: refused with a chain and without one (the leaf's own signature is named).
    let sha1 = openssl_signed(&ca, &csr_path, "sha1", base, &["-sha1"]);
    for chain in [&chain[..], &[]] {
        assert_eq!(
            verify_issued(&expected, &sha1, chain).unwrap_err(),
            VerificationError::WeakSignature { position: 0, algorithm: "ecdsa-with-SHA1".into() }
        );
    }

    // Eleven copies of the root after the leaf: not a chain anyone sends.
    let good = openssl_signed(&ca, &csr_path, "good2", base, &[]);
    let long = vec![chain[0].clone(); 11];
    assert_eq!(verify_issued(&expected, &good, &long).unwrap_err(), VerificationError::ChainTooLong(11));

    // An RSA-1024 issuer with SHA-256: ring cannot check the signature, and says so.
    let weak = crate::helpers::OpensslCa::with_key(&dir.path().join("weak"), "Weak Root", &["rsa:1024"]);
    let by_weak = openssl_signed(&weak, &csr_path, "by-weak", base, &[]);
    let weak_chain = [std::fs::read_to_string(&weak.cert).expect("weak root")];
    let err = verify_issued(&expected, &by_weak, &weak_chain).unwrap_err();
    assert_eq!(
        err,
        VerificationError::UnsupportedSignature {
            position: 0,
            algorithm:
                "sha256WithRSAEncryption by a 1024-bit RSA key (certhost verifies RSA keys of 2048 to 8192 bits)".into()
        },
        "{err}"
    );
}

/// Operator review of stop 41: after a kill -9 mid-round, a restarted `serve` left the
/// certificates the dead process had claimed (not yet sent to a CA) alone for the whole
/// ten-minute lease, some expiring meanwhile. A `serve` that has the data directory to itself
/// lets go of them; one that does not (another process has it open) leaves them.
#[test]
fn serve_lets_go_of_a_dead_processs_renewal_claims_only_when_alone() {
    let dir = tempfile::tempdir().expect("tmp");
    drop(certhost::inventory::open_data_dir(dir.path(), None).expect("create"));
    let db = dir.path().join("certhost.db");
    let claim = |until: Option<i64>| {
        let conn = rusqlite::Connection::open(&db).expect("db");
        conn.execute("DELETE FROM certificates", []).expect("clear");
        conn.execute(
            "INSERT INTO certificates (pem, serial, sha1, sha256, subject, issuer, sans, not_before, not_after,
                 key_algorithm, key_bits, status, source, created_at, renew_after, renewal_lease_until)
             VALUES ('leaf', '01', '01', '01', 'CN=a', 'CN=ca', '[]', 0, 4102444800, 'ec-p256', 256, 'active', 'issue', 0, 1, ?1)",
            [until],
        )
        .expect("claimed certificate");
    };
    let lease = || -> Option<i64> {
        rusqlite::Connection::open(&db)
            .expect("db")
            .query_row("SELECT renewal_lease_until FROM certificates", [], |r| r.get(0))
            .expect("lease")
    };
    claim(Some(4_000_000_000));
    // Another process has the directory open: its claims may be live.
    let other = std::fs::File::open(dir.path().join("certhost.lock")).expect("lock file");
    other.try_lock_shared().expect("shared");
    let (inv, _, released) = certhost::inventory::open_data_dir_for_serve(dir.path(), None).expect("open");
    assert_eq!(released, 0);
    assert_eq!(lease(), Some(4_000_000_000));
    drop(inv);
    drop(other);
    // Alone: every claim is a dead process's.
    let (inv, _, released) = certhost::inventory::open_data_dir_for_serve(dir.path(), None).expect("open");
    assert_eq!(released, 1);
    assert_eq!(lease(), None);
    // And the directory is shared again: another process opens it while this one serves.
    let other = std::fs::File::open(dir.path().join("certhost.lock")).expect("lock file");
    other.try_lock_shared().expect("shared while serving");
    drop(inv);
}
