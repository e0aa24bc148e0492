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
