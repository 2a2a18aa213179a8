//! Reading the keyhost's answers: the binary frame (or JSON), refusals as typed errors.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ghostpii_core::frame;
use serde_json::{Map, Value};

use super::http::Response;

/// The media type of the keyhost's binary frames (answers, and requests with raw rid sets).
pub const FRAME: &str = frame::MEDIA_TYPE;

/// One granted answer: its JSON fields and its byte field (pads, row keys), if any.
pub struct Answer {
    pub fields: Map<String, Value>,
    pub blob: Option<Vec<u8>>,
}

impl Answer {
    /// A base64 field (a comparison or match token).
    pub fn b64(&self, name: &str) -> Result<Vec<u8>, Refusal> {
        let s = self
            .fields
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| Refusal::internal(format!("the keyhost's answer has no '{name}'")))?;
        B64.decode(s)
            .map_err(|e| Refusal::internal(format!("the keyhost's '{name}' is not base64: {e}")))
    }
}

/// A refusal or failure, named by the Python error class it becomes.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// `PermissionDenied`, `BudgetExhausted`, `AuthenticationError` or `KeyhostError`.
    pub class: &'static str,
    /// The keyhost's stable reason code (`min_rows`, `timeout`, ...).
    pub reason: String,
    pub message: String,
    /// The grant a `permission_denied` refusal names (its JSON), if any.
    pub missing_grant: Option<Value>,
}

impl Refusal {
    pub fn internal(message: String) -> Refusal {
        Refusal {
            class: "KeyhostError",
            reason: "internal".into(),
            message,
            missing_grant: None,
        }
    }

    fn from_error(e: &Value, status: Option<u16>, default_reason: &str) -> Refusal {
        let reason = e
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or(default_reason)
            .to_string();
        Refusal {
            class: class_for(&reason, status),
            message: e
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("refused")
                .to_string(),
            reason,
            missing_grant: e.get("missing_grant").filter(|g| !g.is_null()).cloned(),
        }
    }
}

impl std::fmt::Display for Refusal {
    /// `Name: message`, or `Name[reason]: message` where the class does not imply the reason:
    /// the form `ghostpii.errors.from_polars` turns back into the typed error. (The message
    /// of a missing grant names the grant.)
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let implied = match self.class {
            "PermissionDenied" => "permission_denied",
            "BudgetExhausted" => "budget_exhausted",
            "AuthenticationError" => "unauthenticated",
            _ => "internal",
        };
        if self.reason == implied {
            write!(f, "{}: {}", self.class, self.message)
        } else {
            write!(f, "{}[{}]: {}", self.class, self.reason, self.message)
        }
    }
}

/// The Python error class of a keyhost reason: the protocol's one table of it
/// (`ghostpii_proto::Reason::error_class`; `ghostpii.errors.error_for` asks here too, through
/// `_internal.error_class`). An unknown reason is classed by its HTTP status.
pub fn class_for(reason: &str, status: Option<u16>) -> &'static str {
    ghostpii_proto::Reason::class_of(reason, status).name()
}

/// Every result of an answer-key response, or the first refusal among them.
pub fn read(resp: Response) -> Result<Vec<Answer>, Refusal> {
    if resp.status >= 400 {
        return Err(http_error(&resp));
    }
    let answers = if resp.body.starts_with(frame::MAGIC) {
        read_frame(&resp.body)?
    } else {
        read_json(&resp.body)?
    };
    if let Some(refused) = answers.iter().find(|a| a.fields.get("ok") != Some(&Value::Bool(true))) {
        return Err(Refusal::from_error(
            &Value::Object(refused.fields.clone()),
            Some(403),
            "internal",
        ));
    }
    Ok(answers)
}

/// The typed error of an HTTP error response (`{"error": {...}}`).
pub fn http_error(resp: &Response) -> Refusal {
    match serde_json::from_slice::<Value>(&resp.body)
        .ok()
        .and_then(|v| v.get("error").cloned())
    {
        Some(e) => Refusal::from_error(&e, Some(resp.status), "internal"),
        None => Refusal::internal(format!(
            "keyhost answered HTTP {}: {}",
            resp.status,
            String::from_utf8_lossy(&resp.body[..resp.body.len().min(200)])
        )),
    }
}

fn results_of(v: Value) -> Result<Vec<Value>, Refusal> {
    match v {
        Value::Object(mut m) => match m.remove("results") {
            Some(Value::Array(r)) => Ok(r),
            _ => Err(Refusal::internal("the keyhost's answer has no results".into())),
        },
        _ => Err(Refusal::internal("the keyhost's answer has no results".into())),
    }
}

fn object(r: Value) -> Result<Map<String, Value>, Refusal> {
    match r {
        Value::Object(m) => Ok(m),
        _ => Err(Refusal::internal(
            "a result of the keyhost's answer is not an object".into(),
        )),
    }
}

fn read_json(body: &[u8]) -> Result<Vec<Answer>, Refusal> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| Refusal::internal(format!("the keyhost's answer is not JSON: {e}")))?;
    results_of(v)?
        .into_iter()
        .map(|r| {
            Ok(Answer {
                fields: object(r)?,
                blob: None,
            })
        })
        .collect()
}

/// The binary answer frame (`ghostpii_core::frame`): blob markers replaced by their bytes.
fn read_frame(body: &[u8]) -> Result<Vec<Answer>, Refusal> {
    let (json, blobs) =
        frame::decode(body).map_err(|e| Refusal::internal(format!("the keyhost's answer frame is malformed: {e}")))?;
    let mut out = Vec::new();
    for r in results_of(json)? {
        let mut fields = object(r)?;
        let marked = fields.iter().find_map(|(k, v)| Some((k.clone(), frame::marker(v)?)));
        let blob = match marked {
            Some((name, Ok(m))) => {
                let bytes = usize::try_from(m.index)
                    .ok()
                    .and_then(|i| blobs.get(i))
                    .ok_or_else(|| Refusal::internal("the keyhost's answer frame lacks a blob".into()))?;
                fields.remove(&name);
                Some(bytes.to_vec())
            }
            Some((_, Err(e))) => {
                return Err(Refusal::internal(format!(
                    "bad blob marker in the keyhost's answer: {e}"
                )))
            }
            None => None,
        };
        out.push(Answer { fields, blob });
    }
    Ok(out)
}
