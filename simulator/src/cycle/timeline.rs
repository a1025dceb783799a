//! The double-buffered timeline of a schedule: when each tile streams and each transfer runs,
//! and the run's totals ([`RunTotals`]) that the detailed mode must reproduce exactly.
//!
//! [`timeline`] runs ping-pong buffering throughout:
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

use super::problem::Problem;
use super::schedule::{TileSource, TileStep, Tiles, Transfer, TransferKind};
use crate::array::drain_cycles;
use serde::Serialize;

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
pub(super) fn ready_cycle(p: &Problem, s: &TileStep, compute_end: u64) -> u64 {
    compute_end + ready_delay(p, s.colgroups, s.last_cols, s.geom.pixels() * s.t)
}

/// [`ready_cycle`] less the end of streaming, for a tile of `colgroups` column groups whose last has
/// `last_cols` active columns and whose windows of one column group take `window` cycles in all (the
/// last full-width window ends that long before the streaming does).
pub(super) fn ready_delay(p: &Problem, colgroups: u64, last_cols: u64, window: u64) -> u64 {
    let last = p.n + last_cols;
    if colgroups > 1 { last.max((p.n + p.m).saturating_sub(window)) } else { last }
}

/// The cycle a tile's chunks have all left the feeder (its buffer halves may be refilled).
pub(crate) fn release_cycle(p: &Problem, compute_end: u64) -> u64 {
    compute_end + drain_cycles(p.n, p.m) - 1
}

/// The double-buffered timeline of a schedule, with its access counts; `record` keeps every
/// tile's and transfer's times (for traces and the detailed mode's check).
pub fn timeline(p: &Problem, steps: impl IntoIterator<Item = TileStep>, record: bool) -> Timeline {
    timeline_until(p, &mut Tiles(steps.into_iter()), record, None).expect("no cutoff")
}

/// When a timeline may give up: as soon as the layer provably ends after `max_cycles`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Cutoff {
    pub max_cycles: u64,
    /// Streaming cycles of all tiles ([`super::problem::busy_total`]).
    pub total_busy: u64,
    /// Cycles of the last tile's store.
    pub last_store: u64,
    /// Cycles of all DMA transfers, or a lower bound on them ([`dma_cycles`](super::dma::dma_cycles); 0 when unknown).
    pub dma_total: u64,
}

/// [`timeline`], giving up (`None`) as soon as the layer provably ends after `cutoff.max_cycles`:
/// when the rest of the streaming, the drain and the last store, or the DMA's remaining transfers
/// (the channel is serial), cannot finish in time.
pub(super) fn timeline_until(p: &Problem, tiles: &mut impl TileSource, record: bool, cutoff: Option<Cutoff>) -> Option<Timeline> {
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
