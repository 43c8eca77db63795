//! Recording a CA's answer: an issued certificate verified and stored (with its renewal
//! schedule and deployment), a pending order scheduled for polling, a rejection closed.

use crate::clock::unix_now;
use crate::connector::{Args, Disposition};
use crate::csr::{San, parse_csr, stored_csr_public_key};
use crate::inventory::{InventoryError, Order};
use crate::profile::ProfileDef;
use crate::verify::{Expected, VerificationError, verify_issued};

use super::{IssueError, IssueOutcome, OUTCOME_LOG_TARGET, POLL_MAX_S, POLL_MIN_S, Pipeline, renewal_due};

impl Pipeline<'_> {
    /// Records a CA's answer to `order`. `profile` is the order's profile when the caller has
    /// it at hand; otherwise it is loaded by name (and a deleted profile means no renewal
    /// schedule and no deployment). `csr_key` is the raw public key of the order's CSR when
    /// the caller holds it (the key it generated); otherwise the stored CSR is read for it.
    pub(crate) async fn apply(
        &mut self,
        order: &Order,
        disposition: Disposition,
        args: &Args,
        profile: Option<&ProfileDef>,
        csr_key: Option<&[u8]>,
    ) -> Result<IssueOutcome, IssueError> {
        match disposition {
            Disposition::Issued { certificate, chain, ca_order_id } => {
                let public_key_raw = match csr_key {
                    Some(key) => std::borrow::Cow::Borrowed(key),
                    None => std::borrow::Cow::Owned(stored_csr_public_key(&order.csr_pem)?),
                };
                let sans: Vec<San> = order.sans.iter().filter_map(|s| San::from_stored(s)).collect();
                let expected = Expected {
                    public_key_raw: &public_key_raw,
                    common_name: order.common_name.as_deref(),
                    sans: &sans,
                    now: unix_now(),
                };
                let profile = match (profile, order.profile.as_deref()) {
                    (Some(known), _) => Some(std::borrow::Cow::Borrowed(known)),
                    (None, Some(name)) => self.inventory.profile(name)?.map(|(p, _)| std::borrow::Cow::Owned(p)),
                    (None, None) => None,
                };
                // A renewal answered with the very certificate it renews (a CA that deduplicates
                // a request with the same key) would be "issued" and due again at once, over
                // and over (review of stop 31).
                let renewed_sha256 = match order.predecessor_id {
                    Some(p) => self.inventory.find(&p.to_string())?.map(|c| (p, c.info.sha256)),
                    None => None,
                };
                // Invariant 1, and the profile's SAN and CN rules over every name the CA put in.
                let verified = verify_issued(&expected, &certificate, &chain).and_then(|verified| {
                    if let Some((p, sha256)) = &renewed_sha256
                        && *sha256 == verified.info.sha256
                    {
                        return Err(VerificationError::NotRenewed(*p));
                    }
                    beyond_the_request(order, profile.as_deref(), &sans, args, &verified)?;
                    Ok(verified)
                });
                match verified {
                    Ok(verified) => {
                        if !verified.ignored_chain_entries.is_empty() {
                            tracing::warn!(
                                order = order.id,
                                "the connector's chain entries {:?} held no certificate and were left out of the stored chain",
                                verified.ignored_chain_entries
                            );
                        }
                        let due = profile
                            .as_ref()
                            .and_then(|p| renewal_due(p, verified.info.not_before, verified.info.not_after));
                        let renew_after = due.map(|d| d.at);
                        let (id, actor) = (order.id, self.actor.to_owned());
                        let targets = profile.as_ref().map(|p| p.deploy.as_slice()).unwrap_or_default();
                        let owed: Vec<String> = targets.iter().map(crate::deploy::DeployTarget::describe).collect();
                        // As long as the deployment may run: each target's two hooks, and a margin.
                        let grace = targets.iter().map(|t| 2 * t.timeout().as_secs() as i64).sum::<i64>() + 300;
                        // Shared with the change, and kept here should storing it fail.
                        let verified = std::sync::Arc::new(verified);
                        let stored_one = std::sync::Arc::clone(&verified);
                        // Stored, closed, audited and scheduled in one change: a crash leaves
                        // either a pending order or a certificate that will renew.
                        let stored = self
                            .inventory
                            .write(move |inv| {
                                let cert = inv.record_issued(id, &stored_one, ca_order_id.as_deref(), &actor)?;
                                // Not deployed on a key revoked for keyCompromise meanwhile.
                                let compromised = inv.schedule_issued(&cert, renew_after, &actor)?;
                                if !compromised {
                                    inv.owe_deployments(cert.id, &owed, grace)?;
                                }
                                Ok((cert, compromised))
                            })
                            .await;
                        let (certificate, on_compromised_key) = match stored {
                            Ok(stored) => stored,
                            Err(InventoryError::NothingNew { certificate, status }) => {
                                let error = VerificationError::AlreadyStored { certificate, status };
                                self.fail(id, &format!("the returned certificate was refused: {error}")).await?;
                                return Err(IssueError::Verification { order_id: id, error });
                            }
                            Err(e) => {
                                // The CA issued: the certificate is not dropped without a word
                                // (a resubmit would pay for a second one). Its DER goes to the
                                // log, where an operator can take it to `certhost import`.
                                let (serial, sha256) = (&verified.info.serial, &verified.info.sha256);
                                let der =
                                    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &verified.der);
                                let stored_failed = format!(
                                    "the CA issued certificate serial {serial} (SHA-256 {sha256}), but storing it failed \
                                     ({e}); its DER is in the log: import it (certhost import)"
                                );
                                let mut message =
                                    format!("{stored_failed}, then decline order {id} if it is still held");
                                tracing::error!(order = id, certificate_der_base64 = %der, "{message}");
                                if let Err(held) = self.hold(id, &message).await {
                                    // The answer says so too: it said "held" while every
                                    // command found the order pending and in flight (day-two
                                    // walkthrough of stop 49, a full disk).
                                    message = format!(
                                        "{stored_failed}; the order could not be marked as held either ({held}): it \
                                         shows as pending until its CA call's lease runs out (a minute or two), then as \
                                         needs_attention, when it can be declined"
                                    );
                                    // What happens next, said: the order stays pending, and
                                    // once its lease runs out it counts as interrupted (an
                                    // automatic renewal is then sent again), so "decline" may
                                    // no longer apply (operator review of stop 39).
                                    tracing::error!(
                                        order = id,
                                        "order could not be held for an operator either ({held}): once its lease runs \
                                         out it counts as interrupted, and an automatic renewal is sent to the CA again, \
                                         which may issue a second certificate; keep one and revoke the other"
                                    );
                                }
                                return Err(IssueError::NeedsAttention { order_id: id, message });
                            }
                        };
                        if let Some(d) = due.filter(|d| d.fell_back) {
                            tracing::warn!(
                                certificate = certificate.id,
                                common_name = certificate.info.common_name.as_deref().unwrap_or_default(),
                                profile = order.profile.as_deref().unwrap_or_default(),
                                renew_after = %crate::view::rfc3339(d.at),
                                "the profile's renewal.before_* is longer than this certificate allows (it would be \
                                 due at once); it renews at two thirds of its lifetime instead"
                            );
                        }
                        // Deployment follows the stored certificate; a failed deployment is
                        // recorded, never a reason to lose the certificate. Nor to answer with
                        // an error: the certificate is stored, and a client that retried would
                        // get a second one.
                        let deployed = match profile.filter(|p| !p.deploy.is_empty() && !on_compromised_key) {
                            Some(profile) => {
                                self.deploy_issued(&profile, &certificate).await;
                                true
                            }
                            None => false,
                        };
                        crate::metrics::issuance("issued");
                        Ok(IssueOutcome::Issued {
                            order_id: order.id,
                            certificate: Box::new(certificate),
                            deployed,
                            on_compromised_key,
                        })
                    }
                    Err(error) => {
                        // The error may quote what the connector put in the certificate (a CN,
                        // names): redacted and cut like any text a connector returns, wherever
                        // it goes next.
                        let error = error.redacted(|text| crate::connector::cut_to_size(args.redact(text)));
                        self.fail(order.id, &format!("the returned certificate was refused: {error}")).await?;
                        Err(IssueError::Verification { order_id: order.id, error })
                    }
                }
            }
            Disposition::Pending { ca_order_id, retry_after_s } => {
                let next = unix_now() + i64::from(retry_after_s.clamp(POLL_MIN_S, POLL_MAX_S));
                let (id, actor, handle) = (order.id, self.actor.to_owned(), ca_order_id.clone());
                self.inventory.write(move |inv| inv.record_pending(id, &handle, next, &actor)).await?;
                // Counted when the CA first says "pending", not on every poll that repeats it.
                if order.ca_order_id.is_none() {
                    crate::metrics::issuance("pending");
                }
                Ok(IssueOutcome::Pending { order_id: order.id, next_poll_at: next })
            }
            Disposition::Rejected { reason } => {
                let reason = args.redact(&reason);
                tracing::warn!(
                    target: OUTCOME_LOG_TARGET,
                    order = order.id,
                    "order rejected by the CA: {}",
                    crate::connector::redact::one_line(&reason)
                );
                let (id, actor, recorded) = (order.id, self.actor.to_owned(), reason.clone());
                self.inventory.write(move |inv| inv.record_rejected(id, &recorded, &actor)).await?;
                crate::metrics::issuance("rejected");
                Err(IssueError::Rejected { order_id: order.id, reason })
            }
        }
    }
}

/// What a verified certificate may not carry beyond what its order asked for: names or a CN
/// the order's profile would refuse, more names added than its `max`, fixed subject fields
/// with other values, and — unless what the request itself supplied holds one — a sensitive
/// value of the call in its subject or names.
fn beyond_the_request(
    order: &Order,
    profile: Option<&ProfileDef>,
    sans: &[San],
    args: &Args,
    verified: &crate::verify::VerifiedCertificate,
) -> Result<(), VerificationError> {
    if let (Some(p), Some(name)) = (profile, order.profile.as_deref()) {
        let not_allowed = |rule| VerificationError::NotAllowed { profile: name.to_owned(), rule };
        p.check_issued_sans(&verified.info.sans, &verified.info.other_sans).map_err(not_allowed)?;
        p.check_issued_count(&verified.info.sans, sans).map_err(not_allowed)?;
        if let Some(cn) = verified.info.common_name.as_deref() {
            p.check_issued_cn(cn).map_err(not_allowed)?;
        }
        // A subject emailAddress — an identity S/MIME clients read, which the profile's
        // [sans] rules would refuse as a name — only as the request carried it (red-team
        // walkthrough of stop 48: a CA's `root@evil.example` was stored). Other attributes a
        // CA adds (streetAddress, postalCode, an EV certificate's serialNumber and
        // jurisdiction) are the CA's to add. The CSR is read again only then.
        if !verified.info.subject_emails.is_empty() {
            let asked = parse_csr(order.csr_pem.as_bytes()).ok().and_then(|c| c.subject_fields.email);
            if let Some(email) = verified
                .info
                .subject_emails
                .iter()
                .find(|email| !asked.as_deref().is_some_and(|a| a.eq_ignore_ascii_case(email)))
            {
                return Err(not_allowed(format!(
                    "its subject has emailAddress {email:?}, which the request did not carry"
                )));
            }
        }
        if p.fixes_subject() {
            let subject =
                crate::x509::issued_subject_values(&verified.der).map_err(VerificationError::UncheckableSubject)?;
            p.check_issued_subject(&subject).map_err(not_allowed)?;
        }
    }
    // What the request supplied is read only for a call with secrets (most have none): the
    // CSR is parsed again for it.
    if args.sensitive_values().next().is_some() {
        let csr_subject = parse_csr(order.csr_pem.as_bytes()).map(|c| c.subject).unwrap_or_default();
        let names: Vec<String> = sans.iter().map(San::to_string).collect();
        let asked = [csr_subject.as_str(), order.common_name.as_deref().unwrap_or_default()]
            .into_iter()
            .chain(names.iter().map(String::as_str));
        crate::verify::holds_no_secret(args.sensitive_values(), asked, verified)?;
    }
    Ok(())
}
