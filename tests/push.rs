//! Push delivery (docs/push.md) against an independent receiver: Python's `http.server` +
//! `ssl` requiring a client certificate (scripts/push_receiver.py), which logs every request
//! it gets. Signatures are checked by Python `cryptography` (scripts/webhook_verify.py).
//! Agencies get their push_url by a directory reload (SIGHUP), as in production.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use http::StatusCode;
use lienthong::client::HttpVersion;
use serde_json::Value;

/// A running scripts/push_receiver.py.
struct Receiver {
    child: Child,
    log: PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Receiver {
    /// Starts a receiver with the server certificate `cert`/`key`, trusting client
    /// certificates from `ca`, with extra arguments (`--statuses`, `--then`, …).
    fn start(cert: &Path, key: &Path, ca: &Path, extra: &[&str]) -> Receiver {
        let dir = tempfile::tempdir().unwrap();
        let (log, port_file) = (dir.path().join("log.jsonl"), dir.path().join("port"));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/push_receiver.py");
        let child = Command::new(python())
            .arg(script)
            .arg("--cert")
            .arg(cert)
            .arg("--key")
            .arg(key)
            .arg("--ca")
            .arg(ca)
            .arg("--log")
            .arg(&log)
            .arg("--port-file")
            .arg(&port_file)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let port = loop {
            if let Ok(p) = std::fs::read_to_string(&port_file) {
                break p.trim().parse().unwrap();
            }
            assert!(Instant::now() < deadline, "receiver did not start");
            std::thread::sleep(Duration::from_millis(20));
        };
        Receiver {
            child,
            log,
            port,
            _dir: dir,
        }
    }

    /// With the hub's dev PKI: its server certificate (from the hub's CA, which is also the
    /// default `push_ca`) and the hub's CA for client certificates.
    fn for_hub(hub: &TestHub, extra: &[&str]) -> Receiver {
        let certs = hub.path("certs");
        Receiver::start(
            &certs.join("server.pem"),
            &certs.join("server.key"),
            &certs.join("ca.pem"),
            extra,
        )
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}/push", self.port)
    }

    fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Waits until `n` requests arrived.
    async fn wait_for(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = self.requests();
            if r.len() >= n {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "receiver got {} requests, expected {n}",
                r.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The small directory with `push_url`s for some agencies (and a `push_ca` for one).
fn directory_with(pushes: &[(&str, &str, Option<&Path>)]) -> String {
    let mut out = String::new();
    for (id, name) in [(A, "Sở A"), (B, "Sở B"), (C, "Sở C")] {
        out += &format!("[[agency]]\nid = \"{id}\"\nname = \"{name}\"\n");
        if let Some((_, url, ca)) = pushes.iter().find(|(a, _, _)| *a == id) {
            out += &format!("push_url = \"{url}\"\n");
            if let Some(ca) = ca {
                out += &format!("push_ca = \"{}\"\n", ca.display());
            }
        }
    }
    out
}

/// Rewrites the hub's directory and reloads it (the `n`th applied reload).
async fn reload(hub: &TestHub, directory: &str, n: u32) {
    std::fs::write(&hub.agencies, directory).unwrap();
    hub.signal("HUP");
    hub.wait_for_metric(&format!(
        "lienthong_reloads_total{{outcome=\"applied\"}} {n}"
    ))
    .await;
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

async fn send(hub: &TestHub, document_id: &str) -> (String, Vec<u8>) {
    let body = hub.packet(A, &[B], document_id, b"push");
    let r = submit(&hub.client(A, HttpVersion::Auto), body.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    (r.json()["id"].as_str().unwrap().to_owned(), body)
}

async fn status_of(hub: &TestHub, id: &str) -> Value {
    let a = hub.client(A, HttpVersion::Auto);
    let r = get(&a, &format!("/v1/documents/{id}/status")).await;
    assert_eq!(r.status, StatusCode::OK);
    r.json()["recipients"][0].clone()
}

/// Waits until B's state for `id` is `state` (the delivery is committed after the answer).
async fn wait_state(hub: &TestHub, id: &str, state: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = status_of(hub, id).await;
        if s["state"] == state {
            return s;
        }
        assert!(Instant::now() < deadline, "state stayed {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn webhook_verifies(hub: &TestHub, req: &Value) -> bool {
    let body = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        req["body"].as_str().unwrap(),
    )
    .unwrap();
    let file = hub.path("pushed-body.xml");
    std::fs::write(&file, body).unwrap();
    let h = &req["headers"];
    Command::new(python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/webhook_verify.py"))
        .arg(hub.path("certs/hub-signing.pem"))
        .arg(h["webhook-id"].as_str().unwrap())
        .arg(h["webhook-timestamp"].as_str().unwrap())
        .arg(h["webhook-signature"].as_str().unwrap())
        .arg(&file)
        .status()
        .unwrap()
        .success()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_arrives_signed_with_the_hub_certificate_and_counts_as_delivered() {
    let hub = TestHub::start(SMALL_DIRECTORY, "[stats]\nflush_secs = 1\n");
    let rx = Receiver::for_hub(&hub, &[]);
    reload(&hub, &directory_with(&[(B, &rx.url(), None)]), 1).await;
    let (id, body) = send(&hub, "P-1").await;
    let req = &rx.wait_for(1).await[0];
    assert_eq!(req["cn"], "lienthong-hub", "the hub's client certificate");
    assert_eq!(req["path"], "/push");
    let h = &req["headers"];
    assert_eq!(h["webhook-id"], id.as_str());
    assert_eq!(h["content-type"], "application/xml");
    assert_eq!(h["lienthong-sender"], A);
    assert_eq!(h["lienthong-document-id"], "P-1");
    assert_eq!(h["lienthong-sha256"], lienthong::digest::sha256_hex(&body));
    assert_eq!(
        req["sha256"],
        lienthong::digest::sha256_hex(&body),
        "bytes unchanged"
    );
    assert!(
        webhook_verifies(&hub, req),
        "Python cryptography verifies it"
    );
    // Delivered as a pull + ack would: gone from the inbox, a delivery receipt, the history.
    let s = wait_state(&hub, &id, "delivered").await;
    let steps: Vec<&str> = s["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["state"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["queued", "leased", "delivered"]);
    assert_eq!(s["history"][2]["push"]["attempt"], 1);
    assert_eq!(s["history"][2]["push"]["status"], 200);
    let b = hub.client(B, HttpVersion::Auto);
    assert!(inbox(&b, "limit=10").await.is_empty());
    let receipts = get(&b, &format!("/v1/documents/{id}/receipts"))
        .await
        .json();
    let jws = receipts["receipts"][0]
        .as_str()
        .expect("a delivery receipt");
    let payload = base64::Engine::decode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        jws.split('.').nth(1).unwrap(),
    )
    .unwrap();
    let payload: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(payload["type"], "delivery");
    assert_eq!(payload["recipient"], B);
    hub.wait_for_metric(&format!(
        "lienthong_push_attempts_total{{agency=\"{B}\",result=\"delivered\"}} 1"
    ))
    .await;
    let stats = hub.ops_stats().await;
    assert_eq!(stats["push"][0]["agency"], B);
    assert_eq!(stats["push"][0]["state"], "active");
    assert_eq!(stats["push"][0]["delivered"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_follow_the_schedule_with_the_same_id() {
    let hub = TestHub::start(
        SMALL_DIRECTORY,
        "[push]\nretry = [\"1s\", \"2s\"]\njitter = 0.0\n",
    );
    let rx = Receiver::for_hub(&hub, &["--statuses", "503,503"]);
    reload(&hub, &directory_with(&[(B, &rx.url(), None)]), 1).await;
    let (id, _) = send(&hub, "P-2").await;
    let reqs = rx.wait_for(3).await;
    let ids: Vec<&str> = reqs
        .iter()
        .map(|r| r["headers"]["webhook-id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [id.as_str(); 3], "one id on every attempt");
    let attempts: Vec<&str> = reqs
        .iter()
        .map(|r| r["headers"]["lienthong-attempt"].as_str().unwrap())
        .collect();
    assert_eq!(attempts, ["1", "2", "3"]);
    // The waits are the schedule's (never shorter; the bound above is slack for the test
    // machine, not a performance figure).
    let t: Vec<f64> = reqs.iter().map(|r| r["t"].as_f64().unwrap()).collect();
    let (gap1, gap2) = (t[1] - t[0], t[2] - t[1]);
    assert!(
        (0.95..3.0).contains(&gap1),
        "first wait {gap1:.2}s, schedule 1s"
    );
    assert!(
        (1.95..4.0).contains(&gap2),
        "second wait {gap2:.2}s, schedule 2s"
    );
    assert!(reqs.iter().all(|r| webhook_verifies(&hub, r)));
    let s = wait_state(&hub, &id, "delivered").await;
    let failed: Vec<&Value> = s["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["state"] == "push_failed")
        .collect();
    assert_eq!(failed.len(), 2);
    assert_eq!(failed[0]["push"]["reason"], "status_5xx");
    assert_eq!(failed[0]["push"]["status"], 503);
    assert!(failed[1]["push"]["next_attempt_at"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_receiver_down_the_item_is_pullable_at_once_and_an_ack_stops_pushes() {
    let hub = TestHub::start(
        SMALL_DIRECTORY,
        "[push]\nretry = [\"300ms\"]\njitter = 0.0\n[stats]\nflush_secs = 1\n",
    );
    let url = format!("https://127.0.0.1:{}/push", closed_port());
    reload(&hub, &directory_with(&[(B, &url, None)]), 1).await;
    let (id, _) = send(&hub, "P-3").await;
    hub.wait_for_metric(&format!(
        "lienthong_push_attempts_total{{agency=\"{B}\",result=\"connect\"}}"
    ))
    .await;
    let b = hub.client(B, HttpVersion::Auto);
    let items = inbox(&b, "limit=10&wait=10").await;
    assert_eq!(items.len(), 1, "pullable while the endpoint is down");
    assert_eq!(items[0]["id"], id.as_str());
    assert_eq!(
        post(&b, &format!("/v1/inbox/{id}/ack")).await.status,
        StatusCode::OK
    );
    let count = || {
        let text = hub.metrics_text();
        let key = format!("lienthong_push_attempts_total{{agency=\"{B}\",result=\"connect\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&key))
            .map_or(0, |n| n.trim().parse::<u64>().unwrap())
    };
    let at_ack = count();
    // Ten retry periods: with the item still queued, that would be ten more attempts.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        count() <= at_ack + 1,
        "pushes went on after the ack: {at_ack} → {}",
        count()
    );
    let s = status_of(&hub, &id).await;
    assert_eq!(s["state"], "delivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_killed_mid_push_redelivers_with_the_same_id_after_restart() {
    let mut hub = TestHub::start(SMALL_DIRECTORY, "[push]\ntimeout_secs = 2\n");
    // The first request is answered only after 30 s: the hub dies while it waits.
    let rx = Receiver::for_hub(&hub, &["--delays", "30"]);
    reload(&hub, &directory_with(&[(B, &rx.url(), None)]), 1).await;
    let (id, _) = send(&hub, "P-4").await;
    rx.wait_for(1).await;
    hub.crash();
    hub.spawn();
    let reqs = rx.wait_for(2).await;
    assert_eq!(reqs[1]["headers"]["webhook-id"], id.as_str());
    assert_eq!(reqs[0]["headers"]["webhook-id"], id.as_str());
    wait_state(&hub, &id, "delivered").await;
    assert!(
        inbox(&hub.client(B, HttpVersion::Auto), "limit=10")
            .await
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_makes_the_agency_pull_only_until_its_endpoint_changes() {
    let hub = TestHub::start(
        SMALL_DIRECTORY,
        "[queue]\nlease_secs = 1\n[stats]\nflush_secs = 1\n",
    );
    let gone = Receiver::for_hub(&hub, &["--then", "410"]);
    reload(&hub, &directory_with(&[(B, &gone.url(), None)]), 1).await;
    let (first, _) = send(&hub, "P-5").await;
    gone.wait_for(1).await;
    hub.wait_for_metric(&format!("lienthong_push_pull_only{{agency=\"{B}\"}} 1"))
        .await;
    let stats = hub.ops_stats().await;
    assert_eq!(stats["push"][0]["state"], "pull_only");
    // Nothing more is pushed there; both documents are in the inbox.
    let (second, _) = send(&hub, "P-6").await;
    let b = hub.client(B, HttpVersion::Auto);
    let mut listed: Vec<String> = inbox(&b, "limit=10&wait=10")
        .await
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect();
    listed.sort();
    assert_eq!(listed, [first.clone(), second.clone()]);
    assert_eq!(
        gone.requests().len(),
        1,
        "a retired endpoint got more pushes"
    );
    // A new endpoint in the directory lifts it: what is queued is pushed there.
    let fresh = Receiver::for_hub(&hub, &[]);
    reload(&hub, &directory_with(&[(B, &fresh.url(), None)]), 2).await;
    let reqs = fresh.wait_for(2).await;
    let mut pushed: Vec<&str> = reqs
        .iter()
        .map(|r| r["headers"]["webhook-id"].as_str().unwrap())
        .collect();
    pushed.sort();
    assert_eq!(pushed, [first.as_str(), second.as_str()]);
    wait_state(&hub, &second, "delivered").await;
    hub.wait_for_metric(&format!("lienthong_push_pull_only{{agency=\"{B}\"}} 0"))
        .await;
    assert_eq!(gone.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_with_an_untrusted_certificate_gets_nothing() {
    // The pull below leases the item for a second only, so the push after the fix is not
    // held back by it for the default minute.
    let hub = TestHub::start(
        SMALL_DIRECTORY,
        "[push]\nretry = [\"300ms\"]\n[queue]\nlease_secs = 1\n",
    );
    // Another CA's server certificate: it does not chain to the hub's client CA.
    let other = tempfile::tempdir().unwrap();
    run_ok(
        Command::new(BIN)
            .args(["pki", "init", "--dir"])
            .arg(other.path())
            .arg("--agencies")
            .arg(&hub.agencies),
    );
    let rx = Receiver::start(
        &other.path().join("server.pem"),
        &other.path().join("server.key"),
        &hub.path("certs/ca.pem"),
        &[],
    );
    reload(&hub, &directory_with(&[(B, &rx.url(), None)]), 1).await;
    let (id, _) = send(&hub, "P-7").await;
    hub.wait_for_metric(&format!(
        "lienthong_push_attempts_total{{agency=\"{B}\",result=\"tls\"}}"
    ))
    .await;
    assert!(
        rx.requests().is_empty(),
        "the untrusted endpoint got a request"
    );
    let items = inbox(&hub.client(B, HttpVersion::Auto), "limit=10&wait=10").await;
    assert_eq!(items[0]["id"], id.as_str());
    // Trusting that CA for this agency (push_ca) lets the pushes through.
    let ca = other.path().join("ca.pem");
    reload(&hub, &directory_with(&[(B, &rx.url(), Some(&ca))]), 2).await;
    let reqs = rx.wait_for(1).await;
    assert_eq!(reqs[0]["headers"]["webhook-id"], id.as_str());
}

/// `lienthong receive` as the endpoint: the hub pushes to it over HTTP/2; the packet is on
/// disk with its verdict; a replay is answered without a second file; a changed body, or
/// another client certificate, is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lienthong_receive_stores_each_push_once() {
    let hub = TestHub::start(SMALL_DIRECTORY, "");
    let out = hub.path("received");
    let certs = hub.path("certs");
    let receiver = Command::new(BIN)
        .current_dir(hub.dir.path())
        .args(["receive", "--listen", "127.0.0.1:0", "--out"])
        .arg(&out)
        .arg("--hub-cert")
        .arg(certs.join("hub-signing.pem"))
        .arg("--hub-ca")
        .arg(certs.join("ca.pem"))
        .arg("--tls-cert")
        .arg(certs.join("server.pem"))
        .arg("--tls-key")
        .arg(certs.join("server.key"))
        .arg("--trust")
        .arg(certs.join("trust"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut receiver = Killed(receiver);
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(receiver.0.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let addr = line.trim().rsplit("https://").next().unwrap().to_owned();
    let url = format!("https://{addr}/inbox");
    reload(&hub, &directory_with(&[(B, &url, None)]), 1).await;
    let (id, body) = send(&hub, "P-8").await;
    wait_state(&hub, &id, "delivered").await;
    let stored = std::fs::read(out.join(format!("{id}.edxml"))).unwrap();
    assert_eq!(stored, body);
    let meta: Value =
        serde_json::from_slice(&std::fs::read(out.join(format!("{id}.json"))).unwrap()).unwrap();
    assert_eq!(meta["verdict"], "verified");
    assert_eq!(meta["from"], A);

    // Replays with curl: the hub's client certificate and a fresh valid signature.
    let signer = lienthong::dsig::Signer::load(
        &certs.join("hub-signing.pem"),
        &certs.join("hub-signing.key"),
    )
    .unwrap();
    let curl = |cert: &str, id: &str, body: &[u8]| {
        let h = lienthong::webhook::sign(&signer, id, body, std::time::SystemTime::now()).unwrap();
        let file = hub.path("replay.xml");
        std::fs::write(&file, body).unwrap();
        let out = Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
            .arg(certs.join("ca.pem"))
            .arg("--cert")
            .arg(certs.join(format!("{cert}.pem")))
            .arg("--key")
            .arg(certs.join(format!("{cert}.key")))
            .args(["-H", &format!("webhook-id: {}", h.id)])
            .args(["-H", &format!("webhook-timestamp: {}", h.timestamp)])
            .args(["-H", &format!("webhook-signature: {}", h.signature)])
            .arg("--data-binary")
            .arg(format!("@{}", file.display()))
            .arg(&url)
            .output()
            .unwrap();
        let code = String::from_utf8_lossy(&out.stdout).into_owned();
        if code == "000" {
            eprintln!("curl: {}", String::from_utf8_lossy(&out.stderr));
        }
        code
    };
    assert_eq!(
        curl("hub-client", &id, &body),
        "200",
        "a duplicate is answered 2xx"
    );
    let files = std::fs::read_dir(&out).unwrap().count();
    assert_eq!(files, 2, "no second file for a duplicate");
    // A signature over another body than the one sent.
    let sig = lienthong::webhook::sign(
        &signer,
        "0000000000000999",
        b"x",
        std::time::SystemTime::now(),
    )
    .unwrap();
    let forged = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(certs.join("ca.pem"))
        .arg("--cert")
        .arg(certs.join("hub-client.pem"))
        .arg("--key")
        .arg(certs.join("hub-client.key"))
        .args(["-H", "webhook-id: 0000000000000999"])
        .args(["-H", &format!("webhook-timestamp: {}", sig.timestamp)])
        .args(["-H", &format!("webhook-signature: {}", sig.signature)])
        .args(["--data-binary", "<edXML>changed</edXML>"])
        .arg(&url)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&forged.stdout), "401");
    // An agency's certificate (same CA, not the hub's CN).
    let agency_cert = format!("agencies/{A}");
    assert_eq!(curl(&agency_cert, "0000000000000998", &body), "403");
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 2);
}

/// A child process killed when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
