//! Dense convolutions in NHWC through GEMM (the `gemm` crate burn-flex already builds): 1x1
//! convolutions as one `[pixels, c_in] x [c_in, c_out]` product over the whole batch, other
//! kernels (the stem) through im2col. Every product runs single-threaded inside a task of a fixed
//! number of rows; reductions over pixels (weight gradients) sum per-task partials in order.
//!
//! Weights keep burn's layout `[c_out, c_in, k, k]`; im2col columns are ordered `(c_in, ky, kx)` so
//! that the weight matrix is that tensor viewed as `[c_out, c_in * k * k]`.

use rayon::prelude::*;

use super::{par_build, rows_per_task, sum_partials};

/// A strided matrix operand: element (row, col) at `row * rs + col * cs`.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a> {
    pub data: &'a [f32],
    pub rs: isize,
    pub cs: isize,
}

impl<'a> Mat<'a> {
    /// Row-major `[rows, cols]`.
    pub fn rows(data: &'a [f32], cols: usize) -> Mat<'a> {
        Mat { data, rs: cols as isize, cs: 1 }
    }

    /// The transpose of row-major `[rows, cols]` (a `[cols, rows]` view).
    pub fn transposed(data: &'a [f32], cols: usize) -> Mat<'a> {
        Mat { data, rs: 1, cs: cols as isize }
    }
}

/// `out[m, n] = a[m, k] * b[k, n]` into row-major `out` (overwritten), single-threaded.
pub(crate) fn matmul(out: &mut [f32], m: usize, n: usize, k: usize, a: Mat, b: Mat) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        out[..m * n].fill(0.0);
        return;
    }
    debug_assert!(out.len() >= m * n);
    // SAFETY: the operands hold every element their strides address (callers pass whole
    // row-major buffers of the stated shapes) and `out` holds m * n elements.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.data.as_ptr(),
            a.cs,
            a.rs,
            b.data.as_ptr(),
            b.cs,
            b.rs,
            0.0f32,
            1.0f32,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// `y[p, co] = Σ_ci x[p, ci] w[co, ci]`: a 1x1 convolution over `x` `[pixels, c_in]`.
pub(crate) fn pointwise(x: &[f32], c_in: usize, w: &[f32], c_out: usize) -> Vec<f32> {
    let pixels = x.len() / c_in.max(1);
    let rows = rows_per_task(c_in.max(c_out));
    par_build(pixels * c_out, rows * c_out, |t, ys| {
        let r = ys.len() / c_out;
        let xs = &x[t * rows * c_in..(t * rows + r) * c_in];
        matmul(ys, r, c_out, c_in, Mat::rows(xs, c_in), Mat::transposed(w, c_in));
    })
}

/// `dx[p, ci] = Σ_co dy[p, co] w[co, ci]`.
pub(crate) fn pointwise_dx(dy: &[f32], c_out: usize, w: &[f32], c_in: usize) -> Vec<f32> {
    let pixels = dy.len() / c_out.max(1);
    let rows = rows_per_task(c_in.max(c_out));
    par_build(pixels * c_in, rows * c_in, |t, ds| {
        let r = ds.len() / c_in;
        let gs = &dy[t * rows * c_out..(t * rows + r) * c_out];
        matmul(ds, r, c_in, c_out, Mat::rows(gs, c_out), Mat::rows(w, c_in));
    })
}

/// `Σ_p a[p, i] b[p, j]` for row-major `a` `[pixels, m]` and `b` `[pixels, n]`: `[m, n]`, reduced
/// over fixed chunks of pixels in order.
pub(crate) fn reduce_outer(a: &[f32], m: usize, b: &[f32], n: usize) -> Vec<f32> {
    let pixels = a.len() / m.max(1);
    let rows = rows_per_task(m.max(n)).max(64);
    let tasks = pixels.div_ceil(rows).max(1);
    let parts: Vec<Vec<f32>> = (0..tasks)
        .into_par_iter()
        .map(|t| {
            let (lo, hi) = (t * rows, ((t + 1) * rows).min(pixels));
            let mut out = vec![0f32; m * n];
            matmul(&mut out, m, n, hi - lo, Mat::transposed(&a[lo * m..hi * m], m), Mat::rows(&b[lo * n..hi * n], n));
            out
        })
        .collect();
    sum_partials(&parts, m * n).into_iter().map(|v| v as f32).collect()
}

/// `dw[co, ci] = Σ_p dy[p, co] x[p, ci]`.
pub(crate) fn pointwise_dw(x: &[f32], c_in: usize, dy: &[f32], c_out: usize) -> Vec<f32> {
    reduce_outer(dy, c_out, x, c_in)
}

/// Geometry of a convolution over NHWC images with padding `k / 2`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub batch: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub c_in: usize,
    pub c_out: usize,
    pub kernel: usize,
    pub stride: usize,
}

impl Geometry {
    pub fn pad(&self) -> usize {
        self.kernel / 2
    }
    pub fn out_h(&self) -> usize {
        (self.in_h + 2 * self.pad() - self.kernel) / self.stride + 1
    }
    pub fn out_w(&self) -> usize {
        (self.in_w + 2 * self.pad() - self.kernel) / self.stride + 1
    }
    fn cols(&self) -> usize {
        self.c_in * self.kernel * self.kernel
    }
}

/// The im2col rows of output pixels `first..first + count` (of the whole batch).
fn im2col(x: &[f32], g: &Geometry, first: usize, count: usize, cols: &mut [f32]) {
    let (oh, ow, k, pad) = (g.out_h(), g.out_w(), g.kernel, g.pad() as isize);
    let kk = k * k;
    for (r, row) in cols.chunks_exact_mut(g.cols()).take(count).enumerate() {
        let p = first + r;
        let (n, oy, ox) = (p / (oh * ow), p / ow % oh, p % ow);
        for ky in 0..k {
            let iy = (oy * g.stride) as isize + ky as isize - pad;
            for kx in 0..k {
                let ix = (ox * g.stride) as isize + kx as isize - pad;
                let inside = iy >= 0 && ix >= 0 && (iy as usize) < g.in_h && (ix as usize) < g.in_w;
                for ci in 0..g.c_in {
                    row[ci * kk + ky * k + kx] = if inside { x[((n * g.in_h + iy as usize) * g.in_w + ix as usize) * g.c_in + ci] } else { 0.0 };
                }
            }
        }
    }
}

/// A dense (groups = 1) convolution: `[batch, out_h, out_w, c_out]`.
pub(crate) fn dense(x: &[f32], g: &Geometry, w: &[f32]) -> Vec<f32> {
    let pixels = g.batch * g.out_h() * g.out_w();
    let rows = rows_per_task(g.cols().max(g.c_out));
    par_build(pixels * g.c_out, rows * g.c_out, |t, ys| {
        let r = ys.len() / g.c_out;
        let mut cols = vec![0f32; r * g.cols()];
        im2col(x, g, t * rows, r, &mut cols);
        matmul(ys, r, g.c_out, g.cols(), Mat::rows(&cols, g.cols()), Mat::transposed(w, g.cols()));
    })
}

/// The weight gradient of [`dense`]: `[c_out, c_in, k, k]`.
pub(crate) fn dense_dw(x: &[f32], g: &Geometry, dy: &[f32]) -> Vec<f32> {
    let pixels = g.batch * g.out_h() * g.out_w();
    let rows = rows_per_task(g.cols().max(g.c_out)).max(64);
    let tasks = pixels.div_ceil(rows).max(1);
    let m = g.c_out;
    let n = g.cols();
    let parts: Vec<Vec<f32>> = (0..tasks)
        .into_par_iter()
        .map(|t| {
            let (lo, hi) = (t * rows, ((t + 1) * rows).min(pixels));
            let mut cols = vec![0f32; (hi - lo) * n];
            im2col(x, g, lo, hi - lo, &mut cols);
            let mut out = vec![0f32; m * n];
            matmul(&mut out, m, n, hi - lo, Mat::transposed(&dy[lo * m..hi * m], m), Mat::rows(&cols, n));
            out
        })
        .collect();
    sum_partials(&parts, m * n).into_iter().map(|v| v as f32).collect()
}

/// The input gradient of [`dense`]: per image, `dcols = dy * w` scattered back (col2im).
pub(crate) fn dense_dx(dy: &[f32], g: &Geometry, w: &[f32]) -> Vec<f32> {
    let (oh, ow, k, pad) = (g.out_h(), g.out_w(), g.kernel, g.pad() as isize);
    let kk = k * k;
    let image = g.in_h * g.in_w * g.c_in;
    par_build(g.batch * image, image, |n, dxi| {
        let pixels = oh * ow;
        let mut dcols = vec![0f32; pixels * g.cols()];
        matmul(&mut dcols, pixels, g.cols(), g.c_out, Mat::rows(&dy[n * pixels * g.c_out..(n + 1) * pixels * g.c_out], g.c_out), Mat::rows(w, g.cols()));
        for (p, row) in dcols.chunks_exact(g.cols()).enumerate() {
            let (oy, ox) = (p / ow, p % ow);
            for ky in 0..k {
                let iy = (oy * g.stride) as isize + ky as isize - pad;
                if iy < 0 || iy as usize >= g.in_h {
                    continue;
                }
                for kx in 0..k {
                    let ix = (ox * g.stride) as isize + kx as isize - pad;
                    if ix < 0 || ix as usize >= g.in_w {
                        continue;
                    }
                    let base = (iy as usize * g.in_w + ix as usize) * g.c_in;
                    for ci in 0..g.c_in {
                        dxi[base + ci] += row[ci * kk + ky * k + kx];
                    }
                }
            }
        }
    })
}
