//! The workspace's one Pareto filter.

/// The indices (ascending) of the points no other point dominates, every objective minimised
/// (negate one to maximise it). `a` dominates `b` when it is no worse in every objective and
/// better in one; equal points do not dominate each other, so duplicates on the front all stay.
/// Points with a NaN objective are never on the front.
///
/// Sorting lexicographically first means a point can only be dominated by one before it, and
/// only the front found so far needs checking: O(n log n + n x front).
pub fn non_dominated<const K: usize>(points: &[[f64; K]]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..points.len()).filter(|&i| points[i].iter().all(|x| !x.is_nan())).collect();
    order.sort_by(|&a, &b| {
        points[a].iter().zip(&points[b]).map(|(x, y)| x.total_cmp(y)).find(|o| o.is_ne()).unwrap_or(std::cmp::Ordering::Equal)
    });
    let mut front: Vec<usize> = Vec::new();
    for i in order {
        if !front.iter().any(|&f| dominates(&points[f], &points[i])) {
            front.push(i);
        }
    }
    front.sort_unstable();
    front
}

/// Is `a` no worse than `b` everywhere and better somewhere (all objectives minimised)?
pub fn dominates<const K: usize>(a: &[f64; K], b: &[f64; K]) -> bool {
    a.iter().zip(b).all(|(x, y)| x <= y) && a.iter().zip(b).any(|(x, y)| x < y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn brute<const K: usize>(p: &[[f64; K]]) -> Vec<usize> {
        (0..p.len()).filter(|&i| !p[i].iter().any(|x| x.is_nan()) && !p.iter().any(|q| dominates(q, &p[i]))).collect()
    }

    #[test]
    fn keeps_duplicates_and_drops_the_dominated() {
        let p = [[1.0, 5.0, 5.0], [2.0, 2.0, 5.0], [2.0, 3.0, 6.0], [3.0, 1.0, 1.0], [1.0, 5.0, 5.0], [f64::NAN, 0.0, 0.0]];
        assert_eq!(non_dominated(&p), vec![0, 1, 3, 4]);
    }

    proptest! {
        #[test]
        fn equals_the_quadratic_definition(v in prop::collection::vec((0u8..6, 0u8..6, 0u8..6), 0..60)) {
            let p: Vec<[f64; 3]> = v.iter().map(|&(a, b, c)| [a as f64, b as f64, c as f64]).collect();
            prop_assert_eq!(non_dominated(&p), brute(&p));
            let q: Vec<[f64; 2]> = v.iter().map(|&(a, b, _)| [a as f64, b as f64]).collect();
            prop_assert_eq!(non_dominated(&q), brute(&q));
        }
    }
}
