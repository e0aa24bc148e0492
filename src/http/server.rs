//! The HTTPS accept loop: connection limit, TLS handshake with a deadline, HTTP/1.1 or HTTP/2
//! by ALPN, and a graceful drain on shutdown.

use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::api::Api;
use crate::tls::peer_cert;

#[derive(Debug, Clone)]
pub struct ServerLimits {
    pub max_connections: usize,
    /// Deadline for the TLS handshake and for request headers.
    pub header_timeout: Duration,
    /// How long in-flight requests may run after shutdown begins.
    pub shutdown_grace: Duration,
}

/// Serves the API on `listener` until `shutdown` fires, then drains connections for at most
/// `limits.shutdown_grace`. Returns true when every connection finished in time.
pub async fn run_https(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    api: Arc<Api>,
    limits: ServerLimits,
    shutdown: CancellationToken,
) -> bool {
    let acceptor = TlsAcceptor::from(tls);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256);

    loop {
        // Beyond the limit, connections wait in the kernel's backlog rather than being served.
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = permits.clone().acquire_owned() => p.expect("semaphore never closed"),
        };
        let (stream, remote) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let api = api.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let handshake_timeout = limits.header_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::info!(%remote, error = %e, "TLS handshake refused");
                    metrics::counter!("lienthong_tls_handshake_failures_total", "reason" => handshake_reason(&e)).increment(1);
                    return;
                }
                Err(_) => {
                    tracing::info!(%remote, "TLS handshake timed out");
                    metrics::counter!("lienthong_tls_handshake_failures_total", "reason" => "timeout").increment(1);
                    return;
                }
            };
            let Some(peer) = tls.get_ref().1.peer_certificates().and_then(|c| c.first()) else {
                // The verifier requires a certificate, so this cannot happen; refuse anyway.
                return;
            };
            let peer = Arc::new(peer_cert(peer.as_ref()));
            let svc = service_fn(move |req| {
                let api = api.clone();
                let peer = peer.clone();
                async move { Ok::<_, std::convert::Infallible>(api.handle(&peer, req).await) }
            });
            let conn = builder
                .serve_connection(TokioIo::new(tls), svc)
                .into_owned();
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(%remote, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => true,
        _ = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::warn!("shutdown grace period over; closing remaining connections");
            false
        }
    }
}

/// A short, bounded label for a failed handshake.
fn handshake_reason(e: &std::io::Error) -> &'static str {
    use rustls::{CertificateError, Error};
    match e.get_ref().and_then(|inner| inner.downcast_ref::<Error>()) {
        Some(Error::NoCertificatesPresented) => "no_client_certificate",
        Some(Error::InvalidCertificate(CertificateError::UnknownIssuer)) => "unknown_issuer",
        Some(Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        )) => "certificate_expired",
        Some(Error::InvalidCertificate(CertificateError::Revoked)) => "certificate_revoked",
        Some(Error::InvalidCertificate(_)) => "bad_certificate",
        Some(Error::NoApplicationProtocol) => "no_alpn",
        Some(Error::InappropriateMessage { .. } | Error::InvalidMessage(_)) => "protocol_error",
        Some(Error::PeerIncompatible(_)) => "incompatible",
        Some(_) => "tls_error",
        None if e.kind() == std::io::ErrorKind::UnexpectedEof => "eof",
        None => "io_error",
    }
}
