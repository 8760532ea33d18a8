//! The ILP (`good_lp` with the pure-Rust `microlp` solver, or HiGHS with the `highs` feature): one binary `x[l, k]` per layer and
//! candidate with `Σ_k x[l, k] = 1`, one binary `u[c]` per HE context, and
//! `Σ_{k in c} x[l, k] ≤ u[c]` for every layer and context (a used context costs one public
//! key). Within a context only a layer's cheapest candidate can be optimal (everything else is
//! equal), so only that one gets a variable. Objective: the candidates' values plus the keys'.

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

/// Per layer: for each context, the cheapest candidate of that context.
fn best_per_context(p: &Problem) -> Vec<Vec<(usize, usize)>> {
    p.layers
        .iter()
        .map(|l| {
            let mut best: Vec<Option<usize>> = vec![None; p.contexts.len()];
            for (k, c) in l.candidates.iter().enumerate() {
                let ctx = p.context_of(c);
                let better = best[ctx]
                    .is_none_or(|b| p.candidate_value(c) < p.candidate_value(&l.candidates[b]));
                if better {
                    best[ctx] = Some(k);
                }
            }
            best.iter()
                .enumerate()
                .filter_map(|(ctx, k)| k.map(|k| (ctx, k)))
                .collect()
        })
        .collect()
}

/// Solves the problem: one candidate index per layer, and the solver statistics.
///
/// # Errors
/// [`Error::Optimize`] when the solver fails (a layer without candidates makes the problem
/// infeasible).
pub fn solve(p: &Problem) -> Result<(Vec<usize>, SolveStats)> {
    let options = best_per_context(p);
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
    let mut objective = Expression::from(0.0);
    for ((o, xs), l) in options.iter().zip(&x).zip(&p.layers) {
        for (&(_, k), &v) in o.iter().zip(xs) {
            objective += p.candidate_value(&l.candidates[k]) * v;
        }
    }
    for (c, &v) in u.iter().enumerate() {
        objective += p.context_value(c) * v;
    }
    let variables = u.len() + x.iter().map(Vec::len).sum::<usize>();
    let mut model = vars.minimise(objective).using(solver);
    let mut constraints = 0;
    for (o, xs) in options.iter().zip(&x) {
        let one: Expression = xs.iter().copied().sum();
        model = model.with(constraint!(one == 1.0));
        constraints += 1;
        for (&(ctx, _), &v) in o.iter().zip(xs) {
            model = model.with(constraint!(v <= u[ctx]));
            constraints += 1;
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
            Ok(o[best].1)
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
