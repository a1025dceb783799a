//! Time to build the full `apq-wide-bits` LUT on bitfusion-isca2018 with the cycle model (every
//! distinct layer, with its output precision, simulated once; both cores).
//!
//! Run: `cargo bench -p bitfusion-search --bench lut_build`

use bitfusion_search::lut::{BuildSpec, build_lut};
use bitfusion_search::space::Space;
use bitfusion_simulator::Objective;
use bitfusion_simulator::config::{CostModelName, load_hw};
use std::time::Instant;

fn main() {
    for (preset, model) in [("apq-wide-bits", CostModelName::Cycle), ("apq", CostModelName::Reference)] {
        let space = Space::load(preset).unwrap();
        let hw = load_hw("bitfusion-isca2018", &[]).unwrap();
        let out = std::env::temp_dir().join(format!("bf-lut-bench-{}-{preset}.lut", std::process::id()));
        let spec = BuildSpec { space: &space, hw: &hw, model, objective: Objective::Cycles, batch: 1 };
        let t = Instant::now();
        let (_, s) = build_lut(&spec, &out, &|_, _| {}).unwrap();
        println!("lut build {preset} ({} model): {} entries in {:.1} s", model.as_str(), s.entries, t.elapsed().as_secs_f64());
        let _ = std::fs::remove_file(&out);
    }
}
