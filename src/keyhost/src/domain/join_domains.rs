//! Join domains: a named root key shared by the columns that may join (`group`) or link
//! (`fuzzy`), and the keys of the match/group/fuzzy facets of a column epoch.
//!
//! Tables (plain SQL for SQLite and PostgreSQL): `join_domains` (name, root key sealed under
//! the master key), `column_join_domains` (which domain a column belongs to, fixed at
//! registration) and `issued_match_constants` (distinct match constants per identity and
//! column, for `max_constants`).

use crate::params;
use crate::store::{Connection, OptionalExtension};
use ghostpii_core::det::{self, DomainKeys, KeyFacetKeys};
use ghostpii_core::meta::key_binding;
use ghostpii_core::RootKey;
use serde::Serialize;

use crate::clock;
use crate::domain::columns::{self, Column};
use crate::error::{ApiError, ApiResult};
use crate::files::master_key::MasterKey;

#[derive(Debug, Clone, Serialize)]
pub struct JoinDomain {
    pub id: i64,
    pub name: String,
    /// The owner whose domain it is.
    #[serde(skip)]
    pub owner_id: i64,
}

const SELECT: &str = "SELECT id, name, owner_id FROM join_domains";

fn from_row(r: &crate::store::Row) -> crate::store::Result<JoinDomain> {
    Ok(JoinDomain {
        id: r.get(0)?,
        name: r.get(1)?,
        owner_id: r.get(2)?,
    })
}

fn context(id: i64, name: &str) -> String {
    format!("join-domain/{id}/{name}")
}

/// The current (not retired) domain `name` of the owner `owner_id`.
pub fn find_owned(conn: &Connection, owner_id: i64, name: &str) -> crate::store::Result<Option<JoinDomain>> {
    conn.query_row(
        &format!("{SELECT} WHERE owner_id = ?1 AND name = ?2 AND retired_at IS NULL"),
        params![owner_id, name],
        from_row,
    )
    .optional()
}

/// The current domains named `name` whose keys the organisation `org` may use: its own, and
/// those whose owner made it a member; `owner` narrows to one domain owner.
pub fn usable_by(
    conn: &Connection,
    org: i64,
    name: &str,
    owner: Option<&str>,
) -> crate::store::Result<Vec<JoinDomain>> {
    let mut st = conn.prepare(
        "SELECT d.id, d.name, d.owner_id FROM join_domains d JOIN identities o ON o.id = d.owner_id
         WHERE d.name = ?1 AND d.retired_at IS NULL AND (CAST(?3 AS TEXT) IS NULL OR o.name = ?3)
         AND (d.owner_id = ?2 OR EXISTS (SELECT 1 FROM join_domain_members m WHERE m.domain_id = d.id AND m.owner_id = ?2
              AND m.removed_at IS NULL))
         ORDER BY d.id",
    )?;
    let rows = st.query_map(params![name, org, owner], from_row)?;
    rows.collect()
}

/// Owners of current domains named `name` (to file a refused registration under them).
pub fn owners_named(conn: &Connection, name: &str) -> crate::store::Result<Vec<i64>> {
    let mut st = conn.prepare("SELECT owner_id FROM join_domains WHERE name = ?1 AND retired_at IS NULL")?;
    let rows = st.query_map(params![name], crate::store::get0)?;
    rows.collect()
}

/// Retire a domain (its key stays for the columns registered under it; new ones use the
/// domain that replaces it).
pub fn retire(conn: &Connection, id: i64) -> crate::store::Result<()> {
    conn.execute(
        "UPDATE join_domains SET retired_at = ?2 WHERE id = ?1",
        params![id, clock::now_micros()],
    )?;
    Ok(())
}

/// Create a join domain with a fresh root key (sealed under the master key).
pub fn insert(
    conn: &Connection,
    master: &MasterKey,
    name: &str,
    creator: &crate::domain::identities::Identity,
) -> ApiResult<JoinDomain> {
    let id: i64 = conn.query_row(
        "INSERT INTO join_domains (name, key_sealed, created_by, created_at, owner_id) VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
        params![name, Vec::<u8>::new(), creator.name, clock::now_micros(), creator.id],
        |r| r.get(0),
    )?;
    let root = RootKey::generate();
    let sealed = master
        .seal(&context(id, name), root.as_bytes())
        .map_err(|e| ApiError::internal("sealing a join-domain key", &e))?;
    conn.execute(
        "UPDATE join_domains SET key_sealed = ?2 WHERE id = ?1",
        params![id, sealed],
    )?;
    Ok(JoinDomain {
        id,
        name: name.into(),
        owner_id: creator.id,
    })
}

/// The join domain of a column, if it has one.
pub fn of_column(conn: &Connection, column_id: i64) -> crate::store::Result<Option<JoinDomain>> {
    conn.query_row(
        "SELECT d.id, d.name, d.owner_id FROM column_join_domains c JOIN join_domains d ON d.id = c.domain_id
         WHERE c.column_id = ?1",
        [column_id],
        from_row,
    )
    .optional()
}

pub fn set_for_column(conn: &Connection, column_id: i64, domain_id: i64) -> crate::store::Result<()> {
    conn.execute(
        "INSERT INTO column_join_domains (column_id, domain_id) VALUES (?1, ?2)",
        params![column_id, domain_id],
    )?;
    Ok(())
}

fn domain_root(conn: &Connection, master: &MasterKey, d: &JoinDomain) -> ApiResult<RootKey> {
    let sealed: Vec<u8> = conn.query_row("SELECT key_sealed FROM join_domains WHERE id = ?1", [d.id], |r| {
        r.get(0)
    })?;
    let plain = master
        .open(&context(d.id, &d.name), &sealed)
        .map_err(|e| ApiError::internal("opening a join-domain key", &e))?;
    RootKey::from_bytes(&plain).map_err(|e| ApiError::internal("join-domain key", &e))
}

/// The match/group/fuzzy keys of one epoch of `col`: column-local keys from its root key, DET
/// and CLK keys from its join domain (or from its root key when it has none).
pub fn key_facet_keys(
    conn: &Connection,
    master: &MasterKey,
    keyhost_id: &str,
    col: &Column,
    epoch: u32,
) -> ApiResult<(KeyFacetKeys, DomainKeys)> {
    let wrapped = columns::wrapped_key(conn, col.id, epoch)?
        .ok_or_else(|| ApiError::not_found(format!("epoch {epoch} of column '{}' is unknown", col.name)))?;
    let root = master
        .unwrap(&wrapped, keyhost_id, col.dataset_id, col.id, epoch)
        .map_err(|e| ApiError::internal("unwrapping a column key", &e))?;
    let binding = key_binding(col.dataset_id, col.id, epoch);
    let local = det::column_key_facets(&root, &binding);
    let shared = match of_column(conn, col.id)? {
        Some(d) => det::domain_keys(&domain_root(conn, master, &d)?, &det::domain_label(d.id)),
        None => det::domain_keys(&root, &det::private_label(&binding)),
    };
    Ok((local, shared))
}

/// Whether the identity was already issued the match constant `digest` on the column.
pub fn already_issued(conn: &Connection, identity_id: i64, column_id: i64, digest: &str) -> crate::store::Result<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT 1 FROM issued_match_constants WHERE identity_id = ?1 AND column_id = ?2 AND digest = ?3",
        )?
        .query_row(params![identity_id, column_id, digest], |_| Ok(()))
        .optional()?
        .is_some())
}

/// How many distinct match constants the identity was issued on the column.
pub fn issued_count(conn: &Connection, identity_id: i64, column_id: i64) -> crate::store::Result<u64> {
    let n: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM issued_match_constants WHERE identity_id = ?1 AND column_id = ?2")?
        .query_row(params![identity_id, column_id], |r| r.get(0))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

pub fn record_issued(
    conn: &Connection,
    identity_id: i64,
    column_id: i64,
    digest: &str,
    audit_index: i64,
) -> crate::store::Result<()> {
    conn.prepare_cached(
        "INSERT INTO issued_match_constants (identity_id, column_id, digest, first_audit) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT DO NOTHING",
    )?
    .execute(params![identity_id, column_id, digest, audit_index])?;
    Ok(())
}

/// The facet keys an owner needs to encrypt the match/group/fuzzy facets of `col` (current
/// epoch), inserted into the registration's `keys` object (base64).
pub fn insert_keys(
    conn: &Connection,
    master: &MasterKey,
    keyhost_id: &str,
    col: &Column,
    keys: &mut serde_json::Map<String, serde_json::Value>,
) -> ApiResult<()> {
    use base64::engine::general_purpose::STANDARD as B64;
    use base64::Engine;
    use ghostpii_core::Facet;
    let (local, shared) = key_facet_keys(conn, master, keyhost_id, col, col.current_epoch)?;
    let mut put = |k: &str, b: &[u8]| {
        keys.insert(k.into(), serde_json::Value::String(B64.encode(b)));
    };
    if col.spec.has(Facet::Match) {
        put("match", local.match_key.expose_bytes());
    }
    if col.spec.has(Facet::Group) {
        put("group_det", shared.group_det.expose_bytes());
        put("group_pad", local.group_pad.expose_bytes());
    }
    if col.spec.has(Facet::Fuzzy) {
        put("clk", shared.clk.expose_bytes());
        put("fuzzy_seal", local.fuzzy_seal.expose_bytes());
    }
    if col.spec.has(Facet::Search) {
        put("search", local.search_key.expose_bytes());
    }
    Ok(())
}

/// Check the join domain a registration names against the column's facets, and find it for
/// the dataset's owner `org`: its own domain of that name, or one whose owner made it a member
/// (`owner` picks the domain owner). Anything else is refused as unknown, naming no owner.
pub fn requested(
    conn: &Connection,
    org: i64,
    name: Option<&str>,
    owner: Option<&str>,
    spec: &columns::ColumnSpec,
) -> ApiResult<Option<JoinDomain>> {
    use ghostpii_core::Facet;
    let Some(name) = name else { return Ok(None) };
    if !spec.has(Facet::Group) && !spec.has(Facet::Fuzzy) {
        return Err(ApiError::invalid(format!(
            "join domain '{name}' was given, but the column has neither the 'group' nor the 'fuzzy' facet \
             (only those use a join domain)"
        )));
    }
    let found = usable_by(conn, org, name, owner)?;
    if let Some(own) = found.iter().find(|d| d.owner_id == org) {
        return Ok(Some(own.clone()));
    }
    match found.len() {
        1 => Ok(found.into_iter().next()),
        0 => Err(ApiError::not_found(format!(
            "join domain '{name}'{} does not exist on this keyhost or its owner has not made your organisation \
             a member: an owner creates its own with session.create_join_domain('{name}'); another owner's \
             domain is usable only after that owner adds you (session.add_join_domain_member)",
            owner.map(|o| format!(" of owner '{o}'")).unwrap_or_default()
        ))),
        _ => Err(ApiError::invalid(format!(
            "several join domains named '{name}' are usable by your organisation; name the domain's owner \
             (\"join_domain_owner\")"
        ))),
    }
}

/// The match/group/fuzzy facets exist for text, integers and dates (ids, zip codes, birth
/// dates); fixed-point numbers, floats, booleans and datetimes are refused.
pub fn check_key_facets(dtype: ghostpii_core::LogicalType, facets: &[ghostpii_core::Facet]) -> ApiResult<()> {
    use ghostpii_core::{Facet, LogicalType as L};
    let keyed: Vec<&str> = facets
        .iter()
        .filter(|f| matches!(f, Facet::Match | Facet::Group | Facet::Fuzzy))
        .map(|f| f.as_str())
        .collect();
    let ok = matches!(
        dtype,
        L::String | L::Int8 | L::Int16 | L::Int32 | L::Int64 | L::UInt8 | L::UInt16 | L::UInt32 | L::Date
    );
    if !keyed.is_empty() && !ok {
        return Err(ApiError::invalid(format!(
            "facets {keyed:?} apply to text, integer and date columns only, not to {}",
            columns::dtype_str(dtype)
        )));
    }
    if facets.contains(&Facet::Search) && dtype != L::String {
        return Err(ApiError::invalid(format!(
            "the 'search' facet (prefix, suffix and substring search) applies to text columns only, not to {}",
            columns::dtype_str(dtype)
        )));
    }
    Ok(())
}
