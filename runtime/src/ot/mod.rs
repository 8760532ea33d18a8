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
//! ([`crate::cost::plan::OtBatch`]), into one [`OtPads`]: the backend writes each batch's pads
//! into a buffer of its own as the OT crate's [`Pad`] blocks (no conversion), and a protocol
//! takes the pads of its current call ([`OtPads::take_send`], [`OtPads::take_recv`]): a take
//! from the start of a batch that covers it takes the batch's buffer itself, other pads are
//! copied, and a batch's buffer is freed as soon as its last pad is taken. So a party holds
//! the pads of one chunk of a nonlinear protocol once
//! ([`crate::plan::GlobalProtocol::chunk_rots`]; pads copied out of a batch not yet consumed
//! are held twice until it is, at most one batch per direction), whatever the size of the
//! model.
//! [`with_prefetch`] serves an async [`OtSource`] to the drivers through the
//! [`crate::transport::bridge`]: a producer thread runs the plan's batches one chunk ahead of
//! the driver, so the OT extension overlaps the protocol's own computation and waiting, and
//! the pads grow by at most the next chunk's batches.
//!
//! Background: `protocols.md` §1.8, `dependencies.md` §2b (cryprot-ot 0.3.0).

pub mod cryprot;

use std::collections::VecDeque;
use std::future::Future;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;

use crate::transport::bridge::{Bridge, TimedOut};

/// One 128-bit OT pad, stored as the OT crate's block: the backends write their output into
/// [`OtPads`] in place. `u128::from(pad)` reads its value.
pub type Pad = cryprot_core::Block;

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
    /// A run ended with ROTs it never consumed (a bug in the cost accounting).
    #[error("OT pads left unused: {send} sender and {receive} receiver ROTs")]
    Unused {
        /// Sender ROTs left.
        send: usize,
        /// Receiver ROTs left.
        receive: usize,
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
/// where it is the receiver, consumed in order. Each OT batch is one segment, written in
/// place by the backend and freed (or handed to the take that covers it) once every pad of it
/// is taken.
///
/// # Security
/// The pads are secret; `Debug` prints only the counts.
#[derive(Default)]
pub struct OtPads {
    send: Segments<[Pad; 2]>,
    choices: Segments<bool>,
    recv: Segments<Pad>,
}

impl std::fmt::Debug for OtPads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (s, r) = self.remaining();
        write!(f, "OtPads {{ send_left: {s}, recv_left: {r} }}")
    }
}

impl OtPads {
    /// ROTs left as (sender, receiver).
    pub fn remaining(&self) -> (usize, usize) {
        (self.send.remaining(), self.recv.remaining())
    }

    /// ROTs the buffers of the batches not yet consumed can hold, as (sender, receiver).
    pub fn capacity(&self) -> (usize, usize) {
        (self.send.capacity(), self.recv.capacity())
    }

    /// New empty buffers for the next batch, after the pads left: sender pads, receiver
    /// choices, receiver pads, which the backend fills (choices and receiver pads of equal
    /// length).
    pub fn next_batch(&mut self) -> (&mut Vec<[Pad; 2]>, &mut Vec<bool>, &mut Vec<Pad>) {
        (self.send.push(), self.choices.push(), self.recv.push())
    }

    /// Moves the ROTs of `batch` (produced elsewhere, e.g. ahead of use) after those left, as
    /// their own segments.
    pub fn append(&mut self, batch: OtPads) {
        self.send.append(batch.send);
        self.choices.append(batch.choices);
        self.recv.append(batch.recv);
    }

    /// Takes the next `n` sender ROTs (without copying a batch the take covers from its
    /// start).
    ///
    /// # Errors
    /// [`OtError::Exhausted`] if fewer are left.
    pub fn take_send(&mut self, n: usize) -> Result<Vec<[Pad; 2]>, OtError> {
        let left = self.send.remaining();
        self.send.take(n).ok_or(OtError::Exhausted {
            need: n,
            left,
            dir: "sender",
        })
    }

    /// Takes the next `n` receiver ROTs as (choices, pads) (without copying a batch the take
    /// covers from its start).
    ///
    /// # Errors
    /// [`OtError::Exhausted`] if fewer are left.
    pub fn take_recv(&mut self, n: usize) -> Result<(Vec<bool>, Vec<Pad>), OtError> {
        let left = self.recv.remaining();
        match (self.choices.take(n), self.recv.take(n)) {
            (Some(choices), Some(pads)) => Ok((choices, pads)),
            _ => Err(OtError::Exhausted {
                need: n,
                left,
                dir: "receiver",
            }),
        }
    }
}

/// Values in the order they were produced, one buffer per batch, the first `pos` values of
/// the front buffer consumed. A buffer is freed as soon as its last value is taken.
struct Segments<T> {
    bufs: VecDeque<Vec<T>>,
    pos: usize,
}

impl<T> Default for Segments<T> {
    fn default() -> Self {
        Segments {
            bufs: VecDeque::new(),
            pos: 0,
        }
    }
}

impl<T: Copy> Segments<T> {
    fn remaining(&self) -> usize {
        self.bufs.iter().map(Vec::len).sum::<usize>() - self.pos
    }

    fn capacity(&self) -> usize {
        self.bufs.iter().map(Vec::capacity).sum()
    }

    /// A new empty buffer after the others.
    fn push(&mut self) -> &mut Vec<T> {
        self.bufs.push_back(Vec::new());
        self.bufs.back_mut().expect("just pushed")
    }

    /// Moves the unconsumed values of `other` after these, one segment per batch.
    fn append(&mut self, mut other: Segments<T>) {
        other.free_consumed();
        if let Some(front) = other.bufs.front_mut() {
            front.drain(..other.pos);
        }
        self.bufs.append(&mut other.bufs);
    }

    /// Frees the front buffers whose values are all taken.
    fn free_consumed(&mut self) {
        while self.bufs.front().is_some_and(|b| self.pos == b.len()) {
            self.bufs.pop_front();
            self.pos = 0;
        }
    }

    /// The next `n` values, or `None` if fewer are left. A take from the start of a buffer
    /// that covers all of it takes the buffer itself (grown for the values of the next ones);
    /// the others are copied. Every buffer whose last value is taken is freed.
    fn take(&mut self, n: usize) -> Option<Vec<T>> {
        if n > self.remaining() {
            return None;
        }
        self.free_consumed();
        let mut out = match self.bufs.front() {
            Some(front) if self.pos == 0 && front.len() <= n => {
                let mut whole = self.bufs.pop_front().expect("front");
                whole.reserve_exact(n - whole.len());
                whole
            }
            _ => Vec::with_capacity(n),
        };
        while out.len() < n {
            let front = self.bufs.front().expect("enough values remain");
            let k = (n - out.len()).min(front.len() - self.pos);
            out.extend_from_slice(&front[self.pos..self.pos + k]);
            self.pos += k;
            self.free_consumed();
        }
        Some(out)
    }
}

/// A producer of random OTs for one party. The peer's source must be asked for the matching
/// counts (this party's `send` = the peer's `receive`) in the same order.
pub trait OtSource: Send {
    /// Produces `send` ROTs with this party as sender and `receive` ROTs with this party as
    /// receiver into the next batch of `pads` ([`OtPads::next_batch`]).
    ///
    /// # Errors
    /// [`OtError::Backend`] if the OT protocol fails.
    fn pads_into(
        &mut self,
        send: usize,
        receive: usize,
        pads: &mut OtPads,
    ) -> impl Future<Output = Result<(), OtError>> + Send;

    /// [`OtSource::pads_into`] a new buffer.
    ///
    /// # Errors
    /// As [`OtSource::pads_into`].
    fn pads(
        &mut self,
        send: usize,
        receive: usize,
    ) -> impl Future<Output = Result<OtPads, OtError>> + Send {
        async move {
            let mut pads = OtPads::default();
            self.pads_into(send, receive, &mut pads).await?;
            Ok(pads)
        }
    }
}

/// Where a synchronous party driver gets its ROTs: one batch at a time, blocking until it is
/// produced. The peer's supply is asked for the matching counts at the same point of the run.
pub trait PadSupply {
    /// Produces `send` ROTs with this party as sender and `receive` with it as receiver into
    /// the next batch of `pads` ([`OtPads::next_batch`]).
    ///
    /// # Errors
    /// [`OtError::Backend`] or [`OtError::Timeout`] if the OT extension fails.
    fn batch(&mut self, send: usize, receive: usize, pads: &mut OtPads) -> Result<(), OtError>;
}

/// The OT batches of a run as this party produces them: per group, the batches that start at
/// the same chunk, each as (ROTs as OT sender, ROTs as OT receiver), in run order.
pub type BatchGroups = Vec<Vec<(usize, usize)>>;

/// Runs `run` with a [`PadSupply`] that serves `source`'s batches produced ahead of use: a
/// producer thread works through `groups` in order on the runtime `bridge` reaches, one group
/// ahead of the driver (the group of the next chunk that starts batches is produced while the
/// driver computes the current one), so this party's pad memory grows by at most one chunk's
/// batches. The driver must ask for the batches in `groups`' order and counts (a request that
/// differs fails with [`OtError::Backend`]); the peer produces the matching batches in the
/// same order on its own OT streams, so the OT extension runs concurrently with the protocol
/// channel without changing either's traffic.
///
/// A failing batch ([`OtError::Backend`], or [`OtError::Timeout`] when the bridge gives up
/// waiting for the peer) is returned by the driver's next request; once `run` returns (early
/// on an error) the batch in production is dropped and the producer stops.
pub fn with_prefetch<S: OtSource, T>(
    source: &mut S,
    bridge: Bridge,
    groups: BatchGroups,
    run: impl FnOnce(&mut dyn PadSupply) -> T,
) -> T {
    // Rendezvous: the producer holds at most the group it finished until the driver takes it.
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(0);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(());
    // cryprot-ot computes on rayon's current pool and its PPRF receiver blocks a worker
    // while it waits for the peer's trees: on the global pool it could hold a worker that the
    // driver's own parallel HE work waits for, while the peer waits for this party's driver.
    // The producer gets a pool of its own: one worker polls the batch, two compute.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(OT_POOL_THREADS)
        .thread_name(|i| format!("ot-{i}"))
        .build();
    std::thread::scope(|scope| {
        scope.spawn(move || match pool {
            Ok(pool) => pool.install(|| produce(source, &bridge, groups, &ready_tx, stop_rx)),
            Err(e) => {
                let _ = ready_tx.send(Err(OtError::Backend(format!("OT thread pool: {e}"))));
            }
        });
        let mut supply = Prefetched {
            ready: ready_rx,
            group: VecDeque::new(),
            _stop: stop_tx,
        };
        run(&mut supply)
        // `supply` is dropped here, before the scope joins the producer: the closed channels
        // stop it.
    })
}

/// Threads of the producer's rayon pool in [`with_prefetch`]: the one that polls the batch and
/// the two the OT extension computes on (as the global pool of a 2-core machine had before).
const OT_POOL_THREADS: usize = 3;

/// What the producer of [`with_prefetch`] hands over per group: each batch's counts (this
/// party as sender, as receiver) and pads, or the error that stopped it.
type ProducedGroup = Result<Vec<(usize, usize, OtPads)>, OtError>;

/// The producer of [`with_prefetch`]: each group's batches into their own [`OtPads`], handed
/// over as a whole; stops at the first error, at the end of `groups` or when the driver is
/// gone.
fn produce<S: OtSource>(
    source: &mut S,
    bridge: &Bridge,
    groups: BatchGroups,
    ready: &std::sync::mpsc::SyncSender<ProducedGroup>,
    mut stop: tokio::sync::watch::Receiver<()>,
) {
    for group in groups {
        let mut produced = Vec::with_capacity(group.len());
        for (send, receive) in group {
            let mut pads = OtPads::default();
            let batch = bridge.wait(async {
                tokio::select! {
                    result = source.pads_into(send, receive, &mut pads) => Some(result),
                    _ = stop.changed() => None,
                }
            });
            let result = match batch {
                Ok(Some(result)) => result,
                Ok(None) => return,
                Err(timed_out) => Err(timed_out.into()),
            };
            match result {
                Ok(()) => produced.push((send, receive, pads)),
                Err(e) => {
                    let _ = ready.send(Err(e));
                    return;
                }
            }
        }
        if ready.send(Ok(produced)).is_err() {
            return;
        }
    }
}

/// The driver's side of [`with_prefetch`].
struct Prefetched {
    ready: std::sync::mpsc::Receiver<ProducedGroup>,
    group: VecDeque<(usize, usize, OtPads)>,
    /// Dropped with the supply: cancels the batch in production.
    _stop: tokio::sync::watch::Sender<()>,
}

impl PadSupply for Prefetched {
    fn batch(&mut self, send: usize, receive: usize, pads: &mut OtPads) -> Result<(), OtError> {
        if self.group.is_empty() {
            let group = self.ready.recv().map_err(|_| {
                OtError::Backend("the OT producer ended before the run's last batch".into())
            })??;
            self.group.extend(group);
        }
        match self.group.pop_front() {
            Some((s, r, batch)) if (s, r) == (send, receive) => {
                pads.append(batch);
                Ok(())
            }
            Some((s, r, _)) => Err(OtError::Backend(format!(
                "requested a batch of {send} + {receive} ROTs, the plan's next has {s} + {r}"
            ))),
            None => Err(OtError::Backend(
                "the OT producer sent an empty group".into(),
            )),
        }
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
        let mut pads = OtPads::default();
        self.fill(send, receive, &mut pads);
        pads
    }

    /// [`IdealOt::pads_now`] into the next batch of `pads`.
    fn fill(&mut self, send: usize, receive: usize, pads: &mut OtPads) {
        let (send_rng, recv_rng) = match self.side {
            Side::Server => (&mut self.server_to_client, &mut self.client_to_server),
            Side::Client => (&mut self.client_to_server, &mut self.server_to_client),
        };
        let (sent, choices, recv) = pads.next_batch();
        sent.reserve_exact(send);
        sent.extend((0..send).map(|_| draw(send_rng).0));
        choices.reserve_exact(receive);
        recv.reserve_exact(receive);
        for _ in 0..receive {
            let (p, c) = draw(recv_rng);
            choices.push(c);
            recv.push(p[usize::from(c)]);
        }
    }
}

fn draw(rng: &mut ChaCha12Rng) -> ([Pad; 2], bool) {
    let p = [
        Pad::from(rng.random::<u128>()),
        Pad::from(rng.random::<u128>()),
    ];
    (p, rng.random::<bool>())
}

impl PadSupply for IdealOt {
    fn batch(&mut self, send: usize, receive: usize, pads: &mut OtPads) -> Result<(), OtError> {
        self.fill(send, receive, pads);
        Ok(())
    }
}

impl OtSource for IdealOt {
    fn pads_into(
        &mut self,
        send: usize,
        receive: usize,
        pads: &mut OtPads,
    ) -> impl Future<Output = Result<(), OtError>> + Send {
        self.fill(send, receive, pads);
        async move { Ok(()) }
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
        let sent = sp.take_send(100).expect("enough");
        let (ch, got) = cp.take_recv(100).expect("enough");
        for i in 0..100 {
            assert_eq!(got[i], sent[i][usize::from(ch[i])]);
        }
        let sent = cp.take_send(50).expect("enough");
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

    /// Every composition of `total` into positive parts, in lexicographic order.
    fn compositions(total: usize) -> Vec<Vec<usize>> {
        if total == 0 {
            return vec![Vec::new()];
        }
        (1..=total)
            .flat_map(|first| {
                compositions(total - first)
                    .into_iter()
                    .map(move |mut rest| {
                        rest.insert(0, first);
                        rest
                    })
            })
            .collect()
    }

    /// Over every layout of up to three batches (sizes 0, 2 or 3, sender and receiver ROTs
    /// alike) and every way to take their pads: the takes return the pads in the order one
    /// batch of them all would hold them, a batch's buffer is freed once its last pad is taken
    /// (the capacity left is that of the batches not fully taken), and a take covering a whole
    /// batch from its start returns that batch's buffer.
    #[test]
    fn takes_return_the_pads_in_order_and_free_consumed_batches() {
        let mut layouts = vec![Vec::new()];
        let mut longest = layouts.clone();
        for _ in 0..3 {
            longest = longest
                .iter()
                .flat_map(|l: &Vec<usize>| [0, 2, 3].map(|size| [l.clone(), vec![size]].concat()))
                .collect();
            layouts.extend(longest.iter().cloned());
        }
        assert_eq!(layouts.len(), 1 + 3 + 9 + 27);
        for layout in layouts {
            let total: usize = layout.iter().sum();
            let (mut reference, _) = IdealOt::pair(5);
            let mut all = reference.pads_now(total, total);
            let want_send = all.take_send(total).unwrap();
            let want_recv = all.take_recv(total).unwrap();
            for takes in compositions(total) {
                let (mut source, _) = IdealOt::pair(5);
                let mut pads = OtPads::default();
                for &size in &layout {
                    source.batch(size, size, &mut pads).unwrap();
                }
                let mut at = 0;
                for n in takes {
                    let whole = (pads.send.pos == 0)
                        .then(|| pads.send.bufs.iter().find(|b| !b.is_empty()))
                        .flatten()
                        .filter(|b| b.len() == n)
                        .map(|b| b.as_ptr());
                    let sent = pads.take_send(n).unwrap();
                    let (choices, got) = pads.take_recv(n).unwrap();
                    assert_eq!(sent, want_send[at..at + n], "{layout:?}");
                    assert_eq!(
                        (choices, got),
                        (
                            want_recv.0[at..at + n].to_vec(),
                            want_recv.1[at..at + n].to_vec()
                        )
                    );
                    if let Some(ptr) = whole {
                        assert_eq!(sent.as_ptr(), ptr, "{layout:?} at {at}");
                    }
                    at += n;
                    let held: usize = layout
                        .iter()
                        .scan(0, |end, &size| {
                            *end += size;
                            Some(if *end > at { size } else { 0 })
                        })
                        .sum();
                    assert_eq!(pads.capacity(), (held, held), "{layout:?} at {at}");
                    assert_eq!(pads.remaining(), (total - at, total - at));
                }
            }
        }
    }

    /// A take of more ROTs than are left fails with the counts and takes nothing; in
    /// particular a receiver take never splits choices from pads.
    #[test]
    fn takes_beyond_the_pads_left_fail_and_take_nothing() {
        let (mut source, _) = IdealOt::pair(6);
        let mut pads = OtPads::default();
        source.batch(3, 2, &mut pads).unwrap();
        source.batch(1, 2, &mut pads).unwrap();
        let _ = pads.take_send(2).unwrap();
        assert!(matches!(
            pads.take_send(3),
            Err(OtError::Exhausted {
                need: 3,
                left: 2,
                dir: "sender"
            })
        ));
        assert!(matches!(
            pads.take_recv(5),
            Err(OtError::Exhausted {
                need: 5,
                left: 4,
                dir: "receiver"
            })
        ));
        assert_eq!(pads.remaining(), (2, 4));
        assert_eq!(pads.take_send(2).unwrap().len(), 2);
        assert_eq!(pads.take_recv(4).unwrap().1.len(), 4);
        assert_eq!((pads.remaining(), pads.capacity()), ((0, 0), (0, 0)));
        assert!(matches!(
            pads.take_recv(1),
            Err(OtError::Exhausted {
                need: 1,
                left: 0,
                ..
            })
        ));
        assert!(pads.take_send(0).unwrap().is_empty());
    }

    /// Over many chunks, whose batches are fetched while pads of the last are left (one
    /// protocol can span several), a party's buffers never hold more than the pads left plus
    /// one batch, and the halves stay paired throughout.
    #[test]
    fn pads_held_do_not_grow_over_many_chunks() {
        let (mut s, mut c) = IdealOt::pair(8);
        let (mut sp, mut cp) = (OtPads::default(), OtPads::default());
        s.batch(3, 0, &mut sp).expect("ideal");
        c.batch(0, 3, &mut cp).expect("ideal");
        for chunk in 0..200 {
            for _ in 0..3 {
                s.batch(10, 0, &mut sp).expect("ideal");
                c.batch(0, 10, &mut cp).expect("ideal");
            }
            assert_eq!((sp.remaining(), cp.remaining()), ((33, 0), (0, 33)));
            // Takes across the batches' boundaries; 3 pads stay for the next chunk.
            for n in [7, 16, 7] {
                let sent = sp.take_send(n).expect("enough");
                let (ch, got) = cp.take_recv(n).expect("enough");
                for i in 0..n {
                    assert_eq!(got[i], sent[i][usize::from(ch[i])], "chunk {chunk}");
                }
                assert!(sp.capacity().0 <= sp.remaining().0 + 10, "chunk {chunk}");
                assert!(cp.capacity().1 <= cp.remaining().1 + 10, "chunk {chunk}");
            }
            assert_eq!((sp.capacity().0, cp.capacity().1), (10, 10));
        }
    }

    /// An [`IdealOt`] half that counts the batches it produced and fails batch `fail_at`.
    struct Recording {
        inner: IdealOt,
        produced: std::sync::Arc<std::sync::atomic::AtomicUsize>,
        fail_at: Option<usize>,
    }

    impl OtSource for Recording {
        async fn pads_into(
            &mut self,
            send: usize,
            receive: usize,
            pads: &mut OtPads,
        ) -> Result<(), OtError> {
            let k = self.produced.load(std::sync::atomic::Ordering::SeqCst);
            if self.fail_at == Some(k) {
                return Err(OtError::Backend(format!("batch {k} failed")));
            }
            self.inner.batch(send, receive, pads)?;
            self.produced
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        }
    }

    fn recording(
        seed: u64,
        fail_at: Option<usize>,
    ) -> (Recording, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        let produced = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (server, _) = IdealOt::pair(seed);
        let source = Recording {
            inner: server,
            produced: produced.clone(),
            fail_at,
        };
        (source, produced)
    }

    /// Polls `produced` until it reaches `n` (or 5 s pass) and returns it.
    fn wait_for(produced: &std::sync::atomic::AtomicUsize, n: usize) -> usize {
        let start = std::time::Instant::now();
        while produced.load(std::sync::atomic::Ordering::SeqCst) < n
            && start.elapsed() < Duration::from_secs(5)
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        produced.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    }

    /// The next chunk's batches are produced while the driver still runs the current chunk,
    /// no further (the producer then waits for the driver), and the pads are those the source
    /// produces when asked batch by batch.
    #[test]
    fn prefetch_produces_the_next_chunks_batches_ahead_and_no_further() {
        let rt = runtime();
        let bridge = Bridge::new(rt.handle().clone(), None);
        let (mut source, produced) = recording(9, None);
        let groups = vec![vec![(10, 4), (5, 0)], vec![(7, 2)], vec![(3, 1)]];
        let mut pads = OtPads::default();
        let seen = with_prefetch(&mut source, bridge, groups, |ot| {
            let mut seen = Vec::new();
            ot.batch(10, 4, &mut pads).unwrap();
            ot.batch(5, 0, &mut pads).unwrap();
            // Chunk 0 runs: the producer makes chunk 1's batch meanwhile, then waits.
            seen.push(wait_for(&produced, 3));
            std::thread::sleep(Duration::from_millis(50));
            seen.push(produced.load(std::sync::atomic::Ordering::SeqCst));
            assert_eq!(pads.remaining(), (15, 4));
            let _ = (pads.take_send(15).unwrap(), pads.take_recv(4).unwrap());
            ot.batch(7, 2, &mut pads).unwrap();
            seen.push(wait_for(&produced, 4));
            ot.batch(3, 1, &mut pads).unwrap();
            seen
        });
        assert_eq!(seen, vec![3, 3, 4]);
        // Chunk 1's pads, then chunk 2's appended (10 sender ROTs, 3 receiver ROTs).
        assert_eq!(pads.remaining(), (10, 3));
        let (mut reference, _) = IdealOt::pair(9);
        let mut expected = OtPads::default();
        for (send, receive) in [(10, 4), (5, 0), (7, 2), (3, 1)] {
            reference.batch(send, receive, &mut expected).unwrap();
        }
        let _ = (
            expected.take_send(15).unwrap(),
            expected.take_recv(4).unwrap(),
        );
        assert_eq!(pads.take_send(10).unwrap(), expected.take_send(10).unwrap());
        assert_eq!(pads.take_recv(3).unwrap(), expected.take_recv(3).unwrap());
    }

    /// A failing batch fails the driver's request for it with the backend's error; a request
    /// that is not the plan's next batch fails; a driver that stops early does not hang.
    #[test]
    fn prefetch_reports_failures_and_stops_with_the_driver() {
        let rt = runtime();
        let bridge = Bridge::new(rt.handle().clone(), None);
        let groups = vec![vec![(4, 0)], vec![(4, 0)], vec![(4, 0)]];
        let mut pads = OtPads::default();

        let (mut failing, _) = recording(10, Some(1));
        let errors = with_prefetch(&mut failing, bridge.clone(), groups.clone(), |ot| {
            let first = ot.batch(4, 0, &mut pads).map_err(|e| e.to_string());
            let second = ot.batch(4, 0, &mut pads).map_err(|e| e.to_string());
            let after = ot.batch(4, 0, &mut pads).map_err(|e| e.to_string());
            (first, second, after)
        });
        assert_eq!(
            errors,
            (
                Ok(()),
                Err("OT backend: batch 1 failed".to_string()),
                Err("OT backend: the OT producer ended before the run's last batch".to_string())
            )
        );

        let (mut source, produced) = recording(10, None);
        let mismatch = with_prefetch(&mut source, bridge.clone(), groups.clone(), |ot| {
            ot.batch(5, 0, &mut pads).map_err(|e| e.to_string())
        });
        assert_eq!(
            mismatch,
            Err(
                "OT backend: requested a batch of 5 + 0 ROTs, the plan's next has 4 + 0"
                    .to_string()
            )
        );
        // The producer stopped with the driver, at most one batch ahead.
        assert!(produced.load(std::sync::atomic::Ordering::SeqCst) <= 2);

        let (mut stalled, _) = recording(11, None);
        let never = with_prefetch(&mut stalled, bridge, groups, |_| "returned");
        assert_eq!(never, "returned");
    }
}
