//! The console's pages outside the frame of a signed-in session (sign-in, refusals, errors,
//! redirects, the stylesheet) and the headers every console response carries ([`with_headers`],
//! used by `layout.rs` too).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::cookies::{random_hex, set_cookie, LOGIN_COOKIE};
use super::html::esc;
use crate::domain::identities::Identity;

/// No script may run, styles come only from the console's stylesheet, forms post only here,
/// and no other site may frame the console.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

/// A console response: HTML with the headers every console page carries.
pub fn with_headers(status: StatusCode, html: String) -> Response {
    let mut resp = (status, html).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// The HTML document around a page's header and body.
pub fn document(title: &str, header_html: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · ghostpii console</title><link rel=\"stylesheet\" href=\"/console/style.css\"></head>\
         <body>{header_html}<main>{body}</main></body></html>",
        esc(title)
    )
}

fn bare(status: StatusCode, title: &str, body: &str) -> Response {
    let head = "<header><span class=\"brand\">ghostpii console</span></header>";
    with_headers(status, document(title, head, &format!("<h1>{}</h1>{body}", esc(title))))
}

/// The sign-in page (with a fresh double-submit cookie for its form) and an optional message.
pub fn login_page(status: StatusCode, message: Option<&str>) -> Response {
    let nonce = random_hex();
    let msg = message
        .map(|m| format!("<div class=\"flash err\" role=\"alert\"><p>{}</p></div>", esc(m)))
        .unwrap_or_default();
    let body = format!(
        "{msg}<form method=\"post\" action=\"/console/login\" class=\"card\">\
         <input type=\"hidden\" name=\"login_csrf\" value=\"{}\">\
         <label>Admin or owner token <input type=\"password\" name=\"token\" id=\"token\" autocomplete=\"off\" required></label>\
         <button type=\"submit\" id=\"sign-in\">sign in</button></form>\
         <p class=\"hint\">The token stays on the keyhost for the session; the browser keeps only a session cookie. \
         Analyst (member) tokens are refused: use the Python API.</p>",
        esc(&nonce)
    );
    let mut resp = bare(status, "Sign in", &body);
    resp.headers_mut()
        .append(header::SET_COOKIE, set_cookie(LOGIN_COOKIE, &nonce, None));
    resp
}

/// The page an analyst's token gets.
pub fn refused_member(who: &Identity) -> Response {
    let body = format!(
        "<div class=\"flash err\" role=\"alert\" id=\"refused\"><p>Identity <b>{}</b> has role <b>{}</b> (an analyst): \
         the console is for admins and dataset owners. Use this token with the Python API \
         (<code>gp.connect(url, token)</code>) instead, or sign in with an admin or owner token.</p></div>\
         <p><a href=\"/console/login\">sign in with another token</a></p>",
        esc(&who.name),
        esc(who.role.as_str())
    );
    bare(StatusCode::FORBIDDEN, "Not for analysts", &body)
}

/// A refusal or failure outside the frame (bad CSRF token, malformed form).
pub fn error_page(status: StatusCode, message: &str) -> Response {
    let body = format!(
        "<div class=\"flash err\" role=\"alert\" id=\"error\"><p>{}</p></div><p><a href=\"/console/datasets\">back to the console</a></p>",
        esc(message)
    );
    bare(status, "Refused", &body)
}

/// 303 See Other to `to` (after a POST).
pub fn redirect(to: &str) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// `GET /console/style.css`
pub async fn stylesheet() -> Response {
    let mut resp = include_str!("style.css").into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    resp
}
