//! What the load tool's clients do: make packets, fill inboxes for pull mode, and the
//! per-client loop (submit, fan out, or list–fetch–ack pages) that records latencies.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use http::{Method, StatusCode};

use super::{LoadSpec, Mode, Shared};
use crate::client::Client;
use crate::dsig::Signer;
use crate::edxml::{self, Attachment, NewDocument};

/// One client: its agency, the agency it sends to, its connection.
pub(super) type Conn = (String, String, Arc<Client>);

pub(super) fn sign(signer: Option<&Signer>, packet: Vec<u8>) -> Result<Vec<u8>, String> {
    match signer {
        Some(s) => s.sign(&packet).map_err(|e| e.to_string()),
        None => Ok(packet),
    }
}

/// A packet from `from` to `to` whose attachment holds `data` bytes (before base64).
pub(super) fn packet(from: &str, to: &[String], n: u64, data: usize) -> Vec<u8> {
    let doc = NewDocument {
        from: from.into(),
        from_name: from.into(),
        to: to.iter().map(|t| (t.clone(), t.clone())).collect(),
        document_id: format!("{from},bench,{n}-{}", uuid::Uuid::now_v7().simple()),
        code_number: "1".into(),
        code_notation: "BENCH".into(),
        subject: "lienthong bench".into(),
        date: "2026/11/28".into(),
        attachments: vec![Attachment {
            name: "payload.bin".into(),
            content_type: "application/octet-stream".into(),
            data: vec![0x5a; data],
        }],
    };
    edxml::compose_document(&doc).into_bytes()
}

/// The attachment size that makes a (signed) packet from `from` to `to` about `size` bytes
/// on the wire: the envelope — header, recipients, signature and certificate — is measured
/// on a probe packet, and base64 grows the rest by 4/3.
pub(super) fn data_for(size: usize, from: &str, to: &[String], signer: Option<&Signer>) -> usize {
    let envelope = sign(signer, packet(from, to, 0, 0)).map_or(1200, |p| p.len());
    size.saturating_sub(envelope) * 3 / 4
}

/// Pull mode: queues work for every client first (not measured). Each client sends packets
/// addressed to all the other clients' agencies (a fan-out), so filling takes a fraction of
/// the submissions one packet per item would.
pub(super) async fn fill_inboxes(
    conns: &[Conn],
    signers: &[Option<Arc<Signer>>],
    ids: &[String],
    spec: &LoadSpec,
) -> Result<(), String> {
    // Clients take agencies in turn: the first `ids.len()` of them are all distinct.
    let mut pullers: Vec<String> = conns.iter().map(|(id, _, _)| id.clone()).collect();
    pullers.truncate(ids.len());
    let others = pullers.len().saturating_sub(1).max(1) as u64;
    let per_sender = spec.items.div_ceil(others);
    let mut fill = Vec::new();
    for (i, (me, _, c)) in conns.iter().enumerate() {
        if i >= pullers.len() {
            break; // several clients of one agency: one of them fills for it
        }
        let to: Vec<String> = if pullers.len() == 1 {
            pullers.clone()
        } else {
            pullers.iter().filter(|p| *p != me).cloned().collect()
        };
        let (me, c, signer, size) = (me.clone(), c.clone(), signers[i].clone(), spec.size);
        fill.push(tokio::spawn(async move {
            let data = data_for(size, &me, &to, signer.as_deref());
            for n in 0..per_sender {
                let body = sign(signer.as_deref(), packet(&me, &to, n, data))?;
                c.call(Method::POST, "/v1/documents", Bytes::from(body))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Ok::<_, String>(())
        }));
    }
    for f in fill {
        f.await.map_err(|e| e.to_string())??;
    }
    Ok(())
}

/// What client `k` sends: to whom, its packets' attachment size (0 in pull mode, which
/// submits nothing while measured), and its packets signed before the clock started.
pub(super) struct Sending {
    signer: Option<Arc<Signer>>,
    to: Vec<String>,
    data: usize,
    ready: Vec<Vec<u8>>,
}

/// The first packet number of client `k` (numbers make DocumentIds unique).
fn first_number(k: usize) -> u64 {
    k as u64 * 1_000_000_000
}

/// Prepares client `k`'s sending before the clock starts: its recipients, the attachment
/// size (a probe packet is signed to measure the envelope) and, with `--presign`, its first
/// `spec.presign` packets signed, so that a run on a machine shared with the hub measures
/// the hub, not the clients' signing (a packet past these is signed during the run).
pub(super) fn prepare(
    k: usize,
    (me, next, _): &Conn,
    signer: Option<Arc<Signer>>,
    all: Vec<String>,
    spec: &LoadSpec,
) -> Result<Sending, String> {
    let to = if spec.mode == Mode::Fanout {
        all
    } else {
        vec![next.clone()]
    };
    if spec.mode == Mode::Pull {
        return Ok(Sending {
            signer,
            to,
            data: 0,
            ready: Vec::new(),
        });
    }
    let data = data_for(spec.size, me, &to, signer.as_deref());
    let n0 = first_number(k);
    let ready = (1..=spec.presign)
        .map(|i| sign(signer.as_deref(), packet(me, &to, n0 + i, data)))
        .collect::<Result<_, _>>()?;
    Ok(Sending {
        signer,
        to,
        data,
        ready,
    })
}

/// One client's loop until `shared.stop`: returns its latencies (µs).
pub(super) async fn client(
    k: usize,
    (me, _, c): Conn,
    sending: Sending,
    spec: LoadSpec,
    shared: Arc<Shared>,
) -> Vec<u32> {
    let Sending {
        signer,
        to,
        data,
        ready,
    } = sending;
    let mut lat: Vec<u32> = Vec::new();
    let mut n = first_number(k) + ready.len() as u64;
    let mut ready = ready.into_iter();
    while !shared.stop.load(Ordering::Relaxed) {
        match spec.mode {
            Mode::Submit | Mode::Fanout | Mode::Push | Mode::Forward => {
                // Signing is client work, as at a real agency: it runs on the
                // same cores as the hub here, so it lowers the measured rate.
                let made = ready.next().map(Ok).unwrap_or_else(|| {
                    n += 1;
                    sign(signer.as_deref(), packet(&me, &to, n, data))
                });
                let body = match made {
                    Ok(b) => b,
                    Err(e) => {
                        shared.fail(e.to_string());
                        break;
                    }
                };
                let len = body.len() as u64;
                let t = Instant::now();
                match c
                    .request(Method::POST, "/v1/documents", Bytes::from(body))
                    .await
                {
                    Ok(r) if r.status == StatusCode::CREATED => {
                        lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                        if let (Some(times), Some(id)) = (&shared.pushes, r.json()["id"].as_str()) {
                            times.accepted(id.to_owned());
                        }
                        shared.ok.fetch_add(1, Ordering::Relaxed);
                        shared.bytes.fetch_add(len, Ordering::Relaxed);
                    }
                    Ok(r) => {
                        shared.fail(format!("{} {}", r.status, String::from_utf8_lossy(&r.body)))
                    }
                    Err(e) => shared.fail(e.to_string()),
                }
                continue;
            }
            Mode::Pull => {}
        }
        if !pull_page(&c, &shared, &mut lat, spec.fetch_each).await {
            break; // this client's inbox is drained
        }
    }
    lat
}

/// Pull mode, one page, as an agency's software would: list the page with its bodies
/// (`include=body`), or list and then fetch each body (`fetch_each`, concurrently over
/// HTTP/2), and acknowledge the page in one request. An item's latency runs from the
/// request that brought its body to the batch ack. False once the inbox is drained.
async fn pull_page(c: &Arc<Client>, shared: &Shared, lat: &mut Vec<u32>, fetch_each: bool) -> bool {
    let t0 = Instant::now();
    let path = if fetch_each {
        "/v1/inbox?limit=50"
    } else {
        "/v1/inbox?limit=50&include=body"
    };
    let listed = match c.call(Method::GET, path, Bytes::new()).await {
        Ok(r) => r.json()["items"].as_array().cloned().unwrap_or_default(),
        Err(e) => {
            shared.fail(e.to_string());
            return true;
        }
    };
    if listed.is_empty() {
        return false;
    }
    let mut fetches = tokio::task::JoinSet::new();
    let mut fetched_ids = Vec::new();
    let mut starts = Vec::new();
    let mut bytes = 0u64;
    for item in listed {
        let id = item["id"].as_str().unwrap_or_default().to_owned();
        if let Some(b64) = item["body"].as_str().filter(|_| !fetch_each) {
            // Decoded as a client must (its cost belongs to the client's side).
            use base64::Engine as _;
            match base64::engine::general_purpose::STANDARD.decode(b64) {
                Ok(body) => bytes += body.len() as u64,
                Err(e) => {
                    shared.fail(format!("item {id}: body is not base64: {e}"));
                    continue;
                }
            }
            fetched_ids.push(id);
            starts.push(t0);
            continue;
        }
        let c = c.clone();
        fetches.spawn(async move {
            let t0 = Instant::now();
            let r = c
                .call(Method::GET, &format!("/v1/documents/{id}"), Bytes::new())
                .await;
            (id, t0, r)
        });
    }
    while let Some(done) = fetches.join_next().await {
        match done {
            Ok((id, t0, Ok(f))) => {
                bytes += f.body.len() as u64;
                fetched_ids.push(id);
                starts.push(t0);
            }
            Ok((_, _, Err(e))) => shared.fail(e.to_string()),
            Err(e) => shared.fail(e.to_string()),
        }
    }
    let body = serde_json::json!({ "ids": fetched_ids }).to_string();
    match c
        .call(Method::POST, "/v1/inbox/ack", Bytes::from(body))
        .await
    {
        Ok(_) => {
            for t0 in &starts[..fetched_ids.len()] {
                lat.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
            }
            shared
                .ok
                .fetch_add(fetched_ids.len() as u64, Ordering::Relaxed);
            shared.bytes.fetch_add(bytes, Ordering::Relaxed);
        }
        Err(e) => shared.fail(e.to_string()),
    }
    true
}
