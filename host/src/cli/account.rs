//! `certhost account`: CA accounts.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, bail};
use certhost::account::{AccountDef, AccountStatus};
use certhost::inventory::Inventory;
use certhost::issue::Pipeline;
use certhost::param::{ParamDef, ValueSource};

use super::output;

/// Account subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List accounts with status and last test.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one account (sensitive parameters as `sensitive, set`).
    Show {
        /// Account name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Create an account.
    Create {
        /// Account name.
        name: String,
        #[command(flatten)]
        fields: Fields,
    },
    /// Change fields of an account.
    Edit {
        /// Account name.
        name: String,
        #[command(flatten)]
        fields: Fields,
        /// Remove a parameter (repeatable).
        #[arg(long = "unset-param", value_name = "NAME")]
        unset: Vec<String>,
        /// Remove an allowed host, as listed by `account show` (repeatable).
        #[arg(long = "remove-allowed-host", value_name = "HOST")]
        remove_allowed_hosts: Vec<String>,
        /// Remove an extra trusted CA PEM file (repeatable).
        #[arg(long = "remove-extra-ca", value_name = "FILE")]
        remove_extra_ca: Vec<PathBuf>,
    },
    /// Let issuance use the account.
    Activate {
        /// Account name.
        name: String,
    },
    /// Stop issuance from calling the account (issued certificates are untouched).
    Deactivate {
        /// Account name.
        name: String,
    },
    /// Delete an account (refused while a profile, an open order or an active certificate it
    /// issued uses it).
    Delete {
        /// Account name.
        name: String,
    },
    /// Call the connector's test_connection with the account's parameters.
    Test {
        /// Account name.
        name: String,
    },
}

impl Command {
    /// Whether the command only reads the inventory (and so needs one to exist).
    pub fn reads_only(&self) -> bool {
        matches!(self, Command::List { .. } | Command::Show { .. })
    }
}

/// Fields settable on create and edit.
#[derive(Debug, clap::Args)]
pub struct Fields {
    /// Connector: a .wasm component or a .py script.
    #[arg(long)]
    connector: Option<PathBuf>,
    /// Description.
    #[arg(long)]
    description: Option<String>,
    /// Parameter NAME=VALUE (repeatable).
    #[arg(long = "param", value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// Declare a sensitive parameter; set its value with `certhost secret set` (repeatable).
    #[arg(long = "sensitive-param", value_name = "NAME")]
    sensitive: Vec<String>,
    /// Sensitive parameter read from an environment variable: NAME=VAR (repeatable).
    #[arg(long = "sensitive-env", visible_alias = "sensitive-param-env", value_name = "NAME=VAR")]
    sensitive_env: Vec<String>,
    /// Sensitive parameter read from a file: NAME=PATH (repeatable).
    #[arg(long = "sensitive-file", visible_alias = "sensitive-param-file", value_name = "NAME=PATH")]
    sensitive_file: Vec<String>,
    /// Outbound host the connector may reach (repeatable).
    #[arg(long = "allowed-host", value_name = "HOST")]
    allowed_hosts: Vec<String>,
    /// Extra trusted CA PEM file (repeatable).
    #[arg(long = "extra-ca", visible_alias = "extra-ca-pem", value_name = "FILE")]
    extra_ca: Vec<PathBuf>,
    /// Call deadline in seconds.
    #[arg(long)]
    timeout_seconds: Option<u64>,
    /// Memory cap in MiB.
    #[arg(long)]
    memory_mib: Option<u64>,
    /// Largest outbound HTTP response body a component may read, in MiB.
    #[arg(long)]
    http_body_mib: Option<u64>,
}

impl Fields {
    fn apply(self, def: &mut AccountDef) -> anyhow::Result<()> {
        if let Some(c) = self.connector {
            def.connector = std::path::absolute(&c)?;
        }
        if let Some(d) = self.description {
            def.description = d;
        }
        for (k, v) in super::kv_pairs(("--param", "NAME=VALUE"), &self.params)? {
            def.params.insert(k, ParamDef { value: Some(ValueSource::Literal(v)), ..ParamDef::default() });
        }
        for k in self.sensitive {
            def.params.insert(k, ParamDef { sensitive: true, required: true, ..ParamDef::default() });
        }
        for (k, var) in super::kv_pairs(("--sensitive-env", "NAME=VAR"), &self.sensitive_env)? {
            def.params.insert(
                k,
                ParamDef { sensitive: true, value: Some(ValueSource::Env { env: var }), ..ParamDef::default() },
            );
        }
        for (k, path) in super::kv_pairs(("--sensitive-file", "NAME=PATH"), &self.sensitive_file)? {
            let file = std::path::absolute(PathBuf::from(path))?;
            def.params.insert(
                k,
                ParamDef { sensitive: true, value: Some(ValueSource::File { file }), ..ParamDef::default() },
            );
        }
        for host in self.allowed_hosts {
            if !def.allowed_hosts.contains(&host) {
                def.allowed_hosts.push(host);
            }
        }
        for p in self.extra_ca {
            let p = std::path::absolute(&p)?;
            if !def.extra_ca_pems.contains(&p) {
                def.extra_ca_pems.push(p);
            }
        }
        if self.http_body_mib.is_some() {
            def.http_body_mib = self.http_body_mib;
        }
        if self.timeout_seconds.is_some() {
            def.timeout_seconds = self.timeout_seconds;
        }
        if self.memory_mib.is_some() {
            def.memory_mib = self.memory_mib;
        }
        Ok(())
    }
}

pub fn run(cmd: Command, inv: &mut Inventory, env: &super::Env) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::List { json } => {
            let accounts = inv.accounts()?;
            if json {
                let views = accounts
                    .iter()
                    .map(|a| Ok(certhost::view::account(inv, a)?))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                output::json(&views)?;
            } else if accounts.is_empty() {
                println!("no CA accounts");
            } else {
                let rows: Vec<Vec<String>> = accounts
                    .iter()
                    .map(|a| {
                        let test = match &a.last_test {
                            Some(t) => format!("{} at {}", if t.ok { "ok" } else { "FAILED" }, output::rfc3339(t.at)),
                            None => "never".into(),
                        };
                        vec![
                            a.name.clone(),
                            a.def.status.as_str().into(),
                            a.def.connector.display().to_string(),
                            a.origin.clone(),
                            test,
                        ]
                    })
                    .collect();
                output::table(&["NAME", "STATUS", "CONNECTOR", "ORIGIN", "LAST TEST"], &rows);
            }
        }
        Command::Show { name, json } => {
            let a = inv.account(&name)?.ok_or_else(|| anyhow!("account {name} does not exist"))?;
            let v = certhost::view::account(inv, &a)?;
            if json {
                output::json(&v)?;
            } else {
                output::outline(&serde_json::to_value(&v)?);
            }
        }
        Command::Create { name, fields } => {
            if inv.account(&name)?.is_some() {
                bail!("account {name} already exists (use account edit)");
            }
            let connector =
                fields.connector.clone().ok_or_else(|| anyhow!("--connector is required to create an account"))?;
            let mut def = AccountDef::new(connector);
            fields.apply(&mut def)?;
            def.check(&name)?;
            check_loads(&name, &def, env)?;
            // Create-only: an account of that name made meanwhile (by serve, say) is not replaced.
            inv.create_account(&name, &def, "cli", &env.actor)?;
            println!("account {name} created");
        }
        Command::Edit { name, fields, unset, remove_allowed_hosts, remove_extra_ca } => {
            let mut a = inv.account(&name)?.ok_or_else(|| anyhow!("account {name} does not exist"))?;
            refuse_file_defined(&a.origin, &name)?;
            // Removals first, so an edit can replace a host (`--remove-allowed-host old
            // --allowed-host new`): an egress list that only grows cannot be narrowed.
            for k in unset {
                if a.def.params.remove(&k).is_none() {
                    bail!("account {name} has no parameter {k}");
                }
            }
            for host in remove_allowed_hosts {
                let before = a.def.allowed_hosts.len();
                a.def.allowed_hosts.retain(|h| h != &host);
                if a.def.allowed_hosts.len() == before {
                    bail!("account {name} has no allowed host {host} (see `certhost account show {name}`)");
                }
            }
            for file in remove_extra_ca {
                let file = std::path::absolute(&file)?;
                let before = a.def.extra_ca_pems.len();
                a.def.extra_ca_pems.retain(|p| p != &file);
                if a.def.extra_ca_pems.len() == before {
                    bail!("account {name} has no extra CA file {}", file.display());
                }
            }
            fields.apply(&mut a.def)?;
            a.def.check(&name)?;
            // A parameter the account now defines must not also be defined by a profile using it.
            let mut accounts: std::collections::BTreeMap<_, _> =
                inv.accounts()?.into_iter().map(|x| (x.name, x.def)).collect();
            accounts.insert(name.clone(), a.def.clone());
            for (pname, pdef, _) in inv.profiles()? {
                if pdef.accounts.contains(&name) {
                    certhost::config::check_links(&pname, &pdef, &accounts)?;
                }
            }
            check_loads(&name, &a.def, env)?;
            // Update-only: an account deleted meanwhile is not made again.
            let stranded = inv.update_account(&name, &a.def, &env.actor)?;
            println!("account {name} updated");
            if let Some(warning) =
                certhost::inventory::stranded_warning(certhost::inventory::SecretOwner::Account, &name, &stranded)
            {
                eprintln!("warning: {warning}");
            }
        }
        Command::Activate { name } => {
            inv.set_account_status(&name, AccountStatus::Active, &env.actor)?;
            println!("account {name} is active");
        }
        Command::Deactivate { name } => {
            inv.set_account_status(&name, AccountStatus::Inactive, &env.actor)?;
            println!("account {name} is inactive: it will not be called; its certificates are unchanged");
        }
        Command::Delete { name } => {
            if let Some(a) = inv.account(&name)? {
                refuse_file_defined(&a.origin, &name)?;
            }
            inv.delete_account(&name, &env.actor)?;
            println!("account {name} deleted (its audit history stays)");
        }
        Command::Test { name } => {
            let registry = super::registry(&env.data_dir, env);
            let result = super::runtime()?.block_on(async {
                let mut p =
                    Pipeline { inventory: inv, connectors: &registry, env: &super::env_lookup, actor: &env.actor };
                p.test_account(&name).await
            })?;
            match result.ok() {
                Some(true) => println!("account {name}: test_connection ok"),
                Some(false) => {
                    // One line, as every error: a script's stderr may run over several.
                    let why = result.message().replace('\n', " ");
                    eprintln!("error: account {name}: test_connection failed: {}", super::output::terminal_safe(&why));
                    return Ok(ExitCode::from(1));
                }
                None => println!(
                    "account {name}: not tested: its connector has no connection test (test_connection is not implemented); issue a certificate to check the account"
                ),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Accounts from certhost.toml change in the file: the next command re-reads it and would undo
/// a CLI edit silently.
fn refuse_file_defined(origin: &str, name: &str) -> anyhow::Result<()> {
    if origin == "file" {
        bail!("account {name} is defined in the configuration file; change it there");
    }
    Ok(())
}

/// Checks the definition against its connector ([`AccountDef::check_connector`]).
fn check_loads(name: &str, def: &AccountDef, env: &super::Env) -> anyhow::Result<()> {
    let registry = super::registry(&env.data_dir, env);
    super::runtime()?.block_on(def.check_connector(name, &registry))?;
    Ok(())
}
