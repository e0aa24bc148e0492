//! HTTP/3 over QUIC (quinn + h3): one more thin adapter over the same [`Api`], with the same
//! client-certificate identity as HTTPS.
//!
//! The QUIC TLS configuration shares the HTTPS one's verifier and certificate
//! ([`crate::tls::ServerTls`]); the peer certificate goes through the same principal
//! resolution; each connection is registered in the same [`Connections`] table, so the one
//! `max_connections` limit counts both transports and a directory reload closes an agency's
//! QUIC connections too. Request bodies reach the API as an `http_body::Body` over the h3
//! stream, so uploads meet the same body budget; answers are written frame by frame, so the
//! audit export streams here as it does over HTTP/2.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http::{HeaderValue, Response, header};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use quinn::crypto::rustls::QuicServerConfig;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::api::{Api, Reply};
use super::server::{Activity, Busy, Connections, PerIp, ServerLimits};
use crate::config::Quic;
use crate::tls::peer_cert;

/// A UDP socket for QUIC with the configured buffer sizes (a busy hub receives bursts that
/// the kernel's default buffers drop).
pub fn bind_udp(addr: SocketAddr, q: &Quic) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(false)?;
    }
    // Best effort: the kernel caps these at net.core.rmem_max / wmem_max.
    let _ = socket.set_recv_buffer_size(q.udp_recv_buffer_bytes);
    let _ = socket.set_send_buffer_size(q.udp_send_buffer_bytes);
    socket.bind(&addr.into())?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// The QUIC endpoint: TLS from `tls` (TLS 1.3, ALPN h3, no 0-RTT), transport limits from
/// `[quic]` and `[server]`.
pub fn endpoint(
    socket: std::net::UdpSocket,
    tls: Arc<rustls::ServerConfig>,
    q: &Quic,
    limits: &ServerLimits,
) -> std::io::Result<quinn::Endpoint> {
    let crypto = QuicServerConfig::try_from(tls).map_err(std::io::Error::other)?;
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(quinn::VarInt::from_u32(q.max_concurrent_streams))
        // The peer's control and QPACK streams; the hub never pushes.
        .max_concurrent_uni_streams(quinn::VarInt::from_u32(8))
        .max_idle_timeout(Some(
            quinn::IdleTimeout::try_from(limits.idle_timeout).map_err(std::io::Error::other)?,
        ))
        .keep_alive_interval(Some(limits.keepalive))
        .enable_segmentation_offload(q.segmentation_offload);
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    server
        .transport_config(Arc::new(transport))
        .max_incoming(q.max_incoming);
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(server),
        socket,
        Arc::new(quinn::TokioRuntime),
    )
}

/// `Alt-Svc` for HTTPS answers while QUIC listens on `port`.
pub fn alt_svc(port: u16, max_age_secs: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("h3=\":{port}\"; ma={max_age_secs}")).expect("ASCII")
}

/// What every QUIC connection shares.
struct Ctx {
    api: Arc<Api>,
    connections: Connections,
    draining: CancellationToken,
    limits: ServerLimits,
    max_field_section_bytes: u64,
    /// Handshakes in progress per source address (as over TCP).
    per_ip: PerIp,
}

/// Serves HTTP/3 on `endpoint` until `shutdown`, then lets connections drain for at most
/// `limits.shutdown_grace`. Returns true when every connection finished in time.
pub async fn run_h3(
    endpoint: quinn::Endpoint,
    api: Arc<Api>,
    limits: ServerLimits,
    max_field_section_bytes: u64,
    connections: Connections,
    shutdown: CancellationToken,
) -> bool {
    let handshakes = Arc::new(Semaphore::new(limits.max_handshakes));
    let tracker = tokio_util::task::TaskTracker::new();
    let ctx = Arc::new(Ctx {
        api,
        connections,
        draining: shutdown.clone(),
        limits: limits.clone(),
        max_field_section_bytes,
        per_ip: PerIp::default(),
    });
    loop {
        let incoming = tokio::select! {
            _ = shutdown.cancelled() => break,
            i = endpoint.accept() => match i {
                Some(i) => i,
                None => break,
            },
        };
        if ctx.connections.len() >= limits.max_connections {
            handshake_failed("busy");
            incoming.refuse();
            continue;
        }
        // Under load, a client first proves it owns its address (a Retry round trip), so
        // spoofed sources cannot make the hub do handshakes.
        let loaded = handshakes.available_permits() < limits.max_handshakes / 2;
        if loaded && !incoming.remote_address_validated() {
            let _ = incoming.retry();
            continue;
        }
        let Ok(permit) = handshakes.clone().try_acquire_owned() else {
            handshake_failed("busy");
            incoming.refuse();
            continue;
        };
        let ctx = ctx.clone();
        tracker.spawn(async move {
            let remote = incoming.remote_address();
            let Some(ip_slot) = ctx
                .per_ip
                .take(remote.ip(), ctx.limits.max_handshakes_per_ip)
            else {
                handshake_failed("per_ip_limit");
                incoming.refuse();
                return;
            };
            let conn = handshake(incoming, ctx.limits.header_timeout).await;
            drop(ip_slot);
            drop(permit);
            if let Some(conn) = conn {
                ctx.serve(conn, remote).await;
            }
        });
    }
    tracker.close();
    let clean = tokio::select! {
        _ = tracker.wait() => true,
        _ = tokio::time::sleep(limits.shutdown_grace) => false,
    };
    endpoint.close(quinn::VarInt::from_u32(0), b"shutting down");
    let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
    clean
}

fn handshake_failed(reason: &'static str) {
    metrics::counter!("lienthong_tls_handshake_failures_total", "reason" => reason).increment(1);
}

/// The QUIC handshake (TLS 1.3 with the client certificate) within the deadline.
async fn handshake(incoming: quinn::Incoming, deadline: Duration) -> Option<quinn::Connection> {
    let remote = incoming.remote_address();
    let connecting = match incoming.accept() {
        Ok(c) => c,
        Err(e) => {
            handshake_failed(reason(&e));
            return None;
        }
    };
    match tokio::time::timeout(deadline, connecting).await {
        Ok(Ok(conn)) => Some(conn),
        Ok(Err(e)) => {
            tracing::info!(%remote, error = %e, "QUIC handshake refused");
            handshake_failed(reason(&e));
            None
        }
        Err(_) => {
            handshake_failed("timeout");
            None
        }
    }
}

/// The handshake failure label, from the TLS alert the connection was closed with (the same
/// labels as HTTPS).
fn reason(e: &quinn::ConnectionError) -> &'static str {
    let quinn::ConnectionError::TransportError(t) = e else {
        return match e {
            quinn::ConnectionError::TimedOut => "timeout",
            _ => "io_error",
        };
    };
    let code = u64::from(t.code);
    if !(0x100..0x200).contains(&code) {
        return "protocol_error";
    }
    match code - 0x100 {
        116 => "no_client_certificate",
        48 => "unknown_issuer",
        45 => "certificate_expired",
        44 => "certificate_revoked",
        // 51 (decrypt_error): a certificate whose signature does not verify.
        42 | 43 | 46 | 51 => "bad_certificate",
        120 => "no_alpn",
        _ => "tls_error",
    }
}

impl Ctx {
    /// Serves one authenticated connection until it ends, the hub drains, its agency leaves
    /// the directory or it idles too long; then GOAWAY, and requests in flight finish.
    async fn serve(self: &Arc<Self>, conn: quinn::Connection, remote: SocketAddr) {
        let Some(peer) = conn
            .peer_identity()
            .and_then(|id| {
                id.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                    .ok()
            })
            .and_then(|certs| certs.first().map(|c| peer_cert(c.as_ref())))
        else {
            conn.close(quinn::VarInt::from_u32(0x0101), b"no client certificate");
            return;
        };
        let peer = Arc::new(peer);
        self.api.connection_opened(&peer);
        let (conn_id, closing) = self.connections.register(peer.common_name.clone());
        let mut builder = h3::server::builder();
        builder.max_field_section_size(self.max_field_section_bytes);
        let h3 = builder.build(h3_quinn::Connection::new(conn.clone())).await;
        if let Ok(h3) = h3 {
            self.requests(h3, peer, &closing).await;
        }
        // H3_NO_ERROR: everything asked before the GOAWAY was answered.
        conn.close(quinn::VarInt::from_u32(0x100), b"");
        self.connections.remove(conn_id);
        tracing::debug!(%remote, "QUIC connection ended");
    }

    async fn requests(
        self: &Arc<Self>,
        mut h3: h3::server::Connection<h3_quinn::Connection, Bytes>,
        peer: Arc<crate::tls::PeerCert>,
        closing: &CancellationToken,
    ) {
        let activity = Arc::new(Activity::default());
        let requests = tokio_util::task::TaskTracker::new();
        let mut going_away = false;
        loop {
            let stop = async {
                tokio::select! {
                    _ = closing.cancelled() => {},
                    _ = self.draining.cancelled() => {},
                    _ = activity.idle_for(self.limits.idle_timeout) => {},
                }
            };
            let next = tokio::select! {
                r = h3.accept() => r,
                _ = stop, if !going_away => {
                    going_away = true;
                    requests.close();
                    let _ = h3.shutdown(0).await;
                    continue;
                }
                // After the GOAWAY, the connection closes once its last answer is out (a
                // client keeping it open must not hold the drain up).
                _ = requests.wait(), if going_away => break,
            };
            match next {
                Ok(Some(resolver)) => {
                    let (api, peer) = (self.api.clone(), peer.clone());
                    let busy = Busy::start(&activity);
                    let deadline = self.limits.header_timeout;
                    requests.spawn(async move {
                        // A stream whose headers never come must not hold its slot (and keep
                        // the connection busy) forever: the same deadline as over TCP.
                        let head = tokio::time::timeout(deadline, resolver.resolve_request());
                        if let Ok(Ok((req, stream))) = head.await {
                            answer(&api, &peer, req, stream).await;
                        }
                        drop(busy);
                    });
                }
                Ok(None) | Err(_) => break,
            }
        }
        requests.close();
        requests.wait().await;
    }
}

type Stream = h3::server::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>;

/// The receive half of a request stream.
type RecvHalf = h3::server::RequestStream<h3_quinn::RecvStream, Bytes>;

/// One request: the API's answer, written head then body frames.
async fn answer(api: &Api, peer: &crate::tls::PeerCert, req: http::Request<()>, stream: Stream) {
    let (mut send, recv) = stream.split();
    let parked = Arc::new(std::sync::Mutex::new(None));
    let body = H3Body {
        recv: Some(recv),
        done: false,
        parked: parked.clone(),
    };
    let reply = api.handle(peer, req.map(|()| body)).await;
    if let Err(e) = write(&mut send, reply).await {
        tracing::debug!(error = %e, "HTTP/3 answer not delivered");
    }
    let unread = parked.lock().expect("parked stream").take();
    if let Some(recv) = unread {
        finish_reading(recv).await;
    }
}

/// After the answer: the end of a request the API did not read (a GET's FIN, usually already
/// here) is read, so the client's stream ends cleanly; what is still unread after that is
/// declined with H3_NO_ERROR (RFC 9114 §4.1), never with the bare STOP_SENDING(0) a dropped
/// quinn stream sends, which a client sees as an error.
async fn finish_reading(mut recv: RecvHalf) {
    let mut budget = 1usize << 20;
    let drained = tokio::time::timeout(Duration::from_secs(1), async {
        while let Ok(Some(chunk)) = recv.recv_data().await {
            budget = budget.saturating_sub(chunk.remaining());
            if budget == 0 {
                return false;
            }
        }
        true
    })
    .await;
    if drained != Ok(true) {
        recv.stop_sending(h3::error::Code::H3_NO_ERROR);
    }
}

async fn write(
    send: &mut h3::server::RequestStream<h3_quinn::SendStream<Bytes>, Bytes>,
    reply: Reply,
) -> Result<(), h3::error::StreamError> {
    let (mut parts, mut body) = reply.into_parts();
    if let Some(n) = body.size_hint().exact() {
        parts
            .headers
            .entry(header::CONTENT_LENGTH)
            .or_insert(n.into());
    }
    send.send_response(Response::from_parts(parts, ())).await?;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        if let Ok(data) = frame.into_data()
            && !data.is_empty()
        {
            send.send_data(data).await?;
        }
    }
    send.finish().await
}

/// A request body read from the h3 stream as the API asks for it (backpressure: QUIC flow
/// control holds the client back while the body budget holds the API back). Dropped before
/// its end, it parks the stream for [`answer`] to end properly once the answer is out.
pub struct H3Body {
    recv: Option<RecvHalf>,
    done: bool,
    parked: Arc<std::sync::Mutex<Option<RecvHalf>>>,
}

impl Drop for H3Body {
    fn drop(&mut self) {
        if !self.done
            && let Some(recv) = self.recv.take()
            && let Ok(mut slot) = self.parked.lock()
        {
            *slot = Some(recv);
        }
    }
}

impl Body for H3Body {
    type Data = Bytes;
    type Error = h3::error::StreamError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let Some(recv) = self.recv.as_mut() else {
            return Poll::Ready(None);
        };
        match std::task::ready!(recv.poll_recv_data(cx)) {
            Ok(Some(mut buf)) => {
                Poll::Ready(Some(Ok(Frame::data(buf.copy_to_bytes(buf.remaining())))))
            }
            Ok(None) => {
                self.done = true;
                Poll::Ready(None)
            }
            Err(e) => {
                self.done = true;
                Poll::Ready(Some(Err(e)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}
