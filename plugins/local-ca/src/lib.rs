//! local-ca: a certificate authority inside a component. It signs the host's CSR with the CA
//! certificate and P-256 key given as parameters, copying the requested subject and names,
//! and returns the leaf with the CA certificate as its chain.
//!
//! Pure Rust (a DER walk of its own to read, yasna to write DER, the host's `crypto.sign` to
//! sign; RustCrypto p256 to check a key), so it builds for wasm32-wasip2 without a C compiler.
//! The host verifies every certificate it returns.

mod der;
mod pem;

#[cfg(test)]
mod tests_support {
    /// A fixed pseudo-random sequence (xorshift64): the same mangled inputs on every run.
    pub fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        }
    }
}

use certhost_plugin_sdk::*;
use p256::pkcs8::DecodePrivateKey;
use sha1::Digest;
use yasna::models::ObjectIdentifier;

struct LocalCa;

fn misconfigured(what: impl Into<String>) -> ConnectorError {
    ConnectorError::Misconfigured(what.into())
}

fn ca_key(text: &str) -> Result<p256::ecdsa::SigningKey, ConnectorError> {
    let secret = p256::SecretKey::from_pkcs8_pem(text)
        .or_else(|_| p256::SecretKey::from_sec1_pem(text))
        .map_err(|_| misconfigured("ca_private_key is not a P-256 private key in PKCS#8 or SEC1 PEM"))?;
    Ok(p256::ecdsa::SigningKey::from(secret))
}

fn pem_der(text: &str, what: &str) -> Result<Vec<u8>, ConnectorError> {
    pem::decode(text).map_err(|why| misconfigured(format!("{what} is not PEM: {why}")))
}

/// UTCTime (until 2049) or GeneralizedTime, as RFC 5280 requires.
fn write_time(w: yasna::DERWriter<'_>, t: ::time::OffsetDateTime) {
    let utc = t.year() < 2050;
    let mut tlv = vec![if utc { 0x17 } else { 0x18 }, if utc { 13 } else { 15 }];
    let mut digits = |n: i64, width: u32| {
        for place in (0..width).rev() {
            tlv.push(b'0' + (n / 10i64.pow(place) % 10) as u8);
        }
    };
    if utc {
        digits(i64::from(t.year() % 100), 2);
    } else {
        digits(i64::from(t.year()), 4);
    }
    for part in [t.month() as u8, t.day(), t.hour(), t.minute(), t.second()] {
        digits(i64::from(part), 2);
    }
    tlv.push(b'Z');
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
        let ca = der::issuer(&ca_der).map_err(|e| misconfigured(format!("ca_certificate does not parse: {e}")))?;
        let csr_der = pem_der(&request.csr_pem, "the CSR")?;
        let csr = der::csr(&csr_der).map_err(|e| ConnectorError::Internal(format!("the CSR does not parse: {e}")))?;
        let mut serial = random_bytes(16);
        serial[0] &= 0x7f;
        serial[0] |= 0x01;
        let now = ::time::OffsetDateTime::now_utc();
        // The authority key identifier must equal the CA's subject key identifier, or
        // verifiers (openssl) cannot find the issuer; SHA-1 of the key when the CA has none.
        let ca_key_id = ca.key_id.map_or_else(|| sha1::Sha1::digest(ca.public_key).to_vec(), <[u8]>::to_vec);
        let leaf_key_id = sha1::Sha1::digest(csr.public_key).to_vec();
        const ECDSA_SHA256: &[u64] = &[1, 2, 840, 10045, 4, 3, 2];
        let tbs = yasna::construct_der(|w| {
            w.write_sequence(|w| {
                w.next().write_tagged(yasna::Tag::context(0), |w| w.write_u8(2));
                // A positive INTEGER: the top bit is clear and the first byte non-zero.
                let mut int = vec![0x02, serial.len() as u8];
                int.extend_from_slice(&serial);
                w.next().write_der(&int);
                w.next().write_sequence(|w| w.next().write_oid(&ObjectIdentifier::from_slice(ECDSA_SHA256)));
                w.next().write_der(ca.subject);
                w.next().write_sequence(|w| {
                    write_time(w.next(), now - ::time::Duration::minutes(5));
                    write_time(w.next(), now + lifetime);
                });
                w.next().write_der(csr.subject);
                w.next().write_der(csr.spki);
                w.next().write_tagged(yasna::Tag::context(3), |w| {
                    w.write_sequence(|w| {
                        extension(w.next(), &[2, 5, 29, 19], true, &yasna::construct_der(|w| w.write_sequence(|_| {})));
                        // digitalSignature, and keyEncipherment for an RSA key only: an EC key
                        // cannot encipher, and RFC 5480 forbids the bit for it.
                        let usage: (&[u8], usize) =
                            if is_rsa_encryption(csr.spki) { (&[0xa0], 3) } else { (&[0x80], 1) };
                        extension(
                            w.next(),
                            &[2, 5, 29, 15],
                            true,
                            &yasna::construct_der(|w| w.write_bitvec_bytes(usage.0, usage.1)),
                        );
                        let eku = yasna::construct_der(|w| {
                            w.write_sequence(|w| {
                                w.next().write_oid(&ObjectIdentifier::from_slice(&[1, 3, 6, 1, 5, 5, 7, 3, 1]));
                                w.next().write_oid(&ObjectIdentifier::from_slice(&[1, 3, 6, 1, 5, 5, 7, 3, 2]));
                            })
                        });
                        extension(w.next(), &[2, 5, 29, 37], false, &eku);
                        if let Some(san) = csr.san {
                            extension(w.next(), &[2, 5, 29, 17], csr.subject_empty, san);
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
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let serial_hex: String =
            serial.iter().flat_map(|b| [HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]).map(char::from).collect();
        Ok(Disposition::Issued(Issued {
            certificate: pem::encode("CERTIFICATE", &cert),
            chain: vec![pem::encode("CERTIFICATE", &ca_der)],
            ca_order_id: Some(serial_hex),
        }))
    }

    fn test_connection(args: Vec<Param>) -> Result<(), ConnectorError> {
        let ca_der = pem_der(arg(&args, "ca_certificate")?, "ca_certificate")?;
        let key = ca_key(arg(&args, "ca_private_key")?)?;
        let ca = der::issuer(&ca_der).map_err(|e| misconfigured(format!("ca_certificate does not parse: {e}")))?;
        let point = key.verifying_key().to_encoded_point(false);
        if ca.public_key != point.as_bytes() {
            return Err(misconfigured("ca_private_key is not the key of ca_certificate"));
        }
        Ok(())
    }
}

register_connector!(LocalCa);

/// Whether a SubjectPublicKeyInfo's algorithm is rsaEncryption: its AlgorithmIdentifier, right
/// after the outer SEQUENCE's header, is that OID with NULL parameters.
fn is_rsa_encryption(spki: &[u8]) -> bool {
    const RSA_ALGORITHM: &[u8] = &[0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    let header = match spki.get(1) {
        Some(&len) if len & 0x80 != 0 => 2 + usize::from(len & 0x7f),
        Some(_) => 2,
        None => return false,
    };
    spki.get(header..).is_some_and(|rest| rest.starts_with(RSA_ALGORITHM))
}

#[cfg(test)]
mod key_usage_tests {
    use super::is_rsa_encryption;

    #[test]
    fn only_an_rsa_encryption_key_is_marked_for_key_encipherment() {
        let mut rsa =
            vec![0x30, 0x82, 0x01, 0x22, 0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
        rsa.extend_from_slice(&[0x05, 0x00, 0x03, 0x82, 0x01, 0x0f, 0x00]);
        assert!(is_rsa_encryption(&rsa));
        let ec = [0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08];
        assert!(!is_rsa_encryption(&ec));
        assert!(!is_rsa_encryption(&[0x30]), "truncated");
    }
}
