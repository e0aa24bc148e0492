//! A hostile agency against a real hub: bounded work, fair uploads, connection caps, privacy of
//! other recipients, reads that leave a trace, identities that cannot collide, and trust-store
//! claims that used to be unchecked. Timings are never asserted: each test waits for an
//! observable event (an answer, a metric, a log entry) instead.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use http::StatusCode;
use lienthong::client::HttpVersion;

/// curl with an agency's client certificate.
fn curl(hub: &TestHub, agency: &str) -> Command {
    let (cert, key) = hub.cert(agency);
    let mut c = Command::new("curl");
    c.arg("-sS")
        .arg("--cacert")
        .arg(hub.path("certs/ca.pem"))
        .arg("--cert")
        .arg(cert)
        .arg("--key")
        .arg(key);
    c
}

/// A curl that uploads `file` to /v1/documents at `rate` bytes/s; prints `code headers body`.
/// The hub keeps a refused upload's stream open briefly so the early answer (408, 429)
/// reaches the client before the reset (checked by hand over HTTP/1.1 too).
fn slow_upload(hub: &TestHub, agency: &str, file: &std::path::Path, rate: &str) -> Child {
    curl(hub, agency)
        .arg("--http2")
        .args(["-D", "-", "-o", "-", "-w", "\nHTTP_CODE=%{http_code}\n"])
        .arg("--limit-rate")
        .arg(rate)
        .arg("-H")
        .arg("Content-Type: application/xml")
        .arg("--data-binary")
        .arg(format!("@{}", file.display()))
        .arg(format!("{}/v1/documents", hub.url()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn metrics(hub: &TestHub) -> String {
    hub.metrics_text()
}

/// The value of the first metric line starting with `prefix`.
fn metric(hub: &TestHub, prefix: &str) -> f64 {
    metrics(hub)
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Polls `f` until it holds. Inside an async test the pause gives the worker thread back to
/// the runtime (`block_in_place`), so the hub's clients on it keep running.
fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let pause = || std::thread::sleep(Duration::from_millis(50));
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::task::block_in_place(pause);
        } else {
            pause();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quadratic_packet_is_refused_by_a_limit() {
    let mut hub = TestHub::start(SMALL_DIRECTORY, "");
    let a = hub.client(A, HttpVersion::Http2);
    // 60,000 namespace declarations on the root and 250,000 empty elements: the packet that
    // cost ~5 s of CPU before its 422.
    let decls: String = (0..60_000)
        .map(|i| format!(" xmlns:n{i}=\"urn:n{i}\""))
        .collect();
    let body = String::from_utf8(packet(A, &[B], "Q-1", b"")).unwrap();
    let body = body.replacen("<edXML:edXML ", &format!("<edXML:edXML{decls} "), 1);
    let body = body.replacen(
        "</edXML:edXMLBody>",
        &format!("{}</edXML:edXMLBody>", "<e/>".repeat(250_000)),
        1,
    );
    assert!(body.len() > 2_000_000);
    let r = submit(&a, body.into_bytes()).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.json());
    assert_eq!(error_code(&r), "limits_exceeded");
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_attributes")
    );
    // 100,000 deep.
    let deep = String::from_utf8(packet(A, &[B], "Q-2", b""))
        .unwrap()
        .replacen(
            "</edXML:edXMLBody>",
            &format!(
                "{}{}</edXML:edXMLBody>",
                "<d>".repeat(100_000),
                "</d>".repeat(100_000)
            ),
            1,
        );
    let r = submit(&a, deep.into_bytes()).await;
    assert_eq!(error_code(&r), "limits_exceeded", "{:?}", r.json());
    hub.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_trickling_upload_does_not_hold_back_another_agency() {
    let mut hub = TestHub::start(SMALL_DIRECTORY, "");
    // B declares 60 MB and sends it at 200 KB/s (above the minimum rate, so it is not cut):
    // it would take five minutes. Before, it reserved the whole body budget up front.
    let big = hub.path("big.edxml");
    let mut body = packet(B, &[A], "BIG-1", &noise(45_000_000, 3));
    body.truncate(60_000_000);
    std::fs::write(&big, &body).unwrap();
    let mut uploads: Vec<Child> = (0..2).map(|_| slow_upload(&hub, B, &big, "200k")).collect();
    // Wait until the uploads are under way (bytes arriving at the hub).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let a = hub.client(A, HttpVersion::Http1);
    for n in 0..5 {
        let r = submit(&a, hub.packet(A, &[C], &format!("SMALL-{n}"), b"")).await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.json());
    }
    for u in &mut uploads {
        assert!(
            u.try_wait().unwrap().is_none(),
            "the large uploads were still going while A's submits were answered"
        );
        u.kill().unwrap();
        u.wait().unwrap();
    }
    hub.stop();
}

#[test]
fn a_too_slow_upload_gets_408_and_a_crowd_gets_429() {
    let mut hub = TestHub::start(
        SMALL_DIRECTORY,
        "[server]\nupload_grace_secs = 1\nmin_upload_bytes_per_sec = 8192\nagency_concurrent_submits = 2\n",
    );
    let big = hub.path("big.edxml");
    std::fs::write(&big, packet(B, &[A], "SLOW-1", &noise(3_000_000, 5))).unwrap();
    let slow = slow_upload(&hub, B, &big, "2k");
    let out = slow.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("HTTP_CODE=408"), "{text}");
    assert!(text.contains("upload_too_slow"), "{text}");

    // Two uploads in flight for C (fast enough to stay); a third is refused at once.
    let mut two: Vec<Child> = (0..2).map(|_| slow_upload(&hub, C, &big, "20k")).collect();
    // Both reading their bodies (the 408 upload above has ended).
    wait_for("the two uploads to hold C's submission slots", || {
        metric(&hub, "lienthong_uploads_in_progress") >= 2.0
    });
    let third = slow_upload(&hub, C, &big, "20k")
        .wait_with_output()
        .unwrap();
    let text = String::from_utf8_lossy(&third.stdout).to_lowercase();
    assert!(text.contains("http_code=429"), "{text}");
    assert!(text.contains("retry-after:"), "{text}");
    assert!(text.contains("too_many_requests"), "{text}");
    for c in &mut two {
        c.kill().unwrap();
        c.wait().unwrap();
    }
    hub.stop();
}

#[test]
fn handshakes_are_capped_per_address() {
    // A handshake timeout longer than the test, so idle connections keep their slots.
    let mut hub = TestHub::start(
        SMALL_DIRECTORY,
        "[server]\nmax_handshakes_per_ip = 2\nheader_timeout_secs = 120\n",
    );
    // Connections that never start TLS hold this address's two handshake slots. More than
    // two, since the hub takes slots in its connection tasks, in whatever order they run:
    // whichever two get there first hold them, the others are closed.
    let idle: Vec<_> = (0..5)
        .map(|_| std::net::TcpStream::connect(&hub.https).unwrap())
        .collect();
    wait_for("the idle connections to be seen", || {
        let mut probe = std::net::TcpStream::connect(&hub.https).unwrap();
        probe
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut buf = [0u8; 1];
        // Closed at once: a read returns 0 bytes (EOF), not a timeout.
        matches!(std::io::Read::read(&mut probe, &mut buf), Ok(0))
    });
    assert!(
        metric(
            &hub,
            "lienthong_tls_handshake_failures_total{reason=\"per_ip_limit\"}"
        ) >= 1.0
    );
    drop(idle);
    // The address's slots are free again: a real client gets through.
    wait_for("a handshake after the idle connections closed", || {
        curl(&hub, A)
            .arg(format!("{}/v1/inbox", hub.url()))
            .output()
            .unwrap()
            .stdout
            .starts_with(b"{\"items\"")
    });
    hub.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_agency_loses_its_connections_at_reload() {
    let mut hub = TestHub::start(SMALL_DIRECTORY, "");
    let c = hub.client(C, HttpVersion::Http2);
    assert!(inbox(&c, "").await.is_empty());
    wait_for("C's connection to be counted", || {
        metric(&hub, "lienthong_connections_open") >= 1.0
    });
    let without_c = SMALL_DIRECTORY
        .split("[[agency]]")
        .filter(|a| !a.contains(C))
        .collect::<Vec<_>>()
        .join("[[agency]]");
    std::fs::write(&hub.agencies, without_c).unwrap();
    hub.signal("HUP");
    wait_for("C's idle connection to be closed", || {
        metric(&hub, "lienthong_connections_open") == 0.0
    });
    let r = get(&c, "/v1/inbox").await;
    assert_eq!(error_code(&r), "unknown_agency");
    hub.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recipients_see_only_their_own_traces_and_reads_are_logged() {
    let mut hub = TestHub::start(SMALL_DIRECTORY, "");
    let (a, b, c) = (
        hub.client(A, HttpVersion::Auto),
        hub.client(B, HttpVersion::Auto),
        hub.client(C, HttpVersion::Auto),
    );
    let d = format!("{A},2026/11/30,1/PV");
    let r = submit(&a, hub.packet(A, &[B, C], &d, b"")).await;
    let id = r.json()["id"].as_str().unwrap().to_owned();
    // C lists and acks; B never lists but fetches the body directly.
    for i in inbox(&c, "").await {
        post(&c, &format!("/v1/inbox/{}/ack", i["id"].as_str().unwrap())).await;
    }
    let f = get(&b, &format!("/v1/documents/{id}")).await;
    assert_eq!(f.status, StatusCode::OK);
    get(&b, &format!("/v1/documents/{id}")).await;

    let page = get(&b, &format!("/v1/audit?document={id}")).await.json();
    let entries = page["items"].as_array().unwrap();
    assert!(!entries.is_empty());
    for e in entries {
        assert_ne!(e["agency"], C, "B sees C's event {e}");
    }
    let fetched: Vec<_> = entries.iter().filter(|e| e["event"] == "fetched").collect();
    assert_eq!(
        fetched.len(),
        1,
        "the first fetch only is logged: {entries:?}"
    );
    assert_eq!(fetched[0]["agency"], B);
    // The sender sees everything, C's delivery included.
    let all = get(&a, &format!("/v1/audit?document={id}")).await.json();
    assert!(
        all["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["agency"] == C && e["event"] == "delivered")
    );
    // A proof of C's entry is not B's to see.
    let c_index = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["agency"] == C && e["event"] == "delivered")
        .unwrap()["index"]
        .as_u64()
        .unwrap();
    let size = c_index + 1;
    let r = get(&b, &format!("/v1/audit/proof/{c_index}?tree_size={size}")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{:?}", r.json());
    // The fetch counts as pulled: a revoke now sends B the revocation instead of silently
    // taking the document back.
    let status = get(&a, &format!("/v1/documents/{id}/status")).await.json();
    let b_state = status["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["agency"] == B)
        .unwrap()["state"]
        .clone();
    assert_eq!(b_state, "fetched", "{status}");
    hub.stop();
}

#[test]
fn a_role_named_like_an_agency_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let agencies = dir.path().join("agencies.toml");
    std::fs::write(&agencies, SMALL_DIRECTORY).unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(&config, format!("[roles]\nauditors = [\"{A}\"]\n")).unwrap();
    let out = Command::new(BIN)
        .current_dir(dir.path())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--ops-listen",
            "127.0.0.1:0",
        ])
        .arg("--config")
        .arg(&config)
        .arg("--agencies")
        .arg(&agencies)
        .arg("--data")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("role CN") && err.contains(A), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_signature_trust_store_is_its_own_and_reloads() {
    let mut hub = TestHub::start(SMALL_DIRECTORY, "");
    let a = hub.client(A, HttpVersion::Auto);
    let r = submit(&a, hub.packet(A, &[B], "T-1", b"")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.json());
    // The signature trust store is replaced by another CA; the dev CA stays the TLS client
    // CA. A signer certificate from the client CA alone is then untrusted.
    let (_, other_ca, _) = lienthong::pki::Ca::generate("another signing CA").unwrap();
    let trust = hub.path("certs/trust");
    for f in std::fs::read_dir(&trust).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    std::fs::write(trust.join("other.pem"), other_ca).unwrap();
    hub.signal("HUP");
    let mut n = 1;
    wait_for("the reloaded trust store", || {
        n += 1;
        let body = hub.packet(A, &[B], &format!("T-{n}"), b"");
        let r = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(submit(&a, body))
        });
        error_code(&r) == "cert_untrusted"
    });
    hub.stop();
}

/// A valid signature whose Signature element has no namespace (as real packets have it)
/// verifies; xmlsec1 cannot see such a Signature, so this is checked against our signer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signature_without_the_xmldsig_namespace_verifies() {
    use base64::Engine;
    use lienthong::dsig::c14n::{self, C14n, Subset};
    let mut hub = TestHub::start(SMALL_DIRECTORY, "");
    let (cert, key) = hub.signing(A);
    let signer = lienthong::dsig::Signer::load(&cert, &key).unwrap();
    let signed = String::from_utf8(signer.sign(&packet(A, &[B], "NS-1", b"x")).unwrap()).unwrap();
    let bare = signed.replacen(
        "<Signature xmlns=\"http://www.w3.org/2000/09/xmldsig#\">",
        "<Signature>",
        1,
    );
    // Re-sign SignedInfo as it now canonicalizes (the reference digest is unchanged).
    let si = bare.find("<SignedInfo>").unwrap();
    let mut canonical = Vec::new();
    c14n::canonicalize(
        bare.as_bytes(),
        Subset::Element { start: si },
        &C14n::from_uri(C14n::EXCLUSIVE, None).unwrap(),
        &mut |b| canonical.extend_from_slice(b),
    )
    .unwrap();
    let value =
        base64::engine::general_purpose::STANDARD.encode(signer.sign_bytes(&canonical).unwrap());
    let start = bare.find("<SignatureValue>").unwrap() + "<SignatureValue>".len();
    let end = bare.find("</SignatureValue>").unwrap();
    let body = format!("{}{value}{}", &bare[..start], &bare[end..]);
    let a = hub.client(A, HttpVersion::Auto);
    let r = submit(&a, body.into_bytes()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.json());
    let b = hub.client(B, HttpVersion::Auto);
    assert_eq!(inbox(&b, "").await[0]["verdict"], "verified");
    hub.stop();
}

#[test]
fn the_ops_token_guards_per_agency_figures() {
    let mut hub = TestHub::start(SMALL_DIRECTORY, "[server]\nops_token = \"s3cret-token\"\n");
    let get = |path: &str, auth: Option<&str>| {
        let mut c = Command::new("curl");
        c.args(["-s", "-o", "/dev/null", "-w", "%{http_code}"]);
        if let Some(a) = auth {
            c.arg("-H").arg(format!("Authorization: Bearer {a}"));
        }
        let out = c.arg(format!("http://{}{path}", hub.ops)).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(get("/healthz", None), "200");
    assert_eq!(get("/readyz", None), "200");
    assert_eq!(get("/metrics", None), "401");
    assert_eq!(get("/metrics", Some("wrong-token!")), "401");
    assert_eq!(get("/metrics", Some("s3cret-token")), "200");
    assert_eq!(get("/dashboard/stats?window=1h", None), "401");
    assert_eq!(
        get("/dashboard/stats?window=1h", Some("s3cret-token")),
        "200"
    );
    hub.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http2_connection_is_closed() {
    let mut hub = TestHub::start(SMALL_DIRECTORY, "[server]\nidle_timeout_secs = 1\n");
    let c = hub.client(C, HttpVersion::Http2);
    assert!(inbox(&c, "").await.is_empty());
    wait_for("the connection to be counted", || {
        metric(&hub, "lienthong_connections_open") >= 1.0
    });
    wait_for("the idle connection to be closed", || {
        metric(&hub, "lienthong_connections_open") == 0.0
    });
    // A long poll is not idle: it outlives the idle timeout and is answered.
    let c = hub.client(C, HttpVersion::Http2);
    assert!(inbox(&c, "wait=2").await.is_empty());
    hub.stop();
}
