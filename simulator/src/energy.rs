//! Energy and area figures of a configured chip, and energy from counted events.
//!
//! Sources of every figure:
//! * Core: the config's `core.fusion_unit` entry for the array's (fusion_bits,
//!   brick_bits), taken from the original's `systolic_array_synth.csv` 4x4 row
//!   divided by 16 fusion units (MODEL.md section 7); the whole array is the
//!   per-unit figure times rows x cols, as the original scales 4x4 by N*M/16.
//! * SRAM: the CACTI 7 table ([`crate::sram`]); WBUF has rows x cols banks,
//!   IBUF rows banks, OBUF cols banks; WBUF/IBUF words are fusion_bits^2 /
//!   brick_bits bits, OBUF words are 32 bits (MODEL.md section 2).
//! * DRAM: `memory.dram_energy_pj_per_bit` (15 pJ/bit in the paper's config).

use crate::config::{HwConfig, OBUF_WORD_BITS};
use crate::sram::{BankFigures, Ports, SramLookupError, SramTable};
use crate::stats::{Counters, EnergyBreakdown};
use crate::units::{Bits, NanoJoules};
use serde::Serialize;

/// One on-chip buffer's organisation and figures.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BufferFigures {
    pub banks: u64,
    pub bank_bytes: u64,
    pub word_bits: u64,
    /// Read energy per bit, pJ/bit (per-access energy / word bits).
    pub read_pj_per_bit: f64,
    /// Write energy per bit, pJ/bit.
    pub write_pj_per_bit: f64,
    /// Leakage of the whole buffer (all banks), mW.
    pub leakage_mw: f64,
    /// Area of the whole buffer (all banks), mm^2.
    pub area_mm2: f64,
    pub extrapolated: bool,
}

impl BufferFigures {
    fn new(banks: u64, bank_bytes: u64, word_bits: u64, f: &BankFigures) -> Self {
        Self {
            banks,
            bank_bytes,
            word_bits,
            read_pj_per_bit: f.read_pj_per_bit(word_bits),
            write_pj_per_bit: f.write_pj_per_bit(word_bits),
            leakage_mw: f.leakage_mw * banks as f64,
            area_mm2: f.area_mm2 * banks as f64,
            extrapolated: f.extrapolated,
        }
    }

    /// Energy of `read` and `write` bits, in nJ.
    pub fn energy(&self, read: Bits, write: Bits) -> NanoJoules {
        NanoJoules::from_pj(read.0 as f64 * self.read_pj_per_bit + write.0 as f64 * self.write_pj_per_bit)
    }
}

/// Energy and area figures of one configured chip.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChipFigures {
    /// Dynamic energy of the whole array per compute cycle, pJ.
    pub core_pj_per_cycle: f64,
    /// Leakage of the whole array, mW.
    pub core_leakage_mw: f64,
    /// Area of the whole array, mm^2.
    pub core_area_mm2: f64,
    /// Buffer figures, or why the SRAM table has none (then energy is unavailable).
    pub wbuf: Result<BufferFigures, SramLookupError>,
    pub ibuf: Result<BufferFigures, SramLookupError>,
    pub obuf: Result<BufferFigures, SramLookupError>,
    /// DRAM energy, pJ/bit.
    pub dram_pj_per_bit: f64,
}

impl Serialize for SramLookupError {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// Energy per active BitBrick-cycle, pJ: the fusion unit's dynamic energy per cycle
/// (`core.fusion_unit`) shared by its (fusion_bits / brick_bits)^2 bricks.
pub fn brick_pj(hw: &HwConfig) -> f64 {
    let a = &hw.array;
    hw.fusion_unit.dynamic_energy_pj_per_cycle / ((a.fusion_bits / a.brick_bits) as f64).powi(2)
}

impl ChipFigures {
    pub fn new(hw: &HwConfig) -> Self {
        let table = SramTable::get(hw.sram.table);
        let a = &hw.array;
        let word = a.operand_word_bits();
        let buffer = |bytes: u64, banks: u64, word_bits: u64, ports: Ports| {
            let bank_bytes = bytes / banks;
            table.lookup(bank_bytes, word_bits / 8, ports).map(|f| BufferFigures::new(banks, bank_bytes, word_bits, &f))
        };
        let fu = &hw.fusion_unit;
        let units = a.fusion_units() as f64;
        ChipFigures {
            core_pj_per_cycle: fu.dynamic_energy_pj_per_cycle * units,
            core_leakage_mw: fu.leakage_mw * units,
            core_area_mm2: fu.area_um2 * units * 1e-6,
            wbuf: buffer(hw.memory.wbuf.0, a.fusion_units(), word, hw.sram.wbuf_ports),
            ibuf: buffer(hw.memory.ibuf.0, a.rows as u64, word, hw.sram.ibuf_ports),
            obuf: buffer(hw.memory.obuf.0, a.cols as u64, OBUF_WORD_BITS, hw.sram.obuf_ports),
            dram_pj_per_bit: hw.memory.dram_energy_pj_per_bit,
        }
    }

    /// The three buffers' figures, when all exist.
    pub fn buffers(&self) -> Option<[&BufferFigures; 3]> {
        Some([self.wbuf.as_ref().ok()?, self.ibuf.as_ref().ok()?, self.obuf.as_ref().ok()?])
    }

    /// Notes for the user: buffers without figures or with extrapolated ones.
    pub fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        for (name, b) in [("WBUF", &self.wbuf), ("IBUF", &self.ibuf), ("OBUF", &self.obuf)] {
            match b {
                Err(e) => notes.push(format!("{name}: no SRAM energy: {e}; energy columns are left empty")),
                Ok(f) if f.extrapolated => notes.push(format!(
                    "{name}: a {} B bank is above the CACTI table (256 KiB); its figures are extrapolated",
                    f.bank_bytes
                )),
                Ok(_) => {}
            }
        }
        notes
    }

    /// Total area in mm^2 (core + buffers), when the SRAM figures exist.
    pub fn area_mm2(&self) -> Option<f64> {
        let [w, i, o] = self.buffers()?;
        Some(self.core_area_mm2 + w.area_mm2 + i.area_mm2 + o.area_mm2)
    }

    /// Dynamic energy of a layer from its counters, with the core charged for
    /// `core_cycles` whole-array cycles; `leakage` is added as given.
    pub fn energy(&self, c: &Counters, core_cycles: u64, leakage: NanoJoules) -> Option<EnergyBreakdown> {
        let [w, i, o] = self.buffers()?;
        Some(EnergyBreakdown {
            core: NanoJoules::from_pj(core_cycles as f64 * self.core_pj_per_cycle),
            wbuf: w.energy(c.wbuf_read, c.wbuf_write),
            ibuf: i.energy(c.ibuf_read, c.ibuf_write),
            obuf: o.energy(c.obuf_read, c.obuf_write),
            dram: NanoJoules::from_pj((c.dram_read.0 + c.dram_write.0) as f64 * self.dram_pj_per_bit),
            leakage,
        })
    }

    /// Energy of a layer from its counted events, as the cycle model charges it: the core per
    /// *active* BitBrick-cycle at `brick_pj` (a product uses (a_lane/brick)(w_lane/brick) bricks
    /// per temporal step, so lower precision costs less and idle bricks cost only leakage), SRAM
    /// bits per buffer at CACTI's per-access energy for that bank, DRAM energy per bit on the bus,
    /// and leakage of the core and the buffers over `cycles` at `hw`'s clock.
    pub fn event_energy(&self, hw: &HwConfig, c: &Counters, active_brick_cycles: u64, cycles: u64) -> Option<EnergyBreakdown> {
        let [w, i, o] = self.buffers()?;
        let seconds = cycles as f64 / hw.frequency_hz();
        let leak_mw = self.core_leakage_mw + w.leakage_mw + i.leakage_mw + o.leakage_mw;
        Some(EnergyBreakdown {
            core: NanoJoules::from_pj(active_brick_cycles as f64 * brick_pj(hw)),
            wbuf: w.energy(c.wbuf_read, c.wbuf_write),
            ibuf: i.energy(c.ibuf_read, c.ibuf_write),
            obuf: o.energy(c.obuf_read, c.obuf_write),
            dram: NanoJoules::from_pj((c.dram_read.0 + c.dram_write.0) as f64 * self.dram_pj_per_bit),
            leakage: NanoJoules(leak_mw * 1e-3 * seconds * 1e9),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SHIPPED_CONFIGS;

    #[test]
    fn paper_config_figures_match_model_md() {
        let hw = HwConfig::from_toml_str(SHIPPED_CONFIGS[0].1, "p", &[]).unwrap();
        let f = ChipFigures::new(&hw);
        assert!((f.core_pj_per_cycle - 235.104).abs() < 1e-9);
        let [w, i, o] = f.buffers().unwrap();
        assert_eq!((w.banks, w.bank_bytes, i.bank_bytes, o.bank_bytes), (512, 128, 2048, 512));
        // get_area() of the original: core 0.888, WBUF 0.767, IBUF 0.242, OBUF 0.243, total 2.14 mm^2.
        assert!((f.core_area_mm2 - 0.888).abs() < 1e-3);
        assert!((w.area_mm2 - 0.767).abs() < 1e-3 && (i.area_mm2 - 0.242).abs() < 1e-3 && (o.area_mm2 - 0.243).abs() < 1e-3);
        assert!((f.area_mm2().unwrap() - 2.14).abs() < 5e-3);
        assert!(f.notes().is_empty());
    }

    #[test]
    fn small_banks_leave_energy_unavailable_with_a_note() {
        let hw = HwConfig::from_toml_str(SHIPPED_CONFIGS[0].1, "p", &["memory.wbuf_bytes=32768".into()]).unwrap();
        let f = ChipFigures::new(&hw);
        assert!(f.energy(&Counters::default(), 1, NanoJoules::ZERO).is_none());
        assert!(f.notes()[0].contains("WBUF: no SRAM energy"), "{:?}", f.notes());
    }
}
