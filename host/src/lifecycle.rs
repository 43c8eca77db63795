//! The lifecycle steps that go through a connector after issuance: renew (possibly at
//! another profile or CA account, as Keyfactor's renew allows), reissue with a new key,
//! revoke, and `update_order` at the CA. Deletion and expiry are inventory-only
//! (`Inventory::delete_certificate`, `Inventory::mark_expired`).

use std::collections::BTreeMap;

use crate::account::AccountStatus;
use crate::cert;
use crate::connector::{OrderAction, RevocationReason, RevokeRequest};
use crate::csr::{CsrParams, Subject, build, parse_csr};
use crate::inventory::{CertStatus, CertificateRecord, InventoryError, NewOrder, OrderState};
use crate::issue::{
    IssueError, IssueOutcome, Pipeline, Renewal, Submission, call_with_deadline, check_dynamic, recorded_dynamic,
};
use crate::key::PrivateKey;
use crate::param::ParamError;
use crate::profile::{NameRequest, ProfileDef};

/// How to give a required sensitive dynamic parameter to a renewal: it was never stored.
const SENSITIVE_HINT: &str = " (it is sensitive, so certhost never stores it: renew the certificate by hand with \
     --param-env NAME=VAR or --param-file NAME=PATH, or over the API with it in \"params\"; --param would show it \
     in the process list)";

/// Renewal keeps the key when the profile says so; reissue always makes a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenewKind {
    /// Same names, key per the profile's `renewal.regenerate_key`.
    Renew,
    /// Same names, always a new key pair (Entrust's "reissue").
    Reissue,
}

impl RenewKind {
    fn as_str(self) -> &'static str {
        match self {
            RenewKind::Renew => "renew",
            RenewKind::Reissue => "reissue",
        }
    }
}

/// Options of [`Pipeline::renew`].
#[derive(Debug, Clone)]
pub struct RenewOptions {
    /// Renew or reissue.
    pub kind: RenewKind,
    /// Another profile than the certificate's (migration at renewal).
    pub profile: Option<String>,
    /// One CA account to use instead of the profile's failover list.
    pub account: Option<String>,
    /// Whether `account` may name a CA account the target profile does not list. Moving a
    /// certificate to another CA is an operator's decision; a requester may only pick among
    /// the accounts the profile already allows, or it could reach any CA configured.
    pub any_account: bool,
    /// Dynamic parameters of the new order.
    pub params: BTreeMap<String, String>,
}

impl Default for RenewOptions {
    fn default() -> Self {
        Self { kind: RenewKind::Renew, profile: None, account: None, any_account: false, params: BTreeMap::new() }
    }
}

/// A certificate this process is revoking; let go on drop.
struct Revoking(i64);

impl Revoking {
    fn in_flight() -> std::sync::MutexGuard<'static, std::collections::HashSet<i64>> {
        static IN_FLIGHT: std::sync::OnceLock<std::sync::Mutex<std::collections::HashSet<i64>>> =
            std::sync::OnceLock::new();
        IN_FLIGHT.get_or_init(Default::default).lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `None` while another revocation of `id` runs in this process.
    fn claim(id: i64) -> Option<Self> {
        // The set's lock is let go before a `Revoking` exists: its drop takes the lock again.
        let claimed = Self::in_flight().insert(id);
        claimed.then(|| Revoking(id))
    }
}

impl Drop for Revoking {
    fn drop(&mut self) {
        Self::in_flight().remove(&self.0);
    }
}

/// What a revocation the CA cannot make says to do instead (walkthroughs of stop 46).
const LOCAL_ONLY_HINT: &str =
    "(to mark it revoked in the inventory only, revoke it with --local-only, local_only in the API)";

impl Pipeline<'_> {
    /// Renews (or reissues) certificate `id`: a new CSR with the same subject and SANs (or,
    /// renewing one issued from an uploaded CSR, that CSR again), an order linked to the
    /// certificate, the connector's `renew` at the original account (or
    /// `certificate_request`), verification, and on success the old certificate superseded.
    pub async fn renew(&mut self, id: i64, opts: &RenewOptions) -> Result<IssueOutcome, IssueError> {
        let cert = self.certificate(id)?;
        let refuse = |reason: &str| IssueError::Certificate { id, reason: reason.to_owned() };
        match (cert.status, opts.kind) {
            (CertStatus::Superseded, _) => {
                // Named, so the caller need not search for it (new-user walkthrough of stop 46).
                let reason = match self.inventory.successor(id)? {
                    Some(next) => {
                        format!("it was superseded by a renewal; renew its successor, certificate {next}, instead")
                    }
                    None => "it was superseded by a renewal; renew its successor instead".to_owned(),
                };
                return Err(IssueError::Certificate { id, reason });
            }
            (CertStatus::Revoked, RenewKind::Renew) => {
                return Err(refuse("it is revoked; reissue it (new key) instead of renewing it"));
            }
            _ => {}
        }
        let profile_name = opts.profile.clone().or_else(|| cert.profile.clone()).ok_or_else(|| {
            let verb = if opts.kind == RenewKind::Reissue { "reissue" } else { "renew" };
            refuse(&format!("it has no profile (it was imported); name the profile to {verb} it with (--profile)"))
        })?;
        let (mut profile, _) = self
            .inventory
            .profile(&profile_name)?
            .ok_or_else(|| IssueError::NoProfile(crate::view::echoed(&profile_name)))?;
        // Moving a certificate to a profile that holds its orders for approval is a request
        // under that profile like any other, so it waits too. Renewing under the certificate's
        // own profile stays automatic: its names and account were approved when it was issued,
        // and the scheduler renews that way.
        let held = profile.approval_required && cert.profile.as_deref() != Some(profile_name.as_str());
        if let Some(account) = &opts.account {
            if self.inventory.account(account)?.is_none() {
                return Err(InventoryError::NotFound(format!("account {account}")).into());
            }
            if !opts.any_account && !profile.accounts.contains(account) {
                return Err(IssueError::AccountNotListed { account: account.clone(), profile: profile_name });
            }
            if held {
                // An approved order is sent to its profile's accounts: the choice would be lost.
                return Err(refuse(&format!(
                    "its renewal under profile {profile_name} waits for approval and is then sent to the \
                     profile's own accounts, so no account can be chosen for it; leave out the account"
                )));
            }
            profile.accounts = vec![account.clone()];
        }
        crate::issue::check_given_sizes(&opts.params)?;
        let params = self.renewal_params(&cert, &profile_name, &profile, &opts.params)?;
        let dynamic = check_dynamic(&profile_name, &profile, &params).map_err(|e| match e {
            // A sensitive value is never stored, so no renewal can reuse it: say what to do.
            ParamError::Missing { name, owner, .. } if profile.params.get(&name).is_some_and(|d| d.sensitive) => {
                ParamError::Missing { name, owner, hint: SENSITIVE_HINT }
            }
            other => other,
        })?;
        let mut policy = profile.clone();
        policy.sans.include_cn = false;
        let moved = cert.profile.as_deref() != Some(profile_name.as_str());
        let (common_name, sans, csr_pem, key) = match self.uploaded_csr(&cert, opts.kind)? {
            // Its requester holds the key (an HSM, a Kubernetes secret): the host never swaps in
            // one of its own, and the CSR is held to the profile as when it was uploaded.
            Some(pem) => {
                let parsed = parse_csr(pem.as_bytes())?;
                // Under its own profile the names are checked as any renewal's; the rest of
                // what an upload is held to was decided when it was uploaded (a CSR from
                // before a rule — CN-only, an RSA key on an ec-p256 profile — keeps renewing).
                // A profile it moves to holds it to everything, as a new upload.
                if moved {
                    profile.check_csr_names(&profile_name, parsed.common_name.as_deref(), &parsed.sans)?;
                    profile.check_csr_subject(&profile_name, &parsed.subject_fields)?;
                    profile.key.check_accepts(&profile_name, "the CSR's", parsed.key)?;
                    profile.check_deploys_without_key(&profile_name)?;
                } else {
                    let names = NameRequest {
                        common_name: parsed.common_name.clone(),
                        sans: parsed.sans.clone(),
                        subject: Subject::default(),
                    };
                    policy.check_request(&profile_name, &names)?;
                }
                (parsed.common_name, parsed.sans, parsed.pem, None)
            }
            None => {
                let der = cert::pem_certificates(&cert.pem)
                    .ok()
                    .and_then(|mut v| (!v.is_empty()).then(|| v.swap_remove(0)))
                    .ok_or_else(|| InventoryError::Corrupt(format!("certificate {id} PEM")))?;
                let mut subject = cert::subject_fields(&der).map_err(|e| InventoryError::Corrupt(e.to_string()))?;
                let sans = cert.info.sans.clone();
                // The (possibly new) profile must allow these names, and a profile the
                // certificate moves to its subject too: its own was approved at issuance.
                let names = NameRequest {
                    common_name: subject.common_name.clone(),
                    sans: sans.clone(),
                    subject: Subject::default(),
                };
                policy.check_request(&profile_name, &names)?;
                if moved {
                    profile.check_uploaded_subject(&profile_name, "the certificate's", &subject)?;
                    // What the profile fixes and the certificate left out (an imported one
                    // with a bare CN) is put in, as in any certificate of the profile.
                    subject = profile.fill_fixed_subject(&subject);
                }
                let key = self.renewal_key(&cert, &profile, opts.kind)?;
                let reused_type = key.key_type();
                let hash = if reused_type == Some(profile.key.key_type) { profile.key.hash } else { None };
                let params = CsrParams {
                    subject: subject.clone(),
                    sans: sans.clone(),
                    key_type: reused_type.unwrap_or(profile.key.key_type),
                    hash,
                };
                let csr = build(&params, &key)?;
                (subject.common_name, sans, csr.pem, Some(key))
            }
        };
        let new = NewOrder {
            kind: opts.kind.as_str().to_owned(),
            profile: profile_name.clone(),
            common_name,
            sans,
            csr_pem,
            params: crate::issue::recorded_params(&dynamic),
            key,
            predecessor_id: Some(cert.id),
            awaiting_approval: held,
            idempotency: None,
        };
        if held {
            let actor = self.actor.to_owned();
            let order = self.inventory.write(move |inv| inv.create_order(&new, &actor)).await?;
            crate::metrics::issuance("awaiting_approval");
            return Ok(IssueOutcome::AwaitingApproval { order_id: order.id });
        }
        let renewal = self.renewal_of(&cert)?;
        self.submit_with(Submission::New(new), &profile, &dynamic, Some(&renewal)).await
    }

    /// Revokes certificate `id` at the CA account that issued it; only when the connector
    /// says it did is the certificate marked `revoked`. A connector without `revoke` changes
    /// nothing and says so.
    pub async fn revoke(&mut self, id: i64, reason: RevocationReason, comment: &str) -> Result<(), IssueError> {
        // Before the CA is asked: the comment goes there too.
        crate::inventory::check_note("comment", comment)?;
        let (cert, _revoking) = self.begin_revocation(id, true)?;
        // Marked revoked in the inventory only, and now revoked at the CA.
        let marked_before = cert.status == CertStatus::Revoked;
        let refuse = |reason: String| IssueError::Certificate { id, reason };
        let account_name = cert.account.clone().ok_or_else(|| {
            refuse(format!(
                "it was not issued through a CA account (imported), so certhost cannot revoke it at the CA \
                 {LOCAL_ONLY_HINT}"
            ))
        })?;
        let account = self
            .inventory
            .account(&account_name)?
            .ok_or_else(|| refuse(format!("its CA account {account_name} no longer exists")))?;
        if account.def.status != AccountStatus::Active {
            return Err(IssueError::Inactive { account: account_name });
        }
        let (profile_name, profile) = self.profile_or_default(cert.profile.as_deref(), &account_name)?;
        let issuing = self.inventory.issuing_order(cert.id)?;
        let args = self.args_for(&account, &profile_name, &profile, &recorded_dynamic(issuing.as_ref(), &profile))?;
        let connector = crate::issue::connector_of(self.connectors, &account, &profile_name, &profile.params)
            .await
            .map_err(|e| IssueError::CaCall {
                what: format!("revoke certificate {id}"),
                message: args.redact(&e.to_string()),
            })?;
        let request = RevokeRequest {
            certificate_pem: cert.pem.clone(),
            serial: cert.info.serial.clone(),
            reason,
            comment: comment.to_owned(),
        };
        let started = std::time::Instant::now();
        let result =
            call_with_deadline(&*connector, account.def.limits().timeout, &args, connector.revoke(&request, &args))
                .await;
        crate::metrics::connector_call(connector.name(), &account.name, "revoke", &result, started.elapsed());
        let reason_word =
            serde_json::to_value(reason).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        match result {
            Ok(()) => {
                self.inventory.record_revoked(id, &reason_word, comment, self.actor, true)?;
                Ok(())
            }
            // Another process revoked it while this call was at the CA (which then refused it
            // as already revoked): the outcome the caller wants, said as such.
            Err(_) if !marked_before && self.certificate(id).is_ok_and(|c| c.status == CertStatus::Revoked) => {
                Err(IssueError::AlreadyRevoked { id })
            }
            Err(e) => {
                let message = args.redact(&e.to_string());
                self.inventory.audit(&crate::inventory::NewAuditEvent {
                    actor: self.actor,
                    action: "certificate.revoke",
                    object_type: "certificate",
                    object_id: Some(id.to_string()),
                    outcome: "failure",
                    detail: serde_json::json!({ "reason": reason_word, "error": message }),
                })?;
                Err(match e {
                    crate::connector::ConnectorError::Unsupported { .. } => IssueError::NotSupported {
                        what: format!("revoke certificate {id}"),
                        message: format!("{message}; nothing was changed {LOCAL_ONLY_HINT}"),
                    },
                    _ => IssueError::CaCall { what: format!("revoke certificate {id}"), message },
                })
            }
        }
    }

    /// Marks certificate `id` revoked in the inventory without asking its CA: for one whose
    /// connector cannot revoke (the demo connectors), an imported one, or one revoked at the
    /// CA by other means. What a revocation does here it does — no renewal, no deployment,
    /// and for keyCompromise the key blocked and its other certificates made due — but the CA
    /// still vouches for the certificate until it is revoked there (new-user walkthrough of
    /// stop 46: such a certificate could not be marked at all).
    pub fn revoke_locally(&mut self, id: i64, reason: RevocationReason, comment: &str) -> Result<(), IssueError> {
        let (_, _revoking) = self.begin_revocation(id, false)?;
        let reason_word =
            serde_json::to_value(reason).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        self.inventory.record_revoked(id, &reason_word, comment, self.actor, false)?;
        Ok(())
    }

    /// Certificate `id`, not revoked yet — or, for a revocation `at_ca`, only marked revoked
    /// in the inventory (the CA still vouches for it, and now revokes it) — with this
    /// process's claim on revoking it.
    fn begin_revocation(&mut self, id: i64, at_ca: bool) -> Result<(CertificateRecord, Revoking), IssueError> {
        let cert = self.certificate(id)?;
        let refuse = |reason: &str| IssueError::Certificate { id, reason: reason.to_owned() };
        let marked_only = || self.inventory.revocation(id).map(|r| r.is_some_and(|r| !r.at_ca));
        if cert.status == CertStatus::Revoked && !(at_ca && marked_only()?) {
            return Err(IssueError::AlreadyRevoked { id });
        }
        // One revocation of a certificate at a time in this process: two at once both reached
        // the CA, and the loser was told the CA failed (502) rather than that it was revoked
        // (black-box review of stop 35).
        let revoking = Revoking::claim(id).ok_or_else(|| refuse("a revocation of it is already in progress"))?;
        Ok((cert, revoking))
    }

    /// Sends `action` for order `order_id` to its CA (`update_order`) and applies the CA's
    /// answer to the order. Returns the order's state afterwards.
    pub async fn update_order(&mut self, order_id: i64, action: OrderAction) -> Result<OrderState, IssueError> {
        let order = self.load_order(order_id)?;
        let (Some(ca_order_id), Some(account_name)) = (order.ca_order_id.clone(), order.account.clone()) else {
            return Err(IssueError::WrongState {
                order_id,
                state: order.state.as_str(),
                what: "it has no CA order to update",
            });
        };
        let account = self
            .inventory
            .account(&account_name)?
            .ok_or_else(|| InventoryError::NotFound(format!("account {account_name}")))?;
        if account.def.status != AccountStatus::Active {
            return Err(IssueError::Inactive { account: account_name });
        }
        let (profile_name, profile) = self.profile_or_default(order.profile.as_deref(), &account_name)?;
        let mut args = self.args_for(&account, &profile_name, &profile, &recorded_dynamic(Some(&order), &profile))?;
        args.set_order_names(order.names());
        let what = format!("update order {order_id}");
        let connector = crate::issue::connector_of(self.connectors, &account, &profile_name, &profile.params)
            .await
            .map_err(|e| IssueError::CaCall { what: what.clone(), message: args.redact(&e.to_string()) })?;
        let started = std::time::Instant::now();
        let result = call_with_deadline(
            &*connector,
            account.def.limits().timeout,
            &args,
            connector.update_order(&ca_order_id, action, &args),
        )
        .await;
        crate::metrics::connector_call(connector.name(), &account.name, "update_order", &result, started.elapsed());
        let action_word =
            serde_json::to_value(action).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        match result {
            Ok(disposition) => {
                self.inventory.audit(&crate::inventory::NewAuditEvent {
                    actor: self.actor,
                    action: "order.update",
                    object_type: "order",
                    object_id: Some(order_id.to_string()),
                    outcome: "success",
                    detail: serde_json::json!({ "action": action_word }),
                })?;
                // Only an order still open takes the CA's new word; a closed one keeps its state.
                if order.state == OrderState::Pending {
                    match self.apply(&order, disposition, &args, None, None).await {
                        Ok(_) | Err(IssueError::Rejected { .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(self.load_order(order_id)?.state)
            }
            Err(e) => {
                let message = args.redact(&e.to_string());
                Err(match e {
                    crate::connector::ConnectorError::Unsupported { .. } => IssueError::NotSupported { what, message },
                    _ => IssueError::CaCall { what, message },
                })
            }
        }
    }

    /// Deploys a just-stored certificate to its profile's targets (its renewal time was
    /// stored with it: [`crate::issue::renewal_due`]).
    pub(crate) async fn deploy_issued(&mut self, profile: &ProfileDef, cert: &crate::inventory::CertificateRecord) {
        crate::deploy::deploy(self.inventory, cert, &profile.deploy, self.env, self.actor, false).await;
    }

    /// Deploys certificate `id` again to its profile's targets (`certhost deploy ID`). Only an
    /// active certificate unless `force`: putting a revoked, expired or superseded one back on
    /// a server is almost always a mistaken id, and it would replace the current one there.
    /// `replace_others` writes over files that hold another name's active certificate, which
    /// every deployment refuses otherwise (`deploy::occupant`); a flag of its own, so that a
    /// client forcing inactive certificates out does not also overwrite other names' files
    /// (diff review of stop 37).
    pub async fn redeploy(
        &mut self,
        id: i64,
        force: bool,
        replace_others: bool,
    ) -> Result<Vec<crate::deploy::DeployReport>, IssueError> {
        let cert = self.certificate(id)?;
        if cert.status != crate::inventory::CertStatus::Active && !force {
            let successor = self.inventory.successor(id)?;
            return Err(IssueError::NotDeployable { id, status: cert.status.as_str(), successor });
        }
        let name = cert.profile.clone().ok_or_else(|| IssueError::Certificate {
            id,
            reason: "it has no profile, so it has no deployment targets".into(),
        })?;
        // The certificate exists; a profile deleted since is the certificate's state (409),
        // not a missing resource.
        let (profile, _) = self.inventory.profile(&name)?.ok_or_else(|| IssueError::Certificate {
            id,
            reason: format!("its profile {name} no longer exists, so it has no deployment targets"),
        })?;
        if profile.deploy.is_empty() {
            return Err(IssueError::Certificate { id, reason: format!("profile {name} has no deployment targets") });
        }
        Ok(crate::deploy::deploy(self.inventory, &cert, &profile.deploy, self.env, self.actor, replace_others).await)
    }

    /// One page of the CA's certificates through account `account`'s `list_certificates`.
    pub async fn list_account_certificates(
        &mut self,
        account: &str,
        cursor: Option<&str>,
    ) -> Result<crate::connector::CertificatePage, IssueError> {
        let acct =
            self.inventory.account(account)?.ok_or_else(|| InventoryError::NotFound(format!("account {account}")))?;
        if acct.def.status != AccountStatus::Active {
            return Err(IssueError::Inactive { account: account.to_owned() });
        }
        let profile = ProfileDef { accounts: vec![account.to_owned()], ..ProfileDef::default() };
        let args = self.args_for(&acct, "", &profile, &BTreeMap::new())?;
        let what = format!("list the certificates of account {account}");
        let connector = crate::issue::connector_of(self.connectors, &acct, "", &profile.params)
            .await
            .map_err(|e| IssueError::CaCall { what: what.clone(), message: args.redact(&e.to_string()) })?;
        let mut page = call_with_deadline(
            &*connector,
            acct.def.limits().timeout,
            &args,
            connector.list_certificates(&args, cursor),
        )
        .await
        .map_err(|e| match e {
            crate::connector::ConnectorError::Unsupported { .. } => {
                IssueError::NotSupported { what, message: args.redact(&e.to_string()) }
            }
            _ => IssueError::CaCall { what, message: args.redact(&e.to_string()) },
        })?;
        // What a page says is shown to whoever imports (an order id can be a URL carrying the
        // CA's API key); the cursor only goes back to the connector, and is left as it is.
        let redactor = args.redactor_for(connector.declared_sensitive());
        for item in &mut page.items {
            if let Some(id) = &mut item.ca_order_id {
                *id = redactor.redact(id);
            }
            item.status = redactor.redact(&item.status);
        }
        for why in &mut page.unusable {
            *why = redactor.redact(why);
        }
        Ok(page)
    }

    /// The renewal context of an order that renews a certificate (for resubmission).
    pub(crate) fn renewal_context(&self, order: &crate::inventory::Order) -> Result<Option<Renewal>, IssueError> {
        let Some(pred) = order.predecessor_id else { return Ok(None) };
        match self.inventory.find(&pred.to_string())? {
            Some(cert) => Ok(Some(self.renewal_of(&cert)?)),
            None => Ok(None),
        }
    }

    /// The dynamic parameters of a renewal: what the request that produced the certificate
    /// gave (recorded with its order; sensitive values were recorded as `***` and are never
    /// reused), for names the profile still takes as non-sensitive dynamic parameters,
    /// overridden by `given`. So the scheduler, `certhost renew` and the API renew a
    /// certificate as it was requested without being told again. Only at the certificate's
    /// own profile: another profile's parameters are its own.
    fn renewal_params(
        &self,
        cert: &CertificateRecord,
        profile_name: &str,
        profile: &ProfileDef,
        given: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, IssueError> {
        let mut params = BTreeMap::new();
        if cert.profile.as_deref() == Some(profile_name)
            && let Some(order) = self.inventory.issuing_order(cert.id)?
            && let Some(recorded) = order.params.as_object()
        {
            for (name, value) in recorded {
                let reusable = profile.params.get(name).is_some_and(|d| d.dynamic && !d.sensitive);
                if let Some(v) = value.as_str().filter(|v| reusable && *v != "***") {
                    params.insert(name.clone(), v.to_owned());
                }
            }
        }
        params.extend(given.iter().map(|(k, v)| (k.clone(), v.clone())));
        Ok(params)
    }

    fn renewal_of(&self, cert: &CertificateRecord) -> Result<Renewal, IssueError> {
        let issuing = self.inventory.issuing_order(cert.id)?;
        Ok(Renewal {
            prior_pem: cert.pem.clone(),
            prior_ca_order_id: issuing.and_then(|o| o.ca_order_id),
            prior_account: cert.account.clone(),
        })
    }

    fn certificate(&self, id: i64) -> Result<CertificateRecord, IssueError> {
        Ok(self
            .inventory
            .find(&id.to_string())?
            .ok_or_else(|| InventoryError::NotFound(format!("certificate {id}")))?)
    }

    /// The CSR a renewal of `cert` sends again: the uploaded one it was issued from, when the
    /// host never held its key. A reissue (a new key by definition) and a certificate the host
    /// made the key for, or imported without an order, have none.
    /// Refused when that key was revoked for keyCompromise on this certificate's lineage.
    fn uploaded_csr(&self, cert: &CertificateRecord, kind: RenewKind) -> Result<Option<String>, IssueError> {
        if kind != RenewKind::Renew || cert.key_id.is_some() {
            return Ok(None);
        }
        let Some(order) = self.inventory.issuing_order(cert.id)?.filter(|o| o.key_id.is_none()) else {
            return Ok(None);
        };
        let compromised = match crate::csr::stored_csr_public_key(&order.csr_pem) {
            Ok(key) => self.inventory.public_key_compromised(&key)?.is_some(),
            Err(_) => false,
        };
        if compromised || self.inventory.lineage_key_compromised(cert.id)? {
            return Err(IssueError::Certificate {
                id: cert.id,
                reason:
                    "its key, from an uploaded CSR, was revoked for keyCompromise; issue its replacement from a new CSR"
                        .into(),
            });
        }
        Ok(Some(order.csr_pem))
    }

    /// The key of a renewal: the stored one when the profile keeps keys, certifies its type,
    /// and the key was never revoked for compromise; else a new one.
    fn renewal_key(
        &self,
        cert: &CertificateRecord,
        profile: &ProfileDef,
        kind: RenewKind,
    ) -> Result<PrivateKey, IssueError> {
        if let (RenewKind::Renew, Some(key_id)) = (kind, cert.key_id)
            && !profile.renewal.regenerate_key
            && !self.inventory.key_compromised(key_id)?
        {
            let kept = self.inventory.private_key(key_id)?;
            if profile.key.accepts(kept.algorithm()) {
                return Ok(kept);
            }
        }
        Ok(PrivateKey::generate(profile.key.key_type).map_err(crate::csr::CsrError::from)?)
    }

    /// The profile a certificate or order names, or a stand-in naming only `account` when the
    /// profile is gone (its static parameters are then not available).
    fn profile_or_default(&self, profile: Option<&str>, account: &str) -> Result<(String, ProfileDef), IssueError> {
        if let Some(name) = profile
            && let Some((def, _)) = self.inventory.profile(name)?
        {
            return Ok((name.to_owned(), def));
        }
        Ok((String::new(), ProfileDef { accounts: vec![account.to_owned()], ..ProfileDef::default() }))
    }
}

#[cfg(test)]
mod tests {
    use super::Revoking;

    /// A refused claim builds no `Revoking` whose drop would take the lock it is refused under
    /// (the first version deadlocked the second revocation of a certificate, and every later one).
    #[test]
    fn a_certificate_is_revoked_by_one_call_at_a_time() {
        let first = Revoking::claim(-7).expect("free");
        assert!(Revoking::claim(-7).is_none(), "taken");
        assert!(Revoking::claim(-8).is_some(), "another certificate");
        drop(first);
        assert!(Revoking::claim(-7).is_some(), "free again");
    }
}
