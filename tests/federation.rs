//! Federation (docs/federation.md) with three real hubs: separate processes, data dirs and
//! CAs (each trusting the others' hub certificates), A ↔ B ↔ C. A's agency writes to C's
//! agency through B; the answer comes back the same way.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use http::StatusCode;
use lienthong::client::HttpVersion;
use serde_json::Value;

const A1: &str = "000.00.01.H13";
const B1: &str = "000.00.01.H22";
const C1: &str = "000.00.01.H29";

fn directory(id: &str) -> String {
    format!("[[agency]]\nid = \"{id}\"\nname = \"Cơ quan {id}\"\n")
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

struct Net {
    a: TestHub,
    b: TestHub,
    c: TestHub,
}

/// `[[peer]]` text for `hub` at `port`.
fn peer(id: &str, port: u16, ca: &Path, routes: &[&str], default: bool) -> String {
    let routes: Vec<String> = routes.iter().map(|r| format!("\"{r}\"")).collect();
    format!(
        "[[peer]]\nid = \"{id}\"\nurl = \"https://127.0.0.1:{port}\"\ncert_cn = \"{id}\"\n\
         routes = [{}]\ndefault = {default}\nca = \"{}\"\n",
        routes.join(", "),
        ca.display()
    )
}

/// Three hubs: A (agency A1, parent B), B (agency B1, routes H13 → A, H29 → C), C (agency
/// C1, parent B). Each hub's client certificate is a role certificate of its own CA with
/// its hub id as CN; client CAs and signature trust stores hold the neighbours'.
fn network(max_hops: usize) -> Net {
    network_with(max_hops, &[], "")
}

/// [`network`] where B also routes `extra_to_a` to A (a misconfiguration makes a loop), and
/// C's config has `c_extra` too.
fn network_with(max_hops: usize, extra_to_a: &[&str], c_extra: &str) -> Net {
    let mut hubs: Vec<TestHub> = [A1, B1, C1]
        .iter()
        .map(|id| TestHub::start(&directory(id), ""))
        .collect();
    let ids = ["hub.a", "hub.b", "hub.c"];
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    for (h, id) in hubs.iter().zip(ids) {
        run_ok(
            Command::new(BIN)
                .args(["pki", "init", "--dir"])
                .arg(h.path("certs"))
                .arg("--agencies")
                .arg(&h.agencies)
                .args(["--role", id]),
        );
        std::fs::copy(h.path("certs/ca.pem"), h.path("own-ca.pem")).unwrap();
    }
    let own = |i: usize| hubs[i].path("own-ca.pem");
    let neighbours: [&[usize]; 3] = [&[1], &[0, 2], &[1]];
    for (i, near) in neighbours.iter().enumerate() {
        // Client CA: its own and its neighbours' (their hub certificates connect here).
        let mut bundle = std::fs::read_to_string(own(i)).unwrap();
        for &n in *near {
            bundle += &std::fs::read_to_string(own(n)).unwrap();
        }
        std::fs::write(hubs[i].path("certs/ca.pem"), bundle).unwrap();
        // Signatures from every hub's agencies verify everywhere.
        for (j, other) in hubs.iter().enumerate() {
            if i == j {
                continue;
            }
            for f in std::fs::read_dir(other.path("certs/trust")).unwrap() {
                let f = f.unwrap().path();
                let name = format!("hub{j}-{}", f.file_name().unwrap().to_string_lossy());
                std::fs::copy(&f, hubs[i].path(&format!("certs/trust/{name}"))).unwrap();
            }
        }
    }
    let configs = [
        peer("hub.b", ports[1], &own(1), &[], true),
        peer(
            "hub.a",
            ports[0],
            &own(0),
            &[&["*.*.*.H13"], extra_to_a].concat(),
            false,
        ) + &peer("hub.c", ports[2], &own(2), &["*.*.*.H29"], false),
        peer("hub.b", ports[1], &own(1), &[], true),
    ];
    for (i, h) in hubs.iter_mut().enumerate() {
        let mut config = format!(
            "[federation]\nhub_id = \"{}\"\nmax_hops = {max_hops}\n\
             [outbound]\nclient_cert = \"certs/roles/{0}.pem\"\nclient_key = \"certs/roles/{0}.key\"\n\
             [push]\nretry = [\"300ms\", \"1s\"]\n{}",
            ids[i], configs[i]
        );
        if i == 2 {
            config += c_extra;
        }
        std::fs::write(&h.config, config).unwrap();
        h.stop();
        h.listen = format!("127.0.0.1:{}", ports[i]);
        h.spawn();
    }
    let c = hubs.pop().unwrap();
    let b = hubs.pop().unwrap();
    let a = hubs.pop().unwrap();
    Net { a, b, c }
}

async fn wait_inbox(hub: &TestHub, agency: &str) -> Vec<Value> {
    let c = hub.client(agency, HttpVersion::Auto);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let items = inbox(&c, "limit=10&wait=5").await;
        if !items.is_empty() {
            return items;
        }
        assert!(Instant::now() < deadline, "nothing arrived for {agency}");
    }
}

/// One recipient's entry in a `/status` answer.
fn recipient(status: &Value, agency: &str) -> Value {
    status["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["agency"] == agency)
        .cloned()
        .unwrap_or_else(|| panic!("no {agency} in {status}"))
}

async fn status(hub: &TestHub, agency: &str, id: &str) -> Value {
    let c = hub.client(agency, HttpVersion::Auto);
    get(&c, &format!("/v1/documents/{id}/status")).await.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_travels_a_to_c_through_b_and_its_status_comes_back() {
    let net = network(4);
    let body = net.a.packet(A1, &[C1], "F-1", b"qua ba truc");
    let sent = submit(&net.a.client(A1, HttpVersion::Auto), body.clone()).await;
    assert_eq!(sent.status, StatusCode::CREATED, "{:?}", sent.json());
    let id = sent.json()["id"].as_str().unwrap().to_owned();

    let items = wait_inbox(&net.c, C1).await;
    assert_eq!(items.len(), 1, "one copy");
    let hops: Vec<&str> = items[0]["route"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["hub"].as_str().unwrap())
        .collect();
    assert_eq!(hops, ["hub.a", "hub.b", "hub.c"]);
    let remote_id = items[0]["id"].as_str().unwrap().to_owned();
    let c1 = net.c.client(C1, HttpVersion::Auto);
    let fetched = get(&c1, &format!("/v1/documents/{remote_id}")).await;
    assert_eq!(fetched.body.as_ref(), body.as_slice(), "byte-identical");
    let file = net.c.path("fetched.edxml");
    std::fs::write(&file, &fetched.body).unwrap();
    run_ok(
        Command::new(BIN)
            .arg("verify")
            .arg(&file)
            .arg("--trust")
            .arg(net.c.path("certs/trust")),
    );
    assert_eq!(
        post(&c1, &format!("/v1/inbox/{remote_id}/ack"))
            .await
            .status,
        StatusCode::OK
    );

    // C reports the fetch and the ack back: A shows C1 delivered, as reported by hub.c.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = status(&net.a, A1, &id).await;
        let c1_state = recipient(&s, C1);
        if c1_state["state"] == "delivered" {
            let steps: Vec<(&str, &str)> = c1_state["history"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|h| h["remote"].is_object())
                .map(|h| {
                    (
                        h["state"].as_str().unwrap(),
                        h["remote"]["hub"].as_str().unwrap(),
                    )
                })
                .collect();
            assert_eq!(
                steps,
                [("fetched", "hub.c"), ("delivered", "hub.c")],
                "{c1_state}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "A never heard from C: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // At A: forwarded to B (its queue `@hub.b` delivered, with B's signed receipt).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = status(&net.a, A1, &id).await;
        let fwd = s["recipients"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["agency"] == "@hub.b")
            .cloned();
        if fwd.as_ref().is_some_and(|f| f["state"] == "delivered") {
            let last = fwd.unwrap()["history"]
                .as_array()
                .unwrap()
                .last()
                .cloned()
                .unwrap();
            assert!(last["push"]["hop_receipt"].is_string(), "{last}");
            break;
        }
        assert!(Instant::now() < deadline, "A never saw the forward: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // C1 answers "accepted" (03); the notice goes back C → B → A.
    let notice = lienthong::edxml::compose_status(
        C1,
        A1,
        "F-1",
        "03",
        "Đã tiếp nhận",
        "2026/11/30 10:00:00",
    );
    let r = submit(&c1, net.c.sign(C1, notice.as_bytes())).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.json());
    let notices = wait_inbox(&net.a, A1).await;
    assert_eq!(notices[0]["kind"], "status");
    assert_eq!(notices[0]["from"], C1);
    let s = status(&net.a, A1, &id).await;
    let c_state = s["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["agency"] == C1)
        .cloned()
        .unwrap();
    assert_eq!(c_state["state"], "accepted", "{s}");
}

/// curl to a hub's federation endpoint with `cert` (a path under the hub dir `from`).
fn forward(
    to: &TestHub,
    from: &TestHub,
    cert: &str,
    route: &str,
    recipients: &str,
    body: &[u8],
) -> (String, String) {
    let file = from.path("forward.edxml");
    std::fs::write(&file, body).unwrap();
    let out = Command::new("curl")
        .args(["-sS", "-w", "\n%{http_code}", "--cacert"])
        .arg(to.path("own-ca.pem"))
        .arg("--cert")
        .arg(from.path(&format!("certs/{cert}.pem")))
        .arg("--key")
        .arg(from.path(&format!("certs/{cert}.key")))
        .args(["-H", &format!("lienthong-route: {route}")])
        .args(["-H", &format!("lienthong-recipients: {recipients}")])
        .arg("--data-binary")
        .arg(format!("@{}", file.display()))
        .arg(format!("{}/v1/federation/packets", to.url()))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.to_owned(), body.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_cannot_forge_senders_or_loop_and_agencies_cannot_forward() {
    let net = network(3);
    let route_a = r#"[{"hub":"hub.a","at":"2026-11-30T10:00:00Z"}]"#;
    // B forwards a packet "from" A's own agency to A: A1 is not behind B.
    let forged = net.a.packet(A1, &[A1], "F-2", b"");
    let route_b = r#"[{"hub":"hub.b","at":"2026-11-30T10:00:00Z"}]"#;
    let (code, body) = forward(&net.a, &net.b, "roles/hub.b", route_b, A1, &forged);
    assert_eq!(code, "403", "{body}");
    assert!(body.contains("sender_not_behind_peer"), "{body}");
    // An agency's certificate on the federation endpoint.
    let (code, body) = forward(
        &net.b,
        &net.b,
        &format!("agencies/{B1}"),
        route_a,
        C1,
        &forged,
    );
    assert_eq!(code, "403", "{body}");
    assert!(body.contains("not_a_peer"), "{body}");
    // A route that already passed B, and one as long as max_hops.
    let from_a = net.a.packet(A1, &[C1], "F-3", b"");
    let looped = r#"[{"hub":"hub.a","at":"2026-11-30T10:00:00Z"},{"hub":"hub.b","at":"2026-11-30T10:00:01Z"}]"#;
    let (code, body) = forward(&net.b, &net.a, "roles/hub.a", looped, C1, &from_a);
    assert_eq!(code, "422", "{body}");
    assert!(body.contains("routing_loop"), "{body}");
    let long = r#"[{"hub":"x1","at":"t"},{"hub":"x2","at":"t"},{"hub":"hub.a","at":"t"}]"#;
    let (code, body) = forward(&net.b, &net.a, "roles/hub.a", long, C1, &from_a);
    assert_eq!(code, "422", "{body}");
    // The same packet on a clean route is taken (and a retry of it is a duplicate, 200).
    let (code, body) = forward(&net.b, &net.a, "roles/hub.a", route_a, C1, &from_a);
    assert_eq!(code, "201", "{body}");
    let (code, _) = forward(&net.b, &net.a, "roles/hub.a", route_a, C1, &from_a);
    assert_eq!(code, "200", "a retried forward is the same acceptance");
    assert_eq!(wait_inbox(&net.c, C1).await.len(), 1);
}

/// Items in `agency`'s inbox, after waiting for at least `n`.
async fn wait_items(hub: &TestHub, agency: &str, n: usize) -> Vec<Value> {
    let c = hub.client(agency, HttpVersion::Auto);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // limit above n: a duplicate would show up as an extra item.
        let items = inbox(&c, "limit=50").await;
        if items.len() >= n {
            return items;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} arrived for {agency}",
            items.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn send_to_c(a: &TestHub, document_id: &str) {
    let body = a.packet(A1, &[C1], document_id, b"");
    let r = submit(&a.client(A1, HttpVersion::Auto), body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.json());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_b_down_a_queues_and_delivers_everything_once_b_returns() {
    let mut net = network(4);
    net.b.stop();
    for n in 0..3 {
        send_to_c(&net.a, &format!("D-{n}")).await;
    }
    // A holds them for hub.b.
    let stats = net.a.ops_stats().await;
    let queued = stats["backlog"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["agency"] == "@hub.b")
        .map(|b| b["pending"].as_u64().unwrap());
    assert_eq!(queued, Some(3), "{stats}");
    // The peer's own line: its backlog, and attempts that failed while B was away.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stats = net.a.ops_stats().await;
        let b = stats["peers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["peer"] == "hub.b")
            .cloned()
            .unwrap_or_else(|| panic!("no hub.b line: {stats}"));
        assert_eq!(b["pending"], 3, "{b}");
        assert!(b["oldest_pending_secs"].is_u64(), "{b}");
        assert_eq!(b["default"], true, "{b}");
        if b["forward_failed"].as_u64().unwrap() > 0 {
            assert!(b["last_error"].is_string(), "{b}");
            break;
        }
        assert!(Instant::now() < deadline, "no failed forward counted: {b}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    net.b.spawn();
    let items = wait_items(&net.c, C1, 3).await;
    // Nothing twice: with a lease of 60 s every copy would be listed in this one page.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let again = inbox(&net.c.client(C1, HttpVersion::Auto), "limit=50").await;
    assert_eq!(items.len() + again.len(), 3, "each document arrived once");
    // A counted three forwards to B, B three packets from A and C three from B.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let line = |stats: &Value, peer: &str, field: &str| {
            stats["peers"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["peer"] == peer)
                .map(|p| p[field].as_u64().unwrap())
                .unwrap()
        };
        let (a, b, c) = (
            net.a.ops_stats().await,
            net.b.ops_stats().await,
            net.c.ops_stats().await,
        );
        let figures = (
            line(&a, "hub.b", "forwarded"),
            line(&a, "hub.b", "pending"),
            line(&b, "hub.a", "received"),
            line(&b, "hub.c", "forwarded"),
            line(&c, "hub.b", "received"),
        );
        if figures == (3, 0, 3, 3, 3) {
            break;
        }
        assert!(Instant::now() < deadline, "peer figures {figures:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let metrics = net.a.metrics_text();
    assert!(
        metrics.contains(r#"lienthong_forwards_total{peer="hub.b",result="forwarded"} 3"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"lienthong_peer_queue_depth{peer="hub.b"}"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubs_killed_mid_transfer_still_deliver_exactly_one_copy() {
    let mut net = network(4);
    // A dies with a forward pending (B is down, so it cannot have been taken yet).
    net.b.stop();
    send_to_c(&net.a, "K-1").await;
    net.a.crash();
    net.b.spawn();
    net.a.spawn();
    wait_items(&net.c, C1, 1).await;
    // B dies right after taking a forward (its 2xx): it resumes its own forward to C.
    send_to_c(&net.a, "K-2").await;
    let a1 = net.a.client(A1, HttpVersion::Auto);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let sent = get(&a1, "/v1/sent?limit=10").await.json();
        let forwarded = sent["items"].as_array().unwrap().iter().any(|d| {
            d["document_id"] == "K-2"
                && d["recipients"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|r| r["agency"] == "@hub.b" && r["state"] == "delivered")
        });
        if forwarded {
            break;
        }
        assert!(Instant::now() < deadline, "A never forwarded K-2: {sent}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    net.b.crash();
    net.b.spawn();
    // K-1 was listed (and leased) above: a listing now shows K-2, once.
    let items = wait_items(&net.c, C1, 1).await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["document_id"], "K-2");
    let c1 = net.c.client(C1, HttpVersion::Auto);
    assert!(
        inbox(&c1, "limit=50&wait=2").await.is_empty(),
        "a second copy of K-2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_routing_loop_ends_in_a_refusal_and_a_notice_to_the_sender() {
    // A sends H99 to its parent B; B (misconfigured) sends H99 back to A.
    let net = network_with(4, &["*.*.*.H99"], "");
    let x = "000.00.01.H99";
    let body = net.a.packet(A1, &[x], "L-1", b"");
    let r = submit(&net.a.client(A1, HttpVersion::Auto), body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.json());
    let items = wait_inbox(&net.a, A1).await;
    assert_eq!(items[0]["kind"], "notice", "{items:?}");
    assert_eq!(items[0]["from"], "lienthong");
    assert!(
        items[0]["subject"]
            .as_str()
            .unwrap()
            .starts_with("Không chuyển được"),
        "{items:?}"
    );
    let a1 = net.a.client(A1, HttpVersion::Auto);
    let notice = get(
        &a1,
        &format!("/v1/documents/{}", items[0]["id"].as_str().unwrap()),
    )
    .await;
    let jws = String::from_utf8(notice.body.to_vec()).unwrap();
    let payload = base64::Engine::decode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        jws.split('.').nth(1).unwrap(),
    )
    .unwrap();
    let payload: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(payload["type"], "refused");
    assert!(
        payload["reason"]
            .as_str()
            .unwrap()
            .starts_with("routing_loop"),
        "{payload}"
    );
    // B gave up its copy too: nothing waits for A there.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stats = net.b.ops_stats().await;
        if stats["pending"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "B still holds it: {stats}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The payload of the hub notice `item` (a JWS) in `agency`'s inbox at `hub`.
async fn notice_payload(hub: &TestHub, agency: &str, item: &Value) -> Value {
    let c = hub.client(agency, HttpVersion::Auto);
    let notice = get(
        &c,
        &format!("/v1/documents/{}", item["id"].as_str().unwrap()),
    )
    .await;
    let jws = String::from_utf8(notice.body.to_vec()).unwrap();
    let payload = base64::Engine::decode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        jws.split('.').nth(1).unwrap(),
    )
    .unwrap();
    serde_json::from_slice(&payload).unwrap()
}

/// Waits until `hub`'s `/status` of `id` shows `agency` in `state`; returns that entry.
async fn wait_state(hub: &TestHub, sender: &str, id: &str, agency: &str, state: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = status(hub, sender, id).await;
        let r = recipient(&s, agency);
        if r["state"] == state {
            return r;
        }
        assert!(Instant::now() < deadline, "{agency} never {state}: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_expiry_two_hops_away_reach_the_sender() {
    // C expires what nobody acks within 2 s; it routes what it does not know to B (its
    // parent), which sends H29 agencies back to C: a loop that B refuses.
    let net = network_with(4, &[], "[queue]\nexpiry_secs = 2\nupkeep_secs = 1\n");
    let a1 = net.a.client(A1, HttpVersion::Auto);

    // Refused in the middle: C forwards to B, B refuses (routing_loop); C reports to B,
    // B passes it to A, A tells its sender.
    let stranger = "000.00.02.H29";
    let r = submit(&a1, net.a.packet(A1, &[stranger], "R-1", b"")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.json());
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let items = wait_inbox(&net.a, A1).await;
    assert_eq!(items[0]["kind"], "notice", "{items:?}");
    let payload = notice_payload(&net.a, A1, &items[0]).await;
    assert_eq!(payload["type"], "refused", "{payload}");
    assert_eq!(payload["refused_by"], "hub.b", "{payload}");
    assert!(
        payload["reason"]
            .as_str()
            .unwrap()
            .starts_with("routing_loop"),
        "{payload}"
    );
    assert_eq!(payload["recipients"], serde_json::json!([stranger]));
    let state = wait_state(&net.a, A1, &id, stranger, "refused").await;
    let last = state["history"]
        .as_array()
        .unwrap()
        .last()
        .cloned()
        .unwrap();
    assert_eq!(last["remote"]["hub"], "hub.c", "{state}");
    assert_eq!(last["remote"]["refused_by"], "hub.b", "{state}");
    for i in &items {
        let acked = post(&a1, &format!("/v1/inbox/{}/ack", i["id"].as_str().unwrap())).await;
        assert_eq!(acked.status, StatusCode::OK);
    }

    // Expired at the end: C1 never acks; A's sender learns it from C's report.
    let r = submit(&a1, net.a.packet(A1, &[C1], "E-1", b"")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.json());
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let state = wait_state(&net.a, A1, &id, C1, "expired").await;
    let last = state["history"]
        .as_array()
        .unwrap()
        .last()
        .cloned()
        .unwrap();
    assert_eq!(last["remote"]["hub"], "hub.c", "{state}");
    let items = wait_inbox(&net.a, A1).await;
    assert_eq!(items.len(), 1, "one notice: {items:?}");
    let payload = notice_payload(&net.a, A1, &items[0]).await;
    assert_eq!(payload["type"], "expired", "{payload}");
    assert_eq!(payload["reported_by"], "hub.c", "{payload}");
    assert_eq!(payload["recipients"], serde_json::json!([C1]));
}

/// A revoke (BussinessDocType 1) of `document_id` from `from`, signed.
fn revoke(hub: &TestHub, from: &str, to: &[&str], document_id: &str) -> Vec<u8> {
    let text = String::from_utf8(packet(from, to, document_id, b"")).unwrap();
    let text = text.replace(
        "<edXML:BussinessDocType>0</edXML:BussinessDocType>",
        "<edXML:BussinessDocType>1</edXML:BussinessDocType>",
    );
    hub.sign(from, text.as_bytes())
}

/// Waits until `hub` holds nothing for anyone (`pending` 0) or, with `n`, `n` items.
async fn wait_pending(hub: &TestHub, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stats = hub.ops_stats().await;
        if stats["pending"] == n {
            return;
        }
        assert!(Instant::now() < deadline, "pending never {n}: {stats}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_follows_the_document_to_the_hub_that_holds_it() {
    let net = network(4);
    let a1 = net.a.client(A1, HttpVersion::Auto);
    // A revocation that overtakes its document (forwards run in parallel) is "too early"
    // at the next hub, which the forwarding hub retries; it is not a refusal.
    let early = revoke(&net.a, A1, &[C1], "V-0");
    let route = r#"[{"hub":"hub.a","at":"2026-11-30T10:00:00Z"},{"hub":"hub.b","at":"2026-11-30T10:00:01Z"}]"#;
    let (code, body) = forward(&net.c, &net.b, "roles/hub.b", route, C1, &early);
    assert_eq!(code, "425", "{body}");
    assert!(body.contains("original_pending"), "{body}");

    // C holds V-1 for C1, who has not listed it; A1 revokes it.
    let r = submit(&a1, net.a.packet(A1, &[C1], "V-1", b"")).await;
    let id = r.json()["id"].as_str().unwrap().to_owned();
    wait_pending(&net.c, 1).await;
    let r = submit(&a1, revoke(&net.a, A1, &[C1], "V-1")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.json());
    // The revocation travels A → B → C, and C takes V-1 back: C1 never sees either.
    wait_pending(&net.c, 0).await;
    let c1 = net.c.client(C1, HttpVersion::Auto);
    assert!(inbox(&c1, "wait=1").await.is_empty(), "C1 got something");
    let state = recipient(&status(&net.a, A1, &id).await, C1);
    assert_eq!(state["state"], "revoked", "{state}");
}
