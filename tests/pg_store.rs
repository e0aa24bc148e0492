//! The storage conformance suite on PostgreSQL (a primary and a synchronous standby started
//! for the test): the same promises the RocksDB store keeps (`src/store/conformance.rs`).

mod common;

use lienthong::store::{PgStore, Storage, conformance};

#[test]
fn postgres_keeps_every_promise_of_the_storage_interface() {
    let pg = common::pg::PgCluster::start();
    let url = pg.url.clone();
    conformance::run_all(&|| Box::new(PgStore::open(&url).unwrap()) as Box<dyn Storage>);
}

/// TLS to PostgreSQL, configured by the URL as libpq is (`sslrootcert`): with the right CA
/// the store works — writes, a reopen — on a primary that refuses any non-TLS client; a
/// plain connection, a wrong CA, or `sslmode=require` without a CA are refused at start.
#[test]
fn postgres_over_tls_verifies_the_server_and_refuses_the_rest() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, ca_pem, _) = lienthong::pki::Ca::generate("test PostgreSQL CA").unwrap();
    let (cert, key) = ca.issue_server(&["127.0.0.1", "localhost"]).unwrap();
    std::fs::write(certs.path().join("server.crt"), cert).unwrap();
    std::fs::write(certs.path().join("server.key"), key).unwrap();
    let root = certs.path().join("ca.pem");
    std::fs::write(&root, ca_pem).unwrap();
    let (_, other_ca, _) = lienthong::pki::Ca::generate("someone else").unwrap();
    let wrong = certs.path().join("wrong.pem");
    std::fs::write(&wrong, other_ca).unwrap();

    let pg = common::pg::PgCluster::start_tls(certs.path());
    let with = |extra: &str| format!("{}?{extra}", pg.url);
    let url = with(&format!(
        "sslrootcert={}&sslmode=verify-full",
        root.display()
    ));
    conformance::sequence_numbers_are_never_reused(&|| {
        Box::new(PgStore::open(&url).unwrap()) as Box<dyn Storage>
    });
    conformance::the_log_is_dense_synced_and_hashes_to_its_entries(&|| {
        Box::new(PgStore::open(&url).unwrap()) as Box<dyn Storage>
    });
    let refused = |url: String| match PgStore::open(&url) {
        Ok(_) => panic!("{url} was accepted"),
        Err(e) => e.to_string(),
    };
    let plain = refused(pg.url.clone());
    assert!(
        plain.contains("pg_hba.conf") || plain.contains("SSL off"),
        "{plain}"
    );
    let bad_ca = refused(with(&format!("sslrootcert={}", wrong.display())));
    assert!(bad_ca.to_lowercase().contains("certificate"), "{bad_ca}");
    let no_ca = refused(with("sslmode=require"));
    assert!(no_ca.contains("sslrootcert"), "{no_ca}");
}

/// The real binary on PostgreSQL: a document is accepted, listed, fetched byte for byte and
/// acked; after a restart the ack holds and the audit log still verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_on_postgres_delivers_and_keeps_its_state_across_a_restart() {
    use common::*;
    use http::StatusCode;
    use lienthong::client::HttpVersion;

    let pg = pg::PgCluster::start();
    let config = format!("[storage]\nengine = \"postgres\"\nurl = \"{}\"\n", pg.url);
    let mut hub = TestHub::start(SMALL_DIRECTORY, &config);
    let (a, b) = (
        hub.client(A, HttpVersion::Auto),
        hub.client(B, HttpVersion::Auto),
    );
    let body = hub.packet(A, &[B], "PG-1", b"tren postgres");
    let r = submit(&a, body.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.json());
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let again = submit(&a, body.clone()).await;
    assert_eq!(
        again.status,
        StatusCode::OK,
        "a retry is the same acceptance"
    );
    let items = inbox(&b, "limit=10").await;
    assert_eq!(items.len(), 1);
    let fetched = get(&b, &format!("/v1/documents/{id}")).await;
    assert_eq!(fetched.body.as_ref(), body.as_slice());
    let acked = post(&b, &format!("/v1/inbox/{id}/ack")).await;
    assert_eq!(acked.status, StatusCode::OK);
    assert!(acked.json()["receipt"].is_string());

    hub.stop();
    hub.spawn();
    let (a, b) = (
        hub.client(A, HttpVersion::Auto),
        hub.client(B, HttpVersion::Auto),
    );
    assert!(inbox(&b, "limit=10").await.is_empty(), "acked means gone");
    let s = get(&a, &format!("/v1/documents/{id}/status")).await.json();
    assert_eq!(s["recipients"][0]["state"], "delivered", "{s}");
    // The log on PostgreSQL: exported whole, it verifies against the signed head with the
    // CLI (dense indexes, hashes, signature).
    let auditor = hub.role_client("auditor");
    let head = String::from_utf8(get(&auditor, "/v1/audit/head").await.body.to_vec()).unwrap();
    let size = {
        use base64::Engine;
        let part = head.split('.').nth(1).unwrap();
        let p: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(part)
                .unwrap(),
        )
        .unwrap();
        p["tree_size"].as_u64().unwrap()
    };
    assert!(
        size >= 5,
        "accepted, enqueued, leased, fetched, delivered: {size}"
    );
    let export = get(&auditor, &format!("/v1/audit/export?size={size}")).await;
    assert_eq!(export.status, StatusCode::OK);
    let (e, h) = (hub.path("export.jsonl"), hub.path("head.jws"));
    std::fs::write(&e, &export.body).unwrap();
    std::fs::write(&h, &head).unwrap();
    let out = std::process::Command::new(BIN)
        .args(["audit", "verify", "--export"])
        .arg(&e)
        .arg("--tree-head")
        .arg(&h)
        .arg("--hub-cert")
        .arg(hub.path("certs/hub-signing.pem"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    hub.stop();
}

/// A commit the synchronous standby does not confirm is never reported as done: with the
/// standby frozen the submission answers 503 at the hub's deadline (outcome unknown), and
/// the client's retry after the standby is back makes exactly one document.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unconfirmed_commit_answers_503_and_its_retry_makes_one_document() {
    use common::*;
    use http::StatusCode;
    use lienthong::client::HttpVersion;

    let pg = pg::PgCluster::start();
    let config = format!(
        "[storage]\nengine = \"postgres\"\nurl = \"{}\"\nsync_deadline_secs = 2\n",
        pg.url
    );
    let mut hub = TestHub::start(SMALL_DIRECTORY, &config);
    let (a, b) = (
        hub.client(A, HttpVersion::Auto),
        hub.client(B, HttpVersion::Auto),
    );
    let warm = submit(&a, hub.packet(A, &[B], "PG-W", b"")).await;
    assert_eq!(warm.status, StatusCode::CREATED, "{:?}", warm.json());
    pg.signal_standby("STOP");
    let body = hub.packet(A, &[B], "PG-S", b"cho xac nhan");
    let r = submit(&a, body.clone()).await;
    pg.signal_standby("CONT");
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", r.json());
    // The retry: 201 if the first never committed, 200 (the same document) if it did.
    let again = submit(&a, body).await;
    assert!(
        matches!(again.status, StatusCode::CREATED | StatusCode::OK),
        "{:?}",
        again.json()
    );
    let items = inbox(&b, "limit=10").await;
    let ours: Vec<_> = items
        .iter()
        .filter(|i| i["document_id"] == "PG-S")
        .collect();
    assert_eq!(ours.len(), 1, "{items:?}");
    hub.stop();
}

/// Two hub processes on one PostgreSQL database (behind a load balancer in production): a
/// document submitted through one reaches a long poll waiting on the other, its ack there is
/// seen by the first, and a retry through the second is the same document.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hub_processes_share_one_database() {
    use common::*;
    use http::StatusCode;
    use lienthong::client::{Client, HttpVersion};
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    let pg = pg::PgCluster::start();
    let config = format!("[storage]\nengine = \"postgres\"\nurl = \"{}\"\n", pg.url);
    let hub = TestHub::start(SMALL_DIRECTORY, &config);
    // The second process: same config and certificates, its own data dir (bound.json).
    let data2 = hub.path("data2");
    /// Killed however the test ends (a live child holding the test's stderr would keep
    /// the test harness waiting).
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _second = Killed(
        hub.serve_command(&hub.config, &data2)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let https = loop {
        if let Ok(text) = std::fs::read_to_string(data2.join("bound.json")) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                break v["https"].as_str().unwrap().to_owned();
            }
        }
        assert!(
            Instant::now() < deadline,
            "the second process did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let on_second = |agency: &str| {
        let (cert, key) = hub.cert(agency);
        Client::new(
            &format!("https://{https}"),
            &hub.path("certs/ca.pem"),
            &cert,
            &key,
            HttpVersion::Auto,
        )
        .unwrap()
    };
    let (b2, a2) = (on_second(B), on_second(A));
    let a1 = hub.client(A, HttpVersion::Auto);

    // B long-polls the second process; A submits to the first.
    let poll = tokio::spawn(async move {
        let items = inbox(&b2, "limit=10&wait=20").await;
        (b2, items)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let body = hub.packet(A, &[B], "PG-2P", b"hai tien trinh");
    let r = submit(&a1, body.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.json());
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let (b2, items) = poll.await.unwrap();
    assert_eq!(items.len(), 1, "the long poll on the other process got it");
    assert_eq!(items[0]["id"], id.as_str());
    assert_eq!(
        post(&b2, &format!("/v1/inbox/{id}/ack")).await.status,
        StatusCode::OK
    );
    let s = get(&a1, &format!("/v1/documents/{id}/status")).await.json();
    assert_eq!(s["recipients"][0]["state"], "delivered", "{s}");
    // The same submission through the other process is the same document.
    let again = submit(&a2, body).await;
    assert_eq!(again.status, StatusCode::OK, "{:?}", again.json());
    assert_eq!(again.json()["id"], id.as_str());
}
