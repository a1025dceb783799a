//! Neural-network side of the search: the once-for-all supernet of a search space, fake
//! quantization, training on CPU with burn, and the measurement of subnets into
//! (architecture, bits, accuracy) pairs. The only crate besides `search`'s predictor users that
//! depends on burn, so the simulator builds and tests without it.
//!
//! Data flows one way: [`data`] (images) -> [`supernet`] (network, views, extraction) ->
//! [`train`] (progressive shrinking, checkpoints) -> [`eval`] (calibration, accuracy, pairs).

pub mod checkpoint;
pub mod data;
pub mod eval;
pub mod predictor;
pub mod quant;
pub mod rng;
pub mod supernet;
pub mod train;

use burn::prelude::Device;

/// The training device: burn's `flex` CPU backend with autodiff (or ndarray, when the crate is
/// built with `--no-default-features --features ndarray`).
pub fn device() -> Device {
    #[cfg(feature = "flex")]
    {
        Device::flex().autodiff()
    }
    #[cfg(all(not(feature = "flex"), feature = "ndarray"))]
    {
        #[allow(deprecated)]
        Device::ndarray().autodiff()
    }
    #[cfg(not(any(feature = "flex", feature = "ndarray")))]
    compile_error!("enable the `flex` (default) or `ndarray` feature of bitfusion-models")
}

/// The backend's name, for reports.
pub fn backend_name() -> &'static str {
    if cfg!(feature = "flex") { "flex" } else { "ndarray" }
}
