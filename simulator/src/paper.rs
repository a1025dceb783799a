//! The Bit Fusion paper's comparison with Eyeriss (ISCA 2018, Figure 11): speedup and energy
//! reduction per benchmark and their geometric means, from the Eyeriss-simulator results the paper
//! used (`data/eyeriss_results.csv`) and this project's models of the Bit Fusion config.
//!
//! The formulas are the authors' notebook's (`bitfusion-generate-graphs.ipynb`), applied as is:
//! * Eyeriss time per image (ms) = sum of a benchmark's `time(ms)` column (cycles of a batch of 16)
//!   / 500e3 / 16; Eyeriss energy (nJ) = (ALU + 0.15 DRAM + Buffer + Array + RF) x 16 x 0.2e-3;
//! * Bit Fusion time per image = cycles of the batch of 16 / (f in kHz) / 16; energy = the model's
//!   total for the batch;
//! * speedup = Eyeriss time / Bit Fusion time; energy reduction = Eyeriss energy / Bit Fusion energy.
//!
//! The benchmarks are the notebook's, with the 2x-wide (WRPN) AlexNet and ResNet-18 its sweep uses.
//! The published geomeans are 3.9x speedup and 5.1x energy reduction (MODEL.md section 11).

use crate::cost::{CostModel, SimError, simulate_layers};
use crate::networks::network;

const EYERISS_CSV: &str = include_str!("../data/eyeriss_results.csv");

/// The paper's benchmarks: (name in the Eyeriss results, built-in network).
pub const BENCHMARKS: [(&str, &str); 8] = [
    ("AlexNet", "alexnet_wrpn"),
    ("SVHN", "svhn"),
    ("CIFAR10", "cifar10"),
    ("LeNet-5", "lenet5"),
    ("VGG-7", "vgg7"),
    ("RESNET-18", "resnet18_wrpn"),
    ("RNN", "rnn"),
    ("LSTM", "lstm"),
];

/// Eyeriss's figures for one benchmark.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Eyeriss {
    /// Time per image, ms.
    pub time_ms: f64,
    /// Energy for the batch of 16, nJ.
    pub energy_nj: f64,
}

/// Eyeriss's figures per benchmark, summed over its layers with the notebook's formulas.
pub fn eyeriss(benchmark: &str) -> Option<Eyeriss> {
    let mut cycles = 0.0;
    let mut units = 0.0;
    let mut found = false;
    for line in EYERISS_CSV.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() < 8 || f[0] != benchmark {
            continue;
        }
        found = true;
        let v = |i: usize| f[i].parse::<f64>().unwrap_or(0.0);
        units += v(2) + 0.15 * v(3) + v(4) + v(5) + v(6);
        cycles += v(7);
    }
    found.then(|| Eyeriss { time_ms: cycles / 500e3 / 16.0, energy_nj: units * 16.0 * 0.2e-3 })
}

/// One benchmark's comparison.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    pub benchmark: String,
    pub eyeriss: Eyeriss,
    /// Bit Fusion time per image, ms, and energy of the batch, nJ.
    pub time_ms: f64,
    pub energy_nj: f64,
    pub speedup: f64,
    pub energy_reduction: f64,
}

/// Geometric mean.
pub fn geomean(v: &[f64]) -> f64 {
    (v.iter().map(|x| x.ln()).sum::<f64>() / v.len() as f64).exp()
}

/// The comparison for every benchmark with one model (on a config with energy figures).
pub fn compare(model: &dyn CostModel) -> Result<Vec<Comparison>, SimError> {
    let mut out = Vec::new();
    for (bench, net) in BENCHMARKS {
        let layers = network(net).expect("built-in benchmark").layers();
        let r = simulate_layers(model, &layers)?;
        let e = eyeriss(bench).expect("benchmark in the Eyeriss results");
        let time_ms = r.total.cycles.0 as f64 / (model.hw().frequency_mhz * 1e3) / 16.0;
        let energy_nj = r.total.energy_total_nj().ok_or_else(|| SimError {
            layer: net.to_string(),
            message: "the config has no SRAM energy figures (see the notes)".into(),
        })?;
        out.push(Comparison {
            benchmark: bench.to_string(),
            eyeriss: e,
            time_ms,
            energy_nj,
            speedup: e.time_ms / time_ms,
            energy_reduction: e.energy_nj / energy_nj,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eyeriss_figures_match_the_notebook() {
        // The notebook prints "Eyeriss time: 8.785792 ms" for AlexNet and 0.1026 ms for LSTM.
        assert!((eyeriss("AlexNet").unwrap().time_ms - 8.785792).abs() < 1e-9);
        assert!((eyeriss("LSTM").unwrap().time_ms - 0.1026).abs() < 1e-9);
        assert!(eyeriss("GoogLeNet").is_none());
        assert!((geomean(&[1.0, 4.0]) - 2.0).abs() < 1e-12);
    }
}
