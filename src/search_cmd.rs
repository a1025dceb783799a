//! `bitfusion predictor`, `bitfusion search` and `bitfusion plot pareto`: thin wrappers over the
//! search and models crates, and the result files they share with the pipeline.
//!
//! Files of a search directory: `points.csv` (one row per method and budget), `front.csv` (the
//! NSGA-II front), `best.json` (the joint search's winner with its per-layer bits and costs),
//! `transfer.csv` (the predictor-transfer experiment).

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use bitfusion_models::eval::{self, Pair};
use bitfusion_models::predictor::{self, AccuracyPredictor, PredictorConfig};
use bitfusion_search::evolution::{self, Budget, Candidate, EvoConfig, Evaluator, Freedom};
use bitfusion_search::lut::Lut;
use bitfusion_search::methods::{self, METHODS};
use bitfusion_search::{Arch, Space};
use serde::{Deserialize, Serialize};

#[derive(clap::Subcommand)]
pub enum PredictorCommand {
    /// Train an accuracy predictor on pair files (from `supernet sample`); reports RMSE, Kendall
    /// tau and pairwise accuracy on a held-out split.
    Train {
        /// Pair files (JSON lines); fp32 pairs for an fp32 predictor, quantized ones with --quantized.
        #[arg(long = "data", required = true)]
        data: Vec<PathBuf>,
        #[arg(long)]
        out: PathBuf,
        /// Quantization-aware: read the bit encoding and the quantized pairs.
        #[arg(long)]
        quantized: bool,
        /// Initialise from this fp32 predictor (predictor transfer; implies --quantized).
        #[arg(long)]
        transfer_from: Option<PathBuf>,
        /// Space of the pairs (default: the one named in the pairs, as a preset).
        #[arg(long)]
        space: Option<String>,
        #[command(flatten)]
        opts: PredictorOpts,
    },
    /// The transfer experiment: pairwise accuracy of transferred vs from-scratch predictors against
    /// the number of quantized training pairs; writes transfer.csv and the chart into OUT.
    Transfer {
        #[arg(long)]
        fp32: PathBuf,
        /// Quantized pair files.
        #[arg(long = "data", required = true)]
        data: Vec<PathBuf>,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_delimiter = ',', default_value = "10,20,40,80,160")]
        sizes: Vec<usize>,
        #[arg(long, default_value_t = 3)]
        seeds: usize,
        #[command(flatten)]
        opts: PredictorOpts,
    },
}

#[derive(clap::Args, Clone)]
pub struct PredictorOpts {
    #[arg(long, default_value_t = 400)]
    pub hidden: usize,
    #[arg(long, default_value_t = 300)]
    pub epochs: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

impl PredictorOpts {
    pub fn config(&self) -> PredictorConfig {
        PredictorConfig { hidden: self.hidden, epochs: self.epochs, seed: self.seed, ..PredictorConfig::default() }
    }
}

/// Evolution settings on the command line (APQ's defaults).
#[derive(clap::Args, Clone)]
pub struct EvoArgs {
    #[arg(long, default_value_t = 100)]
    pub population: usize,
    #[arg(long, default_value_t = 25)]
    pub parents: usize,
    #[arg(long, default_value_t = 50)]
    pub mutations: usize,
    #[arg(long, default_value_t = 50)]
    pub crossovers: usize,
    #[arg(long, default_value_t = 0.1)]
    pub mutate_prob: f64,
    #[arg(long, default_value_t = 500)]
    pub generations: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

impl EvoArgs {
    pub fn config(&self) -> anyhow::Result<EvoConfig> {
        if self.population == 0 || self.parents == 0 {
            bail!("--population and --parents must be at least 1");
        }
        if !(0.0..=1.0).contains(&self.mutate_prob) {
            bail!("--mutate-prob {} is not a probability", self.mutate_prob);
        }
        Ok(EvoConfig {
            population: self.population,
            parents: self.parents.min(self.population),
            mutations: self.mutations,
            crossovers: self.crossovers,
            mutate_prob: self.mutate_prob,
            generations: self.generations,
            seed: self.seed,
        })
    }
}

#[derive(clap::Args)]
pub struct SearchArgs {
    /// A preset space or a space TOML file (must be the LUT's).
    #[arg(long, default_value = "micro")]
    pub space: String,
    #[arg(long)]
    pub lut: PathBuf,
    /// A quantization-aware predictor (from `predictor train --quantized` or `--transfer-from`).
    #[arg(long)]
    pub predictor: PathBuf,
    #[arg(long)]
    pub latency_ms: Option<f64>,
    #[arg(long)]
    pub energy_mj: Option<f64>,
    #[arg(long)]
    pub out: PathBuf,
    /// Also return the whole (accuracy, latency, energy) front (NSGA-II) into front.csv.
    #[arg(long)]
    pub pareto: bool,
    /// Also run every baseline method under the same budget.
    #[arg(long)]
    pub baselines: bool,
    #[command(flatten)]
    pub evo: EvoArgs,
}

/// A row of points.csv.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PointRow {
    pub method: String,
    pub budget_latency_ms: Option<f64>,
    pub budget_energy_mj: Option<f64>,
    pub arch: String,
    pub predicted_accuracy: Option<f64>,
    pub measured_accuracy: Option<f64>,
    pub latency_ms: Option<f64>,
    pub energy_mj: Option<f64>,
    pub queries: usize,
    pub seconds: f64,
    pub note: String,
}

pub fn read_rows(path: &Path) -> anyhow::Result<Vec<PointRow>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let mut r = csv::Reader::from_path(path).with_context(|| format!("cannot read {}", path.display()))?;
    r.deserialize().enumerate().map(|(i, row)| row.with_context(|| format!("{}:{}: malformed row", path.display(), i + 2))).collect()
}

pub fn write_rows(path: &Path, rows: &[PointRow]) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        w.serialize(r)?;
    }
    let bytes = w.into_inner().map_err(|e| anyhow!("csv: {e}"))?;
    bitfusion_simulator::report::write_atomic(path, &bytes).with_context(|| format!("cannot write {}", path.display()))
}

/// Read pair files (JSON lines) into one list.
pub fn read_pair_files(files: &[PathBuf]) -> anyhow::Result<Vec<Pair>> {
    let mut all = Vec::new();
    for f in files {
        if !f.exists() {
            bail!("{}: no such pair file (write one with `bitfusion supernet sample`)", f.display());
        }
        all.extend(eval::read_pairs(f).map_err(|e| anyhow!(e))?);
    }
    Ok(all)
}

fn space_of(pairs: &[Pair], given: Option<&str>) -> anyhow::Result<Space> {
    let name = match given {
        Some(s) => s.to_string(),
        None => pairs.first().and_then(|p| p.arch.split(':').next()).map(str::to_string).ok_or_else(|| anyhow!("the pair files are empty"))?,
    };
    Ok(Space::load(&name)?)
}

pub fn run_predictor(cmd: PredictorCommand) -> anyhow::Result<bool> {
    match cmd {
        PredictorCommand::Train { data, out, quantized, transfer_from, space, opts } => {
            let pairs = read_pair_files(&data)?;
            let space = space_of(&pairs, space.as_deref())?;
            let init = transfer_from.as_deref().map(AccuracyPredictor::load).transpose()?;
            let quantized = quantized || init.is_some();
            let samples = predictor::samples(&space, &pairs, quantized).map_err(|e| anyhow!(e))?;
            let p = predictor::train_predictor(&space, &samples, quantized, init.as_ref(), &opts.config()).map_err(|e| anyhow!(e))?;
            p.save(&out)?;
            let m = &p.header.metrics;
            println!(
                "{} predictor{} on {} pairs ({} held out): RMSE {:.4}, Kendall tau {:.3}, pairwise accuracy {:.3}; wrote {}",
                if quantized { "quantization-aware" } else { "fp32" },
                if init.is_some() { " (transferred)" } else { "" },
                m.train,
                m.test,
                m.rmse,
                m.kendall_tau,
                m.pairwise_accuracy,
                out.display()
            );
            Ok(true)
        }
        PredictorCommand::Transfer { fp32, data, out, sizes, seeds, opts } => {
            let fp = AccuracyPredictor::load(&fp32)?;
            let pairs = read_pair_files(&data)?;
            let samples = predictor::samples(&fp.space, &pairs, true).map_err(|e| anyhow!(e))?;
            let pts = transfer(&fp, &samples, &sizes, seeds, &opts.config(), &out)?;
            for p in pts {
                println!("{:>4} pairs: scratch {:.3}, transferred {:.3}", p.quantized_pairs, p.scratch_pairwise, p.transferred_pairwise);
            }
            Ok(true)
        }
    }
}

/// Run the transfer experiment and write transfer.csv and its chart into `out`.
pub fn transfer(
    fp: &AccuracyPredictor,
    samples: &[(Arch, f64)],
    sizes: &[usize],
    seeds: usize,
    cfg: &PredictorConfig,
    out: &Path,
) -> anyhow::Result<Vec<predictor::TransferPoint>> {
    let pts = predictor::transfer_experiment(&fp.space, fp, samples, sizes, seeds.max(1), cfg).map_err(|e| anyhow!(e))?;
    if pts.is_empty() {
        bail!("no transfer point: {} quantized pairs are too few for sizes {sizes:?}", samples.len());
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut w = csv::Writer::from_writer(Vec::new());
    for p in &pts {
        w.serialize(p)?;
    }
    bitfusion_simulator::report::write_atomic(&out.join("transfer.csv"), &w.into_inner().map_err(|e| anyhow!("csv: {e}"))?)?;
    bitfusion_plots::plot_transfer(out, &pts.iter().map(|p| (p.quantized_pairs, p.scratch_pairwise, p.transferred_pairwise)).collect::<Vec<_>>())?;
    Ok(pts)
}

fn row(budget: &Budget, r: &methods::MethodResult) -> PointRow {
    PointRow {
        method: r.method.clone(),
        budget_latency_ms: budget.latency_ms,
        budget_energy_mj: budget.energy_mj,
        arch: r.best.as_ref().map(|c| c.arch.to_text()).unwrap_or_default(),
        predicted_accuracy: r.best.as_ref().map(|c| c.accuracy),
        measured_accuracy: None,
        latency_ms: r.best.as_ref().map(|c| c.latency_ms),
        energy_mj: r.best.as_ref().map(|c| c.energy_mj),
        queries: r.queries,
        seconds: r.seconds,
        note: r.note.clone(),
    }
}

/// The winner's description: canonical form, prediction, costs and per-layer bits.
#[derive(Serialize)]
struct BestFile<'a> {
    arch: String,
    predicted_accuracy: f64,
    latency_ms: f64,
    energy_mj: f64,
    budget: &'a Budget,
    layers: Vec<serde_json::Value>,
}

fn best_file(space: &Space, lut: &Lut, c: &Candidate, budget: &Budget) -> anyhow::Result<String> {
    let (entries, _, _) = lut.cost(&c.arch)?;
    let layers = c
        .arch
        .layers(space, lut.header.batch)
        .iter()
        .zip(entries)
        .map(|(l, e)| {
            serde_json::json!({
                "name": l.name, "in_channels": l.in_channels, "out_channels": l.out_channels, "kernel": l.kernel,
                "stride": l.stride, "groups": l.groups, "w_bits": l.w_bits, "a_bits": l.a_bits,
                "latency_ms": e.latency_ms, "energy_mj": e.energy_mj,
            })
        })
        .collect();
    let f = BestFile { arch: c.arch.to_text(), predicted_accuracy: c.accuracy, latency_ms: c.latency_ms, energy_mj: c.energy_mj, budget, layers };
    Ok(serde_json::to_string_pretty(&f)?)
}

/// Load and cross-check a LUT and a predictor against a space.
pub fn load_inputs(space: &str, lut: &Path, predictor: &Path) -> anyhow::Result<(Space, Lut, AccuracyPredictor)> {
    let space = Space::load(space)?;
    let lut = Lut::load(lut)?;
    lut.check_space(&space)?;
    let p = AccuracyPredictor::load(predictor)?;
    if p.header.space_hash != space.hash() {
        bail!("{}: the predictor was trained on space '{}', not on '{}' (space hashes differ)", predictor.display(), p.header.space, space.name);
    }
    if !p.header.quantized {
        eprintln!("warning: {} is an fp32 predictor: it does not see the searched bits", predictor.display());
    }
    Ok((space, lut, p))
}

/// Search under one budget with the chosen methods; rows replace earlier rows of the same
/// method and budget in `out/points.csv`. Returns the rows of this budget.
pub fn search_budget(space: &Space, lut: &Lut, p: &AccuracyPredictor, budget: &Budget, cfg: &EvoConfig, methods_list: &[&str], out: &Path) -> anyhow::Result<Vec<PointRow>> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut rows = Vec::new();
    let mut joint_queries = 0;
    for m in methods_list {
        let r = methods::run(m, space, lut, p, budget, cfg, joint_queries)?;
        if *m == "joint" {
            joint_queries = r.queries;
            match &r.best {
                Some(c) => bitfusion_simulator::report::write_atomic(&out.join("best.json"), best_file(space, lut, c, budget)?.as_bytes())?,
                None => bail!("{}", r.note),
            }
        }
        rows.push(row(budget, &r));
    }
    let mut all = read_rows(&out.join("points.csv"))?;
    all.retain(|x| !(x.budget_latency_ms == budget.latency_ms && x.budget_energy_mj == budget.energy_mj && rows.iter().any(|r| r.method == x.method)));
    all.extend(rows.iter().cloned());
    write_rows(&out.join("points.csv"), &all)?;
    Ok(rows)
}

/// Rows of points.csv for a Pareto front (method `pareto`).
pub fn front_rows(front: &[Candidate], o: &evolution::Outcome, budget: &Budget) -> Vec<PointRow> {
    front
        .iter()
        .map(|c| PointRow {
            method: "pareto".into(),
            budget_latency_ms: budget.latency_ms,
            budget_energy_mj: budget.energy_mj,
            arch: c.arch.to_text(),
            predicted_accuracy: Some(c.accuracy),
            measured_accuracy: None,
            latency_ms: Some(c.latency_ms),
            energy_mj: Some(c.energy_mj),
            queries: o.queries,
            seconds: o.seconds,
            note: String::new(),
        })
        .collect()
}

pub fn search(a: &SearchArgs) -> anyhow::Result<bool> {
    let (space, lut, p) = load_inputs(&a.space, &a.lut, &a.predictor)?;
    let cfg = a.evo.config()?;
    let budget = Budget { latency_ms: a.latency_ms, energy_mj: a.energy_mj };
    for (what, v) in [("--latency-ms", a.latency_ms), ("--energy-mj", a.energy_mj)] {
        if v.is_some_and(|x| !(x > 0.0 && x.is_finite())) {
            bail!("{what}: give a positive number");
        }
    }
    let list: Vec<&str> = if a.baselines { METHODS.to_vec() } else { vec!["joint"] };
    let rows = search_budget(&space, &lut, &p, &budget, &cfg, &list, &a.out)?;
    for r in &rows {
        match (r.predicted_accuracy, r.latency_ms, r.energy_mj) {
            (Some(acc), Some(l), Some(e)) => println!("{:<15} predicted {:.4}  {:.4} ms  {:.4} mJ  {} queries  {:.1} s  {}", r.method, acc, l, e, r.queries, r.seconds, r.arch),
            _ => println!("{:<15} -  {}", r.method, r.note),
        }
    }
    if a.pareto {
        let (front, o) = evolution::pareto(&mut Evaluator::new(&space, &lut, &p), &Freedom::joint(&space), &budget, &cfg)?;
        let rows = front_rows(&front, &o, &budget);
        write_rows(&a.out.join("front.csv"), &rows)?;
        println!("Pareto front: {} non-dominated architectures ({} predictor queries, {:.1} s) in {}", rows.len(), o.queries, o.seconds, a.out.join("front.csv").display());
    }
    println!("wrote {}", a.out.join("points.csv").display());
    Ok(true)
}

/// Draw pareto_latency/pareto_energy, the winner's per-layer chart, and the transfer curve
/// (when transfer.csv exists) for a search directory.
pub fn plot_pareto(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut rows = read_rows(&dir.join("points.csv"))?;
    rows.extend(read_rows(&dir.join("front.csv"))?);
    if rows.is_empty() {
        bail!("{}: no points.csv or front.csv (run `bitfusion search --out {}` first)", dir.display(), dir.display());
    }
    let pts: Vec<bitfusion_plots::SearchPoint> = rows
        .iter()
        .filter_map(|r| {
            Some(bitfusion_plots::SearchPoint { method: r.method.clone(), predicted: r.predicted_accuracy?, measured: r.measured_accuracy, latency_ms: r.latency_ms?, energy_mj: r.energy_mj? })
        })
        .collect();
    let mut files = bitfusion_plots::plot_pareto(dir, &pts)?;
    let best = dir.join("best.json");
    if best.exists() {
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&best)?).with_context(|| format!("{}: not JSON", best.display()))?;
        let layers: Vec<bitfusion_plots::LayerChoice> = v["layers"]
            .as_array()
            .ok_or_else(|| anyhow!("{}: no layers", best.display()))?
            .iter()
            .map(|l| bitfusion_plots::LayerChoice {
                name: l["name"].as_str().unwrap_or("?").to_string(),
                channels: l["out_channels"].as_u64().unwrap_or(0) as u32,
                w_bits: l["w_bits"].as_u64().unwrap_or(0) as u32,
                a_bits: l["a_bits"].as_u64().unwrap_or(0) as u32,
            })
            .collect();
        let title = format!("searched architecture: {:.4} ms, {:.4} mJ, predicted {:.2}%", v["latency_ms"].as_f64().unwrap_or(0.0), v["energy_mj"].as_f64().unwrap_or(0.0), 100.0 * v["predicted_accuracy"].as_f64().unwrap_or(0.0));
        files.extend(bitfusion_plots::plot_arch(dir, "best_layers", &title, &layers)?);
    }
    let t = dir.join("transfer.csv");
    if t.exists() {
        let mut r = csv::Reader::from_path(&t)?;
        let pts: Vec<predictor::TransferPoint> = r.deserialize().collect::<Result<_, _>>().with_context(|| format!("{}: malformed", t.display()))?;
        files.extend(bitfusion_plots::plot_transfer(dir, &pts.iter().map(|p| (p.quantized_pairs, p.scratch_pairwise, p.transferred_pairwise)).collect::<Vec<_>>())?);
    }
    Ok(files)
}
