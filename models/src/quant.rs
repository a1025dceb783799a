//! Fake quantization with straight-through gradients (the forward value lies on the integer grid
//! of the bit width; the backward pass is the identity).
//!
//! * Weights: symmetric, per layer (per tensor), range = max |w|, `scale = range / (2^(b-1) - 1)`
//!   (APQ/HAQ `QModule`, `shared/reference/search/NOTES.md` 1.7).
//! * Activations: unsigned after ReLU6 (`scale = range / (2^b - 1)`, clamp to [0, range]) or
//!   symmetric signed for the linear block inputs (`scale = range / (2^(b-1) - 1)`); the range is
//!   the batch's max |x| while training and the calibrated range at evaluation.
//!
//! Bit widths of 16 and more leave the tensor unchanged (full precision).

use burn::prelude::*;

/// Widths at or above this are treated as full precision.
pub const FULL_PRECISION_BITS: u32 = 16;

/// Number of positive levels of a signed symmetric `bits`-bit grid: 2^(b-1) - 1.
pub fn signed_levels(bits: u32) -> f32 {
    ((1u64 << (bits - 1)) - 1) as f32
}

/// Number of levels above zero of an unsigned `bits`-bit grid: 2^b - 1.
pub fn unsigned_levels(bits: u32) -> f32 {
    ((1u64 << bits) - 1) as f32
}

/// `x` rounded onto the grid `scale * {lo..=hi}`, with the straight-through gradient.
fn ste_round<const D: usize>(x: Tensor<D>, scale: Tensor<D>, lo: f32, hi: f32) -> Tensor<D> {
    let q = x.clone().div(scale.clone()).round().clamp(lo, hi).mul(scale);
    x.clone() + (q - x).detach()
}

/// A scalar range as a broadcastable tensor of rank D, never zero.
fn scale_of<const D: usize>(range: Tensor<1>, levels: f32) -> Tensor<D> {
    range.detach().clamp_min(1e-8).div_scalar(levels).reshape([1; D])
}

/// Symmetric per-tensor weight quantization to `bits` (range = max |w|).
pub fn weight<const D: usize>(w: Tensor<D>, bits: u32) -> Tensor<D> {
    if bits >= FULL_PRECISION_BITS {
        return w;
    }
    let levels = signed_levels(bits);
    let range = w.clone().abs().max().reshape([1]);
    ste_round(w, scale_of(range, levels), -levels, levels)
}

/// Activation quantization to `bits` with `range` (shape [1]); `unsigned` for post-ReLU6 inputs.
pub fn activation<const D: usize>(x: Tensor<D>, bits: u32, range: Tensor<1>, unsigned: bool) -> Tensor<D> {
    if bits >= FULL_PRECISION_BITS {
        return x;
    }
    if unsigned {
        let levels = unsigned_levels(bits);
        ste_round(x, scale_of(range, levels), 0.0, levels)
    } else {
        let levels = signed_levels(bits);
        ste_round(x, scale_of(range, levels), -levels, levels)
    }
}

/// The batch's range of `x` (max |x|, detached), shape [1].
pub fn batch_range<const D: usize>(x: &Tensor<D>) -> Tensor<1> {
    x.clone().detach().abs().max().reshape([1])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    #[test]
    fn forward_values_lie_on_the_grid() {
        let dev = Device::flex();
        let w = Tensor::<2>::from_data(TensorData::new((0..64).map(|i| ((i * 37 % 64) as f32 - 31.5) / 7.0).collect::<Vec<_>>(), [8, 8]), &dev);
        let max = values(w.clone().abs().max())[0];
        for bits in [2, 4, 6, 8] {
            let levels = signed_levels(bits);
            let scale = max / levels;
            let q = values(weight(w.clone(), bits));
            let mut distinct: Vec<i64> = q.iter().map(|v| (v / scale).round() as i64).collect();
            for v in &q {
                let k = v / scale;
                assert!((k - k.round()).abs() < 1e-4, "{bits} bits: {v} is off the grid of step {scale}");
                assert!(k.abs() <= levels + 1e-4);
            }
            distinct.sort_unstable();
            distinct.dedup();
            assert!(distinct.len() <= 2 * levels as usize + 1);
            if bits == 2 {
                assert_eq!(distinct, vec![-1, 0, 1]);
            }
        }
        // Unsigned activations: 2^b levels in [0, range], clipped above.
        let x = Tensor::<1>::from_data(TensorData::new(vec![0.0f32, 0.4, 1.1, 2.9, 5.0, 7.5], [6]), &dev);
        let range = Tensor::<1>::from_data(TensorData::new(vec![6.0f32], [1]), &dev);
        let q = values(activation(x, 2, range, true));
        assert_eq!(q, vec![0.0, 0.0, 2.0, 2.0, 4.0, 6.0]);
        // 16 bits and more are full precision.
        assert_eq!(values(weight(w.clone(), 16)), values(w));
    }

    #[test]
    fn straight_through_gradient_is_the_identity() {
        let dev = Device::flex().autodiff();
        let w = Tensor::<2>::from_data(TensorData::new((0..12).map(|i| i as f32 / 3.0 - 2.0).collect::<Vec<_>>(), [3, 4]), &dev).require_grad();
        let range = Tensor::<1>::from_data(TensorData::new(vec![1.0f32], [1]), &dev);
        let loss = weight(w.clone(), 4).sum() + activation(w.clone(), 3, range, false).mul_scalar(2.0).sum();
        let grads = loss.backward();
        let g = values(w.grad(&grads).unwrap());
        assert!(g.iter().all(|v| (v - 3.0).abs() < 1e-6), "{g:?}");
    }
}
