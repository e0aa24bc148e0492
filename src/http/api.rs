//! API v1 routes: decode the request, call the hub, encode the answer.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};

use super::ApiBody;
use super::body::{Frames, linger};
use super::error::ApiError;
use super::query::{query_id, query_str, query_time, query_u64, required_u64};
use crate::hub::{Hub, Principal, Scope, Window};
use crate::tls::PeerCert;

/// Request limits applied by the API (upload limits are the core's: `HubSettings::uploads`).
#[derive(Debug, Clone)]
pub struct ApiLimits {
    pub request_timeout: Duration,
}

pub struct Api {
    hub: Arc<Hub>,
    service: crate::hub::Service,
    limits: ApiLimits,
}

type Resp = Response<Full<Bytes>>;

/// The API's contract (OpenAPI 3.1), kept in the repository and served as is.
const OPENAPI: &str = include_str!("../../docs/openapi.json");

/// What the API answers: a whole body, or one streamed from a channel (the log export).
pub type Reply = Response<http_body_util::Either<Full<Bytes>, super::stream::ChannelBody>>;

/// A JSON answer: the core's typed result, serialized here (the transport's job).
fn json<T: serde::Serialize + ?Sized>(status: StatusCode, value: &T) -> Resp {
    let body = serde_json::to_vec(value).expect("answers serialize");
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("valid response")
}

impl Api {
    pub fn new(hub: Arc<Hub>, limits: ApiLimits) -> Api {
        Api {
            service: crate::hub::Service::new(hub.clone()),
            hub,
            limits,
        }
    }

    /// A connection was opened with `peer`'s certificate (each transport calls this once).
    pub fn connection_opened(&self, peer: &PeerCert) {
        self.hub
            .client_certificate_seen(peer.common_name.as_deref(), &peer.sha256, peer.not_after);
    }

    /// Handles one request within the request timeout (for a streamed answer: until it
    /// starts); never fails at the HTTP level.
    pub async fn handle<B: ApiBody>(&self, peer: &PeerCert, req: Request<B>) -> Reply {
        use http_body_util::Either;
        if req.method() == Method::GET && req.uri().path() == "/v1/audit/export" {
            return match self.export(peer, req.uri().query()).await {
                Ok(r) => r,
                Err(e) => e.into_response().map(Either::Left),
            };
        }
        self.handle_whole(peer, req).await.map(Either::Left)
    }

    async fn handle_whole<B: ApiBody>(&self, peer: &PeerCert, req: Request<B>) -> Resp {
        match tokio::time::timeout(self.limits.request_timeout, self.route(peer, req)).await {
            Ok(Ok(resp)) => resp,
            Ok(Err(e)) => e.into_response(),
            Err(_) => ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!(
                    "the request took longer than {:?}",
                    self.limits.request_timeout
                ),
            )
            .into_response(),
        }
    }

    /// The principal the client certificate stands for (the core decides, see
    /// `hub::identity`).
    fn caller(&self, peer: &PeerCert) -> Result<Principal, ApiError> {
        Ok(self
            .hub
            .identify(peer.common_name.as_deref(), &peer.sha256)?)
    }

    async fn route<B: ApiBody>(&self, peer: &PeerCert, req: Request<B>) -> Result<Resp, ApiError> {
        let caller = match self.caller(peer) {
            Ok(c) => c,
            Err(e) => return Err(refuse_draining(req, e)),
        };
        // Posting endpoints are for agencies (the federation one for peer hubs): refuse
        // others before the body is read, cleanly.
        if req.method() == Method::POST {
            let federation = matches!(
                req.uri().path(),
                "/v1/federation/packets" | "/v1/federation/reports"
            );
            let allowed = match (&caller, federation) {
                (Principal::PeerHub(_), true) => Ok(()),
                (_, true) => Err(crate::hub::HubError::NotAPeer),
                (c, false) => c.agency().map(|_| ()),
            };
            if let Err(e) = allowed {
                return Err(refuse_draining(req, e.into()));
            }
        }
        // One agency's flood fills only its own share (429 before any work or body read).
        let _slot = match &caller {
            Principal::Agency(p) => match self.hub.agency_slot(&p.organ_id) {
                Ok(slot) => Some(slot),
                Err(e) => return Err(refuse_draining(req, e.into())),
            },
            _ => None,
        };
        match &caller {
            Principal::Agency(p) => {
                let name = p.organ_id.clone();
                crate::hub::as_agency(name, self.dispatch(caller, req)).await
            }
            _ => self.dispatch(caller, req).await,
        }
    }

    async fn dispatch<B: ApiBody>(
        &self,
        caller: Principal,
        req: Request<B>,
    ) -> Result<Resp, ApiError> {
        let path = req.uri().path().to_owned();
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match (req.method(), segments.as_slice()) {
            (&Method::POST, ["v1", "documents"]) => self.submit(&caller, req).await,
            (&Method::POST, ["v1", "federation", "packets"]) => self.forwarded(&caller, req).await,
            (&Method::POST, ["v1", "federation", "reports"]) => self.report(&caller, req).await,
            (&Method::GET, ["v1", "inbox"]) => self.inbox(&caller, req.uri().query()).await,
            (&Method::GET, ["v1", "documents", id]) => self.fetch(&caller, id).await,
            (&Method::POST, ["v1", "inbox", id, "ack"]) => self.ack(&caller, id).await,
            (&Method::POST, ["v1", "inbox", "ack"]) => self.ack_many(&caller, req).await,
            (&Method::GET, ["v1", "stats"]) => {
                let window = window_of(req.uri().query())?;
                Ok(json(
                    StatusCode::OK,
                    &self.service.stats(&caller, window).await?,
                ))
            }
            (&Method::GET, ["v1", "documents", id, "status"]) => {
                let v = self.service.document_status(&caller, id).await?;
                Ok(json(StatusCode::OK, &v))
            }
            (&Method::GET, ["v1", "sent"]) => {
                let q = req.uri().query();
                let (since, cursor) = (query_time(q, "since")?, query_id(q, "cursor")?);
                let limit = query_u64(q, "limit")?.unwrap_or(50) as usize;
                let v = self.service.sent(&caller, since, cursor, limit).await?;
                Ok(json(StatusCode::OK, &v))
            }
            (&Method::GET, ["v1", "documents", id, "receipts"]) => {
                let receipts = self.service.receipts(&caller, id).await?;
                Ok(json(
                    StatusCode::OK,
                    &serde_json::json!({ "receipts": receipts }),
                ))
            }
            (&Method::GET, ["v1", "audit"]) => self.audit_page(caller, req.uri().query()).await,
            (&Method::GET, ["v1", "audit", "head"]) => self.tree_head().await,
            (&Method::GET, ["v1", "audit", "proof", index]) => {
                self.inclusion_proof(&caller, index, req.uri().query())
                    .await
            }
            (&Method::GET, ["v1", "audit", "consistency"]) => {
                let q = req.uri().query();
                let (from, to) = (required_u64(q, "from")?, required_u64(q, "to")?);
                let v = self.service.consistency_proof(from, to).await?;
                Ok(json(StatusCode::OK, &v))
            }
            (&Method::GET, ["v1", "openapi.json"]) => Ok(Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from_static(OPENAPI.as_bytes())))
                .expect("valid response")),
            (
                _,
                ["v1", "documents"] | ["v1", "inbox"] | ["v1", "documents", _] | ["v1", "stats"],
            )
            | (_, ["v1", "inbox", _, "ack"]) => Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{} is not allowed on {path}", req.method()),
            )),
            _ => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "no_route",
                format!("no route {path}"),
            )),
        }
    }

    /// `GET /v1/audit/head`: the latest signed tree head (JWS).
    async fn tree_head(&self) -> Result<Resp, ApiError> {
        let jws = self.service.tree_head().await?;
        Ok(Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/jose")
            .body(Full::new(Bytes::from(jws)))
            .expect("valid response"))
    }

    /// `GET /v1/audit/proof/{index}`.
    async fn inclusion_proof(
        &self,
        caller: &Principal,
        index: &str,
        q: Option<&str>,
    ) -> Result<Resp, ApiError> {
        let index: u64 = index.parse().map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "the index must be a number",
            )
        })?;
        let size = query_u64(q, "tree_size")?;
        let v = self.service.inclusion_proof(caller, index, size).await?;
        Ok(json(StatusCode::OK, &v))
    }

    /// `POST /v1/documents`: the core reads the body (within its upload budget) and
    /// decides. A refused body is kept open a little (see [`linger`]) so the client hears
    /// the refusal.
    async fn submit<B: ApiBody>(&self, who: &Principal, req: Request<B>) -> Result<Resp, ApiError> {
        let declared = declared_length(req.headers());
        let mut body = req.into_body();
        let result = self
            .service
            .submit(who, declared, &mut Frames(&mut body))
            .await;
        if result.is_err() {
            linger(body);
        }
        self.accepted(result?)
    }

    /// `POST /v1/federation/packets`: a peer hub forwards a packet, with its route and the
    /// recipients it is for in headers. The answer is the submission's (its `receipt`, signed
    /// by this hub, is the hop receipt).
    async fn forwarded<B: ApiBody>(
        &self,
        who: &Principal,
        req: Request<B>,
    ) -> Result<Resp, ApiError> {
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        let bad = |why: String| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", why);
        let route = crate::federation::parse_route(&header("lienthong-route")).map_err(bad)?;
        let recipients: Vec<String> = header("lienthong-recipients")
            .split(',')
            .map(|r| r.trim().to_owned())
            .filter(|r| !r.is_empty())
            .collect();
        let declared = declared_length(req.headers());
        let mut body = req.into_body();
        let result = self
            .service
            .forwarded(who, route, recipients, declared, &mut Frames(&mut body))
            .await;
        if result.is_err() {
            linger(body);
        }
        self.accepted(result?)
    }

    /// `POST /v1/federation/reports`: a peer hub reports what became of a document this
    /// hub forwarded (docs/federation.md). 201 for a new report, 200 for a retry.
    async fn report<B: ApiBody>(&self, who: &Principal, req: Request<B>) -> Result<Resp, ApiError> {
        let declared = declared_length(req.headers());
        let mut body = req.into_body();
        let result = self
            .service
            .report(who, declared, &mut Frames(&mut body))
            .await;
        if result.is_err() {
            linger(body);
        }
        let answer = result?;
        let status = if answer.created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        Ok(json(
            status,
            &serde_json::to_value(&answer).expect("serializable"),
        ))
    }

    /// The answer to an accepted (or replayed) packet.
    fn accepted(&self, accepted: crate::hub::Accepted) -> Result<Resp, ApiError> {
        // A replay of an accepted packet answers 200 with the same id; a new one 201.
        let status = if accepted.created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        let mut resp = json(
            status,
            &serde_json::to_value(&accepted).expect("serializable"),
        );
        resp.headers_mut().insert(
            header::LOCATION,
            format!("/v1/documents/{}", accepted.id)
                .parse()
                .expect("valid header"),
        );
        Ok(resp)
    }

    async fn inbox(&self, who: &Principal, query: Option<&str>) -> Result<Resp, ApiError> {
        let limit = query_u64(query, "limit")?.unwrap_or(100) as usize;
        let wait = Duration::from_secs(query_u64(query, "wait")?.unwrap_or(0));
        let bodies = match query_str(query, "include") {
            None => false,
            Some("body") => true,
            Some(other) => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    format!("include must be \"body\", got {other:?}"),
                ));
            }
        };
        let items = self.service.inbox(who, limit, wait, bodies).await?;
        Ok(Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(super::page::inbox_json(&items))))
            .expect("valid response"))
    }

    async fn fetch(&self, who: &Principal, id: &str) -> Result<Resp, ApiError> {
        let (doc, body) = self.service.fetch(who, id).await?;
        Ok(Response::builder()
            .status(StatusCode::OK)
            .header(
                header::CONTENT_TYPE,
                match doc.kind {
                    // A hub notice is a signed statement (JWS), not edXML.
                    crate::edxml::Kind::Notice => "application/jose",
                    _ => "application/xml",
                },
            )
            .header(header::ETAG, format!("\"{}\"", doc.sha256))
            .header("x-lienthong-sha256", &doc.sha256)
            .header("x-lienthong-from", &doc.from)
            .header("x-lienthong-kind", doc.kind.as_str())
            .body(Full::new(Bytes::from(body)))
            .expect("valid response"))
    }

    async fn ack(&self, who: &Principal, id: &str) -> Result<Resp, ApiError> {
        let acked = self.service.ack(who, id).await?;
        Ok(json(
            StatusCode::OK,
            &serde_json::to_value(&acked).expect("serializable"),
        ))
    }

    /// `GET /v1/audit/export?size=N`: auditors only; entries `0..N` as JSON lines, streamed.
    async fn export(&self, peer: &PeerCert, query: Option<&str>) -> Result<Reply, ApiError> {
        let who = self.caller(peer)?;
        let (size, rx) = self.service.export(&who, query_u64(query, "size")?).await?;
        Ok(Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/x-ndjson")
            .header("x-lienthong-tree-size", size)
            .body(http_body_util::Either::Right(super::stream::ChannelBody(
                rx,
            )))
            .expect("valid response"))
    }

    /// `POST /v1/inbox/ack` with `{"ids":[…]}` (at most 1000): one commit for all of them.
    async fn ack_many<B: ApiBody>(
        &self,
        who: &Principal,
        req: Request<B>,
    ) -> Result<Resp, ApiError> {
        who.agency()?;
        let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", m);
        let body = Limited::new(req.into_body(), 1 << 20)
            .collect()
            .await
            .map_err(|e| bad(format!("reading the body failed: {e}")))?
            .to_bytes();
        #[derive(serde::Deserialize)]
        struct Ids {
            ids: Vec<String>,
        }
        let ids: Ids = serde_json::from_slice(&body)
            .map_err(|e| bad(format!("the body must be {{\"ids\":[\"…\"]}}: {e}")))?;
        if ids.ids.is_empty() || ids.ids.len() > 1000 {
            return Err(bad("give between 1 and 1000 ids".into()));
        }
        let acked = self.service.ack_many(who, ids.ids).await?;
        let results: Vec<serde_json::Value> = acked
            .results
            .into_iter()
            .map(|r| match r {
                Ok(a) => serde_json::to_value(&a).expect("serializable"),
                Err(e) => {
                    serde_json::json!({"error": {"code": e.code(), "message": e.to_string()}})
                }
            })
            .collect();
        Ok(json(
            StatusCode::OK,
            &serde_json::json!({ "results": results, "receipt": acked.receipt }),
        ))
    }

    /// `GET /v1/audit?agency=&document=&from=&to=&cursor=&limit=`: auditors read everything,
    /// an agency the events of its own documents; ops staff nothing.
    async fn audit_page(&self, caller: Principal, query: Option<&str>) -> Result<Resp, ApiError> {
        let filter = crate::hub::AuditFilter {
            agency: query_str(query, "agency").map(str::to_owned),
            document: query_str(query, "document").map(str::to_owned),
            from: query_str(query, "from").map(str::to_owned),
            to: query_str(query, "to").map(str::to_owned),
        };
        let cursor = query_u64(query, "cursor")?.unwrap_or(0);
        let limit = query_u64(query, "limit")?.unwrap_or(100) as usize;
        let v = self
            .service
            .audit_page(&caller, filter, cursor, limit)
            .await?;
        Ok(json(StatusCode::OK, &v))
    }
}

/// Answers `e` with the request's body handed to [`linger`], so that a body the client has
/// already sent does not make the refusal arrive as a connection reset.
fn refuse_draining<B: ApiBody>(req: Request<B>, e: ApiError) -> ApiError {
    linger(req.into_body());
    e
}

/// The `window` of a statistics query (`1h` when absent).
pub(crate) fn window_of(query: Option<&str>) -> Result<Window, ApiError> {
    let w = query_str(query, "window").unwrap_or("1h");
    Window::parse(w).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("window must be 1m, 1h, 24h or 30d, got {w:?}"),
        )
    })
}

/// `GET /v1/stats?window=…` hub-wide, for the ops listener.
pub(crate) async fn stats_response(
    service: &crate::hub::Service,
    query: Option<&str>,
) -> Result<Resp, ApiError> {
    let window = window_of(query)?;
    let report = service.stats_of(Scope::Hub, window).await?;
    Ok(json(StatusCode::OK, &report))
}

/// The body length a request declares (`Content-Length`), if it declares one.
fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}
