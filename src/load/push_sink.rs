//! `bench --mode push`: an HTTPS endpoint in the load tool that takes the hub's pushes and
//! notes when each item arrived, so the report gives push throughput and the time from a
//! submission's acceptance to the endpoint's 2xx. It checks the hub's client certificate
//! (the TLS layer does) but writes nothing: it measures the hub, not a disk.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};

/// Arrival and acceptance times per item id.
#[derive(Default)]
pub(super) struct Times {
    arrived: Mutex<HashMap<String, Instant>>,
    accepted: Mutex<HashMap<String, Instant>>,
}

impl Times {
    pub(super) fn accepted(&self, id: String) {
        self.accepted
            .lock()
            .expect("times lock")
            .insert(id, Instant::now());
    }

    fn arrived(&self, id: String) {
        let mut a = self.arrived.lock().expect("times lock");
        a.entry(id).or_insert_with(Instant::now);
    }

    pub(super) fn counts(&self) -> (usize, usize) {
        (
            self.accepted.lock().expect("times lock").len(),
            self.arrived.lock().expect("times lock").len(),
        )
    }

    /// Acceptance → arrival per item that did both (µs; 0 when the push came in before the
    /// submitter read its answer), and the last arrival.
    pub(super) fn latencies(&self) -> (Vec<u32>, Option<Instant>) {
        let accepted = self.accepted.lock().expect("times lock");
        let arrived = self.arrived.lock().expect("times lock");
        let lat = accepted
            .iter()
            .filter_map(|(id, t0)| arrived.get(id).map(|t1| t1.saturating_duration_since(*t0)))
            .map(|d| d.as_micros().min(u32::MAX as u128) as u32)
            .collect();
        (lat, arrived.values().max().copied())
    }
}

/// Starts the sink on 127.0.0.1 (any port) with the dev PKI in `certs`; returns its URL.
pub(super) async fn start(certs: &Path, times: Arc<Times>) -> Result<String, String> {
    let tls = crate::tls::server_config(
        &certs.join("server.pem"),
        &certs.join("server.key"),
        &certs.join("ca.pem"),
    )
    .map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let url = format!(
        "https://{}/push",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    let handler = move |req: http::Request<hyper::body::Incoming>, _cn: Option<String>| {
        let times = times.clone();
        async move {
            let id = req
                .headers()
                .get("webhook-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let _ = req.into_body().collect().await;
            if let Some(id) = id {
                times.arrived(id);
            }
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::NO_CONTENT;
            r
        }
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.tcp);
    tokio::spawn(crate::receive::serve_tls(
        listener,
        acceptor,
        handler,
        std::future::pending(),
    ));
    Ok(url)
}

/// Waits until every accepted item arrived, or `limit` passes.
pub(super) async fn drain(times: &Times, limit: Duration) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let (accepted, arrived) = times.counts();
        if arrived >= accepted {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
