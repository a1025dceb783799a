//! The latency/energy lookup table (LUT): every distinct layer any architecture of a space can
//! contain, simulated once on one hardware config, with its provenance.
//!
//! **Keys.** A layer is keyed by its shape (kind, input and output channels, input size, kernel,
//! stride, padding, groups), its weight and activation bits, and the bits its outputs are stored at
//! (the next layer's activation bits: the cycle model writes outputs at the consumer's precision,
//! so the key carries it and the LUT stays exact), and whether it is lowered with im2col (the stem,
//! as the network's input layer: the reference model costs it so). `apq_key` gives APQ's key format
//! for the shape and bits.
//!
//! **Network cost** = the sum of the costs of its layers (stem, first block, every active block's
//! expand/depthwise/project, feature mix, classifier). Layers run one after another, each ending with
//! its outputs stored, so the sum is exact: `lut check` compares it with whole-network simulations.
//!
//! **File.** JSON: a header (format, program version, the space and its hash, the hardware config's
//! TOML and its hash, the model, batch and objective), the entries, and a seal: every header value
//! by dotted key (the TOML's keys under `hw_toml.`), the entries' SHA-256 and a SHA-256 of the
//! whole (header, entries' hash, sealed values). On load a truncated file, an edited header value
//! (named, with the sealed and the found value), an embedded TOML or space that does not match its
//! hash, edited entries and an edited seal are each refused. Files are written atomically (write,
//! then rename). A build writes `LUT.partial` as it goes and a rebuild resumes from it.

use crate::arch::Arch;
use crate::space::{Space, hex};
use bitfusion_simulator::config::{CostModelName, HwConfig};
use bitfusion_simulator::model::{CostModel, Objective, build, simulate_layers};
use bitfusion_util::write_atomic;
use bitfusion_simulator::{Layer, LayerKind};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The LUT file format version.
pub const FORMAT: &str = "bitfusion-lut/2";

/// A LUT problem, phrased for the user on one line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LutError {
    /// The file cannot be read.
    #[error("{path}: cannot read LUT: {reason}")]
    Read { path: String, reason: String },
    /// The file is not a whole LUT of this format (truncated, corrupted, or not a LUT).
    #[error("{path}: not a complete LUT file (truncated or corrupted: {reason})")]
    Incomplete { path: String, reason: String },
    /// Written by a program with another file format.
    #[error("{path}: LUT format '{found}', this program reads '{expected}': rebuild the LUT (bitfusion lut build)")]
    Format { path: String, found: String, expected: &'static str },
    /// A header value differs from the value sealed when the file was written (`key` is dotted;
    /// the hardware TOML's keys are under `hw_toml.`, the space's under `space.`).
    #[error("{path}: header key `{key}` was edited (sealed value {sealed}, file says {found}); rebuild the LUT")]
    HeaderEdited { path: String, key: String, sealed: String, found: String },
    /// The embedded hardware TOML's text does not hash to `hw_hash`.
    #[error("{path}: the embedded hardware config does not match its hash {recorded} (it hashes to {actual}): the header was edited; rebuild the LUT")]
    HwTomlEdited { path: String, recorded: String, actual: String },
    /// The embedded space does not hash to `space_hash`.
    #[error("{path}: the embedded space does not match its hash (corrupted)")]
    SpaceEdited { path: String },
    /// The entries do not hash to the sealed checksum.
    #[error("{path}: checksum mismatch: the entries were changed or corrupted")]
    EntriesEdited { path: String },
    /// Header, entries and sealed values agree, but not with the file's seal.
    #[error("{path}: the file does not match its seal (edited or corrupted); rebuild the LUT")]
    SealMismatch { path: String },
    /// Any other LUT problem, on one line.
    #[error("{0}")]
    Other(String),
}

fn err(m: impl Into<String>) -> LutError {
    LutError::Other(m.into())
}

/// A layer as the LUT knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LayerKey {
    pub kind: LayerKind,
    pub in_channels: u32,
    pub out_channels: u32,
    pub in_size: u32,
    pub kernel: u32,
    pub stride: u32,
    pub pad: u32,
    pub groups: u32,
    pub w_bits: u32,
    pub a_bits: u32,
    /// Bits the outputs are stored at (the consumer's activation bits).
    pub out_bits: u32,
    /// Lowered with im2col (the network's input layer, the stem): the reference model costs it so.
    pub im2col: bool,
}

impl LayerKey {
    /// The key of `layer` whose outputs are stored at `out_bits`.
    pub fn of(layer: &Layer, out_bits: u32) -> LayerKey {
        LayerKey {
            kind: layer.kind,
            in_channels: layer.in_channels,
            out_channels: layer.out_channels,
            in_size: layer.in_h,
            kernel: layer.kernel,
            stride: layer.stride,
            pad: layer.pad,
            groups: layer.groups,
            w_bits: layer.w_bits,
            a_bits: layer.a_bits,
            out_bits,
            im2col: layer.im2col,
        }
    }

    /// The layer this key describes, at `batch`.
    pub fn layer(&self, batch: u32) -> Layer {
        let layer = match self.kind {
            LayerKind::Fc => Layer::fc("fc", batch, self.in_channels, self.out_channels, self.w_bits, self.a_bits),
            LayerKind::Conv => Layer::conv(
                "conv",
                batch,
                self.in_channels,
                self.out_channels,
                self.in_size,
                self.kernel,
                self.stride,
                self.pad,
                self.groups,
                self.w_bits,
                self.a_bits,
            ),
        };
        layer.with_im2col(self.im2col)
    }

    /// APQ's key: `(cin, cout, in_size, k, stride, pad, groups)-W{w}A{a}`.
    pub fn apq_key(&self) -> String {
        format!(
            "({}, {}, {}, {}, {}, {}, {})-W{}A{}",
            self.in_channels, self.out_channels, self.in_size, self.kernel, self.stride, self.pad, self.groups, self.w_bits, self.a_bits
        )
    }
}

/// The keys of an architecture's layers, in order; each stored at the next layer's activation bits.
pub fn arch_keys(space: &Space, arch: &Arch, batch: u32) -> Vec<LayerKey> {
    let layers = arch.layers(space, batch);
    layers.iter().enumerate().map(|(i, l)| LayerKey::of(l, layers.get(i + 1).map_or(l.a_bits, |n| n.a_bits))).collect()
}

/// Every distinct layer (with its output bits) any architecture of `space` can contain.
pub fn enumerate(space: &Space) -> BTreeSet<LayerKey> {
    let batch = 1;
    let mut keys = BTreeSet::new();
    let bits = &space.bits;
    let head = &space.head;
    // Stem and first block: their consumers are fixed, except the first block's, which is the
    // first searchable block's expand (any pointwise activation bits).
    let trunk = arch_trunk(space, batch);
    let first_expand_bits: Vec<u32> = bits.clone();
    for (i, l) in trunk.iter().enumerate() {
        match trunk.get(i + 1) {
            Some(n) => {
                keys.insert(LayerKey::of(l, n.a_bits));
            }
            None => {
                for &b in &first_expand_bits {
                    keys.insert(LayerKey::of(l, b));
                }
            }
        }
    }
    let slots = space.slots();
    let last_stage = space.stages.len() - 1;
    for sl in &slots {
        // The project's consumer: the next block's expand (any bits) or, in the last stage, the head
        // (its feature mix or classifier, both at the head's bits).
        let mut project_outs: Vec<u32> = bits.clone();
        if sl.stage == last_stage {
            project_outs.push(head.bits);
        }
        let out_size = Space::after(sl.in_size, 1, sl.stride);
        for &mid in &sl.mids {
            for &pw_w in bits {
                for &pw_a in bits {
                    let expand = Layer::conv("e", batch, sl.in_channels, mid, sl.in_size, 1, 1, 0, 1, pw_w, pw_a);
                    let project = Layer::conv("p", batch, mid, sl.out_channels, out_size, 1, 1, 0, 1, pw_w, pw_a);
                    for &dw_a in bits {
                        keys.insert(LayerKey::of(&expand, dw_a));
                    }
                    for &o in &project_outs {
                        keys.insert(LayerKey::of(&project, o));
                    }
                }
            }
            for &k in &space.kernels {
                for &dw_w in bits {
                    for &dw_a in bits {
                        let dw = Layer::conv("d", batch, mid, mid, sl.in_size, k, sl.stride, k / 2, mid, dw_w, dw_a);
                        for &pw_a in bits {
                            keys.insert(LayerKey::of(&dw, pw_a));
                        }
                    }
                }
            }
        }
    }
    for (i, l) in arch_head(space, batch).iter().enumerate() {
        let next = arch_head(space, batch).get(i + 1).map(|n| n.a_bits);
        keys.insert(LayerKey::of(l, next.unwrap_or(l.a_bits)));
    }
    keys
}

/// The fixed layers before the searchable blocks.
pub(crate) fn arch_trunk(space: &Space, batch: u32) -> Vec<Layer> {
    let any = Arch::random(space, &mut 0);
    let n = if space.first_block.is_some() { 3 } else { 1 };
    any.layers(space, batch).into_iter().take(n).collect()
}

/// The fixed layers after the searchable blocks.
pub(crate) fn arch_head(space: &Space, batch: u32) -> Vec<Layer> {
    let any = Arch::random(space, &mut 0);
    let n = if space.head.feature_mix > 0 { 2 } else { 1 };
    let layers = any.layers(space, batch);
    layers[layers.len() - n..].to_vec()
}

/// One simulated layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub key: LayerKey,
    pub cycles: u64,
    pub latency_ms: f64,
    /// Energy in mJ (None when the config has no SRAM figures for a buffer).
    pub energy_mj: Option<f64>,
}

/// Where a LUT comes from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub format: String,
    pub program_version: String,
    pub space: Space,
    pub space_hash: String,
    pub hw_name: String,
    /// The hardware config's full TOML (with any overrides applied).
    pub hw_toml: String,
    pub hw_hash: String,
    pub model: String,
    pub batch: u32,
    pub objective: String,
}

/// A loaded or built LUT.
#[derive(Clone, Debug, PartialEq)]
pub struct Lut {
    pub header: Header,
    pub entries: BTreeMap<LayerKey, Entry>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LutFile {
    header: Header,
    entries: Vec<Entry>,
    seal: Seal,
}

/// What a LUT file is sealed with when written.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Seal {
    /// Every header value, by dotted key (the hardware TOML parsed, its keys under `hw_toml.`), so
    /// that an edited value can be named with what it was.
    header: BTreeMap<String, serde_json::Value>,
    /// SHA-256 of the entries.
    entries_sha256: String,
    /// SHA-256 of the header, the entries' hash and the sealed values: the whole file.
    sha256: String,
}

/// Only the format of a file, to tell an older format from a corrupted file.
#[derive(Deserialize)]
struct FormatProbe {
    header: FormatProbeHeader,
}

#[derive(Deserialize)]
struct FormatProbeHeader {
    format: String,
}

/// The leaves of a JSON value by dotted key (`a.b`, `a[2].c`) into `out`.
fn flatten_into(prefix: &str, v: &serde_json::Value, out: &mut BTreeMap<String, serde_json::Value>) {
    use serde_json::Value;
    let join = |k: &str| if prefix.is_empty() { k.to_string() } else { format!("{prefix}.{k}") };
    match v {
        Value::Object(m) if !m.is_empty() => m.iter().for_each(|(k, x)| flatten_into(&join(k), x, out)),
        Value::Array(a) if !a.is_empty() => a.iter().enumerate().for_each(|(i, x)| flatten_into(&format!("{prefix}[{i}]"), x, out)),
        _ => {
            out.insert(prefix.to_string(), v.clone());
        }
    }
}

/// A header (as JSON) by dotted key, its hardware TOML parsed (keys under `hw_toml.`); the error
/// says why the TOML does not parse.
fn flatten_header(header: &serde_json::Value) -> Result<BTreeMap<String, serde_json::Value>, String> {
    let mut h = header.clone();
    if let Some(slot) = h.get_mut("hw_toml")
        && let Some(text) = slot.as_str()
    {
        let table: toml::Table = toml::from_str(text).map_err(|e| e.to_string().replace('\n', " "))?;
        *slot = serde_json::to_value(table).map_err(|e| e.to_string())?;
    }
    let mut out = BTreeMap::new();
    flatten_into("", &h, &mut out);
    Ok(out)
}

fn sha256_hex(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update(b"\n");
    }
    hex(&h.finalize())
}

/// The content hash of a hardware config: SHA-256 of its canonical TOML document.
pub fn hw_hash(hw: &HwConfig) -> String {
    hex(&Sha256::digest(hw_toml(hw).as_bytes()))
}

fn hw_toml(hw: &HwConfig) -> String {
    toml::to_string(&hw.document).expect("a config document serialises")
}

fn checksum(entries: &[Entry]) -> String {
    hex(&Sha256::digest(serde_json::to_string(entries).expect("entries serialise").as_bytes()))
}

/// The whole file's hash: the header, the entries' hash and the sealed values.
fn seal_hash(header: &Header, entries_sha256: &str, sealed: &BTreeMap<String, serde_json::Value>) -> String {
    let header = serde_json::to_string(header).expect("a header serialises");
    let sealed = serde_json::to_string(sealed).expect("sealed values serialise");
    sha256_hex(&[FORMAT, &header, entries_sha256, &sealed])
}

impl Lut {
    fn to_json(&self) -> String {
        let entries: Vec<Entry> = self.entries.values().cloned().collect();
        let entries_sha256 = checksum(&entries);
        let sealed = flatten_header(&serde_json::to_value(&self.header).expect("a header serialises")).expect("the header's own TOML parses");
        let seal = Seal { sha256: seal_hash(&self.header, &entries_sha256, &sealed), entries_sha256, header: sealed };
        let file = LutFile { header: self.header.clone(), entries, seal };
        serde_json::to_string(&file).expect("a LUT serialises")
    }

    /// Write the LUT atomically.
    pub fn save(&self, path: &Path) -> Result<(), LutError> {
        write_atomic(path, self.to_json().as_bytes()).map_err(|e| err(format!("cannot write {}: {e}", path.display())))
    }

    /// Read a LUT, checking its format and its seal: the header, key by key, against the values
    /// sealed when it was written (an edit is named with both values), the embedded hardware TOML
    /// and space against their hashes, the entries against theirs, and the whole file.
    pub fn load(path: &Path) -> Result<Lut, LutError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| LutError::Read { path: origin.clone(), reason: e.to_string() })?;
        let incomplete = |e: serde_json::Error| LutError::Incomplete { path: origin.clone(), reason: e.to_string() };
        let other_format = || {
            let found = serde_json::from_str::<FormatProbe>(&text).ok()?.header.format;
            (found != FORMAT).then(|| LutError::Format { path: origin.clone(), found, expected: FORMAT })
        };
        let raw: serde_json::Value = serde_json::from_str(&text).map_err(incomplete)?;
        let file: LutFile = match serde_json::from_value(raw.clone()) {
            Ok(f) => f,
            Err(e) => return Err(other_format().unwrap_or_else(|| incomplete(e))),
        };
        // The header as written in the file (unknown keys included), key by key.
        let found = flatten_header(&raw["header"]).map_err(|e| LutError::HeaderEdited {
            path: origin.clone(),
            key: "hw_toml".into(),
            sealed: "a TOML document".into(),
            found: format!("text that is not TOML ({e})"),
        })?;
        let keys: BTreeSet<&String> = found.keys().chain(file.seal.header.keys()).collect();
        let show = |v: Option<&serde_json::Value>| v.map_or_else(|| "(none)".to_string(), |v| v.to_string());
        for k in keys {
            let (sealed, now) = (file.seal.header.get(k), found.get(k));
            if sealed != now {
                return Err(LutError::HeaderEdited { path: origin, key: k.clone(), sealed: show(sealed), found: show(now) });
            }
        }
        if file.header.format != FORMAT {
            return Err(LutError::Format { path: origin, found: file.header.format, expected: FORMAT });
        }
        let actual = hex(&Sha256::digest(file.header.hw_toml.as_bytes()));
        if actual != file.header.hw_hash {
            return Err(LutError::HwTomlEdited { path: origin, recorded: file.header.hw_hash.chars().take(16).collect(), actual: prefix(&actual) });
        }
        if file.header.space.hash() != file.header.space_hash {
            return Err(LutError::SpaceEdited { path: origin });
        }
        // The embedded space is validated like a space file, so a LUT cannot smuggle in one
        // that would crash the commands using it.
        file.header.space.check().map_err(|e| LutError::Other(format!("{origin}: its space: {e}")))?;
        if checksum(&file.entries) != file.seal.entries_sha256 {
            return Err(LutError::EntriesEdited { path: origin });
        }
        if seal_hash(&file.header, &file.seal.entries_sha256, &file.seal.header) != file.seal.sha256 {
            return Err(LutError::SealMismatch { path: origin });
        }
        let entries = file.entries.into_iter().map(|e| (e.key, e)).collect();
        Ok(Lut { header: file.header, entries })
    }

    /// Refuse a hardware config other than the one the LUT was built for.
    pub fn check_hw(&self, hw: &HwConfig) -> Result<(), LutError> {
        let h = hw_hash(hw);
        if h != self.header.hw_hash {
            return Err(err(format!(
                "hardware config hash differs: the LUT was built for '{}' (hash {}), this config '{}' hashes to {}",
                self.header.hw_name,
                prefix(&self.header.hw_hash),
                hw.name,
                prefix(&h)
            )));
        }
        Ok(())
    }

    /// Refuse a space other than the one the LUT was built for.
    pub fn check_space(&self, space: &Space) -> Result<(), LutError> {
        let h = space.hash();
        if h != self.header.space_hash {
            return Err(err(format!(
                "search space hash differs: the LUT was built for '{}' (hash {}), this space '{}' hashes to {}",
                self.header.space.name,
                prefix(&self.header.space_hash),
                space.name,
                prefix(&h)
            )));
        }
        Ok(())
    }

    /// The hardware config the LUT was built for.
    pub fn hw(&self) -> Result<HwConfig, LutError> {
        HwConfig::from_toml_str(&self.header.hw_toml, "the LUT's hardware config", &[]).map_err(|e| err(e.to_string()))
    }

    /// Per-layer entries and the totals (latency ms, energy mJ) of an architecture.
    pub fn cost(&self, arch: &Arch) -> Result<(Vec<&Entry>, f64, Option<f64>), LutError> {
        let keys = arch_keys(&self.header.space, arch, self.header.batch);
        let mut entries = Vec::with_capacity(keys.len());
        for k in &keys {
            entries.push(self.entries.get(k).ok_or_else(|| err(format!("layer {} (outputs at {} bits) is not in the LUT", k.apq_key(), k.out_bits)))?);
        }
        let latency = entries.iter().map(|e| e.latency_ms).sum();
        let energy = entries.iter().map(|e| e.energy_mj).sum::<Option<f64>>();
        Ok((entries, latency, energy))
    }
}

/// What to build.
pub struct BuildSpec<'a> {
    pub space: &'a Space,
    pub hw: &'a HwConfig,
    pub model: CostModelName,
    pub objective: Objective,
    pub batch: u32,
}

impl BuildSpec<'_> {
    fn header(&self) -> Header {
        Header {
            format: FORMAT.into(),
            program_version: env!("CARGO_PKG_VERSION").into(),
            space: self.space.clone(),
            space_hash: self.space.hash(),
            hw_name: self.hw.name.clone(),
            hw_toml: hw_toml(self.hw),
            hw_hash: hw_hash(self.hw),
            model: self.model.as_str().into(),
            batch: self.batch,
            objective: self.objective.as_str().into(),
        }
    }
}

/// The partial file of a build in progress.
pub fn partial_path(out: &Path) -> PathBuf {
    let mut p = out.as_os_str().to_owned();
    p.push(".partial");
    PathBuf::from(p)
}

/// What a build did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildSummary {
    pub entries: usize,
    pub resumed: usize,
    pub simulated: usize,
}

/// Build a LUT into `out`: simulate every enumerated layer not already in `out.partial` (from an
/// interrupted build of the same space, config, model, batch and objective), in parallel, calling
/// `progress(done, total)`; the partial file is rewritten atomically as entries finish and removed
/// at the end. Layers the model cannot run are an error naming them.
pub fn build_lut(spec: &BuildSpec, out: &Path, progress: &(dyn Fn(usize, usize) + Sync)) -> Result<(Lut, BuildSummary), LutError> {
    let header = spec.header();
    let keys = enumerate(spec.space);
    let partial = partial_path(out);
    let mut done: BTreeMap<LayerKey, Entry> = BTreeMap::new();
    if partial.exists()
        && let Ok(prev) = Lut::load(&partial)
            && prev.header == header {
                done = prev.entries.into_iter().filter(|(k, _)| keys.contains(k)).collect();
            }
    let resumed = done.len();
    let todo: Vec<LayerKey> = keys.iter().copied().filter(|k| !done.contains_key(k)).collect();
    let model: Box<dyn CostModel> = build(spec.hw, Some(spec.model), spec.objective);
    let total = keys.len();
    progress(resumed, total);
    let state = Mutex::new((done, Instant::now()));
    // The partial file is written outside the entries' lock (from a snapshot), by one worker at a time.
    let flushing = Mutex::new(());
    let flush = |entries: BTreeMap<LayerKey, Entry>| match flushing.try_lock() {
        Ok(_writing) => Lut { header: header.clone(), entries }.save(&partial),
        Err(_) => Ok(()),
    };
    // Layers of one shape (differing in bits and output precision) are simulated together, in
    // order: the model may start each variant's search from the previous one's result.
    let mut groups: BTreeMap<LayerKey, Vec<LayerKey>> = BTreeMap::new();
    for k in &todo {
        groups.entry(LayerKey { out_bits: 0, w_bits: 0, a_bits: 0, ..*k }).or_default().push(*k);
    }
    let mut groups: Vec<Vec<LayerKey>> = groups.into_values().collect();
    // Largest work first, so that no long search starts last on an otherwise idle machine: the
    // search grows with the output pixels and the variants (the entries stay keyed, in order).
    groups.sort_by_cached_key(|g| {
        let l = g[0].layer(spec.batch);
        std::cmp::Reverse(l.out_h() as u64 * l.out_w() as u64 * g.len() as u64)
    });
    groups.par_iter().try_for_each(|g| -> Result<(), LutError> {
        let variants: Vec<(Layer, u32)> = g.iter().map(|k| (k.layer(spec.batch), k.out_bits)).collect();
        let stats = model.simulate_layer_variants(&variants).map_err(|e| err(format!("{}: {e}", g[0].apq_key())))?;
        let snapshot = {
            let mut st = state.lock().map_err(|_| err("a LUT worker panicked"))?;
            for (k, s) in g.iter().zip(stats) {
                let entry = Entry { key: *k, cycles: s.cycles.0, latency_ms: s.latency_ms, energy_mj: s.energy.map(|e| e.total().to_mj()) };
                st.0.insert(*k, entry);
            }
            progress(st.0.len(), total);
            let due = st.1.elapsed() > Duration::from_secs(2);
            if due {
                st.1 = Instant::now();
            }
            due.then(|| st.0.clone())
        };
        if let Some(entries) = snapshot {
            flush(entries)?;
        }
        Ok(())
    })?;
    let (entries, _) = state.into_inner().map_err(|_| err("a LUT worker panicked"))?;
    let lut = Lut { header, entries };
    lut.save(out)?;
    let _ = std::fs::remove_file(&partial);
    Ok((lut, BuildSummary { entries: total, resumed, simulated: todo.len() }))
}

/// The LUT as CSV: `kind,in_channels,out_channels,in_size,kernel,stride,pad,groups,w_bits,a_bits,out_bits,im2col,cycles,latency_ms,energy_mj`.
pub fn export_csv(lut: &Lut) -> String {
    let mut s = String::from("kind,in_channels,out_channels,in_size,kernel,stride,pad,groups,w_bits,a_bits,out_bits,im2col,cycles,latency_ms,energy_mj\n");
    for e in lut.entries.values() {
        let k = &e.key;
        s.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
            k.kind.as_str(),
            k.in_channels,
            k.out_channels,
            k.in_size,
            k.kernel,
            k.stride,
            k.pad,
            k.groups,
            k.w_bits,
            k.a_bits,
            k.out_bits,
            k.im2col,
            e.cycles,
            e.latency_ms,
            e.energy_mj.map(|x| x.to_string()).unwrap_or_default()
        ));
    }
    s
}

/// One architecture checked against a whole-network simulation.
#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    pub arch: String,
    pub lut_cycles: u64,
    pub sim_cycles: u64,
    pub lut_latency_ms: f64,
    pub sim_latency_ms: f64,
    pub lut_energy_mj: Option<f64>,
    pub sim_energy_mj: Option<f64>,
    /// The layers whose LUT entry differs from the same layer simulated in the network.
    pub layers: Vec<LayerCheck>,
}

/// One layer whose LUT entry differs from its simulation as part of a network.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerCheck {
    /// The layer's name in the network (`stem`, `s0b1_expand`, ...).
    pub layer: String,
    pub key: LayerKey,
    pub lut_cycles: u64,
    pub sim_cycles: u64,
    pub lut_energy_mj: Option<f64>,
    pub sim_energy_mj: Option<f64>,
}

/// `a - b` when both exist.
fn minus(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(a? - b?)
}

impl LayerCheck {
    /// LUT minus simulated, in cycles.
    pub fn cycles_diff(&self) -> i64 {
        self.lut_cycles as i64 - self.sim_cycles as i64
    }
    /// LUT minus simulated, in mJ.
    pub fn energy_diff_mj(&self) -> Option<f64> {
        minus(self.lut_energy_mj, self.sim_energy_mj)
    }
}

impl Check {
    pub fn latency_error(&self) -> f64 {
        (self.lut_latency_ms - self.sim_latency_ms).abs() / self.sim_latency_ms
    }
    pub fn energy_error(&self) -> Option<f64> {
        Some((self.lut_energy_mj? - self.sim_energy_mj?).abs() / self.sim_energy_mj?)
    }
    /// LUT minus simulated, in cycles.
    pub fn cycles_diff(&self) -> i64 {
        self.lut_cycles as i64 - self.sim_cycles as i64
    }
    /// LUT minus simulated, in mJ.
    pub fn energy_diff_mj(&self) -> Option<f64> {
        minus(self.lut_energy_mj, self.sim_energy_mj)
    }
    /// Whether the LUT's sum equals the simulation: cycles exactly, energy to `tol` relative
    /// (summation order), every layer's entry its simulation.
    pub fn exact(&self, tol: f64) -> bool {
        self.cycles_diff() == 0 && self.latency_error() <= tol && self.energy_error().is_none_or(|e| e <= tol) && self.layers.is_empty()
    }
}

/// Relative difference of two energies (0 when both are missing, 1 when one is).
fn energy_rel(a: Option<f64>, b: Option<f64>) -> f64 {
    match (a, b) {
        (Some(a), Some(b)) if a == b => 0.0,
        (Some(a), Some(b)) => (a - b).abs() / b.abs().max(f64::MIN_POSITIVE),
        (None, None) => 0.0,
        _ => 1.0,
    }
}

/// Simulate `samples` seeded random architectures whole and compare with their LUT cost, in
/// total and layer by layer (an entry differing from its layer simulated in the network by more
/// than 1e-12 relative in energy, or by any cycle, is listed).
pub fn check(lut: &Lut, samples: usize, seed: u64) -> Result<Vec<Check>, LutError> {
    let space = &lut.header.space;
    let hw = lut.hw()?;
    let model_name: CostModelName = lut.header.model.parse().map_err(|e: String| err(e))?;
    let objective: Objective = lut.header.objective.parse().map_err(|e: String| err(e))?;
    let model = build(&hw, Some(model_name), objective);
    let mut state = seed;
    let archs: Vec<Arch> = (0..samples).map(|_| Arch::random(space, &mut state)).collect();
    archs
        .iter()
        .map(|a| {
            let (entries, lat, en) = lut.cost(a)?;
            let r = simulate_layers(model.as_ref(), &a.layers(space, lut.header.batch)).map_err(|e| err(e.to_string()))?;
            let mj = |s: &bitfusion_simulator::LayerStats| s.energy.map(|e| e.total().to_mj());
            let layers = entries
                .iter()
                .zip(&r.layers)
                .filter(|(e, s)| e.cycles != s.cycles.0 || energy_rel(e.energy_mj, mj(s)) > 1e-12)
                .map(|(e, s)| LayerCheck {
                    layer: s.name.clone(),
                    key: e.key,
                    lut_cycles: e.cycles,
                    sim_cycles: s.cycles.0,
                    lut_energy_mj: e.energy_mj,
                    sim_energy_mj: mj(s),
                })
                .collect();
            Ok(Check {
                arch: a.to_text(),
                lut_cycles: entries.iter().map(|e| e.cycles).sum(),
                sim_cycles: r.total.cycles.0,
                lut_latency_ms: lat,
                sim_latency_ms: r.total.latency_ms,
                lut_energy_mj: en,
                sim_energy_mj: mj(&r.total),
                layers,
            })
        })
        .collect()
}

/// An entry of another LUT to compare with (APQ's flat CSV format).
#[derive(Clone, Debug, PartialEq)]
pub struct Theirs {
    pub key: String,
    pub depthwise: bool,
    pub latency_ms: f64,
    /// None when their table has no energy for the entry (a JSON `null` or no field in a dict,
    /// as `lut export --format apq` writes for a config without energy figures).
    pub energy_mj: Option<f64>,
}

/// Read APQ's flat LUT CSV (`kind,in_channels,out_channels,input_size,kernel_size,stride,padding,groups,w_bits,a_bits,latency_ms,energy_mJ`).
pub fn read_apq_csv(path: &Path) -> Result<Vec<Theirs>, LutError> {
    let origin = path.display().to_string();
    let mut rdr = csv::Reader::from_path(path).map_err(|e| err(format!("{origin}: {e}")))?;
    let h = rdr.headers().map_err(|e| err(format!("{origin}: {e}")))?.clone();
    let need = ["in_channels", "out_channels", "input_size", "kernel_size", "stride", "padding", "groups", "w_bits", "a_bits", "latency_ms", "energy_mJ"];
    let mut idx = Vec::new();
    for n in need {
        idx.push(h.iter().position(|x| x == n).ok_or_else(|| err(format!("{origin}:1: missing column '{n}'")))?);
    }
    let mut out = Vec::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| err(format!("{origin}: {}", e.to_string().replace('\n', " "))))?;
        let line = rec.position().map_or(0, |p| p.line());
        // APQ's head and tail totals (whole fixed sub-networks) have no layer shape.
        if h.iter().position(|x| x == "kind").is_some_and(|k| matches!(&rec[k], "head" | "tail")) {
            continue;
        }
        let v = |i: usize| -> Result<f64, LutError> {
            rec[idx[i]].parse::<f64>().map_err(|_| err(format!("{origin}:{line}: column '{}': '{}' is not a number", need[i], &rec[idx[i]])))
        };
        // Costs are finite: a NaN or infinite one has no meaningful ratio to ours.
        let cost = |i: usize| -> Result<f64, LutError> {
            let x = v(i)?;
            if x.is_finite() { Ok(x) } else { Err(err(format!("{origin}:{line}: column '{}': '{}' is not a finite number", need[i], &rec[idx[i]]))) }
        };
        let (cin, cout, groups) = (v(0)? as u32, v(1)? as u32, v(6)? as u32);
        out.push(Theirs {
            key: format!("({cin}, {cout}, {}, {}, {}, {}, {groups})-W{}A{}", v(2)?, v(3)?, v(4)?, v(5)?, v(7)?, v(8)?),
            depthwise: groups > 1,
            latency_ms: cost(9)?,
            energy_mj: Some(cost(10)?),
        });
    }
    Ok(out)
}

/// How ours compare with theirs: ratios ours / theirs per matched entry.
#[derive(Clone, Debug, PartialEq)]
pub struct Diff {
    pub kind: &'static str,
    pub theirs: usize,
    pub matched: usize,
    pub latency_ratios: Vec<f64>,
    pub energy_ratios: Vec<f64>,
}

impl Diff {
    pub fn median(v: &[f64]) -> f64 {
        let mut s = v.to_vec();
        // A total order (NaN last): `partial_cmp` with NaN as "equal" is not one, and the
        // standard sort panics on that ("does not correctly implement a total order").
        s.sort_by(f64::total_cmp);
        if s.is_empty() { f64::NAN } else { s[s.len() / 2] }
    }
    /// Fraction of latency ratios within `tol` of 1.
    pub fn within(&self, tol: f64) -> f64 {
        self.latency_ratios.iter().filter(|r| (**r - 1.0).abs() <= tol).count() as f64 / self.latency_ratios.len().max(1) as f64
    }
}

/// Our convolution entries by APQ key, one per key. APQ's key has no output-precision axis: of our
/// entries for a shape and bits (differing only by the bits the outputs are stored at, and equal
/// under the reference model), the one stored at the layer's own activation bits is used, else the
/// one at the fewest output bits. Fully connected layers have no APQ key (APQ's keys are
/// convolution tuples; its classifier is inside `tail`) and are left out.
pub fn apq_view(lut: &Lut) -> BTreeMap<String, &Entry> {
    let mut out: BTreeMap<String, &Entry> = BTreeMap::new();
    for e in lut.entries.values().filter(|e| e.key.kind == LayerKind::Conv) {
        let slot = out.entry(e.key.apq_key()).or_insert(e);
        let own = |x: &Entry| x.key.out_bits == x.key.a_bits;
        if own(e) && !own(slot) {
            *slot = e;
        }
    }
    out
}

/// The keys of the fixed layers before the searchable blocks (stem, first block) and after them
/// (feature mix, classifier), each stored at the next fixed layer's activation bits; the trunk's
/// last layer, whose consumer is a searchable block, at its own activation bits.
pub fn fixed_keys(space: &Space, batch: u32) -> (Vec<LayerKey>, Vec<LayerKey>) {
    let chain = |layers: Vec<Layer>| -> Vec<LayerKey> {
        layers.iter().enumerate().map(|(i, l)| LayerKey::of(l, layers.get(i + 1).map_or(l.a_bits, |n| n.a_bits))).collect()
    };
    (chain(arch_trunk(space, batch)), chain(arch_head(space, batch)))
}

/// Compare our LUT with theirs, pointwise and depthwise separately, over [`apq_view`].
pub fn diff(lut: &Lut, theirs: &[Theirs]) -> [Diff; 2] {
    let ours = apq_view(lut);
    let mut out = [("pointwise", false), ("depthwise", true)].map(|(kind, _)| Diff { kind, theirs: 0, matched: 0, latency_ratios: Vec::new(), energy_ratios: Vec::new() });
    for t in theirs {
        let d = &mut out[t.depthwise as usize];
        d.theirs += 1;
        if let Some(e) = ours.get(&t.key) {
            d.matched += 1;
            d.latency_ratios.push(e.latency_ms / t.latency_ms);
            if let (Some(en), Some(theirs)) = (e.energy_mj, t.energy_mj) {
                d.energy_ratios.push(en / theirs);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Space {
        Space::from_toml(crate::space::TINY_SPACE, "tiny").unwrap()
    }

    #[test]
    fn median_of_ratios_with_nan_does_not_panic() {
        // Found with the apq_dict fuzz harness (fuzz/regressions/apq_dict/): `lut diff` against a
        // flat CSV with NaN latencies panicked in the sort ("does not correctly implement a total
        // order") once more than 20 ratios were NaN-mixed.
        let mut state = 7u64;
        let v: Vec<f64> = (0..200)
            .map(|i| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                if i % 3 == 0 { f64::NAN } else { (state >> 40) as f64 }
            })
            .collect();
        let m = Diff::median(&v);
        assert!(m.is_nan() || v.contains(&m));
        assert_eq!(Diff::median(&[3.0, f64::NAN, 1.0, 2.0, 0.5]), 2.0);
        assert!(Diff::median(&[]).is_nan());
    }

    #[test]
    fn flat_csv_costs_must_be_finite() {
        let dir = std::env::temp_dir().join(format!("bitfusion-lut-csv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let hdr = "kind,in_channels,out_channels,input_size,kernel_size,stride,padding,groups,w_bits,a_bits,latency_ms,energy_mJ";
        for (row, msg) in [
            ("conv,16,64,112,1,1,0,1,4,4,NaN,0.9", "column 'latency_ms': 'NaN' is not a finite number"),
            ("conv,16,64,112,1,1,0,1,4,4,0.5,inf", "column 'energy_mJ': 'inf' is not a finite number"),
        ] {
            let p = dir.join("flat.csv");
            std::fs::write(&p, format!("{hdr}\nconv,16,64,112,1,1,0,1,4,4,0.5,0.9\n{row}\n")).unwrap();
            let e = read_apq_csv(&p).unwrap_err().to_string();
            assert_eq!(e, format!("{}:3: {msg}", p.display()));
        }
        let p = dir.join("ok.csv");
        std::fs::write(&p, format!("{hdr}\nconv,16,64,112,1,1,0,1,4,4,0.5,0.9\n")).unwrap();
        assert_eq!(read_apq_csv(&p).unwrap()[0].key, "(16, 64, 112, 1, 1, 0, 1)-W4A4");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn enumeration_counts_on_a_tiny_space() {
        let s = tiny();
        // Slots: block 0 (Cin 8, 8x8, stride 2), block 1 (Cin 8, 4x4, stride 1); middle channels 16 or 24.
        let slots = s.slots();
        assert_eq!(slots.len(), 2);
        assert_eq!(slots[0].mids, vec![16, 24]);
        let keys = enumerate(&s);
        // Per slot and middle width: expand 2x2 bits x 2 consumer bits = 8 and depthwise 2 kernels x 4
        // x 2 = 16, for both slots (their input sizes differ): 2 x 2 x 24 = 96. Project: 4 bit pairs x
        // 2 consumer bits (the head's 8 is one of the block bits) = 8 per width, and both slots' projects
        // are the same 4x4 layers: 16. Stem (consumer: any expand bits) 2, classifier 1.
        assert_eq!(keys.len(), 96 + 16 + 2 + 1);
        // Every layer of random architectures is enumerated.
        let mut seed = 1;
        for _ in 0..200 {
            let a = Arch::random(&s, &mut seed);
            for k in arch_keys(&s, &a, 1) {
                assert!(keys.contains(&k), "{k:?}");
            }
        }
    }
}

/// The first 16 characters of a hash for a message (fewer if it is shorter; never a panic).
fn prefix(hash: &str) -> String {
    hash.chars().take(16).collect()
}
