//! The two parties in two processes: one session per client connection.
//!
//! A session runs on one QUIC connection ([`crate::transport::net`]):
//!
//! 1. **Handshake**: the first frame each way is a [`Hello`]: protocol version, BLAKE3 hash of
//!    the public plan ([`crate::plan::PublicPlan::hash`]) and, from the client, the number of
//!    samples. A different version or plan fails the session on both sides
//!    ([`SessionError::is_mismatch`]).
//! 2. **Per sample**: the party driver ([`run_server`] / [`run_client`]) on a blocking thread
//!    over the connection's frame stream, with the OT extension (on two sub-connections)
//!    producing exactly the ROTs of each of the plan's OT batches as the batch starts. Every
//!    sample has fresh keys, masks and OTs.
//! 3. **Closing**: the client sends one empty frame once it holds every output; the server
//!    closes the connection when it receives it, so no party drops data the other still
//!    reads.
//!
//! Any failure closes the connection, so the peer fails promptly too; `timeout` bounds every
//! wait for the peer. A server runs sessions concurrently ([`serve`]); one failing session
//! never affects the others. All sessions share the server's [`ServerLayers`], prepared from
//! its weights before the first client is accepted.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use super::progress::{Observed, Progress, SampleProgress, steps};
use super::{PartyError, Prepared, Report, ServerLayers, run_client, run_server};
use crate::nonlinear::Role;
use crate::ot::cryprot::CryprotOt;
use crate::ot::{BatchGroups, OtError, PadSupply, Side, with_prefetch};
use crate::plan::Plan;
use crate::transport::bridge::{Bridge, PeerActivity};
use crate::transport::net::{Listener, NetError, Peer, QuicCounts, QuicTraffic};
use crate::transport::quic::{QuicStream, frame_channel};
use crate::transport::{
    BlockingExchange, Counters, Exchange, FrameChannel, TransportError, within,
};

/// Version of the two-party protocol on the wire; both parties must run the same (2: max pools
/// compare in the ring of their input differences, so one plan's messages differ from 1's).
pub const PROTOCOL_VERSION: u32 = 2;

/// How long the client waits for the server to close the connection after its last frame.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Why a session failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The parties run different protocol versions.
    #[error("protocol version mismatch: server version {server}, client version {client}")]
    Version {
        /// The server's version.
        server: u32,
        /// The client's version.
        client: u32,
    },
    /// The parties hold different plans.
    #[error("plan mismatch: server plan {server}, client plan {client}")]
    Plan {
        /// Hex BLAKE3 hash of the server's public plan.
        server: String,
        /// Hex BLAKE3 hash of the client's public plan.
        client: String,
    },
    /// The peer's first frame is not a handshake.
    #[error("malformed handshake from the peer ({0} bytes)")]
    Handshake(usize),
    /// The connection could not be set up.
    #[error(transparent)]
    Net(#[from] NetError),
    /// The channel failed (peer gone, garbage, timeout).
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The OT extension failed.
    #[error(transparent)]
    Ot(#[from] OtError),
    /// The two-party protocol failed.
    #[error(transparent)]
    Party(#[from] PartyError),
    /// A party's thread failed.
    #[error("party thread: {0}")]
    Thread(String),
}

impl SessionError {
    /// Whether the parties disagree on the protocol version or the plan (exit code 3).
    pub fn is_mismatch(&self) -> bool {
        matches!(
            self,
            SessionError::Version { .. } | SessionError::Plan { .. }
        )
    }
}

/// The handshake frame: magic, protocol version, public plan hash, sample count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello {
    /// [`PROTOCOL_VERSION`] of the sender.
    pub version: u32,
    /// BLAKE3 hash of the sender's public plan.
    pub plan: [u8; 32],
    /// Samples the client will run (0 from the server).
    pub samples: u64,
}

impl Hello {
    const MAGIC: [u8; 8] = *b"heq-run\0";
    /// Encoded size.
    pub const BYTES: usize = 8 + 4 + 32 + 8;

    /// The encoding: magic, version (u32 LE), plan hash, samples (u64 LE).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::BYTES);
        out.extend_from_slice(&Self::MAGIC);
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.plan);
        out.extend_from_slice(&self.samples.to_le_bytes());
        out
    }

    /// Decodes a peer's frame.
    ///
    /// # Errors
    /// [`SessionError::Handshake`] for anything but a well-formed hello.
    pub fn parse(bytes: &[u8]) -> Result<Self, SessionError> {
        let bad = || SessionError::Handshake(bytes.len());
        if bytes.len() != Self::BYTES || bytes[..8] != Self::MAGIC {
            return Err(bad());
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().map_err(|_| bad())?);
        let plan = bytes[12..44].try_into().map_err(|_| bad())?;
        let samples = u64::from_le_bytes(bytes[44..52].try_into().map_err(|_| bad())?);
        Ok(Hello {
            version,
            plan,
            samples,
        })
    }
}

/// Hex digits of a hash.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares the two hellos: the same version and plan, or the mismatch error.
fn check_hello(server: &Hello, client: &Hello) -> Result<(), SessionError> {
    if server.version != client.version {
        return Err(SessionError::Version {
            server: server.version,
            client: client.version,
        });
    }
    if server.plan != client.plan {
        return Err(SessionError::Plan {
            server: hex(&server.plan),
            client: hex(&client.plan),
        });
    }
    Ok(())
}

/// Options of one session.
#[derive(Clone, Debug, Default)]
pub struct SessionOptions {
    /// Bound on every wait for the peer (`None`: as long as the connection lives).
    pub timeout: Option<Duration>,
    /// Where to report each sample's progress (`None`: nowhere).
    pub progress: Option<Arc<dyn Progress>>,
}

/// What one party measured in one session.
#[derive(Clone, Debug)]
pub struct SessionReport {
    /// This party's role.
    pub role: Role,
    /// The peer's address.
    pub remote: SocketAddr,
    /// One report per sample.
    pub samples: Vec<Report>,
    /// Wall time from the connection to the end of the session.
    pub wall: Duration,
    /// Frames of the whole connection, handshake and closing included.
    pub frames: Counters,
    /// QUIC traffic of the connection.
    pub quic: QuicCounts,
}

/// One sample's outcome: the client's output (`None` for the server) and the report.
type SampleResult = Result<(Option<Vec<i64>>, Report), PartyError>;

/// The party-specific part of a session: runs one sample's driver (sample index, channel,
/// this party's ROTs).
type Driver = Box<dyn FnMut(usize, &mut dyn Exchange, &mut dyn PadSupply) -> SampleResult + Send>;

/// Runs the handshake and the samples of a session over `peer` as `role`; `samples` is the
/// client's count (the server learns it from the client's hello). Returns the outputs the
/// driver produced and the report. Closes the connection at the end, also on failure.
async fn session(
    mut peer: Peer,
    role: Role,
    plan: &Plan,
    prepared: &Arc<Prepared>,
    samples: u64,
    opts: &SessionOptions,
    mut driver: Driver,
) -> Result<(Vec<Vec<i64>>, SessionReport), SessionError> {
    let start = Instant::now();
    let result = run_session(&mut peer, role, plan, prepared, samples, opts, &mut driver).await;
    peer.close(result.is_err()).await;
    let (outputs, reports, frames) = result?;
    Ok((
        outputs,
        SessionReport {
            role,
            remote: peer.remote,
            samples: reports,
            wall: start.elapsed(),
            frames,
            quic: peer.traffic.read(),
        },
    ))
}

/// The body of [`session`].
async fn run_session(
    peer: &mut Peer,
    role: Role,
    plan: &Plan,
    prepared: &Arc<Prepared>,
    samples: u64,
    opts: &SessionOptions,
    driver: &mut Driver,
) -> Result<(Vec<Vec<i64>>, Vec<Report>, Counters), SessionError> {
    let timeout = opts.timeout;
    let mut frames = within(timeout, frame_channel(&mut peer.conn)).await?;
    let mine = Hello {
        version: PROTOCOL_VERSION,
        plan: plan.public.hash(),
        samples,
    };
    let theirs = Hello::parse(&within(timeout, frames.exchange(mine.to_bytes())).await?)?;
    let (server_hello, client_hello) = match role {
        Role::Server => (&mine, &theirs),
        Role::Client => (&theirs, &mine),
    };
    if let Err(e) = check_hello(server_hello, client_hello) {
        // Both parties see the mismatch; close as after a run, so that neither drops the
        // other's hello unread.
        let _ = tokio::time::timeout(CLOSE_GRACE, closing(role, &mut frames, timeout)).await;
        return Err(e);
    }
    let samples = client_hello.samples;
    tracing::info!(remote = %peer.remote, samples, "handshake done");
    let side = match role {
        Role::Server => Side::Server,
        Role::Client => Side::Client,
    };
    let mut ot = CryprotOt::new(plan.public.protocol.ot, side, &mut peer.conn);
    let mut outputs = Vec::new();
    let mut reports = Vec::new();
    let predicted_steps = steps(prepared);
    for i in 0..samples {
        let observer = opts
            .progress
            .as_ref()
            .map(|p| p.sample(role, i, samples, &predicted_steps));
        let waits = Waits {
            timeout,
            traffic: peer.traffic.clone(),
        };
        let groups = prepared.ot_groups(role);
        let (result, channel) =
            run_blocking(frames, waits, observer, &mut ot, groups, i as usize, driver);
        frames = channel;
        let (output, report) = result?;
        tracing::debug!(remote = %peer.remote, sample = i, "sample done");
        outputs.extend(output);
        reports.push(report);
    }
    closing(role, &mut frames, timeout).await?;
    Ok((outputs, reports, frames.counters()))
}

/// The end of a session: the client sends one empty frame once it holds everything and waits
/// (at most [`CLOSE_GRACE`]) for the server to close the connection; the server closes it
/// (in [`session`]) once the frame is in.
async fn closing(
    role: Role,
    frames: &mut FrameChannel<QuicStream>,
    timeout: Option<Duration>,
) -> Result<(), SessionError> {
    match role {
        Role::Client => {
            within(timeout, frames.send(&[])).await?;
            // Any outcome is as good once the frame is out: the server closes on it.
            let _ = tokio::time::timeout(CLOSE_GRACE, frames.receive()).await;
        }
        Role::Server => {
            let done = within(timeout, frames.receive()).await?;
            if !done.is_empty() {
                return Err(SessionError::Handshake(done.len()));
            }
        }
    }
    Ok(())
}

/// How the synchronous driver waits for the peer: the bound on waiting and the connection's
/// counters that show the peer is active.
struct Waits {
    timeout: Option<Duration>,
    traffic: Arc<QuicTraffic>,
}

impl Waits {
    /// While waiting for a protocol frame: the received stream bytes, i.e. the peer's
    /// messages (not acknowledgements or keep-alive pings, which a stuck peer still sends).
    fn frames(&self) -> PeerActivity {
        let traffic = self.traffic.clone();
        Arc::new(move || traffic.read().stream_bytes_received)
    }

    /// While an OT batch runs: every received datagram, keep-alive pings included. Both
    /// parties compute inside a batch, and one may wait for the other's computation for
    /// long; a peer whose QUIC endpoint still sends (at least every
    /// [`crate::transport::net::KEEP_ALIVE_PERIOD`])
    /// is working on the batch, and one that vanished is not.
    fn ot_batch(&self) -> PeerActivity {
        let traffic = self.traffic.clone();
        Arc::new(move || traffic.read().datagram_bytes_received)
    }
}

/// Runs one sample's driver on this thread over `frames`, with the sample's OT batches
/// (`groups`) from `ot` produced ahead of use ([`with_prefetch`]; the tokio runtime keeps
/// driving the connection on its workers), and hands the channel back.
fn run_blocking(
    frames: FrameChannel<QuicStream>,
    waits: Waits,
    observer: Option<Box<dyn SampleProgress>>,
    ot: &mut CryprotOt,
    groups: BatchGroups,
    sample: usize,
    driver: &mut Driver,
) -> (SampleResult, FrameChannel<QuicStream>) {
    Bridge::block_in_place(waits.timeout, move |bridge| {
        let ot_bridge = bridge.clone().watching(waits.ot_batch());
        let frames = BlockingExchange::new(frames, bridge.watching(waits.frames()));
        let mut exchange = Observed::new(frames, observer);
        let result = with_prefetch(ot, ot_bridge, groups, |ot| {
            driver(sample, &mut exchange, ot)
        });
        (result, exchange.finish().into_inner())
    })
}

/// Serves one client on `peer` with `plan` and the server's `layers` prepared for it.
///
/// # Errors
/// [`SessionError`]: a mismatch, the peer failing or vanishing, a timeout, a protocol error.
pub async fn serve_session(
    peer: Peer,
    plan: Arc<Plan>,
    prepared: Arc<Prepared>,
    layers: Arc<ServerLayers>,
    opts: &SessionOptions,
) -> Result<SessionReport, SessionError> {
    let (p, q) = (plan.clone(), prepared.clone());
    let driver: Driver = Box::new(move |_, exchange, ot| {
        let mut rng = rand::rng();
        run_server(&p.public, &layers, &q, exchange, ot, &mut rng).map(|r| (None, r))
    });
    let (_, report) = session(peer, Role::Server, &plan, &prepared, 0, opts, driver).await?;
    Ok(report)
}

/// Runs `inputs` (centred values of the plan's input tensor, one vector per sample) as the
/// client on `peer`. Returns the centred outputs and the report.
///
/// # Errors
/// As [`serve_session`], and [`PartyError::InputLength`] for a sample of the wrong size.
pub async fn client_session(
    peer: Peer,
    plan: Arc<Plan>,
    prepared: Arc<Prepared>,
    inputs: Arc<Vec<Vec<i64>>>,
    opts: &SessionOptions,
) -> Result<(Vec<Vec<i64>>, SessionReport), SessionError> {
    let (p, q, x) = (plan.clone(), prepared.clone(), inputs.clone());
    let driver: Driver = Box::new(move |i, exchange, ot| {
        let mut rng = rand::rng();
        let input = x.get(i).map_or(&[][..], Vec::as_slice);
        run_client(&p.public, input, &q, exchange, ot, &mut rng).map(|(y, r)| (Some(y), r))
    });
    session(
        peer,
        Role::Client,
        &plan,
        &prepared,
        inputs.len() as u64,
        opts,
        driver,
    )
    .await
}

/// Options of [`serve`].
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Sessions running at once; further clients wait until one ends.
    pub max_sessions: usize,
    /// Stop after this many sessions (`None`: serve until the process ends).
    pub sessions: Option<u64>,
    /// Options of every session.
    pub session: SessionOptions,
}

/// How one served session ended.
#[derive(Debug)]
pub struct SessionEnd {
    /// 1-based number of the session in accept order.
    pub id: u64,
    /// The report, or why the session failed.
    pub result: Result<SessionReport, SessionError>,
}

/// Accepts clients on `listener` and serves each in its own task, at most
/// `opts.max_sessions` at once, calling `on_end` as each session ends; returns after
/// `opts.sessions` sessions (never without a limit).
///
/// `prepared` is [`Prepared::new`] of the plan, `layers` the server's [`ServerLayers`] for
/// it, which every session shares.
pub async fn serve(
    listener: &mut Listener,
    plan: Arc<Plan>,
    prepared: Arc<Prepared>,
    layers: Arc<ServerLayers>,
    opts: &ServeOptions,
    mut on_end: impl FnMut(SessionEnd),
) {
    let mut running = JoinSet::new();
    let mut accepted = 0u64;
    loop {
        let more = opts.sessions.is_none_or(|k| accepted < k);
        if !more && running.is_empty() {
            return;
        }
        let room = running.len() < opts.max_sessions.max(1);
        tokio::select! {
            peer = listener.accept(), if more && room => {
                let Some(peer) = peer else { return };
                accepted += 1;
                let id = accepted;
                if let Ok(peer) = &peer {
                    tracing::info!(session = id, remote = %peer.remote, "client connected");
                }
                let (plan, prepared, layers, session) =
                    (plan.clone(), prepared.clone(), layers.clone(), opts.session.clone());
                running.spawn(async move {
                    let result = match peer {
                        Ok(peer) => serve_session(peer, plan, prepared, layers, &session).await,
                        Err(e) => Err(e.into()),
                    };
                    SessionEnd { id, result }
                });
            }
            Some(end) = running.join_next() => {
                on_end(end.unwrap_or_else(|e| SessionEnd {
                    id: 0,
                    result: Err(SessionError::Thread(e.to_string())),
                }));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(version: u32, plan: u8, samples: u64) -> Hello {
        Hello {
            version,
            plan: [plan; 32],
            samples,
        }
    }

    #[test]
    fn hello_round_trips_and_rejects_garbage() {
        let h = hello(PROTOCOL_VERSION, 7, 5);
        let bytes = h.to_bytes();
        assert_eq!(bytes.len(), Hello::BYTES);
        assert_eq!(Hello::parse(&bytes).unwrap(), h);
        for bad in [
            &bytes[..51],
            &[bytes.as_slice(), &[0]].concat(),
            &[0u8; 52][..],
            &[],
        ] {
            assert!(matches!(Hello::parse(bad), Err(SessionError::Handshake(n)) if n == bad.len()));
        }
    }

    #[test]
    fn mismatches() {
        let e = check_hello(&hello(1, 0, 0), &hello(2, 0, 3)).unwrap_err();
        assert!(e.is_mismatch());
        assert_eq!(
            e.to_string(),
            "protocol version mismatch: server version 1, client version 2"
        );
        let e = check_hello(&hello(1, 0xab, 0), &hello(1, 0xcd, 3)).unwrap_err();
        assert!(e.is_mismatch());
        assert_eq!(
            e.to_string(),
            format!(
                "plan mismatch: server plan {}, client plan {}",
                "ab".repeat(32),
                "cd".repeat(32)
            )
        );
        assert!(check_hello(&hello(1, 3, 0), &hello(1, 3, 9)).is_ok());
        assert!(!SessionError::Handshake(3).is_mismatch());
    }
}
