//! `lienthong serve`: prepare, bind, run until a signal, drain, flush.
//!
//! Binding happens here and the bound listeners are handed to the servers, so port 0 works and
//! the real addresses are published in `<data>/bound.json` for scripts and tests.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::directory::{self, Directory, SharedDirectory};
use crate::http::{Connections, OpsState, Readiness, run_https, run_ops};
use crate::hub::Hub;
use crate::pki::{self, PkiPaths};
use crate::store::Store;
use crate::tls;

mod expiry;
mod metrics_setup;
mod settings;
mod signals;
mod workers;

use crate::hub::jobs::{HeadSigner, Upkeep};
use crate::hub::worker::Workers;
use metrics_setup::install_metrics;
use settings::{api_for, server_limits};
use signals::{reload_on_hangup, stop_on_signal};
use workers::StatsUpkeep;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(
        "{0} is the development CA (made by `lienthong pki init`): a hub with [tls] dev_pki = false runs only with production certificates; set dev_pki = true to run with the dev PKI (never in production)"
    )]
    DevelopmentCa(String),
    #[error(transparent)]
    Directory(#[from] directory::DirectoryError),
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("cannot open the data store in {path}: {source}")]
    Store {
        path: PathBuf,
        source: crate::store::StoreError,
    },
    #[error("cannot start the hub: {0}")]
    Hub(#[from] crate::hub::HubError),
    #[error("cannot start the hub: {0}")]
    Trust(#[from] crate::dsig::TrustError),
    #[error("cannot start the hub: the hub signing key ([audit] signing_cert/key): {0}")]
    Notary(#[from] crate::dsig::SignError),
    #[error(
        "role CN {0:?} in [roles] is also an agency of the directory: one certificate name would have two identities"
    )]
    RoleCollision(String),
    #[error("{what} {addr}: {source}")]
    Io {
        what: &'static str,
        addr: String,
        source: std::io::Error,
    },
}

/// Where the directory comes from: the configured file, or the embedded sample when the
/// configured path is the default one and does not exist.
fn load_directory(config: &Config) -> Result<Directory, DaemonError> {
    let path = &config.server.agencies;
    let is_default = path == Path::new(directory::DEFAULT_PATH);
    let dir = Directory::load_or_embedded(path, is_default)?;
    // A role CN that is also an agency would make that agency's certificate act as ops or
    // auditor (or an auditor's act as the agency): refused at start and at reload.
    if let Some(cn) = config.roles.all().into_iter().find(|cn| dir.contains(cn)) {
        return Err(DaemonError::RoleCollision(cn));
    }
    Ok(dir)
}

/// With `[tls] dev_pki = false` (production), a client CA or hub signing certificate issued by
/// the development CA is refused: a dev PKI left in place would let anyone holding its
/// (unprotected) key pose as any agency.
fn refuse_dev_ca(config: &Config) -> Result<(), DaemonError> {
    if config.tls.dev_pki {
        return Ok(());
    }
    match pki::development_files(config).first() {
        Some(path) => Err(DaemonError::DevelopmentCa(path.display().to_string())),
        None => Ok(()),
    }
}

/// Creates the dev PKI when the TLS files or the signature trust store are missing at their
/// dev paths and that is allowed.
fn ensure_dev_pki(config: &Config, dir: &Directory) -> Result<(), DaemonError> {
    let t = &config.tls;
    let trust = &config.signature.trust_dir;
    let a = &config.audit;
    let o = &config.outbound;
    if t.cert.exists()
        && o.client_cert.exists()
        && o.client_key.exists()
        && t.key.exists()
        && t.client_ca.exists()
        && trust.exists()
        && a.signing_cert.exists()
        && a.signing_key.exists()
    {
        return Ok(());
    }
    let paths = PkiPaths::new(&t.dev_pki_dir);
    let at_dev_paths = t.cert == paths.server_cert()
        && t.key == paths.server_key()
        && t.client_ca == paths.ca_cert()
        && *trust == paths.trust_dir()
        && a.signing_cert == paths.hub_signing_cert()
        && a.signing_key == paths.hub_signing_key()
        && o.client_cert == paths.hub_client_cert()
        && o.client_key == paths.hub_client_key();
    if !t.dev_pki || !at_dev_paths {
        return Ok(()); // Loading will fail below with the missing path named.
    }
    let report = pki::init(&paths, dir, &config.roles.all())?;
    tracing::warn!(
        dir = %paths.dir.display(),
        clients = report.created_clients,
        signing = report.created_signing,
        "created a DEVELOPMENT PKI (root CA, server and agency certificates); not for production"
    );
    Ok(())
}

fn write_bound(
    data: &Path,
    https: SocketAddr,
    ops: SocketAddr,
    quic: Option<SocketAddr>,
) -> Result<(), DaemonError> {
    let io = |source| DaemonError::Io {
        what: "cannot write bound.json in",
        addr: data.display().to_string(),
        source,
    };
    let mut json = serde_json::json!({"https": https.to_string(), "ops": ops.to_string()});
    if let Some(q) = quic {
        json["quic"] = q.to_string().into();
    }
    crate::files::write_atomic(&data.join("bound.json"), json.to_string().as_bytes()).map_err(io)
}

/// Large request bodies get their own memory mappings, returned to the system when freed.
///
/// glibc raises its mmap threshold after each large free (up to 32 MiB), so after a few
/// 10 MiB packets every later one comes from the heap, and what the heap once held it keeps:
/// the hub reached 674 MiB of RSS with 16 clients sending 10 MiB packets. Setting the
/// threshold turns the adjustment off; 4 MiB keeps ordinary packets (and 1 MiB ones) on the
/// heap, where they are fastest.
///
/// Turning the adjustment off also leaves the trim threshold at 128 KiB, so freeing a 1 MiB
/// body at the top of the heap gave its pages back and the next body faulted them in again
/// (page faults and page clearing were ~10 % of the hub's CPU with 1 MiB packets). Free heap
/// up to 16 MiB is kept instead: 1 MiB packets 199 → 236 MB/s with a quarter less hub CPU
/// per MB (docs/performance.md); peak RSS +25 MiB (16 clients of 10 MiB: 283 MiB, under the
/// 300 MiB budget; 32 MiB kept went over it).
fn fixed_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes an allocator parameter, under the allocator's own locks;
    // it is called once at start-up, before any request is read.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 16 << 20);
    }
}

/// File descriptors RocksDB may keep open (its `max_open_files`) plus the hub's own files.
const NOFILE_RESERVE: usize = 2048;

/// Raises the soft RLIMIT_NOFILE to what `max_connections` and RocksDB need, up to the hard
/// limit; when even that is too low, serves fewer connections (logged) rather than failing
/// accept() under load. Returns the connection limit to use.
fn raise_nofile_limit(max_connections: usize) -> usize {
    let need = (max_connections + NOFILE_RESERVE) as libc::rlim_t;
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write and read only the struct passed.
    let got = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0;
    if !got {
        return max_connections;
    }
    if lim.rlim_cur < need {
        let want = need.min(lim.rlim_max);
        let raised = libc::rlimit {
            rlim_cur: want,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = want;
        }
    }
    let room = (lim.rlim_cur as usize)
        .saturating_sub(NOFILE_RESERVE)
        .max(64);
    if room < max_connections {
        tracing::warn!(
            max_connections,
            nofile = lim.rlim_cur,
            using = room,
            "RLIMIT_NOFILE is too low for server.max_connections; serving fewer connections"
        );
        return room;
    }
    max_connections
}

/// The daemon's listening sockets, bound by the caller.
pub struct Listeners {
    pub https: TcpListener,
    pub ops: TcpListener,
    /// HTTP/3's UDP socket; `None` when `[quic] enabled = false`.
    pub quic: Option<std::net::UdpSocket>,
}

/// Binds the configured addresses and runs the hub until SIGTERM or Ctrl-C.
pub async fn serve(config: Config) -> Result<(), DaemonError> {
    let bind = |addr: SocketAddr, what: &'static str| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| DaemonError::Io {
                what,
                addr: addr.to_string(),
                source,
            })
    };
    let (https, quic) = bind_api(&config).await?;
    let ops = bind(config.server.ops_listen, "cannot listen for ops on").await?;
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    run(Listeners { https, ops, quic }, config, shutdown).await
}

/// The HTTPS listener and, with `[quic]` on, the UDP socket for HTTP/3 on the same port
/// number. With port 0, the UDP port is the one TCP got; should another program hold it,
/// both are bound again on a fresh port (a few tries).
async fn bind_api(
    config: &Config,
) -> Result<(TcpListener, Option<std::net::UdpSocket>), DaemonError> {
    let addr = config.server.listen;
    let err = |what: &'static str, addr: SocketAddr| {
        move |source| DaemonError::Io {
            what,
            addr: addr.to_string(),
            source,
        }
    };
    let q = &config.quic;
    for attempt in 0.. {
        let https = TcpListener::bind(addr)
            .await
            .map_err(err("cannot listen for HTTPS on", addr))?;
        if !q.enabled {
            return Ok((https, None));
        }
        let udp_addr = q.listen.unwrap_or_else(|| {
            let port = https.local_addr().map_or(addr.port(), |a| a.port());
            SocketAddr::new(addr.ip(), port)
        });
        match crate::http::h3::bind_udp(udp_addr, q) {
            Ok(udp) => return Ok((https, Some(udp))),
            Err(_) if addr.port() == 0 && q.listen.is_none() && attempt < 8 => continue,
            Err(e) => return Err(err("cannot listen for HTTP/3 (UDP) on", udp_addr)(e)),
        }
    }
    unreachable!("the loop returns")
}

/// Runs the hub on listeners bound by the caller until `shutdown` fires, then drains and
/// flushes. Binding outside lets tests run the hub in-process on port 0; SIGHUP still
/// reloads the directory and trust store, SIGTERM is the caller's business.
pub async fn run(
    listeners: Listeners,
    config: Config,
    shutdown: CancellationToken,
) -> Result<(), DaemonError> {
    let Listeners { https, ops, quic } = listeners;
    tls::install_provider();
    fixed_mmap_threshold();
    // First, so that start-up events (a CRL that cannot be read) are counted too.
    let metrics = install_metrics();
    let dir = load_directory(&config)?;
    ensure_dev_pki(&config, &dir)?;
    refuse_dev_ca(&config)?;
    let tls_config = tls::server_config(&config.tls.cert, &config.tls.key, &config.tls.client_ca)?;
    let mut limits = server_limits(&config);
    let quic = match quic {
        Some(socket) => {
            let endpoint =
                crate::http::h3::endpoint(socket, tls_config.quic.clone(), &config.quic, &limits)
                    .map_err(|source| DaemonError::Io {
                    what: "cannot start HTTP/3 on",
                    addr: https
                        .local_addr()
                        .map(|a| a.to_string())
                        .unwrap_or_default(),
                    source,
                })?;
            Some(endpoint)
        }
        None => None,
    };
    let quic_addr = quic.as_ref().and_then(|e| e.local_addr().ok());
    limits.alt_svc =
        quic_addr.map(|a| crate::http::h3::alt_svc(a.port(), config.quic.alt_svc_max_age_secs));

    let data = &config.server.data;
    let directory = SharedDirectory::new(dir);
    let hub = open_hub(&config, directory.clone(), shutdown.clone())?;
    let https_addr = https.local_addr().expect("bound socket has an address");
    let ops_addr = ops.local_addr().expect("bound socket has an address");
    write_bound(data, https_addr, ops_addr, quic_addr)?;
    let h3 = quic_addr.map_or(String::new(), |a| format!("  HTTP/3 on udp://{a}"));
    println!("lienthong: HTTPS (mutual TLS) on https://{https_addr}{h3}  ops on http://{ops_addr}");
    println!(
        "lienthong: {} agencies in the directory; data in {}",
        directory.snapshot().len(),
        data.display()
    );

    let ready = Readiness::default();
    let connections = Connections::default();
    tokio::spawn(reload_on_hangup(
        shutdown.clone(),
        hub.clone(),
        config.clone(),
        connections.clone(),
        tls_config.cert.clone(),
    ));

    let api = Arc::new(api_for(hub.clone(), &config));
    let workers = spawn_workers(&hub, &config, metrics.clone(), &shutdown).await;
    if !config.server.ops_listen.ip().is_loopback() && config.server.ops_token.is_empty() {
        tracing::warn!(addr = %config.server.ops_listen, "the ops listener is not on loopback and has no ops_token: anyone who reaches it reads per-agency figures");
    }
    let ops_state = OpsState {
        ready: ready.clone(),
        hub: hub.clone(),
        metrics,
        token: (!config.server.ops_token.is_empty())
            .then(|| Arc::from(config.server.ops_token.as_str())),
    };
    let ops_task = tokio::spawn(run_ops(ops, ops_state, shutdown.clone()));
    ready.set(true);
    let h3_task = quic.map(|endpoint| {
        tokio::spawn(crate::http::h3::run_h3(
            endpoint,
            api.clone(),
            limits.clone(),
            config.quic.max_field_section_bytes,
            connections.clone(),
            shutdown.clone(),
        ))
    });
    let clean = run_https(
        https,
        tls_config.tcp,
        api,
        limits,
        connections,
        shutdown.clone(),
    )
    .await;
    let clean = match h3_task {
        Some(t) => t.await.unwrap_or(false) && clean,
        None => clean,
    };
    ready.set(false);
    let _ = ops_task.await;
    workers.stop(config.shutdown_grace()).await;
    finish(&hub).await;
    tracing::info!(drained = clean, "lienthong stopped");
    Ok(())
}

/// Logs the start, then starts the background workers: tree-head signing, upkeep (expiry,
/// retention), statistics upkeep. They stop stepping when `shutdown` fires.
async fn spawn_workers(
    hub: &Arc<Hub>,
    config: &Config,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    shutdown: &CancellationToken,
) -> Workers {
    let secs = std::time::Duration::from_secs;
    let mut workers = Workers::new(shutdown.child_token());
    workers.spawn(HeadSigner::new(
        hub.clone(),
        secs(config.audit.head_interval_secs.max(1)),
        config.audit.head_every_entries.max(1),
    ));
    workers.spawn(Upkeep {
        hub: hub.clone(),
        every: secs(config.queue.upkeep_secs.max(1)),
    });
    let roles = serde_json::json!({"ops": config.roles.ops, "auditors": config.roles.auditors});
    let started = crate::audit::AuditEvent::new("started", crate::ids::now_ms()).detail(
        serde_json::json!({"roles": roles, "agencies": hub.directory().snapshot().len(),
            "version": env!("CARGO_PKG_VERSION")}),
    );
    if let Err(e) = hub.blocking(move |h| h.record(started)).await {
        tracing::warn!(error = %e, "could not log the start in the audit log");
    }
    workers.spawn(StatsUpkeep {
        hub: hub.clone(),
        metrics,
        every: secs(config.stats.flush_secs),
        certificates: expiry::watched(config),
        certificates_checked: None,
    });
    if config.push.enabled {
        workers.spawn(crate::push::PushWorker::new(
            hub.clone(),
            settings::push_settings(config),
        ));
    }
    workers
}

/// After the drain: a final signed head covering everything logged, then statistics and
/// storage flushed.
async fn finish(hub: &Arc<Hub>) {
    if let Err(e) = hub.blocking(|h| h.maybe_sign_head(true, 1)).await {
        tracing::warn!(error = %e, "could not sign the final tree head");
    }
    if let Err(e) = hub
        .blocking(|h| h.flush_stats().and_then(|()| h.flush()))
        .await
    {
        tracing::error!(error = %e, "flush on shutdown failed (the WAL still holds every accepted packet)");
    }
}

/// Opens the store and builds the hub from the configuration.
fn open_hub(
    config: &Config,
    directory: SharedDirectory,
    shutdown: CancellationToken,
) -> Result<Arc<Hub>, DaemonError> {
    let data = &config.server.data;
    std::fs::create_dir_all(data).map_err(|source| DaemonError::Io {
        what: "cannot create data directory",
        addr: data.display().to_string(),
        source,
    })?;
    let signatures = crate::hub::Signatures::load(&config.signature, &config.pdf_signature)?;
    let notary = crate::dsig::Signer::load(&config.audit.signing_cert, &config.audit.signing_key)?;
    let settings = settings::hub_settings(config);
    let hub = match (config.storage.engine.as_str(), &config.storage.url) {
        ("postgres", Some(url)) => {
            let deadline = std::time::Duration::from_secs(config.storage.sync_deadline_secs.max(1));
            let store = crate::store::PgStore::open_with(url, deadline).map_err(|source| {
                DaemonError::Store {
                    path: "PostgreSQL ([storage] url)".into(),
                    source,
                }
            })?;
            tracing::info!("storage: PostgreSQL");
            Hub::new(store, directory, settings, signatures, notary, shutdown)?
        }
        ("rocksdb", _) => {
            let db_path = data.join("db");
            let store =
                Store::open_with(&db_path, settings::writer_options(config)).map_err(|source| {
                    DaemonError::Store {
                        path: db_path.clone(),
                        source,
                    }
                })?;
            Hub::new(store, directory, settings, signatures, notary, shutdown)?
        }
        (engine, _) => {
            return Err(DaemonError::Store {
                path: "[storage] engine".into(),
                source: crate::store::StoreError::Failed(format!(
                    "engine {engine:?}: use \"rocksdb\", or \"postgres\" with [storage] url"
                )),
            });
        }
    };
    let hub = Arc::new(hub);
    hub.listen_to_store();
    hub.load_push_state()?;
    Ok(hub)
}
