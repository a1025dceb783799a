//! Fake quantization: values rounded onto the integer grid of a bit width in the forward pass,
//! with straight-through gradients in the backward pass.
//!
//! Two quantizers ([`Quantizer`]):
//!
//! * [`Quantizer::MseClip`] (the default; the hardware's operand grids): weights per output
//!   channel on Bit Fusion's two's-complement grid `[-2^(b-1), 2^(b-1) - 1]` (2 bits: `[-2, 1]`),
//!   activations after ReLU6 on the unsigned grid `[0, 2^b - 1]` and the linear block inputs on
//!   the signed grid; every step (per weight channel, per activation tensor) chosen by a clip
//!   search minimising the squared error ([`clip`]). Activation gradients pass where the value
//!   lies inside the clip range and are zero outside it (PACT/LSQ); weight gradients pass
//!   everywhere.
//! * [`Quantizer::MaxRange`] (the original, kept for the post-training comparison): symmetric
//!   per-tensor grid `±(2^(b-1) - 1)` with range = max |w| (APQ/HAQ `QModule`), activations with
//!   range = the batch's max |x|; identity gradients.
//!
//! Activation steps are the batch's while training and the calibrated ones (averaged over the
//! calibration batches) at evaluation. Bit widths of 16 and more leave the tensor unchanged.
//!
//! Hardware view: per-channel weight steps and per-tensor activation steps are scale factors that
//! fold into the output requantisation (batch-norm scale and the next layer's input step), which
//! runs outside the multiply-accumulate array on the accumulated 32-bit sums; the array computes
//! integer products of the grid values only. The simulator does not cost that requantisation.



use burn::prelude::*;
use serde::{Deserialize, Serialize};

pub use crate::grid::Grid;
use crate::grid as clip;
use crate::ops;

/// Widths at or above this are treated as full precision.
pub const FULL_PRECISION_BITS: u32 = 16;

/// How tensors are fake-quantized.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Quantizer {
    /// Symmetric per-tensor grid with range = max |x| (the project's first quantizer).
    MaxRange,
    /// Per-channel weight steps and clip-searched steps on the hardware's grids (the default).
    #[default]
    MseClip,
}

impl Quantizer {
    pub fn name(self) -> &'static str {
        match self {
            Quantizer::MaxRange => "max-range",
            Quantizer::MseClip => "mse-clip",
        }
    }

    /// The grid of weights at `bits`.
    pub fn weight_grid(self, bits: u32) -> Grid {
        match self {
            Quantizer::MaxRange => Grid::symmetric(bits),
            Quantizer::MseClip => Grid::signed(bits),
        }
    }

    /// The grid of activations at `bits`; `unsigned` for inputs after ReLU6.
    pub fn activation_grid(self, bits: u32, unsigned: bool) -> Grid {
        match (self, unsigned) {
            (_, true) => Grid::unsigned(bits),
            (Quantizer::MaxRange, false) => Grid::symmetric(bits),
            (Quantizer::MseClip, false) => Grid::signed(bits),
        }
    }

    /// Steps of a row-major weight tensor with `rows` output channels: one per channel
    /// ([`Quantizer::MseClip`]) or one for the whole tensor, repeated ([`Quantizer::MaxRange`]).
    pub fn weight_steps(self, values: &[f32], rows: usize, bits: u32) -> Vec<f32> {
        let grid = self.weight_grid(bits);
        match self {
            Quantizer::MaxRange => vec![clip::max_range_step(values, grid); rows],
            Quantizer::MseClip => clip::mse_steps_per_row(values, rows, grid),
        }
    }

    /// Do activation gradients stop outside the clip range?
    pub fn masks_activation_gradient(self) -> bool {
        self == Quantizer::MseClip
    }
}

/// A tensor's values on the host, as f32 (no gradient).
pub(crate) fn host_values<const D: usize>(t: &Tensor<D>) -> Vec<f32> {
    t.clone().detach().into_data().convert::<f32>().try_to_vec::<f32>().expect("f32 tensor data")
}

/// Fake-quantize a convolution weight `[out, in, k, k]`: steps per output channel (or per
/// tensor), identity gradient.
pub fn weight(w: Tensor<4>, bits: u32, q: Quantizer) -> Tensor<4> {
    if bits >= FULL_PRECISION_BITS {
        return w;
    }
    let [out, ..] = w.dims();
    let steps = q.weight_steps(&host_values(&w), out, bits);
    let steps = Tensor::<1>::from_data(TensorData::new(steps, [out]), &w.device());
    ops::fake_quant(w, steps, q.weight_grid(bits), false)
}

/// Fake-quantize a classifier weight `[in, out]`: steps per output column (or per tensor),
/// identity gradient.
pub fn weight_linear(w: Tensor<2>, bits: u32, q: Quantizer) -> Tensor<2> {
    if bits >= FULL_PRECISION_BITS {
        return w;
    }
    let t = w.transpose();
    let [out, _] = t.dims();
    let steps = q.weight_steps(&host_values(&t), out, bits);
    let steps = Tensor::<1>::from_data(TensorData::new(steps, [out]), &t.device());
    ops::fake_quant(t, steps, q.weight_grid(bits), false).transpose()
}

/// The step (shape `[1]`) of the batch `x` at `bits`.
pub fn activation_step<const D: usize>(x: &Tensor<D>, bits: u32, unsigned: bool, q: Quantizer) -> Tensor<1> {
    let bits = bits.min(FULL_PRECISION_BITS - 1);
    ops::activation_step(x, q.activation_grid(bits, unsigned), q == Quantizer::MseClip)
}

/// Fake-quantize activations `x` with `step` (shape `[1]`); `unsigned` for post-ReLU6 inputs.
pub fn activation<const D: usize>(x: Tensor<D>, bits: u32, step: Tensor<1>, unsigned: bool, q: Quantizer) -> Tensor<D> {
    if bits >= FULL_PRECISION_BITS {
        return x;
    }
    ops::fake_quant(x, step, q.activation_grid(bits, unsigned), q.masks_activation_gradient())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    fn weights(dev: &Device) -> Tensor<4> {
        // Two output channels of very different ranges.
        let v: Vec<f32> = (0..32).map(|i| ((i * 37 % 16) as f32 - 7.5) / if i < 16 { 2.0 } else { 200.0 }).collect();
        Tensor::<4>::from_data(TensorData::new(v, [2, 16, 1, 1]), dev)
    }

    #[test]
    fn weights_lie_on_each_channels_grid() {
        let dev = Device::flex();
        let w = weights(&dev);
        let host = values(w.clone());
        for bits in [2, 4, 6, 8] {
            for q in [Quantizer::MaxRange, Quantizer::MseClip] {
                let steps = q.weight_steps(&host, 2, bits);
                let grid = q.weight_grid(bits);
                let out = values(weight(w.clone(), bits, q));
                let mut levels = [Vec::new(), Vec::new()];
                for (i, v) in out.iter().enumerate() {
                    let k = v / steps[i / 16];
                    assert!((k - k.round()).abs() < 1e-3, "{q:?} {bits} bits: {v} is off the grid of step {}", steps[i / 16]);
                    assert!(k.round() >= grid.lo as f32 && k.round() <= grid.hi as f32);
                    levels[i / 16].push(k.round() as i32);
                }
                if q == Quantizer::MseClip {
                    assert!(steps[0] > 10.0 * steps[1], "per-channel steps {steps:?}");
                    // The small channel keeps distinct levels instead of collapsing to zero.
                    levels[1].sort_unstable();
                    levels[1].dedup();
                    assert!(levels[1].len() >= 3, "{bits} bits: {:?}", levels[1]);
                } else {
                    assert_eq!(steps[0], steps[1]);
                }
            }
        }
        // 2-bit two's complement reaches -2 (the signed BitBrick's range).
        let out = values(weight(w.clone(), 2, Quantizer::MseClip));
        let step = Quantizer::MseClip.weight_steps(&host, 2, 2)[0];
        assert!(out[..16].iter().any(|v| (v / step + 2.0).abs() < 1e-4));
        assert_eq!(values(weight(w.clone(), 16, Quantizer::MseClip)), host);
    }

    #[test]
    fn activations_use_unsigned_and_signed_grids() {
        let dev = Device::flex();
        let x = Tensor::<1>::from_data(TensorData::new(vec![0.0f32, 0.4, 1.1, 2.9, 5.0, 7.5], [6]), &dev);
        let step = Tensor::<1>::from_data(TensorData::new(vec![2.0f32], [1]), &dev);
        assert_eq!(values(activation(x.clone(), 2, step.clone(), true, Quantizer::MseClip)), vec![0.0, 0.0, 2.0, 2.0, 4.0, 6.0]);
        let neg = Tensor::<1>::from_data(TensorData::new(vec![-5.0f32, -3.0, -0.9, 0.9, 3.0], [5]), &dev);
        assert_eq!(values(activation(neg.clone(), 2, step.clone(), false, Quantizer::MseClip)), vec![-4.0, -4.0, 0.0, 0.0, 2.0]);
        assert_eq!(values(activation(neg, 2, step, false, Quantizer::MaxRange)), vec![-2.0, -2.0, 0.0, 0.0, 2.0]);
        // The batch's step: max-range covers the maximum; the clip search clips at 2 bits.
        let many: Vec<f32> = (0..1000).map(|i| 6.0 * ((i as f32) / 999.0).powi(3)).collect();
        let t = Tensor::<1>::from_data(TensorData::new(many, [1000]), &dev);
        let s_old = values(activation_step(&t, 2, true, Quantizer::MaxRange))[0];
        assert_eq!(s_old, clip::max_range_step(&values(t.clone()), Grid::unsigned(2)));
        let s_new = values(activation_step(&t, 2, true, Quantizer::MseClip))[0];
        assert!((s_old * 3.0 - 6.0).abs() < 1e-4, "{s_old}");
        assert!(s_new < s_old, "{s_new} vs {s_old}");
    }

    #[test]
    fn straight_through_gradients() {
        let dev = Device::flex().autodiff();
        let w = Tensor::<4>::from_data(TensorData::new((0..12).map(|i| i as f32 / 3.0 - 2.0).collect::<Vec<_>>(), [3, 4, 1, 1]), &dev).require_grad();
        let step = Tensor::<1>::from_data(TensorData::new(vec![0.5f32], [1]), &dev);
        for q in [Quantizer::MaxRange, Quantizer::MseClip] {
            // Weights: identity.
            let g = values(weight(w.clone(), 4, q).sum().backward().pipe(|gr| w.grad(&gr).unwrap()));
            assert!(g.iter().all(|v| (v - 1.0).abs() < 1e-6), "{q:?}: {g:?}");
            // Activations: identity (max-range) or zero outside the clip range [-1, 0.5] at 2 bits.
            let g = values(activation(w.clone(), 2, step.clone(), false, q).sum().backward().pipe(|gr| w.grad(&gr).unwrap()));
            let x = values(w.clone());
            for (gv, xv) in g.iter().zip(&x) {
                let expect = if q == Quantizer::MaxRange || (-1.0..=0.5).contains(xv) { 1.0 } else { 0.0 };
                assert_eq!(*gv, expect, "{q:?} at {xv}");
            }
        }
    }

    trait Pipe: Sized {
        fn pipe<T>(self, f: impl FnOnce(Self) -> T) -> T {
            f(self)
        }
    }
    impl<T> Pipe for T {}
}
