//! The one bridge from the synchronous protocol code to tokio.
//!
//! The party drivers and the nonlinear protocols are synchronous code (why: the module doc of
//! [`crate::nonlinear`]); the QUIC connection, its frame streams and the OT extension are async
//! and run on a tokio runtime. A [`Bridge`] is the only way the synchronous side waits for the
//! async side: it blocks its thread on a future that the runtime's workers drive, every wait
//! bounded by the same optional timeout. Synchronous code reaches a thread where blocking is
//! allowed in one of two ways: [`Bridge::spawn_blocking`] for owned work that runs beside the
//! calling task (e.g. both parties of a test in one task), [`Bridge::block_in_place`] for
//! borrowed work the calling task waits for (a network session). Threads outside the runtime
//! (`--mode sim`) use [`Bridge::new`] with the runtime's handle.
//!
//! Its two users adapt it to what the drivers consume: [`super::BlockingExchange`] (protocol
//! frames) and [`crate::ot::with_prefetch`] (batches of random OTs, produced ahead of use).
//!
//! The timeout bounds *waiting for the peer*, not the duration of a wait: its clock runs only
//! while this process is idle (it used less than a quarter of a core since the last check) and
//! nothing arrived from the peer ([`PeerActivity`]). A batch of random OTs that keeps this party
//! computing for longer than the timeout never times out; a peer that stops sending while this
//! party has nothing to do is reported after the timeout.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::task::JoinError;

/// A wait for the peer that exceeded the bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimedOut(pub Duration);

/// A count that grows whenever something arrives from the peer (e.g. the connection's
/// received datagram bytes): a wait during which it grows is not stalled.
pub type PeerActivity = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Blocks synchronous code on async I/O driven by a tokio runtime, each wait bounded by an
/// optional timeout on waiting for the peer.
#[derive(Clone)]
pub struct Bridge {
    handle: Handle,
    timeout: Option<Duration>,
    peer: Option<PeerActivity>,
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge")
            .field("timeout", &self.timeout)
            .field("watches_peer", &self.peer.is_some())
            .finish_non_exhaustive()
    }
}

impl Bridge {
    /// A bridge to `handle`'s runtime, for threads outside it; every wait gives up after
    /// `timeout` of waiting for the peer (`None`: as long as the I/O takes).
    pub fn new(handle: Handle, timeout: Option<Duration>) -> Self {
        Bridge {
            handle,
            timeout,
            peer: None,
        }
    }

    /// This bridge, with `peer` telling it when something arrived from the peer (without it,
    /// only this process's own work holds the timeout's clock).
    #[must_use]
    pub fn watching(mut self, peer: PeerActivity) -> Self {
        self.peer = Some(peer);
        self
    }

    /// Runs owned synchronous `work` on tokio's blocking pool with a bridge to the current
    /// runtime (which must have workers left to drive the I/O); the calling task waits without
    /// holding a worker.
    ///
    /// # Errors
    /// The [`JoinError`] if `work` panicked.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub async fn spawn_blocking<T, W>(timeout: Option<Duration>, work: W) -> Result<T, JoinError>
    where
        T: Send + 'static,
        W: FnOnce(Bridge) -> T + Send + 'static,
    {
        let bridge = Bridge::new(Handle::current(), timeout);
        tokio::task::spawn_blocking(move || work(bridge)).await
    }

    /// Runs borrowed synchronous `work` on the calling worker thread (`block_in_place`: the
    /// runtime moves its other tasks to the remaining workers) with a bridge to the current
    /// runtime.
    ///
    /// # Panics
    /// Outside a multi-threaded tokio runtime.
    pub fn block_in_place<T>(timeout: Option<Duration>, work: impl FnOnce(Bridge) -> T) -> T {
        let bridge = Bridge::new(Handle::current(), timeout);
        tokio::task::block_in_place(move || work(bridge))
    }

    /// Blocks the calling thread until `io` completes, or fails once it waited for the peer
    /// for the timeout: that long with this process idle and nothing from the peer.
    ///
    /// # Errors
    /// [`TimedOut`] if the peer stalled (`io` is dropped).
    ///
    /// # Panics
    /// On a runtime worker thread outside [`Bridge::block_in_place`].
    pub fn wait<F: Future>(&self, io: F) -> Result<F::Output, TimedOut> {
        match self.timeout {
            // The timers are made inside the runtime: the calling thread may have no runtime
            // context.
            Some(d) => self.handle.block_on(self.idle_bounded(d, io)),
            None => Ok(self.handle.block_on(io)),
        }
    }

    /// `io`, checked every [`check_interval`] of `bound`: fails once the checks saw neither this
    /// process busy nor the peer active for `bound`. The first reading is taken after the first
    /// interval, so the many short waits of a run never read the counters (a stall is reported
    /// at most one interval late).
    async fn idle_bounded<F: Future>(&self, bound: Duration, io: F) -> Result<F::Output, TimedOut> {
        let tick = check_interval(bound);
        let mut io = std::pin::pin!(io);
        let mut seen: Option<Activity> = None;
        let mut idle = Duration::ZERO;
        loop {
            if let Ok(out) = tokio::time::timeout(tick, &mut io).await {
                return Ok(out);
            }
            let now = self.activity();
            match &seen {
                Some(before) if !now.active_since(before, tick) => {
                    idle += tick;
                    if idle >= bound {
                        return Err(TimedOut(bound));
                    }
                }
                _ => idle = Duration::ZERO,
            }
            seen = Some(now);
        }
    }

    fn activity(&self) -> Activity {
        Activity {
            peer: self.peer.as_ref().map_or(0, |p| p()),
            cpu: process_cpu_time(),
        }
    }
}

/// How often a bounded wait checks for activity: a quarter of the bound, between 5 ms and
/// 250 ms.
fn check_interval(bound: Duration) -> Duration {
    (bound / 4).clamp(Duration::from_millis(5), Duration::from_millis(250))
}

/// What a bounded wait reads at each check.
struct Activity {
    /// The peer's [`PeerActivity`] count.
    peer: u64,
    /// CPU time of this process so far (`None` where the platform does not tell).
    cpu: Option<Duration>,
}

impl Activity {
    /// Whether, since `before` (one `tick` ago), the peer sent something or this process
    /// computed for at least a quarter of the tick.
    fn active_since(&self, before: &Activity, tick: Duration) -> bool {
        let busy = match (self.cpu, before.cpu) {
            (Some(now), Some(then)) => now.saturating_sub(then) >= tick / 4,
            _ => false,
        };
        busy || self.peer != before.peer
    }
}

/// User plus system CPU time of this process, from `/proc/self/stat` (Linux; in clock ticks of
/// 10 ms, the `USER_HZ` of every mainstream Linux architecture).
fn process_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may contain spaces) start with field 3, the state;
    // utime and stime are fields 14 and 15.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((user + system) * 10))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn waits_within_the_bound_or_times_out() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let bounded = Bridge::new(rt.handle().clone(), Some(Duration::from_millis(20)));
        assert_eq!(bounded.wait(async { 7 }), Ok(7));
        let stalled = bounded.wait(std::future::pending::<()>());
        assert_eq!(stalled, Err(TimedOut(Duration::from_millis(20))));
        let unbounded = Bridge::new(rt.handle().clone(), None);
        assert_eq!(unbounded.wait(async { 8 }), Ok(8));
    }

    /// A wait that outlasts the bound while this process computes, or while the peer keeps
    /// sending, does not time out.
    #[test]
    fn local_work_and_peer_activity_hold_the_clock() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let bound = Duration::from_millis(40);
        let bridge = Bridge::new(rt.handle().clone(), Some(bound));
        let computing = bridge.wait(async {
            tokio::task::spawn_blocking(|| {
                let start = std::time::Instant::now();
                let mut x = 0u64;
                while start.elapsed() < Duration::from_millis(400) {
                    x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005) + 1);
                }
                x
            })
            .await
            .is_ok()
        });
        assert_eq!(
            computing,
            Ok(true),
            "400 ms of local work under a 40 ms bound"
        );

        let arrivals = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = arrivals.clone();
        let watching = bridge.watching(Arc::new(move || counter.load(Ordering::Relaxed)));
        let chatty_peer = watching.wait(async {
            for _ in 0..20 {
                tokio::time::sleep(Duration::from_millis(15)).await;
                arrivals.fetch_add(1, Ordering::Relaxed);
            }
        });
        assert_eq!(chatty_peer, Ok(()), "300 ms of a peer sending every 15 ms");
        let stalled = watching.wait(std::future::pending::<()>());
        assert_eq!(stalled, Err(TimedOut(bound)));
    }

    #[test]
    fn this_process_cpu_time_is_read() {
        assert!(cfg!(not(target_os = "linux")) || process_cpu_time().is_some());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn owned_and_borrowed_work_reach_the_runtime() {
        let owned = Bridge::spawn_blocking(None, |b| b.wait(async { 1 }));
        assert_eq!(owned.await.expect("join"), Ok(1));
        let mut borrowed = 0;
        Bridge::block_in_place(None, |b| borrowed = b.wait(async { 2 }).expect("wait"));
        assert_eq!(borrowed, 2);
    }
}
