//! The answer-key resolver, in Rust: one connection pool per keyhost session, used by the
//! Python `Session` for every request and by kernels that miss tokens or pads under a plain
//! `.collect()`, without going through Python (no GIL round trip, no Python callback).
//!
//! `gp.connect` (or `lf.ghost.collect`) makes a session the active one for its keyhost id
//! ([`activate`]); kernels look their column's keyhost up here. A kernel's fetch is one
//! request for everything that kernel call is missing, and planned queries
//! (`lf.ghost.collect`) fetch everything before the kernels run, so kernels do not ask at all.

mod answers;
pub mod http;
mod py;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};

use ghostpii_proto::descriptor::{Descriptor, Requests, Rids};

pub use answers::{Answer, Refusal};
pub use py::{error_class, refusal_err, KeyhostClient};

fn active() -> &'static Mutex<HashMap<String, Arc<http::Client>>> {
    static ACTIVE: OnceLock<Mutex<HashMap<String, Arc<http::Client>>>> = OnceLock::new();
    ACTIVE.get_or_init(Default::default)
}

/// Make `client` the one kernels use for `keyhost_id`.
pub fn activate(keyhost_id: &str, client: Arc<http::Client>) {
    if let Ok(mut a) = active().lock() {
        a.insert(keyhost_id.to_string(), client);
    }
}

fn client_for(keyhost_id: &str) -> Result<Arc<http::Client>, Refusal> {
    active()
        .lock()
        .map_err(|_| Refusal::internal("the resolver's session table is poisoned".into()))?
        .get(keyhost_id)
        .cloned()
        .ok_or_else(|| Refusal {
            class: "KeyhostError",
            reason: "no_session".into(),
            message: format!(
                "no session is connected to keyhost {keyhost_id:?}; use gp.connect(url, token) first, or run \
                 the query with lf.ghost.collect(session)"
            ),
            missing_grant: None,
        })
}

/// A fresh idempotency key (OS randomness), reused by the request's retries.
pub fn idempotency_key() -> String {
    let mut k = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut k);
    hex::encode(k)
}

/// Ask the keyhost `keyhost_id` for the answer keys of `descriptors`, in ONE request through
/// its active session; the first refusal is the error. Rid sets given as `blobs` (the
/// descriptors hold [`Rids::Blob`] markers for them) travel raw, in a request frame.
pub fn answer_keys(
    keyhost_id: &str,
    descriptors: Vec<Descriptor<Rids>>,
    blobs: &[&[u8]],
) -> Result<Vec<Answer>, Refusal> {
    let client = client_for(keyhost_id)?;
    let n = descriptors.len();
    let doc = serde_json::to_value(Requests { requests: descriptors })
        .map_err(|e| Refusal::internal(format!("cannot encode the request: {e}")))?;
    let (body, content_type) = if blobs.is_empty() {
        let b = serde_json::to_vec(&doc).map_err(|e| Refusal::internal(format!("cannot encode the request: {e}")))?;
        (b, "application/json")
    } else {
        let b = ghostpii_core::frame::encode(&doc, blobs)
            .map_err(|e| Refusal::internal(format!("cannot frame the request: {e}")))?;
        (b, answers::FRAME)
    };
    client.stats.answer_key_requests.fetch_add(1, Ordering::Relaxed);
    client.stats.descriptors.fetch_add(n as u64, Ordering::Relaxed);
    let key = idempotency_key();
    let req = http::Request {
        method: "POST",
        path: "/v1/answer-keys",
        body: Some(body.into()),
        content_type: Some(content_type),
        accept: Some(answers::FRAME),
        idempotency_key: Some(&key),
    };
    let resp = client.send(&req).map_err(|t| Refusal {
        class: "KeyhostError",
        reason: t.reason().into(),
        message: t.message().to_string(),
        missing_grant: None,
    })?;
    let out = answers::read(resp)?;
    if out.len() != n {
        return Err(Refusal::internal(format!(
            "the keyhost answered {} of {n} descriptors",
            out.len()
        )));
    }
    Ok(out)
}

/// A blob marker for the `index`-th of a request's raw fields.
pub fn blob_marker(index: usize, bytes: &[u8]) -> Rids {
    Rids::Blob {
        blob: index,
        len: bytes.len(),
    }
}

/// The base64 `token` of the answer to each item's descriptor, in item order: one request per
/// keyhost (`keyhost` of an item) for all of its items.
pub fn fetch_tokens<T>(
    items: &[T],
    keyhost: impl Fn(&T) -> &str,
    descriptor: impl Fn(&T) -> Descriptor<Rids>,
) -> Result<Vec<Vec<u8>>, String> {
    let mut out: Vec<Option<Vec<u8>>> = vec![None; items.len()];
    let mut keyhosts: Vec<&str> = items.iter().map(&keyhost).collect();
    keyhosts.sort_unstable();
    keyhosts.dedup();
    for kh in keyhosts {
        let idx: Vec<usize> = (0..items.len()).filter(|&i| keyhost(&items[i]) == kh).collect();
        let descriptors = idx.iter().map(|&i| descriptor(&items[i])).collect();
        let answers = answer_keys(kh, descriptors, &[]).map_err(|r| r.to_string())?;
        for (&i, a) in idx.iter().zip(&answers) {
            out[i] = Some(a.b64("token").map_err(|r| r.to_string())?);
        }
    }
    out.into_iter()
        .map(|t| t.ok_or_else(|| "the keyhost returned too few tokens".to_string()))
        .collect()
}
