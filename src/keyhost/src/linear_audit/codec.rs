//! The audit state as bytes (stored in the database): varints throughout.
//!
//! `version 1 | columns | atom sizes | intervals (gap, length − 1, atom) | rows (pivot,
//! entries (key, numerator zigzag, denominator)) | answered`

use super::atoms::Atoms;
use super::basis::{Basis, Key, Row};
use super::rational::Rat;
use super::AuditState;

const VERSION: u8 = 1;

fn put(out: &mut Vec<u8>, mut v: u128) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zig(v: i128) -> u128 {
    ((v << 1) ^ (v >> 127)) as u128
}

fn unzig(v: u128) -> i128 {
    ((v >> 1) as i128) ^ -((v & 1) as i128)
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn get(&mut self) -> Result<u128, String> {
        let mut v: u128 = 0;
        for shift in (0..128).step_by(7) {
            let (&b, rest) = self.0.split_first().ok_or("truncated audit state")?;
            self.0 = rest;
            v |= u128::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint too long in audit state".into())
    }

    fn u64(&mut self) -> Result<u64, String> {
        u64::try_from(self.get()?).map_err(|_| "audit state value beyond 64 bits".into())
    }

    fn len(&mut self, max: usize) -> Result<usize, String> {
        let n = self.u64()? as usize;
        if n > max {
            return Err("audit state length beyond its data".into());
        }
        Ok(n)
    }
}

pub fn encode(s: &AuditState) -> Vec<u8> {
    let mut out = vec![VERSION];
    put(&mut out, s.columns.len() as u128);
    for &c in &s.columns {
        put(&mut out, zig(i128::from(c)));
    }
    put(&mut out, s.atoms.sizes.len() as u128);
    for &n in &s.atoms.sizes {
        put(&mut out, u128::from(n));
    }
    put(&mut out, s.atoms.map.len() as u128);
    let mut prev: u64 = 0;
    for (&start, &(end, atom)) in &s.atoms.map {
        put(&mut out, u128::from(start - prev));
        put(&mut out, u128::from(end - start));
        put(&mut out, u128::from(atom));
        prev = end;
    }
    put(&mut out, s.basis.rows.len() as u128);
    for (row, &p) in s.basis.rows.iter().zip(&s.basis.pivots) {
        put(&mut out, u128::from(p));
        put(&mut out, row.len() as u128);
        for (k, r) in row {
            put(&mut out, u128::from(*k));
            put(&mut out, zig(r.numer()));
            put(&mut out, r.denom() as u128);
        }
    }
    put(&mut out, u128::from(s.answered));
    out
}

pub fn decode(b: &[u8]) -> Result<AuditState, String> {
    let (&v, rest) = b.split_first().ok_or("empty audit state")?;
    if v != VERSION {
        return Err(format!("audit state version {v} is not {VERSION}"));
    }
    let mut r = Reader(rest);
    let max = b.len();
    let ncol = r.len(max)?;
    let mut columns = Vec::with_capacity(ncol);
    for _ in 0..ncol {
        columns.push(i64::try_from(unzig(r.get()?)).map_err(|_| "column id beyond 64 bits")?);
    }
    let natoms = r.len(max)?;
    let mut atoms = Atoms::default();
    for _ in 0..natoms {
        atoms.sizes.push(r.u64()?);
    }
    let nint = r.len(max)?;
    let mut prev: u64 = 0;
    for _ in 0..nint {
        let start = prev.checked_add(r.u64()?).ok_or("interval overflow")?;
        let end = start.checked_add(r.u64()?).ok_or("interval overflow")?;
        let atom = u32::try_from(r.u64()?).map_err(|_| "atom id beyond 32 bits")?;
        if atom as usize >= natoms {
            return Err("interval names an unknown atom".into());
        }
        atoms.map.insert(start, (end, atom));
        prev = end;
    }
    let nrows = r.len(max)?;
    let (mut rows, mut pivots): (Vec<Row>, Vec<Key>) = (Vec::with_capacity(nrows), Vec::with_capacity(nrows));
    for _ in 0..nrows {
        pivots.push(r.u64()?);
        let n = r.len(max)?;
        let mut row = Vec::with_capacity(n);
        for _ in 0..n {
            let k = r.u64()?;
            let num = unzig(r.get()?);
            let den = i128::try_from(r.get()?).map_err(|_| "denominator beyond 127 bits")?;
            if den <= 0 {
                return Err("non-positive denominator in audit state".into());
            }
            row.push((k, Rat::new(num, den).map_err(|_| "coefficient overflow")?));
        }
        rows.push(row);
    }
    let answered = r.u64()?;
    if !r.0.is_empty() {
        return Err("trailing bytes after audit state".into());
    }
    Ok(AuditState {
        columns,
        atoms,
        basis: Basis::from_rows(rows, pivots),
        answered,
    })
}
