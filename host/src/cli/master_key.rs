//! `certhost master-key rotate`: seal the inventory under a new master key (a key that may
//! have been seen, a colleague who left, a routine schedule).

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use certhost::inventory::{dir_lock, open_data_dir};
use certhost::vault::{KEY_FILE, MasterKey, STAGED_KEY_FILE};

/// Master-key subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Seal every private key, secret and connector cache entry again under a new master key,
    /// in one transaction. With the key in master.key, a new random key replaces it (or the
    /// one in CERTHOST_NEW_MASTER_KEY); with CERTHOST_MASTER_KEY set, the new key must be given
    /// in CERTHOST_NEW_MASTER_KEY. Every other certhost process on the data directory must be
    /// stopped first.
    Rotate,
}

pub fn run(cmd: Command, data_dir: &Path, env: &super::Env) -> anyhow::Result<ExitCode> {
    let Command::Rotate = cmd;
    super::require_inventory(data_dir)?;
    let new = match (&env.new_master_key, &env.master_key) {
        (Some(text), _) => MasterKey::from_base64(text).context("CERTHOST_NEW_MASTER_KEY")?,
        (None, None) => MasterKey::generate(),
        (None, Some(_)) => bail!(
            "CERTHOST_MASTER_KEY is set, so certhost cannot keep the new key for you: put a new key in \
             CERTHOST_NEW_MASTER_KEY (openssl rand -base64 32) and run this again"
        ),
    };
    // Before the inventory is opened: this process's own connections share the hold.
    let _alone = dir_lock::hold_exclusive(data_dir)?;
    let (mut inv, _old) = open_data_dir(data_dir, env.master_key.as_deref())?;
    let in_file = env.master_key.is_none();
    if in_file {
        new.stage_key_file(data_dir)?;
    }
    // On an error the staged key stays: a commit whose outcome is unknown (an I/O error as it
    // synced) may have sealed the inventory under it, and the next command decides by which
    // key opens it (review of stop 35). A stale one opens nothing and the next rotation
    // replaces it.
    let rotated = inv
        .rotate_master_key(&new, &env.actor)
        .map_err(|e| anyhow::Error::new(e).context("the master-key rotation failed"))?;
    if in_file {
        MasterKey::install_staged_key_file(data_dir).with_context(|| {
            format!(
                "the inventory is sealed under the new key, which is in {STAGED_KEY_FILE}; the next certhost \
                 command moves it to {KEY_FILE}"
            )
        })?;
    }
    let dropped = match rotated.cache_dropped {
        0 => String::new(),
        n => format!(" ({}, expired or unreadable, dropped)", super::output::count(n, "cache entry", "cache entries")),
    };
    println!(
        "master key rotated: {}, {} and {} sealed under the new key{dropped}",
        super::output::count(rotated.keys, "private key", "private keys"),
        super::output::count(rotated.secrets, "secret", "secrets"),
        super::output::count(rotated.cache_entries, "connector cache entry", "connector cache entries"),
    );
    if in_file {
        println!(
            "{} holds the new key: back it up now. Backups taken before this open only with the old key.",
            data_dir.join(KEY_FILE).display()
        );
    } else {
        println!(
            "set CERTHOST_MASTER_KEY to the key in CERTHOST_NEW_MASTER_KEY for every certhost process from now on; \
             backups taken before this open only with the old key"
        );
    }
    // Inventories `certhost restore --replace` kept here stay sealed under the old key, which
    // nothing keeps (stop 36's review).
    let kept = certhost::inventory::set_aside_inventories(data_dir);
    if !kept.is_empty() {
        println!(
            "note: {} kept by certhost restore ({}) stay sealed under the old key: delete them, or keep the old key \
             with them",
            super::output::count(kept.len(), "inventory", "inventories"),
            kept.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}
