//! Timeline traces in the Chrome trace event format (open in Perfetto or chrome://tracing).
//!
//! One process per layer, laid end to end (layers run one after another); in
//! each, an `array` lane with one slice per tile's streaming and its drain,
//! and a `DMA` lane with one slice per transfer. Times are microseconds at
//! the config's clock.

use super::schedule::TileStep;
use super::timeline::Timeline;
use serde_json::{Value, json};

/// Trace events of one layer whose timeline starts at `offset_cycles`.
pub(super) fn layer_events(pid: usize, name: &str, steps: &[TileStep], tl: &Timeline, offset_cycles: u64, mhz: f64) -> Vec<Value> {
    let us = |c: u64| (offset_cycles + c) as f64 / mhz;
    let dur = |a: u64, b: u64| (b - a) as f64 / mhz;
    let mut ev = vec![
        json!({"name": "process_name", "ph": "M", "pid": pid, "args": {"name": format!("layer {pid}: {name}")}}),
        json!({"name": "process_sort_index", "ph": "M", "pid": pid, "args": {"sort_index": pid}}),
        json!({"name": "thread_name", "ph": "M", "pid": pid, "tid": 1, "args": {"name": "array"}}),
        json!({"name": "thread_name", "ph": "M", "pid": pid, "tid": 2, "args": {"name": "DMA"}}),
    ];
    for (t, (&(start, end), s)) in tl.compute.iter().zip(steps).enumerate() {
        let g = &s.geom;
        ev.push(json!({
            "name": format!("tile {t}"), "cat": "compute", "ph": "X", "pid": pid, "tid": 1,
            "ts": us(start), "dur": dur(start, end),
            "args": {
                "cycles": end - start, "windows": g.pixels() * s.colgroups, "chunks_per_window": s.t,
                "pixels": g.pixels(), "output_channels": g.out_channels(), "reduction": s.reduction,
                "batch_row_col": [g.b0, g.y0, g.x0], "accumulate": s.accumulate,
            }
        }));
    }
    for &(t, kind, start, end) in &tl.dma {
        ev.push(json!({
            "name": kind.label(), "cat": "dma", "ph": "X", "pid": pid, "tid": 2,
            "ts": us(start), "dur": dur(start, end), "args": {"tile": t, "cycles": end - start}
        }));
    }
    ev
}

/// A whole trace document.
pub(super) fn document(events: Vec<Value>) -> Value {
    json!({"traceEvents": events, "displayTimeUnit": "ns"})
}
