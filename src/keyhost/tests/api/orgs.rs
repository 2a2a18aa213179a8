//! Organisations on one keyhost (issue 20): dataset and join-domain names scoped per owner,
//! owner-managed identities and their tokens, join domains that other owners join only with the
//! domain owner's consent, and `group` pads for key holders only by the owner's explicit choice.
//! Every refusal is typed and in the audit log.

use ghostpii_core::RidSet;
use serde_json::{json, Value};

use crate::client::Kh;

/// An owner's whole audit log (`scope=mine`), oldest first.
fn mine(kh: &Kh, token: &str) -> Vec<Value> {
    let r = kh.get(token, "/v1/audit?scope=mine&order=oldest").ok();
    r["entries"].as_array().unwrap().clone()
}

fn ops(entries: &[Value]) -> Vec<(String, String, String)> {
    entries
        .iter()
        .map(|e| {
            (
                e["identity"].as_str().unwrap_or_default().to_owned(),
                e["operation"].as_str().unwrap().to_owned(),
                e["decision"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn has(entries: &[Value], identity: &str, operation: &str, decision: &str) -> bool {
    ops(entries)
        .iter()
        .any(|(i, o, d)| i == identity && o == operation && d == decision)
}

/// Fault 3 of the issue: a name another owner uses is no conflict and no error names its owner.
#[test]
fn dataset_and_domain_names_are_scoped_per_owner() {
    let kh = Kh::start();
    let clinic = kh.identity("clinic", "owner");
    let insurer = kh.identity("insurer", "owner");
    let crm_c = kh.post(&clinic, "/v1/datasets", json!({"name": "crm"})).ok();
    // the same name for another owner: a dataset of its own, not a 409 naming the clinic
    let crm_i = kh.post(&insurer, "/v1/datasets", json!({"name": "crm"})).ok();
    assert_ne!(crm_c["id"], crm_i["id"]);
    assert_eq!(crm_i["owner"], "insurer");
    // 409 only for the caller's own duplicate, and it names no one else
    let again = kh.post(&insurer, "/v1/datasets", json!({"name": "crm"}));
    assert_eq!((again.status, again.reason()), (409, "conflict"));
    assert!(!again.body.to_string().contains("clinic"), "{}", again.body);
    assert_eq!(
        kh.post(&insurer, "/v1/datasets", json!({"name": "crm", "exist_ok": true}))
            .ok()["id"],
        crm_i["id"]
    );
    // join domains likewise
    kh.post(&clinic, "/v1/join-domains", json!({"name": "persons"})).ok();
    let d = kh.post(&insurer, "/v1/join-domains", json!({"name": "persons"})).ok();
    assert_eq!(d["owner"], "insurer");
    let again = kh.post(&insurer, "/v1/join-domains", json!({"name": "persons"}));
    assert_eq!((again.status, again.reason()), (409, "conflict"));
    assert!(!again.body.to_string().contains("clinic"), "{}", again.body);

    // a third owner: another owner's dataset is refused exactly as a name nobody uses
    let bank = kh.identity("bank", "owner");
    let msg = |name: &str| {
        let r = kh.post(
            &bank,
            "/v1/grants",
            json!({"identity": "bank", "dataset": name, "column": "x", "operation": "decrypt"}),
        );
        assert_eq!((r.status, r.reason()), (404, "not_found"), "{}", r.body);
        r.body["error"]["message"].as_str().unwrap().replace(name, "NAME")
    };
    assert_eq!(msg("crm"), msg("no-such-dataset"));
    assert!(!msg("crm").contains("clinic") && !msg("crm").contains("insurer"));
    let r = kh.post(&bank, "/v1/datasets/crm/rids", json!({"count": 1}));
    assert_eq!((r.status, r.reason()), (404, "not_found"));

    // each owner addresses its own "crm"; the audit of one never shows the other's
    kh.post(&clinic, "/v1/datasets/crm/rids", json!({"count": 5})).ok();
    kh.post(&insurer, "/v1/datasets/crm/rids", json!({"count": 7})).ok();
    let log = kh.get(&clinic, "/v1/audit?dataset=crm").ok();
    let entries = log["entries"].as_array().unwrap();
    assert!(!entries.is_empty());
    assert!(entries.iter().all(|e| e["identity"] != "insurer"), "{entries:?}");
    assert!(entries
        .iter()
        .any(|e| e["operation"] == "rids.allocate" && e["params"]["count"] == 5));
    assert!(!entries
        .iter()
        .any(|e| e["operation"] == "rids.allocate" && e["params"]["count"] == 7));
    // the refused grant attempt by bank is audited (admins see it), filed under no other owner
    let all = kh.get(&kh.admin, "/v1/audit?identity=bank").ok();
    assert!(all["entries"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["operation"] == "grant.create" && e["decision"] == "refused" && e["reason"] == "not_found"));
    assert!(!has(&mine(&kh, &clinic), "bank", "grant.create", "refused"));
}

/// Fault 1 of the issue: owners create, grant to and issue tokens for their own analysts.
#[test]
fn owners_manage_their_own_identities_and_tokens() {
    let kh = Kh::start();
    let clinic = kh.identity("clinic", "owner");
    let insurer = kh.identity("insurer", "owner");
    kh.post(&clinic, "/v1/datasets", json!({"name": "visits"})).ok();

    let w = kh.post(&clinic, "/v1/identities", json!({"name": "worker"})).ok();
    assert_eq!(
        (w["name"].as_str(), w["manager"].as_str()),
        (Some("clinic/worker"), Some("clinic"))
    );
    // an owner creates analysts only, not owners or admins
    let r = kh.post(&clinic, "/v1/identities", json!({"name": "boss", "role": "owner"}));
    assert_eq!((r.status, r.reason()), (403, "permission_denied"));
    // the grant and the token by the owner, naming its analyst by the short name
    let g = kh
        .post(
            &clinic,
            "/v1/grants",
            json!({"identity": "worker", "dataset": "visits", "column": "cost", "operation": "aggregate",
                   "params": {"min_rows": 2}}),
        )
        .ok();
    assert_eq!(g["identity"], "clinic/worker");
    let t = kh.post(&clinic, "/v1/tokens", json!({"identity": "worker"})).ok();
    let worker = t["token"].as_str().unwrap().to_owned();
    assert_eq!(kh.get(&worker, "/v1/whoami").ok()["identity"], "clinic/worker");
    // the analyst itself manages nothing
    let r = kh.post(&worker, "/v1/identities", json!({"name": "x"}));
    assert_eq!((r.status, r.reason()), (403, "permission_denied"));
    let r = kh.post(&worker, "/v1/tokens", json!({"identity": "clinic/worker"}));
    assert_eq!((r.status, r.reason()), (403, "permission_denied"));

    // listings: each owner sees only its own identities and their tokens
    let listed = kh.get(&clinic, "/v1/identities").ok();
    let names: Vec<&str> = listed["identities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["clinic/worker"]);
    assert_eq!(kh.get(&insurer, "/v1/identities").ok()["identities"], json!([]));
    let toks = kh.get(&clinic, "/v1/tokens").ok();
    assert_eq!(toks["tokens"].as_array().unwrap().len(), 1);
    assert_eq!(kh.get(&insurer, "/v1/tokens").ok()["tokens"], json!([]));

    // another owner can neither issue nor revoke the clinic's tokens, nor grant to its worker;
    // each refused exactly as an identity or a token id that does not exist
    let r = kh.post(&insurer, "/v1/tokens", json!({"identity": "clinic/worker"}));
    assert_eq!((r.status, r.reason()), (403, "permission_denied"));
    let none = kh.post(&insurer, "/v1/tokens", json!({"identity": "nobody/none"}));
    let msg = |b: &Value, n: &str| b["error"]["message"].as_str().unwrap().replace(n, "N");
    assert_eq!(msg(&r.body, "clinic/worker"), msg(&none.body, "nobody/none"));
    let tid = t["token_id"].as_i64().unwrap();
    let r = kh.delete(&insurer, &format!("/v1/tokens/{tid}"));
    assert_eq!((r.status, r.reason()), (403, "permission_denied"));
    // ... refused exactly as a token id that does not exist
    let unknown = kh.delete(&insurer, "/v1/tokens/999999");
    assert_eq!(msg(&r.body, &tid.to_string()), msg(&unknown.body, "999999"));
    kh.post(&insurer, "/v1/datasets", json!({"name": "claims"})).ok();
    let grant_worker = json!({"identity": "clinic/worker", "dataset": "claims", "column": "amount",
                              "operation": "aggregate"});
    let r = kh.post(&insurer, "/v1/grants", grant_worker.clone());
    assert_eq!((r.status, r.reason()), (404, "not_found"));
    // ... until the clinic shares the worker with the insurer: an explicit act, in both logs
    let r = kh.post(
        &insurer,
        "/v1/identities/share",
        json!({"identity": "clinic/worker", "with": "insurer"}),
    );
    assert_eq!(
        (r.status, r.reason()),
        (403, "permission_denied"),
        "only its manager shares it"
    );
    kh.post(
        &clinic,
        "/v1/identities/share",
        json!({"identity": "worker", "with": "insurer"}),
    )
    .ok();
    assert_eq!(
        kh.post(&insurer, "/v1/grants", grant_worker).ok()["identity"],
        "clinic/worker"
    );
    let shared = kh.get(&insurer, "/v1/identities").ok();
    assert_eq!(shared["identities"][0]["name"], "clinic/worker");
    assert_eq!(shared["identities"][0]["manager"], "clinic");
    // still only the clinic issues its tokens
    let r = kh.post(&insurer, "/v1/tokens", json!({"identity": "clinic/worker"}));
    assert_eq!((r.status, r.reason()), (403, "permission_denied"));

    // the clinic revokes its worker's token; the token stops working
    kh.delete(&clinic, &format!("/v1/tokens/{tid}")).ok();
    assert_eq!(kh.get(&worker, "/v1/whoami").status, 401);

    // every action and refusal is audited, filed under the owners concerned
    let c = mine(&kh, &clinic);
    for (op, decision) in [
        ("identity.create", "issued"),
        ("identity.create", "refused"),
        ("token.create", "issued"),
        ("identity.share", "issued"),
        ("token.revoke", "issued"),
    ] {
        assert!(has(&c, "clinic", op, decision), "{op} {decision}: {:?}", ops(&c));
    }
    let i = mine(&kh, &insurer);
    for (op, decision) in [
        ("identity.share", "issued"),
        ("token.create", "refused"),
        ("token.revoke", "refused"),
        ("grant.create", "refused"),
        ("identity.share", "refused"),
    ] {
        let who = if decision == "issued" { "clinic" } else { "insurer" };
        assert!(has(&i, who, op, decision), "{op} {decision}: {:?}", ops(&i));
    }
    // a member has no audit log of its own
    let again = kh.post(&clinic, "/v1/tokens", json!({"identity": "worker"})).ok();
    let r = kh.get(again["token"].as_str().unwrap(), "/v1/audit?scope=mine");
    assert_eq!((r.status, r.reason()), (403, "permission_denied"));
}

fn text_column(name: &str, domain: &str) -> Value {
    json!({"name": name, "dtype": "string", "facets": ["val", "group"], "join_domain": domain})
}

/// Fault 2 of the issue: registering in another owner's join domain needs its consent, and the
/// domain's key reaches only members; `group` pads for a key holder need the owner's explicit
/// choice.
#[test]
fn join_domains_need_the_owners_consent() {
    let kh = Kh::start();
    let clinic = kh.identity("clinic", "owner");
    let insurer = kh.identity("insurer", "owner");
    kh.post(&clinic, "/v1/join-domains", json!({"name": "persons"})).ok();
    kh.post(&clinic, "/v1/datasets", json!({"name": "crm"})).ok();
    let c = kh
        .post(&clinic, "/v1/datasets/crm/columns", text_column("surname", "persons"))
        .ok();
    let clinic_det = c["keys"]["group_det"].clone();
    assert!(clinic_det.is_string());
    kh.post(&insurer, "/v1/datasets", json!({"name": "dict"})).ok();

    // the attack: without consent, registration is refused (typed, audited) and hands out no key
    let r = kh.post(&insurer, "/v1/datasets/dict/columns", text_column("surname", "persons"));
    assert_eq!((r.status, r.reason()), (404, "not_found"), "{}", r.body);
    assert!(r.body.get("keys").is_none());
    assert!(!r.body.to_string().contains("clinic"));
    let r2 = kh.post(
        &insurer,
        "/v1/datasets/dict/columns",
        json!({"name": "surname", "dtype": "string",
        "facets": ["val", "group"], "join_domain": "persons", "join_domain_owner": "clinic"}),
    );
    assert_eq!((r2.status, r2.reason()), (404, "not_found"));
    assert!(has(&mine(&kh, &insurer), "insurer", "column.register", "refused"));
    // the clinic sees the attempt on its domain's name
    assert!(has(&mine(&kh, &clinic), "insurer", "column.register", "refused"));

    // consent: the clinic adds the insurer; both logs record it
    let m = kh
        .post(&clinic, "/v1/join-domains/persons/members", json!({"owner": "insurer"}))
        .ok();
    assert_eq!(m["members"][0]["owner"], "insurer");
    assert!(has(&mine(&kh, &clinic), "clinic", "join_domain.member.add", "issued"));
    assert!(has(&mine(&kh, &insurer), "clinic", "join_domain.member.add", "issued"));
    // only the domain's owner adds members
    let r = kh.post(
        &insurer,
        "/v1/join-domains/persons/members",
        json!({"owner": "insurer"}),
    );
    assert_eq!((r.status, r.reason()), (404, "not_found"));
    let listed = kh.get(&insurer, "/v1/join-domains").ok();
    assert_eq!(listed["join_domains"][0]["owner"], "clinic");
    assert!(
        listed["join_domains"][0].get("members").is_none(),
        "members are the owner's business"
    );

    let ins = kh
        .post(&insurer, "/v1/datasets/dict/columns", text_column("surname", "persons"))
        .ok();
    assert_eq!(ins["keys"]["group_det"], clinic_det, "members share the domain's key");
    assert_eq!(ins["join_domain"]["owner"], "clinic");
    // the domain's owner sees who received its keys
    let c_log = mine(&kh, &clinic);
    assert!(c_log
        .iter()
        .any(|e| e["identity"] == "insurer" && e["operation"] == "column.register" && e["decision"] == "issued"));

    // pads of the clinic's rows for the insurer (a key holder) only by explicit choice
    let alloc = kh
        .post(
            &clinic,
            "/v1/datasets/crm/rids",
            json!({"count": 10, "columns": [c["column_id"]]}),
        )
        .ok();
    let start = alloc["start"].as_u64().unwrap();
    kh.post(
        &clinic,
        "/v1/grants",
        json!({"identity": "insurer", "dataset": "crm", "column": "surname",
        "operation": "group"}),
    )
    .ok();
    let rids = RidSet::from_sorted(&(start..start + 10).collect::<Vec<_>>());
    let pads = json!({"op": "pads", "dataset_id": c["dataset_id"], "column_id": c["column_id"],
                      "epoch": c["epoch"], "facet": "group", "rids": rids.to_base64()});
    let res = kh.answer(&insurer, json!([pads.clone()]));
    assert_eq!(
        (res[0]["ok"].as_bool(), res[0]["reason"].as_str()),
        (Some(false), Some("permission_denied"))
    );
    assert!(res[0]["message"].as_str().unwrap().contains("domain_key_holder=True"));
    let log = kh.get(&clinic, "/v1/audit?dataset=crm").ok();
    assert!(log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["identity"] == "insurer" && e["operation"] == "pads" && e["decision"] == "refused"));
    kh.post(
        &clinic,
        "/v1/grants",
        json!({"identity": "insurer", "dataset": "crm", "column": "surname",
        "operation": "group", "params": {"domain_key_holder": true}}),
    )
    .ok();
    assert_eq!(kh.answer(&insurer, json!([pads]))[0]["ok"], true);

    // leaving: the insurer registers no new column in the domain; both logs record it
    kh.delete(&insurer, "/v1/join-domains/persons/members/insurer").ok();
    let r = kh.post(&insurer, "/v1/datasets/dict/columns", text_column("given", "persons"));
    assert_eq!((r.status, r.reason()), (404, "not_found"));
    assert!(has(
        &mine(&kh, &clinic),
        "insurer",
        "join_domain.member.remove",
        "issued"
    ));
    assert!(has(
        &mine(&kh, &insurer),
        "insurer",
        "join_domain.member.remove",
        "issued"
    ));

    // rotation: new columns get a new key; the old column keeps its key (its ciphertext stays
    // readable and joinable with ciphertext under that key)
    let rot = kh.post(&clinic, "/v1/join-domains/persons/rotate", json!({})).ok();
    assert_ne!(rot["id"], rot["previous_id"]);
    let fresh = kh
        .post(&clinic, "/v1/datasets/crm/columns", text_column("maiden", "persons"))
        .ok();
    assert_ne!(fresh["keys"]["group_det"], clinic_det);
    let old = kh
        .post(&clinic, "/v1/datasets/crm/columns", text_column("surname", "persons"))
        .ok();
    assert_eq!(old["keys"]["group_det"], clinic_det);
    assert!(has(&mine(&kh, &clinic), "clinic", "join_domain.rotate", "issued"));
}

/// Delegation: an owner makes one analyst the lead of its identities for a time; the lead issues
/// and revokes the tokens of the owner's other identities within the owner's limits, nothing else.
#[test]
fn a_lead_issues_tokens_within_the_owners_limits() {
    let kh = Kh::start();
    let clinic = kh.identity("clinic", "owner");
    let insurer = kh.identity("insurer", "owner");
    kh.post(&insurer, "/v1/identities", json!({"name": "bob"})).ok();
    kh.post(&clinic, "/v1/identities", json!({"name": "lead"})).ok();
    kh.post(&clinic, "/v1/identities", json!({"name": "worker"})).ok();
    let lead = kh.post(&clinic, "/v1/tokens", json!({"identity": "lead"})).ok()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    // before the delegation the lead manages nothing
    let r = kh.post(&lead, "/v1/tokens", json!({"identity": "worker", "ttl_seconds": 60}));
    assert_eq!((r.status, r.reason()), (403, "permission_denied"));
    // only the owner delegates, and only to its own analysts
    let r = kh.post(
        &insurer,
        "/v1/identities/delegate",
        json!({"identity": "clinic/lead", "max_ttl_seconds": 3600, "ttl_seconds": 86400}),
    );
    assert_eq!((r.status, r.reason()), (403, "permission_denied"));
    let d = kh
        .post(
            &clinic,
            "/v1/identities/delegate",
            json!({"identity": "lead", "max_ttl_seconds": 3600, "ttl_seconds": 86400}),
        )
        .ok();
    assert_eq!(d["identity"], "clinic/lead");
    // within the limits: a token for the clinic's worker
    let t = kh
        .post(&lead, "/v1/tokens", json!({"identity": "worker", "ttl_seconds": 3600}))
        .ok();
    assert_eq!(t["identity"], "clinic/worker");
    assert_eq!(
        kh.get(t["token"].as_str().unwrap(), "/v1/whoami").ok()["identity"],
        "clinic/worker"
    );
    // beyond them, for itself, for another organisation, or anything else: refused, audited
    let r = kh.post(&lead, "/v1/tokens", json!({"identity": "worker", "ttl_seconds": 7200}));
    assert_eq!((r.status, r.reason()), (403, "permission_denied"));
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("beyond the delegation"));
    for name in ["lead", "clinic/lead", "insurer/bob", "nobody"] {
        let r = kh.post(&lead, "/v1/tokens", json!({"identity": name, "ttl_seconds": 60}));
        assert_eq!((r.status, r.reason()), (403, "permission_denied"), "{name}");
    }
    let r = kh.post(&lead, "/v1/identities", json!({"name": "x"}));
    assert_eq!((r.status, r.reason()), (403, "permission_denied"));
    let r = kh.post(
        &lead,
        "/v1/identities/delegate",
        json!({"identity": "worker", "max_ttl_seconds": 60, "ttl_seconds": 60}),
    );
    assert_eq!((r.status, r.reason()), (403, "permission_denied"));
    let listed = kh.get(&lead, "/v1/tokens").ok();
    let names: Vec<&str> = listed["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["identity"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["clinic/worker"]);
    // the lead revokes the worker's token; the owner ends the delegation
    kh.delete(&lead, &format!("/v1/tokens/{}", t["token_id"])).ok();
    assert_eq!(kh.get(t["token"].as_str().unwrap(), "/v1/whoami").status, 401);
    kh.post(
        &clinic,
        "/v1/identities/delegate",
        json!({"identity": "lead", "revoke": true}),
    )
    .ok();
    let r = kh.post(&lead, "/v1/tokens", json!({"identity": "worker", "ttl_seconds": 60}));
    assert_eq!((r.status, r.reason()), (403, "permission_denied"));
    let c = mine(&kh, &clinic);
    assert!(has(&c, "clinic", "identity.delegate", "issued"));
    assert!(has(&c, "clinic/lead", "token.create", "issued"));
    assert!(has(&c, "clinic/lead", "token.create", "refused"));
    assert!(has(&c, "clinic/lead", "token.revoke", "issued"));
}
