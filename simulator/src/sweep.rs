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
//! workloads = ["mobilenet_v2", "topologies/my_net.csv"]   # built-in names or CSV paths
//! precisions = ["native", "8x8", "4x4"]                   # "native": each layer's own bits; "WxA"
//! batch = 1                        # optional: one batch size for every workload
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
use crate::report::write_atomic;
use crate::workload::{WorkloadOverrides, read_topology};
use rayon::prelude::*;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// An error in a sweep spec or run, phrased for the user on one line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct SweepError(pub String);

fn err(msg: impl Into<String>) -> SweepError {
    SweepError(msg.into())
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

#[derive(Deserialize)]
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

/// A parsed, validated sweep.
#[derive(Debug)]
pub struct Sweep {
    pub name: String,
    pub model: CostModelName,
    pub objective: Objective,
    pub keys: Vec<String>,
    pub points: Vec<Point>,
    pub workloads: Vec<Workload>,
    pub precisions: Vec<Precision>,
}

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
            match (r.step, r.factor) {
                (Some(step), None) if step > 0.0 => {
                    while x <= r.stop + 1e-9 {
                        v.push(as_value(x));
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
                    read_topology(&p).map_err(|e| err(e.to_string()))?
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
        // The cross product, each point validated now.
        let mut points = Vec::new();
        let mut idx = vec![0usize; dims.len()];
        loop {
            let mut table = base.document.clone();
            let mut values = Vec::new();
            for (d, &i) in dims.iter().zip(&idx) {
                for (k, v) in &d[i] {
                    set_dotted(&mut table, k, v.clone()).map_err(|m| err(format!("{origin}: axis '{k}': {m}")))?;
                    values.push((k.clone(), value_text(v)));
                }
            }
            let label = values.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ");
            let hw = HwConfig::from_table(table, &format!("{origin}: point {label}"))
                .map_err(|e: ConfigError| err(e.to_string()))?;
            let area_mm2 = ChipFigures::new(&hw).area_mm2();
            let skip = spec.area.as_ref().and_then(|a| match area_mm2 {
                None => Some("area unknown: a buffer has no SRAM figures".to_string()),
                Some(x) if x > a.budget_mm2 => Some(format!("area {x:.3} mm^2 exceeds the budget {:.3} mm^2", a.budget_mm2)),
                Some(x) if x < a.min_fraction * a.budget_mm2 => {
                    Some(format!("area {x:.3} mm^2 is below {:.0}% of the budget {:.3} mm^2", 100.0 * a.min_fraction, a.budget_mm2))
                }
                _ => None,
            });
            points.push(Point { values, hw, area_mm2, skip });
            // Next index (last dimension fastest).
            let mut d = dims.len();
            loop {
                if d == 0 {
                    return Ok(Sweep {
                        name: if spec.name.is_empty() { origin.to_string() } else { spec.name },
                        model,
                        objective,
                        keys,
                        points,
                        workloads,
                        precisions,
                    });
                }
                d -= 1;
                idx[d] += 1;
                if idx[d] < dims[d].len() {
                    break;
                }
                idx[d] = 0;
            }
        }
    }

    /// Every row in a fixed order: points, then workloads, then precisions.
    pub fn jobs(&self) -> Vec<Job> {
        let mut v = Vec::new();
        for p in 0..self.points.len() {
            for w in 0..self.workloads.len() {
                for q in 0..self.precisions.len() {
                    v.push(Job { point: p, workload: w, precision: q });
                }
            }
        }
        v
    }

    /// The key a row is known by in results.csv (for resuming and merging).
    pub fn row_key(&self, j: &Job) -> String {
        format!("{}|{}|{}", self.points[j.point].id(), self.workloads[j.workload].name, self.precisions[j.precision].label())
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

fn point_rows(sweep: &Sweep) -> Vec<ResultRow> {
    sweep
        .points
        .iter()
        .map(|pt| {
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
        })
        .collect()
}

/// Per-layer rows for rooflines: (row key, layer, macs, cycles, dram bits, peak products per cycle).
pub const LAYER_COLUMNS: &[&str] = &["point", "workload", "precision", "layer", "macs", "cycles", "dram_bits", "w_bits", "a_bits"];

fn fmt(x: Option<f64>) -> String {
    x.map(|v| format!("{v}")).unwrap_or_default()
}

/// Run one row; returns the results row and the per-layer rows.
pub fn run_job(sweep: &Sweep, job: &Job) -> (ResultRow, Vec<ResultRow>) {
    let point = &sweep.points[job.point];
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
    row.insert("latency_ms".into(), format!("{}", t.latency_ms));
    row.insert("energy_nj".into(), fmt(energy));
    row.insert("energy_core_nj".into(), fmt(e.map(|e| e.core.0)));
    row.insert("energy_wbuf_nj".into(), fmt(e.map(|e| e.wbuf.0)));
    row.insert("energy_ibuf_nj".into(), fmt(e.map(|e| e.ibuf.0)));
    row.insert("energy_obuf_nj".into(), fmt(e.map(|e| e.obuf.0)));
    row.insert("energy_dram_nj".into(), fmt(e.map(|e| e.dram.0)));
    row.insert("energy_leakage_nj".into(), fmt(e.map(|e| e.leakage.0)));
    row.insert("edp_nj_ms".into(), fmt(energy.map(|x| x * t.latency_ms)));
    row.insert("throughput_gops".into(), format!("{}", 2.0 * t.macs as f64 / (t.latency_ms * 1e-3) / 1e9));
    row.insert("utilization".into(), format!("{}", t.utilization));
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
    let origin = path.display().to_string();
    let mut rdr = csv::Reader::from_path(path).map_err(|e| err(format!("{origin}: {e}")))?;
    let header: Vec<String> = rdr.headers().map_err(|e| err(format!("{origin}: {e}")))?.iter().map(String::from).collect();
    let mut rows = Vec::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| err(format!("{origin}:{}: malformed CSV: {}", e.position().map_or(0, |p| p.line()), e.to_string().replace('\n', " "))))?;
        rows.push(header.iter().cloned().zip(rec.iter().map(String::from)).collect());
    }
    Ok((header, rows))
}

/// Write rows as CSV with `header`, atomically.
pub fn write_rows(path: &Path, header: &[String], rows: &[ResultRow]) -> Result<(), SweepError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let io = |e: csv::Error| err(format!("{}: {e}", path.display()));
    w.write_record(header).map_err(io)?;
    for r in rows {
        w.write_record(header.iter().map(|h| r.get(h).map(String::as_str).unwrap_or(""))).map_err(io)?;
    }
    let bytes = w.into_inner().map_err(|e| err(format!("{}: {e}", path.display())))?;
    write_atomic(path, &bytes).map_err(|e| err(format!("cannot write {}: {e}", path.display())))
}

/// Is `a` at least as good as `b` everywhere and better somewhere (smaller area, latency, energy)?
pub fn dominates(a: &[f64; 3], b: &[f64; 3]) -> bool {
    a.iter().zip(b).all(|(x, y)| x <= y) && a.iter().zip(b).any(|(x, y)| x < y)
}

/// The rows not dominated in (area, latency, energy) by another row of the same workload and precision.
pub fn pareto(rows: &[ResultRow]) -> Vec<ResultRow> {
    let objectives = |r: &ResultRow| -> Option<[f64; 3]> {
        if r.get("status").map(String::as_str) != Some("ok") {
            return None;
        }
        let f = |k: &str| r.get(k)?.parse::<f64>().ok();
        Some([f("area_mm2")?, f("latency_ms")?, f("energy_nj")?])
    };
    let group = |r: &ResultRow| (r.get("workload").cloned(), r.get("precision").cloned());
    rows.iter()
        .filter(|r| {
            let Some(o) = objectives(r) else { return false };
            !rows.iter().any(|s| group(s) == group(r) && objectives(s).is_some_and(|p| dominates(&p, &o)))
        })
        .cloned()
        .collect()
}

/// What a run did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunSummary {
    pub total: usize,
    pub already_done: usize,
    pub ran: usize,
}

/// Sort rows by the sweep's job order (unknown rows last, by key).
fn sort_rows(sweep: &Sweep, rows: &mut [ResultRow]) {
    let order: BTreeMap<String, usize> = sweep.jobs().iter().enumerate().map(|(i, j)| (sweep.row_key(j), i)).collect();
    let key = |r: &ResultRow| format!("{}|{}|{}", r["point"], r["workload"], r["precision"]);
    rows.sort_by_key(|r| (order.get(&key(r)).copied().unwrap_or(usize::MAX), key(r)));
}

/// Run a sweep into `dir` (results.csv, layers.csv, pareto.csv), skipping rows already in
/// results.csv, running only `shard` if given; `progress(done, total)` is called as rows finish.
/// Files are rewritten atomically as rows finish (at most twice a second), so an interrupted run
/// keeps what it computed.
pub fn run(sweep: &Sweep, dir: &Path, shard: Option<Shard>, progress: &(dyn Fn(usize, usize) + Sync)) -> Result<RunSummary, SweepError> {
    std::fs::create_dir_all(dir).map_err(|e| err(format!("cannot create {}: {e}", dir.display())))?;
    let results_path = dir.join("results.csv");
    let layers_path = dir.join("layers.csv");
    let header = result_header(&sweep.keys);
    let layer_header: Vec<String> = LAYER_COLUMNS.iter().map(|s| s.to_string()).collect();
    let (old_header, mut rows) = read_rows(&results_path)?;
    if !rows.is_empty() && old_header != header {
        return Err(err(format!(
            "{}: its columns are not this sweep's (another spec?); use another --out directory",
            results_path.display()
        )));
    }
    let (_, mut layer_rows) = read_rows(&layers_path)?;
    let done: BTreeSet<String> = rows.iter().map(|r| format!("{}|{}|{}", r["point"], r["workload"], r["precision"])).collect();
    let jobs: Vec<Job> = sweep
        .jobs()
        .into_iter()
        .enumerate()
        .filter(|(i, _)| shard.is_none_or(|s| i % s.count == s.index - 1))
        .map(|(_, j)| j)
        .collect();
    let todo: Vec<Job> = jobs.iter().copied().filter(|j| !done.contains(&sweep.row_key(j))).collect();
    let summary = RunSummary { total: jobs.len(), already_done: jobs.len() - todo.len(), ran: todo.len() };
    let state = Mutex::new((std::mem::take(&mut rows), std::mem::take(&mut layer_rows), Instant::now(), summary.already_done));
    let flush = |rows: &mut Vec<ResultRow>, lrows: &Vec<ResultRow>| -> Result<(), SweepError> {
        sort_rows(sweep, rows);
        write_rows(&results_path, &header, rows)?;
        write_rows(&layers_path, &layer_header, lrows)
    };
    progress(summary.already_done, summary.total);
    todo.par_iter().try_for_each(|j| -> Result<(), SweepError> {
        let (row, lrows) = run_job(sweep, j);
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
    let (mut rows, lrows, _, _) = state.into_inner().map_err(|_| err("a sweep worker panicked"))?;
    flush(&mut rows, &lrows)?;
    write_rows(&dir.join("pareto.csv"), &header, &pareto(&rows))?;
    let point_header: Vec<String> = POINT_COLUMNS.iter().map(|s| s.to_string()).collect();
    write_rows(&dir.join("points.csv"), &point_header, &point_rows(sweep))?;
    Ok(summary)
}

/// Merge the results of several shard directories into `out` (rows deduplicated by their key;
/// the same key with different numbers is an error).
pub fn merge(dirs: &[PathBuf], out: &Path) -> Result<usize, SweepError> {
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
            return Err(err(format!("{}: no results.csv rows to merge", d.display())));
        }
        match &header {
            None => header = Some(h),
            Some(prev) if *prev != h => return Err(err(format!("{}: results.csv has other columns than the first directory's", d.display()))),
            _ => {}
        }
        for r in rs {
            let key = format!("{}|{}|{}", r["point"], r["workload"], r["precision"]);
            if let Some(prev) = rows.get(&key)
                && *prev != r {
                    return Err(err(format!("{}: row {key} differs from the same row in another directory", d.display())));
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
    std::fs::create_dir_all(out).map_err(|e| err(format!("cannot create {}: {e}", out.display())))?;
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
        assert_eq!(s.points.len(), 2 * 3 * 2);
        assert_eq!(s.jobs().len(), 12 * 2);
        assert_eq!(s.points[0].id(), "array.rows=8;memory.dram_bits_per_cycle=64;array.cols=16;memory.obuf_bytes=8192");
        assert_eq!(s.points[0].hw.array.cols, 16);
    }

    #[test]
    fn bad_specs_fail_before_running_and_name_the_key() {
        let e = spec("[axes]\n\"array.rowz\" = [8]\n").unwrap_err().0;
        assert!(e.contains("array.rowz") || e.contains("rowz"), "{e}");
        let e = spec("[axes]\n\"array.rows\" = []\n").unwrap_err().0;
        assert!(e.contains("axis 'array.rows' is empty"), "{e}");
        let e = spec("[axes]\n\"memory.wbuf_bytes\" = [1000]\n").unwrap_err().0;
        assert!(e.contains("memory.wbuf_bytes = 1000 does not split"), "{e}");
        assert!(e.contains("point memory.wbuf_bytes=1000"), "{e}");
        let e = spec("precisions = [\"8by8\"]\n[axes]\n\"array.rows\" = [8]\n").unwrap_err().0;
        assert!(e.contains("precision '8by8'"), "{e}");
        let e = spec("").unwrap_err().0;
        assert!(e.contains("no axes"), "{e}");
        let e = spec("[axes]\n\"array.rows\" = { start = 8, stop = 4, step = 0 }\n").unwrap_err().0;
        assert!(e.contains("a range needs"), "{e}");
        let e = spec("colour = 3\n[axes]\n\"array.rows\" = [8]\n").unwrap_err().0;
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
}
