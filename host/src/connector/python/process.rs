//! Host side of one worker process: spawn, framed request/response, kill.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use super::protocol::{MAX_FRAME, Request};
use crate::connector::redact::Redactor;

/// Subcommand of the `certhost` binary that runs a worker.
pub const WORKER_SUBCOMMAND: &str = "__python-worker";

/// Environment variable through which a worker gets the extra site directories baked in at
/// build time (`build.rs`, `site_dirs.py`), separated by `:`.
pub const SITE_DIRS_ENV: &str = "CERTHOST_PYTHON_SITE_DIRS";

/// A running worker.
pub(super) struct WorkerProcess {
    child: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
    /// What to redact from what the worker writes to its stderr: the current call's sensitive
    /// values and the previous call's (its last lines may still be in the pipe).
    redactor: Arc<Mutex<Redactor>>,
    /// The previous call's sensitive values.
    last_values: Vec<String>,
    /// The last few KiB of that stderr, for error messages.
    stderr_tail: Arc<Mutex<String>>,
}

impl WorkerProcess {
    /// Starts `exe __python-worker` with the interpreter pinned at build time.
    pub(super) fn spawn(exe: &Path, memory_bytes: u64, label: &str) -> std::io::Result<Self> {
        let mut cmd = Command::new(exe);
        cmd.arg(WORKER_SUBCOMMAND)
            .arg("--memory-bytes")
            .arg(memory_bytes.to_string())
            .env_remove("CERTHOST_MASTER_KEY")
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
        // SAFETY: prctl is async-signal-safe; it only asks the kernel to kill the worker
        // when the host dies, so no orphan keeps running a script.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd.spawn()?;
        let (Some(stdin), Some(stdout), Some(stderr)) = (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(std::io::Error::other("worker pipes missing"));
        };
        let redactor: Arc<Mutex<Redactor>> = Arc::default();
        let stderr_tail: Arc<Mutex<String>> = Arc::default();
        let (sens, tail, label) = (redactor.clone(), stderr_tail.clone(), label.to_owned());
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                // Line by line: every line of a multi-line value is redacted on its own.
                let line = sens.lock().unwrap_or_else(|p| p.into_inner()).redact(&line);
                tracing::info!(plugin = %label, "stderr: {line}");
                let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
                t.push_str(&line);
                t.push('\n');
                if t.len() > 4096 {
                    let cut = t.len() - 4096;
                    let cut = (cut..t.len()).find(|i| t.is_char_boundary(*i)).unwrap_or(t.len());
                    t.drain(..cut);
                }
            }
        });
        Ok(Self { child, stdin, stdout, redactor, stderr_tail, last_values: vec![] })
    }

    /// Sets what to redact from the worker's own stderr for the next call.
    pub(super) fn set_sensitive(&mut self, call: &Redactor) {
        let both = call.values().iter().chain(&self.last_values).map(String::as_str);
        *self.redactor.lock().unwrap_or_else(|p| p.into_inner()) = Redactor::new(both);
        self.last_values = call.values().to_vec();
    }

    /// Sends one request and reads its reply frame.
    pub(super) async fn request(&mut self, req: &Request) -> std::io::Result<Vec<u8>> {
        let payload = serde_json::to_vec(req).map_err(std::io::Error::other)?;
        self.stdin.write_all(&(payload.len() as u32).to_be_bytes()).await?;
        self.stdin.write_all(&payload).await?;
        self.stdin.flush().await?;
        let mut len = [0u8; 4];
        self.stdout.read_exact(&mut len).await?;
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_FRAME {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "reply frame too large"));
        }
        let mut buf = vec![0u8; len];
        self.stdout.read_exact(&mut buf).await?;
        Ok(buf)
    }

    /// How the worker ended, after its pipe broke: "exited with code 3" / "was killed by signal 9".
    pub(super) async fn ended(&mut self) -> String {
        let status = tokio::time::timeout(Duration::from_secs(2), self.child.wait()).await;
        let how = match status {
            Ok(Ok(st)) => match (st.code(), std::os::unix::process::ExitStatusExt::signal(&st)) {
                (Some(code), _) => format!("exited with code {code}"),
                (None, Some(sig)) => format!("was killed by signal {sig}"),
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

    /// The last lines the worker wrote to stderr since the previous take (already redacted).
    pub(super) fn take_stderr_tail(&self) -> String {
        std::mem::take(&mut *self.stderr_tail.lock().unwrap_or_else(|p| p.into_inner())).trim().to_owned()
    }

    /// SIGTERM, then SIGKILL after a short grace.
    pub(super) async fn kill(mut self) {
        if let Some(pid) = self.child.id() {
            // SAFETY: sending a signal to our own child's pid.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGTERM);
            }
        }
        if tokio::time::timeout(Duration::from_millis(500), self.child.wait()).await.is_err() {
            let _ = self.child.kill().await;
        }
    }
}
