//! Comparison tokens on the kernel side: a process-wide cache, a plan-scan collector and a
//! coalesced fallback fetch through the Rust resolver (`resolver.rs`).
//!
//! `lf.ghost.collect(session)` scans the plan (the output-type functions record every token the
//! plan needs), fetches them all in one keyhost request and inserts them here before collecting.
//! A kernel that still misses a token (plain `.collect()`) asks the keyhost through the active
//! session's resolver, once per (column epoch, constant): concurrent kernels wait on the same cell.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use ghostpii_proto::descriptor::{Descriptor, Rids};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

/// Which token: the column epoch and the stored-integer constant.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Need {
    pub keyhost: String,
    pub dataset_id: i64,
    pub column_id: i64,
    pub epoch: u32,
    pub constant: i64,
}

type Cell = Arc<OnceLock<Result<Vec<u8>, String>>>;

fn cache() -> &'static Mutex<HashMap<Need, Cell>> {
    static CACHE: OnceLock<Mutex<HashMap<Need, Cell>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

fn scan() -> &'static Mutex<Option<Vec<Need>>> {
    static SCAN: OnceLock<Mutex<Option<Vec<Need>>>> = OnceLock::new();
    SCAN.get_or_init(Default::default)
}

/// Record needs while a plan scan is active (called from output-type functions).
pub fn note_needs(needs: &[Need]) {
    if let Ok(mut s) = scan().lock() {
        if let Some(v) = s.as_mut() {
            v.extend(needs.iter().cloned());
        }
    }
}

fn need_to_py<'py>(py: Python<'py>, n: &Need) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("keyhost", &n.keyhost)?;
    d.set_item("dataset_id", n.dataset_id)?;
    d.set_item("column_id", n.column_id)?;
    d.set_item("epoch", n.epoch)?;
    d.set_item("constant", n.constant)?;
    Ok(d)
}

/// Ask the keyhosts for tokens through their active sessions (Rust resolver): one request
/// per keyhost for all missing needs.
fn fetch(needs: &[Need]) -> Result<Vec<Vec<u8>>, String> {
    crate::resolver::fetch_tokens(needs, |n| &n.keyhost, descriptor)
}

/// Tokens for all needs, fetching the missing ones (once each, coalesced across threads).
pub fn resolve(needs: &[Need]) -> Result<Vec<Vec<u8>>, String> {
    let cells: Vec<Cell> = {
        let mut c = cache().lock().map_err(|_| "token cache lock poisoned".to_string())?;
        needs.iter().map(|n| c.entry(n.clone()).or_default().clone()).collect()
    };
    let missing: Vec<usize> = (0..needs.len()).filter(|&i| cells[i].get().is_none()).collect();
    if !missing.is_empty() {
        // the first thread to initialise a cell fetches all missing needs in one call
        let wanted: Vec<Need> = missing.iter().map(|&i| needs[i].clone()).collect();
        let mut batch: Option<Result<Vec<Vec<u8>>, String>> = None;
        for (k, &i) in missing.iter().enumerate() {
            cells[i].get_or_init(|| {
                let b = batch.get_or_insert_with(|| fetch(&wanted));
                match b {
                    Ok(tokens) => tokens
                        .get(k)
                        .cloned()
                        .ok_or_else(|| "keyhost returned too few tokens".to_string()),
                    Err(e) => Err(e.clone()),
                }
            });
        }
        // failures are not cached: a later query may have the grant
        let mut c = cache().lock().map_err(|_| "token cache lock poisoned".to_string())?;
        for (n, cell) in needs.iter().zip(&cells) {
            if matches!(cell.get(), Some(Err(_))) {
                c.remove(n);
            }
        }
    }
    cells
        .iter()
        .map(|c| c.get().cloned().unwrap_or_else(|| Err("token was not fetched".into())))
        .collect()
}

fn need_from_py(d: &Bound<'_, PyAny>) -> PyResult<Need> {
    Ok(Need {
        keyhost: d.get_item("keyhost")?.extract()?,
        dataset_id: d.get_item("dataset_id")?.extract()?,
        column_id: d.get_item("column_id")?.extract()?,
        epoch: d.get_item("epoch")?.extract()?,
        constant: d.get_item("constant")?.extract()?,
    })
}

/// Start recording the tokens a plan needs.
pub fn begin_scan() {
    if let Ok(mut s) = scan().lock() {
        *s = Some(Vec::new());
    }
}

/// Stop recording; the needs not already cached (deduplicated, in order).
pub fn end_scan() -> Vec<Need> {
    let needs = scan().lock().ok().and_then(|mut s| s.take()).unwrap_or_default();
    let Ok(cached) = cache().lock() else {
        return needs;
    };
    let mut seen = std::collections::HashSet::new();
    needs
        .into_iter()
        .filter(|n| {
            let have = cached.get(n).map(|c| matches!(c.get(), Some(Ok(_)))).unwrap_or(false);
            !have && seen.insert(n.clone())
        })
        .collect()
}

/// Cache fetched tokens (same order as the needs).
pub fn insert(needs: &[Need], tokens: Vec<Vec<u8>>) {
    if let Ok(mut c) = cache().lock() {
        for (n, t) in needs.iter().zip(tokens) {
            let cell: Cell = Arc::new(OnceLock::new());
            let _ = cell.set(Ok(t));
            c.insert(n.clone(), cell);
        }
    }
}

/// The needs as Python dicts (what `PlannedTokens` ships to distributed workers).
pub fn needs_to_py<'py>(py: Python<'py>, needs: &[Need]) -> PyResult<Bound<'py, PyList>> {
    let out = PyList::empty(py);
    for n in needs {
        out.append(need_to_py(py, n)?)?;
    }
    Ok(out)
}

/// The compare descriptor of a need.
pub fn descriptor(n: &Need) -> Descriptor<Rids> {
    Descriptor::Compare {
        dataset_id: n.dataset_id,
        column_id: n.column_id,
        epoch: n.epoch,
        constant: n.constant,
    }
}

/// Insert fetched tokens (same order as the needs).
#[pyfunction]
pub fn insert_tokens(needs: Vec<Bound<'_, PyAny>>, tokens: Vec<Vec<u8>>) -> PyResult<()> {
    let needs = needs.iter().map(need_from_py).collect::<PyResult<Vec<_>>>()?;
    insert(&needs, tokens);
    Ok(())
}

/// Forget every cached token (e.g. after a grant change).
#[pyfunction]
pub fn clear_tokens() {
    if let Ok(mut c) = cache().lock() {
        c.clear();
    }
}
