//! Measured re-ranking: every search method hands its best few candidates (by predicted accuracy)
//! to the real evaluator, the quantization-aware supernet (each candidate recalibrated and
//! measured on validation images), and the best measured one becomes the method's winner, then
//! measured once on the test split. BatchQuant re-scores its final population the same way
//! (`shared/reference/search/QUANTIZED_SEARCH.md` 4); giving every method the same number of
//! candidates keeps the comparison fair, and the predicted-only winner (the first candidate) is
//! kept beside it so a report shows what re-ranking adds.
//!
//! Measurements are cached by architecture text in a JSON file, so a resumed run measures nothing
//! twice.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bitfusion_search::{Arch, Space};
use burn::prelude::Device;
use serde::{Deserialize, Serialize};

use crate::data::DataSet;
use crate::eval::{self, EvalConfig};
use crate::quant::Quantizer;
use crate::supernet::Supernet;

/// The index of the best measured candidate (`measured[i]` for candidate `i`, candidates in
/// predicted order): the highest measurement, the earlier (better predicted) one on ties.
pub fn pick(measured: &[f64]) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, m) in measured.iter().enumerate() {
        if best.is_none_or(|b| *m > measured[b]) {
            best = Some(i);
        }
    }
    best
}

/// Measure `candidates` (predicted order) with `measure` and pick the best: `(winner index,
/// measurements)`.
pub fn rerank(candidates: &[Arch], measure: &mut dyn FnMut(&Arch) -> f64) -> Option<(usize, Vec<f64>)> {
    let measured: Vec<f64> = candidates.iter().map(|a| measure(a)).collect();
    pick(&measured).map(|w| (w, measured))
}

/// Which split a measurement is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    Valid,
    Test,
}

/// One architecture's measured accuracies.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    pub valid: Option<f64>,
    pub test: Option<f64>,
}

/// The real evaluator with its cache file: quantized accuracy of an architecture (its own bits),
/// batch norm and steps recalibrated on `calibration_images` training images, on the first
/// `valid_images` validation images or the whole test split.
pub struct Measurer<'a> {
    pub net: &'a Supernet,
    pub space: &'a Space,
    pub data: &'a DataSet,
    pub device: Device,
    pub quantizer: Quantizer,
    pub calibration_images: usize,
    pub valid_images: usize,
    cache: BTreeMap<String, Measured>,
    path: Option<PathBuf>,
    /// Measurements made (not cached) by this measurer.
    pub made: usize,
}

impl<'a> Measurer<'a> {
    /// A measurer whose cache lives in `path` (read now if it exists, written after every new
    /// measurement).
    #[allow(clippy::too_many_arguments)]
    pub fn new(net: &'a Supernet, space: &'a Space, data: &'a DataSet, device: Device, quantizer: Quantizer, calibration_images: usize, valid_images: usize, path: Option<&Path>) -> Result<Measurer<'a>, String> {
        let cache = match path {
            Some(p) if p.exists() => {
                let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
                serde_json::from_str(&text).map_err(|e| format!("{}: not a measurement cache ({e}); delete it to measure again", p.display()))?
            }
            _ => BTreeMap::new(),
        };
        Ok(Measurer { net, space, data, device, quantizer, calibration_images, valid_images, cache, path: path.map(Path::to_path_buf), made: 0 })
    }

    /// The measured accuracy of `arch` on `split` (cached).
    pub fn measure(&mut self, arch: &Arch, split: Split) -> Result<f64, String> {
        let key = arch.to_text();
        let have = self.cache.get(&key).and_then(|m| if split == Split::Valid { m.valid } else { m.test });
        if let Some(v) = have {
            return Ok(v);
        }
        let (images, cfg) = match split {
            Split::Valid => (&self.data.valid, EvalConfig { calibration_images: self.calibration_images, eval_images: Some(self.valid_images), batch: 500 }),
            Split::Test => (&self.data.test, EvalConfig { calibration_images: self.calibration_images, eval_images: None, batch: 500 }),
        };
        let v = eval::accuracy(self.net, self.space, arch, self.data, images, &cfg, Some(self.quantizer), &self.device);
        let entry = self.cache.entry(key).or_default();
        match split {
            Split::Valid => entry.valid = Some(v),
            Split::Test => entry.test = Some(v),
        }
        self.made += 1;
        if let Some(p) = &self.path {
            let text = serde_json::to_string_pretty(&self.cache).expect("measurements serialise");
            bitfusion_util::create_parent(p).and_then(|_| bitfusion_util::write_atomic(p, text.as_bytes())).map_err(|e| format!("{}: {e}", p.display()))?;
        }
        Ok(v)
    }

    /// Re-rank `candidates` (predicted order) on the validation images: `(winner index,
    /// validation accuracies)`.
    pub fn rerank(&mut self, candidates: &[Arch]) -> Result<Option<(usize, Vec<f64>)>, String> {
        let mut err = None;
        let out = rerank(candidates, &mut |a| match self.measure(a, Split::Valid) {
            Ok(v) => v,
            Err(e) => {
                err = Some(e);
                f64::NEG_INFINITY
            }
        });
        match err {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn re_ranking_picks_the_measured_best_of_the_top_k() {
        let space = Space::load("micro").unwrap();
        let mut state = 3;
        let candidates: Vec<Arch> = (0..6).map(|_| Arch::random(&space, &mut state)).collect();
        // A "real evaluator" that disagrees with the predicted order: the fourth is best.
        let truth = [0.71, 0.69, 0.74, 0.80, 0.62, 0.80];
        let mut calls = 0;
        let (w, measured) = rerank(&candidates, &mut |a| {
            calls += 1;
            truth[candidates.iter().position(|c| c == a).unwrap()]
        })
        .unwrap();
        assert_eq!(calls, 6, "every candidate is measured once");
        assert_eq!(w, 3, "the best measured wins; on a tie the better predicted (earlier) one");
        assert_eq!(measured, truth.to_vec());
        assert_eq!(pick(&[0.5]), Some(0));
        assert_eq!(pick(&[]), None);
    }
}
