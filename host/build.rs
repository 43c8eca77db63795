//! Pins the Python interpreter that pyo3 builds against, so script connectors run with it at
//! run time too: an rpath to its libpython (otherwise the loader may pick another
//! libpython3.x, e.g. Debian's, with other site-packages), and its prefix baked in for the
//! worker processes' PYTHONHOME.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
    println!("cargo:rerun-if-changed=build.rs");
    let config = pyo3_build_config::get();
    if let Some(dir) = config.lib_dir() {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
    let exe = config.executable().map(str::to_owned).unwrap_or_else(|| "python3".into());
    let prefix = Command::new(&exe)
        .args(["-c", "import sys; print(sys.base_prefix)"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    println!("cargo:rustc-env=CERTHOST_PYTHON_EXECUTABLE={exe}");
    println!("cargo:rustc-env=CERTHOST_PYTHON_HOME={prefix}");
}
