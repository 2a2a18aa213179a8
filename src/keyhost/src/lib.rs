//! ghostpii-keyhost: the service that holds the column keys of ghostpii datasets, decides who
//! may compute what, computes answer keys, and records every decision in a hash-chained
//! audit log (see `ARCHITECTURE.md`, "Keyhost").
//!
//! Start it in-process with [`spawn`], in the foreground with [`serve_blocking`] (or the
//! `ghostpii-keyhost serve` binary), or mount [`router`] yourself. State lives in a data
//! directory: `master.key` (wraps every column key), `keyhost.db` (SQLite, WAL) and
//! `admin.token` (the bootstrap admin's token); or, with [`Config::database`], in a
//! PostgreSQL database that several keyhost replicas share (see `db`).
//!
//! Module map: `data_dir` (bootstrap), `db` (schema), `master_key` (envelope encryption),
//! `identities`/`tokens` (who), `datasets`/`columns` (what), `grants`/`policy` (may),
//! `answer_keys` (compute), `audit` (record), `routes` (HTTP), `server` (run).

pub mod answer_keys;
pub mod audit;
pub mod auth_audit;
pub mod budget;
pub mod checkpoint;
pub mod clock;
pub mod columns;
pub mod config;
pub mod console;
pub mod data_dir;
pub mod datasets;
pub mod db;
pub mod dir_lock;
pub mod dp;
pub mod error;
pub mod extract;
pub mod fhe_keys;
mod files;
pub mod grant_params;
pub mod grants;
pub mod idempotency;
pub mod identities;
pub mod join_domains;
pub mod key_files;
pub mod limits;
pub mod linear_audit;
pub mod logical;
pub mod master_key;
pub mod match_constants;
pub mod merkle;
pub mod moments;
pub mod orgs;
pub mod policy;
pub mod populations;
pub mod rate_limit;
pub mod routes;
pub mod score_span;
pub mod secret_file;
pub mod sequencer;
pub mod server;
pub mod state;
pub mod tokens;

use std::path::Path;

pub use audit::{AuditProblem, AuditVerification};
pub use config::Config;
pub use error::{ApiError, KeyhostError};
pub use limits::Limits;
pub use routes::router;
pub use server::{serve_blocking, spawn, RunningKeyhost};
pub use state::AppState;

/// Check the audit chain of `DIR/keyhost.db` offline (the keyhost need not be running).
pub fn verify_audit_db(data_dir: &Path) -> Result<AuditVerification, KeyhostError> {
    verify_audit(data_dir, None)
}

/// The database of a keyhost: `database` (a PostgreSQL connection string) if given, else
/// the SQLite file `DIR/keyhost.db`, which must exist.
fn existing_database(data_dir: &Path, database: Option<&str>) -> Result<db::Database, KeyhostError> {
    match database {
        Some(url) => Ok(db::Database::postgres(url)),
        None => {
            let path = data_dir::db_path(data_dir);
            if !path.exists() {
                return Err(KeyhostError::Config(format!("{} does not exist", path.display())));
            }
            Ok(db::Database::Sqlite(path))
        }
    }
}

/// Check the audit chain offline, in `DIR/keyhost.db` or (with `database`) in PostgreSQL.
pub fn verify_audit(data_dir: &Path, database: Option<&str>) -> Result<AuditVerification, KeyhostError> {
    let mut conn = db::open_read_only(&existing_database(data_dir, database)?)?;
    let snap = conn.snapshot()?;
    Ok(audit::verify(&snap)?)
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
    let cp: checkpoint::Checkpoint = serde_json::from_str(checkpoint_json)
        .map_err(|e| KeyhostError::Config(format!("not a ghostpii audit checkpoint: {e}")))?;
    let pinned = public_key
        .map(checkpoint::parse_public_key)
        .transpose()
        .map_err(|e| KeyhostError::Config(format!("--public-key: {e}")))?;
    // One snapshot for the chain and the checkpoint: a live keyhost may integrate entries
    // meanwhile (on PostgreSQL each statement would otherwise see the latest commit).
    let mut conn = db::open_read_only(&existing_database(data_dir, database)?)?;
    let conn = conn.snapshot()?;
    let mut report = audit::verify(&conn)?;
    let keyhost_id = db::meta_get(&conn, "keyhost_id")?;
    let expected = match pinned {
        Some(k) => Some(k),
        None => checkpoint_public_key(data_dir),
    };
    let problems = checkpoint::verify_log(&conn, keyhost_id.as_deref(), &cp, expected.as_ref())?;
    report.problems.extend(problems);
    report.ok = report.problems.is_empty();
    report.checkpoint = Some(cp);
    Ok(report)
}

/// The public key of `DIR/checkpoint.key`, if that file is readable (to pin it elsewhere).
pub fn checkpoint_public_key(data_dir: &Path) -> Option<ed25519_dalek::VerifyingKey> {
    let key_path = data_dir.join(secret_file::CHECKPOINT_KEY_FILE);
    std::fs::read(&key_path)
        .ok()
        .map(zeroize::Zeroizing::new)
        .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok().map(zeroize::Zeroizing::new))
        .map(|seed| ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key())
}
