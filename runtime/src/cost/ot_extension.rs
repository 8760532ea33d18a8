//! Exact bytes of the OT extension that produces the random OTs (ROTs) the nonlinear
//! protocols consume: cryprot-ot's silent OT and IKNP as [`crate::ot`] runs them, on their own
//! connection. [`crate::cost::plan`] groups a plan's ROTs into batches and sums these bytes over
//! them.

use crate::plan::OtBackend;

/// Bytes of OT extension traffic for `count` random OTs in one direction as produced by
/// [`crate::ot`]'s cryprot-ot 0.3.0 backends: (OT sender's bytes, OT receiver's bytes),
/// application payload on the cryprot-net streams (QUIC/TLS framing not included).
///
/// `first` says whether this is the first batch of the backend instance (IKNP then also runs its
/// 128 Simplest-OT base OTs). Derived from the sources (stream ids, bincode varint frames) and
/// checked against cryprot-net's byte counters in `tests/ot_backends.rs`. x86-64 only (the
/// PPRF tree grouping follows `AES_PAR_BLOCKS = 8`).
pub fn ot_extension_bytes(backend: OtBackend, count: u64, first: bool) -> (u64, u64) {
    if count == 0 {
        return (0, 0);
    }
    match backend {
        // The IKNP instance sits on the backend's sub-connection (depth 1).
        OtBackend::Iknp => iknp_bytes(count.next_multiple_of(128), first, 1),
        OtBackend::Silent => {
            let conf = silent_config(count.max(SILENT_MIN_OTS));
            // Base OTs for the PPRF by IKNP one level deeper; then the PPRF expansion.
            let (is, ir) = iknp_bytes(conf.base_ots().next_multiple_of(128), first, 2);
            let header = stream_header(2);
            (is + header + conf.pprf_bytes(), ir + header)
        }
    }
}

/// Bytes of one cryprot-net stream opening (`u32` length + bincode varint stream id) for a
/// stream on a sub-connection at `depth` with a small id: `4 + 3 + depth`.
const fn stream_header(depth: u64) -> u64 {
    4 + 3 + depth
}

/// IKNP of `count` (a multiple of 128) OTs on a connection at `depth`: the receiver sends 128
/// rows of `count/8` bytes on a stream one level deeper, the sender only opens its half. On
/// first use the extension sender runs 128 Simplest-OT base OTs as receiver (128 compressed
/// Ristretto points in one varint-length frame) against the extension receiver (point and
/// seed commitment, then the seed).
fn iknp_bytes(count: u64, first: bool, depth: u64) -> (u64, u64) {
    let header = stream_header(depth + 1);
    let (mut s, mut r) = (header, header + 16 * count);
    if first {
        s += header + 4 + 1 + 128 * 32;
        r += header + (4 + 32 + 32) + (4 + 16);
    }
    (s, r)
}

/// Parameters of cryprot-ot's semi-honest silent OT for `count` OTs (`Config::configure` with
/// the default ExConv7x24 code, scaler 2, minimum distance 0.15, 128-bit security).
struct SilentConfig {
    partitions: u64,
    size_per: u64,
}

fn silent_config(count: u64) -> SilentConfig {
    const SCALER: u64 = 2;
    let n = count * SCALER;
    let d = (1.0f64 - 2.0 * 0.15).log2();
    let mut t = 40u64.max((-128.0 / d) as u64);
    if n < 512 {
        t = t.max(64);
    }
    let partitions = t.next_multiple_of(PPRF_PARALLEL_TREES);
    let size_per = 4u64.max(n.div_ceil(partitions).next_multiple_of(2));
    SilentConfig {
        partitions,
        size_per,
    }
}

/// Smallest silent-OT batch the backend requests (`ot::cryprot::SILENT_MIN_OTS`).
const SILENT_MIN_OTS: u64 = 128;

/// Trees the PPRF expands (and sends) together (`AES_PAR_BLOCKS` on x86-64).
const PPRF_PARALLEL_TREES: u64 = 8;

/// Length of a bincode varint.
fn varint_len(v: u64) -> u64 {
    match v {
        0..=250 => 1,
        251..=0xffff => 3,
        0x1_0000..=0xffff_ffff => 5,
        _ => 9,
    }
}

impl SilentConfig {
    fn depth(&self) -> u64 {
        u64::from(self.size_per.next_power_of_two().trailing_zeros())
    }

    fn base_ots(&self) -> u64 {
        self.partitions * self.depth()
    }

    /// The PPRF sender's frames: per group of trees, the group index, two vectors of
    /// `depth − 1` level sums of 8 blocks and the leaf-level OT messages (4 blocks per tree).
    fn pprf_bytes(&self) -> u64 {
        let d = self.depth();
        (0..self.partitions)
            .step_by(PPRF_PARALLEL_TREES as usize)
            .map(|g| {
                let trees = PPRF_PARALLEL_TREES.min(self.partitions - g);
                let sums = varint_len(d - 1) + (d - 1) * PPRF_PARALLEL_TREES * 16;
                4 + varint_len(g) + 2 * sums + varint_len(trees) + trees * 64
            })
            .sum()
    }
}
