//! `lienthong bench`: a load generator of many agency clients, each with its own certificate.
//!
//! It drives a hub it starts itself (the same binary, temp data dir, port 0) or one given by
//! URL, and reports throughput, latency percentiles and the hub's CPU and peak RSS. It is a
//! measuring tool, not a test: it never decides pass or fail.

mod forward;
mod own_hub;
mod push_sink;
mod workload;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::client::{Client, HttpVersion};
use own_hub::{agencies, cpu_secs, peak_rss_mb, signer, start_hub};
use workload::Conn;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Each client submits packets to the next agency.
    Submit,
    /// Packets are queued first; then each client pulls and acks its inbox.
    Pull,
    /// Each client submits packets addressed to every agency.
    Fanout,
    /// As submit, with every agency's push endpoint in the load tool: measures pushes
    /// (items/s arriving, acceptance → the endpoint's 2xx). Only with a hub started here.
    Push,
    /// As submit, to agencies of a second hub this tool starts as the first one's peer:
    /// measures forwarding between two hubs (packets/s stored at the second). Only with
    /// hubs started here.
    Forward,
}

/// The key type of the load tool's signing certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchKey {
    /// RSA-2048 (PKCS#1 v1.5, SHA-256), as agencies sign.
    Rsa,
    /// ECDSA P-256, the dev PKI's own signing keys.
    P256,
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
    /// The clients' document-signing keys: RSA-2048 (what agencies' CA-issued tokens
    /// hold; issued here by the dev CA for each client agency) or the dev PKI's P-256 keys.
    pub signing_key: BenchKey,
    /// Pull mode: list, then fetch each body (the pre-`include=body` way) instead of
    /// listing a page with its bodies.
    pub fetch_each: bool,
    /// Forward mode: the first hub's `[[peer]] concurrency`.
    pub peer_concurrency: Option<usize>,
    /// A hub started here stores in this PostgreSQL database instead of RocksDB.
    pub pg_url: Option<String>,
    /// Packets each client signs before the clock starts (0: every packet is signed
    /// during the run).
    pub presign: u64,
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
    /// Forward mode: CPU of the second hub (% of one core).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_hub_cpu_percent: Option<f64>,
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1000.0
}

pub(super) struct Shared {
    ok: AtomicU64,
    errors: AtomicU64,
    bytes: AtomicU64,
    stop: AtomicBool,
    first_error: std::sync::Mutex<Option<String>>,
    /// Push mode: when items were accepted and when their pushes arrived.
    pushes: Option<Arc<push_sink::Times>>,
}

impl Shared {
    pub(super) fn fail(&self, e: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.first_error.lock().expect("lock").get_or_insert(e);
    }
}

/// Runs one load test and reports.
pub async fn run(spec: LoadSpec) -> Result<Report, String> {
    let unsigned = spec.unsigned;
    let mut pair = None;
    let (own, url, certs) = match &spec.hub {
        Some(_) if spec.mode == Mode::Forward => {
            return Err("--mode forward runs on two hubs it starts (no --hub)".into());
        }
        Some((url, certs)) => (None, url.clone(), certs.clone()),
        None if spec.mode == Mode::Forward => {
            let concurrency = spec.peer_concurrency;
            let p = tokio::task::spawn_blocking(move || forward::start_pair(unsigned, concurrency))
                .await
                .map_err(|e| e.to_string())??;
            let (url, certs) = (p.a_url.clone(), p.certs.clone());
            pair = Some(p);
            (None, url, certs)
        }
        None => {
            let pg = spec.pg_url.clone();
            let (h, url, certs) =
                tokio::task::spawn_blocking(move || start_hub(unsigned, pg.as_deref()))
                    .await
                    .map_err(|e| e.to_string())??;
            (Some(h), url, certs)
        }
    };
    let pid = own
        .as_ref()
        .map(|h| h.child.id())
        .or(pair.as_ref().map(|p| p.a.child.id()))
        .or(spec.hub_pid);
    let peer_pid = pair.as_ref().map(|p| p.b.child.id());
    let pushes = match (&own, spec.mode) {
        (Some(h), Mode::Push) => {
            let times = Arc::new(push_sink::Times::default());
            let url = push_sink::start(&certs, times.clone()).await?;
            let h = h.clone_handle();
            tokio::task::spawn_blocking(move || h.enable_push(&url))
                .await
                .map_err(|e| e.to_string())??;
            Some(times)
        }
        (None, Mode::Push) => return Err("--mode push runs on a hub it starts (no --hub)".into()),
        _ => None,
    };
    let ids = agencies(&certs)?;
    let recipients = pair.as_ref().map_or(&ids, |p| &p.recipients);
    let (conns, signers) = connect(&spec, &url, &certs, &ids, recipients)?;
    if spec.mode == Mode::Pull {
        workload::fill_inboxes(&conns, &signers, &ids, &spec).await?;
    }
    let shared = Arc::new(Shared {
        ok: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        first_error: std::sync::Mutex::new(None),
        pushes: pushes.clone(),
    });
    let sending = prepare_all(&spec, &conns, signers, &ids).await?;
    let (cpu0, tool0) = (pid.and_then(cpu_secs), cpu_secs(std::process::id()));
    let peer_cpu0 = peer_pid.and_then(cpu_secs);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(conns.len());
    for (k, (conn, sending)) in conns.into_iter().zip(sending).enumerate() {
        let task = workload::client(k, conn, sending, spec.clone(), shared.clone());
        tasks.push(tokio::spawn(task));
    }
    watch(&spec, started, &shared, &tasks).await;
    shared.stop.store(true, Ordering::Relaxed);
    let mut lat: Vec<u32> = Vec::new();
    for t in tasks {
        lat.extend(t.await.map_err(|e| e.to_string())?);
    }
    let mut elapsed = started.elapsed().as_secs_f64();
    if let Some(times) = &pushes {
        // What counts is what arrived: wait for the backlog, then measure to the last one.
        push_sink::drain(times, Duration::from_secs(120)).await;
        let (push_lat, last) = times.latencies();
        let arrived = times.counts().1 as u64;
        let missing = times.counts().0 as u64 - arrived.min(times.counts().0 as u64);
        shared.ok.store(arrived, Ordering::Relaxed);
        shared.errors.fetch_add(missing, Ordering::Relaxed);
        lat = push_lat;
        elapsed = last.map_or(elapsed, |l| l.duration_since(started).as_secs_f64());
    }
    if let Some(p) = &pair {
        // What counts is what the second hub stored: wait for the forwards in flight.
        let sent = shared.ok.load(Ordering::Relaxed);
        let (last, arrived) = p.drain(sent, started, Duration::from_secs(120)).await;
        shared.ok.store(arrived.min(sent), Ordering::Relaxed);
        shared
            .errors
            .fetch_add(sent.saturating_sub(arrived), Ordering::Relaxed);
        elapsed = last;
    }
    if spec.progress {
        eprintln!();
    }
    let percent = |before: Option<f64>, after: Option<f64>| match (before, after) {
        (Some(a), Some(b)) => Some(((b - a) / elapsed * 1000.0).round() / 10.0),
        _ => None,
    };
    let usage = Usage {
        hub_cpu_percent: percent(cpu0, pid.and_then(cpu_secs)),
        tool_cpu_percent: percent(tool0, cpu_secs(std::process::id())),
        hub_peak_rss_mb: pid.and_then(peak_rss_mb).map(|m| (m * 10.0).round() / 10.0),
    };
    let peer_cpu = percent(peer_cpu0, peer_pid.and_then(cpu_secs));
    drop(own);
    drop(pair);
    lat.sort_unstable();
    let mut r = report(&spec, &shared, elapsed, &lat, usage);
    r.peer_hub_cpu_percent = peer_cpu;
    Ok(r)
}

/// Every client's [`workload::prepare`], on all cores before the clock starts.
async fn prepare_all(
    spec: &LoadSpec,
    conns: &[Conn],
    signers: Vec<MaybeSigner>,
    ids: &[String],
) -> Result<Vec<workload::Sending>, String> {
    let mut made = Vec::with_capacity(conns.len());
    for (k, (conn, signer)) in conns.iter().zip(signers).enumerate() {
        let (conn, ids, spec) = (conn.clone(), ids.to_vec(), spec.clone());
        made.push(tokio::task::spawn_blocking(move || {
            workload::prepare(k, &conn, signer, ids, &spec)
        }));
    }
    let mut out = Vec::with_capacity(made.len());
    for m in made {
        out.push(m.await.map_err(|e| e.to_string())??);
    }
    Ok(out)
}

/// A client's signer (`None` for unsigned runs).
type MaybeSigner = Option<Arc<crate::dsig::Signer>>;

/// One connection (and, for signed runs, one signer) per client, agencies taken in turn.
fn connect(
    spec: &LoadSpec,
    url: &str,
    certs: &std::path::Path,
    ids: &[String],
    recipients: &[String],
) -> Result<(Vec<Conn>, Vec<MaybeSigner>), String> {
    let clients = spec.clients.max(1);
    let mut conns = Vec::with_capacity(clients);
    for i in 0..clients {
        let id = &ids[i % ids.len()];
        let c = Client::new(
            url,
            &certs.join("ca.pem"),
            &certs.join(format!("agencies/{id}.pem")),
            &certs.join(format!("agencies/{id}.key")),
            spec.version,
        )
        .map_err(|e| e.to_string())?;
        let next = if spec.mode == Mode::Forward {
            recipients[i % recipients.len()].clone()
        } else {
            ids[(i + 1) % ids.len()].clone()
        };
        conns.push((id.clone(), next, Arc::new(c)));
    }
    if spec.unsigned {
        return Ok((conns, vec![None; clients]));
    }
    // RSA keys take a few hundred ms each to generate: all clients' at once, on all cores.
    let signers = std::thread::scope(|s| {
        let made: Vec<_> = conns
            .iter()
            .map(|(id, _, _)| s.spawn(move || signer(certs, id, spec.signing_key)))
            .collect();
        made.into_iter()
            .map(|h| h.join().expect("signer thread").map(|s| Some(Arc::new(s))))
            .collect::<Result<Vec<_>, String>>()
    })?;
    Ok((conns, signers))
}

/// CPU and memory of the hub and the tool over a run.
struct Usage {
    hub_cpu_percent: Option<f64>,
    tool_cpu_percent: Option<f64>,
    hub_peak_rss_mb: Option<f64>,
}

/// The report of a finished run; `lat` are the latencies in µs, sorted.
fn report(spec: &LoadSpec, shared: &Shared, elapsed: f64, lat: &[u32], usage: Usage) -> Report {
    let ok = shared.ok.load(Ordering::Relaxed);
    let bytes = shared.bytes.load(Ordering::Relaxed);
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    Report {
        mode: spec.mode,
        clients: spec.clients.max(1),
        size_bytes: spec.size,
        http: match spec.version {
            HttpVersion::Http1 => "http/1.1",
            HttpVersion::Http2 => "h2",
            HttpVersion::Http3 => "h3",
            HttpVersion::Auto => "auto",
        },
        duration_secs: round(elapsed),
        ok,
        errors: shared.errors.load(Ordering::Relaxed),
        packets_per_sec: round(ok as f64 / elapsed),
        mb_per_sec: round(bytes as f64 / elapsed / 1e6),
        avg_packet_bytes: bytes / ok.max(1),
        p50_ms: percentile(lat, 0.50),
        p90_ms: percentile(lat, 0.90),
        p99_ms: percentile(lat, 0.99),
        p999_ms: percentile(lat, 0.999),
        max_ms: lat.last().map_or(0.0, |m| *m as f64 / 1000.0),
        hub_cpu_percent: usage.hub_cpu_percent,
        hub_peak_rss_mb: usage.hub_peak_rss_mb,
        tool_cpu_percent: usage.tool_cpu_percent,
        first_error: shared.first_error.lock().expect("lock").take(),
        peer_hub_cpu_percent: None,
    }
}

/// Waits out the run (or until every client is done), drawing progress when asked.
async fn watch(
    spec: &LoadSpec,
    started: Instant,
    shared: &Shared,
    tasks: &[tokio::task::JoinHandle<Vec<u32>>],
) {
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
}
