//! Statistics, Prometheus metrics and the dashboard, against a hub carrying real traffic.

mod common;

use std::process::Command;

use bytes::Bytes;
use common::*;
use http::{Method, StatusCode};
use lienthong::client::{Client, HttpVersion};

fn ops_get(hub: &TestHub, path: &str) -> String {
    let out = Command::new("curl")
        .args(["-sS", "-f", &format!("http://{}{path}", hub.ops)])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "GET {path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

async fn stats(c: &Client, path: &str) -> serde_json::Value {
    c.call(Method::GET, path, Bytes::new())
        .await
        .unwrap()
        .json()
}

/// Three documents A→B, one refused forgery, B acks two and reports one completed.
async fn traffic(hub: &TestHub) {
    let (a, b) = (
        hub.client(A, HttpVersion::Auto),
        hub.client(B, HttpVersion::Auto),
    );
    for n in 1..=3 {
        let r = submit(&a, hub.packet(A, &[B], &format!("S-{n}"), b"")).await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    let forged = submit(&b, hub.packet(A, &[B], "S-X", b"")).await;
    assert_eq!(error_code(&forged), "sender_mismatch");
    let unsigned = submit(&b, packet(B, &[A], "S-U", b"")).await;
    assert_eq!(error_code(&unsigned), "signature_missing");
    let items = inbox(&b, "limit=2").await;
    for item in &items {
        let id = item["id"].as_str().unwrap();
        assert_eq!(
            get(&b, &format!("/v1/documents/{id}")).await.status,
            StatusCode::OK
        );
        assert_eq!(
            post(&b, &format!("/v1/inbox/{id}/ack")).await.status,
            StatusCode::OK
        );
    }
    let done = lienthong::edxml::compose_status(
        B,
        A,
        items[0]["document_id"].as_str().unwrap(),
        "06",
        "Hoàn thành",
        "2026/11/28 10:00:00",
    );
    assert_eq!(
        submit(&b, hub.sign(B, done.as_bytes())).await.status,
        StatusCode::CREATED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_and_metrics_follow_traffic_and_survive_a_restart() {
    let mut hub = TestHub::start(SMALL_DIRECTORY, "[stats]\nflush_secs = 1\n");
    traffic(&hub).await;

    let ops = hub.role_client("ops");
    let s = stats(&ops, "/v1/stats?window=1h").await;
    assert_eq!(s["scope"], "hub");
    let t = &s["totals"];
    assert_eq!(t["accepted"], 4, "{s}");
    assert_eq!(t["refused"], 2);
    assert_eq!(t["refused_by_reason"]["sender_mismatch"], 1);
    assert_eq!(t["refused_by_reason"]["signature_missing"], 1);
    assert_eq!(t["acked"], 2);
    assert_eq!(t["delivered"], 2);
    assert_eq!(t["status_notices"]["06"], 1);
    assert_eq!(t["delivery_to_completed"]["count"], 1);
    assert_eq!(t["electronic_share"], 1.0);
    assert_eq!(t["signed_share"], 1.0);
    assert_eq!(t["verified_share"], 1.0);
    assert_eq!(
        s["pending"], 2,
        "one document for B, the status notice for A"
    );
    let backlog: Vec<&str> = s["backlog"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["agency"].as_str().unwrap())
        .collect();
    assert!(backlog.contains(&A) && backlog.contains(&B), "{backlog:?}");
    // A has never pulled, so it heads the list of agencies not pulling.
    assert_eq!(s["not_pulling"][0]["agency"], A);
    assert_eq!(s["not_pulling"][0]["last_pull"], serde_json::Value::Null);

    // An agency sees its own figures only.
    let mine = stats(&hub.client(B, HttpVersion::Auto), "/v1/stats?window=24h").await;
    assert_eq!(mine["scope"], B);
    assert_eq!(mine["totals"]["received"], 3);
    assert_eq!(mine["totals"]["accepted"], 1, "B sent one status notice");
    assert!(
        mine["agencies"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["agency"] == B),
        "{mine}"
    );
    assert!(
        mine["backlog"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["agency"] == B)
    );
    let bad = ops
        .request(Method::GET, "/v1/stats?window=2h", Bytes::new())
        .await
        .unwrap();
    assert_eq!(
        (bad.status, error_code(&bad).as_str()),
        (StatusCode::BAD_REQUEST, "bad_request")
    );
    // A role certificate is not an agency.
    let r = ops
        .request(Method::GET, "/v1/inbox", Bytes::new())
        .await
        .unwrap();
    assert_eq!(error_code(&r), "not_an_agency");

    // A foreign client certificate shows up as a handshake failure.
    let (other, _, _) = lienthong::pki::Ca::generate("other").unwrap();
    let (cert, key) = other.issue_client(A).unwrap();
    std::fs::write(hub.path("o.pem"), cert).unwrap();
    std::fs::write(hub.path("o.key"), key).unwrap();
    let o = Client::new(
        &hub.url(),
        &hub.path("certs/ca.pem"),
        &hub.path("o.pem"),
        &hub.path("o.key"),
        HttpVersion::Auto,
    )
    .unwrap();
    assert!(
        o.request(Method::GET, "/v1/inbox", Bytes::new())
            .await
            .is_err()
    );

    let m = ops_get(&hub, "/metrics");
    for line in [
        "lienthong_packets_accepted_total{kind=\"edoc\"} 3",
        "lienthong_packets_accepted_total{kind=\"status\"} 1",
        "lienthong_packets_refused_total{reason=\"sender_mismatch\"} 1",
        "lienthong_items_acked_total 2",
        "lienthong_status_notices_total{code=\"06\"} 1",
        "lienthong_agency_sent_total{agency=\"000.00.01.H13\"} 3",
        "lienthong_tls_handshake_failures_total{reason=\"unknown_issuer\"} 1",
    ] {
        assert!(m.contains(line), "missing {line:?} in\n{m}");
    }
    assert!(
        m.contains("lienthong_submit_duration_seconds_bucket"),
        "{m}"
    );
    assert!(
        m.contains("lienthong_delivery_latency_seconds_count 2"),
        "{m}"
    );
    // Gauges are refreshed by the maintenance task (every second in this test).
    let mut depth_seen = false;
    for _ in 0..50 {
        if ops_get(&hub, "/metrics").contains("lienthong_queue_depth{agency=\"000.00.02.H13\"} 1") {
            depth_seen = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(depth_seen, "queue depth gauge for B");

    // Every metric the Grafana dashboard queries is exported.
    let grafana = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/grafana-dashboard.json"
    ))
    .unwrap();
    let exported = ops_get(&hub, "/metrics");
    let mut names: Vec<&str> = grafana
        .match_indices("lienthong_")
        .map(|(i, _)| {
            let rest = &grafana[i..];
            let end = rest
                .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
                .unwrap_or(rest.len());
            rest[..end].trim_end_matches("_bucket")
        })
        .filter(|n| *n != "lienthong_hub" && *n != "lienthong_")
        .collect();
    names.sort_unstable();
    names.dedup();
    assert!(names.len() >= 12, "{names:?}");
    for n in names {
        assert!(
            exported.contains(&format!("\n{n}")),
            "Grafana queries {n}, which /metrics does not export"
        );
    }

    // The terminal table for ops.
    let table = run_ok(
        Command::new(BIN)
            .args(["stats", "--window", "1h", "--hub", &hub.url()])
            .arg("--ca")
            .arg(hub.path("certs/ca.pem"))
            .arg("--cert")
            .arg(hub.path("certs/roles/ops.pem"))
            .arg("--key")
            .arg(hub.path("certs/roles/ops.key")),
    );
    assert!(
        table.contains("accepted 4") && table.contains("refused 2"),
        "{table}"
    );
    assert!(table.contains("sender_mismatch 1"), "{table}");
    let row = table
        .lines()
        .find(|l| l.starts_with(A))
        .expect("a row for A");
    assert_eq!(
        row.split_whitespace().collect::<Vec<_>>(),
        [A, "3", "1", "0", "0", "1"],
        "{table}"
    );

    // Persisted: a restart loses nothing.
    hub.stop();
    hub.spawn();
    let ops = hub.role_client("auditor");
    let s = stats(&ops, "/v1/stats?window=30d").await;
    assert_eq!(s["totals"]["accepted"], 4, "{s}");
    assert_eq!(s["totals"]["refused"], 2);
    assert_eq!(s["pending"], 2);
    hub.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_headless_chromium_shows_what_stats_reports() {
    let mut hub = TestHub::start(SMALL_DIRECTORY, "");
    traffic(&hub).await;
    let ops = hub.role_client("ops");
    let s = stats(&ops, "/v1/stats?window=1h").await;

    let url = format!("http://{}/dashboard", hub.ops);
    let profile = hub.path("chromium-profile");
    let chromium = |extra: &[&str]| {
        Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
            ])
            .args([
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(["--virtual-time-budget=8000", "--window-size=1366,900"])
            .args(extra)
            .arg(&url)
            .output()
            .expect("chromium runs (apt-get install chromium)")
    };
    let dom = chromium(&["--dump-dom"]);
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom.contains("data-loaded=\"1\""),
        "the page loaded its statistics: {dom}"
    );
    let t = &s["totals"];
    for (id, value) in [
        ("kpi-accepted", t["accepted"].to_string()),
        ("kpi-refused", t["refused"].to_string()),
        ("kpi-acked", t["acked"].to_string()),
        ("kpi-pending", s["pending"].to_string()),
        ("kpi-electronic", "100.0%".to_string()),
    ] {
        assert!(
            dom.contains(&format!("id=\"{id}\">{value}<")),
            "{id} should show {value}"
        );
    }
    assert!(
        dom.contains("sender_mismatch"),
        "refusals by reason are listed"
    );
    assert!(dom.contains(B), "backlog lists B");
    // In Vietnamese unless asked otherwise, with the two-layer share beside the signed share.
    assert!(dom.contains("<html lang=\"vi\""), "Vietnamese by default");
    assert!(dom.contains("ký số hai lớp"), "the two-layer label");
    assert!(dom.contains("id=\"kpi-twolayer\""), "the two-layer share");

    let artifacts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let out = chromium(&[&format!("--screenshot={}", shot.display())]);
    assert!(
        shot.exists(),
        "screenshot written: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    hub.stop();
}
