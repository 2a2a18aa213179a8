use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::guard;
use crate::clock;
use crate::domain::audit::{self, Filter, NewEntry, Page};
use crate::domain::checkpoint::Checkpoint;
use crate::domain::datasets;
use crate::domain::policy;
use crate::domain::verification::{self, AuditVerification};
use crate::error::{ApiError, ApiResult};
use crate::http::extract::{ApiQuery, Caller};
use crate::state::AppState;

const DEFAULT_LIMIT: u32 = 1000;
const MAX_LIMIT: u32 = 100_000;

#[derive(Deserialize)]
pub struct AuditQuery {
    dataset: Option<String>,
    /// The owner of `dataset`, when several visible datasets share its name.
    owner: Option<String>,
    /// `mine`: every entry the caller may read as an owner (its datasets, its join domains'
    /// membership changes, the identities it manages), instead of one dataset's.
    scope: Option<String>,
    identity: Option<String>,
    since: Option<String>,
    limit: Option<u32>,
    before: Option<i64>,
    after: Option<i64>,
    order: Option<String>,
}

/// `GET /v1/audit`: admins read everything; owners the log of their datasets. Newest first
/// (`order=oldest` for oldest first), `limit` entries per page; `next` is the cursor of the
/// following page (pass it as `before`, or as `after` with `order=oldest`), `total` how many
/// entries match in all.
pub async fn list(
    State(st): State<AppState>,
    Caller(who): Caller,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Json<Page>> {
    st.db(move |conn, st| {
        let mut entry = NewEntry::new(&who, "audit.read");
        // entries of one owner's dataset: dataset names are unique per owner only
        let mut reader = None;
        match (&q.dataset, q.scope.as_deref()) {
            (_, Some(s)) if s != "mine" => {
                return Err(ApiError::invalid(format!("scope must be 'mine', not '{s}'")));
            }
            (None, Some(_)) => {
                guard(
                    conn,
                    &entry,
                    policy::require_create_dataset(&who).map_err(|_| {
                        ApiError::denied(format!(
                            "identity '{}' (role {}) has no audit log of its own: only owners and admins read one",
                            who.name,
                            who.role.as_str()
                        ))
                    }),
                )?;
                reader = Some(who.id);
            }
            (None, None) => guard(
                conn,
                &entry,
                policy::require_admin(
                    &who,
                    "read the whole audit log (owners: pass ?dataset=NAME, or ?scope=mine for every entry they may read)",
                ),
            )?,
            (Some(name), _) => {
                entry = entry.dataset(name);
                let found = datasets::resolve(conn, &who, name, q.owner.as_deref());
                let ds = super::guard_found(conn, &entry, found)?;
                entry = entry.on(&ds);
                guard(conn, &entry, policy::require_manage(&who, &ds, "read the audit log"))?;
                reader = Some(ds.owner_id);
            }
        }
        let since = match &q.since {
            Some(s) => Some(
                clock::parse_rfc3339(s)
                    .ok_or_else(|| ApiError::invalid(format!("since must be an RFC 3339 time, not '{s}'")))?,
            ),
            None => None,
        };
        let oldest_first = match q.order.as_deref() {
            None | Some("newest") => false,
            Some("oldest") => true,
            Some(o) => {
                return Err(ApiError::invalid(format!(
                    "order must be 'newest' or 'oldest', not '{o}'"
                )))
            }
        };
        let filter = Filter {
            dataset: q.dataset,
            reader,
            identity: q.identity,
            since,
            limit: q.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT),
            before: q.before,
            after: q.after,
            oldest_first,
        };
        st.integrate_audit(conn)?;
        Ok(Json(audit::list(conn, &filter)?))
    })
    .await
}

/// `GET /v1/audit/verify` (admin): recompute the hash chain.
pub async fn verify(State(st): State<AppState>, Caller(who): Caller) -> ApiResult<Json<AuditVerification>> {
    st.db(move |conn, st| {
        let entry = NewEntry::new(&who, "audit.verify");
        guard(conn, &entry, policy::require_admin(&who, "verify the audit log"))?;
        st.integrate_audit(conn)?;
        let snap = conn.snapshot()?;
        Ok(Json(verification::verify(&snap)?))
    })
    .await
}

/// `GET /v1/audit/checkpoint` (any authenticated identity): a signed checkpoint of the
/// whole log, to keep and later check the log against (`ghostpii audit verify --checkpoint`).
pub async fn checkpoint(State(st): State<AppState>, Caller(_who): Caller) -> ApiResult<Json<Checkpoint>> {
    st.db(move |conn, st| {
        st.integrate_audit(conn)?;
        Ok(Json(crate::domain::checkpoint::create(
            conn,
            st.keyhost_id(),
            st.signer(),
        )?))
    })
    .await
}

/// What `GET /v1/audit/proof` answers: the audit path of entry `index` in the tree of
/// `tree_size` entries (base64 hashes, leaf to root).
#[derive(Debug, Serialize)]
pub struct InclusionProof {
    pub index: u64,
    pub tree_size: u64,
    pub proof: Vec<String>,
}

#[derive(Deserialize)]
pub struct ProofQuery {
    index: u64,
    tree_size: u64,
}

/// `GET /v1/audit/proof?index=N&tree_size=M` (any authenticated identity): the RFC 6962
/// inclusion proof of entry N (the `audit_index` `POST /v1/audit/receipt` gives for a receipt) in the tree of a checkpoint of
/// size M. Hashes only; reveals no entry contents.
pub async fn proof(
    State(st): State<AppState>,
    Caller(_who): Caller,
    ApiQuery(q): ApiQuery<ProofQuery>,
) -> ApiResult<Json<InclusionProof>> {
    st.db(move |conn, st| {
        st.integrate_audit(conn)?;
        let proof = crate::domain::checkpoint::inclusion_proof(conn, q.index, q.tree_size)?.ok_or_else(|| {
            ApiError::invalid(format!(
                "no entry {} in a tree of {} entries (or the log is shorter than that)",
                q.index, q.tree_size
            ))
        })?;
        Ok(Json(InclusionProof {
            index: q.index,
            tree_size: q.tree_size,
            proof,
        }))
    })
    .await
}

/// `POST /v1/audit/receipt` (any authenticated identity), body: the `receipt` of an answer.
/// Checks its promise: signed by this keyhost's checkpoint key, and the entry it promised is in
/// the log, unchanged, integrated no later than `include_by` (or, before then, still queued).
/// Queued entries are integrated first. Gives the entry's `audit_index` and Merkle `leaf_hash`
/// (for `GET /v1/audit/proof`); reveals nothing about the entry the receipt does not hold.
pub async fn receipt(
    State(st): State<AppState>,
    Caller(_who): Caller,
    crate::http::extract::ApiJson(p): crate::http::extract::ApiJson<audit::Promise>,
) -> ApiResult<Json<crate::domain::sequencer::ReceiptCheck>> {
    st.db(move |conn, st| {
        st.integrate_audit(conn)?;
        let key = st.signer().verifying_key();
        let checked = crate::domain::sequencer::verify_receipt(conn, st.keyhost_id(), &key, &p, clock::now_micros())?;
        Ok(Json(checked))
    })
    .await
}
