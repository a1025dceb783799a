//! The seeded generator of training and sampling: the workspace's one SplitMix64
//! ([`bitfusion_util::Rng`]), so that every random choice is a function of the seed alone,
//! independent of burn's and rand's generator versions.

pub use bitfusion_util::Rng;

/// Fisher-Yates shuffle seeded with `seed`.
pub fn shuffle<T>(v: &mut [T], seed: u64) {
    Rng::new(seed).shuffle(v)
}
