//! Bit Fusion accelerator simulator.
//!
//! Data flows one way: a [`config::HwConfig`] and a workload of
//! [`layer::Layer`]s go into a [`model::CostModel`] (chosen by name with
//! [`model::build`]), which maps each layer onto the array and produces
//! [`stats::LayerStats`]; the [`report`] module writes them out. See
//! `ARCHITECTURE.md` at the repository root.
//!
//! The public API is the modules below marked `pub` and the re-exports at
//! the crate root; the rest are internals (`tests/module_graph.rs` checks that
//! the modules form no cycle).

// Public modules: what the CLI, the other crates, the integration tests and the benches use.
pub mod config;
pub mod cycle;
pub mod detailed;
pub mod layer;
pub mod model;
pub mod networks;
pub mod onnx;
pub mod paper;
pub mod reference;
pub mod report;
pub mod roofline;
pub mod stats;
pub mod sweep;
pub mod units;
pub mod validate;
pub mod workload;

// Internals, in dependency order (each uses only earlier ones, and `units`, `config`, `layer`,
// `stats`).
mod sram;
mod energy;
mod brick;
mod array;
mod memory;
mod cost;

pub use brick::LanePlan;
pub use config::{ConfigError, HwConfig};
pub use cycle::CycleModel;
pub use energy::ChipFigures;
pub use layer::{Layer, LayerKind};
pub use model::{CostModel, NetworkReport, Objective, SimError, build, simulate_layers};
pub use reference::ReferenceModel;
pub use stats::LayerStats;
