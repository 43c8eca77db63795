//! `/v1/certificates` and `/v1/renew`: issue, list, get, download (PEM, chain, full chain,
//! key), renew, reissue, revoke, delete.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::{Caller, ISSUE, KEY_DOWNLOAD, OPERATE, READ};
use super::{ApiError, AppState, Problem};
use crate::connector::RevocationReason;
use crate::csr::San;
use crate::inventory::{CertStatus, CertificateRecord, ListFilter, Role};
use crate::issue::{IssueError, IssueOutcome, IssueRequest, Pipeline};
use crate::lifecycle::{RenewKind, RenewOptions};
use crate::view::CertView;

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/certificates", get(list).post(issue))
        .route("/v1/certificates/{id}", get(show).delete(delete))
        .route("/v1/certificates/{id}/pem", get(pem))
        .route("/v1/certificates/{id}/chain", get(chain))
        .route("/v1/certificates/{id}/fullchain", get(fullchain))
        .route("/v1/certificates/{id}/der", get(der))
        .route("/v1/certificates/{id}/key", get(key))
        .route("/v1/certificates/{id}/pkcs12", post(pkcs12))
        .route("/v1/certificates/{id}/renew", post(renew))
        .route("/v1/certificates/{id}/reissue", post(reissue))
        .route("/v1/certificates/{id}/revoke", post(revoke))
        .route("/v1/renew", post(renew_lookup))
}

/// Query of the list endpoint.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only active certificates expiring within this many days.
    #[param(maximum = 36500)]
    expiring_within_days: Option<u32>,
    /// `active`, `superseded`, `revoked` or `expired`.
    #[param(value_type = Option<crate::inventory::CertStatus>)]
    status: Option<String>,
    /// Substring of the CN or a SAN.
    search: Option<String>,
    /// Substring of the issuer DN.
    issuer: Option<String>,
    /// Serial number, hex (colons, case and leading zeros do not matter).
    serial: Option<String>,
    /// Only certificates of this profile (its exact name).
    profile: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(minimum = 1)]
    cursor: Option<i64>,
    /// Page size, 1-1000 (default 100); anything else is refused.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// A page of certificates.
#[derive(Debug, Serialize, ToSchema)]
pub struct CertificatePage<'a> {
    /// The certificates, by id.
    items: Vec<CertView<'a>>,
    /// Pass as `cursor` for the next page; null on the last one.
    next_cursor: Option<i64>,
}

pub(super) fn now() -> i64 {
    crate::clock::unix_now()
}

#[utoipa::path(get, operation_id = "list_certificates", path = "/v1/certificates", tag = "certificates", params(ListQuery),
    responses((status = 200, body = CertificatePage), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    caller.require(READ, "read certificates")?;
    let Query(q) = query?;
    let limit = super::page_limit(q.limit)?;
    let status = q.status.as_deref().map(str::parse::<CertStatus>).transpose()?;
    // As documented: a larger value was quietly taken as 36500 (black-box review of stop 35).
    if q.expiring_within_days.is_some_and(|d| d > 36_500) {
        return Err(ApiError::BadRequest("expiring_within_days must be at most 36500".into()));
    }
    let filter = ListFilter {
        expiring_within_days: q.expiring_within_days,
        status,
        search: q.search,
        issuer: q.issuer,
        after_id: super::page_cursor(q.cursor)?,
        serial: q.serial,
        profile: q.profile,
        limit: limit + 1,
    };
    let inv = state.inventory.get().await?;
    let mut records = inv.list(&filter)?;
    let next = super::next_page(&mut records, limit, |r| r.id);
    let now = now();
    let items: Vec<CertView<'_>> = records.iter().map(|r| CertView::new(r, now, false)).collect();
    Ok(Json(CertificatePage { items, next_cursor: next }).into_response())
}

async fn find(state: &AppState, id: &str) -> Result<CertificateRecord, ApiError> {
    let inv = state.inventory.get().await?;
    inv.find(id)?.ok_or_else(|| ApiError::NotFound(format!("certificate {id}")))
}

#[utoipa::path(get, operation_id = "show_certificate", path = "/v1/certificates/{id}", tag = "certificates",
    params(("id" = String, Path, description = "Inventory id, or SHA-1 / SHA-256 thumbprint (hex)")),
    responses((status = 200, body = CertView), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn show(
    State(state): State<AppState>,
    caller: Caller,
    _: super::NoQuery,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(READ, "read certificates")?;
    let inv = state.inventory.get().await?;
    let r = inv.find(&id)?.ok_or_else(|| ApiError::NotFound(format!("certificate {id}")))?;
    Ok(Json(CertView::new(&r, now(), true).with_history(&inv)?).into_response())
}

async fn download(
    state: AppState,
    caller: Caller,
    id: String,
    part: fn(&CertificateRecord) -> String,
) -> Result<Response, ApiError> {
    caller.require(READ, "read certificates")?;
    let r = find(&state, &id).await?;
    Ok(([(header::CONTENT_TYPE, "application/pem-certificate-chain")], part(&r)).into_response())
}

#[utoipa::path(get, path = "/v1/certificates/{id}/pem", tag = "certificates",
    params(("id" = String, Path, description = "Id or thumbprint")),
    responses((status = 200, description = "The leaf certificate", content_type = "application/pem-certificate-chain", body = String),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn pem(
    State(state): State<AppState>,
    caller: Caller,
    _: super::NoQuery,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    download(state, caller, id, |r| r.pem.clone()).await
}

#[utoipa::path(get, path = "/v1/certificates/{id}/chain", tag = "certificates",
    params(("id" = String, Path, description = "Id or thumbprint")),
    responses((status = 200, description = "The chain without the leaf", content_type = "application/pem-certificate-chain", body = String),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn chain(
    State(state): State<AppState>,
    caller: Caller,
    _: super::NoQuery,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    download(state, caller, id, |r| r.chain_pem.clone()).await
}

#[utoipa::path(get, path = "/v1/certificates/{id}/fullchain", tag = "certificates",
    params(("id" = String, Path, description = "Id or thumbprint")),
    responses((status = 200, description = "Leaf followed by its chain", content_type = "application/pem-certificate-chain", body = String),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn fullchain(
    State(state): State<AppState>,
    caller: Caller,
    _: super::NoQuery,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    download(state, caller, id, |r| format!("{}{}", r.pem, r.chain_pem)).await
}

#[utoipa::path(get, path = "/v1/certificates/{id}/der", tag = "certificates",
    params(("id" = String, Path, description = "Id or thumbprint")),
    responses((status = 200, description = "The leaf certificate, DER (what Windows, Java keytool and many appliances import)", content_type = "application/pkix-cert", body = String),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn der(
    State(state): State<AppState>,
    caller: Caller,
    _: super::NoQuery,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(READ, "read certificates")?;
    let r = find(&state, &id).await?;
    let der = crate::cert::pem_certificates(&r.pem)
        .ok()
        .and_then(|ders| ders.into_iter().next())
        .ok_or_else(|| ApiError::Internal(format!("certificate {} is stored without a readable PEM", r.id)))?;
    Ok(([(header::CONTENT_TYPE, "application/pkix-cert")], der).into_response())
}

/// Whether `caller` may take certificate `r`'s private key out of the inventory: admins
/// always; operators, and a requester for the certificates it requested itself (a key the host
/// made for it is of no use to it otherwise), where the certificate's profile allows
/// (`key_download = true`).
fn may_download_key(inv: &crate::inventory::Inventory, caller: &Caller, r: &CertificateRecord) -> Result<(), ApiError> {
    if caller.role == Role::Requester && !requested_by(inv, caller, r.id)? {
        return Err(ApiError::Forbidden {
            role: "requester",
            action: "download the keys of certificates requested by someone else",
        });
    }
    let Some(key_id) = r.key_id else {
        // Told apart from a certificate that does not exist (red team of stop 50).
        return Err(ApiError::Coded {
            error: Box::new(ApiError::NotFound(format!(
                "private key of certificate {} (certhost holds none: it was issued on an uploaded CSR or imported \
                 without its key)",
                r.id
            ))),
            code: super::ProblemCode::KeyNotStored,
        });
    };
    if caller.role == Role::Admin {
        return Ok(());
    }
    // Every profile the key was certified under must allow it, not only this certificate's:
    // a key renewed into a profile that allows downloads, keeping the key, was handed out
    // though the profile it was made under forbids it (red team of stop 50). A certificate
    // without a profile (an import) allows none; the key's other imports say nothing.
    let own = r.profile.clone().ok_or_else(|| {
        ApiError::NotAllowed(format!(
            "role {} may not download this key (the certificate has no profile, so no key_download = true)",
            caller.role.as_str()
        ))
    })?;
    let mut profiles = inv.profiles_on_key(key_id)?;
    profiles.retain(|p| *p != own);
    profiles.insert(0, own.clone());
    for profile in &profiles {
        let why = match inv.profile(profile)? {
            Some((def, _)) if def.key_download => continue,
            Some(_) if *profile == own => "its profile does not set key_download = true".to_owned(),
            Some(_) => format!("it was also certified under profile {profile}, which does not set key_download = true"),
            None => format!("it was certified under profile {profile}, which no longer exists"),
        };
        return Err(ApiError::NotAllowed(format!("role {} may not download this key ({why})", caller.role.as_str())));
    }
    if inv.key_compromised(key_id)? {
        return Err(ApiError::Coded {
            error: Box::new(ApiError::Conflict(format!(
                "the key of certificate {} was revoked for keyCompromise: it is not handed out (an admin may still download it)",
                r.id
            ))),
            code: super::ProblemCode::CompromisedKey,
        });
    }
    Ok(())
}

/// The private key: to whom [`may_download_key`] allows. Every download is audited.
#[utoipa::path(get, path = "/v1/certificates/{id}/key", tag = "certificates",
    params(("id" = String, Path, description = "Id or thumbprint")),
    responses((status = 200, description = "PKCS#8 private key, PEM", content_type = "application/x-pem-file", body = String),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn key(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<super::NoQuery, ApiError>,
    method: axum::http::Method,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(KEY_DOWNLOAD, "download private keys")?;
    query?;
    let actor = caller.actor();
    let mut inv = state.inventory.get().await?;
    let r = inv.find(&id)?.ok_or_else(|| ApiError::NotFound(format!("certificate {id}")))?;
    may_download_key(&inv, &caller, &r)?;
    // axum answers HEAD with the GET handler and drops the body: no key leaves, so none is
    // opened and no download is recorded; the status is the one a GET would get.
    if method == axum::http::Method::HEAD {
        inv.check_key_stored(r.id)?;
        return Ok(([(header::CONTENT_TYPE, "application/x-pem-file")], "").into_response());
    }
    let key = inv.download_key(r.id, &actor)?;
    Ok(([(header::CONTENT_TYPE, "application/x-pem-file")], key.to_pem().to_string()).into_response())
}

/// Body of a PKCS#12 download.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Pkcs12Body {
    /// The password protecting the file (4 to 1024 characters up to U+FFFF, no control
    /// characters); never stored or logged.
    password: String,
}

/// The private key with its certificate and chain as one password-protected PKCS#12 file
/// (`.pfx`/`.p12`), the form Windows, Java and many appliances import: to whom the key
/// download is allowed, audited as one (`format: pkcs12`). A POST, so the password travels
/// in the body, never in a URL a proxy logs.
#[utoipa::path(post, path = "/v1/certificates/{id}/pkcs12", tag = "certificates", request_body = Pkcs12Body,
    params(("id" = String, Path, description = "Id or thumbprint")),
    responses((status = 200, description = "PKCS#12 file: the key, the certificate and its chain", content_type = "application/pkcs12", body = String),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn pkcs12(
    State(state): State<AppState>,
    caller: Caller,
    _: super::NoQuery,
    Path(id): Path<String>,
    body: Result<super::json::Body<Pkcs12Body>, ApiError>,
) -> Result<Response, ApiError> {
    caller.require(KEY_DOWNLOAD, "download private keys")?;
    let super::json::Body(body) = body?;
    let length = body.password.chars().count();
    let problem = if !(4..=1024).contains(&length) {
        Some(format!("a PKCS#12 password must be 4 to 1024 characters (this one has {length})"))
    } else if body.password.chars().any(char::is_control) {
        Some("a PKCS#12 password may not hold control characters (NUL, a line break, a tab)".to_owned())
    } else {
        crate::deploy::pkcs12_password_problem(&body.password).map(str::to_owned)
    };
    if let Some(why) = problem {
        return Err(ApiError::Coded {
            error: Box::new(ApiError::Unprocessable(format!("password: {why}"))),
            code: super::ProblemCode::InvalidParameter,
        });
    }
    let mut inv = state.inventory.get().await?;
    let r = inv.find(&id)?.ok_or_else(|| ApiError::NotFound(format!("certificate {id}")))?;
    may_download_key(&inv, &caller, &r)?;
    let file = inv.download_key_as(r.id, &caller.actor(), crate::inventory::KeyFormat::Pkcs12, |key| {
        crate::deploy::pkcs12(&r, &key, &body.password).map_err(|e| e.to_string())
    })?;
    Ok(([(header::CONTENT_TYPE, "application/pkcs12")], file).into_response())
}

/// Body of an issue request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueBody {
    /// Profile name.
    profile: String,
    /// Common name. With `csr` the CSR's names are issued: a `cn` or `sans` given as well must
    /// be the CSR's, or the request is refused (422).
    cn: Option<String>,
    /// SANs as `TYPE:value` (`DNS:www.example.com`, `IP:192.0.2.1`).
    #[serde(default)]
    sans: Vec<String>,
    /// Subject fields besides the CN, as the CLI's `--o`, `--ou`, `--l`, `--st`, `--c` and
    /// `--email` give them: each only where the profile lets a request give it (`[subject]
    /// overridable`), or as the value the profile fixes (API walkthrough of stop 48: a
    /// program could give them only inside a CSR).
    #[serde(default)]
    subject: SubjectBody,
    /// Dynamic parameters of the profile.
    #[serde(default)]
    params: BTreeMap<String, String>,
    /// An uploaded CSR (PEM) instead of a host-generated key.
    csr: Option<String>,
}

/// Result of an issue, renew or reissue.
#[derive(Debug, Serialize, ToSchema)]
pub struct IssueResponse<'a> {
    /// `issued`, `pending` or `awaiting_approval`.
    disposition: super::IssueDisposition,
    /// The order.
    order_id: i64,
    /// The certificate, when issued.
    #[serde(skip_serializing_if = "Option::is_none")]
    certificate: Option<CertView<'a>>,
    /// When pending: the next poll (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    next_poll_at: Option<String>,
}

/// The request's `Idempotency-Key`, checked ([`crate::idempotency`]). An extractor of its own
/// rather than a `HeaderMap`, which copies every header of every issuance (diff review of
/// stop 36). Taken as a `Result` so that the caller's role is checked first.
pub struct IdempotencyKey(Option<String>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, ApiError> {
        let mut values = parts.headers.get_all(crate::idempotency::HEADER).iter();
        let Some(value) = values.next() else { return Ok(Self(None)) };
        if values.next().is_some() {
            return Err(ApiError::BadRequest("the Idempotency-Key header is given more than once".into()));
        }
        crate::idempotency::parse_key(value.as_bytes()).map(|k| Self(Some(k))).map_err(ApiError::BadRequest)
    }
}

/// Turns a pipeline outcome into 201 (issued) or 202 (pending, awaiting approval). A
/// certificate its profile deployed comes with its deployments: a target that failed (exit 3
/// in the CLI) was invisible to an API client until it read the certificate again
/// (black-box review of stop 35). Read back only then: a pool checkout and two queries cost
/// 7% of an issuance's CPU when done for every one (`bench/ab.sh`, stop 35).
async fn outcome_response(state: &AppState, outcome: &IssueOutcome) -> Result<Response, ApiError> {
    match outcome {
        IssueOutcome::Issued { order_id, certificate, on_compromised_key: true, .. } => {
            Err(IssueError::IssuedOnCompromisedKey { order_id: *order_id, certificate_id: certificate.id }.into())
        }
        IssueOutcome::Issued { order_id, certificate, deployed, .. } => {
            let mut view = CertView::new(certificate, now(), true);
            if *deployed {
                view = view.with_history(&*state.inventory.get().await?)?;
            }
            let body = IssueResponse {
                disposition: super::IssueDisposition::Issued,
                order_id: *order_id,
                certificate: Some(view),
                next_poll_at: None,
            };
            Ok(super::located(StatusCode::CREATED, &format!("/v1/certificates/{}", certificate.id), Json(body)))
        }
        IssueOutcome::Pending { order_id, next_poll_at } => {
            let mut resp = super::located(
                StatusCode::ACCEPTED,
                &format!("/v1/orders/{order_id}"),
                Json(IssueResponse {
                    disposition: super::IssueDisposition::Pending,
                    order_id: *order_id,
                    certificate: None,
                    next_poll_at: Some(crate::view::rfc3339(*next_poll_at)),
                }),
            );
            // When the order is polled next, as a header a client's retry logic reads (RFC 9110
            // §10.2.3; API review of stop 40: only in the body).
            let seconds = (*next_poll_at - now()).max(1);
            resp.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(seconds));
            Ok(resp)
        }
        IssueOutcome::AwaitingApproval { order_id } => Ok(super::located(
            StatusCode::ACCEPTED,
            &format!("/v1/orders/{order_id}"),
            Json(IssueResponse {
                disposition: super::IssueDisposition::AwaitingApproval,
                order_id: *order_id,
                certificate: None,
                next_poll_at: None,
            }),
        )),
    }
}

/// The subject fields an issue request may give besides the CN.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubjectBody {
    /// Organizations (O).
    #[serde(default)]
    o: Vec<String>,
    /// Organizational units (OU).
    #[serde(default)]
    ou: Vec<String>,
    /// Locality (L).
    l: Option<String>,
    /// State or province (ST).
    st: Option<String>,
    /// Two-letter country code (C).
    c: Option<String>,
    /// emailAddress.
    email: Option<String>,
}

impl From<SubjectBody> for crate::csr::Subject {
    fn from(s: SubjectBody) -> Self {
        Self {
            common_name: None,
            organization: s.o,
            organizational_unit: s.ou,
            locality: s.l,
            state: s.st,
            country: s.c,
            email: s.email,
        }
    }
}

/// Issues a certificate. With an `Idempotency-Key`, a request sent again — after a 504, a
/// dropped connection — is answered with the first one's order instead of issuing again.
#[utoipa::path(post, path = "/v1/certificates", tag = "certificates", request_body = IssueBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "1-255 visible ASCII characters (a UUID per request, say; surrounding double quotes are not part of it). A request repeated with the same key by the same token is answered with the first request's order — 201 or 202, with `Idempotent-Replayed: true`, the certificate as it is now — instead of issuing again; 409 with `Location` of the order while it is still running (with `Retry-After`) or waits for an operator; 410 if its certificate was deleted; 422 if the key came with a different request. A key is held while its order is open and for 24 hours after it issued; a failed or rejected order frees it at once.")),
    responses((status = 201, description = "Issued", body = IssueResponse, headers(("Location" = String, description = "/v1/certificates/{id}"), ("Idempotent-Replayed" = String, description = "`true` when the answer is an earlier request's (same Idempotency-Key)"))),
        (status = 202, description = "Pending at the CA or awaiting approval", body = IssueResponse, headers(("Location" = String, description = "/v1/orders/{id}"), ("Retry-After" = String, description = "Pending: seconds until the order is polled next (`next_poll_at`)"), ("Idempotent-Replayed" = String, description = "`true` when the answer is an earlier request's (same Idempotency-Key)"))),
        (status = "4XX", body = Problem, content_type = "application/problem+json"), (status = 502, description = "The CA or its connector failed", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The server cannot serve the request now: its configuration stops it (a parameter's file or variable unreadable), the database is locked by another process, or a change could not be stored", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "The request took longer than 120 s. A CA call it started goes on and its order records the outcome: the problem names that order (`order_id`, and `Location`), and the request sent again with the same Idempotency-Key gets it", body = Problem, content_type = "application/problem+json")))]
async fn issue(
    State(state): State<AppState>,
    caller: Caller,
    key: Result<IdempotencyKey, ApiError>,
    body: Result<super::json::Body<IssueBody>, ApiError>,
) -> Result<Response, ApiError> {
    caller.require(ISSUE, "request certificates")?;
    let IdempotencyKey(idempotency_key) = key?;
    let super::json::Body(body) = body?;
    let sans = body
        .sans
        .iter()
        .map(|s| s.parse::<San>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    let request = IssueRequest {
        profile: body.profile,
        common_name: body.cn,
        sans,
        subject: body.subject.into(),
        params: body.params,
        csr: body.csr.map(String::into_bytes),
        idempotency_key,
    };
    let actor = caller.actor();
    let config = caller.config;
    let task_state = state.clone();
    let outcome = super::to_completion(async move {
        let state = task_state;
        let mut inv = state.inventory.get_for_call().await?;
        inv.pin_config(config);
        let mut pipeline =
            Pipeline { inventory: &mut inv, connectors: &*state.connectors, env: &*state.env, actor: &actor };
        Ok(pipeline.issue_or_replay(&request).await?)
    })
    .await?;
    let (outcome, replayed) = outcome;
    let mut response = outcome_response(&state, &outcome).await?;
    if replayed {
        response
            .headers_mut()
            .insert(crate::idempotency::REPLAYED_HEADER, axum::http::HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// Body of renew and reissue: optionally another profile or CA account (migration).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenewBody {
    /// Profile to renew under (default: the certificate's).
    profile: Option<String>,
    /// The one CA account to use (default: the profile's accounts in failover order). A
    /// requester may only name one of the profile's accounts; none can be named when the
    /// renewal waits for approval (another profile, one that requires approval).
    account: Option<String>,
    /// Dynamic parameters of the profile.
    #[serde(default)]
    params: BTreeMap<String, String>,
}

/// A requester may renew only certificates it requested itself (see [`requested_by`]).
async fn require_renewable_by(state: &AppState, caller: &Caller, id: i64) -> Result<(), ApiError> {
    if caller.role != Role::Requester {
        return Ok(());
    }
    let inv = state.inventory.get().await?;
    if requested_by(&inv, caller, id)? {
        Ok(())
    } else {
        Err(ApiError::Forbidden { role: "requester", action: "renew certificates requested by someone else" })
    }
}

/// Whether `caller` requested certificate `id` itself: the certificate, or one it succeeds
/// (renewed automatically or by an operator, its order names someone else).
fn requested_by(inv: &crate::inventory::Inventory, caller: &Caller, id: i64) -> Result<bool, ApiError> {
    let actor = caller.actor();
    let mut next = Some(id);
    // Bounded: a lineage is a chain of renewals, but stored data is not trusted to end.
    for _ in 0..1000 {
        let Some(cert) = next else { break };
        if inv.issuing_order(cert)?.is_some_and(|o| o.requested_by == actor) {
            return Ok(true);
        }
        next = inv.find(&cert.to_string())?.and_then(|c| c.predecessor_id);
    }
    Ok(false)
}

/// Renews certificate `id` (id or thumbprint) once the caller may. A caller's `metadata`
/// (`POST /v1/renew`) is audited against the certificate found, and only then: a lookup that
/// finds nothing, or a caller refused, leaves no event.
async fn renew_with(
    state: &AppState,
    caller: &Caller,
    id: &str,
    kind: RenewKind,
    body: RenewBody,
    metadata: &BTreeMap<String, serde_json::Value>,
) -> Result<Result<IssueOutcome, IssueError>, ApiError> {
    let cert_id = find(state, id).await?.id;
    require_renewable_by(state, caller, cert_id).await?;
    let actor = caller.actor();
    let opts = RenewOptions {
        kind,
        profile: body.profile,
        account: body.account,
        any_account: matches!(caller.role, Role::Admin | Role::Operator),
        params: body.params,
    };
    let mut inv = state.inventory.get_for_call().await?;
    if !metadata.is_empty() {
        inv.audit(&crate::inventory::NewAuditEvent {
            actor: &actor,
            action: "certificate.renew_request",
            object_type: "certificate",
            object_id: Some(cert_id.to_string()),
            outcome: "success",
            detail: serde_json::json!({ "metadata": metadata }),
        })?;
    }
    inv.pin_config(caller.config);
    let state = state.clone();
    super::to_completion(async move {
        let mut p = Pipeline { inventory: &mut inv, connectors: &*state.connectors, env: &*state.env, actor: &actor };
        Ok(p.renew(cert_id, &opts).await)
    })
    .await
}

#[utoipa::path(post, path = "/v1/certificates/{id}/renew", tag = "certificates",
    params(("id" = String, Path, description = "Id or thumbprint")), request_body(content = Option<RenewBody>),
    responses((status = 201, body = IssueResponse, headers(("Location" = String, description = "/v1/certificates/{id}"))), (status = 202, body = IssueResponse, headers(("Location" = String, description = "/v1/orders/{id}"))),
        (status = "4XX", body = Problem, content_type = "application/problem+json"), (status = 502, description = "The CA or its connector failed", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The server's configuration stops the request (a parameter's file or variable unreadable)", body = Problem, content_type = "application/problem+json")))]
async fn renew(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: super::json::MaybeJson,
) -> Result<Response, ApiError> {
    caller.require(ISSUE, "renew certificates")?;
    let body: RenewBody = super::json::optional(&body)?;
    let outcome = renew_with(&state, &caller, &id, RenewKind::Renew, body, &BTreeMap::new()).await?;
    outcome_response(&state, &outcome?).await
}

#[utoipa::path(post, path = "/v1/certificates/{id}/reissue", tag = "certificates",
    params(("id" = String, Path, description = "Id or thumbprint")), request_body(content = Option<RenewBody>),
    responses((status = 201, body = IssueResponse, headers(("Location" = String, description = "/v1/certificates/{id}"))), (status = 202, body = IssueResponse, headers(("Location" = String, description = "/v1/orders/{id}"))),
        (status = "4XX", body = Problem, content_type = "application/problem+json"), (status = 502, description = "The CA or its connector failed", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The server's configuration stops the request (a parameter's file or variable unreadable)", body = Problem, content_type = "application/problem+json")))]
async fn reissue(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: super::json::MaybeJson,
) -> Result<Response, ApiError> {
    caller.require(OPERATE, "reissue certificates")?;
    let body: RenewBody = super::json::optional(&body)?;
    let outcome = renew_with(&state, &caller, &id, RenewKind::Reissue, body, &BTreeMap::new()).await?;
    outcome_response(&state, &outcome?).await
}

/// Body of revoke.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeBody {
    /// RFC 5280 reason: unspecified, keyCompromise, cACompromise, affiliationChanged,
    /// superseded, cessationOfOperation, certificateHold, privilegeWithdrawn, aACompromise.
    reason: RevocationReason,
    /// Free text for the CA and the audit log.
    #[serde(default)]
    comment: String,
    /// Mark it revoked in the inventory only, without asking its CA (a connector that cannot
    /// revoke, an imported certificate, one revoked at the CA by other means): no longer
    /// renewed or deployed, its key blocked on keyCompromise, but still vouched for by the CA.
    #[serde(default)]
    local_only: bool,
}

#[utoipa::path(post, operation_id = "revoke_certificate", path = "/v1/certificates/{id}/revoke", tag = "certificates",
    params(("id" = String, Path, description = "Id or thumbprint")), request_body = RevokeBody,
    responses((status = 200, body = CertView), (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The CA or its connector failed", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The server's configuration stops the request (a parameter's file or variable unreadable)", body = Problem, content_type = "application/problem+json")))]
async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<super::json::Body<RevokeBody>, ApiError>,
) -> Result<Response, ApiError> {
    caller.require(OPERATE, "revoke certificates")?;
    let super::json::Body(body) = body?;
    let cert_id = find(&state, &id).await?.id;
    let actor = caller.actor();
    let task_state = state.clone();
    super::to_completion(async move {
        let state = task_state;
        let mut inv = state.inventory.get_for_call().await?;
        let mut p = Pipeline { inventory: &mut inv, connectors: &*state.connectors, env: &*state.env, actor: &actor };
        if body.local_only {
            return Ok(p.revoke_locally(cert_id, body.reason, &body.comment)?);
        }
        Ok(p.revoke(cert_id, body.reason, &body.comment).await?)
    })
    .await?;
    let r = find(&state, &cert_id.to_string()).await?;
    Ok(Json(CertView::new(&r, now(), false)).into_response())
}

#[utoipa::path(delete, operation_id = "delete_certificate", path = "/v1/certificates/{id}", tag = "certificates",
    params(("id" = String, Path, description = "Id or thumbprint")),
    responses((status = 204, description = "Removed from the inventory (the CA is not told; the audit stays)"),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn delete(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<Response, ApiError> {
    caller.require(OPERATE, "delete certificates")?;
    let mut inv = state.inventory.get().await?;
    let r = inv.find(&id)?.ok_or_else(|| ApiError::NotFound(format!("certificate {id}")))?;
    inv.delete_certificate(r.id, &caller.actor())?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// How `/v1/renew` finds the certificate.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Lookup {
    /// `id` or `thumbprint`.
    #[serde(rename = "type")]
    kind: LookupType,
    /// The id or the SHA-1/SHA-256 thumbprint.
    value: String,
}

/// Lookup kinds.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LookupType {
    /// Inventory id.
    Id,
    /// SHA-1 or SHA-256 thumbprint.
    Thumbprint,
}

/// Keyfactor CertEnroll-style renew.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenewLookupBody {
    /// Which certificate.
    lookup: Lookup,
    /// Renew under this profile instead (migration).
    profile: Option<String>,
    /// Renew at this CA account instead (migration to another CA). A requester may only name
    /// one of the profile's accounts.
    account: Option<String>,
    /// Free-form metadata, recorded in the audit log.
    #[serde(default)]
    metadata: BTreeMap<String, serde_json::Value>,
}

/// How a `/v1/renew` ended (the Keyfactor-style shape: a CA's failure is a 200 saying so).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RenewDisposition {
    /// The new certificate was issued and stored.
    Issued,
    /// The order waits at the CA or for an approval.
    Pending,
    /// The CA step failed; `message` says why.
    Failed,
}

/// Result of `/v1/renew`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RenewLookupResponse {
    /// SHA-256 thumbprint of the new certificate (null unless issued).
    thumbprint: Option<String>,
    /// The renewal order (null when none was created).
    order_id: Option<i64>,
    /// `issued`, `pending` (at the CA, or awaiting approval) or `failed`.
    disposition: RenewDisposition,
    /// What happened, in one sentence.
    message: String,
    /// Where the new certificate was deployed, as `files:PATH` (a `{cn}` path expanded).
    deployed_to: Vec<String>,
}

#[utoipa::path(post, path = "/v1/renew", tag = "certificates", request_body = RenewLookupBody,
    responses((status = 200, description = "Issued, pending or failed at the CA", body = RenewLookupResponse),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn renew_lookup(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<super::json::Body<RenewLookupBody>, ApiError>,
) -> Result<Response, ApiError> {
    caller.require(ISSUE, "renew certificates")?;
    let super::json::Body(body) = body?;
    let id = match body.lookup.kind {
        LookupType::Id => {
            body.lookup.value.parse::<i64>().map_err(|_| ApiError::BadRequest("lookup.value is not an id".into()))?;
            body.lookup.value.clone()
        }
        LookupType::Thumbprint => {
            let v = body.lookup.value.to_ascii_lowercase();
            if !(v.len() == 40 || v.len() == 64) || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ApiError::BadRequest("lookup.value is not a SHA-1 or SHA-256 thumbprint".into()));
            }
            v
        }
    };
    let renew_body = RenewBody { profile: body.profile, account: body.account, params: BTreeMap::new() };
    let outcome = renew_with(&state, &caller, &id, RenewKind::Renew, renew_body, &body.metadata).await?;
    let response = match outcome {
        Ok(IssueOutcome::Issued { order_id, certificate, on_compromised_key: true, .. }) => {
            return Err(IssueError::IssuedOnCompromisedKey { order_id, certificate_id: certificate.id }.into());
        }
        Ok(IssueOutcome::Issued { order_id, certificate, .. }) => {
            let certificate_id = certificate.id;
            let mut deployed_to: Vec<String> = (state.inventory.get().await?.deployed_targets(certificate_id)?)
                .iter()
                .map(|(target, message)| crate::deploy::deployed_where(target, message))
                .collect();
            deployed_to.sort();
            deployed_to.dedup();
            RenewLookupResponse {
                thumbprint: Some(certificate.info.sha256.clone()),
                order_id: Some(order_id),
                disposition: RenewDisposition::Issued,
                message: format!("certificate {certificate_id} issued; certificate {id} superseded"),
                deployed_to,
            }
        }
        Ok(IssueOutcome::Pending { order_id, .. }) => RenewLookupResponse {
            thumbprint: None,
            order_id: Some(order_id),
            disposition: RenewDisposition::Pending,
            message: format!("order {order_id} is pending; poll GET /v1/orders/{order_id}"),
            deployed_to: vec![],
        },
        Ok(IssueOutcome::AwaitingApproval { order_id }) => RenewLookupResponse {
            thumbprint: None,
            order_id: Some(order_id),
            disposition: RenewDisposition::Pending,
            message: format!("order {order_id} awaits approval by another person; see GET /v1/orders/{order_id}"),
            deployed_to: vec![],
        },
        Err(e) => {
            let order_id = match &e {
                IssueError::Failed { order_id, .. }
                | IssueError::Rejected { order_id, .. }
                | IssueError::Verification { order_id, .. }
                | IssueError::NoActiveAccount { order_id, .. } => Some(*order_id),
                _ => None,
            };
            match order_id {
                // The CA step failed: the Keyfactor shape reports it in the body.
                Some(order_id) => RenewLookupResponse {
                    thumbprint: None,
                    order_id: Some(order_id),
                    disposition: RenewDisposition::Failed,
                    message: e.to_string(),
                    deployed_to: vec![],
                },
                // Refused before any order (policy, parameters, state): a client error.
                None => return Err(e.into()),
            }
        }
    };
    Ok(Json(response).into_response())
}
