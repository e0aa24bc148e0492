//! `lienthong bench`: a load generator of many agency clients, each with its own certificate.
//!
//! It drives a hub it starts itself (the same binary, temp data dir, port 0) or one given by
//! URL, and reports throughput, latency percentiles and the hub's CPU and peak RSS. It is a
//! measuring tool, not a test: it never decides pass or fail.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use serde::Serialize;

use crate::client::{Client, HttpVersion};
use crate::dsig::Signer;
use crate::edxml::{self, Attachment, NewDocument};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Each client submits packets to the next agency.
    Submit,
    /// Packets are queued first; then each client pulls and acks its inbox.
    Pull,
    /// Each client submits packets addressed to every agency.
    Fanout,
}

#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub mode: Mode,
    pub clients: usize,
    pub size: usize,
    pub duration: Duration,
    pub version: HttpVersion,
    /// Hub URL and the certificate directory (`ca.pem`, `agencies/<id>.pem|.key`); `None`
    /// starts a hub.
    pub hub: Option<(String, PathBuf)>,
    /// The hub's pid, for CPU and RSS, when it was not started here.
    pub hub_pid: Option<u32>,
    pub progress: bool,
    /// Send unsigned packets, to measure the hub without signature work (the hub must run
    /// `[signature] policy = "record"`; a hub started here does).
    pub unsigned: bool,
    /// Pull mode: items queued for each client before the run.
    pub items: u64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub mode: Mode,
    pub clients: usize,
    pub size_bytes: usize,
    pub http: &'static str,
    pub duration_secs: f64,
    pub ok: u64,
    pub errors: u64,
    pub packets_per_sec: f64,
    pub mb_per_sec: f64,
    /// Average bytes per packet moved (submitted, or fetched in pull mode).
    pub avg_packet_bytes: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub hub_cpu_percent: Option<f64>,
    pub hub_peak_rss_mb: Option<f64>,
    /// CPU the load tool itself used (% of one core): on a machine it shares with the hub,
    /// what the hub could not have.
    pub tool_cpu_percent: Option<f64>,
    /// The first failure seen, to tell what the errors were.
    pub first_error: Option<String>,
}

/// A hub started for the run; killed on drop.
struct OwnHub {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for OwnHub {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

fn start_hub(record_only: bool) -> Result<(OwnHub, String, PathBuf), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let certs = dir.path().join("certs");
    let config = dir.path().join("bench.toml");
    let policy = if record_only { "record" } else { "require" };
    std::fs::write(&config, format!("[signature]\npolicy = \"{policy}\"\n"))
        .map_err(|e| e.to_string())?;
    let child = Command::new(exe)
        .current_dir(dir.path())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--ops-listen",
            "127.0.0.1:0",
            "--config",
        ])
        .arg(&config)
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start the hub: {e}"))?;
    let mut hub = OwnHub { child, _dir: dir };
    let bound = hub._dir.path().join("data/bound.json");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(text) = std::fs::read_to_string(&bound) {
            let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
            let url = format!("https://{}", v["https"].as_str().unwrap_or_default());
            return Ok((hub, url, certs));
        }
        if let Ok(Some(status)) = hub.child.try_wait() {
            return Err(format!("the hub exited during start-up: {status}"));
        }
        if Instant::now() > deadline {
            return Err("the hub did not start within 60 s".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The agency's document-signing key from `certs/signing` (the dev PKI layout).
fn signer(certs: &Path, id: &str) -> Result<Signer, String> {
    let cert = certs.join(format!("signing/{id}.pem"));
    let key = certs.join(format!("signing/{id}.key"));
    Signer::load(&cert, &key).map_err(|e| {
        format!("no usable signing certificate for {id} (packets must be signed): {e}")
    })
}

fn sign(signer: Option<&Signer>, packet: Vec<u8>) -> Result<Vec<u8>, String> {
    match signer {
        Some(s) => s.sign(&packet).map_err(|e| e.to_string()),
        None => Ok(packet),
    }
}

/// Agencies with a certificate in `certs/agencies`, sorted.
fn agencies(certs: &Path) -> Result<Vec<String>, String> {
    let dir = certs.join("agencies");
    let mut ids: Vec<String> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".pem"))
                .map(str::to_owned)
        })
        .collect();
    ids.sort();
    if ids.len() < 2 {
        return Err(format!(
            "{}: need certificates of at least two agencies",
            dir.display()
        ));
    }
    Ok(ids)
}

/// CPU seconds (user + system) of `pid`, from /proc.
fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0) // USER_HZ is 100 on Linux
}

/// Peak resident set (VmHWM) of `pid` in MiB.
fn peak_rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// A packet from `from` to `to` whose attachment holds `data` bytes (before base64).
fn packet(from: &str, to: &[String], n: u64, data: usize) -> Vec<u8> {
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
fn data_for(size: usize, from: &str, to: &[String], signer: Option<&Signer>) -> usize {
    let envelope = sign(signer, packet(from, to, 0, 0)).map_or(1200, |p| p.len());
    size.saturating_sub(envelope) * 3 / 4
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1000.0
}

struct Shared {
    ok: AtomicU64,
    errors: AtomicU64,
    bytes: AtomicU64,
    stop: AtomicBool,
    first_error: std::sync::Mutex<Option<String>>,
}

impl Shared {
    fn fail(&self, e: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.first_error.lock().expect("lock").get_or_insert(e);
    }
}

/// Runs one load test and reports.
pub async fn run(spec: LoadSpec) -> Result<Report, String> {
    let unsigned = spec.unsigned;
    let (own, url, certs) = match &spec.hub {
        Some((url, certs)) => (None, url.clone(), certs.clone()),
        None => {
            let (h, url, certs) = tokio::task::spawn_blocking(move || start_hub(unsigned))
                .await
                .map_err(|e| e.to_string())??;
            (Some(h), url, certs)
        }
    };
    let pid = own.as_ref().map(|h| h.child.id()).or(spec.hub_pid);
    let ids = agencies(&certs)?;
    let clients = spec.clients.max(1);
    let mut conns = Vec::with_capacity(clients);
    let mut signers = Vec::with_capacity(clients);
    for i in 0..clients {
        let id = &ids[i % ids.len()];
        let c = Client::new(
            &url,
            &certs.join("ca.pem"),
            &certs.join(format!("agencies/{id}.pem")),
            &certs.join(format!("agencies/{id}.key")),
            spec.version,
        )
        .map_err(|e| e.to_string())?;
        conns.push((id.clone(), ids[(i + 1) % ids.len()].clone(), Arc::new(c)));
        signers.push(if spec.unsigned {
            None
        } else {
            Some(Arc::new(signer(&certs, id)?))
        });
    }

    // Pull mode: queue work for every client first (not measured). Each client sends packets
    // addressed to all the other clients' agencies (a fan-out), so filling takes a fraction
    // of the submissions one packet per item would.
    if spec.mode == Mode::Pull {
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
    }

    let shared = Arc::new(Shared {
        ok: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        first_error: std::sync::Mutex::new(None),
    });
    let cpu0 = pid.and_then(cpu_secs);
    let me = std::process::id();
    let tool0 = cpu_secs(me);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for (k, ((me, next, c), signer)) in conns.into_iter().zip(signers).enumerate() {
        let shared = shared.clone();
        let all = ids.clone();
        let spec = spec.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat: Vec<u32> = Vec::new();
            let mut n = k as u64 * 1_000_000_000;
            let to = if spec.mode == Mode::Fanout {
                all
            } else {
                vec![next.clone()]
            };
            // Pull mode submits nothing here: no probe packet to sign.
            let data = match spec.mode {
                Mode::Pull => 0,
                Mode::Submit | Mode::Fanout => data_for(spec.size, &me, &to, signer.as_deref()),
            };
            while !shared.stop.load(Ordering::Relaxed) {
                n += 1;
                match spec.mode {
                    Mode::Submit | Mode::Fanout => {
                        // Signing is client work, as at a real agency: it runs on the
                        // same cores as the hub here, so it lowers the measured rate.
                        let body = match sign(signer.as_deref(), packet(&me, &to, n, data)) {
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
                                shared.ok.fetch_add(1, Ordering::Relaxed);
                                shared.bytes.fetch_add(len, Ordering::Relaxed);
                            }
                            Ok(r) => shared.fail(format!(
                                "{} {}",
                                r.status,
                                String::from_utf8_lossy(&r.body)
                            )),
                            Err(e) => shared.fail(e.to_string()),
                        }
                        continue;
                    }
                    Mode::Pull => {}
                }
                // Pull: list, fetch and ack each item; latency per item.
                let listed = match c
                    .call(Method::GET, "/v1/inbox?limit=50", Bytes::new())
                    .await
                {
                    Ok(r) => r.json()["items"].as_array().cloned().unwrap_or_default(),
                    Err(e) => {
                        shared.fail(e.to_string());
                        continue;
                    }
                };
                if listed.is_empty() {
                    break; // this client's inbox is drained
                }
                // Fetch each body, then acknowledge the page in one request (as an agency's
                // software would); an item's latency runs from its fetch to the batch ack.
                // The page's bodies are fetched concurrently (streams of one HTTP/2
                // connection; one after another over HTTP/1.1).
                let mut fetches = tokio::task::JoinSet::new();
                for item in listed {
                    let id = item["id"].as_str().unwrap_or_default().to_owned();
                    let c = c.clone();
                    fetches.spawn(async move {
                        let t0 = Instant::now();
                        let r = c
                            .call(Method::GET, &format!("/v1/documents/{id}"), Bytes::new())
                            .await;
                        (id, t0, r)
                    });
                }
                let mut fetched_ids = Vec::new();
                let mut starts = Vec::new();
                let mut bytes = 0u64;
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
            }
            lat
        }));
    }

    // Progress and the clock.
    let mut last = 0;
    while started.elapsed() < spec.duration && !tasks.iter().all(|t| t.is_finished()) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if spec.progress {
            let secs = started.elapsed().as_secs_f64();
            let ok = shared.ok.load(Ordering::Relaxed);
            let frac = (secs / spec.duration.as_secs_f64()).min(1.0);
            let bar: String = (0..30)
                .map(|i| if (i as f64) < frac * 30.0 { '#' } else { ' ' })
                .collect();
            eprint!(
                "\r[{bar}] {secs:5.1} s  {ok} ok  {} errors  {:.0}/s   ",
                shared.errors.load(Ordering::Relaxed),
                (ok - last) as f64 * 4.0
            );
            last = ok;
        }
    }
    shared.stop.store(true, Ordering::Relaxed);
    let mut lat: Vec<u32> = Vec::new();
    for t in tasks {
        lat.extend(t.await.map_err(|e| e.to_string())?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    if spec.progress {
        eprintln!();
    }
    let percent = |before: Option<f64>, after: Option<f64>| match (before, after) {
        (Some(a), Some(b)) => Some(((b - a) / elapsed * 1000.0).round() / 10.0),
        _ => None,
    };
    let cpu = percent(cpu0, pid.and_then(cpu_secs));
    let tool_cpu = percent(tool0, cpu_secs(me));
    let rss = pid.and_then(peak_rss_mb).map(|m| (m * 10.0).round() / 10.0);
    drop(own);
    lat.sort_unstable();
    let ok = shared.ok.load(Ordering::Relaxed);
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    Ok(Report {
        mode: spec.mode,
        clients,
        size_bytes: spec.size,
        http: match spec.version {
            HttpVersion::Http1 => "http/1.1",
            HttpVersion::Http2 => "h2",
            HttpVersion::Auto => "auto",
        },
        duration_secs: round(elapsed),
        ok,
        errors: shared.errors.load(Ordering::Relaxed),
        packets_per_sec: round(ok as f64 / elapsed),
        mb_per_sec: round(shared.bytes.load(Ordering::Relaxed) as f64 / elapsed / 1e6),
        avg_packet_bytes: shared.bytes.load(Ordering::Relaxed) / ok.max(1),
        p50_ms: percentile(&lat, 0.50),
        p90_ms: percentile(&lat, 0.90),
        p99_ms: percentile(&lat, 0.99),
        p999_ms: percentile(&lat, 0.999),
        max_ms: lat.last().map_or(0.0, |m| *m as f64 / 1000.0),
        hub_cpu_percent: cpu,
        hub_peak_rss_mb: rss,
        tool_cpu_percent: tool_cpu,
        first_error: shared.first_error.lock().expect("lock").take(),
    })
}
