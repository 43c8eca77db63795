//! Blocking work (a hook process, a file written and fsynced) started from async code.

/// Runs `work` where it may block. In `serve` the runtime first hands this worker's other
/// tasks to another thread, so a slow hook or a deployment's fsyncs hold one request, never
/// the API (`serve` runs one worker per core); the CLI's single-threaded runtime has
/// nothing else to run, and `block_in_place` is not allowed there.
pub(crate) fn off_the_runtime<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(work),
        _ => work(),
    }
}
