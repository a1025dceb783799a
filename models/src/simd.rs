//! Run-time SIMD selection for plain-Rust loops: [`simd`] runs a closure inside a function
//! compiled with AVX2 and FMA enabled when the CPU has them (checked once), so the loops the
//! closure inlines are vectorised 8-wide, multiply-adds fuse, and `round_ties_even` is one
//! instruction instead of a libm call, while the binary stays portable to any x86-64 (or other)
//! CPU. Results can differ in the last bit between the two paths (fused multiply-adds round
//! once); on one machine they are always the same.

/// What the running frame may use; passed to the closure so that the branch on it folds away
/// once the closure is inlined into each frame.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Isa {
    #[cfg_attr(not(feature = "flex"), allow(dead_code))]
    fma: bool,
}

#[cfg_attr(not(feature = "flex"), allow(dead_code))]
impl Isa {
    /// `a * b + c`, fused (one rounding) where the frame has FMA.
    #[inline(always)]
    pub fn mul_add(self, a: f32, b: f32, c: f32) -> f32 {
        if self.fma { a.mul_add(b, c) } else { a * b + c }
    }
}

/// Run `f` compiled with AVX2 and FMA enabled when the CPU supports both. `f` must be
/// `#[inline(always)]` (mark the closure) so that its loops are compiled inside that frame.
#[inline(always)]
pub(crate) fn simd<R>(f: impl FnOnce(Isa) -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2<R>(f: impl FnOnce(Isa) -> R) -> R {
            f(Isa { fma: true })
        }
        if has_avx2_fma() {
            // SAFETY: the CPU supports AVX2 and FMA (checked at run time just above).
            return unsafe { avx2(f) };
        }
    }
    f(Isa { fma: false })
}

#[cfg(target_arch = "x86_64")]
fn has_avx2_fma() -> bool {
    use std::sync::OnceLock;
    static YES: OnceLock<bool> = OnceLock::new();
    *YES.get_or_init(|| std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma"))
}
