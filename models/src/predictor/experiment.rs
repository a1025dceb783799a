//! The predictor evaluation: held-out metrics of every kind over several seeds (each seed its own
//! hold-out of architectures and its own training seed), and APQ's transfer experiment (Figure 7):
//! pairwise accuracy of quantized predictors trained from scratch and transferred from an fp32
//! predictor, against the number of quantized training pairs, over seeds, on one fixed hold-out.
//!
//! Hold-outs are by architecture ([`PairData::holdout_keys`]): a held-out architecture's quantized
//! pairs, fp32 pairs and fp32 measurements are all outside every training set, fp32 predictors
//! included.

use std::collections::BTreeSet;

use bitfusion_search::{Arch, Space};
use serde::{Deserialize, Serialize};

use super::apq::{AccuracyPredictor, PredictorConfig, train_predictor};
use super::data::{PairData, QuantSample, arch_key};
use super::ensemble::{EnsembleConfig, EnsemblePredictor, metrics, train_fp32, train_quant};
use super::{Metrics, rank_metrics};
use crate::rng::shuffle;

/// The predictor kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// APQ's MLP on the one-hot encoding, transferred (the faithful baseline).
    Apq,
    /// The ranking ensemble (residual over its fp32 part).
    Ensemble,
    /// The ranking predictor's features with ridge regression (sanity baseline).
    Ridge,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Apq => "apq",
            Kind::Ensemble => "ensemble",
            Kind::Ridge => "ridge",
        }
    }
}

impl std::str::FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Kind, String> {
        match s {
            "apq" => Ok(Kind::Apq),
            "ensemble" => Ok(Kind::Ensemble),
            "ridge" => Ok(Kind::Ridge),
            _ => Err(format!("'{s}' is not a predictor kind (apq, ensemble, ridge)")),
        }
    }
}

/// Mean, standard deviation, minimum and maximum of a quantity over seeds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    pub mean: f64,
    pub std: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(v: &[f64]) -> Spread {
        let (mean, std) = super::ensemble::mean_std(v);
        let min = v.iter().copied().fold(f64::INFINITY, f64::min);
        let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if v.is_empty() { Spread::default() } else { Spread { mean, std, min, max } }
    }
}

/// Settings of the evaluation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExperimentConfig {
    /// Seeds (hold-outs and trainings).
    pub seeds: usize,
    /// Fraction of each kind's pairs held out ...
    pub test_fraction: f64,
    /// ... and at least this many quantized pairs (when the data has them).
    pub min_test_quant: usize,
    pub apq: PredictorConfig,
    pub ensemble: EnsembleConfig,
    /// Ridge penalty of [`Kind::Ridge`] (on standardised features, in units of squared target
    /// standard deviations).
    pub ridge_lambda: f64,
    pub kinds: Vec<Kind>,
}

impl Default for ExperimentConfig {
    fn default() -> ExperimentConfig {
        ExperimentConfig {
            seeds: 5,
            test_fraction: 0.25,
            min_test_quant: 200,
            apq: PredictorConfig { holdout: 0.0, ..PredictorConfig::default() },
            ensemble: EnsembleConfig { holdout: 0.0, ..EnsembleConfig::default() },
            ridge_lambda: 10.0,
            kinds: vec![Kind::Apq, Kind::Ensemble, Kind::Ridge],
        }
    }
}

/// Held-out quality of one kind on one target over seeds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HoldoutRow {
    pub kind: Kind,
    /// `fp32` or `quantized`.
    pub target: String,
    pub rmse: Spread,
    pub kendall_tau: Spread,
    pub pairwise_accuracy: Spread,
    /// Mean training and held-out sample counts.
    pub train: f64,
    pub test: f64,
}

/// One trained pair of predictors (fp32, quantized) of a kind.
enum Trained {
    Apq(Box<(AccuracyPredictor, AccuracyPredictor)>),
    Ensemble(Box<(EnsemblePredictor, EnsemblePredictor)>),
}

impl Trained {
    fn fp32(&self, a: &Arch) -> f64 {
        match self {
            Trained::Apq(p) => p.0.predict_one(a),
            Trained::Ensemble(p) => p.0.predict_one(a),
        }
    }

    fn quant(&self, a: &Arch) -> f64 {
        match self {
            Trained::Apq(p) => p.1.predict_one(a),
            Trained::Ensemble(p) => p.1.predict_one(a),
        }
    }
}

fn plain(q: &[QuantSample]) -> Vec<(Arch, f64)> {
    q.iter().map(|s| (s.arch.clone(), s.accuracy)).collect()
}

/// The kind's ensemble settings with `seed` and no internal hold-out.
fn ens_cfg(cfg: &ExperimentConfig, kind: Kind, seed: u64) -> EnsembleConfig {
    let e = EnsembleConfig { holdout: 0.0, seed, ..cfg.ensemble.clone() };
    if kind == Kind::Ridge { e.ridge(cfg.ridge_lambda) } else { e }
}

/// Train a kind's fp32 and transferred quantized predictors.
fn train_kind(space: &Space, kind: Kind, fp32: &[(Arch, f64)], quant: &[QuantSample], cfg: &ExperimentConfig, seed: u64) -> Result<Trained, String> {
    Ok(match kind {
        Kind::Apq => {
            let c = PredictorConfig { holdout: 0.0, seed, ..cfg.apq.clone() };
            let f = train_predictor(space, fp32, false, None, &c)?;
            let q = train_predictor(space, &plain(quant), true, Some(&f), &c)?;
            Trained::Apq(Box::new((f, q)))
        }
        Kind::Ensemble | Kind::Ridge => {
            let c = ens_cfg(cfg, kind, seed);
            let f = train_fp32(space, fp32, &c)?;
            let q = train_quant(space, quant, Some(&f), &c)?;
            Trained::Ensemble(Box::new((f, q)))
        }
    })
}

/// Held-out metrics of each kind of `cfg.kinds` on fp32 and quantized accuracy, over
/// `cfg.seeds` hold-outs. `progress` hears each (seed, kind) as it finishes.
pub fn holdout_report(
    space: &Space,
    data: &PairData,
    cfg: &ExperimentConfig,
    progress: &mut dyn FnMut(usize, Kind, &Metrics, &Metrics),
) -> Result<Vec<HoldoutRow>, String> {
    if data.quant.is_empty() && data.fp32.is_empty() {
        return Err("no pairs to evaluate on".into());
    }
    // (kind, target) -> per-seed metrics.
    let mut runs: Vec<(Kind, Vec<Metrics>, Vec<Metrics>)> = cfg.kinds.iter().map(|k| (*k, Vec::new(), Vec::new())).collect();
    for s in 0..cfg.seeds.max(1) {
        let test = data.holdout_keys(cfg.test_fraction, cfg.min_test_quant, s as u64);
        let fp_train = data.fp32_table(|k| !test.contains(k));
        let fp_test = data.fp32_table(|k| test.contains(k));
        let (q_train, q_test) = data.split_quant(&test);
        let truth_f: Vec<f64> = fp_test.iter().map(|x| x.1).collect();
        let truth_q: Vec<f64> = q_test.iter().map(|x| x.accuracy).collect();
        for (kind, mf, mq) in runs.iter_mut() {
            let t = train_kind(space, *kind, &fp_train, &q_train, cfg, s as u64 + 1)?;
            let pf: Vec<f64> = fp_test.iter().map(|x| t.fp32(&x.0)).collect();
            let pq: Vec<f64> = q_test.iter().map(|x| t.quant(&x.arch)).collect();
            mf.push(metrics(&pf, &truth_f, fp_train.len()));
            mq.push(metrics(&pq, &truth_q, q_train.len()));
            progress(s, *kind, mf.last().expect("pushed"), mq.last().expect("pushed"));
        }
    }
    let row = |kind: Kind, target: &str, m: &[Metrics]| HoldoutRow {
        kind,
        target: target.into(),
        rmse: Spread::of(&m.iter().map(|x| x.rmse).collect::<Vec<_>>()),
        kendall_tau: Spread::of(&m.iter().map(|x| x.kendall_tau).collect::<Vec<_>>()),
        pairwise_accuracy: Spread::of(&m.iter().map(|x| x.pairwise_accuracy).collect::<Vec<_>>()),
        train: m.iter().map(|x| x.train as f64).sum::<f64>() / m.len().max(1) as f64,
        test: m.iter().map(|x| x.test as f64).sum::<f64>() / m.len().max(1) as f64,
    };
    Ok(runs.iter().flat_map(|(k, mf, mq)| [row(*k, "fp32", mf), row(*k, "quantized", mq)]).collect())
}

/// One point of the transfer experiment: pairwise accuracy and Kendall tau of quantized
/// predictors trained on `quantized_pairs` pairs, from scratch and transferred from an fp32
/// predictor, on one fixed held-out set: means over seeds, and the min/max band.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TransferPoint {
    pub quantized_pairs: usize,
    pub scratch_pairwise: f64,
    pub transferred_pairwise: f64,
    pub scratch_tau: f64,
    pub transferred_tau: f64,
    /// `apq` or `ensemble` (empty in older files: `apq`).
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub seeds: usize,
    /// Held-out quantized pairs.
    #[serde(default)]
    pub test: usize,
    /// The band over seeds (None in older files).
    #[serde(default)]
    pub scratch_pairwise_min: Option<f64>,
    #[serde(default)]
    pub scratch_pairwise_max: Option<f64>,
    #[serde(default)]
    pub transferred_pairwise_min: Option<f64>,
    #[serde(default)]
    pub transferred_pairwise_max: Option<f64>,
    #[serde(default)]
    pub scratch_tau_min: Option<f64>,
    #[serde(default)]
    pub scratch_tau_max: Option<f64>,
    #[serde(default)]
    pub transferred_tau_min: Option<f64>,
    #[serde(default)]
    pub transferred_tau_max: Option<f64>,
}

/// Trains a quantized predictor on the given pairs (transferred or not, with a seed) and returns
/// its predictions for the held-out pairs.
type FitFn<'a> = dyn FnMut(&[QuantSample], bool, u64) -> Result<Vec<f64>, String> + 'a;

/// The curve of one kind: for each size `n` (at least 4, at most the pool) and seed, `fit` trains
/// on `n` pairs drawn from `pool` (from scratch: `false`; transferred: `true`) and returns its
/// predictions for `test`.
fn curve(
    kind: &str,
    pool: &[QuantSample],
    test: &[QuantSample],
    sizes: &[usize],
    seeds: usize,
    fit: &mut FitFn,
    progress: &mut dyn FnMut(&TransferPoint),
) -> Result<Vec<TransferPoint>, String> {
    let truth: Vec<f64> = test.iter().map(|s| s.accuracy).collect();
    let mut out = Vec::new();
    for &n in sizes.iter().filter(|&&n| n >= 4 && n <= pool.len()) {
        // [scratch, transferred] x [pairwise, tau] per seed.
        let mut v = [[Vec::new(), Vec::new()], [Vec::new(), Vec::new()]];
        for seed in 0..seeds.max(1) {
            let mut pick: Vec<usize> = (0..pool.len()).collect();
            shuffle(&mut pick, seed as u64 * 7919 + n as u64);
            let train: Vec<QuantSample> = pick[..n].iter().map(|&i| pool[i].clone()).collect();
            for (t, transferred) in [false, true].into_iter().enumerate() {
                let pred = fit(&train, transferred, seed as u64 + 1)?;
                let (tau, pw) = rank_metrics(&pred, &truth);
                v[t][0].push(pw);
                v[t][1].push(tau);
            }
        }
        let s = |x: &Vec<f64>| Spread::of(x);
        let (sp, st, tp, tt) = (s(&v[0][0]), s(&v[0][1]), s(&v[1][0]), s(&v[1][1]));
        out.push(TransferPoint {
            quantized_pairs: n,
            scratch_pairwise: sp.mean,
            transferred_pairwise: tp.mean,
            scratch_tau: st.mean,
            transferred_tau: tt.mean,
            kind: kind.into(),
            seeds: seeds.max(1),
            test: test.len(),
            scratch_pairwise_min: Some(sp.min),
            scratch_pairwise_max: Some(sp.max),
            transferred_pairwise_min: Some(tp.min),
            transferred_pairwise_max: Some(tp.max),
            scratch_tau_min: Some(st.min),
            scratch_tau_max: Some(st.max),
            transferred_tau_min: Some(tt.min),
            transferred_tau_max: Some(tt.max),
        });
        progress(out.last().expect("pushed"));
    }
    Ok(out)
}

/// APQ's Figure 7 with APQ's predictor and a given fp32 predictor: for each `n`, pairwise
/// accuracy of predictors trained on `n` quantized pairs from scratch and transferred from
/// `fp32`, on held-out quantized pairs (a quarter of the architectures, whole, fixed by
/// `cfg.seed`). `fp32` may have seen the held-out architectures; [`transfer_curves`] trains its
/// own fp32 predictors without them.
pub fn transfer_experiment(
    space: &Space,
    fp32: &AccuracyPredictor,
    quant: &[(Arch, f64)],
    sizes: &[usize],
    seeds: usize,
    cfg: &PredictorConfig,
) -> Result<Vec<TransferPoint>, String> {
    let data = PairData {
        fp32: Vec::new(),
        quant: quant.iter().map(|(a, y)| QuantSample { arch: a.clone(), accuracy: *y, fp32_accuracy: None, policy: String::new() }).collect(),
    };
    let test_keys = data.holdout_keys(0.25, 4, cfg.seed ^ 0x7a);
    let (pool, test) = data.split_quant(&test_keys);
    curve(
        "apq",
        &pool,
        &test,
        sizes,
        seeds,
        &mut |train, transferred, seed| {
            let c = PredictorConfig { holdout: 0.0, seed, ..cfg.clone() };
            let p = train_predictor(space, &plain(train), true, transferred.then_some(fp32), &c)?;
            Ok(test.iter().map(|s| p.predict_one(&s.arch)).collect())
        },
        &mut |_| {},
    )
}

/// APQ's Figure 7 redone for each kind of `cfg.kinds` (ridge skipped): one hold-out of
/// architectures (seed `cfg.ensemble.seed`), an fp32 predictor per kind trained on every fp32
/// measurement outside it, then for each `n` of `sizes` and each of `cfg.seeds` seeds quantized
/// predictors on `n` pairs drawn from the training side, from scratch and transferred.
pub fn transfer_curves(
    space: &Space,
    data: &PairData,
    sizes: &[usize],
    cfg: &ExperimentConfig,
    progress: &mut dyn FnMut(&TransferPoint),
) -> Result<Vec<TransferPoint>, String> {
    let test_keys: BTreeSet<String> = data.holdout_keys(cfg.test_fraction, cfg.min_test_quant, cfg.ensemble.seed ^ 0x7a);
    let (pool, test) = data.split_quant(&test_keys);
    if test.is_empty() || pool.len() < 4 {
        return Err(format!("{} quantized pairs are too few for the transfer experiment", data.quant.len()));
    }
    let fp_train = data.fp32_table(|k| !test_keys.contains(k));
    debug_assert!(fp_train.iter().all(|(a, _)| !test_keys.contains(&arch_key(a))));
    let mut out = Vec::new();
    for kind in cfg.kinds.iter().filter(|k| **k != Kind::Ridge) {
        let pts = match kind {
            Kind::Apq => {
                let c = PredictorConfig { holdout: 0.0, ..cfg.apq.clone() };
                let f = train_predictor(space, &fp_train, false, None, &c)?;
                curve(
                    "apq",
                    &pool,
                    &test,
                    sizes,
                    cfg.seeds,
                    &mut |train, transferred, seed| {
                        let p = train_predictor(space, &plain(train), true, transferred.then_some(&f), &PredictorConfig { seed, ..c.clone() })?;
                        Ok(test.iter().map(|s| p.predict_one(&s.arch)).collect())
                    },
                    progress,
                )?
            }
            _ => {
                let c = ens_cfg(cfg, *kind, cfg.ensemble.seed);
                let f = train_fp32(space, &fp_train, &c)?;
                curve(
                    kind.name(),
                    &pool,
                    &test,
                    sizes,
                    cfg.seeds,
                    &mut |train, transferred, seed| {
                        let p = train_quant(space, train, transferred.then_some(&f), &EnsembleConfig { seed, ..c.clone() })?;
                        Ok(test.iter().map(|s| p.predict_one(&s.arch)).collect())
                    },
                    progress,
                )?
            }
        };
        out.extend(pts);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::predictor::data::synthetic;
    use crate::predictor::dense::FitConfig;
    use crate::predictor::ensemble::Learner;

    fn quick() -> ExperimentConfig {
        let fit = FitConfig { hidden: 16, depth: 1, epochs: 15, batch: 32, lr: 3e-3, weight_decay: 1e-4, rank_weight: 1.0 };
        ExperimentConfig {
            seeds: 2,
            min_test_quant: 40,
            apq: PredictorConfig { hidden: 16, epochs: 10, holdout: 0.0, ..PredictorConfig::default() },
            ensemble: EnsembleConfig { members: 2, fp32: Learner::Mlp(fit.clone()), quant: Learner::Mlp(fit), holdout: 0.0, ..EnsembleConfig::default() },
            ..ExperimentConfig::default()
        }
    }

    #[test]
    fn the_transfer_experiment_has_a_point_per_kind_and_size_with_bands() {
        let space = Space::load("micro").unwrap();
        let d = synthetic(&space, 40, 0.005, 2);
        let mut heard = 0;
        let pts = transfer_curves(&space, &d, &[2, 8, 20, 100_000], &quick(), &mut |_| heard += 1).unwrap();
        // Sizes below 4 or above the pool are skipped; ridge is not a transfer kind.
        assert_eq!(
            pts.iter().map(|p| (p.kind.as_str(), p.quantized_pairs)).collect::<Vec<_>>(),
            vec![("apq", 8), ("apq", 20), ("ensemble", 8), ("ensemble", 20)]
        );
        assert_eq!(heard, 4);
        for p in &pts {
            assert_eq!(p.seeds, 2);
            assert!(p.test >= 40);
            let within = |lo: Option<f64>, m: f64, hi: Option<f64>| lo.is_some_and(|l| l <= m) && hi.is_some_and(|h| m <= h);
            assert!(within(p.scratch_pairwise_min, p.scratch_pairwise, p.scratch_pairwise_max), "{p:?}");
            assert!(within(p.transferred_pairwise_min, p.transferred_pairwise, p.transferred_pairwise_max), "{p:?}");
            assert!(within(p.scratch_tau_min, p.scratch_tau, p.scratch_tau_max), "{p:?}");
            assert!(within(p.transferred_tau_min, p.transferred_tau, p.transferred_tau_max), "{p:?}");
        }
        // Older records (without the band fields) still read.
        let old = r#"{"quantized_pairs":10,"scratch_pairwise":0.6,"transferred_pairwise":0.7,"scratch_tau":0.2,"transferred_tau":0.4}"#;
        let p: TransferPoint = serde_json::from_str(old).unwrap();
        assert_eq!((p.quantized_pairs, p.kind.as_str(), p.scratch_pairwise_max), (10, "", None));
    }

    #[test]
    fn the_holdout_report_has_a_row_per_kind_and_target() {
        let space = Space::load("micro").unwrap();
        let d = synthetic(&space, 30, 0.005, 3);
        let mut runs = 0;
        let rows = holdout_report(&space, &d, &ExperimentConfig { kinds: vec![Kind::Ridge, Kind::Ensemble], ..quick() }, &mut |_, _, _, _| runs += 1).unwrap();
        assert_eq!(runs, 4);
        assert_eq!(
            rows.iter().map(|r| (r.kind, r.target.as_str())).collect::<Vec<_>>(),
            vec![(Kind::Ridge, "fp32"), (Kind::Ridge, "quantized"), (Kind::Ensemble, "fp32"), (Kind::Ensemble, "quantized")]
        );
        for r in &rows {
            assert!(r.test > 0.0 && r.train > 0.0);
            assert!(r.kendall_tau.min <= r.kendall_tau.mean && r.kendall_tau.mean <= r.kendall_tau.max);
        }
        assert_eq!("ridge".parse::<Kind>(), Ok(Kind::Ridge));
        assert!("mlp".parse::<Kind>().unwrap_err().contains("not a predictor kind"));
    }
}
