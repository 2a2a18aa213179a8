//! A minimal HTTP/1.1 client over `std::net::TcpStream` and a test keyhost harness.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ghostpii_core::{NumKey, RidSet, ValKey};
use ghostpii_keyhost::{spawn, Config, RunningKeyhost};
use serde_json::{json, Value};

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub body: Value,
    /// Status line and headers.
    pub head: String,
    /// The body as received (dechunked).
    pub bytes: Vec<u8>,
}

impl Resp {
    pub fn ok(self) -> Value {
        assert_eq!(self.status, 200, "unexpected response: {}", self.body);
        self.body
    }
    pub fn reason(&self) -> &str {
        self.body["error"]["reason"].as_str().unwrap_or("")
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(pos) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = usize::from_str_radix(std::str::from_utf8(&b[..pos]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[pos + 2..pos + 2 + size]);
        b = &b[pos + 2 + size + 2..];
    }
}

pub fn raw(url: &str, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> Resp {
    try_raw(url, method, path, token, body, &[]).unwrap()
}

/// [`raw`] with extra headers; an I/O error (e.g. the keyhost is gone) is returned.
pub fn try_raw(
    url: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> std::io::Result<Resp> {
    let body = body.unwrap_or("");
    let typed = !body.is_empty() || method == "POST" || method == "PUT";
    let content_type = typed.then_some("application/json");
    send(url, method, path, token, content_type, body.as_bytes(), headers)
}

/// A request with any body bytes and `Content-Type` (none if `None`).
pub fn send(
    url: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
    headers: &[(&str, &str)],
) -> std::io::Result<Resp> {
    let addr = url.strip_prefix("http://").unwrap();
    let mut s = TcpStream::connect(addr)?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(ct) = content_type {
        req.push_str(&format!("Content-Type: {ct}\r\nContent-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    let mut req = req.into_bytes();
    req.extend_from_slice(body);
    s.write_all(&req)?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "no HTTP response"))?;
    let head = String::from_utf8_lossy(&buf[..split]).to_string();
    let mut payload = buf[split + 4..].to_vec();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        payload = dechunk(&payload);
    }
    let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let json = !head.to_ascii_lowercase().contains(&format!(
        "content-type: {}",
        ghostpii_keyhost::answer_keys::payload::MEDIA_TYPE
    ));
    let body = if payload.is_empty() || !json {
        Value::Null
    } else {
        serde_json::from_slice(&payload)
            .unwrap_or_else(|_| panic!("non-JSON body ({status}): {}", String::from_utf8_lossy(&payload)))
    };
    Ok(Resp {
        status,
        body,
        head,
        bytes: payload,
    })
}

/// A keyhost on 127.0.0.1:0 over a temporary data dir, its state in `keyhost.db` or (in the
/// PostgreSQL run of the suite, `tests/api_pg.rs`) in a new PostgreSQL database.
pub struct Kh {
    pub dir: tempfile::TempDir,
    pub kh: Option<RunningKeyhost>,
    pub admin: String,
    /// The PostgreSQL connection string, or `None` on SQLite.
    pub database: Option<String>,
}

impl Kh {
    pub fn start() -> Kh {
        Self::start_with(ghostpii_keyhost::Limits::default())
    }

    /// A keyhost with the given resource limits.
    pub fn start_with(limits: ghostpii_keyhost::Limits) -> Kh {
        let dir = tempfile::tempdir().unwrap();
        let database = crate::backend::new_database();
        let kh = spawn(Config {
            limits,
            database: database.clone(),
            ..Config::new(dir.path().join("kh"), "127.0.0.1:0")
        })
        .unwrap();
        let admin = std::fs::read_to_string(kh.admin_token_path())
            .unwrap()
            .trim()
            .to_owned();
        Kh {
            dir,
            kh: Some(kh),
            admin,
            database,
        }
    }

    /// The configuration this keyhost was started with (default limits).
    pub fn config(&self) -> Config {
        Config {
            database: self.database.clone(),
            ..Config::new(self.data_dir(), "127.0.0.1:0")
        }
    }

    /// A direct connection to the keyhost's database (to inspect or tamper with it).
    pub fn db(&self) -> ghostpii_keyhost::db::Connection {
        let location = match &self.database {
            Some(url) => ghostpii_keyhost::db::Database::postgres(url.clone()),
            None => ghostpii_keyhost::db::Database::Sqlite(self.data_dir().join("keyhost.db")),
        };
        ghostpii_keyhost::db::open(&location).unwrap()
    }

    pub fn is_sqlite(&self) -> bool {
        self.database.is_none()
    }

    /// Offline verification of the audit chain (after the running keyhost, if any, integrated
    /// its queue: a read of the log does).
    pub fn verify(&self) -> ghostpii_keyhost::AuditVerification {
        if self.kh.is_some() {
            self.get(&self.admin, "/v1/audit/verify").ok();
        }
        ghostpii_keyhost::verify_audit(&self.data_dir(), self.database.as_deref()).unwrap()
    }

    /// Offline verification against a checkpoint, optionally with a pinned public key.
    pub fn verify_checkpoint(
        &self,
        checkpoint: &str,
        public_key: Option<&str>,
    ) -> Result<ghostpii_keyhost::AuditVerification, ghostpii_keyhost::KeyhostError> {
        ghostpii_keyhost::verify_audit_checkpoint(&self.data_dir(), self.database.as_deref(), checkpoint, public_key)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("kh")
    }

    pub fn restart(&mut self) {
        if let Some(k) = self.kh.take() {
            k.shutdown();
        }
        self.kh = Some(spawn(self.config()).unwrap());
    }

    pub fn url(&self) -> String {
        self.kh.as_ref().unwrap().url().to_owned()
    }

    pub fn id(&self) -> String {
        self.kh.as_ref().unwrap().keyhost_id().to_owned()
    }

    pub fn get(&self, token: &str, path: &str) -> Resp {
        raw(&self.url(), "GET", path, Some(token), None)
    }

    pub fn post(&self, token: &str, path: &str, body: Value) -> Resp {
        raw(&self.url(), "POST", path, Some(token), Some(&body.to_string()))
    }

    pub fn put(&self, token: &str, path: &str, body: Value) -> Resp {
        raw(&self.url(), "PUT", path, Some(token), Some(&body.to_string()))
    }

    pub fn delete(&self, token: &str, path: &str) -> Resp {
        raw(&self.url(), "DELETE", path, Some(token), None)
    }

    /// Create an identity and return a fresh token for it.
    pub fn identity(&self, name: &str, role: &str) -> String {
        self.post(&self.admin, "/v1/identities", json!({"name": name, "role": role}))
            .ok();
        self.post(&self.admin, "/v1/tokens", json!({"identity": name})).ok()["token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// The log index of a result's audit entry: its receipt checked with `POST /v1/audit/receipt`
    /// (which integrates the queue first), which must say `included`.
    pub fn audit_index(&self, token: &str, result: &Value) -> i64 {
        let c = self.post(token, "/v1/audit/receipt", result["receipt"].clone()).ok();
        assert_eq!(c["status"], "included", "{c}");
        assert_eq!(c["ok"], true, "{c}");
        c["audit_index"].as_i64().unwrap()
    }

    pub fn answer(&self, token: &str, requests: Value) -> Vec<Value> {
        let r = self.post(token, "/v1/answer-keys", json!({"requests": requests})).ok();
        r["results"].as_array().unwrap().clone()
    }
}

/// An owner, a dataset `patrons` with columns `income` (num, val) and `age` (num), 1000 rows,
/// and an analyst without grants.
pub struct World {
    pub kh: Kh,
    pub owner: String,
    pub analyst: String,
    pub dataset_id: i64,
    pub income: Column,
    pub age: Column,
    pub start: u64,
}

pub struct Column {
    pub id: i64,
    pub epoch: u32,
    pub num: NumKey,
    pub val: Option<ValKey>,
}

pub fn register(kh: &Kh, token: &str, dataset: &str, body: Value) -> Column {
    let r = kh.post(token, &format!("/v1/datasets/{dataset}/columns"), body).ok();
    let key = |f: &str| -> Option<[u8; 16]> {
        r["keys"][f]
            .as_str()
            .map(|s| B64.decode(s).unwrap().try_into().unwrap())
    };
    Column {
        id: r["column_id"].as_i64().unwrap(),
        epoch: r["epoch"].as_u64().unwrap() as u32,
        num: NumKey::from_bytes(&key("num").unwrap()),
        val: key("val").map(|k| ValKey::from_bytes(&k)),
    }
}

impl World {
    pub fn new() -> World {
        Self::new_with(ghostpii_keyhost::Limits::default())
    }

    /// The world on a keyhost with the given resource limits.
    pub fn new_with(limits: ghostpii_keyhost::Limits) -> World {
        let kh = Kh::start_with(limits);
        let owner = kh.identity("olivia", "owner");
        let analyst = kh.identity("analyst", "member");
        let ds = kh.post(&owner, "/v1/datasets", json!({"name": "patrons"})).ok();
        let dataset_id = ds["id"].as_i64().unwrap();
        let income = register(
            &kh,
            &owner,
            "patrons",
            json!({"name": "income", "dtype": "float64", "scale": 2, "bounds": [0, 100_000_000],
                   "facets": ["num", "val"]}),
        );
        let age = register(
            &kh,
            &owner,
            "patrons",
            json!({"name": "age", "dtype": "int64", "scale": 0, "bounds": null, "facets": ["num"]}),
        );
        let alloc = kh
            .post(
                &owner,
                "/v1/datasets/patrons/rids",
                json!({"count": 1000, "columns": [income.id, age.id]}),
            )
            .ok();
        let start = alloc["start"].as_u64().unwrap();
        World {
            kh,
            owner,
            analyst,
            dataset_id,
            income,
            age,
            start,
        }
    }

    pub fn rids(&self, n: u64) -> RidSet {
        RidSet::from_sorted(&(self.start..self.start + n).collect::<Vec<_>>())
    }

    pub fn sum(&self, rids: &RidSet, terms: &[(&Column, i64)]) -> Value {
        json!({
            "op": "sum",
            "dataset_id": self.dataset_id,
            "rids": rids.to_base64(),
            "terms": terms.iter().map(|(c, w)| json!({"column_id": c.id, "epoch": c.epoch, "weight": w}))
                .collect::<Vec<_>>(),
        })
    }

    pub fn decrypt(&self, rids: &RidSet, c: &Column, facet: &str) -> Value {
        json!({"op": "decrypt", "dataset_id": self.dataset_id, "column_id": c.id, "epoch": c.epoch,
               "facet": facet, "rids": rids.to_base64()})
    }

    pub fn grant(&self, column: &str, operation: &str, params: Value) -> Value {
        self.kh
            .post(
                &self.owner,
                "/v1/grants",
                json!({"identity": "analyst", "dataset": "patrons", "column": column,
                       "operation": operation, "params": params}),
            )
            .ok()
    }
}
