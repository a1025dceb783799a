//! The search methods compared in the APQ paper's table, all on the same space, LUT and
//! predictor: fixed-precision networks, quantization only (HAQ-like: architecture fixed, bits
//! searched), pruning only (AMC-like: channels searched at fixed bits), the sequential
//! multi-stage search (architecture at 8 bits, then channels, then bits), the joint search, and
//! random search with the joint search's number of predictor queries.

use serde::{Deserialize, Serialize};

use crate::evolution::{self, Budget, Candidate, EvoConfig, Evaluator, Freedom, Outcome, Predictor, SearchError, largest, middle};
use crate::lut::Lut;
use crate::space::Space;

/// A method's name as written in result files.
pub const METHODS: &[&str] = &["joint", "sequential", "quant-only", "prune-only", "random", "fixed8-largest", "fixed4-largest", "fixed8-mid", "fixed4-mid"];

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
        "random" => {
            let n = if joint_queries > 0 { joint_queries } else { cfg.population + cfg.generations * (cfg.mutations + cfg.crossovers) };
            result(method, evolution::random_search(&mut Evaluator::new(space, lut, predictor), &Freedom::joint(space), budget, n, cfg.seed, cfg.top_k))
        }
        "fixed8-largest" => fixed(largest(space, with_bits(8))),
        "fixed4-largest" => fixed(largest(space, with_bits(4))),
        "fixed8-mid" => fixed(middle(space, with_bits(8))),
        "fixed4-mid" => fixed(middle(space, with_bits(4))),
        other => Err(SearchError::UnknownMethod { method: other.into(), known: METHODS.join(", ") }),
    }
}
