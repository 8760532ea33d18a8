//! Brute force over every combination of candidates: the test oracle of [`super::ilp`] on small
//! problems.

use super::Problem;

/// The choice of least [`Problem::value`] (the first one on ties), or `None` when some layer has
/// no candidate or the search space exceeds `limit` combinations.
pub fn solve(p: &Problem, limit: u64) -> Option<Vec<usize>> {
    let sizes: Vec<usize> = p.layers.iter().map(|l| l.candidates.len()).collect();
    let total = sizes
        .iter()
        .try_fold(1u64, |a, &s| a.checked_mul(s as u64))?;
    if total == 0 || total > limit {
        return None;
    }
    let mut choice = vec![0usize; sizes.len()];
    let mut best = (p.value(&choice), choice.clone());
    loop {
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
            return Some(best.1);
        }
        let v = p.value(&choice);
        if v < best.0 {
            best = (v, choice.clone());
        }
    }
}
