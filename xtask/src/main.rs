//! `cargo xtask`: the two commands of the README, and the steps they share.
//!
//! - `cargo xtask run -- ARGS`: build everything (host and connector plugins), run `certhost ARGS`.
//! - `cargo xtask test`: install missing system tools the tests drive (openssl, cfssl, pebble)
//!   and the Python packages test scripts import (into the interpreter certhost embeds), build
//!   the plugins, run every test, compile the benchmarks.
//! - `cargo xtask build-plugins`: build the wasm32-wasip2 connectors only.
//!
//! No dependencies on purpose: this must build in seconds on a fresh machine.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// Debian packages the tests use as real CA software and tools, with a binary to probe for.
const SYSTEM_TOOLS: &[(&str, &str)] = &[("openssl", "openssl"), ("cfssl", "golang-cfssl"), ("pebble", "pebble")];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => ensure_system_tools()
            .and_then(|_| ensure_python_packages())
            .and_then(|_| ensure_schemathesis())
            .and_then(|_| build_plugins())
            .and_then(|_| test(&args[1..])),
        Some("run") => build_plugins().and_then(|_| demo_ca()).and_then(|_| run(&args[1..])),
        Some("build-plugins") => build_plugins(),
        _ => {
            eprintln!("usage: cargo xtask test [-- CARGO TEST ARGS] | run -- CERTHOST ARGS | build-plugins");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    // xtask/ sits in the workspace root. `cargo run` tells the running binary where its
    // manifest is; the compile-time path is only a fallback, because clones sharing one
    // CARGO_TARGET_DIR (CI's cache) can run a binary built from another clone.
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest_dir.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
}

/// The cargo of the pinned toolchain. When rustup chose it (rust-toolchain.toml), rustup's
/// own proxy (`$CARGO_HOME/bin/cargo`, not whatever `cargo` comes first on `PATH`) with the
/// inherited `RUSTUP_TOOLCHAIN` is that cargo; cargo's own `CARGO` named another toolchain's
/// binary on a machine whose `stable` is the same release (new-user walkthrough of stop 46).
fn cargo() -> Command {
    let proxy = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
        .map(|home| home.join("bin").join("cargo"))
        .filter(|p| p.is_file());
    let program = match (std::env::var_os("RUSTUP_TOOLCHAIN"), proxy) {
        (Some(_), Some(proxy)) => proxy,
        _ => PathBuf::from(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())),
    };
    let mut cmd = Command::new(program);
    cmd.current_dir(root());
    cmd
}

fn status(mut cmd: Command, what: &str) -> Result<(), String> {
    let st = cmd.status().map_err(|e| format!("{what}: cannot start: {e}"))?;
    if st.success() { Ok(()) } else { Err(format!("{what} failed ({st})")) }
}

/// Installs the Debian packages whose tools are missing (root or passwordless sudo needed).
fn ensure_system_tools() -> Result<(), String> {
    let missing: Vec<&str> = SYSTEM_TOOLS.iter().filter(|(bin, _)| !on_path(bin)).map(|(_, pkg)| *pkg).collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing {} with apt-get", missing.join(" "));
    let is_root = Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0")).unwrap_or(false);
    let apt = |args: &[&str]| {
        let mut cmd = if is_root { Command::new("apt-get") } else { sudo_apt() };
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    };
    status(apt(&["update", "-qq"]), "apt-get update")?;
    let mut install = apt(&["install", "-y", "-qq", "--no-install-recommends"]);
    install.args(&missing);
    status(install, "apt-get install")
}

/// Python packages the script connectors and test scripts import (`requests` for every Avi
/// script; `cryptography` for the scripted test CA).
const PYTHON_PACKAGES: &[&str] = &["requests", "cryptography"];

/// Makes sure the interpreter certhost embeds (host/build.rs: `PYO3_PYTHON`, else `python3` on
/// PATH) imports each of `PYTHON_PACKAGES`, installing a missing one the README's way:
/// `python3 -m pip install NAME`.
fn ensure_python_packages() -> Result<(), String> {
    let python = std::env::var("PYO3_PYTHON").unwrap_or_else(|_| "python3".into());
    for package in PYTHON_PACKAGES {
        let importable = Command::new(&python)
            .args(["-c", &format!("import {package}")])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !importable {
            eprintln!("xtask: installing {package} with {python} -m pip install {package}");
            let mut pip = Command::new(&python);
            pip.args(["-m", "pip", "install", package]);
            status(pip, &format!("{python} -m pip install {package}"))?;
        }
    }
    Ok(())
}

fn sudo_apt() -> Command {
    let mut c = Command::new("sudo");
    c.args(["-n", "apt-get"]);
    c
}

fn on_path(bin: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
}

/// Builds every component under `plugins/` for wasm32-wasip2 and copies each to
/// `plugins/dist/NAME.wasm`, the one place configurations and tests look for them.
fn build_plugins() -> Result<(), String> {
    let plugins = root().join("plugins");
    let manifest = plugins.join("Cargo.toml");
    if !manifest.is_file() {
        return Err(format!("{} is missing: run xtask from a certhost checkout", manifest.display()));
    }
    // rust-toolchain.toml lists the target; installing it here also covers machines where
    // rustup does not add targets by itself.
    let target_ok = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .current_dir(root())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().any(|l| l.trim() == "wasm32-wasip2"))
        .unwrap_or(false);
    if !target_ok {
        let mut add = Command::new("rustup");
        add.args(["target", "add", "wasm32-wasip2"]).current_dir(root());
        status(add, "rustup target add wasm32-wasip2")?;
    }
    // Beside the host's build when CARGO_TARGET_DIR points elsewhere (CI caches it).
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(|d| PathBuf::from(d).join("plugins-wasm"))
        .unwrap_or_else(|| plugins.join("target"));
    let mut cmd = cargo();
    cmd.args(["build", "--release", "--target", "wasm32-wasip2", "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target_dir);
    status(cmd, "building the wasm connectors")?;
    let built = target_dir.join("wasm32-wasip2").join("release");
    let dist = plugins.join("dist");
    std::fs::create_dir_all(&dist).map_err(|e| format!("{}: {e}", dist.display()))?;
    let entries = std::fs::read_dir(&built).map_err(|e| format!("{}: {e}", built.display()))?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "wasm") {
            let name = path.file_name().map(|n| n.to_string_lossy().replace('_', "-")).unwrap_or_default();
            std::fs::copy(&path, dist.join(&name)).map_err(|e| format!("copying {}: {e}", path.display()))?;
        }
    }
    Ok(())
}

/// The cargo target directory (CARGO_TARGET_DIR, or ./target).
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root().join("target"))
}

/// Schemathesis (PyPI) in its own virtualenv under the target directory, where the API test
/// looks for it (`TARGET/tools/schemathesis/bin/st`). Kept apart from the interpreter that
/// script connectors use, so its dependencies never shadow theirs.
fn ensure_schemathesis() -> Result<(), String> {
    let venv = target_dir().join("tools").join("schemathesis");
    if venv.join("bin").join("st").is_file() {
        return Ok(());
    }
    eprintln!("xtask: installing schemathesis into {}", venv.display());
    let mut mk = Command::new("python3");
    mk.args(["-m", "venv"]).arg(&venv);
    status(mk, "python3 -m venv")?;
    let mut pip = Command::new(venv.join("bin").join("pip"));
    pip.args(["install", "--quiet", "schemathesis>=4.3,<5"]);
    status(pip, "pip install schemathesis")
}

/// Runs every test, echoing cargo's output, and ends with one summary line over all test
/// binaries ("tests: N passed, N failed"), so the last line speaks for the whole run. A full
/// run (no arguments) also runs the connectors' own unit tests, built for this machine, and
/// compiles the benchmarks.
fn test(extra: &[String]) -> Result<(), String> {
    let extra: Vec<&String> = extra.iter().skip_while(|a| *a == "--").collect();
    let mut host = cargo();
    host.args(["test", "--workspace", "--no-fail-fast"]).args(&extra);
    let mut runs = vec![("cargo test", host)];
    if extra.is_empty() {
        let mut plugins = cargo();
        plugins
            .args(["test", "--no-fail-fast", "--package", "local-ca", "--manifest-path"])
            .arg(root().join("plugins").join("Cargo.toml"))
            .arg("--target-dir")
            .arg(target_dir().join("plugins-native"));
        runs.push(("cargo test (connectors)", plugins));
        // The benchmarks are not run here (not timed tests), but they must keep compiling:
        // the README's bench command is only ever run by hand.
        let mut benches = cargo();
        benches.args(["build", "--workspace", "--benches"]);
        runs.push(("cargo build --benches", benches));
    }
    let (mut totals, mut failures) = ([0u64; 3], Vec::new());
    for (name, cmd) in runs {
        match counted(cmd, &mut totals) {
            Ok(st) if st.success() => {}
            Ok(st) => failures.push(format!("{name} failed ({st})")),
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    let [passed, failed, ignored] = totals;
    println!("tests: {passed} passed, {failed} failed, {ignored} skipped");
    if failures.is_empty() { Ok(()) } else { Err(failures.join("; ")) }
}

/// Runs one `cargo test`, echoing its output and adding its "test result:" lines' counts to
/// `totals` (passed, failed, ignored).
fn counted(mut cmd: Command, totals: &mut [u64; 3]) -> Result<std::process::ExitStatus, String> {
    use std::io::{BufRead, BufReader};
    cmd.stdout(std::process::Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("cannot start: {e}"))?;
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            println!("{line}");
            if let Some(rest) = line.strip_prefix("test result: ") {
                for part in rest.split(';') {
                    let mut words = part.split_whitespace().rev();
                    let (Some(what), Some(n)) = (words.next(), words.next()) else { continue };
                    let n: u64 = n.parse().unwrap_or(0);
                    match what {
                        "passed" => totals[0] += n,
                        "failed" => totals[1] += n,
                        "ignored" => totals[2] += n,
                        _ => {}
                    }
                }
            }
        }
    }
    child.wait().map_err(|e| e.to_string())
}

/// The example configuration (certhost.toml) signs with ./demo-ca; create it on first run.
fn demo_ca() -> Result<(), String> {
    if root().join("demo-ca").join("ca.pem").is_file() {
        return Ok(());
    }
    let mut cmd = cargo();
    cmd.args([
        "run",
        "--release",
        "--quiet",
        "--package",
        "certhost",
        "--bin",
        "certhost",
        "--",
        "ca",
        "init",
        "--out",
        "demo-ca",
        "--cn",
        "certhost demo CA",
    ]);
    status(cmd, "creating the demo CA")
}

fn run(extra: &[String]) -> Result<(), String> {
    let mut cmd = cargo();
    cmd.args(["run", "--release", "--quiet", "--package", "certhost", "--bin", "certhost", "--"])
        .args(extra.iter().skip_while(|a| *a == "--"));
    status(cmd, "certhost")
}
