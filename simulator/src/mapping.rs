//! Mapping a layer onto the array: tiles, loop order, and the search over them.
//!
//! **Dataflow.** Columns hold output channels, rows the reduction. One
//! *window* computes one output pixel for up to M output channels: its
//! reduction vector (group, kernel row, kernel column, input channel — in
//! that order, input channel innermost) is cut into chunks of N x lanes
//! elements, one chunk per cycle (times the temporal steps of wide
//! operands). A tile's windows run back to back over its pixels and column
//! groups.
//!
//! **Grouped and depthwise convolution** are native: `groups_per_pass`
//! groups share one window, their reduction segments side by side and each
//! column's weights zero outside its own group's segment (block-diagonal), so
//! a depthwise layer fills up to M columns with M channels. The zero weights
//! are structural: their buffer reads are skipped and their bricks idle, and
//! the utilization the engine reports shows what is lost.
//!
//! **Tiles** split the batch, output rows and columns (any sizes, not only
//! powers of two or squares), groups, output channels, input channels and
//! kernel rows. The three tile loops — pixels P, outputs O, reduction R — run
//! in any of 6 orders; operands are reloaded only when a loop they depend on
//! advances (weights: O, R; inputs: P, R, and O for grouped layers; outputs:
//! P, O). Partial sums stay in the output buffer while R is innermost and
//! spill to DRAM as 32-bit values otherwise.
//!
//! **Search.** Every tile size is drawn from the *balanced* sizes of its
//! dimension, ceil(X / c) for tile counts c = 1..=8, then powers of two up to
//! X; every combination that fits half of each buffer and every distinct loop
//! order is a candidate. Candidates are ranked by a lower bound on the
//! objective and evaluated exactly in that order until the next bound cannot
//! beat the best exact value: the result is the exact optimum over the
//! candidate set (branch and bound: provably pruned, deterministic).

use crate::brick::LanePlan;
use crate::memory::DramChannel;
use serde::Serialize;

/// The three tile loops.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Loop {
    /// Batch and output pixels.
    P,
    /// Output channels (and groups).
    O,
    /// Reduction: input channels and kernel rows.
    R,
}

/// The 6 loop orders, outermost first.
pub const ORDERS: [[Loop; 3]; 6] = [
    [Loop::P, Loop::O, Loop::R],
    [Loop::O, Loop::P, Loop::R],
    [Loop::P, Loop::R, Loop::O],
    [Loop::O, Loop::R, Loop::P],
    [Loop::R, Loop::P, Loop::O],
    [Loop::R, Loop::O, Loop::P],
];

/// What the search minimises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Default)]
pub enum Objective {
    /// Cycles, then energy.
    #[default]
    Cycles,
    /// Energy, then cycles.
    Energy,
    /// Energy x cycles.
    Edp,
}

impl std::str::FromStr for Objective {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cycles" => Ok(Objective::Cycles),
            "energy" => Ok(Objective::Energy),
            "edp" => Ok(Objective::Edp),
            o => Err(format!("unknown objective '{o}' (known: cycles, energy, edp)")),
        }
    }
}

impl Objective {
    pub fn as_str(self) -> &'static str {
        match self {
            Objective::Cycles => "cycles",
            Objective::Energy => "energy",
            Objective::Edp => "edp",
        }
    }

    /// The ranking key of (cycles, energy): smaller is better.
    pub fn key(self, cycles: f64, energy: f64) -> (f64, f64) {
        match self {
            Objective::Cycles => (cycles, energy),
            Objective::Energy => (energy, cycles),
            Objective::Edp => (energy * cycles, cycles),
        }
    }
}

/// A layer as the cycle model sees it, on one array.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub batch: u64,
    pub in_c: u64,
    pub out_c: u64,
    pub in_h: u64,
    pub in_w: u64,
    pub out_h: u64,
    pub out_w: u64,
    pub k: u64,
    pub stride: u64,
    pub pad: u64,
    pub groups: u64,
    /// Input and output channels per group.
    pub cig: u64,
    pub cog: u64,
    pub a_bits: u64,
    pub w_bits: u64,
    /// Bits the outputs are stored at (the consumer's activation precision).
    pub out_bits: u64,
    /// Array rows (N) and columns (M).
    pub n: u64,
    pub m: u64,
    pub plan: LanePlan,
    /// WBUF/IBUF word width in bits (fusion_bits^2 / brick_bits).
    pub word_bits: u64,
    /// Half of each buffer in bits (ping-pong): [wbuf, ibuf, obuf].
    pub half_bits: [u64; 3],
    pub dram: DramChannel,
    /// Bits of the input tensor the layer reads at all ([`input_bits_touched`], kept for the bounds).
    pub touched_input_bits: u64,
}

/// Partial sums and accumulator values are 32-bit.
pub const PSUM_BITS: u64 = 32;

impl Problem {
    /// Products of the whole layer (kernel taps over padding included).
    pub fn macs(&self) -> u64 {
        self.batch * self.out_h * self.out_w * self.k * self.k * self.cig * self.out_c
    }
    /// Elements one row of fusion units takes per chunk.
    pub fn lanes(&self) -> u64 {
        self.plan.lanes as u64
    }
    pub fn steps(&self) -> u64 {
        self.plan.steps as u64
    }
}

/// Tile sizes and loop order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Mapping {
    pub b: u64,
    pub oh: u64,
    pub ow: u64,
    /// Groups sharing one window (block-diagonal weights); > 1 only for grouped layers.
    pub groups_per_pass: u64,
    /// Output channels of a group per tile.
    pub oc: u64,
    /// Input channels of a group per tile.
    pub ic: u64,
    /// Kernel rows per tile.
    pub kh: u64,
    /// Loop order, outermost first.
    pub order: [Loop; 3],
}

impl Mapping {
    pub fn describe(&self) -> String {
        let order: Vec<&str> = self.order.iter().map(|l| match l {
            Loop::P => "P",
            Loop::O => "O",
            Loop::R => "R",
        }).collect();
        format!(
            "b={} oh={} ow={} groups/pass={} oc={} ic={} kh={} order={}",
            self.b,
            self.oh,
            self.ow,
            self.groups_per_pass,
            self.oc,
            self.ic,
            self.kh,
            order.join(">")
        )
    }
}

/// Tile counts along each tiled dimension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counts {
    pub b: u64,
    pub y: u64,
    pub x: u64,
    pub gb: u64,
    pub oi: u64,
    pub ki: u64,
    pub ci: u64,
}

impl Counts {
    pub fn of(p: &Problem, m: &Mapping) -> Counts {
        Counts {
            b: p.batch.div_ceil(m.b),
            y: p.out_h.div_ceil(m.oh),
            x: p.out_w.div_ceil(m.ow),
            gb: p.groups.div_ceil(m.groups_per_pass),
            oi: p.cog.div_ceil(m.oc),
            ki: p.k.div_ceil(m.kh),
            ci: p.cig.div_ceil(m.ic),
        }
    }
    pub fn p(&self) -> u64 {
        self.b * self.y * self.x
    }
    pub fn o(&self) -> u64 {
        self.gb * self.oi
    }
    pub fn r(&self) -> u64 {
        self.ki * self.ci
    }
    pub fn of_loop(&self, l: Loop) -> u64 {
        match l {
            Loop::P => self.p(),
            Loop::O => self.o(),
            Loop::R => self.r(),
        }
    }
}

/// Reduction elements of one window: groups x input channels x kernel rows x kernel columns.
pub fn reduction(p: &Problem, groups: u64, ic: u64, kh: u64) -> u64 {
    groups * ic * kh * p.k
}

/// Streaming cycles of one output pixel of a tile of `groups` groups of `oc` output channels, `ic`
/// input channels and `kh` kernel rows: its column groups (windows) times the chunks of each.
pub fn pixel_cycles(p: &Problem, groups: u64, oc: u64, ic: u64, kh: u64) -> u64 {
    (groups * oc).div_ceil(p.m) * window_cycles(p, reduction(p, groups, ic, kh))
}

/// Chunks (cycles) of one window.
pub fn window_cycles(p: &Problem, red: u64) -> u64 {
    red.div_ceil(p.n * p.lanes()) * p.steps()
}

/// Weight-buffer reads of one pixel (all column groups) in 32-bit words: for each active column, the
/// row-chunks that overlap its group's reduction segment (block-diagonal zeros are skipped).
pub fn weight_reads_per_pixel(p: &Problem, groups: u64, oc: u64, ic: u64, kh: u64) -> u64 {
    let seg = ic * kh * p.k;
    let lanes = p.lanes();
    // Sum over groups g of ceil((g+1) seg / lanes) - floor(g seg / lanes), as two floor sums.
    let per_group = floor_sum(groups, lanes, seg, seg + lanes - 1) - floor_sum(groups, lanes, seg, 0);
    per_group * oc * p.steps()
}

/// Sum of floor((a i + b) / m) for i in 0..n, in O(log m) steps (the Euclid-like reduction of the
/// AtCoder Library's `floor_sum`).
pub fn floor_sum(mut n: u64, mut m: u64, mut a: u64, mut b: u64) -> u64 {
    let mut sum = 0;
    if n == 0 {
        return 0;
    }
    loop {
        if a >= m {
            sum += n * (n - 1) / 2 * (a / m);
            a %= m;
        }
        if b >= m {
            sum += n * (b / m);
            b %= m;
        }
        let y_max = a * n + b;
        if y_max < m {
            return sum;
        }
        n = y_max / m;
        b = y_max % m;
        std::mem::swap(&mut m, &mut a);
    }
}

/// Input rows (or columns) a tile reads: output positions [o0, o0 + len) with kernel taps [t0, t0 + taps),
/// clipped to the input [0, extent): returns (first row, rows).
pub fn input_span(o0: u64, len: u64, t0: u64, taps: u64, stride: u64, pad: u64, extent: u64) -> (u64, u64) {
    let lo = (o0 * stride + t0) as i64 - pad as i64;
    let hi = ((o0 + len - 1) * stride + t0 + taps - 1) as i64 - pad as i64; // inclusive
    let lo_c = lo.max(0);
    let hi_c = hi.min(extent as i64 - 1);
    if hi_c < lo_c { (0, 0) } else { (lo_c as u64, (hi_c - lo_c + 1) as u64) }
}

/// Input positions along one axis that any output reads (strides wider than the kernel skip some).
fn touched(out: u64, k: u64, stride: u64, pad: u64, extent: u64) -> u64 {
    if k >= stride {
        input_span(0, out, 0, k, stride, pad, extent).1
    } else {
        (0..out).map(|o| input_span(o, 1, 0, k, stride, pad, extent).1).sum()
    }
}

/// Bits of the input tensor that the layer reads at all: every mapping loads at least these.
pub fn input_bits_touched(p: &Problem) -> u64 {
    let rows = touched(p.out_h, p.k, p.stride, p.pad, p.in_h);
    let cols = touched(p.out_w, p.k, p.stride, p.pad, p.in_w);
    p.batch * rows * cols * p.in_c * p.a_bits
}

/// Buffer footprints of the largest tile, in bits: [wbuf, ibuf, obuf].
pub fn footprints(p: &Problem, m: &Mapping) -> [u64; 3] {
    let rows = ((m.oh - 1) * p.stride + m.kh).min(p.in_h);
    let cols = ((m.ow - 1) * p.stride + p.k).min(p.in_w);
    let chans = m.groups_per_pass * m.ic;
    let w = m.groups_per_pass * m.oc * m.kh * p.k * m.ic * p.plan.w_lane as u64;
    let i = m.b * rows * cols * chans * p.plan.a_lane as u64;
    let o = m.b * m.oh * m.ow * m.groups_per_pass * m.oc * PSUM_BITS;
    [w, i, o]
}

pub fn fits(p: &Problem, m: &Mapping) -> bool {
    let f = footprints(p, m);
    (0..3).all(|i| f[i] <= p.half_bits[i])
}

/// Balanced tile sizes of a dimension of extent x: ceil(x / c) for c = 1..=8, then c = 16, 32, ... up to x.
pub fn balanced_sizes(x: u64) -> Vec<u64> {
    let mut counts: Vec<u64> = (1..=8u64.min(x)).collect();
    let mut c = 16;
    while c < x {
        counts.push(c);
        c *= 2;
    }
    if x > 8 {
        counts.push(x);
    }
    let mut sizes: Vec<u64> = counts.into_iter().map(|c| x.div_ceil(c)).collect();
    sizes.sort_unstable_by(|a, b| b.cmp(a));
    sizes.dedup();
    sizes
}

/// Channel and kernel tile sizes. The tilings of one family differ only in their batch and spatial
/// tile sizes, so they stream for the same cycles ([`busy_total`] does not depend on the spatial
/// tiles) and load the same first weight tile: one bound covers them all ([`Family::bound`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Family {
    pub groups_per_pass: u64,
    pub oc: u64,
    pub ic: u64,
    pub kh: u64,
}

/// The families of a problem's candidates, in the order [`candidates`] lists them.
pub fn families(p: &Problem) -> Vec<Family> {
    let mut group_options = vec![1u64];
    if p.groups > 1 && p.cog <= p.m {
        let max_g = (p.m / p.cog).min(p.groups);
        group_options = balanced_sizes(max_g);
    }
    let oc_cols: Vec<u64> = {
        // Output channels per tile: whole multiples of M column groups, or everything if it is fewer.
        let groups_of_m = p.cog.div_ceil(p.m);
        let mut v: Vec<u64> = balanced_sizes(groups_of_m).into_iter().map(|g| (g * p.m).min(p.cog)).collect();
        v.dedup();
        v
    };
    let sizes_ic = balanced_sizes(p.cig);
    let sizes_kh = balanced_sizes(p.k);
    let mut out = Vec::new();
    for &g in &group_options {
        let (ocs, ics): (&[u64], &[u64]) = if g > 1 { (&[p.cog][..], &[p.cig][..]) } else { (&oc_cols[..], &sizes_ic[..]) };
        for &oc in ocs {
            for &ic in ics {
                for &kh in &sizes_kh {
                    out.push(Family { groups_per_pass: g, oc, ic, kh });
                }
            }
        }
    }
    out
}

impl Family {
    /// The family's tiling with the given batch and spatial tile sizes (first loop order).
    pub fn tiling(&self, b: u64, oh: u64, ow: u64) -> Mapping {
        Mapping { b, oh, ow, groups_per_pass: self.groups_per_pass, oc: self.oc, ic: self.ic, kh: self.kh, order: ORDERS[0] }
    }

    /// A lower bound on the cycles of every candidate of the family: the array path with the
    /// smallest first input tile and no last store, and the DMA floor with one spatial tile
    /// (both at most [`BaseBound::array`] and [`BaseBound::dma_floor`] of each of its tilings).
    pub fn bound(&self, p: &Problem) -> u64 {
        let base = BaseBound::of(p, &self.tiling(1, 1, 1));
        base.head(p).max(dma_floor(p, distinct_tiles(p, &base.counts, 1)))
    }
}

/// Every candidate of a family that fits the buffers, with each distinct loop order once,
/// appended to `out` (loop orders of one tiling adjacent).
pub fn family_candidates(p: &Problem, f: &Family, out: &mut Vec<Mapping>) {
    for &b in &balanced_sizes(p.batch) {
        for &oh in &balanced_sizes(p.out_h) {
            for &ow in &balanced_sizes(p.out_w) {
                let base = f.tiling(b, oh, ow);
                if !fits(p, &base) {
                    continue;
                }
                let c = Counts::of(p, &base);
                // Loops with a single tile change nothing: keep one order per arrangement
                // of the loops that have several.
                let mut seen: [[Option<Loop>; 3]; 6] = [[None; 3]; 6];
                for (k, order) in ORDERS.into_iter().enumerate() {
                    let mut key = [None; 3];
                    for (slot, l) in key.iter_mut().zip(order.iter().filter(|l| c.of_loop(**l) > 1)) {
                        *slot = Some(*l);
                    }
                    if seen[..k].contains(&key) {
                        continue;
                    }
                    seen[k] = key;
                    out.push(Mapping { order, ..base });
                }
            }
        }
    }
}

/// Every candidate mapping that fits the buffers, with each distinct loop order once.
pub fn candidates(p: &Problem) -> Vec<Mapping> {
    let mut out = Vec::new();
    for f in families(p) {
        family_candidates(p, &f, &mut out);
    }
    out
}

/// Position of a loop in an order (0 = outermost).
pub fn position(order: &[Loop; 3], l: Loop) -> usize {
    order.iter().position(|x| *x == l).unwrap_or(0)
}

/// Position of the innermost loop of `deps` that has more than one tile (None: the operand never changes).
fn innermost_dep(order: &[Loop; 3], c: &Counts, deps: &[Loop]) -> Option<usize> {
    deps.iter().filter(|d| c.of_loop(**d) > 1).map(|d| position(order, *d)).max()
}

/// How many times an operand depending on `deps` is loaded relative to one pass over its tiles:
/// the product of the trip counts of the loops it does not depend on that sit outside its innermost
/// dependent loop.
pub fn reload_factor(order: &[Loop; 3], c: &Counts, deps: &[Loop]) -> u64 {
    let Some(inner) = innermost_dep(order, c, deps) else { return 1 };
    order[..inner].iter().filter(|l| !deps.contains(l)).map(|l| c.of_loop(*l)).product()
}

/// Does the reduction loop sit inside both output loops (partial sums stay on chip)?
pub fn psums_stay(order: &[Loop; 3], c: &Counts) -> bool {
    let r = position(order, Loop::R);
    c.r() == 1 || (r > position(order, Loop::P) || c.p() == 1) && (r > position(order, Loop::O) || c.o() == 1)
}

/// How many times operands depending on `deps` are transferred: the product of the trip counts of
/// every loop outside or at its innermost dependent loop.
pub fn transfers(order: &[Loop; 3], c: &Counts, deps: &[Loop]) -> u64 {
    let Some(inner) = innermost_dep(order, c, deps) else { return 1 };
    order[..=inner].iter().map(|l| c.of_loop(*l)).product()
}

/// Lower bound on a mapping's cycles. Two paths bound the layer: the array (first tile's loads, all
/// streaming, the drain, the last store) and the DMA (every transfer's latency plus every tensor at
/// its reload factor, without halos or burst rounding).
pub fn lower_bound_cycles(p: &Problem, m: &Mapping) -> u64 {
    lower_bound_cycles_with(p, m, &BaseBound::of(p, m))
}

/// Distinct weight, input and output tiles of a tiling with `spatial` batch-and-pixel tiles (inputs
/// of a grouped layer also differ per group block).
pub fn distinct_tiles(p: &Problem, c: &Counts, spatial: u64) -> u64 {
    let input_tiles = spatial * c.r() * if p.groups > 1 { c.gb } else { 1 };
    c.o() * c.r() + input_tiles + spatial * c.o()
}

/// The DMA path's floor when each of `tiles` transfers pays the channel's latency and the weights,
/// the touched inputs and the outputs each cross the bus once, at one beat per bus width: no loop
/// order loads an operand less than once.
pub fn dma_floor(p: &Problem, tiles: u64) -> u64 {
    let bits = p.out_c * p.cig * p.k * p.k * p.w_bits + p.touched_input_bits + p.batch * p.out_h * p.out_w * p.out_c * p.out_bits;
    tiles * p.dram.latency_cycles + bits.div_ceil(p.dram.bits_per_cycle)
}

/// The order-independent part of a tiling's bound: computed once for all its loop orders.
#[derive(Clone, Copy, Debug)]
pub struct BaseBound {
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
        let bw = p.dram.bits_per_cycle;
        let first_w = m.groups_per_pass.min(p.groups) * m.oc * m.kh * p.k * m.ic * p.w_bits;
        let (_, rows) = input_span(0, m.oh, 0, m.kh, p.stride, p.pad, p.in_h);
        let (_, cols) = input_span(0, m.ow, 0, p.k, p.stride, p.pad, p.in_w);
        let first_a = m.b * rows * cols * m.groups_per_pass.min(p.groups) * m.ic * p.a_bits;
        let edge = |x: u64, size: u64| x - size * (x.div_ceil(size) - 1);
        let last_out_elements = edge(p.batch, m.b) * edge(p.out_h, m.oh) * edge(p.out_w, m.ow) * edge(p.cog, m.oc) * edge(p.groups, m.groups_per_pass);
        let head = 3 * p.dram.latency_cycles + first_w.div_ceil(bw) + first_a.div_ceil(bw) + busy + p.n + 1;
        let distinct_tiles = distinct_tiles(p, &counts, counts.p());
        BaseBound { counts, busy, array: head + (last_out_elements * p.out_bits).div_ceil(bw), last_out_elements, distinct_tiles }
    }

    /// A floor on the DMA's cycles under any loop order ([`dma_floor`]).
    pub fn dma_floor(&self, p: &Problem) -> u64 {
        dma_floor(p, self.distinct_tiles)
    }

    /// The array path without its last store (`p` is the problem the bound was made for).
    pub fn head(&self, p: &Problem) -> u64 {
        self.array - (self.last_out_elements * p.out_bits).div_ceil(p.dram.bits_per_cycle)
    }

    /// The same tiling's bound for a problem that differs only in its output bits.
    pub fn with_out_bits(self, from: &Problem, to: &Problem) -> BaseBound {
        BaseBound { array: self.head(from) + (self.last_out_elements * to.out_bits).div_ceil(to.dram.bits_per_cycle), ..self }
    }
}

/// [`lower_bound_cycles`] for one loop order, with the tiling's order-independent part given.
pub fn lower_bound_cycles_with(p: &Problem, m: &Mapping, base: &BaseBound) -> u64 {
    let c = base.counts;
    let bw = p.dram.bits_per_cycle;
    let lat = p.dram.latency_cycles;
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

/// Total streaming cycles of the array over all tiles: sum over tiles of windows x T.
pub fn busy_total(p: &Problem, m: &Mapping, c: &Counts) -> u64 {
    let pixels = p.batch * p.out_h * p.out_w;
    let mut total = 0;
    for (gn, g) in edge_classes(p.groups, m.groups_per_pass, c.gb) {
        for (on, oc) in edge_classes(p.cog, m.oc, c.oi) {
            for (kn, kh) in edge_classes(p.k, m.kh, c.ki) {
                for (cn, ic) in edge_classes(p.cig, m.ic, c.ci) {
                    total += gn * on * kn * cn * pixel_cycles(p, g, oc, ic, kh);
                }
            }
        }
    }
    total * pixels
}

/// The tile sizes of a dimension of extent x cut into `count` tiles of `size`: (how many, size).
pub fn edge_classes(x: u64, size: u64, count: u64) -> impl Iterator<Item = (u64, u64)> {
    let last = x - size * (count - 1);
    let classes = if last == size { [(count, size), (0, 0)] } else { [(count - 1, size), (1, last)] };
    classes.into_iter().filter(|(n, _)| *n > 0)
}

/// The groups of candidates that differ only in loop order (adjacent in [`candidates`]' output), as
/// index ranges: the search bounds each group once for all its orders.
pub fn order_groups(cands: &[Mapping]) -> Vec<(usize, usize)> {
    let mut groups: Vec<(usize, usize)> = Vec::new();
    for (i, m) in cands.iter().enumerate() {
        match groups.last_mut() {
            Some((s, e)) if Mapping { order: ORDERS[0], ..cands[*s] } == Mapping { order: ORDERS[0], ..*m } => *e = i + 1,
            _ => groups.push((i, i + 1)),
        }
    }
    groups
}

/// The result of evaluating one mapping exactly.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Score {
    pub cycles: u64,
    pub energy_nj: f64,
}

/// A node of a search tree, as the branch and bound queues it: an inner node (a set of mappings)
/// to expand, or a leaf (one mapping) to evaluate exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Branch<N> {
    Inner(N),
    Leaf(N),
}

/// A search tree over mappings whose nodes carry lower bounds on the objective key of every
/// mapping below them.
pub trait SearchTree {
    type Node: Copy;
    /// Push the children of an inner node (reached at `bound`) with their bounds onto `out`. A
    /// child may be the node itself again at a tighter bound (a refinement).
    fn expand(&mut self, node: Self::Node, bound: (f64, f64), out: &mut Vec<((f64, f64), Branch<Self::Node>)>);
    /// Evaluate a leaf exactly. `best` is the best score so far: the tree may give up (`None`) on a
    /// mapping it can prove to be worse, which never changes the result.
    fn exact(&mut self, leaf: Self::Node, best: Option<Score>) -> Option<Score>;
}

/// A queue entry: bound, then the order of pushing (a total order, so the search is deterministic),
/// the node, and (for a run's head in the heap) the range of its run still waiting.
#[derive(Clone, Copy)]
struct Queued<N>((f64, f64), u64, Branch<N>, (usize, usize));

impl<N> Queued<N> {
    /// The entry as the head of a run whose rest is `rest`.
    fn heading(self, rest: (usize, usize)) -> Self {
        Queued(self.0, self.1, self.2, rest)
    }
}

impl<N> PartialEq for Queued<N> {
    fn eq(&self, other: &Self) -> bool {
        self.1 == other.1
    }
}
impl<N> Eq for Queued<N> {}
impl<N> PartialOrd for Queued<N> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<N> Ord for Queued<N> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // Reversed: the standard heap is a max-heap.
        other.0.partial_cmp(&self.0).unwrap_or(std::cmp::Ordering::Equal).then(other.1.cmp(&self.1))
    }
}

/// Best-first branch and bound: take the node of lowest bound, expand it or evaluate it exactly,
/// and stop when no remaining bound can beat the best (starting from `initial`, the score of an
/// already evaluated mapping, if given). Returns the best leaf (None when nothing beat `initial`),
/// its score and how many leaves were evaluated exactly.
pub fn branch_and_bound<T: SearchTree>(
    tree: &mut T,
    objective: Objective,
    initial: Option<Score>,
    roots: Vec<((f64, f64), Branch<T::Node>)>,
) -> (Option<(T::Node, Score)>, usize) {
    let mut best: Option<(Option<T::Node>, Score, (f64, f64))> = initial.map(|s| (None, s, objective.key(s.cycles as f64, s.energy_nj)));
    let limit = best.as_ref().map_or(f64::INFINITY, |(_, _, k)| k.0);
    let mut seq = 0u64;
    // Siblings wait in sorted runs and enter the heap one at a time, each when the one before it is
    // taken: the heap stays small, and nodes come out in exactly the order a heap of every node
    // would give (each run's head is its smallest).
    let mut runs: Vec<Queued<T::Node>> = Vec::new();
    let mut heap = std::collections::BinaryHeap::new();
    let mut queue = |heap: &mut std::collections::BinaryHeap<Queued<T::Node>>, runs: &mut Vec<Queued<T::Node>>, nodes: &mut dyn Iterator<Item = ((f64, f64), Branch<T::Node>)>, limit: f64| {
        let start = runs.len();
        runs.extend(nodes.filter(|(b, _)| b.0 <= limit).map(|(b, n)| {
            seq += 1;
            Queued(b, seq, n, (0, 0))
        }));
        // Queued orders in reverse (for the max-heap): sort descending to put the smallest first.
        runs[start..].sort_unstable_by(|a, b| b.cmp(a));
        if start < runs.len() {
            heap.push(runs[start].heading((start + 1, runs.len())));
        }
    };
    queue(&mut heap, &mut runs, &mut roots.into_iter(), limit);
    let (mut evaluated, mut children) = (0, Vec::new());
    while let Some(Queued(bound, _, node, (next, end))) = heap.pop() {
        if next < end {
            heap.push(runs[next].heading((next + 1, end)));
        }
        if let Some((_, _, key)) = &best {
            // Bounds only rise from here: stop once the primary bound exceeds the best primary value.
            if bound.0 > key.0 {
                break;
            }
        }
        match node {
            Branch::Inner(n) => {
                tree.expand(n, bound, &mut children);
                let limit = best.as_ref().map_or(f64::INFINITY, |(_, _, k)| k.0);
                // A child bounded above the best already would only be popped to stop the search.
                queue(&mut heap, &mut runs, &mut children.drain(..), limit);
            }
            Branch::Leaf(n) => {
                evaluated += 1;
                let Some(score) = tree.exact(n, best.as_ref().map(|b| b.1)) else { continue };
                let key = objective.key(score.cycles as f64, score.energy_nj);
                if best.as_ref().is_none_or(|(_, _, k)| key < *k) {
                    best = Some((Some(n), score, key));
                }
            }
        }
    }
    (best.and_then(|(n, s, _)| n.map(|n| (n, s))), evaluated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_sums_match_the_direct_sum() {
        for n in 0..40u64 {
            for m in 1..20u64 {
                for a in 0..25u64 {
                    for b in [0u64, 1, 7, 30] {
                        let direct: u64 = (0..n).map(|i| (a * i + b) / m).sum();
                        assert_eq!(floor_sum(n, m, a, b), direct, "n {n} m {m} a {a} b {b}");
                    }
                }
            }
        }
    }

    #[test]
    fn balanced_sizes_cover_counts() {
        assert_eq!(balanced_sizes(1), vec![1]);
        assert_eq!(balanced_sizes(7), vec![7, 4, 3, 2, 1]);
        assert_eq!(balanced_sizes(112), vec![112, 56, 38, 28, 23, 19, 16, 14, 7, 4, 2, 1]);
        for x in 1..300 {
            let s = balanced_sizes(x);
            assert_eq!(s[0], x);
            assert_eq!(*s.last().unwrap(), 1);
        }
    }

    #[test]
    fn input_spans_clip_padding() {
        // 3x3, stride 1, pad 1 over 8 rows: output rows 0..4 read input rows 0..=4.
        assert_eq!(input_span(0, 4, 0, 3, 1, 1, 8), (0, 5));
        assert_eq!(input_span(4, 4, 0, 3, 1, 1, 8), (3, 5));
        // Kernel-row tile 2..3 of output row 0 with pad 1: input row 1.
        assert_eq!(input_span(0, 1, 2, 1, 1, 1, 8), (1, 1));
        // Entirely in the padding.
        assert_eq!(input_span(0, 1, 0, 1, 1, 1, 8), (0, 0));
    }

    #[test]
    fn reload_factors() {
        let c = Counts { b: 1, y: 4, x: 1, gb: 1, oi: 3, ki: 1, ci: 2 };
        // P>O>R: weights (O,R) reloaded for every P tile; inputs (P,R) for every O tile.
        assert_eq!(reload_factor(&[Loop::P, Loop::O, Loop::R], &c, &[Loop::O, Loop::R]), 4);
        assert_eq!(reload_factor(&[Loop::P, Loop::O, Loop::R], &c, &[Loop::P, Loop::R]), 3);
        assert_eq!(reload_factor(&[Loop::O, Loop::R, Loop::P], &c, &[Loop::O, Loop::R]), 1);
        assert!(psums_stay(&[Loop::P, Loop::O, Loop::R], &c));
        assert!(!psums_stay(&[Loop::R, Loop::P, Loop::O], &c));
    }
}
