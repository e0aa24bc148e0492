//! Delivery state per recipient with its history, status notices, and revoke / update /
//! replace, as the sender, the recipients and a stranger see them.

mod common;

use common::*;
use http::StatusCode;
use lienthong::client::{Client, HttpVersion};

/// A packet from `from` to `to` of business type `bt` (with extra `Bussiness` children),
/// signed by its sender.
fn business(
    hub: &TestHub,
    from: &str,
    to: &[&str],
    document_id: &str,
    bt: u8,
    extra: &str,
) -> Vec<u8> {
    let text = String::from_utf8(packet(from, to, document_id, b"")).unwrap();
    let text = text.replace(
        "<edXML:BussinessDocType>0</edXML:BussinessDocType>",
        &format!("<edXML:BussinessDocType>{bt}</edXML:BussinessDocType>{extra}"),
    );
    hub.sign(from, text.as_bytes())
}

fn status(hub: &TestHub, from: &str, sender: &str, document_id: &str, code: &str) -> Vec<u8> {
    let text = lienthong::edxml::compose_status(
        from,
        sender,
        document_id,
        code,
        "ghi chú",
        "2026/11/28 10:00:00",
    );
    hub.sign(from, text.as_bytes())
}

async fn state_of(c: &Client, id: &str) -> serde_json::Value {
    let r = get(c, &format!("/v1/documents/{id}/status")).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json());
    r.json()
}

fn current(status: &serde_json::Value, agency: &str) -> String {
    status["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["agency"] == agency)
        .map(|r| r["state"].as_str().unwrap().to_owned())
        .unwrap_or_else(|| panic!("no {agency} in {status}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn states_move_with_leases_acks_and_status_notices() {
    let mut hub = TestHub::start(SMALL_DIRECTORY, "");
    let (a, b, c) = (
        hub.client(A, HttpVersion::Auto),
        hub.client(B, HttpVersion::Auto),
        hub.client(C, HttpVersion::Auto),
    );
    let doc_id = format!("{A},2026/11/28,1/ST");
    let r = submit(&a, hub.packet(A, &[B, C], &doc_id, b"")).await;
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let s = state_of(&a, &id).await;
    assert_eq!(current(&s, B), "queued");
    assert_eq!(current(&s, C), "queued");

    inbox(&b, "").await;
    assert_eq!(current(&state_of(&a, &id).await, B), "leased");
    post(&b, &format!("/v1/inbox/{id}/ack")).await;
    assert_eq!(current(&state_of(&a, &id).await, B), "delivered");
    for (code, state) in [("01", "arrived"), ("03", "accepted"), ("06", "completed")] {
        let r = submit(&b, status(&hub, B, A, &doc_id, code)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.json());
        assert_eq!(current(&state_of(&a, &id).await, B), state);
    }
    // The whole history, timestamped, for the sender; a recipient sees only itself.
    let s = state_of(&a, &id).await;
    let b_row = s["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["agency"] == B)
        .unwrap()
        .clone();
    let states: Vec<&str> = b_row["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        states,
        [
            "queued",
            "leased",
            "delivered",
            "arrived",
            "accepted",
            "completed"
        ]
    );
    assert!(b_row["history"][0]["at"].as_str().unwrap().ends_with('Z'));
    let for_c = state_of(&c, &id).await;
    assert_eq!(for_c["recipients"].as_array().unwrap().len(), 1);
    assert_eq!(current(&for_c, C), "queued");
    let stranger_doc = submit(&b, hub.packet(B, &[C], "ST-B", b"")).await;
    let sid = stranger_doc.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(
        get(&a, &format!("/v1/documents/{sid}/status")).await.status,
        StatusCode::NOT_FOUND
    );

    // GET /v1/sent: A's documents with each recipient's current state.
    let sent = get(&a, "/v1/sent").await.json();
    let items = sent["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{sent}");
    assert_eq!(items[0]["id"], id.as_str());
    let rs = items[0]["recipients"].as_array().unwrap();
    assert!(
        rs.iter()
            .any(|r| r["agency"] == B && r["state"] == "completed")
    );
    assert!(
        rs.iter()
            .any(|r| r["agency"] == C && r["state"] == "queued")
    );
    // Paginated by cursor; `since` filters by acceptance time.
    for n in 2..=4 {
        submit(
            &a,
            hub.packet(A, &[C], &format!("{A},2026/11/28,{n}/ST"), b""),
        )
        .await;
    }
    let page1 = get(&a, "/v1/sent?limit=2").await.json();
    assert_eq!(page1["items"].as_array().unwrap().len(), 2);
    let cursor = page1["next_cursor"].as_str().unwrap();
    let page2 = get(&a, &format!("/v1/sent?limit=2&cursor={cursor}"))
        .await
        .json();
    assert_eq!(page2["items"].as_array().unwrap().len(), 2);
    assert!(page2["next_cursor"].is_null());
    let later = get(&a, "/v1/sent?since=2999-01-01T00:00:00Z").await.json();
    assert!(later["items"].as_array().unwrap().is_empty());

    // A notice that names no document of the sender's is refused with a reason.
    let r = submit(
        &b,
        status(&hub, B, A, "000.00.01.H13,2026/01/01,404/X", "03"),
    )
    .await;
    assert_eq!(error_code(&r), "unknown_document", "{:?}", r.json());
    // Nor may a non-recipient answer A's document.
    let r = submit(&c, status(&hub, C, B, "ST-B", "03")).await;
    assert_eq!(r.status, StatusCode::CREATED, "C is a recipient of ST-B");
    let r = submit(&a, status(&hub, A, B, "ST-B", "03")).await;
    assert_eq!(error_code(&r), "unknown_document", "{:?}", r.json());
    hub.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_update_and_replace() {
    let mut hub = TestHub::start(SMALL_DIRECTORY, "");
    let (a, b, c) = (
        hub.client(A, HttpVersion::Auto),
        hub.client(B, HttpVersion::Auto),
        hub.client(C, HttpVersion::Auto),
    );

    // Revoke: B has pulled the document, C has not.
    let d1 = format!("{A},2026/11/28,10/RV");
    let r = submit(&a, hub.packet(A, &[B, C], &d1, b"")).await;
    let id1 = r.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(inbox(&b, "").await.len(), 1);
    // Only the sender may revoke it, and another agency's document answers exactly like one
    // that does not exist (no existence oracle).
    let r = submit(&c, business(&hub, C, &[B], &d1, 1, "")).await;
    assert_eq!(error_code(&r), "unknown_document", "{:?}", r.json());
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let ghost = format!("{A},2026/11/28,999/NONE");
    let r2 = submit(&c, business(&hub, C, &[B], &ghost, 1, "")).await;
    assert_eq!(r2.status, r.status);
    assert_eq!(
        r2.json()["error"]["message"]
            .as_str()
            .unwrap()
            .replace(&ghost, "X"),
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .replace(&d1, "X")
    );
    let r = submit(&a, business(&hub, A, &[B, C], &d1, 1, "")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.json());
    assert_eq!(r.json()["recipients"], serde_json::json!([B]));
    let revocation = r.json()["id"].as_str().unwrap().to_owned();
    // C never sees the document; B gets the revocation, pointing at it.
    assert!(inbox(&c, "").await.is_empty());
    let for_b = inbox(&b, "wait=0").await;
    let rev = for_b
        .iter()
        .find(|i| i["id"] == revocation.as_str())
        .expect("B gets the revocation");
    assert_eq!(rev["acts_on"], id1.as_str());
    assert_eq!(
        get(&c, &format!("/v1/documents/{id1}")).await.status,
        StatusCode::NOT_FOUND,
        "C never pulled it and may no longer fetch it"
    );
    assert_eq!(
        get(&b, &format!("/v1/documents/{id1}")).await.status,
        StatusCode::OK,
        "B had pulled it"
    );
    let s = state_of(&a, &id1).await;
    assert_eq!(current(&s, B), "revoked");
    assert_eq!(current(&s, C), "revoked");
    // Revoking what nobody sent is refused.
    let r = submit(
        &a,
        business(&hub, A, &[B], &format!("{A},2026/11/28,99/RV"), 1, ""),
    )
    .await;
    assert_eq!(error_code(&r), "unknown_document");

    // Update: add C, remove B (which has not pulled it).
    let d2 = format!("{A},2026/11/28,20/UP");
    let r = submit(&a, hub.packet(A, &[B], &d2, b"")).await;
    let id2 = r.json()["id"].as_str().unwrap().to_owned();
    let receivers = format!(
        "<edXML:DocumentId>{d2}</edXML:DocumentId><edXML:BussinessDocumentInfo><edXML:ReceiverList>\
         <edXML:Receiver><edXML:OrganId>{B}</edXML:OrganId><edXML:ReceiverType>0</edXML:ReceiverType></edXML:Receiver>\
         <edXML:Receiver><edXML:OrganId>{C}</edXML:OrganId><edXML:ReceiverType>1</edXML:ReceiverType></edXML:Receiver>\
         </edXML:ReceiverList></edXML:BussinessDocumentInfo>"
    );
    let r = submit(
        &a,
        business(
            &hub,
            A,
            &[C],
            &format!("{A},2026/11/28,21/UP"),
            2,
            &receivers,
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.json());
    let b_items = inbox(&b, "").await;
    assert!(
        b_items.iter().all(|i| i["id"] != id2.as_str()),
        "removed from B's queue: {b_items:?}"
    );
    let c_items = inbox(&c, "").await;
    assert!(
        c_items.iter().any(|i| i["id"] == id2.as_str()),
        "queued for C: {c_items:?}"
    );
    let s = state_of(&a, &id2).await;
    assert_eq!(current(&s, B), "removed");
    assert_eq!(current(&s, C), "leased");
    // C may now fetch the original; B, removed before it pulled, may not.
    assert_eq!(
        get(&c, &format!("/v1/documents/{id2}")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        get(&b, &format!("/v1/documents/{id2}")).await.status,
        StatusCode::NOT_FOUND
    );

    // Replace: the new document is linked to the one it replaces.
    let d3 = format!("{A},2026/11/28,30/RP");
    let r = submit(&a, hub.packet(A, &[B], &d3, b"")).await;
    let id3 = r.json()["id"].as_str().unwrap().to_owned();
    let info = format!(
        "<edXML:ReplacementInfoList><edXML:ReplacementInfo><edXML:DocumentId>{d3}</edXML:DocumentId>\
         <edXML:OrganIdList><edXML:OrganId>{B}</edXML:OrganId></edXML:OrganIdList>\
         </edXML:ReplacementInfo></edXML:ReplacementInfoList>"
    );
    let r = submit(
        &a,
        business(&hub, A, &[B], &format!("{A},2026/11/28,31/RP"), 3, &info),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.json());
    let new_id = r.json()["id"].as_str().unwrap().to_owned();
    let items = inbox(&b, "").await;
    let new = items.iter().find(|i| i["id"] == new_id.as_str()).unwrap();
    assert_eq!(new["replaces"], serde_json::json!([id3]));
    // Replacing another agency's document is refused.
    let info_b = info.replace(&d3, &format!("{B},2026/11/28,1/X"));
    submit(&b, hub.packet(B, &[A], &format!("{B},2026/11/28,1/X"), b"")).await;
    let r = submit(
        &a,
        business(&hub, A, &[B], &format!("{A},2026/11/28,32/RP"), 3, &info_b),
    )
    .await;
    assert_eq!(error_code(&r), "unknown_document", "{:?}", r.json());
    hub.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undelivered_items_expire_and_old_bodies_are_purged() {
    let mut hub = TestHub::start(
        SMALL_DIRECTORY,
        "[queue]\nexpiry_secs = 5\nupkeep_secs = 1\n[retention]\nbody_secs = 6\n",
    );
    let (a, b, c) = (
        hub.client(A, HttpVersion::Auto),
        hub.client(B, HttpVersion::Auto),
        hub.client(C, HttpVersion::Auto),
    );
    let body = hub.packet(A, &[B, C], &format!("{A},2026/11/28,1/EX"), b"");
    let r = submit(&a, body).await;
    let id = r.json()["id"].as_str().unwrap().to_owned();
    // B acknowledges in time (an item acked cannot expire, see tests/races.rs); C never does.
    let r = post(&b, &format!("/v1/inbox/{id}/ack")).await;
    assert_eq!(r.json()["removed"], true, "B acked within the 5 s expiry");
    // The sender gets a hub-signed notice (long-poll for it).
    let notices = inbox(&a, "wait=15").await;
    let notice = notices
        .iter()
        .find(|i| i["kind"] == "notice")
        .unwrap_or_else(|| panic!("no expiry notice: {notices:?}"));
    assert_eq!(notice["acts_on"], id.as_str());
    let jws = get(
        &a,
        &format!("/v1/documents/{}", notice["id"].as_str().unwrap()),
    )
    .await;
    let payload = lienthong::jws::verify(
        std::str::from_utf8(&jws.body).unwrap(),
        &lienthong::tls::load_certs(&hub.path("certs/hub-signing.pem")).unwrap()[0],
    )
    .unwrap();
    assert_eq!(payload["type"], "expired");
    assert_eq!(payload["recipients"], serde_json::json!([C]));
    assert!(
        inbox(&c, "").await.is_empty(),
        "expired items leave the queue"
    );
    let s = state_of(&a, &id).await;
    assert_eq!(current(&s, C), "expired");
    assert_eq!(current(&s, B), "delivered");

    // Past retention, with nobody owed it, the body goes; the record and receipts stay.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let r = get(&a, &format!("/v1/documents/{id}")).await;
        if r.status == StatusCode::GONE {
            assert_eq!(error_code(&r), "body_purged");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "body not purged");
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    let receipts = get(&a, &format!("/v1/documents/{id}/receipts"))
        .await
        .json();
    assert_eq!(receipts["receipts"].as_array().unwrap().len(), 2);
    let s = state_of(&a, &id).await;
    assert_eq!(current(&s, C), "expired");
    hub.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_is_acknowledged_in_one_request() {
    let mut hub = TestHub::start(SMALL_DIRECTORY, "");
    let (a, b) = (
        hub.client(A, HttpVersion::Auto),
        hub.client(B, HttpVersion::Auto),
    );
    let mut ids = Vec::new();
    for n in 0..3 {
        let r = submit(&a, hub.packet(A, &[B], &format!("BA-{n}"), b"")).await;
        ids.push(r.json()["id"].as_str().unwrap().to_owned());
    }
    let other = submit(&a, hub.packet(A, &[C], "BA-C", b"")).await;
    let not_mine = other.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(inbox(&b, "").await.len(), 3);
    let body = serde_json::json!({"ids": [ids[0], ids[1], ids[0], not_mine, ids[2]]});
    let r = b
        .request(
            http::Method::POST,
            "/v1/inbox/ack",
            bytes::Bytes::from(body.to_string()),
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json());
    let results = r.json()["results"].as_array().unwrap().clone();
    assert_eq!(results[0]["removed"], true);
    assert_eq!(results[1]["removed"], true);
    assert_eq!(
        results[2]["removed"], false,
        "the same id twice is acked once"
    );
    assert_eq!(results[3]["error"]["code"], "not_found");
    assert_eq!(results[4]["removed"], true);
    // One signed receipt for the three items this request removed, each with its entry.
    let hub_cert = &lienthong::tls::load_certs(&hub.path("certs/hub-signing.pem")).unwrap()[0];
    let receipt = r.json()["receipt"].as_str().unwrap().to_owned();
    let payload = lienthong::jws::verify(&receipt, hub_cert).unwrap();
    assert_eq!(payload["type"], "delivery_batch");
    assert_eq!(payload["recipient"], B);
    let items = payload["items"].as_array().unwrap();
    let covered: Vec<&str> = items.iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(covered, [&ids[0], &ids[1], &ids[2]]);
    assert!(
        items
            .iter()
            .all(|i| i["sender"] == A && i["audit_index"].is_u64())
    );
    // The CLI checks it against a packet it covers, and refuses one it does not.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("batch.jws");
    std::fs::write(&file, &receipt).unwrap();
    let fetched = b
        .call(
            http::Method::GET,
            &format!("/v1/documents/{}", ids[1]),
            bytes::Bytes::new(),
        )
        .await
        .unwrap();
    let packet = dir.path().join("p.xml");
    std::fs::write(&packet, &fetched.body).unwrap();
    let verify = |packet: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_lienthong"))
            .args(["receipt", "verify"])
            .arg(&file)
            .arg("--hub-cert")
            .arg(hub.path("certs/hub-signing.pem"))
            .arg("--packet")
            .arg(packet)
            .output()
            .unwrap()
    };
    let out = verify(&packet);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&packet, b"<not the packet/>").unwrap();
    assert!(!verify(&packet).status.success());
    // The per-document receipt is still there for whoever wants one alone.
    let single = b
        .call(
            http::Method::GET,
            &format!("/v1/documents/{}/receipts", ids[0]),
            bytes::Bytes::new(),
        )
        .await
        .unwrap();
    let single = single.json()["receipts"][0].as_str().unwrap().to_owned();
    assert_eq!(
        lienthong::jws::verify(&single, hub_cert).unwrap()["type"],
        "delivery"
    );
    assert!(inbox(&b, "").await.is_empty());
    // Acked once each: one `delivered` per document in its history.
    let s = state_of(&a, &ids[0]).await;
    let history = s["recipients"][0]["history"].as_array().unwrap();
    assert_eq!(
        history.iter().filter(|h| h["state"] == "delivered").count(),
        1
    );
    hub.stop();
}

/// What an ack removed stays removed: past its lease, past upkeep passes, after an update
/// that names the agency again, and across a restart; acking it again says `removed:false`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_items_stay_gone_across_leases_upkeep_updates_and_restart() {
    let mut hub = TestHub::start(
        SMALL_DIRECTORY,
        "[queue]\nlease_secs = 1\nupkeep_secs = 1\n",
    );
    let (a, b, c) = (
        hub.client(A, HttpVersion::Auto),
        hub.client(B, HttpVersion::Auto),
        hub.client(C, HttpVersion::Auto),
    );
    let doc_id = format!("{A},2026/11/30,1/GONE");
    let r = submit(&a, hub.packet(A, &[B, C], &doc_id, b"")).await;
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let listed = |items: &[serde_json::Value]| items.iter().any(|i| i["id"] == id.as_str());
    assert!(listed(&inbox(&b, "").await));
    let r = post(&b, &format!("/v1/inbox/{id}/ack")).await;
    assert_eq!(r.json()["removed"], true);
    // C does not ack: its item comes back after each lease, which is the proof that leases
    // expired and upkeep passes ran meanwhile (both every second).
    for _ in 0..3 {
        let items = inbox(&c, "wait=5").await;
        assert!(listed(&items), "C's unacked item comes back: {items:?}");
        assert!(!listed(&inbox(&b, "").await), "B's acked item came back");
    }
    // An update naming B (and C) again does not queue the original for B again.
    let receivers = format!(
        "<edXML:DocumentId>{doc_id}</edXML:DocumentId><edXML:BussinessDocumentInfo><edXML:ReceiverList>\
         <edXML:Receiver><edXML:OrganId>{B}</edXML:OrganId><edXML:ReceiverType>0</edXML:ReceiverType></edXML:Receiver>\
         <edXML:Receiver><edXML:OrganId>{C}</edXML:OrganId><edXML:ReceiverType>0</edXML:ReceiverType></edXML:Receiver>\
         </edXML:ReceiverList></edXML:BussinessDocumentInfo>"
    );
    let update = business(
        &hub,
        A,
        &[B, C],
        &format!("{A},2026/11/30,2/GONE"),
        2,
        &receivers,
    );
    let r = submit(&a, update).await;
    assert!(r.status.is_success(), "{} {:?}", r.status, r.json());
    assert!(
        !listed(&inbox(&b, "limit=100").await),
        "the update re-queued it for B"
    );
    hub.stop();
    hub.spawn();
    let (b, c) = (
        hub.client(B, HttpVersion::Auto),
        hub.client(C, HttpVersion::Auto),
    );
    assert!(
        !listed(&inbox(&b, "limit=100").await),
        "back after a restart"
    );
    let r = post(&b, &format!("/v1/inbox/{id}/ack")).await;
    assert_eq!(r.json()["removed"], false);
    // C's item is still owed (C also has the update itself, so list until it shows).
    let mut owed = false;
    for _ in 0..5 {
        owed |= listed(&inbox(&c, "wait=5&limit=100").await);
        if owed {
            break;
        }
    }
    assert!(owed, "C's item is still owed");
    // The log has exactly one `delivered` for B.
    let auditor = hub.role_client("auditor");
    let export = get(&auditor, "/v1/audit/export").await;
    let delivered = std::str::from_utf8(&export.body)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["event"] == "delivered" && e["document"] == id.as_str())
        .count();
    assert_eq!(delivered, 1);
}

/// `GET /v1/inbox?include=body`: a page carries its packets byte for byte (what a fetch
/// returns), only the caller's, and counts as the fetch (one `fetched` trace per document,
/// not a second one on a later fetch); a page stops adding bodies at its budget (8 MiB),
/// and the item left without one is fetched as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_carries_its_bodies_with_include_body() {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut hub = TestHub::start(SMALL_DIRECTORY, "");
    let (a, b, c) = (
        hub.client(A, HttpVersion::Auto),
        hub.client(B, HttpVersion::Auto),
        hub.client(C, HttpVersion::Auto),
    );
    let mut sent = Vec::new();
    for n in 0..2 {
        let p = hub.packet(
            A,
            &[B],
            &format!("IB-{n}"),
            format!("đính kèm {n}").as_bytes(),
        );
        let r = submit(&a, p.clone()).await;
        sent.push((r.json()["id"].as_str().unwrap().to_owned(), p));
    }
    submit(&a, hub.packet(A, &[C], "IB-C", b"")).await;
    let bad = get(&b, "/v1/inbox?include=bodies").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&bad), "bad_request");

    let page = inbox(&b, "include=body").await;
    assert_eq!(page.len(), 2, "only B's items: {page:?}");
    for (item, (id, packet)) in page.iter().zip(&sent) {
        assert_eq!(item["id"], id.as_str());
        let body = b64.decode(item["body"].as_str().unwrap()).unwrap();
        assert_eq!(&body, packet, "the packet byte for byte");
        assert_eq!(current(&state_of(&a, id).await, B), "fetched");
    }
    // A fetch after the page returns the same bytes and leaves no second trace.
    let again = get(&b, &format!("/v1/documents/{}", sent[0].0)).await;
    assert_eq!(again.body, sent[0].1);
    let s = state_of(&a, &sent[0].0).await;
    let history = s["recipients"][0]["history"].as_array().unwrap();
    assert_eq!(
        history.iter().filter(|h| h["state"] == "fetched").count(),
        1,
        "{history:?}"
    );
    // Without include, no bodies; C's own page holds only its item.
    let c_page = inbox(&c, "include=body").await;
    assert_eq!(c_page.len(), 1);
    assert!(c_page[0]["body"].is_string());

    // Two packets of ~6 MiB: the first page carries one body (the budget is 8 MiB) and
    // lists the other without it.
    let big: Vec<u8> = (0..4_600_000u32).map(|i| (i % 251) as u8).collect();
    let mut big_ids = Vec::new();
    for n in 0..2 {
        let r = submit(&a, hub.packet(A, &[B], &format!("IB-BIG-{n}"), &big)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.json());
        big_ids.push(r.json()["id"].as_str().unwrap().to_owned());
    }
    post_ack_all(&b, &sent).await;
    let page = inbox(&b, "include=body").await;
    assert_eq!(page.len(), 2);
    assert!(page[0]["body"].is_string());
    assert!(
        page[1].get("body").is_none(),
        "over the budget: listed without its body"
    );
    assert_eq!(current(&state_of(&a, &big_ids[1]).await, B), "leased");
    let fetched = get(&b, &format!("/v1/documents/{}", big_ids[1])).await;
    assert_eq!(fetched.status, StatusCode::OK);
    assert_eq!(current(&state_of(&a, &big_ids[1]).await, B), "fetched");
    hub.stop();
}

async fn post_ack_all(c: &Client, items: &[(String, Vec<u8>)]) {
    let ids: Vec<&str> = items.iter().map(|(id, _)| id.as_str()).collect();
    let r = c
        .request(
            http::Method::POST,
            "/v1/inbox/ack",
            bytes::Bytes::from(serde_json::json!({ "ids": ids }).to_string()),
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json());
}
