//! Who has a data directory open: every process that has the inventory open holds a shared
//! lock on `certhost.lock` for as long as any of its connections is open, and
//! `certhost master-key rotate`, `certhost restore` and a schema migration take it
//! exclusively.
//!
//! A process keeps the master key it started with in memory, and seals with it whatever it
//! stores: a key, a secret, a cache entry. Re-sealing the inventory under a new key while a
//! `serve` runs would leave that `serve` sealing rows under a key nobody has any more, so the
//! rotation refuses while anyone else has the directory open, and nobody opens it while the
//! rotation runs. The lock is `flock(2)` on a file of its own: SQLite's own locks are POSIX
//! record locks on the database, which are released by any close of the file in the process
//! and say nothing about who merely has it open.

use std::collections::HashMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};

use super::InventoryError;

/// The lock file inside the data directory (empty; only its lock matters).
pub const LOCK_FILE: &str = "certhost.lock";

/// This process's lock on one data directory; released when the last holder drops it (every
/// connection of the directory holds one, and the rotation its own while it runs).
#[derive(Debug)]
pub struct DirHold {
    _file: File,
}

/// The lock file this process holds per data directory. One open file per directory: `flock`
/// locks belong to the open file, and a second one in the same process would conflict with
/// the first.
fn held() -> std::sync::MutexGuard<'static, HashMap<PathBuf, Weak<DirHold>>> {
    static HELD: OnceLock<Mutex<HashMap<PathBuf, Weak<DirHold>>>> = OnceLock::new();
    let mut map = HELD.get_or_init(Default::default).lock().unwrap_or_else(PoisonError::into_inner);
    map.retain(|_, hold| hold.strong_count() > 0);
    map
}

/// The directory as the map knows it: `./d` and `d` are one directory.
fn identity(data_dir: &Path) -> PathBuf {
    std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf())
}

/// Opened for reading: `flock` needs no more, and a lock file another user made (`sudo
/// certhost list` in a service's directory) still opens. Readable by others for that reason;
/// it is empty, inside the 0700 data directory.
fn open_lock_file(data_dir: &Path) -> std::io::Result<File> {
    let path = data_dir.join(LOCK_FILE);
    match File::open(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o644).open(&path)
        }
        other => other,
    }
}

/// Marks `data_dir` as open by this process (a shared lock, kept while any of its
/// connections is open). Refused while a master-key rotation holds the directory, and when
/// the lock cannot be taken at all: a process without it would go on sealing with a key a
/// rotation throws away (review of stop 35: a `serve` that could not open a lock file another
/// user made ran without one, and the rotation went ahead under it).
pub fn hold_shared(data_dir: &Path) -> Result<Arc<DirHold>, InventoryError> {
    let id = identity(data_dir);
    let cannot = |e: std::io::Error| InventoryError::DataDir {
        path: data_dir.to_owned(),
        reason: format!(
            "its lock file {LOCK_FILE} cannot be opened or locked ({e}); certhost marks the directory in use with it, \
             and runs as the user that owns the directory"
        ),
    };
    // Another process may have it alone for a moment (a `serve` starting up, a schema
    // upgrade): waited for, briefly, rather than failing at once (diff review of stop 41).
    let started = std::time::Instant::now();
    loop {
        {
            let mut held = held();
            if let Some(hold) = held.get(&id).and_then(Weak::upgrade) {
                return Ok(hold);
            }
            let file = open_lock_file(data_dir).map_err(cannot)?;
            match file.try_lock_shared() {
                Ok(()) => {
                    let hold = Arc::new(DirHold { _file: file });
                    held.insert(id, Arc::downgrade(&hold));
                    return Ok(hold);
                }
                Err(TryLockError::WouldBlock) if started.elapsed() < SHARED_PATIENCE => {}
                Err(TryLockError::WouldBlock) => {
                    return Err(InventoryError::DataDir {
                        path: data_dir.to_owned(),
                        reason: "another certhost process has it to itself (certhost master-key rotate or certhost \
                                 restore running, or a schema upgrade); try again when it has finished"
                            .into(),
                    });
                }
                Err(TryLockError::Error(e)) => return Err(cannot(e)),
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// How long [`hold_shared`] waits for a process that has the directory to itself.
const SHARED_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

/// Takes `data_dir` for this process alone while the returned hold lives; the process's own
/// connections opened meanwhile share it. Taken before this process opens the inventory (a
/// shared lock it already held could not be turned into an exclusive one without letting go
/// of it first).
pub fn hold_exclusive(data_dir: &Path) -> Result<Arc<DirHold>, InventoryError> {
    try_hold_exclusive(data_dir)?.ok_or_else(|| InventoryError::DataDir {
        path: data_dir.to_owned(),
        reason: "another certhost process has it open (certhost serve, or a command still running); stop it and run \
                 this again"
            .into(),
    })
}

/// [`hold_exclusive`], with `None` while another process has the directory open.
pub(super) fn try_hold_exclusive(data_dir: &Path) -> Result<Option<Arc<DirHold>>, InventoryError> {
    let id = identity(data_dir);
    let mut held = held();
    let refuse = |reason: String| InventoryError::DataDir { path: data_dir.to_owned(), reason };
    if held.contains_key(&id) {
        return Err(refuse("this process already has it open".into()));
    }
    let file = open_lock_file(data_dir).map_err(|e| refuse(format!("cannot open its lock file {LOCK_FILE}: {e}")))?;
    match file.try_lock() {
        Ok(()) => {
            let hold = Arc::new(DirHold { _file: file });
            held.insert(id, Arc::downgrade(&hold));
            Ok(Some(hold))
        }
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) => Err(refuse(format!("cannot lock {LOCK_FILE}: {e}"))),
    }
}

/// Whether this process has `data_dir` open (holds its lock, shared or not).
pub(super) fn held_here(data_dir: &Path) -> bool {
    held().contains_key(&identity(data_dir))
}

impl DirHold {
    /// Lets other processes open the directory again, as a shared hold (an exclusive one taken
    /// to migrate the schema, once it is done). Refused in the moment between the two locks
    /// only when a rotation or restore takes the directory then.
    pub(super) fn share(&self, data_dir: &Path) -> Result<(), InventoryError> {
        self._file.try_lock_shared().map_err(|e| InventoryError::DataDir {
            path: data_dir.to_owned(),
            reason: format!("its lock could not be shared after opening it alone ({e}); run the command again"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exclusive_hold_is_refused_while_another_open_file_holds_it_shared() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Another process's shared lock, as an open file of its own.
        let other = open_lock_file(dir.path()).expect("open");
        other.try_lock_shared().expect("shared");
        let err = hold_exclusive(dir.path()).unwrap_err().to_string();
        assert!(err.contains("another certhost process has it open"), "{err}");
        drop(other);
        let rotation = hold_exclusive(dir.path()).expect("exclusive once the other is gone");
        // This process may go on to open it; another may not.
        let conn = hold_shared(dir.path()).expect("this process");
        assert!(Arc::ptr_eq(&rotation, &conn));
        let other = open_lock_file(dir.path()).expect("open");
        assert!(matches!(other.try_lock_shared(), Err(TryLockError::WouldBlock)));
        // Released with its last holder.
        drop((rotation, conn));
        other.try_lock_shared().expect("free again");
    }

    #[test]
    fn a_shared_hold_is_refused_while_a_rotation_holds_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rotation = open_lock_file(dir.path()).expect("open");
        rotation.try_lock().expect("exclusive");
        let started = std::time::Instant::now();
        let err = hold_shared(dir.path()).unwrap_err().to_string();
        assert!(err.contains("certhost master-key rotate or certhost restore running"), "{err}");
        assert!(started.elapsed() >= SHARED_PATIENCE, "waited first");
        // A hold let go of meanwhile (a serve starting up) is waited for.
        let holder = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            drop(rotation);
        });
        let waited = hold_shared(dir.path()).expect("shared once the other process shares");
        holder.join().expect("holder");
        drop(waited);
        let first = hold_shared(dir.path()).expect("shared once it is done");
        let second = hold_shared(dir.path()).expect("again");
        assert!(Arc::ptr_eq(&first, &second), "one open lock file per directory");
    }

    /// Fails closed: a process that cannot take the lock does not open the directory.
    #[test]
    fn a_lock_file_that_cannot_be_opened_refuses_the_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink("/nonexistent-certhost-dir/lock", dir.path().join(LOCK_FILE)).expect("symlink");
        let err = hold_shared(dir.path()).unwrap_err().to_string();
        assert!(err.contains("its lock file certhost.lock cannot be opened or locked"), "{err}");
    }
}
