//! A worker's descendants, found in `/proc` and pinned with pidfds, so that a kill at the
//! deadline reaches the script's subprocesses that left the worker's process group (a new
//! session, a daemon double-forked by a shell). The worker is a subreaper (`process.rs`), so
//! such a subprocess stays below it even when its own parent has exited.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Handles on the processes below one worker at the moment of [`Descendants::of`]. A pidfd
/// names its process for as long as it is open: a pid reused after that process ended is never
/// signalled, and the handle still reaches a descendant once the worker itself has ended and
/// its children have gone to init.
#[derive(Default)]
pub(super) struct Descendants(Vec<Handle>);

/// One process below the worker.
enum Handle {
    /// Pinned: the kernel signals this process or none.
    Pinned(OwnedFd),
    /// Where pidfds are missing (a kernel before 5.3, a seccomp profile that denies
    /// `pidfd_open`): the pid, signalled only while it is still `parent`'s child. Without it
    /// the interpreter would get no SIGTERM at the deadline and its `finally:` would not run
    /// (diff review of stop 37). A pid that ended and was reused by a new child of the same
    /// parent is below the worker all the same.
    Unpinned { pid: libc::pid_t, parent: libc::pid_t },
}

impl Descendants {
    /// Every live process below `root` (not `root` itself).
    pub(super) fn of(root: libc::pid_t) -> Self {
        let Ok(dir) = std::fs::read_dir("/proc") else { return Self::default() };
        let mut children: HashMap<libc::pid_t, Vec<libc::pid_t>> = HashMap::new();
        for entry in dir.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<libc::pid_t>().ok()) else {
                continue;
            };
            if let Some(parent) = parent_of(pid) {
                children.entry(parent).or_default().push(pid);
            }
        }
        let mut found = Vec::new();
        let mut queue = vec![root];
        while let Some(parent) = queue.pop() {
            for &pid in children.get(&parent).map(Vec::as_slice).unwrap_or_default() {
                if let Some(fd) = pin(pid, parent) {
                    found.push(fd);
                }
                queue.push(pid);
            }
        }
        Self(found)
    }

    /// Sends `signal` to each (those already ended are skipped by the kernel).
    pub(super) fn signal(&self, signal: libc::c_int) {
        for handle in &self.0 {
            match handle {
                // SAFETY: pidfd_send_signal on a pidfd we own, with no siginfo (NULL) and no flags.
                Handle::Pinned(fd) => unsafe {
                    libc::syscall(libc::SYS_pidfd_send_signal, fd.as_raw_fd(), signal, std::ptr::null::<u8>(), 0);
                },
                Handle::Unpinned { pid, parent } => {
                    if parent_of(*pid) == Some(*parent) {
                        // SAFETY: kill(2) with a positive pid and a signal number; no memory involved.
                        unsafe { libc::kill(*pid, signal) };
                    }
                }
            }
        }
    }
}

/// A pidfd for `pid`, if it is still `parent`'s child once the pidfd is open (the pid was not
/// reused by an unrelated process between the scan and the open); the pid itself where this
/// kernel or its seccomp profile offers no pidfds.
fn pin(pid: libc::pid_t, parent: libc::pid_t) -> Option<Handle> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let Some(fd) = libc::c_int::try_from(fd).ok().filter(|fd| *fd >= 0) else {
        let errno = std::io::Error::last_os_error().raw_os_error();
        // Gone already (ESRCH): nothing to signal. Any other failure — no pidfds here, or
        // none left (EMFILE) — falls back to the pid rather than leave it unsignalled.
        return (errno != Some(libc::ESRCH) && parent_of(pid) == Some(parent))
            .then_some(Handle::Unpinned { pid, parent });
    };
    // SAFETY: `fd` was just returned by pidfd_open and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    (parent_of(pid) == Some(parent)).then_some(Handle::Pinned(fd))
}

/// The parent pid in `/proc/PID/stat` (the field after the state, after the last `)`: the
/// command name may hold spaces and parentheses).
pub(super) fn parent_of(pid: libc::pid_t) -> Option<libc::pid_t> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(") ")?;
    rest.split(' ').nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_and_signals_a_grandchild_that_left_the_session() {
        // sh (our child) starts a sleep in a session of its own and waits for it.
        let mut sh =
            std::process::Command::new("sh").args(["-c", "setsid sleep 4141 & wait"]).spawn().expect("sh runs");
        let sh_pid = libc::pid_t::try_from(sh.id()).expect("pid fits");
        let started = std::time::Instant::now();
        let mut found = Descendants::default();
        while found.0.is_empty() && started.elapsed() < std::time::Duration::from_secs(5) {
            std::thread::sleep(std::time::Duration::from_millis(20));
            found = Descendants::of(sh_pid);
        }
        assert_eq!(found.0.len(), 1, "the sleep below sh");
        found.signal(libc::SIGKILL);
        // sh's `wait` returns once the sleep is killed, so sh ends by itself.
        let status = sh.wait().expect("sh ends");
        assert!(status.success(), "{status:?}");
    }

    /// Without pidfds the pid is signalled while it is still its parent's child, and not once
    /// it is not (a pid the scan saw under another parent).
    #[test]
    fn an_unpinned_descendant_is_signalled_only_while_its_parent_is_the_one_seen() {
        let mut sh = std::process::Command::new("sh").args(["-c", "sleep 4242 & wait"]).spawn().expect("sh runs");
        let sh_pid = libc::pid_t::try_from(sh.id()).expect("pid fits");
        let started = std::time::Instant::now();
        let sleep_pid = loop {
            let found = Descendants::of(sh_pid);
            if let Some(Handle::Pinned(fd)) = found.0.first() {
                // The pid behind the pidfd: the `Pid:` line of its fdinfo.
                let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).expect("fdinfo");
                let pid = info.lines().find_map(|l| l.strip_prefix("Pid:")).expect("Pid line");
                break pid.trim().parse::<libc::pid_t>().expect("pid");
            }
            assert!(started.elapsed() < std::time::Duration::from_secs(5), "the sleep never appeared");
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        // Seen under another parent: left alone.
        Descendants(vec![Handle::Unpinned { pid: sleep_pid, parent: 1 }]).signal(libc::SIGKILL);
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert_eq!(parent_of(sleep_pid), Some(sh_pid), "not signalled");
        Descendants(vec![Handle::Unpinned { pid: sleep_pid, parent: sh_pid }]).signal(libc::SIGKILL);
        let status = sh.wait().expect("sh ends");
        assert!(status.success(), "{status:?}");
    }
}
