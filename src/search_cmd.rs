//! `bitfusion predictor`, `bitfusion search` and `bitfusion plot pareto`: thin wrappers over the
//! search and models crates, and the result files they share with the pipeline.
//!
//! Files of a search directory: `points.csv` (one row per method and budget), `front.csv` (the
//! NSGA-II front), `best.json` (the joint search's winner with its per-layer bits and costs),
//! `transfer.csv` (the predictor-transfer experiment).

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use bitfusion_models::pairs::{self, Pair};
use bitfusion_models::predictor::{self, AccuracyPredictor, EnsembleConfig, EnsemblePredictor, ExperimentConfig, Kind, LoadedPredictor, Pessimistic, PredictorConfig};
use bitfusion_search::evolution::{self, Budget, Candidate, EvoConfig, Evaluator, Freedom};
use bitfusion_search::lut::Lut;
use bitfusion_search::methods::{self, METHODS};
use bitfusion_search::{Arch, Space};
use serde::{Deserialize, Serialize};

#[derive(clap::Subcommand)]
pub enum PredictorCommand {
    /// Train an accuracy predictor on pair files (from `supernet sample`): fp32 on fp32 pairs, or
    /// with --quantized on quantized pairs (the ensemble also reads the fp32 pairs and the groups'
    /// fp32 accuracies); reports held-out RMSE, Kendall tau and pairwise accuracy.
    Train {
        /// Pair files (JSON lines).
        #[arg(long = "data", required = true)]
        data: Vec<PathBuf>,
        #[arg(long)]
        out: PathBuf,
        /// Quantization-aware: predict the quantized accuracy of an architecture with its bits.
        #[arg(long)]
        quantized: bool,
        /// Initialise from this fp32 predictor of the same kind (predictor transfer; implies
        /// --quantized).
        #[arg(long)]
        transfer_from: Option<PathBuf>,
        /// Space of the pairs (default: the one named in the pairs, as a preset).
        #[arg(long)]
        space: Option<String>,
        /// ensemble (the ranking predictor) or apq (APQ's MLP on the one-hot encoding).
        #[arg(long, default_value = "ensemble")]
        kind: String,
        #[command(flatten)]
        opts: PredictorOpts,
    },
    /// Held-out evaluation: RMSE, Kendall tau and pairwise accuracy of each kind (apq, ensemble,
    /// ridge) on fp32 and quantized pairs, over seeds of held-out architectures; optionally the
    /// transfer experiment. Writes predictor_holdout.json (and transfer.csv with its charts) into
    /// OUT and prints the table.
    Eval {
        /// Pair files: fp32 and quantized (JSON lines).
        #[arg(long = "data", required = true)]
        data: Vec<PathBuf>,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 5)]
        seeds: usize,
        /// Also run the transfer experiment with these numbers of quantized training pairs.
        #[arg(long, value_delimiter = ',')]
        transfer: Vec<usize>,
        #[arg(long)]
        space: Option<String>,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// The transfer experiment with APQ's MLP: pairwise accuracy of transferred vs from-scratch
    /// predictors against the number of quantized training pairs; writes transfer.csv and the
    /// chart into OUT.
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

/// Settings of APQ's MLP.
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
    /// Parents kept each generation (default: a quarter of the population).
    #[arg(long)]
    pub parents: Option<usize>,
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
    /// Candidates each method hands to measured re-ranking (its best distinct feasible ones).
    #[arg(long, default_value_t = 5)]
    pub top_k: usize,
}

impl EvoArgs {
    pub fn config(&self) -> anyhow::Result<EvoConfig> {
        let parents = self.parents.unwrap_or(self.population / 4).max(1);
        if self.population == 0 || parents == 0 {
            bail!("--population and --parents must be at least 1");
        }
        if parents > self.population {
            bail!("--parents {parents} is more than --population {}: the parents are the best of the population", self.population);
        }
        if !(0.0..=1.0).contains(&self.mutate_prob) {
            bail!("--mutate-prob {} is not a probability", self.mutate_prob);
        }
        Ok(EvoConfig {
            population: self.population,
            parents,
            mutations: self.mutations,
            crossovers: self.crossovers,
            mutate_prob: self.mutate_prob,
            generations: self.generations,
            seed: self.seed,
            top_k: self.top_k.max(1),
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
    /// With an ensemble predictor, rank by its mean minus this many standard deviations of its
    /// members.
    #[arg(long, default_value_t = 1.0)]
    pub penalty: f64,
    #[command(flatten)]
    pub evo: EvoArgs,
}

/// A row of points.csv: one method under one budget. `arch` is the method's winner: its
/// predicted best, or after measured re-ranking the best measured of its candidates; the `top1_`
/// columns keep the predicted best beside it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PointRow {
    pub method: String,
    #[serde(serialize_with = "tidy_opt")]
    pub budget_latency_ms: Option<f64>,
    #[serde(serialize_with = "tidy_opt")]
    pub budget_energy_mj: Option<f64>,
    pub arch: String,
    #[serde(serialize_with = "tidy_opt")]
    pub predicted_accuracy: Option<f64>,
    /// Validation accuracy of the winner (the real evaluator: recalibrated, quantized).
    #[serde(serialize_with = "tidy_opt")]
    pub measured_accuracy: Option<f64>,
    #[serde(serialize_with = "tidy_opt")]
    pub latency_ms: Option<f64>,
    #[serde(serialize_with = "tidy_opt")]
    pub energy_mj: Option<f64>,
    pub queries: usize,
    #[serde(serialize_with = "tidy")]
    pub seconds: f64,
    pub note: String,
    /// Test-split accuracy of the winner.
    #[serde(default)]
    #[serde(serialize_with = "tidy_opt")]
    pub test_accuracy: Option<f64>,
    /// Candidates measured by re-ranking (0: not re-ranked).
    #[serde(default)]
    pub candidates: usize,
    /// The predicted-only winner (the first candidate) and its measurements.
    #[serde(default)]
    pub top1_arch: String,
    #[serde(default)]
    #[serde(serialize_with = "tidy_opt")]
    pub top1_predicted: Option<f64>,
    #[serde(default)]
    #[serde(serialize_with = "tidy_opt")]
    pub top1_measured: Option<f64>,
    #[serde(default)]
    #[serde(serialize_with = "tidy_opt")]
    pub top1_test: Option<f64>,
}

/// Numbers people read in points.csv and front.csv: 7 significant digits, no float noise.
fn tidy<S: serde::Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(bitfusion_util::round_sig(*v, 7))
}

fn tidy_opt<S: serde::Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(x) => tidy(x, s),
        None => s.serialize_none(),
    }
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
    bitfusion_util::write_atomic(path, &bytes).with_context(|| format!("cannot write {}", path.display()))
}

/// Read pair files (JSON lines) into one list.
pub fn read_pair_files(files: &[PathBuf]) -> anyhow::Result<Vec<Pair>> {
    let mut all = Vec::new();
    for f in files {
        if !f.exists() {
            bail!("{}: no such pair file (write one with `bitfusion supernet sample`)", f.display());
        }
        let read = pairs::read_pairs(f).map_err(|e| anyhow!(e))?;
        if read.is_empty() && std::fs::metadata(f).is_ok_and(|m| m.len() > 0) {
            bail!("{}: no pair records in it; is it a pair file (from `bitfusion supernet sample`)?", f.display());
        }
        all.extend(read);
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

fn print_metrics(kind: &str, quantized: bool, transferred: bool, m: &predictor::Metrics, out: &Path) {
    println!(
        "{} {kind} predictor{} on {} pairs ({} held out): RMSE {:.2} points of accuracy, Kendall tau {:.3}, pairwise accuracy {:.1}%; wrote {}",
        if quantized { "quantization-aware" } else { "fp32" },
        if transferred { " (transferred)" } else { "" },
        m.train,
        m.test,
        100.0 * m.rmse,
        m.kendall_tau,
        100.0 * m.pairwise_accuracy,
        out.display()
    );
}

pub fn run_predictor(cmd: PredictorCommand) -> anyhow::Result<bool> {
    match cmd {
        PredictorCommand::Train { data, out, quantized, transfer_from, space, kind, opts } => {
            let pairs = read_pair_files(&data)?;
            let space = space_of(&pairs, space.as_deref())?;
            let quantized = quantized || transfer_from.is_some();
            match kind.parse::<Kind>().map_err(|e| anyhow!("--kind: {e}"))? {
                Kind::Apq => {
                    let init = transfer_from.as_deref().map(AccuracyPredictor::load).transpose()?;
                    let samples = predictor::samples(&space, &pairs, quantized).map_err(|e| anyhow!(e))?;
                    let p = predictor::train_predictor(&space, &samples, quantized, init.as_ref(), &opts.config()).map_err(|e| anyhow!(e))?;
                    p.save(&out)?;
                    print_metrics("apq", quantized, init.is_some(), &p.header.metrics, &out);
                }
                k => {
                    let cfg = EnsembleConfig { seed: opts.seed, ..EnsembleConfig::default() };
                    let cfg = if k == Kind::Ridge { cfg.ridge(10.0) } else { cfg };
                    let d = predictor::pair_data(&space, &pairs).map_err(|e| anyhow!(e))?;
                    let p = if quantized {
                        let init = transfer_from.as_deref().map(EnsemblePredictor::load).transpose()?;
                        if init.as_ref().is_some_and(|p| p.header.quantized) {
                            bail!("--transfer-from: {} is a quantization-aware predictor; give an fp32 one", transfer_from.as_deref().unwrap_or(Path::new("?")).display());
                        }
                        predictor::train_quant(&space, &d.quant, init.as_ref(), &cfg).map_err(|e| anyhow!(e))?
                    } else {
                        predictor::train_fp32(&space, &d.fp32_table(|_| true), &cfg).map_err(|e| anyhow!(e))?
                    };
                    p.save(&out)?;
                    print_metrics(k.name(), quantized, transfer_from.is_some(), &p.header.metrics, &out);
                }
            }
            Ok(true)
        }
        PredictorCommand::Eval { data, out, seeds, transfer, space, seed } => {
            let pairs = read_pair_files(&data)?;
            let space = space_of(&pairs, space.as_deref())?;
            let d = predictor::pair_data(&space, &pairs).map_err(|e| anyhow!(e))?;
            let cfg = ExperimentConfig { seeds: seeds.max(1), ensemble: EnsembleConfig { seed, holdout: 0.0, ..EnsembleConfig::default() }, ..ExperimentConfig::default() };
            std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
            let rows = predictor::holdout_report(&space, &d, &cfg, &mut |s, kind, f, q| {
                eprintln!("seed {s} {}: fp32 tau {:.3}, quantized tau {:.3}", kind.name(), f.kendall_tau, q.kendall_tau);
            })
            .map_err(|e| anyhow!(e))?;
            bitfusion_util::write_atomic(&out.join("predictor_holdout.json"), serde_json::to_string_pretty(&rows)?.as_bytes())?;
            println!("| kind | target | train | test | RMSE | Kendall tau (mean ± std [min, max]) | pairwise accuracy |");
            println!("|---|---|---|---|---|---|---|");
            for h in &rows {
                let sp = |x: &predictor::Spread, n: usize| format!("{:.n$} ± {:.n$} [{:.n$}, {:.n$}]", x.mean, x.std, x.min, x.max);
                println!("| {} | {} | {:.0} | {:.0} | {} | {} | {} |", h.kind.name(), h.target, h.train, h.test, sp(&h.rmse, 4), sp(&h.kendall_tau, 3), sp(&h.pairwise_accuracy, 3));
            }
            if !transfer.is_empty() {
                let pts = predictor::transfer_curves(&space, &d, &transfer, &cfg, &mut |p| {
                    eprintln!("transfer {} {} pairs: scratch {:.3}, transferred {:.3}", p.kind, p.quantized_pairs, p.scratch_pairwise, p.transferred_pairwise);
                })
                .map_err(|e| anyhow!(e))?;
                write_transfer(&out, &pts)?;
                for p in &pts {
                    println!("transfer {} {:>4} pairs: scratch {:.3}, transferred {:.3}", p.kind, p.quantized_pairs, p.scratch_pairwise, p.transferred_pairwise);
                }
            }
            Ok(true)
        }
        PredictorCommand::Transfer { fp32, data, out, sizes, seeds, opts } => {
            let fp = match LoadedPredictor::load(&fp32)? {
                LoadedPredictor::Apq(p) => *p,
                LoadedPredictor::Ensemble(_) => {
                    bail!("--fp32: {} is a ranking-ensemble predictor; the transfer experiment starts from APQ's MLP (train one with --kind apq)", fp32.display())
                }
            };
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
    write_transfer(out, &pts)?;
    Ok(pts)
}

/// Write transfer.csv and its charts.
pub fn write_transfer(out: &Path, pts: &[predictor::TransferPoint]) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut w = csv::Writer::from_writer(Vec::new());
    for p in pts {
        w.serialize(p)?;
    }
    bitfusion_util::write_atomic(&out.join("transfer.csv"), &w.into_inner().map_err(|e| anyhow!("csv: {e}"))?)?;
    plot_transfer_points(out, pts)
}

/// The transfer charts of transfer.csv's points (bands where the file has them): `transfer` for
/// the ranking ensemble (and files without a kind), `transfer_apq` for APQ's MLP.
fn plot_transfer_points(out: &Path, pts: &[predictor::TransferPoint]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut kinds: Vec<&str> = pts.iter().map(|p| p.kind.as_str()).collect();
    kinds.sort_unstable();
    kinds.dedup();
    for kind in kinds {
        let bands: Vec<bitfusion_plots::TransferBand> = pts
            .iter()
            .filter(|p| p.kind == kind)
            .map(|p| bitfusion_plots::TransferBand {
                pairs: p.quantized_pairs,
                scratch: (p.scratch_pairwise, p.scratch_pairwise_min.unwrap_or(p.scratch_pairwise), p.scratch_pairwise_max.unwrap_or(p.scratch_pairwise)),
                transferred: (p.transferred_pairwise, p.transferred_pairwise_min.unwrap_or(p.transferred_pairwise), p.transferred_pairwise_max.unwrap_or(p.transferred_pairwise)),
            })
            .collect();
        let (stem, who) = match kind {
            "apq" => ("transfer_apq", "APQ's MLP"),
            "" => ("transfer", "APQ's MLP"),
            _ => ("transfer", "the ranking ensemble"),
        };
        files.extend(bitfusion_plots::plot_transfer(out, stem, &format!("predictor transfer (APQ Fig. 7), {who}: pairwise accuracy vs quantized pairs"), &bands)?);
    }
    Ok(files)
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
        test_accuracy: None,
        candidates: 0,
        top1_arch: r.best.as_ref().map(|c| c.arch.to_text()).unwrap_or_default(),
        top1_predicted: r.best.as_ref().map(|c| c.accuracy),
        top1_measured: None,
        top1_test: None,
    }
}

/// The candidates each (method, budget) hands to re-ranking: arch text, predicted accuracy,
/// latency, energy, best first.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CandidateList {
    pub method: String,
    pub budget_latency_ms: Option<f64>,
    pub budget_energy_mj: Option<f64>,
    pub candidates: Vec<(String, f64, f64, f64)>,
}

impl CandidateList {
    fn of(budget: &Budget, r: &methods::MethodResult) -> CandidateList {
        CandidateList {
            method: r.method.clone(),
            budget_latency_ms: budget.latency_ms,
            budget_energy_mj: budget.energy_mj,
            candidates: r.top.iter().map(|c| (c.arch.to_text(), c.accuracy, c.latency_ms, c.energy_mj)).collect(),
        }
    }

    pub fn matches(&self, r: &PointRow) -> bool {
        self.method == r.method && self.budget_latency_ms == r.budget_latency_ms && self.budget_energy_mj == r.budget_energy_mj
    }
}

pub fn read_candidates(path: &Path) -> anyhow::Result<Vec<CandidateList>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: malformed candidate lists", path.display()))
}

/// The winner's description: canonical form, prediction, costs and per-layer bits.
#[derive(Serialize)]
struct BestFile<'a> {
    arch: String,
    #[serde(serialize_with = "tidy")]
    predicted_accuracy: f64,
    #[serde(serialize_with = "tidy")]
    latency_ms: f64,
    #[serde(serialize_with = "tidy")]
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

/// Load and cross-check a LUT and a predictor (either kind) against a space.
pub fn load_inputs(space: &str, lut: &Path, predictor: &Path) -> anyhow::Result<(Space, Lut, LoadedPredictor)> {
    let space = Space::load(space)?;
    let lut = Lut::load(lut)?;
    lut.check_space(&space)?;
    let p = LoadedPredictor::load(predictor)?;
    if p.space().hash() != space.hash() {
        bail!("{}: the predictor was trained on space '{}', not on '{}' (space hashes differ)", predictor.display(), p.space().name, space.name);
    }
    if !p.quantized() {
        eprintln!("warning: {} is an fp32 predictor: it does not see the searched bits", predictor.display());
    }
    Ok((space, lut, p))
}

/// What a search queries: an ensemble's mean minus `penalty` standard deviations of its members,
/// or the predictor itself.
pub fn search_view<'a>(p: &'a LoadedPredictor, penalty: f64) -> Box<dyn evolution::Predictor + 'a> {
    match p {
        LoadedPredictor::Ensemble(e) => Box::new(Pessimistic { ensemble: e, k: penalty }),
        other => Box::new(other),
    }
}

/// Search under one budget with the chosen methods; rows replace earlier rows of the same
/// method and budget in `out/points.csv`, and each method's candidates for re-ranking those in
/// `out/candidates.json`. Returns the rows of this budget.
pub fn search_budget(space: &Space, lut: &Lut, p: &dyn evolution::Predictor, budget: &Budget, cfg: &EvoConfig, methods_list: &[&str], out: &Path) -> anyhow::Result<Vec<PointRow>> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut results = Vec::new();
    let mut joint_queries = 0;
    for m in methods_list {
        let r = methods::run(m, space, lut, p, budget, cfg, joint_queries)?;
        if *m == "joint" {
            joint_queries = r.queries;
            match &r.best {
                Some(c) => bitfusion_util::write_atomic(&out.join("best.json"), best_file(space, lut, c, budget)?.as_bytes())?,
                None => bail!("{}", r.note),
            }
        }
        results.push(r);
    }
    record_results(out, budget, &results)
}

/// Write methods' results under one budget into `out`: their rows replace earlier rows of the
/// same method and budget in `out/points.csv`, and their candidates for re-ranking those in
/// `out/candidates.json`. Returns the rows.
pub fn record_results(out: &Path, budget: &Budget, results: &[methods::MethodResult]) -> anyhow::Result<Vec<PointRow>> {
    let rows: Vec<PointRow> = results.iter().map(|r| row(budget, r)).collect();
    let lists: Vec<CandidateList> = results.iter().map(|r| CandidateList::of(budget, r)).collect();
    let same = |lat: Option<f64>, en: Option<f64>, m: &str| lat == budget.latency_ms && en == budget.energy_mj && rows.iter().any(|r| r.method == m);
    let mut all = read_rows(&out.join("points.csv"))?;
    all.retain(|x| !same(x.budget_latency_ms, x.budget_energy_mj, &x.method));
    all.extend(rows.iter().cloned());
    write_rows(&out.join("points.csv"), &all)?;
    let cpath = out.join("candidates.json");
    let mut all_lists = read_candidates(&cpath)?;
    all_lists.retain(|x| !same(x.budget_latency_ms, x.budget_energy_mj, &x.method));
    all_lists.extend(lists);
    bitfusion_util::write_atomic(&cpath, serde_json::to_string_pretty(&all_lists)?.as_bytes())?;
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
            test_accuracy: None,
            candidates: 0,
            top1_arch: c.arch.to_text(),
            top1_predicted: Some(c.accuracy),
            top1_measured: None,
            top1_test: None,
        })
        .collect()
}

pub fn search(a: &SearchArgs) -> anyhow::Result<bool> {
    let cfg = a.evo.config()?;
    let (space, lut, p) = load_inputs(&a.space, &a.lut, &a.predictor)?;
    // One search per directory: two would rewrite each other's points.csv and candidates.
    let _lock = bitfusion_util::OutputLock::dir(&a.out)?;
    let budget = Budget { latency_ms: a.latency_ms, energy_mj: a.energy_mj };
    for (what, v) in [("--latency-ms", a.latency_ms), ("--energy-mj", a.energy_mj)] {
        if v.is_some_and(|x| !(x > 0.0 && x.is_finite())) {
            bail!("{what}: give a positive number");
        }
    }
    let list: Vec<&str> = if a.baselines { METHODS.to_vec() } else { vec!["joint"] };
    if !(a.penalty >= 0.0 && a.penalty.is_finite()) {
        bail!("--penalty: give a number of standard deviations >= 0");
    }
    let view = search_view(&p, a.penalty);
    let p = view.as_ref();
    let rows = search_budget(&space, &lut, p, &budget, &cfg, &list, &a.out)?;
    for r in &rows {
        match (r.predicted_accuracy, r.latency_ms, r.energy_mj) {
            (Some(acc), Some(l), Some(e)) => println!("{:<15} predicted {:.2}%  {:.4} ms  {:.4} mJ  {} queries  {:.1} s  {}", r.method, 100.0 * acc, l, e, r.queries, r.seconds, r.arch),
            _ => println!("{:<15} -  {}", r.method, r.note),
        }
    }
    if a.pareto {
        // Seeded with every method's winner and candidates under this budget: the front holds each
        // of them or a point dominating it.
        let lists = read_candidates(&a.out.join("candidates.json"))?;
        let texts = rows.iter().map(|r| r.arch.clone()).chain(
            lists.iter().filter(|l| l.budget_latency_ms == budget.latency_ms && l.budget_energy_mj == budget.energy_mj).flat_map(|l| l.candidates.iter().map(|c| c.0.clone())),
        );
        let seeds: Vec<Arch> = texts.filter(|t| !t.is_empty()).map(|t| Arch::parse(&t, &space)).collect::<Result<_, _>>()?;
        let (front, o) = evolution::pareto_seeded(&mut Evaluator::new(&space, &lut, p), &Freedom::joint(&space), &budget, &cfg, &seeds)?;
        let rows = front_rows(&front, &o, &budget);
        write_rows(&a.out.join("front.csv"), &rows)?;
        println!("Pareto front: {} non-dominated architectures ({} predictor queries, {:.1} s) in {}", rows.len(), o.queries, o.seconds, a.out.join("front.csv").display());
    }
    println!("wrote {}", a.out.join("points.csv").display());
    Ok(true)
}

/// Draw pareto_latency/pareto_energy, the winner's per-layer chart, and the transfer curve
/// (when transfer.csv exists) for a search directory.
/// The three objectives' chart of a search or run directory: the NSGA-II front of `front.csv`
/// and every method's winners of `points.csv` (predicted error, latency, energy).
pub fn plot_objectives(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let point = |r: &PointRow| Some(bitfusion_plots::SearchPoint { method: r.method.clone(), predicted: r.predicted_accuracy?, measured: r.test_accuracy.or(r.measured_accuracy), latency_ms: r.latency_ms?, energy_mj: r.energy_mj? });
    let winners: Vec<_> = read_rows(&dir.join("points.csv"))?.iter().filter_map(point).collect();
    let front: Vec<_> = read_rows(&dir.join("front.csv"))?.iter().filter_map(point).collect();
    if winners.is_empty() && front.is_empty() {
        bail!("{}: no points.csv or front.csv rows (run `bitfusion search --pareto --out {}` first)", dir.display(), dir.display());
    }
    Ok(bitfusion_plots::plot_objectives(dir, &bitfusion_plots::Objectives { front: &front, winners: &winners })?)
}

pub fn plot_pareto(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut rows = read_rows(&dir.join("points.csv"))?;
    rows.extend(read_rows(&dir.join("front.csv"))?);
    if rows.is_empty() {
        bail!("{}: no points.csv or front.csv (run `bitfusion search --out {}` first)", dir.display(), dir.display());
    }
    // Measured points are the test-split accuracies (older files without them: validation).
    let point = |r: &PointRow| Some(bitfusion_plots::SearchPoint { method: r.method.clone(), predicted: r.predicted_accuracy?, measured: r.test_accuracy.or(r.measured_accuracy), latency_ms: r.latency_ms?, energy_mj: r.energy_mj? });
    let unconstrained = |r: &&PointRow| r.budget_latency_ms.is_none() && r.budget_energy_mj.is_none();
    let lat: Vec<_> = rows.iter().filter(|r| r.budget_latency_ms.is_some() || unconstrained(r)).filter_map(point).collect();
    let en: Vec<_> = rows.iter().filter(|r| r.budget_energy_mj.is_some() || unconstrained(r)).filter_map(point).collect();
    let mut files = bitfusion_plots::plot_pareto(dir, &lat, &en)?;
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
        files.extend(plot_transfer_points(dir, &pts)?);
    }
    Ok(files)
}
