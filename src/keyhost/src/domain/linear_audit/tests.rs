//! The disclosure rule against attacks and against an independent brute-force search over
//! small integer tables.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;

const MAX: usize = 1_000_000;

fn set(rids: &[u64]) -> RidSet {
    RidSet::from_unsorted(rids)
}

fn sum_of(column: i64, rids: &[u64], min_rows: u64) -> Query {
    Query {
        terms: vec![(column, 1)],
        classes: vec![(1, set(rids))],
        min_rows,
    }
}

fn block(from: u64, n: u64) -> Vec<u64> {
    (from..from + n).collect()
}

#[test]
fn the_four_query_tracker_is_refused() {
    // r = row 1; A, B, C, D blocks of 10 rows
    let (a, b, c, d) = (block(10, 10), block(20, 10), block(30, 10), block(40, 10));
    let mut s = AuditState::default();
    let q1: Vec<u64> = [vec![1], a.clone(), b.clone()].concat();
    assert!(s.try_answer(&sum_of(7, &q1, 10), MAX).is_ok());
    assert!(s.try_answer(&sum_of(7, &[a, c.clone()].concat(), 10), MAX).is_ok());
    // B + D splits {r} ∪ B: the remainder {r} outside the query is the leak
    assert_eq!(
        s.try_answer(&sum_of(7, &[b, d.clone()].concat(), 10), MAX),
        Err(Refusal::Disclosure)
    );
    assert!(s.try_answer(&sum_of(7, &[c, d].concat(), 10), MAX).is_ok());
}

#[test]
fn the_three_query_chain_is_refused() {
    let (a, c) = (block(10, 10), block(30, 10));
    let mut s = AuditState::default();
    assert!(s.try_answer(&sum_of(7, &a, 10), MAX).is_ok());
    assert!(s.try_answer(&sum_of(7, &[a, c.clone()].concat(), 10), MAX).is_ok());
    assert_eq!(
        s.try_answer(&sum_of(7, &[vec![1], c].concat(), 10), MAX),
        Err(Refusal::Disclosure)
    );
}

#[test]
fn multiplicities_that_pack_rows_are_refused() {
    // attack 1: 10 rows, 4 of them counted 721·121^j times, the other 6 once
    let mut s = AuditState::default();
    let mut classes: Vec<(u64, RidSet)> = (0..4u64).map(|j| (721 * 121u64.pow(j as u32), set(&[1 + j]))).collect();
    classes.push((1, set(&block(5, 6))));
    let q = Query {
        terms: vec![(1, 1)],
        classes,
        min_rows: 10,
    };
    assert_eq!(s.try_answer(&q, MAX), Err(Refusal::Disclosure));
    assert_eq!(s.atoms(), 0, "a refusal leaves nothing behind");
    // the same rows counted alike are answered
    assert!(s.try_answer(&sum_of(1, &block(1, 10), 10), MAX).is_ok());
    // two rows each counted twice (a join) inside a 10-row sum: atoms of 2 and 8 < 10
    let q = Query {
        terms: vec![(1, 1)],
        classes: vec![(1, set(&block(3, 8))), (2, set(&[1, 2]))],
        min_rows: 10,
    };
    assert_eq!(s.try_answer(&q, MAX), Err(Refusal::Disclosure));
}

#[test]
fn per_row_weights_that_pack_rows_are_refused() {
    // attack 2: a Gram entry weighted 121^i over 10 rows — one class per distinct weight
    let mut s = AuditState::default();
    let q = Query {
        terms: vec![(1, 1)],
        classes: (0..10u64).map(|i| (121u64.pow(i as u32), set(&[1 + i]))).collect(),
        min_rows: 10,
    };
    assert_eq!(s.try_answer(&q, MAX), Err(Refusal::Disclosure));
    // a feature with two values on 10 + 10 rows is answered under min_rows 10
    let q = Query {
        terms: vec![(1, 1)],
        classes: vec![(1, set(&block(1, 10))), (3, set(&block(11, 10)))],
        min_rows: 10,
    };
    assert!(s.try_answer(&q, MAX).is_ok());
}

#[test]
fn overlapping_pairs_of_squares_are_refused() {
    // attack 3: Gram(A) and Gram(A ∪ {r_i, r_i+1}) for a chain of pairs
    let gram = |rows: &[u64], min_rows| -> Vec<Query> {
        (1..=3)
            .map(|c| Query {
                terms: vec![(c, 1)],
                classes: vec![(1, set(rows))],
                min_rows,
            })
            .collect()
    };
    let a = block(100, 10);
    for min_rows in [2, 10] {
        let mut s = AuditState::default();
        assert!(s.try_answer_many(&gram(&a, min_rows), MAX).is_ok());
        let first = s.try_answer_many(&gram(&[a.clone(), vec![1, 2]].concat(), min_rows), MAX);
        if min_rows == 10 {
            assert_eq!(first, Err(Refusal::Disclosure));
            continue;
        }
        // under min_rows 2 the pair's (Σx, Σx²) is answered, but the chain cannot go on
        assert!(first.is_ok());
        assert_eq!(
            s.try_answer_many(&gram(&[a.clone(), vec![2, 3]].concat(), min_rows), MAX),
            Err(Refusal::Disclosure)
        );
    }
}

#[test]
fn min_rows_is_kept_per_atom_across_columns() {
    let mut s = AuditState::default();
    // column 1 under min_rows 10 answers rows 1..=20
    assert!(s.try_answer(&sum_of(1, &block(1, 20), 10), MAX).is_ok());
    // column 2 under min_rows 2 may not split those rows below 10
    assert_eq!(s.try_answer(&sum_of(2, &block(1, 5), 2), MAX), Err(Refusal::Disclosure));
    assert!(s.try_answer(&sum_of(2, &block(1, 10), 2), MAX).is_ok());
    // rows no column-1 answer touched can be split to 2
    assert!(s.try_answer(&sum_of(2, &block(50, 2), 2), MAX).is_ok());
    assert!(s.try_answer(&sum_of(2, &block(50, 4), 2), MAX).is_ok());
    // … but now they carry need 2 only, and column 1 raises it: 2 < 10
    assert_eq!(
        s.try_answer(&sum_of(1, &block(50, 4), 10), MAX),
        Err(Refusal::Disclosure)
    );
}

#[test]
fn a_refusal_leaves_the_state_as_it_was() {
    let mut s = AuditState::default();
    for g in 0..10u64 {
        assert!(s.try_answer(&sum_of(1, &block(1 + 10 * g, 10), 5), MAX).is_ok());
    }
    let before = codec::encode(&s);
    // a batch whose last group splits an atom too small: nothing of it stays
    let qs: Vec<Query> = vec![
        sum_of(1, &block(200, 10), 5),
        sum_of(1, &block(1, 20), 5),
        sum_of(1, &block(21, 7), 5),
    ];
    assert_eq!(s.try_answer_many(&qs, MAX), Err(Refusal::Disclosure));
    assert_eq!(codec::encode(&s), before);
    // refusals depend only on what was answered: the same query twice, the same verdict
    assert_eq!(s.try_answer_many(&qs, MAX), Err(Refusal::Disclosure));
    assert!(s.try_answer_many(&qs[..2], MAX).is_ok());
}

#[test]
fn legitimate_work_is_answered() {
    let mut s = AuditState::default();
    // 100 disjoint groups of 5 rows, then the total, then the same again
    let groups: Vec<Query> = (0..100u64).map(|g| sum_of(1, &block(1 + 5 * g, 5), 5)).collect();
    assert_eq!(s.try_answer_many(&groups, MAX), Ok(Verdict::Refined));
    assert_eq!(s.try_answer(&sum_of(1, &block(1, 500), 5), MAX), Ok(Verdict::Unchanged));
    assert_eq!(s.try_answer_many(&groups, MAX), Ok(Verdict::Unchanged));
    // other columns over the same groups (var/cov: squares and products are columns too)
    for c in 2..=4 {
        let qs: Vec<Query> = (0..100u64).map(|g| sum_of(c, &block(1 + 5 * g, 5), 5)).collect();
        assert_eq!(s.try_answer_many(&qs, MAX), Ok(Verdict::Unchanged));
    }
    // group_by after a filter (rows 1..=250 of 10-row groups, filter keeps 5 of each)
    let mut t = AuditState::default();
    let groups: Vec<Query> = (0..25u64).map(|g| sum_of(1, &block(1 + 10 * g, 10), 5)).collect();
    assert!(t.try_answer_many(&groups, MAX).is_ok());
    let filtered: Vec<Query> = (0..25u64).map(|g| sum_of(1, &block(1 + 10 * g, 5), 5)).collect();
    assert!(t.try_answer_many(&filtered, MAX).is_ok());
    assert_eq!(s.answered(), 501);
}

#[test]
fn the_state_is_bounded_and_survives_encoding() {
    let mut s = AuditState::default();
    for g in 0..20u64 {
        s.try_answer(&sum_of(3, &block(1 + 3 * g, 3), 3), MAX).unwrap();
    }
    let back = codec::decode(&codec::encode(&s)).unwrap();
    assert_eq!(back.entries(), s.entries());
    assert_eq!(back.atom_rows(), s.atom_rows());
    let mut back = back;
    assert_eq!(
        back.try_answer(&sum_of(3, &block(2, 2), 2), MAX),
        Err(Refusal::Disclosure),
        "the need (3) survives encoding"
    );
    assert!(matches!(
        s.try_answer(&sum_of(3, &block(500, 10), 3), 10),
        Err(Refusal::Limit(_))
    ));
    assert!(codec::decode(&[9, 1, 2]).is_err());
    assert!(codec::decode(&[]).is_err());
    // a version-1 state (the former rank audit): column 7, one atom of rows 0..=4095, no basis
    let v1 = [1u8, 1, 14, 1, 0x80, 0x20, 1, 0, 0, 0, 0, 5];
    let old = codec::decode(&v1).unwrap();
    assert_eq!(old.atoms(), 1);
    assert_eq!(old.answered(), 5);
}

// ---------------------------------------------------------------------------------------
// Brute force: small integer tables, random adversaries, an independent search for a second
// value of every cell.

/// Columns: base `a` (id 1) and `b` (id 2), values 0..=7, and the product columns `a·b` (3),
/// `a²` (4), `b²` (5), as a `deg2` facet stores them.
const NCOL: usize = 5;
const HI: i64 = 7;

fn derived(a: i64, b: i64) -> [i128; NCOL] {
    [a, b, a * b, a * a, b * b].map(i128::from)
}

/// One accepted answer as the analyst holds it: a coefficient per row and column, and the
/// value (the exact answer).
#[derive(Clone)]
struct Equation {
    coef: Vec<[i128; NCOL]>,
    value: i128,
}

fn evaluate(coef: &[[i128; NCOL]], table: &[(i64, i64)]) -> i128 {
    coef.iter()
        .zip(table)
        .map(|(c, &(a, b))| {
            let f = derived(a, b);
            (0..NCOL).map(|t| c[t] * f[t]).sum::<i128>()
        })
        .sum()
}

/// The equation of a sum descriptor.
fn equation_of(q: &Query, table: &[(i64, i64)]) -> Equation {
    let mut coef = vec![[0i128; NCOL]; table.len()];
    for &(c, w) in &q.terms {
        for (k, rids) in &q.classes {
            for r in rids.to_vec() {
                coef[r as usize][(c - 1) as usize] += i128::from(w) * i128::from(*k);
            }
        }
    }
    let value = evaluate(&coef, table);
    Equation { coef, value }
}

fn consistent(eqs: &[Equation], table: &[(i64, i64)]) -> bool {
    eqs.iter().all(|e| evaluate(&e.coef, table) == e.value)
}

/// Is there a table consistent with `eqs` in which cell (`col` ∈ {0 = a, 1 = b}, `row`) differs
/// from `table`'s? First by swapping whole rows (cheap witnesses), then by exhaustive
/// branch-and-bound over the rows the equations touch (rows no equation touches are free).
/// `None`: the search went beyond its node budget.
fn has_second_value(eqs: &[Equation], table: &[(i64, i64)], col: usize, row: usize) -> Option<bool> {
    let get = |t: (i64, i64)| if col == 0 { t.0 } else { t.1 };
    let n = table.len();
    let touched: Vec<usize> = (0..n)
        .filter(|&r| eqs.iter().any(|e| e.coef[r].iter().any(|&c| c != 0)))
        .collect();
    if !touched.contains(&row) {
        return Some(true);
    }
    for other in 0..n {
        if get(table[other]) != get(table[row]) {
            let mut t = table.to_vec();
            t.swap(row, other);
            if consistent(eqs, &t) {
                return Some(true);
            }
        }
    }
    // exhaustive: `row` first, then the rows with the largest coefficients
    let mut order: Vec<usize> = touched.iter().copied().filter(|&r| r != row).collect();
    let weight = |r: usize| {
        eqs.iter()
            .flat_map(|e| e.coef[r])
            .map(i128::unsigned_abs)
            .max()
            .unwrap_or(0)
    };
    order.sort_by_key(|&r| std::cmp::Reverse(weight(r)));
    order.insert(0, row);
    let tuples: Vec<(i64, i64)> = (0..=HI).flat_map(|a| (0..=HI).map(move |b| (a, b))).collect();
    // contribution of each tuple at each position to each equation, and the suffix ranges
    let m = eqs.len();
    let contrib: Vec<Vec<Vec<i128>>> = order
        .iter()
        .map(|&r| {
            tuples
                .iter()
                .map(|&(a, b)| {
                    let f = derived(a, b);
                    eqs.iter()
                        .map(|e| (0..NCOL).map(|t| e.coef[r][t] * f[t]).sum())
                        .collect()
                })
                .collect()
        })
        .collect();
    let mut lo = vec![vec![0i128; m]; order.len() + 1];
    let mut hi = vec![vec![0i128; m]; order.len() + 1];
    for p in (0..order.len()).rev() {
        for i in 0..m {
            let (mn, mx) = contrib[p]
                .iter()
                .fold((i128::MAX, i128::MIN), |(a, b), c| (a.min(c[i]), b.max(c[i])));
            lo[p][i] = lo[p + 1][i] + mn;
            hi[p][i] = hi[p + 1][i] + mx;
        }
    }
    let targets: Vec<i128> = eqs.iter().map(|e| e.value).collect();
    struct Search<'a> {
        contrib: &'a [Vec<Vec<i128>>],
        lo: &'a [Vec<i128>],
        hi: &'a [Vec<i128>],
        targets: &'a [i128],
        allowed0: Vec<bool>,
        nodes: u64,
    }
    fn dfs(s: &mut Search<'_>, p: usize, partial: &mut Vec<i128>) -> Option<bool> {
        s.nodes += 1;
        if s.nodes > 20_000_000 {
            return None;
        }
        let m = partial.len();
        if (0..m).any(|i| {
            let rest = s.targets[i] - partial[i];
            rest < s.lo[p][i] || rest > s.hi[p][i]
        }) {
            return Some(false);
        }
        if p == s.contrib.len() {
            return Some(true);
        }
        for (ti, c) in s.contrib[p].iter().enumerate() {
            if p == 0 && !s.allowed0[ti] {
                continue;
            }
            for i in 0..m {
                partial[i] += c[i];
            }
            let found = dfs(s, p + 1, partial);
            for i in 0..m {
                partial[i] -= c[i];
            }
            match found {
                Some(false) => {}
                other => return other,
            }
        }
        Some(false)
    }
    let mut s = Search {
        contrib: &contrib,
        lo: &lo,
        hi: &hi,
        targets: &targets,
        allowed0: tuples.iter().map(|&t| get(t) != get(table[row])).collect(),
        nodes: 0,
    };
    dfs(&mut s, 0, &mut vec![0; m])
}

/// Audit classes of per-row weights `u` (as `gram.rs` builds them): positive and negative
/// parts, one class per distinct |u|.
fn weight_queries(column: i64, u: &[i64], min_rows: u64) -> Vec<Query> {
    let mut out = Vec::new();
    for neg in [false, true] {
        let mut by: std::collections::BTreeMap<u64, Vec<u64>> = Default::default();
        for (r, &w) in u.iter().enumerate() {
            if (w > 0 && !neg) || (w < 0 && neg) {
                by.entry(w.unsigned_abs()).or_default().push(r as u64);
            }
        }
        if !by.is_empty() {
            out.push(Query {
                terms: vec![(column, 1)],
                classes: by.into_iter().map(|(k, r)| (k, set(&r))).collect(),
                min_rows,
            });
        }
    }
    out
}

/// One adversary on one random table: returns (accepted, refused, cells checked).
fn brute_force_adversary(seed: u64) -> (usize, usize, usize) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = rng.gen_range(8..=12usize);
    let table: Vec<(i64, i64)> = (0..n).map(|_| (rng.gen_range(0..=HI), rng.gen_range(0..=HI))).collect();
    let min_rows = rng.gen_range(2..=3u64);
    let mut s = AuditState::default();
    let mut eqs: Vec<Equation> = Vec::new();
    let (mut accepted, mut refused, mut checked) = (0, 0, 0);
    let big = || 1i64 << 20;
    let mut prev: Vec<u64> = Vec::new();
    for step in 0..24 {
        let p = rng.gen_range(0.3..0.95);
        let mut rows: Vec<u64> = (0..n as u64).filter(|_| rng.gen_bool(p)).collect();
        if rows.is_empty() {
            rows.push(0);
        }
        // (the audit's queries, the analyst's equations)
        let (qs, new_eqs): (Vec<Query>, Vec<Equation>) = match rng.gen_range(0..5) {
            0 => {
                // a sum: one or two terms, weights small or up to 2^20, random multiplicities
                let nterms = rng.gen_range(1..=2);
                let terms: Vec<(i64, i64)> = (0..nterms)
                    .map(|_| {
                        let w = if rng.gen_bool(0.5) {
                            rng.gen_range(1..=3)
                        } else {
                            rng.gen_range(1..=big())
                        };
                        (rng.gen_range(1..=NCOL as i64), if rng.gen_bool(0.3) { -w } else { w })
                    })
                    .collect();
                let mut by: std::collections::BTreeMap<u64, Vec<u64>> = Default::default();
                for &r in &rows {
                    let k = if rng.gen_bool(0.3) {
                        rng.gen_range(1..=big() as u64)
                    } else {
                        1
                    };
                    by.entry(k).or_default().push(r);
                }
                let q = Query {
                    terms,
                    classes: by.into_iter().map(|(k, r)| (k, set(&r))).collect(),
                    min_rows,
                };
                let e = equation_of(&q, &table);
                (vec![q], vec![e])
            }
            1 => {
                // packing: a few rows counted M·8^j times (M above the rest's sum), the rest once
                let m = 8 * n as u64 + 1;
                let packed = rng.gen_range(2..=4usize).min(rows.len());
                let mut classes: Vec<(u64, RidSet)> = rows[..packed]
                    .iter()
                    .enumerate()
                    .map(|(j, &r)| (m * 8u64.pow(j as u32), set(&[r])))
                    .collect();
                if rows.len() > packed {
                    classes.push((1, set(&rows[packed..])));
                }
                let q = Query {
                    terms: vec![(rng.gen_range(1..=2), 1)],
                    classes,
                    min_rows,
                };
                let e = equation_of(&q, &table);
                (vec![q], vec![e])
            }
            2 | 3 => {
                // a Gram matrix over the rows: every column once, plus perhaps a `dot` entry
                // weighted per row by a plaintext feature
                let mut qs: Vec<Query> = (1..=NCOL as i64)
                    .map(|c| Query {
                        terms: vec![(c, 1)],
                        classes: vec![(1, set(&rows))],
                        min_rows,
                    })
                    .collect();
                let mut es: Vec<Equation> = qs.iter().map(|q| equation_of(q, &table)).collect();
                if rng.gen_bool(0.5) {
                    let spread = if rng.gen_bool(0.5) { 3 } else { big() };
                    let u: Vec<i64> = (0..n as u64)
                        .map(|r| {
                            if rows.contains(&r) {
                                rng.gen_range(-spread..=spread)
                            } else {
                                0
                            }
                        })
                        .collect();
                    let c = rng.gen_range(1..=NCOL as i64);
                    let mut coef = vec![[0i128; NCOL]; n];
                    for r in 0..n {
                        coef[r][(c - 1) as usize] = i128::from(u[r]);
                    }
                    let value = evaluate(&coef, &table);
                    es.push(Equation { coef, value });
                    qs.extend(weight_queries(c, &u, min_rows));
                }
                (qs, es)
            }
            _ => {
                // squares over the previous rows plus a pair (the chain of attack 3)
                let i = (step % (n - 1)) as u64;
                let mut with = prev.clone();
                with.extend([i, i + 1]);
                with.sort_unstable();
                with.dedup();
                let qs: Vec<Query> = (1..=NCOL as i64)
                    .map(|c| Query {
                        terms: vec![(c, 1)],
                        classes: vec![(1, set(&with))],
                        min_rows,
                    })
                    .collect();
                let es = qs.iter().map(|q| equation_of(q, &table)).collect();
                (qs, es)
            }
        };
        prev = rows;
        match s.try_answer_many(&qs, MAX) {
            Ok(_) => {
                accepted += 1;
                eqs.extend(new_eqs);
                eqs.retain(|e| e.coef.iter().any(|c| c.iter().any(|&x| x != 0)));
                let atoms = s.atom_rows();
                for row in 0..n {
                    for col in 0..2 {
                        let get = |r: usize| if col == 0 { table[r].0 } else { table[r].1 };
                        // the documented residual: an atom of two or more rows that all hold
                        // one value (a single row is no residual: it is the leak)
                        let atom = atoms.iter().find(|a| a.contains(&(row as u64)));
                        if atom.is_some_and(|a| a.len() >= 2 && a.iter().all(|&r| get(r as usize) == get(row))) {
                            continue;
                        }
                        checked += 1;
                        match has_second_value(&eqs, &table, col, row) {
                            Some(true) => {}
                            Some(false) => panic!(
                                "seed {seed}, step {step}: after {accepted} accepted answers the cell \
                                 (column {col}, row {row}) has a single possible value"
                            ),
                            None => panic!("seed {seed}, step {step}: the search went beyond its budget"),
                        }
                    }
                }
            }
            Err(Refusal::Disclosure) => refused += 1,
            Err(Refusal::Limit(m)) => panic!("limit in a small test: {m}"),
        }
    }
    (accepted, refused, checked)
}

#[test]
fn brute_force_no_cell_is_determined() {
    let (mut accepted, mut refused, mut checked) = (0, 0, 0);
    for seed in 0..150 {
        let (a, r, c) = brute_force_adversary(seed);
        accepted += a;
        refused += r;
        checked += c;
    }
    eprintln!("brute force: {accepted} accepted, {refused} refused, {checked} cells checked");
    assert!(
        accepted > 300 && refused > 300 && checked > 5_000,
        "{accepted} {refused} {checked}"
    );
}

#[test]
fn the_search_finds_determined_cells() {
    // the enumerator itself: one packing sum determines its rows, a plain sum does not
    let table: Vec<(i64, i64)> = vec![(3, 1), (5, 0), (7, 2), (0, 6), (1, 1), (2, 2), (6, 3), (4, 4)];
    let packed = Query {
        terms: vec![(1, 1)],
        classes: vec![(65, set(&[0])), (65 * 8, set(&[1])), (1, set(&[2, 3, 4, 5, 6, 7]))],
        min_rows: 2,
    };
    let eqs = vec![equation_of(&packed, &table)];
    assert_eq!(has_second_value(&eqs, &table, 0, 0), Some(false));
    assert_eq!(has_second_value(&eqs, &table, 0, 1), Some(false));
    assert_eq!(has_second_value(&eqs, &table, 0, 2), Some(true));
    assert_eq!(
        has_second_value(&eqs, &table, 1, 0),
        Some(true),
        "column b is untouched"
    );
    let plain = equation_of(&sum_of(1, &block(0, 8), 2), &table);
    assert_eq!(has_second_value(&[plain], &table, 0, 0), Some(true));
    // a pair's Σx and Σx² fix it as a set; a pair of equal values is fixed outright
    let t2: Vec<(i64, i64)> = vec![(2, 0), (2, 0), (3, 0)];
    let pair = |c| equation_of(&sum_of(c, &[0, 1], 2), &t2);
    assert_eq!(has_second_value(&[pair(1), pair(4)], &t2, 0, 0), Some(false));
}

#[test]
fn one_hundred_thousand_disjoint_groups_are_cheap() {
    let mut s = AuditState::default();
    // 1M rows in 100k groups of 10 scattered rows each (row r is in group r mod 100k)
    let queries: Vec<Query> = (0..100_000u64)
        .map(|g| sum_of(1, &(0..10).map(|i| 1 + g + i * 100_000).collect::<Vec<_>>(), 10))
        .collect();
    let t = std::time::Instant::now();
    assert_eq!(s.try_answer_many(&queries, MAX * 4), Ok(Verdict::Refined));
    let groups = t.elapsed();
    assert_eq!(
        s.try_answer(&sum_of(1, &block(1, 1_000_000), 10), MAX * 4),
        Ok(Verdict::Unchanged)
    );
    let took = t.elapsed();
    let t = std::time::Instant::now();
    let bytes = codec::encode(&s);
    let encoded = t.elapsed();
    let t = std::time::Instant::now();
    let back = codec::decode(&bytes).unwrap();
    let decoded = t.elapsed();
    assert_eq!(back.atoms(), s.atoms());
    eprintln!(
        "100k disjoint groups + total: {took:?} (groups {groups:?}), {} entries; encode {encoded:?}, \
         decode {decoded:?}, {} bytes",
        s.entries(),
        bytes.len()
    );
    assert_eq!(s.atoms(), 100_000);
}
