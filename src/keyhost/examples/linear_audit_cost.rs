//! Cost of the linear audit on its own (no HTTP, no database): prints a Markdown table.
//!
//! `cargo run --release -p ghostpii-keyhost --example linear_audit_cost`
//! (`benchmarks/linear_audit.md` holds a run.)

use std::time::Instant;

use ghostpii_core::RidSet;
use ghostpii_keyhost::linear_audit::{AuditState, Query, Refusal, DEFAULT_MAX_ENTRIES};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const ROWS: u64 = 1_000_000;

fn sum(column: i64, rids: RidSet) -> Query {
    Query {
        terms: vec![(column, 1)],
        classes: vec![(1, rids)],
        min_rows: 2,
    }
}

fn row(what: &str, queries: usize, accepted: usize, secs: f64, s: &AuditState) {
    println!(
        "| {what} | {queries} | {accepted} | {:.3} | {:.2} | {} |",
        secs,
        secs * 1e6 / queries as f64,
        s.entries()
    );
}

fn main() {
    println!("| workload (1M rows) | sums checked | accepted | total s | µs per check | state entries |");
    println!("|---|---:|---:|---:|---:|---:|");

    // 100,000 disjoint groups of 10 scattered rows, then their total.
    let mut s = AuditState::default();
    let groups: Vec<RidSet> = (0..100_000u64)
        .map(|g| RidSet::from_sorted(&(0..10).map(|i| 1 + g + i * 100_000).collect::<Vec<_>>()))
        .collect();
    let t = Instant::now();
    // one `sums` descriptor: all groups decided together
    let qs: Vec<Query> = groups.into_iter().map(|g| sum(1, g)).collect();
    let mut ok = if s.try_answer_many(&qs, DEFAULT_MAX_ENTRIES).is_ok() {
        qs.len()
    } else {
        0
    };
    let all = RidSet::from_sorted(&(1..=ROWS).collect::<Vec<_>>());
    ok += usize::from(s.try_answer(&sum(1, all), DEFAULT_MAX_ENTRIES).is_ok());
    row(
        "100,000 disjoint groups + total",
        100_001,
        ok,
        t.elapsed().as_secs_f64(),
        &s,
    );

    // 1,000 group-by queries: each filters one to six of twenty "months" (contiguous blocks of
    // 50,000 rows, as a date filter would) and groups by one of three plaintext keys with 12,
    // 50 and 7 distinct values.
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let keys: [u64; 3] = [12, 50, 7];
    let mut s = AuditState::default();
    let mut queries = Vec::new();
    for _ in 0..1_000 {
        let m0 = rng.gen_range(0..20u64);
        let m1 = (m0 + rng.gen_range(1..=6)).min(20);
        let (a, b) = (1 + m0 * 50_000, 1 + m1 * 50_000);
        let which = rng.gen_range(0..3);
        let (k, mult) = (keys[which], [2_654_435_761u64, 40_503, 2_246_822_519][which]);
        let mut by_group: Vec<Vec<u64>> = vec![Vec::new(); k as usize];
        for r in a..b {
            // a key that is a function of the row, as a plaintext column would be
            by_group[(r.wrapping_mul(mult) >> 11) as usize % k as usize].push(r);
        }
        queries.extend(by_group.into_iter().map(|g| RidSet::from_sorted(&g)));
    }
    let (mut ok, mut refused, mut limit) = (0, 0, 0);
    let n = queries.len();
    let t = Instant::now();
    for q in queries {
        match s.try_answer(&sum(1, q), DEFAULT_MAX_ENTRIES) {
            Ok(_) => ok += 1,
            Err(Refusal::Disclosure) => refused += 1,
            Err(Refusal::Limit(_)) => limit += 1,
        }
    }
    row(
        "1,000 filtered group_by queries (7–50 groups)",
        n,
        ok,
        t.elapsed().as_secs_f64(),
        &s,
    );
    eprintln!("group_by workload: {refused} refused as disclosure, {limit} refused at the state limit");
}
