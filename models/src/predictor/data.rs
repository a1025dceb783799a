//! Pair files as training data: quantized samples with their group's fp32 accuracy, the fp32
//! table (fp32 pairs and the quantized groups' fp32 measurements, one row per architecture), and
//! hold-out splits by architecture, so no architecture is on both sides.

use std::collections::{BTreeMap, BTreeSet};

use bitfusion_search::{Arch, Space};

use crate::pairs::{Pair, PairPlan};
use crate::rng::shuffle;

/// One measured quantized subnet.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantSample {
    pub arch: Arch,
    /// Quantized validation accuracy (0..1).
    pub accuracy: f64,
    /// The same architecture's measured fp32 accuracy (paired design), when the file has it.
    pub fp32_accuracy: Option<f64>,
    /// `uniform` or `mixed` (empty in older files).
    pub policy: String,
}

/// The pairs of a space, checked and split by kind.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PairData {
    /// fp32 pairs (architecture, accuracy); their bits are meaningless.
    pub fp32: Vec<(Arch, f64)>,
    pub quant: Vec<QuantSample>,
}

/// The architecture without its bits: its canonical text with every bit slot at 0, the key the
/// pairs of one architecture group share.
pub fn arch_key(arch: &Arch) -> String {
    let mut a = arch.clone();
    crate::policy::set_uniform(&mut a, 0, 0);
    a.to_text()
}

/// Read pairs of `space` into fp32 and quantized samples (an architecture outside the space is an
/// error naming the pair).
pub fn pair_data(space: &Space, pairs: &[Pair]) -> Result<PairData, String> {
    let mut d = PairData::default();
    for p in pairs {
        let arch = Arch::parse(&p.arch, space).map_err(|e| format!("pair {}: {e}", p.index))?;
        if p.quantized {
            d.quant.push(QuantSample { arch, accuracy: p.accuracy, fp32_accuracy: p.fp32_accuracy, policy: p.policy.clone() });
        } else {
            d.fp32.push((arch, p.accuracy));
        }
    }
    Ok(d)
}

impl PairData {
    /// One fp32 sample per architecture whose key passes `keep`: the mean of the distinct values
    /// among its fp32 pairs and its quantized groups' fp32 measurements (the pairs of a group
    /// repeat one measurement), in key order.
    pub fn fp32_table(&self, keep: impl Fn(&str) -> bool) -> Vec<(Arch, f64)> {
        let mut by_key: BTreeMap<String, (Arch, BTreeSet<u64>)> = BTreeMap::new();
        let rows = self.fp32.iter().map(|(a, y)| (a, *y)).chain(self.quant.iter().filter_map(|q| q.fp32_accuracy.map(|y| (&q.arch, y))));
        for (a, y) in rows {
            let k = arch_key(a);
            if keep(&k) {
                by_key.entry(k).or_insert_with(|| (a.clone(), BTreeSet::new())).1.insert(y.to_bits());
            }
        }
        by_key.into_values().map(|(a, ys)| (a, ys.iter().map(|b| f64::from_bits(*b)).sum::<f64>() / ys.len() as f64)).collect()
    }

    /// Every architecture key of the data, sorted.
    pub fn keys(&self) -> Vec<String> {
        let set: BTreeSet<String> = self.fp32.iter().map(|(a, _)| arch_key(a)).chain(self.quant.iter().map(|q| arch_key(&q.arch))).collect();
        set.into_iter().collect()
    }

    /// Test architectures for a hold-out: keys in a seeded order, taken until at least
    /// `min_quant` quantized pairs and `fraction` of each kind's pairs are held out (or the
    /// keys run out but one).
    pub fn holdout_keys(&self, fraction: f64, min_quant: usize, seed: u64) -> BTreeSet<String> {
        let mut keys = self.keys();
        shuffle(&mut keys, seed ^ 0x09e1_d0a7);
        let mut count: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        let qk: Vec<String> = self.quant.iter().map(|q| arch_key(&q.arch)).collect();
        let fk: Vec<String> = self.fp32.iter().map(|(a, _)| arch_key(a)).collect();
        for k in &qk {
            count.entry(k).or_default().0 += 1;
        }
        for k in &fk {
            count.entry(k).or_default().1 += 1;
        }
        let want_q = ((self.quant.len() as f64 * fraction).ceil() as usize).max(min_quant.min(self.quant.len()));
        let want_f = (self.fp32.len() as f64 * fraction).ceil() as usize;
        let mut test = BTreeSet::new();
        let (mut q, mut f) = (0, 0);
        for k in keys.iter().take(keys.len().saturating_sub(1)) {
            if q >= want_q && f >= want_f {
                break;
            }
            let (cq, cf) = count.get(k.as_str()).copied().unwrap_or_default();
            q += cq;
            f += cf;
            test.insert(k.clone());
        }
        test
    }

    /// The quantized samples on each side of a hold-out: (train, test).
    pub fn split_quant(&self, test_keys: &BTreeSet<String>) -> (Vec<QuantSample>, Vec<QuantSample>) {
        self.quant.iter().cloned().partition(|q| !test_keys.contains(&arch_key(&q.arch)))
    }
}

/// Synthetic pairs from a known function, for tests and smoke runs of the evaluation: `groups`
/// architecture groups of [`PairPlan::quantized`]`(seed)` (four policies each, their fp32
/// accuracy recorded) and as many fp32 pairs of [`PairPlan::fp32`]`(seed)`. fp32 accuracy rises
/// with MACs, depth, kernel and width (0.6..0.9); every quantized block slot multiplies the
/// accuracy above chance (0.1) by a retention that falls steeply at 2 bits (activations more
/// than weights, depthwise more than pointwise) and slightly at 4; Gaussian noise of
/// `noise` (accuracy units) on every measurement.
pub fn synthetic(space: &Space, groups: usize, noise: f64, seed: u64) -> PairData {
    use crate::rng::Rng;
    let fz = super::features::Featurizer::new(space);
    let fp32_of = |a: &Arch| {
        let x = fz.arch_numeric(a);
        // Depth fractions, MAC fraction, log weights fraction, mean kernel, mean width ratio.
        let depth = x[..4].iter().sum::<f32>() as f64 / 4.0;
        let score = 0.35 * depth + 0.25 * x[4] as f64 + 0.1 * (1.0 + x[7] as f64 / 4.0).max(0.0) + 0.15 * x[12] as f64 + 0.15 * x[13] as f64;
        0.6 + 0.3 * score.clamp(0.0, 1.0)
    };
    let retention = |b: u32, slot: usize| -> f64 {
        let hit = [0.1, 0.25, 0.15, 0.3][slot];
        match b {
            2 => 1.0 - hit,
            4 => 1.0 - hit / 15.0,
            6 => 1.0 - hit / 100.0,
            _ => 1.0,
        }
    };
    let (qp, fp) = (PairPlan::quantized(seed), PairPlan::fp32(seed));
    let mut rng = Rng::new(seed ^ 0x5e7);
    let mut d = PairData::default();
    for g in 0..groups {
        let arch = fp.pair(space, g).0;
        let f = fp32_of(&arch);
        d.fp32.push((arch, f + noise * rng.normal()));
        let fq = f + noise * rng.normal();
        for i in 4 * g..4 * g + 4 {
            let (arch, policy) = qp.pair(space, i);
            let keep: f64 =
                arch.stages.iter().flatten().map(|b| retention(b.pw_w, 0) * retention(b.pw_a, 1) * retention(b.dw_w, 2) * retention(b.dw_a, 3)).product();
            let acc = 0.1 + (fp32_of(&arch) - 0.1) * keep + noise * rng.normal();
            d.quant.push(QuantSample { arch, accuracy: acc, fp32_accuracy: Some(fq), policy: policy.into() });
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(space: &Space, n_groups: usize) -> PairData {
        let (qp, fp) = (PairPlan::quantized(3), PairPlan::fp32(3));
        let quant = (0..n_groups * 4)
            .map(|i| {
                let (arch, policy) = qp.pair(space, i);
                QuantSample { arch, accuracy: i as f64 / 1000.0, fp32_accuracy: Some(0.8 + (i / 4) as f64 / 1000.0), policy: policy.into() }
            })
            .collect();
        let fp32 = (0..n_groups / 2).map(|i| (fp.pair(space, i).0, 0.7)).collect();
        PairData { fp32, quant }
    }

    #[test]
    fn the_holdout_never_shares_an_architecture() {
        let space = Space::load("micro").unwrap();
        let d = data(&space, 120);
        for seed in 0..5 {
            let test = d.holdout_keys(0.25, 200, seed);
            let (train, held) = d.split_quant(&test);
            assert!(held.len() >= 200, "{} held out", held.len());
            assert_eq!(train.len() + held.len(), d.quant.len());
            let train_keys: BTreeSet<String> = train.iter().map(|q| arch_key(&q.arch)).collect();
            assert!(held.iter().all(|q| !train_keys.contains(&arch_key(&q.arch))));
            // Groups of four stay together; the fp32 table of the training side has none of them.
            assert_eq!(held.len() % 4, 0);
            let table = d.fp32_table(|k| !test.contains(k));
            assert!(table.iter().all(|(a, _)| !test.contains(&arch_key(a))));
            assert!(table.len() < d.keys().len());
        }
        assert_ne!(d.holdout_keys(0.25, 200, 1), d.holdout_keys(0.25, 200, 2));
    }

    #[test]
    fn the_fp32_table_has_one_row_per_architecture() {
        let space = Space::load("micro").unwrap();
        let d = data(&space, 40);
        let t = d.fp32_table(|_| true);
        assert_eq!(t.len(), d.keys().len());
        // fp32 pair i and quantized group i share the architecture (same seed): mean of both.
        let k0 = arch_key(&d.fp32[1].0);
        let row = t.iter().find(|(a, _)| arch_key(a) == k0).unwrap();
        assert!((row.1 - (0.7 + 0.801) / 2.0).abs() < 1e-12, "{}", row.1);
    }
}
