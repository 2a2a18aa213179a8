//! The console's cookies (the session id, the sign-in form's double-submit nonce), their
//! random values and constant-time comparison.

use axum::http::request::Parts;
use axum::http::{header, HeaderValue};
use rand::rngs::OsRng;
use rand::RngCore;
use subtle::ConstantTimeEq;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "gp_console";
/// Name of the sign-in form's double-submit cookie (CSRF of the sign-in form itself).
pub const LOGIN_COOKIE: &str = "gp_console_login";

/// 32 random bytes from the OS, hex.
pub fn random_hex() -> String {
    let mut b = [0u8; 32];
    OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

/// Whether two strings are equal, compared in constant time.
pub fn ct_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The value of cookie `name` in the request, if any.
pub fn cookie(parts: &Parts, name: &str) -> Option<String> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// A `Set-Cookie` value with the console's flags (`max_age` 0 deletes the cookie).
pub fn set_cookie(name: &str, value: &str, max_age: Option<u64>) -> HeaderValue {
    let age = max_age.map(|a| format!("; Max-Age={a}")).unwrap_or_default();
    let v = format!("{name}={value}; Path=/console; HttpOnly; SameSite=Strict{age}");
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static("gp_console=; Max-Age=0"))
}
