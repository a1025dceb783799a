//! Depthwise convolution in NHWC with padding `k / 2`, direct (no im2col, no per-channel GEMMs):
//! for one output row, tap by tap, the run of output columns the tap reads inside the image
//! (computed, not tested per pixel), each a multiply-add over the contiguous channels. Forward
//! runs one output row per task; the input gradient scatters per image (images in parallel); the
//! weight gradient sums one partial per image, then the partials in image order.
//!
//! Weights are used transposed, `[k * k, c]` (tap-major), so that a tap's weights for all channels
//! are contiguous like the activations they multiply.

use rayon::prelude::*;

use super::conv::Geometry;
use super::{mul_add_into, par_build, simd, sum_partials};

/// `[c, 1, k, k]` (burn's depthwise weight) as `[k * k, c]`.
pub(crate) fn taps_of(w: &[f32], c: usize, k: usize) -> Vec<f32> {
    let kk = k * k;
    let mut t = vec![0f32; kk * c];
    for ch in 0..c {
        for i in 0..kk {
            t[i * c + ch] = w[ch * kk + i];
        }
    }
    t
}

/// `[k * k, c]` back to `[c, 1, k, k]`.
fn weights_of(t: &[f32], c: usize, k: usize) -> Vec<f32> {
    let kk = k * k;
    let mut w = vec![0f32; kk * c];
    for i in 0..kk {
        for ch in 0..c {
            w[ch * kk + i] = t[i * c + ch];
        }
    }
    w
}

/// The output indices `o` in `lo..hi` whose tap `t` reads inside `0..size` along one axis (input
/// index `o * stride + t - pad`).
#[inline(always)]
fn valid(t: usize, stride: usize, pad: usize, size: usize, out: usize) -> (usize, usize) {
    let lo = if t >= pad { 0 } else { (pad - t).div_ceil(stride) };
    let hi = if size + pad > t { ((size + pad - t - 1) / stride + 1).min(out) } else { 0 };
    (lo, hi.max(lo))
}

/// For output row `oy`, every valid tap `(ky, iy, kx)` with its run of output columns
/// `ox_lo..ox_hi` (input column `ox * stride + kx - pad`).
#[inline(always)]
fn for_each_tap(g: &Geometry, oy: usize, mut f: impl FnMut(usize, usize, usize, usize, usize)) {
    let (k, s, pad) = (g.kernel, g.stride, g.pad());
    let (ky_lo, ky_hi) = {
        // Taps ky with 0 <= oy * s + ky - pad < in_h.
        let lo = pad.saturating_sub(oy * s);
        let hi = (g.in_h + pad).saturating_sub(oy * s).min(k);
        (lo, hi.max(lo))
    };
    for ky in ky_lo..ky_hi {
        let iy = oy * s + ky - pad;
        for kx in 0..k {
            let (lo, hi) = valid(kx, s, pad, g.in_w, g.out_w());
            if lo < hi {
                f(ky, iy, kx, lo, hi);
            }
        }
    }
}

/// The depthwise convolution `[batch, out_h, out_w, c]` of `x` with weights `w` `[c, 1, k, k]`.
pub(crate) fn forward(x: &[f32], g: &Geometry, w: &[f32]) -> Vec<f32> {
    let (c, k, s, pad) = (g.c_in, g.kernel, g.stride, g.pad());
    let (oh, ow) = (g.out_h(), g.out_w());
    let taps = taps_of(w, c, k);
    par_build(g.batch * oh * ow * c, ow * c, |row, yr| {
        let (n, oy) = (row / oh, row % oh);
        simd(
            #[inline(always)]
            |isa| {
                for_each_tap(g, oy, |ky, iy, kx, lo, hi| {
                    let xrow = &x[(n * g.in_h + iy) * g.in_w * c..(n * g.in_h + iy + 1) * g.in_w * c];
                    let wv = &taps[(ky * k + kx) * c..(ky * k + kx + 1) * c];
                    for ox in lo..hi {
                        let ix = ox * s + kx - pad;
                        mul_add_into(isa, &mut yr[ox * c..(ox + 1) * c], &xrow[ix * c..(ix + 1) * c], wv);
                    }
                });
            },
        )
    })
}

/// The input gradient: per image, every output pixel's gradient scattered back through the taps
/// that read each input pixel (images in parallel, a fixed order within each).
pub(crate) fn dx(dy: &[f32], g: &Geometry, w: &[f32]) -> Vec<f32> {
    let (c, k, s, pad) = (g.c_in, g.kernel, g.stride, g.pad());
    let (oh, ow) = (g.out_h(), g.out_w());
    let taps = taps_of(w, c, k);
    let image_in = g.in_h * g.in_w * c;
    par_build(g.batch * image_in, image_in, |n, di| {
        simd(
            #[inline(always)]
            |isa| {
                for oy in 0..oh {
                    let grow = &dy[(n * oh + oy) * ow * c..(n * oh + oy + 1) * ow * c];
                    for_each_tap(g, oy, |ky, iy, kx, lo, hi| {
                        let wv = &taps[(ky * k + kx) * c..(ky * k + kx + 1) * c];
                        let drow = &mut di[iy * g.in_w * c..(iy + 1) * g.in_w * c];
                        for ox in lo..hi {
                            let ix = ox * s + kx - pad;
                            mul_add_into(isa, &mut drow[ix * c..(ix + 1) * c], &grow[ox * c..(ox + 1) * c], wv);
                        }
                    });
                }
            },
        )
    })
}

/// The weight gradient `[c, 1, k, k]`: per image `Σ dy[oy, ox, c] x[iy, ix, c]` per tap, then the
/// images' partials in order.
pub(crate) fn dw(x: &[f32], g: &Geometry, dy: &[f32]) -> Vec<f32> {
    let (c, k, s, pad) = (g.c_in, g.kernel, g.stride, g.pad());
    let (oh, ow) = (g.out_h(), g.out_w());
    let image_in = g.in_h * g.in_w * c;
    let image_out = oh * ow * c;
    let parts: Vec<Vec<f32>> = (0..g.batch)
        .into_par_iter()
        .map(|n| {
            let xi = &x[n * image_in..(n + 1) * image_in];
            let gi = &dy[n * image_out..(n + 1) * image_out];
            simd(
                #[inline(always)]
                |isa| {
                    let mut acc = vec![0f32; k * k * c];
                    for oy in 0..oh {
                        let grow = &gi[oy * ow * c..(oy + 1) * ow * c];
                        for_each_tap(g, oy, |ky, iy, kx, lo, hi| {
                            let t = ky * k + kx;
                            let a = &mut acc[t * c..(t + 1) * c];
                            let xrow = &xi[iy * g.in_w * c..(iy + 1) * g.in_w * c];
                            for ox in lo..hi {
                                let ix = ox * s + kx - pad;
                                mul_add_into(isa, a, &grow[ox * c..(ox + 1) * c], &xrow[ix * c..(ix + 1) * c]);
                            }
                        });
                    }
                    acc
                },
            )
        })
        .collect();
    let summed: Vec<f32> = sum_partials(&parts, k * k * c).into_iter().map(|v| v as f32).collect();
    weights_of(&summed, c, k)
}
