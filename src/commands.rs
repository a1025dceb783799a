//! The commands' bodies: each loads inputs, calls the library, writes outputs.

use crate::HwArgs;
use anyhow::{Context, anyhow, bail};
use bitfusion_simulator::config::{CostModelName, HwConfig, load_hw};
use bitfusion_simulator::energy::ChipFigures;
use bitfusion_simulator::networks::{NETWORKS, network, network_names};
use bitfusion_simulator::report::{self, Format};
use bitfusion_simulator::workload::{WorkloadOverrides, read_topology, topology_csv};
use bitfusion_simulator::{Layer, build, simulate_layers};
use std::path::Path;

fn load(hw: &HwArgs) -> anyhow::Result<HwConfig> {
    Ok(load_hw(&hw.hw, &hw.set)?)
}

fn workload(layers: Option<&Path>, net: Option<&str>) -> anyhow::Result<Vec<Layer>> {
    match (layers, net) {
        (Some(p), _) => Ok(read_topology(p)?),
        (None, Some(n)) => network(n)
            .map(|n| n.layers())
            .ok_or_else(|| anyhow!("unknown network '{n}' (built in: {})", network_names().join(", "))),
        (None, None) => bail!("give --layers CSV or --network NAME"),
    }
}

#[allow(clippy::too_many_arguments)]
pub fn simulate(
    hw: &HwArgs,
    layers: Option<&Path>,
    net: Option<&str>,
    model: Option<&str>,
    batch: Option<u32>,
    w_bits: Option<u32>,
    a_bits: Option<u32>,
    out: Option<&Path>,
) -> anyhow::Result<()> {
    let config = load(hw)?;
    let model_name = model.map(|m| m.parse::<CostModelName>().map_err(|e| anyhow!("--model: {e}"))).transpose()?;
    let format = out
        .map(|p| Format::from_path(p).ok_or_else(|| anyhow!("--out {}: the file name must end in .csv or .json", p.display())))
        .transpose()?;
    let mut layers = workload(layers, net)?;
    WorkloadOverrides { batch, w_bits, a_bits }
        .apply(&mut layers)
        .map_err(|e| anyhow!("--{}: {}", e.field.replace('_', "-"), e.message))?;
    let model = build(&config, model_name, Default::default());
    let report = simulate_layers(model.as_ref(), &layers)?;
    for n in &report.notes {
        eprintln!("note: {n}");
    }
    match (out, format) {
        (Some(path), Some(fmt)) => {
            let text = match fmt {
                Format::Csv => report::to_csv(&report),
                Format::Json => report::to_json(&report),
            };
            report::write_atomic(path, text.as_bytes()).with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!(
                "wrote {} ({} layers, {} cycles, {:.4} ms)",
                path.display(),
                report.layers.len(),
                report.total.cycles.0,
                report.total.latency_ms
            );
        }
        _ => print!("{}", report::to_table(&report)),
    }
    Ok(())
}

pub fn networks(name: Option<&str>) -> anyhow::Result<()> {
    match name {
        Some(n) => {
            let layers = workload(None, Some(n))?;
            print!("{}", topology_csv(&layers));
        }
        None => {
            println!("{:<18} {:>6} {:>14}  description", "name", "layers", "MACs");
            for n in NETWORKS {
                let layers = n.layers();
                let macs: u64 = layers.iter().map(|l| l.macs()).sum();
                println!("{:<18} {:>6} {:>14}  {}", n.name, layers.len(), macs, n.description);
            }
        }
    }
    Ok(())
}

pub fn show_hw(hw: &HwArgs) -> anyhow::Result<()> {
    let config = load(hw)?;
    println!("{config}");
    let f = ChipFigures::new(&config);
    println!("core: {:.4} mm^2, {:.3} pJ/cycle dynamic, {:.3} mW leakage", f.core_area_mm2, f.core_pj_per_cycle, f.core_leakage_mw);
    for (name, b) in [("WBUF", &f.wbuf), ("IBUF", &f.ibuf), ("OBUF", &f.obuf)] {
        match b {
            Ok(b) => println!(
                "{name}: {} banks x {} B ({}-bit words): {:.4} mm^2, read {:.5} / write {:.5} pJ/bit, {:.3} mW leakage{}",
                b.banks,
                b.bank_bytes,
                b.word_bits,
                b.area_mm2,
                b.read_pj_per_bit,
                b.write_pj_per_bit,
                b.leakage_mw,
                if b.extrapolated { " (extrapolated)" } else { "" }
            ),
            Err(e) => println!("{name}: {e}"),
        }
    }
    match f.area_mm2() {
        Some(a) => println!("total area: {a:.4} mm^2"),
        None => println!("total area: unavailable (a buffer has no SRAM figures)"),
    }
    println!("DRAM: {} bits/cycle, {} pJ/bit", config.memory.dram_bits_per_cycle, f.dram_pj_per_bit);
    Ok(())
}
