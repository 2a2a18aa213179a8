//! The data directory: `master.key`, `keyhost.db`, `admin.token`, `noise.key`,
//! `checkpoint.key`, `keyhost.lock` (held while a keyhost runs on it). Created on first start,
//! reused afterwards.

use std::path::{Path, PathBuf};

use rand::RngCore;
use serde_json::json;

use crate::audit::{self, NewEntry};
use crate::budget;
use crate::config::Privacy;
use crate::db;
use crate::dir_lock;
use crate::error::KeyhostError;
use crate::files;
use crate::identities::{self, Role};
use crate::master_key::MasterKey;
use crate::secret_file;
use crate::state::{AppState, Secrets};
use crate::tokens;

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

/// Open the data dir, bootstrapping it on first use, and build the service state.
pub fn open_with(dir: &Path, privacy: &Privacy) -> Result<AppState, KeyhostError> {
    privacy.default_budget.validate().map_err(KeyhostError::Config)?;
    files::create_private_dir(dir).map_err(|e| KeyhostError::io("cannot create data directory", dir, e))?;
    let lock = dir_lock::acquire(dir)?;
    let mk_path = dir.join(MASTER_KEY_FILE);
    let path = db_path(dir);
    if !path.exists() {
        // An empty file with mode 0600; SQLite gives its -wal and -shm files the same mode.
        files::create_private(&path).map_err(|e| KeyhostError::io("cannot create database", &path, e))?;
    }
    let mut conn = db::open(&path)?;
    db::migrate(&conn)?;

    let (keyhost_id, master) = match db::meta_get(&conn, KEYHOST_ID_KEY)? {
        Some(id) => {
            if !mk_path.exists() {
                return Err(KeyhostError::MasterKey(format!(
                    "{} is missing but {} exists: without its master key this keyhost's \
                     column keys cannot be recovered",
                    mk_path.display(),
                    db_path(dir).display()
                )));
            }
            let master = MasterKey::load(&mk_path)?;
            if db::meta_get(&conn, MASTER_CHECK_KEY)?.as_deref() != Some(&master.check_value(&id)) {
                return Err(KeyhostError::MasterKey(format!(
                    "{} does not belong to keyhost {id}",
                    mk_path.display()
                )));
            }
            (id, master)
        }
        None => bootstrap(dir, &mk_path, &mut conn)?,
    };
    let noise_key = load_noise_key(dir, &conn, privacy.new_noise_key)?;
    budget::store_defaults(&conn, &privacy.default_budget)?;
    let seed = secret_file::load_or_create(&dir.join(secret_file::CHECKPOINT_KEY_FILE), "checkpoint key file")?;
    let signer = ed25519_dalek::SigningKey::from_bytes(&seed);
    Ok(AppState::new(
        conn,
        master,
        keyhost_id,
        dir.to_path_buf(),
        Secrets { noise_key, signer },
        lock,
    ))
}

/// `noise.key`, created on first start. A missing key is not silently replaced once DP answers
/// were charged: a new key would give fresh noise to requests already charged.
fn load_noise_key(
    dir: &Path,
    conn: &rusqlite::Connection,
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
                db_path(dir).display()
            )));
        }
    }
    secret_file::load_or_create(&path, "noise key file")
}

fn bootstrap(dir: &Path, mk_path: &Path, conn: &mut rusqlite::Connection) -> Result<(String, MasterKey), KeyhostError> {
    // A master key without a keyhost id is left over from an interrupted bootstrap.
    let master = if mk_path.exists() {
        MasterKey::load(mk_path)?
    } else {
        MasterKey::create(mk_path)?
    };
    let keyhost_id = new_keyhost_id();
    let tx = conn.transaction()?;
    db::meta_set(&tx, KEYHOST_ID_KEY, &keyhost_id)?;
    db::meta_set(&tx, MASTER_CHECK_KEY, &master.check_value(&keyhost_id))?;
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
