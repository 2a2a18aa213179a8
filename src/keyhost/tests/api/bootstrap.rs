use std::os::unix::fs::PermissionsExt;

use ghostpii_keyhost::master_key::{MasterKey, WrappedKey};
use serde_json::json;

use crate::client::{raw, register, Kh, World};

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// Bytes of the database file and its WAL.
fn db_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut b = std::fs::read(dir.join("keyhost.db")).unwrap();
    if let Ok(w) = std::fs::read(dir.join("keyhost.db-wal")) {
        b.extend(w);
    }
    b
}

/// Everything the keyhost stored: the SQLite file and its WAL, or on PostgreSQL a dump of
/// every table's rows as text (bytea in hex, so raw key bytes are searched as hex too).
fn stored_bytes(kh: &Kh) -> Vec<u8> {
    if kh.is_sqlite() {
        return db_bytes(&kh.data_dir());
    }
    let conn = kh.db();
    let tables: Vec<String> = conn
        .query_map(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'",
            (),
            |r| r.get(0),
        )
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(tables.len() >= 10, "{tables:?}");
    let mut out = Vec::new();
    for t in tables {
        for row in conn
            .query_map(&format!("SELECT CAST(t.* AS TEXT) FROM {t} t"), (), |r| {
                r.get::<_, String>(0)
            })
            .unwrap()
        {
            out.extend_from_slice(row.unwrap().as_bytes());
        }
    }
    out
}

/// `needle` in `hay`, raw or (PostgreSQL's bytea text form) as lowercase hex.
fn contains_key(hay: &[u8], needle: &[u8]) -> bool {
    contains(hay, needle) || contains(hay, hex::encode(needle).as_bytes())
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn bootstrap_creates_private_files_and_an_admin() {
    let kh = Kh::start();
    let dir = kh.data_dir();
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("master.key")), 0o600);
    assert_eq!(mode(&dir.join("admin.token")), 0o600);
    if kh.is_sqlite() {
        assert_eq!(mode(&dir.join("keyhost.db")), 0o600);
        assert_eq!(mode(&dir.join("keyhost.db-wal")), 0o600);
    } else {
        assert!(
            !dir.join("keyhost.db").exists(),
            "on PostgreSQL the data dir holds no database"
        );
    }
    assert_eq!(std::fs::read(dir.join("master.key")).unwrap().len(), 32);
    let tok = std::fs::read_to_string(dir.join("admin.token")).unwrap();
    assert!(tok.starts_with("gpt_") && tok.ends_with('\n'));
    assert!(kh.id().starts_with("kh_") && kh.id().len() == 19);

    let info = raw(&kh.url(), "GET", "/v1/info", None, None).ok();
    assert_eq!(info["keyhost_id"], kh.id());
    assert!(info["version"].is_string());
    let me = kh.get(&kh.admin, "/v1/whoami").ok();
    assert_eq!(me, json!({"identity": "admin", "role": "admin", "keyhost_id": kh.id()}));

    // Only the SHA-256 of the token is stored.
    let conn = kh.db();
    let hashes: Vec<String> = conn
        .prepare("SELECT hash FROM tokens")
        .unwrap()
        .query_map((), |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(hashes, vec![ghostpii_keyhost::tokens::hash(&kh.admin)]);
    let stored = stored_bytes(&kh);
    assert!(!contains(&stored, kh.admin.as_bytes()));
    assert!(!contains(&stored, &kh.admin.as_bytes()[4..]));
}

#[test]
fn root_keys_are_stored_only_wrapped() {
    let w = World::new();
    let dir = w.kh.data_dir();
    let conn = w.kh.db();
    let (ds, nonce, sealed): (i64, Vec<u8>, Vec<u8>) = conn
        .query_row(
            "SELECT c.dataset_id, e.key_nonce, e.key_sealed FROM column_epochs e
             JOIN columns c ON c.id = e.column_id WHERE e.column_id = ?1 AND e.epoch = 1",
            [w.income.id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((nonce.len(), sealed.len()), (12, 48));
    // With the master key file the wrapped key opens to the root of the issued keys...
    let master = MasterKey::load(&dir.join("master.key")).unwrap();
    let root = master
        .unwrap(
            &WrappedKey {
                nonce,
                ciphertext: sealed,
            },
            &w.kh.id(),
            ds,
            w.income.id,
            1,
        )
        .unwrap();
    let keys = root.derive(&ghostpii_core::meta::key_binding(ds, w.income.id, 1));
    assert_eq!(keys.num.expose_bytes(), w.income.num.expose_bytes());
    // ...and neither the root key nor the master key is anywhere in the database.
    let bytes = stored_bytes(&w.kh);
    assert!(!contains_key(&bytes, root.as_bytes()));
    assert!(!contains_key(&bytes, &std::fs::read(dir.join("master.key")).unwrap()));
    assert!(!contains_key(&bytes, w.income.num.expose_bytes()));
}

#[test]
fn restart_keeps_identity_keys_and_tokens() {
    let mut w = World::new();
    let id = w.kh.id();
    let token_file = std::fs::read(w.kh.data_dir().join("admin.token")).unwrap();
    let rids = w.rids(100);
    let before = w.kh.answer(&w.owner, json!([w.sum(&rids, &[(&w.income, 1)])]));
    w.kh.restart();
    assert_eq!(w.kh.id(), id);
    assert_eq!(std::fs::read(w.kh.data_dir().join("admin.token")).unwrap(), token_file);
    assert_eq!(w.kh.get(&w.kh.admin, "/v1/whoami").ok()["identity"], "admin");
    assert_eq!(w.kh.get(&w.owner, "/v1/whoami").ok()["identity"], "olivia");
    let again = register(
        &w.kh,
        &w.owner,
        "patrons",
        json!({"name": "income", "dtype": "float64", "scale": 2, "bounds": [0, 100_000_000],
               "facets": ["val", "num"]}),
    );
    assert_eq!((again.id, again.epoch), (w.income.id, 1));
    assert_eq!(again.num.expose_bytes(), w.income.num.expose_bytes());
    let after = w.kh.answer(&w.owner, json!([w.sum(&rids, &[(&w.income, 1)])]));
    assert_eq!(before[0]["key"], after[0]["key"]);
    // Row ids continue after the previous allocation.
    let alloc =
        w.kh.post(
            &w.owner,
            "/v1/datasets/patrons/rids",
            json!({"count": 5, "columns": []}),
        )
        .ok();
    assert_eq!(alloc["start"].as_u64().unwrap(), w.start + 1000);
}

#[test]
fn column_settings_conflict_and_errors_are_json() {
    let w = World::new();
    let r = w.kh.post(
        &w.owner,
        "/v1/datasets/patrons/columns",
        json!({"name": "income", "dtype": "float64", "scale": 3, "bounds": [0, 100_000_000],
               "facets": ["num", "val"]}),
    );
    assert_eq!((r.status, r.reason()), (409, "conflict"));
    assert!(r.body["error"]["message"].as_str().unwrap().contains("scale is 2"));

    let r = raw(&w.kh.url(), "POST", "/v1/datasets", Some(&w.owner), Some("{not json"));
    assert_eq!((r.status, r.reason()), (400, "invalid_request"));
    let r = w.kh.post(&w.owner, "/v1/datasets", json!({"nome": "x"}));
    assert_eq!((r.status, r.reason()), (400, "invalid_request"));
    let r = w.kh.get(&w.owner, "/v1/nothing-here");
    assert_eq!((r.status, r.reason()), (404, "not_found"));
    let r = w.kh.post(&w.owner, "/v1/datasets/nope/rids", json!({"count": 1}));
    assert_eq!((r.status, r.reason()), (404, "not_found"));
    let r = w.kh.post(&w.owner, "/v1/datasets/patrons/rids", json!({"count": 0}));
    assert_eq!((r.status, r.reason()), (400, "invalid_request"));
    let r = w.kh.post(&w.owner, "/v1/datasets", json!({"name": "patrons"}));
    assert_eq!((r.status, r.reason()), (409, "conflict"));
    let r =
        w.kh.post(&w.owner, "/v1/datasets", json!({"name": "patrons", "exist_ok": true}))
            .ok();
    assert_eq!(r["id"].as_i64().unwrap(), w.dataset_id);
    // Members may not create datasets or register columns.
    let r = w.kh.post(&w.analyst, "/v1/datasets", json!({"name": "mine"}));
    assert_eq!((r.status, r.reason()), (403, "permission_denied"));
    let r = w.kh.post(
        &w.analyst,
        "/v1/datasets/patrons/columns",
        json!({"name": "x", "dtype": "int64", "facets": ["num"]}),
    );
    assert_eq!((r.status, r.reason()), (403, "permission_denied"));
    // Datasets are visible to owners and grantees only.
    assert_eq!(w.kh.get(&w.analyst, "/v1/datasets").ok()["datasets"], json!([]));
    w.grant("age", "aggregate", json!({}));
    let ds = w.kh.get(&w.analyst, "/v1/datasets").ok();
    assert_eq!(
        ds["datasets"],
        json!([{"id": w.dataset_id, "name": "patrons", "owner": "olivia"}])
    );
}
