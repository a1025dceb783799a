//! Design-space sweeps: a TOML spec, its cross product of configs x workloads x precisions, run in
//! parallel, resumable and shardable, with the area/latency/energy Pareto set.
//!
//! Spec format (all keys but `base`, `workloads` and one axis optional):
//!
//! ```toml
//! name = "array-shape"
//! base = "bitfusion-isca2018"      # a shipped config name, or a path relative to the spec
//! set = ["memory.wbuf_bytes=262144"]   # overrides of the base, applied before sweeping
//! model = "cycle"                  # or "reference"
//! objective = "cycles"             # cycles | energy | edp (cycle model)
//! workloads = ["mobilenet_v2", "topologies/my_net.csv"]   # built-in names or workload files (any format workload::read_workload detects)
//! precisions = ["native", "8x8", "4x4"]                   # "native": each layer's own bits; "WxA"
//! batch = 1                        # optional: one batch size for every workload
//! resolution = 160                 # optional: input pixels of net.config workloads (default: run.config beside it, else 224)
//!
//! [axes]                           # the cross product of these
//! "array.rows" = [8, 16, 32]
//! "memory.wbuf_bytes" = { start = 16384, stop = 131072, factor = 2 }   # geometric range
//! "memory.dram_bits_per_cycle" = { start = 64, stop = 256, step = 64 } # arithmetic range
//!
//! [[zip]]                          # keys that vary together (one point per index), crossed with the axes
//! "array.cols" = [32, 64]
//! "memory.obuf_bytes" = [16384, 32768]
//!
//! [area]                           # optional iso-area constraint
//! budget_mm2 = 5.87                # configs above it are recorded as rows with the reason, not run
//! min_fraction = 0.5               # and so are configs below min_fraction x budget
//! ```
//!
//! Every point's config is validated before anything runs: an unknown key, an empty axis or a
//! combination that is not a valid config is an error naming the key. A layer the config cannot map
//! (no tiling fits, a bit width it cannot run) is a row with status `error` and the reason.

use crate::config::{CostModelName, ConfigError, HwConfig, load_hw, set_dotted};
use crate::energy::ChipFigures;
use crate::layer::Layer;
use crate::model::Objective;
use crate::model::{CostModel, build, simulate_layers};
use crate::networks::network;
// A number of results.csv is written as every result CSV writes one.
use crate::report::opt as fmt;
use bitfusion_util::{OutputLock, non_dominated, write_atomic};
use crate::workload::{ReadOptions, WorkloadOverrides, read_workload};
use rayon::prelude::*;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// An error of a sweep, phrased for the user on one line, by kind: a script driving shards
/// can wait and retry on [`SweepError::Busy`], and re-run on [`SweepError::Io`], where a
/// [`SweepError::Spec`] needs the spec fixed.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// The spec, one of its points or workloads is invalid (the message names file and key).
    #[error("{0}")]
    Spec(String),
    /// A results file cannot be read back (malformed, or another sweep's columns).
    #[error("{path}: {message}")]
    Results { path: PathBuf, message: String },
    /// Reading or writing an output failed.
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
    /// Another process is writing the output directory.
    #[error(transparent)]
    Busy(#[from] bitfusion_util::LockError),
}

fn err(msg: impl Into<String>) -> SweepError {
    SweepError::Spec(msg.into())
}

fn io(path: &Path, e: impl std::fmt::Display) -> SweepError {
    SweepError::Io { path: path.to_path_buf(), message: e.to_string().replace('\n', " ") }
}

fn bad_results(path: &Path, message: impl Into<String>) -> SweepError {
    SweepError::Results { path: path.to_path_buf(), message: message.into() }
}

/// One axis value list, or a range.
#[derive(Deserialize)]
#[serde(untagged)]
enum AxisValues {
    List(Vec<toml::Value>),
    Range(RangeSpec),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RangeSpec {
    start: f64,
    stop: f64,
    step: Option<f64>,
    factor: Option<f64>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
struct AreaSpec {
    budget_mm2: f64,
    #[serde(default)]
    min_fraction: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SpecFile {
    #[serde(default)]
    name: String,
    base: String,
    #[serde(default)]
    set: Vec<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    objective: Option<String>,
    workloads: Vec<String>,
    #[serde(default = "default_precisions")]
    precisions: Vec<String>,
    #[serde(default)]
    batch: Option<u32>,
    /// Input resolution of `net.config` workloads, in pixels (other formats ignore it).
    #[serde(default)]
    resolution: Option<u32>,
    #[serde(default)]
    axes: BTreeMap<String, AxisValues>,
    #[serde(default)]
    zip: Vec<BTreeMap<String, Vec<toml::Value>>>,
    #[serde(default)]
    area: Option<AreaSpec>,
}

fn default_precisions() -> Vec<String> {
    vec!["native".into()]
}

/// Precision of a sweep row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Precision {
    /// Each layer's own bits.
    Native,
    /// Every layer at (weight bits, activation bits).
    Uniform(u32, u32),
}

impl Precision {
    pub fn label(&self) -> String {
        match self {
            Precision::Native => "native".into(),
            Precision::Uniform(w, a) => format!("{w}x{a}"),
        }
    }

    pub fn parse(s: &str) -> Option<Precision> {
        if s == "native" {
            return Some(Precision::Native);
        }
        let (w, a) = s.split_once('x')?;
        Some(Precision::Uniform(w.trim().parse().ok()?, a.trim().parse().ok()?))
    }
}

/// A workload of a sweep.
#[derive(Clone, Debug)]
pub struct Workload {
    pub name: String,
    pub layers: Vec<Layer>,
}

/// One design point: the swept keys' values (as TOML text) and the validated config.
#[derive(Clone, Debug)]
pub struct Point {
    pub values: Vec<(String, String)>,
    pub hw: HwConfig,
    pub area_mm2: Option<f64>,
    /// Why the point is not run (outside the area budget), if so.
    pub skip: Option<String>,
}

impl Point {
    /// A stable identifier: the swept keys and values.
    pub fn id(&self) -> String {
        self.values.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(";")
    }
}

/// A parsed sweep: its axes, not its points. Points are materialised (and validated) one at a
/// time when a run needs them ([`Sweep::point`]), so a spec of millions of points costs memory
/// only for the rows a run (or a shard) produces.
#[derive(Debug)]
pub struct Sweep {
    pub name: String,
    pub model: CostModelName,
    pub objective: Objective,
    pub keys: Vec<String>,
    pub workloads: Vec<Workload>,
    pub precisions: Vec<Precision>,
    origin: String,
    base: toml::Table,
    /// Each dimension's values: an axis (one key) or a zip group (its keys together).
    dims: Vec<Vec<Vec<(String, toml::Value)>>>,
    area: Option<AreaSpec>,
    point_count: usize,
}

/// The most jobs (points x workloads x precisions) one spec may describe.
pub const MAX_JOBS: usize = 10_000_000;

/// One (point, workload, precision) row to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Job {
    pub point: usize,
    pub workload: usize,
    pub precision: usize,
}

fn value_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn expand(origin: &str, key: &str, vals: &AxisValues) -> Result<Vec<toml::Value>, SweepError> {
    let out = match vals {
        AxisValues::List(v) => v.clone(),
        AxisValues::Range(r) => {
            let mut v = Vec::new();
            let mut x = r.start;
            let as_value = |x: f64| if x.fract() == 0.0 { toml::Value::Integer(x as i64) } else { toml::Value::Float(x) };
            // Count the values before making them, so a range of 10^12 steps is refused, not built.
            let count = match (r.step, r.factor) {
                (Some(step), None) if step > 0.0 => ((r.stop - r.start) / step).floor() + 1.0,
                (None, Some(f)) if f > 1.0 && r.start > 0.0 => (r.stop / r.start).ln() / f.ln() + 1.0,
                _ => 0.0,
            };
            if !count.is_finite() || count > MAX_JOBS as f64 {
                return Err(err(format!("{origin}: axis '{key}': the range has {count:.3e} values, above the limit of {MAX_JOBS}")));
            }
            match (r.step, r.factor) {
                (Some(step), None) if step > 0.0 => {
                    while x <= r.stop + 1e-9 {
                        v.push(as_value(x));
                        if x + step == x {
                            return Err(err(format!("{origin}: axis '{key}': the step {step} is lost in rounding at {x}; give a larger step")));
                        }
                        x += step;
                    }
                }
                (None, Some(f)) if f > 1.0 && r.start > 0.0 => {
                    while x <= r.stop * (1.0 + 1e-12) {
                        v.push(as_value(x));
                        x *= f;
                    }
                }
                _ => {
                    return Err(err(format!(
                        "{origin}: axis '{key}': a range needs start, stop and either step > 0 or factor > 1 (with start > 0)"
                    )));
                }
            }
            v
        }
    };
    if out.is_empty() {
        return Err(err(format!("{origin}: axis '{key}' is empty")));
    }
    Ok(out)
}

impl Sweep {
    /// Read and validate a sweep spec file.
    pub fn from_file(path: &Path) -> Result<Sweep, SweepError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| err(format!("{origin}: cannot read sweep spec: {e}")))?;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Sweep::from_str(&text, &origin, &dir)
    }

    /// Parse and validate a sweep spec; relative paths are taken from `dir`.
    pub fn from_str(text: &str, origin: &str, dir: &Path) -> Result<Sweep, SweepError> {
        let spec: SpecFile = toml::from_str(text).map_err(|e: toml::de::Error| {
            let at = e.span().map(|s| {
                let before = &text[..s.start.min(text.len())];
                format!(":{}", before.matches('\n').count() + 1)
            });
            err(format!("{origin}{}: {}", at.unwrap_or_default(), e.message().replace('\n', " ")))
        })?;
        let resolve = |p: &str| -> String {
            let candidate = dir.join(p);
            if candidate.exists() { candidate.display().to_string() } else { p.to_string() }
        };
        let base = load_hw(&resolve(&spec.base), &spec.set).map_err(|e| err(format!("{origin}: base: {e}")))?;
        let model = match &spec.model {
            Some(m) => m.parse::<CostModelName>().map_err(|e| err(format!("{origin}: model: {e}")))?,
            None => base.models.cost,
        };
        let objective = match &spec.objective {
            Some(o) => o.parse::<Objective>().map_err(|e| err(format!("{origin}: objective: {e}")))?,
            None => Objective::Cycles,
        };
        if spec.resolution == Some(0) {
            return Err(err(format!("{origin}: resolution must be at least 1 pixel")));
        }
        if spec.workloads.is_empty() {
            return Err(err(format!("{origin}: workloads is empty")));
        }
        let mut workloads = Vec::new();
        for w in &spec.workloads {
            let mut layers = match network(w) {
                Some(n) => n.layers(),
                None => {
                    let p = PathBuf::from(resolve(w));
                    if !p.exists() {
                        return Err(err(format!("{origin}: workload '{w}' is neither a built-in network nor a file")));
                    }
                    let onnx = crate::onnx::OnnxOptions { batch: spec.batch.unwrap_or(1), ..Default::default() };
                    read_workload(&p, &ReadOptions { onnx, resolution: spec.resolution }).map_err(|e| err(e.to_string()))?
                }
            };
            WorkloadOverrides { batch: spec.batch, ..Default::default() }
                .apply(&mut layers)
                .map_err(|e| err(format!("{origin}: batch: {}", e.message)))?;
            workloads.push(Workload { name: w.clone(), layers });
        }
        if spec.precisions.is_empty() {
            return Err(err(format!("{origin}: precisions is empty")));
        }
        let precisions = spec
            .precisions
            .iter()
            .map(|s| Precision::parse(s).ok_or_else(|| err(format!("{origin}: precision '{s}': expected \"native\" or \"WxA\", e.g. \"4x8\""))))
            .collect::<Result<Vec<_>, _>>()?;
        for p in &precisions {
            if let Precision::Uniform(w, a) = p {
                for (what, b) in [("weight", w), ("activation", a)] {
                    if !(crate::layer::MIN_BITS..=crate::layer::MAX_BITS).contains(b) {
                        return Err(err(format!("{origin}: precision '{}': unsupported {what} bit width {b} (allowed 1..=16)", p.label())));
                    }
                }
            }
        }
        // Dimensions: each axis, then each zip group (all its lists the same length).
        let mut dims: Vec<Vec<Vec<(String, toml::Value)>>> = Vec::new();
        let mut keys = Vec::new();
        for (key, vals) in &spec.axes {
            let values = expand(origin, key, vals)?;
            keys.push(key.clone());
            dims.push(values.into_iter().map(|v| vec![(key.clone(), v)]).collect());
        }
        for (i, group) in spec.zip.iter().enumerate() {
            let len = group.values().next().map_or(0, Vec::len);
            if len == 0 {
                return Err(err(format!("{origin}: zip group {} is empty", i + 1)));
            }
            for (key, vals) in group {
                if vals.len() != len {
                    return Err(err(format!("{origin}: zip group {}: '{key}' has {} values, others {len}", i + 1, vals.len())));
                }
                keys.push(key.clone());
            }
            dims.push((0..len).map(|j| group.iter().map(|(k, v)| (k.clone(), v[j].clone())).collect()).collect());
        }
        if dims.is_empty() {
            return Err(err(format!("{origin}: no axes: give [axes] or [[zip]] with at least one key")));
        }
        let dup: BTreeSet<&String> = keys.iter().collect();
        if dup.len() != keys.len() {
            return Err(err(format!("{origin}: a key is swept twice")));
        }
        // Count before anything is expanded; refuse absurd counts, naming the axes.
        let sizes: Vec<String> = dims
            .iter()
            .map(|d| format!("{}: {}", d[0].iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>().join("+"), d.len()))
            .chain([format!("workloads: {}", workloads.len()), format!("precisions: {}", precisions.len())])
            .collect();
        let jobs = dims
            .iter()
            .map(Vec::len)
            .chain([workloads.len(), precisions.len()])
            .try_fold(1usize, |acc, n| acc.checked_mul(n).filter(|&p| p <= MAX_JOBS));
        let Some(jobs) = jobs else {
            let total = dims.iter().map(|d| d.len() as f64).product::<f64>() * workloads.len() as f64 * precisions.len() as f64;
            return Err(err(format!(
                "{origin}: the sweep has {total:.3e} jobs ({}), above the limit of {MAX_JOBS}; narrow an axis or split the spec",
                sizes.join(" x ")
            )));
        };
        let sweep = Sweep {
            name: if spec.name.is_empty() { origin.to_string() } else { spec.name },
            model,
            objective,
            keys,
            point_count: jobs / (workloads.len() * precisions.len()),
            workloads,
            precisions,
            origin: origin.to_string(),
            base: base.document.clone(),
            dims,
            area: spec.area,
        };
        // The first point is checked now, so a key that is not a config key fails at once.
        sweep.point(0)?;
        Ok(sweep)
    }

    /// Number of design points.
    pub fn point_count(&self) -> usize {
        self.point_count
    }

    /// Number of rows: points x workloads x precisions.
    pub fn job_count(&self) -> usize {
        self.point_count * self.workloads.len() * self.precisions.len()
    }

    /// Design point `index` (the last dimension varies fastest), its config built and validated.
    pub fn point(&self, index: usize) -> Result<Point, SweepError> {
        let origin = &self.origin;
        let mut table = self.base.clone();
        let mut values = Vec::new();
        let mut rest = index;
        let mut picks = vec![0usize; self.dims.len()];
        for (d, dim) in self.dims.iter().enumerate().rev() {
            picks[d] = rest % dim.len();
            rest /= dim.len();
        }
        for (dim, &i) in self.dims.iter().zip(&picks) {
            for (k, v) in &dim[i] {
                set_dotted(&mut table, k, v.clone()).map_err(|m| err(format!("{origin}: axis '{k}': {m}")))?;
                values.push((k.clone(), value_text(v)));
            }
        }
        let label = values.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ");
        let hw = HwConfig::from_table(table, &format!("{origin}: point {label}")).map_err(|e: ConfigError| err(e.to_string()))?;
        let area_mm2 = ChipFigures::new(&hw).area_mm2();
        let skip = self.area.as_ref().and_then(|a| match area_mm2 {
            None => Some("area unknown: a buffer has no SRAM figures".to_string()),
            Some(x) if x > a.budget_mm2 => Some(format!("area {x:.3} mm^2 exceeds the budget {:.3} mm^2", a.budget_mm2)),
            Some(x) if x < a.min_fraction * a.budget_mm2 => {
                Some(format!("area {x:.3} mm^2 is below {:.0}% of the budget {:.3} mm^2", 100.0 * a.min_fraction, a.budget_mm2))
            }
            _ => None,
        });
        Ok(Point { values, hw, area_mm2, skip })
    }

    /// Row `index` of the fixed order: points, then workloads, then precisions.
    pub fn job(&self, index: usize) -> Job {
        let per_point = self.workloads.len() * self.precisions.len();
        Job { point: index / per_point, workload: index % per_point / self.precisions.len(), precision: index % self.precisions.len() }
    }

    /// The rows of `shard` (all rows without one), in order, without materialising the others.
    pub fn shard_jobs(&self, shard: Option<Shard>) -> impl Iterator<Item = Job> + '_ {
        let (first, step) = shard.map_or((0, 1), |s| (s.index - 1, s.count));
        (first..self.job_count()).step_by(step).map(|i| self.job(i))
    }

    /// The key a row is known by in results.csv (for resuming and merging).
    pub fn row_key(&self, point: &Point, j: &Job) -> String {
        format!("{}|{}|{}", point.id(), self.workloads[j.workload].name, self.precisions[j.precision].label())
    }
}

/// A shard `i/n` (1-based): the jobs whose index is i-1 modulo n.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Shard, String> {
        let bad = || format!("--shard {s}: expected i/n with 1 <= i <= n, e.g. 2/8");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count): (usize, usize) = (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        if count == 0 || index == 0 || index > count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

/// The columns of results.csv after the swept keys.
pub const RESULT_COLUMNS: &[&str] = &[
    "workload",
    "precision",
    "status",
    "reason",
    "area_mm2",
    "cycles",
    "latency_ms",
    "energy_nj",
    "energy_core_nj",
    "energy_wbuf_nj",
    "energy_ibuf_nj",
    "energy_obuf_nj",
    "energy_dram_nj",
    "energy_leakage_nj",
    "edp_nj_ms",
    "throughput_gops",
    "utilization",
    "macs",
    "dram_bits",
];

/// One row of results, as strings keyed by column (the swept keys included).
pub type ResultRow = BTreeMap<String, String>;

/// Columns of points.csv: what plots need to know of each design point.
pub const POINT_COLUMNS: &[&str] =
    &["point", "area_mm2", "rows", "cols", "fusion_bits", "brick_bits", "frequency_mhz", "dram_bits_per_cycle", "skipped"];

/// A point's row of points.csv (its config dropped).
fn point_row(pt: &Point) -> ResultRow {
    let h = &pt.hw;
    [
        ("point", pt.id()),
        ("area_mm2", fmt(pt.area_mm2)),
        ("rows", h.array.rows.to_string()),
        ("cols", h.array.cols.to_string()),
        ("fusion_bits", h.array.fusion_bits.to_string()),
        ("brick_bits", h.array.brick_bits.to_string()),
        ("frequency_mhz", h.frequency_mhz.to_string()),
        ("dram_bits_per_cycle", h.memory.dram_bits_per_cycle.to_string()),
        ("skipped", pt.skip.clone().unwrap_or_default()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Per-layer rows for rooflines: (row key, layer, macs, cycles, dram bits, peak products per cycle).
pub const LAYER_COLUMNS: &[&str] = &["point", "workload", "precision", "layer", "macs", "cycles", "dram_bits", "w_bits", "a_bits"];

/// Run one row; returns the results row and the per-layer rows.
pub fn run_job(sweep: &Sweep, point: &Point, job: &Job) -> (ResultRow, Vec<ResultRow>) {
    let wl = &sweep.workloads[job.workload];
    let prec = sweep.precisions[job.precision];
    let mut row: ResultRow = point.values.iter().cloned().collect();
    row.insert("point".into(), point.id());
    row.insert("workload".into(), wl.name.clone());
    row.insert("precision".into(), prec.label());
    row.insert("area_mm2".into(), fmt(point.area_mm2));
    let fail = |mut row: ResultRow, status: &str, reason: String| {
        row.insert("status".into(), status.into());
        row.insert("reason".into(), reason);
        (row, Vec::new())
    };
    if let Some(why) = &point.skip {
        return fail(row, "skipped", why.clone());
    }
    let mut layers = wl.layers.clone();
    if let Precision::Uniform(w, a) = prec {
        for l in &mut layers {
            l.w_bits = w;
            l.a_bits = a;
        }
    }
    let model: Box<dyn CostModel> = build(&point.hw, Some(sweep.model), sweep.objective);
    let report = match simulate_layers(model.as_ref(), &layers) {
        Ok(r) => r,
        Err(e) => return fail(row, "error", e.to_string()),
    };
    let t = &report.total;
    let e = t.energy;
    let energy = e.map(|e| e.total().get());
    row.insert("status".into(), "ok".into());
    row.insert("reason".into(), report.notes.join("; "));
    row.insert("cycles".into(), t.cycles.0.to_string());
    row.insert("latency_ms".into(), fmt(Some(t.latency_ms)));
    row.insert("energy_nj".into(), fmt(energy));
    row.insert("energy_core_nj".into(), fmt(e.map(|e| e.core.0)));
    row.insert("energy_wbuf_nj".into(), fmt(e.map(|e| e.wbuf.0)));
    row.insert("energy_ibuf_nj".into(), fmt(e.map(|e| e.ibuf.0)));
    row.insert("energy_obuf_nj".into(), fmt(e.map(|e| e.obuf.0)));
    row.insert("energy_dram_nj".into(), fmt(e.map(|e| e.dram.0)));
    row.insert("energy_leakage_nj".into(), fmt(e.map(|e| e.leakage.0)));
    row.insert("edp_nj_ms".into(), fmt(energy.map(|x| x * t.latency_ms)));
    row.insert("throughput_gops".into(), fmt(Some(2.0 * t.macs as f64 / (t.latency_ms * 1e-3) / 1e9)));
    row.insert("utilization".into(), fmt(Some(t.utilization)));
    row.insert("macs".into(), t.macs.to_string());
    row.insert("dram_bits".into(), (t.counters.dram_read.0 + t.counters.dram_write.0).to_string());
    let layer_rows = report
        .layers
        .iter()
        .zip(&layers)
        .map(|(s, l)| {
            [
                ("point", point.id()),
                ("workload", wl.name.clone()),
                ("precision", prec.label()),
                ("layer", s.name.clone()),
                ("macs", s.macs.to_string()),
                ("cycles", s.cycles.0.to_string()),
                ("dram_bits", (s.counters.dram_read.0 + s.counters.dram_write.0).to_string()),
                ("w_bits", l.w_bits.to_string()),
                ("a_bits", l.a_bits.to_string()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
        })
        .collect();
    (row, layer_rows)
}

/// All columns of results.csv for a sweep: point, the swept keys, then [`RESULT_COLUMNS`].
pub fn result_header(keys: &[String]) -> Vec<String> {
    std::iter::once("point".to_string()).chain(keys.iter().cloned()).chain(RESULT_COLUMNS.iter().map(|s| s.to_string())).collect()
}

/// Read a results-like CSV into rows (missing file: no rows). Errors name the file and line.
pub fn read_rows(path: &Path) -> Result<(Vec<String>, Vec<ResultRow>), SweepError> {
    if !path.exists() {
        return Ok((Vec::new(), Vec::new()));
    }
    rows_of(csv::Reader::from_path(path).map_err(|e| io(path, e))?, path)
}

/// The header and rows of a CSV reader over `path`'s contents.
fn rows_of<R: std::io::Read>(mut rdr: csv::Reader<R>, path: &Path) -> Result<(Vec<String>, Vec<ResultRow>), SweepError> {
    let header: Vec<String> = rdr.headers().map_err(|e| bad_results(path, e.to_string()))?.iter().map(String::from).collect();
    let mut rows = Vec::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| bad_results(path, format!("line {}: malformed CSV: {}", e.position().map_or(0, |p| p.line()), e.to_string().replace('\n', " "))))?;
        rows.push(header.iter().cloned().zip(rec.iter().map(String::from)).collect());
    }
    Ok((header, rows))
}

/// Write rows as CSV with `header`, atomically.
pub fn write_rows(path: &Path, header: &[String], rows: &[ResultRow]) -> Result<(), SweepError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let csv_io = |e: csv::Error| io(path, e);
    w.write_record(header).map_err(csv_io)?;
    for r in rows {
        w.write_record(header.iter().map(|h| r.get(h).map(String::as_str).unwrap_or(""))).map_err(csv_io)?;
    }
    let bytes = w.into_inner().map_err(|e| io(path, e))?;
    write_atomic(path, &bytes).map_err(|e| io(path, format!("cannot write: {e}")))
}

/// The rows not dominated in (area, latency, energy) by another row of the same workload and
/// precision (the workspace's one Pareto filter, [`bitfusion_util::non_dominated`]), in input order.
pub fn pareto(rows: &[ResultRow]) -> Vec<ResultRow> {
    let objectives = |r: &ResultRow| -> Option<[f64; 3]> {
        if r.get("status").map(String::as_str) != Some("ok") {
            return None;
        }
        let f = |k: &str| r.get(k)?.parse::<f64>().ok();
        Some([f("area_mm2")?, f("latency_ms")?, f("energy_nj")?])
    };
    let mut groups: BTreeMap<(Option<&String>, Option<&String>), (Vec<usize>, Vec<[f64; 3]>)> = BTreeMap::new();
    for (i, r) in rows.iter().enumerate() {
        if let Some(o) = objectives(r) {
            let g = groups.entry((r.get("workload"), r.get("precision"))).or_default();
            g.0.push(i);
            g.1.push(o);
        }
    }
    let mut keep: Vec<usize> = groups.values().flat_map(|(idx, objs)| non_dominated(objs).into_iter().map(|k| idx[k])).collect();
    keep.sort_unstable();
    keep.into_iter().map(|i| rows[i].clone()).collect()
}

/// What a run did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunSummary {
    pub total: usize,
    pub already_done: usize,
    pub ran: usize,
}

/// The key of a results (or layers) row: point, workload and precision.
fn key_of(r: &ResultRow) -> String {
    let f = |k: &str| r.get(k).map_or("", String::as_str);
    format!("{}|{}|{}", f("point"), f("workload"), f("precision"))
}

/// Sort rows by the order of `jobs` (their keys), rows of other jobs last by key; stable, so a
/// job's layer rows keep their order.
fn sort_rows(order: &BTreeMap<String, usize>, rows: &mut [ResultRow]) {
    rows.sort_by_cached_key(|r| {
        let k = key_of(r);
        (order.get(&k).copied().unwrap_or(usize::MAX), k)
    });
}

/// Read a CSV this module wrote for resuming: a last line without its line break (torn by a
/// kill or a full disk) is dropped, as pair files do, and its row runs again.
fn read_rows_resuming(path: &Path) -> Result<(Vec<String>, Vec<ResultRow>), SweepError> {
    let Ok(text) = std::fs::read_to_string(path) else { return read_rows(path) };
    if text.is_empty() || text.ends_with('\n') {
        return read_rows(path);
    }
    let whole = &text[..text.rfind('\n').map_or(0, |p| p + 1)];
    rows_of(csv::Reader::from_reader(whole.as_bytes()), path)
}

/// Run a sweep into `dir` (results.csv, layers.csv, pareto.csv, points.csv), skipping rows
/// already in results.csv, running only `shard` if given; `progress(done, total)` is called as
/// rows finish. The directory is locked for the run ([`OutputLock`]): a second writer is refused
/// instead of silently dropping rows. Every point of the shard is validated before anything
/// runs; points are then built one job at a time, never all at once. Files are rewritten
/// atomically as rows finish (at most twice a second), sorted in job order (the same bytes on
/// any number of threads), so an interrupted run keeps what it computed.
pub fn run(sweep: &Sweep, dir: &Path, shard: Option<Shard>, progress: &(dyn Fn(usize, usize) + Sync)) -> Result<RunSummary, SweepError> {
    let _lock = OutputLock::dir(dir)?;
    let results_path = dir.join("results.csv");
    let layers_path = dir.join("layers.csv");
    let header = result_header(&sweep.keys);
    let layer_header: Vec<String> = LAYER_COLUMNS.iter().map(|s| s.to_string()).collect();
    let (old_header, mut rows) = read_rows_resuming(&results_path)?;
    if !rows.is_empty() && old_header != header {
        return Err(bad_results(&results_path, "its columns are not this sweep's (another spec?); use another --out directory"));
    }
    let (_, mut layer_rows) = read_rows_resuming(&layers_path)?;
    let done: BTreeSet<String> = rows.iter().map(key_of).collect();
    // Only the rows that finished, and their layers, are kept on resume.
    layer_rows.retain(|r| done.contains(&key_of(r)));
    // Every point of the shard is built and validated before anything runs (in parallel, one
    // point at a time per thread; the error is the first bad point in order), keeping only its
    // row keys and its points.csv row.
    let jobs: Vec<Job> = sweep.shard_jobs(shard).collect();
    let groups: Vec<&[Job]> = jobs.chunk_by(|a, b| a.point == b.point).collect();
    let built: Vec<Result<(Vec<String>, ResultRow), SweepError>> = groups
        .par_iter()
        .map(|g| {
            let point = sweep.point(g[0].point)?;
            Ok((g.iter().map(|j| sweep.row_key(&point, j)).collect(), point_row(&point)))
        })
        .collect();
    let mut order = BTreeMap::new();
    let mut todo = Vec::new();
    let mut points_seen = Vec::with_capacity(groups.len());
    for (g, b) in groups.iter().zip(built) {
        let (keys, summary) = b?;
        for (j, key) in g.iter().zip(keys) {
            if !done.contains(&key) {
                todo.push(*j);
            }
            let next = order.len();
            order.insert(key, next);
        }
        points_seen.push(summary);
    }
    let summary = RunSummary { total: jobs.len(), already_done: jobs.len() - todo.len(), ran: todo.len() };
    let state = Mutex::new((std::mem::take(&mut rows), std::mem::take(&mut layer_rows), Instant::now(), summary.already_done));
    let flush = |rows: &mut Vec<ResultRow>, lrows: &mut Vec<ResultRow>| -> Result<(), SweepError> {
        sort_rows(&order, rows);
        sort_rows(&order, lrows);
        write_rows(&results_path, &header, rows)?;
        write_rows(&layers_path, &layer_header, lrows)
    };
    progress(summary.already_done, summary.total);
    todo.par_iter().try_for_each(|j| -> Result<(), SweepError> {
        let point = sweep.point(j.point)?;
        let (row, lrows) = run_job(sweep, &point, j);
        let mut st = state.lock().map_err(|_| err("a sweep worker panicked"))?;
        st.0.push(row);
        st.1.extend(lrows);
        st.3 += 1;
        progress(st.3, summary.total);
        if st.2.elapsed() > Duration::from_millis(500) {
            let (rows, lrows, t, _) = &mut *st;
            flush(rows, lrows)?;
            *t = Instant::now();
        }
        Ok(())
    })?;
    let (mut rows, mut lrows, _, _) = state.into_inner().map_err(|_| err("a sweep worker panicked"))?;
    flush(&mut rows, &mut lrows)?;
    write_rows(&dir.join("pareto.csv"), &header, &pareto(&rows))?;
    let point_header: Vec<String> = POINT_COLUMNS.iter().map(|s| s.to_string()).collect();
    write_rows(&dir.join("points.csv"), &point_header, &points_seen)?;
    Ok(summary)
}


/// Merge the results of several shard directories into `out` (rows deduplicated by their key;
/// the same key with different numbers is an error).
pub fn merge(dirs: &[PathBuf], out: &Path) -> Result<usize, SweepError> {
    let _lock = OutputLock::dir(out)?;
    let mut header: Option<Vec<String>> = None;
    let mut rows: BTreeMap<String, ResultRow> = BTreeMap::new();
    let mut layers: BTreeMap<String, ResultRow> = BTreeMap::new();
    let mut points: BTreeMap<String, ResultRow> = BTreeMap::new();
    for d in dirs {
        let (_, ps) = read_rows(&d.join("points.csv"))?;
        for pt in ps {
            points.insert(pt["point"].clone(), pt);
        }
        let (h, rs) = read_rows(&d.join("results.csv"))?;
        if rs.is_empty() {
            return Err(bad_results(&d.join("results.csv"), "no rows to merge"));
        }
        match &header {
            None => header = Some(h),
            Some(prev) if *prev != h => return Err(bad_results(&d.join("results.csv"), "other columns than the first directory's")),
            _ => {}
        }
        for r in rs {
            let key = format!("{}|{}|{}", r["point"], r["workload"], r["precision"]);
            if let Some(prev) = rows.get(&key)
                && *prev != r {
                    return Err(bad_results(&d.join("results.csv"), format!("row {key} differs from the same row in another directory")));
                }
            rows.insert(key, r);
        }
        let (_, ls) = read_rows(&d.join("layers.csv"))?;
        for l in ls {
            let key = format!("{}|{}|{}|{}", l["point"], l["workload"], l["precision"], l["layer"]);
            layers.insert(key, l);
        }
    }
    let header = header.unwrap_or_default();
    let rows: Vec<ResultRow> = rows.into_values().collect();
    write_rows(&out.join("results.csv"), &header, &rows)?;
    let layer_header: Vec<String> = LAYER_COLUMNS.iter().map(|s| s.to_string()).collect();
    write_rows(&out.join("layers.csv"), &layer_header, &layers.into_values().collect::<Vec<_>>())?;
    write_rows(&out.join("pareto.csv"), &header, &pareto(&rows))?;
    let point_header: Vec<String> = POINT_COLUMNS.iter().map(|s| s.to_string()).collect();
    write_rows(&out.join("points.csv"), &point_header, &points.into_values().collect::<Vec<_>>())?;
    Ok(rows.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(extra: &str) -> Result<Sweep, SweepError> {
        let text = format!("base = \"bitfusion-isca2018\"\nworkloads = [\"lenet5\"]\nbatch = 1\n{extra}");
        Sweep::from_str(&text, "s.toml", Path::new("."))
    }

    #[test]
    fn axes_ranges_and_zips_expand_to_the_cross_product() {
        let s = spec("precisions = [\"native\", \"4x4\"]\n[axes]\n\"array.rows\" = [8, 16]\n\"memory.dram_bits_per_cycle\" = { start = 64, stop = 256, factor = 2 }\n[[zip]]\n\"array.cols\" = [16, 32]\n\"memory.obuf_bytes\" = [8192, 16384]\n").unwrap();
        assert_eq!(s.point_count(), 2 * 3 * 2);
        assert_eq!(s.job_count(), 12 * 2);
        assert_eq!(s.point(0).unwrap().id(), "array.rows=8;memory.dram_bits_per_cycle=64;array.cols=16;memory.obuf_bytes=8192");
        assert_eq!(s.point(0).unwrap().hw.array.cols, 16);
        assert_eq!(s.point(11).unwrap().id(), "array.rows=16;memory.dram_bits_per_cycle=256;array.cols=32;memory.obuf_bytes=16384");
        assert_eq!(s.job(23), Job { point: 11, workload: 0, precision: 1 });
        let shard: Vec<Job> = s.shard_jobs(Some(Shard { index: 2, count: 5 })).collect();
        assert_eq!(shard.len(), 5);
        assert_eq!(shard[0], s.job(1));
        assert_eq!(shard[4], s.job(21));
    }

    #[test]
    fn huge_sweeps_are_counted_not_expanded() {
        // 1000 x 1000 = 10^6 points: accepted at once, nothing built beyond the first point.
        let axes = "[axes]\n\"clock.frequency_mhz\" = { start = 1, stop = 1000, step = 1 }\n\"memory.dram_bits_per_cycle\" = { start = 8, stop = 8000, step = 8 }\n";
        let s = spec(axes).unwrap();
        assert_eq!(s.point_count(), 1_000_000);
        assert_eq!(s.point(999_999).unwrap().hw.memory.dram_bits_per_cycle, 8000);
        assert_eq!(s.shard_jobs(Some(Shard { index: 3, count: 1000 })).count(), 1000);
        // 10^9 jobs: refused, naming the count and the axes.
        let e = spec(&format!("{axes}\"array.rows\" = {{ start = 1, stop = 1000, step = 1 }}\n")).unwrap_err().to_string();
        assert!(e.contains("1.000e9 jobs") && e.contains("array.rows: 1000") && e.contains("memory.dram_bits_per_cycle: 1000"), "{e}");
        // A range that would be 10^12 values is refused before it is built.
        let e = spec("[axes]\n\"array.rows\" = { start = 1, stop = 1e12, step = 1 }\n").unwrap_err().to_string();
        assert!(e.contains("axis 'array.rows': the range has 1.000e12 values"), "{e}");
    }

    #[test]
    fn bad_specs_fail_before_running_and_name_the_key() {
        let e = spec("[axes]\n\"array.rowz\" = [8]\n").unwrap_err().to_string();
        assert!(e.contains("array.rowz") || e.contains("rowz"), "{e}");
        let e = spec("[axes]\n\"array.rows\" = []\n").unwrap_err().to_string();
        assert!(e.contains("axis 'array.rows' is empty"), "{e}");
        let e = spec("[axes]\n\"memory.wbuf_bytes\" = [1000]\n").unwrap_err().to_string();
        assert!(e.contains("memory.wbuf_bytes = 1000 does not split"), "{e}");
        assert!(e.contains("point memory.wbuf_bytes=1000"), "{e}");
        let e = spec("precisions = [\"8by8\"]\n[axes]\n\"array.rows\" = [8]\n").unwrap_err().to_string();
        assert!(e.contains("precision '8by8'"), "{e}");
        let e = spec("").unwrap_err().to_string();
        assert!(e.contains("no axes"), "{e}");
        let e = spec("[axes]\n\"array.rows\" = { start = 8, stop = 4, step = 0 }\n").unwrap_err().to_string();
        assert!(e.contains("a range needs"), "{e}");
        let e = spec("colour = 3\n[axes]\n\"array.rows\" = [8]\n").unwrap_err().to_string();
        assert!(e.contains("unknown field `colour`"), "{e}");
    }

    #[test]
    fn pareto_keeps_exactly_the_non_dominated_rows() {
        let row = |a: f64, l: f64, e: f64| -> ResultRow {
            [("status", "ok".to_string()), ("workload", "w".into()), ("precision", "native".into()), ("area_mm2", a.to_string()), ("latency_ms", l.to_string()), ("energy_nj", e.to_string())]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect()
        };
        let rows = vec![row(1.0, 5.0, 5.0), row(2.0, 2.0, 5.0), row(2.0, 3.0, 6.0), row(3.0, 1.0, 1.0), row(1.0, 5.0, 5.0)];
        let p = pareto(&rows);
        assert_eq!(p.len(), 4); // (2,3,6) is dominated by (2,2,5); the duplicate (1,5,5) rows both stay
        assert!(!p.contains(&rows[2]));
    }

    #[test]
    fn shards_parse() {
        assert_eq!("2/3".parse::<Shard>().unwrap(), Shard { index: 2, count: 3 });
        assert!("0/3".parse::<Shard>().is_err());
        assert!("4/3".parse::<Shard>().is_err());
        assert!("x".parse::<Shard>().is_err());
    }

    #[test]
    fn a_range_whose_step_is_lost_in_rounding_is_refused() {
        // Found by reading the fuzz harness: x += 1 never moves x at 1e17, so the range never ended.
        let e = spec("[axes]\n\"array.rows\" = { start = 1e17, stop = 1.0000000000000002e17, step = 1 }\n").unwrap_err().to_string();
        assert!(e.contains("lost in rounding"), "{e}");
    }
}
