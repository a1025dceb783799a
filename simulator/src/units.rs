//! Quantities that carry their unit in their type.
//!
//! Counters that are easy to mix up (bits vs bytes, cycles vs seconds, pJ vs nJ)
//! are wrapped so that the compiler, not a reviewer, catches a mix-up. The
//! wrappers are `Copy`, add like numbers, and convert explicitly.

use serde::{Deserialize, Serialize};
use std::iter::Sum;
use std::ops::{Add, AddAssign, Mul};

macro_rules! integer_quantity {
    ($(#[$doc:meta])* $name:ident, $unit:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl $name {
            pub const ZERO: Self = Self(0);
            /// The raw count, in the unit of the type.
            pub const fn get(self) -> u64 {
                self.0
            }
        }
        impl Add for $name {
            type Output = Self;
            fn add(self, o: Self) -> Self {
                Self(self.0 + o.0)
            }
        }
        impl AddAssign for $name {
            fn add_assign(&mut self, o: Self) {
                self.0 += o.0;
            }
        }
        impl Mul<u64> for $name {
            type Output = Self;
            fn mul(self, k: u64) -> Self {
                Self(self.0 * k)
            }
        }
        impl Sum for $name {
            fn sum<I: Iterator<Item = Self>>(it: I) -> Self {
                Self(it.map(|x| x.0).sum())
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{} {}", self.0, $unit)
            }
        }
    };
}

integer_quantity!(
    /// A number of clock cycles of the accelerator.
    Cycles,
    "cycles"
);
integer_quantity!(
    /// A number of bits (data moved or stored).
    Bits,
    "bits"
);
integer_quantity!(
    /// A number of bytes (buffer capacities, DRAM bursts).
    Bytes,
    "B"
);

impl Bytes {
    pub const fn to_bits(self) -> Bits {
        Bits(self.0 * 8)
    }
}

/// Energy in nanojoules (the unit of every energy column in the outputs).
#[derive(Clone, Copy, Debug, Default, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NanoJoules(pub f64);

impl NanoJoules {
    pub const ZERO: Self = Self(0.0);
    pub const fn get(self) -> f64 {
        self.0
    }
    pub fn from_pj(pj: f64) -> Self {
        Self(pj * 1e-3)
    }
    pub fn to_mj(self) -> f64 {
        self.0 * 1e-6
    }
}
impl Add for NanoJoules {
    type Output = Self;
    fn add(self, o: Self) -> Self {
        Self(self.0 + o.0)
    }
}
impl AddAssign for NanoJoules {
    fn add_assign(&mut self, o: Self) {
        self.0 += o.0;
    }
}
impl Mul<f64> for NanoJoules {
    type Output = Self;
    fn mul(self, k: f64) -> Self {
        Self(self.0 * k)
    }
}
impl Sum for NanoJoules {
    fn sum<I: Iterator<Item = Self>>(it: I) -> Self {
        Self(it.map(|x| x.0).sum())
    }
}

/// Integer ceiling division, `ceil(a / b)` for `b > 0`.
#[inline]
pub const fn ceil_div(a: u64, b: u64) -> u64 {
    a.div_ceil(b)
}

/// `ceil(log2(x))` for `x >= 1` (0 for x = 1).
#[inline]
pub const fn ceil_log2(x: u64) -> u32 {
    if x <= 1 { 0 } else { 64 - (x - 1).leading_zeros() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceil_log2_matches_definition() {
        let expect = [(1, 0), (2, 1), (3, 2), (4, 2), (5, 3), (8, 3), (9, 4), (1024, 10), (1025, 11)];
        for (x, l) in expect {
            assert_eq!(ceil_log2(x), l, "ceil_log2({x})");
        }
    }

    #[test]
    fn quantities_add_and_convert() {
        assert_eq!(Bytes(4).to_bits(), Bits(32));
        assert_eq!(Cycles(3) + Cycles(4), Cycles(7));
        assert_eq!([Bits(1), Bits(2)].into_iter().sum::<Bits>(), Bits(3));
        assert!((NanoJoules::from_pj(1500.0).get() - 1.5).abs() < 1e-12);
        assert_eq!(ceil_div(7, 2), 4);
    }
}
