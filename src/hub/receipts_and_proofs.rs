//! What the hub signs and proves: receipts, signed tree heads, Merkle proofs, and reading the
//! audit log (auditors everything, an agency the events of its own documents).

use serde::Serialize;
use serde_json::{Value, json};

use super::{AgencyId, Hub, HubError, format_id, now_ms, parse_id, rfc3339};
use crate::audit::Entry;
use crate::audit::merkle::{Hash, leaf_hash};
use crate::digest::hex;
use crate::store::DocRecord;

/// Who reads the audit log.
pub enum Reader<'a> {
    Auditor,
    Agency(&'a AgencyId),
}

impl<'a> Reader<'a> {
    /// An agency, or (`None`) an auditor.
    pub fn of(agency: Option<&'a AgencyId>) -> Reader<'a> {
        agency.map_or(Reader::Auditor, Reader::Agency)
    }
}

/// The largest page of `GET /v1/audit` and the most entries scanned to fill one.
const PAGE_MAX: usize = 1000;
const SCAN_MAX: usize = 20_000;

fn hash_hex(h: &Hash) -> String {
    hex(h)
}

/// `GET /v1/audit/proof`: entry `index` is in the tree of `tree_size` entries.
#[derive(Debug, Clone, Serialize)]
pub struct InclusionProof {
    pub index: u64,
    pub tree_size: u64,
    /// Hex SHA-256 of the leaf (RFC 6962: `0x00 || entry`).
    pub leaf_hash: String,
    /// The entry exactly as logged.
    pub entry: String,
    pub audit_path: Vec<String>,
}

/// `GET /v1/audit/consistency`: the tree of `from` entries is a prefix of the tree of `to`.
#[derive(Debug, Clone, Serialize)]
pub struct ConsistencyProof {
    pub from: u64,
    pub to: u64,
    pub proof: Vec<String>,
}

/// `GET /v1/audit`: a page of entries the reader may see.
#[derive(Debug, Clone, Serialize)]
pub struct AuditPage {
    pub items: Vec<Entry>,
    /// Where to continue (`None`: the end of the log as it stood).
    pub next_cursor: Option<u64>,
    pub tree_size: u64,
}

impl Hub {
    fn sign(&self, payload: &Value) -> Result<String, HubError> {
        crate::jws::sign(&self.notary, payload).map_err(|e| HubError::Notary(e.to_string()))
    }

    /// The submission receipt of `record`, whose `accepted` entry is `audit_index`. Not
    /// stored here: the hot path answers with it, and [`Hub::receipts`] signs (and keeps) one
    /// from the log when asked.
    pub(super) fn submission_receipt(
        &self,
        record: &DocRecord,
        audit_index: u64,
    ) -> Result<String, HubError> {
        let jws = self.sign(&json!({
            "type": "submission",
            "id": format_id(record.seq),
            "document_id": record.document_id,
            "sha256": record.sha256,
            "sender": record.from,
            "recipients": record.recipients,
            "accepted_at": rfc3339(record.received_at_ms),
            "audit_index": audit_index,
        }))?;
        Ok(jws)
    }

    /// The delivery receipt of `record` to `recipient`, acked at `at_ms` (entry `audit_index`).
    pub(super) fn delivery_receipt(
        &self,
        record: &DocRecord,
        recipient: &str,
        at_ms: u64,
        audit_index: u64,
    ) -> Result<String, HubError> {
        let jws = self.sign(&json!({
            "type": "delivery",
            "id": format_id(record.seq),
            "document_id": record.document_id,
            "sha256": record.sha256,
            "sender": record.from,
            "recipient": recipient,
            "delivered_at": rfc3339(at_ms),
            "audit_index": audit_index,
        }))?;
        Ok(jws)
    }

    /// One receipt for the items of one batch acknowledgement, each with its `delivered`
    /// entry: a single signature however many items the page held.
    pub(super) fn delivery_batch_receipt(
        &self,
        recipient: &str,
        at_ms: u64,
        items: &[(&DocRecord, u64)],
    ) -> Result<String, HubError> {
        let items: Vec<Value> = items
            .iter()
            .map(|(record, audit_index)| {
                json!({
                    "id": format_id(record.seq),
                    "document_id": record.document_id,
                    "sha256": record.sha256,
                    "sender": record.from,
                    "audit_index": audit_index,
                })
            })
            .collect();
        self.sign(&json!({
            "type": "delivery_batch",
            "recipient": recipient,
            "delivered_at": rfc3339(at_ms),
            "items": items,
        }))
    }

    /// The first `limit` log entries about document `seq`, decoded.
    pub(super) fn document_entries(&self, seq: u64, limit: usize) -> Result<Vec<Entry>, HubError> {
        let mut out = Vec::new();
        for i in self.store.document_audit(seq, limit)? {
            for (_, bytes) in self.store.audit_entries(i, i + 1, 1)? {
                if let Ok(e) = serde_json::from_slice::<Entry>(&bytes) {
                    out.push(e);
                }
            }
        }
        Ok(out)
    }

    /// The submission receipt of `doc`: the kept one, or signed (and kept) from the document's
    /// first log entry, its `accepted`. Reads one entry, however many the document has.
    pub(super) fn kept_submission_receipt(&self, doc: &DocRecord) -> Result<String, HubError> {
        if let Some(jws) = self.store.receipt(doc.seq, "")? {
            return Ok(jws);
        }
        let index = self
            .document_entries(doc.seq, 1)?
            .into_iter()
            .find(|e| e.event == "accepted")
            .map(|e| e.index)
            .ok_or(HubError::NotFound)?;
        let jws = self.submission_receipt(doc, index)?;
        self.store.put_receipt(doc.seq, "", &jws)?;
        Ok(jws)
    }

    /// The receipts of a document: the sender gets the submission receipt and every delivery
    /// receipt, a recipient its own delivery receipt. Each is signed from the audit log the
    /// first time it is asked for and then kept (unsynced: one lost in a crash is signed
    /// again; its content is the same, only the ECDSA signature differs).
    pub fn receipts(&self, caller: &AgencyId, id: &str) -> Result<Vec<String>, HubError> {
        let seq = parse_id(id).ok_or(HubError::NotFound)?;
        let doc = self.store.doc(seq)?.ok_or(HubError::NotFound)?;
        let me = caller.organ_id.as_str();
        let is_sender = doc.from == me;
        if !is_sender && !doc.recipients.iter().any(|r| r == me) {
            return Err(HubError::NotFound);
        }
        let entries = self.document_entries(seq, usize::MAX)?;
        let mut out = Vec::new();
        if is_sender {
            out.push(self.kept_submission_receipt(&doc)?);
        }
        for e in entries.iter().filter(|e| e.event == "delivered") {
            let Some(recipient) = e.agency.as_deref() else {
                continue;
            };
            if !is_sender && recipient != me {
                continue;
            }
            let jws = match self.store.receipt(seq, recipient)? {
                Some(j) => j,
                None => {
                    let at = time::OffsetDateTime::parse(
                        &e.at,
                        &time::format_description::well_known::Rfc3339,
                    )
                    .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as u64)
                    .unwrap_or_else(|_| now_ms());
                    let jws = self.delivery_receipt(&doc, recipient, at, e.index)?;
                    self.store.put_receipt(seq, recipient, &jws)?;
                    jws
                }
            };
            out.push(jws);
        }
        Ok(out)
    }

    /// The latest signed tree head, signing a new one first when the log has grown since.
    pub fn tree_head(&self) -> Result<String, HubError> {
        let size = self.store.audit_size();
        if let Some((s, jws)) = self.store.latest_head()?
            && s == size
        {
            return Ok(jws);
        }
        self.sign_head(size)
    }

    fn sign_head(&self, size: u64) -> Result<String, HubError> {
        let root = self.store.root(size)?;
        let jws = self.sign(&json!({
            "type": "tree_head",
            "tree_size": size,
            "root_hash": hash_hex(&root),
            "timestamp": rfc3339(now_ms()),
        }))?;
        self.store.put_head(size, &jws)?;
        Ok(jws)
    }

    /// Signs a tree head when the log grew by `every` entries, or at all and `due` is set
    /// (the periodic tick). Returns the new head's size, if one was signed.
    pub fn maybe_sign_head(&self, due: bool, every: u64) -> Result<Option<u64>, HubError> {
        // One signer of tree heads per hub, however many processes serve it.
        if !self.store.lead() {
            return Ok(None);
        }
        let size = self.store.audit_size();
        let last = self.store.latest_head()?.map_or(0, |(s, _)| s);
        if size > last && (due || size - last >= every) {
            self.sign_head(size)?;
            return Ok(Some(size));
        }
        Ok(None)
    }

    fn check_size(&self, size: u64) -> Result<(), HubError> {
        let have = self.store.audit_size();
        if size > have {
            return Err(HubError::Invalid(format!(
                "the log holds {have} entries; tree size {size} does not exist yet"
            )));
        }
        Ok(())
    }

    /// Whether `reader` may see entry `e`: auditors all; an agency its own refusals, every
    /// event of documents it sent, and of documents it receives only its own events and the
    /// sender's (a recipient must not learn when another recipient leased, fetched,
    /// acknowledged or answered: the same rule as `/status`).
    fn visible(&self, reader: &Reader<'_>, e: &Entry) -> bool {
        let Reader::Agency(p) = reader else {
            return true;
        };
        let me = p.organ_id.as_str();
        let about_me = e.agency.as_deref() == Some(me);
        match &e.document {
            Some(d) => {
                about_me
                    || parse_id(d)
                        .and_then(|s| self.store.doc(s).ok().flatten())
                        .is_some_and(|doc| {
                            doc.from == me
                                || (doc.recipients.iter().any(|r| r == me)
                                    && e.agency.as_deref().is_none_or(|a| a == doc.from))
                        })
            }
            None => about_me,
        }
    }

    /// Inclusion proof of entry `index` in the tree of `tree_size` entries (default: the
    /// latest signed tree head's). The entry itself is shown only to whom may read it
    /// (others get 404: proofs are for one's own receipts).
    pub fn inclusion_proof(
        &self,
        reader: Reader<'_>,
        index: u64,
        tree_size: Option<u64>,
    ) -> Result<InclusionProof, HubError> {
        let size = match tree_size {
            Some(s) => s,
            None => self.store.latest_head()?.map_or(0, |(s, _)| s),
        };
        self.check_size(size)?;
        if index >= size {
            return Err(HubError::Invalid(format!(
                "entry {index} is not in the tree of size {size} (ask with tree_size=, or wait for the next signed head)"
            )));
        }
        let entry = self
            .store
            .audit_entries(index, index + 1, 1)?
            .pop()
            .map(|(_, b)| b)
            .ok_or(HubError::NotFound)?;
        let decoded: Entry = serde_json::from_slice(&entry)
            .map_err(|e| HubError::Invalid(format!("entry {index} is unreadable: {e}")))?;
        if !self.visible(&reader, &decoded) {
            return Err(HubError::NotFound);
        }
        let path = self.store.inclusion_proof(index, size)?;
        Ok(InclusionProof {
            index,
            tree_size: size,
            leaf_hash: hash_hex(&leaf_hash(&entry)),
            entry: String::from_utf8_lossy(&entry).into_owned(),
            audit_path: path.iter().map(hash_hex).collect(),
        })
    }

    /// Consistency proof between the trees of `from` and `to` entries.
    pub fn consistency_proof(&self, from: u64, to: u64) -> Result<ConsistencyProof, HubError> {
        self.check_size(to)?;
        if from > to {
            return Err(HubError::Invalid("from must not exceed to".into()));
        }
        let proof = self.store.consistency_proof(from, to)?;
        Ok(ConsistencyProof {
            from,
            to,
            proof: proof.iter().map(hash_hex).collect(),
        })
    }

    /// A page of log entries from `cursor`, filtered. An agency sees refusals it caused and
    /// the events of documents it sent or receives.
    pub fn audit_page(
        &self,
        reader: Reader<'_>,
        filter: &AuditFilter,
        cursor: u64,
        limit: usize,
    ) -> Result<AuditPage, HubError> {
        let limit = limit.clamp(1, PAGE_MAX);
        let end = self.store.audit_size();
        let mut items = Vec::new();
        let mut next = cursor;
        let mut scanned = 0;
        while next < end && items.len() < limit && scanned < SCAN_MAX {
            let batch = self.store.audit_entries(next, end, 512)?;
            if batch.is_empty() {
                break;
            }
            for (i, bytes) in batch {
                next = i + 1;
                scanned += 1;
                let Ok(e) = serde_json::from_slice::<Entry>(&bytes) else {
                    continue;
                };
                if !filter.matches(&e) {
                    continue;
                }
                if !self.visible(&reader, &e) {
                    continue;
                }
                items.push(e);
                if items.len() >= limit {
                    break;
                }
            }
        }
        Ok(AuditPage {
            items,
            next_cursor: (next < end).then_some(next),
            tree_size: end,
        })
    }

    /// Number of entries in the log (written and synced).
    pub fn audit_size(&self) -> u64 {
        self.store.audit_size()
    }

    /// Refuses an export of more entries than the log holds.
    pub fn check_export(&self, size: u64) -> Result<(), HubError> {
        self.check_size(size)
    }

    /// Entries `0..size` as JSON lines, exactly as stored (what `audit verify --export`
    /// reads), handed to `send` in chunks of about 1 MiB; stops early when `send` says no
    /// (the client went away).
    pub fn audit_export(
        &self,
        size: u64,
        mut send: impl FnMut(bytes::Bytes) -> bool,
    ) -> Result<(), HubError> {
        self.check_size(size)?;
        let mut next = 0;
        let mut chunk = Vec::with_capacity(1 << 20);
        while next < size {
            let batch = self.store.audit_entries(next, size, 4096)?;
            if batch.is_empty() {
                break;
            }
            for (i, bytes) in batch {
                chunk.extend_from_slice(&bytes);
                chunk.push(b'\n');
                next = i + 1;
                if chunk.len() >= 1 << 20 && !send(std::mem::take(&mut chunk).into()) {
                    return Ok(());
                }
            }
        }
        if !chunk.is_empty() {
            send(chunk.into());
        }
        Ok(())
    }
}

/// `GET /v1/audit` filters.
#[derive(Debug, Default)]
pub struct AuditFilter {
    pub agency: Option<String>,
    /// A hub id.
    pub document: Option<String>,
    /// RFC 3339 bounds on `at` (inclusive from, exclusive to); compared as text, which is
    /// exact for the hub's own UTC timestamps.
    pub from: Option<String>,
    pub to: Option<String>,
}

impl AuditFilter {
    fn matches(&self, e: &Entry) -> bool {
        self.agency
            .as_ref()
            .is_none_or(|a| e.agency.as_ref() == Some(a))
            && self
                .document
                .as_ref()
                .is_none_or(|d| e.document.as_ref() == Some(d))
            && self
                .from
                .as_ref()
                .is_none_or(|f| e.at.as_str() >= f.as_str())
            && self.to.as_ref().is_none_or(|t| e.at.as_str() < t.as_str())
    }
}
