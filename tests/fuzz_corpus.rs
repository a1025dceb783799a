//! Replays the fuzz corpora (`fuzz/corpus/<target>/`) and the saved crash inputs
//! (`fuzz/regressions/<target>/`) through the fuzz targets' own harness bodies, on stable, so a
//! parser change that panics on one of them fails here without cargo-fuzz. See `fuzz/README.md`.
//!
//! `apq_dict_full_seed_files` replays the two full APQ files of `tests/data/apq/` the `apq_dict`
//! corpus keeps excerpts of.
//!
//! A regression input whose library bug is not fixed yet fails its `regressions_*` test, naming
//! the file and the panic.

#[path = "../fuzz/harness.rs"]
mod harness;

use std::path::{Path, PathBuf};

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut v: Vec<PathBuf> = rd.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_file()).collect();
    v.retain(|p| p.file_name().is_some_and(|n| !n.to_string_lossy().starts_with('.')));
    v.sort();
    v
}

/// Run every file of `fuzz/<kind>/<target>/` through `f`; panics listing the files that panicked.
fn replay(kind: &str, target: &str, f: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz").join(kind).join(target);
    let inputs = files(&dir);
    let mut failed = Vec::new();
    for p in &inputs {
        let data = std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let r = std::panic::catch_unwind(|| f(&data));
        if let Err(e) = r {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "(non-string panic)".into());
            failed.push(format!("{}: {msg}", p.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap_or(p).display()));
        }
    }
    assert!(failed.is_empty(), "{} of {} inputs panicked:\n{}", failed.len(), inputs.len(), failed.join("\n"));
    inputs.len()
}

macro_rules! targets {
    ($($t:ident),* $(,)?) => {
        mod corpus {
            $(
                #[test]
                fn $t() {
                    let n = super::replay("corpus", stringify!($t), super::harness::$t);
                    assert!(n > 0, "fuzz/corpus/{} is empty or missing", stringify!($t));
                }
            )*
        }
        mod regressions {
            $(
                #[test]
                fn $t() {
                    super::replay("regressions", stringify!($t), super::harness::$t);
                }
            )*
        }
    };
}

targets!(hw_config, topology_csv, sweep_spec, lut_file, arch, onnx_model, scalesim_csv, ofa_config, apq_dict, apq_arch);

/// The full APQ files the `apq_dict` corpus was seeded with (too large to commit twice: the corpus
/// keeps excerpts of them), through the same harness.
#[test]
fn apq_dict_full_seed_files() {
    for f in ["BitFusion_new.b1.dict", "bitfusion_lut_flat.csv"] {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/apq").join(f);
        let data = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        harness::apq_dict(&data);
    }
}
