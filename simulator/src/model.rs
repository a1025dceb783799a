//! The cost-model interface and its implementations, chosen by name.
//!
//! A cost model turns one [`Layer`] on one [`HwConfig`] into [`LayerStats`].
//! Implementations live in their own modules (`reference`, and later the
//! cycle-level engine) and are built from a config by [`build`]; everything
//! downstream (the CLI, sweeps, lookup tables) sees only `dyn CostModel`.

use crate::config::{CostModelName, HwConfig};
use crate::layer::Layer;
use crate::mapping::Objective;
use crate::stats::LayerStats;
use rayon::prelude::*;

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

/// Build the cost model named `name` (or the config's `[models] cost`) for `hw`; `objective` is the
/// mapping objective of models that search (the reference model always minimises cycles, then energy).
pub fn build(hw: &HwConfig, name: Option<CostModelName>, objective: Objective) -> Box<dyn CostModel> {
    match name.unwrap_or(hw.models.cost) {
        CostModelName::Reference => Box::new(crate::reference::ReferenceModel::new(hw)),
        CostModelName::Cycle => Box::new(crate::engine::CycleModel::new(hw, objective)),
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
