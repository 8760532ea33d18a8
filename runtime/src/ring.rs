//! Arithmetic in the share rings `Z_{2^l}` (`1 ≤ l ≤ 64`) and additive secret sharing.
//!
//! A value `x` is shared as `x = x_client + x_server mod 2^l`. Elements are `u64` words whose bits
//! above `l` are zero; signed values use the two's-complement view (`[−2^(l−1), 2^(l−1))`).

use serde::{Deserialize, Serialize};

/// The ring `Z_{2^bits}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Ring {
    bits: u32,
}

impl Ring {
    /// The ring `Z_{2^bits}`.
    ///
    /// # Panics
    /// If `bits` is not in `1..=64` (a caller bug: plans are validated before use).
    pub fn new(bits: u32) -> Self {
        assert!((1..=64).contains(&bits), "ring width {bits} outside 1..=64");
        Ring { bits }
    }

    /// Bit width `l`.
    pub fn bits(self) -> u32 {
        self.bits
    }

    /// `2^l − 1`.
    pub fn mask(self) -> u64 {
        if self.bits == 64 {
            u64::MAX
        } else {
            (1u64 << self.bits) - 1
        }
    }

    /// Reduces a word modulo `2^l`.
    pub fn reduce(self, x: u64) -> u64 {
        x & self.mask()
    }

    /// Embeds a signed integer (reduced modulo `2^l`).
    pub fn from_signed(self, x: i64) -> u64 {
        self.reduce(x as u64)
    }

    /// The signed (two's-complement) value of a ring element.
    pub fn to_signed(self, x: u64) -> i64 {
        let unused = 64 - self.bits;
        ((x << unused) as i64) >> unused
    }

    /// `a + b mod 2^l`.
    pub fn add(self, a: u64, b: u64) -> u64 {
        self.reduce(a.wrapping_add(b))
    }

    /// `a − b mod 2^l`.
    pub fn sub(self, a: u64, b: u64) -> u64 {
        self.reduce(a.wrapping_sub(b))
    }

    /// `a · b mod 2^l`.
    pub fn mul(self, a: u64, b: u64) -> u64 {
        self.reduce(a.wrapping_mul(b))
    }

    /// `−a mod 2^l`.
    pub fn neg(self, a: u64) -> u64 {
        self.reduce(a.wrapping_neg())
    }

    /// The most significant bit (the sign in the two's-complement view).
    pub fn msb(self, x: u64) -> bool {
        (x >> (self.bits - 1)) & 1 == 1
    }

    /// Element-wise `a + b` (reconstruction of two share vectors).
    ///
    /// # Panics
    /// If the lengths differ.
    pub fn add_vec(self, a: &[u64], b: &[u64]) -> Vec<u64> {
        assert_eq!(a.len(), b.len(), "share vectors of different lengths");
        a.iter().zip(b).map(|(&x, &y)| self.add(x, y)).collect()
    }

    /// Splits `values` into two shares with the given uniform mask: returns
    /// `(values − mask, mask)`.
    ///
    /// # Panics
    /// If the lengths differ.
    pub fn share_with_mask(self, values: &[u64], mask: &[u64]) -> (Vec<u64>, Vec<u64>) {
        assert_eq!(
            values.len(),
            mask.len(),
            "values and mask of different lengths"
        );
        let first = values
            .iter()
            .zip(mask)
            .map(|(&v, &r)| self.sub(v, r))
            .collect();
        (first, mask.iter().map(|&r| self.reduce(r)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_round_trip_and_wrap() {
        for bits in [1, 2, 5, 37, 63, 64] {
            let r = Ring::new(bits);
            let lo = if bits == 64 {
                i64::MIN
            } else {
                -(1i64 << (bits - 1))
            };
            let hi = if bits == 64 {
                i64::MAX
            } else {
                (1i64 << (bits - 1)) - 1
            };
            for v in [lo, -1, 0, 1, hi] {
                if (lo..=hi).contains(&v) {
                    assert_eq!(r.to_signed(r.from_signed(v)), v, "bits {bits} v {v}");
                }
            }
            assert_eq!(r.add(r.mask(), 1), 0);
            assert_eq!(r.sub(0, 1), r.mask());
        }
    }

    #[test]
    fn shares_reconstruct() {
        let r = Ring::new(13);
        let vals: Vec<u64> = [-5i64, 0, 4095, -4096]
            .iter()
            .map(|&v| r.from_signed(v))
            .collect();
        let mask = vec![8191, 1, 77, 4096];
        let (a, b) = r.share_with_mask(&vals, &mask);
        assert_eq!(r.add_vec(&a, &b), vals);
    }
}
