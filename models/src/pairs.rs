//! (architecture, bits, accuracy) pairs for the accuracy predictor: which subnets and bit
//! policies are measured, and the resumable pair files they are appended to.
//!
//! Quantized pairs cover the region the searches visit (`shared/reference/search/QUANTIZED_SEARCH.md`
//! 3): architectures come in groups of [`PairPlan::policies_per_arch`] pairs that share one
//! architecture (APQ's several policies per architecture), each group's fp32 accuracy measured
//! too (the paired design separates the bit effect from the architecture effect); one group in
//! ten is the largest or the smallest architecture; the first policy of every group and a tenth
//! of the others are uniform precision (one width everywhere, as the fixed-precision baselines);
//! the rest draw a mixed policy ([`policy::mixed`]). I.i.d. bits per slot, the earlier scheme, put
//! a 2-bit slot in 99.8% of `micro` networks; the mixture leaves about one network in five without
//! one and still visits the many-2-bit corner.
//!
//! Quantized pairs are measured like fp32 ones (batch-norm and step recalibration, then
//! evaluation), without per-sample fine-tuning unless [`SampleConfig::finetune`] asks for it.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use bitfusion_search::evolution::{largest, smallest};
use bitfusion_search::{Arch, Space};
use burn::prelude::Device;
use serde::{Deserialize, Serialize};

use crate::data::DataSet;
use crate::eval::{self, EvalConfig, FinetuneConfig};
use crate::policy::{self, set_uniform};
use crate::quant::Quantizer;
use crate::rng::Rng;
use crate::supernet::Supernet;

/// One measured subnet.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pair {
    pub index: usize,
    /// Canonical architecture text (with its bits; they are meaningless when not `quantized`).
    pub arch: String,
    pub quantized: bool,
    pub finetune_steps: usize,
    /// Validation accuracy (0..1).
    pub accuracy: f64,
    pub seconds: f64,
    /// How the bits were drawn: `fp32`, `uniform` or `mixed` (empty in older files).
    #[serde(default)]
    pub policy: String,
    /// The same architecture's fp32 validation accuracy (quantized pairs of the paired design).
    #[serde(default)]
    pub fp32_accuracy: Option<f64>,
}

/// Which subnets and policies a pair run measures (every choice a function of the seed and the
/// pair's index, so a run resumes and extends exactly).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairPlan {
    pub seed: u64,
    pub quantized: bool,
    /// Consecutive pairs sharing one architecture (quantized pairs; fp32 pairs use 1).
    pub policies_per_arch: usize,
    /// Probability that a policy other than a group's first is uniform precision.
    pub extra_uniform: f64,
    /// Concentration of the per-network bit mixtures.
    pub dirichlet_alpha: f64,
}

impl PairPlan {
    pub fn fp32(seed: u64) -> PairPlan {
        PairPlan { seed, quantized: false, policies_per_arch: 1, extra_uniform: 0.0, dirichlet_alpha: policy::DIRICHLET_ALPHA }
    }

    pub fn quantized(seed: u64) -> PairPlan {
        PairPlan { seed, quantized: true, policies_per_arch: 4, extra_uniform: 0.1, dirichlet_alpha: policy::DIRICHLET_ALPHA }
    }

    /// The architecture group of pair `index`.
    pub fn group(&self, index: usize) -> usize {
        index / self.policies_per_arch.max(1)
    }

    /// The architecture of group `group` at the space's largest bits: every tenth group the
    /// largest (even tens) or the smallest (odd tens) architecture; three groups in ten random
    /// architectures at full depth (every stage at its most blocks: where searches under loose
    /// and medium budgets go, and rare among uniform draws; BatchQuant samples 30% full depth);
    /// the rest random.
    pub fn group_arch(&self, space: &Space, group: usize) -> Arch {
        let top = *space.bits.iter().max().expect("a space has bits");
        let mut a = match group % 20 {
            0 => largest(space, top),
            10 => smallest(space, top),
            g => {
                let mut state = Rng::stream(self.seed, group as u64).next_u64();
                let mut a = Arch::random(space, &mut state);
                if g % 10 >= 7 {
                    a = full_depth(space, &a, &mut Rng::new(state));
                }
                a
            }
        };
        set_uniform(&mut a, top, top);
        a
    }

    /// Pair `index`: its architecture with bits, and the policy's name.
    pub fn pair(&self, space: &Space, index: usize) -> (Arch, &'static str) {
        let mut a = self.group_arch(space, self.group(index));
        if !self.quantized {
            return (a, "fp32");
        }
        let mut rng = Rng::stream(self.seed ^ 0xb175_9011_c1e5, index as u64);
        let first = index % self.policies_per_arch.max(1) == 0;
        if first || rng.unit() < self.extra_uniform {
            policy::uniform(&mut a, space, &mut rng);
            return (a, "uniform");
        }
        policy::mixed(&mut a, space, self.dirichlet_alpha, &mut rng);
        (a, "mixed")
    }
}

/// `a` with every stage at its largest depth, the added blocks' kernels and widths random.
fn full_depth(space: &Space, a: &Arch, rng: &mut Rng) -> Arch {
    let slots = space.slots();
    let mut out = a.clone();
    for (s, st) in space.stages.iter().enumerate() {
        let depth = *st.depths.iter().max().expect("depths") as usize;
        while out.stages[s].len() < depth {
            let i = out.stages[s].len();
            let slot = slots.iter().find(|x| x.stage == s && x.index == i).expect("a slot per block");
            let mut b = out.stages[s][0];
            b.kernel = rng.pick(&space.kernels);
            b.mid = rng.pick(&slot.mids);
            out.stages[s].push(b);
        }
    }
    out
}

/// How to sample pairs.
#[derive(Clone, Debug)]
pub struct SampleConfig {
    pub n: usize,
    pub plan: PairPlan,
    /// Quantization-aware fine-tuning steps per quantized pair (0: none, the default).
    pub finetune: FinetuneConfig,
    pub quantizer: Quantizer,
    pub eval: EvalConfig,
}

/// The pairs already in a pair file (a torn last line from an interruption is dropped).
pub fn read_pairs(path: &Path) -> Result<Vec<Pair>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        match serde_json::from_str::<Pair>(l) {
            Ok(p) => out.push(p),
            Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => break,
            Err(e) => return Err(format!("{}:{}: not a pair record ({e})", path.display(), i + 1)),
        }
    }
    Ok(out)
}

/// Measure pairs `0..cfg.n` of `cfg.plan`, appending each to `out` as a JSON line as soon as it is
/// measured; pairs already in `out` are skipped (resume). `net` lives on the autodiff `device`.
pub fn sample_pairs(
    net: &Supernet,
    space: &Space,
    data: &DataSet,
    cfg: &SampleConfig,
    out: &Path,
    device: &Device,
    progress: &mut dyn FnMut(usize, usize, &Pair),
) -> Result<Vec<Pair>, String> {
    crate::train::check_data(space, data)?;
    let mut pairs = read_pairs(out)?;
    let done: std::collections::HashSet<usize> = pairs.iter().map(|p| p.index).collect();
    // fp32 accuracies of the groups already measured (resume without measuring them again).
    let mut fp32: HashMap<usize, f64> = pairs.iter().filter_map(|p| p.fp32_accuracy.map(|a| (cfg.plan.group(p.index), a))).collect();
    // Rewrite the valid prefix (atomically) so a torn line never stays in the file.
    let text: String = pairs.iter().map(|p| serde_json::to_string(p).expect("pair serialises") + "\n").collect();
    bitfusion_util::create_parent(out).and_then(|_| bitfusion_util::write_atomic(out, text.as_bytes())).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut file = std::fs::OpenOptions::new().append(true).open(out).map_err(|e| format!("{}: {e}", out.display()))?;
    for index in 0..cfg.n {
        if done.contains(&index) {
            continue;
        }
        let (arch, policy) = cfg.plan.pair(space, index);
        let start = Instant::now();
        let q = cfg.plan.quantized;
        let fp32_accuracy = if q {
            let g = cfg.plan.group(index);
            Some(match fp32.get(&g) {
                Some(a) => *a,
                None => {
                    let a = eval::accuracy(net, space, &arch, data, &data.valid, &cfg.eval, None, device);
                    fp32.insert(g, a);
                    a
                }
            })
        } else {
            None
        };
        let accuracy = if q && cfg.finetune.steps > 0 {
            eval::finetuned_accuracy(net, space, &arch, data, &data.valid, &cfg.eval, &cfg.finetune, cfg.plan.seed ^ index as u64, device)
        } else {
            eval::accuracy(net, space, &arch, data, &data.valid, &cfg.eval, q.then_some(cfg.quantizer), device)
        };
        let pair = Pair {
            index,
            arch: arch.to_text(),
            quantized: q,
            finetune_steps: if q { cfg.finetune.steps } else { 0 },
            accuracy,
            seconds: start.elapsed().as_secs_f64(),
            policy: policy.to_string(),
            fp32_accuracy,
        };
        writeln!(file, "{}", serde_json::to_string(&pair).expect("pair serialises")).map_err(|e| format!("{}: {e}", out.display()))?;
        file.flush().map_err(|e| format!("{}: {e}", out.display()))?;
        progress(index, cfg.n, &pair);
        pairs.push(pair);
    }
    pairs.sort_by_key(|p| p.index);
    Ok(pairs)
}

/// Minimum, median and maximum of the accuracies.
pub fn spread(pairs: &[Pair]) -> Option<(f64, f64, f64)> {
    let mut a: Vec<f64> = pairs.iter().map(|p| p.accuracy).collect();
    if a.is_empty() {
        return None;
    }
    a.sort_by(f64::total_cmp);
    Some((a[0], a[a.len() / 2], a[a.len() - 1]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(a: &Arch) -> Vec<u32> {
        a.stages.iter().flatten().flat_map(|b| [b.pw_w, b.pw_a, b.dw_w, b.dw_a]).collect()
    }

    #[test]
    fn pairs_without_fine_tuning_are_deterministic_for_a_seed() {
        use crate::train::{toy, train};
        let d = std::env::temp_dir().join(format!("bf-pairs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let data = toy::data(&d.join("data"), 320, 64);
        let space = toy::space();
        let mut cfg = toy::config(4);
        cfg.phases.truncate(1);
        let dev = crate::device();
        let t = train(&space, &data, &cfg, &d.join("t.ckpt"), &dev, None, &mut |_| {}).unwrap();
        let sc = SampleConfig {
            n: 6,
            plan: PairPlan::quantized(3),
            finetune: FinetuneConfig { steps: 0, ..FinetuneConfig::default() },
            quantizer: Quantizer::MseClip,
            eval: EvalConfig { calibration_images: 64, eval_images: Some(64), batch: 32 },
        };
        let run = |name: &str, threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| sample_pairs(&t.net, &space, &data, &sc, &d.join(name), &dev, &mut |_, _, _| {}).unwrap())
        };
        let strip = |ps: Vec<Pair>| ps.into_iter().map(|p| (p.index, p.arch, p.accuracy, p.fp32_accuracy, p.policy)).collect::<Vec<_>>();
        let (a, b) = (strip(run("a.jsonl", 2)), strip(run("b.jsonl", 1)));
        assert_eq!(a, b, "same seed, same pairs, on 2 and 1 threads");
        assert_eq!(a.len(), 6);
        assert!(a.iter().all(|p| p.3.is_some()), "quantized pairs carry their group's fp32 accuracy");
        // Groups of 4 share their fp32 accuracy.
        assert_eq!(a[0].3, a[3].3);
        // Another seed draws other policies.
        let other = SampleConfig { plan: PairPlan::quantized(4), ..sc.clone() };
        let c = strip(sample_pairs(&t.net, &space, &data, &other, &d.join("c.jsonl"), &dev, &mut |_, _, _| {}).unwrap());
        assert_ne!(a.iter().map(|p| p.1.clone()).collect::<Vec<_>>(), c.iter().map(|p| p.1.clone()).collect::<Vec<_>>());
    }

    #[test]
    fn the_bit_policy_sampler_covers_uniform_and_healthy_networks() {
        let space = Space::load("micro").unwrap();
        let plan = PairPlan::quantized(7);
        let n = 2000;
        let pairs: Vec<(Arch, &str)> = (0..n).map(|i| plan.pair(&space, i)).collect();
        let uniform = pairs.iter().filter(|(a, p)| {
            let s = slots(a);
            *p == "uniform" && s.iter().all(|b| *b == s[0])
        });
        let n_uniform = uniform.count();
        assert!(n_uniform >= n / 4 && n_uniform < n * 2 / 5, "{n_uniform} uniform of {n}");
        // Every uniform width appears among the uniform policies.
        for b in &space.bits {
            assert!(pairs.iter().any(|(a, p)| *p == "uniform" && slots(a)[0] == *b), "no uniform {b}-bit network");
        }
        // Mixed policies: a sizeable share without any 2-bit slot (i.i.d. bits: 0.2%), and a
        // sizeable share with many 2-bit slots.
        let mixed: Vec<Vec<u32>> = pairs.iter().filter(|(_, p)| *p == "mixed").map(|(a, _)| slots(a)).collect();
        let no2 = mixed.iter().filter(|s| !s.contains(&2)).count() as f64 / mixed.len() as f64;
        let many2 = mixed.iter().filter(|s| s.iter().filter(|b| **b == 2).count() * 2 >= s.len()).count() as f64 / mixed.len() as f64;
        assert!(no2 > 0.12 && no2 < 0.4, "mixed without a 2-bit slot: {no2}");
        assert!(many2 > 0.1, "mixed with half their slots at 2 bits: {many2}");
        // Groups share their architecture; the largest and smallest architectures are among them.
        for g in 0..50 {
            let base = pairs[g * 4].0.clone();
            for k in 1..4 {
                let a = &pairs[g * 4 + k].0;
                assert_eq!(a.stages.iter().map(|s| s.iter().map(|b| (b.kernel, b.mid)).collect::<Vec<_>>()).collect::<Vec<_>>(), base.stages.iter().map(|s| s.iter().map(|b| (b.kernel, b.mid)).collect::<Vec<_>>()).collect::<Vec<_>>());
            }
        }
        let top = *space.bits.iter().max().unwrap();
        assert_eq!(plan.group_arch(&space, 0), largest(&space, top));
        assert_eq!(plan.group_arch(&space, 10), smallest(&space, top));
        // Three groups in ten are at full depth (and checked against the space).
        let full = largest(&space, top).stages.iter().map(Vec::len).collect::<Vec<_>>();
        let deep = (0..200).filter(|g| plan.group_arch(&space, *g).stages.iter().map(Vec::len).collect::<Vec<_>>() == full).count();
        assert!((60..=110).contains(&deep), "{deep} full-depth groups of 200");
        for g in 0..200 {
            plan.group_arch(&space, g).check(&space).unwrap();
        }
        // Deterministic for a seed, different for another.
        assert_eq!(plan.pair(&space, 123), PairPlan::quantized(7).pair(&space, 123));
        assert_ne!(plan.pair(&space, 123).0, PairPlan::quantized(8).pair(&space, 123).0);
        // fp32 pairs are at the largest bits.
        let (a, p) = PairPlan::fp32(1).pair(&space, 5);
        assert_eq!(p, "fp32");
        assert!(slots(&a).iter().all(|b| *b == top));
    }
}
