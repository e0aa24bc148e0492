//! A full disk: the hub refuses with 507 and loses nothing it had accepted.
//! Needs root (it mounts a small tmpfs), as CI and the dev machines run.

mod common;

use std::process::Command;

use common::*;
use http::StatusCode;
use lienthong::client::HttpVersion;

struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_refuses_with_507_and_loses_nothing() {
    let mut hub = TestHub::start(SMALL_DIRECTORY, "");
    hub.stop();
    // Put the data directory on a 24 MiB tmpfs and start again.
    let data = hub.path("data");
    std::fs::remove_dir_all(&data).unwrap();
    std::fs::create_dir_all(&data).unwrap();
    run_ok(
        Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=24m", "tmpfs"])
            .arg(&data),
    );
    let _mount = Mount(data.clone());
    hub.spawn();

    let (a, b) = (
        hub.client(A, HttpVersion::Auto),
        hub.client(B, HttpVersion::Auto),
    );
    let attachment = vec![7u8; 700 * 1024];
    let mut accepted = Vec::new();
    let mut refusal = None;
    for n in 0..100 {
        let body = hub.packet(A, &[B], &format!("FULL-{n}"), &attachment);
        let r = submit(&a, body.clone()).await;
        if r.status == StatusCode::CREATED {
            accepted.push((r.json()["id"].as_str().unwrap().to_owned(), body));
        } else {
            refusal = Some(r);
            break;
        }
    }
    let refusal = refusal.expect("a 24 MiB disk fills up within 100 packets of 1 MB");
    assert_eq!(
        refusal.status,
        StatusCode::INSUFFICIENT_STORAGE,
        "{:?}",
        refusal.json()
    );
    assert_eq!(error_code(&refusal), "insufficient_storage");
    assert!(
        accepted.len() >= 5,
        "only {} accepted before the disk was full",
        accepted.len()
    );
    // Readiness says so, so a load balancer can steer senders away.
    let ready = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("http://{}/readyz", hub.ops),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&ready.stdout), "503");
    // RocksDB stays read-only after a failed WAL write (rust-rocksdb exposes no Resume), so
    // writes keep answering 507 until a restart, even once space is freed.
    // Everything accepted is still readable, and the hub is alive.
    for (id, body) in &accepted {
        assert_eq!(
            get(&b, &format!("/v1/documents/{id}")).await.body.as_ref(),
            body.as_slice()
        );
    }
    // Make room, restart: nothing accepted was lost, and new packets are accepted again.
    run_ok(
        Command::new("mount")
            .args(["-o", "remount,size=256m"])
            .arg(&data),
    );
    hub.crash();
    hub.spawn();
    let (a, b) = (
        hub.client(A, HttpVersion::Auto),
        hub.client(B, HttpVersion::Auto),
    );
    let items = inbox(&b, "limit=1000").await;
    assert_eq!(
        items.len(),
        accepted.len(),
        "every accepted packet is queued after the restart"
    );
    let r = submit(&a, hub.packet(A, &[B], "AFTER", b"")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.json());
    hub.stop();
}
