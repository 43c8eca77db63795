//! Process-wide counters for `/metrics` (Prometheus text format): issuances by outcome,
//! connector call latency by connector, account, operation and outcome, and the inventory's group commits (how many changes
//! each sync carried and how long it took). Certificates by days-to-expiry are read from the
//! inventory at scrape time, so they are always current and survive restarts.
//!
//! A global, like the default registry of the `prometheus` crate: recording must be possible
//! from deep inside the pipeline without threading a handle through every call.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

/// Upper bounds (seconds) of the connector latency histogram buckets.
const BUCKETS: [f64; 14] = [0.00025, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        self.count += 1;
        self.sum += secs;
        for (i, le) in BUCKETS.iter().enumerate() {
            if secs <= *le {
                self.counts[i] += 1;
            }
        }
    }

    fn render(&self, out: &mut String, metric: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, le) in BUCKETS.iter().enumerate() {
            let _ = writeln!(out, "{metric}_bucket{{{labels}{sep}le=\"{le}\"}} {}", self.counts[i]);
        }
        let _ = writeln!(out, "{metric}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{metric}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{metric}_count{{{labels}}} {}", self.count);
    }
}

#[derive(Default)]
struct Registry {
    issuances: BTreeMap<String, u64>,
    /// By (connector, account, operation, outcome).
    calls: BTreeMap<[String; 4], Histogram>,
    commits: Histogram,
    committed_changes: u64,
    /// notAfter (Unix seconds) of the certificate `serve` answers HTTPS with, when it does.
    tls_not_after: Option<i64>,
    /// Whether `serve` delivers notifications (a channel is configured).
    notifications: bool,
}

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(|| Mutex::new(Registry::default()));

fn with(f: impl FnOnce(&mut Registry)) {
    // A poisoned lock only means another thread panicked while counting: keep counting.
    let mut guard = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    f(&mut guard);
}

/// Records the notAfter of the certificate `serve`'s HTTPS listener now answers with: its own
/// certificate expiring is an outage no inventory gauge shows when it was not issued here
/// (day-two walkthrough of stop 49).
pub fn tls_not_after(not_after: i64) {
    with(|r| r.tls_not_after = Some(not_after));
}

/// Records whether notifications are delivered: without a channel they are queued and never
/// sent, so the undelivered count would only grow (review of stop 49).
pub fn notifications_configured(on: bool) {
    with(|r| r.notifications = on);
}

/// Counts one finished issuance request by outcome (`issued`, `pending`, `awaiting_approval`,
/// `rejected`, `failed`).
pub fn issuance(outcome: &str) {
    with(|r| *r.issuances.entry(outcome.to_owned()).or_default() += 1);
}

/// Records the latency of one connector call of `operation` (`request`, `renew`, `poll`,
/// `revoke`, `update_order`) at `account`, by whether it answered (`ok`) or failed
/// (`error`: unreachable, timed out, trapped). By account, not only by connector: one
/// connector serves several accounts, and a hanging CA is an account (scale review of stop 43).
pub fn connector_call<T, E>(connector: &str, account: &str, operation: &str, result: &Result<T, E>, elapsed: Duration) {
    let outcome = if result.is_ok() { "ok" } else { "error" };
    let key = [connector.to_owned(), account.to_owned(), operation.to_owned(), outcome.to_owned()];
    with(|r| r.calls.entry(key).or_default().observe(elapsed.as_secs_f64()));
}

/// Records one group commit: `changes` requests' changes made durable by one sync in
/// `elapsed` (from BEGIN to the end of the fsync that made it durable).
pub fn group_commit(changes: usize, elapsed: Duration) {
    with(|r| {
        r.commits.observe(elapsed.as_secs_f64());
        r.committed_changes += changes as u64;
    });
}

/// Escapes a label value for the text format.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The metrics in Prometheus text format; `expiry` are (bucket label, count) pairs of active
/// certificates by days to expiry.
pub fn render(gauges: &crate::inventory::InventoryGauges, accounts_failing: usize) -> String {
    let mut out = String::new();
    let reg = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    out.push_str("# HELP certhost_issuances_total Issuance requests by outcome.\n");
    out.push_str("# TYPE certhost_issuances_total counter\n");
    for (outcome, n) in &reg.issuances {
        let _ = writeln!(out, "certhost_issuances_total{{outcome=\"{}\"}} {n}", label(outcome));
    }
    out.push_str(
        "# HELP certhost_connector_call_seconds Latency of connector calls by connector, CA account, operation and \
         outcome (ok: the connector answered, whatever the CA decided; error: it failed, timed out or trapped).\n",
    );
    out.push_str("# TYPE certhost_connector_call_seconds histogram\n");
    for ([connector, account, operation, outcome], h) in &reg.calls {
        let labels = format!(
            "connector=\"{}\",account=\"{}\",operation=\"{}\",outcome=\"{}\"",
            label(connector),
            label(account),
            label(operation),
            label(outcome)
        );
        h.render(&mut out, "certhost_connector_call_seconds", &labels);
    }
    out.push_str("# HELP certhost_inventory_commit_seconds Duration of inventory group commits (one sync each).\n");
    out.push_str("# TYPE certhost_inventory_commit_seconds histogram\n");
    reg.commits.render(&mut out, "certhost_inventory_commit_seconds", "");
    out.push_str("# HELP certhost_inventory_committed_changes_total Changes made durable by group commits.\n");
    out.push_str("# TYPE certhost_inventory_committed_changes_total counter\n");
    let _ = writeln!(out, "certhost_inventory_committed_changes_total {}", reg.committed_changes);
    if let Some(not_after) = reg.tls_not_after {
        out.push_str(
            "# HELP certhost_tls_certificate_expiry_timestamp_seconds notAfter of the certificate serve answers HTTPS \
             with (Unix seconds); alert on it minus time().\n",
        );
        out.push_str("# TYPE certhost_tls_certificate_expiry_timestamp_seconds gauge\n");
        let _ = writeln!(out, "certhost_tls_certificate_expiry_timestamp_seconds {not_after}");
    }
    let notifications = reg.notifications;
    drop(reg);
    out.push_str(
        "# HELP certhost_certificates_expiring Active certificates by days until expiry; expired: past notAfter, \
         including those expired in the last 30 days or whose renewal is still retried.\n",
    );
    out.push_str("# TYPE certhost_certificates_expiring gauge\n");
    for (bucket, n) in &gauges.expiring {
        let _ = writeln!(out, "certhost_certificates_expiring{{days=\"{}\"}} {n}", label(bucket));
    }
    out.push_str(
        "# HELP certhost_orders_open Open orders by state (awaiting an approver, held for an operator, at the CA).\n",
    );
    out.push_str("# TYPE certhost_orders_open gauge\n");
    for (state, n) in &gauges.orders_open {
        let _ = writeln!(out, "certhost_orders_open{{state=\"{}\"}} {n}", label(state));
    }
    out.push_str("# HELP certhost_deploy_retries Certificates with a failed deployment waiting to be tried again.\n");
    out.push_str("# TYPE certhost_deploy_retries gauge\n");
    let _ = writeln!(out, "certhost_deploy_retries {}", gauges.deploy_retries);
    out.push_str(
        "# HELP certhost_renewals_failing Certificates whose automatic renewal failed its last attempt and is \
         retried with backoff (expired ones still retried included).\n",
    );
    out.push_str("# TYPE certhost_renewals_failing gauge\n");
    let _ = writeln!(out, "certhost_renewals_failing {}", gauges.renewals_failing);
    out.push_str(
        "# HELP certhost_renewals_due Certificates past their renewal time: waiting for or in an attempt, failing \
         ones whose retry has come, and ones waiting at the CA or for approval (the scheduler's backlog).\n",
    );
    out.push_str("# TYPE certhost_renewals_due gauge\n");
    let _ = writeln!(out, "certhost_renewals_due {}", gauges.renewals_due);
    if notifications {
        out.push_str(
            "# HELP certhost_notifications_undelivered Notifications not yet delivered to every configured channel.\n",
        );
        out.push_str("# TYPE certhost_notifications_undelivered gauge\n");
        let _ = writeln!(out, "certhost_notifications_undelivered {}", gauges.notifications_undelivered);
        out.push_str(
            "# HELP certhost_notifications_failing Undelivered notifications a channel refused at least once (its \
             receiver down or refusing); they are retried with backoff.\n",
        );
        out.push_str("# TYPE certhost_notifications_failing gauge\n");
        let _ = writeln!(out, "certhost_notifications_failing {}", gauges.notifications_failing);
    }
    out.push_str(
        "# HELP certhost_accounts_failing Active CA accounts whose connector does not load, or whose last test failed \
         with no call succeeding since (as /readyz counts them).\n",
    );
    out.push_str("# TYPE certhost_accounts_failing gauge\n");
    let _ = writeln!(out, "certhost_accounts_failing {accounts_failing}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_labels_escaped() {
        connector_call("t\"est", "ca-a", "request", &Ok::<(), ()>(()), Duration::from_millis(3));
        connector_call("t\"est", "ca-a", "request", &Ok::<(), ()>(()), Duration::from_secs(2));
        connector_call("t\"est", "ca-b", "request", &Err::<(), ()>(()), Duration::from_secs(9));
        issuance("issued");
        let text = render(&crate::inventory::InventoryGauges { expiring: vec![("0-7", 2)], ..Default::default() }, 0);
        let a = "connector=\"t\\\"est\",account=\"ca-a\",operation=\"request\",outcome=\"ok\"";
        assert!(text.contains(&format!("certhost_connector_call_seconds_bucket{{{a},le=\"0.005\"}} 1")), "{text}");
        assert!(text.contains(&format!("certhost_connector_call_seconds_bucket{{{a},le=\"+Inf\"}} 2")), "{text}");
        // A second account of the same connector, failing, is a series of its own.
        let b = "connector=\"t\\\"est\",account=\"ca-b\",operation=\"request\",outcome=\"error\"";
        assert!(text.contains(&format!("certhost_connector_call_seconds_count{{{b}}} 1")), "{text}");
        assert!(text.contains("certhost_issuances_total{outcome=\"issued\"}"), "{text}");
        assert!(text.contains("certhost_certificates_expiring{days=\"0-7\"} 2"), "{text}");
        // Other tests in this process commit too (the registry is global): compare values.
        let value = |text: &str, series: &str| -> u64 {
            text.lines()
                .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
                .unwrap_or_else(|| panic!("no {series} in {text}"))
        };
        let before = render(&Default::default(), 0);
        group_commit(3, Duration::from_micros(400));
        let after = render(&Default::default(), 0);
        let fast = "certhost_inventory_commit_seconds_bucket{le=\"0.0005\"}";
        assert!(value(&after, fast) > value(&before, fast), "{after}");
        let changes = "certhost_inventory_committed_changes_total ";
        assert!(value(&after, changes) >= value(&before, changes) + 3, "{after}");
    }
}
