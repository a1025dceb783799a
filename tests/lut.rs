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
    let e = loaded.check_hw(&other).unwrap_err().to_string();
    assert!(e.starts_with("hardware config hash differs: the LUT was built for 'bitfusion-isca2018'"), "{e}");
    let e = loaded.check_space(&Space::load("micro").unwrap()).unwrap_err().to_string();
    assert!(e.contains("search space hash differs"), "{e}");
    // Truncated and edited files are detected.
    let text = std::fs::read_to_string(&out).unwrap();
    let cut = dir.join("cut.lut");
    std::fs::write(&cut, &text[..text.len() / 2]).unwrap();
    let e = Lut::load(&cut).unwrap_err().to_string();
    assert!(e.contains("not a complete LUT file (truncated or corrupted"), "{e}");
    let edited = dir.join("edited.lut");
    let i = text.find("\"latency_ms\":").unwrap() + 13;
    let mut t = text.clone();
    t.insert(i, '9');
    std::fs::write(&edited, t).unwrap();
    let e = Lut::load(&edited).unwrap_err().to_string();
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

/// The whole file is sealed: an edited header value is refused on load, by `lut query` and by
/// `search`, with the key named and both values; the embedded TOML is checked against its hash,
/// the seal itself against the file; a LUT of the previous format asks to be rebuilt.
#[test]
fn an_edited_header_is_refused_naming_the_key() {
    let dir = scratch("lut", "sealed");
    let space_file = dir.join("small.toml");
    std::fs::write(&space_file, SMALL).unwrap();
    let space = Space::from_toml(SMALL, "small").unwrap();
    let hw = load_hw("bitfusion-isca2018", &[]).unwrap();
    let out = dir.join("small.lut");
    let spec = BuildSpec { space: &space, hw: &hw, model: CostModelName::Cycle, objective: Objective::Cycles, batch: 1 };
    build_lut(&spec, &out, &quiet).unwrap();
    let text = std::fs::read_to_string(&out).unwrap();
    let edited = |name: &str, from: &str, to: &str| {
        // The first occurrence, in the header (the sealed values come after the entries).
        assert!(text.find(from).unwrap() < text.find("\"entries\"").unwrap(), "{from}");
        let path = dir.join(name);
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
        path
    };
    let load_err = |p: &std::path::Path| Lut::load(p).unwrap_err().to_string();
    let batch = edited("batch.lut", "\"batch\":1,", "\"batch\":16,");
    let e = load_err(&batch);
    assert!(e.ends_with("batch.lut: header key `batch` was edited (sealed value 1, file says 16); rebuild the LUT"), "{e}");
    let e = load_err(&edited("model.lut", "\"model\":\"cycle\"", "\"model\":\"reference\""));
    assert!(e.contains("header key `model` was edited (sealed value \"cycle\", file says \"reference\")"), "{e}");
    let e = load_err(&edited("version.lut", "\"program_version\":\"", "\"program_version\":\"9"));
    assert!(e.contains("header key `program_version` was edited"), "{e}");
    let e = load_err(&edited("format.lut", "\"format\":\"bitfusion-lut/2\"", "\"format\":\"bitfusion-lut/3\""));
    assert!(e.contains("header key `format` was edited (sealed value \"bitfusion-lut/2\", file says \"bitfusion-lut/3\")"), "{e}");
    // Inside the embedded hardware TOML: the TOML key is named.
    let e = load_err(&edited("rows.lut", "\\nrows = 16\\n", "\\nrows = 32\\n"));
    assert!(e.contains("header key `hw_toml.array.rows` was edited (sealed value 16, file says 32)"), "{e}");
    // The same values written differently: the TOML no longer matches its hash.
    let e = load_err(&edited("spacing.lut", "\\nrows = 16\\n", "\\nrows =  16\\n"));
    assert!(e.contains("the embedded hardware config does not match its hash"), "{e}");
    let e = load_err(&edited("space.lut", "\"classes\":10", "\"classes\":100"));
    assert!(e.contains("header key `space.head.classes` was edited (sealed value 10, file says 100)"), "{e}");
    let e = load_err(&edited("extra.lut", "\"objective\":", "\"note\":1,\"objective\":"));
    assert!(e.contains("header key `note` was edited (sealed value (none), file says 1)"), "{e}");
    // The seal's own hash.
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let sha = v["seal"]["sha256"].as_str().unwrap();
    let seal = dir.join("seal.lut");
    std::fs::write(&seal, text.replace(sha, &"0".repeat(64))).unwrap();
    let e = load_err(&seal);
    assert!(e.contains("the file does not match its seal"), "{e}");
    // The CLI refuses it on one line, with a non-zero exit.
    let arch = Arch::random(&space, &mut 3).to_text();
    let o = bitfusion(&["lut", "query", batch.to_str().unwrap(), "--arch", &arch]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && stderr.contains("header key `batch` was edited (sealed value 1, file says 16)"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let o = bitfusion(&[
        "search",
        "--space",
        space_file.to_str().unwrap(),
        "--lut",
        batch.to_str().unwrap(),
        "--predictor",
        dir.join("none.pred").to_str().unwrap(),
        "--latency-ms",
        "1",
        "--out",
        dir.join("search").to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && stderr.contains("header key `batch` was edited"), "{stderr}");
    // A LUT of the previous format (no seal, keys without im2col) asks for a rebuild.
    let mut old = v.clone();
    old["header"]["format"] = "bitfusion-lut/1".into();
    old.as_object_mut().unwrap().remove("seal");
    old["checksum"] = "0".repeat(64).into();
    let old_path = dir.join("old.lut");
    std::fs::write(&old_path, old.to_string()).unwrap();
    let e = load_err(&old_path);
    assert!(e.ends_with("old.lut: LUT format 'bitfusion-lut/1', this program reads 'bitfusion-lut/2': rebuild the LUT (bitfusion lut build)"), "{e}");
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
    assert!(text.starts_with("kind,in_channels,out_channels,in_size,kernel,stride,pad,groups,w_bits,a_bits,out_bits,im2col,cycles,latency_ms,energy_mj\n"));
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

/// Under the reference model the stem (the network's input layer) is lowered with im2col, in the
/// network and in its LUT entry alike, so a reference LUT is as exact as a cycle one; when sums do
/// differ, `lut check` names the architecture and the entry and says by how much.
#[test]
fn reference_lut_is_additive_and_check_says_what_differs() {
    let dir = scratch("lut", "reference-additive");
    let space = Space::from_toml(SMALL, "small").unwrap();
    let hw = load_hw("bitfusion-isca2018", &[]).unwrap();
    let out = dir.join("small-ref.lut");
    for model in [CostModelName::Reference, CostModelName::Cycle] {
        let spec = BuildSpec { space: &space, hw: &hw, model, objective: Objective::Cycles, batch: 1 };
        let (built, _) = build_lut(&spec, &out, &quiet).unwrap();
        for c in lut::check(&built, 25, 7).unwrap() {
            assert!(c.exact(1e-12) && c.cycles_diff() == 0 && c.layers.is_empty(), "{model:?}: {c:?}");
        }
    }
    // A LUT whose stem entry is 220 cycles short: the check fails and says where.
    let spec = BuildSpec { space: &space, hw: &hw, model: CostModelName::Reference, objective: Objective::Cycles, batch: 1 };
    let (mut built, _) = build_lut(&spec, &out, &quiet).unwrap();
    let stems: Vec<_> = built.entries.keys().filter(|k| k.im2col).copied().collect();
    assert_eq!(stems.len(), 2, "the stem, stored at either expand bits");
    for k in stems {
        built.entries.get_mut(&k).unwrap().cycles -= 220;
    }
    let short = dir.join("short.lut");
    built.save(&short).unwrap();
    let o = bitfusion(&["lut", "check", short.to_str().unwrap(), "--samples", "3"]);
    let (stdout, stderr) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(!o.status.success(), "{stdout}");
    assert!(stdout.contains("3 of 3 architectures differ from their whole-network simulation (reference model"), "{stdout}");
    assert!(stdout.contains("-220 cycles"), "{stdout}");
    assert!(stdout.contains("layer stem entry (3, 8, 16, 3, 1, 1, 1)-W8A8 (outputs at "), "{stdout}");
    assert!(stdout.contains(", im2col): LUT "), "{stdout}");
    assert!(stderr.contains("the LUT's sums differ from whole-network simulations for 3 of 3 architectures (first: layer stem of small:"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
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
