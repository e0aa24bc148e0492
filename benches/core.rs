//! Core-path micro-benchmarks: edXML parse, signature verification, durable RocksDB commits
//! (one packet, 64 grouped, a fan-out to 519) and the statistics of an accept.
//!
//! `cargo bench --bench core`. Numbers depend on the machine and its disk; compare runs side
//! by side on one machine (docs/performance.md has this machine's).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use lienthong::edxml::{self, Attachment, NewDocument};
use lienthong::hub::events::for_changes;
use lienthong::store::{Change, DocRecord, Store, dedup_key};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64};
use std::sync::{Arc, Barrier};
use std::time::Instant;

fn packet(attachment: usize, recipients: usize) -> Vec<u8> {
    let doc = NewDocument {
        from: "000.00.01.H13".into(),
        from_name: "Sở A".into(),
        to: (0..recipients)
            .map(|i| (format!("000.{:02}.{:02}.H13", i / 100, i % 100), "B".into()))
            .collect(),
        document_id: "000.00.01.H13,2026/11/28,1/VP".into(),
        code_number: "1".into(),
        code_notation: "VP".into(),
        subject: "Về việc đo hiệu năng".into(),
        date: "2026/11/28".into(),
        attachments: vec![Attachment {
            name: "a.pdf".into(),
            content_type: "application/pdf".into(),
            data: (0..attachment).map(|i| (i * 31 % 251) as u8).collect(),
        }],
    };
    edxml::compose_document(&doc).into_bytes()
}

fn parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("edxml_parse");
    for (label, size) in [("4KiB", 2_000), ("1MiB", 760_000)] {
        let body = packet(size, 3);
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(label), &body, |b, body| {
            b.iter(|| edxml::parse(body).unwrap())
        });
    }
    g.finish();
}

/// A document record as `Hub::submit` builds it (the fields the store writes).
fn record(seq: u64, recipients: &[String], body: &[u8]) -> DocRecord {
    DocRecord {
        seq,
        kind: edxml::Kind::Edoc,
        from: "000.00.01.H13".into(),
        recipients: recipients.to_vec(),
        document_id: Some(format!("000.00.01.H13,2026/11/28,{seq}/VP")),
        subject: Some("Về việc đo hiệu năng".into()),
        status_code: None,
        response_for: None,
        acts_on: None,
        replaces: vec![],
        withdrawn: vec![],
        business_type: 0,
        size: body.len() as u64,
        sha256: "0".repeat(64),
        received_at_ms: 1_764_000_000_000,
        has_signature: true,
        verdict: Some("verified".into()),
        signer: Some("000.00.01.H13".into()),
        signer_sha256: Some("0".repeat(64)),
        paper: false,
        pdf: vec![],
        route: vec![],
    }
}

/// Stores one accepted packet exactly as `Hub::submit` does: record, body, dedup key, one
/// queue entry per recipient, and the `accepted` + `enqueued` audit entries in the same
/// batch, synced.
fn commit_packet(store: &Store, seq: u64, recipients: &[String], body: &[u8]) {
    let rec = record(seq, recipients, body);
    let key = dedup_key(&rec.from, rec.document_id.as_deref().unwrap_or_default());
    let mut changes = vec![Change::Accept {
        record: &rec,
        body,
        dedup_key: &key,
    }];
    changes.extend(recipients.iter().map(|a| Change::Enqueue {
        agency: a,
        seq,
        accepted_ms: rec.received_at_ms,
    }));
    let events = for_changes(&changes, rec.received_at_ms);
    store.apply(&changes, events, true).unwrap();
}

/// Durable commits through the store's single writer: one packet alone (one WAL sync), 64
/// packets handed over at once by 64 threads (group commit: they share syncs, as 64 clients'
/// submissions do in the daemon), and one packet fanned out to 519 recipients.
fn commit(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let body = Arc::new(packet(2_000, 1));
    let seq = Arc::new(AtomicU64::new(1));
    let one = vec!["000.00.02.H13".to_owned()];
    let mut g = c.benchmark_group("store_commit_synced");
    g.throughput(Throughput::Elements(1));
    g.bench_function("1_packet", |b| {
        b.iter(|| commit_packet(&store, seq.fetch_add(1, Relaxed), &one, &body))
    });

    // 64 committers that wait for a start signal, so thread creation is not measured:
    // each round every one of them hands over one packet at once.
    let committers = Committers::start(&store, &body, &seq, true);
    g.throughput(Throughput::Elements(COMMITTERS as u64));
    g.bench_function("64_packets_grouped", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                committers.round(COMMITTERS as u64);
            }
            start.elapsed()
        })
    });
    committers.stop();
    // The same 64 committing back to back (each takes the next commit as soon as its last
    // one is durable), `64 × iters` commits in all: the storage path's steady rate, what
    // the single writer and the WAL syncs can take.
    let committers = Committers::start(&store, &body, &seq, false);
    g.bench_function("64_committers_streaming", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            committers.round(iters * COMMITTERS as u64);
            start.elapsed()
        })
    });
    committers.stop();
    g.finish();

    let all: Vec<String> = (0..519)
        .map(|i| format!("000.{:02}.{:02}.H13", i / 100, i % 100))
        .collect();
    let mut g = c.benchmark_group("fanout_enqueue");
    g.throughput(Throughput::Elements(all.len() as u64));
    g.bench_function("519_recipients", |b| {
        b.iter(|| commit_packet(&store, seq.fetch_add(1, Relaxed), &all, &body))
    });
    g.finish();
}

const COMMITTERS: usize = 64;

/// `COMMITTERS` threads, each committing packets to its own recipient: a round hands them
/// `commits` to share (at most one each if `once`) and ends when all are durable.
struct Committers {
    left: Arc<AtomicI64>,
    go: Arc<Barrier>,
    done: Arc<Barrier>,
    stop: Arc<AtomicBool>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl Committers {
    fn start(store: &Arc<Store>, body: &Arc<Vec<u8>>, seq: &Arc<AtomicU64>, once: bool) -> Self {
        let left = Arc::new(AtomicI64::new(0));
        let go = Arc::new(Barrier::new(COMMITTERS + 1));
        let done = Arc::new(Barrier::new(COMMITTERS + 1));
        let stop = Arc::new(AtomicBool::new(false));
        let workers = (0..COMMITTERS)
            .map(|i| {
                let (store, body, seq) = (store.clone(), body.clone(), seq.clone());
                let (left, go, done, stop) = (left.clone(), go.clone(), done.clone(), stop.clone());
                let to = vec![format!("000.00.{:02}.H13", 10 + i)];
                std::thread::spawn(move || {
                    loop {
                        go.wait();
                        if stop.load(Relaxed) {
                            return;
                        }
                        while left.fetch_sub(1, Relaxed) > 0 {
                            commit_packet(&store, seq.fetch_add(1, Relaxed), &to, &body);
                            if once {
                                break;
                            }
                        }
                        done.wait();
                    }
                })
            })
            .collect();
        Committers {
            left,
            go,
            done,
            stop,
            workers,
        }
    }

    fn round(&self, commits: u64) {
        self.left.store(commits as i64, Relaxed);
        self.go.wait();
        self.done.wait();
    }

    fn stop(self) {
        self.stop.store(true, Relaxed);
        self.go.wait();
        for w in self.workers {
            w.join().unwrap();
        }
    }
}

/// What statistics and metrics add per accepted packet: the same calls `Hub::observe` makes
/// (persisted counters with `add_each`, Prometheus counters through registered handles), with
/// the Prometheus recorder installed as in the daemon.
fn observe(c: &mut Criterion) {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let _ = metrics::set_global_recorder(recorder);
    let counters = lienthong::stats::Counters::default();
    let mut g = c.benchmark_group("observe_accept");
    for recipients in [1usize, 519] {
        let agencies: Vec<String> = (0..recipients)
            .map(|i| format!("000.{:02}.{:02}.H13", i / 100, i % 100))
            .collect();
        let handles: std::collections::HashMap<String, metrics::Counter> = agencies
            .iter()
            .map(|a| {
                (
                    a.clone(),
                    metrics::counter!("lienthong_agency_received_total", "agency" => a.clone()),
                )
            })
            .collect();
        let handles = std::sync::Mutex::new(handles);
        let sent = metrics::counter!("lienthong_agency_sent_total", "agency" => "000.00.01.H13");
        g.bench_function(
            BenchmarkId::from_parameter(format!("{recipients}_recipients")),
            |b| {
                let mut now = 1_800_000_000_000u64;
                b.iter(|| {
                    now += 1;
                    counters.add(now, "accepted", "000.00.01.H13", 1);
                    counters.add(now, "bytes_in", "000.00.01.H13", 4096);
                    counters.add(now, "electronic", "000.00.01.H13", 1);
                    metrics::counter!("lienthong_packets_accepted_total", "kind" => "edoc")
                        .increment(1);
                    sent.increment(1);
                    counters.add_each(now, "received", agencies.iter().map(String::as_str), 1);
                    let h = handles.lock().unwrap();
                    for a in &agencies {
                        h[a].increment(1);
                    }
                    if now % 4096 == 0 {
                        counters.drain();
                    }
                })
            },
        );
    }
    g.finish();
}

/// Signature verification as the hub does it per submission (digest of the canonical packet,
/// signature over SignedInfo, cached chain verdict), for RSA-2048 and P-256 signers; and once
/// with the chain cache off, to show what building the chain costs.
fn verify(c: &mut Criterion) {
    use lienthong::pki::{Ca, SigningKey};
    let (ca, ca_pem, _) = Ca::generate("bench CA").unwrap();
    let trust_dir = tempfile::tempdir().unwrap();
    std::fs::write(trust_dir.path().join("ca.pem"), ca_pem).unwrap();
    let ttl = std::time::Duration::from_secs(300);
    let trust = lienthong::dsig::TrustStore::load(trust_dir.path(), &[], ttl).unwrap();
    let no_cache =
        lienthong::dsig::TrustStore::load(trust_dir.path(), &[], std::time::Duration::ZERO)
            .unwrap();
    let not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    let now = std::time::SystemTime::now();
    let mut g = c.benchmark_group("signature_verify");
    g.throughput(Throughput::Elements(1));
    for (key_label, key) in [
        ("rsa2048", SigningKey::Rsa2048),
        ("p256", SigningKey::EcdsaP256),
    ] {
        let (cert, key) = ca
            .issue_signing("000.00.01.H13", key, not_before, 30)
            .unwrap();
        let signer = lienthong::dsig::Signer::from_pem(cert.as_bytes(), key.as_bytes()).unwrap();
        for (label, size) in [("4KiB", 2_000), ("1MiB", 760_000)] {
            let body = signer.sign(&packet(size, 3)).unwrap();
            lienthong::dsig::verify(&body, &trust, now).unwrap();
            g.bench_with_input(
                BenchmarkId::from_parameter(format!("{label}_{key_label}")),
                &body,
                |b, body| b.iter(|| lienthong::dsig::verify(body, &trust, now).unwrap()),
            );
            if size == 2_000 {
                g.bench_with_input(
                    BenchmarkId::from_parameter(format!("{label}_{key_label}_chain_uncached")),
                    &body,
                    |b, body| b.iter(|| lienthong::dsig::verify(body, &no_cache, now).unwrap()),
                );
            }
        }
    }
    g.finish();
}

/// The worst cases of docs/security.md: what a refusal costs, and the most a packet within the
/// limits can cost to read and canonicalize (16 namespace declarations in scope at each of
/// 250,000 elements, 2 MB).
fn hostile(c: &mut Criterion) {
    use lienthong::dsig::c14n::{self, C14n, Subset};
    let mut g = c.benchmark_group("hostile");
    g.sample_size(10);
    let with = |decls: usize, elements: usize| {
        let d: String = (0..decls)
            .map(|i| format!(" xmlns:n{i}=\"urn:n{i}\""))
            .collect();
        let body = String::from_utf8(packet(100, 1)).unwrap();
        let body = body.replacen("<edXML:edXML ", &format!("<edXML:edXML{d} "), 1);
        body.replacen(
            "</edXML:edXMLBody>",
            &format!("{}</edXML:edXMLBody>", "<e/>".repeat(elements)),
            1,
        )
        .into_bytes()
    };
    let refused = with(60_000, 250_000);
    g.throughput(Throughput::Bytes(refused.len() as u64));
    g.bench_function("refuse_60k_decls_250k_elements", |b| {
        b.iter(|| edxml::parse(&refused).unwrap_err())
    });
    let within = with(15, 250_000);
    g.throughput(Throughput::Bytes(within.len() as u64));
    g.bench_function("parse_15_decls_250k_elements", |b| {
        b.iter(|| edxml::parse(&within).unwrap())
    });
    let inclusive = C14n::from_uri(C14n::INCLUSIVE, None).unwrap();
    g.bench_function("c14n_inclusive_15_decls_250k_elements", |b| {
        b.iter(|| {
            let mut n = 0usize;
            c14n::canonicalize(
                &within,
                Subset::Document { exclude: None },
                &inclusive,
                &mut |x| n += x.len(),
            )
            .unwrap();
            n
        })
    });
    g.finish();
}

criterion_group!(benches, parse, verify, commit, observe, hostile);
criterion_main!(benches);
