//! The audit log, its proofs and the receipts checked by an independent implementation:
//! `scripts/verify_log.py`, written from RFC 6962/9162 and RFC 7515 in Python with the
//! `cryptography` package, sharing no code with the hub. It must accept what the hub
//! produced, and refuse it after one byte of the log is changed.

mod common;

use std::path::Path;
use std::process::Command;

use bytes::Bytes;
use common::*;
use http::{Method, StatusCode};
use lienthong::client::HttpVersion;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_rfc6962_and_jws_verifier_accepts_the_log_and_refuses_a_changed_one() {
    let hub = TestHub::start(SMALL_DIRECTORY, "");
    let (a, b) = (
        hub.client(A, HttpVersion::Auto),
        hub.client(B, HttpVersion::Auto),
    );
    let auditor = hub.role_client("auditor");
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str| dir.path().join(name);

    let old_head = String::from_utf8(get(&auditor, "/v1/audit/head").await.body.to_vec()).unwrap();
    std::fs::write(file("old.jws"), &old_head).unwrap();
    let mut receipts = Vec::new();
    let mut ids = Vec::new();
    for n in 0..6 {
        let r = submit(
            &a,
            hub.packet(A, &[B], &format!("{A},2026/11/30,{n}/IND"), b""),
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED);
        receipts.push(r.json()["receipt"].as_str().unwrap().to_owned());
        ids.push(r.json()["id"].as_str().unwrap().to_owned());
    }
    for id in &ids[..3] {
        let r = post(&b, &format!("/v1/inbox/{id}/ack")).await;
        receipts.push(r.json()["receipt"].as_str().unwrap().to_owned());
    }
    let body = serde_json::json!({ "ids": &ids[3..] }).to_string();
    let r = b
        .request(Method::POST, "/v1/inbox/ack", Bytes::from(body))
        .await
        .unwrap();
    receipts.push(r.json()["receipt"].as_str().unwrap().to_owned());
    std::fs::write(file("receipts.txt"), receipts.join("\n")).unwrap();

    let head = String::from_utf8(get(&auditor, "/v1/audit/head").await.body.to_vec()).unwrap();
    std::fs::write(file("head.jws"), &head).unwrap();
    let payload = |jws: &str| -> serde_json::Value {
        use base64::Engine;
        let part = jws.split('.').nth(1).unwrap();
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    };
    let (old_size, size) = (
        payload(&old_head)["tree_size"].as_u64().unwrap(),
        payload(&head)["tree_size"].as_u64().unwrap(),
    );
    let export = get(&auditor, &format!("/v1/audit/export?size={size}")).await;
    std::fs::write(file("export.jsonl"), &export.body).unwrap();
    let proof = get(
        &auditor,
        &format!("/v1/audit/consistency?from={old_size}&to={size}"),
    )
    .await;
    std::fs::write(file("consistency.json"), &proof.body).unwrap();
    let mut inclusion = Vec::new();
    for i in [0, size / 2, size - 1] {
        let p = get(&auditor, &format!("/v1/audit/proof/{i}?tree_size={size}")).await;
        assert_eq!(p.status, StatusCode::OK);
        let f = file(&format!("inclusion-{i}.json"));
        std::fs::write(&f, &p.body).unwrap();
        inclusion.push(f);
    }

    let verify = |export: &Path| {
        let mut cmd = Command::new(python());
        cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/verify_log.py"))
            .arg("--export")
            .arg(export)
            .arg("--head")
            .arg(file("head.jws"))
            .arg("--hub-cert")
            .arg(hub.path("certs/hub-signing.pem"))
            .arg("--receipts")
            .arg(file("receipts.txt"))
            .arg("--consistency")
            .arg(format!(
                "{}:{}",
                file("old.jws").display(),
                file("consistency.json").display()
            ));
        for f in &inclusion {
            cmd.arg("--inclusion").arg(f);
        }
        cmd.output().unwrap()
    };
    let out = verify(&file("export.jsonl"));
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("10 receipts"));

    // One byte of one entry changed (a delivery moved to another agency): refused.
    let text = String::from_utf8(export.body.to_vec()).unwrap();
    let forged = text.replacen(
        &format!("\"agency\":\"{B}\""),
        &format!("\"agency\":\"{C}\""),
        1,
    );
    assert_ne!(forged, text);
    std::fs::write(file("forged.jsonl"), forged).unwrap();
    let out = verify(&file("forged.jsonl"));
    assert!(!out.status.success(), "a changed log verified");
    assert!(String::from_utf8_lossy(&out.stderr).contains("INVALID"));
}
