//! Design-space sweeps end to end: schema, rows equal to direct simulations, the Pareto set, resuming,
//! shards and merge, plots, the paper's scaling study, and spec errors.

mod common;

use common::{bitfusion, scratch};

use bitfusion_simulator::config::load_hw;
use bitfusion_simulator::networks::network;
use bitfusion_simulator::sweep::{self, ResultRow, Shard, Sweep, read_rows};
use bitfusion_util::pareto::dominates;
use bitfusion_simulator::{build, simulate_layers};
use std::path::Path;
use std::process::Command;

const SMALL: &str = r#"
name = "small"
base = "bitfusion-isca2018"
model = "cycle"
workloads = ["lenet5"]
batch = 1
precisions = ["native", "4x4"]

[axes]
"array.rows" = [8, 16]
"memory.dram_bits_per_cycle" = [64, 192]

[[zip]]
"array.cols" = [16, 32]
"memory.obuf_bytes" = [8192, 16384]
"#;

fn small_sweep() -> Sweep {
    Sweep::from_str(SMALL, "small.toml", Path::new(".")).unwrap()
}

fn quiet(_: usize, _: usize) {}

fn results(dir: &Path) -> Vec<ResultRow> {
    read_rows(&dir.join("results.csv")).unwrap().1
}

#[test]
fn rows_equal_direct_simulations_and_pareto_is_exact() {
    let dir = scratch("sweep", "direct");
    let sw = small_sweep();
    let s = sweep::run(&sw, &dir, None, &quiet).unwrap();
    assert_eq!((s.total, s.ran), (16, 16));
    let (header, rows) = read_rows(&dir.join("results.csv")).unwrap();
    assert_eq!(header, sweep::result_header(&sw.keys));
    for col in ["area_mm2", "cycles", "latency_ms", "energy_nj", "energy_dram_nj", "edp_nj_ms", "throughput_gops", "utilization"] {
        assert!(header.iter().any(|h| h == col), "{col}");
    }
    assert_eq!(rows.len(), 16);
    for r in &rows {
        assert_eq!(r["status"], "ok", "{r:?}");
        // The same config and workload through `simulate`.
        let sets: Vec<String> = sw.keys.iter().map(|k| format!("{k}={}", r[k])).collect();
        let hw = load_hw("bitfusion-isca2018", &sets).unwrap();
        let mut layers = network("lenet5").unwrap().layers();
        for l in &mut layers {
            l.batch = 1;
            if r["precision"] == "4x4" {
                l.w_bits = 4;
                l.a_bits = 4;
            }
        }
        let rep = simulate_layers(build(&hw, None, Default::default()).as_ref(), &layers).unwrap();
        assert_eq!(r["cycles"], rep.total.cycles.0.to_string());
        // results.csv shows 9 significant digits.
        assert_eq!(r["energy_nj"], format!("{}", bitfusion_util::round_sig(rep.total.energy_total_nj().unwrap(), 9)));
        assert_eq!(r["area_mm2"], format!("{}", bitfusion_util::round_sig(rep.area_mm2.unwrap(), 9)));
    }
    // pareto.csv holds exactly the rows no other row of the same workload and precision dominates.
    let pareto = read_rows(&dir.join("pareto.csv")).unwrap().1;
    let obj = |r: &ResultRow| [r["area_mm2"].parse().unwrap(), r["latency_ms"].parse().unwrap(), r["energy_nj"].parse::<f64>().unwrap()];
    for r in &rows {
        let dominated = rows.iter().any(|s| s["precision"] == r["precision"] && dominates(&obj(s), &obj(r)));
        assert_eq!(pareto.contains(r), !dominated, "{}", r["point"]);
    }
    assert!(!pareto.is_empty());
    // The per-layer and per-point tables.
    assert_eq!(read_rows(&dir.join("layers.csv")).unwrap().1.len(), 16 * 4);
    assert_eq!(read_rows(&dir.join("points.csv")).unwrap().1.len(), 8);
    // Plots: every chart as PNG and SVG, non-trivial.
    let files = bitfusion_plots::plot_sweep(&dir, &Default::default()).unwrap();
    for stem in ["heatmap_latency", "heatmap_energy", "pareto_area_latency", "pareto_area_energy", "energy_breakdown", "roofline_P1"] {
        for ext in ["png", "svg"] {
            let f = dir.join("plots").join(format!("{stem}.{ext}"));
            assert!(files.contains(&f), "{}", f.display());
            let len = std::fs::metadata(&f).unwrap().len();
            assert!(len > 2_000, "{} is only {len} bytes", f.display());
        }
    }
    let png = std::fs::read(dir.join("plots/heatmap_latency.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let svg = std::fs::read_to_string(dir.join("plots/pareto_area_latency.svg")).unwrap();
    assert!(svg.contains("area (mm²)") && svg.contains("latency (ms)") && svg.contains("Pareto front"));
}

#[test]
fn an_interrupted_sweep_resumes_without_losing_or_duplicating_rows() {
    let dir = scratch("sweep", "resume");
    let sw = small_sweep();
    sweep::run(&sw, &dir, None, &quiet).unwrap();
    let full = std::fs::read_to_string(dir.join("results.csv")).unwrap();
    // As if interrupted: keep the header and the first 5 rows.
    let partial: Vec<&str> = full.lines().take(6).collect();
    std::fs::write(dir.join("results.csv"), partial.join("\n") + "\n").unwrap();
    let s = sweep::run(&sw, &dir, None, &quiet).unwrap();
    assert_eq!((s.already_done, s.ran), (5, 11));
    assert_eq!(std::fs::read_to_string(dir.join("results.csv")).unwrap(), full);
    // A third run has nothing to do.
    let s = sweep::run(&sw, &dir, None, &quiet).unwrap();
    assert_eq!(s.ran, 0);
    assert_eq!(std::fs::read_to_string(dir.join("results.csv")).unwrap(), full);
    // A process killed mid-sweep: what it wrote is whole, and a re-run completes it.
    let killed = scratch("sweep", "killed");
    let spec = killed.join("spec.toml");
    let heavier = SMALL.replace("\"array.rows\" = [8, 16]", "\"array.rows\" = [4, 8, 16, 32]").replace("[\"lenet5\"]", "[\"lenet5\", \"mobilenet_v2_32\"]");
    std::fs::write(&spec, heavier).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_bitfusion"))
        .args(["sweep", spec.to_str().unwrap(), "--out", killed.to_str().unwrap(), "--threads", "1"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(700));
    let _ = child.kill();
    let _ = child.wait();
    let before = results(&killed);
    let out = bitfusion(&["sweep", spec.to_str().unwrap(), "--out", killed.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let after = results(&killed);
    assert_eq!(after.len(), 64);
    for r in &before {
        assert!(after.contains(r), "a row computed before the kill was lost or changed");
    }
    let keys: std::collections::BTreeSet<String> = after.iter().map(|r| format!("{}|{}|{}", r["point"], r["workload"], r["precision"])).collect();
    assert_eq!(keys.len(), after.len(), "duplicated rows");
}

#[test]
fn shards_merged_equal_the_unsharded_run() {
    let sw = small_sweep();
    let whole = scratch("sweep", "whole");
    sweep::run(&sw, &whole, None, &quiet).unwrap();
    let mut dirs = Vec::new();
    for i in 1..=3 {
        let d = scratch("sweep", &format!("shard{i}"));
        let s = sweep::run(&sw, &d, Some(Shard { index: i, count: 3 }), &quiet).unwrap();
        assert!(s.total >= 5 && s.total <= 6);
        dirs.push(d);
    }
    let merged = scratch("sweep", "merged");
    // Through the CLI, as a cluster's last step would.
    let mut args = vec!["merge".to_string()];
    args.extend(dirs.iter().map(|d| d.display().to_string()));
    args.extend(["--out".to_string(), merged.display().to_string()]);
    let out = bitfusion(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut a = results(&whole);
    let mut b = results(&merged);
    let key = |r: &ResultRow| format!("{}|{}|{}", r["point"], r["workload"], r["precision"]);
    a.sort_by_key(key);
    b.sort_by_key(key);
    assert_eq!(a, b);
    let pa = read_rows(&whole.join("pareto.csv")).unwrap().1.len();
    assert_eq!(read_rows(&merged.join("pareto.csv")).unwrap().1.len(), pa);
}

#[test]
fn the_papers_scaling_study_reproduces_the_original() {
    let spec = common::data("../../hwconfigs/sweeps/paper-scaling.toml");
    let sw = Sweep::from_file(&spec).unwrap();
    let dir = scratch("sweep", "scaling");
    sweep::run(&sw, &dir, None, &quiet).unwrap();
    let rows = results(&dir);
    assert_eq!(rows.len(), 4 * 8);
    let expect = common::read_csv("bitfusion/networks.csv");
    let names = [("alexnet_wrpn", "AlexNet-WRPN"), ("svhn", "SVHN"), ("resnet18_wrpn", "RESNET-18-WRPN"), ("lstm", "LSTM")];
    for (cols, config) in [("32", "bf_e_scaled1x_bw4096.ini"), ("256", "bf_e_scaled8x_bw4096.ini")] {
        for (ours, theirs) in names {
            let r = rows.iter().find(|r| r["array.cols"] == cols && r["workload"] == ours).unwrap();
            let e = expect.iter().find(|e| e["config"] == config && e["network"] == theirs).unwrap();
            assert_eq!(r["cycles"], e["cycles"], "{config} {theirs}");
        }
    }
}

#[test]
fn bad_specs_fail_before_running_and_bad_points_are_rows() {
    let dir = scratch("sweep", "bad");
    let run = |spec: &str| {
        let p = dir.join("s.toml");
        std::fs::write(&p, spec).unwrap();
        bitfusion(&["sweep", p.to_str().unwrap(), "--out", dir.join("o").to_str().unwrap()])
    };
    for (spec, msg) in [
        (SMALL.replace("\"array.rows\"", "\"array.rowz\""), "unknown field `rowz`"),
        (SMALL.replace("[8, 16]", "[]"), "axis 'array.rows' is empty"),
        (SMALL.replace("\"array.rows\" = [8, 16]", "\"memory.wbuf_bytes\" = [65536, 1000]"), "memory.wbuf_bytes = 1000 does not split"),
        (SMALL.replace("[\"native\", \"4x4\"]", "[\"4x40\"]"), "unsupported activation bit width 40"),
        (SMALL.replace("\"lenet5\"", "\"googlenet\""), "workload 'googlenet' is neither a built-in network nor a file"),
        (SMALL.replace("[[zip]]", "shard = 3\n[[zip]]"), "s.toml"),
    ] {
        let out = run(&spec);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{spec}");
        assert!(err.contains(msg), "expected '{msg}' in: {err}");
        assert_eq!(err.lines().filter(|l| l.starts_with("error:")).count(), 1, "{err}");
        assert!(!dir.join("o").join("results.csv").exists(), "nothing may run: {err}");
    }
    let out = bitfusion(&["sweep", "x.toml", "--out", "o", "--shard", "4/3"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--shard 4/3: expected i/n"));
    // A point whose buffers fit no tiling is a row with the reason.
    let spec = SMALL.replace("\"memory.obuf_bytes\" = [8192, 16384]", "\"memory.obuf_bytes\" = [64, 16384]");
    let out = run(&spec);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows = results(&dir.join("o"));
    let bad: Vec<&ResultRow> = rows.iter().filter(|r| r["status"] == "error").collect();
    assert!(!bad.is_empty());
    assert!(bad.iter().all(|r| r["reason"].contains("no tiling fits") && r["memory.obuf_bytes"] == "64"), "{bad:?}");
    // A results.csv of another sweep is not overwritten.
    let other = SMALL.replace("\"memory.dram_bits_per_cycle\" = [64, 192]", "\"clock.frequency_mhz\" = [500]");
    let out = run(&other);
    assert!(String::from_utf8_lossy(&out.stderr).contains("its columns are not this sweep's"));
}

#[test]
fn every_sweep_file_is_byte_identical_on_1_and_2_threads() {
    let spec_dir = scratch("sweep", "threads");
    let spec = spec_dir.join("spec.toml");
    std::fs::write(&spec, SMALL.replace("[\"lenet5\"]", "[\"lenet5\", \"mobilenet_v2_32\"]")).unwrap();
    let run = |threads: &str| {
        let out = spec_dir.join(format!("t{threads}"));
        let r = bitfusion(&["sweep", spec.to_str().unwrap(), "--out", out.to_str().unwrap(), "--threads", threads]);
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        out
    };
    let (one, two) = (run("1"), run("2"));
    for f in ["results.csv", "layers.csv", "pareto.csv", "points.csv"] {
        assert_eq!(std::fs::read(one.join(f)).unwrap(), std::fs::read(two.join(f)).unwrap(), "{f} differs between 1 and 2 threads");
    }
}
