//! Signals to the process group a child of ours leads. Deploy hooks, the dns-01 hook and
//! Python workers each start in a group of their own (`process_group(0)`, `setpgid`), so
//! that a deadline ends them together with whatever they started, not just the shell.

/// Sends `signal` to the process group led by child `pid`.
///
/// `pid` must be a child of this process that leads its own group and that has not been
/// reaped yet (no `wait` has returned its status): until it is reaped, the kernel keeps its
/// pid, and so the group id, from being given to another process, so the signal cannot reach
/// a stranger. Every caller signals before it waits.
pub(crate) fn signal_unreaped_group(pid: u32, signal: libc::c_int) {
    let Ok(pgid) = libc::pid_t::try_from(pid) else { return };
    // A pid of 0 or 1 would name our own group or every process we may signal; neither is a
    // child's.
    if pgid <= 1 {
        return;
    }
    // SAFETY: killpg takes plain integers and touches no memory of ours; which processes it
    // may reach is the contract above.
    unsafe {
        libc::killpg(pgid, signal);
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::CommandExt;

    #[test]
    fn the_whole_group_ends_not_only_its_leader() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 4242 & echo $!; wait"])
            .stdout(std::process::Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("sh runs");
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.as_mut().expect("stdout")), &mut line)
            .expect("pid");
        let grandchild: i32 = line.trim().parse().expect("a pid");
        super::signal_unreaped_group(child.id(), libc::SIGKILL);
        child.wait().expect("reaped");
        // The background sleep was in the group: gone (or a zombie of init's, never running).
        let gone = (0..100).any(|_| {
            let state = std::fs::read_to_string(format!("/proc/{grandchild}/stat")).unwrap_or_default();
            let ended = state.is_empty() || state.split(") ").nth(1).is_some_and(|s| s.starts_with('Z'));
            if !ended {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            ended
        });
        assert!(gone, "the group's background process still runs");
    }
}
