//! The binary frame of answer-key exchanges (`ghostpii_core::frame`), for the Python layer:
//! one codec for the keyhost, the Rust resolver and `ghostpii.frames`.

use ghostpii_core::frame;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// `(JSON, blobs)` of a frame, every rule of the format checked (markers, indices, lengths, no
/// trailing bytes). Raises `ValueError` naming the problem.
#[pyfunction]
pub fn frame_decode<'py>(py: Python<'py>, data: &[u8]) -> PyResult<(Bound<'py, PyBytes>, Vec<Bound<'py, PyBytes>>)> {
    let (json_bytes, _) = frame::split(data).map_err(|e| PyValueError::new_err(e.to_string()))?;
    let (_, blobs) = frame::decode(data).map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok((
        PyBytes::new(py, json_bytes),
        blobs.into_iter().map(|b| PyBytes::new(py, b)).collect(),
    ))
}

/// The frame of `json` (UTF-8, with `{"$blob": i, "len": n}` markers) and its `blobs`, refused
/// (`ValueError`) unless the markers name exactly those blobs.
#[pyfunction]
pub fn frame_encode<'py>(py: Python<'py>, json: &[u8], blobs: Vec<Vec<u8>>) -> PyResult<Bound<'py, PyBytes>> {
    let v: serde_json::Value = serde_json::from_slice(json).map_err(|e| PyValueError::new_err(e.to_string()))?;
    let refs: Vec<&[u8]> = blobs.iter().map(Vec::as_slice).collect();
    let out = frame::encode(&v, &refs).map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok(PyBytes::new(py, &out))
}
