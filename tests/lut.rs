//! Search spaces and lookup tables: enumeration, LUT builds, exactness against whole-network
//! simulation, provenance checks, corruption, resuming, and the comparison with APQ's published LUT.

mod common;

use common::{bitfusion, scratch};

use bitfusion_search::arch::Arch;
use bitfusion_search::lut::{self, BuildSpec, Lut, arch_keys, build_lut, enumerate, partial_path};
use bitfusion_search::space::Space;
use bitfusion_simulator::Objective;
use bitfusion_simulator::config::{CostModelName, load_hw};

/// A small space that builds in a moment: 2 stages, bits 4/8.
const SMALL: &str = r#"
name = "small"
input_size = 16
input_channels = 3
kernels = [3, 5]
expand_min = 2.0
expand_max = 3.0
channel_step = 8
bits = [4, 8]
[stem]
out_channels = 8
kernel = 3
stride = 1
bits = 8
[[stages]]
width = 16
stride = 2
depths = [1, 2]
[[stages]]
width = 24
stride = 2
depths = [1, 2]
[head]
feature_mix = 64
classes = 10
bits = 8
"#;

fn quiet(_: usize, _: usize) {}

#[test]
fn every_layer_of_random_architectures_is_enumerated() {
    for preset in ["apq", "apq-wide-bits", "micro"] {
        let space = Space::load(preset).unwrap();
        let keys = enumerate(&space);
        let mut seed = 42;
        for _ in 0..1000 {
            let a = Arch::random(&space, &mut seed);
            for k in arch_keys(&space, &a, 1) {
                assert!(keys.contains(&k), "{preset}: {} (outputs at {}) missing", k.apq_key(), k.out_bits);
            }
        }
    }
}

#[test]
fn a_built_lut_is_exact_checked_and_safe() {
    let dir = scratch("lut", "build");
    let space = Space::from_toml(SMALL, "small").unwrap();
    let hw = load_hw("bitfusion-isca2018", &[]).unwrap();
    let out = dir.join("small.lut");
    let spec = BuildSpec { space: &space, hw: &hw, model: CostModelName::Cycle, objective: Objective::Cycles, batch: 1 };
    let (built, s) = build_lut(&spec, &out, &quiet).unwrap();
    assert_eq!(s.entries, enumerate(&space).len());
    assert!(!partial_path(&out).exists());
    // Exact wherever the cost is additive: every architecture, simulated whole.
    let checks = lut::check(&built, 25, 7).unwrap();
    for c in &checks {
        assert!(c.latency_error() < 1e-12, "{c:?}");
        assert!(c.energy_error().unwrap() < 1e-9, "{c:?}");
    }
    // Load round-trips; the wrong hardware config or space is refused with the hash message.
    let loaded = Lut::load(&out).unwrap();
    assert_eq!(loaded, built);
    loaded.check_hw(&hw).unwrap();
    let other = load_hw("bitfusion-isca2018", &["memory.dram_bits_per_cycle=256".into()]).unwrap();
    let e = loaded.check_hw(&other).unwrap_err().0;
    assert!(e.starts_with("hardware config hash differs: the LUT was built for 'bitfusion-isca2018'"), "{e}");
    let e = loaded.check_space(&Space::load("micro").unwrap()).unwrap_err().0;
    assert!(e.contains("search space hash differs"), "{e}");
    // Truncated and edited files are detected.
    let text = std::fs::read_to_string(&out).unwrap();
    let cut = dir.join("cut.lut");
    std::fs::write(&cut, &text[..text.len() / 2]).unwrap();
    let e = Lut::load(&cut).unwrap_err().0;
    assert!(e.contains("not a complete LUT file (truncated or corrupted"), "{e}");
    let edited = dir.join("edited.lut");
    let i = text.find("\"latency_ms\":").unwrap() + 13;
    let mut t = text.clone();
    t.insert(i, '9');
    std::fs::write(&edited, t).unwrap();
    let e = Lut::load(&edited).unwrap_err().0;
    assert!(e.contains("checksum mismatch"), "{e}");
    // An interrupted build resumes from its partial file: keep half the entries there, rebuild.
    let mut half = built.clone();
    let keep: Vec<_> = half.entries.keys().copied().take(half.entries.len() / 2).collect();
    half.entries.retain(|k, _| keep.contains(k));
    half.save(&partial_path(&out)).unwrap();
    let (rebuilt, s) = build_lut(&spec, &out, &quiet).unwrap();
    assert_eq!((s.resumed, s.simulated), (keep.len(), built.entries.len() - keep.len()));
    assert_eq!(rebuilt, built);
}

#[test]
fn lut_commands_end_to_end() {
    let dir = scratch("lut", "cli");
    let space_file = dir.join("small.toml");
    std::fs::write(&space_file, SMALL).unwrap();
    let out = dir.join("small.lut");
    let o = bitfusion(&["lut", "build", "--space", space_file.to_str().unwrap(), "--hw", "bitfusion-isca2018", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let csv = dir.join("small.csv");
    let o = bitfusion(&["lut", "export", out.to_str().unwrap(), "--csv", csv.to_str().unwrap()]);
    assert!(o.status.success());
    let text = std::fs::read_to_string(&csv).unwrap();
    assert!(text.starts_with("kind,in_channels,out_channels,in_size,kernel,stride,pad,groups,w_bits,a_bits,out_bits,cycles,latency_ms,energy_mj\n"));
    let space = Space::from_toml(SMALL, "small").unwrap();
    let arch = Arch::random(&space, &mut 3).to_text();
    let o = bitfusion(&["lut", "query", out.to_str().unwrap(), "--arch", &arch, "--hw", "bitfusion-isca2018"]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && stdout.contains("total:") && stdout.contains("stem"), "{stdout}");
    let o = bitfusion(&["lut", "query", out.to_str().unwrap(), "--arch", &arch, "--hw", "bitfusion-8x8"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("hardware config hash differs"), "{e}");
    let o = bitfusion(&["lut", "query", out.to_str().unwrap(), "--arch", "small:k3-m16-pw4x4-dw4x4"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("1 stages given, the space has 2"));
    let o = bitfusion(&["lut", "check", out.to_str().unwrap(), "--samples", "5"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    assert!(String::from_utf8_lossy(&o.stdout).contains("largest relative error"));
    let o = bitfusion(&["lut", "build", "--space", "nope", "--out", out.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a preset space"));
    std::fs::write(&out, "{\"header\": 3}").unwrap();
    let o = bitfusion(&["lut", "export", out.to_str().unwrap(), "--csv", csv.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a complete LUT file"));
}

#[test]
fn reference_lut_matches_apqs_published_pointwise_entries() {
    let dir = scratch("lut", "apq");
    let space = Space::load("apq").unwrap();
    let hw = load_hw("bitfusion-isca2018", &[]).unwrap();
    let spec = BuildSpec { space: &space, hw: &hw, model: CostModelName::Reference, objective: Objective::Cycles, batch: 1 };
    let (ours, _) = build_lut(&spec, &dir.join("apq.lut"), &quiet).unwrap();
    let theirs = lut::read_apq_csv(&common::data("apq/bitfusion_lut_flat.csv")).unwrap();
    let [pw, dw] = lut::diff(&ours, &theirs);
    assert_eq!(pw.matched, pw.theirs, "every pointwise entry of theirs exists in ours");
    assert_eq!(pw.theirs, 3015);
    let median = lut::Diff::median(&pw.latency_ratios);
    assert!((median - 1.0).abs() <= 0.03, "median {median}");
    assert!(pw.within(0.01) >= 0.40, "{}", pw.within(0.01));
    // Depthwise: their treatment is unpublished; ours (groups ignored, like the original) is reported.
    assert_eq!(dw.matched, dw.theirs);
}

#[test]
fn space_and_diff_errors_are_one_line() {
    let dir = scratch("lut", "errors");
    let o = bitfusion(&["space", "nope"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("nope: no such file, and not a preset space (presets: apq, apq-wide-bits, micro)"), "{e}");
    let bad_space = dir.join("bad.toml");
    std::fs::write(&bad_space, SMALL.replace("kernels = [3, 5]", "kernels = [2]")).unwrap();
    let o = bitfusion(&["space", bad_space.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("kernels = [2]: give odd kernel sizes"));
    // A LUT to diff against a malformed table.
    let space = Space::from_toml(SMALL, "small").unwrap();
    let hw = load_hw("bitfusion-isca2018", &[]).unwrap();
    let out = dir.join("small.lut");
    let spec = BuildSpec { space: &space, hw: &hw, model: CostModelName::Reference, objective: Objective::Cycles, batch: 1 };
    build_lut(&spec, &out, &quiet).unwrap();
    let theirs = dir.join("theirs.csv");
    std::fs::write(&theirs, "kind,in_channels,out_channels\nconv,1,2\n").unwrap();
    let o = bitfusion(&["lut", "diff", out.to_str().unwrap(), theirs.to_str().unwrap()]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("theirs.csv:1: missing column 'input_size'"), "{e}");
    std::fs::write(&theirs, "kind,in_channels,out_channels,input_size,kernel_size,stride,padding,groups,w_bits,a_bits,latency_ms,energy_mJ\nconv,8,x,16,1,1,0,1,8,8,0.1,0.2\n").unwrap();
    let o = bitfusion(&["lut", "diff", out.to_str().unwrap(), theirs.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("theirs.csv:2: column 'out_channels': 'x' is not a number"));
}
