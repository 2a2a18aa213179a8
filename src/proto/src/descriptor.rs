//! Computation descriptors: what one answer key is computed for (`POST /v1/answer-keys`,
//! `{"requests": [descriptor, ...]}`, one answer per descriptor, in order).
//!
//! A descriptor is tagged by `"op"`. Every type is generic over `R`, how a rid set travels:
//! the keyhost reads a base64 string or a blob marker of a request frame (its own `WireRids`);
//! clients write [`Rids`]. Everything else is typed: facets are [`Facet`], compare constants the
//! column's stored integers, match constants a [`MatchConstant`].

pub use ghostpii_core::meta::Facet;
use serde::{Deserialize, Serialize};

/// One weighted column of a sum, a `sums` batch or a score: `weight · column` at `epoch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Term {
    pub column_id: i64,
    pub epoch: u32,
    pub weight: i64,
}

/// Rows counted `k ≥ 2` times each (joins, concatenations, samples).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Repeat<R> {
    pub k: u64,
    pub rids: R,
}

/// Per-row weights of Gram entries: base64 of little-endian i64, one per row of the support
/// in rid order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Weights {
    pub values: String,
}

/// One entry of a Gram descriptor: the `num` or `deg2` column whose masked sum it opens, and
/// the index of its per-row weights in the descriptor's `weights`, if any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GramEntry {
    pub column_id: i64,
    pub epoch: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<usize>,
}

/// A match constant as the column stores it: text for text columns, the stored integer for
/// the others (integers, fixed-point numbers, dates as days, datetimes as ticks, booleans).
/// On the wire `{"text": "green"}` or `{"int": 42}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MatchConstant {
    Text(String),
    Int(i64),
}

impl MatchConstant {
    /// The constant's wire JSON.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            MatchConstant::Text(t) => serde_json::json!({ "text": t }),
            MatchConstant::Int(i) => serde_json::json!({ "int": i }),
        }
    }
}

/// What a search token searches for (the `search` facet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchKind {
    Prefix,
    Suffix,
    Substring,
    /// The `fuzzy` encoding of the constant (`ghost.similarity`), under a `link` grant.
    Similarity,
}

impl SearchKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SearchKind::Prefix => "prefix",
            SearchKind::Suffix => "suffix",
            SearchKind::Substring => "substring",
            SearchKind::Similarity => "similarity",
        }
    }
}

/// One computation descriptor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Descriptor<R> {
    /// `Σ_t w_t Σ_r k_r · mask_t(r)` over a row multiset: the key of a sealed sum or mean.
    Sum {
        dataset_id: i64,
        rids: R,
        terms: Vec<Term>,
        #[serde(default = "Vec::new", skip_serializing_if = "Vec::is_empty")]
        repeats: Vec<Repeat<R>>,
    },
    /// Per-row keys of the `val` (or `num`) facet.
    Decrypt {
        dataset_id: i64,
        column_id: i64,
        epoch: u32,
        facet: Facet,
        rids: R,
    },
    /// The comparison token (left ORE ciphertext) of one constant, a stored integer.
    Compare {
        dataset_id: i64,
        column_id: i64,
        epoch: u32,
        constant: i64,
    },
    /// Per-row masks of `x·w`: an exact per-row score.
    Score {
        dataset_id: i64,
        rids: R,
        terms: Vec<Term>,
        /// The client's fixed-point exponent (weights = terms' weights · 10^decimals / 2^scale_bits),
        /// recorded in the audit entry so owners read the real weights.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scale_bits: Option<i32>,
    },
    /// One linear combination over many groups of rows, one key per group.
    Sums {
        dataset_id: i64,
        terms: Vec<Term>,
        groups: Vec<R>,
    },
    /// Every entry of a Gram matrix over one row multiset.
    Gram {
        dataset_id: i64,
        rids: R,
        #[serde(default = "Vec::new", skip_serializing_if = "Vec::is_empty")]
        repeats: Vec<Repeat<R>>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        weights: Vec<Weights>,
        entries: Vec<GramEntry>,
    },
    /// The match token (DET) of one constant.
    Match {
        dataset_id: i64,
        column_id: i64,
        epoch: u32,
        constant: MatchConstant,
    },
    /// The search token of one constant: rows that start with it, end with it or contain it.
    Search {
        dataset_id: i64,
        column_id: i64,
        epoch: u32,
        kind: SearchKind,
        constant: String,
        /// The column's q-gram length (substring search).
        #[serde(default)]
        q: u32,
    },
    /// Per-row pads of the `group` facet, or sealing seeds of the `fuzzy` facet.
    Pads {
        dataset_id: i64,
        column_id: i64,
        epoch: u32,
        facet: Facet,
        rids: R,
    },
}

impl<R> Descriptor<R> {
    /// The `"op"` tag.
    pub fn op(&self) -> &'static str {
        match self {
            Descriptor::Sum { .. } => "sum",
            Descriptor::Decrypt { .. } => "decrypt",
            Descriptor::Compare { .. } => "compare",
            Descriptor::Score { .. } => "score",
            Descriptor::Sums { .. } => "sums",
            Descriptor::Gram { .. } => "gram",
            Descriptor::Match { .. } => "match",
            Descriptor::Search { .. } => "search",
            Descriptor::Pads { .. } => "pads",
        }
    }

    /// Every rid set the descriptor carries, main set first.
    pub fn rid_sets_mut(&mut self) -> Vec<&mut R> {
        match self {
            Descriptor::Sum { rids, repeats, .. } | Descriptor::Gram { rids, repeats, .. } => std::iter::once(rids)
                .chain(repeats.iter_mut().map(|r| &mut r.rids))
                .collect(),
            Descriptor::Decrypt { rids, .. } | Descriptor::Score { rids, .. } | Descriptor::Pads { rids, .. } => {
                vec![rids]
            }
            Descriptor::Sums { groups, .. } => groups.iter_mut().collect(),
            Descriptor::Compare { .. } | Descriptor::Match { .. } | Descriptor::Search { .. } => Vec::new(),
        }
    }

    /// The same descriptor with every rid set carried another way (`f` of each, in order:
    /// main set first, then repeat classes; a `sums` batch's groups in order).
    pub fn map_rids<S, E>(&self, mut f: impl FnMut(&R) -> Result<S, E>) -> Result<Descriptor<S>, E> {
        let repeats = |rs: &[Repeat<R>], f: &mut dyn FnMut(&R) -> Result<S, E>| {
            rs.iter()
                .map(|r| {
                    Ok(Repeat {
                        k: r.k,
                        rids: f(&r.rids)?,
                    })
                })
                .collect::<Result<Vec<_>, E>>()
        };
        Ok(match self {
            Descriptor::Sum {
                dataset_id,
                rids,
                terms,
                repeats: rs,
            } => Descriptor::Sum {
                dataset_id: *dataset_id,
                rids: f(rids)?,
                terms: terms.clone(),
                repeats: repeats(rs, &mut f)?,
            },
            Descriptor::Decrypt {
                dataset_id,
                column_id,
                epoch,
                facet,
                rids,
            } => Descriptor::Decrypt {
                dataset_id: *dataset_id,
                column_id: *column_id,
                epoch: *epoch,
                facet: *facet,
                rids: f(rids)?,
            },
            Descriptor::Compare {
                dataset_id,
                column_id,
                epoch,
                constant,
            } => Descriptor::Compare {
                dataset_id: *dataset_id,
                column_id: *column_id,
                epoch: *epoch,
                constant: *constant,
            },
            Descriptor::Score {
                dataset_id,
                rids,
                terms,
                scale_bits,
            } => Descriptor::Score {
                dataset_id: *dataset_id,
                rids: f(rids)?,
                terms: terms.clone(),
                scale_bits: *scale_bits,
            },
            Descriptor::Sums {
                dataset_id,
                terms,
                groups,
            } => Descriptor::Sums {
                dataset_id: *dataset_id,
                terms: terms.clone(),
                groups: groups.iter().map(&mut f).collect::<Result<_, E>>()?,
            },
            Descriptor::Gram {
                dataset_id,
                rids,
                repeats: rs,
                weights,
                entries,
            } => Descriptor::Gram {
                dataset_id: *dataset_id,
                rids: f(rids)?,
                repeats: repeats(rs, &mut f)?,
                weights: weights.clone(),
                entries: entries.clone(),
            },
            Descriptor::Match {
                dataset_id,
                column_id,
                epoch,
                constant,
            } => Descriptor::Match {
                dataset_id: *dataset_id,
                column_id: *column_id,
                epoch: *epoch,
                constant: constant.clone(),
            },
            Descriptor::Search {
                dataset_id,
                column_id,
                epoch,
                kind,
                constant,
                q,
            } => Descriptor::Search {
                dataset_id: *dataset_id,
                column_id: *column_id,
                epoch: *epoch,
                kind: *kind,
                constant: constant.clone(),
                q: *q,
            },
            Descriptor::Pads {
                dataset_id,
                column_id,
                epoch,
                facet,
                rids,
            } => Descriptor::Pads {
                dataset_id: *dataset_id,
                column_id: *column_id,
                epoch: *epoch,
                facet: *facet,
                rids: f(rids)?,
            },
        })
    }

    /// The dataset the descriptor is about.
    pub fn dataset_id(&self) -> i64 {
        match self {
            Descriptor::Sum { dataset_id, .. }
            | Descriptor::Decrypt { dataset_id, .. }
            | Descriptor::Compare { dataset_id, .. }
            | Descriptor::Score { dataset_id, .. }
            | Descriptor::Sums { dataset_id, .. }
            | Descriptor::Gram { dataset_id, .. }
            | Descriptor::Match { dataset_id, .. }
            | Descriptor::Search { dataset_id, .. }
            | Descriptor::Pads { dataset_id, .. } => *dataset_id,
        }
    }

    /// The main rid set, mutable.
    pub fn main_rids_mut(&mut self) -> Option<&mut R> {
        match self {
            Descriptor::Sum { rids, .. }
            | Descriptor::Decrypt { rids, .. }
            | Descriptor::Score { rids, .. }
            | Descriptor::Gram { rids, .. }
            | Descriptor::Pads { rids, .. } => Some(rids),
            Descriptor::Compare { .. }
            | Descriptor::Match { .. }
            | Descriptor::Search { .. }
            | Descriptor::Sums { .. } => None,
        }
    }

    /// The main rid set, for descriptors that have one (not `sums`, `compare`, `match`).
    pub fn main_rids(&self) -> Option<&R> {
        match self {
            Descriptor::Sum { rids, .. }
            | Descriptor::Decrypt { rids, .. }
            | Descriptor::Score { rids, .. }
            | Descriptor::Gram { rids, .. }
            | Descriptor::Pads { rids, .. } => Some(rids),
            Descriptor::Compare { .. }
            | Descriptor::Match { .. }
            | Descriptor::Search { .. }
            | Descriptor::Sums { .. } => None,
        }
    }
}

/// How a client writes a rid set: base64 of its wire encoding (`ghostpii_core::rid_encoding`),
/// or, in a request frame, a marker of the `blob`-th blob of `len` bytes after the JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Rids {
    Base64(String),
    Blob {
        #[serde(rename = "$blob")]
        blob: usize,
        len: usize,
    },
}

/// A batch of descriptors: the body of `POST /v1/answer-keys` (or the JSON of a request frame).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Requests<R> {
    pub requests: Vec<Descriptor<R>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn descriptors_read_and_write_the_wire_form() {
        let wire = json!([
            {"op": "sum", "dataset_id": 1, "rids": "AQAB", "terms": [{"column_id": 2, "epoch": 0, "weight": 1}],
             "repeats": [{"k": 2, "rids": {"$blob": 0, "len": 3}}]},
            {"op": "decrypt", "dataset_id": 1, "column_id": 2, "epoch": 0, "facet": "val", "rids": "AQAB"},
            {"op": "compare", "dataset_id": 1, "column_id": 2, "epoch": 1, "constant": -5},
            {"op": "score", "dataset_id": 1, "rids": "AQAB", "terms": [{"column_id": 2, "epoch": 0, "weight": 3}],
             "scale_bits": 16},
            {"op": "sums", "dataset_id": 1, "terms": [{"column_id": 2, "epoch": 0, "weight": -1}], "groups": ["AQAB", "AQAC"]},
            {"op": "gram", "dataset_id": 1, "rids": "AQAB", "weights": [{"values": "AAAA"}],
             "entries": [{"column_id": 2, "epoch": 0}, {"column_id": 3, "epoch": 0, "weight": 0}]},
            {"op": "match", "dataset_id": 1, "column_id": 2, "epoch": 0, "constant": {"text": "green"}},
            {"op": "match", "dataset_id": 1, "column_id": 2, "epoch": 0, "constant": {"int": 42}},
            {"op": "pads", "dataset_id": 1, "column_id": 2, "epoch": 0, "facet": "group", "rids": "AQAB"},
            {"op": "search", "dataset_id": 1, "column_id": 2, "epoch": 0, "kind": "substring", "constant": "ann", "q": 3},
        ]);
        let ds: Vec<Descriptor<Rids>> = serde_json::from_value(wire.clone()).unwrap();
        assert_eq!(serde_json::to_value(&ds).unwrap(), wire, "written back byte for byte");
        assert_eq!(
            ds.iter().map(Descriptor::op).collect::<Vec<_>>(),
            ["sum", "decrypt", "compare", "score", "sums", "gram", "match", "match", "pads", "search"]
        );
        assert!(matches!(
            ds[7],
            Descriptor::Match {
                constant: MatchConstant::Int(42),
                ..
            }
        ));
        assert_eq!(ds[0].main_rids(), Some(&Rids::Base64("AQAB".into())));
        // mapping the rid sets keeps everything else and visits main set, then repeats
        let mut seen = Vec::new();
        let mapped = ds[0]
            .map_rids(|r| {
                seen.push(r.clone());
                Ok::<_, ()>(seen.len())
            })
            .unwrap();
        assert_eq!(seen, [Rids::Base64("AQAB".into()), Rids::Blob { blob: 0, len: 3 }]);
        assert!(
            matches!(mapped, Descriptor::Sum { rids: 1, ref repeats, .. } if repeats[0].rids == 2 && repeats[0].k == 2)
        );
    }

    #[test]
    fn unknown_ops_facets_and_missing_fields_are_refused() {
        for bad in [
            json!({"op": "decrypt_everything", "dataset_id": 1}),
            json!({"op": "pads", "dataset_id": 1, "column_id": 2, "epoch": 0, "facet": "nope", "rids": "AQAB"}),
            json!({"op": "compare", "dataset_id": 1, "column_id": 2, "epoch": 0}),
            json!({"op": "compare", "dataset_id": 1, "column_id": 2, "epoch": 0, "constant": "5"}),
            json!({"op": "match", "dataset_id": 1, "column_id": 2, "epoch": 0, "constant": "green"}),
        ] {
            assert!(
                serde_json::from_value::<Descriptor<Rids>>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }
}
