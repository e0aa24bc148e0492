//! The tamper-evident audit log: what an entry is, how it is hashed into the Merkle tree, and
//! signed tree heads.
//!
//! Every state change of the hub appends entries in the same RocksDB write batch as the change
//! (see `store::writer`), so the log cannot miss a change that happened nor record one that
//! did not. An entry is one line of JSON; its leaf hash is RFC 6962's `SHA-256(0x00 || line)`
//! over exactly the bytes stored and exported, so an auditor re-hashes the export as it is.

pub mod merkle;
pub mod verify;

use serde::{Deserialize, Serialize};

/// An event before it has a place in the log.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    /// `accepted`, `enqueued`, `refused`, `leased`, `delivered`, `status`, `revoked`,
    /// `expired`, `directory_reloaded`, `roles`, …
    pub event: &'static str,
    pub at_ms: u64,
    /// The agency that acted (sender, recipient) or is concerned.
    pub agency: Option<String>,
    /// The document's hub sequence number, when the event is about one.
    pub document: Option<u64>,
    /// Event-specific fields.
    pub detail: serde_json::Value,
}

impl AuditEvent {
    pub fn new(event: &'static str, at_ms: u64) -> AuditEvent {
        AuditEvent {
            event,
            at_ms,
            agency: None,
            document: None,
            detail: serde_json::Value::Null,
        }
    }
    pub fn agency(mut self, a: &str) -> AuditEvent {
        self.agency = Some(a.to_owned());
        self
    }
    pub fn document(mut self, seq: u64) -> AuditEvent {
        self.document = Some(seq);
        self
    }
    pub fn detail(mut self, d: serde_json::Value) -> AuditEvent {
        self.detail = d;
        self
    }

    /// The entry line for position `index` (field order is fixed by [`Entry`]).
    pub fn encode(&self, index: u64) -> Vec<u8> {
        let entry = Entry {
            index,
            at: crate::ids::rfc3339(self.at_ms),
            event: self.event.to_owned(),
            agency: self.agency.clone(),
            document: self.document.map(crate::ids::format_id),
            detail: if self.detail.is_null() {
                None
            } else {
                Some(self.detail.clone())
            },
        };
        serde_json::to_vec(&entry).expect("entry serializes")
    }
}

/// One log entry as stored and exported (one JSON line).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub index: u64,
    /// RFC 3339 UTC, milliseconds.
    pub at: String,
    pub event: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agency: Option<String>,
    /// The document's hub id (16 hex digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}
