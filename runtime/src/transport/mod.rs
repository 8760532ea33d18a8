//! Channels that carry protocol messages, with byte and round counters.
//!
//! The nonlinear protocols are written against [`Exchange`]: a synchronous, symmetric round in
//! which a party sends one message and receives the peer's. Implementations:
//!
//! - [`memory::pipe`]: two in-process endpoints over `std::sync::mpsc` (both parties on two
//!   threads, no framing);
//! - [`FrameChannel`]: length-prefixed frames over any tokio byte stream — `tokio::io::duplex`
//!   in memory, a loopback `TcpStream`, or a cryprot-net QUIC stream ([`quic`]) — used from a
//!   blocking thread through [`BlockingExchange`] on the one sync-to-async [`bridge`].
//!
//! Frames are `u32` little-endian length + payload; a length above [`MAX_FRAME_BYTES`] is an
//! error before anything is allocated. Counters record payload bytes and frames per direction;
//! wire bytes are `payload + 4·frames`.

pub mod bridge;
pub mod memory;
pub mod net;
pub mod quic;

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use bridge::{Bridge, TimedOut};

/// Largest frame payload accepted (64 MiB).
pub const MAX_FRAME_BYTES: usize = 64 << 20;

/// Why a message could not be sent or received.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The peer closed the channel (or the connection ended).
    #[error("the peer closed the connection")]
    Closed,
    /// A frame announced a length above the bound.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// Announced length.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// An I/O error on the underlying stream.
    #[error("transport I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The peer sent nothing for longer than the timeout while this party had nothing to
    /// compute.
    #[error("no message from the peer for {} s while waiting for it", .0.as_secs_f64())]
    Timeout(Duration),
}

/// Payload bytes and frames, per direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Payload bytes sent.
    pub bytes_sent: u64,
    /// Payload bytes received.
    pub bytes_received: u64,
    /// Frames (messages) sent; one per round.
    pub frames_sent: u64,
    /// Frames received.
    pub frames_received: u64,
}

impl Counters {
    fn record(&mut self, sent: usize, received: usize) {
        self.bytes_sent += sent as u64;
        self.bytes_received += received as u64;
        self.frames_sent += 1;
        self.frames_received += 1;
    }
}

/// One synchronous round: send `out`, return the peer's message of the same round.
pub trait Exchange {
    /// Sends this party's message and receives the peer's.
    ///
    /// # Errors
    /// [`TransportError`] if the channel fails or the peer closed it.
    fn exchange(&mut self, out: Vec<u8>) -> Result<Vec<u8>, TransportError>;

    /// Counters so far.
    fn counters(&self) -> Counters;
}

/// Length-prefixed frames over a tokio byte stream, with counters.
pub struct FrameChannel<S> {
    stream: S,
    counters: Counters,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> FrameChannel<S> {
    /// Wraps a stream.
    pub fn new(stream: S) -> Self {
        FrameChannel {
            stream,
            counters: Counters::default(),
        }
    }

    /// Counters so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Sends `out` and receives the peer's frame concurrently (both parties send first, so a
    /// sequential write could block on a full buffer).
    ///
    /// # Errors
    /// [`TransportError`] on I/O failure, a closed stream or an oversized frame.
    pub async fn exchange(&mut self, out: Vec<u8>) -> Result<Vec<u8>, TransportError> {
        let (mut rd, mut wr) = tokio::io::split(&mut self.stream);
        let ((), incoming) = tokio::try_join!(write_frame(&mut wr, &out), read_frame(&mut rd))?;
        self.counters.record(out.len(), incoming.len());
        Ok(incoming)
    }

    /// Sends one frame without waiting for the peer's.
    ///
    /// # Errors
    /// [`TransportError`] on I/O failure or an oversized frame.
    pub async fn send(&mut self, out: &[u8]) -> Result<(), TransportError> {
        write_frame(&mut self.stream, out).await?;
        self.counters.bytes_sent += out.len() as u64;
        self.counters.frames_sent += 1;
        Ok(())
    }

    /// Receives one frame without sending.
    ///
    /// # Errors
    /// [`TransportError`] on I/O failure, a closed stream or an oversized frame.
    pub async fn receive(&mut self) -> Result<Vec<u8>, TransportError> {
        let incoming = read_frame(&mut self.stream).await?;
        self.counters.bytes_received += incoming.len() as u64;
        self.counters.frames_received += 1;
        Ok(incoming)
    }

    /// The stream back.
    pub fn into_inner(self) -> S {
        self.stream
    }
}

/// Writes `out` as one frame and flushes.
async fn write_frame<W: AsyncWrite + Unpin>(wr: &mut W, out: &[u8]) -> Result<(), TransportError> {
    let too_large = || TransportError::FrameTooLarge {
        len: out.len(),
        max: MAX_FRAME_BYTES,
    };
    if out.len() > MAX_FRAME_BYTES {
        return Err(too_large());
    }
    let len = u32::try_from(out.len()).map_err(|_| too_large())?;
    wr.write_all(&len.to_le_bytes()).await.map_err(closed)?;
    wr.write_all(out).await.map_err(closed)?;
    wr.flush().await.map_err(closed)?;
    Ok(())
}

/// Reads one frame, checking its length against [`MAX_FRAME_BYTES`] before allocating.
async fn read_frame<R: AsyncRead + Unpin>(rd: &mut R) -> Result<Vec<u8>, TransportError> {
    let mut len = [0u8; 4];
    rd.read_exact(&mut len).await.map_err(closed)?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME_BYTES {
        return Err(TransportError::FrameTooLarge {
            len,
            max: MAX_FRAME_BYTES,
        });
    }
    let mut buf = vec![0u8; len];
    rd.read_exact(&mut buf).await.map_err(closed)?;
    Ok(buf)
}

/// [`TransportError::Closed`] for the ways a stream reports that the peer or the connection
/// went away (end of stream, a reset or aborted QUIC connection, or cryprot-net's stream
/// manager ending before the peer's stream arrived); other I/O errors as they are.
fn closed(e: std::io::Error) -> TransportError {
    use std::io::ErrorKind;
    let gone = matches!(
        e.kind(),
        ErrorKind::UnexpectedEof
            | ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::BrokenPipe
            | ErrorKind::NotConnected
    ) || (e.kind() == ErrorKind::Other
        && e.get_ref()
            .is_some_and(|inner| inner.to_string() == "channel closed"));
    if gone {
        TransportError::Closed
    } else {
        TransportError::Io(e)
    }
}

/// A [`FrameChannel`] driven from a blocking thread through a [`Bridge`], so the synchronous
/// protocol code can run over an async stream; a round fails with [`TransportError::Timeout`]
/// when it takes longer than the bridge's timeout.
pub struct BlockingExchange<S> {
    channel: FrameChannel<S>,
    bridge: Bridge,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> BlockingExchange<S> {
    /// Wraps a channel; `bridge` reaches the runtime that drives its stream.
    pub fn new(channel: FrameChannel<S>, bridge: Bridge) -> Self {
        BlockingExchange { channel, bridge }
    }

    /// The channel back.
    pub fn into_inner(self) -> FrameChannel<S> {
        self.channel
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Exchange for BlockingExchange<S> {
    fn exchange(&mut self, out: Vec<u8>) -> Result<Vec<u8>, TransportError> {
        self.bridge.wait(self.channel.exchange(out))?
    }

    fn counters(&self) -> Counters {
        self.channel.counters()
    }
}

impl From<TimedOut> for TransportError {
    fn from(TimedOut(d): TimedOut) -> Self {
        TransportError::Timeout(d)
    }
}

/// Runs `f`, failing with [`TransportError::Timeout`] after `timeout` (if any).
///
/// # Errors
/// `f`'s error or the timeout.
pub async fn within<T>(
    timeout: Option<Duration>,
    f: impl Future<Output = Result<T, TransportError>>,
) -> Result<T, TransportError> {
    match timeout {
        Some(d) => tokio::time::timeout(d, f)
            .await
            .map_err(|_| TransportError::Timeout(d))?,
        None => f.await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_count() {
        let (a, b) = tokio::io::duplex(16);
        let (mut a, mut b) = (FrameChannel::new(a), FrameChannel::new(b));
        let big = vec![7u8; 1000];
        let (ra, rb) =
            tokio::try_join!(a.exchange(big.clone()), b.exchange(vec![1, 2, 3])).expect("exchange");
        assert_eq!((ra, rb), (vec![1, 2, 3], big));
        let c = a.counters();
        assert_eq!(
            c,
            Counters {
                bytes_sent: 1000,
                bytes_received: 3,
                frames_sent: 1,
                frames_received: 1
            }
        );
    }

    #[tokio::test]
    async fn oversized_frame_is_rejected_before_allocation() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut a = FrameChannel::new(a);
        let bogus = ((MAX_FRAME_BYTES + 1) as u32).to_le_bytes();
        let (res, _) = tokio::join!(a.exchange(vec![]), async {
            b.write_all(&bogus).await.expect("write");
            let mut skip = [0u8; 4];
            b.read_exact(&mut skip).await.expect("read");
        });
        assert!(
            matches!(res, Err(TransportError::FrameTooLarge { len, .. }) if len == MAX_FRAME_BYTES + 1)
        );
    }

    #[tokio::test]
    async fn closed_peer() {
        let (a, b) = tokio::io::duplex(64);
        drop(b);
        let mut a = FrameChannel::new(a);
        assert!(a.exchange(vec![1]).await.is_err());
    }
}
