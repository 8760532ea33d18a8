//! Carries of `a + b` for the server's `a` and the client's `b`: the millionaire comparison, the
//! MSB/DReLU of shared values and the truncation carries all reduce to it.
//!
//! Ripple chain `c_j = a_j b_j ⊕ (a_j ⊕ b_j)·c_{j−1}` with `c_{j−1} = u ⊕ v` shared:
//! `c_j = a_j u ⊕ b_j v ⊕ b_j (a_j ⊕ u) ⊕ a_j v`. The two cross terms are one correlated OT in
//! each direction with choices `b_j` (client) and `a_j` (server) known up front, so all choice
//! corrections go in the first round, and each bit then costs one round with one bit each way.
//! Exact cost: [`crate::cost::nonlinear::carry_chain`].

use super::cot::{CotReceiver, CotSender, mask};
use super::{BitWriter, ProtocolError, Session};
use crate::ring::Ring;

/// XOR shares of the carries out of bit `positions` (ascending, each below `len`) of `a + b`,
/// where this party's `mine` holds `a` (server) or `b` (client); bits of `mine` at or above `len`
/// are ignored. Returns one share vector per position.
///
/// # Errors
/// [`ProtocolError`] if the OT pads run out or the channel fails.
pub fn carries(
    s: &mut Session<'_>,
    mine: &[u64],
    len: u32,
    positions: &[u32],
) -> Result<Vec<Vec<bool>>, ProtocolError> {
    let n = mine.len();
    let l = len as usize;
    let mut out = Vec::with_capacity(positions.len());
    if len == 0 {
        return Ok(out);
    }
    let bit = |i: usize, j: usize| (mine[i] >> j) & 1 == 1;
    let record = |j: usize, share: &[bool], out: &mut Vec<Vec<bool>>| {
        if positions.contains(&(j as u32)) {
            out.push(share.to_vec());
        }
    };
    let later: Vec<bool> = (1..l)
        .flat_map(|j| (0..n).map(move |i| (j, i)))
        .map(|(j, i)| bit(i, j))
        .collect();
    if s.is_server() {
        // C_j (client receives, choice b_j): server sends; S_j (j ≥ 1, choice a_j): server receives.
        let mut send = CotSender::take(s, l * n)?;
        let mut msg = BitWriter::new();
        let recv = CotReceiver::start(s, later, &mut msg)?;
        let mut r = s.round(msg, (l * n) as u64)?;
        send.read_corrections(&mut r);
        let mut msg = BitWriter::new();
        let a0: Vec<u64> = (0..n).map(|i| u64::from(bit(i, 0))).collect();
        let mut u: Vec<bool> = send
            .respond(0, &a0, 1, &mut msg)
            .into_iter()
            .map(|x| x == 1)
            .collect();
        s.round(msg, 0)?;
        record(0, &u, &mut out);
        for j in 1..l {
            let mut msg = BitWriter::new();
            let deltas: Vec<u64> = (0..n).map(|i| u64::from(bit(i, j) ^ u[i])).collect();
            let s1 = send.respond(j * n, &deltas, 1, &mut msg);
            let mut r = s.round(msg, n as u64)?;
            let r2 = recv.finish((j - 1) * n, n, 1, &mut r);
            for i in 0..n {
                u[i] = (bit(i, j) & u[i]) ^ (s1[i] == 1) ^ (r2[i] == 1);
            }
            record(j, &u, &mut out);
        }
    } else {
        let mut msg = BitWriter::new();
        let all: Vec<bool> = (0..l)
            .flat_map(|j| (0..n).map(move |i| (j, i)))
            .map(|(j, i)| bit(i, j))
            .collect();
        let recv = CotReceiver::start(s, all, &mut msg)?;
        let mut send = CotSender::take(s, (l - 1) * n)?;
        let mut r = s.round(msg, ((l - 1) * n) as u64)?;
        send.read_corrections(&mut r);
        let mut r = s.round(BitWriter::new(), n as u64)?;
        let mut v: Vec<bool> = recv
            .finish(0, n, 1, &mut r)
            .into_iter()
            .map(|x| x == 1)
            .collect();
        record(0, &v, &mut out);
        for j in 1..l {
            let mut msg = BitWriter::new();
            let deltas: Vec<u64> = v.iter().map(|&x| u64::from(x)).collect();
            let s2 = send.respond((j - 1) * n, &deltas, 1, &mut msg);
            let mut r = s.round(msg, n as u64)?;
            let r1 = recv.finish(j * n, n, 1, &mut r);
            for i in 0..n {
                v[i] = (bit(i, j) & v[i]) ^ (r1[i] == 1) ^ (s2[i] == 1);
            }
            record(j, &v, &mut out);
        }
    }
    Ok(out)
}

/// Millionaire comparison: XOR shares of `[x < y]` for the server's `x` and the client's `y`,
/// both `bits`-bit unsigned (`mine` is `x` on the server, `y` on the client).
///
/// # Errors
/// As [`carries`].
pub fn less_than(s: &mut Session<'_>, mine: &[u64], bits: u32) -> Result<Vec<bool>, ProtocolError> {
    if bits == 0 {
        return Ok(vec![false; mine.len()]);
    }
    let m = mask(bits);
    let input: Vec<u64> = if s.is_server() {
        mine.iter().map(|&x| !x & m).collect()
    } else {
        mine.to_vec()
    };
    let mut c = carries(s, &input, bits, &[bits - 1])?;
    Ok(c.pop().unwrap_or_default())
}

/// XOR shares of the most significant bit of shared values in `ring` (`ring.bits() ≥ 2`).
///
/// # Errors
/// As [`carries`].
pub fn msb(s: &mut Session<'_>, ring: Ring, shares: &[u64]) -> Result<Vec<bool>, ProtocolError> {
    let l = ring.bits();
    let low: Vec<u64> = shares.iter().map(|&x| x & mask(l - 1)).collect();
    let carry = carries(s, &low, l - 1, &[l - 2])?.pop().unwrap_or_default();
    Ok(shares
        .iter()
        .zip(carry)
        .map(|(&x, c)| ring.msb(x) ^ c)
        .collect())
}

/// XOR shares of DReLU `[x ≥ 0]` of shared signed values in `ring`.
///
/// # Errors
/// As [`carries`].
pub fn drelu(s: &mut Session<'_>, ring: Ring, shares: &[u64]) -> Result<Vec<bool>, ProtocolError> {
    let server = s.is_server();
    Ok(msb(s, ring, shares)?
        .into_iter()
        .map(|b| b ^ server)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cost::nonlinear as cost;
    use crate::nonlinear::testutil::{run, share, values};

    #[test]
    fn millionaire_exact_all_widths() {
        for bits in [1u32, 2, 3, 8, 17, 45] {
            let n = 300;
            let top = (1i128 << bits) - 1;
            let x = values(0, top, n, u64::from(bits));
            let mut y = values(0, top, n, 1000 + u64::from(bits));
            y[3] = x[3]; // a tie
            let xs: Vec<u64> = x.iter().map(|&v| v as u64).collect();
            let ys: Vec<u64> = y.iter().map(|&v| v as u64).collect();
            let (a, b) = run(cost::millionaire(n as u64, bits), move |s| {
                let mine = if s.is_server() {
                    xs.clone()
                } else {
                    ys.clone()
                };
                less_than(s, &mine, bits)
            });
            for i in 0..n {
                assert_eq!(
                    a[i] ^ b[i],
                    x[i] < y[i],
                    "bits {bits} x {} y {}",
                    x[i],
                    y[i]
                );
            }
        }
    }

    #[test]
    fn drelu_and_msb_exact() {
        for l in [2u32, 3, 5, 16, 37, 45] {
            let ring = Ring::new(l);
            let half = 1i128 << (l - 1);
            let v = values(-half, half - 1, 500, u64::from(l));
            let (xs, xc) = share(ring, &v, 5);
            let (a, b) = run(cost::msb(500, l), move |s| {
                drelu(s, ring, if s.is_server() { &xs } else { &xc })
            });
            for i in 0..v.len() {
                assert_eq!(a[i] ^ b[i], v[i] >= 0, "l {l} v {}", v[i]);
            }
        }
    }

    #[test]
    fn carries_at_several_positions() {
        let (a, b) = (0b1011_0110u64, 0b0110_1011u64);
        let (sa, sb) = run(cost::carry_chain(1, 8), move |s| {
            carries(s, &[if s.is_server() { a } else { b }], 8, &[2, 5, 7])
        });
        let carry = |j: u32| ((a & mask(j + 1)) + (b & mask(j + 1))) >> (j + 1) == 1;
        for (k, &j) in [2u32, 5, 7].iter().enumerate() {
            assert_eq!(sa[k][0] ^ sb[k][0], carry(j), "position {j}");
        }
    }
}
