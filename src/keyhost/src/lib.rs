//! ghostpii-keyhost: the service that holds the column keys of ghostpii datasets, decides who
//! may compute what, computes answer keys, and records every decision in a hash-chained
//! audit log (see `ARCHITECTURE.md`, "Keyhost").
//!
//! Start it in-process with [`spawn`], in the foreground with [`serve_blocking`] (or the
//! `ghostpii-keyhost serve` binary), or mount [`router`] yourself. State lives in a data
//! directory: `master.key` (wraps every column key), `keyhost.db` (SQLite, WAL) and
//! `admin.token` (the bootstrap admin's token); or, with [`Config::database`], in a
//! PostgreSQL database that several keyhost replicas share (see `store`).
//!
//! Module map, from the bottom up (no module imports one above it; `scripts/import_cycles.py
//! src/keyhost` checks that no modules import each other in a circle, at every level):
//!
//! - `clock`, `store/` (the database: connections, both backends, the schema), `error`;
//! - `files/` (the data directory's lock and key files, envelope encryption under the master key);
//! - `domain/` (who, what, may, how much, the log: what the keyhost knows and decides);
//! - `state` (the process-wide state of one keyhost; `fhe_keys`, the analysts' FHE server keys
//!   it holds in memory), `config`, `data_dir` (bootstrap);
//! - `answer_keys/` (decode, plan, compute, record one batch of answer-key requests);
//! - `http/` (routes, console, extractors, rate limit, server).

pub mod answer_keys;
pub mod clock;
pub mod config;
pub mod data_dir;
pub mod domain;
pub mod error;
pub mod fhe_keys;
pub mod files;
pub mod http;
pub mod state;
pub mod store;

/// The module paths of before the keyhost was grouped into `store/`, `files/`, `domain/` and
/// `http/` (`ghostpii_keyhost::db`, `crate::audit`, ...), kept for the tests, the tools and
/// code written against them. New code names a module where it lives.
pub use answer_keys::idempotency;
pub use domain::{
    audit, auth_audit, budget, checkpoint, columns, datasets, dp, grant_params, grants, identities, join_domains,
    limits, linear_audit, logical, match_constants, merkle, moments, orgs, policy, populations, score_span, sequencer,
    tokens,
};
pub use files::{dir_lock, key_files, master_key, secret_file};
pub use http::{console, extract, rate_limit, routes, server};
pub use store as db;

use std::path::Path;

pub use config::Config;
pub use domain::audit::AuditProblem;
pub use domain::limits::Limits;
pub use domain::verification::AuditVerification;
pub use error::{ApiError, KeyhostError};
pub use http::router;
pub use http::server::{serve_blocking, spawn, RunningKeyhost};
pub use state::AppState;

/// Check the audit chain of `DIR/keyhost.db` offline (the keyhost need not be running).
pub fn verify_audit_db(data_dir: &Path) -> Result<AuditVerification, KeyhostError> {
    verify_audit(data_dir, None)
}

/// The database of a keyhost: `database` (a PostgreSQL connection string) if given, else
/// the SQLite file `DIR/keyhost.db`, which must exist.
fn existing_database(data_dir: &Path, database: Option<&str>) -> Result<store::Database, KeyhostError> {
    match database {
        Some(url) => Ok(store::Database::postgres(url)),
        None => {
            let path = data_dir::db_path(data_dir);
            if !path.exists() {
                return Err(KeyhostError::Config(format!("{} does not exist", path.display())));
            }
            Ok(store::Database::Sqlite(path))
        }
    }
}

/// Check the audit chain offline, in `DIR/keyhost.db` or (with `database`) in PostgreSQL.
pub fn verify_audit(data_dir: &Path, database: Option<&str>) -> Result<AuditVerification, KeyhostError> {
    let mut conn = store::open_read_only(&existing_database(data_dir, database)?)?;
    let snap = conn.snapshot()?;
    Ok(domain::verification::verify(&snap)?)
}

/// [`verify_audit_db`] plus a check against a signed checkpoint (the JSON published at
/// `GET /v1/audit/checkpoint`): its signature (and, if `DIR/checkpoint.key` is readable, that
/// it is this keyhost's key), and that the first `tree_size` entries still have its Merkle
/// root. Detects edited, inserted, deleted and truncated entries.
pub fn verify_audit_db_with_checkpoint(
    data_dir: &Path,
    checkpoint_json: &str,
) -> Result<AuditVerification, KeyhostError> {
    verify_audit_db_pinned(data_dir, checkpoint_json, None)
}

/// [`verify_audit_db_with_checkpoint`] with a pinned checkpoint public key (hex or base64, see
/// `checkpoint::parse_public_key`): a checkpoint signed by any other key is reported, whatever
/// key it carries and whatever `checkpoint.key` holds.
pub fn verify_audit_db_pinned(
    data_dir: &Path,
    checkpoint_json: &str,
    public_key: Option<&str>,
) -> Result<AuditVerification, KeyhostError> {
    verify_audit_checkpoint(data_dir, None, checkpoint_json, public_key)
}

/// [`verify_audit_db_pinned`] on the SQLite file or (with `database`) on PostgreSQL.
pub fn verify_audit_checkpoint(
    data_dir: &Path,
    database: Option<&str>,
    checkpoint_json: &str,
    public_key: Option<&str>,
) -> Result<AuditVerification, KeyhostError> {
    let cp: domain::checkpoint::Checkpoint = serde_json::from_str(checkpoint_json)
        .map_err(|e| KeyhostError::Config(format!("not a ghostpii audit checkpoint: {e}")))?;
    let pinned = public_key
        .map(domain::checkpoint::parse_public_key)
        .transpose()
        .map_err(|e| KeyhostError::Config(format!("--public-key: {e}")))?;
    // One snapshot for the chain and the checkpoint: a live keyhost may integrate entries
    // meanwhile (on PostgreSQL each statement would otherwise see the latest commit).
    let mut conn = store::open_read_only(&existing_database(data_dir, database)?)?;
    let conn = conn.snapshot()?;
    let mut report = domain::verification::verify(&conn)?;
    let keyhost_id = store::meta_get(&conn, "keyhost_id")?;
    let expected = match pinned {
        Some(k) => Some(k),
        None => checkpoint_public_key(data_dir),
    };
    let problems = domain::checkpoint::verify_log(&conn, keyhost_id.as_deref(), &cp, expected.as_ref())?;
    report.problems.extend(problems);
    report.ok = report.problems.is_empty();
    report.checkpoint = Some(cp);
    Ok(report)
}

/// The public key of `DIR/checkpoint.key`, if that file is readable (to pin it elsewhere).
pub fn checkpoint_public_key(data_dir: &Path) -> Option<ed25519_dalek::VerifyingKey> {
    let key_path = data_dir.join(files::secret_file::CHECKPOINT_KEY_FILE);
    std::fs::read(&key_path)
        .ok()
        .map(zeroize::Zeroizing::new)
        .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok().map(zeroize::Zeroizing::new))
        .map(|seed| ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key())
}
