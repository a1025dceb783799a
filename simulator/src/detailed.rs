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

use crate::array::{CycleInputs, Operands, Stream, SystolicArray};
use crate::brick::operand_range;
use crate::units::splitmix;
use crate::engine::{CycleModel, RunTotals, TileStep, TransferKind, ic_start, oc_start, release_cycle, schedule, timeline};
use crate::layer::Layer;
use crate::mapping::{Mapping, Problem};
use crate::model::{CostModel, SimError};
use std::cell::Cell;
use std::collections::VecDeque;

/// Largest run accepted, in fusion-unit cycles (about ten seconds at the measured speed).
pub const MAX_UNIT_CYCLES: u64 = 500_000_000;

/// What the detailed run measured.
#[derive(Clone, Debug, PartialEq)]
pub struct DetailedRun {
    pub mapping: Mapping,
    /// Cycles, stalls and accesses, as the fast engine's [`RunTotals`] counts them.
    pub totals: RunTotals,
    /// DRAM bus beats that carried the run's traffic.
    pub beats: u64,
    /// Fusion-unit cycles stepped.
    pub unit_cycles: u64,
    /// The layer's output [batch][out_h][out_w][out_c] (32-bit wrapped) and how many elements
    /// differ from the direct convolution.
    pub output: Vec<i64>,
    pub mismatches: usize,
    /// (start, end) of each tile's streaming.
    pub compute: Vec<(u64, u64)>,
}

/// Seeded operands of a layer: inputs [batch][in_h][in_w][in_c], weights [out_c][k][k][cig].
#[derive(Clone, Debug, PartialEq)]
pub struct LayerData {
    pub inputs: Vec<i32>,
    pub weights: Vec<i32>,
}

impl LayerData {
    /// Random signed operands in each tensor's bit range.
    pub fn random(p: &Problem, seed: u64) -> Self {
        let mut s = seed;
        let mut draw = |bits: u64| {
            let (lo, hi) = operand_range(bits as u32, true);
            (lo + (splitmix(&mut s) % (hi - lo + 1) as u64) as i64) as i32
        };
        let inputs = (0..p.batch * p.in_h * p.in_w * p.in_c).map(|_| draw(p.a_bits)).collect();
        let weights = (0..p.out_c * p.k * p.k * p.cig).map(|_| draw(p.w_bits)).collect();
        LayerData { inputs, weights }
    }

    fn x(&self, p: &Problem, b: u64, y: i64, x: i64, c: u64) -> i32 {
        if y < 0 || x < 0 || y >= p.in_h as i64 || x >= p.in_w as i64 {
            return 0;
        }
        self.inputs[(((b * p.in_h + y as u64) * p.in_w + x as u64) * p.in_c + c) as usize]
    }

    fn w(&self, p: &Problem, oc: u64, ky: u64, kx: u64, ci: u64) -> i32 {
        self.weights[(((oc * p.k + ky) * p.k + kx) * p.cig + ci) as usize]
    }

    /// The direct convolution, wrapped to 32 bits like the accumulators.
    pub fn direct(&self, p: &Problem) -> Vec<i64> {
        let mut out = vec![0i64; (p.batch * p.out_h * p.out_w * p.out_c) as usize];
        for b in 0..p.batch {
            for y in 0..p.out_h {
                for x in 0..p.out_w {
                    for oc in 0..p.out_c {
                        let g = oc / p.cog;
                        let mut acc = 0i64;
                        for ky in 0..p.k {
                            for kx in 0..p.k {
                                let iy = (y * p.stride + ky) as i64 - p.pad as i64;
                                let ix = (x * p.stride + kx) as i64 - p.pad as i64;
                                for ci in 0..p.cig {
                                    acc += self.x(p, b, iy, ix, g * p.cig + ci) as i64 * self.w(p, oc, ky, kx, ci) as i64;
                                }
                            }
                        }
                        out[(((b * p.out_h + y) * p.out_w + x) * p.out_c + oc) as usize] = acc as i32 as i64;
                    }
                }
            }
        }
        out
    }
}

/// Operand tables of one tile: the lanes each row gets per (pixel, chunk) and each unit per
/// (column group, chunk, row, column).
struct TileTables {
    /// Row-chunks per window: reduction chunks (before temporal steps) x rows.
    row_chunks: u64,
    act: Vec<i32>,
    wgt: Vec<i32>,
    /// For each row-chunk, the tile columns [lo, hi) whose weights are not structural zeros there
    /// (all active columns for a dense layer; one group's columns for block-diagonal ones).
    cols: Vec<(u32, u32)>,
}

/// Decode a reduction element of a tile: (group in the tile, kernel row in the tile, kernel column, channel in the tile).
fn element(s: &TileStep, k: u64, e: u64) -> (u64, u64, u64, u64) {
    let g = &s.geom;
    let c_l = e % g.ic;
    let rest = e / g.ic;
    let kx = rest % k;
    let rest = rest / k;
    (rest / g.kh, rest % g.kh, kx, c_l)
}

fn build_tables(p: &Problem, d: &LayerData, s: &TileStep) -> TileTables {
    let g = &s.geom;
    let lanes = p.lanes();
    let chunks = s.reduction.div_ceil(p.n * lanes);
    let pixels = g.pixels();
    let mut act = vec![0i32; (pixels * chunks * p.n * lanes) as usize];
    for px in 0..pixels {
        let (b, y, x) = (g.b0 + px / (g.oh * g.ow), g.y0 + (px / g.ow) % g.oh, g.x0 + px % g.ow);
        for e in 0..s.reduction {
            let (gl, kyl, kx, cl) = element(s, p.k, e);
            let iy = (y * p.stride + g.ky0 + kyl) as i64 - p.pad as i64;
            let ix = (x * p.stride + kx) as i64 - p.pad as i64;
            // Input channel: the tile's first channel of its group `gl`.
            let ch = ic_start(p, g) + gl * p.cig + cl;
            act[(px * chunks * p.n * lanes + e) as usize] = d.x(p, b, iy, ix, ch);
        }
    }
    let ocs = g.out_channels();
    let mut wgt = vec![0i32; (s.colgroups * chunks * p.n * p.m * lanes) as usize];
    for u in 0..ocs {
        let (cg, col) = (u / p.m, u % p.m);
        let gu = u / g.oc;
        let oc = oc_start(p, g) + u;
        for e in 0..s.reduction {
            let (gl, kyl, kx, cl) = element(s, p.k, e);
            if gl != gu {
                continue; // block-diagonal: another group's segment
            }
            let (chunk, rem) = (e / (p.n * lanes), e % (p.n * lanes));
            let (row, lane) = (rem / lanes, rem % lanes);
            let idx = (((cg * chunks + chunk) * p.n + row) * p.m + col) * lanes + lane;
            wgt[idx as usize] = d.w(p, oc, g.ky0 + kyl, kx, g.c0 + cl);
        }
    }
    // Columns reading weights per row-chunk: the groups whose segments overlap its lanes.
    let seg = g.ic * g.kh * p.k;
    let cols = (0..chunks * p.n)
        .map(|cr| {
            let e0 = cr * lanes;
            if e0 >= s.reduction {
                return (0, 0);
            }
            let e1 = (e0 + lanes).min(s.reduction);
            let (g_lo, g_hi) = (e0 / seg, (e1 - 1) / seg);
            ((g_lo * g.oc) as u32, ((g_hi + 1) * g.oc).min(ocs) as u32)
        })
        .collect();
    TileTables { row_chunks: chunks * p.n, act, wgt, cols }
}

// Handle layout: [tile 20][temporal step 4][column group 8][pixel (activation) or column (weight) 16][row-chunk 16].
fn handle(tile: u64, step: u64, cg: u64, mid: u64, row_chunk: u64) -> u64 {
    (tile << 44) | (step << 40) | (cg << 32) | (mid << 16) | row_chunk
}

#[inline]
fn unpack(h: u64) -> (usize, u64, u64, u64, u64) {
    ((h >> 44) as usize, (h >> 40) & 0xf, (h >> 32) & 0xff, (h >> 16) & 0xffff, h & 0xffff)
}

struct Datapath<'a> {
    p: &'a Problem,
    slots: Vec<Option<TileTables>>,
    /// Digits of each operand in temporal mode (1 when it fits the fusion unit).
    da: u64,
    dw: u64,
    fusion_bits: u64,
}

impl Datapath<'_> {
    fn digit(&self, v: i32, i: u64, n: u64) -> i64 {
        if n == 1 {
            return v as i64;
        }
        let f = self.fusion_bits;
        let d = ((v as i64) >> (f * i)) & ((1i64 << f) - 1);
        // The top digit of a signed value is signed; lower digits are unsigned.
        if i + 1 == n && d >= 1 << (f - 1) { d - (1 << f) } else { d }
    }
}

impl Operands for Datapath<'_> {
    #[inline]
    fn product(&self, a: u64, w: u64) -> i64 {
        let (tile, step, cg, px, cr) = unpack(a);
        let col = (w >> 16) & 0xffff;
        let Some(t) = self.slots[tile].as_ref() else { return 0 };
        let lanes = self.p.lanes() as usize;
        let ai = (px * t.row_chunks + cr) as usize * lanes;
        let wi = ((cg * t.row_chunks + cr) * self.p.m + col) as usize * lanes;
        if lanes == 1 && self.da == 1 && self.dw == 1 {
            return (t.act[ai] * t.wgt[wi]) as i64;
        }
        let (av, wv) = (&t.act[ai..ai + lanes], &t.wgt[wi..wi + lanes]);
        if self.da == 1 && self.dw == 1 {
            // Lanes of at most fusion_bits: the fused unit's dot product (equal to the bricks' shift-add,
            // brick.rs tests it exhaustively); fits in 32 bits.
            return av.iter().zip(wv).map(|(x, y)| x * y).sum::<i32>() as i64;
        }
        let (i, j) = (step / self.dw, step % self.dw);
        let sum: i64 = av.iter().zip(wv).map(|(x, y)| self.digit(*x, i, self.da) * self.digit(*y, j, self.dw)).sum();
        sum << (self.fusion_bits * (i + j))
    }
}

/// A DMA transfer waiting in the queue.
#[derive(Clone, Copy, Debug)]
struct Queued {
    tile: usize,
    kind: TransferKind,
    bus_bits: u64,
    sram_words: u64,
    /// Earliest cycle it may start (buffer half released, or the issue cycle).
    earliest: u64,
    /// A store waits for this tile's results to be in the output buffer.
    after_ready_of: Option<usize>,
    /// The buffer half it refills waits for this cycle.
    half_free: u64,
}

#[derive(Clone, Copy, Debug)]
struct Active {
    q: Queued,
    latency_left: u64,
    bits_left: u64,
}

impl LayerData {
    /// Operands given by the user: JSON `{"inputs": [...], "weights": [...]}` with inputs in
    /// [batch][in_h][in_w][in_c] order and weights in [out_c][k][k][in_c / groups] order, each value
    /// in its operand's signed range.
    pub fn from_json(text: &str, origin: &str, p: &Problem) -> Result<LayerData, String> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Doc {
            inputs: Vec<i64>,
            weights: Vec<i64>,
        }
        let doc: Doc = serde_json::from_str(text).map_err(|e| format!("{origin}: {e}"))?;
        let check = |what: &str, v: &[i64], len: u64, bits: u64| -> Result<Vec<i32>, String> {
            if v.len() as u64 != len {
                return Err(format!("{origin}: {what} has {} values, the layer needs {len}", v.len()));
            }
            let (lo, hi) = operand_range(bits as u32, true);
            if let Some((i, x)) = v.iter().enumerate().find(|(_, x)| **x < lo || **x > hi) {
                return Err(format!("{origin}: {what}[{i}] = {x} is outside the {bits}-bit signed range {lo}..={hi}"));
            }
            Ok(v.iter().map(|x| *x as i32).collect())
        };
        Ok(LayerData {
            inputs: check("inputs", &doc.inputs, p.batch * p.in_h * p.in_w * p.in_c, p.a_bits)?,
            weights: check("weights", &doc.weights, p.out_c * p.k * p.k * p.cig, p.w_bits)?,
        })
    }
}

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

impl DetailedRun {
    /// Does this run agree with the fast engine's statistics for the layer?
    pub fn agrees_with(&self, fast: &crate::stats::LayerStats) -> bool {
        self.totals.end == fast.cycles.0 && self.totals.compute_cycles == fast.compute_cycles.0
    }
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
    let f = hw.array.fusion_bits as u64;
    let mut dp = Datapath {
        p,
        slots: (0..steps.len()).map(|_| None).collect(),
        da: if p.a_bits > f { p.a_bits.div_ceil(f) } else { 1 },
        dw: if p.w_bits > f { p.w_bits.div_ceil(f) } else { 1 },
        fusion_bits: f,
    };
    let (n, mcols) = (p.n as usize, p.m as usize);
    let mut array = SystolicArray::new(n, mcols, 32);
    let mut out = vec![0i64; (p.batch * p.out_h * p.out_w * p.out_c) as usize];
    let nt = steps.len();
    let mut cs = vec![u64::MAX; nt];
    let mut ce = vec![u64::MAX; nt];
    let mut ready = vec![u64::MAX; nt];
    let mut results_left: Vec<u64> = steps.iter().map(|s| s.geom.pixels() * s.geom.out_channels()).collect();
    let mut loads_left: Vec<usize> = steps.iter().map(|s| s.loads.iter().count()).collect();
    let mut loads_done_at = vec![0u64; nt];
    let mut streams: Vec<(usize, Stream)> = Vec::new();
    let mut queue: VecDeque<Queued> = VecDeque::new();
    let mut active: Option<Active> = None;
    let mut free_from = [[0u64; 2]; 2];
    let mut obuf_free = [0u64; 2];
    // Stores queued or running per output half: a new output tile waits until its half is stored.
    let mut obuf_pending = [0u32; 2];
    let (mut reads, mut writes) = ([0u64; 3], [0u64; 3]);
    let (mut dram_read, mut dram_write, mut beats) = (0u64, 0u64, 0u64);
    let (mut stall_read, mut stall_write) = (0u64, 0u64);
    let mut next_tile = 0usize;
    let mut finish = None;
    let enqueue_loads = |t: usize, earliest: u64, queue: &mut VecDeque<Queued>, free_from: &[[u64; 2]; 2]| {
        let s = &steps[t];
        for x in s.loads.iter() {
            let half_free = match x.kind {
                TransferKind::Weights => free_from[0][s.halves[0] as usize],
                TransferKind::Inputs => free_from[1][s.halves[1] as usize],
                _ => 0,
            };
            queue.push_back(Queued { tile: t, kind: x.kind, bus_bits: x.bus_bits, sram_words: x.sram_words, earliest, after_ready_of: None, half_free });
        }
    };
    enqueue_loads(0, 0, &mut queue, &free_from);
    let wbuf_reads = Cell::new(0u64);
    let mut act = vec![None; n];
    let mut cycle = 0u64;
    loop {
        // (a) Results seen this cycle go to the output buffer.
        for col in 0..mcols {
            let (valid, value) = array.output(col);
            if !valid {
                continue;
            }
            let Some((t, w)) = streams.iter().find_map(|(t, s)| s.window_of_result(cycle, n, col).map(|w| (*t, w))) else { continue };
            let s = &steps[t];
            let g = &s.geom;
            let pixels = g.pixels();
            let (cg, px) = (w / pixels, w % pixels);
            let u = cg * p.m + col as u64;
            if u >= g.out_channels() {
                continue;
            }
            let (b, y, x) = (g.b0 + px / (g.oh * g.ow), g.y0 + (px / g.ow) % g.oh, g.x0 + px % g.ow);
            let idx = (((b * p.out_h + y) * p.out_w + x) * p.out_c + oc_start(p, g) + u) as usize;
            if s.accumulate {
                reads[2] += 1;
                out[idx] = (out[idx] + value) as i32 as i64;
            } else {
                out[idx] = value;
            }
            writes[2] += 1;
            results_left[t] -= 1;
            if results_left[t] == 0 {
                ready[t] = cycle + 1;
                dp.slots[t] = None;
            }
        }
        // (c) The controller starts the next tile when the array, its loads and its output half allow.
        if next_tile < nt {
            let t = next_tile;
            let s = &steps[t];
            let array_free = t == 0 || ce[t - 1] <= cycle;
            let loaded = loads_left[t] == 0 && loads_done_at[t] <= cycle;
            let h = s.halves[2] as usize;
            let out_ok = !s.new_out || (obuf_pending[h] == 0 && obuf_free[h] <= cycle);
            if array_free && loaded && out_ok {
                cs[t] = cycle;
                ce[t] = cycle + s.busy;
                // Stall attribution for the idle cycles before this tile.
                let idle_from = if t == 0 { 0 } else { ce[t - 1] };
                let idle = cycle - idle_from;
                let read = loads_done_at[t].min(cycle).saturating_sub(idle_from);
                let read = if t == 0 { idle } else { read };
                stall_read += read;
                stall_write += idle - read;
                let release = release_cycle(p, ce[t]);
                free_from[0][s.halves[0] as usize] = release;
                free_from[1][s.halves[1] as usize] = release;
                dp.slots[t] = Some(build_tables(p, data, s));
                streams.push((t, Stream { start: cycle, windows: s.geom.pixels() * s.colgroups, t: s.t }));
                if t + 1 < nt {
                    enqueue_loads(t + 1, cycle, &mut queue, &free_from);
                }
                if t >= 1 && steps[t - 1].store.is_some() {
                    let x = steps[t - 1].store.unwrap();
                    obuf_pending[steps[t - 1].halves[2] as usize] += 1;
                    queue.push_back(Queued { tile: t - 1, kind: x.kind, bus_bits: x.bus_bits, sram_words: x.sram_words, earliest: 0, after_ready_of: Some(t - 1), half_free: 0 });
                }
                if t + 1 == nt
                    && let Some(x) = s.store {
                        obuf_pending[s.halves[2] as usize] += 1;
                        queue.push_back(Queued { tile: t, kind: x.kind, bus_bits: x.bus_bits, sram_words: x.sram_words, earliest: 0, after_ready_of: Some(t), half_free: 0 });
                    }
                next_tile += 1;
            }
        }
        // (b) The DMA: start the queue's head when the channel is idle and its conditions hold; a
        // transfer spends its latency, then one beat per cycle.
        loop {
            if active.is_none() {
                let Some(h) = queue.front() else { break };
                let cond_ready = h.after_ready_of.is_none_or(|t| ready[t] <= cycle);
                if !(cond_ready && h.earliest <= cycle && h.half_free <= cycle) {
                    break;
                }
                let q = queue.pop_front().unwrap();
                active = Some(Active { q, latency_left: p.dram.latency_cycles, bits_left: q.bus_bits });
                if q.bus_bits == 0 {
                    active.as_mut().unwrap().latency_left = 0;
                }
            }
            let a = active.as_mut().unwrap();
            if a.bits_left == 0 {
                // An empty transfer completes at once.
            } else if a.latency_left > 0 {
                a.latency_left -= 1;
                break;
            } else {
                a.bits_left = a.bits_left.saturating_sub(p.dram.bits_per_cycle);
                beats += 1;
                if a.bits_left > 0 {
                    break;
                }
            }
            // Completed at the end of this cycle (or now, if empty).
            let done = if a.q.bus_bits == 0 { cycle } else { cycle + 1 };
            let q = a.q;
            active = None;
            let s = &steps[q.tile];
            let buf = match q.kind {
                TransferKind::Weights => 0,
                TransferKind::Inputs => 1,
                _ => 2,
            };
            if q.kind.is_load() {
                dram_read += q.bus_bits;
                writes[buf] += q.sram_words;
                loads_left[q.tile] -= 1;
                loads_done_at[q.tile] = loads_done_at[q.tile].max(done);
            } else {
                dram_write += q.bus_bits;
                reads[2] += q.sram_words;
                obuf_free[s.halves[2] as usize] = done;
                obuf_pending[s.halves[2] as usize] -= 1;
                if q.tile + 1 == nt {
                    finish = Some(done);
                }
            }
            if done > cycle {
                break;
            }
        }
        if let Some(end) = finish
            && active.is_none() && queue.is_empty() && next_tile == nt {
                let last = nt - 1;
                let fill_drain = ready[last] - ce[last];
                stall_write += end - ready[last];
                let compute: u64 = steps.iter().map(|s| s.busy).sum();
                let expected = data.direct(p);
                let mismatches = out.iter().zip(&expected).filter(|(a, b)| a != b).count();
                return Ok(DetailedRun {
                    mapping: *m,
                    totals: RunTotals {
                        end,
                        compute_cycles: compute,
                        stall_read,
                        stall_write,
                        fill_drain,
                        reads: [reads[0] + wbuf_reads.get(), reads[1], reads[2]],
                        writes,
                        dram_read,
                        dram_write,
                    },
                    beats,
                    unit_cycles: array.unit_cycles,
                    output: out,
                    mismatches,
                    compute: cs.iter().zip(&ce).map(|(a, b)| (*a, *b)).collect(),
                });
            }
        // (d) The feeder drives the array for this cycle: one IBUF word per row with data.
        act.fill(None);
        for (row, a) in act.iter_mut().enumerate() {
            for (t, s) in &streams {
                if let Some((w, chunk_t)) = s.act_slot(cycle, row) {
                    let st = &steps[*t];
                    let (chunk, step) = (chunk_t / p.steps(), chunk_t % p.steps());
                    if (chunk * p.n + row as u64) * p.lanes() < st.reduction {
                        let pixels = st.geom.pixels();
                        assert!(cycle < release_cycle(p, ce[*t]), "input read after its half was released");
                        reads[1] += 1;
                        *a = Some(handle(*t as u64, step, w / pixels, w % pixels, chunk * p.n + row as u64));
                    }
                    break;
                }
            }
        }
        // Each unit reads its WBUF bank when its column has a weight for the row-chunk it sees.
        let slots = &dp.slots;
        let weight = |_row: usize, col: usize, a: Option<u64>| -> Option<u64> {
            let a = a?;
            let (tile, _, cg, _, cr) = unpack(a);
            let t = slots[tile].as_ref()?;
            let u = (cg * p.m) as u32 + col as u32;
            let (lo, hi) = t.cols[cr as usize];
            if u < lo || u >= hi {
                return None;
            }
            wbuf_reads.set(wbuf_reads.get() + 1);
            Some((a & !(0xffff << 16)) | ((col as u64) << 16))
        };
        let clear = streams.iter().any(|(_, s)| s.clear_at(cycle, n));
        let valid = streams.iter().any(|(_, s)| s.valid_at(cycle, n));
        array.step(&CycleInputs { act: &act, weight, clear, valid }, &dp);
        // Tiles whose results have all arrived leave the feeder.
        streams.retain(|(t, _)| ready[*t] == u64::MAX);
        cycle += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HwConfig, SHIPPED_CONFIGS};
    use crate::engine::CycleModel;
    use crate::mapping::Objective;
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
