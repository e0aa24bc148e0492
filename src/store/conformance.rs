//! The conformance suite every [`Storage`] engine must pass (RocksDB runs it in
//! `store/tests.rs`; a second engine calls [`run_all`] with its own opener). Each check
//! states one promise of the trait (see `store/api.rs`).
//!
//! `open` must open the same database each time it is called (the previous handle is
//! dropped first), so that what survives a reopen can be checked.

use super::{Change, DocRecord, Due, DueKind, QueueEntry, Storage, StoreError, dedup_key};
use crate::audit::AuditEvent;
use crate::audit::merkle::{Hash, empty_root, leaf_hash, node_hash};
use crate::edxml::Kind;

/// Opens the engine under test, on the same data every call.
pub type Opener<'a> = &'a dyn Fn() -> Box<dyn Storage>;

/// Runs every check, each on the engine as the previous one left it (fresh at the start).
pub fn run_all(open: Opener<'_>) {
    queues_scan_in_order_and_survive_a_reopen(open);
    guards_refuse_what_lost_a_race(open);
    races_in_one_group_have_one_winner(open);
    sequence_numbers_are_never_reused(open);
    the_log_is_dense_synced_and_hashes_to_its_entries(open);
    counters_heads_and_receipts_round_trip(open);
    the_due_index_follows_the_queues(open);
    pushes_are_per_agency_by_time_and_move_only_from_where_they_are(open);
}

/// A document record for the suite.
pub fn record(seq: u64, from: &str, recipients: &[&str]) -> DocRecord {
    DocRecord {
        seq,
        kind: Kind::Edoc,
        from: from.into(),
        recipients: recipients.iter().map(|r| r.to_string()).collect(),
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
        pdf: vec![],
        route: vec![],
    }
}

fn accept(s: &dyn Storage, r: &DocRecord) -> Result<Vec<u64>, StoreError> {
    let key = dedup_key(&r.from, r.document_id.as_deref().unwrap_or(""));
    let mut changes = vec![Change::Accept {
        record: r,
        body: b"abc",
        dedup_key: &key,
    }];
    for a in &r.recipients {
        changes.push(Change::Enqueue {
            agency: a,
            seq: r.seq,
            accepted_ms: r.received_at_ms,
        });
    }
    s.apply(
        &changes,
        vec![AuditEvent::new("accepted", 1).document(r.seq)],
        true,
    )
}

fn pending(s: &dyn Storage, agency: &str) -> Vec<u64> {
    let mut seen = vec![];
    s.scan_queue(agency, &mut |seq, _| {
        seen.push(seq);
        true
    })
    .unwrap();
    seen
}

/// Queues list oldest first; an ack removes one item; everything survives a reopen.
pub fn queues_scan_in_order_and_survive_a_reopen(open: Opener<'_>) {
    let seqs: Vec<u64> = {
        let s = open();
        let seqs: Vec<u64> = (0..3).map(|_| s.next_seq().unwrap()).collect();
        for &seq in seqs.iter().rev() {
            accept(s.as_ref(), &record(seq, "QA", &["QB", "QC"])).unwrap();
        }
        let ack = Change::Ack {
            agency: "QB",
            seq: seqs[1],
            at_ms: 5,
            accepted_ms: 1,
        };
        s.apply(&[ack], vec![], true).unwrap();
        seqs
    };
    let s = open();
    assert_eq!(pending(s.as_ref(), "QB"), vec![seqs[0], seqs[2]]);
    assert_eq!(pending(s.as_ref(), "QC"), seqs);
    assert_eq!(
        s.dedup(&dedup_key("QA", &format!("D{}", seqs[1]))).unwrap(),
        Some(seqs[1])
    );
    assert_eq!(s.body(seqs[2]).unwrap().as_deref(), Some(&b"abc"[..]));
    assert_eq!(s.docs(&[seqs[0], u64::MAX, seqs[2]]).unwrap().len(), 2);
    assert_eq!(s.docs_from(seqs[0], 10).unwrap().len(), 3);
    assert_eq!(s.acked_at(seqs[1], "QB").unwrap(), Some(5));
    assert_eq!(s.oldest_pending("QB").unwrap(), Some(seqs[0]));
    let depths = s.queue_depths().unwrap();
    assert_eq!((depths["QB"], depths["QC"]), (2, 3));
    assert_eq!(s.sent("QA", 0, 10).unwrap(), seqs);
}

/// A second Accept of one key, a lease over a stale value, a second ack, an expiry after
/// the ack and a re-enqueue after it: each answers Conflict and writes nothing.
pub fn guards_refuse_what_lost_a_race(open: Opener<'_>) {
    let s = open();
    let seq = s.next_seq().unwrap();
    let r = record(seq, "GA", &["GB"]);
    accept(s.as_ref(), &r).unwrap();
    let size = s.audit_size();
    assert!(matches!(accept(s.as_ref(), &r), Err(StoreError::Conflict)));
    assert_eq!(s.audit_size(), size, "a refused change logs nothing");
    let was = s.queue_entry("GB", seq).unwrap().unwrap();
    let lease = |was| Change::Lease {
        agency: "GB",
        seq,
        was,
        entry: QueueEntry {
            lease_until_ms: 9,
            deliveries: 1,
            fetched: false,
        },
    };
    s.apply(&[lease(was)], vec![], false).unwrap();
    assert!(matches!(
        s.apply(&[lease(was)], vec![], false),
        Err(StoreError::Conflict)
    ));
    let ack = Change::Ack {
        agency: "GB",
        seq,
        at_ms: 1,
        accepted_ms: r.received_at_ms,
    };
    s.apply(std::slice::from_ref(&ack), vec![], true).unwrap();
    assert!(matches!(
        s.apply(&[ack], vec![], true),
        Err(StoreError::Conflict)
    ));
    let expire = Change::Dequeue {
        agency: "GB",
        seq,
        accepted_ms: r.received_at_ms,
    };
    assert!(matches!(
        s.apply(&[expire], vec![], true),
        Err(StoreError::Conflict)
    ));
    let again = Change::Enqueue {
        agency: "GB",
        seq,
        accepted_ms: r.received_at_ms,
    };
    assert!(matches!(
        s.apply(&[again], vec![], true),
        Err(StoreError::Conflict)
    ));
    assert!(s.queue_entry("GB", seq).unwrap().is_none());
}

/// Racers committing at once (so that an engine that groups commits puts them in one
/// group): of 12 accepts of one document, 12 leases of one item from the same state and 12
/// acks of another, exactly one of each wins, beside 12 unrelated accepts that all do; the
/// losers write nothing, not even log entries.
pub fn races_in_one_group_have_one_winner(open: Opener<'_>) {
    let s = open();
    let s = s.as_ref();
    for round in 0..4 {
        let (from, to) = (format!("RA{round}"), format!("RB{round}"));
        let leased = record(s.next_seq().unwrap(), &from, &[&to]);
        let acked = record(s.next_seq().unwrap(), &from, &[&to]);
        accept(s, &leased).unwrap();
        accept(s, &acked).unwrap();
        let was = s.queue_entry(&to, leased.seq).unwrap().unwrap();
        let same: Vec<DocRecord> = (0..12)
            .map(|_| {
                let mut r = record(s.next_seq().unwrap(), &from, &[&to]);
                r.document_id = Some(format!("same-{round}"));
                r
            })
            .collect();
        let others: Vec<DocRecord> = (0..12)
            .map(|_| record(s.next_seq().unwrap(), &from, &[&to]))
            .collect();
        let size = s.audit_size();
        let barrier = std::sync::Barrier::new(48);
        let event = || vec![AuditEvent::new("raced", 1)];
        let wins: Vec<(usize, bool)> = std::thread::scope(|scope| {
            let racers: Vec<_> = (0..48)
                .map(|i| {
                    let (barrier, to, same, others) = (&barrier, &to, &same, &others);
                    let (leased, acked) = (&leased, &acked);
                    scope.spawn(move || {
                        let lease = Change::Lease {
                            agency: to,
                            seq: leased.seq,
                            was,
                            entry: QueueEntry {
                                lease_until_ms: 100 + i as u64,
                                deliveries: 1,
                                fetched: false,
                            },
                        };
                        let ack = Change::Ack {
                            agency: to,
                            seq: acked.seq,
                            at_ms: 7,
                            accepted_ms: acked.received_at_ms,
                        };
                        barrier.wait();
                        let r = match i / 12 {
                            0 => accept(s, &same[i % 12]),
                            1 => s.apply(&[lease], event(), false),
                            2 => s.apply(&[ack], event(), true),
                            _ => accept(s, &others[i % 12]),
                        };
                        match r {
                            Ok(_) => (i / 12, true),
                            Err(StoreError::Conflict) => (i / 12, false),
                            Err(e) => panic!("racer {i}: {e}"),
                        }
                    })
                })
                .collect();
            racers.into_iter().map(|r| r.join().unwrap()).collect()
        });
        let won = |kind| wins.iter().filter(|(k, ok)| *k == kind && *ok).count();
        assert_eq!(
            (won(0), won(1), won(2), won(3)),
            (1, 1, 1, 12),
            "round {round}"
        );
        assert_eq!(s.audit_size(), size + 15, "only the winners log");
        let winner = s
            .dedup(&dedup_key(&from, &format!("same-{round}")))
            .unwrap();
        let queued = pending(s, &to);
        for r in &same {
            assert_eq!(
                queued.contains(&r.seq),
                Some(r.seq) == winner,
                "round {round}"
            );
        }
        assert!(!queued.contains(&acked.seq));
        let lease = s.queue_entry(&to, leased.seq).unwrap().unwrap();
        assert_eq!(lease.deliveries, 1);
    }
}

/// Numbers handed out (even never stored) are not handed out again after a reopen.
pub fn sequence_numbers_are_never_reused(open: Opener<'_>) {
    let last = {
        let s = open();
        s.next_seq().unwrap();
        s.next_seq().unwrap()
    };
    let s = open();
    assert!(s.next_seq().unwrap() > last);
}

/// Entries get dense indexes; after `barrier` all are visible; the Merkle root over the
/// stored nodes equals the root computed from the entries themselves.
pub fn the_log_is_dense_synced_and_hashes_to_its_entries(open: Opener<'_>) {
    let s = open();
    let before = s.audit_size();
    let events = (0..5)
        .map(|i| AuditEvent::new("refused", i).agency("LA"))
        .collect();
    let idx = s.apply(&[], events, false).unwrap();
    assert_eq!(idx, (before..before + 5).collect::<Vec<_>>());
    s.barrier().unwrap();
    let size = s.audit_size();
    assert!(size >= before + 5);
    let entries = s.audit_entries(0, size, usize::MAX).unwrap();
    assert_eq!(entries.len() as u64, size);
    for (i, (index, _)) in entries.iter().enumerate() {
        assert_eq!(*index, i as u64, "indexes are dense");
    }
    let leaves: Vec<_> = entries.iter().map(|(_, e)| leaf_hash(e)).collect();
    assert_eq!(s.root(size).unwrap(), mth(&leaves));
    assert!(s.document_audit(u64::MAX, 10).unwrap().is_empty());
}

/// Statistics counters add up; heads and receipts are kept.
pub fn counters_heads_and_receipts_round_trip(open: Opener<'_>) {
    let s = open();
    let key = crate::stats::key(crate::stats::MINUTE, 100, "accepted", "CA");
    let mut counters = std::collections::HashMap::new();
    counters.insert(key.clone(), 2u64);
    let mut pulls = std::collections::HashMap::new();
    pulls.insert("CA".to_owned(), 77u64);
    s.apply_stats(&counters, &pulls, 100 * 60_000).unwrap();
    s.apply_stats(&counters, &Default::default(), 100 * 60_000)
        .unwrap();
    let mut total = 0;
    s.scan_stats(crate::stats::MINUTE, 100, &mut |_, metric, agency, n| {
        if metric == "accepted" && agency == "CA" {
            total += n;
        }
    })
    .unwrap();
    assert_eq!(total, 4);
    assert_eq!(s.last_pulls().unwrap().get("CA"), Some(&77));
    s.put_head(3, "head-3").unwrap();
    s.put_head(7, "head-7").unwrap();
    assert_eq!(s.latest_head().unwrap(), Some((7, "head-7".to_owned())));
    s.put_receipt(9, "CB", "r").unwrap();
    assert_eq!(s.receipt(9, "CB").unwrap().as_deref(), Some("r"));
    assert_eq!(s.receipt(9, "CC").unwrap(), None);
}

/// An enqueue schedules the item's expiry and an accept the body's retention, in the same
/// write; an ack, a dequeue and a purge remove them; a reschedule moves one; all of it
/// survives a reopen. Entries are listed by start time, strictly before the cutoff.
pub fn the_due_index_follows_the_queues(open: Opener<'_>) {
    let mine = |s: &dyn Storage, kind, before, seq| -> Vec<Due> {
        let all = s.due(kind, before, usize::MAX).unwrap();
        all.into_iter().filter(|d| d.seq == seq).collect()
    };
    let seq = {
        let s = open();
        let seq = s.next_seq().unwrap();
        let mut r = record(seq, "DA", &["DB", "DC"]);
        r.received_at_ms = 1_000;
        accept(s.as_ref(), &r).unwrap();
        seq
    };
    let s = open();
    let expiry = |agency: &str| Due {
        kind: DueKind::Expiry,
        at_ms: 1_000,
        seq,
        agency: agency.into(),
    };
    assert!(mine(s.as_ref(), DueKind::Expiry, 1_000, seq).is_empty());
    assert_eq!(
        mine(s.as_ref(), DueKind::Expiry, 1_001, seq),
        vec![expiry("DB"), expiry("DC")]
    );
    let retention = mine(s.as_ref(), DueKind::Retention, 1_001, seq);
    assert_eq!(retention.len(), 1);
    assert_eq!(
        (retention[0].at_ms, retention[0].agency.as_str()),
        (1_000, "")
    );
    // An expiry whose item is still queued cannot be dropped.
    let drop_db = expiry("DB");
    let forget = Change::Reschedule {
        due: &drop_db,
        to_ms: None,
    };
    assert!(matches!(
        s.apply(&[forget], vec![], true),
        Err(StoreError::Conflict)
    ));
    let (ack, dequeue) = (
        Change::Ack {
            agency: "DB",
            seq,
            at_ms: 2_000,
            accepted_ms: 1_000,
        },
        Change::Dequeue {
            agency: "DC",
            seq,
            accepted_ms: 1_000,
        },
    );
    s.apply(&[ack], vec![], true).unwrap();
    assert_eq!(
        mine(s.as_ref(), DueKind::Expiry, u64::MAX, seq),
        vec![expiry("DC")]
    );
    s.apply(&[dequeue], vec![], true).unwrap();
    assert!(mine(s.as_ref(), DueKind::Expiry, u64::MAX, seq).is_empty());
    let later = Change::Reschedule {
        due: &retention[0],
        to_ms: Some(5_000),
    };
    s.apply(&[later], vec![], true).unwrap();
    assert!(mine(s.as_ref(), DueKind::Retention, 5_000, seq).is_empty());
    assert_eq!(mine(s.as_ref(), DueKind::Retention, 5_001, seq).len(), 1);
    let purge = Change::Purge {
        seq,
        accepted_ms: 5_000,
    };
    s.apply(&[purge], vec![], true).unwrap();
    drop(s);
    let s = open();
    assert!(mine(s.as_ref(), DueKind::Retention, u64::MAX, seq).is_empty());
    assert!(!s.has_body(seq).unwrap());
}

/// Push entries are listed per agency, earliest first with their attempts, not mixed with
/// the expiry and retention kinds; a move names the time it moves from (a stale move is a
/// conflict and writes nothing); pull-only marks round-trip; all survive a reopen.
pub fn pushes_are_per_agency_by_time_and_move_only_from_where_they_are(open: Opener<'_>) {
    let push = |agency, seq, was, next| Change::Push {
        agency,
        seq,
        was,
        next,
    };
    {
        let s = open();
        let expiries = s.due(DueKind::Expiry, u64::MAX, usize::MAX).unwrap().len();
        s.apply(
            &[
                push("PB", 7, None, Some((3_000, 0))),
                push("PB", 5, None, Some((4_000, 2))),
                push("PBX", 9, None, Some((1_000, 0))),
                Change::PullOnly {
                    agency: "PC",
                    url: Some("https://c.example/push"),
                },
            ],
            vec![],
            true,
        )
        .unwrap();
        assert_eq!(
            s.due(DueKind::Expiry, u64::MAX, usize::MAX).unwrap().len(),
            expiries,
            "push entries are not expiry entries"
        );
    }
    let s = open();
    let at = |s: &dyn Storage, agency| -> Vec<(u64, u64, u32)> {
        let p = s.pushes(agency, 0, usize::MAX).unwrap();
        p.iter().map(|p| (p.at_ms, p.seq, p.attempts)).collect()
    };
    assert_eq!(at(s.as_ref(), "PB"), [(3_000, 7, 0), (4_000, 5, 2)]);
    assert_eq!(
        at(s.as_ref(), "PBX"),
        [(1_000, 9, 0)],
        "no prefix confusion"
    );
    assert_eq!(s.pushes("PB", 0, 1).unwrap().len(), 1);
    let later: Vec<u64> = s
        .pushes("PB", 3_001, usize::MAX)
        .unwrap()
        .iter()
        .map(|p| p.seq)
        .collect();
    assert_eq!(later, [5], "from a time on");
    // Moved from where it is: fine; from where it was before: a conflict.
    s.apply(
        &[push("PB", 7, Some(3_000), Some((9_000, 1)))],
        vec![],
        true,
    )
    .unwrap();
    assert!(matches!(
        s.apply(&[push("PB", 7, Some(3_000), None)], vec![], true),
        Err(StoreError::Conflict)
    ));
    assert_eq!(at(s.as_ref(), "PB"), [(4_000, 5, 2), (9_000, 7, 1)]);
    s.apply(&[push("PB", 5, Some(4_000), None)], vec![], true)
        .unwrap();
    assert_eq!(
        s.pull_only().unwrap(),
        [("PC".to_owned(), "https://c.example/push".to_owned())]
    );
    s.apply(
        &[Change::PullOnly {
            agency: "PC",
            url: None,
        }],
        vec![],
        true,
    )
    .unwrap();
    drop(s);
    let s = open();
    assert_eq!(at(s.as_ref(), "PB"), [(9_000, 7, 1)]);
    assert!(s.pull_only().unwrap().is_empty());
}

/// RFC 6962 Merkle tree hash of `leaves`, computed directly (no stored nodes).
fn mth(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
            node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}
