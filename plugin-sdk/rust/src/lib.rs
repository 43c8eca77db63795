//! The Rust SDK for certhost CA connectors.
//!
//! Implement [`Connector`] for a type, call [`register_connector!`] with it, and build the
//! crate as a `cdylib` for `wasm32-wasip2`: the result is a component exporting the
//! `certhost:connector@0.3.0` contract (`plugin-sdk/wit/v0.3`; hosts load 0.1 and 0.2 components too). Optional operations default
//! to "unsupported"; list the ones you implement in [`Description::operations`].
//!
//! ```ignore
//! use certhost_plugin_sdk::*;
//!
//! struct MyCa;
//!
//! impl Connector for MyCa {
//!     fn describe() -> Description { /* name, version, parameters */ }
//!     fn certificate_request(req: IssueRequest, args: Vec<Param>) -> Result<Disposition, ConnectorError> {
//!         let url = arg(&args, "url")?;
//!         let answer = http::post(&format!("{url}/sign"), "application/json", req.csr_pem.as_bytes())?;
//!         /* ... */
//!     }
//! }
//!
//! register_connector!(MyCa);
//! ```
#![deny(missing_docs)]

pub mod http;

#[doc(hidden)]
#[allow(missing_docs)]
pub mod bindings {
    // The world imports wasi:http (and the wasi:io and wasi:clocks interfaces it uses): those
    // are the `wasi` crate's bindings of the same WASI version (0.2.12), not generated again.
    wit_bindgen::generate!({
        path: "../wit/v0.3",
        world: "ca-connector",
        pub_export_macro: true,
        default_bindings_module: "certhost_plugin_sdk::bindings",
        with: {
            "wasi:http/types@0.2.12": ::wasi::http::types,
            "wasi:http/outgoing-handler@0.2.12": ::wasi::http::outgoing_handler,
            "wasi:io/error@0.2.12": ::wasi::io::error,
            "wasi:io/poll@0.2.12": ::wasi::io::poll,
            "wasi:io/streams@0.2.12": ::wasi::io::streams,
            "wasi:clocks/monotonic-clock@0.2.12": ::wasi::clocks::monotonic_clock,
        },
    });
}

pub use bindings::certhost::connector::host::Level;
pub use bindings::certhost::connector::types::{
    CertificatePage, ConnectorError, Description, Disposition, IssueRequest, Issued, ListedCertificate, Operation,
    OrderAction, Param, ParameterSpec, Pending, RenewRequest, RevocationReason, RevokeRequest,
};

/// The contract version this SDK builds components for.
pub const CONTRACT_VERSION: &str = "0.3.0";

/// A CA connector. Only `describe` and `certificate_request` are required.
pub trait Connector {
    /// Name, version, parameters and the optional operations implemented.
    fn describe() -> Description;

    /// Submit a CSR to the CA.
    fn certificate_request(request: IssueRequest, args: Vec<Param>) -> Result<Disposition, ConnectorError>;

    /// Poll a pending order.
    fn poll(ca_order_id: String, args: Vec<Param>) -> Result<Disposition, ConnectorError> {
        let _ = (ca_order_id, args);
        Err(unsupported("poll"))
    }

    /// Renew (the host falls back to `certificate_request` when unsupported).
    fn renew(request: RenewRequest, args: Vec<Param>) -> Result<Disposition, ConnectorError> {
        let _ = (request, args);
        Err(unsupported("renew"))
    }

    /// Revoke a certificate.
    fn revoke(request: RevokeRequest, args: Vec<Param>) -> Result<(), ConnectorError> {
        let _ = (request, args);
        Err(unsupported("revoke"))
    }

    /// Check reachability and credentials.
    fn test_connection(args: Vec<Param>) -> Result<(), ConnectorError> {
        let _ = args;
        Err(unsupported("test_connection"))
    }

    /// One page of the CA's certificates.
    fn list_certificates(args: Vec<Param>, cursor: Option<String>) -> Result<CertificatePage, ConnectorError> {
        let _ = (args, cursor);
        Err(unsupported("list_certificates"))
    }

    /// Approve, decline, suspend or resume an order.
    fn update_order(ca_order_id: String, action: OrderAction, args: Vec<Param>) -> Result<Disposition, ConnectorError> {
        let _ = (ca_order_id, action, args);
        Err(unsupported("update_order"))
    }
}

/// The error for an operation this connector does not implement.
pub fn unsupported(operation: &str) -> ConnectorError {
    ConnectorError::Unsupported(format!("{operation} is not implemented by this connector"))
}

/// The value of parameter `name`, or a `misconfigured` error naming it.
pub fn arg<'a>(args: &'a [Param], name: &str) -> Result<&'a str, ConnectorError> {
    optional_arg(args, name).ok_or_else(|| ConnectorError::Misconfigured(format!("missing parameter {name}")))
}

/// The value of parameter `name`, if given and not empty.
pub fn optional_arg<'a>(args: &'a [Param], name: &str) -> Option<&'a str> {
    args.iter().find(|p| p.name == name).map(|p| p.value.as_str()).filter(|v| !v.is_empty())
}

/// Cryptographically secure random bytes from the host (`wasi:random`).
pub fn random_bytes(n: u64) -> Vec<u8> {
    wasi::random::random::get_random_bytes(n)
}

/// Logs through the host.
pub fn log(level: Level, message: &str) {
    bindings::certhost::connector::host::log(level, message);
}

/// A value cached for this CA account, if present and not expired.
pub fn cache_get(key: &str) -> Option<String> {
    bindings::certhost::connector::host::cache_get(key)
}

/// Caches a value for this CA account for `ttl_seconds` (0 = no expiry). The host keeps it
/// (sealed in its inventory) across restarts, until the account's connector or parameters
/// change or `certhost secret set` gives it a new secret.
pub fn cache_set(key: &str, value: &str, ttl_seconds: u32) {
    bindings::certhost::connector::host::cache_set(key, value, ttl_seconds);
}

/// Challenge answers published by the host (contract 0.2), for ACME connectors.
pub mod challenges {
    use crate::bindings::certhost::connector::challenges as wit;

    /// Has the host serve `key_authorization` at `/.well-known/acme-challenge/{token}` on its
    /// http-01 listener; the error says why not (e.g. no listener configured).
    pub fn publish_http01(token: &str, key_authorization: &str) -> Result<(), String> {
        wit::publish_http01(token, key_authorization)
    }

    /// Stops serving `token`.
    pub fn withdraw_http01(token: &str) {
        wit::withdraw_http01(token);
    }

    /// Has the host's dns-01 hook put `txt_value` in `_acme-challenge.{domain}`.
    pub fn dns01_present(domain: &str, txt_value: &str) -> Result<(), String> {
        wit::dns01_present(domain, txt_value)
    }

    /// Has the host's dns-01 hook remove that value again.
    pub fn dns01_cleanup(domain: &str, txt_value: &str) -> Result<(), String> {
        wit::dns01_cleanup(domain, txt_value)
    }
}

/// Signatures made by the host in native code (contract 0.3): a P-256 signature costs about
/// a tenth of what the same arithmetic costs compiled to WebAssembly.
pub mod crypto {
    use crate::bindings::certhost::connector::crypto as wit;

    /// A signature and its algorithm.
    pub use wit::Signature;

    /// Signs `message` with `private_key_pem` (PKCS#8, SEC1 or PKCS#1 PEM): ECDSA P-256 with
    /// SHA-256 (DER signature), P-384 with SHA-384, RSA PKCS#1 v1.5 with SHA-256, Ed25519.
    /// The key is one the connector holds already (a parameter); the host keeps nothing.
    pub fn sign(private_key_pem: &str, message: &[u8]) -> Result<Signature, String> {
        wit::sign(private_key_pem, message)
    }
}

/// Wires a [`Connector`] implementation to the component's exports.
#[macro_export]
macro_rules! register_connector {
    ($connector:ty) => {
        #[doc(hidden)]
        pub struct __CerthostExport;

        impl $crate::bindings::exports::certhost::connector::connector::Guest for __CerthostExport {
            fn describe() -> $crate::Description {
                <$connector as $crate::Connector>::describe()
            }
            fn certificate_request(request: $crate::IssueRequest, args: Vec<$crate::Param>) -> Result<$crate::Disposition, $crate::ConnectorError> {
                <$connector as $crate::Connector>::certificate_request(request, args)
            }
            fn poll(ca_order_id: String, args: Vec<$crate::Param>) -> Result<$crate::Disposition, $crate::ConnectorError> {
                <$connector as $crate::Connector>::poll(ca_order_id, args)
            }
            fn renew(request: $crate::RenewRequest, args: Vec<$crate::Param>) -> Result<$crate::Disposition, $crate::ConnectorError> {
                <$connector as $crate::Connector>::renew(request, args)
            }
            fn revoke(request: $crate::RevokeRequest, args: Vec<$crate::Param>) -> Result<(), $crate::ConnectorError> {
                <$connector as $crate::Connector>::revoke(request, args)
            }
            fn test_connection(args: Vec<$crate::Param>) -> Result<(), $crate::ConnectorError> {
                <$connector as $crate::Connector>::test_connection(args)
            }
            fn list_certificates(args: Vec<$crate::Param>, cursor: Option<String>) -> Result<$crate::CertificatePage, $crate::ConnectorError> {
                <$connector as $crate::Connector>::list_certificates(args, cursor)
            }
            fn update_order(ca_order_id: String, action: $crate::OrderAction, args: Vec<$crate::Param>) -> Result<$crate::Disposition, $crate::ConnectorError> {
                <$connector as $crate::Connector>::update_order(ca_order_id, action, args)
            }
        }

        $crate::bindings::export!(__CerthostExport with_types_in $crate::bindings);
    };
}
