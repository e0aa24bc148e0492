//! The agency side of the API, used by the CLI (and by tests and the load tool).
//!
//! One connection per [`Client`], opened lazily and reused; HTTP/2 or HTTP/1.1 by ALPN, or
//! forced, or HTTP/3 over QUIC ([`crate::client_h3`]). Errors carry the hub's machine-readable code when the hub answered.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio_rustls::TlsConnector;

use crate::tls::{self, TlsError};

/// Which HTTP version to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HttpVersion {
    /// Let ALPN decide (the hub prefers HTTP/2).
    #[default]
    Auto,
    Http1,
    Http2,
    /// HTTP/3 over QUIC (UDP, the same port number); never falls back to TCP.
    Http3,
}

impl HttpVersion {
    /// From the CLI's `--http1` / `--http2` / `--http3` flags (none: ALPN decides).
    pub fn from_flags(http1: bool, http2: bool, http3: bool) -> HttpVersion {
        match (http1, http2, http3) {
            (true, _, _) => HttpVersion::Http1,
            (_, true, _) => HttpVersion::Http2,
            (_, _, true) => HttpVersion::Http3,
            _ => HttpVersion::Auto,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid hub URL {0:?}: expected https://HOST:PORT")]
    Url(String),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot reach the hub at {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("TLS handshake with {addr} failed: {source}")]
    Handshake {
        addr: String,
        source: std::io::Error,
    },
    #[error("HTTP: {0}")]
    Http(String),
    #[error("{status} {code}: {message}")]
    Hub {
        status: u16,
        code: String,
        message: String,
    },
}

/// One connection's request sender.
pub(crate) enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
    H3(crate::client_h3::H3Sender),
}

/// A response from the hub.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    /// The HTTP version the exchange used.
    pub version: http::Version,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

pub struct Client {
    host: String,
    port: u16,
    tls: Arc<ClientConfig>,
    version: HttpVersion,
    conn: Mutex<Option<Sender>>,
}

impl Client {
    pub fn new(
        hub: &str,
        ca: &Path,
        cert: &Path,
        key: &Path,
        version: HttpVersion,
    ) -> Result<Client, ClientError> {
        let uri: Uri = hub.parse().map_err(|_| ClientError::Url(hub.into()))?;
        if uri.scheme_str() != Some("https") {
            return Err(ClientError::Url(hub.into()));
        }
        let host = uri.host().ok_or_else(|| ClientError::Url(hub.into()))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let alpn: &[&[u8]] = match version {
            HttpVersion::Auto => &[b"h2", b"http/1.1"],
            HttpVersion::Http1 => &[b"http/1.1"],
            HttpVersion::Http2 => &[b"h2"],
            HttpVersion::Http3 => &[b"h3"],
        };
        Ok(Client {
            host,
            port: uri.port_u16().unwrap_or(443),
            tls: tls::client_config(ca, cert, key, alpn)?,
            version,
            conn: Mutex::new(None),
        })
    }

    async fn connect(&self) -> Result<Sender, ClientError> {
        if self.version == HttpVersion::Http3 {
            let s = crate::client_h3::H3Sender::connect(&self.host, self.port, &self.tls).await?;
            return Ok(Sender::H3(s));
        }
        connect_tcp(&self.host, self.port, &self.tls, self.version).await
    }

    /// Sends one request; returns the reply whatever its status.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<Reply, ClientError> {
        let mut guard = self.conn.lock().await;
        let reusable = match guard.as_ref() {
            Some(Sender::H1(s)) => !s.is_closed(),
            Some(Sender::H2(s)) => !s.is_closed(),
            Some(Sender::H3(s)) => s.is_open(),
            None => false,
        };
        if !reusable {
            *guard = Some(self.connect().await?);
        }
        let authority = format!("{}:{}", self.host, self.port);
        let mut req = Request::builder().method(method);
        let http = |e: hyper::Error| ClientError::Http(e.to_string());
        let resp = match guard.as_mut().expect("connected") {
            Sender::H1(s) => {
                // One request at a time on an HTTP/1.1 connection: hold the lock until the
                // answer's head is in.
                req = req.uri(path).header(http::header::HOST, authority);
                let req = req
                    .body(Full::new(body))
                    .map_err(|e| ClientError::Http(e.to_string()))?;
                s.ready().await.map_err(http)?;
                s.send_request(req).await.map_err(http)?
            }
            Sender::H2(s) => {
                // HTTP/2 multiplexes: release the connection before waiting for the answer,
                // so concurrent calls on one client run as concurrent streams.
                let mut s = s.clone();
                drop(guard);
                let uri = format!("https://{authority}{path}");
                let req = req
                    .uri(uri)
                    .body(Full::new(body))
                    .map_err(|e| ClientError::Http(e.to_string()))?;
                s.ready().await.map_err(http)?;
                s.send_request(req).await.map_err(http)?
            }
            Sender::H3(s) => {
                // QUIC multiplexes too: one stream per request.
                let s = s.clone();
                drop(guard);
                let uri = format!("https://{authority}{path}");
                let head = req
                    .uri(uri)
                    .body(())
                    .map_err(|e| ClientError::Http(e.to_string()))?;
                return s.send(head, body).await;
            }
        };
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.map_err(http)?.to_bytes();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
            version: parts.version,
        })
    }

    /// Like [`Client::request`], but a non-2xx answer becomes [`ClientError::Hub`].
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<Reply, ClientError> {
        let reply = self.request(method, path, body).await?;
        if reply.status.is_success() {
            return Ok(reply);
        }
        let v = reply.json();
        Err(ClientError::Hub {
            status: reply.status.as_u16(),
            code: v["error"]["code"]
                .as_str()
                .unwrap_or("http_error")
                .to_owned(),
            message: v["error"]["message"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| String::from_utf8_lossy(&reply.body).into_owned()),
        })
    }
}

/// Opens a TLS connection over TCP to `host:port` and starts HTTP/2 or HTTP/1.1 on it
/// (`Auto`: as ALPN chose). Shared by the CLI client and the hub's push connections.
pub(crate) async fn connect_tcp(
    host: &str,
    port: u16,
    tls: &Arc<ClientConfig>,
    version: HttpVersion,
) -> Result<Sender, ClientError> {
    let addr = format!("{host}:{port}");
    let tcp = TcpStream::connect((host, port))
        .await
        .map_err(|source| ClientError::Connect {
            addr: addr.clone(),
            source,
        })?;
    let _ = tcp.set_nodelay(true);
    let name = ServerName::try_from(host.to_owned()).map_err(|_| ClientError::Url(addr.clone()))?;
    let tls = TlsConnector::from(tls.clone())
        .connect(name, tcp)
        .await
        .map_err(|source| ClientError::Handshake { addr, source })?;
    let h2 = match version {
        HttpVersion::Http2 => true,
        HttpVersion::Http1 | HttpVersion::Http3 => false,
        HttpVersion::Auto => tls.get_ref().1.alpn_protocol() == Some(b"h2"),
    };
    let io = TokioIo::new(tls);
    let http = |e: hyper::Error| ClientError::Http(e.to_string());
    if h2 {
        let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(http)?;
        tokio::spawn(conn);
        Ok(Sender::H2(send))
    } else {
        let (send, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(http)?;
        tokio::spawn(conn);
        Ok(Sender::H1(send))
    }
}
