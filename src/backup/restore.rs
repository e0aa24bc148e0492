//! Restoring a backup into a data directory: the copy must match its manifest file by file,
//! the target must hold no database yet, and the restored audit log must verify against the
//! manifest's signed tree head before the data directory is left in place.

use std::path::Path;

use super::{DB_DIR, MANIFEST, Manifest, manifest::files_of};
use crate::audit::merkle::NodeSource;
use crate::store::Store;

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("the backup's manifest: {0}")]
    Manifest(String),
    #[error("the backup does not match its manifest: {0}")]
    Mismatch(String),
    #[error("{0}")]
    Target(String),
    #[error("the restored audit log does not verify: {0}")]
    Audit(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RestoreError {
    let what = what.into();
    |source| RestoreError::Io { what, source }
}

/// Restores the backup in `from` into `data` (its `db` directory must not exist or be
/// empty). `hub_cert` (PEM) is the certificate the tree head must verify with; without it the
/// manifest's own copy is used (which proves integrity, not origin). Returns a summary.
pub fn restore(from: &Path, data: &Path, hub_cert: Option<&Path>) -> Result<String, RestoreError> {
    let manifest = Manifest::read(&from.join(MANIFEST)).map_err(RestoreError::Manifest)?;
    let files = files_of(&from.join(DB_DIR)).map_err(io("reading the backup"))?;
    if files != manifest.files {
        return Err(RestoreError::Mismatch(difference(&manifest, &files)));
    }
    let target = data.join(DB_DIR);
    if target.exists()
        && std::fs::read_dir(&target)
            .map_err(io("reading the target"))?
            .next()
            .is_some()
    {
        return Err(RestoreError::Target(format!(
            "{} holds a database already: restore into an empty data directory",
            target.display()
        )));
    }
    let staging = data.join(format!("{DB_DIR}.restoring"));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).map_err(io("creating the target"))?;
    for f in &manifest.files {
        std::fs::copy(from.join(DB_DIR).join(&f.path), staging.join(&f.path))
            .map_err(io(format!("copying {}", f.path)))?;
    }
    match check_log(&staging, &manifest, hub_cert) {
        Ok(summary) => {
            let _ = std::fs::remove_dir(&target);
            std::fs::rename(&staging, &target).map_err(io("moving the database in place"))?;
            Ok(summary)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            Err(e)
        }
    }
}

/// Names the first file that differs between the manifest and the copy.
fn difference(manifest: &Manifest, files: &[super::ManifestFile]) -> String {
    for f in &manifest.files {
        match files.iter().find(|g| g.path == f.path) {
            None => return format!("{} is missing", f.path),
            Some(g) if g != f => return format!("{} differs (sha256 {})", f.path, g.sha256),
            Some(_) => {}
        }
    }
    files
        .iter()
        .find(|g| !manifest.files.iter().any(|f| f.path == g.path))
        .map_or("the file lists differ".into(), |g| {
            format!("{} is not in the manifest", g.path)
        })
}

/// Opens the restored database and verifies its first `tree_size` log entries against the
/// manifest's signed head, as `lienthong audit verify` does with an export.
fn check_log(
    db: &Path,
    manifest: &Manifest,
    hub_cert: Option<&Path>,
) -> Result<String, RestoreError> {
    let audit = |e: String| RestoreError::Audit(e);
    let store = Store::open(db).map_err(|e| audit(format!("the database does not open: {e}")))?;
    let size = manifest.tree_size;
    if store.audit_size() < size {
        return Err(audit(format!(
            "the log holds {} entries, the manifest's head covers {size}",
            store.audit_size()
        )));
    }
    let root = crate::digest::hex(&store.root(size).map_err(|e| audit(e.to_string()))?);
    if root != manifest.root_hash {
        return Err(audit(format!(
            "the log's root at {size} is {root}, the manifest says {}",
            manifest.root_hash
        )));
    }
    let mut export = Vec::new();
    let mut next = 0;
    while next < size {
        let batch = store
            .audit_entries(next, size, 4096)
            .map_err(|e| audit(e.to_string()))?;
        let Some((last, _)) = batch.last() else { break };
        next = last + 1;
        for (_, entry) in batch {
            export.extend_from_slice(&entry);
            export.push(b'\n');
        }
    }
    let cert = match hub_cert {
        Some(path) => crate::tls::load_certs(path).map_err(|e| audit(e.to_string()))?,
        None => {
            use rustls_pki_types::pem::PemObject;
            rustls_pki_types::CertificateDer::pem_slice_iter(manifest.hub_signing_cert.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| audit(format!("the manifest's certificate: {e}")))?
        }
    };
    let cert = cert
        .first()
        .ok_or_else(|| audit("no hub certificate".into()))?;
    let summary = crate::audit::verify::verify_log(&export, &manifest.tree_head, cert)
        .map_err(|e| audit(e.to_string()))?;
    store.flush().map_err(|e| audit(e.to_string()))?;
    Ok(summary)
}
