//! RocksDB through the conformance suite every storage engine must pass, plus what is
//! RocksDB's own (the start-up seek for the highest sequence number).

use super::*;

#[test]
fn rocksdb_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    conformance::run_all(&|| Box::new(Store::open(&path).unwrap()) as Box<dyn Storage>);
}

#[test]
fn the_highest_sequence_number_is_found_with_one_seek() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.max_seq().unwrap(), 0);
        let r = conformance::record(300, "A", &["B"]);
        let k = dedup_key("A", "D300");
        s.apply(
            &[Change::Accept {
                record: &r,
                body: b"x",
                dedup_key: &k,
            }],
            vec![],
            true,
        )
        .unwrap();
    }
    let s = Store::open(dir.path()).unwrap();
    assert_eq!(s.max_seq().unwrap(), 300);
    assert!(s.next_seq().unwrap() > 300);
}

/// A database written before the due index existed gets one at its next open: an expiry
/// per queued item, a retention per stored body.
#[test]
fn the_due_index_is_built_for_an_older_database() {
    let dir = tempfile::tempdir().unwrap();
    let seq = {
        let s = Store::open(dir.path()).unwrap();
        let seq = s.next_seq().unwrap();
        let mut r = conformance::record(seq, "A", &["B", "C"]);
        r.received_at_ms = 7;
        let k = dedup_key("A", "D");
        let enqueue = |agency| Change::Enqueue {
            agency,
            seq,
            accepted_ms: 7,
        };
        let accept = Change::Accept {
            record: &r,
            body: b"x",
            dedup_key: &k,
        };
        s.apply(&[accept, enqueue("B"), enqueue("C")], vec![], true)
            .unwrap();
        // As an older version left it: no due entries, no marker.
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(s.cf(CF_DUE), [0u8].as_slice(), [0xffu8; 32].as_slice());
        batch.delete_cf(s.cf(CF_META), b"due_index_v1");
        s.db.write(batch).unwrap();
        assert!(s.due(DueKind::Expiry, u64::MAX, 10).unwrap().is_empty());
        seq
    };
    let s = Store::open(dir.path()).unwrap();
    let expiry = s.due(DueKind::Expiry, u64::MAX, 10).unwrap();
    let agencies: Vec<_> = expiry
        .iter()
        .map(|d| (d.seq, d.at_ms, d.agency.as_str()))
        .collect();
    assert_eq!(agencies, vec![(seq, 7, "B"), (seq, 7, "C")]);
    assert_eq!(s.due(DueKind::Retention, u64::MAX, 10).unwrap().len(), 1);
}
