//! The worker process: `certhost __python-worker` embeds the interpreter (pyo3), loads one
//! script and answers calls over the pipe protocol until its input closes.
//!
//! It runs in its own process because a Python thread cannot be reliably interrupted and a C
//! extension can crash its process: the host kills a worker that overruns its deadline and
//! starts a fresh one, and a crash costs one call, never the host.

use std::ffi::CString;
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::os::fd::{AsRawFd, FromRawFd};
use std::process::ExitCode;

use pyo3::prelude::*;
use pyo3::types::PyModule;

use super::process::SITE_DIRS_ENV;
use super::protocol::{MAX_FRAME, Numbered, Request, read_frame, with_seq, write_frame};

const BOOTSTRAP: &str = include_str!("bootstrap.py");

/// Entry point of the hidden worker subcommand. `memory_bytes` caps the address space;
/// `parent` is the host's pid, watched so that the worker ends with the host.
pub fn main(memory_bytes: u64, parent: Option<u32>) -> ExitCode {
    // First, while this is the process's only thread: the keeper stays behind with every
    // process the script starts; this goes on as the interpreter, and ends with the keeper.
    let keeper = match super::keeper::split(parent) {
        Ok(keeper) => keeper,
        Err(e) => {
            eprintln!("certhost python worker: cannot start its keeper: {e}");
            return ExitCode::from(70);
        }
    };
    watch_parent(keeper);
    // The protocol gets private copies of stdin/stdout; fd 0 becomes /dev/null and fd 1 goes
    // to stderr, so nothing a script or its subprocesses print can corrupt the frames.
    let (proto_in, proto_out) = match private_pipes() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("certhost python worker: cannot set up its pipes: {e}");
            return ExitCode::from(70);
        }
    };
    if memory_bytes > 0 {
        let limit = libc::rlimit { rlim_cur: memory_bytes as libc::rlim_t, rlim_max: memory_bytes as libc::rlim_t };
        // SAFETY: setrlimit reads a valid, initialised struct; failure is reported, not fatal.
        if unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) } != 0 {
            eprintln!("certhost python worker: cannot set the memory limit");
        }
    }
    let mut input = BufReader::new(proto_in);
    let mut output = BufWriter::new(proto_out);
    Python::attach(|py| {
        let boot = match load_bootstrap(py).and_then(|b| add_site_dirs(&b).map(|()| b)) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("certhost python worker: bootstrap failed: {e}");
                return ExitCode::from(70);
            }
        };
        loop {
            let frame = match py.detach(|| read_frame(&mut input)) {
                Ok(Some(f)) => f,
                Ok(None) => return ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("certhost python worker: protocol error: {e}");
                    return ExitCode::from(70);
                }
            };
            let (seq, reply) = match serde_json::from_slice::<Numbered>(&frame) {
                Ok(Numbered { seq, request }) => (
                    seq,
                    dispatch(&boot, request).unwrap_or_else(|e| {
                        serde_json::json!({ "kind": "error", "message": format!("worker failure: {e}") }).to_string()
                    }),
                ),
                Err(e) => {
                    (None, serde_json::json!({ "kind": "error", "message": format!("bad request: {e}") }).to_string())
                }
            };
            // A frame over the limit would end the worker with no word of why: say it instead.
            // The limit counts the number the reply carries too.
            let numbered = with_seq(&reply, seq);
            let reply = if numbered.len() > MAX_FRAME {
                let message = format!("returned a value larger than {} MiB", MAX_FRAME / (1024 * 1024));
                with_seq(&serde_json::json!({ "kind": "error", "message": message }).to_string(), seq)
            } else {
                numbered
            };
            if py.detach(|| write_frame(&mut output, reply.as_bytes())).is_err() {
                return ExitCode::from(70);
            }
        }
    })
}

/// Ends the interpreter and its process group (the script's subprocesses) once its keeper is
/// gone (the keeper watches the host the same way): its parent pid changes when the keeper
/// dies, however it dies. Checked twice a second from a thread of its own, which runs whatever
/// the script is doing.
///
/// Returns once the thread runs: Rust maps a thread's signal stack when the thread starts, and
/// started after the memory limit it could fail to, aborting the worker at a small
/// `memory_mib` ("failed to allocate an alternative stack"; hostile-script review of stop 40).
fn watch_parent(parent: u32) {
    let (started, running) = std::sync::mpsc::sync_channel::<()>(1);
    let watch = move || {
        let _ = started.send(());
        loop {
            // SAFETY: getppid cannot fail and has no preconditions.
            if u32::try_from(unsafe { libc::getppid() }).ok() != Some(parent) {
                // SAFETY: signals this process's own group, which the interpreter leads
                // (`keeper::split`); SIGKILL ends this process too.
                unsafe { libc::kill(0, libc::SIGKILL) };
                std::process::exit(70);
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
    };
    match std::thread::Builder::new().name("parent-watch".into()).stack_size(64 * 1024).spawn(watch) {
        Ok(_) => {
            let _ = running.recv_timeout(std::time::Duration::from_secs(5));
        }
        Err(e) => eprintln!("certhost python worker: cannot watch the host process: {e}"),
    }
}

fn load_bootstrap(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    // The bootstrap source is a compile-time constant without NUL bytes.
    let code = CString::new(BOOTSTRAP).map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
    PyModule::from_code(py, &code, c"certhost_bootstrap.py", c"certhost_bootstrap")
}

/// Adds the venv site directories the host passes (see `process::SITE_DIRS_ENV`) to sys.path,
/// and takes the variable out of the environment: the README says no `CERTHOST_*` variable
/// reaches a script or what it starts (security review of stop 36).
fn add_site_dirs(boot: &Bound<'_, PyModule>) -> PyResult<()> {
    let dirs = std::env::var(SITE_DIRS_ENV).unwrap_or_default();
    let dirs: Vec<&str> = dirs.split(':').filter(|d| !d.is_empty()).collect();
    if !dirs.is_empty() {
        boot.getattr("add_site_dirs")?.call1((dirs,))?;
    }
    // Through Python's `os.environ`, which unsets it in the process too (`unsetenv`) and keeps
    // its own copy in step; the interpreter is the only thread that reads the environment.
    boot.py().import("os")?.getattr("environ")?.call_method1("pop", (SITE_DIRS_ENV, boot.py().None()))?;
    Ok(())
}

fn dispatch(boot: &Bound<'_, PyModule>, req: Request) -> PyResult<String> {
    let py = boot.py();
    match req {
        Request::Load { path, cache } => {
            let json = py.import("json")?;
            let cache =
                json.getattr("loads")?.call1((serde_json::to_string(&cache).unwrap_or_else(|_| "[]".into()),))?;
            boot.getattr("load")?.call1((path, cache))?.extract()
        }
        Request::Call { function, argv, request_id, sensitive, percent, cache } => {
            let argv = serde_json::Value::Array(argv).to_string();
            let cache = cache.map(|c| serde_json::to_string(&c).unwrap_or_else(|_| "[]".into()));
            boot.getattr("call")?.call1((function, argv, request_id, sensitive, cache, percent))?.extract()
        }
    }
}

fn private_pipes() -> std::io::Result<(File, File)> {
    // SAFETY: plain fd syscalls on the process's own standard descriptors; every result is
    // checked, and each duplicated fd is owned by exactly one File.
    unsafe {
        let fin = libc::dup(0);
        let fout = libc::dup(1);
        if fin < 0 || fout < 0 {
            return Err(std::io::Error::last_os_error());
        }
        libc::fcntl(fin, libc::F_SETFD, libc::FD_CLOEXEC);
        libc::fcntl(fout, libc::F_SETFD, libc::FD_CLOEXEC);
        let devnull = File::open("/dev/null")?;
        if libc::dup2(devnull.as_raw_fd(), 0) < 0 || libc::dup2(2, 1) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok((File::from_raw_fd(fin), File::from_raw_fd(fout)))
    }
}
