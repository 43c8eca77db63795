//! `certhost serve`: the HTTP API and the order poller until SIGTERM or ctrl-c.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use certhost::api::{self, AppState};
use certhost::inventory::{DEFAULT_POOL_SIZE, Inventory, InventoryPool};

/// Arguments of `serve`. Flags win over `[server]` in certhost.toml.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on (default 127.0.0.1:8443; port 0 picks a free port, and the chosen
    /// address is printed).
    #[arg(long, env = "CERTHOST_LISTEN", value_parser = socket_address)]
    listen: Option<SocketAddr>,
    /// Seconds between order-poller rounds.
    #[arg(long, default_value_t = 5)]
    poll_interval: u64,
    /// Seconds between renewal-scheduler rounds (default 30, or `[server] renewal_interval_seconds`).
    #[arg(long)]
    renewal_interval: Option<u64>,
    /// PEM certificate chain: serve HTTPS (with --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// Answer ACME http-01 challenges on this address (or `[server] acme_http01_listen`).
    #[arg(long, value_parser = socket_address)]
    acme_http01_listen: Option<SocketAddr>,
    /// Command for ACME dns-01 challenges, run as `HOOK present|cleanup DOMAIN VALUE` (or
    /// `[server] dns01_hook`).
    #[arg(long)]
    dns01_hook: Option<std::path::PathBuf>,
}

const DEFAULT_LISTEN: &str = "127.0.0.1:8443";

/// An address to listen on, with an example when it is not one (`--listen localhost` said
/// only "invalid socket address syntax").
fn socket_address(text: &str) -> Result<SocketAddr, String> {
    text.parse().map_err(|_| format!("expected IP:PORT, such as 127.0.0.1:8443 or [::1]:8443, not {text:?}"))
}

pub fn run(
    args: Args,
    inv: Inventory,
    config: Option<std::path::PathBuf>,
    env: &super::Env,
) -> anyhow::Result<ExitCode> {
    // The pool opens further connections with the same master key (its file exists by now).
    let (vault, _) = certhost::vault::MasterKey::load_or_create(&env.data_dir, env.master_key.as_deref())?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let registry = super::registry(&env.data_dir, env);
    let mut inv = inv;
    let file = match &config {
        Some(path) => certhost::config::read_file(path)?,
        None => certhost::config::ConfigFile::default(),
    };
    let mut failed_at_start = false;
    if let Some(path) = &config {
        // At start-up every definition is checked against its connector, also those an
        // older version stored; the connectors loaded for it stay loaded for serving.
        match rt.block_on(certhost::config::load(&mut inv, path, &env.actor, &registry, true)) {
            Ok(report) => super::log_report(&report, path),
            // A profile file with a typo stopped `serve` from starting — every renewal,
            // deployment retry and notification with it — where a SIGHUP with the same typo
            // keeps what was loaded (operator review of stop 41). Once this file's
            // definitions are stored, they are served, and the error said at every level.
            // Only a profile file's error: an account's (a connector that no longer loads)
            // or a name taken still stops `serve`, as a SIGHUP would not fix it (diff review).
            Err(
                e @ (certhost::config::ConfigError::Profile { .. }
                | certhost::config::ConfigError::Parse { .. }
                | certhost::config::ConfigError::Read { .. }),
            ) if inv.config_file()?.is_some_and(|recorded| certhost::config::same_config(&recorded, path)) => {
                let e = super::sentence(&anyhow::Error::from(e));
                tracing::error!(error = %e, "configuration not loaded; serving the accounts and profiles as last loaded (fix the file, then send SIGHUP)");
                failed_at_start = true;
            }
            Err(e) => return Err(e.into()),
        }
    }
    let listen = match args.listen.or(file.server.listen) {
        Some(a) => a,
        // A constant that parses: checked by the unit test below.
        None => DEFAULT_LISTEN.parse().context("default listen address")?,
    };
    let tls = match (args.tls_cert.or(file.server.tls_cert.clone()), args.tls_key.or(file.server.tls_key.clone())) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => anyhow::bail!("[server] needs both tls_cert and tls_key for HTTPS"),
    };
    let acme_http01 = args.acme_http01_listen.or(file.server.acme_http01_listen);
    let challenges = certhost::connector::challenges::Challenges::global();
    challenges.set_serving();
    challenges.set_dns01_hook(args.dns01_hook.or(file.server.dns01_hook.clone()));
    challenges.set_env(Arc::new(super::env_lookup));
    rt.block_on(async move {
        if let Some(addr) = acme_http01 {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} for ACME http-01 challenges"))?;
            let bound = listener.local_addr()?;
            // What an earlier run published and did not withdraw is served again: a CA may
            // be validating a pending order across the restart.
            let (store, saved) = certhost::inventory::InventoryAnswerStore::start(&env.data_dir, vault.clone())?;
            if !saved.is_empty() {
                tracing::info!(answers = saved.len(), "serving again the http-01 answers an earlier run published");
            }
            challenges.set_store(Arc::new(store), saved);
            challenges.set_http01_served(true);
            tracing::info!(addr = %bound, "answering ACME http-01 challenges");
            tokio::spawn(async move {
                if let Err(e) = api::serve_acme_http01(listener).await {
                    tracing::error!(error = %e, "the ACME http-01 listener stopped");
                }
            });
        }
        let listener =
            tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
        let addr = listener.local_addr()?;
        // Once this run is sure to serve, before it can queue anything: a channel gets what
        // is queued from now on (and since it was first configured, if the last run had it).
        let since = inv.configure_channels(file.notify.webhook.is_some(), file.notify.email.is_some())?;
        warn_unresolvable_secrets(&inv, &file.notify);
        let state = AppState {
            inventory: InventoryPool::new(inv, vault, DEFAULT_POOL_SIZE)?,
            connectors: Arc::new(registry),
            env: Arc::new(super::env_lookup),
            expiry_gauges: Default::default(),
        };
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let poller = tokio::spawn(certhost::poller::run(
            state.inventory.clone(),
            state.connectors.clone(),
            state.env.clone(),
            Duration::from_secs(args.poll_interval.max(1)),
            stop_rx,
        ));
        let scheduler = tokio::spawn(certhost::renewal::run(
            state.inventory.clone(),
            state.connectors.clone(),
            state.env.clone(),
            file.notify.clone(),
            since,
            Duration::from_secs(args.renewal_interval.or(file.server.renewal_interval_seconds).unwrap_or(30).max(1)),
            stop_tx.subscribe(),
        ));
        if let Some(path) = config {
            let started_with = (file.server.clone(), file.notify.clone());
            tokio::spawn(reload_on_sighup(
                state.inventory.clone(),
                state.connectors.clone(),
                path,
                started_with,
                failed_at_start,
            ));
        }
        // Signal handlers are in place before anyone can learn the address and send one.
        let shutdown = shutdown_signal()?;
        match tls {
            Some((cert, key)) => {
                let listener = api::TlsListener::new(listener, &cert, &key)?;
                let validity = listener.reloader().validity();
                if let Some(why) = validity.refused_at(certhost::clock::unix_now()) {
                    tracing::warn!(
                        "the TLS certificate {} {why}: clients refuse it until it is replaced (then send SIGHUP)",
                        cert.display()
                    );
                }
                let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                    .context("cannot handle SIGHUP")?;
                tokio::spawn(reload_tls_on_sighup(hup, listener.reloader()));
                println!("certhost listening on https://{addr}");
                tracing::info!(%addr, "listening (TLS)");
                api::serve_tls(listener, state, shutdown).await?;
            }
            None => {
                println!("certhost listening on http://{addr}");
                tracing::info!(%addr, "listening");
                api::serve(listener, state, shutdown).await?;
            }
        }
        // The server drained; tell the poller and the scheduler, then wait for their rounds to end.
        let _ = stop_tx.send(true);
        let _ = poller.await;
        let _ = scheduler.await;
        tracing::info!("stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// Re-reads the configuration (accounts, profiles) on SIGHUP. A file with an error is
/// reported and nothing of it is applied. `[server]` and `[notify]` are read at start only:
/// a reload that finds them changed says so rather than claiming to have applied them.
async fn reload_on_sighup(
    inventory: InventoryPool,
    connectors: Arc<dyn certhost::connector::ConnectorSource>,
    path: std::path::PathBuf,
    started_with: (certhost::config::ServerConfig, certhost::notify::NotifyConfig),
    failed_at_start: bool,
) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else { return };
    // After a failed reload, the next that succeeds says so at the default level: the log
    // ended with the failure, and an operator who had fixed the file could not tell (operator
    // review of stop 36).
    let mut failed_before = failed_at_start;
    while hup.recv().await.is_some() {
        let mut inv = match inventory.get().await {
            Ok(inv) => inv,
            Err(e) => {
                tracing::error!(error = %e, "configuration reload failed: no database connection");
                failed_before = true;
                continue;
            }
        };
        // Another command loaded another file with --config since: reloading this one would
        // swap the definitions back behind its back (diff review of stop 38).
        match certhost::config::loaded_from_elsewhere(&inv, &path) {
            Ok(Some(other)) => {
                failed_before = true;
                let other = match other {
                    certhost::config::Elsewhere::Recorded(other) => other.display().to_string(),
                    certhost::config::Elsewhere::Unrecorded { .. } => "a file no certhost recorded".to_owned(),
                    certhost::config::Elsewhere::MadeWithoutFile { .. } => {
                        "the CLI or the API, beside another file a command loaded".to_owned()
                    }
                };
                tracing::error!(
                    "configuration reload skipped: the accounts and profiles now come from {other} (loaded by another \
                     command), not {}; restart serve with --config naming the one to use",
                    path.display()
                );
                continue;
            }
            Ok(None) => {}
            Err(e) => {
                failed_before = true;
                tracing::error!(error = %e, "configuration reload failed; the previous configuration stays in force");
                continue;
            }
        }
        match certhost::config::load(&mut inv, &path, "serve:reload", &*connectors, false).await {
            Ok(report) => {
                super::log_report(&report, &path);
                if std::mem::take(&mut failed_before) {
                    tracing::warn!(accounts_changed = ?report.accounts_changed, profiles_changed = ?report.profiles_changed, "configuration reloaded from {}; the earlier reload's failure is resolved", path.display());
                } else {
                    tracing::info!(accounts_changed = ?report.accounts_changed, profiles_changed = ?report.profiles_changed, "configuration reloaded from {}", path.display());
                }
                // A value a reload brought in is named now, as at start, not by a 503.
                warn_unresolvable_secrets(&inv, &started_with.1);
                if let Ok(now) = certhost::config::read_file(&path) {
                    for (section, changed) in
                        [("[server]", now.server != started_with.0), ("[notify]", now.notify != started_with.1)]
                    {
                        if changed {
                            tracing::warn!(
                                "{section} changed in {}: it takes effect when serve restarts",
                                path.display()
                            );
                        }
                    }
                }
            }
            Err(e) => {
                failed_before = true;
                tracing::error!(error = %e, "configuration reload failed; the previous configuration stays in force")
            }
        }
    }
}

/// Reads the TLS certificate and key again on each SIGHUP (a renewed certificate for `serve`
/// itself): new connections get them; on an error the certificate in use stays.
async fn reload_tls_on_sighup(mut hup: tokio::signal::unix::Signal, reloader: api::TlsReloader) {
    while hup.recv().await.is_some() {
        match reloader.reload() {
            Ok(validity) => match validity.refused_at(certhost::clock::unix_now()) {
                Some(why) => tracing::warn!(
                    "TLS certificate and key read again; new connections use them, though the certificate {why} (so did \
                     the one it replaced)"
                ),
                None => tracing::info!(
                    valid_until = %certhost::view::rfc3339(validity.not_after),
                    "TLS certificate and key read again; new connections use them"
                ),
            },
            Err(e) => tracing::error!(error = %e, "TLS reload failed; the certificate in use stays"),
        }
    }
}

/// Installs the SIGTERM and SIGINT handlers now; the returned future completes on either.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

/// Says at start which secrets `serve` will need and cannot read now (a `{ env = … }` not set,
/// a `{ file = … }` missing): each was noticed only at the first notification or PKCS#12
/// deployment, hours later (operator review of stop 39), or — an account's or profile's
/// parameter — at the first issuance, as a 503 (new-user walkthrough of stop 46). A warning,
/// not a refusal: a file may yet appear. The values are never read into the message, only
/// whether they resolve.
fn warn_unresolvable_secrets(inv: &certhost::inventory::Inventory, notify: &certhost::notify::NotifyConfig) {
    use certhost::param::resolve;
    let mut sources: Vec<(String, &certhost::param::ValueSource)> = Vec::new();
    if let Some(secret) = notify.webhook.as_ref().and_then(|w| w.secret.as_ref()) {
        sources.push(("[notify.webhook] secret".into(), secret));
    }
    if let Some(password) = notify.email.as_ref().and_then(|e| e.password.as_ref()) {
        sources.push(("[notify.email] password".into(), password));
    }
    let profiles = inv.profiles().unwrap_or_default();
    let accounts = inv.accounts().unwrap_or_default();
    for (name, def, _) in &profiles {
        for (i, target) in def.deploy.iter().enumerate() {
            if let Some(password) = &target.pkcs12_password {
                sources.push((format!("profile {name}'s deploy target {} pkcs12_password", i + 1), password));
            }
        }
        for (param, p) in &def.params {
            if let Some(value) = &p.value {
                sources.push((format!("parameter {param} of profile {name}"), value));
            }
        }
    }
    for account in accounts.iter().filter(|a| a.def.status == certhost::account::AccountStatus::Active) {
        for (param, p) in &account.def.params {
            if let Some(value) = &p.value {
                sources.push((format!("parameter {param} of account {}", account.name), value));
            }
        }
    }
    for (what, source) in sources {
        if let Err(certhost::param::ParamError::Unresolvable { reason, .. }) =
            resolve(source, "secret", &what, &super::env_lookup)
        {
            tracing::warn!("{what} cannot be read now ({reason}); what needs it fails until it can");
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_default_listen_address_parses() {
        assert!(super::DEFAULT_LISTEN.parse::<std::net::SocketAddr>().is_ok());
    }
}
