//! Configuration of a keyhost instance.

use std::path::PathBuf;

/// Where a keyhost keeps its state and where it listens.
#[derive(Debug, Clone)]
pub struct Config {
    /// Data directory: `master.key`, `keyhost.db`, `admin.token` (created on first start).
    pub data_dir: PathBuf,
    /// Socket address to listen on, e.g. `"127.0.0.1:0"` (port 0: any free port).
    pub listen: String,
}

impl Config {
    pub fn new(data_dir: impl Into<PathBuf>, listen: impl Into<String>) -> Self {
        Config {
            data_dir: data_dir.into(),
            listen: listen.into(),
        }
    }
}
