//! `bitfusion run`: the whole pipeline on an embedded default, each stage cached in the output
//! directory and skipped when its inputs (recorded in `stages.json`) have not changed.
//!
//! Stages: LUT (simulator) -> supernet (shipped checkpoint, or trained) -> fp32 and quantized
//! pairs (shipped, topped up by sampling) -> predictors (fp32, transferred, scratch) -> transfer
//! experiment -> searches at several latency budgets with every method, and the Pareto front ->
//! verification of every winner by quantization-aware fine-tuning -> plots -> report.md.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, anyhow, bail};
use bitfusion_models::data::{DEFAULT_DIR, DataSet};
use bitfusion_models::eval::{self, EvalConfig, FinetuneConfig, SampleConfig};
use bitfusion_models::predictor::{self, AccuracyPredictor, PredictorConfig};
use bitfusion_models::train::{self, TrainConfig};
use bitfusion_search::evolution::{self, Budget, EvoConfig, Evaluator, Freedom, cheapest, largest};
use bitfusion_search::lut::{BuildSpec, Lut, build_lut, hw_hash};
use bitfusion_search::methods::METHODS;
use bitfusion_search::{Arch, Space};
use bitfusion_simulator::config::{CostModelName, load_hw};
use bitfusion_simulator::mapping::Objective;
use bitfusion_simulator::report::write_atomic;

use crate::search_cmd::{self, PointRow, read_rows, write_rows};

/// Where the shipped artifacts live (committed; see models/artifacts/micro/README.md).
const ARTIFACTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/artifacts/micro");

#[derive(clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub hw: crate::HwArgs,
    #[arg(long, default_value = "bitfusion-run")]
    pub out: PathBuf,
    /// Data directory (default: Debian's dataset-fashion-mnist).
    #[arg(long, default_value = DEFAULT_DIR)]
    pub data: PathBuf,
    /// Redo everything from scratch: train the supernet and collect pairs instead of starting
    /// from the shipped artifacts.
    #[arg(long)]
    pub retrain: bool,
    #[arg(long, default_value_t = 150)]
    pub fp32_pairs: usize,
    #[arg(long, default_value_t = 60)]
    pub quant_pairs: usize,
    /// Fine-tuning steps (batch 32) of each quantized pair.
    #[arg(long, default_value_t = 20)]
    pub finetune_steps: usize,
    /// Fine-tuning steps (batch 32) when verifying each winner.
    #[arg(long, default_value_t = 30)]
    pub verify_steps: usize,
    /// Latency budgets, as fractions of the way from the cheapest to the largest architecture.
    #[arg(long, value_delimiter = ',', default_value = "0.1,0.25,0.5,0.8")]
    pub budgets: Vec<f64>,
    #[arg(long, default_value_t = 200)]
    pub generations: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// The stage cache: stage name -> fingerprint of its inputs.
struct Stages {
    path: PathBuf,
    done: BTreeMap<String, String>,
}

impl Stages {
    fn load(dir: &Path) -> anyhow::Result<Stages> {
        let path = dir.join("stages.json");
        let done = if path.exists() {
            serde_json::from_str(&std::fs::read_to_string(&path)?).with_context(|| format!("{}: corrupt stage cache (delete it to redo every stage)", path.display()))?
        } else {
            BTreeMap::new()
        };
        Ok(Stages { path, done })
    }

    fn fresh(&self, stage: &str, fingerprint: &str, outputs: &[&Path]) -> bool {
        self.done.get(stage).is_some_and(|f| f == fingerprint) && outputs.iter().all(|p| p.exists())
    }

    fn mark(&mut self, stage: &str, fingerprint: &str) -> anyhow::Result<()> {
        self.done.insert(stage.to_string(), fingerprint.to_string());
        write_atomic(&self.path, serde_json::to_string_pretty(&self.done)?.as_bytes()).with_context(|| format!("cannot write {}", self.path.display()))
    }
}

fn say(msg: impl AsRef<str>) {
    eprintln!("[run] {}", msg.as_ref());
}

fn copy_artifact(name: &str, to: &Path) -> anyhow::Result<bool> {
    let from = Path::new(ARTIFACTS).join(name);
    if from.exists() && !to.exists() {
        let bytes = std::fs::read(&from).with_context(|| format!("cannot read {}", from.display()))?;
        write_atomic(to, &bytes).with_context(|| format!("cannot write {}", to.display()))?;
        return Ok(true);
    }
    Ok(false)
}

/// Measurement settings of the pipeline's pairs (recorded beside the shipped pair files).
pub fn pair_eval() -> EvalConfig {
    EvalConfig { calibration_images: 500, eval_images: Some(2000), batch: 500 }
}

pub fn run(a: &RunArgs) -> anyhow::Result<bool> {
    let started = Instant::now();
    let out = &a.out;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut stages = Stages::load(out)?;
    let space = Space::load("micro")?;
    let hw = load_hw(&a.hw.hw, &a.hw.set)?;
    for b in &a.budgets {
        if !(*b > 0.0 && *b <= 1.0) {
            bail!("--budgets: {b} is not a fraction in (0, 1]");
        }
    }
    let mut report = Report::default();

    // 1. LUT.
    let lut_path = out.join("lut.bin");
    let fp = format!("{}|{}|cycle|b1", space.hash(), hw_hash(&hw));
    if !stages.fresh("lut", &fp, &[&lut_path]) {
        say(format!("LUT of space micro on {} (cycle model)", hw.name));
        let t = Instant::now();
        let spec = BuildSpec { space: &space, hw: &hw, model: CostModelName::Cycle, objective: Objective::Cycles, batch: 1 };
        if lut_path.exists() {
            std::fs::remove_file(&lut_path)?;
        }
        build_lut(&spec, &lut_path, &|_, _| {})?;
        stages.mark("lut", &fp)?;
        say(format!("LUT built in {:.1} s", t.elapsed().as_secs_f64()));
    }
    let lut = Lut::load(&lut_path)?;
    lut.check_hw(&hw)?;
    report.lut = format!("{} entries, space micro, hwconfig {} (hash {}), cycle model, batch 1", lut.entries.len(), hw.name, &hw_hash(&hw)[..12]);

    // 2. Supernet.
    let ckpt = out.join("supernet.ckpt");
    let data_dir = a.data.clone();
    let load_data = || -> anyhow::Result<DataSet> { Ok(DataSet::load(&data_dir, 5000, 1)?) };
    if !a.retrain && copy_artifact("supernet.ckpt", &ckpt)? {
        say("supernet: starting from the shipped checkpoint (pass --retrain to train it again)");
    }
    let device = bitfusion_models::device();
    let cfg = TrainConfig::micro_default(a.seed);
    let needs_training = match train::load(&ckpt, &device) {
        Ok(t) => t.state.phase < t.state.config.phases.len(),
        Err(_) => true,
    };
    let data = load_data()?;
    if needs_training {
        say("supernet: training (resumes from its checkpoint)");
        crate::supernet::train_supernet(&space, &data, &cfg, &ckpt, None)?;
    }
    let trained = train::load(&ckpt, &device)?;
    report.supernet = Some(trained.state.clone());

    // 3. Pairs.
    let mut pair_files = Vec::new();
    for (quantized, n, name) in [(false, a.fp32_pairs, "pairs_fp32.jsonl"), (true, a.quant_pairs, "pairs_quant.jsonl")] {
        let path = out.join(name);
        if !a.retrain {
            copy_artifact(name, &path)?;
        }
        let have = eval::read_pairs(&path).map_err(|e| anyhow!(e))?.len();
        if have < n {
            say(format!("sampling {} {} pairs ({have} done)", n - have, if quantized { "quantized" } else { "fp32" }));
            let sc = SampleConfig { n, seed: a.seed, quantized, finetune: FinetuneConfig { steps: a.finetune_steps, ..FinetuneConfig::default() }, eval: pair_eval() };
            let t = Instant::now();
            eval::sample_pairs(&trained.net, &trained.space, &data, &sc, &path, &device, &mut |i, total, p| {
                if i % 10 == 0 {
                    say(format!("  pair {}/{total}: {:.3} ({:.1} s)", i + 1, p.accuracy, t.elapsed().as_secs_f64()));
                }
            })
            .map_err(|e| anyhow!(e))?;
        }
        let pairs = eval::read_pairs(&path).map_err(|e| anyhow!(e))?;
        report.pairs.push((quantized, pairs.len(), eval::spread(&pairs).unwrap_or_default(), pairs.iter().map(|p| p.seconds).sum()));
        pair_files.push(path);
    }

    // 4. Predictors and 5. the transfer experiment.
    let all_pairs = search_cmd::read_pair_files(&pair_files)?;
    let fp32_samples = predictor::samples(&space, &all_pairs, false).map_err(|e| anyhow!(e))?;
    let quant_samples = predictor::samples(&space, &all_pairs, true).map_err(|e| anyhow!(e))?;
    let pcfg = PredictorConfig { seed: a.seed, ..PredictorConfig::default() };
    let (p_fp, p_tr, p_sc) = (out.join("predictor_fp32.bin"), out.join("predictor_quant.bin"), out.join("predictor_quant_scratch.bin"));
    let fp = format!("{}|{}|{:?}", fp32_samples.len(), quant_samples.len(), pcfg);
    if !stages.fresh("predictors", &fp, &[&p_fp, &p_tr, &p_sc]) {
        say("predictors: fp32, transferred, from scratch");
        let f = predictor::train_predictor(&space, &fp32_samples, false, None, &pcfg).map_err(|e| anyhow!(e))?;
        f.save(&p_fp)?;
        predictor::train_predictor(&space, &quant_samples, true, Some(&f), &pcfg).map_err(|e| anyhow!(e))?.save(&p_tr)?;
        predictor::train_predictor(&space, &quant_samples, true, None, &pcfg).map_err(|e| anyhow!(e))?.save(&p_sc)?;
        stages.mark("predictors", &fp)?;
    }
    let (fp32_p, quant_p, scratch_p) = (AccuracyPredictor::load(&p_fp)?, AccuracyPredictor::load(&p_tr)?, AccuracyPredictor::load(&p_sc)?);
    report.predictors = vec![("fp32".into(), fp32_p.header.metrics.clone()), ("quantized, transferred".into(), quant_p.header.metrics.clone()), ("quantized, from scratch".into(), scratch_p.header.metrics.clone())];
    let transfer_csv = out.join("transfer.csv");
    if !stages.fresh("transfer", &fp, &[&transfer_csv]) {
        say("transfer experiment");
        let n = quant_samples.len();
        let sizes: Vec<usize> = [5, 10, 20, 30, 45, 60, 90].into_iter().filter(|s| *s <= n * 3 / 4).collect();
        search_cmd::transfer(&fp32_p, &quant_samples, &sizes, 3, &PredictorConfig { epochs: 200, ..pcfg.clone() }, out)?;
        stages.mark("transfer", &fp)?;
    }
    let mut r = csv::Reader::from_path(&transfer_csv)?;
    report.transfer = r.deserialize().collect::<Result<_, _>>().with_context(|| format!("{}: malformed", transfer_csv.display()))?;

    // 6. Searches and the front.
    let evo = EvoConfig { generations: a.generations, seed: a.seed, ..EvoConfig::default() };
    let joint = Freedom::joint(&space);
    let (min_lat, _) = cheapest(&space, &lut, &joint, &|e| e.latency_ms)?;
    let max_lat = lut.cost(&largest(&space, *space.bits.iter().max().expect("bits")))?.1;
    let budgets: Vec<f64> = a.budgets.iter().map(|f| min_lat + f * (max_lat - min_lat)).collect();
    let points = out.join("points.csv");
    let fp = format!("{}|{:?}|{:?}|{}", quant_p.header.metrics.rmse, evo, budgets, lut.header.hw_hash);
    if !stages.fresh("search", &fp, &[&points, &out.join("front.csv")]) {
        if points.exists() {
            std::fs::remove_file(&points)?;
        }
        for b in &budgets {
            say(format!("search under {b:.4} ms with every method"));
            search_cmd::search_budget(&space, &lut, &quant_p, &Budget { latency_ms: Some(*b), energy_mj: None }, &evo, METHODS, out)?;
        }
        say("Pareto front (NSGA-II, seeded with the constrained searches' winners)");
        let winners: Vec<Arch> = read_rows(&points)?.iter().filter(|r| !r.arch.is_empty()).map(|r| Arch::parse(&r.arch, &space)).collect::<Result<_, _>>()?;
        let (front, o) = evolution::pareto_seeded(&mut Evaluator::new(&space, &lut, &quant_p), &joint, &Budget::default(), &evo, &winners)?;
        let rows = search_cmd::front_rows(&front, &o, &Budget::default());
        write_rows(&out.join("front.csv"), &rows)?;
        stages.mark("search", &fp)?;
    }

    // 7. Verification: every winner measured (resumable: measured rows are kept).
    let mut rows = read_rows(&points)?;
    let todo = rows.iter().filter(|r| !r.arch.is_empty() && r.measured_accuracy.is_none()).count();
    if todo > 0 {
        say(format!("verifying {todo} winners ({} fine-tuning steps each)", a.verify_steps));
    }
    let ft = FinetuneConfig { steps: a.verify_steps, ..FinetuneConfig::default() };
    let mut cache: BTreeMap<String, f64> = rows.iter().filter_map(|r| r.measured_accuracy.map(|m| (r.arch.clone(), m))).collect();
    for i in 0..rows.len() {
        if rows[i].arch.is_empty() || rows[i].measured_accuracy.is_some() {
            continue;
        }
        let arch_text = rows[i].arch.clone();
        let m = match cache.get(&arch_text) {
            Some(m) => *m,
            None => {
                let arch = Arch::parse(&arch_text, &space)?;
                let m = eval::finetuned_accuracy(&trained.net, &space, &arch, &data, &data.valid, &pair_eval(), &ft, a.seed, &device);
                cache.insert(arch_text.clone(), m);
                m
            }
        };
        rows[i].measured_accuracy = Some(m);
        write_rows(&points, &rows)?;
        say(format!("  {} @ {:.4} ms: predicted {:.4}, measured {m:.4}", rows[i].method, rows[i].budget_latency_ms.unwrap_or(0.0), rows[i].predicted_accuracy.unwrap_or(0.0)));
    }
    report.rows = rows;

    // 8. Plots and 9. the report.
    let files = search_cmd::plot_pareto(out)?;
    report.figures = files.iter().filter(|f| f.extension().is_some_and(|e| e == "png")).map(|f| f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()).collect();
    report.front = read_rows(&out.join("front.csv"))?.len();
    report.seconds = started.elapsed().as_secs_f64();
    write_atomic(&out.join("report.md"), report.markdown(&budgets).as_bytes())?;
    say(format!("done in {:.0} s: {}", report.seconds, out.join("report.md").display()));
    Ok(true)
}

#[derive(Default)]
struct Report {
    lut: String,
    supernet: Option<train::TrainState>,
    /// (quantized, count, (min, median, max), seconds).
    pairs: Vec<(bool, usize, (f64, f64, f64), f64)>,
    predictors: Vec<(String, predictor::Metrics)>,
    transfer: Vec<predictor::TransferPoint>,
    rows: Vec<PointRow>,
    front: usize,
    figures: Vec<String>,
    seconds: f64,
}

fn pct(x: Option<f64>) -> String {
    x.map(|v| format!("{:.2}", 100.0 * v)).unwrap_or_else(|| "-".into())
}

impl Report {
    fn markdown(&self, budgets: &[f64]) -> String {
        let mut s = String::from("# bitfusion run: report\n\n");
        s += &format!("Pipeline time this run: {:.0} s. LUT: {}.\n\n", self.seconds, self.lut);
        let history = self.supernet.as_ref().map(|st| st.history.clone()).unwrap_or_default();
        let test_accuracy = self.supernet.as_ref().and_then(|st| st.test_accuracy);
        let train_s: f64 = history.iter().map(|h| h.seconds).sum();
        s += "## Supernet (micro space, Fashion-MNIST)\n\n| phase | epoch | loss | train acc | valid acc (largest) | s | img/s |\n|---|---|---|---|---|---|---|\n";
        for h in &history {
            s += &format!("| {:?} | {} | {:.3} | {:.4} | {:.4} | {:.0} | {:.0} |\n", h.phase, h.epoch + 1, h.loss, h.train_accuracy, h.valid_accuracy, h.seconds, h.images_per_second);
        }
        s += &format!("\nFull network test accuracy: {} %. Training time {:.0} s.\n\n", pct(test_accuracy), train_s);
        s += "## Pairs (validation accuracy of random subnets)\n\n| kind | pairs | min | median | max | collection s |\n|---|---|---|---|---|---|\n";
        for (q, n, (lo, med, hi), secs) in &self.pairs {
            s += &format!("| {} | {n} | {:.4} | {:.4} | {:.4} | {secs:.0} |\n", if *q { "quantized (fine-tuned)" } else { "fp32" }, lo, med, hi);
        }
        s += "\n## Predictors (held-out split)\n\n| predictor | train | test | RMSE | Kendall tau | pairwise acc |\n|---|---|---|---|---|---|\n";
        for (n, m) in &self.predictors {
            s += &format!("| {n} | {} | {} | {:.4} | {:.3} | {:.3} |\n", m.train, m.test, m.rmse, m.kendall_tau, m.pairwise_accuracy);
        }
        s += "\n## Transfer (figure transfer.png)\n\n| quantized pairs | scratch pairwise | transferred pairwise |\n|---|---|---|\n";
        for p in &self.transfer {
            s += &format!("| {} | {:.3} | {:.3} |\n", p.quantized_pairs, p.scratch_pairwise, p.transferred_pairwise);
        }
        s += "\n## Searches (figures pareto_latency.png, pareto_energy.png; best_layers.png is the joint winner of the last budget)\n\n";
        s += &format!("Design cost shared by every method: LUT simulation (above), supernet training {train_s:.0} s, pair collection {:.0} s. Per method: predictor queries and search time below.\n\n", self.pairs.iter().map(|p| p.3).sum::<f64>());
        for b in budgets {
            s += &format!("### latency budget {b:.4} ms\n\n| method | predicted % | measured % | latency ms | energy mJ | queries | search s | note |\n|---|---|---|---|---|---|---|---|\n");
            for r in self.rows.iter().filter(|r| r.budget_latency_ms.is_some_and(|x| (x - b).abs() < 1e-12)) {
                s += &format!(
                    "| {} | {} | {} | {} | {} | {} | {:.1} | {} |\n",
                    r.method,
                    pct(r.predicted_accuracy),
                    pct(r.measured_accuracy),
                    r.latency_ms.map(|x| format!("{x:.4}")).unwrap_or_else(|| "-".into()),
                    r.energy_mj.map(|x| format!("{x:.5}")).unwrap_or_else(|| "-".into()),
                    r.queries,
                    r.seconds,
                    r.note
                );
            }
            s += "\n";
        }
        s += &format!("Pareto front (NSGA-II, unconstrained): {} non-dominated architectures in front.csv.\n\n## Figures\n\n", self.front);
        for f in &self.figures {
            s += &format!("- {f}\n");
        }
        s
    }
}
