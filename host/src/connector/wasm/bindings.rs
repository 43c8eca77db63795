//! Generated host bindings of the contracts `plugin-sdk/wit/v0.1`, `v0.2` and `v0.3`
//! (world `ca-connector`). Nothing else lives here: the host interfaces are implemented in
//! `host_impl.rs`; the `wasi:http`, `wasi:io` and `wasi:clocks` imports of the worlds are
//! wasmtime-wasi(-http)'s own bindings, added to the linker in `runtime.rs`.

wasmtime::component::bindgen!({
    path: "../plugin-sdk/wit/v0.1",
    world: "ca-connector",
    exports: { default: async },
    with: {
        "wasi:http": wasmtime_wasi_http::p2::bindings::http,
        "wasi:io": wasmtime_wasi::p2::bindings::io,
        "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
    },
});

/// Contract 0.2: 0.1 plus the `challenges` import. Its records are 0.1's, field for field,
/// so they are 0.1's Rust types: one set of WIT ↔ domain conversions serves both versions.
pub mod v0_2 {
    wasmtime::component::bindgen!({
        path: "../plugin-sdk/wit/v0.2",
        world: "ca-connector",
        exports: { default: async },
        with: {
            "wasi:http": wasmtime_wasi_http::p2::bindings::http,
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
            "certhost:connector/types@0.2.0": super::certhost::connector::types,
        },
    });
}

/// Contract 0.3: 0.2 plus the `crypto` import (host signing). Records are 0.1's again.
pub mod v0_3 {
    wasmtime::component::bindgen!({
        path: "../plugin-sdk/wit/v0.3",
        world: "ca-connector",
        exports: { default: async },
        with: {
            "wasi:http": wasmtime_wasi_http::p2::bindings::http,
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
            "certhost:connector/types@0.3.0": super::certhost::connector::types,
        },
    });
}
