//! Protocol frames over a cryprot-net (s2n-quic) connection: one bidirectional byte stream of
//! the connection the OT extension already uses, wrapped in a [`super::FrameChannel`].

use cryprot_net::{Connection, ReceiveStreamBytes, SendStreamBytes};
use tokio::io::Join;

use super::{FrameChannel, TransportError};

/// A cryprot-net stream pair as one tokio byte stream.
pub type QuicStream = Join<ReceiveStreamBytes, SendStreamBytes>;

/// Opens the next byte stream of `conn` (streams pair up by creation order on the two sides)
/// and frames it.
///
/// # Errors
/// [`TransportError::Io`] if the stream cannot be opened.
pub async fn frame_channel(
    conn: &mut Connection,
) -> Result<FrameChannel<QuicStream>, TransportError> {
    let (send, recv) = conn.byte_stream().await.map_err(std::io::Error::other)?;
    Ok(FrameChannel::new(tokio::io::join(recv, send)))
}
