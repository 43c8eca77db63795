//! The production [`ConnectorSource`]: loads each CA account's connector once, by file
//! extension, and hands out the shared instance afterwards.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{Connector, ConnectorError, ConnectorSource};
use crate::account::AccountDef;

/// Loaded connectors keyed by account name, reloaded when the account's definition changes.
#[derive(Default)]
pub struct Registry {
    loaded: Mutex<HashMap<String, (AccountDef, Arc<dyn Connector>)>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn load(&self, name: &str, def: &AccountDef) -> Result<Arc<dyn Connector>, ConnectorError> {
        let kind = def.connector.extension().and_then(|e| e.to_str()).unwrap_or("");
        Err(ConnectorError::Misconfigured {
            connector: def.connector.display().to_string(),
            message: format!("account {name}: no runtime for .{kind} connectors in this build"),
        })
    }
}

impl ConnectorSource for Registry {
    fn connector(&self, name: &str, def: &AccountDef) -> Result<Arc<dyn Connector>, ConnectorError> {
        let mut loaded = self.loaded.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((cached_def, c)) = loaded.get(name) {
            if cached_def == def {
                return Ok(Arc::clone(c));
            }
        }
        let c = self.load(name, def)?;
        loaded.insert(name.to_owned(), (def.clone(), Arc::clone(&c)));
        Ok(c)
    }
}
