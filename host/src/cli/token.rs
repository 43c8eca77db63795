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
        /// Stop accepting the token after this long: a number and a unit, s, m, h, d or w
        /// (`90d`, `12h`). Without it the token lasts until revoked.
        #[arg(long, value_parser = parse_lifetime)]
        expires_in: Option<u64>,
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

impl Command {
    /// Whether the command only reads the inventory (and so needs one to exist).
    pub fn reads_only(&self) -> bool {
        matches!(self, Command::List { .. })
    }
}

pub fn run(cmd: Command, inv: &mut Inventory, env: &super::Env) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Create { name, role, expires_in } => {
            let expires_at = match expires_in {
                Some(secs) => Some(
                    i64::try_from(secs)
                        .ok()
                        .and_then(|secs| output::now().checked_add(secs))
                        .filter(|at| *at <= certhost::inventory::MAX_TOKEN_EXPIRY)
                        .ok_or_else(|| anyhow::anyhow!("--expires-in is too long: at most the year 9999"))?,
                ),
                None => None,
            };
            let token = inv.create_token(&name, role, expires_at, &env.actor)?;
            println!("{}", token.as_str());
            let lasts = match expires_at {
                Some(at) => format!("expires at {}", output::rfc3339(at)),
                None => "lasts until revoked".to_owned(),
            };
            eprintln!("token {name} ({}) created, {lasts}; store it now, it is not shown again", role.as_str());
        }
        Command::List { json } => {
            let tokens = inv.tokens()?;
            let now = output::now();
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
                            match t.expires_at {
                                Some(at) if t.expired(now) => format!("{} (expired)", output::rfc3339(at)),
                                Some(at) => output::rfc3339(at),
                                None => "never".into(),
                            },
                            t.revoked_at.map(output::rfc3339).unwrap_or_else(|| "-".into()),
                        ]
                    })
                    .collect();
                output::table(&["NAME", "ROLE", "CREATED", "EXPIRES", "REVOKED"], &rows);
            }
        }
        Command::Revoke { name } => {
            inv.revoke_token(&name, &env.actor)?;
            println!("token {name} revoked");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A token's lifetime in seconds, from a number and a unit: `30s`, `15m`, `12h`, `90d`, `52w`.
fn parse_lifetime(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return Err(format!("{text:?} is not a lifetime: a whole number and a unit, for example 90d"));
    }
    let unit_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 604_800,
        "" => return Err(format!("{text:?} has no unit: add s, m, h, d or w (for example 90d)")),
        other => return Err(format!("unknown unit {other:?}: use s, m, h, d or w (for example 90d)")),
    };
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a lifetime: a whole number and a unit, for example 90d"))?;
    if number == 0 {
        return Err("a token's lifetime must be more than zero".into());
    }
    number.checked_mul(unit_secs).ok_or_else(|| format!("{text:?} is too long"))
}

#[cfg(test)]
mod tests {
    use super::parse_lifetime;

    #[test]
    fn a_lifetime_is_a_whole_number_and_a_unit() {
        assert_eq!(parse_lifetime("90d"), Ok(90 * 86_400));
        assert_eq!(parse_lifetime("12h"), Ok(43_200));
        assert_eq!(parse_lifetime("2w"), Ok(1_209_600));
        assert_eq!(parse_lifetime("30s"), Ok(30));
        for (bad, says) in [
            ("90", "has no unit"),
            ("90y", "unknown unit \"y\""),
            ("d", "is not a lifetime"),
            ("-5d", "is not a lifetime"),
            ("1.5d", "unknown unit \".5d\""),
            ("0h", "more than zero"),
            ("99999999999999999999d", "is not a lifetime"),
            ("9999999999999999999w", "is too long"),
        ] {
            let err = parse_lifetime(bad).expect_err(bad);
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}
