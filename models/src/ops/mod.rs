//! The supernet's layer ops on NHWC activations, fused for training speed: convolutions
//! (pointwise as one GEMM over the batch, depthwise direct, dense through im2col), batch norm
//! fused with ReLU6 or the residual add, and fake quantization with its straight-through
//! gradient, each one node of the autodiff graph with a hand-written backward pass.
//!
//! On the default `flex` backend these run as a burn backend extension ([`flex`]) over plain-Rust
//! kernels ([`kernels`]); on `ndarray` (and in the tests, as the oracle) the stock burn
//! composition ([`reference`]) runs instead, with the same signatures and results to rounding.
//! Internal order: `kernels` (slices) -> `flex` (extension, autodiff) -> this facade.

#[cfg(feature = "flex")]
pub(crate) mod kernels;
pub mod reference;

#[cfg(feature = "flex")]
pub(crate) mod flex;

use burn::prelude::*;

use crate::grid::Grid;

/// What follows a batch norm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum After {
    /// Nothing (a linear layer).
    None,
    /// ReLU6.
    Relu6,
    /// A residual added to the output.
    Add,
}

/// Batch norm in training: the output and the batch's statistics (mean, biased variance).
pub struct BatchNormOutput {
    pub y: Tensor<4>,
    pub mean: Tensor<1>,
    pub var: Tensor<1>,
}

/// Convolution of NHWC `x` with `w` `[c_out, c_in / groups, k, k]`, padding `k / 2`: NHWC out.
pub fn conv(x: Tensor<4>, w: Tensor<4>, stride: usize, groups: usize) -> Tensor<4> {
    #[cfg(feature = "flex")]
    {
        use burn::backend::Dispatch;
        use flex::FusedOps;
        let [_, _, _, c] = x.dims();
        let [c_out, _, k, _] = w.dims();
        let (x, w) = (x.into_dispatch(), w.into_dispatch());
        let y = if groups == 1 && k == 1 && stride == 1 {
            <Dispatch as FusedOps>::pw_conv(x, w)
        } else if groups == c && c_out == c && groups > 1 {
            <Dispatch as FusedOps>::dw_conv(x, w, stride)
        } else if groups == 1 {
            <Dispatch as FusedOps>::dense_conv(x, w, stride)
        } else {
            return reference::conv(Tensor::from_dispatch(x), Tensor::from_dispatch(w), stride, groups);
        };
        Tensor::from_dispatch(y)
    }
    #[cfg(not(feature = "flex"))]
    reference::conv(x, w, stride, groups)
}

/// Training batch norm of NHWC `x` (batch statistics), then ReLU6 ([`After::Relu6`]) or
/// `+ residual` ([`After::Add`]).
pub fn batch_norm_train(x: Tensor<4>, gamma: Tensor<1>, beta: Tensor<1>, after: After, residual: Option<Tensor<4>>) -> BatchNormOutput {
    #[cfg(feature = "flex")]
    {
        use burn::backend::Dispatch;
        use flex::FusedOps;
        let (x, g, b) = (x.into_dispatch(), gamma.into_dispatch(), beta.into_dispatch());
        let (y, m, v) = match (after, residual) {
            (After::Add, Some(r)) => <Dispatch as FusedOps>::bn_add_train(x, g, b, r.into_dispatch()),
            (after, _) => <Dispatch as FusedOps>::bn_train(x, g, b, after == After::Relu6),
        };
        BatchNormOutput { y: Tensor::from_dispatch(y), mean: Tensor::from_dispatch(m), var: Tensor::from_dispatch(v) }
    }
    #[cfg(not(feature = "flex"))]
    reference::batch_norm_train_op(x, gamma, beta, after, residual)
}

/// Batch norm of NHWC `x` with given statistics, then ReLU6 or `+ residual`.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_eval(x: Tensor<4>, gamma: Tensor<1>, beta: Tensor<1>, mean: Tensor<1>, var: Tensor<1>, after: After, residual: Option<Tensor<4>>) -> Tensor<4> {
    #[cfg(feature = "flex")]
    {
        use burn::backend::Dispatch;
        use flex::FusedOps;
        let (x, g, b, m, v) = (x.into_dispatch(), gamma.into_dispatch(), beta.into_dispatch(), mean.into_dispatch(), var.into_dispatch());
        let y = match (after, residual) {
            (After::Add, Some(r)) => <Dispatch as FusedOps>::bn_add_eval(x, g, b, m, v, r.into_dispatch()),
            (after, _) => <Dispatch as FusedOps>::bn_eval(x, g, b, m, v, after == After::Relu6),
        };
        Tensor::from_dispatch(y)
    }
    #[cfg(not(feature = "flex"))]
    reference::batch_norm_eval_op(x, gamma, beta, mean, var, after, residual)
}

/// Training batch norm of NHWC `x`, ReLU6, and the output fake-quantized on `grid` with the
/// batch's step (clip-searched on a strided sample, or max-range): the output, the statistics and
/// the step. Equal to [`batch_norm_train`] then [`activation_step`] and [`fake_quant`] on its
/// output, in one pass less and one autodiff node.
pub fn batch_norm_relu6_quant_train(x: Tensor<4>, gamma: Tensor<1>, beta: Tensor<1>, grid: Grid, clip_search: bool, clipped_gradient: bool) -> (BatchNormOutput, Tensor<1>) {
    #[cfg(feature = "flex")]
    {
        use burn::backend::Dispatch;
        use flex::FusedOps;
        let (y, m, v, s) = <Dispatch as FusedOps>::bn_relu6_quant_train(x.into_dispatch(), gamma.into_dispatch(), beta.into_dispatch(), grid.lo, grid.hi, clip_search, clipped_gradient);
        (BatchNormOutput { y: Tensor::from_dispatch(y), mean: Tensor::from_dispatch(m), var: Tensor::from_dispatch(v) }, Tensor::from_dispatch(s))
    }
    #[cfg(not(feature = "flex"))]
    reference::batch_norm_relu6_quant_train(x, gamma, beta, grid, clip_search, clipped_gradient)
}

/// Batch norm of NHWC `x` with given statistics, ReLU6, and the output fake-quantized on `grid`
/// with `step`.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_relu6_quant_eval(x: Tensor<4>, gamma: Tensor<1>, beta: Tensor<1>, mean: Tensor<1>, var: Tensor<1>, step: Tensor<1>, grid: Grid, clipped_gradient: bool) -> Tensor<4> {
    #[cfg(feature = "flex")]
    {
        use burn::backend::Dispatch;
        use flex::FusedOps;
        let y = <Dispatch as FusedOps>::bn_relu6_quant_eval(x.into_dispatch(), gamma.into_dispatch(), beta.into_dispatch(), mean.into_dispatch(), var.into_dispatch(), step.detach().into_dispatch(), grid.lo, grid.hi, clipped_gradient);
        Tensor::from_dispatch(y)
    }
    #[cfg(not(feature = "flex"))]
    reference::batch_norm_relu6_quant_eval(x, gamma, beta, mean, var, step, grid, clipped_gradient)
}

/// `x` on `grid`, one step per leading-dimension row (`steps` `[rows]`) or one step (`[1]`); the
/// gradient is the identity, or zero outside the clip range when `clipped_gradient`.
pub fn fake_quant<const D: usize>(x: Tensor<D>, steps: Tensor<1>, grid: Grid, clipped_gradient: bool) -> Tensor<D> {
    #[cfg(feature = "flex")]
    {
        use burn::backend::Dispatch;
        use flex::FusedOps;
        let y = <Dispatch as FusedOps>::fake_quant(x.into_dispatch(), steps.detach().into_dispatch(), grid.lo, grid.hi, clipped_gradient);
        Tensor::from_dispatch(y)
    }
    #[cfg(not(feature = "flex"))]
    reference::fake_quant(x, steps, grid, clipped_gradient)
}

/// The step (`[1]`, no gradient) of a batch on `grid`: clip-searched or max-range.
pub fn activation_step<const D: usize>(x: &Tensor<D>, grid: Grid, clip_search: bool) -> Tensor<1> {
    #[cfg(feature = "flex")]
    {
        use burn::backend::Dispatch;
        use flex::FusedOps;
        Tensor::from_dispatch(<Dispatch as FusedOps>::activation_step(x.clone().into_dispatch(), grid.lo, grid.hi, clip_search))
    }
    #[cfg(not(feature = "flex"))]
    reference::activation_step(x, grid, clip_search)
}

/// Gradient checks: every fused op against the stock composition, values and gradients of every
/// input, on the shapes the supernet uses and the awkward ones (kernels 3/5/7, strides 1/2, odd
/// sizes, 4x4 planes under a 7x7 kernel, odd batch).
#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn random<const D: usize>(shape: [usize; D], seed: u64, scale: f32) -> Vec<f32> {
        let mut r = Rng::new(seed);
        (0..shape.iter().product::<usize>()).map(|_| r.normal() as f32 * scale).collect()
    }

    fn leaf<const D: usize>(v: &[f32], shape: [usize; D]) -> Tensor<D> {
        constant(v, shape).require_grad()
    }

    fn constant<const D: usize>(v: &[f32], shape: [usize; D]) -> Tensor<D> {
        Tensor::<D>::from_data(TensorData::new(v.to_vec(), shape), &Device::flex().autodiff())
    }

    fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
    }

    /// max |a - b| relative to max |b|.
    fn rel(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
        a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
    }

    /// Run `f` on fresh leaves made from `inputs` (those at `constants` without gradients),
    /// backpropagate `Σ y * weights`, and return the output and every input's gradient.
    fn run(inputs: &[(Vec<f32>, Vec<usize>)], constants: &[usize], f: &dyn Fn(&[Tensor<4>]) -> Tensor<4>) -> (Vec<f32>, Vec<Vec<f32>>) {
        let leaves: Vec<Tensor<4>> = inputs
            .iter()
            .enumerate()
            .map(|(i, (v, s))| {
                let mut shape = [1usize; 4];
                shape[4 - s.len()..].copy_from_slice(s);
                if constants.contains(&i) { constant(v, shape) } else { leaf(v, shape) }
            })
            .collect();
        let y = f(&leaves);
        let weights = Tensor::<4>::from_data(TensorData::new(random(y.dims(), 99, 1.0), y.dims()), &y.device());
        let grads = (y.clone() * weights).sum().backward();
        let g = leaves.iter().map(|l| l.grad(&grads).map(host).unwrap_or_default()).collect();
        (host(y), g)
    }

    fn check(name: &str, inputs: &[(Vec<f32>, Vec<usize>)], fused: &dyn Fn(&[Tensor<4>]) -> Tensor<4>, stock: &dyn Fn(&[Tensor<4>]) -> Tensor<4>) {
        check_with_constants(name, inputs, &[], fused, stock)
    }

    fn check_with_constants(name: &str, inputs: &[(Vec<f32>, Vec<usize>)], constants: &[usize], fused: &dyn Fn(&[Tensor<4>]) -> Tensor<4>, stock: &dyn Fn(&[Tensor<4>]) -> Tensor<4>) {
        let (y1, g1) = run(inputs, constants, fused);
        let (y2, g2) = run(inputs, constants, stock);
        let e = rel(&y1, &y2);
        assert!(e <= 1e-4, "{name}: output relative error {e}");
        for (i, (a, b)) in g1.iter().zip(&g2).enumerate() {
            let e = rel(a, b);
            assert!(e <= 1e-4, "{name}: gradient of input {i}: relative error {e}");
        }
    }

    fn v1(t: &Tensor<4>) -> Tensor<1> {
        let n: usize = t.dims().iter().product();
        t.clone().reshape([n])
    }

    #[test]
    fn convolutions_match_the_stock_ops() {
        let mut seed = 1;
        let mut next = || {
            seed += 1;
            seed
        };
        // Pointwise, odd batch and channel counts.
        let (b, h, c_in, c_out) = (3, 5, 5, 7);
        let inputs = [(random([b, h, h, c_in], next(), 1.0), vec![b, h, h, c_in]), (random([c_out, c_in, 1, 1], next(), 0.5), vec![c_out, c_in, 1, 1])];
        check("pointwise", &inputs, &|t| conv(t[0].clone(), t[1].clone(), 1, 1), &|t| reference::conv(t[0].clone(), t[1].clone(), 1, 1));
        // Depthwise: kernels 3/5/7, strides 1/2, sizes 4 (under a 7x7 kernel: padding 3), 7, 9.
        for k in [3, 5, 7] {
            for stride in [1, 2] {
                for size in [4, 7, 9] {
                    let c = 6;
                    let inputs = [(random([3, size, size, c], next(), 1.0), vec![3, size, size, c]), (random([c, 1, k, k], next(), 0.3), vec![c, 1, k, k])];
                    let name = format!("depthwise k{k} s{stride} {size}x{size}");
                    check(&name, &inputs, &|t| conv(t[0].clone(), t[1].clone(), stride, c), &|t| reference::conv(t[0].clone(), t[1].clone(), stride, c));
                }
            }
        }
        // Dense (the stem): kernels 3/5, strides 1/2, odd sizes.
        for (k, stride, size) in [(3, 1, 7), (3, 2, 9), (5, 1, 6), (5, 2, 7)] {
            let inputs = [(random([3, size, size, 2], next(), 1.0), vec![3, size, size, 2]), (random([4, 2, k, k], next(), 0.3), vec![4, 2, k, k])];
            let name = format!("dense k{k} s{stride} {size}x{size}");
            check(&name, &inputs, &|t| conv(t[0].clone(), t[1].clone(), stride, 1), &|t| reference::conv(t[0].clone(), t[1].clone(), stride, 1));
        }
    }

    #[test]
    fn batch_norms_match_the_stock_ops() {
        let (b, h, c) = (3, 5, 6);
        // Outputs straddle both ReLU6 bounds: mean 2, spread 3.
        let x: Vec<f32> = random([b, h, h, c], 5, 3.0).into_iter().map(|v| v + 2.0).collect();
        let inputs = [
            (x, vec![b, h, h, c]),
            (random([c], 6, 1.0).into_iter().map(|v| 1.5 + v * 0.5).collect(), vec![c]),
            (random([c], 7, 1.0).into_iter().map(|v| 2.0 + v).collect(), vec![c]),
            (random([b, h, h, c], 8, 1.0), vec![b, h, h, c]),
            (random([c], 9, 1.0), vec![c]),
            (random([c], 10, 1.0).into_iter().map(|v| 1.0 + v.abs()).collect(), vec![c]),
        ];
        for after in [After::None, After::Relu6, After::Add] {
            let res = |t: &[Tensor<4>]| (after == After::Add).then(|| t[3].clone());
            // The residual input gets a gradient only when it is added.
            let unused: &[usize] = if after == After::Add { &[4, 5] } else { &[3, 4, 5] };
            check_with_constants(
                &format!("batch norm (train) {after:?}"),
                &inputs,
                unused,
                &|t| batch_norm_train(t[0].clone(), v1(&t[1]), v1(&t[2]), after, res(t)).y,
                &|t| reference::batch_norm_train_op(t[0].clone(), v1(&t[1]), v1(&t[2]), after, res(t)).y,
            );
            // Calibrated statistics are constants.
            check_with_constants(
                &format!("batch norm (eval) {after:?}"),
                &inputs,
                unused,
                &|t| batch_norm_eval(t[0].clone(), v1(&t[1]), v1(&t[2]), v1(&t[4]), v1(&t[5]), after, res(t)),
                &|t| reference::batch_norm_eval_op(t[0].clone(), v1(&t[1]), v1(&t[2]), v1(&t[4]), v1(&t[5]), after, res(t)),
            );
        }
        // The statistics equal the stock ones.
        let x = leaf(&inputs[0].0, [b, h, h, c]);
        let g = Tensor::<1>::from_data(TensorData::new(inputs[1].0.clone(), [c]), &x.device());
        let bt = Tensor::<1>::from_data(TensorData::new(inputs[2].0.clone(), [c]), &x.device());
        let (f, s) = (batch_norm_train(x.clone(), g.clone(), bt.clone(), After::None, None), reference::batch_norm_train_op(x, g, bt, After::None, None));
        assert!(rel(&host(f.mean), &host(s.mean)) < 1e-5 && rel(&host(f.var), &host(s.var)) < 1e-5);
    }

    #[test]
    fn batch_norm_with_quantized_output_matches_the_stock_ops() {
        let (b, h, c) = (3, 5, 6);
        let x: Vec<f32> = random([b, h, h, c], 21, 3.0).into_iter().map(|v| v + 2.0).collect();
        let inputs = [
            (x, vec![b, h, h, c]),
            (random([c], 22, 1.0).into_iter().map(|v| 1.5 + v * 0.5).collect(), vec![c]),
            (random([c], 23, 1.0).into_iter().map(|v| 2.0 + v).collect(), vec![c]),
            (random([c], 24, 1.0), vec![c]),
            (random([c], 25, 1.0).into_iter().map(|v| 1.0 + v.abs()).collect(), vec![c]),
        ];
        for (bits, search, clipped) in [(2, true, true), (4, true, true), (8, false, false)] {
            let grid = Grid::unsigned(bits);
            check_with_constants(
                &format!("batch norm + ReLU6 + {bits}-bit quantization (train)"),
                &inputs,
                &[3, 4],
                &|t| batch_norm_relu6_quant_train(t[0].clone(), v1(&t[1]), v1(&t[2]), grid, search, clipped).0.y,
                &|t| reference::batch_norm_relu6_quant_train(t[0].clone(), v1(&t[1]), v1(&t[2]), grid, search, clipped).0.y,
            );
            let step = Tensor::<1>::from_data(TensorData::new(vec![0.9f32], [1]), &Device::flex().autodiff());
            check_with_constants(
                &format!("batch norm + ReLU6 + {bits}-bit quantization (eval)"),
                &inputs,
                &[3, 4],
                &|t| batch_norm_relu6_quant_eval(t[0].clone(), v1(&t[1]), v1(&t[2]), v1(&t[3]), v1(&t[4]), step.clone(), grid, clipped),
                &|t| reference::batch_norm_relu6_quant_eval(t[0].clone(), v1(&t[1]), v1(&t[2]), v1(&t[3]), v1(&t[4]), step.clone(), grid, clipped),
            );
            // The batch's step equals the unfused path's exactly.
            let x = leaf(&inputs[0].0, [b, h, h, c]);
            let g = Tensor::<1>::from_data(TensorData::new(inputs[1].0.clone(), [c]), &x.device());
            let bt = Tensor::<1>::from_data(TensorData::new(inputs[2].0.clone(), [c]), &x.device());
            let fused = batch_norm_relu6_quant_train(x.clone(), g.clone(), bt.clone(), grid, search, clipped).1;
            let unfused = activation_step(&batch_norm_train(x, g, bt, After::Relu6, None).y, grid, search);
            assert_eq!(host(fused), host(unfused), "{bits} bits");
        }
    }

    #[test]
    fn fake_quantization_matches_the_stock_ops() {
        let (b, h, c) = (3, 5, 4);
        let x = random([b, h, h, c], 11, 2.0);
        let inputs = [(x.clone(), vec![b, h, h, c])];
        for (grid, clipped) in [(Grid::signed(2), true), (Grid::unsigned(4), true), (Grid::signed(8), false)] {
            let step = Tensor::<1>::from_data(TensorData::new(vec![0.7f32], [1]), &Device::flex().autodiff());
            let name = format!("activation {grid:?} clipped {clipped}");
            check(&name, &inputs, &|t| fake_quant(t[0].clone(), step.clone(), grid, clipped), &|t| reference::fake_quant(t[0].clone(), step.clone(), grid, clipped));
            // The batch's step: the same as the stock path's, exactly.
            for search in [false, true] {
                let t = leaf(&x, [b, h, h, c]);
                assert_eq!(host(activation_step(&t, grid, search)), host(reference::activation_step(&t, grid, search)));
            }
        }
        // Per-row steps (weights), identity gradient.
        let w = random([5, 3, 3, 3], 12, 0.5);
        let steps = Tensor::<1>::from_data(TensorData::new(vec![0.1f32, 0.2, 0.05, 0.3, 0.15], [5]), &Device::flex().autodiff());
        check("weight per channel", &[(w, vec![5, 3, 3, 3])], &|t| fake_quant(t[0].clone(), steps.clone(), Grid::signed(4), false), &|t| reference::fake_quant(t[0].clone(), steps.clone(), Grid::signed(4), false));
    }

    #[test]
    fn kernels_give_the_same_bytes_on_one_and_two_threads() {
        use kernels::{bn, conv as ck, depthwise};
        let g = ck::Geometry { batch: 5, in_h: 9, in_w: 9, c_in: 24, c_out: 24, kernel: 5, stride: 2 };
        let x = random([5, 9, 9, 24], 13, 1.0);
        let w = random([24, 1, 5, 5], 14, 0.3);
        let dy = random([5, 5, 5, 24], 15, 1.0);
        let pw = random([40, 24, 1, 1], 16, 0.3);
        let big = random([64, 16, 16, 24], 17, 1.0);
        let gamma = random([24], 18, 1.0);
        let all = || {
            let y = depthwise::forward(&x, &g, &w);
            let dx = depthwise::dx(&dy, &g, &w);
            let dw = depthwise::dw(&x, &g, &dy);
            let p = ck::pointwise(&big, 24, &pw, 40);
            let pdw = ck::pointwise_dw(&big, 24, &p, 40);
            let (bn_y, m, v) = bn::forward_train(&big, 24, &gamma, &gamma, 1e-5, bn::After::Relu6, None);
            let (bdx, bdg, bdb) = bn::backward(&big, 24, &gamma, &gamma, &m, &v, 1e-5, bn::After::Relu6, None, &bn_y, true);
            [y, dx, dw, p, pdw, bn_y, m, v, bdx, bdg, bdb]
        };
        let pool = |n| rayon::ThreadPoolBuilder::new().num_threads(n).build().unwrap();
        let one = pool(1).install(all);
        let two = pool(2).install(all);
        for (i, (a, b)) in one.iter().zip(&two).enumerate() {
            assert!(a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()), "kernel output {i} differs between 1 and 2 threads");
        }
    }
}
