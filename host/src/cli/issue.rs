//! `certhost issue`: request a certificate by profile.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use certhost::csr::{San, Subject};
use certhost::inventory::Inventory;
use certhost::issue::{IssueOutcome, IssueRequest, Pipeline};

use super::output;

/// Arguments of `issue`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Profile to issue under.
    #[arg(long)]
    profile: String,
    /// Common name (with --csr: optional, and refused unless it is the CSR's).
    #[arg(long)]
    cn: Option<String>,
    /// Subject alternative name: DNS:name, IP:address, EMAIL:address, URI:uri (repeatable;
    /// with --csr: optional, and refused unless they are the CSR's).
    #[arg(long = "san", value_name = "TYPE:VALUE")]
    sans: Vec<San>,
    /// Organisation override (when the profile allows it).
    #[arg(long = "o", value_name = "ORG")]
    organization: Vec<String>,
    /// Organisational unit override (when the profile allows it).
    #[arg(long = "ou", value_name = "UNIT")]
    organizational_unit: Vec<String>,
    /// Locality override (when the profile allows it).
    #[arg(long = "l", value_name = "LOCALITY")]
    locality: Option<String>,
    /// State/province override (when the profile allows it).
    #[arg(long = "st", value_name = "STATE")]
    state: Option<String>,
    /// Country override, two letters (when the profile allows it).
    #[arg(long = "c", value_name = "CC")]
    country: Option<String>,
    /// emailAddress in the subject (when the profile allows it).
    #[arg(long = "email", value_name = "ADDRESS")]
    email: Option<String>,
    #[command(flatten)]
    params: super::DynamicParams,
    /// Use this CSR (PEM or DER) instead of generating a key; the certificate names what the
    /// CSR requests, and any --cn, --san or subject override must match it.
    #[arg(long, value_name = "FILE")]
    csr: Option<PathBuf>,
    /// Write cert.pem, chain.pem, fullchain.pem and key.pem (mode 0600) here.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Replace files an earlier issuance wrote to --out (refused otherwise, before issuing).
    #[arg(long, requires = "out")]
    overwrite: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

impl Args {
    /// The dynamic parameters given.
    pub(super) fn dynamic_params(&self) -> &super::DynamicParams {
        &self.params
    }
}

pub fn run(args: Args, inv: &mut Inventory, env: &super::Env) -> anyhow::Result<ExitCode> {
    let csr = match &args.csr {
        Some(path) => {
            let meta = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
            anyhow::ensure!(meta.len() <= 1024 * 1024, "{} is larger than 1 MiB; not a CSR", path.display());
            Some(std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?)
        }
        None => None,
    };
    if let Some(dir) = &args.out {
        prepare_out_dir(dir, csr.as_deref(), args.overwrite, "nothing was issued")?;
    }
    args.params.warn_sensitive_on_command_line(inv, Some(&args.profile));
    let request = IssueRequest {
        profile: args.profile.clone(),
        common_name: args.cn.clone(),
        sans: args.sans.clone(),
        subject: Subject {
            organization: args.organization.clone(),
            organizational_unit: args.organizational_unit.clone(),
            locality: args.locality.clone(),
            state: args.state.clone(),
            country: args.country.clone(),
            email: args.email.clone(),
            common_name: None,
        },
        params: args.params.resolve()?,
        csr,
        idempotency_key: None,
    };
    let registry = super::registry(&env.data_dir, env);
    let outcome = super::runtime()?.block_on(async {
        let mut pipeline =
            Pipeline { inventory: inv, connectors: &registry, env: &super::env_lookup, actor: &env.actor };
        pipeline.issue(&request).await
    })?;
    report(inv, &outcome, args.out.as_deref(), args.json)
}

/// The exit code of a command that issued and stored a certificate it could not deliver (a
/// deployment target failed, or its `--out` files could not be written): neither success nor
/// the operational error (1) after which a retry would issue again.
pub const DEPLOY_FAILED: u8 = 3;

/// Prints an outcome (shared with `orders poll/approve/resubmit`) and writes files when asked.
pub fn report(
    inv: &Inventory,
    outcome: &IssueOutcome,
    out: Option<&std::path::Path>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    match outcome {
        IssueOutcome::Issued { order_id, certificate, on_compromised_key: true, .. } => {
            // Stored, so not 1 (a retry would renew again); no files are written for it.
            let e = certhost::issue::IssueError::IssuedOnCompromisedKey {
                order_id: *order_id,
                certificate_id: certificate.id,
            };
            eprintln!("error: {e}");
            return Ok(ExitCode::from(DEPLOY_FAILED));
        }
        IssueOutcome::Issued { order_id, certificate: record, .. } => {
            let certificate_id = record.id;
            // The certificate is stored whatever happens to its files: a failure is reported
            // after the outcome (JSON included), and not with the exit code a retrying
            // wrapper would issue again on.
            let written = match out {
                Some(dir) => {
                    let key = record.key_id.map(|k| inv.private_key(k)).transpose()?;
                    Some((dir, write_files(key.as_ref(), record, dir)))
                }
                None => None,
            };
            // The profile's deployments ran in the pipeline and are recorded with the new
            // certificate; a failed one is this command's failure, though the certificate is
            // stored: a consumer left on the old one expires unnoticed otherwise.
            // The latest outcome of each target (newest first from the inventory): an older
            // failure a later `certhost deploy` mended is not this command's.
            let deployments = latest_deployments(inv, certificate_id)?;
            let failed: Vec<_> = deployments.iter().filter(|(_, outcome, _, _)| outcome != "success").collect();
            if json {
                output::json(&outcome_json(inv, outcome)?)?;
            } else {
                println!(
                    "issued certificate #{certificate_id} (order #{order_id}): {}",
                    output::terminal_safe(&record.info.subject)
                );
                println!("  not after {}  sha256 {}", output::rfc3339(record.info.not_after), record.info.sha256);
                if let Some((dir, Ok(()))) = &written {
                    println!("  wrote {} to {}", written_files(record, record.key_id.is_some()), dir.display());
                }
                for (target, outcome, message, _) in deployments.iter().rev() {
                    let line = if outcome == "success" {
                        format!("deployed to {}", certhost::deploy::deployed_where(target, message))
                    } else {
                        format!("FAILED to deploy to {target}: {message}")
                    };
                    println!("  {}", output::terminal_safe(&line));
                }
            }
            if let Some((dir, Err(e))) = &written {
                eprintln!(
                    "certificate #{certificate_id} was issued and stored (do not issue it again), but writing its files to {} failed: {}; \
                     certhost show {certificate_id} --out DIR writes them",
                    dir.display(),
                    super::sentence(e)
                );
                return Ok(ExitCode::from(DEPLOY_FAILED));
            }
            if !failed.is_empty() {
                // Every failed target, in the profile's order (black-box review of stop 35: with
                // two failed, only the last was named).
                let what = failed
                    .iter()
                    .rev()
                    .map(|(target, _, message, _)| {
                        format!("{} failed: {}", output::terminal_safe(target), output::terminal_safe(message))
                    })
                    .collect::<Vec<_>>()
                    .join("; deploying it to ");
                // Not 1: a wrapper that retries a failed issue would issue a second certificate.
                eprintln!(
                    "certificate #{certificate_id} was issued and stored, but deploying it to {what}; fix the target{} and \
                     run certhost deploy {certificate_id} (certhost serve also tries again, after 5 minutes doubling to 6 hours)",
                    if failed.len() > 1 { "s" } else { "" }
                );
                return Ok(ExitCode::from(DEPLOY_FAILED));
            }
        }
        IssueOutcome::Pending { order_id, next_poll_at } => {
            if json {
                output::json(&outcome_json(inv, outcome)?)?;
            } else {
                println!(
                    "order #{order_id} is pending at the CA; next poll at {} (certhost orders poll {order_id})",
                    output::rfc3339(*next_poll_at)
                );
            }
        }
        IssueOutcome::AwaitingApproval { order_id } => {
            if json {
                output::json(&outcome_json(inv, outcome)?)?;
            } else {
                println!("order #{order_id} awaits approval (certhost orders approve {order_id}, by someone else)");
            }
        }
    }
    // Asked for files, and none could be written: `issue --out DIR && reload` went on to the
    // reload with nothing there (operator review of stop 36).
    if let (Some(dir), IssueOutcome::Pending { order_id, .. } | IssueOutcome::AwaitingApproval { order_id }) =
        (out, outcome)
    {
        eprintln!(
            "nothing was written to {}: order #{order_id} has not issued yet; once it has, certhost show ID --out {} writes the files",
            dir.display(),
            dir.display()
        );
        return Ok(ExitCode::from(NOT_ISSUED_YET));
    }
    Ok(ExitCode::SUCCESS)
}

/// The exit code of `issue --out DIR` (and the commands that share its report) when the order
/// is pending at the CA or awaits approval: no certificate, so no files, yet not a failure
/// to retry (1) nor one held for an operator (4).
pub const NOT_ISSUED_YET: u8 = 5;

/// The latest outcome of each of a certificate's deployment targets (newest first from the
/// inventory): an older failure a later `certhost deploy` mended is not a command's failure.
fn latest_deployments(inv: &Inventory, id: i64) -> anyhow::Result<Vec<(String, String, String, i64)>> {
    let mut deployments = inv.deployments(id)?;
    let mut seen = std::collections::HashSet::new();
    deployments.retain(|(target, ..)| seen.insert(target.clone()));
    Ok(deployments)
}

/// The first target whose latest deployment of certificate `id` failed, with the message.
pub fn failed_deployment(inv: &Inventory, id: i64) -> anyhow::Result<Option<(String, String)>> {
    Ok(latest_deployments(inv, id)?
        .into_iter()
        .find(|(_, outcome, ..)| outcome != "success")
        .map(|(t, _, m, _)| (t, m)))
}

/// What `--json` prints for an outcome: the disposition, the order and, when issued, the
/// certificate with its deployments.
pub fn outcome_json(inv: &Inventory, outcome: &IssueOutcome) -> anyhow::Result<serde_json::Value> {
    Ok(match outcome {
        IssueOutcome::Issued { order_id, certificate, on_compromised_key: true, .. } => {
            let e = certhost::issue::IssueError::IssuedOnCompromisedKey {
                order_id: *order_id,
                certificate_id: certificate.id,
            };
            serde_json::json!({ "order_id": order_id, "certificate_id": certificate.id, "error": e.to_string() })
        }
        IssueOutcome::Issued { order_id, certificate: record, .. } => {
            let view = output::CertView::new(record, output::now(), true).with_history(inv)?;
            serde_json::json!({ "disposition": "issued", "order_id": order_id, "certificate": view })
        }
        IssueOutcome::Pending { order_id, next_poll_at } => {
            serde_json::json!({ "disposition": "pending", "order_id": order_id, "next_poll_at": output::rfc3339(*next_poll_at) })
        }
        IssueOutcome::AwaitingApproval { order_id } => {
            serde_json::json!({ "disposition": "awaiting_approval", "order_id": order_id })
        }
    })
}

/// Refuses, before anything is issued, an `--out` directory holding files the issuance would
/// overwrite (unless `overwrite`): a certificate issued for an uploaded CSR was written beside
/// an earlier issuance's key.pem, a pair that cannot work together. With a CSR no key.pem is
/// written, so one already there is refused only when it is readable and holds another key
/// (`key-csr --out DIR`, then `issue --csr DIR/csr.pem --out DIR` keeps working, and so does
/// an encrypted key beside its CSR), with or without `overwrite`.
fn check_out_dir(dir: &std::path::Path, csr: Option<&[u8]>, overwrite: bool, nothing: &str) -> anyhow::Result<()> {
    let csr_key = csr.and_then(|c| certhost::csr::parse_csr(c).ok()).map(|c| c.public_key_raw);
    if let Some(wanted) = &csr_key
        && key_file_holds(dir, wanted) == Some(false)
    {
        anyhow::bail!(
            "{} holds another key than the CSR's, which would sit beside the new certificate; {nothing}: give --out another directory",
            dir.join("key.pem").display()
        );
    }
    if overwrite {
        return Ok(());
    }
    let written: &[&str] = if csr_key.is_some() {
        &["cert.pem", "chain.pem", "fullchain.pem"]
    } else {
        &["cert.pem", "chain.pem", "fullchain.pem", "key.pem"]
    };
    if let Some(name) = written.iter().find(|name| dir.join(name).exists()) {
        anyhow::bail!(
            "{} already holds {name}, which this would overwrite; {nothing}: give --out an empty directory, or --overwrite",
            dir.display()
        );
    }
    Ok(())
}

/// Whether `dir/key.pem` is the private half of `public_key` (raw, as in a SubjectPublicKeyInfo):
/// `None` when there is no such file, or none certhost can read as a key.
pub fn key_file_holds(dir: &std::path::Path, public_key: &[u8]) -> Option<bool> {
    let text = std::fs::read_to_string(dir.join("key.pem")).ok()?;
    let key = certhost::key::PrivateKey::from_pem(&text).ok()?;
    Some(key.public_key_raw() == public_key)
}

/// [`check_out_dir`], then makes sure files can be written there — creating the directory —
/// before anything is issued: a path that is a file, or a directory certhost cannot write,
/// was found only after the CA had issued.
/// `nothing` is what the refusal means for the command ("nothing was issued").
pub fn prepare_out_dir(
    dir: &std::path::Path,
    csr: Option<&[u8]>,
    overwrite: bool,
    nothing: &str,
) -> anyhow::Result<()> {
    if dir.exists() && !dir.is_dir() {
        anyhow::bail!("--out {} is not a directory; {nothing}", dir.display());
    }
    check_out_dir(dir, csr, overwrite, nothing)?;
    // 0700 whatever the umask, as key-csr's: it is about to hold a private key, and a directory
    // others may write to lets them replace it (docs review of stop 40: 0777 under umask 0).
    super::key_csr::create_private_dir(dir)
        .with_context(|| format!("--out {} cannot be created; {nothing}", dir.display()))?;
    let probe = dir.join(format!(".certhost-write-test-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .with_context(|| format!("--out {} cannot be written; {nothing}", dir.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// The files [`write_files`] wrote, in words: an empty chain.pem is said to be empty, since a
/// server configured with it as a CA file fails on it, and the operator should know why.
pub fn written_files(record: &certhost::inventory::CertificateRecord, with_key: bool) -> String {
    let chain = if record.chain_pem.trim().is_empty() { " (empty: no chain came with the certificate)" } else { "" };
    format!("cert.pem, chain.pem{chain}, fullchain.pem{}", if with_key { ", key.pem" } else { "" })
}

/// Writes cert.pem, chain.pem, fullchain.pem and, with `key`, key.pem (0600) into `dir`.
pub fn write_files(
    key: Option<&certhost::key::PrivateKey>,
    record: &certhost::inventory::CertificateRecord,
    dir: &std::path::Path,
) -> anyhow::Result<()> {
    let mut files: Vec<(&str, String, u32)> = vec![
        ("cert.pem", record.pem.clone(), 0o644),
        ("chain.pem", record.chain_pem.clone(), 0o644),
        ("fullchain.pem", format!("{}{}", record.pem, record.chain_pem), 0o644),
    ];
    if let Some(key) = key {
        files.push(("key.pem", key.to_pem().to_string(), 0o600));
    }
    for (name, content, mode) in files {
        certhost::deploy::write_atomically(&dir.join(name), content.as_bytes(), mode, None, None)?;
    }
    Ok(())
}
