//! Signed audit checkpoints: receipts, inclusion proofs, and offline verification that
//! detects edited (even with a recomputed hash chain), inserted, deleted and truncated entries
//! and forged signatures.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ghostpii_keyhost::audit::{all, entry_hash, GENESIS};
use ghostpii_keyhost::db::Connection;
use ghostpii_keyhost::merkle::verify_inclusion;
use serde_json::{json, Value};

use crate::client::World;

fn history() -> (World, Value) {
    let w = World::new();
    w.grant("income", "aggregate", json!({"min_rows": 5}));
    let r = w.kh.answer(
        &w.analyst,
        json!([
            w.sum(&w.rids(20), &[(&w.income, 1)]),
            w.sum(&w.rids(2), &[(&w.income, 1)])
        ]),
    );
    w.kh.verify(); // integrates the queue (a read of the log does)
    (w, r[0].clone())
}

fn b64_32(v: &Value) -> [u8; 32] {
    B64.decode(v.as_str().unwrap()).unwrap().try_into().unwrap()
}

fn db(w: &World) -> Connection {
    w.kh.db()
}

fn check(w: &World, cp: &Value) -> Vec<String> {
    let r = w.kh.verify_checkpoint(&cp.to_string(), None).unwrap();
    assert_eq!(r.ok, r.problems.is_empty());
    r.problems.into_iter().map(|p| p.problem).collect()
}

/// Rewrite the hash chain so that the plain chain check passes again (anyone can: no secret).
fn rechain(conn: &Connection) {
    let mut prev = GENESIS.to_owned();
    for mut e in all(conn).unwrap() {
        e.prev_hash = prev.clone();
        e.hash = entry_hash(&e);
        conn.execute(
            "UPDATE audit SET prev_hash = ?2, hash = ?3 WHERE idx = ?1",
            ghostpii_keyhost::params![e.index, e.prev_hash, e.hash],
        )
        .unwrap();
        prev = e.hash;
    }
}

/// The checkpoint re-signed with another key (carrying that key): its own signature is valid.
fn resigned(cp: &Value) -> Value {
    use ed25519_dalek::Signer;
    let other = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
    let msg = ghostpii_keyhost::checkpoint::signed_message(
        cp["keyhost_id"].as_str().unwrap(),
        cp["tree_size"].as_u64().unwrap(),
        cp["root"].as_str().unwrap(),
        cp["time"].as_str().unwrap(),
    );
    let mut forged = cp.clone();
    forged["public_key"] = json!(B64.encode(other.verifying_key().to_bytes()));
    forged["signature"] = json!(B64.encode(other.sign(&msg).to_bytes()));
    forged
}

#[test]
fn receipts_prove_inclusion_in_a_signed_checkpoint() {
    let (w, issued) = history();
    let cp = w.kh.get(&w.analyst, "/v1/audit/checkpoint").ok();
    assert_eq!(cp["algorithm"], "ed25519");
    assert_eq!(cp["keyhost_id"], w.kh.id());
    assert!(check(&w, &cp).is_empty(), "{:?}", check(&w, &cp));
    let checked =
        w.kh.post(&w.analyst, "/v1/audit/receipt", issued["receipt"].clone())
            .ok();
    assert_eq!(checked["status"], "included", "{checked}");
    let index = checked["audit_index"].as_u64().unwrap();
    let leaf = b64_32(&checked["leaf_hash"]);
    let size = cp["tree_size"].as_u64().unwrap();
    let p =
        w.kh.get(&w.analyst, &format!("/v1/audit/proof?index={index}&tree_size={size}"))
            .ok();
    let proof: Vec<[u8; 32]> = p["proof"].as_array().unwrap().iter().map(b64_32).collect();
    let root = b64_32(&cp["root"]);
    assert!(verify_inclusion(&leaf, index - 1, size, &proof, &root));
    assert!(!verify_inclusion(&leaf, index, size, &proof, &root));
    // Later entries do not invalidate an older checkpoint.
    w.kh.answer(&w.owner, json!([w.sum(&w.rids(3), &[(&w.income, 1)])]));
    let later = check(&w, &cp);
    assert!(later.is_empty(), "{later:?}");
}

#[test]
fn a_forged_checkpoint_fails() {
    let (w, _) = history();
    let cp = w.kh.get(&w.owner, "/v1/audit/checkpoint").ok();
    let mut bad = cp.clone();
    bad["tree_size"] = json!(cp["tree_size"].as_u64().unwrap() - 1);
    assert!(check(&w, &bad).iter().any(|p| p.contains("signature")));
    // Signed with another key: valid signature, wrong key.
    assert!(check(&w, &resigned(&cp)).iter().any(|p| p.contains("another key")));
}

#[test]
fn an_edited_entry_with_a_recomputed_chain_is_caught_by_the_checkpoint() {
    let (w, _) = history();
    let cp = w.kh.get(&w.owner, "/v1/audit/checkpoint").ok();
    let conn = db(&w);
    conn.execute(
        "UPDATE audit SET decision = 'issued', reason = 'grant' WHERE decision = 'refused'",
        (),
    )
    .unwrap();
    rechain(&conn);
    assert!(w.kh.verify().ok, "the chain alone no longer notices");
    let p = check(&w, &cp);
    assert!(p.iter().any(|m| m.contains("Merkle root")), "{p:?}");
}

#[test]
fn inserted_deleted_and_truncated_entries_are_caught() {
    // Deleted in the middle (chain rewritten and the recorded count fixed).
    let (w, _) = history();
    let cp = w.kh.get(&w.owner, "/v1/audit/checkpoint").ok();
    let conn = db(&w);
    conn.execute("DELETE FROM audit WHERE idx = 3", ()).unwrap();
    conn.execute("UPDATE audit SET idx = idx - 1 WHERE idx > 3", ())
        .unwrap();
    rechain(&conn);
    conn.execute(
        "UPDATE meta SET value = CAST((SELECT MAX(idx) FROM audit) AS TEXT) WHERE key = 'audit_last_index'",
        (),
    )
    .unwrap();
    assert!(w.kh.verify().ok);
    let p = check(&w, &cp);
    assert!(p.iter().any(|m| m.contains("deleted") || m.contains("Merkle")), "{p:?}");
    // Inserted in the middle.
    let (w, _) = history();
    let cp = w.kh.get(&w.owner, "/v1/audit/checkpoint").ok();
    let conn = db(&w);
    conn.execute_batch(
        "UPDATE audit SET idx = -(idx + 1) WHERE idx > 2; UPDATE audit SET idx = -idx WHERE idx < 0;
         INSERT INTO audit (idx, time, identity, dataset, \"column\", operation, params, rid_count, rid_digest,
           decision, reason, prev_hash, hash)
         VALUES (3, 1, 'analyst', 'patrons', 'income', 'decrypt', '{}', 1, NULL, 'issued', 'grant', '', '');",
    )
    .unwrap();
    rechain(&conn);
    let p = check(&w, &cp);
    assert!(p.iter().any(|m| m.contains("Merkle")), "{p:?}");
    // Truncated.
    let (w, _) = history();
    let cp = w.kh.get(&w.owner, "/v1/audit/checkpoint").ok();
    db(&w)
        .execute("DELETE FROM audit WHERE idx = (SELECT MAX(idx) FROM audit)", ())
        .unwrap();
    let p = check(&w, &cp);
    assert!(p.iter().any(|m| m.contains("truncated")), "{p:?}");
}

#[test]
fn a_pinned_public_key_refuses_checkpoints_of_another_key() {
    let (w, _) = history();
    let cp = w.kh.get(&w.owner, "/v1/audit/checkpoint").ok();
    let dir = w.kh.data_dir();
    let own = hex::encode(ghostpii_keyhost::checkpoint_public_key(&dir).unwrap().to_bytes());
    let pinned = |key: &str| w.kh.verify_checkpoint(&cp.to_string(), Some(key)).unwrap().problems;
    assert!(pinned(&own).is_empty());
    assert!(
        pinned(cp["public_key"].as_str().unwrap()).is_empty(),
        "base64 works too"
    );
    // A checkpoint re-signed by an attacker with their own key (and carrying that key) is
    // refused against the pinned key, even with checkpoint.key gone.
    std::fs::remove_file(dir.join("checkpoint.key")).unwrap();
    let forged = resigned(&cp);
    assert!(
        check(&w, &forged).is_empty(),
        "without a pin, a self-consistent forgery passes"
    );
    let r = w.kh.verify_checkpoint(&forged.to_string(), Some(&own)).unwrap();
    assert!(
        !r.ok && r.problems.iter().any(|p| p.problem.contains("another key")),
        "{r:?}"
    );
    assert!(w.kh.verify_checkpoint(&cp.to_string(), Some("zz")).is_err());
}

#[test]
fn proofs_carry_salted_leaves_only() {
    let (w, issued) = history();
    let conn = db(&w);
    let entries = all(&conn).unwrap();
    // Every entry has its own 32-byte salt, and its leaf is not the unsalted hash.
    let mut salts: Vec<&str> = entries.iter().map(|e| e.salt.as_str()).collect();
    assert!(salts.iter().all(|s| s.len() == 64));
    salts.sort_unstable();
    salts.dedup();
    assert_eq!(salts.len(), entries.len());
    let e = &entries[0];
    let unsalted = ghostpii_keyhost::merkle::leaf_hash(&ghostpii_keyhost::audit::canonical_bytes(e));
    assert_ne!(ghostpii_keyhost::audit::leaf_hash(e), unsalted);
    let own = entries
        .iter()
        .find(|e| e.salt == issued["receipt"]["salt"].as_str().unwrap())
        .unwrap();
    assert_eq!(issued["receipt"]["salt"], json!(own.salt));
}
