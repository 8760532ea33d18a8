//! Oblivious transfer: the [`OtSource`] abstraction, the [`IdealOt`] dealer for tests and the
//! cryprot-ot backends ([`cryprot`]).
//!
//! Every nonlinear protocol consumes *random OTs* (ROTs): the OT sender gets two random 128-bit
//! pads `(p0, p1)`, the receiver a random choice bit `c` and `p_c`. The protocols derive from them
//! the correlated OTs over `Z_{2^k}` with chosen choices they need (one choice-correction bit
//! from the receiver, one `k`-bit message from the sender; see `nonlinear`), so the backend only
//! has to produce ROTs in bulk before a protocol runs. Silent OT produces ROTs natively (random
//! choices); IKNP produces ROTs for receiver-chosen random choices.
//!
//! The synchronous party drivers take their ROTs from a [`PadSupply`], one batch at a time
//! ([`crate::cost::plan::OtBatch`]); [`BlockingOt`] serves an async [`OtSource`] to them through
//! the [`crate::transport::bridge`].
//!
//! Background: `protocols.md` §1.8, `dependencies.md` §2b (cryprot-ot 0.3.0).

pub mod cryprot;

use std::future::Future;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;

use crate::transport::bridge::{Bridge, TimedOut};

/// Why OT material could not be produced or consumed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OtError {
    /// A protocol asked for more ROTs than were fetched for it (a bug in the cost accounting).
    #[error("OT pads exhausted: need {need} more {dir} ROTs, {left} left")]
    Exhausted {
        /// ROTs requested.
        need: usize,
        /// ROTs left.
        left: usize,
        /// `"sender"` or `"receiver"`.
        dir: &'static str,
    },
    /// The OT extension backend failed.
    #[error("OT backend: {0}")]
    Backend(String),
    /// The peer sent no OT-extension message for longer than the bound while this party had
    /// nothing to compute (the peer stalled or vanished).
    #[error(
        "OT extension: no message from the peer for {} s while waiting for it",
        .0.as_secs_f64()
    )]
    Timeout(Duration),
}

/// The ROTs one party holds for one protocol run: those where it is the OT sender and those
/// where it is the receiver, consumed in order.
///
/// # Security
/// The pads are secret; `Debug` prints only the counts.
pub struct OtPads {
    send: Vec<[u128; 2]>,
    send_pos: usize,
    choices: Vec<bool>,
    recv: Vec<u128>,
    recv_pos: usize,
}

impl std::fmt::Debug for OtPads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (s, r) = self.remaining();
        write!(f, "OtPads {{ send_left: {s}, recv_left: {r} }}")
    }
}

impl OtPads {
    /// Pads from sender ROTs and receiver ROTs (choices and chosen pads).
    ///
    /// # Panics
    /// If `choices` and `recv` differ in length.
    pub fn new(send: Vec<[u128; 2]>, choices: Vec<bool>, recv: Vec<u128>) -> Self {
        assert_eq!(choices.len(), recv.len(), "one choice per received pad");
        OtPads {
            send,
            send_pos: 0,
            choices,
            recv,
            recv_pos: 0,
        }
    }

    /// ROTs left as (sender, receiver).
    pub fn remaining(&self) -> (usize, usize) {
        (
            self.send.len() - self.send_pos,
            self.recv.len() - self.recv_pos,
        )
    }

    /// Moves the next `send` sender and `receive` receiver ROTs into a new [`OtPads`], so one
    /// large OT batch (cheap per OT with silent OT) can serve many protocol runs; the peer must
    /// split its pads the same way.
    ///
    /// # Errors
    /// [`OtError::Exhausted`] if fewer are left.
    pub fn split(&mut self, send: usize, receive: usize) -> Result<OtPads, OtError> {
        let sent = self.take_send(send)?.to_vec();
        let (choices, recv) = self.take_recv(receive)?;
        Ok(OtPads::new(sent, choices.to_vec(), recv.to_vec()))
    }

    /// Appends `more`'s unconsumed ROTs after this one's (dropping those already consumed).
    pub fn append(&mut self, more: OtPads) {
        self.send.drain(..self.send_pos);
        self.send.extend_from_slice(&more.send[more.send_pos..]);
        self.send_pos = 0;
        self.choices.drain(..self.recv_pos);
        self.choices
            .extend_from_slice(&more.choices[more.recv_pos..]);
        self.recv.drain(..self.recv_pos);
        self.recv.extend_from_slice(&more.recv[more.recv_pos..]);
        self.recv_pos = 0;
    }

    /// Takes the next `n` sender ROTs.
    ///
    /// # Errors
    /// [`OtError::Exhausted`] if fewer are left.
    pub fn take_send(&mut self, n: usize) -> Result<&[[u128; 2]], OtError> {
        let left = self.send.len() - self.send_pos;
        if n > left {
            return Err(OtError::Exhausted {
                need: n,
                left,
                dir: "sender",
            });
        }
        self.send_pos += n;
        Ok(&self.send[self.send_pos - n..self.send_pos])
    }

    /// Takes the next `n` receiver ROTs as (choices, pads).
    ///
    /// # Errors
    /// [`OtError::Exhausted`] if fewer are left.
    pub fn take_recv(&mut self, n: usize) -> Result<(&[bool], &[u128]), OtError> {
        let left = self.recv.len() - self.recv_pos;
        if n > left {
            return Err(OtError::Exhausted {
                need: n,
                left,
                dir: "receiver",
            });
        }
        self.recv_pos += n;
        let r = self.recv_pos - n..self.recv_pos;
        Ok((&self.choices[r.clone()], &self.recv[r]))
    }
}

/// A producer of random OTs for one party. The peer's source must be asked for the matching
/// counts (this party's `send` = the peer's `receive`) in the same order.
pub trait OtSource {
    /// Produces `send` ROTs with this party as sender and `receive` ROTs with this party as
    /// receiver.
    ///
    /// # Errors
    /// [`OtError::Backend`] if the OT protocol fails.
    fn pads(
        &mut self,
        send: usize,
        receive: usize,
    ) -> impl Future<Output = Result<OtPads, OtError>> + Send;
}

/// Where a synchronous party driver gets its ROTs: one batch at a time, blocking until it is
/// produced. The peer's supply is asked for the matching counts at the same point of the run.
pub trait PadSupply {
    /// Produces `send` ROTs with this party as sender and `receive` with it as receiver.
    ///
    /// # Errors
    /// [`OtError::Backend`] or [`OtError::Timeout`] if the OT extension fails.
    fn batch(&mut self, send: usize, receive: usize) -> Result<OtPads, OtError>;
}

/// An [`OtSource`] served to a synchronous driver: each batch runs on the runtime `bridge`
/// reaches and fails with [`OtError::Timeout`] when the bridge gives up waiting for the peer
/// (however long the batch's own computation takes).
pub struct BlockingOt<'a, S> {
    source: &'a mut S,
    bridge: Bridge,
}

impl<'a, S: OtSource> BlockingOt<'a, S> {
    /// Serves `source` through `bridge`.
    pub fn new(source: &'a mut S, bridge: Bridge) -> Self {
        BlockingOt { source, bridge }
    }
}

impl<S: OtSource> PadSupply for BlockingOt<'_, S> {
    fn batch(&mut self, send: usize, receive: usize) -> Result<OtPads, OtError> {
        self.bridge.wait(self.source.pads(send, receive))?
    }
}

impl From<TimedOut> for OtError {
    fn from(TimedOut(d): TimedOut) -> Self {
        OtError::Timeout(d)
    }
}

/// Which party an [`IdealOt`] serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The model owner.
    Server,
    /// The input owner.
    Client,
}

/// Ideal ROT functionality for tests: both parties' halves come from one seeded PRG per
/// direction, so matching requests yield matching pads without any communication.
///
/// # Security
/// None: each half can recompute the other's pads. Tests and benchmarks of the protocol logic
/// only.
pub struct IdealOt {
    side: Side,
    server_to_client: ChaCha12Rng,
    client_to_server: ChaCha12Rng,
}

impl IdealOt {
    /// The two halves (server, client) of a dealer seeded with `seed`.
    pub fn pair(seed: u64) -> (IdealOt, IdealOt) {
        let make = |side| {
            let mut s2c = ChaCha12Rng::seed_from_u64(seed);
            s2c.set_stream(1);
            let mut c2s = ChaCha12Rng::seed_from_u64(seed);
            c2s.set_stream(2);
            IdealOt {
                side,
                server_to_client: s2c,
                client_to_server: c2s,
            }
        };
        (make(Side::Server), make(Side::Client))
    }

    /// The pads without async (the dealer never waits).
    pub fn pads_now(&mut self, send: usize, receive: usize) -> OtPads {
        let (send_rng, recv_rng) = match self.side {
            Side::Server => (&mut self.server_to_client, &mut self.client_to_server),
            Side::Client => (&mut self.client_to_server, &mut self.server_to_client),
        };
        let sent = (0..send).map(|_| draw(send_rng).0).collect();
        let (choices, recv) = (0..receive)
            .map(|_| {
                let (p, c) = draw(recv_rng);
                (c, p[usize::from(c)])
            })
            .unzip();
        OtPads::new(sent, choices, recv)
    }
}

fn draw(rng: &mut ChaCha12Rng) -> ([u128; 2], bool) {
    let p = [rng.random::<u128>(), rng.random::<u128>()];
    (p, rng.random::<bool>())
}

impl PadSupply for IdealOt {
    fn batch(&mut self, send: usize, receive: usize) -> Result<OtPads, OtError> {
        Ok(self.pads_now(send, receive))
    }
}

impl OtSource for IdealOt {
    fn pads(
        &mut self,
        send: usize,
        receive: usize,
    ) -> impl Future<Output = Result<OtPads, OtError>> + Send {
        let pads = self.pads_now(send, receive);
        async move { Ok(pads) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// cryprot-codes compiles its fast silent-OT encoder only with `target_feature = "sse4.1"`
    /// and falls back to scalar code otherwise (several times slower); `.cargo/config.toml`
    /// builds for x86-64-v3. Every crate of the build gets the same target features, so this
    /// crate seeing them means the encoder's fast path is the one compiled in.
    #[test]
    #[cfg(target_arch = "x86_64")]
    #[allow(
        clippy::assertions_on_constants,
        reason = "the constant is the build's target features, which is what is tested"
    )]
    fn the_simd_paths_of_the_ot_encoder_are_compiled_in() {
        assert!(
            cfg!(target_feature = "sse4.1") && cfg!(target_feature = "avx2"),
            "built without SSE4.1/AVX2: see .cargo/config.toml (RUSTFLAGS overrides it)"
        );
    }

    #[test]
    fn ideal_halves_match() {
        let (mut s, mut c) = IdealOt::pair(7);
        let mut sp = s.pads_now(100, 50);
        let mut cp = c.pads_now(50, 100);
        let sent = sp.take_send(100).expect("enough").to_vec();
        let (ch, got) = cp.take_recv(100).expect("enough");
        for i in 0..100 {
            assert_eq!(got[i], sent[i][usize::from(ch[i])]);
        }
        let sent = cp.take_send(50).expect("enough").to_vec();
        let (ch, got) = sp.take_recv(50).expect("enough");
        for i in 0..50 {
            assert_eq!(got[i], sent[i][usize::from(ch[i])]);
        }
        assert!(matches!(
            sp.take_send(1),
            Err(OtError::Exhausted {
                need: 1,
                left: 0,
                ..
            })
        ));
    }

    #[test]
    fn split_pads_stay_paired() {
        let (mut s, mut c) = IdealOt::pair(8);
        let (mut sp, mut cp) = (s.pads_now(30, 0), c.pads_now(0, 30));
        let _ = (
            sp.split(10, 0).expect("split"),
            cp.split(0, 10).expect("split"),
        );
        let (mut s2, mut c2) = (
            sp.split(20, 0).expect("split"),
            cp.split(0, 20).expect("split"),
        );
        let sent = s2.take_send(20).expect("enough").to_vec();
        let (ch, got) = c2.take_recv(20).expect("enough");
        for i in 0..20 {
            assert_eq!(got[i], sent[i][usize::from(ch[i])]);
        }
        assert!(sp.split(1, 0).is_err());
    }
}
