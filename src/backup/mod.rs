//! Online backup and restore. A backup is a RocksDB checkpoint of the running hub (one
//! consistent point in time, taken while writes go on) plus a manifest: the signed tree head
//! signed just before the checkpoint (so the copy holds at least that log), the hub's signing
//! certificate, and the SHA-256 of every file. A restore refuses a copy whose files do not
//! match the manifest, and checks the restored audit log against the manifest's head before
//! it says the data directory is ready (docs/operations.md). Taking a backup is the hub's
//! (`Hub::backup`, hub/backup.rs); this module knows the copy, not the hub.

mod manifest;
mod restore;

pub use manifest::{Manifest, ManifestFile};
pub use restore::{RestoreError, restore};

/// The database directory inside a backup (and inside a data directory).
pub const DB_DIR: &str = "db";
/// The manifest file inside a backup.
pub const MANIFEST: &str = "manifest.json";
