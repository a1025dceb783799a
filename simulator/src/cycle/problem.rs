//! A layer as the cycle model sees it ([`Problem`]), a mapping's tile sizes and loop order
//! ([`Mapping`]), and the arithmetic both imply: tile counts, streaming cycles, buffer footprints,
//! reload factors. The first module of the cycle model's order; it refers to no other.
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

use crate::brick::LanePlan;
use crate::config::HwConfig;
use crate::cost::SimError;
use crate::layer::{Layer, LayerKind};
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
pub(super) const ORDERS: [[Loop; 3]; 6] = [
    [Loop::P, Loop::O, Loop::R],
    [Loop::O, Loop::P, Loop::R],
    [Loop::P, Loop::R, Loop::O],
    [Loop::O, Loop::R, Loop::P],
    [Loop::R, Loop::P, Loop::O],
    [Loop::R, Loop::O, Loop::P],
];

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
    /// Bits of the input tensor the layer reads at all (`input_bits_touched`, kept for the bounds).
    pub touched_input_bits: u64,
}

/// Partial sums and accumulator values are 32-bit.
pub(super) const PSUM_BITS: u64 = 32;

impl Problem {
    /// The layer as the cycle model sees it on `hw`; `out_bits` defaults to the layer's activation bits.
    pub fn of(hw: &HwConfig, layer: &Layer) -> Result<Problem, SimError> {
        layer.validate().map_err(|e| SimError::new(layer, format!("{}: {}", e.field, e.message)))?;
        let a = &hw.array;
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
        let mem = &hw.memory;
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
            dram: DramChannel::of(hw),
            touched_input_bits: 0,
        };
        p.touched_input_bits = input_bits_touched(&p);
        Ok(p)
    }

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
pub(super) struct Counts {
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
pub(super) fn reduction(p: &Problem, groups: u64, ic: u64, kh: u64) -> u64 {
    groups * ic * kh * p.k
}

/// Streaming cycles of one output pixel of a tile of `groups` groups of `oc` output channels, `ic`
/// input channels and `kh` kernel rows: its column groups (windows) times the chunks of each.
pub(super) fn pixel_cycles(p: &Problem, groups: u64, oc: u64, ic: u64, kh: u64) -> u64 {
    (groups * oc).div_ceil(p.m) * window_cycles(p, reduction(p, groups, ic, kh))
}

/// Chunks (cycles) of one window.
pub(super) fn window_cycles(p: &Problem, red: u64) -> u64 {
    red.div_ceil(p.n * p.lanes()) * p.steps()
}

/// Weight-buffer reads of one pixel (all column groups) in 32-bit words: for each active column, the
/// row-chunks that overlap its group's reduction segment (block-diagonal zeros are skipped).
pub(super) fn weight_reads_per_pixel(p: &Problem, groups: u64, oc: u64, ic: u64, kh: u64) -> u64 {
    let seg = ic * kh * p.k;
    let lanes = p.lanes();
    // Sum over groups g of ceil((g+1) seg / lanes) - floor(g seg / lanes), as two floor sums.
    let per_group = floor_sum(groups, lanes, seg, seg + lanes - 1) - floor_sum(groups, lanes, seg, 0);
    per_group * oc * p.steps()
}

/// Sum of floor((a i + b) / m) for i in 0..n, in O(log m) steps (the Euclid-like reduction of the
/// AtCoder Library's `floor_sum`).
pub(super) fn floor_sum(mut n: u64, mut m: u64, mut a: u64, mut b: u64) -> u64 {
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
pub(super) fn input_span(o0: u64, len: u64, t0: u64, taps: u64, stride: u64, pad: u64, extent: u64) -> (u64, u64) {
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
pub(super) fn input_bits_touched(p: &Problem) -> u64 {
    let rows = touched(p.out_h, p.k, p.stride, p.pad, p.in_h);
    let cols = touched(p.out_w, p.k, p.stride, p.pad, p.in_w);
    p.batch * rows * cols * p.in_c * p.a_bits
}

/// Buffer footprints of the largest tile, in bits: [wbuf, ibuf, obuf].
pub(super) fn footprints(p: &Problem, m: &Mapping) -> [u64; 3] {
    let rows = ((m.oh - 1) * p.stride + m.kh).min(p.in_h);
    let cols = ((m.ow - 1) * p.stride + p.k).min(p.in_w);
    let chans = m.groups_per_pass * m.ic;
    let w = m.groups_per_pass * m.oc * m.kh * p.k * m.ic * p.plan.w_lane as u64;
    let i = m.b * rows * cols * chans * p.plan.a_lane as u64;
    let o = m.b * m.oh * m.ow * m.groups_per_pass * m.oc * PSUM_BITS;
    [w, i, o]
}

pub(super) fn fits(p: &Problem, m: &Mapping) -> bool {
    let f = footprints(p, m);
    (0..3).all(|i| f[i] <= p.half_bits[i])
}

/// Position of a loop in an order (0 = outermost).
pub(super) fn position(order: &[Loop; 3], l: Loop) -> usize {
    order.iter().position(|x| *x == l).unwrap_or(0)
}

/// Position of the innermost loop of `deps` that has more than one tile (None: the operand never changes).
fn innermost_dep(order: &[Loop; 3], c: &Counts, deps: &[Loop]) -> Option<usize> {
    deps.iter().filter(|d| c.of_loop(**d) > 1).map(|d| position(order, *d)).max()
}

/// How many times an operand depending on `deps` is loaded relative to one pass over its tiles:
/// the product of the trip counts of the loops it does not depend on that sit outside its innermost
/// dependent loop.
pub(super) fn reload_factor(order: &[Loop; 3], c: &Counts, deps: &[Loop]) -> u64 {
    let Some(inner) = innermost_dep(order, c, deps) else { return 1 };
    order[..inner].iter().filter(|l| !deps.contains(l)).map(|l| c.of_loop(*l)).product()
}

/// Does the reduction loop sit inside both output loops (partial sums stay on chip)?
#[cfg(test)] // Used by the tests only (the crate does not export it).
pub(super) fn psums_stay(order: &[Loop; 3], c: &Counts) -> bool {
    let r = position(order, Loop::R);
    c.r() == 1 || (r > position(order, Loop::P) || c.p() == 1) && (r > position(order, Loop::O) || c.o() == 1)
}

/// How many times operands depending on `deps` are transferred: the product of the trip counts of
/// every loop outside or at its innermost dependent loop.
pub(super) fn transfers(order: &[Loop; 3], c: &Counts, deps: &[Loop]) -> u64 {
    let Some(inner) = innermost_dep(order, c, deps) else { return 1 };
    order[..=inner].iter().map(|l| c.of_loop(*l)).product()
}

/// Total streaming cycles of the array over all tiles: sum over tiles of windows x T.
pub(super) fn busy_total(p: &Problem, m: &Mapping, c: &Counts) -> u64 {
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
pub(super) fn edge_classes(x: u64, size: u64, count: u64) -> impl Iterator<Item = (u64, u64)> {
    let last = x - size * (count - 1);
    let classes = if last == size { [(count, size), (0, 0)] } else { [(count - 1, size), (1, last)] };
    classes.into_iter().filter(|(n, _)| *n > 0)
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
