//! The Merkle tree of RFC 6962 (Certificate Transparency) §2.1: hashes, roots, inclusion and
//! consistency proofs, and their verification.
//!
//! The hub keeps every *perfect* subtree's hash (aligned, power-of-two size), written with the
//! leaf that completes it; any range hash the proofs need is then assembled from O(log n) of
//! them ([`NodeSource`]). Verification follows RFC 9162 §2.1.3.2 and §2.1.4.2 and needs
//! nothing but hashes.

use aws_lc_rs::digest;

pub type Hash = [u8; 32];

fn sha256(parts: &[&[u8]]) -> Hash {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for p in parts {
        ctx.update(p);
    }
    ctx.finish()
        .as_ref()
        .try_into()
        .expect("SHA-256 is 32 bytes")
}

/// `SHA-256(0x00 || entry)`.
pub fn leaf_hash(entry: &[u8]) -> Hash {
    sha256(&[&[0u8], entry])
}

/// `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    sha256(&[&[1u8], left, right])
}

/// The hash of the empty tree.
pub fn empty_root() -> Hash {
    sha256(&[])
}

/// The largest power of two strictly smaller than `n` (n ≥ 2).
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// Where perfect-subtree hashes come from: `perfect(level, index)` is the hash of leaves
/// `[index << level, (index + 1) << level)`.
pub trait NodeSource {
    type Error;
    fn perfect(&self, level: u32, index: u64) -> Result<Hash, Self::Error>;

    /// MTH of leaves `[start, end)`.
    fn range(&self, start: u64, end: u64) -> Result<Hash, Self::Error> {
        let n = end - start;
        if n == 0 {
            return Ok(empty_root());
        }
        if n.is_power_of_two() && start % n == 0 {
            return self.perfect(n.trailing_zeros(), start / n);
        }
        let k = split(n);
        let left = self.range(start, start + k)?;
        let right = self.range(start + k, end)?;
        Ok(node_hash(&left, &right))
    }

    /// The root of the tree of the first `size` leaves.
    fn root(&self, size: u64) -> Result<Hash, Self::Error> {
        self.range(0, size)
    }

    /// RFC 6962 §2.1.1 audit path of leaf `index` in the tree of `size` leaves.
    fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, Self::Error> {
        let mut out = Vec::new();
        self.path(index, 0, size, &mut out)?;
        Ok(out)
    }

    #[doc(hidden)]
    fn path(&self, m: u64, start: u64, end: u64, out: &mut Vec<Hash>) -> Result<(), Self::Error> {
        let n = end - start;
        if n <= 1 {
            return Ok(());
        }
        let k = split(n);
        if m < k {
            self.path(m, start, start + k, out)?;
            out.push(self.range(start + k, end)?);
        } else {
            self.path(m - k, start + k, end, out)?;
            out.push(self.range(start, start + k)?);
        }
        Ok(())
    }

    /// RFC 6962 §2.1.2 consistency proof between the trees of `old` and `new` leaves.
    fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, Self::Error> {
        let mut out = Vec::new();
        if old > 0 && old < new {
            self.subproof(old, 0, new, true, &mut out)?;
        }
        Ok(out)
    }

    #[doc(hidden)]
    fn subproof(
        &self,
        m: u64,
        start: u64,
        end: u64,
        complete: bool,
        out: &mut Vec<Hash>,
    ) -> Result<(), Self::Error> {
        let n = end - start;
        if m == n {
            if !complete {
                out.push(self.range(start, end)?);
            }
            return Ok(());
        }
        let k = split(n);
        if m <= k {
            self.subproof(m, start, start + k, complete, out)?;
            out.push(self.range(start + k, end)?);
        } else {
            self.subproof(m - k, start + k, end, false, out)?;
            out.push(self.range(start, start + k)?);
        }
        Ok(())
    }
}

/// A list of leaf hashes as a node source (for verifiers and tests; O(n) per range).
pub struct Leaves<'a>(pub &'a [Hash]);

impl NodeSource for Leaves<'_> {
    type Error = std::convert::Infallible;
    fn perfect(&self, level: u32, index: u64) -> Result<Hash, Self::Error> {
        let size = 1u64 << level;
        let start = index * size;
        if size == 1 {
            return Ok(self.0[start as usize]);
        }
        let half = size / 2;
        let l = self.perfect(level - 1, start / half)?;
        let r = self.perfect(level - 1, start / half + 1)?;
        Ok(node_hash(&l, &r))
    }
}

/// The perfect-subtree hashes a new leaf completes: appending leaf `index` with hash `leaf`
/// creates node (0, index) and, while the new node is a right child, its parent. `lookup`
/// returns an existing perfect node (the left siblings).
pub fn completed_nodes(
    index: u64,
    leaf: Hash,
    mut lookup: impl FnMut(u32, u64) -> Option<Hash>,
) -> Vec<(u32, u64, Hash)> {
    let mut out = vec![(0, index, leaf)];
    let (mut level, mut i, mut h) = (0u32, index, leaf);
    while i % 2 == 1 {
        let Some(left) = lookup(level, i - 1) else {
            break;
        };
        h = node_hash(&left, &h);
        level += 1;
        i /= 2;
        out.push((level, i, h));
    }
    out
}

/// Verifies an inclusion proof (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return false;
        }
        if fnode % 2 == 1 || fnode == snode {
            r = node_hash(p, &r);
            if fnode % 2 == 0 {
                while fnode % 2 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    snode == 0 && &r == root
}

/// Verifies a consistency proof between `(old, old_root)` and `(new, new_root)`
/// (RFC 9162 §2.1.4.2).
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> bool {
    if old > new {
        return false;
    }
    if old == new {
        return proof.is_empty() && old_root == new_root;
    }
    if old == 0 {
        return proof.is_empty();
    }
    let mut path: Vec<Hash> = proof.to_vec();
    if old.is_power_of_two() {
        path.insert(0, *old_root);
    }
    if path.is_empty() {
        return false;
    }
    let (mut fnode, mut snode) = (old - 1, new - 1);
    while fnode % 2 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if snode == 0 {
            return false;
        }
        if fnode % 2 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fnode % 2 == 0 {
                while fnode % 2 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    snode == 0 && &fr == old_root && &sr == new_root
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6962 MTH straight from the definition.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    #[test]
    fn known_values() {
        // The empty tree and a one-leaf tree over the empty string (RFC 6962 test vectors as
        // used by Certificate Transparency implementations).
        assert_eq!(
            crate::digest::hex(&empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            crate::digest::hex(&leaf_hash(b"")),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
    }

    #[test]
    fn proofs_verify_and_roots_match_the_definition() {
        let leaves: Vec<Hash> = (0..40u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        for n in 1..=leaves.len() as u64 {
            let src = Leaves(&leaves[..n as usize]);
            let root = src.root(n).unwrap();
            assert_eq!(root, mth(&leaves[..n as usize]), "root of {n}");
            for i in 0..n {
                let p = src.inclusion_proof(i, n).unwrap();
                assert!(verify_inclusion(i, n, &leaves[i as usize], &p, &root));
                assert!(!verify_inclusion(
                    i,
                    n,
                    &leaves[(i as usize + 1) % 40],
                    &p,
                    &root
                ));
            }
            for m in 1..=n {
                let p = src.consistency_proof(m, n).unwrap();
                let old = src.root(m).unwrap();
                assert!(verify_consistency(m, n, &old, &root, &p), "{m} -> {n}");
                if m < n {
                    let wrong = leaf_hash(b"x");
                    assert!(!verify_consistency(m, n, &wrong, &root, &p));
                }
            }
        }
    }

    #[test]
    fn appending_completes_perfect_nodes() {
        let leaves: Vec<Hash> = (0..16u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let mut stored = std::collections::HashMap::new();
        for (i, l) in leaves.iter().enumerate() {
            for (level, idx, h) in
                completed_nodes(i as u64, *l, |lv, ix| stored.get(&(lv, ix)).copied())
            {
                stored.insert((level, idx), h);
            }
        }
        assert_eq!(stored[&(4, 0)], mth(&leaves));
        assert_eq!(stored[&(2, 1)], mth(&leaves[4..8]));
        assert_eq!(stored.len(), 31);
    }
}
