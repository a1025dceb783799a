//! The array's operands during a detailed run: each tile's operand tables, the handles the
//! feeder passes through the array, and the products the fusion units compute from them.

use super::data::LayerData;
use crate::array::Operands;
use crate::cycle::{Problem, TileStep, ic_start, oc_start};

/// Operand tables of one tile: the lanes each row gets per (pixel, chunk) and each unit per
/// (column group, chunk, row, column).
pub(super) struct TileTables {
    /// Row-chunks per window: reduction chunks (before temporal steps) x rows.
    row_chunks: u64,
    act: Vec<i32>,
    wgt: Vec<i32>,
    /// For each row-chunk, the tile columns [lo, hi) whose weights are not structural zeros there
    /// (all active columns for a dense layer; one group's columns for block-diagonal ones).
    pub(super) cols: Vec<(u32, u32)>,
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

pub(super) fn build_tables(p: &Problem, d: &LayerData, s: &TileStep) -> TileTables {
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
pub(super) fn handle(tile: u64, step: u64, cg: u64, mid: u64, row_chunk: u64) -> u64 {
    (tile << 44) | (step << 40) | (cg << 32) | (mid << 16) | row_chunk
}

#[inline]
pub(super) fn unpack(h: u64) -> (usize, u64, u64, u64, u64) {
    ((h >> 44) as usize, (h >> 40) & 0xf, (h >> 32) & 0xff, (h >> 16) & 0xffff, h & 0xffff)
}

pub(super) struct Datapath<'a> {
    pub(super) p: &'a Problem,
    /// Each tile's operand tables while it streams.
    pub(super) slots: Vec<Option<TileTables>>,
    /// Digits of each operand in temporal mode (1 when it fits the fusion unit).
    pub(super) da: u64,
    pub(super) dw: u64,
    pub(super) fusion_bits: u64,
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
