//! Generated host bindings of the contract `plugin-sdk/wit/v0.1` (world `ca-connector`).
//! Nothing else lives here: the host interface is implemented in `host_impl.rs`.

wasmtime::component::bindgen!({
    path: "../plugin-sdk/wit/v0.1",
    world: "ca-connector",
    exports: { default: async },
});
