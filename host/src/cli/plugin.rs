//! `certhost plugin check`: the conformance run for a connector file.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use certhost::account::{AccountDef, AccountStatus};
use certhost::connector::{Args, ConnectorSource, check};

/// Plugin subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create a connector crate in PLUGINS_DIR/NAME that builds and passes `plugin check`
    /// as it is: a CA inside a component (the local-ca connector) to start from.
    New {
        /// Connector name: lowercase letters, digits and '-', starting with a letter.
        name: String,
        /// Language of the connector (rust).
        #[arg(long, default_value = "rust")]
        lang: String,
        /// Where to create it: a plugins workspace (its Cargo.toml gains the new member), or any
        /// directory (the crate then builds on its own).
        #[arg(long, default_value = "plugins")]
        plugins_dir: PathBuf,
        /// Path of the Rust SDK, relative to the new crate.
        #[arg(long, default_value = "../../plugin-sdk/rust")]
        sdk: String,
    },
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
        /// Parameter NAME=PATH whose value is the file's content (one trailing line ending
        /// trimmed), e.g. a CA certificate (repeatable).
        #[arg(long = "param-file", value_name = "NAME=PATH")]
        param_files: Vec<String>,
        /// Sensitive parameter NAME=PATH read from a file (repeatable): a secret given this way
        /// never appears in the process list or the shell's history, as one on the command line
        /// does.
        #[arg(long = "sensitive-param-file", visible_alias = "sensitive-file", value_name = "NAME=PATH")]
        sensitive_param_files: Vec<String>,
        /// Sensitive parameter NAME=VAR read from environment variable VAR (repeatable).
        #[arg(long = "sensitive-param-env", visible_alias = "sensitive-env", value_name = "NAME=VAR")]
        sensitive_param_envs: Vec<String>,
        /// Call deadline in seconds.
        #[arg(long, default_value_t = 30)]
        timeout_seconds: u64,
        /// Outbound host a WASM connector may reach (repeatable): `https://host:port`, `host`
        /// or `*.example.com`, as in a CA account's `allowed_hosts`. None by default.
        #[arg(long = "allowed-host", value_name = "HOST")]
        allowed_hosts: Vec<String>,
        /// PEM file of a CA certificate a WASM connector's outbound TLS trusts besides the
        /// system roots (repeatable), as in a CA account's `extra_ca_pems`.
        #[arg(long = "extra-ca-pem", visible_alias = "extra-ca", value_name = "FILE")]
        extra_ca_pems: Vec<PathBuf>,
        /// Memory cap per call in MiB, as an account's `memory_mib` (default: a component's
        /// 64, a script's 512).
        #[arg(long)]
        memory_mib: Option<u64>,
        /// Largest outbound response body of a component in MiB, as an account's
        /// `http_body_mib` (default 4).
        #[arg(long)]
        http_body_mib: Option<u64>,
        /// CN of the test CSR, for a CA that issues only for its own domains (default
        /// check.certhost.test).
        #[arg(long)]
        cn: Option<String>,
        /// SubjectAltName of the test CSR (repeatable): DNS:x, IP:y, EMAIL:z, URI:u. Default:
        /// the CN when it is a DNS name; without --cn, two DNS names and an IP.
        #[arg(long = "san", value_name = "TYPE:VALUE")]
        sans: Vec<certhost::csr::San>,
    },
}

/// The template: the local-ca connector itself, every file of it (path in the new crate,
/// text), so the template always builds and always passes the checks its tests run.
const TEMPLATE: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("../../../plugins/local-ca/Cargo.toml")),
    ("src/lib.rs", include_str!("../../../plugins/local-ca/src/lib.rs")),
    ("src/der.rs", include_str!("../../../plugins/local-ca/src/der.rs")),
    ("src/pem.rs", include_str!("../../../plugins/local-ca/src/pem.rs")),
    ("testdata/ca.pem", include_str!("../../../plugins/local-ca/testdata/ca.pem")),
    ("testdata/leaf.csr", include_str!("../../../plugins/local-ca/testdata/leaf.csr")),
    ("testdata/empty.csr", include_str!("../../../plugins/local-ca/testdata/empty.csr")),
];

/// What a crate made outside `plugins/` needs to build as fast as the shipped connectors
/// (docs/plugin-authors.md): `plugins/`'s release profile (signing crates at opt-level 3,
/// the rest for size) and the wide-arithmetic target feature of the repository's cargo
/// configuration. A workspace member gets both from `plugins/`; without them a standalone
/// crate signed 3× slower (black-box review of stop 36).
fn standalone_build_settings() -> (String, String) {
    let manifest = include_str!("../../../plugins/Cargo.toml");
    let config = include_str!("../../../.cargo/config.toml");
    let from = |text: &str, header: &str| text.find(header).map_or(String::new(), |at| text[at..].to_owned());
    let target = from(config, "[target.wasm32-wasip2]");
    // Only that table: whatever follows it is the repository's own.
    let target = match target.get(1..).and_then(|rest| rest.find("\n[")) {
        Some(end) => target[..end + 2].to_owned(),
        None => target,
    };
    // Its comments speak of certhost's own connectors: left out.
    let profile: String =
        from(manifest, "[profile.release]").lines().filter(|l| !l.starts_with('#')).map(|l| format!("{l}\n")).collect();
    (
        format!(
            "\n# As certhost's plugins/ builds its connectors: signing crates for speed, the rest for size.\n{profile}"
        ),
        format!(
            "# 64×64→128-bit multiplication as one wasm instruction, which certhost's engine enables:\n\
             # elliptic-curve signing in a component is 3× faster with it.\n{target}"
        ),
    )
}

/// The template's file `path` made into connector `name`'s, its SDK at `sdk`.
fn template_file(path: &str, text: &str, name: &str, sdk: &str) -> String {
    match path {
        "Cargo.toml" => text
            .replacen("name = \"local-ca\"", &format!("name = \"{name}\""), 1)
            .lines()
            // The license is local-ca's; the new connector's author chooses its own.
            .filter(|line| !line.starts_with("license = "))
            .map(|line| match line {
                l if l.starts_with("description = ") => format!("description = \"certhost connector {name}\""),
                l if l.starts_with("certhost-plugin-sdk = ") => format!("certhost-plugin-sdk = {{ path = \"{sdk}\" }}"),
                l => l.to_owned(),
            })
            .map(|line| line + "\n")
            .collect(),
        "src/lib.rs" => text.replacen(
            "//! local-ca: a certificate authority inside a component.",
            &format!("//! {name}: a certhost connector, started from the local-ca template (a CA inside a\n//! component). Replace the signing in `certificate_request` with calls to your CA through\n//! `certhost_plugin_sdk::http`, keep `describe` in step with the parameters you read.\n//!\n//! The template:"),
            1,
        ).replace("name: \"local-ca\".into()", &format!("name: \"{name}\".into()")),
        _ => text.to_owned(),
    }
}

pub fn run(cmd: Command, env: &super::Env) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::New { name, lang, plugins_dir, sdk } => new(&name, &lang, &plugins_dir, &sdk),
        Command::Check {
            path,
            params,
            sensitive_params,
            param_files,
            sensitive_param_files,
            sensitive_param_envs,
            timeout_seconds,
            allowed_hosts,
            extra_ca_pems,
            memory_mib,
            http_body_mib,
            cn,
            sans,
        } => {
            // A worker for the script must not inherit the variables secrets come from.
            super::hide_value_sources(&sensitive_param_files, &sensitive_param_envs);
            let given = super::with_sources(
                super::kv_pairs(("--param", "NAME=VALUE"), &params)?,
                ("--param-file", &param_files),
                ("--param-env", &[]),
            )?;
            let secrets = super::with_sources(
                super::kv_pairs(("--sensitive-param", "NAME=VALUE"), &sensitive_params)?,
                ("--sensitive-param-file", &sensitive_param_files),
                ("--sensitive-param-env", &sensitive_param_envs),
            )?;
            if let Some(name) = given.keys().find(|k| secrets.contains_key(*k)) {
                anyhow::bail!("parameter {name} is given both as a plain and as a sensitive parameter");
            }
            let connector = std::path::absolute(&path).with_context(|| format!("bad path {}", path.display()))?;
            // The account the check runs as: what a CA account of this connector would be.
            let def = AccountDef {
                connector,
                description: String::new(),
                status: AccountStatus::Active,
                params: Default::default(),
                allowed_hosts,
                extra_ca_pems,
                timeout_seconds: Some(timeout_seconds),
                memory_mib,
                http_body_mib,
            };
            let names = match (cn, sans) {
                (None, sans) if sans.is_empty() => check::CheckNames::default(),
                (cn, mut sans) => {
                    // SANs alone: the first DNS name is the CN too, as most CAs expect.
                    let first_dns = sans.iter().find_map(|s| match s {
                        certhost::csr::San::Dns(d) => Some(d.clone()),
                        _ => None,
                    });
                    let common_name = cn.or(first_dns).unwrap_or_default();
                    certhost::csr::include_cn_in_sans(&common_name, &mut sans);
                    check::CheckNames { common_name, sans }
                }
            };
            check(def, given, secrets, &names, env)
        }
    }
}

/// Rust keywords, which cargo refuses as package names (`cargo new`'s `check_name`): the
/// library's crate name would be the keyword.
const KEYWORDS: &[&str] = &[
    "abstract", "as", "async", "await", "become", "box", "break", "const", "continue", "crate", "do", "dyn", "else",
    "enum", "extern", "false", "final", "fn", "for", "gen", "if", "impl", "in", "let", "loop", "macro", "match", "mod",
    "move", "mut", "override", "priv", "pub", "ref", "return", "self", "static", "struct", "super", "trait", "true",
    "try", "type", "typeof", "unsafe", "unsized", "use", "virtual", "where", "while", "yield",
];

/// Why `name` cannot name a crate made from the template, if it cannot: names cargo refuses
/// or that shadow a crate Rust provides, and the template's own dependencies (a crate cannot
/// depend on a package of its own name).
fn reserved(name: &str) -> Option<String> {
    if KEYWORDS.contains(&name) {
        return Some(format!("connector name {name:?} is a Rust keyword, which cargo refuses as a package name"));
    }
    if name == "test" {
        return Some("connector name \"test\" conflicts with Rust's built-in test library, which cargo refuses".into());
    }
    if ["core", "std", "alloc", "proc-macro"].contains(&name) {
        return Some(format!("connector name {name:?} is a crate of Rust's standard library; choose another name"));
    }
    let template = TEMPLATE.iter().find(|(path, _)| *path == "Cargo.toml").map_or("", |(_, text)| *text);
    let manifest: toml::Table = toml::from_str(template).unwrap_or_default();
    let depends = manifest.get("dependencies").and_then(toml::Value::as_table).is_some_and(|d| d.contains_key(name));
    depends.then(|| format!("connector name {name:?} is a dependency of the template crate; choose another name"))
}

/// The plugins workspace at `manifest`, when there is one the new crate can join: its members
/// (as written) and each member's package name, read from the member's own manifest.
fn workspace_packages(manifest: &std::path::Path) -> Option<Vec<(String, String)>> {
    let text = std::fs::read_to_string(manifest).ok()?;
    let table: toml::Table = toml::from_str(&text).ok()?;
    let members = table.get("workspace")?.get("members")?.as_array()?;
    if !text.contains("members = [") {
        return None;
    }
    let root = manifest.parent()?;
    Some(
        members
            .iter()
            .filter_map(toml::Value::as_str)
            .filter_map(|member| {
                let member_text = std::fs::read_to_string(root.join(member).join("Cargo.toml")).ok()?;
                let member_table: toml::Table = toml::from_str(&member_text).ok()?;
                let package = member_table.get("package")?.get("name")?.as_str()?.to_owned();
                Some((member.to_owned(), package))
            })
            .collect(),
    )
}

fn new(name: &str, lang: &str, plugins_dir: &std::path::Path, sdk: &str) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        lang == "rust",
        "--lang {lang} is not supported (rust; Python connectors are plain scripts: see plugin-sdk/python/certhost.pyi)"
    );
    let valid = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    anyhow::ensure!(
        valid,
        "connector name {name:?} is invalid: use lowercase letters, digits and '-', starting with a letter"
    );
    if let Some(why) = reserved(name) {
        anyhow::bail!(why);
    }
    let dir = plugins_dir.join(name);
    anyhow::ensure!(!dir.exists(), "{} already exists", dir.display());
    let workspace = plugins_dir.join("Cargo.toml");
    let packages = workspace_packages(&workspace);
    // Cargo refuses a workspace with two packages of one name, and then builds none of them.
    // (`a-b` and `a_b` are one library name to it.)
    let same = |package: &str| package.replace('_', "-") == name;
    if let Some((member, _)) = packages.iter().flatten().find(|(_, package)| same(package)) {
        anyhow::bail!(
            "connector name {name:?} is taken: {} already has a member package of that name ({member}); choose another name",
            workspace.display()
        );
    }
    // The crate depends on the SDK by path: a wrong path would only show at its first build.
    // Resolved by hand: the crate's directory does not exist yet, so the OS cannot follow `..`.
    let mut sdk_dir = dir.clone();
    for part in std::path::Path::new(sdk).components() {
        match part {
            std::path::Component::ParentDir => {
                sdk_dir.pop();
            }
            std::path::Component::CurDir => {}
            other => sdk_dir.push(other),
        }
    }
    anyhow::ensure!(
        sdk_dir.join("Cargo.toml").is_file(),
        "the plugin SDK is not at {} (--sdk is relative to the new crate {}): pass --sdk with the path of certhost's plugin-sdk/rust",
        sdk_dir.display(),
        dir.display()
    );
    let member = packages.is_some();
    for (path, text) in TEMPLATE {
        let file = dir.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let mut text = template_file(path, text, name, sdk);
        if *path == "Cargo.toml" && !member {
            // Without this, a crate created inside another workspace's tree (a `connectors/`
            // beside certhost's own Cargo.toml) is refused by cargo as a stray member.
            text.push_str("\n# Not a member of any workspace: the crate builds on its own.\n[workspace]\n");
            text.push_str(&standalone_build_settings().0);
        }
        std::fs::write(&file, text).with_context(|| format!("cannot write {}", file.display()))?;
    }
    if !member {
        let config = dir.join(".cargo/config.toml");
        std::fs::create_dir_all(dir.join(".cargo")).with_context(|| format!("cannot create {}", dir.display()))?;
        std::fs::write(&config, standalone_build_settings().1)
            .with_context(|| format!("cannot write {}", config.display()))?;
        // The toolchain certhost's connectors are built and tested with, the wasm32-wasip2
        // target with it: rustup installs both on the first build, where a toolchain without
        // the target failed with "can't find crate for `core`" (walkthrough of stop 46).
        let toolchain = dir.join("rust-toolchain.toml");
        std::fs::write(&toolchain, include_str!("../../../rust-toolchain.toml"))
            .with_context(|| format!("cannot write {}", toolchain.display()))?;
    }
    if member {
        let text =
            std::fs::read_to_string(&workspace).with_context(|| format!("cannot read {}", workspace.display()))?;
        // `workspace_packages` found it; the members are listed after it. Gone since (edited
        // meanwhile), the file is left as it is rather than given a stray line at its end.
        let at = text.find("members = [").map(|pos| pos + "members = [".len()).with_context(|| {
            format!("{} no longer lists its members as `members = [`; add \"{name}\" there", workspace.display())
        })?;
        let updated = format!("{}\"{name}\", {}", &text[..at], &text[at..]);
        std::fs::write(&workspace, updated).with_context(|| format!("cannot update {}", workspace.display()))?;
    }
    println!("created {} (a cdylib for wasm32-wasip2)", dir.display());
    // The template signs with a CA of its own: make one before checking it, as
    // docs/plugin-authors.md does.
    let check = "plugin check {WASM} --param-file ca_certificate=lab-ca/ca.pem --sensitive-param-file ca_private_key=lab-ca/ca.key";
    if member {
        println!("added {name} to the members of {}", workspace.display());
        let wasm = plugins_dir.join("dist").join(format!("{name}.wasm"));
        println!("next:");
        println!("  cargo xtask build-plugins");
        println!("  cargo xtask run -- ca init --out lab-ca    # a CA for the template to sign with");
        println!("  cargo xtask run -- {}", check.replace("{WASM}", &wasm.display().to_string()));
    } else {
        // A crate of its own: cargo names the artifact after the crate, '-' as '_'.
        let wasm = dir.join("target/wasm32-wasip2/release").join(format!("{}.wasm", name.replace('-', "_")));
        println!("next:");
        println!("  (cd {} && cargo build --release --target wasm32-wasip2)", dir.display());
        println!("  certhost ca init --out lab-ca    # a CA for the template to sign with");
        println!("  certhost {}", check.replace("{WASM}", &wasm.display().to_string()));
    }
    Ok(ExitCode::SUCCESS)
}

fn check(
    def: AccountDef,
    given: std::collections::BTreeMap<String, String>,
    secrets: std::collections::BTreeMap<String, String>,
    names: &check::CheckNames,
    env: &super::Env,
) -> anyhow::Result<ExitCode> {
    def.check("plugin-check")?;
    let registry = super::registry_without_data_dir(&env.data_dir);
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
        anyhow::Ok(check::run(&*connector, &args, names).await)
    })?;
    let count = |v: check::Verdict| lines.iter().filter(|l| l.verdict == v).count();
    for l in &lines {
        println!("{} {:<22} {}", l.verdict.as_str(), l.check, l.detail);
    }
    let (skipped, failed) = (count(check::Verdict::Skip), count(check::Verdict::Fail));
    let skipped = if skipped > 0 { format!(", {skipped} skipped") } else { String::new() };
    println!("{}: {} passed, {failed} failed{skipped}", def.connector.display(), count(check::Verdict::Pass));
    let all = failed == 0;
    Ok(if all { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_standalone_crate_gets_the_shipped_connectors_build_settings() {
        let (profile, config) = super::standalone_build_settings();
        let profile: toml::Table = toml::from_str(&profile).expect("the profile is TOML");
        let release = &profile["profile"]["release"];
        assert_eq!(release["opt-level"].as_str(), Some("s"));
        assert_eq!(release["package"]["p256"]["opt-level"].as_integer(), Some(3));
        let config: toml::Table = toml::from_str(&config).expect("the configuration is TOML");
        assert_eq!(config.len(), 1, "only the target's table: {config:?}");
        let flags = config["target"]["wasm32-wasip2"]["rustflags"].as_array().expect("rustflags");
        assert!(flags.iter().any(|f| f.as_str() == Some("target-feature=+wide-arithmetic")), "{flags:?}");
    }
}
