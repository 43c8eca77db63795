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

use crate::inventory::{Inventory, Order, OrderState};
use crate::issue::{DynamicParams, IssueError, IssueOutcome, IssueRequest, recorded_params};

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

/// Digest of what an issue request asks for, as recorded: sensitive parameter values are
/// redacted before hashing (a digest of a short password is a way to guess it), so two
/// requests that differ only in a sensitive value count as the same request.
pub(crate) fn request_digest(req: &IssueRequest, dynamic: &DynamicParams) -> String {
    let sans: Vec<String> = req.sans.iter().map(ToString::to_string).collect();
    let csr_sha256 = req.csr.as_deref().map(|csr| hex::encode(Sha256::digest(csr)));
    let canonical = serde_json::json!({
        "profile": req.profile,
        "common_name": req.common_name,
        "sans": sans,
        "subject": req.subject,
        "csr_sha256": csr_sha256,
        "params": recorded_params(dynamic),
    });
    hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
}

/// The answer for a request whose key `order` holds: the order's outcome when it has one the
/// first request would have been answered with, otherwise why it cannot be given yet.
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
    let held = |why: String| Err(IssueError::IdempotencyHeld { order_id, why });
    match order.state {
        OrderState::Issued => {
            let Some(certificate_id) = order.certificate_id else {
                return held("it issued a certificate that has since been deleted".into());
            };
            match inv.find(&certificate_id.to_string())? {
                Some(certificate) => {
                    Ok(IssueOutcome::Issued { order_id, certificate: Box::new(certificate), deployed: true })
                }
                None => held(format!("it issued certificate {certificate_id}, which has since been deleted")),
            }
        }
        OrderState::AwaitingApproval => Ok(IssueOutcome::AwaitingApproval { order_id }),
        OrderState::Pending if order.submitted && order.ca_order_id.is_some() => Ok(IssueOutcome::Pending {
            order_id,
            next_poll_at: order.next_poll_at.unwrap_or_else(crate::issue::unix_now),
        }),
        OrderState::Pending => {
            held("it is still in progress; repeat the request once it is done to get its outcome".into())
        }
        OrderState::NeedsAttention => held(format!(
            "its CA call was cut off, so it needs attention: an operator checks at the CA, then resubmits or \
             declines it (certhost orders show {order_id})"
        )),
        // Not held (the look-up skips them); answered as a conflict should one ever be read.
        OrderState::Failed | OrderState::Rejected => held(format!("it is {}", order.state.as_str())),
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

    #[test]
    fn the_digest_covers_what_is_asked_and_not_a_sensitive_value() {
        let req = IssueRequest { profile: "web".into(), common_name: Some("a.example".into()), ..Default::default() };
        let params = |secret: &str, plain: &str| -> DynamicParams {
            [("pin".to_owned(), (secret.to_owned(), true)), ("team".to_owned(), (plain.to_owned(), false))].into()
        };
        let base = request_digest(&req, &params("1234", "ops"));
        assert_eq!(base, request_digest(&req, &params("9999", "ops")), "a sensitive value is not hashed");
        assert_ne!(base, request_digest(&req, &params("1234", "dev")), "a plain value is");
        let other_name = IssueRequest { common_name: Some("b.example".into()), ..req.clone() };
        assert_ne!(base, request_digest(&other_name, &params("1234", "ops")));
        let with_csr = IssueRequest { csr: Some(b"-----BEGIN CERTIFICATE REQUEST-----".to_vec()), ..req.clone() };
        assert_ne!(base, request_digest(&with_csr, &params("1234", "ops")));
        assert_eq!(base.len(), 64);
    }
}
