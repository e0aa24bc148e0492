//! Races on queue entries, checked against the audit log: concurrent listing, fetching,
//! single and batch acks, 1-second leases and a 4-second expiry for
//! `LIENTHONG_RACE_SECS` (60 by default). Invariants:
//! - no item is listed by a listing that began after an ack of it answered `removed:true`;
//! - at most one `removed:true` per (document, recipient), and exactly one `delivered` log
//!   entry for each of them;
//! - no (document, recipient) is both `delivered` and `expired`.
//!
//! And the submit races: N identical packets at once give one 201 (the rest 200, same id),
//! one queue entry and one `accepted` entry; the same DocumentId with different bodies at
//! once gives one 201 and 409 for every other body.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::{Method, StatusCode};
use lienthong::client::{Client, HttpVersion};

/// (document id, agency) → when the ack that removed it answered.
type Acked = Arc<Mutex<HashMap<(String, String), Instant>>>;

#[derive(Default)]
struct Tally {
    listed_after_ack: Vec<String>,
    removed_twice: Vec<String>,
    removed: u64,
    listings: u64,
    fetches: u64,
    errors: Vec<String>,
}

fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

fn note_removed(acked: &Acked, tally: &Mutex<Tally>, id: &str, agency: &str) {
    let mut t = tally.lock().unwrap();
    t.removed += 1;
    let key = (id.to_owned(), agency.to_owned());
    if acked.lock().unwrap().insert(key, Instant::now()).is_some() {
        t.removed_twice.push(format!("{agency} {id}"));
    }
}

async fn ack_one(c: &Client, id: &str, agency: &str, acked: &Acked, tally: &Mutex<Tally>) {
    match c
        .request(Method::POST, &format!("/v1/inbox/{id}/ack"), Bytes::new())
        .await
    {
        Ok(r) if r.status == StatusCode::OK => {
            if r.json()["removed"] == true {
                note_removed(acked, tally, id, agency);
            }
        }
        Ok(r) => {
            tally
                .lock()
                .unwrap()
                .errors
                .push(format!("ack {id}: {} {}", r.status, error_code(&r)))
        }
        Err(e) => tally.lock().unwrap().errors.push(format!("ack {id}: {e}")),
    }
}

async fn ack_batch(c: &Client, ids: &[String], agency: &str, acked: &Acked, tally: &Mutex<Tally>) {
    let body = serde_json::json!({ "ids": ids }).to_string();
    match c
        .request(Method::POST, "/v1/inbox/ack", Bytes::from(body))
        .await
    {
        Ok(r) if r.status == StatusCode::OK => {
            for (i, res) in r.json()["results"].as_array().unwrap().iter().enumerate() {
                if res["removed"] == true {
                    note_removed(acked, tally, &ids[i], agency);
                }
            }
        }
        Ok(r) => {
            tally
                .lock()
                .unwrap()
                .errors
                .push(format!("batch ack: {} {}", r.status, error_code(&r)))
        }
        Err(e) => tally.lock().unwrap().errors.push(format!("batch ack: {e}")),
    }
}

/// One recipient's worker: lists, then per item fetches it sometimes, acks it alone (often
/// twice at once), keeps it for a batch ack, or leaves it to be leased again or to expire.
async fn consumer(
    c: Arc<Client>,
    agency: &'static str,
    seed: u64,
    until: Instant,
    acked: Acked,
    tally: Arc<Mutex<Tally>>,
) {
    let mut x = seed;
    let mut batch: Vec<String> = Vec::new();
    while Instant::now() < until {
        let started = Instant::now();
        let r = c
            .request(Method::GET, "/v1/inbox?limit=10", Bytes::new())
            .await;
        let items = match r {
            Ok(r) if r.status == StatusCode::OK => r.json()["items"].as_array().cloned().unwrap(),
            Ok(r) => {
                let msg = format!("list: {} {}", r.status, error_code(&r));
                tally.lock().unwrap().errors.push(msg);
                continue;
            }
            Err(e) => {
                tally.lock().unwrap().errors.push(format!("list: {e}"));
                continue;
            }
        };
        {
            let mut t = tally.lock().unwrap();
            t.listings += 1;
            let a = acked.lock().unwrap();
            for it in &items {
                let id = it["id"].as_str().unwrap().to_owned();
                if let Some(at) = a.get(&(id.clone(), agency.to_owned())) {
                    if *at < started {
                        t.listed_after_ack.push(format!("{agency} {id}"));
                    }
                }
            }
        }
        for it in items {
            let id = it["id"].as_str().unwrap().to_owned();
            if xorshift(&mut x) % 3 == 0 {
                let _ = get(&c, &format!("/v1/documents/{id}")).await;
                tally.lock().unwrap().fetches += 1;
            }
            match xorshift(&mut x) % 10 {
                0..=2 => ack_one(&c, &id, agency, &acked, &tally).await,
                3..=4 => {
                    // Two acks of the same item at once: one removes it.
                    let (c1, c2) = (c.clone(), c.clone());
                    let (i1, i2) = (id.clone(), id.clone());
                    let (a1, a2) = (acked.clone(), acked.clone());
                    let (t1, t2) = (tally.clone(), tally.clone());
                    let h1 = tokio::spawn(async move { ack_one(&c1, &i1, agency, &a1, &t1).await });
                    let h2 = tokio::spawn(async move { ack_one(&c2, &i2, agency, &a2, &t2).await });
                    let _ = tokio::join!(h1, h2);
                }
                5..=7 => batch.push(id),
                _ => {} // leased again after 1 s, or expires
            }
        }
        if batch.len() >= 8 || (!batch.is_empty() && xorshift(&mut x) % 4 == 0) {
            // Sometimes an id twice in one batch, and ids other workers may ack meanwhile.
            if let Some(first) = batch.first().cloned() {
                if xorshift(&mut x) % 5 == 0 {
                    batch.push(first);
                }
            }
            let ids = std::mem::take(&mut batch);
            ack_batch(&c, &ids, agency, &acked, &tally).await;
        }
        tokio::time::sleep(Duration::from_millis(xorshift(&mut x) % 30)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acked_items_never_come_back_under_concurrent_listing_acking_and_expiry() {
    let secs: u64 = std::env::var("LIENTHONG_RACE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let hub = TestHub::start(
        SMALL_DIRECTORY,
        "[queue]\nlease_secs = 1\nexpiry_secs = 4\nupkeep_secs = 1\n",
    );
    let hub = Arc::new(hub);
    let until = Instant::now() + Duration::from_secs(secs);
    let acked: Acked = Arc::default();
    let tally: Arc<Mutex<Tally>> = Arc::default();

    // The sender: a steady stream to B and C (packets signed up front, off the clock).
    let sender = {
        let hub = hub.clone();
        let tally = tally.clone();
        tokio::spawn(async move {
            let a = hub.client(A, HttpVersion::Http2);
            let mut n = 0u64;
            while Instant::now() < until {
                let body = hub.packet(A, &[B, C], &format!("{A},2026/11/30,{n}/RACE"), b"");
                let r = submit(&a, body).await;
                if r.status != StatusCode::CREATED {
                    let msg = format!("submit: {} {}", r.status, error_code(&r));
                    tally.lock().unwrap().errors.push(msg);
                }
                n += 1;
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
            n
        })
    };
    let mut workers = Vec::new();
    for (i, agency) in [B, B, B, C, C, C].into_iter().enumerate() {
        let version = if i % 2 == 0 {
            HttpVersion::Http2
        } else {
            HttpVersion::Http1
        };
        let c = Arc::new(hub.client(agency, version));
        workers.push(tokio::spawn(consumer(
            c,
            agency,
            0x9e37_79b9_7f4a_7c15 ^ (i as u64 + 1),
            until,
            acked.clone(),
            tally.clone(),
        )));
    }
    let submitted = sender.await.unwrap();
    for w in workers {
        w.await.unwrap();
    }

    // Every item has either been acked, is still queued, or expired: let expiry finish
    // what is left, then read the whole log.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let auditor = hub.role_client("auditor");
    let export = get(&auditor, "/v1/audit/export").await;
    assert_eq!(export.status, StatusCode::OK);
    let mut delivered: HashMap<(String, String), u32> = HashMap::new();
    let mut expired: HashSet<(String, String)> = HashSet::new();
    for line in std::str::from_utf8(&export.body).unwrap().lines() {
        let e: serde_json::Value = serde_json::from_str(line).unwrap();
        let key = || {
            (
                e["document"].as_str().unwrap_or("").to_owned(),
                e["agency"].as_str().unwrap_or("").to_owned(),
            )
        };
        match e["event"].as_str().unwrap() {
            "delivered" => *delivered.entry(key()).or_default() += 1,
            "expired" => {
                expired.insert(key());
            }
            _ => {}
        }
    }
    let t = tally.lock().unwrap();
    let acked = acked.lock().unwrap();
    eprintln!(
        "{secs} s: {submitted} submitted, {} listings, {} fetches, {} removed by acks, \
         {} delivered entries, {} expired",
        t.listings,
        t.fetches,
        t.removed,
        delivered.len(),
        expired.len()
    );
    assert!(
        t.errors.is_empty(),
        "errors: {:?}",
        &t.errors[..t.errors.len().min(20)]
    );
    assert!(
        t.listed_after_ack.is_empty(),
        "listed after ack: {:?}",
        t.listed_after_ack
    );
    assert!(
        t.removed_twice.is_empty(),
        "removed twice: {:?}",
        t.removed_twice
    );
    let twice: Vec<_> = delivered.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "more than one delivered entry: {twice:?}");
    for key in acked.keys() {
        assert_eq!(
            delivered.get(key),
            Some(&1),
            "{key:?} was removed by an ack but has no delivered entry"
        );
    }
    let both: Vec<_> = expired
        .iter()
        .filter(|k| delivered.contains_key(k))
        .collect();
    assert!(both.is_empty(), "delivered and expired: {both:?}");
    assert!(t.removed > 100, "the race ran too little to prove anything");
    assert!(
        !expired.is_empty(),
        "nothing expired: the expiry race did not run"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn identical_submits_at_once_make_one_document() {
    let hub = TestHub::start(SMALL_DIRECTORY, "");
    let body = hub.packet(A, &[B], &format!("{A},2026/11/30,1/SAME"), b"");
    let c = Arc::new(hub.client(A, HttpVersion::Http2));
    let replies = futures_join(16, |_| {
        let (c, body) = (c.clone(), body.clone());
        async move { submit(&c, body).await }
    })
    .await;
    let created = replies
        .iter()
        .filter(|r| r.status == StatusCode::CREATED)
        .count();
    assert_eq!(created, 1, "exactly one 201");
    let ids: HashSet<String> = replies
        .iter()
        .map(|r| {
            assert!(r.status.is_success(), "{} {}", r.status, error_code(r));
            r.json()["id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 1, "one id for all: {ids:?}");
    let b = hub.client(B, HttpVersion::Auto);
    assert_eq!(inbox(&b, "").await.len(), 1, "one queue entry");
    let auditor = hub.role_client("auditor");
    let export = get(&auditor, "/v1/audit/export").await;
    let accepted = std::str::from_utf8(&export.body)
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"event\":\"accepted\""))
        .count();
    assert_eq!(accepted, 1, "one accepted entry");

    // The same DocumentId, different bodies, all at once: one wins, every other body is 409.
    let doc_id = format!("{A},2026/11/30,2/RACE");
    let bodies: Vec<Vec<u8>> = (0..12u8)
        .map(|i| hub.packet(A, &[B], &doc_id, &[b'x', i]))
        .collect();
    let replies = futures_join(12, |i| {
        let (c, body) = (c.clone(), bodies[i].clone());
        async move { submit(&c, body).await }
    })
    .await;
    let codes: Vec<u16> = replies.iter().map(|r| r.status.as_u16()).collect();
    assert_eq!(codes.iter().filter(|s| **s == 201).count(), 1, "{codes:?}");
    assert_eq!(codes.iter().filter(|s| **s == 409).count(), 11, "{codes:?}");
}

/// Runs `n` futures made by `f` concurrently (as tasks) and returns their outputs in order.
async fn futures_join<F, Fut, T>(n: usize, f: F) -> Vec<T>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = (0..n).map(|i| tokio::spawn(f(i))).collect();
    let mut out = Vec::with_capacity(n);
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}
