//! `certhost secret set`: store a sensitive parameter value, sealed, read without echo.

use std::io::{IsTerminal, Read};
use std::process::ExitCode;

use anyhow::{anyhow, bail};
use certhost::inventory::{Inventory, SecretOwner};
use zeroize::Zeroizing;

/// Secret subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Set a sensitive parameter of an account or profile; the value is read from standard
    /// input (a terminal does not echo it).
    Set {
        /// Account or profile name.
        owner: String,
        /// Parameter name.
        name: String,
        /// The owner is a profile (needed only when an account has the same name).
        #[arg(long)]
        profile: bool,
    },
}

pub fn run(cmd: Command, inv: &mut Inventory, env: &super::Env) -> anyhow::Result<ExitCode> {
    let Command::Set { owner, name, profile } = cmd;
    let account = if profile { None } else { inv.account(&owner)? };
    let (kind, params) = match (account, inv.profile(&owner)?) {
        (Some(a), _) => (SecretOwner::Account, a.def.params),
        (None, Some((p, _))) => (SecretOwner::Profile, p.params),
        (None, None) => bail!("no account or profile named {owner}"),
    };
    let owner_word = if kind == SecretOwner::Account { "account" } else { "profile" };
    let def = params.get(&name).ok_or_else(|| anyhow!("{owner_word} {owner} defines no parameter {name}"))?;
    def.accepts_stored_secret(&name, &format!("{owner_word} {owner}"))?;
    let value = if std::io::stdin().is_terminal() {
        Zeroizing::new(rpassword::prompt_password(format!("value for {name} (not echoed): "))?)
    } else {
        let mut s = Zeroizing::new(String::new());
        std::io::stdin().read_to_string(&mut s)?;
        let trimmed = s.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&s);
        Zeroizing::new(trimmed.to_owned())
    };
    if value.is_empty() {
        bail!("no value given for {name}");
    }
    def.check_value(&name, &value)?;
    let stranded = inv.set_secret(kind, &owner, &name, &value, &env.actor)?;
    println!("{owner_word} {owner}: {name} set (stored encrypted; it will never be shown)");
    if let Some(warning) = certhost::inventory::stranded_warning(kind, &owner, &stranded) {
        eprintln!("warning: {warning}");
    }
    Ok(ExitCode::SUCCESS)
}
