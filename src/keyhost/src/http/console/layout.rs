//! The frame of every page of a signed-in session: navigation, messages, who is signed in (the
//! pages outside it are in `bare.rs`).

use axum::http::StatusCode;
use axum::response::Response;

use super::bare::{document, with_headers};
use super::html::{csrf_field, esc};
use super::session::{Console, Flash};

const NAV: &[(&str, &str)] = &[
    ("datasets", "/console/datasets"),
    ("identities", "/console/identities"),
    ("audit", "/console/audit"),
    ("checkpoint", "/console/checkpoint"),
];

fn flash_html(flash: &[Flash]) -> String {
    flash
        .iter()
        .map(|f| {
            let class = if f.ok { "flash ok" } else { "flash err" };
            let secret = f
                .secret
                .as_ref()
                .map(|s| {
                    format!(
                        "<p>Copy it now: it is shown only this once.</p><pre class=\"secret\" id=\"new-token\">{}</pre>",
                        esc(s)
                    )
                })
                .unwrap_or_default();
            format!("<div class=\"{class}\" role=\"status\"><p>{}</p>{secret}</div>", esc(&f.text))
        })
        .collect()
}

/// A page of a signed-in session: navigation (`active` marked), pending messages, `body`.
pub fn page(c: &Console, title: &str, active: &str, body: &str) -> Response {
    page_with(c, StatusCode::OK, title, active, &[], body)
}

/// [`page`] with a status and extra messages (a refused form is shown again with its error).
pub fn page_with(c: &Console, status: StatusCode, title: &str, active: &str, extra: &[Flash], body: &str) -> Response {
    let nav: String = NAV
        .iter()
        .map(|(name, href)| {
            let cur = if *name == active {
                " class=\"active\" aria-current=\"page\""
            } else {
                ""
            };
            format!("<a href=\"{href}\"{cur}>{name}</a>")
        })
        .collect();
    let head = format!(
        "<header><span class=\"brand\">ghostpii console</span><nav>{nav}</nav>\
         <span class=\"who\">signed in as <b id=\"whoami\">{}</b> ({})</span>\
         <form method=\"post\" action=\"/console/logout\" class=\"inline\">{}<button type=\"submit\" id=\"logout\">sign out</button></form></header>",
        esc(&c.who.name),
        esc(c.who.role.as_str()),
        csrf_field(&c.csrf)
    );
    let mut flash = c.take_flash();
    let messages = flash_html(&flash) + &flash_html(extra);
    flash.clear();
    let body = format!("<h1>{}</h1>{messages}{body}", esc(title));
    with_headers(status, document(title, &head, &body))
}
