//! `GET /v1/stats`: counts and rates over sliding windows, read from the persisted counters.
//!
//! Windows are read at bucket resolution: 1m, 1h and 24h from minute buckets, 30d from hour
//! buckets. A window covers every bucket that overlaps it, so it may reach up to one bucket
//! further back; `covered_secs` says exactly how long, and rates divide by it.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::{Hub, HubError, now_ms, rfc3339};
use crate::stats::{HOUR, HUB, MINUTE};

/// A reporting window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    Minute,
    Hour,
    Day,
    Month,
}

impl Window {
    pub fn parse(s: &str) -> Option<Window> {
        Some(match s {
            "1m" => Window::Minute,
            "1h" => Window::Hour,
            "24h" => Window::Day,
            "30d" => Window::Month,
            _ => return None,
        })
    }

    pub fn label(self) -> &'static str {
        match self {
            Window::Minute => "1m",
            Window::Hour => "1h",
            Window::Day => "24h",
            Window::Month => "30d",
        }
    }

    fn secs(self) -> u64 {
        match self {
            Window::Minute => 60,
            Window::Hour => 3600,
            Window::Day => 86_400,
            Window::Month => 30 * 86_400,
        }
    }

    /// (resolution, bucket length in ms)
    fn resolution(self) -> (u8, u64) {
        match self {
            Window::Month => (HOUR, 3_600_000),
            _ => (MINUTE, 60_000),
        }
    }
}

/// Whose figures a caller may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Ops staff and auditors: the whole hub and every agency.
    Hub,
    /// An agency: its own figures only.
    Agency(String),
}

/// Counts and rates of one agency, or of the hub.
#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    pub accepted: u64,
    pub accepted_per_min: f64,
    pub received: u64,
    pub delivered: u64,
    pub acked: u64,
    pub acked_per_min: f64,
    pub refused: u64,
    pub refused_by_reason: BTreeMap<String, u64>,
    /// Push delivery: attempts, those delivered, and failures by reason.
    pub push_attempts: u64,
    pub pushed: u64,
    pub push_failed_by_reason: BTreeMap<String, u64>,
    pub status_notices: BTreeMap<String, u64>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub signed: u64,
    /// Shares of `accepted` (`None` when nothing was accepted).
    pub signed_share: Option<f64>,
    pub verified: u64,
    pub verified_share: Option<f64>,
    pub electronic: u64,
    pub electronic_share: Option<f64>,
    /// Documents with a PDF attachment, and those whose main PDF carries both legal
    /// signatures in order (Decree 30/2020); the share is of documents with a PDF.
    pub with_pdf: u64,
    pub two_layer: u64,
    pub two_layer_share: Option<f64>,
    pub delivery_to_completed: Completion,
}

/// From a recipient's ack to its "completed" (06) notice.
#[derive(Debug, Clone, Serialize)]
pub struct Completion {
    pub count: u64,
    pub avg_secs: Option<f64>,
}

/// One agency's line in a report.
#[derive(Debug, Clone, Serialize)]
pub struct AgencyFigures {
    pub agency: String,
    pub pending: u64,
    #[serde(flatten)]
    pub figures: Figures,
}

/// An agency with the most pending items.
#[derive(Debug, Clone, Serialize)]
pub struct Backlog {
    pub agency: String,
    pub name: Option<String>,
    pub pending: u64,
    pub oldest_pending_secs: Option<u64>,
    pub last_pull: Option<String>,
}

/// An agency with pending items that has not pulled for long (or ever).
#[derive(Debug, Clone, Serialize)]
pub struct NotPulling {
    pub agency: String,
    pub name: Option<String>,
    pub last_pull: Option<String>,
    pub idle_secs: Option<u64>,
}

/// One bucket of the report's time series.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    pub t: String,
    pub accepted: u64,
    pub refused: u64,
}

/// `GET /v1/stats`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `hub`, or the agency the report is limited to.
    pub scope: String,
    pub window: &'static str,
    pub window_secs: u64,
    pub covered_secs: u64,
    pub bucket_secs: u64,
    pub series_start: String,
    pub generated_at: String,
    pub pending: u64,
    pub totals: Figures,
    pub agencies: Vec<AgencyFigures>,
    pub backlog: Vec<Backlog>,
    pub not_pulling: Vec<NotPulling>,
    /// Agencies with a push endpoint and its state (`pull_only` after 410 Gone).
    pub push: Vec<super::push::LaneStatus>,
    /// Peer hubs (ops and auditors only): backlog, forwards and reports in the window.
    pub peers: Vec<super::PeerFigures>,
    pub series: Vec<Point>,
}

fn share(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| (part as f64 / whole as f64 * 10_000.0).round() / 10_000.0)
}

/// The counters summed over a window: (metric, agency) → n, and the series of the scope's
/// own (accepted, refused) per bucket.
struct Sums {
    by_metric: HashMap<(String, String), u64>,
    series: BTreeMap<u32, (u64, u64)>,
}

/// Figures of one agency (or of the hub, with `HUB`) from the summed counters.
fn figures(sums: &HashMap<(String, String), u64>, who: &str, covered_secs: u64) -> Figures {
    let get = |m: &str| {
        sums.get(&(m.to_owned(), who.to_owned()))
            .copied()
            .unwrap_or(0)
    };
    let mut refused_by_reason = BTreeMap::new();
    let mut status_notices = BTreeMap::new();
    let mut push_failed_by_reason = BTreeMap::new();
    for ((metric, agency), n) in sums {
        if agency != who {
            continue;
        }
        if let Some(code) = metric.strip_prefix("refused:") {
            refused_by_reason.insert(code.to_owned(), *n);
        } else if let Some(code) = metric.strip_prefix("status:") {
            status_notices.insert(code.to_owned(), *n);
        } else if let Some(reason) = metric.strip_prefix("push_failed:") {
            push_failed_by_reason.insert(reason.to_owned(), *n);
        }
    }
    let accepted = get("accepted");
    let per_min = |n: u64| (n as f64 * 60.0 / covered_secs.max(1) as f64 * 100.0).round() / 100.0;
    let count = get("completion_count");
    Figures {
        accepted,
        accepted_per_min: per_min(accepted),
        received: get("received"),
        delivered: get("delivered"),
        acked: get("acked"),
        acked_per_min: per_min(get("acked")),
        refused: get("refused"),
        refused_by_reason,
        push_attempts: get("push_attempts"),
        pushed: get("pushed"),
        push_failed_by_reason,
        status_notices,
        bytes_in: get("bytes_in"),
        bytes_out: get("bytes_out"),
        signed: get("signed"),
        signed_share: share(get("signed"), accepted),
        verified: get("verified"),
        verified_share: share(get("verified"), accepted),
        electronic: get("electronic"),
        electronic_share: share(get("electronic"), accepted),
        with_pdf: get("with_pdf"),
        two_layer: get("two_layer"),
        two_layer_share: share(get("two_layer"), get("with_pdf")),
        delivery_to_completed: Completion {
            count,
            avg_secs: (count > 0).then(|| get("completion_ms") as f64 / count as f64 / 1000.0),
        },
    }
}

impl Scope {
    fn sees(&self, agency: &str) -> bool {
        match self {
            Scope::Hub => true,
            Scope::Agency(me) => agency == me,
        }
    }

    /// Whose counters make the series and totals: the hub's own, or the agency's.
    fn own(&self) -> &str {
        match self {
            Scope::Hub => HUB,
            Scope::Agency(me) => me,
        }
    }
}

impl Hub {
    /// The statistics report for `window`, as `scope` may see it.
    pub fn stats(&self, window: Window, scope: &Scope) -> Result<Report, HubError> {
        let now = now_ms();
        let (res, bucket_ms) = window.resolution();
        let first = ((now.saturating_sub(window.secs() * 1000)) / bucket_ms) as u32;
        let covered_secs = (now - first as u64 * bucket_ms) / 1000;
        let sums = self.sum_counters(scope, res, first)?;
        let depths: Vec<(String, u64)> = self
            .queue_depths()
            .into_iter()
            .filter(|(a, _)| scope.sees(a))
            .collect();
        let (backlog, not_pulling) = self.backlog(&depths, now)?;
        let mut agencies: Vec<&str> = sums
            .by_metric
            .keys()
            .map(|(_, a)| a.as_str())
            .filter(|a| !a.is_empty())
            .collect();
        agencies.sort_unstable();
        agencies.dedup();
        let agencies = agencies
            .into_iter()
            .map(|a| AgencyFigures {
                agency: a.to_owned(),
                pending: depths.iter().find(|(x, _)| x == a).map_or(0, |(_, n)| *n),
                figures: figures(&sums.by_metric, a, covered_secs),
            })
            .collect();
        let series = sums
            .series
            .iter()
            .map(|(b, (accepted, refused))| Point {
                t: rfc3339(*b as u64 * bucket_ms),
                accepted: *accepted,
                refused: *refused,
            })
            .collect();
        Ok(Report {
            scope: match scope {
                Scope::Hub => "hub".to_owned(),
                Scope::Agency(me) => me.clone(),
            },
            window: window.label(),
            window_secs: window.secs(),
            covered_secs,
            bucket_secs: bucket_ms / 1000,
            series_start: rfc3339(first as u64 * bucket_ms),
            generated_at: rfc3339(now),
            pending: depths.iter().map(|(_, n)| n).sum(),
            totals: figures(&sums.by_metric, scope.own(), covered_secs),
            agencies,
            backlog,
            not_pulling,
            peers: self.peer_figures(
                scope,
                |m, a| {
                    sums.by_metric
                        .get(&(m.to_owned(), a.to_owned()))
                        .copied()
                        .unwrap_or(0)
                },
                covered_secs,
            )?,
            push: self
                .push_status()
                .into_iter()
                .filter(|l| scope.sees(&l.agency))
                .collect(),
            series,
        })
    }

    /// The counters `scope` may see from bucket `first` on: the stored ones plus those not
    /// flushed yet, read without writing them (reads must not cost writes, nor fail when the
    /// disk does).
    fn sum_counters(&self, scope: &Scope, res: u8, first: u32) -> Result<Sums, HubError> {
        let pending = self.counters.snapshot();
        let mut sums = Sums {
            by_metric: HashMap::new(),
            series: BTreeMap::new(),
        };
        let mut visit = |bucket: u32, metric: &str, agency: &str, n: u64| {
            if !scope.sees(agency) {
                return;
            }
            *sums
                .by_metric
                .entry((metric.to_owned(), agency.to_owned()))
                .or_default() += n;
            if agency == scope.own() {
                let e = sums.series.entry(bucket).or_default();
                match metric {
                    "accepted" => e.0 += n,
                    "refused" => e.1 += n,
                    _ => {}
                }
            }
        };
        self.store.scan_stats(res, first, &mut visit)?;
        for (key, n) in &pending {
            if let Some((r, bucket, metric, agency)) = crate::stats::parse_key(key) {
                if r == res && bucket >= first {
                    visit(bucket, metric, agency, *n);
                }
            }
        }
        Ok(sums)
    }

    /// The agencies with the most pending items, and those with pending items that pulled
    /// least recently (never = first of all); 20 of each.
    fn backlog(
        &self,
        depths: &[(String, u64)],
        now: u64,
    ) -> Result<(Vec<Backlog>, Vec<NotPulling>), HubError> {
        let mut pulls = self.store.last_pulls()?;
        pulls.extend(self.last_pull.lock().expect("last-pull lock").clone());
        let directory = self.directory.snapshot();
        let name = |a: &str| directory.get(a).map(|x| x.name.clone());
        let mut backlog = Vec::new();
        for (agency, n) in depths.iter().take(20) {
            backlog.push(Backlog {
                agency: agency.clone(),
                name: name(agency),
                pending: *n,
                oldest_pending_secs: self.oldest_pending_secs(agency, now)?,
                last_pull: pulls.get(agency).map(|ms| rfc3339(*ms)),
            });
        }
        let mut idle: Vec<(&String, Option<u64>)> = depths
            .iter()
            .map(|(a, _)| (a, pulls.get(a).copied()))
            .collect();
        idle.sort_by_key(|(a, ms)| (ms.unwrap_or(0), (*a).clone()));
        let not_pulling = idle
            .iter()
            .take(20)
            .map(|(a, ms)| NotPulling {
                agency: (*a).clone(),
                name: name(a),
                last_pull: ms.map(rfc3339),
                idle_secs: ms.map(|ms| now.saturating_sub(ms) / 1000),
            })
            .collect();
        Ok((backlog, not_pulling))
    }
}
