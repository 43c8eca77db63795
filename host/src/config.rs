//! Configuration files: `certhost.toml` (CA accounts, where profiles live) and
//! `profiles/*.toml` (one profile per file, named after the file).
//!
//! Files are loaded at start-up and on reload and synced into the database, where accounts
//! and profiles created with the CLI or the API live too. A file definition replaces the one
//! it stored before on each load (the file is the source of truth for what it defines), but
//! never one of the same name made with the CLI or the API: that is a configuration error,
//! so nothing of the files applies, and the stored definition stays as its owner left it.
//! Relative paths in a file are relative to that file's directory.
//!
//! ```toml
//! # certhost.toml
//! profile_dirs = ["profiles"]
//!
//! [accounts.local-dev]
//! connector = "plugins/local-ca.wasm"
//! params.validity_days = "30"
//! params.ca_private_key = { sensitive = true, value = { file = "ca/ca.key" } }
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::account::{AccountDef, AccountError};
use crate::inventory::{ConfigRecord, Inventory, InventoryError, Upsert, is_file_origin, taken_by};
use crate::param::ValueSource;
use crate::profile::{PolicyError, ProfileDef};

/// `certhost.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Directories holding `*.toml` profiles (default `["profiles"]`, which may be missing;
    /// a directory named here must exist).
    #[serde(default)]
    pub profile_dirs: Option<Vec<PathBuf>>,
    /// CA accounts by name.
    #[serde(default)]
    pub accounts: BTreeMap<String, AccountDef>,
    /// `certhost serve` settings.
    #[serde(default)]
    pub server: ServerConfig,
    /// Where notifications go (`certhost serve`).
    #[serde(default)]
    pub notify: crate::notify::NotifyConfig,
}

/// `[server]`: listener and TLS of `certhost serve` (command-line flags win).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on (default 127.0.0.1:8443).
    pub listen: Option<std::net::SocketAddr>,
    /// PEM certificate chain for HTTPS; with `tls_key`, the API is served over TLS.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for HTTPS.
    pub tls_key: Option<PathBuf>,
    /// Seconds between renewal-scheduler rounds (default 30).
    pub renewal_interval_seconds: Option<u64>,
    /// Where `serve` answers ACME http-01 challenges (`GET /.well-known/acme-challenge/{token}`)
    /// for connectors on contract 0.2; none by default.
    pub acme_http01_listen: Option<std::net::SocketAddr>,
    /// Command run for ACME dns-01 challenges: `HOOK present|cleanup DOMAIN VALUE`.
    pub dns01_hook: Option<PathBuf>,
}

/// One line for a TOML error in `text`: its line, column and message, never the source line.
///
/// Why: `toml`'s own `Display` quotes the offending line with a caret under it, and in these
/// files that line can hold a secret (`value = "…"` under a typo'd key); the error would carry
/// it into the terminal and serve's log on a reload.
pub fn toml_error(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim_end().replace('\n', "; ");
    let Some(span) = error.span() else { return message };
    let before = text.get(..span.start).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    // A bare word as a value (`approval_required = nope`) reads to toml as a number gone wrong
    // ("invalid float; expected `nan`"): said what it is, without echoing it (walkthrough of
    // stop 46).
    let word: String = text
        .get(span.start..)
        .unwrap_or_default()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect();
    let bare = word.starts_with(|c: char| c.is_ascii_alphabetic())
        && !matches!(word.as_str(), "true" | "false" | "inf" | "nan")
        && before.trim_end().ends_with('=');
    let hint = if bare {
        " (a value without quotes: text needs them, \"…\"; a yes/no setting is true or false)"
    } else {
        ""
    };
    format!("line {line}, column {column}: {message}{hint}")
}

/// The whole of `certhost.toml`, paths made absolute (for `serve`'s own settings).
pub fn read_file(config_path: &Path) -> Result<ConfigFile, ConfigError> {
    let base = base_dir(config_path);
    let text = std::fs::read_to_string(config_path)
        .map_err(|e| ConfigError::Read { path: config_path.to_owned(), reason: e.to_string() })?;
    let mut config: ConfigFile = toml::from_str(&text)
        .map_err(|e| ConfigError::Parse { path: config_path.to_owned(), reason: toml_error(&text, &e) })?;
    for p in
        [&mut config.server.tls_cert, &mut config.server.tls_key, &mut config.server.dns01_hook].into_iter().flatten()
    {
        absolutize(p, &base);
    }
    let notify = &config.notify;
    // A URL that cannot be sent to was found only by the first notification, as a "builder
    // error" retried every minute (day-2 walkthrough of stop 46). Not echoed: a receiver's
    // URL may carry its token.
    if let Some(w) = &notify.webhook {
        let refuse = |why: String| ConfigError::Parse {
            path: config_path.to_owned(),
            reason: format!("[notify.webhook] url is not usable: {why}"),
        };
        match reqwest::Url::parse(&w.url) {
            Err(e) => return Err(refuse(format!("{e} (an absolute https:// or http:// URL is expected)"))),
            Ok(u) if !matches!(u.scheme(), "http" | "https") || u.host().is_none() => {
                return Err(refuse("an absolute https:// or http:// URL with a host is expected".into()));
            }
            Ok(_) => {}
        }
    }
    crate::param::hide_from_children(
        notify
            .webhook
            .iter()
            .filter_map(|w| w.secret.as_ref())
            .chain(notify.email.iter().filter_map(|e| e.password.as_ref())),
    );
    Ok(config)
}

/// Configuration errors: each names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Unreadable file.
    #[error("{path}: {reason}")]
    Read {
        /// File.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// TOML syntax or unknown keys.
    #[error("{path}: {reason}")]
    Parse {
        /// File.
        path: PathBuf,
        /// Where and what, from [`toml_error`].
        reason: String,
    },
    /// An account definition is invalid.
    #[error("{path}: {error}")]
    Account {
        /// File.
        path: PathBuf,
        /// Why.
        error: AccountError,
    },
    /// A profile definition is invalid.
    #[error("{path}: {error}")]
    Profile {
        /// File.
        path: PathBuf,
        /// Why.
        error: PolicyError,
    },
    /// A file defines an account or profile whose name belongs to one made with the CLI or
    /// the API: taking it over would silently replace it, and deleting the file delete it.
    #[error("{path}: {reason}")]
    Taken {
        /// File.
        path: PathBuf,
        /// Which definition, and its origin.
        reason: String,
    },
    /// Storing failed.
    #[error(transparent)]
    Inventory(#[from] InventoryError),
}

/// What a load did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LoadReport {
    /// Account names created or updated.
    pub accounts_changed: Vec<String>,
    /// Profile names created or updated.
    pub profiles_changed: Vec<String>,
    /// Profiles removed because their file is gone.
    pub profiles_removed: Vec<String>,
    /// Accounts removed because the file no longer defines them.
    pub accounts_removed: Vec<String>,
    /// Definitions gone from the files but kept because they are in use (one sentence each).
    pub kept: Vec<String>,
}

/// Accounts by name, and profiles by name with the file each came from.
pub type Definitions = (BTreeMap<String, AccountDef>, BTreeMap<String, (PathBuf, ProfileDef)>);

/// Parses and checks `config_path` and the profile files it points to. Nothing is stored
/// unless everything is valid, so a typo never half-applies a configuration.
pub fn read(config_path: &Path) -> Result<Definitions, ConfigError> {
    let base = base_dir(config_path);
    let mut config = read_file(config_path)?;
    for (name, def) in config.accounts.iter_mut() {
        absolutize_account(def, &base);
        def.check(name).map_err(|error| ConfigError::Account { path: config_path.to_owned(), error })?;
        // Before the definition's connector is started to check it.
        crate::param::hide_from_children(crate::param::sensitive_sources(&def.params));
    }
    let mut profiles: BTreeMap<String, (PathBuf, ProfileDef)> = BTreeMap::new();
    let named = config.profile_dirs.is_some();
    for dir in config.profile_dirs.unwrap_or_else(|| vec![PathBuf::from("profiles")]) {
        let dir = base.join(dir);
        // A directory certhost.toml names but cannot read (a typo, a missing mount) would
        // otherwise remove every profile it held from the inventory (review of stop 31).
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !named => continue,
            Err(e) => {
                return Err(ConfigError::Read {
                    path: config_path.to_owned(),
                    reason: format!("profile_dirs names {}, which cannot be read ({e})", dir.display()),
                });
            }
        };
        // Editors' lock, backup and swap files (`.#web.toml`, `.web.toml`) are not profiles.
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .filter(|p| !p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.')))
            .collect();
        files.sort();
        for file in files {
            let Some(name) = file.file_stem().and_then(|s| s.to_str()).map(str::to_owned) else { continue };
            if let Some((first, _)) = profiles.get(&name) {
                return Err(ConfigError::Read {
                    path: file.clone(),
                    reason: format!(
                        "profile {name} is also defined by {}; a profile name must be unique",
                        first.display()
                    ),
                });
            }
            let text = std::fs::read_to_string(&file)
                .map_err(|e| ConfigError::Read { path: file.clone(), reason: e.to_string() })?;
            let mut def: ProfileDef = toml::from_str(&text)
                .map_err(|e| ConfigError::Parse { path: file.clone(), reason: toml_error(&text, &e) })?;
            let pbase = file.parent().map(Path::to_path_buf).unwrap_or_default();
            absolutize_profile(&mut def, &pbase);
            def.check(&name).map_err(|error| ConfigError::Profile { path: file.clone(), error })?;
            crate::param::hide_from_children(def.secret_sources());
            profiles.insert(name, (file, def));
        }
    }
    Ok((config.accounts, profiles))
}

/// Reads the configuration and syncs it into the inventory (audited per change).
///
/// Definitions that changed since the last load (every one when `every`, as `serve` does at
/// start-up) are first checked against their connectors from `source`: a plain value for a
/// parameter the connector declares sensitive is refused ([`AccountDef::check_declared_sensitive`],
/// [`ProfileDef::check_connectors`]), as it is for accounts and profiles made with the CLI or
/// the API. Unchanged definitions were checked when they were loaded, so a command that
/// changes nothing loads no connector.
pub async fn load(
    inv: &mut Inventory,
    config_path: &Path,
    actor: &str,
    source: &dyn crate::connector::ConnectorSource,
    every: bool,
) -> Result<LoadReport, ConfigError> {
    let (accounts, profiles) = read(config_path)?;
    let stored_accounts = inv.accounts()?;
    let stored_profiles = inv.profiles()?;
    // Checked before anything is written; the writes check again in their transactions.
    if let Some(a) = stored_accounts.iter().find(|a| !is_file_origin(&a.origin) && accounts.contains_key(&a.name)) {
        return Err(ConfigError::Taken {
            path: config_path.to_owned(),
            reason: taken_by("account", &a.name, &a.origin),
        });
    }
    for (name, _, origin) in stored_profiles.iter().filter(|(_, _, origin)| !is_file_origin(origin)) {
        if let Some((file, _)) = profiles.get(name) {
            return Err(ConfigError::Taken { path: file.clone(), reason: taken_by("profile", name, origin) });
        }
    }
    let stored: BTreeMap<String, AccountDef> = stored_accounts.into_iter().map(|a| (a.name, a.def)).collect();
    let stored_profiles: BTreeMap<String, ProfileDef> =
        stored_profiles.into_iter().map(|(name, def, _)| (name, def)).collect();
    let mut known = stored.clone();
    known.extend(accounts.clone());
    for (name, (file, def)) in &profiles {
        check_links(name, def, &known).map_err(|error| ConfigError::Profile { path: file.clone(), error })?;
    }
    // Status is operator state, not part of what the file says: compare without it.
    let changed = |name: &str, def: &AccountDef| {
        every || stored.get(name).is_none_or(|old| AccountDef { status: old.status, ..def.clone() } != *old)
    };
    let mut changed_accounts = Vec::new();
    for (name, def) in &accounts {
        if changed(name, def) {
            def.check_declared_sensitive(name, source)
                .await
                .map_err(|error| ConfigError::Account { path: config_path.to_owned(), error })?;
            changed_accounts.push(name.as_str());
        }
    }
    for (name, (file, def)) in &profiles {
        let relinked = def.accounts.iter().any(|a| changed_accounts.contains(&a.as_str()));
        if every || relinked || stored_profiles.get(name) != Some(def) {
            def.check_connectors(name, &known, source)
                .await
                .map_err(|error| ConfigError::Profile { path: file.clone(), error })?;
        }
    }
    let mut report = LoadReport::default();
    for (name, def) in &accounts {
        // Status is operator state: a file does not re-activate an account deactivated by hand.
        let mut def = def.clone();
        if let Some(existing) = inv.account(name)? {
            def.status = existing.def.status;
        }
        if inv.sync_file_account(name, &def, actor)? != Upsert::Unchanged {
            report.accounts_changed.push(name.clone());
        }
    }
    for (name, (_, def)) in &profiles {
        if inv.sync_file_profile(name, def, actor)? != Upsert::Unchanged {
            for why in def.deploy_warnings() {
                tracing::warn!("profile {name}: {why}");
            }
            report.profiles_changed.push(name.clone());
        }
    }
    // What a file defined and no longer does goes too — unless something still uses it, in
    // which case it stays and the report says why.
    for (name, _, origin) in inv.profiles()? {
        if is_file_origin(&origin) && !profiles.contains_key(&name) {
            match inv.delete_profile(&name, actor) {
                Ok(()) => report.profiles_removed.push(name),
                Err(e) => report.kept.push(format!("profile {name} is no longer in a file but stays: {e}")),
            }
        }
    }
    for a in inv.accounts()? {
        if is_file_origin(&a.origin) && !accounts.contains_key(&a.name) {
            match inv.delete_account(&a.name, actor) {
                Ok(()) => report.accounts_removed.push(a.name),
                Err(e) => report.kept.push(format!("account {} is no longer in the file but stays: {e}", a.name)),
            }
        }
    }
    inv.set_config_file(&identity(config_path))?;
    Ok(report)
}

/// A configuration file as the inventory records it: absolute, its links kept — a
/// `current -> releases/N` link switched by a deployment is still the same file (diff review
/// of stop 38: recorded resolved, every deployment made it "another file").
fn identity(config_path: &Path) -> PathBuf {
    std::path::absolute(config_path).unwrap_or_else(|_| config_path.to_path_buf())
}

/// Whether `a` and `b` name one file: the same absolute path, or the same file once links
/// are resolved (`./certhost.toml` run from inside the directory a link points to).
fn same_file(a: &Path, b: &Path) -> bool {
    a == b || matches!((std::fs::canonicalize(a), std::fs::canonicalize(b)), (Ok(x), Ok(y)) if x == y)
}

/// Whether `recorded` (an inventory's [`Inventory::config_file`]) is the file at `config_path`.
pub fn same_config(recorded: &Path, config_path: &Path) -> bool {
    same_file(recorded, &identity(config_path))
}

/// Why `config_path` is not the file an inventory's file-defined accounts and profiles come
/// from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Elsewhere {
    /// They come from this other file.
    Recorded(PathBuf),
    /// A certhost from before the file was recorded loaded them, and `config_path` lacks
    /// these of them (`account NAME`, `profile NAME`): loading it would delete them.
    Unrecorded {
        /// What the file does not define.
        missing: Vec<String>,
    },
    /// No file defined any of them: they were made with the CLI or the API (this many), so a
    /// file found in the working directory is none of theirs (red team of stop 50: another
    /// user's `certhost.toml` in the directory a command ran in was taken on, its accounts
    /// added and its connector script run).
    MadeWithoutFile {
        /// How many accounts and profiles there are.
        count: usize,
    },
}

/// How an inventory's file-defined accounts and profiles stand to `config_path`, when it is
/// not their file. Loading it would replace them all — what a `certhost orders list` run in
/// another project's directory did, through the `./certhost.toml` it found there (author
/// review of stop 38). The CLI reads a `./certhost.toml` it was not given only when this is
/// `None`. Where the file is not recorded (an inventory an older certhost made), a file that
/// defines every one of them by name is taken as theirs — a `serve` run beside its own
/// configuration keeps starting after the upgrade —, and one that lacks any is not: the first
/// command run beside the shipped demo configuration after an upgrade deleted an operator's
/// profiles and a stored secret (upgrade walkthrough of stop 49). A file that does not read
/// is left to the load, which refuses it before writing anything.
pub fn loaded_from_elsewhere(inv: &Inventory, config_path: &Path) -> Result<Option<Elsewhere>, InventoryError> {
    match inv.config_record()? {
        ConfigRecord::NoFileDefinitions => {
            // The file loaded before (one of `[server]` settings, the accounts made with the
            // API) is theirs as much as ever.
            if inv.recorded_config_file()?.is_some_and(|r| same_file(&r, &identity(config_path))) {
                return Ok(None);
            }
            let count = inv.accounts()?.len() + inv.profiles()?.len();
            Ok((count > 0).then_some(Elsewhere::MadeWithoutFile { count }))
        }
        ConfigRecord::File(recorded) => {
            Ok((!same_file(&recorded, &identity(config_path))).then_some(Elsewhere::Recorded(recorded)))
        }
        ConfigRecord::Unrecorded => {
            let Ok((accounts, profiles)) = read(config_path) else { return Ok(None) };
            let mut missing: Vec<String> = inv
                .accounts()?
                .into_iter()
                .filter(|a| is_file_origin(&a.origin) && !accounts.contains_key(&a.name))
                .map(|a| format!("account {}", a.name))
                .collect();
            missing.extend(
                inv.profiles()?
                    .into_iter()
                    .filter(|(name, _, origin)| is_file_origin(origin) && !profiles.contains_key(name))
                    .map(|(name, _, _)| format!("profile {name}")),
            );
            Ok((!missing.is_empty()).then_some(Elsewhere::Unrecorded { missing }))
        }
    }
}

/// Why a configuration file found in the working directory, not given with `--config`, is
/// not taken on as an inventory's: it belongs to another user than the one running certhost
/// (or root), or anyone may write it. Such a file names connectors — scripts certhost runs as
/// its user, who can read the master key — so running a command in another user's directory
/// would run their code (red team of stop 50; git refuses a repository it does not own for
/// the same reason). A file that cannot be read is left to the load, which says why.
pub fn found_file_untrusted(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    if !mine_or_roots(meta.uid()) {
        return Some(format!("it belongs to user id {}, neither you nor root", meta.uid()));
    }
    if meta.mode() & 0o002 != 0 {
        return Some("anyone may write it".to_owned());
    }
    None
}

/// Why a found `./certhost.toml` that is a symbolic link is not taken on: the link belongs to
/// another user than the one running certhost (or root). Paths in the file are read from the
/// link's directory, so a stranger's link to a file the inventory trusts would load the
/// stranger's profiles beside it.
pub fn found_link_untrusted(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path).ok().filter(|m| m.file_type().is_symlink())?;
    (!mine_or_roots(meta.uid()))
        .then(|| format!("it is a link that belongs to user id {}, neither you nor root", meta.uid()))
}

/// Whether `uid` is the user running certhost or root: whose found files may be read.
fn mine_or_roots(uid: u32) -> bool {
    // SAFETY: geteuid takes nothing and cannot fail.
    uid == 0 || uid == unsafe { libc::geteuid() }
}

/// Checks a profile against the accounts it names: each exists, and no parameter name is
/// defined by both the profile and one of its accounts.
pub fn check_links(name: &str, def: &ProfileDef, accounts: &BTreeMap<String, AccountDef>) -> Result<(), PolicyError> {
    for account in &def.accounts {
        let Some(adef) = accounts.get(account) else {
            return Err(PolicyError::Definition {
                profile: name.to_owned(),
                rule: format!("it names CA account {account}, which does not exist"),
            });
        };
        if let Some(dup) = def.params.keys().find(|p| adef.params.contains_key(*p)) {
            return Err(PolicyError::Param(crate::param::ParamError::Duplicate {
                name: dup.clone(),
                first: format!("account {account}"),
                second: format!("profile {name}"),
            }));
        }
    }
    Ok(())
}

/// The directory relative paths in `config_path` are taken from, made absolute against the
/// working directory now. Definitions land in the shared inventory: a path stored relative to
/// one command's working directory (`certhost account list` run beside `certhost.toml`) was
/// read by `serve` against its own, and every issuance failed until the next reload.
fn base_dir(config_path: &Path) -> PathBuf {
    match config_path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => std::path::absolute(parent).unwrap_or_else(|_| parent.to_path_buf()),
        None => std::env::current_dir().unwrap_or_default(),
    }
}

fn absolutize(path: &mut PathBuf, base: &Path) {
    if path.is_relative() {
        *path = base.join(&*path);
    }
}

fn absolutize_value(v: &mut Option<ValueSource>, base: &Path) {
    if let Some(ValueSource::File { file }) = v {
        absolutize(file, base);
    }
}

/// Makes a profile's file paths — `{ file }` parameters and PKCS#12 password files —
/// absolute against `base`, the directory of the file that defines it, as an account's are
/// against certhost.toml's: resolved against each process's working directory, they worked
/// for one command and failed for `serve` (review of stop 31).
pub fn absolutize_profile(def: &mut ProfileDef, base: &Path) {
    for p in def.params.values_mut() {
        absolutize_value(&mut p.value, base);
    }
    for target in &mut def.deploy {
        absolutize_value(&mut target.pkcs12_password, base);
    }
}

/// The first relative path an account definition names (connector, extra CA, `{ file }`
/// value): the API has no directory to resolve one against, so it refuses them.
pub fn relative_path_in_account(def: &AccountDef) -> Option<&Path> {
    let values = def.params.values().filter_map(|p| match &p.value {
        Some(ValueSource::File { file }) => Some(file.as_path()),
        _ => None,
    });
    std::iter::once(def.connector.as_path())
        .chain(def.extra_ca_pems.iter().map(PathBuf::as_path))
        .chain(values)
        .find(|p| p.is_relative())
}

/// The first relative `{ file }` path of a profile definition; see
/// [`relative_path_in_account`].
pub fn relative_path_in_profile(def: &ProfileDef) -> Option<&Path> {
    let params = def.params.values().map(|p| &p.value);
    let passwords = def.deploy.iter().map(|t| &t.pkcs12_password);
    params.chain(passwords).find_map(|v| match v {
        Some(ValueSource::File { file }) if file.is_relative() => Some(file.as_path()),
        _ => None,
    })
}

fn absolutize_account(def: &mut AccountDef, base: &Path) {
    absolutize(&mut def.connector, base);
    for p in &mut def.extra_ca_pems {
        absolutize(p, base);
    }
    for p in def.params.values_mut() {
        absolutize_value(&mut p.value, base);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Walkthrough of stop 46: `approval_required = nope` was "invalid float; expected `nan`".
    #[test]
    fn a_value_without_quotes_is_said_to_lack_them_without_being_echoed() {
        for text in ["accounts = [\"a\"]\napproval_required = nope\n", "[params]\ntoken = Zecret-value_1\n"] {
            let e = toml::from_str::<toml::Table>(text).expect_err("refused");
            let said = toml_error(text, &e);
            assert!(said.contains("(a value without quotes: text needs them"), "{said}");
            assert!(!said.contains("nope") && !said.contains("Zecret") && !said.contains('\n'), "{said}");
        }
        // Not said of other mistakes.
        let text = "accounts = [\"a\"\n";
        let e = toml::from_str::<toml::Table>(text).expect_err("refused");
        assert!(!toml_error(text, &e).contains("without quotes"));
    }

    /// Day-2 walkthrough of stop 46: `url = "htp:/…"` was taken, and each notification then
    /// failed as a "builder error". The file is refused, naming the key, not the URL (which
    /// may carry the receiver's token).
    #[test]
    fn a_webhook_url_that_cannot_be_sent_to_is_refused_without_echoing_it() {
        let dir = tempfile::tempdir().expect("tmp");
        let config = dir.path().join("certhost.toml");
        for url in
            ["htp:/127.0.0.1:18099/T0KEN", "ftp://example.com/T0KEN", "/hooks/T0KEN", "https://hooks.example.com/T0KEN"]
        {
            std::fs::write(&config, format!("[notify.webhook]\nurl = \"{url}\"\n")).expect("write");
            match read_file(&config) {
                Ok(_) => assert!(url.starts_with("https://"), "{url} taken"),
                Err(e) => {
                    let e = e.to_string();
                    assert!(e.contains("[notify.webhook] url is not usable") && !e.contains("T0KEN"), "{e}");
                }
            }
        }
    }

    /// Regressions (review of stop 31): a `profile_dirs` entry that could not be read was
    /// skipped, so a typo removed every profile from the inventory; the same profile name in
    /// two directories silently took the last one; an editor's `.#web.toml` lock or a hidden
    /// `.web.toml` stopped every command.
    #[test]
    fn profile_directories_must_exist_names_must_be_unique_and_dot_files_are_no_profiles() {
        let dir = tempfile::tempdir().expect("tmp");
        let config = dir.path().join("certhost.toml");
        let write = |path: &str, text: &str| {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, text).expect("write");
        };
        write("certhost.toml", "");
        assert!(read(&config).expect("no profiles directory is fine when none is named").1.is_empty());
        write("certhost.toml", "profile_dirs = [\"profils\"]\n");
        let err = read(&config).unwrap_err().to_string();
        assert!(err.contains("profile_dirs names") && err.contains("profils, which cannot be read"), "{err}");
        write("certhost.toml", "profile_dirs = [\"a\", \"b\"]\n");
        write("a/web.toml", "accounts = [\"lab\"]\n");
        write("a/.web.toml", "not toml at all");
        write("a/.#web.toml", "nor this");
        write("b/other.toml", "accounts = [\"lab\"]\n");
        let (_, profiles) = read(&config).expect("dot-files are skipped");
        assert_eq!(profiles.keys().collect::<Vec<_>>(), ["other", "web"]);
        write("b/web.toml", "accounts = [\"lab\"]\n");
        let err = read(&config).unwrap_err().to_string();
        assert!(err.contains("profile web is also defined by") && err.contains("a/web.toml"), "{err}");
    }
}
