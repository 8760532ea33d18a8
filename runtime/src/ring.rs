//! Arithmetic in the share rings `Z_{2^l}` (`1 ≤ l ≤ 64`) and additive secret sharing.
//!
//! A value `x` is shared as `x = x_client + x_server mod 2^l`. Elements are `u64` words whose bits
//! above `l` are zero; signed values use the two's-complement view (`[−2^(l−1), 2^(l−1))`).
//!
//! Also the exact rounding shift [`round_shift`] of every requantization, the one definition
//! the reference executor, the protocol tests and the compiler's re-quantization share.

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

/// The integer nearest to `x / 2^k`, as [`round_shift`] finds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoundShift {
    /// One integer is nearest.
    Nearest(i128),
    /// `x / 2^k` lies exactly halfway between `floor` and `floor + 1`.
    Tie {
        /// `⌊x / 2^k⌋`.
        floor: i128,
    },
}

impl RoundShift {
    /// The nearest integer, a tie to the even neighbour (the plan's rounding).
    pub fn half_even(self) -> i128 {
        match self {
            RoundShift::Nearest(q) => q,
            RoundShift::Tie { floor } => floor + (floor & 1),
        }
    }

    /// The nearest integer, a tie up: `⌊(x + 2^(k−1)) / 2^k⌋`, what the protocols compute where
    /// the plan says no tie occurs.
    pub fn half_up(self) -> i128 {
        match self {
            RoundShift::Nearest(q) => q,
            RoundShift::Tie { floor } => floor + 1,
        }
    }
}

/// `x / 2^k` rounded to the nearest integer (`k ≤ 126`), with a tie reported for the caller's
/// rule to break.
pub fn round_shift(x: i128, k: u32) -> RoundShift {
    round_shift_within(x, k, 0)
}

/// [`round_shift`] where a remainder `r` within `window` of the midpoint
/// (`|r − 2^(k−1)| ≤ window`) is a tie between `⌊x / 2^k⌋` and the next integer
/// ([`crate::plan::Rounding::HalfEvenWithin`]).
pub fn round_shift_within(x: i128, k: u32, window: u64) -> RoundShift {
    if k == 0 {
        return RoundShift::Nearest(x);
    }
    // `>>` on a signed integer is the floor division by 2^k.
    let floor = x >> k;
    let rest = x - (floor << k);
    let half = 1i128 << (k - 1);
    let window = i128::from(window);
    if (rest - half).abs() <= window {
        RoundShift::Tie { floor }
    } else if rest < half {
        RoundShift::Nearest(floor)
    } else {
        RoundShift::Nearest(floor + 1)
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

    #[test]
    fn round_shift_reports_ties() {
        assert_eq!(round_shift(5, 0), RoundShift::Nearest(5));
        assert_eq!(round_shift(24, 4), RoundShift::Tie { floor: 1 });
        assert_eq!(round_shift(25, 4), RoundShift::Nearest(2));
        assert_eq!(round_shift(-25, 4), RoundShift::Nearest(-2));
        assert_eq!(round_shift(-8, 4), RoundShift::Tie { floor: -1 });
        for (x, even, up) in [(8, 0, 1), (24, 2, 2), (-8, 0, 0), (-24, -2, -1), (23, 1, 1)] {
            let r = round_shift(x, 4);
            assert_eq!((r.half_even(), r.half_up()), (even, up), "{x}");
        }
    }

    #[test]
    fn a_tie_window_widens_the_midpoint() {
        // k = 4: the midpoint remainder is 8; window 2 takes remainders 6..=10.
        for (x, want) in [
            (5, RoundShift::Nearest(0)),
            (6, RoundShift::Tie { floor: 0 }),
            (10, RoundShift::Tie { floor: 0 }),
            (11, RoundShift::Nearest(1)),
            (-6, RoundShift::Tie { floor: -1 }),
            (-11, RoundShift::Nearest(-1)),
            (-5, RoundShift::Nearest(0)),
            (22, RoundShift::Tie { floor: 1 }),
        ] {
            assert_eq!(round_shift_within(x, 4, 2), want, "{x}");
        }
        assert_eq!(round_shift_within(23, 4, 0), round_shift(23, 4));
    }
}
