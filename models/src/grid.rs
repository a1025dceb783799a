//! Quantization grids and the choice of their step, in plain Rust on slices (no tensors): shared
//! by the stock tensor path and the fused kernels, so both quantize identically; the bottom of the
//! crate's quantization stack (`grid` -> `ops` -> `quant`).
//!
//! A value v is quantized to `step * clamp(round(v * (1 / step)), lo, hi)` with `round` rounding
//! half to even (burn's and PyTorch's `round`); the reciprocal is taken once per step, so the hot
//! loops multiply instead of dividing. The step is chosen to minimise the squared error
//! `Σ (v - q(v))²` over [`CANDIDATES`] fractions of the covering step (the smallest step at which
//! nothing is clipped): a clip search as in EQ-Net's MSE initialisation and APQ's calibrated
//! thresholds (`shared/reference/search/QUANTIZED_SEARCH.md` 2): a coarse pass over fractions
//! 1.0, 0.92, ..., 0.2, then a fine pass in steps of 0.01 around the coarse best. At 2 bits the best step clips a
//! Gaussian tensor at about 1.1 standard deviations (relative MSE ~0.2 against 0.5-0.9 for the
//! max-range grid); at 6-8 bits it stays close to the covering step.

/// An integer grid `[lo, hi]` of one bit width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grid {
    pub lo: i32,
    pub hi: i32,
}

/// Coarse step candidates: fractions 1.0, 0.92, ..., 0.20 of the covering step.
pub const COARSE: usize = 11;
/// Spacing of the coarse and the fine candidates (fractions of the covering step).
const COARSE_SPACING: f32 = 0.08;
const FINE_SPACING: f32 = 0.01;

/// Most values an activation step is chosen from (a strided sample of the batch).
pub const ACTIVATION_SAMPLE: usize = 4096;

impl Grid {
    /// Bit Fusion's signed operands: two's complement `[-2^(b-1), 2^(b-1) - 1]` (2 bits: `[-2, 1]`,
    /// what a signed 2-bit BitBrick multiplies).
    pub fn signed(bits: u32) -> Grid {
        let half = 1i32 << (bits - 1);
        Grid { lo: -half, hi: half - 1 }
    }

    /// Unsigned operands `[0, 2^b - 1]` (activations after ReLU6).
    pub fn unsigned(bits: u32) -> Grid {
        Grid { lo: 0, hi: (1i32 << bits) - 1 }
    }

    /// The max-range quantizer's symmetric grid `[-(2^(b-1) - 1), 2^(b-1) - 1]` (2 bits: ternary).
    pub fn symmetric(bits: u32) -> Grid {
        let h = (1i32 << (bits - 1)) - 1;
        Grid { lo: -h, hi: h }
    }

    /// `v` on the grid of `step`.
    #[inline(always)]
    pub fn quantize(&self, v: f32, step: f32) -> f32 {
        self.quantize_with(v, 1.0 / step, step)
    }

    /// `v` on the grid of `step`, given `inv = 1 / step`.
    #[inline(always)]
    pub fn quantize_with(&self, v: f32, inv: f32, step: f32) -> f32 {
        self.level(v, inv) * step
    }

    /// The grid level (the integer code, as f32) of `v` at the step whose reciprocal is `inv`.
    #[inline(always)]
    pub fn level(&self, v: f32, inv: f32) -> f32 {
        (v * inv).round_ties_even().clamp(self.lo as f32, self.hi as f32)
    }

    /// The smallest step at which the grid covers every value (nothing clipped); never zero.
    pub fn covering_step(&self, values: &[f32]) -> f32 {
        let (mut neg, mut pos) = (0f32, 0f32);
        for &v in values {
            neg = neg.min(v);
            pos = pos.max(v);
        }
        let mut s = 0f32;
        if self.hi > 0 {
            s = s.max(pos / self.hi as f32);
        }
        if self.lo < 0 {
            s = s.max(neg / self.lo as f32);
        }
        s.max(MIN_STEP)
    }
}

/// The smallest step ever used (an all-zero tensor quantizes to zeros with it).
pub const MIN_STEP: f32 = 1e-8;

/// Sum of squared quantization errors of `values` at `step` (summed in f32 per block of 256
/// values, the blocks in f64).
pub fn squared_error(values: &[f32], grid: Grid, step: f32) -> f64 {
    crate::simd::simd(
        #[inline(always)]
        |_| {
            values
                .chunks(256)
                .map(|c| {
                    let inv = 1.0 / step;
                    c.iter()
                        .map(|&v| {
                            let e = v - grid.quantize_with(v, inv, step);
                            e * e
                        })
                        .sum::<f32>() as f64
                })
                .sum()
        },
    )
}

/// The step with the least squared error among fractions of the covering step: [`COARSE`]
/// fractions 1.0, 0.92, ..., 0.2, then every 0.01 within 0.07 of the best of them (the largest
/// step wins ties, so a grid that fits exactly keeps the covering step).
pub fn mse_step(values: &[f32], grid: Grid) -> f32 {
    let cover = grid.covering_step(values);
    if cover <= MIN_STEP {
        return MIN_STEP;
    }
    let mut best = (f64::INFINITY, 1.0f32);
    let try_fraction = |f: f32, best: &mut (f64, f32)| {
        let e = squared_error(values, grid, (cover * f).max(MIN_STEP));
        if e < best.0 {
            *best = (e, f);
        }
    };
    for j in 0..COARSE {
        try_fraction(1.0 - COARSE_SPACING * j as f32, &mut best);
    }
    let centre = best.1;
    for j in 1..8 {
        for f in [centre + FINE_SPACING * j as f32, centre - FINE_SPACING * j as f32] {
            if (0.2 - 1e-6..=1.0 + 1e-6).contains(&f) {
                try_fraction(f, &mut best);
            }
        }
    }
    (cover * best.1).max(MIN_STEP)
}

/// One step per row of a row-major `[rows, values.len() / rows]` tensor (per output channel of
/// a weight tensor), each the [`mse_step`] of its row.
pub fn mse_steps_per_row(values: &[f32], rows: usize, grid: Grid) -> Vec<f32> {
    use rayon::prelude::*;
    let cols = (values.len() / rows.max(1)).max(1);
    // Tasks of whole rows, at least 4096 values each (rows are often tens of values).
    let per_task = 4096usize.div_ceil(cols).max(1);
    let steps: Vec<Vec<f32>> = values[..rows * cols].par_chunks(per_task * cols).map(|t| t.chunks(cols).map(|r| mse_step(r, grid)).collect()).collect();
    steps.concat()
}

/// The max-range quantizer's step: max |v| over the grid's positive levels.
pub fn max_range_step(values: &[f32], grid: Grid) -> f32 {
    let m = values.iter().fold(0f32, |m, v| m.max(v.abs()));
    (m / grid.hi.max(1) as f32).max(MIN_STEP)
}

/// At most `max` values of `values`, evenly strided (all of them when there are fewer).
pub fn strided_sample(values: &[f32], max: usize) -> Vec<f32> {
    if values.len() <= max {
        return values.to_vec();
    }
    let stride = values.len().div_ceil(max);
    values.iter().step_by(stride).copied().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn gaussian(n: usize, seed: u64) -> Vec<f32> {
        let mut r = Rng::new(seed);
        (0..n).map(|_| r.normal() as f32).collect()
    }

    fn relative_mse(v: &[f32], grid: Grid, step: f32) -> f64 {
        squared_error(v, grid, step) / v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>()
    }

    #[test]
    fn grids_are_the_hardware_operand_ranges() {
        assert_eq!(Grid::signed(2), Grid { lo: -2, hi: 1 });
        assert_eq!(Grid::signed(8), Grid { lo: -128, hi: 127 });
        assert_eq!(Grid::unsigned(2), Grid { lo: 0, hi: 3 });
        assert_eq!(Grid::symmetric(2), Grid { lo: -1, hi: 1 });
        let g = Grid::signed(2);
        let q: Vec<f32> = [-5.0f32, -1.6, -0.4, 0.2, 0.5, 0.7, 3.0].iter().map(|&v| g.quantize(v, 0.5)).collect();
        // Half to even: 0.5 / 0.5 = 1 exactly; -0.4 / 0.5 = -0.8 -> -1.
        assert_eq!(q, vec![-1.0, -1.0, -0.5, 0.0, 0.5, 0.5, 0.5]);
        assert_eq!(Grid::unsigned(2).quantize(0.25, 0.5), 0.0, "0.5 rounds half to even");
        assert_eq!(Grid::unsigned(2).quantize(0.75, 0.5), 1.0, "1.5 rounds half to even");
    }

    #[test]
    fn the_clip_search_beats_max_range_at_two_bits_on_a_gaussian() {
        for (n, seed) in [(72, 1), (432, 2), (4608, 3)] {
            let v = gaussian(n, seed);
            let old = relative_mse(&v, Grid::symmetric(2), max_range_step(&v, Grid::symmetric(2)));
            let new = relative_mse(&v, Grid::signed(2), mse_step(&v, Grid::signed(2)));
            assert!(new < old, "{n} values: clipped {new:.3} vs max-range {old:.3}");
            assert!(new < 0.26, "{n} values: clipped 2-bit relative MSE {new:.3}");
            assert!(old > 0.4, "{n} values: max-range 2-bit relative MSE {old:.3}");
        }
        // At 8 bits both are small and the search never does worse than the covering step.
        let v = gaussian(4608, 4);
        let g = Grid::signed(8);
        assert!(relative_mse(&v, g, mse_step(&v, g)) <= relative_mse(&v, g, g.covering_step(&v)));
        assert!(relative_mse(&v, g, mse_step(&v, g)) < 1e-3);
    }

    #[test]
    fn per_row_steps_follow_each_rows_range() {
        // Two channels whose ranges differ 100x: one per-tensor step zeroes the small channel.
        let mut v = gaussian(64, 5);
        v.extend(gaussian(64, 6).iter().map(|x| x * 0.01));
        let steps = mse_steps_per_row(&v, 2, Grid::signed(4));
        assert_eq!(steps.len(), 2);
        assert!(steps[0] > 50.0 * steps[1], "{steps:?}");
        let small = &v[64..];
        let per_channel = relative_mse(small, Grid::signed(4), steps[1]);
        let per_tensor = relative_mse(small, Grid::symmetric(4), max_range_step(&v, Grid::symmetric(4)));
        assert!(per_channel < 0.05 && per_tensor > 0.9, "{per_channel} vs {per_tensor}");
    }

    #[test]
    fn degenerate_tensors_and_samples() {
        assert_eq!(mse_step(&[0.0; 8], Grid::signed(2)), MIN_STEP);
        assert_eq!(Grid::unsigned(4).covering_step(&[-1.0, -2.0]), MIN_STEP, "unsigned grids ignore negatives");
        let v: Vec<f32> = (0..10_000).map(|i| i as f32).collect();
        let s = strided_sample(&v, ACTIVATION_SAMPLE);
        assert!(s.len() <= ACTIVATION_SAMPLE && s.len() > ACTIVATION_SAMPLE / 2);
        assert_eq!(strided_sample(&v[..10], 4096).len(), 10);
    }
}
