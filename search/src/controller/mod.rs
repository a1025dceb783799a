//! Learned-policy searches (issue 16): a categorical policy over every choice of a space
//! ([`policy`]), the exact expected LUT cost of its architectures ([`expected_cost`]), and the
//! controllers that train it against the same predictor and LUT as evolution, the hardware budget
//! relaxed into a penalty ([`reinforce`]: REINFORCE; [`gumbel`]: the Gumbel-softmax relaxation).
//! One-way order: policy -> expected_cost -> reinforce -> gumbel.

mod expected_cost;
mod gumbel;
mod policy;
mod reinforce;

pub use expected_cost::{CostGradient, ExpectedCost};
pub use gumbel::{GumbelConfig, gumbel};
pub use policy::{Policy, Sample};
pub use reinforce::{Controller, ReinforceConfig, excess, reinforce};
