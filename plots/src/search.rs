//! Charts of the search: accuracy/latency and accuracy/energy fronts with one series per method
//! (predicted and measured points distinguished), a per-layer chart of an architecture's bits and
//! channels, and the predictor-transfer curve.

use super::*;

/// One searched or baseline architecture: its predicted accuracy and, once measured, its
/// measured (test-split) accuracy.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchPoint {
    pub method: String,
    pub predicted: f64,
    pub measured: Option<f64>,
    pub latency_ms: f64,
    pub energy_mj: f64,
}

struct Fronts<'a> {
    title: String,
    x_desc: &'static str,
    x: fn(&SearchPoint) -> f64,
    points: &'a [SearchPoint],
}

/// The points of `pts` (x lower is better, y higher is better) that no other point beats in
/// both, sorted by x: a method's front.
pub fn front_max(pts: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let flipped: Vec<(f64, f64)> = pts.iter().map(|p| (p.0, -p.1)).collect();
    front_2d(&flipped).into_iter().map(|p| (p.0, -p.1)).collect()
}

/// Every method its own colour; measured points filled with their front as a solid line,
/// predicted points hollow with their front dashed.
fn draw_fronts<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, f: &Fronts) -> DrawResult {
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let xs: Vec<f64> = f.points.iter().map(f.x).collect();
    let ys: Vec<f64> = f.points.iter().flat_map(|p| std::iter::once(p.predicted).chain(p.measured)).map(|a| a * 100.0).collect();
    let (x0, x1) = xs.iter().fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
    let (y0, y1) = ys.iter().fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
    let mut chart = ChartBuilder::on(root)
        .caption(&f.title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(65)
        .build_cartesian_2d(padded(x0, x1), padded(y0, y1))
        .map_err(|e| e.to_string())?;
    chart.configure_mesh().x_desc(f.x_desc).y_desc("top-1 accuracy (%)").label_style(("sans-serif", 14)).draw().map_err(|e| e.to_string())?;
    let methods: BTreeSet<&str> = f.points.iter().map(|p| p.method.as_str()).collect();
    for (i, m) in methods.iter().enumerate() {
        let style = method_style(i);
        let colour = style.colour;
        let pts: Vec<(f64, f64)> = f.points.iter().filter(|p| p.method == *m).map(|p| ((f.x)(p), p.predicted * 100.0)).collect();
        let front = front_max(&pts);
        if front.len() > 1 {
            chart.draw_series(DashedLineSeries::new(front, 6, 4, colour.mix(0.6).stroke_width(1))).map_err(|e| e.to_string())?;
        }
        let predicted = move |p: (f64, f64)| -> DynElement<'static, DB, (f64, f64)> {
            if style.second_round { Cross::new(p, 5, colour.mix(0.7).stroke_width(1)).into_dyn() } else { Circle::new(p, 5, colour.mix(0.7).stroke_width(1)).into_dyn() }
        };
        let predicted_key = move |p: (i32, i32)| -> DynElement<'static, DB, (i32, i32)> {
            if style.second_round { Cross::new(p, 5, colour.mix(0.7).stroke_width(1)).into_dyn() } else { Circle::new(p, 5, colour.mix(0.7).stroke_width(1)).into_dyn() }
        };
        chart
            .draw_series(pts.iter().map(|p| predicted(*p)))
            .map_err(|e| e.to_string())?
            .label(format!("{m} (predicted)"))
            .legend(move |(x, y)| predicted_key((x + 10, y)));
        let measured: Vec<(f64, f64)> = f.points.iter().filter(|p| p.method == *m).filter_map(|p| p.measured.map(|a| ((f.x)(p), a * 100.0))).collect();
        if !measured.is_empty() {
            let front = front_max(&measured);
            if front.len() > 1 {
                chart.draw_series(LineSeries::new(front, colour.stroke_width(2))).map_err(|e| e.to_string())?;
            }
            let marker = move |p: (f64, f64)| -> DynElement<'static, DB, (f64, f64)> {
                if style.second_round { TriangleMarker::new(p, 7, colour.filled()).into_dyn() } else { Circle::new(p, 5, colour.filled()).into_dyn() }
            };
            let marker_key = move |p: (i32, i32)| -> DynElement<'static, DB, (i32, i32)> {
                if style.second_round { TriangleMarker::new(p, 7, colour.filled()).into_dyn() } else { Circle::new(p, 5, colour.filled()).into_dyn() }
            };
            chart
                .draw_series(measured.iter().map(|p| marker(*p)))
                .map_err(|e| e.to_string())?
                .label(format!("{m} (measured)"))
                .legend(move |(x, y)| marker_key((x + 10, y)));
        }
    }
    draw_legend(&mut chart, SeriesLabelPosition::LowerRight, 12)?;
    Ok(())
}

/// How the i-th method's points are drawn: a colour of the palette, and once the palette is used up,
/// the same colours again with other markers (a cross for predicted points, a hollow circle for
/// measured ones instead of a dot and a triangle), so that no two methods look alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct MethodStyle {
    colour: RGBColor,
    second_round: bool,
}

fn method_style(i: usize) -> MethodStyle {
    MethodStyle { colour: SERIES[i % SERIES.len()], second_round: (i / SERIES.len()) % 2 == 1 }
}

/// Accuracy vs latency (the latency-budget searches' points) and accuracy vs energy (the
/// energy-budget searches'), every method its own series; an empty set skips its chart.
pub fn plot_pareto(out: &Path, latency_points: &[SearchPoint], energy_points: &[SearchPoint]) -> Result<Vec<PathBuf>, PlotError> {
    init_font()?;
    if latency_points.is_empty() && energy_points.is_empty() {
        return Err(perr("no search points to plot"));
    }
    std::fs::create_dir_all(out).map_err(|e| perr(format!("cannot create {}: {e}", out.display())))?;
    let mut files = Vec::new();
    if !latency_points.is_empty() {
        let lat = Fronts { title: "accuracy vs latency (latency budgets)".into(), x_desc: "latency (ms)", x: |p| p.latency_ms, points: latency_points };
        files.extend(both!(&out.join("pareto_latency"), (1100, 750), draw_fronts, &lat));
    }
    if !energy_points.is_empty() {
        let en = Fronts { title: "accuracy vs energy (energy budgets)".into(), x_desc: "energy (mJ)", x: |p| p.energy_mj, points: energy_points };
        files.extend(both!(&out.join("pareto_energy"), (1100, 750), draw_fronts, &en));
    }
    Ok(files)
}

/// One layer of an architecture: its name, output channels and bits.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerChoice {
    pub name: String,
    pub channels: u32,
    pub w_bits: u32,
    pub a_bits: u32,
}

struct ArchChart<'a> {
    title: String,
    layers: &'a [LayerChoice],
}

fn draw_arch<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, a: &ArchChart) -> DrawResult {
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let (upper, lower) = root.split_vertically(root.dim_in_pixel().1 / 2);
    let n = a.layers.len();
    // Short labels fit under narrow bars: s1b0e = stage 1, block 0, expand (d: depthwise, p: project).
    let labels: Vec<String> = a.layers.iter().map(|l| short_layer_name(&l.name)).collect();
    let mut chart = ChartBuilder::on(&upper)
        .caption(&a.title, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(10)
        .y_label_area_size(60)
        .build_cartesian_2d(-0.5f64..n as f64 - 0.5, 0f64..9.0)
        .map_err(|e| e.to_string())?;
    chart.configure_mesh().disable_x_mesh().x_labels(0).y_desc("bits").label_style(("sans-serif", 13)).draw().map_err(|e| e.to_string())?;
    for (k, (label, get)) in [("weight bits", (|l: &LayerChoice| l.w_bits) as fn(&LayerChoice) -> u32), ("activation bits", |l: &LayerChoice| l.a_bits)].into_iter().enumerate() {
        let colour = SERIES[k];
        let off = -0.2 + 0.4 * k as f64;
        chart
            .draw_series(a.layers.iter().enumerate().map(|(i, l)| {
                let x = i as f64 + off;
                Rectangle::new([(x - 0.18, 0.0), (x + 0.18, get(l) as f64)], colour.filled())
            }))
            .map_err(|e| e.to_string())?
            .label(label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.filled()));
    }
    draw_legend(&mut chart, SeriesLabelPosition::UpperRight, 13)?;
    let top = a.layers.iter().map(|l| l.channels).max().unwrap_or(1) as f64;
    let mut chart = ChartBuilder::on(&lower)
        .margin(10)
        .x_label_area_size(90)
        .y_label_area_size(60)
        .build_cartesian_2d(-0.5f64..n as f64 - 0.5, 0f64..top * 1.1)
        .map_err(|e| e.to_string())?;
    layer_mesh(&mut chart, &labels, "output channels")?;
    chart
        .draw_series(a.layers.iter().enumerate().map(|(i, l)| Rectangle::new([(i as f64 - 0.35, 0.0), (i as f64 + 0.35, l.channels as f64)], SERIES[2].filled())))
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Per-layer bits (weights and activations) and channels of one architecture.
pub fn plot_arch(out: &Path, stem: &str, title: &str, layers: &[LayerChoice]) -> Result<Vec<PathBuf>, PlotError> {
    init_font()?;
    std::fs::create_dir_all(out).map_err(|e| perr(format!("cannot create {}: {e}", out.display())))?;
    let c = ArchChart { title: title.to_string(), layers };
    Ok(both!(&out.join(stem), (1200, 700), draw_arch, &c))
}

/// One point of the transfer curve: pairwise ranking accuracy of quantized predictors trained on
/// `pairs` quantized pairs, from scratch and transferred, each as (mean, lowest, highest) over
/// seeds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TransferBand {
    pub pairs: usize,
    pub scratch: (f64, f64, f64),
    pub transferred: (f64, f64, f64),
}

struct Transfer<'a> {
    title: &'a str,
    points: &'a [TransferBand],
}

fn draw_transfer<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, t: &Transfer) -> DrawResult {
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let x1 = t.points.iter().map(|p| p.pairs).max().unwrap_or(1) as f64;
    let ys: Vec<f64> = t.points.iter().flat_map(|p| [p.scratch.1, p.scratch.2, p.transferred.1, p.transferred.2]).map(|v| v * 100.0).collect();
    let (y0, y1) = ys.iter().fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
    let mut chart = ChartBuilder::on(root)
        .caption(t.title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(65)
        .build_cartesian_2d((1f64..x1 * 1.3).log_scale(), padded(y0, y1))
        .map_err(|e| e.to_string())?;
    chart.configure_mesh().x_desc("quantized (architecture, bits, accuracy) training pairs (log scale)").y_desc("pairwise ranking accuracy on held-out pairs (%)").label_style(("sans-serif", 14)).draw().map_err(|e| e.to_string())?;
    for (k, label) in [(0usize, "from scratch"), (1, "transferred from fp32")] {
        let colour = SERIES[k];
        let get = |p: &TransferBand| if k == 0 { p.scratch } else { p.transferred };
        // The band: lowest to highest over seeds.
        let mut band: Vec<(f64, f64)> = t.points.iter().map(|p| (p.pairs as f64, get(p).2 * 100.0)).collect();
        band.extend(t.points.iter().rev().map(|p| (p.pairs as f64, get(p).1 * 100.0)));
        chart.draw_series(std::iter::once(Polygon::new(band, colour.mix(0.18).filled()))).map_err(|e| e.to_string())?;
        let pts: Vec<(f64, f64)> = t.points.iter().map(|p| (p.pairs as f64, get(p).0 * 100.0)).collect();
        chart.draw_series(LineSeries::new(pts.clone(), colour.stroke_width(2))).map_err(|e| e.to_string())?.label(format!("{label} (mean; band: min..max over seeds)")).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2)));
        chart.draw_series(pts.iter().map(|p| Circle::new(*p, 5, colour.filled()))).map_err(|e| e.to_string())?;
    }
    draw_legend(&mut chart, SeriesLabelPosition::LowerRight, 14)?;
    Ok(())
}

/// The transfer curve with its bands, into `<stem>.png` and `.svg`.
pub fn plot_transfer(out: &Path, stem: &str, title: &str, points: &[TransferBand]) -> Result<Vec<PathBuf>, PlotError> {
    init_font()?;
    if points.is_empty() {
        return Err(perr("no transfer points to plot"));
    }
    std::fs::create_dir_all(out).map_err(|e| perr(format!("cannot create {}: {e}", out.display())))?;
    Ok(both!(&out.join(stem), (950, 650), draw_transfer, &Transfer { title, points }))
}

/// The three objectives of one run: the NSGA-II front and every method's winners.
pub struct Objectives<'a> {
    /// The front's architectures (method `pareto`).
    pub front: &'a [SearchPoint],
    /// Every method's winner at every budget.
    pub winners: &'a [SearchPoint],
}

/// Error in percent: 100 x (1 - predicted accuracy), the objective the searches minimise.
fn error_pct(p: &SearchPoint) -> f64 {
    100.0 * (1.0 - p.predicted)
}

/// A winner's error in percent as measured (on the test split where it was), else predicted: the
/// methods' "predicted" accuracies are not all the predictor's (the bilevel search's are its
/// in-search validation accuracies), their measurements are comparable.
fn measured_error_pct(p: &SearchPoint) -> f64 {
    100.0 * (1.0 - p.measured.unwrap_or(p.predicted))
}

/// Marker of the i-th method's winners at `p`: one colour per method (the palette of the fronts),
/// a thick cross, and for the second round of the palette a filled triangle instead.
fn winner_marker<DB: DrawingBackend>(i: usize, p: (f64, f64)) -> DynElement<'static, DB, (f64, f64)> {
    let style = method_style(i);
    if style.second_round { TriangleMarker::new(p, 7, style.colour.filled()).into_dyn() } else { Cross::new(p, 6, style.colour.stroke_width(3)).into_dyn() }
}

/// The same marker in a legend's pixel coordinates.
fn winner_key<DB: DrawingBackend>(i: usize, p: (i32, i32)) -> DynElement<'static, DB, (i32, i32)> {
    let style = method_style(i);
    if style.second_round { TriangleMarker::new(p, 7, style.colour.filled()).into_dyn() } else { Cross::new(p, 6, style.colour.stroke_width(3)).into_dyn() }
}

/// Winners' markers, one series per method, with a legend entry each.
fn draw_winners<'c, DB: DrawingBackend + 'c>(chart: &mut ChartContext<'c, DB, Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>>, methods: &[&str], winners: &[SearchPoint], xy: fn(&SearchPoint) -> (f64, f64), legend: bool) -> DrawResult
where
    DB::ErrorType: 'static,
{
    for (i, m) in methods.iter().enumerate() {
        let pts: Vec<(f64, f64)> = winners.iter().filter(|p| p.method == *m).map(xy).collect();
        let series = chart.draw_series(pts.iter().map(|p| winner_marker::<DB>(i, *p))).map_err(|e| e.to_string())?;
        if legend {
            series.label(*m).legend(move |(x, y)| winner_key::<DB>(i, (x + 8, y)));
        }
    }
    Ok(())
}

/// The colour range of `values`: the lowest to the 90th percentile (nearest rank).
fn colour_range(mut values: Vec<f64>) -> (f64, f64) {
    values.sort_by(f64::total_cmp);
    match (values.first(), values.get(((values.len() as f64 * 0.9).ceil() as usize).saturating_sub(1))) {
        (Some(lo), Some(hi)) => (*lo, *hi),
        _ => (0.0, 1.0),
    }
}

/// Three panels: latency against energy of the front coloured by error (with a colour bar), then
/// error against latency and error against energy (the front's non-dominated line in grey); every
/// method's winners marked on each.
fn draw_objectives<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, o: &Objectives) -> DrawResult
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let root = root.titled("objectives of the search: error, latency, energy (dots: the NSGA-II front, predicted error; crosses: each method's winners, measured error)", ("sans-serif", 20)).map_err(|e| e.to_string())?;
    let w = root.dim_in_pixel().0;
    let (left, rest) = root.split_horizontally(w * 36 / 100);
    let (middle, right) = rest.split_horizontally(w * 32 / 100);
    let all: Vec<&SearchPoint> = o.front.iter().chain(o.winners).collect();
    let range = |f: fn(&SearchPoint) -> f64| all.iter().map(|p| f(p)).fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
    let (l0, l1) = range(|p| p.latency_ms);
    let (e0, e1) = range(|p| p.energy_mj);
    let errors = o.front.iter().map(error_pct).chain(o.winners.iter().map(measured_error_pct));
    let (r0, r1) = errors.fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
    // The colour scale runs from the front's lowest error to its 90th percentile (a few very
    // cheap, very inaccurate points would otherwise leave every other point the same dark hue);
    // errors above it take the top colour.
    let (f0, f1) = colour_range(o.front.iter().map(error_pct).collect());
    let scale = |v: f64| if f1 > f0 { (v - f0) / (f1 - f0) } else { 0.5 };
    let methods: Vec<&str> = o.winners.iter().map(|p| p.method.as_str()).collect::<BTreeSet<_>>().into_iter().collect();
    // Panel 1: latency vs energy, the front coloured by error, a colour bar at its right.
    let (plot, bar) = left.split_horizontally(left.dim_in_pixel().0 - 85);
    let mut chart = ChartBuilder::on(&plot)
        .caption("latency vs energy (colour: front's predicted error)", ("sans-serif", 15))
        .margin(10)
        .x_label_area_size(45)
        .y_label_area_size(65)
        .build_cartesian_2d(padded(l0, l1), padded(e0, e1))
        .map_err(|e| e.to_string())?;
    chart.configure_mesh().x_desc("latency (ms)").y_desc("energy (mJ)").label_style(("sans-serif", 13)).draw().map_err(|e| e.to_string())?;
    chart
        .draw_series(o.front.iter().map(|p| Circle::new((p.latency_ms, p.energy_mj), 4, heat(scale(error_pct(p))).filled())))
        .map_err(|e| e.to_string())?;
    draw_winners(&mut chart, &methods, o.winners, |p| (p.latency_ms, p.energy_mj), false)?;
    let mut cbar = ChartBuilder::on(&bar)
        .margin_top(40)
        .margin_bottom(55)
        .margin_right(8)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..1.0, f0.min(f1)..f1.max(f0 + 1e-9))
        .map_err(|e| e.to_string())?;
    cbar.configure_mesh().disable_x_mesh().disable_y_mesh().x_labels(0).y_desc("predicted error (%); above: top colour").label_style(("sans-serif", 12)).draw().map_err(|e| e.to_string())?;
    let steps = 60;
    cbar.draw_series((0..steps).map(|k| {
        let (a, b) = (f0 + (f1 - f0) * k as f64 / steps as f64, f0 + (f1 - f0) * (k + 1) as f64 / steps as f64);
        Rectangle::new([(0.0, a), (1.0, b)], heat(k as f64 / (steps - 1) as f64).filled())
    }))
    .map_err(|e| e.to_string())?;
    // Panels 2 and 3: error against latency and against energy.
    type Xy = fn(&SearchPoint) -> (f64, f64);
    let panels: [(&DrawingArea<DB, Shift>, &str, &str, Xy, Xy, (f64, f64)); 2] = [
        (&middle, "error vs latency", "latency (ms)", |p| (p.latency_ms, error_pct(p)), |p| (p.latency_ms, measured_error_pct(p)), (l0, l1)),
        (&right, "error vs energy", "energy (mJ)", |p| (p.energy_mj, error_pct(p)), |p| (p.energy_mj, measured_error_pct(p)), (e0, e1)),
    ];
    for (k, (area, title, x_desc, xy, winner_xy, (x0, x1))) in panels.into_iter().enumerate() {
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 15))
            .margin(10)
            .x_label_area_size(45)
            .y_label_area_size(55)
            .build_cartesian_2d(padded(x0, x1), padded(r0, r1))
            .map_err(|e| e.to_string())?;
        chart.configure_mesh().x_desc(x_desc).y_desc("error (%): front predicted, winners measured").label_style(("sans-serif", 13)).draw().map_err(|e| e.to_string())?;
        let pts: Vec<(f64, f64)> = o.front.iter().map(xy).collect();
        let grey = RGBColor(150, 150, 150);
        chart.draw_series(pts.iter().map(|p| Circle::new(*p, 3, grey.mix(0.6).filled()))).map_err(|e| e.to_string())?.label("NSGA-II front").legend(move |(x, y)| Circle::new((x + 8, y), 3, grey.filled()));
        chart.draw_series(LineSeries::new(front_2d(&pts), grey.stroke_width(1))).map_err(|e| e.to_string())?;
        draw_winners(&mut chart, &methods, o.winners, winner_xy, k == 1)?;
        if k == 1 {
            draw_legend(&mut chart, SeriesLabelPosition::UpperRight, 12)?;
        }
    }
    Ok(())
}

/// Latency against energy coloured by error, and the error/latency and error/energy fronts, every
/// method's winners marked, into `objectives.png` and `.svg` in `out`.
pub fn plot_objectives(out: &Path, o: &Objectives) -> Result<Vec<PathBuf>, PlotError> {
    init_font()?;
    if o.front.is_empty() && o.winners.is_empty() {
        return Err(perr("no front or winners to plot"));
    }
    std::fs::create_dir_all(out).map_err(|e| perr(format!("cannot create {}: {e}", out.display())))?;
    Ok(both!(&out.join("objectives"), (1800, 620), draw_objectives, o))
}

/// One layer of a searched winner on its config's roofline.
#[derive(Clone, Debug, PartialEq)]
pub struct RooflineLayer {
    pub name: String,
    pub w_bits: u32,
    pub a_bits: u32,
    /// Arithmetic intensity, operations per DRAM byte.
    pub ops_per_byte: f64,
    /// min(peak at its bits, intensity x bandwidth), operations per second.
    pub attainable_ops_per_s: f64,
    pub memory_bound: bool,
    /// Index of its compute ceiling in [`ConfigRoofline::ceilings`] (its colour on the roofline).
    pub ceiling: usize,
}

/// One config of the edge/cloud chart: its DRAM bandwidth, its compute ceilings and its winner's layers.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigRoofline {
    pub config: String,
    /// DRAM bandwidth, bytes per second.
    pub bandwidth_bytes_per_s: f64,
    /// (label, peak operations per second) of every compute ceiling drawn (one per fused
    /// operand mode); the same labels in the same order for every config, so a mode has one
    /// colour throughout.
    pub ceilings: Vec<(String, f64)>,
    pub layers: Vec<RooflineLayer>,
}

/// The layer names of several configs' winners in network order: each config's names, a name
/// missing so far inserted after the previous name of its own config.
fn merged_layer_names(configs: &[ConfigRoofline]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for c in configs {
        let mut at = 0;
        for l in &c.layers {
            match names.iter().position(|n| *n == l.name) {
                Some(i) => at = i + 1,
                None => {
                    names.insert(at, l.name.clone());
                    at += 1;
                }
            }
        }
    }
    names
}

/// Short names under narrow bars: s1b0e = stage 1, block 0, expand (d: depthwise, p: project).
/// The mesh of a chart with one category per layer along x (named by `labels`) and `y_desc` up.
fn layer_mesh<DB: DrawingBackend>(chart: &mut ChartContext<'_, DB, Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>>, labels: &[String], y_desc: &str) -> DrawResult {
    let xl = |v: &f64| category(labels, *v);
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(labels.len())
        .x_label_formatter(&xl)
        .x_label_style(("sans-serif", 11))
        .y_desc(y_desc)
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(|e| e.to_string())
}

fn short_layer_name(name: &str) -> String {
    name.replace("_expand", "e").replace("_dw", "d").replace("_project", "p").replace("first_", "f").replace("feature_mix", "mix").replace("classifier", "fc")
}

/// Per-layer bits of every config side by side (weights dark, activations light; hollow where the
/// layer is memory-bound on that config), then each config's roofline with its layers on it,
/// coloured by precision.
fn draw_edge_cloud<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, configs: &[ConfigRoofline]) -> DrawResult {
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let (upper, lower) = root.split_vertically(root.dim_in_pixel().1 * 45 / 100);
    let names = merged_layer_names(configs);
    let labels: Vec<String> = names.iter().map(|n| short_layer_name(n)).collect();
    let n = names.len();
    let mut chart = ChartBuilder::on(&upper)
        .caption("per-layer bits of each config's winner (dark: weights, light: activations; hollow: memory-bound on that config)", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(-0.5f64..n as f64 - 0.5, 0f64..12.0)
        .map_err(|e| e.to_string())?;
    layer_mesh(&mut chart, &labels, "bits")?;
    let slots = (2 * configs.len()).max(1) as f64;
    let width = 0.84 / slots;
    for (c, cfg) in configs.iter().enumerate() {
        let colour = SERIES[c % SERIES.len()];
        for (k, (what, shade)) in [("weight bits", 1.0), ("activation bits", 0.45)].into_iter().enumerate() {
            let off = -0.42 + width * (2 * c + k) as f64 + width / 2.0;
            let fill = colour.mix(shade);
            chart
                .draw_series(cfg.layers.iter().filter_map(|l| {
                    let i = names.iter().position(|x| *x == l.name)? as f64;
                    let bits = if k == 0 { l.w_bits } else { l.a_bits } as f64;
                    let x = i + off;
                    let style = if l.memory_bound { fill.stroke_width(2) } else { fill.filled() };
                    Some(Rectangle::new([(x - width * 0.45, 0.0), (x + width * 0.45, bits)], style))
                }))
                .map_err(|e| e.to_string())?
                .label(format!("{}: {what}", cfg.config))
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], fill.filled()));
        }
    }
    draw_legend(&mut chart, SeriesLabelPosition::UpperRight, 12)?;
    let panels = lower.split_evenly((1, configs.len().max(1)));
    for (cfg, area) in configs.iter().zip(panels.iter()) {
        let r = Roofline {
            title: format!("{}: roofline ({:.0} GB/s DRAM), winner's layers", cfg.config, cfg.bandwidth_bytes_per_s / 1e9),
            bandwidth: cfg.bandwidth_bytes_per_s,
            series: cfg
                .ceilings
                .iter()
                .enumerate()
                .map(|(k, (label, peak))| {
                    let pts = cfg.layers.iter().filter(|l| l.ceiling == k && l.ops_per_byte.is_finite()).map(|l| (l.ops_per_byte, l.attainable_ops_per_s)).collect();
                    (label.clone(), *peak, pts)
                })
                .collect(),
        };
        draw_roofline(area, &r)?;
    }
    Ok(())
}

/// The edge/cloud comparison chart into `<stem>.png` and `.svg` in `out`.
pub fn plot_edge_cloud(out: &Path, stem: &str, configs: &[ConfigRoofline]) -> Result<Vec<PathBuf>, PlotError> {
    init_font()?;
    if configs.iter().all(|c| c.layers.is_empty()) {
        return Err(perr("no layers to plot"));
    }
    std::fs::create_dir_all(out).map_err(|e| perr(format!("cannot create {}: {e}", out.display())))?;
    Ok(both!(&out.join(stem), (1700, 1150), draw_edge_cloud, configs))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shipped run has nine methods; with predicted and measured points each, no two of twenty
    /// methods may share a colour and a marker.
    #[test]
    fn a_methods_front_keeps_the_points_nothing_beats() {
        // (latency, accuracy): lower latency and higher accuracy are better.
        let pts = [(1.0, 80.0), (2.0, 85.0), (2.5, 84.0), (3.0, 90.0), (1.5, 79.0)];
        assert_eq!(front_max(&pts), vec![(1.0, 80.0), (2.0, 85.0), (3.0, 90.0)]);
    }

    #[test]
    fn the_colour_range_stops_at_the_ninetieth_percentile() {
        assert_eq!(colour_range((1..=20).map(f64::from).rev().collect()), (1.0, 18.0));
        assert_eq!(colour_range(vec![]), (0.0, 1.0));
    }

    #[test]
    fn objectives_chart_writes_png_and_svg() {
        let p = |m: &str, a: f64, l: f64, e: f64| SearchPoint { method: m.into(), predicted: a, measured: None, latency_ms: l, energy_mj: e };
        let front = [p("pareto", 0.6, 0.03, 0.02), p("pareto", 0.8, 0.06, 0.05), p("pareto", 0.9, 0.1, 0.09)];
        let winners = [p("joint", 0.85, 0.07, 0.06), p("sequential", 0.78, 0.06, 0.05), p("joint", 0.7, 0.04, 0.03)];
        let dir = std::env::temp_dir().join(format!("bf-objectives-{}", std::process::id()));
        let files = plot_objectives(&dir, &Objectives { front: &front, winners: &winners }).unwrap();
        assert_eq!(files.len(), 2);
        for f in &files {
            assert!(std::fs::metadata(f).unwrap().len() > 2000, "{}", f.display());
        }
        assert!(plot_objectives(&dir, &Objectives { front: &[], winners: &[] }).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn layer_names_merge_in_network_order() {
        let cfg = |names: &[&str]| ConfigRoofline {
            config: "c".into(),
            bandwidth_bytes_per_s: 1e9,
            ceilings: vec![("8x8".into(), 1e11)],
            layers: names.iter().map(|n| RooflineLayer { name: n.to_string(), w_bits: 8, a_bits: 8, ops_per_byte: 10.0, attainable_ops_per_s: 1e10, memory_bound: true, ceiling: 0 }).collect(),
        };
        let a = cfg(&["stem", "s0b0_dw", "classifier"]);
        let b = cfg(&["stem", "s0b0_dw", "s0b1_dw", "classifier"]);
        assert_eq!(merged_layer_names(&[a.clone(), b.clone()]), ["stem", "s0b0_dw", "s0b1_dw", "classifier"]);
        let dir = std::env::temp_dir().join(format!("bf-edge-cloud-{}", std::process::id()));
        let files = plot_edge_cloud(&dir, "edge_cloud", &[a, b]).unwrap();
        assert_eq!(files.len(), 2);
        for f in &files {
            assert!(std::fs::metadata(f).unwrap().len() > 2000, "{}", f.display());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn twenty_methods_look_different() {
        let styles: Vec<MethodStyle> = (0..20).map(method_style).collect();
        for i in 0..styles.len() {
            for j in 0..i {
                assert_ne!(styles[i], styles[j], "methods {i} and {j} are drawn alike");
            }
        }
    }
}
