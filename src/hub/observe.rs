//! What the hub counts: Prometheus metrics (process-lifetime) and the persisted rate counters
//! of `/v1/stats`. Fed only from [`Hub::commit`] and a few read paths, so no transport can
//! forget to count. Nothing here may fail a request: statistics errors are logged.

use metrics::{Counter, counter, gauge, histogram};

use super::{Hub, HubError, now_ms};
use crate::stats::HUB;
use crate::store::Change;

/// Registered Prometheus counters of one agency.
pub(super) struct AgencyCounters {
    sent: Counter,
    received: Counter,
}

impl Hub {
    /// Counts committed changes.
    pub(super) fn observe(&self, changes: &[Change<'_>]) {
        let now = now_ms();
        let c = &self.counters;
        self.observe_enqueued(changes, now);
        for change in changes {
            match change {
                // The hub's own notices are not agency traffic.
                Change::Accept { record, .. } if record.kind == crate::edxml::Kind::Notice => {}
                Change::Accept { record, .. } => self.observe_accepted(record, now),
                Change::Lease { agency, entry, .. } => {
                    if entry.deliveries == 1 {
                        c.add(now, "delivered", agency, 1);
                        counter!("lienthong_items_delivered_total").increment(1);
                    } else {
                        counter!("lienthong_items_redelivered_total").increment(1);
                    }
                }
                Change::Fetch {
                    agency,
                    first_delivery: true,
                    ..
                } => {
                    c.add(now, "delivered", agency, 1);
                    counter!("lienthong_items_delivered_total").increment(1);
                }
                Change::Dequeue { agency, .. } => self.lower_depth(agency),
                Change::Ack { agency, .. } => {
                    c.add(now, "acked", agency, 1);
                    counter!("lienthong_items_acked_total").increment(1);
                    self.lower_depth(agency);
                }
                // Enqueues were counted together above: a fan-out is one lock per map, not 519.
                Change::Enqueue { .. }
                | Change::Fetch { .. }
                | Change::Rewrite { .. }
                | Change::Purge { .. }
                | Change::Reschedule { .. }
                | Change::Push { .. }
                | Change::Release { .. }
                | Change::PullOnly { .. } => {}
            }
        }
    }

    /// Counts the items a commit queued, per recipient, and raises their queue depths.
    fn observe_enqueued(&self, changes: &[Change<'_>], now: u64) {
        let enqueued = || {
            changes.iter().filter_map(|ch| match ch {
                Change::Enqueue { agency, .. } => Some(*agency),
                _ => None,
            })
        };
        if enqueued().next().is_none() {
            return;
        }
        self.counters.add_each(now, "received", enqueued(), 1);
        self.agency_counters(enqueued(), |m| m.received.increment(1));
        let mut depth = self.depth.lock().expect("depth lock");
        for agency in enqueued() {
            match depth.get_mut(agency) {
                Some(d) => *d += 1,
                None => {
                    depth.insert(agency.to_owned(), 1);
                }
            }
        }
    }

    fn lower_depth(&self, agency: &str) {
        if let Some(d) = self.depth.lock().expect("depth lock").get_mut(agency) {
            *d = d.saturating_sub(1);
        }
    }

    /// Counts an accepted packet: its sender's figures and the verdict on its signature.
    fn observe_accepted(&self, record: &crate::store::DocRecord, now: u64) {
        let c = &self.counters;
        let sender = record.from.as_str();
        c.add(now, "accepted", sender, 1);
        c.add(now, "bytes_in", sender, record.size);
        if record.has_signature {
            c.add(now, "signed", sender, 1);
        }
        if record.verdict.as_deref() == Some(crate::dsig::VERDICT_VERIFIED) {
            c.add(now, "verified", sender, 1);
        }
        if !record.paper {
            c.add(now, "electronic", sender, 1);
        }
        // The two-layer share counts documents by their main (first) PDF.
        if let Some(main) = record.pdf.first() {
            c.add(now, "with_pdf", sender, 1);
            if main.verdict == "two_layer" {
                c.add(now, "two_layer", sender, 1);
            }
        }
        counter!("lienthong_packets_accepted_total", "kind" => record.kind.as_str()).increment(1);
        counter!("lienthong_bytes_received_total").increment(record.size);
        self.agency_counters(std::iter::once(sender), |m| m.sent.increment(1));
        let verdict: metrics::SharedString = match (&record.verdict, record.has_signature) {
            (Some(v), _) => v.clone().into(),
            (None, true) => "not_verified".into(),
            (None, false) => "unsigned".into(),
        };
        counter!("lienthong_signature_verdicts_total", "verdict" => verdict).increment(1);
        if let Some(code) = &record.status_code {
            c.add(now, &format!("status:{code}"), sender, 1);
            counter!("lienthong_status_notices_total", "code" => code.clone()).increment(1);
        }
    }

    /// Runs `f` on the per-agency Prometheus counters of each agency. Handles are registered
    /// once per agency and kept, so the hot path does an atomic add, not a registry lookup
    /// with a freshly allocated label.
    fn agency_counters<'a>(
        &self,
        agencies: impl IntoIterator<Item = &'a str>,
        f: impl Fn(&AgencyCounters),
    ) {
        let mut map = self.agency_metrics.lock().expect("agency metrics lock");
        for agency in agencies {
            match map.get(agency) {
                Some(m) => f(m),
                None => {
                    let m = AgencyCounters {
                        sent: counter!("lienthong_agency_sent_total", "agency" => agency.to_owned()),
                        received: counter!("lienthong_agency_received_total", "agency" => agency.to_owned()),
                    };
                    f(&m);
                    map.insert(agency.to_owned(), m);
                }
            }
        }
    }

    /// Counts a refused packet (the refusal itself stored nothing). The audit log records
    /// the first refusal per agency and reason in each minute at once; the rest of that
    /// minute are added up and logged as one entry with their `count` when the minute is
    /// over (see [`Hub::flush_refusals`]), so a flood of bad packets costs one log entry a
    /// minute, not one each, and the log still tells how many there were.
    pub fn observe_refusal(&self, agency: Option<&str>, code: &str) {
        let now = now_ms();
        let minute = now / 60_000;
        let key = (agency.unwrap_or("").to_owned(), code.to_owned());
        let first_this_minute = {
            let mut tally = self.refusals.lock().expect("refusals lock");
            match tally.get_mut(&key) {
                Some(t) if t.minute == minute => {
                    t.count += 1;
                    t.last_ms = now;
                    false
                }
                _ => {
                    if let Some(old) = tally.remove(&key) {
                        self.log_refusals(&key, &old);
                    }
                    tally.insert(
                        key.clone(),
                        RefusalTally {
                            minute,
                            count: 0,
                            first_ms: 0,
                            last_ms: 0,
                        },
                    );
                    true
                }
            }
        };
        if first_this_minute {
            let one = RefusalTally {
                minute,
                count: 1,
                first_ms: now,
                last_ms: now,
            };
            self.log_refusals(&key, &one);
        }
        let who = agency.unwrap_or(HUB);
        self.counters.add(now, "refused", who, 1);
        self.counters.add(now, &format!("refused:{code}"), who, 1);
        counter!("lienthong_packets_refused_total", "reason" => code.to_owned()).increment(1);
    }

    /// Logs the refusals added up for minutes that are over (all of them with `all`, on
    /// shutdown).
    pub fn flush_refusals(&self, all: bool) {
        let minute = now_ms() / 60_000;
        let done: Vec<((String, String), RefusalTally)> = {
            let mut tally = self.refusals.lock().expect("refusals lock");
            let keys: Vec<_> = tally
                .iter()
                .filter(|(_, t)| all || t.minute < minute)
                .map(|(k, _)| k.clone())
                .collect();
            keys.into_iter()
                .filter_map(|k| tally.remove(&k).map(|t| (k, t)))
                .collect()
        };
        for (key, t) in done {
            self.log_refusals(&key, &t);
        }
    }

    /// One `refused` entry for `t.count` refusals (nothing for none).
    fn log_refusals(&self, (agency, code): &(String, String), t: &RefusalTally) {
        if t.count == 0 {
            return;
        }
        let mut detail = serde_json::json!({ "reason": code });
        if t.count > 1 || t.first_ms != t.last_ms {
            detail["count"] = t.count.into();
            detail["first"] = super::rfc3339(t.first_ms).into();
            detail["last"] = super::rfc3339(t.last_ms).into();
        }
        let mut event = crate::audit::AuditEvent::new("refused", t.last_ms).detail(detail);
        if !agency.is_empty() {
            event = event.agency(agency);
        }
        if let Err(e) = self.record(event) {
            tracing::warn!(error = %e, "could not log refusals in the audit log");
        }
    }

    pub(super) fn observe_fetch(&self, agency: &str, bytes: u64) {
        self.counters.add(now_ms(), "bytes_out", agency, bytes);
        counter!("lienthong_bytes_sent_total").increment(bytes);
    }

    /// Counts a push attempt: per agency in `/metrics` (result, duration) and in the
    /// `/v1/stats` counters (`push_attempts`, `pushed`, `push_failed:{reason}`).
    pub(super) fn observe_push(&self, agency: &str, outcome: &super::push::PushOutcome, ms: u64) {
        let now = now_ms();
        let c = &self.counters;
        c.add(now, "push_attempts", agency, 1);
        match outcome {
            super::push::PushOutcome::Delivered { .. } => c.add(now, "pushed", agency, 1),
            failed => c.add(now, &format!("push_failed:{}", failed.reason()), agency, 1),
        }
        let agency = agency.to_owned();
        counter!("lienthong_push_attempts_total", "agency" => agency.clone(), "result" => outcome.reason())
            .increment(1);
        histogram!("lienthong_push_duration_seconds", "agency" => agency)
            .record(ms as f64 / 1000.0);
    }

    pub(super) fn observe_delivery_latency(&self, ms: u64) {
        histogram!("lienthong_delivery_latency_seconds").record(ms as f64 / 1000.0);
    }

    pub(super) fn observe_completion(&self, agency: &str, ms: u64) {
        let now = now_ms();
        self.counters.add(now, "completion_ms", agency, ms);
        self.counters.add(now, "completion_count", agency, 1);
    }

    /// Writes pending statistics to RocksDB and logs the refusals of minutes that are over
    /// (every few seconds, and on shutdown).
    pub fn flush_stats(&self) -> Result<(), HubError> {
        self.flush_refusals(false);
        let counters = self.counters.drain();
        let pulls = std::mem::take(&mut *self.last_pull.lock().expect("last-pull lock"));
        if let Err(e) = self.store.apply_stats(&counters, &pulls, now_ms()) {
            // Put them back so the next flush retries.
            for (k, n) in counters {
                self.counters.add_raw(k, n);
            }
            self.last_pull.lock().expect("last-pull lock").extend(pulls);
            return Err(e.into());
        }
        Ok(())
    }

    /// Pending items per agency (agencies with none are left out).
    pub fn queue_depths(&self) -> Vec<(String, u64)> {
        let d = self.depth.lock().expect("depth lock");
        let mut v: Vec<(String, u64)> = d
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(a, n)| (a.clone(), *n))
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v
    }

    /// Age in seconds of the oldest pending item of `agency`.
    pub fn oldest_pending_secs(&self, agency: &str, now: u64) -> Result<Option<u64>, HubError> {
        let Some(seq) = self.store.oldest_pending(agency)? else {
            return Ok(None);
        };
        Ok(self
            .store
            .doc(seq)?
            .map(|d| now.saturating_sub(d.received_at_ms) / 1000))
    }

    /// Updates the queue and storage gauges (from the maintenance task).
    pub fn refresh_gauges(&self) -> Result<(), HubError> {
        let now = now_ms();
        if self.store.shared() {
            // Other processes enqueue and ack too: count again from storage.
            let counted = self.store.queue_depths()?;
            let mut depth = self.depth.lock().expect("depth lock");
            // Queues emptied elsewhere stay in the map at 0, so their gauges go to 0 too.
            for n in depth.values_mut() {
                *n = 0;
            }
            depth.extend(counted);
        }
        let all: Vec<(String, u64)> = {
            let d = self.depth.lock().expect("depth lock");
            d.iter().map(|(a, n)| (a.clone(), *n)).collect()
        };
        for (agency, n) in all {
            gauge!("lienthong_queue_depth", "agency" => agency.clone()).set(n as f64);
            let age = if n > 0 {
                self.oldest_pending_secs(&agency, now)?.unwrap_or(0)
            } else {
                0
            };
            gauge!("lienthong_queue_oldest_age_seconds", "agency" => agency).set(age as f64);
        }
        self.refresh_peer_gauges(now)?;
        let (sst, pending) = self.store.size_figures();
        let storage_ok = self.store.health().is_ok();
        gauge!("lienthong_storage_ok").set(if storage_ok { 1.0 } else { 0.0 });
        gauge!("lienthong_rocksdb_live_sst_bytes").set(sst as f64);
        gauge!("lienthong_rocksdb_pending_compaction_bytes").set(pending as f64);
        self.publish_agency_certificates();
        Ok(())
    }

    /// `lienthong_agency_certificate_expiry_seconds{agency}`: seconds until the client
    /// certificate each agency last connected with expires (negative once it has).
    fn publish_agency_certificates(&self) {
        let now = std::time::SystemTime::now();
        let seen: Vec<(String, std::time::SystemTime)> = {
            let m = self.agency_certificates.lock().expect("certificate map");
            m.iter().map(|(a, t)| (a.clone(), *t)).collect()
        };
        for (agency, not_after) in seen {
            let secs = match not_after.duration_since(now) {
                Ok(d) => d.as_secs_f64(),
                Err(e) => -e.duration().as_secs_f64(),
            };
            gauge!("lienthong_agency_certificate_expiry_seconds", "agency" => agency).set(secs);
        }
    }
}

/// Refusals of one agency for one reason in one minute, not yet logged.
pub(super) struct RefusalTally {
    pub minute: u64,
    pub count: u64,
    pub first_ms: u64,
    pub last_ms: u64,
}
