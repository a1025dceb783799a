//! The cost-model interface every model implements, and what all of them share: the mapping
//! [`Objective`], [`SimError`], [`NetworkReport`] and [`simulate_layers`].
//!
//! A cost model turns one [`Layer`] on one [`HwConfig`] into [`LayerStats`]. This module sits
//! at the bottom of the models' order: the implementations (`reference`, `cycle`) use it, and
//! `model::build` (above both) chooses one by name; everything downstream (the CLI, sweeps,
//! lookup tables) sees only `dyn CostModel`.

use crate::config::HwConfig;
use crate::layer::Layer;
use crate::stats::LayerStats;
use rayon::prelude::*;
use serde::Serialize;

/// Why a layer cannot be simulated by a model, phrased for the user.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("layer '{layer}': {message}")]
pub struct SimError {
    pub layer: String,
    pub message: String,
}

impl SimError {
    pub fn new(layer: &Layer, message: impl Into<String>) -> Self {
        Self { layer: layer.name.clone(), message: message.into() }
    }
}

/// One simulator of layers on one hardware configuration.
pub trait CostModel: Send + Sync {
    /// The model's name, as given in `[models] cost` and `--model`.
    fn name(&self) -> &'static str;
    /// The hardware this model was built for.
    fn hw(&self) -> &HwConfig;
    /// Simulate one layer.
    fn simulate_layer(&self, layer: &Layer) -> Result<LayerStats, SimError>;
    /// Notes the user should see with the results (e.g. SRAM figures out of table).
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }
    /// Chip area (core and buffers), mm^2, when the figures exist.
    fn area_mm2(&self) -> Option<f64> {
        None
    }
    /// Simulate a layer whose outputs are stored at `out_bits` (the consumer's activation
    /// precision). Models that always store 32-bit partial sums ignore it.
    fn simulate_layer_with_output_bits(&self, layer: &Layer, out_bits: u32) -> Result<LayerStats, SimError> {
        let _ = out_bits;
        self.simulate_layer(layer)
    }
    /// Simulate variants of one layer shape (other bits, other output precisions) in order; models
    /// may share work between consecutive variants, never changing any result.
    fn simulate_layer_variants(&self, variants: &[(Layer, u32)]) -> Result<Vec<LayerStats>, SimError> {
        variants.iter().map(|(l, b)| self.simulate_layer_with_output_bits(l, *b)).collect()
    }
}

/// What a model's mapping search minimises (the cycle model's; the reference model always
/// minimises cycles, then energy).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Default)]
pub enum Objective {
    /// Cycles, then energy.
    #[default]
    Cycles,
    /// Energy, then cycles.
    Energy,
    /// Energy x cycles.
    Edp,
}

impl std::str::FromStr for Objective {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cycles" => Ok(Objective::Cycles),
            "energy" => Ok(Objective::Energy),
            "edp" => Ok(Objective::Edp),
            o => Err(format!("unknown objective '{o}' (known: cycles, energy, edp)")),
        }
    }
}

impl Objective {
    pub fn as_str(self) -> &'static str {
        match self {
            Objective::Cycles => "cycles",
            Objective::Energy => "energy",
            Objective::Edp => "edp",
        }
    }

    /// The ranking key of (cycles, energy): smaller is better.
    pub fn key(self, cycles: f64, energy: f64) -> (f64, f64) {
        match self {
            Objective::Cycles => (cycles, energy),
            Objective::Energy => (energy, cycles),
            Objective::Edp => (energy * cycles, cycles),
        }
    }
}

/// The results of simulating a list of layers.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct NetworkReport {
    pub hw: String,
    pub model: String,
    pub layers: Vec<LayerStats>,
    pub total: LayerStats,
    /// Chip area (core and buffers), mm^2.
    pub area_mm2: Option<f64>,
    pub notes: Vec<String>,
}

/// Simulate `layers` in parallel (rayon), keeping their order; the first failing layer's error is
/// returned. Each layer's outputs are stored at the next layer's activation bits (the last layer's at
/// its own): layers are taken to feed the next one in the list.
pub fn simulate_layers(model: &dyn CostModel, layers: &[Layer]) -> Result<NetworkReport, SimError> {
    let stats: Vec<LayerStats> = layers
        .par_iter()
        .enumerate()
        .map(|(i, l)| {
            let out_bits = layers.get(i + 1).map_or(l.a_bits, |n| n.a_bits);
            model.simulate_layer_with_output_bits(l, out_bits)
        })
        .collect::<Result<_, _>>()?;
    let total = LayerStats::total("total", &stats);
    Ok(NetworkReport {
        hw: model.hw().name.clone(),
        model: model.name().to_string(),
        layers: stats,
        total,
        area_mm2: model.area_mm2(),
        notes: model.notes(),
    })
}
