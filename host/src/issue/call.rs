//! One connector call as the pipeline makes it: the account's connector, checked against
//! what its account and profile give in the clear, called under a backstop deadline, its
//! answer held to the pipeline's rules.

use std::time::Duration;

use crate::account::Account;
use crate::connector::{Args, Bounded, Connector, ConnectorError, ConnectorSource, Operation};

/// The connector of `account` for a call made with profile `profile_name`'s `params` (the
/// default profile has none, so nothing of it is checked). Refused when it declares sensitive a parameter the account or
/// the profile gives as a plain value — as `account create`/`edit` and `profile create`/`edit`
/// refuse one — so a connector updated to declare it is not called with the value on show
/// (author review of stop 40: it was, until the account was next edited; the profile's was
/// still passed until stop 42).
pub(crate) async fn connector_of(
    connectors: &dyn ConnectorSource,
    account: &Account,
    profile_name: &str,
    params: &crate::param::ParamMap,
) -> Result<std::sync::Arc<dyn crate::connector::Connector>, ConnectorError> {
    let connector = connectors.connector(&account.name, &account.def).await?;
    let declared = connector.declared_sensitive();
    let refused = |owner: String, params| {
        crate::param::check_declared_sensitive(&owner, params, declared.iter().map(String::as_str))
            .map_err(|e| ConnectorError::Misconfigured { connector: owner.clone(), message: e.to_string() })
    };
    refused(format!("account {}", account.name), &account.def.params)?;
    refused(format!("profile {profile_name}"), params)?;
    Ok(connector)
}

/// A backstop deadline around a connector call; the runtimes enforce their own limits, this
/// guarantees the pipeline never waits forever on one. It must not cut a call its runtime
/// still allows: a script account's call may wait [`crate::connector::WORKER_WAIT_LIMITS`]
/// limits for the account's worker, then run for one; a component's may wait at most one
/// limit at its account's gate (`connector::gate`; a script's gate never waits), then run.
pub(crate) fn backstop(timeout: Duration) -> Duration {
    timeout * (crate::connector::WORKER_WAIT_LIMITS + 1) + Duration::from_secs(5)
}

/// Runs a connector call under [`backstop`], its answer held to the sizes the host stores and
/// refused when it would store one of `args`' sensitive values (those the connector declares
/// sensitive included) in the open.
pub(crate) async fn call_with_deadline<T: Bounded>(
    connector: &dyn Connector,
    timeout: Duration,
    args: &Args,
    fut: impl std::future::Future<Output = Result<T, ConnectorError>>,
) -> Result<T, ConnectorError> {
    match tokio::time::timeout(backstop(timeout), fut).await {
        Ok(r) => crate::connector::held(connector, args, r),
        Err(_) => Err(ConnectorError::TimedOut { connector: connector.label(), after: timeout, nothing_sent: false }),
    }
}

/// Whether `connector` says it implements `operation`; one that cannot say is given the
/// benefit of the doubt (its call answers for itself).
pub(super) async fn implements(connector: &dyn Connector, operation: Operation) -> bool {
    connector.describe().await.map_or(true, |d| d.operations.contains(&operation))
}
