//! Runs the browser tests of the admin page (`e2e/`, node's test runner driving Debian's headless
//! Chromium) when this machine has what they need: `/usr/bin/chromium` (or `MIA_E2E_CHROMIUM`),
//! Node.js 20 or later, `e2e/node_modules`, and a built `mia-webhooks` binary named by
//! `MIA_WEBHOOKS_BIN` (a test cannot build another package's binary). Otherwise it says that the
//! browser tests were not run and why; `e2e/run.sh` installs what is missing, builds the binary
//! and runs them, and CI calls it.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const WHOLE_RUN: Duration = Duration::from_secs(600);

fn e2e_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../e2e")
}

/// Why the browser tests cannot run here, if they cannot.
fn missing(e2e: &Path) -> Option<String> {
    let chromium = std::env::var_os("MIA_E2E_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    if !chromium.exists() {
        return Some(format!("no Chromium at {}", chromium.display()));
    }
    let node = Command::new("node").arg("--version").output();
    let major = node
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|v| {
            v.trim()
                .trim_start_matches('v')
                .split('.')
                .next()
                .and_then(|m| m.parse::<u32>().ok())
        });
    match major {
        None => return Some("node is not installed".to_owned()),
        Some(m) if m < 20 => return Some(format!("node {m} is too old (20 or later is needed)")),
        Some(_) => {}
    }
    if !e2e.join("node_modules/playwright-core").exists() {
        return Some("e2e/node_modules is missing (npm ci)".to_owned());
    }
    match std::env::var_os("MIA_WEBHOOKS_BIN") {
        None => {
            Some("MIA_WEBHOOKS_BIN is not set (the path of a built mia-webhooks binary)".to_owned())
        }
        Some(bin) if !Path::new(&bin).exists() => Some(format!(
            "MIA_WEBHOOKS_BIN={} does not exist",
            Path::new(&bin).display()
        )),
        Some(_) => None,
    }
}

/// Says something on the terminal even though the test harness captures `println!`.
fn say(text: &str) {
    let mut stderr = std::io::stderr();
    let _ = writeln!(stderr, "{text}");
}

#[test]
fn admin_page_browser_tests_pass_or_say_why_they_did_not_run() {
    let e2e = e2e_dir();
    // What run.sh and CI need is part of the repository, whether or not this machine can run it.
    let lock = std::fs::read_to_string(e2e.join("package-lock.json"))
        .expect("e2e/package-lock.json is committed");
    assert!(
        lock.contains("\"node_modules/playwright-core\""),
        "the lockfile pins playwright-core"
    );
    assert!(e2e.join("admin.test.mjs").is_file() && e2e.join("run.sh").is_file());

    if let Some(reason) = missing(&e2e) {
        say(&format!("browser tests not run: {reason}; run e2e/run.sh"));
        return;
    }

    let screenshots = tempfile::tempdir().expect("a temporary directory");
    let mut child = Command::new("node")
        .args(["--test", "--test-reporter=spec"])
        .current_dir(&e2e)
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
        .env("MIA_E2E_SCREENSHOTS", screenshots.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    let out = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap_or_default());
    let err = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for node") {
            break Some(status);
        }
        if started.elapsed() > WHOLE_RUN {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    let status = status.unwrap_or_else(|| {
        panic!("the browser tests ran longer than {WHOLE_RUN:?}:\n{stdout}\n{stderr}")
    });
    assert!(
        status.success(),
        "the browser tests failed ({status}):\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("fail 0") && !stdout.contains("pass 0"),
        "no browser test ran:\n{stdout}"
    );
    say(&format!(
        "browser tests run: {}",
        stdout
            .lines()
            .filter(|l| l.contains("pass "))
            .collect::<Vec<_>>()
            .join(" ")
    ));
    assert!(
        screenshots.path().join("table.png").is_file(),
        "the tests save screenshots"
    );
}
