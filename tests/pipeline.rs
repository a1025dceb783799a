//! The search front end through the CLI, end to end on a toy space and toy images written by the
//! test: supernet training (interrupted and resumed), pair sampling (resumed), predictors with
//! transfer, LUT, search with baselines and the Pareto front, plots; and the one-line errors.

mod common;

use common::{bitfusion, scratch};

use bitfusion_models::train::toy;

fn ok(args: &[&str]) -> String {
    let o = bitfusion(args);
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "bitfusion {}: {text}", args.join(" "));
    text
}

fn fails(args: &[&str]) -> String {
    let o = bitfusion(args);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!o.status.success(), "bitfusion {} should fail", args.join(" "));
    assert!(err.starts_with("error: ") && err.trim_end().lines().count() == 1, "not a one-line error: {err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

#[test]
fn train_sample_predict_search_and_plot_through_the_cli() {
    let d = scratch("pipeline", "e2e");
    let data = d.join("data");
    toy::data(&data, 400, 100);
    let space = d.join("toy.toml");
    std::fs::write(&space, toy::SPACE).unwrap();
    let (space, data) = (space.to_str().unwrap(), data.to_str().unwrap());
    let ck = d.join("toy.ckpt");
    let ck = ck.to_str().unwrap();
    let train = |extra: &[&str]| {
        let mut a = vec!["supernet", "train", "--space", space, "--data", data, "--valid", "80", "--out", ck, "--epochs", "2,1,0,1,1", "--batch", "32"];
        a.extend_from_slice(&["--shrink-images", "128", "--quant-images", "96", "--calibration-images", "64", "--eval-images", "0"]);
        a.extend_from_slice(extra);
        ok(&a)
    };
    let first = train(&["--stop-after", "3"]);
    assert!(first.contains("run the same command again to resume"), "{first}");
    let done = train(&[]);
    assert!(done.contains("training complete: full network test accuracy"), "{done}");
    // Pairs, resumed: 12 then 16 fp32 pairs; 12 quantized pairs.
    let fp = d.join("fp.jsonl");
    let q = d.join("q.jsonl");
    let sample = |n: &str, out: &std::path::Path, extra: &[&str]| {
        let mut a = vec!["supernet", "sample", "--ckpt", ck, "--data", data, "--valid", "80", "--n", n, "--out", out.to_str().unwrap(), "--calibration-images", "64", "--eval-images", "0"];
        a.extend_from_slice(extra);
        ok(&a)
    };
    sample("12", &fp, &[]);
    let more = sample("16", &fp, &[]);
    assert!(more.contains("16 pairs (fp32)"), "{more}");
    assert_eq!(std::fs::read_to_string(&fp).unwrap().lines().count(), 16);
    let qs = sample("16", &q, &["--quantized"]);
    assert!(qs.contains("median") && qs.contains("0 fine-tuning steps"), "{qs}");
    let text = std::fs::read_to_string(&q).unwrap();
    assert!(text.contains("\"policy\":\"uniform\"") && text.contains("\"fp32_accuracy\":0."), "{text}");
    // Fine-tuned quantized pairs stay available behind the flag.
    let qf = d.join("qf.jsonl");
    let f = sample("2", &qf, &["--quantized", "--finetune-steps", "2"]);
    assert!(f.contains("2 fine-tuning steps"), "{f}");
    // The post-training quantization table.
    let ptq = d.join("ptq.csv");
    let t = ok(&["supernet", "ptq", "--ckpt", ck, "--data", data, "--valid", "80", "--out", ptq.to_str().unwrap(), "--bits", "2,8", "--calibration-images", "64", "--eval-images", "0"]);
    assert!(t.contains("| largest |") && t.contains("mse-clip A2") && t.contains("max-range A8"), "{t}");
    assert_eq!(std::fs::read_to_string(&ptq).unwrap().lines().count(), 1 + 2 * (1 + 2 * 4));
    // Predictors: fp32, then transferred.
    let pf = d.join("fp.pred");
    let pq = d.join("q.pred");
    let m = ok(&["predictor", "train", "--space", space, "--data", fp.to_str().unwrap(), "--out", pf.to_str().unwrap()]);
    assert!(m.contains("Kendall tau") && m.contains("ensemble"), "{m}");
    let m = ok(&["predictor", "train", "--space", space, "--data", q.to_str().unwrap(), "--transfer-from", pf.to_str().unwrap(), "--out", pq.to_str().unwrap()]);
    assert!(m.contains("(transferred)"), "{m}");
    // APQ's MLP, the baseline kind.
    let pa = d.join("apq.pred");
    let m = ok(&["predictor", "train", "--kind", "apq", "--space", space, "--data", fp.to_str().unwrap(), "--out", pa.to_str().unwrap(), "--hidden", "32", "--epochs", "20"]);
    assert!(m.contains("apq"), "{m}");
    let e = fails(&["predictor", "train", "--kind", "forest", "--space", space, "--data", fp.to_str().unwrap(), "--out", pa.to_str().unwrap()]);
    assert!(e.contains("--kind") && e.contains("forest"), "{e}");
    // LUT, search with baselines and the front, plots.
    let lut = d.join("toy.lut");
    ok(&["lut", "build", "--space", space, "--out", lut.to_str().unwrap()]);
    let out = d.join("search");
    let s = ok(&[
        "search", "--space", space, "--lut", lut.to_str().unwrap(), "--predictor", pq.to_str().unwrap(), "--latency-ms", "1", "--out", out.to_str().unwrap(), "--baselines", "--pareto",
        "--generations", "5", "--population", "20",
    ]);
    assert!(s.contains("joint") && s.contains("fixed4-mid") && s.contains("Pareto front"), "{s}");
    let best = std::fs::read_to_string(out.join("best.json")).unwrap();
    assert!(best.contains("\"layers\"") && best.contains("toy:"), "{best}");
    // The front holds every method's winner or a point dominating it (it is seeded with them).
    let triples = |file: &str| -> Vec<(String, f64, f64, f64)> {
        let mut r = csv::Reader::from_path(out.join(file)).unwrap();
        let h = r.headers().unwrap().clone();
        let col = |n: &str| h.iter().position(|x| x == n).unwrap();
        let (m, a, l, e) = (col("method"), col("predicted_accuracy"), col("latency_ms"), col("energy_mj"));
        r.records().map(|x| x.unwrap()).filter(|x| !x[a].is_empty()).map(|x| (x[m].to_string(), x[a].parse().unwrap(), x[l].parse().unwrap(), x[e].parse().unwrap())).collect()
    };
    let front = triples("front.csv");
    for (m, a, l, e) in triples("points.csv") {
        assert!(front.iter().any(|f| f.1 >= a && f.2 <= l && f.3 <= e), "{m}'s winner ({a}, {l} ms, {e} mJ) is dominated by no front point");
    }
    // An energy budget beside it: its rows join points.csv and the energy chart.
    let s = ok(&["search", "--space", space, "--lut", lut.to_str().unwrap(), "--predictor", pq.to_str().unwrap(), "--energy-mj", "1", "--out", out.to_str().unwrap(), "--baselines", "--generations", "5", "--population", "20", "--top-k", "3"]);
    assert!(s.contains("joint"), "{s}");
    let points = std::fs::read_to_string(out.join("points.csv")).unwrap();
    let methods = bitfusion_search::methods::METHODS.len();
    assert_eq!(points.lines().count(), 1 + 2 * methods, "{points}");
    let candidates = std::fs::read_to_string(out.join("candidates.json")).unwrap();
    assert!(candidates.matches("\"method\"").count() == 2 * methods, "{candidates}");
    ok(&["plot", "pareto", out.to_str().unwrap()]);
    for f in ["pareto_latency.png", "pareto_energy.svg", "best_layers.png"] {
        assert!(out.join(f).exists(), "{f}");
    }
    ok(&["plot", "objectives", out.to_str().unwrap()]);
    assert!(out.join("objectives.png").exists() && out.join("objectives.svg").exists());
    // Edge versus cloud: both configs searched at comparable budgets, the winners on their rooflines.
    let ec = d.join("edge-cloud");
    let ec_args = |extra: &[&'static str]| -> Vec<String> {
        let mut a: Vec<String> = ["study", "edge-cloud", "--space", space, "--predictor", pq.to_str().unwrap(), "--out", ec.to_str().unwrap(), "--generations", "3"].iter().map(|s| s.to_string()).collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let ok_s = |a: Vec<String>| ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let fails_s = |a: Vec<String>| fails(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let s = ok_s(ec_args(&[]));
    assert!(s.contains("bitfusion-edge (batch 1)") && s.contains("bitfusion-cloud (batch 16)"), "{s}");
    for f in ["edge_cloud.csv", "edge_cloud.png", "edge_cloud.svg", "edge_cloud.md", "bitfusion-edge.lut", "bitfusion-cloud.lut"] {
        assert!(ec.join(f).exists(), "{f}");
    }
    let csv_text = std::fs::read_to_string(ec.join("edge_cloud.csv")).unwrap();
    assert!(csv_text.starts_with("config,batch,budget_ms,index,layer,role,w_bits,a_bits,"), "{csv_text}");
    assert!(csv_text.lines().skip(1).all(|l| l.ends_with(",memory") || l.ends_with(",compute")), "{csv_text}");
    assert!(csv_text.contains("bitfusion-edge,1,") && csv_text.contains("bitfusion-cloud,16,"), "{csv_text}");
    let md = std::fs::read_to_string(ec.join("edge_cloud.md")).unwrap();
    assert!(md.starts_with("## Edge versus cloud on the roofline") && md.contains("**bitfusion-edge against bitfusion-cloud.**"), "{md}");
    // A second run reuses the cached LUTs and writes the same CSV.
    ok_s(ec_args(&[]));
    assert_eq!(std::fs::read_to_string(ec.join("edge_cloud.csv")).unwrap(), csv_text);
    let e = fails_s(ec_args(&["--budget-fraction", "1.5"]));
    assert!(e.contains("--budget-fraction"), "{e}");
    let e = fails(&["study", "edge-cloud", "--space", space, "--predictor", pf.to_str().unwrap(), "--out", ec.to_str().unwrap()]);
    assert!(e.contains("fp32 predictor"), "{e}");
    let e = fails_s(ec_args(&["--hw", "bitfusion-edge"]));
    assert!(e.contains("at least two configs"), "{e}");
    // An infeasible budget: an immediate one-line error naming the cheapest value.
    let e = fails(&["search", "--space", space, "--lut", lut.to_str().unwrap(), "--predictor", pq.to_str().unwrap(), "--latency-ms", "0.000001", "--out", out.to_str().unwrap()]);
    assert!(e.contains("infeasible") && e.contains("cheapest architecture"), "{e}");
    // An arch of the checkpoint's space can be measured; a wrong one is a clear error.
    let arch = std::fs::read_to_string(&fp).unwrap().lines().next().unwrap().split("\"arch\":\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    let m = ok(&["supernet", "eval", "--ckpt", ck, "--data", data, "--valid", "80", "--arch", &arch, "--bits", "4", "--finetune-steps", "2", "--calibration-images", "64"]);
    assert!(m.contains("quantized") && m.contains("validation accuracy"), "{m}");
    let e = fails(&["supernet", "eval", "--ckpt", ck, "--data", data, "--arch", "micro:k3-m16-pw8x8-dw8x8|k3-m32-pw8x8-dw8x8|k3-m48-pw8x8-dw8x8|k3-m64-pw8x8-dw8x8"]);
    assert!(e.contains("not 'toy'"), "{e}");
}

#[test]
fn user_errors_are_one_line_messages() {
    let d = scratch("pipeline", "errors");
    let e = fails(&["supernet", "train", "--data", d.join("nope").to_str().unwrap(), "--out", d.join("x.ckpt").to_str().unwrap()]);
    assert!(e.contains("apt-get install dataset-fashion-mnist"), "{e}");
    std::fs::write(d.join("bad.ckpt"), b"BFCKPT1\nnot really").unwrap();
    let e = fails(&["supernet", "sample", "--ckpt", d.join("bad.ckpt").to_str().unwrap(), "--n", "1", "--out", d.join("p.jsonl").to_str().unwrap()]);
    assert!(e.contains("bad.ckpt") && e.contains("not a valid checkpoint"), "{e}");
    std::fs::write(d.join("p.jsonl"), "{\"index\":0}\nnot json\n").unwrap();
    let e = fails(&["predictor", "train", "--space", "micro", "--data", d.join("p.jsonl").to_str().unwrap(), "--out", d.join("x.pred").to_str().unwrap()]);
    assert!(e.contains("p.jsonl:1") && e.contains("not a pair record"), "{e}");
    let e = fails(&["plot", "pareto", d.to_str().unwrap()]);
    assert!(e.contains("no points.csv"), "{e}");
    // Data that does not fit the space's input.
    let data = d.join("toy-data");
    toy::data(&data, 40, 10);
    let e = fails(&["supernet", "train", "--space", "micro", "--data", data.to_str().unwrap(), "--valid", "8", "--out", d.join("m.ckpt").to_str().unwrap()]);
    assert!(e.contains("12x12x1 images") && e.contains("space 'micro' takes 28x28x1"), "{e}");
    // Too few pairs for a predictor.
    std::fs::write(d.join("few.jsonl"), "{\"index\":0,\"arch\":\"micro:k3-m16-pw8x8-dw8x8|k3-m32-pw8x8-dw8x8|k3-m48-pw8x8-dw8x8|k3-m64-pw8x8-dw8x8\",\"quantized\":false,\"finetune_steps\":0,\"accuracy\":0.5,\"seconds\":1.0}\n").unwrap();
    let e = fails(&["predictor", "train", "--data", d.join("few.jsonl").to_str().unwrap(), "--out", d.join("few.pred").to_str().unwrap()]);
    assert!(e.contains("1 samples are too few"), "{e}");
}

/// The bilevel search (issue 16, item 4) on the toy space: through `supernet bilevel` (its row
/// and candidates written like every method's, an infeasible budget refused at once in one
/// line), and in the library on 1 and 2 threads (the same seed, the same result).
#[test]
fn the_bilevel_search_fits_budgets_fails_fast_and_is_the_same_on_1_and_2_threads() {
    use bitfusion_models::bilevel::{BilevelConfig, BilevelError, bilevel};
    use bitfusion_models::train;
    use bitfusion_search::evolution::{Budget, Freedom, cheapest, largest};
    use bitfusion_search::lut::Lut;

    let d = scratch("pipeline", "bilevel");
    let data_dir = d.join("data");
    let data = toy::data(&data_dir, 320, 64);
    let space = toy::space();
    std::fs::write(d.join("toy.toml"), toy::SPACE).unwrap();
    let dev = bitfusion_models::device();
    let ck = d.join("toy.ckpt");
    let trained = train::train(&space, &data, &toy::config(5), &ck, &dev, None, &mut |_| {}).unwrap();
    let lut_path = d.join("toy.lut");
    ok(&["lut", "build", "--space", d.join("toy.toml").to_str().unwrap(), "--out", lut_path.to_str().unwrap()]);
    let lut = Lut::load(&lut_path).unwrap();
    // A budget halfway between the cheapest and the largest architecture's latency.
    let (min, _) = cheapest(&space, &lut, &Freedom::joint(&space), &|e| e.latency_ms).unwrap();
    let (_, max, _) = lut.cost(&largest(&space, 8)).unwrap();
    let mid = (min + max) / 2.0;
    let budget = Budget { latency_ms: Some(mid), energy_mj: None };

    // Through the CLI.
    let out = d.join("out");
    let (ck_s, lut_s, data_s, out_s, mid_s) = (ck.to_str().unwrap(), lut_path.to_str().unwrap(), data_dir.to_str().unwrap(), out.to_str().unwrap(), format!("{mid}"));
    let base = ["supernet", "bilevel", "--ckpt", ck_s, "--lut", lut_s, "--data", data_s, "--valid", "64", "--out", out_s, "--steps", "6", "--samples", "3", "--valid-images", "64", "--calibration-images", "64"];
    let text = ok(&[&base[..], &["--latency-ms", &mid_s]].concat());
    assert!(text.contains("supernet evaluations") && text.contains("[bilevel] step 6/6"), "{text}");
    let rows = common::read_csv(out.join("points.csv").to_str().unwrap());
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["method"], "bilevel");
    assert!(common::float(&rows[0], "latency_ms") <= mid, "{:?}", rows[0]);
    // 6 steps of 3 subnets, and the final policy's mode when it fits.
    assert!([18, 19].contains(&common::int(&rows[0], "queries")), "{:?}", rows[0]);
    let cands = std::fs::read_to_string(out.join("candidates.json")).unwrap();
    assert!(cands.contains("\"method\": \"bilevel\"") && cands.contains("toy:"), "{cands}");
    // An infeasible budget: a one-line error, before any training.
    let t = std::time::Instant::now();
    let e = fails(&[&base[..], &["--latency-ms", &format!("{}", min * 0.5)]].concat());
    assert!(e.contains("infeasible") && e.contains("latency"), "{e}");
    assert!(t.elapsed().as_secs_f64() < 1.0, "{:?}", t.elapsed());

    // In the library: infeasible in well under a second, and the same result on 1 and 2 threads.
    let cfg = BilevelConfig { steps: 5, samples: 3, train_batch: 32, calibration_images: 64, valid_images: 64, ..BilevelConfig::default() };
    let t = std::time::Instant::now();
    let tight = Budget { latency_ms: Some(min * 0.9), energy_mj: None };
    let e = bilevel(&trained.net, &space, &lut, &data, &tight, &cfg, &dev, &mut |_| {}).err().unwrap();
    assert!(matches!(e, BilevelError::Search(_)) && e.is_infeasible(), "{e}");
    assert!(t.elapsed().as_secs_f64() < 0.5, "{:?}", t.elapsed());
    let on = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let r = pool.install(|| bilevel(&trained.net, &space, &lut, &data, &budget, &cfg, &dev, &mut |_| {}).unwrap());
        let steps: Vec<_> = r.steps.iter().map(|s| (s.train_loss, s.mean_accuracy, s.mean_reward, s.best_feasible, s.lambda, s.entropy)).collect();
        (r.outcome.top, r.outcome.history, r.outcome.queries, steps, r.policy)
    };
    let (one, two) = (on(1), on(2));
    assert!(!one.0.is_empty() && one.0.iter().all(|c| budget.admits(c.latency_ms, c.energy_mj)), "{:?}", one.0);
    assert!(one == two, "1 thread: {:?}\n2 threads: {:?}", one.0, two.0);
}
