//! Packets and proofs offline: `edxml new`, `sign`, `verify`, `receipt verify`,
//! `audit verify`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::{fail, load_directory, write_output};
use crate::edxml;

/// `edxml new`: a valid new-document packet, to a file or standard output.
pub fn edxml_new(
    from: String,
    to: Vec<String>,
    subject: String,
    attach: Vec<PathBuf>,
    document_id: Option<String>,
    agencies: Option<&Path>,
    output: Option<&Path>,
) -> ExitCode {
    match compose(from, to, subject, attach, document_id, agencies) {
        Ok(xml) => match write_output(output, xml.as_bytes()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(e),
        },
        Err(e) => fail(e),
    }
}

/// `audit verify`: an exported log against a signed tree head.
pub fn audit_verify(export: &Path, tree_head: &Path, hub_cert: &Path) -> ExitCode {
    match crate::audit::verify::verify_export(export, tree_head, hub_cert) {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

fn compose(
    from: String,
    to: Vec<String>,
    subject: String,
    attach: Vec<PathBuf>,
    document_id: Option<String>,
    agencies: Option<&Path>,
) -> Result<String, String> {
    let dir = load_directory(agencies).map_err(|e| e.to_string())?;
    let name = |id: &str| {
        dir.get(id)
            .map_or_else(|| id.to_owned(), |a| a.name.clone())
    };
    for id in std::iter::once(&from).chain(&to) {
        if !edxml::is_valid_organ_id(id) {
            return Err(format!("{id:?} is not a valid OrganId"));
        }
    }
    let now = time::OffsetDateTime::now_utc();
    let date = format!(
        "{:04}/{:02}/{:02}",
        now.year(),
        now.month() as u8,
        now.day()
    );
    // Unique among every packet this and other processes make: the millisecond and 40
    // random bits (a UUIDv7's random part), so calls in the same millisecond still differ
    // (a collision makes the hub answer 409 for a different document).
    let random = u64::from_be_bytes(
        uuid::Uuid::now_v7().as_bytes()[8..16]
            .try_into()
            .expect("8 bytes"),
    );
    let number = format!(
        "{}{:012}",
        (now.unix_timestamp_nanos() / 1_000_000) % 1_000_000_000,
        (random & 0xff_ffff_ffff) % 1_000_000_000_000
    );
    let mut attachments = Vec::new();
    for path in attach {
        let data = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let file_name = path
            .file_name()
            .map_or("attachment".into(), |n| n.to_string_lossy().into_owned());
        let content_type = match path.extension().and_then(|e| e.to_str()) {
            Some("pdf") => "application/pdf",
            Some("zip") => "application/zip",
            Some("txt") => "text/plain",
            Some("xml") => "application/xml",
            _ => "application/octet-stream",
        };
        attachments.push(edxml::Attachment {
            name: file_name,
            content_type: content_type.into(),
            data,
        });
    }
    let doc = edxml::NewDocument {
        from_name: name(&from),
        to: to.iter().map(|t| (t.clone(), name(t))).collect(),
        document_id: document_id.unwrap_or_else(|| format!("{from},{date},{number}/LT")),
        from,
        code_number: number.chars().take(11).collect(),
        code_notation: "LT".into(),
        subject,
        date,
        attachments,
    };
    let xml = edxml::compose_document(&doc);
    edxml::parse(xml.as_bytes()).map_err(|e| format!("composed packet is invalid: {e}"))?;
    Ok(xml)
}

pub(super) fn read_input(file: &Path) -> Result<Vec<u8>, String> {
    if file == Path::new("-") {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf).map_err(|e| e.to_string())?;
        Ok(buf)
    } else {
        std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))
    }
}

pub fn sign(
    file: &Path,
    cert: &Path,
    key: &Path,
    algorithm: Option<crate::dsig::SignAlgorithm>,
    output: Option<&Path>,
) -> ExitCode {
    let body = match read_input(file) {
        Ok(b) => b,
        Err(e) => return fail(e),
    };
    let signer = match crate::dsig::Signer::load(cert, key) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    if let Some(a) = algorithm
        && a != signer.algorithm()
    {
        return fail(format!(
            "--algorithm {a:?} does not fit the key, which signs {:?}",
            signer.algorithm()
        ));
    }
    let signed = match signer.sign(&body) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    match write_output(output, &signed) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

pub fn verify(
    file: &Path,
    trust: &Path,
    crls: &[PathBuf],
    agencies: Option<&Path>,
    json: bool,
) -> ExitCode {
    let body = match read_input(file) {
        Ok(b) => b,
        Err(e) => return fail(e),
    };
    let packet = match edxml::parse(&body) {
        Ok(p) => p,
        Err(e) => return fail(format!("{}: {e}", e.code())),
    };
    let store = match crate::dsig::TrustStore::load(trust, crls, std::time::Duration::ZERO) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    for e in &store.crl_errors {
        eprintln!("lienthong: warning: CRL not used: {e}");
    }
    let pins = load_directory(agencies)
        .ok()
        .and_then(|d| d.get(&packet.from).map(|a| a.signing_cert_sha256.clone()))
        .unwrap_or_default();
    let verdict = crate::dsig::verify_for_sender(
        &body,
        &packet.from,
        &pins,
        &store,
        std::time::SystemTime::now(),
    );
    match verdict {
        Ok(v) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"verdict": crate::dsig::VERDICT_VERIFIED,
                        "algorithm": v.algorithm, "signer": v.signer_cn,
                        "cert_sha256": v.cert_sha256, "from": packet.from})
                );
            } else {
                println!(
                    "verified: {} signature by {} (certificate sha256 {}), the sender {}",
                    v.algorithm,
                    v.signer_cn.as_deref().unwrap_or("?"),
                    v.cert_sha256,
                    packet.from
                );
            }
            ExitCode::SUCCESS
        }
        Err(f) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"verdict": f.code.as_str(), "message": f.message,
                        "from": packet.from})
                );
            } else {
                println!("{}: {}", f.code.as_str(), f.message);
            }
            ExitCode::FAILURE
        }
    }
}

pub fn receipt_verify(file: &Path, hub_cert: &Path, packet: Option<&Path>) -> ExitCode {
    let jws = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => return fail(format!("{}: {e}", file.display())),
    };
    let cert = match crate::tls::load_certs(hub_cert) {
        Ok(c) if !c.is_empty() => c,
        Ok(_) => return fail(format!("{}: no certificate", hub_cert.display())),
        Err(e) => return fail(e),
    };
    let payload = match crate::jws::verify(&jws, &cert[0]) {
        Ok(p) => p,
        Err(e) => return fail(format!("the receipt does not verify: {e}")),
    };
    // A batch receipt covers several documents; the others one.
    let items: Vec<&serde_json::Value> = match payload["items"].as_array() {
        Some(items) => items.iter().collect(),
        None => vec![&payload],
    };
    if let Some(p) = packet {
        match std::fs::read(p) {
            Ok(body) => {
                let sha = crate::digest::sha256_hex(&body);
                if !items
                    .iter()
                    .any(|i| i["sha256"].as_str() == Some(sha.as_str()))
                {
                    let listed: Vec<&str> = items
                        .iter()
                        .map(|i| i["sha256"].as_str().unwrap_or("?"))
                        .collect();
                    return fail(format!(
                        "the receipt is for sha256 {}, not for {} (sha256 {sha})",
                        listed.join(", "),
                        p.display()
                    ));
                }
            }
            Err(e) => return fail(format!("{}: {e}", p.display())),
        }
    }
    for item in &items {
        println!(
            "verified: {} receipt for {} (sha256 {}), audit log entry {}",
            payload["type"].as_str().unwrap_or("?"),
            item["id"].as_str().unwrap_or("?"),
            item["sha256"].as_str().unwrap_or("?"),
            item["audit_index"]
        );
    }
    println!("{payload}");
    ExitCode::SUCCESS
}
