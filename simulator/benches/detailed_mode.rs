//! The detailed mode's speed in fusion-unit-cycles per second: a 3x3 convolution (32 -> 32 channels,
//! 14x14, 8-bit and 2-bit) on an 8x8 array, one core, everything stepped.
//!
//! Run: `cargo bench -p bitfusion-simulator --bench detailed_mode`

use bitfusion_simulator::config::{HwConfig, SHIPPED_CONFIGS};
use bitfusion_simulator::detailed::{LayerData, run_with};
use bitfusion_simulator::{CycleModel, Layer, Objective};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let o: Vec<String> = ["array.rows=8", "array.cols=8", "memory.wbuf_bytes=65536", "memory.ibuf_bytes=16384", "memory.obuf_bytes=16384"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let hw = HwConfig::from_toml_str(SHIPPED_CONFIGS[0].1, "bench", &o).unwrap();
    let model = CycleModel::new(&hw, Objective::Cycles);
    let mut g = c.benchmark_group("detailed_mode");
    g.sample_size(10);
    for bits in [8u32, 2] {
        let layer = Layer::conv("conv", 1, 32, 32, 14, 3, 1, 1, 1, bits, bits);
        let (_, p, m) = model.simulate_detailed(&layer, None).unwrap();
        let data = LayerData::random(&p, 7);
        let probe = run_with(&model, &layer, &p, &m, &data).unwrap();
        assert_eq!(probe.mismatches, 0);
        g.throughput(Throughput::Elements(probe.unit_cycles));
        g.bench_function(format!("conv3x3_32x32_14x14_w{bits}a{bits}_on_8x8_{}_unit_cycles", probe.unit_cycles), |b| {
            b.iter(|| black_box(run_with(&model, &layer, &p, &m, &data).unwrap().totals.end))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
