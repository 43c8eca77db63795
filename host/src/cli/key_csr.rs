//! `certhost key-csr`: generate a key and a CSR into a directory.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use certhost::csr::{CsrParams, San, Subject};
use certhost::key::{HashAlg, KeyType};

/// Arguments of `key-csr`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Key type: rsa-2048, rsa-3072, rsa-4096, ec-p256, ec-p384, ed25519.
    #[arg(long, default_value = "ec-p256")]
    key_type: KeyType,
    /// Common name (CN), at most 64 characters.
    #[arg(long)]
    cn: String,
    /// Subject alternative name: DNS:name, IP:address, EMAIL:address or URI:uri (repeatable).
    /// A CN that is a DNS name is added as the first one unless given or `--no-cn-san`.
    #[arg(long = "san", value_name = "TYPE:VALUE")]
    sans: Vec<San>,
    /// Leave a host-name CN out of the SANs (clients ignore the CN: the certificate would
    /// name no host, and profiles that put the CN among the SANs refuse such a CSR).
    #[arg(long)]
    no_cn_san: bool,
    /// Organisation (O), repeatable.
    #[arg(long = "o", value_name = "ORG")]
    organization: Vec<String>,
    /// Organisational unit (OU), repeatable.
    #[arg(long = "ou", value_name = "UNIT")]
    organizational_unit: Vec<String>,
    /// Locality (L).
    #[arg(long = "l", value_name = "CITY")]
    locality: Option<String>,
    /// State or province (ST).
    #[arg(long = "st", value_name = "STATE")]
    state: Option<String>,
    /// Two-letter country code (C).
    #[arg(long = "c", value_name = "CC")]
    country: Option<String>,
    /// Email address in the subject (emailAddress).
    #[arg(long)]
    email: Option<String>,
    /// Signature hash: sha256, sha384, sha512 (where the key type allows; default per key).
    #[arg(long)]
    hash: Option<HashAlg>,
    /// Directory to write key.pem (mode 0600) and csr.pem into; created when missing.
    #[arg(long)]
    out: PathBuf,
    /// Print what was written as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(mut args: Args) -> anyhow::Result<ExitCode> {
    // As a profile's include_cn does for a request.
    if !args.no_cn_san {
        certhost::csr::include_cn_in_sans(&args.cn, &mut args.sans);
    }
    let params = CsrParams {
        subject: Subject {
            common_name: Some(args.cn),
            organization: args.organization,
            organizational_unit: args.organizational_unit,
            locality: args.locality,
            state: args.state,
            country: args.country,
            email: args.email,
        },
        sans: args.sans,
        key_type: args.key_type,
        hash: args.hash,
    };
    params.validate()?;
    let key_path = args.out.join("key.pem");
    let csr_path = args.out.join("csr.pem");
    for p in [&key_path, &csr_path] {
        if p.exists() {
            bail!("{} already exists; refusing to overwrite it (choose another --out)", p.display());
        }
    }
    let (key, csr) = params.generate()?;
    create_private_dir(&args.out)?;
    write_new(&key_path, key.to_pem().as_bytes(), 0o600)?;
    write_new(&csr_path, csr.pem.as_bytes(), 0o644)?;
    if args.json {
        super::output::json(&serde_json::json!({
            "key": key_path,
            "csr": csr_path,
            "key_type": params.key_type,
            "subject": params.subject,
            "sans": params.sans.iter().map(ToString::to_string).collect::<Vec<_>>(),
        }))?;
    } else {
        println!("wrote {} ({}, mode 0600)", key_path.display(), params.key_type);
        println!("wrote {}", csr_path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Creates `dir` and missing parents 0700, whatever the umask: it is about to hold a private
/// key, and a directory others may write to lets them replace it.
pub fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
}

/// Creates `path` (never overwriting) with `mode`, writes and fsyncs it.
pub fn write_new(path: &Path, data: &[u8], mode: u32) -> anyhow::Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(data).and_then(|_| f.sync_all()).with_context(|| format!("cannot write {}", path.display()))
}
