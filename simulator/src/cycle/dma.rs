//! Exact DMA work by edge class: [`DmaSums`] (one pass over each operand's distinct tiles, in
//! channel cycles) and [`dma_cycles`] (all of a mapping's transfers, by its reload factors). Tiles
//! fall into a few edge classes per dimension (full tiles and the clipped ones at the borders), so
//! the sums run over classes, not tiles; the selections over all, first or last tiles of each loop
//! ([`Sel`], [`fold_or`], [`input_sum`], [`output_fold`]) serve these sums and the flow bounds.
//! [`dma_cycles`] must equal the timeline's transfers (a test in `model.rs` checks it).

use super::problem::{Counts, Loop, Mapping, Problem, edge_classes, input_span, reload_factor, transfers};
use super::schedule::{TransferKind, clip, input_transfer, output_transfer, weight_transfer};

/// The DRAM channel's work for one pass over each operand's distinct tiles, in cycles (latency plus
/// beats of every transfer, exactly as the schedule issues them): what a tiling costs the DMA before
/// its loop order decides how often each operand is reloaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct DmaSums {
    pub weights: u64,
    pub inputs: u64,
    /// The final store of every output tile.
    pub outputs: u64,
    /// One partial-sum store plus its reload, over every output tile.
    pub psum_round_trip: u64,
}

/// (extent, how many tiles) of a tiled dimension: at most two classes (full tiles and the edge).
#[derive(Clone, Copy, Debug)]
pub(super) struct Classes {
    items: [(u64, u64); 2],
    len: usize,
}

impl Classes {
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.items[..self.len].iter().copied()
    }
    /// One tile of extent `extent`.
    fn one(extent: u64) -> Classes {
        Classes { items: [(extent, 1), (0, 0)], len: 1 }
    }
}

fn extents(x: u64, size: u64, count: u64) -> Classes {
    let mut c = Classes { items: [(0, 0); 2], len: 0 };
    for (n, s) in edge_classes(x, size, count) {
        c.items[c.len] = (s, n);
        c.len += 1;
    }
    c
}

/// Counts of equal values, as (value, count) pairs: inline for the few classes tiles fall into
/// (no allocation on the search's hot path), spilling to the heap beyond that.
#[derive(Clone, Debug, Default)]
struct Histogram {
    inline: [(u64, u64); 8],
    len: usize,
    spill: Vec<(u64, u64)>,
}

impl Histogram {
    fn add(&mut self, value: u64, count: u64) {
        if let Some(e) = self.inline[..self.len].iter_mut().chain(self.spill.iter_mut()).find(|(v, _)| *v == value) {
            e.1 += count;
        } else if self.len < self.inline.len() {
            self.inline[self.len] = (value, count);
            self.len += 1;
        } else {
            self.spill.push((value, count));
        }
    }
    fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.inline[..self.len].iter().chain(&self.spill).copied()
    }
}

/// Which tiles of each loop a class sum runs over: all of them, the first or the last (the flow
/// bounds sum products of these, and others by inclusion-exclusion; the DMA sums run over all).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Sel {
    All,
    First,
    Last,
}

/// The indices a selection picks along one tiled dimension of `count` tiles.
fn indices(sel: Sel, count: u64) -> std::ops::Range<u64> {
    match sel {
        Sel::All => 0..count,
        Sel::First => 0..1,
        Sel::Last => count - 1..count,
    }
}

/// (extent, tiles) classes of the selected tiles of one dimension.
pub(super) fn dim(total: u64, size: u64, count: u64, sel: Sel) -> Classes {
    match sel {
        Sel::All => extents(total, size, count),
        Sel::First => Classes::one(clip(total, size, 0).1),
        Sel::Last => Classes::one(clip(total, size, count - 1).1),
    }
}

/// Input spans (rows or columns) of the selected tiles along one axis, for kernel taps (first, count).
fn spans(h: &mut Histogram, (out, size, count): (u64, u64, u64), sel: Sel, taps: (u64, u64), p: &Problem, extent: u64) {
    match sel {
        Sel::All => add_spans(h, (out, size, count), taps, p.stride, p.pad, extent),
        _ => {
            let (o0, len) = clip(out, size, indices(sel, count).start);
            h.add(input_span(o0, len, taps.0, taps.1, p.stride, p.pad, extent).1, 1);
        }
    }
}

/// Fold `f(acc, groups x output channels, kernel rows, input channels, tiles)` over the selected
/// (O, R) tiles by edge class.
pub(super) fn fold_or(p: &Problem, m: &Mapping, c: &Counts, [so, sr]: [Sel; 2], f: impl Fn(u64, u64, u64, u64, u64, u64) -> u64) -> u64 {
    let mut acc = 0;
    for (g, gn) in dim(p.groups, m.groups_per_pass, c.gb, so).iter() {
        for (oc, on) in dim(p.cog, m.oc, c.oi, so).iter() {
            for (kh, kn) in dim(p.k, m.kh, c.ki, sr).iter() {
                for (ic, cn) in dim(p.cig, m.ic, c.ci, sr).iter() {
                    acc = f(acc, g, oc, kh, ic, gn * on * kn * cn);
                }
            }
        }
    }
    acc
}

/// Input transfer cycles over the selected (P, groups of O, R) tiles, for one output-channel tile.
pub(super) fn input_sum(p: &Problem, m: &Mapping, c: &Counts, [sp, so, sr]: [Sel; 3]) -> u64 {
    let mut rows = Histogram::default();
    for ki in indices(sr, c.ki) {
        let (ky0, kh) = clip(p.k, m.kh, ki);
        spans(&mut rows, (p.out_h, m.oh, c.y), sp, (ky0, kh), p, p.in_h);
    }
    let mut cols = Histogram::default();
    spans(&mut cols, (p.out_w, m.ow, c.x), sp, (0, p.k), p, p.in_w);
    let mut chans = Histogram::default();
    for (g, gn) in dim(p.groups, m.groups_per_pass, c.gb, so).iter() {
        for (ic, cn) in dim(p.cig, m.ic, c.ci, sr).iter() {
            chans.add(g * ic, gn * cn);
        }
    }
    let mut sum = 0;
    for (b, bn) in dim(p.batch, m.b, c.b, sp).iter() {
        for (r, rn) in rows.iter() {
            for (cl, cln) in cols.iter() {
                for (ch, chn) in chans.iter() {
                    sum += bn * rn * cln * chn * input_transfer(p, (b, r, cl, ch)).cycles;
                }
            }
        }
    }
    sum
}

/// Fold over the output tiles of a selection `[P, O]`: `f(acc, transfer cycles, tiles)`.
pub(super) fn output_fold(p: &Problem, m: &Mapping, c: &Counts, [sp, so]: [Sel; 2], kind: TransferKind, init: u64, f: impl Fn(u64, u64, u64) -> u64) -> u64 {
    let mut acc = init;
    for (b, bn) in dim(p.batch, m.b, c.b, sp).iter() {
        for (oh, yn) in dim(p.out_h, m.oh, c.y, sp).iter() {
            for (ow, xn) in dim(p.out_w, m.ow, c.x, sp).iter() {
                for (g, gn) in dim(p.groups, m.groups_per_pass, c.gb, so).iter() {
                    for (oc, on) in dim(p.cog, m.oc, c.oi, so).iter() {
                        let cycles = output_transfer(p, (b, oh, ow, g * oc), kind).cycles;
                        acc = f(acc, cycles, bn * yn * xn * gn * on);
                    }
                }
            }
        }
    }
    acc
}

/// [`DmaSums`] of a tiling: sums over the edge classes of its tiles (tiles at the borders read
/// fewer halo rows and columns), not over its tiles.
pub(super) fn dma_sums(p: &Problem, m: &Mapping, c: &Counts) -> DmaSums {
    let all = Sel::All;
    let weights = fold_or(p, m, c, [all, all], |acc, g, oc, kh, ic, n| acc + n * weight_transfer(p, (g * oc, kh, ic)).cycles);
    // A partial-sum store and its reload move the same tile at the same width.
    let psum_round_trip = 2 * output_fold(p, m, c, [all, all], TransferKind::PsumStore, 0, |acc, cycles, n| acc + n * cycles);
    DmaSums { weights, inputs: input_sum(p, m, c, [all; 3]), outputs: final_store_sum(p, m, c), psum_round_trip }
}

/// The final stores' part of [`DmaSums`] (the only part that depends on the output precision).
pub(super) fn final_store_sum(p: &Problem, m: &Mapping, c: &Counts) -> u64 {
    output_fold(p, m, c, [Sel::All; 2], TransferKind::Outputs, 0, |acc, cycles, n| acc + n * cycles)
}

/// Add the input span (rows or columns) every tile along one axis reads to `h`: `tiles` is (outputs,
/// tile size, tiles), `taps` the kernel taps (first, count) the tiles use. Tiles away from the
/// borders all read the unclipped span, so only the clipped ones at either end (a prefix and a
/// suffix: the span's ends grow with the tile index) are computed one by one.
fn add_spans(h: &mut Histogram, (out, size, count): (u64, u64, u64), (t0, taps): (u64, u64), stride: u64, pad: u64, extent: u64) {
    let clipped = |i: u64| {
        let (o0, len) = clip(out, size, i);
        let lo = (o0 * stride + t0) as i64 - pad as i64;
        let hi = ((o0 + len - 1) * stride + t0 + taps - 1) as i64 - pad as i64;
        len != size || lo < 0 || hi > extent as i64 - 1
    };
    let span = |i: u64| {
        let (o0, len) = clip(out, size, i);
        input_span(o0, len, t0, taps, stride, pad, extent).1
    };
    let mut lo = 0;
    while lo < count && clipped(lo) {
        h.add(span(lo), 1);
        lo += 1;
    }
    let mut hi = count;
    while hi > lo && clipped(hi - 1) {
        h.add(span(hi - 1), 1);
        hi -= 1;
    }
    if hi > lo {
        h.add((size - 1) * stride + taps, hi - lo);
    }
}

/// Cycles of every DMA transfer of a mapping: the channel is serial and the layer ends with its
/// last store, so no schedule of the mapping ends earlier (a bound too when `sums` are bounds). Exact where the reload counts are (every
/// tiling, except a grouped layer with several output-channel tiles per group, whose inputs are
/// then counted once per distinct tile, keeping this a lower bound).
pub(super) fn dma_cycles(p: &Problem, m: &Mapping, c: &Counts, sums: &DmaSums) -> u64 {
    let w_f = reload_factor(&m.order, c, &[Loop::O, Loop::R]);
    let a_f = if p.groups > 1 {
        if c.oi > 1 { 1 } else { reload_factor(&m.order, c, &[Loop::P, Loop::R, Loop::O]) }
    } else {
        reload_factor(&m.order, c, &[Loop::P, Loop::R])
    };
    // Each output tile is visited `visits` times: one final store, and a partial-sum store and
    // reload for every other visit.
    let visits = transfers(&m.order, c, &[Loop::P, Loop::O]) / (c.p() * c.o());
    w_f * sums.weights + a_f * sums.inputs + sums.outputs + (visits - 1) * sums.psum_round_trip
}
