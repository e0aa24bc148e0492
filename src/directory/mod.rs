//! The agency directory: which OrganIds exist, their names, and optional certificate pins.
//!
//! Loaded from `agencies.toml` and swapped whole on SIGHUP; readers take a cheap `Arc` snapshot,
//! so a reload never blocks or drops a request. A file that does not validate is refused and the
//! old directory stays.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use crate::edxml::is_valid_organ_id;

/// The sample directory compiled into the binary, used when no file is found.
pub const EMBEDDED: &str = include_str!("../../config/agencies.toml");

/// Where the directory file is by default (`server.agencies` in config/lienthong.toml).
pub const DEFAULT_PATH: &str = "config/agencies.toml";

pub mod sheet;
pub mod sheet_files;

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct Agency {
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// SHA-256 (hex) of the agency's TLS client certificate, when pinned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_sha256: Option<String>,
    /// SHA-256 (hex) of the agency's document-signing certificates. When set, only these may
    /// sign its packets; when empty, a signer whose subject CN is the OrganId may (see
    /// docs/signatures.md).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signing_cert_sha256: Vec<String>,
    /// The names (certificate O or CN) the agency's organisation certificate carries on the
    /// PDFs it issues. When set, a two-layer PDF whose organisation signer is not among them
    /// is `organisation_mismatch`; when empty, not checked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pdf_signer_names: Vec<String>,
    /// The agency's HTTPS endpoint for push delivery; none: the agency pulls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_url: Option<String>,
    /// CA certificates (PEM) to verify the push endpoint's server certificate with; none: the
    /// hub's client CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_ca: Option<std::path::PathBuf>,
}

impl Agency {
    /// What is wrong with this entry on its own (the OrganId, fingerprints, name, push URL);
    /// duplicates and parents are checked across the whole directory.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !is_valid_organ_id(&self.id) {
            out.push(format!(
                "{:?} is not an OrganId (1-35 characters: digits, A-Z and dots, e.g. 000.00.01.H13)",
                self.id
            ));
        }
        if self.name.trim().is_empty() {
            out.push("the name is empty".into());
        }
        // A spreadsheet runs a cell that starts like this as a formula when the directory is
        // exported and opened again ("CSV injection"); no agency name starts so.
        if self.name.starts_with(['=', '+', '-', '@', '\t', '\r']) {
            out.push(format!(
                "the name {:?} starts with a spreadsheet formula character",
                self.name
            ));
        }
        let is_hash = |p: &String| p.len() == 64 && p.bytes().all(|b| b.is_ascii_hexdigit());
        for p in self.cert_sha256.iter().chain(&self.signing_cert_sha256) {
            if !is_hash(p) {
                out.push(format!(
                    "certificate fingerprint {p:?} is not a SHA-256 (64 hex digits)"
                ));
            }
        }
        if let Some(url) = &self.push_url
            && let Err(why) = check_push_url(url)
        {
            out.push(why);
        }
        out
    }
}

/// A push endpoint must be an absolute https URL with a host: the hub never pushes a
/// document over plain HTTP.
fn check_push_url(url: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("push URL {url:?} {why}"));
    let Ok(uri) = url.parse::<http::Uri>() else {
        return bad("is not a URL");
    };
    if uri.scheme_str() != Some("https") {
        return bad("must start with https://");
    }
    if uri.host().is_none_or(str::is_empty) {
        return bad("has no host");
    }
    Ok(())
}

#[derive(Deserialize, Serialize)]
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
    #[error("{0}")]
    Sheet(String),
    #[error("the sheet was not imported, {0}")]
    Rows(#[from] sheet::SheetProblems),
}

/// What an import changed, against the directory file it replaces.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub agencies: usize,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

/// Reads a CSV or workbook (`sheet`: its sheet, default the first), validates every row and,
/// unless `dry_run`, replaces the directory file `dest` atomically. Nothing is written when any
/// row is wrong.
pub fn import(
    from: &Path,
    sheet: Option<&str>,
    dest: &Path,
    dry_run: bool,
) -> Result<ImportReport, DirectoryError> {
    let table = sheet_files::read(from, sheet).map_err(DirectoryError::Sheet)?;
    let dir = Directory::from_agencies(sheet::agencies_from(&table)?)?;
    let header = format!(
        "The agency directory, imported by `lienthong directory import` from {}.\nEdit the spreadsheet and import it again; the hub reloads this file on SIGHUP.",
        from.file_name().unwrap_or_default().to_string_lossy()
    );
    let text = dir.to_toml(&header);
    let old = if dest.exists() {
        Directory::load(dest)?
    } else {
        Directory::default()
    };
    let report = diff(&old, &dir);
    if !dry_run {
        crate::files::write_atomic(dest, text.as_bytes()).map_err(|source| DirectoryError::Io {
            path: dest.display().to_string(),
            source,
        })?;
    }
    Ok(report)
}

/// Writes the directory as CSV or XLSX (by `to`'s extension), in the columns import reads.
pub fn export(dir: &Directory, to: &Path) -> Result<(), DirectoryError> {
    sheet_files::write(to, &sheet::rows_of(dir)).map_err(DirectoryError::Sheet)
}

fn diff(old: &Directory, new: &Directory) -> ImportReport {
    let mut r = ImportReport {
        agencies: new.len(),
        ..Default::default()
    };
    for a in new.agencies() {
        match old.get(&a.id) {
            None => r.added.push(a.id.clone()),
            Some(o) if o != a => r.changed.push(a.id.clone()),
            Some(_) => {}
        }
    }
    r.removed = old
        .agencies()
        .iter()
        .filter(|a| !new.contains(&a.id))
        .map(|a| a.id.clone())
        .collect();
    r
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
        Directory::from_agencies(file.agency)
    }

    /// Validates a list of agencies as a directory.
    pub fn from_agencies(agency: Vec<Agency>) -> Result<Directory, DirectoryError> {
        let file = File { agency };
        let mut by_id = HashMap::with_capacity(file.agency.len());
        for (i, a) in file.agency.iter().enumerate() {
            if let Some(p) = a.problems().into_iter().next() {
                return Err(DirectoryError::Invalid(format!("agency {}: {p}", a.id)));
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

    /// The directory as a file, after a comment `header` (each line gets `# `).
    pub fn to_toml(&self, header: &str) -> String {
        let file = File {
            agency: self.agencies.clone(),
        };
        let body = toml::to_string(&file).expect("a directory serializes");
        let mut out: String = header.lines().map(|l| format!("# {l}\n")).collect();
        out.push('\n');
        out.push_str(&body);
        out
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
