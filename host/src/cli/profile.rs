//! `certhost profile`: issuance templates.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use certhost::inventory::Inventory;
use certhost::profile::ProfileDef;

use super::output;

/// Profile subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List profiles.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one profile (sensitive parameters as `sensitive, set`).
    Show {
        /// Profile name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Create a profile from a TOML file (same format as profiles/*.toml).
    Create {
        /// Profile name.
        name: String,
        /// TOML definition.
        #[arg(long)]
        file: PathBuf,
        /// Replace the profile when one of that name exists (its certificates renew under the
        /// new definition).
        #[arg(long)]
        replace: bool,
    },
    /// Delete a profile (refused while it has open orders or active certificates).
    Delete {
        /// Profile name.
        name: String,
    },
}

impl Command {
    /// Whether the command only reads the inventory (and so needs one to exist).
    pub fn reads_only(&self) -> bool {
        matches!(self, Command::List { .. } | Command::Show { .. })
    }
}

pub fn run(cmd: Command, inv: &mut Inventory, env: &super::Env) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::List { json } => {
            let profiles = inv.profiles()?;
            if json {
                let views = profiles
                    .iter()
                    .map(|(n, d, o)| Ok(certhost::view::profile(inv, n, d, o)?))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                output::json(&views)?;
            } else if profiles.is_empty() {
                println!("no profiles");
            } else {
                let rows: Vec<Vec<String>> = profiles
                    .iter()
                    .map(|(n, d, o)| {
                        vec![
                            n.clone(),
                            d.accounts.join(" → "),
                            d.key.key_type.to_string(),
                            if d.approval_required { "yes".into() } else { "no".into() },
                            o.clone(),
                            d.description.clone(),
                        ]
                    })
                    .collect();
                output::table(&["NAME", "ACCOUNTS", "KEY", "APPROVAL", "ORIGIN", "DESCRIPTION"], &rows);
            }
        }
        Command::Show { name, json } => {
            let (def, origin) = inv.profile(&name)?.ok_or_else(|| anyhow!("profile {name} does not exist"))?;
            let v = certhost::view::profile(inv, &name, &def, &origin)?;
            if json {
                output::json(&v)?;
            } else {
                output::outline(&serde_json::to_value(&v)?);
            }
        }
        Command::Create { name, file, replace } => {
            // Refused by name before the definition is read and checked: its warnings were
            // printed first, about a definition that was then not taken (new-user walkthrough
            // of stop 46). The write checks again in its own transaction.
            match inv.profile(&name)? {
                Some((_, origin)) if certhost::inventory::is_file_origin(&origin) => {
                    bail!("profile {name} comes from a profiles/ file; edit that file instead")
                }
                Some(_) if !replace => bail!(
                    "profile {name} exists; nothing changed: give --replace to replace its definition (its certificates renew under the new one)"
                ),
                _ => {}
            }
            let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let mut def: ProfileDef = toml::from_str(&text)
                .map_err(|e| anyhow!("{}: {}", file.display(), certhost::config::toml_error(&text, &e)))?;
            // Relative paths are the file's, as in profiles/*.toml.
            let base = std::path::absolute(&file)?.parent().map(std::path::Path::to_path_buf).unwrap_or_default();
            certhost::config::absolutize_profile(&mut def, &base);
            def.check(&name)?;
            let accounts = inv.accounts()?.into_iter().map(|a| (a.name, a.def)).collect();
            certhost::config::check_links(&name, &def, &accounts)?;
            let registry = super::registry(&env.data_dir, env);
            super::runtime()?.block_on(def.check_connectors(&name, &accounts, &registry))?;
            for why in def.deploy_warnings() {
                eprintln!("warning: profile {name}: {}", output::terminal_safe(&why));
            }
            // Each write checks again in its own transaction: a profile made or deleted
            // meanwhile makes this fail instead of being silently replaced or made again.
            match inv.profile(&name)? {
                Some((_, origin)) if certhost::inventory::is_file_origin(&origin) => {
                    bail!("profile {name} comes from a profiles/ file; edit that file instead")
                }
                Some(_) if !replace => bail!(
                    "profile {name} exists; nothing changed: give --replace to replace its definition (its certificates renew under the new one)"
                ),
                Some(_) => {
                    let stranded = inv.update_profile(&name, &def, &env.actor)?;
                    println!("profile {name} replaced");
                    if let Some(warning) = certhost::inventory::stranded_warning(
                        certhost::inventory::SecretOwner::Profile,
                        &name,
                        &stranded,
                    ) {
                        eprintln!("warning: {warning}");
                    }
                }
                None => {
                    inv.create_profile(&name, &def, "cli", &env.actor)?;
                    println!("profile {name} created");
                }
            }
        }
        Command::Delete { name } => {
            // The next load would make it again from its file (review of stop 31).
            if let Some((_, origin)) = inv.profile(&name)?
                && certhost::inventory::is_file_origin(&origin)
            {
                bail!(
                    "profile {name} comes from a profiles/ file; remove that file instead (once no open order uses it, the next load deletes it)"
                );
            }
            inv.delete_profile(&name, &env.actor)?;
            println!("profile {name} deleted");
        }
    }
    Ok(ExitCode::SUCCESS)
}
