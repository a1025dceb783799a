//! The APQ baseline predictor (the faithful port): a 3-layer MLP over the architecture's one-hot encoding
//! (`bitfusion_search::arch`), trained with burn. The fp32 variant reads the architecture part;
//! the quantization-aware variant also reads the bit part and is initialised from an fp32
//! predictor (its first layer's architecture columns copied, bit columns zero, so it starts as
//! the fp32 predictor) and fine-tuned on quantized pairs: predictor transfer.
//!
//! Inference runs in plain Rust on the extracted weights: deterministic, thread-safe, and fast
//! enough for evolution (one small matrix-vector product per layer).

use std::path::Path;

use bitfusion_search::evolution::Predictor as SearchPredictor;
use bitfusion_search::{Arch, Space};
use burn::module::{Module, Param};
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::dense::{Mlp, tensor2};
use super::{Metrics, rank_metrics};
use crate::checkpoint::{CheckpointError, Container};
use crate::rng::shuffle;

/// Training settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PredictorConfig {
    pub hidden: usize,
    pub epochs: usize,
    pub batch: usize,
    pub lr: f64,
    /// Fraction of pairs held out for the report.
    pub holdout: f64,
    pub seed: u64,
}

impl Default for PredictorConfig {
    fn default() -> PredictorConfig {
        PredictorConfig { hidden: 400, epochs: 300, batch: 64, lr: 1e-3, holdout: 0.2, seed: 1 }
    }
}

/// The file header of a saved predictor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PredictorHeader {
    pub space: String,
    pub space_hash: String,
    /// Reads the bit encoding (quantization-aware).
    pub quantized: bool,
    pub inputs: usize,
    pub hidden: usize,
    /// Targets are normalised: prediction = mean + scale * output.
    pub mean: f64,
    pub scale: f64,
    pub transferred_from: Option<String>,
    pub config: PredictorConfig,
    pub metrics: Metrics,
}

/// A trained predictor ready for inference.
#[derive(Clone, Debug)]
pub struct AccuracyPredictor {
    pub header: PredictorHeader,
    pub space: Space,
    /// Row-major `[in, out]` weights and biases of each layer.
    layers: Vec<(Vec<f32>, Vec<f32>, usize, usize)>,
}

/// Encoding of an architecture: the architecture part, plus the bit part when `quantized`.
pub fn features(space: &Space, arch: &Arch, quantized: bool) -> Vec<f32> {
    let (mut a, b) = arch.encode(space);
    if quantized {
        a.extend(b);
    }
    a
}



fn data_of<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().expect("f32 data")
}

/// Train a predictor on (features, accuracy) samples; `init` transfers from an fp32 predictor.
pub fn train_predictor(
    space: &Space,
    samples: &[(Arch, f64)],
    quantized: bool,
    init: Option<&AccuracyPredictor>,
    cfg: &PredictorConfig,
) -> Result<AccuracyPredictor, String> {
    if samples.len() < 4 {
        return Err(format!("{} pairs are too few to train a predictor (need at least 4)", samples.len()));
    }
    let dev = crate::device();
    let x: Vec<Vec<f32>> = samples.iter().map(|(a, _)| features(space, a, quantized)).collect();
    let inputs = x[0].len();
    // Seeded holdout split.
    let mut idx: Vec<usize> = (0..samples.len()).collect();
    shuffle(&mut idx, cfg.seed ^ 0x40_1d);
    let n_test = ((samples.len() as f64 * cfg.holdout).round() as usize).min(samples.len() - 2);
    let (test, train) = idx.split_at(n_test);
    // Normalisation: the transferred predictor keeps its source's, so its outputs mean the same.
    let (mean, scale) = match init {
        Some(p) => (p.header.mean, p.header.scale),
        None => {
            let ys: Vec<f64> = train.iter().map(|&i| samples[i].1).collect();
            let m = ys.iter().sum::<f64>() / ys.len() as f64;
            let s = (ys.iter().map(|y| (y - m).powi(2)).sum::<f64>() / ys.len() as f64).sqrt().max(1e-3);
            (m, s)
        }
    };
    let dims = [inputs, cfg.hidden, cfg.hidden, 1];
    let mut mlp = Mlp::new(&dims, cfg.seed, false, &dev);
    if let Some(p) = init {
        if p.layers.len() != 3 || p.layers[0].3 != cfg.hidden {
            return Err(format!("--transfer-from: the source predictor has hidden size {}, not {}", p.layers[0].3, cfg.hidden));
        }
        if p.header.space_hash != space.hash() {
            return Err("--transfer-from: the source predictor was trained on another space".into());
        }
        let mut w = Vec::new();
        let mut b = Vec::new();
        for (i, (lw, lb, rows, cols)) in p.layers.iter().enumerate() {
            let mut v = lw.clone();
            let mut r = *rows;
            if i == 0 && inputs > *rows {
                v.extend(std::iter::repeat_n(0.0, (inputs - rows) * cols));
                r = inputs;
            }
            w.push(Param::from_tensor(tensor2(v, r, *cols, &dev)));
            b.push(Param::from_tensor(Tensor::<1>::from_data(TensorData::new(lb.clone(), [*cols]), &dev)));
        }
        mlp = Mlp { w, b };
    }
    let mut opt = AdamConfig::new().init();
    let mut order: Vec<usize> = train.to_vec();
    for epoch in 0..cfg.epochs {
        shuffle(&mut order, cfg.seed ^ ((epoch as u64) << 8));
        for chunk in order.chunks(cfg.batch.max(1)) {
            let xb: Vec<f32> = chunk.iter().flat_map(|&i| x[i].iter().copied()).collect();
            let yb: Vec<f32> = chunk.iter().map(|&i| ((samples[i].1 - mean) / scale) as f32).collect();
            let pred = mlp.forward(tensor2(xb, chunk.len(), inputs, &dev));
            let loss = (pred - tensor2(yb, chunk.len(), 1, &dev)).powf_scalar(2.0).mean();
            let grads = GradientsParams::from_grads(loss.backward(), &mlp);
            mlp = opt.step(cfg.lr, mlp, grads);
        }
    }
    let layers = mlp
        .valid()
        .w
        .iter()
        .zip(mlp.valid().b.iter())
        .map(|(w, b)| {
            let [r, c] = w.val().dims();
            (data_of(w.val()), data_of(b.val()), r, c)
        })
        .collect();
    let mut p = AccuracyPredictor {
        header: PredictorHeader {
            space: space.name.clone(),
            space_hash: space.hash(),
            quantized,
            inputs,
            hidden: cfg.hidden,
            mean,
            scale,
            transferred_from: init.map(|p| format!("{} predictor of {}", if p.header.quantized { "quantized" } else { "fp32" }, p.header.space)),
            config: cfg.clone(),
            metrics: Metrics::default(),
        },
        space: space.clone(),
        layers,
    };
    let tp: Vec<f64> = test.iter().map(|&i| p.predict_one(&samples[i].0)).collect();
    let tt: Vec<f64> = test.iter().map(|&i| samples[i].1).collect();
    let rmse = (tp.iter().zip(&tt).map(|(a, b)| (a - b).powi(2)).sum::<f64>() / tt.len().max(1) as f64).sqrt();
    let (kendall_tau, pairwise_accuracy) = rank_metrics(&tp, &tt);
    p.header.metrics = Metrics { rmse, kendall_tau, pairwise_accuracy, train: train.len(), test: test.len() };
    Ok(p)
}

impl AccuracyPredictor {
    pub fn predict_one(&self, arch: &Arch) -> f64 {
        let mut h: Vec<f32> = features(&self.space, arch, self.header.quantized);
        for (i, (w, b, rows, cols)) in self.layers.iter().enumerate() {
            let mut out = b.clone();
            for (r, &x) in h.iter().enumerate().take(*rows) {
                if x != 0.0 {
                    let row = &w[r * cols..(r + 1) * cols];
                    for (o, wv) in out.iter_mut().zip(row) {
                        *o += x * wv;
                    }
                }
            }
            if i + 1 < self.layers.len() {
                out.iter_mut().for_each(|v| *v = v.max(0.0));
            }
            h = out;
        }
        self.header.mean + self.header.scale * h[0] as f64
    }

    /// Save as a checkpoint container (header + weights), atomically.
    pub fn save(&self, path: &Path) -> Result<(), CheckpointError> {
        let mut sections = Vec::new();
        for (i, (w, b, _, _)) in self.layers.iter().enumerate() {
            sections.push((format!("w{i}"), w.iter().flat_map(|v| v.to_le_bytes()).collect()));
            sections.push((format!("b{i}"), b.iter().flat_map(|v| v.to_le_bytes()).collect()));
        }
        Container { header: super::file_header("predictor", &self.header, &self.space), sections }.save(path)
    }

    pub fn load(path: &Path) -> Result<AccuracyPredictor, CheckpointError> {
        AccuracyPredictor::from_container(&Container::load(path)?, &path.display().to_string())
    }

    /// The predictor in a loaded container (`origin` names the file in errors).
    pub fn from_container(c: &Container, origin: &str) -> Result<AccuracyPredictor, CheckpointError> {
        let bad = |m: String| CheckpointError(format!("{origin}: {m}"));
        let (header, space): (PredictorHeader, Space) = super::read_file_header(c, origin, "predictor", "predictor")?;
        let floats = |name: &str| -> Result<Vec<f32>, CheckpointError> {
            let b = c.section(name).ok_or_else(|| bad(format!("no section {name}")))?;
            Ok(b.chunks_exact(4).map(|x| f32::from_le_bytes(x.try_into().expect("4 bytes"))).collect())
        };
        let dims = [header.inputs, header.hidden, header.hidden, 1];
        let mut layers = Vec::new();
        for (i, d) in dims.windows(2).enumerate() {
            let (w, b) = (floats(&format!("w{i}"))?, floats(&format!("b{i}"))?);
            if w.len() != d[0] * d[1] || b.len() != d[1] {
                return Err(bad(format!("layer {i} has {} weights, expected {}", w.len(), d[0] * d[1])));
            }
            layers.push((w, b, d[0], d[1]));
        }
        Ok(AccuracyPredictor { header, space, layers })
    }
}

impl SearchPredictor for AccuracyPredictor {
    fn predict(&self, archs: &[Arch]) -> Vec<f64> {
        archs.iter().map(|a| self.predict_one(a)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::predictor::transfer_experiment;
    use crate::rng::Rng;

    fn micro() -> Space {
        Space::load("micro").unwrap()
    }

    /// A known function of the encoding: fixed random weights on the architecture part, a
    /// smooth bits effect.
    fn synthetic(space: &Space, a: &Arch, with_bits: bool) -> f64 {
        let (arch, bits) = a.encode(space);
        let mut r = Rng::new(17);
        let mut y: f64 = arch.iter().map(|x| *x as f64 * (r.unit() - 0.3)).sum::<f64>() * 0.01 + 0.8;
        if with_bits {
            let mut r = Rng::new(18);
            y += bits.iter().map(|x| *x as f64 * (r.unit() - 0.5)).sum::<f64>() * 0.01;
            y -= a.stages.iter().flatten().map(|b| 0.02 / b.dw_a as f64 + 0.01 / b.pw_w as f64).sum::<f64>();
        }
        y
    }

    fn archs(space: &Space, n: usize, seed: u64) -> Vec<Arch> {
        let mut s = seed;
        (0..n).map(|_| Arch::random(space, &mut s)).collect()
    }

    #[test]
    fn learns_a_known_function_of_the_encoding() {
        let space = micro();
        let data: Vec<(Arch, f64)> = archs(&space, 2000, 1)
            .into_iter()
            .map(|a| {
                let y = synthetic(&space, &a, true);
                (a, y)
            })
            .collect();
        let cfg = PredictorConfig { hidden: 128, epochs: 200, ..PredictorConfig::default() };
        let p = train_predictor(&space, &data, true, None, &cfg).unwrap();
        assert!(p.header.metrics.kendall_tau > 0.9, "{:?}", p.header.metrics);
        // Save and load give the same predictions.
        let path = std::env::temp_dir().join(format!("bf-pred-{}.bin", std::process::id()));
        p.save(&path).unwrap();
        let q = AccuracyPredictor::load(&path).unwrap();
        for (a, _) in data.iter().take(20) {
            assert_eq!(p.predict_one(a), q.predict_one(a));
        }
    }

    #[test]
    fn transfer_beats_scratch_with_few_quantized_pairs() {
        let space = micro();
        let fp: Vec<(Arch, f64)> = archs(&space, 500, 2)
            .into_iter()
            .map(|a| {
                let y = synthetic(&space, &a, false);
                (a, y)
            })
            .collect();
        let cfg = PredictorConfig { hidden: 64, epochs: 60, ..PredictorConfig::default() };
        let fp32 = train_predictor(&space, &fp, false, None, &cfg).unwrap();
        let q: Vec<(Arch, f64)> = archs(&space, 140, 3)
            .into_iter()
            .map(|a| {
                let y = synthetic(&space, &a, true);
                (a, y)
            })
            .collect();
        let pts = transfer_experiment(&space, &fp32, &q, &[20], 2, &cfg).unwrap();
        assert_eq!(pts.len(), 1);
        assert!(pts[0].transferred_pairwise > pts[0].scratch_pairwise + 0.03, "{pts:?}");
    }
}
