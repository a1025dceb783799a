//! The bilevel search (issue 16, item 4): a controller and the quantization-aware supernet learn
//! together. Each step
//!
//! 1. samples `samples` (subnet, bits) architectures from the controller's [`Policy`]
//!    (`bitfusion_search::controller`);
//! 2. takes one quantization-aware training step of the supernet's weights on them, on a batch of
//!    training images ([`train::subnets_loss`], the training phases' loss; Adam);
//! 3. measures each sampled subnet on a fixed sample of validation images after a small batch-norm
//!    and activation-step recalibration ([`eval::accuracy`], the measurement every pair and
//!    re-ranking uses) and takes the controller's REINFORCE step on their rewards, accuracy -
//!    lambda x max(J(a)/c - 1, 0) with J the LUT's latency or energy, with the dual ascent on
//!    lambda ([`Controller::update`], the same rule as the predictor-driven REINFORCE).
//!
//! The search starts from a trained supernet (its weights are copied; the checkpoint is never
//! written), refuses an infeasible budget before any training ([`check_feasible`]) and returns
//! what evolution returns: the best distinct feasible sampled architectures and the final
//! policy's most likely one (if it fits) as `top` candidates for measured re-ranking, its
//! supernet evaluations as `queries`, and its wall time. Every random choice is seeded from the
//! configuration and every op is bit-identical on 1 and 2 threads, so a seed gives the same
//! result on any thread count.

use std::time::Instant;

use bitfusion_search::controller::{Controller, Policy, ReinforceConfig, Sample};
use bitfusion_search::evolution::{Budget, Candidate, Freedom, Outcome, SearchError, best_distinct, check_feasible};
use bitfusion_search::lut::Lut;
use bitfusion_search::{Arch, Space};
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;

use crate::data::DataSet;
use crate::eval::{self, EvalConfig};
use crate::quant::Quantizer;
use crate::rng::Rng;
use crate::supernet::Supernet;
use crate::train::{check_data, smoothed_targets, subnets_loss};

/// The bilevel search's settings. The defaults are sized for the `micro` space on 2 cores: one
/// budget's search takes about 2-4 minutes (README's performance table), so `bitfusion run`'s
/// seven budgets add under half an hour.
#[derive(Clone, Debug, PartialEq)]
pub struct BilevelConfig {
    /// Alternations (one weight step and one controller step each).
    pub steps: usize,
    /// Architectures sampled from the policy per step (trained on, then measured).
    pub samples: usize,
    /// Training images of one weight step.
    pub train_batch: usize,
    /// Adam's learning rate of the supernet's weights (small: the warm start is already trained).
    pub weight_lr: f64,
    /// Training images (the first ones) each measured subnet is recalibrated on.
    pub calibration_images: usize,
    /// Validation images (the first ones) each sampled subnet is measured on.
    pub valid_images: usize,
    /// The controller's learning rate of the logits.
    pub policy_lr: f64,
    /// Weight of the controller's entropy bonus.
    pub entropy: f64,
    /// Decay of the moving-average reward baseline.
    pub baseline_decay: f64,
    /// Initial penalty weight (accuracy per unit of relative overrun of the budget).
    pub lambda: f64,
    /// Step of the dual ascent on `lambda` (0: fixed).
    pub dual_lr: f64,
    /// Centre each step's advantages on the step's own mean reward (see `ReinforceConfig`).
    pub center_on_batch: bool,
    /// Label smoothing of the weight steps' targets.
    pub label_smoothing: f32,
    pub seed: u64,
    /// Candidates handed to re-ranking.
    pub top_k: usize,
}

impl Default for BilevelConfig {
    fn default() -> BilevelConfig {
        BilevelConfig {
            steps: 120,
            samples: 4,
            train_batch: 64,
            weight_lr: 1e-4,
            calibration_images: 128,
            valid_images: 250,
            policy_lr: 0.3,
            entropy: 0.001,
            baseline_decay: 0.9,
            lambda: 1.0,
            dual_lr: 0.5,
            center_on_batch: true,
            label_smoothing: 0.1,
            seed: 1,
            top_k: 5,
        }
    }
}

impl BilevelConfig {
    /// The controller's update rule's settings (the fields REINFORCE shares).
    fn controller(&self) -> ReinforceConfig {
        ReinforceConfig {
            steps: self.steps,
            samples: self.samples,
            lr: self.policy_lr,
            entropy: self.entropy,
            baseline_decay: self.baseline_decay,
            lambda: self.lambda,
            dual_lr: self.dual_lr,
            center_on_batch: self.center_on_batch,
            seed: self.seed,
            top_k: self.top_k,
        }
    }

    /// How each sampled subnet is measured.
    fn measurement(&self) -> EvalConfig {
        EvalConfig { calibration_images: self.calibration_images, eval_images: Some(self.valid_images), batch: self.calibration_images.max(1) }
    }
}

/// One finished step.
#[derive(Clone, Debug, PartialEq)]
pub struct BilevelStep {
    pub step: usize,
    /// Mean training loss per sampled subnet of the weight step.
    pub train_loss: f64,
    /// Mean validation accuracy (a fraction) of the step's samples.
    pub mean_accuracy: f64,
    /// Mean reward of the step's samples (before the controller's step).
    pub mean_reward: f64,
    /// Best validation accuracy of a feasible sample so far (-inf before the first).
    pub best_feasible: f64,
    /// Fraction of the step's samples within the budget.
    pub feasible_fraction: f64,
    /// Penalty weight after the step's dual ascent.
    pub lambda: f64,
    /// The policy's entropy after the step (nats).
    pub entropy: f64,
    /// Wall time since the search started (s).
    pub seconds: f64,
}

/// What the bilevel search returns.
pub struct BilevelResult {
    /// In evolution's shape: `top` (best distinct feasible samples and the policy's mode, by
    /// measured validation accuracy), `history` (best feasible accuracy after each step),
    /// `queries` (supernet evaluations: each a recalibration and a measurement on
    /// `valid_images`), `seconds`.
    pub outcome: Outcome,
    pub steps: Vec<BilevelStep>,
    /// The final policy.
    pub policy: Policy,
    /// The supernet as trained by the search (the caller's is unchanged).
    pub net: Supernet,
}

/// Why a bilevel search failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BilevelError {
    /// An infeasible budget, or a search (or LUT) error.
    #[error(transparent)]
    Search(#[from] SearchError),
    /// The data set does not fit the space.
    #[error("{0}")]
    Data(String),
}

impl BilevelError {
    /// Whether the error is an outcome of the budget (a row beside other methods'), not a failure.
    pub fn is_infeasible(&self) -> bool {
        matches!(self, BilevelError::Search(e) if e.is_infeasible())
    }
}

/// Latency (ms) and energy (mJ; 0 when the LUT has none) of `arch` from the LUT.
fn lut_cost(lut: &Lut, arch: &Arch) -> Result<(f64, f64), SearchError> {
    let (_, latency_ms, energy_mj) = lut.cost(arch).map_err(|e| SearchError::Lut(e.to_string()))?;
    Ok((latency_ms, energy_mj.unwrap_or(0.0)))
}

/// Seeded training images of step `step`: `n` draws with replacement.
fn train_indices(data: &DataSet, n: usize, seed: u64, step: usize) -> Vec<usize> {
    let mut rng = Rng::stream(seed ^ 0x0b11_e7e1, step as u64);
    (0..n.max(1)).map(|_| rng.below(data.train.len())).collect()
}

/// Run the bilevel search of `space` under `budget`, warm-started from `net` (copied), on `data`,
/// with costs from `lut`. `device` is the training (autodiff) device. `progress` sees every
/// finished step.
#[allow(clippy::too_many_arguments)]
pub fn bilevel(
    net: &Supernet,
    space: &Space,
    lut: &Lut,
    data: &DataSet,
    budget: &Budget,
    cfg: &BilevelConfig,
    device: &Device,
    progress: &mut dyn FnMut(&BilevelStep),
) -> Result<BilevelResult, BilevelError> {
    let start = Instant::now();
    check_feasible(space, lut, &Freedom::joint(space), budget)?;
    check_data(space, data).map_err(BilevelError::Data)?;
    let mut net = net.clone();
    let mut opt = AdamConfig::new().init();
    let mut controller = Controller::new(space, &cfg.controller());
    let mut rng = Rng::new(cfg.seed ^ 0xb11e_5a3b);
    let measure = cfg.measurement();
    let classes = space.head.classes as usize;
    let mut feasible: Vec<Candidate> = Vec::new();
    let mut history = Vec::with_capacity(cfg.steps);
    let mut steps = Vec::with_capacity(cfg.steps);
    let mut best_feasible = f64::NEG_INFINITY;
    let mut queries = 0;
    let measure_arch = |net: &Supernet, arch: &Arch| -> Result<Candidate, SearchError> {
        let (latency_ms, energy_mj) = lut_cost(lut, arch)?;
        let accuracy = eval::accuracy(net, space, arch, data, &data.valid, &measure, Some(Quantizer::MseClip), device);
        Ok(Candidate { arch: arch.clone(), accuracy, latency_ms, energy_mj })
    };
    for step in 0..cfg.steps {
        // (a) Sample from the policy.
        let samples: Vec<Sample> = (0..cfg.samples.max(1)).map(|_| controller.policy.sample(&mut rng)).collect();
        // (b) One quantization-aware weight step on the samples.
        let idx = train_indices(data, cfg.train_batch, cfg.seed, step);
        let (x, _) = data.batch(&data.train, &idx, device);
        let labels: Vec<u8> = idx.iter().map(|&i| data.train.labels[i]).collect();
        let targets = smoothed_targets(&labels, classes, cfg.label_smoothing, device);
        let subnets: Vec<(Arch, bool)> = samples.iter().map(|s| (s.arch.clone(), true)).collect();
        let (loss, _) = subnets_loss(&net, space, &subnets, &x, &targets, None, 0.0, &labels);
        let train_loss = loss.clone().detach().into_scalar::<f32>() as f64 / subnets.len() as f64;
        let grads = GradientsParams::from_grads(loss.backward(), &net);
        net = opt.step(cfg.weight_lr, net, grads);
        // (c) Measure the samples with the new weights; the controller's step on their rewards.
        let cands: Vec<Candidate> = samples.iter().map(|s| measure_arch(&net, &s.arch)).collect::<Result<_, _>>()?;
        queries += cands.len();
        let n = cands.len() as f64;
        let mean_reward = cands.iter().map(|c| controller.reward(c, budget)).sum::<f64>() / n;
        let mean_accuracy = cands.iter().map(|c| c.accuracy).sum::<f64>() / n;
        controller.update(samples, &cands, budget);
        let fits: Vec<Candidate> = cands.into_iter().filter(|c| budget.admits(c.latency_ms, c.energy_mj)).collect();
        let feasible_fraction = fits.len() as f64 / n;
        for c in fits {
            best_feasible = best_feasible.max(c.accuracy);
            feasible.push(c);
        }
        history.push(best_feasible);
        let s = BilevelStep {
            step: step + 1,
            train_loss,
            mean_accuracy,
            mean_reward,
            best_feasible,
            feasible_fraction,
            lambda: controller.lambda,
            entropy: controller.policy.entropy(),
            seconds: start.elapsed().as_secs_f64(),
        };
        progress(&s);
        steps.push(s);
    }
    // The final policy's output: its most likely architecture, measured, if it fits.
    let mode = controller.policy.argmax();
    let (latency_ms, energy_mj) = lut_cost(lut, &mode)?;
    if budget.admits(latency_ms, energy_mj) {
        feasible.push(measure_arch(&net, &mode)?);
        queries += 1;
    }
    let top = best_distinct(feasible, cfg.top_k);
    let best = top.first().cloned().ok_or(SearchError::NoneFeasible)?;
    let outcome = Outcome { best, top, history, queries, seconds: start.elapsed().as_secs_f64() };
    Ok(BilevelResult { outcome, steps, policy: controller.policy, net })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::{self, largest, toy};
    use bitfusion_search::lut::{BuildSpec, build_lut};
    use bitfusion_simulator::Objective;
    use bitfusion_simulator::config::{CostModelName, load_hw};

    fn tmp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("bf-bilevel-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn weights(net: &Supernet, space: &Space) -> Vec<f32> {
        let (_, w) = net.valid().view(space, &largest(space, 8));
        w.convs.iter().flat_map(|c| c.w.clone().into_data().convert::<f32>().try_to_vec::<f32>().unwrap()).collect()
    }

    /// Fraction of 2-bit slots among `n` architectures drawn from `policy`.
    fn two_bit_share(policy: &Policy, n: usize) -> f64 {
        let mut rng = Rng::new(77);
        let (mut two, mut all) = (0usize, 0usize);
        for _ in 0..n {
            for b in policy.sample(&mut rng).arch.stages.iter().flatten() {
                for bits in [b.pw_w, b.pw_a, b.dw_w, b.dw_a] {
                    two += usize::from(bits == 2);
                    all += 1;
                }
            }
        }
        two as f64 / all as f64
    }

    #[test]
    fn the_weights_train_and_the_policy_leaves_the_costly_two_bit_choices() {
        let d = tmp("moves");
        let data = toy::data(&d.join("data"), 320, 64);
        let space = toy::space();
        let dev = crate::device();
        let trained = train::train(&space, &data, &toy::config(5), &d.join("toy.ckpt"), &dev, None, &mut |_| {}).unwrap();
        let ckpt_before = std::fs::read(d.join("toy.ckpt")).unwrap();
        let hw = load_hw("bitfusion-isca2018", &[]).unwrap();
        let spec = BuildSpec { space: &space, hw: &hw, model: CostModelName::Cycle, objective: Objective::Cycles, batch: 1 };
        let (lut, _) = build_lut(&spec, &d.join("toy.lut"), &|_, _| {}).unwrap();
        // Unconstrained: the reward is the measured accuracy, which 2-bit slots lower most.
        let cfg = BilevelConfig { steps: 40, samples: 4, train_batch: 32, calibration_images: 64, valid_images: 64, policy_lr: 1.0, weight_lr: 1e-3, ..BilevelConfig::default() };
        let mut seen = 0;
        let r = bilevel(&trained.net, &space, &lut, &data, &Budget::default(), &cfg, &dev, &mut |s| {
            seen += 1;
            assert_eq!(s.step, seen);
        })
        .unwrap();
        assert_eq!(seen, cfg.steps);
        assert_eq!(r.steps.len(), cfg.steps);
        // The supernet's weights moved; the caller's network and the checkpoint file did not.
        assert_ne!(weights(&r.net, &space), weights(&trained.net, &space));
        assert_eq!(weights(&trained.net, &space), weights(&train::load(&d.join("toy.ckpt"), &dev).unwrap().net, &space));
        assert_eq!(std::fs::read(d.join("toy.ckpt")).unwrap(), ckpt_before);
        // The policy moved away from 2 bits (a third of the slots under the uniform policy).
        let (before, after) = (two_bit_share(&Policy::uniform(&space), 2000), two_bit_share(&r.policy, 2000));
        assert!((before - 1.0 / 3.0).abs() < 0.03, "{before}");
        assert!(after < before - 0.05, "2-bit share {before:.3} -> {after:.3}");
        assert!(r.policy.entropy() < Policy::uniform(&space).entropy());
        // Every step measured `samples` subnets, and the policy's mode one more.
        assert!(r.outcome.queries == cfg.steps * cfg.samples + 1, "{}", r.outcome.queries);
        assert!(!r.outcome.top.is_empty() && r.outcome.top.len() <= cfg.top_k);
        assert_eq!(r.outcome.best, r.outcome.top[0]);
    }
}
