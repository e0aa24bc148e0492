//! The Prometheus recorder and the descriptions of every metric the hub exports.

use metrics::Unit;

/// Installs the process-wide Prometheus recorder; `None` if one is already installed.
pub(super) fn install_metrics() -> Option<metrics_exporter_prometheus::PrometheusHandle> {
    let seconds = [
        0.0005,
        0.001,
        0.0025,
        0.005,
        0.01,
        0.025,
        0.05,
        0.1,
        0.25,
        0.5,
        1.0,
        2.5,
        5.0,
        10.0,
        30.0,
        60.0,
        300.0,
        900.0,
        3600.0,
        4.0 * 3600.0,
        86400.0,
    ];
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(&seconds)
        .expect("bucket list is not empty")
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).ok()?;
    describe_metrics();
    Some(handle)
}

/// What a metric is.
#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

use Kind::{Counter, Gauge, Histogram};

/// Every metric the hub exports: (kind, name, unit, help). docs/metrics.md lists the same
/// (tests/contract.rs checks the two agree).
const METRICS: &[(Kind, &str, Option<Unit>, &str)] = &[
    (
        Counter,
        "lienthong_requests_shed_total",
        None,
        "Requests refused by admission (429 agency limits, 503 work queue), by reason",
    ),
    (
        Gauge,
        "lienthong_uploads_in_progress",
        None,
        "Submissions whose body is being read",
    ),
    (
        Gauge,
        "lienthong_long_polls_waiting",
        None,
        "Inbox listings parked in a long poll",
    ),
    (
        Counter,
        "lienthong_write_conflicts_total",
        None,
        "Guarded queue changes that lost a race and were read again",
    ),
    (
        Counter,
        "lienthong_worker_failures_total",
        None,
        "Failed steps of a background worker (retried after its period), by worker",
    ),
    (
        Counter,
        "lienthong_writes_refused_total",
        None,
        "Writes refused because too many waited for the disk",
    ),
    (
        Counter,
        "lienthong_storage_failures_total",
        None,
        "Failed writes or syncs (writes stop until a restart)",
    ),
    (
        Counter,
        "lienthong_reloads_total",
        None,
        "SIGHUP directory reloads, by outcome",
    ),
    (
        Counter,
        "lienthong_packets_accepted_total",
        None,
        "Packets accepted (durably stored), by kind",
    ),
    (
        Counter,
        "lienthong_packets_refused_total",
        None,
        "Packets refused, by reason code",
    ),
    (
        Counter,
        "lienthong_items_delivered_total",
        None,
        "Queue items listed to their recipient for the first time",
    ),
    (
        Counter,
        "lienthong_items_redelivered_total",
        None,
        "Queue items listed again after a lease expired",
    ),
    (
        Counter,
        "lienthong_items_acked_total",
        None,
        "Queue items acknowledged by their recipient",
    ),
    (
        Counter,
        "lienthong_status_notices_total",
        None,
        "Status notices accepted, by edXML status code",
    ),
    (
        Counter,
        "lienthong_bytes_received_total",
        Some(Unit::Bytes),
        "Packet bytes accepted",
    ),
    (
        Counter,
        "lienthong_bytes_sent_total",
        Some(Unit::Bytes),
        "Packet bytes fetched by agencies",
    ),
    (
        Counter,
        "lienthong_agency_sent_total",
        None,
        "Packets accepted per sending agency (519 label values)",
    ),
    (
        Counter,
        "lienthong_agency_received_total",
        None,
        "Queue items per recipient agency (519 label values)",
    ),
    (
        Gauge,
        "lienthong_certificate_expiry_seconds",
        Some(Unit::Seconds),
        "Seconds until a certificate the hub depends on expires (negative: expired), by certificate",
    ),
    (
        Gauge,
        "lienthong_agency_certificate_expiry_seconds",
        Some(Unit::Seconds),
        "Seconds until the client certificate an agency last connected with expires (negative: expired), by agency",
    ),
    (
        Gauge,
        "lienthong_storage_ok",
        None,
        "1 while storage takes writes; 0 after a failed write or sync, a full disk or a hung sync (/readyz fails)",
    ),
    (
        Counter,
        "lienthong_pdf_verdicts_total",
        None,
        "PDF attachments checked for two-layer signatures, by verdict",
    ),
    (
        Counter,
        "lienthong_signature_verdicts_total",
        None,
        "Accepted packets by signature verdict",
    ),
    (
        Counter,
        "lienthong_signature_chain_cache_total",
        None,
        "Signer certificate chain verdict cache lookups by result (hit, miss)",
    ),
    (
        Counter,
        "lienthong_crl_load_errors_total",
        None,
        "CRL files that could not be read at start or on SIGHUP",
    ),
    (
        Counter,
        "lienthong_tls_handshake_failures_total",
        None,
        "TLS handshakes that failed, by reason",
    ),
    (
        Gauge,
        "lienthong_queue_depth",
        None,
        "Pending items per recipient agency",
    ),
    (
        Gauge,
        "lienthong_queue_oldest_age_seconds",
        Some(Unit::Seconds),
        "Age of the oldest pending item per agency",
    ),
    (
        Gauge,
        "lienthong_rocksdb_live_sst_bytes",
        Some(Unit::Bytes),
        "Size of live RocksDB SST files",
    ),
    (
        Gauge,
        "lienthong_rocksdb_pending_compaction_bytes",
        Some(Unit::Bytes),
        "RocksDB's estimate of bytes awaiting compaction",
    ),
    (
        Histogram,
        "lienthong_submit_duration_seconds",
        Some(Unit::Seconds),
        "POST /v1/documents from request to durable answer",
    ),
    (
        Histogram,
        "lienthong_delivery_latency_seconds",
        Some(Unit::Seconds),
        "From acceptance to the recipient's ack",
    ),
    (
        Counter,
        "lienthong_push_attempts_total",
        None,
        "Push attempts per agency, by result (delivered, gone, or the failure reason)",
    ),
    (
        Histogram,
        "lienthong_push_duration_seconds",
        Some(Unit::Seconds),
        "One push attempt per agency, from its lease to the endpoint's answer",
    ),
    (
        Gauge,
        "lienthong_push_pull_only",
        None,
        "1 for each agency whose push endpoint answered 410 Gone (pull-only since)",
    ),
    (
        Counter,
        "lienthong_forwards_total",
        None,
        "Forwards to a peer hub (packets and reports), by result (forwarded, failed, refused)",
    ),
    (
        Counter,
        "lienthong_peer_received_total",
        None,
        "Packets and delivery reports a peer hub forwarded here and this hub stored",
    ),
    (
        Gauge,
        "lienthong_peer_queue_depth",
        None,
        "Packets and reports waiting to go to each peer hub",
    ),
    (
        Gauge,
        "lienthong_peer_oldest_age_seconds",
        Some(Unit::Seconds),
        "Age of the oldest item waiting for each peer hub",
    ),
];

fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    for &(kind, name, unit, help) in METRICS {
        match (kind, unit) {
            (Counter, Some(u)) => describe_counter!(name, u, help),
            (Counter, None) => describe_counter!(name, help),
            (Gauge, Some(u)) => describe_gauge!(name, u, help),
            (Gauge, None) => describe_gauge!(name, help),
            (Histogram, Some(u)) => describe_histogram!(name, u, help),
            (Histogram, None) => describe_histogram!(name, help),
        }
    }
}
