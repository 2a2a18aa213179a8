//! Console sessions: sign-in with an admin or owner token, the session cookie, the
//! per-session CSRF token, one-shot messages, and the extractors every page goes through.
//!
//! The token is kept on the keyhost, in memory, for the session; the browser holds only a
//! random session id in an `HttpOnly; SameSite=Strict; Path=/console` cookie. Every request
//! authenticates the session's token again through the API's own [`Caller`] extractor, so a
//! revoked or expired token ends the session at once and refusals are audited the same way.
//! Every POST goes through [`ConsolePost`], which refuses it unless its `csrf` field equals
//! the session's CSRF token (compared in constant time).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::bare;
use super::cookies::{cookie, ct_eq, random_hex, set_cookie, LOGIN_COOKIE, SESSION_COOKIE};
use crate::domain::identities::{Identity, Role};
use crate::http::extract::Caller;
use crate::state::AppState;

/// A session unused for this long is forgotten.
const IDLE: Duration = Duration::from_secs(8 * 3600);
/// Most sessions kept at once (the least recently used goes first).
const MAX_SESSIONS: usize = 1000;
/// Largest accepted form body.
const MAX_FORM_BYTES: usize = 256 * 1024;

/// A message shown once on the next page; `secret` (a new token) is shown once, then dropped.
pub struct Flash {
    pub ok: bool,
    pub text: String,
    pub secret: Option<Zeroizing<String>>,
}

struct Session {
    token: Zeroizing<String>,
    csrf: String,
    last_used: Instant,
    flash: Vec<Flash>,
}

/// The console's sessions of one keyhost (in memory: a restart signs everyone out).
#[derive(Clone, Default)]
pub struct Sessions {
    inner: Arc<Mutex<HashMap<String, Session>>>,
}

/// Sessions are stored under the SHA-256 of their id, never the id itself.
fn key(session_id: &str) -> String {
    hex::encode(Sha256::digest(session_id.as_bytes()))
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Start a session for `token`; returns the session id for the cookie.
    fn create(&self, token: Zeroizing<String>) -> String {
        let id = random_hex();
        let mut map = self.lock();
        let now = Instant::now();
        map.retain(|_, s| now.duration_since(s.last_used) < IDLE);
        while map.len() >= MAX_SESSIONS {
            let oldest = map.iter().min_by_key(|(_, s)| s.last_used).map(|(k, _)| k.clone());
            match oldest {
                Some(k) => map.remove(&k),
                None => break,
            };
        }
        map.insert(
            key(&id),
            Session {
                token,
                csrf: random_hex(),
                last_used: now,
                flash: Vec::new(),
            },
        );
        id
    }

    /// The token and CSRF token of a live session (and mark it used).
    fn touch(&self, session_id: &str) -> Option<(Zeroizing<String>, String)> {
        let mut map = self.lock();
        let k = key(session_id);
        let now = Instant::now();
        let s = map.get_mut(&k)?;
        if now.duration_since(s.last_used) >= IDLE {
            map.remove(&k);
            return None;
        }
        s.last_used = now;
        Some((s.token.clone(), s.csrf.clone()))
    }

    fn remove(&self, session_id: &str) {
        self.lock().remove(&key(session_id));
    }

    fn push_flash(&self, session_id: &str, f: Flash) {
        if let Some(s) = self.lock().get_mut(&key(session_id)) {
            s.flash.push(f);
        }
    }

    fn take_flash(&self, session_id: &str) -> Vec<Flash> {
        self.lock()
            .get_mut(&key(session_id))
            .map(|s| std::mem::take(&mut s.flash))
            .unwrap_or_default()
    }

    /// After a token rotation: the session goes on with the new token.
    fn replace_token(&self, session_id: &str, token: Zeroizing<String>) {
        if let Some(s) = self.lock().get_mut(&key(session_id)) {
            s.token = token;
        }
    }
}

/// Authenticate `token` exactly as the API does (the [`Caller`] extractor, with the
/// request's own parts), then require a role that may use the console.
pub async fn authenticate(parts: &mut Parts, state: &AppState, token: &str) -> Result<Identity, Response> {
    let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| bare::login_page(StatusCode::UNAUTHORIZED, Some("that is not a keyhost token")))?;
    value.set_sensitive(true);
    let previous = parts.headers.insert(header::AUTHORIZATION, value);
    let result = Caller::from_request_parts(parts, state).await;
    match previous {
        Some(p) => parts.headers.insert(header::AUTHORIZATION, p),
        None => parts.headers.remove(header::AUTHORIZATION),
    };
    let Caller(who) = result.map_err(|e| {
        e.log_cause("console sign-in");
        bare::login_page(e.status, Some(&e.message))
    })?;
    if who.role == Role::Member {
        return Err(bare::refused_member(&who));
    }
    Ok(who)
}

/// A signed-in admin or owner (GET pages). Without a valid session: the sign-in page.
pub struct Console {
    pub who: Identity,
    pub csrf: String,
    session_id: String,
    sessions: Sessions,
}

impl Console {
    pub fn flash(&self, ok: bool, text: impl Into<String>) {
        self.sessions.push_flash(
            &self.session_id,
            Flash {
                ok,
                text: text.into(),
                secret: None,
            },
        );
    }

    /// Show a new token once, on the next page.
    pub fn flash_secret(&self, text: impl Into<String>, secret: Zeroizing<String>) {
        self.sessions.push_flash(
            &self.session_id,
            Flash {
                ok: true,
                text: text.into(),
                secret: Some(secret),
            },
        );
    }

    pub fn take_flash(&self) -> Vec<Flash> {
        self.sessions.take_flash(&self.session_id)
    }

    pub fn token(&self) -> Option<Zeroizing<String>> {
        self.sessions.touch(&self.session_id).map(|(t, _)| t)
    }

    pub fn replace_token(&self, token: Zeroizing<String>) {
        self.sessions.replace_token(&self.session_id, token);
    }

    pub fn is_admin(&self) -> bool {
        self.who.role == Role::Admin
    }
}

fn sessions_of(parts: &Parts) -> Sessions {
    parts.extensions.get::<Sessions>().cloned().unwrap_or_default()
}

impl FromRequestParts<AppState> for Console {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let sessions = sessions_of(parts);
        let Some(session_id) = cookie(parts, SESSION_COOKIE) else {
            return Err(bare::login_page(StatusCode::UNAUTHORIZED, None));
        };
        let Some((token, csrf)) = sessions.touch(&session_id) else {
            return Err(bare::login_page(
                StatusCode::UNAUTHORIZED,
                Some("your console session has ended; sign in again"),
            ));
        };
        match authenticate(parts, state, &token).await {
            Ok(who) => Ok(Console {
                who,
                csrf,
                session_id,
                sessions,
            }),
            Err(page) => {
                sessions.remove(&session_id);
                Err(page)
            }
        }
    }
}

/// A signed-in POST whose `csrf` field matched the session's CSRF token, with its form fields.
pub struct ConsolePost {
    pub c: Console,
    pub form: HashMap<String, String>,
}

impl ConsolePost {
    /// A form field, trimmed; empty when absent.
    pub fn field(&self, name: &str) -> &str {
        self.form.get(name).map(|s| s.trim()).unwrap_or("")
    }
}

async fn read_form(body: axum::body::Body) -> Result<HashMap<String, String>, Response> {
    let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
        .await
        .map_err(|_| bare::error_page(StatusCode::PAYLOAD_TOO_LARGE, "the form is too large"))?;
    serde_urlencoded::from_bytes(&bytes)
        .map_err(|e| bare::error_page(StatusCode::BAD_REQUEST, &format!("malformed form: {e}")))
}

fn csrf_refused() -> Response {
    bare::error_page(
        StatusCode::FORBIDDEN,
        "the form's CSRF token is missing or wrong (a form from another site, or from an \
         earlier session): nothing was changed. Reload the page and submit the form again.",
    )
}

impl FromRequest<AppState> for ConsolePost {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let c = Console::from_request_parts(&mut parts, state).await?;
        let form = read_form(body).await?;
        match form.get("csrf") {
            Some(sent) if ct_eq(sent, &c.csrf) => Ok(ConsolePost { c, form }),
            _ => Err(csrf_refused()),
        }
    }
}

/// `GET /console/login`: the sign-in form, with a fresh double-submit cookie.
pub async fn login_form() -> Response {
    bare::login_page(StatusCode::OK, None)
}

/// `POST /console/login` (`token`, `login_csrf`): start a session for an admin or owner.
pub async fn login(state: axum::extract::State<AppState>, req: Request) -> Response {
    let (mut parts, body) = req.into_parts();
    let form = match read_form(body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let expected = cookie(&parts, LOGIN_COOKIE);
    let sent = form.get("login_csrf");
    if !matches!((expected, sent), (Some(e), Some(s)) if ct_eq(&e, s)) {
        return csrf_refused();
    }
    let token = Zeroizing::new(form.get("token").map(|t| t.trim().to_owned()).unwrap_or_default());
    if token.is_empty() {
        return bare::login_page(StatusCode::UNAUTHORIZED, Some("paste an admin or owner token"));
    }
    if let Err(page) = authenticate(&mut parts, &state, &token).await {
        return page;
    }
    let sessions = sessions_of(&parts);
    let id = sessions.create(token);
    let mut resp = bare::redirect("/console/datasets");
    let h = resp.headers_mut();
    h.append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, &id, None));
    h.append(header::SET_COOKIE, set_cookie(LOGIN_COOKIE, "", Some(0)));
    resp
}

/// `POST /console/logout`: forget the session (CSRF-checked like every POST).
pub async fn logout(post: ConsolePost) -> Response {
    post.c.sessions.remove(&post.c.session_id);
    let mut resp = bare::redirect("/console/login");
    resp.headers_mut()
        .append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, "", Some(0)));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_hold_tokens_under_hashed_ids() {
        let s = Sessions::default();
        let id = s.create(Zeroizing::new("tok".into()));
        assert_eq!(id.len(), 64);
        assert!(!s.lock().contains_key(&id), "the raw id must not be a key");
        let (t, csrf) = s.touch(&id).unwrap();
        assert_eq!(t.as_str(), "tok");
        assert_eq!(csrf.len(), 64);
        assert!(s.touch("other").is_none());
        s.remove(&id);
        assert!(s.touch(&id).is_none());
    }

    #[test]
    fn flash_is_shown_once() {
        let s = Sessions::default();
        let id = s.create(Zeroizing::new("tok".into()));
        s.push_flash(
            &id,
            Flash {
                ok: true,
                text: "done".into(),
                secret: None,
            },
        );
        assert_eq!(s.take_flash(&id).len(), 1);
        assert!(s.take_flash(&id).is_empty());
    }

    #[test]
    fn cookie_flags() {
        let v = set_cookie(SESSION_COOKIE, "abc", None);
        let v = v.to_str().unwrap();
        assert!(v.contains("HttpOnly") && v.contains("SameSite=Strict") && v.contains("Path=/console"));
    }

    #[test]
    fn constant_time_compare() {
        assert!(ct_eq("abc", "abc"));
        assert!(!ct_eq("abc", "abd"));
        assert!(!ct_eq("abc", "ab"));
    }
}
