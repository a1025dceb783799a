//! The fuzz harnesses, one `pub fn <target>(data: &[u8])` per target of `fuzz/fuzz_targets/`.
//!
//! Shared by the cargo-fuzz targets (`#[path = "../harness.rs"] mod harness;`) and by the stable
//! replay test `tests/fuzz_corpus.rs`, so the corpus and the regressions run through the same code.
//! A harness returns quietly on inputs the library rejects with an error; it panics only on a
//! library panic or on a broken invariant of an input the library accepted (the asserts below).
//!
//! The root package does not depend on `toml`, so this file never names that crate: TOML tables
//! are the `toml::Table`s the simulator's API hands out, and `FromStr`/`Deserialize` are inferred
//! from one of them (see [`toml_table`]). Dependencies: bitfusion-simulator, bitfusion-search,
//! serde, serde_json and sha2 (all dependencies of the root package as well).
//!
//! Library items are imported here, in one place, so that a change of module paths is one edit.

#![allow(dead_code)]

use bitfusion_search::arch::Arch;
use bitfusion_search::interop::apq::{arch_from_json, arch_json as apq_arch_json, read_dict, read_theirs};
use bitfusion_search::lut::{Diff, Entry, Header, LayerKey, Lut, Theirs, arch_keys, diff, enumerate, export_csv};
use bitfusion_search::space::{PRESETS, Space, TINY_SPACE, hex};
use bitfusion_simulator::config::{CostModelName, SHIPPED_CONFIGS, parse_override_value};
use bitfusion_simulator::ChipFigures;
use bitfusion_simulator::layer::MAX_MACS;
use bitfusion_simulator::Objective;
use bitfusion_simulator::networks::network;
use bitfusion_simulator::sweep::Sweep;
use bitfusion_simulator::onnx::{OnnxOptions, output_shapes, parse_onnx};
use bitfusion_simulator::workload::ofa::parse_ofa;
use bitfusion_simulator::workload::scalesim::parse_scalesim;
use bitfusion_simulator::workload::{ScaleSimForm, parse_topology, parse_workload, topology_csv as write_topology};
use bitfusion_simulator::{CostModel, HwConfig, Layer, build};
use serde::Deserialize;
use serde::de::IgnoredAny;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

// ---------------------------------------------------------------------------------------------
// Shared helpers.

/// Parse TOML text into the same type as `proto` (a `toml::Table`), without naming the crate.
fn parse_like<T: std::str::FromStr>(_proto: &T, text: &str) -> Option<T> {
    text.parse().ok()
}

/// Deserialize a JSON value into the same type as `proto` (a `toml::Table`).
fn from_json_like<T: serde::de::DeserializeOwned>(_proto: &T, v: serde_json::Value) -> Option<T> {
    serde_json::from_value(v).ok()
}

/// Parse `text` as a TOML document (`None`: not TOML). The table's type is `toml::Table`.
macro_rules! toml_table {
    ($text:expr) => {{
        let proto = parse_override_value("{}");
        proto.as_table().and_then(|t| parse_like(t, $text))
    }};
}

/// The shipped configs, parsed once.
fn shipped() -> &'static [HwConfig] {
    static HW: OnceLock<Vec<HwConfig>> = OnceLock::new();
    HW.get_or_init(|| {
        SHIPPED_CONFIGS.iter().map(|(n, t)| HwConfig::from_toml_str(t, n, &[]).expect("shipped config")).collect()
    })
}

/// A per-process, per-thread scratch file (the LUT loader reads paths only), in memory where the
/// machine has /dev/shm (the LUT writer syncs its file).
fn scratch_path(what: &str) -> PathBuf {
    let t = format!("{:?}", std::thread::current().id()).replace(|c: char| !c.is_ascii_alphanumeric(), "");
    let shm = Path::new("/dev/shm");
    let dir = if shm.is_dir() { shm.to_path_buf() } else { std::env::temp_dir() };
    dir.join(format!("bitfusion-fuzz-{}-{t}.{what}", std::process::id()))
}

// ---------------------------------------------------------------------------------------------
// hw_config: a hardware-config TOML document and `--set key=value` overrides.

/// Lines starting with `--set ` (at most 8) are overrides; every other line is the TOML document.
pub fn split_overrides(text: &str) -> (String, Vec<String>) {
    let mut doc = String::new();
    let mut sets = Vec::new();
    for line in text.split_inclusive('\n') {
        match line.strip_prefix("--set ") {
            Some(s) if sets.len() < 8 => sets.push(s.trim_end_matches(['\n', '\r']).to_string()),
            _ => doc.push_str(line),
        }
    }
    (doc, sets)
}

pub fn hw_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (doc, sets) = split_overrides(text);
    let Ok(hw) = HwConfig::from_toml_str(&doc, "fuzz.toml", &sets) else { return };
    // What the tools compute from every validated config.
    let _ = hw.to_string();
    let _ = (hw.frequency_hz(), hw.cycles_to_ms(u64::MAX), hw.array.fusion_units(), hw.array.operand_word_bits());
    let _ = ChipFigures::new(&hw).area_mm2();
    // A LUT stores the config as TOML text (`hw_hash`, `Lut::hw`) and loads it back: the validated
    // document must serialise and re-validate to the same config.
    let _ = bitfusion_search::lut::hw_hash(&hw);
    let again = HwConfig::from_toml_str(&hw.document.to_string(), "round trip", &[])
        .unwrap_or_else(|e| panic!("a validated config does not re-load from its own TOML: {e}"));
    assert_eq!(again, hw, "config changed in a TOML round trip");
    // The same document without overrides validates to the same config.
    let direct = HwConfig::from_table(hw.document.clone(), "table").expect("a validated document re-validates");
    assert_eq!(direct, hw);
}

// ---------------------------------------------------------------------------------------------
// topology_csv: the topology CSV reader, layer validation and the layer arithmetic.

/// Largest workload the harness runs through the reference model (total MACs, layers).
const SIM_MAX_MACS: u64 = 1 << 24;
const SIM_MAX_LAYERS: usize = 8;

/// A name the CSV writer can represent (it does not quote fields).
fn plain_name(n: &str) -> bool {
    !n.starts_with('#') && !n.contains([',', '"', '\n', '\r']) && n.trim() == n
}

fn reference_model() -> &'static dyn CostModel {
    static M: OnceLock<Box<dyn CostModel>> = OnceLock::new();
    M.get_or_init(|| build(&shipped()[1], Some(CostModelName::Reference), Objective::Cycles)).as_ref()
}

pub fn topology_csv(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(layers) = parse_topology(text, "fuzz.csv") else { return };
    check_layers(&layers);
}

/// What every workload reader's layers must satisfy: at least one, each validates with its exact
/// MAC count in range, the topology CSV writer's output reads back as the same layers, and small
/// workloads run through the reference cost model without panicking.
fn check_layers(layers: &[Layer]) {
    assert!(!layers.is_empty());
    let mut total: u64 = 0;
    for l in layers {
        l.validate().unwrap_or_else(|e| panic!("a parsed layer does not validate: {e}"));
        let (oh, ow) = (l.out_h(), l.out_w());
        assert!(oh >= 1 && ow >= 1);
        // The MAC count, computed exactly: the library's must not have wrapped, and must be in range.
        let exact = l.batch as u128
            * oh as u128
            * ow as u128
            * (l.kernel as u128).pow(2)
            * (l.in_channels / l.groups) as u128
            * l.out_channels as u128;
        assert!(exact <= MAX_MACS as u128, "layer '{}' accepted with {exact} MACs, above MAX_MACS", l.name);
        assert_eq!(l.macs() as u128, exact, "Layer::macs() of '{}' is not the exact product", l.name);
        let _ = l.is_depthwise();
        let _ = LayerKey::of(l, l.a_bits).apq_key();
        total = total.saturating_add(l.macs());
    }
    // The writer's output reads back as the same layers (for names it can write).
    if layers.iter().all(|l| plain_name(&l.name)) {
        let back = parse_topology(&write_topology(layers), "round trip").expect("written topology re-reads");
        assert_eq!(back, layers, "topology changed in a CSV round trip");
    }
    // Small workloads: through the reference cost model (errors are fine, panics are not).
    if layers.len() <= SIM_MAX_LAYERS && total <= SIM_MAX_MACS {
        let m = reference_model();
        for l in layers {
            if let Ok(s) = m.simulate_layer(l) {
                assert_eq!(s.macs, l.macs(), "stats of '{}' count other MACs than the layer", l.name);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// onnx_model: the ONNX importer (protobuf reader, decoder, shape propagation) with its options.

/// The bits the options byte picks from (index `b % 4` for weights, `b / 4 % 4` for activations).
const ONNX_BITS: [u32; 4] = [8, 4, 2, 16];

/// The importer's options from the input's first two bytes (batch 1 to 16, bits from
/// [`ONNX_BITS`]; `[0, 0]` is the default, batch 1 and 8 bits) and the model bytes after them.
pub fn onnx_options(data: &[u8]) -> (OnnxOptions, &[u8]) {
    let (head, model) = data.split_at(data.len().min(2));
    let (b, bits) = (head.first().copied().unwrap_or(0), head.get(1).copied().unwrap_or(0));
    let opts = OnnxOptions { batch: 1 + u32::from(b % 16), w_bits: ONNX_BITS[usize::from(bits % 4)], a_bits: ONNX_BITS[usize::from(bits / 4 % 4)] };
    (opts, model)
}

pub fn onnx_model(data: &[u8]) {
    let (opts, bytes) = onnx_options(data);
    let shapes = output_shapes(bytes, "fuzz.onnx", &opts);
    let Ok(layers) = parse_onnx(bytes, "fuzz.onnx", &opts) else { return };
    // The importer's shape pass is the first step of an import: it cannot fail on a model that imports.
    if let Err(e) = shapes {
        panic!("a model that imports has no output shapes: {e}");
    }
    // Another batch changes symbolic dimensions only: an import that succeeds has one layer per
    // Conv, Gemm and MatMul node either way.
    if let Ok(other) = parse_onnx(bytes, "fuzz.onnx", &OnnxOptions { batch: opts.batch + 1, ..opts }) {
        assert_eq!(other.len(), layers.len(), "the batch changed the layer count");
    }
    check_layers(&layers);
}

// ---------------------------------------------------------------------------------------------
// scalesim_csv: SCALE-Sim's conv and GEMM topology CSVs, and the format detection.

pub fn scalesim_csv(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // Both forms directly, whatever the header says, then the detecting entry point.
    for form in [ScaleSimForm::Conv, ScaleSimForm::Gemm] {
        if let Ok(layers) = parse_scalesim(text, "fuzz.csv", form) {
            check_layers(&layers);
        }
    }
    if let Ok(layers) = parse_workload(text, "fuzz.csv", 224) {
        check_layers(&layers);
    }
}

// ---------------------------------------------------------------------------------------------
// ofa_config: once-for-all / ProxylessNAS `net.config` JSON at a resolution.

/// The resolution the input's first byte picks (0 to 510 pixels, even; `[112]` is OFA's 224) and
/// the JSON text after it.
pub fn ofa_resolution(data: &[u8]) -> (u32, &[u8]) {
    match data.split_first() {
        Some((r, rest)) => (u32::from(*r) * 2, rest),
        None => (224, data),
    }
}

pub fn ofa_config(data: &[u8]) {
    let (resolution, json) = ofa_resolution(data);
    let Ok(text) = std::str::from_utf8(json) else { return };
    let Ok(layers) = parse_ofa(text, "net.config", resolution) else { return };
    assert_eq!(layers[0].in_h, resolution, "the first layer is not at the requested resolution");
    check_layers(&layers);
}

// ---------------------------------------------------------------------------------------------
// sweep_spec: the sweep-spec parser, validation and (small) expansion.

/// Largest number of values the harness lets `Sweep::from_str` make of one range axis (it makes
/// them in memory, up to `sweep::MAX_JOBS`), and of points it builds and validates per input.
pub const SWEEP_MAX_AXIS: usize = 4096;
pub const SWEEP_MAX_POINTS: usize = 64;

/// What the harness needs of a spec to bound the library's work before calling it: the same types
/// as the library's spec for these keys, so a spec this fails on fails the library's parse too.
#[derive(Deserialize)]
struct SpecMirror {
    base: String,
    workloads: Vec<String>,
    #[serde(default)]
    axes: BTreeMap<String, AxisMirror>,
    #[serde(default)]
    zip: Vec<BTreeMap<String, Vec<IgnoredAny>>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum AxisMirror {
    List(Vec<IgnoredAny>),
    Range(RangeMirror),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RangeMirror {
    start: f64,
    stop: f64,
    step: Option<f64>,
    factor: Option<f64>,
}

/// The number of values `sweep::expand`'s loop makes of a range (the same float loop), stopping
/// past `cap`; `None` for a range it rejects. (A step below the float spacing at `start` never
/// ends the loop: such ranges count as past the cap.)
fn range_len(r: &RangeMirror, cap: usize) -> Option<usize> {
    let mut n = 0;
    let mut x = r.start;
    match (r.step, r.factor) {
        (Some(step), None) if step > 0.0 => {
            while x <= r.stop + 1e-9 {
                n += 1;
                if n > cap {
                    break;
                }
                x += step;
            }
        }
        (None, Some(f)) if f > 1.0 && r.start > 0.0 => {
            while x <= r.stop * (1.0 + 1e-12) {
                n += 1;
                if n > cap {
                    break;
                }
                x *= f;
            }
        }
        _ => return None,
    }
    Some(n)
}

/// The spec's point count as its axes multiply (saturating), and whether every range axis is
/// small enough to let the library make its values.
fn sweep_points(spec: &SpecMirror) -> (u128, bool) {
    let mut small = true;
    let mut product: u128 = 1;
    for vals in spec.axes.values() {
        let n = match vals {
            AxisMirror::List(v) => v.len(),
            AxisMirror::Range(r) => range_len(r, SWEEP_MAX_AXIS).unwrap_or(0),
        };
        small &= n <= SWEEP_MAX_AXIS;
        product = product.saturating_mul(n as u128);
    }
    for group in &spec.zip {
        product = product.saturating_mul(group.values().next().map_or(0, Vec::len) as u128);
    }
    (product, small)
}

/// The directory relative paths of a fuzzed spec resolve against: one that does not exist.
const SWEEP_DIR: &str = "/nonexistent/bitfusion-fuzz";

pub fn sweep_spec(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let dir = Path::new(SWEEP_DIR);
    let Some(mut table) = toml_table!(text) else {
        // Not TOML: the library fails at its first step, before touching files or expanding.
        let _ = Sweep::from_str(text, "fuzz.toml", dir);
        return;
    };
    let Ok(spec) = table.clone().try_into::<SpecMirror>() else {
        // The library's spec has these types too: it fails deserializing, before files or expansion.
        let _ = Sweep::from_str(text, "fuzz.toml", dir);
        return;
    };
    // Never read the fuzzer's choice of files (a base or workload that names an existing path).
    let exists = |p: &str| Path::new(p).exists() || dir.join(p).exists();
    if exists(&spec.base) || spec.workloads.iter().any(|w| network(w).is_none() && exists(w)) {
        return;
    }
    let (points, small) = sweep_points(&spec);
    if !small {
        // A range too long to make: validate everything but the axes (the library then stops at
        // "no axes"), never the expansion.
        table.remove("axes");
        table.remove("zip");
        let _ = Sweep::from_str(&table.to_string(), "fuzz.toml (axes removed)", dir);
        return;
    }
    let Ok(sweep) = Sweep::from_str(text, "fuzz.toml", dir) else { return };
    assert_eq!(sweep.point_count() as u128, points, "the sweep counts other points than its axes multiply to");
    assert_eq!(sweep.job_count(), sweep.point_count() * sweep.workloads.len() * sweep.precisions.len());
    // The first and last points, and the jobs of the first few.
    let n = sweep.point_count();
    let picks: BTreeSet<usize> = (0..n.min(SWEEP_MAX_POINTS / 2)).chain(n.saturating_sub(SWEEP_MAX_POINTS / 2)..n).collect();
    let per_point = sweep.workloads.len() * sweep.precisions.len();
    for i in picks {
        let Ok(p) = sweep.point(i) else { continue };
        assert_eq!(p.values.len(), sweep.keys.len());
        for j in (i * per_point..(i + 1) * per_point).take(SWEEP_MAX_POINTS) {
            let job = sweep.job(j);
            assert_eq!(job.point, i, "job {j} is not of point {i}");
            let _ = sweep.row_key(&p, &job);
        }
    }
    let _ = sweep.shard_jobs(None).take(SWEEP_MAX_POINTS).count();
}

// ---------------------------------------------------------------------------------------------
// lut_file: the LUT file loader (JSON with a SHA-256 of its entries and its space's hash).

/// The input's header and entries written as a LUT file by the library itself (`Lut::save`, so
/// the file's hashes and seal are right whatever the format), with the header's hardware and space
/// hashes recomputed: mutations then reach past the integrity checks. `None`: not JSON with a
/// header and entries, or a hardware TOML that does not parse (the writer expects its own TOML).
pub fn lut_fixup(data: &[u8], path: &Path) -> Option<()> {
    let v: serde_json::Value = serde_json::from_slice(data).ok()?;
    let mut header: Header = serde_json::from_value(v.get("header")?.clone()).ok()?;
    let entries: Vec<Entry> = serde_json::from_value(v.get("entries")?.clone()).ok()?;
    toml_table!(&header.hw_toml)?;
    header.hw_hash = hex(&Sha256::digest(header.hw_toml.as_bytes()));
    header.space_hash = header.space.hash();
    let entries = entries.into_iter().map(|e| (e.key, e)).collect();
    Lut { header, entries }.save(path).ok()
}

/// Is `space` one that `Space::from_toml` accepts (a LUT's embedded space is not re-validated)?
/// Spaces with more than 64 block slots or 4,096 middle-channel choices per slot are not tried
/// (validating them is slow: the slots and choices are materialised).
fn space_validates(space: &Space) -> bool {
    let slots: u64 = space.stages.iter().map(|s| s.depths.iter().copied().max().unwrap_or(0) as u64).sum();
    let widest = space.stages.iter().map(|s| s.width).chain([space.stem.out_channels]).chain(space.first_block.as_ref().map(|f| f.out_channels)).max().unwrap_or(0);
    let choices = space.expand_max * widest as f64 / space.channel_step.max(1) as f64;
    if slots > 64 || !(choices <= 4096.0) {
        return false;
    }
    let Ok(mut v) = serde_json::to_value(space) else { return false };
    if let Some(o) = v.as_object_mut() {
        o.retain(|_, x| !x.is_null());
    }
    let proto = parse_override_value("{}");
    let Some(table) = proto.as_table().and_then(|t| from_json_like(t, v)) else { return false };
    Space::from_toml(&table.to_string(), "embedded space").is_ok()
}

pub fn lut_file(data: &[u8]) {
    let path = scratch_path("lut.json");
    let load = |bytes: &[u8]| {
        std::fs::write(&path, bytes).expect("write the scratch file");
        Lut::load(&path)
    };
    let lut = match load(data) {
        Ok(l) => Some(l),
        Err(_) => lut_fixup(data, &path).and_then(|()| Lut::load(&path).ok()),
    };
    let _ = std::fs::remove_file(&path);
    let Some(lut) = lut else { return };
    // What `lut export`, `lut query --hw`, `lut diff` and `search` do with a loaded LUT.
    let _ = export_csv(&lut);
    lut.check_space(&lut.header.space).expect("a loaded LUT matches its own space");
    if let Ok(hw) = lut.hw() {
        let _ = lut.check_hw(&hw);
    }
    for hw in shipped() {
        let _ = lut.check_hw(hw);
    }
    let _ = diff(&lut, &[]);
    // Architectures of the embedded space, costed from the entries, when the space is one a space
    // file could give (`Lut::load` does not re-validate it; an invalid one is tried by the probe).
    let space = &lut.header.space;
    if space_validates(space) {
        let mut seed = 7;
        for _ in 0..2 {
            let a = Arch::random(space, &mut seed);
            let _ = arch_keys(space, &a, lut.header.batch.clamp(1, 64));
            if let Ok((entries, lat, _)) = lut.cost(&a) {
                assert_eq!(entries.len(), a.layers(space, 1).len());
                let _ = lat;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// arch: the architecture parser (canonical text and JSON) against the preset spaces.

struct Preset {
    space: Space,
    keys: BTreeSet<LayerKey>,
}

fn presets() -> &'static [Preset] {
    static P: OnceLock<Vec<Preset>> = OnceLock::new();
    P.get_or_init(|| {
        PRESETS
            .iter()
            .map(|(n, _)| {
                let space = Space::load(n).expect("preset space");
                let keys = enumerate(&space);
                Preset { space, keys }
            })
            .collect()
    })
}

/// The preset the text names (`NAME:` or `"space": "NAME"`), else the default (`apq`).
fn preset_for(text: &str) -> &'static Preset {
    let t = text.trim();
    let name = if t.starts_with('{') {
        // The JSON form names it under "space"; a search's `best.json` in its "arch" text.
        serde_json::from_str::<serde_json::Value>(t).ok().and_then(|v| {
            v.get("space").and_then(|s| s.as_str().map(String::from)).or_else(|| Some(v.get("arch")?.as_str()?.trim().split_once(':')?.0.to_string()))
        })
    } else {
        t.split_once(':').map(|(n, _)| n.to_string())
    };
    let all = presets();
    name.and_then(|n| all.iter().find(|p| p.space.name == n)).unwrap_or(&all[0])
}

pub fn arch(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let p = preset_for(text);
    let space = &p.space;
    let Ok(a) = Arch::parse(text, space) else { return };
    // Both forms round-trip.
    assert_eq!(Arch::parse(&a.to_text(), space).expect("canonical text re-parses"), a);
    let json = serde_json::to_string(&a).expect("an architecture serialises");
    assert_eq!(Arch::parse(&json, space).expect("JSON re-parses"), a);
    // The encoding has the space's fixed size, with one hot per choice of every active block.
    let slots = space.slots();
    let (enc, bits) = a.encode(space);
    assert_eq!(enc.len(), slots.len() * space.kernels.len() + slots.iter().map(|s| s.mids.len()).sum::<usize>());
    assert_eq!(bits.len(), 4 * slots.len() * space.bits.len());
    let active: usize = a.stages.iter().map(Vec::len).sum();
    assert_eq!(enc.iter().filter(|x| **x == 1.0).count(), 2 * active);
    assert_eq!(bits.iter().filter(|x| **x == 1.0).count(), 4 * active);
    // Its layers exist, and every one is in the LUT enumeration of the space.
    let layers: Vec<Layer> = a.layers(space, 1);
    for l in &layers {
        l.validate().unwrap_or_else(|e| panic!("layer {} of a valid architecture: {e}", l.name));
    }
    for k in arch_keys(space, &a, 1) {
        assert!(p.keys.contains(&k), "layer {} (out {} bits) is not in the LUT enumeration", k.apq_key(), k.out_bits);
    }
}

// ---------------------------------------------------------------------------------------------
// apq_dict: the reader of the other LUT `lut diff` compares with (APQ's `.dict` JSON or its flat
// CSV, detected by content), then the diff itself against a small LUT.

/// A LUT of the tiny space with made-up costs (every third entry without energy), built once:
/// `diff` needs ours, and what it does with a matched entry does not depend on the figures.
fn diff_lut() -> &'static Lut {
    static L: OnceLock<Lut> = OnceLock::new();
    L.get_or_init(|| {
        let space = Space::from_toml(TINY_SPACE, "tiny").expect("the tiny space");
        let entries = enumerate(&space)
            .into_iter()
            .enumerate()
            .map(|(i, key)| (key, Entry { key, cycles: 1000 + i as u64, latency_ms: 1e-3 * (i + 1) as f64, energy_mj: (i % 3 != 0).then(|| 2e-3 * (i + 1) as f64) }))
            .collect();
        let header = Header {
            format: "fuzz".into(),
            program_version: "fuzz".into(),
            space_hash: space.hash(),
            space,
            hw_name: "fuzz".into(),
            hw_toml: String::new(),
            hw_hash: String::new(),
            model: "reference".into(),
            batch: 1,
            objective: "latency".into(),
        };
        Lut { header, entries }
    })
}

/// One entry as APQ's dict text (serde_json's float text, which reads back as the same number).
fn dict_of(t: &Theirs) -> String {
    let v = serde_json::json!({ t.key.clone(): { "energy": t.energy_mj, "latency": t.latency_ms } });
    v.to_string()
}

pub fn apq_dict(data: &[u8]) {
    // `lut diff OURS THEIRS` reads THEIRS by path (`interop::apq::read_theirs`).
    let path = scratch_path("theirs");
    std::fs::write(&path, data).expect("write the scratch file");
    let r = read_theirs(&path);
    let _ = std::fs::remove_file(&path);
    let Ok(theirs) = r else { return };
    let is_dict = data.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    if is_dict {
        // The detection picked the dict reader; it reads the text the same way directly, and
        // every key it gives is in `apq_key`'s form: written back alone, it reads as itself.
        let text = std::str::from_utf8(data).expect("a dict that read is UTF-8");
        assert_eq!(read_dict(text, "direct").expect("the dict reads directly"), theirs);
        for t in &theirs {
            assert!(t.latency_ms.is_finite() && t.energy_mj.is_none_or(f64::is_finite), "{t:?}: a JSON number is finite");
            let back = read_dict(&dict_of(t), "entry").unwrap_or_else(|e| panic!("entry {} written back: {e}", t.key));
            assert_eq!(back.len(), 1);
            assert_eq!((&back[0].key, back[0].depthwise), (&t.key, t.depthwise), "key re-read");
        }
    }
    // What `lut diff` does next: both kinds, medians and tolerances.
    let d = diff(diff_lut(), &theirs);
    assert_eq!(d[0].theirs + d[1].theirs, theirs.len(), "every entry of theirs is counted once");
    for k in &d {
        assert!(k.matched <= k.theirs);
        assert_eq!(k.latency_ratios.len(), k.matched);
        assert!(k.energy_ratios.len() <= k.matched);
        let _ = (Diff::median(&k.latency_ratios), Diff::median(&k.energy_ratios), k.within(0.01), k.within(0.05));
    }
}

// ---------------------------------------------------------------------------------------------
// apq_arch: APQ's `arch` JSON (`bitfusion arch import`) into each preset space, and back.

/// The number list `name` of APQ's arch JSON as the importer finds it (the first part that has it).
fn apq_list(v: &serde_json::Value, name: &str) -> Option<Vec<f64>> {
    let parts: Vec<&serde_json::Value> = match v {
        serde_json::Value::Array(a) => a.iter().collect(),
        o => vec![o],
    };
    parts.iter().find_map(|p| p.get(name))?.as_array()?.iter().map(|x| x.as_f64()).collect()
}

pub fn apq_arch(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let value: Option<serde_json::Value> = serde_json::from_str(text).ok();
    for p in presets() {
        let space = &p.space;
        let Ok(a) = arch_from_json(text, space, "fuzz") else { continue };
        a.check(space).expect("an imported architecture fits its space");
        // What the file says is what was read: kernels, bits and depths of the active slots.
        let v = value.as_ref().expect("an imported file is JSON");
        let list = |n: &str| apq_list(v, n).unwrap_or_else(|| panic!("imported without a number list '{n}'"));
        let (ks, d) = (list("ks"), list("d"));
        let bits = ["pw_w_bits_setting", "pw_a_bits_setting", "dw_w_bits_setting", "dw_a_bits_setting"].map(|n| list(n));
        let slots = space.slots();
        for (s, st) in a.stages.iter().enumerate() {
            let deepest = slots.iter().filter(|sl| sl.stage == s).count();
            assert!(d[s] == st.len() as f64 || (st.len() == deepest && d[s] >= deepest as f64), "stage {s}: d = {} read as depth {}", d[s], st.len());
        }
        for (i, sl) in slots.iter().enumerate() {
            let Some(b) = a.stages[sl.stage].get(sl.index) else { continue };
            let read = [b.kernel, b.pw_w, b.pw_a, b.dw_w, b.dw_a].map(|x| x as f64);
            let file = [ks[i], bits[0][i], bits[1][i], bits[2][i], bits[3][i]];
            assert_eq!(read, file, "slot {i} (stage {}, block {}): read other values than the file's", sl.stage, sl.index);
        }
        // Export -> import gives the same architecture; so do the canonical text and JSON.
        let out = apq_arch_json(space, &a);
        let back = arch_from_json(&out, space, "export").unwrap_or_else(|e| panic!("the export of {} does not import: {e}", a.to_text()));
        assert_eq!(back, a, "export -> import changed the architecture");
        assert_eq!(apq_arch_json(space, &back), out, "the export is not stable");
        assert_eq!(Arch::parse(&a.to_text(), space).expect("canonical text re-parses"), a);
        for k in arch_keys(space, &a, 1) {
            assert!(p.keys.contains(&k), "layer {} (out {} bits) is not in the LUT enumeration", k.apq_key(), k.out_bits);
        }
    }
}
