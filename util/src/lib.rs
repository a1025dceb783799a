//! The one implementation of each utility the workspace's crates share: atomic file writes and
//! output-directory locks ([`fs`]), the seeded generator ([`rng`]) and the Pareto filter
//! ([`pareto`]). A leaf crate: std and thiserror only, so every other crate (and the fuzz
//! targets) can depend on it without weight.

pub mod fs;
pub mod pareto;
pub mod rng;

pub use fs::{OutputLock, LockError, write_atomic};
pub use pareto::non_dominated;
pub use rng::{Rng, splitmix};
