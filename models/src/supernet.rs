//! The once-for-all supernet of a search space, and the static subnets extracted from it.
//!
//! One network holds the largest configuration: every block slot, the largest kernel and the
//! widest middle layer. A subnet ([`Arch`]) is a *view* of it ([`Weights`]):
//!
//! * **elastic depth**: stage s runs its first d blocks;
//! * **elastic kernel**: the depthwise kernel k is the centre crop of the largest kernel, passed
//!   through learned per-layer transforms (k_max² → k² matrices applied one size at a time,
//!   initialised to the identity; once-for-all's `KERNEL_TRANSFORM_MODE = 1`);
//! * **elastic width**: the middle layer keeps its first m channels; [`Supernet::sort_channels`]
//!   orders them by importance (L1 norm of the projection weights) first, as once-for-all does at
//!   the start of its width phase.
//!
//! The same [`forward`] runs a view taken from the supernet (gradients flow into the supernet's
//! parameters) and an extracted [`Subnet`] (its own parameters, for quantization-aware
//! fine-tuning), so the two give the same output for the same configuration by construction, and
//! the tests check it.
//!
//! Layer order and bits follow `bitfusion_search::Arch::layers`: stem, first block (depthwise,
//! project), per block expand / depthwise / project, feature mix, classifier.

use bitfusion_search::{Arch, Space};
use burn::module::Param;
use burn::prelude::*;
use burn::tensor::module::linear;

use crate::ops::{self, After};
use crate::quant::{self, Quantizer};
use crate::rng::Rng;

/// Batch-norm epsilon (PyTorch's and burn's default).
pub const BN_EPS: f64 = 1e-5;

/// A convolution with its batch norm (no conv bias).
#[derive(Module, Debug)]
pub struct ConvBn {
    /// `[out, in / groups, k, k]`.
    pub w: Param<Tensor<4>>,
    pub gamma: Param<Tensor<1>>,
    pub beta: Param<Tensor<1>>,
}

/// One inverted-residual block slot at its largest configuration.
#[derive(Module, Debug)]
pub struct BlockParams {
    pub expand: ConvBn,
    pub dw: ConvBn,
    pub project: ConvBn,
    /// Kernel transforms, one per kernel size below the largest (descending): k² x k².
    pub transforms: Vec<Param<Tensor<2>>>,
}

/// The supernet's parameters.
#[derive(Module, Debug)]
pub struct Supernet {
    /// Stem, then the first block's depthwise and projection when the space has one.
    pub trunk: Vec<ConvBn>,
    /// Every block slot in `Space::slots` order.
    pub blocks: Vec<BlockParams>,
    /// The feature-mix 1x1 convolution (empty when the space has none).
    pub head: Vec<ConvBn>,
    /// Classifier `[features, classes]` and bias.
    pub fc_w: Param<Tensor<2>>,
    pub fc_b: Param<Tensor<1>>,
}

/// A static network: one extracted subnet's own parameters (for fine-tuning).
#[derive(Module, Debug)]
pub struct Subnet {
    pub convs: Vec<ConvBn>,
    pub fc_w: Param<Tensor<2>>,
    pub fc_b: Param<Tensor<1>>,
}

/// What the residual path does at a convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Residual {
    None,
    /// Remember this convolution's input (a block with a shortcut starts here).
    Save,
    /// Add the remembered input to this convolution's output.
    Add,
}

/// One convolution of a subnet: its shape parameters and bits.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvStep {
    pub name: String,
    pub stride: usize,
    pub groups: usize,
    pub relu6: bool,
    pub w_bits: u32,
    pub a_bits: u32,
    /// Is the input non-negative (after ReLU6)? Chooses unsigned or signed activation grids.
    pub unsigned_input: bool,
    pub residual: Residual,
}

/// A subnet's computation: its convolutions in order, then global pooling and the classifier.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub convs: Vec<ConvStep>,
    pub fc_bits: u32,
    /// How the subnet is fake-quantized when it is.
    pub quantizer: Quantizer,
}

/// Plain tensors of one subnet's layers (views into a supernet or a [`Subnet`]'s values).
#[derive(Clone, Debug)]
pub struct ConvWeights {
    pub w: Tensor<4>,
    pub gamma: Tensor<1>,
    pub beta: Tensor<1>,
}

#[derive(Clone, Debug)]
pub struct Weights {
    pub convs: Vec<ConvWeights>,
    pub fc_w: Tensor<2>,
    pub fc_b: Tensor<1>,
}

/// Batch-norm statistics and activation steps of one subnet, in forward order: one (mean,
/// variance) per convolution, one quantization step per quantized input (convolutions then
/// classifier).
#[derive(Clone, Debug, Default)]
pub struct Calibration {
    pub bn: Vec<(Tensor<1>, Tensor<1>)>,
    pub steps: Vec<Tensor<1>>,
    /// Number of batches summed into `bn` and `steps` (0 after [`Calibration::finish`]).
    pending: usize,
}

/// How the forward pass normalises and quantizes.
#[derive(Clone, Copy, Debug)]
pub enum Mode<'a> {
    /// Training: batch statistics; activation steps from the batch.
    Train { quantize: bool },
    /// Evaluation with calibrated statistics and steps.
    Eval { quantize: bool, calibration: &'a Calibration },
}

impl Calibration {
    /// Add one batch's statistics (recorded by [`forward`] in train mode).
    fn add(&mut self, i: usize, bn: Option<(Tensor<1>, Tensor<1>)>, step: Option<Tensor<1>>) {
        if let Some((m, v)) = bn {
            if self.bn.len() <= i {
                self.bn.push((m, v));
            } else {
                let (sm, sv) = self.bn[i].clone();
                self.bn[i] = (sm + m, sv + v);
            }
        }
        if let Some(r) = step {
            if self.steps.len() <= i {
                self.steps.push(r);
            } else {
                self.steps[i] = self.steps[i].clone() + r;
            }
        }
    }

    /// Average the summed batches.
    pub fn finish(mut self) -> Calibration {
        let n = self.pending.max(1) as f64;
        self.bn = self.bn.into_iter().map(|(m, v)| (m.div_scalar(n), v.div_scalar(n))).collect();
        self.steps = self.steps.into_iter().map(|r| r.div_scalar(n)).collect();
        self.pending = 0;
        self
    }
}

/// Kaiming-normal weights (fan-in, gain sqrt 2) from the seeded generator.
fn kaiming(shape: [usize; 4], rng: &mut Rng, device: &Device) -> Param<Tensor<4>> {
    let fan_in = (shape[1] * shape[2] * shape[3]).max(1) as f64;
    let std = (2.0 / fan_in).sqrt();
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| (rng.normal() * std) as f32).collect();
    Param::from_tensor(Tensor::<4>::from_data(TensorData::new(v, shape), device))
}

fn filled(n: usize, value: f32, device: &Device) -> Param<Tensor<1>> {
    Param::from_tensor(Tensor::<1>::from_data(TensorData::new(vec![value; n], [n]), device))
}

impl ConvBn {
    fn new(out: usize, in_per_group: usize, k: usize, rng: &mut Rng, device: &Device) -> ConvBn {
        ConvBn { w: kaiming([out, in_per_group, k, k], rng, device), gamma: filled(out, 1.0, device), beta: filled(out, 0.0, device) }
    }

    fn view(&self) -> ConvWeights {
        ConvWeights { w: self.w.val(), gamma: self.gamma.val(), beta: self.beta.val() }
    }

    fn from_view(v: &ConvWeights) -> ConvBn {
        let p4 = |t: &Tensor<4>| Param::from_tensor(t.clone().detach());
        let p1 = |t: &Tensor<1>| Param::from_tensor(t.clone().detach());
        ConvBn { w: p4(&v.w), gamma: p1(&v.gamma), beta: p1(&v.beta) }
    }
}

fn identity(n: usize, device: &Device) -> Param<Tensor<2>> {
    let v: Vec<f32> = (0..n * n).map(|i| if i / n == i % n { 1.0 } else { 0.0 }).collect();
    Param::from_tensor(Tensor::<2>::from_data(TensorData::new(v, [n, n]), device))
}

/// Kernel sizes of the space, largest first.
fn kernels_desc(space: &Space) -> Vec<usize> {
    let mut k: Vec<usize> = space.kernels.iter().map(|&k| k as usize).collect();
    k.sort_unstable_by(|a, b| b.cmp(a));
    k
}

impl Supernet {
    /// A freshly initialised supernet for `space`, from `seed`.
    pub fn new(space: &Space, seed: u64, device: &Device) -> Supernet {
        let mut rng = Rng::new(seed);
        let r = &mut rng;
        let c_in = space.input_channels as usize;
        let stem = &space.stem;
        let mut trunk = vec![ConvBn::new(stem.out_channels as usize, c_in, stem.kernel as usize, r, device)];
        if let Some(f) = &space.first_block {
            let c = stem.out_channels as usize;
            trunk.push(ConvBn::new(c, 1, f.kernel as usize, r, device));
            trunk.push(ConvBn::new(f.out_channels as usize, c, 1, r, device));
        }
        let ks = kernels_desc(space);
        let blocks = space
            .slots()
            .iter()
            .map(|sl| {
                let mid = *sl.mids.iter().max().expect("a validated slot has middle widths") as usize;
                BlockParams {
                    expand: ConvBn::new(mid, sl.in_channels as usize, 1, r, device),
                    dw: ConvBn::new(mid, 1, ks[0], r, device),
                    project: ConvBn::new(sl.out_channels as usize, mid, 1, r, device),
                    transforms: ks[1..].iter().map(|&k| identity(k * k, device)).collect(),
                }
            })
            .collect();
        let (c, _) = space.head_in();
        let mut feat = c as usize;
        let mut head = Vec::new();
        if space.head.feature_mix > 0 {
            head.push(ConvBn::new(space.head.feature_mix as usize, feat, 1, r, device));
            feat = space.head.feature_mix as usize;
        }
        let classes = space.head.classes as usize;
        let v: Vec<f32> = (0..feat * classes).map(|_| (r.normal() * 0.01) as f32).collect();
        Supernet {
            trunk,
            blocks,
            head,
            fc_w: Param::from_tensor(Tensor::<2>::from_data(TensorData::new(v, [feat, classes]), device)),
            fc_b: filled(classes, 0.0, device),
        }
    }

    /// The depthwise kernel of `block` at size `k` and width `mid`: centre crops through the
    /// learned transforms, one kernel size at a time.
    fn dw_kernel(&self, ks: &[usize], block: &BlockParams, k: usize, mid: usize) -> Tensor<4> {
        let mut w = block.dw.w.val().slice([0..mid, 0..1, 0..ks[0], 0..ks[0]]);
        let mut cur = ks[0];
        for (t, &next) in block.transforms.iter().zip(&ks[1..]) {
            if next < k {
                break;
            }
            let off = (cur - next) / 2;
            w = w.slice([0..mid, 0..1, off..off + next, off..off + next]);
            w = w.reshape([mid, next * next]).matmul(t.val()).reshape([mid, 1, next, next]);
            cur = next;
        }
        w
    }

    /// The view of `arch`: its plan and its weights (slices of this supernet's parameters).
    pub fn view(&self, space: &Space, arch: &Arch) -> (Plan, Weights) {
        let plan = plan(space, arch);
        let ks = kernels_desc(space);
        let mut convs: Vec<ConvWeights> = self.trunk.iter().map(ConvBn::view).collect();
        for (sl, (bp, b)) in space.slots().iter().zip(self.blocks.iter().zip(arch_slots(space, arch))) {
            let Some(b) = b else { continue };
            let m = b.mid as usize;
            let cin = sl.in_channels as usize;
            let cout = sl.out_channels as usize;
            let e = &bp.expand;
            convs.push(ConvWeights {
                w: e.w.val().slice([0..m, 0..cin, 0..1, 0..1]),
                gamma: e.gamma.val().slice([0..m]),
                beta: e.beta.val().slice([0..m]),
            });
            convs.push(ConvWeights {
                w: self.dw_kernel(&ks, bp, b.kernel as usize, m),
                gamma: bp.dw.gamma.val().slice([0..m]),
                beta: bp.dw.beta.val().slice([0..m]),
            });
            let p = &bp.project;
            convs.push(ConvWeights { w: p.w.val().slice([0..cout, 0..m, 0..1, 0..1]), gamma: p.gamma.val(), beta: p.beta.val() });
        }
        convs.extend(self.head.iter().map(ConvBn::view));
        (plan, Weights { convs, fc_w: self.fc_w.val(), fc_b: self.fc_b.val() })
    }

    /// Extract `arch` as a static network with its own (copied) parameters.
    pub fn extract(&self, space: &Space, arch: &Arch) -> (Plan, Subnet) {
        let (plan, w) = self.view(space, arch);
        let sub = Subnet {
            convs: w.convs.iter().map(ConvBn::from_view).collect(),
            fc_w: Param::from_tensor(w.fc_w.detach()),
            fc_b: Param::from_tensor(w.fc_b.detach()),
        };
        (plan, sub)
    }

    /// Order every block's middle channels by importance (L1 norm of the projection weights
    /// reading them), most important first, so that a width m keeps the m most important
    /// channels. The function computed by the largest network is unchanged.
    pub fn sort_channels(self) -> Supernet {
        let blocks = self
            .blocks
            .into_iter()
            .map(|b| {
                let importance: Vec<f32> = b.project.w.val().abs().sum_dim(0).sum_dim(2).sum_dim(3).into_data().try_to_vec::<f32>().expect("f32 weights");
                let mut order: Vec<usize> = (0..importance.len()).collect();
                order.sort_by(|&x, &y| importance[y].total_cmp(&importance[x]).then(x.cmp(&y)));
                let dev = b.project.w.val().device();
                let idx = Tensor::<1, Int>::from_data(TensorData::new(order.iter().map(|&i| i as i64).collect::<Vec<_>>(), [order.len()]), &dev);
                let pick4 = |p: Param<Tensor<4>>, dim: usize| p.map(|t| regrad(t.clone(), t.select(dim, idx.clone())));
                let pick1 = |p: Param<Tensor<1>>| p.map(|t| regrad(t.clone(), t.select(0, idx.clone())));
                BlockParams {
                    expand: ConvBn { w: pick4(b.expand.w, 0), gamma: pick1(b.expand.gamma), beta: pick1(b.expand.beta) },
                    dw: ConvBn { w: pick4(b.dw.w, 0), gamma: pick1(b.dw.gamma), beta: pick1(b.dw.beta) },
                    project: ConvBn { w: pick4(b.project.w, 1), gamma: b.project.gamma, beta: b.project.beta },
                    transforms: b.transforms,
                }
            })
            .collect();
        Supernet { blocks, ..self }
    }
}

/// `new` as a leaf that requires a gradient exactly when `old` did.
fn regrad<const D: usize>(old: Tensor<D>, new: Tensor<D>) -> Tensor<D> {
    let new = new.detach();
    if old.is_require_grad() { new.require_grad() } else { new }
}

impl Subnet {
    pub fn view(&self) -> Weights {
        Weights { convs: self.convs.iter().map(ConvBn::view).collect(), fc_w: self.fc_w.val(), fc_b: self.fc_b.val() }
    }
}

/// Each block slot's active block (None when its stage's depth skips it).
fn arch_slots<'a>(space: &Space, arch: &'a Arch) -> Vec<Option<&'a bitfusion_search::Block>> {
    space.slots().iter().map(|sl| arch.stages.get(sl.stage).and_then(|st| st.get(sl.index))).collect()
}

/// The plan of `arch`: its convolutions with strides, groups, bits and shortcuts.
pub fn plan(space: &Space, arch: &Arch) -> Plan {
    let step = |name: &str, stride: u32, groups: u32, relu6: bool, w: u32, a: u32, unsigned: bool, residual: Residual| ConvStep {
        name: name.to_string(),
        stride: stride as usize,
        groups: groups as usize,
        relu6,
        w_bits: w,
        a_bits: a,
        unsigned_input: unsigned,
        residual,
    };
    let st = &space.stem;
    // The stem reads the normalised (signed) image.
    let mut convs = vec![step("stem", st.stride, 1, true, st.bits, st.bits, false, Residual::None)];
    if let Some(f) = &space.first_block {
        convs.push(step("first_dw", 1, st.out_channels, true, f.bits, f.bits, true, Residual::None));
        convs.push(step("first_project", 1, 1, false, f.bits, f.bits, true, Residual::None));
    }
    for (sl, b) in space.slots().iter().zip(arch_slots(space, arch)) {
        let Some(b) = b else { continue };
        let shortcut = sl.stride == 1 && sl.in_channels == sl.out_channels;
        let name = format!("s{}b{}", sl.stage, sl.index);
        let (save, add) = if shortcut { (Residual::Save, Residual::Add) } else { (Residual::None, Residual::None) };
        convs.push(step(&format!("{name}_expand"), 1, 1, true, b.pw_w, b.pw_a, false, save));
        convs.push(step(&format!("{name}_dw"), sl.stride, b.mid, true, b.dw_w, b.dw_a, true, Residual::None));
        convs.push(step(&format!("{name}_project"), 1, 1, false, b.pw_w, b.pw_a, true, add));
    }
    let h = &space.head;
    if h.feature_mix > 0 {
        convs.push(step("feature_mix", 1, 1, true, h.bits, h.bits, false, Residual::None));
    }
    Plan { convs, fc_bits: h.bits, quantizer: Quantizer::default() }
}

/// The subnet's logits `[batch, classes]` for images `x` `[batch, channels, size, size]`. In
/// [`Mode::Train`], batch statistics normalise and, when `record` is given, each batch's
/// statistics (and activation steps, when quantizing) are summed into it (calibration).
///
/// Activations run in NHWC through the fused [`ops`] (one autodiff node per convolution, per
/// batch norm with its ReLU6 or residual add, per fake quantization).
pub fn forward(plan: &Plan, w: &Weights, x: Tensor<4>, mode: Mode, mut record: Option<&mut Calibration>) -> Tensor<2> {
    let quantize = match mode {
        Mode::Train { quantize } | Mode::Eval { quantize, .. } => quantize,
    };
    let q = plan.quantizer;
    let mut x = x.permute([0, 2, 3, 1]);
    let mut saved: Option<Tensor<4>> = None;
    // The step of `x` when the previous layer already wrote it quantized (fused into its batch
    // norm; ReLU6 outputs feeding a quantized layer).
    let mut quantized_input: Option<Tensor<1>> = None;
    for (i, (s, cw)) in plan.convs.iter().zip(&w.convs).enumerate() {
        if s.residual == Residual::Save {
            saved = Some(x.clone());
        }
        let mut input = x;
        let mut wt = cw.w.clone();
        let mut step = None;
        if quantize {
            let st = match quantized_input.take() {
                Some(st) => st,
                None => {
                    // The activation step: the batch's while training, the calibrated one after.
                    let st = match mode {
                        Mode::Train { .. } => quant::activation_step(&input, s.a_bits, s.unsigned_input, q),
                        Mode::Eval { calibration, .. } => calibration.steps[i].clone(),
                    };
                    input = quant::activation(input, s.a_bits, st.clone(), s.unsigned_input, q);
                    st
                }
            };
            wt = quant::weight(wt, s.w_bits, q);
            step = Some(st);
        }
        let y = ops::conv(input, wt, s.stride, s.groups);
        // A ReLU6 output feeding a quantized layer is written on that layer's grid directly.
        let next = plan.convs.get(i + 1).filter(|n| quantize && s.relu6 && n.a_bits < quant::FULL_PRECISION_BITS);
        let (after, residual) = match (s.relu6, s.residual) {
            (true, _) => (After::Relu6, None),
            (false, Residual::Add) => (After::Add, saved.take()),
            (false, _) => (After::None, None),
        };
        x = match (mode, next) {
            (Mode::Train { .. }, Some(n)) => {
                let grid = q.activation_grid(n.a_bits, n.unsigned_input);
                let (out, st) = ops::batch_norm_relu6_quant_train(y, cw.gamma.clone(), cw.beta.clone(), grid, q == Quantizer::MseClip, q.masks_activation_gradient());
                if let Some(rec) = record.as_deref_mut() {
                    rec.add(i, Some((out.mean.detach(), out.var.detach())), step);
                }
                quantized_input = Some(st);
                out.y
            }
            (Mode::Eval { calibration, .. }, Some(n)) => {
                let grid = q.activation_grid(n.a_bits, n.unsigned_input);
                let (m, v) = calibration.bn[i].clone();
                let st = calibration.steps[i + 1].clone();
                quantized_input = Some(st.clone());
                ops::batch_norm_relu6_quant_eval(y, cw.gamma.clone(), cw.beta.clone(), m, v, st, grid, q.masks_activation_gradient())
            }
            (Mode::Train { .. }, None) => {
                let out = ops::batch_norm_train(y, cw.gamma.clone(), cw.beta.clone(), after, residual);
                if let Some(rec) = record.as_deref_mut() {
                    rec.add(i, Some((out.mean.detach(), out.var.detach())), step);
                }
                out.y
            }
            (Mode::Eval { calibration, .. }, None) => {
                let (m, v) = calibration.bn[i].clone();
                ops::batch_norm_eval(y, cw.gamma.clone(), cw.beta.clone(), m, v, after, residual)
            }
        };
    }
    let [b, _, _, c] = x.dims();
    let pooled = x.mean_dim(1).mean_dim(2).reshape([b, c]);
    let i = plan.convs.len();
    let (mut input, mut wt) = (pooled, w.fc_w.clone());
    let mut step = None;
    if quantize {
        // Pooled ReLU6 features are non-negative; a head without feature mix pools a linear layer.
        let unsigned = plan.convs.last().is_some_and(|c| c.relu6);
        let st = match mode {
            Mode::Train { .. } => quant::activation_step(&input, plan.fc_bits, unsigned, q),
            Mode::Eval { calibration, .. } => calibration.steps[i].clone(),
        };
        input = quant::activation(input, plan.fc_bits, st.clone(), unsigned, q);
        wt = quant::weight_linear(wt, plan.fc_bits, q);
        step = Some(st);
    }
    if let Some(rec) = record.as_deref_mut() {
        rec.add(i, None, step);
        rec.pending += 1;
    }
    linear(input, wt, Some(w.fc_b.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitfusion_search::evolution::largest;

    fn micro() -> Space {
        Space::load("micro").unwrap()
    }


    fn input(n: usize, dev: &Device) -> Tensor<4> {
        let mut r = Rng::new(4);
        let v: Vec<f32> = (0..n * 28 * 28).map(|_| r.normal() as f32).collect();
        Tensor::<4>::from_data(TensorData::new(v, [n, 1, 28, 28]), dev)
    }

    fn close(a: Tensor<2>, b: Tensor<2>) -> f32 {
        a.sub(b).abs().max().into_scalar::<f32>()
    }

    #[test]
    fn each_elastic_dimension_extracts_the_expected_shapes() {
        let space = micro();
        let dev = Device::flex();
        let net = Supernet::new(&space, 1, &dev);
        let mut arch = largest(&space, 8);
        // Depth: stage 1 keeps its first block only.
        arch.stages[1].truncate(1);
        // Kernel 3 in the first block, width 40 (of 32..64) in the second.
        arch.stages[0][0].kernel = 3;
        arch.stages[0][1].mid = 40;
        let (plan, w) = net.view(&space, &arch);
        let n_blocks: usize = arch.stages.iter().map(|s| s.len()).sum();
        assert_eq!(plan.convs.len(), 3 + 3 * n_blocks + 1);
        assert_eq!(w.convs.len(), plan.convs.len());
        let b0 = 3; // stem, first_dw, first_project
        assert_eq!(w.convs[b0].w.dims(), [32, 8, 1, 1]);
        assert_eq!(w.convs[b0 + 1].w.dims(), [32, 1, 3, 3]);
        assert_eq!(w.convs[b0 + 3].w.dims(), [40, 16, 1, 1]);
        assert_eq!(w.convs[b0 + 4].w.dims(), [40, 1, 7, 7]);
        assert_eq!(w.convs[b0 + 5].w.dims(), [16, 40, 1, 1]);
        assert_eq!(w.convs[b0 + 5].gamma.dims(), [16]);
        assert_eq!(plan.convs[b0 + 4].groups, 40);
        assert_eq!(plan.convs[b0 + 3].residual, Residual::Save);
        // With identity transforms, kernel 3 is the centre crop of kernel 7.
        let full = net.blocks[0].dw.w.val().slice([0..32, 0..1, 2..5, 2..5]);
        assert_eq!(close(full.reshape([32, 9]), w.convs[b0 + 1].w.clone().reshape([32, 9])), 0.0);
        // The network runs and gives one logit per class.
        let y = forward(&plan, &w, input(4, &dev), Mode::Train { quantize: true }, None);
        assert_eq!(y.dims(), [4, 10]);
    }

    #[test]
    fn extracted_subnet_computes_what_the_supernet_computes() {
        let space = micro();
        let dev = Device::flex();
        let net = Supernet::new(&space, 2, &dev);
        let mut seed = 11;
        let x = input(6, &dev);
        for _ in 0..3 {
            let arch = Arch::random(&space, &mut seed);
            let (plan, w) = net.view(&space, &arch);
            let (plan2, sub) = net.extract(&space, &arch);
            assert_eq!(plan, plan2);
            for quantize in [false, true] {
                let a = forward(&plan, &w, x.clone(), Mode::Train { quantize }, None);
                let b = forward(&plan2, &sub.view(), x.clone(), Mode::Train { quantize }, None);
                assert!(close(a, b) < 1e-5);
            }
            // Calibrated evaluation agrees too.
            let mut cal = Calibration::default();
            forward(&plan, &w, x.clone(), Mode::Train { quantize: true }, Some(&mut cal));
            let cal = cal.finish();
            let a = forward(&plan, &w, x.clone(), Mode::Eval { quantize: true, calibration: &cal }, None);
            let b = forward(&plan2, &sub.view(), x.clone(), Mode::Eval { quantize: true, calibration: &cal }, None);
            assert!(close(a, b) < 1e-5);
        }
    }

    #[test]
    fn sorting_channels_keeps_the_largest_network_and_moves_importance_first() {
        let space = micro();
        let dev = Device::flex();
        let net = Supernet::new(&space, 3, &dev);
        let arch = largest(&space, 8);
        let x = input(5, &dev);
        let (plan, w) = net.view(&space, &arch);
        let before = forward(&plan, &w, x.clone(), Mode::Train { quantize: false }, None);
        let sorted = net.sort_channels();
        let (plan, w) = sorted.view(&space, &arch);
        let after = forward(&plan, &w, x, Mode::Train { quantize: false }, None);
        assert!(close(before, after) < 1e-4);
        let imp: Vec<f32> = sorted.blocks[2].project.w.val().abs().sum_dim(0).sum_dim(2).sum_dim(3).into_data().try_to_vec::<f32>().unwrap();
        assert!(imp.windows(2).all(|p| p[0] >= p[1]), "{imp:?}");
    }
}
