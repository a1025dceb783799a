//! The cycle model's speed: every layer of MobileNetV2-224 at all 16 (w, a) bit pairs in
//! {2,4,6,8}^2 (848 layer simulations, in parallel on all cores), on the paper's config.
//!
//! Run: `cargo bench -p bitfusion-simulator --bench cycle_model`

use bitfusion_simulator::config::{HwConfig, SHIPPED_CONFIGS};
use bitfusion_simulator::model::CostModel;
use bitfusion_simulator::networks::network;
use bitfusion_simulator::{CycleModel, Objective};
use criterion::{Criterion, criterion_group, criterion_main};
use rayon::prelude::*;
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let hw = HwConfig::from_toml_str(SHIPPED_CONFIGS[0].1, "bench", &[]).unwrap();
    let model = CycleModel::new(&hw, Objective::Cycles);
    let base = network("mobilenet_v2").unwrap().layers();
    let mut jobs = Vec::new();
    for w in [2, 4, 6, 8] {
        for a in [2, 4, 6, 8] {
            for l in &base {
                let mut l = l.clone();
                l.w_bits = w;
                l.a_bits = a;
                jobs.push(l);
            }
        }
    }
    let mut g = c.benchmark_group("cycle_model");
    g.sample_size(10);
    g.bench_function(format!("mobilenet_v2_224_16_precisions_{}_layer_sims", jobs.len()), |b| {
        b.iter(|| {
            let total: u64 = jobs.par_iter().map(|l| model.simulate_layer(black_box(l)).unwrap().cycles.0).sum();
            black_box(total)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
