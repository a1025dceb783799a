//! Measuring subnets: batch-norm recalibration, accuracy, quantization-aware fine-tuning, and the
//! collection of (architecture, bits, accuracy) pairs for the accuracy predictor.
//!
//! Every subnet is measured the once-for-all way: its batch-norm statistics (and, quantized, its
//! activation ranges) are recomputed on a fixed sample of training images before it is evaluated
//! on the validation split. The test split is only used for final reports.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use bitfusion_search::{Arch, Space};
use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use burn::tensor::loss::cross_entropy_with_logits;
use serde::{Deserialize, Serialize};

use crate::data::{DataSet, Images};
use crate::rng::Rng;
use crate::supernet::{Calibration, Mode, Plan, Supernet, Weights, forward};
use crate::train::{correct, smoothed_targets};

/// How subnets are measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalConfig {
    /// Training images (the first ones) used to recalibrate batch norm and activation ranges.
    pub calibration_images: usize,
    /// Images evaluated (the first ones of the split); all when None.
    pub eval_images: Option<usize>,
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

/// Recompute batch-norm statistics and activation ranges of a subnet on calibration images.
pub fn calibrate(plan: &Plan, w: &Weights, data: &DataSet, cfg: &EvalConfig, quantize: bool, device: &Device) -> Calibration {
    let mut cal = Calibration::default();
    for idx in chunks(cfg.calibration_images.min(data.train.len()), cfg.batch) {
        let (x, _) = data.batch(&data.train, &idx, device);
        forward(plan, w, x, Mode::Train { quantize }, Some(&mut cal));
    }
    cal.finish()
}

/// Accuracy of a calibrated subnet on `images`.
pub fn accuracy_of(plan: &Plan, w: &Weights, cal: &Calibration, data: &DataSet, images: &Images, cfg: &EvalConfig, quantize: bool, device: &Device) -> f64 {
    let n = cfg.eval_images.unwrap_or(images.len()).min(images.len());
    let mut right = 0;
    for idx in chunks(n, cfg.batch) {
        let (x, _) = data.batch(images, &idx, device);
        let labels: Vec<u8> = idx.iter().map(|&i| images.labels[i]).collect();
        right += correct(forward(plan, w, x, Mode::Eval { quantize, calibration: cal }, None), &labels);
    }
    right as f64 / n.max(1) as f64
}

/// Recalibrate a subnet's weights (plain-device tensors) and measure its accuracy on `images`.
fn recalibrated_accuracy(plan: &Plan, w: &Weights, data: &DataSet, images: &Images, cfg: &EvalConfig, quantize: bool, device: &Device) -> f64 {
    let plain = device.clone().without_autodiff();
    let cal = calibrate(plan, w, data, cfg, quantize, &plain);
    accuracy_of(plan, w, &cal, data, images, cfg, quantize, &plain)
}

/// Recalibrate and evaluate `arch` as a view of `net` (evaluated without autodiff).
#[allow(clippy::too_many_arguments)]
pub fn accuracy(net: &Supernet, space: &Space, arch: &Arch, data: &DataSet, images: &Images, cfg: &EvalConfig, quantize: bool, device: &Device) -> f64 {
    let (plan, w) = net.valid().view(space, arch);
    recalibrated_accuracy(&plan, &w, data, images, cfg, quantize, device)
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

/// One measured subnet.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pair {
    pub index: usize,
    /// Canonical architecture text (with its bits; they are meaningless when not `quantized`).
    pub arch: String,
    pub quantized: bool,
    pub finetune_steps: usize,
    /// Validation accuracy (0..1).
    pub accuracy: f64,
    pub seconds: f64,
}

/// How to sample pairs.
#[derive(Clone, Debug)]
pub struct SampleConfig {
    pub n: usize,
    pub seed: u64,
    pub quantized: bool,
    pub finetune: FinetuneConfig,
    pub eval: EvalConfig,
}

/// The pairs already in a pair file (a torn last line from an interruption is dropped).
pub fn read_pairs(path: &Path) -> Result<Vec<Pair>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        match serde_json::from_str::<Pair>(l) {
            Ok(p) => out.push(p),
            Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => break,
            Err(e) => return Err(format!("{}:{}: not a pair record ({e})", path.display(), i + 1)),
        }
    }
    Ok(out)
}

/// The architecture of pair `index` of a run seeded with `seed`: random choices everywhere, bits
/// the largest when not quantized.
pub fn pair_arch(space: &Space, seed: u64, index: usize, quantized: bool) -> Arch {
    let mut state = Rng::stream(seed, index as u64).next_u64();
    let mut a = Arch::random(space, &mut state);
    if !quantized {
        let b = *space.bits.iter().max().expect("bits");
        for blk in a.stages.iter_mut().flatten() {
            (blk.pw_w, blk.pw_a, blk.dw_w, blk.dw_a) = (b, b, b, b);
        }
    }
    a
}

/// Measure `cfg.n` subnets of `net`, appending each to `out` as a JSON line as soon as it is
/// measured; pairs already in `out` are skipped (resume). `net` lives on the autodiff `device`.
pub fn sample_pairs(
    net: &Supernet,
    space: &Space,
    data: &DataSet,
    cfg: &SampleConfig,
    out: &Path,
    device: &Device,
    progress: &mut dyn FnMut(usize, usize, &Pair),
) -> Result<Vec<Pair>, String> {
    crate::train::check_data(space, data)?;
    let mut pairs = read_pairs(out)?;
    let done: std::collections::HashSet<usize> = pairs.iter().map(|p| p.index).collect();
    // Rewrite the valid prefix (atomically) so a torn line never stays in the file.
    let text: String = pairs.iter().map(|p| serde_json::to_string(p).expect("pair serialises") + "\n").collect();
    crate::checkpoint::write_atomic(out, text.as_bytes()).map_err(|e| e.0)?;
    let mut file = std::fs::OpenOptions::new().append(true).open(out).map_err(|e| format!("{}: {e}", out.display()))?;
    for index in 0..cfg.n {
        if done.contains(&index) {
            continue;
        }
        let arch = pair_arch(space, cfg.seed, index, cfg.quantized);
        let start = Instant::now();
        let accuracy = if cfg.quantized {
            finetuned_accuracy(net, space, &arch, data, &data.valid, &cfg.eval, &cfg.finetune, cfg.seed ^ index as u64, device)
        } else {
            accuracy(net, space, &arch, data, &data.valid, &cfg.eval, false, device)
        };
        let pair = Pair {
            index,
            arch: arch.to_text(),
            quantized: cfg.quantized,
            finetune_steps: if cfg.quantized { cfg.finetune.steps } else { 0 },
            accuracy,
            seconds: start.elapsed().as_secs_f64(),
        };
        writeln!(file, "{}", serde_json::to_string(&pair).expect("pair serialises")).map_err(|e| format!("{}: {e}", out.display()))?;
        file.flush().map_err(|e| format!("{}: {e}", out.display()))?;
        progress(index, cfg.n, &pair);
        pairs.push(pair);
    }
    pairs.sort_by_key(|p| p.index);
    Ok(pairs)
}

/// Minimum, median and maximum of the accuracies.
pub fn spread(pairs: &[Pair]) -> Option<(f64, f64, f64)> {
    let mut a: Vec<f64> = pairs.iter().map(|p| p.accuracy).collect();
    if a.is_empty() {
        return None;
    }
    a.sort_by(f64::total_cmp);
    Some((a[0], a[a.len() / 2], a[a.len() - 1]))
}
