//! certhost: a certificate lifecycle host.
//!
//! Operators define CA accounts and profiles; requesters ask for certificates; the host
//! generates keys and CSRs, hands CSRs to connector plugins (WebAssembly components or Python
//! scripts), verifies what comes back, and keeps an encrypted inventory. See ARCHITECTURE.md.
//!
//! # Layout
//! - [`connector`]: the connector contract (trait and types) shared by both plugin runtimes.
#![deny(missing_docs)]

pub mod connector;
