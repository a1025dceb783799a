//! The detailed mode's clock: one [`Stepper`] holds a run's state and steps it a cycle at a time.
//!
//! Each cycle runs four steps, in this order (the order matters: it is what the fast engine's
//! timeline is checked against):
//!
//! 1. [`Stepper::collect_results`]: results the array's valid pulses deliver go to the output
//!    buffer (added to partial sums where the tile accumulates);
//! 2. [`Stepper::start_next_tile`]: the controller starts the next tile when the array, its loads
//!    and its output half allow, and queues its successor's loads and the stores that follow;
//! 3. [`Stepper::step_dma`]: the DMA starts the queue's head when the channel is idle and its
//!    conditions hold; a transfer spends the channel's latency, then one beat per cycle;
//! 4. [`Stepper::feed_array`]: the feeder drives the array for the cycle (one IBUF word per row
//!    with data, a WBUF read per unit with a weight) and the array steps.
//!
//! The run ends ([`Stepper::finished`]) in the cycle the last store completes.

use super::data::{DetailedRun, LayerData};
use super::datapath::{Datapath, build_tables, handle, unpack};
use crate::array::{CycleInputs, Stream, SystolicArray};
use crate::cycle::{Mapping, Problem, RunTotals, TileStep, TransferKind, oc_start, release_cycle};
use crate::memory::DramModel;
use std::cell::Cell;
use std::collections::VecDeque;

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

/// The state of one detailed run.
pub(super) struct Stepper<'a> {
    p: &'a Problem,
    m: &'a Mapping,
    data: &'a LayerData,
    steps: &'a [TileStep],
    dp: Datapath<'a>,
    array: SystolicArray,
    /// The layer's output [batch][out_h][out_w][out_c], 32-bit wrapped.
    out: Vec<i64>,
    /// Per tile: start and end of its streaming, the cycle its last result is in the output buffer.
    cs: Vec<u64>,
    ce: Vec<u64>,
    ready: Vec<u64>,
    results_left: Vec<u64>,
    loads_left: Vec<usize>,
    loads_done_at: Vec<u64>,
    /// Tiles in the feeder.
    streams: Vec<(usize, Stream)>,
    queue: VecDeque<Queued>,
    active: Option<Active>,
    /// Cycle from which each half of the WBUF and IBUF may be refilled; when each OBUF half is stored.
    free_from: [[u64; 2]; 2],
    obuf_free: [u64; 2],
    /// Stores queued or running per output half: a new output tile waits until its half is stored.
    obuf_pending: [u32; 2],
    /// Buffer word accesses [wbuf, ibuf, obuf] (WBUF reads are counted in `wbuf_reads`).
    reads: [u64; 3],
    writes: [u64; 3],
    wbuf_reads: Cell<u64>,
    dram_read: u64,
    dram_write: u64,
    beats: u64,
    stall_read: u64,
    stall_write: u64,
    next_tile: usize,
    /// The cycle the last store completed.
    finish: Option<u64>,
    /// Each row's IBUF word this cycle.
    act: Vec<Option<u64>>,
    cycle: u64,
}

impl<'a> Stepper<'a> {
    /// A run of `steps` (the schedule of `m` on `p`) on `data`, with the first tile's loads queued.
    pub(super) fn new(p: &'a Problem, m: &'a Mapping, data: &'a LayerData, steps: &'a [TileStep], fusion_bits: u64) -> Self {
        let f = fusion_bits;
        let dp = Datapath {
            p,
            slots: (0..steps.len()).map(|_| None).collect(),
            da: if p.a_bits > f { p.a_bits.div_ceil(f) } else { 1 },
            dw: if p.w_bits > f { p.w_bits.div_ceil(f) } else { 1 },
            fusion_bits: f,
        };
        let (n, mcols) = (p.n as usize, p.m as usize);
        let nt = steps.len();
        let mut st = Stepper {
            p,
            m,
            data,
            steps,
            dp,
            array: SystolicArray::new(n, mcols, 32),
            out: vec![0i64; (p.batch * p.out_h * p.out_w * p.out_c) as usize],
            cs: vec![u64::MAX; nt],
            ce: vec![u64::MAX; nt],
            ready: vec![u64::MAX; nt],
            results_left: steps.iter().map(|s| s.geom.pixels() * s.geom.out_channels()).collect(),
            loads_left: steps.iter().map(|s| s.loads.iter().count()).collect(),
            loads_done_at: vec![0u64; nt],
            streams: Vec::new(),
            queue: VecDeque::new(),
            active: None,
            free_from: [[0u64; 2]; 2],
            obuf_free: [0u64; 2],
            obuf_pending: [0u32; 2],
            reads: [0u64; 3],
            writes: [0u64; 3],
            wbuf_reads: Cell::new(0u64),
            dram_read: 0,
            dram_write: 0,
            beats: 0,
            stall_read: 0,
            stall_write: 0,
            next_tile: 0,
            finish: None,
            act: vec![None; n],
            cycle: 0,
        };
        st.enqueue_loads(0, 0);
        st
    }

    /// Step cycles until the run ends.
    pub(super) fn run(mut self) -> DetailedRun {
        loop {
            self.collect_results();
            self.start_next_tile();
            self.step_dma();
            if self.finished() {
                return self.into_run();
            }
            self.feed_array();
            self.cycle += 1;
        }
    }

    /// Queue tile `t`'s loads, each waiting for the buffer half it refills, issued at `earliest`.
    fn enqueue_loads(&mut self, t: usize, earliest: u64) {
        let steps = self.steps;
        let s = &steps[t];
        for x in s.loads.iter() {
            let half_free = match x.kind {
                TransferKind::Weights => self.free_from[0][s.halves[0] as usize],
                TransferKind::Inputs => self.free_from[1][s.halves[1] as usize],
                _ => 0,
            };
            self.queue.push_back(Queued { tile: t, kind: x.kind, bus_bits: x.bus_bits, sram_words: x.sram_words, earliest, after_ready_of: None, half_free });
        }
    }

    /// Queue tile `t`'s store (it waits for the tile's results), holding its output half.
    fn enqueue_store(&mut self, t: usize) {
        let steps = self.steps;
        let s = &steps[t];
        if let Some(x) = s.store {
            self.obuf_pending[s.halves[2] as usize] += 1;
            self.queue.push_back(Queued { tile: t, kind: x.kind, bus_bits: x.bus_bits, sram_words: x.sram_words, earliest: 0, after_ready_of: Some(t), half_free: 0 });
        }
    }

    /// (a) Results seen this cycle go to the output buffer.
    fn collect_results(&mut self) {
        let (p, n, cycle) = (self.p, self.p.n as usize, self.cycle);
        for col in 0..p.m as usize {
            let (valid, value) = self.array.output(col);
            if !valid {
                continue;
            }
            let Some((t, w)) = self.streams.iter().find_map(|(t, s)| s.window_of_result(cycle, n, col).map(|w| (*t, w))) else { continue };
            let s = &self.steps[t];
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
                self.reads[2] += 1;
                self.out[idx] = (self.out[idx] + value) as i32 as i64;
            } else {
                self.out[idx] = value;
            }
            self.writes[2] += 1;
            self.results_left[t] -= 1;
            if self.results_left[t] == 0 {
                self.ready[t] = cycle + 1;
                self.dp.slots[t] = None;
            }
        }
    }

    /// (c) The controller starts the next tile when the array, its loads and its output half allow.
    fn start_next_tile(&mut self) {
        let (p, cycle, nt) = (self.p, self.cycle, self.steps.len());
        if self.next_tile >= nt {
            return;
        }
        let (t, steps) = (self.next_tile, self.steps);
        let s = &steps[t];
        let array_free = t == 0 || self.ce[t - 1] <= cycle;
        let loaded = self.loads_left[t] == 0 && self.loads_done_at[t] <= cycle;
        let h = s.halves[2] as usize;
        let out_ok = !s.new_out || (self.obuf_pending[h] == 0 && self.obuf_free[h] <= cycle);
        if !(array_free && loaded && out_ok) {
            return;
        }
        self.cs[t] = cycle;
        self.ce[t] = cycle + s.busy;
        // Stall attribution for the idle cycles before this tile.
        let idle_from = if t == 0 { 0 } else { self.ce[t - 1] };
        let idle = cycle - idle_from;
        let read = self.loads_done_at[t].min(cycle).saturating_sub(idle_from);
        let read = if t == 0 { idle } else { read };
        self.stall_read += read;
        self.stall_write += idle - read;
        let release = release_cycle(p, self.ce[t]);
        self.free_from[0][s.halves[0] as usize] = release;
        self.free_from[1][s.halves[1] as usize] = release;
        self.dp.slots[t] = Some(build_tables(p, self.data, s));
        self.streams.push((t, Stream { start: cycle, windows: s.geom.pixels() * s.colgroups, t: s.t }));
        if t + 1 < nt {
            self.enqueue_loads(t + 1, cycle);
        }
        if t >= 1 {
            self.enqueue_store(t - 1);
        }
        if t + 1 == nt {
            self.enqueue_store(t);
        }
        self.next_tile += 1;
    }

    /// (b) The DMA: start the queue's head when the channel is idle and its conditions hold; a
    /// transfer spends its latency, then one beat per cycle.
    fn step_dma(&mut self) {
        let (p, cycle, nt) = (self.p, self.cycle, self.steps.len());
        loop {
            if self.active.is_none() {
                let Some(h) = self.queue.front() else { break };
                let cond_ready = h.after_ready_of.is_none_or(|t| self.ready[t] <= cycle);
                if !(cond_ready && h.earliest <= cycle && h.half_free <= cycle) {
                    break;
                }
                let q = self.queue.pop_front().unwrap();
                self.active = Some(Active { q, latency_left: p.dram.latency(), bits_left: q.bus_bits });
                if q.bus_bits == 0 {
                    self.active.as_mut().unwrap().latency_left = 0;
                }
            }
            let a = self.active.as_mut().unwrap();
            if a.bits_left == 0 {
                // An empty transfer completes at once.
            } else if a.latency_left > 0 {
                a.latency_left -= 1;
                break;
            } else {
                a.bits_left = a.bits_left.saturating_sub(p.dram.beat_bits());
                self.beats += 1;
                if a.bits_left > 0 {
                    break;
                }
            }
            // Completed at the end of this cycle (or now, if empty).
            let done = if a.q.bus_bits == 0 { cycle } else { cycle + 1 };
            let q = a.q;
            self.active = None;
            let s = &self.steps[q.tile];
            let buf = match q.kind {
                TransferKind::Weights => 0,
                TransferKind::Inputs => 1,
                _ => 2,
            };
            if q.kind.is_load() {
                self.dram_read += q.bus_bits;
                self.writes[buf] += q.sram_words;
                self.loads_left[q.tile] -= 1;
                self.loads_done_at[q.tile] = self.loads_done_at[q.tile].max(done);
            } else {
                self.dram_write += q.bus_bits;
                self.reads[2] += q.sram_words;
                self.obuf_free[s.halves[2] as usize] = done;
                self.obuf_pending[s.halves[2] as usize] -= 1;
                if q.tile + 1 == nt {
                    self.finish = Some(done);
                }
            }
            if done > cycle {
                break;
            }
        }
    }

    /// Has the last store completed, with nothing left to start or transfer?
    fn finished(&self) -> bool {
        self.finish.is_some() && self.active.is_none() && self.queue.is_empty() && self.next_tile == self.steps.len()
    }

    /// (d) The feeder drives the array for this cycle: one IBUF word per row with data; each unit
    /// reads its WBUF bank when its column has a weight for the row-chunk it sees. Tiles whose
    /// results have all arrived then leave the feeder.
    fn feed_array(&mut self) {
        let (p, n, cycle) = (self.p, self.p.n as usize, self.cycle);
        self.act.fill(None);
        for (row, a) in self.act.iter_mut().enumerate() {
            for (t, s) in &self.streams {
                if let Some((w, chunk_t)) = s.act_slot(cycle, row) {
                    let st = &self.steps[*t];
                    let (chunk, step) = (chunk_t / p.steps(), chunk_t % p.steps());
                    if (chunk * p.n + row as u64) * p.lanes() < st.reduction {
                        let pixels = st.geom.pixels();
                        assert!(cycle < release_cycle(p, self.ce[*t]), "input read after its half was released");
                        self.reads[1] += 1;
                        *a = Some(handle(*t as u64, step, w / pixels, w % pixels, chunk * p.n + row as u64));
                    }
                    break;
                }
            }
        }
        let slots = &self.dp.slots;
        let wbuf_reads = &self.wbuf_reads;
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
        let clear = self.streams.iter().any(|(_, s)| s.clear_at(cycle, n));
        let valid = self.streams.iter().any(|(_, s)| s.valid_at(cycle, n));
        self.array.step(&CycleInputs { act: &self.act, weight, clear, valid }, &self.dp);
        let ready = &self.ready;
        self.streams.retain(|(t, _)| ready[*t] == u64::MAX);
    }

    /// The finished run's measurements, its output checked against the direct convolution.
    fn into_run(self) -> DetailedRun {
        let end = self.finish.expect("finished");
        let last = self.steps.len() - 1;
        let fill_drain = self.ready[last] - self.ce[last];
        let stall_write = self.stall_write + (end - self.ready[last]);
        let compute: u64 = self.steps.iter().map(|s| s.busy).sum();
        let expected = self.data.direct(self.p);
        let mismatches = self.out.iter().zip(&expected).filter(|(a, b)| a != b).count();
        DetailedRun {
            mapping: *self.m,
            totals: RunTotals {
                end,
                compute_cycles: compute,
                stall_read: self.stall_read,
                stall_write,
                fill_drain,
                reads: [self.reads[0] + self.wbuf_reads.get(), self.reads[1], self.reads[2]],
                writes: self.writes,
                dram_read: self.dram_read,
                dram_write: self.dram_write,
            },
            beats: self.beats,
            unit_cycles: self.array.unit_cycles,
            output: self.out,
            mismatches,
            compute: self.cs.iter().zip(&self.ce).map(|(a, b)| (*a, *b)).collect(),
        }
    }
}
