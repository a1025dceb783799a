//! The one implementation of each utility the workspace's crates share: atomic file writes and
//! output locks ([`fs`]), numbers rounded for people ([`num`]), the seeded generator ([`rng`]) and the Pareto filter
//! ([`pareto`]). A leaf crate: std and thiserror only, so every other crate (and the fuzz
//! targets) can depend on it without weight.

pub mod fs;
pub mod num;
pub mod pareto;
pub mod rng;

pub use fs::{LockError, OutputLock, create_parent, write_atomic};
pub use num::{Sig, round_sig};
pub use pareto::non_dominated;
pub use rng::{Rng, splitmix};
