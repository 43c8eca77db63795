//! The pipe protocol between the host and a Python worker: length-prefixed JSON frames.
//!
//! Each frame is a 4-byte big-endian length followed by that many bytes of UTF-8 JSON.
//! Frames over [`MAX_FRAME`] are refused, so a runaway script cannot make either side
//! allocate without bound.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

/// Largest frame either side accepts (a certificate chain is a few KiB; output is capped; the
/// account's cache, at most 256 values of 64 KiB, is carried when a worker starts).
pub const MAX_FRAME: usize = 32 * 1024 * 1024;

/// One entry of a CA account's cache (`certhost.cache_set`), carried between the host, which
/// keeps the account's cache across workers, and the worker that uses it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheEntry {
    /// The key.
    pub key: String,
    /// The value.
    pub value: String,
    /// Milliseconds left before it expires; `None` for an entry set with ttl 0 (no expiry).
    pub expires_in_ms: Option<u64>,
}

/// Host → worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Import the script; answered with its description or the import error.
    Load {
        /// Script path.
        path: String,
        /// The account's cache, as earlier workers left it.
        #[serde(default)]
        cache: Vec<CacheEntry>,
    },
    /// Call a contract function with positional arguments (JSON values).
    Call {
        /// Function name (`certificate_request`, `poll`, ...).
        function: String,
        /// Positional arguments.
        argv: Vec<serde_json::Value>,
        /// The order's request id, for `certhost.request_id()`.
        request_id: Option<String>,
        /// The call's sensitive values and their encoded forms (`Redactor::patterns`): the
        /// worker redacts them from what the script prints, logs and raises before it cuts any
        /// of that to size.
        #[serde(default)]
        sensitive: Vec<String>,
        /// The values' percent-encoding patterns (`Redactor::percent_patterns`), redacted
        /// after `sensitive`.
        #[serde(default)]
        percent: Vec<String>,
        /// The account's cache as the store holds it now, replacing the worker's copy: another
        /// process may have set entries, or emptied the cache (new credentials, the account
        /// deleted and made again), since the worker started.
        #[serde(default)]
        cache: Option<Vec<CacheEntry>>,
    },
}

/// A request as it travels, numbered. The worker copies `seq` into its reply, so the host can
/// tell its answer from one written out of turn (a process the script forked, writing on the
/// inherited pipe) and replace the worker instead of taking a stale reply for this call's.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Numbered {
    /// The host's number for this request; absent when something else drives a worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// The request.
    #[serde(flatten)]
    pub request: Request,
}

/// `reply`, a JSON object, with `"seq": seq` added as its first member (the worker's replies
/// are objects it built itself; anything else is answered as an error that carries `seq`).
pub fn with_seq(reply: &str, seq: Option<u64>) -> String {
    let Some(seq) = seq else { return reply.to_owned() };
    match reply.strip_prefix('{').map(str::trim_start) {
        Some("}") => format!("{{\"seq\":{seq}}}"),
        Some(_) => format!("{{\"seq\":{seq},{}", &reply[1..]),
        None => serde_json::json!({ "seq": seq, "kind": "error", "message": "worker failure: a reply that is not a JSON object" })
            .to_string(),
    }
}

/// Writes one frame.
pub fn write_frame(w: &mut impl Write, payload: &[u8]) -> io::Result<()> {
    if payload.len() > MAX_FRAME {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "frame too large"));
    }
    w.write_all(&(payload.len() as u32).to_be_bytes())?;
    w.write_all(payload)?;
    w.flush()
}

/// Reads one frame; `Ok(None)` on a clean end of stream.
pub fn read_frame(r: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("frame of {len} bytes exceeds the limit")));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf)?;
    Ok(Some(buf))
}
