//! The cost-model interface and its implementations, chosen by name.
//!
//! A cost model turns one [`Layer`] on one [`HwConfig`] into [`LayerStats`].
//! Implementations live in their own modules (`reference`, and later the
//! cycle-level engine) and are built from a config by [`build`]; everything
//! downstream (the CLI, sweeps, lookup tables) sees only `dyn CostModel`.

use crate::config::{CostModelName, HwConfig};
use crate::layer::Layer;
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
}

/// Build the cost model named `name` (or the config's `[models] cost`) for `hw`.
pub fn build(hw: &HwConfig, name: Option<CostModelName>) -> Box<dyn CostModel> {
    match name.unwrap_or(hw.models.cost) {
        CostModelName::Reference => Box::new(crate::reference::ReferenceModel::new(hw)),
    }
}

/// The results of simulating a list of layers.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct NetworkReport {
    pub hw: String,
    pub model: String,
    pub layers: Vec<LayerStats>,
    pub total: LayerStats,
    pub notes: Vec<String>,
}

/// Simulate `layers` in parallel (rayon), keeping their order; the first failing layer's error is returned.
pub fn simulate_layers(model: &dyn CostModel, layers: &[Layer]) -> Result<NetworkReport, SimError> {
    let stats: Vec<LayerStats> = layers.par_iter().map(|l| model.simulate_layer(l)).collect::<Result<_, _>>()?;
    let total = LayerStats::total("total", &stats);
    Ok(NetworkReport { hw: model.hw().name.clone(), model: model.name().to_string(), layers: stats, total, notes: model.notes() })
}
