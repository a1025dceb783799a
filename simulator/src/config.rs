//! Hardware configurations: one TOML file per design point.
//!
//! The file is parsed strictly (unknown keys are errors), every value is
//! range-checked, and impossible combinations (buffers that do not split into
//! whole banks, brick widths that do not divide the fusion width, a fusion
//! width with no synthesis figures) are rejected with an error that names the
//! file, the key and the allowed range. Units are part of the key names.
//!
//! Loading goes through a [`toml::Table`] so that `--set key=value` overrides
//! (and the sweep axes of later tools) edit the same document the file gives,
//! and are validated the same way.

use crate::sram::{Ports, SramTableName};
use crate::units::Bytes;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::Path;

/// An error in a hardware configuration, already phrased for the user:
/// `<origin>: <what is wrong>` on one line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{origin}: {message}")]
pub struct ConfigError {
    /// The file (or `--set`) the bad value came from.
    pub origin: String,
    pub message: String,
}

impl ConfigError {
    fn new(origin: &str, message: impl Into<String>) -> Self {
        Self { origin: origin.to_string(), message: message.into() }
    }
}

/// Which cost model simulates a layer (chosen by name in `[models] cost`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CostModelName {
    /// The 2018 simulator's analytical model, reproduced exactly.
    #[default]
    Reference,
    /// The cycle-level engine.
    Cycle,
}

impl CostModelName {
    pub const ALL: &'static [&'static str] = &["reference", "cycle"];

    pub fn as_str(self) -> &'static str {
        match self {
            CostModelName::Reference => "reference",
            CostModelName::Cycle => "cycle",
        }
    }
}

impl std::str::FromStr for CostModelName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "reference" => Ok(CostModelName::Reference),
            "cycle" => Ok(CostModelName::Cycle),
            other => Err(format!("unknown cost model '{other}' (known: {})", Self::ALL.join(", "))),
        }
    }
}

/// How the reference model (which has no grouped convolution) costs a grouped
/// or depthwise layer. The original ignores `groups` (`dense`); the other two
/// are the labelled alternatives of the reference data (`dw_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum GroupedMapping {
    /// Groups ignored: an IC x OC dense convolution (what the original does; `dense_ignoring_groups`).
    #[default]
    #[serde(alias = "dense_ignoring_groups")]
    Dense,
    /// One convolution with IC = in_channels / groups and OC = out_channels (`ic1_ocC` for depthwise).
    #[serde(alias = "ic1_ocC")]
    IcPerGroup,
    /// One (IC/groups) x (OC/groups) convolution, every counter multiplied by groups (`per_channel_x_C`).
    #[serde(alias = "per_channel_x_C")]
    PerGroup,
    /// Refuse grouped layers with an error.
    Reject,
}

/// Fusion-unit figures from synthesis, for one (fusion_bits, brick_bits) pair.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FusionUnitFigures {
    pub fusion_bits: u32,
    pub brick_bits: u32,
    /// Area of one fusion unit, in square micrometres.
    pub area_um2: f64,
    /// Dynamic energy of one fusion unit per active cycle, in picojoules.
    pub dynamic_energy_pj_per_cycle: f64,
    /// Leakage power of one fusion unit, in milliwatts.
    pub leakage_mw: f64,
}

/// The systolic array's geometry and fusion-unit widths.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ArrayConfig {
    /// N: fusion units along the reduction (input-channel) dimension.
    pub rows: u32,
    /// M: fusion units along the output-channel dimension.
    pub cols: u32,
    /// BitBrick operand width, in bits (the original's `low_prec`, pmin).
    pub brick_bits: u32,
    /// Fusion unit maximum operand width, in bits (the original's `high_prec`, pmax).
    pub fusion_bits: u32,
}

impl ArrayConfig {
    pub fn fusion_units(&self) -> u64 {
        self.rows as u64 * self.cols as u64
    }
    /// Width of one WBUF/IBUF bank word: fusion_bits^2 / brick_bits bits (32 for 8/2).
    pub fn operand_word_bits(&self) -> u64 {
        (self.fusion_bits as u64 * self.fusion_bits as u64) / self.brick_bits as u64
    }
}

/// On-chip buffers and the DRAM interface.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct MemoryConfig {
    pub wbuf: Bytes,
    pub ibuf: Bytes,
    pub obuf: Bytes,
    /// DRAM interface width, in bits per accelerator cycle (the original's `if_width`).
    pub dram_bits_per_cycle: u64,
    /// DRAM access energy, in picojoules per bit (15 in the paper's configuration).
    pub dram_energy_pj_per_bit: f64,
    /// Cycles from a DMA transfer's request to its first beat (cycle model).
    pub dram_latency_cycles: u64,
    /// DRAM burst, in bytes: contiguous segments are rounded up to whole bursts (cycle model).
    pub dram_burst_bytes: u64,
}

/// Word width of an OBUF bank (32-bit partial sums), in bits.
pub const OBUF_WORD_BITS: u64 = 32;

/// Which SRAM figures and port configuration each buffer uses.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct SramConfig {
    pub table: SramTableName,
    pub wbuf_ports: Ports,
    pub ibuf_ports: Ports,
    pub obuf_ports: Ports,
}

/// Which implementation of each component is used, by name.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ModelsConfig {
    pub cost: CostModelName,
    pub reference_grouped: GroupedMapping,
}

/// A validated hardware configuration.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HwConfig {
    pub name: String,
    pub description: String,
    pub array: ArrayConfig,
    /// Clock frequency, in MHz.
    pub frequency_mhz: f64,
    pub memory: MemoryConfig,
    pub sram: SramConfig,
    /// The synthesis figures for this array's (fusion_bits, brick_bits).
    pub fusion_unit: FusionUnitFigures,
    pub models: ModelsConfig,
    /// The batch the machine is deployed at (`[workload] batch`, default 1): what `bitfusion run`,
    /// `bitfusion study edge-cloud` and `lut build` without `--batch` build their LUTs at. A
    /// network's own layers keep their batch in `simulate` (override it there with `--batch`).
    pub batch: u32,
    /// The normalised TOML document this config was built from (overrides applied).
    #[serde(skip)]
    pub document: toml::Table,
}

// ---------------------------------------------------------------------------------------------
// The file form: what serde reads, before range checks.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    name: String,
    #[serde(default)]
    description: String,
    array: FileArray,
    clock: FileClock,
    memory: FileMemory,
    #[serde(default)]
    sram: FileSram,
    core: FileCore,
    #[serde(default)]
    models: FileModels,
    #[serde(default)]
    workload: FileWorkload,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileWorkload {
    #[serde(default = "default_batch")]
    batch: i64,
}

impl Default for FileWorkload {
    fn default() -> Self {
        Self { batch: default_batch() }
    }
}

fn default_batch() -> i64 {
    1
}

/// Largest accepted `[workload] batch`.
pub const MAX_BATCH: i64 = 4096;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileArray {
    rows: i64,
    cols: i64,
    brick_bits: i64,
    fusion_bits: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileClock {
    frequency_mhz: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileMemory {
    wbuf_bytes: i64,
    ibuf_bytes: i64,
    obuf_bytes: i64,
    dram_bits_per_cycle: i64,
    dram_energy_pj_per_bit: f64,
    #[serde(default)]
    dram_latency_cycles: i64,
    #[serde(default = "default_burst")]
    dram_burst_bytes: i64,
}

fn default_burst() -> i64 {
    64
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSram {
    #[serde(default)]
    table: SramTableName,
    #[serde(default = "Ports::one_read_one_write")]
    wbuf_ports: Ports,
    #[serde(default = "Ports::one_read_one_write")]
    ibuf_ports: Ports,
    #[serde(default = "Ports::bitfusion_obuf")]
    obuf_ports: Ports,
}

impl Default for FileSram {
    fn default() -> Self {
        Self {
            table: SramTableName::default(),
            wbuf_ports: Ports::one_read_one_write(),
            ibuf_ports: Ports::one_read_one_write(),
            obuf_ports: Ports::bitfusion_obuf(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCore {
    fusion_unit: Vec<FusionUnitFigures>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileModels {
    #[serde(default)]
    cost: CostModelName,
    #[serde(default)]
    reference_grouped: GroupedMapping,
}

/// Largest accepted array side (fusion units).
pub const MAX_ARRAY_SIDE: i64 = 4096;
/// Largest accepted buffer, in bytes (1 GiB).
pub const MAX_BUFFER_BYTES: i64 = 1 << 30;

fn check_int(origin: &str, key: &str, v: i64, lo: i64, hi: i64) -> Result<u64, ConfigError> {
    if v < lo || v > hi {
        return Err(ConfigError::new(origin, format!("{key} = {v} is out of range (allowed {lo}..={hi})")));
    }
    Ok(v as u64)
}

fn check_float(origin: &str, key: &str, v: f64, lo: f64, hi: f64, lo_open: bool) -> Result<f64, ConfigError> {
    let below = if lo_open { v <= lo } else { v < lo };
    if !v.is_finite() || below || v > hi {
        let range = if lo_open { format!("{lo} < value <= {hi}") } else { format!("{lo}..={hi}") };
        return Err(ConfigError::new(origin, format!("{key} = {v} is out of range (allowed {range})")));
    }
    Ok(v)
}

impl HwConfig {
    /// Load and validate a config file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        Self::from_file_with_overrides(path, &[])
    }

    /// Load a config file, apply `key=value` overrides, and validate the result.
    pub fn from_file_with_overrides(path: &Path, overrides: &[String]) -> Result<Self, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(&origin, format!("cannot read hardware config: {e}")))?;
        Self::from_toml_str(&text, &origin, overrides)
    }

    /// Parse TOML text (`origin` names it in errors), apply overrides, validate.
    pub fn from_toml_str(text: &str, origin: &str, overrides: &[String]) -> Result<Self, ConfigError> {
        let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| toml_error(origin, text, &e))?;
        // A type or unknown-key error in the file itself names the key and its line in the file:
        // the text is deserialized again (its errors carry spans) only when the table fails.
        let file_error = |e: ConfigError| match toml::from_str::<FileDoc>(text) {
            Err(de) => de_error(origin, text, &de, true),
            Ok(_) => e,
        };
        if overrides.is_empty() {
            return Self::from_table(table, origin).map_err(file_error);
        }
        // Errors in the file itself are the file's; errors that appear with the overrides are theirs.
        Self::from_table(table.clone(), origin).map_err(file_error)?;
        for o in overrides {
            apply_override(&mut table, o)?;
        }
        let with = format!("{origin} with --set {}", overrides.join(" --set "));
        Self::from_table(table, &with).map_err(|mut e| {
            // Name the one `--set` that gave the offending key, when the message names one.
            if let Some(o) = overrides.iter().rev().find(|o| {
                let key = o.split_once('=').map_or(o.as_str(), |(k, _)| k.trim());
                e.message.starts_with(&format!("{key}:")) || e.message.starts_with(&format!("{key} "))
            }) {
                e.origin = format!("{origin} with --set {o}");
            }
            e
        })
    }

    /// Validate a TOML document.
    pub fn from_table(table: toml::Table, origin: &str) -> Result<Self, ConfigError> {
        let doc = match FileDoc::deserialize(toml::Value::Table(table.clone())) {
            Ok(doc) => doc,
            // A `toml::Value` has no spans: deserialize the document's text again, whose error
            // carries one, to name the dotted key (only on this error path).
            Err(e) => {
                let text = toml::to_string(&table).map_err(|e| ConfigError::new(origin, e.to_string()))?;
                return Err(match toml::from_str::<FileDoc>(&text) {
                    Err(de) => de_error(origin, &text, &de, false),
                    Ok(_) => ConfigError::new(origin, plain_types(&e.message().trim().replace('\n', " "))),
                });
            }
        };
        let o = origin;
        let array = ArrayConfig {
            rows: check_int(o, "array.rows", doc.array.rows, 1, MAX_ARRAY_SIDE)? as u32,
            cols: check_int(o, "array.cols", doc.array.cols, 1, MAX_ARRAY_SIDE)? as u32,
            brick_bits: check_int(o, "array.brick_bits", doc.array.brick_bits, 1, 8)? as u32,
            fusion_bits: check_int(o, "array.fusion_bits", doc.array.fusion_bits, 1, 32)? as u32,
        };
        if !array.brick_bits.is_power_of_two() {
            return Err(ConfigError::new(
                o,
                format!("array.brick_bits = {} must be a power of two (1, 2, 4 or 8)", array.brick_bits),
            ));
        }
        if !array.fusion_bits.is_multiple_of(array.brick_bits) || !(array.fusion_bits / array.brick_bits).is_power_of_two() {
            return Err(ConfigError::new(
                o,
                format!(
                    "array.fusion_bits = {} must be brick_bits ({}) times a power of two (bricks fuse by halves)",
                    array.fusion_bits, array.brick_bits
                ),
            ));
        }
        if !array.operand_word_bits().is_multiple_of(8) {
            return Err(ConfigError::new(
                o,
                format!(
                    "array.fusion_bits^2 / array.brick_bits = {} bits is not a whole number of bytes (the buffer word)",
                    array.operand_word_bits()
                ),
            ));
        }
        let frequency_mhz = check_float(o, "clock.frequency_mhz", doc.clock.frequency_mhz, 0.0, 100_000.0, true)?;
        let m = &doc.memory;
        let memory = MemoryConfig {
            wbuf: Bytes(check_int(o, "memory.wbuf_bytes", m.wbuf_bytes, 1, MAX_BUFFER_BYTES)?),
            ibuf: Bytes(check_int(o, "memory.ibuf_bytes", m.ibuf_bytes, 1, MAX_BUFFER_BYTES)?),
            obuf: Bytes(check_int(o, "memory.obuf_bytes", m.obuf_bytes, 1, MAX_BUFFER_BYTES)?),
            dram_bits_per_cycle: check_int(o, "memory.dram_bits_per_cycle", m.dram_bits_per_cycle, 1, 1 << 20)?,
            dram_energy_pj_per_bit: check_float(
                o,
                "memory.dram_energy_pj_per_bit",
                m.dram_energy_pj_per_bit,
                0.0,
                1e6,
                false,
            )?,
            dram_latency_cycles: check_int(o, "memory.dram_latency_cycles", m.dram_latency_cycles, 0, 1 << 20)?,
            dram_burst_bytes: check_int(o, "memory.dram_burst_bytes", m.dram_burst_bytes, 1, 1 << 16)?,
        };
        let word_bytes = array.operand_word_bits() / 8;
        let banks = [
            ("memory.wbuf_bytes", memory.wbuf.0, array.fusion_units(), word_bytes, "rows x cols"),
            ("memory.ibuf_bytes", memory.ibuf.0, array.rows as u64, word_bytes, "rows"),
            ("memory.obuf_bytes", memory.obuf.0, array.cols as u64, OBUF_WORD_BITS / 8, "cols"),
        ];
        for (key, bytes, n_banks, word, what) in banks {
            let unit = n_banks * word;
            if bytes % unit != 0 {
                return Err(ConfigError::new(
                    o,
                    format!(
                        "{key} = {bytes} does not split into {n_banks} banks ({what}) of whole {word}-byte words: \
                         it must be a multiple of {unit}"
                    ),
                ));
            }
        }
        let fusion_unit = select_fusion_unit(o, &doc.core.fusion_unit, &array)?;
        Ok(HwConfig {
            name: doc.name,
            description: doc.description,
            array,
            frequency_mhz,
            memory,
            sram: SramConfig {
                table: doc.sram.table,
                wbuf_ports: doc.sram.wbuf_ports,
                ibuf_ports: doc.sram.ibuf_ports,
                obuf_ports: doc.sram.obuf_ports,
            },
            fusion_unit,
            models: ModelsConfig { cost: doc.models.cost, reference_grouped: doc.models.reference_grouped },
            batch: check_int(o, "workload.batch", doc.workload.batch, 1, MAX_BATCH)? as u32,
            document: table,
        })
    }

    /// Clock frequency in Hz.
    pub fn frequency_hz(&self) -> f64 {
        self.frequency_mhz * 1e6
    }

    /// Milliseconds taken by `cycles` at this config's clock.
    pub fn cycles_to_ms(&self, cycles: u64) -> f64 {
        cycles as f64 / (self.frequency_mhz * 1e3)
    }
}

fn select_fusion_unit(
    origin: &str,
    entries: &[FusionUnitFigures],
    array: &ArrayConfig,
) -> Result<FusionUnitFigures, ConfigError> {
    for (i, e) in entries.iter().enumerate() {
        let key = format!("core.fusion_unit[{i}]");
        check_float(origin, &format!("{key}.area_um2"), e.area_um2, 0.0, 1e9, true)?;
        check_float(origin, &format!("{key}.dynamic_energy_pj_per_cycle"), e.dynamic_energy_pj_per_cycle, 0.0, 1e6, false)?;
        check_float(origin, &format!("{key}.leakage_mw"), e.leakage_mw, 0.0, 1e6, false)?;
    }
    entries
        .iter()
        .find(|e| e.fusion_bits == array.fusion_bits && e.brick_bits == array.brick_bits)
        .cloned()
        .ok_or_else(|| {
            let have: Vec<String> = entries.iter().map(|e| format!("{}/{}", e.fusion_bits, e.brick_bits)).collect();
            ConfigError::new(
                origin,
                format!(
                    "core.fusion_unit has no entry for fusion_bits/brick_bits = {}/{} (entries: {})",
                    array.fusion_bits,
                    array.brick_bits,
                    if have.is_empty() { "none".to_string() } else { have.join(", ") }
                ),
            )
        })
}

/// Apply one `key=value` override (dotted key, TOML value; a bare word is taken as a string).
pub fn apply_override(table: &mut toml::Table, assignment: &str) -> Result<(), ConfigError> {
    let origin = format!("--set {assignment}");
    let Some((key, raw)) = assignment.split_once('=') else {
        return Err(ConfigError::new(&origin, "expected key=value, e.g. array.rows=32"));
    };
    if assignment.contains(['\n', '\r']) {
        return Err(ConfigError::new(&origin, "a --set value must be on one line"));
    }
    let key = key.trim();
    let value = parse_override_value(raw.trim());
    set_dotted(table, key, value).map_err(|m| ConfigError::new(&origin, m))
}

/// Parse the right-hand side of `key=value` as a TOML value, falling back to a string.
pub fn parse_override_value(raw: &str) -> toml::Value {
    let doc = format!("v = {raw}");
    match doc.parse::<toml::Table>() {
        Ok(mut t) => t.remove("v").unwrap_or_else(|| toml::Value::String(raw.to_string())),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

/// Set `a.b.c = value` in a TOML table, creating intermediate tables.
pub fn set_dotted(table: &mut toml::Table, key: &str, value: toml::Value) -> Result<(), String> {
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(format!("'{key}' is not a valid dotted key"));
    }
    let mut cur = table;
    for (i, p) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            cur.insert((*p).to_string(), value);
            return Ok(());
        }
        let entry = cur.entry((*p).to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = match entry {
            toml::Value::Table(t) => t,
            _ => return Err(format!("'{}' is a value, not a table", parts[..=i].join("."))),
        };
    }
    Ok(())
}

/// Format a TOML syntax error on one line, with its line and column.
fn toml_error(origin: &str, text: &str, e: &toml::de::Error) -> ConfigError {
    let msg = e.message().trim().replace('\n', " ");
    match e.span() {
        Some(span) => {
            let (line, col) = line_col(text, span.start);
            ConfigError::new(&format!("{origin}:{line}:{col}"), msg)
        }
        None => ConfigError::new(origin, msg),
    }
}

/// A deserialization error (wrong type, unknown key) on one line, naming the dotted key it is
/// about, in plain words, and, when `text` is the user's own file, its line.
fn de_error(origin: &str, text: &str, e: &toml::de::Error, file_lines: bool) -> ConfigError {
    let msg = plain_types(&e.message().trim().replace('\n', " "));
    let Some(span) = e.span() else { return ConfigError::new(origin, msg) };
    let origin = if file_lines {
        let (line, _) = line_col(text, span.start);
        format!("{origin}:{line}")
    } else {
        origin.to_string()
    };
    match key_at(text, span.start) {
        Some(key) => ConfigError::new(&origin, format!("{key}: {msg}")),
        None => ConfigError::new(&origin, msg),
    }
}

/// serde's type names as a user reads them ("expected i64" -> "expected an integer").
fn plain_types(message: &str) -> String {
    const NAMES: &[(&str, &str)] = &[
        ("i64", "an integer"),
        ("u64", "a non-negative integer"),
        ("u32", "a non-negative integer"),
        ("i32", "an integer"),
        ("f64", "a number"),
        ("f32", "a number"),
        ("bool", "a boolean (true or false)"),
        ("a boolean", "a boolean (true or false)"),
        ("string", "a string"),
        ("a sequence", "an array"),
        ("a map", "a table"),
    ];
    let mut out = message.to_string();
    for (raw, plain) in NAMES {
        out = out.replace(&format!("expected {raw}"), &format!("expected {plain}"));
    }
    let out = out.replace("floating point", "number");
    // "invalid type: string \"abc\", expected an integer" -> "expected an integer, found string \"abc\""
    match out.strip_prefix("invalid type: ").and_then(|r| r.rsplit_once(", expected ")) {
        Some((found, expected)) => format!("expected {expected}, found {found}"),
        None => out,
    }
}

/// The dotted key of the `key = value` line holding byte `offset` of a TOML document, with the
/// enclosing `[table]` (`[[array]]` headers numbered: `core.fusion_unit[1]`).
fn key_at(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map_or(0, |p| p + 1);
    let line = text[line_start..].lines().next().unwrap_or("");
    let mut table = String::new();
    let mut arrays: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for l in text[..line_start].lines() {
        let l = l.trim();
        if let Some(name) = l.strip_prefix("[[").and_then(|r| r.strip_suffix("]]")) {
            let n = arrays.entry(name.trim().to_string()).or_insert(0);
            table = format!("{}[{}]", name.trim(), *n);
            *n += 1;
        } else if let Some(name) = l.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            table = name.trim().to_string();
        }
    }
    let key = line.split_once('=').map(|(k, _)| k.trim().trim_matches('"'))?;
    if key.is_empty() || key.starts_with('[') {
        return None;
    }
    Some(if table.is_empty() { key.to_string() } else { format!("{table}.{key}") })
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map_or(before.len(), |p| before.len() - p - 1) + 1;
    (line, col)
}

impl fmt::Display for HwConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = &self.array;
        let m = &self.memory;
        write!(
            f,
            "{}: {}x{} fusion units ({}-bit fused from {}-bit bricks), {} MHz, WBUF {} B, IBUF {} B, OBUF {} B, DRAM {} bits/cycle",
            self.name, a.rows, a.cols, a.fusion_bits, a.brick_bits, self.frequency_mhz, m.wbuf.0, m.ibuf.0, m.obuf.0,
            m.dram_bits_per_cycle
        )
    }
}

/// The hardware configs shipped in `hwconfigs/`, embedded so that `--hw NAME` works anywhere.
pub const SHIPPED_CONFIGS: &[(&str, &str)] = &[
    ("bitfusion-isca2018", include_str!("../../hwconfigs/bitfusion-isca2018.toml")),
    ("bitfusion-8x8", include_str!("../../hwconfigs/bitfusion-8x8.toml")),
    ("bitfusion-stripes", include_str!("../../hwconfigs/bitfusion-stripes.toml")),
    ("bitfusion-edge", include_str!("../../hwconfigs/bitfusion-edge.toml")),
    ("bitfusion-cloud", include_str!("../../hwconfigs/bitfusion-cloud.toml")),
];

/// Load `spec` as a file path if it exists, else as the name of a shipped config.
pub fn load_hw(spec: &str, overrides: &[String]) -> Result<HwConfig, ConfigError> {
    let path = Path::new(spec);
    if path.exists() {
        return HwConfig::from_file_with_overrides(path, overrides);
    }
    let name = spec.trim_end_matches(".toml");
    let name = name.rsplit('/').next().unwrap_or(name);
    if spec.contains(std::path::MAIN_SEPARATOR) || spec.contains('/') || spec.ends_with(".toml") {
        // A path that does not exist is a mistake, even when a built-in config has its name.
        let hint = match SHIPPED_CONFIGS.iter().find(|(n, _)| *n == name) {
            Some((n, _)) => format!(" (for the built-in config of that name, pass --hw {n})"),
            None => String::new(),
        };
        return Err(ConfigError::new(spec, format!("no such file{hint}")));
    }
    match SHIPPED_CONFIGS.iter().find(|(n, _)| *n == name) {
        Some((n, text)) => HwConfig::from_toml_str(text, &format!("{n} (built in)"), overrides),
        None => Err(ConfigError::new(
            spec,
            format!(
                "no such file, and not a built-in config (built in: {})",
                SHIPPED_CONFIGS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paper() -> String {
        SHIPPED_CONFIGS[0].1.to_string()
    }

    fn err(text: &str, overrides: &[&str]) -> String {
        let o: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        HwConfig::from_toml_str(text, "t.toml", &o).unwrap_err().to_string()
    }

    #[test]
    fn shipped_configs_are_valid() {
        for (name, text) in SHIPPED_CONFIGS {
            let hw = HwConfig::from_toml_str(text, name, &[]).unwrap();
            assert_eq!(&hw.name, name);
        }
        let hw = HwConfig::from_toml_str(&paper(), "p", &[]).unwrap();
        assert_eq!((hw.array.rows, hw.array.cols), (16, 32));
        assert_eq!(hw.memory.dram_bits_per_cycle, 192);
        assert_eq!(hw.memory.wbuf, Bytes(65536));
        assert!((hw.fusion_unit.dynamic_energy_pj_per_cycle * 512.0 - 235.104).abs() < 1e-9);
    }

    #[test]
    fn overrides_apply_and_validate() {
        let hw = HwConfig::from_toml_str(&paper(), "p", &["array.rows=32".into()]).unwrap();
        assert_eq!(hw.array.rows, 32);
        let hw = HwConfig::from_toml_str(&paper(), "p", &["models.reference_grouped=ic1_ocC".into()]).unwrap();
        assert_eq!(hw.models.reference_grouped, GroupedMapping::IcPerGroup);
        let e = err(&paper(), &["array.rows=0"]);
        assert!(e.contains("array.rows = 0 is out of range (allowed 1..=4096)"), "{e}");
        let e = err(&paper(), &["array.rowz=3"]);
        assert!(e.contains("unknown field `rowz`"), "{e}");
        let e = err(&paper(), &["array.rows"]);
        assert!(e.contains("expected key=value"), "{e}");
    }

    #[test]
    fn impossible_values_are_named() {
        let e = err(&paper(), &["memory.wbuf_bytes=1000"]);
        assert!(e.contains("memory.wbuf_bytes = 1000 does not split into 512 banks"), "{e}");
        let e = err(&paper(), &["array.brick_bits=3"]);
        assert!(e.contains("array.brick_bits = 3 must be a power of two"), "{e}");
        let e = err(&paper(), &["array.fusion_bits=6"]);
        assert!(e.contains("array.fusion_bits = 6 must be brick_bits"), "{e}");
        let e = err(&paper(), &["memory.ibuf_bytes=-4"]);
        assert!(e.contains("memory.ibuf_bytes = -4 is out of range"), "{e}");
        let e = err(&paper(), &["clock.frequency_mhz=0"]);
        assert!(e.contains("clock.frequency_mhz = 0 is out of range"), "{e}");
        let e = err(&paper(), &["array.fusion_bits=16", "array.brick_bits=4"]);
        assert!(e.contains("core.fusion_unit has no entry for fusion_bits/brick_bits = 16/4"), "{e}");
        let e = err(&paper(), &["models.cost=magic"]);
        assert!(e.contains("magic"), "{e}");
    }

    #[test]
    fn syntax_errors_have_line_and_column() {
        let e = err("name = \"x\"\n[array\nrows = 1\n", &[]);
        assert!(e.starts_with("t.toml:2:"), "{e}");
        assert!(!e.contains('\n'), "one line: {e}");
        let e = err("name = \"x\"\n", &[]);
        assert!(e.contains("missing field `array`"), "{e}");
    }

    #[test]
    fn type_and_key_errors_name_the_dotted_key_and_line() {
        let text = paper().replacen("rows = 16", "rows = \"sixteen\"", 1);
        let line = text.lines().position(|l| l.contains("\"sixteen\"")).unwrap() + 1;
        let e = err(&text, &[]);
        assert!(e.starts_with(&format!("t.toml:{line}: array.rows: expected an integer")), "{e}");
        let e = err(&paper(), &["array.rows=abc"]);
        assert!(e.contains("with --set array.rows=abc: array.rows: expected an integer"), "{e}");
        let e = err(&paper(), &["array.cols=3", "memory.wbuf_bytes=1.5"]);
        assert!(e.contains("--set memory.wbuf_bytes=1.5: memory.wbuf_bytes: expected an integer, found number"), "{e}");
        let e = err(&paper(), &["array.rowz=3"]);
        assert!(e.contains("array.rowz: unknown field `rowz`"), "{e}");
        let e = err(&format!("{}\nbogus = 1\n", paper()), &[]);
        assert!(e.contains("bogus: unknown field `bogus`"), "{e}");
        assert!(!e.contains("i64"), "{e}");
    }

    #[test]
    fn set_values_with_line_breaks_are_refused() {
        let e = err(&paper(), &["array.rows=3\nx"]);
        assert!(e.contains("must be on one line"), "{e}");
    }

    #[test]
    fn a_missing_path_is_not_taken_for_a_built_in_name() {
        let e = load_hw("/no/such/dir/bitfusion-8x8.toml", &[]).unwrap_err().to_string();
        assert!(e.contains("no such file") && e.contains("--hw bitfusion-8x8"), "{e}");
        assert!(load_hw("bitfusion-8x8.toml", &[]).is_err());
    }

    #[test]
    fn edge_and_cloud_configs_load_with_their_batches() {
        let edge = load_hw("bitfusion-edge", &[]).unwrap();
        let cloud = load_hw("bitfusion-cloud", &[]).unwrap();
        assert_eq!((edge.array.rows, edge.array.cols, edge.memory.dram_bits_per_cycle, edge.batch), (8, 8, 32, 1));
        assert_eq!((cloud.array.rows, cloud.array.cols, cloud.memory.dram_bits_per_cycle, cloud.batch), (32, 64, 2048, 16));
        // Without `[workload]` the batch is 1 and the document (so every LUT hash) is unchanged.
        let paper = load_hw("bitfusion-isca2018", &[]).unwrap();
        assert_eq!(paper.batch, 1);
        assert!(!paper.document.contains_key("workload"));
        assert_eq!(load_hw("bitfusion-edge", &["workload.batch=4".into()]).unwrap().batch, 4);
        let e = load_hw("bitfusion-edge", &["workload.batch=0".into()]).unwrap_err().to_string();
        assert!(e.contains("workload.batch = 0 is out of range"), "{e}");
    }

    #[test]
    fn load_hw_by_name_and_unknown() {
        assert_eq!(load_hw("bitfusion-8x8", &[]).unwrap().array.rows, 8);
        let e = load_hw("nope", &[]).unwrap_err().to_string();
        assert!(e.contains("not a built-in config"), "{e}");
    }
}
