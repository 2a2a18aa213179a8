//! The data directory: `master.key`, `keyhost.db`, `admin.token`, `noise.key`,
//! `checkpoint.key`, `keyhost.lock` (held while a keyhost runs on it). Created on first start,
//! reused afterwards. On PostgreSQL (`--database`) there is no `keyhost.db`: the directory
//! holds the key files that every replica shares.

use std::path::{Path, PathBuf};

use rand::RngCore;
use serde_json::json;

use crate::config::Privacy;
use crate::domain::audit::{self, NewEntry};
use crate::domain::budget;
use crate::domain::identities::{self, Role};
use crate::domain::tokens;
use crate::error::KeyhostError;
use crate::files;
use crate::files::dir_lock;
use crate::files::key_files;
use crate::files::master_key::MasterKey;
use crate::files::secret_file;
use crate::state::{AppState, Secrets};
use crate::store;

pub const MASTER_KEY_FILE: &str = "master.key";
pub const DB_FILE: &str = "keyhost.db";
pub const ADMIN_TOKEN_FILE: &str = "admin.token";
pub const ADMIN_IDENTITY: &str = "admin";

const KEYHOST_ID_KEY: &str = "keyhost_id";
const MASTER_CHECK_KEY: &str = "master_key_check";

pub fn db_path(dir: &Path) -> PathBuf {
    dir.join(DB_FILE)
}

pub fn admin_token_path(dir: &Path) -> PathBuf {
    dir.join(ADMIN_TOKEN_FILE)
}

fn new_keyhost_id() -> String {
    let mut b = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut b);
    format!("kh_{}", hex::encode(b))
}

/// Open the data dir with default privacy settings (see [`open_with`]).
pub fn open(dir: &Path) -> Result<AppState, KeyhostError> {
    open_with(dir, &Privacy::default())
}

/// Open the data dir (state in `DIR/keyhost.db`), bootstrapping it on first use.
pub fn open_with(dir: &Path, privacy: &Privacy) -> Result<AppState, KeyhostError> {
    open_on(dir, None, privacy)
}

/// Open the data dir, bootstrapping it on first use, and build the service state. With
/// `database` (a PostgreSQL connection string) DIR holds only the key files and all state is
/// in that database, which several keyhosts (replicas) may share: they take a shared lock
/// of DIR instead of an exclusive one, start one at a time (a PostgreSQL advisory lock) and
/// must all hold the same key files (checked against the database).
pub fn open_on(dir: &Path, database: Option<&str>, privacy: &Privacy) -> Result<AppState, KeyhostError> {
    privacy.default_budget.validate().map_err(KeyhostError::Config)?;
    files::create_private_dir(dir).map_err(|e| KeyhostError::io("cannot create data directory", dir, e))?;
    let database = match database {
        Some(url) => store::Database::postgres(url),
        None => store::Database::Sqlite(db_path(dir)),
    };
    let shared = matches!(database, store::Database::Postgres(_));
    let lock = dir_lock::acquire_mode(dir, shared)?;
    let _starting = store::startup_lock(&database)?;
    let mk_path = dir.join(MASTER_KEY_FILE);
    if let store::Database::Sqlite(path) = &database {
        if !path.exists() {
            // An empty file with mode 0600; SQLite gives its -wal and -shm files the same mode.
            files::create_private(path).map_err(|e| KeyhostError::io("cannot create database", path, e))?;
        }
    }
    let mut conn = store::open(&database)?;
    store::migrate(&mut conn)?;

    let (keyhost_id, master) = match store::meta_get(&conn, KEYHOST_ID_KEY)? {
        Some(id) => {
            if !mk_path.exists() {
                return Err(KeyhostError::MasterKey(format!(
                    "{} is missing but {} exists: without its master key this keyhost's \
                     column keys cannot be recovered",
                    mk_path.display(),
                    database.describe()
                )));
            }
            let master = MasterKey::load(&mk_path)?;
            if store::meta_get(&conn, MASTER_CHECK_KEY)?.as_deref() != Some(&master.check_value(&id)) {
                return Err(KeyhostError::MasterKey(format!(
                    "{} does not belong to keyhost {id}",
                    mk_path.display()
                )));
            }
            (id, master)
        }
        None => bootstrap(dir, &mk_path, &mut conn)?,
    };
    let noise_path = dir.join(secret_file::NOISE_KEY_FILE);
    let noise_created = !noise_path.exists();
    let noise_key = load_noise_key(dir, &database, &conn, privacy.new_noise_key)?;
    let replace_noise = privacy.new_noise_key || (!shared && noise_created);
    key_files::check(&conn, key_files::NOISE, &noise_path, noise_key.as_ref(), replace_noise)?;
    budget::store_defaults(&conn, &privacy.default_budget)?;
    let cp_path = dir.join(secret_file::CHECKPOINT_KEY_FILE);
    let cp_created = !cp_path.exists();
    let seed = secret_file::load_or_create(&cp_path, "checkpoint key file")?;
    key_files::check(
        &conn,
        key_files::CHECKPOINT,
        &cp_path,
        seed.as_ref(),
        !shared && cp_created,
    )?;
    let signer = ed25519_dalek::SigningKey::from_bytes(&seed);
    let sequencing = crate::domain::sequencer::Settings::from_env()?;
    if !shared {
        conn.set_group_commit(sqlite_group_commit()?);
    }
    let mut more = Vec::new();
    if shared {
        for _ in 1..db_connections()? {
            more.push(store::open(&database)?);
        }
    }
    AppState::new(
        conn,
        master,
        keyhost_id,
        dir.to_path_buf(),
        Secrets { noise_key, signer },
        lock,
    )
    .with_database(more, shared.then_some(database), sequencing)
}

/// Group commit on SQLite (`GHOSTPII_SQLITE_GROUP_COMMIT`, `1` by default, `0` turns it off):
/// the transactions of concurrent requests commit together (`store::sqlite`, `state.rs`).
pub const GROUP_COMMIT_ENV: &str = "GHOSTPII_SQLITE_GROUP_COMMIT";

fn sqlite_group_commit() -> Result<bool, KeyhostError> {
    match std::env::var(GROUP_COMMIT_ENV).as_deref().map(str::trim) {
        Err(_) | Ok("1") => Ok(true),
        Ok("0") => Ok(false),
        Ok(v) => Err(KeyhostError::Config(format!("{GROUP_COMMIT_ENV}={v}: 0 or 1"))),
    }
}

/// Connections of a keyhost on PostgreSQL (`GHOSTPII_DB_CONNECTIONS`, default 4): requests
/// of different identities × datasets run on them side by side. One on SQLite.
pub const DB_CONNECTIONS_ENV: &str = "GHOSTPII_DB_CONNECTIONS";

fn db_connections() -> Result<usize, KeyhostError> {
    match std::env::var(DB_CONNECTIONS_ENV) {
        Err(_) => Ok(4),
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(n) if (1..=256).contains(&n) => Ok(n),
            _ => Err(KeyhostError::Config(format!(
                "{DB_CONNECTIONS_ENV}={v} is not a number of connections from 1 to 256"
            ))),
        },
    }
}

/// `noise.key`, created on first start. A missing key is not silently replaced once DP answers
/// were charged: a new key would give fresh noise to requests already charged.
fn load_noise_key(
    dir: &Path,
    database: &store::Database,
    conn: &store::Connection,
    new_noise_key: bool,
) -> Result<zeroize::Zeroizing<[u8; 32]>, KeyhostError> {
    let path = dir.join(secret_file::NOISE_KEY_FILE);
    if !path.exists() && !new_noise_key {
        let charges = budget::charges_recorded(conn)?;
        if charges > 0 {
            return Err(KeyhostError::Config(format!(
                "{} is missing but {} records {charges} DP answer charge(s): a new noise key would give \
                 fresh noise to requests already answered, and averaging those answers defeats the noise. \
                 Restore noise.key from a backup of this data directory; if it is lost for good, start \
                 once with --new-noise-key (requests are bound to the noise key, so every earlier \
                 request is charged again when repeated)",
                path.display(),
                database.describe()
            )));
        }
    }
    secret_file::load_or_create(&path, "noise key file")
}

fn bootstrap(dir: &Path, mk_path: &Path, conn: &mut store::Connection) -> Result<(String, MasterKey), KeyhostError> {
    // A master key without a keyhost id is left over from an interrupted bootstrap.
    let master = if mk_path.exists() {
        MasterKey::load(mk_path)?
    } else {
        MasterKey::create(mk_path)?
    };
    let keyhost_id = new_keyhost_id();
    let tx = conn.transaction()?;
    store::meta_set(&tx, KEYHOST_ID_KEY, &keyhost_id)?;
    store::meta_set(&tx, MASTER_CHECK_KEY, &master.check_value(&keyhost_id))?;
    let admin = identities::insert(&tx, ADMIN_IDENTITY, Role::Admin)?;
    let (info, secret) = tokens::issue(&tx, &admin, None)?;
    audit::append(
        &tx,
        NewEntry::new(&admin, "keyhost.bootstrap").params(json!({"keyhost_id": keyhost_id, "token_id": info.token_id})),
    )?;
    let path = admin_token_path(dir);
    let contents = zeroize::Zeroizing::new(format!("{}\n", secret.as_str()));
    files::write_private(&path, contents.as_bytes())
        .map_err(|e| KeyhostError::io("cannot write admin token file", &path, e))?;
    tx.commit()?;
    Ok((keyhost_id, master))
}
