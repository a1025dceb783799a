//! The stock burn compositions of the fused ops, same signatures: what the `ndarray` backend
//! runs, and the oracle the fused ops are checked against (values and gradients).

use burn::prelude::*;
use burn::tensor::activation::relu6;
use burn::tensor::module::{batch_norm, batch_norm_train, conv2d};
use burn::tensor::ops::ConvOptions;

use super::{After, BatchNormOutput};
use crate::grid::{self, Grid};

fn nchw(x: Tensor<4>) -> Tensor<4> {
    x.permute([0, 3, 1, 2])
}

fn nhwc(x: Tensor<4>) -> Tensor<4> {
    x.permute([0, 2, 3, 1])
}

/// Convolution of NHWC `x` with `w` `[c_out, c_in / groups, k, k]`, padding `k / 2`.
pub fn conv(x: Tensor<4>, w: Tensor<4>, stride: usize, groups: usize) -> Tensor<4> {
    let k = w.dims()[2];
    nhwc(conv2d(nchw(x), w, None, ConvOptions::new([stride, stride], [k / 2, k / 2], [1, 1], groups)))
}

fn finish(y: Tensor<4>, after: After, residual: Option<Tensor<4>>) -> Tensor<4> {
    match (after, residual) {
        (After::Relu6, _) => relu6(y),
        (After::Add, Some(r)) => y + r,
        _ => y,
    }
}

pub fn batch_norm_train_op(x: Tensor<4>, gamma: Tensor<1>, beta: Tensor<1>, after: After, residual: Option<Tensor<4>>) -> BatchNormOutput {
    let out = batch_norm_train(nchw(x), gamma, beta, crate::supernet::BN_EPS);
    BatchNormOutput { y: finish(nhwc(out.output), after, residual), mean: out.mean, var: out.variance }
}

#[allow(clippy::too_many_arguments)]
pub fn batch_norm_eval_op(x: Tensor<4>, gamma: Tensor<1>, beta: Tensor<1>, mean: Tensor<1>, var: Tensor<1>, after: After, residual: Option<Tensor<4>>) -> Tensor<4> {
    let y = batch_norm(nchw(x), gamma, beta, mean, var, crate::supernet::BN_EPS);
    finish(nhwc(y), after, residual)
}

/// `x` (rows = `steps.dims()[0]`, or one step) on `grid`, with the identity or clipped
/// straight-through gradient.
pub fn fake_quant<const D: usize>(x: Tensor<D>, steps: Tensor<1>, grid: Grid, clipped_gradient: bool) -> Tensor<D> {
    let rows = steps.dims()[0];
    let mut shape = [1usize; D];
    shape[0] = rows;
    let step = steps.detach().clamp_min(grid::MIN_STEP).reshape(shape);
    let inv = step.clone().recip();
    let q = x.clone().detach().mul(inv).round().clamp(grid.lo as f32, grid.hi as f32).mul(step.clone());
    if clipped_gradient {
        let (lo, hi) = (step.clone().mul_scalar(grid.lo as f32), step.mul_scalar(grid.hi as f32));
        let inside = x.clone().detach().greater_equal(lo).bool_and(x.clone().detach().lower_equal(hi)).float();
        let passed = x * inside;
        passed.clone() + (q - passed.detach())
    } else {
        x.clone() + (q - x.detach())
    }
}

/// The step (`[1]`) of a batch: clip-searched on a strided sample, or max-range.
pub fn activation_step<const D: usize>(x: &Tensor<D>, grid: Grid, clip_search: bool) -> Tensor<1> {
    let v = x.clone().detach().into_data().convert::<f32>().try_to_vec::<f32>().expect("f32 tensor data");
    let s = if clip_search { grid::mse_step(&grid::strided_sample(&v, grid::ACTIVATION_SAMPLE), grid) } else { grid::max_range_step(&v, grid) };
    Tensor::<1>::from_data(TensorData::new(vec![s], [1]), &x.device())
}

/// Batch norm, ReLU6, then the output on `grid` at the batch's step: `(output, step)`.
pub fn batch_norm_relu6_quant_train(x: Tensor<4>, gamma: Tensor<1>, beta: Tensor<1>, grid: Grid, clip_search: bool, clipped_gradient: bool) -> (BatchNormOutput, Tensor<1>) {
    let out = batch_norm_train_op(x, gamma, beta, After::Relu6, None);
    let step = activation_step(&out.y, grid, clip_search);
    let y = fake_quant(out.y, step.clone(), grid, clipped_gradient);
    (BatchNormOutput { y, mean: out.mean, var: out.var }, step)
}

#[allow(clippy::too_many_arguments)]
pub fn batch_norm_relu6_quant_eval(x: Tensor<4>, gamma: Tensor<1>, beta: Tensor<1>, mean: Tensor<1>, var: Tensor<1>, step: Tensor<1>, grid: Grid, clipped_gradient: bool) -> Tensor<4> {
    let y = batch_norm_eval_op(x, gamma, beta, mean, var, After::Relu6, None);
    fake_quant(y, step, grid, clipped_gradient)
}
