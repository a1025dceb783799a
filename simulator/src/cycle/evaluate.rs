//! Exact evaluation of one mapping (its timeline, counters and energy) and the objective's keys
//! and bounds the search ranks mappings by.
//!
//! **Energy** from counted events ([`ChipFigures::event_energy`]): SRAM word accesses per buffer at CACTI's
//! per-access energy for that bank, core energy per *active* BitBrick-cycle
//! (a product uses (a_lane/brick)(w_lane/brick) bricks per temporal step, so
//! lower precision costs less and idle bricks cost only leakage), leakage of
//! core and buffers over the layer's cycles, and DRAM energy per bit on the bus.

use super::bounds::{BaseBound, lower_bound_cycles_with};
use super::dma::{DmaSums, dma_cycles};
use super::problem::{Counts, Mapping, PSUM_BITS, Problem, busy_total};
use super::schedule::{last_store_cycles, schedule};
use super::timeline::{Cutoff, Timeline, timeline_until};
use crate::config::HwConfig;
use crate::cost::Objective;
use crate::energy::ChipFigures;
use crate::stats::{Counters, EnergyBreakdown, StallBreakdown};
use crate::units::{Bits, Cycles};

/// Everything the engine measures for one mapping.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    pub cycles: u64,
    pub compute_cycles: u64,
    pub stalls: StallBreakdown,
    pub counters: Counters,
    pub energy: Option<EnergyBreakdown>,
    pub tiles: usize,
}

/// Largest layer the engine accepts, in tiles of one mapping (beyond it the mapping is skipped).
const MAX_TILES: u64 = 1 << 22;

/// What a mapping's exact evaluation and the search's bounds need of the model: the hardware,
/// its energy figures and the objective (the model lends them, [`super::CycleModel`]).
#[derive(Clone, Copy)]
pub(super) struct Evaluator<'a> {
    pub(super) hw: &'a HwConfig,
    pub(super) chip: &'a ChipFigures,
    pub(super) objective: Objective,
}

impl Evaluator<'_> {
    /// Evaluate one mapping exactly.
    pub fn evaluate(&self, p: &Problem, m: &Mapping) -> Option<Evaluation> {
        self.evaluate_until(p, m, None, 0)
    }

    /// Evaluate one mapping exactly, or give up once it provably takes more than `max_cycles`.
    /// `dma_total` is [`dma_cycles`] of the mapping when known (0 otherwise).
    pub fn evaluate_until(&self, p: &Problem, m: &Mapping, max_cycles: Option<u64>, dma_total: u64) -> Option<Evaluation> {
        let c = Counts::of(p, m);
        if c.p() * c.o() * c.r() > MAX_TILES {
            return None;
        }
        let cutoff = max_cycles.map(|max_cycles| Cutoff { max_cycles, total_busy: busy_total(p, m, &c), last_store: last_store_cycles(p, m, &c), dma_total });
        let tl = timeline_until(p, &mut schedule(p, m), false, cutoff)?;
        Some(self.measure(p, &tl))
    }

    /// Counters and energy of a timeline.
    pub fn measure(&self, p: &Problem, tl: &Timeline) -> Evaluation {
        let (rd, wr, dram_rd, dram_wr) = (tl.totals.reads, tl.totals.writes, tl.totals.dram_read, tl.totals.dram_write);
        let wb = p.word_bits;
        let counters = Counters {
            wbuf_read: Bits(rd[0] * wb),
            wbuf_write: Bits(wr[0] * wb),
            ibuf_read: Bits(rd[1] * wb),
            ibuf_write: Bits(wr[1] * wb),
            obuf_read: Bits(rd[2] * PSUM_BITS),
            obuf_write: Bits(wr[2] * PSUM_BITS),
            dram_read: Bits(dram_rd),
            dram_write: Bits(dram_wr),
        };
        let energy = self.energy(p, &counters, tl.totals.end);
        Evaluation {
            cycles: tl.totals.end,
            compute_cycles: tl.totals.compute_cycles,
            stalls: StallBreakdown { dram_read: Cycles(tl.totals.stall_read), dram_write: Cycles(tl.totals.stall_write), fill_drain: Cycles(tl.totals.fill_drain) },
            counters,
            energy,
            tiles: tl.tiles,
        }
    }

    /// Energy of counted events ([`ChipFigures::event_energy`]): every product of the layer
    /// keeps its bricks active for each temporal step.
    fn energy(&self, p: &Problem, c: &Counters, cycles: u64) -> Option<EnergyBreakdown> {
        let active_brick_cycles = p.macs() * p.plan.bricks_per_product as u64 * p.steps();
        self.chip.event_energy(self.hw, c, active_brick_cycles, cycles)
    }

    /// A lower bound on (cycles, energy) of a mapping, for the search, from its tiling's bound.
    pub(super) fn lower_bound(&self, p: &Problem, m: &Mapping, base: &BaseBound, sums: &DmaSums) -> (f64, f64) {
        self.key_bound(p, lower_bound_cycles_with(p, m, base).max(dma_cycles(p, m, &base.counts, sums)))
    }

    /// The objective key's bound at a cycles bound.
    pub(super) fn key_bound(&self, p: &Problem, cycles: u64) -> (f64, f64) {
        // Under the cycles objective the search only compares the primary bound.
        let energy = if self.objective == Objective::Cycles { 0.0 } else { self.energy_floor(p, cycles) };
        self.objective.key(cycles as f64, energy)
    }

    /// Energy no mapping can go below at `cycles`: core bricks, leakage, and each tensor once through DRAM.
    fn energy_floor(&self, p: &Problem, cycles: u64) -> f64 {
        let tensors = p.out_c * p.cig * p.k * p.k * p.w_bits
            + p.touched_input_bits
            + p.batch * p.out_h * p.out_w * p.out_c * p.out_bits;
        let c = Counters { dram_read: Bits(tensors), ..Counters::default() };
        self.energy(p, &c, cycles).map_or(0.0, |e| e.total().get())
    }
}
