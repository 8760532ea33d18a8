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
//! frames) and [`crate::ot::BlockingOt`] (batches of random OTs).

use std::future::Future;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::task::JoinError;

/// A wait for the peer that exceeded the bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimedOut(pub Duration);

/// Blocks synchronous code on async I/O driven by a tokio runtime, each wait bounded by an
/// optional timeout.
#[derive(Clone, Debug)]
pub struct Bridge {
    handle: Handle,
    timeout: Option<Duration>,
}

impl Bridge {
    /// A bridge to `handle`'s runtime, for threads outside it; every wait is bounded by
    /// `timeout` (`None`: as long as the I/O takes).
    pub fn new(handle: Handle, timeout: Option<Duration>) -> Self {
        Bridge { handle, timeout }
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

    /// Blocks the calling thread until `io` completes, or fails after the timeout.
    ///
    /// # Errors
    /// [`TimedOut`] if the timeout passed first (`io` is dropped).
    ///
    /// # Panics
    /// On a runtime worker thread outside [`Bridge::block_in_place`].
    pub fn wait<F: Future>(&self, io: F) -> Result<F::Output, TimedOut> {
        match self.timeout {
            // The timer is made inside the runtime: the calling thread may have no runtime
            // context.
            Some(d) => self
                .handle
                .block_on(async { tokio::time::timeout(d, io).await })
                .map_err(|_| TimedOut(d)),
            None => Ok(self.handle.block_on(io)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn owned_and_borrowed_work_reach_the_runtime() {
        let owned = Bridge::spawn_blocking(None, |b| b.wait(async { 1 }));
        assert_eq!(owned.await.expect("join"), Ok(1));
        let mut borrowed = 0;
        Bridge::block_in_place(None, |b| borrowed = b.wait(async { 2 }).expect("wait"));
        assert_eq!(borrowed, 2);
    }
}
