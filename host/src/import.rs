//! Importing existing certificates from files into the inventory.
//!
//! Accepts single PEM or DER certificates, bundles (a leaf and its chain in any order, or several
//! unrelated certificates), and directories walked recursively. A matching private key —
//! given with `--key` or inside the same file — is imported with its certificate. Bad files
//! are reported with a reason while the good ones still import; duplicates are reported, not
//! inserted twice.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::cert::{self, CertificateInfo};
use crate::der::{self, Framing};
use crate::inventory::{InsertOutcome, Inventory, InventoryError, NewCertificate};
use crate::key::{KeyError, PrivateKey};

/// Files larger than this are not certificates; refusing them bounds memory.
const MAX_FILE_BYTES: u64 = 8 * 1024 * 1024;

/// How many certificates of one file with the same subject are tried as a certificate's
/// issuer. Real bundles hold one or two per name (a root and its cross-signed twin).
const MAX_SAME_NAME: usize = 16;

/// What an import did, file by file.
#[derive(Debug, Default, Serialize)]
pub struct ImportReport {
    /// Newly stored certificates.
    pub imported: Vec<Imported>,
    /// Certificates already in the inventory.
    pub duplicates: Vec<Imported>,
    /// Files or certificates refused, with the reason.
    pub failed: Vec<Failed>,
    /// Files passed over on purpose (the `--key` file itself, key files that match no
    /// certificate of this import or of the inventory, or one already stored with its key),
    /// with the reason.
    pub skipped: Vec<Failed>,
}

/// One certificate handled by the import.
#[derive(Debug, Serialize)]
pub struct Imported {
    /// Source file (with `#N` when the file held several certificates).
    pub source: String,
    /// Inventory id (the existing one for duplicates).
    pub id: i64,
    /// Subject of the certificate.
    pub subject: String,
    /// SHA-256 thumbprint.
    pub sha256: String,
    /// Whether its private key was stored with it.
    pub with_key: bool,
    /// Its notAfter when that has passed: stored as `expired`, said so the import is not
    /// taken for a working certificate (operator review of stop 39).
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "crate::view::time_text_opt")]
    pub expired_at: Option<i64>,
}

/// One refusal.
#[derive(Debug, Serialize)]
pub struct Failed {
    /// File (and position) concerned.
    pub source: String,
    /// One sentence saying what was wrong.
    pub reason: String,
}

/// Errors that stop the whole import (per-file problems are in the report instead).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// The `--key` file cannot be used.
    #[error("private key file {path}: {reason}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The database failed.
    #[error(transparent)]
    Inventory(#[from] InventoryError),
}

/// A leaf with its chain and the key that came with it, before insertion.
struct Candidate {
    source: String,
    der: Vec<u8>,
    chain: Vec<Vec<u8>>,
    public_key_raw: Vec<u8>,
    subject: String,
    key: Option<PrivateKey>,
}

/// Imports every certificate found under `paths`. `key_file` is offered to each leaf; it is
/// stored with the leaves it matches and, if it matches none, those leaves are refused.
pub fn import_paths(
    inv: &mut Inventory,
    paths: &[PathBuf],
    key_file: Option<&Path>,
    actor: &str,
) -> Result<ImportReport, ImportError> {
    let given_key = match key_file {
        Some(path) => {
            let text = read_limited(path).map_err(|reason| ImportError::KeyFile { path: path.to_owned(), reason })?;
            let text = String::from_utf8(text)
                .map_err(|_| ImportError::KeyFile { path: path.to_owned(), reason: "not a PEM text file".into() })?;
            Some(
                PrivateKey::from_pem(&text)
                    .map_err(|e| ImportError::KeyFile { path: path.to_owned(), reason: e.to_string() })?,
            )
        }
        None => None,
    };
    let mut report = ImportReport::default();
    let mut files = Vec::new();
    let mut seen_dirs = HashSet::new();
    for path in paths {
        collect_files(path, &mut seen_dirs, &mut files, &mut report.failed);
    }
    let key_path = key_file.and_then(|p| fs::canonicalize(p).ok());
    let mut candidates = Vec::new();
    let mut loose_keys: Vec<(String, PrivateKey)> = Vec::new();
    for file in &files {
        if key_path.is_some() && fs::canonicalize(file).ok() == key_path {
            report.skipped.push(Failed { source: file.display().to_string(), reason: "the --key file itself".into() });
            continue;
        }
        match read_candidates(file) {
            Ok(FileContents::Certificates(found)) => candidates.extend(found),
            Ok(FileContents::Keys(keys)) => {
                loose_keys.extend(keys.into_iter().map(|k| (file.display().to_string(), k)));
            }
            Ok(FileContents::Nothing(what)) => {
                let entry = Failed { source: file.display().to_string(), reason: what };
                if paths.iter().any(|p| p == file) { report.failed.push(entry) } else { report.skipped.push(entry) }
            }
            Err(reason) => report.failed.push(Failed { source: file.display().to_string(), reason }),
        }
    }
    let mut unmatched_keys = Vec::new();
    for (source, key) in loose_keys {
        let mut used = false;
        for c in candidates.iter_mut().filter(|c| c.key.is_none() && c.public_key_raw == key.public_key_raw()) {
            // Re-parsing our own PKCS#8 cannot fail: it was parsed a moment ago.
            c.key = PrivateKey::from_pkcs8_der(key.pkcs8_der().to_vec()).ok();
            used = true;
        }
        if !used {
            unmatched_keys.push((source, key));
        }
    }
    if let Some(key) = &given_key {
        let any_match = candidates.iter().any(|c| c.public_key_raw == key.public_key_raw());
        for c in &mut candidates {
            if c.public_key_raw == key.public_key_raw() {
                // Re-parsing our own PKCS#8 cannot fail: it was parsed a moment ago.
                c.key = PrivateKey::from_pkcs8_der(key.pkcs8_der().to_vec()).ok();
            }
        }
        if !any_match {
            let path = key_file.map(|p| p.display().to_string()).unwrap_or_default();
            for c in candidates.drain(..) {
                report.failed.push(Failed {
                    source: c.source,
                    reason: format!("the private key in {path} does not match this certificate"),
                });
            }
        }
    }
    complete_chains(&mut candidates, &mut report.skipped, paths);
    for c in candidates {
        let new = NewCertificate {
            der: &c.der,
            chain: &c.chain,
            key: c.key.as_ref(),
            source: "import",
            profile: None,
            account: None,
            predecessor_id: None,
        };
        let (sha256, not_after) =
            CertificateInfo::from_der(&c.der).map(|i| (i.sha256, Some(i.not_after))).unwrap_or_default();
        let expired_at = not_after.filter(|at| *at < crate::clock::unix_now());
        match inv.insert_certificate(&new, actor) {
            Ok(InsertOutcome::Inserted(id)) => report.imported.push(Imported {
                source: c.source,
                id,
                subject: c.subject,
                sha256,
                with_key: c.key.is_some(),
                expired_at,
            }),
            Ok(InsertOutcome::Duplicate(id)) => report.duplicates.push(Imported {
                source: c.source,
                id,
                subject: c.subject,
                sha256,
                // A key offered for a certificate stored without one is added to it.
                with_key: c.key.is_some(),
                expired_at,
            }),
            Err(InventoryError::KeyMismatch) => report.failed.push(Failed {
                source: c.source,
                reason: "the private key in the file does not match the certificate".into(),
            }),
            Err(InventoryError::Invalid(reason)) => report.failed.push(Failed { source: c.source, reason }),
            Err(e) => return Err(e.into()),
        }
    }
    add_keys_to_stored(inv, unmatched_keys, &mut report, actor)?;
    Ok(report)
}

/// Key files that match no certificate of this import are offered to the stored ones: a
/// certificate stored without its key gets it, as re-importing its file with `--key` would
/// do; one stored with it is named, so the key file is not taken for a stray (walkthrough of
/// stop 46: it was called a key "matching no certificate").
fn add_keys_to_stored(
    inv: &mut Inventory,
    keys: Vec<(String, PrivateKey)>,
    report: &mut ImportReport,
    actor: &str,
) -> Result<(), ImportError> {
    let raws: Vec<&[u8]> = keys.iter().map(|(_, k)| k.public_key_raw()).collect();
    let holders = inv.certificates_on_keys(&raws)?;
    for (source, key) in &keys {
        // A key revoked for keyCompromise is never handed out again, as the stranded-key path
        // of an import holds too (review of stop 46's diff).
        if let Some(revoked) = inv.public_key_compromised(key.public_key_raw())? {
            report.skipped.push(Failed {
                source: source.clone(),
                reason: format!(
                    "a private key revoked for keyCompromise with certificate #{revoked}: it is not stored again"
                ),
            });
            continue;
        }
        let mut matched = false;
        for holder in holders.iter().filter(|h| h.info.public_key_raw == key.public_key_raw()) {
            matched = true;
            if holder.has_key {
                report.skipped.push(Failed {
                    source: source.clone(),
                    reason: format!("the private key of certificate #{}, already stored with it", holder.id),
                });
                continue;
            }
            let new = NewCertificate {
                der: &holder.der,
                chain: &[],
                key: Some(key),
                source: "import",
                profile: None,
                account: None,
                predecessor_id: None,
            };
            match inv.insert_certificate(&new, actor) {
                Ok(InsertOutcome::Duplicate(id) | InsertOutcome::Inserted(id)) => report.duplicates.push(Imported {
                    source: source.clone(),
                    id,
                    subject: holder.info.subject.clone(),
                    sha256: holder.info.sha256.clone(),
                    with_key: true,
                    expired_at: Some(holder.info.not_after).filter(|at| *at < crate::clock::unix_now()),
                }),
                Err(InventoryError::Invalid(reason)) => report.failed.push(Failed { source: source.clone(), reason }),
                Err(e) => return Err(e.into()),
            }
        }
        if !matched {
            report.skipped.push(Failed {
                source: source.clone(),
                reason: "a private key that matches no certificate of this import or of the inventory".into(),
            });
        }
    }
    Ok(())
}

/// Files under `path`, following links. `seen_dirs` holds every directory read so far by its
/// resolved path, so that a link back to a directory above (`ln -s . again`) is read once and
/// not until the path grows too long — with two such links, 2^40 paths.
fn collect_files(path: &Path, seen_dirs: &mut HashSet<PathBuf>, out: &mut Vec<PathBuf>, failed: &mut Vec<Failed>) {
    match fs::metadata(path) {
        Ok(meta) if meta.is_dir() => match fs::canonicalize(path).and_then(|real| Ok((real, fs::read_dir(path)?))) {
            Ok((real, _)) if seen_dirs.contains(&real) => {}
            Ok((real, entries)) => {
                seen_dirs.insert(real);
                let mut children: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
                children.sort();
                for child in children {
                    collect_files(&child, seen_dirs, out, failed);
                }
            }
            Err(e) => failed
                .push(Failed { source: path.display().to_string(), reason: format!("cannot read directory: {e}") }),
        },
        Ok(meta) if meta.is_file() => out.push(path.to_owned()),
        Ok(_) => {
            failed.push(Failed { source: path.display().to_string(), reason: "not a regular file or directory".into() })
        }
        Err(e) => failed.push(Failed { source: path.display().to_string(), reason: format!("cannot read: {e}") }),
    }
}

fn read_limited(path: &Path) -> Result<Vec<u8>, String> {
    let meta = fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!(
            "file is {} bytes, larger than any certificate file ({} bytes at most)",
            meta.len(),
            MAX_FILE_BYTES
        ));
    }
    fs::read(path).map_err(|e| format!("cannot read: {e}"))
}

/// Splits one file's certificates into leaves, each with its chain, whatever their order in
/// the file: the leaves are the certificates that issued no other certificate of the file, and
/// a leaf's chain follows its issuers (by name and signature, [`cert::issued_by`]) among the
/// file's certificates. A CA certificate of a leaf's chain is not a leaf of its own, as in a
/// leaf-first bundle; repeated copies of one certificate count once.
///
/// Each certificate is parsed once, and a signature is checked only for certificates whose
/// subject is the child's issuer name, at most [`MAX_SAME_NAME`] of them: a file of thousands
/// of certificates sharing one name would otherwise cost a failing signature check per pair
/// (hours of CPU for an 8 MiB file).
pub fn leaves_with_chains(mut ders: Vec<Vec<u8>>) -> Vec<(Vec<u8>, Vec<Vec<u8>>)> {
    let mut seen = HashSet::new();
    ders.retain(|der| seen.insert(der.clone()));
    let pool = Pool::new(&ders);
    let mut issued_something = vec![false; ders.len()];
    for parent in pool.issuer.iter().flatten() {
        issued_something[*parent] = true;
    }
    (0..ders.len())
        .filter(|&i| !issued_something[i])
        .map(|leaf| (ders[leaf].clone(), pool.chain(leaf).into_iter().map(|p| ders[p].clone()).collect()))
        .collect()
}

/// Certificates parsed once, each with its issuer among them (by name and signature,
/// [`cert::signed_by`]; at most [`MAX_SAME_NAME`] candidates per name).
struct Pool {
    issuer: Vec<Option<usize>>,
}

impl Pool {
    fn new(ders: &[Vec<u8>]) -> Self {
        Self { issuer: cert::issuer_indices(ders, MAX_SAME_NAME) }
    }

    /// The issuers above certificate `leaf`, nearest first. Two CA certificates that
    /// cross-sign each other would loop: each is taken once.
    fn chain(&self, leaf: usize) -> Vec<usize> {
        let mut chain = Vec::new();
        let mut at = leaf;
        while let Some(parent) = self.issuer[at].filter(|p| *p != leaf && !chain.contains(p)) {
            chain.push(parent);
            at = parent;
        }
        chain
    }
}

/// Gives a leaf that came without its chain (certbot's `cert.pem`) the chain the import's
/// other files hold (`chain.pem`), and passes over a CA certificate that is only another
/// certificate's chain: a certbot directory is one certificate with its chain, not a leaf
/// without one beside its intermediate as a second managed certificate.
fn complete_chains(candidates: &mut Vec<Candidate>, skipped: &mut Vec<Failed>, named: &[PathBuf]) {
    // Certificates that came as a chain in some file (certbot's fullchain.pem): only such a
    // CA certificate is passed over as a certificate of its own. A CA file beside the leaves
    // it issued (an openssl CA directory's ca.pem) is kept, and tracked for its expiry.
    let bundled: HashSet<Vec<u8>> = candidates.iter().flat_map(|c| c.chain.iter().cloned()).collect();
    let mut ders: Vec<Vec<u8>> = Vec::new();
    let mut seen = HashSet::new();
    for c in candidates.iter() {
        for der in std::iter::once(&c.der).chain(&c.chain) {
            if seen.insert(der.clone()) {
                ders.push(der.clone());
            }
        }
    }
    let pool = Pool::new(&ders);
    let position: std::collections::HashMap<&[u8], usize> =
        ders.iter().enumerate().map(|(i, d)| (d.as_slice(), i)).collect();
    for c in candidates.iter_mut().filter(|c| c.chain.is_empty()) {
        if let Some(&i) = position.get(c.der.as_slice()) {
            c.chain = pool.chain(i).into_iter().map(|p| ders[p].clone()).collect();
        }
    }
    let (chains_only, keep): (Vec<_>, Vec<_>) = std::mem::take(candidates).into_iter().partition(|c| {
        c.key.is_none() && bundled.contains(&c.der) && !named.iter().any(|p| p.as_os_str() == c.source.as_str())
    });
    *candidates = keep;
    for c in chains_only {
        skipped.push(Failed {
            source: c.source,
            reason: format!(
                "{}: the CA certificate of another certificate of this import, stored as its chain",
                c.subject
            ),
        });
    }
}

/// What one file held.
enum FileContents {
    /// Leaves with chains (and the keys found beside them).
    Certificates(Vec<Candidate>),
    /// Only private keys.
    Keys(Vec<PrivateKey>),
    /// Neither (a CSR, a serial file, a README), with what it was: passed over when found in
    /// a directory, a failure when named on the command line.
    Nothing(String),
}

/// Splits one file into leaves with chains; a key in the same file goes to the leaf it matches.
fn read_candidates(path: &Path) -> Result<FileContents, String> {
    let bytes = read_limited(path)?;
    let name = path.display().to_string();
    let (ders, keys) = if der::looks_like_pem(&bytes) || bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        let text = String::from_utf8(bytes).map_err(|_| "PEM file is not valid text".to_string())?;
        let blocks = pem::parse_many(&text).map_err(|e| format!("malformed PEM: {}", der::pem_error_sentence(&e)))?;
        let begins = text.matches("-----BEGIN ").count();
        if begins != blocks.len() {
            return Err(format!(
                "malformed PEM: {} of {begins} blocks are incomplete or corrupt (truncated file?)",
                begins - blocks.len().min(begins)
            ));
        }
        let mut ders = Vec::new();
        let mut keys = Vec::new();
        let mut pkcs7 = false;
        let mut others: Vec<String> = Vec::new();
        for b in blocks {
            match b.tag() {
                "CERTIFICATE" => ders.push(b.into_contents()),
                // openssl x509 -addtrust/-trustout: the certificate, then its trust settings
                // (X509_AUX), which certhost does not keep.
                "TRUSTED CERTIFICATE" => {
                    ders.push(der::leading_object(b.contents()).map_or_else(|| b.contents().to_vec(), <[u8]>::to_vec))
                }
                "PKCS7" | "CMS" => pkcs7 = true,
                "PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY" | "ENCRYPTED PRIVATE KEY" => keys.push(
                    // With its headers: a legacy-encrypted key says so only there.
                    PrivateKey::from_pem(&zeroize::Zeroizing::new(pem::encode(&b)))
                        .map_err(|e: KeyError| format!("private key in file: {e}"))?,
                ),
                // A CSR, parameters, a public key, a CRL: named if the file holds nothing else.
                tag => {
                    if !others.iter().any(|o| o == tag) {
                        others.push(tag.to_owned());
                    }
                }
            }
        }
        if ders.is_empty() {
            if keys.is_empty() && pkcs7 {
                return Err(der::container_sentence("a PKCS#7 file", "a certificate"));
            }
            if keys.is_empty() {
                return Ok(FileContents::Nothing(format!(
                    "holds no certificate or private key (only {})",
                    others.join(", ")
                )));
            }
            // A key file beside its certificate (web.pem + web.key): offered to the leaves
            // of this import that came without a key.
            return Ok(FileContents::Keys(keys));
        }
        (ders, keys)
    } else {
        // Named as a certificate or key, it should be one: a failure. Anything else that is
        // text without a PEM block (openssl's serial and index files, a README, a .cnf) or
        // empty is no certificate file at all.
        let named_as_one = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| ["pem", "crt", "cer", "der", "key", "cert"].contains(&e.to_ascii_lowercase().as_str()));
        if !named_as_one {
            if bytes.is_empty() {
                return Ok(FileContents::Nothing("the file is empty".into()));
            }
            if matches!(der::framing(&bytes), Framing::NotASequence) && std::str::from_utf8(&bytes).is_ok() {
                return Ok(FileContents::Nothing("a text file without a PEM block".into()));
            }
        } else if bytes.is_empty() {
            return Err("the file is empty".into());
        }
        CertificateInfo::from_der(&bytes).map_err(|e| match der::framing(&bytes) {
            Framing::NotASequence => "neither PEM nor a DER certificate".to_owned(),
            _ => e.to_string(),
        })?;
        (vec![bytes], Vec::new())
    };

    let groups = leaves_with_chains(ders);
    let many = groups.len() > 1;
    let mut out = Vec::new();
    let mut keys: Vec<Option<PrivateKey>> = keys.into_iter().map(Some).collect();
    for (i, (der, chain)) in groups.into_iter().enumerate() {
        let source = if many { format!("{name}#{}", i + 1) } else { name.clone() };
        let info = CertificateInfo::from_der(&der)
            .map_err(|e| if many { format!("certificate {}: {e}", i + 1) } else { e.to_string() })?;
        let key = keys
            .iter_mut()
            .find(|k| k.as_ref().is_some_and(|k| k.public_key_raw() == info.public_key_raw))
            .and_then(Option::take);
        out.push(Candidate { source, der, chain, public_key_raw: info.public_key_raw, subject: info.subject, key });
    }
    if keys.iter().any(Option::is_some) {
        return Err("the private key in the file matches none of its certificates".into());
    }
    Ok(FileContents::Certificates(out))
}
