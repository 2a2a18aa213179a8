//! The audit state as bytes (stored in the database): varints throughout.
//!
//! `version 1 | columns | atom sizes | chunks (index gap, 0 atom | 1 runs of (atom, count)) |
//! rows (pivot, entries (key, numerator zigzag, denominator)) | answered`

use super::atoms::{AtomId, Atoms, Chunk, CHUNK, NONE};
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
    put(&mut out, s.atoms.chunks.len() as u128);
    let mut prev: u64 = 0;
    for (&c, chunk) in &s.atoms.chunks {
        put(&mut out, u128::from(c - prev));
        prev = c;
        match chunk {
            Chunk::Uniform(a) => {
                out.push(0);
                put(&mut out, u128::from(*a));
            }
            Chunk::Dense(ids) => {
                out.push(1);
                let mut i = 0;
                while i < ids.len() {
                    let mut j = i + 1;
                    while j < ids.len() && ids[j] == ids[i] {
                        j += 1;
                    }
                    put(&mut out, u128::from(ids[i]));
                    put(&mut out, (j - i) as u128);
                    i = j;
                }
            }
        }
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
    let nchunks = r.len(max)?;
    let mut prev: u64 = 0;
    let atom = |x: u64| -> Result<AtomId, String> {
        let a = AtomId::try_from(x).map_err(|_| "atom id beyond 32 bits")?;
        if a != NONE && a as usize >= natoms {
            return Err("chunk names an unknown atom".into());
        }
        Ok(a)
    };
    for i in 0..nchunks {
        let delta = r.u64()?;
        if i > 0 && delta == 0 {
            return Err("chunks out of order in audit state".into());
        }
        let c = prev.checked_add(delta).ok_or("chunk index overflow")?;
        prev = c;
        let (&tag, rest) = r.0.split_first().ok_or("truncated audit state")?;
        r.0 = rest;
        let chunk = match tag {
            0 => Chunk::Uniform(atom(r.u64()?)?),
            1 => {
                let mut ids = Vec::with_capacity(CHUNK as usize);
                while (ids.len() as u64) < CHUNK {
                    let a = atom(r.u64()?)?;
                    let n = r.u64()?;
                    if n == 0 || ids.len() as u64 + n > CHUNK {
                        return Err("bad run in a dense chunk".into());
                    }
                    ids.extend(std::iter::repeat_n(a, n as usize));
                }
                Chunk::Dense(ids.into_boxed_slice())
            }
            t => return Err(format!("unknown chunk tag {t}")),
        };
        atoms.chunks.insert(c, chunk);
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
