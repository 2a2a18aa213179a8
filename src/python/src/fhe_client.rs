//! The analyst's FHE keys for row-wise computation (`gp.compute`, `docs/rowwise.md`): a thin
//! PyO3 wrapper over `ghostpii_fhe::AnalystKeys`. The client key stays inside this object;
//! Python sees only the server key to upload, ciphertext bytes and decrypted results.

use std::collections::HashMap;

use ghostpii_fhe::AnalystKeys;
use ghostpii_proto::circuit::{input_bounds, Circuit};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors::{CiphertextError, GhostError};

/// An analyst's tfhe key pair (generated on construction: a few seconds).
#[pyclass(module = "ghostpii._internal", frozen)]
pub struct FheClient {
    keys: AnalystKeys,
}

fn i64s(bytes: &[u8]) -> PyResult<Vec<i64>> {
    if !bytes.len().is_multiple_of(8) {
        return Err(GhostError::new_err("values must be little-endian i64, 8 bytes each"));
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect())
}

#[pymethods]
impl FheClient {
    #[new]
    fn new(py: Python<'_>) -> PyResult<Self> {
        let keys = py
            .detach(AnalystKeys::generate)
            .map_err(|e| GhostError::new_err(e.to_string()))?;
        Ok(FheClient { keys })
    }

    /// The compressed server key to upload to the keyhost.
    fn server_key<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, self.keys.server_key())
    }

    /// Encrypt signed `bits`-bit values (little-endian i64 bytes) as one compressed list.
    fn encrypt<'py>(&self, py: Python<'py>, bits: u32, values: Vec<u8>) -> PyResult<Bound<'py, PyBytes>> {
        let v = i64s(&values)?;
        let out = py
            .detach(|| self.keys.encrypt(bits, &v))
            .map_err(|e| GhostError::new_err(e.to_string()))?;
        Ok(PyBytes::new(py, &out))
    }

    /// Decrypt `n` booleans: one byte (0 or 1) each.
    fn decrypt_bools<'py>(&self, py: Python<'py>, results: Vec<u8>, n: usize) -> PyResult<Bound<'py, PyBytes>> {
        let out = py
            .detach(|| self.keys.decrypt_bools(&results, n))
            .map_err(|e| CiphertextError::new_err(format!("the keyhost's results do not decrypt: {e}")))?;
        Ok(PyBytes::new(py, &out.into_iter().map(u8::from).collect::<Vec<u8>>()))
    }

    /// Decrypt `n` signed `bits`-bit integers: little-endian i64 bytes.
    fn decrypt_ints<'py>(
        &self,
        py: Python<'py>,
        results: Vec<u8>,
        n: usize,
        bits: u32,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let out = py
            .detach(|| self.keys.decrypt_ints(&results, n, bits))
            .map_err(|e| CiphertextError::new_err(format!("the keyhost's results do not decrypt: {e}")))?;
        Ok(PyBytes::new(
            py,
            &out.into_iter().flat_map(i64::to_le_bytes).collect::<Vec<u8>>(),
        ))
    }
}

/// The narrowest width (8, 16, 32 or 64 bits) of a circuit (its JSON) over columns with the
/// declared `bounds` (column id → stored-integer bounds): the keyhost's check, run by the client.
#[pyfunction]
pub fn circuit_bits(circuit: &str, bounds: HashMap<i64, (i64, i64)>) -> PyResult<u32> {
    let c: Circuit =
        serde_json::from_str(circuit).map_err(|e| GhostError::new_err(format!("malformed circuit: {e}")))?;
    let b = c
        .inputs
        .iter()
        .map(|i| {
            let terms: Vec<_> = i
                .terms
                .iter()
                .map(|t| (t.weight, bounds.get(&t.column_id).copied()))
                .collect();
            input_bounds(&terms, i.offset)
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| GhostError::new_err(format!("gp.compute(): {e}")))?;
    let a = c
        .check(&b)
        .map_err(|e| GhostError::new_err(format!("gp.compute(): {e}")))?;
    Ok(a.bits)
}
