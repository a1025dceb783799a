//! Workloads: the layer lists the simulator runs, read from files, and whole-workload
//! precision/batch overrides.
//!
//! Four formats, told apart by [`detect_format`] and read by [`read_workload`]:
//! * the project's topology CSV (this module, [`parse_topology`]);
//! * SCALE-Sim's topology CSVs, conv and GEMM forms ([`scalesim`]);
//! * once-for-all / ProxylessNAS `net.config` JSON ([`ofa`]).
//!
//! Topology CSV header (any column order, all columns required, `im2col` may be empty):
//! `name,kind,batch,in_channels,out_channels,in_h,in_w,kernel,stride,pad,groups,w_bits,a_bits,im2col`.
//! An empty `im2col` means "auto": true for the network's input layers (the first
//! row, and conv rows right after it that read the same input shape, such as
//! AlexNet's two parallel first convolutions), as the original simulator does.

use crate::layer::{Layer, LayerKind};
use std::path::Path;

pub mod ofa;
pub mod scalesim;

/// The input resolution of a `net.config` when neither the caller nor a `run.config` beside it gives one
/// (once-for-all's ImageNet default), in pixels.
pub const DEFAULT_OFA_RESOLUTION: u32 = 224;

/// The two forms of SCALE-Sim topology CSV.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScaleSimForm {
    /// `Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,`
    Conv,
    /// `Layer, M, N, K,`
    Gemm,
}

/// A workload file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkloadFormat {
    /// The project's topology CSV ([`TOPOLOGY_COLUMNS`]).
    Topology,
    /// A SCALE-Sim topology CSV.
    ScaleSim(ScaleSimForm),
    /// A once-for-all / ProxylessNAS `net.config` JSON.
    OfaNetConfig,
}

/// How to read a workload file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// Input resolution of a `net.config`, in pixels; `None`: the `image_size` of a `run.config` beside
    /// the file (once-for-all's specialized networks ship one), else [`DEFAULT_OFA_RESOLUTION`].
    pub resolution: Option<u32>,
    /// An ONNX model's batch for symbolic dimensions and bits for layers the model gives none.
    pub onnx: crate::onnx::OnnxOptions,
}

/// A workload file that cannot be read, phrased for the user on one line naming the file and the
/// line (CSV) or key path (JSON) at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WorkloadError {
    #[error("{origin}: cannot read workload file: {message}")]
    Io { origin: String, message: String },
    /// An ONNX model that cannot be imported (the message names the file, node and operator).
    #[error("{message}")]
    Onnx { message: String },
    #[error("{origin}: unrecognised workload format: {message}")]
    UnknownFormat { origin: String, message: String },
    #[error(transparent)]
    Topology(#[from] TopologyError),
    #[error("{origin}:{line}: {message}")]
    ScaleSim { origin: String, line: u64, message: String },
    #[error("{origin}: key '{key}': {message}")]
    Ofa { origin: String, key: String, message: String },
}

/// Tell a workload's format from its text: JSON (first non-blank character `{`) is a `net.config`;
/// otherwise the first line that is neither blank nor a `#` comment is a CSV header, matched against
/// the project's columns and SCALE-Sim's two headers (case and spaces ignored).
pub fn detect_format(text: &str, origin: &str) -> Result<WorkloadFormat, WorkloadError> {
    if text.trim_start().starts_with('{') {
        return Ok(WorkloadFormat::OfaNetConfig);
    }
    let header = text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#')).unwrap_or("");
    let fields: Vec<String> = scalesim::fields(header).into_iter().map(|f| f.to_ascii_lowercase()).collect();
    if fields.iter().any(|f| f == "kind") && fields.iter().any(|f| f == "in_channels") {
        return Ok(WorkloadFormat::Topology);
    }
    if let Some(form) = scalesim::form_of_header(&fields) {
        return Ok(WorkloadFormat::ScaleSim(form));
    }
    let shown: String = header.chars().take(80).collect();
    Err(WorkloadError::UnknownFormat {
        origin: origin.to_string(),
        message: format!(
            "first line '{shown}' is not a topology CSV header ({}), a SCALE-Sim header ('{}' or '{}') or a net.config JSON object",
            TOPOLOGY_COLUMNS.join(","),
            scalesim::CONV_HEADER.join(", "),
            scalesim::GEMM_HEADER.join(", ")
        ),
    })
}

/// Parse workload text of any supported format; `origin` names it in errors, `resolution` is a
/// `net.config`'s input size in pixels.
pub fn parse_workload(text: &str, origin: &str, resolution: u32) -> Result<Vec<Layer>, WorkloadError> {
    match detect_format(text, origin)? {
        WorkloadFormat::Topology => Ok(parse_topology(text, origin)?),
        WorkloadFormat::ScaleSim(form) => scalesim::parse_scalesim(text, origin, form),
        WorkloadFormat::OfaNetConfig => ofa::parse_ofa(text, origin, resolution),
    }
}

/// Read a workload file of any supported format (see [`detect_format`]).
pub fn read_workload(path: &Path, opts: &ReadOptions) -> Result<Vec<Layer>, WorkloadError> {
    if crate::onnx::is_onnx(path) {
        // Binary protobuf, recognised by its extension (the text formats by their content).
        return crate::onnx::read_onnx(path, &opts.onnx).map_err(|e| WorkloadError::Onnx { message: e.to_string() });
    }
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| WorkloadError::Io { origin: origin.clone(), message: e.to_string() })?;
    let resolution = match opts.resolution {
        Some(r) => r,
        None => run_config_resolution(path)?.unwrap_or(DEFAULT_OFA_RESOLUTION),
    };
    parse_workload(&text, &origin, resolution)
}

/// The `image_size` of the `run.config` beside `path`, if there is one (once-for-all's specialized
/// networks: `<name>/net.config` and `<name>/run.config`).
fn run_config_resolution(path: &Path) -> Result<Option<u32>, WorkloadError> {
    let run = path.with_file_name("run.config");
    let Ok(text) = std::fs::read_to_string(&run) else { return Ok(None) };
    let origin = run.display().to_string();
    let bad = |message: String| WorkloadError::Ofa { origin: origin.clone(), key: "image_size".into(), message };
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    match v.get("image_size") {
        None => Ok(None),
        Some(x) => match x.as_u64().and_then(|n| u32::try_from(n).ok()) {
            Some(n) if n > 0 => Ok(Some(n)),
            _ => Err(bad(format!("expected a positive integer, got {x}"))),
        },
    }
}

/// The topology CSV columns, in the canonical order.
pub const TOPOLOGY_COLUMNS: [&str; 14] = [
    "name",
    "kind",
    "batch",
    "in_channels",
    "out_channels",
    "in_h",
    "in_w",
    "kernel",
    "stride",
    "pad",
    "groups",
    "w_bits",
    "a_bits",
    "im2col",
];

/// A bad topology file, phrased for the user on one line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{origin}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct TopologyError {
    pub origin: String,
    pub line: Option<u64>,
    pub message: String,
}

/// Read a topology CSV file.
pub fn read_topology(path: &Path) -> Result<Vec<Layer>, TopologyError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| TopologyError {
        origin: origin.clone(),
        line: None,
        message: format!("cannot read topology file: {e}"),
    })?;
    parse_topology(&text, &origin)
}

/// Parse topology CSV text; `origin` names it in errors.
pub fn parse_topology(text: &str, origin: &str) -> Result<Vec<Layer>, TopologyError> {
    let err = |line: Option<u64>, message: String| TopologyError { origin: origin.to_string(), line, message };
    let mut rdr = csv::ReaderBuilder::new().trim(csv::Trim::All).comment(Some(b'#')).from_reader(text.as_bytes());
    let header = rdr.headers().map_err(|e| err(Some(1), format!("cannot read the header: {e}")))?.clone();
    let mut index = [usize::MAX; TOPOLOGY_COLUMNS.len()];
    for (i, h) in header.iter().enumerate() {
        match TOPOLOGY_COLUMNS.iter().position(|c| *c == h) {
            Some(k) if index[k] != usize::MAX => return Err(err(Some(1), format!("column '{h}' appears twice"))),
            Some(k) => index[k] = i,
            None => {
                return Err(err(
                    Some(1),
                    format!("unknown column '{h}' (expected: {})", TOPOLOGY_COLUMNS.join(",")),
                ));
            }
        }
    }
    if let Some(k) = index.iter().position(|i| *i == usize::MAX) {
        return Err(err(Some(1), format!("missing column '{}' (expected: {})", TOPOLOGY_COLUMNS[k], TOPOLOGY_COLUMNS.join(","))));
    }
    let mut layers: Vec<(Layer, Option<bool>)> = Vec::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| {
            let line = e.position().map(|p| p.line());
            err(line, format!("malformed CSV: {}", csv_error_kind(&e)))
        })?;
        let line = rec.position().map(|p| p.line());
        let field = |k: usize| rec.get(index[k]).unwrap_or("");
        let num = |k: usize| -> Result<u32, TopologyError> {
            let v = field(k);
            v.parse::<u32>().map_err(|_| {
                err(line, format!("column '{}': expected a non-negative integer, got '{v}'", TOPOLOGY_COLUMNS[k]))
            })
        };
        let name = field(0).to_string();
        if name.is_empty() {
            return Err(err(line, "column 'name': empty layer name".into()));
        }
        let kind = match field(1) {
            "conv" => LayerKind::Conv,
            "fc" => LayerKind::Fc,
            other => return Err(err(line, format!("column 'kind': expected 'conv' or 'fc', got '{other}'"))),
        };
        let im2col = match field(13).to_ascii_lowercase().as_str() {
            "" => None,
            "true" | "1" => Some(true),
            "false" | "0" => Some(false),
            other => return Err(err(line, format!("column 'im2col': expected true, false or empty, got '{other}'"))),
        };
        let layer = Layer {
            name,
            kind,
            batch: num(2)?,
            in_channels: num(3)?,
            out_channels: num(4)?,
            in_h: num(5)?,
            in_w: num(6)?,
            kernel: num(7)?,
            stride: num(8)?,
            pad: num(9)?,
            groups: num(10)?,
            w_bits: num(11)?,
            a_bits: num(12)?,
            im2col: false,
        };
        layer.validate().map_err(|e| err(line, format!("column '{}': {}", e.field, e.message)))?;
        layers.push((layer, im2col));
    }
    if layers.is_empty() {
        return Err(err(None, "no layers (the file has a header but no rows)".into()));
    }
    Ok(resolve_im2col(layers))
}

fn csv_error_kind(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
            format!("expected {expected_len} fields, found {len}")
        }
        csv::ErrorKind::Utf8 { .. } => "invalid UTF-8".into(),
        _ => e.to_string().replace('\n', " "),
    }
}

/// Fill in `auto` im2col flags: the network's input layers are lowered with im2col.
pub(crate) fn resolve_im2col(rows: Vec<(Layer, Option<bool>)>) -> Vec<Layer> {
    let first_shape = (rows[0].0.in_channels, rows[0].0.in_h, rows[0].0.in_w);
    let mut in_input_group = true;
    rows.into_iter()
        .enumerate()
        .map(|(i, (mut l, flag))| {
            let shape = (l.in_channels, l.in_h, l.in_w);
            in_input_group = in_input_group && l.kind == LayerKind::Conv && (i == 0 || shape == first_shape);
            l.im2col = flag.unwrap_or(in_input_group);
            l
        })
        .collect()
}

/// Write layers as a topology CSV (the format [`parse_topology`] reads).
pub fn topology_csv(layers: &[Layer]) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    // Writing into a Vec cannot fail; names with commas or quotes are quoted, so they read back.
    let _ = w.write_record(TOPOLOGY_COLUMNS);
    for l in layers {
        let _ = w.write_record([
            l.name.clone(),
            l.kind.as_str().to_string(),
            l.batch.to_string(),
            l.in_channels.to_string(),
            l.out_channels.to_string(),
            l.in_h.to_string(),
            l.in_w.to_string(),
            l.kernel.to_string(),
            l.stride.to_string(),
            l.pad.to_string(),
            l.groups.to_string(),
            l.w_bits.to_string(),
            l.a_bits.to_string(),
            l.im2col.to_string(),
        ]);
    }
    String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
}

/// Whole-workload overrides given on the command line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkloadOverrides {
    pub batch: Option<u32>,
    pub w_bits: Option<u32>,
    pub a_bits: Option<u32>,
}

impl WorkloadOverrides {
    /// Apply the overrides to every layer and re-validate.
    pub fn apply(&self, layers: &mut [Layer]) -> Result<(), crate::layer::LayerError> {
        for l in layers.iter_mut() {
            if let Some(b) = self.batch {
                l.batch = b;
            }
            if let Some(w) = self.w_bits {
                l.w_bits = w;
            }
            if let Some(a) = self.a_bits {
                l.a_bits = a;
            }
            l.validate()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "name,kind,batch,in_channels,out_channels,in_h,in_w,kernel,stride,pad,groups,w_bits,a_bits,im2col
conv1_a,conv,16,3,48,227,227,11,4,0,1,4,8,
conv1_b,conv,16,3,48,227,227,11,4,0,1,4,8,
conv2,conv,16,48,128,27,27,5,1,2,1,4,4,
fc,fc,16,9216,4096,1,1,1,1,0,1,4,4,false
";

    #[test]
    fn parses_and_resolves_auto_im2col() {
        let ls = parse_topology(GOOD, "t.csv").unwrap();
        assert_eq!(ls.len(), 4);
        assert!(ls[0].im2col && ls[1].im2col && !ls[2].im2col && !ls[3].im2col);
        assert_eq!(ls[3].kind, LayerKind::Fc);
        assert_eq!(ls[0].out_h(), 55);
    }

    #[test]
    fn round_trips_through_csv() {
        let ls = parse_topology(GOOD, "t.csv").unwrap();
        assert_eq!(parse_topology(&topology_csv(&ls), "u.csv").unwrap(), ls);
    }

    #[test]
    fn errors_name_line_and_column() {
        let bad = GOOD.replace("conv2,conv,16,48,128,27,27,5,1,2", "conv2,conv,16,48,128,27,27,5,x,2");
        let e = parse_topology(&bad, "t.csv").unwrap_err().to_string();
        assert_eq!(e, "t.csv:4: column 'stride': expected a non-negative integer, got 'x'");
        let bad = GOOD.replace("fc,fc,16,9216,4096,1,1,1,1,0,1,4,4,false", "fc,fc,16,9216,4096,1,1,1,1,0,1,4,32,false");
        let e = parse_topology(&bad, "t.csv").unwrap_err().to_string();
        assert!(e.starts_with("t.csv:5: column 'a_bits': unsupported bit width 32"), "{e}");
        let bad = GOOD.replace("conv2,conv,16,48", "conv2,pool,16,48");
        assert!(parse_topology(&bad, "t.csv").unwrap_err().to_string().contains("column 'kind'"));
        let bad = GOOD.replace(",im2col", ",im2kol");
        assert!(parse_topology(&bad, "t.csv").unwrap_err().to_string().contains("unknown column 'im2kol'"));
        let bad = GOOD.replace("conv2,conv,16,48,128,27,27,5,1,2,1,4,4,", "conv2,conv,16,48");
        let e = parse_topology(&bad, "t.csv").unwrap_err().to_string();
        assert!(e.contains("t.csv:4: malformed CSV: expected 14 fields, found 4"), "{e}");
        let e = parse_topology(TOPOLOGY_COLUMNS.join(",").as_str(), "t.csv").unwrap_err().to_string();
        assert!(e.contains("no layers"), "{e}");
    }

    #[test]
    fn overrides_apply_to_every_layer() {
        let mut ls = parse_topology(GOOD, "t.csv").unwrap();
        WorkloadOverrides { batch: Some(1), w_bits: Some(2), a_bits: Some(2) }.apply(&mut ls).unwrap();
        assert!(ls.iter().all(|l| l.batch == 1 && l.w_bits == 2 && l.a_bits == 2));
        let e = WorkloadOverrides { w_bits: Some(0), ..Default::default() }.apply(&mut ls).unwrap_err();
        assert_eq!(e.field, "w_bits");
    }

    #[test]
    fn detects_each_format() {
        assert_eq!(detect_format(GOOD, "t").unwrap(), WorkloadFormat::Topology);
        assert_eq!(detect_format(&format!("# c\n{GOOD}"), "t").unwrap(), WorkloadFormat::Topology);
        let conv = "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,\n";
        assert_eq!(detect_format(conv, "t").unwrap(), WorkloadFormat::ScaleSim(ScaleSimForm::Conv));
        assert_eq!(detect_format("Layer, M, N, K,\n", "t").unwrap(), WorkloadFormat::ScaleSim(ScaleSimForm::Gemm));
        assert_eq!(detect_format(" {\"blocks\": []}", "t").unwrap(), WorkloadFormat::OfaNetConfig);
        let e = detect_format("a,b,c\n1,2,3\n", "x.csv").unwrap_err().to_string();
        assert!(e.starts_with("x.csv: unrecognised workload format: first line 'a,b,c'") && !e.contains('\n'), "{e}");
    }

    #[test]
    fn parse_workload_reads_every_format() {
        assert_eq!(parse_workload(GOOD, "t", 224).unwrap().len(), 4);
        assert_eq!(parse_workload("Layer, M, N, K,\nfc, 4, 8, 16,\n", "t", 224).unwrap()[0].macs(), 4 * 8 * 16);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { rng_seed: proptest::test_runner::RngSeed::Fixed(0xf0a7), cases: 500, .. Default::default() })]
        /// Any numbers (zero, huge, negative, not numbers) in any format's fields give layers that
        /// validate or a one-line error naming the file, never a panic.
        #[test]
        fn any_field_values_read_or_fail_on_one_line(v in proptest::collection::vec("0|1|2|3|4|5|7|8|16|64|1048577|4294967295|99999999999|-1|x|1.5|", 9)) {
            let texts = [
                format!("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,\nc,{},{},{},{},{},{},{},\n", v[0], v[1], v[2], v[3], v[4], v[5], v[6]),
                format!("Layer, M, N, K,\ng,{},{},{},\n", v[0], v[1], v[2]),
                format!(
                    r#"{{"first_conv": {{"kernel_size": {}, "stride": {}, "in_channels": 3, "out_channels": {}}}, "blocks": [{{"conv": {{"in_channels": {}, "out_channels": 8, "kernel_size": {}, "stride": {}, "expand_ratio": {}, "mid_channels": {}, "use_se": true}}}}], "feature_mix_layer": {{"kernel_size": 1, "in_channels": 8, "out_channels": 16}}, "classifier": {{"in_features": 16, "out_features": 10}}}}"#,
                    v[0], v[1], v[2], v[2], v[3], v[4], v[5], v[6]
                ),
            ];
            for t in &texts {
                match parse_workload(t, "f", 8 + v[8].len() as u32) {
                    Ok(ls) => proptest::prop_assert!(ls.iter().all(|l| l.validate().is_ok())),
                    Err(e) => {
                        let e = e.to_string();
                        proptest::prop_assert!(e.starts_with("f") && !e.contains('\n'), "{}", e);
                    }
                }
            }
        }
    }

    #[test]
    fn names_with_commas_and_quotes_round_trip() {
        let mut l = Layer::conv("a,b \"c\"", 1, 8, 8, 8, 3, 1, 1, 1, 8, 8);
        l.im2col = true;
        let text = topology_csv(std::slice::from_ref(&l));
        assert_eq!(parse_topology(&text, "t.csv").unwrap(), vec![l]);
    }
}
