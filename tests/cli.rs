//! The `bitfusion` binary end to end: outputs, and one-line errors with a
//! non-zero exit for every kind of bad input.

mod common;

use common::{bitfusion, scratch};
use std::path::Path;

/// Run, expect failure, and return the single error line.
fn error_of(args: &[&str]) -> String {
    let out = bitfusion(args);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "{args:?} should fail; stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{args:?}: expected one error line, got: {stderr}");
    errors[0].to_string()
}

fn hw_with(dir: &Path, from: &str, to: &str) -> String {
    let text = std::fs::read_to_string(common::data("../../hwconfigs/bitfusion-isca2018.toml")).unwrap();
    assert!(text.contains(from), "the config has no '{from}'");
    let p = dir.join("hw.toml");
    std::fs::write(&p, text.replacen(from, to, 1)).unwrap();
    p.display().to_string()
}

const TOPOLOGY: &str = "name,kind,batch,in_channels,out_channels,in_h,in_w,kernel,stride,pad,groups,w_bits,a_bits,im2col
conv1,conv,1,3,32,32,32,3,1,1,1,8,8,
conv2,conv,1,32,64,32,32,3,2,1,1,4,4,
fc,fc,1,16384,10,1,1,1,1,0,1,8,8,
";

/// The edge and cloud configs simulate a network and build a LUT at their own batch.
#[test]
fn edge_and_cloud_configs_simulate_and_build_at_their_batch() {
    let d = scratch("cli", "edge-cloud");
    for (hw, batch) in [("bitfusion-edge", 1), ("bitfusion-cloud", 16)] {
        let out = bitfusion(&["simulate", "--hw", hw, "--network", "lenet5"]);
        assert!(out.status.success(), "{hw}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("hardware: {hw}")));
        let lut = d.join(format!("{hw}.lut"));
        let space = d.join("tiny.toml");
        std::fs::write(&space, bitfusion_search::space::TINY_SPACE).unwrap();
        let out = bitfusion(&["lut", "build", "--space", space.to_str().unwrap(), "--hw", hw, "--out", lut.to_str().unwrap()]);
        assert!(out.status.success(), "{hw}: {}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&lut).unwrap()).unwrap();
        assert_eq!(v["header"]["batch"], batch, "{hw}");
    }
}

#[test]
fn simulate_writes_csv_and_json_matching_the_library() {
    let d = scratch("cli", "ok");
    let topo = d.join("t.csv");
    std::fs::write(&topo, TOPOLOGY).unwrap();
    let csv_out = d.join("out.csv");
    let out = bitfusion(&["simulate", "--hw", "bitfusion-isca2018", "--layers", topo.to_str().unwrap(), "--out", csv_out.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&csv_out).unwrap();
    let header = text.lines().next().unwrap();
    for col in [
        "name", "cycles", "compute_cycles", "stall_cycles", "latency_ms", "dram_read_bits", "dram_write_bits", "wbuf_read_bits",
        "wbuf_write_bits", "ibuf_read_bits", "ibuf_write_bits", "obuf_read_bits", "obuf_write_bits", "energy_core_nj",
        "energy_wbuf_nj", "energy_ibuf_nj", "energy_obuf_nj", "energy_dram_nj", "energy_total_nj",
    ] {
        assert!(header.split(',').any(|h| h == col), "missing column {col}");
    }
    assert_eq!(text.lines().count(), 5);
    // The same numbers as the library gives.
    let hw = bitfusion_simulator::config::load_hw("bitfusion-isca2018", &[]).unwrap();
    let layers = bitfusion_simulator::workload::parse_topology(TOPOLOGY, "t").unwrap();
    let report = bitfusion_simulator::simulate_layers(bitfusion_simulator::build(&hw, None, Default::default()).as_ref(), &layers).unwrap();
    assert_eq!(text, bitfusion_simulator::report::to_csv(&report));

    let json_out = d.join("out.json");
    let out = bitfusion(&["simulate", "--network", "lenet5", "--batch", "1", "--w-bits", "4", "--a-bits", "4", "--out", json_out.to_str().unwrap()]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json_out).unwrap()).unwrap();
    assert_eq!(v["layers"].as_array().unwrap().len(), 4);
    assert_eq!(v["model"], "cycle");

    let out = bitfusion(&["simulate", "--network", "rnn", "--set", "array.rows=32"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("total"));
}

#[test]
fn bad_hardware_configs_fail_with_one_line() {
    let d = scratch("cli", "hw");
    let e = error_of(&["simulate", "--network", "rnn", "--hw", &hw_with(&d, "rows = 16", "rows = 0")]);
    assert!(e.contains("array.rows = 0 is out of range (allowed 1..=4096)"), "{e}");
    assert!(e.contains("hw.toml"), "names the file: {e}");
    let e = error_of(&["simulate", "--network", "rnn", "--hw", &hw_with(&d, "rows = 16", "rows = 16\nbanks = 3")]);
    assert!(e.contains("unknown field `banks`"), "{e}");
    let e = error_of(&["simulate", "--network", "rnn", "--hw", &hw_with(&d, "[array]", "[array")]);
    assert!(e.contains("hw.toml:6:"), "line and column: {e}");
    let e = error_of(&["simulate", "--network", "rnn", "--hw", &hw_with(&d, "wbuf_bytes = 65536", "wbuf_bytes = 65000")]);
    assert!(e.contains("memory.wbuf_bytes = 65000 does not split into 512 banks"), "{e}");
    let e = error_of(&["simulate", "--network", "rnn", "--hw", &hw_with(&d, "brick_bits = 2", "brick_bits = 3")]);
    assert!(e.contains("array.brick_bits = 3 must be a power of two"), "{e}");
    let e = error_of(&["simulate", "--network", "rnn", "--set", "memory.obuf_bytes=-1"]);
    assert!(e.contains("memory.obuf_bytes = -1 is out of range"), "{e}");
    let e = error_of(&["simulate", "--network", "rnn", "--set", "array.colz=3"]);
    assert!(e.contains("--set array.colz=3") && e.contains("unknown field `colz`"), "{e}");
    let e = error_of(&["simulate", "--network", "rnn", "--hw", d.join("missing.toml").to_str().unwrap()]);
    assert!(e.contains("missing.toml: no such file"), "{e}");
}

#[test]
fn bad_workloads_fail_with_one_line() {
    let d = scratch("cli", "wl");
    let topo = d.join("t.csv");
    std::fs::write(&topo, TOPOLOGY.replace("conv2,conv,1,32,64,32,32,3,2", "conv2,conv,1,32,64,32,32,3,two")).unwrap();
    let e = error_of(&["simulate", "--layers", topo.to_str().unwrap()]);
    assert!(e.contains("t.csv:3: column 'stride': expected a non-negative integer, got 'two'"), "{e}");
    std::fs::write(&topo, TOPOLOGY.replace("fc,fc,1,16384,10,1,1,1,1,0,1,8,8,", "fc,fc,1,16384,10,1,1")).unwrap();
    let e = error_of(&["simulate", "--layers", topo.to_str().unwrap()]);
    assert!(e.contains("t.csv:4: malformed CSV: expected 14 fields, found 7"), "{e}");
    std::fs::write(&topo, TOPOLOGY.replace("conv1,conv,1,3,32,32,32,3,1,1,1,8,8,", "conv1,conv,1,3,32,32,32,3,1,1,1,8,0,")).unwrap();
    let e = error_of(&["simulate", "--layers", topo.to_str().unwrap()]);
    assert!(e.contains("t.csv:2: column 'a_bits': unsupported bit width 0"), "{e}");
    let e = error_of(&["simulate", "--network", "lenet5", "--model", "reference", "--w-bits", "16"]);
    assert!(e.contains("16-bit weights are wider than array.fusion_bits = 8"), "{e}");
    let e = error_of(&["simulate", "--network", "lenet5", "--a-bits", "64"]);
    assert!(e.contains("--a-bits: unsupported bit width 64"), "{e}");
    let e = error_of(&["simulate", "--network", "googlenet"]);
    assert!(e.contains("unknown network 'googlenet'"), "{e}");
    let e = error_of(&["simulate", "--layers", d.join("none.csv").to_str().unwrap()]);
    assert!(e.contains("none.csv: cannot read workload file"), "{e}");
    let e = error_of(&["simulate", "--network", "rnn", "--model", "magic"]);
    assert!(e.contains("--model: unknown cost model 'magic'"), "{e}");
    let e = error_of(&["simulate", "--network", "rnn", "--out", d.join("x.txt").to_str().unwrap()]);
    assert!(e.contains("must end in .csv or .json"), "{e}");
    let e = error_of(&["simulate", "--network", "vgg7", "--model", "reference", "--set", "memory.ibuf_bytes=64", "--set", "memory.wbuf_bytes=2048"]);
    assert!(e.contains("no tiling fits"), "{e}");
}

#[test]
fn networks_lists_and_exports() {
    let out = bitfusion(&["networks"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for n in bitfusion_simulator::networks::network_names() {
        assert!(text.contains(n), "{n}");
    }
    let out = bitfusion(&["networks", "alexnet"]);
    let csv = String::from_utf8_lossy(&out.stdout);
    let layers = bitfusion_simulator::workload::parse_topology(&csv, "alexnet").unwrap();
    assert_eq!(layers, bitfusion_simulator::networks::network("alexnet").unwrap().layers());
}

#[test]
fn validate_commands_exit_zero_only_when_everything_matches() {
    let out = bitfusion(&["validate", "fusion-unit", common::data("rtl/fusion_unit_vectors.csv").to_str().unwrap()]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("18341 cases, 0 mismatches"));
    let out = bitfusion(&["validate", "array-timing", common::data("rtl/array_timing.csv").to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("hazards recognised (not computed): 26"));
    // A corrupted vector file: runs, reports the mismatch, exits 1.
    let d = scratch("cli", "validate");
    let text = std::fs::read_to_string(common::data("rtl/fusion_unit_vectors.csv")).unwrap();
    let bad = d.join("v.csv");
    std::fs::write(&bad, text.replacen(",64,64,1", ",65,64,1", 1)).unwrap();
    let out = bitfusion(&["validate", "fusion-unit", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("output 64, RTL 65"));
    let e = error_of(&["validate", "array-timing", d.join("missing.csv").to_str().unwrap()]);
    assert!(e.contains("cannot read"), "{e}");
    std::fs::write(&bad, "test,N\nx,2\n").unwrap();
    let e = error_of(&["validate", "array-timing", bad.to_str().unwrap()]);
    assert!(e.contains("v.csv:1: missing column 'M'"), "{e}");
}

#[test]
fn detailed_mode_and_trace() {
    let d = scratch("cli", "detailed");
    let small = ["--set", "array.rows=4", "--set", "array.cols=4", "--set", "memory.wbuf_bytes=4096"];
    let trace = d.join("t.json");
    let mut args = vec!["simulate", "--network", "lenet5", "--batch", "1", "--detailed", "--trace", trace.to_str().unwrap()];
    args.extend(small);
    let out = bitfusion(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("all layers agree with the fast engine and the direct convolution"), "{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&trace).unwrap()).unwrap();
    let events = doc["traceEvents"].as_array().unwrap();
    assert!(events.iter().any(|e| e["cat"] == "compute" && e["ph"] == "X"));
    assert!(events.iter().any(|e| e["cat"] == "dma" && e["name"] == "load weights"));
    // Given operands for a one-layer workload, and the output written out.
    let topo = d.join("one.csv");
    std::fs::write(&topo, "name,kind,batch,in_channels,out_channels,in_h,in_w,kernel,stride,pad,groups,w_bits,a_bits,im2col\nc,conv,1,1,2,2,2,1,1,0,1,4,4,\n").unwrap();
    let ops = d.join("ops.json");
    std::fs::write(&ops, r#"{"inputs": [1, 2, 3, -4], "weights": [2, -1]}"#).unwrap();
    let outputs = d.join("outs.json");
    let mut args = vec!["simulate", "--layers", topo.to_str().unwrap(), "--detailed", "--operands", ops.to_str().unwrap(), "--outputs", outputs.to_str().unwrap()];
    args.extend(small);
    let out = bitfusion(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&outputs).unwrap()).unwrap();
    assert_eq!(v[0]["values"], serde_json::json!([2, -1, 4, -2, 6, -3, -8, 4]));
    std::fs::write(&ops, r#"{"inputs": [1, 2, 3], "weights": [2, -1]}"#).unwrap();
    let mut args = vec!["simulate", "--layers", topo.to_str().unwrap(), "--detailed", "--operands", ops.to_str().unwrap()];
    args.extend(small);
    let e = error_of(&args);
    assert!(e.contains("ops.json: inputs has 3 values, the layer needs 4"), "{e}");
    std::fs::write(&ops, r#"{"inputs": [1, 2, 3, 99], "weights": [2, -1]}"#).unwrap();
    let e = error_of(&args);
    assert!(e.contains("inputs[3] = 99 is outside the 4-bit signed range -8..=7"), "{e}");
    // Errors: the reference model has no detailed mode; too large a run; a bad objective.
    let e = error_of(&["simulate", "--network", "rnn", "--model", "reference", "--detailed"]);
    assert!(e.contains("--detailed and --trace need the cycle model"), "{e}");
    let e = error_of(&["simulate", "--network", "alexnet", "--detailed"]);
    assert!(e.contains("detailed mode: run too large"), "{e}");
    let e = error_of(&["simulate", "--network", "rnn", "--objective", "speed"]);
    assert!(e.contains("--objective: unknown objective 'speed'"), "{e}");
}

#[test]
fn cycle_model_columns_and_errors() {
    let d = scratch("cli", "cycle");
    let out_csv = d.join("o.csv");
    let out = bitfusion(&["simulate", "--network", "mobilenet_v2_32", "--objective", "edp", "--out", out_csv.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&out_csv).unwrap();
    let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
    for col in ["utilization", "stall_dram_read_cycles", "stall_dram_write_cycles", "fill_drain_cycles", "leakage_nj", "area_mm2"] {
        assert!(header.contains(&col), "missing {col}");
    }
    // Stall columns add up to the stall cycles on every row.
    let mut rdr = csv::Reader::from_reader(text.as_bytes());
    let h = rdr.headers().unwrap().clone();
    let col = |name: &str| h.iter().position(|x| x == name).unwrap();
    for r in rdr.records() {
        let r = r.unwrap();
        let n = |c: &str| r[col(c)].parse::<u64>().unwrap();
        assert_eq!(n("stall_cycles"), n("stall_dram_read_cycles") + n("stall_dram_write_cycles") + n("fill_drain_cycles"), "{:?}", r);
        assert_eq!(n("cycles"), n("compute_cycles") + n("stall_cycles"));
    }
    let e = error_of(&["simulate", "--network", "lenet5", "--a-bits", "32"]);
    assert!(e.contains("--a-bits: unsupported bit width 32"), "{e}");
    let e = error_of(&["simulate", "--network", "vgg7", "--set", "memory.obuf_bytes=128"]);
    assert!(e.contains("cycle model: no tiling fits"), "{e}");
}
