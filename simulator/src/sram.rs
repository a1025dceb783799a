//! SRAM bank figures (per-access energy, leakage, area) from the CACTI 7 table.
//!
//! The table (`data/cacti7_45nm.csv`, copied from the project's reference
//! material with its provenance in `data/README.md`) holds CACTI 7 runs at
//! 45 nm with the original Bit Fusion settings, for power-of-two banks of
//! 128 B to 256 KiB, words of 4 to 32 bytes and three port configurations.
//! Sizes between rows are interpolated log-log within one (word, ports)
//! series, as the table's README prescribes. Below the smallest valid bank
//! there is no figure (CACTI refuses such banks); above the largest, the last
//! segment is extrapolated and the result is flagged.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::OnceLock;

/// A bank's port configuration, as given to CACTI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Ports {
    /// One exclusive read and one exclusive write port (Bit Fusion's WBUF and IBUF).
    #[serde(rename = "1r1w")]
    OneReadOneWrite,
    /// One read-write port.
    #[serde(rename = "1rw")]
    OneReadWrite,
    /// One read-write plus one read and one write port: what the original actually gives CACTI for the OBUF.
    #[serde(rename = "1rw1r1w")]
    ReadWritePlusReadPlusWrite,
}

impl Ports {
    pub fn one_read_one_write() -> Self {
        Ports::OneReadOneWrite
    }
    pub fn bitfusion_obuf() -> Self {
        Ports::ReadWritePlusReadPlusWrite
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Ports::OneReadOneWrite => "1r1w",
            Ports::OneReadWrite => "1rw",
            Ports::ReadWritePlusReadPlusWrite => "1rw1r1w",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        match s {
            "1r1w" => Some(Ports::OneReadOneWrite),
            "1rw" => Some(Ports::OneReadWrite),
            "1rw1r1w" => Some(Ports::ReadWritePlusReadPlusWrite),
            _ => None,
        }
    }
}

/// Which SRAM figure table a config uses (chosen by name in `[sram] table`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum SramTableName {
    /// CACTI 7, 45 nm, Bit Fusion's `default.json` settings.
    #[default]
    #[serde(rename = "cacti7-45nm")]
    Cacti7Nm45,
}

/// Figures for one bank.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BankFigures {
    /// Energy of one read access (one word), in picojoules.
    pub read_energy_pj: f64,
    /// Energy of one write access (one word), in picojoules.
    pub write_energy_pj: f64,
    /// Subthreshold leakage of one bank, in milliwatts.
    pub leakage_mw: f64,
    /// Area of one bank, in square millimetres.
    pub area_mm2: f64,
    /// True when the bank is larger than the table and the figures are extrapolated.
    pub extrapolated: bool,
}

impl BankFigures {
    /// Read energy per bit for `word_bits`-bit words, in pJ/bit.
    pub fn read_pj_per_bit(&self, word_bits: u64) -> f64 {
        self.read_energy_pj / word_bits as f64
    }
    /// Write energy per bit for `word_bits`-bit words, in pJ/bit.
    pub fn write_pj_per_bit(&self, word_bits: u64) -> f64 {
        self.write_energy_pj / word_bits as f64
    }
}

/// Why a bank has no figure.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SramLookupError {
    #[error("a {bank_bytes} B bank with {block_bytes}-byte words is below the CACTI table's smallest valid bank ({min_bytes} B); CACTI refuses it")]
    BelowTable { bank_bytes: u64, block_bytes: u64, min_bytes: u64 },
    #[error("the CACTI table has no {block_bytes}-byte-word banks with {ports} ports (word widths: 4, 8, 16, 32 bytes)")]
    NoSeries { block_bytes: u64, ports: &'static str },
}

#[derive(Clone, Copy, Debug)]
struct Row {
    bank_bytes: u64,
    block_bytes: u64,
    ports: Ports,
    read_pj: f64,
    write_pj: f64,
    leakage_mw: f64,
    area_mm2: f64,
}

/// The parsed CACTI table.
pub struct SramTable {
    rows: Vec<Row>,
}

const CACTI_CSV: &str = include_str!("../data/cacti7_45nm.csv");

impl SramTable {
    /// The table named by a config.
    pub fn get(name: SramTableName) -> &'static SramTable {
        static CACTI: OnceLock<SramTable> = OnceLock::new();
        match name {
            SramTableName::Cacti7Nm45 => CACTI.get_or_init(|| SramTable::parse(CACTI_CSV)),
        }
    }

    fn parse(text: &str) -> SramTable {
        // The embedded table is checked by a unit test; a malformed row here is a build defect.
        let mut rows = Vec::new();
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
        let col = |name: &str| header.iter().position(|h| *h == name).expect("CACTI table column");
        let (cb, cw, cp, cr, cwe, cl, ca) = (
            col("bank_bytes"),
            col("block_bytes"),
            col("ports"),
            col("read_energy_pJ"),
            col("write_energy_pJ"),
            col("leakage_mW"),
            col("area_mm2"),
        );
        for line in lines.filter(|l| !l.trim().is_empty()) {
            let f: Vec<&str> = line.split(',').collect();
            let num = |i: usize| f[i].parse::<f64>().expect("CACTI table number");
            rows.push(Row {
                bank_bytes: f[cb].parse().expect("bank_bytes"),
                block_bytes: f[cw].parse().expect("block_bytes"),
                ports: Ports::parse(f[cp]).expect("ports"),
                read_pj: num(cr),
                write_pj: num(cwe),
                leakage_mw: num(cl),
                area_mm2: num(ca),
            });
        }
        rows.sort_by_key(|r| (r.block_bytes, r.ports.as_str(), r.bank_bytes));
        SramTable { rows }
    }

    /// Figures for one bank of `bank_bytes` with `block_bytes`-byte words.
    pub fn lookup(&self, bank_bytes: u64, block_bytes: u64, ports: Ports) -> Result<BankFigures, SramLookupError> {
        let series: Vec<&Row> =
            self.rows.iter().filter(|r| r.block_bytes == block_bytes && r.ports == ports).collect();
        if series.is_empty() {
            return Err(SramLookupError::NoSeries { block_bytes, ports: ports.as_str() });
        }
        let first = series[0];
        if bank_bytes < first.bank_bytes {
            return Err(SramLookupError::BelowTable { bank_bytes, block_bytes, min_bytes: first.bank_bytes });
        }
        if let Some(r) = series.iter().find(|r| r.bank_bytes == bank_bytes) {
            return Ok(figures(r, r, 0.0, false));
        }
        // Neighbouring rows (or the last segment, for extrapolation above the table).
        let hi_idx = series.iter().position(|r| r.bank_bytes > bank_bytes);
        let (lo, hi, extrapolated) = match hi_idx {
            Some(i) => (series[i - 1], series[i], false),
            None if series.len() >= 2 => (series[series.len() - 2], series[series.len() - 1], true),
            None => (first, first, true),
        };
        let t = if hi.bank_bytes == lo.bank_bytes {
            0.0
        } else {
            (bank_bytes as f64 / lo.bank_bytes as f64).ln() / (hi.bank_bytes as f64 / lo.bank_bytes as f64).ln()
        };
        Ok(figures(lo, hi, t, extrapolated))
    }
}

fn loglog(y0: f64, y1: f64, t: f64) -> f64 {
    if t == 0.0 { y0 } else { (y0.ln() + t * (y1.ln() - y0.ln())).exp() }
}

fn figures(lo: &Row, hi: &Row, t: f64, extrapolated: bool) -> BankFigures {
    BankFigures {
        read_energy_pj: loglog(lo.read_pj, hi.read_pj, t),
        write_energy_pj: loglog(lo.write_pj, hi.write_pj, t),
        leakage_mw: loglog(lo.leakage_mw, hi.leakage_mw, t),
        area_mm2: loglog(lo.area_mm2, hi.area_mm2, t),
        extrapolated,
    }
}

impl fmt::Debug for SramTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SramTable({} rows)", self.rows.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> &'static SramTable {
        SramTable::get(SramTableName::Cacti7Nm45)
    }

    #[test]
    fn table_parses_all_rows() {
        assert_eq!(table().rows.len(), 126);
    }

    #[test]
    fn paper_config_per_bit_energies() {
        // bf_e: WBUF 128 B, IBUF 2048 B (1r1w), OBUF 512 B (1rw1r1w), 4-byte words (MODEL.md section 7).
        let w = table().lookup(128, 4, Ports::OneReadOneWrite).unwrap();
        assert!((w.read_pj_per_bit(32) - 0.0213657).abs() < 1e-6);
        assert!((w.write_pj_per_bit(32) - 0.0289162).abs() < 1e-6);
        let i = table().lookup(2048, 4, Ports::OneReadOneWrite).unwrap();
        assert!((i.read_pj_per_bit(32) - 0.0594744).abs() < 1e-6);
        let o = table().lookup(512, 4, Ports::ReadWritePlusReadPlusWrite).unwrap();
        assert!((o.read_pj_per_bit(32) - 0.0331553).abs() < 1e-6);
        assert!((o.write_pj_per_bit(32) - 0.0730841).abs() < 1e-6);
        assert!((w.area_mm2 * 512.0 - 0.767).abs() < 1e-3);
    }

    #[test]
    fn interpolation_is_loglog_and_between_rows() {
        let lo = table().lookup(128, 4, Ports::OneReadOneWrite).unwrap();
        let hi = table().lookup(256, 4, Ports::OneReadOneWrite).unwrap();
        let mid = table().lookup(192, 4, Ports::OneReadOneWrite).unwrap();
        let t = (1.5f64).ln() / 2f64.ln();
        let expect = (lo.read_energy_pj.ln() + t * (hi.read_energy_pj.ln() - lo.read_energy_pj.ln())).exp();
        assert!((mid.read_energy_pj - expect).abs() < 1e-12);
        assert!(!mid.extrapolated);
        // Interpolation check file: 192 B / 4 B / 1r1w read energy is 2.8% below CACTI's own run.
        let cacti_192 = expect / (1.0 - 0.028);
        assert!(((mid.read_energy_pj - cacti_192) / cacti_192 + 0.028).abs() < 1e-3);
    }

    #[test]
    fn out_of_table_banks_are_reported() {
        let e = table().lookup(64, 4, Ports::OneReadOneWrite).unwrap_err();
        assert!(e.to_string().contains("below the CACTI table's smallest valid bank (128 B)"), "{e}");
        let e = table().lookup(128, 8, Ports::OneReadOneWrite).unwrap_err();
        assert!(matches!(e, SramLookupError::BelowTable { min_bytes: 256, .. }));
        assert!(table().lookup(1 << 20, 4, Ports::OneReadOneWrite).unwrap().extrapolated);
        assert!(table().lookup(512, 6, Ports::OneReadOneWrite).is_err());
    }
}
