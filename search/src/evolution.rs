//! Hardware-aware search over a space: accuracy from a [`Predictor`], latency and energy from the
//! LUT; constrained evolution (APQ's loop, fixed), NSGA-II for the whole Pareto front, random
//! search, and restricted searches for the baselines (quantization only, pruning only,
//! sequential stages) through [`Freedom`].
//!
//! Fixes over APQ's `EvolutionFinder` (`shared/reference/search/NOTES.md` 1.4-1.5): the searched
//! bits reach the predictor (the arch's own encoding), every child is kept (mutations and
//! crossovers), depth mutates, every random choice comes from the seed (results do not depend on
//! the thread count: children are drawn sequentially and predictions are pure), and a budget
//! below the cheapest architecture of the space is an immediate error stating the cheapest value
//! (computed exactly by [`cheapest`]), never an endless resampling loop.

use std::collections::{BTreeMap, HashMap};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::arch::{Arch, Block, block_layers};
use crate::lut::{LayerKey, Lut};
use crate::space::Space;
use bitfusion_util::Rng;

/// Predicted accuracy (0..1) of architectures, bits included. Must be a pure function.
pub trait Predictor: Sync {
    fn predict(&self, archs: &[Arch]) -> Vec<f64>;
}

impl<P: Predictor + ?Sized> Predictor for &P {
    fn predict(&self, archs: &[Arch]) -> Vec<f64> {
        (**self).predict(archs)
    }
}

/// A search error phrased for the user on one line, by kind: an infeasible budget (or a search
/// that found nothing feasible) is an outcome a caller reports beside the other methods'
/// results, the others are failures it must not hide.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SearchError {
    /// The budget is below the cheapest architecture the search's freedom allows.
    #[error("infeasible: the {metric} budget {} {unit} is below the cheapest architecture allowed ({cheapest:.6} {unit})", bitfusion_util::Sig(*.budget))]
    Infeasible { metric: &'static str, unit: &'static str, budget: f64, cheapest: f64 },
    /// Random search drew no architecture within the budget.
    #[error("random search found no feasible architecture")]
    NoneFeasible,
    /// A layer of an architecture has no LUT entry (the LUT is of another space).
    #[error("layer {0} is not in the LUT")]
    MissingLayer(String),
    /// The LUT could not cost an architecture.
    #[error("{0}")]
    Lut(String),
    /// No method of that name.
    #[error("unknown method '{method}' (methods: {known})")]
    UnknownMethod { method: String, known: String },
}

impl SearchError {
    /// Whether the error is an outcome of the budget (reported as a row), not a failure.
    pub fn is_infeasible(&self) -> bool {
        matches!(self, SearchError::Infeasible { .. } | SearchError::NoneFeasible)
    }
}

/// Latency and/or energy limits (None = unconstrained).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    pub latency_ms: Option<f64>,
    pub energy_mj: Option<f64>,
}

impl Budget {
    /// Does a latency (ms) and energy (mJ) meet every limit?
    pub fn admits(&self, latency_ms: f64, energy_mj: f64) -> bool {
        self.latency_ms.is_none_or(|x| latency_ms <= x) && self.energy_mj.is_none_or(|x| energy_mj <= x)
    }
}

/// One evaluated architecture.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub arch: Arch,
    pub accuracy: f64,
    pub latency_ms: f64,
    pub energy_mj: f64,
}

/// Evolution settings (APQ's defaults).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvoConfig {
    pub population: usize,
    pub parents: usize,
    pub mutations: usize,
    pub crossovers: usize,
    pub mutate_prob: f64,
    pub generations: usize,
    pub seed: u64,
    /// How many of the best distinct feasible candidates a search returns beside its winner (for
    /// measured re-ranking).
    #[serde(default = "default_top_k")]
    pub top_k: usize,
}

fn default_top_k() -> usize {
    5
}

impl Default for EvoConfig {
    fn default() -> EvoConfig {
        EvoConfig { population: 100, parents: 25, mutations: 50, crossovers: 50, mutate_prob: 0.1, generations: 500, seed: 1, top_k: default_top_k() }
    }
}

/// Which dimensions a search may change; the others stay as in `base`.
#[derive(Clone, Debug, PartialEq)]
pub struct Freedom {
    /// Depths and kernel sizes.
    pub arch: bool,
    /// Middle channels (pruning).
    pub width: bool,
    /// Per-layer bits.
    pub bits: bool,
    /// Values of the fixed dimensions (for blocks a depth change adds: its first block's bits,
    /// the largest width, the largest kernel).
    pub base: Arch,
}

impl Freedom {
    /// Everything free (the joint search).
    pub fn joint(space: &Space) -> Freedom {
        Freedom { arch: true, width: true, bits: true, base: largest(space, *space.bits.iter().max().expect("bits")) }
    }
}

/// The largest architecture (all slots, largest kernel and width) at uniform `bits`.
pub fn largest(space: &Space, bits: u32) -> Arch {
    let k = *space.kernels.iter().max().expect("kernels");
    uniform(space, |_| space.stages.iter().map(|st| *st.depths.iter().max().expect("depths") as usize).collect(), k, |m| *m.last().expect("mids"), bits)
}

/// A mid-size architecture: middle depths, middle kernel, middle width, at uniform `bits`.
pub fn middle(space: &Space, bits: u32) -> Arch {
    let mut ks = space.kernels.clone();
    ks.sort_unstable();
    uniform(
        space,
        |_| {
            space
                .stages
                .iter()
                .map(|st| {
                    let mut d = st.depths.clone();
                    d.sort_unstable();
                    d[d.len() / 2] as usize
                })
                .collect()
        },
        ks[ks.len() / 2],
        |m| m[m.len() / 2],
        bits,
    )
}

/// The smallest architecture: fewest blocks, smallest kernel and width, at uniform `bits`.
pub fn smallest(space: &Space, bits: u32) -> Arch {
    let k = *space.kernels.iter().min().expect("kernels");
    uniform(space, |_| space.stages.iter().map(|st| *st.depths.iter().min().expect("depths") as usize).collect(), k, |m| *m.iter().min().expect("mids"), bits)
}

fn uniform(space: &Space, depths: impl Fn(&Space) -> Vec<usize>, kernel: u32, mid: impl Fn(&[u32]) -> u32, bits: u32) -> Arch {
    let slots = space.slots();
    let d = depths(space);
    let stages = (0..space.stages.len())
        .map(|s| {
            slots
                .iter()
                .filter(|sl| sl.stage == s && sl.index < d[s])
                .map(|sl| Block { kernel, mid: mid(&sl.mids), pw_w: bits, pw_a: bits, dw_w: bits, dw_a: bits })
                .collect()
        })
        .collect();
    Arch { space: space.name.clone(), stages }
}

/// The search's view of the space: costs from the LUT, predictions cached by architecture.
pub struct Evaluator<'a> {
    pub space: &'a Space,
    pub lut: &'a Lut,
    pub predictor: &'a dyn Predictor,
    cache: HashMap<Arch, f64>,
    /// Distinct architectures sent to the predictor.
    pub queries: usize,
}

impl<'a> Evaluator<'a> {
    pub fn new(space: &'a Space, lut: &'a Lut, predictor: &'a dyn Predictor) -> Evaluator<'a> {
        Evaluator { space, lut, predictor, cache: HashMap::new(), queries: 0 }
    }

    /// Latency (ms) and energy (mJ; 0 when the LUT has none) of `arch`.
    pub fn cost(&self, arch: &Arch) -> Result<(f64, f64), SearchError> {
        let (_, lat, en) = self.lut.cost(arch).map_err(|e| SearchError::Lut(e.to_string()))?;
        Ok((lat, en.unwrap_or(0.0)))
    }

    pub fn fits(&self, arch: &Arch, b: &Budget) -> Result<bool, SearchError> {
        let (lat, en) = self.cost(arch)?;
        Ok(b.admits(lat, en))
    }

    /// Evaluate architectures (predictions of new ones in one parallel batch).
    pub fn evaluate(&mut self, archs: &[Arch]) -> Result<Vec<Candidate>, SearchError> {
        let mut new: Vec<Arch> = archs.iter().filter(|a| !self.cache.contains_key(*a)).cloned().collect();
        new.sort_by_key(|a| a.to_text());
        new.dedup();
        if !new.is_empty() {
            let chunk = new.len().div_ceil(rayon::current_num_threads().max(1) * 4).max(16);
            let preds: Vec<f64> = new.par_chunks(chunk).flat_map_iter(|c| self.predictor.predict(c)).collect();
            self.queries += new.len();
            for (a, p) in new.into_iter().zip(preds) {
                self.cache.insert(a, p);
            }
        }
        archs
            .iter()
            .map(|a| {
                let (latency_ms, energy_mj) = self.cost(a)?;
                Ok(Candidate { arch: a.clone(), accuracy: self.cache[a], latency_ms, energy_mj })
            })
            .collect()
    }
}

/// A random block for `slot` index `i` of stage `s`, free dimensions random, others from `base`
/// (or their defaults when `base` lacks the block).
fn random_block(space: &Space, f: &Freedom, s: usize, i: usize, rng: &mut Rng) -> Block {
    let slot = space.slots().into_iter().find(|x| x.stage == s && x.index == i).expect("slot");
    let mut b = f.base.stages[s].get(i).copied().unwrap_or_else(|| {
        let first = f.base.stages[s].first().copied().expect("a stage has a block");
        Block { kernel: *space.kernels.iter().max().expect("kernels"), mid: *slot.mids.last().expect("mids"), ..first }
    });
    if f.arch {
        b.kernel = rng.pick(&space.kernels);
    }
    if f.width {
        b.mid = rng.pick(&slot.mids);
    }
    if f.bits {
        let bits = &space.bits;
        (b.pw_w, b.pw_a, b.dw_w, b.dw_a) = (rng.pick(bits), rng.pick(bits), rng.pick(bits), rng.pick(bits));
    }
    b
}

fn random_arch(space: &Space, f: &Freedom, rng: &mut Rng) -> Arch {
    let stages = space
        .stages
        .iter()
        .enumerate()
        .map(|(s, st)| {
            let d = if f.arch { rng.pick(&st.depths) as usize } else { f.base.stages[s].len() };
            (0..d).map(|i| random_block(space, f, s, i, rng)).collect()
        })
        .collect();
    Arch { space: space.name.clone(), stages }
}

fn mutate(space: &Space, f: &Freedom, a: &Arch, p: f64, rng: &mut Rng) -> Arch {
    let slots = space.slots();
    let mut out = a.clone();
    for (s, st) in space.stages.iter().enumerate() {
        if f.arch && rng.chance(p) {
            let d = rng.pick(&st.depths) as usize;
            let cur = out.stages[s].len();
            if d < cur {
                out.stages[s].truncate(d);
            } else {
                for i in cur..d {
                    let b = random_block(space, f, s, i, rng);
                    out.stages[s].push(b);
                }
            }
        }
        for (i, b) in out.stages[s].iter_mut().enumerate() {
            if f.arch && rng.chance(p) {
                b.kernel = rng.pick(&space.kernels);
            }
            if f.width && rng.chance(p) {
                let slot = slots.iter().find(|x| x.stage == s && x.index == i).expect("slot");
                b.mid = rng.pick(&slot.mids);
            }
            if f.bits {
                for field in [&mut b.pw_w, &mut b.pw_a, &mut b.dw_w, &mut b.dw_a] {
                    if rng.chance(p) {
                        *field = rng.pick(&space.bits);
                    }
                }
            }
        }
    }
    out
}

fn crossover(a: &Arch, b: &Arch, rng: &mut Rng) -> Arch {
    let stages = a
        .stages
        .iter()
        .zip(&b.stages)
        .map(|(x, y)| {
            let d = if rng.below(2) == 0 { x.len() } else { y.len() };
            (0..d)
                .map(|i| match (x.get(i), y.get(i)) {
                    (Some(p), Some(q)) => {
                        if rng.below(2) == 0 {
                            *p
                        } else {
                            *q
                        }
                    }
                    (Some(p), None) => *p,
                    (None, Some(q)) => *q,
                    (None, None) => unreachable!("d is one of the two depths"),
                })
                .collect()
        })
        .collect();
    Arch { space: a.space.clone(), stages }
}

/// The exact minimum of `metric` (summed over layers) over the architectures `f` allows, and one
/// architecture reaching it. Costs couple neighbouring layers (a layer's entry depends on the next
/// layer's activation bits), so this is a dynamic programme over the chain of blocks with the
/// next layer's input bits as state.
pub fn cheapest(space: &Space, lut: &Lut, f: &Freedom, metric: &dyn Fn(&crate::lut::Entry) -> f64) -> Result<(f64, Arch), SearchError> {
    let batch = lut.header.batch;
    let cost = |l: &bitfusion_simulator::Layer, out_bits: u32| -> Result<f64, SearchError> {
        let k = LayerKey::of(l, out_bits);
        lut.entries.get(&k).map(metric).ok_or_else(|| SearchError::MissingLayer(k.apq_key()))
    };
    let slots = space.slots();
    // Candidate blocks per slot under the freedom.
    let choices = |s: usize, i: usize| -> Vec<Block> {
        let slot = slots.iter().find(|x| x.stage == s && x.index == i).expect("slot");
        let base = f.base.stages[s].get(i).copied().unwrap_or_else(|| {
            let first = f.base.stages[s][0];
            Block { kernel: *space.kernels.iter().max().expect("k"), mid: *slot.mids.last().expect("m"), ..first }
        });
        let ks = if f.arch { space.kernels.clone() } else { vec![base.kernel] };
        let ms = if f.width { slot.mids.clone() } else { vec![base.mid] };
        let bits = |v: u32| if f.bits { space.bits.clone() } else { vec![v] };
        let mut out = Vec::new();
        for &kernel in &ks {
            for &mid in &ms {
                for pw_w in bits(base.pw_w) {
                    for pw_a in bits(base.pw_a) {
                        for dw_w in bits(base.dw_w) {
                            for dw_a in bits(base.dw_a) {
                                out.push(Block { kernel, mid, pw_w, pw_a, dw_w, dw_a });
                            }
                        }
                    }
                }
            }
        }
        out
    };
    let block_cost = |s: usize, i: usize, b: &Block, next_a: u32| -> Result<f64, SearchError> {
        let slot = slots.iter().find(|x| x.stage == s && x.index == i).expect("slot");
        let [e, d, p] = block_layers(slot, b, batch);
        Ok(cost(&e, b.dw_a)? + cost(&d, b.pw_a)? + cost(&p, next_a)?)
    };
    // Head: fixed layers after the last stage.
    let all = f.base.layers(space, batch);
    let n_trunk = 1 + if space.first_block.is_some() { 2 } else { 0 };
    let n_head = if space.head.feature_mix > 0 { 2 } else { 1 };
    let head = &all[all.len() - n_head..];
    let mut head_cost = 0.0;
    for (j, l) in head.iter().enumerate() {
        head_cost += cost(l, head.get(j + 1).map_or(l.a_bits, |n| n.a_bits))?;
    }
    let head_a = head[0].a_bits;
    // H[s][a]: cheapest stages s.. plus head when stage s's first block has pw_a = a.
    type Best = BTreeMap<u32, (f64, Vec<Vec<Block>>)>;
    let mut next: Best = BTreeMap::from([(head_a, (head_cost, Vec::new()))]);
    for s in (0..space.stages.len()).rev() {
        let depths: Vec<usize> = if f.arch { space.stages[s].depths.iter().map(|&d| d as usize).collect() } else { vec![f.base.stages[s].len()] };
        let mut here: Best = BTreeMap::new();
        for d in depths {
            // F[a]: cheapest blocks i..d of this stage (+ everything after) with block i's pw_a = a.
            let mut f_next: BTreeMap<u32, (f64, Vec<Block>, Vec<Vec<Block>>)> = BTreeMap::new();
            for (&a, (c, rest)) in &next {
                f_next.insert(a, (*c, Vec::new(), rest.clone()));
            }
            for i in (0..d).rev() {
                let mut f_here: BTreeMap<u32, (f64, Vec<Block>, Vec<Vec<Block>>)> = BTreeMap::new();
                for b in choices(s, i) {
                    for (&na, (c, tail, rest)) in &f_next {
                        let total = c + block_cost(s, i, &b, na)?;
                        let e = f_here.entry(b.pw_a).or_insert((f64::INFINITY, Vec::new(), Vec::new()));
                        if total < e.0 {
                            let mut t = vec![b];
                            t.extend(tail.iter().copied());
                            *e = (total, t, rest.clone());
                        }
                    }
                }
                f_next = f_here;
            }
            for (a, (c, blocks, rest)) in f_next {
                let e = here.entry(a).or_insert((f64::INFINITY, Vec::new()));
                if c < e.0 {
                    let mut st = vec![blocks];
                    st.extend(rest);
                    *e = (c, st);
                }
            }
        }
        next = here;
    }
    // Trunk: its last layer's output bits are stage 0's first pw_a.
    let trunk = &all[..n_trunk];
    let mut best = (f64::INFINITY, Vec::new());
    for (a, (c, stages)) in next {
        let mut t = 0.0;
        for (j, l) in trunk.iter().enumerate() {
            t += cost(l, trunk.get(j + 1).map_or(a, |n| n.a_bits))?;
        }
        if c + t < best.0 {
            best = (c + t, stages);
        }
    }
    Ok((best.0, Arch { space: space.name.clone(), stages: best.1 }))
}

/// Refuse a budget below the cheapest architecture, at once, with the cheapest values.
pub fn check_feasible(space: &Space, lut: &Lut, f: &Freedom, b: &Budget) -> Result<(), SearchError> {
    if let Some(x) = b.latency_ms {
        let (min, _) = cheapest(space, lut, f, &|e| e.latency_ms)?;
        if min > x {
            return Err(SearchError::Infeasible { metric: "latency", unit: "ms", budget: x, cheapest: min });
        }
    }
    if let Some(x) = b.energy_mj {
        let (min, _) = cheapest(space, lut, f, &|e| e.energy_mj.unwrap_or(0.0))?;
        if min > x {
            return Err(SearchError::Infeasible { metric: "energy", unit: "mJ", budget: x, cheapest: min });
        }
    }
    Ok(())
}

/// What a search returns.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Outcome {
    pub best: Candidate,
    /// The best distinct feasible candidates it evaluated, best first (at most `top_k`; `best` is
    /// the first).
    pub top: Vec<Candidate>,
    /// Best predicted accuracy after each generation.
    pub history: Vec<f64>,
    pub queries: usize,
    pub seconds: f64,
}

/// Draw a feasible architecture: random tries, then mutations of the cheapest one (which fits).
fn feasible(ev: &Evaluator, f: &Freedom, b: &Budget, anchor: &Arch, p: f64, rng: &mut Rng, draw: &dyn Fn(&mut Rng) -> Arch) -> Result<Arch, SearchError> {
    for _ in 0..30 {
        let a = draw(rng);
        if ev.fits(&a, b)? {
            return Ok(a);
        }
    }
    for _ in 0..30 {
        let a = mutate(ev.space, f, anchor, p.max(0.2), rng);
        if ev.fits(&a, b)? {
            return Ok(a);
        }
    }
    Ok(anchor.clone())
}

/// A feasible anchor: the cheapest architecture by latency, or by energy when only energy binds.
fn anchor(space: &Space, lut: &Lut, f: &Freedom, b: &Budget) -> Result<Arch, SearchError> {
    check_feasible(space, lut, f, b)?;
    let by_energy = b.latency_ms.is_none() && b.energy_mj.is_some();
    let (_, a) = if by_energy { cheapest(space, lut, f, &|e| e.energy_mj.unwrap_or(0.0))? } else { cheapest(space, lut, f, &|e| e.latency_ms)? };
    Ok(a)
}

/// The `k` best distinct candidates by predicted accuracy (ties: lower latency, then text),
/// spread over architectures: first the best candidate of each architecture (depths, kernels and
/// widths, bits aside), best first; only when fewer than `k` architectures were seen, the next
/// best candidates of the architectures already taken. A search that converged to one region
/// then still hands several of its architectures to re-ranking, not `k` bit variants of one; a
/// search that cannot change the architecture (quantization only) hands its best bit policies.
pub fn best_distinct(candidates: impl IntoIterator<Item = Candidate>, k: usize) -> Vec<Candidate> {
    let k = k.max(1);
    let mut all: Vec<Candidate> = candidates.into_iter().collect();
    all.sort_by(|x, y| y.accuracy.total_cmp(&x.accuracy).then_with(|| x.latency_ms.total_cmp(&y.latency_ms)).then_with(|| x.arch.to_text().cmp(&y.arch.to_text())));
    let mut seen = std::collections::HashSet::new();
    all.retain(|c| seen.insert(c.arch.clone()));
    let shape = |a: &Arch| -> Vec<Vec<(u32, u32)>> { a.stages.iter().map(|s| s.iter().map(|b| (b.kernel, b.mid)).collect()).collect() };
    let mut shapes = std::collections::HashSet::new();
    let (mut first, mut rest): (Vec<Candidate>, Vec<Candidate>) = (Vec::new(), Vec::new());
    for c in all {
        if shapes.insert(shape(&c.arch)) { first.push(c) } else { rest.push(c) }
    }
    first.truncate(k);
    let missing = k - first.len();
    first.extend(rest.into_iter().take(missing));
    first
}

/// The uniform-precision architectures of the space's presets (largest, middle, smallest at each
/// width) as `f` allows them: the dimensions `f` fixes come from its base. Searches start from the
/// ones that fit, so a search never misses a point its restricted baselines would find.
pub fn anchors(space: &Space, f: &Freedom) -> Vec<Arch> {
    let top = *space.bits.iter().max().expect("bits");
    let mut out: Vec<Arch> = Vec::new();
    for template in [largest(space, top), middle(space, top), smallest(space, top)] {
        let widths: Vec<u32> = if f.bits { space.bits.clone() } else { vec![0] };
        for b in widths {
            let stages = (0..space.stages.len())
                .map(|s| {
                    let depth = if f.arch { template.stages[s].len() } else { f.base.stages[s].len() };
                    (0..depth)
                        .map(|i| {
                            let slot = space.slots().into_iter().find(|x| x.stage == s && x.index == i).expect("slot");
                            let mut blk = f.base.stages[s].get(i).copied().unwrap_or_else(|| {
                                let first = f.base.stages[s][0];
                                Block { kernel: *space.kernels.iter().max().expect("kernels"), mid: *slot.mids.last().expect("mids"), ..first }
                            });
                            let t = template.stages[s].get(i).copied().unwrap_or(Block { kernel: blk.kernel, mid: *slot.mids.last().expect("mids"), ..blk });
                            if f.arch {
                                blk.kernel = t.kernel;
                            }
                            if f.width {
                                blk.mid = t.mid;
                            }
                            if f.bits {
                                (blk.pw_w, blk.pw_a, blk.dw_w, blk.dw_a) = (b, b, b, b);
                            }
                            blk
                        })
                        .collect()
                })
                .collect();
            let a = Arch { space: space.name.clone(), stages };
            if !out.contains(&a) {
                out.push(a);
            }
        }
    }
    out
}

/// Constrained evolution: the best predicted accuracy within `budget`.
pub fn evolve(ev: &mut Evaluator, f: &Freedom, b: &Budget, cfg: &EvoConfig) -> Result<Outcome, SearchError> {
    let start = std::time::Instant::now();
    let space = ev.space;
    let anchor = anchor(space, ev.lut, f, b)?;
    let mut rng = Rng(cfg.seed ^ 0xe7037ed1a0b428db);
    let mut pop = Vec::with_capacity(cfg.population);
    // The feasible anchors first (at most a quarter of the population), then random feasible ones.
    for a in anchors(space, f) {
        if pop.len() < cfg.population / 4 && ev.fits(&a, b)? {
            pop.push(a);
        }
    }
    while pop.len() < cfg.population.max(1) {
        pop.push(feasible(ev, f, b, &anchor, cfg.mutate_prob, &mut rng, &|r| random_arch(space, f, r))?);
    }
    let mut history = Vec::new();
    let mut scored = ev.evaluate(&pop)?;
    let mut archive: HashMap<Arch, Candidate> = HashMap::new();
    let keep = |c: &[Candidate], archive: &mut HashMap<Arch, Candidate>| {
        for x in c {
            if !archive.contains_key(&x.arch) && b.admits(x.latency_ms, x.energy_mj) {
                archive.insert(x.arch.clone(), x.clone());
            }
        }
    };
    keep(&scored, &mut archive);
    let mut best: Option<Candidate> = None;
    for _ in 0..cfg.generations {
        scored.sort_by(|x, y| y.accuracy.total_cmp(&x.accuracy).then_with(|| x.latency_ms.total_cmp(&y.latency_ms)));
        if best.as_ref().is_none_or(|bst| scored[0].accuracy > bst.accuracy) {
            best = Some(scored[0].clone());
        }
        history.push(best.as_ref().map_or(0.0, |c| c.accuracy));
        let parents: Vec<Arch> = scored.iter().take(cfg.parents.max(1)).map(|c| c.arch.clone()).collect();
        let mut next = parents.clone();
        for _ in 0..cfg.mutations {
            let p = parents[rng.below(parents.len())].clone();
            next.push(feasible(ev, f, b, &p, cfg.mutate_prob, &mut rng, &|r| mutate(space, f, &p, cfg.mutate_prob, r))?);
        }
        for _ in 0..cfg.crossovers {
            let (x, y) = (parents[rng.below(parents.len())].clone(), parents[rng.below(parents.len())].clone());
            next.push(feasible(ev, f, b, &x, cfg.mutate_prob, &mut rng, &|r| crossover(&x, &y, r))?);
        }
        scored = ev.evaluate(&next)?;
        keep(&scored, &mut archive);
    }
    scored.sort_by(|x, y| y.accuracy.total_cmp(&x.accuracy).then_with(|| x.latency_ms.total_cmp(&y.latency_ms)));
    if best.as_ref().is_none_or(|bst| scored[0].accuracy > bst.accuracy) {
        best = Some(scored[0].clone());
    }
    // The last generation's offspring count too: the history ends at the returned best.
    history.push(best.as_ref().map_or(0.0, |c| c.accuracy));
    let best = best.expect("a population");
    let mut top = best_distinct(archive.into_values(), cfg.top_k);
    if top.first().is_none_or(|t| t.arch != best.arch) {
        top.insert(0, best.clone());
        top.truncate(cfg.top_k.max(1));
    }
    Ok(Outcome { best, top, history, queries: ev.queries, seconds: start.elapsed().as_secs_f64() })
}

/// Random search with `queries` predictor queries (feasible samples only); returns the `top_k`
/// best.
pub fn random_search(ev: &mut Evaluator, f: &Freedom, b: &Budget, queries: usize, seed: u64, top_k: usize) -> Result<Outcome, SearchError> {
    let start = std::time::Instant::now();
    let anchor = anchor(ev.space, ev.lut, f, b)?;
    let mut rng = Rng(seed ^ 0x2545f4914f6cdd1d);
    let space = ev.space;
    let archs: Vec<Arch> = (0..queries.max(1)).map(|_| feasible(ev, f, b, &anchor, 0.1, &mut rng, &|r| random_arch(space, f, r))).collect::<Result<_, _>>()?;
    let scored = ev.evaluate(&archs)?;
    let top = best_distinct(scored.into_iter().filter(|c| b.admits(c.latency_ms, c.energy_mj)), top_k);
    let best = top.first().cloned().ok_or(SearchError::NoneFeasible)?;
    Ok(Outcome { best, top, history: Vec::new(), queries: ev.queries, seconds: start.elapsed().as_secs_f64() })
}

/// Does `a` dominate `b` (accuracy up, latency and energy down; better in one)?
pub fn dominates(a: &Candidate, b: &Candidate) -> bool {
    bitfusion_util::pareto::dominates(&objectives(a), &objectives(b))
}

/// A candidate's objectives, all minimised: (-accuracy, latency, energy).
fn objectives(c: &Candidate) -> [f64; 3] {
    [-c.accuracy, c.latency_ms, c.energy_mj]
}

/// The non-dominated candidates (one per distinct objective triple), by latency.
pub fn non_dominated(c: &[Candidate]) -> Vec<Candidate> {
    let objs: Vec<[f64; 3]> = c.iter().map(objectives).collect();
    let mut out: Vec<Candidate> = bitfusion_util::non_dominated(&objs).into_iter().map(|i| c[i].clone()).collect();
    out.sort_by(|x, y| x.latency_ms.total_cmp(&y.latency_ms).then_with(|| y.accuracy.total_cmp(&x.accuracy)).then_with(|| x.arch.to_text().cmp(&y.arch.to_text())));
    out.dedup_by(|x, y| x.accuracy == y.accuracy && x.latency_ms == y.latency_ms && x.energy_mj == y.energy_mj);
    out
}

/// Fast non-dominated sorting: front index per candidate.
fn fronts(c: &[Candidate]) -> Vec<Vec<usize>> {
    let n = c.len();
    let mut dominated_by = vec![0usize; n];
    let mut dominates_list = vec![Vec::new(); n];
    for i in 0..n {
        for j in 0..n {
            if i != j && dominates(&c[i], &c[j]) {
                dominates_list[i].push(j);
            } else if i != j && dominates(&c[j], &c[i]) {
                dominated_by[i] += 1;
            }
        }
    }
    let mut out = Vec::new();
    let mut cur: Vec<usize> = (0..n).filter(|&i| dominated_by[i] == 0).collect();
    while !cur.is_empty() {
        let mut nxt = Vec::new();
        for &i in &cur {
            for &j in &dominates_list[i] {
                dominated_by[j] -= 1;
                if dominated_by[j] == 0 {
                    nxt.push(j);
                }
            }
        }
        out.push(cur);
        cur = nxt;
    }
    out
}

/// Crowding distance within one front.
fn crowding(c: &[Candidate], front: &[usize]) -> Vec<f64> {
    let mut d = vec![0.0; front.len()];
    let objs: [fn(&Candidate) -> f64; 3] = [|x| x.accuracy, |x| x.latency_ms, |x| x.energy_mj];
    for o in objs {
        let mut idx: Vec<usize> = (0..front.len()).collect();
        idx.sort_by(|&a, &b| o(&c[front[a]]).total_cmp(&o(&c[front[b]])));
        let (lo, hi) = (o(&c[front[idx[0]]]), o(&c[front[*idx.last().expect("non-empty")]]));
        d[idx[0]] = f64::INFINITY;
        d[*idx.last().expect("non-empty")] = f64::INFINITY;
        if hi > lo {
            for w in 1..idx.len().saturating_sub(1) {
                d[idx[w]] += (o(&c[front[idx[w + 1]]]) - o(&c[front[idx[w - 1]]])) / (hi - lo);
            }
        }
    }
    d
}

/// The non-dominated set of every candidate inserted, one per distinct objective triple (the
/// smallest architecture text among equals), whatever the insertion order: NSGA-II's archive
/// across all generations, so a front point found early and later crowded out of the population
/// is never lost.
#[derive(Clone, Debug, Default)]
pub struct ParetoArchive {
    front: Vec<(String, Candidate)>,
}

impl ParetoArchive {
    /// Add `c` unless a member dominates it or equals it with a smaller architecture text; drop
    /// the members it dominates. Returns whether `c` was kept.
    pub fn insert(&mut self, c: &Candidate) -> bool {
        let same = |x: &Candidate| x.accuracy == c.accuracy && x.latency_ms == c.latency_ms && x.energy_mj == c.energy_mj;
        let text = c.arch.to_text();
        if self.front.iter().any(|(t, x)| dominates(x, c) || (same(x) && *t <= text)) {
            return false;
        }
        self.front.retain(|(_, x)| !dominates(c, x) && !same(x));
        self.front.push((text, c.clone()));
        true
    }

    pub fn len(&self) -> usize {
        self.front.len()
    }

    pub fn is_empty(&self) -> bool {
        self.front.is_empty()
    }

    /// The members, by latency (then accuracy descending, then text), as [`non_dominated`] orders.
    pub fn into_front(self) -> Vec<Candidate> {
        let mut v: Vec<Candidate> = self.front.into_iter().map(|(_, c)| c).collect();
        v.sort_by(|x, y| x.latency_ms.total_cmp(&y.latency_ms).then_with(|| y.accuracy.total_cmp(&x.accuracy)).then_with(|| x.arch.to_text().cmp(&y.arch.to_text())));
        v
    }
}

/// Keep `n` of `all` as NSGA-II does: whole fronts while they fit, then the least crowded of the
/// next front.
fn select(all: &[Candidate], n: usize) -> Vec<Candidate> {
    let mut keep = Vec::with_capacity(n);
    for front in fronts(all) {
        if keep.len() + front.len() <= n {
            keep.extend(front.iter().map(|&i| all[i].clone()));
        } else {
            let d = crowding(all, &front);
            let mut idx: Vec<usize> = (0..front.len()).collect();
            idx.sort_by(|&a, &b2| d[b2].total_cmp(&d[a]));
            keep.extend(idx.into_iter().take(n - keep.len()).map(|k| all[front[k]].clone()));
            break;
        }
    }
    keep
}

/// NSGA-II over (accuracy, latency, energy) within `budget`; returns the non-dominated set of
/// every architecture evaluated in any generation ([`ParetoArchive`]).
pub fn pareto(ev: &mut Evaluator, f: &Freedom, b: &Budget, cfg: &EvoConfig) -> Result<(Vec<Candidate>, Outcome), SearchError> {
    pareto_seeded(ev, f, b, cfg, &[])
}

/// [`pareto`] with `seeds` (the winners and candidates of constrained searches): every seed within
/// the budget enters the archive, so the front contains each of them or a point dominating it, and
/// up to half the first population (the best of them by NSGA-II's selection), so the front's
/// high-accuracy end starts where those searches ended.
pub fn pareto_seeded(ev: &mut Evaluator, f: &Freedom, b: &Budget, cfg: &EvoConfig, seeds: &[Arch]) -> Result<(Vec<Candidate>, Outcome), SearchError> {
    let start = std::time::Instant::now();
    let space = ev.space;
    let anchor = anchor(space, ev.lut, f, b)?;
    let mut rng = Rng(cfg.seed ^ 0x9e3779b97f4a7c15);
    let n = cfg.population.max(2);
    let mut archive = ParetoArchive::default();
    let mut distinct: Vec<Arch> = Vec::with_capacity(seeds.len());
    let mut seen_seed = std::collections::HashSet::new();
    for s in seeds {
        if seen_seed.insert(s) && ev.fits(s, b)? {
            distinct.push(s.clone());
        }
    }
    let seeded = ev.evaluate(&distinct)?;
    for c in &seeded {
        archive.insert(c);
    }
    let mut pop: Vec<Arch> = select(&seeded, n / 2).into_iter().map(|c| c.arch).collect();
    while pop.len() < n {
        pop.push(feasible(ev, f, b, &anchor, cfg.mutate_prob, &mut rng, &|r| random_arch(space, f, r))?);
    }
    let mut scored = ev.evaluate(&pop)?;
    for c in &scored {
        archive.insert(c);
    }
    let mut history = Vec::new();
    for _ in 0..cfg.generations {
        // Rank and crowding of the current population, for binary tournaments.
        let fr = fronts(&scored);
        let mut rank = vec![0usize; scored.len()];
        let mut crowd = vec![0.0; scored.len()];
        for (r, front) in fr.iter().enumerate() {
            for (k, d) in front.iter().zip(crowding(&scored, front)) {
                rank[*k] = r;
                crowd[*k] = d;
            }
        }
        let pick = |rng: &mut Rng| {
            let (i, j) = (rng.below(scored.len()), rng.below(scored.len()));
            if rank[i] < rank[j] || (rank[i] == rank[j] && crowd[i] >= crowd[j]) { i } else { j }
        };
        let mut children = Vec::with_capacity(n);
        while children.len() < n {
            let x = scored[pick(&mut rng)].arch.clone();
            let child = if rng.below(2) == 0 {
                let y = scored[pick(&mut rng)].arch.clone();
                let c = crossover(&x, &y, &mut rng);
                mutate(space, f, &c, cfg.mutate_prob, &mut rng)
            } else {
                mutate(space, f, &x, cfg.mutate_prob.max(1.0 / 8.0), &mut rng)
            };
            if ev.fits(&child, b)? {
                children.push(child);
            } else {
                children.push(x);
            }
        }
        let kids = ev.evaluate(&children)?;
        for c in &kids {
            archive.insert(c);
        }
        let mut all = scored.clone();
        all.extend(kids);
        // Unique architectures only, then fronts and crowding to keep n.
        let mut seen = std::collections::HashSet::new();
        all.retain(|c| seen.insert(c.arch.to_text()));
        scored = select(&all, n);
        history.push(scored.iter().map(|c| c.accuracy).fold(0.0, f64::max));
    }
    let front = archive.into_front();
    let best = front.iter().max_by(|x, y| x.accuracy.total_cmp(&y.accuracy)).expect("a front").clone();
    let top = best_distinct(front.iter().cloned(), cfg.top_k);
    Ok((front, Outcome { best, top, history, queries: ev.queries, seconds: start.elapsed().as_secs_f64() }))
}

/// A predictor from a function (tests, baselines with a known landscape).
pub struct FnPredictor<F: Fn(&Arch) -> f64 + Sync>(pub F);

impl<F: Fn(&Arch) -> f64 + Sync> Predictor for FnPredictor<F> {
    fn predict(&self, archs: &[Arch]) -> Vec<f64> {
        archs.iter().map(&self.0).collect()
    }
}
