//! The parameter plans the nonlinear protocols execute, and the range arithmetic they are
//! planned with.
//!
//! A plan ([`RescalePlan`], [`ClampPlan`], [`RequantPlan`], [`UnpackPlan`], [`CombinePlan`],
//! [`MaxPoolPlan`]) decides, from the public parameters and the compiler's sound value ranges,
//! which sub-protocols run (known-MSB or general truncation, which clamp sides can bind, which
//! ring the comparison runs in); [`crate::nonlinear`] executes a plan, [`crate::schedule`]
//! chooses one per layer, and [`crate::cost::nonlinear`] prices it (the plans' `cost` methods
//! live there, with the accounting). Protocol background: `protocols.md` §1.8, §3.5, §5.5–5.6.

use crate::plan::{AddSpec, AvgPoolSpec, CarryDepth, Packing, PoolShape, Requant, Rounding};

/// Widest share ring the nonlinear protocols accept (`Z_{2^62}`: sums of two shares and
/// offsets stay inside `u64`/`i128` arithmetic with room to spare).
pub const MAX_RING_BITS: u32 = 62;

/// Why protocol parameters were rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParamError {
    /// A ring width outside `2..=MAX_RING_BITS`.
    #[error("ring width {bits} outside 2..={max}", max = MAX_RING_BITS)]
    RingBits {
        /// The width given.
        bits: u32,
    },
    /// The value range does not fit the ring the protocol needs it in.
    #[error("value range [{lo}, {hi}] does not fit a {bits}-bit ring with the required headroom")]
    RangeTooWide {
        /// Lower bound of the range.
        lo: i128,
        /// Upper bound of the range.
        hi: i128,
        /// The ring width.
        bits: u32,
    },
    /// An empty range (`lo > hi`).
    #[error("empty value range [{lo}, {hi}]")]
    EmptyRange {
        /// Lower bound.
        lo: i128,
        /// Upper bound.
        hi: i128,
    },
    /// A shift that does not fit the ring.
    #[error("shift {shift} too large for a {bits}-bit ring")]
    Shift {
        /// The shift.
        shift: u32,
        /// The ring width.
        bits: u32,
    },
    /// A tie window too wide for the shift (`2·window ≥ 2^k`), or a window without a shift.
    #[error("tie window {window} does not fit shift {shift} (needs 2·window < 2^shift)")]
    TieWindow {
        /// The window.
        window: u64,
        /// The shift.
        shift: u32,
    },
    /// Packing parameters that do not fit the ring.
    #[error("{fields} fields of {field_bits} bits do not fit a {bits}-bit ring")]
    Packing {
        /// Fields per coefficient.
        fields: u32,
        /// Bits per field.
        field_bits: u32,
        /// Ring width.
        bits: u32,
    },
}

/// Checks a ring width.
///
/// # Errors
/// [`ParamError::RingBits`] outside `2..=MAX_RING_BITS`.
pub fn check_ring(bits: u32) -> Result<(), ParamError> {
    if (2..=MAX_RING_BITS).contains(&bits) {
        Ok(())
    } else {
        Err(ParamError::RingBits { bits })
    }
}

fn check_range(range: (i128, i128)) -> Result<(), ParamError> {
    if range.0 > range.1 {
        return Err(ParamError::EmptyRange {
            lo: range.0,
            hi: range.1,
        });
    }
    Ok(())
}

/// Whether every value of `range` is a signed value of a `bits`-bit ring.
pub fn fits_signed(range: (i128, i128), bits: u32) -> bool {
    let half = 1i128 << (bits - 1);
    range.0 >= -half && range.1 < half
}

/// Smallest `bits ≥ 2` such that every value of `range` is a signed `bits`-bit value.
pub fn signed_bits(range: (i128, i128)) -> u32 {
    (2..=127).find(|&b| fits_signed(range, b)).unwrap_or(127)
}

/// Number of low bits in which `a` and `a − d mod 2^len` agree: `v2(d)`, or `len` if `d` is a
/// multiple of `2^len`. Two comparisons whose thresholds are `d` apart share the carries of
/// these bits ([`crate::nonlinear::carry::carry_pair`]).
pub fn shared_bits(len: u32, d: u64) -> u32 {
    d.trailing_zeros().min(len)
}

/// Clamp of `n` shares in `Z_{2^ring_bits}` to `[lo, hi]`, given the sound range of the input,
/// with the result in `Z_{2^out_bits}`: only the sides the range says can bind are compared.
///
/// A side compares `x` with a threshold: `d1 = [x ≥ t1]`, `d2 = [x ≥ t2]`. Any `t1` in
/// `{lo, lo + 1}` and `t2` in `{hi, hi + 1}` gives the clamp (at `x = lo` or `x = hi` both
/// choices select the same value), so with both sides the plan takes the pair whose distance
/// `t2 − t1` has the most trailing zero bits: the two comparisons share the carries of those
/// bits ([`ClampPlan::gap`], [`shared_bits`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClampPlan {
    /// The ring the comparisons run in.
    pub ring_bits: u32,
    /// The ring of the output (at most `ring_bits`; the selection runs there).
    pub out_bits: u32,
    /// Range of the input values.
    pub range: (i128, i128),
    /// Clamp bounds.
    pub clamp: (i128, i128),
    /// Whether values below `lo` can occur.
    pub lower: bool,
    /// Whether values above `hi` can occur.
    pub upper: bool,
    /// Comparison thresholds `(t1, t2)` of `d1 = [x ≥ t1]` and `d2 = [x ≥ t2]`.
    pub thresholds: (i128, i128),
    /// How the comparisons compute their carries ([`CarryDepth::Ripple`] unless the schedule
    /// sets the layer's).
    pub depth: CarryDepth,
}

impl ClampPlan {
    /// Plans a clamp.
    ///
    /// # Errors
    /// [`ParamError`] if a ring is invalid or `out_bits > ring_bits`, a range is empty, the
    /// range does not fit the ring, `x − lo` / `x − hi − 1` do not fit the ring as signed values
    /// on the sides that can bind, or the output range does not fit the output ring.
    pub fn new(
        ring_bits: u32,
        range: (i128, i128),
        clamp: (i128, i128),
        out_bits: u32,
    ) -> Result<Self, ParamError> {
        check_ring(ring_bits)?;
        check_ring(out_bits)?;
        check_range(range)?;
        check_range(clamp)?;
        let lower = range.0 < clamp.0;
        let upper = range.1 > clamp.1;
        let err = ParamError::RangeTooWide {
            lo: range.0,
            hi: range.1,
            bits: ring_bits,
        };
        // `x − t` is a signed value of the ring for every `x` of the range.
        let fits = |t: i128| fits_signed((range.0 - t, range.1 - t), ring_bits);
        if out_bits > ring_bits || !fits_signed(range, ring_bits) {
            return Err(err);
        }
        let (lo, hi) = (clamp.0, clamp.1 + 1);
        if lower && !fits(lo) || upper && !fits(hi) {
            return Err(err);
        }
        // With `lo` and `hi + 1` fitting, so do `lo + 1` and `hi` (`lo ≤ hi`).
        let thresholds = if lower && upper {
            [(lo, hi), (lo + 1, hi), (lo, hi - 1), (lo + 1, hi - 1)]
                .into_iter()
                .enumerate()
                .filter(|&(_, (t1, t2))| t1 < t2)
                .max_by_key(|&(i, (t1, t2))| ((t2 - t1).trailing_zeros(), std::cmp::Reverse(i)))
                .map_or((lo, hi), |(_, t)| t)
        } else {
            (lo, hi)
        };
        let plan = ClampPlan {
            ring_bits,
            out_bits,
            range,
            clamp,
            lower,
            upper,
            thresholds,
            depth: CarryDepth::Ripple,
        };
        let out = plan.out_range();
        if !fits_signed(out, out_bits) {
            return Err(ParamError::RangeTooWide {
                lo: out.0,
                hi: out.1,
                bits: out_bits,
            });
        }
        Ok(plan)
    }

    /// Number of comparisons per element (0, 1 or 2).
    pub fn sides(&self) -> u64 {
        u64::from(self.lower) + u64::from(self.upper)
    }

    /// Distance `t2 − t1` of the thresholds (positive; below `2^(ring_bits − 1)` when both sides
    /// can bind).
    pub fn gap(&self) -> u64 {
        (self.thresholds.1 - self.thresholds.0) as u64
    }

    /// Range of the output.
    pub fn out_range(&self) -> (i128, i128) {
        let lo = self.range.0.max(self.clamp.0).min(self.clamp.1);
        let hi = self.range.1.min(self.clamp.1).max(self.clamp.0);
        (lo, hi)
    }
}

/// How [`RescalePlan`] obtains the wrap bit of the input ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WrapMode {
    /// The wrap is not needed (the output ring is at most `l − k` bits: truncate-and-reduce).
    None,
    /// The shifted value has MSB 0, so the wrap is the OR of the two shares' MSBs: one
    /// correlated OT.
    KnownMsb,
    /// General: the carry chain runs over all `l` bits.
    Chain,
}

/// `y = round(x / 2^k)` from shares in `Z_{2^l}` to shares in `Z_{2^R}`: truncation (`R = l`),
/// truncate-and-reduce (`R ≤ l − k`) and signed or unsigned extension (`k = 0`, `R > l`), exact
/// (SiRNN-style). Ties round to even ([`Rounding::HalfEven`], the plan semantics) or, where the
/// compiler proved that no tie occurs ([`Rounding::NoTies`]), half up, i.e.
/// `floor((x + 2^(k−1)) / 2^k)`, which is cheaper.
///
/// The server adds `2^(k−1) + offset` to its share so that the value `Y` is a non-negative
/// integer below `2^l` (or below `2^(l−1)`, the known-MSB case). Then
/// `y = (Y0 >> k) + (Y1 >> k) + c − w·2^(l−k) − offset/2^k` with `c` the carry of the low `k`
/// bits and `w` the wrap of the ring.
///
/// Faithful truncation ([`Rounding::Faithful`]) adds `2^k − 1` instead of `2^(k−1)` and drops
/// `c` (and the tie test): `y = ⌈x / 2^k⌉ − c`, which is `⌊x / 2^k⌋` or `⌈x / 2^k⌉` (exactly
/// `x / 2^k` when `2^k` divides `x`, as `c = 0` then). With a uniformly random share it is
/// `⌈x / 2^k⌉` with probability `(x mod 2^k) / 2^k`: unbiased stochastic rounding. The wrap
/// stays exact; without a wrap ([`WrapMode::None`]) the truncation is local.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RescalePlan {
    /// Input ring width `l`.
    pub in_bits: u32,
    /// Output ring width `R`.
    pub out_bits: u32,
    /// Shift `k`.
    pub shift: u32,
    /// Range of the input values.
    pub range: (i128, i128),
    /// Offset the server adds (a multiple of `2^k`).
    pub offset: u64,
    /// How the wrap is computed.
    pub wrap: WrapMode,
    /// Tie rule; ties cost a second carry chain on `k` bits (with the main one as a carry pair,
    /// in its rounds, unless the wrap needs the long chain) and one AND (only when `k > 0`).
    pub rounding: Rounding,
    /// How the carries are computed ([`CarryDepth::Ripple`] unless the schedule sets the
    /// layer's).
    pub depth: CarryDepth,
}

impl RescalePlan {
    /// Plans a rescale, choosing the cheapest exact variant the range allows.
    ///
    /// # Errors
    /// [`ParamError`] if a ring is invalid, the shift is not below `l`, or the range (plus the
    /// rounding term) does not fit the input ring, or the result does not fit the output ring.
    pub fn new(
        in_bits: u32,
        range: (i128, i128),
        shift: u32,
        out_bits: u32,
        rounding: Rounding,
    ) -> Result<Self, ParamError> {
        check_ring(in_bits)?;
        check_ring(out_bits)?;
        check_range(range)?;
        if shift >= in_bits {
            return Err(ParamError::Shift {
                shift,
                bits: in_bits,
            });
        }
        let window = i128::from(rounding.tie_window().unwrap_or(0));
        if shift == 0 && window > 0 || shift > 0 && 2 * window >= 1i128 << shift {
            return Err(ParamError::TieWindow {
                window: window as u64,
                shift,
            });
        }
        let half = rounding_offset(shift, rounding);
        let out = shifted_range(range, shift, rounding);
        let too_wide = ParamError::RangeTooWide {
            lo: range.0,
            hi: range.1,
            bits: in_bits,
        };
        let (lo, hi) = (range.0 + half, range.1 + half);
        let l = in_bits;
        // (offset, limit on Y, known MSB), cheapest first.
        let candidates = [
            (0i128, 1i128 << (l - 1), true),
            (1i128 << (l - 2), 1i128 << (l - 1), true),
            (0, 1i128 << l, false),
            (1i128 << (l - 1), 1i128 << l, false),
        ];
        let (offset, known_msb) = candidates
            .iter()
            .find(|&&(off, limit, _)| {
                lo + off >= 0 && hi + off < limit && off % (1i128 << shift) == 0
            })
            .map(|&(off, _, msb)| (off as u64, msb))
            .ok_or(too_wide)?;
        if !fits_signed(out, out_bits) {
            return Err(ParamError::RangeTooWide {
                lo: out.0,
                hi: out.1,
                bits: out_bits,
            });
        }
        let wrap = if out_bits <= in_bits - shift {
            WrapMode::None
        } else if known_msb {
            WrapMode::KnownMsb
        } else {
            WrapMode::Chain
        };
        Ok(RescalePlan {
            in_bits,
            out_bits,
            shift,
            range,
            offset,
            wrap,
            rounding,
            depth: CarryDepth::Ripple,
        })
    }

    /// Whether the carry `c` of the low `k` bits is computed (`k > 0`, not faithful).
    pub fn low_carry(&self) -> bool {
        self.shift > 0 && !self.rounding.is_faithful()
    }

    /// Whether ties to even need the extra tie test.
    pub fn tie_test(&self) -> bool {
        self.shift > 0 && self.rounding.tie_window().is_some()
    }

    /// The constant the server adds before the shift: `2^(k−1) + window`, or `2^k − 1` for
    /// faithful truncation.
    pub fn rounding_offset(&self) -> u64 {
        rounding_offset(self.shift, self.rounding) as u64
    }

    /// How much lower the server's summand of the tie test's chain is than the main chain's:
    /// `1 + 2w` (`w` the tie window), the tie test being `lo ≤ 2w`.
    pub fn tie_distance(&self) -> u64 {
        1 + 2 * self.rounding.tie_window().unwrap_or(0)
    }

    /// Whether the tie test's chain runs with the main chain as one carry pair (both are `k` bits
    /// long).
    pub fn tie_test_fused(&self) -> bool {
        self.tie_test() && self.chain_len() == self.shift
    }

    /// Range of the output values.
    pub fn out_range(&self) -> (i128, i128) {
        shifted_range(self.range, self.shift, self.rounding)
    }

    /// Bits the wrap is needed in (`R − (l − k)`), 0 if not needed.
    pub fn wrap_bits(&self) -> u32 {
        match self.wrap {
            WrapMode::None => 0,
            _ => self.out_bits - (self.in_bits - self.shift),
        }
    }

    /// Length of the carry chain (0 without one: faithful truncation or `k = 0` without
    /// [`WrapMode::Chain`]).
    pub fn chain_len(&self) -> u32 {
        match self.wrap {
            WrapMode::Chain => self.in_bits,
            _ if self.low_carry() => self.shift,
            _ => 0,
        }
    }

    /// The bits whose carries the main chain delivers: `k − 1` (the rounding carry,
    /// [`RescalePlan::low_carry`]) and `l − 1` (the wrap, [`WrapMode::Chain`]).
    pub fn carry_positions(&self) -> Vec<u32> {
        let mut positions = Vec::with_capacity(2);
        if self.low_carry() {
            positions.push(self.shift - 1);
        }
        if self.wrap == WrapMode::Chain {
            positions.push(self.in_bits - 1);
        }
        positions
    }
}

/// `2^(k−1)` plus the tie window: with it, `floor((x + offset) / 2^k)` is the nearest integer
/// outside the window and the upper neighbour inside it, where the tie test corrects it to even.
/// Faithful truncation: `2^k − 1`, so that `floor((x + offset) / 2^k) = ⌈x / 2^k⌉`.
fn rounding_offset(shift: u32, rounding: Rounding) -> i128 {
    if rounding.is_faithful() {
        (1i128 << shift) - 1
    } else if shift == 0 {
        0
    } else {
        (1i128 << (shift - 1)) + i128::from(rounding.tie_window().unwrap_or(0))
    }
}

/// Range of `floor((x + rounding offset) / 2^k)` for `x` in `range`; for faithful truncation
/// from `⌊lo / 2^k⌋` (the carry can take one off) to `⌈hi / 2^k⌉`.
fn shifted_range(range: (i128, i128), shift: u32, rounding: Rounding) -> (i128, i128) {
    let half = rounding_offset(shift, rounding);
    let lo = if rounding.is_faithful() {
        range.0
    } else {
        range.0 + half
    };
    (floor_shift(lo, shift), floor_shift(range.1 + half, shift))
}

/// What a requantization adds before its shift, for ring sizes: `2^(k−1)` (the nearest
/// integer; a tie window lowers the result again), `2^k − 1` for faithful truncation.
fn headroom(shift: u32, rounding: Rounding) -> i128 {
    if rounding.is_faithful() || shift == 0 {
        rounding_offset(shift, rounding)
    } else {
        1i128 << (shift - 1)
    }
}

/// `floor(x / 2^k)` for signed `x`.
pub fn floor_shift(x: i128, k: u32) -> i128 {
    x >> k
}

/// Requantization `y = clamp(round(z / 2^k), lo, hi)` (ties as [`RescalePlan`]) of shares of `z` in
/// `Z_{2^l}` (any multiplier already applied), output in `Z_{2^R}`: a truncate-and-reduce into
/// the smallest ring the clamp needs (extending only if the output ring is wider), then the
/// clamp, comparing in that small ring and selecting in the output ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequantPlan {
    /// The rescale to the comparison ring.
    pub rescale: RescalePlan,
    /// The clamp from the comparison ring into the output ring.
    pub clamp: ClampPlan,
    /// Output ring width (at most the comparison ring; the clamp's output ring).
    pub out_bits: u32,
}

impl RequantPlan {
    /// Plans a requantization.
    ///
    /// # Errors
    /// [`ParamError`] as for [`RescalePlan::new`] and [`ClampPlan::new`] (which also rejects
    /// a clamped output that does not fit the output ring).
    pub fn new(
        in_bits: u32,
        range: (i128, i128),
        shift: u32,
        clamp: (i128, i128),
        out_bits: u32,
        rounding: Rounding,
    ) -> Result<Self, ParamError> {
        check_ring(out_bits)?;
        check_range(range)?;
        check_range(clamp)?;
        if shift >= in_bits {
            return Err(ParamError::Shift {
                shift,
                bits: in_bits,
            });
        }
        let t = if rounding.is_faithful() {
            shifted_range(range, shift, rounding)
        } else {
            let half = headroom(shift, rounding);
            (
                floor_shift(range.0 + half, shift),
                floor_shift(range.1 + half, shift),
            )
        };
        let mut need = signed_bits(t).max(out_bits);
        if t.0 < clamp.0 {
            need = need.max(signed_bits((t.0 - clamp.0, t.1 - clamp.0)));
        }
        if t.1 > clamp.1 {
            need = need.max(signed_bits((t.0 - clamp.1 - 1, t.1 - clamp.1 - 1)));
        }
        let rescale = RescalePlan::new(in_bits, range, shift, need, rounding)?;
        let clamp = ClampPlan::new(need, t, clamp, out_bits)?;
        Ok(RequantPlan {
            rescale,
            clamp,
            out_bits,
        })
    }

    /// Range of the output values.
    pub fn out_range(&self) -> (i128, i128) {
        self.clamp.out_range()
    }
}

/// Unpacking of HEQuant packed words (`protocols.md` §3.5) into shares of every field in any
/// ring `Z_{2^R}`: the input is shares in `Z_{2^l}` of `Z = Σ_j 2^(j·s)·(y_j + 2^(s−1))` (`b`
/// fields of `s` bits, biased by the HE layer, [`crate::linear`]), the output shares of each
/// `y_j` in `Z_{2^R}`.
///
/// Every field keeps a guard bit (`|y_j| < 2^(s−2)`): after the server re-biases each field to
/// `2^(s−2)`, every field lies in `[0, 2^(s−1))`, so the low `j·s` bits of `Z` have a known MSB
/// of 0 and the carry `c_j` into field `j` is the OR of the two shares' bits `j·s − 1`: one
/// correlated OT per carry, no carry chain. Field `j` is then
/// `(Z_S >> js) mod 2^s + (Z_C >> js) mod 2^s + c_j − 2^s·c_(j+1) − 2^(s−2)` in `Z_{2^R}`; the
/// `2^s·c_(j+1)` term vanishes when `R ≤ s`. Choosing `R` as the ring the requantization
/// combines in fuses the requantization's input extension into the unpacking; the
/// requantization then truncates and clamps in its small ring as usual.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnpackPlan {
    /// Ring width `l` of the packed shares (the plaintext width).
    pub in_bits: u32,
    /// Fields per coefficient `b`.
    pub fields: u32,
    /// Bits per field `s`.
    pub field_bits: u32,
    /// Ring width `R` of the unpacked fields.
    pub out_bits: u32,
}

impl UnpackPlan {
    /// Plans an unpacking of fields whose values (partial sums of edge tiles and empty fields
    /// included) lie in `field_range`.
    ///
    /// # Errors
    /// [`ParamError::Packing`] if `b < 2`, `s < 3` or `b·s > l`; [`ParamError::RangeTooWide`]
    /// if a field can leave `[−2^(s−2), 2^(s−2))` (no guard bit) or does not fit the output
    /// ring; [`ParamError::RingBits`] for an invalid ring.
    pub fn new(
        in_bits: u32,
        packing: Packing,
        field_range: (i128, i128),
        out_bits: u32,
    ) -> Result<Self, ParamError> {
        let (fields, field_bits) = (packing.factor, packing.field_bits);
        check_ring(in_bits)?;
        check_ring(out_bits)?;
        check_range(field_range)?;
        if fields < 2
            || field_bits < 3
            || u64::from(fields) * u64::from(field_bits) > u64::from(in_bits)
        {
            return Err(ParamError::Packing {
                fields,
                field_bits,
                bits: in_bits,
            });
        }
        for bits in [field_bits - 1, out_bits] {
            if !fits_signed(field_range, bits) {
                return Err(ParamError::RangeTooWide {
                    lo: field_range.0,
                    hi: field_range.1,
                    bits,
                });
            }
        }
        Ok(UnpackPlan {
            in_bits,
            fields,
            field_bits,
            out_bits,
        })
    }

    /// Carries computed per packed word: `c_1 … c_(b−1)`, and `c_b` when `R > s`.
    pub fn carries(&self) -> u32 {
        self.fields - 1 + u32::from(self.out_bits > self.field_bits)
    }
}

/// `[lo, hi]·m`: the range of a product with a public multiplier.
pub fn mul_range(range: (i128, i128), m: i128) -> (i128, i128) {
    let (a, b) = (range.0 * m, range.1 * m);
    (a.min(b), a.max(b))
}

/// The range of `x·m[c]` over every channel multiplier `m[c]` (`[0, 0]` without any).
pub fn multiplied_range(x: (i128, i128), multipliers: &[i64]) -> (i128, i128) {
    multipliers
        .iter()
        .map(|&m| mul_range(x, i128::from(m)))
        .reduce(union_range)
        .unwrap_or((0, 0))
}

/// Union of two ranges.
pub fn union_range(a: (i128, i128), b: (i128, i128)) -> (i128, i128) {
    (a.0.min(b.0), a.1.max(b.1))
}

/// Requantization of a public linear combination of shared inputs (Rescale, Add, AvgPool):
/// every input is brought into one ring `Z_{2^L}` just wide enough for the combination `z`
/// with the known-MSB headroom (extending cheaply, or reducing locally for free), the
/// combination is computed locally, then [`RequantPlan`] runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CombinePlan {
    /// Per input: ring bits, value range, and the extension into the combination ring (if the
    /// input ring is narrower).
    pub inputs: Vec<(u32, (i128, i128), Option<RescalePlan>)>,
    /// Width `L` of the combination ring.
    pub ring_bits: u32,
    /// Requantization of the combination.
    pub requant: RequantPlan,
}

impl CombinePlan {
    /// Plans the requantization of a combination whose values lie in `z_range`, of inputs given
    /// as (ring bits, value range).
    ///
    /// # Errors
    /// [`ParamError`] if a ring is invalid, the combination needs more than
    /// [`MAX_RING_BITS`] bits, or the requantization cannot be planned.
    pub fn new(
        inputs: &[(u32, (i128, i128))],
        z_range: (i128, i128),
        shift: u32,
        clamp: (i128, i128),
        out_bits: u32,
        rounding: Rounding,
    ) -> Result<Self, ParamError> {
        check_range(z_range)?;
        let half = headroom(shift, rounding);
        let ring_bits = (signed_bits((z_range.0, z_range.1 + half)) + 1).max(shift + 2);
        check_ring(ring_bits)?;
        let inputs = inputs
            .iter()
            .map(|&(bits, range)| {
                check_ring(bits)?;
                if !fits_signed(range, bits.min(ring_bits)) {
                    return Err(ParamError::RangeTooWide {
                        lo: range.0,
                        hi: range.1,
                        bits: bits.min(ring_bits),
                    });
                }
                let ext = if bits < ring_bits {
                    Some(RescalePlan::new(
                        bits,
                        range,
                        0,
                        ring_bits,
                        Rounding::NoTies,
                    )?)
                } else {
                    None
                };
                Ok((bits, range, ext))
            })
            .collect::<Result<Vec<_>, ParamError>>()?;
        let requant = RequantPlan::new(ring_bits, z_range, shift, clamp, out_bits, rounding)?;
        Ok(CombinePlan {
            inputs,
            ring_bits,
            requant,
        })
    }

    /// The plan with its requantization's carries computed at `depth` (the inputs' extensions
    /// compute none).
    pub fn with_carry_depth(mut self, depth: CarryDepth) -> Self {
        self.requant.rescale.depth = depth;
        self.requant.clamp.depth = depth;
        self
    }
}

fn clamp_of(c: (i64, i64)) -> (i128, i128) {
    (i128::from(c.0), i128::from(c.1))
}

/// The [`CombinePlan`] of the plan's `Rescale` of an input given as (ring bits, value range).
///
/// # Errors
/// As [`CombinePlan::new`].
pub fn rescale_plan(
    spec: &Requant,
    input: (u32, (i128, i128)),
    out_bits: u32,
) -> Result<CombinePlan, ParamError> {
    CombinePlan::new(
        &[input],
        multiplied_range(input.1, &spec.multipliers),
        spec.shift,
        clamp_of(spec.clamp),
        out_bits,
        spec.rounding,
    )
}

/// The [`CombinePlan`] of the plan's residual `Add` of two inputs given as (ring bits, range).
///
/// # Errors
/// As [`CombinePlan::new`].
pub fn add_plan(
    spec: &AddSpec,
    a: (u32, (i128, i128)),
    b: (u32, (i128, i128)),
    out_bits: u32,
) -> Result<CombinePlan, ParamError> {
    let (za, zb) = (
        mul_range(a.1, i128::from(spec.m_a)),
        mul_range(b.1, i128::from(spec.m_b)),
    );
    let z = (za.0 + zb.0, za.1 + zb.1);
    CombinePlan::new(
        &[a, b],
        z,
        spec.shift,
        clamp_of(spec.clamp),
        out_bits,
        spec.rounding,
    )
}

/// The [`CombinePlan`] of the plan's `AvgPool` on shares in `Z_{2^in_bits}` whose values lie in
/// `range`: the window sums times the multiplier of their counted size
/// ([`AvgPoolSpec::window_counts`]).
///
/// # Errors
/// As [`CombinePlan::new`].
pub fn avg_pool_plan(
    spec: &AvgPoolSpec,
    in_bits: u32,
    range: (i128, i128),
    out_bits: u32,
) -> Result<CombinePlan, ParamError> {
    let z = pool_window_sizes(&spec.pool)
        .into_iter()
        .zip(spec.window_counts())
        .map(|(len, counted)| {
            let m = i128::from(spec.multiplier(counted).unwrap_or(0));
            let n = len as i128;
            mul_range((range.0 * n, range.1 * n), m)
        })
        .reduce(union_range)
        .unwrap_or((0, 0));
    let clamp = clamp_of(spec.requant.clamp);
    CombinePlan::new(
        &[(in_bits, range)],
        z,
        spec.requant.shift,
        clamp,
        out_bits,
        spec.requant.rounding,
    )
}

/// The size of every pooling window of [`pool_windows`] (padded positions left out), without
/// building the windows.
pub fn pool_window_sizes(shape: &PoolShape) -> Vec<usize> {
    shape.window_sizes_within([0; 4])
}

/// The input indices of every pooling window (row-major `[C, H, W]` input, outputs in
/// `[C, out_h, out_w]` order); padded positions are left out.
pub fn pool_windows(shape: &PoolShape) -> Vec<Vec<usize>> {
    let [oh, ow] = shape.out_hw();
    let [h, w] = shape.in_hw;
    let mut out = Vec::with_capacity(shape.channels * oh * ow);
    for c in 0..shape.channels {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut win = Vec::with_capacity(shape.kernel[0] * shape.kernel[1]);
                for ky in 0..shape.kernel[0] {
                    for kx in 0..shape.kernel[1] {
                        let y = (oy * shape.stride[0] + ky).checked_sub(shape.pads[0]);
                        let x = (ox * shape.stride[1] + kx).checked_sub(shape.pads[1]);
                        if let (Some(y), Some(x)) = (y, x)
                            && y < h
                            && x < w
                        {
                            win.push((c * h + y) * w + x);
                        }
                    }
                }
                out.push(win);
            }
        }
    }
    out
}

/// Max pooling of shares whose values lie in `range`: a comparison tree in the smallest ring
/// that holds the difference of any two input values (each level one batched
/// `max(a, b) = b + [a − b ≥ 0]·(a − b)`, whose comparison needs only `a − b` as a signed
/// integer), then one extension of each maximum into the output ring.
///
/// The input values themselves need not fit the comparison ring; the tree computes each
/// maximum modulo `2^l`. To extend it, the server subtracts `lo` from its share (a local step),
/// so the value is `max − lo ∈ [0, hi − lo]`, below `2^(l−1)`: its MSB is known to be 0 and the
/// extension ([`RescalePlan`] with `k = 0`, [`WrapMode::KnownMsb`]) is one correlated OT per
/// output; the server adds `lo` back in the output ring. An output ring no wider than the
/// comparison ring is a local reduction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaxPoolPlan {
    /// Width `l` of the comparison ring ([`MaxPoolPlan::comparison_bits`] of the range).
    pub ring_bits: u32,
    /// Range of the input values.
    pub range: (i128, i128),
    /// Comparisons per tree level ([`max_pool_levels`]).
    pub levels: Vec<u64>,
    /// Extension of `max − lo` from the comparison ring into the output ring, if wider.
    pub extend: Option<RescalePlan>,
    /// Width `R` of the output ring.
    pub out_bits: u32,
    /// How the comparisons compute their carries ([`CarryDepth::Ripple`] unless the schedule
    /// sets the layer's).
    pub depth: CarryDepth,
}

impl MaxPoolPlan {
    /// Plans max pooling of inputs in `range` over windows of `window_sizes` elements, output
    /// in `Z_{2^out_bits}`.
    ///
    /// # Errors
    /// [`ParamError`] for an empty range, a difference range wider than [`MAX_RING_BITS`]
    /// bits, or an invalid output ring.
    pub fn new(
        range: (i128, i128),
        window_sizes: &[usize],
        out_bits: u32,
    ) -> Result<Self, ParamError> {
        check_range(range)?;
        check_ring(out_bits)?;
        let ring_bits = Self::comparison_bits(range);
        check_ring(ring_bits)?;
        let extend = (out_bits > ring_bits)
            .then(|| {
                let shifted = (0, range.1 - range.0);
                RescalePlan::new(ring_bits, shifted, 0, out_bits, Rounding::NoTies)
            })
            .transpose()?;
        Ok(MaxPoolPlan {
            ring_bits,
            range,
            levels: max_pool_levels(window_sizes),
            extend,
            out_bits,
            depth: CarryDepth::Ripple,
        })
    }

    /// The plan of `k` of its `channels` channels (every channel has the same windows, so each
    /// tree level has `k / channels` of the comparisons): the pooling of a chunk of channels.
    pub fn for_channels(&self, k: u64, channels: u64) -> MaxPoolPlan {
        MaxPoolPlan {
            levels: self
                .levels
                .iter()
                .map(|&m| m / channels.max(1) * k)
                .collect(),
            ..self.clone()
        }
    }

    /// Width of the comparison ring for inputs in `range`: the differences `[lo − hi, hi − lo]`
    /// as signed integers.
    pub fn comparison_bits(range: (i128, i128)) -> u32 {
        signed_bits((range.0 - range.1, range.1 - range.0))
    }
}

/// Comparisons per level of the max-pool tree for windows of the given sizes.
pub fn max_pool_levels(window_sizes: &[usize]) -> Vec<u64> {
    let mut sizes = window_sizes.to_vec();
    let mut levels = Vec::new();
    while sizes.iter().any(|&s| s > 1) {
        levels.push(sizes.iter().map(|&s| (s / 2) as u64).sum());
        for s in &mut sizes {
            *s = s.div_ceil(2);
        }
    }
    levels
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rescale_picks_cheapest_variant() {
        // Small range: known MSB with offset 2^(l−2).
        let p = RescalePlan::new(16, (-1000, 1000), 4, 16, Rounding::NoTies).expect("valid");
        assert_eq!((p.offset, p.wrap), (1 << 14, WrapMode::KnownMsb));
        // Truncate-and-reduce never needs the wrap.
        let p = RescalePlan::new(16, (-30000, 30000), 4, 12, Rounding::NoTies).expect("valid");
        assert_eq!(p.wrap, WrapMode::None);
        // Full range: general.
        let p = RescalePlan::new(16, (-32768, 32000), 4, 16, Rounding::NoTies).expect("valid");
        assert_eq!((p.offset, p.wrap), (1 << 15, WrapMode::Chain));
        // Unsigned below 2^(l-1): offset 0, known MSB.
        let p = RescalePlan::new(8, (0, 100), 0, 12, Rounding::NoTies).expect("valid");
        assert_eq!(
            (p.offset, p.wrap, p.out_range()),
            (0, WrapMode::KnownMsb, (0, 100))
        );
        assert!(RescalePlan::new(8, (0, 300), 0, 12, Rounding::NoTies).is_err());
    }

    #[test]
    fn requant_ring_and_sides() {
        let p = RequantPlan::new(
            16,
            (-(1 << 14) + 1, (1 << 14) - 513),
            10,
            (0, 15),
            5,
            Rounding::NoTies,
        )
        .expect("valid");
        assert_eq!(p.rescale.out_bits, 5);
        assert_eq!((p.clamp.lower, p.clamp.upper), (true, false));
        assert_eq!(p.out_range(), (0, 15));
    }

    #[test]
    fn window_sizes_are_the_windows_lengths() {
        for (in_hw, kernel, stride, pads) in [
            ([7, 5], [3, 3], [2, 2], [1, 1, 1, 1]),
            ([4, 4], [2, 2], [2, 2], [0, 0, 0, 0]),
            ([6, 3], [3, 2], [1, 2], [1, 0, 1, 1]),
        ] {
            let shape = PoolShape {
                channels: 2,
                in_hw,
                kernel,
                stride,
                pads,
            };
            let lens: Vec<usize> = pool_windows(&shape).iter().map(Vec::len).collect();
            assert_eq!(pool_window_sizes(&shape), lens);
        }
    }

    #[test]
    fn unpack_needs_a_guard_bit_and_room() {
        let packing = |factor, field_bits| Packing {
            factor,
            field_bits,
            dim: crate::plan::PackDim::Spatial,
        };
        // Fields of 10 bits hold values in [−256, 256): 9-bit accumulators plus a guard bit.
        let acc9 = (-255, 255);
        let p = UnpackPlan::new(30, packing(3, 10), acc9, 40).expect("plan");
        // Carries c_1, c_2, and c_3 for the 40-bit ring (wider than a field).
        assert_eq!(p.carries(), 3);
        assert_eq!(
            UnpackPlan::new(30, packing(3, 10), acc9, 8).map(|p| p.out_bits),
            Err(ParamError::RangeTooWide {
                lo: -255,
                hi: 255,
                bits: 8
            })
        );
        // A 10-bit accumulator leaves no guard bit in 10-bit fields.
        assert!(matches!(
            UnpackPlan::new(30, packing(3, 10), (-511, 511), 40),
            Err(ParamError::RangeTooWide { bits: 9, .. })
        ));
        // Three fields of 11 bits do not fit 30 bits; one field is no packing.
        assert!(matches!(
            UnpackPlan::new(30, packing(3, 11), acc9, 40),
            Err(ParamError::Packing { .. })
        ));
        assert!(matches!(
            UnpackPlan::new(30, packing(1, 10), acc9, 40),
            Err(ParamError::Packing { .. })
        ));
        // Output ring no wider than a field: no carry out of the top field.
        assert_eq!(
            UnpackPlan::new(30, packing(3, 10), acc9, 10).map(|p| p.carries()),
            Ok(2)
        );
    }
}
