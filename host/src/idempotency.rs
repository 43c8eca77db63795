//! `Idempotency-Key` for new issue requests: a program whose request timed out (the API's
//! 504 after two minutes, a dropped connection, its own deadline) cannot tell whether a
//! certificate was issued; sending the request again with the same key answers with the
//! first request's order instead of issuing a second certificate.
//!
//! The key is scoped to the caller (the token's actor), kept with the order with a digest of
//! the request, and held while the order is open or issued. A failed or rejected order issued
//! nothing, so its key runs the request again. The model is the IETF draft "The
//! Idempotency-Key HTTP Header Field" (draft-ietf-httpapi-idempotency-key-header): a key
//! reused for another request is refused (422), one whose request is still running is a
//! conflict (409), and a replayed answer says so (`Idempotent-Replayed: true`, as Stripe's).

use sha2::{Digest, Sha256};

use crate::csr::San;
use crate::inventory::{Inventory, Order, OrderState};
use crate::issue::{IssueError, IssueOutcome, IssueRequest};

/// The request header.
pub const HEADER: &str = "idempotency-key";

/// The response header set on an answer that replays an earlier request's order.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// The longest key taken (Stripe's limit; a UUID is 36).
pub const MAX_LEN: usize = 255;

/// Reads a header value: 1 to [`MAX_LEN`] visible ASCII characters, optionally as a quoted
/// structured-field string (`"…"`, the IETF draft's form), whose quotes are not part of it.
pub fn parse_key(value: &[u8]) -> Result<String, String> {
    let inner = match value {
        [b'"', inner @ .., b'"'] => inner,
        other => other,
    };
    if inner.is_empty() || inner.len() > MAX_LEN || !inner.iter().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "the Idempotency-Key header must be 1 to {MAX_LEN} visible ASCII characters without spaces (a UUID, say)"
        ));
    }
    // Checked just above: every byte is visible ASCII, so this is valid UTF-8.
    Ok(String::from_utf8_lossy(inner).into_owned())
}

/// Digest of what an issue request asks for. The values of `sensitive` parameters are left
/// out (a digest of a short password is a way to guess it), so two requests that differ only
/// in a sensitive value count as the same request. SANs are compared as a set, DNS names
/// without regard to case, as the CA sees them.
///
/// Computed from the request alone, with `sensitive` from the profile for a new order and,
/// for a repeated request, from the order's recorded parameters (sensitive values recorded
/// as `***`): a repeat is answered before the profile is read, so a profile changed since
/// (a parameter made required) does not hide the certificate the first request got.
pub(crate) fn request_digest(req: &IssueRequest, sensitive: &dyn Fn(&str) -> bool) -> String {
    let sans: std::collections::BTreeSet<String> = req
        .sans
        .iter()
        .map(|san| match san {
            San::Dns(name) => San::Dns(name.to_ascii_lowercase()).to_string(),
            other => other.to_string(),
        })
        .collect();
    let params: serde_json::Map<String, serde_json::Value> = req
        .params
        .iter()
        .map(|(name, value)| {
            let shown = if sensitive(name) { MASK } else { value.as_str() };
            (name.clone(), serde_json::Value::String(shown.to_owned()))
        })
        .collect();
    let csr_sha256 = req.csr.as_deref().map(|csr| hex::encode(Sha256::digest(csr)));
    let canonical = serde_json::json!({
        "profile": req.profile,
        "common_name": req.common_name,
        "sans": sans,
        "subject": req.subject,
        "csr_sha256": csr_sha256,
        "params": params,
    });
    hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
}

/// How an order records a sensitive value (`issue::recorded_params`); no plain dynamic
/// parameter may have it as its value (`issue::check_dynamic`), so a recorded `***` is always
/// a hidden one.
pub(crate) const MASK: &str = "***";

/// The digest of `req` as the request that made `order` was digested: with the parameters
/// the order recorded as `***` taken as sensitive.
pub(crate) fn digest_as_recorded(req: &IssueRequest, order: &Order) -> String {
    request_digest(req, &|name| order.params.get(name).and_then(|v| v.as_str()) == Some(MASK))
}

/// The answer for a request whose key `order` holds: the order's outcome when it has one the
/// first request would have been answered with, otherwise why it cannot be given yet.
/// A replayed certificate is as it is now: revoked or renewed meanwhile, it says so.
pub(crate) fn replay(
    inv: &Inventory,
    order: Order,
    stored_digest: &str,
    digest: &str,
) -> Result<IssueOutcome, IssueError> {
    let order_id = order.id;
    if stored_digest != digest {
        return Err(IssueError::IdempotencyMismatch { order_id });
    }
    let held = |why: &str, retry: bool| Err(IssueError::IdempotencyHeld { order_id, why: why.to_owned(), retry });
    match order.state {
        OrderState::Issued => {
            let found = match order.certificate_id {
                Some(id) => inv.find(&id.to_string())?,
                None => None,
            };
            match found {
                Some(certificate) => {
                    // A repeat must not hand out what the first answer refused (review of stop
                    // 48): an active certificate on a key revoked for keyCompromise.
                    let on_compromised_key = certificate.status == crate::inventory::CertStatus::Active
                        && inv.stored_key_compromised(certificate.id)?;
                    Ok(IssueOutcome::Issued {
                        order_id,
                        certificate: Box::new(certificate),
                        deployed: true,
                        on_compromised_key,
                    })
                }
                None => Err(IssueError::IdempotencyGone { order_id, certificate_id: order.certificate_id }),
            }
        }
        OrderState::AwaitingApproval => Ok(IssueOutcome::AwaitingApproval { order_id }),
        OrderState::Pending if order.submitted && order.ca_order_id.is_some() => Ok(IssueOutcome::Pending {
            order_id,
            next_poll_at: order.next_poll_at.unwrap_or_else(crate::clock::unix_now),
        }),
        OrderState::Pending => held("it is still in progress; repeat the request shortly to get its outcome", true),
        OrderState::NeedsAttention => held(
            "its CA call was cut off, so an operator checks at the CA, then resubmits or declines it (until then \
             there is no outcome to give)",
            false,
        ),
        // Not held (the look-up skips them); answered as a conflict should one ever be read.
        OrderState::Failed | OrderState::Rejected => held("it ended without a certificate", false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_visible_ascii_of_bounded_length_and_quotes_are_not_part_of_them() {
        assert_eq!(
            parse_key(b"4f6c1a2e-5b7d-4c1a-9e3f-0a1b2c3d4e5f").as_deref(),
            Ok("4f6c1a2e-5b7d-4c1a-9e3f-0a1b2c3d4e5f")
        );
        assert_eq!(parse_key(b"\"abc\"").as_deref(), Ok("abc"));
        assert_eq!(parse_key(&[b'k'; MAX_LEN]).map(|k| k.len()), Ok(MAX_LEN));
        for bad in [&b""[..], b"\"\"", b"a b", b"caf\xc3\xa9", b"tab\there", &[b'k'; MAX_LEN + 1]] {
            let err = parse_key(bad).unwrap_err();
            assert!(err.starts_with("the Idempotency-Key header must be"), "{err}");
        }
    }

    /// A plain value of `***` would be recorded as a hidden one is, and a repeat with another
    /// value would be taken for the same request: refused when asked.
    #[test]
    fn no_plain_parameter_may_have_the_value_that_stands_for_a_hidden_one() {
        let profile: crate::profile::ProfileDef = toml::from_str(
            "accounts = [\"a\"]\n[params]\npin = { dynamic = true, sensitive = true }\nteam = { dynamic = true }\n",
        )
        .expect("profile");
        let given = |pin: &str, team: &str| -> std::collections::BTreeMap<String, String> {
            [("pin".to_owned(), pin.to_owned()), ("team".to_owned(), team.to_owned())].into()
        };
        let err = crate::issue::check_dynamic("web", &profile, &given("1234", MASK)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "parameter team value \"***\" is not allowed: it is how certhost shows a hidden value, so no plain parameter may have it"
        );
        let ok = crate::issue::check_dynamic("web", &profile, &given(MASK, "ops")).expect("a sensitive one may");
        assert_eq!(ok["pin"], (MASK.to_owned(), true));
        // Nor a value past what a request's parameter may hold, sensitive or not, and unquoted.
        let big = "a".repeat(16 * 1024 + 1);
        for (pin, team) in [(big.as_str(), "ops"), ("1234", big.as_str())] {
            let err = crate::issue::check_given_sizes(&given(pin, team)).unwrap_err().to_string();
            assert!(
                err.ends_with(
                    "is not allowed: its value is 16385 bytes, more than the 16384 a request's parameter may hold"
                ),
                "{err}"
            );
            assert!(!err.contains("aaaa"), "{err}");
        }
        assert!(crate::issue::check_given_sizes(&given("1234", "ops")).is_ok());
    }

    #[test]
    fn the_digest_covers_what_is_asked_and_not_a_sensitive_value() {
        let req = |pin: &str, team: &str| IssueRequest {
            profile: "web".into(),
            common_name: Some("a.example".into()),
            params: [("pin".to_owned(), pin.to_owned()), ("team".to_owned(), team.to_owned())].into(),
            ..Default::default()
        };
        let pin = |name: &str| name == "pin";
        let base = request_digest(&req("1234", "ops"), &pin);
        assert_eq!(base, request_digest(&req("9999", "ops"), &pin), "a sensitive value is not hashed");
        assert_ne!(base, request_digest(&req("1234", "dev"), &pin), "a plain value is");
        let other_name = IssueRequest { common_name: Some("b.example".into()), ..req("1234", "ops") };
        assert_ne!(base, request_digest(&other_name, &pin));
        let with_csr =
            IssueRequest { csr: Some(b"-----BEGIN CERTIFICATE REQUEST-----".to_vec()), ..req("1234", "ops") };
        assert_ne!(base, request_digest(&with_csr, &pin));
        assert_eq!(base.len(), 64);
        // SANs as a set, DNS names in any case.
        let sans = |list: &[&str]| IssueRequest {
            sans: list.iter().map(|s| s.parse().expect("san")).collect(),
            ..req("1234", "ops")
        };
        assert_eq!(
            request_digest(&sans(&["DNS:a.example", "IP:192.0.2.1"]), &pin),
            request_digest(&sans(&["IP:192.0.2.1", "DNS:A.Example", "DNS:a.example"]), &pin)
        );
        assert_ne!(request_digest(&sans(&["DNS:a.example"]), &pin), request_digest(&sans(&["DNS:b.example"]), &pin));
    }

    #[test]
    fn a_repeat_is_digested_with_the_sensitivity_its_order_recorded() {
        let req = IssueRequest {
            profile: "web".into(),
            params: [("pin".to_owned(), "1234".to_owned()), ("team".to_owned(), "ops".to_owned())].into(),
            ..Default::default()
        };
        let new = request_digest(&req, &|name| name == "pin");
        let (_dir, mut inv) = crate::inventory::scratch();
        let order = inv
            .create_order(
                &crate::inventory::NewOrder {
                    kind: "issue".into(),
                    profile: "web".into(),
                    common_name: None,
                    sans: vec![],
                    csr_pem: String::new(),
                    params: serde_json::json!({ "pin": "***", "team": "ops" }),
                    key: None,
                    predecessor_id: None,
                    awaiting_approval: false,
                    idempotency: None,
                },
                "token:bot",
            )
            .expect("order");
        assert_eq!(digest_as_recorded(&req, &order), new);
    }
}
