//! Fixed-size bit packing of ciphertext coefficients: every coefficient of a given kind takes
//! the same number of bits, so message sizes are exact functions of the parameters
//! (`crate::params::he`, summed per layer in `crate::cost::linear`).

/// Appends coefficients of at most 64 bits to a byte buffer, least significant bit first.
#[derive(Debug, Default)]
pub(crate) struct BitWriter {
    bytes: Vec<u8>,
    acc: u128,
    filled: u32,
}

impl BitWriter {
    /// A writer with room for `bytes` bytes.
    pub(crate) fn with_capacity(bytes: usize) -> Self {
        BitWriter {
            bytes: Vec::with_capacity(bytes),
            acc: 0,
            filled: 0,
        }
    }

    /// Appends the low `bits` bits of `value` (`bits ≤ 64`; higher bits must be zero).
    pub(crate) fn put(&mut self, value: u64, bits: u32) {
        debug_assert!(bits <= 64 && (bits == 64 || value >> bits == 0));
        self.acc |= u128::from(value) << self.filled;
        self.filled += bits;
        while self.filled >= 8 {
            self.bytes.push(self.acc as u8);
            self.acc >>= 8;
            self.filled -= 8;
        }
    }

    /// The bytes, the last one zero-padded.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        if self.filled > 0 {
            self.bytes.push(self.acc as u8);
        }
        self.bytes
    }
}

/// Reads coefficients written by [`BitWriter`].
#[derive(Debug)]
pub(crate) struct BitReader<'a> {
    bytes: &'a [u8],
    pos: usize,
    acc: u128,
    filled: u32,
}

impl<'a> BitReader<'a> {
    /// A reader over `bytes`.
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        BitReader {
            bytes,
            pos: 0,
            acc: 0,
            filled: 0,
        }
    }

    /// The next `bits`-bit value; zero once the bytes are exhausted (callers check the length
    /// first).
    pub(crate) fn get(&mut self, bits: u32) -> u64 {
        while self.filled < bits {
            let byte = self.bytes.get(self.pos).copied().unwrap_or(0);
            self.acc |= u128::from(byte) << self.filled;
            self.pos += 1;
            self.filled += 8;
        }
        let mask = if bits == 64 {
            u64::MAX
        } else {
            (1u64 << bits) - 1
        };
        let v = (self.acc as u64) & mask;
        self.acc >>= bits;
        self.filled -= bits;
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_mixed_widths() {
        let items = [
            (5u64, 3u32),
            (0x1_ffff_ffff, 33),
            (0, 1),
            (u64::MAX, 64),
            (1, 1),
            (77, 7),
        ];
        let mut w = BitWriter::default();
        items.iter().for_each(|&(v, b)| w.put(v, b));
        let bytes = w.finish();
        assert_eq!(bytes.len(), (3 + 33 + 1 + 64 + 1 + 7usize).div_ceil(8));
        let mut r = BitReader::new(&bytes);
        for &(v, b) in &items {
            assert_eq!(r.get(b), v);
        }
    }
}
