//! Carries of `a + b` for the server's `a` and the client's `b`: the millionaire comparison, the
//! MSB/DReLU of shared values and the truncation carries all reduce to it.
//!
//! Ripple chain `c_j = a_j b_j ⊕ (a_j ⊕ b_j)·c_{j−1}` with `c_{j−1} = u ⊕ v` shared:
//! `c_j = a_j u ⊕ b_j v ⊕ b_j (a_j ⊕ u) ⊕ a_j v`. The two cross terms are one correlated OT in
//! each direction with choices `b_j` (client) and `a_j` (server) known up front, so all choice
//! corrections go in the first round, and each bit then costs one round with one bit each way.
//! Exact cost: [`crate::cost::nonlinear::carry_chain`].

use super::cot::{CotReceiver, CotSender, mask, mux};
use super::{BitWriter, ProtocolError, Session};
use crate::params::nonlinear::shared_bits;
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
    Ok(chain(s, mine, len, positions, None)?.0)
}

/// XOR shares of the carries out of bit `len − 1` of `a + b` and of `a' + b` with
/// `a' = a − d mod 2^len` for a public `d`, in the rounds of one chain ([`carries`]): the
/// comparisons of one client value against two server thresholds a public distance apart.
///
/// The summands `a` and `a'` agree on the `z = v2(d)` low bits, so both sums have the same
/// carries there and one chain computes them. At bit `z` the bits differ (`a'_z = ¬a_z`), so
/// `c'_z = ¬a_z b_z ⊕ (¬a_z ⊕ b_z) c_(z−1) = c_z ⊕ b_z ⊕ c_(z−1)`: local. Above `z` the second
/// sum runs its own chain; its correlated OT with the client's choice `b_j` is the first one's
/// (one ROT and one choice correction, one more pad bit for the second correlation), so each such
/// bit costs the second sum 3 bits and 1 ROT instead of a separate chain's 4 bits and 2 ROTs.
/// With `d` a multiple of `2^(len−1)` the second carry is free. Cost:
/// [`crate::cost::nonlinear::carry_pair`].
///
/// # Errors
/// As [`carries`].
pub fn carry_pair(
    s: &mut Session<'_>,
    mine: &[u64],
    len: u32,
    d: u64,
) -> Result<(Vec<bool>, Vec<bool>), ProtocolError> {
    if len == 0 {
        return Ok((vec![false; mine.len()], vec![false; mine.len()]));
    }
    let (mut at, twin) = chain(s, mine, len, &[len - 1], Some(d))?;
    Ok((at.pop().unwrap_or_default(), twin))
}

/// The ripple chain behind [`carries`] and [`carry_pair`]: the carries at `positions` of
/// `a + b` and, with `twin = Some(d)`, the carry out of bit `len − 1` of `(a − d) + b`.
///
/// Server-choice OTs: `a_j` for bits `1..len`, then the twin's bits above [`shared_bits`].
/// Client-choice OTs: `b_j` for every bit, one per bit for both sums (the twin's correlation on
/// pad bit 1).
fn chain(
    s: &mut Session<'_>,
    mine: &[u64],
    len: u32,
    positions: &[u32],
    twin: Option<u64>,
) -> Result<(Vec<Vec<bool>>, Vec<bool>), ProtocolError> {
    let n = mine.len();
    let l = len as usize;
    let mut out = Vec::with_capacity(positions.len());
    if len == 0 {
        return Ok((out, Vec::new()));
    }
    let split = twin.map_or(len, |d| shared_bits(len, d)) as usize;
    // Bits `split + 1 .. len` where the twin needs its own OTs.
    let own = (l - 1).saturating_sub(split);
    let server = s.is_server();
    let second: Vec<u64> = match twin {
        Some(d) if server => mine.iter().map(|&a| a.wrapping_sub(d)).collect(),
        _ => Vec::new(),
    };
    let bit = |x: &[u64], i: usize, j: usize| (x[i] >> j) & 1 == 1;
    let record = |j: usize, share: &[bool], out: &mut Vec<Vec<bool>>| {
        if positions.contains(&(j as u32)) {
            out.push(share.to_vec());
        }
    };
    // The twin's share after bit `j`: the first sum's below `split`, the local
    // `c_j ⊕ b_j ⊕ c_(j−1)` at `split`.
    let follow = |j: usize, prev: &[bool], now: &[bool], twin_share: &mut [bool]| {
        if twin.is_none() {
            return;
        }
        if j < split {
            twin_share.clone_from_slice(now);
        } else if j == split {
            for i in 0..n {
                twin_share[i] = now[i] ^ prev[i] ^ (!server && bit(mine, i, j));
            }
        }
    };
    // Index of the server-choice OT for the twin's bit `j > split`.
    let twin_ot = |j: usize, i: usize| (l - 1 + j - split - 1) * n + i;
    let mut prev = vec![false; n];
    let mut twin_share = vec![false; n];
    if server {
        // C_j (client receives, choice b_j): server sends; S_j (j ≥ 1, choice a_j, then the
        // twin's a'_j above `split`): server receives.
        let mut send = CotSender::take(s, l * n)?;
        let mut msg = BitWriter::new();
        let choices: Vec<bool> = (1..l)
            .flat_map(|j| (0..n).map(move |i| (j, i)))
            .map(|(j, i)| bit(mine, i, j))
            .chain(
                (split + 1..l)
                    .flat_map(|j| (0..n).map(move |i| (j, i)))
                    .map(|(j, i)| bit(&second, i, j)),
            )
            .collect();
        let recv = CotReceiver::start(s, choices, &mut msg)?;
        let mut r = s.round(msg, (l * n) as u64)?;
        send.read_corrections(&mut r);
        let mut msg = BitWriter::new();
        let a0: Vec<u64> = (0..n).map(|i| u64::from(bit(mine, i, 0))).collect();
        let mut u: Vec<bool> = send
            .respond(0, &a0, 1, &mut msg)
            .into_iter()
            .map(|x| x == 1)
            .collect();
        s.round(msg, 0)?;
        follow(0, &prev, &u, &mut twin_share);
        record(0, &u, &mut out);
        for j in 1..l {
            let apart = j > split;
            let mut msg = BitWriter::new();
            let deltas: Vec<u64> = (0..n).map(|i| u64::from(bit(mine, i, j) ^ u[i])).collect();
            let s1 = send.respond(j * n, &deltas, 1, &mut msg);
            let t1: Vec<u64> = if apart {
                (0..n)
                    .map(|i| {
                        let delta = u64::from(bit(&second, i, j) ^ twin_share[i]);
                        send.respond_at(j * n + i, 1, delta, 1, &mut msg)
                    })
                    .collect()
            } else {
                Vec::new()
            };
            let mut r = s.round(msg, (n * (1 + usize::from(apart))) as u64)?;
            let r2 = recv.finish((j - 1) * n, n, 1, &mut r);
            prev.clone_from(&u);
            for i in 0..n {
                u[i] = (bit(mine, i, j) & u[i]) ^ (s1[i] == 1) ^ (r2[i] == 1);
            }
            if apart {
                for i in 0..n {
                    let t2 = recv.finish_one(twin_ot(j, i), 1, &mut r) == 1;
                    twin_share[i] = (bit(&second, i, j) & twin_share[i]) ^ (t1[i] == 1) ^ t2;
                }
            }
            follow(j, &prev, &u, &mut twin_share);
            record(j, &u, &mut out);
        }
    } else {
        let mut msg = BitWriter::new();
        let all: Vec<bool> = (0..l)
            .flat_map(|j| (0..n).map(move |i| (j, i)))
            .map(|(j, i)| bit(mine, i, j))
            .collect();
        let recv = CotReceiver::start(s, all, &mut msg)?;
        let mut send = CotSender::take(s, (l - 1 + own) * n)?;
        let mut r = s.round(msg, ((l - 1 + own) * n) as u64)?;
        send.read_corrections(&mut r);
        let mut r = s.round(BitWriter::new(), n as u64)?;
        let mut v: Vec<bool> = recv
            .finish(0, n, 1, &mut r)
            .into_iter()
            .map(|x| x == 1)
            .collect();
        follow(0, &prev, &v, &mut twin_share);
        record(0, &v, &mut out);
        for j in 1..l {
            let apart = j > split;
            let mut msg = BitWriter::new();
            let deltas: Vec<u64> = v.iter().map(|&x| u64::from(x)).collect();
            let s2 = send.respond((j - 1) * n, &deltas, 1, &mut msg);
            let t2: Vec<u64> = if apart {
                (0..n)
                    .map(|i| send.respond_one(twin_ot(j, i), u64::from(twin_share[i]), 1, &mut msg))
                    .collect()
            } else {
                Vec::new()
            };
            let mut r = s.round(msg, (n * (1 + usize::from(apart))) as u64)?;
            let r1 = recv.finish(j * n, n, 1, &mut r);
            prev.clone_from(&v);
            for i in 0..n {
                v[i] = (bit(mine, i, j) & v[i]) ^ (r1[i] == 1) ^ (s2[i] == 1);
            }
            if apart {
                for i in 0..n {
                    let t1 = recv.finish_at(j * n + i, 1, 1, &mut r) == 1;
                    twin_share[i] = (bit(mine, i, j) & twin_share[i]) ^ t1 ^ (t2[i] == 1);
                }
            }
            follow(j, &prev, &v, &mut twin_share);
            record(j, &v, &mut out);
        }
    }
    Ok((out, twin_share))
}

/// XOR shares of the carry out of bit `len − 1` of `a + b` in `block + 1 + 2·⌈log2(len/block)⌉`
/// rounds instead of `len + 1` (carry-select): every `block`-bit digit runs the chain for carry-in
/// 0 and, via the server's input `a + 1` (carry 1 forced when `a` is all ones), carry-in 1, all
/// digits in parallel; a tree then combines (generate, propagate) pairs,
/// `G = G_hi ⊕ P_hi·G_lo`, `P = P_hi·P_lo`, one multiplexer over `Z_2` per level. About twice the
/// bytes of [`carries`]; cost: [`crate::cost::nonlinear::carry_out_blocked`].
///
/// # Errors
/// As [`carries`].
pub fn carry_out_blocked(
    s: &mut Session<'_>,
    mine: &[u64],
    len: u32,
    block: u32,
) -> Result<Vec<bool>, ProtocolError> {
    let n = mine.len();
    if len == 0 {
        return Ok(vec![false; n]);
    }
    let b = block.clamp(1, len);
    let nb = len.div_ceil(b);
    // Zero bits below bit 0 keep every digit `b` bits wide without changing the carry out.
    let pad = nb * b - len;
    let m = mask(b);
    let server = s.is_server();
    let digit = |x: u64, i: u32| (((u128::from(x & mask(len))) << pad) >> (i * b)) as u64 & m;
    let mut inputs: Vec<u64> = mine.iter().map(|&x| digit(x, 0)).collect();
    for i in 1..nb {
        inputs.extend(mine.iter().map(|&x| digit(x, i)));
        inputs.extend(mine.iter().map(|&x| {
            let d = digit(x, i);
            if server { d.wrapping_add(1) & m } else { d }
        }));
    }
    let c = carries(s, &inputs, b, &[b - 1])?.pop().unwrap_or_default();
    // (G, P) per digit, low to high.
    let mut gp: Vec<(Vec<bool>, Vec<bool>)> = vec![(c[..n].to_vec(), vec![false; n])];
    for i in 1..nb as usize {
        let c0 = &c[n * (2 * i - 1)..n * 2 * i];
        let c1 = &c[n * 2 * i..n * (2 * i + 1)];
        let p = (0..n)
            .map(|j| {
                let forced = server && digit(mine[j], i as u32) == m;
                c1[j] ^ forced ^ c0[j]
            })
            .collect();
        gp.push((c0.to_vec(), p));
    }
    while gp.len() > 1 {
        let pairs = gp.len() / 2;
        let mut d = Vec::with_capacity(2 * n * pairs);
        let mut x = Vec::with_capacity(2 * n * pairs);
        for k in 0..pairs {
            let (lo, hi) = (&gp[2 * k], &gp[2 * k + 1]);
            d.extend_from_slice(&hi.1);
            d.extend_from_slice(&hi.1);
            x.extend(lo.0.iter().map(|&g| u64::from(g)));
            x.extend(lo.1.iter().map(|&p| u64::from(p)));
        }
        let prod = mux(s, Ring::new(1), &d, &x)?;
        let mut next = Vec::with_capacity(gp.len().div_ceil(2));
        for k in 0..pairs {
            let hi = &gp[2 * k + 1];
            let base = 2 * n * k;
            let g = (0..n).map(|j| hi.0[j] ^ (prod[base + j] == 1)).collect();
            let p = (0..n).map(|j| prod[base + n + j] == 1).collect();
            next.push((g, p));
        }
        if gp.len() % 2 == 1 {
            next.extend(gp.pop());
        }
        gp = next;
    }
    Ok(gp.pop().map(|(g, _)| g).unwrap_or_default())
}

/// [`drelu`] with the carry-select comparison ([`carry_out_blocked`]): fewer rounds, more bytes.
///
/// # Errors
/// As [`carries`].
pub fn drelu_blocked(
    s: &mut Session<'_>,
    ring: Ring,
    shares: &[u64],
    block: u32,
) -> Result<Vec<bool>, ProtocolError> {
    let l = ring.bits();
    let low: Vec<u64> = shares.iter().map(|&x| x & mask(l - 1)).collect();
    let carry = carry_out_blocked(s, &low, l - 1, block)?;
    let server = s.is_server();
    Ok(shares
        .iter()
        .zip(carry)
        .map(|(&x, c)| ring.msb(x) ^ c ^ server)
        .collect())
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

/// XOR shares of `[x ≥ 0]` and `[x − d ≥ 0]` of shared signed values `x` in `ring` (`x − d`
/// must be a signed value of the ring too), in the rounds of one [`drelu`]: the two MSB chains
/// on the low `l − 1` bits are one [`carry_pair`].
///
/// # Errors
/// As [`carries`].
pub fn drelu_pair(
    s: &mut Session<'_>,
    ring: Ring,
    shares: &[u64],
    d: u64,
) -> Result<(Vec<bool>, Vec<bool>), ProtocolError> {
    let l = ring.bits();
    let server = s.is_server();
    let low: Vec<u64> = shares.iter().map(|&x| x & mask(l - 1)).collect();
    let (c, c2) = carry_pair(s, &low, l - 1, d)?;
    let sign = |x: u64, carry: bool| ring.msb(x) ^ carry ^ server;
    let second = |x: u64| {
        if server {
            ring.sub(x, ring.reduce(d))
        } else {
            x
        }
    };
    Ok(shares
        .iter()
        .zip(c.into_iter().zip(c2))
        .map(|(&x, (c, c2))| (sign(x, c), sign(second(x), c2)))
        .unzip())
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
    fn blocked_carry_out_matches() {
        for (len, block) in [
            (1u32, 4u32),
            (7, 3),
            (12, 4),
            (36, 6),
            (36, 5),
            (45, 7),
            (16, 16),
        ] {
            let n = 200;
            let top = (1i128 << len) - 1;
            let a = values(0, top, n, u64::from(len * block));
            let mut b = values(0, top, n, u64::from(len * block + 1));
            for i in 7..20 {
                b[i] = (top - a[i] + i128::from(i % 2 == 0)).min(top); // sums 2^len − 1 and 2^len
            }
            let (av, bv): (Vec<u64>, Vec<u64>) = a
                .iter()
                .zip(&b)
                .map(|(&x, &y)| (x as u64, y as u64))
                .unzip();
            let (sa, sb) = run(cost::carry_out_blocked(n as u64, len, block), move |s| {
                carry_out_blocked(s, if s.is_server() { &av } else { &bv }, len, block)
            });
            for i in 0..n {
                assert_eq!(sa[i] ^ sb[i], a[i] + b[i] > top, "len {len} block {block}");
            }
        }
    }

    /// Every pair of `len`-bit summands for every distance `d` (0 and `2^len` included), then
    /// random wide summands for distances with 0 to all bits shared.
    #[test]
    fn carry_pair_exhaustive() {
        let mut cases: Vec<(u32, u64, Vec<u64>, Vec<u64>)> = Vec::new();
        for len in 1u32..=5 {
            let all = 1u64 << len;
            let (a, b): (Vec<u64>, Vec<u64>) =
                (0..all).flat_map(|a| (0..all).map(move |b| (a, b))).unzip();
            for d in 0..=all {
                cases.push((len, d, a.clone(), b.clone()));
            }
        }
        for d in [
            1u64,
            6,
            40,
            1 << 16,
            (1 << 16) + 1,
            3 << 15,
            (1 << 17) - 1,
            0xfff0,
        ] {
            let top = (1i128 << 17) - 1;
            let a: Vec<u64> = values(0, top, 300, d).iter().map(|&v| v as u64).collect();
            let b: Vec<u64> = values(0, top, 300, d + 1)
                .iter()
                .map(|&v| v as u64)
                .collect();
            cases.push((17, d, a, b));
        }
        for (len, d, a, b) in cases {
            let n = a.len() as u64;
            let (ma, mb) = (a.clone(), b.clone());
            let (sa, sb) = run(cost::carry_pair(n, len, d), move |s| {
                carry_pair(s, if s.is_server() { &ma } else { &mb }, len, d)
            });
            let m = mask(len);
            let carry = |x: u64, y: u64| (x & m) + (y & m) > m;
            for i in 0..a.len() {
                let twin = a[i].wrapping_sub(d);
                assert_eq!(
                    sa.0[i] ^ sb.0[i],
                    carry(a[i], b[i]),
                    "len {len} d {d} i {i}"
                );
                assert_eq!(
                    sa.1[i] ^ sb.1[i],
                    carry(twin, b[i]),
                    "len {len} d {d} i {i}"
                );
            }
        }
    }

    #[test]
    fn drelu_pair_exact() {
        for (l, d) in [
            (2u32, 1u64),
            (6, 16),
            (6, 5),
            (9, 12),
            (9, 255),
            (37, 1 << 20),
        ] {
            let ring = Ring::new(l);
            let half = 1i128 << (l - 1);
            // x and x − d both signed values of the ring.
            let v = values(-half + d as i128, half - 1, 400, u64::from(l));
            let (xs, xc) = share(ring, &v, 5);
            let (a, b) = run(cost::msb_pair(400, l, d), move |s| {
                drelu_pair(s, ring, if s.is_server() { &xs } else { &xc }, d)
            });
            for (i, &x) in v.iter().enumerate() {
                assert_eq!(a.0[i] ^ b.0[i], x >= 0, "l {l} x {x}");
                assert_eq!(a.1[i] ^ b.1[i], x >= d as i128, "l {l} d {d} x {x}");
            }
        }
    }

    #[test]
    fn pair_costs() {
        let n = 8;
        // No twin bits of its own: one chain; all bits its own: 3 bits and 1 ROT per bit
        // below a second chain.
        assert_eq!(cost::carry_pair(n, 8, 128), cost::carry_chain(n, 8));
        assert_eq!(cost::carry_pair(n, 8, 256), cost::carry_chain(n, 8));
        let (one, pair, two) = (
            cost::carry_chain(n, 8),
            cost::carry_pair(n, 8, 1),
            cost::carry_chain(2 * n, 8),
        );
        assert_eq!(pair.rounds, one.rounds);
        assert_eq!(pair.server_rots + pair.client_rots, 15 * n + 7 * n);
        assert_eq!(two.server_rots + two.client_rots, 2 * 15 * n);
        assert_eq!(pair.total_bytes(), (4 * 8 - 2 + 3 * 7) * n / 8);
        assert_eq!(two.total_bytes(), 2 * (4 * 8 - 2) * n / 8);
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
