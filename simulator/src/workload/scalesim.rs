//! SCALE-Sim topology CSVs (ARM-software/SCALE-Sim, MIT licence): the convolution form and the GEMM form.
//!
//! Convolution form (`topologies/conv_nets/*.csv`), one layer a row, a trailing comma on every line:
//! `Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,`.
//! SCALE-Sim has no padding column: its IFMAP is taken as already padded (ARM-software/SCALE-Sim#27),
//! so each row becomes a valid ("no padding", `pad = 0`) dense convolution (`groups = 1`). `Layer`
//! has rectangular inputs but a square kernel, so a row whose filter height and width differ is refused.
//! Some SCALE-Sim versions accept a ninth column, the column stride; it must equal `Strides` here.
//!
//! GEMM form (`-i gemm`, `topologies/GEMM_mnk/*.csv`): `Layer, M, N, K,`. SCALE-Sim's
//! `topology_utils.load_arrays_gemm` turns a row into the convolution
//! `[name, M, K, 1, K, 1, N, 1]`: an M x K IFMAP with one channel, N filters of 1 x K, stride 1, so
//! the output is M x 1 x N and each output is a K-long dot product. That is a fully connected layer
//! with batch M, K inputs and N outputs (M x N x K MACs), which is what a row becomes here.
//!
//! SCALE-Sim carries no precision or batch: layers get batch 1 (conv form) and 8-bit weights and
//! activations, the built-in networks' defaults; `--batch`, `--w-bits` and `--a-bits` override them.

use super::{ScaleSimForm, WorkloadError, resolve_im2col};
use crate::layer::Layer;

/// Bits given to every SCALE-Sim layer (SCALE-Sim has no precision; the built-in networks' default).
pub const DEFAULT_BITS: u32 = 8;

/// The conv form's columns, lower-cased, as SCALE-Sim's shipped topologies spell them.
pub const CONV_HEADER: [&str; 8] =
    ["layer name", "ifmap height", "ifmap width", "filter height", "filter width", "channels", "num filter", "strides"];
/// The GEMM form's columns, lower-cased.
pub const GEMM_HEADER: [&str; 4] = ["layer", "m", "n", "k"];

/// The fields of one CSV line, trimmed, without the trailing empty field SCALE-Sim's trailing comma leaves.
pub fn fields(line: &str) -> Vec<String> {
    let mut f: Vec<String> = line.split(',').map(|s| s.trim().to_string()).collect();
    while f.last().is_some_and(|s| s.is_empty()) {
        f.pop();
    }
    f
}

/// Which SCALE-Sim form a header line (already split by [`fields`], lower-cased) is, if any.
pub fn form_of_header(header: &[String]) -> Option<ScaleSimForm> {
    let is = |want: &[&str]| header.len() >= want.len() && header.iter().zip(want).all(|(h, w)| h == w);
    if is(&CONV_HEADER) {
        Some(ScaleSimForm::Conv)
    } else if is(&GEMM_HEADER) {
        Some(ScaleSimForm::Gemm)
    } else {
        None
    }
}

/// Parse a SCALE-Sim topology of the given form; `origin` names the text in errors.
pub fn parse_scalesim(text: &str, origin: &str, form: ScaleSimForm) -> Result<Vec<Layer>, WorkloadError> {
    let err = |line: usize, message: String| WorkloadError::ScaleSim { origin: origin.to_string(), line: line as u64, message };
    let mut rows = Vec::new();
    let mut header_seen = false;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        if !header_seen {
            header_seen = true;
            continue;
        }
        let f = fields(raw);
        let layer = match form {
            ScaleSimForm::Conv => conv_row(&f),
            ScaleSimForm::Gemm => gemm_row(&f),
        }
        .map_err(|m| err(line, m))?;
        layer.validate().map_err(|e| err(line, format!("layer '{}': {}", layer.name, e)))?;
        rows.push((layer, None));
    }
    if rows.is_empty() {
        return Err(err(1, "no layers (the file has a header but no rows)".into()));
    }
    Ok(resolve_im2col(rows))
}

/// A positive integer field, named by its column in errors.
fn positive(f: &[String], k: usize, column: &str) -> Result<u32, String> {
    let v = f.get(k).map(String::as_str).unwrap_or("");
    match v.parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("column '{column}': expected a positive integer, got '{v}'")),
    }
}

/// One conv-form row: a valid (`pad = 0`), dense convolution at batch 1.
fn conv_row(f: &[String]) -> Result<Layer, String> {
    if f.len() < 8 || f.len() > 9 {
        return Err(format!("expected 8 fields ({}), found {}", CONV_HEADER.join(", "), f.len()));
    }
    let name = f[0].clone();
    if name.is_empty() {
        return Err("column 'Layer name': empty layer name".into());
    }
    let ih = positive(f, 1, "IFMAP Height")?;
    let iw = positive(f, 2, "IFMAP Width")?;
    let fh = positive(f, 3, "Filter Height")?;
    let fw = positive(f, 4, "Filter Width")?;
    let c = positive(f, 5, "Channels")?;
    let n = positive(f, 6, "Num Filter")?;
    let s = positive(f, 7, "Strides")?;
    if fh != fw {
        return Err(format!("layer '{name}': a {fh}x{fw} filter is not square (the simulator's layers have square kernels)"));
    }
    if f.len() == 9 {
        let sw = positive(f, 8, "column stride")?;
        if sw != s {
            return Err(format!("layer '{name}': row stride {s} and column stride {sw} differ (only equal strides are supported)"));
        }
    }
    let mut l = Layer::conv(&name, 1, c, n, ih, fh, s, 0, 1, DEFAULT_BITS, DEFAULT_BITS);
    l.in_w = iw;
    Ok(l)
}

/// One GEMM-form row `name, M, N, K`: a fully connected layer with batch M, K inputs, N outputs.
fn gemm_row(f: &[String]) -> Result<Layer, String> {
    if f.len() != 4 {
        return Err(format!("expected 4 fields (Layer, M, N, K), found {}", f.len()));
    }
    let name = f[0].clone();
    if name.is_empty() {
        return Err("column 'Layer': empty layer name".into());
    }
    let m = positive(f, 1, "M")?;
    let n = positive(f, 2, "N")?;
    let k = positive(f, 3, "K")?;
    Ok(Layer::fc(&name, m, k, n, DEFAULT_BITS, DEFAULT_BITS))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::LayerKind;

    const CONV: &str = "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,
Conv1, 230, 230, 7, 7, 3, 64, 2,
Conv2, 56, 58, 3, 3, 64, 64, 1,
";

    #[test]
    fn conv_rows_are_valid_convolutions() {
        let ls = parse_scalesim(CONV, "t.csv", ScaleSimForm::Conv).unwrap();
        assert_eq!(ls.len(), 2);
        assert_eq!((ls[0].in_h, ls[0].kernel, ls[0].stride, ls[0].pad, ls[0].out_h()), (230, 7, 2, 0, 112));
        assert!(ls[0].im2col && !ls[1].im2col);
        assert_eq!((ls[1].in_h, ls[1].in_w, ls[1].out_w()), (56, 58, 56));
        assert_eq!(ls[1].macs(), 54 * 56 * 9 * 64 * 64);
    }

    #[test]
    fn gemm_rows_are_fc_layers_with_batch_m() {
        let text = "Layer, M, N, K,\nQKT, 1024, 1024, 64,\nLinear1, 1024, 4800, 1600,\n";
        let ls = parse_scalesim(text, "g.csv", ScaleSimForm::Gemm).unwrap();
        assert_eq!(ls[1].kind, LayerKind::Fc);
        assert_eq!((ls[1].batch, ls[1].in_channels, ls[1].out_channels), (1024, 1600, 4800));
        assert_eq!(ls[1].macs(), 1024 * 4800 * 1600);
    }

    #[test]
    fn errors_name_file_and_line() {
        let bad = CONV.replace("Conv2, 56, 58, 3, 3", "Conv2, 56, 58, 3, 1");
        let e = parse_scalesim(&bad, "t.csv", ScaleSimForm::Conv).unwrap_err().to_string();
        assert_eq!(e, "t.csv:3: layer 'Conv2': a 3x1 filter is not square (the simulator's layers have square kernels)");
        let bad = CONV.replace("Conv2, 56, 58, 3, 3, 64, 64, 1,", "Conv2, 56, 58, 3, 3, x, 64, 1,");
        let e = parse_scalesim(&bad, "t.csv", ScaleSimForm::Conv).unwrap_err().to_string();
        assert_eq!(e, "t.csv:3: column 'Channels': expected a positive integer, got 'x'");
        let bad = CONV.replace("Conv2, 56, 58, 3, 3, 64, 64, 1,", "Conv2, 2, 2, 3, 3, 64, 64, 1,");
        let e = parse_scalesim(&bad, "t.csv", ScaleSimForm::Conv).unwrap_err().to_string();
        assert!(e.starts_with("t.csv:3: layer 'Conv2': kernel:"), "{e}");
        let e = parse_scalesim("Layer, M, N, K,\nA, 1, 2,\n", "g.csv", ScaleSimForm::Gemm).unwrap_err().to_string();
        assert_eq!(e, "g.csv:2: expected 4 fields (Layer, M, N, K), found 3");
        assert!(!e.contains('\n'));
    }
}
