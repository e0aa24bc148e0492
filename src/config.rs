//! Hub configuration: compiled-in defaults (`config/lienthong.toml`), an optional file on top,
//! flags on top of that.
//!
//! The documented file is the single source of defaults, so the documentation cannot drift
//! from the code. Unknown keys are errors: a typo must not silently fall back to a default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The documented defaults, compiled in.
pub const DEFAULTS: &str = include_str!("../config/lienthong.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: Server,
    pub tls: Tls,
    pub quic: Quic,
    pub queue: Queue,
    pub stats: Stats,
    pub roles: Roles,
    pub signature: Signature,
    pub pdf_signature: PdfSignature,
    pub audit: Audit,
    pub outbound: Outbound,
    pub push: Push,
    pub federation: crate::federation::FederationConfig,
    /// Peer hubs (`[[peer]]`, see docs/federation.md).
    #[serde(default)]
    pub peer: Vec<crate::federation::Peer>,
    pub retention: Retention,
    pub storage: Storage,
    pub overload: Overload,
    pub edxml: crate::edxml::Limits,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Audit {
    pub signing_cert: PathBuf,
    pub signing_key: PathBuf,
    pub head_interval_secs: u64,
    pub head_every_entries: u64,
}

/// HTTP/3 over QUIC: the same API and identity as HTTPS, over UDP (see `http::h3`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quic {
    pub enabled: bool,
    /// The UDP address; absent: `[server] listen`'s address and the port TCP got.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    pub max_concurrent_streams: u32,
    pub max_field_section_bytes: u64,
    pub udp_recv_buffer_bytes: usize,
    pub udp_send_buffer_bytes: usize,
    pub max_incoming: usize,
    pub segmentation_offload: bool,
    pub alt_svc_max_age_secs: u64,
}

/// The hub's one outbound identity: the client certificate it presents when it connects to an
/// agency's push endpoint or to another hub.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outbound {
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

/// Push delivery to agencies' endpoints (see `crate::push` and docs/push.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Push {
    pub enabled: bool,
    /// Waits between attempts ("5s", "2m", "1h", "500ms"); the last repeats until the item
    /// expires (`[queue] expiry_secs`).
    #[serde(deserialize_with = "durations")]
    pub retry: Vec<Duration>,
    pub jitter: f64,
    pub connect_timeout_ms: u64,
    pub timeout_secs: u64,
    pub concurrency_per_agency: usize,
    pub max_in_flight: usize,
}

/// Parses "500ms", "5s", "2m", "1h", "1d".
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let n: u64 = s[..split].parse().ok()?;
    Some(match &s[split..] {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        "d" => Duration::from_secs(n * 86_400),
        _ => return None,
    })
}

fn durations<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
    let list = Vec::<String>::deserialize(d)?;
    list.iter()
        .map(|s| {
            parse_duration(s).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "{s:?} is not a duration (e.g. \"500ms\", \"5s\", \"2m\", \"1h\")"
                ))
            })
        })
        .collect()
}

/// What the hub does with packet signatures (see `dsig`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignaturePolicy {
    /// Refuse unsigned and invalid packets (422 with the reason code).
    Require,
    /// Accept them and store the verdict.
    Record,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    pub policy: SignaturePolicy,
    pub trust_dir: PathBuf,
    pub crl_files: Vec<PathBuf>,
    pub cache_secs: u64,
}

/// What the hub does about the legal signatures on PDF attachments (see `pdfsig`).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PdfPolicy {
    /// Refuse a document whose main PDF is not two-layer signed (422 pdf_not_two_layer).
    Require,
    /// Check every PDF and store the verdicts.
    Record,
    /// Do not check.
    Off,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PdfSignature {
    pub policy: PdfPolicy,
    /// Trust anchors for PDF signatures; empty: `[signature] trust_dir`.
    pub trust_dir: PathBuf,
    pub crl_files: Vec<PathBuf>,
    /// PDFs larger than this are not parsed (verdict `parse_error`).
    pub max_pdf_bytes: usize,
    /// Layers of certificates whose subject shows none (`[[pdf_signature.layer]]`).
    #[serde(default)]
    pub layer: Vec<crate::pdfsig::LayerOverride>,
}

/// How much work the hub takes on at once (see `hub::admission`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overload {
    pub max_running: usize,
    pub max_queued: usize,
    pub max_queue_wait_ms: u64,
    pub agency_concurrent_requests: usize,
    pub agency_requests_per_sec: f64,
}

/// How the store treats a slow or failing disk (see `store::WriterOptions`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Storage {
    pub sync_deadline_secs: u64,
    pub max_pending_writes: usize,
    /// `rocksdb` (embedded, the default) or `postgres` (docs/ha.md).
    #[serde(default = "default_engine")]
    pub engine: String,
    /// The PostgreSQL connection URL (engine `postgres`), e.g.
    /// `postgresql://h1,h2,h3/lienthong?target_session_attrs=read-write`.
    #[serde(default)]
    pub url: Option<String>,
}

fn default_engine() -> String {
    "rocksdb".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stats {
    pub flush_secs: u64,
}

/// Certificate CNs that act in a role instead of as an agency.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Roles {
    pub ops: Vec<String>,
    pub auditors: Vec<String>,
}

impl Roles {
    /// Every role CN, for the dev PKI.
    pub fn all(&self) -> Vec<String> {
        self.ops.iter().chain(&self.auditors).cloned().collect()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    pub listen: SocketAddr,
    pub ops_listen: SocketAddr,
    pub ops_token: String,
    pub data: PathBuf,
    pub agencies: PathBuf,
    pub max_body_bytes: u64,
    pub max_inflight_body_bytes: u64,
    pub small_body_bytes: u64,
    pub small_body_pool_bytes: u64,
    pub agency_inflight_body_bytes: u64,
    pub agency_concurrent_submits: u32,
    pub min_upload_bytes_per_sec: u64,
    pub upload_grace_secs: u64,
    pub max_connections: usize,
    pub max_handshakes: usize,
    pub max_handshakes_per_ip: usize,
    pub keepalive_secs: u64,
    pub idle_timeout_secs: u64,
    pub header_timeout_secs: u64,
    pub request_timeout_secs: u64,
    pub shutdown_grace_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: PathBuf,
    pub dev_pki: bool,
    pub dev_pki_dir: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Queue {
    pub lease_secs: u64,
    pub max_inbox_limit: usize,
    pub max_wait_secs: u64,
    pub expiry_secs: u64,
    pub upkeep_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    pub body_secs: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path}: {source}")]
    Toml {
        path: String,
        source: toml::de::Error,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Values given on the command line; `None` leaves the file's value.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub ops_listen: Option<SocketAddr>,
    pub data: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub client_ca: Option<PathBuf>,
    pub agencies: Option<PathBuf>,
    pub trust: Option<PathBuf>,
    pub listen_quic: Option<SocketAddr>,
}

/// Recursively lays `over` on top of `base`.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

impl Config {
    /// Defaults, then `file` if given, then `overrides`.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let mut table: toml::Table = toml::from_str(DEFAULTS).expect("compiled-in defaults parse");
        if let Some(path) = file {
            let p = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
                path: p.clone(),
                source,
            })?;
            let over: toml::Table =
                toml::from_str(&text).map_err(|source| ConfigError::Toml { path: p, source })?;
            merge(&mut table, over);
        }
        let mut config = Config::deserialize(table).map_err(|source| ConfigError::Toml {
            path: file.map_or("<defaults>".into(), |p| p.display().to_string()),
            source,
        })?;
        let o = overrides.clone();
        if let Some(v) = o.listen {
            config.server.listen = v;
        }
        if let Some(v) = o.ops_listen {
            config.server.ops_listen = v;
        }
        if let Some(v) = o.data {
            config.server.data = v;
        }
        if let Some(v) = o.agencies {
            config.server.agencies = v;
        }
        if let Some(v) = o.listen_quic {
            config.quic.listen = Some(v);
        }
        if let Some(v) = o.trust {
            config.signature.trust_dir = v;
        }
        if let Some(v) = o.tls_cert {
            config.tls.cert = v;
        }
        if let Some(v) = o.tls_key {
            config.tls.key = v;
        }
        if let Some(v) = o.client_ca {
            config.tls.client_ca = v;
        }
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let s = &self.server;
        if s.max_body_bytes == 0 || s.max_connections == 0 || s.max_inflight_body_bytes == 0 {
            return Err(ConfigError::Invalid(
                "server.max_body_bytes and server.max_connections must be positive".into(),
            ));
        }
        if s.agency_inflight_body_bytes < 2 * s.max_body_bytes {
            return Err(ConfigError::Invalid(
                "server.agency_inflight_body_bytes must hold one largest body twice (2 × max_body_bytes)".into(),
            ));
        }
        if s.agency_concurrent_submits == 0 || s.small_body_pool_bytes < 2 * s.small_body_bytes {
            return Err(ConfigError::Invalid(
                "server.agency_concurrent_submits must be positive and small_body_pool_bytes at least 2 × small_body_bytes".into(),
            ));
        }
        if s.idle_timeout_secs == 0 {
            return Err(ConfigError::Invalid(
                "server.idle_timeout_secs must be positive".into(),
            ));
        }
        if self.queue.max_wait_secs >= s.request_timeout_secs {
            return Err(ConfigError::Invalid(
                "queue.max_wait_secs must be smaller than server.request_timeout_secs".into(),
            ));
        }
        if self.quic.enabled
            && (self.quic.max_concurrent_streams == 0 || self.quic.max_field_section_bytes < 1024)
        {
            return Err(ConfigError::Invalid(
                "quic.max_concurrent_streams must be positive and quic.max_field_section_bytes at least 1024".into(),
            ));
        }
        let router = crate::federation::Router::new(&self.federation, &self.peer);
        if let Some(why) = router.problems().into_iter().next() {
            return Err(ConfigError::Invalid(format!("[[peer]]: {why}")));
        }
        let p = &self.push;
        if p.retry.is_empty()
            || p.timeout_secs == 0
            || p.concurrency_per_agency == 0
            || p.max_in_flight == 0
            || !(0.0..=1.0).contains(&p.jitter)
        {
            return Err(ConfigError::Invalid(
                "push.retry must list at least one wait, push.timeout_secs, concurrency_per_agency and max_in_flight must be positive, push.jitter within 0..1".into(),
            ));
        }
        if self.stats.flush_secs == 0 {
            return Err(ConfigError::Invalid(
                "stats.flush_secs must be positive".into(),
            ));
        }
        if self.queue.lease_secs == 0 || self.queue.max_inbox_limit == 0 {
            return Err(ConfigError::Invalid(
                "queue.lease_secs and queue.max_inbox_limit must be positive".into(),
            ));
        }
        Ok(())
    }

    pub fn header_timeout(&self) -> Duration {
        Duration::from_secs(self.server.header_timeout_secs)
    }
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.server.request_timeout_secs)
    }
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.server.shutdown_grace_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_flags_over_file_over_defaults() {
        let d = Config::load(None, &Overrides::default()).unwrap();
        assert_eq!(d.server.listen.port(), 8443);
        assert_eq!(
            d.server.agencies,
            PathBuf::from(crate::directory::DEFAULT_PATH)
        );
        assert_eq!(d.server.max_body_bytes, 64 << 20);
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "[server]\nlisten = \"127.0.0.1:1\"\ndata = \"/x\"\n").unwrap();
        let o = Overrides {
            data: Some("/y".into()),
            ..Default::default()
        };
        let c = Config::load(Some(&f), &o).unwrap();
        assert_eq!(c.server.listen.port(), 1);
        assert_eq!(c.server.data, PathBuf::from("/y"));
        assert_eq!(c.queue.lease_secs, 60);
        std::fs::write(&f, "[server]\nlistn = \"127.0.0.1:1\"\n").unwrap();
        assert!(Config::load(Some(&f), &Overrides::default()).is_err());
        assert_eq!(d.push.retry[0], Duration::from_secs(5));
        assert_eq!(d.push.retry[4], Duration::from_secs(3600));
        std::fs::write(&f, "[push]\nretry = [\"250ms\", \"1s\"]\n").unwrap();
        let c = Config::load(Some(&f), &Overrides::default()).unwrap();
        assert_eq!(
            c.push.retry,
            [Duration::from_millis(250), Duration::from_secs(1)]
        );
        std::fs::write(&f, "[push]\nretry = [\"5 minutes\"]\n").unwrap();
        assert!(Config::load(Some(&f), &Overrides::default()).is_err());
    }
}
