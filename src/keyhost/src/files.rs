//! Private files and directories of the data dir (0700 / 0600 on Unix).

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
