//! Invariant 3: secrets at rest (private keys, later sensitive parameters) are sealed with
//! AES-256-GCM under one master key. The master key comes from the operator (base64 of 32
//! bytes, e.g. `CERTHOST_MASTER_KEY`) or from a key file in the data directory, created with
//! mode 0600 on first use.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rand::RngCore;
use zeroize::Zeroizing;

/// Name of the key file inside the data directory.
pub const KEY_FILE: &str = "master.key";
/// A rotation's new key, written before the inventory is sealed under it and renamed to
/// [`KEY_FILE`] after (`inventory::open_data_dir` finishes a rotation a crash cut short).
pub const STAGED_KEY_FILE: &str = "master.key.new";
const NONCE_LEN: usize = 12;

/// The AES-256-GCM master key. Never printed, wiped on drop (clones too: each connection of
/// the inventory pool holds one).
#[derive(Clone)]
pub struct MasterKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(***)")
    }
}

/// Where the master key came from, for the operator's information.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// Given explicitly (environment or configuration).
    Explicit,
    /// Read from an existing key file.
    File(PathBuf),
    /// A new key file was created.
    Created(PathBuf),
}

/// Master-key and sealing errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VaultError {
    /// The given master key is not base64 of 32 bytes.
    #[error("the master key must be base64 of exactly 32 bytes (generate one with: openssl rand -base64 32)")]
    BadKeyEncoding,
    /// The key file exists but is unusable.
    #[error("master key file {path} is not usable: {reason}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Decryption failed: wrong master key or tampered data.
    #[error("sealed data cannot be opened: wrong master key, or the data was altered")]
    Open,
    /// Sealed data too short to hold a nonce and tag.
    #[error("sealed data is truncated")]
    Truncated,
}

/// A key file without a database beside it is taken for a data directory being created only
/// while it is younger than this; after that, for one whose inventory was lost.
const ORPHAN_KEY_AGE: std::time::Duration = std::time::Duration::from_secs(60);

impl MasterKey {
    /// Decodes base64 of exactly 32 bytes.
    pub fn from_base64(text: &str) -> Result<Self, VaultError> {
        let bytes = Zeroizing::new(B64.decode(text.trim()).map_err(|_| VaultError::BadKeyEncoding)?);
        let arr: [u8; 32] = bytes.as_slice().try_into().map_err(|_| VaultError::BadKeyEncoding)?;
        Ok(Self(Zeroizing::new(arr)))
    }

    /// The key as base64, as `master.key` and `CERTHOST_MASTER_KEY` hold it: only for
    /// redacting it from what a hook prints (`cat master.key` in a post_hook put it in the
    /// audit log, which auditors read; review of stop 31).
    pub(crate) fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(B64.encode(self.0.as_slice()))
    }

    /// A fresh random key.
    pub fn generate() -> Self {
        let mut k = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(k.as_mut_slice());
        Self(k)
    }

    /// Uses `explicit` when given, else the data directory's key file, creating it (mode
    /// 0600) when absent. A key file readable by group or others is refused.
    pub fn load_or_create(data_dir: &Path, explicit: Option<&str>) -> Result<(Self, KeySource), VaultError> {
        if let Some(text) = explicit {
            return Ok((Self::from_base64(text)?, KeySource::Explicit));
        }
        let path = data_dir.join(KEY_FILE);
        let file_err = |reason: String| VaultError::KeyFile { path: path.clone(), reason };
        match fs::metadata(&path) {
            Ok(meta) => {
                let key = Self::read_file(&path, &meta)?;
                // A key file that has outlived its database: the inventory was deleted or
                // emptied, and opening would start a new, empty one in its place while `serve`
                // stopped renewing everything the old one held. A key made in the last minute
                // belongs to a data directory being created (by another process, at once).
                let db = fs::metadata(data_dir.join(crate::inventory::DB_FILE));
                let no_inventory = db.as_ref().map_or(true, |m| m.len() == 0);
                let old_key =
                    meta.modified().ok().and_then(|t| t.elapsed().ok()).is_some_and(|age| age > ORPHAN_KEY_AGE);
                if no_inventory && old_key {
                    return Err(file_err(format!(
                        "it has no inventory beside it ({} is missing or empty): restore {0} from a backup, or move {KEY_FILE} \
                         aside to start a new inventory",
                        crate::inventory::DB_FILE
                    )));
                }
                Ok((key, KeySource::File(path)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // A database without its key file was sealed under a key we do not have: a new
                // key would open nothing and leave a stray key file beside it.
                // Another process creating this data directory links its key file before it
                // creates the database, so a database we see implies its key file exists now
                // unless it is truly gone: look once more before refusing.
                if data_dir.join(crate::inventory::DB_FILE).exists() {
                    if path.exists() {
                        return Self::load_or_create(data_dir, None);
                    }
                    return Err(file_err(
                        "it is missing, but the data directory holds a database sealed under some master key; \
                         restore the key file or set CERTHOST_MASTER_KEY"
                            .into(),
                    ));
                }
                // Written to a private temporary file first and then linked into place, so
                // another process never reads a half-written key file, and two processes
                // starting at once end up with the same key (the link fails for the second).
                let key = Self::generate();
                let tmp = data_dir.join(format!(".{KEY_FILE}.{}", std::process::id()));
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&tmp)
                    .map_err(|e| file_err(e.to_string()))?;
                let text = Zeroizing::new(B64.encode(key.0.as_slice()));
                f.write_all(text.as_bytes()).and_then(|_| f.sync_all()).map_err(|e| file_err(e.to_string()))?;
                let linked = fs::hard_link(&tmp, &path);
                let _ = fs::remove_file(&tmp);
                match linked {
                    Ok(()) => Ok((key, KeySource::Created(path))),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Self::load_or_create(data_dir, None),
                    Err(e) => Err(file_err(e.to_string())),
                }
            }
            Err(e) => Err(file_err(e.to_string())),
        }
    }

    /// `explicit` when given, else the data directory's key file when there is one; never
    /// creates a key. What `certhost restore` opens a backup with: a new key would open
    /// nothing, and the key file of a data directory whose inventory was lost is exactly the
    /// one its backup needs (which `load_or_create` refuses to use on its own).
    pub fn load_existing(data_dir: &Path, explicit: Option<&str>) -> Result<Option<Self>, VaultError> {
        if let Some(text) = explicit {
            return Self::from_base64(text).map(Some);
        }
        let path = data_dir.join(KEY_FILE);
        match fs::metadata(&path) {
            Ok(meta) => Self::read_file(&path, &meta).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(VaultError::KeyFile { path, reason: e.to_string() }),
        }
    }

    /// A key file's key; refused when other users may read it.
    fn read_file(path: &Path, meta: &fs::Metadata) -> Result<Self, VaultError> {
        let file_err = |reason: String| VaultError::KeyFile { path: path.to_owned(), reason };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(file_err(format!("it is readable by other users (mode {mode:o}); run chmod 600 on it")));
        }
        let text = Zeroizing::new(fs::read_to_string(path).map_err(|e| file_err(e.to_string()))?);
        Self::from_base64(&text).map_err(|_| file_err("it does not hold base64 of 32 bytes".into()))
    }

    /// Whether both are the same key (a rotation to the key in use would change nothing).
    pub fn same_as(&self, other: &MasterKey) -> bool {
        // Not a check an attacker times: only a rotation compares keys, once.
        self.0.as_slice() == other.0.as_slice()
    }

    /// Writes this key to [`STAGED_KEY_FILE`] (mode 0600, synced, replacing a stale one that an
    /// earlier rotation left before its commit), before the inventory is sealed under it.
    pub fn stage_key_file(&self, data_dir: &Path) -> Result<(), VaultError> {
        let path = data_dir.join(STAGED_KEY_FILE);
        let file_err = |e: std::io::Error| VaultError::KeyFile { path: path.clone(), reason: e.to_string() };
        let tmp = data_dir.join(format!(".{STAGED_KEY_FILE}.{}", std::process::id()));
        let written = (|| {
            let mut f = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
            // The key file keeps its owner: a rotation run with sudo in a service's directory
            // left a key file only root could read (review of stop 35).
            if let Ok(old) = fs::metadata(data_dir.join(KEY_FILE)) {
                use std::os::unix::fs::MetadataExt;
                std::os::unix::fs::fchown(&f, Some(old.uid()), Some(old.gid()))?;
            }
            f.write_all(self.to_base64().as_bytes())?;
            f.sync_all()?;
            fs::rename(&tmp, &path)?;
            sync_dir(data_dir)
        })();
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written.map_err(file_err)
    }

    /// The staged key of a rotation, when one is there.
    pub fn staged_key_file(data_dir: &Path) -> Result<Option<Self>, VaultError> {
        let path = data_dir.join(STAGED_KEY_FILE);
        match fs::metadata(&path) {
            // Renamed into place by another process between the look and the read (commands
            // starting together after a crash race to finish the rotation; a CI run of stop 38
            // failed on it): gone is "none", and the caller reads the key file again.
            Ok(meta) => match Self::read_file(&path, &meta) {
                Err(_) if !path.exists() => Ok(None),
                read => read.map(Some),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(VaultError::KeyFile { path, reason: e.to_string() }),
        }
    }

    /// Puts the staged key in [`KEY_FILE`]'s place once the inventory is sealed under it.
    pub fn install_staged_key_file(data_dir: &Path) -> Result<(), VaultError> {
        let path = data_dir.join(KEY_FILE);
        fs::rename(data_dir.join(STAGED_KEY_FILE), &path)
            .and_then(|()| sync_dir(data_dir))
            .map_err(|e| VaultError::KeyFile { path, reason: e.to_string() })
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(self.0.as_slice().into())
    }

    /// Encrypts `plaintext`, binding it to `aad` (e.g. the row it belongs to).
    /// Output: 12-byte random nonce followed by ciphertext and tag.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        // Encryption with a 32-byte key and a 12-byte nonce cannot fail for inputs below
        // AES-GCM's 64 GiB limit; private keys and parameters are a few KiB at most.
        let ct = self.cipher().encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad }).unwrap_or_default();
        let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// A digest of `data` only the holder of this key can compute: a row id that gives away
    /// nothing of what it names (`label` keeps each use's digests apart).
    pub fn keyed_digest(&self, label: &str, data: &[u8]) -> [u8; 32] {
        use ring::hmac;
        // A subkey per label, so the master key itself never keys anything but AES-GCM.
        let sub = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, self.0.as_slice()), label.as_bytes());
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, sub.as_ref()), data);
        let mut out = [0u8; 32];
        // An HMAC-SHA256 tag is 32 bytes.
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// Decrypts what [`MasterKey::seal`] produced with the same `aad`.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        if sealed.len() < NONCE_LEN + 16 {
            return Err(VaultError::Truncated);
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        self.cipher()
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
            .map(Zeroizing::new)
            .map_err(|_| VaultError::Open)
    }
}

/// Makes a rename in `dir` durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_wrong_key_or_aad_fail() {
        let k = MasterKey::generate();
        let sealed = k.seal(b"secret", b"row-1");
        assert_eq!(k.open(&sealed, b"row-1").expect("open").as_slice(), b"secret");
        assert!(matches!(k.open(&sealed, b"row-2"), Err(VaultError::Open)));
        assert!(matches!(MasterKey::generate().open(&sealed, b"row-1"), Err(VaultError::Open)));
        assert!(matches!(k.open(&sealed[..10], b"row-1"), Err(VaultError::Truncated)));
    }

    #[test]
    fn key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (k1, src) = MasterKey::load_or_create(dir.path(), None).expect("create");
        assert!(matches!(src, KeySource::Created(_)));
        let mode = fs::metadata(dir.path().join(KEY_FILE)).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (k2, src) = MasterKey::load_or_create(dir.path(), None).expect("reuse");
        assert!(matches!(src, KeySource::File(_)));
        assert_eq!(k2.open(&k1.seal(b"x", b""), b"").expect("same key").as_slice(), b"x");
        fs::set_permissions(dir.path().join(KEY_FILE), fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = MasterKey::load_or_create(dir.path(), None).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }

    #[test]
    fn explicit_key_must_be_32_bytes() {
        assert!(MasterKey::from_base64("c2hvcnQ=").is_err());
        assert!(MasterKey::from_base64(&B64.encode([7u8; 32])).is_ok());
    }

    /// A rotation run as root keeps the key file's owner (review of stop 35).
    #[test]
    fn a_staged_key_file_takes_the_key_file_s_owner() {
        use std::os::unix::fs::MetadataExt;
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return; // only root can give a file away
        }
        let dir = tempfile::tempdir().expect("tempdir");
        MasterKey::load_or_create(dir.path(), None).expect("key");
        std::os::unix::fs::chown(dir.path().join(KEY_FILE), Some(65534), Some(65534)).expect("chown");
        MasterKey::generate().stage_key_file(dir.path()).expect("stage");
        let staged = fs::metadata(dir.path().join(STAGED_KEY_FILE)).expect("staged");
        assert_eq!((staged.uid(), staged.gid(), staged.permissions().mode() & 0o777), (65534, 65534, 0o600));
    }
}
