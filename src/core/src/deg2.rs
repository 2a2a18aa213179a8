//! The `deg2` facet: `cell = x·y + PRF(k', rid) mod 2^128` for every pair `(x, y)` of a declared
//! products group, and `x² + PRF(k'', rid)` for each member.
//!
//! Every product has its own key: the keyhost registers it as a column of its own (named by
//! [`product_column_name`], `num` facet only, bounds = the product's bounds), so its answer
//! keys, grants, audit and DP noise are those of a `num` column. The cells live in the storage
//! struct of the product's first member, as two u64 limbs (fields [`field_names`]).
//!
//! Exactness: a product's stored value is the exact product of the two stored fixed-point
//! integers (scale `s_x + s_y`). Encryption refuses groups whose declared bounds let a product
//! leave the signed 64-bit range; a sum of at most 2^63 such values never wraps 2^128, and the
//! keyhost checks `Σ |w|·max|product|·rows < 2^127` for every weighted sum it answers.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::keys::NumKey;
use crate::num::seal;

/// Prefix of the names of product columns on the keyhost.
pub const PRODUCT_PREFIX: &str = "deg2:";

/// One product stored in a column's storage struct: this column times `with` (itself for the
/// square), keyed as the keyhost column `column_id` at `epoch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    /// The other member (its name at encryption time; this column's own name for the square).
    pub with: String,
    pub column_id: i64,
    pub epoch: u32,
    /// Fixed-point scale of the product (sum of the members' scales).
    pub scale: u32,
    /// Bounds of the stored product, inclusive.
    pub bounds: (i64, i64),
}

/// Name of the keyhost column holding the products of `a` and `b` (`a == b`: the square).
/// JSON quoting keeps any column name unambiguous: `deg2:["age","bmi"]`.
pub fn product_column_name(a: &str, b: &str) -> String {
    format!(
        "{PRODUCT_PREFIX}{}",
        serde_json::to_string(&[a, b]).expect("strings serialize")
    )
}

/// The two members of a product column's name, if it is one.
pub fn parse_product_name(name: &str) -> Option<(String, String)> {
    let rest = name.strip_prefix(PRODUCT_PREFIX)?;
    let [a, b]: [String; 2] = serde_json::from_str(rest).ok()?;
    Some((a, b))
}

/// Storage fields (low limb, high limb) of the product with `with`.
pub fn field_names(with: &str) -> (String, String) {
    (format!("deg2:{with}"), format!("deg2_hi:{with}"))
}

/// Bounds of `x·y` for `x ∈ a`, `y ∈ b` (`square`: `y = x`), or `None` if some product could
/// leave the signed 64-bit range.
pub fn product_bounds(a: (i64, i64), b: (i64, i64), square: bool) -> Option<(i64, i64)> {
    let (lo, hi) = if square {
        let m = i128::from(a.0).pow(2).max(i128::from(a.1).pow(2));
        let lo = if a.0 <= 0 && a.1 >= 0 {
            0
        } else {
            i128::from(a.0).pow(2).min(i128::from(a.1).pow(2))
        };
        (lo, m)
    } else {
        let c = [
            i128::from(a.0) * i128::from(b.0),
            i128::from(a.0) * i128::from(b.1),
            i128::from(a.1) * i128::from(b.0),
            i128::from(a.1) * i128::from(b.1),
        ];
        (*c.iter().min().expect("4"), *c.iter().max().expect("4"))
    };
    Some((i64::try_from(lo).ok()?, i64::try_from(hi).ok()?))
}

/// Encrypt the products `x·y` (None where either is null; cell 0) for the given rids, in
/// parallel. Returns `Err(i)` at the first row whose product leaves the signed 64-bit range
/// (impossible when both values are inside bounds accepted by [`product_bounds`]).
pub fn encrypt_products(key: &NumKey, rids: &[u64], x: &[Option<i64>], y: &[Option<i64>]) -> Result<Vec<u128>, usize> {
    assert!(rids.len() == x.len() && x.len() == y.len(), "one rid per value");
    let masks = key.masks(rids);
    masks
        .par_iter()
        .zip(x.par_iter().zip(y.par_iter()))
        .enumerate()
        .map(|(i, (&m, (a, b)))| match (a, b) {
            (Some(a), Some(b)) => a.checked_mul(*b).map(|p| seal(m, p)).ok_or(i),
            _ => Ok(0),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::RootKey;
    use crate::num::{open, unmask_sum};

    #[test]
    fn names_round_trip_and_stay_unambiguous() {
        let n = product_column_name("a,b", "c\"d");
        assert_eq!(parse_product_name(&n), Some(("a,b".into(), "c\"d".into())));
        assert_eq!(parse_product_name("age"), None);
        assert_eq!(parse_product_name("deg2:[1,2]"), None);
    }

    #[test]
    fn bounds_of_products_and_squares() {
        assert_eq!(product_bounds((-3, 5), (-3, 5), true), Some((0, 25)));
        assert_eq!(product_bounds((2, 5), (2, 5), true), Some((4, 25)));
        assert_eq!(product_bounds((-3, 5), (-2, 7), false), Some((-21, 35)));
        assert_eq!(product_bounds((0, 1 << 31), (0, 1 << 31), false), Some((0, 1 << 62)));
        assert_eq!(product_bounds((0, 1 << 32), (0, 1 << 31), false), None);
        assert_eq!(product_bounds((i64::MIN, 0), (i64::MIN, 0), true), None);
    }

    #[test]
    fn products_open_and_sum_exactly_at_the_bounds() {
        let k = RootKey::generate().derive("p").num;
        let rids: Vec<u64> = (1..=1000).collect();
        let x: Vec<Option<i64>> = (0..1000)
            .map(|i| Some(if i % 3 == 0 { None } else { Some(3_037_000_499i64) }).flatten())
            .collect();
        let y = x.clone();
        let cells = encrypt_products(&k, &rids, &x, &y).unwrap();
        let masks = k.masks(&rids);
        let mut sum = 0u128;
        let mut want = 0i128;
        let mut valid = Vec::new();
        for i in 0..1000 {
            if let (Some(a), Some(b)) = (x[i], y[i]) {
                assert_eq!(open(cells[i], masks[i]), a * b);
                sum = sum.wrapping_add(cells[i]);
                want += i128::from(a * b);
                valid.push(rids[i]);
            }
        }
        assert_eq!(unmask_sum(sum, k.sum_masks(&valid)), want);
        assert_eq!(encrypt_products(&k, &[1], &[Some(i64::MAX)], &[Some(2)]), Err(0));
    }
}
