//! The candidate mappings of a problem: every tile size is drawn from the *balanced* sizes of its
//! dimension, ceil(X / c) for tile counts c = 1..=8, then powers of two up to X; every combination
//! that fits half of each buffer and every distinct loop order is a candidate. Candidates come in
//! *families* (channel and kernel tile sizes) and, within a family, *tilings* (batch and spatial
//! tile sizes) whose loop orders are adjacent ([`order_groups`]); the search
//! ([`super::search`]) bounds them in that hierarchy.

use super::problem::{Counts, Loop, Mapping, ORDERS, Problem, fits};

/// Balanced tile sizes of a dimension of extent x: ceil(x / c) for c = 1..=8, then c = 16, 32, ... up to x.
pub(super) fn balanced_sizes(x: u64) -> Vec<u64> {
    let mut counts: Vec<u64> = (1..=8u64.min(x)).collect();
    let mut c = 16;
    while c < x {
        counts.push(c);
        c *= 2;
    }
    if x > 8 {
        counts.push(x);
    }
    let mut sizes: Vec<u64> = counts.into_iter().map(|c| x.div_ceil(c)).collect();
    sizes.sort_unstable_by(|a, b| b.cmp(a));
    sizes.dedup();
    sizes
}

/// Channel and kernel tile sizes. The tilings of one family differ only in their batch and spatial
/// tile sizes, so they stream for the same cycles ([`busy_total`](super::problem::busy_total) does not depend on the spatial
/// tiles) and load the same first weight tile: one bound covers them all ([`Family::bound`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Family {
    pub groups_per_pass: u64,
    pub oc: u64,
    pub ic: u64,
    pub kh: u64,
}

/// The families of a problem's candidates, in the order `candidates` lists them.
pub(super) fn families(p: &Problem) -> Vec<Family> {
    let mut group_options = vec![1u64];
    if p.groups > 1 && p.cog <= p.m {
        let max_g = (p.m / p.cog).min(p.groups);
        group_options = balanced_sizes(max_g);
    }
    let oc_cols: Vec<u64> = {
        // Output channels per tile: whole multiples of M column groups, or everything if it is fewer.
        let groups_of_m = p.cog.div_ceil(p.m);
        let mut v: Vec<u64> = balanced_sizes(groups_of_m).into_iter().map(|g| (g * p.m).min(p.cog)).collect();
        v.dedup();
        v
    };
    let sizes_ic = balanced_sizes(p.cig);
    let sizes_kh = balanced_sizes(p.k);
    let mut out = Vec::new();
    for &g in &group_options {
        let (ocs, ics): (&[u64], &[u64]) = if g > 1 { (&[p.cog][..], &[p.cig][..]) } else { (&oc_cols[..], &sizes_ic[..]) };
        for &oc in ocs {
            for &ic in ics {
                for &kh in &sizes_kh {
                    out.push(Family { groups_per_pass: g, oc, ic, kh });
                }
            }
        }
    }
    out
}

impl Family {
    /// The family's tiling with the given batch and spatial tile sizes (first loop order).
    pub fn tiling(&self, b: u64, oh: u64, ow: u64) -> Mapping {
        Mapping { b, oh, ow, groups_per_pass: self.groups_per_pass, oc: self.oc, ic: self.ic, kh: self.kh, order: ORDERS[0] }
    }
}

/// Every candidate of a family that fits the buffers, with each distinct loop order once,
/// appended to `out` (loop orders of one tiling adjacent).
pub(super) fn family_candidates(p: &Problem, f: &Family, out: &mut Vec<Mapping>) {
    for &b in &balanced_sizes(p.batch) {
        for &oh in &balanced_sizes(p.out_h) {
            for &ow in &balanced_sizes(p.out_w) {
                let base = f.tiling(b, oh, ow);
                if !fits(p, &base) {
                    continue;
                }
                let c = Counts::of(p, &base);
                // Loops with a single tile change nothing: keep one order per arrangement
                // of the loops that have several.
                let mut seen: [[Option<Loop>; 3]; 6] = [[None; 3]; 6];
                for (k, order) in ORDERS.into_iter().enumerate() {
                    let mut key = [None; 3];
                    for (slot, l) in key.iter_mut().zip(order.iter().filter(|l| c.of_loop(**l) > 1)) {
                        *slot = Some(*l);
                    }
                    if seen[..k].contains(&key) {
                        continue;
                    }
                    seen[k] = key;
                    out.push(Mapping { order, ..base });
                }
            }
        }
    }
}

/// Every candidate mapping that fits the buffers, with each distinct loop order once.
#[cfg(test)] // Used by the tests only (the crate does not export it).
pub(super) fn candidates(p: &Problem) -> Vec<Mapping> {
    let mut out = Vec::new();
    for f in families(p) {
        family_candidates(p, &f, &mut out);
    }
    out
}

/// The groups of candidates that differ only in loop order (adjacent in `candidates`' output), as
/// index ranges: the search bounds each group once for all its orders.
pub(super) fn order_groups(cands: &[Mapping]) -> Vec<(usize, usize)> {
    let mut groups: Vec<(usize, usize)> = Vec::new();
    for (i, m) in cands.iter().enumerate() {
        match groups.last_mut() {
            Some((s, e)) if Mapping { order: ORDERS[0], ..cands[*s] } == Mapping { order: ORDERS[0], ..*m } => *e = i + 1,
            _ => groups.push((i, i + 1)),
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balanced_sizes_cover_counts() {
        assert_eq!(balanced_sizes(1), vec![1]);
        assert_eq!(balanced_sizes(7), vec![7, 4, 3, 2, 1]);
        assert_eq!(balanced_sizes(112), vec![112, 56, 38, 28, 23, 19, 16, 14, 7, 4, 2, 1]);
        for x in 1..300 {
            let s = balanced_sizes(x);
            assert_eq!(s[0], x);
            assert_eq!(*s.last().unwrap(), 1);
        }
    }
}
