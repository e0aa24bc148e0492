//! `lienthong receive`: a push endpoint for agencies (the agency's side of push delivery).
//!
//! It takes only what the hub sends: the TLS client certificate must chain to `--hub-ca`
//! and carry the hub's CN, and the Standard Webhooks signature must verify with the hub's
//! signing certificate (which still holds behind a TLS-terminating proxy, where the client
//! certificate is not seen). The packet's own XML signature is verified as `lienthong
//! verify` does and its verdict kept next to it. The packet is then written atomically
//! (temporary file, fsync, rename, directory fsync) as `OUT/{id}.edxml`, with
//! `OUT/{id}.json` describing it, before the answer: a 2xx means the packet is on disk.
//! A push whose id is already there is answered 200 without writing again (the hub
//! delivers at least once, with the same id on every retry).

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// What the endpoint checks against.
pub struct ReceiveSettings {
    pub out: PathBuf,
    /// The hub's signing certificate (DER): push signatures verify with it.
    pub hub_signing_cert: Vec<u8>,
    /// The CN the hub's client certificate must carry.
    pub hub_cn: String,
    /// Packet signatures are checked against this trust store.
    pub trust: crate::dsig::TrustStore,
    /// Refuse (422) a packet whose signature does not verify, instead of keeping it with
    /// its verdict.
    pub require_verified: bool,
    pub max_bytes: usize,
}

struct Receiver {
    settings: ReceiveSettings,
    /// Serializes the check-and-write of one id (striped), so two deliveries of the same
    /// id at once cannot interleave their writes.
    stripes: Vec<Mutex<()>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

/// Serves until `stop` resolves; prints the bound address first (`--listen` may use port 0).
pub async fn serve(
    listen: std::net::SocketAddr,
    tls_cert: &Path,
    tls_key: &Path,
    hub_ca: &Path,
    settings: ReceiveSettings,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), ReceiveError> {
    std::fs::create_dir_all(&settings.out)?;
    let tls = crate::tls::server_config(tls_cert, tls_key, hub_ca)?;
    let acceptor = TlsAcceptor::from(tls.tcp);
    let listener = TcpListener::bind(listen).await?;
    println!(
        "lienthong receive: listening on https://{}",
        listener.local_addr()?
    );
    let receiver = Arc::new(Receiver {
        settings,
        stripes: (0..16).map(|_| Mutex::new(())).collect(),
    });
    let handler = move |req, cn| receiver.clone().handle(req, cn);
    Ok(serve_tls(listener, acceptor, handler, stop).await?)
}

/// Accepts TLS connections on `listener` until `stop` resolves and answers each request
/// with `handler(request, client certificate CN)`, over HTTP/2 or HTTP/1.1 (also the load
/// tool's push sink).
pub(crate) async fn serve_tls<H, F>(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    handler: H,
    stop: impl std::future::Future<Output = ()>,
) -> std::io::Result<()>
where
    H: Fn(Request<Incoming>, Option<String>) -> F + Clone + Send + Sync + 'static,
    F: std::future::Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let mut stop = std::pin::pin!(stop);
    loop {
        let (tcp, _) = tokio::select! {
            r = listener.accept() => r?,
            _ = &mut stop => return Ok(()),
        };
        let (acceptor, handler) = (acceptor.clone(), handler.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let cn = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| crate::tls::peer_cert(c).common_name);
            let svc = hyper::service::service_fn(move |req| {
                let answer = handler(req, cn.clone());
                async move { Ok::<_, Infallible>(answer.await) }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), svc)
                .await;
        });
    }
}

fn answer(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

fn refuse(status: StatusCode, why: impl std::fmt::Display) -> Response<Full<Bytes>> {
    answer(status, json!({"error": why.to_string()}))
}

impl Receiver {
    async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        cn: Option<String>,
    ) -> Response<Full<Bytes>> {
        // The body is read before any answer: an HTTP/2 answer to a request whose upload
        // is still running resets its stream, and clients report that instead of the
        // answer. Only holders of a certificate from --hub-ca get this far (TLS).
        let (parts, body) = req.into_parts();
        let limit = self.settings.max_bytes;
        let body = match Limited::new(body, limit).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                return refuse(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the body exceeds {limit} bytes"),
                );
            }
        };
        if cn.as_deref() != Some(self.settings.hub_cn.as_str()) {
            return refuse(
                StatusCode::FORBIDDEN,
                format!("the client certificate is not the hub's ({:?})", cn),
            );
        }
        if parts.method != http::Method::POST {
            return refuse(StatusCode::METHOD_NOT_ALLOWED, "POST a packet");
        }
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let (Some(id), Some(ts), Some(sig)) = (
            header("webhook-id"),
            header("webhook-timestamp"),
            header("webhook-signature"),
        ) else {
            return refuse(
                StatusCode::BAD_REQUEST,
                "webhook-id, webhook-timestamp and webhook-signature are required",
            );
        };
        // The id names the files: only the hub's own form (no path can hide in it).
        if crate::ids::parse_id(&id).is_none() {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("webhook-id {id:?} is not a hub item id"),
            );
        }
        let Ok(ts) = ts.trim().parse::<u64>() else {
            return refuse(StatusCode::BAD_REQUEST, "webhook-timestamp is not a number");
        };
        let cert = &self.settings.hub_signing_cert;
        if let Err(e) = crate::webhook::verify(cert, &id, ts, &sig, &body, SystemTime::now()) {
            return refuse(StatusCode::UNAUTHORIZED, format!("push signature: {e}"));
        }
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.store(&id, &body))
            .await
            .unwrap_or_else(|e| refuse(StatusCode::INTERNAL_SERVER_ERROR, e))
    }

    /// Verifies the packet and writes it (once per id).
    fn store(&self, id: &str, body: &[u8]) -> Response<Full<Bytes>> {
        let packet_path = self.settings.out.join(format!("{id}.edxml"));
        let meta_path = self.settings.out.join(format!("{id}.json"));
        let stripe = crate::ids::parse_id(id).unwrap_or(0) as usize % self.stripes.len();
        let _guard = self.stripes[stripe].lock().expect("stripe lock");
        if packet_path.exists() {
            return answer(StatusCode::OK, json!({"id": id, "duplicate": true}));
        }
        let (from, verdict, message) = match crate::edxml::parse(body) {
            Err(e) => {
                return refuse(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("{}: {e}", e.code()),
                );
            }
            Ok(p) => {
                let v = crate::dsig::verify_for_sender(
                    body,
                    &p.from,
                    &[],
                    &self.settings.trust,
                    SystemTime::now(),
                );
                match v {
                    Ok(_) => (p.from, crate::dsig::VERDICT_VERIFIED.to_owned(), None),
                    Err(f) => (p.from, f.code.as_str().to_owned(), Some(f.message)),
                }
            }
        };
        if self.settings.require_verified && verdict != crate::dsig::VERDICT_VERIFIED {
            return refuse(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("the packet signature: {verdict}"),
            );
        }
        let meta = json!({
            "id": id,
            "from": from,
            "sha256": crate::digest::sha256_hex(body),
            "size": body.len(),
            "verdict": verdict,
            "message": message,
            "received_at": crate::ids::rfc3339(crate::ids::now_ms()),
        });
        let written = crate::files::write_atomic(&meta_path, meta.to_string().as_bytes())
            .and_then(|()| crate::files::write_atomic(&packet_path, body));
        match written {
            Ok(()) => answer(
                StatusCode::OK,
                json!({"id": id, "stored": true, "verdict": verdict}),
            ),
            Err(e) => refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("could not store the packet: {e}"),
            ),
        }
    }
}
