//! Generated host bindings of the contract `plugin-sdk/wit/v0.1` (world `ca-connector`).
//! Nothing else lives here: the host interface is implemented in `host_impl.rs`; the
//! `wasi:http`, `wasi:io` and `wasi:clocks` imports of the world are wasmtime-wasi(-http)'s own
//! bindings, added to the linker in `runtime.rs`.

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
