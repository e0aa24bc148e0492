//! The agency side: `send`, `inbox`, `fetch`, `ack`, `stats` — one API call each, printed
//! readably or as JSON.

use std::path::Path;
use std::process::ExitCode;

use bytes::Bytes;
use http::Method;

use super::{ConnArgs, fail, write_output};
use crate::client::ClientError;

/// `send`: submits a packet file.
pub async fn send(file: &Path, conn: &ConnArgs) -> ExitCode {
    let body = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) => return fail(format!("{}: {e}", file.display())),
    };
    agency_call(
        conn,
        Method::POST,
        "/v1/documents",
        Bytes::from(body),
        |v| {
            let created = v["created"].as_bool().unwrap_or(true);
            format!(
                "{} {} (DocumentId {}) for {} recipient(s), sha256 {}",
                if created {
                    "accepted"
                } else {
                    "already accepted as"
                },
                v["id"].as_str().unwrap_or("?"),
                v["document_id"].as_str().unwrap_or("-"),
                v["recipients"].as_array().map_or(0, Vec::len),
                v["sha256"].as_str().unwrap_or("?"),
            )
        },
    )
    .await
}

/// `inbox`: lists (and leases) pending items.
pub async fn inbox(limit: usize, wait: u64, conn: &ConnArgs) -> ExitCode {
    let path = format!("/v1/inbox?limit={limit}&wait={wait}");
    agency_call(conn, Method::GET, &path, Bytes::new(), |v| {
        let items = v["items"].as_array().cloned().unwrap_or_default();
        if items.is_empty() {
            return "inbox empty".into();
        }
        let mut out = format!(
            "{:<16}  {:<6}  {:<2}  {:<15}  {:>9}  {:<19}  SUBJECT / DOCUMENT\n",
            "ID", "KIND", "ST", "FROM", "BYTES", "SIGNATURE"
        );
        for i in items {
            let label = i["subject"]
                .as_str()
                .or(i["document_id"].as_str())
                .or(i["response_for"].as_str())
                .unwrap_or("");
            out.push_str(&format!(
                "{:<16}  {:<6}  {:<2}  {:<15}  {:>9}  {:<19}  {}\n",
                i["id"].as_str().unwrap_or(""),
                i["kind"].as_str().unwrap_or(""),
                i["status_code"].as_str().unwrap_or(""),
                i["from"].as_str().unwrap_or(""),
                i["size"].as_u64().unwrap_or(0),
                i["verdict"].as_str().unwrap_or("-"),
                label
            ));
        }
        out.trim_end().to_owned()
    })
    .await
}

/// `fetch`: one packet, to a file or standard output.
pub async fn fetch(id: &str, output: Option<&Path>, conn: &ConnArgs) -> ExitCode {
    let client = match conn.client() {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    match client
        .call(Method::GET, &format!("/v1/documents/{id}"), Bytes::new())
        .await
    {
        Ok(reply) => match write_output(output, &reply.body) {
            Ok(()) => {
                if let Some(path) = output {
                    eprintln!("wrote {} bytes to {}", reply.body.len(), path.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        Err(e) => fail(e),
    }
}

/// `ack`: removes an item from the inbox.
pub async fn ack(id: &str, conn: &ConnArgs) -> ExitCode {
    agency_call(
        conn,
        Method::POST,
        &format!("/v1/inbox/{id}/ack"),
        Bytes::new(),
        |v| {
            format!(
                "acked {}{}",
                v["id"].as_str().unwrap_or("?"),
                if v["removed"].as_bool() == Some(false) {
                    " (already acked)"
                } else {
                    ""
                }
            )
        },
    )
    .await
}

/// `stats`: the statistics report for a window.
pub async fn stats(window: &str, agency: Option<&str>, conn: &ConnArgs) -> ExitCode {
    let path = format!("/v1/stats?window={window}");
    agency_call(conn, Method::GET, &path, Bytes::new(), |v| {
        render_stats(v, agency)
    })
    .await
}

/// One API call with the readable or JSON rendering of its answer.
async fn agency_call(
    conn: &ConnArgs,
    method: Method,
    path: &str,
    body: Bytes,
    render: impl FnOnce(&serde_json::Value) -> String,
) -> ExitCode {
    let client = match conn.client() {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    match client.call(method, path, body).await {
        Ok(reply) => {
            let mut v = reply.json();
            if conn.json {
                // Which protocol carried it: the CLI never falls back silently.
                if let Some(o) = v.as_object_mut() {
                    o.insert("http_version".into(), format!("{:?}", reply.version).into());
                }
                println!("{v}");
            } else {
                println!("{}", render(&v));
            }
            ExitCode::SUCCESS
        }
        Err(e @ ClientError::Hub { .. }) if conn.json => {
            if let ClientError::Hub { code, message, .. } = &e {
                println!(
                    "{}",
                    serde_json::json!({"error": {"code": code, "message": message}})
                );
            }
            fail(e)
        }
        Err(e) => fail(e),
    }
}

/// The terminal table of `lienthong stats`.
fn render_stats(v: &serde_json::Value, only: Option<&str>) -> String {
    // serde_json's Display ignores width, so numbers go through u64 for the columns.
    let n = |x: &serde_json::Value| x.as_u64().unwrap_or(0);
    let t = &v["totals"];
    let share = |x: &serde_json::Value| {
        x.as_f64()
            .map_or("-".into(), |f| format!("{:.1}%", f * 100.0))
    };
    let mut out = format!(
        "window {} (covering {} s) · scope {}\n\
         accepted {} ({}/min) · acked {} · refused {} · pending {} · signature verified {} · electronic {}\n",
        v["window"].as_str().unwrap_or("?"),
        v["covered_secs"],
        v["scope"].as_str().unwrap_or("?"),
        t["accepted"],
        t["accepted_per_min"],
        t["acked"],
        t["refused"],
        v["pending"],
        share(&t["verified_share"]),
        share(&t["electronic_share"]),
    );
    if let Some(reasons) = t["refused_by_reason"].as_object().filter(|r| !r.is_empty()) {
        let list: Vec<String> = reasons.iter().map(|(k, n)| format!("{k} {n}")).collect();
        out.push_str(&format!("refusals: {}\n", list.join(", ")));
    }
    out.push_str(&format!(
        "\n{:<15} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
        "AGENCY", "SENT", "RECEIVED", "ACKED", "REFUSED", "PENDING"
    ));
    for a in v["agencies"].as_array().into_iter().flatten() {
        let id = a["agency"].as_str().unwrap_or("");
        if only.is_some_and(|o| o != id) {
            continue;
        }
        out.push_str(&format!(
            "{:<15} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
            id,
            n(&a["accepted"]),
            n(&a["received"]),
            n(&a["acked"]),
            n(&a["refused"]),
            n(&a["pending"])
        ));
    }
    let idle: Vec<String> = v["not_pulling"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| only.is_none_or(|o| a["agency"] == o))
        .take(5)
        .map(|a| {
            let idle = a["idle_secs"]
                .as_u64()
                .map_or("never pulled".into(), |s| format!("idle {s} s"));
            format!("{} ({idle})", a["agency"].as_str().unwrap_or(""))
        })
        .collect();
    if !idle.is_empty() {
        out.push_str(&format!("\nnot pulling: {}", idle.join(", ")));
    }
    out.trim_end().to_owned()
}
