//! The store's own tests: keys, reopening, guards, sequence numbers.

use super::*;
use crate::edxml::Kind;

fn record(seq: u64) -> DocRecord {
    DocRecord {
        seq,
        kind: Kind::Edoc,
        from: "A".into(),
        recipients: vec!["B".into(), "C".into()],
        document_id: Some(format!("D{seq}")),
        subject: None,
        status_code: None,
        response_for: None,
        acts_on: None,
        replaces: vec![],
        withdrawn: vec![],
        business_type: 0,
        size: 3,
        sha256: "00".into(),
        received_at_ms: 1,
        has_signature: false,
        verdict: None,
        signer: None,
        signer_sha256: None,
        paper: false,
    }
}

#[test]
fn accept_enqueue_scan_ack_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.max_seq().unwrap(), 0);
        for seq in [1u64, 2, 300] {
            let r = record(seq);
            let k = dedup_key("A", r.document_id.as_deref().unwrap());
            s.apply(
                &[
                    Change::Accept {
                        record: &r,
                        body: b"abc",
                        dedup_key: &k,
                    },
                    Change::Enqueue { agency: "B", seq },
                    Change::Enqueue { agency: "C", seq },
                ],
                vec![crate::audit::AuditEvent::new("accepted", 1).document(seq)],
                true,
            )
            .unwrap();
        }
        s.apply(
            &[Change::Ack {
                agency: "B",
                seq: 2,
                at_ms: 5,
            }],
            vec![],
            true,
        )
        .unwrap();
    }
    let s = Store::open(dir.path()).unwrap();
    assert_eq!(s.max_seq().unwrap(), 300);
    let mut seen = vec![];
    s.scan_queue("B", |seq, _| {
        seen.push(seq);
        true
    })
    .unwrap();
    assert_eq!(seen, vec![1, 300]);
    assert_eq!(s.dedup(&dedup_key("A", "D2")).unwrap(), Some(2));
    assert_eq!(s.body(300).unwrap().as_deref(), Some(&b"abc"[..]));
    assert_eq!(s.docs(&[1, 5, 300]).unwrap().len(), 2);
    assert_eq!(s.acked_at(2, "B").unwrap(), Some(5));
    assert_eq!(s.oldest_pending("B").unwrap(), Some(1));
    let depths = s.queue_depths().unwrap();
    assert_eq!((depths["B"], depths["C"]), (2, 3));
}

#[test]
fn guarded_changes_lose_races_cleanly_and_sequence_numbers_are_never_reused() {
    let dir = tempfile::tempdir().unwrap();
    let first;
    {
        let s = Store::open(dir.path()).unwrap();
        first = s.next_seq().unwrap();
        let r = record(first);
        let k = dedup_key("A", "D");
        let accept = |s: &Store| {
            s.apply(
                &[
                    Change::Accept {
                        record: &r,
                        body: b"x",
                        dedup_key: &k,
                    },
                    Change::Enqueue {
                        agency: "B",
                        seq: first,
                    },
                ],
                vec![],
                true,
            )
        };
        accept(&s).unwrap();
        assert!(
            matches!(accept(&s), Err(StoreError::Conflict)),
            "one Accept per key"
        );
        let was = s.queue_entry("B", first).unwrap().unwrap();
        let leased = QueueEntry {
            lease_until_ms: 9,
            deliveries: 1,
            fetched: false,
        };
        let lease = |was| Change::Lease {
            agency: "B",
            seq: first,
            was,
            entry: leased,
        };
        s.apply(&[lease(was)], vec![], false).unwrap();
        // A lease computed from the old value finds the entry changed.
        let stale = s.apply(&[lease(was)], vec![], false);
        assert!(matches!(stale, Err(StoreError::Conflict)));
        let ack = Change::Ack {
            agency: "B",
            seq: first,
            at_ms: 1,
        };
        s.apply(std::slice::from_ref(&ack), vec![], true).unwrap();
        assert!(matches!(
            s.apply(&[ack], vec![], true),
            Err(StoreError::Conflict)
        ));
        let expire = Change::Dequeue {
            agency: "B",
            seq: first,
        };
        assert!(matches!(
            s.apply(&[expire], vec![], true),
            Err(StoreError::Conflict)
        ));
        // Re-queueing what B acked (an update naming B again) is refused too.
        let again = Change::Enqueue {
            agency: "B",
            seq: first,
        };
        assert!(matches!(
            s.apply(&[again], vec![], true),
            Err(StoreError::Conflict)
        ));
        assert!(s.queue_entry("B", first).unwrap().is_none());
        // Handed out but never stored: still never handed out again.
        s.next_seq().unwrap();
    }
    let s = Store::open(dir.path()).unwrap();
    assert!(s.next_seq().unwrap() > first + 1);
}
