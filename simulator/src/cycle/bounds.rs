//! Lower bounds on a mapping's cycles that the search ranks and prunes by: the order-independent
//! part of a tiling ([`BaseBound`]), a family's bound ([`Family::bound`]), the array and DMA paths
//! of one loop order (`lower_bound_cycles`, used by the tests) and the exact first loads and last store around the
//! streaming (`edge_bound`, likewise). Each is at most the cycles of every mapping it covers (property and
//! unit tests in `model.rs`); they rely on the DRAM model's lower-bound contract
//! ([`crate::memory::DramModel`]).

use super::problem::{Counts, Loop, Mapping, PSUM_BITS, Problem, busy_total, input_span, reload_factor, transfers};
#[cfg(test)]
use super::schedule::{last_store_cycles, schedule};
use super::tiling::Family;
use crate::memory::DramModel;

/// Lower bound on a mapping's cycles. Two paths bound the layer: the array (first tile's loads, all
/// streaming, the drain, the last store) and the DMA (every transfer's latency plus every tensor at
/// its reload factor, without halos or burst rounding).
#[cfg(test)] // Used by the tests only (the crate does not export it).
pub(super) fn lower_bound_cycles(p: &Problem, m: &Mapping) -> u64 {
    lower_bound_cycles_with(p, m, &BaseBound::of(p, m))
}

/// Distinct weight, input and output tiles of a tiling with `spatial` batch-and-pixel tiles (inputs
/// of a grouped layer also differ per group block).
pub(super) fn distinct_tiles(p: &Problem, c: &Counts, spatial: u64) -> u64 {
    let input_tiles = spatial * c.r() * if p.groups > 1 { c.gb } else { 1 };
    c.o() * c.r() + input_tiles + spatial * c.o()
}

/// The DMA path's floor when each of `tiles` transfers pays the channel's latency and the weights,
/// the touched inputs and the outputs each cross the bus once, at one beat per bus width: no loop
/// order loads an operand less than once.
pub(super) fn dma_floor(p: &Problem, tiles: u64) -> u64 {
    let bits = p.out_c * p.cig * p.k * p.k * p.w_bits + p.touched_input_bits + p.batch * p.out_h * p.out_w * p.out_c * p.out_bits;
    tiles * p.dram.latency() + bits.div_ceil(p.dram.beat_bits())
}

/// The order-independent part of a tiling's bound: computed once for all its loop orders.
#[derive(Clone, Copy, Debug)]
pub(super) struct BaseBound {
    pub counts: Counts,
    /// Streaming cycles of all tiles.
    pub busy: u64,
    /// The array path: the first tile's loads, all streaming, the shortest drain, the last store.
    /// No loop order changes it, so it bounds every order of the tiling.
    pub array: u64,
    /// Elements of the last output tile (its store closes the array path).
    pub last_out_elements: u64,
    /// Distinct weight, input and output tiles ([`distinct_tiles`]): each is at least one transfer.
    pub distinct_tiles: u64,
}

impl BaseBound {
    pub fn of(p: &Problem, m: &Mapping) -> BaseBound {
        let counts = Counts::of(p, m);
        let busy = busy_total(p, m, &counts);
        let bw = p.dram.beat_bits();
        let first_w = m.groups_per_pass.min(p.groups) * m.oc * m.kh * p.k * m.ic * p.w_bits;
        let (_, rows) = input_span(0, m.oh, 0, m.kh, p.stride, p.pad, p.in_h);
        let (_, cols) = input_span(0, m.ow, 0, p.k, p.stride, p.pad, p.in_w);
        let first_a = m.b * rows * cols * m.groups_per_pass.min(p.groups) * m.ic * p.a_bits;
        let edge = |x: u64, size: u64| x - size * (x.div_ceil(size) - 1);
        let last_out_elements = edge(p.batch, m.b) * edge(p.out_h, m.oh) * edge(p.out_w, m.ow) * edge(p.cog, m.oc) * edge(p.groups, m.groups_per_pass);
        let head = 3 * p.dram.latency() + first_w.div_ceil(bw) + first_a.div_ceil(bw) + busy + p.n + 1;
        let distinct_tiles = distinct_tiles(p, &counts, counts.p());
        BaseBound { counts, busy, array: head + (last_out_elements * p.out_bits).div_ceil(bw), last_out_elements, distinct_tiles }
    }

    /// A floor on the DMA's cycles under any loop order ([`dma_floor`]).
    pub fn dma_floor(&self, p: &Problem) -> u64 {
        dma_floor(p, self.distinct_tiles)
    }

    /// The array path without its last store (`p` is the problem the bound was made for).
    pub fn head(&self, p: &Problem) -> u64 {
        self.array - (self.last_out_elements * p.out_bits).div_ceil(p.dram.beat_bits())
    }

    /// The same tiling's bound for a problem that differs only in its output bits.
    pub fn with_out_bits(self, from: &Problem, to: &Problem) -> BaseBound {
        BaseBound { array: self.head(from) + (self.last_out_elements * to.out_bits).div_ceil(to.dram.beat_bits()), ..self }
    }
}

/// `lower_bound_cycles` for one loop order, with the tiling's order-independent part given.
pub(super) fn lower_bound_cycles_with(p: &Problem, m: &Mapping, base: &BaseBound) -> u64 {
    let c = base.counts;
    let bw = p.dram.beat_bits();
    let lat = p.dram.latency();
    let w_bits = p.out_c * p.cig * p.k * p.k * p.w_bits;
    let a_bits = p.touched_input_bits;
    let o_bits = p.batch * p.out_h * p.out_w * p.out_c * p.out_bits;
    // Grouped layers' group blocks hold different input channels: inputs depend on O too (an
    // undercount when a group has several output-channel tiles, which keeps this a lower bound).
    let a_deps: &[Loop] = if p.groups > 1 { &[Loop::P, Loop::R, Loop::O] } else { &[Loop::P, Loop::R] };
    let w_f = reload_factor(&m.order, &c, &[Loop::O, Loop::R]);
    let a_f = reload_factor(&m.order, &c, a_deps);
    let mut traffic = w_bits * w_f + a_bits * a_f + o_bits;
    let stores = transfers(&m.order, &c, &[Loop::P, Loop::O]);
    let psum_loads = stores - c.p() * c.o();
    if psum_loads > 0 {
        let psum = p.batch * p.out_h * p.out_w * p.out_c * PSUM_BITS;
        traffic += 2 * psum * (c.r() - 1);
    }
    let n_transfers =
        transfers(&m.order, &c, &[Loop::O, Loop::R]) + transfers(&m.order, &c, a_deps) + stores + psum_loads;
    let dma = n_transfers * lat + traffic.div_ceil(bw);
    base.array.max(dma)
}

/// A lower bound on a mapping's cycles: the first tile's loads and the last tile's store, exactly,
/// around all the streaming and the shortest drain.
#[cfg(test)] // Used by the tests only (the crate does not export it).
pub(super) fn edge_bound(p: &Problem, m: &Mapping) -> u64 {
    let c = Counts::of(p, m);
    let mut sched = schedule(p, m);
    let Some(first) = sched.next() else { return 0 };
    let first_loads: u64 = first.loads.iter().map(|x| x.cycles).sum();
    first_loads + busy_total(p, m, &c) + p.n + 1 + last_store_cycles(p, m, &c)
}

impl Family {
    /// A lower bound on the cycles of every candidate of the family: the array path with the
    /// smallest first input tile and no last store, and the DMA floor with one spatial tile
    /// (both at most [`BaseBound::array`] and [`BaseBound::dma_floor`] of each of its tilings).
    pub fn bound(&self, p: &Problem) -> u64 {
        let base = BaseBound::of(p, &self.tiling(1, 1, 1));
        base.head(p).max(dma_floor(p, distinct_tiles(p, &base.counts, 1)))
    }
}
