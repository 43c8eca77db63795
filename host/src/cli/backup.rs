//! `certhost backup FILE`: a consistent copy of the inventory, safe while `serve` runs;
//! `certhost restore FILE`: one put back.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail};
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
    /// Restore over an inventory the data directory holds; it is kept as
    /// certhost.db.replaced-UNIXTIME (its WAL folded in first).
    #[arg(long)]
    replace: bool,
}

pub fn restore(args: RestoreArgs, data_dir: &Path, env: &super::Env) -> anyhow::Result<ExitCode> {
    // The file first: with no key either, "no master key" sent the operator the wrong way.
    if let Err(e) = std::fs::metadata(&args.file) {
        bail!("nothing was restored: cannot read {}: {e}", args.file.display());
    }
    let key_file = data_dir.join(KEY_FILE);
    let key = MasterKey::load_existing(data_dir, env.master_key.as_deref())?.ok_or_else(|| {
        anyhow!(
            "no master key to open the backup with: put the key it was taken under in {} (mode 0600) or in \
             CERTHOST_MASTER_KEY, and run this again",
            key_file.display()
        )
    })?;
    // A key in the variable and another in the file: commands run without the variable would
    // use the file's and not open what is restored (stop 36's review).
    if env.master_key.is_some()
        && let Ok(Some(in_file)) = MasterKey::load_existing(data_dir, None)
        && !in_file.same_as(&key)
    {
        bail!(
            "nothing was restored: CERTHOST_MASTER_KEY and {} hold different keys, and a command run without the \
             variable would use the file's; put the backup's key in the file (or remove the file and always set \
             the variable), then restore",
            key_file.display()
        );
    }
    let used = if env.master_key.is_some() { "CERTHOST_MASTER_KEY".to_owned() } else { key_file.display().to_string() };
    let restored =
        certhost::inventory::restore_from(data_dir, &args.file, key, args.replace, &env.actor).map_err(|e| {
            let text = e.to_string();
            if text.contains("is sealed under another one") {
                anyhow!(
                    "{text} (the key tried is {used}): give the key the backup was taken under; one from before a \
                     master-key rotation needs the key from then"
                )
            } else {
                anyhow::Error::new(e)
            }
        })?;
    println!(
        "restored the inventory in {} from {}: {}, {} (checked: whole, and it opens under the master key)",
        data_dir.display(),
        args.file.display(),
        super::output::count(restored.backup.certificates as usize, "certificate", "certificates"),
        super::output::count(restored.backup.keys as usize, "private key", "private keys"),
    );
    if let Some(aside) = &restored.replaced {
        println!("the inventory it replaced is kept as {}", aside.display());
        if restored.replaced_under_other_key {
            println!(
                "warning: {} is sealed under another master key than {used} (the one master.key or \
                 CERTHOST_MASTER_KEY held before the backup's key was put back): keep that key, or that inventory's \
                 private keys can never be read again",
                aside.display()
            );
        }
    }
    let (missing, listed) = &restored.missing_from_backup;
    if *missing > 0 {
        let names: Vec<String> =
            listed.iter().map(|(id, cn)| format!("#{id} {}", super::output::terminal_safe(cn))).collect();
        let more = if *missing > listed.len() as u64 { ", …" } else { "" };
        println!(
            "warning: {} of the inventory it replaced {} not in the backup (issued, renewed or imported since): {}{more}; \
             their records and keys are only in the inventory set aside: import each from where it is deployed \
             (certhost import CERT --key KEY), or issue it again",
            super::output::count(*missing as usize, "certificate", "certificates"),
            if *missing == 1 { "is" } else { "are" },
            names.join(", ")
        );
    }
    if !restored.revived_tokens.is_empty() {
        println!(
            "warning: tokens revoked since the backup are active again: {}; revoke them again (certhost token revoke \
             NAME). Other changes made since it (revocations, deletions) are not in it either",
            restored.revived_tokens.join(", ")
        );
    }
    println!("start certhost serve again: renewals that fell due meanwhile are picked up at once");
    Ok(ExitCode::SUCCESS)
}
