//! Every table of the keyhost, and the one migration that creates them: [`migrate`] runs at
//! start (`data_dir::open`). The tables are grouped by the module that reads and writes them; a
//! module that needs a new table adds it here (and, if an existing database cannot hold it,
//! bumps [`SCHEMA_VERSION`]). DDL is written for SQLite and translated for PostgreSQL
//! ([`super::ddl`]).

use super::{create_tables, meta_get, meta_set, Backend, Connection, Error, Result};

/// Version 2 added the `score`, `moments`, `match`, `group` and `link` grant operations and their
/// tables. A version-1 database is refused at start (there is no upgrade path yet: its grants
/// table's CHECK constraint would refuse the new operations). Version 3 scoped dataset and join
/// domain names per owner (`UNIQUE (owner_id, name)`), added owner-managed identities
/// (`identities.manager_id`, `identity_shares`), join-domain membership and the audit readers
/// index (`orgs.rs`), and the `search` operation to the grants' CHECK constraint; older databases
/// are refused the same way. Version 4 added the `compute` operation (row-wise circuits,
/// `answer_keys/compute.rs`) to that constraint and the `compute_evaluations` table; version-3
/// databases are refused the same way (their CHECK constraint would refuse compute grants).
pub const SCHEMA_VERSION: i64 = 4;

/// Identities and tokens, datasets, columns and key epochs, rid ranges, grants, the audit log,
/// comparison constants, budgets, the linear audit, score vectors.
const CORE: &str = r#"
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS identities (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    role       TEXT NOT NULL CHECK (role IN ('admin', 'owner', 'member')),
    created_at INTEGER NOT NULL,
    -- the owner that created and manages this identity (NULL: created by an admin, keyhost-wide)
    manager_id INTEGER REFERENCES identities(id)
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
    name       TEXT NOT NULL,
    owner_id   INTEGER NOT NULL REFERENCES identities(id),
    next_rid   INTEGER NOT NULL DEFAULT 1,
    created_at INTEGER NOT NULL,
    UNIQUE (owner_id, name)
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
    operation   TEXT NOT NULL CHECK (operation IN ('decrypt', 'aggregate', 'compare', 'score', 'moments', 'match', 'search', 'group', 'link', 'compute')),
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
    "column"   TEXT,
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
-- Weight vectors of score answer keys that enlarged the span of those answered per identity x
-- dataset (score_span.rs): `vector` is `column_id:weight,...` sorted by column id.
CREATE TABLE IF NOT EXISTS score_vectors (
    identity_id INTEGER NOT NULL REFERENCES identities(id),
    dataset_id  INTEGER NOT NULL REFERENCES datasets(id),
    vector      TEXT NOT NULL,
    first_audit INTEGER NOT NULL,
    PRIMARY KEY (identity_id, dataset_id, vector)
);
-- Evaluations of row-wise circuits (answer_keys/compute.rs) per identity x column x row, the
-- count that compute grants' max_evaluations bounds.
CREATE TABLE IF NOT EXISTS compute_evaluations (
    identity_id INTEGER NOT NULL REFERENCES identities(id),
    column_id   INTEGER NOT NULL REFERENCES columns(id),
    rid         INTEGER NOT NULL,
    count       INTEGER NOT NULL,
    PRIMARY KEY (identity_id, column_id, rid)
);
"#;

/// `answer_keys/idempotency.rs`: the recorded response of each idempotency key.
const IDEMPOTENCY: &str = r#"
CREATE TABLE IF NOT EXISTS idempotency (
    identity_id  INTEGER NOT NULL REFERENCES identities(id),
    key          TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    response     BLOB,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (identity_id, key)
);
"#;

/// `domain/audit.rs` and `domain/sequencer.rs`: the queue of entries not yet in the chain, and
/// the map from queue ids to log indices. SQLite ids are `AUTOINCREMENT` so that an id is never
/// reused once its row is integrated.
const AUDIT_QUEUE_SQLITE: &str = r#"
CREATE TABLE IF NOT EXISTS audit_queue (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    time       INTEGER NOT NULL,
    identity   TEXT,
    dataset    TEXT,
    "column"   TEXT,
    operation  TEXT NOT NULL,
    params     TEXT NOT NULL,
    rid_count  INTEGER,
    rid_digest TEXT,
    decision   TEXT NOT NULL,
    reason     TEXT,
    salt       TEXT NOT NULL,
    readers    TEXT NOT NULL DEFAULT ''
);
"#;

const AUDIT_INTEGRATED: &str = r#"
CREATE TABLE IF NOT EXISTS audit_integrated (
    queue_id      INTEGER PRIMARY KEY,
    idx           INTEGER NOT NULL UNIQUE,
    integrated_at INTEGER NOT NULL
);
"#;

/// `domain/join_domains.rs`: join domains, the columns in them, match constants issued.
const JOIN_DOMAINS: &str = r#"
CREATE TABLE IF NOT EXISTS join_domains (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    key_sealed BLOB NOT NULL,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    -- the owner whose domain it is; (owner_id, name) is unique among domains not retired
    owner_id   INTEGER NOT NULL REFERENCES identities(id),
    -- set when the domain's key was rotated: columns registered before keep this key
    retired_at INTEGER
);
CREATE TABLE IF NOT EXISTS column_join_domains (
    column_id INTEGER PRIMARY KEY REFERENCES columns(id),
    domain_id INTEGER NOT NULL REFERENCES join_domains(id)
);
CREATE TABLE IF NOT EXISTS issued_match_constants (
    identity_id INTEGER NOT NULL REFERENCES identities(id),
    column_id   INTEGER NOT NULL REFERENCES columns(id),
    digest      TEXT NOT NULL,
    first_audit INTEGER NOT NULL,
    PRIMARY KEY (identity_id, column_id, digest)
);
"#;

/// `domain/populations.rs`: the population label of a dataset.
const POPULATIONS: &str = r#"
CREATE TABLE IF NOT EXISTS dataset_populations (
    dataset_id INTEGER PRIMARY KEY REFERENCES datasets(id),
    population TEXT NOT NULL
);
"#;

/// `domain/orgs.rs`: shares, join-domain members, token delegations, audit readers.
const ORGS: &str = r#"
CREATE TABLE IF NOT EXISTS identity_shares (
    identity_id INTEGER NOT NULL REFERENCES identities(id),
    owner_id    INTEGER NOT NULL REFERENCES identities(id),
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (identity_id, owner_id)
);
-- a removed member keeps its row (removed_at set): it still holds the keys it was given
CREATE TABLE IF NOT EXISTS join_domain_members (
    domain_id  INTEGER NOT NULL REFERENCES join_domains(id),
    owner_id   INTEGER NOT NULL REFERENCES identities(id),
    created_at INTEGER NOT NULL,
    removed_at INTEGER,
    PRIMARY KEY (domain_id, owner_id)
);
-- an analyst an owner made the lead of its identities: it issues and revokes their tokens, each
-- living at most max_ttl_seconds and not beyond expires_at (the delegation's own end)
CREATE TABLE IF NOT EXISTS token_delegations (
    identity_id     INTEGER NOT NULL REFERENCES identities(id),
    max_ttl_seconds INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (identity_id)
);
CREATE TABLE IF NOT EXISTS audit_readers (
    idx      INTEGER NOT NULL,
    owner_id INTEGER NOT NULL,
    PRIMARY KEY (owner_id, idx)
);
"#;

/// The audit queue's DDL on this backend (PostgreSQL ids are identities, never reused either).
fn audit_queue(backend: Backend) -> String {
    match backend {
        Backend::Sqlite => AUDIT_QUEUE_SQLITE.to_owned(),
        Backend::Postgres => super::postgres::ddl(
            &AUDIT_QUEUE_SQLITE.replace("INTEGER PRIMARY KEY AUTOINCREMENT", "INTEGER PRIMARY KEY"),
        ),
    }
}

/// Create the tables if they do not exist and record the schema version, in one transaction
/// (on PostgreSQL under the write lock, so replicas starting together do not race). A
/// database written with another schema version is refused (no upgrade path is written yet;
/// see [`SCHEMA_VERSION`]).
pub fn migrate(conn: &mut Connection) -> Result<()> {
    let tx = conn.transaction()?;
    create_tables(&tx, CORE)?;
    create_tables(&tx, IDEMPOTENCY)?;
    tx.execute_batch(&audit_queue(tx.backend()))?;
    create_tables(&tx, AUDIT_INTEGRATED)?;
    create_tables(&tx, JOIN_DOMAINS)?;
    create_tables(&tx, POPULATIONS)?;
    create_tables(&tx, ORGS)?;
    if let Some(v) = meta_get(&tx, "schema_version")? {
        if v != SCHEMA_VERSION.to_string() {
            return Err(Error::Schema(format!(
                "the keyhost database has schema version {v}; this keyhost reads version {SCHEMA_VERSION}"
            )));
        }
    }
    meta_set(&tx, "schema_version", &SCHEMA_VERSION.to_string())?;
    tx.commit()
}
