//! The exact expected LUT cost of an architecture drawn from a [`Policy`]'s independent
//! categorical choices, and its gradient: the cost term of the Gumbel-softmax relaxation.
//!
//! A network's cost is the sum of its layers' LUT entries, and an entry depends on more than its
//! own block's choices: a layer's outputs are stored at the *next* layer's activation bits, and
//! which layer is next depends on the stage's depth. Every entry is therefore written as a
//! product of *events*, each the probability that one decision takes one of a set of choices:
//!
//! * a block's expand: active (its stage's depth above its index) x middle channels x pointwise
//!   weight bits x pointwise activation bits x depthwise activation bits (its consumer's);
//! * its depthwise convolution: active x middle channels x kernel x depthwise weight and
//!   activation bits x pointwise activation bits (the project's, its consumer);
//! * its project: either "the next block of the stage is active" (depth above index + 1) x the
//!   next block's pointwise activation bits, or "this is the stage's last block" (depth equal to
//!   index + 1) x the next stage's first block's pointwise activation bits (or the head's fixed
//!   bits), times its own middle channels, kernel and pointwise bits;
//! * the fixed trunk's last layer: the first block's pointwise activation bits.
//!
//! The decisions of one term are distinct, so under independent choices the expectation of a term
//! is the product of its events' probabilities, and E[J] is the sum of the terms: exact, not an
//! approximation (`tests/search.rs` checks it against enumeration). Evaluated at relaxed soft
//! one-hot vectors the same polynomial is the multilinear extension of the LUT cost, equal to the
//! exact cost at every hard one-hot point.

use super::policy::{Part, Policy, depth_decision, slot_decision};
use crate::arch::{Block, block_layers};
use crate::evolution::SearchError;
use crate::lut::{LayerKey, Lut, arch_head, arch_trunk};
use bitfusion_simulator::Layer;

/// One event: decision `decision` takes a choice in `mask` (bit c = choice c).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Event {
    decision: usize,
    mask: u64,
}

/// One product term: a LUT entry's latency and energy times the probability of its events.
#[derive(Clone, Debug, PartialEq)]
struct Term {
    latency_ms: f64,
    energy_mj: f64,
    events: Vec<Event>,
}

/// The expected latency (ms) and energy (mJ) of a policy's architectures, as a polynomial in the
/// decisions' probabilities.
#[derive(Clone, Debug, PartialEq)]
pub struct ExpectedCost {
    /// Entries every architecture has (the fixed trunk's and head's other layers).
    constant_latency_ms: f64,
    constant_energy_mj: f64,
    terms: Vec<Term>,
    /// False when some entry has no energy (the LUT was built without SRAM figures): energies
    /// then read 0, as `Evaluator::cost` reads them.
    pub has_energy: bool,
}

/// An expectation and its gradient with respect to every decision's weights.
#[derive(Clone, Debug, PartialEq)]
pub struct CostGradient {
    pub latency_ms: f64,
    pub energy_mj: f64,
    /// d(latency_weight x E[latency] + energy_weight x E[energy]) / d weight, per decision and choice.
    pub gradient: Vec<Vec<f64>>,
}

fn bit(c: usize) -> u64 {
    1 << c
}

/// The mask of the depth choices of `depths` that satisfy `keep`.
fn depth_mask(depths: &[u32], keep: impl Fn(u32) -> bool) -> u64 {
    depths.iter().enumerate().filter(|(_, d)| keep(**d)).fold(0, |m, (c, _)| m | bit(c))
}

impl ExpectedCost {
    /// The polynomial of `policy`'s space over `lut` (which must be of that space).
    pub fn new(policy: &Policy, lut: &Lut) -> Result<ExpectedCost, SearchError> {
        let space = policy.space();
        if policy.choice_counts().iter().any(|n| *n > 64) {
            return Err(SearchError::Lut("a decision has more than 64 choices".into()));
        }
        let batch = lut.header.batch;
        let mut cost = ExpectedCost { constant_latency_ms: 0.0, constant_energy_mj: 0.0, terms: Vec::new(), has_energy: true };
        let mut entry = |layer: &Layer, out_bits: u32| -> Result<(f64, f64), SearchError> {
            let key = LayerKey::of(layer, out_bits);
            let e = lut.entries.get(&key).ok_or_else(|| SearchError::Lut(format!("layer {} (outputs at {} bits) is not in the LUT", key.apq_key(), key.out_bits)))?;
            cost.has_energy &= e.energy_mj.is_some();
            Ok((e.latency_ms, e.energy_mj.unwrap_or(0.0)))
        };
        let stages = space.stages.len();
        let slots = space.slots();
        let first_of = |s: usize| slots.iter().position(|sl| sl.stage == s && sl.index == 0).expect("every stage has a first block");
        let mut constant = (0.0, 0.0);
        let mut terms = Vec::new();
        let mut term = |(latency_ms, energy_mj): (f64, f64), events: Vec<Event>| terms.push(Term { latency_ms, energy_mj, events: events.into_iter().filter(|e| e.mask != u64::MAX).collect() });
        // The trunk: fixed layers; the last one's consumer is the first block's expand.
        let trunk = arch_trunk(space, batch);
        for w in trunk.windows(2) {
            let (l, e) = entry(&w[0], w[1].a_bits)?;
            constant = (constant.0 + l, constant.1 + e);
        }
        let last = trunk.last().expect("a stem");
        let first_pw_a = slot_decision(stages, first_of(0), Part::PwA);
        for (c, b) in space.bits.iter().enumerate() {
            term(entry(last, *b)?, vec![Event { decision: first_pw_a, mask: bit(c) }]);
        }
        let head = arch_head(space, batch);
        for (i, l) in head.iter().enumerate() {
            let (lat, en) = entry(l, head.get(i + 1).map_or(l.a_bits, |n| n.a_bits))?;
            constant = (constant.0 + lat, constant.1 + en);
        }
        // The blocks.
        let all = |n: usize| if n == 64 { u64::MAX } else { bit(n) - 1 };
        for (k, sl) in slots.iter().enumerate() {
            let depths = &space.stages[sl.stage].depths;
            let depth = depth_decision(sl.stage);
            let index = sl.index as u32;
            let active = depth_mask(depths, |d| d > index);
            let full = |m: u64| if m == all(depths.len()) { u64::MAX } else { m };
            let ev = |part: Part, c: usize| Event { decision: slot_decision(stages, k, part), mask: bit(c) };
            // (depth event, next block's pw_a decision or the fixed bits of the head)
            let mut successors: Vec<(u64, Result<usize, u32>)> = Vec::new();
            let cont = depth_mask(depths, |d| d > index + 1);
            if cont != 0 {
                successors.push((cont, Ok(slot_decision(stages, k + 1, Part::PwA))));
            }
            let ends = depth_mask(depths, |d| d == index + 1);
            if ends != 0 {
                let next = if sl.stage + 1 < stages { Ok(slot_decision(stages, first_of(sl.stage + 1), Part::PwA)) } else { Err(head[0].a_bits) };
                successors.push((ends, next));
            }
            for (mc, &mid) in sl.mids.iter().enumerate() {
                for (kc, &kernel) in space.kernels.iter().enumerate() {
                    for (wc, &pw_w) in space.bits.iter().enumerate() {
                        for (ac, &pw_a) in space.bits.iter().enumerate() {
                            for (dwc, &dw_w) in space.bits.iter().enumerate() {
                                for (dac, &dw_a) in space.bits.iter().enumerate() {
                                    let [expand, dw, project] = block_layers(sl, &Block { kernel, mid, pw_w, pw_a, dw_w, dw_a }, batch);
                                    let on = Event { decision: depth, mask: full(active) };
                                    // Each layer once per combination of the choices it depends on.
                                    if kc == 0 && dwc == 0 {
                                        term(entry(&expand, dw_a)?, vec![on, ev(Part::Mid, mc), ev(Part::PwW, wc), ev(Part::PwA, ac), ev(Part::DwA, dac)]);
                                    }
                                    if wc == 0 {
                                        term(entry(&dw, pw_a)?, vec![on, ev(Part::Mid, mc), ev(Part::Kernel, kc), ev(Part::DwW, dwc), ev(Part::DwA, dac), ev(Part::PwA, ac)]);
                                    }
                                    if dwc == 0 && dac == 0 {
                                        for &(mask, next) in &successors {
                                            let own = vec![Event { decision: depth, mask: full(mask) }, ev(Part::Mid, mc), ev(Part::Kernel, kc), ev(Part::PwW, wc), ev(Part::PwA, ac)];
                                            match next {
                                                Ok(decision) => {
                                                    for (nc, &nb) in space.bits.iter().enumerate() {
                                                        let mut events = own.clone();
                                                        events.push(Event { decision, mask: bit(nc) });
                                                        term(entry(&project, nb)?, events);
                                                    }
                                                }
                                                Err(fixed) => term(entry(&project, fixed)?, own),
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        cost.constant_latency_ms = constant.0;
        cost.constant_energy_mj = constant.1;
        cost.terms = terms;
        Ok(cost)
    }

    /// Number of product terms.
    pub fn terms(&self) -> usize {
        self.terms.len()
    }

    /// E[latency ms], E[energy mJ] under `weights` (one probability vector, or relaxed soft
    /// one-hot vector, per decision).
    pub fn expected(&self, weights: &[Vec<f64>]) -> (f64, f64) {
        let mut total = (self.constant_latency_ms, self.constant_energy_mj);
        for t in &self.terms {
            let p: f64 = t.events.iter().map(|e| event_weight(weights, e)).product();
            total.0 += t.latency_ms * p;
            total.1 += t.energy_mj * p;
        }
        total
    }

    /// The expectation and the gradient of `latency_weight x E[latency] + energy_weight x
    /// E[energy]` with respect to every weight.
    pub fn gradient(&self, weights: &[Vec<f64>], latency_weight: f64, energy_weight: f64) -> CostGradient {
        let mut gradient: Vec<Vec<f64>> = weights.iter().map(|w| vec![0.0; w.len()]).collect();
        let (mut latency_ms, mut energy_mj) = (self.constant_latency_ms, self.constant_energy_mj);
        let mut values = Vec::new();
        for t in &self.terms {
            values.clear();
            values.extend(t.events.iter().map(|e| event_weight(weights, e)));
            let p: f64 = values.iter().product();
            latency_ms += t.latency_ms * p;
            energy_mj += t.energy_mj * p;
            let coefficient = latency_weight * t.latency_ms + energy_weight * t.energy_mj;
            if coefficient == 0.0 {
                continue;
            }
            for (i, e) in t.events.iter().enumerate() {
                let others: f64 = values.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, v)| v).product();
                for (c, g) in gradient[e.decision].iter_mut().enumerate() {
                    if e.mask & bit(c) != 0 {
                        *g += coefficient * others;
                    }
                }
            }
        }
        CostGradient { latency_ms, energy_mj, gradient }
    }
}

/// The weight of an event: the sum of its decision's weights over its choices.
fn event_weight(weights: &[Vec<f64>], e: &Event) -> f64 {
    weights[e.decision].iter().enumerate().filter(|(c, _)| e.mask & bit(*c) != 0).map(|(_, w)| w).sum()
}
