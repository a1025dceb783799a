//! The fused ops' kernels in plain Rust on `f32` slices, NHWC (`[pixels, channels]` row-major):
//! no tensors, no autodiff, so they are tested and benchmarked on their own.
//!
//! Parallelism and determinism: work is split over rayon by rows (pixels or images) into chunks
//! whose size depends on the tensor's shape only, never on the thread count; reductions (batch
//! statistics, weight gradients) sum one partial per chunk, then the partials in chunk order. So
//! every result is bit-identical on 1 and 2 threads, which the exact-resume test relies on.
//!
//! SIMD: the inner loops run over channels (contiguous in NHWC) and are written so the compiler
//! vectorises them; [`simd`](crate::simd::simd) runs a closure compiled for AVX2 when the CPU has
//! it (checked once at run time), so one portable binary gets 8-wide vectors where they exist.

pub(crate) mod bn;
pub(crate) mod conv;
pub(crate) mod depthwise;
pub(crate) mod quant;

pub(crate) use crate::simd::{Isa, simd};
use rayon::prelude::*;

/// Elements per parallel task (and per reduction chunk).
pub(crate) const TASK_ELEMENTS: usize = 1 << 15;

/// Rows per task for rows of `cols` values.
pub(crate) fn rows_per_task(cols: usize) -> usize {
    (TASK_ELEMENTS / cols.max(1)).max(1)
}

/// `acc[c] += a[c] * b[c]` over equal-length channel rows.
#[inline(always)]
pub(crate) fn mul_add_into(isa: Isa, acc: &mut [f32], a: &[f32], b: &[f32]) {
    for ((o, x), w) in acc.iter_mut().zip(a).zip(b) {
        *o = isa.mul_add(*x, *w, *o);
    }
}

/// A vector of `len` values built in parallel chunks of `chunk` values: `f(chunk index, chunk)`
/// receives each chunk zero-filled just before it writes it (in cache), so no separate pass
/// zeroes (or page-faults) the whole vector first.
pub(crate) fn par_build(len: usize, chunk: usize, f: impl Fn(usize, &mut [f32]) + Sync) -> Vec<f32> {
    use std::mem::MaybeUninit;
    let mut v: Vec<f32> = Vec::with_capacity(len);
    v.spare_capacity_mut()[..len].par_chunks_mut(chunk.max(1)).enumerate().for_each(|(i, c)| {
        for x in c.iter_mut() {
            x.write(0.0);
        }
        // SAFETY: every element of `c` was initialised just above.
        let c = unsafe { &mut *(c as *mut [MaybeUninit<f32>] as *mut [f32]) };
        f(i, c);
    });
    // SAFETY: the chunks cover `0..len` and every one was initialised.
    unsafe { v.set_len(len) };
    v
}

/// Sum `parts` (equal-length partial results, in order) into one vector in f64.
pub(crate) fn sum_partials(parts: &[Vec<f32>], len: usize) -> Vec<f64> {
    let mut out = vec![0f64; len];
    for p in parts {
        for (o, v) in out.iter_mut().zip(p) {
            *o += *v as f64;
        }
    }
    out
}
