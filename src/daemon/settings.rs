//! The configuration file turned into each layer's own settings: the layers below the daemon
//! never read the configuration's types for what they do (only `[roles]` and `[edxml]`
//! pass through as they are).

use std::time::Duration;

use crate::config::Config;
use crate::http::{Api, ApiLimits, ServerLimits};
use crate::hub::{AdmissionLimits, BodyLimits, Hub, HubSettings};
use crate::store::WriterOptions;

/// The hub's settings (`[queue]`, `[retention]`, `[edxml]`, `[overload]`, `[server]`
/// upload limits, `[roles]`).
pub(super) fn hub_settings(config: &Config) -> HubSettings {
    let secs = Duration::from_secs;
    HubSettings {
        lease: secs(config.queue.lease_secs),
        max_inbox_limit: config.queue.max_inbox_limit,
        max_wait: secs(config.queue.max_wait_secs),
        expiry: secs(config.queue.expiry_secs),
        body_retention: (config.retention.body_secs > 0).then(|| secs(config.retention.body_secs)),
        limits: config.edxml.clone(),
        admission: admission_limits(config),
        uploads: upload_limits(config),
        roles: config.roles.clone(),
        push: crate::hub::push::PushPolicy {
            enabled: config.push.enabled,
            retry: config.push.retry.clone(),
            jitter: config.push.jitter,
        },
        federation: crate::federation::Router::new(&config.federation, &config.peer),
    }
}

/// How much work the hub takes on at once (`[overload]`).
fn admission_limits(config: &Config) -> AdmissionLimits {
    let o = &config.overload;
    AdmissionLimits {
        max_running: o.max_running.max(1),
        max_queued: o.max_queued,
        max_queue_wait: Duration::from_millis(o.max_queue_wait_ms),
        agency_concurrent_requests: o.agency_concurrent_requests.max(1),
        agency_requests_per_sec: o.agency_requests_per_sec.max(0.0),
    }
}

/// How the store treats a slow or failing disk (`[storage]`).
pub(super) fn writer_options(config: &Config) -> WriterOptions {
    WriterOptions {
        sync_deadline: Duration::from_secs(config.storage.sync_deadline_secs.max(1)),
        max_pending: config.storage.max_pending_writes.max(1),
    }
}

/// Upload limits from `[server]`.
fn upload_limits(config: &Config) -> BodyLimits {
    let s = &config.server;
    BodyLimits {
        max_body_bytes: s.max_body_bytes,
        max_inflight_body_bytes: s.max_inflight_body_bytes,
        small_body_bytes: s.small_body_bytes,
        small_pool_bytes: s.small_body_pool_bytes,
        agency_inflight_body_bytes: s.agency_inflight_body_bytes,
        agency_concurrent_submits: s.agency_concurrent_submits,
        min_upload_bytes_per_sec: s.min_upload_bytes_per_sec,
        upload_grace: Duration::from_secs(s.upload_grace_secs),
    }
}

/// The HTTPS API with its request limits from `[server]`.
pub(super) fn api_for(hub: std::sync::Arc<Hub>, config: &Config) -> Api {
    Api::new(
        hub,
        ApiLimits {
            request_timeout: config.request_timeout(),
        },
    )
}

/// Connection limits from `[server]` (raising the open-file limit to fit them).
pub(super) fn server_limits(config: &Config) -> ServerLimits {
    ServerLimits {
        max_connections: super::raise_nofile_limit(config.server.max_connections),
        max_handshakes: config.server.max_handshakes,
        max_handshakes_per_ip: config.server.max_handshakes_per_ip,
        header_timeout: config.header_timeout(),
        keepalive: Duration::from_secs(config.server.keepalive_secs),
        idle_timeout: Duration::from_secs(config.server.idle_timeout_secs),
        shutdown_grace: config.shutdown_grace(),
        alt_svc: None,
    }
}

/// The push worker's settings (`[push]`, `[outbound]`, `[tls] client_ca`).
pub(super) fn push_settings(config: &Config) -> crate::push::PushSettings {
    let p = &config.push;
    crate::push::PushSettings {
        timeouts: crate::push::endpoint::Timeouts {
            connect: Duration::from_millis(p.connect_timeout_ms.max(1)),
            total: Duration::from_secs(p.timeout_secs.max(1)),
        },
        concurrency_per_agency: p.concurrency_per_agency,
        max_in_flight: p.max_in_flight,
        client_cert: config.outbound.client_cert.clone(),
        client_key: config.outbound.client_key.clone(),
        default_ca: config.tls.client_ca.clone(),
    }
}
