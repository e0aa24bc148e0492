//! TLS to PostgreSQL with rustls, configured the way libpq is: by the connection URL's
//! `sslmode`, `sslrootcert`, `sslcert` and `sslkey` (so one URL serves the hub and `psql`).
//!
//! - no `sslrootcert` and `sslmode` absent, `disable` or `prefer`: no TLS (a private network;
//!   docs/ha.md says so);
//! - `sslrootcert=FILE`: TLS, the server's chain checked against FILE's certificates **and
//!   its name against the host** — libpq's `verify-full`, whatever `sslmode` says except
//!   `disable` (`require`, `verify-ca`, `verify-full` all mean: no session without it);
//! - `sslmode=require|verify-ca|verify-full` without `sslrootcert`: refused at start — an
//!   unverified TLS session would only look safe;
//! - `sslcert` + `sslkey`: the hub's client certificate, for `cert` authentication.
//!
//! tokio-postgres reads only `disable|prefer|require`, and no file names, so those are taken
//! out of the URL here. Channel binding is not offered (SCRAM runs without it).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The URL for tokio-postgres, and the TLS connector when the URL asks for TLS.
pub fn split(url: &str) -> Result<(String, Option<RustlsConnect>), String> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut kept = Vec::new();
    let (mut mode, mut root, mut cert, mut key) = (None, None, None, None);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "sslmode" => mode = Some(v.to_owned()),
            "sslrootcert" => root = Some(v.to_owned()),
            "sslcert" => cert = Some(v.to_owned()),
            "sslkey" => key = Some(v.to_owned()),
            _ => kept.push(pair),
        }
    }
    let strict = match mode.as_deref() {
        None | Some("prefer") => false,
        Some("disable") => return Ok((join(base, kept, None), None)),
        Some("require" | "verify-ca" | "verify-full") => true,
        Some(other) => {
            return Err(format!(
                "sslmode {other:?} is not one of disable, prefer, require, verify-ca, verify-full"
            ));
        }
    };
    let Some(root) = root else {
        if strict {
            return Err(
                "sslmode asks for TLS but the URL names no sslrootcert (the CA file the \
                        server's certificate must chain to)"
                    .into(),
            );
        }
        return Ok((join(base, kept, None), None));
    };
    let config = client_config(&root, cert.as_deref(), key.as_deref())?;
    Ok((
        join(base, kept, Some("require")),
        Some(RustlsConnect(Arc::new(config))),
    ))
}

fn join(base: &str, kept: Vec<&str>, mode: Option<&str>) -> String {
    let mut pairs: Vec<String> = kept.into_iter().map(str::to_owned).collect();
    pairs.extend(mode.map(|m| format!("sslmode={m}")));
    if pairs.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", pairs.join("&"))
    }
}

fn client_config(
    root: &str,
    cert: Option<&str>,
    key: Option<&str>,
) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    let anchors = crate::tls::load_certs(std::path::Path::new(root))
        .map_err(|e| format!("sslrootcert {root}: {e}"))?;
    for c in anchors {
        roots
            .add(c)
            .map_err(|e| format!("sslrootcert {root}: {e}"))?;
    }
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    match (cert, key) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(cert), Some(key)) => {
            let chain = crate::tls::load_certs(std::path::Path::new(cert))
                .map_err(|e| format!("sslcert {cert}: {e}"))?;
            let key = crate::tls::load_key(std::path::Path::new(key))
                .map_err(|e| format!("sslkey {key}: {e}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("sslcert/sslkey: {e}"))
        }
        _ => Err("sslcert and sslkey go together".into()),
    }
}

/// Makes a rustls session per connection, verifying the server against the host name.
#[derive(Clone)]
pub struct RustlsConnect(Arc<rustls::ClientConfig>);

/// One handshake to come.
pub struct Connect {
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
}

/// A TLS session to PostgreSQL.
pub struct PgTls<S>(tokio_rustls::client::TlsStream<S>);

impl<S> MakeTlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = PgTls<S>;
    type TlsConnect = Connect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, host: &str) -> io::Result<Connect> {
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Ok(Connect {
            config: self.0.clone(),
            name,
        })
    }
}

type Handshake<S> = Pin<Box<dyn Future<Output = io::Result<PgTls<S>>> + Send>>;

impl<S> TlsConnect<S> for Connect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = PgTls<S>;
    type Error = io::Error;
    type Future = Handshake<S>;

    fn connect(self, stream: S) -> Handshake<S> {
        Box::pin(async move {
            let tls = tokio_rustls::TlsConnector::from(self.config)
                .connect(self.name, stream)
                .await?;
            Ok(PgTls(tls))
        })
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for PgTls<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for PgTls<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for PgTls<S> {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn the_url_keeps_what_tokio_postgres_reads() {
        let u = "postgresql://h1,h2/db?target_session_attrs=read-write";
        assert_eq!(split(u).unwrap().0, u);
        assert!(split(u).unwrap().1.is_none());
        let (rest, tls) = split(&format!("{u}&sslmode=disable&sslrootcert=/x")).unwrap();
        assert_eq!(rest, u);
        assert!(tls.is_none());
        // Asking for TLS without saying whom to trust is refused, not downgraded.
        for mode in ["require", "verify-ca", "verify-full"] {
            let e = split(&format!("{u}&sslmode={mode}")).err().unwrap();
            assert!(e.contains("sslrootcert"), "{e}");
        }
        assert!(split(&format!("{u}&sslmode=allow")).is_err());
        let e = split(&format!("{u}&sslrootcert=/nonexistent/ca.pem"))
            .err()
            .unwrap();
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
    }
}
