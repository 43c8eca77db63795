//! The production [`ConnectorSource`]: loads each CA account's connector once, by file
//! extension, and hands out the shared instance afterwards (one Python worker, one compiled
//! component per account). A changed account definition loads a fresh connector.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::Mutex;

use super::python::PythonConnector;
use super::wasm::WasmConnector;
use super::{Connector, ConnectorError, ConnectorSource};
use crate::account::AccountDef;

type Loaded = HashMap<String, (AccountDef, Arc<dyn Connector>)>;

/// Loaded connectors keyed by account name.
pub struct Registry {
    /// The `certhost` executable, re-run as `certhost __python-worker` for script connectors.
    worker_exe: PathBuf,
    /// Where compiled components are cached (`None`: compile on every load).
    wasm_cache: Option<PathBuf>,
    loaded: Mutex<Loaded>,
}

impl Registry {
    /// A registry whose Python workers run `worker_exe` (the `certhost` binary) and whose
    /// compiled components are cached in `wasm_cache`.
    pub fn new(worker_exe: PathBuf, wasm_cache: Option<PathBuf>) -> Self {
        Self { worker_exe, wasm_cache, loaded: Mutex::new(HashMap::new()) }
    }

    async fn load(&self, name: &str, def: &AccountDef) -> Result<Arc<dyn Connector>, ConnectorError> {
        match def.connector.extension().and_then(|e| e.to_str()) {
            Some("py") => Ok(Arc::new(PythonConnector::load(&def.connector, &self.worker_exe, def.limits()).await?)),
            Some("wasm") => Ok(Arc::new(
                WasmConnector::load(&def.connector, name, def.limits(), &def.allowed_hosts, self.wasm_cache.as_deref())
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
    async fn connector(&self, name: &str, def: &AccountDef) -> Result<Arc<dyn Connector>, ConnectorError> {
        let mut loaded = self.loaded.lock().await;
        if let Some((_, c)) = loaded.get(name).filter(|(d, _)| d == def) {
            return Ok(Arc::clone(c));
        }
        let c = self.load(name, def).await?;
        loaded.insert(name.to_owned(), (def.clone(), Arc::clone(&c)));
        Ok(c)
    }
}
