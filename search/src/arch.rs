//! Architectures: points of a search space, their canonical text form, their one-hot encoding, and
//! the layers they contain.
//!
//! **Canonical text**: the space name, then each stage's active blocks, stages separated by `|`,
//! blocks by `,`; a block is `k{kernel}-m{middle channels}-pw{w}x{a}-dw{w}x{a}`:
//!
//! `apq:k3-m96-pw8x8-dw8x8,k5-m120-pw4x4-dw6x8|k7-m200-pw4x8-dw4x4,...`
//!
//! The number of blocks written for a stage is its depth. The JSON form has the same content;
//! `Arch::parse` also takes a search's `best.json` (its `arch` field).
//!
//! **Encoding** (APQ's layout, `shared/reference/search/NOTES.md` 1.2): for every block slot in
//! order, a one-hot of its kernel; then for every slot a one-hot of its middle channels; then, for
//! each of the four bit slots (pw_w, pw_a, dw_w, dw_a) in turn, every block's one-hot of that slot's
//! bits. A block skipped by its stage's depth is all zeros. The first two parts are the
//! architecture encoding (what an fp32 predictor sees), the last the bit encoding.

use crate::space::{Slot, Space};
use bitfusion_simulator::Layer;
use bitfusion_util::splitmix;
use serde::{Deserialize, Serialize};

/// One active block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Block {
    pub kernel: u32,
    pub mid: u32,
    /// Pointwise (expand and project) weight and activation bits.
    pub pw_w: u32,
    pub pw_a: u32,
    /// Depthwise weight and activation bits.
    pub dw_w: u32,
    pub dw_a: u32,
}

/// A point of a space: per stage, its active blocks.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Arch {
    pub space: String,
    pub stages: Vec<Vec<Block>>,
}

/// An architecture that does not belong to its space, phrased for the user on one line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct ArchError(pub String);

impl Block {
    fn text(&self) -> String {
        format!("k{}-m{}-pw{}x{}-dw{}x{}", self.kernel, self.mid, self.pw_w, self.pw_a, self.dw_w, self.dw_a)
    }

    fn parse(s: &str) -> Option<Block> {
        let mut it = s.split('-');
        let kernel = it.next()?.strip_prefix('k')?.parse().ok()?;
        let mid = it.next()?.strip_prefix('m')?.parse().ok()?;
        let pair = |p: &str, pre: &str| -> Option<(u32, u32)> {
            let (w, a) = p.strip_prefix(pre)?.split_once('x')?;
            Some((w.parse().ok()?, a.parse().ok()?))
        };
        let (pw_w, pw_a) = pair(it.next()?, "pw")?;
        let (dw_w, dw_a) = pair(it.next()?, "dw")?;
        it.next().is_none().then_some(Block { kernel, mid, pw_w, pw_a, dw_w, dw_a })
    }
}

impl Arch {
    /// The canonical text form.
    pub fn to_text(&self) -> String {
        let stages: Vec<String> = self.stages.iter().map(|s| s.iter().map(Block::text).collect::<Vec<_>>().join(",")).collect();
        format!("{}:{}", self.space, stages.join("|"))
    }

    /// Parse the canonical text form (or the JSON form) and check it against `space`.
    pub fn parse(text: &str, space: &Space) -> Result<Arch, ArchError> {
        let text = text.trim();
        let arch = if text.starts_with('{') {
            // A search's `best.json` holds the canonical text under "arch".
            if let Ok(serde_json::Value::Object(m)) = serde_json::from_str::<serde_json::Value>(text)
                && let Some(serde_json::Value::String(inner)) = m.get("arch")
            {
                return Arch::parse(inner, space);
            }
            serde_json::from_str::<Arch>(text).map_err(|e| ArchError(format!("architecture JSON: {e}")))?
        } else {
            let (name, body) = text.split_once(':').ok_or_else(|| ArchError(format!("'{text}': expected SPACE:blocks|blocks|...")))?;
            let stages = body
                .split('|')
                .enumerate()
                .map(|(i, st)| {
                    st.split(',')
                        .filter(|b| !b.is_empty())
                        .map(|b| Block::parse(b.trim()).ok_or_else(|| ArchError(format!("stage {i}: '{b}' is not a block (k3-m96-pw8x8-dw8x8)"))))
                        .collect::<Result<Vec<_>, _>>()
                })
                .collect::<Result<Vec<_>, _>>()?;
            Arch { space: name.to_string(), stages }
        };
        arch.check(space)?;
        Ok(arch)
    }

    /// Is this architecture a point of `space`? The error names what is outside it.
    pub fn check(&self, space: &Space) -> Result<(), ArchError> {
        let bad = |m: String| Err(ArchError(m));
        if self.space != space.name {
            return bad(format!("the architecture is of space '{}', not '{}'", self.space, space.name));
        }
        if self.stages.len() != space.stages.len() {
            return bad(format!("{} stages given, the space has {}", self.stages.len(), space.stages.len()));
        }
        let slots = space.slots();
        for (s, (blocks, st)) in self.stages.iter().zip(&space.stages).enumerate() {
            if !st.depths.contains(&(blocks.len() as u32)) {
                return bad(format!("stage {s}: depth {} is not one of {:?}", blocks.len(), st.depths));
            }
            for (i, b) in blocks.iter().enumerate() {
                let slot = slots.iter().find(|x| x.stage == s && x.index == i).expect("slot of an allowed depth");
                if !space.kernels.contains(&b.kernel) {
                    return bad(format!("stage {s} block {i}: kernel {} is not one of {:?}", b.kernel, space.kernels));
                }
                if !slot.mids.contains(&b.mid) {
                    return bad(format!("stage {s} block {i}: {} middle channels is not one of {:?}", b.mid, slot.mids));
                }
                for (what, v) in [("pw_w", b.pw_w), ("pw_a", b.pw_a), ("dw_w", b.dw_w), ("dw_a", b.dw_a)] {
                    if !space.bits.contains(&v) {
                        return bad(format!("stage {s} block {i}: {what} = {v} bits is not one of {:?}", space.bits));
                    }
                }
            }
        }
        Ok(())
    }

    /// A uniformly random architecture of `space` (every choice independent), from `state`.
    pub fn random(space: &Space, state: &mut u64) -> Arch {
        let slots = space.slots();
        let mut pick = |n: usize| (splitmix(state) % n as u64) as usize;
        let stages = space
            .stages
            .iter()
            .enumerate()
            .map(|(s, st)| {
                let d = st.depths[pick(st.depths.len())] as usize;
                (0..d)
                    .map(|i| {
                        let slot = slots.iter().find(|x| x.stage == s && x.index == i).expect("slot");
                        let bit = |p: &mut dyn FnMut(usize) -> usize| space.bits[p(space.bits.len())];
                        Block {
                            kernel: space.kernels[pick(space.kernels.len())],
                            mid: slot.mids[pick(slot.mids.len())],
                            pw_w: bit(&mut pick),
                            pw_a: bit(&mut pick),
                            dw_w: bit(&mut pick),
                            dw_a: bit(&mut pick),
                        }
                    })
                    .collect()
            })
            .collect();
        Arch { space: space.name.clone(), stages }
    }

    /// The active block in each slot (None when the stage's depth skips it), slot order.
    fn by_slot<'a>(&'a self, slots: &[Slot]) -> Vec<Option<&'a Block>> {
        slots.iter().map(|sl| self.stages.get(sl.stage).and_then(|st| st.get(sl.index))).collect()
    }

    /// APQ's one-hot encoding (see the module documentation): (architecture part, bit part).
    pub fn encode(&self, space: &Space) -> (Vec<f32>, Vec<f32>) {
        let slots = space.slots();
        let blocks = self.by_slot(&slots);
        let mut arch = Vec::new();
        for b in &blocks {
            arch.extend(space.kernels.iter().map(|k| if b.is_some_and(|b| b.kernel == *k) { 1.0 } else { 0.0 }));
        }
        for (b, sl) in blocks.iter().zip(&slots) {
            arch.extend(sl.mids.iter().map(|m| if b.is_some_and(|b| b.mid == *m) { 1.0 } else { 0.0 }));
        }
        let mut bits = Vec::new();
        let slots_of: [fn(&Block) -> u32; 4] = [|b| b.pw_w, |b| b.pw_a, |b| b.dw_w, |b| b.dw_a];
        for get in slots_of {
            for b in &blocks {
                bits.extend(space.bits.iter().map(|x| if b.is_some_and(|b| get(b) == *x) { 1.0 } else { 0.0 }));
            }
        }
        (arch, bits)
    }

    /// Every layer of the architecture in network order (stem, first block, blocks, head), each with
    /// its batch and bits.
    pub fn layers(&self, space: &Space, batch: u32) -> Vec<Layer> {
        let mut v = Vec::new();
        let st = &space.stem;
        v.push(
            Layer::conv("stem", batch, space.input_channels, st.out_channels, space.input_size, st.kernel, st.stride, st.kernel / 2, 1, st.bits, st.bits)
                .with_im2col(true),
        );
        let size = Space::after(space.input_size, st.kernel, st.stride);
        if let Some(f) = &space.first_block {
            let c = st.out_channels;
            v.push(Layer::conv("first_dw", batch, c, c, size, f.kernel, 1, f.kernel / 2, c, f.bits, f.bits));
            v.push(Layer::conv("first_project", batch, c, f.out_channels, size, 1, 1, 0, 1, f.bits, f.bits));
        }
        let slots = space.slots();
        for (sl, b) in slots.iter().zip(self.by_slot(&slots)) {
            let Some(b) = b else { continue };
            v.extend(block_layers(sl, b, batch));
        }
        let (c, hsize) = space.head_in();
        let h = &space.head;
        let mut feat = c;
        if h.feature_mix > 0 {
            v.push(Layer::conv("feature_mix", batch, c, h.feature_mix, hsize, 1, 1, 0, 1, h.bits, h.bits));
            feat = h.feature_mix;
        }
        v.push(Layer::fc("classifier", batch, feat, h.classes, h.bits, h.bits));
        v
    }
}

/// The three layers of `block` in `slot`: expand, depthwise, project.
pub fn block_layers(sl: &Slot, b: &Block, batch: u32) -> [Layer; 3] {
    let name = format!("s{}b{}", sl.stage, sl.index);
    let size = sl.in_size;
    let out = Space::after(size, b.kernel, sl.stride);
    [
        Layer::conv(&format!("{name}_expand"), batch, sl.in_channels, b.mid, size, 1, 1, 0, 1, b.pw_w, b.pw_a),
        Layer::conv(&format!("{name}_dw"), batch, b.mid, b.mid, size, b.kernel, sl.stride, b.kernel / 2, b.mid, b.dw_w, b.dw_a),
        Layer::conv(&format!("{name}_project"), batch, b.mid, sl.out_channels, out, 1, 1, 0, 1, b.pw_w, b.pw_a),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_json_round_trip_and_check() {
        let space = Space::load("apq").unwrap();
        let mut seed = 3;
        for _ in 0..200 {
            let a = Arch::random(&space, &mut seed);
            assert_eq!(Arch::parse(&a.to_text(), &space).unwrap(), a);
            assert_eq!(Arch::parse(&serde_json::to_string(&a).unwrap(), &space).unwrap(), a);
        }
        let a = Arch::random(&space, &mut seed);
        let t = a.to_text();
        let e = Arch::parse(&t.replacen("-m", "-m1", 1), &space).unwrap_err().0;
        assert!(e.contains("middle channels is not one of"), "{e}");
        let e = Arch::parse(&t.replacen("k", "k9", 1).replacen("k9", "k", 0), &space).unwrap_err().0;
        assert!(e.contains("kernel") || e.contains("not a block"), "{e}");
        let e = Arch::parse(&t.replace("micro", "x").replacen("apq:", "micro:", 1), &space).unwrap_err().0;
        assert!(e.contains("of space 'micro'"), "{e}");
        let e = Arch::parse("apq:k3-m96-pw8x8-dw8x8", &space).unwrap_err().0;
        assert!(e.contains("1 stages given"), "{e}");
    }

    #[test]
    fn encoding_has_apqs_dimensions() {
        let space = Space::load("apq").unwrap();
        let a = Arch::random(&space, &mut 9);
        let (arch, bits) = a.encode(&space);
        assert_eq!(arch.len(), 520); // 63 kernel + 457 middle-channel dims
        assert_eq!(bits.len(), 252); // 21 blocks x 4 slots x 3 bit choices
        let active: usize = a.stages.iter().map(|s| s.len()).sum();
        assert_eq!(arch.iter().sum::<f32>() as usize, 2 * active);
        assert_eq!(bits.iter().sum::<f32>() as usize, 4 * active);
    }

    #[test]
    fn layers_follow_the_chain() {
        let space = Space::load("apq").unwrap();
        let a = Arch::random(&space, &mut 5);
        let layers = a.layers(&space, 1);
        let active: usize = a.stages.iter().map(|s| s.len()).sum();
        assert_eq!(layers.len(), 1 + 2 + 3 * active + 2);
        for l in &layers {
            l.validate().unwrap_or_else(|e| panic!("{}: {e}", l.name));
        }
        // Every layer reads what the previous one wrote.
        for w in layers.windows(2) {
            if w[1].kind == bitfusion_simulator::LayerKind::Conv {
                assert_eq!(w[0].out_channels, w[1].in_channels, "{} -> {}", w[0].name, w[1].name);
                assert_eq!(w[0].out_h(), w[1].in_h, "{} -> {}", w[0].name, w[1].name);
            }
        }
        assert_eq!(layers.last().unwrap().in_channels, 1280);
    }
}
