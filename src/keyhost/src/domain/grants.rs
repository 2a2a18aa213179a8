//! Grants: identity × dataset × column × operation, with parameter constraints.

use crate::store::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::clock;
use crate::error::{ApiError, ApiResult};

/// Operations a grant can allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    /// Per-row keys of a column (`val` or `num` facet).
    Decrypt,
    /// Answer keys of sums (and everything built on them: count, mean, linear combinations).
    Aggregate,
    /// Comparison tokens (left ciphertexts of constants) of the `ord` facet.
    Compare,
    /// Per-row linear combinations `x·w` of `num` columns (`answer_keys/score.rs`).
    Score,
    /// Answer keys of second moments (`gram` descriptors): sums, squares and products (the
    /// `deg2` facet) among the columns of one moments grant.
    Moments,
    /// Match tokens (DET of constants) of the `match` facet: equality and is_in.
    Match,
    /// Search tokens of the `search` facet: prefix, suffix and substring search.
    Search,
    /// Per-row pads of the `group` facet: pseudonymous keys (`ghost.key()`).
    Group,
    /// Per-row sealing seeds of the `fuzzy` facet: record linkage (`gp.link`).
    Link,
    /// Row-wise circuits over FHE ciphertexts of `num` cells (`answer_keys/compute.rs`).
    Compute,
}

impl Operation {
    /// Every operation, in the order of the enum.
    pub const ALL: [Operation; 10] = [
        Operation::Decrypt,
        Operation::Aggregate,
        Operation::Compare,
        Operation::Score,
        Operation::Moments,
        Operation::Match,
        Operation::Search,
        Operation::Group,
        Operation::Link,
        Operation::Compute,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Decrypt => "decrypt",
            Operation::Aggregate => "aggregate",
            Operation::Compare => "compare",
            Operation::Score => "score",
            Operation::Moments => "moments",
            Operation::Match => "match",
            Operation::Search => "search",
            Operation::Group => "group",
            Operation::Link => "link",
            Operation::Compute => "compute",
        }
    }

    pub fn parse(s: &str) -> Option<Operation> {
        Operation::ALL.into_iter().find(|op| op.as_str() == s)
    }

    /// The operations as a readable list: `'decrypt', 'aggregate', …`.
    pub fn names() -> String {
        Operation::ALL
            .iter()
            .map(|op| format!("'{}'", op.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Constraints of a grant, as stored (constants in the column's stored-integer encoding).
/// Built and validated by `grant_params::build`; unknown parameters are refused there rather
/// than silently ignored: this keyhost enforces exactly what is listed here.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantParams {
    /// aggregate: smallest number of distinct rows an aggregate may cover (exact sums under a
    /// grant are also checked by the linear audit).
    #[serde(default)]
    pub min_rows: Option<u64>,
    /// aggregate: differential privacy per answered sum (discrete Laplace, or discrete
    /// Gaussian under zCDP when `delta` is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epsilon: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<f64>,
    /// aggregate: total privacy budget of the identity on the dataset (in ε; with `delta`
    /// converted to ρ like the per-query cost).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<f64>,
    /// compare: the only constants tokens may be issued for (stored encoding).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constants: Option<Vec<i64>>,
    /// compare: inclusive range of constants (stored encoding).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<(i64, i64)>,
    /// compare: most distinct constants ever issued to the identity on the column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_constants: Option<u64>,
    /// score: most linearly independent weight vectors ever answered to the identity on the
    /// dataset (`score_span.rs`; the span rule applies in any case).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_vectors: Option<u64>,
    /// match: the only constants match tokens may be issued for, as canonical keys
    /// (`"s:<text>"` for text, `"i:<stored integer>"` otherwise; see `match_tokens.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_constants: Option<Vec<String>>,
    /// compare: `constants` and `range` as the grant gave them (logical domain), for display.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given: Option<serde_json::Value>,
    /// moments: the columns of the grant's group; products of this column are allowed with
    /// these columns only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<String>>,
    /// group, link: the owner's explicit choice to hand pads to an identity of an organisation
    /// that holds the column's join-domain key (the domain's owner or a member), which can then
    /// dictionary-attack the pseudonyms of the rows whose pads it obtains (`docs/privacy.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain_key_holder: Option<bool>,
    /// compute: most evaluations of row-wise circuits per identity × row × column (each
    /// evaluation reveals one output about the row; see `docs/rowwise.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_evaluations: Option<u64>,
    /// compute: the only circuit ops allowed (`ghostpii_proto::circuit::OPS`); none: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ops: Option<Vec<String>>,
    /// compute: whether integer outputs may be revealed (otherwise only predicates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reveal_values: Option<bool>,
}

impl GrantParams {
    /// Whether a compare grant allows a token for the stored constant `c`.
    pub fn allows_constant(&self, c: i64) -> bool {
        self.constants.as_ref().is_none_or(|cs| cs.contains(&c))
            && self.range.is_none_or(|(lo, hi)| (lo..=hi).contains(&c))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Grant {
    pub grant_id: i64,
    pub identity: String,
    pub dataset: String,
    pub column: String,
    pub operation: Operation,
    pub params: GrantParams,
    #[serde(serialize_with = "crate::clock::serialize_micros")]
    pub created_at: i64,
    #[serde(skip)]
    pub dataset_id: i64,
}

const SELECT: &str = "SELECT g.id, i.name, d.name, g.column_name, g.operation, g.params,
                      g.created_at, g.dataset_id
                      FROM grants g JOIN identities i ON i.id = g.identity_id
                      JOIN datasets d ON d.id = g.dataset_id";

fn from_row(r: &crate::store::Row) -> crate::store::Result<Grant> {
    let op: String = r.get(4)?;
    let params: String = r.get(5)?;
    let bad =
        |i: usize, what: &str| crate::store::Error::Conversion(format!("column {i}: stored grant has invalid {what}"));
    Ok(Grant {
        grant_id: r.get(0)?,
        identity: r.get(1)?,
        dataset: r.get(2)?,
        column: r.get(3)?,
        operation: Operation::parse(&op).ok_or_else(|| bad(4, "operation"))?,
        params: serde_json::from_str(&params).map_err(|_| bad(5, "params"))?,
        created_at: r.get(6)?,
        dataset_id: r.get(7)?,
    })
}

pub fn insert(
    conn: &Connection,
    identity_id: i64,
    dataset_id: i64,
    column: &str,
    operation: Operation,
    gp: &GrantParams,
) -> ApiResult<i64> {
    let params_json = serde_json::to_string(gp).map_err(|e| ApiError::internal("grant params", &e))?;
    let new_id: i64 = conn.query_row(
        "INSERT INTO grants (identity_id, dataset_id, column_name, operation, params, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
        params![
            identity_id,
            dataset_id,
            column,
            operation.as_str(),
            params_json,
            clock::now_micros()
        ],
        crate::store::get0,
    )?;
    Ok(new_id)
}

pub fn find(conn: &Connection, grant_id: i64) -> crate::store::Result<Option<Grant>> {
    conn.query_row(
        &format!("{SELECT} WHERE g.id = ?1 AND g.revoked_at IS NULL"),
        [grant_id],
        from_row,
    )
    .optional()
}

/// Active grants, filtered. `visible_to` restricts to grants on datasets that identity owns
/// or grants held by that identity.
pub fn list(
    conn: &Connection,
    dataset: Option<&str>,
    identity: Option<&str>,
    visible_to: Option<i64>,
) -> crate::store::Result<Vec<Grant>> {
    let mut st = conn.prepare(&format!(
        "{SELECT} WHERE g.revoked_at IS NULL
         AND (CAST(?1 AS TEXT) IS NULL OR d.name = ?1) AND (CAST(?2 AS TEXT) IS NULL OR i.name = ?2)
         AND (CAST(?3 AS BIGINT) IS NULL OR d.owner_id = ?3 OR g.identity_id = ?3)
         ORDER BY g.id"
    ))?;
    let rows = st.query_map(params![dataset, identity, visible_to], from_row)?;
    rows.collect()
}

/// Active grants of `identity_id` for one operation on one column.
pub fn active_for(
    conn: &Connection,
    identity_id: i64,
    dataset_id: i64,
    column: &str,
    operation: Operation,
) -> crate::store::Result<Vec<Grant>> {
    let mut st = conn.prepare_cached(&format!(
        "{SELECT} WHERE g.revoked_at IS NULL AND g.identity_id = ?1 AND g.dataset_id = ?2
         AND g.column_name = ?3 AND g.operation = ?4 ORDER BY g.id"
    ))?;
    let rows = st.query_map(params![identity_id, dataset_id, column, operation.as_str()], from_row)?;
    rows.collect()
}

pub fn revoke(conn: &Connection, grant_id: i64) -> crate::store::Result<bool> {
    let n = conn.execute(
        "UPDATE grants SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
        params![grant_id, clock::now_micros()],
    )?;
    Ok(n > 0)
}
