//! Command-line interface: one file per subcommand; this file holds the argument tree and
//! the dispatch. Human output is a table; `--json` output is stable for scripts.

mod audit;
mod import;
mod inspect_csr;
mod key_csr;
mod list;
mod output;
mod show;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use certhost::inventory::Inventory;
use certhost::vault::MasterKey;
use clap::{Parser, Subcommand};

/// certhost — certificate lifecycle host: CA connector plugins, inventory, renewals.
#[derive(Debug, Parser)]
#[command(name = "certhost", version, about, propagate_version = true)]
pub struct Cli {
    /// Data directory holding the inventory database and the master key file.
    #[arg(long, global = true, env = "CERTHOST_DATA_DIR", default_value = "./certhost-data")]
    pub data_dir: PathBuf,
    /// Log more (repeat for debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate a private key and a CSR from a subject and SANs.
    KeyCsr(key_csr::Args),
    /// Parse and verify a CSR (PEM or DER) as the host does for uploads.
    InspectCsr(inspect_csr::Args),
    /// Import existing certificates (PEM/DER files, bundles, directories) into the inventory.
    Import(import::Args),
    /// List inventory certificates.
    List(list::Args),
    /// Show one certificate by id or SHA-1/SHA-256 thumbprint.
    Show(show::Args),
    /// Show the audit log, newest first.
    Audit(audit::Args),
}

/// What main.rs reads from the process environment for the commands.
pub struct Env {
    /// `CERTHOST_MASTER_KEY`, when set.
    pub master_key: Option<String>,
    /// Who is acting, for audit events.
    pub actor: String,
}

/// Runs one command.
pub fn run(cli: Cli, env: &Env) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::KeyCsr(args) => key_csr::run(args),
        Command::InspectCsr(args) => inspect_csr::run(args),
        Command::Import(args) => import::run(args, &mut open_inventory(&cli.data_dir, env)?, env),
        Command::List(args) => list::run(args, &open_inventory(&cli.data_dir, env)?),
        Command::Show(args) => show::run(args, &open_inventory(&cli.data_dir, env)?),
        Command::Audit(args) => audit::run(args, &open_inventory(&cli.data_dir, env)?),
    }
}

/// Opens the inventory with the master key from the environment or the key file.
fn open_inventory(data_dir: &Path, env: &Env) -> anyhow::Result<Inventory> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    let (key, _source) = MasterKey::load_or_create(data_dir, env.master_key.as_deref())?;
    Ok(Inventory::open(data_dir, key)?)
}

/// The error chain as one line: "outer: inner: root".
pub fn sentence(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let s = cause.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ")
}

/// Logs go to stderr; `-v` for info, `-vv` for debug; `RUST_LOG` overrides.
pub fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).try_init();
}
