//! The SQLite database: connection settings and schema.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension};

pub const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS identities (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    role       TEXT NOT NULL CHECK (role IN ('admin', 'owner', 'member')),
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    id          INTEGER PRIMARY KEY,
    identity_id INTEGER NOT NULL REFERENCES identities(id),
    hash        TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER,
    revoked_at  INTEGER
);
CREATE INDEX IF NOT EXISTS tokens_identity ON tokens(identity_id);
CREATE TABLE IF NOT EXISTS datasets (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    owner_id   INTEGER NOT NULL REFERENCES identities(id),
    next_rid   INTEGER NOT NULL DEFAULT 1,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS columns (
    id            INTEGER PRIMARY KEY,
    dataset_id    INTEGER NOT NULL REFERENCES datasets(id),
    name          TEXT NOT NULL,
    dtype         TEXT NOT NULL,
    scale         INTEGER NOT NULL,
    bounds_lo     INTEGER,
    bounds_hi     INTEGER,
    facets        TEXT NOT NULL,
    meta          TEXT,
    ord_offset    INTEGER,
    ord_bits      INTEGER,
    current_epoch INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    UNIQUE (dataset_id, name)
);
CREATE TABLE IF NOT EXISTS column_epochs (
    column_id  INTEGER NOT NULL REFERENCES columns(id),
    epoch      INTEGER NOT NULL,
    key_nonce  BLOB NOT NULL,
    key_sealed BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (column_id, epoch)
);
CREATE TABLE IF NOT EXISTS rid_ranges (
    id        INTEGER PRIMARY KEY,
    column_id INTEGER NOT NULL REFERENCES columns(id),
    start     INTEGER NOT NULL,
    count     INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS rid_ranges_column ON rid_ranges(column_id);
CREATE TABLE IF NOT EXISTS grants (
    id          INTEGER PRIMARY KEY,
    identity_id INTEGER NOT NULL REFERENCES identities(id),
    dataset_id  INTEGER NOT NULL REFERENCES datasets(id),
    column_name TEXT NOT NULL,
    operation   TEXT NOT NULL CHECK (operation IN ('decrypt', 'aggregate', 'compare', 'match', 'group', 'link')),
    params      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);
CREATE INDEX IF NOT EXISTS grants_lookup ON grants(identity_id, dataset_id, column_name);
CREATE TABLE IF NOT EXISTS audit (
    idx        INTEGER PRIMARY KEY,
    time       INTEGER NOT NULL,
    identity   TEXT,
    dataset    TEXT,
    column     TEXT,
    operation  TEXT NOT NULL,
    params     TEXT NOT NULL,
    rid_count  INTEGER,
    rid_digest TEXT,
    decision   TEXT NOT NULL,
    reason     TEXT,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL,
    salt       TEXT NOT NULL DEFAULT ''
);
-- Distinct comparison constants issued per identity and column (for max_constants).
CREATE TABLE IF NOT EXISTS issued_constants (
    identity_id INTEGER NOT NULL REFERENCES identities(id),
    column_id   INTEGER NOT NULL REFERENCES columns(id),
    constant    INTEGER NOT NULL,
    first_audit INTEGER NOT NULL,
    PRIMARY KEY (identity_id, column_id, constant)
);
-- Privacy budget ledger per identity x dataset: sums of the answers' (epsilon, delta, rho) and
-- the total (epsilon, delta) an owner or admin set (NULL: grant budget or keyhost default).
CREATE TABLE IF NOT EXISTS budget_ledger (
    identity_id   INTEGER NOT NULL REFERENCES identities(id),
    dataset_id    INTEGER NOT NULL REFERENCES datasets(id),
    epsilon_sum   REAL NOT NULL DEFAULT 0,
    delta_sum     REAL NOT NULL DEFAULT 0,
    rho_sum       REAL NOT NULL DEFAULT 0,
    answers       INTEGER NOT NULL DEFAULT 0,
    total_epsilon REAL,
    total_delta   REAL,
    PRIMARY KEY (identity_id, dataset_id)
);
-- Each distinct DP request charged once (repeats return the same noise and cost nothing).
CREATE TABLE IF NOT EXISTS budget_charges (
    identity_id INTEGER NOT NULL REFERENCES identities(id),
    dataset_id  INTEGER NOT NULL REFERENCES datasets(id),
    request     TEXT NOT NULL,
    epsilon     REAL NOT NULL,
    delta       REAL NOT NULL,
    rho         REAL NOT NULL,
    audit_index INTEGER NOT NULL,
    PRIMARY KEY (identity_id, dataset_id, request)
);
-- Linear audit of exact sums per identity x dataset (see linear_audit/): the encoded state and a
-- generation that in-memory caches must match.
CREATE TABLE IF NOT EXISTS linear_audit (
    identity_id INTEGER NOT NULL REFERENCES identities(id),
    dataset_id  INTEGER NOT NULL REFERENCES datasets(id),
    generation  INTEGER NOT NULL,
    answered    INTEGER NOT NULL,
    state       BLOB NOT NULL,
    PRIMARY KEY (identity_id, dataset_id)
);
"#;

/// Open (creating if needed) the database file with the keyhost's settings:
/// WAL journal, foreign keys enforced, a busy timeout for concurrent readers.
pub fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    configure(&conn)?;
    Ok(conn)
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    Ok(())
}

/// Create the tables if they do not exist and record the schema version. A database written
/// with another schema version is refused (there is no older released schema to upgrade from).
pub fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(SCHEMA)?;
    crate::idempotency::migrate(conn)?;
    crate::join_domains::migrate(conn)?;
    if let Some(v) = meta_get(conn, "schema_version")? {
        if v != SCHEMA_VERSION.to_string() {
            return Err(rusqlite::Error::InvalidParameterName(format!(
                "keyhost.db has schema version {v}; this keyhost reads version {SCHEMA_VERSION}"
            )));
        }
    }
    meta_set(conn, "schema_version", &SCHEMA_VERSION.to_string())?;
    Ok(())
}

pub fn meta_get(conn: &Connection, key: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()
}

pub fn meta_set(conn: &Connection, key: &str, value: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    )?
    .execute([key, value])?;
    Ok(())
}
