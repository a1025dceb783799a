//! The *flow bound*: a closed-form lower bound on a mapping's timeline, for the mapping search.
//!
//! In the timeline ([`super::timeline::timeline`]) tile j+1 starts no earlier than tile j's streaming
//! ends (B_j cycles after tile j started) and no earlier than its own loads (L_{j+1} cycles) are
//! done. Those loads go on the serial DMA no earlier than tile j's start, and, when tile j+1 starts
//! a new output tile in the half tile j-1 filled, tile j-1's store (S_{j-1}) follows them before
//! the half is free. Hence, for every j,
//!
//! ```text
//! start(j+1) - start(j) >= max(B_j, L_{j+1} + S_{j-1})
//! ```
//!
//! and the layer ends no earlier than the first tile's loads, the sum of those steps, the last tile's
//! streaming and drain, and its store. Summing per tile would cost as much as the timeline; instead
//! the transitions j -> j+1 are split into *classes* by which loop of the order stepped (the inner,
//! middle or outer one), and since a sum of maxima is at least the maximum of the sums, each class
//! contributes max(sum of B, sum of L + S). Every class is a product of per-loop index sets (all,
//! first, last, all but the first, all but the last), so its sums are sums over the loops' edge
//! classes (inclusion-exclusion for the "all but" sets), cached per tiling and shared by its six
//! loop orders. Store terms use the smallest store of each kind, which keeps them lower bounds.
//!
//! A second, *fine* bound ([`FlowSums::fine_bound`]) splits the steps further, by each tile's place
//! (first, middle, last) along every tiled dimension, so that edge tiles and the steps into them
//! are counted apart from the interior ones: it catches most of the mappings the coarse one lets
//! through, at a few times its cost, and the search applies it just before a timeline.
//!
//! Both bounds are at least `bounds::edge_bound`, and at most the timeline's cycles (a
//! property test checks both on every loop order of random tilings): the search gives up on a
//! mapping, before its timeline, whenever one exceeds the best so far.

use super::bounds::BaseBound;
use super::dma::{Classes, DmaSums, Sel, dim, fold_or, input_sum, output_fold};
use super::problem::{self, Counts, Loop, Mapping, Problem};
use super::schedule::{Memo, TransferKind, clip, input_transfer, last_store_cycles, last_tile, output_transfer, weight_transfer};
use super::timeline::ready_delay;

/// Indices of one loop that a class of tiles runs over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Set {
    All,
    First,
    Last,
    ButFirst,
    ButLast,
    Empty,
}

/// What a class sum adds up over its tiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Term {
    /// Streaming cycles.
    Busy,
    /// Weight-tile transfer cycles.
    Weights,
    /// Input-tile transfer cycles.
    Inputs,
    /// Partial-sum reload cycles (32-bit output tiles).
    PsumLoads,
}

/// Cached factors of one tiling's class sums (valid for every loop order and output precision of
/// it). Each term factors into a sum over the loops it depends on times the tiles of the others.
#[derive(Clone, Debug, Default)]
pub(super) struct FlowSums {
    /// Output pixels of the selected P tiles.
    pixels: [Option<u64>; 3],
    /// Streaming cycles per pixel over the selected (O, R) tiles.
    per_pixel: [Option<u64>; 9],
    /// Weight transfers over the selected (O, R) tiles.
    weights: [Option<u64>; 9],
    /// Input transfers over the selected (P, groups of O, R) tiles, for one output-channel tile.
    inputs: [Option<u64>; 27],
    /// Partial-sum reloads over the selected (P, O) tiles.
    psums: [Option<u64>; 9],
    /// Cycles of the smallest partial-sum store.
    psum_min: Option<u64>,
    /// (output bits, the last tile's streaming, drain and final store).
    tail: Option<(u64, u64)>,
    /// (output bits, cycles of the smallest store of either kind).
    store_floor: Option<(u64, u64)>,
}

/// Tiles a selection picks along a loop of `count` tiles.
fn picked(sel: Sel, count: u64) -> u64 {
    if sel == Sel::All { count } else { 1 }
}

/// Output pixels of the selected P tiles.
fn pixels(p: &Problem, m: &Mapping, c: &Counts, sp: Sel) -> u64 {
    let sum = |cl: Classes| cl.iter().map(|(e, n)| e * n).sum::<u64>();
    sum(dim(p.batch, m.b, c.b, sp)) * sum(dim(p.out_h, m.oh, c.y, sp)) * sum(dim(p.out_w, m.ow, c.x, sp))
}

/// A loop set as direct selections with signs (the "all but" sets by inclusion-exclusion).
fn parts(set: Set) -> &'static [(i64, Sel)] {
    match set {
        Set::All => &[(1, Sel::All)],
        Set::First => &[(1, Sel::First)],
        Set::Last => &[(1, Sel::Last)],
        Set::ButFirst => &[(1, Sel::All), (-1, Sel::First)],
        Set::ButLast => &[(1, Sel::All), (-1, Sel::Last)],
        Set::Empty => &[],
    }
}

/// When the innermost loop that steps is P or O, every tile starts a new output tile and stores
/// one, so every step j -> j+1 (j >= 1) also waits for tile j-1's store.
fn every_tile_stores(m: &Mapping, c: &Counts) -> bool {
    m.order.iter().rev().find(|l| c.of_loop(**l) > 1).is_some_and(|l| *l != Loop::R)
}

fn loop_index(l: Loop) -> usize {
    match l {
        Loop::P => 0,
        Loop::O => 1,
        Loop::R => 2,
    }
}

impl FlowSums {
    /// The class sums of the tiling of `m`, seeded with the sums over all its tiles that the search
    /// already has: its streaming cycles ([`BaseBound::busy`]) and one pass over each operand's
    /// tiles ([`DmaSums`]).
    pub fn seeded(p: &Problem, base: &BaseBound, sums: &DmaSums) -> FlowSums {
        let all_pixels = p.batch * p.out_h * p.out_w;
        let mut f = FlowSums::default();
        f.pixels[0] = Some(all_pixels);
        f.per_pixel[0] = Some(base.busy / all_pixels);
        f.weights[0] = Some(sums.weights);
        // DmaSums count the inputs of each group block once; so does `inputs`.
        f.inputs[0] = Some(sums.inputs);
        f.psums[0] = Some(sums.psum_round_trip / 2);
        f
    }

    fn term(&mut self, p: &Problem, m: &Mapping, c: &Counts, term: Term, [sp, so, sr]: [Sel; 3]) -> u64 {
        let ix = |s: Sel| s as usize;
        match term {
            Term::Busy => {
                let px = *self.pixels[ix(sp)].get_or_insert_with(|| pixels(p, m, c, sp));
                let per = *self.per_pixel[ix(so) * 3 + ix(sr)].get_or_insert_with(|| {
                    fold_or(p, m, c, [so, sr], |acc, g, oc, kh, ic, n| acc + n * problem::pixel_cycles(p, g, oc, ic, kh))
                });
                px * per
            }
            Term::Weights => {
                let w = *self.weights[ix(so) * 3 + ix(sr)]
                    .get_or_insert_with(|| fold_or(p, m, c, [so, sr], |acc, g, oc, kh, ic, n| acc + n * weight_transfer(p, (g * oc, kh, ic)).cycles));
                picked(sp, c.p()) * w
            }
            Term::Inputs => {
                // Inputs depend on O only through its group blocks.
                let so_groups = if c.gb > 1 { so } else { Sel::All };
                let a = *self.inputs[(ix(sp) * 3 + ix(so_groups)) * 3 + ix(sr)].get_or_insert_with(|| input_sum(p, m, c, [sp, so_groups, sr]));
                // ... and are loaded again for every output-channel tile of a group.
                picked(so, c.oi) * a
            }
            Term::PsumLoads => {
                let s = *self.psums[ix(sp) * 3 + ix(so)].get_or_insert_with(|| output_fold(p, m, c, [sp, so], TransferKind::PsumLoad, 0, |acc, cycles, n| acc + n * cycles));
                picked(sr, c.r()) * s
            }
        }
    }

    /// Sum of `term` over a product of loop sets (`[P, O, R]`).
    fn sum(&mut self, p: &Problem, m: &Mapping, c: &Counts, term: Term, sets: [Set; 3]) -> u64 {
        let mut total = 0i64;
        for &(s0, sp) in parts(sets[0]) {
            for &(s1, so) in parts(sets[1]) {
                for &(s2, sr) in parts(sets[2]) {
                    total += s0 * s1 * s2 * self.term(p, m, c, term, [sp, so, sr]) as i64;
                }
            }
        }
        debug_assert!(total >= 0, "{term:?} over {sets:?}: {total}");
        total.max(0) as u64
    }

    /// After the last tile starts: its streaming, drain ([`ready_delay`]) and final store, in cycles.
    fn tail(&mut self, p: &Problem, m: &Mapping, c: &Counts) -> u64 {
        match self.tail {
            Some((bits, t)) if bits == p.out_bits => t,
            _ => {
                let g = last_tile(p, m, c);
                let ocs = g.out_channels();
                let colgroups = ocs.div_ceil(p.m);
                let window = g.pixels() * problem::window_cycles(p, problem::reduction(p, g.g, g.ic, g.kh));
                let t = g.pixels() * problem::pixel_cycles(p, g.g, g.oc, g.ic, g.kh)
                    + ready_delay(p, colgroups, ocs - (colgroups - 1) * p.m, window)
                    + last_store_cycles(p, m, c);
                self.tail = Some((p.out_bits, t));
                t
            }
        }
    }

    /// Cycles of the smallest partial-sum store, and of the smallest store of either kind (partial
    /// sums or final outputs), over every output tile.
    fn store_floor(&mut self, p: &Problem, m: &Mapping, c: &Counts) -> (u64, u64) {
        let min = |kind| output_fold(p, m, c, [Sel::All; 2], kind, u64::MAX, |acc, cycles, _| acc.min(cycles));
        let psum_min = *self.psum_min.get_or_insert_with(|| min(TransferKind::PsumStore));
        match self.store_floor {
            Some((bits, floor)) if bits == p.out_bits => (psum_min, floor),
            _ => {
                let floor = psum_min.min(min(TransferKind::Outputs));
                self.store_floor = Some((p.out_bits, floor));
                (psum_min, floor)
            }
        }
    }

    /// The fine flow bound of mapping `m` (a loop order of the tiling these sums belong to), in
    /// cycles: the step inequality summed per class of tiles by their place (first, middle, last)
    /// along every tiled dimension. Within a class every tile has the same extents; input spans,
    /// which also depend on a tile's position, are taken at their cheapest over the class.
    pub fn fine_bound(&mut self, p: &Problem, m: &Mapping, c: &Counts) -> u64 {
        fine(p, m, c, self)
    }

    /// The (coarse) flow bound of mapping `m` (a loop order of the tiling these sums belong to), in
    /// cycles: the step inequality summed per class of steps by the loop that stepped.
    pub fn bound(&mut self, p: &Problem, m: &Mapping, c: &Counts) -> u64 {
        let tail = self.tail(p, m, c);
        let first = [Sel::First; 3];
        let mut total = self.term(p, m, c, Term::Weights, first) + self.term(p, m, c, Term::Inputs, first);
        let order = m.order;
        let n = order.map(|l| c.of_loop(l));
        let Some(inner) = (0..3).rev().find(|&k| n[k] > 1) else { return total + tail };
        let every_tile_stores = every_tile_stores(m, c);
        let grouped = p.groups > 1;
        for step in 0..=inner {
            if n[step] < 2 {
                continue;
            }
            // Tiles j (before the step) and j+1 (after it), per loop.
            let (mut before, mut after) = ([Set::All; 3], [Set::All; 3]);
            for (k, l) in order.iter().enumerate().skip(step) {
                let l = loop_index(*l);
                (before[l], after[l]) = if k == step { (Set::ButLast, Set::ButFirst) } else { (Set::Last, Set::First) };
            }
            let changed = |l: Loop| {
                let k = order.iter().position(|x| *x == l).expect("every loop is in the order");
                k == step || (k > step && n[k] > 1)
            };
            let busy = self.sum(p, m, c, Term::Busy, before);
            let mut loads = 0;
            if changed(Loop::O) || changed(Loop::R) {
                loads += self.sum(p, m, c, Term::Weights, after);
            }
            // Grouped layers reload inputs with each group block: a step of O changes it for sure
            // only when a group has one output-channel tile.
            if changed(Loop::P) || changed(Loop::R) || (grouped && changed(Loop::O) && c.oi == 1) {
                loads += self.sum(p, m, c, Term::Inputs, after);
            }
            if changed(Loop::P) || changed(Loop::O) {
                // Partial sums are reloaded into tiles past the first reduction tile.
                let mut resumed = after;
                resumed[2] = match after[2] {
                    Set::All | Set::ButFirst => Set::ButFirst,
                    Set::Last if c.r() > 1 => Set::Last,
                    _ => Set::Empty,
                };
                loads += self.sum(p, m, c, Term::PsumLoads, resumed);
            }
            if every_tile_stores {
                // Steps of this class, less the first step (tile 0 has no store before it); at most
                // one store per output tile is final, the others are partial sums.
                let steps = n[..step].iter().product::<u64>() * (n[step] - 1) - u64::from(step == inner);
                let finals = c.p() * c.o();
                let (psum_min, floor) = self.store_floor(p, m, c);
                loads += steps.saturating_sub(finals) * psum_min + steps.min(finals) * floor;
            }
            total += busy.max(loads);
        }
        total + tail
    }
}

/// A tile's place along one tiled dimension: the first tile, a middle one, or the last (a
/// dimension of one tile has only a last one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    First = 0,
    Middle = 1,
    Last = 2,
}

/// One tiled dimension: total extent, tile size and tiles.
#[derive(Clone, Copy, Debug)]
struct Axis {
    total: u64,
    size: u64,
    count: u64,
}

impl Axis {
    fn places(&self) -> &'static [Place] {
        match self.count {
            1 => &[Place::Last],
            2 => &[Place::First, Place::Last],
            _ => &[Place::First, Place::Middle, Place::Last],
        }
    }
    /// Tiles at a place.
    fn members(&self, at: Place) -> u64 {
        match at {
            Place::Middle => self.count - 2,
            _ => 1,
        }
    }
    /// The extent of the tiles at a place (only the last tile may be clipped).
    fn extent(&self, at: Place) -> u64 {
        match at {
            Place::First => clip(self.total, self.size, 0).1,
            Place::Middle => self.size,
            Place::Last => clip(self.total, self.size, self.count - 1).1,
        }
    }
    /// The tile indices at a place whose input spans are smallest there: spans grow away from the
    /// borders and shrink towards them, so over the middle tiles they are smallest at either end.
    fn span_probes(&self, at: Place) -> [u64; 2] {
        match at {
            Place::First => [0, 0],
            Place::Middle => [1, self.count - 2],
            Place::Last => [self.count - 1, self.count - 1],
        }
    }
}

/// Sub-dimensions of the tile index, and the loop each belongs to.
const B: usize = 0;
const Y: usize = 1;
const X: usize = 2;
const GB: usize = 3;
const OI: usize = 4;
const KI: usize = 5;
const CI: usize = 6;
const LOOP_DIMS: [&[usize]; 3] = [&[B, Y, X], &[GB, OI], &[KI, CI]];

/// [`FlowSums::fine_bound`], with `sums` for the tail and the smallest stores.
fn fine(p: &Problem, m: &Mapping, c: &Counts, sums: &mut FlowSums) -> u64 {
    let axes = [
        Axis { total: p.batch, size: m.b, count: c.b },
        Axis { total: p.out_h, size: m.oh, count: c.y },
        Axis { total: p.out_w, size: m.ow, count: c.x },
        Axis { total: p.groups, size: m.groups_per_pass, count: c.gb },
        Axis { total: p.cog, size: m.oc, count: c.oi },
        Axis { total: p.k, size: m.kh, count: c.ki },
        Axis { total: p.cig, size: m.ic, count: c.ci },
    ];
    let extent: [[u64; 3]; 7] = std::array::from_fn(|d| [Place::First, Place::Middle, Place::Last].map(|at| axes[d].extent(at)));
    // Dimensions from the outermost to the innermost, as the schedule's odometer steps them.
    let mut order = [0usize; 7];
    let mut loop_of = [0usize; 7];
    let mut k = 0;
    for l in m.order {
        let li = loop_index(l);
        for &d in LOOP_DIMS[li] {
            order[k] = d;
            loop_of[d] = li;
            k += 1;
        }
    }
    let grouped = p.groups > 1;
    let mut memo_in = Memo::new();
    let mut memo_w = Memo::new();
    let mut memo_ps = Memo::new();
    let busy = |v: &[Place; 7]| {
        let e = |d: usize| extent[d][v[d] as usize];
        e(B) * e(Y) * e(X) * problem::pixel_cycles(p, e(GB), e(OI), e(CI), e(KI))
    };
    let mut weights = |v: &[Place; 7]| {
        let e = |d: usize| extent[d][v[d] as usize];
        let key = (e(GB) * e(OI), e(KI), e(CI));
        memo_w.get_or(key, || weight_transfer(p, key)).cycles
    };
    let mut inputs = |v: &[Place; 7]| {
        let e = |d: usize| extent[d][v[d] as usize];
        let span = |o: &Axis, i: u64, t0: u64, taps: u64, extent: u64| {
            let (o0, len) = clip(o.total, o.size, i);
            problem::input_span(o0, len, t0, taps, p.stride, p.pad, extent).1
        };
        // A transfer's cycles grow with its span, except that a span of the whole extent may merge
        // into fewer, longer segments: the class's cheapest transfer is at its smallest span, or at
        // the whole extent if one of its tiles may span it (a probed one, or a middle tile whose
        // unclipped span reaches it).
        let mut rows = u64::MAX;
        let mut rows_whole = false;
        let ki = axes[KI].span_probes(v[KI]);
        for kidx in ki[0]..=ki[1] {
            let (ky0, kh) = clip(p.k, m.kh, kidx);
            for y in axes[Y].span_probes(v[Y]) {
                let r = span(&axes[Y], y, ky0, kh, p.in_h);
                rows = rows.min(r);
                rows_whole |= r == p.in_h;
            }
            rows_whole |= v[Y] == Place::Middle && (m.oh - 1) * p.stride + kh >= p.in_h;
        }
        let col_spans = axes[X].span_probes(v[X]).map(|x| span(&axes[X], x, 0, p.k, p.in_w));
        let cols = col_spans[0].min(col_spans[1]);
        let cols_whole = col_spans.contains(&p.in_w) || v[X] == Place::Middle && (m.ow - 1) * p.stride + p.k >= p.in_w;
        let chans = e(GB) * e(CI);
        let mut cheapest = u64::MAX;
        for r in [Some(rows), rows_whole.then_some(p.in_h)].into_iter().flatten() {
            for cl in [Some(cols), cols_whole.then_some(p.in_w)].into_iter().flatten() {
                let key = (e(B), r, cl, chans);
                cheapest = cheapest.min(memo_in.get_or(key, || input_transfer(p, key)).cycles);
            }
        }
        cheapest
    };
    let mut psum_loads = |v: &[Place; 7]| {
        let e = |d: usize| extent[d][v[d] as usize];
        let key = (e(B), e(Y), e(X), e(GB) * e(OI));
        memo_ps.get_or(key, || output_transfer(p, key, TransferKind::PsumLoad)).cycles
    };
    let first: [Place; 7] = std::array::from_fn(|d| axes[d].places()[0]);
    let last = [Place::Last; 7];
    let every_tile_stores = every_tile_stores(m, c);
    let store_floor = if every_tile_stores { sums.store_floor(p, m, c).1 } else { 0 };
    let mut total = weights(&first) + inputs(&first);
    // Every class of tile j but the last tile's, and the classes of tile j+1 it steps into.
    let mut v = first;
    loop {
        if v != last {
            // The dimension that steps: the innermost one not at its last tile.
            let pos = (0..7).rev().find(|&k| v[order[k]] != Place::Last).expect("not the last tile");
            let d = order[pos];
            let outer: u64 = order[..pos].iter().map(|&e| axes[e].members(v[e])).product();
            let ax = axes[d];
            let steps: [(Place, u64); 2] = match v[d] {
                Place::First if ax.count == 2 => [(Place::Last, 1), (Place::Last, 0)],
                Place::First => [(Place::Middle, 1), (Place::Last, 0)],
                _ => [(Place::Middle, ax.count.saturating_sub(3)), (Place::Last, 1)],
            };
            let mut changed = [false; 3];
            changed[loop_of[d]] = true;
            for &e in &order[pos + 1..] {
                if axes[e].count > 1 {
                    changed[loop_of[e]] = true;
                }
            }
            let (p_ch, o_ch, r_ch) = (changed[0], changed[1], changed[2]);
            let b = busy(&v);
            for (to, n) in steps {
                if n == 0 {
                    continue;
                }
                let mut w = v;
                w[d] = to;
                for &e in &order[pos + 1..] {
                    w[e] = axes[e].places()[0];
                }
                let mut loads = 0;
                if o_ch || r_ch {
                    loads += weights(&w);
                }
                // Grouped layers' inputs change with the group block (not the channel tile in it).
                if p_ch || r_ch || (grouped && changed_dim(&order[pos..], GB, &axes)) {
                    loads += inputs(&w);
                }
                let resumed = !(matches!(w[KI], Place::First) || axes[KI].count == 1) || !(matches!(w[CI], Place::First) || axes[CI].count == 1);
                if (p_ch || o_ch) && resumed {
                    loads += psum_loads(&w);
                }
                let count = outer * n;
                let mut stores = 0;
                if every_tile_stores {
                    // Tile 0 has no store before it.
                    stores = store_floor * (count - u64::from(v == first));
                }
                total += (count * b).max(count * loads + stores);
            }
        }
        // Next class vector (odometer over each dimension's places).
        let mut k = 7;
        loop {
            if k == 0 {
                return total + sums.tail(p, m, c);
            }
            k -= 1;
            let places = axes[k].places();
            let i = places.iter().position(|x| *x == v[k]).expect("a place of the axis");
            if i + 1 < places.len() {
                v[k] = places[i + 1];
                break;
            }
            v[k] = places[0];
        }
    }
}

/// Did dimension `d` change in a step that advances `dims[0]` and resets the rest?
fn changed_dim(dims: &[usize], d: usize, axes: &[Axis; 7]) -> bool {
    dims[0] == d || (dims[1..].contains(&d) && axes[d].count > 1)
}
