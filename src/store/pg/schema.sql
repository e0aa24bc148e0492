-- lienthong on PostgreSQL (docs/ha.md). Created at open if missing; every statement is
-- idempotent. Integers that are u64 in the hub are BIGINT (the hub's values stay below 2^63).
CREATE TABLE IF NOT EXISTS lt_meta (k TEXT PRIMARY KEY, v BIGINT NOT NULL);
-- The sequencer rows: 'audit' is the next audit log index (locked by every writing
-- transaction, so indexes are dense and in commit order), 'seq' the next reserved hub id.
INSERT INTO lt_meta (k, v) VALUES ('audit', 0), ('seq', 1) ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS lt_docs (seq BIGINT PRIMARY KEY, record BYTEA NOT NULL);
CREATE TABLE IF NOT EXISTS lt_bodies (seq BIGINT PRIMARY KEY, body BYTEA NOT NULL);
CREATE TABLE IF NOT EXISTS lt_dedup (k BYTEA PRIMARY KEY, seq BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS lt_sent (sender TEXT NOT NULL, seq BIGINT NOT NULL,
    PRIMARY KEY (sender, seq));
CREATE TABLE IF NOT EXISTS lt_queue (agency TEXT NOT NULL, seq BIGINT NOT NULL,
    lease_until BIGINT NOT NULL, deliveries INT NOT NULL, fetched BOOLEAN NOT NULL,
    PRIMARY KEY (agency, seq));
CREATE TABLE IF NOT EXISTS lt_delivery (seq BIGINT NOT NULL, agency TEXT NOT NULL,
    at_ms BIGINT NOT NULL, PRIMARY KEY (seq, agency));
CREATE TABLE IF NOT EXISTS lt_due (kind SMALLINT NOT NULL, at_ms BIGINT NOT NULL,
    seq BIGINT NOT NULL, agency TEXT NOT NULL, PRIMARY KEY (kind, at_ms, seq, agency));
CREATE TABLE IF NOT EXISTS lt_pushes (agency TEXT NOT NULL, at_ms BIGINT NOT NULL,
    seq BIGINT NOT NULL, attempts INT NOT NULL, PRIMARY KEY (agency, at_ms, seq));
CREATE TABLE IF NOT EXISTS lt_pull_only (agency TEXT PRIMARY KEY, url TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS lt_audit (idx BIGINT PRIMARY KEY, line BYTEA NOT NULL, doc BIGINT);
CREATE INDEX IF NOT EXISTS lt_audit_doc ON lt_audit (doc, idx) WHERE doc IS NOT NULL;
CREATE TABLE IF NOT EXISTS lt_merkle (level INT NOT NULL, i BIGINT NOT NULL,
    h BYTEA NOT NULL, PRIMARY KEY (level, i));
CREATE TABLE IF NOT EXISTS lt_heads (size BIGINT PRIMARY KEY, jws TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS lt_receipts (seq BIGINT NOT NULL, recipient TEXT NOT NULL,
    jws TEXT NOT NULL, PRIMARY KEY (seq, recipient));
CREATE TABLE IF NOT EXISTS lt_stats (res SMALLINT NOT NULL, bucket INT NOT NULL,
    metric TEXT NOT NULL, agency TEXT NOT NULL, n BIGINT NOT NULL,
    PRIMARY KEY (res, bucket, metric, agency));
CREATE TABLE IF NOT EXISTS lt_last_pulls (agency TEXT PRIMARY KEY, at_ms BIGINT NOT NULL);
