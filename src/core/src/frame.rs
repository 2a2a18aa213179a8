//! The binary frame of ghostpii's answer-key exchanges: JSON with byte fields carried raw.
//!
//! ```text
//! "GPAK"  version (u8, = 1)  json_len (u32 LE)  JSON  blob 0  blob 1 ...
//! ```
//!
//! In the JSON, a byte field is a *blob marker* `{"$blob": i, "len": n}` (exactly these two
//! keys): the i-th blob, n bytes. Markers may stand anywhere in the JSON tree, in any order;
//! their indices are exactly `0..k`, each once, and the blobs follow the JSON back to back in
//! index order (blob i starts where blob i − 1 ends), filling the rest of the frame exactly.
//! [`decode`] checks all of it before handing out a byte; [`encode`] writes only frames that
//! [`decode`] accepts.
//!
//! Responses of `POST /v1/answer-keys` use this frame (`Accept: application/vnd.ghostpii.answers`),
//! and so may its requests (`Content-Type` of the same type), whose rid sets then travel raw.

use serde_json::Value;
use thiserror::Error;

/// The media type of a frame.
pub const MEDIA_TYPE: &str = "application/vnd.ghostpii.answers";
/// The first four bytes of every frame.
pub const MAGIC: &[u8; 4] = b"GPAK";
/// The frame version this code reads and writes.
pub const VERSION: u8 = 1;
/// Magic, version and JSON length.
pub const HEADER_LEN: usize = 9;

/// Why bytes are not a well-formed frame. Each message names the problem.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    #[error("the frame is {0} bytes, shorter than its {HEADER_LEN}-byte header")]
    TooShort(usize),
    #[error("the frame does not start with the magic bytes \"GPAK\"")]
    BadMagic,
    #[error("frame version {0} is not supported (version {VERSION} is)")]
    UnsupportedVersion(u8),
    #[error(
        "the header's JSON length {json_len} runs past the end of the frame ({available} bytes follow the header)"
    )]
    JsonPastEnd { json_len: u64, available: usize },
    #[error("the JSON of {0} bytes does not fit the header's 32-bit length")]
    JsonTooLong(usize),
    #[error("the frame's JSON does not parse: {0}")]
    Json(String),
    #[error("malformed blob marker: {0}")]
    BadMarker(String),
    #[error("blob {0} is marked more than once")]
    DuplicateIndex(u64),
    #[error("blob index {index} is out of range: the {count} markers must name blobs 0..{count}, each once")]
    IndexOutOfRange { index: u64, count: usize },
    #[error("the JSON marks {marked} blobs but {given} are given")]
    BlobCount { marked: usize, given: usize },
    #[error("blob {index} ({len} bytes, from byte {start} after the JSON) runs past the end of the frame ({available} bytes follow the JSON)")]
    BlobPastEnd {
        index: usize,
        len: u64,
        start: usize,
        available: usize,
    },
    #[error("{trailing} bytes follow the last blob: the blobs' lengths add up to {declared} of the {available} bytes after the JSON")]
    TrailingBytes {
        trailing: usize,
        declared: usize,
        available: usize,
    },
    #[error("blob {index} is marked with {marked} bytes but {given} bytes are given for it")]
    LengthMismatch { index: usize, marked: u64, given: usize },
}

/// A blob marker: the index of its blob and the blob's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    pub index: u64,
    pub len: u64,
}

/// The marker `v` is, if it is one: `None` for a value that is not an object with a `"$blob"`
/// key, an error for such an object that is not exactly `{"$blob": i, "len": n}` (integers).
pub fn marker(v: &Value) -> Option<Result<Marker, FrameError>> {
    let m = v.as_object()?;
    let index = m.get("$blob")?;
    let bad = |what: &str| Some(Err(FrameError::BadMarker(what.to_owned())));
    let Some(index) = index.as_u64() else {
        return bad("\"$blob\" is not a non-negative integer");
    };
    let Some(len) = m.get("len").and_then(Value::as_u64) else {
        return bad("\"len\" is missing or not a non-negative integer");
    };
    if m.len() != 2 {
        return bad("a marker has no keys but \"$blob\" and \"len\"");
    }
    Some(Ok(Marker { index, len }))
}

/// Every blob marker in the JSON tree, in document order (a JSON value with no marker gives
/// none; a malformed marker is an error).
pub fn markers(json: &Value) -> Result<Vec<Marker>, FrameError> {
    let mut out = Vec::new();
    collect(json, &mut out)?;
    Ok(out)
}

fn collect(v: &Value, out: &mut Vec<Marker>) -> Result<(), FrameError> {
    if let Some(m) = marker(v) {
        out.push(m?);
        return Ok(());
    }
    match v {
        Value::Array(a) => a.iter().try_for_each(|x| collect(x, out)),
        Value::Object(m) => m.values().try_for_each(|x| collect(x, out)),
        _ => Ok(()),
    }
}

/// The lengths of blobs `0..k` from the `k` markers: every index in `0..k` exactly once.
fn lengths_by_index(markers: &[Marker]) -> Result<Vec<u64>, FrameError> {
    let count = markers.len();
    let mut lens: Vec<Option<u64>> = vec![None; count];
    for m in markers {
        let slot = usize::try_from(m.index)
            .ok()
            .and_then(|i| lens.get_mut(i))
            .ok_or(FrameError::IndexOutOfRange { index: m.index, count })?;
        if slot.replace(m.len).is_some() {
            return Err(FrameError::DuplicateIndex(m.index));
        }
    }
    // k markers, each index below k and none twice: every index is there
    Ok(lens.into_iter().flatten().collect())
}

/// The header of a frame whose JSON is `json_len` bytes long.
pub fn header(json_len: u32) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..4].copy_from_slice(MAGIC);
    h[4] = VERSION;
    h[5..].copy_from_slice(&json_len.to_le_bytes());
    h
}

/// A frame of `json` and `blobs`: refused unless the markers in `json` name exactly the blobs
/// `0..blobs.len()` with their lengths, so that [`decode`] gives back the same JSON and blobs.
pub fn encode(json: &Value, blobs: &[&[u8]]) -> Result<Vec<u8>, FrameError> {
    let lens = lengths_by_index(&markers(json)?)?;
    if lens.len() != blobs.len() {
        return Err(FrameError::BlobCount {
            marked: lens.len(),
            given: blobs.len(),
        });
    }
    for (index, (&marked, b)) in lens.iter().zip(blobs).enumerate() {
        if u64::try_from(b.len()).ok() != Some(marked) {
            return Err(FrameError::LengthMismatch {
                index,
                marked,
                given: b.len(),
            });
        }
    }
    let text = serde_json::to_vec(json).map_err(|e| FrameError::Json(e.to_string()))?;
    let json_len = u32::try_from(text.len()).map_err(|_| FrameError::JsonTooLong(text.len()))?;
    let total = blobs.iter().map(|b| b.len()).sum::<usize>();
    let mut out = Vec::with_capacity(HEADER_LEN + text.len() + total);
    out.extend_from_slice(&header(json_len));
    out.extend_from_slice(&text);
    blobs.iter().for_each(|b| out.extend_from_slice(b));
    Ok(out)
}

/// The JSON bytes of a frame and the bytes after them, after checking the header.
pub fn split(frame: &[u8]) -> Result<(&[u8], &[u8]), FrameError> {
    if frame.len() < HEADER_LEN {
        return Err(FrameError::TooShort(frame.len()));
    }
    let (head, rest) = frame.split_at(HEADER_LEN);
    if &head[..4] != MAGIC {
        return Err(FrameError::BadMagic);
    }
    if head[4] != VERSION {
        return Err(FrameError::UnsupportedVersion(head[4]));
    }
    let json_len = u32::from_le_bytes([head[5], head[6], head[7], head[8]]);
    let past_end = FrameError::JsonPastEnd {
        json_len: u64::from(json_len),
        available: rest.len(),
    };
    let json_len = usize::try_from(json_len).map_err(|_| past_end.clone())?;
    if json_len > rest.len() {
        return Err(past_end);
    }
    Ok(rest.split_at(json_len))
}

/// Read a frame: its JSON (markers left in place) and its blobs by index, every rule of the
/// module docs checked (no marker without its bytes, no byte without its marker). Untrusted
/// lengths are never added up: each is compared with the bytes that remain.
pub fn decode(frame: &[u8]) -> Result<(Value, Vec<&[u8]>), FrameError> {
    let (text, after_json) = split(frame)?;
    let json: Value = serde_json::from_slice(text).map_err(|e| FrameError::Json(e.to_string()))?;
    let lens = lengths_by_index(&markers(&json)?)?;
    let available = after_json.len();
    let mut rest = after_json;
    let mut blobs = Vec::with_capacity(lens.len());
    for (index, &len) in lens.iter().enumerate() {
        let n = usize::try_from(len)
            .ok()
            .filter(|&n| n <= rest.len())
            .ok_or(FrameError::BlobPastEnd {
                index,
                len,
                start: available - rest.len(),
                available,
            })?;
        let (blob, tail) = rest.split_at(n);
        blobs.push(blob);
        rest = tail;
    }
    if !rest.is_empty() {
        return Err(FrameError::TrailingBytes {
            trailing: rest.len(),
            declared: available - rest.len(),
            available,
        });
    }
    Ok((json, blobs))
}

/// Whether a `Content-Type` value names the frame's media type (parameters allowed, case
/// ignored as media types are).
pub fn is_media_type(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case(MEDIA_TYPE))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A frame of `json` (as written) and `rest` after it, with the right header.
    fn raw(json: &str, rest: &[u8]) -> Vec<u8> {
        let mut f = header(json.len() as u32).to_vec();
        f.extend_from_slice(json.as_bytes());
        f.extend_from_slice(rest);
        f
    }

    #[test]
    fn frames_round_trip_with_markers_anywhere_in_any_order() {
        let j = json!({"requests": [
            {"op": "sums", "groups": ["AQAF", {"$blob": 1, "len": 2}, {"$blob": 0, "len": 3}]},
            {"op": "pads", "rids": {"$blob": 2, "len": 0}, "nested": [[{"$blob": 3, "len": 1}]]},
        ]});
        let blobs: [&[u8]; 4] = [b"abc", b"de", b"", b"f"];
        let f = encode(&j, &blobs).unwrap();
        assert_eq!(&f[..5], b"GPAK\x01");
        assert_eq!(&f[f.len() - 6..], b"abcdef", "blobs in index order, back to back");
        let (back, got) = decode(&f).unwrap();
        assert_eq!(back, j);
        assert_eq!(got, blobs);
        // no markers: no blobs
        let plain = encode(&json!({"requests": []}), &[]).unwrap();
        assert_eq!(decode(&plain).unwrap(), (json!({"requests": []}), vec![]));
    }

    #[test]
    fn the_encoder_refuses_markers_that_do_not_match_the_blobs() {
        let j = json!([{"$blob": 0, "len": 2}]);
        assert_eq!(
            encode(&j, &[b"ab", b"c"]),
            Err(FrameError::BlobCount { marked: 1, given: 2 })
        );
        assert_eq!(
            encode(&j, &[b"abc"]),
            Err(FrameError::LengthMismatch {
                index: 0,
                marked: 2,
                given: 3
            })
        );
        assert!(encode(&j, &[b"ab"]).is_ok());
    }

    #[test]
    fn headers_are_checked() {
        let good = raw("{}", b"");
        assert!(decode(&good).is_ok());
        assert_eq!(decode(&good[..8]), Err(FrameError::TooShort(8)));
        assert_eq!(decode(b""), Err(FrameError::TooShort(0)));
        let mut bad = good.clone();
        bad[0] = b'X';
        assert_eq!(decode(&bad), Err(FrameError::BadMagic));
        let mut v2 = good.clone();
        v2[4] = 2;
        assert_eq!(decode(&v2), Err(FrameError::UnsupportedVersion(2)));
        let mut long = good.clone();
        long[5..9].copy_from_slice(&3u32.to_le_bytes());
        assert_eq!(
            decode(&long),
            Err(FrameError::JsonPastEnd {
                json_len: 3,
                available: 2
            })
        );
        long[5..9].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(decode(&long), Err(FrameError::JsonPastEnd { .. })));
    }

    #[test]
    fn json_that_does_not_parse_is_refused() {
        assert!(matches!(decode(&raw("{\"a\":", b"")), Err(FrameError::Json(_))));
        // the JSON is exactly json_len bytes: what follows is not JSON but blobs
        assert!(matches!(
            decode(&raw("{}", b"}")),
            Err(FrameError::TrailingBytes { trailing: 1, .. })
        ));
    }

    #[test]
    fn malformed_markers_are_refused() {
        for m in [
            r#"{"$blob": -1, "len": 1}"#,
            r#"{"$blob": "0", "len": 1}"#,
            r#"{"$blob": 0}"#,
            r#"{"$blob": 0, "len": 1.5}"#,
            r#"{"$blob": 0, "len": 1, "extra": true}"#,
        ] {
            let f = raw(&format!("[{m}]"), b"x");
            assert!(matches!(decode(&f), Err(FrameError::BadMarker(_))), "{m}");
        }
    }

    #[test]
    fn indices_are_exactly_zero_to_k_each_once() {
        let dup = raw(r#"[{"$blob":0,"len":1},{"$blob":0,"len":1}]"#, b"ab");
        assert_eq!(decode(&dup), Err(FrameError::DuplicateIndex(0)));
        // blob 1 is missing: two markers must name 0 and 1
        let gap = raw(r#"[{"$blob":0,"len":1},{"$blob":2,"len":1}]"#, b"ab");
        assert_eq!(decode(&gap), Err(FrameError::IndexOutOfRange { index: 2, count: 2 }));
        let huge = raw(r#"[{"$blob":18446744073709551615,"len":1}]"#, b"a");
        assert_eq!(
            decode(&huge),
            Err(FrameError::IndexOutOfRange {
                index: u64::MAX,
                count: 1
            })
        );
    }

    #[test]
    fn lengths_must_fill_the_rest_of_the_frame_exactly() {
        // a marker whose bytes are not all there
        let short = raw(r#"[{"$blob":0,"len":2},{"$blob":1,"len":2}]"#, b"abc");
        assert_eq!(
            decode(&short),
            Err(FrameError::BlobPastEnd {
                index: 1,
                len: 2,
                start: 2,
                available: 3
            })
        );
        // a marker without any bytes after the JSON
        let missing = raw(r#"[{"$blob":0,"len":1}]"#, b"");
        assert!(matches!(
            decode(&missing),
            Err(FrameError::BlobPastEnd { index: 0, .. })
        ));
        let trailing = raw(r#"[{"$blob":0,"len":1}]"#, b"ab");
        assert_eq!(
            decode(&trailing),
            Err(FrameError::TrailingBytes {
                trailing: 1,
                declared: 1,
                available: 2
            })
        );
        // lengths that would overflow a u64 (or a usize) when added
        let max = u64::MAX;
        let huge = raw(
            &format!(r#"[{{"$blob":0,"len":{max}}},{{"$blob":1,"len":{max}}}]"#),
            b"ab",
        );
        assert!(matches!(decode(&huge), Err(FrameError::BlobPastEnd { index: 0, .. })));
        // the blobs are taken in index order, not in the order of the markers
        let swapped = raw(r#"[{"$blob":1,"len":1},{"$blob":0,"len":2}]"#, b"abc");
        let (_, blobs) = decode(&swapped).unwrap();
        assert_eq!(blobs, [&b"ab"[..], &b"c"[..]]);
    }

    #[test]
    fn media_types_allow_parameters() {
        assert!(is_media_type(MEDIA_TYPE));
        assert!(is_media_type("application/vnd.ghostpii.answers; version=1"));
        assert!(is_media_type("Application/VND.ghostpii.Answers"));
        assert!(!is_media_type("application/json"));
        assert!(!is_media_type("application/vnd.ghostpii.answers+json"));
        assert!(!is_media_type(""));
    }
}
