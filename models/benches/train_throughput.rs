//! Training throughput (images/s) of the largest `micro` subnet on this machine: forward, backward
//! and an Adam step at batch 64 on 28x28x1 inputs, fp32 and with 8-bit fake quantization.
//! Compare with scripts/pytorch_throughput.py (the same network in PyTorch on the CPU).
//!
//! `cargo bench -p bitfusion-models --bench train_throughput`

use std::time::Instant;

use bitfusion_models::rng::Rng;
use bitfusion_models::supernet::{Mode, Supernet, forward};
use bitfusion_models::train::{largest, smoothed_targets};
use bitfusion_search::Space;
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use burn::tensor::loss::cross_entropy_with_logits;

fn main() {
    let space = Space::load("micro").expect("micro");
    let dev = bitfusion_models::device();
    let batch = 64;
    let mut rng = Rng::new(1);
    let x: Vec<f32> = (0..batch * 28 * 28).map(|_| rng.normal() as f32).collect();
    let x = Tensor::<4>::from_data(TensorData::new(x, [batch, 1, 28, 28]), &dev);
    let labels: Vec<u8> = (0..batch).map(|i| (i % 10) as u8).collect();
    let targets = smoothed_targets(&labels, 10, 0.1, &dev);
    for quantize in [false, true] {
        let mut net = Supernet::new(&space, 1, &dev);
        let mut opt = AdamConfig::new().init();
        let arch = largest(&space, 8);
        let mut step = |net: Supernet| {
            let (plan, w) = net.view(&space, &arch);
            let loss = cross_entropy_with_logits(forward(&plan, &w, x.clone(), Mode::Train { quantize }, None), targets.clone());
            let grads = GradientsParams::from_grads(loss.backward(), &net);
            opt.step(1e-3, net, grads)
        };
        for _ in 0..3 {
            net = step(net);
        }
        let steps = 20;
        let t = Instant::now();
        for _ in 0..steps {
            net = step(net);
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "largest micro subnet, batch {batch}, {} ({} backend): {:.1} ms/step, {:.1} images/s",
            if quantize { "8-bit fake quantization" } else { "fp32" },
            bitfusion_models::backend_name(),
            1e3 * secs / steps as f64,
            (steps * batch) as f64 / secs
        );
    }
}
