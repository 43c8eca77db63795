//! Command-line interface: one file per subcommand; this file holds the argument tree and
//! the dispatch. Human output is a table; `--json` output is stable for scripts.

mod account;
mod audit;
mod backup;
mod ca;
mod import;
mod inspect_csr;
mod issue;
mod key_csr;
mod lifecycle;
mod list;
mod master_key;
mod orders;
mod output;
mod plugin;
mod profile;
mod renewals;
mod secret;
mod serve;
mod show;
mod token;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use certhost::inventory::Inventory;
use clap::{Parser, Subcommand};

/// certhost — certificate lifecycle host: CA connector plugins, inventory, renewals.
#[derive(Debug, Parser)]
#[command(
    name = "certhost",
    version,
    about,
    propagate_version = true,
    after_help = "Exit codes: 0 ok; 1 error (one sentence on stderr); 2 usage error; 3 a certificate was issued \
                  and stored, but a deployment target or its --out files failed (do not issue again: certhost \
                  deploy ID, or certhost show ID --out DIR); 4 the order is held for an operator (its CA call \
                  timed out, or what the CA issued could not be stored: do not retry; see certhost orders show ID); 5 issue \
                  --out was given and nothing is issued yet (the order is pending at its CA or awaits approval)."
)]
pub struct Cli {
    /// Data directory holding the inventory database and the master key file.
    #[arg(long, global = true, env = "CERTHOST_DATA_DIR", default_value = "./certhost-data")]
    pub data_dir: PathBuf,
    /// Configuration file with CA accounts and profile directories (default ./certhost.toml when present).
    #[arg(long, global = true, env = "CERTHOST_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log more (repeat for debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// How log lines are written to stderr: `text` (for people) or `json` (one object per
    /// line, for a log shipper; an API request's lines carry its `request_id` under `spans`).
    #[arg(long, global = true, env = "CERTHOST_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// The form of the log lines on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One line of text per event, for a person or journald.
    Text,
    /// One JSON object per event (`timestamp`, `level`, `message` and the event's fields, the
    /// `spans` it happened in), for a log shipper that would otherwise guess at the text.
    Json,
}

/// The exit code of a command whose order is held for an operator (`needs_attention`: its CA
/// call timed out, or what the CA issued could not be stored): the CA may have the request,
/// so neither success nor the error (1) a wrapper retries on.
pub const HELD_FOR_OPERATOR: u8 = 4;

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the data directory, its master key and an empty inventory (any command that
    /// writes does so on first use; commands that only read need one to exist).
    Init,
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
    /// Write a consistent copy of the inventory to a new file (safe while serve runs).
    Backup(backup::Args),
    /// Put a backup in place as the inventory, after checking it opens under the master key
    /// (no other certhost process may be running on the data directory).
    Restore(backup::RestoreArgs),
    /// Run the main job: the HTTP API, the order poller, the renewal scheduler, notifications and ACME challenge answers.
    Serve(serve::Args),
    /// API bearer tokens: create, list, revoke.
    #[command(subcommand)]
    Token(token::Command),
    /// Connector plugins: conformance check, and a new connector crate to start from.
    #[command(subcommand)]
    Plugin(plugin::Command),
    /// Private root CA for the local-ca connector.
    #[command(subcommand)]
    Ca(ca::Command),
    /// Request a certificate by profile.
    Issue(issue::Args),
    /// CA accounts: list, show, create, edit, activate, deactivate, delete, test.
    #[command(subcommand)]
    Account(account::Command),
    /// Profiles: list, show, create, delete.
    #[command(subcommand)]
    Profile(profile::Command),
    /// Sensitive parameter values (stored encrypted, never shown).
    #[command(subcommand)]
    Secret(secret::Command),
    /// The master key: rotate it (every key and secret sealed again under a new one).
    #[command(subcommand)]
    MasterKey(master_key::Command),
    /// Orders: list, show, poll, approve, decline, resubmit.
    #[command(subcommand)]
    Orders(orders::Command),
    /// Renew a certificate (same names; key per the profile), optionally at another profile or CA account.
    Renew(lifecycle::RenewArgs),
    /// Reissue a certificate: same names, always a new key pair.
    Reissue(lifecycle::RenewArgs),
    /// Revoke a certificate at its CA (RFC 5280 reason) and mark it revoked.
    Revoke(lifecycle::RevokeArgs),
    /// Remove a certificate from the inventory (the CA is not contacted; the audit stays).
    Delete(lifecycle::DeleteArgs),
    /// Approve, decline, suspend or resume an order at its CA (update_order).
    UpdateOrder(lifecycle::UpdateOrderArgs),
    /// Upcoming automatic renewals (attempts, last error) and the auto-renewal history; `renewals retry` retries failing ones now.
    Renewals(renewals::RenewalsArgs),
    /// Deploy a certificate again to its profile's targets.
    Deploy(renewals::DeployArgs),
    /// Import the certificates a CA account's connector lists (list_certificates), deduplicated.
    ImportFromAccount(renewals::ImportFromAccountArgs),
}

/// What main.rs reads from the process environment for the commands.
pub struct Env {
    /// The data directory (for the compiled-component cache).
    pub data_dir: PathBuf,
    /// `CERTHOST_MASTER_KEY`, when set.
    pub master_key: Option<String>,
    /// `CERTHOST_NEW_MASTER_KEY`, when set: the key `master-key rotate` seals under.
    pub new_master_key: Option<String>,
    /// Who is acting, for audit events.
    pub actor: String,
}

/// Runs one command.
pub fn run(cli: Cli, env: &Env) -> anyhow::Result<ExitCode> {
    let Cli { data_dir, config, command, .. } = cli;
    let configured = |env: &Env| open_configured(&data_dir, config.as_deref(), env);
    // A command that only reads finds no inventory where none is, rather than making an
    // empty one (and a master key nobody backed up) in a mistyped --data-dir or the wrong
    // working directory, and answering "no certificates".
    let reads_only = match &command {
        // `renewals retry` writes, but only to an inventory that has failing renewals: a
        // mistyped --data-dir must not make a new one to find none in (review of stop 45).
        Command::List(_) | Command::Show(_) | Command::Audit(_) | Command::Backup(_) | Command::Renewals(_) => true,
        Command::Token(cmd) => cmd.reads_only(),
        Command::Orders(cmd) => cmd.reads_only(),
        Command::Account(cmd) => cmd.reads_only() && config_path(config.as_deref()).is_none(),
        Command::Profile(cmd) => cmd.reads_only() && config_path(config.as_deref()).is_none(),
        _ => false,
    };
    if reads_only {
        require_inventory(&data_dir)?;
    }
    // Listing a configuration file's accounts or profiles loads them into the inventory, so
    // it makes one where there is none: said, since a mistyped --data-dir then holds a new
    // master key nobody backed up (author review of stop 40: it was silent).
    let lists_config = match &command {
        Command::Account(cmd) => cmd.reads_only(),
        Command::Profile(cmd) => cmd.reads_only(),
        _ => false,
    };
    let announce = (lists_config && !data_dir.join(certhost::inventory::DB_FILE).exists())
        .then(|| config_path(config.as_deref()))
        .flatten();
    let dynamic = match &command {
        Command::Issue(args) => Some(args.dynamic_params()),
        Command::Renew(args) | Command::Reissue(args) => Some(args.dynamic_params()),
        Command::Orders(cmd) => cmd.dynamic_params(),
        _ => None,
    };
    if let Some(params) = dynamic {
        params.hide_sources();
    }
    let result = match command {
        Command::Init => {
            let existed = data_dir.join(certhost::inventory::DB_FILE).is_file();
            open_inventory(&data_dir, env)?;
            let shown = std::path::absolute(&data_dir).unwrap_or_else(|_| data_dir.clone());
            if existed {
                println!("{} already holds an inventory; nothing changed", shown.display());
            } else {
                println!(
                    "created an inventory in {} (back up its master.key, or keep CERTHOST_MASTER_KEY: keys and secrets cannot be read without it)",
                    shown.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::KeyCsr(args) => key_csr::run(args),
        Command::InspectCsr(args) => inspect_csr::run(args),
        Command::Import(args) => import::run(args, &mut open_inventory(&data_dir, env)?, env),
        Command::List(args) => list::run(args, &current_inventory(&data_dir, env)?),
        Command::Show(args) => show::run(args, &mut current_inventory(&data_dir, env)?, env),
        Command::Audit(args) => audit::run(args, &open_inventory(&data_dir, env)?),
        Command::Backup(args) => backup::run(args, &mut open_inventory(&data_dir, env)?, env),
        Command::Restore(args) => backup::restore(args, &data_dir, env),
        Command::Ca(cmd) => ca::run(cmd),
        Command::Plugin(cmd) => plugin::run(cmd, env),
        Command::Serve(args) => {
            let (inv, _key, released) =
                certhost::inventory::open_data_dir_for_serve(&data_dir, env.master_key.as_deref())?;
            let inv = hiding_secret_variables(inv);
            if released > 0 {
                tracing::warn!(
                    "{released} renewal claim(s) of a process that ended without giving them back (killed?) let go of: \
                     what was due is renewed now"
                );
            }
            let config = config_in_use(config.as_deref(), &inv, true)?;
            serve::run(args, inv, config, env)
        }
        Command::Token(cmd) => token::run(cmd, &mut open_inventory(&data_dir, env)?, env),
        Command::Issue(args) => issue::run(args, &mut configured(env)?, env),
        Command::Account(cmd) if cmd.reads_only() => {
            inspected(&data_dir, config.as_deref(), env, |inv| account::run(cmd, inv, env))
        }
        Command::Account(cmd) => account::run(cmd, &mut configured(env)?, env),
        Command::Profile(cmd) if cmd.reads_only() => {
            inspected(&data_dir, config.as_deref(), env, |inv| profile::run(cmd, inv, env))
        }
        Command::Profile(cmd) => profile::run(cmd, &mut configured(env)?, env),
        Command::Secret(cmd) => secret::run(cmd, &mut configured(env)?, env),
        Command::MasterKey(cmd) => master_key::run(cmd, &data_dir, env),
        Command::Orders(cmd) if cmd.reads_only() => {
            inspected(&data_dir, config.as_deref(), env, |inv| orders::run(cmd, inv, env))
        }
        Command::Orders(cmd) if cmd.works_as_stored() => {
            orders::run(cmd, &mut configured_or_stored(&data_dir, config.as_deref(), env)?, env)
        }
        Command::Orders(cmd) => orders::run(cmd, &mut configured(env)?, env),
        Command::Renew(args) => {
            lifecycle::renew(args, certhost::lifecycle::RenewKind::Renew, &mut configured(env)?, env)
        }
        Command::Reissue(args) => {
            lifecycle::renew(args, certhost::lifecycle::RenewKind::Reissue, &mut configured(env)?, env)
        }
        Command::Revoke(args) => {
            lifecycle::revoke(args, &mut configured_or_stored(&data_dir, config.as_deref(), env)?, env)
        }
        Command::Delete(args) => lifecycle::delete(args, &mut open_inventory(&data_dir, env)?, env),
        Command::UpdateOrder(args) => lifecycle::update_order(args, &mut configured(env)?, env),
        Command::Renewals(args) => match args.take_action() {
            (Some(renewals::RenewalsAction::Retry(retry)), _) => {
                renewals::retry(retry, &mut open_inventory(&data_dir, env)?, &env.actor)
            }
            (None, args) => renewals::renewals(args, &open_inventory(&data_dir, env)?),
        },
        Command::Deploy(args) => renewals::deploy(args, &mut configured(env)?, env),
        Command::ImportFromAccount(args) => renewals::import_from_account(args, &mut configured(env)?, env),
    };
    if let Some(file) = announce
        && data_dir.join(certhost::inventory::DB_FILE).exists()
    {
        let shown = std::path::absolute(&data_dir).unwrap_or_else(|_| data_dir.clone());
        // A key file is made only when CERTHOST_MASTER_KEY is not given.
        let key = if env.master_key.is_none() && data_dir.join(certhost::vault::KEY_FILE).exists() {
            " (with a new master key file)"
        } else {
            ""
        };
        eprintln!(
            "note: there was no inventory in {}; a new one{key} now holds the definitions of {} — if that is not \
             the data directory you meant, give it with --data-dir",
            shown.display(),
            file.display()
        );
    }
    result
}

/// The configuration file in use: the one given, or ./certhost.toml when present.
fn config_path(config: Option<&Path>) -> Option<PathBuf> {
    match config {
        Some(p) => Some(p.to_path_buf()),
        None => Some(PathBuf::from("certhost.toml")).filter(|p| p.is_file()),
    }
}

/// The configuration file to load into `inv`: [`config_path`], except a `./certhost.toml`
/// that was not given (`--config`) and is not the file the inventory's file-defined accounts
/// and profiles came from. Loaded, it would replace them all: a command run in another
/// project's directory deleted this one's profiles, and a running `serve` lost them at once
/// (author review of stop 38). A command leaves it unread, with a warning naming both files;
/// `serve` (`for_serve`), whose `[server]` and `[notify]` come from the same file, refuses to
/// start rather than run on defaults — another address, no TLS, no notifications (diff review
/// of stop 38). Given with `--config`, it is loaded.
pub(crate) fn config_in_use(
    config: Option<&Path>,
    inv: &Inventory,
    for_serve: bool,
) -> anyhow::Result<Option<PathBuf>> {
    let Some(path) = config_path(config) else { return Ok(None) };
    if config.is_some() {
        return Ok(Some(path));
    }
    let here = || {
        output::terminal_safe(&std::path::absolute(&path).unwrap_or(path.clone()).display().to_string()).into_owned()
    };
    // A file taken on for the first time must be the user's own; the one recorded before was
    // taken on already (a service user's serve beside an operator's file keeps starting). A
    // link is the user's own in any case: one in a stranger's directory to the recorded file
    // read that directory's profiles (diff review of stop 50).
    let recorded = inv.recorded_config_file()?.is_some_and(|r| certhost::config::same_config(&r, &path));
    let untrusted = certhost::config::found_link_untrusted(&path)
        .or_else(|| if recorded { None } else { certhost::config::found_file_untrusted(&path) });
    if let Some(why) = untrusted {
        let here = here();
        if for_serve {
            anyhow::bail!("{here} is not read: {why}; give --config {here} if it is the file to serve with");
        }
        eprintln!("warning: {here} is not read: {why}; give --config {here} if it is the file to use");
        return Ok(None);
    }
    match certhost::config::loaded_from_elsewhere(inv, &path)? {
        None => Ok(Some(path)),
        Some(certhost::config::Elsewhere::MadeWithoutFile { count }) => {
            let here = here();
            let why = format!(
                "this data directory's {count} accounts and profiles were made with the CLI or the API, not loaded \
                 from a file"
            );
            if for_serve {
                anyhow::bail!(
                    "{here} is not read: {why}; give --config {here} to load it beside them (it is recorded from then \
                     on)"
                );
            }
            eprintln!(
                "warning: {here} is not read: {why}; going on with them (give --config {here} once to load it beside \
                 them, and it is recorded)"
            );
            Ok(None)
        }
        Some(certhost::config::Elsewhere::Unrecorded { missing }) => {
            let here =
                output::terminal_safe(&std::path::absolute(&path).unwrap_or(path).display().to_string()).into_owned();
            let shown = missing.iter().take(5).map(|m| output::terminal_safe(m).into_owned()).collect::<Vec<_>>();
            let more = if missing.len() > shown.len() {
                format!(" and {} more", missing.len() - shown.len())
            } else {
                String::new()
            };
            let why = format!(
                "this data directory's accounts and profiles were loaded by an earlier certhost, which did not record \
                 from which file, and {here} does not define {}{more}: loading it would delete them",
                shown.join(", ")
            );
            if for_serve {
                anyhow::bail!(
                    "{why}; give --config naming the file they come from (it is recorded from then on), or --config \
                     {here} to load this one in their place"
                );
            }
            eprintln!(
                "warning: {here} is not read: {why}; going on with them as last loaded (give --config naming their \
                 file once, and it is recorded)"
            );
            Ok(None)
        }
        Some(certhost::config::Elsewhere::Recorded(recorded)) => {
            let here =
                output::terminal_safe(&std::path::absolute(&path).unwrap_or(path).display().to_string()).into_owned();
            let recorded = output::terminal_safe(&recorded.display().to_string()).into_owned();
            if for_serve {
                anyhow::bail!(
                    "{here} is not the configuration file this data directory's accounts and profiles come from \
                     ({recorded}); give --config {recorded} to serve with that one, or --config {here} to load this \
                     one in its place"
                );
            }
            eprintln!(
                "warning: {here} is not read: this data directory's accounts and profiles come from {recorded}, and \
                 loading it would replace them; going on with them as last loaded (give --config {here} to load it \
                 instead)"
            );
            Ok(None)
        }
    }
}

/// Opens the inventory and syncs the configuration file into it, checking the definitions
/// that changed against their connectors.
fn open_configured(data_dir: &Path, config: Option<&Path>, env: &Env) -> anyhow::Result<Inventory> {
    let mut inv = open_inventory(data_dir, env)?;
    if let Some(path) = config_in_use(config, &inv, false)? {
        let registry = registry(data_dir, env);
        let report = runtime()?.block_on(certhost::config::load(&mut inv, &path, &env.actor, &registry, false))?;
        log_report(&report, &path);
    }
    Ok(inv)
}

/// [`open_configured`]'s inventory, or — when the configuration file does not load — the
/// inventory as stored, with a warning: for the commands an emergency needs (`revoke` of a
/// compromised key, `orders decline`), which one broken profile file blocked as it blocks
/// every change (operator review of stop 36). They use the definitions last loaded, as a
/// running `serve` does.
fn configured_or_stored(data_dir: &Path, config: Option<&Path>, env: &Env) -> anyhow::Result<Inventory> {
    match open_configured(data_dir, config, env) {
        Ok(inv) => Ok(inv),
        Err(e) if e.downcast_ref::<certhost::config::ConfigError>().is_some() => {
            eprintln!("warning: {}; going on with the accounts and profiles as last loaded", sentence(&e));
            open_inventory(data_dir, env)
        }
        Err(e) => Err(e),
    }
}

/// Runs `look`, a command that only looks, on [`open_configured`]'s inventory — or, when the
/// configuration file does not load (a syntax error mid-edit), on the inventory as stored,
/// then reports the file's error and fails: the time an operator most needs to look is when
/// something is broken, and a script still sees the failure.
fn inspected(
    data_dir: &Path,
    config: Option<&Path>,
    env: &Env,
    look: impl FnOnce(&mut Inventory) -> anyhow::Result<ExitCode>,
) -> anyhow::Result<ExitCode> {
    match open_configured(data_dir, config, env) {
        Ok(mut inv) => look(&mut inv),
        Err(e) if e.downcast_ref::<certhost::config::ConfigError>().is_some() => {
            // What the stored inventory lacks may be what the broken file defines (`account
            // show` of an account the file adds): the file's error is the cause, so it is said
            // either way (black-box review of stop 35: only "does not exist" was).
            match look(&mut open_inventory(data_dir, env)?) {
                Ok(_) => eprintln!("error: {} (shown above: what the inventory holds)", sentence(&e)),
                Err(found) => eprintln!(
                    "error: {} (in the inventory as stored; the configuration file does not load: {})",
                    sentence(&found),
                    sentence(&e)
                ),
            }
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(e),
    }
}

/// Logs what a configuration load changed, and what it kept and why.
fn log_report(report: &certhost::config::LoadReport, path: &Path) {
    for a in &report.accounts_changed {
        tracing::info!(account = %a, "account loaded from {}", path.display());
    }
    for p in &report.profiles_changed {
        tracing::info!(profile = %p, "profile loaded");
    }
    for p in &report.profiles_removed {
        tracing::info!(profile = %p, "profile removed: its file is gone");
    }
    for a in &report.accounts_removed {
        tracing::info!(account = %a, "account removed: the file no longer defines it");
    }
    for k in &report.kept {
        tracing::warn!("{k}");
    }
}

/// The connector registry for this process: connectors' caches live in the inventory, so
/// every command and `serve` share them.
fn registry(data_dir: &Path, env: &Env) -> certhost::connector::Registry {
    // The compiled-component cache lives in the data directory: create that private first.
    // A failure shows when the inventory opens the same directory.
    let _ = certhost::inventory::create_data_dir(data_dir);
    // Script connectors run in worker processes of this very binary.
    let exe = std::env::current_exe().unwrap_or_else(|_| std::path::PathBuf::from("certhost"));
    let caches = certhost::inventory::InventoryCacheStore::new(data_dir.to_owned(), env.master_key.as_deref());
    certhost::connector::Registry::new(exe, Some(data_dir.join("wasm-cache")))
        .with_cache_store(std::sync::Arc::new(caches))
}

/// The connector registry for `plugin check`, which works without a data directory: it uses
/// the compiled-component cache of one that exists and creates none (a check run in a plugin's
/// source tree left a `certhost-data` directory there).
fn registry_without_data_dir(data_dir: &Path) -> certhost::connector::Registry {
    let exe = std::env::current_exe().unwrap_or_else(|_| std::path::PathBuf::from("certhost"));
    certhost::connector::Registry::new(exe, data_dir.is_dir().then(|| data_dir.join("wasm-cache")))
}

/// A single-threaded async runtime for commands that call connectors.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

/// Reads the process environment for `{ env = ... }` parameter references. Lives in the
/// binary: the library never reads the environment itself.
fn env_lookup(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// A request's dynamic parameters, given on the command line or — for a sensitive one, which
/// must not appear in the process list (`/proc/PID/cmdline` is readable by every local user)
/// or the shell's history — read from a file or an environment variable.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DynamicParams {
    /// Dynamic parameter NAME=VALUE (repeatable). Give a sensitive one with --param-file or
    /// --param-env: a value on the command line shows in the process list.
    #[arg(long = "param", value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// Dynamic parameter NAME=PATH read from a file, trailing newline dropped (repeatable;
    /// `-` reads standard input).
    #[arg(long = "param-file", value_name = "NAME=PATH")]
    files: Vec<String>,
    /// Dynamic parameter NAME=VAR read from environment variable VAR (repeatable).
    #[arg(long = "param-env", value_name = "NAME=VAR")]
    envs: Vec<String>,
}

impl DynamicParams {
    /// Registers the variables and files values are read from (`--param-env`,
    /// `--param-file`) as a secret's sources, before anything can start a child process (a
    /// definition checked against its script starts a worker): see [`hide_value_sources`].
    /// Such a value is usually a sensitive one: that is what the two options are for.
    fn hide_sources(&self) {
        hide_value_sources(&self.files, &self.envs);
    }

    /// Warns on standard error about each value given with `--param` that profile `profile`
    /// defines sensitive: it was in the process list, and is likely in the shell's history
    /// (walkthrough of stop 46: accepted without a word). The value is used all the same: the
    /// harm is done by the time the command reads it.
    pub(super) fn warn_sensitive_on_command_line(&self, inv: &Inventory, profile: Option<&str>) {
        let Some((def, _)) = profile.and_then(|name| inv.profile(name).ok().flatten()) else { return };
        for name in self.params.iter().filter_map(|p| p.split_once('=')).map(|(name, _)| name) {
            if def.params.get(name).is_some_and(|d| d.sensitive) {
                eprintln!(
                    "warning: parameter {name} is sensitive and was given with --param: its value was in the \
                     process list and may be in your shell's history; give it with --param-env NAME=VAR or \
                     --param-file NAME=PATH"
                );
            }
        }
    }

    /// Name → value, from all three forms; a name given twice is refused, and no value is
    /// ever echoed.
    pub fn resolve(&self) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
        with_sources(
            kv_pairs(("--param", "NAME=VALUE"), &self.params)?,
            ("--param-file", &self.files),
            ("--param-env", &self.envs),
        )
    }
}

/// Registers the sources of `NAME=PATH` and `NAME=VAR` arguments as a secret's: no script
/// worker or hook inherits the variables, and hook output is redacted of what they and the
/// files hold. Malformed arguments are left to the parsing that reports them.
fn hide_value_sources(files: &[String], envs: &[String]) {
    use certhost::param::ValueSource;
    let split = |pairs: &[String]| -> Vec<String> {
        pairs.iter().filter_map(|p| p.split_once('=')).map(|(_, source)| source.to_owned()).collect()
    };
    let envs = split(envs).into_iter().map(|env| ValueSource::Env { env });
    let files = split(files).into_iter().filter(|f| f != "-").map(|f| ValueSource::File { file: f.into() });
    let sources: Vec<ValueSource> = envs.chain(files).collect();
    certhost::param::hide_from_children(&sources);
}

/// `values` with the parameters read from files (`NAME=PATH`, `-` for standard input) and
/// environment variables (`NAME=VAR`) added; a name given twice is refused. Neither the
/// path's content nor the variable's value is ever echoed.
fn with_sources(
    mut values: std::collections::BTreeMap<String, String>,
    (files_flag, files): (&str, &[String]),
    (envs_flag, envs): (&str, &[String]),
) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    use certhost::param::{ValueSource, resolve};
    let mut stdin_read = false;
    for (name, path) in kv_pairs((files_flag, "NAME=PATH"), files)? {
        let value = if path == "-" {
            anyhow::ensure!(!stdin_read, "only one parameter can be read from standard input");
            stdin_read = true;
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .map_err(|e| anyhow::anyhow!("parameter {name} could not be read from standard input ({e})"))?;
            text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text).to_owned()
        } else {
            resolve(&ValueSource::File { file: path.into() }, &name, "the command line", &env_lookup)?
        };
        anyhow::ensure!(values.insert(name.clone(), value).is_none(), "parameter {name} is given twice");
    }
    for (name, var) in kv_pairs((envs_flag, "NAME=VAR"), envs)? {
        let value = resolve(&ValueSource::Env { env: var }, &name, "the command line", &env_lookup)?;
        anyhow::ensure!(values.insert(name.clone(), value).is_none(), "parameter {name} is given twice");
    }
    Ok(values)
}

/// Parses the `NAME=…` arguments of option `flag` into a map, refusing duplicates. The errors
/// name the option and its form (`--param-file takes NAME=PATH`): "NAME=VALUE" was said of
/// every option (code review of stop 39).
fn kv_pairs(flag: Flag, pairs: &[String]) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    let (option, form) = flag;
    let mut out = std::collections::BTreeMap::new();
    for p in pairs {
        // Never echo the argument: it may hold a sensitive value.
        let (k, v) =
            p.split_once('=').ok_or_else(|| anyhow::anyhow!("an argument of {option} is not of the form {form}"))?;
        anyhow::ensure!(!k.is_empty(), "an argument of {option} ({form}) has an empty name");
        anyhow::ensure!(out.insert(k.to_owned(), v.to_owned()).is_none(), "parameter {k} is given twice");
    }
    Ok(out)
}

/// An option that takes `NAME=…` arguments, and the form it takes: for the errors.
type Flag<'a> = (&'a str, &'a str);

/// Opens the inventory with statuses brought up to date: certificates past notAfter become
/// `expired` (audited), so `list --status active` never shows an expired one.
fn current_inventory(data_dir: &Path, env: &Env) -> anyhow::Result<Inventory> {
    let mut inv = open_inventory(data_dir, env)?;
    // A command that only looks still shows what is stored when the disk takes no writes:
    // `renewals` failed with "attempt to write a readonly database" exactly when an operator
    // needed it (operator review of stop 39).
    if let Err(e) = inv.mark_expired(&env.actor) {
        if !e.is_storage_failure() {
            return Err(e.into());
        }
        eprintln!(
            "warning: the inventory cannot be written ({e}); certificates past notAfter may still show as active"
        );
    }
    Ok(inv)
}

/// Refuses a data directory that holds no inventory, saying where it looked.
fn require_inventory(data_dir: &Path) -> anyhow::Result<()> {
    if data_dir.join(certhost::inventory::DB_FILE).is_file() {
        return Ok(());
    }
    let shown = std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    // A restore killed between its renames (an older certhost's) left only the inventory it set
    // aside: said, before "serve starts a new one" leads to an empty one beside it.
    let aside = certhost::inventory::set_aside_inventories(data_dir);
    let aside = match aside.last() {
        Some(newest) => format!(
            "; it holds {} certhost restore set aside ({}): `certhost restore {}` puts one back",
            if aside.len() == 1 { "an inventory".to_owned() } else { format!("{} inventories", aside.len()) },
            aside.join(", "),
            shown.join(newest).display()
        ),
        None => String::new(),
    };
    anyhow::bail!(
        "there is no inventory in {} (no {}): give the data directory with --data-dir or CERTHOST_DATA_DIR; \
         certhost init, issue, import or serve starts a new one{aside}",
        shown.display(),
        certhost::inventory::DB_FILE
    )
}

/// Opens the inventory with the master key from the environment or the key file.
fn open_inventory(data_dir: &Path, env: &Env) -> anyhow::Result<Inventory> {
    let (inv, _key) = certhost::inventory::open_data_dir(data_dir, env.master_key.as_deref())?;
    Ok(hiding_secret_variables(inv))
}

/// Before any command can start a Python worker or a hook: none of them gets a variable a
/// stored secret is read from, whichever account or profile it belongs to.
fn hiding_secret_variables(inv: Inventory) -> Inventory {
    if let Err(e) = inv.hide_secret_variables() {
        tracing::warn!("cannot read every stored definition for the variables its secrets come from: {e}");
    }
    inv
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
    // One line: a parser's message may run onto a second ("…\nin `t`"). Errors quote names
    // from certificates and CSRs (a CA's returned SAN, an imported CN), hence the escaping.
    output::terminal_safe(&parts.join(": ").replace('\n', " ")).into_owned()
}

/// Logs go to stderr; `-v` for info, `-vv` for debug; `RUST_LOG` overrides.
pub fn init_tracing(verbose: u8, format: LogFormat, command: &Command) {
    // At -vv, certhost's own debug lines, not every library's: creating one account with a
    // component wrote 25,000 lines of Cranelift's compile timings (API review of stop 38).
    // RUST_LOG reaches a library's.
    // wasmtime-wasi-http warns of each failed connection in Rust's debug form ("connect
    // error: Os { code: 111, … }"); the connector's error says it in words (ACME walkthrough of
    // stop 46), so only its errors pass unless RUST_LOG asks.
    let default = match verbose {
        0 => "warn,wasmtime_wasi_http=error",
        1 => "info,wasmtime_wasi_http=error",
        _ => "info,certhost=debug,wasmtime_wasi_http=error",
    };
    // A command that answers with the order's error itself (held, failed, rejected) does not
    // also log it: the same sentence came twice, as a WARN line and as `error:`
    // (plugin-author review, stop 36).
    let reports_holds = matches!(
        command,
        Command::Issue(_)
            | Command::Renew(_)
            | Command::Reissue(_)
            | Command::Orders(_)
            | Command::UpdateOrder(_)
            | Command::Deploy(_)
    );
    let default = if reports_holds && verbose == 0 {
        format!("{default},{}=off", certhost::issue::OUTCOME_LOG_TARGET)
    } else {
        default.to_owned()
    };
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // The outer filter lets through at most what the inner one does: its hint is the inner
    // one's, so that `log` records and callsites above the level are still cut by the cheap
    // static check (without a hint the maximum level became TRACE; diff review of stop 37).
    let hint = <tracing_subscriber::EnvFilter as tracing_subscriber::layer::Filter<tracing_subscriber::Registry>>::max_level_hint(&filter);
    let own_or_above_trace =
        tracing_subscriber::filter::filter_fn(|meta| own_or_above_trace(meta.target(), *meta.level()));
    let own_or_above_trace = match hint {
        Some(hint) => own_or_above_trace.with_max_level_hint(hint),
        None => own_or_above_trace,
    };
    let lines: Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync> = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_target(false)
            .boxed(),
        // The event's fields at the top (`message` beside them), the spans it happened in
        // under `spans`, outermost first: a connector call's span sits inside the request's,
        // and the innermost alone lost the request id (diff review of stop 50).
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .with_writer(std::io::stderr)
            .with_target(false)
            .boxed(),
    };
    let layer = lines.with_filter(filter).with_filter(own_or_above_trace);
    let _ = tracing_subscriber::registry().with(layer).try_init();
}

/// Whether a log line or span at `level` from `target` may be written: certhost's own at any
/// level, a library's only above TRACE. At TRACE, wasmtime's WASI HTTP bindings record every
/// argument of a component's host calls, a request's path and query among them, where a CA's
/// API key often goes, in clear; certhost's own lines are redacted (security review of stop 36).
pub fn own_or_above_trace(target: &str, level: tracing::Level) -> bool {
    level != tracing::Level::TRACE || target == "certhost" || target.starts_with("certhost::")
}
