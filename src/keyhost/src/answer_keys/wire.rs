//! How requests travel: a JSON body `{"requests": [...]}` whose rid sets are base64 strings of
//! their wire encoding (`ghostpii_core::rid_encoding`), or the same JSON in a binary frame
//! (`Content-Type: application/vnd.ghostpii.answers`, `ghostpii_core::frame`), where any rid
//! set may instead be a blob marker `{"$blob": i, "len": n}`: its encoding raw, the i-th blob
//! after the JSON. A descriptor may mix both. A filtered million rows then travel as their
//! encoding, not a third larger and decoded once more.
//!
//! A marker is resolved to its blob's bytes when its descriptor is decoded (`decode` in
//! `mod.rs`), so what follows sees the same bytes either way and bounds them the same way
//! (counted from the encoding before anything is built, `intake.rs`). Blob markers in a JSON
//! body are refused (400), as is a malformed frame, naming the problem.

use axum::body::Bytes;
use ghostpii_core::frame::{self, Marker};
use ghostpii_core::{CoreError, RidSet};
use serde::de::{Deserializer, Error as _, Unexpected};
use serde::Deserialize;
use serde_json::Value;

use crate::error::{ApiError, ApiResult};

/// A request body, parsed: its descriptors and, for a frame, its blobs (slices of the body).
#[derive(Default)]
pub struct Batch {
    pub requests: Vec<Value>,
    pub blobs: Vec<Bytes>,
}

#[derive(Deserialize)]
struct Requests {
    requests: Vec<Value>,
}

impl Batch {
    /// The descriptors of a JSON body, which may hold no blob marker.
    pub fn from_json(requests: Vec<Value>) -> ApiResult<Batch> {
        for (i, r) in requests.iter().enumerate() {
            if !frame::markers(r).is_ok_and(|m| m.is_empty()) {
                return Err(ApiError::invalid(format!(
                    "descriptor {i} holds a blob marker (an object with a \"$blob\" key): blob markers \
                     are read only in a request frame (Content-Type: {}); in JSON, a rid set is a \
                     base64 string",
                    frame::MEDIA_TYPE
                )));
            }
        }
        Ok(Batch {
            requests,
            blobs: Vec::new(),
        })
    }

    /// A request frame: header, JSON `{"requests": [...]}`, markers and blobs checked.
    pub fn from_frame(body: Bytes) -> ApiResult<Batch> {
        let malformed = |e: &dyn std::fmt::Display| ApiError::invalid(format!("malformed request frame: {e}"));
        let (json, blobs) = frame::decode(&body).map_err(|e| malformed(&e))?;
        let Requests { requests } = serde_json::from_value(json)
            .map_err(|e| malformed(&format!("its JSON is not {{\"requests\": [descriptor, ...]}}: {e}")))?;
        let blobs = blobs.into_iter().map(|b| body.slice_ref(b)).collect();
        Ok(Batch { requests, blobs })
    }
}

/// A rid set as a descriptor carries it: base64 of its wire encoding, or a blob marker, which
/// [`WireRids::resolve`] turns into the blob's bytes.
#[derive(Debug)]
pub(super) enum WireRids {
    Base64(String),
    Marker(Marker),
    Raw(Bytes),
}

impl<'de> Deserialize<'de> for WireRids {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let expected = &"a rid set: base64 of its wire encoding, or in a request frame a blob marker \
                         {\"$blob\": i, \"len\": n}";
        let v = Value::deserialize(d)?;
        if let Value::String(s) = v {
            return Ok(WireRids::Base64(s));
        }
        match frame::marker(&v) {
            Some(Ok(m)) => Ok(WireRids::Marker(m)),
            Some(Err(e)) => Err(D::Error::custom(e)),
            None => Err(D::Error::invalid_type(unexpected(&v), expected)),
        }
    }
}

fn unexpected(v: &Value) -> Unexpected<'_> {
    match v {
        Value::Null => Unexpected::Unit,
        Value::Bool(b) => Unexpected::Bool(*b),
        Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => Unexpected::Unsigned(u),
            (_, Some(i), _) => Unexpected::Signed(i),
            (_, _, f) => Unexpected::Float(f.unwrap_or(f64::NAN)),
        },
        Value::String(s) => Unexpected::Str(s),
        Value::Array(_) => Unexpected::Seq,
        Value::Object(_) => Unexpected::Map,
    }
}

impl WireRids {
    /// A marker → its blob's bytes (no copy); base64 stays as it is, decoded where it was before.
    pub(super) fn resolve(&mut self, blobs: &[Bytes]) -> ApiResult<()> {
        if let WireRids::Marker(m) = *self {
            let blob = usize::try_from(m.index)
                .ok()
                .and_then(|i| blobs.get(i))
                .filter(|b| u64::try_from(b.len()).ok() == Some(m.len))
                .ok_or_else(|| {
                    ApiError::invalid(format!("blob {} of {} bytes is not in the request", m.index, m.len))
                })?;
            *self = WireRids::Raw(blob.clone());
        }
        Ok(())
    }

    /// The wire encoding.
    pub(super) fn bytes(&self) -> ApiResult<Bytes> {
        match self {
            WireRids::Base64(s) => {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD
                    .decode(s)
                    .map(Bytes::from)
                    .map_err(|e| ApiError::invalid(format!("invalid rid set: rid set is not base64: {e}")))
            }
            WireRids::Raw(b) => Ok(b.clone()),
            WireRids::Marker(_) => Err(unresolved()),
        }
    }

    /// The set, refused if its encoding names more than `max_rids` rids (before it is built).
    pub(super) fn to_set_bounded(&self, max_rids: u64) -> Result<RidSet, CoreError> {
        match self {
            WireRids::Base64(s) => RidSet::from_base64_bounded(s, max_rids),
            WireRids::Raw(b) => RidSet::from_bytes_bounded(b, max_rids),
            WireRids::Marker(_) => Err(CoreError::InvalidRidSet("a blob marker was not resolved".into())),
        }
    }
}

fn unresolved() -> ApiError {
    ApiError::internal("request frame", &"a blob marker was not resolved")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rids(v: Value) -> Result<WireRids, serde_json::Error> {
        WireRids::deserialize(&v)
    }

    #[test]
    fn rid_sets_are_base64_or_markers_resolved_to_their_blob() {
        let set = RidSet::from_sorted(&[3, 4, 9]);
        let b64 = rids(json!(set.to_base64())).unwrap();
        assert_eq!(b64.to_set_bounded(3).unwrap(), set);
        assert!(b64.to_set_bounded(2).is_err(), "the bound holds for base64");
        let blobs = [Bytes::from_static(b"x"), Bytes::from(set.to_bytes())];
        let mut raw = rids(json!({"$blob": 1, "len": set.to_bytes().len()})).unwrap();
        assert!(raw.bytes().is_err(), "unresolved");
        raw.resolve(&blobs).unwrap();
        assert_eq!(raw.bytes().unwrap(), set.to_bytes());
        assert_eq!(raw.to_set_bounded(3).unwrap(), set);
        assert!(raw.to_set_bounded(2).is_err(), "the bound holds for blobs");
        let mut wrong_len = rids(json!({"$blob": 0, "len": 2})).unwrap();
        assert!(wrong_len.resolve(&blobs).is_err());
        let err = rids(json!(5)).unwrap_err().to_string();
        assert!(
            err.starts_with("invalid type: integer `5`, expected a rid set"),
            "{err}"
        );
        assert!(rids(json!({"$blob": 0})).is_err());
    }

    #[test]
    fn json_bodies_hold_no_markers() {
        assert!(Batch::from_json(vec![json!({"op": "sum", "rids": "AQAF"})]).is_ok());
        let nested = json!({"op": "sums", "groups": ["AQAF", {"$blob": 0, "len": 3}]});
        let err = Batch::from_json(vec![json!({}), nested]).err().unwrap();
        assert!(
            err.message.starts_with("descriptor 1 holds a blob marker"),
            "{}",
            err.message
        );
        assert!(Batch::from_json(vec![json!({"x": {"$blob": "junk"}})]).is_err());
    }

    #[test]
    fn frames_give_their_descriptors_and_blobs() {
        let j = json!({"requests": [{"op": "pads", "rids": {"$blob": 0, "len": 2}}]});
        let body = Bytes::from(frame::encode(&j, &[b"ab"]).unwrap());
        let batch = Batch::from_frame(body).unwrap();
        assert_eq!(batch.requests, vec![j["requests"][0].clone()]);
        assert_eq!(batch.blobs, vec![Bytes::from_static(b"ab")]);
        let not_requests = Bytes::from(frame::encode(&json!([1]), &[]).unwrap());
        let err = Batch::from_frame(not_requests).err().unwrap();
        assert!(
            err.message.starts_with("malformed request frame: its JSON is not"),
            "{}",
            err.message
        );
        let err = Batch::from_frame(Bytes::from_static(b"GPAK")).err().unwrap();
        assert_eq!(err.status, axum::http::StatusCode::BAD_REQUEST);
    }
}
