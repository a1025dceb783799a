//! `bitfusion supernet train|sample|ptq|eval|bilevel|export`: thin wrappers over `bitfusion_models`.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use bitfusion_models::bilevel::{self, BilevelConfig, BilevelStep};
use bitfusion_models::data::{DEFAULT_DIR, DataSet};
use bitfusion_models::eval::{self, EvalConfig, FinetuneConfig};
use bitfusion_models::pairs::{self, PairPlan, SampleConfig};
use bitfusion_models::quant::Quantizer;
use bitfusion_models::train::{self, PhaseConfig, Progress, TrainConfig};
use bitfusion_search::evolution::{self, Budget};
use bitfusion_search::lut::Lut;
use bitfusion_search::methods::MethodResult;
use bitfusion_search::{Arch, Space};

/// Data-set selection shared by the supernet commands.
#[derive(clap::Args, Clone)]
pub struct DataArgs {
    /// Directory of IDX files (train-*/t10k-*, gzipped or raw; MNIST or Fashion-MNIST) or of
    /// CIFAR-10 binary batches. Default: Debian's dataset-fashion-mnist.
    #[arg(long, default_value = DEFAULT_DIR)]
    pub data: PathBuf,
    /// Training images held out (seeded) for validation.
    #[arg(long, default_value_t = 5000)]
    pub valid: usize,
    /// Seed of the validation split.
    #[arg(long, default_value_t = 1)]
    pub split_seed: u64,
}

impl DataArgs {
    fn load(&self) -> anyhow::Result<DataSet> {
        Ok(DataSet::load(&self.data, self.valid, self.split_seed)?)
    }
}

/// One subnet of a checkpoint: the checkpoint, its data set and the architecture (shared by
/// `eval` and `export`).
#[derive(clap::Args, Clone)]
pub struct SubnetArgs {
    #[arg(long)]
    pub ckpt: PathBuf,
    #[command(flatten)]
    pub data: DataArgs,
    /// Canonical architecture text or JSON, or a file holding it (its space must be the
    /// checkpoint's).
    #[arg(long)]
    pub arch: String,
}

impl SubnetArgs {
    /// The trained supernet, the data set (checked against its space) and the architecture.
    fn load(&self, device: &bitfusion_models::Device) -> anyhow::Result<(train::Trained, DataSet, Arch)> {
        let trained = train::load(&self.ckpt, device)?;
        let data = self.data.load()?;
        train::check_data(&trained.space, &data).map_err(|e| anyhow!(e))?;
        let arch = Arch::parse(&read_arch(&self.arch)?, &trained.space)?;
        Ok((trained, data, arch))
    }
}

/// The quantizer of quantized measurements.
#[derive(clap::Args, Clone)]
pub struct QuantArgs {
    /// mse-clip (per-channel weight steps, clip-searched steps on the hardware's grids) or
    /// max-range (the original symmetric per-tensor quantizer).
    #[arg(long, default_value = "mse-clip")]
    pub quantizer: String,
}

impl QuantArgs {
    pub fn quantizer(&self) -> anyhow::Result<Quantizer> {
        parse_quantizer(&self.quantizer)
    }
}

pub fn parse_quantizer(name: &str) -> anyhow::Result<Quantizer> {
    match name {
        "mse-clip" => Ok(Quantizer::MseClip),
        "max-range" => Ok(Quantizer::MaxRange),
        other => bail!("--quantizer: '{other}' is not mse-clip or max-range"),
    }
}

/// Measurement settings shared by sample and eval.
#[derive(clap::Args, Clone)]
pub struct MeasureArgs {
    /// Training images used to recalibrate batch norm (and activation ranges) per subnet.
    #[arg(long, default_value_t = 1000)]
    pub calibration_images: usize,
    /// Validation images evaluated per subnet (0 = all).
    #[arg(long, default_value_t = 5000)]
    pub eval_images: usize,
}

impl MeasureArgs {
    fn config(&self) -> EvalConfig {
        EvalConfig { calibration_images: self.calibration_images, eval_images: (self.eval_images > 0).then_some(self.eval_images), batch: 500 }
    }
}

/// The bilevel search's size (the rest of `BilevelConfig` keeps its defaults).
#[derive(clap::Args, Clone)]
pub struct BilevelArgs {
    /// Alternations of a weight step and a controller step (about 1-2 s each on `micro`, 2 cores).
    #[arg(long, default_value_t = BilevelConfig::default().steps)]
    pub steps: usize,
    /// Architectures sampled, trained on and measured per step.
    #[arg(long, default_value_t = BilevelConfig::default().samples)]
    pub samples: usize,
    /// Validation images each sampled subnet is measured on.
    #[arg(long, default_value_t = BilevelConfig::default().valid_images)]
    pub valid_images: usize,
    /// Training images each sampled subnet is recalibrated on before it is measured.
    #[arg(long, default_value_t = BilevelConfig::default().calibration_images)]
    pub calibration_images: usize,
    /// Candidates handed to measured re-ranking.
    #[arg(long, default_value_t = 5)]
    pub top_k: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

impl BilevelArgs {
    pub fn config(&self) -> anyhow::Result<BilevelConfig> {
        if self.steps == 0 || self.samples == 0 || self.valid_images == 0 || self.calibration_images == 0 || self.top_k == 0 {
            bail!("--steps, --samples, --valid-images, --calibration-images and --top-k must be at least 1");
        }
        Ok(BilevelConfig { steps: self.steps, samples: self.samples, valid_images: self.valid_images, calibration_images: self.calibration_images, top_k: self.top_k, seed: self.seed, ..BilevelConfig::default() })
    }
}

#[derive(clap::Subcommand)]
pub enum SupernetCommand {
    /// The bilevel search: a REINFORCE controller samples (subnet, bits) from the supernet, the
    /// supernet's weights take a quantization-aware step on them, the controller a step on their
    /// measured validation reward (accuracy minus a dual-ascent penalty on the budget's overrun
    /// from the LUT), alternately. Starts from a copy of the checkpoint (never written); writes
    /// the `bilevel` row of points.csv and its candidates in candidates.json in --out.
    Bilevel {
        /// The trained supernet to start from (read only).
        #[arg(long)]
        ckpt: PathBuf,
        /// The LUT of the checkpoint's space.
        #[arg(long)]
        lut: PathBuf,
        #[command(flatten)]
        data: DataArgs,
        /// Latency budget (ms, from the LUT).
        #[arg(long)]
        latency_ms: Option<f64>,
        /// Energy budget (mJ, from the LUT).
        #[arg(long)]
        energy_mj: Option<f64>,
        /// Output directory (points.csv, candidates.json; locked while the search runs).
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        size: BilevelArgs,
        /// Also measure every candidate on this many validation images, on the checkpoint's
        /// weights and on the search's trained copy (0: not).
        #[arg(long, default_value_t = 0)]
        measure_images: usize,
    },
    /// Train a once-for-all supernet: the full network, then progressive shrinking (kernel,
    /// depth, width) with distillation. Checkpoints every epoch; re-running resumes.
    Train {
        /// A preset space (micro, apq, apq-wide-bits) or a space TOML file.
        #[arg(long, default_value = "micro")]
        space: String,
        #[command(flatten)]
        data: DataArgs,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Epochs of the full network, then of the kernel, depth, width and quantization-aware
        /// phases (0 skips a phase).
        #[arg(long, value_delimiter = ',', default_value = "6,1,1,1,1")]
        epochs: Vec<usize>,
        #[arg(long, default_value_t = 64)]
        batch: usize,
        /// Training images per epoch (a fresh seeded sample each epoch; 0 = all).
        #[arg(long, default_value_t = 0)]
        images_per_epoch: usize,
        /// Training images per epoch of the shrinking phases (0 = as --images-per-epoch).
        #[arg(long, default_value_t = train::SHRINK_IMAGES)]
        shrink_images: usize,
        /// Training images per epoch of the quantization-aware phase (0 = as --images-per-epoch).
        #[arg(long, default_value_t = train::QUANT_IMAGES)]
        quant_images: usize,
        /// Subnets sampled per step in the shrinking phases.
        #[arg(long, default_value_t = 2)]
        subnets_per_step: usize,
        /// Also sample per-layer bits in the shrinking phases (quantization-aware supernet).
        #[arg(long)]
        quantized: bool,
        /// Stop after this many epochs of this run (resume later by running again).
        #[arg(long)]
        stop_after: Option<usize>,
        #[command(flatten)]
        measure: MeasureArgs,
    },
    /// Measure random subnets and append (architecture, [bits,] accuracy) pairs to a JSON-lines
    /// file; pairs already there are skipped.
    Sample {
        #[arg(long)]
        ckpt: PathBuf,
        #[command(flatten)]
        data: DataArgs,
        #[arg(long)]
        n: usize,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Quantized pairs: bit policies (uniform and Dirichlet mixtures, several per
        /// architecture, each architecture's fp32 accuracy beside), measured after recalibration.
        #[arg(long)]
        quantized: bool,
        /// Quantized pairs sharing one architecture.
        #[arg(long, default_value_t = 4)]
        policies_per_arch: usize,
        /// Quantization-aware fine-tuning steps (batch 32) per quantized pair (0: none).
        #[arg(long, default_value_t = 0)]
        finetune_steps: usize,
        #[command(flatten)]
        quant: QuantArgs,
        #[command(flatten)]
        measure: MeasureArgs,
    },
    /// Post-training quantization table: the largest and a middle subnet in full precision and at
    /// every uniform (weight, activation) width, with the original max-range quantizer and the
    /// clip-searched one; written as CSV and printed.
    Ptq {
        #[arg(long)]
        ckpt: PathBuf,
        #[command(flatten)]
        data: DataArgs,
        #[arg(long)]
        out: PathBuf,
        /// Widths tried for weights and activations.
        #[arg(long, value_delimiter = ',', default_value = "2,4,6,8")]
        bits: Vec<u32>,
        #[command(flatten)]
        measure: MeasureArgs,
    },
    /// Measure one subnet (fp32, or quantized with its own or uniform bits).
    Eval {
        #[command(flatten)]
        subnet: SubnetArgs,
        /// fp32 (default), arch (the architecture's own bits) or a uniform width such as 4.
        #[arg(long, default_value = "fp32")]
        bits: String,
        /// Quantization-aware fine-tuning steps before measuring (quantized only).
        #[arg(long, default_value_t = 0)]
        finetune_steps: usize,
        #[command(flatten)]
        quant: QuantArgs,
        /// Also report the test-set accuracy.
        #[arg(long)]
        test: bool,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[command(flatten)]
        measure: MeasureArgs,
    },
    /// Export one subnet, extracted and recalibrated and quantized at its own bits, as
    /// safetensors (weights, integer codes, steps, batch norms; bits, layers and provenance in the
    /// metadata) and/or an ONNX QDQ graph (uint8 pixels in, logits out) that onnxruntime runs.
    Export {
        #[command(flatten)]
        subnet: SubnetArgs,
        /// Output files, format by extension: .onnx and/or .safetensors (repeatable).
        #[arg(long, required = true)]
        out: Vec<PathBuf>,
        /// The LUT the architecture was searched on: its hashes, hardware and the architecture's
        /// latency and energy go in the metadata.
        #[arg(long)]
        lut: Option<PathBuf>,
        /// Also write the project's own quantized logits of the first --logits-images test images
        /// (float32 .npy, [images, classes]), to compare an outside runtime's with.
        #[arg(long)]
        logits: Option<PathBuf>,
        /// Test images of --logits (0 = all).
        #[arg(long, default_value_t = 0)]
        logits_images: usize,
        #[command(flatten)]
        quant: QuantArgs,
        /// Training images used to recalibrate batch norm and activation steps.
        #[arg(long, default_value_t = 1000)]
        calibration_images: usize,
    },
}

fn bar(len: u64) -> anyhow::Result<indicatif::ProgressBar> {
    let b = indicatif::ProgressBar::new(len);
    b.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg} ETA {eta}")
            .map_err(|e| anyhow!("progress bar: {e}"))?,
    );
    Ok(b)
}

pub fn run(cmd: SupernetCommand) -> anyhow::Result<bool> {
    match cmd {
        SupernetCommand::Bilevel { ckpt, lut, data, latency_ms, energy_mj, out, size, measure_images } => {
            let cfg = size.config()?;
            for (what, v) in [("--latency-ms", latency_ms), ("--energy-mj", energy_mj)] {
                if v.is_some_and(|x| !(x > 0.0 && x.is_finite())) {
                    bail!("{what}: give a positive number");
                }
            }
            let budget = Budget { latency_ms, energy_mj };
            let device = bitfusion_models::device();
            let trained = train::load(&ckpt, &device)?;
            let lut = Lut::load(&lut)?;
            lut.check_space(&trained.space)?;
            // An infeasible budget fails before the data is read.
            evolution::check_feasible(&trained.space, &lut, &evolution::Freedom::joint(&trained.space), &budget)?;
            let data = data.load()?;
            // One writer per directory, as `search` and `run`.
            let _lock = bitfusion_util::OutputLock::dir(&out)?;
            let (r, tuned) = bilevel_search_with_net(&trained, &lut, &data, &budget, &cfg, &device)?;
            let Some(tuned) = tuned else { bail!("{}", r.note) };
            let rows = crate::search_cmd::record_results(&out, &budget, std::slice::from_ref(&r))?;
            for r in &rows {
                println!(
                    "{:<8} validation {:.2}% ({} images, during the search)  {:.4} ms  {:.4} mJ  {} supernet evaluations  {:.1} s  {}",
                    r.method,
                    100.0 * r.predicted_accuracy.unwrap_or(0.0),
                    cfg.valid_images,
                    r.latency_ms.unwrap_or(0.0),
                    r.energy_mj.unwrap_or(0.0),
                    r.queries,
                    r.seconds,
                    r.arch
                );
            }
            if measure_images > 0 {
                // The candidates on both weights, measured as re-ranking measures (recalibrated
                // on 500 training images): the checkpoint's (what `run` re-ranks with) and the
                // search's trained copy.
                let m = EvalConfig { calibration_images: 500, eval_images: Some(measure_images), batch: 500 };
                for c in &r.top {
                    let on = |net| eval::accuracy(net, &trained.space, &c.arch, &data, &data.valid, &m, Some(Quantizer::MseClip), &device);
                    println!("candidate: {:.2}% on the checkpoint's weights, {:.2}% on the search's weights ({measure_images} validation images)  {}", 100.0 * on(&trained.net), 100.0 * on(&tuned), c.arch.to_text());
                }
            }
            println!("wrote {}", out.join("points.csv").display());
            Ok(true)
        }
        SupernetCommand::Train { space, data, out, seed, epochs, batch, images_per_epoch, shrink_images, quant_images, subnets_per_step, quantized, stop_after, measure } => {
            let space = Space::load(&space)?;
            let mut cfg = TrainConfig::micro_default(seed);
            if epochs.len() != cfg.phases.len() {
                bail!("--epochs: give {} counts (full, kernel, depth, width, quant), got {}", cfg.phases.len(), epochs.len());
            }
            for (p, e) in cfg.phases.iter_mut().zip(&epochs) {
                p.epochs = *e;
                p.images = match p.phase {
                    train::Phase::Full => None,
                    train::Phase::Quant => (quant_images > 0).then_some(quant_images),
                    _ => (shrink_images > 0).then_some(shrink_images),
                };
            }
            cfg.phases.retain(|p: &PhaseConfig| p.epochs > 0);
            if batch == 0 {
                bail!("--batch: must be at least 1");
            }
            cfg.batch = batch;
            cfg.images_per_epoch = (images_per_epoch > 0).then_some(images_per_epoch);
            cfg.subnets_per_step = subnets_per_step;
            cfg.quantized = quantized;
            cfg.eval = measure.config();
            let data = data.load()?;
            train_supernet(&space, &data, &cfg, &out, stop_after)
        }
        SupernetCommand::Sample { ckpt, data, n, out, seed, quantized, policies_per_arch, finetune_steps, quant, measure } => {
            let device = bitfusion_models::device();
            let trained = train::load(&ckpt, &device)?;
            let data = data.load()?;
            if policies_per_arch == 0 {
                bail!("--policies-per-arch: must be at least 1");
            }
            let plan = if quantized { PairPlan { policies_per_arch, ..PairPlan::quantized(seed) } } else { PairPlan::fp32(seed) };
            let cfg = SampleConfig {
                n,
                plan,
                finetune: FinetuneConfig { steps: finetune_steps, ..FinetuneConfig::default() },
                quantizer: quant.quantizer()?,
                eval: measure.config(),
            };
            let b = bar(n as u64)?;
            let started = std::time::Instant::now();
            let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
            let pairs = pairs::sample_pairs(&trained.net, &trained.space, &data, &cfg, &out, &device, &mut |i, total, p| {
                b.set_position(i as u64 + 1);
                b.set_message(format!("last {:.3}", p.accuracy));
                if !tty && i % 25 == 0 {
                    eprintln!("pair {}/{total}: {} {:.2}% ({:.1} s; {:.0} s so far)", i + 1, p.policy, 100.0 * p.accuracy, p.seconds, started.elapsed().as_secs_f64());
                }
            })
            .map_err(|e| anyhow!(e))?;
            b.finish_and_clear();
            let kind = if quantized { format!("quantized, {finetune_steps} fine-tuning steps") } else { "fp32".into() };
            let (lo, med, hi) = pairs::spread(&pairs).unwrap_or_default();
            eprintln!(
                "{} pairs ({kind}) in {}: validation accuracy min {lo:.4}, median {med:.4}, max {hi:.4}; this run {:.1} s",
                pairs.len(),
                out.display(),
                started.elapsed().as_secs_f64()
            );
            Ok(true)
        }
        SupernetCommand::Ptq { ckpt, data, out, bits, measure } => {
            let device = bitfusion_models::device();
            let trained = train::load(&ckpt, &device)?;
            let data = data.load()?;
            train::check_data(&trained.space, &data).map_err(|e| anyhow!(e))?;
            for b in &bits {
                if !trained.space.bits.contains(b) {
                    bail!("--bits: {b} is not a width of space '{}' ({:?})", trained.space.name, trained.space.bits);
                }
            }
            let rows = ptq(&trained, &data, &bits, &measure.config(), &device)?;
            write_ptq(&out, &rows)?;
            print!("{}", ptq_markdown(&rows));
            eprintln!("wrote {}", out.display());
            Ok(true)
        }
        SupernetCommand::Export { subnet, out, lut, logits, logits_images, quant, calibration_images } => {
            export(&subnet, &out, lut.as_deref(), logits.as_deref(), logits_images, quant.quantizer()?, calibration_images)?;
            Ok(true)
        }
        SupernetCommand::Eval { subnet, bits, finetune_steps, test, seed, quant, measure } => {
            let device = bitfusion_models::device();
            let (trained, data, mut arch) = subnet.load(&device)?;
            let quantize = match bits.as_str() {
                "fp32" => false,
                "arch" => true,
                n => {
                    let b: u32 = n.parse().map_err(|_| anyhow!("--bits: '{n}' is not fp32, arch or a bit width"))?;
                    if !(2..=8).contains(&b) {
                        bail!("--bits: {b} is not a width Bit Fusion runs (2..8)");
                    }
                    for blk in arch.stages.iter_mut().flatten() {
                        (blk.pw_w, blk.pw_a, blk.dw_w, blk.dw_a) = (b, b, b, b);
                    }
                    true
                }
            };
            let cfg = measure.config();
            let q = quant.quantizer()?;
            let ft = FinetuneConfig { steps: finetune_steps, ..FinetuneConfig::default() };
            let measure_on = |images, cfg: &EvalConfig| {
                if quantize && finetune_steps > 0 {
                    eval::finetuned_accuracy(&trained.net, &trained.space, &arch, &data, images, cfg, &ft, seed, &device)
                } else {
                    eval::accuracy(&trained.net, &trained.space, &arch, &data, images, cfg, quantize.then_some(q), &device)
                }
            };
            let what = if quantize { format!("quantized ({}), {finetune_steps} fine-tuning steps", q.name()) } else { "fp32".into() };
            println!("{} ({what}): validation accuracy {:.2}%", arch.to_text(), 100.0 * measure_on(&data.valid, &cfg));
            if test {
                let cfg_all = EvalConfig { eval_images: None, ..cfg.clone() };
                println!("test accuracy {:.2}% ({} images)", 100.0 * measure_on(&data.test, &cfg_all), data.test.len());
            }
            Ok(true)
        }
    }
}

/// `supernet export`: prepare the subnet once, write every requested file, and optionally the
/// project's own logits on the test split.
fn export(subnet: &SubnetArgs, outs: &[PathBuf], lut: Option<&Path>, logits: Option<&Path>, logits_images: usize, q: Quantizer, calibration_images: usize) -> anyhow::Result<()> {
    use bitfusion_models::export;
    // Fail on names before any work.
    for o in outs {
        export::ExportFormat::from_path(o)?;
    }
    let device = bitfusion_models::device();
    let (trained, data, arch) = subnet.load(&device)?;
    let ckpt = &subnet.ckpt;
    let mut provenance = vec![
        ("checkpoint".to_string(), ckpt.display().to_string()),
        ("checkpoint_sha256".to_string(), file_hash(ckpt)?),
        ("space_hash".to_string(), trained.space.hash()),
    ];
    provenance.push(("data".into(), format!("{} ({} calibration images of the training split)", data.name, calibration_images.min(data.train.len()))));
    if let Some(l) = lut {
        let table = Lut::load(l)?;
        if table.header.space.hash() != trained.space.hash() {
            bail!("{}: the LUT's space '{}' is not the checkpoint's space '{}'", l.display(), table.header.space.name, trained.space.name);
        }
        provenance.push(("lut".to_string(), l.display().to_string()));
        provenance.extend(lut_provenance(&table, &file_hash(l)?, &arch)?);
    }
    let cfg = EvalConfig { calibration_images, eval_images: None, batch: 500 };
    let prepared = bitfusion_models::export::prepare(&trained.net, &trained.space, &arch, &data, &cfg, q, &device);
    for o in outs {
        let format = export::write(o, &prepared.network, &provenance)?;
        eprintln!("wrote {} ({format:?}, {} layers, {} bytes)", o.display(), prepared.network.convs.len() + 1, std::fs::metadata(o).map(|m| m.len()).unwrap_or(0));
    }
    if let Some(path) = logits {
        let n = if logits_images == 0 { data.test.len() } else { logits_images.min(data.test.len()) };
        let plain = device.clone().without_autodiff();
        let values = eval::logits_of(&prepared.plan, &prepared.weights, &prepared.calibration, &data, &data.test, n, true, &plain);
        let classes = values.len() / n.max(1);
        let right = (0..n).filter(|&i| argmax(&values[i * classes..(i + 1) * classes]) == data.test.labels[i] as usize).count();
        bitfusion_util::create_parent(path).and_then(|_| bitfusion_util::write_atomic(path, &export::npy_f32(&[n, classes], &values))).with_context(|| format!("cannot write {}", path.display()))?;
        println!("{}: quantized test accuracy {:.2}% on the first {n} test images (the project's own evaluation); logits in {}", arch.to_text(), 100.0 * right as f64 / n.max(1) as f64, path.display());
    }
    Ok(())
}

/// The SHA-256 of a file (lowercase hex): exports' provenance and `run`'s stage fingerprints.
pub fn file_hash(path: &Path) -> anyhow::Result<String> {
    use sha2::Digest;
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(bitfusion_search::space::hex(&sha2::Sha256::digest(&bytes)))
}

/// What an export records of the LUT an architecture was searched on: its SHA-256
/// (`lut_sha256`), the hardware (`hw_name`, `hw_hash`), the cost model and the architecture's
/// latency and energy from it.
pub fn lut_provenance(table: &Lut, lut_sha256: &str, arch: &Arch) -> anyhow::Result<Vec<(String, String)>> {
    let (_, latency, energy) = table.cost(arch)?;
    let mut p = vec![
        ("lut_sha256".to_string(), lut_sha256.to_string()),
        ("hw_name".to_string(), table.header.hw_name.clone()),
        ("hw_hash".to_string(), table.header.hw_hash.clone()),
        ("cost_model".to_string(), table.header.model.clone()),
        ("latency_ms".to_string(), format!("{latency}")),
    ];
    if let Some(e) = energy {
        p.push(("energy_mj".into(), format!("{e}")));
    }
    Ok(p)
}

/// Index of the largest value (the first on ties), as the evaluation's prediction.
fn argmax(v: &[f32]) -> usize {
    v.iter().enumerate().fold(0, |best, (i, &x)| if x > v[best] { i } else { best })
}

/// A progress line of the bilevel search, on stderr every tenth step (and the first and last).
fn bilevel_progress(s: &BilevelStep, steps: usize) {
    if s.step == 1 || s.step.is_multiple_of(10) || s.step == steps {
        let best = if s.best_feasible.is_finite() { format!("{:.2}%", 100.0 * s.best_feasible) } else { "-".into() };
        eprintln!(
            "[bilevel] step {}/{steps}: loss {:.3}, mean accuracy {:.2}%, best feasible {best}, {:.0}% feasible, lambda {:.3}, entropy {:.1} ({:.0} s)",
            s.step,
            s.train_loss,
            100.0 * s.mean_accuracy,
            100.0 * s.feasible_fraction,
            s.lambda,
            s.entropy,
            s.seconds
        );
    }
}

/// Run the bilevel search from `trained` (copied) under `budget`, as a method's result: an
/// infeasible budget is a result with its reason in `note` (as evolution's), any other error
/// fails. Its `queries` are supernet evaluations and its accuracies validation measurements.
pub fn bilevel_search(trained: &train::Trained, lut: &Lut, data: &DataSet, budget: &Budget, cfg: &BilevelConfig, device: &bitfusion_models::Device) -> anyhow::Result<MethodResult> {
    Ok(bilevel_search_with_net(trained, lut, data, budget, cfg, device)?.0)
}

/// [`bilevel_search`], with the supernet as the search trained it (None when the budget is
/// infeasible).
fn bilevel_search_with_net(trained: &train::Trained, lut: &Lut, data: &DataSet, budget: &Budget, cfg: &BilevelConfig, device: &bitfusion_models::Device) -> anyhow::Result<(MethodResult, Option<bitfusion_models::supernet::Supernet>)> {
    let method = "bilevel".to_string();
    match bilevel::bilevel(&trained.net, &trained.space, lut, data, budget, cfg, device, &mut |s| bilevel_progress(s, cfg.steps)) {
        Ok(r) => Ok((MethodResult { method, best: Some(r.outcome.best), top: r.outcome.top, queries: r.outcome.queries, seconds: r.outcome.seconds, note: String::new() }, Some(r.net))),
        Err(e) if e.is_infeasible() => Ok((MethodResult { method, best: None, top: Vec::new(), queries: 0, seconds: 0.0, note: e.to_string() }, None)),
        Err(e) => Err(e.into()),
    }
}

/// An architecture given inline or as a file path.
pub(crate) fn read_arch(arg: &str) -> anyhow::Result<String> {
    let p = Path::new(arg);
    if !arg.contains(':') && !arg.starts_with('{') && p.exists() {
        return std::fs::read_to_string(p).with_context(|| format!("cannot read {arg}"));
    }
    Ok(arg.to_string())
}

/// Train with a progress bar and a summary; the library call the pipeline also uses.
pub fn train_supernet(space: &Space, data: &DataSet, cfg: &TrainConfig, out: &Path, stop_after: Option<usize>) -> anyhow::Result<bool> {
    let device = bitfusion_models::device();
    let b = bar(0)?;
    let started = std::time::Instant::now();
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let trained = train::train(space, data, cfg, out, &device, stop_after, &mut |p: &Progress| {
        if !tty && (p.note == "validating" || p.step % 100 == 0) {
            // No progress bar without a terminal (logs, CI): a line every 100 steps and per epoch.
            eprintln!("{:?} epoch {}/{} step {}/{}: loss {:.3} acc {:.1}% {:.0} img/s {}", p.phase, p.epoch + 1, p.epochs, p.step, p.steps, p.loss, 100.0 * p.accuracy, p.images_per_second, p.note);
        }
        b.set_length(p.steps as u64);
        b.set_position(p.step as u64);
        b.set_message(format!(
            "{:?} epoch {}/{}: loss {:.3} acc {:.3} {:.0} img/s {}",
            p.phase,
            p.epoch + 1,
            p.epochs,
            p.loss,
            p.accuracy,
            p.images_per_second,
            p.note
        ));
    })?;
    b.finish_and_clear();
    for h in &trained.state.history {
        eprintln!(
            "{:?} epoch {}: loss {:.3}, train acc {:.4}, valid acc {:.4} (largest), {:.0} s, {:.0} img/s",
            h.phase,
            h.epoch + 1,
            h.loss,
            h.train_accuracy,
            h.valid_accuracy,
            h.seconds,
            h.images_per_second
        );
    }
    match trained.state.test_accuracy {
        Some(t) => eprintln!("training complete: full network test accuracy {:.2}% ({} backend); checkpoint {}", 100.0 * t, bitfusion_models::backend_name(), out.display()),
        None => eprintln!("stopped after this run's epochs ({:.0} s); run the same command again to resume from {}", started.elapsed().as_secs_f64(), out.display()),
    }
    Ok(true)
}

/// The post-training quantization table of a trained supernet: its largest and middle subnets,
/// both quantizers, every uniform (w, a) of `bits`, on the validation images.
pub fn ptq(trained: &train::Trained, data: &DataSet, bits: &[u32], cfg: &EvalConfig, device: &bitfusion_models::Device) -> anyhow::Result<Vec<eval::PtqRow>> {
    use bitfusion_search::evolution::{largest, middle};
    let space = &trained.space;
    let top = *space.bits.iter().max().expect("bits");
    let networks = vec![("largest".to_string(), largest(space, top)), ("middle".to_string(), middle(space, top))];
    let n = networks.len() * (1 + 2 * bits.len() * bits.len());
    let b = bar(n as u64)?;
    let rows = eval::ptq_table(&trained.net, space, &networks, bits, &[Quantizer::MaxRange, Quantizer::MseClip], data, &data.valid, cfg, device, &mut |r| {
        b.inc(1);
        b.set_message(format!("{} {} W{}A{}: {:.4}", r.network, r.quantizer, r.w_bits, r.a_bits, r.accuracy));
    });
    b.finish_and_clear();
    Ok(rows)
}

pub fn write_ptq(out: &Path, rows: &[eval::PtqRow]) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        w.serialize(r)?;
    }
    let bytes = w.into_inner().map_err(|e| anyhow!("csv: {e}"))?;
    bitfusion_util::write_atomic(out, &bytes).with_context(|| format!("cannot write {}", out.display()))
}

/// The table as markdown: one row per (network, weight bits), one column per (quantizer,
/// activation bits), accuracies in percent.
pub fn ptq_markdown(rows: &[eval::PtqRow]) -> String {
    let mut s = String::new();
    let mut a_bits: Vec<u32> = rows.iter().filter(|r| r.a_bits > 0).map(|r| r.a_bits).collect();
    a_bits.sort_unstable();
    a_bits.dedup();
    let mut quantizers: Vec<&str> = Vec::new();
    for r in rows.iter().filter(|r| r.quantizer != "fp32") {
        if !quantizers.contains(&r.quantizer.as_str()) {
            quantizers.push(&r.quantizer);
        }
    }
    s += "| network | fp32 | W bits |";
    for q in &quantizers {
        for a in &a_bits {
            s += &format!(" {q} A{a} |");
        }
    }
    s += "\n|---|---|---|";
    s += &"---|".repeat(quantizers.len() * a_bits.len());
    s += "\n";
    let mut networks: Vec<&str> = Vec::new();
    for r in rows {
        if !networks.contains(&r.network.as_str()) {
            networks.push(&r.network);
        }
    }
    for n in networks {
        let fp = rows.iter().find(|r| r.network == n && r.quantizer == "fp32").map(|r| format!("{:.2}", 100.0 * r.accuracy)).unwrap_or_default();
        let mut w_bits: Vec<u32> = rows.iter().filter(|r| r.network == n && r.w_bits > 0).map(|r| r.w_bits).collect();
        w_bits.sort_unstable();
        w_bits.dedup();
        for w in w_bits {
            s += &format!("| {n} | {fp} | {w} |");
            for q in &quantizers {
                for a in &a_bits {
                    let cell = rows.iter().find(|r| r.network == n && r.quantizer == *q && r.w_bits == w && r.a_bits == *a).map(|r| format!("{:.2}", 100.0 * r.accuracy)).unwrap_or_default();
                    s += &format!(" {cell} |");
                }
            }
            s += "\n";
        }
    }
    s
}
