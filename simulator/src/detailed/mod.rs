//! The detailed mode (`--detailed`): every cycle of the array and the memory
//! system is stepped — each fusion unit's registers, each buffer-bank access,
//! each DRAM beat — on real data, for small arrays and layers.
//!
//! It runs the same schedule and controller rules as the fast engine, but
//! times come from stepping: a tile streams until its feeder has issued
//! every chunk, its results are ready when the array's valid pulses have
//! delivered the last of them, and a transfer ends when its last beat
//! arrives. The layer's actual integer output (weights and activations
//! seeded random, or given) is computed through the stepped array and
//! compared with a direct convolution. The fast engine must agree exactly on
//! cycles, stalls and every access count (a property test checks both).
//!
//! Its submodules form a one-way order (`tests/module_graph.rs` checks it): `data` (the operands,
//! the direct convolution and what a run measured), `datapath` (operand tables and the fusion units' products),
//! `stepper` (the run's state and its per-cycle steps); this file holds the entry points.

mod data;
mod datapath;
mod stepper;

pub use data::{DetailedRun, LayerData};

use crate::cost::{CostModel, SimError};
use crate::cycle::{CycleModel, Mapping, Problem, TileStep, schedule, timeline};
use crate::layer::Layer;
use stepper::Stepper;

/// Largest run accepted, in fusion-unit cycles (about ten seconds at the measured speed).
pub const MAX_UNIT_CYCLES: u64 = 500_000_000;

/// Run every layer in the detailed mode (in parallel), each on seeded random data (`seed` + layer
/// index), each layer's outputs stored at the next layer's activation bits.
pub fn run_layers(model: &CycleModel, layers: &[Layer], seed: u64) -> Result<Vec<DetailedRun>, SimError> {
    use rayon::prelude::*;
    // Refuse the whole workload up front if any layer is too large to step.
    let p_n_m = (model.hw().array.rows as u64) * (model.hw().array.cols as u64);
    for l in layers {
        let cycles = model.simulate_layer(l)?.cycles.0;
        if cycles.saturating_mul(p_n_m) > MAX_UNIT_CYCLES {
            return Err(SimError::new(
                l,
                format!(
                    "detailed mode: run too large: {cycles} cycles x {p_n_m} fusion units = {} unit-cycles (limit {MAX_UNIT_CYCLES}); \
                     use a smaller layer or array",
                    cycles.saturating_mul(p_n_m)
                ),
            ));
        }
    }
    layers
        .par_iter()
        .enumerate()
        .map(|(i, l)| {
            let out_bits = layers.get(i + 1).map_or(l.a_bits, |n| n.a_bits);
            run(model, l, Some(out_bits), seed.wrapping_add(i as u64))
        })
        .collect()
}

/// Run a layer in the detailed mode on seeded random data.
pub fn run(model: &CycleModel, layer: &Layer, out_bits: Option<u32>, seed: u64) -> Result<DetailedRun, SimError> {
    // Refuse at once when even a perfectly busy array would step too many unit-cycles.
    let p = model.problem(layer)?;
    let floor = (p.macs() as f64 / p.plan.elements_per_cycle()) as u64;
    if floor > MAX_UNIT_CYCLES {
        return Err(SimError::new(
            layer,
            format!("detailed mode: run too large: at least {floor} unit-cycles (limit {MAX_UNIT_CYCLES}); use a smaller layer or array"),
        ));
    }
    let (_, p, m) = model.simulate_detailed(layer, out_bits)?;
    let data = LayerData::random(&p, seed);
    run_with(model, layer, &p, &m, &data)
}

/// Run a layer with a given mapping and data.
pub fn run_with(model: &CycleModel, layer: &Layer, p: &Problem, m: &Mapping, data: &LayerData) -> Result<DetailedRun, SimError> {
    let hw = model.hw();
    let steps: Vec<TileStep> = schedule(p, m).collect();
    let fast = timeline(p, steps.iter().copied(), false);
    let unit_cycles = fast.totals.end.saturating_mul(p.n * p.m);
    let too_large = |why: String| SimError::new(layer, format!("detailed mode: run too large: {why}"));
    if unit_cycles > MAX_UNIT_CYCLES {
        return Err(too_large(format!(
            "{} cycles x {} fusion units = {unit_cycles} unit-cycles (limit {MAX_UNIT_CYCLES}); use a smaller layer or array",
            fast.totals.end,
            p.n * p.m
        )));
    }
    let pixels_max = steps.iter().map(|s| s.geom.pixels()).max().unwrap_or(0);
    let chunks_max = steps.iter().map(|s| s.reduction.div_ceil(p.n * p.lanes())).max().unwrap_or(0);
    let cg_max = steps.iter().map(|s| s.colgroups).max().unwrap_or(0);
    if steps.len() >= 1 << 20 || pixels_max >= 1 << 16 || chunks_max * p.n >= 1 << 16 || cg_max >= 1 << 8 || p.m >= 1 << 16 || p.steps() > 15 {
        return Err(too_large("a tile exceeds the stepped model's index ranges".into()));
    }
    Ok(Stepper::new(p, m, data, &steps, hw.array.fusion_bits as u64).run())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HwConfig, SHIPPED_CONFIGS};
    use crate::cycle::CycleModel;
    use crate::cost::Objective;
    use proptest::prelude::*;

    /// A small config: `rows` x `cols` array, buffers of a few words per bank, a given DRAM channel.
    fn config(rows: u32, cols: u32, bufs: (u32, u32, u32), dram: (u32, u32, u32)) -> HwConfig {
        let o = vec![
            format!("array.rows={rows}"),
            format!("array.cols={cols}"),
            format!("memory.wbuf_bytes={}", rows * cols * 4 * bufs.0),
            format!("memory.ibuf_bytes={}", rows * 4 * bufs.1),
            format!("memory.obuf_bytes={}", cols * 4 * bufs.2),
            format!("memory.dram_bits_per_cycle={}", dram.0),
            format!("memory.dram_latency_cycles={}", dram.1),
            format!("memory.dram_burst_bytes={}", dram.2),
        ];
        HwConfig::from_toml_str(SHIPPED_CONFIGS[0].1, "test", &o).unwrap()
    }

    /// Run one case; returns a description of the first disagreement, or None.
    fn check(hw: &HwConfig, layer: &Layer, seed: u64) -> Result<Option<String>, SimError> {
        let model = CycleModel::new(hw, Objective::Cycles);
        let (_, p, m) = model.simulate_detailed(layer, None)?;
        let d = run_with(&model, layer, &p, &m, &LayerData::random(&p, seed))?;
        let tl = timeline(&p, schedule(&p, &m), false);
        if tl.totals != d.totals {
            return Ok(Some(format!("{}: fast {:?} detailed {:?}", m.describe(), tl.totals, d.totals)));
        }
        if d.mismatches > 0 {
            return Ok(Some(format!("{}: {} output elements differ from the direct convolution", m.describe(), d.mismatches)));
        }
        Ok(None)
    }

    #[test]
    fn a_depthwise_layer_on_a_small_array() {
        let hw = config(4, 4, (8, 8, 8), (32, 5, 8));
        let l = Layer::conv("dw", 1, 8, 8, 6, 3, 1, 1, 8, 4, 4);
        assert_eq!(check(&hw, &l, 1).unwrap(), None);
    }

    #[test]
    fn sixteen_bit_operands_run_temporally() {
        let hw = config(2, 2, (16, 16, 16), (64, 0, 4));
        let l = Layer::conv("c16", 1, 3, 4, 5, 3, 2, 1, 1, 16, 16);
        assert_eq!(check(&hw, &l, 3).unwrap(), None);
        let l = Layer::fc("fc", 2, 20, 6, 8, 16);
        assert_eq!(check(&hw, &l, 4).unwrap(), None);
    }

    #[test]
    fn too_large_runs_are_refused() {
        let hw = config(8, 8, (64, 64, 64), (64, 0, 64));
        let model = CycleModel::new(&hw, Objective::Cycles);
        let l = Layer::conv("big", 16, 512, 512, 56, 3, 1, 1, 1, 8, 8);
        let e = run(&model, &l, None, 1).unwrap_err().to_string();
        assert!(e.contains("detailed mode: run too large"), "{e}");
    }

    proptest! {
        #![proptest_config(ProptestConfig { rng_seed: proptest::test_runner::RngSeed::Fixed(0x5eed), cases: 1000, .. ProptestConfig::default() })]
        /// The detailed mode's stepped cycles and access counts equal the fast engine's, and its
        /// output equals the direct integer convolution, over random small layers and configs.
        #[test]
        fn detailed_equals_fast_engine_and_direct_convolution(
            rows in 1u32..=8, cols in 1u32..=8,
            bufs in (1u32..12, 1u32..12, 1u32..12),
            dram in (prop::sample::select(vec![8u32, 32, 64, 192]), 0u32..12, prop::sample::select(vec![4u32, 8, 16, 64])),
            batch in 1u32..=2, groups_kind in 0u32..3, cin_g in 1u32..=6, cout_g in 1u32..=6, groups_n in 1u32..=4,
            size in 1u32..=7, k in prop::sample::select(vec![1u32, 3, 5]), stride in 1u32..=2, pad_pick in 0u32..3,
            w_bits in prop::sample::select(vec![1u32, 2, 3, 4, 5, 6, 8, 16]),
            a_bits in prop::sample::select(vec![1u32, 2, 4, 6, 8, 12, 16]),
            fc in prop::bool::weighted(0.15), seed in any::<u64>(),
        ) {
            let hw = config(rows, cols, bufs, dram);
            let layer = if fc {
                Layer::fc("fc", batch, cin_g * 3, cout_g * 2, w_bits, a_bits)
            } else {
                let (cin, cout, groups) = match groups_kind {
                    0 => (cin_g, cout_g, 1),
                    1 => (cin_g * groups_n, cin_g * groups_n, cin_g * groups_n), // depthwise
                    _ => (cin_g * groups_n, cout_g * groups_n, groups_n),
                };
                let k = k.min(size + 2);
                let pad = (pad_pick).min(k - 1);
                let size = size.max(k.saturating_sub(2 * pad));
                Layer::conv("l", batch, cin, cout, size, k, stride, pad, groups, w_bits, a_bits)
            };
            prop_assume!(layer.validate().is_ok());
            match check(&hw, &layer, seed) {
                Ok(r) => prop_assert_eq!(r, None, "{:?} on {}x{}", layer, rows, cols),
                Err(e) => prop_assert!(e.to_string().contains("no tiling fits"), "{}", e),
            }
        }
    }
}
