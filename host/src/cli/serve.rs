//! `certhost serve`: the HTTP API and the order poller until SIGTERM or ctrl-c.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use certhost::api::{self, AppState};
use certhost::inventory::Inventory;

/// Arguments of `serve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on (port 0 picks a free port; the chosen address is printed).
    #[arg(long, default_value = "127.0.0.1:8443", env = "CERTHOST_LISTEN")]
    listen: SocketAddr,
    /// Seconds between order-poller rounds.
    #[arg(long, default_value_t = 5)]
    poll_interval: u64,
}

pub fn run(
    args: Args,
    inv: Inventory,
    config: Option<std::path::PathBuf>,
    env: &super::Env,
) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let registry = super::registry(&env.data_dir);
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let addr = listener.local_addr()?;
        let state = AppState {
            inventory: Arc::new(tokio::sync::Mutex::new(inv)),
            connectors: Arc::new(registry),
            env: Arc::new(super::env_lookup),
        };
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let poller = tokio::spawn(certhost::poller::run(
            state.inventory.clone(),
            state.connectors.clone(),
            state.env.clone(),
            Duration::from_secs(args.poll_interval.max(1)),
            stop_rx,
        ));
        if let Some(path) = config {
            tokio::spawn(reload_on_sighup(state.inventory.clone(), path));
        }
        // Signal handlers are in place before anyone can learn the address and send one.
        let shutdown = shutdown_signal()?;
        println!("certhost listening on http://{addr}");
        tracing::info!(%addr, "listening");
        api::serve(listener, state, shutdown).await?;
        // The server drained; tell the poller, then wait for its round to end.
        let _ = stop_tx.send(true);
        let _ = poller.await;
        tracing::info!("stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// Re-reads the configuration (accounts, profiles) on SIGHUP. A file with an error is
/// reported and nothing of it is applied.
async fn reload_on_sighup(inventory: Arc<tokio::sync::Mutex<Inventory>>, path: std::path::PathBuf) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else { return };
    while hup.recv().await.is_some() {
        let mut inv = inventory.lock().await;
        match certhost::config::load(&mut inv, &path, "serve:reload") {
            Ok(report) => {
                tracing::info!(accounts = ?report.accounts_changed, profiles = ?report.profiles_changed, "configuration reloaded from {}", path.display())
            }
            Err(e) => {
                tracing::error!(error = %e, "configuration reload failed; the previous configuration stays in force")
            }
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
