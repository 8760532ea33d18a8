//! Carries of `a + b` for the server's `a` and the client's `b`: the millionaire comparison, the
//! MSB/DReLU of shared values and the truncation carries all reduce to it. Two depths
//! ([`CarryDepth`], chosen per layer by the compiler) compute the same carries:
//!
//! - **Ripple** chain `c_j = a_j b_j ⊕ (a_j ⊕ b_j)·c_{j−1}` with `c_{j−1} = u ⊕ v` shared:
//!   `c_j = a_j u ⊕ b_j v ⊕ b_j (a_j ⊕ u) ⊕ a_j v`. The two cross terms are one correlated OT in
//!   each direction with choices `b_j` (client) and `a_j` (server) known up front, so all choice
//!   corrections go in the first round, and each bit then costs one round with one bit each way:
//!   `len + 1` rounds, 4 bits and 2 ROTs per bit. Cost: [`crate::cost::nonlinear::carry_chain`].
//! - **Tree**: the generate bits `g_j = a_j b_j` in one round (one ROT per bit, server as sender,
//!   [`OneRoundSender`]: its message does not wait for the client's correction), the propagate bits
//!   `p_j = a_j ⊕ b_j` locally, then the parallel-prefix tree of [`CarryTree`], one round per
//!   level: a node `(G_hi ⊕ P_hi·G_lo, P_hi·P_lo)` is one or two ANDs of shared bits with the
//!   common factor `x = P_hi`, `x·y = x_S y_S ⊕ x_C y_C ⊕ x_S y_C ⊕ x_C y_S`, whose cross terms
//!   are one one-round correlated OT in each direction (choice `x`, correlation the one or two
//!   `y` shares). `1 + ⌈log2 len⌉` rounds for one carry; about 8 bits and 3 ROTs per bit. Cost:
//!   [`crate::cost::nonlinear::carry_tree`].

use super::cot::{CotReceiver, CotSender, OneRoundReceiver, OneRoundSender, mask};
use super::{BitWriter, ProtocolError, Session};
use crate::ot::Pad;
use crate::params::carry::{CarryTree, NodeKind};
use crate::params::nonlinear::shared_bits;
use crate::plan::CarryDepth;
use crate::ring::Ring;

/// XOR shares of the carries out of bit `positions` (ascending, each below `len`) of `a + b`,
/// where this party's `mine` holds `a` (server) or `b` (client); bits of `mine` at or above `len`
/// are ignored. Returns one share vector per position. Cost:
/// [`crate::cost::nonlinear::carries`].
///
/// # Errors
/// [`ProtocolError`] if the OT pads run out or the channel fails.
pub fn carries(
    s: &mut Session<'_>,
    mine: &[u64],
    len: u32,
    positions: &[u32],
    depth: CarryDepth,
) -> Result<Vec<Vec<bool>>, ProtocolError> {
    Ok(match depth {
        CarryDepth::Ripple => chain(s, mine, len, positions, None)?.0,
        CarryDepth::Tree => tree(s, mine, len, positions, None)?.0,
    })
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
/// With `d` a multiple of `2^(len−1)` the second carry is free. The tree shares its groups
/// below bit `z` in the same way ([`CarryTree`]). Cost: [`crate::cost::nonlinear::carry_pair`].
///
/// # Errors
/// As [`carries`].
pub fn carry_pair(
    s: &mut Session<'_>,
    mine: &[u64],
    len: u32,
    d: u64,
    depth: CarryDepth,
) -> Result<(Vec<bool>, Vec<bool>), ProtocolError> {
    if len == 0 {
        return Ok((vec![false; mine.len()], vec![false; mine.len()]));
    }
    let (mut at, twin) = match depth {
        CarryDepth::Ripple => chain(s, mine, len, &[len - 1], Some(d))?,
        CarryDepth::Tree => tree(s, mine, len, &[len - 1], Some(d))?,
    };
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

/// The log-depth tree behind [`carries`] and [`carry_pair`] ([`CarryTree`]): the carries at
/// `positions` of `a + b` and, with `twin = Some(d)`, the carry out of bit `len − 1` of
/// `(a − d) + b`.
///
/// Rounds 1 and 2: every digit's [`digit_ots`]. Round `2 + t`: per node of level `t` with ANDs
/// and per element, each party writes its correction (choice: its share of `P_hi`) and then its
/// message (correlation: its shares of `G_lo`, and of `P_lo` when the node needs `P`), one ROT
/// per direction ([`OneRoundSender`], one pad bit per AND).
fn tree(
    s: &mut Session<'_>,
    mine: &[u64],
    len: u32,
    positions: &[u32],
    twin: Option<u64>,
) -> Result<(Vec<Vec<bool>>, Vec<bool>), ProtocolError> {
    let n = mine.len();
    let t = CarryTree::new(positions, twin.map(|d| shared_bits(len, d)));
    if t.width == 0 {
        return Ok((Vec::new(), vec![false; n]));
    }
    let server = s.is_server();
    let second: Vec<u64> = match twin {
        Some(d) if server => mine.iter().map(|&a| a.wrapping_sub(d)).collect(),
        _ => mine.to_vec(),
    };
    let bit = |x: &[u64], i: usize, j: u32| (x[i] >> j) & 1 == 1;
    // (G, P) shares per node; a node's vectors are dropped once its last parent is computed.
    let mut g: Vec<Vec<bool>> = vec![Vec::new(); t.nodes.len()];
    let mut p: Vec<Vec<bool>> = vec![Vec::new(); t.nodes.len()];
    let entries = digit_ots(s, &t, mine, &second)?;
    for (d, shares) in t.digits.iter().zip(entries) {
        let np = t.nodes[d.leaf].needs_p();
        let field = |k: u32| {
            shares
                .iter()
                .map(|&e| (e >> k) & 1 == 1)
                .collect::<Vec<bool>>()
        };
        g[d.leaf] = field(0);
        if np {
            p[d.leaf] = field(1);
        }
        if let Some(tw) = d.twin {
            let base = t.nodes[d.leaf].bits();
            g[tw] = field(base);
            if np {
                p[tw] = field(base + 1);
            }
        }
    }
    // The twin's single-bit digit `[z, z]`: `g'_z = g_z ⊕ b_z`, `p'_z = ¬p_z`.
    for (k, node) in t.nodes.iter().enumerate() {
        if node.kind == NodeKind::TwinLeaf && g[k].is_empty() {
            let main = t
                .digits
                .iter()
                .find(|d| t.nodes[d.leaf].start == node.start)
                .map_or(k, |d| d.leaf);
            g[k] = (0..n)
                .map(|i| g[main][i] ^ (!server && bit(mine, i, node.start)))
                .collect();
            if node.needs_p() {
                p[k] = p[main].iter().map(|&x| x ^ server).collect();
            }
        }
    }
    let client_bit = |i: usize, j: u32| !server && bit(mine, i, j);
    let mut last_use = vec![0u32; t.nodes.len()];
    for node in &t.nodes {
        match node.kind {
            NodeKind::Combine { hi, lo } => {
                last_use[hi] = last_use[hi].max(node.level);
                last_use[lo] = last_use[lo].max(node.level);
            }
            NodeKind::TwinLocal { main, lo } => {
                last_use[main] = last_use[main].max(node.level);
                last_use[lo] = last_use[lo].max(node.level);
            }
            _ => {}
        }
    }
    for &k in t.outputs.iter().chain(&t.twin_output) {
        last_use[k] = u32::MAX;
    }
    for level in 1..=t.depth {
        let nodes: Vec<(usize, usize, usize, u32)> = t
            .combines_at(level)
            .filter_map(|(k, node)| match node.kind {
                NodeKind::Combine { hi, lo } => Some((k, hi, lo, node.ands())),
                _ => None,
            })
            .collect();
        let count = nodes.len() * n;
        let send = OneRoundSender::take(s, count)?;
        let recv = OneRoundReceiver::take(s, count)?;
        // The `y` factors of a node: `G_lo`, and `P_lo` when the node needs `P`.
        let y = |lo: usize, ands: u32, i: usize| [g[lo][i], ands == 2 && p[lo][i]];
        let mut msg = BitWriter::new();
        let mut in_bits = 0u64;
        for (slot, &(_, hi, lo, ands)) in nodes.iter().enumerate() {
            for (i, &x) in p[hi].iter().enumerate() {
                let o = slot * n + i;
                recv.correct(o, x, &mut msg);
                for (f, &yf) in y(lo, ands, i)[..ands as usize].iter().enumerate() {
                    send.send_at(o, f as u32, u64::from(yf), 1, &mut msg);
                }
            }
            in_bits += u64::from(1 + ands) * n as u64;
        }
        let mut r = s.round(msg, in_bits)?;
        let mut computed = Vec::with_capacity(nodes.len());
        for (slot, &(k, hi, lo, ands)) in nodes.iter().enumerate() {
            let mut gk = Vec::with_capacity(n);
            let mut pk = Vec::with_capacity(if ands == 2 { n } else { 0 });
            for i in 0..n {
                let o = slot * n + i;
                let e = r.read_bit();
                let x = p[hi][i];
                let ys = y(lo, ands, i);
                // `x·y_f`: own term, then the cross terms of both directions.
                let prod = |f: usize, d: u64| {
                    let (yf, skip) = (ys[f], f as u32);
                    (x && yf)
                        ^ (send.share_at(o, skip, e, u64::from(yf), 1) == 1)
                        ^ (recv.share_at(o, skip, x, d, 1) == 1)
                };
                let mut d = [0u64; 2];
                for df in &mut d[..ands as usize] {
                    *df = r.read(1);
                }
                gk.push(g[hi][i] ^ prod(0, d[0]));
                if ands == 2 {
                    pk.push(prod(1, d[1]));
                }
            }
            computed.push((k, gk, pk));
        }
        for (k, gk, pk) in computed {
            (g[k], p[k]) = (gk, pk);
        }
        for (k, node) in t.nodes.iter().enumerate().filter(|(_, n)| n.level == level) {
            if let NodeKind::TwinLocal { main, lo } = node.kind {
                g[k] = (0..n)
                    .map(|i| g[main][i] ^ g[lo][i] ^ client_bit(i, node.end))
                    .collect();
                if node.needs_p() {
                    p[k] = (0..n).map(|i| p[lo][i] ^ p[main][i]).collect();
                }
            }
        }
        for k in (0..t.nodes.len()).filter(|&k| last_use[k] == level) {
            (g[k], p[k]) = (Vec::new(), Vec::new());
        }
    }
    let out = t.outputs.iter().map(|&k| g[k].clone()).collect();
    let twin_share = t.twin_output.map(|k| g[k].clone()).unwrap_or_default();
    Ok((out, twin_share))
}

/// Rounds 1 and 2 of [`tree`]: for every digit of `t` and element, one 1-out-of-`2^m` OT
/// (`m` the digit's bits) of the table of the digit's `(G, P)` (and the twin's, from the
/// server's `second` summand) over the client's digit `x`, from `m` ROTs with the server as
/// sender (Brassard–Crépeau–Robert: `m` 1-out-of-2 OTs of keys). Round 1: the client corrects
/// its random choices `c` to its digit `b` (`e = b ⊕ c`). Round 2: the server sends entry `x`
/// masked by `K_(x ⊕ e) ⊕ r`, where `K_y` is the XOR over the digit's bits `j` of slot `y
/// without bit j` of the pad `k_(j, y_j)`, and `r` (from pad bits the keys do not use, of pads
/// the client holds only one of) is the server's share; the client unmasks entry `b` with
/// `K_c`, which it knows. For `y ≠ c` some bit `j` has `y_j ≠ c_j`, and the slot of
/// `k_(j, 1 − c_j)` that `K_y` uses belongs to `y` alone, so every other entry stays hidden.
/// Returns per digit the shares of each element's entry (bit 0 `G`, then `P` when needed, then
/// the twin's).
fn digit_ots(
    s: &mut Session<'_>,
    t: &CarryTree,
    mine: &[u64],
    second: &[u64],
) -> Result<Vec<Vec<u64>>, ProtocolError> {
    let n = mine.len();
    let total = t.width as usize * n;
    // (start, bits, entry bits, needs P, has a twin) per digit.
    let digits: Vec<(u32, u32, u32, bool, bool)> = t
        .digits
        .iter()
        .map(|d| {
            let node = t.nodes[d.leaf];
            let twin = d.twin.is_some();
            (
                node.start,
                node.width(),
                t.entry_bits(d),
                node.needs_p(),
                twin,
            )
        })
        .collect();
    let value = |x: u64, start: u32, m: u32| (x >> start) & mask(m);
    // Slot `slot` (of `w` bits) of a pad.
    let slot =
        |pad: Pad, slot: u64, w: u32| (u128::from(pad) >> (slot * u64::from(w))) as u64 & mask(w);
    // `y` without bit `j`.
    let without = |y: u64, j: u32| ((y >> (j + 1)) << j) | (y & mask(j));
    // Pad bits the keys never use (8 slots of at most 4 bits): the server's share.
    const SHARE_AT: u32 = 96;
    if s.is_server() {
        let pads = s.pads().take_send(total)?;
        let mut r = s.round(BitWriter::new(), total as u64)?;
        let e: Vec<bool> = (0..total).map(|_| r.read_bit()).collect();
        let mut msg = BitWriter::new();
        let mut out = Vec::with_capacity(digits.len());
        for &(start, m, w, np, twin) in &digits {
            let mut shares = Vec::with_capacity(n);
            for i in 0..n {
                let base = start as usize * n + i * m as usize;
                let ot = &pads[base..base + m as usize];
                let e_digit = (0..m).fold(0u64, |v, j| v | u64::from(e[base + j as usize]) << j);
                let share = (u128::from(ot[0][0] ^ ot[0][1]) >> SHARE_AT) as u64 & mask(w);
                let (a, a2) = (value(mine[i], start, m), value(second[i], start, m));
                for x in 0..1u64 << m {
                    let y = x ^ e_digit;
                    let key = (0..m).fold(0u64, |k, j| {
                        k ^ slot(ot[j as usize][((y >> j) & 1) as usize], without(y, j), w)
                    });
                    let mut entry = digit_entry(a, x, m, np);
                    if twin {
                        entry |= digit_entry(a2, x, m, np) << (w / 2);
                    }
                    msg.push(entry ^ share ^ key, w);
                }
                shares.push(share);
            }
            out.push(shares);
        }
        s.round(msg, 0)?;
        Ok(out)
    } else {
        let (random, pads) = s.pads().take_recv(total)?;
        let mut msg = BitWriter::new();
        for &(start, m, ..) in &digits {
            for (i, &b) in mine.iter().enumerate() {
                let base = start as usize * n + i * m as usize;
                for j in 0..m {
                    msg.push_bit(bit_of(b, start + j) ^ random[base + j as usize]);
                }
            }
        }
        s.round(msg, 0)?;
        let table_bits: u64 = digits
            .iter()
            .map(|&(_, m, w, ..)| (u64::from(w) << m) * n as u64)
            .sum();
        let mut r = s.round(BitWriter::new(), table_bits)?;
        let mut out = Vec::with_capacity(digits.len());
        for &(start, m, w, ..) in &digits {
            let mut shares = Vec::with_capacity(n);
            for (i, &mi) in mine.iter().enumerate() {
                let base = start as usize * n + i * m as usize;
                let c = (0..m).fold(0u64, |v, j| v | u64::from(random[base + j as usize]) << j);
                let key = (0..m).fold(0u64, |k, j| {
                    k ^ slot(pads[base + j as usize], without(c, j), w)
                });
                let b = value(mi, start, m);
                let mut entry = 0;
                for x in 0..1u64 << m {
                    let v = r.read(w);
                    if x == b {
                        entry = v;
                    }
                }
                shares.push(entry ^ key);
            }
            out.push(shares);
        }
        Ok(out)
    }
}

/// Bit `j` of `x`.
fn bit_of(x: u64, j: u32) -> bool {
    (x >> j) & 1 == 1
}

/// The `(G, P)` entry of an `m`-bit digit `a + x`: bit 0 the carry out, bit 1 (with `np`)
/// whether every bit propagates (`a + x = 2^m − 1`).
fn digit_entry(a: u64, x: u64, m: u32, np: bool) -> u64 {
    let sum = a + x;
    u64::from(sum >> m != 0)
        | if np {
            u64::from(sum == mask(m)) << 1
        } else {
            0
        }
}

/// Millionaire comparison: XOR shares of `[x < y]` for the server's `x` and the client's `y`,
/// both `bits`-bit unsigned (`mine` is `x` on the server, `y` on the client).
///
/// # Errors
/// As [`carries`].
pub fn less_than(
    s: &mut Session<'_>,
    mine: &[u64],
    bits: u32,
    depth: CarryDepth,
) -> Result<Vec<bool>, ProtocolError> {
    if bits == 0 {
        return Ok(vec![false; mine.len()]);
    }
    let m = mask(bits);
    let input: Vec<u64> = if s.is_server() {
        mine.iter().map(|&x| !x & m).collect()
    } else {
        mine.to_vec()
    };
    let mut c = carries(s, &input, bits, &[bits - 1], depth)?;
    Ok(c.pop().unwrap_or_default())
}

/// XOR shares of the most significant bit of shared values in `ring` (`ring.bits() ≥ 2`).
///
/// # Errors
/// As [`carries`].
pub fn msb(
    s: &mut Session<'_>,
    ring: Ring,
    shares: &[u64],
    depth: CarryDepth,
) -> Result<Vec<bool>, ProtocolError> {
    let l = ring.bits();
    let low: Vec<u64> = shares.iter().map(|&x| x & mask(l - 1)).collect();
    let carry = carries(s, &low, l - 1, &[l - 2], depth)?
        .pop()
        .unwrap_or_default();
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
pub fn drelu(
    s: &mut Session<'_>,
    ring: Ring,
    shares: &[u64],
    depth: CarryDepth,
) -> Result<Vec<bool>, ProtocolError> {
    let server = s.is_server();
    Ok(msb(s, ring, shares, depth)?
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
    depth: CarryDepth,
) -> Result<(Vec<bool>, Vec<bool>), ProtocolError> {
    let l = ring.bits();
    let server = s.is_server();
    let low: Vec<u64> = shares.iter().map(|&x| x & mask(l - 1)).collect();
    let (c, c2) = carry_pair(s, &low, l - 1, d, depth)?;
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

    const DEPTHS: [CarryDepth; 2] = [CarryDepth::Ripple, CarryDepth::Tree];

    #[test]
    fn millionaire_exact_all_widths() {
        for bits in [1u32, 2, 3, 8, 17, 45] {
            for depth in DEPTHS {
                let n = 300;
                let top = (1i128 << bits) - 1;
                let x = values(0, top, n, u64::from(bits));
                let mut y = values(0, top, n, 1000 + u64::from(bits));
                y[3] = x[3]; // a tie
                let xs: Vec<u64> = x.iter().map(|&v| v as u64).collect();
                let ys: Vec<u64> = y.iter().map(|&v| v as u64).collect();
                let (a, b) = run(cost::millionaire(n as u64, bits, depth), move |s| {
                    let mine = if s.is_server() { &xs } else { &ys };
                    less_than(s, mine, bits, depth)
                });
                for i in 0..n {
                    assert_eq!(
                        a[i] ^ b[i],
                        x[i] < y[i],
                        "bits {bits} {depth} x {} y {}",
                        x[i],
                        y[i]
                    );
                }
            }
        }
    }

    #[test]
    fn drelu_and_msb_exact() {
        for l in [2u32, 3, 5, 16, 37, 45] {
            for depth in DEPTHS {
                let ring = Ring::new(l);
                let half = 1i128 << (l - 1);
                let v = values(-half, half - 1, 500, u64::from(l));
                let (xs, xc) = share(ring, &v, 5);
                let (a, b) = run(cost::msb(500, l, depth), move |s| {
                    drelu(s, ring, if s.is_server() { &xs } else { &xc }, depth)
                });
                for i in 0..v.len() {
                    assert_eq!(a[i] ^ b[i], v[i] >= 0, "l {l} {depth} v {}", v[i]);
                }
            }
        }
    }

    /// Every pair of `len`-bit summands (`len` in `1..=6`), at both depths, for the carries out
    /// of several position sets.
    #[test]
    fn carries_exhaustive() {
        for len in 1u32..=6 {
            let all = 1u64 << len;
            let (a, b): (Vec<u64>, Vec<u64>) =
                (0..all).flat_map(|a| (0..all).map(move |b| (a, b))).unzip();
            let mut sets = vec![
                vec![len - 1],
                (0..len).collect(),
                vec![len / 2, len - 1],
                vec![0, len - 1],
            ];
            for set in &mut sets {
                set.dedup();
            }
            sets.sort();
            sets.dedup();
            for positions in sets {
                for depth in DEPTHS {
                    let n = a.len() as u64;
                    let (ma, mb, pos) = (a.clone(), b.clone(), positions.clone());
                    let (sa, sb) = run(cost::carries(n, len, &positions, depth), move |s| {
                        let mine = if s.is_server() { &ma } else { &mb };
                        carries(s, mine, len, &pos, depth)
                    });
                    for (k, &j) in positions.iter().enumerate() {
                        let m = mask(j + 1);
                        for i in 0..a.len() {
                            let carry = (a[i] & m) + (b[i] & m) > m;
                            assert_eq!(sa[k][i] ^ sb[k][i], carry, "{positions:?} {depth} i {i}");
                        }
                    }
                }
            }
        }
    }

    /// Every pair of `len`-bit summands for every distance `d` (0 and `2^len` included), then
    /// random wide summands for distances with 0 to all bits shared; both depths.
    #[test]
    fn carry_pair_exhaustive() {
        let mut cases: Vec<(u32, u64, Vec<u64>, Vec<u64>)> = Vec::new();
        for len in 1u32..=6 {
            let all = 1u64 << len;
            let (a, b): (Vec<u64>, Vec<u64>) =
                (0..all).flat_map(|a| (0..all).map(move |b| (a, b))).unzip();
            for d in (0..=all).filter(|&d| len < 6 || d % 7 < 2 || d.is_power_of_two()) {
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
            for depth in DEPTHS {
                let n = a.len() as u64;
                let (ma, mb) = (a.clone(), b.clone());
                let (sa, sb) = run(cost::carry_pair(n, len, d, depth), move |s| {
                    carry_pair(s, if s.is_server() { &ma } else { &mb }, len, d, depth)
                });
                let m = mask(len);
                let carry = |x: u64, y: u64| (x & m) + (y & m) > m;
                for i in 0..a.len() {
                    let twin = a[i].wrapping_sub(d);
                    let at = format!("len {len} d {d} {depth} i {i}");
                    assert_eq!(sa.0[i] ^ sb.0[i], carry(a[i], b[i]), "{at}");
                    assert_eq!(sa.1[i] ^ sb.1[i], carry(twin, b[i]), "{at}");
                }
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
            for depth in DEPTHS {
                let ring = Ring::new(l);
                let half = 1i128 << (l - 1);
                // x and x − d both signed values of the ring.
                let v = values(-half + d as i128, half - 1, 400, u64::from(l));
                let (xs, xc) = share(ring, &v, 5);
                let (a, b) = run(cost::msb_pair(400, l, d, depth), move |s| {
                    drelu_pair(s, ring, if s.is_server() { &xs } else { &xc }, d, depth)
                });
                for (i, &x) in v.iter().enumerate() {
                    assert_eq!(a.0[i] ^ b.0[i], x >= 0, "l {l} {depth} x {x}");
                    assert_eq!(a.1[i] ^ b.1[i], x >= d as i128, "l {l} {depth} d {d} x {x}");
                }
            }
        }
    }

    #[test]
    fn pair_costs() {
        use CarryDepth::Ripple;
        let n = 8;
        // No twin bits of its own: one chain; all bits its own: 3 bits and 1 ROT per bit
        // below a second chain.
        assert_eq!(cost::carry_pair(n, 8, 128, Ripple), cost::carry_chain(n, 8));
        assert_eq!(cost::carry_pair(n, 8, 256, Ripple), cost::carry_chain(n, 8));
        let (one, pair, two) = (
            cost::carry_chain(n, 8),
            cost::carry_pair(n, 8, 1, Ripple),
            cost::carry_chain(2 * n, 8),
        );
        assert_eq!(pair.rounds, one.rounds);
        assert_eq!(pair.server_rots + pair.client_rots, 15 * n + 7 * n);
        assert_eq!(two.server_rots + two.client_rots, 2 * 15 * n);
        assert_eq!(pair.total_bytes(), (4 * 8 - 2 + 3 * 7) * n / 8);
        assert_eq!(two.total_bytes(), 2 * (4 * 8 - 2) * n / 8);
    }

    #[test]
    fn tree_costs() {
        use CarryDepth::{Ripple, Tree};
        let n = 8;
        for w in [1u32, 2, 5, 8, 13, 28, 36] {
            let digits = w.div_ceil(4);
            let log = digits.next_power_of_two().trailing_zeros();
            let tree = cost::carries(n, w, &[w - 1], Tree);
            let chain = cost::carries(n, w, &[w - 1], Ripple);
            assert_eq!(tree.rounds, u64::from(2 + log), "w {w}");
            assert_eq!(
                (tree.server_rots, tree.client_rots),
                (u64::from(w + digits - 1) * n, u64::from(digits - 1) * n)
            );
            assert_eq!(chain.rounds, u64::from(w + 1));
            assert!(tree.rounds <= chain.rounds && tree.total_bytes() >= chain.total_bytes());
            if w % 4 == 0 {
                // Per element: w corrections, the tables (16 entries of 1 bit for the bottom
                // digit, of 2 above it), 6 bits per node with P and 4 per node without.
                let bits = w + 16 + 32 * (digits - 1) + 6 * (digits - 1) - 2 * log;
                assert_eq!(tree.total_bytes(), u64::from(bits) * n / 8, "w {w}");
                assert!(
                    tree.server_rots + tree.client_rots < chain.server_rots + chain.client_rots
                );
            }
        }
        assert_eq!(cost::carries(n, 28, &[27], Tree).total_bytes(), 266);
        // A twin whose top bit is the only one not shared costs nothing more. With no bit shared
        // (5 bits: digits [0, 3] and [4, 4] under one node), both tables carry the twin's
        // entries (16 and 2 more bits) and the twin's node its own AND, in the same rounds.
        assert_eq!(
            cost::carry_pair(n, 5, 16, Tree),
            cost::carries(n, 5, &[4], Tree)
        );
        let (pair, one) = (
            cost::carry_pair(n, 5, 1, Tree),
            cost::carries(n, 5, &[4], Tree),
        );
        assert_eq!(pair.rounds, one.rounds);
        assert_eq!(
            pair.server_bytes - one.server_bytes,
            (16 + 2 * 2 + 2) * n / 8
        );
        assert_eq!(pair.client_bytes - one.client_bytes, 2 * n / 8);
        assert_eq!(pair.client_rots - one.client_rots, n);
    }

    #[test]
    fn carries_at_several_positions() {
        let (a, b) = (0b1011_0110u64, 0b0110_1011u64);
        for depth in DEPTHS {
            let (sa, sb) = run(cost::carries(1, 8, &[2, 5, 7], depth), move |s| {
                carries(
                    s,
                    &[if s.is_server() { a } else { b }],
                    8,
                    &[2, 5, 7],
                    depth,
                )
            });
            let carry = |j: u32| ((a & mask(j + 1)) + (b & mask(j + 1))) >> (j + 1) == 1;
            for (k, &j) in [2u32, 5, 7].iter().enumerate() {
                assert_eq!(sa[k][0] ^ sb[k][0], carry(j), "position {j} {depth}");
            }
        }
    }
}
