//! `bitfusion run`: the whole pipeline on an embedded default, each stage cached in the output
//! directory and skipped when its inputs (recorded in `stages.json`) have not changed.
//!
//! Stages: LUT (simulator) -> supernet (shipped checkpoint, or trained with its
//! quantization-aware phase) -> post-training quantization table -> fp32 and quantized pairs
//! (shipped, topped up by sampling) -> predictors (fp32, quantized; held-out metrics over seeds)
//! -> transfer experiment -> searches with every method at latency and energy budgets, and the
//! NSGA-II front -> measured re-ranking of every method's candidates, winners on the test split ->
//! winners exported (ONNX, safetensors) -> plots -> report.md.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, anyhow, bail};
use bitfusion_models::bilevel::BilevelConfig;
use bitfusion_models::data::{DEFAULT_DIR, DataSet};
use bitfusion_models::eval::{EvalConfig, FinetuneConfig, PtqRow};
use bitfusion_models::pairs::{self, PairPlan, SampleConfig};
use bitfusion_models::predictor::{self, EnsembleConfig, EnsemblePredictor, ExperimentConfig, HoldoutRow, Pessimistic};
use bitfusion_models::quant::Quantizer;
use bitfusion_models::rerank::{Measurer, Split};
use bitfusion_models::train::{self, TrainConfig};
use bitfusion_search::evolution::{self, Budget, EvoConfig, Evaluator, Freedom, cheapest, largest};
use bitfusion_search::lut::{BuildSpec, Lut, build_lut, hw_hash};
use bitfusion_search::methods::{CONTROLLERS, METHODS, MethodResult};
use bitfusion_search::{Arch, Space};
use bitfusion_simulator::Objective;
use bitfusion_simulator::config::{CostModelName, load_hw};
use bitfusion_util::write_atomic;

use crate::search_cmd::{self, PointRow, read_candidates, read_rows, write_rows};
use crate::supernet::file_hash;

/// Where the shipped artifacts live (committed; see models/artifacts/micro/README.md).
const ARTIFACTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/artifacts/micro");

/// The searches rank candidates by the ensemble's mean minus this many standard deviations of its
/// members, so they do not chase architectures the members disagree on.
const SEARCH_PENALTY: f64 = 1.0;

/// Training images each measured candidate is recalibrated on.
const RERANK_CALIBRATION: usize = 500;

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
    #[arg(long, default_value_t = 1000)]
    pub fp32_pairs: usize,
    #[arg(long, default_value_t = 1000)]
    pub quant_pairs: usize,
    /// Fine-tuning steps (batch 32) of each quantized pair (0: measured after recalibration only).
    #[arg(long, default_value_t = 0)]
    pub finetune_steps: usize,
    /// Latency budgets, as fractions of the way from the cheapest to the largest architecture.
    #[arg(long, value_delimiter = ',', default_value = "0.1,0.25,0.5,0.8")]
    pub budgets: Vec<f64>,
    /// Energy budgets, as fractions of the way from the cheapest to the largest architecture.
    #[arg(long, value_delimiter = ',', default_value = "0.15,0.4,0.7")]
    pub energy_budgets: Vec<f64>,
    #[arg(long, default_value_t = 200)]
    pub generations: usize,
    /// Candidates every method hands to measured re-ranking.
    #[arg(long, default_value_t = 5)]
    pub top_k: usize,
    /// Validation images each re-ranked candidate is measured on.
    #[arg(long, default_value_t = 5000)]
    pub rerank_images: usize,
    /// Seeds of the predictors' held-out evaluation and of the transfer experiment.
    #[arg(long, default_value_t = 5)]
    pub predictor_seeds: usize,
    /// Refinement rounds: after a round of searches every method's candidates are measured on
    /// the validation images and added to the quantized predictor's training pairs, and the
    /// searches run again with the retrained predictor (0: search once).
    #[arg(long, default_value_t = 1)]
    pub refine_rounds: usize,
    /// Steps of the bilevel search under each budget (a controller and a copy of the supernet
    /// trained together, about 1-2 s a step on 2 cores; 0 skips it).
    #[arg(long, default_value_t = BilevelConfig::default().steps)]
    pub bilevel_steps: usize,
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

/// Measurement settings of the pipeline's pairs (recorded beside the shipped pair files): batch
/// norm (and steps) recalibrated on 500 training images, accuracy on 5,000 validation images for
/// fp32 pairs (their spread is narrow, so label noise matters) and 2,000 for quantized ones.
pub fn pair_eval(quantized: bool) -> EvalConfig {
    EvalConfig { calibration_images: 500, eval_images: Some(if quantized { 2000 } else { 5000 }), batch: 500 }
}

/// Measurement settings of the post-training quantization table.
pub fn ptq_eval() -> EvalConfig {
    EvalConfig { calibration_images: 1000, eval_images: Some(5000), batch: 500 }
}

/// The SHA-256 of a shipped artifact (None when it is not shipped).
fn shipped_hash(name: &str) -> Option<String> {
    file_hash(&Path::new(ARTIFACTS).join(name)).ok()
}

/// Budgets as fractions of the way from the cheapest architecture to the largest one.
fn budgets_of(space: &Space, lut: &Lut, fractions: &[f64], energy: bool) -> anyhow::Result<Vec<Budget>> {
    let joint = Freedom::joint(space);
    let metric: &dyn Fn(&bitfusion_search::lut::Entry) -> f64 = if energy { &|e| e.energy_mj.unwrap_or(0.0) } else { &|e| e.latency_ms };
    let (min, _) = cheapest(space, lut, &joint, metric)?;
    let (_, lat, en) = lut.cost(&largest(space, *space.bits.iter().max().expect("bits")))?;
    let max = if energy { en.ok_or_else(|| anyhow!("the LUT has no energy figures"))? } else { lat };
    Ok(fractions
        .iter()
        .map(|f| {
            // Rounded, so budgets read as people write them (0.1325995, not 0.13259949999999998).
            let v = bitfusion_util::round_sig(min + f * (max - min), 7);
            if energy { Budget { latency_ms: None, energy_mj: Some(v) } } else { Budget { latency_ms: Some(v), energy_mj: None } }
        })
        .collect())
}

pub fn run(a: &RunArgs) -> anyhow::Result<bool> {
    let started = Instant::now();
    let out = &a.out;
    // One `bitfusion run` per directory: a second one would interleave stages and caches.
    let _lock = bitfusion_util::OutputLock::dir(out)?;
    let mut stages = Stages::load(out)?;
    let space = Space::load("micro")?;
    let hw = load_hw(&a.hw.hw, &a.hw.set)?;
    for (flag, list) in [("--budgets", &a.budgets), ("--energy-budgets", &a.energy_budgets)] {
        for b in list {
            if !(*b > 0.0 && *b <= 1.0) {
                bail!("{flag}: {b} is not a fraction in (0, 1]");
            }
        }
    }
    if a.top_k == 0 || a.predictor_seeds == 0 || a.rerank_images == 0 {
        bail!("--top-k, --predictor-seeds and --rerank-images must be at least 1");
    }
    let mut report = Report { seeds: a.predictor_seeds, top_k: a.top_k, rerank_images: a.rerank_images, ..Report::default() };

    // 1. LUT.
    let lut_path = out.join("lut.bin");
    // The LUT format too: a LUT of an older format is rebuilt, not refused.
    // The config's deployment batch (`[workload] batch`: 1 unless the config says otherwise).
    let batch = hw.batch;
    let fp = format!("{}|{}|cycle|b{batch}|{}", space.hash(), hw_hash(&hw), bitfusion_search::lut::FORMAT);
    if !stages.fresh("lut", &fp, &[&lut_path]) {
        say(format!("LUT of space micro on {} (cycle model, batch {batch})", hw.name));
        let t = Instant::now();
        let spec = BuildSpec { space: &space, hw: &hw, model: CostModelName::Cycle, objective: Objective::Cycles, batch };
        if lut_path.exists() {
            std::fs::remove_file(&lut_path)?;
        }
        build_lut(&spec, &lut_path, &|_, _| {})?;
        stages.mark("lut", &fp)?;
        say(format!("LUT built in {:.1} s", t.elapsed().as_secs_f64()));
    }
    let lut = Lut::load(&lut_path)?;
    lut.check_hw(&hw)?;
    report.lut = format!("{} entries, space micro, hwconfig {} (hash {}), cycle model, batch {batch}", lut.entries.len(), hw.name, &hw_hash(&hw)[..12]);

    // 2. Supernet.
    let ckpt = out.join("supernet.ckpt");
    let shipped = !a.retrain && copy_artifact("supernet.ckpt", &ckpt)?;
    if shipped {
        say("supernet: starting from the shipped checkpoint (pass --retrain to train it again)");
    }
    let device = bitfusion_models::device();
    let cfg = TrainConfig::micro_default(a.seed);
    let needs_training = match train::load(&ckpt, &device) {
        Ok(t) => t.state.phase < t.state.config.phases.len() || cfg.extends(&t.state.config),
        Err(_) => true,
    };
    let data = DataSet::load(&a.data, 5000, 1)?;
    if needs_training {
        say("supernet: training (resumes from its checkpoint)");
        crate::supernet::train_supernet(&space, &data, &cfg, &ckpt, None)?;
    }
    let trained = train::load(&ckpt, &device)?;
    report.supernet = Some(trained.state.clone());
    let ckpt_hash = file_hash(&ckpt)?;

    // 3. The post-training quantization table of this checkpoint.
    let ptq_path = out.join("ptq.csv");
    let fp = format!("{ckpt_hash}|{:?}", ptq_eval());
    if !a.retrain && !stages.fresh("ptq", &fp, &[&ptq_path]) && shipped_hash("supernet.ckpt").as_deref() == Some(ckpt_hash.as_str()) && copy_artifact("ptq.csv", &ptq_path)? {
        say("post-training quantization table: the shipped one, made from the shipped checkpoint (pass --retrain to redo it)");
        stages.mark("ptq", &fp)?;
    }
    if !stages.fresh("ptq", &fp, &[&ptq_path]) {
        say("post-training quantization table (largest and middle subnets, both quantizers)");
        let t = Instant::now();
        let rows = crate::supernet::ptq(&trained, &data, &space.bits, &ptq_eval(), &device)?;
        crate::supernet::write_ptq(&ptq_path, &rows)?;
        stages.mark("ptq", &fp)?;
        say(format!("  done in {:.0} s", t.elapsed().as_secs_f64()));
    }
    let mut r = csv::Reader::from_path(&ptq_path).with_context(|| format!("cannot read {}", ptq_path.display()))?;
    report.ptq = r.deserialize().collect::<Result<Vec<PtqRow>, _>>().with_context(|| format!("{}: malformed", ptq_path.display()))?;

    // 4. Pairs.
    let mut pair_files = Vec::new();
    for (quantized, n, name) in [(false, a.fp32_pairs, "pairs_fp32.jsonl"), (true, a.quant_pairs, "pairs_quant.jsonl")] {
        let path = out.join(name);
        if !a.retrain {
            copy_artifact(name, &path)?;
        }
        let have = pairs::read_pairs(&path).map_err(|e| anyhow!(e))?.len();
        if have < n {
            say(format!("sampling {} {} pairs ({have} done)", n - have, if quantized { "quantized" } else { "fp32" }));
            let plan = if quantized { PairPlan::quantized(a.seed) } else { PairPlan::fp32(a.seed) };
            let sc = SampleConfig { n, plan, finetune: FinetuneConfig { steps: a.finetune_steps, ..FinetuneConfig::default() }, quantizer: Quantizer::MseClip, eval: pair_eval(quantized) };
            let t = Instant::now();
            pairs::sample_pairs(&trained.net, &trained.space, &data, &sc, &path, &device, &mut |i, total, p| {
                if i % 50 == 0 {
                    say(format!("  pair {}/{total}: {} {:.3} ({:.0} s)", i + 1, p.policy, p.accuracy, t.elapsed().as_secs_f64()));
                }
            })
            .map_err(|e| anyhow!(e))?;
        }
        let ps = pairs::read_pairs(&path).map_err(|e| anyhow!(e))?;
        report.pairs.push(PairSummary::of(quantized, &ps));
        pair_files.push(path);
    }

    // 5. Predictors: the fp32 ranking ensemble and the quantized one transferred from it (what
    // the searches query), and their held-out evaluation over seeds beside APQ's MLP and ridge.
    let all_pairs = search_cmd::read_pair_files(&pair_files)?;
    let pdata = predictor::pair_data(&space, &all_pairs).map_err(|e| anyhow!(e))?;
    // The searches' predictors learn from every pair (the held-out evaluation is the next stage's).
    let ecfg = EnsembleConfig { seed: a.seed, holdout: 0.0, ..EnsembleConfig::default() };
    let pairs_fp = format!("{}|{}", file_hash(&pair_files[0])?, file_hash(&pair_files[1])?);
    let (p_fp, p_q) = (out.join("predictor_fp32.bin"), out.join("predictor_quant.bin"));
    let fp = format!("{pairs_fp}|{ecfg:?}");
    if !stages.fresh("predictors", &fp, &[&p_fp, &p_q]) {
        say(format!("predictors: fp32 and quantized ranking ensembles on {} fp32 and {} quantized pairs", pdata.fp32.len(), pdata.quant.len()));
        let f = predictor::train_fp32(&space, &pdata.fp32_table(|_| true), &ecfg).map_err(|e| anyhow!(e))?;
        f.save(&p_fp)?;
        predictor::train_quant(&space, &pdata.quant, Some(&f), &ecfg).map_err(|e| anyhow!(e))?.save(&p_q)?;
        stages.mark("predictors", &fp)?;
    }
    let quant_p = EnsemblePredictor::load(&p_q)?;
    let xcfg = ExperimentConfig { seeds: a.predictor_seeds, ensemble: EnsembleConfig { holdout: 0.0, ..ecfg.clone() }, ..ExperimentConfig::default() };
    let holdout_json = out.join("predictor_holdout.json");
    let fp = format!("{pairs_fp}|{xcfg:?}");
    // The shipped pairs come with their evaluation (the same command's output): reuse it.
    let shipped_pairs = !a.retrain && shipped_hash("pairs_fp32.jsonl").as_deref() == Some(file_hash(&pair_files[0])?.as_str()) && shipped_hash("pairs_quant.jsonl").as_deref() == Some(file_hash(&pair_files[1])?.as_str());
    if shipped_pairs && !stages.fresh("holdout", &fp, &[&holdout_json]) && copy_artifact("predictor_holdout.json", &holdout_json)? {
        say("predictor evaluation: the shipped one, made from the shipped pairs (pass --retrain to redo it)");
        stages.mark("holdout", &fp)?;
    }
    if !stages.fresh("holdout", &fp, &[&holdout_json]) {
        say(format!("predictor evaluation: {} seeds of held-out architectures, kinds apq, ensemble, ridge", a.predictor_seeds));
        let t = Instant::now();
        let rows = predictor::holdout_report(&space, &pdata, &xcfg, &mut |seed, kind, f, q| {
            say(format!("  seed {seed} {}: fp32 tau {:.3}, quantized tau {:.3} ({:.0} s)", kind.name(), f.kendall_tau, q.kendall_tau, t.elapsed().as_secs_f64()));
        })
        .map_err(|e| anyhow!(e))?;
        write_atomic(&holdout_json, serde_json::to_string_pretty(&rows)?.as_bytes())?;
        stages.mark("holdout", &fp)?;
    }
    report.holdout = serde_json::from_str(&std::fs::read_to_string(&holdout_json)?).with_context(|| format!("{}: malformed", holdout_json.display()))?;

    // 6. The transfer experiment (APQ Figure 7) for both learned kinds.
    let transfer_csv = out.join("transfer.csv");
    if shipped_pairs && !stages.fresh("transfer", &fp, &[&transfer_csv]) && copy_artifact("transfer.csv", &transfer_csv)? {
        say("transfer experiment: the shipped one, made from the shipped pairs (pass --retrain to redo it)");
        stages.mark("transfer", &fp)?;
    }
    if !stages.fresh("transfer", &fp, &[&transfer_csv]) {
        say("transfer experiment");
        let t = Instant::now();
        let pts = predictor::transfer_curves(&space, &pdata, &[10, 20, 50, 100, 200, 500], &xcfg, &mut |p| {
            say(format!("  {} {} pairs: scratch {:.3}, transferred {:.3} ({:.0} s)", p.kind, p.quantized_pairs, p.scratch_pairwise, p.transferred_pairwise, t.elapsed().as_secs_f64()));
        })
        .map_err(|e| anyhow!(e))?;
        search_cmd::write_transfer(out, &pts)?;
        stages.mark("transfer", &fp)?;
    }
    let mut r = csv::Reader::from_path(&transfer_csv)?;
    report.transfer = r.deserialize().collect::<Result<_, _>>().with_context(|| format!("{}: malformed", transfer_csv.display()))?;
    // The searches penalise the ensemble's disagreement: mean - 1 x standard deviation.

    // 7. Searches under every budget, refined by measurement, and the front. A search converges
    // on what the predictor overrates most; measuring every method's candidates and retraining
    // the quantized predictor with them corrects exactly that before the next round.
    let measured_json = out.join("measured.json");
    let fp = format!("{ckpt_hash}|{RERANK_CALIBRATION}|{}", a.rerank_images);
    if !stages.fresh("measured", &fp, &[]) {
        // Measurements belong to one checkpoint and evaluation.
        if measured_json.exists() {
            std::fs::remove_file(&measured_json)?;
        }
        stages.mark("measured", &fp)?;
    }
    let mut measurer = Measurer::new(&trained.net, &space, &data, device.clone(), Quantizer::MseClip, RERANK_CALIBRATION, a.rerank_images, Some(&measured_json)).map_err(|e| anyhow!(e))?;
    let evo = EvoConfig { generations: a.generations, seed: a.seed, top_k: a.top_k, ..EvoConfig::default() };
    let mut budgets = budgets_of(&space, &lut, &a.budgets, false)?;
    budgets.extend(budgets_of(&space, &lut, &a.energy_budgets, true)?);
    let points = out.join("points.csv");
    let candidates_json = out.join("candidates.json");
    let front_csv = out.join("front.csv");
    let refined = out.join("predictor_quant_refined.bin");
    let fp = format!("{}|{:?}|{:?}|{}|{SEARCH_PENALTY}|{}|{}", file_hash(&p_q)?, evo, budgets, lut.header.hw_hash, a.refine_rounds, a.rerank_images);
    let mut outputs = vec![points.as_path(), candidates_json.as_path(), front_csv.as_path()];
    if a.refine_rounds > 0 {
        outputs.push(refined.as_path());
    }
    if !stages.fresh("search", &fp, &outputs) {
        let fp32_p = EnsemblePredictor::load(&p_fp)?;
        let mut current = quant_p.clone();
        let mut added: BTreeMap<String, predictor::QuantSample> = BTreeMap::new();
        for round in 0..=a.refine_rounds {
            for f in [&points, &candidates_json] {
                if f.exists() {
                    std::fs::remove_file(f)?;
                }
            }
            let search_p = Pessimistic { ensemble: &current, k: SEARCH_PENALTY };
            for b in &budgets {
                say(format!("search under {} with every method{}", budget_text(b), if a.refine_rounds > 0 { format!(" (round {} of {})", round + 1, a.refine_rounds + 1) } else { String::new() }));
                search_cmd::search_budget(&space, &lut, &search_p, b, &evo, METHODS, out)?;
            }
            if round == a.refine_rounds {
                break;
            }
            let archs: BTreeMap<String, Arch> = read_candidates(&candidates_json)?.iter().flat_map(|l| l.candidates.iter().map(|c| c.0.clone())).map(|t| Arch::parse(&t, &space).map(|a| (t, a))).collect::<Result<_, _>>()?;
            say(format!("refinement {}: measuring {} distinct candidates on {} validation images", round + 1, archs.len(), a.rerank_images));
            let t = Instant::now();
            for (k, (text, arch)) in archs.into_iter().enumerate() {
                let accuracy = measurer.measure(&arch, Split::Valid).map_err(|e| anyhow!(e))?;
                added.insert(text, predictor::QuantSample { arch, accuracy, fp32_accuracy: None, policy: "measured".into() });
                if (k + 1) % 50 == 0 {
                    say(format!("  {} measured ({:.0} s)", k + 1, t.elapsed().as_secs_f64()));
                }
            }
            let train: Vec<predictor::QuantSample> = pdata.quant.iter().cloned().chain(added.values().cloned()).collect();
            say(format!("refinement {}: quantized predictor retrained on {} pairs and {} measured candidates", round + 1, pdata.quant.len(), added.len()));
            current = predictor::train_quant(&space, &train, Some(&fp32_p), &ecfg).map_err(|e| anyhow!(e))?;
            current.save(&refined)?;
        }
        say("Pareto front (NSGA-II, seeded with the constrained searches' winners)");
        let search_p = Pessimistic { ensemble: &current, k: SEARCH_PENALTY };
        // Every method's winner and candidates under every budget: the front holds each of them or
        // a point dominating it.
        let texts = read_rows(&points)?.into_iter().map(|r| r.arch).chain(read_candidates(&candidates_json)?.into_iter().flat_map(|l| l.candidates.into_iter().map(|c| c.0)));
        let winners: Vec<Arch> = texts.filter(|t| !t.is_empty()).map(|t| Arch::parse(&t, &space)).collect::<Result<_, _>>()?;
        let (front, o) = evolution::pareto_seeded(&mut Evaluator::new(&space, &lut, &search_p), &Freedom::joint(&space), &Budget::default(), &evo, &winners)?;
        write_rows(&front_csv, &search_cmd::front_rows(&front, &o, &Budget::default()))?;
        stages.mark("search", &fp)?;
    }
    report.refine_rounds = a.refine_rounds;
    if a.refine_rounds > 0 {
        report.refine_samples = EnsemblePredictor::load(&refined)?.header.metrics.train.saturating_sub(pdata.quant.len());
    }

    // 7b. The bilevel search under every budget (it trains a copy of the supernet and measures
    // subnets: its queries are supernet evaluations, not predictor queries). Its results are
    // cached per budget in bilevel.json (an interrupted stage resumes at the next budget) and
    // join points.csv and candidates.json when absent or stale (after every new round of searches), so
    // re-ranking measures its candidates exactly as every method's.
    report.bilevel_steps = a.bilevel_steps;
    if a.bilevel_steps > 0 {
        let bcfg = BilevelConfig { steps: a.bilevel_steps, seed: a.seed, top_k: a.top_k, ..BilevelConfig::default() };
        let results = bilevel_stage(out, &trained, &lut, &data, &budgets, &bcfg, &ckpt_hash, &device)?;
        let present = read_rows(&points)?;
        for (b, r) in &results {
            // A row of this very result (its re-ranking kept); a row of an earlier configuration is replaced.
            let current = |x: &PointRow| x.method == "bilevel" && row_budget(x) == *b && x.queries == r.queries && x.top1_arch == r.best.as_ref().map(|c| c.arch.to_text()).unwrap_or_default();
            if !present.iter().any(current) {
                search_cmd::record_results(out, b, std::slice::from_ref(r))?;
            }
        }
    }

    // 8. Measured re-ranking: every method's candidates on the validation images, the winner and
    // the predicted-only winner on the test split (resumable: measurements are cached).
    let lists = read_candidates(&candidates_json)?;
    let mut rows = read_rows(&points)?;
    let todo = rows.iter().filter(|r| !r.arch.is_empty() && r.test_accuracy.is_none()).count();
    if todo > 0 {
        say(format!("re-ranking: measuring up to {} candidates of {todo} (method, budget) results", a.top_k));
    }
    let t = Instant::now();
    for i in 0..rows.len() {
        if rows[i].arch.is_empty() || rows[i].test_accuracy.is_some() {
            continue;
        }
        let list = lists.iter().find(|l| l.matches(&rows[i])).ok_or_else(|| anyhow!("{}: no candidates for {} under {:?}/{:?}; delete stages.json to search again", out.display(), rows[i].method, rows[i].budget_latency_ms, rows[i].budget_energy_mj))?;
        let archs: Vec<Arch> = list.candidates.iter().map(|c| Arch::parse(&c.0, &space)).collect::<Result<_, _>>()?;
        let (w, valid) = measurer.rerank(&archs).map_err(|e| anyhow!(e))?.ok_or_else(|| anyhow!("{}: an empty candidate list", rows[i].method))?;
        let (arch_text, predicted, latency, energy) = list.candidates[w].clone();
        let test = measurer.measure(&archs[w], Split::Test).map_err(|e| anyhow!(e))?;
        let top1_test = measurer.measure(&archs[0], Split::Test).map_err(|e| anyhow!(e))?;
        let r = &mut rows[i];
        r.top1_arch = list.candidates[0].0.clone();
        r.top1_predicted = Some(list.candidates[0].1);
        r.top1_measured = Some(valid[0]);
        r.top1_test = Some(top1_test);
        r.arch = arch_text;
        r.predicted_accuracy = Some(predicted);
        r.latency_ms = Some(latency);
        r.energy_mj = Some(energy);
        r.measured_accuracy = Some(valid[w]);
        r.test_accuracy = Some(test);
        r.candidates = archs.len();
        let line = format!("  {} under {}: predicted-only {:.2}% test, re-ranked {:.2}% test ({} measured so far, {:.0} s)", r.method, budget_text(&row_budget(r)), 100.0 * top1_test, 100.0 * test, measurer.made, t.elapsed().as_secs_f64());
        write_rows(&points, &rows)?;
        say(line);
    }
    // A sample of the front measured on the test split (about 12 points, evenly by latency).
    let mut front = read_rows(&front_csv)?;
    front.sort_by(|x, y| x.latency_ms.unwrap_or(0.0).total_cmp(&y.latency_ms.unwrap_or(0.0)));
    let every = (front.len() / 12).max(1);
    for (k, r) in front.iter_mut().enumerate() {
        if k % every == 0 && r.test_accuracy.is_none() {
            let arch = Arch::parse(&r.arch, &space)?;
            r.test_accuracy = Some(measurer.measure(&arch, Split::Test).map_err(|e| anyhow!(e))?);
        }
    }
    write_rows(&front_csv, &front)?;
    report.rows = rows;
    report.front = front;
    report.budgets = budgets;

    // 9. The joint search's winner under every budget, deployable (skipped when present).
    report.winners = export_winners(out, &report.rows, &trained, &data, &lut, &lut_path, &ckpt_hash, &device)?;

    // 10. Plots and the report.
    let mut files = search_cmd::plot_pareto(out)?;
    files.extend(search_cmd::plot_objectives(out)?);
    report.figures = files.iter().filter(|f| f.extension().is_some_and(|e| e == "png")).map(|f| f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()).collect();
    report.seconds = started.elapsed().as_secs_f64();
    write_atomic(&out.join("report.md"), report.markdown().as_bytes())?;
    say(format!("done in {:.0} s: {}", report.seconds, out.join("report.md").display()));
    Ok(true)
}

/// The bilevel search's cache: its inputs' fingerprint and the results of the budgets done.
#[derive(serde::Serialize, serde::Deserialize)]
struct BilevelCache {
    fingerprint: String,
    results: Vec<(Budget, MethodResult)>,
}

/// Run the bilevel search under every budget not yet in `out/bilevel.json` (results of other
/// inputs are dropped), saving after each; returns every budget's result.
#[allow(clippy::too_many_arguments)]
fn bilevel_stage(out: &Path, trained: &train::Trained, lut: &Lut, data: &DataSet, budgets: &[Budget], cfg: &BilevelConfig, ckpt_hash: &str, device: &bitfusion_models::Device) -> anyhow::Result<Vec<(Budget, MethodResult)>> {
    let path = out.join("bilevel.json");
    let fingerprint = format!("{ckpt_hash}|{cfg:?}|{}", lut.header.hw_hash);
    let mut cache = BilevelCache { fingerprint: fingerprint.clone(), results: Vec::new() };
    if path.exists() {
        let old: BilevelCache = serde_json::from_str(&std::fs::read_to_string(&path)?).with_context(|| format!("{}: malformed (delete it to search again)", path.display()))?;
        if old.fingerprint == fingerprint {
            cache = old;
        }
    }
    for b in budgets {
        if cache.results.iter().any(|(x, _)| x == b) {
            continue;
        }
        say(format!("bilevel search under {} ({} steps of {} subnets, each step a weight step and a controller step)", budget_text(b), cfg.steps, cfg.samples));
        let r = crate::supernet::bilevel_search(trained, lut, data, b, cfg, device)?;
        say(format!("  {} supernet evaluations in {:.0} s{}", r.queries, r.seconds, if r.note.is_empty() { String::new() } else { format!(": {}", r.note) }));
        cache.results.push((*b, r));
        write_atomic(&path, serde_json::to_string_pretty(&cache)?.as_bytes()).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(budgets.iter().filter_map(|b| cache.results.iter().find(|(x, _)| x == b).cloned()).collect())
}

/// Export the joint search's re-ranked winner of every budget as `winners/joint-<budget>.onnx` and
/// `.safetensors`: extracted, quantized at its bits and recalibrated as re-ranking measured it
/// ([`RERANK_CALIBRATION`] training images), with the checkpoint's and the LUT's hashes, the
/// hardware and the winner's cost and measured accuracy in the metadata. Files already there are
/// kept (a resumed run).
#[allow(clippy::too_many_arguments)]
fn export_winners(out: &Path, rows: &[PointRow], trained: &train::Trained, data: &DataSet, lut: &Lut, lut_path: &Path, ckpt_hash: &str, device: &bitfusion_models::Device) -> anyhow::Result<Vec<(Budget, String, Option<f64>)>> {
    use bitfusion_models::export;
    let dir = out.join("winners");
    let lut_hash = file_hash(lut_path)?;
    let mut done = Vec::new();
    for r in rows.iter().filter(|r| r.method == "joint" && !r.arch.is_empty()) {
        let budget = row_budget(r);
        let stem = match (budget.latency_ms, budget.energy_mj) {
            (Some(l), _) => format!("joint-latency-{l:.4}ms"),
            (None, Some(e)) => format!("joint-energy-{e:.5}mJ"),
            _ => "joint".into(),
        };
        let files = [dir.join(format!("{stem}.onnx")), dir.join(format!("{stem}.safetensors"))];
        if !files.iter().all(|f| f.exists()) {
            let arch = Arch::parse(&r.arch, &trained.space)?;
            let mut provenance = vec![("checkpoint_sha256".to_string(), ckpt_hash.to_string()), ("space_hash".to_string(), trained.space.hash())];
            provenance.extend(crate::supernet::lut_provenance(lut, &lut_hash, &arch)?);
            provenance.push(("budget".to_string(), budget_text(&budget)));
            provenance.push(("search".to_string(), "bitfusion run: joint evolution, re-ranked by measurement".to_string()));
            if let Some(t) = r.test_accuracy {
                provenance.push(("test_accuracy".into(), format!("{t}")));
            }
            let cfg = EvalConfig { calibration_images: RERANK_CALIBRATION, eval_images: None, batch: 500 };
            let prepared = export::prepare(&trained.net, &trained.space, &arch, data, &cfg, Quantizer::MseClip, device);
            for f in &files {
                export::write(f, &prepared.network, &provenance)?;
            }
            say(format!("  exported the winner under {} to {}", budget_text(&budget), files[0].display()));
        }
        done.push((budget, stem, r.test_accuracy));
    }
    Ok(done)
}

fn budget_text(b: &Budget) -> String {
    match (b.latency_ms, b.energy_mj) {
        (Some(l), _) => format!("{l:.4} ms"),
        (None, Some(e)) => format!("{e:.5} mJ"),
        _ => "no budget".into(),
    }
}

fn row_budget(r: &PointRow) -> Budget {
    Budget { latency_ms: r.budget_latency_ms, energy_mj: r.budget_energy_mj }
}

/// A pair file's summary for the report.
#[derive(Default)]
struct PairSummary {
    quantized: bool,
    count: usize,
    spread: (f64, f64, f64),
    above_70: f64,
    uniform: usize,
    seconds: f64,
}

impl PairSummary {
    fn of(quantized: bool, ps: &[pairs::Pair]) -> PairSummary {
        PairSummary {
            quantized,
            count: ps.len(),
            spread: pairs::spread(ps).unwrap_or_default(),
            above_70: ps.iter().filter(|p| p.accuracy > 0.7).count() as f64 / ps.len().max(1) as f64,
            uniform: ps.iter().filter(|p| p.policy == "uniform").count(),
            seconds: ps.iter().map(|p| p.seconds).sum(),
        }
    }
}

#[derive(Default)]
struct Report {
    lut: String,
    supernet: Option<train::TrainState>,
    ptq: Vec<PtqRow>,
    pairs: Vec<PairSummary>,
    holdout: Vec<HoldoutRow>,
    refine_rounds: usize,
    /// Measured candidates the refined predictor was trained on beside the pairs.
    refine_samples: usize,
    transfer: Vec<predictor::TransferPoint>,
    budgets: Vec<Budget>,
    rows: Vec<PointRow>,
    front: Vec<PointRow>,
    figures: Vec<String>,
    seeds: usize,
    top_k: usize,
    rerank_images: usize,
    /// Steps of the bilevel search (0: not run).
    bilevel_steps: usize,
    /// The joint search's winners, exported: (budget, file stem under `winners/`, test accuracy).
    winners: Vec<(Budget, String, Option<f64>)>,
    seconds: f64,
}

fn pct(x: Option<f64>) -> String {
    x.map(|v| format!("{:.2}", 100.0 * v)).unwrap_or_else(|| "-".into())
}

/// The methods the joint search is compared with: the APQ table's (every method but the joint
/// evolution and the learned-policy controllers, which have their own comparison).
fn baselines() -> Vec<&'static str> {
    METHODS.iter().copied().filter(|m| *m != "joint" && !CONTROLLERS.contains(m)).collect()
}

impl Report {
    fn rows_of(&self, b: &Budget) -> Vec<&PointRow> {
        self.rows.iter().filter(|r| r.budget_latency_ms == b.latency_ms && r.budget_energy_mj == b.energy_mj).collect()
    }

    /// Per budget: the joint search's test accuracy minus the best baseline's (None when the joint
    /// search has no result), and the baseline that was best.
    fn margins(&self) -> Vec<(Budget, Option<f64>, String, Option<f64>)> {
        self.budgets
            .iter()
            .map(|b| {
                let rows = self.rows_of(b);
                let joint = rows.iter().find(|r| r.method == "joint").and_then(|r| r.test_accuracy);
                let best = rows.iter().filter(|r| baselines().contains(&r.method.as_str())).filter_map(|r| r.test_accuracy.map(|t| (t, r.method.clone()))).max_by(|x, y| x.0.total_cmp(&y.0));
                let seq = rows.iter().find(|r| r.method == "sequential").and_then(|r| r.test_accuracy);
                let margin = joint.zip(best.as_ref()).map(|(j, (t, _))| j - t);
                (*b, margin, best.map(|x| x.1).unwrap_or_default(), joint.zip(seq).map(|(j, s)| j - s))
            })
            .collect()
    }

    /// The learned-policy controllers against the joint evolution, per budget: measured test
    /// accuracy, predictor queries and search time side by side.
    fn controllers_markdown(&self) -> String {
        let mut s = String::from("### The joint evolution against the learned-policy controllers (test split)\n\n");
        s += "The same predictor, LUT and budgets; REINFORCE samples as many architectures as the evolution made queries, the Gumbel-softmax relaxation asks the predictor for every hard sample's neighbours (its straight-through gradient), so its queries are several times the others'. The bilevel search's queries are supernet evaluations (see above), not predictor queries.\n\n";
        let bilevel = self.rows.iter().any(|r| r.method == "bilevel");
        let methods: Vec<&str> = std::iter::once("joint").chain(CONTROLLERS.iter().copied()).chain(bilevel.then_some("bilevel")).collect();
        s += "| budget |";
        for m in &methods {
            s += &format!(" {m}: test | queries | s |");
        }
        s += " best |\n|---|";
        s += &"---|---|---|".repeat(methods.len());
        s += "---|\n";
        let mut wins = vec![0usize; methods.len()];
        for b in &self.budgets {
            let rows = self.rows_of(b);
            let found: Vec<Option<&&PointRow>> = methods.iter().map(|m| rows.iter().find(|r| r.method == *m)).collect();
            s += &format!("| {} |", budget_text(b));
            for r in &found {
                match r {
                    Some(r) => s += &format!(" {} | {} | {:.1} |", pct(r.test_accuracy), r.queries, r.seconds),
                    None => s += " - | - | - |",
                }
            }
            let tests: Vec<Option<f64>> = found.iter().map(|r| r.and_then(|r| r.test_accuracy)).collect();
            let top = tests.iter().flatten().copied().fold(f64::NEG_INFINITY, f64::max);
            let best: Vec<&str> = methods.iter().zip(&tests).filter(|(_, t)| t.is_some_and(|t| t == top)).map(|(m, _)| *m).collect();
            for (i, t) in tests.iter().enumerate() {
                if t.is_some_and(|t| t == top) {
                    wins[i] += 1;
                }
            }
            s += &format!(" {} |\n", if best.is_empty() { "-".into() } else { best.join(", ") });
        }
        let tally: Vec<String> = methods.iter().zip(&wins).map(|(m, w)| format!("{m} {w}")).collect();
        s += &format!("\nBest measured winner (ties counted for each): {} of {} budgets.\n\n", tally.join(", "), self.budgets.len());
        s
    }

    fn markdown(&self) -> String {
        let mut s = String::from("# bitfusion run: report\n\n");
        s += &format!("Pipeline time this run: {:.0} s. LUT: {}.\n\n", self.seconds, self.lut);
        let history = self.supernet.as_ref().map(|st| st.history.clone()).unwrap_or_default();
        let test_accuracy = self.supernet.as_ref().and_then(|st| st.test_accuracy);
        let train_s: f64 = history.iter().map(|h| h.seconds).sum();
        s += "## Supernet (micro space, Fashion-MNIST)\n\n| phase | epoch | loss | train acc | valid acc (largest, fp32) | s | img/s |\n|---|---|---|---|---|---|---|\n";
        for h in &history {
            s += &format!("| {:?} | {} | {:.3} | {:.4} | {:.4} | {:.0} | {:.0} |\n", h.phase, h.epoch + 1, h.loss, h.train_accuracy, h.valid_accuracy, h.seconds, h.images_per_second);
        }
        s += &format!("\nFull network (fp32) test accuracy: {} %. Training time {:.0} s.\n\n", pct(test_accuracy), train_s);
        s += "## Post-training quantization (validation accuracy %, 5,000 images)\n\n";
        s += "Every searchable slot at W bits (weights) and A bits (activations); the stem, first block and head keep the space's 8 bits. `max-range` is the original quantizer (symmetric per-tensor grid, range = max |x|), `mse-clip` the new one (per-channel weight steps, clip-searched steps on Bit Fusion's two's-complement and unsigned grids); both recalibrate batch norm and steps on 1,000 training images.\n\n";
        s += &crate::supernet::ptq_markdown(&self.ptq);
        s += "\n## Pairs (validation accuracy of subnets, measured after recalibration)\n\n| kind | pairs | min | median | max | above 70% | uniform-precision | collection s | s per pair |\n|---|---|---|---|---|---|---|---|---|\n";
        for p in &self.pairs {
            let (lo, med, hi) = p.spread;
            s += &format!(
                "| {} | {} | {:.4} | {:.4} | {:.4} | {:.0}% | {} | {:.0} | {:.2} |\n",
                if p.quantized { "quantized" } else { "fp32" },
                p.count,
                lo,
                med,
                hi,
                100.0 * p.above_70,
                if p.quantized { p.uniform.to_string() } else { "-".into() },
                p.seconds,
                p.seconds / p.count.max(1) as f64
            );
        }
        s += &format!("\n## Predictors (held-out architectures, mean ± std [min, max] over {} seeds)\n\n", self.seeds);
        s += "`apq`: APQ's MLP on the one-hot encoding, quantized part transferred from the fp32 one (the faithful baseline); `ensemble`: the ranking predictor the searches use (numeric bit and architecture features beside the one-hot, the quantized accuracy as a residual over the fp32 part, MSE plus a pairwise ranking loss, 5 members); `ridge`: the same features with ridge regression. Each seed holds out a quarter of the architectures (at least 200 quantized pairs), every policy of an architecture on the same side.\n\n";
        s += "| kind | target | train | test | RMSE | Kendall tau | pairwise acc |\n|---|---|---|---|---|---|---|\n";
        for h in &self.holdout {
            let sp = |x: &predictor::Spread, d: usize| format!("{:.d$} ± {:.d$} [{:.d$}, {:.d$}]", x.mean, x.std, x.min, x.max);
            s += &format!("| {} | {} | {:.0} | {:.0} | {} | {} | {} |\n", h.kind.name(), h.target, h.train, h.test, sp(&h.rmse, 4), sp(&h.kendall_tau, 3), sp(&h.pairwise_accuracy, 3));
        }
        s += &format!("\n## Transfer (APQ Figure 7; figures transfer.png for the ensemble, transfer_apq.png for APQ's MLP; pairwise accuracy on one fixed set of held-out quantized pairs, mean over {} seeds [min, max])\n\n| kind | quantized pairs | from scratch | transferred from fp32 |\n|---|---|---|---|\n", self.seeds);
        for p in &self.transfer {
            let band = |m: f64, lo: Option<f64>, hi: Option<f64>| match (lo, hi) {
                (Some(l), Some(h)) => format!("{m:.3} [{l:.3}, {h:.3}]"),
                _ => format!("{m:.3}"),
            };
            s += &format!("| {} | {} | {} | {} |\n", p.kind, p.quantized_pairs, band(p.scratch_pairwise, p.scratch_pairwise_min, p.scratch_pairwise_max), band(p.transferred_pairwise, p.transferred_pairwise_min, p.transferred_pairwise_max));
        }
        s += &format!(
            "\n## Searches (figures pareto_latency.png, pareto_energy.png)\n\nEvery method hands its {} best distinct feasible candidates by predicted accuracy to the real evaluator (the quantization-aware supernet, each candidate recalibrated on 500 training images and measured on {} validation images); the best measured one is the method's winner and is measured once on the 10,000 test images. The predicted-only winner (its first candidate) is measured on the test split beside it. Accuracies in %.\n\n",
            self.top_k, self.rerank_images
        );
        if self.refine_rounds > 0 {
            s += &format!(
                "The searches ran {} rounds: after every round but the last, every method's candidates were measured on the validation images and added to the quantized pairs, and the quantized predictor was retrained ({} measured candidates in all); the predictions below are the refined predictor's.\n\n",
                self.refine_rounds + 1,
                self.refine_samples
            );
        }
        if self.bilevel_steps > 0 {
            let d = BilevelConfig::default();
            s += &format!(
                "`bilevel` is not a predictor search: a REINFORCE controller and a copy of the supernet train together ({} steps; each samples {} subnets with bits, takes one quantization-aware weight step on them and one controller step on their reward, validation accuracy minus a dual-ascent penalty on the budget's overrun from the LUT). Its queries are **supernet evaluations** (each subnet recalibrated on {} training images and measured on {} validation images during the search), not predictor queries, and its \"predicted\" columns hold those in-search validation accuracies. Its candidates are re-ranked and its winner measured on the shipped supernet's weights, as every method's.\n\n",
                self.bilevel_steps, d.samples, d.calibration_images, d.valid_images
            );
        }
        for b in &self.budgets {
            s += &format!("### {} budget {}\n\n| method | predicted-only: predicted | valid | test | re-ranked: predicted | valid | **test** | latency ms | energy mJ | queries | search s | note |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n", if b.latency_ms.is_some() { "latency" } else { "energy" }, budget_text(b));
            for r in self.rows_of(b) {
                s += &format!(
                    "| {} | {} | {} | {} | {} | {} | **{}** | {} | {} | {} | {:.1} | {} |\n",
                    r.method,
                    pct(r.top1_predicted),
                    pct(r.top1_measured),
                    pct(r.top1_test),
                    pct(r.predicted_accuracy),
                    pct(r.measured_accuracy),
                    pct(r.test_accuracy),
                    r.latency_ms.map(|x| format!("{x:.4}")).unwrap_or_else(|| "-".into()),
                    r.energy_mj.map(|x| format!("{x:.5}")).unwrap_or_else(|| "-".into()),
                    r.queries,
                    r.seconds,
                    r.note
                );
            }
            s += "\n";
        }
        s += "### The joint search against the baselines (test split)\n\n| budget | joint minus the best baseline (points) | best baseline | joint minus sequential (points) |\n|---|---|---|---|\n";
        let margins = self.margins();
        for (b, m, who, seq) in &margins {
            let f = |x: &Option<f64>| x.map(|v| format!("{:+.2}", 100.0 * v)).unwrap_or_else(|| "-".into());
            s += &format!("| {} | {} | {} | {} |\n", budget_text(b), f(m), who, f(seq));
        }
        let within: Vec<&(Budget, Option<f64>, String, Option<f64>)> = margins.iter().filter(|m| m.1.is_some()).collect();
        let ok = within.iter().all(|m| m.1.is_some_and(|v| v >= -0.005));
        let seq: Vec<f64> = margins.iter().filter_map(|m| m.3).collect();
        let mean_seq = seq.iter().sum::<f64>() / seq.len().max(1) as f64;
        s += &format!(
            "\nJoint at least every baseline minus 0.5 point at every budget: **{}**; joint minus sequential on average: **{:+.2} points** over {} budgets.\n\n",
            if ok { "yes" } else { "no" },
            100.0 * mean_seq,
            seq.len()
        );
        s += &self.controllers_markdown();
        let measured = self.front.iter().filter(|r| r.test_accuracy.is_some()).count();
        s += &format!("Pareto front (NSGA-II, unconstrained, predicted): {} non-dominated architectures in front.csv; {measured} of them (every few by latency) measured on the test split.\n\n", self.front.len());
        if !self.winners.is_empty() {
            s += "## Deployable winners\n\nThe joint search's winner under every budget, extracted from the supernet, quantized at its bits and recalibrated as re-ranking measured it, in `winners/`: an ONNX QDQ graph (uint8 pixels in, logits out; `scripts/check_export.py` runs it in onnxruntime) and safetensors, with the bits, the layers and the checkpoint's and LUT's hashes in their metadata (`bitfusion supernet export` makes the same files for any architecture).\n\n| budget | files | test accuracy % |\n|---|---|---|\n";
            for (b, stem, test) in &self.winners {
                s += &format!("| {} | `{stem}.onnx`, `{stem}.safetensors` | {} |\n", budget_text(b), pct(*test));
            }
            s += "\n";
        }
        s += "## Figures\n\n";
        for f in &self.figures {
            s += &format!("- {f}\n");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitfusion_models::train::toy;

    fn joint_row(method: &str, latency: Option<f64>, energy: Option<f64>, arch: &Arch) -> PointRow {
        serde_json::from_value(serde_json::json!({
            "method": method, "budget_latency_ms": latency, "budget_energy_mj": energy, "arch": arch.to_text(),
            "predicted_accuracy": 0.5, "measured_accuracy": 0.5, "latency_ms": 0.01, "energy_mj": 0.01,
            "queries": 1, "seconds": 0.0, "note": "", "test_accuracy": 0.5,
        }))
        .unwrap()
    }

    #[test]
    fn the_joint_winners_are_exported_once_per_budget_and_kept_when_resumed() {
        let d = std::env::temp_dir().join(format!("bitfusion-pipeline-winners-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let data = toy::data(&d.join("data"), 160, 20);
        let space = toy::space();
        let device = bitfusion_models::device();
        let trained = train::train(&space, &data, &toy::config(3), &d.join("toy.ckpt"), &device, None, &mut |_| {}).unwrap();
        let hw = load_hw("bitfusion-isca2018", &[]).unwrap();
        let lut_path = d.join("toy.lut");
        let (lut, _) = build_lut(&BuildSpec { space: &space, hw: &hw, model: CostModelName::Cycle, objective: Objective::Cycles, batch: 1 }, &lut_path, &|_, _| {}).unwrap();
        let arch = largest(&space, 4);
        let rows = [joint_row("joint", Some(0.5), None, &arch), joint_row("joint", None, Some(0.25), &arch), joint_row("random", Some(0.5), None, &arch)];
        let done = export_winners(&d, &rows, &trained, &data, &lut, &lut_path, "abc", &device).unwrap();
        // The joint rows only, one pair of files per budget.
        assert_eq!(done.iter().map(|w| w.1.as_str()).collect::<Vec<_>>(), ["joint-latency-0.5000ms", "joint-energy-0.25000mJ"]);
        let onnx = d.join("winners/joint-latency-0.5000ms.onnx");
        let st = d.join("winners/joint-energy-0.25000mJ.safetensors");
        assert!(onnx.exists() && st.exists());
        let bytes = std::fs::read(&st).unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
        let meta = &header["__metadata__"];
        assert_eq!(meta["bitfusion.checkpoint_sha256"], "abc");
        assert_eq!(meta["bitfusion.lut_sha256"], serde_json::Value::String(file_hash(&lut_path).unwrap()));
        assert_eq!(meta["bitfusion.arch"], serde_json::Value::String(arch.to_text()));
        assert_eq!(meta["bitfusion.test_accuracy"], "0.5");
        // Resumed: files already there are kept, a missing one is written again, identically.
        let before = std::fs::read(&onnx).unwrap();
        std::fs::remove_file(&onnx).unwrap();
        std::fs::write(&st, b"kept").unwrap();
        export_winners(&d, &rows, &trained, &data, &lut, &lut_path, "abc", &device).unwrap();
        assert_eq!(std::fs::read(&onnx).unwrap(), before);
        assert_eq!(std::fs::read(&st).unwrap(), b"kept");
        let _ = std::fs::remove_dir_all(&d);
    }
}
