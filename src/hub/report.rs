//! `GET /v1/stats`: counts and rates over sliding windows, read from the persisted counters.
//!
//! Windows are read at bucket resolution: 1m, 1h and 24h from minute buckets, 30d from hour
//! buckets. A window covers every bucket that overlaps it, so it may reach up to one bucket
//! further back; `covered_secs` says exactly how long, and rates divide by it.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value, json};

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

fn share(part: u64, whole: u64) -> Value {
    if whole == 0 {
        Value::Null
    } else {
        json!((part as f64 / whole as f64 * 10_000.0).round() / 10_000.0)
    }
}

/// Figures of one agency (or of the hub, with `HUB`) from the summed counters.
fn figures(sums: &HashMap<(String, String), u64>, who: &str, covered_secs: u64) -> Value {
    let get = |m: &str| {
        sums.get(&(m.to_owned(), who.to_owned()))
            .copied()
            .unwrap_or(0)
    };
    let mut refused_by_reason = BTreeMap::new();
    let mut status = BTreeMap::new();
    for ((metric, agency), n) in sums {
        if agency != who {
            continue;
        }
        if let Some(code) = metric.strip_prefix("refused:") {
            refused_by_reason.insert(code.to_owned(), *n);
        } else if let Some(code) = metric.strip_prefix("status:") {
            status.insert(code.to_owned(), *n);
        }
    }
    let accepted = get("accepted");
    let per_min =
        |n: u64| json!((n as f64 * 60.0 / covered_secs.max(1) as f64 * 100.0).round() / 100.0);
    let completions = get("completion_count");
    json!({
        "accepted": accepted,
        "accepted_per_min": per_min(accepted),
        "received": get("received"),
        "delivered": get("delivered"),
        "acked": get("acked"),
        "acked_per_min": per_min(get("acked")),
        "refused": get("refused"),
        "refused_by_reason": refused_by_reason,
        "status_notices": status,
        "bytes_in": get("bytes_in"),
        "bytes_out": get("bytes_out"),
        "signed": get("signed"),
        "signed_share": share(get("signed"), accepted),
        "verified": get("verified"),
        "verified_share": share(get("verified"), accepted),
        "electronic": get("electronic"),
        "electronic_share": share(get("electronic"), accepted),
        "delivery_to_completed": {
            "count": completions,
            "avg_secs": if completions == 0 { Value::Null } else { json!(get("completion_ms") as f64 / completions as f64 / 1000.0) },
        },
    })
}

impl Hub {
    /// The statistics report for `window`, as `scope` may see it.
    pub fn stats(&self, window: Window, scope: &Scope) -> Result<Value, HubError> {
        // A report reads: the stored counters plus those not flushed yet, without writing
        // them (reads must not cost writes, nor fail when the disk does).
        let pending = self.counters.snapshot();
        let now = now_ms();
        let (res, bucket_ms) = window.resolution();
        let first = ((now.saturating_sub(window.secs() * 1000)) / bucket_ms) as u32;
        let covered_secs = (now - first as u64 * bucket_ms) / 1000;
        let mut sums: HashMap<(String, String), u64> = HashMap::new();
        let mut series: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
        let visible = |agency: &str| match scope {
            Scope::Hub => true,
            Scope::Agency(me) => agency == me,
        };
        let mut visit = |bucket: u32, metric: &str, agency: &str, n: u64| {
            if !visible(agency) {
                return;
            }
            *sums
                .entry((metric.to_owned(), agency.to_owned()))
                .or_default() += n;
            let series_of = match scope {
                Scope::Hub => HUB,
                Scope::Agency(me) => me.as_str(),
            };
            if agency == series_of {
                let e = series.entry(bucket).or_default();
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

        // Backlog and pulling.
        let depths = self.queue_depths();
        let mut pulls = self.store.last_pulls()?;
        pulls.extend(self.last_pull.lock().expect("last-pull lock").clone());
        let directory = self.directory.snapshot();
        let mut backlog = Vec::new();
        for (agency, n) in depths.iter().filter(|(a, _)| visible(a)).take(20) {
            backlog.push(json!({
                "agency": agency,
                "name": directory.get(agency).map(|a| a.name.as_str()),
                "pending": n,
                "oldest_pending_secs": self.oldest_pending_secs(agency, now)?,
                "last_pull": pulls.get(agency).map(|ms| rfc3339(*ms)),
            }));
        }
        // Agencies with pending items, the longest without a pull first (never = first of all).
        let mut idle: Vec<(&String, Option<u64>)> = depths
            .iter()
            .filter(|(a, _)| visible(a))
            .map(|(a, _)| (a, pulls.get(a).copied()))
            .collect();
        idle.sort_by_key(|(a, ms)| (ms.unwrap_or(0), (*a).clone()));
        let not_pulling: Vec<Value> = idle
            .iter()
            .take(20)
            .map(|(a, ms)| {
                json!({
                    "agency": a,
                    "name": directory.get(a).map(|x| x.name.as_str()),
                    "last_pull": ms.map(rfc3339),
                    "idle_secs": ms.map(|ms| now.saturating_sub(ms) / 1000),
                })
            })
            .collect();

        let mut agencies: Vec<&str> = sums
            .keys()
            .map(|(_, a)| a.as_str())
            .filter(|a| !a.is_empty())
            .collect();
        agencies.sort_unstable();
        agencies.dedup();
        let per_agency: Vec<Value> = agencies
            .iter()
            .map(|a| {
                let mut f = figures(&sums, a, covered_secs);
                f["agency"] = json!(a);
                f["pending"] = json!(depths.iter().find(|(x, _)| x == a).map_or(0, |(_, n)| *n));
                f
            })
            .collect();

        let series: Vec<Value> = series
            .iter()
            .map(|(b, (acc, refd))| {
                json!({"t": rfc3339(*b as u64 * bucket_ms), "accepted": acc, "refused": refd})
            })
            .collect();
        let total_pending: u64 = depths
            .iter()
            .filter(|(a, _)| visible(a))
            .map(|(_, n)| n)
            .sum();
        let mut report = json!({
            "window": window.label(),
            "window_secs": window.secs(),
            "covered_secs": covered_secs,
            "bucket_secs": bucket_ms / 1000,
            "series_start": rfc3339(first as u64 * bucket_ms),
            "generated_at": rfc3339(now),
            "pending": total_pending,
            "agencies": per_agency,
            "backlog": backlog,
            "not_pulling": not_pulling,
            "series": series,
        });
        let (label, who) = match scope {
            Scope::Hub => ("hub", HUB),
            Scope::Agency(me) => (me.as_str(), me.as_str()),
        };
        report["scope"] = json!(label);
        report["totals"] = figures(&sums, who, covered_secs);
        Ok(report)
    }
}
