//! `_internal.KeyhostClient`: the transport of the Python `Session`.

use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use super::http::{Client, Request, Settings, Transport};

/// The `ghostpii.errors.KeyhostError` of a transport failure.
fn transport_err(py: Python<'_>, t: Transport) -> PyErr {
    let made = (|| -> PyResult<PyErr> {
        let cls = py.import("ghostpii.errors")?.getattr("KeyhostError")?;
        let kw = PyDict::new(py);
        kw.set_item("reason", t.reason())?;
        Ok(PyErr::from_value(cls.call((t.message(),), Some(&kw))?))
    })();
    made.unwrap_or_else(|e| e)
}

/// The typed `ghostpii.errors` exception of a refusal (its class, reason and missing grant).
pub fn refusal_err(py: Python<'_>, r: &super::Refusal) -> PyErr {
    let made = (|| -> PyResult<PyErr> {
        let cls = py.import("ghostpii.errors")?.getattr(r.class)?;
        let kw = PyDict::new(py);
        kw.set_item("reason", &r.reason)?;
        if let Some(g) = &r.missing_grant {
            let json = py.import("json")?;
            kw.set_item("missing_grant", json.call_method1("loads", (g.to_string(),))?)?;
        }
        Ok(PyErr::from_value(cls.call((r.message.as_str(),), Some(&kw))?))
    })();
    made.unwrap_or_else(|e| e)
}

/// One connection pool to a keyhost (keep-alive, timeouts, retries), shared by the Python
/// session and, once activated, by kernels that fetch tokens or pads under a plain `.collect()`.
#[pyclass(module = "ghostpii._internal", frozen)]
pub struct KeyhostClient {
    inner: Arc<Client>,
}

#[pymethods]
impl KeyhostClient {
    #[new]
    #[pyo3(signature = (url, token, connect_timeout, read_timeout, retries))]
    fn new(url: String, token: String, connect_timeout: f64, read_timeout: f64, retries: u32) -> PyResult<Self> {
        let secs = |s: f64, what: &str| {
            Duration::try_from_secs_f64(s).map_err(|_| {
                pyo3::exceptions::PyValueError::new_err(format!("{what} timeout must be a positive number of seconds"))
            })
        };
        let settings = Settings {
            url,
            token,
            connect_timeout: secs(connect_timeout, "connect")?,
            read_timeout: secs(read_timeout, "read")?,
            retries,
        };
        let inner =
            Client::new(settings).map_err(|t| pyo3::exceptions::PyValueError::new_err(t.message().to_string()))?;
        Ok(KeyhostClient { inner: Arc::new(inner) })
    }

    /// Send one request (the GIL released while it runs); returns the status and the body.
    /// Transport failures raise `KeyhostError` (reason `timeout` or `unreachable`).
    #[pyo3(signature = (method, path, body=None, content_type=None, accept=None, idempotency_key=None))]
    #[allow(clippy::too_many_arguments)]
    fn request<'py>(
        &self,
        py: Python<'py>,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        content_type: Option<&str>,
        accept: Option<&str>,
        idempotency_key: Option<&str>,
    ) -> PyResult<(u16, Bound<'py, PyBytes>)> {
        let req = Request {
            method,
            path,
            body: body.map(Into::into),
            content_type,
            accept,
            idempotency_key,
        };
        let resp = py.detach(|| self.inner.send(&req)).map_err(|t| transport_err(py, t))?;
        Ok((resp.status, PyBytes::new(py, &resp.body)))
    }

    /// Count one answer-key request of `descriptors` descriptors (the session's own requests).
    fn count_answer_request(&self, descriptors: u64) {
        use std::sync::atomic::Ordering;
        self.inner.stats.answer_key_requests.fetch_add(1, Ordering::Relaxed);
        self.inner.stats.descriptors.fetch_add(descriptors, Ordering::Relaxed);
    }

    /// Round trips (retries included), answer-key requests, descriptors sent and retries.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (k, v) in self.inner.stats.snapshot() {
            d.set_item(k, v)?;
        }
        Ok(d)
    }

    fn reset_stats(&self) {
        self.inner.stats.reset();
    }

    /// Continue with another token (after a rotation).
    fn set_token(&self, token: &str) {
        self.inner.set_token(token);
    }

    /// Make this client the one kernels use for keyhost `keyhost_id`.
    fn activate(&self, keyhost_id: &str) {
        super::activate(keyhost_id, self.inner.clone());
    }

    /// A fresh idempotency key (16 bytes of OS randomness, hex).
    #[staticmethod]
    fn idempotency_key() -> String {
        super::idempotency_key()
    }

    #[getter]
    fn url(&self) -> &str {
        self.inner.url()
    }
}

/// The name of the `ghostpii.errors` class of a keyhost refusal `reason` (with the HTTP status
/// where the reason does not decide it).
#[pyfunction]
#[pyo3(signature = (reason, status=None))]
pub fn error_class(reason: &str, status: Option<u16>) -> &'static str {
    super::answers::class_for(reason, status)
}
