//! The hub's own commands: `serve`, `bench`.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{ServeArgs, fail};
use crate::client::HttpVersion;
use crate::config::{Config, Overrides};

/// `serve`: runs the hub until SIGTERM.
pub async fn serve(a: ServeArgs) -> ExitCode {
    let overrides = Overrides {
        listen: a.listen,
        ops_listen: a.ops_listen,
        data: a.data,
        tls_cert: a.tls_cert,
        tls_key: a.tls_key,
        client_ca: a.client_ca,
        agencies: a.agencies,
        trust: a.trust,
        listen_quic: a.listen_quic,
    };
    let config = match Config::load(a.config.as_deref(), &overrides) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    match crate::daemon::serve(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

/// The options of `bench` that shape its run and its report.
#[derive(clap::Args)]
pub struct BenchArgs {
    #[arg(long, value_enum, default_value = "submit")]
    pub mode: crate::load::Mode,
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Packet size in bytes (1 KiB to 10 MiB).
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1024..=10 * 1024 * 1024))]
    pub size: u64,
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// A running hub (default: start one on a temp dir).
    #[arg(long)]
    pub hub: Option<String>,
    /// With --hub: the directory holding ca.pem and agencies/<OrganId>.pem|.key.
    #[arg(long, requires = "hub")]
    pub certs: Option<PathBuf>,
    /// With --hub: the hub's pid, to report its CPU and peak RSS.
    #[arg(long, requires = "hub")]
    pub hub_pid: Option<u32>,
    #[arg(long, conflicts_with_all = ["http2", "http3"])]
    pub http1: bool,
    #[arg(long, conflicts_with = "http3")]
    pub http2: bool,
    /// HTTP/3 over QUIC.
    #[arg(long)]
    pub http3: bool,
    #[arg(long)]
    pub json: bool,
    /// Send unsigned packets (measures the hub without signature work; a hub given by
    /// --hub must run [signature] policy = "record").
    #[arg(long)]
    pub unsigned: bool,
    /// Pull mode: items queued for each client before the clock starts (the run ends
    /// when the inboxes are drained or the duration is over).
    #[arg(long, default_value_t = 2000)]
    pub items: u64,
    /// Pull mode: list a page, then fetch each body in its own request (default: one
    /// `GET /v1/inbox?include=body` per page), then ack the page.
    #[arg(long)]
    pub fetch_each: bool,
    /// The clients' document-signing keys: `rsa` (RSA-2048, as agencies sign; issued by the
    /// dev CA for each client at start) or `p256` (the dev PKI's keys in certs/signing).
    #[arg(long, value_enum, default_value = "p256")]
    pub signing_key: crate::load::BenchKey,
    /// Forward mode: the first hub's `[[peer]] concurrency` (forwards in flight to the
    /// second; default the hub's default).
    #[arg(long)]
    pub peer_concurrency: Option<usize>,
    /// The hub started here stores in this PostgreSQL database (`[storage] engine =
    /// "postgres"`; e.g. from scripts/pg-cluster.sh) instead of RocksDB.
    #[arg(long)]
    pub pg_url: Option<String>,
    /// Packets each client makes and signs before the clock starts (then signed during the
    /// run): on a machine the tool shares with the hub, the run then measures the hub
    /// rather than the clients' signing. Size it to the run (rate × duration ÷ clients).
    #[arg(long, default_value_t = 0)]
    pub presign: u64,
}

/// `bench`: the load tool, with its report as text or JSON.
pub async fn bench(b: BenchArgs) -> ExitCode {
    let json = b.json;
    let spec = crate::load::LoadSpec {
        unsigned: b.unsigned,
        items: b.items,
        fetch_each: b.fetch_each,
        signing_key: b.signing_key,
        peer_concurrency: b.peer_concurrency,
        pg_url: b.pg_url,
        presign: b.presign,
        mode: b.mode,
        clients: b.clients,
        size: b.size as usize,
        duration: std::time::Duration::from_secs(b.duration),
        version: HttpVersion::from_flags(b.http1, b.http2, b.http3),
        hub: b
            .hub
            .map(|h| (h, b.certs.unwrap_or_else(|| PathBuf::from("certs")))),
        hub_pid: b.hub_pid,
        progress: !json && std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    match crate::load::run(spec).await {
        Ok(r) if json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&r).expect("report serializes")
            );
            ExitCode::SUCCESS
        }
        Ok(r) => {
            let opt = |x: Option<f64>, unit: &str| x.map_or("n/a".into(), |v| format!("{v}{unit}"));
            println!(
                "{:?} · {} clients · {} bytes · {} · {:.1} s\n\
                 {} ok, {} errors · {:.1} packets/s · {:.2} MB/s\n\
                 latency ms: p50 {} · p90 {} · p99 {} · p99.9 {} · max {}\n\
                 hub: CPU {} · peak RSS {} · load tool CPU {}",
                r.mode,
                r.clients,
                r.size_bytes,
                r.http,
                r.duration_secs,
                r.ok,
                r.errors,
                r.packets_per_sec,
                r.mb_per_sec,
                r.p50_ms,
                r.p90_ms,
                r.p99_ms,
                r.p999_ms,
                r.max_ms,
                opt(r.hub_cpu_percent, "%"),
                opt(r.hub_peak_rss_mb, " MiB"),
                opt(r.tool_cpu_percent, "%"),
            );
            if let Some(e) = r.first_error {
                println!("first error: {e}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}
