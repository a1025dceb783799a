//! The ranking predictor: an ensemble of small networks (or one ridge regression) on APQ's one-hot
//! encoding plus numeric features of the architecture and the bits ([`super::features`]).
//!
//! * The fp32 part maps an architecture to its fp32 accuracy.
//! * The quantized part, when it has an fp32 part (the "transferred" predictor), learns the
//!   residual: quantized accuracy minus the fp32 accuracy, which is also an input. At prediction
//!   the fp32 accuracy is always the fp32 part's prediction; in training it is, by default
//!   ([`Base::Measured`]), the pair's measured fp32 accuracy (the paired design records it), a
//!   cleaner target than the in-sample prediction. Without an fp32 part ("from scratch") the
//!   quantized part learns the accuracy from the features alone.
//! * Each member trains with its own seed (optionally on a bootstrap resample of the
//!   architecture groups) on mean squared error plus a pairwise logistic ranking loss (of the
//!   totals, base + residual, for a residual part), with Adam and L2 weight decay; output layers
//!   start at zero, so a residual part starts as its fp32 part. A prediction is the members' mean;
//!   their standard deviation measures disagreement, which [`Pessimistic`] subtracts for the
//!   search.
//!
//! Inference is plain Rust on the extracted weights: pure, thread-safe, deterministic.
//!
//! The measurements behind these choices, and what did not help, are in the notes of
//! `models/examples/predictor_eval.rs`.

use std::path::Path;

use bitfusion_search::evolution::Predictor as SearchPredictor;
use bitfusion_search::{Arch, Space};
use serde::{Deserialize, Serialize};

use super::data::{QuantSample, arch_key};
use super::dense::{Affine, Ceiling, Dense, FitConfig, Scaler, fit_mlp, fit_ridge};
use super::features::{FeatureSet, Features, Featurizer};
use super::{Metrics, rank_metrics};
use crate::checkpoint::{CheckpointError, Container};
use crate::rng::{Rng, shuffle};

/// How one part of the predictor learns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Learner {
    /// An ensemble of ReLU networks.
    Mlp(FitConfig),
    /// One ridge regression with this penalty on standardised features.
    Ridge { lambda: f64 },
}

fn yes() -> bool {
    true
}

/// What the quantized part's residual is taken against during training.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Base {
    /// The fp32 part's prediction of the architecture.
    #[default]
    Predicted,
    /// The measured fp32 accuracy of the pair's architecture (the prediction when unmeasured).
    Measured,
}

/// Settings of the ranking predictor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EnsembleConfig {
    /// Networks per part (ridge: always one).
    pub members: usize,
    pub fp32: Learner,
    pub quant: Learner,
    /// Input features (the fp32 part never reads bits).
    pub features: FeatureSet,
    /// Each member trains on a bootstrap resample of the architecture groups.
    pub bootstrap: bool,
    /// The fp32 accuracy a transferred quantized part trains against (its residual base and
    /// input): the fp32 part's prediction, or the group's measured fp32 accuracy where the
    /// pair has one (a training signal only; predictions always use the fp32 part).
    #[serde(default)]
    pub base: Base,
    /// A residual part's ranking loss orders base + residual (the quantized accuracies) rather
    /// than the residuals.
    #[serde(default)]
    pub rank_totals: bool,
    /// A transferred quantized part also reads the fp32 prediction as an input.
    #[serde(default = "yes")]
    pub fp32_input: bool,
    /// A soft ceiling on a transferred quantized part's residual (quantized minus fp32 accuracy;
    /// MLP learners, in training as at prediction). Quantization only adds noise to a network,
    /// so a quantized network measures at most its fp32 accuracy up to evaluation noise; without
    /// the bound the networks extrapolated residuals of +3 to +5 points on bit patterns unlike
    /// any pair, and the searches converged on exactly those (predicted 94.8%, measured 89.8%).
    #[serde(default)]
    pub residual_ceiling: Option<Ceiling>,
    /// Fraction of architecture groups held out for the header's metrics (0: none).
    pub holdout: f64,
    pub seed: u64,
}

impl Default for EnsembleConfig {
    fn default() -> EnsembleConfig {
        let fit = FitConfig { hidden: 64, depth: 2, epochs: 100, batch: 32, lr: 1e-3, weight_decay: 1e-4, rank_weight: 1.0 };
        EnsembleConfig {
            members: 5,
            // Few architectures (hundreds) for many one-hot inputs: stronger weight decay.
            fp32: Learner::Mlp(FitConfig { weight_decay: 0.03, ..fit.clone() }),
            quant: Learner::Mlp(fit),
            features: FeatureSet { onehot: true, numeric: true, bits: true },
            // Bootstrap members disagree where the pairs are sparse (policies unlike any pair),
            // which the searches penalise; members differing only in their seeds agreed there.
            bootstrap: true,
            base: Base::Measured,
            rank_totals: true,
            fp32_input: true,
            // Residuals of at most 0 within half a point: the 8-bit pairs measure their fp32
            // accuracy within about that much.
            residual_ceiling: Some(Ceiling { cap: 0.0, width: 0.005 }),
            holdout: 0.2,
            seed: 1,
        }
    }
}

impl EnsembleConfig {
    /// The same settings with ridge regression for both parts (the sanity baseline).
    pub fn ridge(&self, lambda: f64) -> EnsembleConfig {
        EnsembleConfig { members: 1, fp32: Learner::Ridge { lambda }, quant: Learner::Ridge { lambda }, ..self.clone() }
    }
}

/// What one part reads and how its outputs map back to accuracy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PartHeader {
    pub features: FeatureSet,
    /// Leading one-hot input columns (not standardised).
    pub onehot: usize,
    pub inputs: usize,
    /// The fp32 part's mean prediction is the last input.
    pub fp32_input: bool,
    /// Outputs are added to the fp32 part's prediction.
    pub residual: bool,
    /// The soft bound on each member's output (accuracy units), when it has one.
    #[serde(default)]
    pub ceiling: Option<Ceiling>,
    /// Targets are normalised: value = mean + scale * output.
    pub y_mean: f64,
    pub y_scale: f64,
    /// Layer widths of each member, inputs first.
    pub members: Vec<Vec<usize>>,
}

/// One trained part: its scaler and members.
#[derive(Clone, Debug, PartialEq)]
pub struct Part {
    pub header: PartHeader,
    pub scaler: Scaler,
    pub members: Vec<Dense>,
}

impl Part {
    /// The standardised input row of `f` (and the fp32 prediction when the part reads it).
    fn input(&self, f: &Features, fp32: Option<f64>) -> Vec<f32> {
        let (mut x, _) = self.header.features.assemble(f);
        if self.header.fp32_input {
            x.push(fp32.unwrap_or(0.0) as f32);
        }
        self.scaler.apply(&mut x);
        x
    }

    /// Each member's value for a standardised input row.
    fn values(&self, x: &[f32]) -> Vec<f64> {
        let h = &self.header;
        self.members
            .iter()
            .map(|m| {
                let v = h.y_mean + h.y_scale * m.forward(x) as f64;
                h.ceiling.map_or(v, |c| c.apply(v))
            })
            .collect()
    }
}

/// The file header of a saved ranking predictor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EnsembleHeader {
    pub space: String,
    pub space_hash: String,
    /// Predicts quantized accuracy (reads the bits).
    pub quantized: bool,
    /// `mlp` or `ridge`.
    pub learner: String,
    pub config: EnsembleConfig,
    /// Held-out metrics of this training (`config.holdout`; an fp32 part given to a quantized
    /// predictor may have seen the held-out architectures, so these can be optimistic; the
    /// experiment functions of [`super::experiment`] hold out consistently).
    pub metrics: Metrics,
    pub fp32: Option<PartHeader>,
    pub quant: Option<PartHeader>,
}

/// A trained ranking predictor.
#[derive(Clone, Debug)]
pub struct EnsemblePredictor {
    pub header: EnsembleHeader,
    pub space: Space,
    featurizer: Featurizer,
    fp32: Option<Part>,
    quant: Option<Part>,
}

/// The architecture keys of `archs` split into (train, test) indices: whole keys, a seeded
/// `fraction` of them held out (none when `fraction` is 0; at least one key stays for training).
fn split_by_key(archs: &[&Arch], fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let keys: Vec<String> = archs.iter().map(|a| arch_key(a)).collect();
    let mut uniq: Vec<&String> = keys.iter().collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    shuffle(&mut uniq, seed ^ 0x40_1d);
    let n_test = ((uniq.len() as f64 * fraction).round() as usize).min(uniq.len().saturating_sub(1));
    let test: std::collections::BTreeSet<&String> = uniq[..n_test].iter().copied().collect();
    (0..archs.len()).partition(|i| !test.contains(&keys[*i]))
}

/// A bootstrap resample of `rows` by architecture group (whole groups drawn with replacement).
fn bootstrap(rows: &[usize], keys: &[String], seed: u64) -> Vec<usize> {
    let mut groups: std::collections::BTreeMap<&str, Vec<usize>> = std::collections::BTreeMap::new();
    for &i in rows {
        groups.entry(keys[i].as_str()).or_default().push(i);
    }
    let g: Vec<&Vec<usize>> = groups.values().collect();
    let mut r = Rng::new(seed);
    (0..g.len()).flat_map(|_| g[r.below(g.len())].iter().copied()).collect()
}

/// Everything one part's training needs.
struct PartData<'a> {
    features: &'a [Features],
    /// The fp32 prediction of each row (input and residual base), when the part has an fp32 part.
    base: Option<&'a [f64]>,
    /// The base is also an input.
    base_input: bool,
    targets: &'a [f64],
    keys: &'a [String],
    rows: &'a [usize],
}

/// Train one part.
fn train_part(d: &PartData, fs: FeatureSet, learner: &Learner, members: usize, boot: bool, rank_totals: bool, ceiling: Option<Ceiling>, seed: u64) -> Result<Part, String> {
    if d.rows.len() < 4 {
        return Err(format!("{} samples are too few to train a predictor (need at least 4)", d.rows.len()));
    }
    let mut x: Vec<Vec<f32>> = Vec::with_capacity(d.rows.len());
    let mut onehot = 0;
    for &i in d.rows {
        let (mut v, k) = fs.assemble(&d.features[i]);
        if let Some(b) = d.base.filter(|_| d.base_input) {
            v.push(b[i] as f32);
        }
        onehot = k;
        x.push(v);
    }
    let y: Vec<f64> = d.rows.iter().map(|&i| d.targets[i] - d.base.map_or(0.0, |b| b[i])).collect();
    let scaler = Scaler::fit(&x, onehot);
    x.iter_mut().for_each(|r| scaler.apply(r));
    let y_mean = y.iter().sum::<f64>() / y.len() as f64;
    let y_scale = (y.iter().map(|v| (v - y_mean).powi(2)).sum::<f64>() / y.len() as f64).sqrt().max(1e-4);
    let ys: Vec<f32> = y.iter().map(|v| ((v - y_mean) / y_scale) as f32).collect();
    let n_members = if matches!(learner, Learner::Ridge { .. }) { 1 } else { members.max(1) };
    // Residual parts of MLPs only (ridge is the unbounded linear baseline).
    let ceiling = ceiling.filter(|_| d.base.is_some() && matches!(learner, Learner::Mlp(_)));
    let mut nets = Vec::with_capacity(n_members);
    for m in 0..n_members {
        let mseed = Rng::stream(seed, m as u64).next_u64();
        let local: Vec<usize> = if boot && n_members > 1 {
            bootstrap(&(0..d.rows.len()).collect::<Vec<_>>(), &d.rows.iter().map(|&i| d.keys[i].clone()).collect::<Vec<_>>(), mseed)
        } else {
            (0..d.rows.len()).collect()
        };
        let xs: Vec<Vec<f32>> = local.iter().map(|&i| x[i].clone()).collect();
        let yl: Vec<f32> = local.iter().map(|&i| ys[i]).collect();
        // The residual's base in target units, so the ranking loss orders base + residual.
        let off: Option<Vec<f32>> = d.base.filter(|_| rank_totals).map(|b| local.iter().map(|&i| (b[d.rows[i]] / y_scale) as f32).collect());
        nets.push(match learner {
            Learner::Mlp(fit) => fit_mlp(&xs, &yl, off.as_deref(), ceiling.map(|c| c.standardised(y_mean, y_scale)), fit, mseed)?,
            Learner::Ridge { lambda } => fit_ridge(&xs, &yl, *lambda)?,
        });
    }
    let header = PartHeader {
        features: fs,
        onehot,
        inputs: x[0].len(),
        fp32_input: d.base.is_some() && d.base_input,
        residual: d.base.is_some(),
        ceiling,
        y_mean,
        y_scale,
        members: nets.iter().map(|n| n.layers.iter().map(|l| l.rows).chain([1]).collect()).collect(),
    };
    Ok(Part { header, scaler, members: nets })
}

fn learner_name(l: &Learner) -> &'static str {
    match l {
        Learner::Mlp(_) => "mlp",
        Learner::Ridge { .. } => "ridge",
    }
}

/// Held-out metrics of predictions against truth.
pub fn metrics(pred: &[f64], truth: &[f64], train: usize) -> Metrics {
    let rmse = (pred.iter().zip(truth).map(|(a, b)| (a - b).powi(2)).sum::<f64>() / truth.len().max(1) as f64).sqrt();
    let (kendall_tau, pairwise_accuracy) = rank_metrics(pred, truth);
    Metrics { rmse, kendall_tau, pairwise_accuracy, train, test: truth.len() }
}

/// Train the fp32 ranking predictor on (architecture, fp32 accuracy) samples.
pub fn train_fp32(space: &Space, samples: &[(Arch, f64)], cfg: &EnsembleConfig) -> Result<EnsemblePredictor, String> {
    let fz = Featurizer::new(space);
    let feats: Vec<Features> = samples.iter().map(|(a, _)| fz.features(space, a)).collect();
    let keys: Vec<String> = samples.iter().map(|(a, _)| arch_key(a)).collect();
    let targets: Vec<f64> = samples.iter().map(|s| s.1).collect();
    let (train, test) = split_by_key(&samples.iter().map(|s| &s.0).collect::<Vec<_>>(), cfg.holdout, cfg.seed);
    let fs = FeatureSet { bits: false, ..cfg.features };
    let d = PartData { features: &feats, base: None, base_input: false, targets: &targets, keys: &keys, rows: &train };
    let part = train_part(&d, fs, &cfg.fp32, cfg.members, cfg.bootstrap, false, None, cfg.seed ^ 0xf932)?;
    let mut p = EnsemblePredictor {
        header: EnsembleHeader {
            space: space.name.clone(),
            space_hash: space.hash(),
            quantized: false,
            learner: learner_name(&cfg.fp32).into(),
            config: cfg.clone(),
            metrics: Metrics::default(),
            fp32: Some(part.header.clone()),
            quant: None,
        },
        space: space.clone(),
        featurizer: fz,
        fp32: Some(part),
        quant: None,
    };
    let pred: Vec<f64> = test.iter().map(|&i| p.predict_one(&samples[i].0)).collect();
    let truth: Vec<f64> = test.iter().map(|&i| targets[i]).collect();
    p.header.metrics = metrics(&pred, &truth, train.len());
    Ok(p)
}

/// Train the quantized ranking predictor: on the residual of `fp32` (an fp32 ranking predictor of
/// the same space) when given ("transferred"), from the features alone otherwise ("scratch").
pub fn train_quant(space: &Space, samples: &[QuantSample], fp32: Option<&EnsemblePredictor>, cfg: &EnsembleConfig) -> Result<EnsemblePredictor, String> {
    let base_part = match fp32 {
        Some(f) if f.header.space_hash != space.hash() => {
            return Err("the fp32 predictor was trained on another space".into());
        }
        Some(f) => Some(f.fp32.clone().ok_or("the fp32 predictor has no fp32 part")?),
        None => None,
    };
    let fz = Featurizer::new(space);
    let feats: Vec<Features> = samples.iter().map(|s| fz.features(space, &s.arch)).collect();
    let keys: Vec<String> = samples.iter().map(|s| arch_key(&s.arch)).collect();
    let targets: Vec<f64> = samples.iter().map(|s| s.accuracy).collect();
    let base: Option<Vec<f64>> = base_part.as_ref().map(|p| {
        feats
            .iter()
            .zip(samples)
            .map(|(f, s)| match (cfg.base, s.fp32_accuracy) {
                (Base::Measured, Some(m)) => m,
                _ => mean(&p.values(&p.input(f, None))),
            })
            .collect()
    });
    let (train, test) = split_by_key(&samples.iter().map(|s| &s.arch).collect::<Vec<_>>(), cfg.holdout, cfg.seed);
    let d = PartData { features: &feats, base: base.as_deref(), base_input: cfg.fp32_input, targets: &targets, keys: &keys, rows: &train };
    let part = train_part(&d, cfg.features, &cfg.quant, cfg.members, cfg.bootstrap, cfg.rank_totals, cfg.residual_ceiling, cfg.seed ^ 0x9a47)?;
    let mut p = EnsemblePredictor {
        header: EnsembleHeader {
            space: space.name.clone(),
            space_hash: space.hash(),
            quantized: true,
            learner: learner_name(&cfg.quant).into(),
            config: cfg.clone(),
            metrics: Metrics::default(),
            fp32: base_part.as_ref().map(|b| b.header.clone()),
            quant: Some(part.header.clone()),
        },
        space: space.clone(),
        featurizer: fz,
        fp32: base_part,
        quant: Some(part),
    };
    let pred: Vec<f64> = test.iter().map(|&i| p.predict_one(&samples[i].arch)).collect();
    let truth: Vec<f64> = test.iter().map(|&i| targets[i]).collect();
    p.header.metrics = metrics(&pred, &truth, train.len());
    Ok(p)
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// Mean and (population) standard deviation.
pub fn mean_std(v: &[f64]) -> (f64, f64) {
    let m = mean(v);
    (m, (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len().max(1) as f64).sqrt())
}

impl EnsemblePredictor {
    /// Each member's predicted accuracy (fp32 member i plus quantized member i's residual).
    pub fn predict_members(&self, arch: &Arch) -> Vec<f64> {
        let f = self.featurizer.features(&self.space, arch);
        let fp: Option<Vec<f64>> = self.fp32.as_ref().map(|p| p.values(&p.input(&f, None)));
        let Some(q) = &self.quant else {
            return fp.unwrap_or_default();
        };
        let base = fp.as_ref().map(|v| mean(v));
        let r = q.values(&q.input(&f, base));
        match (&fp, q.header.residual) {
            (Some(fp), true) => r.iter().enumerate().map(|(i, v)| v + fp[i % fp.len()]).collect(),
            _ => r,
        }
    }

    /// Mean and standard deviation of the members' predictions.
    pub fn predict_stats(&self, arch: &Arch) -> (f64, f64) {
        mean_std(&self.predict_members(arch))
    }

    /// The predicted accuracy (members' mean).
    pub fn predict_one(&self, arch: &Arch) -> f64 {
        self.predict_stats(arch).0
    }

    /// The fp32 part's predicted accuracy of the architecture (None without one).
    pub fn predict_fp32(&self, arch: &Arch) -> Option<f64> {
        let p = self.fp32.as_ref()?;
        let f = self.featurizer.features(&self.space, arch);
        Some(mean(&p.values(&p.input(&f, None))))
    }

    /// Save as a checkpoint container (header + weights), atomically.
    pub fn save(&self, path: &Path) -> Result<(), CheckpointError> {
        let mut sections = Vec::new();
        let bytes = |v: &[f32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
        for (role, part) in [("fp32", &self.fp32), ("quant", &self.quant)] {
            let Some(p) = part else { continue };
            sections.push((format!("{role}.mean"), bytes(&p.scaler.mean)));
            sections.push((format!("{role}.std"), bytes(&p.scaler.std)));
            for (m, net) in p.members.iter().enumerate() {
                for (l, a) in net.layers.iter().enumerate() {
                    sections.push((format!("{role}.m{m}.w{l}"), bytes(&a.w)));
                    sections.push((format!("{role}.m{m}.b{l}"), bytes(&a.b)));
                }
            }
        }
        Container { header: super::file_header("ensemble", &self.header, &self.space), sections }.save(path)
    }

    pub fn load(path: &Path) -> Result<EnsemblePredictor, CheckpointError> {
        EnsemblePredictor::from_container(&Container::load(path)?, &path.display().to_string())
    }

    /// The predictor in a loaded container (`origin` names the file in errors).
    pub fn from_container(c: &Container, origin: &str) -> Result<EnsemblePredictor, CheckpointError> {
        let bad = |m: String| CheckpointError(format!("{origin}: {m}"));
        let (header, space): (EnsembleHeader, Space) = super::read_file_header(c, origin, "ensemble", "ranking predictor")?;
        let floats = |name: &str, len: usize| -> Result<Vec<f32>, CheckpointError> {
            let b = c.section(name).ok_or_else(|| bad(format!("no section {name}")))?;
            if b.len() != 4 * len {
                return Err(bad(format!("section {name} has {} bytes, expected {}", b.len(), 4 * len)));
            }
            Ok(b.chunks_exact(4).map(|x| f32::from_le_bytes([x[0], x[1], x[2], x[3]])).collect())
        };
        let part = |role: &str, h: &Option<PartHeader>| -> Result<Option<Part>, CheckpointError> {
            let Some(h) = h else { return Ok(None) };
            let numeric = h.inputs.checked_sub(h.onehot).ok_or_else(|| bad(format!("{role}: more one-hot columns than inputs")))?;
            let scaler = Scaler { onehot: h.onehot, mean: floats(&format!("{role}.mean"), numeric)?, std: floats(&format!("{role}.std"), numeric)? };
            let mut members = Vec::new();
            for (m, dims) in h.members.iter().enumerate() {
                if dims.first() != Some(&h.inputs) || dims.last() != Some(&1) {
                    return Err(bad(format!("{role} member {m}: layer widths {dims:?} do not map {} inputs to 1 output", h.inputs)));
                }
                let layers = dims
                    .windows(2)
                    .enumerate()
                    .map(|(l, d)| {
                        Ok(Affine {
                            w: floats(&format!("{role}.m{m}.w{l}"), d[0] * d[1])?,
                            b: floats(&format!("{role}.m{m}.b{l}"), d[1])?,
                            rows: d[0],
                            cols: d[1],
                        })
                    })
                    .collect::<Result<Vec<_>, CheckpointError>>()?;
                members.push(Dense { layers });
            }
            Ok(Some(Part { header: h.clone(), scaler, members }))
        };
        let fp32 = part("fp32", &header.fp32)?;
        let quant = part("quant", &header.quant)?;
        if fp32.is_none() && quant.is_none() {
            return Err(bad("the predictor has no part".into()));
        }
        let featurizer = Featurizer::new(&space);
        Ok(EnsemblePredictor { header, space, featurizer, fp32, quant })
    }
}

impl SearchPredictor for EnsemblePredictor {
    fn predict(&self, archs: &[Arch]) -> Vec<f64> {
        archs.iter().map(|a| self.predict_one(a)).collect()
    }
}

/// The search's view of an ensemble that penalises disagreement: mean − `k` × standard deviation
/// of the members' predictions.
#[derive(Clone, Copy, Debug)]
pub struct Pessimistic<'a> {
    pub ensemble: &'a EnsemblePredictor,
    pub k: f64,
}

impl SearchPredictor for Pessimistic<'_> {
    fn predict(&self, archs: &[Arch]) -> Vec<f64> {
        archs
            .iter()
            .map(|a| {
                let (m, s) = self.ensemble.predict_stats(a);
                m - self.k * s
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::predictor::data::{PairData, synthetic};
    use rayon::prelude::*;

    fn small() -> EnsembleConfig {
        let fit = FitConfig { hidden: 32, depth: 2, epochs: 60, batch: 32, lr: 2e-3, weight_decay: 1e-4, rank_weight: 1.0 };
        EnsembleConfig { members: 3, fp32: Learner::Mlp(fit.clone()), quant: Learner::Mlp(fit), holdout: 0.0, ..EnsembleConfig::default() }
    }

    fn split(d: &PairData) -> (Vec<(Arch, f64)>, Vec<QuantSample>, Vec<QuantSample>) {
        let test = d.holdout_keys(0.25, 0, 3);
        let (train, held) = d.split_quant(&test);
        (d.fp32_table(|k| !test.contains(k)), train, held)
    }

    #[test]
    fn learns_a_known_function_of_bits_and_architecture() {
        let space = Space::load("micro").unwrap();
        let d = synthetic(&space, 200, 0.002, 5);
        let (fp, train, held) = split(&d);
        // Members on the whole training set (bootstrap resamples, the default, are tested below:
        // they give up a little accuracy for a spread that means something).
        let cfg = EnsembleConfig { bootstrap: false, ..small() };
        let f = train_fp32(&space, &fp, &cfg).unwrap();
        let q = train_quant(&space, &train, Some(&f), &cfg).unwrap();
        let pred: Vec<f64> = held.iter().map(|s| q.predict_one(&s.arch)).collect();
        let truth: Vec<f64> = held.iter().map(|s| s.accuracy).collect();
        let m = metrics(&pred, &truth, train.len());
        assert!(m.test >= 150 && m.kendall_tau > 0.9, "{m:?}");
        // The members disagree somewhat, and the pessimistic view subtracts k standard deviations.
        let (mean, std) = q.predict_stats(&held[0].arch);
        assert!(std > 0.0 && std < 0.1, "{std}");
        let pess = Pessimistic { ensemble: &q, k: 2.0 }.predict(std::slice::from_ref(&held[0].arch))[0];
        assert!((pess - (mean - 2.0 * std)).abs() < 1e-12);
        // Bootstrap members still rank well and disagree more than members that differ in seed only.
        let boot = EnsembleConfig { bootstrap: true, ..small() };
        let qb = train_quant(&space, &train, Some(&train_fp32(&space, &fp, &boot).unwrap()), &boot).unwrap();
        let pred: Vec<f64> = held.iter().map(|s| qb.predict_one(&s.arch)).collect();
        let mb = metrics(&pred, &truth, train.len());
        assert!(mb.kendall_tau > 0.85, "{mb:?}");
        let spread = |p: &EnsemblePredictor| held.iter().map(|s| p.predict_stats(&s.arch).1).sum::<f64>();
        assert!(spread(&qb) > spread(&q), "bootstrap spread {} vs seeds only {}", spread(&qb), spread(&q));
    }

    #[test]
    fn a_residual_ceiling_bounds_every_members_quantized_prediction_by_its_fp32_part() {
        let c = Ceiling { cap: 0.0, width: 0.005 };
        assert!(c.apply(1e6) <= 0.0 && c.apply(0.0) < 0.0 && (c.apply(0.0) + 0.005 * 2f64.ln()).abs() < 1e-12);
        assert!((c.apply(-0.2) + 0.2).abs() < 1e-12, "identity well below the cap");
        let space = Space::load("micro").unwrap();
        // Quantized accuracies 2 points above fp32 in the data: a positive residual to learn.
        let mut d = synthetic(&space, 30, 0.005, 8);
        d.quant.iter_mut().for_each(|s| s.accuracy = s.fp32_accuracy.expect("paired design") + 0.02);
        let (fp, train, held) = split(&d);
        let cfg = EnsembleConfig { members: 2, ..small() };
        let f = train_fp32(&space, &fp, &cfg).unwrap();
        let bounded = train_quant(&space, &train, Some(&f), &cfg).unwrap();
        let free = train_quant(&space, &train, Some(&f), &EnsembleConfig { residual_ceiling: None, ..cfg.clone() }).unwrap();
        let mut above = 0;
        for s in &held {
            let fp32 = f.predict_members(&s.arch);
            for (q, b) in bounded.predict_members(&s.arch).iter().zip(&fp32) {
                assert!(q <= b, "{q} > fp32 {b}");
            }
            above += usize::from(free.predict_one(&s.arch) > f.predict_one(&s.arch));
        }
        assert!(above > held.len() / 2, "without the ceiling the residuals stay positive ({above} of {})", held.len());
    }

    #[test]
    fn predictions_survive_save_load_and_thread_counts_and_training_repeats() {
        let space = Space::load("micro").unwrap();
        let d = synthetic(&space, 40, 0.005, 6);
        let (fp, train, held) = split(&d);
        let cfg = EnsembleConfig { members: 2, ..small() };
        let f = train_fp32(&space, &fp, &cfg).unwrap();
        let q = train_quant(&space, &train, Some(&f), &cfg).unwrap();
        let archs: Vec<Arch> = held.iter().map(|s| s.arch.clone()).collect();
        let direct: Vec<Vec<f64>> = archs.iter().map(|a| q.predict_members(a)).collect();
        // Save and load.
        let path = std::env::temp_dir().join(format!("bf-ens-{}.bin", std::process::id()));
        q.save(&path).unwrap();
        let loaded = EnsemblePredictor::load(&path).unwrap();
        let any = crate::predictor::LoadedPredictor::load(&path).unwrap();
        std::fs::remove_file(&path).ok();
        assert_eq!(loaded.header, q.header);
        assert_eq!(any.kind(), crate::predictor::Kind::Ensemble);
        for (a, m) in archs.iter().zip(&direct) {
            assert_eq!(&loaded.predict_members(a), m);
            assert_eq!(any.predict_one(a), q.predict_one(a));
        }
        // 1 and 2 threads, chunked as the search's evaluator does.
        let on = |threads: usize| -> Vec<f64> {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| archs.par_chunks(3).flat_map_iter(|c| Pessimistic { ensemble: &loaded, k: 1.0 }.predict(c)).collect())
        };
        let one = on(1);
        assert_eq!(one.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), on(2).iter().map(|x| x.to_bits()).collect::<Vec<_>>());
        // Training is a function of the seed.
        let again = train_quant(&space, &train, Some(&f), &cfg).unwrap();
        assert_eq!(archs.iter().map(|a| again.predict_members(a)).collect::<Vec<_>>(), direct);
        let other = train_quant(&space, &train, Some(&f), &EnsembleConfig { seed: 9, ..cfg.clone() }).unwrap();
        assert_ne!(other.predict_members(&archs[0]), direct[0]);
        // An fp32 predictor of another space is refused.
        let tiny = Space::from_toml(bitfusion_search::space::TINY_SPACE, "tiny").unwrap();
        assert!(train_quant(&tiny, &[], Some(&f), &cfg).unwrap_err().contains("another space"));
    }

    #[test]
    fn ridge_is_one_linear_member() {
        let space = Space::load("micro").unwrap();
        let d = synthetic(&space, 40, 0.005, 7);
        let (fp, train, _) = split(&d);
        let cfg = small().ridge(1.0);
        let f = train_fp32(&space, &fp, &cfg).unwrap();
        let q = train_quant(&space, &train, Some(&f), &cfg).unwrap();
        assert_eq!(q.header.learner, "ridge");
        assert_eq!(q.predict_members(&train[0].arch).len(), 1);
        assert_eq!(q.predict_stats(&train[0].arch).1, 0.0);
    }
}
