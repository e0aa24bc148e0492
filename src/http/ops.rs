//! The ops listener: plain HTTP on a management address, for probes, Prometheus and the
//! dashboard. It serves figures only — never a document or its metadata — but per-agency
//! figures (who sends how much, who stopped pulling) are sensitive: it listens on loopback by
//! default, and with `[server] ops_token` set everything but `/healthz` and `/readyz` needs
//! `Authorization: Bearer <token>` (the dashboard page takes it as `?token=`). It also takes
//! online backups (`POST /admin/backup`), which is why a non-loopback ops listener without a
//! token is warned about at start.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::hub::Hub;

/// The dashboard page: one self-contained file, no CDN, compiled into the binary.
const DASHBOARD: &str = include_str!("dashboard.html");

/// Whether the hub takes traffic: false before start-up completes and while draining.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::SeqCst);
    }
    pub fn get(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// What the ops endpoints read.
#[derive(Clone)]
pub struct OpsState {
    pub ready: Readiness,
    pub hub: Arc<Hub>,
    /// `None` when another recorder was installed first (tests embedding the library).
    pub metrics: Option<PrometheusHandle>,
    /// The bearer token the sensitive endpoints need, when configured.
    pub token: Option<Arc<str>>,
}

/// Whether the request may read the sensitive endpoints. The page itself carries no figures,
/// so it is served to anyone; its data request carries the token.
fn authorized(state: &OpsState, req: &Request<Incoming>) -> bool {
    let Some(token) = &state.token else {
        return true;
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Constant time in the token's length: no byte-by-byte guessing by timing.
    given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "no-store")
        .body(Full::new(body.into()))
        .expect("valid response")
}

const TEXT: &str = "text/plain; charset=utf-8";

async fn handle(
    state: OpsState,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(match req.uri().path() {
        "/healthz" => reply(StatusCode::OK, TEXT, "ok\n"),
        "/readyz" => match state.hub.storage_problem() {
            Some(why) => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                TEXT,
                format!("not ready: {why}\n"),
            ),
            None if state.ready.get() => reply(StatusCode::OK, TEXT, "ready\n"),
            None => reply(StatusCode::SERVICE_UNAVAILABLE, TEXT, "not ready\n"),
        },
        "/dashboard" | "/dashboard/" => {
            reply(StatusCode::OK, "text/html; charset=utf-8", DASHBOARD)
        }
        _ if !authorized(&state, &req) => {
            let mut r = reply(
                StatusCode::UNAUTHORIZED,
                TEXT,
                "this endpoint needs Authorization: Bearer <ops_token>\n",
            );
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer"),
            );
            r
        }
        "/metrics" => match &state.metrics {
            Some(h) => reply(StatusCode::OK, "text/plain; version=0.0.4", h.render()),
            None => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                TEXT,
                "metrics recorder not installed\n",
            ),
        },
        "/admin/backup" if req.method() == http::Method::POST => backup(&state, req).await,
        "/dashboard/stats" => {
            match super::api::stats_response(
                &crate::hub::Service::new(state.hub.clone()),
                req.uri().query(),
            )
            .await
            {
                Ok(r) => r,
                Err(e) => e.into_response(),
            }
        }
        _ => reply(StatusCode::NOT_FOUND, TEXT, "not found\n"),
    })
}

/// `POST /admin/backup` with `{"to": "/absolute/new/dir"}`: an online backup (see
/// `crate::backup`); the answer is the manifest.
async fn backup(state: &OpsState, req: Request<Incoming>) -> Response<Full<Bytes>> {
    use http_body_util::BodyExt;
    let bad = |status, msg: String| {
        let body = serde_json::json!({"error": {"code": "bad_request", "message": msg}});
        reply(status, "application/json", body.to_string())
    };
    let body = match http_body_util::Limited::new(req.into_body(), 4096)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) => return bad(StatusCode::BAD_REQUEST, format!("unreadable body: {e}")),
    };
    let to = match serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["to"].as_str().map(std::path::PathBuf::from))
    {
        Some(to) => to,
        None => {
            let msg = "the body must be {\"to\": \"/absolute/new/dir\"}".to_owned();
            return bad(StatusCode::BAD_REQUEST, msg);
        }
    };
    match crate::hub::Service::new(state.hub.clone()).backup(to).await {
        Ok(m) => reply(
            StatusCode::OK,
            "application/json",
            serde_json::to_vec(&m).expect("manifests serialize"),
        ),
        Err(e) => super::ApiError::from(e).into_response(),
    }
}

/// Serves the ops endpoints until `shutdown` fires.
pub async fn run_ops(listener: TcpListener, state: OpsState, shutdown: CancellationToken) {
    loop {
        let (stream, _) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "ops accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let state = state.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(state.clone(), req));
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                _ = conn => {}
                _ = shutdown.cancelled() => {}
            }
        });
    }
}
