//! Storage faults injected under the real hub binary: an LD_PRELOAD shim
//! (`tests/faults/shim.c`, built here with `cc`) makes fsync/fdatasync or writes to the data
//! directory fail with EIO, or makes fsync hang, while a control file says so.
//!
//! This is the test that a hub which never synced would fail: SIGKILL and tmpfs keep unsynced
//! writes too, but here a packet whose sync failed must not be answered 201.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use common::*;
use http::StatusCode;
use lienthong::client::HttpVersion;

/// Builds the shim into `dir` and returns its path.
fn build_shim(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/faults/shim.c");
    let out = dir.join("fault-shim.so");
    run_ok(
        Command::new("cc")
            .args(["-shared", "-fPIC", "-O2", "-o"])
            .arg(&out)
            .arg(&src)
            .arg("-ldl"),
    );
    out
}

/// A hub under the shim, and the control file that switches faults on and off.
fn faulty_hub(extra_config: &str) -> (TestHub, PathBuf, tempfile::TempDir) {
    let tools = tempfile::tempdir().unwrap();
    let shim = build_shim(tools.path());
    let ctl = tools.path().join("fault");
    std::fs::write(&ctl, "").unwrap();
    let hub = TestHub::start_env(
        SMALL_DIRECTORY,
        extra_config,
        &[
            ("LD_PRELOAD", shim.display().to_string()),
            ("LIENTHONG_FAULT_CTL", ctl.display().to_string()),
            // The database files of this hub (the shim matches the path's middle).
            ("LIENTHONG_FAULT_DIR", "/data/db/".into()),
        ],
    );
    (hub, ctl, tools)
}

fn set_fault(ctl: &Path, mode: &str) {
    std::fs::write(ctl, mode).unwrap();
}

async fn readyz(hub: &TestHub) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", "--max-time", "10"])
        .arg(format!("http://{}/readyz", hub.ops))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

/// Polls until `/readyz` answers `code` (the hub recovering is an event, not a delay).
async fn wait_ready(hub: &TestHub, code: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (c, body) = readyz(hub).await;
        if c == code {
            return body;
        }
        assert!(Instant::now() < deadline, "/readyz stayed {c}: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fsync_is_never_answered_201_and_stops_writes_until_restart() {
    let (mut hub, ctl, _tools) = faulty_hub("");
    let a = hub.client(A, HttpVersion::Http2);
    let before = hub.packet(A, &[B], &format!("{A},2026/11/30,1/F"), b"");
    assert_eq!(submit(&a, before).await.status, StatusCode::CREATED);
    wait_ready(&hub, 200).await;

    set_fault(&ctl, "eio-sync");
    let during = hub.packet(A, &[B], &format!("{A},2026/11/30,2/F"), b"");
    let r = submit(&a, during.clone()).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", r.json());
    assert_eq!(error_code(&r), "storage_error");
    assert!(r.headers.contains_key("retry-after"));
    let body = wait_ready(&hub, 503).await;
    assert!(body.contains("storage failed"), "{body}");
    // The store stays stopped: later writes are refused at once, even after the disk heals.
    set_fault(&ctl, "");
    let r = submit(&a, hub.packet(A, &[B], &format!("{A},2026/11/30,3/F"), b"")).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(readyz(&hub).await.0, 503);

    // After a restart: what was answered 201 is there; the refused packet, sent again, is
    // stored once (a 201 now, or 200 if its write had reached the disk after all).
    hub.crash();
    hub.spawn();
    wait_ready(&hub, 200).await;
    let a = hub.client(A, HttpVersion::Http2);
    let r = submit(&a, during).await;
    assert!(r.status.is_success(), "{} {}", r.status, error_code(&r));
    let b = hub.client(B, HttpVersion::Auto);
    let items = inbox(&b, "limit=100").await;
    let ids: Vec<&str> = items
        .iter()
        .map(|i| i["document_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids.iter().filter(|d| d.ends_with("1/F")).count(),
        1,
        "{ids:?}"
    );
    assert_eq!(
        ids.iter().filter(|d| d.ends_with("2/F")).count(),
        1,
        "{ids:?}"
    );
    verify_log(&hub).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_is_refused_and_reported() {
    let (hub, ctl, _tools) = faulty_hub("");
    let a = hub.client(A, HttpVersion::Http2);
    set_fault(&ctl, "eio-write");
    let r = submit(&a, hub.packet(A, &[B], &format!("{A},2026/11/30,1/W"), b"")).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", r.json());
    assert_eq!(error_code(&r), "storage_error");
    wait_ready(&hub, 503).await;
    // Reads write nothing: statistics and the log stay readable while writes fail.
    let stats = get(&a, "/v1/stats?window=1h").await;
    assert_eq!(stats.status, StatusCode::OK, "{:?}", stats.json());
    assert_eq!(stats.json()["totals"]["refused"], 1);
    set_fault(&ctl, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_fsync_answers_503_instead_of_hanging_and_recovers_by_itself() {
    let (hub, ctl, _tools) = faulty_hub("[storage]\nsync_deadline_secs = 1\n");
    let a = hub.client(A, HttpVersion::Http2);
    let first = hub.packet(A, &[B], &format!("{A},2026/11/30,1/H"), b"");
    assert_eq!(submit(&a, first).await.status, StatusCode::CREATED);

    set_fault(&ctl, "hang-sync");
    let stuck = hub.packet(A, &[B], &format!("{A},2026/11/30,2/H"), b"");
    // Liveness, not speed: without the deadline this request would wait for the disk forever.
    let r = tokio::time::timeout(Duration::from_secs(60), submit(&a, stuck.clone()))
        .await
        .expect("the hub answered while fsync hung");
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", r.json());
    assert_eq!(error_code(&r), "storage_error");
    let body = wait_ready(&hub, 503).await;
    assert!(body.contains("has not confirmed"), "{body}");
    let r = tokio::time::timeout(
        Duration::from_secs(60),
        submit(&a, hub.packet(A, &[B], &format!("{A},2026/11/30,3/H"), b"")),
    )
    .await
    .expect("a new write is refused at once while the sync hangs");
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);

    // The disk answers again: the hub takes writes again without a restart.
    set_fault(&ctl, "");
    wait_ready(&hub, 200).await;
    let r = submit(&a, stuck).await;
    assert!(r.status.is_success(), "{} {}", r.status, error_code(&r));
    let r = submit(&a, hub.packet(A, &[B], &format!("{A},2026/11/30,4/H"), b"")).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let b = hub.client(B, HttpVersion::Auto);
    let docs: Vec<String> = inbox(&b, "limit=100")
        .await
        .iter()
        .map(|i| i["document_id"].as_str().unwrap().to_owned())
        .collect();
    for n in ["1/H", "2/H", "4/H"] {
        assert_eq!(
            docs.iter().filter(|d| d.ends_with(n)).count(),
            1,
            "{docs:?}"
        );
    }
    verify_log(&hub).await;
}

/// The exported log verifies against the signed head (`lienthong audit verify`).
async fn verify_log(hub: &TestHub) {
    let auditor = hub.role_client("auditor");
    let head = get(&auditor, "/v1/audit/head").await;
    assert_eq!(head.status, StatusCode::OK);
    let jws = String::from_utf8(head.body.to_vec()).unwrap();
    let part = jws.split('.').nth(1).unwrap();
    let payload: serde_json::Value = serde_json::from_slice(&B64.decode(part).unwrap()).unwrap();
    let size = payload["tree_size"].as_u64().unwrap();
    let export = get(&auditor, &format!("/v1/audit/export?size={size}")).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("export.jsonl"), &export.body).unwrap();
    std::fs::write(dir.path().join("head.json"), jws).unwrap();
    run_ok(
        Command::new(BIN)
            .args(["audit", "verify", "--export"])
            .arg(dir.path().join("export.jsonl"))
            .arg("--tree-head")
            .arg(dir.path().join("head.json"))
            .arg("--hub-cert")
            .arg(hub.path("certs/hub-signing.pem")),
    );
}
