//! Online backup under load and restore into a new data directory (`lienthong backup`,
//! `lienthong restore`, the real binary): every document answered 201 before the backup
//! began is in the restored hub, its audit log verifies against the backup's signed head,
//! and a copy that does not match its manifest is refused.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use common::*;
use http::StatusCode;
use lienthong::client::HttpVersion;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_load_restores_everything_accepted_before_it() {
    let mut hub = TestHub::start(SMALL_DIRECTORY, "");
    let a = Arc::new(hub.client(A, HttpVersion::Auto));
    // Submissions keep coming while the backup is taken.
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let load = {
        let (a, stop, done) = (a.clone(), stop.clone(), done.clone());
        let packets: Vec<Vec<u8>> = (0..1500)
            .map(|n| hub.packet(A, &[B, C], &format!("{A},2026/11/30,{n}/BK"), b"noi dung"))
            .collect();
        tokio::spawn(async move {
            let mut accepted = Vec::new();
            for p in packets {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let r = submit(&a, p).await;
                assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.json());
                // (id, when its 201 arrived)
                accepted.push((
                    r.json()["id"].as_str().unwrap().to_owned(),
                    std::time::Instant::now(),
                ));
                done.fetch_add(1, Ordering::Relaxed);
            }
            accepted
        })
    };
    while done.load(Ordering::Relaxed) < 20 && !load.is_finished() {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let backup_dir = hub.path("backup-1");
    let began = std::time::Instant::now();
    let out = Command::new(BIN)
        .args(["backup", "--ops", &hub.ops, "--to"])
        .arg(&backup_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "backup: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let at_backup = done.load(Ordering::Relaxed);
    while done.load(Ordering::Relaxed) < at_backup + 10 && !load.is_finished() {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let accepted = load.await.unwrap();
    let before: Vec<&String> = accepted
        .iter()
        .filter(|(_, at)| *at < began)
        .map(|(id, _)| id)
        .collect();
    assert!(
        before.len() >= 10,
        "load ran before the backup: {}",
        before.len()
    );
    assert!(accepted.len() > before.len(), "and went on during it");
    // A second backup into the same directory is refused (nothing is overwritten).
    let again = Command::new(BIN)
        .args(["backup", "--ops", &hub.ops, "--to"])
        .arg(&backup_dir)
        .output()
        .unwrap();
    assert!(!again.status.success());

    // A copy with one byte changed is refused, and leaves the target empty.
    hub.stop();
    let tampered = hub.path("backup-tampered");
    copy_dir(&backup_dir, &tampered);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tampered.join("manifest.json")).unwrap()).unwrap();
    let victim = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"].as_str().unwrap().ends_with(".sst"))
        .expect("an SST file in the checkpoint");
    let victim = tampered.join("db").join(victim["path"].as_str().unwrap());
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&victim, bytes).unwrap();
    let scratch = hub.path("scratch-data");
    let refused = restore(&tampered, &scratch);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("does not match its manifest"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(!scratch.join("db").exists());

    // Restore into a fresh data directory and start the hub on it.
    std::fs::rename(hub.path("data"), hub.path("data-before")).unwrap();
    let restored = restore(&backup_dir, &hub.path("data"));
    assert!(
        restored.status.success(),
        "restore: {}{}",
        String::from_utf8_lossy(&restored.stdout),
        String::from_utf8_lossy(&restored.stderr)
    );
    assert!(
        String::from_utf8_lossy(&restored.stdout).contains("entries match the signed tree head")
    );
    // Restoring over a database is refused.
    assert!(!restore(&backup_dir, &hub.path("data")).status.success());
    hub.spawn();
    let a = hub.client(A, HttpVersion::Auto);
    for id in before {
        let r = get(&a, &format!("/v1/documents/{id}")).await;
        assert_eq!(r.status, StatusCode::OK, "{id} accepted before the backup");
    }
    // The restored hub goes on: new documents, and its log still verifies end to end.
    let r = submit(
        &a,
        hub.packet(A, &[B], &format!("{A},2026/11/30,after/BK"), b""),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let auditor = hub.role_client("auditor");
    let head = get(&auditor, "/v1/audit/head").await;
    let export = get(&auditor, "/v1/audit/export").await;
    std::fs::write(hub.path("head.jws"), &head.body).unwrap();
    std::fs::write(hub.path("export.jsonl"), &export.body).unwrap();
    run_ok(
        Command::new(BIN)
            .args(["audit", "verify", "--export"])
            .arg(hub.path("export.jsonl"))
            .arg("--tree-head")
            .arg(hub.path("head.jws"))
            .arg("--hub-cert")
            .arg(hub.path("certs/hub-signing.pem")),
    );
    hub.stop();
}

fn restore(from: &std::path::Path, data: &std::path::Path) -> std::process::Output {
    Command::new(BIN)
        .args(["restore", "--from"])
        .arg(from)
        .arg("--data")
        .arg(data)
        .output()
        .unwrap()
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}
