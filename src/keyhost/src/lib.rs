//! ghostpii-keyhost: the service that holds the column keys of ghostpii datasets, decides who
//! may compute what, computes answer keys, and records every decision in a hash-chained
//! audit log (see `ARCHITECTURE.md`, "Keyhost").
//!
//! Start it in-process with [`spawn`], in the foreground with [`serve_blocking`] (or the
//! `ghostpii-keyhost serve` binary), or mount [`router`] yourself. State lives in a data
//! directory: `master.key` (wraps every column key), `keyhost.db` (SQLite, WAL) and
//! `admin.token` (the bootstrap admin's token).
//!
//! Module map: `data_dir` (bootstrap), `db` (schema), `master_key` (envelope encryption),
//! `identities`/`tokens` (who), `datasets`/`columns` (what), `grants`/`policy` (may),
//! `answer_keys` (compute), `audit` (record), `routes` (HTTP), `server` (run).

pub mod answer_keys;
pub mod audit;
pub mod clock;
pub mod columns;
pub mod config;
pub mod data_dir;
pub mod datasets;
pub mod db;
pub mod error;
pub mod extract;
mod files;
pub mod grants;
pub mod identities;
pub mod master_key;
pub mod policy;
pub mod routes;
pub mod server;
pub mod state;
pub mod tokens;

use std::path::Path;

pub use audit::{AuditProblem, AuditVerification};
pub use config::Config;
pub use error::{ApiError, KeyhostError};
pub use routes::router;
pub use server::{serve_blocking, spawn, RunningKeyhost};
pub use state::AppState;

/// Check the audit chain of `DIR/keyhost.db` offline (the keyhost need not be running).
pub fn verify_audit_db(data_dir: &Path) -> Result<AuditVerification, KeyhostError> {
    let path = data_dir::db_path(data_dir);
    if !path.exists() {
        return Err(KeyhostError::Config(format!("{} does not exist", path.display())));
    }
    let conn = rusqlite::Connection::open_with_flags(
        &path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(audit::verify(&conn)?)
}
