//! The agency directory: which OrganIds exist, their names, and optional certificate pins.
//!
//! Loaded from `agencies.toml` and swapped whole on SIGHUP; readers take a cheap `Arc` snapshot,
//! so a reload never blocks or drops a request. A file that does not validate is refused and the
//! old directory stays.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use serde::Deserialize;

use crate::edxml::is_valid_organ_id;

/// The sample directory compiled into the binary, used when no file is found.
pub const EMBEDDED: &str = include_str!("../config/agencies.toml");

/// Where the directory file is by default (`server.agencies` in config/lienthong.toml).
pub const DEFAULT_PATH: &str = "config/agencies.toml";

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Agency {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub parent: Option<String>,
    /// SHA-256 (hex) of the agency's TLS client certificate, when pinned.
    #[serde(default)]
    pub cert_sha256: Option<String>,
    /// SHA-256 (hex) of the agency's document-signing certificates. When set, only these may
    /// sign its packets; when empty, a signer whose subject CN is the OrganId may (see
    /// docs/signatures.md).
    #[serde(default)]
    pub signing_cert_sha256: Vec<String>,
    /// The names (certificate O or CN) the agency's organisation certificate carries on the
    /// PDFs it issues. When set, a two-layer PDF whose organisation signer is not among them
    /// is `organisation_mismatch`; when empty, not checked.
    #[serde(default)]
    pub pdf_signer_names: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    agency: Vec<Agency>,
}

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid directory file: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("invalid directory: {0}")]
    Invalid(String),
}

/// One immutable version of the directory.
#[derive(Debug, Default)]
pub struct Directory {
    agencies: Vec<Agency>,
    by_id: HashMap<String, usize>,
}

impl Directory {
    /// Parses and validates a directory file's text.
    pub fn parse(text: &str) -> Result<Directory, DirectoryError> {
        let file: File = toml::from_str(text)?;
        let mut by_id = HashMap::with_capacity(file.agency.len());
        for (i, a) in file.agency.iter().enumerate() {
            if !is_valid_organ_id(&a.id) {
                return Err(DirectoryError::Invalid(format!(
                    "agency id {:?} is not an OrganId",
                    a.id
                )));
            }
            let is_hash = |p: &String| p.len() == 64 && p.bytes().all(|b| b.is_ascii_hexdigit());
            if a.cert_sha256
                .iter()
                .chain(&a.signing_cert_sha256)
                .any(|p| !is_hash(p))
            {
                return Err(DirectoryError::Invalid(format!(
                    "agency {}: cert_sha256 and signing_cert_sha256 values must be 64 hex digits",
                    a.id
                )));
            }
            if by_id.insert(a.id.clone(), i).is_some() {
                return Err(DirectoryError::Invalid(format!(
                    "agency {} is listed twice",
                    a.id
                )));
            }
        }
        for a in &file.agency {
            if let Some(p) = &a.parent {
                if !by_id.contains_key(p) {
                    return Err(DirectoryError::Invalid(format!(
                        "agency {}: parent {p} is not in the directory",
                        a.id
                    )));
                }
            }
        }
        Ok(Directory {
            agencies: file.agency,
            by_id,
        })
    }

    /// Loads a directory file.
    pub fn load(path: &Path) -> Result<Directory, DirectoryError> {
        let text = std::fs::read_to_string(path).map_err(|source| DirectoryError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Directory::parse(&text)
    }

    /// Loads `path`; when it does not exist and `embedded_fallback` is set, the sample
    /// compiled into the binary instead (so the hub runs outside a checkout).
    pub fn load_or_embedded(
        path: &Path,
        embedded_fallback: bool,
    ) -> Result<Directory, DirectoryError> {
        if embedded_fallback && !path.exists() {
            tracing::info!(path = %path.display(), "directory file absent: using the embedded sample directory");
            return Directory::parse(EMBEDDED);
        }
        Directory::load(path)
    }

    pub fn get(&self, id: &str) -> Option<&Agency> {
        self.by_id.get(id).map(|&i| &self.agencies[i])
    }

    pub fn contains(&self, id: &str) -> bool {
        self.by_id.contains_key(id)
    }

    pub fn agencies(&self) -> &[Agency] {
        &self.agencies
    }

    pub fn len(&self) -> usize {
        self.agencies.len()
    }

    pub fn is_empty(&self) -> bool {
        self.agencies.is_empty()
    }
}

/// The live directory: a snapshot pointer swapped on reload.
#[derive(Debug, Clone)]
pub struct SharedDirectory(Arc<RwLock<Arc<Directory>>>);

impl SharedDirectory {
    pub fn new(dir: Directory) -> Self {
        SharedDirectory(Arc::new(RwLock::new(Arc::new(dir))))
    }

    /// The current version; holding it never blocks a reload.
    pub fn snapshot(&self) -> Arc<Directory> {
        self.0.read().expect("directory lock poisoned").clone()
    }

    pub fn replace(&self, dir: Directory) {
        *self.0.write().expect("directory lock poisoned") = Arc::new(dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_sample_is_valid() {
        let d = Directory::parse(EMBEDDED).unwrap();
        assert_eq!(d.len(), 519);
    }

    #[test]
    fn refuses_bad_files() {
        let dup = "[[agency]]\nid='A'\nname='a'\n[[agency]]\nid='A'\nname='b'\n";
        assert!(
            Directory::parse(dup)
                .unwrap_err()
                .to_string()
                .contains("twice")
        );
        let orphan = "[[agency]]\nid='A'\nname='a'\nparent='B'\n";
        assert!(Directory::parse(orphan).is_err());
        assert!(Directory::parse("[[agency]]\nid='a.b'\nname='x'\n").is_err());
        assert!(Directory::parse("not toml [").is_err());
    }
}
