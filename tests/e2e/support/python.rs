//! The official Python SDKs against the real gateway: a script under
//! `tests/e2e` drives one and prints what it saw as JSON.

use serde_json::Value;
use std::process::Command;

/// True (after saying so) when a Python package the test needs is
/// missing; under CI that fails the test instead.
pub fn missing(packages: &[&str]) -> bool {
    let available = Command::new("python3")
        .args(["-c", &format!("import {}", packages.join(", "))])
        .output()
        .is_ok_and(|o| o.status.success());
    if !available {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install the Python packages {packages:?}"
        );
        eprintln!("SKIPPED: pip install {}", packages.join(" "));
    }
    !available
}

/// Runs `tests/e2e/NAME` with python3 and returns the JSON it printed.
pub async fn run_script(name: &str, args: &[&str]) -> Value {
    let script = format!("{}/../tests/e2e/{name}", env!("CARGO_MANIFEST_DIR"));
    let output = tokio::process::Command::new("python3")
        .arg(script)
        .args(args)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "python failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap()
}
