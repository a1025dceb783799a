//! The off-chip side of the memory hierarchy: the DRAM channel, DMA transfers
//! and how a tile of a tensor lies in DRAM.
//!
//! A DMA transfer moves one tile of one tensor. How the DRAM prices it is a
//! [`DramModel`]; the one implementation, [`DramChannel`], pays the channel's
//! access latency once and then one beat of `dram_bits_per_cycle` bits per
//! cycle, every contiguous segment of the tile rounded up to whole bursts of
//! `dram_burst_bytes`, which is what the bus carries (and what DRAM energy is
//! charged for). Tensors are stored densely at their own precision:
//! activations and outputs NHWC (channels innermost), weights as
//! [out channel][kernel row][kernel column][input channel of the group].

use crate::config::HwConfig;
use serde::Serialize;

/// How DRAM prices a DMA transfer: the bits it puts on the bus and the cycles it holds the
/// (serial) channel.
///
/// **Lower-bound contract.** The cycle model's search prunes mappings by bounds computed without
/// building their timelines (`cycle::bounds`, `cycle::dma`, `cycle::flow`); they stay lower
/// bounds, and the DMA sums stay exact, only if every implementation satisfies, for all segments
/// `s`, `t` and bus sizes `a <= b`:
///
/// 1. *Stateless*: a transfer's bus bits and cycles depend on its segments only, never on the
///    transfers before it (no open rows, no refresh): the DMA sums multiply one transfer's cost by
///    the number of equal tiles and must equal the timeline's transfers.
/// 2. *Nothing is free but nothing*: `transfer_cycles(0) == 0` and a tile with no segments or
///    empty segments has `bus_bits == 0` (the schedule drops such transfers, e.g. input tiles
///    entirely in the padding).
/// 3. *At least the payload*: `bus_bits(s) >= s.payload_bits()` (bounds count tensor bits).
/// 4. *Latency plus beats*: for `b > 0`, `transfer_cycles(b) >= latency() + ceil(b / beat_bits())`
///    (`BaseBound`, `dma_floor` and `lower_bound_cycles` charge exactly that per transfer, and sum
///    the beats of several transfers as one ceiling, which is never more).
/// 5. *Monotone*: `transfer_cycles(a) <= transfer_cycles(b)`, and `bus_bits` never falls when a
///    tile gains segments or its segments gain bits (the search reuses the stores of a variant
///    with fewer output bits as bounds for one with more, and the flow bounds use the smallest
///    store of each kind).
///
/// `memory::tests` checks the contract on [`DramChannel`] (a property test). The detailed mode
/// steps the channel beat by beat (latency, then one beat of `beat_bits()` per cycle), so it
/// checks this implementation's `transfer_cycles` exactly; a model with other timing needs the
/// detailed mode's DMA step taught the same.
pub trait DramModel {
    /// Bits on the bus for a tile of segments `s`.
    fn bus_bits(&self, s: &Segments) -> u64;
    /// Cycles one transfer of `bus_bits` holds the channel (0 for an empty transfer).
    fn transfer_cycles(&self, bus_bits: u64) -> u64;
    /// Cycles every non-empty transfer pays before its first beat, at least.
    fn latency(&self) -> u64;
    /// Bits one beat carries (one beat per cycle at most).
    fn beat_bits(&self) -> u64;
}

/// The DRAM channel's parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct DramChannel {
    /// Bits per beat (one beat per cycle).
    pub bits_per_cycle: u64,
    /// Cycles from a transfer's request to its first beat.
    pub latency_cycles: u64,
    /// Burst size in bits; every contiguous segment is rounded up to whole bursts.
    pub burst_bits: u64,
}

/// A tile of a tensor as DRAM sees it: `count` contiguous segments of `bits` each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize)]
pub struct Segments {
    pub count: u64,
    pub bits: u64,
}

impl Segments {
    /// The tensor bits the tile holds.
    #[cfg(test)] // Used by the tests only (the crate does not export it).
    pub fn payload_bits(&self) -> u64 {
        self.count * self.bits
    }
}

impl DramChannel {
    /// The channel of a config's `[memory]` section (`dram_bits_per_cycle`, `dram_latency_cycles`,
    /// `dram_burst_bytes`).
    pub fn of(hw: &HwConfig) -> DramChannel {
        let mem = &hw.memory;
        DramChannel { bits_per_cycle: mem.dram_bits_per_cycle, latency_cycles: mem.dram_latency_cycles, burst_bits: mem.dram_burst_bytes * 8 }
    }
}

impl DramModel for DramChannel {
    /// Each segment rounded up to whole bursts.
    fn bus_bits(&self, s: &Segments) -> u64 {
        s.count * s.bits.div_ceil(self.burst_bits) * self.burst_bits
    }

    /// Latency + beats (0 for an empty transfer).
    fn transfer_cycles(&self, bus_bits: u64) -> u64 {
        if bus_bits == 0 { 0 } else { self.latency_cycles + bus_bits.div_ceil(self.bits_per_cycle) }
    }

    fn latency(&self) -> u64 {
        self.latency_cycles
    }

    fn beat_bits(&self) -> u64 {
        self.bits_per_cycle
    }
}

/// Segments of a sub-box of a dense row-major box. `full` and `part` list the extents
/// of each dimension, outermost first, and `elem_bits` the element width: inner
/// dimensions that are taken whole merge into one contiguous segment with the
/// next one out.
pub fn box_segments(full: &[u64], part: &[u64], elem_bits: u64) -> Segments {
    debug_assert_eq!(full.len(), part.len());
    if part.contains(&0) {
        return Segments::default();
    }
    let mut seg = elem_bits;
    let mut i = full.len();
    // Merge from the innermost dimension while it is taken whole.
    while i > 0 {
        i -= 1;
        seg *= part[i];
        if part[i] != full[i] {
            break;
        }
        if i == 0 {
            return Segments { count: 1, bits: seg };
        }
    }
    let count: u64 = part[..i].iter().product();
    Segments { count, bits: seg }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn segments_merge_whole_inner_dimensions() {
        // NHWC 1x8x8x16, 8-bit: whole tensor is one segment.
        assert_eq!(box_segments(&[1, 8, 8, 16], &[1, 8, 8, 16], 8), Segments { count: 1, bits: 8 * 8 * 16 * 8 });
        // Half the rows: still one segment per batch image.
        assert_eq!(box_segments(&[1, 8, 8, 16], &[1, 4, 8, 16], 8), Segments { count: 1, bits: 4 * 8 * 16 * 8 });
        // Part of the columns: one segment per row.
        assert_eq!(box_segments(&[2, 8, 8, 16], &[2, 4, 3, 16], 8), Segments { count: 8, bits: 3 * 16 * 8 });
        // Part of the channels: one segment per pixel.
        assert_eq!(box_segments(&[1, 8, 8, 16], &[1, 2, 3, 4], 4), Segments { count: 6, bits: 16 });
        assert_eq!(box_segments(&[4], &[0], 8).payload_bits(), 0);
    }

    #[test]
    fn transfers_pay_latency_and_whole_bursts() {
        let ch = DramChannel { bits_per_cycle: 128, latency_cycles: 10, burst_bits: 512 };
        let s = Segments { count: 3, bits: 100 };
        assert_eq!(ch.bus_bits(&s), 3 * 512);
        assert_eq!(ch.transfer_cycles(ch.bus_bits(&s)), 10 + 12);
        assert_eq!(ch.transfer_cycles(0), 0);
    }

    fn channel() -> impl Strategy<Value = DramChannel> {
        (1u64..=1024, 0u64..=200, 1u64..=256).prop_map(|(bits_per_cycle, latency_cycles, burst_bytes)| DramChannel {
            bits_per_cycle,
            latency_cycles,
            burst_bits: burst_bytes * 8,
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { rng_seed: proptest::test_runner::RngSeed::Fixed(0x5eed), cases: 2000, .. ProptestConfig::default() })]
        /// The channel satisfies [`DramModel`]'s lower-bound contract (points 2 to 5; point 1 holds
        /// by construction: its methods read nothing but their arguments and the channel's constants).
        #[test]
        fn the_channel_keeps_the_lower_bound_contract(
            ch in channel(), count in 0u64..64, bits in 0u64..100_000, more_count in 0u64..8, more_bits in 0u64..5_000,
            a in 0u64..1_000_000, b in 0u64..1_000_000,
        ) {
            let s = Segments { count, bits };
            let bus = ch.bus_bits(&s);
            // 2. Nothing is free but nothing.
            prop_assert_eq!(ch.transfer_cycles(0), 0);
            prop_assert_eq!(ch.bus_bits(&Segments { count: 0, bits }), 0);
            prop_assert_eq!(ch.bus_bits(&Segments { count, bits: 0 }), 0);
            prop_assert_eq!(bus == 0, s.payload_bits() == 0);
            // 3. At least the payload.
            prop_assert!(bus >= s.payload_bits());
            // 4. Latency plus beats.
            for x in [a, b, bus] {
                if x > 0 {
                    prop_assert!(ch.transfer_cycles(x) >= ch.latency() + x.div_ceil(ch.beat_bits()));
                }
            }
            // 5. Monotone in bus bits, and bus bits in segments and their bits.
            let (lo, hi) = (a.min(b), a.max(b));
            prop_assert!(ch.transfer_cycles(lo) <= ch.transfer_cycles(hi));
            let (more_segments, longer_segments) = (Segments { count: count + more_count, bits }, Segments { count, bits: bits + more_bits });
            prop_assert!(ch.bus_bits(&more_segments) >= bus);
            prop_assert!(ch.bus_bits(&longer_segments) >= bus);
        }
    }
}
