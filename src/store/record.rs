//! What the hub keeps of one accepted packet.

use serde::{Deserialize, Serialize};

use crate::edxml::Kind;

impl DocRecord {
    /// Whether `agency` may fetch and acknowledge it as a recipient.
    pub fn delivers_to(&self, agency: &str) -> bool {
        self.recipients.iter().any(|r| r == agency) && !self.withdrawn.iter().any(|r| r == agency)
    }
}

/// What the hub knows of one accepted packet.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DocRecord {
    pub seq: u64,
    pub kind: Kind,
    pub from: String,
    /// The agencies it was queued for.
    pub recipients: Vec<String>,
    pub document_id: Option<String>,
    pub subject: Option<String>,
    pub status_code: Option<String>,
    /// For a status notice: the DocumentId it answers.
    #[serde(default)]
    pub response_for: Option<String>,
    /// The document a status notice, revoke or update acts on (its `seq`).
    #[serde(default)]
    pub acts_on: Option<u64>,
    /// The documents a replacement replaces.
    #[serde(default)]
    pub replaces: Vec<u64>,
    /// Recipients whose copy was withdrawn (revoke, update) before they pulled it: still
    /// recipients for the record and their status notices, but they may not fetch it.
    #[serde(default)]
    pub withdrawn: Vec<String>,
    pub business_type: u8,
    pub size: u64,
    /// Lower-case hex SHA-256 of the body.
    pub sha256: String,
    /// Milliseconds since the Unix epoch.
    pub received_at_ms: u64,
    pub has_signature: bool,
    /// The signature verdict: `verified`, or the failure code under policy `record`. `None`
    /// only for records written before signatures were verified.
    #[serde(default)]
    pub verdict: Option<String>,
    /// Subject CN and SHA-256 (hex) of the certificate that signed, when it verified.
    #[serde(default)]
    pub signer: Option<String>,
    #[serde(default)]
    pub signer_sha256: Option<String>,
    /// `Bussiness/Paper` was 1: a paper copy travels too (not electronic-only).
    #[serde(default)]
    pub paper: bool,
    /// The verdict on each PDF attachment's legal signatures, in packet order (the first is
    /// the main document). Empty when the packet has no PDF or checks were off.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pdf: Vec<PdfCheck>,
    /// For a packet forwarded by another hub: the hubs it passed, its origin first, this hub
    /// last (empty for local mail).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub route: Vec<crate::federation::Hop>,
}

/// The two-layer signature verdict on one PDF attachment (see `pdfsig`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PdfCheck {
    /// The attachment's name in the packet.
    pub name: String,
    /// `two_layer`, or the reason it is not (`only_personal`, `disallowed_change`, …).
    pub verdict: String,
    pub message: String,
}
