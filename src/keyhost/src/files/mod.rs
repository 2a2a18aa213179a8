//! The files of a data directory: its lock (`dir_lock`), the master key that wraps every column
//! key (`master_key`), the noise and checkpoint keys (`secret_file`, checked against the
//! database by `key_files`), and the helpers below that create them private (0700 / 0600 on Unix).

pub mod dir_lock;
pub mod key_files;
pub mod master_key;
pub mod secret_file;

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

/// Create `dir` (and parents) with mode 0700 if it does not exist.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
}

/// Create a new file with mode 0600; fails if it exists.
pub fn create_private(path: &Path) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path)
}

/// Create or replace a file with mode 0600.
pub fn write_private(path: &Path, contents: &[u8]) -> io::Result<()> {
    use std::io::Write;
    if path.exists() {
        std::fs::remove_file(path)?;
    }
    let mut f = create_private(path)?;
    f.write_all(contents)?;
    f.sync_all()
}
