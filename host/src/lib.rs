//! certhost: a certificate lifecycle host.
//!
//! Operators define CA accounts and profiles; requesters ask for certificates; the host
//! generates keys and CSRs, hands CSRs to connector plugins (WebAssembly components or Python
//! scripts), verifies what comes back, and keeps an encrypted inventory. See ARCHITECTURE.md.
//!
//! The library binds no port and reads no configuration from the environment: `main.rs`
//! does, and hands the results in, so tests can drive every piece with their own directories
//! and keys. (The Python worker process reads its own site directories, and the WebAssembly
//! runtime a profiler switch, `CERTHOST_WASM_PROFILER`.)
//!
//! # Layout
//! One line per module; ARCHITECTURE.md's code map says more of each.
//! - [`account`]: a CA account's definition (connector, parameters, allowed hosts, limits).
//! - [`profile`], [`param`], [`pattern`]: profiles, their parameters and their name patterns.
//! - [`clock`]: the wall clock as the host stores it (Unix seconds).
//! - [`config`]: `certhost.toml` and `profiles/*.toml` read into checked definitions.
//! - [`api`]: the HTTP API of `certhost serve` (axum), one file per resource.
//! - [`poller`]: background polling of pending orders in `certhost serve`.
//! - [`renewal`]: the renewal scheduler; [`deploy`]: deployment targets; [`notify`]: webhook and email.
//! - [`key`]: private keys — generation, PEM import, signing.
//! - [`csr`]: subject/SAN rules, building CSRs, parsing and verifying uploaded CSRs.
//! - [`cert`]: parsing certificates into the facts the inventory stores.
//! - [`verify`]: invariant 1, checking a connector's certificate against the request.
//! - [`host_signatures`]: signatures known to verify (made by the host, or chain links verified
//!   before), which invariant 1 need not verify again.
//! - [`vault`]: the master key and AES-256-GCM sealing of secrets at rest.
//! - [`inventory`]: the SQLite database — certificates, keys, orders, audit events, accounts.
//! - [`import`]: importing certificate files (bundles, directories, keys).
//! - [`root_ca`]: minting a private root CA (for the local-ca connector and labs).
//! - [`connector`]: the connector contract shared by both plugin runtimes.
//! - [`issue`]: the issuance pipeline; [`lifecycle`]: renew, reissue, revoke, update-order.
//! - [`idempotency`]: the `Idempotency-Key` of issue requests.
//! - [`metrics`]: counters and histograms behind `/metrics`.
//! - [`view`]: the JSON shapes of the API and `--json`, times as RFC 3339.
//! - [`der`], [`x509`]: strict framing checks and the x509-parser edge.
//! - `blocking`, `hook`, `process_group` (private): blocking work off the async threads;
//!   running a deploy or dns-01 hook to its end or deadline; ending a child with the
//!   processes it started.
#![deny(missing_docs)]

pub mod account;
pub mod api;
mod blocking;
pub mod cert;
pub mod clock;
pub mod config;
pub mod connector;
pub mod csr;
pub mod deploy;
pub mod der;
mod hook;
pub mod host_signatures;
pub mod idempotency;
pub mod import;
pub mod inventory;
pub mod issue;
pub mod key;
pub mod lifecycle;
pub mod metrics;
pub mod notify;
pub mod param;
pub mod pattern;
pub mod poller;
mod process_group;
pub mod profile;
pub mod renewal;
pub mod root_ca;
pub mod vault;
pub mod verify;
pub mod view;
pub mod x509;
