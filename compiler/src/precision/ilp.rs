//! The width choice as an ILP (`good_lp`, microlp): one binary `x[l, c]` per layer and lowered
//! candidate, `Σ_c x[l, c] ≤ 1` (no variable set: the layer keeps its widths),
//! `Σ sensitivity·x ≤ budget`, maximising the predicted bytes saved (= minimising the plan's
//! predicted communication, the candidates' savings taken as additive).

use crate::error::{Error, Result};
use good_lp::{Expression, ProblemVariables, Solution, SolverModel, constraint, microlp, variable};

/// One lowered configuration of one layer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Choice {
    /// Predicted channel bytes saved against the original plan.
    pub saving: f64,
    /// Measured sensitivity (the budget's metric with only this change).
    pub sensitivity: f64,
}

/// Chooses at most one option per layer (`options[l]`), the summed sensitivity within
/// `budget`, maximising the summed saving. Returns the chosen option index per layer.
///
/// # Errors
/// [`Error::Optimize`] when the solver fails.
pub fn solve(options: &[Vec<Choice>], budget: f64) -> Result<Vec<Option<usize>>> {
    let mut vars = ProblemVariables::new();
    let x: Vec<Vec<_>> = options
        .iter()
        .map(|o| o.iter().map(|_| vars.add(variable().binary())).collect())
        .collect();
    let mut saving = Expression::from(0.0);
    let mut spent = Expression::from(0.0);
    for (o, xs) in options.iter().zip(&x) {
        for (c, &v) in o.iter().zip(xs) {
            saving += c.saving * v;
            spent += c.sensitivity * v;
        }
    }
    let mut model = vars.maximise(saving).using(microlp);
    model = model.with(constraint!(spent <= budget));
    for xs in x.iter().filter(|xs| !xs.is_empty()) {
        let one: Expression = xs.iter().copied().sum();
        model = model.with(constraint!(one <= 1.0));
    }
    let solution = model.solve().map_err(|e| Error::Optimize {
        reason: format!("precision ILP solver: {e}"),
    })?;
    Ok(x.iter()
        .map(|xs| xs.iter().position(|&v| solution.value(v) > 0.5))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(saving: f64, sensitivity: f64) -> Choice {
        Choice {
            saving,
            sensitivity,
        }
    }

    /// Brute force over every choice.
    fn best(options: &[Vec<Choice>], budget: f64) -> f64 {
        let mut best = 0.0f64;
        let mut pick = vec![0usize; options.len()];
        loop {
            let (mut s, mut b) = (0.0, 0.0);
            for (l, &p) in pick.iter().enumerate() {
                if p > 0 {
                    s += options[l][p - 1].saving;
                    b += options[l][p - 1].sensitivity;
                }
            }
            if b <= budget + 1e-9 {
                best = best.max(s);
            }
            let mut l = 0;
            while l < pick.len() && pick[l] == options[l].len() {
                pick[l] = 0;
                l += 1;
            }
            if l == pick.len() {
                return best;
            }
            pick[l] += 1;
        }
    }

    #[test]
    fn ilp_matches_brute_force() {
        let options = vec![
            vec![o(100.0, 0.02), o(180.0, 0.05), o(220.0, 0.2)],
            vec![o(50.0, 0.0), o(90.0, 0.03)],
            vec![],
            vec![o(300.0, 0.1), o(310.0, 0.3)],
        ];
        for budget in [0.0, 0.02, 0.05, 0.08, 0.1, 0.15, 0.3, 1.0] {
            let choice = solve(&options, budget).unwrap();
            let (mut s, mut b) = (0.0, 0.0);
            for (l, c) in choice.iter().enumerate() {
                if let Some(c) = c {
                    s += options[l][*c].saving;
                    b += options[l][*c].sensitivity;
                }
            }
            assert!(b <= budget + 1e-9, "budget {budget}: spent {b}");
            assert!((s - best(&options, budget)).abs() < 1e-6, "budget {budget}");
            assert_eq!(choice[2], None);
        }
    }
}
