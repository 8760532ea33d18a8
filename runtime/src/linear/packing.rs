//! Unpacking of HEQuant intra-coefficient packing (`protocols.md` §3.5).
//!
//! A packed output word `z ∈ Z_{2^ℓ}` (`ℓ = plain_bits ≥ b·s`) holds `b` fields of `s` bits:
//! `z = Σ_j 2^{j·s}·(y_j + 2^{s−1})`, each field biased into `[0, 2^s)` by the server (so no
//! borrow crosses fields). Every field is biased, also an empty one (`y_j = 0`) and one that
//! holds a partial sum of a smaller edge tile, so `s` must bound every partial sum
//! (`field_bits ≥ acc_bits` with the L1-norm range analysis does). The layer returns additive
//! shares `z = z_C + z_S mod 2^ℓ`.
//!
//! # Field extraction on shares (for the nonlinear layer)
//!
//! `y_j = (⌊z / 2^{j·s}⌋ mod 2^s) − 2^{s−1}`: a **truncate-and-reduce** of the shares by
//! `j·s` bits to `s` bits, then a public subtraction. On shares, `⌊z/2^{js}⌋ mod 2^s =
//! (⌊z_C/2^{js}⌋ + ⌊z_S/2^{js}⌋ + c_j) mod 2^s`, where `c_j ∈ {0, 1}` is the carry of the low
//! `j·s` bits (`z_C mod 2^{js} + z_S mod 2^{js} ≥ 2^{js}`), one millionaire on `j·s` bits
//! (none for `j = 0`); the wrap past `2^ℓ` vanishes mod `2^s` because `ℓ ≥ (j+1)·s`. Fused with a
//! requantization `⌊(y·m + 2^{k−1})/2^k⌋` the shift becomes `j·s + k` on the shares of
//! `z·m` restricted to the field (the nonlinear layer multiplies the `s`-bit field shares by
//! `m` locally, then truncates by `k`).

/// Field `j` of a packed word: `(⌊z / 2^{j·s}⌋ mod 2^s) − 2^{s−1}`.
pub fn extract_field(word: u64, j: u32, field_bits: u32) -> i64 {
    let s = field_bits;
    let field = (word >> (j * s)) & ((1u64 << s) - 1);
    field as i64 - (1i64 << (s - 1))
}

/// Plaintext unpacking of reconstructed packed words into the layer's output elements (the
/// reference the nonlinear layer's share-level extraction must reproduce).
///
/// `fields` is `Layout::word_fields`: `words.len() × factor` entries, the output element of
/// each field or `NO_ELEMENT`. Returns `out_len` values (zero where no field lands).
pub fn unpack_words(
    words: &[u64],
    fields: &[u32],
    factor: usize,
    field_bits: u32,
    out_len: usize,
) -> Vec<i64> {
    let mut out = vec![0i64; out_len];
    for (w, word_fields) in words.iter().zip(fields.chunks(factor)) {
        for (j, &e) in word_fields.iter().enumerate() {
            if let Some(slot) = out.get_mut(e as usize) {
                *slot = extract_field(*w, j as u32, field_bits);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_biased_fields() {
        // Fields of 5 bits: y = [−3, 15, −16].
        let s = 5;
        let word: u64 = [-3i64, 15, -16]
            .iter()
            .enumerate()
            .map(|(j, &y)| ((y + 16) as u64) << (j as u32 * s))
            .sum();
        assert_eq!([0, 1, 2].map(|j| extract_field(word, j, s)), [-3, 15, -16]);
        let fields = [2, u32::MAX, 0];
        assert_eq!(unpack_words(&[word], &fields, 3, s, 3), vec![-16, 0, -3]);
    }
}
