//! Per-layer bit policies: how the searchable weight and activation slots of an architecture get
//! their widths, shared by the quantization-aware training phase and the pair sampler.
//!
//! * Uniform: one width in every slot (what the fixed-precision baselines are).
//! * Mixed: a bit mixture per network, p ~ Dirichlet(alpha) over the space's widths, then every
//!   slot i.i.d. from p (EQ-Net's target-average-width idea in one line; alpha 0.5 leaves about one
//!   `micro` network in five without a 2-bit slot, where i.i.d. uniform bits leave 0.2%, and still
//!   reaches the many-2-bit corner; `shared/reference/search/QUANTIZED_SEARCH.md` 3).

use bitfusion_search::{Arch, Space};

use crate::rng::Rng;

/// Concentration of the per-network mixtures.
pub const DIRICHLET_ALPHA: f64 = 0.5;

/// Every searchable weight slot at `w` bits and activation slot at `a` bits.
pub fn set_uniform(arch: &mut Arch, w: u32, a: u32) {
    for blk in arch.stages.iter_mut().flatten() {
        (blk.pw_w, blk.dw_w, blk.pw_a, blk.dw_a) = (w, w, a, a);
    }
}

/// One width, drawn uniformly from the space's, in every slot; returns it.
pub fn uniform(arch: &mut Arch, space: &Space, rng: &mut Rng) -> u32 {
    let b = rng.pick(&space.bits);
    set_uniform(arch, b, b);
    b
}

/// A Dirichlet(`alpha`) mixture over the space's widths, then every slot from it.
pub fn mixed(arch: &mut Arch, space: &Space, alpha: f64, rng: &mut Rng) {
    let bits = &space.bits;
    let p = rng.dirichlet(alpha, bits.len());
    for blk in arch.stages.iter_mut().flatten() {
        for slot in [&mut blk.pw_w, &mut blk.pw_a, &mut blk.dw_w, &mut blk.dw_a] {
            *slot = bits[rng.categorical(&p)];
        }
    }
}
