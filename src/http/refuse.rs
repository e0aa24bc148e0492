//! Connections beyond `max_connections` are told so instead of waiting unseen in the kernel's
//! backlog: a bounded number of them complete the TLS handshake and get `503 server_busy` with
//! `Retry-After` for whatever they ask, then are closed; past that bound they are closed at
//! once (the cheapest refusal there is). Either way the client learns at once that the hub is
//! full and when to come back.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use super::error::ApiError;

/// Seconds a refused client is asked to wait.
const RETRY_AFTER_SECS: u32 = 2;

/// Refuses one connection over the limit (see the module docs); `lane` bounds how many are
/// refused politely at once.
pub fn refuse(stream: TcpStream, acceptor: TlsAcceptor, lane: &Arc<Semaphore>, deadline: Duration) {
    let Ok(slot) = lane.clone().try_acquire_owned() else {
        metrics::counter!("lienthong_connections_refused_total", "how" => "closed").increment(1);
        return; // dropped: closed at once
    };
    metrics::counter!("lienthong_connections_refused_total", "how" => "503").increment(1);
    tokio::spawn(async move {
        let _slot = slot;
        let _ = tokio::time::timeout(deadline, answer_busy(stream, acceptor)).await;
    });
}

async fn answer_busy(stream: TcpStream, acceptor: TlsAcceptor) {
    let Ok(tls) = acceptor.accept(stream).await else {
        return;
    };
    let svc = service_fn(|_req| async {
        let mut r = ApiError::new(
            http::StatusCode::SERVICE_UNAVAILABLE,
            "server_busy",
            "the hub has as many connections as it serves; retry after the given seconds",
        )
        .retry_after(RETRY_AFTER_SECS)
        .into_response();
        r.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
        Ok::<_, std::convert::Infallible>(r.map(|b: Full<Bytes>| b))
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().keep_alive(false).timer(TokioTimer::new());
    let _ = builder.serve_connection(TokioIo::new(tls), svc).await;
}
