//! Hardware-aware search for Bit Fusion: search spaces as data ([`space`]), their architectures and
//! encodings ([`arch`]), and the per-layer latency/energy lookup table built by the simulator
//! ([`lut`]), and the anchors' file formats (APQ, once-for-all: [`interop`]). Depends on
//! `bitfusion-simulator`, never the reverse.

pub mod arch;
pub mod controller;
pub mod evolution;
pub mod hw_compare;
pub mod interop;
pub mod methods;
pub mod lut;
pub mod space;

pub use arch::{Arch, Block};
pub use space::Space;
