//! End-to-end scenarios against the real daemon over real mutual-TLS sockets.

mod common;

use bytes::Bytes;
use common::*;
use http::{Method, StatusCode};
use lienthong::client::HttpVersion;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_pull_ack_over_http1_http2_and_http3() {
    let mut hub = TestHub::start(SMALL_DIRECTORY, "");
    for (n, version, expect) in [
        (1, HttpVersion::Http1, http::Version::HTTP_11),
        (2, HttpVersion::Http2, http::Version::HTTP_2),
        (3, HttpVersion::Http3, http::Version::HTTP_3),
    ] {
        let (a, b, c) = (
            hub.client(A, version),
            hub.client(B, version),
            hub.client(C, version),
        );
        let body = hub.packet(
            A,
            &[B, C],
            &format!("{A},2026/11/28,{n}/VP"),
            &noise(5000, n),
        );
        let r = submit(&a, body.clone()).await;
        assert_eq!(r.version, expect);
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.json());
        let v = r.json();
        let id = v["id"].as_str().unwrap().to_owned();
        assert_eq!(v["recipients"], serde_json::json!([B, C]));
        assert_eq!(v["document_id"], format!("{A},2026/11/28,{n}/VP"));
        let sha = v["sha256"].as_str().unwrap().to_owned();
        assert_eq!(sha.len(), 64);

        for rc in [&b, &c] {
            let items = inbox(rc, "limit=10").await;
            assert_eq!(items.len(), 1, "{items:?}");
            let item = &items[0];
            assert_eq!(item["id"], id.as_str());
            assert_eq!(item["kind"], "edoc");
            assert_eq!(item["from"], A);
            assert_eq!(item["sha256"], sha.as_str());
            assert_eq!(item["size"], body.len() as u64);
            assert_eq!(
                item["subject"],
                format!("Về việc thử nghiệm {A},2026/11/28,{n}/VP")
            );
            assert!(item["received_at"].as_str().unwrap().ends_with('Z'));
            let got = get(rc, &format!("/v1/documents/{id}")).await;
            assert_eq!(got.status, StatusCode::OK);
            assert_eq!(
                got.body.as_ref(),
                body.as_slice(),
                "packet comes back byte for byte"
            );
            let ack = post(rc, &format!("/v1/inbox/{id}/ack")).await;
            assert_eq!(ack.status, StatusCode::OK);
            assert_eq!(ack.json()["removed"], true);
            let again = post(rc, &format!("/v1/inbox/{id}/ack")).await;
            assert_eq!(again.status, StatusCode::OK, "ack is idempotent");
            assert_eq!(again.json()["removed"], false);
            assert!(inbox(rc, "").await.is_empty());
        }
        // The sender may read its own packet too.
        assert_eq!(
            get(&a, &format!("/v1/documents/{id}")).await.status,
            StatusCode::OK
        );
    }
    hub.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_packet_to_all_519_agencies_is_stored_once() {
    let directory = lienthong::directory::EMBEDDED;
    let mut hub = TestHub::start(directory, "");
    let dir = lienthong::directory::Directory::parse(directory).unwrap();
    let all: Vec<&str> = dir.agencies().iter().map(|a| a.id.as_str()).collect();
    assert_eq!(all.len(), 519);
    let sender = all[0];
    let attachment = noise(256 * 1024, 7);
    let body = hub.packet(
        sender,
        &all,
        &format!("{sender},2026/11/28,1/CT"),
        &attachment,
    );
    assert!(body.len() > 340_000);
    let r = submit(&hub.client(sender, HttpVersion::Http2), body.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.json());
    let id = r.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(r.json()["recipients"].as_array().unwrap().len(), 519);
    for agency in [all[1], all[250], all[518], sender] {
        let c = hub.client(agency, HttpVersion::Http2);
        let items = inbox(&c, "").await;
        assert_eq!(items.len(), 1);
        assert_eq!(items[0]["id"], id.as_str());
        assert_eq!(
            get(&c, &format!("/v1/documents/{id}")).await.body.as_ref(),
            body.as_slice()
        );
    }
    hub.stop();
    // 519 copies would be ~180 MB; one copy plus metadata stays far below 5 MB. (RocksDB's
    // data dir; on PostgreSQL the body is one row of lt_bodies by the schema.)
    if hub.pg.is_none() {
        let used = du(&hub.path("data/db"));
        assert!(
            used < 5 * body.len() as u64,
            "data dir is {used} bytes for a {} byte packet",
            body.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_certificates_are_refused() {
    let mut hub = TestHub::start(SMALL_DIRECTORY, "");
    // A client certificate from another CA, even with a valid agency CN: the handshake fails.
    let (other, _, _) = lienthong::pki::Ca::generate("some other CA").unwrap();
    let (cert, key) = other.issue_client(A).unwrap();
    std::fs::write(hub.path("other.pem"), cert).unwrap();
    std::fs::write(hub.path("other.key"), key).unwrap();
    let c = lienthong::client::Client::new(
        &hub.url(),
        &hub.path("certs/ca.pem"),
        &hub.path("other.pem"),
        &hub.path("other.key"),
        HttpVersion::Auto,
    )
    .unwrap();
    let err = c.request(Method::GET, "/v1/inbox", Bytes::new()).await;
    assert!(
        err.is_err(),
        "a foreign client certificate must not get through: {err:?}"
    );
    // curl agrees, and so does a client with no certificate at all.
    for args in [
        vec![
            "--cert".to_string(),
            hub.path("other.pem").display().to_string(),
            "--key".into(),
            hub.path("other.key").display().to_string(),
        ],
        vec![],
    ] {
        let out = std::process::Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
            .arg(hub.path("certs/ca.pem"))
            .args(&args)
            .arg(format!("{}/v1/inbox", hub.url()))
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "curl got through: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    // Right CA, but a CN the directory does not know: 403 with a reason.
    let out = run_ok(
        std::process::Command::new(BIN)
            .args(["pki", "init", "--dir"])
            .arg(hub.path("certs"))
            .arg("--agencies")
            .arg({
                let p = hub.path("more.toml");
                std::fs::write(&p, "[[agency]]\nid = \"000.00.99.H13\"\nname = \"X\"\n").unwrap();
                p
            }),
    );
    assert!(
        out.contains("1 client and 1 signing certificates created"),
        "{out}"
    );
    let stranger = hub.client("000.00.99.H13", HttpVersion::Auto);
    let r = get(&stranger, "/v1/inbox").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(error_code(&r), "unknown_agency");
    hub.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agencies_cannot_touch_each_others_items_or_forge_senders() {
    let mut hub = TestHub::start(SMALL_DIRECTORY, "");
    let (a, b, c) = (
        hub.client(A, HttpVersion::Auto),
        hub.client(B, HttpVersion::Auto),
        hub.client(C, HttpVersion::Auto),
    );
    let r = submit(&a, hub.packet(A, &[B], "X-1", b"")).await;
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let leak = get(&c, &format!("/v1/documents/{id}")).await;
    assert_eq!(leak.status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&leak), "not_found");
    let missing = get(&c, "/v1/documents/00000000000fffff").await;
    assert_eq!(
        missing.body, leak.body,
        "a stranger cannot tell existing from missing"
    );
    assert_eq!(
        post(&c, &format!("/v1/inbox/{id}/ack")).await.status,
        StatusCode::NOT_FOUND
    );
    assert!(inbox(&c, "").await.is_empty());
    assert_eq!(
        inbox(&b, "").await.len(),
        1,
        "C's attempts left B's item alone"
    );

    // C sends a packet claiming to be from A.
    let forged = submit(&c, hub.packet(A, &[B], "X-2", b"")).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(error_code(&forged), "sender_mismatch");
    // Unknown recipients are named; nothing is queued for the known ones.
    let r = submit(
        &a,
        hub.packet(A, &[C, "000.00.77.H13", "000.00.78.H13"], "X-3", b""),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_code(&r), "unknown_recipient");
    let msg = r.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(
        msg.contains("000.00.77.H13") && msg.contains("000.00.78.H13"),
        "{msg}"
    );
    assert!(inbox(&c, "").await.is_empty());
    hub.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resubmission_is_idempotent_and_conflicts_are_refused() {
    let mut hub = TestHub::start(SMALL_DIRECTORY, "");
    let (a, b) = (
        hub.client(A, HttpVersion::Auto),
        hub.client(B, HttpVersion::Auto),
    );
    let body = hub.packet(A, &[B], "DUP-1", b"first");
    let first = submit(&a, body.clone()).await;
    assert_eq!(first.status, StatusCode::CREATED);
    let second = submit(&a, body.clone()).await;
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(second.json()["id"], first.json()["id"]);
    assert_eq!(second.json()["created"], false);
    assert_eq!(inbox(&b, "").await.len(), 1, "a retry does not duplicate");
    let other = submit(&a, hub.packet(A, &[B], "DUP-1", b"second")).await;
    assert_eq!(other.status, StatusCode::CONFLICT);
    assert_eq!(error_code(&other), "duplicate_document_id");
    hub.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_queues_and_leases_expire() {
    let mut hub = TestHub::start(SMALL_DIRECTORY, "[queue]\nlease_secs = 2\n");
    let a = hub.client(A, HttpVersion::Auto);
    let r = submit(&a, hub.packet(A, &[B, C], "R-1", b"kept")).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let b = hub.client(B, HttpVersion::Auto);
    let items = inbox(&b, "").await;
    assert_eq!(items[0]["deliveries"], 1);
    assert!(
        inbox(&b, "").await.is_empty(),
        "a leased item is not listed again"
    );
    // Crash right after the 2xx: nothing accepted may be lost.
    hub.crash();
    hub.spawn();
    let c = hub.client(C, HttpVersion::Auto);
    let items = inbox(&c, "").await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], id.as_str());
    // B's lease ends and the unacked item comes back.
    let b = hub.client(B, HttpVersion::Auto);
    let items = inbox(&b, "wait=10").await;
    assert_eq!(items.len(), 1, "the item comes back after its lease");
    assert_eq!(items[0]["id"], id.as_str());
    assert_eq!(items[0]["deliveries"], 2);
    // A new packet after the restart gets a fresh id.
    let r2 = submit(&a_client(&hub), hub.packet(A, &[B], "R-2", b"")).await;
    assert_ne!(r2.json()["id"], id.as_str());
    hub.stop();
}

fn a_client(hub: &TestHub) -> lienthong::client::Client {
    hub.client(A, HttpVersion::Auto)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_returns_what_arrives() {
    let mut hub = TestHub::start(SMALL_DIRECTORY, "");
    let b = hub.client(B, HttpVersion::Http2);
    let a = hub.client(A, HttpVersion::Http2);
    let waiter = tokio::spawn(async move { inbox(&b, "wait=20").await });
    // Submitted once the poll is parked, so the wake-up is what answers it.
    hub.wait_for_metric("lienthong_long_polls_waiting 1").await;
    submit(&a, hub.packet(A, &[B], "LP-1", b"")).await;
    let items = waiter.await.unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["document_id"], "LP-1");
    hub.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_errors_and_stores_nothing() {
    let mut hub = TestHub::start(SMALL_DIRECTORY, "[server]\nmax_body_bytes = 100000\n");
    let (a, b) = (
        hub.client(A, HttpVersion::Auto),
        hub.client(B, HttpVersion::Auto),
    );
    let big = submit(&a, hub.packet(A, &[B], "BIG", &noise(200_000, 3))).await;
    assert_eq!(big.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_code(&big), "body_too_large");
    let cases: Vec<(Vec<u8>, StatusCode, &str)> = vec![
        (
            b"not xml at all".to_vec(),
            StatusCode::BAD_REQUEST,
            "malformed_xml",
        ),
        (
            String::from_utf8(packet(A, &[B], "E", b""))
                .unwrap()
                .replace("</edXML:Subject>", "</edXML:Subjec>")
                .into_bytes(),
            StatusCode::BAD_REQUEST,
            "malformed_xml",
        ),
        (b"<a><b></a>".to_vec(), StatusCode::BAD_REQUEST, "not_edxml"),
        (b"<edXML/>".to_vec(), StatusCode::BAD_REQUEST, "not_edxml"),
        (
            String::from_utf8(packet(A, &[B], "E", b""))
                .unwrap()
                .replace("<edXML:DocumentId>E</edXML:DocumentId>", "")
                .into_bytes(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "missing_field",
        ),
        (
            String::from_utf8(packet(A, &[B], "E", b""))
                .unwrap()
                .replace("Về việc thử nghiệm E", &"x".repeat(501))
                .into_bytes(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "field_too_long",
        ),
        (
            String::from_utf8(packet(A, &[B], "E", b""))
                .unwrap()
                .replace(B, "0.0.lower")
                .into_bytes(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_organ_id",
        ),
        (vec![], StatusCode::BAD_REQUEST, "empty_body"),
    ];
    for (body, status, code) in cases {
        let r = submit(&a, body).await;
        assert_eq!(
            (r.status, error_code(&r).as_str()),
            (status, code),
            "{:?}",
            r.json()
        );
        assert!(!r.json()["error"]["message"].as_str().unwrap().is_empty());
    }
    let r = get(&a, "/v1/nowhere").await;
    assert_eq!(
        (r.status, error_code(&r).as_str()),
        (StatusCode::NOT_FOUND, "no_route")
    );
    let r = a
        .request(Method::DELETE, "/v1/documents", Bytes::new())
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    let r = get(&a, "/v1/inbox?limit=abc").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(inbox(&b, "").await.is_empty(), "nothing refused was queued");
    hub.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_reloads_on_sighup_and_keeps_the_old_one_when_broken() {
    let mut hub = TestHub::start(SMALL_DIRECTORY, "");
    let a = hub.client(A, HttpVersion::Auto);
    let new_agency = "000.00.04.H13";
    let r = submit(&a, hub.packet(A, &[new_agency], "H-1", b"")).await;
    assert_eq!(error_code(&r), "unknown_recipient");
    std::fs::write(
        &hub.agencies,
        format!("{SMALL_DIRECTORY}\n[[agency]]\nid = \"{new_agency}\"\nname = \"D\"\n"),
    )
    .unwrap();
    hub.signal("HUP");
    let mut accepted = false;
    for _ in 0..100 {
        if submit(&a, hub.packet(A, &[new_agency], "H-1", b""))
            .await
            .status
            == StatusCode::CREATED
        {
            accepted = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(accepted, "the reloaded directory knows the new agency");
    // A broken file is refused; the directory in force stays.
    std::fs::write(&hub.agencies, "[[agency]\nthis is not toml").unwrap();
    hub.signal("HUP");
    // The refused reload is counted once it happened.
    hub.wait_for_metric("lienthong_reloads_total{outcome=\"refused\"} 1")
        .await;
    let r = submit(&a, hub.packet(A, &[new_agency], "H-2", b"")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.json());
    hub.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_waiting_long_polls_and_exits_cleanly() {
    let mut hub = TestHub::start(SMALL_DIRECTORY, "");
    let b = hub.client(B, HttpVersion::Http2);
    // Make sure the connection is up and the poll is parked before the signal.
    assert!(inbox(&b, "").await.is_empty());
    let waiter = tokio::spawn(async move {
        b.request(Method::GET, "/v1/inbox?wait=50", Bytes::new())
            .await
    });
    // Parked: the hub counts it (an event to wait for, not a delay to guess).
    hub.wait_for_metric("lienthong_long_polls_waiting 1").await;
    let started = std::time::Instant::now();
    hub.stop(); // asserts exit status 0
    let reply = waiter
        .await
        .unwrap()
        .expect("the in-flight long poll gets an answer");
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["items"], serde_json::json!([]));
    // Functional check, not a timing benchmark: the drain did not sit out the 50 s wait.
    assert!(started.elapsed() < std::time::Duration::from_secs(40));
}

/// Opens a raw mutual-TLS connection as `agency` (HTTP/1.1) for byte-level tests.
async fn raw_tls(
    hub: &TestHub,
    agency: &str,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let (cert, key) = hub.cert(agency);
    let cfg = lienthong::tls::client_config(&hub.path("certs/ca.pem"), &cert, &key, &[b"http/1.1"])
        .unwrap();
    let tcp = tokio::net::TcpStream::connect(&hub.https).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_with_clear_errors() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut hub = TestHub::start(
        SMALL_DIRECTORY,
        "[server]\nheader_timeout_secs = 1\nrequest_timeout_secs = 2\n[queue]\nmax_wait_secs = 1\n",
    );
    // Headers that never finish: the connection is closed.
    let mut s = raw_tls(&hub, A).await;
    s.write_all(b"GET /v1/inbox HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read =
        tokio::time::timeout(std::time::Duration::from_secs(20), s.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "the hub keeps a connection with unfinished headers open"
    );
    // A body that never finishes: 408 request_timeout.
    let mut s = raw_tls(&hub, A).await;
    s.write_all(b"POST /v1/documents HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n<edXML")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(20), s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("request_timeout"), "{text}");
    hub.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_are_answered_503_and_served_once_one_closes() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut hub = TestHub::start(
        SMALL_DIRECTORY,
        "[server]\nmax_connections = 2\nheader_timeout_secs = 30\n",
    );
    let first = raw_tls(&hub, A).await;
    let second = raw_tls(&hub, B).await;
    // Both are registered (past the handshake) before the third arrives.
    hub.wait_for_metric("lienthong_connections_open 2").await;
    // The third is told at once that the hub is full, and when to come back...
    let ask = |who: &'static str| {
        let hub_ref = &hub;
        async move {
            let mut s = raw_tls(hub_ref, who).await;
            s.write_all(b"GET /v1/inbox HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut buf = Vec::new();
            let _ =
                tokio::time::timeout(std::time::Duration::from_secs(20), s.read_to_end(&mut buf))
                    .await;
            String::from_utf8_lossy(&buf).into_owned()
        }
    };
    let text = ask(C).await;
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.to_lowercase().contains("retry-after: 2"), "{text}");
    assert!(text.contains("server_busy"), "{text}");
    // ...and is served as soon as one closes.
    drop(first);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let text = ask(C).await;
        if text.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never served: {text}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    drop(second);
    hub.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_certificates_are_enforced() {
    let wrong = "ab".repeat(32);
    let pinned = SMALL_DIRECTORY.replace(
        "name = \"Sở A\"",
        &format!("name = \"Sở A\"\ncert_sha256 = \"{wrong}\""),
    );
    let mut hub = TestHub::start(&pinned, "");
    let a = hub.client(A, HttpVersion::Auto);
    let r = get(&a, "/v1/inbox").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(error_code(&r), "certificate_not_pinned");
    // Pin the certificate A really holds, reload: A is let in.
    let der = lienthong::tls::load_certs(&hub.cert(A).0).unwrap();
    let right = lienthong::digest::sha256_hex(der[0].as_ref());
    std::fs::write(&hub.agencies, pinned.replace(&wrong, &right.to_uppercase())).unwrap();
    hub.signal("HUP");
    let mut status = StatusCode::FORBIDDEN;
    for _ in 0..100 {
        status = get(&a, "/v1/inbox").await.status;
        if status == StatusCode::OK {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        status,
        StatusCode::OK,
        "the pinned certificate is accepted after the reload"
    );
    hub.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_uploads_beyond_the_memory_budget_wait_their_turn() {
    // A 2 MiB budget for bodies in memory: 1.2 MiB packets share it as their bytes arrive,
    // a 3 MiB one (larger than the whole budget) takes all of it. An upload that cannot get
    // its share in time is answered 503 server_busy with Retry-After, and a retry gets in:
    // none is lost or stuck.
    let mut hub = TestHub::start(
        SMALL_DIRECTORY,
        "[server]\nmax_inflight_body_bytes = 2097152\n",
    );
    let mut tasks = Vec::new();
    for n in 0..6 {
        let size = if n == 5 { 3 << 20 } else { 1_200_000 };
        let body = hub.packet(A, &[B], &format!("MEM-{n}"), &noise(size * 3 / 4, n as u64));
        let a = hub.client(A, HttpVersion::Http2);
        tasks.push(tokio::spawn(async move {
            for _ in 0..100 {
                let r = submit(&a, body.clone()).await;
                if r.status != StatusCode::SERVICE_UNAVAILABLE {
                    return r.status;
                }
                assert_eq!(error_code(&r), "server_busy");
                assert!(r.headers.contains_key(http::header::RETRY_AFTER));
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            StatusCode::SERVICE_UNAVAILABLE
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::CREATED);
    }
    assert_eq!(inbox(&hub.client(B, HttpVersion::Auto), "").await.len(), 6);
    hub.stop();
}
