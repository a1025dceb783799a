//! Features of the ranking predictors: APQ's one-hot encoding (`Arch::encode`) beside numeric
//! descriptions of the architecture and of its bits.
//!
//! * Architecture numerics: depth of each stage (fraction of its largest depth), total MACs and
//!   weights (fractions of the space's largest architecture, plus their natural logarithms),
//!   each stage's share of the MACs, the mean kernel (fraction of the largest kernel) and the mean
//!   width ratio (middle channels over input channels, fraction of `expand_max`) of the active
//!   blocks, then the same two means per stage; per block slot whether it is active, its kernel
//!   and its width ratio as numbers (the one-hot's ordinal reading).
//! * Bit numerics: per block slot and bit slot (`pw_w`, `pw_a`, `dw_w`, `dw_a`), `b / max bits`
//!   and the quantization-noise proxy `4^-b` (uniform quantization's noise variance scales as
//!   `2^-2b`), zero when the block is skipped; per layer type (pointwise: expand and project,
//!   depthwise) the MAC-weighted means of `4^-w` and `4^-a` and of `w * a / max^2` (normalised
//!   BitOps), MACs from `Arch::layers`' geometry at batch 1; per bit slot the fraction of block slots
//!   at the smallest and at the second-smallest width (2 and 4 bits in `micro`).
//!
//! One-hot columns stay 0/1 (the networks' first layer skips zeros); numeric columns are
//! standardised by the predictor's [`super::dense::Scaler`].

use bitfusion_search::arch::block_layers;
use bitfusion_search::evolution::largest;
use bitfusion_search::space::Slot;
use bitfusion_search::{Arch, Block, Space};

/// The four bit slots of a block, in encoding order.
const BIT_SLOTS: [fn(&Block) -> u32; 4] = [|b| b.pw_w, |b| b.pw_a, |b| b.dw_w, |b| b.dw_a];

/// What the features of a space are computed from (derived from the space; cheap to build).
#[derive(Clone, Debug)]
pub struct Featurizer {
    slots: Vec<Slot>,
    /// MACs and weights of the space's largest architecture (normalisers).
    max_macs: f64,
    max_params: f64,
    max_kernel: f64,
    expand_max: f64,
    max_depths: Vec<f64>,
    /// The space's bit choices, sorted.
    bits: Vec<u32>,
}

/// One architecture's features: each part is a one-hot block followed by a numeric block.
#[derive(Clone, Debug, PartialEq)]
pub struct Features {
    pub arch_onehot: Vec<f32>,
    pub arch_numeric: Vec<f32>,
    pub bits_onehot: Vec<f32>,
    pub bits_numeric: Vec<f32>,
}

/// MACs and weights of one layer (batch 1).
struct Cost {
    macs: f64,
    params: f64,
}

/// MACs and weights of a block's three layers (expand, depthwise, project) at batch 1.
fn block_costs(slot: &Slot, b: &Block) -> [Cost; 3] {
    block_layers(slot, b, 1).map(|l| {
        let params = l.out_channels as f64 * (l.in_channels / l.groups.max(1)) as f64 * (l.kernel as f64).powi(2);
        Cost { macs: l.macs() as f64, params }
    })
}

impl Featurizer {
    pub fn new(space: &Space) -> Featurizer {
        let slots = space.slots();
        let mut bits = space.bits.clone();
        bits.sort_unstable();
        let top = *bits.last().expect("a validated space has bits");
        let big = largest(space, top);
        let (max_macs, max_params) = Featurizer::block_totals(&slots, &big);
        Featurizer {
            max_macs: max_macs.max(1.0),
            max_params: max_params.max(1.0),
            max_kernel: *space.kernels.iter().max().expect("kernels") as f64,
            expand_max: space.expand_max,
            max_depths: space.stages.iter().map(|s| *s.depths.iter().max().expect("depths") as f64).collect(),
            bits,
            slots,
        }
    }

    /// Total MACs and weights of the searchable blocks of `arch`.
    fn block_totals(slots: &[Slot], arch: &Arch) -> (f64, f64) {
        let mut t = (0.0, 0.0);
        for (sl, b) in by_slot(slots, arch) {
            for c in block_costs(sl, b) {
                t.0 += c.macs;
                t.1 += c.params;
            }
        }
        t
    }

    /// Numeric description of the architecture (bits ignored).
    pub fn arch_numeric(&self, arch: &Arch) -> Vec<f32> {
        let mut out: Vec<f64> = self.max_depths.iter().enumerate().map(|(s, d)| arch.stages.get(s).map_or(0.0, |st| st.len() as f64 / d)).collect();
        let (macs, params) = Featurizer::block_totals(&self.slots, arch);
        out.extend([macs / self.max_macs, params / self.max_params, (macs / self.max_macs).max(1e-6).ln(), (params / self.max_params).max(1e-6).ln()]);
        let stages = self.max_depths.len();
        let mut stage_macs = vec![0.0; stages];
        // Per stage: sum of kernel fractions, of width-ratio fractions, and the block count.
        let mut per = vec![[0f64; 3]; stages];
        for (sl, b) in by_slot(&self.slots, arch) {
            stage_macs[sl.stage] += block_costs(sl, b).iter().map(|c| c.macs).sum::<f64>();
            let p = &mut per[sl.stage];
            p[0] += b.kernel as f64 / self.max_kernel;
            p[1] += b.mid as f64 / sl.in_channels as f64 / self.expand_max;
            p[2] += 1.0;
        }
        out.extend(stage_macs.iter().map(|m| m / macs.max(1.0)));
        let n: f64 = per.iter().map(|p| p[2]).sum::<f64>().max(1.0);
        out.push(per.iter().map(|p| p[0]).sum::<f64>() / n);
        out.push(per.iter().map(|p| p[1]).sum::<f64>() / n);
        for p in &per {
            out.push(p[0] / p[2].max(1.0));
            out.push(p[1] / p[2].max(1.0));
        }
        // Per block slot: active, kernel fraction, width-ratio fraction (zeros when skipped).
        for sl in &self.slots {
            let b = arch.stages.get(sl.stage).and_then(|st| st.get(sl.index));
            out.push(if b.is_some() { 1.0 } else { 0.0 });
            out.push(b.map_or(0.0, |b| b.kernel as f64 / self.max_kernel));
            out.push(b.map_or(0.0, |b| b.mid as f64 / sl.in_channels as f64 / self.expand_max));
        }
        out.into_iter().map(|x| x as f32).collect()
    }

    /// Numeric description of the bits (see the module documentation).
    pub fn bits_numeric(&self, arch: &Arch) -> Vec<f32> {
        let top = *self.bits.last().expect("bits") as f64;
        let blocks: Vec<Option<&Block>> = self.slots.iter().map(|sl| arch.stages.get(sl.stage).and_then(|st| st.get(sl.index))).collect();
        let mut out = Vec::new();
        for get in BIT_SLOTS {
            for b in &blocks {
                let v = b.map(|b| get(b) as f64);
                out.push(v.map_or(0.0, |v| v / top));
                out.push(v.map_or(0.0, noise));
            }
        }
        // MAC-weighted means per layer type: [pointwise, depthwise] x [4^-w, 4^-a, w*a/top^2].
        let mut sums = [[0.0f64; 3]; 2];
        let mut macs = [0.0f64; 2];
        for (sl, b) in by_slot(&self.slots, arch) {
            let c = block_costs(sl, b);
            let pw = c[0].macs + c[2].macs;
            let dw = c[1].macs;
            for (t, m, w, a) in [(0, pw, b.pw_w, b.pw_a), (1, dw, b.dw_w, b.dw_a)] {
                let (w, a) = (w as f64, a as f64);
                macs[t] += m;
                sums[t][0] += m * noise(w);
                sums[t][1] += m * noise(a);
                sums[t][2] += m * w * a / (top * top);
            }
        }
        for t in 0..2 {
            out.extend(sums[t].iter().map(|s| s / macs[t].max(1.0)));
        }
        // Fractions of block slots at the two smallest widths, per bit slot.
        let n_slots = self.slots.len().max(1) as f64;
        for get in BIT_SLOTS {
            for low in self.bits.iter().take(2) {
                out.push(blocks.iter().filter(|b| b.is_some_and(|b| get(b) == *low)).count() as f64 / n_slots);
            }
        }
        out.into_iter().map(|x| x as f32).collect()
    }

    /// All feature parts of `arch` in `space`.
    pub fn features(&self, space: &Space, arch: &Arch) -> Features {
        let (arch_onehot, bits_onehot) = arch.encode(space);
        Features { arch_onehot, arch_numeric: self.arch_numeric(arch), bits_onehot, bits_numeric: self.bits_numeric(arch) }
    }
}

/// The quantization-noise proxy of a `b`-bit operand: `4^-b`.
pub fn noise(b: f64) -> f64 {
    0.25f64.powf(b)
}

/// The active (slot, block) pairs of `arch`, slot order.
fn by_slot<'a>(slots: &'a [Slot], arch: &'a Arch) -> impl Iterator<Item = (&'a Slot, &'a Block)> {
    slots.iter().filter_map(|sl| arch.stages.get(sl.stage).and_then(|st| st.get(sl.index)).map(|b| (sl, b)))
}

/// Which feature parts a model reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FeatureSet {
    pub onehot: bool,
    pub numeric: bool,
    pub bits: bool,
}

impl FeatureSet {
    /// The model's input: one-hot columns first (kept 0/1), then numeric columns; the count of
    /// one-hot columns is returned beside the vector.
    pub fn assemble(&self, f: &Features) -> (Vec<f32>, usize) {
        let mut x = Vec::new();
        if self.onehot {
            x.extend_from_slice(&f.arch_onehot);
            if self.bits {
                x.extend_from_slice(&f.bits_onehot);
            }
        }
        let n_onehot = x.len();
        if self.numeric {
            x.extend_from_slice(&f.arch_numeric);
            if self.bits {
                x.extend_from_slice(&f.bits_numeric);
            }
        }
        (x, n_onehot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_describe_bits_and_size() {
        let space = Space::load("micro").unwrap();
        let fz = Featurizer::new(&space);
        let top = *space.bits.iter().max().unwrap();
        let big = largest(&space, top);
        let a = fz.arch_numeric(&big);
        // Largest: every stage at full depth, MACs and weights fractions 1, log 0.
        assert!(a[..4].iter().all(|x| *x == 1.0), "{a:?}");
        assert_eq!(&a[4..8], &[1.0, 1.0, 0.0, 0.0]);
        let mut low = big.clone();
        crate::policy::set_uniform(&mut low, 2, 2);
        let (bh, bl) = (fz.bits_numeric(&big), fz.bits_numeric(&low));
        assert_eq!(bh.len(), bl.len());
        // The 2-bit network has more noise and fewer BitOps, and all its slots are 2-bit.
        let n = 4 * 2 * fz.slots.len();
        assert!(bl[n] > bh[n] && bl[n + 2] < bh[n + 2]);
        assert_eq!(&bl[n + 6..n + 14], &[1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0]);
        assert!(bh[n + 6..].iter().all(|x| *x == 0.0));
        // The one-hot part is APQ's encoding.
        let f = fz.features(&space, &big);
        assert_eq!((f.arch_onehot.clone(), f.bits_onehot.clone()), big.encode(&space));
        let (x, k) = FeatureSet { onehot: true, numeric: true, bits: false }.assemble(&f);
        assert_eq!(k, f.arch_onehot.len());
        assert_eq!(x.len(), k + f.arch_numeric.len());
    }
}
