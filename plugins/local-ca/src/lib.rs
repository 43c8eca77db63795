//! local-ca: a certificate authority inside a component. It signs the host's CSR with the CA
//! certificate and P-256 key given as parameters, copying the requested subject and names,
//! and returns the leaf with the CA certificate as its chain.
//!
//! Pure Rust (x509-parser to read, yasna to write DER, RustCrypto p256 to sign), so it builds
//! for wasm32-wasip2 without a C compiler. The host verifies every certificate it returns.

use certhost_plugin_sdk::*;
use p256::pkcs8::DecodePrivateKey;
use sha1::Digest;
use x509_parser::prelude::*;
use yasna::models::ObjectIdentifier;

struct LocalCa;

fn misconfigured(what: impl Into<String>) -> ConnectorError {
    ConnectorError::Misconfigured(what.into())
}

fn ca_key(pem: &str) -> Result<p256::ecdsa::SigningKey, ConnectorError> {
    let secret = p256::SecretKey::from_pkcs8_pem(pem)
        .or_else(|_| p256::SecretKey::from_sec1_pem(pem))
        .map_err(|_| misconfigured("ca_private_key is not a P-256 private key in PKCS#8 or SEC1 PEM"))?;
    Ok(p256::ecdsa::SigningKey::from(secret))
}

fn pem_der(pem: &str, what: &str) -> Result<Vec<u8>, ConnectorError> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| misconfigured(format!("{what} is not PEM: {e}")))?;
    Ok(block.contents)
}

/// UTCTime (until 2049) or GeneralizedTime, as RFC 5280 requires.
fn write_time(w: yasna::DERWriter<'_>, t: ::time::OffsetDateTime) {
    let (tag, text) = if t.year() < 2050 {
        (
            0x17u8,
            format!(
                "{:02}{:02}{:02}{:02}{:02}{:02}Z",
                t.year() % 100,
                t.month() as u8,
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            ),
        )
    } else {
        (
            0x18u8,
            format!(
                "{:04}{:02}{:02}{:02}{:02}{:02}Z",
                t.year(),
                t.month() as u8,
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            ),
        )
    };
    let mut tlv = vec![tag, text.len() as u8];
    tlv.extend_from_slice(text.as_bytes());
    w.write_der(&tlv);
}

fn extension(w: yasna::DERWriter<'_>, oid: &[u64], critical: bool, value: &[u8]) {
    w.write_sequence(|w| {
        w.next().write_oid(&ObjectIdentifier::from_slice(oid));
        if critical {
            w.next().write_bool(true);
        }
        w.next().write_bytes(value);
    });
}

impl Connector for LocalCa {
    fn describe() -> Description {
        let p = |name: &str, description: &str, required: bool, sensitive: bool, default: Option<&str>| ParameterSpec {
            name: name.into(),
            description: description.into(),
            required,
            sensitive,
            default: default.map(Into::into),
        };
        Description {
            name: "local-ca".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            parameters: vec![
                p("ca_certificate", "the CA certificate, PEM", true, false, None),
                p("ca_private_key", "the CA's P-256 private key, PEM", true, true, None),
                p("validity_days", "lifetime of issued certificates in days", false, false, Some("90")),
                p(
                    "validity_seconds",
                    "lifetime in seconds, for short-lived certificates (overrides validity_days)",
                    false,
                    false,
                    None,
                ),
            ],
            operations: vec![Operation::TestConnection],
        }
    }

    fn certificate_request(request: IssueRequest, args: Vec<Param>) -> Result<Disposition, ConnectorError> {
        let ca_pem = arg(&args, "ca_certificate")?;
        let ca_key_pem = arg(&args, "ca_private_key")?;
        let days: i64 = optional_arg(&args, "validity_days")
            .unwrap_or("90")
            .parse()
            .ok()
            .filter(|d| (1..=3650).contains(d))
            .ok_or_else(|| misconfigured("validity_days must be a number from 1 to 3650"))?;
        let lifetime = match optional_arg(&args, "validity_seconds") {
            Some(s) => ::time::Duration::seconds(
                s.parse::<i64>()
                    .ok()
                    .filter(|s| (60..=3650 * 86_400).contains(s))
                    .ok_or_else(|| misconfigured("validity_seconds must be a number from 60 to 315360000"))?,
            ),
            None => ::time::Duration::days(days),
        };
        let ca_der = pem_der(ca_pem, "ca_certificate")?;
        let (_, ca) = X509Certificate::from_der(&ca_der)
            .map_err(|e| misconfigured(format!("ca_certificate does not parse: {e}")))?;
        let csr_der = pem_der(&request.csr_pem, "the CSR")?;
        let (_, csr) = X509CertificationRequest::from_der(&csr_der)
            .map_err(|e| ConnectorError::Internal(format!("the CSR does not parse: {e}")))?;
        let info = &csr.certification_request_info;
        // The raw SAN extension value, copied as requested.
        let san_raw: Option<Vec<u8>> = info.attributes().iter().find_map(|attr| match attr.parsed_attribute() {
            ParsedCriAttribute::ExtensionRequest(req) => {
                req.extensions.iter().find(|e| e.oid.to_id_string() == "2.5.29.17").map(|e| e.value.to_vec())
            }
            _ => None,
        });
        let mut serial = random_bytes(16);
        serial[0] &= 0x7f;
        serial[0] |= 0x01;
        let now = ::time::OffsetDateTime::now_utc();
        // The authority key identifier must equal the CA's subject key identifier, or
        // verifiers (openssl) cannot find the issuer; SHA-1 of the key when the CA has none.
        let ca_key_id = ca
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(kid) => Some(kid.0.to_vec()),
                _ => None,
            })
            .unwrap_or_else(|| sha1::Sha1::digest(ca.public_key().subject_public_key.data.as_ref()).to_vec());
        let leaf_key_id = sha1::Sha1::digest(info.subject_pki.subject_public_key.data.as_ref()).to_vec();
        const ECDSA_SHA256: &[u64] = &[1, 2, 840, 10045, 4, 3, 2];
        let tbs = yasna::construct_der(|w| {
            w.write_sequence(|w| {
                w.next().write_tagged(yasna::Tag::context(0), |w| w.write_u8(2));
                // A positive INTEGER: the top bit is clear and the first byte non-zero.
                let mut int = vec![0x02, serial.len() as u8];
                int.extend_from_slice(&serial);
                w.next().write_der(&int);
                w.next().write_sequence(|w| w.next().write_oid(&ObjectIdentifier::from_slice(ECDSA_SHA256)));
                w.next().write_der(ca.subject().as_raw());
                w.next().write_sequence(|w| {
                    write_time(w.next(), now - ::time::Duration::minutes(5));
                    write_time(w.next(), now + lifetime);
                });
                w.next().write_der(info.subject.as_raw());
                w.next().write_der(info.subject_pki.raw);
                w.next().write_tagged(yasna::Tag::context(3), |w| {
                    w.write_sequence(|w| {
                        extension(w.next(), &[2, 5, 29, 19], true, &yasna::construct_der(|w| w.write_sequence(|_| {})));
                        // digitalSignature | keyEncipherment
                        extension(
                            w.next(),
                            &[2, 5, 29, 15],
                            true,
                            &yasna::construct_der(|w| w.write_bitvec_bytes(&[0xa0], 3)),
                        );
                        let eku = yasna::construct_der(|w| {
                            w.write_sequence(|w| {
                                w.next().write_oid(&ObjectIdentifier::from_slice(&[1, 3, 6, 1, 5, 5, 7, 3, 1]));
                                w.next().write_oid(&ObjectIdentifier::from_slice(&[1, 3, 6, 1, 5, 5, 7, 3, 2]));
                            })
                        });
                        extension(w.next(), &[2, 5, 29, 37], false, &eku);
                        if let Some(san) = &san_raw {
                            extension(w.next(), &[2, 5, 29, 17], info.subject.iter().next().is_none(), san);
                        }
                        extension(
                            w.next(),
                            &[2, 5, 29, 14],
                            false,
                            &yasna::construct_der(|w| w.write_bytes(&leaf_key_id)),
                        );
                        let aki = yasna::construct_der(|w| {
                            w.write_sequence(|w| {
                                w.next().write_tagged_implicit(yasna::Tag::context(0), |w| w.write_bytes(&ca_key_id))
                            })
                        });
                        extension(w.next(), &[2, 5, 29, 35], false, &aki);
                    })
                });
            })
        });
        // The host signs natively (contract 0.3): the same P-256 signature computed here in
        // WebAssembly cost ten times as much CPU.
        let signature = certhost_plugin_sdk::crypto::sign(ca_key_pem, &tbs)
            .map_err(|e| misconfigured(format!("ca_private_key: {e}")))?;
        if signature.algorithm_oid != "1.2.840.10045.4.3.2" {
            return Err(misconfigured("ca_private_key is not a P-256 key (local-ca signs with ECDSA P-256)"));
        }
        let cert = yasna::construct_der(|w| {
            w.write_sequence(|w| {
                w.next().write_der(&tbs);
                w.next().write_sequence(|w| w.next().write_oid(&ObjectIdentifier::from_slice(ECDSA_SHA256)));
                w.next().write_bitvec_bytes(&signature.value, signature.value.len() * 8);
            })
        });
        log(Level::Info, &format!("signed a certificate for {} (request {})", request.common_name, request.request_id));
        let serial_hex: String = serial.iter().map(|b| format!("{b:02x}")).collect();
        Ok(Disposition::Issued(Issued {
            certificate: pem("CERTIFICATE", &cert),
            chain: vec![pem("CERTIFICATE", &ca_der)],
            ca_order_id: Some(serial_hex),
        }))
    }

    fn test_connection(args: Vec<Param>) -> Result<(), ConnectorError> {
        let ca_der = pem_der(arg(&args, "ca_certificate")?, "ca_certificate")?;
        let key = ca_key(arg(&args, "ca_private_key")?)?;
        let (_, ca) = X509Certificate::from_der(&ca_der)
            .map_err(|e| misconfigured(format!("ca_certificate does not parse: {e}")))?;
        let point = key.verifying_key().to_encoded_point(false);
        if ca.public_key().subject_public_key.data.as_ref() != point.as_bytes() {
            return Err(misconfigured("ca_private_key is not the key of ca_certificate"));
        }
        Ok(())
    }
}

/// PEM with 64-column base64 lines.
fn pem(label: &str, der: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::new();
    for chunk in der.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

register_connector!(LocalCa);
