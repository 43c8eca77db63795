//! The wasmtime setup: one Engine per process (async, component model, pooling allocator,
//! epoch interruption driven by a ticker thread), a Linker with only the capabilities a
//! connector may have, an on-disk cache of compiled components, and the per-call Store.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::bindings::certhost::connector as connector_wit;
use super::host_impl::Cache;
use super::http::HttpPolicy;
use crate::connector::redact::Redactor;

/// How often the epoch ticks: the granularity of call deadlines, and how often a guest that
/// computes without calling the host yields its thread back to the async executor.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The largest linear memory the pooling allocator reserves per memory, MiB: the most a CA
/// account's `memory_mib` may ask of a component (a larger cap could never be reached, and
/// the pool's refusal would read as a plain trap).
pub const MAX_MEMORY_MIB: u64 = 1024;

/// Bytes of each pooled memory and table kept resident between calls (see `Runtime::new`).
/// A local-ca call touches about 1.5 MiB.
const KEEP_RESIDENT: usize = 4 << 20;

/// The process-wide engine and linker.
pub struct Runtime {
    /// The engine (shared by all connectors).
    pub engine: Engine,
    /// The linker: wasi (no files, env or sockets), wasi:http (filtered), the host interface.
    pub linker: Linker<State>,
}

/// Per-call state of a Store.
pub struct State {
    pub(super) wasi: WasiCtx,
    pub(super) http: WasiHttpCtx,
    pub(super) hooks: HttpPolicy,
    pub(super) table: ResourceTable,
    pub(super) limits: MemoryLimiter,
    pub(super) cache: Cache,
    pub(super) label: String,
    /// The call's sensitive values, for redaction of guest log text; wiped when the call ends.
    pub(super) sensitive: Vec<zeroize::Zeroizing<String>>,
    /// Their redaction rules, made when a guest log line might hold one of them: computing
    /// every encoded form of a CA key costs more than local-ca's whole call log.
    pub(super) redactor: std::sync::OnceLock<Redactor>,
}

impl State {
    /// Replaces this call's sensitive values (and their encoded forms) in guest log text.
    pub(super) fn redact(&self, text: &str) -> String {
        let values = || self.sensitive.iter().map(|v| v.as_str());
        if !crate::connector::redact::might_hold_any(values(), text) {
            return text.to_owned();
        }
        self.redactor.get_or_init(|| Redactor::new(values())).redact(text)
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for State {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.hooks }
    }
}

/// Caps linear memory and tables; remembers whether the cap was hit, so a failed call can be
/// reported as "exceeded its memory limit" rather than as the trap the guest then hits.
pub struct MemoryLimiter {
    pub(super) max_bytes: usize,
    pub(super) hit: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// A [`Hasher`] that streams what it is fed into SHA-256: a digest of a `Hash` value that does
/// not depend on the standard library's hashing algorithm.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        // Not used for the cache key (that is the full digest); a `Hasher` must answer it.
        let d = self.0.clone().finalize();
        u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
    }
}

/// Errors setting up the runtime or loading a component.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// wasmtime refused the configuration or the component.
    #[error("{0}")]
    Wasmtime(String),
    /// Reading the component or the cache failed.
    #[error("{path}: {reason}")]
    Io {
        /// File.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

fn wt(e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Wasmtime(e.to_string())
}

impl Runtime {
    /// The process-wide runtime, created on first use.
    pub fn global() -> Result<&'static Arc<Runtime>, RuntimeError> {
        static RUNTIME: OnceLock<Result<Arc<Runtime>, String>> = OnceLock::new();
        RUNTIME
            .get_or_init(|| Runtime::new().map(Arc::new).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| RuntimeError::Wasmtime(e.clone()))
    }

    fn new() -> Result<Self, RuntimeError> {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(64);
        pool.total_core_instances(256);
        pool.total_memories(256);
        pool.total_tables(256);
        pool.max_memory_size(usize::try_from(MAX_MEMORY_MIB << 20).unwrap_or(usize::MAX));
        // A slot's memory is reset for the next call by rewriting the pages the last call
        // touched (found with PAGEMAP_SCAN where the kernel has it, 6.7+), up to this much,
        // instead of returning every page to the kernel with madvise and faulting it back in
        // on the next call: the madvise, its TLB shootdowns and the page faults were 10% of
        // serve's request CPU under issuance load. The cost is that much resident memory per
        // warm slot.
        pool.linear_memory_keep_resident(KEEP_RESIDENT);
        pool.table_keep_resident(KEEP_RESIDENT);
        pool.pagemap_scan(wasmtime::Enabled::Auto);
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        // 64×64→128-bit multiplication as one instruction: what elliptic-curve field
        // arithmetic is made of. Without it a guest's u128 products are software calls
        // (`__multi3`), and a local-ca call took 1.77 ms instead of 0.59 ms.
        config.wasm_wide_arithmetic(true);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        // `CERTHOST_WASM_PROFILER=perfmap` names connectors' compiled functions for `perf`
        // (/tmp/perf-PID.map), so a connector author can see where a call's time goes.
        if std::env::var("CERTHOST_WASM_PROFILER").is_ok_and(|v| v == "perfmap") {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config).map_err(wt)?;
        let ticker = engine.weak();
        std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                // The epoch advances while the engine lives; deadlines are counted in ticks.
                while let Some(engine) = ticker.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .map_err(|e| RuntimeError::Wasmtime(format!("cannot start the epoch ticker: {e}")))?;
        let mut linker: Linker<State> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(wt)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(wt)?;
        // The world's own interfaces only: its wasi:http, wasi:io and wasi:clocks imports are
        // the ones just added (`CaConnector::add_to_linker` would define them a second time).
        connector_wit::types::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s).map_err(wt)?;
        connector_wit::host::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s).map_err(wt)?;
        // Contract 0.2: its own `host` and `challenges` (its types are 0.1's, see bindings.rs).
        {
            use super::bindings::v0_2::certhost::connector as v0_2;
            v0_2::host::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s).map_err(wt)?;
            v0_2::challenges::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s).map_err(wt)?;
        }
        // Contract 0.3: 0.2's imports again under their 0.3 names, plus `crypto`.
        {
            use super::bindings::v0_3::certhost::connector as v0_3;
            v0_3::host::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s).map_err(wt)?;
            v0_3::challenges::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s).map_err(wt)?;
            v0_3::crypto::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s).map_err(wt)?;
        }
        Ok(Self { engine, linker })
    }

    /// Loads a component, compiling it once: compiled code is cached under `cache_dir`,
    /// keyed by the file's hash and the engine's compatibility hash, and only files this host
    /// wrote itself are ever deserialized.
    pub fn load_component(&self, path: &Path, cache_dir: Option<&Path>) -> Result<Component, RuntimeError> {
        let io = |reason: String| RuntimeError::Io { path: path.to_owned(), reason };
        let bytes = std::fs::read(path).map_err(|e| io(e.to_string()))?;
        let Some(dir) = cache_dir else {
            return Component::new(&self.engine, &bytes).map_err(|e| io(format!("not a valid component: {e:#}")));
        };
        // The compatibility hash is a `Hash` value: feed it to SHA-256 rather than to
        // `DefaultHasher`, whose algorithm may change between Rust releases (and with it every
        // key, leaving the cache cold after a toolchain update).
        let mut engine_hash = Sha256Hasher(Sha256::new());
        self.engine.precompile_compatibility_hash().hash(&mut engine_hash);
        let engine_digest = hex::encode(engine_hash.0.finalize());
        let key = format!("{}-{}.cwasm", hex::encode(Sha256::digest(&bytes)), &engine_digest[..32]);
        let cached = dir.join(&key);
        if cached.is_file() {
            // SAFETY: the cache directory is private to certhost and every file in it was
            // written below by this engine configuration (the key includes its compatibility
            // hash); wasmtime checks the header again before using it.
            if let Ok(c) = unsafe { Component::deserialize_file(&self.engine, &cached) } {
                return Ok(c);
            }
        }
        let compiled =
            self.engine.precompile_component(&bytes).map_err(|e| io(format!("not a valid component: {e:#}")))?;
        if std::fs::create_dir_all(dir).is_ok() {
            let tmp = dir.join(format!("{key}.tmp{}", std::process::id()));
            if std::fs::write(&tmp, &compiled).is_ok() {
                let _ = std::fs::rename(&tmp, &cached);
            }
        }
        // SAFETY: `compiled` was produced a moment ago by this very engine.
        unsafe { Component::deserialize(&self.engine, &compiled) }.map_err(|e| io(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_engine_digest_is_sha256_of_what_the_hash_writes() {
        let mut hasher = Sha256Hasher(Sha256::new());
        0x0102_0304_u32.hash(&mut hasher);
        hasher.write(b"engine");
        let mut expected = Sha256::new();
        expected.update(0x0102_0304_u32.to_ne_bytes());
        expected.update(b"engine");
        assert_eq!(hasher.0.finalize(), expected.finalize());
    }
}
