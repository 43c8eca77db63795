//! `certhost import`: bring existing certificates into the inventory.

use std::path::PathBuf;
use std::process::ExitCode;

use certhost::import::import_paths;
use certhost::inventory::Inventory;

/// Arguments of `import`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Files or directories (walked recursively) holding PEM or DER certificates.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Private key (PKCS#8, PKCS#1 or SEC1 PEM) to store with the certificate it matches.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Exit 0 when nothing failed; 1 when any file was refused (the good ones are still imported).
pub fn run(args: Args, inv: &mut Inventory, env: &super::Env) -> anyhow::Result<ExitCode> {
    let report = import_paths(inv, &args.paths, args.key.as_deref(), &env.actor)?;
    if args.json {
        super::output::json(&report)?;
    } else {
        use super::output::terminal_safe as safe;
        for i in &report.imported {
            let key = if i.with_key { " with its private key" } else { "" };
            let expired =
                i.expired_at.map(|at| format!("; expired {}", super::output::rfc3339(at))).unwrap_or_default();
            println!("imported  #{:<6} {}{}{expired}  ({})", i.id, safe(&i.subject), key, safe(&i.source));
        }
        for d in &report.duplicates {
            let key = if d.with_key { "; its private key is stored" } else { "" };
            println!(
                "duplicate #{:<6} {}  already in the inventory{key} ({})",
                d.id,
                safe(&d.subject),
                safe(&d.source)
            );
        }
        for f in &report.skipped {
            println!("skipped   {}: {}", safe(&f.source), safe(&f.reason));
        }
        for f in &report.failed {
            eprintln!("failed    {}: {}", safe(&f.source), safe(&f.reason));
        }
        println!(
            "{} imported, {} duplicate, {} failed",
            report.imported.len(),
            report.duplicates.len(),
            report.failed.len()
        );
    }
    Ok(if report.failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
