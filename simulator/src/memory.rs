//! The off-chip side of the memory hierarchy: the DRAM channel, DMA transfers
//! and how a tile of a tensor lies in DRAM.
//!
//! A DMA transfer moves one tile of one tensor. It pays the channel's access
//! latency once and then one beat of `dram_bits_per_cycle` bits per cycle;
//! every contiguous segment of the tile is rounded up to whole bursts of
//! `dram_burst_bytes`, which is what the bus carries (and what DRAM energy is
//! charged for). Tensors are stored densely at their own precision:
//! activations and outputs NHWC (channels innermost), weights as
//! [out channel][kernel row][kernel column][input channel of the group].

use serde::Serialize;

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
    pub fn payload_bits(&self) -> u64 {
        self.count * self.bits
    }
}

impl DramChannel {
    /// Bits on the bus for a tile: each segment rounded up to whole bursts.
    pub fn bus_bits(&self, s: &Segments) -> u64 {
        s.count * s.bits.div_ceil(self.burst_bits) * self.burst_bits
    }

    /// Cycles one transfer of `bus_bits` takes: latency + beats (0 for an empty transfer).
    pub fn transfer_cycles(&self, bus_bits: u64) -> u64 {
        if bus_bits == 0 { 0 } else { self.latency_cycles + bus_bits.div_ceil(self.bits_per_cycle) }
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
}
