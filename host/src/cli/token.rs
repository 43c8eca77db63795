//! `certhost token`: API bearer tokens.

use std::process::ExitCode;

use certhost::inventory::{Inventory, Role};

use super::output;

/// Token subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create a token; it is printed once and only its hash is stored.
    Create {
        /// Unique name (audit events say token:NAME).
        #[arg(long)]
        name: String,
        /// admin, operator, requester or auditor.
        #[arg(long)]
        role: Role,
    },
    /// List tokens (never their values).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by name.
    Revoke {
        /// Token name.
        name: String,
    },
}

pub fn run(cmd: Command, inv: &mut Inventory, env: &super::Env) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Create { name, role } => {
            let token = inv.create_token(&name, role, &env.actor)?;
            println!("{}", token.as_str());
            eprintln!("token {name} ({}) created; store it now, it is not shown again", role.as_str());
        }
        Command::List { json } => {
            let tokens = inv.tokens()?;
            if json {
                output::json(&tokens)?;
            } else {
                let rows: Vec<Vec<String>> = tokens
                    .iter()
                    .map(|t| {
                        vec![
                            t.name.clone(),
                            t.role.as_str().into(),
                            output::rfc3339(t.created_at),
                            t.revoked_at.map(output::rfc3339).unwrap_or_else(|| "-".into()),
                        ]
                    })
                    .collect();
                output::table(&["NAME", "ROLE", "CREATED", "REVOKED"], &rows);
            }
        }
        Command::Revoke { name } => {
            inv.revoke_token(&name, &env.actor)?;
            println!("token {name} revoked");
        }
    }
    Ok(ExitCode::SUCCESS)
}
