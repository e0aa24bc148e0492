//! One agency's push endpoint: the hub's HTTPS connections to it and what one attempt's
//! answer means.
//!
//! The endpoint's certificate must chain to the agency's `push_ca` (default: the hub's
//! client CA) and name the URL's host; the hub presents its `[outbound]` client
//! certificate. HTTP/2 when the endpoint offers it (one connection, concurrent streams),
//! else HTTP/1.1 with a connection per attempt in progress, kept for the next. Redirects are
//! not followed: a push goes to the configured URL or nowhere.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use rustls::ClientConfig;

use crate::client::{ClientError, HttpVersion, Sender, connect_tcp};
use crate::hub::push::PushOutcome;

/// The most of an endpoint's answer body that is read (the rest is dropped with the
/// connection): an endpoint's answer carries nothing the hub uses.
const ANSWER_MAX: usize = 64 << 10;

/// Timeouts of one attempt.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub total: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("push URL {0:?} is not https://HOST[:PORT]/PATH")]
    Url(String),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

pub struct Endpoint {
    url: String,
    host: String,
    port: u16,
    authority: String,
    path: String,
    tls: Arc<ClientConfig>,
    timeouts: Timeouts,
    h2: tokio::sync::Mutex<Option<hyper::client::conn::http2::SendRequest<Full<Bytes>>>>,
    h1_idle: std::sync::Mutex<Vec<hyper::client::conn::http1::SendRequest<Full<Bytes>>>>,
}

/// A connection for one attempt.
enum Conn {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

impl Endpoint {
    /// The endpoint at `url`, trusted by `tls` (roots: the agency's `push_ca`; client
    /// certificate: `[outbound]`).
    pub fn new(
        url: &str,
        tls: Arc<ClientConfig>,
        timeouts: Timeouts,
    ) -> Result<Self, EndpointError> {
        let uri: http::Uri = url.parse().map_err(|_| EndpointError::Url(url.into()))?;
        let host = uri
            .host()
            .filter(|_| uri.scheme_str() == Some("https"))
            .ok_or_else(|| EndpointError::Url(url.into()))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(443);
        let path = uri
            .path_and_query()
            .map_or("/".to_owned(), |p| p.as_str().to_owned());
        Ok(Endpoint {
            url: url.to_owned(),
            authority: uri.authority().map_or(host.clone(), |a| a.to_string()),
            host,
            port,
            path,
            tls,
            timeouts,
            h2: tokio::sync::Mutex::new(None),
            h1_idle: std::sync::Mutex::new(Vec::new()),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// POSTs `body` with `headers` to `url` (this endpoint's, or another path on the same
    /// server: a peer hub's report endpoint); the outcome for the push's schedule.
    pub async fn post(
        &self,
        url: &str,
        headers: &[(&'static str, String)],
        body: Bytes,
    ) -> PushOutcome {
        let path = match url.parse::<http::Uri>() {
            Ok(u)
                if url != self.url
                    && u.authority().is_some_and(|a| a == self.authority.as_str()) =>
            {
                u.path_and_query().map_or("/", |p| p.as_str()).to_owned()
            }
            _ => self.path.clone(),
        };
        let attempt = self.attempt(&path, headers, body);
        match tokio::time::timeout(self.timeouts.total, attempt).await {
            Ok(outcome) => outcome,
            Err(_) => failed(
                "timeout",
                None,
                format!("no answer within {:?}", self.timeouts.total),
            ),
        }
    }

    async fn attempt(
        &self,
        path: &str,
        headers: &[(&'static str, String)],
        body: Bytes,
    ) -> PushOutcome {
        let conn = match self.conn().await {
            Ok(c) => c,
            Err(e) => return connect_failure(e),
        };
        let mut req = Request::builder().method(Method::POST);
        for (name, value) in headers {
            req = req.header(*name, value);
        }
        req = match conn {
            Conn::H1(_) => req.uri(path).header(http::header::HOST, &self.authority),
            Conn::H2(_) => req.uri(format!("https://{}{path}", self.authority)),
        };
        let req = match req.body(Full::new(body)) {
            Ok(r) => r,
            Err(e) => return failed("protocol", None, e.to_string()),
        };
        let sent = match conn {
            Conn::H1(mut s) => match s.ready().await {
                Ok(()) => s.send_request(req).await.map(|r| (r, Some(s))),
                Err(e) => Err(e),
            },
            Conn::H2(mut s) => match s.ready().await {
                Ok(()) => s.send_request(req).await.map(|r| (r, None)),
                Err(e) => Err(e),
            },
        };
        let (resp, h1) = match sent {
            Ok(r) => r,
            Err(e) => return failed("protocol", None, format!("the request failed: {e}")),
        };
        let status = resp.status();
        let retry_after = retry_after(resp.headers());
        let read = Limited::new(resp.into_body(), ANSWER_MAX).collect().await;
        if let (Ok(_), Some(s)) = (&read, h1) {
            if !s.is_closed() {
                self.h1_idle.lock().expect("h1 pool lock").push(s);
            }
        }
        let answer = read.map(|b| b.to_bytes()).unwrap_or_default();
        outcome(status, retry_after, &answer)
    }

    /// A connection for one attempt: the HTTP/2 one (opened if need be), an idle HTTP/1.1
    /// one, or a new one.
    async fn conn(&self) -> Result<Conn, ClientError> {
        let mut h2 = self.h2.lock().await;
        if let Some(s) = h2.as_ref().filter(|s| !s.is_closed()) {
            return Ok(Conn::H2(s.clone()));
        }
        {
            let mut idle = self.h1_idle.lock().expect("h1 pool lock");
            while let Some(s) = idle.pop() {
                if !s.is_closed() {
                    return Ok(Conn::H1(s));
                }
            }
        }
        let connect = connect_tcp(&self.host, self.port, &self.tls, HttpVersion::Auto);
        let sender = tokio::time::timeout(self.timeouts.connect, connect)
            .await
            .map_err(|_| ClientError::Connect {
                addr: self.authority.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("not connected within {:?}", self.timeouts.connect),
                ),
            })??;
        Ok(match sender {
            Sender::H2(s) => {
                *h2 = Some(s.clone());
                Conn::H2(s)
            }
            Sender::H1(s) => Conn::H1(s),
            Sender::H3(_) => unreachable!("push connects over TCP"),
        })
    }
}

fn failed(reason: &'static str, status: Option<u16>, detail: String) -> PushOutcome {
    PushOutcome::Failed {
        reason,
        status,
        detail,
        code: None,
        retry_after: None,
    }
}

fn connect_failure(e: ClientError) -> PushOutcome {
    let reason = match &e {
        ClientError::Handshake { .. } => "tls",
        ClientError::Connect { source, .. } if source.kind() == std::io::ErrorKind::TimedOut => {
            "timeout"
        }
        ClientError::Connect { .. } => "connect",
        _ => "protocol",
    };
    failed(reason, None, e.to_string())
}

/// What an answer's status means for the push. A peer hub's 2xx carries its signed
/// receipt (`receipt` in its JSON answer), kept with the delivery.
fn outcome(status: StatusCode, retry_after: Option<Duration>, answer: &[u8]) -> PushOutcome {
    let code = status.as_u16();
    let reason = match code {
        200..=299 => {
            let receipt = serde_json::from_slice::<serde_json::Value>(answer)
                .ok()
                .and_then(|v| v["receipt"].as_str().map(str::to_owned));
            return PushOutcome::Delivered {
                status: code,
                receipt,
            };
        }
        410 => return PushOutcome::Gone,
        300..=399 => "redirect",
        400..=499 => "status_4xx",
        _ => "status_5xx",
    };
    // A hub (a peer) says why in its error body: {"error": {"code", "message"}}.
    let error = serde_json::from_slice::<serde_json::Value>(answer)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_owned));
    PushOutcome::Failed {
        reason,
        status: Some(code),
        detail: match &error {
            Some(e) => format!("the endpoint answered {status}: {e}"),
            None => format!("the endpoint answered {status}"),
        },
        code: error,
        retry_after,
    }
}

/// `Retry-After` in seconds (an HTTP date is not honoured: the schedule applies).
fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_outcomes() {
        assert_eq!(
            outcome(StatusCode::NO_CONTENT, None, b""),
            PushOutcome::Delivered {
                status: 204,
                receipt: None
            }
        );
        assert_eq!(
            outcome(StatusCode::CREATED, None, br#"{"receipt":"a.b.c"}"#),
            PushOutcome::Delivered {
                status: 201,
                receipt: Some("a.b.c".into())
            }
        );
        assert_eq!(outcome(StatusCode::GONE, None, b""), PushOutcome::Gone);
        assert_eq!(outcome(StatusCode::FOUND, None, b"").reason(), "redirect");
        let bad = outcome(StatusCode::BAD_REQUEST, None, b"");
        assert_eq!(bad.reason(), "status_4xx");
        let seven = Some(Duration::from_secs(7));
        let busy = outcome(StatusCode::SERVICE_UNAVAILABLE, seven, b"");
        assert!(matches!(
            busy,
            PushOutcome::Failed {
                reason: "status_5xx",
                status: Some(503),
                retry_after: Some(d),
                ..
            } if d == Duration::from_secs(7)
        ));
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), None);
        h.insert(http::header::RETRY_AFTER, " 12 ".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(12)));
    }
}
