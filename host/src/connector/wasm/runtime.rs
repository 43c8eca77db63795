//! The wasmtime setup: one Engine per process (async, component model, pooling allocator,
//! epoch interruption driven by a ticker thread), a Linker with only the capabilities a
//! connector may have, an on-disk cache of compiled components, and the per-call Store.

use std::hash::{Hash, Hasher};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::bindings::certhost::connector as connector_wit;
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
    /// The account's cache ([`crate::connector::cache`]).
    pub(super) cache: crate::connector::cache::AccountCache,
    /// Whether this call set anything in it, to store when the call ends.
    pub(super) cache_set: bool,
    /// The account's cache epoch, read when the call first uses the cache (`None`: not yet).
    pub(super) cache_epoch: Option<Option<i64>>,
    pub(super) label: String,
    /// http-01 answers this call published ([`MAX_HTTP01_PER_CALL`]).
    pub(super) http01_published: u32,
    /// The account and order names this call may publish challenges for.
    pub(super) challenge_scope: crate::connector::challenges::Scope,
    /// When the call's time is up (a host import that blocks, the dns-01 hook, is held to it).
    pub(super) deadline: std::time::Instant,
    /// The call's sensitive values, for redaction of guest log text; wiped when the call ends.
    pub(super) sensitive: std::sync::Arc<[zeroize::Zeroizing<String>]>,
    /// Their redaction rules, made when a guest log line might hold one of them: computing
    /// every encoded form of a CA key costs more than local-ca's whole call log.
    pub(super) redactor: std::sync::OnceLock<Redactor>,
    /// Bytes of guest log text this call has written, against [`MAX_LOG_BYTES_PER_CALL`].
    pub(super) logged: usize,
}

/// Guest log text one call may write; the rest is dropped, with one line that says so. Each
/// line is cut at 4 KiB, but fifty thousand of them wrote 204 MB of log in 2.5 s.
pub(super) const MAX_LOG_BYTES_PER_CALL: usize = 1024 * 1024;

/// Host-side objects (handles) one call may hold at once: streams, HTTP requests and
/// responses, header sets, pollables. A CA connector needs tens; the default (a million)
/// let one call hold gigabytes of host memory outside its `memory_mib`.
pub(super) const MAX_HANDLES_PER_CALL: usize = 2048;

/// Bytes one header set a guest builds may hold (wasi-http's default is 128 KiB). With
/// [`MAX_HANDLES_PER_CALL`], what a call's header sets can hold in host memory is bounded
/// (32 MiB); fifteen thousand sets of 120 KiB grew `serve` to 1.8 GB before.
pub(super) const MAX_FIELDS_BYTES: usize = 16 * 1024;

/// The resource table of one call, capped at [`MAX_HANDLES_PER_CALL`].
pub(super) fn bounded_table() -> ResourceTable {
    let mut table = ResourceTable::new();
    table.set_max_capacity(MAX_HANDLES_PER_CALL);
    table
}

/// The wasi-http context of one call, with header sets capped at [`MAX_FIELDS_BYTES`].
pub(super) fn http_ctx() -> WasiHttpCtx {
    let mut ctx = WasiHttpCtx::new();
    ctx.set_field_size_limit(MAX_FIELDS_BYTES);
    ctx
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

/// Caps a call's linear memory — all of its memories together — and its tables; remembers
/// whether the cap was hit, so a failed call can be reported as "exceeded its memory limit"
/// rather than as the trap the guest then hits. wasmtime asks about each memory on its own
/// (creation included, from 0): a component of 200 small modules, each with a memory of its
/// own under the cap, took 200 times the cap of host memory.
pub struct MemoryLimiter {
    pub(super) max_bytes: usize,
    pub(super) hit: bool,
    /// Bytes of linear memory the call's memories hold now.
    pub(super) used: usize,
}

impl MemoryLimiter {
    /// A limiter for one call of at most `max_bytes` of linear memory.
    pub(super) fn new(max_bytes: usize) -> Self {
        Self { max_bytes, hit: false, used: 0 }
    }
}

/// How many http-01 answers one call may publish on the process's board (which holds
/// 10,000 for every account together).
pub const MAX_HTTP01_PER_CALL: u32 = 300;

/// Memories, tables and core instances one call may create: what a component built from Rust
/// or C has (one memory, a few tables and instances for its shims), with room to spare.
const MAX_MEMORIES_PER_CALL: u32 = 4;
const MAX_TABLES_PER_CALL: u32 = 32;
const MAX_CORE_INSTANCES_PER_CALL: u32 = 32;

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let after = (self.used - current.min(self.used)).saturating_add(desired);
        if after > self.max_bytes {
            self.hit = true;
            return Ok(false);
        }
        self.used = after;
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES_PER_CALL as usize
    }

    fn tables(&self) -> usize {
        MAX_TABLES_PER_CALL as usize
    }

    fn instances(&self) -> usize {
        MAX_CORE_INSTANCES_PER_CALL as usize
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
        // Per component as per call (`MemoryLimiter`): a component made of many memories is
        // refused when it is loaded, and cannot take the pool's slots from every other account.
        pool.max_memories_per_component(MAX_MEMORIES_PER_CALL);
        pool.max_tables_per_component(MAX_TABLES_PER_CALL);
        pool.max_core_instances_per_component(MAX_CORE_INSTANCES_PER_CALL);
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
        check_header(&bytes).map_err(|e| io(e.to_owned()))?;
        let invalid = |e: wasmtime::Error| io(format!("not a valid component: {}", first_line(&format!("{e:#}"))));
        let Some(dir) = cache_dir else {
            return Component::new(&self.engine, &bytes).map_err(invalid);
        };
        // The compatibility hash is a `Hash` value: feed it to SHA-256 rather than to
        // `DefaultHasher`, whose algorithm may change between Rust releases (and with it every
        // key, leaving the cache cold after a toolchain update).
        let mut engine_hash = Sha256Hasher(Sha256::new());
        self.engine.precompile_compatibility_hash().hash(&mut engine_hash);
        let engine_digest = hex::encode(engine_hash.0.finalize());
        let key = format!("{}-{}.cwasm", hex::encode(Sha256::digest(&bytes)), &engine_digest[..32]);
        let cached = dir.join(&key);
        // A cache directory, or a file in it, that anyone but this user could have written is
        // not used at all: its native code would run inside this process.
        let usable = private_dir(dir);
        if usable && cached.is_file() && written_by_us_only(&cached) {
            // SAFETY: the cache directory and this file are this user's alone (checked just
            // above), and every file in it was written below by this engine configuration (the
            // key includes its compatibility hash); wasmtime checks the header again.
            if let Ok(c) = unsafe { Component::deserialize_file(&self.engine, &cached) } {
                return Ok(c);
            }
        }
        let compiled = self.engine.precompile_component(&bytes).map_err(invalid)?;
        if usable {
            let tmp = dir.join(format!("{key}.tmp{}", std::process::id()));
            let written = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .and_then(|mut f| std::io::Write::write_all(&mut f, &compiled));
            match written {
                Ok(()) => {
                    let _ = std::fs::rename(&tmp, &cached);
                }
                Err(_) => {
                    let _ = std::fs::remove_file(&tmp);
                }
            }
        }
        // SAFETY: `compiled` was produced a moment ago by this very engine.
        unsafe { Component::deserialize(&self.engine, &compiled) }.map_err(|e| io(e.to_string()))
    }
}

/// Creates `dir` (0700) when missing; whether it is this user's and no one else may write
/// to it.
fn private_dir(dir: &Path) -> bool {
    use std::os::unix::fs::DirBuilderExt;
    let _ = std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir);
    let ok = written_by_us_only(dir);
    if !ok {
        tracing::warn!(dir = %dir.display(), "the compiled-component cache is not used: another user owns it or may write to it");
    }
    ok
}

/// Owned by this process's user, and neither group nor others may write to it.
fn written_by_us_only(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    std::fs::metadata(path).is_ok_and(|m| m.uid() == me && m.mode() & 0o022 == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (review of stop 30): each memory was held to the cap on its own, so a
    /// component with many memories could take many times the cap.
    #[test]
    fn the_memory_cap_counts_every_memory_of_the_call_together() {
        const MIB: usize = 1 << 20;
        let mut limiter = MemoryLimiter::new(64 * MIB);
        assert!(limiter.memory_growing(0, 17 * MIB, None).expect("first memory created"));
        assert!(limiter.memory_growing(17 * MIB, 40 * MIB, None).expect("it grows"));
        assert!(limiter.memory_growing(0, 20 * MIB, None).expect("a second memory"));
        assert_eq!(limiter.used, 60 * MIB);
        assert!(!limiter.memory_growing(0, 20 * MIB, None).expect("a third would pass 64 MiB"));
        assert!(!limiter.memory_growing(20 * MIB, 30 * MIB, None).expect("so would growing the second"));
        assert!(limiter.hit);
        assert!(limiter.memory_growing(20 * MIB, 24 * MIB, None).expect("up to the cap is fine"));
        assert_eq!(limiter.used, 64 * MIB);
        assert_eq!((limiter.memories(), limiter.tables(), limiter.instances()), (4, 32, 32));
    }

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

/// Refuses, before the parser sees it, a file that is not a component, saying what it is:
/// the parser's own error for random bytes was eleven lines with a byte array in it, and for
/// a core module it did not say how to build a component.
fn check_header(bytes: &[u8]) -> Result<(), &'static str> {
    match bytes.get(..8) {
        Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => Err(
            "is a core WebAssembly module, not a component: build the connector for the wasm32-wasip2 target (cargo build --release --target wasm32-wasip2)",
        ),
        Some([0, b'a', b's', b'm', ..]) => Ok(()),
        _ => Err("is not a WebAssembly file"),
    }
}

/// The first line of a (possibly multi-line) error text.
fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text).trim_end_matches(':')
}

/// A call's guest stderr, of which only the last [`StderrTail::KEEP`] bytes are kept: the
/// panic message a Rust guest writes there just before it traps, so the trap can say which
/// bug it was. Writes always succeed (a guest that prints much must not fail for it).
#[derive(Clone, Default)]
pub(super) struct StderrTail(Arc<std::sync::Mutex<Vec<u8>>>);

impl StderrTail {
    /// Bytes kept.
    const KEEP: usize = 2048;

    fn push(&self, bytes: &[u8]) {
        // A panic while the buffer was locked cannot leave it half-updated (one extend, one drain).
        let mut tail = self.0.lock().unwrap_or_else(|p| p.into_inner());
        tail.extend_from_slice(&bytes[bytes.len().saturating_sub(Self::KEEP)..]);
        let excess = tail.len().saturating_sub(Self::KEEP);
        if excess > 0 {
            // Whole lines only: a line cut at its start could end in part of a secret, which
            // redaction would not recognise.
            let to = tail[excess..].iter().position(|&b| b == b'\n').map_or(tail.len(), |i| excess + i + 1);
            tail.drain(..to);
        }
    }

    /// The last two lines written (a Rust panic's "panicked at FILE:LINE:" and its message),
    /// without Rust's `note:` hints, on one line; `None` when nothing was written.
    pub(super) fn last_words(&self) -> Option<String> {
        let tail = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let text = String::from_utf8_lossy(&tail);
        let lines: Vec<&str> =
            text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with("note: ")).collect();
        (!lines.is_empty()).then(|| lines[lines.len().saturating_sub(2)..].join(" "))
    }
}

impl wasmtime_wasi::cli::IsTerminal for StderrTail {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for StderrTail {
    fn p2_stream(&self) -> Box<dyn wasmtime_wasi::p2::OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl wasmtime_wasi::p2::OutputStream for StderrTail {
    fn write(&mut self, bytes: bytes::Bytes) -> Result<(), wasmtime_wasi::p2::StreamError> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), wasmtime_wasi::p2::StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, wasmtime_wasi::p2::StreamError> {
        Ok(64 * 1024)
    }
}

#[async_trait::async_trait]
impl wasmtime_wasi::p2::Pollable for StderrTail {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for StderrTail {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.push(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}
