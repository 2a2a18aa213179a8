//! Exact rationals on 128-bit integers. Every operation is checked: an overflow is an
//! error, which the audit turns into a refusal (it can only refuse more, never pass).

/// `n / d` in lowest terms, `d > 0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rat {
    n: i128,
    d: i128,
}

/// The exact arithmetic went beyond 128 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overflow;

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl Rat {
    pub fn int(n: i128) -> Rat {
        Rat { n, d: 1 }
    }

    /// `n / d` reduced; `d` must not be zero.
    pub fn new(n: i128, d: i128) -> Result<Rat, Overflow> {
        debug_assert!(d != 0);
        let g = gcd(n.unsigned_abs(), d.unsigned_abs()).max(1);
        let g = i128::try_from(g).map_err(|_| Overflow)?;
        let (mut n, mut d) = (n / g, d / g);
        if d < 0 {
            n = n.checked_neg().ok_or(Overflow)?;
            d = d.checked_neg().ok_or(Overflow)?;
        }
        Ok(Rat { n, d })
    }

    pub fn numer(self) -> i128 {
        self.n
    }

    pub fn denom(self) -> i128 {
        self.d
    }

    pub fn is_zero(self) -> bool {
        self.n == 0
    }

    pub fn mul(self, o: Rat) -> Result<Rat, Overflow> {
        let g1 = i128::try_from(gcd(self.n.unsigned_abs(), o.d.unsigned_abs()).max(1)).map_err(|_| Overflow)?;
        let g2 = i128::try_from(gcd(o.n.unsigned_abs(), self.d.unsigned_abs()).max(1)).map_err(|_| Overflow)?;
        let n = (self.n / g1).checked_mul(o.n / g2).ok_or(Overflow)?;
        let d = (self.d / g2).checked_mul(o.d / g1).ok_or(Overflow)?;
        Ok(Rat { n, d })
    }

    pub fn sub(self, o: Rat) -> Result<Rat, Overflow> {
        if self.d == o.d {
            return Rat::new(self.n.checked_sub(o.n).ok_or(Overflow)?, self.d);
        }
        let g = i128::try_from(gcd(self.d.unsigned_abs(), o.d.unsigned_abs())).map_err(|_| Overflow)?;
        let a = self.n.checked_mul(o.d / g).ok_or(Overflow)?;
        let b = o.n.checked_mul(self.d / g).ok_or(Overflow)?;
        let d = self.d.checked_mul(o.d / g).ok_or(Overflow)?;
        Rat::new(a.checked_sub(b).ok_or(Overflow)?, d)
    }

    pub fn add(self, o: Rat) -> Result<Rat, Overflow> {
        self.sub(Rat {
            n: o.n.checked_neg().ok_or(Overflow)?,
            d: o.d,
        })
    }

    /// `1 / self`; `self` must not be zero.
    pub fn recip(self) -> Result<Rat, Overflow> {
        debug_assert!(self.n != 0);
        Rat::new(self.d, self.n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_is_exact_and_checked() {
        let a = Rat::new(6, -4).unwrap();
        assert_eq!((a.numer(), a.denom()), (-3, 2));
        let b = Rat::new(1, 3).unwrap();
        assert_eq!(a.add(b).unwrap(), Rat::new(-7, 6).unwrap());
        assert_eq!(a.sub(b).unwrap(), Rat::new(-11, 6).unwrap());
        assert_eq!(a.mul(b).unwrap(), Rat::new(-1, 2).unwrap());
        assert_eq!(a.recip().unwrap(), Rat::new(-2, 3).unwrap());
        assert_eq!(Rat::int(i128::MAX).add(Rat::int(1)), Err(Overflow));
        assert_eq!(Rat::int(i128::MAX / 2 + 1).mul(Rat::int(2)), Err(Overflow));
    }
}
