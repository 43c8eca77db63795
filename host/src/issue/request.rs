//! What a request may ask of its profile, checked before any order is written: dynamic
//! parameters against their rules, an uploaded CSR's names against what was asked, and an
//! order held meanwhile against the profile as it is now.

use std::collections::BTreeMap;

use crate::csr::{San, Subject, parse_csr};
use crate::inventory::Order;
use crate::param::ParamError;
use crate::profile::{PolicyError, ProfileDef};

use super::{IssueError, IssueRequest};

/// A request's dynamic parameters, checked: name → (value, sensitive).
pub(crate) type DynamicParams = BTreeMap<String, (String, bool)>;

/// A request's dynamic parameters as recorded with its order: sensitive values as `***`.
pub(crate) fn recorded_params(dynamic: &BTreeMap<String, (String, bool)>) -> serde_json::Value {
    serde_json::Value::Object(
        dynamic
            .iter()
            .map(|(k, (v, sensitive))| {
                (
                    k.clone(),
                    serde_json::Value::String(if *sensitive { crate::idempotency::MASK.into() } else { v.clone() }),
                )
            })
            .collect(),
    )
}

/// Refuses a request whose CN, SANs or subject overrides, given beside an uploaded CSR, are
/// not the CSR's. The CSR is what the CA signs, so such a value would be silently dropped and
/// the caller handed a certificate for other names than the ones asked for. DNS names compare
/// without regard to case; SANs and O/OU lists as sets, in any order.
pub(crate) fn check_matches_csr(req: &IssueRequest, csr: &crate::csr::ParsedCsr) -> Result<(), IssueError> {
    let mismatch = |field, given: String, in_csr: String| Err(IssueError::CsrMismatch { field, given, in_csr });
    let shown = |value: Option<&String>| value.map_or_else(|| "none".to_owned(), Clone::clone);
    let IssueRequest { common_name, sans, subject, .. } = req;
    if let Some(cn) = common_name
        && Some(cn) != csr.common_name.as_ref()
    {
        return mismatch("common name", cn.clone(), shown(csr.common_name.as_ref()));
    }
    if !sans.is_empty() {
        let normalised = |names: &[San]| -> std::collections::BTreeSet<San> {
            names
                .iter()
                .map(|san| match san {
                    San::Dns(name) => San::Dns(name.to_ascii_lowercase()),
                    other => other.clone(),
                })
                .collect()
        };
        if normalised(sans) != normalised(&csr.sans) {
            let list = |names: &[San]| names.iter().map(San::to_string).collect::<Vec<_>>().join(", ");
            let in_csr = if csr.sans.is_empty() { "none".to_owned() } else { list(&csr.sans) };
            return mismatch("subjectAltName list", list(sans), in_csr);
        }
    }
    // Destructured without `..`: a new subject field cannot be forgotten here.
    let Subject { common_name: _, organization, organizational_unit, locality, state, country, email } = subject;
    let fields = &csr.subject_fields;
    let lists: [(&'static str, &Vec<String>, &Vec<String>); 2] =
        [("O", organization, &fields.organization), ("OU", organizational_unit, &fields.organizational_unit)];
    for (field, given, in_csr) in lists {
        let set = |v: &Vec<String>| v.iter().cloned().collect::<std::collections::BTreeSet<_>>();
        if !given.is_empty() && set(given) != set(in_csr) {
            let in_csr = if in_csr.is_empty() { "none".to_owned() } else { in_csr.join(", ") };
            return mismatch(field, given.join(", "), in_csr);
        }
    }
    let single: [(&'static str, &Option<String>, &Option<String>); 4] = [
        ("L", locality, &fields.locality),
        ("ST", state, &fields.state),
        ("C", country, &fields.country),
        ("emailAddress", email, &fields.email),
    ];
    for (field, given, in_csr) in single {
        if let Some(value) = given
            && Some(value) != in_csr.as_ref()
        {
            return mismatch(field, value.clone(), shown(in_csr.as_ref()));
        }
    }
    Ok(())
}

/// Refuses `order` (held for approval, or interrupted) when `profile`, changed since the order
/// was made, no longer allows its CSR's names, subject or key: the CA would sign, and the host
/// would then refuse the certificate it is not allowed to store, a certificate issued (logged,
/// perhaps billed) that no one holds (operator review of stop 36).
pub(super) fn still_allowed(order: &Order, profile_name: &str, profile: &ProfileDef) -> Result<(), IssueError> {
    let refused = |e: PolicyError| match e {
        PolicyError::Request { rule, .. } => {
            IssueError::NoLongerAllowed { order_id: order.id, profile: profile_name.to_owned(), rule }
        }
        other => IssueError::Policy(other),
    };
    let parsed = parse_csr(order.csr_pem.as_bytes())?;
    profile.check_csr_names(profile_name, parsed.common_name.as_deref(), &parsed.sans).map_err(refused)?;
    profile.check_csr_subject(profile_name, &parsed.subject_fields).map_err(refused)?;
    profile.key.check_accepts(profile_name, "the order's", parsed.key).map_err(refused)?;
    Ok(())
}

/// The request's non-sensitive dynamic parameters, recorded with `order`, for a later call
/// made for it (a poll, an order update, a revocation): only those `profile` still defines as
/// dynamic, so a value recorded before a parameter became static (or was removed) never
/// overrides what the profile says now (review of stop 31).
pub(crate) fn recorded_dynamic(order: Option<&Order>, profile: &ProfileDef) -> BTreeMap<String, (String, bool)> {
    let Some(params) = order.and_then(|o| o.params.as_object()) else { return BTreeMap::new() };
    params
        .iter()
        .filter(|(k, _)| profile.params.get(*k).is_some_and(|d| d.dynamic))
        .filter_map(|(k, v)| {
            v.as_str().filter(|s| *s != crate::idempotency::MASK).map(|s| (k.clone(), (s.to_owned(), false)))
        })
        .collect()
}

/// The most a request's dynamic parameter may hold, in bytes: room for a PEM chain or an
/// RSA key, not for a body a client sent by mistake, which was stored with the order and
/// echoed in its errors and the log (walkthrough of stop 46: 900 KB accepted).
pub(crate) const MAX_DYNAMIC_VALUE_BYTES: usize = 16 * 1024;

/// Refuses a value a request gives over [`MAX_DYNAMIC_VALUE_BYTES`]. Only what is given now:
/// a value recorded by an earlier order (a renewal reuses it) was accepted then, and a renewal
/// refused for it would fail for good (review of stop 46's diff).
pub(crate) fn check_given_sizes(given: &BTreeMap<String, String>) -> Result<(), ParamError> {
    match given.iter().find(|(_, v)| v.len() > MAX_DYNAMIC_VALUE_BYTES) {
        Some((name, v)) => Err(ParamError::NotAllowed {
            name: name.clone(),
            shown: String::new(),
            rule: format!(
                "its value is {} bytes, more than the {MAX_DYNAMIC_VALUE_BYTES} a request's parameter may hold",
                v.len()
            ),
        }),
        None => Ok(()),
    }
}

/// Why an empty value of a required dynamic parameter is refused.
const EMPTY_HINT: &str = " (it was given empty or blank, which is not a value)";

/// Checks a request's dynamic parameters against the profile: unknown and fixed names are
/// refused, required ones must be present, values must satisfy the rules.
/// Returns name → (value, sensitive).
pub(crate) fn check_dynamic(
    profile_name: &str,
    profile: &ProfileDef,
    given: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, (String, bool)>, ParamError> {
    let owner = format!("profile {profile_name}");
    for name in given.keys() {
        match profile.params.get(name) {
            Some(def) if def.dynamic => {}
            Some(_) => return Err(ParamError::Fixed { name: name.clone(), owner }),
            None => return Err(ParamError::Unknown { name: name.clone(), profile: profile_name.to_owned() }),
        }
    }
    let mut out = BTreeMap::new();
    for (name, def) in profile.params.iter().filter(|(_, d)| d.dynamic) {
        // A sensitive value on a command line shows in the process list (API review of stop
        // 38: this hint said --param for them too).
        let hint = if def.sensitive {
            " (supply it with the request: --param-env NAME=VAR or --param-file NAME=PATH, or in \"params\" over the \
             API; --param would show it in the process list)"
        } else {
            " (supply it with the request: --param NAME=VALUE, or in \"params\" over the API)"
        };
        match given.get(name) {
            // Empty or blank is no value (author review of stop 38: `--param ticket=` issued;
            // the SDK's `optional_arg` and `plugin check` already took it for missing).
            Some(v) if def.required && v.trim().is_empty() => {
                return Err(ParamError::Missing { name: name.clone(), owner: owner.clone(), hint: EMPTY_HINT });
            }
            Some(v) => {
                def.check_value(name, v)?;
                // An order records a sensitive value as `***`; a plain one that is `***` could
                // not be told from it, by an operator reading the order or by a repeat of its
                // `Idempotency-Key`, which would take it for hidden and replay a request that
                // differs in it (review of stop 36).
                if !def.sensitive && v == crate::idempotency::MASK {
                    return Err(ParamError::NotAllowed {
                        name: name.clone(),
                        shown: format!("value {v:?} "),
                        rule: "it is how certhost shows a hidden value, so no plain parameter may have it".into(),
                    });
                }
                out.insert(name.clone(), (v.clone(), def.sensitive));
            }
            None if def.required => {
                return Err(ParamError::Missing { name: name.clone(), owner: owner.clone(), hint });
            }
            None => {}
        }
    }
    Ok(out)
}
