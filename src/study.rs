//! `bitfusion study edge-cloud`: the joint search on several hardware configs at comparable
//! latency budgets, each winner's layers on its config's roofline (HAQ's edge-versus-cloud
//! finding). Thin: the study is `bitfusion_search::hw_compare`, the chart
//! `bitfusion_plots::plot_edge_cloud`; this module picks the predictor, loops over the configs and
//! writes the files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use bitfusion_models::predictor::{self, EnsembleConfig, EnsemblePredictor, LoadedPredictor, Pessimistic};
use bitfusion_search::Space;
use bitfusion_search::evolution::{EvoConfig, Predictor};
use bitfusion_search::hw_compare::{self, ConfigResult};
use bitfusion_simulator::config::load_hw;
use bitfusion_simulator::roofline::{self, Bound};
use bitfusion_util::write_atomic;

use crate::search_cmd;

/// Where the shipped pairs live (committed; see models/artifacts/micro/README.md).
const ARTIFACTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/artifacts/micro");

/// The searches rank candidates by the ensemble's mean minus this many standard deviations of
/// its members (as `bitfusion run` does).
const SEARCH_PENALTY: f64 = 1.0;

#[derive(clap::Subcommand)]
pub enum StudyCommand {
    /// The joint search on each config at a comparable latency budget (the same fraction of the
    /// way from its cheapest architecture to its largest 8-bit one), each winner's layers placed
    /// on that config's roofline: edge_cloud.csv, edge_cloud.png/.svg and edge_cloud.md in OUT
    /// (the LUTs cached there as CONFIG.lut).
    EdgeCloud(EdgeCloudArgs),
}

#[derive(clap::Args)]
pub struct EdgeCloudArgs {
    #[arg(long)]
    pub out: PathBuf,
    /// A preset space (apq, apq-wide-bits, micro) or a space TOML file.
    #[arg(long, default_value = "micro")]
    pub space: String,
    /// Hardware configs to compare (names of shipped configs or TOML files; repeat the flag);
    /// each LUT is built at the config's [workload] batch.
    #[arg(long = "hw", default_values = ["bitfusion-edge", "bitfusion-cloud"])]
    pub hw: Vec<String>,
    /// The latency budget, as a fraction of the way from each config's cheapest architecture to
    /// its largest 8-bit one.
    #[arg(long, default_value_t = 0.3)]
    pub budget_fraction: f64,
    /// A quantization-aware predictor of the space (default: the ensemble trained, in seconds,
    /// from the shipped pairs models/artifacts/micro/pairs_{fp32,quant}.jsonl, as `bitfusion
    /// predictor train` does; saved as OUT/predictor_quant.bin and reused).
    #[arg(long)]
    pub predictor: Option<PathBuf>,
    #[arg(long, default_value_t = 200)]
    pub generations: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

pub fn run(cmd: StudyCommand) -> anyhow::Result<bool> {
    match cmd {
        StudyCommand::EdgeCloud(a) => edge_cloud(&a).map(|_| true),
    }
}

/// The default predictor: the quantization-aware ensemble transferred from the fp32 one, both
/// trained on the shipped pairs (cached in `out`).
fn shipped_predictor(space: &Space, out: &Path, seed: u64) -> anyhow::Result<EnsemblePredictor> {
    let path = out.join("predictor_quant.bin");
    if let Ok(p) = EnsemblePredictor::load(&path)
        && p.header.quantized
        && p.space.hash() == space.hash()
    {
        eprintln!("[study] predictor: {} (delete it to retrain)", path.display());
        return Ok(p);
    }
    if space.name != "micro" {
        bail!("--space {}: the shipped pairs are of space 'micro'; give a predictor of this space with --predictor", space.name);
    }
    eprintln!("[study] predictor: training the ensemble on the shipped pairs ({ARTIFACTS})");
    let files = [Path::new(ARTIFACTS).join("pairs_fp32.jsonl"), Path::new(ARTIFACTS).join("pairs_quant.jsonl")];
    let pairs = search_cmd::read_pair_files(&files)?;
    let d = predictor::pair_data(space, &pairs).map_err(|e| anyhow!(e))?;
    let cfg = EnsembleConfig { seed, ..EnsembleConfig::default() };
    let fp32 = predictor::train_fp32(space, &d.fp32_table(|_| true), &cfg).map_err(|e| anyhow!(e))?;
    let quant = predictor::train_quant(space, &d.quant, Some(&fp32), &cfg).map_err(|e| anyhow!(e))?;
    quant.save(&path)?;
    Ok(quant)
}

/// The plot's view of the results: each config's layers, coloured by the fused operand mode
/// their bits run in (one compute ceiling per mode any winner uses, in one order for all configs).
fn chart_data(results: &[ConfigResult], configs: &[bitfusion_simulator::HwConfig]) -> Vec<bitfusion_plots::ConfigRoofline> {
    let mode = |hw: &bitfusion_simulator::HwConfig, w: u32, a: u32| (roofline::fused_operand_bits(hw, w), roofline::fused_operand_bits(hw, a));
    let mut modes: BTreeMap<(u32, u32), BTreeSet<(u32, u32)>> = BTreeMap::new();
    for (r, hw) in results.iter().zip(configs) {
        for l in &r.layers {
            modes.entry(mode(hw, l.w_bits, l.a_bits)).or_default().insert((l.w_bits, l.a_bits));
        }
    }
    let keys: Vec<(u32, u32)> = modes.keys().copied().collect();
    results
        .iter()
        .zip(configs)
        .map(|(r, hw)| bitfusion_plots::ConfigRoofline {
            config: r.config.clone(),
            bandwidth_bytes_per_s: r.bandwidth_bytes_per_s,
            ceilings: modes
                .iter()
                .map(|(&(fw, fa), bits)| {
                    let members: Vec<String> = bits.iter().map(|(w, a)| format!("w{w}a{a}")).collect();
                    (format!("{fw}x{fa}-bit mode ({})", members.join(", ")), roofline::peak_ops_per_s(hw, fw, fa))
                })
                .collect(),
            layers: r
                .layers
                .iter()
                .map(|l| bitfusion_plots::RooflineLayer {
                    name: l.layer.clone(),
                    w_bits: l.w_bits,
                    a_bits: l.a_bits,
                    ops_per_byte: l.point.ops_per_byte,
                    attainable_ops_per_s: l.point.attainable_ops_per_s,
                    memory_bound: l.point.bound == Bound::Memory,
                    ceiling: keys.iter().position(|k| *k == mode(hw, l.w_bits, l.a_bits)).unwrap_or(0),
                })
                .collect(),
        })
        .collect()
}

pub fn edge_cloud(a: &EdgeCloudArgs) -> anyhow::Result<()> {
    if a.hw.len() < 2 {
        bail!("--hw: give at least two configs to compare");
    }
    if !(a.budget_fraction > 0.0 && a.budget_fraction <= 1.0) {
        bail!("--budget-fraction: {} is not a fraction in (0, 1]", a.budget_fraction);
    }
    if a.generations == 0 {
        bail!("--generations: must be at least 1");
    }
    let space = Space::load(&a.space)?;
    let configs = a.hw.iter().map(|h| load_hw(h, &[])).collect::<Result<Vec<_>, _>>()?;
    let names: BTreeSet<&str> = configs.iter().map(|c| c.name.as_str()).collect();
    if names.len() < configs.len() {
        bail!("--hw: two configs share the name '{}'; their LUTs would share a file", configs.iter().map(|c| c.name.as_str()).find(|n| configs.iter().filter(|c| c.name == *n).count() > 1).unwrap_or("?"));
    }
    let _lock = bitfusion_util::OutputLock::dir(&a.out)?;
    let loaded;
    let trained;
    let view: Box<dyn Predictor + '_> = match &a.predictor {
        Some(path) => {
            loaded = LoadedPredictor::load(path)?;
            if loaded.space().hash() != space.hash() {
                bail!("{}: the predictor was trained on space '{}', not on '{}' (space hashes differ)", path.display(), loaded.space().name, space.name);
            }
            if !loaded.quantized() {
                bail!("{}: an fp32 predictor does not see the bits; give a quantization-aware one", path.display());
            }
            search_cmd::search_view(&loaded, SEARCH_PENALTY)
        }
        None => {
            trained = shipped_predictor(&space, &a.out, a.seed)?;
            Box::new(Pessimistic { ensemble: &trained, k: SEARCH_PENALTY })
        }
    };
    let evo = EvoConfig { generations: a.generations, seed: a.seed, ..EvoConfig::default() };
    let mut results = Vec::new();
    for hw in &configs {
        let lut_path = a.out.join(format!("{}.lut", hw.name));
        let lut = hw_compare::lut_for(&space, hw, &lut_path).with_context(|| format!("{}: LUT", hw.name))?;
        let r = hw_compare::study_config(&space, hw, &lut, view.as_ref(), a.budget_fraction, &evo).with_context(|| hw.name.clone())?;
        eprintln!(
            "[study] {} (batch {}): budget {:.4} ms ({:.4}..{:.4}), winner {:.4} ms, predicted {:.2}%",
            r.config,
            r.batch,
            r.budget.budget_ms,
            r.budget.cheapest_ms,
            r.budget.largest_ms,
            r.winner.latency_ms,
            100.0 * r.winner.accuracy
        );
        results.push(r);
    }
    let csv_path = a.out.join("edge_cloud.csv");
    write_atomic(&csv_path, hw_compare::csv(&results).as_bytes()).with_context(|| format!("cannot write {}", csv_path.display()))?;
    let files = bitfusion_plots::plot_edge_cloud(&a.out, "edge_cloud", &chart_data(&results, &configs))?;
    let md_path = a.out.join("edge_cloud.md");
    write_atomic(&md_path, hw_compare::markdown(&results, "edge_cloud.png").as_bytes()).with_context(|| format!("cannot write {}", md_path.display()))?;
    for f in [csv_path].iter().chain(&files).chain([&md_path]) {
        println!("wrote {}", f.display());
    }
    Ok(())
}
