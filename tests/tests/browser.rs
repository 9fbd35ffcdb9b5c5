//! Runs the browser tests in `tests/browser/`: node's test runner drives
//! Debian's Chromium through playwright-core against the `alliance` binary
//! that cargo built. `ALLIANCE_SKIP_BROWSER_TESTS=1` skips them.

mod common;

use std::path::Path;
use std::process::{Command, Output};

const CHROMIUM: &str = "/usr/bin/chromium";

fn output_text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn browser_tests_pass() {
    if std::env::var("ALLIANCE_SKIP_BROWSER_TESTS").as_deref() == Ok("1") {
        eprintln!("browser tests skipped because ALLIANCE_SKIP_BROWSER_TESTS=1");
        return;
    }

    let node = Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|output| output.status.success()),
        "node is missing; install Node.js 20 or newer (Debian: apt-get install -y nodejs npm), \
         or set ALLIANCE_SKIP_BROWSER_TESTS=1 to skip the browser tests"
    );
    assert!(
        Path::new(CHROMIUM).exists(),
        "Chromium is missing at {CHROMIUM}; install it with `apt-get install -y chromium`, \
         or set ALLIANCE_SKIP_BROWSER_TESTS=1 to skip the browser tests"
    );

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root");
    let browser_dir = root.join("tests/browser");
    if !browser_dir.join("node_modules").exists() {
        let install = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&browser_dir)
            .output()
            .expect("npm starts");
        assert!(
            install.status.success(),
            "`npm ci` in {} failed:\n{}",
            browser_dir.display(),
            output_text(&install)
        );
    }

    let run = Command::new("node")
        .args(["--test", "--test-reporter=spec", "tests/browser/"])
        .current_dir(root)
        .env("ALLIANCE_BIN", common::binary())
        .output()
        .expect("node starts");
    let text = output_text(&run);
    assert!(run.status.success(), "the browser tests failed:\n{text}");
    println!("{text}");
}
