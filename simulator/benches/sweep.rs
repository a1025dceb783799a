//! Sweep throughput: `hwconfigs/sweeps/mobilenet-100.toml` (100 configs x MobileNetV2-224 x 4
//! precisions = 400 rows, cycle model) with 1 and with 2 worker threads, side by side.
//!
//! Run: `cargo bench -p bitfusion-simulator --bench sweep`

use bitfusion_simulator::sweep::{self, Sweep};
use std::path::Path;
use std::time::Instant;

fn main() {
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("../hwconfigs/sweeps/mobilenet-100.toml");
    let sw = Sweep::from_file(&spec).expect("spec");
    let mut times = Vec::new();
    for threads in [1usize, 2] {
        let dir = std::env::temp_dir().join(format!("bf-sweep-bench-{}-{threads}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let t = Instant::now();
        let s = pool.install(|| sweep::run(&sw, &dir, None, &|_, _| {})).expect("sweep");
        let secs = t.elapsed().as_secs_f64();
        println!("sweep mobilenet-100: {} rows, {threads} thread(s): {secs:.2} s", s.ran);
        times.push(secs);
        let _ = std::fs::remove_dir_all(&dir);
    }
    println!("speed-up 1 -> 2 threads: {:.2}x", times[0] / times[1]);
}
