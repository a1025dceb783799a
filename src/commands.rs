//! The commands' bodies: each loads inputs, calls the library, writes outputs.
//! A command returns Ok(false) when it ran but found a failure to report (exit code 1).

use crate::{HwArgs, SimulateArgs};
use anyhow::{Context, anyhow, bail};
use bitfusion_simulator::config::{CostModelName, HwConfig, load_hw};
use bitfusion_simulator::detailed::{self, LayerData};
use bitfusion_simulator::cycle::{CycleModel, trace_layers};
use bitfusion_simulator::networks::{NETWORKS, network, network_names};
use bitfusion_simulator::onnx::{OnnxOptions, is_onnx};
use bitfusion_simulator::report::{self, Format};
use bitfusion_util::write_atomic;
use bitfusion_simulator::validate;
use bitfusion_simulator::workload::{ReadOptions, WorkloadOverrides, read_workload, topology_csv};
use bitfusion_simulator::{ChipFigures, Layer, Objective, build, simulate_layers};
use std::path::Path;

fn load(hw: &HwArgs) -> anyhow::Result<HwConfig> {
    Ok(load_hw(&hw.hw, &hw.set)?)
}

/// The batch for an ONNX model's symbolic dimensions and the bits of layers the model gives none.
fn onnx_options(batch: Option<u32>, w_bits: Option<u32>, a_bits: Option<u32>) -> OnnxOptions {
    let d = OnnxOptions::default();
    OnnxOptions { batch: batch.unwrap_or(d.batch), w_bits: w_bits.unwrap_or(d.w_bits), a_bits: a_bits.unwrap_or(d.a_bits) }
}

/// How to read a workload file: ONNX options and a `net.config`'s resolution in pixels (`None`:
/// a `run.config` beside it, else 224).
fn read_options(onnx: OnnxOptions, resolution: Option<u32>) -> ReadOptions {
    ReadOptions { onnx, resolution }
}

/// The layers of a workload file (any format `read_workload` detects), or of a built-in network
/// (or an ONNX file given in its place).
fn workload(layers: Option<&Path>, net: Option<&str>, opts: &ReadOptions) -> anyhow::Result<Vec<Layer>> {
    match (layers, net) {
        (Some(p), _) => Ok(read_workload(p, opts)?),
        (None, Some(n)) if is_onnx(Path::new(n)) => Ok(read_workload(Path::new(n), opts)?),
        (None, Some(n)) => network(n)
            .map(|n| n.layers())
            .ok_or_else(|| anyhow!("unknown network '{n}' (built in: {})", network_names().join(", "))),
        (None, None) => bail!("give --layers CSV or --network NAME"),
    }
}

/// A progress bar with elapsed time and ETA, counting `unit`.
fn progress_bar(unit: &str) -> anyhow::Result<indicatif::ProgressBar> {
    let bar = indicatif::ProgressBar::new(0);
    let template = format!("{{spinner}} [{{elapsed_precise}}] {{bar:40}} {{pos}}/{{len}} {unit}, ETA {{eta}}");
    bar.set_style(indicatif::ProgressStyle::with_template(&template).map_err(|e| anyhow!("progress bar: {e}"))?);
    Ok(bar)
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    write_atomic(path, text.as_bytes()).with_context(|| format!("cannot write {}", path.display()))
}

pub fn simulate(a: &SimulateArgs) -> anyhow::Result<bool> {
    let config = load(&a.hw)?;
    let model_name = a.model.as_deref().map(|m| m.parse::<CostModelName>().map_err(|e| anyhow!("--model: {e}"))).transpose()?;
    let objective: Objective = a.objective.parse().map_err(|e| anyhow!("--objective: {e}"))?;
    let format = a
        .out
        .as_deref()
        .map(|p| Format::from_path(p).ok_or_else(|| anyhow!("--out {}: the file name must end in .csv or .json", p.display())))
        .transpose()?;
    let path = a.onnx.as_deref().or(a.layers.as_deref());
    let mut layers = workload(path, a.network.as_deref(), &read_options(onnx_options(a.batch, a.w_bits, a.a_bits), a.resolution))?;
    // An ONNX model's bits (QuantizeLinear/DequantizeLinear types, `weight_size`/`act_size`) win
    // over --w-bits/--a-bits, which it took as defaults.
    let from_onnx = path.is_some_and(is_onnx) || a.network.as_deref().is_some_and(|n| is_onnx(Path::new(n)));
    let bits = |b: Option<u32>| if from_onnx { None } else { b };
    WorkloadOverrides { batch: a.batch, w_bits: bits(a.w_bits), a_bits: bits(a.a_bits) }
        .apply(&mut layers)
        .map_err(|e| anyhow!("--{}: {}", e.field.replace('_', "-"), e.message))?;
    let chosen = model_name.unwrap_or(config.models.cost);
    if (a.detailed || a.trace.is_some()) && chosen != CostModelName::Cycle {
        bail!("--detailed and --trace need the cycle model (--model cycle); this run uses '{}'", chosen.as_str());
    }
    let model = build(&config, model_name, objective);
    let report = simulate_layers(model.as_ref(), &layers)?;
    for n in &report.notes {
        eprintln!("note: {n}");
    }
    let mut ok = true;
    if a.detailed || a.trace.is_some() {
        let cycle = CycleModel::new(&config, objective);
        if let Some(path) = &a.trace {
            let doc = trace_layers(&cycle, &layers)?;
            write(path, &serde_json::to_string(&doc)?)?;
            eprintln!("wrote {} (open it in Perfetto or chrome://tracing)", path.display());
        }
        if a.detailed {
            ok = run_detailed(a, &cycle, &layers, &report)?;
        }
    }
    match (&a.out, format) {
        (Some(path), Some(fmt)) => {
            let text = match fmt {
                Format::Csv => report::to_csv(&report),
                Format::Json => report::to_json(&report),
            };
            write(path, &text)?;
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
    Ok(ok)
}

/// The detailed mode over every layer: prints one check line per layer; false if any disagrees.
fn run_detailed(a: &SimulateArgs, model: &CycleModel, layers: &[Layer], report: &bitfusion_simulator::NetworkReport) -> anyhow::Result<bool> {
    let started = std::time::Instant::now();
    let runs = match &a.operands {
        Some(path) => {
            if layers.len() != 1 {
                bail!("--operands: give a single-layer workload (this one has {} layers)", layers.len());
            }
            let p = model.problem(&layers[0])?;
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            let data = LayerData::from_json(&text, &path.display().to_string(), &p).map_err(|e| anyhow!(e))?;
            let (_, p, m) = model.simulate_detailed(&layers[0], None)?;
            vec![detailed::run_with(model, &layers[0], &p, &m, &data)?]
        }
        None => detailed::run_layers(model, layers, a.seed)?,
    };
    let secs = started.elapsed().as_secs_f64();
    let mut ok = true;
    let mut unit_cycles = 0u64;
    eprintln!("detailed mode: {:<24} {:>12} {:>12} {:>8} {:>12}", "layer", "fast", "stepped", "timing", "output");
    for ((run, fast), layer) in runs.iter().zip(&report.layers).zip(layers) {
        let timing = run.agrees_with(fast);
        let output = run.mismatches == 0;
        ok &= timing && output;
        unit_cycles += run.unit_cycles;
        eprintln!(
            "detailed mode: {:<24} {:>12} {:>12} {:>8} {:>12}",
            layer.name,
            fast.cycles.0,
            run.totals.end,
            if timing { "match" } else { "DIFFER" },
            if output { "exact".to_string() } else { format!("{} wrong", run.mismatches) }
        );
    }
    eprintln!(
        "detailed mode: {} fusion-unit cycles stepped in {secs:.2} s ({:.1} M unit-cycles/s); {}",
        unit_cycles,
        unit_cycles as f64 / secs.max(1e-9) / 1e6,
        if ok { "all layers agree with the fast engine and the direct convolution" } else { "DISAGREEMENT" }
    );
    if let Some(path) = &a.outputs {
        let doc: Vec<serde_json::Value> = runs
            .iter()
            .zip(layers)
            .map(|(r, l)| serde_json::json!({"layer": l.name, "layout": "NHWC", "values": r.output}))
            .collect();
        write(path, &serde_json::to_string(&doc)?)?;
    }
    Ok(ok)
}

pub fn networks(name: Option<&str>, resolution: Option<u32>) -> anyhow::Result<()> {
    match name {
        Some(n) => {
            // A built-in name first; otherwise an existing file of any workload format.
            let file = Path::new(n);
            let opts = read_options(OnnxOptions::default(), resolution);
            let layers = if network(n).is_none() && file.is_file() { workload(Some(file), None, &opts)? } else { workload(None, Some(n), &opts)? };
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
    println!(
        "DRAM: {} bits/cycle, {} cycles latency, {} B bursts, {} pJ/bit",
        config.memory.dram_bits_per_cycle, config.memory.dram_latency_cycles, config.memory.dram_burst_bytes, f.dram_pj_per_bit
    );
    println!("deployment batch: {} ([workload] batch; what `run` and `lut build` build LUTs at)", config.batch);
    println!("shipped configs: {}", bitfusion_simulator::config::SHIPPED_CONFIGS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "));
    Ok(())
}

fn print_replay(what: &str, r: &validate::Replay) -> bool {
    for m in r.mismatches.iter().take(50) {
        println!("mismatch: {m}");
    }
    if r.mismatches.len() > 50 {
        println!("... and {} more mismatches", r.mismatches.len() - 50);
    }
    for (d, n) in &r.details {
        println!("{d}: {n}");
    }
    println!("{what}: {} cases, {} mismatches", r.cases, r.mismatches.len());
    r.ok()
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

pub fn validate_fusion_unit(path: &Path) -> anyhow::Result<bool> {
    let r = validate::fusion_unit_vectors(&read(path)?, &path.display().to_string())?;
    Ok(print_replay("fusion-unit vectors", &r))
}

pub fn validate_array_timing(path: &Path, seed: u64) -> anyhow::Result<bool> {
    let r = validate::array_timing(&read(path)?, &path.display().to_string(), seed)?;
    Ok(print_replay("array timing", &r))
}

pub fn sweep(spec: &Path, out: &Path, shard: Option<&str>, threads: Option<usize>) -> anyhow::Result<()> {
    use bitfusion_simulator::sweep::{self, Shard, Sweep};
    let shard = shard.map(|s| s.parse::<Shard>().map_err(|e| anyhow!(e))).transpose()?;
    let sw = Sweep::from_file(spec)?;
    let bar = progress_bar("rows")?;
    let progress = |done: usize, total: usize| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    };
    let started = std::time::Instant::now();
    let run = || sweep::run(&sw, out, shard, &progress);
    let summary = match threads {
        Some(n) => rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .map_err(|e| anyhow!("--threads: {e}"))?
            .install(run)?,
        None => run()?,
    };
    bar.finish_and_clear();
    eprintln!(
        "sweep '{}': {} rows ({} already done, {} run) in {:.1} s; wrote {}/results.csv, pareto.csv, layers.csv, points.csv",
        sw.name,
        summary.total,
        summary.already_done,
        summary.ran,
        started.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(())
}

pub fn merge(dirs: &[std::path::PathBuf], out: &Path) -> anyhow::Result<()> {
    if dirs.is_empty() {
        bail!("give the sweep directories to merge");
    }
    let n = bitfusion_simulator::sweep::merge(dirs, out)?;
    eprintln!("merged {} directories: {n} rows into {}", dirs.len(), out.display());
    Ok(())
}

pub fn plot_sweep(dir: &Path, opts: bitfusion_plots::SweepPlotOptions) -> anyhow::Result<()> {
    let files = bitfusion_plots::plot_sweep(dir, &opts)?;
    eprintln!("wrote {} files into {}", files.len(), dir.join("plots").display());
    Ok(())
}

pub fn paper(hw: &HwArgs, out: Option<&Path>) -> anyhow::Result<()> {
    use bitfusion_simulator::paper::{compare, geomean};
    use bitfusion_simulator::reference::ReferenceModel;
    let config = load(hw)?;
    let reference = compare(&ReferenceModel::new(&config))?;
    let cycle = compare(&CycleModel::new(&config, Objective::Cycles))?;
    println!("Bit Fusion ({}) vs Eyeriss, batch 16, per image", config.name);
    println!(
        "{:<10} {:>11} {:>11} | {:>11} {:>9} {:>9} | {:>11} {:>9} {:>9}",
        "benchmark", "Eyeriss ms", "Eyeriss uJ", "ref ms", "speedup", "energy", "cycle ms", "speedup", "energy"
    );
    for (r, c) in reference.iter().zip(&cycle) {
        println!(
            "{:<10} {:>11.4} {:>11.1} | {:>11.4} {:>8.2}x {:>8.2}x | {:>11.4} {:>8.2}x {:>8.2}x",
            r.benchmark,
            r.eyeriss.time_ms,
            r.eyeriss.energy_nj / 16e3,
            r.time_ms,
            r.speedup,
            r.energy_reduction,
            c.time_ms,
            c.speedup,
            c.energy_reduction
        );
    }
    let g = |v: &[bitfusion_simulator::paper::Comparison], f: fn(&bitfusion_simulator::paper::Comparison) -> f64| {
        geomean(&v.iter().map(f).collect::<Vec<_>>())
    };
    println!(
        "geomean: reference model {:.2}x speedup, {:.2}x energy reduction (published: 3.9x, 5.1x); cycle model {:.2}x, {:.2}x",
        g(&reference, |c| c.speedup),
        g(&reference, |c| c.energy_reduction),
        g(&cycle, |c| c.speedup),
        g(&cycle, |c| c.energy_reduction)
    );
    if let Some(dir) = out {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut csv = String::from("benchmark,eyeriss_ms,eyeriss_nj,model,bitfusion_ms,bitfusion_nj,speedup,energy_reduction\n");
        for (name, rows) in [("reference", &reference), ("cycle", &cycle)] {
            for r in rows.iter() {
                csv.push_str(&format!(
                    "{},{},{},{name},{},{},{},{}\n",
                    r.benchmark, r.eyeriss.time_ms, r.eyeriss.energy_nj, r.time_ms, r.energy_nj, r.speedup, r.energy_reduction
                ));
            }
        }
        write(&dir.join("paper.csv"), &csv)?;
        let benches: Vec<String> = reference.iter().map(|r| r.benchmark.clone()).collect();
        let series = vec![
            ("reference model".to_string(), reference.iter().map(|r| r.speedup).collect(), reference.iter().map(|r| r.energy_reduction).collect()),
            ("cycle model".to_string(), cycle.iter().map(|r| r.speedup).collect(), cycle.iter().map(|r| r.energy_reduction).collect()),
        ];
        let files = bitfusion_plots::plot_paper(dir, &benches, &series)?;
        eprintln!("wrote {}/paper.csv and {} chart files", dir.display(), files.len());
    }
    Ok(())
}

pub fn lut_build(space: &str, hw: &HwArgs, model: Option<&str>, objective: &str, batch: Option<u32>, out: &Path) -> anyhow::Result<()> {
    use bitfusion_search::lut::{BuildSpec, build_lut};
    use bitfusion_search::space::Space;
    let space = Space::load(space)?;
    let config = load(hw)?;
    let model = match model {
        Some(m) => m.parse::<CostModelName>().map_err(|e| anyhow!("--model: {e}"))?,
        None => config.models.cost,
    };
    let objective: Objective = objective.parse().map_err(|e| anyhow!("--objective: {e}"))?;
    if batch == Some(0) {
        bail!("--batch: must be at least 1");
    }
    let batch = batch.unwrap_or(config.batch);
    let bar = progress_bar("layers")?;
    let progress = |done: usize, total: usize| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    };
    // Two builds into one file would each rewrite it and drop the other's entries.
    let _lock = bitfusion_util::OutputLock::file(out)?;
    let started = std::time::Instant::now();
    let spec = BuildSpec { space: &space, hw: &config, model, objective, batch };
    let (_, s) = build_lut(&spec, out, &progress)?;
    bar.finish_and_clear();
    eprintln!(
        "LUT of space '{}' on '{}' ({} model, batch {batch}): {} entries ({} resumed, {} simulated) in {:.1} s; wrote {}",
        space.name,
        config.name,
        model.as_str(),
        s.entries,
        s.resumed,
        s.simulated,
        started.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(())
}

pub fn lut_export(lut: &Path, format: &str, out: &Path, bits: &str) -> anyhow::Result<()> {
    use bitfusion_search::interop::{LutFormat, apq, ofa};
    let format: LutFormat = format.parse()?;
    let l = bitfusion_search::lut::Lut::load(lut)?;
    let (path, text, what) = match format {
        LutFormat::Csv => (out.to_path_buf(), bitfusion_search::lut::export_csv(&l), format!("{} entries", l.entries.len())),
        LutFormat::Apq => {
            let text = apq::lut_dict(&l)?;
            (out.to_path_buf(), text, format!("{} APQ keys plus head and tail", bitfusion_search::lut::apq_view(&l).len()))
        }
        LutFormat::Ofa => {
            let (w, a) = ofa::parse_bits(bits, &l.header.space)?;
            let table = ofa::latency_table(&l, w, a)?;
            let path = if out.is_dir() { out.join(ofa::file_name(table.resolution)) } else { out.to_path_buf() };
            (path, table.to_yaml(), format!("{} keys at W{w}A{a}, resolution {}", table.entries.len(), table.resolution))
        }
    };
    write(&path, &text)?;
    eprintln!("wrote {} ({what})", path.display());
    Ok(())
}

pub fn arch_export(arch: &str, space: &str, format: &str, out: Option<&Path>) -> anyhow::Result<()> {
    use bitfusion_search::interop::{ArchFormat, apq, ofa};
    let format: ArchFormat = format.parse()?;
    let space = bitfusion_search::space::Space::load(space)?;
    let a = bitfusion_search::arch::Arch::parse(&crate::supernet::read_arch(arch)?, &space)?;
    let text = match format {
        ArchFormat::Apq => apq::arch_json(&space, &a),
        ArchFormat::Ofa => ofa::arch_json(&space, &a),
    };
    match out {
        Some(p) => {
            write(p, &text)?;
            eprintln!("wrote {}", p.display());
        }
        None => println!("{text}"),
    }
    Ok(())
}

pub fn arch_import(file: &Path, space: &str) -> anyhow::Result<()> {
    let space = bitfusion_search::space::Space::load(space)?;
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let a = bitfusion_search::interop::apq::arch_from_json(&text, &space, &file.display().to_string())?;
    println!("{}", a.to_text());
    Ok(())
}

pub fn lut_query(lut: &Path, arch: &str, hw: Option<&str>, set: &[String]) -> anyhow::Result<()> {
    use bitfusion_search::arch::Arch;
    let l = bitfusion_search::lut::Lut::load(lut)?;
    if let Some(h) = hw {
        l.check_hw(&load_hw(h, set)?)?;
    }
    let text = if Path::new(arch).exists() { std::fs::read_to_string(arch)? } else { arch.to_string() };
    let a = Arch::parse(&text, &l.header.space)?;
    let (entries, lat, en) = l.cost(&a)?;
    let layers = a.layers(&l.header.space, l.header.batch);
    println!("{:<22} {:<38} {:>7} {:>12} {:>12}", "layer", "key", "out", "latency_ms", "energy_mJ");
    for (e, layer) in entries.iter().zip(&layers) {
        println!(
            "{:<22} {:<38} {:>7} {:>12.6} {:>12}",
            layer.name,
            e.key.apq_key(),
            e.key.out_bits,
            e.latency_ms,
            e.energy_mj.map(|x| format!("{x:.6}")).unwrap_or_else(|| "n/a".into())
        );
    }
    println!("total: {lat:.6} ms, {} mJ ({} layers)", en.map(|x| format!("{x:.6}")).unwrap_or_else(|| "n/a".into()), entries.len());
    Ok(())
}

pub fn lut_check(lut: &Path, samples: usize, seed: u64) -> anyhow::Result<bool> {
    let l = bitfusion_search::lut::Lut::load(lut)?;
    let checks = bitfusion_search::lut::check(&l, samples, seed)?;
    let worst_lat = checks.iter().map(|c| c.latency_error()).fold(0.0, f64::max);
    let worst_en = checks.iter().filter_map(|c| c.energy_error()).fold(0.0, f64::max);
    for c in checks.iter().take(5) {
        println!("{:.6} ms (LUT) vs {:.6} ms (simulated): {}", c.lut_latency_ms, c.sim_latency_ms, c.arch);
    }
    println!(
        "{} random architectures: largest relative error {:.2e} in latency, {:.2e} in energy (the LUT is additive: layers run one after another)",
        checks.len(),
        worst_lat,
        worst_en
    );
    let failed: Vec<_> = checks.iter().filter(|c| !c.exact(1e-9)).collect();
    if failed.is_empty() {
        return Ok(true);
    }
    let mj = |e: Option<f64>| e.map_or_else(|| "n/a".to_string(), |x| format!("{x:.6}"));
    let dmj = |e: Option<f64>| e.map_or_else(|| "n/a".to_string(), |x| format!("{x:+.3e}"));
    println!("{} of {} architectures differ from their whole-network simulation ({} model, LUT minus simulated):", failed.len(), checks.len(), l.header.model);
    for c in failed.iter().take(10) {
        println!(
            "  {}: LUT {} cycles, {} mJ; simulated {} cycles, {} mJ: {:+} cycles, {} mJ",
            c.arch,
            c.lut_cycles,
            mj(c.lut_energy_mj),
            c.sim_cycles,
            mj(c.sim_energy_mj),
            c.cycles_diff(),
            dmj(c.energy_diff_mj())
        );
        for d in &c.layers {
            println!(
                "    layer {} entry {} (outputs at {} bits{}): LUT {} cycles, {} mJ; in the network {} cycles, {} mJ: {:+} cycles, {} mJ",
                d.layer,
                d.key.apq_key(),
                d.key.out_bits,
                if d.key.im2col { ", im2col" } else { "" },
                d.lut_cycles,
                mj(d.lut_energy_mj),
                d.sim_cycles,
                mj(d.sim_energy_mj),
                d.cycles_diff(),
                dmj(d.energy_diff_mj())
            );
        }
        if c.layers.is_empty() {
            println!("    every entry equals its layer simulated in the network; only the sums differ");
        }
    }
    let first = failed[0];
    let culprit = first.layers.first().map(|d| format!(" (first: layer {} of {}, {:+} cycles)", d.layer, first.arch, d.cycles_diff())).unwrap_or_default();
    bail!("{}: the LUT's sums differ from whole-network simulations for {} of {} architectures{culprit}; see the list above", lut.display(), failed.len(), checks.len())
}

pub fn lut_diff(ours: &Path, theirs: &Path) -> anyhow::Result<()> {
    use bitfusion_search::lut::{Diff, diff};
    let l = bitfusion_search::lut::Lut::load(ours)?;
    let t = bitfusion_search::interop::apq::read_theirs(theirs)?;
    println!("ours: {} ({} model, batch {}, '{}'); theirs: {}", ours.display(), l.header.model, l.header.batch, l.header.hw_name, theirs.display());
    for d in diff(&l, &t) {
        println!(
            "{}: {} of their {} entries found in ours; latency ours/theirs median {:.3}, {:.0}% within 1%, {:.0}% within 5%; energy median {:.3}",
            d.kind,
            d.matched,
            d.theirs,
            Diff::median(&d.latency_ratios),
            100.0 * d.within(0.01),
            100.0 * d.within(0.05),
            Diff::median(&d.energy_ratios)
        );
    }
    Ok(())
}

pub fn space(name: &str, random: usize, seed: u64) -> anyhow::Result<()> {
    use bitfusion_search::arch::Arch;
    use bitfusion_search::space::Space;
    let s = Space::load(name)?;
    println!("space '{}': {}", s.name, s.description);
    println!("input {}x{}x{}, kernels {:?}, bits {:?} (pw_w, pw_a, dw_w, dw_a each)", s.input_size, s.input_size, s.input_channels, s.kernels, s.bits);
    println!("{:<6} {:<6} {:>5} {:>5} {:>6} {:>7}  middle channels", "stage", "block", "in", "out", "size", "stride");
    for sl in s.slots() {
        println!(
            "{:<6} {:<6} {:>5} {:>5} {:>6} {:>7}  {} choices, {}..{}",
            sl.stage,
            sl.index,
            sl.in_channels,
            sl.out_channels,
            sl.in_size,
            sl.stride,
            sl.mids.len(),
            sl.mids.first().copied().unwrap_or(0),
            sl.mids.last().copied().unwrap_or(0)
        );
    }
    let a = Arch::random(&s, &mut seed.clone());
    let (arch, bits) = a.encode(&s);
    println!(
        "encoding: {} dims ({} architecture + {} bits); distinct layers (LUT entries): {}",
        arch.len() + bits.len(),
        arch.len(),
        bits.len(),
        bitfusion_search::lut::enumerate(&s).len()
    );
    let mut state = seed;
    for _ in 0..random {
        let a = Arch::random(&s, &mut state);
        let macs: u64 = a.layers(&s, 1).iter().map(|l| l.macs()).sum();
        println!("{} ({:.1} MMACs)", a.to_text(), macs as f64 / 1e6);
    }
    Ok(())
}
