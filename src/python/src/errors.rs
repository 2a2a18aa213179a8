//! Python exception types raised from Rust. `ghostpii.errors` re-exports and extends them.

use ghostpii_core::CoreError;
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(
    _internal,
    GhostError,
    PyException,
    "Base class of every ghostpii error."
);
create_exception!(
    _internal,
    EncryptionError,
    GhostError,
    "Input that cannot be encrypted as declared."
);
create_exception!(
    _internal,
    CiphertextError,
    GhostError,
    "Corrupt, altered or foreign ciphertext."
);

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("GhostError", py.get_type::<GhostError>())?;
    m.add("EncryptionError", py.get_type::<EncryptionError>())?;
    m.add("CiphertextError", py.get_type::<CiphertextError>())?;
    Ok(())
}

pub fn core_err(e: CoreError) -> PyErr {
    match e {
        CoreError::CorruptCiphertext(_) | CoreError::AuthenticationFailed { .. } => {
            CiphertextError::new_err(e.to_string())
        }
        other => GhostError::new_err(other.to_string()),
    }
}

pub fn polars_err(e: polars::prelude::PolarsError) -> PyErr {
    GhostError::new_err(e.to_string())
}
