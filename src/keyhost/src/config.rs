//! Configuration of a keyhost instance.

use std::path::PathBuf;

use crate::limits::Limits;

/// Where a keyhost keeps its state, where it listens, and its resource limits.
#[derive(Debug, Clone)]
pub struct Config {
    /// Data directory: `master.key`, `keyhost.db`, `admin.token` (created on first start).
    pub data_dir: PathBuf,
    /// Socket address to listen on, e.g. `"127.0.0.1:0"` (port 0: any free port).
    pub listen: String,
    /// Request-size, batch and failed-authentication limits; at start, the `GHOSTPII_*`
    /// environment variables of [`crate::limits::ENV_VARS`] that are set override them.
    pub limits: Limits,
}

impl Config {
    pub fn new(data_dir: impl Into<PathBuf>, listen: impl Into<String>) -> Self {
        Config {
            data_dir: data_dir.into(),
            listen: listen.into(),
            limits: Limits::default(),
        }
    }
}
