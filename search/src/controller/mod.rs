//! Learned-policy searches (issue 16): a categorical policy over every choice of a space
//! ([`policy`]) and the controllers that train it against the same predictor and LUT as
//! evolution, the hardware budget relaxed into a penalty on the reward ([`reinforce`]).
//! One-way order: policy -> reinforce.

mod policy;
mod reinforce;

pub use policy::{Policy, Sample};
pub use reinforce::{Controller, ReinforceConfig, excess, reinforce};
