//! `lienthong serve`: prepare, bind, run until a signal, drain, flush.
//!
//! Binding happens here and the bound listeners are handed to the servers, so port 0 works and
//! the real addresses are published in `<data>/bound.json` for scripts and tests.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, DEFAULTS};
use crate::directory::{self, Directory, SharedDirectory};
use crate::http::{Api, ApiLimits, Readiness, ServerLimits, run_https, run_ops};
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
    if !path.exists() && is_default_agencies_path(path) {
        tracing::info!(path = %path.display(), "directory file absent: using the embedded sample directory");
        return Ok(Directory::parse(directory::EMBEDDED)?);
    }
    Ok(Directory::load(path)?)
}

fn is_default_agencies_path(path: &Path) -> bool {
    let defaults: toml::Table = toml::from_str(DEFAULTS).expect("defaults parse");
    defaults["server"]["agencies"].as_str() == path.to_str()
}

/// Creates the dev PKI when the TLS files are missing at their dev paths and that is allowed.
fn ensure_dev_pki(config: &Config, dir: &Directory) -> Result<(), DaemonError> {
    let t = &config.tls;
    if t.cert.exists() && t.key.exists() && t.client_ca.exists() {
        return Ok(());
    }
    let paths = PkiPaths::new(&t.dev_pki_dir);
    let at_dev_paths = t.cert == paths.server_cert()
        && t.key == paths.server_key()
        && t.client_ca == paths.ca_cert();
    if !t.dev_pki || !at_dev_paths {
        return Ok(()); // Loading will fail below with the missing path named.
    }
    let report = pki::init(&paths, dir)?;
    tracing::warn!(
        dir = %paths.dir.display(),
        agencies = report.created_agencies,
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

/// Runs the hub until SIGTERM or Ctrl-C. Returns once drained and flushed.
pub async fn serve(config: Config) -> Result<(), DaemonError> {
    tls::install_provider();
    let dir = load_directory(&config)?;
    ensure_dev_pki(&config, &dir)?;
    let tls_config = tls::server_config(&config.tls.cert, &config.tls.key, &config.tls.client_ca)?;

    let data = &config.server.data;
    std::fs::create_dir_all(data).map_err(|source| DaemonError::Io {
        what: "cannot create data directory",
        addr: data.display().to_string(),
        source,
    })?;
    let db_path = data.join("db");
    let store = Store::open(&db_path).map_err(|source| DaemonError::Store {
        path: db_path.clone(),
        source,
    })?;
    let directory = SharedDirectory::new(dir);
    let shutdown = CancellationToken::new();
    let hub = Arc::new(Hub::new(
        store,
        directory.clone(),
        HubSettings {
            lease: std::time::Duration::from_secs(config.queue.lease_secs),
            max_inbox_limit: config.queue.max_inbox_limit,
            max_wait: std::time::Duration::from_secs(config.queue.max_wait_secs),
        },
        shutdown.clone(),
    )?);

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
    tokio::spawn(signals(shutdown.clone(), directory, config.clone()));

    let api = Arc::new(Api::new(
        hub.clone(),
        ApiLimits {
            max_body_bytes: config.server.max_body_bytes,
            request_timeout: config.request_timeout(),
        },
    ));
    let limits = ServerLimits {
        max_connections: config.server.max_connections,
        header_timeout: config.header_timeout(),
        shutdown_grace: config.shutdown_grace(),
    };
    let ops_task = tokio::spawn(run_ops(ops, ready.clone(), shutdown.clone()));
    ready.set(true);
    let clean = run_https(https, tls_config, api, limits, shutdown.clone()).await;
    ready.set(false);
    let _ = ops_task.await;
    let flush_hub = hub.clone();
    if let Err(e) = tokio::task::spawn_blocking(move || flush_hub.flush())
        .await
        .expect("flush task")
    {
        tracing::error!(error = %e, "flush on shutdown failed (the WAL still holds every accepted packet)");
    }
    tracing::info!(drained = clean, "lienthong stopped");
    Ok(())
}

/// SIGTERM / Ctrl-C start the drain; SIGHUP reloads the directory.
async fn signals(shutdown: CancellationToken, directory: SharedDirectory, config: Config) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut hup = signal(SignalKind::hangup()).expect("SIGHUP handler");
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = hup.recv() => match load_directory(&config) {
                Ok(d) => {
                    tracing::info!(agencies = d.len(), "directory reloaded");
                    directory.replace(d);
                }
                Err(e) => tracing::error!(error = %e, "directory reload refused; keeping the old directory"),
            },
        }
    }
    tracing::info!("shutting down: no new connections, draining in-flight requests");
    shutdown.cancel();
}
