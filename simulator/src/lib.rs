//! Bit Fusion accelerator simulator.
//!
//! Data flows one way: a [`config::HwConfig`] and a workload of
//! [`layer::Layer`]s go into a [`model::CostModel`] (chosen by name), which
//! maps each layer onto the array and produces [`stats::LayerStats`]; the
//! [`report`] module writes them out. See `ARCHITECTURE.md` at the repository root.

pub mod array;
pub mod brick;
pub mod config;
pub mod detailed;
pub mod energy;
pub mod engine;
pub mod flow;
pub mod layer;
pub mod mapping;
pub mod memory;
pub mod model;
pub mod networks;
pub mod paper;
pub mod reference;
pub mod report;
pub mod sram;
pub mod stats;
pub mod sweep;
pub mod trace;
pub mod units;
pub mod validate;
pub mod workload;

pub use config::{ConfigError, HwConfig};
pub use layer::{Layer, LayerKind};
pub use model::{CostModel, NetworkReport, SimError, build, simulate_layers};
pub use stats::LayerStats;
