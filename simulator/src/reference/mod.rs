//! The reference model: the 2018 Bit Fusion simulator's analytical cost
//! model, reproduced exactly (`--model reference`).
//!
//! What it reproduces, quirks included (MODEL.md):
//! * the perf factor: a fusion unit does floor(pmax/max(a,pmin)) *
//!   floor(pmax/max(w,pmin)) products per cycle, so 6-bit costs like 8-bit,
//!   3-bit like 4-bit and 1-bit like 2-bit, while memory moves the real bits;
//! * implicit padding: the input extent is (O-1)*S+K and padded pixels move
//!   like real data; kernels and outputs are square;
//! * 32-bit partial sums read from and written to DRAM for every output tile;
//! * power-of-two tiles with square spatial tiles, the kernel never tiled,
//!   every tile in half of its buffer, edge tiles charged as full tiles;
//! * the exhaustive search over tilings and all 120 loop orders, minimum
//!   cycles first and minimum energy second;
//! * core energy per compute cycle independent of precision, no leakage.
//!
//! Where the original crashes, this model returns an error instead: operands
//! wider than `fusion_bits` (perf factor 0) and layers no tiling fits.
//! Grouped and depthwise convolutions, which the original costs as dense
//! (groups ignored), are mapped as `[models] reference_grouped` says.
//! Non-square inputs are rejected. When the SRAM table has no figure for a
//! bank, cycles and counters are still exact and energy is left empty; the
//! search then weighs that buffer's accesses as NaN, like the original, so
//! no energy breaks a cycle tie and the first mapping found is kept.

mod search;

use crate::config::{GroupedMapping, HwConfig};
use crate::energy::ChipFigures;
use crate::layer::{Layer, LayerKind};
use crate::cost::{CostModel, SimError};
use crate::stats::{Counters, LayerStats};
use crate::units::{Bits, Cycles, NanoJoules};
use search::{Problem, TieBreakEnergy};

/// The reference model for one hardware config.
pub struct ReferenceModel {
    hw: HwConfig,
    chip: ChipFigures,
    tie_break: TieBreakEnergy,
}

impl ReferenceModel {
    pub fn new(hw: &HwConfig) -> Self {
        let chip = ChipFigures::new(hw);
        let pj = 1e-3; // the original weighs energies in nJ
        // A buffer CACTI cannot model has NaN figures in the original: every energy is NaN and the
        // first mapping with the fewest cycles wins (search::search).
        let per_bit = |b: &Result<crate::energy::BufferFigures, _>| {
            b.as_ref().map_or((f64::NAN, f64::NAN), |f| (f.read_pj_per_bit * pj, f.write_pj_per_bit * pj))
        };
        let [(wr, ww), (ir, iw), (or, ow)] = [per_bit(&chip.wbuf), per_bit(&chip.ibuf), per_bit(&chip.obuf)];
        let (read, write) = ([wr, ir, or], [ww, iw, ow]);
        let tie_break = TieBreakEnergy {
            core_per_cycle: chip.core_pj_per_cycle * pj,
            read_per_bit: read,
            write_per_bit: write,
            dram_per_bit: chip.dram_pj_per_bit * pj,
        };
        Self { hw: hw.clone(), chip, tie_break }
    }

    /// The original's view of a layer: the problem, and how many times it repeats.
    pub fn problem(&self, layer: &Layer) -> Result<(Problem, u64), SimError> {
        layer.validate().map_err(|e| SimError::new(layer, format!("{}: {}", e.field, e.message)))?;
        let a = &self.hw.array;
        let (pmax, pmin) = (a.fusion_bits as u64, a.brick_bits as u64);
        for (what, bits) in [("weights", layer.w_bits), ("activations", layer.a_bits)] {
            if bits as u64 > pmax {
                return Err(SimError::new(
                    layer,
                    format!(
                        "reference model: {bits}-bit {what} are wider than array.fusion_bits = {pmax}; \
                         the original has no temporal mode (its perf factor is 0 and it crashes)"
                    ),
                ));
            }
        }
        let (k, o, s) = match layer.kind {
            LayerKind::Fc => (1, 1, 1),
            LayerKind::Conv => {
                if layer.in_h != layer.in_w {
                    return Err(SimError::new(
                        layer,
                        format!(
                            "reference model: non-square input {}x{} (the original models square inputs only)",
                            layer.in_h, layer.in_w
                        ),
                    ));
                }
                (layer.kernel as u64, layer.out_h() as u64, layer.stride as u64)
            }
        };
        let g = layer.groups as u64;
        let (cin, cout) = (layer.in_channels as u64, layer.out_channels as u64);
        let (ic, oc, repeat) = if g == 1 {
            (cin, cout, 1)
        } else {
            match self.hw.models.reference_grouped {
                GroupedMapping::Dense => (cin, cout, 1),
                GroupedMapping::IcPerGroup => (cin / g, cout, 1),
                GroupedMapping::PerGroup => (cin / g, cout / g, g),
                GroupedMapping::Reject => {
                    return Err(SimError::new(
                        layer,
                        format!(
                            "reference model: grouped convolution (groups = {g}) is not supported \
                             (models.reference_grouped = \"reject\")"
                        ),
                    ));
                }
            }
        };
        let (a_bits, w_bits) = (layer.a_bits as u64, layer.w_bits as u64);
        let mem = &self.hw.memory;
        let problem = Problem {
            k,
            o,
            s,
            ic,
            oc,
            b: layer.batch as u64,
            iprec: a_bits,
            wprec: w_bits,
            im2col: layer.kind == LayerKind::Conv && layer.im2col,
            n: a.rows as u64,
            m: a.cols as u64,
            pf: search::perf_factor(pmax, pmin, a_bits, w_bits),
            half_buffer_bits: [mem.wbuf.to_bits().0 / 2, mem.ibuf.to_bits().0 / 2, mem.obuf.to_bits().0 / 2],
            if_width: mem.dram_bits_per_cycle,
        };
        Ok((problem, repeat))
    }
}

impl CostModel for ReferenceModel {
    fn name(&self) -> &'static str {
        "reference"
    }

    fn hw(&self) -> &HwConfig {
        &self.hw
    }

    fn notes(&self) -> Vec<String> {
        self.chip.notes()
    }

    fn area_mm2(&self) -> Option<f64> {
        self.chip.area_mm2()
    }

    fn simulate_layer(&self, layer: &Layer) -> Result<LayerStats, SimError> {
        let (p, repeat) = self.problem(layer)?;
        let best = search::search(&p, &self.tie_break).ok_or_else(|| {
            SimError::new(
                layer,
                format!(
                    "reference model: no tiling fits: the smallest tiles need more than half of a buffer \
                     (WBUF {} B, IBUF {} B, OBUF {} B)",
                    self.hw.memory.wbuf.0, self.hw.memory.ibuf.0, self.hw.memory.obuf.0
                ),
            )
        })?;
        let s = &best.stats;
        let counters = Counters {
            wbuf_read: Bits(s.sram_read[0]),
            wbuf_write: Bits(s.sram_write[0]),
            ibuf_read: Bits(s.sram_read[1]),
            ibuf_write: Bits(s.sram_write[1]),
            obuf_read: Bits(s.sram_read[2]),
            obuf_write: Bits(s.sram_write[2]),
            dram_read: Bits(s.dram_read),
            dram_write: Bits(s.dram_write),
        }
        .scaled(repeat);
        let energy = self.chip.energy(&counters, s.compute_cycles * repeat, NanoJoules::ZERO);
        let cycles = s.total_cycles * repeat;
        let mapping = format!(
            "{} {}{}",
            best.tiling.describe(),
            best.describe_order(),
            if repeat > 1 { format!(" x{repeat}") } else { String::new() }
        );
        Ok(LayerStats {
            name: layer.name.clone(),
            cycles: Cycles(cycles),
            compute_cycles: Cycles(s.compute_cycles * repeat),
            stall_cycles: Cycles(s.stall_cycles * repeat),
            latency_ms: self.hw.cycles_to_ms(cycles),
            counters,
            energy,
            macs: layer.macs(),
            mapping,
            utilization: layer.macs() as f64 / (cycles as f64 * (p.n * p.m * p.pf) as f64),
            stalls: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SHIPPED_CONFIGS;

    fn model(overrides: &[&str]) -> ReferenceModel {
        let o: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        ReferenceModel::new(&HwConfig::from_toml_str(SHIPPED_CONFIGS[0].1, "p", &o).unwrap())
    }

    #[test]
    fn sixteen_bit_is_a_clear_error() {
        let l = Layer::conv("c", 1, 64, 64, 56, 3, 1, 1, 1, 16, 8);
        let e = model(&[]).simulate_layer(&l).unwrap_err().to_string();
        assert!(e.starts_with("layer 'c': reference model: 16-bit weights are wider than array.fusion_bits = 8"), "{e}");
    }

    #[test]
    fn grouped_mappings() {
        let dw = Layer::conv("dw", 1, 144, 144, 56, 3, 1, 1, 144, 8, 8);
        let dense = model(&[]).simulate_layer(&dw).unwrap();
        let per = model(&["models.reference_grouped=per_group"]).simulate_layer(&dw).unwrap();
        assert!(per.mapping.ends_with("x144"));
        assert_eq!(per.cycles.0 % 144, 0);
        assert_ne!(dense.cycles, per.cycles);
        let e = model(&["models.reference_grouped=reject"]).simulate_layer(&dw).unwrap_err().to_string();
        assert!(e.contains("grouped convolution (groups = 144) is not supported"), "{e}");
    }

    #[test]
    fn tiny_buffers_give_a_no_tiling_error() {
        let l = Layer::conv("big", 1, 64, 64, 224, 11, 1, 5, 1, 8, 8);
        let m = model(&["memory.ibuf_bytes=64"]);
        let e = m.simulate_layer(&l).unwrap_err().to_string();
        assert!(e.contains("no tiling fits"), "{e}");
    }

    #[test]
    fn non_square_is_rejected() {
        let mut l = Layer::conv("ns", 1, 8, 8, 32, 3, 1, 1, 1, 8, 8);
        l.in_w = 16;
        assert!(model(&[]).simulate_layer(&l).unwrap_err().to_string().contains("non-square input 32x16"));
    }
}
