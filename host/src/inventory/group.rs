//! Group commit: many requests' changes, one sync — and the sync off the writer's path.
//!
//! With `synchronous = FULL` every SQLite commit waits for the disk (an fsync, about 0.2 ms
//! here), and SQLite lets one writer in at a time: committing each request's change on its
//! own caps `serve` at a few hundred changes per second however many cores it has. Instead,
//! `serve`'s connections hand their changes ([`Inventory::write`]) to one committer thread,
//! which runs whatever has queued up inside one transaction and commits once. The changes
//! run straight into it; when one fails, the group is rolled back and run again with a
//! savepoint per change, so that the failing change is undone alone (a savepoint for every
//! change every time copied each page it touched into SQLite's sub-journal, 6% of the
//! committer's CPU, for a failure that is rare).
//!
//! Two threads share the work, so the single writer does not wait for the disk:
//! - the **committer** runs a group and commits it with `synchronous = NORMAL` (SQLite writes
//!   the WAL frames but does not wait for the disk) and hands the group's callers to
//! - the **syncer**, which fsyncs the WAL file and only then answers every caller whose
//!   commit came before that fsync began. While it waits for the disk the committer already
//!   runs the next group; one fsync answers every group committed meanwhile.
//!
//! Checkpoints stay on the committer (SQLite's automatic one, every 4,000 WAL pages; with
//! `NORMAL` it syncs the WAL before copying it and the database file after). Run from
//! another connection they never caught up with a writer that commits without pause, so the
//! WAL was never restarted: it grew by 80 MB a second, and every write allocated new blocks.
//!
//! Durability is unchanged: no caller hears "done" before its change is on disk. A change
//! is visible to other connections from its commit, a fraction of a millisecond before it
//! is synced; anything written after it — every later change that could depend on it — is
//! synced no earlier, so what a caller was told stands after a crash. A failed fsync
//! poisons the committer: the write may be lost, so nothing more is accepted (as PostgreSQL
//! does) until `serve` is restarted and SQLite recovers the WAL.

use std::fs::File;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Instant;

use super::{Inventory, InventoryError};

/// Changes committed together at most; more wait for the next group.
const MAX_GROUP: usize = 256;

/// WAL pages after which the committer checkpoints (SQLite's default is 1,000). Every
/// issuance rewrites the same hot pages (the tails of the orders, audit and certificate
/// tables and their sequential indexes); a checkpoint copies each page once however often
/// the WAL holds it, so a longer interval copies fewer pages per issuance. Measured with
/// `bench/http-issuance.sh`-style load at concurrency 8 (committer CPU per issuance):
/// 1,000 → 403–443 µs, 2,000 → 410–421, 4,000 → 379–406, 8,000 → 365–409, 16,000 → 377–387;
/// p99 latency unchanged at 18–27 ms. 4,000 takes most of the gain with a 16 MiB WAL.
const CHECKPOINT_PAGES: i64 = 4000;

/// A queued change: run (again, when its group is rolled back and run once more), then
/// answered once its group's commit is known.
trait Change: Send {
    /// Runs the change and keeps its result: in a savepoint of its own (its own transaction
    /// when none is open) when `isolated`, else straight into the open transaction. False
    /// when it failed or panicked.
    fn run(&mut self, inv: &mut Inventory, isolated: bool) -> bool;
    /// Answers the caller: the kept result if the commit stands, else why it does not.
    fn answer(self: Box<Self>, committed: Result<(), String>);
}

type Job = Box<dyn Change>;

/// A caller's change with its answer channel.
struct Queued<T, F> {
    change: F,
    /// The last run's result; `None` before a run and after a panic (the caller then hears
    /// that the committer dropped its change).
    result: Option<Result<T, InventoryError>>,
    tell: tokio::sync::oneshot::Sender<Result<T, InventoryError>>,
}

impl<T, F> Change for Queued<T, F>
where
    T: Send,
    F: Fn(&mut Inventory) -> Result<T, InventoryError> + Send,
{
    fn run(&mut self, inv: &mut Inventory, isolated: bool) -> bool {
        let change = &self.change;
        let ran = catch_unwind(AssertUnwindSafe(|| if isolated { atomic(inv, change) } else { joined(inv, change) }));
        self.result = ran.ok();
        matches!(self.result, Some(Ok(_)))
    }

    fn answer(self: Box<Self>, committed: Result<(), String>) {
        let answer = match (self.result, committed) {
            (Some(result), Ok(())) => result,
            // Also for a change that never ran (its group failed before its turn).
            (_, Err(reason)) => Err(InventoryError::Storage(reason)),
            // It panicked: dropping `tell` tells the caller the committer dropped it.
            (None, Ok(())) => return,
        };
        // The caller may have gone (request cancelled); the change stands regardless.
        let _ = self.tell.send(answer);
    }
}

/// A committed group waiting for its sync.
struct Committed {
    replies: Vec<Job>,
    changes: usize,
    started: Instant,
}

/// Handle to the committer thread; cheap to clone. The threads end when the last handle is
/// dropped, after the changes already queued.
#[derive(Clone)]
pub struct GroupCommit {
    queue: mpsc::Sender<Job>,
    /// The last change the disk or database refused (full, read-only, failing), and why.
    last_storage_failure: Arc<std::sync::Mutex<Option<(Instant, String)>>>,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GroupCommit")
    }
}

impl GroupCommit {
    /// Starts the committer on its own connection `inv`, with the syncer beside it (threads
    /// of their own: they block on the disk, which must not stall the async runtime).
    pub fn start(inv: Inventory) -> Result<Self, InventoryError> {
        // The syncer makes each group durable; SQLite need not wait for the disk itself.
        inv.conn.pragma_update(None, "synchronous", "NORMAL")?;
        inv.conn.pragma_update(None, "wal_autocheckpoint", CHECKPOINT_PAGES)?;
        let wal = WalFile::new(inv.path());
        let poisoned = Arc::new(AtomicBool::new(false));
        let (queue, jobs) = mpsc::channel::<Job>();
        let (to_sync, to_syncer) = mpsc::channel::<Committed>();
        let spawn = |name: &str, work: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(work)
                .map(drop)
                .map_err(|e| InventoryError::Internal(format!("starting the inventory {name} thread failed: {e}")))
        };
        let flag = Arc::clone(&poisoned);
        spawn("certhost-sync", Box::new(move || syncer(wal, to_syncer, flag)))?;
        spawn("certhost-commit", Box::new(move || committer(inv, jobs, to_sync, poisoned)))?;
        Ok(Self { queue, last_storage_failure: Arc::default() })
    }

    /// Why the last change the disk or database refused failed, if one did within `window`:
    /// `/readyz`'s probe rewrites one small row, which a full disk can still take into the
    /// write-ahead log's allocated pages while every issuance fails (day-two walkthrough of
    /// stop 49: 674 answers of 503 "disk is full" beside a ready `/readyz`).
    pub(crate) fn storage_failure_within(&self, window: std::time::Duration) -> Option<String> {
        let last = self.last_storage_failure.lock().unwrap_or_else(|p| p.into_inner());
        last.as_ref().filter(|(at, _)| at.elapsed() < window).map(|(_, why)| why.clone())
    }

    /// Runs `change` in the next group and returns its result once the group is synced.
    /// `change` may run twice: when another change of its group fails, the group is rolled
    /// back and run again (see [`committer`]).
    pub(crate) async fn run<T, F>(&self, change: F) -> Result<T, InventoryError>
    where
        T: Send + 'static,
        F: Fn(&mut Inventory) -> Result<T, InventoryError> + Send + 'static,
    {
        let (tell, told) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(Queued { change, result: None, tell });
        self.queue.send(job).map_err(|_| InventoryError::Storage("the inventory committer has stopped".into()))?;
        let result =
            told.await.map_err(|_| InventoryError::Storage("the inventory committer dropped a change".into()))?;
        if let Err(e) = &result
            && e.is_storage_failure()
        {
            // A poisoned lock held one assignment at most: the value is whole.
            *self.last_storage_failure.lock().unwrap_or_else(|p| p.into_inner()) =
                Some((Instant::now(), e.to_string()));
        }
        result
    }
}

/// The sentence every caller gets once a sync has failed.
const POISONED: &str = "an earlier sync of the database to disk failed, so certhost accepts no more changes; \
                        restart certhost serve (SQLite recovers the database at open)";

fn committer(
    mut inv: Inventory,
    jobs: mpsc::Receiver<Job>,
    to_sync: mpsc::Sender<Committed>,
    poisoned: Arc<AtomicBool>,
) {
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        if poisoned.load(Ordering::Acquire) {
            // Each change runs only to be undone, so that its caller hears why.
            // (Without a transaction to undo them in they are dropped unrun: their callers
            // hear that the committer dropped their change.)
            if inv.conn.execute_batch("BEGIN IMMEDIATE").is_err() {
                continue;
            }
            // Should SQLite roll the transaction back itself, the rest are answered unrun.
            if run_isolated(&mut inv, &mut group) {
                let _ = inv.conn.execute_batch("ROLLBACK");
            }
            for job in group {
                job.answer(Err(POISONED.to_owned()));
            }
            continue;
        }
        let started = Instant::now();
        let changes = group.len();
        if changes == 1 {
            // Alone, a change is its own transaction (`atomic` begins and commits it): no
            // savepoint to keep it apart from others, so no copy of every page it touches.
            run_alone(&mut inv, group, &to_sync, &poisoned, started);
            continue;
        }
        if let Err(e) = inv.conn.execute_batch("BEGIN IMMEDIATE") {
            // Not even the write lock (another process held it past the busy timeout): each
            // change gets its own attempt and its own error, synced like a group.
            tracing::warn!(error = %e, "group commit could not begin; committing changes one by one");
            run_alone(&mut inv, group, &to_sync, &poisoned, started);
            continue;
        }
        // Optimistically, each change straight into the transaction: a savepoint would copy
        // every page a change first touches into SQLite's sub-journal, only to undo a change
        // that fails, which is rare. When one does fail, the group is rolled back and run
        // again with a savepoint per change, so that the failing one is undone alone.
        if !group.iter_mut().all(|job| job.run(&mut inv, false)) {
            if !inv.conn.is_autocommit() && inv.conn.execute_batch("ROLLBACK").is_err() {
                poisoned.store(true, Ordering::Release);
                tracing::error!("a group's transaction could not be rolled back; {POISONED}");
                for job in group {
                    job.answer(Err("the database transaction could not be ended, nothing was stored".to_owned()));
                }
                continue;
            }
            if let Err(e) = inv.conn.execute_batch("BEGIN IMMEDIATE") {
                tracing::warn!(error = %e, "group commit could not begin again; committing changes one by one");
                run_alone(&mut inv, group, &to_sync, &poisoned, started);
                continue;
            }
            if !run_isolated(&mut inv, &mut group) {
                tracing::warn!("the database rolled back a group's transaction; committing its changes one by one");
                run_alone(&mut inv, group, &to_sync, &poisoned, started);
                continue;
            }
        }
        match inv.conn.execute_batch("COMMIT") {
            // The syncer answers once the group is on disk. It only stops after this thread
            // (the channel's one sender) does, so the send cannot fail while we run.
            Ok(()) => {
                let _ = to_sync.send(Committed { replies: group, changes, started });
            }
            Err(e) => {
                let _ = inv.conn.execute_batch("ROLLBACK");
                let reason = format!("committing to the database failed, nothing was stored: {e}");
                for job in group {
                    job.answer(Err(reason.clone()));
                }
            }
        }
    }
}

/// Runs each change in a savepoint of its own inside the open transaction. Stops, and says
/// false, when the transaction is gone: an error such as a full disk makes SQLite roll back
/// the whole of it, so the changes so far are undone and a later one would commit on its own.
fn run_isolated(inv: &mut Inventory, group: &mut [Job]) -> bool {
    for job in group {
        job.run(inv, true);
        if inv.conn.is_autocommit() {
            return false;
        }
    }
    true
}

/// Runs each change as a transaction of its own (no transaction is open) and hands them to
/// the syncer — unless one of them could not end its transaction (a failed ROLLBACK after a
/// failed COMMIT): then every later change would run inside it, never committed. It is
/// rolled back and these changes' callers hear so; if even that fails, the committer accepts
/// nothing more.
fn run_alone(
    inv: &mut Inventory,
    mut replies: Vec<Job>,
    to_sync: &mpsc::Sender<Committed>,
    poisoned: &AtomicBool,
    started: Instant,
) {
    for job in &mut replies {
        job.run(inv, true);
    }
    if inv.conn.is_autocommit() {
        let changes = replies.len();
        let _ = to_sync.send(Committed { replies, changes, started });
        return;
    }
    let undone = inv.conn.execute_batch("ROLLBACK");
    if undone.is_err() || !inv.conn.is_autocommit() {
        poisoned.store(true, Ordering::Release);
        tracing::error!("a change's transaction could not be ended; {POISONED}");
    }
    for job in replies {
        job.answer(Err("the database transaction could not be ended, nothing was stored".to_owned()));
    }
}

/// The WAL file that the committer's commits append to, opened for `fsync` (any descriptor of
/// a file syncs all of its written pages). Opened again when SQLite has made a new one.
struct WalFile {
    path: PathBuf,
    file: Option<(File, u64)>,
}

impl WalFile {
    fn new(db: &Path) -> Self {
        let mut path = db.as_os_str().to_owned();
        path.push("-wal");
        Self { path: PathBuf::from(path), file: None }
    }

    fn sync(&mut self) -> Result<(), String> {
        use std::os::unix::fs::MetadataExt;
        let fail =
            |e: std::io::Error| format!("syncing the database's write-ahead log {} failed: {e}", self.path.display());
        // The committer's connection keeps the WAL in place for as long as it is open; the
        // check guards against a file replaced behind our back all the same.
        let inode = std::fs::metadata(&self.path).map_err(fail)?.ino();
        let (file, new) = match self.file.take() {
            Some((file, known)) if known == inode => (file, false),
            _ => (File::open(&self.path).map_err(fail)?, true),
        };
        let synced = file.sync_data().map_err(fail);
        // A WAL this syncer has not synced before may be new — each clean stop deletes it and
        // the next start makes another —, and its name is only durable once its directory is
        // synced: on a file system that needs that, a power loss would lose the whole WAL,
        // answered commits included. SQLite syncs the directory itself only at the first
        // checkpoint, about a thousand issuances later.
        let synced = match (synced, new) {
            (Ok(()), true) => {
                self.path.parent().map_or(Ok(()), |dir| File::open(dir).and_then(|d| d.sync_all())).map_err(fail)
            }
            (synced, _) => synced,
        };
        self.file = Some((file, inode));
        synced
    }
}

fn syncer(mut wal: WalFile, groups: mpsc::Receiver<Committed>, poisoned: Arc<AtomicBool>) {
    // Once a sync has failed, no later one vouches for anything: the groups committed before
    // the committer stopped follow the lost frames in the WAL's checksum chain, and SQLite's
    // recovery after a crash would drop them with those.
    let mut failed: Option<String> = None;
    while let Ok(first) = groups.recv() {
        // Every group committed so far is in the WAL file: one fsync makes them all durable.
        let mut batch = vec![first];
        batch.extend(groups.try_iter());
        let synced = match &failed {
            Some(e) => Err(e.clone()),
            None => wal.sync(),
        };
        if let (Err(e), None) = (&synced, &failed) {
            poisoned.store(true, Ordering::Release);
            tracing::error!(error = %e, "{POISONED}");
            failed = Some(e.clone());
        }
        let answer = synced.map_err(|e| format!("{e}; the change may not survive a crash"));
        for group in batch {
            crate::metrics::group_commit(group.changes, group.started.elapsed());
            for job in group.replies {
                job.answer(answer.clone());
            }
        }
    }
}

/// Runs `change` inside the open transaction with no savepoint of its own (its steps join
/// the transaction too): what it wrote stays until the transaction ends, even if it fails.
fn joined<T>(
    inv: &mut Inventory,
    change: impl FnOnce(&mut Inventory) -> Result<T, InventoryError>,
) -> Result<T, InventoryError> {
    let _scope = ChangeScope::enter();
    change(inv)
}

thread_local! {
    /// Whether this thread is running a change inside [`atomic`] (see [`in_change`]).
    static IN_CHANGE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// True while this thread runs a change inside [`atomic`]: the steps of the change join its
/// transaction (`WriteTx::Joined`) instead of opening savepoints of their own.
pub(super) fn in_change() -> bool {
    IN_CHANGE.with(std::cell::Cell::get)
}

/// Marks the thread as inside a change until dropped (also when the change panics).
struct ChangeScope(bool);

impl ChangeScope {
    fn enter() -> Self {
        Self(IN_CHANGE.with(|c| c.replace(true)))
    }
}

impl Drop for ChangeScope {
    fn drop(&mut self) {
        IN_CHANGE.with(|c| c.set(self.0));
    }
}

/// Runs `change` as one unit: all of its writes stand, or — when it fails or panics — none.
/// Inside a group that is a savepoint; on its own, an IMMEDIATE transaction.
pub(super) fn atomic<T>(
    inv: &mut Inventory,
    change: impl FnOnce(&mut Inventory) -> Result<T, InventoryError>,
) -> Result<T, InventoryError> {
    let nested = !inv.conn.is_autocommit();
    // Cached statements: these run twice per change, and parsing them showed in profiles.
    let run = |inv: &Inventory, sql: &str| inv.conn.prepare_cached(sql).and_then(|mut s| s.execute([])).map(drop);
    run(inv, if nested { "SAVEPOINT change" } else { "BEGIN IMMEDIATE" })?;
    let result = {
        let _scope = ChangeScope::enter();
        catch_unwind(AssertUnwindSafe(|| change(&mut *inv)))
    };
    let keep = matches!(result, Ok(Ok(_)));
    let ended = match (nested, keep) {
        (true, true) => run(inv, "RELEASE change"),
        (true, false) => {
            let undone = run(inv, "ROLLBACK TO change").and_then(|()| run(inv, "RELEASE change"));
            if undone.is_err() && !inv.conn.is_autocommit() {
                // The failed change's writes cannot be undone alone, so none of the
                // transaction may commit: it goes whole (the committer then runs its group
                // one change per transaction).
                let _ = run(inv, "ROLLBACK");
            }
            undone
        }
        (false, true) => {
            let committed = run(inv, "COMMIT");
            if committed.is_err() && !inv.conn.is_autocommit() {
                // A failed COMMIT can leave the transaction open: nothing of it may stay.
                let _ = run(inv, "ROLLBACK");
            }
            committed
        }
        (false, false) => run(inv, "ROLLBACK"),
    };
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

    /// What a group's callers heard (`None`: the change was dropped), and the audit events
    /// the database holds afterwards, by action.
    struct GroupRun {
        answers: Vec<Option<Result<usize, InventoryError>>>,
        groups: Vec<usize>,
        dir: tempfile::TempDir,
    }

    impl GroupRun {
        fn count(&self, action: &str) -> i64 {
            // The scratch inventory's master key is not at hand: a plain connection counts.
            let conn = rusqlite::Connection::open(self.dir.path().join(super::super::DB_FILE)).expect("open");
            conn.query_row("SELECT COUNT(*) FROM audit_events WHERE action = ?1", [action], |r| r.get(0))
                .expect("count")
        }
    }

    /// Queues `n` changes, `change(i, inv)`, before the committer looks (so they make one
    /// group), runs the committer until the queue is done and answers its groups as synced.
    fn one_group<F>(n: usize, change: F) -> GroupRun
    where
        F: Fn(usize, &mut Inventory) -> Result<usize, InventoryError> + Send + Sync + Copy + 'static,
    {
        let (dir, inv) = super::super::scratch();
        let (queue, jobs) = mpsc::channel::<Job>();
        let mut told = Vec::new();
        for i in 0..n {
            let (tell, answer) = tokio::sync::oneshot::channel();
            let change = move |inv: &mut Inventory| change(i, inv);
            queue.send(Box::new(Queued { change, result: None, tell })).expect("queued");
            told.push(answer);
        }
        drop(queue);
        let (to_sync, synced) = mpsc::channel();
        committer(inv, jobs, to_sync, Arc::new(AtomicBool::new(false)));
        let mut groups = Vec::new();
        for group in synced.try_iter() {
            groups.push(group.changes);
            for job in group.replies {
                job.answer(Ok(()));
            }
        }
        let answers = told.into_iter().map(|mut a| a.try_recv().ok()).collect();
        GroupRun { answers, groups, dir }
    }

    /// One group: it runs without savepoints and, when one change fails (or panics) after
    /// writing, again with them — each change's writes then stand exactly once, the failing
    /// one's not at all, and every caller hears its own result from the run that was
    /// committed.
    #[test]
    fn a_group_with_a_failing_change_is_run_again_with_each_change_apart() {
        let run = one_group(6, |i, inv| {
            inv.audit(&event("kept"))?;
            match i {
                2 => {
                    inv.audit(&event("undone"))?;
                    Err(InventoryError::Invalid(format!("change {i} refused")))
                }
                4 if inv.path().exists() => {
                    inv.audit(&event("undone"))?;
                    panic!("change {i} panicked")
                }
                _ => Ok(i),
            }
        });
        assert_eq!(run.groups, [6], "one group of six");
        for (i, answer) in run.answers.iter().enumerate() {
            match (i, answer) {
                (2, Some(Err(e))) => assert_eq!(e.to_string(), "change 2 refused"),
                (4, None) => {} // a panicking change's caller hears it was dropped
                (_, Some(Ok(v))) => assert_eq!(*v, i),
                other => panic!("unexpected answer {other:?}"),
            }
        }
        assert_eq!(run.count("kept"), 4, "the four changes that succeeded, once each");
        assert_eq!(run.count("undone"), 0);
    }

    /// A failing change whose savepoint cannot be rolled back to (here it released it
    /// itself) must not leave its writes in the group's transaction: the transaction goes
    /// whole, and the group runs one change per transaction.
    #[test]
    fn a_failed_change_that_cannot_be_undone_alone_takes_its_group_transaction_with_it() {
        let run = one_group(3, |i, inv| {
            if i == 0 {
                inv.audit(&event("kept"))?;
                return Ok(i);
            }
            inv.audit(&event("undone"))?;
            if i == 2 {
                inv.conn.execute_batch("RELEASE change")?;
            }
            Err(InventoryError::Invalid("refused".into()))
        });
        assert!(matches!(run.answers[0], Some(Ok(0))));
        assert!(matches!(run.answers[1], Some(Err(_))) && matches!(run.answers[2], Some(Err(_))));
        assert_eq!(run.count("kept"), 1);
        assert_eq!(run.count("undone"), 0, "no failed change's writes were committed");
    }

    /// One change at a time: each is alone in its group, its own transaction, and its steps
    /// (here `create_token`, a change of its own elsewhere) join it without savepoints.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_change_alone_is_undone_whole_when_a_later_step_fails_or_panics() {
        use crate::inventory::Role;
        let dir = tempfile::tempdir().expect("tempdir");
        let key = MasterKey::generate();
        let first = Inventory::open(dir.path(), key.clone()).expect("open");
        let pool = super::super::InventoryPool::new(first, key, 2).expect("pool");
        let mut inv = pool.get().await.expect("connection");
        let failed = inv
            .write(|inv| {
                inv.create_token("failed", Role::Auditor, None, "test")?;
                Err::<(), _>(InventoryError::Invalid("a later step failed".into()))
            })
            .await;
        assert_eq!(failed.expect_err("refused").to_string(), "a later step failed");
        let panicked = inv
            .write(|inv| {
                inv.create_token("panicked", Role::Auditor, None, "test")?;
                if inv.path().exists() {
                    panic!("a later step panicked");
                }
                Ok(())
            })
            .await;
        assert!(panicked.is_err(), "the caller of a panicking change hears of it");
        inv.write(|inv| inv.create_token("kept", Role::Auditor, None, "test").map(drop)).await.expect("kept");
        let names: Vec<String> = inv.tokens().expect("tokens").into_iter().map(|t| t.name).collect();
        assert_eq!(names, ["kept"]);
        let audited: i64 = inv
            .conn
            .query_row("SELECT COUNT(*) FROM audit_events WHERE action = 'token.create'", [], |r| r.get(0))
            .expect("count");
        assert_eq!(audited, 1, "the undone changes' audit events went with them");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_sync_is_reported_and_then_every_change_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = MasterKey::generate();
        let first = Inventory::open(dir.path(), key.clone()).expect("open");
        let pool = super::super::InventoryPool::new(first, key, 2).expect("pool");
        let mut inv = pool.get().await.expect("connection");
        inv.write(|inv| inv.audit(&event("synced"))).await.expect("a change before the fault");
        // The fault: the WAL file vanishes from under the database, so it cannot be synced.
        std::fs::remove_file(dir.path().join("certhost.db-wal")).expect("remove the WAL");
        let failed = inv.write(|inv| inv.audit(&event("unsynced"))).await.expect_err("the sync fails");
        let message = failed.to_string();
        assert!(matches!(failed, InventoryError::Storage(_)), "the server's trouble, not the request's: {failed:?}");
        assert!(message.contains("syncing the database's write-ahead log"), "{message}");
        assert!(message.contains("may not survive a crash"), "{message}");
        let refused = inv.write(|inv| inv.audit(&event("refused"))).await.expect_err("refused after the fault");
        assert!(refused.to_string().contains("accepts no more changes"), "{refused}");
        let n: i64 = inv
            .conn
            .query_row("SELECT COUNT(*) FROM audit_events WHERE action = 'refused'", [], |r| r.get(0))
            .expect("count");
        assert_eq!(n, 0, "a refused change is undone");
    }

    #[test]
    fn without_a_committer_a_change_is_still_all_or_nothing() {
        let (_dir, mut inv) = super::super::scratch();
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
