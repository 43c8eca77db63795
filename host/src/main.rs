//! The `certhost` binary: parses arguments, reads the environment, sets up logging, and
//! calls into the library. Exit codes: 0 ok, 1 operational error, 2 usage error, 3 issued and
//! stored but not delivered (`cli::issue::DEPLOY_FAILED`), 4 held for an operator
//! (`cli::HELD_FOR_OPERATOR`), 5 `--out` given and nothing issued yet
//! (`cli::issue::NOT_ISSUED_YET`).

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let master_key = take_secret_variable("CERTHOST_MASTER_KEY");
    let new_master_key = take_secret_variable("CERTHOST_NEW_MASTER_KEY");
    never_dump_memory();
    // A Python worker is this binary re-executed; it must not parse the normal CLI.
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some(certhost::connector::python::WORKER_SUBCOMMAND) {
        let memory = argv.get(3).and_then(|m| m.parse().ok()).unwrap_or(512 * 1024 * 1024);
        let parent = argv.get(5).and_then(|p| p.parse().ok());
        return certhost::connector::python::worker_main(memory, parent);
    }
    // A panic is a bug, but the user still gets one sentence instead of a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown cause".into());
        // `certhost audit | head -1`: the reader went away. Like any Unix filter, stop quietly.
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(0);
        }
        // The message may quote the text a panic was about (std's slicing panics do), which
        // could hold a secret: shown only when asked for with RUST_BACKTRACE (code review of
        // stop 39); where is enough for a report.
        let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        if std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0") {
            eprintln!("error: internal error{at} ({msg}); please report this as a bug");
        } else {
            eprintln!("error: internal error{at}; please report this as a bug (RUST_BACKTRACE=1 shows its message)");
        }
    }));
    let args = cli::Cli::parse();
    cli::init_tracing(args.verbose, args.log_format, &args.command);
    let env =
        cli::Env { data_dir: args.data_dir.clone(), master_key, new_master_key, actor: format!("cli:{}", cli_user()) };
    match cli::run(args, &env) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", cli::sentence(&err));
            // Not 1, on which a wrapper retries: the CA may have the request already, and a
            // retry would ask it again under a new request id.
            let held = matches!(err.downcast_ref(), Some(certhost::issue::IssueError::NeedsAttention { .. }));
            ExitCode::from(if held { cli::HELD_FOR_OPERATOR } else { 1 })
        }
    }
}

/// Reads a master-key variable (`CERTHOST_MASTER_KEY`, `CERTHOST_NEW_MASTER_KEY`) and
/// removes it from the environment, so that no process certhost starts — a dns-01 hook, a
/// deploy hook, a script's subprocess, a Python worker — inherits the key to every secret in
/// the inventory.
///
/// The value is also overwritten where the process started with it: removing a variable
/// changes only the list libc keeps, and `/proc/PID/environ` shows the environment the process
/// was started with, where root (which no undumpable flag stops) read the key (security review
/// of stop 36).
fn take_secret_variable(name: &str) -> Option<String> {
    let key = std::env::var(name).ok().filter(|v| !v.is_empty());
    // SAFETY: called by the first statements of `main`, before any thread exists: nothing can
    // read the environment concurrently. getenv returns the value inside the variable's
    // NUL-terminated string (or null), which strlen measures and write_bytes overwrites
    // within its own length, the terminator untouched.
    unsafe {
        if let Ok(c_name) = std::ffi::CString::new(name) {
            let value = libc::getenv(c_name.as_ptr());
            if !value.is_null() {
                std::ptr::write_bytes(value, 0, libc::strlen(value));
            }
        }
        std::env::remove_var(name);
    }
    key
}

/// No core dump, and no reading this process's memory or environment through `/proc` by
/// other processes of the same user: its memory holds the master key, unsealed secrets and
/// private keys. Children (hooks, Python workers) inherit the zero core limit; a worker,
/// being this binary, makes itself undumpable again here (execve resets that flag).
fn never_dump_memory() {
    let none = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: setrlimit reads a valid rlimit; prctl(PR_SET_DUMPABLE, 0) takes plain integers.
    // Failure leaves the process as it was, which is no reason not to start.
    unsafe {
        libc::setrlimit(libc::RLIMIT_CORE, &none);
        libc::prctl(libc::PR_SET_DUMPABLE, 0);
    }
}

/// Who runs the command, for the audit log: `$USER`, or — where it is unset (cron, systemd,
/// containers) — the real user's name from the user database, or its uid. "unknown" told an
/// audit nothing, and every such caller counted as the same person for approvals.
fn cli_user() -> String {
    if let Some(user) = std::env::var("USER").ok().filter(|u| !u.is_empty()) {
        return user;
    }
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    certhost::deploy::user_name(uid).unwrap_or_else(|| format!("uid{uid}"))
}
