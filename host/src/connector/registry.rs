//! The production [`ConnectorSource`]: loads each CA account's connector once, by file
//! extension, and hands out the shared instance afterwards (one Python worker, one compiled
//! component per account). A changed account definition loads a fresh connector, and so does a
//! changed connector file (an edited script, a rebuilt component), seen by its stamp (device,
//! inode, size, modification and change times) at each lookup: the next call runs the code on
//! disk and `describe` tells what that code declares.
//!
//! Loading can be slow (a Python script's imports get up to 30 s), so each account has its
//! own slot: the map of slots is locked only to find or create a slot, never across a load.
//! A load holds its account's slot, so concurrent first uses of one account load it once,
//! while lookups of every other account go on.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex as SyncMutex};

use async_trait::async_trait;
use tokio::sync::Mutex;

use super::cache::{AccountCache, CacheStore, MemoryStore};
use super::gate::{Gate, Gated, SCRIPT_CALLS_PER_ACCOUNT, WASM_CALLS_PER_ACCOUNT};
use super::python::PythonConnector;
use super::wasm::WasmConnector;
use super::{Connector, ConnectorError, ConnectorSource};
use crate::account::AccountDef;
use crate::param::FileStamp;

/// One account's loaded connector — or its failed load, with when it failed — with the
/// definition and the connector file's stamp it was loaded for.
type Slot = Arc<Mutex<Option<(AccountDef, Option<FileStamp>, Loaded)>>>;

/// What the last load of an account's connector gave.
type Loaded = Result<Arc<dyn Connector>, (std::time::Instant, ConnectorError)>;

/// How long a failed load is answered from memory for the same definition and file: each
/// caller queued behind a script whose import hangs tried the import again, one after another,
/// each for its full deadline — five requests took 150 s (hostile-script review of stop 40).
/// An edit of the file or the account is tried at once.
const LOAD_FAILURE_KEPT: std::time::Duration = std::time::Duration::from_secs(30);

/// Loaded connectors keyed by account name.
pub struct Registry {
    /// The `certhost` executable, re-run as `certhost __python-worker` for script connectors.
    worker_exe: PathBuf,
    /// Where compiled components are cached (`None`: compile on every load).
    wasm_cache: Option<PathBuf>,
    /// Account name → its slot. A std mutex: held only to look up or insert, never awaited.
    slots: SyncMutex<HashMap<String, Slot>>,
    /// Account name → its call slots, kept across reloads of its connector: calls of the old
    /// code still in flight count against the new.
    gates: SyncMutex<HashMap<String, Arc<Gate>>>,
    /// Where accounts' caches live: the inventory for `certhost` commands, this process's
    /// memory without a data directory.
    caches: Arc<dyn CacheStore>,
}

impl Registry {
    /// A registry whose Python workers run `worker_exe` (the `certhost` binary) and whose
    /// compiled components are cached in `wasm_cache`.
    pub fn new(worker_exe: PathBuf, wasm_cache: Option<PathBuf>) -> Self {
        Self {
            worker_exe,
            wasm_cache,
            slots: SyncMutex::new(HashMap::new()),
            gates: SyncMutex::new(HashMap::new()),
            caches: Arc::new(MemoryStore::default()),
        }
    }

    /// Keeps accounts' caches in `store` instead of this process's memory.
    #[must_use]
    pub fn with_cache_store(mut self, store: Arc<dyn CacheStore>) -> Self {
        self.caches = store;
        self
    }

    fn slot(&self, name: &str) -> Slot {
        // A panic while the map was locked cannot leave it half-updated (one insert).
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(slots.entry(name.to_owned()).or_default())
    }

    /// Account `name`'s gate, made for `def`'s runtime on first use.
    fn gate(&self, name: &str, def: &AccountDef) -> Arc<Gate> {
        let (limit, queues) =
            if def.is_python() { (SCRIPT_CALLS_PER_ACCOUNT, false) } else { (WASM_CALLS_PER_ACCOUNT, true) };
        // As in `slot`: one insert cannot be left half-done.
        let mut gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
        let gate = gates.entry(name.to_owned()).or_insert_with(|| Arc::new(Gate::new(limit, queues)));
        if gate.limit() != limit {
            // The account changed runtime (a .py became a .wasm): the other runtime's gate.
            *gate = Arc::new(Gate::new(limit, queues));
        }
        Arc::clone(gate)
    }

    /// The gate of account `name` when its marks are of definition `def`. An account edited
    /// since its connector was loaded (a fixed URL, say) has none: the marks are of the old
    /// definition, and are dropped when the new one loads. A slot being loaded right now is
    /// taken as it was.
    fn current_gate(&self, name: &str, def: &AccountDef) -> Option<Arc<Gate>> {
        let slot = self.slots.lock().unwrap_or_else(|p| p.into_inner()).get(name).cloned();
        if let Some(slot) = slot
            && let Ok(loaded) = slot.try_lock()
            && loaded.as_ref().is_some_and(|(d, _, _)| d != def)
        {
            return None;
        }
        // As in `gate`: a lookup cannot leave the map half-updated.
        self.gates.lock().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }

    /// The connector of account `name`, behind its gate.
    async fn load(&self, name: &str, def: &AccountDef) -> Result<Arc<dyn Connector>, ConnectorError> {
        let inner = self.load_ungated(name, def).await?;
        Ok(Arc::new(Gated::new(inner, self.gate(name, def), def.limits().timeout)))
    }

    async fn load_ungated(&self, name: &str, def: &AccountDef) -> Result<Arc<dyn Connector>, ConnectorError> {
        let caches = Arc::clone(&self.caches);
        match tokio::task::spawn_blocking(move || caches.prepare()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(account = %name, "the connector cache cannot be opened: {e}"),
            Err(e) => tracing::warn!(account = %name, "the connector cache cannot be opened: {e}"),
        }
        let cache = AccountCache::new(Arc::clone(&self.caches), name);
        match def.connector.extension().and_then(|e| e.to_str()) {
            Some("py") => {
                Ok(Arc::new(PythonConnector::load(&def.connector, &self.worker_exe, def.limits(), cache).await?))
            }
            Some("wasm") => Ok(Arc::new(
                WasmConnector::load_with_trust(
                    &def.connector,
                    name,
                    def.limits(),
                    &def.allowed_hosts,
                    &def.extra_ca_pems,
                    self.wasm_cache.as_deref(),
                    cache,
                )
                .await?,
            )),
            other => Err(ConnectorError::Misconfigured {
                connector: format!("account {name}"),
                message: format!(
                    "no runtime for {} connectors in this build",
                    other.map(|e| format!(".{e}")).unwrap_or_else(|| "extension-less".into())
                ),
            }),
        }
    }
}

#[async_trait]
impl ConnectorSource for Registry {
    fn tried_last(&self, name: &str, def: &AccountDef) -> Option<std::time::Duration> {
        self.current_gate(name, def)?.tried_last()
    }

    fn succeeded_at(&self, name: &str, def: &AccountDef) -> Option<i64> {
        self.current_gate(name, def)?.succeeded_at()
    }

    fn load_failure(&self, name: &str, def: &AccountDef) -> Option<String> {
        let slot = self.slots.lock().unwrap_or_else(|p| p.into_inner()).get(name).cloned()?;
        // A slot being loaded right now says nothing yet.
        let loaded = slot.try_lock().ok()?;
        let (loaded_def, loaded_stamp, Err((_, error))) = loaded.as_ref()? else { return None };
        let stamp = std::fs::metadata(&def.connector).ok().map(|m| FileStamp::of(&m));
        (loaded_def == def && *loaded_stamp == stamp).then(|| error.to_string())
    }

    async fn connector(&self, name: &str, def: &AccountDef) -> Result<Arc<dyn Connector>, ConnectorError> {
        let slot = self.slot(name);
        // Held across the load: a second caller for this account waits here and then finds
        // the connector the first one loaded.
        let mut loaded = slot.lock().await;
        // Taken before the load: a change made during it is seen by the next lookup.
        let stamp = std::fs::metadata(&def.connector).ok().map(|m| FileStamp::of(&m));
        match loaded.as_ref().filter(|(d, s, _)| d == def && *s == stamp).map(|(_, _, l)| l) {
            Some(Ok(c)) => return Ok(Arc::clone(c)),
            Some(Err((at, e))) if at.elapsed() < LOAD_FAILURE_KEPT => return Err(e.clone()),
            _ => {}
        }
        if loaded.as_ref().is_some_and(|(d, _, _)| d != def)
            && let Some(gate) = self.gates.lock().unwrap_or_else(|p| p.into_inner()).get(name)
        {
            // What calls found was of the old definition (see `tried_last`).
            gate.forget_calls();
        }
        // A script's import error can be as long as it likes: cut as the pipeline cuts calls'.
        match self.load(name, def).await.map_err(ConnectorError::bounded) {
            Ok(c) => {
                *loaded = Some((def.clone(), stamp, Ok(Arc::clone(&c))));
                Ok(c)
            }
            Err(e) => {
                *loaded = Some((def.clone(), stamp, Err((std::time::Instant::now(), e.clone()))));
                Err(e)
            }
        }
    }
}
