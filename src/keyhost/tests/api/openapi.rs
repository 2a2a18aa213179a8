//! The OpenAPI description served at `GET /v1/openapi.json` against the router: the spec lists
//! exactly the routes of `routes::ROUTES` (from which the router is built), every route is
//! served, and each is authenticated exactly when the spec says so.

use std::collections::BTreeSet;

use ghostpii_keyhost::error::reason;
use ghostpii_keyhost::routes::ROUTES;
use serde_json::Value;

use crate::client::{raw, Kh};

/// The keys of an OpenAPI path item that are operations.
const METHODS: &[&str] = &["get", "put", "post", "delete", "options", "head", "patch", "trace"];

fn fetch_spec(kh: &Kh) -> Value {
    let r = raw(&kh.url(), "GET", "/v1/openapi.json", None, None);
    assert_eq!(r.status, 200, "GET /v1/openapi.json without a token: {}", r.body);
    assert!(
        r.head.to_ascii_lowercase().contains("content-type: application/json"),
        "content type of /v1/openapi.json: {}",
        r.head
    );
    r.body
}

/// Resolve a local `$ref` ("#/components/...").
fn resolve<'a>(spec: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => spec
            .pointer(r.strip_prefix('#').expect("local $ref"))
            .unwrap_or_else(|| panic!("unresolved $ref {r}")),
        None => v,
    }
}

fn check_refs(spec: &Value, v: &Value) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(_)) = m.get("$ref") {
                resolve(spec, v);
            }
            m.values().for_each(|x| check_refs(spec, x));
        }
        Value::Array(a) => a.iter().for_each(|x| check_refs(spec, x)),
        _ => {}
    }
}

/// Names of the `{param}` segments of a path template.
fn template_params(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .collect()
}

/// A concrete path for a template (every parameter "1").
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|seg| if seg.starts_with('{') { "1" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}

fn documented_operations(spec: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for key in item.as_object().expect("path item").keys() {
            if METHODS.contains(&key.as_str()) {
                ops.insert((key.clone(), path.clone()));
            }
        }
    }
    ops
}

#[test]
fn openapi_is_served_without_authentication_and_is_openapi_3_1() {
    let kh = Kh::start();
    let spec = fetch_spec(&kh);
    let version = spec["openapi"].as_str().expect("openapi version");
    assert!(version.starts_with("3.1."), "openapi {version}");
    assert!(spec["info"]["title"].is_string() && spec["info"]["version"].is_string());
    let bearer = &spec["components"]["securitySchemes"]["bearer"];
    assert_eq!(
        (&bearer["type"], &bearer["scheme"]),
        (&Value::from("http"), &Value::from("bearer"))
    );
    assert_eq!(spec["security"], serde_json::json!([{"bearer": []}]));
    check_refs(&spec, &spec);
    // The error reason codes are exactly those of the keyhost.
    let documented: BTreeSet<&str> = spec["components"]["schemas"]["Reason"]["enum"]
        .as_array()
        .expect("Reason enum")
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let actual: BTreeSet<&str> = reason::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(documented, actual);
    // The served document is the one compiled in, byte for byte.
    let file: Value = serde_json::from_str(include_str!("../../openapi.json")).unwrap();
    assert_eq!(spec, file);
}

#[test]
fn openapi_paths_are_exactly_the_routes_of_the_router() {
    let kh = Kh::start();
    let spec = fetch_spec(&kh);
    let routes: BTreeSet<(String, String)> = ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    assert_eq!(routes.len(), ROUTES.len(), "ROUTES lists a route twice");
    let documented = documented_operations(&spec);
    let undocumented: Vec<_> = routes.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routes).collect();
    assert!(
        undocumented.is_empty() && unrouted.is_empty(),
        "routes missing from openapi.json: {undocumented:?}; documented but not routed: {unrouted:?}"
    );
    // Each operation declares its path parameters, and only those.
    for (method, path) in ROUTES {
        let op = &spec["paths"][path][method];
        let declared: BTreeSet<&str> = op["parameters"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .map(|p| resolve(&spec, p))
                    .filter(|p| p["in"] == "path")
                    .map(|p| p["name"].as_str().unwrap())
                    .collect()
            })
            .unwrap_or_default();
        let wanted: BTreeSet<&str> = template_params(path).into_iter().collect();
        assert_eq!(declared, wanted, "path parameters of {method} {path}");
        assert!(op["responses"]["200"].is_object(), "{method} {path} documents no 200");
    }
}

#[test]
fn every_route_is_served_and_authenticated_as_documented() {
    let kh = Kh::start();
    let spec = fetch_spec(&kh);
    let url = kh.url();
    // The router's fallbacks, which a registered route never reaches.
    let is_fallback = |r: &crate::client::Resp| {
        r.status == 405
            || (r.status == 404
                && r.body["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("no such endpoint")))
    };
    assert!(is_fallback(&raw(&url, "GET", "/v1/no-such-route", None, None)));
    assert!(is_fallback(&raw(&url, "DELETE", "/v1/info", None, None)));
    for (method, path) in ROUTES {
        let op = &spec["paths"][path][method];
        let public = op
            .get("security")
            .unwrap_or(&spec["security"])
            .as_array()
            .expect("security requirements")
            .is_empty();
        let r = raw(&url, &method.to_ascii_uppercase(), &concrete(path), None, None);
        assert!(
            !is_fallback(&r),
            "{method} {path} is not routed: {} {}",
            r.status,
            r.body
        );
        if public {
            assert_eq!(r.status, 200, "public {method} {path}: {}", r.body);
        } else {
            assert_eq!(
                (r.status, r.reason()),
                (401, "unauthenticated"),
                "{method} {path} without a token"
            );
            assert!(op["responses"]["401"].is_object(), "{method} {path} documents no 401");
        }
    }
}

/// The descriptor kinds documented in the spec are exactly those the keyhost decodes (it names
/// them when refusing an unknown `op`).
#[test]
fn every_descriptor_kind_is_documented() {
    let kh = Kh::start();
    let spec = fetch_spec(&kh);
    let mapping = spec
        .pointer("/components/schemas/Descriptor/discriminator/mapping")
        .and_then(Value::as_object)
        .expect("descriptor mapping");
    let documented: BTreeSet<String> = mapping.keys().cloned().collect();
    for target in mapping.values() {
        resolve(&spec, &serde_json::json!({ "$ref": target }));
    }
    let r = kh.answer(&kh.admin, serde_json::json!([{"op": "no-such-op"}]));
    let msg = r[0]["message"].as_str().unwrap().to_owned();
    let listed = msg.split("expected one of").nth(1).unwrap_or_else(|| panic!("{msg}"));
    let decoded: BTreeSet<String> = listed
        .split(',')
        .map(|s| s.trim().trim_matches('`').to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(documented, decoded, "spec vs keyhost ({msg})");
}

/// `POST /v1/answer-keys` documents the request frame under the media type the keyhost reads,
/// and the blob marker a frame's rid sets may be.
#[test]
fn request_frames_are_documented() {
    let kh = Kh::start();
    let spec = fetch_spec(&kh);
    let content = &spec["paths"]["/v1/answer-keys"]["post"]["requestBody"]["content"];
    let media: BTreeSet<&str> = content.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        media,
        BTreeSet::from(["application/json", ghostpii_core::frame::MEDIA_TYPE])
    );
    let marker = &spec["components"]["schemas"]["BlobMarker"];
    assert_eq!(marker["required"], serde_json::json!(["$blob", "len"]));
    assert!(spec["components"]["schemas"]["Rids"]["description"]
        .as_str()
        .unwrap()
        .contains("BlobMarker"));
}
