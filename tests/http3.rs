//! HTTP/3: an independent client (Python aioquic, scripts/h3_client.py) submits, pulls,
//! fetches byte-identical and acks with an agency certificate; no certificate, a foreign CA's
//! and an expired one fail the handshake (counted with the same reasons as HTTPS); 0-RTT is
//! never accepted. With the hub's own client: Alt-Svc on HTTP/2 answers, a long poll, a large
//! packet, and the audit export stream over HTTP/3, each the same as over HTTP/2.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use http::Method;
use lienthong::client::HttpVersion;

/// Runs scripts/h3_client.py against the hub's QUIC port with a certificate (or none).
fn aioquic(hub: &TestHub, cert: Option<(PathBuf, PathBuf)>, args: &[&str]) -> serde_json::Value {
    let port = hub
        .quic
        .as_deref()
        .expect("QUIC is on")
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned();
    let mut cmd = Command::new(python());
    cmd.current_dir(hub.dir.path())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/h3_client.py"))
        .args(["--port", &port, "--server-name", "127.0.0.1", "--ca"])
        .arg(hub.path("certs/ca.pem"));
    if let Some((c, k)) = cert {
        cmd.arg("--cert").arg(c).arg("--key").arg(k);
    }
    let out = cmd.args(args).output().unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "h3_client.py: {e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn answer(report: &serde_json::Value, i: usize) -> &serde_json::Value {
    &report["answers"][i]
}

fn body_json(a: &serde_json::Value) -> serde_json::Value {
    serde_json::from_str(a["body"].as_str().unwrap()).unwrap()
}

#[test]
fn aioquic_submits_pulls_fetches_and_acks() {
    let hub = TestHub::start(SMALL_DIRECTORY, "");
    let packet = hub.packet(A, &[B], "AIOQUIC-1", &noise(50_000, 3));
    std::fs::write(hub.path("p.xml"), &packet).unwrap();
    let sent = aioquic(&hub, Some(hub.cert(A)), &["POST /v1/documents @p.xml"]);
    let a = answer(&sent, 0);
    assert_eq!(a["status"], 201, "{sent}");
    let id = body_json(a)["id"].as_str().unwrap().to_owned();

    let got = aioquic(
        &hub,
        Some(hub.cert(B)),
        &[
            "GET /v1/inbox",
            &format!("GET /v1/documents/{id}"),
            &format!("POST /v1/inbox/{id}/ack"),
        ],
    );
    let items = body_json(answer(&got, 0))["items"].clone();
    assert_eq!(items[0]["id"], id.as_str(), "{got}");
    let fetched = answer(&got, 1);
    assert_eq!(fetched["status"], 200);
    assert_eq!(fetched["sha256"], lienthong::digest::sha256_hex(&packet));
    assert_eq!(
        fetched["headers"]["content-length"],
        packet.len().to_string()
    );
    let acked = body_json(answer(&got, 2));
    assert_eq!(acked["removed"], true, "{got}");
    let after = aioquic(&hub, Some(hub.cert(B)), &["GET /v1/inbox"]);
    assert_eq!(body_json(answer(&after, 0))["items"], serde_json::json!([]));
    // The hub ends every request stream cleanly: it reads a GET's end instead of stopping the
    // client's side with a bare STOP_SENDING(0), which clients report as an error.
    for report in [&sent, &got, &after] {
        assert_eq!(report["stop_sending"], serde_json::json!([]), "{report}");
    }
}

#[test]
fn handshakes_without_a_good_certificate_fail() {
    let hub = TestHub::start(SMALL_DIRECTORY, "");
    // An agency certificate from a CA the hub does not know, and an expired one from its own.
    let (foreign, _, _) = lienthong::pki::Ca::generate("Some Other Province CA").unwrap();
    let (cert, key) = foreign.issue_client(A).unwrap();
    std::fs::write(hub.path("foreign.pem"), cert).unwrap();
    std::fs::write(hub.path("foreign.key"), key).unwrap();
    let ca =
        lienthong::pki::Ca::load_dev(&lienthong::pki::PkiPaths::new(hub.path("certs"))).unwrap();
    let long_ago = time::OffsetDateTime::now_utc() - time::Duration::days(400);
    let (cert, key) = ca.issue_client_valid(A, long_ago, 30).unwrap();
    std::fs::write(hub.path("expired.pem"), cert).unwrap();
    std::fs::write(hub.path("expired.key"), key).unwrap();
    let cases = [
        (None, "no_client_certificate"),
        (
            Some((hub.path("foreign.pem"), hub.path("foreign.key"))),
            "unknown_issuer",
        ),
        (
            Some((hub.path("expired.pem"), hub.path("expired.key"))),
            "certificate_expired",
        ),
    ];
    for (cert, reason) in cases {
        let report = aioquic(&hub, cert, &["GET /v1/inbox"]);
        assert!(report["error"].is_string(), "{reason}: {report}");
        let line = format!("lienthong_tls_handshake_failures_total{{reason=\"{reason}\"}}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !hub.metrics_text().contains(&line) {
            assert!(
                Instant::now() < deadline,
                "{line} never counted: {}",
                hub.metrics_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The hub offers no early data: a client holding a session ticket still sends its POST in
/// 1-RTT, so nobody can replay it.
#[test]
fn zero_rtt_is_never_accepted() {
    let hub = TestHub::start(SMALL_DIRECTORY, "");
    std::fs::write(hub.path("p.xml"), hub.packet(A, &[B], "ZERO-RTT-1", b"x")).unwrap();
    let report = aioquic(
        &hub,
        Some(hub.cert(A)),
        &["--zero-rtt", "POST /v1/documents @p.xml"],
    );
    assert_eq!(report["ticket_early_data"], false, "{report}");
    assert_eq!(report["early_data_accepted"], false, "{report}");
    assert_eq!(answer(&report, 0)["status"], 201, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_over_http3_answers_as_over_http2() {
    let hub = TestHub::start(SMALL_DIRECTORY, "");
    let (a3, b3) = (
        hub.client(A, HttpVersion::Http3),
        hub.client(B, HttpVersion::Http3),
    );
    let b2 = hub.client(B, HttpVersion::Http2);
    // Alt-Svc advertises the QUIC port on TCP answers.
    let r = b2
        .call(Method::GET, "/v1/inbox", bytes::Bytes::new())
        .await
        .unwrap();
    let port = hub.https.rsplit(':').next().unwrap();
    assert_eq!(r.headers["alt-svc"], format!("h3=\":{port}\"; ma=86400"));
    assert_eq!(r.version, http::Version::HTTP_2);

    // A long poll over HTTP/3 is answered when the item arrives.
    let poll = tokio::spawn(async move { inbox(&b3, "wait=20").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let small = hub.packet(A, &[B], "H3-1", b"small");
    assert_eq!(submit(&a3, small).await.status, 201);
    let items = poll.await.unwrap();
    assert_eq!(items.len(), 1);

    // An 8 MiB packet up and down over HTTP/3, byte for byte.
    let big = hub.packet(A, &[B], "H3-BIG", &noise(6 << 20, 9));
    let r = submit(&a3, big.clone()).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let b3 = hub.client(B, HttpVersion::Http3);
    let got = b3
        .call(
            Method::GET,
            &format!("/v1/documents/{id}"),
            bytes::Bytes::new(),
        )
        .await
        .unwrap();
    assert_eq!(got.version, http::Version::HTTP_3);
    assert!(got.body == big, "the fetched packet differs");

    // The audit export streams the same lines over both.
    let export = |v| {
        let c = lienthong::client::Client::new(
            &hub.url(),
            &hub.path("certs/ca.pem"),
            &hub.path("certs/roles/auditor.pem"),
            &hub.path("certs/roles/auditor.key"),
            v,
        )
        .unwrap();
        async move {
            c.call(Method::GET, "/v1/audit/export?size=5", bytes::Bytes::new())
                .await
                .unwrap()
        }
    };
    let (e2, e3) = (
        export(HttpVersion::Http2).await,
        export(HttpVersion::Http3).await,
    );
    assert_eq!(e3.status, 200);
    assert_eq!(e2.body, e3.body);
    assert_eq!(e3.body.iter().filter(|&&b| b == b'\n').count(), 5);
}
