//! Interop with the anchor tools' file formats: APQ (mit-han-lab/apq) and once-for-all
//! (mit-han-lab/once-for-all). A folder module; this facade holds the format names, the typed
//! error and the Python-style JSON text both formats are written in. One-way order: `apq` and
//! `ofa` use this facade and the `lut`, `space` and `arch` modules, never each other.
//!
//! * [`apq`]: APQ's LUT dict (`lut/BitFusion_new.b1.dict`: `"(cin, cout, in, k, s, pad, groups)-W{w}A{a}"`
//!   -> `{"energy": mJ, "latency": ms}` plus `head`/`tail`), reading it back for `lut diff`
//!   (detected by content beside the flat CSV), and APQ's `arch` JSON (`exps/<name>/arch` as
//!   `search.py` writes it), both ways.
//! * [`ofa`]: OFA's latency-table YAML (one file per input resolution, `{R}_lookup_table.yaml`,
//!   written as JSON, which is YAML 1.2) and OFA's architecture dict `{ks, e, d, r}`.
//!
//! Sources: APQ @ 428190a `utils/latency_predictor.py`, `utils/converter.py`, `search.py`;
//! OFA @ 80a2e26 `ofa/nas/efficiency_predictor/latency_lookup_table.py`; the tables themselves in
//! `shared/reference/search/data/{apq,ofa,proxylessnas}/`.

pub mod apq;
pub mod ofa;

use std::fmt;
use std::str::FromStr;

/// An interop problem, phrased for the user on one line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InteropError {
    /// A format name that is not one of `expected`.
    #[error("{what}: unknown format '{name}' (expected one of: {expected})")]
    UnknownFormat { what: &'static str, name: String, expected: &'static str },
    /// Bits given as `W,A` that do not parse or are not choices of the space.
    #[error("--bits {given}: {reason}")]
    Bits { given: String, reason: String },
    /// A layer the export needs is not in the LUT.
    #[error("layer {key} (outputs at {out_bits} bits) is not in the LUT")]
    MissingEntry { key: String, out_bits: u32 },
    /// A file that cannot be read.
    #[error("{path}: cannot read: {reason}")]
    Read { path: String, reason: String },
    /// APQ's LUT dict that does not parse or has an entry of the wrong shape.
    #[error("{path}: not an APQ LUT dict: {reason}")]
    Dict { path: String, reason: String },
    /// A LUT problem (the flat CSV `lut diff` also reads).
    #[error(transparent)]
    Lut(#[from] crate::lut::LutError),
    /// An architecture file in APQ's or OFA's format that does not parse or does not fit the space.
    #[error("{origin}: {reason}")]
    Arch { origin: String, reason: String },
}

/// A LUT export format (`lut export --format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LutFormat {
    /// Our flat CSV (`lut::export_csv`).
    Csv,
    /// APQ's LUT dict.
    Apq,
    /// OFA's latency-table YAML.
    Ofa,
}

/// An architecture export format (`arch export --format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchFormat {
    /// APQ's `arch` JSON.
    Apq,
    /// OFA's `{ks, e, d, r}` dict.
    Ofa,
}

impl FromStr for LutFormat {
    type Err = InteropError;
    fn from_str(s: &str) -> Result<Self, InteropError> {
        match s {
            "csv" => Ok(LutFormat::Csv),
            "apq" => Ok(LutFormat::Apq),
            "ofa" => Ok(LutFormat::Ofa),
            _ => Err(InteropError::UnknownFormat { what: "LUT export", name: s.into(), expected: "csv, apq, ofa" }),
        }
    }
}

impl FromStr for ArchFormat {
    type Err = InteropError;
    fn from_str(s: &str) -> Result<Self, InteropError> {
        match s {
            "apq" => Ok(ArchFormat::Apq),
            "ofa" => Ok(ArchFormat::Ofa),
            _ => Err(InteropError::UnknownFormat { what: "architecture", name: s.into(), expected: "apq, ofa" }),
        }
    }
}

/// A JSON value written as Python's `json.dump` writes it (separators `", "` and `": "`), the
/// text APQ's and OFA's own files have. Floats are JSON's shortest round-trip form (Python's
/// `repr` too, except that Python writes exponents as `1e-05` where this writes `1e-5`).
#[derive(Clone, Debug, PartialEq)]
pub enum Py {
    Null,
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Py>),
    /// Keys in the order given (Python dicts keep insertion order).
    Dict(Vec<(String, Py)>),
}

impl fmt::Display for Py {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Py::Null => f.write_str("null"),
            Py::Int(i) => write!(f, "{i}"),
            Py::Float(x) if x.is_finite() => f.write_str(&serde_json::to_string(x).map_err(|_| fmt::Error)?),
            // Python writes NaN/Infinity; JSON has neither: null keeps the file loadable.
            Py::Float(_) => f.write_str("null"),
            Py::Str(s) => f.write_str(&serde_json::to_string(s).map_err(|_| fmt::Error)?),
            Py::List(v) => {
                f.write_str("[")?;
                for (i, x) in v.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{x}")?;
                }
                f.write_str("]")
            }
            Py::Dict(v) => {
                f.write_str("{")?;
                for (i, (k, x)) in v.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{}: {x}", Py::Str(k.clone()))?;
                }
                f.write_str("}")
            }
        }
    }
}

/// A list of integers as [`Py`].
pub(crate) fn ints(v: impl IntoIterator<Item = u32>) -> Py {
    Py::List(v.into_iter().map(|x| Py::Int(x as i64)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_style_json_and_format_names() {
        let v = Py::List(vec![
            Py::Dict(vec![("wid".into(), Py::Null), ("ks".into(), ints([3, 5])), ("e".into(), Py::List(vec![Py::Float(4.0), Py::Float(104.0 / 24.0)]))]),
            Py::Dict(vec![("x".into(), Py::Str("a\"b".into())), ("n".into(), Py::Float(f64::NAN))]),
        ]);
        assert_eq!(v.to_string(), r#"[{"wid": null, "ks": [3, 5], "e": [4.0, 4.333333333333333]}, {"x": "a\"b", "n": null}]"#);
        let parsed: serde_json::Value = serde_json::from_str(&v.to_string()).unwrap();
        assert_eq!(parsed[0]["e"][1], 104.0 / 24.0);
        assert_eq!("ofa".parse::<LutFormat>().unwrap(), LutFormat::Ofa);
        assert_eq!("csv".parse::<LutFormat>().unwrap(), LutFormat::Csv);
        let e = "yaml".parse::<LutFormat>().unwrap_err().to_string();
        assert_eq!(e, "LUT export: unknown format 'yaml' (expected one of: csv, apq, ofa)");
        let e = "csv".parse::<ArchFormat>().unwrap_err().to_string();
        assert_eq!(e, "architecture: unknown format 'csv' (expected one of: apq, ofa)");
    }
}
