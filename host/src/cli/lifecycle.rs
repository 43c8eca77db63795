//! `certhost renew | reissue | revoke | delete | update-order`: lifecycle steps on stored
//! certificates and orders.

use std::process::ExitCode;

use anyhow::Context;
use certhost::connector::{OrderAction, RevocationReason};
use certhost::inventory::Inventory;
use certhost::issue::Pipeline;
use certhost::lifecycle::{RenewKind, RenewOptions};

/// Arguments of `renew` and `reissue`.
#[derive(Debug, clap::Args)]
pub struct RenewArgs {
    /// Certificate id, SHA-1/SHA-256 thumbprint, or the thumbprint prefix `list` shows.
    id: String,
    /// Issue the successor under another profile (migration).
    #[arg(long)]
    profile: Option<String>,
    /// Use this one CA account instead of the profile's failover list (migration to another CA).
    /// Not possible when the renewal waits for approval (under another profile that requires it).
    #[arg(long)]
    account: Option<String>,
    #[command(flatten)]
    params: super::DynamicParams,
    /// Write cert.pem, chain.pem, fullchain.pem and key.pem (mode 0600) here, replacing the
    /// files of the certificate it renews (or of one for the same names) when they are there;
    /// another certificate's files are refused without --overwrite.
    #[arg(long, value_name = "DIR")]
    out: Option<std::path::PathBuf>,
    /// With --out: replace the files there even when they are another certificate's.
    #[arg(long, requires = "out")]
    overwrite: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

impl RenewArgs {
    /// The dynamic parameters given.
    pub(super) fn dynamic_params(&self) -> &super::DynamicParams {
        &self.params
    }
}

/// Arguments of `revoke`.
#[derive(Debug, clap::Args)]
pub struct RevokeArgs {
    /// Certificate id, SHA-1/SHA-256 thumbprint, or the thumbprint prefix `list` shows.
    id: String,
    /// RFC 5280 reason: unspecified, keyCompromise, cACompromise, affiliationChanged, superseded,
    /// cessationOfOperation, certificateHold, privilegeWithdrawn, aACompromise.
    #[arg(long, value_parser = parse_reason)]
    reason: RevocationReason,
    /// Comment for the CA and the audit log.
    #[arg(long, default_value = "")]
    comment: String,
    /// Mark it revoked in the inventory only, without asking its CA (a connector that cannot
    /// revoke, an imported certificate, one revoked at the CA by other means): it is no longer
    /// renewed or deployed, and keyCompromise blocks its key, but the CA still vouches for it.
    #[arg(long)]
    local_only: bool,
}

fn parse_reason(s: &str) -> Result<RevocationReason, String> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).map_err(|_| {
        "expected one of unspecified, keyCompromise, cACompromise, affiliationChanged, superseded, \
         cessationOfOperation, certificateHold, privilegeWithdrawn, aACompromise"
            .to_owned()
    })
}

/// Arguments of `delete`.
#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    /// Certificate id, SHA-1/SHA-256 thumbprint, or the thumbprint prefix `list` shows.
    id: String,
}

/// Arguments of `update-order`.
#[derive(Debug, clap::Args)]
pub struct UpdateOrderArgs {
    /// Order id.
    id: i64,
    /// approve, decline, suspend or resume.
    #[arg(value_parser = parse_action)]
    action: OrderAction,
}

fn parse_action(s: &str) -> Result<OrderAction, String> {
    serde_json::from_value(serde_json::Value::String(s.to_owned()))
        .map_err(|_| "expected approve, decline, suspend or resume".to_owned())
}

fn lookup(inv: &Inventory, id: &str) -> anyhow::Result<certhost::inventory::CertificateRecord> {
    inv.find(id)?.with_context(|| format!("certificate {id} not found"))
}

/// `renew` or `reissue`.
pub fn renew(args: RenewArgs, kind: RenewKind, inv: &mut Inventory, env: &super::Env) -> anyhow::Result<ExitCode> {
    let record = lookup(inv, &args.id)?;
    let id = record.id;
    if let Some(dir) = &args.out {
        // Where the renewed certificate's files usually are: replacing them is the point. Those
        // of another certificate are not (docs review of stop 40: renew wrote over another
        // name's key.pem without a word, where issue --out refuses).
        let own = holds_files_of(dir, &record);
        super::issue::prepare_out_dir(dir, None, args.overwrite || own, "nothing was requested")?;
    }
    args.params.warn_sensitive_on_command_line(inv, args.profile.as_deref().or(record.profile.as_deref()));
    // Whoever runs the CLI holds the master key, an administrator: any account may be named.
    let opts = RenewOptions {
        kind,
        profile: args.profile,
        account: args.account,
        any_account: true,
        params: args.params.resolve()?,
    };
    let registry = super::registry(&env.data_dir, env);
    let outcome = super::runtime()?.block_on(async {
        let mut p = Pipeline { inventory: inv, connectors: &registry, env: &super::env_lookup, actor: &env.actor };
        p.renew(id, &opts).await
    })?;
    super::issue::report(inv, &outcome, args.out.as_deref(), args.json)
}

/// Whether `dir`'s cert.pem is `record` itself, or a certificate for the same names (an
/// earlier renewal written there).
fn holds_files_of(dir: &std::path::Path, record: &certhost::inventory::CertificateRecord) -> bool {
    let Ok(pem) = std::fs::read_to_string(dir.join("cert.pem")) else { return false };
    let Some(der) = certhost::cert::pem_certificates(&pem).ok().and_then(|c| c.into_iter().next()) else {
        return false;
    };
    let Ok(there) = certhost::cert::CertificateInfo::from_der(&der) else { return false };
    there.sha256 == record.info.sha256
        || (there.common_name == record.info.common_name && there.sans == record.info.sans)
}

/// `revoke`.
pub fn revoke(args: RevokeArgs, inv: &mut Inventory, env: &super::Env) -> anyhow::Result<ExitCode> {
    let id = lookup(inv, &args.id)?.id;
    let registry = super::registry(&env.data_dir, env);
    let mut p = Pipeline { inventory: inv, connectors: &registry, env: &super::env_lookup, actor: &env.actor };
    if args.local_only {
        p.revoke_locally(id, args.reason, &args.comment)?;
        println!("certificate #{id} marked revoked in the inventory; its CA was not asked and still vouches for it");
        return Ok(ExitCode::SUCCESS);
    }
    super::runtime()?.block_on(p.revoke(id, args.reason, &args.comment))?;
    println!("certificate #{id} revoked at its CA and marked revoked");
    Ok(ExitCode::SUCCESS)
}

/// `delete`.
pub fn delete(args: DeleteArgs, inv: &mut Inventory, env: &super::Env) -> anyhow::Result<ExitCode> {
    let id = lookup(inv, &args.id)?.id;
    let active = inv.find(&id.to_string())?.filter(|c| c.status == certhost::inventory::CertStatus::Active);
    inv.delete_certificate(id, &env.actor)?;
    println!("certificate #{id} removed from the inventory (the CA was not contacted; its audit history stays)");
    // Deleting the active certificate of a lineage silently ended its renewals (black-box
    // review of stop 35): its predecessor is superseded, and nothing watches those.
    if let Some(cert) = active {
        eprintln!(
            "note: it was active: certhost no longer renews, deploys or warns about the expiry of {} through it \
             (issue or import the certificate in use again to keep it watched)",
            super::output::terminal_safe(&cert.info.subject)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `update-order`.
pub fn update_order(args: UpdateOrderArgs, inv: &mut Inventory, env: &super::Env) -> anyhow::Result<ExitCode> {
    let registry = super::registry(&env.data_dir, env);
    let state = super::runtime()?.block_on(async {
        let mut p = Pipeline { inventory: inv, connectors: &registry, env: &super::env_lookup, actor: &env.actor };
        p.update_order(args.id, args.action).await
    })?;
    println!("order #{} updated at its CA; it is now {}", args.id, state.as_str());
    Ok(ExitCode::SUCCESS)
}
