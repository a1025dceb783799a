//! Where a layer sits on a machine's roofline (Williams, Waterman and Patterson, "Roofline", CACM
//! 2009): its arithmetic intensity (operations per DRAM byte, from the simulated layer's MACs and
//! DRAM traffic) against the throughput the machine can attain at that intensity,
//! min(peak at the layer's bits, intensity x DRAM bandwidth). A layer left of the ridge
//! (intensity < peak / bandwidth) is memory-bound: fewer bits help it only by moving fewer bytes;
//! right of it, compute-bound: fewer bits help by fusing BitBricks into more products per cycle.

use crate::brick::LanePlan;
use crate::config::HwConfig;
use crate::layer::Layer;
use crate::stats::LayerStats;

/// Operations per multiply-accumulate (a multiply and an add), the roofline convention.
pub const OPS_PER_MAC: f64 = 2.0;

/// Which roof limits a layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    /// Left of the ridge: DRAM bandwidth limits it.
    Memory,
    /// On or right of the ridge: the array's peak at its bits limits it.
    Compute,
}

impl Bound {
    pub fn as_str(self) -> &'static str {
        match self {
            Bound::Memory => "memory",
            Bound::Compute => "compute",
        }
    }
}

/// One layer's place on a config's roofline.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RooflinePoint {
    /// Operations the layer performs: `OPS_PER_MAC` x MACs.
    pub ops: f64,
    /// Bytes it moves to and from DRAM (reads + writes, as simulated).
    pub dram_bytes: f64,
    /// Arithmetic intensity, operations per DRAM byte (infinite when it moves no byte).
    pub ops_per_byte: f64,
    /// The array's peak at the layer's (weight, activation) bits, operations per second.
    pub peak_ops_per_s: f64,
    /// The DRAM interface's bandwidth, bytes per second.
    pub bandwidth_bytes_per_s: f64,
    /// min(peak, intensity x bandwidth), operations per second.
    pub attainable_ops_per_s: f64,
    /// What the simulator achieved: operations over the layer's simulated latency, per second.
    pub achieved_ops_per_s: f64,
    pub bound: Bound,
}

/// The array's peak at `w_bits` x `a_bits` operands: rows x cols fusion units, each consuming
/// `LanePlan::elements_per_cycle` reduction elements per cycle (16 2x2-bit products of fused
/// BitBricks, 1 at 8x8), `OPS_PER_MAC` operations each, at the config's clock; operations per second.
pub fn peak_ops_per_s(hw: &HwConfig, w_bits: u32, a_bits: u32) -> f64 {
    let plan = LanePlan::new(a_bits, w_bits, hw.array.fusion_bits, hw.array.brick_bits);
    OPS_PER_MAC * hw.array.fusion_units() as f64 * plan.elements_per_cycle() * hw.frequency_hz()
}

/// The DRAM interface's bandwidth: `memory.dram_bits_per_cycle` / 8 bytes per cycle at the
/// config's clock, bytes per second.
pub fn dram_bytes_per_s(hw: &HwConfig) -> f64 {
    hw.memory.dram_bits_per_cycle as f64 / 8.0 * hw.frequency_hz()
}

/// The operand width a fusion unit runs `bits` at: the smallest brick_bits x 2^k that holds it
/// (bricks fuse by halves: 2, 4, 8 bits on the paper's 8/2 units), so a 6-bit operand runs at the
/// 8-bit rate and only moves fewer bytes.
pub fn fused_operand_bits(hw: &HwConfig, bits: u32) -> u32 {
    let mut fused = hw.array.brick_bits;
    while fused < bits && fused < 2 * hw.array.fusion_bits {
        fused *= 2;
    }
    fused
}

/// The ridge point at `w_bits` x `a_bits`: the intensity, operations per DRAM byte, at which the
/// bandwidth roof meets the compute roof.
pub fn ridge_ops_per_byte(hw: &HwConfig, w_bits: u32, a_bits: u32) -> f64 {
    peak_ops_per_s(hw, w_bits, a_bits) / dram_bytes_per_s(hw)
}

/// `layer`'s place on `hw`'s roofline, from its simulated `stats` (MACs, DRAM traffic, latency).
pub fn position(hw: &HwConfig, layer: &Layer, stats: &LayerStats) -> RooflinePoint {
    let ops = OPS_PER_MAC * stats.macs as f64;
    let dram_bytes = (stats.counters.dram_read.0 + stats.counters.dram_write.0) as f64 / 8.0;
    let ops_per_byte = if dram_bytes > 0.0 { ops / dram_bytes } else { f64::INFINITY };
    let peak = peak_ops_per_s(hw, layer.w_bits, layer.a_bits);
    let bandwidth = dram_bytes_per_s(hw);
    let attainable = peak.min(ops_per_byte * bandwidth);
    let achieved = if stats.latency_ms > 0.0 { ops / (stats.latency_ms * 1e-3) } else { 0.0 };
    let bound = if ops_per_byte * bandwidth < peak { Bound::Memory } else { Bound::Compute };
    RooflinePoint { ops, dram_bytes, ops_per_byte, peak_ops_per_s: peak, bandwidth_bytes_per_s: bandwidth, attainable_ops_per_s: attainable, achieved_ops_per_s: achieved, bound }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_hw;
    use crate::model::{Objective, build};

    /// One pointwise layer on the paper's config, against a hand computation.
    #[test]
    fn a_layers_position_matches_the_hand_computation() {
        let hw = load_hw("bitfusion-isca2018", &[]).unwrap();
        // 16 -> 32 channels, 1x1, 14x14, batch 1, 4-bit weights, 8-bit activations.
        let layer = Layer::conv("pw", 1, 16, 32, 14, 1, 1, 0, 1, 4, 8);
        let stats = build(&hw, None, Objective::Cycles).simulate_layer(&layer).unwrap();
        let p = position(&hw, &layer, &stats);
        // MACs: 14 x 14 x 16 x 32 = 100,352; ops twice that.
        assert_eq!(stats.macs, 100_352);
        assert_eq!(p.ops, 200_704.0);
        // The DRAM traffic the model simulated, in bytes.
        let bytes = (stats.counters.dram_read.0 + stats.counters.dram_write.0) as f64 / 8.0;
        assert_eq!(p.dram_bytes, bytes);
        assert!((p.ops_per_byte - 200_704.0 / bytes).abs() < 1e-9);
        // Peak at W4A8: 16 x 32 fusion units, 2 products each per cycle (a 4x8 product takes
        // 2 x 4 = 8 of a fusion unit's 16 2-bit BitBricks), 2 ops each, 500 MHz = 1,024 GOPS.
        assert_eq!(p.peak_ops_per_s, 2.0 * 512.0 * 2.0 * 500e6);
        // Bandwidth: 192 bits/cycle = 24 B x 500 MHz = 12 GB/s.
        assert_eq!(p.bandwidth_bytes_per_s, 12e9);
        // Ridge 1,024e9 / 12e9 = 85.3 ops/byte.
        assert!((ridge_ops_per_byte(&hw, 4, 8) - 1024.0 / 12.0).abs() < 1e-9);
        let attainable = (2.0 * 512.0 * 2.0 * 500e6f64).min(200_704.0 / bytes * 12e9);
        assert_eq!(p.attainable_ops_per_s, attainable);
        assert_eq!(p.bound, if 200_704.0 / bytes < 1024.0 / 12.0 { Bound::Memory } else { Bound::Compute });
        assert!(p.achieved_ops_per_s <= p.peak_ops_per_s * (1.0 + 1e-12));
    }

    #[test]
    fn six_bits_run_in_the_eight_bit_mode() {
        let hw = load_hw("bitfusion-isca2018", &[]).unwrap();
        let fused: Vec<u32> = [1, 2, 3, 4, 5, 6, 8].iter().map(|b| fused_operand_bits(&hw, *b)).collect();
        assert_eq!(fused, [2, 2, 4, 4, 8, 8, 8]);
        assert_eq!(peak_ops_per_s(&hw, 6, 6), peak_ops_per_s(&hw, 8, 8));
        assert_eq!(peak_ops_per_s(&hw, 4, 4), 4.0 * peak_ops_per_s(&hw, 8, 8));
    }

    #[test]
    fn the_ridge_splits_memory_from_compute() {
        let hw = load_hw("bitfusion-isca2018", &[]).unwrap();
        let layer = Layer::conv("pw", 1, 16, 32, 14, 1, 1, 0, 1, 8, 8);
        let mut stats = build(&hw, None, Objective::Cycles).simulate_layer(&layer).unwrap();
        // 8x8 on 16x32 units: 2 x 512 x 1 x 500 MHz = 512 GOPS; 12 GB/s: ridge 42.7 ops/byte.
        stats.macs = 1000;
        stats.counters.dram_read = crate::units::Bits(8 * 1000); // 1,000 bytes: 2 ops/byte
        stats.counters.dram_write = crate::units::Bits(0);
        let p = position(&hw, &layer, &stats);
        assert_eq!(p.ops_per_byte, 2.0);
        assert_eq!(p.attainable_ops_per_s, 24e9);
        assert_eq!(p.bound, Bound::Memory);
        stats.counters.dram_read = crate::units::Bits(8); // 1 byte: 2,000 ops/byte
        let p = position(&hw, &layer, &stats);
        assert_eq!(p.attainable_ops_per_s, 512e9);
        assert_eq!(p.bound, Bound::Compute);
    }
}
