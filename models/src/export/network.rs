//! The found subnet as plain data: every layer's float weights, integer weight codes with their
//! per-channel steps, batch-norm statistics, activation steps and grids, in forward order, read
//! off an extracted, recalibrated subnet the same way [`crate::supernet::forward`] uses them in
//! its calibrated quantized evaluation ([`crate::supernet::Mode::Eval`]), so an outside runtime
//! computing these layers computes the project's own quantized network.

use bitfusion_search::{Arch, Space};
use burn::prelude::*;

use crate::data::DataSet;
use crate::grid::{Grid, MIN_STEP};
use crate::quant::{FULL_PRECISION_BITS, Quantizer, host_values};
use crate::supernet::{BN_EPS, Calibration, Plan, Residual, Weights};

/// Fake quantization of an activation tensor: `step * clamp(round(x / step), lo, hi)`, one step
/// for the whole tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct ActivationQuant {
    pub bits: u32,
    pub grid: Grid,
    /// The calibrated step (real units per integer level), at least [`MIN_STEP`].
    pub step: f32,
}

/// Integer weights: `weight[o, ...] = codes[o, ...] * steps[o]`, one step per output channel
/// (equal steps under [`Quantizer::MaxRange`]).
#[derive(Clone, Debug, PartialEq)]
pub struct WeightQuant {
    pub bits: u32,
    pub grid: Grid,
    /// Grid levels, in the float weight's layout.
    pub codes: Vec<i32>,
    /// One step per output channel.
    pub steps: Vec<f32>,
}

/// Batch norm in inference form: `(x - mean) / sqrt(var + epsilon) * gamma + beta` per channel.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchNorm {
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
    /// Recalibrated running mean and (biased) variance.
    pub mean: Vec<f32>,
    pub var: Vec<f32>,
    pub epsilon: f64,
}

/// One convolution with its batch norm, activation and quantizers.
#[derive(Clone, Debug, PartialEq)]
pub struct ExportedConv {
    pub name: String,
    pub in_channels: usize,
    pub out_channels: usize,
    /// Square kernel side; padding is `kernel / 2` on every side.
    pub kernel: usize,
    pub stride: usize,
    pub groups: usize,
    pub w_bits: u32,
    pub a_bits: u32,
    /// `[out, in / groups, kernel, kernel]`, row-major: the recalibrated subnet's float weights.
    pub weight: Vec<f32>,
    /// The weights the network computes with (None at full precision).
    pub weight_quant: Option<WeightQuant>,
    /// Quantization of this layer's input, when the previous layer did not already write it on
    /// this layer's grid.
    pub input_quant: Option<ActivationQuant>,
    pub batch_norm: BatchNorm,
    /// ReLU6 after the batch norm.
    pub relu6: bool,
    /// `Save`: this layer's (unquantized) input is the block's shortcut; `Add`: the shortcut is
    /// added after the batch norm.
    pub residual: Residual,
    /// The ReLU6 output written on the next layer's input grid (fused into this layer).
    pub output_quant: Option<ActivationQuant>,
}

/// The classifier after global average pooling: `logits = x W^T + bias`.
#[derive(Clone, Debug, PartialEq)]
pub struct ExportedLinear {
    pub in_features: usize,
    pub out_features: usize,
    pub bits: u32,
    /// `[out, in]`, row-major (PyTorch's layout).
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub weight_quant: Option<WeightQuant>,
    pub input_quant: Option<ActivationQuant>,
}

/// How raw 8-bit pixels become the network's input: `(pixel / 255 - mean[c]) / std[c]`, in f32.
#[derive(Clone, Debug, PartialEq)]
pub struct InputSpec {
    pub channels: usize,
    /// Image side in pixels.
    pub size: usize,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

/// A quantized subnet ready to be written out.
#[derive(Clone, Debug, PartialEq)]
pub struct ExportedNetwork {
    /// The architecture's canonical text (space name and per-block choices and bits).
    pub arch: String,
    pub space: String,
    pub quantizer: Quantizer,
    pub input: InputSpec,
    pub convs: Vec<ExportedConv>,
    pub classifier: ExportedLinear,
}

fn step_of(t: &Tensor<1>) -> f32 {
    host_values(t)[0].max(MIN_STEP)
}

/// Codes and steps of a row-major weight with `rows` output channels, exactly as
/// [`crate::ops::fake_quant`] rounds them (the step floored at [`MIN_STEP`], one reciprocal per
/// step, ties to even).
fn weight_quant(values: &[f32], rows: usize, bits: u32, q: Quantizer) -> Option<WeightQuant> {
    if bits >= FULL_PRECISION_BITS {
        return None;
    }
    let grid = q.weight_grid(bits);
    let steps: Vec<f32> = q.weight_steps(values, rows, bits).into_iter().map(|s| s.max(MIN_STEP)).collect();
    let per_row = values.len() / rows.max(1);
    let codes = values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let s = steps[i / per_row];
            grid.level(v, 1.0 / s) as i32
        })
        .collect();
    Some(WeightQuant { bits, grid, codes, steps })
}

fn activation_quant(bits: u32, unsigned: bool, step: &Tensor<1>, q: Quantizer) -> Option<ActivationQuant> {
    (bits < FULL_PRECISION_BITS).then(|| ActivationQuant { bits, grid: q.activation_grid(bits, unsigned), step: step_of(step) })
}

/// Transpose a row-major `[rows, cols]` matrix.
fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    (0..cols * rows).map(|i| values[(i % rows) * cols + i / rows]).collect()
}

impl ExportedNetwork {
    /// The quantized network of `plan` (with `plan.quantizer`) over weights `w` and the
    /// calibration `cal` recorded on them ([`crate::eval::calibrate`] with quantization), taking
    /// images normalised as `data` normalises them.
    pub fn new(space: &Space, arch: &Arch, plan: &Plan, w: &Weights, cal: &Calibration, data: &DataSet) -> ExportedNetwork {
        let q = plan.quantizer;
        let mut convs: Vec<ExportedConv> = Vec::with_capacity(plan.convs.len());
        // Set when the previous layer wrote its ReLU6 output on this layer's grid.
        let mut prequantized = false;
        for (i, (s, cw)) in plan.convs.iter().zip(&w.convs).enumerate() {
            let [out, in_per_group, k, _] = cw.w.dims();
            let weight = host_values(&cw.w);
            let input_quant = if prequantized { None } else { activation_quant(s.a_bits, s.unsigned_input, &cal.steps[i], q) };
            let next = plan.convs.get(i + 1).filter(|n| s.relu6 && n.a_bits < FULL_PRECISION_BITS);
            let output_quant = next.and_then(|n| activation_quant(n.a_bits, n.unsigned_input, &cal.steps[i + 1], q));
            prequantized = output_quant.is_some();
            let (mean, var) = &cal.bn[i];
            convs.push(ExportedConv {
                name: s.name.clone(),
                in_channels: in_per_group * s.groups,
                out_channels: out,
                kernel: k,
                stride: s.stride,
                groups: s.groups,
                w_bits: s.w_bits,
                a_bits: s.a_bits,
                weight_quant: weight_quant(&weight, out, s.w_bits, q),
                weight,
                input_quant,
                batch_norm: BatchNorm { gamma: host_values(&cw.gamma), beta: host_values(&cw.beta), mean: host_values(mean), var: host_values(var), epsilon: BN_EPS },
                relu6: s.relu6,
                residual: s.residual,
                output_quant,
            });
        }
        let [features, classes] = w.fc_w.dims();
        let weight = transpose(&host_values(&w.fc_w), features, classes);
        let unsigned = plan.convs.last().is_some_and(|c| c.relu6);
        let classifier = ExportedLinear {
            in_features: features,
            out_features: classes,
            bits: plan.fc_bits,
            weight_quant: weight_quant(&weight, classes, plan.fc_bits, q),
            weight,
            bias: host_values(&w.fc_b),
            input_quant: activation_quant(plan.fc_bits, unsigned, &cal.steps[plan.convs.len()], q),
        };
        ExportedNetwork {
            arch: arch.to_text(),
            space: space.name.clone(),
            quantizer: q,
            input: InputSpec { channels: space.input_channels as usize, size: space.input_size as usize, mean: data.mean.clone(), std: data.std.clone() },
            convs,
            classifier,
        }
    }

    /// Every quantized operand's bit width, for choosing containers (weights and activations).
    pub fn quantized_bits(&self) -> impl Iterator<Item = u32> + '_ {
        let conv = self.convs.iter().flat_map(|c| {
            [c.weight_quant.as_ref().map(|w| w.bits), c.input_quant.as_ref().map(|a| a.bits), c.output_quant.as_ref().map(|a| a.bits)]
        });
        let fc = [self.classifier.weight_quant.as_ref().map(|w| w.bits), self.classifier.input_quant.as_ref().map(|a| a.bits)];
        conv.chain(fc).flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_swaps_rows_and_columns() {
        // [[1, 2, 3], [4, 5, 6]] -> [[1, 4], [2, 5], [3, 6]]
        assert_eq!(transpose(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2, 3), vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    }

    #[test]
    fn weight_codes_times_steps_are_the_fake_quantized_weights() {
        let values: Vec<f32> = (0..24).map(|i| ((i * 7 % 11) as f32 - 5.0) * if i < 12 { 0.3 } else { 0.01 }).collect();
        for bits in [2, 4, 6, 8] {
            let wq = weight_quant(&values, 2, bits, Quantizer::MseClip).unwrap();
            let grid = Quantizer::MseClip.weight_grid(bits);
            for (i, &v) in values.iter().enumerate() {
                let s = wq.steps[i / 12];
                assert!(wq.codes[i] >= grid.lo && wq.codes[i] <= grid.hi);
                assert_eq!(wq.codes[i] as f32 * s, grid.quantize_with(v, 1.0 / s, s), "{bits} bits, weight {i}");
            }
        }
        assert!(weight_quant(&values, 2, 16, Quantizer::MseClip).is_none());
    }
}
