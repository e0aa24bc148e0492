//! The HTTPS accept loop: connection limit, TLS handshakes in capped slots with a deadline
//! (and a cap per source address), HTTP/1.1 or HTTP/2 by ALPN, keep-alive pings, and a
//! graceful drain on shutdown. Each connection is registered under its certificate's CN so a
//! directory reload can close the connections of agencies it removed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
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
    /// TLS handshakes in progress at once (they cost CPU before anyone is known).
    pub max_handshakes: usize,
    /// Handshakes in progress from one source address.
    pub max_handshakes_per_ip: usize,
    /// Deadline for the TLS handshake and for request headers.
    pub header_timeout: Duration,
    /// HTTP/2 keep-alive ping interval; a peer that does not answer within it is dropped.
    pub keepalive: Duration,
    /// A connection with no request in flight for this long is closed (HTTP/1.1 idle
    /// connections are closed sooner, by the header timeout).
    pub idle_timeout: Duration,
    /// How long in-flight requests may run after shutdown begins.
    pub shutdown_grace: Duration,
    /// `Alt-Svc` for every answer while HTTP/3 listens (see `h3::alt_svc`).
    pub alt_svc: Option<http::HeaderValue>,
}

/// The open connections by certificate CN, so that a directory reload can close the ones
/// whose agency it removed.
#[derive(Default, Clone)]
pub struct Connections(Arc<Mutex<ConnTable>>);

#[derive(Default)]
struct ConnTable {
    next: u64,
    by_id: HashMap<u64, (Option<String>, CancellationToken)>,
}

impl Connections {
    pub(super) fn register(&self, cn: Option<String>) -> (u64, CancellationToken) {
        let mut t = self.0.lock().expect("connections lock");
        t.next += 1;
        let id = t.next;
        let token = CancellationToken::new();
        t.by_id.insert(id, (cn, token.clone()));
        metrics::gauge!("lienthong_connections_open").set(t.by_id.len() as f64);
        (id, token)
    }

    pub(super) fn remove(&self, id: u64) {
        let mut t = self.0.lock().expect("connections lock");
        t.by_id.remove(&id);
        metrics::gauge!("lienthong_connections_open").set(t.by_id.len() as f64);
    }

    /// Closes (gracefully: requests in flight finish) every connection whose CN `keep`
    /// refuses. Returns how many.
    pub fn close_unless(&self, keep: impl Fn(&str) -> bool) -> usize {
        let t = self.0.lock().expect("connections lock");
        let mut n = 0;
        for (cn, token) in t.by_id.values() {
            if !cn.as_deref().is_some_and(&keep) {
                token.cancel();
                n += 1;
            }
        }
        n
    }

    pub fn len(&self) -> usize {
        self.0.lock().expect("connections lock").by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Requests in flight on one connection and when the last one ended.
#[derive(Default)]
pub(super) struct Activity {
    inflight: std::sync::atomic::AtomicUsize,
    /// Milliseconds since `EPOCH` when the connection last became idle.
    idle_since_ms: std::sync::atomic::AtomicU64,
}

/// The clock idle times are measured on.
fn now_ms() -> u64 {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    EPOCH
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
}

impl Activity {
    /// Resolves once no request has been in flight for `limit`.
    pub(super) async fn idle_for(&self, limit: Duration) {
        use std::sync::atomic::Ordering::SeqCst;
        self.idle_since_ms.fetch_max(now_ms(), SeqCst);
        loop {
            let idle = self.inflight.load(SeqCst) == 0;
            let since = self.idle_since_ms.load(SeqCst);
            let waited = Duration::from_millis(now_ms().saturating_sub(since));
            if idle && waited >= limit {
                return;
            }
            // Check again when the limit could next be reached.
            tokio::time::sleep(if idle { limit - waited } else { limit }).await;
        }
    }
}

/// One request in flight on a connection; its end restarts the idle clock.
pub(super) struct Busy(Arc<Activity>);

impl Busy {
    pub(super) fn start(a: &Arc<Activity>) -> Busy {
        a.inflight.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Busy(a.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        use std::sync::atomic::Ordering::SeqCst;
        self.0.idle_since_ms.store(now_ms(), SeqCst);
        self.0.inflight.fetch_sub(1, SeqCst);
    }
}

/// Handshakes in progress per source address.
#[derive(Default)]
pub(super) struct PerIp(Mutex<HashMap<IpAddr, usize>>);

/// One handshake slot of an address; released on drop.
pub(super) struct IpSlot<'a> {
    table: &'a PerIp,
    ip: IpAddr,
}

impl PerIp {
    pub(super) fn take(&self, ip: IpAddr, max: usize) -> Option<IpSlot<'_>> {
        let mut m = self.0.lock().expect("per-ip lock");
        let n = m.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(IpSlot { table: self, ip })
    }
}

impl Drop for IpSlot<'_> {
    fn drop(&mut self) {
        let mut m = self.table.0.lock().expect("per-ip lock");
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

/// Serves the API on `listener` until `shutdown` fires, then drains connections for at most
/// `limits.shutdown_grace`. Returns true when every connection finished in time.
pub async fn run_https(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    api: Arc<Api>,
    limits: ServerLimits,
    connections: Connections,
    shutdown: CancellationToken,
) -> bool {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    // Connections over the limit that are answered 503 at once (beyond: closed at once).
    let refusing = Arc::new(Semaphore::new(limits.max_handshakes.div_ceil(4).max(1)));
    let tracker = tokio_util::task::TaskTracker::new();
    let ctx = Arc::new(ConnContext {
        acceptor: TlsAcceptor::from(tls),
        builder: http_builder(&limits),
        handshakes: Semaphore::new(limits.max_handshakes),
        per_ip: PerIp::default(),
        api,
        connections,
        draining: shutdown.clone(),
        limits: limits.clone(),
    });
    loop {
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
        // Beyond the limit: told so at once, not left waiting (see `refuse`).
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            super::refuse::refuse(
                stream,
                ctx.acceptor.clone(),
                &refusing,
                limits.header_timeout,
            );
            continue;
        };
        let ctx = ctx.clone();
        tracker.spawn(async move {
            let _permit = permit;
            if let Some(tls) = ctx.handshake(stream, remote).await {
                ctx.serve(tls, remote).await;
            }
        });
    }
    drop(listener);
    tracker.close();
    tokio::select! {
        _ = tracker.wait() => true,
        _ = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::warn!("shutdown grace period over; closing remaining connections");
            false
        }
    }
}

/// What every connection of one listener shares.
struct ConnContext {
    acceptor: TlsAcceptor,
    builder: auto::Builder<TokioExecutor>,
    handshakes: Semaphore,
    per_ip: PerIp,
    api: Arc<Api>,
    connections: Connections,
    draining: CancellationToken,
    limits: ServerLimits,
}

/// HTTP/1.1 with a header deadline; HTTP/2 with up to 256 streams and keep-alive pings.
fn http_builder(limits: &ServerLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(limits.keepalive))
        .keep_alive_timeout(limits.keepalive);
    builder
}

impl ConnContext {
    /// The TLS handshake in a capped slot, and one of its address's: an address that opens
    /// many connections and never finishes them only exhausts its own slots.
    async fn handshake(
        &self,
        stream: tokio::net::TcpStream,
        remote: std::net::SocketAddr,
    ) -> Option<tokio_rustls::server::TlsStream<tokio::net::TcpStream>> {
        let fail = |reason: &'static str| {
            metrics::counter!("lienthong_tls_handshake_failures_total", "reason" => reason)
                .increment(1);
        };
        let Some(_ip_slot) = self
            .per_ip
            .take(remote.ip(), self.limits.max_handshakes_per_ip)
        else {
            fail("per_ip_limit");
            return None;
        };
        let Ok(_slot) = self.handshakes.try_acquire() else {
            fail("busy");
            return None;
        };
        let deadline = self.limits.header_timeout;
        match tokio::time::timeout(deadline, self.acceptor.accept(stream)).await {
            Ok(Ok(tls)) => Some(tls),
            Ok(Err(e)) => {
                tracing::info!(%remote, error = %e, "TLS handshake refused");
                fail(handshake_reason(&e));
                None
            }
            Err(_) => {
                tracing::info!(%remote, "TLS handshake timed out");
                fail("timeout");
                None
            }
        }
    }

    /// Serves one authenticated connection until it ends, the hub drains, its agency leaves
    /// the directory or it idles too long (then in-flight requests finish, no new ones).
    async fn serve(
        &self,
        tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
        remote: std::net::SocketAddr,
    ) {
        let Some(peer) = tls.get_ref().1.peer_certificates().and_then(|c| c.first()) else {
            // The verifier requires a certificate, so this cannot happen; refuse anyway.
            return;
        };
        let peer = Arc::new(peer_cert(peer.as_ref()));
        self.api.connection_opened(&peer);
        let (conn_id, closing) = self.connections.register(peer.common_name.clone());
        let activity = Arc::new(Activity::default());
        let seen = activity.clone();
        let api = self.api.clone();
        let alt_svc = self.limits.alt_svc.clone();
        let svc = service_fn(move |req| {
            let api = api.clone();
            let peer = peer.clone();
            let alt_svc = alt_svc.clone();
            let busy = Busy::start(&seen);
            async move {
                let mut reply = api.handle(&peer, req).await;
                if let Some(v) = alt_svc {
                    reply.headers_mut().insert(http::header::ALT_SVC, v);
                }
                drop(busy);
                Ok::<_, std::convert::Infallible>(reply)
            }
        });
        let mut conn = std::pin::pin!(self.builder.serve_connection(TokioIo::new(tls), svc));
        let idle = self.limits.idle_timeout;
        let result = tokio::select! {
            r = conn.as_mut() => r,
            _ = async { tokio::select! {
                _ = closing.cancelled() => {},
                _ = self.draining.cancelled() => {},
                _ = activity.idle_for(idle) => {},
            } } => {
                conn.as_mut().graceful_shutdown();
                conn.as_mut().await
            }
        };
        self.connections.remove(conn_id);
        if let Err(e) = result {
            tracing::debug!(%remote, error = %e, "connection ended with an error");
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
