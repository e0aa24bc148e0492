//! Core-path micro-benchmarks: edXML parse, signature verification and a durable RocksDB
//! commit.
//!
//! `cargo bench --bench core`. Numbers depend on the machine and its disk; compare runs side
//! by side on one machine (see docs/performance.md once it exists).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use lienthong::edxml::{self, Attachment, NewDocument};
use lienthong::store::{Change, DocRecord, Store, dedup_key};

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

fn commit(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let body = packet(2_000, 1);
    let mut seq = 0u64;
    let mut g = c.benchmark_group("store_commit_synced");
    for recipients in [1usize, 519] {
        let agencies: Vec<String> = (0..recipients).map(|i| format!("A{i}")).collect();
        g.bench_function(
            BenchmarkId::from_parameter(format!("{recipients}_recipients")),
            |b| {
                b.iter(|| {
                    seq += 1;
                    let rec = DocRecord {
                        seq,
                        kind: edxml::Kind::Edoc,
                        from: "S".into(),
                        recipients: agencies.clone(),
                        document_id: Some(seq.to_string()),
                        subject: None,
                        status_code: None,
                        response_for: None,
                        acts_on: None,
                        replaces: vec![],
                        withdrawn: vec![],
                        business_type: 0,
                        size: body.len() as u64,
                        sha256: String::new(),
                        received_at_ms: 0,
                        has_signature: false,
                        verdict: None,
                        signer: None,
                        signer_sha256: None,
                        paper: false,
                    };
                    let key = dedup_key("S", &seq.to_string());
                    let mut changes = vec![Change::Accept {
                        record: &rec,
                        body: &body,
                        dedup_key: &key,
                    }];
                    changes.extend(agencies.iter().map(|a| Change::Enqueue { agency: a, seq }));
                    store.apply(&changes, vec![], true).unwrap();
                })
            },
        );
    }
    g.finish();
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

criterion_group!(benches, parse, verify, commit, observe);
criterion_main!(benches);
