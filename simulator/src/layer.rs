//! Layers: the unit of work a cost model simulates.
//!
//! A layer is a convolution (any square kernel, stride, padding and groups, so
//! depthwise is a convolution with groups = channels) or a fully connected
//! layer, with a batch size and its own weight and activation bit widths.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LayerKind {
    Conv,
    Fc,
}

impl LayerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LayerKind::Conv => "conv",
            LayerKind::Fc => "fc",
        }
    }
}

/// Narrowest and widest operand widths a layer may declare, in bits.
pub const MIN_BITS: u32 = 1;
pub const MAX_BITS: u32 = 16;
/// Largest accepted extent of any layer dimension (channels, pixels, batch).
pub const MAX_DIM: u32 = 1 << 20;
/// Largest accepted multiply-accumulate count of one layer (keeps every bit counter inside u64).
pub const MAX_MACS: u64 = 1 << 46;
/// Largest accepted element count of one tensor (input, weights, output): at 16 bits an element,
/// every bit count of a tensor stays below 2^50.
pub const MAX_ELEMENTS: u64 = 1 << 46;

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Layer {
    pub name: String,
    pub kind: LayerKind,
    pub batch: u32,
    pub in_channels: u32,
    pub out_channels: u32,
    /// Input height and width, in pixels (1 for fc).
    pub in_h: u32,
    pub in_w: u32,
    /// Square kernel side (1 for fc).
    pub kernel: u32,
    pub stride: u32,
    /// Zero padding on each side, in pixels.
    pub pad: u32,
    pub groups: u32,
    /// Weight bits.
    pub w_bits: u32,
    /// Activation (input) bits.
    pub a_bits: u32,
    /// The layer is lowered with im2col (the network's input layer, in the original's convention).
    pub im2col: bool,
}

/// A layer that cannot exist, with the field at fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct LayerError {
    pub field: &'static str,
    pub message: String,
}

fn bad(field: &'static str, message: impl Into<String>) -> LayerError {
    LayerError { field, message: message.into() }
}

impl Layer {
    /// A fully connected layer.
    pub fn fc(name: &str, batch: u32, inputs: u32, outputs: u32, w_bits: u32, a_bits: u32) -> Layer {
        Layer {
            name: name.to_string(),
            kind: LayerKind::Fc,
            batch,
            in_channels: inputs,
            out_channels: outputs,
            in_h: 1,
            in_w: 1,
            kernel: 1,
            stride: 1,
            pad: 0,
            groups: 1,
            w_bits,
            a_bits,
            im2col: false,
        }
    }

    /// A square convolution.
    #[allow(clippy::too_many_arguments)]
    pub fn conv(
        name: &str,
        batch: u32,
        in_channels: u32,
        out_channels: u32,
        in_size: u32,
        kernel: u32,
        stride: u32,
        pad: u32,
        groups: u32,
        w_bits: u32,
        a_bits: u32,
    ) -> Layer {
        Layer {
            name: name.to_string(),
            kind: LayerKind::Conv,
            batch,
            in_channels,
            out_channels,
            in_h: in_size,
            in_w: in_size,
            kernel,
            stride,
            pad,
            groups,
            w_bits,
            a_bits,
            im2col: false,
        }
    }

    pub fn with_im2col(mut self, im2col: bool) -> Self {
        self.im2col = im2col;
        self
    }

    /// Output height: (in_h + 2 pad - kernel) / stride + 1.
    pub fn out_h(&self) -> u32 {
        (self.in_h + 2 * self.pad - self.kernel) / self.stride + 1
    }

    /// Output width.
    pub fn out_w(&self) -> u32 {
        (self.in_w + 2 * self.pad - self.kernel) / self.stride + 1
    }

    pub fn is_depthwise(&self) -> bool {
        self.groups > 1 && self.groups == self.in_channels && self.groups == self.out_channels
    }

    /// Multiply-accumulates of the whole layer (all groups, the whole batch). Exact for a
    /// layer that passed [`Layer::validate`] (at most [`MAX_MACS`]); saturates, never wraps,
    /// for one that did not.
    pub fn macs(&self) -> u64 {
        self.mac_factors().iter().fold(1u64, |acc, (_, v)| acc.saturating_mul(*v))
    }

    /// The factors of [`Layer::macs`], each with the column it comes from.
    fn mac_factors(&self) -> [(&'static str, u64); 6] {
        [
            ("batch", self.batch as u64),
            ("in_h", self.out_h() as u64),
            ("in_w", self.out_w() as u64),
            ("kernel", (self.kernel as u64).pow(2)),
            ("in_channels", (self.in_channels / self.groups) as u64),
            ("out_channels", self.out_channels as u64),
        ]
    }

    /// Check every size product of the layer (its MACs and the element counts of its input,
    /// weight and output tensors) against its limit with checked arithmetic; an error names the
    /// column whose factor takes the product over the limit.
    fn check_sizes(&self) -> Result<(), LayerError> {
        let (b, ih, iw) = (self.batch as u64, self.in_h as u64, self.in_w as u64);
        let (oh, ow, k) = (self.out_h() as u64, self.out_w() as u64, self.kernel as u64);
        let (ci, co, g) = (self.in_channels as u64, self.out_channels as u64, self.groups as u64);
        let products: [(&str, u64, &[(&'static str, u64)]); 4] = [
            ("multiply-accumulates", MAX_MACS, &self.mac_factors()),
            ("input elements", MAX_ELEMENTS, &[("batch", b), ("in_h", ih), ("in_w", iw), ("in_channels", ci)]),
            ("weight elements", MAX_ELEMENTS, &[("kernel", k * k), ("in_channels", ci / g), ("out_channels", co)]),
            ("output elements", MAX_ELEMENTS, &[("batch", b), ("in_h", oh), ("in_w", ow), ("out_channels", co)]),
        ];
        for (what, limit, factors) in products {
            let mut acc = 1u64;
            for (field, v) in factors {
                acc = match acc.checked_mul(*v) {
                    Some(p) if p <= limit => p,
                    _ => {
                        return Err(bad(
                            field,
                            format!("{v} takes the layer's {what} above the limit of 2^{} (the layer is too large)", limit.ilog2()),
                        ));
                    }
                };
            }
        }
        Ok(())
    }

    /// Check that the layer can exist.
    pub fn validate(&self) -> Result<(), LayerError> {
        let dims = [
            ("batch", self.batch),
            ("in_channels", self.in_channels),
            ("out_channels", self.out_channels),
            ("in_h", self.in_h),
            ("in_w", self.in_w),
            ("kernel", self.kernel),
            ("stride", self.stride),
            ("groups", self.groups),
        ];
        for (field, v) in dims {
            if v == 0 || v > MAX_DIM {
                return Err(bad(field, format!("{v} is out of range (allowed 1..={MAX_DIM})")));
            }
        }
        if self.pad > MAX_DIM {
            return Err(bad("pad", format!("{} is out of range (allowed 0..={MAX_DIM})", self.pad)));
        }
        for (field, v) in [("w_bits", self.w_bits), ("a_bits", self.a_bits)] {
            if !(MIN_BITS..=MAX_BITS).contains(&v) {
                return Err(bad(field, format!("unsupported bit width {v} (allowed {MIN_BITS}..={MAX_BITS})")));
            }
        }
        match self.kind {
            LayerKind::Fc => {
                for (field, v, want) in [
                    ("in_h", self.in_h, 1),
                    ("in_w", self.in_w, 1),
                    ("kernel", self.kernel, 1),
                    ("stride", self.stride, 1),
                    ("groups", self.groups, 1),
                ] {
                    if v != want {
                        return Err(bad(field, format!("a fully connected layer needs {field} = {want}, got {v}")));
                    }
                }
                if self.pad != 0 {
                    return Err(bad("pad", format!("a fully connected layer needs pad = 0, got {}", self.pad)));
                }
            }
            LayerKind::Conv => {
                if self.kernel > self.in_h + 2 * self.pad || self.kernel > self.in_w + 2 * self.pad {
                    return Err(bad(
                        "kernel",
                        format!(
                            "kernel {} is larger than the padded input {}x{}",
                            self.kernel,
                            self.in_h + 2 * self.pad,
                            self.in_w + 2 * self.pad
                        ),
                    ));
                }
                if self.pad >= self.kernel && self.pad > 0 {
                    return Err(bad("pad", format!("pad {} must be smaller than the kernel {}", self.pad, self.kernel)));
                }
                if !self.in_channels.is_multiple_of(self.groups) || !self.out_channels.is_multiple_of(self.groups) {
                    return Err(bad(
                        "groups",
                        format!(
                            "groups {} must divide in_channels {} and out_channels {}",
                            self.groups, self.in_channels, self.out_channels
                        ),
                    ));
                }
            }
        }
        self.check_sizes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conv_geometry_and_macs() {
        let l = Layer::conv("stem", 1, 3, 64, 224, 7, 2, 3, 1, 8, 8);
        assert_eq!((l.out_h(), l.out_w()), (112, 112));
        assert_eq!(l.macs(), 118_013_952);
        let dw = Layer::conv("dw", 1, 144, 144, 56, 3, 1, 1, 144, 8, 8);
        assert!(dw.is_depthwise());
        assert_eq!(dw.macs(), 56 * 56 * 9 * 144);
        assert!(dw.validate().is_ok());
    }

    #[test]
    fn impossible_layers_are_rejected_with_the_field() {
        let mut l = Layer::conv("x", 1, 3, 64, 4, 7, 1, 0, 1, 8, 8);
        assert_eq!(l.validate().unwrap_err().field, "kernel");
        l = Layer::conv("x", 1, 6, 64, 32, 3, 1, 1, 4, 8, 8);
        assert_eq!(l.validate().unwrap_err().field, "groups");
        l = Layer::conv("x", 1, 8, 8, 32, 3, 1, 1, 1, 32, 8);
        let e = l.validate().unwrap_err();
        assert_eq!(e.field, "w_bits");
        assert!(e.message.contains("unsupported bit width 32"));
        l = Layer::fc("f", 1, 10, 10, 8, 8);
        l.kernel = 3;
        assert_eq!(l.validate().unwrap_err().field, "kernel");
        l = Layer::conv("x", 0, 8, 8, 32, 3, 1, 1, 1, 8, 8);
        assert_eq!(l.validate().unwrap_err().field, "batch");
    }

    #[test]
    fn size_products_never_wrap() {
        // 65,536 channels in and out at 65,536 x 65,536: the MACs wrap to 0 in u64 arithmetic.
        let mut l = Layer::conv("huge", 1, 8, 8, 8, 1, 1, 0, 1, 8, 8);
        (l.in_channels, l.out_channels, l.in_h, l.in_w) = (65_536, 65_536, 65_536, 65_536);
        let e = l.validate().unwrap_err();
        assert_eq!(e.field, "in_channels", "{e}");
        assert!(e.message.contains("multiply-accumulates above the limit of 2^46"), "{e}");
        assert_eq!(l.macs(), u64::MAX, "saturates instead of wrapping");
        // A huge input with few MACs (a stride that skips almost all of it).
        let mut l = Layer::conv("strided", 1024, 1024, 1, 8, 1, 1, 0, 1, 8, 8);
        (l.in_h, l.in_w, l.stride) = (1 << 20, 1 << 20, 1 << 20);
        let e = l.validate().unwrap_err();
        assert!(e.message.contains("input elements"), "{e}");
        assert!(Layer::conv("ok", 1, 64, 64, 56, 3, 1, 1, 1, 8, 8).validate().is_ok());
    }
}
