//! Fake quantization on slices: values rounded onto a grid (one step per row, or one for the
//! whole tensor), the straight-through gradient's mask, and the step of a batch of activations.
//! The arithmetic is `quant::clip`'s, so the fused and the stock paths quantize identically.

use rayon::prelude::*;

use super::{TASK_ELEMENTS, par_build, simd};
use crate::grid::{self, Grid};

/// Values per parallel task: whole rows (of `len / rows` values) when there are several steps.
fn task_len(len: usize, rows: usize) -> usize {
    let per_row = (len / rows.max(1)).max(1);
    if rows <= 1 { TASK_ELEMENTS } else { per_row * (TASK_ELEMENTS / per_row).max(1) }
}

/// Call `f(first index, step)` for each run of one step within `start..end`.
#[inline(always)]
fn runs(start: usize, end: usize, steps: &[f32], per_row: usize, mut f: impl FnMut(usize, usize, f32)) {
    let mut i = start;
    while i < end {
        let (run_end, s) = if steps.len() == 1 { (end, steps[0]) } else { ((((i / per_row) + 1) * per_row).min(end), steps[i / per_row]) };
        f(i, run_end, s.max(grid::MIN_STEP));
        i = run_end;
    }
}

/// `x` on `grid` with `steps` (each clamped to at least the smallest step); `x` is viewed as
/// `[steps.len(), -1]` (one step per row) or has one step.
pub(crate) fn fake_quant(x: &[f32], steps: &[f32], grid: Grid) -> Vec<f32> {
    let per_row = (x.len() / steps.len().max(1)).max(1);
    let chunk = task_len(x.len(), steps.len());
    par_build(x.len(), chunk, |t, ys| {
        let start = t * chunk;
        simd(
            #[inline(always)]
            |_| {
                runs(start, start + ys.len(), steps, per_row, |i, e, s| {
                    let inv = 1.0 / s;
                    for (o, v) in ys[i - start..e - start].iter_mut().zip(&x[i..e]) {
                        *o = grid.quantize_with(*v, inv, s);
                    }
                })
            },
        )
    })
}

/// The gradient of [`fake_quant`] with the clipped straight-through estimator, in place on `dy`:
/// kept where `lo * step <= x <= hi * step`, zeroed elsewhere.
pub(crate) fn clip_gradient(x: &[f32], steps: &[f32], grid: Grid, dy: &mut [f32]) {
    let per_row = (x.len() / steps.len().max(1)).max(1);
    let chunk = task_len(x.len(), steps.len());
    dy.par_chunks_mut(chunk).enumerate().for_each(|(t, ds)| {
        let start = t * chunk;
        simd(
            #[inline(always)]
            |_| {
                runs(start, start + ds.len(), steps, per_row, |i, e, s| {
                    let (lo, hi) = (grid.lo as f32 * s, grid.hi as f32 * s);
                    for (g, v) in ds[i - start..e - start].iter_mut().zip(&x[i..e]) {
                        if !(*v >= lo && *v <= hi) {
                            *g = 0.0;
                        }
                    }
                })
            },
        )
    });
}

/// The largest |x| (any order gives the same maximum, so this reduction is parallel).
pub(crate) fn max_abs(x: &[f32]) -> f32 {
    x.par_chunks(TASK_ELEMENTS).map(|c| c.iter().fold(0f32, |m, v| m.max(v.abs()))).reduce(|| 0f32, f32::max)
}
