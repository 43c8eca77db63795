//! End-to-end tests: the real `certhost` binary, real openssl, real SQLite files.
//!
//! One test binary (matklad's "delete cargo integration tests"): modules per area, shared
//! helpers in `helpers.rs`.

mod acme;
mod api;
mod api_auth;
mod api_lifecycle;
mod cli_csr;
mod cli_inventory;
mod cli_profiles;
mod durability;
mod examples;
mod helpers;
mod idempotency;
mod issuance;
mod leak_hunt;
mod library;
mod lifecycle;
mod master_key;
mod openapi;
mod plugin_check;
mod props;
mod python;
mod wasm;
