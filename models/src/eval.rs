//! Measuring subnets: batch-norm recalibration, accuracy, and (optionally) quantization-aware
//! fine-tuning.
//!
//! Every subnet is measured the once-for-all way: its batch-norm statistics (and, quantized, its
//! activation steps) are recomputed on a fixed sample of training images before it is evaluated
//! on the validation split. The test split is only used for final reports.

use bitfusion_search::{Arch, Space};
use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use burn::tensor::loss::cross_entropy_with_logits;
use serde::{Deserialize, Serialize};

use crate::data::{DataSet, Images};
use crate::rng::Rng;
use crate::quant::Quantizer;
use crate::supernet::{Calibration, Mode, Plan, Supernet, Weights, forward};
use crate::train::{correct, smoothed_targets};

/// How subnets are measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalConfig {
    /// Training images (the first ones) used to recalibrate batch norm and activation steps.
    pub calibration_images: usize,
    /// Images evaluated (the first ones of the split); all when None.
    pub eval_images: Option<usize>,
    /// Calibration batch: statistics and steps are averaged over batches of this many images.
    pub batch: usize,
}

impl Default for EvalConfig {
    fn default() -> EvalConfig {
        EvalConfig { calibration_images: 1000, eval_images: Some(5000), batch: 500 }
    }
}

fn chunks(n: usize, batch: usize) -> impl Iterator<Item = Vec<usize>> {
    (0..n).step_by(batch.max(1)).map(move |s| (s..(s + batch).min(n)).collect())
}

/// Recompute batch-norm statistics (and, when `quantize`, activation steps) of a subnet on
/// calibration images.
pub fn calibrate(plan: &Plan, w: &Weights, data: &DataSet, cfg: &EvalConfig, quantize: bool, device: &Device) -> Calibration {
    let mut cal = Calibration::default();
    for idx in chunks(cfg.calibration_images.min(data.train.len()), cfg.batch) {
        let (x, _) = data.batch(&data.train, &idx, device);
        forward(plan, w, x, Mode::Train { quantize }, Some(&mut cal));
    }
    cal.finish()
}

/// Images per forward pass at evaluation. An evaluated image's output does not depend on its
/// batch (calibrated statistics and steps), so this only trades overhead against cache: 100
/// images keep the activations near the cache, and measured 25% faster than 500 on this machine.
pub const EVAL_BATCH: usize = 100;

/// Accuracy of a calibrated subnet on `images` (evaluated [`EVAL_BATCH`] images at a time).
pub fn accuracy_of(plan: &Plan, w: &Weights, cal: &Calibration, data: &DataSet, images: &Images, cfg: &EvalConfig, quantize: bool, device: &Device) -> f64 {
    let n = cfg.eval_images.unwrap_or(images.len()).min(images.len());
    let mut right = 0;
    for idx in chunks(n, EVAL_BATCH.min(cfg.batch.max(1))) {
        let (x, _) = data.batch(images, &idx, device);
        let labels: Vec<u8> = idx.iter().map(|&i| images.labels[i]).collect();
        right += correct(forward(plan, w, x, Mode::Eval { quantize, calibration: cal }, None), &labels);
    }
    right as f64 / n.max(1) as f64
}

/// Logits `[n, classes]` (row-major) of a calibrated subnet on the first `n` of `images`, fake-quantized
/// when `quantize`: what [`accuracy_of`] ranks, for comparing with an outside runtime.
#[allow(clippy::too_many_arguments)]
pub fn logits_of(plan: &Plan, w: &Weights, cal: &Calibration, data: &DataSet, images: &Images, n: usize, quantize: bool, device: &Device) -> Vec<f32> {
    let n = n.min(images.len());
    let mut out = Vec::new();
    for idx in chunks(n, EVAL_BATCH) {
        let (x, _) = data.batch(images, &idx, device);
        let y = forward(plan, w, x, Mode::Eval { quantize, calibration: cal }, None);
        out.extend(y.into_data().convert::<f32>().try_to_vec::<f32>().expect("f32 logits"));
    }
    out
}

/// Recalibrate a subnet's weights (plain-device tensors) and measure its accuracy on `images`.
fn recalibrated_accuracy(plan: &Plan, w: &Weights, data: &DataSet, images: &Images, cfg: &EvalConfig, quantize: bool, device: &Device) -> f64 {
    let plain = device.clone().without_autodiff();
    let cal = calibrate(plan, w, data, cfg, quantize, &plain);
    accuracy_of(plan, w, &cal, data, images, cfg, quantize, &plain)
}

/// Recalibrate and evaluate `arch` as a view of `net` (evaluated without autodiff): in full
/// precision (`quantize` None) or fake-quantized with the architecture's bits.
#[allow(clippy::too_many_arguments)]
pub fn accuracy(net: &Supernet, space: &Space, arch: &Arch, data: &DataSet, images: &Images, cfg: &EvalConfig, quantize: Option<Quantizer>, device: &Device) -> f64 {
    let (mut plan, w) = net.valid().view(space, arch);
    if let Some(q) = quantize {
        plan.quantizer = q;
    }
    recalibrated_accuracy(&plan, &w, data, images, cfg, quantize.is_some(), device)
}

/// Quantization-aware fine-tuning of one extracted subnet.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FinetuneConfig {
    pub steps: usize,
    pub batch: usize,
    pub lr: f64,
}

impl Default for FinetuneConfig {
    fn default() -> FinetuneConfig {
        FinetuneConfig { steps: 50, batch: 32, lr: 5e-4 }
    }
}

/// Extract `arch` from `net` (on the autodiff `device`), quantize it with its bits, fine-tune it
/// for `ft.steps` steps on training images drawn with `seed`, recalibrate, and return its
/// quantized accuracy on `images`.
#[allow(clippy::too_many_arguments)]
pub fn finetuned_accuracy(
    net: &Supernet,
    space: &Space,
    arch: &Arch,
    data: &DataSet,
    images: &Images,
    cfg: &EvalConfig,
    ft: &FinetuneConfig,
    seed: u64,
    device: &Device,
) -> f64 {
    let (plan, mut sub) = net.extract(space, arch);
    let mut opt = AdamConfig::new().init();
    let mut rng = Rng::new(seed);
    for _ in 0..ft.steps {
        let idx: Vec<usize> = (0..ft.batch).map(|_| rng.below(data.train.len())).collect();
        let (x, _) = data.batch(&data.train, &idx, device);
        let labels: Vec<u8> = idx.iter().map(|&i| data.train.labels[i]).collect();
        let targets = smoothed_targets(&labels, space.head.classes as usize, 0.0, device);
        let loss = cross_entropy_with_logits(forward(&plan, &sub.view(), x, Mode::Train { quantize: true }, None), targets);
        let grads = GradientsParams::from_grads(loss.backward(), &sub);
        sub = opt.step(ft.lr, sub, grads);
    }
    recalibrated_accuracy(&plan, &sub.valid().view(), data, images, cfg, true, device)
}

/// One cell of the post-training quantization table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PtqRow {
    /// Which network (e.g. `largest`, `middle`).
    pub network: String,
    /// `fp32`, or the quantizer's name.
    pub quantizer: String,
    /// Bits of every searchable weight and activation slot (0 for fp32); the stem, first block and
    /// head keep the space's fixed bits.
    pub w_bits: u32,
    pub a_bits: u32,
    pub accuracy: f64,
}

/// Post-training quantization: each network in full precision, then at every uniform (w, a) of
/// `bits` with each quantizer, recalibrated (batch norm and steps) and measured on `images`.
#[allow(clippy::too_many_arguments)]
pub fn ptq_table(
    net: &Supernet,
    space: &Space,
    networks: &[(String, Arch)],
    bits: &[u32],
    quantizers: &[Quantizer],
    data: &DataSet,
    images: &Images,
    cfg: &EvalConfig,
    device: &Device,
    progress: &mut dyn FnMut(&PtqRow),
) -> Vec<PtqRow> {
    let mut rows = Vec::new();
    for (name, arch) in networks {
        let fp = PtqRow { network: name.clone(), quantizer: "fp32".into(), w_bits: 0, a_bits: 0, accuracy: accuracy(net, space, arch, data, images, cfg, None, device) };
        progress(&fp);
        rows.push(fp);
        for &q in quantizers {
            for &w in bits {
                for &a in bits {
                    let mut arch = arch.clone();
                    crate::policy::set_uniform(&mut arch, w, a);
                    let row = PtqRow { network: name.clone(), quantizer: q.name().into(), w_bits: w, a_bits: a, accuracy: accuracy(net, space, &arch, data, images, cfg, Some(q), device) };
                    progress(&row);
                    rows.push(row);
                }
            }
        }
    }
    rows
}
