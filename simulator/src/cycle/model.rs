//! The cycle-level cost model (`--model cycle`), [`CycleModel`]: a layer's best mapping (the
//! search), its statistics, and Chrome traces of its timeline. The last module of the cycle
//! model's order.

use super::evaluate::{Evaluation, Evaluator};
use super::problem::{Mapping, Problem};
use super::schedule::{TileStep, schedule};
use super::search::{self, SharedSearch};
use super::timeline::{Timeline, timeline};
use crate::config::HwConfig;
use crate::cost::{CostModel, Objective, SimError};
use crate::energy::ChipFigures;
use crate::layer::Layer;
use crate::stats::LayerStats;
use crate::units::Cycles;

/// The cycle-level cost model.
pub struct CycleModel {
    hw: HwConfig,
    chip: ChipFigures,
    objective: Objective,
}

impl CycleModel {
    pub fn new(hw: &HwConfig, objective: Objective) -> Self {
        Self::with_figures(hw, objective, ChipFigures::new(hw))
    }

    /// A model with given energy figures (e.g. SRAM figures held fixed while capacities change).
    pub fn with_figures(hw: &HwConfig, objective: Objective, chip: ChipFigures) -> Self {
        Self { hw: hw.clone(), chip, objective }
    }

    pub fn objective(&self) -> Objective {
        self.objective
    }

    pub fn chip(&self) -> &ChipFigures {
        &self.chip
    }

    /// The layer as the engine sees it ([`Problem::of`]); `out_bits` defaults to the layer's activation bits.
    pub fn problem(&self, layer: &Layer) -> Result<Problem, SimError> {
        Problem::of(&self.hw, layer)
    }

    /// What evaluating mappings and bounding them needs of the model.
    pub(super) fn evaluator(&self) -> Evaluator<'_> {
        Evaluator { hw: &self.hw, chip: &self.chip, objective: self.objective }
    }

    /// Evaluate one mapping exactly.
    pub fn evaluate(&self, p: &Problem, m: &Mapping) -> Option<Evaluation> {
        self.evaluator().evaluate(p, m)
    }

    /// Evaluate one mapping exactly, or give up once it provably takes more than `max_cycles`.
    /// `dma_total` is `dma_cycles` of the mapping when known (0 otherwise).
    pub fn evaluate_until(&self, p: &Problem, m: &Mapping, max_cycles: Option<u64>, dma_total: u64) -> Option<Evaluation> {
        self.evaluator().evaluate_until(p, m, max_cycles, dma_total)
    }

    /// Counters and energy of a timeline.
    pub fn measure(&self, p: &Problem, tl: &Timeline) -> Evaluation {
        self.evaluator().measure(p, tl)
    }

    /// The best mapping of a problem under the model's objective.
    pub fn best_mapping(&self, p: &Problem) -> Option<(Mapping, Evaluation, usize, usize)> {
        self.best_mapping_from(p, None)
    }

    /// [`Self::best_mapping`], starting the search from `seed` (a mapping that did well on a similar
    /// problem) as the incumbent. The optimum found is the same; only ties may pick another mapping of
    /// equal cycles and energy.
    pub fn best_mapping_from(&self, p: &Problem, seed: Option<Mapping>) -> Option<(Mapping, Evaluation, usize, usize)> {
        self.best_mapping_shared(p, seed, &mut None)
    }

    /// [`Self::best_mapping_from`], reusing (and leaving in `shared`) the candidates and tiling bounds
    /// of a problem that differs from `p` at most in its output bits. Returns the best mapping, its
    /// evaluation, how many tilings were bounded and how many mappings were evaluated exactly.
    pub fn best_mapping_shared(&self, p: &Problem, seed: Option<Mapping>, shared: &mut Option<SharedSearch>) -> Option<(Mapping, Evaluation, usize, usize)> {
        search::best_mapping(self.evaluator(), p, seed, shared)
    }

    /// Simulate a layer, returning the mapping and its schedule too.
    pub fn simulate_detailed(&self, layer: &Layer, out_bits: Option<u32>) -> Result<(LayerStats, Problem, Mapping), SimError> {
        self.simulate_seeded(layer, out_bits, None)
    }

    /// [`Self::simulate_detailed`] with a mapping search seeded from `seed`.
    pub fn simulate_seeded(&self, layer: &Layer, out_bits: Option<u32>, seed: Option<Mapping>) -> Result<(LayerStats, Problem, Mapping), SimError> {
        self.simulate_shared(layer, out_bits, seed, &mut None)
    }

    /// [`Self::simulate_seeded`] sharing the search's candidates with the previous call (see [`SharedSearch`]).
    pub fn simulate_shared(&self, layer: &Layer, out_bits: Option<u32>, seed: Option<Mapping>, shared: &mut Option<SharedSearch>) -> Result<(LayerStats, Problem, Mapping), SimError> {
        let mut p = self.problem(layer)?;
        if let Some(b) = out_bits {
            p.out_bits = b as u64;
        }
        let (m, e, n_cands, evaluated) = self.best_mapping_shared(&p, seed, shared).ok_or_else(|| {
            SimError::new(
                layer,
                format!(
                    "cycle model: no tiling fits: even single-pixel, single-channel tiles need more than half of a buffer \
                     (WBUF {} B, IBUF {} B, OBUF {} B)",
                    self.hw.memory.wbuf.0, self.hw.memory.ibuf.0, self.hw.memory.obuf.0
                ),
            )
        })?;
        let peak = (p.n * p.m) as f64 * p.plan.elements_per_cycle();
        let stats = LayerStats {
            name: layer.name.clone(),
            cycles: Cycles(e.cycles),
            compute_cycles: Cycles(e.compute_cycles),
            stall_cycles: Cycles(e.cycles - e.compute_cycles),
            latency_ms: self.hw.cycles_to_ms(e.cycles),
            counters: e.counters,
            energy: e.energy,
            macs: layer.macs(),
            mapping: format!("{} ({} tiles; {} tilings bounded, {} mappings evaluated exactly)", m.describe(), e.tiles, n_cands, evaluated),
            utilization: layer.macs() as f64 / (e.cycles as f64 * peak),
            stalls: Some(e.stalls),
        };
        Ok((stats, p, m))
    }
}

impl CostModel for CycleModel {
    fn name(&self) -> &'static str {
        "cycle"
    }

    fn hw(&self) -> &HwConfig {
        &self.hw
    }

    fn notes(&self) -> Vec<String> {
        self.chip.notes()
    }

    fn area_mm2(&self) -> Option<f64> {
        self.chip.area_mm2()
    }

    fn simulate_layer(&self, layer: &Layer) -> Result<LayerStats, SimError> {
        self.simulate_detailed(layer, None).map(|(s, _, _)| s)
    }

    fn simulate_layer_with_output_bits(&self, layer: &Layer, out_bits: u32) -> Result<LayerStats, SimError> {
        self.simulate_detailed(layer, Some(out_bits)).map(|(s, _, _)| s)
    }

    fn simulate_layer_variants(&self, variants: &[(Layer, u32)]) -> Result<Vec<LayerStats>, SimError> {
        // Each variant's search starts from the previous variant's best mapping, and variants that
        // differ only in output bits share their candidates and tiling bounds.
        let (mut seed, mut shared) = (None, None);
        variants
            .iter()
            .map(|(layer, b)| {
                let (s, _, m) = self.simulate_shared(layer, Some(*b), seed, &mut shared)?;
                seed = Some(m);
                Ok(s)
            })
            .collect()
    }
}

/// Simulate layers with the cycle model and return their Chrome trace (layers laid end to end);
/// each layer's outputs are stored at the next layer's activation bits.
pub fn trace_layers(model: &CycleModel, layers: &[Layer]) -> Result<serde_json::Value, SimError> {
    use rayon::prelude::*;
    let runs: Vec<(Vec<TileStep>, Timeline, String)> = layers
        .par_iter()
        .enumerate()
        .map(|(i, l)| {
            let out_bits = layers.get(i + 1).map_or(l.a_bits, |n| n.a_bits);
            let (_, p, m) = model.simulate_detailed(l, Some(out_bits))?;
            let steps: Vec<TileStep> = schedule(&p, &m).collect();
            let tl = timeline(&p, steps.iter().copied(), true);
            Ok((steps, tl, l.name.clone()))
        })
        .collect::<Result<_, SimError>>()?;
    let mut events = Vec::new();
    let mut offset = 0;
    for (i, (steps, tl, name)) in runs.iter().enumerate() {
        events.extend(super::trace::layer_events(i, name, steps, tl, offset, model.hw.frequency_mhz));
        offset += tl.totals.end;
    }
    Ok(super::trace::document(events))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SHIPPED_CONFIGS;
    use crate::cycle::bounds::{self, BaseBound, edge_bound};
    use crate::cycle::dma::{dma_cycles, dma_sums};
    use crate::cycle::flow::FlowSums;
    use crate::cycle::problem::{Counts, ORDERS};
    use crate::cycle::tiling::{self, Family};
    use proptest::prelude::*;

    fn model() -> CycleModel {
        CycleModel::new(&HwConfig::from_toml_str(SHIPPED_CONFIGS[0].1, "p", &[]).unwrap(), Objective::Cycles)
    }

    /// The branch and bound finds what evaluating every candidate finds, under every objective, with
    /// and without a seed and when sharing its search with another output precision.
    #[test]
    fn the_search_finds_the_exhaustive_optimum() {
        let hw = hw(&["array.rows=8".into(), "array.cols=8".into(), "memory.wbuf_bytes=8192".into(), "memory.ibuf_bytes=2048".into(), "memory.obuf_bytes=2048".into()]);
        let layers = [
            Layer::conv("dw", 1, 24, 24, 14, 3, 1, 1, 24, 4, 2),
            Layer::conv("dw5", 1, 16, 16, 9, 5, 2, 2, 16, 8, 8),
            Layer::conv("pw", 1, 16, 40, 10, 1, 1, 0, 1, 2, 4),
            Layer::conv("c", 2, 8, 16, 7, 3, 1, 1, 1, 8, 8),
            Layer::conv("g", 1, 16, 32, 6, 3, 1, 1, 4, 6, 6),
            Layer::fc("fc", 1, 96, 40, 4, 8),
        ];
        for objective in [Objective::Cycles, Objective::Energy, Objective::Edp] {
            let model = CycleModel::new(&hw, objective);
            let mut shared = None;
            for l in &layers {
                for out_bits in [2u64, 8] {
                    let mut p = model.problem(l).unwrap();
                    p.out_bits = out_bits;
                    let key = |e: &Evaluation| objective.key(e.cycles as f64, e.energy.unwrap().total().get());
                    let cands = tiling::candidates(&p);
                    let best = cands.iter().filter_map(|m| model.evaluate(&p, m)).map(|e| key(&e)).fold((f64::INFINITY, f64::INFINITY), |a, b| if b < a { b } else { a });
                    let (_, e, _, _) = model.best_mapping(&p).unwrap();
                    assert_eq!(key(&e), best, "{} {objective:?} out {out_bits}", l.name);
                    let (_, e, _, _) = model.best_mapping_from(&p, Some(cands[cands.len() / 2])).unwrap();
                    assert_eq!(key(&e), best, "{} {objective:?} out {out_bits}, seeded", l.name);
                    let (_, e, _, _) = model.best_mapping_shared(&p, None, &mut shared).unwrap();
                    assert_eq!(key(&e), best, "{} {objective:?} out {out_bits}, shared", l.name);
                }
            }
        }
    }

    /// The DMA sums over edge classes equal the timeline's transfers, transfer for transfer.
    #[test]
    fn dma_cycles_are_the_timelines_transfers() {
        let m = model();
        let layers = [
            Layer::conv("stem", 1, 3, 32, 224, 3, 2, 1, 1, 8, 8),
            Layer::conv("dw", 1, 144, 144, 56, 3, 2, 1, 144, 2, 6),
            Layer::conv("dw7", 2, 40, 40, 13, 7, 1, 3, 40, 4, 4),
            Layer::conv("pw", 1, 16, 96, 112, 1, 1, 0, 1, 4, 4),
            Layer::conv("c", 2, 64, 64, 14, 3, 1, 1, 1, 2, 8),
            Layer::fc("fc", 1, 1280, 1000, 8, 8),
            Layer::conv("s2", 1, 34, 2, 13, 1, 2, 0, 2, 8, 8),
        ];
        let mut checked = 0;
        for l in &layers {
            let p = m.problem(l).unwrap();
            for c in tiling::candidates(&p).iter().step_by(7) {
                let counts = Counts::of(&p, c);
                if counts.p() * counts.o() * counts.r() > 20_000 {
                    continue;
                }
                let tl = timeline(&p, schedule(&p, c), true);
                let busy: u64 = tl.dma.iter().map(|(_, _, s, e)| e - s).sum();
                assert_eq!(dma_cycles(&p, c, &counts, &dma_sums(&p, c, &counts)), busy, "{}: {}", l.name, c.describe());
                checked += 1;
            }
        }
        assert!(checked > 500, "{checked}");
    }

    /// The search's bounds never exceed the exact cycles of any candidate.
    #[test]
    fn lower_bounds_are_lower() {
        let m = model();
        let layers = [
            Layer::conv("stem", 1, 3, 32, 224, 3, 2, 1, 1, 8, 8),
            Layer::conv("dw", 1, 144, 144, 56, 3, 2, 1, 144, 8, 8),
            Layer::conv("pw", 1, 16, 96, 112, 1, 1, 0, 1, 4, 4),
            Layer::conv("c", 2, 64, 64, 14, 3, 1, 1, 1, 2, 8),
            Layer::conv("g", 1, 64, 128, 14, 3, 1, 1, 4, 8, 8),
            Layer::fc("fc", 1, 1280, 1000, 8, 8),
            // Stride wider than the kernel: some input pixels are never read.
            Layer::conv("s2", 1, 34, 2, 13, 1, 2, 0, 2, 8, 8),
        ];
        let energy_model = CycleModel::new(&HwConfig::from_toml_str(SHIPPED_CONFIGS[0].1, "p", &[]).unwrap(), Objective::Energy);
        for l in &layers {
            let p = m.problem(l).unwrap();
            for c in tiling::candidates(&p).iter().step_by(13) {
                let lb = bounds::lower_bound_cycles(&p, c);
                let e = m.evaluate(&p, c).unwrap();
                assert!(lb <= e.cycles, "{}: {} lb {lb} > exact {}", l.name, c.describe(), e.cycles);
                let counts = Counts::of(&p, c);
                let db = dma_cycles(&p, c, &counts, &dma_sums(&p, c, &counts));
                assert!(db <= e.cycles, "{}: {} DMA bound {db} > exact {}", l.name, c.describe(), e.cycles);
                let base = BaseBound::of(&p, c);
                let floor = base.dma_floor(&p);
                assert!(floor <= db, "{}: {} DMA floor {floor} > DMA cycles {db}", l.name, c.describe());
                let family = Family { groups_per_pass: c.groups_per_pass, oc: c.oc, ic: c.ic, kh: c.kh };
                let fb = family.bound(&p);
                assert!(fb <= base.array.max(floor), "{}: {} family bound {fb} > tiling bound", l.name, c.describe());
                let eb = edge_bound(&p, c);
                assert!(eb <= e.cycles, "{}: {} edge bound {eb} > exact {}", l.name, c.describe(), e.cycles);
                let mut flow = FlowSums::seeded(&p, &base, &dma_sums(&p, c, &counts));
                let coarse = flow.bound(&p, c, &counts);
                let fine = flow.fine_bound(&p, c, &counts);
                for (what, b) in [("flow", coarse), ("fine flow", fine)] {
                    assert!(eb <= b && b <= e.cycles, "{}: {} {what} bound {b} outside [edge bound {eb}, exact {}]", l.name, c.describe(), e.cycles);
                }
                let (e_lb, _) = energy_model.evaluator().lower_bound(&p, c, &BaseBound::of(&p, c), &dma_sums(&p, c, &counts));
                let exact_e = e.energy.unwrap().total().get();
                assert!(e_lb <= exact_e * (1.0 + 1e-12), "{}: {} energy bound {e_lb} > exact {exact_e}", l.name, c.describe());
            }
        }
    }

    fn hw(o: &[String]) -> HwConfig {
        HwConfig::from_toml_str(SHIPPED_CONFIGS[0].1, "p", o).unwrap()
    }

    fn cycles(hw: &HwConfig, l: &Layer) -> u64 {
        CycleModel::new(hw, Objective::Cycles).simulate_layer(l).unwrap().cycles.0
    }

    fn small_layer() -> impl Strategy<Value = Layer> {
        (1u32..=2, 1u32..=48, 1u32..=48, 1u32..=16, prop::sample::select(vec![1u32, 3, 5]), 1u32..=2, 0u32..3, prop::bool::ANY)
            .prop_map(|(b, cin, cout, size, k, s, g, fc)| {
                if fc {
                    return Layer::fc("fc", b, cin * 8, cout * 4, 8, 8);
                }
                let size = size.max(k);
                match g {
                    0 => Layer::conv("c", b, cin, cout, size, k, s, k / 2, 1, 8, 8),
                    1 => Layer::conv("dw", b, cin, cin, size, k, s, k / 2, cin, 8, 8),
                    _ => Layer::conv("g", b, cin * 2, cout * 2, size, k, s, k / 2, 2, 8, 8),
                }
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { rng_seed: proptest::test_runner::RngSeed::Fixed(0x5eed), cases: 40, .. ProptestConfig::default() })]
        /// Under the cycles objective: more DRAM bandwidth, larger buffers or fewer bits never add cycles.
        #[test]
        fn more_resources_or_fewer_bits_never_add_cycles(
            l in small_layer(), rows in prop::sample::select(vec![4u32, 8, 16]), cols in prop::sample::select(vec![4u32, 8, 32]),
            bw in prop::sample::select(vec![32u32, 64, 192]), buf in 1u32..4, w in prop::sample::select(vec![2u32, 4, 6, 8, 16]),
            a in prop::sample::select(vec![2u32, 4, 6, 8, 16]),
        ) {
            let base = |bw: u32, scale: u32| vec![
                format!("array.rows={rows}"), format!("array.cols={cols}"),
                format!("memory.wbuf_bytes={}", rows * cols * 64 * buf * scale),
                format!("memory.ibuf_bytes={}", rows * 256 * buf * scale),
                format!("memory.obuf_bytes={}", cols * 256 * buf * scale),
                format!("memory.dram_bits_per_cycle={bw}"),
            ];
            let mut l = l;
            l.w_bits = w;
            l.a_bits = a;
            let small = hw(&base(bw, 1));
            let Ok(c0) = CycleModel::new(&small, Objective::Cycles).simulate_layer(&l).map(|s| s.cycles.0) else { return Ok(()) };
            prop_assert!(cycles(&hw(&base(bw * 2, 1)), &l) <= c0, "more bandwidth");
            prop_assert!(cycles(&hw(&base(bw, 2)), &l) <= c0, "larger buffers");
            for (fw, fa) in [(w / 2, a), (w, a / 2), (w.min(4), a.min(4))] {
                if fw >= 1 && fa >= 1 {
                    let mut fewer = l.clone();
                    fewer.w_bits = fw;
                    fewer.a_bits = fa;
                    prop_assert!(cycles(&small, &fewer) <= c0, "fewer bits {fw}/{fa} vs {w}/{a}");
                }
            }
        }

        /// Both flow bounds lie between the edge bound and the exact cycles, on every loop order of
        /// random tilings of random layers and arrays (the search drops mappings on them).
        #[test]
        fn flow_bounds_are_lower_bounds(
            l in small_layer(), rows in prop::sample::select(vec![4u32, 8, 16]), cols in prop::sample::select(vec![4u32, 8, 32]),
            bw in prop::sample::select(vec![32u32, 64, 192]), pick in 0usize..1000,
        ) {
            let model = CycleModel::new(&hw(&[format!("array.rows={rows}"), format!("array.cols={cols}"), format!("memory.dram_bits_per_cycle={bw}")]), Objective::Cycles);
            let Ok(p) = model.problem(&l) else { return Ok(()) };
            let cands = tiling::candidates(&p);
            prop_assume!(!cands.is_empty());
            // Five tilings spread over the candidates, each with all its loop orders, sharing one set
            // of class sums as the search does.
            for t in 0..5 {
                let first = (pick + t * cands.len() / 5) % cands.len();
                let tiling = |m: &Mapping| Mapping { order: ORDERS[0], ..*m };
                let base = BaseBound::of(&p, &cands[first]);
                let counts = base.counts;
                let mut flow = FlowSums::seeded(&p, &base, &dma_sums(&p, &cands[first], &counts));
                for c in cands.iter().filter(|m| tiling(m) == tiling(&cands[first])) {
                    let Some(e) = model.evaluate(&p, c) else { continue };
                    let eb = edge_bound(&p, c);
                    let coarse = flow.bound(&p, c, &counts);
                    let fine = flow.fine_bound(&p, c, &counts);
                    prop_assert!(eb <= coarse && coarse <= e.cycles, "{}: flow {coarse} vs edge {eb}, exact {}", c.describe(), e.cycles);
                    prop_assert!(eb <= fine && fine <= e.cycles, "{}: fine flow {fine} vs edge {eb}, exact {}", c.describe(), e.cycles);
                }
            }
        }

        /// Under the energy objective, larger buffers never add energy (at the same per-access SRAM
        /// energy and leakage: with CACTI's figures a larger bank costs more per access, which is a
        /// property of the SRAM, not of the mapping).
        #[test]
        fn larger_buffers_never_add_energy(l in small_layer(), buf in 1u32..4, scale in 2u32..4) {
            let cfg = |scale: u32| hw(&[
                "array.rows=8".into(), "array.cols=8".into(),
                format!("memory.wbuf_bytes={}", 8 * 8 * 128 * buf * scale),
                format!("memory.ibuf_bytes={}", 8 * 256 * buf * scale),
                format!("memory.obuf_bytes={}", 8 * 256 * buf * scale),
            ]);
            let (small, big) = (cfg(1), cfg(scale));
            let figures = ChipFigures::new(&small);
            let e = |h: &HwConfig| CycleModel::with_figures(h, Objective::Energy, figures.clone())
                .simulate_layer(&l).map(|s| s.energy.unwrap().total().get());
            let Ok(e0) = e(&small) else { return Ok(()) };
            let e1 = e(&big).unwrap();
            prop_assert!(e1 <= e0 * (1.0 + 1e-12), "{e1} > {e0}");
        }
    }
}
