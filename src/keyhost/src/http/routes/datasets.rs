use axum::extract::{Path, State};
use axum::Json;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::guard;
use crate::domain::audit::{self, NewEntry};
use crate::domain::columns::{self, ColumnSpec};
use crate::domain::datasets;
use crate::domain::identities;
use crate::domain::policy;
use crate::domain::populations;
use crate::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, ApiQuery, Caller};
use crate::state::AppState;
use ghostpii_core::{Facet, LogicalType, OreParams};

/// Most row ids one allocation may reserve.
const MAX_RID_COUNT: u64 = 1 << 40;

/// `?owner=NAME`: the owner of the dataset a path names, when several visible datasets share
/// the name (dataset names are unique per owner).
#[derive(Deserialize, Default)]
pub struct OwnerQuery {
    #[serde(default)]
    owner: Option<String>,
}

#[derive(Deserialize)]
pub struct CreateDataset {
    name: String,
    #[serde(default)]
    exist_ok: bool,
    /// The owner's declaration of who the rows are (`populations.rs`): datasets with different
    /// labels hold different people. Set at creation only.
    #[serde(default)]
    population: Option<String>,
}

/// `POST /v1/datasets` (owner or admin; the caller becomes the owner)
pub async fn create(
    State(st): State<AppState>,
    Caller(who): Caller,
    ApiJson(req): ApiJson<CreateDataset>,
) -> ApiResult<Json<Value>> {
    st.db(move |conn, _| {
        let mut entry = NewEntry::new(&who, "dataset.create").dataset(&req.name);
        entry.add_reader(who.id);
        guard(conn, &entry, policy::require_create_dataset(&who))?;
        identities::validate_name("dataset", &req.name)?;
        if let Some(p) = &req.population {
            populations::validate(p)?;
        }
        let tx = conn.transaction()?;
        // names are unique per owner: only the caller's own datasets can be in the way
        let ds = match datasets::find_owned(&tx, who.id, &req.name)? {
            Some(existing) if req.exist_ok => {
                let have = populations::of(&tx, existing.id)?;
                if req.population.is_some() && req.population != have {
                    return Err(ApiError::conflict(format!(
                        "dataset '{}' exists with population {}; a population is set when a dataset is created \
                         and cannot change",
                        existing.name,
                        have.map_or("(none)".to_owned(), |p| format!("'{p}'"))
                    )));
                }
                existing
            }
            Some(existing) => {
                return Err(ApiError::conflict(format!(
                    "you already own a dataset named '{}' (pass exist_ok to use it)",
                    existing.name
                )))
            }
            None => {
                let ds = datasets::insert(&tx, &req.name, &who)?;
                if let Some(p) = &req.population {
                    populations::set(&tx, ds.id, p)?;
                }
                audit::append(
                    &tx,
                    entry.params(json!({"dataset_id": ds.id, "population": req.population})),
                )?;
                ds
            }
        };
        let population = populations::of(&tx, ds.id)?;
        tx.commit()?;
        Ok(Json(
            json!({"id": ds.id, "name": ds.name, "owner": ds.owner, "population": population}),
        ))
    })
    .await
}

/// What `GET /v1/datasets` answers.
#[derive(Debug, Serialize)]
pub struct DatasetList {
    pub datasets: Vec<datasets::Dataset>,
}

/// `GET /v1/datasets`: all for admins; for others, owned or with a grant.
pub async fn list(State(st): State<AppState>, Caller(who): Caller) -> ApiResult<Json<DatasetList>> {
    st.db(move |conn, _| {
        let filter = if policy::is_admin(&who) { None } else { Some(who.id) };
        Ok(Json(DatasetList {
            datasets: datasets::list_visible(conn, filter)?,
        }))
    })
    .await
}

#[derive(Deserialize)]
pub struct RegisterColumn {
    name: String,
    dtype: String,
    #[serde(default)]
    scale: u32,
    #[serde(default)]
    bounds: Option<(i64, i64)>,
    facets: Vec<String>,
    #[serde(default)]
    meta: Option<Value>,
    /// Order domain of the `ord` facet; required exactly when "ord" is among the facets.
    #[serde(default)]
    ord: Option<OreParams>,
    /// Join domain of the `group`/`fuzzy` facets (created with `POST /v1/join-domains`).
    #[serde(default)]
    join_domain: Option<String>,
    /// The owner of that join domain, when the dataset's owner may use several of that name
    /// (its own and ones it was made a member of).
    #[serde(default)]
    join_domain_owner: Option<String>,
}

fn column_spec(req: &RegisterColumn) -> ApiResult<ColumnSpec> {
    let dtype =
        columns::parse_dtype(&req.dtype).ok_or_else(|| ApiError::invalid(format!("unknown dtype '{}'", req.dtype)))?;
    if let Some((lo, hi)) = req.bounds {
        if lo > hi {
            return Err(ApiError::invalid(format!("bounds [{lo}, {hi}] are empty (lo > hi)")));
        }
    }
    if req.scale > 38 {
        return Err(ApiError::invalid("scale must be at most 38"));
    }
    let facets = req
        .facets
        .iter()
        .map(|f| {
            columns::parse_facet(f).ok_or_else(|| {
                ApiError::invalid(format!(
                    "unknown facet '{f}' (known: num, val, ord, match, group, fuzzy)"
                ))
            })
        })
        .collect::<ApiResult<Vec<Facet>>>()?;
    if facets.is_empty() {
        return Err(ApiError::invalid("a column needs at least one facet"));
    }
    let ord = match (facets.contains(&Facet::Ord), req.ord) {
        (true, None) => {
            return Err(ApiError::invalid(
                "the 'ord' facet needs the column's order domain: \"ord\": {\"offset\": INT, \"bits\": INT}",
            ))
        }
        (false, Some(_)) => {
            return Err(ApiError::invalid(
                "an order domain (\"ord\") was given but 'ord' is not among the facets",
            ))
        }
        (true, Some(p)) => {
            if dtype == LogicalType::String {
                return Err(ApiError::invalid("string columns cannot have the 'ord' facet"));
            }
            Some(OreParams::new(p.offset, p.bits).map_err(|e| ApiError::invalid(e.to_string()))?)
        }
        (false, None) => None,
    };
    crate::domain::join_domains::check_key_facets(dtype, &facets)?;
    crate::domain::logical::Domain::new(dtype, req.scale, req.meta.as_ref()).map_err(ApiError::invalid)?;
    Ok(ColumnSpec {
        dtype,
        scale: req.scale,
        bounds: req.bounds,
        facets: columns::canonical_facets(facets),
        ord,
    })
}

/// `POST /v1/datasets/{dataset}/columns` (owner or admin): register a column (or fetch an
/// identical existing one) and hand out its facet keys for encryption.
pub async fn register_column(
    State(st): State<AppState>,
    Caller(who): Caller,
    Path(dataset): Path<String>,
    ApiQuery(oq): ApiQuery<OwnerQuery>,
    ApiJson(req): ApiJson<RegisterColumn>,
) -> ApiResult<Json<Value>> {
    st.db(move |conn, st| {
        let pre = NewEntry::new(&who, "column.register").dataset(&dataset);
        guard(conn, &pre, policy::require_owner_role(&who, "register columns"))?;
        let found = datasets::resolve(conn, &who, &dataset, oq.owner.as_deref());
        let ds = super::guard_found(conn, &pre, found)?;
        let entry = NewEntry::new(&who, "column.register").on(&ds).column(&req.name);
        guard(conn, &entry, policy::require_manage(&who, &ds, "register columns"))?;
        identities::validate_name("column", &req.name)?;
        let spec = column_spec(&req)?;
        // a domain of another owner only with that owner's consent (membership); refused and
        // audited otherwise, also in the log of the owners of domains of that name
        let domain = crate::domain::join_domains::requested(
            conn,
            ds.owner_id,
            req.join_domain.as_deref(),
            req.join_domain_owner.as_deref(),
            &spec,
        );
        let domain = match domain {
            Err(e) if e.reason == crate::error::reason::NOT_FOUND => {
                let mut refused = entry
                    .clone()
                    .params(json!({"join_domain": req.join_domain, "join_domain_owner": req.join_domain_owner}));
                for o in
                    crate::domain::join_domains::owners_named(conn, req.join_domain.as_deref().unwrap_or_default())?
                {
                    refused.add_reader(o);
                }
                return Err(crate::domain::audit::refuse(conn, refused, e));
            }
            other => other?,
        };
        let tx = conn.transaction()?;
        let (col, entry) = match columns::find_by_name(&tx, ds.id, &req.name)? {
            Some(existing) => {
                if let Some(diff) = existing.spec.difference(&spec) {
                    return Err(ApiError::conflict(format!(
                        "column '{}' of dataset '{}' already exists with different settings: {diff}",
                        req.name, ds.name
                    )));
                }
                // same domain, or the domain it was registered under was rotated since (the
                // column keeps the key it was registered with)
                let had = crate::domain::join_domains::of_column(&tx, existing.id)?;
                let same = match (&had, &domain) {
                    (None, None) => true,
                    (Some(h), Some(d)) => h.id == d.id || (h.owner_id == d.owner_id && h.name == d.name),
                    _ => false,
                };
                if !same {
                    return Err(ApiError::conflict(format!(
                        "column '{}' of dataset '{}' already exists with join domain {:?}, the request says {:?}",
                        req.name,
                        ds.name,
                        had.as_ref().map(|d| &d.name),
                        domain.as_ref().map(|d| &d.name)
                    )));
                }
                let mut e = entry;
                e.operation = "column.keys".into();
                (existing, e)
            }
            None => {
                let col = columns::insert(
                    &tx,
                    st.master(),
                    st.keyhost_id(),
                    ds.id,
                    &req.name,
                    &spec,
                    req.meta.as_ref(),
                )?;
                if let Some(d) = &domain {
                    crate::domain::join_domains::set_for_column(&tx, col.id, d.id)?;
                }
                (col, entry)
            }
        };
        let wrapped = columns::wrapped_key(&tx, col.id, col.current_epoch)?
            .ok_or_else(|| ApiError::internal("column keys", &"current epoch has no key"))?;
        let keys = columns::column_keys(st.master(), st.keyhost_id(), &wrapped, ds.id, col.id, col.current_epoch)?;
        let mut key_map = Map::new();
        for f in &col.spec.facets {
            let b = match f {
                Facet::Num => B64.encode(keys.num.expose_bytes()),
                Facet::Val => B64.encode(keys.val.expose_bytes()),
                Facet::Ord => B64.encode(keys.ord.expose_bytes()),
                // match/group/fuzzy keys: join_domains::insert_keys below
                _ => continue,
            };
            key_map.insert(f.as_str().into(), Value::String(b));
        }
        crate::domain::join_domains::insert_keys(&tx, st.master(), st.keyhost_id(), &col, &mut key_map)?;
        // the domain whose key the column uses (registered before a rotation: the retired one)
        let col_domain = match crate::domain::join_domains::of_column(&tx, col.id)? {
            Some(d) => {
                let owner = identities::find_by_id(&tx, d.owner_id)?.map(|o| o.name);
                Some(json!({"id": d.id, "name": d.name, "owner": owner}))
            }
            None => None,
        };
        let mut entry = entry;
        if let Some(d) = &domain {
            // the domain's owner sees who received its domain's keys
            entry.add_reader(d.owner_id);
        }
        audit::append(
            &tx,
            entry.params(json!({
                "column_id": col.id,
                "epoch": col.current_epoch,
                "dtype": req.dtype,
                "scale": spec.scale,
                "bounds": spec.bounds,
                "facets": spec.facets.iter().map(|f| f.as_str()).collect::<Vec<_>>(),
                "ord": spec.ord,
                "join_domain": domain.as_ref().map(|d| &d.name),
            })),
        )?;
        tx.commit()?;
        Ok(Json(json!({
            "keyhost_id": st.keyhost_id(),
            "dataset": ds.name,
            "dataset_id": ds.id,
            "column": col.name,
            "column_id": col.id,
            "epoch": col.current_epoch,
            "keys": key_map,
            "ord": col.spec.ord,
            "join_domain": col_domain,
        })))
    })
    .await
}

/// `POST /v1/datasets/{dataset}/columns/{column}/rotate` (owner or admin): a new key epoch.
/// Registration then hands out the new epoch's keys; older epochs still answer.
pub async fn rotate_column(
    State(st): State<AppState>,
    Caller(who): Caller,
    Path((dataset, column)): Path<(String, String)>,
    ApiQuery(oq): ApiQuery<OwnerQuery>,
) -> ApiResult<Json<Value>> {
    st.db(move |conn, st| {
        let pre = NewEntry::new(&who, "column.rotate").dataset(&dataset);
        guard(conn, &pre, policy::require_owner_role(&who, "rotate column keys"))?;
        let found = datasets::resolve(conn, &who, &dataset, oq.owner.as_deref());
        let ds = super::guard_found(conn, &pre, found)?;
        let entry = NewEntry::new(&who, "column.rotate").on(&ds).column(&column);
        guard(conn, &entry, policy::require_manage(&who, &ds, "rotate column keys"))?;
        let tx = conn.transaction()?;
        let col = columns::find_by_name(&tx, ds.id, &column)?.ok_or_else(|| {
            ApiError::not_found(format!("column '{column}' of dataset '{}' is not registered", ds.name))
        })?;
        let epoch = columns::rotate(&tx, st.master(), st.keyhost_id(), &col)?;
        audit::append(
            &tx,
            entry.params(json!({"column_id": col.id, "previous_epoch": col.current_epoch, "epoch": epoch})),
        )?;
        tx.commit()?;
        Ok(Json(json!({
            "dataset": ds.name,
            "column": col.name,
            "column_id": col.id,
            "epoch": epoch,
            "previous_epoch": col.current_epoch,
        })))
    })
    .await
}

/// What `POST /v1/datasets/{dataset}/rids` answers: the first row id of the block and its size.
#[derive(Debug, Serialize)]
pub struct AllocatedRids {
    pub start: u64,
    pub count: u64,
}

#[derive(Deserialize)]
pub struct AllocateRids {
    count: u64,
    #[serde(default)]
    columns: Vec<i64>,
}

/// `POST /v1/datasets/{dataset}/rids` (owner or admin): a fresh range of row ids.
pub async fn allocate_rids(
    State(st): State<AppState>,
    Caller(who): Caller,
    Path(dataset): Path<String>,
    ApiQuery(oq): ApiQuery<OwnerQuery>,
    ApiJson(req): ApiJson<AllocateRids>,
) -> ApiResult<Json<AllocatedRids>> {
    st.db(move |conn, _| {
        let pre = NewEntry::new(&who, "rids.allocate").dataset(&dataset);
        guard(conn, &pre, policy::require_owner_role(&who, "allocate row ids"))?;
        let found = datasets::resolve(conn, &who, &dataset, oq.owner.as_deref());
        let ds = super::guard_found(conn, &pre, found)?;
        let entry = NewEntry::new(&who, "rids.allocate").on(&ds);
        guard(conn, &entry, policy::require_manage(&who, &ds, "allocate row ids"))?;
        if req.count == 0 || req.count > MAX_RID_COUNT {
            return Err(ApiError::invalid(format!(
                "count must be between 1 and {MAX_RID_COUNT}"
            )));
        }
        let mut column_ids = req.columns.clone();
        column_ids.sort_unstable();
        column_ids.dedup();
        // per dataset: allocations of other datasets do not wait for this one
        let tx = conn.transaction_scoped(&[crate::store::lock_key(crate::store::LockScope::DatasetRids, ds.id, 0)])?;
        for &c in &column_ids {
            if columns::find_by_id(&tx, c)?.is_none_or(|col| col.dataset_id != ds.id) {
                return Err(ApiError::not_found(format!(
                    "column id {c} does not belong to dataset '{}'",
                    ds.name
                )));
            }
        }
        let start = datasets::reserve_rids(&tx, ds.id, req.count)?;
        for &c in &column_ids {
            columns::record_rids(&tx, c, start, req.count)?;
        }
        audit::append(
            &tx,
            entry.params(json!({"start": start, "count": req.count, "column_ids": column_ids})),
        )?;
        tx.commit()?;
        Ok(Json(AllocatedRids {
            start,
            count: req.count,
        }))
    })
    .await
}
