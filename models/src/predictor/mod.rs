//! Accuracy predictors: the map from an architecture with per-layer bits to its validation
//! accuracy that the search queries instead of measuring.
//!
//! Two kinds, one file format (the checkpoint container) and one search interface:
//!
//! * [`Kind::Apq`] ([`apq`]): APQ's predictor, kept faithful as the baseline: a 3-layer MLP on the
//!   one-hot encoding, MSE loss, and predictor transfer (the quantized MLP initialised from the
//!   fp32 one).
//! * [`Kind::Ensemble`] ([`ensemble`]): the ranking predictor: numeric bit and architecture
//!   features ([`features`]) beside the one-hot encoding, the quantized accuracy learnt as a
//!   residual over an fp32 predictor whose prediction is also an input, MSE plus a pairwise
//!   ranking loss, five members whose spread the search may penalise ([`Pessimistic`]).
//!   [`Kind::Ridge`] is the same predictor with one ridge regression per part: the sanity
//!   baseline.
//!
//! [`data`] turns pair files into samples and hold-outs by architecture; [`experiment`] measures
//! held-out metrics over seeds and redoes APQ's transfer experiment (Figure 7) for both kinds.

pub mod apq;
pub mod data;
pub mod dense;
pub mod ensemble;
pub mod experiment;
pub mod features;

use std::path::Path;

use bitfusion_search::evolution::Predictor as SearchPredictor;
use bitfusion_search::{Arch, Space};
use serde::{Deserialize, Serialize};

pub use apq::{AccuracyPredictor, PredictorConfig, PredictorHeader, features, train_predictor};
pub use dense::{Ceiling, Mlp};
pub use data::{PairData, QuantSample, arch_key, pair_data};
pub use ensemble::{Base, EnsembleConfig, EnsemblePredictor, Learner, Pessimistic, train_fp32, train_quant};
pub use experiment::{ExperimentConfig, HoldoutRow, Kind, Spread, TransferPoint, holdout_report, transfer_curves, transfer_experiment};

use crate::checkpoint::{CheckpointError, Container};
use crate::pairs::Pair;

/// Held-out quality of a predictor.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub rmse: f64,
    pub kendall_tau: f64,
    /// Fraction of held-out pairs of architectures ranked in the right order.
    pub pairwise_accuracy: f64,
    pub train: usize,
    pub test: usize,
}

/// Kendall's tau-a and the pairwise ranking accuracy of predictions against truth (pairs tied in
/// truth are skipped; a tie in prediction counts as wrong).
pub fn rank_metrics(pred: &[f64], truth: &[f64]) -> (f64, f64) {
    let (mut concord, mut discord, mut total) = (0i64, 0i64, 0usize);
    for i in 0..pred.len() {
        for j in i + 1..pred.len() {
            let (p, t) = (pred[i] - pred[j], truth[i] - truth[j]);
            if t == 0.0 {
                continue;
            }
            total += 1;
            if p * t > 0.0 {
                concord += 1;
            } else if p * t < 0.0 {
                discord += 1;
            }
        }
    }
    if total == 0 {
        return (0.0, 0.0);
    }
    ((concord - discord) as f64 / total as f64, concord as f64 / total as f64)
}

/// (architecture, accuracy) samples from pairs of one kind, checked against `space`.
pub fn samples(space: &Space, pairs: &[Pair], quantized: bool) -> Result<Vec<(Arch, f64)>, String> {
    pairs
        .iter()
        .filter(|p| p.quantized == quantized)
        .map(|p| Arch::parse(&p.arch, space).map(|a| (a, p.accuracy)).map_err(|e| format!("pair {}: {e}", p.index)))
        .collect()
}

/// A saved predictor of either kind.
#[derive(Clone, Debug)]
pub enum LoadedPredictor {
    Apq(Box<AccuracyPredictor>),
    Ensemble(Box<EnsemblePredictor>),
}

/// A predictor file's JSON header: the kind's header under `key`, beside its space's TOML.
pub(super) fn file_header<H: Serialize>(key: &str, header: &H, space: &Space) -> String {
    let v = serde_json::json!({ key: header, "space_toml": toml::to_string(space).expect("space serialises") });
    serde_json::to_string_pretty(&v).expect("header")
}

/// The kind's header (under `key`; `what` names the kind in the error) and the space of a loaded
/// predictor file (`origin` names it in errors).
pub(super) fn read_file_header<H: serde::de::DeserializeOwned>(c: &Container, origin: &str, key: &str, what: &str) -> Result<(H, Space), CheckpointError> {
    let bad = |m: String| CheckpointError(format!("{origin}: {m}"));
    let v: serde_json::Value = serde_json::from_str(&c.header).map_err(|e| bad(format!("bad header ({e})")))?;
    let header = serde_json::from_value(v[key].clone()).map_err(|e| bad(format!("not a {what} file ({e})")))?;
    let space = Space::from_toml(v["space_toml"].as_str().unwrap_or_default(), origin).map_err(|e| bad(e.0))?;
    Ok((header, space))
}

impl LoadedPredictor {
    /// Load a predictor file of either kind (the header says which).
    /// A file of another kind (a LUT, a pair file, a supernet checkpoint) is refused naming
    /// what it is.
    pub fn load(path: &Path) -> Result<LoadedPredictor, CheckpointError> {
        let origin = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| CheckpointError(format!("{origin}: {e}")))?;
        let wrong = |what: &str| {
            CheckpointError(format!(
                "{origin}: this is {what}, not a predictor (make one with `bitfusion predictor train`)"
            ))
        };
        if !bytes.starts_with(crate::checkpoint::MAGIC) {
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(4096)]);
            return Err(if text.starts_with("{\"header\":{\"format\":\"bitfusion-lut") {
                wrong("a lookup table (from `bitfusion lut build`)")
            } else if text.starts_with("{\"index\":") && text.contains("\"arch\":") {
                wrong("a pair file (from `bitfusion supernet sample`)")
            } else {
                wrong("not a bitfusion file of any kind")
            });
        }
        let c = Container::from_bytes(&bytes, &origin)?;
        let v: serde_json::Value = serde_json::from_str(&c.header).map_err(|e| CheckpointError(format!("{origin}: bad header ({e})")))?;
        if v.get("ensemble").is_some() {
            Ok(LoadedPredictor::Ensemble(Box::new(EnsemblePredictor::from_container(&c, &origin)?)))
        } else if v.get("predictor").is_some() {
            Ok(LoadedPredictor::Apq(Box::new(AccuracyPredictor::from_container(&c, &origin)?)))
        } else {
            Err(wrong("a supernet checkpoint (from `bitfusion supernet train`)"))
        }
    }

    pub fn space(&self) -> &Space {
        match self {
            LoadedPredictor::Apq(p) => &p.space,
            LoadedPredictor::Ensemble(p) => &p.space,
        }
    }

    /// Reads the bits (predicts quantized accuracy).
    pub fn quantized(&self) -> bool {
        match self {
            LoadedPredictor::Apq(p) => p.header.quantized,
            LoadedPredictor::Ensemble(p) => p.header.quantized,
        }
    }

    /// The held-out metrics recorded at training.
    pub fn metrics(&self) -> &Metrics {
        match self {
            LoadedPredictor::Apq(p) => &p.header.metrics,
            LoadedPredictor::Ensemble(p) => &p.header.metrics,
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            LoadedPredictor::Apq(_) => Kind::Apq,
            LoadedPredictor::Ensemble(p) if p.header.learner == "ridge" => Kind::Ridge,
            LoadedPredictor::Ensemble(_) => Kind::Ensemble,
        }
    }

    pub fn predict_one(&self, arch: &Arch) -> f64 {
        match self {
            LoadedPredictor::Apq(p) => p.predict_one(arch),
            LoadedPredictor::Ensemble(p) => p.predict_one(arch),
        }
    }
}

impl SearchPredictor for LoadedPredictor {
    fn predict(&self, archs: &[Arch]) -> Vec<f64> {
        archs.iter().map(|a| self.predict_one(a)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_metrics_count_concordant_pairs() {
        assert_eq!(rank_metrics(&[1.0, 2.0, 3.0], &[0.1, 0.2, 0.3]), (1.0, 1.0));
        assert_eq!(rank_metrics(&[3.0, 2.0, 1.0], &[0.1, 0.2, 0.3]), (-1.0, 0.0));
        let (tau, pw) = rank_metrics(&[1.0, 3.0, 2.0], &[0.1, 0.2, 0.3]);
        assert!((tau - 1.0 / 3.0).abs() < 1e-12 && (pw - 2.0 / 3.0).abs() < 1e-12);
    }
}
