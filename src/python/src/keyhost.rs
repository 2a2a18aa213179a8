//! The keyhost, run in-process (`gp.Keyhost.local()`) or in the foreground (`ghostpii keyhost serve`).

use std::io::Write;
use std::path::PathBuf;

use ghostpii_keyhost::{Config, RunningKeyhost};
use pyo3::prelude::*;

use crate::errors::GhostError;

fn kh_err(e: impl std::fmt::Display) -> PyErr {
    GhostError::new_err(format!("keyhost: {e}"))
}

/// A keyhost configuration from the Python-side options.
fn config(data_dir: PathBuf, listen: String, budget: Option<f64>, delta: Option<f64>, new_noise_key: bool) -> Config {
    let mut c = Config::new(data_dir, listen);
    if let Some(b) = budget {
        c.privacy.default_budget.epsilon = b;
    }
    if let Some(d) = delta {
        c.privacy.default_budget.delta = d;
    }
    c.privacy.new_noise_key = new_noise_key;
    c
}

/// A keyhost running on a background thread of this process.
#[pyclass(module = "ghostpii._internal")]
pub struct LocalKeyhost {
    inner: Option<RunningKeyhost>,
    url: String,
    keyhost_id: String,
    admin_token_path: PathBuf,
}

#[pymethods]
impl LocalKeyhost {
    #[new]
    #[pyo3(signature = (data_dir, listen, default_dp_budget=None, default_dp_delta=None))]
    fn new(
        py: Python<'_>,
        data_dir: PathBuf,
        listen: String,
        default_dp_budget: Option<f64>,
        default_dp_delta: Option<f64>,
    ) -> PyResult<Self> {
        let cfg = config(data_dir, listen, default_dp_budget, default_dp_delta, false);
        let kh = py.detach(|| ghostpii_keyhost::spawn(cfg)).map_err(kh_err)?;
        Ok(LocalKeyhost {
            url: kh.url().to_string(),
            keyhost_id: kh.keyhost_id().to_string(),
            admin_token_path: kh.admin_token_path(),
            inner: Some(kh),
        })
    }

    #[getter]
    fn url(&self) -> &str {
        &self.url
    }

    #[getter]
    fn keyhost_id(&self) -> &str {
        &self.keyhost_id
    }

    #[getter]
    fn admin_token_path(&self) -> PathBuf {
        self.admin_token_path.clone()
    }

    #[getter]
    fn running(&self) -> bool {
        self.inner.is_some()
    }

    /// Stop the keyhost and wait for it to finish. Idempotent.
    fn close(&mut self, py: Python<'_>) {
        if let Some(kh) = self.inner.take() {
            py.detach(|| kh.shutdown());
        }
    }
}

/// Run a keyhost in the foreground until Ctrl-C or SIGTERM. Prints its URL once listening.
/// With `database` (a PostgreSQL connection string) all state lives there and `data_dir`
/// holds only the key files, which replicas on the same database share.
#[pyfunction]
#[pyo3(signature = (data_dir, listen, default_dp_budget=None, default_dp_delta=None, new_noise_key=false, database=None))]
pub fn serve_keyhost(
    py: Python<'_>,
    data_dir: PathBuf,
    listen: String,
    default_dp_budget: Option<f64>,
    default_dp_delta: Option<f64>,
    new_noise_key: bool,
    database: Option<String>,
) -> PyResult<()> {
    let mut cfg = config(data_dir, listen, default_dp_budget, default_dp_delta, new_noise_key);
    cfg.database = database;
    py.detach(|| {
        ghostpii_keyhost::serve_blocking(cfg, |url| {
            let mut out = std::io::stdout();
            let _ = writeln!(out, "ghostpii keyhost listening on {url}");
            let _ = out.flush();
        })
    })
    .map_err(kh_err)
}

/// Check the audit hash chain of a keyhost's database offline (`DIR/keyhost.db`, or the
/// PostgreSQL `database`). Returns a JSON report.
#[pyfunction]
#[pyo3(signature = (data_dir, database=None))]
pub fn verify_audit_db(py: Python<'_>, data_dir: PathBuf, database: Option<String>) -> PyResult<String> {
    let report = py
        .detach(|| ghostpii_keyhost::verify_audit(&data_dir, database.as_deref()))
        .map_err(kh_err)?;
    serde_json::to_string(&report).map_err(kh_err)
}

/// Check the audit log offline against a signed checkpoint (JSON from `GET /v1/audit/checkpoint`):
/// detects edited, inserted, deleted or truncated entries and a bad signature. With
/// `public_key` (hex or base64) the checkpoint must be signed by that key. Returns a JSON report.
#[pyfunction]
#[pyo3(signature = (data_dir, checkpoint_json, public_key=None, database=None))]
pub fn verify_audit_db_with_checkpoint(
    py: Python<'_>,
    data_dir: PathBuf,
    checkpoint_json: String,
    public_key: Option<String>,
    database: Option<String>,
) -> PyResult<String> {
    let report = py
        .detach(|| {
            ghostpii_keyhost::verify_audit_checkpoint(
                &data_dir,
                database.as_deref(),
                &checkpoint_json,
                public_key.as_deref(),
            )
        })
        .map_err(kh_err)?;
    serde_json::to_string(&report).map_err(kh_err)
}

/// The checkpoint public key of a keyhost's data dir (hex), to pin for offline verification.
#[pyfunction]
pub fn checkpoint_public_key(data_dir: PathBuf) -> PyResult<String> {
    ghostpii_keyhost::checkpoint_public_key(&data_dir)
        .map(|k| k.to_bytes().iter().map(|b| format!("{b:02x}")).collect::<String>())
        .ok_or_else(|| kh_err(format!("cannot read {}", data_dir.join("checkpoint.key").display())))
}
