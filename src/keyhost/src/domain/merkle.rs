//! RFC 6962 (Certificate Transparency) Merkle tree hashing over the audit entries:
//! `leaf = SHA-256(0x00 || entry)` (the audit log passes `salt || canonical entry bytes` as
//! `entry`), `node = SHA-256(0x01 || left || right)`; the tree of `n` leaves splits at the
//! largest power of two below `n`. The root of the empty tree is
//! `SHA-256("")`.

use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(entry);
    h.finalize().into()
}

pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The Merkle tree hash of the leaves (given as leaf hashes), RFC 6962 §2.1.
pub fn root(leaves: &[Hash]) -> Hash {
    if leaves.is_empty() {
        return Sha256::digest([]).into();
    }
    // Bottom-up: pair neighbours; an odd last node is carried up unchanged. This yields the
    // same tree as the recursive largest-power-of-two split.
    let mut level: Vec<Hash> = leaves.to_vec();
    while level.len() > 1 {
        let mut next = Vec::with_capacity(level.len().div_ceil(2));
        for pair in level.chunks(2) {
            next.push(match pair {
                [l, r] => node_hash(l, r),
                [one] => *one,
                _ => unreachable!("chunks(2) yields one or two items"),
            });
        }
        level = next;
    }
    level[0]
}

/// Audit path (inclusion proof) of leaf `index` in the tree of `leaves`, RFC 6962 §2.1.1.
pub fn inclusion_proof(leaves: &[Hash], index: usize) -> Vec<Hash> {
    fn path(leaves: &[Hash], m: usize, out: &mut Vec<Hash>) {
        let n = leaves.len();
        if n <= 1 {
            return;
        }
        let k = split(n);
        if m < k {
            path(&leaves[..k], m, out);
            out.push(root(&leaves[k..]));
        } else {
            path(&leaves[k..], m - k, out);
            out.push(root(&leaves[..k]));
        }
    }
    let mut out = Vec::new();
    if index < leaves.len() {
        path(leaves, index, &mut out);
    }
    out
}

/// Check an inclusion proof of `leaf` at `index` in a tree of `size` leaves with `root`
/// (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
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
    snode == 0 && r == *root
}

/// Largest power of two strictly below `n` (n ≥ 2).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recursive_root(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => Sha256::digest([]).into(),
            1 => leaves[0],
            n => {
                let k = split(n);
                node_hash(&recursive_root(&leaves[..k]), &recursive_root(&leaves[k..]))
            }
        }
    }

    #[test]
    fn bottom_up_root_equals_the_rfc_definition_and_proofs_verify() {
        for n in 0..40usize {
            let leaves: Vec<Hash> = (0..n).map(|i| leaf_hash(&i.to_le_bytes())).collect();
            let r = root(&leaves);
            assert_eq!(r, recursive_root(&leaves), "n={n}");
            for i in 0..n {
                let proof = inclusion_proof(&leaves, i);
                assert!(
                    verify_inclusion(&leaves[i], i as u64, n as u64, &proof, &r),
                    "n={n} i={i}"
                );
                let other = leaf_hash(b"other");
                assert!(!verify_inclusion(&other, i as u64, n as u64, &proof, &r));
            }
        }
    }

    #[test]
    fn rfc6962_empty_root() {
        assert_eq!(
            hex::encode(root(&[])),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
