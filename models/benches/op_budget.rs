//! Where a training step of the largest `micro` subnet goes, op kind by op kind: every layer's
//! convolution, batch norm (with its ReLU6 or residual add) and activation fake quantization,
//! timed forward + backward on the layer's real shape at batch 64, with the fused ops and with the
//! stock burn composition they replace (the budget before and after).
//!
//! `cargo bench -p bitfusion-models --bench op_budget` (add `-- --stock-only` or `-- --fused-only`
//! to time one side; `-- --reps N` for N repetitions, default 5, the median kept).

use std::collections::BTreeMap;
use std::time::Instant;

use bitfusion_models::grid::Grid;
use bitfusion_models::ops::{self, After, reference};
use bitfusion_models::quant::{self, Quantizer};
use bitfusion_models::rng::Rng;
use bitfusion_models::supernet::{Residual, Supernet};
use bitfusion_models::train::largest;
use bitfusion_search::Space;
use burn::prelude::*;

fn random<const D: usize>(shape: [usize; D], seed: u64, dev: &Device) -> Tensor<D> {
    let mut r = Rng::new(seed);
    let v: Vec<f32> = (0..shape.iter().product::<usize>()).map(|_| r.normal() as f32).collect();
    Tensor::<D>::from_data(TensorData::new(v, shape), dev)
}

/// Median seconds of `reps` runs of forward (`f`) + backward of `Σ y * r` (a fixed `r`), less the
/// same loss's cost on an output-shaped leaf (the harness's own overhead).
fn time(reps: usize, f: &dyn Fn() -> Tensor<4>) -> f64 {
    let probe = f();
    let (dims, dev) = (probe.dims(), probe.device());
    let r = random(dims, 7, &dev);
    let y0 = random(dims, 8, &dev);
    let median = |g: &dyn Fn() -> Tensor<4>| {
        let mut t: Vec<f64> = (0..reps + 1)
            .map(|_| {
                let start = Instant::now();
                let grads = (g() * r.clone()).sum().backward();
                drop(grads);
                start.elapsed().as_secs_f64()
            })
            .skip(1)
            .collect();
        t.sort_by(f64::total_cmp);
        t[t.len() / 2]
    };
    (median(f) - median(&|| y0.clone().require_grad())).max(0.0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let stock = !args.iter().any(|a| a == "--fused-only");
    let fused = !args.iter().any(|a| a == "--stock-only");
    let reps = args.iter().position(|a| a == "--reps").and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(5);
    let space = Space::load("micro").expect("micro");
    let dev = bitfusion_models::device();
    let net = Supernet::new(&space, 1, &dev);
    let (plan, w) = net.view(&space, &largest(&space, 8));
    let batch = 64;
    let (mut h, mut c) = (space.input_size as usize, space.input_channels as usize);
    // (kind, fused seconds, stock seconds), summed per kind.
    let mut budget: BTreeMap<String, (f64, f64, usize)> = BTreeMap::new();
    let mut add = |kind: String, f: f64, s: f64| {
        let e = budget.entry(kind).or_insert((0.0, 0.0, 0));
        e.0 += f;
        e.1 += s;
        e.2 += 1;
    };
    for (i, (step, cw)) in plan.convs.iter().zip(&w.convs).enumerate() {
        let [c_out, _, k, _] = cw.w.dims();
        let stride = step.stride;
        let out_h = (h + 2 * (k / 2) - k) / stride + 1;
        let x = random([batch, h, h, c], 10 + i as u64, &dev);
        let wt = random([c_out, c / step.groups, k, k], 20 + i as u64, &dev).mul_scalar(0.2);
        let kind = if step.groups > 1 {
            format!("conv depthwise k{k} s{stride}")
        } else if k == 1 {
            "conv 1x1".to_string()
        } else {
            format!("conv dense k{k}")
        };
        let leaf = |t: &Tensor<4>| t.clone().require_grad();
        let tf = if fused { time(reps, &|| ops::conv(leaf(&x), leaf(&wt), stride, step.groups)) } else { 0.0 };
        let ts = if stock { time(reps, &|| reference::conv(leaf(&x), leaf(&wt), stride, step.groups)) } else { 0.0 };
        add(kind, tf, ts);
        // Batch norm with what follows it.
        let y = random([batch, out_h, out_h, c_out], 30 + i as u64, &dev);
        let res = random([batch, out_h, out_h, c_out], 40 + i as u64, &dev);
        let (gamma, beta) = (Tensor::<1>::ones([c_out], &dev), Tensor::<1>::zeros([c_out], &dev));
        let (after, kind) = match (step.relu6, step.residual) {
            (true, _) => (After::Relu6, "batch norm + ReLU6"),
            (false, Residual::Add) => (After::Add, "batch norm + residual add"),
            _ => (After::None, "batch norm"),
        };
        let r = (after == After::Add).then(|| leaf(&res));
        let g1 = || gamma.clone().require_grad();
        let b1 = || beta.clone().require_grad();
        let tf = if fused { time(reps, &|| ops::batch_norm_train(leaf(&y), g1(), b1(), after, r.clone()).y) } else { 0.0 };
        let ts = if stock { time(reps, &|| reference::batch_norm_train_op(leaf(&y), g1(), b1(), after, r.clone()).y) } else { 0.0 };
        add(kind.to_string(), tf, ts);
        // 8-bit activation fake quantization of this layer's input: the batch's step (a clip
        // search, no gradient), then the quantization with its clipped straight-through gradient.
        let grid = if step.unsigned_input { Grid::unsigned(8) } else { Grid::signed(8) };
        let steps = reference::activation_step(&x, grid, true);
        let time_step = |f: &dyn Fn() -> Tensor<1>| {
            let mut t: Vec<f64> = (0..reps + 1)
                .map(|_| {
                    let start = Instant::now();
                    let _ = f();
                    start.elapsed().as_secs_f64()
                })
                .skip(1)
                .collect();
            t.sort_by(f64::total_cmp);
            t[t.len() / 2]
        };
        let tf = if fused { time_step(&|| ops::activation_step(&x, grid, true)) } else { 0.0 };
        let ts = if stock { time_step(&|| reference::activation_step(&x, grid, true)) } else { 0.0 };
        add("activation step search (8-bit)".into(), tf, ts);
        let tf = if fused { time(reps, &|| ops::fake_quant(leaf(&x), steps.clone(), grid, true)) } else { 0.0 };
        let ts = if stock { time(reps, &|| reference::fake_quant(leaf(&x), steps.clone(), grid, true)) } else { 0.0 };
        add("activation fake quantization (8-bit)".into(), tf, ts);
        // 8-bit weight fake quantization: per-channel clip-searched steps, identity gradient.
        let tf = if fused { time(reps, &|| ops::conv(leaf(&x), quant::weight(leaf(&wt), 8, Quantizer::MseClip), stride, step.groups)) - time(reps, &|| ops::conv(leaf(&x), leaf(&wt), stride, step.groups)) } else { 0.0 };
        add("weight fake quantization (8-bit)".into(), tf.max(0.0), 0.0);
        h = out_h;
        c = c_out;
    }
    println!("per-op budget of one training step, largest micro subnet, batch {batch} ({} backend, {} threads, median of {reps}):", bitfusion_models::backend_name(), rayon::current_num_threads());
    println!("| op kind | layers | stock burn ms | fused ms | speed-up |");
    println!("|---|---|---|---|---|");
    let (mut tf, mut ts) = (0.0, 0.0);
    for (k, (f, s, n)) in &budget {
        tf += f;
        ts += s;
        println!("| {k} | {n} | {:.1} | {:.1} | {} |", 1e3 * s, 1e3 * f, if *f > 0.0 && *s > 0.0 { format!("{:.1}x", s / f) } else { "-".into() });
    }
    println!("| all of the above | | {:.1} | {:.1} | {} |", 1e3 * ts, 1e3 * tf, if tf > 0.0 && ts > 0.0 { format!("{:.1}x", ts / tf) } else { "-".into() });
}
