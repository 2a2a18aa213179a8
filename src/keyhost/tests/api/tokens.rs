use serde_json::json;

use crate::client::{raw, Kh};

#[test]
fn unknown_and_missing_tokens_are_unauthenticated() {
    let kh = Kh::start();
    let r = kh.get("gpt_not-a-real-token", "/v1/whoami");
    assert_eq!((r.status, r.reason()), (401, "unauthenticated"));
    let msg = r.body["error"]["message"].as_str().unwrap();
    assert!(msg.contains("not recognised") && msg.contains(&kh.id()), "{msg}");
    let r = raw(&kh.url(), "GET", "/v1/whoami", None, None);
    assert_eq!((r.status, r.reason()), (401, "unauthenticated"));
}

#[test]
fn tokens_expire_and_revoke_immediately() {
    let kh = Kh::start();
    kh.post(&kh.admin, "/v1/identities", json!({"name": "ana"})).ok();
    let a = kh
        .post(&kh.admin, "/v1/tokens", json!({"identity": "ana", "ttl_seconds": 1}))
        .ok();
    let b = kh.post(&kh.admin, "/v1/tokens", json!({"identity": "ana"})).ok();
    let (ta, tb) = (a["token"].as_str().unwrap(), b["token"].as_str().unwrap());
    assert_ne!(ta, tb);
    assert!(ta.starts_with("gpt_") && ta.len() == 47);
    assert_eq!(kh.get(ta, "/v1/whoami").ok()["role"], "member");

    // Listing shows records, never secrets.
    let list = kh.get(&kh.admin, "/v1/tokens?identity=ana").ok();
    assert_eq!(list["tokens"].as_array().unwrap().len(), 2);
    assert!(!list.to_string().contains(ta) && !list.to_string().contains(tb));
    assert!(list["tokens"][1]["expires_at"].as_str().unwrap().ends_with('Z'));

    std::thread::sleep(std::time::Duration::from_millis(1300));
    let r = kh.get(ta, "/v1/whoami");
    assert_eq!((r.status, r.reason()), (401, "token_expired"));

    assert_eq!(kh.get(tb, "/v1/whoami").status, 200);
    let id = b["token_id"].as_i64().unwrap();
    assert_eq!(
        kh.delete(&kh.admin, &format!("/v1/tokens/{id}")).ok(),
        json!({"revoked": true})
    );
    let r = kh.get(tb, "/v1/whoami");
    assert_eq!((r.status, r.reason()), (401, "token_revoked"));
    let r = kh.delete(&kh.admin, "/v1/tokens/99999");
    assert_eq!((r.status, r.reason()), (404, "not_found"));
}

#[test]
fn only_admins_manage_identities_and_tokens() {
    let kh = Kh::start();
    let m = kh.identity("mallory", "member");
    let o = kh.identity("oscar", "owner");
    for t in [&m, &o] {
        let r = kh.post(t, "/v1/identities", json!({"name": "eve", "role": "admin"}));
        assert_eq!((r.status, r.reason()), (403, "permission_denied"));
        let r = kh.post(t, "/v1/tokens", json!({"identity": "admin"}));
        assert_eq!((r.status, r.reason()), (403, "permission_denied"));
    }
    // (issue 20) an owner lists the identities it manages (none yet); a member lists none
    assert_eq!(kh.get(&m, "/v1/identities").status, 403);
    assert_eq!(kh.get(&o, "/v1/identities").ok()["identities"], json!([]));
    let r = kh.post(&kh.admin, "/v1/identities", json!({"name": "mallory"}));
    assert_eq!((r.status, r.reason()), (409, "conflict"));
    let r = kh
        .post(
            &kh.admin,
            "/v1/identities",
            json!({"name": "mallory", "exist_ok": true}),
        )
        .ok();
    assert_eq!(r["role"], "member");
    let r = kh.post(&kh.admin, "/v1/tokens", json!({"identity": "nobody"}));
    assert_eq!((r.status, r.reason()), (404, "not_found"));
    let ids = kh.get(&kh.admin, "/v1/identities").ok();
    let names: Vec<_> = ids["identities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("admin"), json!("mallory"), json!("oscar")]);
}

#[test]
fn rotation_never_extends_the_expiry_an_admin_set() {
    let kh = Kh::start();
    kh.post(&kh.admin, "/v1/identities", json!({"name": "ana"})).ok();
    let a = kh
        .post(&kh.admin, "/v1/tokens", json!({"identity": "ana", "ttl_seconds": 60}))
        .ok();
    let expiry = a["expires_at"].clone();
    assert!(expiry.is_string());
    // Asking for 10 years gets the original expiry; asking for nothing keeps it.
    let b = kh
        .post(
            a["token"].as_str().unwrap(),
            "/v1/tokens/rotate",
            json!({"ttl_seconds": 10 * 365 * 86400}),
        )
        .ok();
    assert_eq!(b["expires_at"], expiry);
    let c = kh
        .post(b["token"].as_str().unwrap(), "/v1/tokens/rotate", json!({}))
        .ok();
    assert_eq!(c["expires_at"], expiry);
    // Shorter is allowed.
    let d = kh
        .post(
            c["token"].as_str().unwrap(),
            "/v1/tokens/rotate",
            json!({"ttl_seconds": 5}),
        )
        .ok();
    assert!(d["expires_at"].as_str().unwrap() < expiry.as_str().unwrap());
    // The bootstrap admin token has no expiry and keeps none.
    let e = kh.post(&kh.admin, "/v1/tokens/rotate", json!({})).ok();
    assert_eq!(e["expires_at"], json!(null));
    assert_eq!(kh.get(&kh.admin, "/v1/whoami").reason(), "token_revoked");
    assert_eq!(kh.get(e["token"].as_str().unwrap(), "/v1/whoami").status, 200);
}
