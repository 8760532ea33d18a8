//! The ILP (`good_lp` with the pure-Rust `microlp` solver, or HiGHS with the `highs` feature):
//! one binary `x[l, k]` per layer and candidate with `Σ_k x[l, k] = 1`, one binary `u[c]` per
//! HE context and one binary `z[c, e]` per context and Galois exponent, with
//! `Σ_{k in c} x[l, k] ≤ u[c]` (a used context costs one public key) and
//! `Σ_{k in c using e} x[l, k] ≤ z[c, e]` (an exponent some layer's response packing uses costs
//! one Galois key, whichever layers share it) for every layer (the sums over a layer's
//! candidates are the tighter form of one constraint per candidate, since a layer picks one).
//! Within a context only a layer's cheapest candidate per set of exponents can be optimal
//! (everything else is equal), and only if no candidate of fewer exponents is as cheap, so only
//! those get a variable. Objective: the candidates' values plus the keys'.

use super::{Problem, SolveStats};
use crate::error::{Error, Result};
#[cfg(feature = "highs")]
use good_lp::highs as solver;
#[cfg(not(feature = "highs"))]
use good_lp::microlp as solver;
use good_lp::{
    Expression, ProblemVariables, Solution, SolverModel, Variable, constraint, variable,
};
use std::time::Instant;

/// A candidate that gets a variable: its context, its index among the layer's candidates and
/// its Galois exponents.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Pick {
    ctx: usize,
    k: usize,
    exponents: Vec<usize>,
}

/// Per layer, the candidates worth a variable: within each context, a candidate is left out
/// when another of a subset of its exponents (no more keys) is at most as dear (the first on
/// ties), so each context keeps the cheapest candidate per set of exponents at most.
fn options(p: &Problem) -> Vec<Vec<Pick>> {
    p.layers
        .iter()
        .map(|l| {
            let mut order: Vec<(f64, usize)> = l
                .candidates
                .iter()
                .enumerate()
                .map(|(k, c)| (p.candidate_value(c), k))
                .collect();
            order.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let mut kept: Vec<Pick> = Vec::new();
            for (_, k) in order {
                let c = &l.candidates[k];
                let o = Pick {
                    ctx: p.context_of(c),
                    k,
                    exponents: c.galois_exponents(),
                };
                let dominated = kept
                    .iter()
                    .any(|d| d.ctx == o.ctx && d.exponents.iter().all(|e| o.exponents.contains(e)));
                if !dominated {
                    kept.push(o);
                }
            }
            kept
        })
        .collect()
}

/// Solves the problem: one candidate index per layer, and the solver statistics.
///
/// # Errors
/// [`Error::Optimize`] when the solver fails (a layer without candidates makes the problem
/// infeasible).
pub fn solve(p: &Problem) -> Result<(Vec<usize>, SolveStats)> {
    let options = options(p);
    let mut vars = ProblemVariables::new();
    let x: Vec<Vec<Variable>> = options
        .iter()
        .map(|o| o.iter().map(|_| vars.add(variable().binary())).collect())
        .collect();
    let u: Vec<Variable> = p
        .contexts
        .iter()
        .map(|_| vars.add(variable().binary()))
        .collect();
    let mut keys: Vec<(usize, usize)> = options
        .iter()
        .flatten()
        .flat_map(|o| o.exponents.iter().map(|&e| (o.ctx, e)))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let z: Vec<Variable> = keys.iter().map(|_| vars.add(variable().binary())).collect();
    let mut objective = Expression::from(0.0);
    for ((o, xs), l) in options.iter().zip(&x).zip(&p.layers) {
        for (pick, &v) in o.iter().zip(xs) {
            objective += p.candidate_value(&l.candidates[pick.k]) * v;
        }
    }
    for (c, &v) in u.iter().enumerate() {
        objective += p.context_value(c) * v;
    }
    for (&(c, _), &v) in keys.iter().zip(&z) {
        objective += p.galois_value(c) * v;
    }
    let variables = u.len() + z.len() + x.iter().map(Vec::len).sum::<usize>();
    let mut model = vars.minimise(objective).using(solver);
    let mut constraints = 0;
    for (o, xs) in options.iter().zip(&x) {
        let one: Expression = xs.iter().copied().sum();
        model = model.with(constraint!(one == 1.0));
        constraints += 1;
        let sum_where = |used: &dyn Fn(&Pick) -> bool| -> Expression {
            o.iter()
                .zip(xs)
                .filter(|(pick, _)| used(pick))
                .map(|(_, &v)| v)
                .sum()
        };
        for (ctx, &uc) in u.iter().enumerate() {
            if o.iter().any(|pick| pick.ctx == ctx) {
                let used = sum_where(&|pick| pick.ctx == ctx);
                model = model.with(constraint!(used <= uc));
                constraints += 1;
            }
        }
        for (&(ctx, e), &zk) in keys.iter().zip(&z) {
            if o.iter()
                .any(|pick| pick.ctx == ctx && pick.exponents.contains(&e))
            {
                let used = sum_where(&|pick| pick.ctx == ctx && pick.exponents.contains(&e));
                model = model.with(constraint!(used <= zk));
                constraints += 1;
            }
        }
    }
    let start = Instant::now();
    let solution = model.solve().map_err(|e| Error::Optimize {
        reason: format!("ILP solver: {e}"),
    })?;
    let time = start.elapsed();
    let choice = options
        .iter()
        .zip(&x)
        .map(|(o, xs)| {
            let best = xs
                .iter()
                .enumerate()
                .max_by(|a, b| solution.value(*a.1).total_cmp(&solution.value(*b.1)))
                .map(|(i, _)| i)
                .ok_or(Error::Optimize {
                    reason: "a layer has no candidate".into(),
                })?;
            Ok(o[best].k)
        })
        .collect::<Result<Vec<usize>>>()?;
    Ok((
        choice,
        SolveStats {
            variables,
            constraints,
            time,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optimize::candidates::{Candidate, ContextKeys, LayerCandidates};
    use crate::optimize::{Objective, exhaustive};
    use heq_runtime::cost::linear::LinearCost;
    use heq_runtime::params::he::galois_key_bytes;
    use heq_runtime::plan::{Encoding, HeParams, LayerId, LinearProtocol, Packing, Tile};

    const DEGREE: usize = 4096;

    fn he() -> HeParams {
        HeParams {
            degree: DEGREE,
            moduli_bits: vec![60, 49],
            plain_bits: 16,
        }
    }

    /// A candidate of `bytes` HE bytes on channel tile `c`, packing `members` responses (1:
    /// Cheetah's encoding).
    fn candidate(c: usize, members: usize, bytes: usize) -> Candidate {
        Candidate {
            protocol: LinearProtocol {
                he: he(),
                tile: Tile {
                    c,
                    h: 1,
                    w: 1,
                    m: 1,
                },
                packing: Packing::none(),
                encoding: if members == 1 {
                    Encoding::Cheetah
                } else {
                    Encoding::Interleaved { members }
                },
                in_ring_bits: 16,
                out_ring_bits: 16,
            },
            cost: LinearCost {
                bytes_up: bytes,
                ..LinearCost::default()
            },
            products: 0,
            compute_ms: 0.0,
            unpack_bytes: 0,
            unpack_rounds: 0,
        }
    }

    fn problem(layers: Vec<Vec<Candidate>>) -> Problem {
        Problem {
            layers: layers
                .into_iter()
                .enumerate()
                .map(|(i, candidates)| LayerCandidates {
                    layer: LayerId(i as u32),
                    candidates,
                })
                .collect(),
            contexts: vec![ContextKeys::of(&he()).unwrap()],
            fixed_bytes: 0,
            rounds: 0,
            fixed_ms: 0.0,
            objective: Objective::Comm,
        }
    }

    /// The ILP's choice, checked against brute force.
    fn chosen(p: &Problem) -> Vec<usize> {
        let (choice, _) = solve(p).unwrap();
        let brute = exhaustive::solve(p, 1 << 16).unwrap();
        assert_eq!(p.value(&choice), p.value(&brute));
        choice
    }

    /// Packing four responses on a 4-channel tile needs two Galois keys (exponents `N/2 + 1`,
    /// `N + 1`); each layer saves four thirds of a key.
    #[test]
    fn packing_pays_when_layers_share_its_keys() {
        let key = galois_key_bytes(DEGREE, 60);
        let saved = key + key / 3;
        let layer = || vec![candidate(4, 1, 4 * key), candidate(4, 4, 4 * key - saved)];
        // Alone, a layer keeps Cheetah's encoding.
        assert_eq!(chosen(&problem(vec![layer()])), vec![0]);
        // Two layers share the keys: both pack.
        let two = problem(vec![layer(), layer()]);
        assert_eq!(chosen(&two), vec![1, 1]);
        let pk = two.contexts[0].public_key;
        assert_eq!(
            two.bytes(&[1, 1]),
            pk + 2 * (4 * key - saved) as u64 + 2 * key as u64
        );
        // On tiles of 4 and 8 channels they use different exponents (N/4 + 1, N/2 + 1 for
        // the latter), which share only N/2 + 1: three keys cost more than the two save.
        assert_eq!(
            candidate(8, 4, 0).galois_exponents(),
            [DEGREE / 4 + 1, DEGREE / 2 + 1]
        );
        assert_eq!(
            candidate(4, 4, 0).galois_exponents(),
            [DEGREE / 2 + 1, DEGREE + 1]
        );
        let other = vec![candidate(8, 1, 4 * key), candidate(8, 4, 4 * key - saved)];
        assert_eq!(chosen(&problem(vec![layer(), other])), vec![0, 0]);
    }

    #[test]
    fn keys_dearer_than_the_saving_keep_cheetah() {
        let key = galois_key_bytes(DEGREE, 60);
        // Three layers each saving two thirds of a key: 2 keys > 3 · 2/3 keys.
        let saved = 2 * key / 3 - 1;
        let layer = || vec![candidate(4, 1, 4 * key), candidate(4, 4, 4 * key - saved)];
        let p = problem(vec![layer(), layer(), layer()]);
        assert_eq!(chosen(&p), vec![0, 0, 0]);
        assert_eq!(
            p.bytes(&[0, 0, 0]),
            p.contexts[0].public_key + 12 * key as u64
        );
        // A single key (two responses per ciphertext on the same tile, saving three quarters
        // as much) pays for itself.
        let with_two = || {
            let mut l = layer();
            l.push(candidate(4, 2, 4 * key - saved * 3 / 4));
            l
        };
        let p = problem(vec![with_two(), with_two(), with_two()]);
        assert_eq!(chosen(&p), vec![2, 2, 2]);
    }

    /// A layer's candidate gets a variable unless one of its context with a subset of its
    /// exponents is no dearer.
    #[test]
    fn options_drop_candidates_with_more_keys_and_no_saving() {
        let p = problem(vec![vec![
            candidate(4, 1, 100),
            candidate(4, 2, 90),
            candidate(4, 4, 95),
            candidate(4, 4, 80),
            candidate(8, 2, 90),
            candidate(4, 2, 99),
        ]]);
        let kept: Vec<usize> = options(&p)[0].iter().map(|o| o.k).collect();
        // By value: 80 (two keys), 90 (one key, a subset), 90 on the 8-channel tile (another
        // key), 100 (none); 95 and 99 are dominated.
        assert_eq!(kept, vec![3, 1, 4, 0]);
    }
}
