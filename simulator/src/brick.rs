//! BitBricks and fusion units, bit-exact.
//!
//! A BitBrick multiplies two `brick_bits`-wide digits, each signed (the top
//! digit of a signed value, sign-extended by one bit) or unsigned. A fusion
//! unit of (fusion_bits / brick_bits)^2 bricks composes them with shift-add
//! into lanes of a_lane x w_lane products and outputs the sum of the lanes
//! (a dot product): for 8/2, 1 x (8b x 8b), 2 x (8b x 4b), 4 x (4b x 4b or
//! 8b x 2b), 8 x (4b x 2b) or 16 x (2b x 2b) products per cycle. Operands
//! wider than fusion_bits run temporally, one fusion_bits-wide digit pair
//! per cycle (the high digit signed, the lower ones unsigned).
//!
//! For the RTL's 8/2 unit this module also implements the exact operand
//! packing of the ACT-lab `signed_spatial_mult` (rtl/NOTES.md section 1):
//! 32-bit words, the weight word transposed and replicated, and the 4-bit
//! mode. `validate fusion-unit` replays the RTL's golden vectors through it.

use serde::Serialize;

/// How a fusion unit is configured for one pair of operand widths.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct LanePlan {
    /// Activation lane width in bits (a power-of-two multiple of brick_bits, <= fusion_bits).
    pub a_lane: u32,
    /// Weight lane width in bits.
    pub w_lane: u32,
    /// Products per fusion unit per cycle (spatial lanes).
    pub lanes: u32,
    /// Cycles per product group: digits of wide operands run one pair per cycle (1 when both fit).
    pub steps: u32,
    /// BitBricks one product uses per step: (a_lane/brick_bits) * (w_lane/brick_bits).
    pub bricks_per_product: u32,
}

/// Smallest lane width >= bits among brick_bits * 2^k <= fusion_bits.
fn lane_width(bits: u32, brick_bits: u32, fusion_bits: u32) -> u32 {
    let mut w = brick_bits;
    while w < bits && w < fusion_bits {
        w *= 2;
    }
    w
}

impl LanePlan {
    /// The plan for `a_bits` x `w_bits` operands on a fusion unit of `fusion_bits` built from `brick_bits` bricks.
    pub fn new(a_bits: u32, w_bits: u32, fusion_bits: u32, brick_bits: u32) -> LanePlan {
        let a_lane = lane_width(a_bits, brick_bits, fusion_bits);
        let w_lane = lane_width(w_bits, brick_bits, fusion_bits);
        let steps = a_bits.div_ceil(fusion_bits).max(1) * w_bits.div_ceil(fusion_bits).max(1);
        LanePlan {
            a_lane,
            w_lane,
            lanes: (fusion_bits / a_lane) * (fusion_bits / w_lane),
            steps,
            bricks_per_product: (a_lane / brick_bits) * (w_lane / brick_bits),
        }
    }

    /// Reduction elements a row of fusion units consumes per cycle (lanes, or 1/steps of a lane).
    pub fn elements_per_cycle(&self) -> f64 {
        self.lanes as f64 / self.steps as f64
    }
}

/// A BitBrick: the product of two `bits`-wide digits; a signed digit is read as two's complement.
#[inline]
pub fn bit_brick(x: u32, x_signed: bool, y: u32, y_signed: bool, bits: u32) -> i32 {
    let as_int = |v: u32, signed: bool| -> i32 {
        let v = (v & ((1 << bits) - 1)) as i32;
        if signed && v >= 1 << (bits - 1) { v - (1 << bits) } else { v }
    };
    as_int(x, x_signed) * as_int(y, y_signed)
}

/// One product through bricks: `a` (a_lane bits) x `w` (w_lane bits), digit by digit with shift-add.
/// Signed values keep their sign in the top digit; the lower digits are unsigned.
pub fn brick_product(a: i32, a_lane: u32, a_signed: bool, w: i32, w_lane: u32, w_signed: bool, brick_bits: u32) -> i64 {
    let (da, dw) = (a_lane / brick_bits, w_lane / brick_bits);
    let mask = (1u32 << brick_bits) - 1;
    let mut sum = 0i64;
    for i in 0..da {
        let ai = ((a as u32) >> (brick_bits * i)) & mask;
        let ai_signed = a_signed && i + 1 == da;
        for j in 0..dw {
            let wj = ((w as u32) >> (brick_bits * j)) & mask;
            let wj_signed = w_signed && j + 1 == dw;
            sum += (bit_brick(ai, ai_signed, wj, wj_signed, brick_bits) as i64) << (brick_bits * (i + j));
        }
    }
    sum
}

/// Range of a `bits`-wide operand.
pub fn operand_range(bits: u32, signed: bool) -> (i64, i64) {
    if signed { (-(1i64 << (bits - 1)), (1i64 << (bits - 1)) - 1) } else { (0, (1i64 << bits) - 1) }
}

/// A fusion unit of `(fusion_bits / brick_bits)^2` BitBricks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FusionUnit {
    pub fusion_bits: u32,
    pub brick_bits: u32,
}

impl FusionUnit {
    #[cfg(test)] // Used by the tests only (the crate does not export it).
    pub fn bricks(&self) -> u32 {
        (self.fusion_bits / self.brick_bits).pow(2)
    }

    /// One cycle of a fused unit: the dot product of up to `plan.lanes` lane pairs, through the bricks.
    /// Values must lie in their lane's range; unused lanes are zero.
    pub fn dot(&self, plan: &LanePlan, a: &[i32], w: &[i32], a_signed: bool, w_signed: bool) -> i64 {
        debug_assert!(a.len() <= plan.lanes as usize && w.len() == a.len());
        a.iter()
            .zip(w)
            .map(|(&x, &y)| brick_product(x, plan.a_lane, a_signed, y, plan.w_lane, w_signed, self.brick_bits))
            .sum()
    }

    /// A product of operands of any width up to 2 * 16 bits, run temporally: each operand is split into
    /// fusion_bits-wide digits (the top one signed if the value is), and each digit pair takes one cycle
    /// of a fused unit. Returns the product and the cycles taken.
    #[cfg(test)] // Used by the tests only (the crate does not export it).
    pub fn temporal_product(&self, a: i64, a_bits: u32, a_signed: bool, w: i64, w_bits: u32, w_signed: bool) -> (i64, u32) {
        let f = self.fusion_bits;
        let da = a_bits.div_ceil(f).max(1);
        let dw = w_bits.div_ceil(f).max(1);
        let digit = |v: i64, i: u32, n: u32| -> i32 {
            if n == 1 {
                v as i32
            } else {
                ((v >> (f * i)) & ((1i64 << f) - 1)) as i32
            }
        };
        let mut sum = 0i64;
        for i in 0..da {
            let a_lane = if da == 1 { lane_width(a_bits, self.brick_bits, f) } else { f };
            for j in 0..dw {
                let w_lane = if dw == 1 { lane_width(w_bits, self.brick_bits, f) } else { f };
                let p = brick_product(
                    digit(a, i, da),
                    a_lane,
                    a_signed && i + 1 == da,
                    digit(w, j, dw),
                    w_lane,
                    w_signed && j + 1 == dw,
                    self.brick_bits,
                );
                sum += p << (f * (i + j));
            }
        }
        (sum, da * dw)
    }
}

// ---------------------------------------------------------------------------------------------
// The RTL's 8/2 fusion unit: mode bits and operand packing (rtl/NOTES.md section 1).

/// Operand widths the 8/2 RTL unit supports per lane.
pub const RTL_WIDTHS: [u32; 3] = [2, 4, 8];

/// The 4-bit mode of `signed_spatial_mult` (PRECISION=8, L_PRECISION=2): per level (8->4 in bits 3:2,
/// 4->2 in bits 1:0), bit 1 = activation split, bit 0 = weight split.
pub fn rtl_mode(a_bits: u32, w_bits: u32) -> u8 {
    let level = |split_a: bool, split_w: bool| ((split_a as u8) << 1) | split_w as u8;
    (level(a_bits < 8, w_bits < 8) << 2) | level(a_bits < 4, w_bits < 4)
}

fn check_rtl(a_bits: u32, w_bits: u32) {
    assert!(RTL_WIDTHS.contains(&a_bits) && RTL_WIDTHS.contains(&w_bits), "RTL widths are 2, 4 or 8");
}

/// Pack activation lanes into the RTL's 32-bit A word: byte r, slot g holds lane
/// g + (8/a_bits) * floor(r / (w_bits/2)).
pub fn pack_activations(a_bits: u32, w_bits: u32, lanes: &[i32]) -> u32 {
    check_rtl(a_bits, w_bits);
    pack_word(a_bits, lanes, |r, g| g + (8 / a_bits) * (r / (w_bits / 2)))
}

/// Pack weight lanes into the RTL's 32-bit W word: byte R, slot h holds lane floor(R / (a_bits/2)) + (8/a_bits) * h.
pub fn pack_weights(a_bits: u32, w_bits: u32, lanes: &[i32]) -> u32 {
    check_rtl(a_bits, w_bits);
    pack_word(w_bits, lanes, |r, h| r / (a_bits / 2) + (8 / a_bits) * h)
}

/// A 32-bit RTL word of four bytes, each cut into 8/slot_bits slots: byte r, slot s holds
/// `lanes[lane_of(r, s)]` (0 past the end), truncated to slot_bits.
fn pack_word(slot_bits: u32, lanes: &[i32], lane_of: impl Fn(u32, u32) -> u32) -> u32 {
    let mask = (1u32 << slot_bits) - 1;
    let mut word = 0u32;
    for r in 0..4 {
        for slot in 0..8 / slot_bits {
            let v = lanes.get(lane_of(r, slot) as usize).copied().unwrap_or(0) as u32 & mask;
            word |= v << (8 * r + slot_bits * slot);
        }
    }
    word
}

fn field(word: u32, shift: u32, bits: u32, signed: bool) -> i32 {
    let v = (word >> shift) & ((1u32 << bits) - 1);
    if signed && v >= 1 << (bits - 1) { v as i32 - (1 << bits) } else { v as i32 }
}

/// Unpack the A word into lanes (each lane read from its first copy).
pub fn unpack_activations(a_bits: u32, w_bits: u32, word: u32, signed: bool) -> Vec<i32> {
    check_rtl(a_bits, w_bits);
    let lanes = (64 / (a_bits * w_bits)) as usize;
    let mut out = vec![None; lanes];
    for r in 0..4 {
        for g in 0..8 / a_bits {
            let k = (g + (8 / a_bits) * (r / (w_bits / 2))) as usize;
            if k < lanes && out[k].is_none() {
                out[k] = Some(field(word, 8 * r + a_bits * g, a_bits, signed));
            }
        }
    }
    out.into_iter().map(|v| v.unwrap_or(0)).collect()
}

/// Unpack the W word into lanes.
pub fn unpack_weights(a_bits: u32, w_bits: u32, word: u32, signed: bool) -> Vec<i32> {
    check_rtl(a_bits, w_bits);
    let lanes = (64 / (a_bits * w_bits)) as usize;
    let mut out = vec![None; lanes];
    for r in 0..4 {
        for h in 0..8 / w_bits {
            let k = (r / (a_bits / 2) + (8 / a_bits) * h) as usize;
            if k < lanes && out[k].is_none() {
                out[k] = Some(field(word, 8 * r + w_bits * h, w_bits, signed));
            }
        }
    }
    out.into_iter().map(|v| v.unwrap_or(0)).collect()
}

/// The RTL fusion unit on packed words: the 16-bit dot product of the fused lanes, as the RTL prints
/// it (two's complement for the signed module, plain binary for the unsigned one).
pub fn rtl_fusion_unit(a_bits: u32, w_bits: u32, a_word: u32, w_word: u32, signed: bool) -> i64 {
    let fu = FusionUnit { fusion_bits: 8, brick_bits: 2 };
    let plan = LanePlan::new(a_bits, w_bits, 8, 2);
    let a = unpack_activations(a_bits, w_bits, a_word, signed);
    let w = unpack_weights(a_bits, w_bits, w_word, signed);
    let out = fu.dot(&plan, &a, &w, signed, signed) & 0xffff;
    if signed && out >= 0x8000 { out - 0x10000 } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lane_plans() {
        let p = LanePlan::new(8, 8, 8, 2);
        assert_eq!((p.lanes, p.steps, p.bricks_per_product), (1, 1, 16));
        let p = LanePlan::new(2, 2, 8, 2);
        assert_eq!((p.lanes, p.steps, p.bricks_per_product), (16, 1, 1));
        let p = LanePlan::new(4, 2, 8, 2);
        assert_eq!((p.a_lane, p.w_lane, p.lanes), (4, 2, 8));
        let p = LanePlan::new(6, 3, 8, 2);
        assert_eq!((p.a_lane, p.w_lane, p.lanes), (8, 4, 2));
        let p = LanePlan::new(1, 1, 8, 2);
        assert_eq!(p.lanes, 16);
        let p = LanePlan::new(16, 8, 8, 2);
        assert_eq!((p.lanes, p.steps), (1, 2));
        let p = LanePlan::new(16, 16, 8, 2);
        assert_eq!((p.lanes, p.steps), (1, 4));
        assert_eq!(LanePlan::new(16, 16, 16, 2).lanes, 1);
        assert_eq!(LanePlan::new(2, 2, 16, 2).lanes, 64);
    }

    /// Every mode, every signedness (including mixed), every pair of lane values: the bricks'
    /// shift-add equals integer multiplication.
    #[test]
    fn brick_products_equal_integer_multiplication_exhaustively() {
        for a_lane in [2u32, 4, 8] {
            for w_lane in [2u32, 4, 8] {
                for a_signed in [false, true] {
                    for w_signed in [false, true] {
                        let (alo, ahi) = operand_range(a_lane, a_signed);
                        let (wlo, whi) = operand_range(w_lane, w_signed);
                        for a in alo..=ahi {
                            for w in wlo..=whi {
                                let p = brick_product(a as i32, a_lane, a_signed, w as i32, w_lane, w_signed, 2);
                                assert_eq!(p, a * w, "{a_lane}x{w_lane} s{a_signed}{w_signed}: {a}*{w}");
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn fused_dot_products_sum_every_lane() {
        let fu = FusionUnit { fusion_bits: 8, brick_bits: 2 };
        let mut seed = 1u64;
        let mut next = move || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) as i64
        };
        for (a_bits, w_bits) in [(2, 2), (2, 4), (4, 2), (4, 4), (8, 2), (2, 8), (8, 4), (4, 8), (8, 8)] {
            let plan = LanePlan::new(a_bits, w_bits, 8, 2);
            assert_eq!(plan.lanes * plan.bricks_per_product, fu.bricks());
            for signed in [false, true] {
                let (alo, ahi) = operand_range(a_bits, signed);
                let (wlo, whi) = operand_range(w_bits, signed);
                for _ in 0..500 {
                    let a: Vec<i32> = (0..plan.lanes).map(|_| (alo + next() % (ahi - alo + 1)) as i32).collect();
                    let w: Vec<i32> = (0..plan.lanes).map(|_| (wlo + next() % (whi - wlo + 1)) as i32).collect();
                    let expect: i64 = a.iter().zip(&w).map(|(x, y)| *x as i64 * *y as i64).sum();
                    assert_eq!(fu.dot(&plan, &a, &w, signed, signed), expect);
                    // Packing round-trips and the packed unit agrees.
                    let (aw, ww) = (pack_activations(a_bits, w_bits, &a), pack_weights(a_bits, w_bits, &w));
                    assert_eq!(unpack_activations(a_bits, w_bits, aw, signed), a);
                    assert_eq!(unpack_weights(a_bits, w_bits, ww, signed), w);
                    let out = rtl_fusion_unit(a_bits, w_bits, aw, ww, signed);
                    let expect16 = if signed { expect } else { expect & 0xffff };
                    assert_eq!(out, expect16);
                }
            }
        }
    }

    #[test]
    fn temporal_sixteen_bit_products() {
        let fu = FusionUnit { fusion_bits: 8, brick_bits: 2 };
        for (a, w) in [(-32768i64, -128i64), (32767, 127), (-1, 1), (12345, -77), (-32768, -32768), (32767, -32768)] {
            let (p, steps) = fu.temporal_product(a, 16, true, w, if w.abs() > 128 { 16 } else { 8 }, true);
            assert_eq!(p, a * w);
            assert_eq!(steps, if w.abs() > 128 { 4 } else { 2 });
        }
        for a in (-32768i64..32768).step_by(97) {
            for w in (-32768i64..32768).step_by(1013) {
                assert_eq!(fu.temporal_product(a, 16, true, w, 16, true).0, a * w);
            }
        }
        assert_eq!(fu.temporal_product(65535, 16, false, 255, 8, false).0, 65535 * 255);
    }

    #[test]
    fn rtl_modes_and_layouts() {
        let modes = [((8, 8), 0x0), ((8, 4), 0x4), ((8, 2), 0x5), ((4, 8), 0x8), ((4, 4), 0xC), ((4, 2), 0xD), ((2, 8), 0xA), ((2, 4), 0xE), ((2, 2), 0xF)];
        for ((a, w), m) in modes {
            assert_eq!(rtl_mode(a, w), m, "{a}x{w}");
        }
        // 8x8: both words are the value replicated in every byte.
        assert_eq!(pack_activations(8, 8, &[0x5a]), 0x5a5a5a5a);
        assert_eq!(pack_weights(8, 8, &[0x5a]), 0x5a5a5a5a);
        // 2x2 weights: byte R slot h holds lane R + 4h (a 4x4 transpose).
        let lanes: Vec<i32> = (0..16).map(|k| k % 4).collect();
        let w = pack_weights(2, 2, &lanes);
        assert_eq!((w >> 2) & 3, lanes[4] as u32);
    }
}
