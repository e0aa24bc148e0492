//! `lienthong backup` (asks the running hub, through its ops listener) and `lienthong restore`
//! (offline, into a data directory the hub is not running on).

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

use super::fail;

pub async fn backup(to: &Path, ops: SocketAddr, token: Option<&str>) -> ExitCode {
    let to = match std::path::absolute(to) {
        Ok(p) => p,
        Err(e) => return fail(format!("{}: {e}", to.display())),
    };
    let body = serde_json::json!({ "to": to }).to_string();
    match post(ops, "/admin/backup", body, token).await {
        Ok((200, answer)) => {
            let m: serde_json::Value = serde_json::from_slice(&answer).unwrap_or_default();
            println!(
                "backup written to {}: {} files, audit log {} entries (root {})",
                to.display(),
                m["files"].as_array().map_or(0, Vec::len),
                m["tree_size"],
                m["root_hash"].as_str().unwrap_or("?")
            );
            ExitCode::SUCCESS
        }
        Ok((status, answer)) => fail(format!(
            "the hub refused the backup ({status}): {}",
            String::from_utf8_lossy(&answer).trim()
        )),
        Err(e) => fail(format!("cannot reach the ops listener at {ops}: {e}")),
    }
}

pub fn restore(from: &Path, data: &Path, hub_cert: Option<&Path>) -> ExitCode {
    match crate::backup::restore(from, data, hub_cert) {
        Ok(summary) => {
            println!(
                "restored {} into {}; audit log {summary}",
                from.display(),
                data.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// One plain-HTTP POST to the ops listener: (status, body).
async fn post(
    addr: SocketAddr,
    path: &str,
    body: String,
    token: Option<&str>,
) -> Result<(u16, Bytes), String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut req = http::Request::post(path)
        .header(http::header::HOST, addr.to_string())
        .header(http::header::CONTENT_TYPE, "application/json");
    if let Some(t) = token {
        req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = req
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, bytes))
}
