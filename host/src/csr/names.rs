//! Subject fields and subject alternative names, and the rules they must follow.
//!
//! Validation happens before anything is built or sent to a CA, and each failure names the
//! field, so a requester can fix the input instead of decoding a CA's refusal.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// RFC 5280 upper bounds (ub-*) on subject attribute lengths, in characters.
pub const MAX_CN: usize = 64;
const MAX_O: usize = 64;
const MAX_OU: usize = 64;
const MAX_L: usize = 128;
const MAX_ST: usize = 128;
const MAX_EMAIL: usize = 255;

/// The subject of a CSR: distinguished-name fields a requester may set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    /// Common name (CN).
    pub common_name: Option<String>,
    /// Organisations (O).
    pub organization: Vec<String>,
    /// Organisational units (OU); several are allowed.
    pub organizational_unit: Vec<String>,
    /// Locality (L).
    pub locality: Option<String>,
    /// State or province (ST).
    pub state: Option<String>,
    /// Two-letter country code (C).
    pub country: Option<String>,
    /// PKCS#9 emailAddress attribute.
    pub email: Option<String>,
}

/// A subject alternative name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "type", content = "value")]
pub enum San {
    /// dNSName
    #[serde(rename = "DNS")]
    Dns(String),
    /// iPAddress
    #[serde(rename = "IP")]
    Ip(IpAddr),
    /// rfc822Name
    #[serde(rename = "EMAIL")]
    Email(String),
    /// uniformResourceIdentifier
    #[serde(rename = "URI")]
    Uri(String),
}

impl fmt::Display for San {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            San::Dns(v) => write!(f, "DNS:{v}"),
            San::Ip(v) => write!(f, "IP:{v}"),
            San::Email(v) => write!(f, "EMAIL:{v}"),
            San::Uri(v) => write!(f, "URI:{v}"),
        }
    }
}

impl FromStr for San {
    type Err = NameError;

    /// Parses `DNS:x`, `IP:y`, `EMAIL:z` (or `email:`), `URI:u`, and validates the value.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, value) = s.split_once(':').ok_or_else(|| NameError::SanSyntax(s.to_owned()))?;
        let san = match kind.to_ascii_uppercase().as_str() {
            "DNS" => San::Dns(value.to_owned()),
            "IP" => San::Ip(value.parse().map_err(|_| NameError::InvalidIp(value.to_owned()))?),
            "EMAIL" | "RFC822" => San::Email(value.to_owned()),
            "URI" => San::Uri(value.to_owned()),
            _ => return Err(NameError::SanSyntax(s.to_owned())),
        };
        san.validate()?;
        Ok(san)
    }
}

impl San {
    /// Reads a `TYPE:value` the inventory stored, without re-validating the value: a
    /// certificate imported from elsewhere may carry names our request rules would refuse
    /// (`host_1.corp`), and showing it must not drop them.
    pub fn from_stored(s: &str) -> Option<Self> {
        let (kind, value) = s.split_once(':')?;
        Some(match kind.to_ascii_uppercase().as_str() {
            "DNS" => San::Dns(value.to_owned()),
            "IP" => San::Ip(value.parse().ok()?),
            "EMAIL" | "RFC822" => San::Email(value.to_owned()),
            "URI" => San::Uri(value.to_owned()),
            _ => return None,
        })
    }

    /// The name without its type, as a person or a file name uses it (`a.example.com`, `::1`).
    pub fn value(&self) -> String {
        match self {
            San::Dns(v) | San::Email(v) | San::Uri(v) => v.clone(),
            San::Ip(v) => v.to_string(),
        }
    }

    /// Checks the value against its type's syntax.
    pub fn validate(&self) -> Result<(), NameError> {
        match self {
            San::Dns(name) => validate_dns_name(name),
            San::Ip(_) => Ok(()),
            San::Email(addr) => validate_email("SAN email", addr),
            San::Uri(uri) => validate_uri(uri),
        }
    }
}

/// Why a subject field or SAN is not acceptable. Each message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// CN over RFC 5280's 64-character bound.
    #[error("CN is {len} characters long; at most {max} are allowed")]
    CnTooLong {
        /// Length of the given CN, in characters.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Another subject field over its bound.
    #[error("{field} is {len} characters long; at most {max} are allowed")]
    FieldTooLong {
        /// Field name (O, OU, L, ST, emailAddress).
        field: &'static str,
        /// Length given.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// An empty or whitespace-only field.
    #[error("{field} is empty")]
    Empty {
        /// Field name.
        field: &'static str,
    },
    /// A control character (newline, NUL, ...) inside a field.
    #[error("{field} contains a control character")]
    ControlCharacter {
        /// Field name.
        field: &'static str,
    },
    /// C is not two letters.
    #[error("C (country) must be exactly two letters, got {0:?}")]
    Country(String),
    /// A DNS name that breaks hostname syntax.
    #[error("DNS name {name:?} is invalid: {reason}")]
    DnsName {
        /// The name as given.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// An IP address that does not parse.
    #[error("IP address {0:?} is invalid")]
    InvalidIp(String),
    /// A malformed email address.
    #[error("{field} {value:?} is not a valid email address: {reason}")]
    Email {
        /// Field name (emailAddress or SAN email).
        field: &'static str,
        /// The value as given.
        value: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// A malformed URI.
    #[error("URI {0:?} is invalid: it needs a scheme (like https:) and no spaces")]
    Uri(String),
    /// A SAN argument without a known `TYPE:` prefix.
    #[error("SAN {0:?} is not of the form DNS:name, IP:address, EMAIL:address or URI:uri")]
    SanSyntax(String),
    /// Neither a CN nor any SAN: the certificate would name nothing.
    #[error("the request names nothing: give a CN or at least one SAN")]
    NoNames,
}

impl Subject {
    /// Checks every field against RFC 5280's bounds and certhost's rules.
    pub fn validate(&self) -> Result<(), NameError> {
        if let Some(cn) = &self.common_name {
            check_text("CN", cn, MAX_CN)?;
        }
        for o in &self.organization {
            check_text("O", o, MAX_O)?;
        }
        for ou in &self.organizational_unit {
            check_text("OU", ou, MAX_OU)?;
        }
        if let Some(l) = &self.locality {
            check_text("L", l, MAX_L)?;
        }
        if let Some(st) = &self.state {
            check_text("ST", st, MAX_ST)?;
        }
        if let Some(c) = &self.country
            && (c.chars().count() != 2 || !c.chars().all(|ch| ch.is_ascii_alphabetic()))
        {
            return Err(NameError::Country(c.clone()));
        }
        if let Some(email) = &self.email {
            check_text("emailAddress", email, MAX_EMAIL)?;
            validate_email("emailAddress", email)?;
        }
        Ok(())
    }
}

fn check_text(field: &'static str, value: &str, max: usize) -> Result<(), NameError> {
    if value.trim().is_empty() {
        return Err(NameError::Empty { field });
    }
    if value.chars().any(char::is_control) {
        return Err(NameError::ControlCharacter { field });
    }
    let len = value.chars().count();
    if len > max {
        return Err(if field == "CN" {
            NameError::CnTooLong { len, max }
        } else {
            NameError::FieldTooLong { field, len, max }
        });
    }
    Ok(())
}

/// Puts a CN that is a DNS name first among `sans`, unless a DNS SAN already names it (in any
/// case): a profile's `include_cn`, and `key-csr` — clients ignore the CN.
pub fn include_cn_in_sans(cn: &str, sans: &mut Vec<San>) {
    if validate_dns_name(cn).is_ok() && !sans.iter().any(|s| matches!(s, San::Dns(d) if d.eq_ignore_ascii_case(cn))) {
        sans.insert(0, San::Dns(cn.to_owned()));
    }
}

/// Validates a DNS name: LDH labels of 1–63 octets, at most 253 octets in all, and a
/// wildcard only as the whole left-most label of a name with at least two more labels.
pub fn validate_dns_name(name: &str) -> Result<(), NameError> {
    let err = |reason| Err(NameError::DnsName { name: name.to_owned(), reason });
    if name.is_empty() {
        return err("it is empty");
    }
    if name.len() > 253 {
        return err("it is longer than 253 characters");
    }
    if name.ends_with('.') {
        return err("it ends with a dot");
    }
    let labels: Vec<&str> = name.split('.').collect();
    for (i, label) in labels.iter().enumerate() {
        if label.is_empty() {
            return err("it has an empty label");
        }
        if label.contains('*') {
            if i != 0 || *label != "*" {
                return err("a wildcard may only be the whole left-most label");
            }
            if labels.len() < 3 {
                return err("a wildcard needs at least two labels after it");
            }
            continue;
        }
        if label.len() > 63 {
            return err("a label is longer than 63 characters");
        }
        if !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return err("only letters, digits, hyphens and dots are allowed");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return err("a label starts or ends with a hyphen");
        }
    }
    if labels.last().is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit())) {
        return err("the last label is all digits (use IP: for addresses)");
    }
    Ok(())
}

fn validate_email(field: &'static str, addr: &str) -> Result<(), NameError> {
    let err = |reason| Err(NameError::Email { field, value: addr.to_owned(), reason });
    if addr.len() > 254 {
        return err("it is longer than 254 characters");
    }
    let Some((local, domain)) = addr.rsplit_once('@') else {
        return err("it has no @");
    };
    if local.is_empty() || local.len() > 64 {
        return err("the part before @ must be 1 to 64 characters");
    }
    if !local.is_ascii() || local.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || b == b'@') {
        return err("the part before @ has spaces or characters outside ASCII");
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return err("the part before @ has a misplaced dot");
    }
    if domain.contains('*') || validate_dns_name(domain).is_err() {
        return err("the domain after @ is not a valid host name");
    }
    Ok(())
}

fn validate_uri(uri: &str) -> Result<(), NameError> {
    let Some((scheme, rest)) = uri.split_once(':') else {
        return Err(NameError::Uri(uri.to_owned()));
    };
    let scheme_ok = scheme.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    if !scheme_ok || rest.is_empty() || !uri.is_ascii() || uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(NameError::Uri(uri.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_rules() {
        for ok in ["example.com", "*.example.com", "a-b.c.example", "xn--bcher-kva.example"] {
            assert!(validate_dns_name(ok).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("", "empty"),
            ("foo..com", "empty label"),
            ("-a.com", "hyphen"),
            ("a_b.com", "only letters"),
            ("www.*.com", "wildcard"),
            ("f*.example.com", "wildcard"),
            ("*.com", "two labels"),
            ("example.com.", "dot"),
            ("1.2.3.4", "digits"),
        ] {
            let e = validate_dns_name(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
        assert!(validate_dns_name(&format!("{}.com", "a".repeat(64))).is_err());
    }

    #[test]
    fn subject_rules_name_the_field() {
        let mut s = Subject { common_name: Some("x".repeat(65)), ..Default::default() };
        assert_eq!(s.validate().unwrap_err(), NameError::CnTooLong { len: 65, max: 64 });
        s.common_name = Some("ok".into());
        s.country = Some("USA".into());
        assert!(s.validate().unwrap_err().to_string().starts_with("C (country)"));
        s.country = Some("de".into());
        s.email = Some("not-an-email".into());
        assert!(s.validate().unwrap_err().to_string().starts_with("emailAddress"));
        s.email = Some("ops@example.com".into());
        s.organizational_unit = vec!["A".into(), "line\nbreak".into()];
        assert_eq!(s.validate().unwrap_err(), NameError::ControlCharacter { field: "OU" });
    }

    #[test]
    fn san_parsing() {
        assert_eq!("DNS:a.example".parse::<San>(), Ok(San::Dns("a.example".into())));
        assert_eq!("ip:::1".parse::<San>(), Ok(San::Ip("::1".parse().expect("literal"))));
        assert!("IP:300.1.1.1".parse::<San>().unwrap_err().to_string().contains("IP address"));
        assert!("EMAIL:a@b".parse::<San>().is_ok());
        assert!("EMAIL:a b@example.com".parse::<San>().is_err());
        assert!("URI:spiffe://cluster/ns/x".parse::<San>().is_ok());
        assert!("URI:no-scheme".parse::<San>().is_err());
        assert!(matches!("FOO:bar".parse::<San>(), Err(NameError::SanSyntax(_))));
    }
}
