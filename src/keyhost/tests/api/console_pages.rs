//! The console's pages render on the backend under test (their queries run on SQLite and on
//! PostgreSQL alike): sign in as the owner, open every read page, filter the audit.

use std::io::{Read, Write};
use std::net::TcpStream;

use serde_json::json;

use crate::client::World;

/// One request with a raw body; the status, headers and body as text.
fn http(url: &str, method: &str, path: &str, cookie: &str, form: &str) -> (u16, String, String) {
    let addr = url.strip_prefix("http://").unwrap();
    let mut s = TcpStream::connect(addr).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if !cookie.is_empty() {
        req.push_str(&format!("Cookie: {cookie}\r\n"));
    }
    if method == "POST" {
        req.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            form.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(form);
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head.to_owned(), body.to_owned())
}

fn set_cookie(head: &str, name: &str) -> String {
    head.lines()
        .filter_map(|l| {
            l.strip_prefix("set-cookie: ")
                .or_else(|| l.strip_prefix("Set-Cookie: "))
        })
        .find(|c| c.starts_with(&format!("{name}=")))
        .and_then(|c| c.split(';').next())
        .unwrap_or_else(|| panic!("no {name} cookie in {head}"))
        .to_owned()
}

#[test]
fn console_pages_render_on_this_backend() {
    let w = World::new();
    w.grant("income", "aggregate", json!({"epsilon": 0.5, "budget": 2.0}));
    w.kh.answer(&w.analyst, json!([w.sum(&w.rids(50), &[(&w.income, 1)])]));
    let url = w.kh.url();
    let (status, head, body) = http(&url, "GET", "/console/login", "", "");
    assert_eq!(status, 200);
    let login = set_cookie(&head, "gp_console_login");
    let nonce = login.split_once('=').unwrap().1.to_owned();
    assert!(body.contains(&nonce));
    let form = format!("token={}&login_csrf={nonce}", w.owner);
    let (status, head, _) = http(&url, "POST", "/console/login", &login, &form);
    assert_eq!(status, 303, "{head}");
    let session = set_cookie(&head, "gp_console");
    for path in [
        "/console/datasets",
        "/console/datasets/patrons",
        "/console/datasets/patrons/grants",
        "/console/datasets/patrons/budgets",
        "/console/audit",
        "/console/audit?dataset=patrons&identity=analyst&column=income&operation=sum&decision=issued",
        "/console/checkpoint",
    ] {
        let (status, _, body) = http(&url, "GET", path, &session, "");
        assert_eq!(status, 200, "{path}: {body}");
        assert!(!body.contains("internal keyhost error"), "{path}");
    }
    let (_, _, audit) = http(
        &url,
        "GET",
        "/console/audit?dataset=patrons&column=income",
        &session,
        "",
    );
    assert!(
        audit.contains("analyst"),
        "the filtered audit shows the analyst's answer"
    );
}
