//! Correlated OT with chosen choices over `Z_{2^w}`, derived from random OTs.
//!
//! With a ROT (sender pads `p0, p1`, receiver choice `c` and `p_c`) and the receiver's real
//! choice `b`: the receiver sends `e = b ⊕ c`; with `Q_t = low_w(p_{t⊕e})` the sender sends
//! `d = Q_0 − Q_1 + Δ` and keeps `s = −Q_0`; the receiver computes `r = Q_b + b·d`. Then
//! `s + r = b·Δ (mod 2^w)`; for `w = 1` these are XOR shares of `b ∧ Δ`. Cost: 1 bit up, `w`
//! bits down. The receiver learns nothing about `Δ` beyond `b·Δ` (the other pad is hidden by
//! the ROT); the sender sees `e`, a one-time pad of `b`.
//!
//! The ripple carry chain uses this two-round form (all its corrections go first, then one bit
//! per round); everything else uses the one-round form, [`OneRoundSender`], whose sender
//! message does not wait for the correction.
//!
//! The multiplexer [`mux`] `d·x` (`d = d0 ⊕ d1`, `x = x0 + x1`) is two correlated OTs, in one
//! round: each party sends its share of `x` correlated by `Δ = (1 − 2·d_own)·x_own` to the
//! other's choice `d_other`, and `d·x = d0 x0 + d1 x1 + d1·Δ_0 + d0·Δ_1`. Cost:
//! [`crate::cost::nonlinear::mux`].

use super::{BitReader, BitWriter, ProtocolError, Session, check_len};
use crate::ot::Pad;
use crate::ring::Ring;

/// `2^w − 1`.
pub(crate) fn mask(width: u32) -> u64 {
    if width >= 64 {
        u64::MAX
    } else {
        (1u64 << width) - 1
    }
}

/// The low `width` bits of `pad` from bit `skip` on.
fn low(pad: Pad, skip: u32, width: u32) -> u64 {
    ((u128::from(pad) >> skip) as u64) & mask(width)
}

/// Receiver half of a batch.
pub(crate) struct CotReceiver {
    choices: Vec<bool>,
    pads: Vec<Pad>,
}

impl CotReceiver {
    /// Takes one receiver ROT per choice and writes the corrections into `msg`.
    pub(crate) fn start(
        s: &mut Session<'_>,
        choices: Vec<bool>,
        msg: &mut BitWriter,
    ) -> Result<Self, ProtocolError> {
        let (random, pads) = s.pads().take_recv(choices.len())?;
        for (&b, c) in choices.iter().zip(random) {
            msg.push_bit(b ^ c);
        }
        Ok(CotReceiver { choices, pads })
    }

    /// Reads the sender's `len` messages for elements `offset..offset + len`; returns the
    /// receiver's shares `r`.
    pub(crate) fn finish(
        &self,
        offset: usize,
        len: usize,
        width: u32,
        msg: &mut BitReader,
    ) -> Vec<u64> {
        (offset..offset + len)
            .map(|i| self.finish_one(i, width, msg))
            .collect()
    }

    /// [`CotReceiver::finish`] for one element.
    pub(crate) fn finish_one(&self, i: usize, width: u32, msg: &mut BitReader) -> u64 {
        self.finish_at(i, 0, width, msg)
    }

    /// [`CotReceiver::finish_one`] on the pad bits from `skip` on: a correlated OT sharing
    /// element `i`'s choice with the correlations on the pad's lower `skip` bits.
    pub(crate) fn finish_at(&self, i: usize, skip: u32, width: u32, msg: &mut BitReader) -> u64 {
        let d = msg.read(width);
        let q = low(self.pads[i], skip, width);
        if self.choices[i] {
            q.wrapping_add(d) & mask(width)
        } else {
            q
        }
    }
}

/// Sender half of a batch.
pub(crate) struct CotSender {
    pads: Vec<[Pad; 2]>,
    flips: Vec<bool>,
}

impl CotSender {
    /// Takes `n` sender ROTs.
    pub(crate) fn take(s: &mut Session<'_>, n: usize) -> Result<Self, ProtocolError> {
        let pads = s.pads().take_send(n)?;
        Ok(CotSender {
            pads,
            flips: Vec::new(),
        })
    }

    /// Reads the receiver's `n` choice corrections.
    pub(crate) fn read_corrections(&mut self, msg: &mut BitReader) {
        self.flips = (0..self.pads.len()).map(|_| msg.read_bit()).collect();
    }

    /// Writes the messages for elements `offset..offset + deltas.len()` with correlations
    /// `deltas`; returns the sender's shares `s` (`s + r = b·Δ`).
    pub(crate) fn respond(
        &self,
        offset: usize,
        deltas: &[u64],
        width: u32,
        msg: &mut BitWriter,
    ) -> Vec<u64> {
        deltas
            .iter()
            .enumerate()
            .map(|(j, &delta)| self.respond_one(offset + j, delta, width, msg))
            .collect()
    }

    /// [`CotSender::respond`] for one element.
    pub(crate) fn respond_one(&self, i: usize, delta: u64, width: u32, msg: &mut BitWriter) -> u64 {
        self.respond_at(i, 0, delta, width, msg)
    }

    /// [`CotSender::respond_one`] on the pad bits from `skip` on (see
    /// [`CotReceiver::finish_at`]).
    pub(crate) fn respond_at(
        &self,
        i: usize,
        skip: u32,
        delta: u64,
        width: u32,
        msg: &mut BitWriter,
    ) -> u64 {
        let m = mask(width);
        let e = usize::from(self.flips[i]);
        let q0 = low(self.pads[i][e], skip, width);
        let q1 = low(self.pads[i][1 ^ e], skip, width);
        msg.push(q0.wrapping_sub(q1).wrapping_add(delta) & m, width);
        q0.wrapping_neg() & m
    }
}

/// Sender half of a batch of correlated OTs over `Z_{2^w}` in one round: the sender's message
/// does not wait for the receiver's choice correction ("sender first"). With the ROT pads
/// `Q0, Q1` (low `w` bits from a pad offset) the sender sends `d = Q0 − Q1 + Δ` while the
/// receiver (random choice `c`, pad `Q_c`) sends `e = b ⊕ c`: the shares `−Q0` and
/// `Q_c + c·d` add up to `c·Δ`, and with `e = 1` (`b = 1 − c`) the sender takes `Δ + Q0` and
/// the receiver negates its share, so that they add up to `b·Δ`. Each message is one-time padded
/// (`d` by the pad the receiver lacks, `e` by `c`), so both go in the same round: one round where
/// the two-round form ([`CotSender`]) needs two, with the same bits and ROTs. For `w = 1` the
/// shares are XOR shares of `b ∧ Δ`.
pub(crate) struct OneRoundSender {
    pads: Vec<[Pad; 2]>,
}

impl OneRoundSender {
    /// Takes `n` sender ROTs.
    pub(crate) fn take(s: &mut Session<'_>, n: usize) -> Result<Self, ProtocolError> {
        Ok(OneRoundSender {
            pads: s.pads().take_send(n)?,
        })
    }

    /// Writes the message of OT `i` for the correlation `delta` in `Z_{2^width}`, on the pad
    /// bits from `skip` on (several correlations can share one OT's choice at distinct offsets).
    pub(crate) fn send_at(&self, i: usize, skip: u32, delta: u64, width: u32, msg: &mut BitWriter) {
        let [p0, p1] = self.pads[i];
        let (q0, q1) = (low(p0, skip, width), low(p1, skip, width));
        msg.push(q0.wrapping_sub(q1).wrapping_add(delta) & mask(width), width);
    }

    /// The sender's share of `b·Δ` of OT `i` (pad bits from `skip`), given the receiver's
    /// correction `e`.
    pub(crate) fn share_at(&self, i: usize, skip: u32, e: bool, delta: u64, width: u32) -> u64 {
        let q0 = low(self.pads[i][0], skip, width);
        let s = if e {
            delta.wrapping_add(q0)
        } else {
            q0.wrapping_neg()
        };
        s & mask(width)
    }
}

/// Receiver half of [`OneRoundSender`]'s correlated OTs.
pub(crate) struct OneRoundReceiver {
    random: Vec<bool>,
    pads: Vec<Pad>,
}

impl OneRoundReceiver {
    /// Takes `n` receiver ROTs.
    pub(crate) fn take(s: &mut Session<'_>, n: usize) -> Result<Self, ProtocolError> {
        let (random, pads) = s.pads().take_recv(n)?;
        Ok(OneRoundReceiver { random, pads })
    }

    /// Writes the correction of OT `i` for the real choice `b`.
    pub(crate) fn correct(&self, i: usize, b: bool, msg: &mut BitWriter) {
        msg.push_bit(b ^ self.random[i]);
    }

    /// The receiver's share of `b·Δ` of OT `i` (pad bits from `skip`), given its real choice
    /// `b` and the sender's message `d`.
    pub(crate) fn share_at(&self, i: usize, skip: u32, b: bool, d: u64, width: u32) -> u64 {
        let c = self.random[i];
        let q = low(self.pads[i], skip, width);
        let r = if c { q.wrapping_add(d) } else { q };
        let r = if b ^ c { r.wrapping_neg() } else { r };
        r & mask(width)
    }
}

/// A batch of correlated OTs with the client as receiver, in one round ([`OneRoundSender`]):
/// the client's choices `b` (client side) against the server's `deltas` (server side), each
/// element with its own width. Returns this party's additive shares of `b·Δ` per element, each
/// modulo `2^width`. The party that does not hold an input passes an empty slice for it.
pub(crate) fn client_cots(
    s: &mut Session<'_>,
    choices: &[bool],
    deltas: &[u64],
    widths: &[u32],
) -> Result<Vec<u64>, ProtocolError> {
    let n = widths.len();
    if n == 0 {
        return Ok(Vec::new());
    }
    let total: u64 = widths.iter().map(|&w| u64::from(w)).sum();
    if s.is_server() {
        check_len(deltas.len(), n)?;
        let sender = OneRoundSender::take(s, n)?;
        let mut msg = BitWriter::new();
        for i in 0..n {
            sender.send_at(i, 0, deltas[i], widths[i], &mut msg);
        }
        let mut r = s.round(msg, n as u64)?;
        Ok((0..n)
            .map(|i| sender.share_at(i, 0, r.read_bit(), deltas[i], widths[i]))
            .collect())
    } else {
        check_len(choices.len(), n)?;
        let recv = OneRoundReceiver::take(s, n)?;
        let mut msg = BitWriter::new();
        for (i, &b) in choices.iter().enumerate() {
            recv.correct(i, b, &mut msg);
        }
        let mut r = s.round(msg, total)?;
        Ok((0..n)
            .map(|i| recv.share_at(i, 0, choices[i], r.read(widths[i]), widths[i]))
            .collect())
    }
}

/// Shares of `d·x` in `ring` from XOR shares of `d` and shares of `x` in `ring`.
///
/// # Errors
/// [`ProtocolError`] on length mismatch, exhausted OT pads or channel failure.
pub fn mux(
    s: &mut Session<'_>,
    ring: Ring,
    d: &[bool],
    x: &[u64],
) -> Result<Vec<u64>, ProtocolError> {
    mux_plus(s, ring, d, x, &[], 0)
}

/// Shares of `d·x + e·k` in `ring` from XOR shares of `d` and `e` (`e` empty: no second term),
/// shares of `x` and a public `k`, in the one round of [`mux`]: `e·k = e0·k + e1·(1 − 2·e0)·k`
/// adds one correlated OT per element with the client as receiver (choice `e1`, the server's
/// `Δ = (1 − 2·e0)·k`). Cost: [`crate::cost::nonlinear::mux_plus`].
///
/// # Errors
/// [`ProtocolError`] on length mismatch, exhausted OT pads or channel failure.
pub fn mux_plus(
    s: &mut Session<'_>,
    ring: Ring,
    d: &[bool],
    x: &[u64],
    e: &[bool],
    k: u64,
) -> Result<Vec<u64>, ProtocolError> {
    let n = x.len();
    check_len(d.len(), n)?;
    if !e.is_empty() {
        check_len(e.len(), n)?;
    }
    if n == 0 {
        return Ok(Vec::new());
    }
    let w = ring.bits();
    let server = s.is_server();
    // The second term's OTs: the server sends, the client chooses.
    let (sent_extra, got_extra) = if server { (e.len(), 0) } else { (0, e.len()) };
    let send = OneRoundSender::take(s, n + sent_extra)?;
    let mut choices = d.to_vec();
    if !server {
        choices.extend_from_slice(e);
    }
    let recv = OneRoundReceiver::take(s, n + got_extra)?;
    let mut deltas: Vec<u64> = d
        .iter()
        .zip(x)
        .map(|(&di, &xi)| if di { ring.neg(xi) } else { xi })
        .collect();
    if server {
        deltas.extend(
            e.iter()
                .map(|&ei| if ei { ring.neg(k) } else { ring.reduce(k) }),
        );
    }
    // One round: this party's corrections (its choices), then its messages (its deltas).
    let mut msg = BitWriter::new();
    for (i, &b) in choices.iter().enumerate() {
        recv.correct(i, b, &mut msg);
    }
    for (i, &delta) in deltas.iter().enumerate() {
        send.send_at(i, 0, delta, w, &mut msg);
    }
    let in_bits = deltas.len() as u64 + choices.len() as u64 * u64::from(w);
    let mut r = s.round(msg, in_bits)?;
    let flips: Vec<bool> = (0..deltas.len()).map(|_| r.read_bit()).collect();
    let sent: Vec<u64> = (0..deltas.len())
        .map(|i| send.share_at(i, 0, flips[i], deltas[i], w))
        .collect();
    let got: Vec<u64> = (0..choices.len())
        .map(|i| recv.share_at(i, 0, choices[i], r.read(w), w))
        .collect();
    // This party's share of `e·k`: the server's `e0·k` and its OT share, the client's OT share.
    let second = |i: usize| -> u64 {
        match (e.is_empty(), server) {
            (true, _) => 0,
            (false, true) => ring.add(if e[i] { ring.reduce(k) } else { 0 }, sent[n + i]),
            (false, false) => got[n + i],
        }
    };
    Ok((0..n)
        .map(|i| {
            let dx = ring.add(ring.add(if d[i] { x[i] } else { 0 }, sent[i]), got[i]);
            ring.add(dx, second(i))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cost::nonlinear as cost;
    use crate::nonlinear::testutil::{open, run, share, values};

    #[test]
    fn mux_exact() {
        let ring = Ring::new(13);
        let v = values(-4096, 4095, 200, 3);
        let d: Vec<bool> = (0..200).map(|i| i % 3 == 0).collect();
        let (xs, xc) = share(ring, &v, 4);
        let split: Vec<bool> = (0..200).map(|i| i % 5 < 2).collect();
        let (ds, dc): (Vec<bool>, Vec<bool>) =
            d.iter().zip(&split).map(|(&a, &r)| (a ^ r, r)).unzip();
        let (a, b) = run(cost::mux(200, 13), move |s| {
            if s.is_server() {
                mux(s, ring, &ds, &xs)
            } else {
                mux(s, ring, &dc, &xc)
            }
        });
        let got = open(ring, &a, &b);
        for i in 0..200 {
            assert_eq!(got[i], if d[i] { v[i] } else { 0 });
        }
    }

    #[test]
    fn mux_plus_exact() {
        let ring = Ring::new(7);
        // Every (d, e) and every split of both bits, twice over values with edges.
        let n = 64;
        let v = values(-64, 63, n, 6);
        let (xs, xc) = share(ring, &v, 7);
        let bit = |i: usize, j: u32| (i >> j) & 1 == 1;
        let (d, e): (Vec<bool>, Vec<bool>) = (0..n).map(|i| (bit(i, 0), bit(i, 1))).unzip();
        let (ds, es): (Vec<bool>, Vec<bool>) =
            (0..n).map(|i| (d[i] ^ bit(i, 2), e[i] ^ bit(i, 3))).unzip();
        let (dc, ec): (Vec<bool>, Vec<bool>) = (0..n).map(|i| (bit(i, 2), bit(i, 3))).unzip();
        let k = 100;
        let (a, b) = run(cost::mux_plus(n as u64, 7), move |s| {
            if s.is_server() {
                mux_plus(s, ring, &ds, &xs, &es, k)
            } else {
                mux_plus(s, ring, &dc, &xc, &ec, k)
            }
        });
        let got = open(ring, &a, &b);
        for i in 0..n {
            let want = i128::from(d[i]) * v[i] + i128::from(e[i]) * 100;
            let want = i128::from(ring.to_signed(ring.reduce(want as u64)));
            assert_eq!(got[i], want, "d {} e {} x {}", d[i], e[i], v[i]);
        }
    }
}
