//! Reading the audit log, its Merkle nodes, signed tree heads and kept receipts. The log is
//! written only by the single writer; readers see synced entries only (see `audit_size`).

use std::sync::atomic::Ordering;

use rocksdb::{Direction, IteratorMode};

use super::{
    CF_AUDIT, CF_DOC_AUDIT, CF_HEADS, CF_MERKLE, CF_RECEIPTS, Store, StoreError, merkle_key,
};

impl Store {
    /// Number of audit log entries written and synced. Entries written but not yet synced
    /// (those of listings and fetches, which do not wait for the disk) are waited for first,
    /// so a reader sees its own changes; only synced entries are ever shown or proven, so a
    /// power cut cannot take back an entry someone saw or a signed head covered.
    pub fn audit_size(&self) -> u64 {
        let w = &self.writer;
        if w.written.load(Ordering::SeqCst) > w.committed.load(Ordering::SeqCst) {
            // On failure readers still get what was synced before.
            let _ = self.barrier();
        }
        w.committed.load(Ordering::SeqCst)
    }

    /// Audit entries `from..` (at most `limit`, below `end`), as stored.
    pub fn audit_entries(
        &self,
        from: u64,
        end: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let end = end.min(self.audit_size());
        let mut out = Vec::new();
        let it = self.db.iterator_cf(
            self.cf(CF_AUDIT),
            IteratorMode::From(&from.to_be_bytes(), Direction::Forward),
        );
        for item in it {
            let (k, v) = item?;
            let i = u64::from_be_bytes(k.as_ref().try_into().unwrap_or([0xff; 8]));
            if i >= end || out.len() >= limit {
                break;
            }
            out.push((i, v.to_vec()));
        }
        Ok(out)
    }

    /// The audit indexes of the entries about document `seq`, in order (at most `limit`).
    pub fn document_audit(&self, seq: u64, limit: usize) -> Result<Vec<u64>, StoreError> {
        let prefix = seq.to_be_bytes();
        let committed = self.audit_size();
        let mut out = Vec::new();
        let it = self.db.iterator_cf(
            self.cf(CF_DOC_AUDIT),
            IteratorMode::From(&prefix, Direction::Forward),
        );
        for item in it {
            let (k, _) = item?;
            if k.len() != 16 || k[..8] != prefix {
                break;
            }
            let index = u64::from_be_bytes(k[8..].try_into().expect("8 bytes"));
            if index >= committed {
                break; // written, not yet synced: not part of the log yet
            }
            out.push(index);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Stores a signed tree head for `size` (unsynced: heads can be signed again).
    pub fn put_head(&self, size: u64, jws: &str) -> Result<(), StoreError> {
        self.db
            .put_cf(self.cf(CF_HEADS), size.to_be_bytes(), jws.as_bytes())?;
        Ok(())
    }

    /// The latest signed tree head: (tree size, JWS).
    pub fn latest_head(&self) -> Result<Option<(u64, String)>, StoreError> {
        match self
            .db
            .iterator_cf(self.cf(CF_HEADS), IteratorMode::End)
            .next()
        {
            None => Ok(None),
            Some(item) => {
                let (k, v) = item?;
                let size = u64::from_be_bytes(k.as_ref().try_into().unwrap_or([0; 8]));
                Ok(Some((size, String::from_utf8_lossy(&v).into_owned())))
            }
        }
    }

    fn receipt_key(seq: u64, recipient: &str) -> Vec<u8> {
        let mut k = seq.to_be_bytes().to_vec();
        k.extend_from_slice(recipient.as_bytes());
        k
    }

    /// Stores a receipt (unsynced: a lost receipt is signed again from the log on request).
    pub fn put_receipt(&self, seq: u64, recipient: &str, jws: &str) -> Result<(), StoreError> {
        self.db.put_cf(
            self.cf(CF_RECEIPTS),
            Self::receipt_key(seq, recipient),
            jws.as_bytes(),
        )?;
        Ok(())
    }

    pub fn receipt(&self, seq: u64, recipient: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .db
            .get_pinned_cf(self.cf(CF_RECEIPTS), Self::receipt_key(seq, recipient))?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }
}

impl crate::audit::merkle::NodeSource for Store {
    type Error = StoreError;
    fn perfect(&self, level: u32, index: u64) -> Result<crate::audit::merkle::Hash, StoreError> {
        let v = self
            .db
            .get_pinned_cf(self.cf(CF_MERKLE), merkle_key(level, index))?
            .ok_or_else(|| StoreError::Corrupt {
                key: format!("merkle/{level}/{index}"),
                why: "missing Merkle node".into(),
            })?;
        v.as_ref().try_into().map_err(|_| StoreError::Corrupt {
            key: format!("merkle/{level}/{index}"),
            why: "node is not 32 bytes".into(),
        })
    }
}
