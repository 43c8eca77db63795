//! Group commit: many requests' changes, one sync.
//!
//! With `synchronous = FULL` every SQLite commit waits for the disk (an fsync, about 0.2 ms
//! here), and SQLite lets one writer in at a time: committing each request's change on its
//! own caps `serve` at a few hundred changes per second however many cores it has. Instead,
//! `serve`'s connections hand their changes ([`Inventory::write`]) to one committer thread,
//! which runs whatever has queued up inside one transaction — each change in a savepoint of
//! its own, so a failing change is undone alone — commits once, and only then answers every
//! caller. Durability is unchanged: no caller hears "done" before its change is on disk.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;

use super::{Inventory, InventoryError};

/// Changes committed together at most; more wait for the next sync.
const MAX_GROUP: usize = 256;

/// What a queued change hands back after running: the step that answers its caller once the
/// group's commit is known.
type Reply = Box<dyn FnOnce(Result<(), String>) + Send>;
type Job = Box<dyn FnOnce(&mut Inventory) -> Reply + Send>;

/// Handle to the committer thread; cheap to clone. The thread ends when the last handle is
/// dropped, after the changes already queued.
#[derive(Clone)]
pub struct GroupCommit {
    queue: mpsc::Sender<Job>,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GroupCommit")
    }
}

impl GroupCommit {
    /// Starts the committer on its own connection `inv` (its own thread: commits block on the
    /// disk, which must not stall the async runtime).
    pub fn start(inv: Inventory) -> Result<Self, InventoryError> {
        let (queue, jobs) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("certhost-commit".into())
            .spawn(move || committer(inv, jobs))
            .map_err(|e| InventoryError::Invalid(format!("starting the inventory committer failed: {e}")))?;
        Ok(Self { queue })
    }

    /// Runs `change` in the next group and returns its result once the group is committed.
    pub(crate) async fn run<T, F>(&self, change: F) -> Result<T, InventoryError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Inventory) -> Result<T, InventoryError> + Send + 'static,
    {
        let (tell, told) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |inv| {
            let result = atomic(inv, change);
            Box::new(move |committed: Result<(), String>| {
                let answer = match committed {
                    Ok(()) => result,
                    Err(reason) => Err(InventoryError::Invalid(reason)),
                };
                // The caller may have gone (request cancelled); the change stands regardless.
                let _ = tell.send(answer);
            })
        });
        self.queue.send(job).map_err(|_| InventoryError::Invalid("the inventory committer has stopped".into()))?;
        told.await.map_err(|_| InventoryError::Invalid("the inventory committer dropped a change".into()))?
    }
}

fn committer(mut inv: Inventory, jobs: mpsc::Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let started = std::time::Instant::now();
        let changes = group.len();
        if let Err(e) = inv.conn.execute_batch("BEGIN IMMEDIATE") {
            // Not even the write lock (another process held it past the busy timeout): each
            // change gets its own attempt and its own error.
            tracing::warn!(error = %e, "group commit could not begin; committing changes one by one");
            for job in group {
                run_one(&mut inv, job)(Ok(()));
            }
            continue;
        }
        let replies: Vec<Reply> = group.into_iter().map(|job| run_one(&mut inv, job)).collect();
        let committed = inv.conn.execute_batch("COMMIT").map_err(|e| {
            let _ = inv.conn.execute_batch("ROLLBACK");
            format!("committing to the database failed, nothing was stored: {e}")
        });
        crate::metrics::group_commit(changes, started.elapsed());
        for reply in replies {
            reply(committed.clone());
        }
    }
}

/// Runs one change; a change that panics is undone and its caller sees an error, while the
/// group goes on.
fn run_one(inv: &mut Inventory, job: Job) -> Reply {
    match catch_unwind(AssertUnwindSafe(|| job(inv))) {
        Ok(reply) => reply,
        // The job's answer channel was dropped while unwinding: its caller gets "dropped".
        Err(_) => Box::new(|_| {}),
    }
}

/// Runs `change` as one unit: all of its writes stand, or — when it fails or panics — none.
/// Inside a group that is a savepoint; on its own, an IMMEDIATE transaction.
pub(super) fn atomic<T>(
    inv: &mut Inventory,
    change: impl FnOnce(&mut Inventory) -> Result<T, InventoryError>,
) -> Result<T, InventoryError> {
    let nested = !inv.conn.is_autocommit();
    inv.conn.execute_batch(if nested { "SAVEPOINT change" } else { "BEGIN IMMEDIATE" })?;
    let result = catch_unwind(AssertUnwindSafe(|| change(&mut *inv)));
    let keep = matches!(result, Ok(Ok(_)));
    let end = match (nested, keep) {
        (true, true) => "RELEASE change",
        (true, false) => "ROLLBACK TO change; RELEASE change",
        (false, true) => "COMMIT",
        (false, false) => "ROLLBACK",
    };
    let ended = inv.conn.execute_batch(end);
    match result {
        Err(panic) => std::panic::resume_unwind(panic),
        Ok(Ok(value)) => {
            ended?;
            Ok(value)
        }
        Ok(Err(e)) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::NewAuditEvent;
    use crate::vault::MasterKey;

    fn event(action: &str) -> NewAuditEvent<'_> {
        NewAuditEvent {
            actor: "test",
            action,
            object_type: "test",
            object_id: None,
            outcome: "success",
            detail: serde_json::Value::Null,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_changes_commit_together_and_a_failing_one_is_undone_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = MasterKey::generate();
        let first = Inventory::open(dir.path(), key.clone()).expect("open");
        let pool = super::super::InventoryPool::new(first, key.clone(), 4).expect("pool");
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let pool = pool.clone();
                tokio::spawn(async move {
                    let mut inv = pool.get().await.expect("connection");
                    inv.write(move |inv| {
                        inv.audit(&event("kept"))?;
                        // Every tenth change fails after writing: its write must not survive.
                        if i % 10 == 0 {
                            inv.audit(&event("undone"))?;
                            return Err(InventoryError::Invalid(format!("change {i} refused")));
                        }
                        Ok(i)
                    })
                    .await
                })
            })
            .collect();
        let mut ok = 0;
        for (i, t) in tasks.into_iter().enumerate() {
            match t.await.expect("task") {
                Ok(v) => {
                    assert_eq!(v, i);
                    ok += 1;
                }
                Err(e) => assert_eq!(e.to_string(), format!("change {i} refused")),
            }
        }
        assert_eq!(ok, 180);
        // What callers were told is what another connection reads.
        let reader = Inventory::open(dir.path(), key).expect("open");
        let count = |action: &str| -> i64 {
            reader
                .conn
                .query_row("SELECT COUNT(*) FROM audit_events WHERE action = ?1", [action], |r| r.get(0))
                .expect("count")
        };
        assert_eq!(count("kept"), 180, "the failing changes' first writes were undone too");
        assert_eq!(count("undone"), 0);
    }

    #[test]
    fn without_a_committer_a_change_is_still_all_or_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut inv = Inventory::open(dir.path(), MasterKey::generate()).expect("open");
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        let failed = runtime.block_on(inv.write(|inv| {
            inv.audit(&event("undone"))?;
            Err::<(), _>(InventoryError::Invalid("no".into()))
        }));
        assert!(failed.is_err());
        runtime.block_on(inv.write(|inv| inv.audit(&event("kept")))).expect("kept");
        let n: i64 = inv
            .conn
            .query_row("SELECT COUNT(*) FROM audit_events WHERE action IN ('kept', 'undone')", [], |r| r.get(0))
            .expect("count");
        assert_eq!(n, 1);
    }
}
