//! The span rule of `score` answer keys: an identity may obtain per-row values `x·w` for weight
//! vectors `w` over the columns of a dataset only as long as the vectors answered to it on that
//! dataset do not span a unit vector `e_j` (that would let it compute column `j` row by row:
//! `x_j = Σ c_v · (x·v)`).
//!
//! The test is exact over the rationals: `e_j ∈ span(V)` iff `rank([V; e_j]) = rank(V)`, with
//! ranks from fraction-free Gaussian elimination (Bareiss) on big integers. The keyhost keeps,
//! per identity × dataset, the weight vectors that enlarged the span (a basis of everything
//! answered; a vector already in the span is answered again without being stored). The table is
//! read and written only here, in the record transaction of the answer key and its audit row.

use std::collections::BTreeSet;

use crate::params;
use crate::store::Connection;
use num_bigint::BigInt;
use num_traits::Zero;

use crate::error::{reason, ApiError, ApiResult};

/// A weight vector: `(column_id, integer weight)`, sorted by column id, no zero weights.
pub type Vector = Vec<(i64, i64)>;

/// The canonical text of a vector (its key in the table): `id:weight` joined by commas.
pub fn encode(v: &[(i64, i64)]) -> String {
    v.iter().map(|(c, w)| format!("{c}:{w}")).collect::<Vec<_>>().join(",")
}

fn decode(s: &str) -> Option<Vector> {
    s.split(',')
        .map(|p| {
            let (c, w) = p.split_once(':')?;
            Some((c.parse().ok()?, w.parse().ok()?))
        })
        .collect()
}

/// The rank of the rows of `m` (all of one length) over the rationals.
fn rank(mut m: Vec<Vec<BigInt>>) -> usize {
    let cols = m.first().map_or(0, Vec::len);
    let mut r = 0;
    let mut prev = BigInt::from(1);
    for c in 0..cols {
        let Some(p) = (r..m.len()).find(|&i| !m[i][c].is_zero()) else {
            continue;
        };
        m.swap(r, p);
        for i in r + 1..m.len() {
            for j in c + 1..cols {
                // Bareiss: the division by the previous pivot is exact
                let v = (&m[r][c] * &m[i][j] - &m[i][c] * &m[r][j]) / &prev;
                m[i][j] = v;
            }
            m[i][c] = BigInt::zero();
        }
        prev = m[r][c].clone();
        r += 1;
        if r == m.len() {
            break;
        }
    }
    r
}

/// Dense rows of `vectors` over `columns` (sorted).
fn dense(vectors: &[&[(i64, i64)]], columns: &[i64]) -> Vec<Vec<BigInt>> {
    vectors
        .iter()
        .map(|v| {
            let mut row = vec![BigInt::zero(); columns.len()];
            for (c, w) in v.iter() {
                let i = columns.binary_search(c).expect("column in the union");
                row[i] = BigInt::from(*w);
            }
            row
        })
        .collect()
}

/// What answering `v` after `basis` would mean.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// `v` lies in the span already: nothing new is learned about the span.
    InSpan,
    /// `v` enlarges the span, which still contains no unit vector.
    Enlarges,
    /// `v` with `basis` spans the unit vector of this column.
    Determines(i64),
}

/// Decide `v` against the vectors already answered (exact rational ranks).
pub fn judge(basis: &[Vector], v: &[(i64, i64)]) -> Verdict {
    let columns: Vec<i64> = basis
        .iter()
        .flatten()
        .chain(v)
        .map(|(c, _)| *c)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut rows: Vec<&[(i64, i64)]> = basis.iter().map(Vec::as_slice).collect();
    let before = rank(dense(&rows, &columns));
    rows.push(v);
    let after = rank(dense(&rows, &columns));
    if after == before {
        return Verdict::InSpan;
    }
    for &c in &columns {
        let unit = [(c, 1i64)];
        let mut with_unit = rows.clone();
        with_unit.push(&unit);
        if rank(dense(&with_unit, &columns)) == after {
            return Verdict::Determines(c);
        }
    }
    Verdict::Enlarges
}

/// The vectors that enlarged the span of what was answered to the identity on the dataset.
pub fn basis(conn: &Connection, identity_id: i64, dataset_id: i64) -> ApiResult<Vec<Vector>> {
    let mut st = conn.prepare_cached(
        "SELECT vector FROM score_vectors WHERE identity_id = ?1 AND dataset_id = ?2 ORDER BY first_audit",
    )?;
    let rows = st.query_map(params![identity_id, dataset_id], |r| r.get::<_, String>(0))?;
    let mut out = Vec::new();
    for s in rows {
        let s = s?;
        out.push(decode(&s).ok_or_else(|| ApiError::internal("score span", &"stored weight vector is malformed"))?);
    }
    Ok(out)
}

/// Remember `v` as answered, if it enlarged the span (same transaction as its audit row).
pub fn remember(
    conn: &Connection,
    identity_id: i64,
    dataset_id: i64,
    v: &[(i64, i64)],
    audit_index: i64,
) -> ApiResult<()> {
    if judge(&basis(conn, identity_id, dataset_id)?, v) != Verdict::Enlarges {
        return Ok(());
    }
    conn.prepare_cached(
        "INSERT INTO score_vectors (identity_id, dataset_id, vector, first_audit) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![identity_id, dataset_id, encode(v), audit_index])?;
    Ok(())
}

/// The stateful check of a score answer key: refuse `v` if, with the vectors already answered,
/// it would span a unit vector (`score_span`), or if it would enlarge the span beyond `max`
/// independent vectors (`max_vectors`). `names` maps column ids to names for the messages.
pub fn check(
    conn: &Connection,
    identity_id: i64,
    dataset_id: i64,
    dataset: &str,
    v: &[(i64, i64)],
    max: Option<u64>,
    names: &[(i64, String)],
) -> ApiResult<()> {
    let basis = basis(conn, identity_id, dataset_id)?;
    let name = |c: i64| {
        names
            .iter()
            .find(|(id, _)| *id == c)
            .map_or_else(|| format!("#{c}"), |(_, n)| n.clone())
    };
    match judge(&basis, v) {
        Verdict::InSpan => Ok(()),
        Verdict::Determines(c) => Err(ApiError::refused(
            reason::SCORE_SPAN,
            format!(
                "this weight vector, with the {} independent weight vector(s) already answered to this identity \
                 on dataset '{dataset}', would span the unit vector of column '{}': scores with them would \
                 determine that column row by row, so it is not answered; score with a vector already answered \
                 (or a combination of them), or ask the owner for a decrypt grant",
                basis.len(),
                name(c)
            ),
        )),
        Verdict::Enlarges => match max {
            Some(m) if basis.len() as u64 >= m => Err(ApiError::refused(
                reason::MAX_VECTORS,
                format!(
                    "{} independent weight vector(s) were already answered to this identity on dataset \
                     '{dataset}'; its score grants allow at most {m}: score with a vector already answered",
                    basis.len()
                ),
            )),
            _ => Ok(()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(pairs: &[(i64, i64)]) -> Vector {
        pairs.to_vec()
    }

    #[test]
    fn a_single_column_is_its_own_unit_vector() {
        assert_eq!(judge(&[], &v(&[(3, 7)])), Verdict::Determines(3));
        assert_eq!(judge(&[], &v(&[(1, 2), (2, 5)])), Verdict::Enlarges);
    }

    #[test]
    fn w_and_w_plus_a_unit_vector_are_refused() {
        let w1 = v(&[(1, 3), (2, -4), (3, 5)]);
        let w2 = v(&[(1, 3), (2, -3), (3, 5)]); // w1 + e_2
        assert_eq!(judge(std::slice::from_ref(&w1), &w2), Verdict::Determines(2));
    }

    #[test]
    fn the_same_vector_and_its_multiples_are_in_the_span() {
        let w = v(&[(1, 3), (2, -4)]);
        assert_eq!(judge(std::slice::from_ref(&w), &w), Verdict::InSpan);
        assert_eq!(judge(std::slice::from_ref(&w), &v(&[(1, -6), (2, 8)])), Verdict::InSpan);
    }

    #[test]
    fn d_independent_vectors_are_refused_at_the_last_one_or_earlier() {
        // over 4 columns, generic vectors: 3 are fine, the 4th spans everything
        let vs = [
            v(&[(1, 1), (2, 2), (3, 3), (4, 5)]),
            v(&[(1, 7), (2, -1), (3, 2), (4, 1)]),
            v(&[(1, 2), (2, 9), (3, -4), (4, 3)]),
            v(&[(1, 5), (2, 1), (3, 1), (4, -8)]),
        ];
        let mut basis = Vec::new();
        for w in &vs[..3] {
            assert_eq!(judge(&basis, w), Verdict::Enlarges, "{w:?}");
            basis.push(w.clone());
        }
        assert!(matches!(judge(&basis, &vs[3]), Verdict::Determines(_)));
        // two vectors that differ only on two columns span (e_1 − e_2)·k, and with a third that
        // separates them they span e_1
        let a = v(&[(1, 1), (2, 1), (3, 1)]);
        let b = v(&[(1, 2), (2, 1), (3, 1)]); // a + e_1
        assert_eq!(judge(&[a], &b), Verdict::Determines(1));
    }

    #[test]
    fn vectors_over_other_columns_are_embedded_in_one_space() {
        let a = v(&[(1, 1), (2, 1)]);
        let b = v(&[(2, 1), (3, 1)]);
        let c = v(&[(1, 1), (3, 1)]); // a + c − b = 2·e_1
        assert_eq!(judge(std::slice::from_ref(&a), &b), Verdict::Enlarges);
        assert_eq!(judge(&[a, b], &c), Verdict::Determines(1));
    }

    #[test]
    fn large_weights_are_exact() {
        let big = i64::MAX - 1;
        let a = v(&[(1, big), (2, big - 1)]);
        let b = v(&[(1, big - 1), (2, big - 2)]); // independent of a, and spans e_1, e_2
        assert!(matches!(judge(std::slice::from_ref(&a), &b), Verdict::Determines(_)));
        assert_eq!(judge(&[a], &v(&[(1, big), (2, big - 1)])), Verdict::InSpan);
    }

    /// Rank by elimination without division (entries grow, fine for small matrices).
    fn naive_rank(mut m: Vec<Vec<BigInt>>) -> usize {
        let cols = m.first().map_or(0, Vec::len);
        let mut r = 0;
        for c in 0..cols {
            let Some(p) = (r..m.len()).find(|&i| !m[i][c].is_zero()) else {
                continue;
            };
            m.swap(r, p);
            for i in r + 1..m.len() {
                let (a, b) = (m[r][c].clone(), m[i][c].clone());
                let pivot = m[r].clone();
                for (x, p) in m[i].iter_mut().zip(&pivot) {
                    *x = &a * &*x - &b * p;
                }
            }
            r += 1;
        }
        r
    }

    #[test]
    fn bareiss_rank_agrees_with_plain_elimination() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        for _ in 0..2000 {
            let (rows, cols) = (rng.gen_range(1..7), rng.gen_range(1..7));
            let m: Vec<Vec<BigInt>> = (0..rows)
                .map(|_| {
                    (0..cols)
                        .map(|_| BigInt::from(rng.gen_range(-3i64..4) * rng.gen_range(0..2)))
                        .collect()
                })
                .collect();
            assert_eq!(rank(m.clone()), naive_rank(m.clone()), "{m:?}");
        }
    }

    #[test]
    fn vectors_round_trip_through_their_text() {
        let w = v(&[(1, -3), (12, i64::MIN), (40, i64::MAX)]);
        assert_eq!(decode(&encode(&w)), Some(w));
    }
}
