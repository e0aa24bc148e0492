//! The Prometheus alert rules (config/alerts.yml): valid for promtool, each unit-tested on
//! synthetic series (tests/data/alerts_test.yml), built only on metrics the hub exports (or
//! Prometheus' own `up` and node_exporter's filesystem metrics), and the certificate and
//! storage gauges they need are exported by a running hub.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn promtool_checks_and_unit_tests_the_rules() {
    let promtool = |args: &[&str]| {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(root())
            .output()
            .expect("promtool runs (apt-get install prometheus)");
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    promtool(&["check", "rules", "config/alerts.yml"]);
    promtool(&["test", "rules", "tests/data/alerts_test.yml"]);
}

#[test]
fn the_rules_use_only_documented_metrics() {
    let rules = std::fs::read_to_string(root().join("config/alerts.yml")).unwrap();
    let docs = std::fs::read_to_string(root().join("docs/metrics.md")).unwrap();
    let mut used: Vec<&str> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("lienthong_"))
        .collect();
    used.sort();
    used.dedup();
    assert!(used.len() >= 5, "{used:?}");
    for m in used {
        assert!(
            docs.contains(&format!("`{m}`")),
            "{m} is not in docs/metrics.md"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_hub_exports_certificate_expiry_and_storage_health() {
    let hub = TestHub::start(SMALL_DIRECTORY, "");
    hub.wait_for_metric("lienthong_storage_ok 1").await;
    hub.wait_for_metric("lienthong_certificate_expiry_seconds{certificate=\"hub_signing\"}")
        .await;
    let text = hub.metrics_text();
    for label in ["tls_server", "client_ca", "hub_signing", "hub_client"] {
        let line = text
            .lines()
            .find(|l| {
                l.starts_with(&format!(
                    "lienthong_certificate_expiry_seconds{{certificate=\"{label}\"}}"
                ))
            })
            .unwrap_or_else(|| panic!("no expiry for {label}: {text}"));
        let secs: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        // The dev PKI's certificates are fresh: months to years left, not expired.
        assert!(secs > 30.0 * 86400.0, "{line}");
    }
    assert!(
        text.contains("lienthong_certificate_expiry_seconds{certificate=\"trust:"),
        "the trust store's certificates are watched too"
    );
    // An agency's certificate is watched once the agency connects with it.
    let gauge = format!("lienthong_agency_certificate_expiry_seconds{{agency=\"{A}\"}}");
    assert!(!text.contains(&gauge), "before A connected: {text}");
    let a = hub.client(A, lienthong::client::HttpVersion::Auto);
    a.call(http::Method::GET, "/v1/inbox", bytes::Bytes::new())
        .await
        .unwrap();
    hub.wait_for_metric(&gauge).await;
    let text = hub.metrics_text();
    let line = text.lines().find(|l| l.starts_with(&gauge)).unwrap();
    let secs: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(
        secs > 30.0 * 86400.0 && secs < 3.0 * 365.0 * 86400.0,
        "{line}"
    );
}
