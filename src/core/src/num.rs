//! The `num` facet: `cell = x + PRF(k, rid) mod 2^128`, x a signed 64-bit fixed-point integer.
//!
//! Sums of up to 2^64 values in the signed 64-bit range never wrap in 2^128, so every sum
//! over values inside the declared bounds is exact. The facet is additively homomorphic and
//! therefore malleable: it hides values, it does not authenticate them (the `val` facet does).

use rayon::prelude::*;

use crate::keys::NumKey;

/// A fixed-point integer printed in the user's units (`12345`, scale 2 → `123.45`).
pub fn show_scaled(v: i64, scale: u32) -> String {
    if scale == 0 {
        return v.to_string();
    }
    let p = 10i128.pow(scale);
    let v = i128::from(v);
    let sign = if v < 0 { "-" } else { "" };
    let a = v.abs();
    format!("{sign}{}.{:0width$}", a / p, a % p, width = scale as usize)
}

/// Encrypt one value.
#[inline]
pub fn seal(key_mask: u128, x: i64) -> u128 {
    (x as i128 as u128).wrapping_add(key_mask)
}

/// Encrypt values (None = null) for the given rids, in parallel. Null cells are 0.
pub fn encrypt(key: &NumKey, rids: &[u64], values: &[Option<i64>]) -> Vec<u128> {
    assert_eq!(rids.len(), values.len(), "one rid per value");
    let masks = key.masks(rids);
    masks
        .par_iter()
        .zip(values.par_iter())
        .map(|(&m, v)| v.map(|x| seal(m, x)).unwrap_or(0))
        .collect()
}

/// Decrypt one cell with its mask.
#[inline]
pub fn open(cell: u128, mask: u128) -> i64 {
    cell.wrapping_sub(mask) as i128 as i64
}

/// Recover a sum from the masked sum and its answer key. The result is a signed 128-bit integer.
#[inline]
pub fn unmask_sum(masked: u128, answer_key: u128) -> i128 {
    masked.wrapping_sub(answer_key) as i128
}

/// Split a cell into its (low, high) 64-bit limbs, as stored in Arrow.
#[inline]
pub fn to_limbs(c: u128) -> (u64, u64) {
    (c as u64, (c >> 64) as u64)
}

#[inline]
pub fn from_limbs(lo: u64, hi: u64) -> u128 {
    (lo as u128) | ((hi as u128) << 64)
}

/// Whether `Σ_t w_t · Σ_rows x_t` over `rows` rows surely fits the signed 128-bit result of a
/// masked sum, for terms `(w_t, bounds_t)` (values inside the declared bounds, or anywhere in
/// the signed 64-bit range without bounds): `Σ |w_t| · max(|lo_t|, |hi_t|) · rows < 2^127`.
/// Where it does not, the sum could wrap and must be refused, not answered.
pub fn linear_sum_fits(terms: &[(i64, Option<(i64, i64)>)], rows: u64) -> bool {
    let mut per_row: u128 = 0;
    for (w, bounds) in terms {
        let m = match bounds {
            Some((lo, hi)) => lo.unsigned_abs().max(hi.unsigned_abs()),
            None => 1u64 << 63,
        };
        // |w|·m < 2^126 always; the sum of terms may overflow only past 2^128
        match per_row.checked_add(u128::from(w.unsigned_abs()) * u128::from(m)) {
            Some(s) => per_row = s,
            None => return false,
        }
    }
    per_row.checked_mul(u128::from(rows)).is_some_and(|t| t < 1u128 << 127)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::RootKey;

    #[test]
    fn round_trip_and_exact_sums_at_the_bounds() {
        let keys = RootKey::generate().derive("t");
        let n = 10_000u64;
        let rids: Vec<u64> = (1..=n).collect();
        let vals: Vec<Option<i64>> = (0..n)
            .map(|i| Some(if i % 2 == 0 { i64::MAX } else { i64::MIN }))
            .collect();
        let cells = encrypt(&keys.num, &rids, &vals);
        let masks = keys.num.masks(&rids);
        for i in 0..n as usize {
            assert_eq!(open(cells[i], masks[i]), vals[i].unwrap());
        }
        let masked = cells.iter().fold(0u128, |a, &c| a.wrapping_add(c));
        let sum = unmask_sum(masked, keys.num.sum_masks(&rids));
        let expect: i128 = vals.iter().map(|v| v.unwrap() as i128).sum();
        assert_eq!(sum, expect);
        // all at the upper bound: a sum far beyond i64 is still exact
        let big: Vec<Option<i64>> = vec![Some(i64::MAX); n as usize];
        let cells = encrypt(&keys.num, &rids, &big);
        let masked = cells.iter().fold(0u128, |a, &c| a.wrapping_add(c));
        assert_eq!(
            unmask_sum(masked, keys.num.sum_masks(&rids)),
            i64::MAX as i128 * n as i128
        );
    }

    #[test]
    fn equal_values_give_different_ciphertexts() {
        let keys = RootKey::generate().derive("t");
        let cells = encrypt(&keys.num, &[1, 2, 3], &[Some(5), Some(5), Some(5)]);
        assert_ne!(cells[0], cells[1]);
        assert_ne!(cells[1], cells[2]);
    }

    #[test]
    fn a_wrong_answer_key_gives_garbage_not_the_sum() {
        let k1 = RootKey::generate().derive("t");
        let k2 = RootKey::generate().derive("t");
        let cells = encrypt(&k1.num, &[1, 2], &[Some(10), Some(20)]);
        let masked = cells[0].wrapping_add(cells[1]);
        assert_eq!(unmask_sum(masked, k1.num.sum_masks(&[1, 2])), 30);
        assert_ne!(unmask_sum(masked, k2.num.sum_masks(&[1, 2])), 30);
        // a key for other rows does not answer these rows
        assert_ne!(unmask_sum(masked, k1.num.sum_masks(&[1, 3])), 30);
    }

    #[test]
    fn limbs_round_trip() {
        let c = u128::MAX - 12345;
        let (lo, hi) = to_limbs(c);
        assert_eq!(from_limbs(lo, hi), c);
    }

    #[test]
    fn linear_sums_that_could_wrap_are_detected() {
        use super::linear_sum_fits;
        assert!(
            linear_sum_fits(&[(1, None)], u64::MAX >> 1),
            "plain sums of i64 never wrap"
        );
        assert!(linear_sum_fits(
            &[(1, Some((-100, 100))), (-3, Some((0, 10)))],
            1_000_000
        ));
        assert!(linear_sum_fits(&[(i64::MAX, None)], 2), "(2^63 − 1) · 2^63 · 2 < 2^127");
        assert!(!linear_sum_fits(&[(i64::MAX, None)], 3));
        assert!(linear_sum_fits(&[(i64::MAX, Some((0, 1000)))], 1 << 40));
        assert!(!linear_sum_fits(
            &[(i64::MIN, Some((i64::MIN, 0))), (i64::MIN, None)],
            1
        ));
    }
}
