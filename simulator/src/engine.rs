//! The cycle-level engine (`--model cycle`): a layer's tile schedule on the
//! array and the memory system, as a timeline in cycles.
//!
//! **Schedule.** [`schedule`] lists a mapping's tiles in loop order with
//! what each one does: its windows on the array, the DMA loads it needs
//! (operands whose tile changed; partial sums to resume), and the store that
//! follows it (final outputs at the consumer's precision when its output
//! tile is complete, 32-bit partial sums when the tile is left unfinished).
//!
//! **Timeline** ([`timeline`]), ping-pong buffering throughout:
//! * the first tile's loads run first; tile t starts streaming when the array
//!   has taken tile t-1's last chunk, its loads are done, and — when it starts
//!   a new output tile — the output half it writes has been stored;
//! * while tile t streams, the DMA (one channel, transfers in order) loads
//!   tile t+1's operands, each into the half its previous tile used, once that
//!   tile's chunks have left the feeder (`release` = end of streaming + N + M - 2,
//!   the last weight read), then stores the output tile that tile t-1 completed,
//!   once its last result is in the output buffer (`ready` = end of streaming
//!   + N + 1 + the last active column);
//! * the layer ends when its last store ends.
//!
//! Every idle cycle of the array is attributed: waiting on a DRAM read (a
//! load), on a DRAM write (a store that frees an output half), or the
//! pipeline's drain after the last chunk. A full buffer shows up as the
//! store or load that frees it.
//!
//! **Energy** from counted events: SRAM word accesses per buffer at CACTI's
//! per-access energy for that bank, core energy per *active* BitBrick-cycle
//! (a product uses (a_lane/brick)(w_lane/brick) bricks per temporal step, so
//! lower precision costs less and idle bricks cost only leakage), leakage of
//! core and buffers over the layer's cycles, and DRAM energy per bit on the bus.

use crate::array::drain_cycles;
use crate::brick::LanePlan;
use crate::config::HwConfig;
use crate::energy::ChipFigures;
use crate::flow::FlowSums;
use crate::layer::{Layer, LayerKind};
use crate::mapping::{self, Counts, Loop, Mapping, Objective, PSUM_BITS, Problem, Score};
use crate::memory::{DramChannel, Segments, box_segments};
use crate::model::{CostModel, SimError};
use crate::stats::{Counters, EnergyBreakdown, LayerStats, StallBreakdown};
use crate::units::{Bits, Cycles, NanoJoules};
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

pub(crate) fn clip(total: u64, size: u64, i: u64) -> (u64, u64) {
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
pub fn oc_start(p: &Problem, g: &TileGeom) -> u64 {
    g.g0 * p.cog + g.oc0
}

/// Index of the first input channel of a tile (tensor order).
pub fn ic_start(p: &Problem, g: &TileGeom) -> u64 {
    g.g0 * p.cig + g.c0
}

fn transfer(p: &Problem, kind: TransferKind, seg: Segments, elements: u64, lane_bits: u64, word_bits: u64) -> Transfer {
    let bus_bits = p.dram.bus_bits(&seg);
    Transfer { kind, bus_bits, elements, cycles: p.dram.transfer_cycles(bus_bits), sram_words: (elements * lane_bits).div_ceil(word_bits) }
}

/// Input tile of (batch, input rows, input columns, channels).
pub(crate) fn input_transfer(p: &Problem, (b, rows, cols, chans): (u64, u64, u64, u64)) -> Transfer {
    let seg = box_segments(&[p.batch, p.in_h, p.in_w, p.in_c], &[b, rows, cols, chans], p.a_bits);
    transfer(p, TransferKind::Inputs, seg, b * rows * cols * chans, p.plan.a_lane as u64, p.word_bits)
}

/// Weight tile of (output channels, kernel rows, input channels).
pub(crate) fn weight_transfer(p: &Problem, (ocs, kh, ic): (u64, u64, u64)) -> Transfer {
    let seg = box_segments(&[p.out_c, p.k, p.k, p.cig], &[ocs, kh, p.k, ic], p.w_bits);
    transfer(p, TransferKind::Weights, seg, ocs * kh * p.k * ic, p.plan.w_lane as u64, p.word_bits)
}

/// Output tile of (batch, rows, columns, output channels).
pub(crate) fn output_transfer(p: &Problem, (b, oh, ow, ocs): (u64, u64, u64, u64), kind: TransferKind) -> Transfer {
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
pub(crate) struct Memo<K, V> {
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
        let (_, rows) = mapping::input_span(g.y0, g.oh, g.ky0, g.kh, p.stride, p.pad, p.in_h);
        let (_, cols) = mapping::input_span(g.x0, g.ow, 0, p.k, p.stride, p.pad, p.in_w);
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
            let reduction = mapping::reduction(p, g.g, g.ic, g.kh);
            ComputeTerms {
                reduction,
                chunks: mapping::window_cycles(p, reduction),
                wbuf_reads: mapping::weight_reads_per_pixel(p, g.g, g.oc, g.ic, g.kh),
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
pub trait TileSource {
    /// Write the next tile into `out`; false when there is none.
    fn fill(&mut self, out: &mut TileStep) -> bool;
}

/// Any iterator of tiles as a [`TileSource`].
pub struct Tiles<I>(pub I);

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

/// When each tile streamed and each transfer ran, in cycles.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Timeline {
    /// Start and end of each tile's streaming at the array's input (when recorded).
    pub compute: Vec<(u64, u64)>,
    /// (tile, kind, start, end) of every DMA transfer (when recorded).
    pub dma: Vec<(usize, TransferKind, u64, u64)>,
    pub tiles: usize,
    #[serde(flatten)]
    pub totals: RunTotals,
}

/// A layer run's cycle and access totals: what the fast timeline and the detailed mode
/// ([`crate::detailed`]) compute independently and must agree on exactly.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RunTotals {
    /// Cycle the last store completes: the layer's latency.
    pub end: u64,
    /// Streaming cycles of all tiles.
    pub compute_cycles: u64,
    pub stall_read: u64,
    pub stall_write: u64,
    pub fill_drain: u64,
    /// Buffer word accesses: [wbuf, ibuf, obuf] reads and writes.
    pub reads: [u64; 3],
    pub writes: [u64; 3],
    /// DRAM bus bits read and written.
    pub dram_read: u64,
    pub dram_write: u64,
}

/// The cycle a tile's last result is in the output buffer (its store may start): the later of its
/// last window's last active column (seen in cycle s + T + N + column) and, when the tile has
/// several column groups, the last full-width window's last column.
pub fn ready_cycle(p: &Problem, s: &TileStep, compute_end: u64) -> u64 {
    compute_end + ready_delay(p, s.colgroups, s.last_cols, s.geom.pixels() * s.t)
}

/// [`ready_cycle`] less the end of streaming, for a tile of `colgroups` column groups whose last has
/// `last_cols` active columns and whose windows of one column group take `window` cycles in all (the
/// last full-width window ends that long before the streaming does).
pub fn ready_delay(p: &Problem, colgroups: u64, last_cols: u64, window: u64) -> u64 {
    let last = p.n + last_cols;
    if colgroups > 1 { last.max((p.n + p.m).saturating_sub(window)) } else { last }
}

/// The cycle a tile's chunks have all left the feeder (its buffer halves may be refilled).
pub fn release_cycle(p: &Problem, compute_end: u64) -> u64 {
    compute_end + drain_cycles(p.n, p.m) - 1
}

/// The double-buffered timeline of a schedule, with its access counts; `record` keeps every
/// tile's and transfer's times (for traces and the detailed mode's check).
pub fn timeline(p: &Problem, steps: impl IntoIterator<Item = TileStep>, record: bool) -> Timeline {
    timeline_until(p, &mut Tiles(steps.into_iter()), record, None).expect("no cutoff")
}

/// When a timeline may give up: as soon as the layer provably ends after `max_cycles`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cutoff {
    pub max_cycles: u64,
    /// Streaming cycles of all tiles ([`mapping::busy_total`]).
    pub total_busy: u64,
    /// Cycles of the last tile's store.
    pub last_store: u64,
    /// Cycles of all DMA transfers, or a lower bound on them ([`dma_cycles`]; 0 when unknown).
    pub dma_total: u64,
}

/// [`timeline`], giving up (`None`) as soon as the layer provably ends after `cutoff.max_cycles`:
/// when the rest of the streaming, the drain and the last store, or the DMA's remaining transfers
/// (the channel is serial), cannot finish in time.
pub fn timeline_until(p: &Problem, tiles: &mut impl TileSource, record: bool, cutoff: Option<Cutoff>) -> Option<Timeline> {
    let mut tl = Timeline::default();
    // The current and next tiles alternate between two slots, filled in place.
    let mut slots = [TileStep::default(), TileStep::default()];
    if !tiles.fill(&mut slots[0]) {
        return Some(tl);
    }
    let mut dma_free = 0u64;
    // Cycles of the transfers issued so far.
    let mut dma_issued = 0u64;
    // Cycle from which each half of the WBUF and IBUF may be refilled; when each OBUF half is stored.
    let mut free_from = [[0u64; 2]; 2];
    let mut obuf_free = [0u64; 2];
    // Run a tile's loads; returns when the last one ends (0 when it has none).
    let run_loads = |t: usize, s: &TileStep, earliest: u64, dma_free: &mut u64, dma_issued: &mut u64, free_from: &[[u64; 2]; 2], tl: &mut Timeline| -> u64 {
        let mut done = 0;
        for x in s.loads.iter() {
            *dma_issued += x.cycles;
            let half_ready = match x.kind {
                TransferKind::Weights => free_from[0][s.halves[0] as usize],
                TransferKind::Inputs => free_from[1][s.halves[1] as usize],
                _ => 0,
            };
            let start = (*dma_free).max(earliest).max(half_ready);
            *dma_free = start + x.cycles;
            done = *dma_free;
            let buf = match x.kind {
                TransferKind::Weights => 0,
                TransferKind::Inputs => 1,
                _ => 2,
            };
            tl.totals.writes[buf] += x.sram_words;
            tl.totals.dram_read += x.bus_bits;
            if record {
                tl.dma.push((t, x.kind, start, *dma_free));
            }
        }
        done
    };
    let mut loads_done = run_loads(0, &slots[0], 0, &mut dma_free, &mut dma_issued, &free_from, &mut tl);
    let mut start = loads_done;
    tl.totals.stall_read = start;
    // The previous tile's store (if it completes an output tile): the transfer, the cycle its results
    // are ready, and its output half.
    let mut pending: Option<(Transfer, u64, u8)> = None;
    let mut t = 0usize;
    loop {
        if let Some(c) = cutoff {
            // The rest of the streaming, the drain and the last store are still to come; so are the
            // DMA's remaining transfers.
            if start + (c.total_busy - tl.totals.compute_cycles) + p.n + 1 + c.last_store > c.max_cycles
                || dma_free + c.dma_total.saturating_sub(dma_issued) > c.max_cycles
            {
                return None;
            }
        }
        let (a, b) = slots.split_at_mut(1);
        let (cur, next_slot) = if t.is_multiple_of(2) { (&a[0], &mut b[0]) } else { (&b[0], &mut a[0]) };
        let has_next = tiles.fill(next_slot);
        let next = has_next.then_some(&*next_slot);
        let end = start + cur.busy;
        tl.totals.compute_cycles += cur.busy;
        tl.tiles += 1;
        tl.totals.reads[0] += cur.wbuf_reads;
        tl.totals.reads[1] += cur.ibuf_reads;
        tl.totals.reads[2] += cur.obuf_reads;
        tl.totals.writes[2] += cur.obuf_writes;
        if record {
            tl.compute.push((start, end));
        }
        // This tile holds its halves until its chunks leave the feeder.
        let release = release_cycle(p, end);
        free_from[0][cur.halves[0] as usize] = release;
        free_from[1][cur.halves[1] as usize] = release;
        // The DMA while this tile streams: the next tile's loads, then the store of the output tile
        // the previous tile completed.
        if let Some(nx) = next {
            loads_done = run_loads(t + 1, nx, start, &mut dma_free, &mut dma_issued, &free_from, &mut tl);
        }
        if let Some((x, ready, half)) = pending.take() {
            let st = dma_free.max(ready);
            dma_free = st + x.cycles;
            dma_issued += x.cycles;
            tl.totals.dram_write += x.bus_bits;
            tl.totals.reads[2] += x.sram_words;
            if record {
                tl.dma.push((t - 1, x.kind, st, dma_free));
            }
            obuf_free[half as usize] = dma_free;
        }
        match next {
            Some(nx) => {
                let out_ok = if nx.new_out { obuf_free[nx.halves[2] as usize] } else { 0 };
                let next_start = end.max(loads_done).max(out_ok);
                let idle = next_start - end;
                let read = loads_done.min(next_start).saturating_sub(end);
                tl.totals.stall_read += read;
                tl.totals.stall_write += idle - read;
                pending = cur.store.map(|x| (x, ready_cycle(p, cur, end), cur.halves[2]));
                start = next_start;
                t += 1;
            }
            None => {
                let ready = ready_cycle(p, cur, end);
                tl.totals.fill_drain = ready - end;
                let mut finish = ready;
                if let Some(x) = &cur.store {
                    let st = dma_free.max(ready);
                    finish = st + x.cycles;
                    tl.totals.dram_write += x.bus_bits;
                    tl.totals.reads[2] += x.sram_words;
                    if record {
                        tl.dma.push((t, x.kind, st, finish));
                    }
                }
                tl.totals.stall_write += finish - ready;
                tl.totals.end = finish;
                return Some(tl);
            }
        }
    }
}

/// The last tile's geometry (every loop at its last tile, whatever the order).
pub(crate) fn last_tile(p: &Problem, m: &Mapping, c: &Counts) -> TileGeom {
    geom(p, m, c, &Idx::nth(c, &m.order, c.p() * c.o() * c.r() - 1))
}

/// Cycles of the store of the last tile's outputs (the last tile always completes its output tile).
pub(crate) fn last_store_cycles(p: &Problem, m: &Mapping, c: &Counts) -> u64 {
    let g = last_tile(p, m, c);
    output_transfer(p, (g.b, g.oh, g.ow, g.out_channels()), TransferKind::Outputs).cycles
}

/// A lower bound on a mapping's cycles: the first tile's loads and the last tile's store, exactly,
/// around all the streaming and the shortest drain.
pub fn edge_bound(p: &Problem, m: &Mapping) -> u64 {
    let c = Counts::of(p, m);
    let mut sched = schedule(p, m);
    let Some(first) = sched.next() else { return 0 };
    let first_loads: u64 = first.loads.iter().map(|x| x.cycles).sum();
    first_loads + mapping::busy_total(p, m, &c) + p.n + 1 + last_store_cycles(p, m, &c)
}

/// The DRAM channel's work for one pass over each operand's distinct tiles, in cycles (latency plus
/// beats of every transfer, exactly as the schedule issues them): what a tiling costs the DMA before
/// its loop order decides how often each operand is reloaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaSums {
    pub weights: u64,
    pub inputs: u64,
    /// The final store of every output tile.
    pub outputs: u64,
    /// One partial-sum store plus its reload, over every output tile.
    pub psum_round_trip: u64,
}

/// (extent, how many tiles) of a tiled dimension: at most two classes (full tiles and the edge).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Classes {
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
    for (n, s) in mapping::edge_classes(x, size, count) {
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
pub(crate) enum Sel {
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
pub(crate) fn dim(total: u64, size: u64, count: u64, sel: Sel) -> Classes {
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
            h.add(mapping::input_span(o0, len, taps.0, taps.1, p.stride, p.pad, extent).1, 1);
        }
    }
}

/// Fold `f(acc, groups x output channels, kernel rows, input channels, tiles)` over the selected
/// (O, R) tiles by edge class.
pub(crate) fn fold_or(p: &Problem, m: &Mapping, c: &Counts, [so, sr]: [Sel; 2], f: impl Fn(u64, u64, u64, u64, u64, u64) -> u64) -> u64 {
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
pub(crate) fn input_sum(p: &Problem, m: &Mapping, c: &Counts, [sp, so, sr]: [Sel; 3]) -> u64 {
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
pub(crate) fn output_fold(p: &Problem, m: &Mapping, c: &Counts, [sp, so]: [Sel; 2], kind: TransferKind, init: u64, f: impl Fn(u64, u64, u64) -> u64) -> u64 {
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
pub fn dma_sums(p: &Problem, m: &Mapping, c: &Counts) -> DmaSums {
    let all = Sel::All;
    let weights = fold_or(p, m, c, [all, all], |acc, g, oc, kh, ic, n| acc + n * weight_transfer(p, (g * oc, kh, ic)).cycles);
    // A partial-sum store and its reload move the same tile at the same width.
    let psum_round_trip = 2 * output_fold(p, m, c, [all, all], TransferKind::PsumStore, 0, |acc, cycles, n| acc + n * cycles);
    DmaSums { weights, inputs: input_sum(p, m, c, [all; 3]), outputs: final_store_sum(p, m, c), psum_round_trip }
}

/// The final stores' part of [`DmaSums`] (the only part that depends on the output precision).
pub fn final_store_sum(p: &Problem, m: &Mapping, c: &Counts) -> u64 {
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
        mapping::input_span(o0, len, t0, taps, stride, pad, extent).1
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
pub fn dma_cycles(p: &Problem, m: &Mapping, c: &Counts, sums: &DmaSums) -> u64 {
    let w_f = mapping::reload_factor(&m.order, c, &[Loop::O, Loop::R]);
    let a_f = if p.groups > 1 {
        if c.oi > 1 { 1 } else { mapping::reload_factor(&m.order, c, &[Loop::P, Loop::R, Loop::O]) }
    } else {
        mapping::reload_factor(&m.order, c, &[Loop::P, Loop::R])
    };
    // Each output tile is visited `visits` times: one final store, and a partial-sum store and
    // reload for every other visit.
    let visits = mapping::transfers(&m.order, c, &[Loop::P, Loop::O]) / (c.p() * c.o());
    w_f * sums.weights + a_f * sums.inputs + sums.outputs + (visits - 1) * sums.psum_round_trip
}

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

/// What the mapping searches of one layer at several output precisions share (the output bits only
/// change the final stores): the candidate families, and, for each family as far as a search has
/// expanded it, its candidates, their loop-order groups, each group's tiling bound and DMA sums.
/// Pass the same value to consecutive [`CycleModel::best_mapping_shared`] calls.
pub struct SharedSearch {
    /// The problem the shared parts were computed for.
    problem: Problem,
    families: Vec<mapping::Family>,
    /// Per family: its range of groups once expanded.
    expanded: Vec<Option<(usize, usize)>>,
    cands: Vec<Mapping>,
    /// Per group: its range of candidates (orders of one tiling), tiling bound and DMA sums.
    groups: Vec<(usize, usize)>,
    bases: Vec<mapping::BaseBound>,
    sums: Vec<Option<DmaSums>>,
    /// Per group: its flow-bound class sums, once a mapping of it is evaluated under a cutoff.
    flows: Vec<Option<Box<FlowSums>>>,
}

impl SharedSearch {
    fn new(p: &Problem) -> SharedSearch {
        let families = mapping::families(p);
        // Room for a typical search (the vectors grow by whole families; under 64 KiB, so no mmap).
        SharedSearch {
            problem: *p,
            expanded: vec![None; families.len()],
            families,
            cands: Vec::with_capacity(512),
            groups: Vec::with_capacity(128),
            bases: Vec::with_capacity(128),
            sums: Vec::with_capacity(128),
            flows: Vec::with_capacity(128),
        }
    }

    /// The groups of family `f`, generating its candidates the first time.
    fn expand(&mut self, f: usize) -> (usize, usize) {
        if let Some(r) = self.expanded[f] {
            return r;
        }
        let first = self.cands.len();
        mapping::family_candidates(&self.problem, &self.families[f], &mut self.cands);
        let g0 = self.groups.len();
        for (s, e) in mapping::order_groups(&self.cands[first..]) {
            self.groups.push((first + s, first + e));
            self.bases.push(mapping::BaseBound::of(&self.problem, &self.cands[first + s]));
            self.sums.push(None);
            self.flows.push(None);
        }
        let r = (g0, self.groups.len());
        self.expanded[f] = Some(r);
        r
    }
}

/// The search tree of one problem: families, then tilings (groups of loop orders, first at their
/// tiling bound, then refined by their DMA work), then mappings (first at their own bound, then
/// refined by the flow bound, then evaluated).
#[derive(Clone, Copy, Debug)]
enum Node {
    Family(usize),
    Group(usize),
    Refined(usize),
    /// Candidate `.0` of group `.1`, at its mapping bound.
    Mapping(usize, usize),
    /// The same at its flow bound: a leaf.
    Flowed(usize, usize),
}

/// One mapping search over a [`SharedSearch`].
struct Searcher<'a> {
    model: &'a CycleModel,
    p: &'a Problem,
    shared: &'a mut SharedSearch,
    /// Per group: DMA sums for this problem's output bits.
    sums: Vec<Option<DmaSums>>,
    /// The evaluation of the best mapping so far (the branch and bound keeps only scores).
    best_eval: Option<(Mapping, Evaluation)>,
}

impl Searcher<'_> {
    /// A group's tiling bound and DMA sums for this problem.
    fn group(&mut self, g: usize) -> (mapping::BaseBound, DmaSums) {
        let (from, p) = (self.shared.problem, self.p);
        let base = self.shared.bases[g].with_out_bits(&from, p);
        if self.sums.len() <= g {
            self.sums.resize(g + 1, None);
        }
        if self.sums[g].is_none() {
            let m = self.shared.cands[self.shared.groups[g].0];
            let shared = *self.shared.sums[g].get_or_insert_with(|| dma_sums(&from, &m, &base.counts));
            // Stores take at least as long at more bits: the shared problem's stores bound this
            // one's when it has no fewer output bits (variants come in increasing order).
            self.sums[g] = Some(if p.out_bits >= from.out_bits { shared } else { DmaSums { outputs: final_store_sum(p, &m, &base.counts), ..shared } });
        }
        (base, self.sums[g].expect("just filled"))
    }

    /// A group's flow-bound class sums, seeded from its tiling bound and DMA sums the first time.
    fn flow(&mut self, g: usize, base: &mapping::BaseBound, sums: &DmaSums) -> &mut FlowSums {
        let p = self.p;
        self.shared.flows[g].get_or_insert_with(|| Box::new(FlowSums::seeded(p, base, sums)))
    }
}

impl mapping::SearchTree for Searcher<'_> {
    type Node = Node;

    fn expand(&mut self, node: Node, bound: (f64, f64), out: &mut Vec<((f64, f64), mapping::Branch<Node>)>) {
        let (model, p) = (self.model, self.p);
        match node {
            Node::Family(f) => {
                let (g0, g1) = self.shared.expand(f);
                let from = self.shared.problem;
                for g in g0..g1 {
                    let base = self.shared.bases[g].with_out_bits(&from, p);
                    out.push((model.key_bound(p, base.array.max(base.dma_floor(p))), mapping::Branch::Inner(Node::Group(g))));
                }
            }
            Node::Group(g) | Node::Refined(g) => {
                let (base, sums) = self.group(g);
                if matches!(node, Node::Group(_)) {
                    // The group's DMA work with each operand loaded once bounds all its orders.
                    let refined = model.key_bound(p, base.array.max(sums.weights + sums.inputs + sums.outputs));
                    if refined > bound {
                        out.push((refined, mapping::Branch::Inner(Node::Refined(g))));
                        return;
                    }
                }
                let (s, e) = self.shared.groups[g];
                for i in s..e {
                    let m = self.shared.cands[i];
                    out.push((model.lower_bound(p, &m, &base, &sums), mapping::Branch::Inner(Node::Mapping(i, g))));
                }
            }
            Node::Mapping(i, g) => {
                // Keys order lexicographically, so the larger of two lower bounds is one too.
                let m = self.shared.cands[i];
                let (base, sums) = self.group(g);
                let refined = model.key_bound(p, self.flow(g, &base, &sums).bound(p, &m, &base.counts));
                let key = if refined > bound { refined } else { bound };
                out.push((key, mapping::Branch::Leaf(Node::Flowed(i, g))));
            }
            Node::Flowed(..) => unreachable!("evaluated mappings are leaves"),
        }
    }

    fn exact(&mut self, leaf: Node, best: Option<Score>) -> Option<Score> {
        let Node::Flowed(i, g) = leaf else { unreachable!("only flowed mappings are leaves") };
        let (model, p) = (self.model, self.p);
        let m = self.shared.cands[i];
        // Under the cycles objective a mapping slower than the best so far cannot win. Its flow bound
        // (its key here) is no more than the best's cycles, or the search would have stopped; first
        // the fine flow bound (per edge class), then the timeline, given up as soon as it is
        // provably slower (streaming or DMA).
        let cutoff = best.filter(|_| model.objective == Objective::Cycles).map(|b| b.cycles);
        let (base, sums) = self.group(g);
        if let Some(limit) = cutoff
            && self.flow(g, &base, &sums).fine_bound(p, &m, &base.counts) > limit
        {
            return None;
        }
        let e = model.evaluate_until(p, &m, cutoff, dma_cycles(p, &m, &base.counts, &sums))?;
        let s = score(&e);
        let key = |s: &Score| model.objective.key(s.cycles as f64, s.energy_nj);
        if best.is_none_or(|b| key(&s) < key(&b)) {
            self.best_eval = Some((m, e));
        }
        Some(s)
    }
}

/// An evaluation's (cycles, energy) for the search.
fn score(e: &Evaluation) -> Score {
    Score { cycles: e.cycles, energy_nj: e.energy.map_or(0.0, |x| x.total().get()) }
}

/// The cycle-level cost model.
pub struct CycleModel {
    hw: HwConfig,
    chip: ChipFigures,
    objective: Objective,
}

/// Largest layer the engine accepts, in tiles of one mapping (beyond it the mapping is skipped).
const MAX_TILES: u64 = 1 << 22;

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

    /// The layer as the engine sees it; `out_bits` defaults to the layer's activation bits.
    pub fn problem(&self, layer: &Layer) -> Result<Problem, SimError> {
        layer.validate().map_err(|e| SimError::new(layer, format!("{}: {}", e.field, e.message)))?;
        let a = &self.hw.array;
        let max_bits = 2 * a.fusion_bits;
        for (what, bits) in [("weights", layer.w_bits), ("activations", layer.a_bits)] {
            if bits > max_bits {
                return Err(SimError::new(
                    layer,
                    format!("cycle model: {bits}-bit {what} need more than two temporal digits of array.fusion_bits = {}", a.fusion_bits),
                ));
            }
        }
        let plan = LanePlan::new(layer.a_bits, layer.w_bits, a.fusion_bits, a.brick_bits);
        let mem = &self.hw.memory;
        let (k, stride, pad) = match layer.kind {
            LayerKind::Fc => (1, 1, 0),
            LayerKind::Conv => (layer.kernel as u64, layer.stride as u64, layer.pad as u64),
        };
        let g = layer.groups as u64;
        let mut p = Problem {
            batch: layer.batch as u64,
            in_c: layer.in_channels as u64,
            out_c: layer.out_channels as u64,
            in_h: layer.in_h as u64,
            in_w: layer.in_w as u64,
            out_h: layer.out_h() as u64,
            out_w: layer.out_w() as u64,
            k,
            stride,
            pad,
            groups: g,
            cig: layer.in_channels as u64 / g,
            cog: layer.out_channels as u64 / g,
            a_bits: layer.a_bits as u64,
            w_bits: layer.w_bits as u64,
            out_bits: layer.a_bits as u64,
            n: a.rows as u64,
            m: a.cols as u64,
            plan,
            word_bits: a.operand_word_bits(),
            half_bits: [mem.wbuf.to_bits().0 / 2, mem.ibuf.to_bits().0 / 2, mem.obuf.to_bits().0 / 2],
            dram: DramChannel {
                bits_per_cycle: mem.dram_bits_per_cycle,
                latency_cycles: mem.dram_latency_cycles,
                burst_bits: mem.dram_burst_bytes * 8,
            },
            touched_input_bits: 0,
        };
        p.touched_input_bits = mapping::input_bits_touched(&p);
        Ok(p)
    }

    /// Energy per active BitBrick-cycle, pJ.
    fn brick_pj(&self) -> f64 {
        let a = &self.hw.array;
        self.hw.fusion_unit.dynamic_energy_pj_per_cycle / ((a.fusion_bits / a.brick_bits) as f64).powi(2)
    }

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
        let cutoff = max_cycles.map(|max_cycles| Cutoff { max_cycles, total_busy: mapping::busy_total(p, m, &c), last_store: last_store_cycles(p, m, &c), dma_total });
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

    fn energy(&self, p: &Problem, c: &Counters, cycles: u64) -> Option<EnergyBreakdown> {
        let [w, i, o] = self.chip.buffers()?;
        let active_brick_cycles = p.macs() * p.plan.bricks_per_product as u64 * p.steps();
        let seconds = cycles as f64 / self.hw.frequency_hz();
        let leak_mw = self.chip.core_leakage_mw + w.leakage_mw + i.leakage_mw + o.leakage_mw;
        Some(EnergyBreakdown {
            core: NanoJoules::from_pj(active_brick_cycles as f64 * self.brick_pj()),
            wbuf: w.energy(c.wbuf_read, c.wbuf_write),
            ibuf: i.energy(c.ibuf_read, c.ibuf_write),
            obuf: o.energy(c.obuf_read, c.obuf_write),
            dram: NanoJoules::from_pj((c.dram_read.0 + c.dram_write.0) as f64 * self.chip.dram_pj_per_bit),
            leakage: NanoJoules(leak_mw * 1e-3 * seconds * 1e9),
        })
    }

    /// A lower bound on (cycles, energy) of a mapping, for the search, from its tiling's bound.
    fn lower_bound(&self, p: &Problem, m: &Mapping, base: &mapping::BaseBound, sums: &DmaSums) -> (f64, f64) {
        self.key_bound(p, mapping::lower_bound_cycles_with(p, m, base).max(dma_cycles(p, m, &base.counts, sums)))
    }

    /// The objective key's bound at a cycles bound.
    fn key_bound(&self, p: &Problem, cycles: u64) -> (f64, f64) {
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
        let initial = seed.filter(|m| mapping::fits(p, m)).and_then(|m| self.evaluate(p, &m).map(|e| (m, e)));
        if shared.as_ref().is_none_or(|c| Problem { out_bits: 0, ..c.problem } != Problem { out_bits: 0, ..*p }) {
            *shared = Some(SharedSearch::new(p));
        }
        let shared = shared.as_mut().expect("just filled");
        let roots: Vec<_> =
            shared.families.iter().enumerate().map(|(f, fam)| (self.key_bound(p, fam.bound(p)), mapping::Branch::Inner(Node::Family(f)))).collect();
        let initial_score = initial.as_ref().map(|(_, e)| score(e));
        let mut tree = Searcher { model: self, p, shared, sums: Vec::new(), best_eval: initial };
        let (found, evaluated) = mapping::branch_and_bound(&mut tree, self.objective, initial_score, roots);
        let tilings = tree.sums.iter().filter(|s| s.is_some()).count();
        let (m, e) = match found {
            Some((Node::Flowed(i, _), _)) => {
                let m = tree.shared.cands[i];
                match tree.best_eval.take() {
                    Some((bm, e)) if bm == m => (m, e),
                    _ => (m, self.evaluate(p, &m)?),
                }
            }
            // Nothing beat the seed.
            _ => tree.best_eval.take()?,
        };
        Some((m, e, tilings, evaluated))
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
        events.extend(crate::trace::layer_events(i, name, steps, tl, offset, model.hw.frequency_mhz));
        offset += tl.totals.end;
    }
    Ok(crate::trace::document(events))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SHIPPED_CONFIGS;
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
                    let cands = mapping::candidates(&p);
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
            for c in mapping::candidates(&p).iter().step_by(7) {
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
            for c in mapping::candidates(&p).iter().step_by(13) {
                let lb = mapping::lower_bound_cycles(&p, c);
                let e = m.evaluate(&p, c).unwrap();
                assert!(lb <= e.cycles, "{}: {} lb {lb} > exact {}", l.name, c.describe(), e.cycles);
                let counts = Counts::of(&p, c);
                let db = dma_cycles(&p, c, &counts, &dma_sums(&p, c, &counts));
                assert!(db <= e.cycles, "{}: {} DMA bound {db} > exact {}", l.name, c.describe(), e.cycles);
                let base = mapping::BaseBound::of(&p, c);
                let floor = base.dma_floor(&p);
                assert!(floor <= db, "{}: {} DMA floor {floor} > DMA cycles {db}", l.name, c.describe());
                let family = mapping::Family { groups_per_pass: c.groups_per_pass, oc: c.oc, ic: c.ic, kh: c.kh };
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
                let (e_lb, _) = energy_model.lower_bound(&p, c, &mapping::BaseBound::of(&p, c), &dma_sums(&p, c, &counts));
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
            let cands = mapping::candidates(&p);
            prop_assume!(!cands.is_empty());
            // Five tilings spread over the candidates, each with all its loop orders, sharing one set
            // of class sums as the search does.
            for t in 0..5 {
                let first = (pick + t * cands.len() / 5) % cands.len();
                let tiling = |m: &Mapping| Mapping { order: mapping::ORDERS[0], ..*m };
                let base = mapping::BaseBound::of(&p, &cands[first]);
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
