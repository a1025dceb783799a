//! Interop with APQ's and once-for-all's formats through the CLI and outside loaders: the LUT as
//! APQ's dict (its key set, `lut diff` against APQ's original dict equal to the diff against its
//! flat CSV), the LUT as OFA's YAML (loaded by PyYAML), architectures as APQ's `arch` and OFA's
//! dict, costed in Python by re-implementations of APQ's `LatencyPredictor.predict_lat` and OFA's
//! `predict_network_latency_given_config` and compared with the LUT, and the user errors.

mod common;

use bitfusion_search::arch::Arch;
use bitfusion_search::interop::apq;
use bitfusion_search::lut::{self, BuildSpec, Lut, build_lut};
use bitfusion_search::space::Space;
use bitfusion_simulator::Objective;
use bitfusion_simulator::config::{CostModelName, load_hw};
use common::{bitfusion, run_python, scratch};
use std::path::{Path, PathBuf};

/// The apq space's LUT under the reference model on the paper's config (built once per test).
fn apq_lut(dir: &Path) -> (PathBuf, Lut) {
    let space = Space::load("apq").unwrap();
    let hw = load_hw("bitfusion-isca2018", &[]).unwrap();
    let spec = BuildSpec { space: &space, hw: &hw, model: CostModelName::Reference, objective: Objective::Cycles, batch: 1 };
    let path = dir.join("apq.lut");
    let (lut, _) = build_lut(&spec, &path, &|_, _| {}).unwrap();
    (path, lut)
}

fn ok(o: &std::process::Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &std::process::Output) -> String {
    let e = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "expected a failure: {e}");
    assert_eq!(e.lines().count(), 1, "one line: {e}");
    e
}

/// `lut query`'s printed total latency (ms).
fn query_total(lut: &Path, arch: &str) -> f64 {
    let out = ok(&bitfusion(&["lut", "query", lut.to_str().unwrap(), "--arch", arch]));
    let line = out.lines().find(|l| l.starts_with("total: ")).unwrap_or_else(|| panic!("{out}"));
    line["total: ".len()..].split(' ').next().unwrap().parse().unwrap()
}

/// Seeded random architectures of the apq space, from `bitfusion space apq --random`.
fn random_archs(n: usize, seed: u64) -> Vec<String> {
    let out = ok(&bitfusion(&["space", "apq", "--random", &n.to_string(), "--seed", &seed.to_string()]));
    let archs: Vec<String> = out.lines().filter(|l| l.starts_with("apq:")).map(|l| l.split(' ').next().unwrap().to_string()).collect();
    assert_eq!(archs.len(), n, "{out}");
    archs
}

const CHECK_APQ_DICT: &str = r#"
import json, re, sys
d = json.load(open(sys.argv[1]))
key = re.compile(r"^\((\d+), (\d+), (\d+), (\d+), (\d+), (\d+), (\d+)\)-W(\d+)A(\d+)$")
assert set(d["head"]) == {"energy", "latency"} and set(d["tail"]) == {"energy", "latency"}
n = 0
for k, v in d.items():
    if k in ("head", "tail"):
        continue
    assert key.match(k), k
    assert set(v) == {"energy", "latency"}, (k, v)
    assert isinstance(v["latency"], float) and v["latency"] > 0 and isinstance(v["energy"], float) and v["energy"] > 0, (k, v)
    n += 1
print(n)
"#;

/// `make_divisible` as APQ and once-for-all both define it (the MobileNetV2 rounding of channel
/// widths to a multiple of `divisor`, never more than 10% below `v`): prepended to both snippets.
const MAKE_DIVISIBLE: &str = r#"
def make_divisible(v, divisor, min_value=None):
    if min_value is None:
        min_value = divisor
    x = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if x < 0.9 * v:
        x += divisor
    return x
"#;

/// APQ's `LatencyPredictor.predict_lat` (utils/latency_predictor.py @ 428190a), re-implemented:
/// its sizes and channel lists for the 224x224 space, its key strings, head + tail + 3 layers per
/// active block, for latency and energy. Prints `latency energy` per architecture file.
const APQ_PREDICT: &str = r#"
import json, sys
dic = json.load(open(sys.argv[1]))
sz_in = [224]
sz_out = [(224 + 1) // 2]
for i in range(6):
    sz_in.append(sz_out[-1])
    sz_out.append(sz_in[-1] if i in (3, 5) else (sz_in[-1] + 1) // 2)
cin_list = [16, 24, 40, 80, 96, 192]
cout_list = [24, 40, 80, 96, 192, 320]
inputs = [(sz_in[i], cin_list[i - 1]) for i in range(1, 7)]
outputs = [(sz_out[i], cout_list[i - 1]) for i in range(1, 7)]
for path in sys.argv[2:]:
    info1, info2 = json.load(open(path))
    assert info1["wid"] is None and len(info1["ks"]) == 21 and len(info1["d"]) == 6
    spec = dict(info1, **info2)
    total = {}
    for t in ("latency", "energy"):
        ans = dic["head"][t] + dic["tail"][t]
        for layer in range(21):
            input_sz, in_channels = inputs[layer // 4] if layer % 4 == 0 else inputs[layer // 4 + 1]
            output_sz, out_c = outputs[layer // 4]
            stride = 1 if input_sz == output_sz else 2
            mid_c = make_divisible(spec["e"][layer] * in_channels, 8)
            if layer % 4 < spec["d"][layer // 4]:
                ks = spec["ks"][layer]
                q_pw = (spec["pw_w_bits_setting"][layer], spec["pw_a_bits_setting"][layer])
                q_dw = (spec["dw_w_bits_setting"][layer], spec["dw_a_bits_setting"][layer])
                for tmp, q in (((in_channels, mid_c, input_sz, 1, 1, 0, 1), q_pw),
                               ((mid_c, mid_c, input_sz, ks, stride, ks // 2, mid_c), q_dw),
                               ((mid_c, out_c, input_sz // stride, 1, 1, 0, 1), q_pw)):
                    ans += dic["{}-W{}A{}".format(tmp, q[0], q[1])][t]
        total[t] = ans
    print(repr(total["latency"]), repr(total["energy"]))
"#;

#[test]
fn apq_dict_covers_apqs_keys_diffs_like_the_csv_and_prices_apq_archs_like_the_lut() {
    let dir = scratch("interop", "apq");
    let (lut_path, lut) = apq_lut(&dir);
    let dict = dir.join("apq.dict");
    let o = bitfusion(&["lut", "export", lut_path.to_str().unwrap(), "--format", "apq", "--out", dict.to_str().unwrap()]);
    assert!(o.status.success() && String::from_utf8_lossy(&o.stderr).contains("7015 APQ keys plus head and tail"), "{}", String::from_utf8_lossy(&o.stderr));

    // Python's json loads it; every key is APQ's tuple format with {energy, latency}.
    let n: usize = run_python(CHECK_APQ_DICT, &[&dict]).trim().parse().unwrap();
    assert_eq!(n, lut::apq_view(&lut).len());
    // Every key of APQ's original table is one of ours (its 3,015 pointwise keys and the depthwise).
    let original = common::data("apq/BitFusion_new.b1.dict");
    let ours: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&std::fs::read_to_string(&dict).unwrap()).unwrap();
    let theirs = apq::read_theirs(&original).unwrap();
    let pointwise: Vec<_> = theirs.iter().filter(|t| !t.depthwise).collect();
    assert_eq!(pointwise.len(), 3015);
    for t in &theirs {
        assert!(ours.contains_key(&t.key), "{} missing", t.key);
    }
    // The original's keys are exactly apq_key's text (no re-spacing was needed).
    let raw: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&std::fs::read_to_string(&original).unwrap()).unwrap();
    assert!(theirs.iter().all(|t| raw.contains_key(&t.key)));

    // The dict and the derived CSV are read to the same entries and diff alike.
    let csv = common::data("apq/bitfusion_lut_flat.csv");
    let from_csv = lut::read_apq_csv(&csv).unwrap();
    let sorted = |mut v: Vec<lut::Theirs>| {
        v.sort_by(|a, b| a.key.cmp(&b.key));
        v
    };
    assert_eq!(sorted(theirs.clone()), sorted(apq::read_theirs(&csv).unwrap()));
    assert_eq!(sorted(theirs.clone()), sorted(from_csv.clone()));
    let (a, b) = (lut::diff(&lut, &theirs), lut::diff(&lut, &from_csv));
    for (x, y) in a.iter().zip(&b) {
        assert_eq!((x.theirs, x.matched), (y.theirs, y.matched));
        assert_eq!(lut::Diff::median(&x.latency_ratios), lut::Diff::median(&y.latency_ratios));
        assert_eq!(lut::Diff::median(&x.energy_ratios), lut::Diff::median(&y.energy_ratios));
    }
    let diff_of = |theirs: &Path| {
        let out = ok(&bitfusion(&["lut", "diff", lut_path.to_str().unwrap(), theirs.to_str().unwrap()]));
        out.lines().skip(1).map(str::to_string).collect::<Vec<_>>()
    };
    let by_dict = diff_of(&original);
    assert_eq!(by_dict, diff_of(&csv));
    assert!(by_dict[0].starts_with("pointwise: 3015 of their 3015 entries found in ours; latency ours/theirs median 1.000"), "{by_dict:?}");
    // Our own export diffs against its LUT as equal: every entry found, every ratio 1.
    let own = diff_of(&dict);
    assert_eq!(own.len(), 2, "{own:?}");
    for line in &own {
        assert!(line.contains("latency ours/theirs median 1.000, 100% within 1%") && line.contains("energy median 1.000"), "{line}");
        let (found, of) = line.split_once(": ").unwrap().1.split_once(" of their ").unwrap();
        assert_eq!(found, of.split_whitespace().next().unwrap(), "{line}");
    }

    // APQ's own key derivation over an exported `arch` gives the LUT's totals.
    let space = Space::load("apq").unwrap();
    let archs = random_archs(6, 17);
    let files: Vec<PathBuf> = archs
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let f = dir.join(format!("arch{i}"));
            ok(&bitfusion(&["arch", "export", a, "--space", "apq", "--format", "apq", "--out", f.to_str().unwrap()]));
            // ... and imports back to the same architecture.
            assert_eq!(ok(&bitfusion(&["arch", "import", f.to_str().unwrap(), "--space", "apq"])).trim(), a);
            f
        })
        .collect();
    let mut args: Vec<&Path> = vec![&dict];
    args.extend(files.iter().map(PathBuf::as_path));
    let priced = run_python(&format!("{MAKE_DIVISIBLE}{APQ_PREDICT}"), &args);
    let lines: Vec<&str> = priced.lines().collect();
    assert_eq!(lines.len(), archs.len());
    for (a, line) in archs.iter().zip(lines) {
        let (lat, en) = line.split_once(' ').unwrap();
        let (lat, en): (f64, f64) = (lat.parse().unwrap(), en.parse().unwrap());
        let (_, want_lat, want_en) = lut.cost(&Arch::parse(a, &space).unwrap()).unwrap();
        assert!(common::rel(lat, want_lat) < 1e-12, "{a}: APQ's sum {lat} ms, LUT {want_lat} ms");
        assert!(common::rel(en, want_en.unwrap()) < 1e-12, "{a}: APQ's sum {en} mJ, LUT {want_en:?} mJ");
        assert!((lat - query_total(&lut_path, a)).abs() <= 5e-7, "{a}: lut query differs");
    }
}

/// OFA's ProxylessNAS table lookup (`predict_network_latency_given_config`'s order: Conv, blocks,
/// Conv_1, Logits), re-implemented over our exported `{ks, e, d, r}` dict, with the widths,
/// strides and slot counts of the space given as JSON (OFA's net config carries them). Checks the
/// YAML's structure on the way and prints the latency and the key count.
const OFA_PREDICT: &str = r#"
import json, re, sys, yaml
t = yaml.safe_load(open(sys.argv[1]))
space = json.loads(sys.argv[2])
arch = json.load(open(sys.argv[3]))
shape = r"\d+x\d+x\d+"
kinds = [re.compile(p) for p in (
    r"^Conv-input:%s-output:%s$" % (shape, shape),
    r"^expanded_conv-input:%s-output:%s-expand:\d+-kernel:\d+-stride:\d+-idskip:[01]$" % (shape, shape),
    r"^Conv_1-input:%s-output:%s$" % (shape, shape),
    r"^Logits-input:%s-output:\d+$" % shape)]
for k, v in t.items():
    assert any(p.match(k) for p in kinds), k
    assert set(v) == {"count", "mean", "std"} and v["count"] == 1 and v["std"] == 0.0 and v["mean"] > 0, (k, v)
r = arch["r"][0]
fsize = (r + 1) // 2
lat = t["Conv-input:%dx%dx3-output:%dx%dx%d" % (r, r, fsize, fsize, space["stem"])]["mean"]
c = space["stem"]
fb = "expanded_conv-input:%dx%dx%d-output:%dx%dx%d-expand:%d-kernel:3-stride:1-idskip:0" % (fsize, fsize, c, fsize, fsize, space["first"], c)
lat += t[fb]["mean"]
c = space["first"]
slot = 0
for width, stride, slots, d in zip(space["widths"], space["strides"], space["slots"], arch["d"]):
    for i in range(slots):
        if i < d:
            s = stride if i == 0 else 1
            mid = make_divisible(round(c * arch["e"][slot]), 8)
            out_fz = int((fsize - 1) / s + 1)
            idskip = 1 if s == 1 and c == width else 0
            key = "expanded_conv-input:%dx%dx%d-output:%dx%dx%d-expand:%d-kernel:%d-stride:%d-idskip:%d" % (
                fsize, fsize, c, out_fz, out_fz, width, mid, arch["ks"][slot], s, idskip)
            lat += t[key]["mean"]
            fsize, c = out_fz, width
        slot += 1
lat += t["Conv_1-input:%dx%dx%d-output:%dx%dx%d" % (fsize, fsize, c, fsize, fsize, space["mix"])]["mean"]
lat += t["Logits-input:%dx%dx%d-output:%d" % (fsize, fsize, space["mix"], space["classes"])]["mean"]
print(repr(lat), len(t))
"#;

#[test]
fn ofa_yaml_loads_in_pyyaml_and_prices_ofa_archs_like_the_lut() {
    let dir = scratch("interop", "ofa");
    let (lut_path, lut) = apq_lut(&dir);
    let space = Space::load("apq").unwrap();
    let constants = serde_json::json!({
        "stem": space.stem.out_channels,
        "first": space.first_block.as_ref().unwrap().out_channels,
        "widths": space.stages.iter().map(|s| s.width).collect::<Vec<_>>(),
        "strides": space.stages.iter().map(|s| s.stride).collect::<Vec<_>>(),
        "slots": space.stages.iter().map(|s| s.depths.iter().max().copied().unwrap()).collect::<Vec<_>>(),
        "mix": space.head.feature_mix,
        "classes": space.head.classes,
    })
    .to_string();
    for (bits, (w, a)) in [("8,8", (8, 8)), ("6,8", (6, 8))] {
        // --out a directory: OFA's file name.
        let out = dir.join(format!("w{w}a{a}"));
        std::fs::create_dir_all(&out).unwrap();
        let o = bitfusion(&["lut", "export", lut_path.to_str().unwrap(), "--format", "ofa", "--bits", bits, "--out", out.to_str().unwrap()]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let yaml = out.join("224_lookup_table.yaml");
        assert!(yaml.exists());
        // Keys: stem, first block, Conv_1, Logits, and per slot its distinct (middle width, kernel) shapes.
        let mut shapes = std::collections::BTreeSet::new();
        for sl in space.slots() {
            for m in &sl.mids {
                for k in &space.kernels {
                    shapes.insert((sl.in_channels, sl.in_size, sl.stride, sl.out_channels, *m, *k));
                }
            }
        }
        for (i, a_text) in random_archs(4, 23 + w as u64).iter().enumerate() {
            // Every searchable layer at the table's bits.
            let mut arch = Arch::parse(a_text, &space).unwrap();
            for b in arch.stages.iter_mut().flatten() {
                (b.pw_w, b.pw_a, b.dw_w, b.dw_a) = (w, a, w, a);
            }
            let f = dir.join(format!("ofa{w}{a}-{i}.json"));
            ok(&bitfusion(&["arch", "export", &arch.to_text(), "--space", "apq", "--format", "ofa", "--out", f.to_str().unwrap()]));
            let printed = run_python(&format!("{MAKE_DIVISIBLE}{OFA_PREDICT}"), &[yaml.to_str().unwrap(), &constants, f.to_str().unwrap()]);
            let (lat, n) = printed.trim().split_once(' ').unwrap();
            assert_eq!(n.parse::<usize>().unwrap(), 4 + shapes.len());
            let lat: f64 = lat.parse().unwrap();
            let (_, want, _) = lut.cost(&arch).unwrap();
            assert!(common::rel(lat, want) < 1e-12, "W{w}A{a} {}: OFA's sum {lat} ms, LUT {want} ms", arch.to_text());
            assert!((lat - query_total(&lut_path, &arch.to_text())).abs() <= 5e-7);
        }
    }
}

#[test]
fn lut_export_is_atomic_and_keeps_the_csv_alias() {
    let dir = scratch("interop", "csv");
    let (lut_path, lut) = apq_lut(&dir);
    let (a, b) = (dir.join("a.csv"), dir.join("b.csv"));
    ok(&bitfusion(&["lut", "export", lut_path.to_str().unwrap(), "--csv", a.to_str().unwrap()]));
    ok(&bitfusion(&["lut", "export", lut_path.to_str().unwrap(), "--format", "csv", "--out", b.to_str().unwrap()]));
    let text = std::fs::read_to_string(&a).unwrap();
    assert_eq!(text, std::fs::read_to_string(&b).unwrap());
    assert_eq!(text, lut::export_csv(&lut));
    // An OFA table to a file name; no temporary file is left beside it.
    let f = dir.join("table.yaml");
    ok(&bitfusion(&["lut", "export", lut_path.to_str().unwrap(), "--format", "ofa", "--out", f.to_str().unwrap()]));
    let names: Vec<String> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(names.iter().all(|n| ["apq.lut", "a.csv", "b.csv", "table.yaml"].contains(&n.as_str())), "{names:?}");
}

#[test]
fn interop_user_errors_are_one_line() {
    let dir = scratch("interop", "errors");
    let (lut_path, _) = apq_lut(&dir);
    let l = lut_path.to_str().unwrap();
    let out = dir.join("x").to_str().unwrap().to_string();
    let e = err(&bitfusion(&["lut", "export", l, "--format", "yaml", "--out", &out]));
    assert!(e.contains("LUT export: unknown format 'yaml' (expected one of: csv, apq, ofa)"), "{e}");
    let e = err(&bitfusion(&["lut", "export", l, "--format", "apq"]));
    assert!(e.contains("--out"), "{e}");
    let e = err(&bitfusion(&["lut", "export", l, "--format", "ofa", "--bits", "5,5", "--out", &out]));
    assert!(e.contains("--bits 5,5: 5 bits is not a choice of space 'apq' [4, 6, 8]"), "{e}");
    let e = err(&bitfusion(&["lut", "export", l, "--format", "apq", "--out", "/nonexistent/dir/x.dict"]));
    assert!(e.contains("cannot write /nonexistent/dir/x.dict"), "{e}");
    // Diff against a broken dict, an unreadable file.
    let bad = dir.join("bad.dict");
    std::fs::write(&bad, "{\"(1, 2, 3)-W4A4\": {\"latency\": 1, \"energy\": 2}}").unwrap();
    let e = err(&bitfusion(&["lut", "diff", l, bad.to_str().unwrap()]));
    assert!(e.contains("bad.dict: not an APQ LUT dict: key '(1, 2, 3)-W4A4' is not"), "{e}");
    std::fs::write(&bad, "{\"head\": ").unwrap();
    let e = err(&bitfusion(&["lut", "diff", l, bad.to_str().unwrap()]));
    assert!(e.contains("bad.dict: not an APQ LUT dict: EOF while parsing"), "{e}");
    let e = err(&bitfusion(&["lut", "diff", l, dir.join("missing.dict").to_str().unwrap()]));
    assert!(e.contains("missing.dict: cannot read: "), "{e}");
    // Architectures.
    let arch = random_archs(1, 1).remove(0);
    let e = err(&bitfusion(&["arch", "export", &arch, "--space", "apq", "--format", "onnx"]));
    assert!(e.contains("architecture: unknown format 'onnx' (expected one of: apq, ofa)"), "{e}");
    let e = err(&bitfusion(&["arch", "export", &arch, "--space", "micro", "--format", "apq"]));
    assert!(e.contains("the architecture is of space 'apq', not 'micro'"), "{e}");
    std::fs::write(&bad, "[{\"ks\": [3]}]").unwrap();
    let e = err(&bitfusion(&["arch", "import", bad.to_str().unwrap(), "--space", "apq"]));
    assert!(e.contains("bad.dict: no list 'e'"), "{e}");
    let e = err(&bitfusion(&["arch", "import", dir.join("missing").to_str().unwrap(), "--space", "apq"]));
    assert!(e.contains("cannot read"), "{e}");
    // A best.json is an architecture input.
    let best = dir.join("best.json");
    std::fs::write(&best, serde_json::json!({"arch": arch, "latency_ms": 1.0}).to_string()).unwrap();
    let from_best = ok(&bitfusion(&["arch", "export", best.to_str().unwrap(), "--space", "apq", "--format", "ofa"]));
    assert_eq!(from_best, ok(&bitfusion(&["arch", "export", &arch, "--space", "apq", "--format", "ofa"])));
}
