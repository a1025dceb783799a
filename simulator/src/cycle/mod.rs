//! The cycle-level cost model (`--model cycle`): a layer's tile schedule on the array and the
//! memory system, as a timeline in cycles, under the best mapping a provably pruned search finds.
//!
//! Its submodules form a one-way order; each refers only to earlier ones (`tests/module_graph.rs`
//! checks it):
//!
//! 1. `problem`: the layer as the model sees it ([`Problem`]), [`Mapping`] (tiles, group packing,
//!    loop order), tile counts and the arithmetic of streaming and buffers;
//! 2. `tiling`: candidate families (channel and kernel tiles), their tilings and loop orders;
//! 3. `schedule`: a mapping's tiles in loop order with their transfers ([`schedule()`]);
//! 4. `timeline`: the double-buffered timeline of a schedule and its [`RunTotals`];
//! 5. `trace`: Chrome trace events from a timeline;
//! 6. `dma`: exact DMA work by edge class (`DmaSums`, `dma_cycles`);
//! 7. `bounds`: lower bounds on a mapping's cycles (`BaseBound`, family and edge bounds);
//! 8. `flow`: the flow bounds of a mapping's timeline in closed form;
//! 9. `evaluate`: one mapping's exact [`Evaluation`] (counters, energy) and the objective's keys;
//! 10. `search`: the generic branch and bound and the model's search tree ([`SharedSearch`]);
//! 11. `model`: [`CycleModel`], the [`crate::cost::CostModel`] implementation, and [`trace_layers`].
//!
//! This file only re-exports: what other crates use is `pub`, what the detailed mode uses is
//! `pub(crate)`.

mod problem;
mod tiling;
mod schedule;
mod timeline;
mod trace;
mod dma;
mod bounds;
mod flow;
mod evaluate;
mod search;
mod model;

pub use evaluate::Evaluation;
pub use model::{CycleModel, trace_layers};
pub use problem::{Loop, Mapping, Problem};
pub use schedule::{Loads, Schedule, TileGeom, TileStep, Transfer, TransferKind, schedule};
pub use search::SharedSearch;
pub use timeline::{RunTotals, Timeline, timeline};

pub(crate) use schedule::{ic_start, oc_start};
pub(crate) use timeline::release_cycle;
