//! Time for each learned-policy controller (REINFORCE, the Gumbel-softmax relaxation) to reach the
//! joint evolution's predicted accuracy under one budget, on the same LUT and predictor (the
//! ensemble's mean minus one standard deviation of its members, as `bitfusion search` ranks).
//!
//! `cargo bench -p bitfusion-models --bench controllers -- LUT PREDICTOR LATENCY_MS [SEEDS]`
//!
//! For every seed: evolution runs with its defaults and its best predicted accuracy is the
//! target; each controller then runs with its defaults (REINFORCE with as many samples as the
//! evolution's queries, as `bitfusion search --baselines` runs it) and the time to the target is
//! its wall time x (the first step whose best feasible prediction comes within 0.1 point of the
//! target + 1) / steps: each step costs about the same, so this is the time at which it got there. Evolution's
//! own time to its best is measured the same way, per generation.

use std::path::Path;

use bitfusion_models::predictor::{LoadedPredictor, Pessimistic};
use bitfusion_search::controller::{GumbelConfig, ReinforceConfig, gumbel, reinforce};
use bitfusion_search::evolution::{Budget, EvoConfig, Evaluator, Freedom, Outcome, Predictor, evolve};
use bitfusion_search::lut::Lut;

/// Seconds until `history` first comes within `tolerance` of `target` (None if it never does),
/// assuming equal steps.
fn time_to(o: &Outcome, target: f64, tolerance: f64) -> Option<f64> {
    let steps = o.history.len().max(1);
    o.history.iter().position(|h| *h >= target - tolerance - 1e-12).map(|i| o.seconds * (i + 1) as f64 / steps as f64)
}

/// "Reached" the evolution's accuracy: within a tenth of a point (the predictor's resolution is
/// far coarser: its held-out RMSE is about 2 points).
const TOLERANCE: f64 = 0.001;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    if args.len() < 3 {
        eprintln!("usage: cargo bench -p bitfusion-models --bench controllers -- LUT PREDICTOR LATENCY_MS [SEEDS]");
        std::process::exit(2);
    }
    let lut = Lut::load(Path::new(&args[0])).unwrap_or_else(|e| panic!("{}: {e}", args[0]));
    let space = lut.header.space.clone();
    let loaded = LoadedPredictor::load(Path::new(&args[1])).unwrap_or_else(|e| panic!("{e}"));
    let pessimistic;
    let predictor: &dyn Predictor = match &loaded {
        LoadedPredictor::Ensemble(e) => {
            pessimistic = Pessimistic { ensemble: e, k: 1.0 };
            &pessimistic
        }
        other => other,
    };
    let budget = Budget { latency_ms: Some(args[2].parse().expect("LATENCY_MS")), energy_mj: None };
    let seeds: u64 = args.get(3).map_or(3, |s| s.parse().expect("SEEDS"));
    println!("| seed | evolution: predicted % | queries | s | s to its best | REINFORCE: best % | queries | s | s to evolution's -0.1 | Gumbel: best % | queries | s | s to evolution's -0.1 |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let fmt = |t: Option<f64>| t.map_or("never".to_string(), |t| format!("{t:.2}"));
    for seed in 1..=seeds {
        let evo_cfg = EvoConfig { seed, ..EvoConfig::default() };
        let evo = evolve(&mut Evaluator::new(&space, &lut, predictor), &Freedom::joint(&space), &budget, &evo_cfg).expect("evolution");
        let target = evo.best.accuracy;
        let rc = ReinforceConfig { seed, ..ReinforceConfig::default() };
        let rc = ReinforceConfig { steps: evo.queries.div_ceil(rc.samples), ..rc };
        let rl = reinforce(&mut Evaluator::new(&space, &lut, predictor), &budget, &rc).expect("reinforce");
        let gs = gumbel(&mut Evaluator::new(&space, &lut, predictor), &budget, &GumbelConfig { seed, ..GumbelConfig::default() }).expect("gumbel");
        println!(
            "| {seed} | {:.2} | {} | {:.2} | {} | {:.2} | {} | {:.2} | {} | {:.2} | {} | {:.2} | {} |",
            100.0 * target,
            evo.queries,
            evo.seconds,
            fmt(time_to(&evo, target, 0.0)),
            100.0 * rl.best.accuracy,
            rl.queries,
            rl.seconds,
            fmt(time_to(&rl, target, TOLERANCE)),
            100.0 * gs.best.accuracy,
            gs.queries,
            gs.seconds,
            fmt(time_to(&gs, target, TOLERANCE)),
        );
    }
}
