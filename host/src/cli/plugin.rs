//! `certhost plugin check`: the conformance run for a connector file.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use certhost::account::{AccountDef, AccountStatus};
use certhost::connector::{Args, ConnectorSource, check};

/// Plugin subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Load a connector (.wasm or .py), request a certificate, verify it as the host does,
    /// exercise every optional operation it declares; one pass/fail line per check.
    Check {
        /// The connector file.
        path: PathBuf,
        /// Parameter NAME=VALUE (repeatable); values of parameters the connector declares
        /// sensitive are redacted from all output.
        #[arg(long = "param", value_name = "NAME=VALUE")]
        params: Vec<String>,
        /// Sensitive parameter NAME=VALUE (repeatable): redacted from all output even when
        /// the connector does not declare it sensitive.
        #[arg(long = "sensitive-param", value_name = "NAME=VALUE")]
        sensitive_params: Vec<String>,
        /// Call deadline in seconds.
        #[arg(long, default_value_t = 30)]
        timeout_seconds: u64,
        /// Outbound host the connector may reach (repeatable; WASM connectors).
        #[arg(long = "allowed-host", value_name = "HOST")]
        allowed_hosts: Vec<String>,
    },
}

pub fn run(cmd: Command, env: &super::Env) -> anyhow::Result<ExitCode> {
    let Command::Check { path, params, sensitive_params, timeout_seconds, allowed_hosts } = cmd;
    let path = std::path::absolute(&path).with_context(|| format!("bad path {}", path.display()))?;
    let given = super::kv_pairs(&params)?;
    let secrets = super::kv_pairs(&sensitive_params)?;
    let def = AccountDef {
        connector: path.clone(),
        description: String::new(),
        status: AccountStatus::Active,
        params: Default::default(),
        allowed_hosts,
        extra_ca_pems: vec![],
        timeout_seconds: Some(timeout_seconds),
        memory_mib: None,
    };
    def.check("plugin-check")?;
    let registry = super::registry(&env.data_dir);
    let lines = super::runtime()?.block_on(async {
        let connector = registry.connector("plugin-check", &def).await?;
        let description = connector.describe().await.ok();
        let mut args = Args::new();
        for (k, v) in &given {
            let sensitive =
                description.as_ref().is_some_and(|d| d.parameters.iter().any(|p| &p.name == k && p.sensitive));
            if sensitive { args.insert_sensitive(k.clone(), v.clone()) } else { args.insert(k.clone(), v.clone()) }
        }
        for (k, v) in &secrets {
            args.insert_sensitive(k.clone(), v.clone());
        }
        anyhow::Ok(check::run(&*connector, &args).await)
    })?;
    let mut all = true;
    for l in &lines {
        all &= l.passed;
        println!("{} {:<22} {}", if l.passed { "PASS" } else { "FAIL" }, l.check, l.detail);
    }
    println!(
        "{}: {} passed, {} failed",
        path.display(),
        lines.iter().filter(|l| l.passed).count(),
        lines.iter().filter(|l| !l.passed).count()
    );
    Ok(if all { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
