//! `/healthz` (the process answers), `/readyz` (the database answers and stores; accounts' last tests,
//! named only to a caller with a token) and `/metrics` (Prometheus text). Unauthenticated,
//! like every probe and scrape target.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use serde::Serialize;
use tokio::sync::Mutex;
use utoipa::ToSchema;

use super::auth::Caller;
use super::{ApiError, AppState};

/// Unauthenticated probes.
pub fn router() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).route("/metrics", get(metrics))
}

/// Liveness: the process answers. Readiness, which checks the database and the accounts, is
/// `/readyz`'s.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    status: &'static str,
}

#[utoipa::path(get, path = "/healthz", tag = "health", security(()), responses((status = 200, body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Readiness: the database answers and stores a write; how many active accounts failed their last test, and,
/// to a caller with a token, each account's status and last test.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    /// `ready`.
    status: &'static str,
    /// `ok`.
    database: &'static str,
    /// Active accounts whose connector does not load, or whose last `test_connection` failed,
    /// unless a call of theirs has succeeded since (in this process): a test run while the CA
    /// was down must not keep the service degraded once the account issues again.
    accounts_failing: usize,
    /// Accounts, only when the request carries a valid token: a probe needs no names, and
    /// anyone who can reach the port could read them.
    #[serde(skip_serializing_if = "Option::is_none")]
    accounts: Option<Vec<AccountReadiness>>,
}

/// One account in `/readyz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountReadiness {
    /// Name.
    name: String,
    /// `active` or `inactive`.
    status: &'static str,
    /// Result of the last `test_connection` (null: never tested).
    last_test_ok: Option<bool>,
    /// When a call of this account other than a test last succeeded (RFC 3339; absent: none
    /// since `serve` started or the account was edited): the CA issued, took an order or
    /// refused one request.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "crate::view::time_text_opt")]
    #[schema(value_type = Option<String>)]
    last_success_at: Option<i64>,
    /// Why its connector does not load (a file missing or broken), as found at the last try;
    /// absent when it loads or was not tried since `serve` started or the file changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    connector_error: Option<String>,
    /// Whether it counts in `accounts_failing`: active, and its connector does not load or its
    /// last test failed with no call succeeding after that test.
    failing: bool,
    /// Seconds it is still tried after its profiles' other active accounts, because a
    /// call found its CA unreachable (absent: tried in its place).
    #[serde(skip_serializing_if = "Option::is_none")]
    tried_last_seconds: Option<u64>,
}

#[utoipa::path(get, path = "/readyz", tag = "health", security(()),
    responses((status = 200, body = Ready), (status = 503, description = "The database cannot be read or written (the cause is logged)", body = super::Problem, content_type = "application/problem+json"), (status = 500, description = "The database does not answer", body = super::Problem, content_type = "application/problem+json")))]
async fn readyz(State(state): State<AppState>, caller: Result<Caller, ApiError>) -> Result<Json<Ready>, ApiError> {
    // The cause is logged by the probe; the answer says what it means. No pooled connection
    // is held while it waits.
    if state.inventory.probe_write().await.is_some() {
        return Err(ApiError::Unavailable(
            "the database cannot store changes (a full, read-only or failing disk; the cause is logged on the server)"
                .into(),
        ));
    }
    let inv = state.inventory.get().await?;
    inv.ping()?;
    let accounts = readiness(&state, &inv)?;
    let accounts_failing = accounts.iter().filter(|a| a.failing).count();
    Ok(Json(Ready { status: "ready", database: "ok", accounts_failing, accounts: caller.is_ok().then_some(accounts) }))
}

/// Each account's readiness, as `/readyz` shows it and `/metrics` counts it.
fn readiness(state: &AppState, inv: &crate::inventory::Inventory) -> Result<Vec<AccountReadiness>, ApiError> {
    Ok(inv
        .accounts()?
        .iter()
        .map(|a| {
            let last_success_at = state.connectors.succeeded_at(&a.name, &a.def);
            let connector_error = state.connectors.load_failure(&a.name, &a.def);
            // Seconds on both sides: a success in the same second as a failed test may have
            // come before it, so it does not outweigh it.
            let failing = a.def.status == crate::account::AccountStatus::Active
                && (connector_error.is_some()
                    || a.last_test.as_ref().is_some_and(|t| !t.ok && last_success_at.is_none_or(|s| s <= t.at)));
            AccountReadiness {
                name: a.name.clone(),
                status: a.def.status.as_str(),
                last_test_ok: a.last_test.as_ref().map(|t| t.ok),
                last_success_at,
                connector_error,
                failing,
                tried_last_seconds: super::accounts::tried_last_seconds(state, a),
            }
        })
        .collect())
}

#[utoipa::path(get, path = "/metrics", tag = "health", security(()),
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let pairs = state
        .expiry_gauges
        .get(|| async {
            let inv = state.inventory.get().await?;
            // Seconds from a cold cache at 1 M certificates: not on a runtime worker.
            Ok(crate::blocking::off_the_runtime(|| inv.gauges())?)
        })
        .await?;
    let accounts_failing = {
        let inv = state.inventory.get().await?;
        readiness(&state, &inv)?.iter().filter(|a| a.failing).count()
    };
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], crate::metrics::render(&pairs, accounts_failing)))
}

/// How long `/metrics` answers with the expiry buckets it last counted. They are counts of
/// days; a scrape interval is 15 s or more.
const EXPIRY_TTL: std::time::Duration = std::time::Duration::from_secs(10);

/// The expiry buckets of `/metrics`, counted at most once per [`EXPIRY_TTL`]. Counting walks
/// every active certificate's index entry (≈ 85 ms at 1 M certificates, seconds from a cold
/// cache), and `/metrics` needs no token: without this, anyone who can reach the port could
/// keep the inventory counting. Scrapes that arrive while one counts wait and share its
/// answer.
#[derive(Clone, Default)]
pub struct ExpiryGauges(Arc<Mutex<Option<(Instant, Buckets)>>>);

type Buckets = crate::inventory::InventoryGauges;

impl ExpiryGauges {
    async fn get<F, Fut>(&self, count: F) -> Result<Buckets, ApiError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Buckets, ApiError>>,
    {
        let mut last = self.0.lock().await;
        if let Some((at, buckets)) = last.as_ref()
            && at.elapsed() < EXPIRY_TTL
        {
            return Ok(buckets.clone());
        }
        let buckets = count().await?;
        *last = Some((Instant::now(), buckets.clone()));
        Ok(buckets)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn expiry_buckets_are_counted_once_per_interval_and_a_failure_is_not_kept() {
        let gauges = ExpiryGauges::default();
        let counted = AtomicUsize::new(0);
        let count = || async {
            counted.fetch_add(1, Ordering::SeqCst);
            Ok(Buckets { expiring: vec![("0-7", 3)], ..Buckets::default() })
        };
        let failing = || async { Err(ApiError::BadRequest("the database is away".into())) };
        assert!(gauges.get(failing).await.is_err());
        assert_eq!(gauges.get(count).await.expect("counted").expiring, [("0-7", 3)]);
        assert_eq!(gauges.get(count).await.expect("cached").expiring, [("0-7", 3)]);
        assert_eq!(counted.load(Ordering::SeqCst), 1, "the second scrape reused the first count");
        // Once the interval has passed, the next scrape counts again.
        if let Some((at, _)) = gauges.0.lock().await.as_mut() {
            *at -= EXPIRY_TTL;
        }
        gauges.get(count).await.expect("recounted");
        assert_eq!(counted.load(Ordering::SeqCst), 2);
    }
}
