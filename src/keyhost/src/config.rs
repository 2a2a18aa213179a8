//! Configuration of a keyhost instance.

use std::path::PathBuf;

use crate::domain::budget;
use crate::domain::limits::Limits;

/// Where a keyhost keeps its state, where it listens, and its resource limits.
#[derive(Debug, Clone)]
pub struct Config {
    /// Data directory: `master.key`, `keyhost.db`, `admin.token` (created on first start).
    pub data_dir: PathBuf,
    /// A PostgreSQL connection string (`postgresql://user@host:port/db`): all state lives
    /// there instead of `keyhost.db`, and several keyhosts on the same key files may share it.
    pub database: Option<String>,
    /// Socket address to listen on, e.g. `"127.0.0.1:0"` (port 0: any free port).
    pub listen: String,
    /// Request-size, batch and failed-authentication limits; at start, the `GHOSTPII_*`
    /// environment variables of [`crate::domain::limits::ENV_VARS`] that are set override them.
    pub limits: Limits,
    /// Privacy settings (default DP budget, noise key recovery).
    pub privacy: Privacy,
}

/// Privacy settings of a keyhost.
#[derive(Debug, Clone, Default)]
pub struct Privacy {
    /// The (ε, δ) total of an identity on a dataset when neither a grant's `budget` nor
    /// `PUT /v1/budget` gives one.
    pub default_budget: budget::Defaults,
    /// Create a new `noise.key` although the database holds DP charges (after the old one was
    /// lost for good). Requests charged under the old key are charged again.
    pub new_noise_key: bool,
}

impl Config {
    pub fn new(data_dir: impl Into<PathBuf>, listen: impl Into<String>) -> Self {
        Config {
            data_dir: data_dir.into(),
            database: None,
            listen: listen.into(),
            privacy: Privacy::default(),
            limits: Limits::default(),
        }
    }
}
