//! Federation: which peer hub a recipient outside the local directory is reached through,
//! and the route a forwarded packet has travelled (see docs/federation.md).
//!
//! Routing is local directory first, then the most specific peer route, then the peer with
//! `default = true`. A route is an exact OrganId or a pattern over its dot-separated parts
//! where `*` matches one part (`*.*.*.G22`: every agency of province code G22); an exact
//! route beats any pattern, and a pattern with fewer `*` beats one with more.

use serde::{Deserialize, Serialize};

/// `[federation]`: this hub's id on routes and the longest route accepted.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FederationConfig {
    pub hub_id: String,
    pub max_hops: usize,
}

/// One `[[peer]]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    /// The peer's hub id (its `[federation] hub_id`).
    pub id: String,
    /// Its API, `https://HOST:PORT`; packets go to `{url}/v1/federation/packets`.
    pub url: String,
    /// The subject CN of the client certificate it connects with (it must chain to `[tls]
    /// client_ca`).
    pub cert_cn: String,
    #[serde(default)]
    pub routes: Vec<String>,
    /// The parent hub: everything without a better route goes there.
    #[serde(default)]
    pub default: bool,
    /// CA certificates (PEM) its server certificate chains to; none: `[tls] client_ca`.
    #[serde(default)]
    pub ca: Option<std::path::PathBuf>,
    /// Forwards to it in flight at once (default [`PEER_CONCURRENCY`]): a peer link carries
    /// a whole hub's mail, so it gets more than one agency's push endpoint.
    #[serde(default)]
    pub concurrency: Option<usize>,
}

/// Forwards in flight to one peer unless its `concurrency` says otherwise.
pub const PEER_CONCURRENCY: usize = 64;

impl Peer {
    /// Its federation endpoint `what` (`packets` or `reports`).
    pub fn endpoint(&self, what: &str) -> String {
        format!("{}/v1/federation/{what}", self.url.trim_end_matches('/'))
    }

    pub fn concurrency(&self) -> usize {
        self.concurrency.unwrap_or(PEER_CONCURRENCY).max(1)
    }
}

/// One hop of a forwarded packet's route.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Hop {
    pub hub: String,
    /// RFC 3339: when that hub accepted the packet.
    pub at: String,
}

/// The route of a forward from its `lienthong-route` header (JSON, percent-encoded where it
/// is not visible ASCII); at most 64 hops are read.
pub fn parse_route(header: &str) -> Result<Vec<Hop>, String> {
    let bytes = header.as_bytes();
    let mut raw = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).map_err(|e| e.to_string())?;
            raw.push(u8::from_str_radix(hex, 16).map_err(|e| e.to_string())?);
            i += 3;
        } else {
            raw.push(bytes[i]);
            i += 1;
        }
    }
    let hops: Vec<Hop> =
        serde_json::from_slice(&raw).map_err(|e| format!("lienthong-route: {e}"))?;
    if hops.len() > 64 {
        return Err("lienthong-route: more than 64 hops".into());
    }
    Ok(hops)
}

/// The queue a peer's packets wait in, beside the agencies' inboxes.
pub fn peer_queue(peer_id: &str) -> String {
    format!("@{peer_id}")
}

/// The peer id of a peer queue's name.
pub fn queue_peer(queue: &str) -> Option<&str> {
    queue.strip_prefix('@')
}

/// The peers and how recipients route to them.
#[derive(Debug, Clone)]
pub struct Router {
    pub hub_id: String,
    pub max_hops: usize,
    pub peers: Vec<Peer>,
}

impl Default for Router {
    fn default() -> Self {
        Router {
            hub_id: "lienthong".into(),
            max_hops: 4,
            peers: Vec::new(),
        }
    }
}

/// How specifically `route` names `organ_id`: `None` if it does not; higher is more
/// specific (an exact id beats every pattern).
fn specificity(route: &str, organ_id: &str) -> Option<usize> {
    if route == organ_id {
        return Some(usize::MAX);
    }
    let (r, o): (Vec<&str>, Vec<&str>) =
        (route.split('.').collect(), organ_id.split('.').collect());
    if r.len() != o.len() || !r.iter().zip(&o).all(|(a, b)| *a == "*" || a == b) {
        return None;
    }
    Some(r.iter().filter(|p| **p != "*").count())
}

impl Router {
    pub fn new(config: &FederationConfig, peers: &[Peer]) -> Router {
        Router {
            hub_id: config.hub_id.clone(),
            max_hops: config.max_hops.max(1),
            peers: peers.to_vec(),
        }
    }

    /// The peer `organ_id` is reached through (callers check the local directory first).
    pub fn route(&self, organ_id: &str) -> Option<&Peer> {
        self.peers
            .iter()
            .filter_map(|p| {
                let best = p
                    .routes
                    .iter()
                    .filter_map(|r| specificity(r, organ_id))
                    .max();
                best.map(|s| (s, p))
            })
            .max_by_key(|(s, _)| *s)
            .map(|(_, p)| p)
            .or_else(|| self.peers.iter().find(|p| p.default))
    }

    pub fn peer(&self, id: &str) -> Option<&Peer> {
        self.peers.iter().find(|p| p.id == id)
    }

    /// The peer whose client certificate carries `cn`.
    pub fn peer_by_cn(&self, cn: &str) -> Option<&Peer> {
        self.peers.iter().find(|p| p.cert_cn == cn)
    }

    /// What is wrong with the configuration, if anything.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.peers.iter().filter(|p| p.default).count() > 1 {
            out.push("more than one [[peer]] has default = true".into());
        }
        for (i, p) in self.peers.iter().enumerate() {
            if self.peers[..i]
                .iter()
                .any(|q| q.id == p.id || q.cert_cn == p.cert_cn)
            {
                out.push(format!("peer {:?}: its id or cert_cn is used twice", p.id));
            }
            if p.id == self.hub_id {
                out.push(format!("peer {:?} has this hub's own id", p.id));
            }
            if !p.url.starts_with("https://") {
                out.push(format!("peer {:?}: url must be https://HOST:PORT", p.id));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(id: &str, routes: &[&str], default: bool) -> Peer {
        Peer {
            id: id.into(),
            url: "https://x".into(),
            cert_cn: id.into(),
            routes: routes.iter().map(|r| r.to_string()).collect(),
            default,
            ca: None,
            concurrency: None,
        }
    }

    #[test]
    fn the_most_specific_route_wins_then_the_default() {
        let r = Router {
            peers: vec![
                peer("national", &[], true),
                peer("g22", &["*.*.*.G22"], false),
                peer("g22-01", &["*.*.01.G22"], false),
                peer("ministry", &["000.00.00.G22"], false),
            ],
            ..Router::default()
        };
        let via = |id: &str| r.route(id).map(|p| p.id.as_str());
        assert_eq!(via("000.00.07.G22"), Some("g22"));
        assert_eq!(via("000.00.01.G22"), Some("g22-01"));
        assert_eq!(via("000.00.00.G22"), Some("ministry"));
        assert_eq!(via("000.00.01.H41"), Some("national"));
        assert_eq!(via("00.01.G22"), Some("national"), "parts are counted");
        let none = Router {
            peers: vec![peer("g22", &["*.*.*.G22"], false)],
            ..Router::default()
        };
        assert_eq!(none.route("000.00.01.H41"), None);
    }
}
