//! once-for-all's formats (mit-han-lab/once-for-all @ 80a2e26,
//! `ofa/nas/efficiency_predictor/latency_lookup_table.py`).
//!
//! **Latency table**: OFA loads one YAML file per input resolution, `{R}_lookup_table.yaml`, with
//! `yaml.load`; each key maps to `{count, mean, std}` (`mean` in ms; the ProxylessNAS table
//! `mobile_trim.yaml` has `var` instead of `std`; OFA reads only `mean`). Our spaces are
//! ProxylessNAS-style chains, so the keys are `ProxylessNASLatencyTable.query`'s:
//!
//! * `Conv-input:{R}x{R}x{C}-output:{H}x{H}x{C'}`: the stem;
//! * `expanded_conv-input:{H}x{H}x{C}-output:{H'}x{H'}x{C'}-expand:{MID}-kernel:{K}-stride:{S}-idskip:{I}`:
//!   a block (expand + depthwise + project; the fixed first block is depthwise + project), `idskip`
//!   1 when stride is 1 and input and output widths agree (APQ's rule). `expand` is the **middle
//!   channel count**, as in OFA's MobileNetV3 tables (`MBv3LatencyTable`, `expand:%d % mid`): our
//!   middle widths are multiples of 8, mostly not integer ratios of the input width, which the
//!   ProxylessNAS table's `expand:%d % expand_ratio` could not tell apart;
//! * `Conv_1-input:{H}x{H}x{C}-output:{H}x{H}x{F}`: the feature mix (when the space has one);
//! * `Logits-input:{H}x{H}x{F}-output:{classes}`: pooling and classifier (pooling costs nothing here).
//!
//! Values: `count` 1 (one deterministic simulation), `mean` the latency in ms, `std` 0. Keys are
//! sorted, as `yaml.dump` writes them. The file is JSON, which is YAML 1.2 (PyYAML loads it).
//!
//! **Bits.** OFA's tables have no precision axis: one table holds every searchable layer at one
//! (weight, activation) precision, both pointwise and depthwise (`--bits W,A`, default 8,8); the
//! fixed stem, first block and head stay at the space's bits. Each layer's entry is the one stored
//! at its own activation bits (exact whenever the next layer runs at the same precision, and
//! always under the reference model).
//!
//! **Resolution.** A space has one input resolution, so one file: `file_name(R)` when `--out` is a
//! directory.
//!
//! **Architecture**: OFA's dict `{"ks": [...], "e": [...], "d": [...], "r": [R]}` (the accuracy
//! predictor's and `set_active_subnet`'s arguments): per block slot the kernel and the expand ratio
//! `mid / cin` (OFA recovers the width as `make_divisible(round(cin * e), 8)`), per stage the depth;
//! skipped slots padded as APQ pads them.

use super::apq::ks_e_d;
use super::{InteropError, Py, ints};
use crate::arch::{Arch, Block, block_layers};
use crate::lut::{LayerKey, Lut, fixed_keys};
use crate::space::Space;
use std::collections::BTreeMap;

/// OFA's file name for resolution `r`.
pub fn file_name(resolution: u32) -> String {
    format!("{resolution}_lookup_table.yaml")
}

/// Parse `W,A` bits and check both are choices of `space`.
pub fn parse_bits(given: &str, space: &Space) -> Result<(u32, u32), InteropError> {
    let bad = |reason: String| InteropError::Bits { given: given.to_string(), reason };
    let (w, a) = given.split_once(',').ok_or_else(|| bad("expected W,A (weight and activation bits, e.g. 8,8)".into()))?;
    let num = |s: &str| s.trim().parse::<u32>().map_err(|_| bad(format!("'{}' is not a bit width", s.trim())));
    let (w, a) = (num(w)?, num(a)?);
    for b in [w, a] {
        if !space.bits.contains(&b) {
            return Err(bad(format!("{b} bits is not a choice of space '{}' {:?}", space.name, space.bits)));
        }
    }
    Ok((w, a))
}

/// `HxWxC`.
fn hwc(size: u32, c: u32) -> String {
    format!("{size}x{size}x{c}")
}

/// A block's key.
fn block_key(size: u32, cin: u32, out: u32, cout: u32, mid: u32, k: u32, stride: u32) -> String {
    let idskip = u32::from(stride == 1 && cin == cout);
    format!("expanded_conv-input:{}-output:{}-expand:{mid}-kernel:{k}-stride:{stride}-idskip:{idskip}", hwc(size, cin), hwc(out, cout))
}

/// The summed latency (ms) of `keys`, or the first missing.
fn latency(lut: &Lut, keys: &[LayerKey]) -> Result<f64, InteropError> {
    keys.iter()
        .map(|k| lut.entries.get(k).map(|e| e.latency_ms).ok_or_else(|| InteropError::MissingEntry { key: k.apq_key(), out_bits: k.out_bits }))
        .sum()
}

/// One OFA latency table.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    /// The input resolution (the file's `R`).
    pub resolution: u32,
    /// Key -> latency in ms.
    pub entries: BTreeMap<String, f64>,
}

impl Table {
    /// The table as OFA's YAML, written as JSON (one entry per line, keys sorted).
    pub fn to_yaml(&self) -> String {
        let mut s = String::from("{\n");
        for (i, (k, ms)) in self.entries.iter().enumerate() {
            let v = Py::Dict(vec![("count".into(), Py::Int(1)), ("mean".into(), Py::Float(*ms)), ("std".into(), Py::Float(0.0))]);
            s.push_str(&format!("  {}: {v}{}\n", Py::Str(k.clone()), if i + 1 < self.entries.len() { "," } else { "" }));
        }
        s.push_str("}\n");
        s
    }
}

/// The LUT's OFA latency table at `(w, a)` bits (see the module documentation).
pub fn latency_table(lut: &Lut, w: u32, a: u32) -> Result<Table, InteropError> {
    let space = &lut.header.space;
    let batch = lut.header.batch;
    let mut entries = BTreeMap::new();
    let (trunk, head) = fixed_keys(space, batch);
    let stem = &space.stem;
    let r = space.input_size;
    let s0 = Space::after(r, stem.kernel, stem.stride);
    entries.insert(format!("Conv-input:{}-output:{}", hwc(r, space.input_channels), hwc(s0, stem.out_channels)), latency(lut, &trunk[..1])?);
    if let Some(f) = &space.first_block {
        let key = block_key(s0, stem.out_channels, s0, f.out_channels, stem.out_channels, f.kernel, 1);
        entries.insert(key, latency(lut, &trunk[1..])?);
    }
    for sl in space.slots() {
        for &mid in &sl.mids {
            for &kernel in &space.kernels {
                let b = Block { kernel, mid, pw_w: w, pw_a: a, dw_w: w, dw_a: a };
                let keys: Vec<LayerKey> = block_layers(&sl, &b, batch).iter().map(|l| LayerKey::of(l, a)).collect();
                let out = Space::after(sl.in_size, 1, sl.stride);
                entries.insert(block_key(sl.in_size, sl.in_channels, out, sl.out_channels, mid, kernel, sl.stride), latency(lut, &keys)?);
            }
        }
    }
    let (c, size) = space.head_in();
    let h = &space.head;
    let feat = if h.feature_mix > 0 {
        entries.insert(format!("Conv_1-input:{}-output:{}", hwc(size, c), hwc(size, h.feature_mix)), latency(lut, &head[..1])?);
        h.feature_mix
    } else {
        c
    };
    entries.insert(format!("Logits-input:{}-output:{}", hwc(size, feat), h.classes), latency(lut, &head[head.len() - 1..])?);
    Ok(Table { resolution: r, entries })
}

/// `arch` as OFA's architecture dict `{"ks", "e", "d", "r"}` (Python's `json.dump` spacing).
pub fn arch_json(space: &Space, arch: &Arch) -> String {
    let (ks, e, d) = ks_e_d(space, arch);
    Py::Dict(vec![("ks".into(), ks), ("e".into(), e), ("d".into(), d), ("r".into(), ints([space.input_size]))]).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_ofas_format() {
        assert_eq!(block_key(112, 16, 56, 24, 96, 5, 2), "expanded_conv-input:112x112x16-output:56x56x24-expand:96-kernel:5-stride:2-idskip:0");
        assert_eq!(block_key(14, 96, 14, 96, 480, 3, 1), "expanded_conv-input:14x14x96-output:14x14x96-expand:480-kernel:3-stride:1-idskip:1");
        assert_eq!(file_name(224), "224_lookup_table.yaml");
        let t = Table { resolution: 8, entries: [("a".to_string(), 0.5), ("b".to_string(), 1e-7)].into_iter().collect() };
        let text = t.to_yaml();
        assert_eq!(text, "{\n  \"a\": {\"count\": 1, \"mean\": 0.5, \"std\": 0.0},\n  \"b\": {\"count\": 1, \"mean\": 1e-7, \"std\": 0.0}\n}\n");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["b"]["mean"], 1e-7);
    }

    #[test]
    fn bits_are_checked_against_the_space() {
        let space = Space::load("apq").unwrap();
        assert_eq!(parse_bits("4,8", &space).unwrap(), (4, 8));
        assert_eq!(parse_bits(" 6 , 6", &space).unwrap(), (6, 6));
        assert_eq!(parse_bits("8", &space).unwrap_err().to_string(), "--bits 8: expected W,A (weight and activation bits, e.g. 8,8)");
        assert_eq!(parse_bits("2,8", &space).unwrap_err().to_string(), "--bits 2,8: 2 bits is not a choice of space 'apq' [4, 6, 8]");
        assert_eq!(parse_bits("8,x", &space).unwrap_err().to_string(), "--bits 8,x: 'x' is not a bit width");
    }

    #[test]
    fn arch_dict_has_ofas_fields() {
        let space = Space::load("apq").unwrap();
        let a = Arch::random(&space, &mut 4);
        let v: serde_json::Value = serde_json::from_str(&arch_json(&space, &a)).unwrap();
        assert_eq!(v["r"], serde_json::json!([224]));
        assert_eq!(v["ks"].as_array().unwrap().len(), 21);
        let first = &a.stages[0][0];
        assert_eq!(v["e"][0].as_f64().unwrap(), first.mid as f64 / 16.0);
        assert_eq!(v["d"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect::<Vec<_>>(), a.stages.iter().map(|s| s.len()).collect::<Vec<_>>());
    }
}
