//! The Prometheus recorder and the descriptions of every metric the hub exports.

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

fn describe_metrics() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "lienthong_requests_shed_total",
        "Requests refused by admission (429 agency limits, 503 work queue), by reason"
    );
    describe_gauge!(
        "lienthong_uploads_in_progress",
        "Submissions whose body is being read"
    );
    describe_gauge!(
        "lienthong_long_polls_waiting",
        "Inbox listings parked in a long poll"
    );
    describe_counter!(
        "lienthong_write_conflicts_total",
        "Guarded queue changes that lost a race and were read again"
    );
    describe_counter!(
        "lienthong_worker_failures_total",
        "Failed steps of a background worker (retried after its period), by worker"
    );
    describe_counter!(
        "lienthong_writes_refused_total",
        "Writes refused because too many waited for the disk"
    );
    describe_counter!(
        "lienthong_storage_failures_total",
        "Failed writes or syncs (writes stop until a restart)"
    );
    describe_counter!(
        "lienthong_reloads_total",
        "SIGHUP directory reloads, by outcome"
    );
    describe_counter!(
        "lienthong_packets_accepted_total",
        "Packets accepted (durably stored), by kind"
    );
    describe_counter!(
        "lienthong_packets_refused_total",
        "Packets refused, by reason code"
    );
    describe_counter!(
        "lienthong_items_delivered_total",
        "Queue items listed to their recipient for the first time"
    );
    describe_counter!(
        "lienthong_items_redelivered_total",
        "Queue items listed again after a lease expired"
    );
    describe_counter!(
        "lienthong_items_acked_total",
        "Queue items acknowledged by their recipient"
    );
    describe_counter!(
        "lienthong_status_notices_total",
        "Status notices accepted, by edXML status code"
    );
    describe_counter!(
        "lienthong_bytes_received_total",
        Unit::Bytes,
        "Packet bytes accepted"
    );
    describe_counter!(
        "lienthong_bytes_sent_total",
        Unit::Bytes,
        "Packet bytes fetched by agencies"
    );
    describe_counter!(
        "lienthong_agency_sent_total",
        "Packets accepted per sending agency (519 label values)"
    );
    describe_counter!(
        "lienthong_agency_received_total",
        "Queue items per recipient agency (519 label values)"
    );
    describe_counter!(
        "lienthong_signature_verdicts_total",
        "Accepted packets by signature verdict"
    );
    describe_counter!(
        "lienthong_signature_chain_cache_total",
        "Signer certificate chain verdict cache lookups by result (hit, miss)"
    );
    describe_counter!(
        "lienthong_crl_load_errors_total",
        "CRL files that could not be read at start or on SIGHUP"
    );
    describe_counter!(
        "lienthong_tls_handshake_failures_total",
        "TLS handshakes that failed, by reason"
    );
    describe_gauge!(
        "lienthong_queue_depth",
        "Pending items per recipient agency"
    );
    describe_gauge!(
        "lienthong_queue_oldest_age_seconds",
        Unit::Seconds,
        "Age of the oldest pending item per agency"
    );
    describe_gauge!(
        "lienthong_rocksdb_live_sst_bytes",
        Unit::Bytes,
        "Size of live RocksDB SST files"
    );
    describe_gauge!(
        "lienthong_rocksdb_pending_compaction_bytes",
        Unit::Bytes,
        "RocksDB's estimate of bytes awaiting compaction"
    );
    describe_histogram!(
        "lienthong_submit_duration_seconds",
        Unit::Seconds,
        "POST /v1/documents from request to durable answer"
    );
    describe_histogram!(
        "lienthong_delivery_latency_seconds",
        Unit::Seconds,
        "From acceptance to the recipient's ack"
    );
}
