//! Neural-network side of the search: the once-for-all supernet of a search space, fake
//! quantization, training on CPU with burn, and the measurement of subnets into
//! (architecture, bits, accuracy) pairs. The only crate besides `search`'s predictor users that
//! depends on burn, so the simulator builds and tests without it.
//!
//! Data flows one way: [`grid`] (quantization grids and steps) -> [`ops`] (the fused layer ops,
//! NHWC, with hand-written backward passes) -> [`quant`] (the quantizers) -> [`supernet`]
//! (network, views, extraction; images from [`data`]) -> [`policy`] (bit policies) -> [`train`]
//! (progressive shrinking and the quantization-aware phase, checkpoints) -> [`eval`]
//! (calibration, accuracy, the post-training table) -> [`export`] (the found subnet as
//! safetensors and ONNX QDQ) -> [`bilevel`] (the controller and the
//! supernet's weights trained together) -> [`pairs`] (pair files) -> [`predictor`] -> [`rerank`]
//! (measured re-ranking of search results).

pub mod bilevel;
pub mod checkpoint;
pub mod data;
pub mod eval;
pub mod export;
pub mod grid;
pub mod ops;
pub mod pairs;
pub mod policy;
pub mod predictor;
pub mod quant;
pub mod rerank;
pub mod rng;
mod simd;
pub mod supernet;
pub mod train;

pub use burn::prelude::Device;

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
