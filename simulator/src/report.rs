//! Writing simulation results: CSV, JSON and a readable table.

use crate::cost::NetworkReport;
use crate::stats::LayerStats;
use std::path::Path;

/// The per-layer CSV columns, in order.
pub const CSV_COLUMNS: &[&str] = &[
    "name",
    "cycles",
    "compute_cycles",
    "stall_cycles",
    "latency_ms",
    "dram_read_bits",
    "dram_write_bits",
    "wbuf_read_bits",
    "wbuf_write_bits",
    "ibuf_read_bits",
    "ibuf_write_bits",
    "obuf_read_bits",
    "obuf_write_bits",
    "energy_core_nj",
    "energy_wbuf_nj",
    "energy_ibuf_nj",
    "energy_obuf_nj",
    "energy_dram_nj",
    "energy_total_nj",
    "utilization",
    "stall_dram_read_cycles",
    "stall_dram_write_cycles",
    "fill_drain_cycles",
    "leakage_nj",
    "area_mm2",
    "macs",
    "mapping",
];

/// A number of a result CSV (this one and a sweep's results.csv): 9 significant digits, float
/// noise (716.9587256259999) rounded away, far below any model's resolution; empty when absent.
pub(crate) fn opt(v: Option<f64>) -> String {
    v.map(|x| format!("{}", bitfusion_util::round_sig(x, 9))).unwrap_or_default()
}

fn csv_row(s: &LayerStats, area: Option<f64>) -> Vec<String> {
    let c = &s.counters;
    let e = s.energy;
    let st = s.stalls;
    vec![
        s.name.clone(),
        s.cycles.0.to_string(),
        s.compute_cycles.0.to_string(),
        s.stall_cycles.0.to_string(),
        opt(Some(s.latency_ms)),
        c.dram_read.0.to_string(),
        c.dram_write.0.to_string(),
        c.wbuf_read.0.to_string(),
        c.wbuf_write.0.to_string(),
        c.ibuf_read.0.to_string(),
        c.ibuf_write.0.to_string(),
        c.obuf_read.0.to_string(),
        c.obuf_write.0.to_string(),
        opt(e.map(|e| e.core.0)),
        opt(e.map(|e| e.wbuf.0)),
        opt(e.map(|e| e.ibuf.0)),
        opt(e.map(|e| e.obuf.0)),
        opt(e.map(|e| e.dram.0)),
        opt(e.map(|e| e.total().0)),
        opt(Some(s.utilization)),
        st.map(|x| x.dram_read.0.to_string()).unwrap_or_default(),
        st.map(|x| x.dram_write.0.to_string()).unwrap_or_default(),
        st.map(|x| x.fill_drain.0.to_string()).unwrap_or_default(),
        opt(e.map(|e| e.leakage.0)),
        opt(area),
        s.macs.to_string(),
        s.mapping.clone(),
    ]
}

/// The report as CSV: one row per layer, then a `total` row.
pub fn to_csv(report: &NetworkReport) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    // Writing into a Vec cannot fail.
    w.write_record(CSV_COLUMNS).expect("in-memory CSV");
    for s in report.layers.iter().chain(std::iter::once(&report.total)) {
        w.write_record(csv_row(s, report.area_mm2)).expect("in-memory CSV");
    }
    String::from_utf8(w.into_inner().expect("in-memory CSV")).expect("CSV is UTF-8")
}

/// The report as pretty JSON.
pub fn to_json(report: &NetworkReport) -> String {
    serde_json::to_string_pretty(report).expect("report serialises")
}

/// A readable fixed-width table.
pub fn to_table(report: &NetworkReport) -> String {
    let mut out = format!(
        "hardware: {}   model: {}   area: {}\n",
        report.hw,
        report.model,
        report.area_mm2.map(|a| format!("{a:.3} mm^2")).unwrap_or_else(|| "n/a".into())
    );
    let header = format!(
        "{:<28} {:>14} {:>14} {:>14} {:>11} {:>14} {:>14} {:>6}\n",
        "layer", "cycles", "compute", "stall", "latency_ms", "dram_MB", "energy_uJ", "util"
    );
    out.push_str(&header);
    out.push_str(&"-".repeat(header.len() - 1));
    out.push('\n');
    for s in report.layers.iter().chain(std::iter::once(&report.total)) {
        let dram_mb = (s.counters.dram_read.0 + s.counters.dram_write.0) as f64 / 8e6;
        let energy = s.energy_total_nj().map(|e| format!("{:.3}", e / 1e3)).unwrap_or_else(|| "n/a".into());
        let name: String = s.name.chars().take(28).collect();
        out.push_str(&format!(
            "{:<28} {:>14} {:>14} {:>14} {:>11.4} {:>14.3} {:>14} {:>5.1}%\n",
            name,
            s.cycles.0,
            s.compute_cycles.0,
            s.stall_cycles.0,
            s.latency_ms,
            dram_mb,
            energy,
            100.0 * s.utilization
        ));
    }
    for n in &report.notes {
        out.push_str(&format!("note: {n}\n"));
    }
    out
}

/// Output format chosen by a file's extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Csv,
    Json,
}

impl Format {
    pub fn from_path(path: &Path) -> Option<Format> {
        match path.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase()).as_deref() {
            Some("csv") => Some(Format::Csv),
            Some("json") => Some(Format::Json),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HwConfig, SHIPPED_CONFIGS};
    use crate::model::{build, simulate_layers};
    use crate::networks::network;

    #[test]
    fn csv_has_every_layer_and_a_total() {
        let hw = HwConfig::from_toml_str(SHIPPED_CONFIGS[0].1, "p", &[]).unwrap();
        let model = build(&hw, None, Default::default());
        let layers = network("lenet5").unwrap().layers();
        let r = simulate_layers(model.as_ref(), &layers).unwrap();
        let csv = to_csv(&r);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], CSV_COLUMNS.join(","));
        assert_eq!(lines.len(), 1 + layers.len() + 1);
        assert!(lines.last().unwrap().starts_with("total,"));
        assert_eq!(r.total.cycles.0, r.layers.iter().map(|l| l.cycles.0).sum::<u64>());
        let json: serde_json::Value = serde_json::from_str(&to_json(&r)).unwrap();
        assert_eq!(json["layers"].as_array().unwrap().len(), layers.len());
        assert!(to_table(&r).contains("total"));
    }
}
