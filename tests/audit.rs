//! Receipts and the audit log, checked the way an outsider would: receipts with the CLI and
//! with openssl, exports with `lienthong audit verify` after editing them every way an attacker
//! could, proofs with an RFC 6962 verifier against signed tree heads, across a crash.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use common::*;
use http::StatusCode;
use lienthong::audit::merkle::{Hash, verify_consistency, verify_inclusion};
use lienthong::client::HttpVersion;

fn hub_cert(hub: &TestHub) -> PathBuf {
    hub.path("certs/hub-signing.pem")
}

fn payload(jws: &str) -> serde_json::Value {
    let part = jws.split('.').nth(1).unwrap();
    serde_json::from_slice(&B64.decode(part).unwrap()).unwrap()
}

fn unhex(s: &str) -> Hash {
    let v: Vec<u8> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect();
    v.try_into().unwrap()
}

/// `lienthong receipt verify` on a receipt text.
fn cli_receipt_verify(hub: &TestHub, jws: &str, packet: Option<&Path>) -> bool {
    let f = hub.path("receipt.jws");
    std::fs::write(&f, jws).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["receipt", "verify"])
        .arg(&f)
        .arg("--hub-cert")
        .arg(hub_cert(hub));
    if let Some(p) = packet {
        cmd.arg("--packet").arg(p);
    }
    cmd.output().unwrap().status.success()
}

/// DER `ECDSA-Sig-Value` from JWS `r‖s`, for openssl.
fn der_signature(raw: &[u8]) -> Vec<u8> {
    fn int(x: &[u8]) -> Vec<u8> {
        let mut x: Vec<u8> = x.iter().copied().skip_while(|&b| b == 0).collect();
        if x.is_empty() || x[0] & 0x80 != 0 {
            x.insert(0, 0);
        }
        let mut out = vec![0x02, x.len() as u8];
        out.extend(x);
        out
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    let body = [int(r), int(s)].concat();
    let mut out = vec![0x30, body.len() as u8];
    out.extend(body);
    out
}

/// Verifies an ES256 JWS with the openssl command line and the hub certificate's public key.
fn openssl_verifies(hub: &TestHub, jws: &str) -> bool {
    let dir = hub.dir.path();
    let pubkey = dir.join("hub-pub.pem");
    if !pubkey.exists() {
        let out = run_ok(
            Command::new("openssl")
                .args(["x509", "-pubkey", "-noout", "-in"])
                .arg(hub_cert(hub)),
        );
        std::fs::write(&pubkey, out).unwrap();
    }
    let parts: Vec<&str> = jws.split('.').collect();
    let header: serde_json::Value = serde_json::from_slice(&B64.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header["alg"], "ES256");
    let input = dir.join("jws-input");
    let sig = dir.join("jws-sig.der");
    std::fs::write(&input, format!("{}.{}", parts[0], parts[1])).unwrap();
    std::fs::write(&sig, der_signature(&B64.decode(parts[2]).unwrap())).unwrap();
    Command::new("openssl")
        .args(["dgst", "-sha256", "-verify"])
        .arg(&pubkey)
        .arg("-signature")
        .arg(&sig)
        .arg(&input)
        .output()
        .unwrap()
        .status
        .success()
}

/// Replaces the payload of a JWS by an edited one (signature kept).
fn forge(jws: &str, edit: impl FnOnce(&mut serde_json::Value)) -> String {
    let parts: Vec<&str> = jws.split('.').collect();
    let mut p = payload(jws);
    edit(&mut p);
    format!("{}.{}.{}", parts[0], B64.encode(p.to_string()), parts[2])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_verify_offline_with_the_cli_and_openssl() {
    let mut hub = TestHub::start(SMALL_DIRECTORY, "");
    let (a, b, c) = (
        hub.client(A, HttpVersion::Auto),
        hub.client(B, HttpVersion::Auto),
        hub.client(C, HttpVersion::Auto),
    );
    let body = hub.packet(A, &[B, C], "RC-1", b"receipt");
    let packet_file = hub.path("rc1.edxml");
    std::fs::write(&packet_file, &body).unwrap();
    let r = submit(&a, body.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let submission = r.json()["receipt"].as_str().unwrap().to_owned();
    let p = payload(&submission);
    assert_eq!(p["type"], "submission");
    assert_eq!(p["id"], id.as_str());
    assert_eq!(p["sender"], A);
    assert_eq!(p["recipients"], serde_json::json!([B, C]));
    assert_eq!(p["sha256"], lienthong::digest::sha256_hex(&body));
    assert!(p["audit_index"].is_u64());
    // A retry answers with the same receipt content.
    let again = submit(&a, body.clone()).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(payload(again.json()["receipt"].as_str().unwrap()), p);

    // B acks: a delivery receipt.
    inbox(&b, "").await;
    let acked = post(&b, &format!("/v1/inbox/{id}/ack")).await;
    let delivery = acked.json()["receipt"].as_str().unwrap().to_owned();
    assert_eq!(payload(&delivery)["type"], "delivery");
    assert_eq!(payload(&delivery)["recipient"], B);

    // Who sees which receipts.
    let list = |r: lienthong::client::Reply| -> Vec<String> {
        r.json()["receipts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    };
    let path = format!("/v1/documents/{id}/receipts");
    let for_a = list(get(&a, &path).await);
    assert_eq!(for_a.len(), 2, "the sender: submission + B's delivery");
    let for_b = list(get(&b, &path).await);
    assert_eq!(for_b.len(), 1);
    assert_eq!(payload(&for_b[0]), payload(&delivery));
    assert!(list(get(&c, &path).await).is_empty(), "C has not acked");
    let stranger = hub.client(C, HttpVersion::Auto);
    let other = submit(&a, hub.packet(A, &[B], "RC-2", b"")).await;
    let other_id = other.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(
        get(&stranger, &format!("/v1/documents/{other_id}/receipts"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // Every receipt verifies offline, with lienthong and with openssl.
    for jws in for_a.iter().chain(&for_b) {
        assert!(cli_receipt_verify(&hub, jws, None));
        assert!(openssl_verifies(&hub, jws), "openssl refuses {jws}");
    }
    assert!(cli_receipt_verify(&hub, &submission, Some(&packet_file)));
    // A receipt for another packet, or an edited one, does not.
    let other_packet = hub.path("other.edxml");
    std::fs::write(&other_packet, b"<edXML/>").unwrap();
    assert!(!cli_receipt_verify(&hub, &submission, Some(&other_packet)));
    let forged = forge(&submission, |p| p["recipients"] = serde_json::json!([B]));
    assert!(!cli_receipt_verify(&hub, &forged, None));
    assert!(!openssl_verifies(&hub, &forged));

    // The receipt's audit index is in the log, provably under a signed tree head.
    let auditor = hub.role_client("auditor");
    let head = get(&auditor, "/v1/audit/head").await;
    let head = String::from_utf8(head.body.to_vec()).unwrap();
    let hp = payload(&head);
    let index = p["audit_index"].as_u64().unwrap();
    let proof = get(
        &a,
        &format!("/v1/audit/proof/{index}?tree_size={}", hp["tree_size"]),
    )
    .await
    .json();
    // Only parties see an entry through its proof.
    let c_proof = get(
        &c,
        &format!("/v1/audit/proof/{index}?tree_size={}", hp["tree_size"]),
    )
    .await;
    assert_eq!(
        c_proof.status,
        StatusCode::OK,
        "C is a recipient of this document"
    );
    let other_index = payload(other.json()["receipt"].as_str().unwrap())["audit_index"]
        .as_u64()
        .unwrap();
    let r = get(&c, &format!("/v1/audit/proof/{other_index}")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "C is no party to RC-2");
    let entry: serde_json::Value = serde_json::from_str(proof["entry"].as_str().unwrap()).unwrap();
    assert_eq!(entry["event"], "accepted");
    assert_eq!(entry["document"], id.as_str());
    let path: Vec<Hash> = proof["audit_path"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| unhex(h.as_str().unwrap()))
        .collect();
    let leaf = lienthong::audit::merkle::leaf_hash(proof["entry"].as_str().unwrap().as_bytes());
    assert!(verify_inclusion(
        index,
        hp["tree_size"].as_u64().unwrap(),
        &leaf,
        &path,
        &unhex(hp["root_hash"].as_str().unwrap())
    ));
    hub.stop();
}

/// Runs `lienthong audit verify`; returns (success, output).
fn audit_verify(hub: &TestHub, export: &[u8], head: &str) -> (bool, String) {
    let (e, h) = (hub.path("export.jsonl"), hub.path("head.jws"));
    std::fs::write(&e, export).unwrap();
    std::fs::write(&h, head).unwrap();
    let out = Command::new(BIN)
        .args(["audit", "verify", "--export"])
        .arg(&e)
        .arg("--tree-head")
        .arg(&h)
        .arg("--hub-cert")
        .arg(hub_cert(hub))
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_verify_and_every_edit_is_caught() {
    let mut hub = TestHub::start(SMALL_DIRECTORY, "");
    let (a, b) = (
        hub.client(A, HttpVersion::Auto),
        hub.client(B, HttpVersion::Auto),
    );
    for n in 0..5 {
        let r = submit(&a, hub.packet(A, &[B], &format!("EX-{n}"), b"")).await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    // A refusal is logged too.
    let r = submit(&a, packet(A, &[B], "EX-U", b"")).await;
    assert_eq!(error_code(&r), "signature_missing");
    for item in inbox(&b, "").await {
        post(
            &b,
            &format!("/v1/inbox/{}/ack", item["id"].as_str().unwrap()),
        )
        .await;
    }

    let auditor = hub.role_client("auditor");
    let head = String::from_utf8(get(&auditor, "/v1/audit/head").await.body.to_vec()).unwrap();
    let size = payload(&head)["tree_size"].as_u64().unwrap();
    let export = get(&auditor, &format!("/v1/audit/export?size={size}")).await;
    assert_eq!(export.status, StatusCode::OK);
    let export = export.body.to_vec();
    let lines: Vec<&[u8]> = export
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(lines.len() as u64, size);
    let events: Vec<String> = lines
        .iter()
        .map(|l| {
            serde_json::from_slice::<serde_json::Value>(l).unwrap()["event"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    for e in [
        "started",
        "accepted",
        "enqueued",
        "refused",
        "leased",
        "delivered",
    ] {
        assert!(events.iter().any(|x| x == e), "no {e} event in {events:?}");
    }
    let (ok, out) = audit_verify(&hub, &export, &head);
    assert!(ok, "{out}");
    // The README's way: the head first, then the whole log (which may have grown since).
    submit(&a, hub.packet(A, &[B], "EX-LATER", b"")).await;
    let everything = get(&auditor, "/v1/audit/export").await.body.to_vec();
    assert!(everything.len() > export.len());
    let (ok, out) = audit_verify(&hub, &everything, &head);
    assert!(ok && out.contains("later entries are not covered"), "{out}");

    let join = |ls: &[&[u8]]| -> Vec<u8> {
        ls.iter()
            .flat_map(|l| l.iter().copied().chain([b'\n']))
            .collect()
    };
    let mut altered: Vec<Vec<u8>> = lines.iter().map(|l| l.to_vec()).collect();
    let s = String::from_utf8(altered[3].clone()).unwrap();
    altered[3] = s.replacen("\"at\":\"2", "\"at\":\"1", 1).into_bytes();
    let altered: Vec<&[u8]> = altered.iter().map(|l| l.as_slice()).collect();
    let mut missing = lines.clone();
    missing.remove(4);
    let mut inserted = lines.clone();
    inserted.insert(2, lines[5]);
    let mut reordered = lines.clone();
    reordered.swap(1, 2);
    let truncated = &lines[..lines.len() - 1];
    for (what, edited) in [
        ("an altered entry", join(&altered)),
        ("a missing entry", join(&missing)),
        ("an inserted entry", join(&inserted)),
        ("reordered entries", join(&reordered)),
        ("a truncated export", join(truncated)),
    ] {
        let (ok, out) = audit_verify(&hub, &edited, &head);
        assert!(!ok, "{what} passed: {out}");
    }
    // A forged tree head (other root) is refused as a head.
    let forged = forge(&head, |p| {
        p["root_hash"] = serde_json::json!("00".repeat(32))
    });
    let (ok, out) = audit_verify(&hub, &export, &forged);
    assert!(!ok && out.contains("tree head does not verify"), "{out}");

    // Who may read what.
    let ops = hub.role_client("ops");
    assert_eq!(
        get(&ops, "/v1/audit/export").await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(get(&ops, "/v1/audit").await.status, StatusCode::FORBIDDEN);
    assert_eq!(
        get(&a, "/v1/audit/export").await.status,
        StatusCode::FORBIDDEN
    );
    let all = get(&auditor, "/v1/audit?limit=1000").await.json();
    assert_eq!(
        all["items"].as_array().unwrap().len() as u64,
        all["tree_size"].as_u64().unwrap()
    );
    let only_a = get(&auditor, &format!("/v1/audit?agency={A}&limit=1000"))
        .await
        .json();
    assert!(
        only_a["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["agency"] == A),
        "{only_a}"
    );
    // An agency sees the events of its own documents (and its own refusals), nothing else.
    let c = hub.client(C, HttpVersion::Auto);
    let for_c = get(&c, "/v1/audit?limit=1000").await.json();
    assert!(for_c["items"].as_array().unwrap().is_empty(), "{for_c}");
    let for_b = get(&b, "/v1/audit?limit=1000").await.json();
    let items = for_b["items"].as_array().unwrap();
    assert!(!items.is_empty());
    assert!(
        items.iter().all(|e| e["event"] != "refused"),
        "A's refusal is not B's business"
    );
    hub.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tree_heads_stay_consistent_across_a_crash() {
    let mut hub = TestHub::start(SMALL_DIRECTORY, "");
    let a = hub.client(A, HttpVersion::Auto);
    for n in 0..3 {
        submit(&a, hub.packet(A, &[B], &format!("CR-{n}"), b"")).await;
    }
    let head1 = String::from_utf8(get(&a, "/v1/audit/head").await.body.to_vec()).unwrap();
    let p1 = payload(&head1);
    // Accepted, then killed: the entries of every 2xx are durable with it.
    let r = submit(&a, hub.packet(A, &[B], "CR-last", b"")).await;
    let last_index = payload(r.json()["receipt"].as_str().unwrap())["audit_index"]
        .as_u64()
        .unwrap();
    hub.crash();
    hub.spawn();
    let a = hub.client(A, HttpVersion::Auto);
    submit(&a, hub.packet(A, &[B], "CR-after", b"")).await;
    let head2 = String::from_utf8(get(&a, "/v1/audit/head").await.body.to_vec()).unwrap();
    let p2 = payload(&head2);
    let (n1, n2) = (
        p1["tree_size"].as_u64().unwrap(),
        p2["tree_size"].as_u64().unwrap(),
    );
    assert!(n2 > last_index && last_index >= n1);
    let proof = get(&a, &format!("/v1/audit/consistency?from={n1}&to={n2}"))
        .await
        .json();
    let proof: Vec<Hash> = proof["proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| unhex(h.as_str().unwrap()))
        .collect();
    assert!(verify_consistency(
        n1,
        n2,
        &unhex(p1["root_hash"].as_str().unwrap()),
        &unhex(p2["root_hash"].as_str().unwrap()),
        &proof
    ));
    // Both heads verify offline with the hub certificate.
    for h in [&head1, &head2] {
        lienthong::jws::verify(h, &lienthong::tls::load_certs(&hub_cert(&hub)).unwrap()[0])
            .unwrap();
    }
    hub.stop();
}
