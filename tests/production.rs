//! A hub configured for production (`[tls] dev_pki = false`) refuses to start with the
//! development CA that `lienthong pki init` makes; the quick start (dev_pki on) keeps working.

mod common;

use common::*;

#[test]
fn a_production_config_refuses_the_development_ca() {
    let hub = TestHub::start(SMALL_DIRECTORY, "");
    let config = hub.path("production.toml");
    std::fs::write(&config, "[tls]\ndev_pki = false\n").unwrap();
    let out = hub
        .serve_command(&config, &hub.path("data-production"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "it started: {stderr}");
    assert!(stderr.contains("development CA"), "{stderr}");
    // The same files with dev_pki on (the default): the test hub above runs on them.
    assert!(hub.metrics_text().contains("lienthong_"));
}

/// `--log-format json` (or LIENTHONG_LOG_FORMAT=json): one JSON object per log line, with
/// its level, message and fields, for log shippers.
#[test]
fn logs_can_be_json_lines_for_log_shippers() {
    use std::io::BufRead;
    let hub = TestHub::start(SMALL_DIRECTORY, "");
    let mut child = hub
        .serve_command(&hub.path("lienthong.toml"), &hub.path("data-json"))
        .args(["--log-format", "json"])
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    while lines.is_empty() {
        match rx.recv_timeout(std::time::Duration::from_secs(30)) {
            Ok(l) => lines.push(l),
            Err(e) => panic!("only {lines:?} ({e})"),
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    for l in &lines {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        assert!(v["level"].is_string() && v["message"].is_string(), "{l}");
    }
}
