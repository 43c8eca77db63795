//! Host side of one worker process: spawn, framed request/response, kill.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use serde::{Deserialize, Serialize};

use super::descendants::Descendants;
use super::protocol::{MAX_FRAME, Request};
use crate::connector::redact::Redactor;

/// Subcommand of the `certhost` binary that runs a worker.
pub const WORKER_SUBCOMMAND: &str = "__python-worker";

/// Environment variable through which a worker gets the extra site directories baked in at
/// build time (`build.rs`, `site_dirs.py`), separated by `:`.
pub const SITE_DIRS_ENV: &str = "CERTHOST_PYTHON_SITE_DIRS";

/// Most distinct sensitive values one worker is given before it is replaced. An account's
/// own secrets are a handful; dynamic sensitive parameters (a ticket per request) add one per
/// call, and the rules of all of them (each value in several encoded forms) are sent with and
/// applied to every call's output: bounded here, so a call costs the same after a day.
pub(super) const MAX_SEEN: usize = 64;

/// Longest line of a worker's stderr the host keeps: the rest of a longer line is dropped.
const MAX_STDERR_LINE: usize = 8 * 1024;

/// Most of a worker's stderr logged per [`STDERR_LOG_WINDOW`]; lines beyond it are counted,
/// not logged. A script's thread writing to fd 2 in a loop after its call returned filled the
/// log at 21 MB/s under `-v` for the ten minutes its idle worker lives, and cost a core in
/// redaction at any level (hostile-connector review of stop 41).
const STDERR_LOG_BUDGET: usize = 1024 * 1024;
/// The window [`STDERR_LOG_BUDGET`] is counted over.
const STDERR_LOG_WINDOW: Duration = Duration::from_secs(60);
/// How much of a worker's last stderr lines an error message quotes.
const STDERR_TAIL: usize = 4096;

/// A running worker.
pub(super) struct WorkerProcess {
    child: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
    /// What to redact from what the worker writes to its stderr: every sensitive value it
    /// was ever given ([`Self::learn`]).
    stderr_log: Arc<Mutex<StderrLog>>,
    /// Every sensitive value sent to this worker. One worker serves every profile of its
    /// account for its whole life, and a script keeps what it likes (a module-level session
    /// holding one profile's password, a thread printing later): what it prints in any call
    /// is redacted of all of them, not only of that call's.
    seen: Vec<zeroize::Zeroizing<String>>,
    /// [`Self::seen`] as rules, rebuilt when a value is added.
    seen_rules: Redactor,
    /// The last few KiB of that stderr, for error messages.
    stderr_tail: Arc<Mutex<Tail>>,
    /// Counts [`Self::clear_stderr_tail`]s: a line the reader began before the last one is an
    /// earlier call's, and is logged but kept out of this call's tail.
    stderr_call: Arc<std::sync::atomic::AtomicU64>,
    /// The number of the last request sent; its reply must carry it.
    seq: u64,
    /// `script NAME`, for its log lines.
    label: String,
}

/// How a worker's stderr lines are logged: redacted of every value the worker was given. A
/// new worker is given its first values with its first call, after its script was imported, so
/// what the import writes is held until then (or until the worker ends without a call) and
/// redacted with them: a script printing at import what an earlier worker's call left in the
/// account's cache logged it in clear (security review of stop 36).
#[derive(Default)]
struct StderrLog {
    mode: LogMode,
    /// Lines written before the first call, with whether each was cut; at most
    /// [`MAX_HELD_LINES`].
    held: Vec<(String, bool)>,
    /// Lines dropped because that many were held already.
    dropped: usize,
    /// When the current [`STDERR_LOG_BUDGET`] window began, and what was logged in it.
    window: Option<(std::time::Instant, usize)>,
    /// Lines of the current window not logged: over its budget.
    unlogged: usize,
}

/// A worker's last stderr lines as read (with whether each was cut), redacted only when an
/// error quotes them ([`WorkerProcess::take_stderr_tail`]): redacting every line as it came
/// cost a core under a flood. The worker's rules only grow, so the rules at quoting time
/// cover every value the worker had been given when it wrote them.
#[derive(Default)]
struct Tail {
    lines: std::collections::VecDeque<(String, bool)>,
    bytes: usize,
}

impl Tail {
    /// Keeps `line`, and of the older lines as many as still fit [`STDERR_TAIL`].
    fn push(&mut self, line: String, cut: bool) {
        self.bytes += line.len() + 1;
        self.lines.push_back((line, cut));
        while self.lines.len() > 1 && self.bytes - self.lines.front().map_or(0, |(l, _)| l.len() + 1) >= STDERR_TAIL {
            if let Some((old, _)) = self.lines.pop_front() {
                self.bytes -= old.len() + 1;
            }
        }
    }
}

/// Where a worker's stderr lines go, by how much is known of its values.
#[derive(Default)]
enum LogMode {
    /// Before the worker's first call: lines are held.
    #[default]
    Holding,
    /// From the first call: lines are redacted with the values and logged.
    Logging(Redactor),
    /// The worker ended without a call: nothing can redact its lines, so none is logged,
    /// including those the reader drains after the end (diff review of stop 37: an empty
    /// redactor logged them in clear).
    Discarding,
}

/// Most stderr lines of an import held for redaction; a script's warnings at import are a few.
const MAX_HELD_LINES: usize = 256;

impl StderrLog {
    /// Logs `line` (or holds or discards it), within the log's budget.
    fn line(&mut self, label: &str, line: &str, cut: bool) {
        if matches!(self.mode, LogMode::Logging(_))
            && (!tracing::enabled!(tracing::Level::INFO) || !self.within_budget(label, line.len()))
        {
            return;
        }
        match &self.mode {
            LogMode::Logging(rules) => log_stderr_line(label, rules, line, cut),
            LogMode::Holding if self.held.len() < MAX_HELD_LINES => self.held.push((line.to_owned(), cut)),
            LogMode::Holding | LogMode::Discarding => self.dropped += 1,
        }
    }

    /// Whether `len` more bytes may be logged in the current window; the first line over it
    /// says so, and the next window begins by counting what was left out.
    fn within_budget(&mut self, label: &str, len: usize) -> bool {
        let now = std::time::Instant::now();
        let (start, logged) = self.window.get_or_insert((now, 0));
        if now.duration_since(*start) >= STDERR_LOG_WINDOW {
            if self.unlogged > 0 {
                tracing::warn!(plugin = %label, "stderr: {} line(s) of the last minute were not logged (over {} KiB a minute)", self.unlogged, STDERR_LOG_BUDGET / 1024);
            }
            (*start, *logged, self.unlogged) = (now, 0, 0);
        }
        if *logged + len > STDERR_LOG_BUDGET {
            if self.unlogged == 0 {
                tracing::warn!(plugin = %label, "stderr: the script wrote over {} KiB within a minute; its further lines are not logged until the minute ends", STDERR_LOG_BUDGET / 1024);
            }
            self.unlogged += 1;
            return false;
        }
        *logged += len;
        true
    }

    /// `line` as an error may quote it: redacted once the worker was given values; before,
    /// it was given none (an import's error quotes it, redacted by the caller).
    fn quoted(&self, line: &str, cut: bool) -> String {
        match &self.mode {
            LogMode::Logging(rules) => redacted_line(rules, line, cut),
            LogMode::Holding | LogMode::Discarding if cut => {
                format!("{line} [line cut at {} KiB]", MAX_STDERR_LINE / 1024)
            }
            LogMode::Holding | LogMode::Discarding => line.to_owned(),
        }
    }

    /// Whether the worker was given values yet.
    fn has_rules(&self) -> bool {
        matches!(self.mode, LogMode::Logging(_))
    }

    /// The worker ends without having been given a value (its import failed, it was replaced
    /// before a call): the lines held cannot be redacted, since nothing tells what a secret
    /// in them would be (a value an earlier worker left in the cache), so they are not logged,
    /// nor any it writes while it ends (diff review of stop 37); an import's error quotes its
    /// last lines, redacted by the caller.
    fn drop_held(&mut self, label: &str) {
        if !matches!(self.mode, LogMode::Holding) {
            return;
        }
        let held = self.held.len() + self.dropped;
        if held > 0 {
            tracing::info!(
                plugin = %label,
                "stderr: {held} line(s) written while importing the script are not logged: the worker ended before its first call, with no values to redact them with"
            );
        }
        (self.held, self.dropped) = (Vec::new(), 0);
        self.mode = LogMode::Discarding;
    }

    /// From now on lines are redacted with `rules` and logged at once; those held are logged now.
    fn set_rules(&mut self, label: &str, rules: Redactor) {
        for (line, cut) in std::mem::take(&mut self.held) {
            log_stderr_line(label, &rules, &line, cut);
        }
        if self.dropped > 0 {
            tracing::info!(plugin = %label, "stderr: ({} more lines written while importing the script were dropped)", self.dropped);
            self.dropped = 0;
        }
        self.mode = LogMode::Logging(rules);
    }
}

/// What a signal that ended a worker usually means, for the error an author reads: a bare
/// number sent them guessing (hostile-connector review of stop 41: a script that closed its
/// file descriptors got "killed by signal 6").
fn signal_hint(signal: i32) -> &'static str {
    match signal {
        libc::SIGABRT => {
            " (SIGABRT: the interpreter aborted, as it does when a script closes its standard streams or a C extension fails an assertion)"
        }
        libc::SIGSEGV => " (SIGSEGV: a crash in native code, a C extension the script uses)",
        libc::SIGKILL => " (SIGKILL: killed from outside, by the kernel's out-of-memory killer or an operator)",
        _ => "",
    }
}

/// One stderr line in the log, redacted line by line: every line of a multi-line value is
/// redacted on its own. Returns the line as logged.
fn log_stderr_line(label: &str, rules: &Redactor, line: &str, cut: bool) {
    let line = redacted_line(rules, line, cut);
    tracing::info!(plugin = %label, "stderr: {}", crate::connector::redact::one_line(&line));
}

/// One stderr line redacted of `rules`' values; a cut one so that a value cut in two by the
/// cut is not left half in view.
fn redacted_line(rules: &Redactor, line: &str, cut: bool) -> String {
    if cut {
        format!("{} [line cut at {} KiB]", rules.redact_cut(line), MAX_STDERR_LINE / 1024)
    } else {
        rules.redact(line)
    }
}

/// Why a request got no reply of its own.
#[derive(Debug)]
pub(super) enum RequestError {
    /// The pipe broke or the frame was bad: the worker died, or wrote garbage.
    Pipe,
    /// A reply came back numbered for another request: something besides the worker (a
    /// process the script forked) wrote on the pipe, or read a request meant for the worker.
    OutOfTurn,
}

impl From<std::io::Error> for RequestError {
    fn from(e: std::io::Error) -> Self {
        let _ = e;
        Self::Pipe
    }
}

/// A request as it is sent: numbered (`protocol::Numbered`, without a copy of the request).
#[derive(Serialize)]
struct Numbered<'a> {
    seq: u64,
    #[serde(flatten)]
    request: &'a Request,
}

/// The number a reply carries; the rest of it is skipped here and read by the caller.
#[derive(Deserialize)]
struct ReplySeq {
    seq: Option<u64>,
}

impl WorkerProcess {
    /// Starts `exe __python-worker` with the interpreter pinned at build time.
    pub(super) fn spawn(exe: &Path, memory_bytes: u64, label: &str) -> std::io::Result<Self> {
        let mut cmd = Command::new(exe);
        // A script gets no variable a secret is read from (another account's token, the
        // notification channels' secrets), none of certhost's own (the master key, where
        // the data directory is), and none of the operator shell's PYTHON* settings (a
        // PYTHONPATH into another interpreter's packages): the worker's are set below.
        for (name, _) in std::env::vars_os() {
            let text = name.to_string_lossy();
            if text.starts_with("PYTHON") || text.starts_with("CERTHOST_") {
                cmd.env_remove(&name);
            }
        }
        for name in crate::param::hidden_from_children() {
            cmd.env_remove(name);
        }
        cmd.arg(WORKER_SUBCOMMAND)
            .arg("--memory-bytes")
            .arg(memory_bytes.to_string())
            .arg("--parent-pid")
            .arg(std::process::id().to_string())
            // glibc gives each thread that allocates an arena of its own (64 MiB of address
            // space): under the worker's address-space cap, the 14th thread of a
            // ThreadPoolExecutor failed to start with almost no memory in use.
            .env("MALLOC_ARENA_MAX", "2")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONNOUSERSITE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let home = env!("CERTHOST_PYTHON_HOME");
        if !home.is_empty() {
            cmd.env("PYTHONHOME", home);
        }
        // Built from a venv: its site-packages, which PYTHONHOME (the base prefix) hides.
        cmd.env(SITE_DIRS_ENV, env!("CERTHOST_PYTHON_SITE_DIRS"));
        // SAFETY: prctl and setpgid are async-signal-safe. The first makes the worker a
        // subreaper, so a subprocess whose parent exits (a shell's daemon) stays its
        // descendant instead of going to init; the worker splits at once into this process,
        // the keeper, and the interpreter (`keeper.rs`), and the keeper, outliving the
        // interpreter however it ends, kills whatever the script left. The second makes the
        // keeper the leader of a process group of its own (`kill_group`; the interpreter and
        // the script's subprocesses are reached as descendants).
        // The worker ends itself when the host dies (it watches its parent pid, given above):
        // PR_SET_PDEATHSIG fires when the *thread* that forked ends, and a tokio thread that
        // spawned a worker may retire while the host runs on, killing the worker mid-call.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1);
                if libc::setpgid(0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn()?;
        let (Some(stdin), Some(stdout), Some(stderr)) = (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(std::io::Error::other("worker pipes missing"));
        };
        let stderr_log: Arc<Mutex<StderrLog>> = Arc::default();
        let stderr_tail: Arc<Mutex<Tail>> = Arc::default();
        let stderr_call: Arc<std::sync::atomic::AtomicU64> = Arc::default();
        let (log, tail, log_label) = (stderr_log.clone(), stderr_tail.clone(), label.to_owned());
        let call = Arc::clone(&stderr_call);
        tokio::spawn(drain_stderr(stderr, Arc::clone(&stderr_call), move |line, cut, began| {
            log.lock().unwrap_or_else(|p| p.into_inner()).line(&log_label, &line, cut);
            // Checked under the tail's lock, which `clear_stderr_tail` holds while it moves on
            // to the next call: a line begun in the call just cleared never lands in the next.
            let mut tail = tail.lock().unwrap_or_else(|p| p.into_inner());
            if call.load(std::sync::atomic::Ordering::SeqCst) == began {
                tail.push(line, cut);
            }
        }));
        Ok(Self {
            child,
            stdin,
            stdout,
            stderr_log,
            stderr_tail,
            stderr_call,
            seen: vec![],
            seen_rules: Redactor::default(),
            seq: 0,
            label: label.to_owned(),
        })
    }

    /// Whether learning `values` would take the worker past [`MAX_SEEN`] distinct sensitive
    /// values: then it is replaced, since a fresh process holds none of them.
    pub(super) fn would_overflow(&self, values: &[&str]) -> bool {
        let new = values.iter().filter(|v| !v.is_empty() && !self.seen.iter().any(|s| s.as_str() == **v)).count();
        self.seen.len() + new > MAX_SEEN
    }

    /// Whether this worker was given a sensitive value that `own` (this call's) lacks. The
    /// worker redacts every value it was given from every call's output, so a script that
    /// echoes its input ("unknown mode 4821") told a requester, by a `***`, that a guess was
    /// another profile's secret (hostile-script review of stop 40); such a call gets a fresh
    /// worker, which knows only its own values. Decided from the values alone, never from the
    /// call's input: a check of the input made the replacement's delay the tell, and missed
    /// encoded guesses (diff review of stop 40).
    pub(super) fn holds_values_beyond(&self, own: &[&str]) -> bool {
        self.seen.iter().any(|s| !own.contains(&s.as_str()))
    }

    /// Adds this call's sensitive values to what the worker has been given, and returns the
    /// rules for all of them: what to redact from anything of this worker, in this call or
    /// from its stderr later.
    pub(super) fn learn(&mut self, values: &[&str]) -> Redactor {
        let before = self.seen.len();
        for v in values.iter().filter(|v| !v.is_empty()) {
            if !self.seen.iter().any(|s| s.as_str() == *v) {
                self.seen.push(zeroize::Zeroizing::new((*v).to_owned()));
            }
        }
        let mut log = self.stderr_log.lock().unwrap_or_else(|p| p.into_inner());
        if self.seen.len() != before || !log.has_rules() {
            self.seen_rules = Redactor::new(self.seen.iter().map(|s| s.as_str()));
            log.set_rules(&self.label, self.seen_rules.clone());
        }
        drop(log);
        self.seen_rules.clone()
    }

    /// Sends one request and reads its reply frame, which must carry the request's number.
    pub(super) async fn request(&mut self, req: &Request) -> Result<Vec<u8>, RequestError> {
        self.seq += 1;
        let payload = serde_json::to_vec(&Numbered { seq: self.seq, request: req }).map_err(std::io::Error::other)?;
        self.stdin.write_all(&(payload.len() as u32).to_be_bytes()).await?;
        self.stdin.write_all(&payload).await?;
        self.stdin.flush().await?;
        let mut len = [0u8; 4];
        self.stdout.read_exact(&mut len).await?;
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_FRAME {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "reply frame too large").into());
        }
        let mut buf = vec![0u8; len];
        self.stdout.read_exact(&mut buf).await?;
        match serde_json::from_slice::<ReplySeq>(&buf) {
            Ok(ReplySeq { seq: Some(seq) }) if seq == self.seq => Ok(buf),
            Ok(_) => Err(RequestError::OutOfTurn),
            Err(_) => Err(RequestError::Pipe),
        }
    }

    /// Whether the worker has ended since its last call (killed while idle: the OOM killer,
    /// an operator): such a worker is replaced, not handed the next call. The host's child is
    /// the keeper, which outlives the interpreter by the milliseconds it takes to kill what
    /// was left and exit; the interpreter's end shows at once on the reply pipe, which only it
    /// holds (a call handed over in that window failed with "killed by signal 9").
    pub(super) fn has_exited(&self) -> bool {
        if ended_unreaped(&self.child) {
            return true;
        }
        match reply_pipe_state(&self.stdout) {
            ReplyPipe::Quiet => false,
            ReplyPipe::Ended => true,
            ReplyPipe::Written => {
                tracing::warn!(
                    plugin = %self.label,
                    "the script's worker wrote to its reply pipe between calls (a process the script forked?); it is replaced"
                );
                true
            }
        }
    }

    /// Sends `signal` to the worker's process group — the worker and every subprocess of its
    /// script that did not leave the group — and to every descendant that did (a new session,
    /// a daemon), while the worker still holds them.
    fn kill_group(&self, signal: libc::c_int) {
        // Ending without a call: what its import wrote is not logged (`drop_held`).
        self.stderr_log.lock().unwrap_or_else(|p| p.into_inner()).drop_held(&self.label);
        if let Some(pid) = self.child.id() {
            Descendants::of(pid as libc::pid_t).signal(signal);
            // The group the worker leads (`setpgid` at spawn); `ended` sees the worker exit
            // without reaping it, so this comes before the reap.
            crate::process_group::signal_unreaped_group(pid, signal);
        }
    }

    /// How the worker ended, after its pipe broke: "exited with code 3" / "was killed by signal 9".
    /// The script's subprocesses left in its process group are killed.
    pub(super) async fn ended(&mut self) -> String {
        // Seen without reaping, so the group id stays the worker's until the group is killed.
        let status = tokio::time::timeout(Duration::from_secs(2), exit_seen(&self.child)).await;
        self.kill_group(libc::SIGKILL);
        let status = match status {
            Ok(()) => tokio::time::timeout(Duration::from_secs(2), self.child.wait()).await,
            Err(e) => Err(e),
        };
        let how = match status {
            Ok(Ok(st)) => match (st.code(), std::os::unix::process::ExitStatusExt::signal(&st)) {
                (Some(code), _) => format!("exited with code {code}"),
                (None, Some(sig)) => format!("was killed by signal {sig}{}", signal_hint(sig)),
                _ => "ended".to_owned(),
            },
            _ => {
                let _ = self.child.start_kill();
                "stopped answering".to_owned()
            }
        };
        // Give the stderr reader a moment to drain the last lines.
        tokio::time::sleep(Duration::from_millis(50)).await;
        how
    }

    /// The last lines the worker wrote to stderr since the previous take, at most
    /// [`STDERR_TAIL`] bytes, redacted of every value the worker was given (none before its
    /// first call: an import's error is redacted by its caller).
    pub(super) fn take_stderr_tail(&self) -> String {
        let lines = std::mem::take(&mut *self.stderr_tail.lock().unwrap_or_else(|p| p.into_inner())).lines;
        if lines.is_empty() {
            return String::new();
        }
        let log = self.stderr_log.lock().unwrap_or_else(|p| p.into_inner());
        let text: Vec<String> = lines.iter().map(|(line, cut)| log.quoted(line, *cut)).collect();
        drop(log);
        let text = text.join("\n");
        let start = text.len().saturating_sub(STDERR_TAIL);
        let start = (start..text.len()).find(|i| text.is_char_boundary(*i)).unwrap_or(text.len());
        text[start..].trim().to_owned()
    }

    /// Forgets the stderr lines read so far: a call's error quotes only its own — a line an
    /// earlier call left without its newline too (red-team walkthrough of stop 48: one
    /// requester's unfinished line was quoted in the next requester's error).
    pub(super) fn clear_stderr_tail(&self) {
        let mut tail = self.stderr_tail.lock().unwrap_or_else(|p| p.into_inner());
        self.stderr_call.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        *tail = Tail::default();
    }

    /// SIGTERM to the worker's process group, then SIGKILL after a short grace: the script's
    /// subprocesses end with it, and none keeps the worker's stderr pipe (and its reader) open.
    pub(super) async fn kill(mut self) {
        // Pinned before the worker can end: once it has, its descendants belong to init and
        // no scan finds them.
        let below = self.child.id().map(|pid| Descendants::of(pid as libc::pid_t)).unwrap_or_default();
        self.kill_group(libc::SIGTERM);
        // The keeper gives the interpreter its half second (`keeper::TERM_GRACE`), then kills
        // it and whatever else is left below it, and ends.
        let _ = tokio::time::timeout(Duration::from_millis(1500), exit_seen(&self.child)).await;
        below.signal(libc::SIGKILL);
        self.kill_group(libc::SIGKILL);
        let _ = self.child.wait().await;
    }
}

/// A worker dropped without [`WorkerProcess::kill`] (its connector replaced after a reload,
/// the host shutting down) takes its script's subprocesses with it; `kill_on_drop` alone
/// would end only the worker.
impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.kill_group(libc::SIGKILL);
    }
}

/// Whether `child` has ended, seen without reaping it (`waitid` with `WNOWAIT`): until tokio
/// reaps it, its pid — and so the id of the process group it leads — cannot be reused, and
/// the group can still be killed safely.
fn ended_unreaped(child: &Child) -> bool {
    let Some(pid) = child.id() else { return true };
    // SAFETY: an all-zero siginfo_t is a valid value; waitid writes into it and nothing else.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: waitid on our own child with a valid out-pointer; WNOWAIT leaves it unreaped.
    let r = unsafe {
        libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, libc::WEXITED | libc::WNOHANG | libc::WNOWAIT)
    };
    // With WNOHANG the kernel leaves si_pid 0 while the child runs; an error (ECHILD) means it
    // is gone already.
    // SAFETY: si_pid reads the field waitid filled (or the zero it started as).
    r != 0 || unsafe { info.si_pid() } != 0
}

/// What an idle worker's reply pipe holds.
enum ReplyPipe {
    /// Nothing: the worker waits for a request.
    Quiet,
    /// The interpreter is gone (end of file, or an error).
    Ended,
    /// Bytes no request asked for: the next request would get no reply of its own.
    Written,
}

fn reply_pipe_state(stdout: &ChildStdout) -> ReplyPipe {
    use std::os::fd::AsRawFd;
    let fd = stdout.as_raw_fd();
    let mut poll = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd on a descriptor the ChildStdout owns, and a zero timeout.
    let ready = unsafe { libc::poll(&mut poll, 1, 0) };
    if ready <= 0 || poll.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) == 0 {
        return ReplyPipe::Quiet;
    }
    let mut waiting: libc::c_int = 0;
    // SAFETY: FIONREAD writes the count of unread bytes into the int it is given.
    let counted = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut waiting) } == 0;
    if counted && waiting > 0 { ReplyPipe::Written } else { ReplyPipe::Ended }
}

/// Returns once `child` has ended, without reaping it (see [`ended_unreaped`]).
async fn exit_seen(child: &Child) {
    while !ended_unreaped(child) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads a worker's stderr until it closes and hands each line to `on_line`, with whether it
/// was cut and the value `call` had when the line began ([`WorkerProcess::clear_stderr_tail`]
/// moves it on at each call): a line begun in an earlier call is handed on as it stands when
/// the next bytes come, and its caller keeps it out of the current call's tail. Bytes an
/// earlier call wrote that the pipe still holds when the next call starts are read as the
/// next call's: only the worker could mark where a call's output ends. Text that is not UTF-8 is decoded lossily. A line is kept up to
/// [`MAX_STDERR_LINE`] bytes: a longer one is handed on cut there and the rest of it is read
/// and dropped, so a script writing without newlines cannot grow the host's memory.
///
/// It never stops before the end of the stream: a worker whose stderr reader stopped would
/// get EPIPE on its next write, and its subprocesses would die of SIGPIPE.
async fn drain_stderr(
    stderr: impl AsyncRead + Unpin,
    call: Arc<std::sync::atomic::AtomicU64>,
    mut on_line: impl FnMut(String, bool, u64),
) {
    let mut reader = BufReader::new(stderr);
    let mut line: Vec<u8> = Vec::new();
    // The current line was cut and handed on: drop the rest of it.
    let mut cut = false;
    // The call the current line began in.
    let mut began = call.load(std::sync::atomic::Ordering::SeqCst);
    loop {
        let buf = match reader.fill_buf().await {
            Ok([]) => break,
            Ok(buf) => buf,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let now = call.load(std::sync::atomic::Ordering::SeqCst);
        if now != began {
            if !line.is_empty() && !cut {
                on_line(String::from_utf8_lossy(&line).into_owned(), false, began);
            }
            line.clear();
            cut = false;
            began = now;
        }
        let end = buf.iter().position(|&b| b == b'\n');
        let chunk = &buf[..end.unwrap_or(buf.len())];
        if !cut {
            let room = MAX_STDERR_LINE - line.len();
            line.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if chunk.len() > room {
                cut = true;
                // A character split by the cut is dropped, not shown as U+FFFD.
                let incomplete = std::str::from_utf8(&line).err().filter(|e| e.error_len().is_none());
                if let Some(e) = incomplete {
                    line.truncate(e.valid_up_to());
                }
                on_line(String::from_utf8_lossy(&line).into_owned(), true, began);
            }
        }
        let used = chunk.len() + usize::from(end.is_some());
        reader.consume(used);
        if end.is_some() {
            if !cut {
                on_line(String::from_utf8_lossy(&line).into_owned(), false, began);
            }
            line.clear();
            cut = false;
        }
    }
    if !line.is_empty() && !cut {
        on_line(String::from_utf8_lossy(&line).into_owned(), false, began);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines_of(input: &[u8]) -> Vec<(String, bool)> {
        let mut lines = vec![];
        drain_stderr(input, Arc::default(), |line, cut, began| {
            assert_eq!(began, 0);
            lines.push((line, cut))
        })
        .await;
        lines
    }

    /// Red-team walkthrough of stop 48: a line one call left without its newline was quoted,
    /// joined to the next call's first line, in the next call's error.
    #[tokio::test]
    async fn a_line_an_earlier_call_left_unfinished_is_not_the_next_calls() {
        let (mut writer, reader) = tokio::io::duplex(1024);
        let call: Arc<std::sync::atomic::AtomicU64> = Arc::default();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&lines);
        let drained = tokio::spawn(drain_stderr(reader, Arc::clone(&call), move |line, _, began| {
            seen.lock().expect("lines").push((line, began))
        }));
        use tokio::io::AsyncWriteExt;
        writer.write_all(b"PRIVATE-from-earlier-call").await.expect("write");
        tokio::time::sleep(Duration::from_millis(50)).await;
        call.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        writer.write_all(b"error of THIS call\n").await.expect("write");
        drop(writer);
        drained.await.expect("drained");
        let lines = lines.lock().expect("lines").clone();
        assert_eq!(lines, [("PRIVATE-from-earlier-call".to_owned(), 0), ("error of THIS call".to_owned(), 1)]);
    }

    #[tokio::test]
    async fn long_lines_are_cut_and_the_rest_dropped_until_the_next_newline() {
        let mut input = vec![b'A'; 3 * 1024 * 1024];
        input.extend_from_slice(b"\nnext\n");
        input.extend(std::iter::repeat_n(b'B', MAX_STDERR_LINE));
        input.extend_from_slice(b"\n\xc3\xa4");
        input.extend(std::iter::repeat_n(b'C', MAX_STDERR_LINE - 3));
        input.extend_from_slice("\u{e4}no newline at the end".as_bytes());
        let lines = lines_of(&input).await;
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0], ("A".repeat(MAX_STDERR_LINE), true));
        assert_eq!(lines[1], ("next".to_owned(), false));
        // Exactly the limit is not cut.
        assert_eq!(lines[2], ("B".repeat(MAX_STDERR_LINE), false));
        // The cut falls inside the second ä: it is dropped whole.
        assert_eq!(lines[3], (format!("\u{e4}{}", "C".repeat(MAX_STDERR_LINE - 3)), true));
    }

    /// What an import writes is held until the first call's values can redact it; a worker
    /// that ends before any call takes it with it, unlogged (diff review of stop 37: it was
    /// logged in clear).
    #[test]
    fn an_import_s_lines_wait_for_values_and_are_dropped_without_them() {
        let mut log = StderrLog::default();
        log.line("script t", "import sees pw-1", false);
        assert_eq!(log.quoted("import sees pw-1", false), "import sees pw-1", "the caller redacts an import's");
        assert_eq!(log.held.len(), 1, "held, not logged");
        log.set_rules("script t", Redactor::new(["pw-1"]));
        assert!(log.held.is_empty() && log.has_rules(), "logged once the values are known");
        assert_eq!(log.quoted("later pw-1", false), "later ***", "redacted from then on");

        let mut unused = StderrLog::default();
        for _ in 0..MAX_HELD_LINES + 3 {
            unused.line("script t", "import sees pw-2", false);
        }
        assert_eq!((unused.held.len(), unused.dropped), (MAX_HELD_LINES, 3));
        unused.drop_held("script t");
        assert!(unused.held.is_empty() && unused.dropped == 0 && !unused.has_rules());
        unused.line("script t", "drained pw-2", false);
        assert_eq!(unused.quoted("drained pw-2", false), "drained pw-2", "quoted to the caller");
        assert!(
            unused.held.is_empty() && matches!(unused.mode, LogMode::Discarding),
            "a line drained after the end is not logged"
        );
        log.drop_held("script t");
        assert!(log.has_rules(), "a worker that had a call keeps logging while it ends");
    }

    /// Hostile-connector review of stop 41: a flood of stderr was logged (and redacted) whole.
    #[test]
    fn a_flood_is_logged_up_to_its_budget_and_the_rest_counted() {
        let mut log = StderrLog::default();
        log.set_rules("script t", Redactor::new(["pw-1"]));
        let line = "F".repeat(8000);
        let within = (0..1000).filter(|_| log.within_budget("script t", line.len())).count();
        assert_eq!(within, STDERR_LOG_BUDGET / 8000);
        assert_eq!(log.unlogged, 1000 - within);
        // A new window logs again, and starts its count afresh.
        if let Some((start, _)) = log.window.as_mut() {
            *start -= STDERR_LOG_WINDOW;
        }
        assert!(log.within_budget("script t", line.len()));
        assert_eq!(log.unlogged, 0);
    }

    /// The tail keeps the last lines within its size, and is redacted when quoted.
    #[test]
    fn the_tail_keeps_the_last_lines_and_is_redacted_when_quoted() {
        let mut tail = Tail::default();
        for n in 0..1000 {
            tail.push(format!("line {n} pw-1"), false);
        }
        assert!(tail.bytes < STDERR_TAIL + 32 && tail.bytes >= STDERR_TAIL, "{}", tail.bytes);
        assert_eq!(tail.lines.back().map(|(l, _)| l.as_str()), Some("line 999 pw-1"));
        tail.push("X".repeat(3 * STDERR_TAIL), true);
        assert_eq!(tail.lines.len(), 1, "one long line is kept whole (cut when quoted)");
        let mut log = StderrLog::default();
        log.set_rules("script t", Redactor::new(["pw-1"]));
        assert_eq!(log.quoted("line 1 pw-1", false), "line 1 ***");
    }

    #[tokio::test]
    async fn bytes_that_are_not_utf8_are_decoded_lossily_and_reading_goes_on() {
        let lines = lines_of(b"latin1 \xe9t\xe9\nafter\n\xff").await;
        let expected = [("latin1 \u{fffd}t\u{fffd}", false), ("after", false), ("\u{fffd}", false)];
        assert_eq!(lines, expected.map(|(l, c)| (l.to_owned(), c)));
    }
}
