//! Creating a private root CA: the signing CA of the `local-ca` connector, for labs, tests
//! and the README's demo. (Production CAs live behind connectors; this only mints roots.)

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256};
use rustls_pki_types::PrivatePkcs8KeyDer;
use time::{Duration, OffsetDateTime};

use crate::key::{KeyError, KeyType, PrivateKey};

/// A new root CA: certificate PEM and its P-256 private key.
pub struct RootCa {
    /// Self-signed CA certificate, PEM.
    pub certificate_pem: String,
    /// Its private key (PKCS#8 P-256).
    pub key: PrivateKey,
}

/// Why a root could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RootCaError {
    /// Key generation failed.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// Certificate construction failed.
    #[error("cannot build the CA certificate: {0}")]
    Build(String),
    /// Bad validity.
    #[error("validity must be 1 to 36500 days, got {0}")]
    Validity(u32),
}

/// Creates a self-signed P-256 root named `common_name`, valid for `days`.
pub fn create(common_name: &str, days: u32) -> Result<RootCa, RootCaError> {
    if !(1..=36_500).contains(&days) {
        return Err(RootCaError::Validity(days));
    }
    let key = PrivateKey::generate(KeyType::EcP256)?;
    let der = PrivatePkcs8KeyDer::from(key.pkcs8_der().to_vec());
    let signer = KeyPair::from_pkcs8_der_and_sign_algo(&der, &PKCS_ECDSA_P256_SHA256)
        .map_err(|e| RootCaError::Build(e.to_string()))?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| RootCaError::Build(e.to_string()))?;
    params.distinguished_name.push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + Duration::days(i64::from(days));
    let cert = params.self_signed(&signer).map_err(|e| RootCaError::Build(e.to_string()))?;
    Ok(RootCa { certificate_pem: crate::der::pem_encode("CERTIFICATE", cert.der()), key })
}
