//! One keyhost connection pool: keep-alive, timeouts, retries, typed transport failures.
//!
//! Retries follow what the keyhost makes safe:
//! - a connection that could not be opened, and answers 502/503/504, are retried for every
//!   request (nothing was processed), with a short exponential back-off;
//! - a read timeout or a connection dropped mid-answer is retried only for requests that carry
//!   an `Idempotency-Key`, which the keyhost answers from its record (audited and charged once).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::Duration;

use reqwest::blocking::Client as Http;
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use reqwest::Method;
use zeroize::Zeroizing;

/// Where and how to reach a keyhost.
pub struct Settings {
    pub url: String,
    pub token: String,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub retries: u32,
}

/// One HTTP request to the keyhost.
pub struct Request<'a> {
    pub method: &'a str,
    /// The path and query, e.g. `/v1/audit?limit=10`.
    pub path: &'a str,
    pub body: Option<bytes::Bytes>,
    pub content_type: Option<&'a str>,
    pub accept: Option<&'a str>,
    pub idempotency_key: Option<&'a str>,
}

/// A response read to the end.
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Why no response arrived.
#[derive(Debug)]
pub enum Transport {
    /// The keyhost did not answer within the read timeout.
    Timeout(String),
    /// No connection, or it broke.
    Unreachable(String),
    /// The request itself cannot be sent (a bad method or header).
    Invalid(String),
}

impl Transport {
    /// The stable reason code of the Python `KeyhostError`.
    pub fn reason(&self) -> &'static str {
        match self {
            Transport::Timeout(_) => "timeout",
            Transport::Unreachable(_) => "unreachable",
            Transport::Invalid(_) => "internal",
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Transport::Timeout(m) | Transport::Unreachable(m) | Transport::Invalid(m) => m,
        }
    }
}

/// Counters of one client, shared by the Python session and the kernels that use it.
#[derive(Default)]
pub struct Stats {
    pub round_trips: AtomicU64,
    pub answer_key_requests: AtomicU64,
    pub descriptors: AtomicU64,
    pub retries: AtomicU64,
}

impl Stats {
    pub fn snapshot(&self) -> [(&'static str, u64); 4] {
        [
            ("round_trips", self.round_trips.load(Ordering::Relaxed)),
            ("answer_key_requests", self.answer_key_requests.load(Ordering::Relaxed)),
            ("descriptors", self.descriptors.load(Ordering::Relaxed)),
            ("retries", self.retries.load(Ordering::Relaxed)),
        ]
    }

    pub fn reset(&self) {
        for c in [
            &self.round_trips,
            &self.answer_key_requests,
            &self.descriptors,
            &self.retries,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }

    fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// A keyhost client: one pool of keep-alive connections (http or https).
pub struct Client {
    url: String,
    token: RwLock<Zeroizing<String>>,
    http: Http,
    read_timeout: Duration,
    retries: u32,
    pub stats: Stats,
}

/// A failed attempt, classified for the retry decision.
enum Failure {
    Connect(reqwest::Error),
    Read(reqwest::Error),
}

impl Client {
    pub fn new(s: Settings) -> Result<Client, Transport> {
        if !(s.url.starts_with("http://") || s.url.starts_with("https://")) {
            return Err(Transport::Invalid(format!(
                "keyhost URL must start with http:// or https://, got {:?}",
                s.url
            )));
        }
        let http = Http::builder()
            .connect_timeout(s.connect_timeout)
            .timeout(s.read_timeout)
            .pool_max_idle_per_host(8)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| Transport::Invalid(format!("cannot build the HTTP client: {e}")))?;
        Ok(Client {
            url: s.url.trim_end_matches('/').to_string(),
            token: RwLock::new(Zeroizing::new(s.token.trim().to_string())),
            http,
            read_timeout: s.read_timeout,
            retries: s.retries,
            stats: Stats::default(),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Continue with another token (after a rotation).
    pub fn set_token(&self, token: &str) {
        if let Ok(mut t) = self.token.write() {
            *t = Zeroizing::new(token.trim().to_string());
        }
    }

    /// Send `req`, retried as the module docs say; the body is read to the end. Safe to call from
    /// any thread: inside an async runtime (where a blocking client must not wait) the request
    /// runs on a helper thread.
    pub fn send(&self, req: &Request<'_>) -> Result<Response, Transport> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return std::thread::scope(|s| {
                s.spawn(|| self.send_blocking(req))
                    .join()
                    .unwrap_or_else(|_| Err(Transport::Invalid("the request thread panicked".into())))
            });
        }
        self.send_blocking(req)
    }

    fn send_blocking(&self, req: &Request<'_>) -> Result<Response, Transport> {
        let method = Method::from_bytes(req.method.as_bytes())
            .map_err(|_| Transport::Invalid(format!("unknown HTTP method {:?}", req.method)))?;
        let read_attempts = 1 + if req.idempotency_key.is_some() { self.retries } else { 0 };
        let (mut safe_retries, mut reads) = (0u32, 0u32);
        loop {
            Stats::bump(&self.stats.round_trips);
            let failure = match self.attempt(&method, req) {
                Ok(r) if matches!(r.status, 502..=504) && safe_retries < self.retries => {
                    safe_retries += 1;
                    None
                }
                Ok(r) => return Ok(r),
                Err(Failure::Connect(_)) if safe_retries < self.retries => {
                    safe_retries += 1;
                    None
                }
                Err(Failure::Read(_)) if reads + 1 < read_attempts => {
                    reads += 1;
                    None
                }
                Err(f) => Some(f),
            };
            match failure {
                None => {
                    Stats::bump(&self.stats.retries);
                    std::thread::sleep(Duration::from_millis(50u64 << safe_retries.min(6)));
                }
                Some(f) => return Err(self.transport(req, f, reads + 1)),
            }
        }
    }

    fn transport(&self, req: &Request<'_>, f: Failure, attempts: u32) -> Transport {
        match f {
            Failure::Read(e) if e.is_timeout() => Transport::Timeout(format!(
                "the keyhost at {} is slow: it did not answer {} {} within {} s ({attempts} attempt(s)); it may \
                 still be working on a large request; raise the timeout, e.g. gp.connect(url, token, timeout=(5, 600))",
                self.url,
                req.method,
                req.path.split('?').next().unwrap_or(req.path),
                self.read_timeout.as_secs_f64()
            )),
            Failure::Connect(e) | Failure::Read(e) => {
                Transport::Unreachable(format!("cannot reach the keyhost at {}: {}", self.url, chain(&e)))
            }
        }
    }

    fn attempt(&self, method: &Method, req: &Request<'_>) -> Result<Response, Failure> {
        let mut b = self.http.request(method.clone(), format!("{}{}", self.url, req.path));
        if let Ok(t) = self.token.read() {
            if let Ok(mut v) = HeaderValue::from_str(&format!("Bearer {}", t.as_str())) {
                v.set_sensitive(true);
                b = b.header(AUTHORIZATION, v);
            }
        }
        if let Some(ct) = req.content_type {
            b = b.header(CONTENT_TYPE, ct);
        }
        if let Some(a) = req.accept {
            b = b.header(ACCEPT, a);
        }
        if let Some(k) = req.idempotency_key {
            b = b.header("Idempotency-Key", k);
        }
        if let Some(body) = &req.body {
            b = b.body(body.clone()); // a reference count, not a copy
        }
        let r = b.send().map_err(|e| {
            if e.is_connect() {
                Failure::Connect(e)
            } else {
                Failure::Read(e)
            }
        })?;
        let status = r.status().as_u16();
        let body = r.bytes().map_err(Failure::Read)?.to_vec();
        Ok(Response { status, body })
    }
}

/// An error with its sources, the way a user reads it (`error sending request: connection refused`).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let t = s.to_string();
        if !out.contains(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
        src = s.source();
    }
    out
}
