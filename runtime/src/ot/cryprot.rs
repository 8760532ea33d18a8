//! cryprot-ot 0.3.0 backends of [`OtSource`]: semi-honest silent OT (BCG+19 with expand-convolute
//! codes; the default) and semi-honest IKNP, over a `cryprot_net::Connection`.
//!
//! Each party holds one sender and one receiver, each on its own sub-connection: the first
//! sub-connection carries the OTs with the server as sender, the second those with the client
//! as sender. Outputs are the protocols' hashed 128-bit
//! random OTs (the receiver's choices are random); `nonlinear` derandomizes them.
//!
//! Traffic per batch of `n` OTs (read from the cryprot-ot 0.3.0 / cryprot-net 0.2.5 sources,
//! checked by measurement in the tests; [`crate::cost::ot_extension::ot_extension_bytes`]):
//! IKNP sends `16·⌈n/128⌉·128` bytes from receiver to sender plus a stream header, and 128
//! Simplest-OT base OTs on first use; silent OT runs one IKNP batch for its PPRF base OTs and
//! a GGM-tree expansion whose size is logarithmic in `n`: about 4 bits per OT for 3·10^5 OTs,
//! 1.9 for 7·10^5, 0.1 for 2^24 (per direction, both parties' bytes) — batch OTs generously.

use cryprot_net::Connection;
use cryprot_ot::extension::{SemiHonestOtExtensionReceiver, SemiHonestOtExtensionSender};
use cryprot_ot::silent_ot::{SemiHonestSilentOtReceiver, SemiHonestSilentOtSender};
use cryprot_ot::{RandChoiceRotReceiver, RotSender};

use super::{OtError, OtPads, OtSource, Pad, Side};
use crate::plan::OtBackend;

/// Smallest silent-OT batch requested: cryprot-codes 0.2.3's expand-convolute encoder
/// underflows for codes of at most 24 positions, so small requests are rounded up.
pub const SILENT_MIN_OTS: usize = 128;

enum Sender {
    Silent(Box<SemiHonestSilentOtSender>),
    Iknp(Box<SemiHonestOtExtensionSender>),
}

enum Receiver {
    Silent(Box<SemiHonestSilentOtReceiver>),
    Iknp(Box<SemiHonestOtExtensionReceiver>),
}

/// Random OTs from cryprot-ot for one party.
pub struct CryprotOt {
    sender: Sender,
    receiver: Receiver,
    server: bool,
}

impl CryprotOt {
    /// A source for `side` using `backend`, on two new sub-connections of `conn` (the peer must
    /// create its source at the same point of its connection's life).
    pub fn new(backend: OtBackend, side: Side, conn: &mut Connection) -> Self {
        let first = conn.sub_connection();
        let second = conn.sub_connection();
        let (send_conn, recv_conn) = match side {
            Side::Server => (first, second),
            Side::Client => (second, first),
        };
        match backend {
            OtBackend::Silent => CryprotOt {
                sender: Sender::Silent(Box::new(SemiHonestSilentOtSender::new(send_conn))),
                receiver: Receiver::Silent(Box::new(SemiHonestSilentOtReceiver::new(recv_conn))),
                server: side == Side::Server,
            },
            OtBackend::Iknp => CryprotOt {
                sender: Sender::Iknp(Box::new(SemiHonestOtExtensionSender::new(send_conn))),
                receiver: Receiver::Iknp(Box::new(SemiHonestOtExtensionReceiver::new(recv_conn))),
                server: side == Side::Server,
            },
        }
    }
}

fn backend(e: impl std::error::Error) -> OtError {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg = format!("{msg}: {s}");
        source = s.source();
    }
    OtError::Backend(msg)
}

/// Writes `n` sender ROTs into `sent` (resized in place; the backend fills the buffer
/// directly).
async fn send(sender: &mut Sender, n: usize, sent: &mut Vec<[Pad; 2]>) -> Result<(), OtError> {
    if n == 0 {
        return Ok(());
    }
    match sender {
        Sender::Silent(s) => {
            let count = n.max(SILENT_MIN_OTS);
            sent.resize(count, [Pad::ZERO; 2]);
            s.random_sent_into(count, sent).await.map_err(backend)?;
        }
        Sender::Iknp(s) => {
            sent.resize(n.next_multiple_of(128), [Pad::ZERO; 2]);
            s.send_into(sent).await.map_err(backend)?;
        }
    }
    sent.truncate(n);
    Ok(())
}

/// Writes `n` receiver ROTs into `choices` and `recv` (resized in place).
async fn receive(
    receiver: &mut Receiver,
    n: usize,
    choices: &mut Vec<bool>,
    recv: &mut Vec<Pad>,
) -> Result<(), OtError> {
    if n == 0 {
        return Ok(());
    }
    let random = match receiver {
        Receiver::Silent(r) => {
            let count = n.max(SILENT_MIN_OTS);
            recv.resize(SemiHonestSilentOtReceiver::ots_buf_size(count), Pad::ZERO);
            r.random_receive_into(count, recv).await.map_err(backend)?
        }
        Receiver::Iknp(r) => {
            recv.resize(n.next_multiple_of(128), Pad::ZERO);
            r.rand_choice_receive_into(recv).await.map_err(backend)?
        }
    };
    recv.truncate(n);
    choices.extend(random.iter().take(n).map(|c| c.unwrap_u8() == 1));
    Ok(())
}

impl CryprotOt {
    /// Whether this source serves the server.
    fn is_server(&self) -> bool {
        self.server
    }
}

impl OtSource for CryprotOt {
    /// The two directions run one after the other (server-as-sender first): cryprot-ot's PPRF
    /// receiver blocks a rayon worker while it waits for the sender's tree groups, so running
    /// both directions at once can starve the rayon pool on a 2-core machine when both parties
    /// share a process.
    async fn pads_into(
        &mut self,
        n_send: usize,
        n_receive: usize,
        pads: &mut OtPads,
    ) -> Result<(), OtError> {
        let server = self.is_server();
        let (sent, choices, received) = pads.next_batch();
        if server {
            send(&mut self.sender, n_send, sent).await?;
            receive(&mut self.receiver, n_receive, choices, received).await
        } else {
            receive(&mut self.receiver, n_receive, choices, received).await?;
            send(&mut self.sender, n_send, sent).await
        }
    }
}
