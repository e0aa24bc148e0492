//! The agency side over HTTP/3: one QUIC connection (quinn) carrying one h3 request stream per
//! call, with the same client certificate as over TCP. Early data (0-RTT) is never sent: a
//! submission or an ack must not be replayable.

use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use quinn::crypto::rustls::QuicClientConfig;
use rustls::ClientConfig;

use crate::client::{ClientError, Reply};

/// An open HTTP/3 connection; cheap to clone (requests run concurrently as streams).
#[derive(Clone)]
pub struct H3Sender {
    send: h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>,
    conn: quinn::Connection,
    /// Kept so the socket lives as long as the connection.
    _endpoint: quinn::Endpoint,
}

fn connect_error(addr: &str, e: impl std::fmt::Display) -> ClientError {
    ClientError::Connect {
        addr: addr.to_owned(),
        source: std::io::Error::other(e.to_string()),
    }
}

impl H3Sender {
    /// Resolves `host`, opens a QUIC connection (ALPN h3) and the HTTP/3 session on it.
    pub async fn connect(
        host: &str,
        port: u16,
        tls: &Arc<ClientConfig>,
    ) -> Result<H3Sender, ClientError> {
        let addr = format!("{host}:{port}");
        let remote = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| connect_error(&addr, e))?
            .next()
            .ok_or_else(|| connect_error(&addr, "no address"))?;
        // `tls` comes from `tls::client_config`, which leaves early data off (rustls' default).
        let crypto =
            QuicClientConfig::try_from(tls.clone()).map_err(|e| connect_error(&addr, e))?;
        let local: std::net::SocketAddr = if remote.is_ipv6() {
            "[::]:0".parse().expect("address")
        } else {
            "0.0.0.0:0".parse().expect("address")
        };
        let mut endpoint =
            quinn::Endpoint::client(local).map_err(|source| ClientError::Connect {
                addr: addr.clone(),
                source,
            })?;
        endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
        let conn = endpoint
            .connect(remote, host)
            .map_err(|e| connect_error(&addr, e))?
            .await
            .map_err(|e| connect_error(&addr, e))?;
        let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(conn.clone()))
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        tokio::spawn(async move {
            let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
        });
        Ok(H3Sender {
            send,
            conn,
            _endpoint: endpoint,
        })
    }

    pub fn is_open(&self) -> bool {
        self.conn.close_reason().is_none()
    }

    /// Sends one request (head, then the body) and reads the whole answer.
    pub async fn send(
        mut self,
        head: http::Request<()>,
        body: Bytes,
    ) -> Result<Reply, ClientError> {
        let h3 = |e: &dyn std::fmt::Display| ClientError::Http(format!("HTTP/3: {e}"));
        let mut stream = self.send.send_request(head).await.map_err(|e| h3(&e))?;
        // A server that answers without reading the rest (a refusal, or RFC 9114 §4.1) may
        // stop this side early: its answer is what counts, so it is read whatever the upload
        // did, and the upload's error reported only when there is no answer.
        let mut sent = Ok(());
        if !body.is_empty() {
            sent = stream.send_data(body).await;
        }
        if sent.is_ok() {
            sent = stream.finish().await;
        }
        let resp = match stream.recv_response().await {
            Ok(r) => r,
            Err(e) => return Err(h3(&sent.err().map_or(e.to_string(), |f| f.to_string()))),
        };
        let mut out = BytesMut::new();
        while let Some(mut chunk) = stream.recv_data().await.map_err(|e| h3(&e))? {
            while chunk.has_remaining() {
                let c = chunk.chunk();
                out.extend_from_slice(c);
                let n = c.len();
                chunk.advance(n);
            }
        }
        let (parts, ()) = resp.into_parts();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body: out.freeze(),
            version: http::Version::HTTP_3,
        })
    }
}
