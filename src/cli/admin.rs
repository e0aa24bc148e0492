//! The hub's own commands: `serve`, `pki init`, `bench`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::{ServeArgs, fail, load_directory};
use crate::client::HttpVersion;
use crate::config::{Config, Overrides};
use crate::pki::{self, PkiPaths};

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

/// `pki init`: the development PKI for a directory.
pub fn pki_init(dir: &Path, agencies: Option<&Path>, roles: Vec<String>) -> ExitCode {
    let roles = if roles.is_empty() {
        Config::load(None, &Overrides::default())
            .map(|c| c.roles.all())
            .unwrap_or_default()
    } else {
        roles
    };
    let directory = match load_directory(agencies) {
        Ok(d) => d,
        Err(e) => return fail(e),
    };
    match pki::init(&PkiPaths::new(dir), &directory, &roles) {
        Ok(r) => {
            println!(
                "{}: CA {}, server certificate {}, {} client and {} signing certificates created",
                dir.display(),
                if r.created_ca { "created" } else { "kept" },
                if r.created_server { "created" } else { "kept" },
                r.created_clients,
                r.created_signing
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// The options of `bench` that shape its run and its report.
pub struct BenchArgs {
    pub mode: crate::load::Mode,
    pub clients: usize,
    pub size: u64,
    pub duration: u64,
    pub hub: Option<String>,
    pub certs: Option<PathBuf>,
    pub hub_pid: Option<u32>,
    pub http1: bool,
    pub http2: bool,
    pub json: bool,
    pub unsigned: bool,
    pub items: u64,
}

/// `bench`: the load tool, with its report as text or JSON.
pub async fn bench(b: BenchArgs) -> ExitCode {
    let BenchArgs {
        mode,
        clients,
        size,
        duration,
        hub,
        certs,
        hub_pid,
        http1,
        http2,
        json,
        unsigned,
        items,
    } = b;
    let spec = crate::load::LoadSpec {
        unsigned,
        items,
        mode,
        clients,
        size: size as usize,
        duration: std::time::Duration::from_secs(duration),
        version: HttpVersion::from_flags(http1, http2),
        hub: hub.map(|h| (h, certs.unwrap_or_else(|| PathBuf::from("certs")))),
        hub_pid,
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
