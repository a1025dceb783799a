//! The regressors behind the ranking predictors: standardisation, a small ReLU network trained with
//! burn (mean squared error plus a pairwise logistic ranking loss, Adam with weight decay) and
//! ridge regression (closed form), both evaluated in plain Rust on extracted weights.
//!
//! Inference is a pure function of the weights and the input, computed in one fixed order in `f32`:
//! the same bits on any number of threads.

use burn::module::{Module, Param};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use burn::tensor::activation::{relu, softplus};
use burn::tensor::module::linear;
use serde::{Deserialize, Serialize};

use crate::rng::{Rng, shuffle};

/// Standardisation of the numeric columns (`x' = (x - mean) / std`); the leading `onehot` columns
/// stay 0/1.
#[derive(Clone, Debug, PartialEq)]
pub struct Scaler {
    pub onehot: usize,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Scaler {
    /// Column means and standard deviations of the numeric columns of `rows` (a constant column
    /// gets std 1, so it maps to 0).
    pub fn fit(rows: &[Vec<f32>], onehot: usize) -> Scaler {
        let d = rows.first().map_or(onehot, Vec::len);
        let n = rows.len().max(1) as f64;
        let mut mean = vec![0f64; d - onehot];
        let mut var = vec![0f64; d - onehot];
        for r in rows {
            for (m, x) in mean.iter_mut().zip(&r[onehot..]) {
                *m += *x as f64 / n;
            }
        }
        for r in rows {
            for ((v, m), x) in var.iter_mut().zip(&mean).zip(&r[onehot..]) {
                *v += (*x as f64 - m).powi(2) / n;
            }
        }
        let std = var.iter().map(|v| if v.sqrt() > 1e-6 { v.sqrt() as f32 } else { 1.0 }).collect();
        Scaler { onehot, mean: mean.into_iter().map(|m| m as f32).collect(), std }
    }

    pub fn apply(&self, x: &mut [f32]) {
        for ((v, m), s) in x[self.onehot..].iter_mut().zip(&self.mean).zip(&self.std) {
            *v = (*v - m) / s;
        }
    }
}

/// One affine layer: row-major `[rows (inputs), cols (outputs)]` weights and the bias.
#[derive(Clone, Debug, PartialEq)]
pub struct Affine {
    pub w: Vec<f32>,
    pub b: Vec<f32>,
    pub rows: usize,
    pub cols: usize,
}

/// A feed-forward network with ReLU between layers and one output (one layer: a linear model).
#[derive(Clone, Debug, PartialEq)]
pub struct Dense {
    pub layers: Vec<Affine>,
}

impl Dense {
    /// The output for one input (zero inputs skipped: one-hot columns are mostly zero).
    pub fn forward(&self, x: &[f32]) -> f32 {
        let mut h: Vec<f32> = x.to_vec();
        for (i, l) in self.layers.iter().enumerate() {
            let mut out = l.b.clone();
            for (r, &v) in h.iter().enumerate().take(l.rows) {
                if v != 0.0 {
                    for (o, w) in out.iter_mut().zip(&l.w[r * l.cols..(r + 1) * l.cols]) {
                        *o += v * w;
                    }
                }
            }
            if i + 1 < self.layers.len() {
                out.iter_mut().for_each(|v| *v = v.max(0.0));
            }
            h = out;
        }
        h[0]
    }

    pub fn inputs(&self) -> usize {
        self.layers.first().map_or(0, |l| l.rows)
    }
}

/// Settings of one network's training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FitConfig {
    /// Width of each hidden layer.
    pub hidden: usize,
    /// Hidden layers (0: a linear model trained by gradient descent).
    pub depth: usize,
    pub epochs: usize,
    pub batch: usize,
    pub lr: f64,
    /// Adam's L2 weight decay.
    pub weight_decay: f64,
    /// Weight of the pairwise logistic ranking loss beside the mean squared error (0: MSE only).
    pub rank_weight: f64,
}

/// A ReLU network's parameters as a burn module (weights `[in, out]`), during training: the
/// ensemble's members and APQ's MLP.
#[derive(Module, Debug)]
pub struct Mlp {
    pub w: Vec<Param<Tensor<2>>>,
    pub b: Vec<Param<Tensor<1>>>,
}

pub(super) fn tensor2(v: Vec<f32>, rows: usize, cols: usize, dev: &Device) -> Tensor<2> {
    Tensor::<2>::from_data(TensorData::new(v, [rows, cols]), dev)
}

fn data_of<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap_or_default()
}

impl Mlp {
    /// He-normal layers with zero biases, from `seed`; with `zero_output` the output layer starts
    /// at zero (the network starts at the targets' mean, a residual model at its base).
    pub(super) fn new(dims: &[usize], seed: u64, zero_output: bool, dev: &Device) -> Mlp {
        let mut rng = Rng::new(seed);
        let (mut w, mut b) = (Vec::new(), Vec::new());
        let last = dims.len() - 2;
        for (i, d) in dims.windows(2).enumerate() {
            let std = if zero_output && i == last { 0.0 } else { (2.0 / d[0] as f64).sqrt() };
            let v: Vec<f32> = (0..d[0] * d[1]).map(|_| (rng.normal() * std) as f32).collect();
            w.push(Param::from_tensor(tensor2(v, d[0], d[1], dev)));
            b.push(Param::from_tensor(Tensor::<1>::from_data(TensorData::new(vec![0f32; d[1]], [d[1]]), dev)));
        }
        Mlp { w, b }
    }

    /// The network's output: ReLU between layers, none after the last.
    pub(super) fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let n = self.w.len();
        let mut h = x;
        for (i, (w, b)) in self.w.iter().zip(&self.b).enumerate() {
            h = linear(h, w.val(), Some(b.val()));
            if i + 1 < n {
                h = relu(h);
            }
        }
        h
    }

    fn extract(&self) -> Dense {
        let layers = self
            .w
            .iter()
            .zip(&self.b)
            .map(|(w, b)| {
                let [rows, cols] = w.val().dims();
                Affine { w: data_of(w.val()), b: data_of(b.val()), rows, cols }
            })
            .collect();
        Dense { layers }
    }
}

/// The ranking targets of a batch: `sign(y_i - y_j)` (0 for ties) and the number of ordered pairs.
fn rank_signs(y: &[f32]) -> (Vec<f32>, f32) {
    let mut s = Vec::with_capacity(y.len() * y.len());
    let mut n = 0.0;
    for a in y {
        for b in y {
            let v = if a > b {
                1.0
            } else if a < b {
                -1.0
            } else {
                0.0
            };
            n += v * v;
            s.push(v);
        }
    }
    (s, n)
}

/// A soft upper bound on a network's output: `cap - width * ln(1 + exp((cap - raw) / width))`, a
/// smooth minimum of the raw output and `cap` (equal to the raw output well below the cap, within
/// `width * ln 2` of the cap at it, never above). Both in the units of the output it bounds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ceiling {
    pub cap: f64,
    pub width: f64,
}

impl Ceiling {
    /// The bounded value of a raw output.
    pub fn apply(self, raw: f64) -> f64 {
        let z = (self.cap - raw) / self.width;
        // softplus(z) = max(z, 0) + ln(1 + exp(-|z|)), stable for any z.
        self.cap - self.width * (z.max(0.0) + (-z.abs()).exp().ln_1p())
    }

    /// The same bound on a batch of raw outputs, differentiably.
    fn apply_tensor(self, raw: Tensor<2>) -> Tensor<2> {
        let z = raw.neg().add_scalar(self.cap as f32).div_scalar(self.width as f32);
        let softplus = z.clone().clamp_min(0.0) + z.abs().neg().exp().add_scalar(1.0).log();
        softplus.mul_scalar(-(self.width as f32)).add_scalar(self.cap as f32)
    }

    /// The bound in the standardised units `(value - mean) / scale` a network is trained in.
    pub fn standardised(self, mean: f64, scale: f64) -> Ceiling {
        Ceiling { cap: (self.cap - mean) / scale, width: self.width / scale }
    }
}

/// Train a network on standardised inputs `x` and targets `y` (a function of `seed` alone). The
/// ranking loss orders `output + offset` by `y + offset` (a residual model ranks the totals it
/// adds up to; no offset: zeros). With a `ceiling` the network's output passes through it, in
/// training as at prediction (the caller applies it there: [`Ceiling::apply`]).
pub fn fit_mlp(x: &[Vec<f32>], y: &[f32], offset: Option<&[f32]>, ceiling: Option<Ceiling>, cfg: &FitConfig, seed: u64) -> Result<Dense, String> {
    let d = x.first().map(Vec::len).ok_or("no samples to train on")?;
    if x.len() != y.len() || x.iter().any(|r| r.len() != d) || offset.is_some_and(|o| o.len() != y.len()) {
        return Err(format!("{} inputs of unequal width for {} targets", x.len(), y.len()));
    }
    let dev = crate::device();
    let mut dims = vec![d];
    dims.extend(std::iter::repeat_n(cfg.hidden, cfg.depth));
    dims.push(1);
    let mut net = Mlp::new(&dims, seed, true, &dev);
    let mut adam = AdamConfig::new();
    if cfg.weight_decay > 0.0 {
        adam = adam.with_weight_decay(Some(WeightDecayConfig::new(cfg.weight_decay as f32)));
    }
    let mut opt = adam.init();
    let mut order: Vec<usize> = (0..x.len()).collect();
    for epoch in 0..cfg.epochs {
        shuffle(&mut order, Rng::stream(seed, epoch as u64).next_u64());
        for chunk in order.chunks(cfg.batch.max(2)) {
            let b = chunk.len();
            let xb: Vec<f32> = chunk.iter().flat_map(|&i| x[i].iter().copied()).collect();
            let yb: Vec<f32> = chunk.iter().map(|&i| y[i]).collect();
            let raw = net.forward(tensor2(xb, b, d, &dev));
            let pred = match ceiling {
                Some(c) => c.apply_tensor(raw),
                None => raw,
            };
            let mut loss = (pred.clone() - tensor2(yb.clone(), b, 1, &dev)).powf_scalar(2.0).mean();
            let off: Vec<f32> = chunk.iter().map(|&i| offset.map_or(0.0, |o| o[i])).collect();
            let totals: Vec<f32> = yb.iter().zip(&off).map(|(y, o)| y + o).collect();
            let (signs, n_pairs) = rank_signs(&totals);
            if cfg.rank_weight > 0.0 && n_pairs > 0.0 {
                let t = pred.clone() + tensor2(off, b, 1, &dev);
                let diff = t.clone() - t.transpose();
                let s = tensor2(signs, b, b, &dev);
                let rank = softplus(-(diff * s.clone()), 1.0).mul(s.abs()).sum().div_scalar(n_pairs);
                loss = loss + rank.mul_scalar(cfg.rank_weight);
            }
            let grads = GradientsParams::from_grads(loss.backward(), &net);
            net = opt.step(cfg.lr, net, grads);
        }
    }
    Ok(net.valid().extract())
}

/// Ridge regression with an unpenalised intercept: minimise `|X w + c - y|^2 + lambda |w|^2`
/// (normal equations, Cholesky in `f64`). Returns a one-layer [`Dense`].
pub fn fit_ridge(x: &[Vec<f32>], y: &[f32], lambda: f64) -> Result<Dense, String> {
    let d = x.first().map(Vec::len).ok_or("no samples to fit")?;
    let n = x.len() as f64;
    let xm: Vec<f64> = (0..d).map(|j| x.iter().map(|r| r[j] as f64).sum::<f64>() / n).collect();
    let ym = y.iter().map(|v| *v as f64).sum::<f64>() / n;
    // Centred normal equations (the intercept absorbs the means).
    let mut a = vec![0f64; d * d];
    let mut rhs = vec![0f64; d];
    let mut c = vec![0f64; d];
    for (r, yv) in x.iter().zip(y) {
        for (cj, (v, m)) in c.iter_mut().zip(r.iter().zip(&xm)) {
            *cj = *v as f64 - m;
        }
        let yc = *yv as f64 - ym;
        for i in 0..d {
            if c[i] == 0.0 {
                continue;
            }
            rhs[i] += c[i] * yc;
            let row = &mut a[i * d..(i + 1) * d];
            for (aij, cj) in row.iter_mut().zip(&c) {
                *aij += c[i] * cj;
            }
        }
    }
    for i in 0..d {
        a[i * d + i] += lambda.max(1e-9);
    }
    let w = cholesky_solve(&mut a, &rhs, d).ok_or("ridge: the normal equations are singular")?;
    let b = ym - w.iter().zip(&xm).map(|(w, m)| w * m).sum::<f64>();
    Ok(Dense { layers: vec![Affine { w: w.iter().map(|v| *v as f32).collect(), b: vec![b as f32], rows: d, cols: 1 }] })
}

/// Solve `A x = b` for a symmetric positive definite `A` (`n x n`, row-major, overwritten by its
/// Cholesky factor); None when `A` is not positive definite.
fn cholesky_solve(a: &mut [f64], b: &[f64], n: usize) -> Option<Vec<f64>> {
    for j in 0..n {
        let mut s = a[j * n + j];
        for k in 0..j {
            s -= a[j * n + k] * a[j * n + k];
        }
        if s <= 0.0 {
            return None;
        }
        let l = s.sqrt();
        a[j * n + j] = l;
        for i in j + 1..n {
            let mut s = a[i * n + j];
            for k in 0..j {
                s -= a[i * n + k] * a[j * n + k];
            }
            a[i * n + j] = s / l;
        }
    }
    let mut z = b.to_vec();
    for i in 0..n {
        for k in 0..i {
            z[i] -= a[i * n + k] * z[k];
        }
        z[i] /= a[i * n + i];
    }
    for i in (0..n).rev() {
        for k in i + 1..n {
            z[i] -= a[k * n + i] * z[k];
        }
        z[i] /= a[i * n + i];
    }
    Some(z)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: u64) -> (Vec<Vec<f32>>, Vec<f32>) {
        let mut r = Rng::new(seed);
        let x: Vec<Vec<f32>> = (0..n).map(|_| (0..4).map(|_| r.normal() as f32).collect()).collect();
        let y = x.iter().map(|v| 0.5 * v[0] - v[1] + 0.25 * v[2] * v[2] + 0.1).collect();
        (x, y)
    }

    #[test]
    fn ridge_recovers_a_linear_function() {
        let (x, _) = data(200, 1);
        let y: Vec<f32> = x.iter().map(|v| 2.0 * v[0] - v[3] + 0.5).collect();
        let m = fit_ridge(&x, &y, 1e-6).unwrap();
        for (r, t) in x.iter().zip(&y).take(10) {
            assert!((m.forward(r) - t).abs() < 1e-3, "{} vs {t}", m.forward(r));
        }
    }

    #[test]
    fn the_network_learns_a_nonlinear_function_deterministically() {
        let (x, y) = data(400, 2);
        let cfg = FitConfig { hidden: 32, depth: 2, epochs: 60, batch: 32, lr: 3e-3, weight_decay: 1e-4, rank_weight: 0.5 };
        let m = fit_mlp(&x, &y, None, None, &cfg, 5).unwrap();
        let (xt, yt) = data(100, 3);
        let mse: f32 = xt.iter().zip(&yt).map(|(r, t)| (m.forward(r) - t).powi(2)).sum::<f32>() / 100.0;
        let var: f32 = yt.iter().map(|t| t * t).sum::<f32>() / 100.0;
        assert!(mse < 0.1 * var, "mse {mse}, var {var}");
        assert_eq!(m, fit_mlp(&x, &y, None, None, &cfg, 5).unwrap());
        let sc = Scaler::fit(&x, 1);
        let mut v = x[0].clone();
        sc.apply(&mut v);
        assert_eq!(v[0], x[0][0]);
    }
}
