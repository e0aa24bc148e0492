//! The manifest of a backup: what the copy holds and how to tell it is intact.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::DB_DIR;

/// One file of the copied database.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ManifestFile {
    /// Relative to the backup's database directory.
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub created_at: String,
    pub hub_version: String,
    /// The audit log size and root the signed head below covers; the copy holds at least
    /// these entries.
    pub tree_size: u64,
    pub root_hash: String,
    /// The signed tree head (JWS) taken just before the checkpoint.
    pub tree_head: String,
    /// The hub's signing certificate (PEM): the head and every receipt verify with it.
    pub hub_signing_cert: String,
    pub files: Vec<ManifestFile>,
}

impl Manifest {
    /// Describes the checkpoint in `dir`/db, taken after the tree head `head` was signed by
    /// the holder of `cert` (DER).
    pub fn describe(dir: &Path, head: String, cert: &[u8]) -> std::io::Result<Manifest> {
        let invalid = |why: String| std::io::Error::new(std::io::ErrorKind::InvalidData, why);
        let payload = crate::jws::verify(&head, cert).map_err(|e| invalid(e.to_string()))?;
        let tree_size = payload["tree_size"].as_u64().unwrap_or(0);
        let root_hash = payload["root_hash"].as_str().unwrap_or_default().to_owned();
        Ok(Manifest {
            format: 1,
            created_at: crate::ids::rfc3339(crate::ids::now_ms()),
            hub_version: env!("CARGO_PKG_VERSION").to_owned(),
            tree_size,
            root_hash,
            tree_head: head,
            hub_signing_cert: pem("CERTIFICATE", cert),
            files: files_of(&dir.join(DB_DIR))?,
        })
    }

    /// Writes the manifest and syncs it (a backup that says it is done is on disk).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(self).expect("manifests serialize");
        let mut f = std::fs::File::create(path)?;
        std::io::Write::write_all(&mut f, &json)?;
        f.sync_all()
    }

    pub fn read(path: &Path) -> Result<Manifest, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// Every file in `db` (a checkpoint is flat), sorted, with its size and SHA-256.
pub fn files_of(db: &Path) -> std::io::Result<Vec<ManifestFile>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(db)? {
        let entry = entry?;
        if !entry.file_type()?.is_file() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} is not a plain file", entry.path().display()),
            ));
        }
        out.push(ManifestFile {
            path: entry.file_name().to_string_lossy().into_owned(),
            size: entry.metadata()?.len(),
            sha256: sha256_file(&entry.path())?,
        });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    Ok(crate::digest::hex(ctx.finish().as_ref()))
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}
