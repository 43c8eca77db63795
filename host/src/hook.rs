//! Runs an operator's hook command — a deployment's pre/post hook, the dns-01 hook — to its
//! end or its deadline, with what it printed.
//!
//! The two kinds of hook used to have a runner each, and each learnt the same lessons
//! separately: the hook leads a process group of its own, killed whole at the deadline
//! (killing `sh` alone left what it started running); both pipes are read while it runs
//! (a hook writing more than a pipe holds blocked until killed); a background process it
//! left holding the pipes (`reload &`) is not waited for; an executable just written may be
//! "busy" for a moment. One runner keeps those in one place. It is synchronous and reads
//! with `poll(2)` on the calling thread: no reader thread is left behind on a pipe that a
//! background process keeps open.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a finished hook's output is still read, for what a background process it left
/// keeps writing or holding open.
const OUTPUT_GRACE: Duration = Duration::from_secs(1);

/// How often a running hook is checked on when it prints nothing.
const TICK: Duration = Duration::from_millis(20);

/// How a hook ended.
#[derive(Debug)]
pub(crate) enum Ended {
    /// It exited (or was killed by a signal not ours) with this status.
    Exited(ExitStatus),
    /// It ran to the deadline; its process group was killed.
    TimedOut,
    /// Waiting for it failed; its process group was killed.
    WaitFailed(std::io::Error),
}

/// A hook's end and its output: stdout and stderr as they arrived, the first `keep` bytes.
#[derive(Debug)]
pub(crate) struct Finished {
    pub ended: Ended,
    pub output: Vec<u8>,
}

/// Starts `command` (stdin empty, stdout and stderr captured, in a process group of its
/// own) and waits for it up to `limit`. An error is only a hook that could not be started.
pub(crate) fn run(command: &mut Command, limit: Duration, keep: usize) -> std::io::Result<Finished> {
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
    // Ended, with all it runs, when certhost ends: a hook of a process killed -9 ran on past
    // its timeout, under init, while the deployment it was part of was redone (operator review
    // of stop 41). The process certhost starts is a watcher, leading the group: it forks the
    // hook itself and, should certhost die, kills the whole group — the hook's shell, the
    // script it runs, and what that started (day-two walkthrough of stop 49: only the
    // `sh -c` died, and the script it ran went on). Otherwise it ends as the hook ends, with
    // its status, so to `run` it is the hook.
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the child between fork and exec and calls only
    // async-signal-safe functions (fork, prctl, getppid, waitpid, nanosleep, killpg, close,
    // signal, kill, _exit), allocating nothing.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(command, move || {
            // The parent died before this child began: nothing would end the hook.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            let hook = libc::fork();
            if hook < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if hook == 0 {
                // The hook: goes on to exec, killed should its watcher be.
                let watcher = libc::getppid();
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The watcher died before the prctl: no signal would come.
                if libc::getppid() != watcher {
                    libc::_exit(1);
                }
                return Ok(());
            }
            watch(hook, parent)
        });
    }
    let mut child = spawn(command)?;
    let mut pipes: Vec<Box<dyn ReadFd>> = Vec::new();
    if let Some(p) = child.stdout.take() {
        pipes.push(Box::new(p));
    }
    if let Some(p) = child.stderr.take() {
        pipes.push(Box::new(p));
    }
    for p in &pipes {
        set_nonblocking(p.as_raw_fd());
    }
    let mut output = Vec::new();
    let started = Instant::now();
    let ended = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ended::Exited(status),
            Ok(None) if started.elapsed() >= limit => {
                kill(&mut child);
                break Ended::TimedOut;
            }
            Ok(None) => read_ready(&mut pipes, &mut output, keep, TICK.min(limit.saturating_sub(started.elapsed()))),
            Err(e) => {
                kill(&mut child);
                break Ended::WaitFailed(e);
            }
        }
    };
    let grace = Instant::now() + OUTPUT_GRACE;
    while !pipes.is_empty() {
        let left = grace.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        read_ready(&mut pipes, &mut output, keep, left.min(TICK));
    }
    // What is still open is closed here: a background process writing to it gets EPIPE.
    Ok(Finished { ended, output })
}

/// The watcher's life (see [`run`]): holding none of the descriptors the hook inherited —
/// least of all the one `spawn` waits on for the exec's outcome, which would have it wait for
/// the hook's end —, it waits for `hook`, ending as it ended, and kills its whole group when
/// `parent` is gone. Runs between fork and exec: async-signal-safe calls only, no allocation.
fn watch(hook: libc::pid_t, parent: libc::pid_t) -> ! {
    // SAFETY: only async-signal-safe calls on integers, a stack `rlimit`, `timespec` and
    // `sigaction`, and a static name; see `run`.
    unsafe {
        if libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32) != 0 {
            // A kernel before 5.9, or a filter refusing it: every descriptor the process may
            // hold (serve raises its limit for connections far above the usual 1024).
            let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            let last = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
                limit.rlim_cur.min(1 << 20) as libc::c_int
            } else {
                1 << 16
            };
            for fd in 0..last {
                libc::close(fd);
            }
        }
        WATCHED_PARENT.store(parent, std::sync::atomic::Ordering::Relaxed);
        // Seen as what it is in `ps` and `top` (it is a copy of certhost that never execs).
        libc::prctl(libc::PR_SET_NAME, c"certhost-hook".as_ptr());
        // A hook that signals its parent — `kill -HUP $PPID` to have serve read its renewed
        // TLS certificate — meant certhost, its parent before the watcher: SIGHUP, certhost's
        // reload, is passed on. (The handlers certhost had write to descriptors closed above.)
        let mut pass_on: libc::sigaction = std::mem::zeroed();
        pass_on.sa_sigaction = pass_to_parent as *const () as libc::sighandler_t;
        libc::sigemptyset(&mut pass_on.sa_mask);
        pass_on.sa_flags = libc::SA_RESTART;
        libc::sigaction(libc::SIGHUP, &pass_on, std::ptr::null_mut());
        // Nothing else is: the watcher leads the hook's group, so a hook cleaning up its group
        // (`trap 'kill 0' EXIT`), or an operator stopping a stuck hook (`kill -TERM -PGID`),
        // signals it too, and passed on TERM stopped serve (exit 0, which `Restart=on-failure`
        // leaves down) and USR1 killed it (red team of stop 50). The watcher ignores them and
        // ends as the hook ends, by the same signal if it was one.
        for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGUSR1, libc::SIGUSR2] {
            libc::signal(signal, libc::SIG_IGN);
        }
        let pause = libc::timespec { tv_sec: 0, tv_nsec: 50_000_000 };
        loop {
            let mut status = 0;
            let waited = libc::waitpid(hook, &mut status, libc::WNOHANG);
            if waited == hook {
                if libc::WIFSIGNALED(status) {
                    let signal = libc::WTERMSIG(status);
                    libc::signal(signal, libc::SIG_DFL);
                    libc::kill(libc::getpid(), signal);
                    libc::_exit(128 + signal);
                }
                libc::_exit(if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { 1 });
            }
            if waited < 0 {
                libc::_exit(1);
            }
            if libc::getppid() != parent {
                // certhost is gone: the hook, what it runs, and this watcher end together.
                libc::killpg(0, libc::SIGKILL);
            }
            libc::nanosleep(&pause, std::ptr::null_mut());
        }
    }
}

/// The certhost a watcher watches for (set in the watcher, a copy of certhost's memory that
/// no other thread shares).
static WATCHED_PARENT: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// The watcher's handler of the SIGHUP a hook may send its parent: sends it on to
/// certhost (see [`watch`]) while it is still the watcher's parent — never to whatever
/// process inherited the watcher once certhost is gone. Async-signal-safe: an atomic load
/// and two system calls.
extern "C" fn pass_to_parent(signal: libc::c_int) {
    let parent = WATCHED_PARENT.load(std::sync::atomic::Ordering::Relaxed);
    // SAFETY: getppid and kill take and return integers only.
    unsafe {
        if parent > 1 && libc::getppid() == parent {
            libc::kill(parent, signal);
        }
    }
}

/// A pipe end we read from.
trait ReadFd: Read + AsRawFd {}
impl<T: Read + AsRawFd> ReadFd for T {}

/// Spawns, trying again briefly while the executable is "busy": a hook just written (a
/// deployment putting it in place) can be, while another thread's child still holds it open
/// between its fork and exec.
fn spawn(command: &mut Command) -> std::io::Result<Child> {
    let mut tries = 0;
    loop {
        match command.spawn() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && tries < 5 => {
                tries += 1;
                std::thread::sleep(TICK);
            }
            other => return other,
        }
    }
}

/// Kills the group `child` leads, then reaps it.
fn kill(child: &mut Child) {
    // The group the hook leads (`process_group(0)`), before it is reaped.
    crate::process_group::signal_unreaped_group(child.id(), libc::SIGKILL);
    let _ = child.wait();
}

fn set_nonblocking(fd: std::os::fd::RawFd) {
    // SAFETY: fcntl on a descriptor we own, with integer arguments only.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags >= 0 {
            libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
    }
}

/// Waits up to `wait` for any pipe to have something, then reads everything that is there.
/// A pipe that closed (or failed) is dropped from `pipes`; bytes past `keep` are read and
/// thrown away, so the hook never blocks on a full pipe.
fn read_ready(pipes: &mut Vec<Box<dyn ReadFd>>, output: &mut Vec<u8>, keep: usize, wait: Duration) {
    let mut fds: Vec<libc::pollfd> =
        pipes.iter().map(|p| libc::pollfd { fd: p.as_raw_fd(), events: libc::POLLIN, revents: 0 }).collect();
    let millis = libc::c_int::try_from(wait.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: `fds` is a live array of `fds.len()` pollfd structs for the call's duration.
    let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, millis) };
    if ready <= 0 {
        return;
    }
    let mut closed = Vec::new();
    for (i, fd) in fds.iter().enumerate() {
        if fd.revents == 0 {
            continue;
        }
        let mut buf = [0u8; 8192];
        loop {
            match pipes[i].read(&mut buf) {
                Ok(0) => {
                    closed.push(i);
                    break;
                }
                Ok(n) => {
                    let room = keep.saturating_sub(output.len()).min(n);
                    output.extend_from_slice(&buf[..room]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => {
                    closed.push(i);
                    break;
                }
            }
        }
    }
    for i in closed.into_iter().rev() {
        pipes.remove(i);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("sh");
        c.args(["-c", script]);
        c
    }

    #[test]
    fn output_of_both_pipes_and_the_exit_status_are_kept() {
        let done = run(&mut sh("echo out; echo err >&2; exit 3"), Duration::from_secs(10), 1000).expect("starts");
        assert!(matches!(done.ended, Ended::Exited(s) if s.code() == Some(3)), "{:?}", done.ended);
        let text = String::from_utf8_lossy(&done.output);
        assert!(text.contains("out\n") && text.contains("err\n"), "{text}");
    }

    #[test]
    fn a_hook_printing_more_than_a_pipe_holds_finishes_and_is_cut_to_what_is_kept() {
        // 1 MiB: sixteen pipes' worth, which would block a hook read only after it exits.
        let done =
            run(&mut sh("head -c 1048576 /dev/zero | tr '\\0' x"), Duration::from_secs(20), 100).expect("starts");
        assert!(matches!(done.ended, Ended::Exited(s) if s.success()), "{:?}", done.ended);
        assert_eq!(done.output, vec![b'x'; 100]);
    }

    #[test]
    fn at_the_deadline_the_whole_group_is_killed() {
        let started = Instant::now();
        let done = run(&mut sh("sleep 4243 & sleep 4243"), Duration::from_millis(300), 100).expect("starts");
        assert!(matches!(done.ended, Ended::TimedOut), "{:?}", done.ended);
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        let ps = std::process::Command::new("ps").args(["-eo", "args"]).output().expect("ps runs");
        let left = String::from_utf8_lossy(&ps.stdout).lines().filter(|l| l.trim() == "sleep 4243").count();
        assert_eq!(left, 0, "a sleep of the killed group still runs");
    }

    #[test]
    fn a_background_process_holding_the_pipes_is_not_waited_for() {
        let started = Instant::now();
        let done = run(&mut sh("echo before; sleep 4244 & exit 0"), Duration::from_secs(30), 100).expect("starts");
        assert!(matches!(done.ended, Ended::Exited(s) if s.success()), "{:?}", done.ended);
        assert_eq!(String::from_utf8_lossy(&done.output), "before\n");
        assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
        let _ = std::process::Command::new("pkill").args(["-f", "sleep 4244"]).status();
    }

    #[test]
    fn a_hook_that_cannot_start_is_an_error() {
        let err = run(&mut Command::new("/nonexistent/hook"), Duration::from_secs(1), 100).expect_err("no such file");
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    }
}
