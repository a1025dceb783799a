//! Supernet training: the full network first, then progressive shrinking (kernel, depth, width)
//! with knowledge distillation from the full network, several sampled subnets per step; a
//! checkpoint after every epoch, resumed after an interruption; every random choice seeded.
//!
//! Schedule semantics follow once-for-all (`shared/reference/search/NOTES.md` 2.3): each phase gets
//! a fresh optimizer and a cosine learning-rate schedule; the teacher is the full network at the
//! end of the first phase, run with batch statistics (OFA runs its teacher in train mode); the
//! width phase starts by sorting middle channels by importance. Adam replaces OFA's SGD: with
//! a few epochs instead of hundreds it converges much faster.

use std::path::Path;
use std::time::Instant;

pub use bitfusion_search::evolution::{largest, smallest};
use bitfusion_search::{Arch, Space};
use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use burn::store::ModuleRecord;
use burn::tensor::activation::softmax;
use burn::tensor::loss::cross_entropy_with_logits;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{CheckpointError, Container};
use crate::data::DataSet;
use crate::eval::{self, EvalConfig};
use crate::policy;
use crate::rng::{Rng, shuffle};
use crate::supernet::{Mode, Supernet, forward};

/// A progressive-shrinking phase: which dimensions are sampled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// The largest network only.
    Full,
    /// Kernel sizes sampled.
    Kernel,
    /// Kernel sizes and depths sampled.
    Depth,
    /// Kernel sizes, depths and middle widths sampled.
    Width,
    /// Quantization-aware: every step trains a sandwich over bits (the largest network at a
    /// random uniform width or in full precision, the smallest at the lowest width, and random
    /// subnets with mixed policies), distilled from the full-precision network.
    Quant,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhaseConfig {
    pub phase: Phase,
    pub epochs: usize,
    /// Peak learning rate (cosine decay to zero over the phase).
    pub lr: f64,
    /// Training images per epoch of this phase (overrides `TrainConfig::images_per_epoch`).
    pub images: Option<usize>,
}

/// Everything that determines a training run (recorded in the checkpoint; a resume with a
/// different configuration is an error).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub seed: u64,
    pub batch: usize,
    pub phases: Vec<PhaseConfig>,
    /// Training images per epoch (a fresh seeded sample each epoch); all when None.
    pub images_per_epoch: Option<usize>,
    /// Subnets per step in the shrinking phases (gradients summed). The first is always the
    /// largest network (the "sandwich rule" of BigNAS, Yu et al. 2020), so shrinking does not
    /// erode the full network that the smaller subnets inherit from; the rest are random. The
    /// quantization-aware phase trains at least three (largest, smallest, random).
    pub subnets_per_step: usize,
    /// Weight of the distillation loss (soft cross-entropy to the teacher).
    pub kd_weight: f32,
    pub label_smoothing: f32,
    /// Also sample per-layer bits in the shrinking phases and train with fake quantization.
    pub quantized: bool,
    /// Augment training images (random mirror and shift of up to 2 pixels; absent in older
    /// checkpoints, which trained without).
    #[serde(default)]
    pub augment: bool,
    /// Validation after each epoch (largest network, recalibrated).
    pub eval: EvalConfig,
}

impl TrainConfig {
    /// The default schedule for the `micro` space on Fashion-MNIST (sized for a 2-core CPU).
    pub fn micro_default(seed: u64) -> TrainConfig {
        TrainConfig {
            seed,
            batch: 64,
            phases: vec![
                PhaseConfig { phase: Phase::Full, epochs: 6, lr: 3e-3, images: None },
                PhaseConfig { phase: Phase::Kernel, epochs: 1, lr: 5e-4, images: Some(SHRINK_IMAGES) },
                PhaseConfig { phase: Phase::Depth, epochs: 1, lr: 5e-4, images: Some(SHRINK_IMAGES) },
                PhaseConfig { phase: Phase::Width, epochs: 1, lr: 5e-4, images: Some(SHRINK_IMAGES) },
                PhaseConfig { phase: Phase::Quant, epochs: QUANT_EPOCHS, lr: 5e-4, images: Some(QUANT_IMAGES) },
            ],
            images_per_epoch: None,
            subnets_per_step: 2,
            kd_weight: 1.0,
            label_smoothing: 0.1,
            quantized: false,
            augment: true,
            eval: EvalConfig::default(),
        }
    }

    /// Does this configuration continue `old`: the same settings, with `old`'s phases followed by
    /// more? (A finished checkpoint then resumes into the new phases.)
    pub fn extends(&self, old: &TrainConfig) -> bool {
        let same = TrainConfig { phases: old.phases.clone(), ..self.clone() };
        same == *old && self.phases.len() > old.phases.len() && self.phases[..old.phases.len()] == old.phases[..]
    }
}

/// Training images per epoch of the default kernel, depth and width phases.
pub const SHRINK_IMAGES: usize = 30_000;
/// Epochs of the default quantization-aware phase.
pub const QUANT_EPOCHS: usize = 1;
/// Training images per epoch of the default quantization-aware phase.
pub const QUANT_IMAGES: usize = 40_000;

/// One finished epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochLog {
    pub phase: Phase,
    pub epoch: usize,
    pub loss: f64,
    pub train_accuracy: f64,
    /// The largest network's validation accuracy after the epoch.
    pub valid_accuracy: f64,
    pub seconds: f64,
    pub images_per_second: f64,
}

/// The checkpoint header: where training stands.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    pub program: String,
    pub space_toml: String,
    pub space_hash: String,
    pub data: String,
    pub config: TrainConfig,
    /// Index of the current phase and epochs finished in it (phase == phases.len() when done).
    pub phase: usize,
    pub epoch: usize,
    pub step: u64,
    pub history: Vec<EpochLog>,
    /// The full network's test accuracy, measured once training is complete.
    pub test_accuracy: Option<f64>,
}

/// Progress of a running epoch, for a progress bar.
#[derive(Clone, Debug)]
pub struct Progress<'a> {
    pub phase: Phase,
    pub epoch: usize,
    pub epochs: usize,
    pub step: usize,
    pub steps: usize,
    pub loss: f64,
    pub accuracy: f64,
    pub images_per_second: f64,
    pub note: &'a str,
}

/// A trained (or training) supernet with its space and state.
pub struct Trained {
    pub space: Space,
    pub net: Supernet,
    pub state: TrainState,
}

fn ck_err(e: impl std::fmt::Display, path: &Path) -> CheckpointError {
    CheckpointError(format!("{}: {e}", path.display()))
}

fn record_bytes<M: Module>(m: M, path: &Path) -> Result<Vec<u8>, CheckpointError> {
    Ok(m.into_record().into_bytes().map_err(|e| ck_err(format!("{e:?}"), path))?.to_vec())
}

fn load_module<M: Module>(m: M, bytes: &[u8], path: &Path) -> Result<M, CheckpointError> {
    let rec = ModuleRecord::from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes.to_vec())).map_err(|e| ck_err(format!("corrupt record ({e:?})"), path))?;
    m.try_load_record(rec).map_err(|e| ck_err(format!("the record does not fit this space's supernet ({e:?})"), path))
}

/// Load a checkpoint's supernet (on `device`) with its space and state.
pub fn load(path: &Path, device: &Device) -> Result<Trained, CheckpointError> {
    let c = Container::load(path)?;
    let state: TrainState = serde_json::from_str(&c.header).map_err(|e| ck_err(format!("bad header ({e})"), path))?;
    let space = Space::from_toml(&state.space_toml, &path.display().to_string()).map_err(|e| ck_err(e, path))?;
    let bytes = c.section("net").ok_or_else(|| ck_err("no network section", path))?;
    let net = load_module(Supernet::new(&space, 0, device), bytes, path)?;
    Ok(Trained { space, net, state })
}


/// A subnet for `phase`: the dimensions the phase has released are random, the rest largest.
pub fn sample_subnet(space: &Space, phase: Phase, quantized: bool, rng: &mut Rng) -> Arch {
    let max_bits = *space.bits.iter().max().expect("bits");
    let big = largest(space, max_bits);
    if phase == Phase::Full {
        return big;
    }
    let slots = space.slots();
    let stages = big
        .stages
        .iter()
        .enumerate()
        .map(|(s, b)| {
            let depth = if matches!(phase, Phase::Depth | Phase::Width) { rng.pick(&space.stages[s].depths) as usize } else { b.len() };
            (0..depth)
                .map(|i| {
                    let mut blk = b[i];
                    blk.kernel = rng.pick(&space.kernels);
                    if phase == Phase::Width {
                        let slot = slots.iter().find(|x| x.stage == s && x.index == i).expect("slot");
                        blk.mid = rng.pick(&slot.mids);
                    }
                    if quantized {
                        let bits = &space.bits;
                        (blk.pw_w, blk.pw_a, blk.dw_w, blk.dw_a) = (rng.pick(bits), rng.pick(bits), rng.pick(bits), rng.pick(bits));
                    }
                    blk
                })
                .collect()
        })
        .collect();
    Arch { space: space.name.clone(), stages }
}

/// The subnets one step of `phase` trains, each with whether it is fake-quantized.
///
/// Full: the largest network. Shrinking phases: the largest, then random subnets of the phase
/// (with i.i.d. bits when `cfg.quantized`). Quant: a sandwich over bits (BatchQuant, EQ-Net): the
/// largest network in full precision (so quantization-aware training does not erode it), the
/// largest at a uniform width drawn from the space's, the smallest at the lowest width, then
/// random subnets with mixed policies (at least one; more when `subnets_per_step` exceeds 4).
pub fn step_subnets(space: &Space, phase: Phase, cfg: &TrainConfig, rng: &mut Rng) -> Vec<(Arch, bool)> {
    let max_bits = *space.bits.iter().max().expect("a space has bit choices");
    let min_bits = *space.bits.iter().min().expect("a space has bit choices");
    match phase {
        Phase::Full => vec![(largest(space, max_bits), false)],
        Phase::Quant => {
            let mut big = largest(space, max_bits);
            policy::uniform(&mut big, space, rng);
            let mut out = vec![(largest(space, max_bits), false), (big, true), (smallest(space, min_bits), true)];
            for _ in 3..cfg.subnets_per_step.max(4) {
                let mut a = sample_subnet(space, Phase::Width, false, rng);
                policy::mixed(&mut a, space, policy::DIRICHLET_ALPHA, rng);
                out.push((a, true));
            }
            out
        }
        _ => {
            let n = cfg.subnets_per_step.max(1);
            let mut out = Vec::with_capacity(n);
            for k in 0..n {
                if k == 0 && n > 1 {
                    out.push((largest(space, max_bits), false));
                } else {
                    out.push((sample_subnet(space, phase, cfg.quantized, rng), cfg.quantized));
                }
            }
            out
        }
    }
}

/// The loss of one training step: the sum over `subnets` (each a view of `net`, fake-quantized
/// when its flag says so) of the cross-entropy to `targets` plus, given a teacher's `soft`
/// targets, `kd_weight` x the soft cross-entropy; and the subnets' correct predictions of
/// `labels` (counted over every subnet). Shared by [`train`] and the bilevel search.
#[allow(clippy::too_many_arguments)]
pub fn subnets_loss(net: &Supernet, space: &Space, subnets: &[(Arch, bool)], x: &Tensor<4>, targets: &Tensor<2>, soft: Option<&Tensor<2>>, kd_weight: f32, labels: &[u8]) -> (Tensor<1>, usize) {
    let mut right = 0;
    let mut total: Option<Tensor<1>> = None;
    for (arch, quantize) in subnets {
        let (plan, w) = net.view(space, arch);
        let logits = forward(&plan, &w, x.clone(), Mode::Train { quantize: *quantize }, None);
        right += correct(logits.clone().detach(), labels);
        let mut loss = cross_entropy_with_logits(logits.clone(), targets.clone());
        if let Some(soft) = soft {
            loss = loss + cross_entropy_with_logits(logits, soft.clone()).mul_scalar(kd_weight);
        }
        total = Some(match total {
            Some(t) => t + loss,
            None => loss,
        });
    }
    (total.expect("at least one subnet"), right)
}

/// One-hot targets with label smoothing, `[b, classes]`.
pub fn smoothed_targets(labels: &[u8], classes: usize, smoothing: f32, device: &Device) -> Tensor<2> {
    let off = smoothing / classes as f32;
    let mut v = vec![off; labels.len() * classes];
    for (i, &l) in labels.iter().enumerate() {
        v[i * classes + l as usize] += 1.0 - smoothing;
    }
    Tensor::<2>::from_data(TensorData::new(v, [labels.len(), classes]), device)
}

/// Number of correct predictions.
pub fn correct(logits: Tensor<2>, labels: &[u8]) -> usize {
    let pred: Vec<i64> = logits.argmax(1).into_data().convert::<i64>().try_to_vec::<i64>().expect("int predictions");
    pred.iter().zip(labels).filter(|(p, l)| **p == **l as i64).count()
}

/// The batches of one epoch: a seeded sample (or permutation) of the training images.
fn epoch_order(n: usize, cfg: &TrainConfig, phase: usize, epoch: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    shuffle(&mut idx, cfg.seed ^ ((phase as u64) << 40) ^ ((epoch as u64) << 20) ^ 0xe90c);
    idx.truncate(cfg.phases[phase].images.or(cfg.images_per_epoch).unwrap_or(n).min(n));
    idx
}

/// Learning rate at `step` of a phase of `steps` steps: linear warm-up over the first 5%, then
/// one cosine decay to zero across the whole phase (not restarted per epoch).
fn cosine(lr: f64, step: usize, steps: usize) -> f64 {
    let warm = (steps / 20).max(1);
    if step < warm {
        return lr * (step + 1) as f64 / warm as f64;
    }
    0.5 * lr * (1.0 + (std::f64::consts::PI * (step - warm) as f64 / (steps - warm).max(1) as f64).cos())
}

/// Train (or resume) the supernet of `space` on `data`, checkpointing to `ckpt` after every
/// epoch. `stop_after` ends the run after that many epochs of this call (an interruption, for
/// tests and time budgets). Returns the final state.
#[allow(clippy::too_many_arguments)]
pub fn train(
    space: &Space,
    data: &DataSet,
    cfg: &TrainConfig,
    ckpt: &Path,
    device: &Device,
    stop_after: Option<usize>,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Trained, CheckpointError> {
    check_data(space, data).map_err(CheckpointError)?;
    let (mut net, mut state, mut opt_bytes, mut teacher) = if ckpt.exists() {
        let c = Container::load(ckpt)?;
        let state: TrainState = serde_json::from_str(&c.header).map_err(|e| ck_err(format!("bad header ({e})"), ckpt))?;
        if state.space_hash != space.hash() {
            return Err(ck_err(format!("the checkpoint is of space '{}' (hash {}), not of the space given (hash {}); remove it or pass another --out", state_space_name(&state), &state.space_hash[..12], &space.hash()[..12]), ckpt));
        }
        let mut state = state;
        if state.config != *cfg {
            if !cfg.extends(&state.config) {
                return Err(ck_err("the checkpoint was trained with a different configuration (seed, batch or schedule); remove it to start again", ckpt));
            }
            // New phases after the checkpoint's: continue into them (the test accuracy is measured
            // again at the end).
            state.config = cfg.clone();
            state.test_accuracy = None;
        }
        let net = load_module(Supernet::new(space, cfg.seed, device), c.section("net").ok_or_else(|| ck_err("no network section", ckpt))?, ckpt)?;
        let teacher = match c.section("teacher") {
            Some(b) => Some(load_module(Supernet::new(space, cfg.seed, device), b, ckpt)?.no_grad()),
            None => None,
        };
        (net, state, c.section("optimizer").map(|b| b.to_vec()), teacher)
    } else {
        let state = TrainState {
            program: format!("bitfusion {}", env!("CARGO_PKG_VERSION")),
            space_toml: toml::to_string(space).expect("a space serialises"),
            space_hash: space.hash(),
            data: data.name.clone(),
            config: cfg.clone(),
            phase: 0,
            epoch: 0,
            step: 0,
            history: Vec::new(),
            test_accuracy: None,
        };
        (Supernet::new(space, cfg.seed, device), state, None, None)
    };
    let mut done_here = 0;
    while state.phase < cfg.phases.len() {
        let pc = cfg.phases[state.phase].clone();
        if state.epoch == 0 && opt_bytes.is_none() && pc.phase == Phase::Width {
            net = net.sort_channels();
        }
        if pc.phase != Phase::Full && teacher.is_none() {
            teacher = Some(net.clone().no_grad());
        }
        let mut opt = AdamConfig::new().init();
        if let Some(b) = opt_bytes.take() {
            opt = opt.from_bytes(burn::tensor::Bytes::from_bytes_vec(b)).map_err(|e| ck_err(format!("corrupt optimizer state ({e:?})"), ckpt))?;
        }
        while state.epoch < pc.epochs {
            if stop_after.is_some_and(|s| done_here >= s) {
                return Ok(Trained { space: space.clone(), net, state });
            }
            let order = epoch_order(data.train.len(), cfg, state.phase, state.epoch);
            let steps = order.len() / cfg.batch;
            let (mut loss_sum, mut right, mut seen) = (0.0, 0usize, 0usize);
            let start = Instant::now();
            for s in 0..steps {
                let idx = &order[s * cfg.batch..(s + 1) * cfg.batch];
                let x = if cfg.augment {
                    data.augmented_batch(&data.train, idx, cfg.seed ^ 0xa0_9e17 ^ state.step.wrapping_mul(0x9e37_79b9), device)
                } else {
                    data.batch(&data.train, idx, device).0
                };
                let labels: Vec<u8> = idx.iter().map(|&i| data.train.labels[i]).collect();
                let targets = smoothed_targets(&labels, space.head.classes as usize, cfg.label_smoothing, device);
                let soft = teacher.as_ref().map(|t| {
                    let (plan, w) = t.view(space, &largest(space, 32));
                    softmax(forward(&plan, &w, x.clone(), Mode::Train { quantize: false }, None), 1).detach()
                });
                let mut rng = Rng::stream(cfg.seed, state.step);
                let subnets = step_subnets(space, pc.phase, cfg, &mut rng);
                let n_sub = subnets.len();
                let (total, step_right) = subnets_loss(&net, space, &subnets, &x, &targets, soft.as_ref(), cfg.kd_weight, &labels);
                right += step_right;
                seen += labels.len() * n_sub;
                loss_sum += total.clone().detach().into_scalar::<f32>() as f64 / n_sub as f64;
                let grads = GradientsParams::from_grads(total.backward(), &net);
                net = opt.step(cosine(pc.lr, state.epoch * steps + s, pc.epochs * steps), net, grads);
                state.step += 1;
                let secs = start.elapsed().as_secs_f64().max(1e-9);
                progress(&Progress {
                    phase: pc.phase,
                    epoch: state.epoch,
                    epochs: pc.epochs,
                    step: s + 1,
                    steps,
                    loss: loss_sum / (s + 1) as f64,
                    accuracy: right as f64 / seen.max(1) as f64,
                    images_per_second: ((s + 1) * cfg.batch) as f64 / secs,
                    note: "",
                });
            }
            let seconds = start.elapsed().as_secs_f64();
            progress(&Progress {
                phase: pc.phase,
                epoch: state.epoch,
                epochs: pc.epochs,
                step: steps,
                steps,
                loss: loss_sum / steps.max(1) as f64,
                accuracy: right as f64 / seen.max(1) as f64,
                images_per_second: (steps * cfg.batch) as f64 / seconds.max(1e-9),
                note: "validating",
            });
            let valid_accuracy = eval::accuracy(&net, space, &largest(space, 32), data, &data.valid, &cfg.eval, None, device);
            state.history.push(EpochLog {
                phase: pc.phase,
                epoch: state.epoch,
                loss: loss_sum / steps.max(1) as f64,
                train_accuracy: right as f64 / seen.max(1) as f64,
                valid_accuracy,
                seconds,
                images_per_second: (steps * cfg.batch) as f64 / seconds.max(1e-9),
            });
            state.epoch += 1;
            if state.epoch == pc.epochs {
                state.phase += 1;
                state.epoch = 0;
            }
            let mut sections = vec![("net".to_string(), record_bytes(net.clone(), ckpt)?)];
            if state.epoch != 0 {
                // Mid-phase: the optimizer state continues; at a phase boundary it restarts.
                sections.push(("optimizer".to_string(), opt.into_bytes().map_err(|e| ck_err(format!("{e:?}"), ckpt))?.to_vec()));
            }
            if let Some(t) = &teacher {
                sections.push(("teacher".to_string(), record_bytes(t.clone(), ckpt)?));
            }
            if state.phase == cfg.phases.len() {
                state.test_accuracy = Some(eval::accuracy(&net, space, &largest(space, 32), data, &data.test, &cfg.eval, None, device));
            }
            let header = serde_json::to_string_pretty(&state).expect("state serialises");
            Container { header, sections }.save(ckpt)?;
            done_here += 1;
            if state.epoch == 0 {
                break;
            }
        }
    }
    Ok(Trained { space: space.clone(), net, state })
}

/// Do the data's images and classes fit the space's input and head?
pub fn check_data(space: &Space, data: &DataSet) -> Result<(), String> {
    let t = &data.train;
    if t.size != space.input_size as usize || t.channels != space.input_channels as usize {
        return Err(format!(
            "data set '{}' has {}x{}x{} images, but space '{}' takes {}x{}x{}",
            data.name, t.size, t.size, t.channels, space.name, space.input_size, space.input_size, space.input_channels
        ));
    }
    if t.classes > space.head.classes as usize {
        return Err(format!("data set '{}' has {} classes, but space '{}' classifies into {}", data.name, t.classes, space.name, space.head.classes));
    }
    Ok(())
}

fn state_space_name(state: &TrainState) -> String {
    Space::from_toml(&state.space_toml, "checkpoint").map(|s| s.name).unwrap_or_else(|_| "?".into())
}

/// A toy space and data set for tests: 12x12 grey images of 4 classes (a bright bar whose
/// position is the class, plus noise), a 2-stage space with kernels 3/5 and bits 2/4/8.
#[doc(hidden)]
pub mod toy {
    use super::*;
    use crate::data::write;

    pub const SPACE: &str = r#"
name = "toy"
description = "toy: 12x12x1, 2 stages"
input_size = 12
input_channels = 1
kernels = [3, 5]
expand_min = 1.0
expand_max = 2.0
channel_step = 4
bits = [2, 4, 8]

[stem]
out_channels = 8
kernel = 3
stride = 1
bits = 8

[[stages]]
width = 8
stride = 2
depths = [1, 2]

[[stages]]
width = 12
stride = 2
depths = [1, 2]

[head]
feature_mix = 0
classes = 4
bits = 8
"#;

    pub fn space() -> Space {
        Space::from_toml(SPACE, "toy").expect("the toy space is valid")
    }

    /// Write the toy data set (IDX, raw) into `dir` and load it.
    pub fn data(dir: &Path, n_train: usize, n_test: usize) -> DataSet {
        std::fs::create_dir_all(dir).expect("test dir");
        let mut rng = Rng::new(99);
        for (prefix, n) in [("train", n_train), ("t10k", n_test)] {
            let mut pixels = Vec::with_capacity(n * 144);
            let mut labels = Vec::with_capacity(n);
            for _ in 0..n {
                let c = rng.below(4);
                for y in 0..12 {
                    for x in 0..12 {
                        let bar = if c < 2 { y / 3 == c * 2 + 1 } else { x / 3 == (c - 2) * 2 + 1 };
                        let v = if bar { 150.0 } else { 60.0 } + rng.normal() * 40.0;
                        pixels.push(v.clamp(0.0, 255.0) as u8);
                    }
                }
                labels.push(c as u8);
            }
            write::idx(&dir.join(format!("{prefix}-images-idx3-ubyte")), &[n, 12, 12], &pixels).expect("write");
            write::idx(&dir.join(format!("{prefix}-labels-idx1-ubyte")), &[n], &labels).expect("write");
        }
        DataSet::load(dir, n_train / 5, 1).expect("toy data loads")
    }

    pub fn config(seed: u64) -> TrainConfig {
        TrainConfig {
            seed,
            batch: 32,
            phases: vec![
                PhaseConfig { phase: Phase::Full, epochs: 2, lr: 5e-3, images: None },
                PhaseConfig { phase: Phase::Kernel, epochs: 1, lr: 1e-3, images: Some(128) },
                PhaseConfig { phase: Phase::Width, epochs: 2, lr: 1e-3, images: Some(128) },
                PhaseConfig { phase: Phase::Quant, epochs: 1, lr: 1e-3, images: Some(128) },
            ],
            images_per_epoch: None,
            subnets_per_step: 2,
            kd_weight: 1.0,
            label_smoothing: 0.1,
            quantized: true,
            // The toy classes are bar positions, which mirroring and shifting would change.
            augment: false,
            eval: EvalConfig { calibration_images: 128, eval_images: None, batch: 128 },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::Quantizer;

    fn tmp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("bf-train-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn params(net: &Supernet) -> Vec<f32> {
        let (plan, w) = net.valid().view(&toy::space(), &largest(&toy::space(), 8));
        let _ = plan;
        w.convs.iter().flat_map(|c| c.w.clone().into_data().convert::<f32>().try_to_vec::<f32>().unwrap()).collect()
    }

    #[test]
    fn interrupted_training_resumes_to_the_same_state() {
        let d = tmp("resume");
        let data = toy::data(&d.join("data"), 320, 64);
        let space = toy::space();
        let cfg = toy::config(5);
        let dev = crate::device();
        let whole = train(&space, &data, &cfg, &d.join("a.ckpt"), &dev, None, &mut |_| {}).unwrap();
        // Interrupt after each epoch (mid-phase, at phase boundaries, in the width and the
        // quantization-aware phases), resuming every time from the checkpoint.
        let mut runs = 0;
        loop {
            let t = train(&space, &data, &cfg, &d.join("b.ckpt"), &dev, Some(1), &mut |_| {}).unwrap();
            runs += 1;
            if t.state.phase == cfg.phases.len() {
                let strip = |h: &[EpochLog]| h.iter().map(|e| (e.phase, e.epoch, e.loss, e.train_accuracy, e.valid_accuracy)).collect::<Vec<_>>();
                assert_eq!(strip(&t.state.history), strip(&whole.state.history));
                assert_eq!(params(&t.net), params(&whole.net));
                break;
            }
        }
        assert_eq!(runs, 6);
        // The checkpoint round-trips: loading gives the same network and state.
        let loaded = load(&d.join("a.ckpt"), &dev).unwrap();
        assert_eq!(params(&loaded.net), params(&whole.net));
        assert_eq!((loaded.state.phase, loaded.state.step, loaded.state.test_accuracy), (whole.state.phase, whole.state.step, whole.state.test_accuracy));
        assert!(whole.state.test_accuracy.unwrap() > 0.8, "{:?}", whole.state);
        // A different configuration or space is refused with a clear message.
        let e = train(&space, &data, &toy::config(6), &d.join("a.ckpt"), &dev, None, &mut |_| {}).err().unwrap().0;
        assert!(e.contains("different configuration"), "{e}");
        // A corrupted checkpoint is detected.
        let mut bytes = std::fs::read(d.join("a.ckpt")).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x55;
        std::fs::write(d.join("c.ckpt"), bytes).unwrap();
        assert!(load(&d.join("c.ckpt"), &dev).err().unwrap().0.contains("checksum mismatch"));
    }

    #[test]
    fn a_finished_checkpoint_extends_into_the_quantization_aware_phase() {
        let d = tmp("extend");
        let data = toy::data(&d.join("data"), 320, 64);
        let space = toy::space();
        let cfg = toy::config(9);
        let dev = crate::device();
        let whole = train(&space, &data, &cfg, &d.join("whole.ckpt"), &dev, None, &mut |_| {}).unwrap();
        // The same schedule without its last (quantization-aware) phase, finished, then extended.
        let mut short = cfg.clone();
        short.phases.pop();
        let first = train(&space, &data, &short, &d.join("ext.ckpt"), &dev, None, &mut |_| {}).unwrap();
        assert!(first.state.test_accuracy.is_some());
        assert!(cfg.extends(&short) && !short.extends(&cfg) && !cfg.extends(&cfg));
        let extended = train(&space, &data, &cfg, &d.join("ext.ckpt"), &dev, None, &mut |_| {}).unwrap();
        assert_eq!(extended.state.phase, cfg.phases.len());
        assert_eq!(extended.state.history.len(), whole.state.history.len());
        assert_eq!(params(&extended.net), params(&whole.net));
        assert_eq!(extended.state.test_accuracy, whole.state.test_accuracy);
        // Another seed is not an extension.
        let mut other = toy::config(10);
        other.phases = cfg.phases.clone();
        assert!(train(&space, &data, &other, &d.join("ext.ckpt"), &dev, None, &mut |_| {}).err().unwrap().0.contains("different configuration"));
    }

    #[test]
    fn the_quantization_aware_step_is_a_sandwich_over_bits() {
        let space = Space::load("micro").unwrap();
        let cfg = TrainConfig::micro_default(1);
        let mut widths = std::collections::BTreeSet::new();
        for step in 0..200 {
            let subnets = step_subnets(&space, Phase::Quant, &cfg, &mut Rng::stream(1, step));
            assert_eq!(subnets.len(), 4);
            assert_eq!(subnets[0], (largest(&space, 8), false), "the full-precision largest network is in every step");
            let (big, q) = &subnets[1];
            assert!(*q);
            let mut uniform = big.clone();
            let b = big.stages[0][0].pw_w;
            policy::set_uniform(&mut uniform, b, b);
            assert_eq!(*big, uniform, "the quantized largest network has one width everywhere");
            widths.insert(b);
            assert_eq!(subnets[2], (smallest(&space, 2), true));
            assert!(subnets[3].1);
        }
        assert_eq!(widths.into_iter().collect::<Vec<_>>(), vec![2, 4, 6, 8]);
    }

    #[test]
    fn eight_bits_cost_little_accuracy_and_two_bits_more() {
        let d = tmp("bits");
        let data = toy::data(&d.join("data"), 640, 256);
        let space = toy::space();
        let mut cfg = toy::config(3);
        cfg.phases.truncate(1);
        cfg.phases[0].epochs = 3;
        let dev = crate::device();
        let t = train(&space, &data, &cfg, &d.join("q.ckpt"), &dev, None, &mut |_| {}).unwrap();
        let eval_cfg = EvalConfig { calibration_images: 256, eval_images: None, batch: 256 };
        let acc = |bits: u32, quantize: Option<Quantizer>| eval::accuracy(&t.net, &space, &largest(&space, bits), &data, &data.test, &eval_cfg, quantize, &dev);
        let q = Some(Quantizer::MseClip);
        let (fp, q8, q2) = (acc(8, None), acc(8, q), acc(2, q));
        assert!(fp > 0.9, "fp32 {fp}");
        assert!((fp - q8).abs() <= 0.03, "fp32 {fp}, 8-bit {q8}");
        assert!(fp - q2 > (fp - q8).abs() + 0.05, "fp32 {fp}, 8-bit {q8}, 2-bit {q2}");
    }
}
