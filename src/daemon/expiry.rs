//! `lienthong_certificate_expiry_seconds{certificate}`: seconds until each certificate the hub
//! depends on expires (negative once it has), so an alert fires weeks before a handshake or a
//! signature starts failing (config/alerts.yml).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use der::Decode;

use crate::config::Config;

/// The certificates to watch: the TLS server certificate, the client CA, the hub signing and
/// outbound client certificates, and every certificate of the XML and PDF signature trust stores.
pub(super) fn watched(config: &Config) -> Vec<(String, PathBuf)> {
    let mut out = vec![
        ("tls_server".to_owned(), config.tls.cert.clone()),
        ("client_ca".to_owned(), config.tls.client_ca.clone()),
        ("hub_signing".to_owned(), config.audit.signing_cert.clone()),
        ("hub_client".to_owned(), config.outbound.client_cert.clone()),
    ];
    let mut trust = |prefix: &str, dir: &Path| {
        if let Ok(entries) = std::fs::read_dir(dir) {
            let mut files: Vec<PathBuf> =
                entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
            files.sort();
            for f in files.into_iter().filter(|f| f.is_file()) {
                let name = f
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                out.push((format!("{prefix}:{name}"), f));
            }
        }
    };
    trust("trust", &config.signature.trust_dir);
    if !config.pdf_signature.trust_dir.as_os_str().is_empty() {
        trust("pdf_trust", &config.pdf_signature.trust_dir);
    }
    out
}

/// Sets the gauge for each certificate that can be read (the first of a PEM file's chain).
pub(super) fn publish(certs: &[(String, PathBuf)]) {
    let now = SystemTime::now();
    for (label, path) in certs {
        let Some(not_after) = not_after(path) else {
            continue;
        };
        let secs = match not_after.duration_since(now) {
            Ok(d) => d.as_secs_f64(),
            Err(e) => -e.duration().as_secs_f64(),
        };
        metrics::gauge!("lienthong_certificate_expiry_seconds", "certificate" => label.clone())
            .set(secs);
    }
}

fn not_after(path: &Path) -> Option<SystemTime> {
    let der = crate::tls::load_certs(path).ok()?.into_iter().next()?;
    let cert = x509_cert::Certificate::from_der(&der).ok()?;
    Some(cert.tbs_certificate().validity().not_after.to_system_time())
}
