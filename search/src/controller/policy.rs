//! A policy over a whole search space: one independent categorical distribution (logits) per
//! decision: each stage's depth, and each block slot's kernel, middle channels and four bit
//! widths (pointwise weights and activations, depthwise weights and activations).

use crate::arch::{Arch, Block};
use crate::space::Space;
use bitfusion_util::Rng;

#[derive(Clone, Debug, PartialEq)]
struct Decision {
    /// The stage and index in it of the block the decision belongs to (None: a depth).
    block: Option<(usize, usize)>,
    logits: Vec<f64>,
}

/// The categorical policy: all logits start at 0 (uniform).
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    space: Space,
    decisions: Vec<Decision>,
}

/// One architecture drawn from a policy: the index chosen by every decision, and which decisions
/// were active (a block a shallower depth skips makes no choice).
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub arch: Arch,
    pub(super) choices: Vec<usize>,
    pub(super) active: Vec<bool>,
}

/// The six decisions of a block slot, in their order within the slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Part {
    Kernel = 0,
    Mid = 1,
    PwW = 2,
    PwA = 3,
    DwW = 4,
    DwA = 5,
}

/// Decisions per block slot.
pub(super) const PER_SLOT: usize = 6;

/// Index of stage `stage`'s depth decision.
pub(super) fn depth_decision(stage: usize) -> usize {
    stage
}

/// Index of `part` of block slot `slot` (slot order of `Space::slots`) in a space of `stages` stages.
pub(super) fn slot_decision(stages: usize, slot: usize, part: Part) -> usize {
    stages + PER_SLOT * slot + part as usize
}

/// Index of the largest value (ties: the first).
pub(super) fn argmax(v: &[f64]) -> usize {
    v.iter().enumerate().fold(0, |best, (i, &x)| if x > v[best] { i } else { best })
}

pub(super) fn softmax(logits: &[f64]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.into_iter().map(|x| x / sum).collect()
}

impl Policy {
    /// The uniform policy over `space`: one decision per stage (its depth), then six per block
    /// slot (kernel, middle channels, pw_w, pw_a, dw_w, dw_a bits), in slot order.
    pub fn uniform(space: &Space) -> Policy {
        let slots = space.slots();
        let mut decisions = Vec::new();
        for st in &space.stages {
            decisions.push(Decision { block: None, logits: vec![0.0; st.depths.len()] });
        }
        for sl in &slots {
            let block = Some((sl.stage, sl.index));
            decisions.push(Decision { block, logits: vec![0.0; space.kernels.len()] });
            decisions.push(Decision { block, logits: vec![0.0; sl.mids.len()] });
            for _bits in 0..4 {
                decisions.push(Decision { block, logits: vec![0.0; space.bits.len()] });
            }
        }
        Policy { space: space.clone(), decisions }
    }

    /// A policy with the given logits, one vector per decision in [`Policy::uniform`]'s layout;
    /// None when their shape is not the space's.
    pub fn with_logits(space: &Space, logits: Vec<Vec<f64>>) -> Option<Policy> {
        let mut p = Policy::uniform(space);
        if logits.len() != p.decisions.len() || p.decisions.iter().zip(&logits).any(|(d, l)| d.logits.len() != l.len() || l.iter().any(|x| !x.is_finite())) {
            return None;
        }
        for (d, l) in p.decisions.iter_mut().zip(logits) {
            d.logits = l;
        }
        Some(p)
    }

    /// The space the policy is over.
    pub fn space(&self) -> &Space {
        &self.space
    }

    /// The logits of every decision.
    pub fn logits(&self) -> Vec<Vec<f64>> {
        self.decisions.iter().map(|d| d.logits.clone()).collect()
    }

    /// Add `delta` (one vector per decision) to the logits.
    pub(super) fn shift(&mut self, delta: &[Vec<f64>]) {
        for (d, dl) in self.decisions.iter_mut().zip(delta) {
            for (l, x) in d.logits.iter_mut().zip(dl) {
                *l += x;
            }
        }
    }

    /// Every decision's probabilities.
    pub fn probabilities(&self) -> Vec<Vec<f64>> {
        self.decisions.iter().map(|d| softmax(&d.logits)).collect()
    }

    /// The choice index of every decision for `arch` (0 for decisions its depths skip); None when
    /// it is not a point of the space.
    pub fn choices_of(&self, arch: &Arch) -> Option<Vec<usize>> {
        let space = &self.space;
        arch.check(space).ok()?;
        let stages = space.stages.len();
        let mut choices = vec![0; self.decisions.len()];
        for (s, (st, blocks)) in space.stages.iter().zip(&arch.stages).enumerate() {
            choices[depth_decision(s)] = st.depths.iter().position(|d| *d as usize == blocks.len())?;
        }
        for (k, sl) in space.slots().iter().enumerate() {
            let Some(b) = arch.stages[sl.stage].get(sl.index) else { continue };
            let at = |v: &[u32], x: u32| v.iter().position(|y| *y == x);
            let bits = &space.bits;
            let parts = [(Part::Kernel, at(&space.kernels, b.kernel)), (Part::Mid, at(&sl.mids, b.mid)), (Part::PwW, at(bits, b.pw_w)), (Part::PwA, at(bits, b.pw_a)), (Part::DwW, at(bits, b.dw_w)), (Part::DwA, at(bits, b.dw_a))];
            for (part, c) in parts {
                choices[slot_decision(stages, k, part)] = c?;
            }
        }
        Some(choices)
    }

    /// The probability of drawing `arch` (0 when it is not a point of the space).
    pub fn probability(&self, arch: &Arch) -> f64 {
        self.choices_of(arch).map_or(0.0, |c| self.log_prob(&self.build(&c)).exp())
    }

    /// How many choices each decision has.
    pub(super) fn choice_counts(&self) -> Vec<usize> {
        self.decisions.iter().map(|d| d.logits.len()).collect()
    }

    /// Number of decisions (every slot's, active or not).
    pub fn len(&self) -> usize {
        self.decisions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.decisions.is_empty()
    }

    /// The architecture of `choices` (one index per decision) and which decisions it uses. The
    /// decisions are laid out as [`Policy::uniform`] makes them: one depth per stage, then six per
    /// slot (kernel, middle channels, pw_w, pw_a, dw_w, dw_a).
    pub(super) fn build(&self, choices: &[usize]) -> Sample {
        let space = &self.space;
        let stages = space.stages.len();
        let depth: Vec<usize> = space.stages.iter().zip(choices).map(|(st, &c)| st.depths[c] as usize).collect();
        let active: Vec<bool> = self.decisions.iter().map(|d| d.block.is_none_or(|(s, i)| i < depth[s])).collect();
        let mut blocks: Vec<Vec<Block>> = depth.iter().map(|&n| Vec::with_capacity(n)).collect();
        for (k, sl) in space.slots().iter().enumerate() {
            if sl.index >= depth[sl.stage] {
                continue;
            }
            let c = &choices[slot_decision(stages, k, Part::Kernel)..slot_decision(stages, k, Part::Kernel) + PER_SLOT];
            blocks[sl.stage].push(Block {
                kernel: space.kernels[c[0]],
                mid: sl.mids[c[1]],
                pw_w: space.bits[c[2]],
                pw_a: space.bits[c[3]],
                dw_w: space.bits[c[4]],
                dw_a: space.bits[c[5]],
            });
        }
        Sample { arch: Arch { space: space.name.clone(), stages: blocks }, choices: choices.to_vec(), active }
    }

    /// Draw an architecture.
    pub fn sample(&self, rng: &mut Rng) -> Sample {
        let choices: Vec<usize> = self.decisions.iter().map(|d| rng.categorical(&softmax(&d.logits))).collect();
        self.build(&choices)
    }

    /// The most likely architecture (ties: the first choice).
    pub fn argmax(&self) -> Arch {
        let choices: Vec<usize> = self
            .decisions
            .iter()
            .map(|d| argmax(&d.logits))
            .collect();
        self.build(&choices).arch
    }

    /// log p(sample): the sum over the decisions the sample used.
    pub fn log_prob(&self, s: &Sample) -> f64 {
        self.decisions.iter().zip(&s.choices).zip(&s.active).filter(|(_, a)| **a).map(|((d, &c), _)| softmax(&d.logits)[c].ln()).sum()
    }

    /// Entropy of the policy (nats), summed over every decision.
    pub fn entropy(&self) -> f64 {
        self.decisions.iter().map(|d| -softmax(&d.logits).iter().filter(|p| **p > 0.0).map(|p| p * p.ln()).sum::<f64>()).sum()
    }

    /// Gradient ascent step: `logits += lr * (sum over samples of weight x d log p(sample) +
    /// entropy_coef x d entropy)`. d log p / d logit_j = [j = chosen] - p_j for a decision the
    /// sample used; d H / d logit_j = -p_j (ln p_j + H_d) for each decision.
    pub fn step(&mut self, samples: &[(Sample, f64)], lr: f64, entropy_coef: f64) {
        for (k, d) in self.decisions.iter_mut().enumerate() {
            let p = softmax(&d.logits);
            let h: f64 = -p.iter().filter(|x| **x > 0.0).map(|x| x * x.ln()).sum::<f64>();
            let mut grad = vec![0.0; p.len()];
            for (s, w) in samples {
                if !s.active[k] {
                    continue;
                }
                for (j, g) in grad.iter_mut().enumerate() {
                    *g += w * (f64::from(u8::from(j == s.choices[k])) - p[j]);
                }
            }
            for (j, g) in grad.iter_mut().enumerate() {
                *g += entropy_coef * -p[j] * (p[j].max(1e-300).ln() + h);
            }
            for (l, g) in d.logits.iter_mut().zip(grad) {
                *l += lr * g;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::TINY_SPACE;

    fn tiny() -> Space {
        Space::from_toml(TINY_SPACE, "tiny").unwrap()
    }

    #[test]
    fn samples_are_valid_architectures_with_normalised_probabilities() {
        let space = tiny();
        let p = Policy::uniform(&space);
        let mut rng = Rng::new(1);
        for _ in 0..200 {
            let s = p.sample(&mut rng);
            s.arch.check(&space).unwrap();
            // Uniform: log p = -sum over active decisions of ln(choices).
            let expect: f64 = p.decisions.iter().zip(&s.active).filter(|(_, a)| **a).map(|(d, _)| -(d.logits.len() as f64).ln()).sum();
            assert!((p.log_prob(&s) - expect).abs() < 1e-12);
        }
        let h: f64 = p.decisions.iter().map(|d| (d.logits.len() as f64).ln()).sum();
        assert!((p.entropy() - h).abs() < 1e-12);
        p.argmax().check(&space).unwrap();
    }

    #[test]
    fn a_rewarded_sample_becomes_more_likely_and_entropy_bonus_flattens() {
        let space = tiny();
        let mut p = Policy::uniform(&space);
        let s = p.sample(&mut Rng::new(2));
        let before = p.log_prob(&s);
        p.step(&[(s.clone(), 1.0)], 0.5, 0.0);
        assert!(p.log_prob(&s) > before);
        let peaked = p.entropy();
        p.step(&[], 0.5, 1.0);
        assert!(p.entropy() > peaked);
        // The finite-difference gradient of log p equals the analytic one.
        let mut q = Policy::uniform(&space);
        q.step(&[(s.clone(), 1.0)], 0.3, 0.0);
        let (k, j) = (s.active.iter().position(|a| *a).unwrap(), 0);
        let eps = 1e-6;
        let mut plus = q.clone();
        plus.decisions[k].logits[j] += eps;
        let numeric = (plus.log_prob(&s) - q.log_prob(&s)) / eps;
        let pk = softmax(&q.decisions[k].logits);
        let analytic = f64::from(u8::from(j == s.choices[k])) - pk[j];
        assert!((numeric - analytic).abs() < 1e-4, "{numeric} vs {analytic}");
    }
}
