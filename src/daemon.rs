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
use crate::http::{
    Api, ApiLimits, Connections, OpsState, Readiness, ServerLimits, run_https, run_ops,
};
use crate::hub::{Hub, HubSettings};
use crate::pki::{self, PkiPaths};
use crate::store::Store;
use crate::tls;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
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

/// Creates the dev PKI when the TLS files or the signature trust store are missing at their
/// dev paths and that is allowed.
fn ensure_dev_pki(config: &Config, dir: &Directory) -> Result<(), DaemonError> {
    let t = &config.tls;
    let trust = &config.signature.trust_dir;
    let a = &config.audit;
    if t.cert.exists()
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
        && a.signing_key == paths.hub_signing_key();
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

fn write_bound(data: &Path, https: SocketAddr, ops: SocketAddr) -> Result<(), DaemonError> {
    let io = |source| DaemonError::Io {
        what: "cannot write bound.json in",
        addr: data.display().to_string(),
        source,
    };
    let json = serde_json::json!({"https": https.to_string(), "ops": ops.to_string()});
    let tmp = data.join("bound.json.tmp");
    std::fs::write(&tmp, json.to_string()).map_err(io)?;
    std::fs::rename(&tmp, data.join("bound.json")).map_err(io)
}

/// Large request bodies get their own memory mappings, returned to the system when freed.
///
/// glibc raises its mmap threshold after each large free (up to 32 MiB), so after a few
/// 10 MiB packets every later one comes from the heap, and what the heap once held it keeps:
/// the hub reached 674 MiB of RSS with 16 clients sending 10 MiB packets. Setting the
/// threshold turns the adjustment off; 4 MiB keeps ordinary packets (and 1 MiB ones) on the
/// heap, where they are fastest.
fn fixed_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes an allocator parameter, under the allocator's own locks;
    // it is called once at start-up, before any request is read.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
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

/// Runs the hub until SIGTERM or Ctrl-C. Returns once drained and flushed.
/// The daemon's two listening sockets, bound by the caller.
pub struct Listeners {
    pub https: TcpListener,
    pub ops: TcpListener,
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
    let https = bind(config.server.listen, "cannot listen for HTTPS on").await?;
    let ops = bind(config.server.ops_listen, "cannot listen for ops on").await?;
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    run(Listeners { https, ops }, config, shutdown).await
}

/// Runs the hub on listeners bound by the caller until `shutdown` fires, then drains and
/// flushes. Binding outside lets tests run the hub in-process on port 0; SIGHUP still
/// reloads the directory and trust store, SIGTERM is the caller's business.
pub async fn run(
    listeners: Listeners,
    config: Config,
    shutdown: CancellationToken,
) -> Result<(), DaemonError> {
    let Listeners { https, ops } = listeners;
    tls::install_provider();
    fixed_mmap_threshold();
    // First, so that start-up events (a CRL that cannot be read) are counted too.
    let metrics = install_metrics();
    let dir = load_directory(&config)?;
    ensure_dev_pki(&config, &dir)?;
    let tls_config = tls::server_config(&config.tls.cert, &config.tls.key, &config.tls.client_ca)?;

    let data = &config.server.data;
    let directory = SharedDirectory::new(dir);
    let hub = open_hub(&config, directory.clone(), shutdown.clone())?;
    let https_addr = https.local_addr().expect("bound socket has an address");
    let ops_addr = ops.local_addr().expect("bound socket has an address");
    write_bound(data, https_addr, ops_addr)?;
    println!("lienthong: HTTPS (mutual TLS) on https://{https_addr}  ops on http://{ops_addr}");
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
    ));

    let api = Arc::new(api_for(hub.clone(), &config));
    let workers = spawn_workers(&hub, &config, metrics.clone(), &shutdown).await;
    let limits = server_limits(&config);
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
    let clean = run_https(
        https,
        tls_config,
        api,
        limits,
        connections,
        shutdown.clone(),
    )
    .await;
    ready.set(false);
    let _ = ops_task.await;
    for w in workers {
        let _ = w.await;
    }
    finish(&hub).await;
    tracing::info!(drained = clean, "lienthong stopped");
    Ok(())
}

/// Logs the start, then starts the background workers: tree-head signing, upkeep (expiry,
/// retention), statistics upkeep. They end when `shutdown` fires.
async fn spawn_workers(
    hub: &Arc<Hub>,
    config: &Config,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    shutdown: &CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let heads = tokio::spawn(sign_heads(
        hub.clone(),
        std::time::Duration::from_secs(config.audit.head_interval_secs.max(1)),
        config.audit.head_every_entries.max(1),
        shutdown.clone(),
    ));
    let upkeep = tokio::spawn(upkeep(
        hub.clone(),
        std::time::Duration::from_secs(config.queue.upkeep_secs.max(1)),
        shutdown.clone(),
    ));
    let roles = serde_json::json!({"ops": config.roles.ops, "auditors": config.roles.auditors});
    let started = crate::audit::AuditEvent::new("started", crate::ids::now_ms()).detail(
        serde_json::json!({"roles": roles, "agencies": hub.directory().snapshot().len(),
            "version": env!("CARGO_PKG_VERSION")}),
    );
    if let Err(e) = hub.blocking(move |h| h.record(started)).await {
        tracing::warn!(error = %e, "could not log the start in the audit log");
    }
    let maintenance = tokio::spawn(maintain(
        hub.clone(),
        metrics.clone(),
        std::time::Duration::from_secs(config.stats.flush_secs),
        shutdown.clone(),
    ));
    vec![heads, upkeep, maintenance]
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
    let db_path = data.join("db");
    let store = Store::open_with(&db_path, config.storage.writer_options()).map_err(|source| {
        DaemonError::Store {
            path: db_path.clone(),
            source,
        }
    })?;
    let signatures = crate::hub::Signatures::load(&config.signature)?;
    let notary = crate::dsig::Signer::load(&config.audit.signing_cert, &config.audit.signing_key)?;
    let hub = Arc::new(Hub::new(
        store,
        directory,
        HubSettings {
            lease: std::time::Duration::from_secs(config.queue.lease_secs),
            max_inbox_limit: config.queue.max_inbox_limit,
            max_wait: std::time::Duration::from_secs(config.queue.max_wait_secs),
            expiry: std::time::Duration::from_secs(config.queue.expiry_secs),
            body_retention: (config.retention.body_secs > 0)
                .then(|| std::time::Duration::from_secs(config.retention.body_secs)),
            limits: config.edxml.clone(),
            admission: config.overload.limits(),
            roles: config.roles.clone(),
        },
        signatures,
        notary,
        shutdown,
    )?);
    Ok(hub)
}

/// The HTTPS API with its request limits from `[server]`.
fn api_for(hub: Arc<Hub>, config: &Config) -> Api {
    let s = &config.server;
    Api::new(
        hub,
        ApiLimits {
            body: crate::http::BodyLimits {
                max_body_bytes: s.max_body_bytes,
                max_inflight_body_bytes: s.max_inflight_body_bytes,
                small_body_bytes: s.small_body_bytes,
                small_pool_bytes: s.small_body_pool_bytes,
                agency_inflight_body_bytes: s.agency_inflight_body_bytes,
                agency_concurrent_submits: s.agency_concurrent_submits,
                min_upload_bytes_per_sec: s.min_upload_bytes_per_sec,
                upload_grace: std::time::Duration::from_secs(s.upload_grace_secs),
            },
            request_timeout: config.request_timeout(),
        },
    )
}

/// Connection limits from `[server]` (raising the open-file limit to fit them).
fn server_limits(config: &Config) -> ServerLimits {
    ServerLimits {
        max_connections: raise_nofile_limit(config.server.max_connections),
        max_handshakes: config.server.max_handshakes,
        max_handshakes_per_ip: config.server.max_handshakes_per_ip,
        header_timeout: config.header_timeout(),
        keepalive: std::time::Duration::from_secs(config.server.keepalive_secs),
        idle_timeout: std::time::Duration::from_secs(config.server.idle_timeout_secs),
        shutdown_grace: config.shutdown_grace(),
    }
}

/// Installs the process-wide Prometheus recorder; `None` if one is already installed.
fn install_metrics() -> Option<metrics_exporter_prometheus::PrometheusHandle> {
    let seconds = [
        0.0005,
        0.001,
        0.0025,
        0.005,
        0.01,
        0.025,
        0.05,
        0.1,
        0.25,
        0.5,
        1.0,
        2.5,
        5.0,
        10.0,
        30.0,
        60.0,
        300.0,
        900.0,
        3600.0,
        4.0 * 3600.0,
        86400.0,
    ];
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(&seconds)
        .expect("bucket list is not empty")
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).ok()?;
    describe_metrics();
    Some(handle)
}

fn describe_metrics() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "lienthong_requests_shed_total",
        "Requests refused by admission (429 agency limits, 503 work queue), by reason"
    );
    describe_gauge!(
        "lienthong_uploads_in_progress",
        "Submissions whose body is being read"
    );
    describe_gauge!(
        "lienthong_long_polls_waiting",
        "Inbox listings parked in a long poll"
    );
    describe_counter!(
        "lienthong_write_conflicts_total",
        "Guarded queue changes that lost a race and were read again"
    );
    describe_counter!(
        "lienthong_writes_refused_total",
        "Writes refused because too many waited for the disk"
    );
    describe_counter!(
        "lienthong_storage_failures_total",
        "Failed writes or syncs (writes stop until a restart)"
    );
    describe_counter!(
        "lienthong_reloads_total",
        "SIGHUP directory reloads, by outcome"
    );
    describe_counter!(
        "lienthong_packets_accepted_total",
        "Packets accepted (durably stored), by kind"
    );
    describe_counter!(
        "lienthong_packets_refused_total",
        "Packets refused, by reason code"
    );
    describe_counter!(
        "lienthong_items_delivered_total",
        "Queue items listed to their recipient for the first time"
    );
    describe_counter!(
        "lienthong_items_redelivered_total",
        "Queue items listed again after a lease expired"
    );
    describe_counter!(
        "lienthong_items_acked_total",
        "Queue items acknowledged by their recipient"
    );
    describe_counter!(
        "lienthong_status_notices_total",
        "Status notices accepted, by edXML status code"
    );
    describe_counter!(
        "lienthong_bytes_received_total",
        Unit::Bytes,
        "Packet bytes accepted"
    );
    describe_counter!(
        "lienthong_bytes_sent_total",
        Unit::Bytes,
        "Packet bytes fetched by agencies"
    );
    describe_counter!(
        "lienthong_agency_sent_total",
        "Packets accepted per sending agency (519 label values)"
    );
    describe_counter!(
        "lienthong_agency_received_total",
        "Queue items per recipient agency (519 label values)"
    );
    describe_counter!(
        "lienthong_signature_verdicts_total",
        "Accepted packets by signature verdict"
    );
    describe_counter!(
        "lienthong_signature_chain_cache_total",
        "Signer certificate chain verdict cache lookups by result (hit, miss)"
    );
    describe_counter!(
        "lienthong_crl_load_errors_total",
        "CRL files that could not be read at start or on SIGHUP"
    );
    describe_counter!(
        "lienthong_tls_handshake_failures_total",
        "TLS handshakes that failed, by reason"
    );
    describe_gauge!(
        "lienthong_queue_depth",
        "Pending items per recipient agency"
    );
    describe_gauge!(
        "lienthong_queue_oldest_age_seconds",
        Unit::Seconds,
        "Age of the oldest pending item per agency"
    );
    describe_gauge!(
        "lienthong_rocksdb_live_sst_bytes",
        Unit::Bytes,
        "Size of live RocksDB SST files"
    );
    describe_gauge!(
        "lienthong_rocksdb_pending_compaction_bytes",
        Unit::Bytes,
        "RocksDB's estimate of bytes awaiting compaction"
    );
    describe_histogram!(
        "lienthong_submit_duration_seconds",
        Unit::Seconds,
        "POST /v1/documents from request to durable answer"
    );
    describe_histogram!(
        "lienthong_delivery_latency_seconds",
        Unit::Seconds,
        "From acceptance to the recipient's ack"
    );
}

/// Runs `step` every `period` until shutdown (a tick that falls behind is delayed, not
/// repeated).
async fn periodically<F, Fut>(period: std::time::Duration, shutdown: CancellationToken, mut step: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        step().await;
    }
}

/// Every `every`: flush statistics, refresh gauges, let the exporter do its upkeep.
async fn maintain(
    hub: Arc<Hub>,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    every: std::time::Duration,
    shutdown: CancellationToken,
) {
    periodically(every, shutdown, || async {
        let res = hub
            .blocking(|h| h.flush_stats().and_then(|()| h.refresh_gauges()))
            .await;
        if let Err(e) = res {
            tracing::warn!(error = %e, "statistics upkeep failed; will retry");
        }
        if let Some(m) = &metrics {
            m.run_upkeep();
        }
    })
    .await
}

/// Expires undelivered items and purges old bodies every `every`.
async fn upkeep(hub: Arc<Hub>, every: std::time::Duration, shutdown: CancellationToken) {
    periodically(every, shutdown, || async {
        match hub.blocking(|h| h.expire()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(items = n, "expired undelivered items"),
            Err(e) => tracing::warn!(error = %e, "expiry failed; will retry"),
        }
        match hub.blocking(|h| h.purge_bodies()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(bodies = n, "purged bodies past retention"),
            Err(e) => tracing::warn!(error = %e, "retention purge failed; will retry"),
        }
    })
    .await
}

/// Signs audit tree heads: every `interval` while the log grows, and whenever `every` entries
/// have been added since the last head (checked each second).
async fn sign_heads(
    hub: Arc<Hub>,
    interval: std::time::Duration,
    every: u64,
    shutdown: CancellationToken,
) {
    let last = std::sync::Mutex::new(tokio::time::Instant::now());
    periodically(std::time::Duration::from_secs(1), shutdown, || async {
        let due = last.lock().expect("head clock").elapsed() >= interval;
        match hub.blocking(move |h| h.maybe_sign_head(due, every)).await {
            Ok(Some(_)) => *last.lock().expect("head clock") = tokio::time::Instant::now(),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "signing a tree head failed; will retry"),
        }
    })
    .await
}

/// SIGTERM / Ctrl-C start the drain; SIGHUP reloads the directory and the signature trust
/// store (anchors and CRLs).
/// SIGTERM or Ctrl-C: the daemon drains and stops.
async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down: no new connections, draining in-flight requests");
    shutdown.cancel();
}

/// SIGHUP: reload the directory (closing connections of identities it no longer has) and
/// the trust store, until shutdown.
async fn reload_on_hangup(
    shutdown: CancellationToken,
    hub: Arc<Hub>,
    config: Config,
    connections: Connections,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup()).expect("SIGHUP handler");
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = hup.recv() => reload(&hub, &config, &connections).await,
        }
    }
}

async fn reload(hub: &Arc<Hub>, config: &Config, connections: &Connections) {
    match load_directory(config) {
        Ok(d) => {
            tracing::info!(agencies = d.len(), "directory reloaded");
            metrics::counter!("lienthong_reloads_total", "outcome" => "applied").increment(1);
            let roles = config.roles.all();
            let closed =
                connections.close_unless(|cn| d.contains(cn) || roles.iter().any(|r| r == cn));
            if closed > 0 {
                tracing::info!(
                    closed,
                    "closed connections of identities no longer in the directory"
                );
            }
            let event = crate::audit::AuditEvent::new("directory_reloaded", crate::ids::now_ms())
                .detail(serde_json::json!({"agencies": d.len()}));
            hub.directory().replace(d);
            if let Err(e) = hub.blocking(move |h| h.record(event)).await {
                tracing::warn!(error = %e, "could not log the reload in the audit log");
            }
        }
        Err(e) => {
            metrics::counter!("lienthong_reloads_total", "outcome" => "refused").increment(1);
            tracing::error!(error = %e, "directory reload refused; keeping the old directory")
        }
    }
    let h = hub.clone();
    match tokio::task::spawn_blocking(move || h.signatures().reload()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::error!(error = %e, "trust store reload refused; keeping the old one")
        }
        Err(e) => tracing::error!(error = %e, "trust store reload failed"),
    }
}
