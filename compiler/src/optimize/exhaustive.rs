//! Brute force: every combination of candidates, the test oracle of [`super::ilp`] on small
//! problems; and every combination of ring options, the exact ring search on small plans.

use super::Problem;

/// The combination of one index per position (`sizes[i]` choices at position `i`) that `eval`
/// rates best (`better(a, b)`: `a` is strictly better than `b`; the first one on ties), or
/// `None` when some position has no choice, the space exceeds `limit` combinations, or `eval`
/// rejects every combination.
pub fn best_pick<K: Copy>(
    sizes: &[usize],
    limit: u64,
    eval: impl Fn(&[usize]) -> Option<K>,
    better: impl Fn(K, K) -> bool,
) -> Option<(Vec<usize>, K)> {
    let total = sizes
        .iter()
        .try_fold(1u64, |a, &s| a.checked_mul(s as u64))?;
    if total == 0 || total > limit {
        return None;
    }
    let mut choice = vec![0usize; sizes.len()];
    let mut best: Option<(Vec<usize>, K)> = None;
    loop {
        if let Some(v) = eval(&choice)
            && best.as_ref().is_none_or(|b| better(v, b.1))
        {
            best = Some((choice.clone(), v));
        }
        // Odometer increment.
        let mut i = 0;
        while i < sizes.len() {
            choice[i] += 1;
            if choice[i] < sizes[i] {
                break;
            }
            choice[i] = 0;
            i += 1;
        }
        if i == sizes.len() {
            return best;
        }
    }
}

/// The choice of least [`Problem::value`] (the first one on ties), or `None` when some layer has
/// no candidate or the search space exceeds `limit` combinations.
pub fn solve(p: &Problem, limit: u64) -> Option<Vec<usize>> {
    let sizes: Vec<usize> = p.layers.iter().map(|l| l.candidates.len()).collect();
    best_pick(&sizes, limit, |c| Some(p.value(c)), |a, b| a < b).map(|(c, _)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_pick_visits_every_combination_within_the_limit() {
        // f(a, b, c) = (a − 1)² + (b − 2)² + c: best at (1, 2, 0) of 3·4·2 = 24 combinations.
        let f = |c: &[usize]| {
            let d = |x: usize, y: usize| x.abs_diff(y).pow(2);
            Some(d(c[0], 1) + d(c[1], 2) + c[2])
        };
        let best = best_pick(&[3, 4, 2], 24, f, |a, b| a < b);
        assert_eq!(best, Some((vec![1, 2, 0], 0)));
        assert_eq!(best_pick(&[3, 4, 2], 23, f, |a, b| a < b), None);
        assert_eq!(best_pick(&[3, 0], 24, f, |a, b| a < b), None);
        // Rejected combinations are skipped.
        let odd = |c: &[usize]| (c[0] % 2 == 1).then_some(c[0]);
        assert_eq!(best_pick(&[4], 4, odd, |a, b| a < b), Some((vec![1], 1)));
    }
}
