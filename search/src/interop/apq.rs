//! APQ's formats (mit-han-lab/apq @ 428190a).
//!
//! **LUT dict** (`lut/BitFusion_new.b1.dict`, read by `utils/latency_predictor.py` with
//! `json.load`): one JSON object, Python's `json.dump` spacing, keys
//! `"(cin, cout, input_size, kernel, stride, pad, groups)-W{w}A{a}"` (`LayerKey::apq_key`) mapping
//! to `{"energy": mJ, "latency": ms}` (the original's units: a batch-1 network sums to a few ms
//! and mJ), plus `"head"` (everything before the searchable blocks: stem and first block) and
//! `"tail"` (feature mix and classifier) as sums in the same shape. What the dict cannot hold:
//! our output-precision axis (one entry per key, chosen by `lut::apq_view`), fully connected layers
//! as keys (the classifier is inside `tail`), the batch (APQ puts it in the file name, `b1`) and
//! the hardware provenance; an entry without energy (a config with no SRAM figures) has
//! `"energy": null`.
//!
//! **Architecture** (`exps/<name>/arch`, written by `search.py` as `json.dump([info1, info2])`):
//! `[{"wid": null, "ks": [...], "e": [...], "d": [...]}, {"pw_w_bits_setting": [...],
//! "pw_a_bits_setting": [...], "dw_w_bits_setting": [...], "dw_a_bits_setting": [...]}]`. `ks`, `e`
//! and the bit lists have one value per block slot, in slot order (stage by stage, each stage's
//! deepest depth; APQ's `layer = 4 * stage + index` for its 21 slots); `d` one depth per stage. `e`
//! is the expand ratio `mid / cin` as a float (`converter.py`: `k / t`), turned back into middle
//! channels by APQ's `make_divisible(e * cin, 8)`. A slot skipped by its stage's depth gets the
//! values `converter.feature2spec` gives it: the first kernel (3), `expand_min` (4) and the widest
//! bits (8).

use super::{InteropError, Py, ints};
use crate::arch::{Arch, Block};
use crate::lut::{Entry, LayerKey, Lut, Theirs, apq_view, fixed_keys, read_apq_csv};
use crate::space::Space;
use serde_json::Value;
use std::path::Path;

/// A block's bits of one slot (pw_w, pw_a, dw_w or dw_a).
type BitsOf = fn(&Block) -> u32;

/// The four bit lists of APQ's architecture, in its order, with our block's field.
const BIT_LISTS: [(&str, BitsOf); 4] =
    [("pw_w_bits_setting", |b| b.pw_w), ("pw_a_bits_setting", |b| b.pw_a), ("dw_w_bits_setting", |b| b.dw_w), ("dw_a_bits_setting", |b| b.dw_a)];

/// `{"energy": mJ, "latency": ms}` in APQ's key order.
fn cost(latency_ms: f64, energy_mj: Option<f64>) -> Py {
    Py::Dict(vec![("energy".into(), energy_mj.map_or(Py::Null, Py::Float)), ("latency".into(), Py::Float(latency_ms))])
}

/// The summed cost of `keys` (a whole fixed part of the network), or the first key not in the LUT.
fn sum(lut: &Lut, keys: &[LayerKey]) -> Result<Py, InteropError> {
    let entries = keys
        .iter()
        .map(|k| lut.entries.get(k).ok_or_else(|| InteropError::MissingEntry { key: k.apq_key(), out_bits: k.out_bits }))
        .collect::<Result<Vec<&Entry>, _>>()?;
    Ok(cost(entries.iter().map(|e| e.latency_ms).sum(), entries.iter().map(|e| e.energy_mj).sum()))
}

/// The LUT as APQ's dict (see the module documentation), in our key order, `head` and `tail` last
/// as in the original.
pub fn lut_dict(lut: &Lut) -> Result<String, InteropError> {
    let mut items: Vec<(String, Py)> = apq_view(lut).into_iter().map(|(k, e)| (k, cost(e.latency_ms, e.energy_mj))).collect();
    let (head, tail) = fixed_keys(&lut.header.space, lut.header.batch);
    items.push(("head".into(), sum(lut, &head)?));
    items.push(("tail".into(), sum(lut, &tail)?));
    Ok(Py::Dict(items).to_string())
}

/// `(cin, cout, in, k, s, pad, groups)-W{w}A{a}` as its nine numbers.
fn parse_key(key: &str) -> Option<[u32; 9]> {
    let (tuple, bits) = key.strip_prefix('(')?.split_once(")-W")?;
    let (w, a) = bits.split_once('A')?;
    let mut out = [0u32; 9];
    let mut fields = tuple.split(',').map(|f| f.trim().parse::<u32>().ok());
    for slot in out.iter_mut().take(7) {
        *slot = fields.next()??;
    }
    if fields.next().is_some() {
        return None;
    }
    out[7] = w.parse().ok()?;
    out[8] = a.parse().ok()?;
    Some(out)
}

/// Read APQ's LUT dict text (`origin` names it in errors) as entries to diff against, `head` and
/// `tail` left out (they have no layer shape), keys re-written in `apq_key`'s form. The original
/// file is plain JSON (checked on `BitFusion_new.b1.dict`); Python-literal dicts (single quotes,
/// tuple keys) are not read.
pub fn read_dict(text: &str, origin: &str) -> Result<Vec<Theirs>, InteropError> {
    let bad = |reason: String| InteropError::Dict { path: origin.to_string(), reason };
    let map: serde_json::Map<String, Value> = serde_json::from_str(text).map_err(|e| bad(format!("{e} (expected a JSON object)")))?;
    let mut out = Vec::with_capacity(map.len());
    for (key, v) in &map {
        if key == "head" || key == "tail" {
            continue;
        }
        let [cin, cout, size, k, s, pad, groups, w, a] =
            parse_key(key).ok_or_else(|| bad(format!("key '{key}' is not \"(cin, cout, in, k, s, pad, groups)-W{{w}}A{{a}}\"")))?;
        let field = |f: &str| v.get(f).and_then(Value::as_f64).ok_or_else(|| bad(format!("entry '{key}': no number '{f}'")));
        // Energy may be absent or null (a table of a config without energy figures).
        let energy = match v.get("energy") {
            None | Some(Value::Null) => None,
            Some(_) => Some(field("energy")?),
        };
        out.push(Theirs {
            key: format!("({cin}, {cout}, {size}, {k}, {s}, {pad}, {groups})-W{w}A{a}"),
            depthwise: groups > 1,
            latency_ms: field("latency")?,
            energy_mj: energy,
        });
    }
    Ok(out)
}

/// Read another LUT to diff against: APQ's dict when the file's first non-blank character is `{`,
/// else APQ's flat CSV (`lut::read_apq_csv`); detected by content, not by extension.
pub fn read_theirs(path: &Path) -> Result<Vec<Theirs>, InteropError> {
    let origin = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| InteropError::Read { path: origin.clone(), reason: e.to_string() })?;
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
        let text = String::from_utf8(bytes).map_err(|e| InteropError::Dict { path: origin.clone(), reason: e.to_string() })?;
        return read_dict(&text, &origin);
    }
    Ok(read_apq_csv(path)?)
}

/// Each slot's block, or None where its stage's depth skips it, in slot order.
pub(crate) fn slot_blocks<'a>(space: &Space, arch: &'a Arch) -> Vec<(crate::space::Slot, Option<&'a Block>)> {
    let block = |sl: &crate::space::Slot| arch.stages.get(sl.stage).and_then(|st| st.get(sl.index));
    space.slots().into_iter().map(|sl| {
        let b = block(&sl);
        (sl, b)
    }).collect()
}

/// The per-slot lists shared by APQ's and OFA's architecture dicts: `ks`, `e` (expand ratio
/// `mid / cin`), `d`, padded as `converter.feature2spec` pads a skipped slot.
pub(crate) fn ks_e_d(space: &Space, arch: &Arch) -> (Py, Py, Py) {
    let blocks = slot_blocks(space, arch);
    let pad_k = space.kernels[0];
    let ks = ints(blocks.iter().map(|(_, b)| b.map_or(pad_k, |b| b.kernel)));
    let e = Py::List(blocks.iter().map(|(sl, b)| Py::Float(b.map_or(space.expand_min, |b| b.mid as f64 / sl.in_channels as f64))).collect());
    let d = ints(arch.stages.iter().map(|s| s.len() as u32));
    (ks, e, d)
}

/// `arch` as APQ's `arch` JSON, exactly as `search.py` writes it (see the module documentation).
pub fn arch_json(space: &Space, arch: &Arch) -> String {
    let (ks, e, d) = ks_e_d(space, arch);
    let blocks = slot_blocks(space, arch);
    let pad_bits = space.bits.iter().copied().max().unwrap_or(8);
    let bits = BIT_LISTS.iter().map(|(name, get)| (name.to_string(), ints(blocks.iter().map(|(_, b)| b.map_or(pad_bits, get))))).collect();
    let info1 = Py::Dict(vec![("wid".into(), Py::Null), ("ks".into(), ks), ("e".into(), e), ("d".into(), d)]);
    Py::List(vec![info1, Py::Dict(bits)]).to_string()
}

/// APQ's `make_divisible(v, divisor)` on a float (`utils/converter.py`, `latency_predictor.py`):
/// `int(v + divisor / 2) // divisor * divisor`, at least `divisor`, raised by one `divisor` if below 90% of `v`.
fn apq_make_divisible(v: f64, divisor: u32) -> u32 {
    let d = divisor as f64;
    let mut x = d.max(((v + d / 2.0).floor() / d).floor() * d);
    if x < 0.9 * v {
        x += d;
    }
    x as u32
}

/// Read APQ's `arch` JSON (the `[info1, info2]` pair `search.py` writes, or one merged dict as
/// `predict_lat` takes) into our architecture of `space`. A stage's depth is `d` capped at the
/// stage's slots (APQ samples `d` in 2..4 for its one-block last stage); middle channels are
/// `make_divisible(e * cin, channel_step)`; the result is checked against the space.
pub fn arch_from_json(text: &str, space: &Space, origin: &str) -> Result<Arch, InteropError> {
    let bad = |reason: String| InteropError::Arch { origin: origin.to_string(), reason };
    let v: Value = serde_json::from_str(text).map_err(|e| bad(format!("not APQ's arch JSON: {e}")))?;
    let parts: Vec<&Value> = match &v {
        Value::Array(a) => a.iter().collect(),
        Value::Object(_) => vec![&v],
        _ => return Err(bad("not APQ's arch JSON: expected [{wid, ks, e, d}, {..._bits_setting}]".into())),
    };
    // Every list but `e` holds whole numbers (kernels, depths, bits); `3.5` is refused, not truncated.
    let list = |name: &str, whole: bool| -> Result<Vec<f64>, InteropError> {
        let l = parts.iter().find_map(|p| p.get(name)).ok_or_else(|| bad(format!("no list '{name}'")))?;
        let l = l.as_array().ok_or_else(|| bad(format!("'{name}' is not a list")))?;
        let what = if whole { "a whole number" } else { "a number" };
        l.iter()
            .map(|x| {
                x.as_f64()
                    .filter(|x| x.is_finite() && *x >= 0.0 && *x < 1e6 && (!whole || x.fract() == 0.0))
                    .ok_or_else(|| bad(format!("'{name}': {x} is not {what} in 0..1000000")))
            })
            .collect()
    };
    let slots = space.slots();
    let (ks, e, d) = (list("ks", true)?, list("e", false)?, list("d", true)?);
    let bits = BIT_LISTS.iter().map(|(n, _)| list(n, true)).collect::<Result<Vec<_>, _>>()?;
    for (name, l) in [("ks", &ks), ("e", &e)].into_iter().chain(BIT_LISTS.iter().map(|(n, _)| *n).zip(&bits)) {
        if l.len() != slots.len() {
            return Err(bad(format!("'{name}' has {} values, space '{}' has {} block slots", l.len(), space.name, slots.len())));
        }
    }
    if d.len() != space.stages.len() {
        return Err(bad(format!("'d' has {} values, space '{}' has {} stages", d.len(), space.name, space.stages.len())));
    }
    let mut stages: Vec<Vec<Block>> = vec![Vec::new(); space.stages.len()];
    for (i, sl) in slots.iter().enumerate() {
        if (sl.index as f64) < d[sl.stage] {
            stages[sl.stage].push(Block {
                kernel: ks[i] as u32,
                mid: apq_make_divisible(e[i] * sl.in_channels as f64, space.channel_step),
                pw_w: bits[0][i] as u32,
                pw_a: bits[1][i] as u32,
                dw_w: bits[2][i] as u32,
                dw_a: bits[3][i] as u32,
            });
        }
    }
    let arch = Arch { space: space.name.clone(), stages };
    arch.check(space).map_err(|e| bad(e.0))?;
    Ok(arch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_and_reformat() {
        assert_eq!(parse_key("(96, 456, 14, 1, 1, 0, 1)-W4A4"), Some([96, 456, 14, 1, 1, 0, 1, 4, 4]));
        assert_eq!(parse_key("(488,488,14,3,1,1,488)-W8A6"), Some([488, 488, 14, 3, 1, 1, 488, 8, 6]));
        for bad in ["head", "(1, 2, 3)-W4A4", "(1, 2, 3, 4, 5, 6, 7, 8)-W4A4", "(1, 2, 3, 4, 5, 6, x)-W4A4", "(1, 2, 3, 4, 5, 6, 7)-W4", "(1, 2, 3, 4, 5, 6, 7)"] {
            assert_eq!(parse_key(bad), None, "{bad}");
        }
        let t = read_dict(r#"{"(96,456, 14, 1, 1, 0, 1)-W4A4": {"energy": 0.5, "latency": 0.25}, "head": {"energy": 1, "latency": 2}}"#, "x").unwrap();
        assert_eq!(t, vec![Theirs { key: "(96, 456, 14, 1, 1, 0, 1)-W4A4".into(), depthwise: false, latency_ms: 0.25, energy_mj: Some(0.5) }]);
    }

    #[test]
    fn bad_dicts_are_named() {
        let e = read_dict("{'a': 1}", "t.dict").unwrap_err().to_string();
        assert!(e.starts_with("t.dict: not an APQ LUT dict: key must be a string"), "{e}");
        let e = read_dict(r#"{"(1, 2)-W4A4": {}}"#, "t.dict").unwrap_err().to_string();
        assert_eq!(e, "t.dict: not an APQ LUT dict: key '(1, 2)-W4A4' is not \"(cin, cout, in, k, s, pad, groups)-W{w}A{a}\"");
        let e = read_dict(r#"{"(1, 2, 3, 1, 1, 0, 1)-W4A4": {"energy": 1}}"#, "t.dict").unwrap_err().to_string();
        assert_eq!(e, "t.dict: not an APQ LUT dict: entry '(1, 2, 3, 1, 1, 0, 1)-W4A4': no number 'latency'");
        let e = read_dict(r#"{"(1, 2, 3, 1, 1, 0, 1)-W4A4": {"latency": 1, "energy": "x"}}"#, "t.dict").unwrap_err().to_string();
        assert_eq!(e, "t.dict: not an APQ LUT dict: entry '(1, 2, 3, 1, 1, 0, 1)-W4A4': no number 'energy'");
        // No energy (absent or null: a config without energy figures) is an entry without one.
        for text in [r#"{"(1, 2, 3, 1, 1, 0, 1)-W4A4": {"latency": 1}}"#, r#"{"(1, 2, 3, 1, 1, 0, 1)-W4A4": {"latency": 1, "energy": null}}"#] {
            assert_eq!(read_dict(text, "t.dict").unwrap()[0].energy_mj, None);
        }
        let e = read_theirs(Path::new("/nonexistent/x.dict")).unwrap_err().to_string();
        assert!(e.starts_with("/nonexistent/x.dict: cannot read: "), "{e}");
    }

    #[test]
    fn make_divisible_is_apqs() {
        // e = k / t for every middle width of APQ's space comes back as k.
        for t in [16u32, 24, 40, 80, 96, 192] {
            for k in (4 * t..=6 * t).step_by(8) {
                assert_eq!(apq_make_divisible((k as f64 / t as f64) * t as f64, 8), k, "{k}/{t}");
            }
        }
        // int(99.6 + 4) // 8 * 8 = 96 (not the rounded 104); 8.9 -> 8 < 0.9 x 8.9 -> 16.
        assert_eq!(apq_make_divisible(99.6, 8), 96);
        assert_eq!(apq_make_divisible(8.9, 8), 16);
    }

    #[test]
    fn arch_json_round_trips_and_pads_like_apq() {
        let space = Space::load("apq").unwrap();
        let mut seed = 11;
        for _ in 0..100 {
            let a = Arch::random(&space, &mut seed);
            let text = arch_json(&space, &a);
            assert_eq!(arch_from_json(&text, &space, "arch").unwrap(), a, "{text}");
        }
        let a = Arch::parse(&Arch::random(&space, &mut seed).to_text(), &space).unwrap();
        let v: Value = serde_json::from_str(&arch_json(&space, &a)).unwrap();
        assert_eq!(v[0]["ks"].as_array().unwrap().len(), 21);
        assert_eq!(v[0]["d"].as_array().unwrap().len(), 6);
        assert!(v[0]["wid"].is_null());
        // The first stage's skipped slots carry feature2spec's padding.
        let d0 = a.stages[0].len();
        for i in d0..4 {
            assert_eq!((v[0]["ks"][i].as_u64(), v[0]["e"][i].as_f64(), v[1]["dw_a_bits_setting"][i].as_u64()), (Some(3), Some(4.0), Some(8)));
        }
        assert!(arch_json(&space, &a).starts_with("[{\"wid\": null, \"ks\": ["), "Python's json.dump spacing");
    }

    #[test]
    fn readers_never_panic_on_prefixes_or_edits() {
        let space = Space::load("apq").unwrap();
        let arch = arch_json(&space, &Arch::random(&space, &mut 5));
        let dict = r#"{"(96, 456, 14, 1, 1, 0, 1)-W4A4": {"energy": 0.5, "latency": 0.25}, "head": {"energy": 1, "latency": 2}}"#;
        for text in [arch.as_str(), dict] {
            for cut in 0..text.len() {
                let _ = arch_from_json(&text[..cut], &space, "p");
                let _ = read_dict(&text[..cut], "p");
            }
        }
        let good: Value = serde_json::from_str(&arch).unwrap();
        for (part, list, bad) in [(0, "e", serde_json::json!(1e300)), (0, "e", serde_json::json!(-1)), (0, "ks", Value::Null), (0, "d", serde_json::json!(1e9)), (1, "pw_a_bits_setting", serde_json::json!("x"))] {
            let mut v = good.clone();
            v[part][list][0] = bad.clone();
            assert!(arch_from_json(&v.to_string(), &space, "p").is_err(), "{list}[0] = {bad}");
        }
    }

    #[test]
    fn fractional_kernels_depths_and_bits_are_refused() {
        // Found by the apq_arch fuzz target (fuzz/regressions/apq_arch/): 4.04 bits were read as 4,
        // a kernel of 5.9 as 5 and a depth of 2.5 as 3 blocks.
        let space = Space::load("apq").unwrap();
        let good: Value = serde_json::from_str(&arch_json(&space, &Arch::random(&space, &mut 9))).unwrap();
        for (part, list, bad, shown) in [(1, "pw_a_bits_setting", 4.04, "4.04"), (0, "ks", 5.9, "5.9"), (0, "d", 2.5, "2.5")] {
            let mut v = good.clone();
            v[part][list][0] = bad.into();
            let e = arch_from_json(&v.to_string(), &space, "a.json").unwrap_err().to_string();
            assert_eq!(e, format!("a.json: '{list}': {shown} is not a whole number in 0..1000000"));
        }
        // Whole numbers written as floats (Python's 3.0) are whole.
        let a = Arch::random(&space, &mut 9);
        let text = arch_json(&space, &a);
        let k = a.stages[0][0].kernel;
        let floats = text.replacen(&format!("\"ks\": [{k}, "), &format!("\"ks\": [{k}.0, "), 1);
        assert_ne!(floats, text);
        assert_eq!(arch_from_json(&floats, &space, "a.json").unwrap(), a);
    }

    #[test]
    fn bad_arch_json_is_named() {
        let space = Space::load("apq").unwrap();
        let e = arch_from_json("[1, 2", &space, "a.json").unwrap_err().to_string();
        assert!(e.starts_with("a.json: not APQ's arch JSON: "), "{e}");
        let e = arch_from_json(r#"[{"ks": [3], "e": [4], "d": [1]}, {}]"#, &space, "a.json").unwrap_err().to_string();
        assert_eq!(e, "a.json: no list 'pw_w_bits_setting'");
        let good = arch_json(&space, &Arch::random(&space, &mut 3));
        let e = arch_from_json(&good.replacen("\"ks\": [", "\"ks\": [9, ", 1), &space, "a.json").unwrap_err().to_string();
        assert_eq!(e, "a.json: 'ks' has 22 values, space 'apq' has 21 block slots");
        let mut v: Value = serde_json::from_str(&good).unwrap();
        v[1]["pw_w_bits_setting"][0] = 5.into();
        let e = arch_from_json(&v.to_string(), &space, "a.json").unwrap_err().to_string();
        assert_eq!(e, "a.json: stage 0 block 0: pw_w = 5 bits is not one of [4, 6, 8]");
    }
}
