//! `certhost plugin check`: a conformance run for any connector, modelled on cert-manager's
//! issuer conformance suite. It requests a certificate for a generated CSR with DNS and IP
//! SANs (or the names given), verifies the result exactly as the issuance pipeline does, and exercises every
//! optional operation the connector declares. Each check yields one PASS, FAIL or SKIP line.

use std::time::Duration;

use super::{
    Args, CertificateRequest, Connector, ConnectorError, Disposition, Operation, OrderAction, RenewRequest,
    RevocationReason, RevokeRequest,
};
use crate::csr::{CsrParams, San, Subject};
use crate::key::KeyType;
use crate::verify::{Expected, VerifiedCertificate, verify_issued};

/// How one check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It ran and did what the contract says.
    Pass,
    /// It ran and did not, or could not run because the connector misbehaved.
    Fail,
    /// A declared operation the run had nothing to try on: `poll` of a CA that issued at once,
    /// or `revoke` after a `certificate_request` that already failed. Named, so an author sees
    /// what went untested, but not a failure: a CI job for a CA that issues at once would
    /// otherwise never pass (author review of stop 40).
    Skip,
}

impl Verdict {
    /// The word `plugin check` prints.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Skip => "SKIP",
        }
    }
}

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckLine {
    /// What was checked (`describe`, `certificate_request`, `revoke`, ...).
    pub check: String,
    /// How it ended.
    pub verdict: Verdict,
    /// One sentence of detail (redacted).
    pub detail: String,
}

fn line(check: &str, passed: bool, detail: impl Into<String>) -> CheckLine {
    let verdict = if passed { Verdict::Pass } else { Verdict::Fail };
    CheckLine { check: check.to_owned(), verdict, detail: detail.into() }
}

/// Why a declared operation was not tried (see [`Verdict::Skip`]).
enum Untried {
    Ran(Result<String, String>),
    Skipped(String),
}

/// The names the check's CSR asks for. A CA that issues only for its own domains, or only DNS
/// names (Avi's ACME scripts order the CSR's DNS names alone), is checked with names it can
/// issue: `plugin check --cn/--san` (Avi script review of stop 39).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckNames {
    /// The CSR's CN and the `common_name` the connector is given.
    pub common_name: String,
    /// The CSR's subjectAltNames.
    pub sans: Vec<San>,
}

impl Default for CheckNames {
    /// A CN, two DNS names and an IP (from the documentation range): every kind a TLS server
    /// certificate commonly carries.
    fn default() -> Self {
        CheckNames {
            common_name: "check.certhost.test".into(),
            sans: vec![
                San::Dns("check.certhost.test".into()),
                San::Dns("www.check.certhost.test".into()),
                San::Ip(std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 10))),
            ],
        }
    }
}

/// The request the check sends: a P-256 key and `names`.
fn check_request(names: &CheckNames) -> Result<(CsrParams, CertificateRequest), String> {
    let params = CsrParams {
        subject: Subject {
            common_name: Some(names.common_name.clone()).filter(|cn| !cn.is_empty()),
            ..Subject::default()
        },
        sans: names.sans.clone(),
        key_type: KeyType::EcP256,
        hash: None,
    };
    let (_, csr) = params.generate().map_err(|e| e.to_string())?;
    let request = CertificateRequest {
        csr_pem: csr.pem,
        common_name: names.common_name.clone(),
        request_id: format!("plugin-check-{}", crate::clock::unix_now()),
    };
    Ok((params, request))
}

/// What `settle` saw of `poll`, so the `poll` line reports what happened rather than passing
/// a poll that failed or never ran.
#[derive(Debug, Default)]
struct Polls {
    /// Polls that answered.
    answered: u32,
    /// The (redacted) error of the poll that failed.
    failed: Option<String>,
}

/// Why `settle` ended without a certificate, and the certificate the CA issued when it was
/// the check that refused it (DER of its first PEM block): the CA holds it all the same.
type Unsettled = (String, Option<Vec<u8>>);

/// Follows a disposition through `poll` (when pending) to a verified certificate, counting
/// the polls in `polls`.
async fn settle(
    connector: &dyn Connector,
    mut d: Disposition,
    params: &CsrParams,
    csr_pem: &str,
    args: &Args,
    polls: &mut Polls,
) -> Result<(VerifiedCertificate, Option<String>), Unsettled> {
    let csr = crate::csr::parse_csr(csr_pem.as_bytes()).map_err(|e| (e.to_string(), None))?;
    for _ in 0..20 {
        match d {
            Disposition::Issued { certificate, chain, ca_order_id } => {
                let expected = Expected {
                    public_key_raw: &csr.public_key_raw,
                    common_name: params.subject.common_name.as_deref(),
                    sans: &params.sans,
                    now: crate::clock::unix_now(),
                };
                let refused = |why: String| -> Unsettled {
                    (why, crate::cert::pem_certificates(&certificate).ok().and_then(|ders| ders.into_iter().next()))
                };
                // Redacted: what a CA copied into a certificate (a CN, an issuer) is quoted by
                // verification's errors and the success line, and may be a secret of the call.
                let verified =
                    verify_issued(&expected, &certificate, &chain).map_err(|e| refused(args.redact(&e.to_string())))?;
                // The pipeline refuses a certificate carrying a secret of the call; so does
                // the check, before an author ships a connector whose every order would fail.
                let names: Vec<String> = params.sans.iter().map(San::to_string).collect();
                let asked = [csr.subject.as_str(), params.subject.common_name.as_deref().unwrap_or_default()]
                    .into_iter()
                    .chain(names.iter().map(String::as_str));
                crate::verify::holds_no_secret(args.sensitive_values(), asked, &verified)
                    .map_err(|e| refused(e.to_string()))?;
                return Ok((verified, ca_order_id));
            }
            Disposition::Rejected { reason } => return Err((format!("the CA rejected the request: {reason}"), None)),
            Disposition::Pending { ca_order_id, retry_after_s } => {
                tokio::time::sleep(Duration::from_secs(u64::from(retry_after_s.clamp(1, 5)))).await;
                match super::held(connector, args, connector.poll(&ca_order_id, args).await) {
                    Ok(next) => {
                        polls.answered += 1;
                        d = next;
                    }
                    Err(e) => {
                        let why = args.redact(&e.to_string());
                        polls.failed = Some(why.clone());
                        // The order id as `issue` names it (author review of stop 40), unless it
                        // holds a secret (the pipeline would not keep it).
                        let id = args.redact(&ca_order_id);
                        return Err((format!("pending as CA order {id}, and poll failed: {why}"), None));
                    }
                }
            }
        }
    }
    Err(("still pending after 20 polls".into(), None))
}

/// Runs every check against `connector` with `args`.
pub async fn run(connector: &dyn Connector, args: &Args, names: &CheckNames) -> Vec<CheckLine> {
    let mut out = Vec::new();
    let description = match connector.describe().await {
        Ok(d) => {
            // An empty value is not given: `--param x="$(cat missing.pem)"` passes one.
            let not_given =
                |p: &&super::ParameterSpec| p.required && args.get(&p.name).is_none_or(|v| v.trim().is_empty());
            // A secret goes by file or variable, never on the command line (the process list).
            let how = |p: &super::ParameterSpec| {
                if p.sensitive {
                    format!("{} (--sensitive-param-file {0}=PATH or --sensitive-param-env {0}=VAR)", p.name)
                } else {
                    format!("{} (--param {0}=VALUE)", p.name)
                }
            };
            let missing: Vec<String> = d.parameters.iter().filter(not_given).map(how).collect();
            if missing.is_empty() {
                out.push(line("describe", true, describe_line(&d)));
            } else {
                out.push(line(
                    "describe",
                    false,
                    format!("required parameter(s) not given or empty: {}", missing.join(", ")),
                ));
            }
            d
        }
        Err(e) => {
            out.push(line("describe", false, args.redact(&e.to_string())));
            return out;
        }
    };
    let (params, request) = match check_request(names) {
        Ok(r) => r,
        Err(e) => {
            out.push(line("certificate_request", false, e));
            return out;
        }
    };
    let mut polls = Polls::default();
    // A certificate the CA issued and the check refused: revoked below when it can be.
    let mut refused: Option<Vec<u8>> = None;
    let issued = match super::held(connector, args, connector.certificate_request(&request, args).await) {
        Ok(d) => match settle(connector, d, &params, &request.csr_pem, args, &mut polls).await {
            Ok((v, order)) => {
                out.push(line(
                    "certificate_request",
                    true,
                    args.redact(&format!("issued serial {} by {}", v.info.serial, v.info.issuer)),
                ));
                let ignored = match v.ignored_chain_entries.as_slice() {
                    [] => String::new(),
                    entries => format!(
                        "; chain entr{} {} held no certificate and {} left out (the host issues all the same, \
                         with a warning: a connector should return certificates only)",
                        if entries.len() == 1 { "y" } else { "ies" },
                        entries.iter().map(usize::to_string).collect::<Vec<_>>().join(", "),
                        if entries.len() == 1 { "was" } else { "were" }
                    ),
                };
                out.push(line(
                    "verification",
                    v.ignored_chain_entries.is_empty(),
                    format!(
                        "key matches the CSR, {} name(s) covered, chain of {} links, valid until {}{ignored}",
                        params.sans.len() + 1,
                        v.chain.len(),
                        crate::view::rfc3339(v.info.not_after)
                    ),
                ));
                Some((v, order))
            }
            Err((e, der)) => {
                out.push(line("certificate_request", false, e));
                refused = der;
                None
            }
        },
        Err(e) => {
            out.push(line("certificate_request", false, args.redact(&e.to_string())));
            None
        }
    };
    let declared = |op: Operation| description.operations.contains(&op);
    for op in Operation::ALL {
        if !declared(op) {
            continue;
        }
        let failed_request = "not exercised: certificate_request failed (above)";
        let result = match op {
            Operation::Poll => match &issued {
                Some((_, Some(id))) => Untried::Ran(
                    super::held(connector, args, connector.poll(id, args).await)
                        .map(|d| format!("poll of {id} answered {}", kind(&d)))
                        .map_err(|e| e.to_string()),
                ),
                // A poll that did not run is not a pass.
                _ => match (&polls, &issued) {
                    (Polls { failed: Some(why), .. }, _) => {
                        Untried::Ran(Err(format!("failed while settling the request: {why}")))
                    }
                    (Polls { answered: n @ 1.., .. }, _) => {
                        Untried::Ran(Ok(format!("answered {n} poll(s) while settling the request")))
                    }
                    (_, Some(_)) => {
                        Untried::Skipped("not exercised: the CA issued at once, leaving no order to poll".into())
                    }
                    (_, None) => Untried::Skipped(failed_request.into()),
                },
            },
            Operation::TestConnection => {
                Untried::Ran(connector.test_connection(args).await.map(|_| "ok".into()).map_err(|e| e.to_string()))
            }
            Operation::ListCertificates => {
                Untried::Ran(connector.list_certificates(args, None).await.map_err(|e| e.to_string()).and_then(|p| {
                    match p.unusable.first() {
                        // An import would count these as failed: the author should hear of it here.
                        Some(why) => {
                            Err(format!("{} unusable item(s) on the first page, e.g. {why}", p.unusable.len()))
                        }
                        None => Ok(format!("first page has {} item(s)", p.items.len())),
                    }
                }))
            }
            Operation::Renew => match (&issued, check_request(names)) {
                (Some((v, order)), Ok((p2, r2))) => {
                    let req = RenewRequest {
                        prior_certificate_pem: crate::cert::to_pem(&v.der),
                        prior_ca_order_id: order.clone(),
                        request: r2.clone(),
                    };
                    Untried::Ran(match super::held(connector, args, connector.renew(&req, args).await) {
                        Ok(d) => settle(connector, d, &p2, &r2.csr_pem, args, &mut Polls::default())
                            .await
                            .map(|(nv, _)| format!("renewed as serial {}", nv.info.serial))
                            .map_err(|(e, _)| e),
                        Err(e) => Err(e.to_string()),
                    })
                }
                (Some(_), Err(e)) => Untried::Ran(Err(e)),
                (None, _) => Untried::Skipped(failed_request.into()),
            },
            Operation::Revoke => match &issued {
                Some((v, _)) => Untried::Ran(
                    revoke(
                        connector,
                        args,
                        &v.der,
                        &v.info.serial,
                        RevocationReason::Superseded,
                        "certhost plugin check",
                    )
                    .await
                    .map(|()| format!("revoked serial {}", v.info.serial))
                    .map_err(|e| e.to_string()),
                ),
                // The CA issued a certificate the check refused (a secret in it, a wrong key):
                // it is valid at the CA all the same, so it is revoked rather than left
                // behind (diff review of stop 43).
                None => match refused.as_deref().map(|der| (der, crate::cert::parse(der))) {
                    Some((der, Ok(cert))) => {
                        let serial = hex::encode(cert.raw_serial());
                        let comment = "certhost plugin check: the certificate was refused";
                        Untried::Ran(
                            revoke(connector, args, der, &serial, RevocationReason::CessationOfOperation, comment)
                                .await
                                .map(|()| format!("revoked the refused certificate, serial {serial}"))
                                .map_err(|e| format!("revoking the refused certificate, serial {serial}: {e}")),
                        )
                    }
                    _ => Untried::Skipped(failed_request.into()),
                },
            },
            Operation::UpdateOrder => match &issued {
                Some((_, Some(id))) => Untried::Ran(
                    match super::held(connector, args, connector.update_order(id, OrderAction::Approve, args).await) {
                        Ok(d) => Ok(format!("approve answered {}", kind(&d))),
                        Err(
                            e @ (ConnectorError::Unsupported { .. }
                            | ConnectorError::Internal { .. }
                            | ConnectorError::Interrupted { .. }
                            | ConnectorError::TimedOut { .. }
                            | ConnectorError::MemoryExceeded { .. }),
                        ) => Err(e.to_string()),
                        Err(e) => Ok(format!("the CA answered: {e}")),
                    },
                ),
                Some((_, None)) => {
                    Untried::Skipped("not exercised: the CA issued at once, leaving no order to update".into())
                }
                None => Untried::Skipped(failed_request.into()),
            },
        };
        out.push(match result {
            Untried::Ran(Ok(detail)) => line(op.as_str(), true, args.redact(&detail)),
            Untried::Ran(Err(detail)) => line(op.as_str(), false, args.redact(&detail)),
            Untried::Skipped(detail) => {
                CheckLine { check: op.as_str().to_owned(), verdict: Verdict::Skip, detail: args.redact(&detail) }
            }
        });
    }
    // Undeclared operations must answer "unsupported", not crash or hang.
    let probe = connector.test_connection(args).await;
    if !declared(Operation::TestConnection) {
        let ok = matches!(probe, Err(ConnectorError::Unsupported { .. }));
        out.push(line(
            "undeclared operations",
            ok,
            if ok {
                "answer unsupported".to_owned()
            } else {
                format!(
                    "test_connection is not declared but answered {:?}",
                    probe.map_err(|e| args.redact(&e.to_string()))
                )
            },
        ));
    }
    out
}

/// Revokes a certificate the check made, so that a run leaves nothing valid behind at the CA.
async fn revoke(
    connector: &dyn Connector,
    args: &Args,
    der: &[u8],
    serial: &str,
    reason: RevocationReason,
    comment: &str,
) -> Result<(), ConnectorError> {
    let req = RevokeRequest {
        certificate_pem: crate::cert::to_pem(der),
        serial: serial.to_owned(),
        reason,
        comment: comment.to_owned(),
    };
    connector.revoke(&req, args).await
}

fn kind(d: &Disposition) -> &'static str {
    match d {
        Disposition::Issued { .. } => "issued",
        Disposition::Pending { .. } => "pending",
        Disposition::Rejected { .. } => "rejected",
    }
}

/// What a connector declares, in one line: its parameters by name (marked required or
/// sensitive) and its optional operations. The count alone ("declares 4 parameter(s),
/// operations: ") told an author nothing they could check (black-box review of stop 36).
fn describe_line(d: &super::Description) -> String {
    let params: Vec<String> = d
        .parameters
        .iter()
        .map(|p| {
            let marks: Vec<&str> = [(p.required, "required"), (p.sensitive, "sensitive")]
                .iter()
                .filter(|(on, _)| *on)
                .map(|(_, m)| *m)
                .collect();
            if marks.is_empty() { p.name.clone() } else { format!("{} ({})", p.name, marks.join(", ")) }
        })
        .collect();
    let params =
        if params.is_empty() { "no parameters".to_owned() } else { format!("parameters {}", params.join(", ")) };
    let ops: Vec<&str> = d.operations.iter().map(|o| o.as_str()).collect();
    let ops =
        if ops.is_empty() { "no optional operations".to_owned() } else { format!("operations {}", ops.join(", ")) };
    format!("{} {} declares {params}; {ops}", d.name, d.version)
}
