//! The worker's keeper: the process the host starts splits in two before anything else runs.
//! The child runs the interpreter; the parent stays behind as the keeper of every process the
//! script starts.
//!
//! Why: the worker is a subreaper, so a script's subprocess whose own parent exits (a
//! `setsid` child, a double-forked daemon) stays below it. But the interpreter can end itself
//! at any moment (`os._exit`, a crash). Its subprocesses then went to init, out of every
//! scan's reach, and one holding a copy of the protocol pipe kept the host waiting for a reply
//! until the call's deadline (security review of stop 36). The keeper runs no script code. It
//! outlives the interpreter, so whatever the script left is its child by then; it kills all
//! of it, and then ends the way the interpreter ended.
//!
//! Process groups: the keeper leads the group the host made for the worker (the host signals
//! it); the interpreter leads a group of its own, which the script's subprocesses join.
//! Signals: the keeper waits for SIGCHLD and SIGTERM with `sigtimedwait`, both blocked, so
//! none is lost and no handler runs.

use std::time::{Duration, Instant};

/// How long the interpreter has after a SIGTERM (its script's `finally:` blocks) before the
/// keeper kills it. The host waits longer ([`super::process`]'s grace) for the keeper to end.
const TERM_GRACE: Duration = Duration::from_millis(450);

/// How often the keeper looks whether the host is still there when nothing else happens.
const HOST_CHECK: Duration = Duration::from_millis(500);

/// Splits the process. Returns in the child, which goes on to run the interpreter, with the
/// keeper's pid (the interpreter watches it, as the keeper watches the host); the keeper never
/// returns (it exits as the interpreter did). Must be called while the process has one
/// thread: the child of a fork runs only the calling thread.
pub(super) fn split(host: Option<u32>) -> std::io::Result<u32> {
    let watched = signal_set(&[libc::SIGCHLD, libc::SIGTERM]);
    // SAFETY: getpid cannot fail; sigprocmask on a valid, initialised set.
    let keeper = unsafe { libc::getpid() };
    unsafe { libc::sigprocmask(libc::SIG_BLOCK, &watched, std::ptr::null_mut()) };
    // SAFETY: one thread (the caller's contract), so the child may run any code.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        let e = std::io::Error::last_os_error();
        // SAFETY: as above; the signals are unblocked again for the worker that goes on alone.
        unsafe { libc::sigprocmask(libc::SIG_UNBLOCK, &watched, std::ptr::null_mut()) };
        return Err(e);
    }
    if pid == 0 {
        // The interpreter: Python's SIGTERM handler must see SIGTERM; a group of its own.
        // SAFETY: plain syscalls on this process; a failed setpgid leaves it in the keeper's
        // group, which the host's kill reaches as well.
        unsafe {
            libc::sigprocmask(libc::SIG_UNBLOCK, &watched, std::ptr::null_mut());
            libc::setpgid(0, 0);
        }
        return Ok(keeper as u32);
    }
    keep(pid, host, &watched)
}

/// The keeper's life: wait for the interpreter to end (or for the host to go, or for the
/// deadline's SIGTERM, after which the interpreter has [`TERM_GRACE`]), then kill what is left
/// and end as the interpreter did.
fn keep(interpreter: libc::pid_t, host: Option<u32>, watched: &libc::sigset_t) -> ! {
    // The interpreter may not have moved to its group yet when the keeper first signals it:
    // set it from here too (whichever runs first; the second fails harmlessly). The keeper's
    // standard input and output become /dev/null: it never speaks the protocol, and holding
    // the pipe would hide the interpreter's end from the host.
    // SAFETY: setpgid on our own child; open/dup2/close on descriptors of our own.
    unsafe {
        libc::setpgid(interpreter, interpreter);
        let devnull = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if devnull >= 0 {
            libc::dup2(devnull, 0);
            libc::dup2(devnull, 1);
            libc::close(devnull);
        }
    }
    let mut kill_at: Option<Instant> = None;
    let mut killed = false;
    let status = loop {
        let wait = kill_at.map_or(HOST_CHECK, |at| at.saturating_duration_since(Instant::now()).min(HOST_CHECK));
        let timeout = libc::timespec { tv_sec: 0, tv_nsec: wait.as_nanos() as libc::c_long };
        // SAFETY: a valid set and timeout; the siginfo is not needed (null).
        let signal = unsafe { libc::sigtimedwait(watched, std::ptr::null_mut(), &timeout) };
        // The host signals the interpreter and every process below the keeper itself: passed
        // on again, a second SIGTERM raised inside the script's `finally:` and cut its cleanup
        // short (diff review of stop 37). The keeper only arms the kill at the grace's end.
        if signal == libc::SIGTERM && kill_at.is_none() && !killed {
            kill_at = Some(Instant::now() + TERM_GRACE);
        }
        if let Some(status) = reap_until_interpreter(interpreter) {
            break status;
        }
        // SAFETY: getppid cannot fail.
        let host_gone = host.is_some_and(|h| u32::try_from(unsafe { libc::getppid() }).ok() != Some(h));
        if host_gone || kill_at.is_some_and(|at| Instant::now() >= at) {
            signal_group(interpreter, libc::SIGKILL);
            (kill_at, killed) = (None, true);
        }
    };
    // Still unreaped: its pid, and so its group's id, cannot have been given to another process.
    signal_group(interpreter, libc::SIGKILL);
    // SAFETY: reaps our own child, whose end was seen.
    unsafe { libc::waitpid(interpreter, std::ptr::null_mut(), 0) };
    kill_the_rest();
    end_as(status)
}

/// Reaps the script's processes that came to the keeper when their parent ended and have
/// since ended themselves, and returns how the interpreter ended once it has (seen without
/// reaping it: until then its pid, and its group's id, stay its own).
fn reap_until_interpreter(interpreter: libc::pid_t) -> Option<Ended> {
    loop {
        // SAFETY: an all-zero siginfo_t is valid; waitid fills it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid on our own children with a valid out-pointer, without reaping.
        let r = unsafe { libc::waitid(libc::P_ALL, 0, &mut info, libc::WEXITED | libc::WNOHANG | libc::WNOWAIT) };
        // SAFETY: si_pid and si_status read what waitid filled (zero while none has ended).
        let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
        if r != 0 {
            // ECHILD: no child at all, so the interpreter was reaped; cannot happen here.
            return Some(Ended::Code(70));
        }
        if pid == 0 {
            return None;
        }
        if pid == interpreter {
            return Some(if info.si_code == libc::CLD_EXITED { Ended::Code(status) } else { Ended::Signal(status) });
        }
        // SAFETY: reaps our own child, which has ended.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
    }
}

/// How the interpreter ended.
#[derive(Clone, Copy)]
enum Ended {
    Code(i32),
    Signal(i32),
}

/// Kills every process left below the keeper and reaps it. Killing one hands its children to
/// the keeper (a subreaper), so rounds go on until none is left; a process that forks in a
/// loop cannot outrun it, since a killed process forks no more.
fn kill_the_rest() {
    for _ in 0..10_000 {
        let left = children();
        if left.is_empty() {
            return;
        }
        for pid in &left {
            // SAFETY: our own child, not yet reaped, so the pid is still its.
            unsafe { libc::kill(*pid, libc::SIGKILL) };
        }
        for pid in &left {
            // SAFETY: reaps our own child; SIGKILL ends it promptly.
            unsafe { libc::waitpid(*pid, std::ptr::null_mut(), 0) };
        }
    }
}

/// The keeper's children, read from `/proc` (each process's parent in its `stat`).
fn children() -> Vec<libc::pid_t> {
    // SAFETY: getpid cannot fail.
    let me = unsafe { libc::getpid() };
    let Ok(dir) = std::fs::read_dir("/proc") else { return vec![] };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<libc::pid_t>().ok()))
        .filter(|pid| super::descendants::parent_of(*pid) == Some(me))
        .collect()
}

/// Signals the interpreter's group (and the interpreter, should it not have moved to it yet).
fn signal_group(interpreter: libc::pid_t, signal: libc::c_int) {
    // SAFETY: the interpreter is our unreaped child: its pid and group id are not reused.
    unsafe {
        libc::killpg(interpreter, signal);
        libc::kill(interpreter, signal);
    }
}

/// Exits with the interpreter's code, or dies of its signal, so the host reports the worker's
/// end as it was.
fn end_as(status: Ended) -> ! {
    match status {
        Ended::Code(code) => std::process::exit(code),
        Ended::Signal(signal) => {
            // SAFETY: restores the default action and raises the signal on this process; the
            // exit below only runs for a signal that does not end a process.
            unsafe {
                libc::signal(signal, libc::SIG_DFL);
                let one = signal_set(&[signal]);
                libc::sigprocmask(libc::SIG_UNBLOCK, &one, std::ptr::null_mut());
                libc::raise(signal);
            }
            std::process::exit(128 + signal)
        }
    }
}

fn signal_set(signals: &[libc::c_int]) -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set before sigaddset uses it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in signals {
            libc::sigaddset(&mut set, *s);
        }
        set
    }
}
