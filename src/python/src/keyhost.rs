//! The keyhost, run in-process (`gp.Keyhost.local()`) or in the foreground (`ghostpii keyhost serve`).

use std::io::Write;
use std::path::PathBuf;

use ghostpii_keyhost::{Config, RunningKeyhost};
use pyo3::prelude::*;

use crate::errors::GhostError;

fn kh_err(e: impl std::fmt::Display) -> PyErr {
    GhostError::new_err(format!("keyhost: {e}"))
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
    fn new(py: Python<'_>, data_dir: PathBuf, listen: String) -> PyResult<Self> {
        let kh = py
            .detach(|| ghostpii_keyhost::spawn(Config::new(data_dir, listen)))
            .map_err(kh_err)?;
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
#[pyfunction]
pub fn serve_keyhost(py: Python<'_>, data_dir: PathBuf, listen: String) -> PyResult<()> {
    py.detach(|| {
        ghostpii_keyhost::serve_blocking(Config::new(data_dir, listen), |url| {
            let mut out = std::io::stdout();
            let _ = writeln!(out, "ghostpii keyhost listening on {url}");
            let _ = out.flush();
        })
    })
    .map_err(kh_err)
}

/// Check the audit hash chain of a keyhost's database offline. Returns a JSON report.
#[pyfunction]
pub fn verify_audit_db(py: Python<'_>, data_dir: PathBuf) -> PyResult<String> {
    let report = py
        .detach(|| ghostpii_keyhost::verify_audit_db(&data_dir))
        .map_err(kh_err)?;
    serde_json::to_string(&report).map_err(kh_err)
}

/// Check the audit log offline against a signed checkpoint (JSON from `GET /v1/audit/checkpoint`):
/// detects edited, inserted, deleted or truncated entries and a bad signature. Returns a JSON report.
#[pyfunction]
pub fn verify_audit_db_with_checkpoint(py: Python<'_>, data_dir: PathBuf, checkpoint_json: String) -> PyResult<String> {
    let report = py
        .detach(|| ghostpii_keyhost::verify_audit_db_with_checkpoint(&data_dir, &checkpoint_json))
        .map_err(kh_err)?;
    serde_json::to_string(&report).map_err(kh_err)
}
