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
        assert_eq!(kh.get(t, "/v1/identities").status, 403);
    }
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
