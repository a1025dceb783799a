//! A mapping's tiles in loop order, with what each one does, and the DMA transfers they need.
//!
//! [`schedule`] lists a mapping's tiles in loop order with
//! what each one does: its windows on the array, the DMA loads it needs
//! (operands whose tile changed; partial sums to resume), and the store that
//! follows it (final outputs at the consumer's precision when its output
//! tile is complete, 32-bit partial sums when the tile is left unfinished).
//!
//!
//! Transfers are priced by the problem's DRAM model ([`crate::memory::DramModel`]): each is a
//! pure function of the tile's segments, so equal tiles cost the same wherever they occur.

use super::problem::{Counts, Loop, Mapping, PSUM_BITS, Problem, input_span, reduction, weight_reads_per_pixel, window_cycles};
use crate::memory::{DramModel, Segments, box_segments};
use serde::Serialize;

/// What a DMA transfer carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum TransferKind {
    Weights,
    Inputs,
    PsumLoad,
    PsumStore,
    Outputs,
}

impl TransferKind {
    pub fn is_load(self) -> bool {
        matches!(self, TransferKind::Weights | TransferKind::Inputs | TransferKind::PsumLoad)
    }
    pub fn label(self) -> &'static str {
        match self {
            TransferKind::Weights => "load weights",
            TransferKind::Inputs => "load inputs",
            TransferKind::PsumLoad => "load partial sums",
            TransferKind::PsumStore => "store partial sums",
            TransferKind::Outputs => "store outputs",
        }
    }
}

/// One DMA transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Transfer {
    pub kind: TransferKind,
    /// Bits on the DRAM bus (segments rounded to bursts).
    pub bus_bits: u64,
    /// Elements moved.
    pub elements: u64,
    /// Cycles on the channel: latency + beats.
    pub cycles: u64,
    /// Buffer words written (loads) or read (stores).
    pub sram_words: u64,
}

/// Which tile of each dimension, and the tile's actual (edge-clipped) extents.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TileGeom {
    pub b0: u64,
    pub b: u64,
    pub y0: u64,
    pub oh: u64,
    pub x0: u64,
    pub ow: u64,
    /// First group and groups in the tile.
    pub g0: u64,
    pub g: u64,
    /// Output channels of each group: first (within the group) and count.
    pub oc0: u64,
    pub oc: u64,
    pub ky0: u64,
    pub kh: u64,
    /// Input channels of each group: first (within the group) and count.
    pub c0: u64,
    pub ic: u64,
    /// Flattened reduction-tile index (0 = first).
    pub r: u64,
}

impl TileGeom {
    pub fn pixels(&self) -> u64 {
        self.b * self.oh * self.ow
    }
    /// Output channels of the tile (all its groups), contiguous from `oc_start`.
    pub fn out_channels(&self) -> u64 {
        self.g * self.oc
    }
}

/// A tile's DMA loads (weights, inputs, partial sums), in issue order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Loads {
    items: [Option<Transfer>; 3],
}

impl Loads {
    /// Add a transfer (one that moves nothing, e.g. an input tile entirely in the padding, is no transfer).
    fn push(&mut self, t: Transfer) {
        if t.bus_bits == 0 {
            return;
        }
        if let Some(slot) = self.items.iter_mut().find(|x| x.is_none()) {
            *slot = Some(t);
        }
    }
    pub fn iter(&self) -> impl Iterator<Item = &Transfer> {
        self.items.iter().flatten()
    }
}

/// One tile of the schedule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct TileStep {
    pub geom: TileGeom,
    /// Reduction elements of one window.
    pub reduction: u64,
    /// Column groups (windows per pixel) and chunks per window.
    pub colgroups: u64,
    pub t: u64,
    /// Cycles the tile's windows take at the array's input: windows x T.
    pub busy: u64,
    /// Active columns of the last column group.
    pub last_cols: u64,
    pub loads: Loads,
    pub store: Option<Transfer>,
    /// The tile starts a new output tile (it takes the other output half).
    pub new_out: bool,
    /// Partial sums already exist for its outputs (results are added, read-modify-write).
    pub accumulate: bool,
    /// Which half of the WBUF, IBUF and OBUF its data sits in.
    pub halves: [u8; 3],
    /// Array-side buffer accesses, in words: IBUF reads, WBUF reads, OBUF reads and writes.
    pub ibuf_reads: u64,
    pub wbuf_reads: u64,
    pub obuf_reads: u64,
    pub obuf_writes: u64,
}

/// Tile index along each tiled dimension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Idx {
    bi: u64,
    yi: u64,
    xi: u64,
    gb: u64,
    oi: u64,
    ki: u64,
    ci: u64,
}

impl Idx {
    /// The t-th tile in loop order.
    fn nth(c: &Counts, order: &[Loop; 3], t: u64) -> Idx {
        let n1 = c.of_loop(order[1]);
        let n2 = c.of_loop(order[2]);
        let mut idx = Idx { bi: 0, yi: 0, xi: 0, gb: 0, oi: 0, ki: 0, ci: 0 };
        for (l, v) in order.iter().zip([t / (n1 * n2), (t / n2) % n1, t % n2]) {
            idx.set(c, *l, v);
        }
        idx
    }

    /// Set the indices of one loop from its flat position along that loop.
    fn set(&mut self, c: &Counts, l: Loop, v: u64) {
        match l {
            Loop::P => {
                self.bi = v / (c.y * c.x);
                self.yi = (v / c.x) % c.y;
                self.xi = v % c.x;
            }
            Loop::O => {
                self.gb = v / c.oi;
                self.oi = v % c.oi;
            }
            Loop::R => {
                self.ki = v / c.ci;
                self.ci = v % c.ci;
            }
        }
    }

    /// Step one loop's indices to its next tile; false when the loop wraps to its first tile.
    fn bump(&mut self, c: &Counts, l: Loop) -> bool {
        fn step(i: &mut u64, n: u64) -> bool {
            *i += 1;
            if *i == n {
                *i = 0;
                false
            } else {
                true
            }
        }
        match l {
            Loop::P => step(&mut self.xi, c.x) || step(&mut self.yi, c.y) || step(&mut self.bi, c.b),
            Loop::O => step(&mut self.oi, c.oi) || step(&mut self.gb, c.gb),
            Loop::R => step(&mut self.ci, c.ci) || step(&mut self.ki, c.ki),
        }
    }

    fn w_key(&self) -> (u64, u64, u64, u64) {
        (self.gb, self.oi, self.ki, self.ci)
    }
    fn a_key(&self, grouped: bool) -> (u64, u64, u64, u64, u64, u64) {
        (self.bi, self.yi, self.xi, self.ki, self.ci, if grouped { self.gb } else { 0 })
    }
    fn o_key(&self) -> (u64, u64, u64, u64, u64) {
        (self.bi, self.yi, self.xi, self.gb, self.oi)
    }
}

pub(super) fn clip(total: u64, size: u64, i: u64) -> (u64, u64) {
    let start = i * size;
    (start, size.min(total - start))
}

/// A tile's geometry.
fn geom(p: &Problem, m: &Mapping, c: &Counts, i: &Idx) -> TileGeom {
    let (b0, b) = clip(p.batch, m.b, i.bi);
    let (y0, oh) = clip(p.out_h, m.oh, i.yi);
    let (x0, ow) = clip(p.out_w, m.ow, i.xi);
    let (g0, g) = clip(p.groups, m.groups_per_pass, i.gb);
    let (oc0, oc) = clip(p.cog, m.oc, i.oi);
    let (ky0, kh) = clip(p.k, m.kh, i.ki);
    let (c0, ic) = clip(p.cig, m.ic, i.ci);
    TileGeom { b0, b, y0, oh, x0, ow, g0, g, oc0, oc, ky0, kh, c0, ic, r: i.ki * c.ci + i.ci }
}

/// Index of the first output channel of a tile (tensor order).
pub(crate) fn oc_start(p: &Problem, g: &TileGeom) -> u64 {
    g.g0 * p.cog + g.oc0
}

/// Index of the first input channel of a tile (tensor order).
pub(crate) fn ic_start(p: &Problem, g: &TileGeom) -> u64 {
    g.g0 * p.cig + g.c0
}

fn transfer(p: &Problem, kind: TransferKind, seg: Segments, elements: u64, lane_bits: u64, word_bits: u64) -> Transfer {
    let bus_bits = p.dram.bus_bits(&seg);
    Transfer { kind, bus_bits, elements, cycles: p.dram.transfer_cycles(bus_bits), sram_words: (elements * lane_bits).div_ceil(word_bits) }
}

/// Input tile of (batch, input rows, input columns, channels).
pub(super) fn input_transfer(p: &Problem, (b, rows, cols, chans): (u64, u64, u64, u64)) -> Transfer {
    let seg = box_segments(&[p.batch, p.in_h, p.in_w, p.in_c], &[b, rows, cols, chans], p.a_bits);
    transfer(p, TransferKind::Inputs, seg, b * rows * cols * chans, p.plan.a_lane as u64, p.word_bits)
}

/// Weight tile of (output channels, kernel rows, input channels).
pub(super) fn weight_transfer(p: &Problem, (ocs, kh, ic): (u64, u64, u64)) -> Transfer {
    let seg = box_segments(&[p.out_c, p.k, p.k, p.cig], &[ocs, kh, p.k, ic], p.w_bits);
    transfer(p, TransferKind::Weights, seg, ocs * kh * p.k * ic, p.plan.w_lane as u64, p.word_bits)
}

/// Output tile of (batch, rows, columns, output channels).
pub(super) fn output_transfer(p: &Problem, (b, oh, ow, ocs): (u64, u64, u64, u64), kind: TransferKind) -> Transfer {
    let bits = if kind == TransferKind::Outputs { p.out_bits } else { PSUM_BITS };
    let seg = box_segments(&[p.batch, p.out_h, p.out_w, p.out_c], &[b, oh, ow, ocs], bits);
    transfer(p, kind, seg, b * oh * ow * ocs, PSUM_BITS, PSUM_BITS)
}

/// The tiles of a mapping in loop order, with what each one does.
pub struct Schedule<'a> {
    p: &'a Problem,
    m: &'a Mapping,
    c: Counts,
    t: u64,
    n: u64,
    halves: [u8; 3],
    prev: Option<Idx>,
    cur: Idx,
    /// Caches of the per-tile terms (tiles fall into a few edge classes, so a few entries hold them).
    compute_cache: Memo<(u64, u64, u64, u64), ComputeTerms>,
    input_cache: Memo<(u64, u64, u64, u64), Transfer>,
    weight_cache: Memo<(u64, u64, u64), Transfer>,
    output_cache: [Memo<(u64, u64, u64, u64), Transfer>; 3],
}

/// A small memo of recent (key, value) pairs, replaced round-robin: enough for the few edge classes a
/// schedule's tiles fall into (interior tiles, and the clipped ones at either end of each axis).
pub(super) struct Memo<K, V> {
    entries: [Option<(K, V)>; MEMO_ENTRIES],
    next: usize,
}

const MEMO_ENTRIES: usize = 8;

impl<K: PartialEq + Copy, V: Copy> Memo<K, V> {
    pub(crate) fn new() -> Self {
        Memo { entries: [None; MEMO_ENTRIES], next: 0 }
    }

    pub(crate) fn get_or(&mut self, key: K, make: impl FnOnce() -> V) -> V {
        if let Some((_, v)) = self.entries.iter().flatten().find(|(k, _)| *k == key) {
            return *v;
        }
        let v = make();
        self.entries[self.next] = Some((key, v));
        self.next = (self.next + 1) % MEMO_ENTRIES;
        v
    }
}

/// The tile schedule of a mapping (an iterator; `collect` it to keep it).
pub fn schedule<'a>(p: &'a Problem, m: &'a Mapping) -> Schedule<'a> {
    let c = Counts::of(p, m);
    let cur = Idx::nth(&c, &m.order, 0);
    Schedule {
        p,
        m,
        c,
        t: 0,
        n: c.p() * c.o() * c.r(),
        halves: [1, 1, 1],
        prev: None,
        cur,
        compute_cache: Memo::new(),
        input_cache: Memo::new(),
        weight_cache: Memo::new(),
        output_cache: [Memo::new(), Memo::new(), Memo::new()],
    }
}

impl Schedule<'_> {
    /// The tile after `cur` in loop order (odometer step, innermost loop first; no divisions).
    fn advance(&mut self) -> Idx {
        let mut idx = self.cur;
        for l in self.m.order.iter().rev() {
            if idx.bump(&self.c, *l) {
                break;
            }
        }
        idx
    }

    fn inputs(&mut self, g: &TileGeom) -> Transfer {
        let p = self.p;
        let (_, rows) = input_span(g.y0, g.oh, g.ky0, g.kh, p.stride, p.pad, p.in_h);
        let (_, cols) = input_span(g.x0, g.ow, 0, p.k, p.stride, p.pad, p.in_w);
        let key = (g.b, rows, cols, g.g * g.ic);
        self.input_cache.get_or(key, || input_transfer(p, key))
    }

    fn weights(&mut self, g: &TileGeom) -> Transfer {
        let key = (g.out_channels(), g.kh, g.ic);
        let p = self.p;
        self.weight_cache.get_or(key, || weight_transfer(p, key))
    }

    fn outputs(&mut self, g: &TileGeom, kind: TransferKind) -> Transfer {
        let slot = match kind {
            TransferKind::Outputs => 0,
            TransferKind::PsumStore => 1,
            _ => 2,
        };
        let key = (g.b, g.oh, g.ow, g.out_channels());
        let p = self.p;
        self.output_cache[slot].get_or(key, || output_transfer(p, key, kind))
    }

    /// A tile's per-pixel compute terms (they depend on its channel and kernel extents only).
    fn compute_terms(&mut self, g: &TileGeom) -> ComputeTerms {
        let key = (g.g, g.oc, g.ic, g.kh);
        let p = self.p;
        self.compute_cache.get_or(key, || {
            let reduction = reduction(p, g.g, g.ic, g.kh);
            ComputeTerms {
                reduction,
                chunks: window_cycles(p, reduction),
                wbuf_reads: weight_reads_per_pixel(p, g.g, g.oc, g.ic, g.kh),
                colgroups: g.out_channels().div_ceil(p.m),
                ibuf_reads: reduction.div_ceil(p.lanes()) * p.steps(),
            }
        })
    }
}

/// Per-pixel compute terms of a tile.
#[derive(Clone, Copy, Debug)]
struct ComputeTerms {
    /// Reduction elements of one window.
    reduction: u64,
    /// Chunks (cycles) of one window.
    chunks: u64,
    /// WBUF words read per pixel (all column groups).
    wbuf_reads: u64,
    /// Column groups (windows per pixel).
    colgroups: u64,
    /// IBUF words read per window.
    ibuf_reads: u64,
}

impl Iterator for Schedule<'_> {
    type Item = TileStep;

    fn next(&mut self) -> Option<TileStep> {
        let mut s = TileStep::default();
        self.fill(&mut s).then_some(s)
    }
}

/// A source of tiles that writes each one in place (tiles are large; the timeline's hot loop
/// should not copy them).
pub(super) trait TileSource {
    /// Write the next tile into `out`; false when there is none.
    fn fill(&mut self, out: &mut TileStep) -> bool;
}

/// Any iterator of tiles as a [`TileSource`].
pub(super) struct Tiles<I>(pub I);

impl<I: Iterator<Item = TileStep>> TileSource for Tiles<I> {
    fn fill(&mut self, out: &mut TileStep) -> bool {
        self.0.next().map(|s| *out = s).is_some()
    }
}

impl TileSource for Schedule<'_> {
    fn fill(&mut self, out: &mut TileStep) -> bool {
        if self.t >= self.n {
            return false;
        }
        let (p, t) = (self.p, self.t);
        let grouped = p.groups > 1;
        let i = self.cur;
        let prev = self.prev;
        let next = (t + 1 < self.n).then(|| self.advance());
        self.t += 1;
        self.prev = Some(i);
        if let Some(nx) = next {
            self.cur = nx;
        }
        let c = &self.c;
        let g = geom(p, self.m, c, &i);
        let n_r = c.r();
        let new_out = prev.is_none_or(|q| q.o_key() != i.o_key());
        let mut loads = Loads::default();
        if prev.is_none_or(|q| q.w_key() != i.w_key()) {
            self.halves[0] ^= 1;
            loads.push(self.weights(&g));
        }
        if prev.is_none_or(|q| q.a_key(grouped) != i.a_key(grouped)) {
            self.halves[1] ^= 1;
            loads.push(self.inputs(&g));
        }
        if new_out {
            self.halves[2] ^= 1;
            if g.r > 0 {
                loads.push(self.outputs(&g, TransferKind::PsumLoad));
            }
        }
        let leaves = next.is_none_or(|q| q.o_key() != i.o_key());
        let store = leaves.then(|| {
            let kind = if g.r + 1 == n_r { TransferKind::Outputs } else { TransferKind::PsumStore };
            self.outputs(&g, kind)
        });
        let ct = self.compute_terms(&g);
        let colgroups = ct.colgroups;
        let pixels = g.pixels();
        let accumulate = g.r > 0;
        let results = pixels * g.out_channels();
        *out = TileStep {
            geom: g,
            reduction: ct.reduction,
            colgroups,
            t: ct.chunks,
            busy: pixels * colgroups * ct.chunks,
            last_cols: g.out_channels() - (colgroups - 1) * p.m,
            loads,
            store,
            new_out,
            accumulate,
            halves: self.halves,
            ibuf_reads: pixels * colgroups * ct.ibuf_reads,
            wbuf_reads: pixels * ct.wbuf_reads,
            obuf_reads: if accumulate { results } else { 0 },
            obuf_writes: results,
        };
        true
    }
}

/// The last tile's geometry (every loop at its last tile, whatever the order).
pub(super) fn last_tile(p: &Problem, m: &Mapping, c: &Counts) -> TileGeom {
    geom(p, m, c, &Idx::nth(c, &m.order, c.p() * c.o() * c.r() - 1))
}

/// Cycles of the store of the last tile's outputs (the last tile always completes its output tile).
pub(super) fn last_store_cycles(p: &Problem, m: &Mapping, c: &Counts) -> u64 {
    let g = last_tile(p, m, c);
    output_transfer(p, (g.b, g.oh, g.ow, g.out_channels()), TransferKind::Outputs).cycles
}
