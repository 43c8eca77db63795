//! `certhost backup FILE`: a consistent copy of the inventory, safe while `serve` runs.

use std::path::PathBuf;
use std::process::ExitCode;

use certhost::inventory::Inventory;

/// Arguments of `certhost backup`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The file to write (must not exist). It holds every private key and secret, sealed
    /// under the master key: keep the key apart from it.
    file: PathBuf,
}

pub fn run(args: Args, inv: &mut Inventory, env: &super::Env) -> anyhow::Result<ExitCode> {
    let backup = inv.backup_to(&args.file, &env.actor)?;
    println!(
        "backed up the inventory to {}: {} certificates, {} private keys, {:.1} MiB (checked: whole, and it opens \
         under the current master key)",
        args.file.display(),
        backup.certificates,
        backup.keys,
        backup.bytes as f64 / (1024.0 * 1024.0)
    );
    println!(
        "keep it apart from the master key (master.key or CERTHOST_MASTER_KEY), which opens it; to restore, copy it as \
         certhost.db into an empty data directory and give it the key"
    );
    Ok(ExitCode::SUCCESS)
}
