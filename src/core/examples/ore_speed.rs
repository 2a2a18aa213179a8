//! ORE throughput on this machine: `cargo run --release -p ghostpii-core --example ore_speed`.

use std::cmp::Ordering;
use std::time::Instant;

use ghostpii_core::{OreParams, OreToken, RootKey};

fn main() {
    let k = RootKey::generate().derive("speed").ord;
    let p = OreParams::for_bounds(-(1 << 23), (1 << 23) - 1);
    let vals: Vec<Option<i64>> = (0..200_000).map(|i| Some(i * 37 % 40_000 - 20_000)).collect();
    let t = Instant::now();
    let cts = k.encrypt_many(&p, &vals).expect("values are in the domain");
    println!(
        "encrypt: {:.0} ns/value (all cores)",
        t.elapsed().as_nanos() as f64 / vals.len() as f64
    );
    let tok = OreToken::parse(&k.token(&p, "speed", 0).expect("in domain"), "speed").expect("fresh token");
    let t = Instant::now();
    let below = cts
        .iter()
        .filter(|c| matches!(tok.compare(c.as_deref().expect("no nulls")), Ok(Ordering::Less)))
        .count();
    println!(
        "compare: {:.1} ns/row (one thread); {below} values above 0",
        t.elapsed().as_nanos() as f64 / cts.len() as f64
    );
}
