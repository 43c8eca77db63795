//! The http-01 answers `serve` publishes, kept in the inventory so that a `serve` restarted
//! while a CA is about to validate still answers it (black-box review of stop 35: the answers
//! lived in memory, and a restart turned every pending validation into a 404 and a failed
//! order). Key authorizations are public by design — the listener gives them to anyone who
//! asks — so they are stored as they are.

use std::path::Path;
use std::sync::mpsc;

use rusqlite::params;

use super::{Inventory, InventoryError};
use crate::connector::challenges::{AnswerStore, SavedAnswer};
use crate::vault::MasterKey;

enum Op {
    Save(SavedAnswer),
    Remove(String),
}

/// Writes answers on a thread of its own, in the order they were published and withdrawn:
/// they are published under the board's lock, inside a connector call.
pub struct InventoryAnswerStore {
    ops: mpsc::Sender<Op>,
}

impl InventoryAnswerStore {
    /// Opens the store's connection and returns what an earlier `serve` kept, lapsed answers
    /// dropped.
    pub fn start(data_dir: &Path, vault: MasterKey) -> Result<(Self, Vec<SavedAnswer>), InventoryError> {
        let inv = Inventory::open(data_dir, vault)?;
        inv.conn.execute("DELETE FROM acme_http01_answers WHERE expires_at <= ?1", [inv.now()])?;
        let saved = inv
            .conn
            .prepare("SELECT token, key_authorization, account, names, expires_at FROM acme_http01_answers")?
            .query_map([], |r| {
                let names: String = r.get(3)?;
                Ok(SavedAnswer {
                    token: r.get(0)?,
                    key_authorization: r.get(1)?,
                    account: r.get(2)?,
                    names: serde_json::from_str(&names).unwrap_or_default(),
                    expires_at: r.get(4)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let (ops, rx) = mpsc::channel::<Op>();
        std::thread::Builder::new()
            .name("acme-answers".into())
            .spawn(move || {
                for op in rx {
                    let done = match &op {
                        Op::Save(a) => inv.conn.execute(
                            "INSERT INTO acme_http01_answers (token, key_authorization, account, names, expires_at)
                             VALUES (?1, ?2, ?3, ?4, ?5)
                             ON CONFLICT (token) DO UPDATE SET key_authorization = excluded.key_authorization,
                                 account = excluded.account, names = excluded.names, expires_at = excluded.expires_at",
                            params![
                                a.token,
                                a.key_authorization,
                                a.account,
                                serde_json::json!(a.names).to_string(),
                                a.expires_at
                            ],
                        ),
                        Op::Remove(token) => {
                            inv.conn.execute("DELETE FROM acme_http01_answers WHERE token = ?1", [token])
                        }
                    };
                    if let Err(e) = done {
                        tracing::warn!("an http-01 answer could not be kept for a restart: {e}");
                    }
                }
            })
            .map_err(|e| InventoryError::Storage(format!("cannot start the http-01 answer writer: {e}")))?;
        Ok((Self { ops }, saved))
    }
}

impl AnswerStore for InventoryAnswerStore {
    fn save(&self, answer: SavedAnswer) {
        // The thread ends only with the process.
        let _ = self.ops.send(Op::Save(answer));
    }

    fn remove(&self, token: &str) {
        let _ = self.ops.send(Op::Remove(token.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_kept_for_the_next_start_until_withdrawn_or_lapsed() {
        let (dir, inv) = crate::inventory::scratch();
        let vault = inv.vault.clone();
        let (store, saved) = InventoryAnswerStore::start(dir.path(), vault.clone()).expect("start");
        assert!(saved.is_empty());
        let answer = |token: &str, expires_at| SavedAnswer {
            token: token.into(),
            key_authorization: format!("{token}.thumb"),
            account: "acme".into(),
            names: vec!["www.example.com".into(), "127.0.0.1".into()],
            expires_at,
        };
        let later = inv.now() + 3600;
        store.save(answer("kept", later));
        store.save(answer("withdrawn", later));
        store.save(answer("lapsed", inv.now() - 1));
        store.remove("withdrawn");
        drop(store);
        // The writer drains its queue once the sender is gone.
        let started = std::time::Instant::now();
        loop {
            let (_, saved) = InventoryAnswerStore::start(dir.path(), vault.clone()).expect("again");
            if saved.len() == 1 {
                assert_eq!(saved[0], answer("kept", later));
                break;
            }
            assert!(started.elapsed() < std::time::Duration::from_secs(5), "{saved:?}");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}
