//! The authorization matrix: every API endpoint called by every kind of caller, with the
//! status and error code each must get. One table, so a change of rule shows up as one cell.
//! Calls go through curl (an independent client) so that refused handshakes are observed as
//! a client sees them.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use lienthong::client::HttpVersion;
use lienthong::pki::{Ca, PkiPaths};
use time::OffsetDateTime;

const D: &str = "000.00.04.H13";
const E: &str = "000.00.05.H13";

/// What a caller presents.
struct Who {
    name: &'static str,
    /// (cert, key), or none.
    cert: Option<(PathBuf, PathBuf)>,
}

/// The expected outcome of one call.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Want {
    Ok(u16),
    Err(u16, &'static str),
    /// The TLS handshake fails: no HTTP answer at all.
    Tls,
}

fn call(hub: &TestHub, who: &Who, method: &str, path: &str, body: Option<&PathBuf>) -> Want {
    let out_file = hub.path("authz-body.json");
    let mut c = Command::new("curl");
    c.args(["-s", "-o"])
        .arg(&out_file)
        .args(["-w", "%{http_code}", "-X", method])
        .arg("--cacert")
        .arg(hub.path("certs/ca.pem"));
    if let Some((cert, key)) = &who.cert {
        c.arg("--cert").arg(cert).arg("--key").arg(key);
    }
    if let Some(b) = body {
        c.arg("--data-binary").arg(format!("@{}", b.display()));
    }
    let _ = std::fs::remove_file(&out_file);
    let out = c.arg(format!("{}{path}", hub.url())).output().unwrap();
    let code: u16 = String::from_utf8_lossy(&out.stdout).parse().unwrap_or(0);
    if code == 0 {
        return Want::Tls;
    }
    let body = std::fs::read(&out_file).unwrap_or_default();
    let err = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_owned));
    match err {
        // Codes are 'static in the table; leak the few we compare.
        Some(e) => Want::Err(code, Box::leak(e.into_boxed_str())),
        None => Want::Ok(code),
    }
}

#[test]
fn every_endpoint_for_every_caller() {
    let directory = format!(
        "{SMALL_DIRECTORY}\n[[agency]]\nid = \"{D}\"\nname = \"D\"\n[[agency]]\nid = \"{E}\"\nname = \"E\"\n"
    );
    let mut hub = TestHub::start(&directory, "");
    let rt = tokio::runtime::Runtime::new().unwrap();
    // A sends X to B and C; B has it in its queue.
    let a = hub.client(A, HttpVersion::Auto);
    let x_body = hub.packet(A, &[B, C], "AUTHZ-1", b"");
    let r = rt.block_on(submit(&a, x_body.clone()));
    let x = r.json()["id"].as_str().unwrap().to_owned();
    let x_file = hub.path("x.edxml");
    std::fs::write(&x_file, &x_body).unwrap();
    let ids_file = hub.path("ids.json");
    std::fs::write(&ids_file, format!("{{\"ids\":[\"{x}\"]}}")).unwrap();

    // The accepted entry of X, for a proof.
    let auditor = hub.role_client("auditor");
    let page = rt
        .block_on(get(&auditor, &format!("/v1/audit?document={x}")))
        .json();
    let accepted = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "accepted")
        .unwrap()["index"]
        .as_u64()
        .unwrap();

    // Certificates: unknown CN from the client CA, a foreign CA, an expired one.
    let ca = Ca::load_dev(&PkiPaths::new(hub.path("certs"))).unwrap();
    let pair = |name: &str, (c, k): (String, String)| {
        let (cp, kp) = (
            hub.path(&format!("{name}.pem")),
            hub.path(&format!("{name}.key")),
        );
        std::fs::write(&cp, c).unwrap();
        std::fs::write(&kp, k).unwrap();
        (cp, kp)
    };
    let unknown = pair("unknown", ca.issue_client("999.99.99.H99").unwrap());
    let (foreign_ca, _, _) = Ca::generate("foreign CA").unwrap();
    let foreign = pair("foreign", foreign_ca.issue_client(A).unwrap());
    let long_ago = OffsetDateTime::now_utc() - time::Duration::days(10);
    let expired = pair("expired", ca.issue_client_valid(A, long_ago, 1).unwrap());

    // E leaves the directory.
    std::fs::write(
        &hub.agencies,
        SMALL_DIRECTORY.to_owned() + &format!("[[agency]]\nid = \"{D}\"\nname = \"D\"\n"),
    )
    .unwrap();
    hub.signal("HUP");
    let e_who = Who {
        name: "removed",
        cert: Some(hub.cert(E)),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while call(&hub, &e_who, "GET", "/v1/inbox", None) != Want::Err(403, "unknown_agency") {
        assert!(Instant::now() < deadline, "the reload did not remove E");
        std::thread::sleep(Duration::from_millis(50));
    }

    let role = |r: &str| {
        Some((
            hub.path(&format!("certs/roles/{r}.pem")),
            hub.path(&format!("certs/roles/{r}.key")),
        ))
    };
    let who = |name, cert| Who { name, cert };
    let callers = vec![
        who("sender", Some(hub.cert(A))),
        who("recipient", Some(hub.cert(B))),
        who("other_recipient", Some(hub.cert(C))),
        who("unrelated", Some(hub.cert(D))),
        who("ops", role("ops")),
        who("auditor", role("auditor")),
        who("unknown_cn", Some(unknown)),
        e_who,
        // These three never get past the TLS handshake, whatever the endpoint.
        who("no_cert", None),
        who("foreign_ca", Some(foreign)),
        who("expired", Some(expired)),
    ];

    use Want::*;
    const NA: Want = Err(403, "not_an_agency");
    const NAU: Want = Err(403, "not_an_auditor");
    const UA: Want = Err(403, "unknown_agency");
    const NF: Want = Err(404, "not_found");
    // Columns: sender, recipient, other recipient, unrelated, ops, auditor, unknown CN,
    // removed (then no cert, foreign CA, expired: always Tls).
    let proof = format!("/v1/audit/proof/{accepted}?tree_size={}", accepted + 1);
    let (doc, status, receipts, ack) = (
        format!("/v1/documents/{x}"),
        format!("/v1/documents/{x}/status"),
        format!("/v1/documents/{x}/receipts"),
        format!("/v1/inbox/{x}/ack"),
    );
    let audit = format!("/v1/audit?document={x}");
    let ok = Ok(200);
    let sm = Err(403, "sender_mismatch");
    #[rustfmt::skip]
    let rows: Vec<(&str, &str, Option<&PathBuf>, [Want; 8])> = vec![
        ("POST", "/v1/documents", Some(&x_file), [ok, sm, sm, sm, NA, NA, UA, UA]),
        ("GET", "/v1/inbox?wait=0", None, [ok, ok, ok, ok, NA, NA, UA, UA]),
        ("GET", &doc, None, [ok, ok, ok, NF, NA, NA, UA, UA]),
        ("GET", &status, None, [ok, ok, ok, NF, NA, NA, UA, UA]),
        ("GET", &receipts, None, [ok, ok, ok, NF, NA, NA, UA, UA]),
        ("GET", "/v1/sent", None, [ok, ok, ok, ok, NA, NA, UA, UA]),
        ("GET", &audit, None, [ok, ok, ok, ok, NAU, ok, UA, UA]),
        ("GET", &proof, None, [ok, ok, ok, NF, NAU, ok, UA, UA]),
        ("GET", "/v1/audit/head", None, [ok, ok, ok, ok, ok, ok, UA, UA]),
        ("GET", "/v1/audit/consistency?from=1&to=2", None, [ok, ok, ok, ok, ok, ok, UA, UA]),
        ("GET", "/v1/audit/export", None, [NAU, NAU, NAU, NAU, NAU, ok, UA, UA]),
        ("GET", "/v1/stats?window=1h", None, [ok, ok, ok, ok, ok, ok, UA, UA]),
        // Acks last: they change B's and C's queues.
        ("POST", "/v1/inbox/ack", Some(&ids_file), [ok, ok, ok, ok, NA, NA, UA, UA]),
        ("POST", &ack, None, [NF, ok, ok, NF, NA, NA, UA, UA]),
    ];
    let mut wrong = BTreeMap::new();
    for (method, path, body, wants) in &rows {
        let wants = wants.iter().chain(&[Tls, Tls, Tls]);
        for (who, want) in callers.iter().zip(wants) {
            let got = call(&hub, who, method, path, *body);
            if got != *want {
                wrong.insert(
                    format!("{method} {path} as {}", who.name),
                    format!("{got:?}, want {want:?}"),
                );
            }
        }
    }
    assert!(wrong.is_empty(), "cells that differ: {wrong:#?}");
    hub.stop();
}
