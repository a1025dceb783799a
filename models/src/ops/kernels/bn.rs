//! Batch norm fused with what follows it (ReLU6, a residual add, and optionally the next layer's
//! input fake quantization), on `[pixels, channels]`.
//!
//! Training forward: batch statistics per channel (mean and the biased variance, as burn's
//! `batch_norm_train`), then `y = act(x * a + b) [+ r]` with `a = gamma / sqrt(var + eps)` and
//! `b = beta - mean * a`: two passes over `x` (statistics, output). With an output quantization
//! the output is written on its grid directly (the step, when it is the batch's, comes from a
//! strided sample of `y` taken between the passes). Backward, with `dz = dy` where the ReLU6 (and
//! the quantizer's clip range) passed and 0 elsewhere: `dx = a * (dz - mean(dz) - x̂ * mean(dz * x̂))`,
//! `dgamma = Σ dz * x̂`, `dbeta = Σ dz`: two passes (sums, then `dx`), `x̂` and the masks recomputed
//! from `x`.

use rayon::prelude::*;

use super::{Isa, par_build, rows_per_task, simd};
use crate::grid::{self, Grid};

pub(crate) use crate::ops::After;

/// The output written on a quantization grid (a ReLU6 output feeding a quantized layer).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct OutQuant {
    pub grid: Grid,
    pub step: f32,
    /// The clipped straight-through gradient (zero above the clip range), else the identity.
    pub clipped: bool,
}

impl OutQuant {
    /// The largest pre-activation value whose gradient passes the ReLU6 and the quantizer.
    fn upper(q: Option<&OutQuant>) -> f32 {
        match q {
            Some(q) if q.clipped => (q.grid.hi as f32 * q.step.max(grid::MIN_STEP)).min(6.0),
            _ => 6.0,
        }
    }
}

/// Per-channel scale and shift of the normalisation: `y = x * a + b`.
pub(crate) struct Affine {
    pub a: Vec<f32>,
    pub b: Vec<f32>,
    pub inv_std: Vec<f32>,
}

pub(crate) fn affine(gamma: &[f32], beta: &[f32], mean: &[f32], var: &[f32], eps: f64) -> Affine {
    let inv_std: Vec<f32> = var.iter().map(|v| (1.0 / ((*v as f64) + eps).sqrt()) as f32).collect();
    let a: Vec<f32> = gamma.iter().zip(&inv_std).map(|(g, s)| g * s).collect();
    let b: Vec<f32> = beta.iter().zip(mean).zip(&a).map(|((bt, m), a)| bt - m * a).collect();
    Affine { a, b, inv_std }
}

/// Per-channel mean and biased variance of `x` (`[rows, c]`): per chunk two passes in cache, chunks
/// merged in order (Chan et al.'s pairwise update, in f64).
pub(crate) fn statistics(x: &[f32], c: usize) -> (Vec<f32>, Vec<f32>) {
    let chunk = rows_per_task(c);
    let parts: Vec<(usize, Vec<f32>, Vec<f32>)> = x
        .par_chunks(chunk * c)
        .map(|xs| {
            simd(
                #[inline(always)]
                |_| {
                    let n = xs.len() / c;
                    let mut sum = vec![0f32; c];
                    let sr = &mut sum[..c];
                    for row in xs.chunks_exact(c) {
                        let row = &row[..c];
                        for ch in 0..c {
                            sr[ch] += row[ch];
                        }
                    }
                    let mean: Vec<f32> = sum.iter().map(|s| s / n as f32).collect();
                    let mut m2 = vec![0f32; c];
                    let (mr, m2r) = (&mean[..c], &mut m2[..c]);
                    for row in xs.chunks_exact(c) {
                        let row = &row[..c];
                        for ch in 0..c {
                            let d = row[ch] - mr[ch];
                            m2r[ch] += d * d;
                        }
                    }
                    (n, mean, m2)
                },
            )
        })
        .collect();
    let (mut n_all, mut mean, mut m2) = (0f64, vec![0f64; c], vec![0f64; c]);
    for (n, m, s) in parts {
        let n = n as f64;
        let total = n_all + n;
        for ch in 0..c {
            let delta = m[ch] as f64 - mean[ch];
            mean[ch] += delta * n / total;
            m2[ch] += s[ch] as f64 + delta * delta * n_all * n / total;
        }
        n_all = total;
    }
    let var = m2.iter().map(|s| (s / n_all.max(1.0)) as f32).collect();
    (mean.into_iter().map(|m| m as f32).collect(), var)
}

/// One pre-activation value `x * a + b` after ReLU6.
#[inline(always)]
fn relu6_of(isa: Isa, x: f32, a: f32, b: f32) -> f32 {
    isa.mul_add(x, a, b).clamp(0.0, 6.0)
}

/// `y = after(x * a + b)`; `residual` is added for [`After::Add`]; with `quant`, the ReLU6 output
/// on its grid.
pub(crate) fn apply(x: &[f32], c: usize, af: &Affine, after: After, residual: Option<&[f32]>, quant: Option<&OutQuant>) -> Vec<f32> {
    let chunk = rows_per_task(c) * c;
    par_build(x.len(), chunk, |t, ys| {
        let xs = &x[t * chunk..t * chunk + ys.len()];
        let rs = residual.map(|r| &r[t * chunk..t * chunk + ys.len()]);
        let (a, b) = (&af.a[..c], &af.b[..c]);
        simd(
            #[inline(always)]
            |isa| match (after, rs, quant) {
                (After::Add, Some(rs), _) => {
                    for ((yr, xr), rr) in ys.chunks_exact_mut(c).zip(xs.chunks_exact(c)).zip(rs.chunks_exact(c)) {
                        let (yr, xr, rr) = (&mut yr[..c], &xr[..c], &rr[..c]);
                        for ch in 0..c {
                            yr[ch] = isa.mul_add(xr[ch], a[ch], b[ch]) + rr[ch];
                        }
                    }
                }
                (After::Relu6, _, Some(q)) => {
                    let (g, s) = (q.grid, q.step.max(grid::MIN_STEP));
                    let inv = 1.0 / s;
                    for (yr, xr) in ys.chunks_exact_mut(c).zip(xs.chunks_exact(c)) {
                        let (yr, xr) = (&mut yr[..c], &xr[..c]);
                        for ch in 0..c {
                            yr[ch] = g.quantize_with(relu6_of(isa, xr[ch], a[ch], b[ch]), inv, s);
                        }
                    }
                }
                (After::Relu6, _, None) => {
                    for (yr, xr) in ys.chunks_exact_mut(c).zip(xs.chunks_exact(c)) {
                        let (yr, xr) = (&mut yr[..c], &xr[..c]);
                        for ch in 0..c {
                            yr[ch] = relu6_of(isa, xr[ch], a[ch], b[ch]);
                        }
                    }
                }
                _ => {
                    for (yr, xr) in ys.chunks_exact_mut(c).zip(xs.chunks_exact(c)) {
                        let (yr, xr) = (&mut yr[..c], &xr[..c]);
                        for ch in 0..c {
                            yr[ch] = isa.mul_add(xr[ch], a[ch], b[ch]);
                        }
                    }
                }
            },
        )
    })
}

/// The ReLU6 outputs `relu6(x * a + b)` at the positions of the strided sample of
/// `grid::strided_sample` (so the step chosen from it equals the one chosen from the output).
pub(crate) fn relu6_sample(x: &[f32], c: usize, af: &Affine) -> Vec<f32> {
    let max = grid::ACTIVATION_SAMPLE;
    let stride = if x.len() <= max { 1 } else { x.len().div_ceil(max) };
    simd(
        #[inline(always)]
        |isa| (0..x.len()).step_by(stride).map(|i| relu6_of(isa, x[i], af.a[i % c], af.b[i % c])).collect(),
    )
}

/// The largest ReLU6 output `relu6(x * a + b)` (for the max-range quantizer's step).
pub(crate) fn relu6_max(x: &[f32], c: usize, af: &Affine) -> f32 {
    let chunk = rows_per_task(c) * c;
    x.par_chunks(chunk)
        .map(|xs| {
            simd(
                #[inline(always)]
                |isa| {
                    let mut m = 0f32;
                    for xr in xs.chunks_exact(c) {
                        for ch in 0..c {
                            m = m.max(relu6_of(isa, xr[ch], af.a[ch], af.b[ch]));
                        }
                    }
                    m
                },
            )
        })
        .reduce(|| 0f32, f32::max)
}

/// Training forward: `(y, mean, var)`.
#[cfg(test)]
pub(crate) fn forward_train(x: &[f32], c: usize, gamma: &[f32], beta: &[f32], eps: f64, after: After, residual: Option<&[f32]>) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (mean, var) = statistics(x, c);
    let af = affine(gamma, beta, &mean, &var, eps);
    (apply(x, c, &af, after, residual, None), mean, var)
}

/// The gradient reaching the normalised output: `dy` where ReLU6 (and the quantizer) passed,
/// `0 <= z <= upper` (burn's clamp convention at the bounds).
#[inline(always)]
fn passed(dy: f32, z: f32, relu6: bool, upper: f32) -> f32 {
    if relu6 && !(0.0..=upper).contains(&z) { 0.0 } else { dy }
}

/// Gradients of batch norm: `(dx, dgamma, dbeta)` in training (`train`: the statistics depend on
/// `x`) or with constant statistics; the residual's gradient is `dy`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward(x: &[f32], c: usize, gamma: &[f32], beta: &[f32], mean: &[f32], var: &[f32], eps: f64, after: After, quant: Option<&OutQuant>, dy: &[f32], train: bool) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let af = affine(gamma, beta, mean, var, eps);
    let relu6 = after == After::Relu6;
    let upper = OutQuant::upper(quant);
    let (dgamma, dbeta) = param_grads(x, c, &af, mean, relu6, upper, dy);
    let n = (x.len() / c.max(1)).max(1) as f32;
    // Training: dx = a (dz - mean(dz) - x̂ mean(dz x̂)); constant statistics: dx = a dz.
    let (mean_dz, mean_dzx): (Vec<f32>, Vec<f32>) = if train { (dbeta.iter().map(|s| s / n).collect(), dgamma.iter().map(|s| s / n).collect()) } else { (vec![0.0; c], vec![0.0; c]) };
    let chunk = rows_per_task(c) * c;
    let dx = par_build(x.len(), chunk, |t, ds| {
        let xs = &x[t * chunk..t * chunk + ds.len()];
        let gs = &dy[t * chunk..t * chunk + ds.len()];
        let (a, b, m, is, mdz, mdzx) = (&af.a[..c], &af.b[..c], &mean[..c], &af.inv_std[..c], &mean_dz[..c], &mean_dzx[..c]);
        simd(
            #[inline(always)]
            |isa| {
                for ((dr, xr), gr) in ds.chunks_exact_mut(c).zip(xs.chunks_exact(c)).zip(gs.chunks_exact(c)) {
                    let (dr, xr, gr) = (&mut dr[..c], &xr[..c], &gr[..c]);
                    for ch in 0..c {
                        let z = isa.mul_add(xr[ch], a[ch], b[ch]);
                        let dz = passed(gr[ch], z, relu6, upper);
                        let xhat = (xr[ch] - m[ch]) * is[ch];
                        dr[ch] = a[ch] * (dz - mdz[ch] - xhat * mdzx[ch]);
                    }
                }
            },
        )
    });
    (dx, dgamma, dbeta)
}

/// `(Σ dz * x̂, Σ dz)` per channel (the gradients of gamma and beta), chunk partials in order.
fn param_grads(x: &[f32], c: usize, af: &Affine, mean: &[f32], relu6: bool, upper: f32, dy: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let chunk = rows_per_task(c) * c;
    let parts: Vec<(Vec<f32>, Vec<f32>)> = x
        .par_chunks(chunk)
        .zip(dy.par_chunks(chunk))
        .map(|(xs, gs)| {
            let (a, b, m, is) = (&af.a[..c], &af.b[..c], &mean[..c], &af.inv_std[..c]);
            simd(
                #[inline(always)]
                |isa| {
                    let (mut sdx, mut sd) = (vec![0f32; c], vec![0f32; c]);
                    let (sdx_r, sd_r) = (&mut sdx[..c], &mut sd[..c]);
                    for (xr, gr) in xs.chunks_exact(c).zip(gs.chunks_exact(c)) {
                        let (xr, gr) = (&xr[..c], &gr[..c]);
                        for ch in 0..c {
                            let z = isa.mul_add(xr[ch], a[ch], b[ch]);
                            let dz = passed(gr[ch], z, relu6, upper);
                            sd_r[ch] += dz;
                            sdx_r[ch] = isa.mul_add(dz, (xr[ch] - m[ch]) * is[ch], sdx_r[ch]);
                        }
                    }
                    (sdx, sd)
                },
            )
        })
        .collect();
    let (mut gx, mut g) = (vec![0f64; c], vec![0f64; c]);
    for (sdx, sd) in parts {
        for ch in 0..c {
            gx[ch] += sdx[ch] as f64;
            g[ch] += sd[ch] as f64;
        }
    }
    (gx.into_iter().map(|v| v as f32).collect(), g.into_iter().map(|v| v as f32).collect())
}
