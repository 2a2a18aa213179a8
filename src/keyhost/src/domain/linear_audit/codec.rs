//! The audit state as bytes (stored in the database): varints throughout.
//!
//! `version 2 | atoms (size, need) | chunks (index gap, 0 atom | 1 runs of (atom, count)) |
//! answered`
//!
//! Version 1 (the former linear rank audit: `columns | atom sizes | chunks | basis rows |
//! answered`) still decodes: its atoms are kept with need 0 (every later check raises a
//! touched atom's need to at least its answer's `min_rows`); its basis is dropped.

use super::atoms::{AtomId, Atoms, Chunk, CHUNK, NONE};
use super::AuditState;

const VERSION: u8 = 2;

fn put(out: &mut Vec<u8>, mut v: u128) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
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
    put(&mut out, s.atoms.sizes.len() as u128);
    for (&n, &need) in s.atoms.sizes.iter().zip(&s.atoms.needs) {
        put(&mut out, u128::from(n));
        put(&mut out, u128::from(need));
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
    put(&mut out, u128::from(s.answered));
    out
}

pub fn decode(b: &[u8]) -> Result<AuditState, String> {
    let (&v, rest) = b.split_first().ok_or("empty audit state")?;
    if v != VERSION && v != 1 {
        return Err(format!("audit state version {v} is not {VERSION}"));
    }
    let mut r = Reader(rest);
    let max = b.len();
    if v == 1 {
        // column ids of the former rank audit
        let ncol = r.len(max)?;
        for _ in 0..ncol {
            r.get()?;
        }
    }
    let natoms = r.len(max)?;
    let mut atoms = Atoms::default();
    for _ in 0..natoms {
        atoms.sizes.push(r.u64()?);
        atoms.needs.push(if v == 1 { 0 } else { r.u64()? });
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
    if v == 1 {
        // basis rows of the former rank audit: (pivot, entries (key, numerator, denominator))
        let nrows = r.len(max)?;
        for _ in 0..nrows {
            r.u64()?;
            let n = r.len(max)?;
            for _ in 0..n {
                r.u64()?;
                r.get()?;
                r.get()?;
            }
        }
    }
    let answered = r.u64()?;
    if !r.0.is_empty() {
        return Err("trailing bytes after audit state".into());
    }
    Ok(AuditState { atoms, answered })
}
