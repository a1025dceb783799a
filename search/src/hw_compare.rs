//! Edge versus cloud: the same joint search on several hardware configs at comparable latency
//! budgets, and every winner's layers placed on its own config's roofline.
//!
//! HAQ (Wang et al., CVPR 2019, section 4.2 and figure 4) found that the best bit policy differs
//! between an edge and a cloud accelerator, and explained it with the roofline: a layer that is
//! memory-bound on one machine and compute-bound on the other wants different bits. This module
//! reproduces that study on Bit Fusion: per config it builds (or reuses) the LUT of the space at
//! the config's deployment batch, picks the budget the same fraction of the way from the cheapest
//! architecture's latency to the largest 8-bit architecture's, runs the joint evolution with the
//! caller's predictor, and simulates each layer of the winner to place it on the roofline
//! (`bitfusion_simulator::roofline`). The CSV and the report's sentences are generated from those
//! numbers.

use std::fmt::Write as _;
use std::path::Path;

use bitfusion_simulator::config::CostModelName;
use bitfusion_simulator::roofline::{self, Bound, RooflinePoint};
use bitfusion_simulator::{HwConfig, Objective, build};

use crate::arch::Arch;
use crate::evolution::{self, Budget, Candidate, EvoConfig, Evaluator, Freedom, Predictor, cheapest, largest};
use crate::lut::{BuildSpec, Lut, LutError, build_lut};
use crate::space::Space;

/// Why the comparison could not be made, on one line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CompareError {
    #[error(transparent)]
    Lut(#[from] LutError),
    #[error(transparent)]
    Search(#[from] evolution::SearchError),
    /// The simulator could not run a layer of a winner.
    #[error("{config}: layer {layer}: {reason}")]
    Simulate { config: String, layer: String, reason: String },
    /// The budget fraction is not in (0, 1].
    #[error("budget fraction {0} is not in (0, 1]")]
    Fraction(f64),
}

/// What a layer is in the chain, for the sentences: the searched layers are the blocks' expand,
/// depthwise and project convolutions; the stem, first block and head keep the space's bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Pointwise,
    Depthwise,
    /// Stem, first block, feature mix, classifier: fixed bits.
    Fixed,
}

impl Role {
    /// The role of a layer by its name in `Arch::layers` (`s{stage}b{block}_expand`, `_dw`,
    /// `_project`; anything else is fixed).
    pub fn of(name: &str) -> Role {
        let searched = name.starts_with('s') && name.contains('b') && !name.starts_with("stem");
        match () {
            _ if searched && name.ends_with("_dw") => Role::Depthwise,
            _ if searched && (name.ends_with("_expand") || name.ends_with("_project")) => Role::Pointwise,
            _ => Role::Fixed,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Pointwise => "pointwise",
            Role::Depthwise => "depthwise",
            Role::Fixed => "fixed",
        }
    }
}

/// One layer of a winner on its config's roofline.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerRoofline {
    /// Position in the network, from 0.
    pub index: usize,
    pub layer: String,
    pub role: Role,
    pub w_bits: u32,
    pub a_bits: u32,
    /// The operand widths the fusion units run its bits at (`roofline::fused_operand_bits`).
    pub fused_w_bits: u32,
    pub fused_a_bits: u32,
    pub macs: u64,
    /// Simulated latency of the layer, milliseconds.
    pub latency_ms: f64,
    pub point: RooflinePoint,
}

/// Every layer of `arch` (at `batch`, each stored at the next layer's activation bits as in the
/// LUT) simulated by the cycle model on `hw` and placed on its roofline.
pub fn arch_roofline(space: &Space, arch: &Arch, hw: &HwConfig, batch: u32) -> Result<Vec<LayerRoofline>, CompareError> {
    let model = build(hw, Some(CostModelName::Cycle), Objective::Cycles);
    let layers = arch.layers(space, batch);
    layers
        .iter()
        .enumerate()
        .map(|(index, l)| {
            let out_bits = layers.get(index + 1).map_or(l.a_bits, |n| n.a_bits);
            let stats = model.simulate_layer_with_output_bits(l, out_bits).map_err(|e| CompareError::Simulate { config: hw.name.clone(), layer: l.name.clone(), reason: e.to_string() })?;
            Ok(LayerRoofline { index, layer: l.name.clone(), role: Role::of(&l.name), w_bits: l.w_bits, a_bits: l.a_bits, fused_w_bits: roofline::fused_operand_bits(hw, l.w_bits), fused_a_bits: roofline::fused_operand_bits(hw, l.a_bits), macs: stats.macs, latency_ms: stats.latency_ms, point: roofline::position(hw, l, &stats) })
        })
        .collect()
}

/// The LUT of `space` on `hw` at the config's batch (cycle model, cycles objective): the file at
/// `path` when it is one of exactly those, else built there.
pub fn lut_for(space: &Space, hw: &HwConfig, path: &Path) -> Result<Lut, CompareError> {
    if let Ok(lut) = Lut::load(path)
        && lut.check_hw(hw).is_ok()
        && lut.check_space(space).is_ok()
        && lut.header.batch == hw.batch
        && lut.header.model == CostModelName::Cycle.as_str()
        && lut.header.objective == Objective::Cycles.as_str()
    {
        return Ok(lut);
    }
    let spec = BuildSpec { space, hw, model: CostModelName::Cycle, objective: Objective::Cycles, batch: hw.batch };
    let _ = std::fs::remove_file(path);
    Ok(build_lut(&spec, path, &|_, _| {})?.0)
}

/// A latency budget comparable across configs: `fraction` of the way from the cheapest
/// architecture's latency to the largest architecture's at the space's widest bits.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ComparableBudget {
    pub fraction: f64,
    pub cheapest_ms: f64,
    pub largest_ms: f64,
    pub budget_ms: f64,
}

pub fn comparable_budget(space: &Space, lut: &Lut, fraction: f64) -> Result<ComparableBudget, CompareError> {
    if !(fraction > 0.0 && fraction <= 1.0) {
        return Err(CompareError::Fraction(fraction));
    }
    let (cheapest_ms, _) = cheapest(space, lut, &Freedom::joint(space), &|e| e.latency_ms)?;
    let (_, largest_ms, _) = lut.cost(&largest(space, *space.bits.iter().max().expect("a space has bits")))?;
    let budget_ms = bitfusion_util::round_sig(cheapest_ms + fraction * (largest_ms - cheapest_ms), 7);
    Ok(ComparableBudget { fraction, cheapest_ms, largest_ms, budget_ms })
}

/// One config's search and its winner's layers on its roofline.
#[derive(Clone, Debug)]
pub struct ConfigResult {
    pub config: String,
    pub batch: u32,
    pub budget: ComparableBudget,
    pub winner: Candidate,
    pub layers: Vec<LayerRoofline>,
    /// Ridge points at the narrowest and the widest bits of the space, operations per DRAM byte.
    pub ridge_low_bits: f64,
    pub ridge_high_bits: f64,
    /// DRAM bandwidth, bytes per second.
    pub bandwidth_bytes_per_s: f64,
}

/// The joint search on `hw` at the comparable budget, its winner placed on the roofline.
pub fn study_config(space: &Space, hw: &HwConfig, lut: &Lut, predictor: &dyn Predictor, fraction: f64, cfg: &EvoConfig) -> Result<ConfigResult, CompareError> {
    let budget = comparable_budget(space, lut, fraction)?;
    let mut ev = Evaluator::new(space, lut, predictor);
    let outcome = evolution::evolve(&mut ev, &Freedom::joint(space), &Budget { latency_ms: Some(budget.budget_ms), energy_mj: None }, cfg)?;
    let layers = arch_roofline(space, &outcome.best.arch, hw, hw.batch)?;
    let lo = *space.bits.iter().min().expect("a space has bits");
    let hi = *space.bits.iter().max().expect("a space has bits");
    Ok(ConfigResult {
        config: hw.name.clone(),
        batch: hw.batch,
        budget,
        winner: outcome.best,
        layers,
        ridge_low_bits: roofline::ridge_ops_per_byte(hw, lo, lo),
        ridge_high_bits: roofline::ridge_ops_per_byte(hw, hi, hi),
        bandwidth_bytes_per_s: roofline::dram_bytes_per_s(hw),
    })
}

/// Numbers in the CSV: 7 significant digits.
fn n(v: f64) -> String {
    bitfusion_util::Sig(bitfusion_util::round_sig(v, 7)).to_string()
}

/// The CSV header of [`csv`].
pub const CSV_HEADER: &str = "config,batch,budget_ms,index,layer,role,w_bits,a_bits,macs,latency_ms,dram_bytes,ops_per_byte,peak_gops,bandwidth_gb_per_s,attainable_gops,achieved_gops,bound";

/// One row per layer of every config's winner: its bits and its place on the roofline (GOPS =
/// 1e9 operations per second; GB/s = 1e9 bytes per second).
pub fn csv(results: &[ConfigResult]) -> String {
    let mut s = format!("{CSV_HEADER}\n");
    for r in results {
        for l in &r.layers {
            let p = &l.point;
            let _ = writeln!(
                s,
                "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                r.config,
                r.batch,
                n(r.budget.budget_ms),
                l.index,
                l.layer,
                l.role.as_str(),
                l.w_bits,
                l.a_bits,
                l.macs,
                n(l.latency_ms),
                n(p.dram_bytes),
                n(p.ops_per_byte),
                n(p.peak_ops_per_s / 1e9),
                n(p.bandwidth_bytes_per_s / 1e9),
                n(p.attainable_ops_per_s / 1e9),
                n(p.achieved_ops_per_s / 1e9),
                p.bound.as_str()
            );
        }
    }
    s
}

/// Mean weight and activation bits of `layers` (None when there are none).
fn mean_bits<'a>(layers: impl IntoIterator<Item = &'a LayerRoofline>) -> Option<(f64, f64)> {
    let v: Vec<&LayerRoofline> = layers.into_iter().collect();
    (!v.is_empty()).then(|| (v.iter().map(|l| l.w_bits as f64).sum::<f64>() / v.len() as f64, v.iter().map(|l| l.a_bits as f64).sum::<f64>() / v.len() as f64))
}

fn bits_text(b: Option<(f64, f64)>) -> String {
    b.map_or("none".into(), |(w, a)| format!("W{w:.1}/A{a:.1}"))
}

fn searched(r: &ConfigResult) -> impl Iterator<Item = &LayerRoofline> {
    r.layers.iter().filter(|l| l.role != Role::Fixed)
}

/// Share of the operands (weights and activations) of `layers` narrower than the width they are
/// fused at (6 bits in the 8-bit mode): they move fewer bytes than the mode's width but take as
/// long on the array. None when there are no layers.
pub fn padded_operand_share<'a>(layers: impl IntoIterator<Item = &'a LayerRoofline>) -> Option<f64> {
    let (mut padded, mut total) = (0usize, 0usize);
    for l in layers {
        padded += usize::from(l.w_bits < l.fused_w_bits) + usize::from(l.a_bits < l.fused_a_bits);
        total += 2;
    }
    (total > 0).then(|| padded as f64 / total as f64)
}

fn share_text(v: Option<f64>) -> String {
    v.map_or("no layers".into(), |v| format!("{:.0}%", 100.0 * v))
}

/// Share of the searched layers' simulated latency spent in memory-bound layers, in 0..1.
pub fn memory_bound_time_share(r: &ConfigResult) -> f64 {
    let total: f64 = searched(r).map(|l| l.latency_ms).sum();
    let mem: f64 = searched(r).filter(|l| l.point.bound == Bound::Memory).map(|l| l.latency_ms).sum();
    if total > 0.0 { mem / total } else { 0.0 }
}

/// The report section: a table per config and sentences generated from the numbers (which
/// layers are memory-bound where, mean bits on memory- and compute-bound layers, where the
/// policies differ).
pub fn markdown(results: &[ConfigResult], chart: &str) -> String {
    let mut s = String::from("## Edge versus cloud on the roofline\n\n");
    let _ = writeln!(
        s,
        "The joint search (architecture, channels and per-layer bits) ran on each config with the same predictor, at a latency budget {:.0}% of the way from the cheapest architecture to the largest 8-bit one on that config; each winner's layers were then simulated on its config and placed on its roofline: arithmetic intensity (operations per DRAM byte, from the simulated DRAM traffic) against attainable throughput min(peak at the layer's bits, intensity x DRAM bandwidth). Only the blocks' expand, depthwise and project layers are searched; the stem, first block and head keep 8 bits and are left out of the bit statistics. Chart: `{chart}`.\n",
        100.0 * results.first().map_or(0.0, |r| r.budget.fraction)
    );
    s += "| config | batch | DRAM (GB/s) | ridge at 2/8 bits (ops/B) | budget (ms) | winner latency (ms) | predicted accuracy | searched layers memory-bound | their share of latency | mean bits, memory-bound | mean bits, compute-bound | mean bits, all searched |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n";
    for r in results {
        let total = searched(r).count();
        let mem: Vec<&LayerRoofline> = searched(r).filter(|l| l.point.bound == Bound::Memory).collect();
        let _ = writeln!(
            s,
            "| {} | {} | {:.1} | {:.0} / {:.0} | {:.4} | {:.4} | {:.2}% | {} of {} | {:.0}% | {} | {} | {} |",
            r.config,
            r.batch,
            r.bandwidth_bytes_per_s / 1e9,
            r.ridge_low_bits,
            r.ridge_high_bits,
            r.budget.budget_ms,
            r.winner.latency_ms,
            100.0 * r.winner.accuracy,
            mem.len(),
            total,
            100.0 * memory_bound_time_share(r),
            bits_text(mean_bits(mem.iter().copied())),
            bits_text(mean_bits(searched(r).filter(|l| l.point.bound == Bound::Compute))),
            bits_text(mean_bits(searched(r)))
        );
    }
    s += "\n";
    s += &sentences(results);
    s
}

/// The findings, in sentences generated from the numbers.
pub fn sentences(results: &[ConfigResult]) -> String {
    let mut s = String::new();
    for r in results {
        let by_role = |role: Role, bound: Bound| searched(r).filter(|l| l.role == role && l.point.bound == bound).count();
        let of_role = |role: Role| searched(r).filter(|l| l.role == role).count();
        let intensity: Vec<f64> = searched(r).map(|l| l.point.ops_per_byte).collect();
        let (lo, hi) = intensity.iter().fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
        let _ = writeln!(
            s,
            "* **{}** (batch {}): its searched layers reach {:.1} to {:.1} operations per DRAM byte against a ridge of {:.0} ops/B at 8 bits and {:.0} at 2 bits; {} of {} depthwise and {} of {} pointwise layers are memory-bound, {:.0}% of the searched layers' latency. Mean bits: {} on memory-bound layers, {} on compute-bound ones; depthwise {}, pointwise {}. Operands narrower than their fused mode (6 bits run in the 8-bit mode: fewer bytes, no faster on the array): {} on memory-bound layers, {} on compute-bound ones.",
            r.config,
            r.batch,
            lo,
            hi,
            r.ridge_high_bits,
            r.ridge_low_bits,
            by_role(Role::Depthwise, Bound::Memory),
            of_role(Role::Depthwise),
            by_role(Role::Pointwise, Bound::Memory),
            of_role(Role::Pointwise),
            100.0 * memory_bound_time_share(r),
            bits_text(mean_bits(searched(r).filter(|l| l.point.bound == Bound::Memory))),
            bits_text(mean_bits(searched(r).filter(|l| l.point.bound == Bound::Compute))),
            bits_text(mean_bits(searched(r).filter(|l| l.role == Role::Depthwise))),
            bits_text(mean_bits(searched(r).filter(|l| l.role == Role::Pointwise))),
            share_text(padded_operand_share(searched(r).filter(|l| l.point.bound == Bound::Memory))),
            share_text(padded_operand_share(searched(r).filter(|l| l.point.bound == Bound::Compute))),
        );
    }
    for (i, a) in results.iter().enumerate() {
        for b in &results[i + 1..] {
            s += &pair_sentences(a, b);
        }
    }
    s
}

/// Where two configs' winners differ: architecture, bits of the layers both have, and layers
/// whose bound differs.
fn pair_sentences(a: &ConfigResult, b: &ConfigResult) -> String {
    let mut s = String::new();
    let same_arch = a.winner.arch == b.winner.arch;
    let shape = |r: &ConfigResult| r.layers.iter().map(|l| (l.layer.clone(), l.macs)).collect::<Vec<_>>();
    let _ = write!(s, "\n**{} against {}.** ", a.config, b.config);
    if same_arch {
        s += "The two searches chose the same architecture with the same bits. ";
    } else if shape(a) == shape(b) {
        s += "The two searches chose the same layers and channels with different bits. ";
    } else {
        let _ = write!(s, "The winners differ in architecture too ({} and {} layers). ", a.layers.len(), b.layers.len());
    }
    let common: Vec<(&LayerRoofline, &LayerRoofline)> = searched(a).filter_map(|x| b.layers.iter().find(|y| y.layer == x.layer).map(|y| (x, y))).collect();
    let differ: Vec<&(&LayerRoofline, &LayerRoofline)> = common.iter().filter(|(x, y)| (x.w_bits, x.a_bits) != (y.w_bits, y.a_bits)).collect();
    let _ = write!(s, "Of the {} searched layers both winners have, {} have different bits", common.len(), differ.len());
    if differ.is_empty() {
        s += ". ";
    } else {
        let list: Vec<String> = differ.iter().take(8).map(|(x, y)| format!("{} W{}A{} vs W{}A{}", x.layer, x.w_bits, x.a_bits, y.w_bits, y.a_bits)).collect();
        let _ = write!(s, " ({}{}). ", list.join(", "), if differ.len() > 8 { ", ..." } else { "" });
    }
    let flips: Vec<&(&LayerRoofline, &LayerRoofline)> = common.iter().filter(|(x, y)| x.point.bound != y.point.bound).collect();
    let mem_a = |x: &LayerRoofline| x.point.bound == Bound::Memory;
    let a_mem_b_comp = flips.iter().filter(|(x, _)| mem_a(x)).count();
    let _ = write!(
        s,
        "{} of them are memory-bound on {} and compute-bound on {}, {} the other way round",
        a_mem_b_comp,
        a.config,
        b.config,
        flips.len() - a_mem_b_comp
    );
    if let Some(((wa, aa), (wb, ab))) = mean_bits(flips.iter().map(|p| p.0)).zip(mean_bits(flips.iter().map(|p| p.1))) {
        let _ = write!(s, "; on those layers {} chose W{wa:.1}/A{aa:.1} and {} W{wb:.1}/A{ab:.1}", a.config, b.config);
    }
    s += ". ";
    let (sa, sb) = (memory_bound_time_share(a), memory_bound_time_share(b));
    let (ba, bb) = (mean_bits(searched(a)).unwrap_or_default(), mean_bits(searched(b)).unwrap_or_default());
    let _ = write!(
        s,
        "Overall {} spends {:.0}% of its searched latency in memory-bound layers and {} {:.0}%; their mean bits are W{:.1}/A{:.1} and W{:.1}/A{:.1}.",
        a.config,
        100.0 * sa,
        b.config,
        100.0 * sb,
        ba.0,
        ba.1,
        bb.0,
        bb.1
    );
    let why = if flips.is_empty() {
        format!(" No searched layer changes roof between the two machines, so the roofline does not explain the bits that differ; they trade predicted accuracy against each machine's own latency costs.")
    } else {
        let a_is_mem = a_mem_b_comp * 2 >= flips.len();
        let (mem_cfg, comp_cfg) = if a_is_mem { (&a.config, &b.config) } else { (&b.config, &a.config) };
        let side = |first: bool| mean_bits(flips.iter().map(|p| if first { p.0 } else { p.1 })).unwrap_or_default();
        let (on_mem, on_comp) = if a_is_mem { (side(true), side(false)) } else { (side(false), side(true)) };
        let compare = |x: f64, y: f64| if x < y - 0.05 { "fewer" } else if x > y + 0.05 { "more" } else { "as many" };
        format!(
            " Why, from the roofline: on {mem_cfg} a memory-bound layer's time is the bytes it moves over the DRAM bandwidth, so every bit cut from its weights or activations shortens it in proportion, 6 bits included; on {comp_cfg} a compute-bound layer's time is its operations over the array's peak in its fused mode, which rises only when an operand drops to a narrower fused width (8 to 4 to 2 bits), so cutting bits there pays only in whole mode steps. On the layers that change roof, {mem_cfg}'s policy gives {} weight bits (W{:.1} against W{:.1}) and {} activation bits (A{:.1} against A{:.1}) than {comp_cfg}'s.",
            compare(on_mem.0, on_comp.0),
            on_mem.0,
            on_comp.0,
            compare(on_mem.1, on_comp.1),
            on_mem.1,
            on_comp.1
        )
    };
    s += &why;
    s += "\n";
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_follow_the_layer_names() {
        assert_eq!(Role::of("s0b1_dw"), Role::Depthwise);
        assert_eq!(Role::of("s2b0_expand"), Role::Pointwise);
        assert_eq!(Role::of("s2b0_project"), Role::Pointwise);
        for fixed in ["stem", "first_dw", "first_project", "feature_mix", "classifier"] {
            assert_eq!(Role::of(fixed), Role::Fixed, "{fixed}");
        }
    }

    #[test]
    fn fractions_outside_zero_one_are_refused() {
        let space = Space::from_toml(crate::space::TINY_SPACE, "tiny").unwrap();
        let hw = bitfusion_simulator::config::load_hw("bitfusion-edge", &[]).unwrap();
        let dir = std::env::temp_dir().join(format!("bf-hwcmp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let lut = lut_for(&space, &hw, &dir.join("edge.lut")).unwrap();
        assert_eq!(lut.header.batch, 1);
        assert_eq!(comparable_budget(&space, &lut, 0.0).unwrap_err(), CompareError::Fraction(0.0));
        let b = comparable_budget(&space, &lut, 1.0).unwrap();
        assert!(b.cheapest_ms < b.largest_ms && (b.budget_ms - b.largest_ms).abs() <= 1e-6 * b.largest_ms);
        // A second call reuses the file.
        let again = lut_for(&space, &hw, &dir.join("edge.lut")).unwrap();
        assert_eq!(again.entries.len(), lut.entries.len());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
