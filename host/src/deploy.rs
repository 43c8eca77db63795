//! Deployment: putting an issued certificate where it is used. A profile lists targets; each
//! runs after issue, renew and reissue, and again on `certhost deploy ID`.
//!
//! A `files` target writes cert, chain, fullchain, key (PEM) and optionally PKCS#12, each
//! atomically (temporary file, fsync, rename, fsync of the directory), the key with mode 0600
//! (0640 with a group, which is then meant to read it), with an optional owner and group; a pre-deploy hook may veto (the certificate stays stored)
//! and a post-deploy hook reloads the consumer (`systemctl reload nginx`). Hooks run under
//! `sh -c` with a timeout and `CERTHOST_*` variables naming the files; their output goes to
//! the audit log, redacted.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::csr::San;
use crate::inventory::{CertStatus, CertificateRecord, Inventory, InventoryError, NewAuditEvent};
use crate::param::{EnvLookup, ValueSource, resolve};

/// Captured hook output kept in the audit log, at most.
const HOOK_OUTPUT_MAX: usize = 4000;

/// Kinds of deployment target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// PEM (and PKCS#12) files on this host.
    #[default]
    Files,
}

/// One deployment target of a profile (`[[deploy]]` in a profile file).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployTarget {
    /// `files`.
    #[serde(rename = "type", default)]
    pub kind: TargetKind,
    /// Leaf certificate, PEM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    /// Chain without the leaf, PEM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<PathBuf>,
    /// Leaf followed by the chain, PEM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fullchain: Option<PathBuf>,
    /// Private key, PKCS#8 PEM, mode 0600 (0640 with `group`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// Key and chain as PKCS#12, mode 0600 (0640 with `group`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pkcs12: Option<PathBuf>,
    /// PKCS#12 password: `{ env = "VAR" }` or `{ file = "PATH" }` (empty when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pkcs12_password: Option<ValueSource>,
    /// Owner (user name) of the written files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Group (name) of the written files; the key and PKCS#12 files are then readable by it
    /// (0640), which is what naming a group is for — the services of Debian's `ssl-cert`
    /// group read keys so. A key written 0600 for a group could not be read by it, and a
    /// `chmod` by hand was undone by the next renewal (day-two walkthrough of stop 49).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Shell command run before writing; a non-zero exit stops this target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_hook: Option<String>,
    /// Shell command run after writing (e.g. `systemctl reload nginx`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_hook: Option<String>,
    /// Seconds each hook may run (default 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook_timeout_seconds: Option<u64>,
}

/// Why a deployment target failed (recorded, never fatal to the certificate).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeployError {
    /// The definition is unusable.
    #[error("{0}")]
    Invalid(String),
    /// The pre-deploy hook said no.
    #[error("pre-deploy hook failed ({status}); nothing was written{said}")]
    PreHook {
        /// Exit status or "timed out after Ns".
        status: String,
        /// Where what it printed is ([`output_hint`]), or empty: nothing said where to look
        /// (operator review of stop 41).
        said: String,
    },
    /// The post-deploy hook failed (the files are in place).
    #[error("post-deploy hook failed ({status}); the files were written{said}")]
    PostHook {
        /// Exit status or "timed out after Ns".
        status: String,
        /// As [`DeployError::PreHook`]'s.
        said: String,
    },
    /// Writing a file failed.
    #[error("{path}: {reason}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The inventory failed.
    #[error(transparent)]
    Inventory(#[from] InventoryError),
}

impl DeployTarget {
    /// Why this target's `owner` or `group` would fail every deployment on this host (no
    /// such user or group), if it would: said when the profile is loaded, not at each
    /// deployment (operator review of stop 41: `owner = "www-dta"` was accepted). Not
    /// refused: the user may be made after the profile (a package installed later).
    pub fn unknown_owner(&self) -> Option<String> {
        let owner = self.owner.as_deref().and_then(|o| user_id(o).err());
        let group = self.group.as_deref().and_then(|g| group_id(g).err());
        owner
            .or(group)
            .map(|e| format!("deploy target {}: {e}; each deployment to it fails until it exists", self.describe()))
    }

    /// A PKCS#12 file written without `pkcs12_password` has its key under an empty password:
    /// allowed (some consumers want none), and said when the profile changes (day-2
    /// walkthrough of stop 46: nothing said so).
    pub fn unprotected_pkcs12(&self) -> Option<String> {
        (self.pkcs12.is_some() && self.pkcs12_password.is_none()).then(|| {
            format!(
                "deploy target {} writes a PKCS#12 file without pkcs12_password: its private key is protected by an \
                 empty password",
                self.describe()
            )
        })
    }

    /// A short description for listings: `files:/etc/nginx/tls/web.pem`.
    pub fn describe(&self) -> String {
        let first = [&self.fullchain, &self.cert, &self.key, &self.pkcs12, &self.chain]
            .into_iter()
            .flatten()
            .next()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        format!("files:{first}")
    }

    /// Checks the definition: at least one file, absolute paths, a sane timeout.
    pub fn check(&self) -> Result<(), DeployError> {
        let paths: Vec<&PathBuf> =
            [&self.cert, &self.chain, &self.fullchain, &self.key, &self.pkcs12].into_iter().flatten().collect();
        if paths.is_empty() {
            return Err(DeployError::Invalid(
                "a files target names at least one of cert, chain, fullchain, key, pkcs12".into(),
            ));
        }
        if let Some(p) = paths.iter().find(|p| !p.is_absolute()) {
            return Err(DeployError::Invalid(format!("{} must be an absolute path", p.display())));
        }
        // Two outputs on one path: the later one wins silently (a HAProxy-style fullchain and
        // key in one file ended up holding only the key).
        if let Some(p) = paths.iter().enumerate().find_map(|(i, p)| paths[..i].contains(p).then_some(p)) {
            return Err(DeployError::Invalid(format!(
                "{} is named by two outputs of one target; each of cert, chain, fullchain, key and pkcs12 needs a file of its own",
                p.display()
            )));
        }
        // A profile is shown to every role and stored as it is: the password comes from
        // elsewhere, as a sensitive parameter's value does.
        if matches!(self.pkcs12_password, Some(ValueSource::Literal(_))) {
            return Err(DeployError::Invalid(
                "pkcs12_password must not be a literal value; use { env = \"VAR\" } or { file = \"PATH\" }".into(),
            ));
        }
        // Per name in one file and shared in another: every certificate's key (or leaf) would
        // land in the shared one, beside files for its own name (diff review of stop 37). A
        // chain may be shared: it is the CA's.
        if self.per_name()
            && let Some(p) = [&self.cert, &self.fullchain, &self.key, &self.pkcs12]
                .into_iter()
                .flatten()
                .find(|p| !p.to_str().is_some_and(|t| t.contains(CN_PLACEHOLDER)))
        {
            return Err(DeployError::Invalid(format!(
                "{} has no {CN_PLACEHOLDER} while another path of its target has: every certificate would be written to it; put {CN_PLACEHOLDER} in each of cert, fullchain, key and pkcs12 (chain may be shared)",
                p.display()
            )));
        }
        if self.hook_timeout_seconds.is_some_and(|t| t == 0 || t > 3600) {
            return Err(DeployError::Invalid("hook_timeout_seconds must be 1-3600".into()));
        }
        Ok(())
    }

    pub(crate) fn timeout(&self) -> Duration {
        Duration::from_secs(self.hook_timeout_seconds.unwrap_or(60))
    }

    /// This target for `cert`: `{cn}` in a path becomes the certificate's name
    /// ([`file_name_for`]), so a profile that issues for many names gives each its own files.
    /// Without it, every certificate of the profile is written to the same files, each over
    /// the last (operator review of stop 36; see [`occupant`]).
    pub fn for_certificate(&self, cert: &CertificateRecord) -> DeployTarget {
        let name = file_name_for(cert);
        let expand = |p: &Option<PathBuf>| {
            p.as_ref().map(|p| match p.to_str() {
                Some(text) if text.contains(CN_PLACEHOLDER) => PathBuf::from(text.replace(CN_PLACEHOLDER, &name)),
                _ => p.clone(),
            })
        };
        DeployTarget {
            cert: expand(&self.cert),
            chain: expand(&self.chain),
            fullchain: expand(&self.fullchain),
            key: expand(&self.key),
            pkcs12: expand(&self.pkcs12),
            ..self.clone()
        }
    }

    /// Whether a path of this target has `{cn}`: one set of files per name.
    fn per_name(&self) -> bool {
        [&self.cert, &self.chain, &self.fullchain, &self.key, &self.pkcs12]
            .into_iter()
            .flatten()
            .any(|p| p.to_str().is_some_and(|t| t.contains(CN_PLACEHOLDER)))
    }
}

/// The placeholder a deploy path may hold for the certificate's name.
pub const CN_PLACEHOLDER: &str = "{cn}";

/// How a `{cn}` target's success message starts: the rest is where the files went, which
/// the recorded target (the profile's template, matched by retries) does not say.
const DEPLOYED_TO: &str = "deployed to ";

/// Where a recorded deployment put the certificate, as `files:PATH`: the expanded path of a
/// `{cn}` target (from its message), else the recorded target. What `/v1/renew`'s
/// `deployed_to` and `issue`'s lines show: a template with `{cn}` in it names no file.
pub fn deployed_where(target: &str, message: &str) -> String {
    match message.strip_prefix(DEPLOYED_TO) {
        Some(path) => format!("files:{path}"),
        None => target.to_owned(),
    }
}

/// The certificate's name as one file-name component: its CN, or without one its first SAN,
/// with every character other than letters, digits, `.`, `-` and `_` (a wildcard's `*`, a
/// `/`) as `_`, and a leading `.` (which `..` would be) made `_.`: never a path of its own.
pub fn file_name_for(cert: &CertificateRecord) -> String {
    let name = cert
        .info
        .common_name
        .clone()
        .or_else(|| cert.info.sans.first().map(San::value))
        .unwrap_or_else(|| format!("certificate-{}", cert.id));
    let mut out: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '_' }).collect();
    if out.is_empty() || out.starts_with('.') {
        out.insert(0, '_');
    }
    out
}

/// Another active certificate for other names that `target`'s files hold now, which this
/// deployment would replace: a profile whose paths have no `{cn}` writes every certificate it
/// issues to the same files, and the last one issued or renewed won, whatever name a server
/// was meant to present (operator review of stop 36). Read from the leaf in each of the
/// target's `cert` and `fullchain` files (what a server reads), looked up by its SHA-256 in
/// the inventory; a leaf whose certificate was renewed stands for its active successor (the
/// name still lives there while the successor's deployment is retried). A file that is
/// missing, unreadable, or holds a certificate certhost does not know is replaced as before,
/// and a target without a `cert` or `fullchain` file (a key or PKCS#12 alone) is not checked.
/// A certificate sharing a name (CN or SAN) with the one in place — a renewal, a reissue, a
/// second one for the name, one with a name added — replaces it as before. Checked for `{cn}`
/// paths too: two names can give one file name (`a b` and `a_b`).
fn occupant<'t>(
    inv: &Inventory,
    cert: &CertificateRecord,
    target: &'t DeployTarget,
) -> Option<(&'t Path, CertificateRecord)> {
    let ours = names_of(cert);
    [target.cert.as_ref(), target.fullchain.as_ref()].into_iter().flatten().find_map(|file| {
        let text = std::fs::read_to_string(file).ok()?;
        let der = crate::cert::pem_certificates(&text).ok()?.into_iter().next()?;
        let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&der));
        let mut other = inv.find(&sha256).ok()??;
        if other.status != CertStatus::Active {
            let successor = inv.successor(other.id).ok()??;
            other = inv.find(&successor.to_string()).ok()??;
        }
        let taken = other.id != cert.id && other.status == CertStatus::Active && names_of(&other).is_disjoint(&ours);
        taken.then_some((file.as_path(), other))
    })
}

/// A certificate's names, CN and SANs' values, lowercased: what "for the same name" compares.
fn names_of(cert: &CertificateRecord) -> std::collections::BTreeSet<String> {
    let sans = cert.info.sans.iter().map(San::value);
    cert.info.common_name.iter().cloned().chain(sans).map(|n| n.to_ascii_lowercase()).collect()
}

/// The outcome of one target, as stored and shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeployReport {
    /// [`DeployTarget::describe`].
    pub target: String,
    /// Whether everything (hooks included) succeeded.
    pub ok: bool,
    /// What happened, one line.
    pub message: String,
}

/// Deploys certificate `cert` to every target; each outcome is stored (deployments table)
/// and audited; `replace_others` (an operator's `deploy --replace-others`) writes over files that hold
/// another name's active certificate ([`occupant`]). Hook output is redacted of `secrets` (e.g. the PKCS#12 password). Nothing
/// here is an error to the caller: the certificate is stored already, and each target's
/// failure — the key unreadable included — is its report; an outcome that cannot be
/// recorded is logged, and the other targets still deploy.
pub async fn deploy(
    inv: &mut Inventory,
    cert: &CertificateRecord,
    targets: &[DeployTarget],
    env: EnvLookup<'_>,
    actor: &str,
    replace_others: bool,
) -> Vec<DeployReport> {
    // Most profiles deploy nothing: no reads for them on the request path.
    if targets.is_empty() {
        return Vec::new();
    }
    let wants_key = |t: &DeployTarget| t.key.is_some() || t.pkcs12.is_some();
    // Read once, and before any await (a connection is not shared across threads), when a
    // target writes the key.
    let key = match cert.key_id {
        Some(id) if targets.iter().any(wants_key) => inv.private_key(id).map(Some).map_err(|e| e.to_string()),
        _ => Ok(None),
    };
    let hidden = hidden_variables(inv, env);
    let mut reports = Vec::new();
    for template in targets {
        let target = &template.for_certificate(cert);
        let occupied = if replace_others { None } else { occupant(inv, cert, target) };
        let (result, output) = match (&key, occupied) {
            (_, Some((file, other))) => (
                Err(DeployError::Invalid(format!(
                    "refused: {} holds certificate #{} ({}), which is active and for other names; nothing was written. \
                     A profile that issues for several names needs {CN_PLACEHOLDER} in its deploy paths (one set of files per name); \
                     or replace it anyway with certhost deploy {} --replace-others",
                    file.display(),
                    other.id,
                    other.info.common_name.as_deref().unwrap_or("no CN"),
                    cert.id
                ))),
                String::new(),
            ),
            (Err(e), None) if wants_key(target) => {
                (Err(DeployError::Invalid(format!("the private key could not be read: {e}"))), String::new())
            }
            _ => deploy_one(key.as_ref().ok().and_then(Option::as_ref), cert, target, env, &hidden).await,
        };
        // Recorded under the profile's own description (`{cn}` as written), which retries
        // are matched with; the message says where the files went.
        let report = DeployReport {
            target: template.describe(),
            ok: result.is_ok(),
            message: match &result {
                Ok(()) if template.per_name() => {
                    format!("{DEPLOYED_TO}{}", target.describe().trim_start_matches("files:"))
                }
                Ok(()) => "deployed".into(),
                // Which files a `{cn}` target's failure was about: the recorded target names
                // none (operator review of stop 41).
                Err(e) if template.per_name() => {
                    format!("{} (for {}): {e}", target.describe().trim_start_matches("files:"), file_name_for(cert))
                }
                Err(e) => e.to_string(),
            },
        };
        if !report.ok {
            // An outcome: a command that reports it (issue, renew, deploy) does not log it as
            // well — the same sentence came twice (operator review of stop 41); `serve` does.
            tracing::warn!(target: crate::issue::OUTCOME_LOG_TARGET, certificate = cert.id, deploy_target = %report.target, "{}", crate::connector::redact::one_line(&report.message));
        }
        // Through the inventory's writer: in `serve`, the group committer, which every other
        // write there waits on too, instead of a transaction of its own competing for the lock.
        let (id, actor, stored) = (cert.id, actor.to_owned(), report.clone());
        let recorded = inv
            .write(move |inv| {
                inv.record_deployment(
                    id,
                    &stored.target,
                    stored.ok,
                    &stored.message,
                    &NewAuditEvent {
                        actor: &actor,
                        action: "certificate.deploy",
                        object_type: "certificate",
                        object_id: Some(id.to_string()),
                        outcome: if stored.ok { "success" } else { "failure" },
                        detail: serde_json::json!({ "target": stored.target, "message": stored.message, "hook_output": output }),
                    },
                )
            })
            .await;
        if let Err(e) = recorded {
            tracing::error!(certificate = cert.id, target = %report.target, "the deployment's outcome could not be recorded: {e}");
        }
        reports.push(report);
    }
    reports
}

/// The environment variables secrets are read from — sensitive parameters of any CA account
/// or profile, deploy targets' PKCS#12 passwords, the notification channels' secrets — with
/// their values: hooks get none of them, and their output is redacted of the values
/// (a `set -x` hook, or one that echoes its environment, printed a CA token into the audit log).
/// Unnamed entries are values a hook could read but not inherit, redacted all the same: what
/// the secret files hold, every `certhost secret set` value, and what `master.key` holds.
fn hidden_variables(inv: &Inventory, env: EnvLookup<'_>) -> Vec<(String, zeroize::Zeroizing<String>)> {
    let names = inv.hide_secret_variables().unwrap_or_else(|_| crate::param::hidden_from_children());
    let mut hidden: Vec<_> =
        names.into_iter().map(|n| (n.clone(), zeroize::Zeroizing::new(env(&n).unwrap_or_default()))).collect();
    hidden.push(("CERTHOST_MASTER_KEY".to_owned(), inv.master_key_text()));
    hidden.extend(crate::param::secret_file_values().into_iter().map(|value| (String::new(), value)));
    match inv.stored_secret_values() {
        Ok(values) => hidden.extend(values.into_iter().map(|v| (String::new(), v))),
        Err(e) => tracing::warn!("stored secrets could not be read to redact hook output: {e}"),
    }
    hidden
}

async fn deploy_one(
    key: Option<&crate::key::PrivateKey>,
    cert: &CertificateRecord,
    target: &DeployTarget,
    env: EnvLookup<'_>,
    hidden: &[(String, zeroize::Zeroizing<String>)],
) -> (Result<(), DeployError>, String) {
    let mut output = String::new();
    let password = match &target.pkcs12_password {
        Some(src) => match resolve(src, "pkcs12_password", "deploy target", env) {
            Ok(p) => p,
            Err(e) => return (Err(DeployError::Invalid(e.to_string())), output),
        },
        None => String::new(),
    };
    // Hook output lands in the audit log, which keeps it forever: a hook that prints the key it
    // checks (`openssl pkey -in "$CERTHOST_KEY_FILE" -check`) must not put it there.
    let key_pem = key.map(|k| k.to_pem());
    let redactor = crate::connector::redact::Redactor::new(
        [password.as_str()]
            .into_iter()
            .chain(key_pem.as_deref().map(|p| p.as_str()))
            .chain(hidden.iter().map(|(_, v)| v.as_str())),
    );
    let hidden_names: Vec<&str> = hidden.iter().map(|(n, _)| n.as_str()).filter(|n| !n.is_empty()).collect();
    let redact = |text: &str| crate::connector::redact::without_key_material(&redactor.redact(text));
    let vars = hook_env(cert, target);
    if let Some(cmd) = &target.pre_hook {
        let (status, out) = run_hook(cmd, &vars, &hidden_names, target.timeout());
        let out = redact(&out);
        output.push_str(&out);
        if let Err(status) = status {
            return (Err(DeployError::PreHook { status, said: output_hint(&out, cert) }), cap(output));
        }
    }
    // Each file is fsynced, and its directory: milliseconds on a runtime worker otherwise.
    if let Err(e) = crate::blocking::off_the_runtime(|| write_files(key, cert, target, &password)) {
        return (Err(e), cap(output));
    }
    if let Some(cmd) = &target.post_hook {
        let (status, out) = run_hook(cmd, &vars, &hidden_names, target.timeout());
        let out = redact(&out);
        output.push_str(&out);
        if let Err(status) = status {
            return (Err(DeployError::PostHook { status, said: output_hint(&out, cert) }), cap(output));
        }
    }
    (Ok(()), cap(output))
}

/// Where a failed hook's output is, for its error: the audit log, which only auditors read.
/// Not the output itself (diff review of stop 41): the error is stored with the deployment,
/// which every role that reads certificates sees, and a hook may print what certhost does
/// not know to redact (`set -x` over a credential file). Empty when it printed nothing.
fn output_hint(out: &str, cert: &CertificateRecord) -> String {
    if out.trim().is_empty() {
        String::new()
    } else {
        format!(
            "; what it printed is in the audit log (certhost audit --object-type certificate --object-id {})",
            cert.id
        )
    }
}

fn cap(mut s: String) -> String {
    if s.len() > HOOK_OUTPUT_MAX {
        let mut cut = HOOK_OUTPUT_MAX;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str(" [...]");
    }
    s
}

fn hook_env(cert: &CertificateRecord, t: &DeployTarget) -> Vec<(String, String)> {
    let mut vars = vec![
        ("CERTHOST_CERT_ID".to_owned(), cert.id.to_string()),
        ("CERTHOST_SHA256".to_owned(), cert.info.sha256.clone()),
        ("CERTHOST_COMMON_NAME".to_owned(), cert.info.common_name.clone().unwrap_or_default()),
    ];
    for (name, path) in [
        ("CERTHOST_CERT_FILE", &t.cert),
        ("CERTHOST_CHAIN_FILE", &t.chain),
        ("CERTHOST_FULLCHAIN_FILE", &t.fullchain),
        ("CERTHOST_KEY_FILE", &t.key),
        ("CERTHOST_PKCS12_FILE", &t.pkcs12),
    ] {
        if let Some(p) = path {
            vars.push((name.to_owned(), p.display().to_string()));
        }
    }
    vars
}

/// Runs `sh -c cmd` with a deadline ([`crate::hook`]: its group killed whole at the deadline,
/// a background process it left holding the pipes not waited for); returns Ok or the failure
/// ("exit status 3", "timed out after 60s") and the combined output.
fn run_hook(cmd: &str, vars: &[(String, String)], hidden: &[&str], timeout: Duration) -> (Result<(), String>, String) {
    let mut command = std::process::Command::new("sh");
    for name in hidden {
        command.env_remove(name);
    }
    command
        .arg("-c")
        .arg(cmd)
        .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        // Hooks never see the master key.
        .env_remove("CERTHOST_MASTER_KEY");
    // Kept to what is stored, with room for the redaction to work on whole values.
    let ran = crate::blocking::off_the_runtime(|| crate::hook::run(&mut command, timeout, 4 * HOOK_OUTPUT_MAX));
    let done = match ran {
        Ok(done) => done,
        Err(e) => return (Err(format!("cannot start sh: {e}")), String::new()),
    };
    let text = String::from_utf8_lossy(&done.output).into_owned();
    match done.ended {
        crate::hook::Ended::TimedOut => (Err(format!("timed out after {}s", timeout.as_secs())), text),
        crate::hook::Ended::WaitFailed(e) => (Err(e.to_string()), text),
        crate::hook::Ended::Exited(st) if st.success() => (Ok(()), text),
        // The shell's own codes for a command it could not run, said as such: "exit status:
        // 127" sent the operator to the audit log (day-2 walkthrough of stop 46).
        crate::hook::Ended::Exited(st) => {
            let why = match st.code() {
                Some(127) => ": the command was not found",
                Some(126) => ": the command cannot be run (not executable)",
                _ => "",
            };
            (Err(format!("{st}{why}")), text)
        }
    }
}

fn write_files(
    key: Option<&crate::key::PrivateKey>,
    cert: &CertificateRecord,
    t: &DeployTarget,
    password: &str,
) -> Result<(), DeployError> {
    if (t.key.is_some() || t.pkcs12.is_some()) && key.is_none() {
        return Err(DeployError::Invalid(format!(
            "certificate {} has no private key in the inventory; remove key/pkcs12 from the target",
            cert.id
        )));
    }
    let owner = t.owner.as_deref().map(user_id).transpose()?;
    let group = t.group.as_deref().map(group_id).transpose()?;
    let key_mode = if group.is_some() { 0o640 } else { 0o600 };
    let mut files: Vec<(&Path, Vec<u8>, u32)> = Vec::new();
    if let Some(p) = &t.cert {
        files.push((p, cert.pem.clone().into_bytes(), 0o644));
    }
    if let Some(p) = &t.chain {
        files.push((p, cert.chain_pem.clone().into_bytes(), 0o644));
    }
    if let Some(p) = &t.fullchain {
        files.push((p, format!("{}{}", cert.pem, cert.chain_pem).into_bytes(), 0o644));
    }
    if let (Some(p), Some(k)) = (&t.key, key) {
        files.push((p, k.to_pem().as_bytes().to_vec(), key_mode));
    }
    if let (Some(p), Some(k)) = (&t.pkcs12, key) {
        files.push((p, pkcs12(cert, k, password)?, key_mode));
    }
    // Every file is written and synced before any replaces its predecessor: a target that
    // fails half-way (a full disk at the key) leaves the old set in place, never a new
    // certificate beside the old key.
    let staged = files
        .into_iter()
        .map(|(path, bytes, mode)| Staged::new(path, &bytes, mode, owner, group))
        .collect::<Result<Vec<_>, _>>()?;
    // A destination that cannot be replaced (a directory where the key goes) fails the
    // target before its first file is renamed, not between two of them.
    if let Some(file) = staged.iter().find(|f| f.path.is_dir()) {
        return Err(DeployError::Write { path: file.path.clone(), reason: "it is a directory".into() });
    }
    for file in staged {
        file.commit()?;
    }
    Ok(())
}

/// Why `password` cannot protect a PKCS#12 file, if it cannot: the file holds it as a
/// BMPString, so only characters up to U+FFFF (an emoji failed as an internal error), and
/// OpenSSL reads it up to a NUL (four NULs opened the file with an empty password; red team
/// of stop 50). Never quotes it. The API also refuses other control characters and bounds
/// its length; a deploy target's password file with a tab or a second line ending, which
/// deployed before, still does.
pub(crate) fn pkcs12_password_problem(password: &str) -> Option<&'static str> {
    if password.contains('\0') {
        return Some("a PKCS#12 password may not hold a NUL character");
    }
    if password.chars().any(|c| u32::from(c) > 0xFFFF) {
        return Some(
            "a PKCS#12 password may hold only characters up to U+FFFF (no emoji): the file stores it as a BMPString",
        );
    }
    None
}

/// A PKCS#12 file holding `cert`'s key, the certificate and its chain, protected by
/// `password`: what a deployment target of `format = "pkcs12"` writes, and the API's download.
pub(crate) fn pkcs12(
    cert: &CertificateRecord,
    key: &crate::key::PrivateKey,
    password: &str,
) -> Result<Vec<u8>, DeployError> {
    if let Some(why) = pkcs12_password_problem(password) {
        return Err(DeployError::Invalid(why.to_owned()));
    }
    let invalid = |e: p12_keystore::error::Error| DeployError::Invalid(format!("cannot build the PKCS#12 file: {e}"));
    let mut certs = Vec::new();
    for der in crate::cert::pem_certificates(&format!("{}{}", cert.pem, cert.chain_pem))
        .map_err(|e| DeployError::Invalid(e.to_string()))?
    {
        certs.push(p12_keystore::Certificate::from_der(&der).map_err(invalid)?);
    }
    let p12_key = p12_keystore::PrivateKey::from_der(key.pkcs8_der()).map_err(invalid)?;
    let chain = p12_keystore::PrivateKeyChain::new(cert.info.sha1.as_bytes().to_vec(), p12_key, certs);
    let mut store = p12_keystore::KeyStore::new();
    let alias = cert.info.common_name.clone().unwrap_or_else(|| format!("certificate-{}", cert.id));
    store.add_entry(&alias, p12_keystore::KeyStoreEntry::PrivateKeyChain(chain));
    store.writer(password).write().map_err(invalid)
}

/// Writes `bytes` to `path` so that a reader sees the old file or the new one, never a mix,
/// and a crash leaves one or the other: see [`Staged`]. Private keys go through here.
pub fn write_atomically(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    owner: Option<u32>,
    group: Option<u32>,
) -> Result<(), DeployError> {
    Staged::new(path, bytes, mode, owner, group)?.commit()
}

/// A file written in full beside where it will land, not yet in place: a fresh temporary file
/// (created exclusively, so a stale or planted one — world-readable, or a link elsewhere — is
/// never written through) → write → fsync → chmod/chown; [`Staged::commit`] renames it over
/// the target and fsyncs the directory. Dropped uncommitted, it is removed. A target that is a
/// symbolic link is written where the link points, so the link stays.
struct Staged {
    tmp: PathBuf,
    path: PathBuf,
    committed: bool,
}

/// Refuses a path that leads through a symbolic link owned by another user than certhost's
/// or root, the rule of the kernel's `protected_symlinks` for sticky directories, applied to
/// every directory. A service's own certificate directory is often its user's: that user
/// could plant `web.key -> /etc/sudoers.d/x`, and certhost (root) would write and chown
/// through it. Links root or certhost made (certbot's `live/` into `archive/`) are followed.
fn refuse_planted_links(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    let mut seen = PathBuf::new();
    for part in path.components() {
        seen.push(part);
        let Ok(meta) = std::fs::symlink_metadata(&seen) else { break };
        if meta.file_type().is_symlink() && meta.uid() != me && meta.uid() != 0 {
            return Err(format!(
                "{} is a symbolic link owned by uid {}, not by certhost's user or root: another user could have planted it \
                 to have certhost write elsewhere; replace it with the file, or a link of certhost's user or root",
                seen.display(),
                meta.uid()
            ));
        }
    }
    Ok(())
}

/// Where writing `path` lands: through each link of the path, hop by hop, every path on the
/// way checked by [`refuse_planted_links`] — a root-owned `/etc/nginx/ssl/site.key` pointing
/// into a service's own directory is followed, and a link the service planted there is not.
/// (A link swapped between the check and the write is not caught: that needs a walk with
/// `openat(O_NOFOLLOW)`.)
fn resolve_trusted_links(path: &Path) -> Result<PathBuf, String> {
    let mut at = path.to_owned();
    // The kernel's own limit on links followed in one lookup.
    for _ in 0..40 {
        refuse_planted_links(&at)?;
        match std::fs::symlink_metadata(&at) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let link = std::fs::read_link(&at).map_err(|e| e.to_string())?;
                at = at.parent().map_or(link.clone(), |dir| dir.join(&link));
            }
            _ => return Ok(at),
        }
    }
    Err("too many levels of symbolic links".into())
}

/// Distinguishes the temporary files of concurrent deployments in one process.
static STAGED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Staged {
    fn new(path: &Path, bytes: &[u8], mode: u32, owner: Option<u32>, group: Option<u32>) -> Result<Self, DeployError> {
        let err = |reason: String| DeployError::Write { path: path.to_owned(), reason };
        let path = resolve_trusted_links(path).map_err(err)?;
        let dir = path.parent().ok_or_else(|| err("has no parent directory".into()))?;
        // Missing directories are made 0755 whatever the umask: services must reach the files,
        // and no other user may replace them.
        std::fs::DirBuilder::new().recursive(true).mode(0o755).create(dir).map_err(|e| err(e.to_string()))?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let n = STAGED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = dir.join(format!(".{name}.certhost-{}-{n}", std::process::id()));
        let staged = Self { tmp, path: path.clone(), committed: false };
        let result = (|| -> std::io::Result<()> {
            match std::fs::remove_file(&staged.tmp) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            let mut f =
                std::fs::OpenOptions::new().write(true).create_new(true).mode(mode & 0o600).open(&staged.tmp)?;
            if owner.is_some() || group.is_some() {
                std::os::unix::fs::fchown(&f, owner, group)?;
            }
            f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))?;
            f.write_all(bytes)?;
            f.sync_all()
        })();
        // On error `staged` is dropped, and its file removed.
        result.map_err(|e| DeployError::Write { path, reason: e.to_string() })?;
        Ok(staged)
    }

    /// Puts the file in place and syncs its directory.
    fn commit(mut self) -> Result<(), DeployError> {
        let err = |e: std::io::Error| DeployError::Write { path: self.path.clone(), reason: e.to_string() };
        std::fs::rename(&self.tmp, &self.path).map_err(err)?;
        self.committed = true;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(err)
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// The uid of user `name`. Deployments run on several threads at once, so the reentrant
/// lookup: `getpwnam` hands every caller the same static record, and two concurrent
/// deployments could read each other's owner.
fn user_id(name: &str) -> Result<u32, DeployError> {
    let c =
        std::ffi::CString::new(name).map_err(|_| DeployError::Invalid(format!("owner {name:?} is not a user name")))?;
    let found = reentrant_lookup(|buf| {
        // SAFETY: `passwd` is plain data (integers and pointers); all zeroes is a valid value
        // that getpwnam_r overwrites before it is read.
        let mut record: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: a NUL-terminated name, a record and a buffer we own for the call's length;
        // the record's strings point into `buf`, and only the uid (a copy) leaves the call.
        let rc = unsafe { libc::getpwnam_r(c.as_ptr(), &mut record, buf.as_mut_ptr().cast(), buf.len(), &mut result) };
        (rc, (!result.is_null()).then_some(record.pw_uid))
    })
    .map_err(|e| DeployError::Invalid(format!("owner {name} could not be looked up: {e}")))?;
    found.ok_or_else(|| DeployError::Invalid(format!("owner {name} is not a user on this host")))
}

/// The name of user `uid`, if it has one in the user database; reentrant, as [`user_id`].
pub fn user_name(uid: u32) -> Option<String> {
    reentrant_lookup(|buf| {
        // SAFETY: as in `user_id`, for getpwuid_r.
        let mut record: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: a record and a buffer we own for the call's length; the name is copied out
        // of `buf` before the buffer goes.
        let rc = unsafe { libc::getpwuid_r(uid, &mut record, buf.as_mut_ptr().cast(), buf.len(), &mut result) };
        let name = (!result.is_null() && !record.pw_name.is_null())
            // SAFETY: getpwuid_r succeeded, so pw_name is a NUL-terminated string in `buf`.
            .then(|| unsafe { std::ffi::CStr::from_ptr(record.pw_name) }.to_string_lossy().into_owned());
        (rc, name)
    })
    .ok()
    .flatten()
}

/// The gid of group `name`; reentrant for the same reason as [`user_id`].
fn group_id(name: &str) -> Result<u32, DeployError> {
    let c = std::ffi::CString::new(name)
        .map_err(|_| DeployError::Invalid(format!("group {name:?} is not a group name")))?;
    let found = reentrant_lookup(|buf| {
        // SAFETY: as in `user_id`, for `group`.
        let mut record: libc::group = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::group = std::ptr::null_mut();
        // SAFETY: as in `user_id`, for getgrnam_r; only the gid leaves the call.
        let rc = unsafe { libc::getgrnam_r(c.as_ptr(), &mut record, buf.as_mut_ptr().cast(), buf.len(), &mut result) };
        (rc, (!result.is_null()).then_some(record.gr_gid))
    })
    .map_err(|e| DeployError::Invalid(format!("group {name} could not be looked up: {e}")))?;
    found.ok_or_else(|| DeployError::Invalid(format!("group {name} is not a group on this host")))
}

/// Runs a `get*_r` lookup with a buffer that grows while the call answers ERANGE (a group
/// with many members needs more than the usual kilobyte). `Ok(None)`: no such name.
fn reentrant_lookup<T>(mut call: impl FnMut(&mut [u8]) -> (i32, Option<T>)) -> std::io::Result<Option<T>> {
    let mut buf = vec![0u8; 1024];
    loop {
        match call(&mut buf) {
            (0, found) => return Ok(found),
            // Some NSS modules say "no such name" this way instead of a null result.
            (libc::ENOENT | libc::ESRCH | libc::EBADF | libc::EPERM, _) => return Ok(None),
            (libc::ERANGE, _) if buf.len() < 1 << 20 => buf.resize(buf.len() * 4, 0),
            (rc, _) => return Err(std::io::Error::from_raw_os_error(rc)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Diff review of stop 37: a target with `{cn}` in its fullchain but a fixed key path
    /// wrote every name's key to one file, beside per-name certificates.
    #[test]
    fn a_target_puts_cn_in_every_per_certificate_path_or_none() {
        let path = |p: &str| Some(PathBuf::from(p));
        let mixed = DeployTarget { fullchain: path("/tls/{cn}.pem"), key: path("/tls/key.pem"), ..Default::default() };
        let err = mixed.check().expect_err("mixed").to_string();
        assert!(err.starts_with("/tls/key.pem has no {cn} while another path of its target has"), "{err}");
        let shared_chain = DeployTarget {
            fullchain: path("/tls/{cn}/fullchain.pem"),
            key: path("/tls/{cn}/key.pem"),
            chain: path("/tls/ca-chain.pem"),
            ..Default::default()
        };
        shared_chain.check().expect("a chain may be shared");
        DeployTarget { fullchain: path("/tls/web.pem"), key: path("/tls/web.key"), ..Default::default() }
            .check()
            .expect("fixed paths");
    }

    #[test]
    fn two_outputs_on_one_path_are_refused() {
        let target: DeployTarget =
            toml::from_str("fullchain = \"/srv/site.pem\"\nkey = \"/srv/site.pem\"\n").expect("target");
        let e = target.check().expect_err("one path twice").to_string();
        assert!(e.contains("/srv/site.pem is named by two outputs"), "{e}");
    }

    /// Regression (review of stop 32): a link planted by the user owning a service's
    /// directory had certhost (root) write the key through it and chown the file it reached.
    #[test]
    fn a_link_of_another_user_is_not_written_through() {
        use std::os::unix::fs::MetadataExt;
        // Only root can make a link owned by another user.
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return;
        }
        let dir = tempfile::tempdir().expect("tmp");
        let victim = dir.path().join("victim.conf");
        std::fs::write(&victim, "important\n").expect("victim");
        let link = dir.path().join("web.key");
        std::os::unix::fs::symlink(&victim, &link).expect("link");
        let nobody = user_id("nobody").expect("nobody");
        std::os::unix::fs::lchown(&link, Some(nobody), None).expect("lchown");
        let e = write_atomically(&link, b"KEY", 0o600, None, None).expect_err("refused").to_string();
        assert!(e.contains("is a symbolic link owned by uid") && e.contains("planted"), "{e}");
        assert_eq!(std::fs::read_to_string(&victim).expect("victim"), "important\n");
        assert_eq!(std::fs::metadata(&victim).expect("meta").uid(), 0);
        // The same link of root's is followed, as certbot's live/ links are.
        std::os::unix::fs::lchown(&link, Some(0), None).expect("lchown");
        write_atomically(&link, b"KEY", 0o600, None, None).expect("written through");
        assert_eq!(std::fs::read_to_string(&victim).expect("victim"), "KEY");
        // A root link into a directory another user keeps, where that user planted a link of
        // their own: not followed past it (review of stop 32).
        let service = dir.path().join("service");
        std::fs::create_dir(&service).expect("service dir");
        let planted = service.join("site.key");
        std::os::unix::fs::symlink(dir.path().join("shadow"), &planted).expect("planted");
        std::os::unix::fs::lchown(&planted, Some(nobody), None).expect("lchown");
        let configured = dir.path().join("site.key");
        std::os::unix::fs::symlink(&planted, &configured).expect("root link");
        let e = write_atomically(&configured, b"KEY", 0o600, None, None).expect_err("refused").to_string();
        assert!(e.contains("service/site.key is a symbolic link owned by uid"), "{e}");
        assert!(!dir.path().join("shadow").exists());
    }

    #[test]
    fn a_literal_pkcs12_password_is_refused_without_being_echoed() {
        let target: DeployTarget =
            toml::from_str("key = \"/k.pem\"\npkcs12 = \"/b.p12\"\npkcs12_password = \"hunter2-S3CRET\"\n")
                .expect("target");
        let e = target.check().expect_err("a literal").to_string();
        assert!(e.contains("must not be a literal") && !e.contains("hunter2-S3CRET"), "{e}");
        let by_env: DeployTarget =
            toml::from_str("pkcs12 = \"/b.p12\"\npkcs12_password = { env = \"P12_PASSWORD\" }\n").expect("target");
        by_env.check().expect("a reference is fine");
        assert_eq!(by_env.unprotected_pkcs12(), None);
        // Without a password: allowed, and said.
        let open: DeployTarget = toml::from_str("pkcs12 = \"/b.p12\"\n").expect("target");
        open.check().expect("allowed");
        assert!(open.unprotected_pkcs12().is_some_and(|w| w.contains("empty password")));
    }

    /// Day-2 walkthrough of stop 46: a hook that is not there failed as "exit status: 127".
    #[test]
    fn a_hook_command_that_is_not_there_is_said_to_be_so() {
        let (status, _) = run_hook("/nonexistent/reload.sh --now", &[], &[], Duration::from_secs(10));
        assert!(status.as_ref().is_err_and(|s| s.ends_with(": the command was not found")), "{status:?}");
        let (status, _) = run_hook("exit 3", &[], &[], Duration::from_secs(10));
        assert_eq!(status, Err("exit status: 3".to_owned()));
    }

    #[test]
    fn owners_and_groups_are_looked_up_by_name_on_any_thread() {
        assert_eq!(user_id("root").expect("root"), 0);
        assert_eq!(group_id("root").expect("root"), 0);
        let missing = user_id("certhost-no-such-user").unwrap_err().to_string();
        assert!(missing.contains("owner certhost-no-such-user is not a user on this host"), "{missing}");
        let missing = group_id("certhost-no-such-group").unwrap_err().to_string();
        assert!(missing.contains("group certhost-no-such-group is not a group on this host"), "{missing}");
        assert!(user_id("ro\0ot").is_err(), "a NUL is refused before any lookup");
        // Many lookups of two different names at once: each thread gets its own answer.
        let nobody = user_id("nobody").expect("nobody exists on Debian");
        let threads: Vec<_> = (0..8)
            .map(|i| {
                std::thread::spawn(move || {
                    let (name, want) = if i % 2 == 0 { ("root", 0) } else { ("nobody", nobody) };
                    (0..500).all(|_| user_id(name).ok() == Some(want))
                })
            })
            .collect();
        assert!(threads.into_iter().all(|t| t.join().expect("thread")), "a lookup answered for another name");
    }

    #[tokio::test]
    async fn an_unreadable_key_fails_the_targets_that_need_it_and_the_others_still_deploy() {
        use crate::inventory::{InsertOutcome, Inventory, NewCertificate};
        let dir = tempfile::tempdir().expect("tempdir");
        let mut inv = Inventory::open(dir.path(), crate::vault::MasterKey::generate()).expect("open");
        let key = rcgen::KeyPair::generate().expect("key");
        let der = rcgen::CertificateParams::new(vec!["deploy.example".to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("cert")
            .der()
            .to_vec();
        let new = NewCertificate {
            der: &der,
            chain: &[],
            key: None,
            source: "import",
            profile: None,
            account: None,
            predecessor_id: None,
        };
        let InsertOutcome::Inserted(id) = inv.insert_certificate(&new, "test").expect("insert") else {
            panic!("a new certificate");
        };
        let mut cert = inv.find(&id.to_string()).expect("find").expect("stored");
        cert.key_id = Some(999_999); // a key the inventory does not hold
        let out = dir.path().join("out");
        let targets = [
            DeployTarget { cert: Some(out.join("cert.pem")), ..DeployTarget::default() },
            DeployTarget { key: Some(out.join("key.pem")), ..DeployTarget::default() },
        ];
        let reports = deploy(&mut inv, &cert, &targets, &|_| None, "test", false).await;
        assert!(reports[0].ok, "{:?}", reports[0]);
        assert!(out.join("cert.pem").exists());
        assert!(!reports[1].ok);
        assert!(reports[1].message.contains("the private key could not be read"), "{}", reports[1].message);
        assert!(!out.join("key.pem").exists());
        let recorded = inv.deployments(id).expect("deployments");
        assert_eq!(recorded.len(), 2, "both outcomes are recorded: {recorded:?}");
    }

    #[test]
    fn a_lookup_grows_its_buffer_until_the_record_fits() {
        let mut sizes = Vec::new();
        let found = reentrant_lookup(|buf| {
            sizes.push(buf.len());
            if buf.len() < 10_000 { (libc::ERANGE, None) } else { (0, Some(7)) }
        });
        assert_eq!(found.expect("found"), Some(7));
        assert_eq!(sizes, [1024, 4096, 16_384]);
        let failed = reentrant_lookup::<u32>(|_| (libc::EIO, None)).unwrap_err();
        assert_eq!(failed.raw_os_error(), Some(libc::EIO));
        assert_eq!(reentrant_lookup::<u32>(|_| (libc::ENOENT, None)).expect("not an error"), None, "no such name");
    }
}
