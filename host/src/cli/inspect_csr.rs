//! `certhost inspect-csr`: parse and verify a CSR the way the host will when one is uploaded.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use certhost::csr::parse_csr;

/// Arguments of `inspect-csr`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// CSR file, PEM or DER.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Exit 0 when the CSR is acceptable (parses, self-signature verifies, supported key).
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let meta = std::fs::metadata(&args.file).with_context(|| format!("cannot read {}", args.file.display()))?;
    anyhow::ensure!(
        meta.len() <= 1024 * 1024,
        "{} is {} bytes; a CSR is at most 1 MiB",
        args.file.display(),
        meta.len()
    );
    let bytes = std::fs::read(&args.file).with_context(|| format!("cannot read {}", args.file.display()))?;
    let csr = parse_csr(&bytes).with_context(|| format!("{} is refused", args.file.display()))?;
    if args.json {
        super::output::json(&serde_json::json!({
            "subject": csr.subject,
            "common_name": csr.common_name,
            "sans": csr.sans.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "key_type": csr.key.family(),
            "key_bits": csr.key.bits(),
            "signature": "valid",
        }))?;
    } else {
        println!("Subject:    {}", super::output::terminal_safe(&csr.subject));
        let sans: Vec<String> = csr.sans.iter().map(ToString::to_string).collect();
        let sans = if sans.is_empty() { "-".to_owned() } else { sans.join(", ") };
        println!("SANs:       {}", super::output::terminal_safe(&sans));
        println!("Key:        {} {} bits", csr.key.family(), csr.key.bits());
        println!("Signature:  valid");
    }
    Ok(ExitCode::SUCCESS)
}
