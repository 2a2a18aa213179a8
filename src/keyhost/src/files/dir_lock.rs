//! One keyhost per data directory: an exclusive lock on `DIR/keyhost.lock`, held for as long
//! as the keyhost's state lives. A second keyhost on the same directory is refused at start.
//! Replicas on PostgreSQL share the directory's key files: each takes a shared lock, so
//! they coexist while a keyhost on SQLite (exclusive) and they refuse each other.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::error::KeyhostError;

pub const LOCK_FILE: &str = "keyhost.lock";

/// The held lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

/// Take the exclusive lock of `dir`, or explain which process holds it.
pub fn acquire(dir: &Path) -> Result<DirLock, KeyhostError> {
    acquire_mode(dir, false)
}

/// Take the lock of `dir`, shared (replicas on PostgreSQL) or exclusive.
pub fn acquire_mode(dir: &Path, shared: bool) -> Result<DirLock, KeyhostError> {
    let path = dir.join(LOCK_FILE);
    let mut o = OpenOptions::new();
    o.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut file = o
        .open(&path)
        .map_err(|e| KeyhostError::io("cannot open lock file", &path, e))?;
    let locked = if shared {
        file.try_lock_shared()
    } else {
        file.try_lock()
    };
    match locked {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let who = if holder.is_empty() {
                "another keyhost".to_owned()
            } else {
                format!("another keyhost (process {holder})")
            };
            let hint = if shared {
                "replicas share a directory only when all of them run on PostgreSQL (--database)"
            } else {
                "stop that keyhost or pass another --data directory"
            };
            return Err(KeyhostError::Config(format!(
                "data directory {} is in use by {who}; {hint}",
                dir.display()
            )));
        }
        Err(TryLockError::Error(e)) => return Err(KeyhostError::io("cannot lock", &path, e)),
    }
    if !shared {
        write_pid(&mut file).map_err(|e| KeyhostError::io("cannot write lock file", &path, e))?;
    }
    Ok(DirLock { _file: file })
}

fn write_pid(file: &mut File) -> std::io::Result<()> {
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    file.write_all(std::process::id().to_string().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_dir_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = acquire(dir.path()).unwrap();
        let err = acquire(dir.path()).unwrap_err().to_string();
        assert!(err.contains("is in use by another keyhost"), "{err}");
        assert!(err.contains(&format!("process {}", std::process::id())), "{err}");
        drop(first);
        acquire(dir.path()).unwrap();
    }

    #[test]
    fn shared_locks_coexist_and_exclude_an_exclusive_one() {
        let dir = tempfile::tempdir().unwrap();
        let a = acquire_mode(dir.path(), true).unwrap();
        let b = acquire_mode(dir.path(), true).unwrap();
        assert!(acquire(dir.path()).is_err());
        drop((a, b));
        let x = acquire(dir.path()).unwrap();
        let err = acquire_mode(dir.path(), true).unwrap_err().to_string();
        assert!(err.contains("only when all of them run on PostgreSQL"), "{err}");
        drop(x);
    }
}
