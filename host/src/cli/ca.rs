//! `certhost ca init`: a private root CA for the local-ca connector.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;

/// CA subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create a self-signed P-256 root CA: writes ca.pem and ca.key (mode 0600) into DIR.
    Init {
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// The CA's common name.
        #[arg(long, default_value = "certhost local CA")]
        cn: String,
        /// Validity in days.
        #[arg(long, default_value_t = 3650)]
        days: u32,
    },
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    let Command::Init { out, cn, days } = cmd;
    let (cert_path, key_path) = (out.join("ca.pem"), out.join("ca.key"));
    for p in [&cert_path, &key_path] {
        if p.exists() {
            bail!("{} already exists; refusing to overwrite a CA", p.display());
        }
    }
    let ca = certhost::root_ca::create(&cn, days)?;
    super::key_csr::create_private_dir(&out)?;
    super::key_csr::write_new(&key_path, ca.key.to_pem().as_bytes(), 0o600)?;
    super::key_csr::write_new(&cert_path, ca.certificate_pem.as_bytes(), 0o644)?;
    println!("wrote {} and {} (mode 0600)", cert_path.display(), key_path.display());
    Ok(ExitCode::SUCCESS)
}
