//! The registry of cost models: [`build`] chooses an implementation by name.
//!
//! It sits above both implementations (`reference`, `cycle`), which only know the interface in
//! `cost`; the interface's items are re-exported here, so `model::CostModel`, `model::Objective`
//! and `model::simulate_layers` are the names other crates use.

pub use crate::cost::{CostModel, NetworkReport, Objective, SimError, simulate_layers};
use crate::config::{CostModelName, HwConfig};

/// Build the cost model named `name` (or the config's `[models] cost`) for `hw`; `objective` is the
/// mapping objective of models that search (the reference model always minimises cycles, then energy).
pub fn build(hw: &HwConfig, name: Option<CostModelName>, objective: Objective) -> Box<dyn CostModel> {
    match name.unwrap_or(hw.models.cost) {
        CostModelName::Reference => Box::new(crate::reference::ReferenceModel::new(hw)),
        CostModelName::Cycle => Box::new(crate::cycle::CycleModel::new(hw, objective)),
    }
}
