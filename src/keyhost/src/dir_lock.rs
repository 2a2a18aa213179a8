//! One keyhost per data directory: an exclusive lock on `DIR/keyhost.lock`, held for as long
//! as the keyhost's state lives. A second keyhost on the same directory is refused at start.

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
    match file.try_lock() {
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
            return Err(KeyhostError::Config(format!(
                "data directory {} is in use by {who}; stop that keyhost or pass another --data directory",
                dir.display()
            )));
        }
        Err(TryLockError::Error(e)) => return Err(KeyhostError::io("cannot lock", &path, e)),
    }
    write_pid(&mut file).map_err(|e| KeyhostError::io("cannot write lock file", &path, e))?;
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
}
