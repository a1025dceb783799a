//! Search spaces as data: a MobileNetV2-style chain (fixed stem, an optional fixed first block,
//! stages of inverted-residual blocks, a fixed head), read from TOML. Presets are embedded
//! (`spaces/*.toml`) and chosen by name; user files by path.
//!
//! Per stage: output width, stride, depth choices. Per block: kernel choices, middle-channel choices
//! (every multiple of `channel_step` between `expand_min` and `expand_max` times the block's input
//! width: the channel-pruning axis), and bit choices for the weights and activations of its pointwise
//! and depthwise convolutions separately.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::Path;

/// The fixed first convolution.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stem {
    pub out_channels: u32,
    pub kernel: u32,
    pub stride: u32,
    /// Weight and activation bits.
    pub bits: u32,
}

/// The fixed first block: depthwise kxk then a pointwise projection (expand ratio 1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirstBlock {
    pub out_channels: u32,
    pub kernel: u32,
    pub bits: u32,
}

/// A stage of searchable blocks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    /// Output channels of every block of the stage.
    pub width: u32,
    /// Stride of the stage's first block.
    pub stride: u32,
    /// How many blocks may be active (the first d are).
    pub depths: Vec<u32>,
}

/// The fixed head: an optional 1x1 feature-mix convolution, global pooling, a classifier.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Head {
    /// Output channels of the 1x1 feature-mix convolution (0: none).
    pub feature_mix: u32,
    pub classes: u32,
    pub bits: u32,
}

/// A search space.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Space {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Input resolution (square) and channels.
    pub input_size: u32,
    pub input_channels: u32,
    /// Kernel choices of every block's depthwise convolution.
    pub kernels: Vec<u32>,
    /// Middle channels: multiples of `channel_step` in [expand_min x Cin, expand_max x Cin].
    pub expand_min: f64,
    pub expand_max: f64,
    pub channel_step: u32,
    /// Bit choices of each of a block's four slots: pointwise weights and activations, depthwise
    /// weights and activations (both pointwise convolutions of a block share the pointwise bits).
    pub bits: Vec<u32>,
    pub stem: Stem,
    #[serde(default)]
    pub first_block: Option<FirstBlock>,
    pub stages: Vec<Stage>,
    pub head: Head,
}

/// A space that cannot be, phrased for the user on one line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct SpaceError(pub String);

/// The preset spaces, by name.
pub const PRESETS: &[(&str, &str)] = &[
    ("apq", include_str!("../spaces/apq.toml")),
    ("apq-wide-bits", include_str!("../spaces/apq-wide-bits.toml")),
    ("micro", include_str!("../spaces/micro.toml")),
];

/// A tiny space for tests (one stage of depth 1-2, kernels 3/5, two widths, bits 4/8: 4,160
/// architectures), shared by the unit and integration tests.
#[doc(hidden)]
pub const TINY_SPACE: &str = r#"
name = "tiny"
input_size = 8
input_channels = 1
kernels = [3, 5]
expand_min = 2.0
expand_max = 3.0
channel_step = 8
bits = [4, 8]
[stem]
out_channels = 8
kernel = 3
stride = 1
bits = 8
[[stages]]
width = 8
stride = 2
depths = [1, 2]
[head]
feature_mix = 0
classes = 10
bits = 8
"#;

/// One block slot of the space, where its shapes are fixed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    pub stage: usize,
    /// Index of the block within its stage (0 = first).
    pub index: usize,
    pub in_channels: u32,
    pub out_channels: u32,
    /// Input resolution of the block.
    pub in_size: u32,
    pub stride: u32,
    /// Middle-channel choices of this block.
    pub mids: Vec<u32>,
}

impl Space {
    /// A preset by name, or a TOML file by path.
    pub fn load(spec: &str) -> Result<Space, SpaceError> {
        if let Some((n, text)) = PRESETS.iter().find(|(n, _)| *n == spec) {
            return Space::from_toml(text, &format!("{n} (preset)"));
        }
        let path = Path::new(spec);
        if !path.exists() {
            return Err(SpaceError(format!(
                "{spec}: no such file, and not a preset space (presets: {})",
                PRESETS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| SpaceError(format!("{spec}: {e}")))?;
        Space::from_toml(&text, spec)
    }

    /// Parse and validate a space.
    pub fn from_toml(text: &str, origin: &str) -> Result<Space, SpaceError> {
        let s: Space = toml::from_str(text).map_err(|e: toml::de::Error| {
            let line = e.span().map(|sp| text[..sp.start.min(text.len())].matches('\n').count() + 1);
            SpaceError(format!("{origin}{}: {}", line.map(|l| format!(":{l}")).unwrap_or_default(), e.message().replace('\n', " ")))
        })?;
        s.validate(origin)?;
        Ok(s)
    }

    /// Validate a space that did not come through [`Space::from_toml`] (e.g. one embedded in a
    /// LUT file).
    pub fn check(&self) -> Result<(), SpaceError> {
        self.validate(&self.name)
    }

    fn validate(&self, origin: &str) -> Result<(), SpaceError> {
        let bad = |m: String| Err(SpaceError(format!("{origin}: {m}")));
        // Bounds keep every size product of the space's layers far inside u32/u64.
        const MAX_SIDE: u32 = 1 << 16;
        if self.input_size == 0 || self.input_channels == 0 || self.input_size > MAX_SIDE || self.input_channels > MAX_SIDE {
            return bad(format!("input_size and input_channels must be in 1..={MAX_SIDE}"));
        }
        let st = &self.stem;
        if st.stride == 0 || st.out_channels == 0 || st.kernel % 2 == 0 || st.stride > MAX_SIDE || st.out_channels > MAX_SIDE || st.kernel > 31 {
            return bad(format!("stem: out_channels and stride must be in 1..={MAX_SIDE}, kernel odd up to 31"));
        }
        if let Some(f) = &self.first_block
            && (f.out_channels == 0 || f.kernel % 2 == 0 || f.out_channels > MAX_SIDE || f.kernel > 31)
        {
            return bad(format!("first_block: out_channels must be in 1..={MAX_SIDE}, kernel odd up to 31"));
        }
        if self.head.classes == 0 || self.head.feature_mix > MAX_SIDE || self.head.classes > MAX_SIDE {
            return bad(format!("head: classes must be in 1..={MAX_SIDE}, feature_mix in 0..={MAX_SIDE} (0: none)"));
        }
        if self.kernels.is_empty() || self.kernels.iter().any(|k| k % 2 == 0 || *k == 0 || *k > 31) {
            return bad(format!("kernels = {:?}: give odd kernel sizes", self.kernels));
        }
        if self.bits.is_empty() || self.bits.iter().any(|b| !(1..=16).contains(b)) {
            return bad(format!("bits = {:?}: give bit widths in 1..=16", self.bits));
        }
        if !(self.expand_min > 0.0 && self.expand_min <= self.expand_max) || self.channel_step == 0 {
            return bad("expand_min must be positive and at most expand_max, channel_step positive".into());
        }
        if self.stages.is_empty() {
            return bad("no stages".into());
        }
        for (i, st) in self.stages.iter().enumerate() {
            if st.width == 0 || st.stride == 0 || st.depths.is_empty() || st.depths.contains(&0) || st.width > MAX_SIDE || st.stride > MAX_SIDE || st.depths.iter().any(|d| *d > 64) {
                return bad(format!("stages[{i}]: width and stride must be in 1..={MAX_SIDE}, depths non-empty in 1..=64"));
            }
        }
        for slot in self.slots() {
            if slot.mids.is_empty() {
                return bad(format!(
                    "stage {} block {}: no multiple of {} between {} and {} x {} input channels",
                    slot.stage, slot.index, self.channel_step, self.expand_min, self.expand_max, slot.in_channels
                ));
            }
            if slot.in_size == 0 {
                return bad(format!("stage {}: the resolution falls to 0", slot.stage));
            }
        }
        Ok(())
    }

    /// Resolution after a stride-s layer with a k x k kernel and pad k/2.
    pub fn after(size: u32, k: u32, s: u32) -> u32 {
        (size + 2 * (k / 2) - k) / s + 1
    }

    /// Output channels and resolution after the stem and the first block.
    pub fn trunk_out(&self) -> (u32, u32) {
        let mut size = Space::after(self.input_size, self.stem.kernel, self.stem.stride);
        let mut c = self.stem.out_channels;
        if let Some(f) = &self.first_block {
            size = Space::after(size, f.kernel, 1);
            c = f.out_channels;
        }
        (c, size)
    }

    /// Every block slot, stage by stage.
    pub fn slots(&self) -> Vec<Slot> {
        let (mut cin, mut size) = self.trunk_out();
        let mut out = Vec::new();
        for (s, st) in self.stages.iter().enumerate() {
            let max_d = *st.depths.iter().max().unwrap_or(&1);
            for i in 0..max_d as usize {
                let stride = if i == 0 { st.stride } else { 1 };
                let lo = (self.expand_min * cin as f64).ceil() as u32;
                let hi = (self.expand_max * cin as f64).floor() as u32;
                let step = self.channel_step;
                let mids: Vec<u32> = (lo.div_ceil(step)..=hi / step).map(|k| k * step).filter(|m| *m > 0).collect();
                out.push(Slot { stage: s, index: i, in_channels: cin, out_channels: st.width, in_size: size, stride, mids });
                cin = st.width;
                size = Space::after(size, 1, stride);
            }
        }
        out
    }

    /// The stage's final resolution and channels feed the head.
    pub fn head_in(&self) -> (u32, u32) {
        let slots = self.slots();
        let last = slots.last().expect("a validated space has blocks");
        (last.out_channels, Space::after(last.in_size, 1, last.stride))
    }

    /// A content hash of the space (SHA-256 of its canonical TOML), hex.
    pub fn hash(&self) -> String {
        let canonical = toml::to_string(self).expect("a space serialises");
        hex(&Sha256::digest(canonical.as_bytes()))
    }
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_load_and_have_the_papers_shape() {
        let apq = Space::load("apq").unwrap();
        let slots = apq.slots();
        assert_eq!(slots.len(), 21);
        let mids: Vec<usize> = slots.iter().map(|s| s.mids.len()).collect();
        // APQ's per-block choice counts (NOTES.md 1.2): 5,7,7,7,7,11,...,49.
        assert_eq!(mids, vec![5, 7, 7, 7, 7, 11, 11, 11, 11, 21, 21, 21, 21, 25, 25, 25, 25, 49, 49, 49, 49]);
        let sizes: Vec<u32> = slots.iter().map(|s| s.in_size).collect();
        assert_eq!(&sizes[..6], &[112, 56, 56, 56, 56, 28]);
        assert_eq!(apq.head_in(), (320, 7));
        assert_eq!(Space::load("apq-wide-bits").unwrap().bits, vec![2, 4, 6, 8]);
        let micro = Space::load("micro").unwrap();
        assert_eq!(micro.input_channels, 1);
        assert_eq!(micro.input_size, 28);
        assert!(micro.slots().len() <= 12);
    }

    #[test]
    fn bad_spaces_are_errors() {
        let apq = PRESETS[0].1;
        let e = Space::from_toml(&apq.replace("kernels = [3, 5, 7]", "kernels = [3, 4]"), "s").unwrap_err().0;
        assert!(e.contains("odd kernel sizes"), "{e}");
        let e = Space::from_toml(&apq.replace("bits = [4, 6, 8]", "bits = [4, 32]"), "s").unwrap_err().0;
        assert!(e.contains("bit widths in 1..=16"), "{e}");
        let e = Space::from_toml(&format!("{apq}\ncolour = 1\n"), "s").unwrap_err().0;
        assert!(e.contains("unknown field `colour`"), "{e}");
        let e = Space::load("nope").unwrap_err().0;
        assert!(e.contains("not a preset space"), "{e}");
        assert_ne!(Space::load("apq").unwrap().hash(), Space::load("apq-wide-bits").unwrap().hash());
    }

    #[test]
    fn spaces_that_would_crash_are_refused() {
        // Found by fuzzing: a stem stride of 0 divided by zero; a huge input overflowed.
        let stem = TINY_SPACE.replacen("stride = 1", "stride = 0", 1);
        assert_ne!(stem, TINY_SPACE);
        let e = Space::from_toml(&stem, "t").unwrap_err().to_string();
        assert!(e.contains("stride"), "{e}");
        let huge = TINY_SPACE.replace("input_size = 8", "input_size = 4294967295");
        let e = Space::from_toml(&huge, "t").unwrap_err().to_string();
        assert!(e.contains("input_size"), "{e}");
        Space::from_toml(TINY_SPACE, "t").unwrap().check().unwrap();
    }
}
