//! The search methods compared in the APQ paper's table, all on the same space, LUT and
//! predictor: fixed-precision networks, quantization only (HAQ-like: architecture fixed, bits
//! searched), pruning only (AMC-like: channels searched at fixed bits), the sequential
//! multi-stage search (architecture at 8 bits, then channels, then bits), the joint search, and
//! random search with the joint search's number of predictor queries; and the learned-policy
//! searches of the field over the same joint space ([`crate::controller`]): REINFORCE, with as
//! many samples as the joint evolution's queries, and the Gumbel-softmax relaxation.

use serde::{Deserialize, Serialize};

use crate::controller::{self, GumbelConfig, ReinforceConfig};
use crate::evolution::{self, Budget, Candidate, EvoConfig, Evaluator, Freedom, Outcome, Predictor, SearchError, largest, middle};
use crate::lut::Lut;
use crate::space::Space;

/// A method's name as written in result files.
pub const METHODS: &[&str] = &["joint", "reinforce", "gumbel", "sequential", "quant-only", "prune-only", "random", "fixed8-largest", "fixed4-largest", "fixed8-mid", "fixed4-mid"];

/// The methods of [`METHODS`] that search the joint space with a learned policy (the other
/// search families the evolution is compared with, rather than the APQ table's baselines).
pub const CONTROLLERS: &[&str] = &["reinforce", "gumbel"];

/// What one method found under one budget.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MethodResult {
    pub method: String,
    /// None when the method cannot meet the budget.
    pub best: Option<Candidate>,
    /// Its best distinct feasible candidates by predicted accuracy (at most `EvoConfig::top_k`;
    /// `best` first), for measured re-ranking.
    pub top: Vec<Candidate>,
    pub queries: usize,
    pub seconds: f64,
    pub note: String,
}

/// A method's outcome: an infeasible budget is a row with its reason; any other error fails.
fn result(method: &str, out: Result<Outcome, SearchError>) -> Result<MethodResult, SearchError> {
    match out {
        Ok(o) => Ok(MethodResult { method: method.into(), best: Some(o.best), top: o.top, queries: o.queries, seconds: o.seconds, note: String::new() }),
        Err(e) if e.is_infeasible() => Ok(MethodResult { method: method.into(), best: None, top: Vec::new(), queries: 0, seconds: 0.0, note: e.to_string() }),
        Err(e) => Err(e),
    }
}

/// The space's largest bit width.
fn max_bits(space: &Space) -> u32 {
    *space.bits.iter().max().expect("bits")
}

/// The joint evolution's query count: `joint_queries` when known, else its configuration's
/// number of evaluations.
fn evolution_queries(cfg: &EvoConfig, joint_queries: usize) -> usize {
    if joint_queries > 0 { joint_queries } else { cfg.population + cfg.generations * (cfg.mutations + cfg.crossovers) }
}

/// Run `method` under `budget`. `joint_queries` sizes the random search (0: the evolution's
/// default count).
pub fn run(method: &str, space: &Space, lut: &Lut, predictor: &dyn Predictor, budget: &Budget, cfg: &EvoConfig, joint_queries: usize) -> Result<MethodResult, SearchError> {
    let top = max_bits(space);
    let fixed = |arch: crate::arch::Arch| -> Result<MethodResult, SearchError> {
        let start = std::time::Instant::now();
        let mut ev = Evaluator::new(space, lut, predictor);
        let c = ev.evaluate(&[arch])?.remove(0);
        let fits = budget.admits(c.latency_ms, c.energy_mj);
        Ok(MethodResult {
            method: method.into(),
            note: if fits { String::new() } else { format!("over budget ({:.4} ms, {:.4} mJ)", c.latency_ms, c.energy_mj) },
            top: if fits { vec![c.clone()] } else { Vec::new() },
            best: fits.then_some(c),
            queries: 1,
            seconds: start.elapsed().as_secs_f64(),
        })
    };
    let with_bits = |b: u32| if space.bits.contains(&b) { b } else { top };
    match method {
        "joint" => result(method, evolution::evolve(&mut Evaluator::new(space, lut, predictor), &Freedom::joint(space), budget, cfg)),
        "quant-only" => {
            let f = Freedom { arch: false, width: false, bits: true, base: largest(space, top) };
            result(method, evolution::evolve(&mut Evaluator::new(space, lut, predictor), &f, budget, cfg))
        }
        "prune-only" => {
            let f = Freedom { arch: false, width: true, bits: false, base: largest(space, with_bits(8)) };
            result(method, evolution::evolve(&mut Evaluator::new(space, lut, predictor), &f, budget, cfg))
        }
        "sequential" => {
            let stage_cfg = EvoConfig { generations: cfg.generations.div_ceil(3), ..cfg.clone() };
            let mut ev = Evaluator::new(space, lut, predictor);
            let start = std::time::Instant::now();
            let stages = [(true, false, false), (false, true, false), (false, false, true)];
            let mut base = largest(space, with_bits(8));
            let mut last: Option<Outcome> = None;
            for (arch, width, bits) in stages {
                let f = Freedom { arch, width, bits, base: base.clone() };
                match evolution::evolve(&mut ev, &f, budget, &stage_cfg) {
                    Ok(o) => {
                        base = o.best.arch.clone();
                        last = Some(o);
                    }
                    Err(e) if e.is_infeasible() => {
                        return Ok(MethodResult { method: method.into(), best: None, top: Vec::new(), queries: ev.queries, seconds: start.elapsed().as_secs_f64(), note: e.to_string() });
                    }
                    Err(e) => return Err(e),
                }
            }
            let (best, top) = match last {
                Some(o) => (Some(o.best), o.top),
                None => (None, Vec::new()),
            };
            Ok(MethodResult { method: method.into(), best, top, queries: ev.queries, seconds: start.elapsed().as_secs_f64(), note: String::new() })
        }
        "reinforce" => {
            let rc = ReinforceConfig { seed: cfg.seed, top_k: cfg.top_k, ..ReinforceConfig::default() };
            let steps = evolution_queries(cfg, joint_queries).div_ceil(rc.samples).max(1);
            result(method, controller::reinforce(&mut Evaluator::new(space, lut, predictor), budget, &ReinforceConfig { steps, ..rc }))
        }
        "gumbel" => {
            // Its default steps at the default evolution's size, scaled with the evolution's
            // configured size (so a quick `--generations 5` search stays quick), at least 10.
            let gc = GumbelConfig { seed: cfg.seed, top_k: cfg.top_k, ..GumbelConfig::default() };
            let default_size = evolution_queries(&EvoConfig::default(), 0) as f64;
            let steps = ((gc.steps as f64 * evolution_queries(cfg, 0) as f64 / default_size).round() as usize).max(10);
            let gc = GumbelConfig { steps, ..gc };
            result(method, controller::gumbel(&mut Evaluator::new(space, lut, predictor), budget, &gc))
        }
        "random" => {
            let n = evolution_queries(cfg, joint_queries);
            result(method, evolution::random_search(&mut Evaluator::new(space, lut, predictor), &Freedom::joint(space), budget, n, cfg.seed, cfg.top_k))
        }
        "fixed8-largest" => fixed(largest(space, with_bits(8))),
        "fixed4-largest" => fixed(largest(space, with_bits(4))),
        "fixed8-mid" => fixed(middle(space, with_bits(8))),
        "fixed4-mid" => fixed(middle(space, with_bits(4))),
        other => Err(SearchError::UnknownMethod { method: other.into(), known: METHODS.join(", ") }),
    }
}
