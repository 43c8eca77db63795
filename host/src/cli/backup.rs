//! `certhost backup FILE`: a consistent copy of the inventory, safe while `serve` runs;
//! `certhost restore FILE`: one put back.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::anyhow;
use certhost::inventory::Inventory;
use certhost::vault::{KEY_FILE, MasterKey};

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
        "keep it apart from the master key (master.key or CERTHOST_MASTER_KEY), which opens it; to restore it: \
         certhost restore FILE, with that key"
    );
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `certhost restore`.
#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The backup (a file `certhost backup` wrote). It must open under the data directory's
    /// master key (master.key, or CERTHOST_MASTER_KEY): the key it was taken under.
    file: PathBuf,
    /// Restore over an inventory the data directory holds; it is kept, renamed
    /// certhost.db.replaced-UNIXTIME (with its -wal).
    #[arg(long)]
    replace: bool,
}

pub fn restore(args: RestoreArgs, data_dir: &Path, env: &super::Env) -> anyhow::Result<ExitCode> {
    let key = MasterKey::load_existing(data_dir, env.master_key.as_deref())?.ok_or_else(|| {
        anyhow!(
            "no master key to open the backup with: put the key it was taken under in {} (mode 0600) or in \
             CERTHOST_MASTER_KEY, and run this again",
            data_dir.join(KEY_FILE).display()
        )
    })?;
    let restored = certhost::inventory::restore_from(data_dir, &args.file, key, args.replace, &env.actor)?;
    println!(
        "restored the inventory in {} from {}: {} certificates, {} private keys (checked: whole, and it opens under \
         the master key)",
        data_dir.display(),
        args.file.display(),
        restored.backup.certificates,
        restored.backup.keys
    );
    if let Some(aside) = &restored.replaced {
        println!("the inventory it replaced is kept as {}", aside.display());
    }
    println!("start certhost serve again: renewals that fell due meanwhile are picked up at once");
    Ok(ExitCode::SUCCESS)
}
