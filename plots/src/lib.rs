//! Pictures of results, with plotters: every chart is written as PNG and SVG, with axis labels that
//! carry units and legends. PNG text is drawn with DejaVu Sans, embedded (`assets/`, its licence
//! beside it), so charts render on a bare machine.
//!
//! `plot_sweep` reads a sweep directory (results.csv, layers.csv, points.csv) and draws latency and
//! energy heatmaps over two swept keys, the area-latency and area-energy Pareto fronts, stacked
//! energy breakdowns per config, and a roofline per config. This crate reads result tables; it
//! never simulates.

use bitfusion_simulator::LanePlan;
use bitfusion_simulator::sweep::{ResultRow, read_rows};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Why a plot could not be drawn, phrased for the user on one line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct PlotError(pub String);

fn perr(m: impl Into<String>) -> PlotError {
    PlotError(m.into())
}

const FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// Register the embedded font once (plotters' bitmap backend draws no text without one).
fn init_font() -> Result<(), PlotError> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).map_err(|_| "the embedded font is invalid".to_string())?;
        plotters::style::register_font("sans-serif", FontStyle::Bold, FONT).map_err(|_| "the embedded font is invalid".to_string())
    })
    .clone()
    .map_err(PlotError)
}

type DrawResult = Result<(), String>;

/// The legend every chart here draws: a boxed, lightly shaded key at `position`, labels at `font_px`.
fn draw_legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
    font_px: u32,
) -> DrawResult {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", font_px))
        .draw()
        .map_err(|e| e.to_string())
}

/// Draw one chart to `stem.png` and `stem.svg`.
macro_rules! both {
    ($stem:expr, $size:expr, $chart:ident, $($arg:expr),*) => {{
        let stem: &Path = $stem;
        let png = stem.with_extension("png");
        let svg = stem.with_extension("svg");
        {
            let root = BitMapBackend::new(&png, $size).into_drawing_area();
            $chart(&root, $($arg),*).map_err(|e| perr(format!("{}: {e}", png.display())))?;
            root.present().map_err(|e| perr(format!("{}: {e}", png.display())))?;
        }
        {
            let root = SVGBackend::new(&svg, $size).into_drawing_area();
            $chart(&root, $($arg),*).map_err(|e| perr(format!("{}: {e}", svg.display())))?;
            root.present().map_err(|e| perr(format!("{}: {e}", svg.display())))?;
        }
        vec![png, svg]
    }};
}

/// The label of category `v` on an axis whose categories sit at integer positions.
fn category(labels: &[String], v: f64) -> String {
    if (v - v.round()).abs() > 1e-6 || v < -0.01 {
        return String::new();
    }
    labels.get(v.round() as usize).cloned().unwrap_or_default()
}

fn num(r: &ResultRow, k: &str) -> Option<f64> {
    r.get(k)?.parse::<f64>().ok()
}

/// Order values numerically when they are numbers, else as text.
fn sort_values(v: &mut [String]) {
    v.sort_by(|a, b| match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal),
        _ => a.cmp(b),
    });
}

/// A blue-to-yellow colour for t in [0, 1].
fn heat(t: f64) -> RGBColor {
    let t = t.clamp(0.0, 1.0);
    let stops = [(68.0, 1.0, 84.0), (59.0, 82.0, 139.0), (33.0, 145.0, 140.0), (94.0, 201.0, 98.0), (253.0, 231.0, 37.0)];
    let x = t * (stops.len() - 1) as f64;
    let i = (x.floor() as usize).min(stops.len() - 2);
    let f = x - i as f64;
    let (a, b) = (stops[i], stops[i + 1]);
    RGBColor((a.0 + f * (b.0 - a.0)) as u8, (a.1 + f * (b.1 - a.1)) as u8, (a.2 + f * (b.2 - a.2)) as u8)
}

/// Series colours: matplotlib's "tab10" palette (Tableau 10).
const SERIES: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// A heatmap of `values[y][x]` with the cell values written in.
struct Heatmap<'a> {
    title: String,
    x_key: &'a str,
    y_key: &'a str,
    xs: &'a [String],
    ys: &'a [String],
    values: Vec<Vec<Option<f64>>>,
    unit: &'a str,
}

fn draw_heatmap<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, h: &Heatmap) -> DrawResult {
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let known: Vec<f64> = h.values.iter().flatten().flatten().copied().filter(|v| *v > 0.0).collect();
    let (lo, hi) = known.iter().fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v.ln()), b.max(v.ln())));
    let (nx, ny) = (h.xs.len(), h.ys.len());
    let mut chart = ChartBuilder::on(root)
        .caption(&h.title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(90)
        .build_cartesian_2d(-0.5f64..nx as f64 - 0.5, -0.5f64..ny as f64 - 0.5)
        .map_err(|e| e.to_string())?;
    let xl = |v: &f64| category(h.xs, *v);
    let yl = |v: &f64| category(h.ys, *v);
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(nx + 1)
        .y_labels(ny + 1)
        .x_label_formatter(&xl)
        .y_label_formatter(&yl)
        .x_desc(h.x_key)
        .y_desc(h.y_key)
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(|e| e.to_string())?;
    for (j, row) in h.values.iter().enumerate() {
        for (i, v) in row.iter().enumerate() {
            let (color, text, ink) = match v {
                Some(v) if *v > 0.0 => {
                    let t = if hi > lo { (v.ln() - lo) / (hi - lo) } else { 0.5 };
                    (heat(t), format!("{v:.3}"), if t < 0.45 { WHITE } else { BLACK })
                }
                _ => (RGBColor(220, 220, 220), "n/a".to_string(), BLACK),
            };
            chart
                .draw_series(std::iter::once(Rectangle::new([(i as f64 - 0.5, j as f64 - 0.5), (i as f64 + 0.5, j as f64 + 0.5)], color.filled())))
                .map_err(|e| e.to_string())?;
            let style = TextStyle::from(("sans-serif", 13).into_font()).color(&ink).pos(plotters::style::text_anchor::Pos::new(
                plotters::style::text_anchor::HPos::Center,
                plotters::style::text_anchor::VPos::Center,
            ));
            chart
                .draw_series(std::iter::once(Text::new(text, (i as f64, j as f64), style)))
                .map_err(|e| e.to_string())?;
        }
    }
    chart
        .draw_series(std::iter::once(Text::new(format!("cell value: {}; colour: log scale", h.unit), (-0.48, ny as f64 - 0.52), ("sans-serif", 12))))
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// A scatter of (x, y) points with the non-dominated ones (smaller is better in both) joined.
struct Front<'a> {
    title: String,
    x_desc: &'a str,
    y_desc: &'a str,
    points: Vec<(f64, f64)>,
}

/// The points of `pts` not dominated in both coordinates, sorted by x.
pub fn front_2d(pts: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let objs: Vec<[f64; 2]> = pts.iter().map(|p| [p.0, p.1]).collect();
    let mut f: Vec<(f64, f64)> = bitfusion_util::non_dominated(&objs).into_iter().map(|i| pts[i]).collect();
    f.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    f.dedup();
    f
}

fn padded(lo: f64, hi: f64) -> std::ops::Range<f64> {
    let pad = ((hi - lo) * 0.08).max(hi.abs() * 0.02).max(1e-9);
    (lo - pad).max(0.0)..hi + pad
}

fn draw_front<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, f: &Front) -> DrawResult {
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let (x0, x1) = f.points.iter().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (y0, y1) = f.points.iter().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    let mut chart = ChartBuilder::on(root)
        .caption(&f.title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(75)
        .build_cartesian_2d(padded(x0, x1), padded(y0, y1))
        .map_err(|e| e.to_string())?;
    chart.configure_mesh().x_desc(f.x_desc).y_desc(f.y_desc).label_style(("sans-serif", 14)).draw().map_err(|e| e.to_string())?;
    chart
        .draw_series(f.points.iter().map(|p| Circle::new(*p, 4, SERIES[0].mix(0.6).filled())))
        .map_err(|e| e.to_string())?
        .label("design points")
        .legend(|(x, y)| Circle::new((x + 10, y), 4, SERIES[0].filled()));
    let front = front_2d(&f.points);
    chart
        .draw_series(LineSeries::new(front.clone(), SERIES[3].stroke_width(2)))
        .map_err(|e| e.to_string())?
        .label("Pareto front")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], SERIES[3].stroke_width(2)));
    chart.draw_series(front.iter().map(|p| Circle::new(*p, 6, SERIES[3].filled()))).map_err(|e| e.to_string())?;
    draw_legend(&mut chart, SeriesLabelPosition::MiddleRight, 14)?;
    Ok(())
}

/// Stacked bars: one bar per config, one segment per component.
struct Stacked {
    title: String,
    labels: Vec<String>,
    components: Vec<&'static str>,
    /// values[bar][component], in µJ.
    values: Vec<Vec<f64>>,
}

fn draw_stacked<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, s: &Stacked) -> DrawResult {
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let top = s.values.iter().map(|v| v.iter().sum::<f64>()).fold(0.0, f64::max).max(1e-9);
    let n = s.labels.len();
    let mut chart = ChartBuilder::on(root)
        .caption(&s.title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(75)
        .build_cartesian_2d(-0.5f64..n as f64 - 0.5, 0f64..top * 1.25)
        .map_err(|e| e.to_string())?;
    let xl = |v: &f64| category(&s.labels, *v);
    chart
        .configure_mesh()
        .x_labels(n.min(30) + 1)
        .x_label_formatter(&xl)
        .x_desc("design point (see points.csv)")
        .y_desc("energy per inference batch (µJ)")
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(|e| e.to_string())?;
    for (c, name) in s.components.iter().enumerate() {
        let color = SERIES[c % SERIES.len()];
        chart
            .draw_series(s.values.iter().enumerate().map(|(i, v)| {
                let base: f64 = v[..c].iter().sum();
                Rectangle::new([(i as f64 - 0.35, base), (i as f64 + 0.35, base + v[c])], color.filled())
            }))
            .map_err(|e| e.to_string())?
            .label(*name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
    }
    draw_legend(&mut chart, SeriesLabelPosition::UpperRight, 13)?;
    Ok(())
}

/// A roofline: per precision a compute ceiling, one bandwidth slope, layers as points.
struct Roofline {
    title: String,
    /// DRAM bandwidth, bytes/s.
    bandwidth: f64,
    /// (precision label, peak ops/s, [(ops/byte, ops/s)] of its layers).
    series: Vec<(String, f64, Vec<(f64, f64)>)>,
}

fn draw_roofline<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, r: &Roofline) -> DrawResult {
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let all: Vec<(f64, f64)> = r.series.iter().flat_map(|s| s.2.iter().copied()).filter(|p| p.0 > 0.0 && p.1 > 0.0).collect();
    let peak = r.series.iter().map(|s| s.1).fold(0.0, f64::max);
    let (x0, x1) = all.iter().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let x0 = (x0 / 2.0).min(peak / r.bandwidth / 8.0).max(1e-3);
    let x1 = (x1 * 2.0).max(peak / r.bandwidth * 8.0);
    let y0 = all.iter().map(|p| p.1).fold(f64::MAX, f64::min).min(x0 * r.bandwidth) / 2.0;
    let gops = |v: f64| v / 1e9;
    let mut chart = ChartBuilder::on(root)
        .caption(&r.title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(75)
        .build_cartesian_2d((x0..x1).log_scale(), (gops(y0.max(1.0))..gops(peak * 2.0)).log_scale())
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("operational intensity (ops per DRAM byte)")
        .y_desc("attainable performance (GOPS)")
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(|e| e.to_string())?;
    for (k, (label, p, pts)) in r.series.iter().enumerate() {
        let color = SERIES[k % SERIES.len()];
        let ridge = p / r.bandwidth;
        let roof = vec![(x0, gops(x0 * r.bandwidth).min(gops(*p))), (ridge.max(x0), gops(*p)), (x1, gops(*p))];
        chart
            .draw_series(LineSeries::new(roof, color.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(format!("{label}: peak {:.0} GOPS", gops(*p)))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart
            .draw_series(pts.iter().filter(|q| q.0 > 0.0 && q.1 > 0.0).map(|q| Circle::new((q.0, gops(q.1)), 4, color.mix(0.7).filled())))
            .map_err(|e| e.to_string())?;
    }
    draw_legend(&mut chart, SeriesLabelPosition::LowerRight, 12)?;
    Ok(())
}

/// What to draw from a sweep.
#[derive(Clone, Debug, Default)]
pub struct SweepPlotOptions {
    /// Swept keys on the heatmaps' axes (default: the first two).
    pub x: Option<String>,
    pub y: Option<String>,
    /// Workload and precision of the heatmaps, fronts and breakdowns (default: the first in results.csv).
    pub workload: Option<String>,
    pub precision: Option<String>,
}

/// Draw every sweep chart into `dir/plots/`; returns the files written.
pub fn plot_sweep(dir: &Path, opts: &SweepPlotOptions) -> Result<Vec<PathBuf>, PlotError> {
    init_font()?;
    let (header, rows) = read_rows(&dir.join("results.csv")).map_err(|e| perr(e.to_string()))?;
    if rows.is_empty() {
        return Err(perr(format!("{}: no results.csv rows (run `bitfusion sweep` first)", dir.display())));
    }
    let (_, points) = read_rows(&dir.join("points.csv")).map_err(|e| perr(e.to_string()))?;
    let (_, layers) = read_rows(&dir.join("layers.csv")).map_err(|e| perr(e.to_string()))?;
    let keys: Vec<String> = header.iter().skip(1).take_while(|h| *h != "workload").cloned().collect();
    let workload = opts.workload.clone().unwrap_or_else(|| rows[0]["workload"].clone());
    let precision = opts.precision.clone().unwrap_or_else(|| rows[0]["precision"].clone());
    let sel: Vec<&ResultRow> = rows.iter().filter(|r| r["workload"] == workload && r["precision"] == precision).collect();
    if sel.is_empty() {
        return Err(perr(format!("no rows for workload '{workload}' at precision '{precision}'")));
    }
    let ok: Vec<&ResultRow> = sel.iter().copied().filter(|r| r["status"] == "ok").collect();
    let out = dir.join("plots");
    std::fs::create_dir_all(&out).map_err(|e| perr(format!("cannot create {}: {e}", out.display())))?;
    let mut files = Vec::new();
    let tag = format!("{workload}, {precision}");
    // Heatmaps over two swept keys (the best value over any other swept keys).
    let x_key = opts.x.clone().or_else(|| keys.first().cloned()).ok_or_else(|| perr("results.csv has no swept keys"))?;
    let y_key = opts.y.clone().or_else(|| keys.get(1).cloned()).unwrap_or_else(|| x_key.clone());
    for k in [&x_key, &y_key] {
        if !keys.contains(k) {
            return Err(perr(format!("'{k}' is not a swept key (swept: {})", keys.join(", "))));
        }
    }
    let distinct = |k: &str| {
        let mut v: Vec<String> = sel.iter().map(|r| r[k].clone()).collect::<BTreeSet<_>>().into_iter().collect();
        sort_values(&mut v);
        v
    };
    let (xs, ys) = (distinct(&x_key), distinct(&y_key));
    for (metric, col, unit) in [("latency", "latency_ms", "ms"), ("energy", "energy_nj", "nJ")] {
        let mut cells: BTreeMap<(String, String), f64> = BTreeMap::new();
        for r in &ok {
            if let Some(v) = num(r, col) {
                let e = cells.entry((r[&x_key].clone(), r[&y_key].clone())).or_insert(v);
                *e = e.min(v);
            }
        }
        let values = ys.iter().map(|y| xs.iter().map(|x| cells.get(&(x.clone(), y.clone())).copied()).collect()).collect();
        let h = Heatmap { title: format!("{metric} ({unit}), {tag}"), x_key: &x_key, y_key: &y_key, xs: &xs, ys: &ys, values, unit };
        files.extend(both!(&out.join(format!("heatmap_{metric}")), (900, 650), draw_heatmap, &h));
    }
    // Area-latency and area-energy fronts.
    for (metric, col, desc) in [("latency", "latency_ms", "latency (ms)"), ("energy", "energy_nj", "energy (nJ)")] {
        let points: Vec<(f64, f64)> = ok.iter().filter_map(|r| Some((num(r, "area_mm2")?, num(r, col)?))).collect();
        if points.is_empty() {
            continue;
        }
        let f = Front { title: format!("area vs {metric}, {tag}"), x_desc: "area (mm²)", y_desc: desc, points };
        files.extend(both!(&out.join(format!("pareto_area_{metric}")), (900, 650), draw_front, &f));
    }
    // Energy breakdown per config.
    let comps = [
        ("core", "energy_core_nj"),
        ("WBUF", "energy_wbuf_nj"),
        ("IBUF", "energy_ibuf_nj"),
        ("OBUF", "energy_obuf_nj"),
        ("DRAM", "energy_dram_nj"),
        ("leakage", "energy_leakage_nj"),
    ];
    let bars: Vec<&&ResultRow> = ok.iter().filter(|r| num(r, "energy_nj").is_some()).take(40).collect();
    if !bars.is_empty() {
        let point_index: BTreeMap<&str, usize> = points.iter().enumerate().map(|(i, p)| (p["point"].as_str(), i)).collect();
        let s = Stacked {
            title: format!("energy breakdown per design point, {tag}{}", if ok.len() > 40 { " (first 40)" } else { "" }),
            labels: bars.iter().map(|r| format!("P{}", point_index.get(r["point"].as_str()).map_or(0, |i| i + 1))).collect(),
            components: comps.iter().map(|c| c.0).collect(),
            values: bars.iter().map(|r| comps.iter().map(|c| num(r, c.1).unwrap_or(0.0) / 1e3).collect()).collect(),
        };
        files.extend(both!(&out.join("energy_breakdown"), (1100, 650), draw_stacked, &s));
    }
    // A roofline per config: every layer of every workload, one series per precision.
    for (i, pt) in points.iter().enumerate() {
        if !pt["skipped"].is_empty() {
            continue;
        }
        let (Some(n), Some(m), Some(f), Some(b), Some(mhz), Some(bw)) = (
            num(pt, "rows"),
            num(pt, "cols"),
            num(pt, "fusion_bits"),
            num(pt, "brick_bits"),
            num(pt, "frequency_mhz"),
            num(pt, "dram_bits_per_cycle"),
        ) else {
            continue;
        };
        let hz = mhz * 1e6;
        let mut series: BTreeMap<(u32, u32), Vec<(f64, f64)>> = BTreeMap::new();
        for l in layers.iter().filter(|l| l["point"] == pt["point"]) {
            let (Some(macs), Some(cycles), Some(dram), Some(w), Some(a)) = (num(l, "macs"), num(l, "cycles"), num(l, "dram_bits"), num(l, "w_bits"), num(l, "a_bits")) else {
                continue;
            };
            if cycles <= 0.0 || dram <= 0.0 {
                continue;
            }
            series.entry((w as u32, a as u32)).or_default().push((2.0 * macs / (dram / 8.0), 2.0 * macs / (cycles / hz)));
        }
        if series.is_empty() {
            continue;
        }
        let r = Roofline {
            title: format!("roofline, design point P{}: {}x{} array, {} bits/cycle", i + 1, n, m, bw),
            bandwidth: bw / 8.0 * hz,
            series: series
                .into_iter()
                .map(|((w, a), pts)| {
                    let plan = LanePlan::new(a, w, f as u32, b as u32);
                    (format!("w{w}a{a}"), 2.0 * n * m * plan.elements_per_cycle() * hz, pts)
                })
                .collect(),
        };
        files.extend(both!(&out.join(format!("roofline_P{}", i + 1)), (900, 650), draw_roofline, &r));
    }
    Ok(files)
}

/// Draw the paper comparison: speedup and energy reduction over Eyeriss per benchmark, for each model.
pub fn plot_paper(out: &Path, benchmarks: &[String], series: &[(String, Vec<f64>, Vec<f64>)]) -> Result<Vec<PathBuf>, PlotError> {
    init_font()?;
    std::fs::create_dir_all(out).map_err(|e| perr(format!("cannot create {}: {e}", out.display())))?;
    let mut files = Vec::new();
    for (k, name) in [(0usize, "speedup"), (1, "energy_reduction")] {
        let g = Grouped {
            title: format!("Bit Fusion vs Eyeriss: {}", name.replace('_', " ")),
            y_desc: format!("{} over Eyeriss (x)", name.replace('_', " ")),
            groups: benchmarks.to_vec(),
            series: series.iter().map(|(label, s, e)| (label.clone(), if k == 0 { s.clone() } else { e.clone() })).collect(),
        };
        files.extend(both!(&out.join(format!("paper_{name}")), (1000, 600), draw_grouped, &g));
    }
    Ok(files)
}

struct Grouped {
    title: String,
    y_desc: String,
    groups: Vec<String>,
    series: Vec<(String, Vec<f64>)>,
}

fn draw_grouped<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, g: &Grouped) -> DrawResult {
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let top = g.series.iter().flat_map(|s| s.1.iter().copied()).fold(0.0, f64::max).max(1.0);
    let n = g.groups.len();
    let mut chart = ChartBuilder::on(root)
        .caption(&g.title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(-0.5f64..n as f64 - 0.5, 0f64..top * 1.2)
        .map_err(|e| e.to_string())?;
    let xl = |v: &f64| category(&g.groups, *v);
    chart
        .configure_mesh()
        .x_labels(n + 1)
        .x_label_formatter(&xl)
        .x_desc("benchmark")
        .y_desc(g.y_desc.as_str())
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(|e| e.to_string())?;
    let k = g.series.len().max(1) as f64;
    for (s, (label, values)) in g.series.iter().enumerate() {
        let color = SERIES[s % SERIES.len()];
        chart
            .draw_series(values.iter().enumerate().map(|(i, v)| {
                let x = i as f64 - 0.4 + 0.8 * s as f64 / k;
                Rectangle::new([(x, 0.0), (x + 0.8 / k, *v)], color.filled())
            }))
            .map_err(|e| e.to_string())?
            .label(label.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
    }
    draw_legend(&mut chart, SeriesLabelPosition::MiddleRight, 13)?;
    Ok(())
}

mod search;
pub use search::{ConfigRoofline, LayerChoice, Objectives, RooflineLayer, plot_edge_cloud, SearchPoint, TransferBand, front_max, plot_arch, plot_objectives, plot_pareto, plot_transfer};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn front_is_the_non_dominated_set() {
        let pts = [(1.0, 5.0), (2.0, 2.0), (2.0, 3.0), (3.0, 1.0), (4.0, 4.0)];
        assert_eq!(front_2d(&pts), vec![(1.0, 5.0), (2.0, 2.0), (3.0, 1.0)]);
    }

    #[test]
    fn colours_run_from_dark_to_light() {
        let (a, b) = (heat(0.0), heat(1.0));
        assert!((a.0 as u32 + a.1 as u32 + a.2 as u32) < (b.0 as u32 + b.1 as u32 + b.2 as u32));
    }

    #[test]
    fn paper_plot_writes_png_and_svg() {
        let dir = std::env::temp_dir().join(format!("bf-plots-{}", std::process::id()));
        let files = plot_paper(&dir, &["A".into(), "B".into()], &[("model".into(), vec![1.0, 3.0], vec![2.0, 4.0])]).unwrap();
        assert_eq!(files.len(), 4);
        for f in &files {
            assert!(std::fs::metadata(f).unwrap().len() > 2000, "{}", f.display());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
