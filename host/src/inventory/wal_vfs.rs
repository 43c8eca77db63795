//! A SQLite VFS that writes a transaction's WAL frames to the file together, at its commit.
//!
//! SQLite writes each WAL frame with two `pwrite`s, its 24-byte header and then the page,
//! so a 4,120-byte frame starts mid-page: ext4 prepares, copies into and dirties two or three
//! page-cache pages per `pwrite`, three calls' worth of per-page work for every frame, plus a
//! system call each. That was a fifth of the group committer's CPU. This VFS is the default
//! (`unix`) one with the WAL file's writes gathered: the new frames of a transaction collect
//! in memory and reach the file when the commit frame arrives, in writes of up to 128 KiB —
//! before SQLite publishes the commit in the wal-index, so no reader can look for a frame not
//! yet written. Measured under `serve`'s issuance load: the committer's CPU per issuance fell
//! by 15% (`bench/PERFORMANCE.md`, stop 24).
//!
//! Only new frames are gathered, recognised by where they are written: at or past the end of
//! the frames this connection has written since it last began the WAL (a 32-byte WAL header
//! at offset 0). Anything else — a page written again within its transaction, the checksum
//! rewrite that follows (SQLite writes only headers there, so no page write follows to flush
//! them), a write this module does not expect — first flushes what is gathered and then goes
//! straight to the file. Reads, syncs, truncation, size queries and file controls flush
//! first too, so within a write transaction the file is exactly what SQLite wrote whenever
//! SQLite could look.
//!
//! A transaction that spills pages to the WAL before its commit and is then rolled back
//! leaves gathered frames that must never reach the file: once its write lock is released,
//! another connection may commit frames at the same offsets. So the main database file is
//! wrapped too, only to see the WAL write lock released (`xShmLock`), and whatever is still
//! gathered then is dropped — a commit always writes everything first, so it was never
//! committed. Frames are gathered only while the write lock is seen held (in exclusive
//! locking mode SQLite takes it without telling the VFS, and the WAL writes straight
//! through). The WAL finds its database file with `sqlite3_database_file_object`; without
//! ours (or without power-safe overwrite, where SQLite pads commits) a WAL writes straight
//! through. Every other file (shared memory, temporary files) is the default VFS's own
//! object, untouched.
//!
//! Durability is unchanged: gathered bytes are written before the commit returns, and the
//! syncer's `fdatasync` (or SQLite's own sync) comes after that.

use std::ffi::{CStr, c_int, c_void};
use std::ptr;
use std::sync::OnceLock;

use rusqlite::ffi;

/// The name connections open the inventory with.
pub(super) const NAME: &CStr = c"certhost-wal";

/// Size of a WAL frame's header, which SQLite writes just before the frame's page.
const FRAME_HEADER: usize = 24;
/// Size of the WAL file's own header, written at offset 0 when SQLite begins the WAL anew.
const WAL_HEADER: usize = 32;
/// Gathered bytes past which frames are written out before the commit (a large transaction
/// whose pages spill to the WAL early).
const MAX_GATHERED: usize = 4 << 20;
/// The most one write to the wrapped file may carry (see `Gathered::flush`).
const MAX_WRITE: i64 = 0x1ffff;
/// Chunks of a large flush end on multiples of this, the page size of the page cache.
const FILE_PAGE: i64 = 4096;
/// Where the default VFS's file object starts inside ours (a multiple of any alignment it needs).
const INNER_ALIGN: usize = 16;

/// Registers the VFS (once per process) and tells whether it can be used: `false` when
/// SQLite has no default VFS to wrap or refused the registration, so that callers fall back
/// to the default VFS rather than fail.
pub(super) fn available() -> bool {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    // SAFETY: `register` only runs once, under the OnceLock.
    *REGISTERED.get_or_init(|| unsafe { register() })
}

/// The default VFS this one wraps; set once by `register`, before the VFS can be found.
static DEFAULT: OnceLock<VfsPtr> = OnceLock::new();

/// A VFS pointer: SQLite's VFS objects live for the whole process and are thread-safe.
#[derive(Clone, Copy)]
struct VfsPtr(*mut ffi::sqlite3_vfs);
// SAFETY: the pointee is a process-lifetime SQLite VFS, used through SQLite's thread-safe API.
unsafe impl Send for VfsPtr {}
// SAFETY: as above.
unsafe impl Sync for VfsPtr {}

fn inner_offset() -> usize {
    let ours = std::mem::size_of::<WalFile>().max(std::mem::size_of::<DbFile>());
    ours.div_ceil(INNER_ALIGN) * INNER_ALIGN
}

/// # Safety
/// Must run at most once per process.
unsafe fn register() -> bool {
    // SAFETY: sqlite3_vfs_find initialises SQLite if needed; null asks for the default VFS.
    let default = unsafe { ffi::sqlite3_vfs_find(ptr::null()) };
    if default.is_null() {
        return false;
    }
    // SAFETY: `default` is a valid VFS object for the life of the process.
    let mut vfs = unsafe { *default };
    let Ok(size) = c_int::try_from(inner_offset()) else { return false };
    vfs.szOsFile = vfs.szOsFile.max(size.saturating_add(vfs.szOsFile));
    vfs.zName = NAME.as_ptr();
    vfs.pNext = ptr::null_mut();
    vfs.xOpen = Some(open);
    // Every other method is the default VFS's, called with our VFS object: a copy of its own,
    // the same application data included.
    if DEFAULT.set(VfsPtr(default)).is_err() {
        return false;
    }
    let vfs = Box::leak(Box::new(vfs));
    // SAFETY: `vfs` is a complete VFS object that lives for the rest of the process.
    unsafe { ffi::sqlite3_vfs_register(vfs, 0) == ffi::SQLITE_OK }
}

/// Our file object: SQLite's base first, the default VFS's file object after it.
#[repr(C)]
struct WalFile {
    base: ffi::sqlite3_file,
    state: Gathered,
}

/// Our main-database file object: SQLite's base first, the default VFS's object after it.
/// It is wrapped only to hear when the connection releases the WAL write lock.
#[repr(C)]
struct DbFile {
    base: ffi::sqlite3_file,
    state: DbState,
}

struct DbState {
    inner: *mut ffi::sqlite3_file,
    /// The connection's open WAL, if it gathers: what it holds when the write lock is
    /// released was never committed (a commit writes everything first) and is dropped, never
    /// written later — by then another connection may have committed frames at its offsets.
    wal: *mut Gathered,
    /// Whether this connection holds the WAL write lock, as seen through `xShmLock`.
    write_locked: bool,
}

/// What a WAL file holds back: `bytes` belong at file offset `start`.
struct Gathered {
    inner: *mut ffi::sqlite3_file,
    /// False when frames go straight to the file: the database file is not ours (no word of
    /// the write lock's release), or the file system lacks power-safe overwrite (SQLite then
    /// pads commits and splits page writes at a sync point).
    gathering: bool,
    /// The database file whose state points back at this one (when gathering), unlinked at
    /// close; its `write_locked` says whether frames may be gathered now.
    db: *mut DbState,
    bytes: Vec<u8>,
    start: i64,
    /// The end of the new frames this connection has written since it began the WAL; a
    /// frame header at or past it is a new frame, whose page is the next write.
    frames_end: i64,
    /// A new frame's header is gathered: where its page goes, and whether it commits.
    page_due: Option<(i64, bool)>,
    /// Writes that reached the wrapped file, and how many of them were lone frame headers
    /// (SQLite's checksum rewrite): what the tests check the gathering by.
    #[cfg_attr(not(test), allow(dead_code))]
    counts: (u64, u64),
}

unsafe extern "C" fn open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let Some(default) = DEFAULT.get().map(|p| p.0) else { return ffi::SQLITE_CANTOPEN };
    // SAFETY: `default` is the default VFS, valid for the life of the process.
    let Some(default_open) = (unsafe { (*default).xOpen }) else { return ffi::SQLITE_CANTOPEN };
    if flags & (ffi::SQLITE_OPEN_WAL | ffi::SQLITE_OPEN_MAIN_DB) == 0 {
        // Neither the WAL nor a database: the default VFS's own file object, in place (ours
        // is at least as large).
        // SAFETY: SQLite hands us szOsFile bytes at `file`, enough for the default's object.
        return unsafe { default_open(default, name, file, flags, out_flags) };
    }
    // SAFETY: `file` has szOsFile bytes: our object, then the default's object at
    // `inner_offset()`, both within the allocation and suitably aligned (SQLite allocates
    // with 8-byte alignment; the offset is a multiple of 16).
    let inner = unsafe { file.cast::<u8>().add(inner_offset()).cast::<ffi::sqlite3_file>() };
    // SAFETY: as above; `inner` is ours to open.
    unsafe {
        (*file).pMethods = ptr::null();
        (*inner).pMethods = ptr::null();
        let rc = default_open(default, name, inner, flags, out_flags);
        if rc != ffi::SQLITE_OK {
            // SQLite calls no xClose on a file whose open failed; close what the default left.
            if let Some(close) = (*inner).pMethods.as_ref().and_then(|m| m.xClose) {
                close(inner);
            }
            return rc;
        }
    }
    if flags & ffi::SQLITE_OPEN_MAIN_DB != 0 {
        let db = file.cast::<DbFile>();
        // SAFETY: `db` is our DbFile's memory, uninitialised until now.
        unsafe {
            ptr::addr_of_mut!((*db).state).write(DbState { inner, wal: ptr::null_mut(), write_locked: false });
            (*db).base.pMethods = &DB_METHODS;
        }
        return ffi::SQLITE_OK;
    }
    let wal = file.cast::<WalFile>();
    // SAFETY: SQLite passes a WAL's name as the pager made it, which is what
    // sqlite3_database_file_object takes; the database file it returns is open for as long
    // as the WAL is (SQLite closes the WAL first). It is ours if it has our methods.
    unsafe {
        let db_file = ffi::sqlite3_database_file_object(name);
        let db = if !db_file.is_null() && ptr::eq((*db_file).pMethods, &DB_METHODS) {
            ptr::addr_of_mut!((*db_file.cast::<DbFile>()).state)
        } else {
            ptr::null_mut()
        };
        // SQLite decides whether to pad commits from the database file's characteristics.
        let powersafe = !db.is_null() && {
            let db_inner = (*db).inner;
            let characteristics =
                (*db_inner).pMethods.as_ref().and_then(|m| m.xDeviceCharacteristics).map_or(0, |f| f(db_inner));
            characteristics & ffi::SQLITE_IOCAP_POWERSAFE_OVERWRITE != 0
        };
        let gathering = powersafe;
        ptr::addr_of_mut!((*wal).state).write(Gathered {
            inner,
            gathering,
            db: if gathering { db } else { ptr::null_mut() },
            bytes: Vec::new(),
            start: 0,
            frames_end: 0,
            page_due: None,
            counts: (0, 0),
        });
        if gathering {
            (*db).wal = ptr::addr_of_mut!((*wal).state);
        }
        (*wal).base.pMethods = &WAL_METHODS;
    }
    ffi::SQLITE_OK
}

static WAL_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    // Version 1: no shared memory or memory mapping, which SQLite only uses on the database.
    iVersion: 1,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
};

/// The state of an open WAL file.
///
/// # Safety
/// `file` must be a file `open` set WAL_METHODS on and SQLite has not closed.
unsafe fn state<'a>(file: *mut ffi::sqlite3_file) -> &'a mut Gathered {
    // SAFETY: per the contract, `file` is a WalFile with an initialised state; SQLite uses a
    // file from one thread at a time.
    unsafe { &mut (*file.cast::<WalFile>()).state }
}

/// The default VFS's methods of the wrapped file.
fn methods(g: &Gathered) -> &ffi::sqlite3_io_methods {
    // SAFETY: `open` succeeded, so the default VFS set its (static) methods on `inner`.
    unsafe { &*(*g.inner).pMethods }
}

impl Gathered {
    /// Writes what is gathered to the file.
    fn flush(&mut self) -> c_int {
        if self.bytes.is_empty() {
            return ffi::SQLITE_OK;
        }
        let Some(write) = methods(self).xWrite else { return ffi::SQLITE_IOERR_WRITE };
        let mut rc = ffi::SQLITE_OK;
        let (mut done, mut offset) = (0, self.start);
        while done < self.bytes.len() && rc == ffi::SQLITE_OK {
            // The default VFS passes a write's length to `pwrite` masked to 17 bits (it never
            // writes more than a 64 KiB page itself), so a write of 128 KiB or more fails as
            // "disk full": at most that less one per call, ending on a page of the file.
            let end = (offset + MAX_WRITE) & !(FILE_PAGE - 1);
            let len = (end - offset).clamp(1, (self.bytes.len() - done) as i64);
            let chunk = &self.bytes[done..done + len as usize];
            self.counts.0 += 1;
            // SAFETY: `inner` is open; `chunk` is valid for `len` (< 2^17) bytes.
            rc = unsafe { write(self.inner, chunk.as_ptr().cast(), len as c_int, offset) };
            done += len as usize;
            offset += len;
        }
        // Written or failed, it is not held any more: on failure SQLite fails the transaction,
        // and frames past the last commit are ignored.
        self.bytes.clear();
        if self.bytes.capacity() > MAX_GATHERED {
            self.bytes.shrink_to(MAX_GATHERED);
        }
        rc
    }

    /// Adds `data`, which belongs at `offset`, to what is gathered.
    fn gather(&mut self, data: &[u8], offset: i64) -> c_int {
        let end = self.start.saturating_add(self.bytes.len() as i64);
        if !self.bytes.is_empty() && offset != end {
            let rc = self.flush();
            if rc != ffi::SQLITE_OK {
                return rc;
            }
        }
        if self.bytes.is_empty() {
            self.start = offset;
        }
        self.bytes.extend_from_slice(data);
        ffi::SQLITE_OK
    }

    /// Drops what is gathered, unwritten: it belongs to a write transaction that ended
    /// without committing it.
    fn discard(&mut self) {
        self.bytes.clear();
        self.page_due = None;
    }

    fn write(&mut self, data: &[u8], offset: i64) -> c_int {
        let end = offset.saturating_add(data.len() as i64);
        // Only while the write lock is seen held: in exclusive locking mode SQLite takes and
        // releases it without a word to the VFS, so nothing would drop a rolled-back
        // transaction's frames there.
        // SAFETY: `db` is the open database file while linked (see `close` and `db_close`).
        let gathering = self.gathering && unsafe { self.db.as_ref() }.is_some_and(|db| db.write_locked);
        match (data.len(), self.page_due.take()) {
            _ if !gathering => {
                // Kept past every page written, so that a later checksum rewrite is never
                // taken for a new frame.
                if data.len() != FRAME_HEADER {
                    self.frames_end = self.frames_end.max(end);
                }
                let Some(write) = methods(self).xWrite else { return ffi::SQLITE_IOERR_WRITE };
                // SAFETY: `inner` is open; `data` is valid for its length (SQLite's `amount`).
                unsafe { write(self.inner, data.as_ptr().cast(), data.len() as c_int, offset) }
            }
            // The page of the new frame whose header was just gathered.
            (_, Some((at, commits))) if offset == at => {
                let rc = self.gather(data, offset);
                self.frames_end = self.frames_end.max(end);
                if rc != ffi::SQLITE_OK || commits || self.bytes.len() >= MAX_GATHERED {
                    // The commit frame: every frame of the transaction reaches the file now,
                    // before SQLite makes the commit visible.
                    return if rc == ffi::SQLITE_OK { self.flush() } else { rc };
                }
                ffi::SQLITE_OK
            }
            // The WAL begun anew: new frames follow from its end.
            (WAL_HEADER, _) if offset == 0 => {
                let rc = self.flush();
                if rc != ffi::SQLITE_OK {
                    return rc;
                }
                self.frames_end = end;
                self.gather(data, offset)
            }
            // A new frame's header: its page is the next write.
            (FRAME_HEADER, _) if offset >= self.frames_end => {
                let commits = data.get(4..8).is_some_and(|size| size != [0; 4]);
                self.page_due = Some((end, commits));
                self.gather(data, offset)
            }
            // A page written again within its transaction, a checksum rewrite, or anything
            // else: after what is gathered, straight to the file.
            _ => {
                let rc = self.flush();
                if rc != ffi::SQLITE_OK {
                    return rc;
                }
                let (Some(write), Ok(len)) = (methods(self).xWrite, c_int::try_from(data.len())) else {
                    return ffi::SQLITE_IOERR_WRITE;
                };
                if data.len() == FRAME_HEADER {
                    self.counts.1 += 1;
                } else {
                    self.frames_end = self.frames_end.max(end);
                }
                self.counts.0 += 1;
                // SAFETY: `inner` is open; `data` is valid for `len` bytes.
                unsafe { write(self.inner, data.as_ptr().cast(), len, offset) }
            }
        }
    }
}

/// Flushes, then runs `then` on the wrapped file.
///
/// # Safety
/// As for [`state`].
unsafe fn flushed(file: *mut ffi::sqlite3_file, then: impl FnOnce(&Gathered) -> c_int) -> c_int {
    // SAFETY: per the contract.
    let g = unsafe { state(file) };
    g.page_due = None;
    let rc = g.flush();
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    then(g)
}

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite closes a file it opened through us exactly once; its state is read out
    // (and dropped at the end of this function) before SQLite frees the memory.
    let mut g = unsafe { ptr::addr_of_mut!((*file.cast::<WalFile>()).state).read() };
    // No transaction is open at close: anything still gathered was never committed.
    g.discard();
    if !g.db.is_null() {
        // SAFETY: the database file outlives its WAL (SQLite closes the WAL first), and the
        // database's close clears `db` if it ever came first.
        unsafe { (*g.db).wal = ptr::null_mut() };
    }
    let closed = match methods(&g).xClose {
        // SAFETY: `inner` is open and closed once, here.
        Some(close) => unsafe { close(g.inner) },
        None => ffi::SQLITE_OK,
    };
    // SAFETY: the base is ours; SQLite must not call into the file again.
    unsafe { (*file).pMethods = ptr::null() };
    closed
}

unsafe extern "C" fn read(file: *mut ffi::sqlite3_file, buf: *mut c_void, amount: c_int, offset: i64) -> c_int {
    // SAFETY: SQLite calls this on an open WAL file of ours, with a valid buffer.
    unsafe {
        flushed(file, |g| match methods(g).xRead {
            Some(read) => read(g.inner, buf, amount, offset),
            None => ffi::SQLITE_IOERR_READ,
        })
    }
}

unsafe extern "C" fn write(file: *mut ffi::sqlite3_file, buf: *const c_void, amount: c_int, offset: i64) -> c_int {
    let Ok(len) = usize::try_from(amount) else { return ffi::SQLITE_IOERR_WRITE };
    // SAFETY: SQLite passes `amount` readable bytes at `buf`, on an open WAL file of ours.
    unsafe {
        let data = std::slice::from_raw_parts(buf.cast::<u8>(), len);
        state(file).write(data, offset)
    }
}

unsafe extern "C" fn truncate(file: *mut ffi::sqlite3_file, size: i64) -> c_int {
    // SAFETY: as for `read`.
    unsafe {
        let rc = flushed(file, |g| match methods(g).xTruncate {
            Some(truncate) => truncate(g.inner, size),
            None => ffi::SQLITE_IOERR_TRUNCATE,
        });
        let g = state(file);
        g.frames_end = g.frames_end.min(size);
        rc
    }
}

unsafe extern "C" fn sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    // SAFETY: as for `read`.
    unsafe {
        flushed(file, |g| match methods(g).xSync {
            Some(sync) => sync(g.inner, flags),
            None => ffi::SQLITE_IOERR_FSYNC,
        })
    }
}

unsafe extern "C" fn file_size(file: *mut ffi::sqlite3_file, size: *mut i64) -> c_int {
    // SAFETY: as for `read`; `size` is valid for a write.
    unsafe {
        flushed(file, |g| match methods(g).xFileSize {
            Some(file_size) => file_size(g.inner, size),
            None => ffi::SQLITE_IOERR_FSTAT,
        })
    }
}

unsafe extern "C" fn file_control(file: *mut ffi::sqlite3_file, op: c_int, arg: *mut c_void) -> c_int {
    // SAFETY: as for `read`; `arg` is whatever the op defines, passed on unchanged.
    unsafe {
        flushed(file, |g| match methods(g).xFileControl {
            Some(control) => control(g.inner, op, arg),
            None => ffi::SQLITE_NOTFOUND,
        })
    }
}

unsafe extern "C" fn lock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    // SAFETY: as for `state`.
    let g = unsafe { state(file) };
    match methods(g).xLock {
        // SAFETY: `inner` is open.
        Some(lock) => unsafe { lock(g.inner, level) },
        None => ffi::SQLITE_OK,
    }
}

unsafe extern "C" fn unlock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    // SAFETY: as for `state`.
    let g = unsafe { state(file) };
    match methods(g).xUnlock {
        // SAFETY: `inner` is open.
        Some(unlock) => unsafe { unlock(g.inner, level) },
        None => ffi::SQLITE_OK,
    }
}

unsafe extern "C" fn check_reserved_lock(file: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    // SAFETY: as for `state`.
    let g = unsafe { state(file) };
    match methods(g).xCheckReservedLock {
        // SAFETY: `inner` is open; `out` is valid for a write.
        Some(check) => unsafe { check(g.inner, out) },
        None => {
            // SAFETY: `out` is valid for a write.
            unsafe { *out = 0 };
            ffi::SQLITE_OK
        }
    }
}

unsafe extern "C" fn sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: as for `state`.
    let g = unsafe { state(file) };
    match methods(g).xSectorSize {
        // SAFETY: `inner` is open.
        Some(sector_size) => unsafe { sector_size(g.inner) },
        None => 4096,
    }
}

unsafe extern "C" fn device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: as for `state`.
    let g = unsafe { state(file) };
    match methods(g).xDeviceCharacteristics {
        // SAFETY: `inner` is open.
        Some(characteristics) => unsafe { characteristics(g.inner) },
        None => 0,
    }
}

static DB_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(db_close),
    xRead: Some(db_read),
    xWrite: Some(db_write),
    xTruncate: Some(db_truncate),
    xSync: Some(db_sync),
    xFileSize: Some(db_file_size),
    xLock: Some(db_lock),
    xUnlock: Some(db_unlock),
    xCheckReservedLock: Some(db_check_reserved_lock),
    xFileControl: Some(db_file_control),
    xSectorSize: Some(db_sector_size),
    xDeviceCharacteristics: Some(db_device_characteristics),
    xShmMap: Some(db_shm_map),
    xShmLock: Some(db_shm_lock),
    xShmBarrier: Some(db_shm_barrier),
    xShmUnmap: Some(db_shm_unmap),
    xFetch: Some(db_fetch),
    xUnfetch: Some(db_unfetch),
};

/// The default VFS's object inside our database file, and its methods.
///
/// # Safety
/// `file` must be a file `open` set DB_METHODS on and SQLite has not closed.
unsafe fn db<'a>(file: *mut ffi::sqlite3_file) -> (&'a mut DbState, &'a ffi::sqlite3_io_methods) {
    // SAFETY: per the contract; the default VFS set its (static) methods on `inner` at open.
    unsafe {
        let state = &mut (*file.cast::<DbFile>()).state;
        let methods = &*(*state.inner).pMethods;
        (state, methods)
    }
}

/// Database methods the wrapper has nothing to add to: each calls the default VFS's method
/// on its own object, or answers `$missing` when the default has none.
macro_rules! forward {
    ($($name:ident => $method:ident($($arg:ident: $ty:ty),*) or $missing:expr;)*) => {$(
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file $(, $arg: $ty)*) -> c_int {
            // SAFETY: SQLite calls this on an open database file of ours, with arguments
            // valid for the method, passed on unchanged.
            unsafe {
                let (state, methods) = db(file);
                match methods.$method {
                    Some(method) => method(state.inner $(, $arg)*),
                    None => $missing,
                }
            }
        }
    )*};
}

forward! {
    db_read => xRead(buf: *mut c_void, amount: c_int, offset: i64) or ffi::SQLITE_IOERR_READ;
    db_write => xWrite(buf: *const c_void, amount: c_int, offset: i64) or ffi::SQLITE_IOERR_WRITE;
    db_truncate => xTruncate(size: i64) or ffi::SQLITE_IOERR_TRUNCATE;
    db_sync => xSync(flags: c_int) or ffi::SQLITE_IOERR_FSYNC;
    db_file_size => xFileSize(size: *mut i64) or ffi::SQLITE_IOERR_FSTAT;
    db_lock => xLock(level: c_int) or ffi::SQLITE_OK;
    db_unlock => xUnlock(level: c_int) or ffi::SQLITE_OK;
    db_check_reserved_lock => xCheckReservedLock(out: *mut c_int) or ffi::SQLITE_IOERR_CHECKRESERVEDLOCK;
    db_file_control => xFileControl(op: c_int, arg: *mut c_void) or ffi::SQLITE_NOTFOUND;
    db_sector_size => xSectorSize() or 4096;
    db_device_characteristics => xDeviceCharacteristics() or 0;
    db_shm_map => xShmMap(region: c_int, size: c_int, extend: c_int, out: *mut *mut c_void) or ffi::SQLITE_IOERR_SHMMAP;
    db_shm_unmap => xShmUnmap(delete: c_int) or ffi::SQLITE_OK;
    db_fetch => xFetch(offset: i64, amount: c_int, out: *mut *mut c_void) or {
        // No memory mapping: SQLite reads instead.
        *out = ptr::null_mut();
        ffi::SQLITE_OK
    };
    db_unfetch => xUnfetch(offset: i64, page: *mut c_void) or ffi::SQLITE_OK;
}

unsafe extern "C" fn db_shm_barrier(file: *mut ffi::sqlite3_file) {
    // SAFETY: SQLite calls this on an open database file of ours.
    unsafe {
        let (state, methods) = db(file);
        if let Some(barrier) = methods.xShmBarrier {
            barrier(state.inner);
        }
    }
}

/// The index of SQLite's WAL write lock among the shared-memory locks.
const WAL_WRITE_LOCK: c_int = 0;

unsafe extern "C" fn db_shm_lock(file: *mut ffi::sqlite3_file, offset: c_int, n: c_int, flags: c_int) -> c_int {
    // SAFETY: SQLite calls this on an open database file of ours; `wal` is the connection's
    // open WAL while linked (its close unlinks it).
    unsafe {
        let (state, methods) = db(file);
        let Some(lock) = methods.xShmLock else { return ffi::SQLITE_IOERR_SHMLOCK };
        let write_lock =
            flags & ffi::SQLITE_SHM_EXCLUSIVE != 0 && offset <= WAL_WRITE_LOCK && WAL_WRITE_LOCK < offset + n;
        if write_lock && flags & ffi::SQLITE_SHM_UNLOCK != 0 {
            // The write transaction is over. A commit wrote everything it gathered, so what
            // is left was rolled back: dropped before another writer can take the lock.
            if let Some(wal) = state.wal.as_mut() {
                wal.discard();
            }
            state.write_locked = false;
            return lock(state.inner, offset, n, flags);
        }
        let rc = lock(state.inner, offset, n, flags);
        if write_lock && flags & ffi::SQLITE_SHM_LOCK != 0 && rc == ffi::SQLITE_OK {
            if let Some(wal) = state.wal.as_mut() {
                // Nothing can be held between write transactions; should anything be, it is
                // not this one's.
                wal.discard();
            }
            state.write_locked = true;
        }
        rc
    }
}

unsafe extern "C" fn db_close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite closes a file it opened through us exactly once; the state holds no
    // owned data, and a WAL still linked (never: SQLite closes it first) is unlinked.
    unsafe {
        let (state, methods) = db(file);
        if let Some(wal) = state.wal.as_mut() {
            wal.db = ptr::null_mut();
            wal.gathering = false;
        }
        let closed = methods.xClose.map_or(ffi::SQLITE_OK, |close| close(state.inner));
        (*file).pMethods = ptr::null();
        closed
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use rusqlite::{Connection, OpenFlags};

    use super::*;

    fn open(path: &Path) -> Connection {
        assert!(available(), "the VFS registers");
        let conn = Connection::open_with_flags_and_vfs(path, OpenFlags::default(), NAME).expect("open");
        conn.pragma_update(None, "journal_mode", "WAL").expect("wal");
        conn.pragma_update(None, "synchronous", "NORMAL").expect("sync");
        conn.pragma_update(None, "wal_autocheckpoint", 0).expect("no checkpoints");
        conn
    }

    /// The WAL file's counts of writes, found through SQLite (`SQLITE_FCNTL_JOURNAL_POINTER`).
    fn wal(conn: &Connection) -> (u64, u64) {
        gathered(conn).counts
    }

    /// The WAL file's state.
    fn gathered(conn: &Connection) -> &Gathered {
        let mut file: *mut ffi::sqlite3_file = ptr::null_mut();
        // SAFETY: a valid connection handle and an out pointer of the type the op writes.
        let rc = unsafe {
            ffi::sqlite3_file_control(
                conn.handle(),
                c"main".as_ptr(),
                ffi::SQLITE_FCNTL_JOURNAL_POINTER,
                ptr::addr_of_mut!(file).cast(),
            )
        };
        assert_eq!(rc, ffi::SQLITE_OK);
        assert!(!file.is_null());
        // SAFETY: the WAL is open, and it is ours (checked before reading the state).
        unsafe {
            assert!(ptr::eq((*file).pMethods, &WAL_METHODS), "the WAL goes through this VFS");
            let state = state(file);
            assert!(state.gathering, "the WAL gathers frames");
            state
        }
    }

    /// What a crash right now would leave (the syncer's fsync aside): the database and WAL
    /// files as they are, without the shared memory, opened fresh with the default VFS so that
    /// SQLite recovers the WAL by its checksums. Returns the rows' digest there.
    fn after_crash(dir: &Path, name: &str) -> (i64, i64) {
        let copy = dir.join(format!("copy-{name}"));
        std::fs::create_dir(&copy).expect("copy dir");
        for suffix in ["", "-wal"] {
            std::fs::copy(dir.join(format!("db{suffix}")), copy.join(format!("db{suffix}"))).expect("copy");
        }
        let conn = Connection::open(copy.join("db")).expect("open copy");
        let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).expect("check");
        assert_eq!(check, "ok");
        digest(&conn)
    }

    fn digest(conn: &Connection) -> (i64, i64) {
        conn.query_row("SELECT count(*), coalesce(sum(length(body) * id + generation), 0) FROM t", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .expect("digest")
    }

    #[test]
    fn every_committed_frame_is_in_the_file_when_commit_returns() {
        let dir = tempfile::tempdir().expect("dir");
        let mut conn = open(&dir.path().join("db"));
        conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB, generation INTEGER, key TEXT UNIQUE);")
            .expect("schema");
        // A small transaction: its frames (and the new WAL's header) in one write.
        let before = wal(&conn).0;
        conn.execute("INSERT INTO t VALUES (1, zeroblob(100), 0, 'k1')", []).expect("insert");
        assert_eq!(wal(&conn).0 - before, 1, "one commit, one write");
        assert_eq!(after_crash(dir.path(), "small"), digest(&conn));

        // A large one, gathered whole (nothing spills): written in chunks the default VFS takes.
        let before = wal(&conn).0;
        let tx = conn.transaction().expect("tx");
        for id in 100..400i64 {
            tx.execute("INSERT INTO t VALUES (?1, randomblob(1500), 0, hex(randomblob(16)))", [id]).expect("insert");
        }
        tx.commit().expect("a commit of over 128 KiB of frames");
        assert!(wal(&conn).0 - before >= 4, "hundreds of KiB of frames, in writes of less than 128 KiB");
        assert_eq!(after_crash(dir.path(), "large"), digest(&conn));

        // Large transactions with a tiny page cache: pages spill to the WAL before the commit
        // and are written again in place, which makes SQLite rewrite the frames' checksums.
        conn.pragma_update(None, "cache_size", 4).expect("cache");
        for round in 0..3i64 {
            let tx = conn.transaction().expect("tx");
            for i in 0..400i64 {
                let id = round * 1000 + i + 1000;
                tx.execute(
                    "INSERT INTO t VALUES (?1, randomblob(300 + ?1 % 500), ?2, hex(randomblob(16)))",
                    [id, round],
                )
                .expect("insert");
            }
            tx.execute("UPDATE t SET generation = generation + 7 WHERE id % 3 = 0", []).expect("update");
            tx.commit().expect("commit");
            assert_eq!(after_crash(dir.path(), &format!("round{round}")), digest(&conn), "round {round}");
        }
        assert!(wal(&conn).1 > 0, "the checksum rewrite ran (lone frame headers written)");

        // A rolled-back transaction leaves nothing; a checkpoint and a WAL begun anew keep all.
        let before = digest(&conn);
        {
            let tx = conn.transaction().expect("tx");
            tx.execute("DELETE FROM t", []).expect("delete");
            tx.rollback().expect("rollback");
        }
        assert_eq!(digest(&conn), before);
        conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(())).expect("checkpoint");
        conn.execute("INSERT INTO t VALUES (5, x'01', 1, 'k5')", []).expect("insert after restart");
        assert_eq!(after_crash(dir.path(), "restarted"), digest(&conn));

        // Another connection reads what was committed, and the file is whole once closed.
        let reader = Connection::open(dir.path().join("db")).expect("reader");
        assert_eq!(digest(&reader), digest(&conn));
        let last = digest(&conn);
        drop(conn);
        drop(reader);
        let conn = Connection::open(dir.path().join("db")).expect("reopen");
        assert_eq!(digest(&conn), last);
    }

    /// A database whose table `u` is large enough for an UPDATE of it to spill through a
    /// tiny cache, with an empty table `t` and an empty WAL; a connection through the VFS.
    fn spill_lab() -> (tempfile::TempDir, std::path::PathBuf, Connection) {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("db");
        let a = open(&path);
        a.busy_timeout(std::time::Duration::from_secs(5)).expect("busy");
        a.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB, generation INTEGER, key TEXT);")
            .expect("schema");
        a.execute_batch("CREATE TABLE u (id INTEGER PRIMARY KEY, body BLOB);").expect("schema");
        for i in 0..300 {
            a.execute("INSERT INTO u VALUES (?1, randomblob(3000))", [i]).expect("insert");
        }
        a.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).expect("checkpoint");
        (dir, path, a)
    }

    /// Another connection, through the default VFS, commits 200 rows to `t`.
    fn other_connection_commits(path: &Path) {
        let b = Connection::open(path).expect("b");
        let tx = b.unchecked_transaction().expect("tx");
        for i in 0..200i64 {
            tx.execute("INSERT INTO t VALUES (?1, randomblob(500), 0, NULL)", [i]).expect("insert");
        }
        tx.commit().expect("b commits");
    }

    /// A fresh connection to a database that passes SQLite's integrity check.
    fn whole(path: &Path) -> Connection {
        let fresh = Connection::open(path).expect("fresh");
        let check: String = fresh.query_row("PRAGMA integrity_check", [], |r| r.get(0)).expect("check");
        assert_eq!(check, "ok");
        fresh
    }

    /// Frames a rolled-back transaction spilled to the WAL are dropped when it ends, never
    /// written later: by then another connection may have committed at the same offsets.
    #[test]
    fn frames_of_a_rolled_back_transaction_are_never_written_over_later_commits() {
        let (dir, path, a) = spill_lab();
        // A large change with a tiny cache spills pages to the WAL, then is rolled back.
        a.pragma_update(None, "cache_size", 8).expect("cache");
        a.execute_batch("BEGIN IMMEDIATE; UPDATE u SET body = randomblob(3000);").expect("update");
        assert!(!gathered(&a).bytes.is_empty(), "the spilled frames are gathered");
        a.execute_batch("ROLLBACK").expect("rollback");
        assert!(gathered(&a).bytes.is_empty(), "dropped when the write lock is released");
        // Another connection commits over the same part of the WAL; A then reads.
        other_connection_commits(&path);
        let seen: i64 = a.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).expect("a reads");
        assert_eq!(seen, 200);
        drop(a);
        let fresh = whole(&path);
        assert_eq!(digest(&fresh).0, 200);
        assert_eq!(after_crash(dir.path(), "after-b"), digest(&fresh));
    }

    /// In exclusive locking mode SQLite takes the write lock without the VFS: nothing is
    /// gathered there, so a rollback leaves nothing to write over a later commit.
    #[test]
    fn exclusive_locking_mode_writes_straight_through() {
        let (_dir, path, a) = spill_lab();
        a.query_row("PRAGMA locking_mode = EXCLUSIVE", [], |_| Ok(())).expect("exclusive");
        a.query_row("SELECT count(*) FROM u", [], |r| r.get::<_, i64>(0)).expect("read");
        a.pragma_update(None, "cache_size", 8).expect("cache");
        a.execute_batch("BEGIN IMMEDIATE; UPDATE u SET body = randomblob(3000);").expect("update");
        assert!(gathered(&a).bytes.is_empty(), "no write lock seen, nothing gathered");
        a.execute_batch("ROLLBACK").expect("rollback");
        a.query_row("PRAGMA locking_mode = NORMAL", [], |_| Ok(())).expect("normal");
        a.query_row("SELECT count(*) FROM u", [], |r| r.get::<_, i64>(0)).expect("read");
        other_connection_commits(&path);
        assert_eq!(a.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0)).expect("a reads"), 200);
        drop(a);
        let fresh = whole(&path);
        assert_eq!(digest(&fresh).0, 200);
    }
}
