//! Signed checkpoints of the audit log: `{keyhost_id, tree_size, root, time}` signed with the
//! keyhost's Ed25519 checkpoint key (`DIR/checkpoint.key`, separate from every data key).
//! `root` is the RFC 6962 Merkle tree hash of the first `tree_size` audit entries (leaf =
//! `SHA-256(0x00 || salt || canonical entry bytes)`, see `audit::leaf_hash`).
//!
//! Whoever keeps a checkpoint can later check, offline, that the log still holds exactly the
//! entries it committed to: an edited, inserted or deleted entry changes the root, a truncated
//! log has fewer than `tree_size` entries, and a forged checkpoint fails the signature.

use crate::store::Connection;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::clock;
use crate::domain::audit::{self, AuditProblem};
use crate::domain::merkle::{self, Hash};

pub const ALGORITHM: &str = "ed25519";

/// The `meta` key under which the sequencer stores the checkpoint it signed after its last batch.
pub(crate) const STORED_KEY: &str = "audit_checkpoint";

/// A signed checkpoint, as published at `GET /v1/audit/checkpoint`. Binary fields are base64.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Checkpoint {
    pub keyhost_id: String,
    pub tree_size: u64,
    pub root: String,
    pub time: String,
    pub algorithm: String,
    pub public_key: String,
    pub signature: String,
}

/// The bytes that are signed.
pub fn signed_message(keyhost_id: &str, tree_size: u64, root_b64: &str, time: &str) -> Vec<u8> {
    format!("ghostpii/v1/audit-checkpoint\n{keyhost_id}\n{tree_size}\n{root_b64}\n{time}\n").into_bytes()
}

/// Leaf hashes of all audit entries, in index order.
pub fn leaves(conn: &Connection) -> crate::store::Result<Vec<Hash>> {
    Ok(audit::all(conn)?.iter().map(audit::leaf_hash).collect())
}

/// Sign a checkpoint over the whole current log: the one the sequencer signed after its last
/// batch if it covers the whole log (`sequencer.rs`), else one computed from every leaf.
pub fn create(conn: &Connection, keyhost_id: &str, signer: &SigningKey) -> crate::store::Result<Checkpoint> {
    let size: Option<i64> = conn.query_row("SELECT MAX(idx) FROM audit", (), |r| r.get(0))?;
    let size = size.unwrap_or(0);
    if let Some(cp) = stored_checkpoint(conn, u64::try_from(size).unwrap_or(0))? {
        if cp.keyhost_id == keyhost_id && cp.public_key == B64.encode(signer.verifying_key().to_bytes()) {
            return Ok(cp);
        }
    }
    let leaves = leaves(conn)?;
    Ok(sign(keyhost_id, signer, leaves.len() as u64, &merkle::root(&leaves)))
}

/// The checkpoint the last batch signed, if it covers a log of `size` entries.
pub fn stored_checkpoint(conn: &Connection, size: u64) -> crate::store::Result<Option<Checkpoint>> {
    Ok(crate::store::meta_get(conn, STORED_KEY)?
        .and_then(|s| serde_json::from_str::<Checkpoint>(&s).ok())
        .filter(|c| c.tree_size == size))
}

/// Sign a checkpoint of a tree of `tree_size` leaves with `root`, now.
pub fn sign(keyhost_id: &str, signer: &SigningKey, tree_size: u64, root: &Hash) -> Checkpoint {
    let root = B64.encode(root);
    let time = clock::format_rfc3339(clock::now_micros());
    let sig = signer.sign(&signed_message(keyhost_id, tree_size, &root, &time));
    Checkpoint {
        keyhost_id: keyhost_id.to_owned(),
        tree_size,
        root,
        time,
        algorithm: ALGORITHM.into(),
        public_key: B64.encode(signer.verifying_key().to_bytes()),
        signature: B64.encode(sig.to_bytes()),
    }
}

/// A pinned checkpoint public key: 32 bytes as hex (64 digits) or base64 (as checkpoints show it).
pub fn parse_public_key(s: &str) -> Result<VerifyingKey, String> {
    let s = s.trim();
    let bytes = if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(s).map_err(|e| e.to_string())?
    } else {
        B64.decode(s)
            .map_err(|_| "a public key is 64 hex digits or 44 base64 characters".to_owned())?
    };
    let arr = <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| format!("a checkpoint public key is 32 bytes, this is {}", bytes.len()))?;
    VerifyingKey::from_bytes(&arr).map_err(|_| "not a valid Ed25519 public key".to_owned())
}

/// Check the checkpoint's signature with its own public key (and, if given, that this is the
/// expected key). Returns problems found.
pub fn check_signature(cp: &Checkpoint, expected: Option<&VerifyingKey>) -> Vec<String> {
    let mut problems = Vec::new();
    if cp.algorithm != ALGORITHM {
        problems.push(format!("unsupported checkpoint algorithm '{}'", cp.algorithm));
        return problems;
    }
    let pk = B64
        .decode(&cp.public_key)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
        .and_then(|b| VerifyingKey::from_bytes(&b).ok());
    let sig = B64
        .decode(&cp.signature)
        .ok()
        .and_then(|b| <[u8; 64]>::try_from(b.as_slice()).ok())
        .map(|b| Signature::from_bytes(&b));
    match (pk, sig) {
        (Some(pk), Some(sig)) => {
            if let Some(exp) = expected {
                if exp != &pk {
                    problems.push(
                        "the checkpoint is signed with another key than the expected one (the pinned public \
                         key, or this keyhost's checkpoint key)"
                            .into(),
                    );
                }
            }
            let msg = signed_message(&cp.keyhost_id, cp.tree_size, &cp.root, &cp.time);
            if pk.verify(&msg, &sig).is_err() {
                problems.push("the checkpoint's signature is invalid (the checkpoint was altered or forged)".into());
            }
        }
        _ => problems.push("the checkpoint's public key or signature is malformed".into()),
    }
    problems
}

/// Check the log in `conn` against a checkpoint: the signature, the keyhost id, and that the
/// first `tree_size` entries still have the checkpoint's Merkle root.
pub fn verify_log(
    conn: &Connection,
    keyhost_id: Option<&str>,
    cp: &Checkpoint,
    expected_key: Option<&VerifyingKey>,
) -> crate::store::Result<Vec<AuditProblem>> {
    let mut out: Vec<AuditProblem> = check_signature(cp, expected_key)
        .into_iter()
        .map(|problem| AuditProblem { index: 0, problem })
        .collect();
    if let Some(id) = keyhost_id {
        if id != cp.keyhost_id {
            out.push(AuditProblem {
                index: 0,
                problem: format!("the checkpoint is of keyhost {}, this log is of {id}", cp.keyhost_id),
            });
        }
    }
    let leaves = leaves(conn)?;
    let size = usize::try_from(cp.tree_size).unwrap_or(usize::MAX);
    if leaves.len() < size {
        out.push(AuditProblem {
            index: leaves.len() as i64,
            problem: format!(
                "the log has {} entries but the checkpoint commits to {} (entries were deleted or the log \
                 was truncated)",
                leaves.len(),
                cp.tree_size
            ),
        });
        return Ok(out);
    }
    let root = B64.encode(merkle::root(&leaves[..size]));
    if root != cp.root {
        out.push(AuditProblem {
            index: cp.tree_size as i64,
            problem: format!(
                "the Merkle root of the first {} entries differs from the checkpoint's (entries were edited, \
                 inserted or deleted)",
                cp.tree_size
            ),
        });
    }
    Ok(out)
}

/// Inclusion proof of entry `index` (1-based) in the tree of the first `tree_size` entries.
pub fn inclusion_proof(conn: &Connection, index: u64, tree_size: u64) -> crate::store::Result<Option<Vec<String>>> {
    let leaves = leaves(conn)?;
    if index == 0 || index > tree_size || tree_size as usize > leaves.len() {
        return Ok(None);
    }
    let proof = merkle::inclusion_proof(&leaves[..tree_size as usize], (index - 1) as usize);
    Ok(Some(proof.iter().map(|h| B64.encode(h)).collect()))
}
