//! Signals: SIGTERM / Ctrl-C start the drain; SIGHUP reloads the directory, the signature
//! trust store (anchors and CRLs) and the hub's TLS certificate.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::load_directory;
use crate::config::Config;
use crate::http::Connections;
use crate::hub::Hub;

/// SIGTERM or Ctrl-C: the daemon drains and stops.
pub(super) async fn stop_on_signal(shutdown: CancellationToken) {
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
pub(super) async fn reload_on_hangup(
    shutdown: CancellationToken,
    hub: Arc<Hub>,
    config: Config,
    connections: Connections,
    server_cert: Arc<crate::tls::ServerCert>,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup()).expect("SIGHUP handler");
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = hup.recv() => {
                reload(&hub, &config, &connections).await;
                reload_certificate(&server_cert);
            }
        }
    }
}

/// A renewed server certificate: new handshakes (TCP and QUIC) present it; connections open
/// keep theirs.
fn reload_certificate(cert: &crate::tls::ServerCert) {
    match cert.reload() {
        Ok(true) => {
            tracing::info!("server certificate reloaded: new handshakes present the new one")
        }
        Ok(false) => {}
        Err(e) => {
            metrics::counter!("lienthong_reloads_total", "outcome" => "refused").increment(1);
            tracing::error!(error = %e, "server certificate reload refused; keeping the old one")
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
