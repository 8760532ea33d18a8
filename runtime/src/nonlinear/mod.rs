//! Two-party nonlinear protocols on additive shares over `Z_{2^l}`: comparison, MSB/DReLU,
//! ReLU and clamps, multiplexer, exact truncation / truncate-and-reduce / extension,
//! requantization, max and average pooling, residual add, concat, and HEQuant field unpacking.
//!
//! All protocols are exact (no probabilistic one-bit errors) and built from one primitive, the
//! correlated OT with a chosen choice derived from a random OT ([`cot`]): the receiver sends
//! `e = b ⊕ c`, the sender sends `d = Q0 − Q1 + Δ`; the outputs are additive shares of `b·Δ`
//! in `Z_{2^w}` (XOR shares for `w = 1`). Both messages go in one round (the sender fixes its
//! share once it sees `e`), except in the ripple carry chain, whose corrections all go first.
//! The carry trees also use 1-out-of-16 OTs built from four random OTs. On top of it:
//!
//! - [`carry`]: the carries of `a + b` (server's `a`, client's `b`) by a ripple chain of
//!   `c_j = a_j b_j ⊕ (a_j ⊕ b_j) c_{j−1}`: 4 bits and 2 ROTs per bit, one round per bit. This
//!   is the millionaire protocol (`[x < y]` = carry of `¬x + y`), the MSB (carry of the low
//!   `l − 1` bits) and the truncation carry. It trades rounds for bytes: CrypTFlow2's radix-16
//!   tree costs ≈ 11 bits per bit in `O(log l)` rounds (`protocols.md` §1.8), this chain 4.
//!   Each layer chooses ([`crate::plan::CarryDepth`]) between this chain and a parallel-prefix
//!   tree of generate/propagate bits: `1 + ⌈log2 l⌉` rounds for about 8 bits and 3 ROTs per bit.
//!   [`carry::carry_pair`] adds the carries of `(a − d) + b` for a public `d` to the same chain
//!   or tree: shared below bit `v2(d)`, local at it, 3 bits and 1 ROT per bit above it (chain).
//! - [`relu`]: ReLU and clamps (only the sides the value range lets bind; two sides share one
//!   [`carry::carry_pair`] and one multiplexer, [`cot::mux_plus`]).
//! - [`trunc`]: SiRNN-style rescaling `round(x / 2^k)` into any ring: truncation, the cheap
//!   known-MSB variant, truncate-and-reduce, signed/unsigned extension. Ties round to even as
//!   the plan semantics require (a second `k`-bit chain and one AND), or half up where the plan
//!   says `Rounding::NoTies`.
//! - [`requant`]: the plan's requantizations (linear layers, Rescale, Add, AvgPool) and HEQuant
//!   unpacking into the requantization's ring (`protocols.md` §3.5); [`pool`]: max and average
//!   pooling.
//!
//! Protocols are synchronous functions of a [`Session`]: shares and precomputed ROTs in, rounds
//! of bit-packed messages through an [`Exchange`], shares out. The parameter plans they execute
//! are in [`crate::params::nonlinear`], their exact costs in [`crate::cost::nonlinear`].
//!
//! # Decision: blocking round functions, not sans-IO state machines
//!
//! `linear/` is sans-IO (a layer is one query and one response, so its client and server are
//! message-in, message-out types), but a nonlinear protocol here is a plain function that calls
//! [`Session::round`] — send this party's message, block until the peer's arrives — as often as
//! it needs: a ripple-carry chain is one round per bit, and a requantization composes carry
//! chains, truncations and multiplexers with data-dependent parameters. Written as functions,
//! each protocol reads like its description in `protocols.md`, composes by calling, and keeps
//! its loop state on the stack; as sans-IO state machines every protocol and every composition
//! would need an explicit state enum per round. What the functions need from the outside is
//! only [`Exchange`]: an in-memory pipe for tests and `--mode sim`, or a QUIC frame stream
//! reached through the one sync-to-async [`crate::transport::bridge`].
//!
//! The cost: a protocol run occupies one OS thread that sits blocked in every round
//! ([`run_async`] spawns a blocking thread, a network session uses `block_in_place`), so the
//! parties cannot interleave two protocol runs on one thread or overlap a layer's rounds with
//! another layer's; cancelling is by closing the channel (a round then fails with
//! [`TransportError`]), and timeouts come from the bridge, not from the protocol. Tests of a
//! protocol need a peer on another thread (an in-memory pipe, `testutil::run`), not just
//! messages handed across.
//!
//! Revisit when the runtime should run many protocol instances concurrently per party (layers
//! or samples pipelined on one connection, many sessions per server thread): then each
//! protocol becomes a sans-IO state machine (mpz-style: a core that takes and returns message
//! structs) driven by an async task per instance, and the bridge disappears.

pub mod carry;
pub mod cot;
pub mod pool;
pub mod relu;
pub mod requant;
pub mod trunc;

use crate::cost::nonlinear::Cost;
use crate::ot::{OtError, OtPads, OtSource};
use crate::params::nonlinear::ParamError;
use crate::transport::bridge::Bridge;
use crate::transport::{BlockingExchange, Exchange, FrameChannel, TransportError};
use tokio::io::{AsyncRead, AsyncWrite};

/// The two parties. The server is the model owner, the client the input owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Model owner.
    Server,
    /// Input owner.
    Client,
}

/// Why a nonlinear protocol failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// Invalid public parameters.
    #[error(transparent)]
    Param(#[from] ParamError),
    /// The OT material ran out.
    #[error(transparent)]
    Ot(#[from] OtError),
    /// The channel failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The peer's message has the wrong length.
    #[error("round {round}: peer message of {actual} bytes, expected {expected}")]
    MessageLength {
        /// Round index in this session.
        round: u64,
        /// Expected bytes.
        expected: usize,
        /// Received bytes.
        actual: usize,
    },
    /// The blocking protocol task failed to complete.
    #[error("protocol task: {0}")]
    Task(String),
    /// Share vectors of inconsistent lengths.
    #[error("expected {expected} elements, got {actual}")]
    Length {
        /// Expected count.
        expected: usize,
        /// Actual count.
        actual: usize,
    },
}

/// One party's view of a protocol run: its role, its ROTs and its channel.
pub struct Session<'a> {
    role: Role,
    pads: &'a mut OtPads,
    exchange: &'a mut dyn Exchange,
    rounds: u64,
}

impl<'a> Session<'a> {
    /// A session of `role` consuming `pads` and talking over `exchange`.
    pub fn new(role: Role, pads: &'a mut OtPads, exchange: &'a mut dyn Exchange) -> Self {
        Session {
            role,
            pads,
            exchange,
            rounds: 0,
        }
    }

    /// This party's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Whether this party is the server.
    pub fn is_server(&self) -> bool {
        self.role == Role::Server
    }

    /// Rounds run so far.
    pub fn rounds(&self) -> u64 {
        self.rounds
    }

    /// The ROTs.
    pub fn pads(&mut self) -> &mut OtPads {
        self.pads
    }

    /// One round: sends `out`, receives exactly `in_bits` bits from the peer.
    ///
    /// # Errors
    /// [`ProtocolError::Transport`] on channel failure, [`ProtocolError::MessageLength`] if the
    /// peer's message does not have `⌈in_bits/8⌉` bytes.
    pub fn round(&mut self, out: BitWriter, in_bits: u64) -> Result<BitReader, ProtocolError> {
        let incoming = self.exchange.exchange(out.into_bytes())?;
        let expected = in_bits.div_ceil(8) as usize;
        self.rounds += 1;
        if incoming.len() != expected {
            return Err(ProtocolError::MessageLength {
                round: self.rounds,
                expected,
                actual: incoming.len(),
            });
        }
        Ok(BitReader {
            bytes: incoming,
            pos: 0,
        })
    }
}

/// Packs fixed-width fields into bytes, least significant bit first.
#[derive(Default)]
pub struct BitWriter {
    bytes: Vec<u8>,
    bits: u64,
}

impl BitWriter {
    /// An empty message.
    pub fn new() -> Self {
        BitWriter::default()
    }

    /// Appends the low `width` (≤ 64) bits of `value`.
    pub fn push(&mut self, value: u64, width: u32) {
        let mut v = value;
        let mut left = width;
        while left > 0 {
            let used = (self.bits % 8) as u32;
            if used == 0 {
                self.bytes.push(0);
            }
            let take = (8 - used).min(left);
            let last = self.bytes.len() - 1;
            self.bytes[last] |= ((v & ((1u64 << take) - 1)) as u8) << used;
            v = if take == 64 { 0 } else { v >> take };
            left -= take;
            self.bits += u64::from(take);
        }
    }

    /// Appends one bit.
    pub fn push_bit(&mut self, b: bool) {
        self.push(u64::from(b), 1);
    }

    /// The packed bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// Reads fields written by [`BitWriter`]. The length was checked by [`Session::round`]; reads
/// past the end yield zeros (they cannot happen for a length-checked message).
pub struct BitReader {
    bytes: Vec<u8>,
    pos: u64,
}

impl BitReader {
    /// A reader over a message whose length the caller has checked.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        BitReader { bytes, pos: 0 }
    }

    /// Reads `width` (≤ 64) bits.
    pub fn read(&mut self, width: u32) -> u64 {
        let mut out = 0u64;
        let mut got = 0u32;
        while got < width {
            let byte = self
                .bytes
                .get((self.pos / 8) as usize)
                .copied()
                .unwrap_or(0);
            let used = (self.pos % 8) as u32;
            let take = (8 - used).min(width - got);
            let bits = (u64::from(byte) >> used) & ((1u64 << take) - 1);
            out |= bits << got;
            got += take;
            self.pos += u64::from(take);
        }
        out
    }

    /// Reads one bit.
    pub fn read_bit(&mut self) -> bool {
        self.read(1) == 1
    }
}

/// Checks that a share vector has `n` elements.
pub(crate) fn check_len(actual: usize, expected: usize) -> Result<(), ProtocolError> {
    if actual == expected {
        Ok(())
    } else {
        Err(ProtocolError::Length { expected, actual })
    }
}

/// Runs protocol `f` as `role` over an async framed stream: fetches from `ot` exactly the ROTs
/// `cost` announces, then runs `f` on a blocking thread ([`Bridge::spawn_blocking`]) that drives
/// the channel through the current runtime. Returns `f`'s output and
/// the channel.
///
/// # Errors
/// [`ProtocolError`] from the OT backend, the channel or the protocol.
pub async fn run_async<S, O, T, F>(
    role: Role,
    ot: &mut O,
    channel: FrameChannel<S>,
    cost: &Cost,
    f: F,
) -> Result<(T, FrameChannel<S>), ProtocolError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    O: OtSource,
    T: Send + 'static,
    F: FnOnce(&mut Session<'_>) -> Result<T, ProtocolError> + Send + 'static,
{
    let (send, receive) = match role {
        Role::Server => (cost.server_rots, cost.client_rots),
        Role::Client => (cost.client_rots, cost.server_rots),
    };
    let pads = ot.pads(send as usize, receive as usize).await?;
    run_with_pads(role, pads, channel, f).await
}

/// [`run_async`] with ROTs already fetched (e.g. one batch for several protocols run one
/// after the other in `f`).
///
/// # Errors
/// [`ProtocolError`] from the channel or the protocol.
pub async fn run_with_pads<S, T, F>(
    role: Role,
    mut pads: OtPads,
    channel: FrameChannel<S>,
    f: F,
) -> Result<(T, FrameChannel<S>), ProtocolError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    T: Send + 'static,
    F: FnOnce(&mut Session<'_>) -> Result<T, ProtocolError> + Send + 'static,
{
    Bridge::spawn_blocking(None, move |bridge| {
        let mut exchange = BlockingExchange::new(channel, bridge);
        let out = f(&mut Session::new(role, &mut pads, &mut exchange))?;
        Ok((out, exchange.into_inner()))
    })
    .await
    .map_err(|e| ProtocolError::Task(e.to_string()))?
}

/// Concatenation (along the channel axis) of share tensors in one ring: local.
pub fn concat(parts: &[&[u64]]) -> Vec<u64> {
    parts.iter().flat_map(|p| p.iter().copied()).collect()
}

#[cfg(test)]
pub(crate) mod testutil {
    //! Runs both parties of a protocol on two threads over an in-memory pipe with ideal OT.

    use super::*;
    use crate::cost::nonlinear::Cost;
    use crate::ot::IdealOt;
    use crate::plan::Rounding;
    use crate::ring::Ring;
    use crate::transport::memory::pipe;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha12Rng;

    /// Shares `values` (signed) in `ring` with a seeded mask: (server, client).
    pub fn share(ring: Ring, values: &[i128], seed: u64) -> (Vec<u64>, Vec<u64>) {
        let mut rng = ChaCha12Rng::seed_from_u64(seed);
        let vals: Vec<u64> = values.iter().map(|&v| ring.reduce(v as u64)).collect();
        let mask: Vec<u64> = vals.iter().map(|_| ring.reduce(rng.random())).collect();
        ring.share_with_mask(&vals, &mask)
    }

    /// Every value of `range` under every share split of `ring`, the client's share running
    /// through the whole ring for each value: (values, server shares, client shares).
    pub fn every_split(ring: Ring, range: (i128, i128)) -> (Vec<i128>, Vec<u64>, Vec<u64>) {
        let splits = 1u64 << ring.bits();
        let values: Vec<i128> = (range.0..=range.1)
            .flat_map(|v| std::iter::repeat_n(v, splits as usize))
            .collect();
        let mask: Vec<u64> = (0..values.len() as u64).map(|i| i % splits).collect();
        let vals: Vec<u64> = values.iter().map(|&v| ring.reduce(v as u64)).collect();
        let (server, client) = ring.share_with_mask(&vals, &mask);
        (values, server, client)
    }

    /// Checks faithful truncations `got` of `values` by `2^k` under [`every_split`] of a
    /// `bits`-bit ring: each is `⌊x / 2^k⌋` or `⌈x / 2^k⌉`, after `clamp`, and the ceiling
    /// comes up for exactly `(x mod 2^k)·2^(bits − k)` of the `2^bits` splits of `x` (the
    /// protocol rounds stochastically and without bias over uniform shares).
    pub fn check_faithful(values: &[i128], got: &[i128], bits: u32, k: u32, clamp: (i128, i128)) {
        let splits = 1usize << bits;
        for (x, got) in values.chunks(splits).zip(got.chunks(splits)) {
            let x = x[0];
            let floor = x >> k;
            let rest = x - (floor << k);
            let (lo, hi) = (
                floor.clamp(clamp.0, clamp.1),
                (floor + i128::from(rest > 0)).clamp(clamp.0, clamp.1),
            );
            assert!(
                got.iter().all(|&y| y == lo || y == hi),
                "x {x} k {k}: {got:?}"
            );
            if lo != hi {
                let ceil = got.iter().filter(|&&y| y == hi).count() as i128;
                assert_eq!(ceil, rest << (bits - k), "x {x} k {k}");
            }
        }
    }

    /// Reconstructs signed values.
    pub fn open(ring: Ring, a: &[u64], b: &[u64]) -> Vec<i128> {
        ring.add_vec(a, b)
            .into_iter()
            .map(|v| i128::from(ring.to_signed(v)))
            .collect()
    }

    /// Runs `f` as both parties with exactly the ROTs `cost` announces; asserts that the
    /// payload bytes and rounds equal `cost` and that every ROT was consumed. Returns both
    /// outputs.
    pub fn run<T: Send + 'static>(
        cost: Cost,
        f: impl Fn(&mut Session<'_>) -> Result<T, ProtocolError> + Send + Sync + Clone + 'static,
    ) -> (T, T) {
        let (mut so, mut co) = IdealOt::pair(99);
        let mut sp = so.pads_now(cost.server_rots as usize, cost.client_rots as usize);
        let mut cp = co.pads_now(cost.client_rots as usize, cost.server_rots as usize);
        let (mut se, mut ce) = pipe();
        let g = f.clone();
        let client = std::thread::spawn(move || {
            let mut s = Session::new(Role::Client, &mut cp, &mut ce);
            let out = g(&mut s).expect("client");
            (out, ce.counters(), cp.remaining())
        });
        let mut s = Session::new(Role::Server, &mut sp, &mut se);
        let out = f(&mut s).expect("server");
        let (cout, cc, cleft) = client.join().expect("client thread");
        let sc = se.counters();
        assert_eq!(sc.bytes_sent, cost.server_bytes, "server bytes");
        assert_eq!(cc.bytes_sent, cost.client_bytes, "client bytes");
        assert_eq!(sc.frames_sent, cost.rounds, "rounds");
        assert_eq!((sp.remaining(), cleft), ((0, 0), (0, 0)), "unused ROTs");
        (out, cout)
    }

    /// `x / 2^k` rounded to nearest ([`crate::ring::round_shift`]); ties up (`NoTies`, the
    /// cheap protocols' rule) or to even.
    pub fn round_shift(x: i128, k: u32, rounding: Rounding) -> i128 {
        match rounding.tie_window() {
            None => crate::ring::round_shift(x, k).half_up(),
            Some(window) => crate::ring::round_shift_within(x, k, window).half_even(),
        }
    }

    /// Replaces values from index 7 on by up to 40 ties `q·2^k + 2^(k−1)` inside `range`
    /// (both parities of `q`); with a tie window `w > 0`, the values at the window's edges and
    /// just outside it (`± w`, `± (w + 1)` from the midpoint) as well.
    pub fn with_ties(v: &mut [i128], range: (i128, i128), k: u32, window: u64) {
        if k == 0 {
            return;
        }
        let w = i128::from(window);
        let offsets = if w == 0 {
            vec![0]
        } else {
            vec![0, -w, w, -w - 1, w + 1]
        };
        let mid = ((range.0 / 2 + range.1 / 2) >> k) << k;
        let ties = (-20i128..20)
            .zip(offsets.into_iter().cycle())
            .map(|(j, o)| mid + (j << k) + (1 << (k - 1)) + o)
            .filter(|t| (range.0..=range.1).contains(t));
        for (slot, t) in v.iter_mut().skip(7).zip(ties) {
            *slot = t;
        }
    }

    /// Random signed values in `[lo, hi]` with the edge values first.
    pub fn values(lo: i128, hi: i128, n: usize, seed: u64) -> Vec<i128> {
        let mut rng = ChaCha12Rng::seed_from_u64(seed);
        let mut v: Vec<i128> = [lo, hi, 0, -1, 1, lo + 1, hi - 1]
            .into_iter()
            .filter(|x| (lo..=hi).contains(x))
            .collect();
        while v.len() < n {
            v.push(rng.random_range(lo..=hi));
        }
        v.truncate(n);
        v
    }

    #[test]
    fn wrong_length_peer_message_is_rejected() {
        let (mut so, _) = IdealOt::pair(1);
        let mut pads = so.pads_now(100, 100);
        let (mut se, mut ce) = pipe();
        let peer = std::thread::spawn(move || {
            // The real client sends 20 choice corrections (3 bytes) for 10 elements of a 2-bit
            // millionaire; send 4 bytes.
            let _ = ce.exchange(vec![0; 4]);
        });
        let mut s = Session::new(Role::Server, &mut pads, &mut se);
        let err = crate::nonlinear::carry::less_than(
            &mut s,
            &[1; 10],
            2,
            crate::plan::CarryDepth::Ripple,
        )
        .expect_err("tampered");
        assert!(
            matches!(
                err,
                ProtocolError::MessageLength {
                    round: 1,
                    expected: 3,
                    actual: 4
                }
            ),
            "{err:?}"
        );
        peer.join().expect("peer");
    }

    #[test]
    fn concat_is_local() {
        let ring = Ring::new(9);
        let (a0, a1) = share(ring, &[-5, 100], 1);
        let (b0, b1) = share(ring, &[7], 2);
        let (s, c) = (concat(&[&a0, &b0]), concat(&[&a1, &b1]));
        assert_eq!(open(ring, &s, &c), vec![-5, 100, 7]);
    }

    #[test]
    fn bits_round_trip() {
        let mut w = BitWriter::new();
        w.push(5, 3);
        w.push(u64::MAX, 64);
        w.push_bit(true);
        w.push(0x1234, 13);
        let bytes = w.into_bytes();
        assert_eq!(bytes.len(), (3 + 64 + 1 + 13usize).div_ceil(8));
        let mut r = BitReader { bytes, pos: 0 };
        assert_eq!(
            (r.read(3), r.read(64), r.read_bit(), r.read(13)),
            (5, u64::MAX, true, 0x1234)
        );
    }
}
