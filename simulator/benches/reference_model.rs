//! Time per layer of the reference model over the reference `layers.csv`
//! (every row with status ok), single-threaded, grouped by config and batch as
//! the original's timings are (`wall_s`: 0.23 s per layer at batch 1 and 0.65 s
//! at batch 16 on bf_e, 0.36 s on conf.ini at batch 1).
//!
//! Run: `cargo bench -p bitfusion-simulator --bench reference_model`

use bitfusion_simulator::config::{HwConfig, SHIPPED_CONFIGS};
use bitfusion_simulator::model::CostModel;
use bitfusion_simulator::reference::ReferenceModel;
use bitfusion_simulator::Layer;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::collections::BTreeMap;
use std::hint::black_box;

fn load_rows() -> BTreeMap<(String, u32), (ReferenceModel, Vec<Layer>)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/bitfusion/layers.csv");
    let mut rdr = csv::Reader::from_path(path).expect("tests/data/bitfusion/layers.csv");
    let h = rdr.headers().unwrap().clone();
    let col = |name: &str| h.iter().position(|x| x == name).unwrap();
    let (c_cfg, c_status, c_kind, c_dw) = (col("config"), col("status"), col("kind"), col("dw_mode"));
    let int = |r: &csv::StringRecord, name: &str| r[col(name)].parse::<f64>().unwrap() as u32;
    let mut groups: BTreeMap<(String, u32), (ReferenceModel, Vec<Layer>)> = BTreeMap::new();
    for r in rdr.records() {
        let r = r.unwrap();
        if &r[c_status] != "ok" || (!r[c_dw].is_empty() && &r[c_dw] != "dense_ignoring_groups") {
            continue;
        }
        let b = int(&r, "B");
        let key = (r[c_cfg].to_string(), b);
        let (c, oc) = (int(&r, "IC_layer"), int(&r, "OC_layer"));
        let (k, s, pad, h_in) = (int(&r, "K"), int(&r, "S"), int(&r, "pad"), int(&r, "H_in"));
        let (w, a) = (int(&r, "wbits"), int(&r, "abits"));
        let layer = match &r[c_kind] {
            "fc" => Layer::fc("fc", b, c, oc, w, a),
            "dw" => Layer::conv("dw", b, c, oc, h_in, k, s, pad, c, w, a),
            _ => Layer::conv("conv", b, c, oc, h_in, k, s, pad, 1, w, a).with_im2col(&r[col("im2col")] == "True"),
        };
        let entry = groups.entry(key).or_insert_with(|| {
            let shipped = if &r[c_cfg] == "conf.ini" { SHIPPED_CONFIGS[1].1 } else { SHIPPED_CONFIGS[0].1 };
            (ReferenceModel::new(&HwConfig::from_toml_str(shipped, "bench", &[]).unwrap()), Vec::new())
        });
        entry.1.push(layer);
    }
    groups
}

fn bench(c: &mut Criterion) {
    let groups = load_rows();
    let mut g = c.benchmark_group("reference_model_per_layer");
    g.sample_size(10);
    for ((config, batch), (model, layers)) in &groups {
        g.throughput(Throughput::Elements(layers.len() as u64));
        g.bench_function(format!("{config}_batch{batch}_{}layers", layers.len()), |bn| {
            bn.iter(|| {
                for l in layers {
                    black_box(model.simulate_layer(black_box(l)).unwrap());
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
