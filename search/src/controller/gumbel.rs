//! The Gumbel-softmax relaxation (Jang et al., 2017; as in FBNet and the joint NAS +
//! mixed-precision searches on Bit Fusion): every decision's one-hot choice is relaxed to
//! y = softmax((logits + g) / tau) with Gumbel noise g and a temperature tau annealed
//! geometrically from `tau_start` to `tau_end`, and the logits ascend
//!
//!   F(y) - lambda x sum over the constrained metrics of max(E_y[J] / c - 1, 0)
//!
//! by Adam, `lambda` following the same dual ascent on the relative excess as REINFORCE's.
//!
//! * **Cost term**: E_y[J] is the exact expected LUT cost under the relaxed choices, neighbouring
//!   choices included ([`ExpectedCost`]), differentiated exactly.
//! * **Accuracy term**: straight-through. The forward pass is the hard sample a = argmax y; the
//!   gradient is that of the predictor's multilinear extension F (the expectation of the
//!   predicted accuracy under independent choices y) at the hard point, whose partial derivative
//!   in decision k's choice j is exactly the prediction of a with k set to j. So every step asks
//!   the predictor for the hard sample's neighbours along each active decision (the decisions a
//!   skipped block would make have no effect and get no gradient). This works with any
//!   predictor, the ensemble's numeric features included, where back-propagating through an
//!   MLP's input would need a differentiable featurisation; the price is predictor queries, which
//!   are counted (every distinct architecture asked for, as for every method).
//!
//! Every architecture the search evaluates (hard samples and their neighbours) is a candidate;
//! it returns the best feasible ones and the final policy's most likely architecture if it fits.

use super::expected_cost::ExpectedCost;
use super::policy::{Policy, argmax, softmax};
use super::reinforce::{dual_step, finish, relative_excess};
use crate::arch::Arch;
use crate::evolution::{Budget, Candidate, Evaluator, Freedom, Outcome, SearchError, best_distinct, check_feasible};
use bitfusion_util::Rng;

/// The relaxation's settings (defaults sized for the `micro` space: 300 steps of one sample, about
/// 40,000 predictor queries with the neighbours, twice a default evolution's; chosen on the
/// tightest budget of `docs/run-micro`, see the README's controller benchmark).
#[derive(Clone, Debug, PartialEq)]
pub struct GumbelConfig {
    /// Logit updates.
    pub steps: usize,
    /// Relaxed samples averaged per update.
    pub samples: usize,
    /// Adam's learning rate on the logits.
    pub lr: f64,
    /// Temperature at the first and the last step (annealed geometrically).
    pub tau_start: f64,
    pub tau_end: f64,
    /// Initial penalty weight (accuracy per unit of relative overrun) and its dual-ascent step.
    pub lambda: f64,
    pub dual_lr: f64,
    pub seed: u64,
    /// Candidates handed to re-ranking.
    pub top_k: usize,
}

impl Default for GumbelConfig {
    fn default() -> Self {
        GumbelConfig { steps: 300, samples: 1, lr: 0.1, tau_start: 1.0, tau_end: 0.1, lambda: 1.0, dual_lr: 0.5, seed: 1, top_k: 5 }
    }
}

/// Adam's moment estimates of every logit.
struct Adam {
    first: Vec<Vec<f64>>,
    second: Vec<Vec<f64>>,
    steps: i32,
}

impl Adam {
    const BETA1: f64 = 0.9;
    const BETA2: f64 = 0.999;
    const EPSILON: f64 = 1e-8;

    fn new(shape: &[Vec<f64>]) -> Adam {
        let zeros: Vec<Vec<f64>> = shape.iter().map(|v| vec![0.0; v.len()]).collect();
        Adam { first: zeros.clone(), second: zeros, steps: 0 }
    }

    /// The ascent step of `gradient` at learning rate `lr`.
    fn step(&mut self, gradient: &[Vec<f64>], lr: f64) -> Vec<Vec<f64>> {
        self.steps += 1;
        let (c1, c2) = (1.0 - Adam::BETA1.powi(self.steps), 1.0 - Adam::BETA2.powi(self.steps));
        let mut delta = Vec::with_capacity(gradient.len());
        for ((g, m), v) in gradient.iter().zip(&mut self.first).zip(&mut self.second) {
            let mut d = Vec::with_capacity(g.len());
            for ((g, m), v) in g.iter().zip(m.iter_mut()).zip(v.iter_mut()) {
                *m = Adam::BETA1 * *m + (1.0 - Adam::BETA1) * g;
                *v = Adam::BETA2 * *v + (1.0 - Adam::BETA2) * g * g;
                d.push(lr * (*m / c1) / ((*v / c2).sqrt() + Adam::EPSILON));
            }
            delta.push(d);
        }
        delta
    }
}

/// A standard Gumbel draw.
fn gumbel_noise(rng: &mut Rng) -> f64 {
    -(-(rng.unit().max(1e-300)).ln()).ln()
}

/// The temperature at `step` of `steps`.
fn temperature(cfg: &GumbelConfig, step: usize) -> f64 {
    let t = if cfg.steps > 1 { step as f64 / (cfg.steps - 1) as f64 } else { 1.0 };
    cfg.tau_start * (cfg.tau_end / cfg.tau_start).powf(t)
}

/// Search with the Gumbel-softmax relaxation under `budget`; infeasible budgets fail at once
/// with the cheapest value, as evolution's do.
pub fn gumbel(ev: &mut Evaluator, b: &Budget, cfg: &GumbelConfig) -> Result<Outcome, SearchError> {
    let start = std::time::Instant::now();
    let space = ev.space;
    check_feasible(space, ev.lut, &Freedom::joint(space), b)?;
    let mut policy = Policy::uniform(space);
    let cost = ExpectedCost::new(&policy, ev.lut)?;
    let counts = policy.choice_counts();
    let mut adam = Adam::new(&policy.logits());
    let mut rng = Rng::new(cfg.seed ^ 0x6a4b_e15e);
    let mut lambda = cfg.lambda;
    let mut top: Vec<Candidate> = Vec::new();
    let mut history = Vec::with_capacity(cfg.steps);
    let samples = cfg.samples.max(1);
    for step in 0..cfg.steps {
        let tau = temperature(cfg, step);
        let logits = policy.logits();
        let mut total: Vec<Vec<f64>> = counts.iter().map(|n| vec![0.0; *n]).collect();
        let mut mean_excess = 0.0;
        for _ in 0..samples {
            let soft: Vec<Vec<f64>> = logits.iter().map(|l| softmax(&l.iter().map(|x| (x + gumbel_noise(&mut rng)) / tau).collect::<Vec<_>>())).collect();
            let hard: Vec<usize> = soft.iter().map(|y| argmax(y)).collect();
            let sample = policy.build(&hard);
            // The hard sample and its neighbours along every active decision.
            let mut archs: Vec<Arch> = vec![sample.arch.clone()];
            let mut at: Vec<(usize, usize)> = Vec::new();
            for (k, &n) in counts.iter().enumerate() {
                if !sample.active[k] {
                    continue;
                }
                for j in (0..n).filter(|j| *j != hard[k]) {
                    let mut c = hard.clone();
                    c[k] = j;
                    archs.push(policy.build(&c).arch);
                    at.push((k, j));
                }
            }
            let cands = ev.evaluate(&archs)?;
            // d F / d y[k][j]: the prediction with decision k at j (the sample's own at its choice).
            let own = cands[0].accuracy;
            let mut grad: Vec<Vec<f64>> = counts.iter().enumerate().map(|(k, n)| if sample.active[k] { vec![own; *n] } else { vec![0.0; *n] }).collect();
            for ((k, j), c) in at.iter().zip(&cands[1..]) {
                grad[*k][*j] = c.accuracy;
            }
            // The penalty: lambda x sum of max(E[J]/c - 1, 0), through the exact expected cost.
            let (lat, en) = cost.expected(&soft);
            let over = |e: Option<f64>, x: f64| e.map_or(0.0, |c| if x > c { 1.0 / c } else { 0.0 });
            let penalty = cost.gradient(&soft, lambda * over(b.latency_ms, lat), lambda * over(b.energy_mj, en));
            mean_excess += relative_excess(b, lat, en);
            // Through y = softmax(z / tau): d/dz_j = y_j (G_j - sum_i y_i G_i) / tau.
            for (k, y) in soft.iter().enumerate() {
                let g: Vec<f64> = grad[k].iter().zip(&penalty.gradient[k]).map(|(a, p)| a - p).collect();
                let mean: f64 = y.iter().zip(&g).map(|(y, g)| y * g).sum();
                for (j, t) in total[k].iter_mut().enumerate() {
                    *t += y[j] * (g[j] - mean) / tau / samples as f64;
                }
            }
            top.extend(cands.into_iter().filter(|c| b.admits(c.latency_ms, c.energy_mj)));
            top = best_distinct(std::mem::take(&mut top), cfg.top_k);
        }
        policy.shift(&adam.step(&total, cfg.lr));
        lambda = dual_step(lambda, cfg.dual_lr, mean_excess / samples as f64);
        history.push(top.first().map_or(f64::NEG_INFINITY, |c| c.accuracy));
    }
    finish(ev, &policy, b, top, cfg.top_k, history, start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adam_ascends_and_temperature_anneals_geometrically() {
        let mut adam = Adam::new(&[vec![0.0, 0.0]]);
        let d = adam.step(&[vec![1.0, -2.0]], 0.1);
        // Adam's first step is lr x sign(g).
        assert!((d[0][0] - 0.1).abs() < 1e-6 && (d[0][1] + 0.1).abs() < 1e-6, "{d:?}");
        let cfg = GumbelConfig { steps: 3, tau_start: 4.0, tau_end: 1.0, ..GumbelConfig::default() };
        let taus: Vec<f64> = (0..3).map(|s| temperature(&cfg, s)).collect();
        assert!((taus[0] - 4.0).abs() < 1e-12 && (taus[1] - 2.0).abs() < 1e-12 && (taus[2] - 1.0).abs() < 1e-12, "{taus:?}");
        let mut rng = Rng::new(3);
        let mean = (0..20000).map(|_| gumbel_noise(&mut rng)).sum::<f64>() / 20000.0;
        // The Gumbel distribution's mean is the Euler-Mascheroni constant.
        assert!((mean - 0.5772).abs() < 0.03, "{mean}");
    }
}
