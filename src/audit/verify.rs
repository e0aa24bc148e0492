//! Offline checks an auditor runs: an export against a signed tree head.

use std::path::Path;

use super::Entry;
use super::merkle::{Hash, Leaves, NodeSource, leaf_hash};
use crate::digest::hex;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("{path}: {why}")]
    Read { path: String, why: String },
    #[error("the tree head does not verify: {0}")]
    Head(String),
    #[error("{0}")]
    Tampered(String),
}

fn read(path: &Path) -> Result<Vec<u8>, AuditError> {
    std::fs::read(path).map_err(|e| AuditError::Read {
        path: path.display().to_string(),
        why: e.to_string(),
    })
}

/// Verifies `export` (JSON lines) against the signed `tree_head` with the hub's certificate.
/// Returns a one-line summary, or what is wrong: entries out of place (inserted, missing,
/// reordered) are named by line; an altered entry shows as a root mismatch.
pub fn verify_export(
    export: &Path,
    tree_head: &Path,
    hub_cert: &Path,
) -> Result<String, AuditError> {
    let certs = crate::tls::load_certs(hub_cert).map_err(|e| AuditError::Read {
        path: hub_cert.display().to_string(),
        why: e.to_string(),
    })?;
    let cert = certs.first().ok_or_else(|| AuditError::Read {
        path: hub_cert.display().to_string(),
        why: "no certificate".into(),
    })?;
    let head_text = String::from_utf8_lossy(&read(tree_head)?).into_owned();
    verify_log(&read(export)?, &head_text, cert)
}

/// [`verify_export`] on bytes already in memory: `export` (JSON lines), the signed head
/// (JWS) and the hub's certificate (DER).
pub fn verify_log(export: &[u8], head_text: &str, cert: &[u8]) -> Result<String, AuditError> {
    let head = crate::jws::verify(head_text, cert).map_err(|e| AuditError::Head(e.to_string()))?;
    let size = head["tree_size"]
        .as_u64()
        .ok_or_else(|| AuditError::Head("no tree_size".into()))?;
    let root = head["root_hash"]
        .as_str()
        .ok_or_else(|| AuditError::Head("no root_hash".into()))?
        .to_owned();

    let mut leaves: Vec<Hash> = Vec::new();
    let mut problems = Vec::new();
    for (n, line) in export.split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        match serde_json::from_slice::<Entry>(line) {
            Ok(e) if e.index == leaves.len() as u64 => {}
            Ok(e) => problems.push(format!(
                "line {} holds entry {} where entry {} belongs (an entry was inserted, removed or moved)",
                n + 1,
                e.index,
                leaves.len()
            )),
            Err(err) => problems.push(format!("line {} is not a log entry: {err}", n + 1)),
        }
        leaves.push(leaf_hash(line));
    }
    let have = leaves.len() as u64;
    if have < size {
        problems.push(format!(
            "the export holds {have} entries; the tree head covers {size}: entries are missing"
        ));
    } else {
        let computed = Leaves(&leaves)
            .root(size)
            .unwrap_or_else(|never| match never {});
        if hex(&computed) != root {
            problems.push(format!(
                "the first {size} entries hash to root {}, the signed tree head says {root}: entries were altered, inserted, removed or reordered",
                hex(&computed)
            ));
        }
    }
    if !problems.is_empty() {
        return Err(AuditError::Tampered(problems.join("\n")));
    }
    let extra = have - size;
    Ok(format!(
        "verified: {size} entries match the signed tree head (root {root}, signed {}){}",
        head["timestamp"].as_str().unwrap_or("?"),
        if extra > 0 {
            format!("; {extra} later entries are not covered by this head")
        } else {
            String::new()
        }
    ))
}
