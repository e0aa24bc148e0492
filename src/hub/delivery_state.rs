//! Delivery state per recipient, read from the audit log: every transition is an entry there
//! (same batch as the change), so the history needs no second bookkeeping that could drift.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::amendments::status_state;
use super::{AgencyId, Hub, HubError, format_id, parse_id, rfc3339};
use crate::audit::Entry;
use crate::store::DocRecord;

/// The most documents one `GET /v1/sent` page holds.
const SENT_PAGE_MAX: usize = 200;

/// (recipient, state, at) transitions an entry makes.
fn transitions(e: &Entry) -> Vec<(String, String)> {
    let agency = e.agency.clone().unwrap_or_default();
    let detail = e.detail.clone().unwrap_or(Value::Null);
    match e.event.as_str() {
        "enqueued" => detail["recipients"]
            .as_array()
            .map(|rs| {
                rs.iter()
                    .filter_map(|r| r.as_str())
                    .map(|r| (r.to_owned(), "queued".to_owned()))
                    .collect()
            })
            .unwrap_or_default(),
        "recipient_added" => vec![(agency, "queued".into())],
        "leased" => vec![(agency, "leased".into())],
        "fetched" => vec![(agency, "fetched".into())],
        "delivered" => vec![(agency, "delivered".into())],
        "status" => {
            let code = detail["code"].as_str().unwrap_or("");
            vec![(agency, status_state(code).to_owned())]
        }
        "revoked" => vec![(agency, "revoked".into())],
        "recipient_removed" => vec![(agency, "removed".into())],
        "expired" => vec![(agency, "expired".into())],
        // A push attempt that failed: the item stays queued (and pullable) until the next.
        "push_failed" | "push_gone" => vec![(agency, "push_failed".into())],
        // What the hub holding a remote recipient's copy reported (docs/federation.md).
        "remote_state" => match detail["state"].as_str() {
            Some(s) => vec![(agency, s.to_owned())],
            None => vec![],
        },
        _ => vec![],
    }
}

/// What a step shows beyond its state: how a push went (attempt, reason, next attempt).
fn step_detail(e: &Entry) -> Option<Value> {
    match e.event.as_str() {
        "push_failed" | "push_gone" | "pushed" => e.detail.clone(),
        _ => None,
    }
}

/// What a step reported by another hub shows: that hub, when, and why (refusals).
fn remote_detail(e: &Entry) -> Option<Value> {
    (e.event == "remote_state").then(|| {
        let d = e.detail.clone().unwrap_or(Value::Null);
        let mut out = serde_json::json!({"hub": d["hub"], "at": d["at"]});
        for k in ["reason", "refused_by"] {
            if !d[k].is_null() {
                out[k] = d[k].clone();
            }
        }
        out
    })
}

/// Whether a reported step would move a recipient back: reports and status notices travel
/// separately, so a `delivered` report may arrive after the recipient's "accepted" (03).
fn goes_back(last: Option<&str>, state: &str) -> bool {
    let before_delivery = matches!(last, None | Some("queued" | "leased" | "push_failed"));
    match state {
        "fetched" => !before_delivery,
        "delivered" => !(before_delivery || last == Some("fetched")),
        _ => false,
    }
}

/// One step of a recipient's history.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub state: String,
    /// RFC 3339, from the audit entry.
    pub at: String,
    pub audit_index: u64,
    /// For push attempts: the attempt, its result, the next attempt's time (`delivered` by a
    /// push carries the push's `attempt`, `status` and `ms`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub push: Option<Value>,
    /// For a state reported by the hub holding a remote recipient's copy: that hub, the
    /// time there, and for refusals who refused and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<Value>,
}

/// A recipient's current state and how it got there.
#[derive(Debug, Clone, Serialize)]
pub struct RecipientStatus {
    pub agency: String,
    pub state: String,
    /// When the current state began (`None` before any step).
    pub since: Option<String>,
    pub history: Vec<Step>,
}

/// `GET /v1/documents/{id}/status`.
#[derive(Debug, Clone, Serialize)]
pub struct DocumentStatus {
    pub id: String,
    pub document_id: Option<String>,
    pub from: String,
    pub accepted_at: String,
    /// The legal signatures on each PDF attachment (`two_layer` or why not).
    pub pdf_signatures: Vec<crate::store::PdfCheck>,
    pub recipients: Vec<RecipientStatus>,
}

/// A recipient's current state in a [`SentPage`].
#[derive(Debug, Clone, Serialize)]
pub struct SentRecipient {
    pub agency: String,
    pub state: String,
    pub since: Option<String>,
}

/// One document in a [`SentPage`].
#[derive(Debug, Clone, Serialize)]
pub struct SentItem {
    pub id: String,
    pub kind: &'static str,
    pub document_id: Option<String>,
    pub subject: Option<String>,
    pub business_type: u8,
    pub accepted_at: String,
    pub recipients: Vec<SentRecipient>,
}

/// `GET /v1/sent`: a page of the caller's documents.
#[derive(Debug, Clone, Serialize)]
pub struct SentPage {
    pub items: Vec<SentItem>,
    /// Where the next page starts (`None`: this was the last).
    pub next_cursor: Option<String>,
}

/// A recipient's current state from its history: `queued` before any step.
fn current(agency: String, history: Vec<Step>) -> RecipientStatus {
    let (state, since) = match history.last() {
        Some(s) => (s.state.clone(), Some(s.at.clone())),
        None => ("queued".to_owned(), None),
    };
    RecipientStatus {
        agency,
        state,
        since,
        history,
    }
}

impl Hub {
    /// Per recipient: its history `[{state, at}]`, oldest first. A first fetch is a step
    /// forward only from `queued` or `leased` (reading a revoked document it still holds does
    /// not undo the revocation); the log keeps every `fetched` entry regardless.
    fn histories(&self, doc: &DocRecord) -> Result<BTreeMap<String, Vec<Step>>, HubError> {
        let mut out: BTreeMap<String, Vec<Step>> = BTreeMap::new();
        for r in &doc.recipients {
            out.entry(r.clone()).or_default();
        }
        for e in self.document_entries(doc.seq, usize::MAX)? {
            if e.event == "pushed" {
                // Logged with the delivery it made: it annotates that step.
                let agency = e.agency.clone().unwrap_or_default();
                if let Some(step) = out.get_mut(&agency).and_then(|h| h.last_mut()) {
                    step.push = step_detail(&e);
                }
                continue;
            }
            for (agency, state) in transitions(&e) {
                let history = out.entry(agency).or_default();
                let last = history.last().map(|h| h.state.as_str());
                if state == "fetched" && !matches!(last, None | Some("queued" | "leased")) {
                    continue;
                }
                if e.event == "remote_state" && goes_back(last, &state) {
                    continue;
                }
                history.push(Step {
                    state,
                    at: e.at.clone(),
                    audit_index: e.index,
                    push: step_detail(&e),
                    remote: remote_detail(&e),
                });
            }
        }
        Ok(out)
    }

    /// `GET /v1/documents/{id}/status`: the sender sees every recipient, a recipient itself.
    pub fn document_status(&self, caller: &AgencyId, id: &str) -> Result<DocumentStatus, HubError> {
        let seq = parse_id(id).ok_or(HubError::NotFound)?;
        let doc = self.store.doc(seq)?.ok_or(HubError::NotFound)?;
        let me = caller.organ_id.as_str();
        let is_sender = doc.from == me;
        let histories = self.histories(&doc)?;
        if !is_sender && !histories.contains_key(me) {
            return Err(HubError::NotFound);
        }
        let recipients = histories
            .into_iter()
            .filter(|(agency, _)| is_sender || agency == me)
            .map(|(agency, history)| current(agency, history))
            .collect();
        Ok(DocumentStatus {
            id: format_id(doc.seq),
            document_id: doc.document_id,
            from: doc.from,
            accepted_at: rfc3339(doc.received_at_ms),
            pdf_signatures: doc.pdf,
            recipients,
        })
    }

    /// `GET /v1/sent`: the caller's documents from `cursor` (a hub id) on, accepted at or after
    /// `since_ms`, with each recipient's current state.
    pub fn sent(
        &self,
        caller: &AgencyId,
        since_ms: u64,
        cursor: u64,
        limit: usize,
    ) -> Result<SentPage, HubError> {
        let limit = limit.clamp(1, SENT_PAGE_MAX);
        let seqs = self.store.sent(&caller.organ_id, cursor, limit + 1)?;
        let more = seqs.len() > limit;
        let page = &seqs[..seqs.len().min(limit)];
        let mut items = Vec::with_capacity(page.len());
        for doc in self.store.docs(page)? {
            if doc.received_at_ms < since_ms {
                continue;
            }
            let recipients = self
                .histories(&doc)?
                .into_iter()
                .map(|(agency, history)| {
                    let c = current(agency, history);
                    SentRecipient {
                        agency: c.agency,
                        state: c.state,
                        since: c.since,
                    }
                })
                .collect();
            items.push(SentItem {
                id: format_id(doc.seq),
                kind: doc.kind.as_str(),
                document_id: doc.document_id,
                subject: doc.subject,
                business_type: doc.business_type,
                accepted_at: rfc3339(doc.received_at_ms),
                recipients,
            });
        }
        let next_cursor = if more {
            seqs.last().map(|s| format_id(*s))
        } else {
            None
        };
        Ok(SentPage { items, next_cursor })
    }
}
