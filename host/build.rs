//! Pins the Python interpreter that pyo3 builds against, so script connectors run with it at
//! run time too: an rpath to its libpython (otherwise the loader may pick another
//! libpython3.x, e.g. Debian's, with other site-packages), its prefix baked in for the
//! worker processes' PYTHONHOME, and, when it is a venv's python, the venv's site-packages
//! (which that PYTHONHOME hides) for the workers' sys.path.

use std::process::Command;

const SITE_DIRS_SCRIPT: &str = "src/connector/python/site_dirs.py";

fn main() {
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={SITE_DIRS_SCRIPT}");
    let config = pyo3_build_config::get();
    if let Some(dir) = config.lib_dir() {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
    let exe = config.executable().map(str::to_owned).unwrap_or_else(|| "python3".into());
    let python = |args: &[&str]| {
        Command::new(&exe)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let prefix = python(&["-c", "import sys; print(sys.base_prefix)"]);
    let site_dirs = python(&[SITE_DIRS_SCRIPT]);
    println!("cargo:rustc-env=CERTHOST_PYTHON_EXECUTABLE={exe}");
    println!("cargo:rustc-env=CERTHOST_PYTHON_HOME={prefix}");
    println!("cargo:rustc-env=CERTHOST_PYTHON_SITE_DIRS={site_dirs}");
}
