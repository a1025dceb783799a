//! Helpers shared by the integration tests: reading the reference CSVs and
//! building hardware configs from their columns.

#![allow(dead_code)]

use bitfusion_simulator::config::{HwConfig, SHIPPED_CONFIGS};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Output};

/// Run the `bitfusion` binary with `args` and capture its output.
pub fn bitfusion<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bitfusion")).args(args).output().expect("run bitfusion")
}

/// A fresh, empty scratch folder for one test: `<tmp>/bitfusion-<suite>-<pid>-<name>`.
pub fn scratch(suite: &str, name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("bitfusion-{suite}-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The Python of the checkers' venv (`scripts/pyenv.sh`, run by `scripts/setup.sh` and `.ci/run`):
/// `$BITFUSION_PYTHON`, else `target/pyenv/bin/python`. Panics with the fix when neither exists, so
/// a test checked by an outside loader never passes without it.
pub fn python() -> PathBuf {
    let p = std::env::var_os("BITFUSION_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/pyenv/bin/python"));
    assert!(p.exists(), "{}: no checker Python; run `bash scripts/pyenv.sh` (onnxruntime, onnx, PyYAML, safetensors)", p.display());
    p
}

/// Run `script` (Python source) with the checkers' Python and `args`; panics with its stderr
/// when it fails, returns its stdout.
pub fn run_python<S: AsRef<std::ffi::OsStr>>(script: &str, args: &[S]) -> String {
    let out = Command::new(python()).arg("-c").arg(script).args(args).output().expect("run python");
    assert!(out.status.success(), "python checker failed:\n{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Path of a file under `tests/data/`.
pub fn data(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(path)
}

/// Read a CSV into header-keyed rows.
pub fn read_csv(path: &str) -> Vec<HashMap<String, String>> {
    let mut rdr = csv::Reader::from_path(data(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    let headers = rdr.headers().unwrap().clone();
    rdr.records()
        .map(|r| {
            let r = r.unwrap();
            headers.iter().zip(r.iter()).map(|(h, v)| (h.to_string(), v.to_string())).collect()
        })
        .collect()
}

/// A row's value as an integer (the reference CSVs print some counters as floats like `286985.0`).
pub fn int(row: &HashMap<String, String>, key: &str) -> u64 {
    let v = row.get(key).unwrap_or_else(|| panic!("missing column {key}"));
    v.parse::<u64>().unwrap_or_else(|_| {
        let f: f64 = v.parse().unwrap_or_else(|_| panic!("{key} = {v} is not a number"));
        assert!(f.fract() == 0.0 && f >= 0.0, "{key} = {v} is not a whole number");
        f as u64
    })
}

pub fn float(row: &HashMap<String, String>, key: &str) -> f64 {
    row[key].parse().unwrap_or_else(|_| panic!("{key} = {} is not a number", row[key]))
}

/// The paper config with the array, buffers, DRAM width and clock of a reference row.
#[allow(clippy::too_many_arguments)]
pub fn hw_for(n: u64, m: u64, wbuf: u64, ibuf: u64, obuf: u64, if_width: u64, freq_hz: f64, extra: &[String]) -> HwConfig {
    let mut o = vec![
        format!("array.rows={n}"),
        format!("array.cols={m}"),
        format!("memory.wbuf_bytes={wbuf}"),
        format!("memory.ibuf_bytes={ibuf}"),
        format!("memory.obuf_bytes={obuf}"),
        format!("memory.dram_bits_per_cycle={if_width}"),
        format!("clock.frequency_mhz={:?}", freq_hz / 1e6),
    ];
    o.extend(extra.iter().cloned());
    HwConfig::from_toml_str(SHIPPED_CONFIGS[0].1, "test", &o).unwrap()
}

/// Relative difference |a-b| / max(|b|, tiny).
pub fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-12)
}

/// A byte count printed as a float (bit counters need not be whole bytes), in bits.
pub fn bytes_as_bits(row: &HashMap<String, String>, key: &str) -> u64 {
    let bits = float(row, key) * 8.0;
    assert!(bits.fract() == 0.0, "{key} = {} is not a whole number of bits", row[key]);
    bits as u64
}
