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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
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
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
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

fn clip(total: u64, size: u64, i: u64) -> (u64, u64) {
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
fn input_transfer(p: &Problem, (b, rows, cols, chans): (u64, u64, u64, u64)) -> Transfer {
    let seg = box_segments(&[p.batch, p.in_h, p.in_w, p.in_c], &[b, rows, cols, chans], p.a_bits);
    transfer(p, TransferKind::Inputs, seg, b * rows * cols * chans, p.plan.a_lane as u64, p.word_bits)
}

/// Weight tile of (output channels, kernel rows, input channels).
fn weight_transfer(p: &Problem, (ocs, kh, ic): (u64, u64, u64)) -> Transfer {
    let seg = box_segments(&[p.out_c, p.k, p.k, p.cig], &[ocs, kh, p.k, ic], p.w_bits);
    transfer(p, TransferKind::Weights, seg, ocs * kh * p.k * ic, p.plan.w_lane as u64, p.word_bits)
}

/// Output tile of (batch, rows, columns, output channels).
fn output_transfer(p: &Problem, (b, oh, ow, ocs): (u64, u64, u64, u64), kind: TransferKind) -> Transfer {
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
    /// Odometer over the three loops (outermost first).
    digits: [u64; 3],
    /// One-entry caches of the per-tile terms (consecutive tiles mostly share them).
    compute_cache: Option<((u64, u64, u64, u64), (u64, u64, u64))>,
    input_cache: Option<((u64, u64, u64, u64), Transfer)>,
    weight_cache: Option<((u64, u64, u64), Transfer)>,
    output_cache: [Option<((u64, u64, u64, u64), Transfer)>; 3],
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
        digits: [0; 3],
        compute_cache: None,
        input_cache: None,
        weight_cache: None,
        output_cache: [None; 3],
    }
}

impl Schedule<'_> {
    /// The tile after `cur` in loop order (odometer step).
    fn advance(&mut self) -> Idx {
        let order = self.m.order;
        let mut i = 2;
        loop {
            self.digits[i] += 1;
            if self.digits[i] < self.c.of_loop(order[i]) || i == 0 {
                break;
            }
            self.digits[i] = 0;
            i -= 1;
        }
        let mut idx = self.cur;
        for (l, &v) in order.iter().zip(&self.digits).skip(i) {
            idx.set(&self.c, *l, v);
        }
        idx
    }

    fn inputs(&mut self, g: &TileGeom) -> Transfer {
        let p = self.p;
        let (_, rows) = mapping::input_span(g.y0, g.oh, g.ky0, g.kh, p.stride, p.pad, p.in_h);
        let (_, cols) = mapping::input_span(g.x0, g.ow, 0, p.k, p.stride, p.pad, p.in_w);
        let key = (g.b, rows, cols, g.g * g.ic);
        match self.input_cache {
            Some((k, x)) if k == key => x,
            _ => {
                let x = input_transfer(p, key);
                self.input_cache = Some((key, x));
                x
            }
        }
    }

    fn weights(&mut self, g: &TileGeom) -> Transfer {
        let key = (g.out_channels(), g.kh, g.ic);
        match self.weight_cache {
            Some((k, x)) if k == key => x,
            _ => {
                let x = weight_transfer(self.p, key);
                self.weight_cache = Some((key, x));
                x
            }
        }
    }

    fn outputs(&mut self, g: &TileGeom, kind: TransferKind) -> Transfer {
        let slot = match kind {
            TransferKind::Outputs => 0,
            TransferKind::PsumStore => 1,
            _ => 2,
        };
        let key = (g.b, g.oh, g.ow, g.out_channels());
        match self.output_cache[slot] {
            Some((k, x)) if k == key => x,
            _ => {
                let x = output_transfer(self.p, key, kind);
                self.output_cache[slot] = Some((key, x));
                x
            }
        }
    }

    /// (reduction, chunks per window, WBUF reads per pixel) of a tile.
    fn compute_terms(&mut self, g: &TileGeom) -> (u64, u64, u64) {
        let key = (g.g, g.oc, g.ic, g.kh);
        match self.compute_cache {
            Some((k, v)) if k == key => v,
            _ => {
                let p = self.p;
                let reduction = mapping::reduction(p, g.g, g.ic, g.kh);
                let v = (reduction, mapping::window_cycles(p, reduction), mapping::weight_reads_per_pixel(p, g.g, g.oc, g.ic, g.kh));
                self.compute_cache = Some((key, v));
                v
            }
        }
    }
}

impl Iterator for Schedule<'_> {
    type Item = TileStep;

    fn next(&mut self) -> Option<TileStep> {
        if self.t >= self.n {
            return None;
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
        let (reduction, t_chunks, wreads) = self.compute_terms(&g);
        let colgroups = g.out_channels().div_ceil(p.m);
        let pixels = g.pixels();
        let accumulate = g.r > 0;
        let results = pixels * g.out_channels();
        Some(TileStep {
            geom: g,
            reduction,
            colgroups,
            t: t_chunks,
            busy: pixels * colgroups * t_chunks,
            last_cols: g.out_channels() - (colgroups - 1) * p.m,
            loads,
            store,
            new_out,
            accumulate,
            halves: self.halves,
            ibuf_reads: pixels * colgroups * reduction.div_ceil(p.lanes()) * p.steps(),
            wbuf_reads: pixels * wreads,
            obuf_reads: if accumulate { results } else { 0 },
            obuf_writes: results,
        })
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
    let last = compute_end + p.n + s.last_cols;
    if s.colgroups > 1 {
        let last_full = compute_end - s.geom.pixels() * s.t + p.n + p.m;
        last.max(last_full)
    } else {
        last
    }
}

/// The cycle a tile's chunks have all left the feeder (its buffer halves may be refilled).
pub fn release_cycle(p: &Problem, compute_end: u64) -> u64 {
    compute_end + drain_cycles(p.n, p.m) - 1
}

/// The double-buffered timeline of a schedule, with its access counts; `record` keeps every
/// tile's and transfer's times (for traces and the detailed mode's check).
pub fn timeline(p: &Problem, steps: impl IntoIterator<Item = TileStep>, record: bool) -> Timeline {
    timeline_until(p, steps, record, None).expect("no cutoff")
}

/// [`timeline`], giving up (`None`) as soon as the layer provably ends after `cutoff.1` cycles, where
/// `cutoff.0` is the total streaming cycles of the schedule and `cutoff.2` its last store's cycles.
pub fn timeline_until(p: &Problem, steps: impl IntoIterator<Item = TileStep>, record: bool, cutoff: Option<(u64, u64, u64)>) -> Option<Timeline> {
    let mut tl = Timeline::default();
    let mut it = steps.into_iter();
    let Some(first) = it.next() else { return Some(tl) };
    let mut dma_free = 0u64;
    // Cycle from which each half of the WBUF and IBUF may be refilled; when each OBUF half is stored.
    let mut free_from = [[0u64; 2]; 2];
    let mut obuf_free = [0u64; 2];
    // Run a tile's loads; returns when the last one ends (0 when it has none).
    let run_loads = |t: usize, s: &TileStep, earliest: u64, dma_free: &mut u64, free_from: &[[u64; 2]; 2], tl: &mut Timeline| -> u64 {
        let mut done = 0;
        for x in s.loads.iter() {
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
    let mut loads_done = run_loads(0, &first, 0, &mut dma_free, &free_from, &mut tl);
    let mut start = loads_done;
    tl.totals.stall_read = start;
    let mut prev: Option<(TileStep, u64)> = None; // the previous tile and its streaming end
    let mut cur = first;
    let mut t = 0usize;
    loop {
        if let Some((total_busy, bound, last_store)) = cutoff {
            // The rest of the streaming, the drain and the last store are still to come.
            if start + (total_busy - tl.totals.compute_cycles) + p.n + 1 + last_store > bound {
                return None;
            }
        }
        let next = it.next();
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
        if let Some(nx) = &next {
            loads_done = run_loads(t + 1, nx, start, &mut dma_free, &free_from, &mut tl);
        }
        if let Some((ps, pend)) = &prev
            && let Some(x) = &ps.store {
                let st = dma_free.max(ready_cycle(p, ps, *pend));
                dma_free = st + x.cycles;
                tl.totals.dram_write += x.bus_bits;
                tl.totals.reads[2] += x.sram_words;
                if record {
                    tl.dma.push((t - 1, x.kind, st, dma_free));
                }
                obuf_free[ps.halves[2] as usize] = dma_free;
            }
        match next {
            Some(nx) => {
                let out_ok = if nx.new_out { obuf_free[nx.halves[2] as usize] } else { 0 };
                let next_start = end.max(loads_done).max(out_ok);
                let idle = next_start - end;
                let read = loads_done.min(next_start).saturating_sub(end);
                tl.totals.stall_read += read;
                tl.totals.stall_write += idle - read;
                prev = Some((cur, end));
                cur = nx;
                start = next_start;
                t += 1;
            }
            None => {
                let ready = ready_cycle(p, &cur, end);
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

/// Cycles of the store of the last tile's outputs (the last tile always completes its output tile).
fn last_store_cycles(p: &Problem, m: &Mapping, c: &Counts) -> u64 {
    let last = Idx::nth(c, &m.order, c.p() * c.o() * c.r() - 1);
    let g = geom(p, m, c, &last);
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
        self.evaluate_until(p, m, None)
    }

    /// Evaluate one mapping exactly, or give up once it provably takes more than `max_cycles`.
    pub fn evaluate_until(&self, p: &Problem, m: &Mapping, max_cycles: Option<u64>) -> Option<Evaluation> {
        let c = Counts::of(p, m);
        if c.p() * c.o() * c.r() > MAX_TILES {
            return None;
        }
        let cutoff = max_cycles.map(|b| (mapping::busy_total(p, m, &c), b, last_store_cycles(p, m, &c)));
        let tl = timeline_until(p, schedule(p, m), false, cutoff)?;
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
    fn lower_bound(&self, p: &Problem, m: &Mapping, base: &mapping::BaseBound) -> (f64, f64) {
        self.key_bound(p, mapping::lower_bound_cycles_with(p, m, base))
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
        let initial = seed.filter(|m| mapping::fits(p, m)).and_then(|m| {
            self.evaluate(p, &m).map(|e| (m, Score { cycles: e.cycles, energy_nj: e.energy.map_or(0.0, |x| x.total().get()) }))
        });
        let cands = mapping::candidates(p);
        // Candidates differing only in loop order form a group sharing their tiling's bound.
        let bases = std::cell::RefCell::new(Vec::<mapping::BaseBound>::new());
        let lower_base = |g: usize, m: &Mapping| {
            let b = mapping::BaseBound::of(p, m);
            let mut v = bases.borrow_mut();
            debug_assert_eq!(v.len(), g);
            v.push(b);
            self.key_bound(p, b.array)
        };
        let lower = |g: usize, m: &Mapping| self.lower_bound(p, m, &bases.borrow()[g]);
        let cycles_first = self.objective == Objective::Cycles;
        let exact = |m: &Mapping, best: Option<Score>| {
            // Under the cycles objective a mapping slower than the best so far cannot win: first a
            // tighter bound (the first tile's loads and the last store exactly), then the timeline,
            // given up as soon as it is provably slower.
            let cutoff = best.filter(|_| cycles_first).map(|b| b.cycles);
            if let Some(limit) = cutoff
                && edge_bound(p, m) > limit {
                    return None;
                }
            self.evaluate_until(p, m, cutoff).map(|e| Score { cycles: e.cycles, energy_nj: e.energy.map_or(0.0, |x| x.total().get()) })
        };
        let (m, _, evaluated) = mapping::search(&cands, self.objective, initial, lower_base, lower, exact)?;
        let e = self.evaluate(p, &m)?;
        Some((m, e, cands.len(), evaluated))
    }

    /// Simulate a layer, returning the mapping and its schedule too.
    pub fn simulate_detailed(&self, layer: &Layer, out_bits: Option<u32>) -> Result<(LayerStats, Problem, Mapping), SimError> {
        self.simulate_seeded(layer, out_bits, None)
    }

    /// [`Self::simulate_detailed`] with a mapping search seeded from `seed`.
    pub fn simulate_seeded(&self, layer: &Layer, out_bits: Option<u32>, seed: Option<Mapping>) -> Result<(LayerStats, Problem, Mapping), SimError> {
        let mut p = self.problem(layer)?;
        if let Some(b) = out_bits {
            p.out_bits = b as u64;
        }
        let (m, e, n_cands, evaluated) = self.best_mapping_from(&p, seed).ok_or_else(|| {
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
            mapping: format!("{} ({} tiles; {} of {} candidates evaluated)", m.describe(), e.tiles, evaluated, n_cands),
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
        // Each variant's search starts from the previous variant's best mapping.
        let mut seed = None;
        variants
            .iter()
            .map(|(layer, b)| {
                let (s, _, m) = self.simulate_seeded(layer, Some(*b), seed)?;
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

    /// The search's bound never exceeds the exact cycles of any candidate.
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
                let eb = edge_bound(&p, c);
                assert!(eb <= e.cycles, "{}: {} edge bound {eb} > exact {}", l.name, c.describe(), e.cycles);
                let (e_lb, _) = energy_model.lower_bound(&p, c, &mapping::BaseBound::of(&p, c));
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
