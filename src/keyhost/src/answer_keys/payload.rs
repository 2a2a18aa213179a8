//! How answers travel: JSON, or a binary frame that carries per-row byte fields raw.
//!
//! Per-row answers (pads, row keys: 16–32 bytes a row) are large; as base64 inside JSON they
//! cost a third more bytes and an encode, an escape scan and a decode on every hop. A client
//! that sends `Accept: application/vnd.ghostpii.answers` gets the binary frame instead:
//!
//! ```text
//! "GPAK"  version (u8, = 1)  json_len (u32 LE)  JSON {"results": [...]}  blob 0  blob 1 ...
//! ```
//!
//! In the JSON of a frame, a byte field is `{"$blob": i, "len": n}`: the i-th blob, n bytes,
//! the blobs back to back after the JSON in index order (the codec is `ghostpii_core::frame`,
//! shared with request frames). In a plain JSON response the same field is a base64 string.
//!
//! Idempotency records store a frame too (sealed), but without the bytes of deterministic
//! fields (pads and row keys are functions of the column key and the rids): those are marked
//! `{"$recompute": true}` and computed again for a retry, from the same request body, instead
//! of sealing and writing megabytes inside the audit transaction.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ghostpii_core::frame::{self, HEADER_LEN};
use serde_json::{json, Map, Value};
use zeroize::Zeroizing;

use crate::error::{ApiError, ApiResult};

/// The media type of the binary frame.
pub const MEDIA_TYPE: &str = frame::MEDIA_TYPE;

/// A byte field of one answer: its name in the result object and its bytes.
pub struct Blob {
    pub field: &'static str,
    pub bytes: Zeroizing<Vec<u8>>,
    /// A deterministic function of the descriptor: not kept in idempotency records.
    pub recompute: bool,
}

/// An answer as computed: its JSON fields and at most one byte field.
pub struct Computed {
    pub fields: Map<String, Value>,
    pub blob: Option<Blob>,
}

impl Computed {
    /// An answer of JSON fields only.
    pub fn json(v: Value) -> ApiResult<Self> {
        match v {
            Value::Object(fields) => Ok(Computed { fields, blob: None }),
            _ => Err(ApiError::internal("answer key", &"unexpected result shape")),
        }
    }

    /// An answer whose only field is `field`, of `bytes` that the descriptor determines (a
    /// retry recomputes them rather than reading them from the idempotency record).
    pub fn deterministic_bytes(field: &'static str, bytes: Zeroizing<Vec<u8>>) -> Self {
        Computed {
            fields: Map::new(),
            blob: Some(Blob {
                field,
                bytes,
                recompute: true,
            }),
        }
    }
}

/// The results of a batch, in descriptor order, with the byte field of each (if any).
#[derive(Default)]
pub struct Answered {
    pub results: Vec<Value>,
    pub blobs: Vec<Option<Blob>>,
    /// Read from an idempotency record: results (index, field) whose bytes must be recomputed.
    pub pending: Vec<(usize, &'static str)>,
}

impl Answered {
    pub fn push(&mut self, result: Value, blob: Option<Blob>) {
        self.results.push(result);
        self.blobs.push(blob);
    }

    /// Put the recomputed bytes of a pending field (see [`Answered::pending`]) in place.
    pub fn fill(&mut self, index: usize, blob: Blob) {
        self.pending.retain(|(i, _)| *i != index);
        if let Some(slot) = self.blobs.get_mut(index) {
            *slot = Some(blob);
        }
    }

    /// `{"results": [...]}` with every byte field as base64.
    pub fn into_json(self) -> ApiResult<Value> {
        if !self.pending.is_empty() {
            return Err(ApiError::internal("answer", &"recomputed fields are missing"));
        }
        let mut results = self.results;
        for (r, b) in results.iter_mut().zip(self.blobs) {
            if let (Value::Object(m), Some(b)) = (r, b) {
                m.insert(b.field.into(), Value::String(B64.encode(b.bytes.as_slice())));
            }
        }
        Ok(json!({ "results": results }))
    }

    /// The binary frame (module docs).
    pub fn to_frame(&self) -> ApiResult<Zeroizing<Vec<u8>>> {
        self.frame(false)
    }

    /// The frame of an idempotency record: deterministic byte fields left out, marked.
    pub fn to_record(&self) -> ApiResult<Zeroizing<Vec<u8>>> {
        self.frame(true)
    }

    fn frame(&self, record: bool) -> ApiResult<Zeroizing<Vec<u8>>> {
        if !self.pending.is_empty() {
            return Err(ApiError::internal("answer frame", &"recomputed fields are missing"));
        }
        let kept = |b: &Blob| !(record && b.recompute);
        let err = |e: serde_json::Error| ApiError::internal("answer frame", &e);
        let total: usize = self
            .blobs
            .iter()
            .flatten()
            .filter(|b| kept(b))
            .map(|b| b.bytes.len())
            .sum();
        let mut out = Zeroizing::new(Vec::with_capacity(HEADER_LEN + 64 * self.results.len() + total));
        out.extend_from_slice(&frame::header(0)); // the JSON length, below
        out.extend_from_slice(b"{\"results\":[");
        let mut index = 0usize;
        for (i, (r, b)) in self.results.iter().zip(&self.blobs).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            match (r, b) {
                // only results with a byte field are copied (to mark it); the rest are written as they are
                (Value::Object(m), Some(b)) => {
                    let mut m = m.clone();
                    let marker = if kept(b) {
                        index += 1;
                        json!({"$blob": index - 1, "len": b.bytes.len()})
                    } else {
                        json!({"$recompute": true})
                    };
                    m.insert(b.field.into(), marker);
                    serde_json::to_writer(&mut *out, &m).map_err(err)?;
                }
                _ => serde_json::to_writer(&mut *out, r).map_err(err)?,
            }
        }
        out.extend_from_slice(b"]}");
        let json_len = u32::try_from(out.len() - HEADER_LEN).map_err(|e| ApiError::internal("answer frame", &e))?;
        out[..HEADER_LEN].copy_from_slice(&frame::header(json_len));
        for b in self.blobs.iter().flatten().filter(|b| kept(b)) {
            out.extend_from_slice(&b.bytes);
        }
        Ok(out)
    }

    /// Read a frame written by [`Answered::to_frame`] (idempotency records).
    pub fn from_frame(bytes: &[u8]) -> ApiResult<Self> {
        let bad = |w: &str| ApiError::internal("answer frame", &w);
        let (mut head, blobs) = frame::decode(bytes).map_err(|e| ApiError::internal("answer frame", &e))?;
        let Some(Value::Array(results)) = head.get_mut("results").map(Value::take) else {
            return Err(bad("no results"));
        };
        let mut out = Answered::default();
        for (i, mut r) in results.into_iter().enumerate() {
            let mut blob = None;
            if let Value::Object(m) = &mut r {
                if let Some(name) = field_where(m, |v| v.get("$recompute").is_some()) {
                    m.remove(&name);
                    let field = field_name(&name).ok_or_else(|| bad("unknown blob field"))?;
                    out.pending.push((i, field));
                }
                if let Some(name) = field_where(m, |v| frame::marker(v).is_some()) {
                    let index = m
                        .remove(&name)
                        .and_then(|v| frame::marker(&v)?.ok())
                        .and_then(|mk| usize::try_from(mk.index).ok())
                        .ok_or_else(|| bad("malformed blob marker"))?;
                    let bytes = blobs.get(index).ok_or_else(|| bad("short blob"))?;
                    blob = Some(Blob {
                        field: field_name(&name).ok_or_else(|| bad("unknown blob field"))?,
                        bytes: Zeroizing::new(bytes.to_vec()),
                        recompute: false,
                    });
                }
            }
            out.push(r, blob);
        }
        Ok(out)
    }
}

/// The name of the first field of `m` whose value satisfies `f`.
fn field_where(m: &Map<String, Value>, f: impl Fn(&Value) -> bool) -> Option<String> {
    m.iter().find(|(_, v)| f(v)).map(|(k, _)| k.clone())
}

/// The byte fields answers have (a frame names them as strings).
fn field_name(name: &str) -> Option<&'static str> {
    ["pads", "keys"].into_iter().find(|f| *f == name)
}

/// Whether a request's `Accept` header asks for the binary frame.
pub fn wants_frame(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| {
        a.split(',')
            .any(|t| t.split(';').next().map(str::trim) == Some(MEDIA_TYPE))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Answered {
        let mut a = Answered::default();
        a.push(
            json!({"ok": true, "receipt": {"audit_index": 1}}),
            Some(Blob {
                field: "pads",
                bytes: Zeroizing::new(vec![1, 2, 3]),
                recompute: true,
            }),
        );
        a.push(json!({"ok": false, "reason": "min_rows"}), None);
        a.push(
            json!({"ok": true, "key": "5"}),
            Some(Blob {
                field: "keys",
                bytes: Zeroizing::new(vec![9; 32]),
                recompute: false,
            }),
        );
        a
    }

    #[test]
    fn frames_round_trip_and_json_carries_base64() {
        let frame = sample().to_frame().unwrap();
        assert_eq!(&frame[..4], b"GPAK");
        let back = Answered::from_frame(&frame).unwrap();
        assert_eq!(back.into_json().unwrap(), sample().into_json().unwrap());
        let j = sample().into_json().unwrap();
        assert_eq!(j["results"][0]["pads"], "AQID");
        assert!(j["results"][1].get("pads").is_none());
    }

    /// The response frame, byte for byte (the Python client reads it: it must not change).
    #[test]
    fn frames_are_written_exactly_as_documented() {
        let json = concat!(
            r#"{"results":[{"ok":true,"pads":{"$blob":0,"len":3},"receipt":{"audit_index":1}},"#,
            r#"{"ok":false,"reason":"min_rows"},{"key":"5","keys":{"$blob":1,"len":32},"ok":true}]}"#
        );
        let mut want = b"GPAK\x01".to_vec();
        want.extend_from_slice(&(json.len() as u32).to_le_bytes());
        want.extend_from_slice(json.as_bytes());
        want.extend_from_slice(&[1, 2, 3]);
        want.extend_from_slice(&[9; 32]);
        assert_eq!(*sample().to_frame().unwrap(), want);
    }

    #[test]
    fn records_leave_out_deterministic_bytes_and_name_them() {
        let record = sample().to_record().unwrap();
        let json_len = u32::from_le_bytes(record[5..9].try_into().unwrap()) as usize;
        assert_eq!(
            &record[HEADER_LEN + json_len..],
            &[9u8; 32][..],
            "only the stored blob follows"
        );
        let mut back = Answered::from_frame(&record).unwrap();
        assert_eq!(back.pending, vec![(0, "pads")]);
        assert!(back.to_frame().is_err(), "a record with missing bytes is never sent");
        back.fill(
            0,
            Blob {
                field: "pads",
                bytes: Zeroizing::new(vec![1, 2, 3]),
                recompute: true,
            },
        );
        assert_eq!(back.into_json().unwrap(), sample().into_json().unwrap());
    }

    #[test]
    fn truncated_or_padded_frames_are_refused() {
        let frame = sample().to_frame().unwrap();
        assert!(Answered::from_frame(&frame[..frame.len() - 1]).is_err());
        let mut longer = frame.to_vec();
        longer.push(0);
        assert!(Answered::from_frame(&longer).is_err());
        assert!(Answered::from_frame(b"GPAK").is_err());
    }

    #[test]
    fn accept_headers_are_parsed() {
        assert!(wants_frame(Some(MEDIA_TYPE)));
        assert!(wants_frame(Some(
            "application/json, application/vnd.ghostpii.answers;q=0.9"
        )));
        assert!(!wants_frame(Some("application/json")));
        assert!(!wants_frame(None));
    }
}
