//! Other workload formats through `workload::read_workload` and the CLI: SCALE-Sim CSVs (conv and
//! GEMM) and all 50 once-for-all `net.config`s in `../shared/reference/search/data/ofa/specialized/`
//! (relative to the repository root), three of which are checked against the FLOP count in their name.

mod common;

use bitfusion_simulator::sweep::Sweep;
use bitfusion_simulator::workload::{ReadOptions, read_workload};
use bitfusion_simulator::{Layer, LayerKind};
use common::{bitfusion, data};
use std::path::PathBuf;

fn ofa_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/reference/search/data/ofa/specialized")
}

fn macs(layers: &[Layer]) -> u64 {
    layers.iter().map(Layer::macs).sum()
}

#[test]
fn all_fifty_ofa_net_configs_import() {
    let dir = ofa_dir();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e} (the shared reference data must sit beside the repository)", dir.display()))
        .map(|e| e.unwrap().path().join("net.config"))
        .filter(|p| p.is_file())
        .collect();
    entries.sort();
    assert_eq!(entries.len(), 50, "expected 50 net.configs in {}", dir.display());
    for p in &entries {
        let layers = read_workload(p, &ReadOptions::default()).unwrap_or_else(|e| panic!("{e}"));
        assert!(layers[0].im2col && layers[0].name == "first_conv", "{}", p.display());
        assert_eq!(layers.last().unwrap().kind, LayerKind::Fc);
        assert_eq!(layers.last().unwrap().out_channels, 1000);
        assert!(layers.iter().any(Layer::is_depthwise));
    }
}

/// once-for-all's `count_net_flops` (`ofa/utils/flops_counter.py`, thop-like forward hooks at batch 1,
/// at the network's `image_size`) counts `Conv2d` as `in_channels x output elements x kh x kw / groups`
/// and `Linear` as `in_features x out_features`; batch norm, activations, pooling, the SE's rescaling
/// and residual adds count nothing. Those are exactly [`Layer::macs`] over the imported layers (the SE's
/// 1x1 convs on the pooled vector are counted as fc layers, the same products). The name gives the
/// count in whole MFLOPs, so the tolerance is rounding: |MACs / 1e6 - name| <= 0.5.
/// Measured: 389,487,856 (389M, +0.49), 482,413,168 (482M, +0.41), 595,189,032 (595M at 236 px, +0.19).
#[test]
fn flop_constrained_ofa_nets_match_their_names() {
    for (name, mflops, measured) in [
        ("flops-389M_top1-79.1_finetune-75", 389.0, 389_487_856u64),
        ("flops-482M_top1-79.6_finetune-75", 482.0, 482_413_168),
        ("flops-595M_top1-80.0_finetune-75", 595.0, 595_189_032),
    ] {
        let layers = read_workload(&ofa_dir().join(name).join("net.config"), &ReadOptions::default()).unwrap();
        let m = macs(&layers);
        assert!((m as f64 / 1e6 - mflops).abs() <= 0.5, "{name}: {m} MACs");
        assert_eq!(m, measured, "{name}");
    }
}

#[test]
fn ofa_resolution_comes_from_run_config_or_the_option() {
    let p = ofa_dir().join("flops-595M_top1-80.0_finetune-75/net.config");
    assert_eq!(read_workload(&p, &ReadOptions::default()).unwrap()[0].in_h, 236);
    assert_eq!(read_workload(&p, &ReadOptions { resolution: Some(160), ..ReadOptions::default() }).unwrap()[0].in_h, 160);
}

#[test]
fn scalesim_csvs_import() {
    let conv = read_workload(&data("scalesim/resnet18_head.csv"), &ReadOptions::default()).unwrap();
    assert_eq!(conv.len(), 6);
    // Padded 230 input, 7x7 stride 2, no padding: ResNet's 112x112 output.
    assert_eq!((conv[0].pad, conv[0].out_h()), (0, 112));
    assert!(conv.iter().skip(1).all(|l| l.out_h() == 56 || l.out_h() == 28));
    let gemm = read_workload(&data("scalesim/gemm_transformer.csv"), &ReadOptions::default()).unwrap();
    assert!(gemm.iter().all(|l| l.kind == LayerKind::Fc && l.batch == 512));
    assert_eq!(gemm[3].macs(), 512 * 3072 * 768);
}

#[test]
fn cli_accepts_the_formats() {
    let p = ofa_dir().join("cpu_lat-10ms_top1-71.1_finetune-25/net.config");
    let out = bitfusion(&["networks", p.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let csv = String::from_utf8(out.stdout).unwrap();
    assert!(csv.starts_with("name,kind,batch,") && csv.contains("blocks.0.depthwise,conv,1,40,40,72,72,3,1,1,40,8,8,false"), "{csv}");
    let out = bitfusion(&["simulate", "--layers", data("scalesim/gemm_transformer.csv").to_str().unwrap(), "--model", "reference"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let bad = std::env::temp_dir().join(format!("bitfusion-formats-{}.csv", std::process::id()));
    std::fs::write(&bad, "Layer, M, N, K,\nA, 1, x, 3,\n").unwrap();
    let out = bitfusion(&["simulate", "--layers", bad.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success() && err.contains(".csv:2: column 'N': expected a positive integer, got 'x'"), "{err}");
    let _ = std::fs::remove_file(&bad);
}

#[test]
fn cli_resolution_sets_a_net_config_input_size() {
    let p = ofa_dir().join("cpu_lat-10ms_top1-71.1_finetune-25/net.config");
    let first = |args: &[&str]| {
        let out = bitfusion(args);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().lines().nth(1).unwrap().to_string()
    };
    let file = p.to_str().unwrap();
    // Its run.config says 144; --resolution overrides it, in `networks` and in `simulate`.
    assert!(first(&["networks", file]).starts_with("first_conv,conv,1,3,40,144,144,"));
    assert!(first(&["networks", file, "--resolution", "160"]).starts_with("first_conv,conv,1,3,40,160,160,"));
    let total = |args: &[&str]| {
        let out = bitfusion(args);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().lines().find(|l| l.starts_with("total")).unwrap().to_string()
    };
    let sim = |res: &str| total(&["simulate", "--layers", file, "--model", "reference", "--resolution", res]);
    assert_ne!(sim("96"), sim("160"));
    assert_eq!(sim("144"), total(&["simulate", "--layers", file, "--model", "reference"]));
    // Other formats ignore it.
    let csv = data("scalesim/resnet18_head.csv");
    assert_eq!(first(&["networks", csv.to_str().unwrap(), "--resolution", "32"]), first(&["networks", csv.to_str().unwrap()]));
    // Zero is refused on one line, and so is a resolution without a file.
    for args in [&["networks", file, "--resolution", "0"][..], &["networks", "--resolution", "160"][..]] {
        let out = bitfusion(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.starts_with("error: ") && err.trim_end().lines().count() == 1, "{args:?}: {err}");
    }
}

#[test]
fn sweep_spec_resolution_sets_net_config_workloads() {
    let p = ofa_dir().join("cpu_lat-10ms_top1-71.1_finetune-25/net.config");
    let spec = |extra: &str| format!("base = \"bitfusion-isca2018\"\nworkloads = [{:?}, \"lenet5\"]\n{extra}\n[axes]\n\"array.rows\" = [16]\n", p.to_str().unwrap());
    let dir = std::env::temp_dir();
    let at = |extra: &str| Sweep::from_str(&spec(extra), "spec.toml", &dir).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(at("").workloads[0].layers[0].in_h, 144);
    let s = at("resolution = 192");
    assert_eq!(s.workloads[0].layers[0].in_h, 192);
    assert_eq!(s.workloads[1].layers, at("").workloads[1].layers, "a built-in network ignores it");
    let e = Sweep::from_str(&spec("resolution = 0"), "spec.toml", &dir).unwrap_err().to_string();
    assert_eq!(e, "spec.toml: resolution must be at least 1 pixel");
}
