//! Replaying the RTL's golden files through the functional models
//! (`bitfusion validate fusion-unit` and `bitfusion validate array-timing`).

use crate::array::{CycleInputs, Operands, ScheduledWindow, Stream, SystolicArray, hazards};
use crate::brick::{self, FusionUnit, LanePlan};
use bitfusion_util::splitmix;
use std::collections::BTreeMap;

/// The outcome of a replay: how many cases were checked and what differed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Replay {
    pub cases: usize,
    /// One line per difference (empty when everything matches).
    pub mismatches: Vec<String>,
    /// Extra counts worth printing (e.g. hazards recognised).
    pub details: Vec<(String, usize)>,
}

impl Replay {
    pub fn ok(&self) -> bool {
        self.mismatches.is_empty()
    }
}

/// A file that cannot be replayed, phrased for the user on one line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{origin}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct ReplayError {
    pub origin: String,
    pub line: Option<u64>,
    pub message: String,
}

type Row = BTreeMap<String, String>;

fn read_rows(text: &str, origin: &str, required: &[&str]) -> Result<Vec<(u64, Row)>, ReplayError> {
    let err = |line: Option<u64>, message: String| ReplayError { origin: origin.to_string(), line, message };
    let mut rdr = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(text.as_bytes());
    let headers = rdr.headers().map_err(|e| err(Some(1), format!("cannot read the header: {e}")))?.clone();
    for r in required {
        if !headers.iter().any(|h| h == *r) {
            return Err(err(Some(1), format!("missing column '{r}'")));
        }
    }
    let mut rows = Vec::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| err(e.position().map(|p| p.line()), format!("malformed CSV: {}", e.to_string().replace('\n', " "))))?;
        let line = rec.position().map_or(0, |p| p.line());
        rows.push((line, headers.iter().zip(rec.iter()).map(|(h, v)| (h.to_string(), v.to_string())).collect()));
    }
    if rows.is_empty() {
        return Err(err(None, "no rows".into()));
    }
    Ok(rows)
}

fn num<T: std::str::FromStr>(origin: &str, line: u64, row: &Row, key: &str) -> Result<T, ReplayError> {
    let v = &row[key];
    v.parse().map_err(|_| ReplayError { origin: origin.into(), line: Some(line), message: format!("column '{key}': '{v}' is not a valid number") })
}

fn lanes(origin: &str, line: u64, row: &Row, key: &str) -> Result<Vec<i32>, ReplayError> {
    row[key]
        .split(';')
        .map(|v| {
            v.trim().parse::<i32>().map_err(|_| ReplayError {
                origin: origin.into(),
                line: Some(line),
                message: format!("column '{key}': '{v}' is not an integer"),
            })
        })
        .collect()
}

fn hex(origin: &str, line: u64, row: &Row, key: &str) -> Result<u32, ReplayError> {
    u32::from_str_radix(row[key].trim_start_matches("0x"), 16).map_err(|_| ReplayError {
        origin: origin.into(),
        line: Some(line),
        message: format!("column '{key}': '{}' is not a 32-bit hex word", row[key]),
    })
}

/// Replay fusion-unit vectors (the format of `rtl/fusion_unit_vectors.csv`): for every vector, the
/// mode bits, the packing of the lanes into the two words, the unpacking of the words, and the
/// unit's output must equal the file's.
pub fn fusion_unit_vectors(text: &str, origin: &str) -> Result<Replay, ReplayError> {
    let rows = read_rows(text, origin, &["a_bits", "w_bits", "a_signed", "w_signed", "mode_hex", "a_word_hex", "w_word_hex", "a_lanes", "w_lanes", "rtl_out"])?;
    let mut r = Replay::default();
    for (line, row) in &rows {
        let line = *line;
        let a_bits: u32 = num(origin, line, row, "a_bits")?;
        let w_bits: u32 = num(origin, line, row, "w_bits")?;
        if !brick::RTL_WIDTHS.contains(&a_bits) || !brick::RTL_WIDTHS.contains(&w_bits) {
            return Err(ReplayError { origin: origin.into(), line: Some(line), message: format!("unsupported bit widths {a_bits}x{w_bits} (the RTL unit takes 2, 4 or 8)") });
        }
        let signed = row["a_signed"] == "1";
        if row["w_signed"] != row["a_signed"] {
            return Err(ReplayError { origin: origin.into(), line: Some(line), message: "mixed signedness: the RTL modules are signed x signed or unsigned x unsigned".into() });
        }
        let (aw, ww) = (hex(origin, line, row, "a_word_hex")?, hex(origin, line, row, "w_word_hex")?);
        let (al, wl) = (lanes(origin, line, row, "a_lanes")?, lanes(origin, line, row, "w_lanes")?);
        let out: i64 = num(origin, line, row, "rtl_out")?;
        let mode = u8::from_str_radix(&row["mode_hex"], 16).unwrap_or(0xff);
        let id = format!("{origin}:{line} ({a_bits}x{w_bits}, {})", if signed { "signed" } else { "unsigned" });
        let mut bad = |what: String| r.mismatches.push(format!("{id}: {what}"));
        if brick::rtl_mode(a_bits, w_bits) != mode {
            bad(format!("mode {:x}, file {}", brick::rtl_mode(a_bits, w_bits), row["mode_hex"]));
        }
        if brick::pack_activations(a_bits, w_bits, &al) != aw {
            bad(format!("A word packs to {:08x}, file {aw:08x}", brick::pack_activations(a_bits, w_bits, &al)));
        }
        if brick::pack_weights(a_bits, w_bits, &wl) != ww {
            bad(format!("W word packs to {:08x}, file {ww:08x}", brick::pack_weights(a_bits, w_bits, &wl)));
        }
        if brick::unpack_activations(a_bits, w_bits, aw, signed) != al || brick::unpack_weights(a_bits, w_bits, ww, signed) != wl {
            bad("words unpack to other lanes".into());
        }
        let got = brick::rtl_fusion_unit(a_bits, w_bits, aw, ww, signed);
        if got != out {
            bad(format!("output {got}, RTL {out}"));
        }
        r.cases += 1;
    }
    Ok(r)
}

/// One window of an array-timing test.
struct TimingWindow {
    start: u64,
    t: u64,
    k: usize,
    a_bits: u32,
    w_bits: u32,
    gap: u64,
    skewed: bool,
}

/// Operand values of a replayed test: x[window][k], w[window][col][k].
struct TimingOperands {
    n: usize,
    plans: Vec<LanePlan>,
    x: Vec<Vec<i32>>,
    w: Vec<Vec<Vec<i32>>>,
}

impl TimingOperands {
    fn lane_values(&self, win: usize, chunk: u64, row: usize, col: Option<usize>) -> Vec<i32> {
        let lanes = self.plans[win].lanes as usize;
        let base = (chunk as usize * self.n + row) * lanes;
        let src = match col {
            None => &self.x[win],
            Some(c) => &self.w[win][c],
        };
        (0..lanes).map(|l| src.get(base + l).copied().unwrap_or(0)).collect()
    }
}

// Handles: activation = (window, chunk, row); weight = (window, chunk, row, col), 16 bits each.
fn act_handle(win: usize, chunk: u64, row: usize) -> u64 {
    ((win as u64) << 48) | (chunk << 32) | row as u64
}
fn weight_handle(win: usize, chunk: u64, row: usize, col: usize) -> u64 {
    ((win as u64) << 48) | (chunk << 32) | ((row as u64) << 16) | col as u64
}

impl Operands for TimingOperands {
    fn product(&self, a: u64, w: u64) -> i64 {
        let (win, chunk, row) = ((a >> 48) as usize, (a >> 32) & 0xffff, (a & 0xffff) as usize);
        let col = (w & 0xffff) as usize;
        let plan = &self.plans[win];
        let fu = FusionUnit { fusion_bits: 8, brick_bits: 2 };
        fu.dot(plan, &self.lane_values(win, chunk, row, None), &self.lane_values(win, chunk, row, Some(col)), true, true)
    }
}

/// Replay systolic-array timing cases (the format of `rtl/array_timing.csv`) through the stepped
/// array: every valid cycle, interval and accumulator value must agree, and every case the RTL
/// shows to be a hazard (`match` = 0) must be recognised as one, not computed. Operand values are
/// seeded random (the file records only results); `*_min`/`*_max` tests use all-minimum or
/// all-maximum operands, so their accumulators are checked against the RTL's own.
pub fn array_timing(text: &str, origin: &str, seed: u64) -> Result<Replay, ReplayError> {
    let rows = read_rows(
        text,
        origin,
        &["test", "N", "M", "a_bits", "w_bits", "K", "T", "window", "gap", "skewed", "col", "first_input_cycle", "valid_obs_cycle", "interval", "rtl_acc", "match"],
    )?;
    let mut tests: BTreeMap<String, Vec<(u64, Row)>> = BTreeMap::new();
    let mut order = Vec::new();
    for (line, row) in rows {
        if !tests.contains_key(&row["test"]) {
            order.push(row["test"].clone());
        }
        tests.entry(row["test"].clone()).or_default().push((line, row));
    }
    let mut r = Replay::default();
    let (mut hazards_seen, mut values_vs_rtl, mut values_vs_direct, mut timings) = (0, 0, 0, 0);
    let mut rng = seed;
    for name in order {
        let rows = &tests[&name];
        let (l0, first) = &rows[0];
        let n: usize = num(origin, *l0, first, "N")?;
        let m: usize = num(origin, *l0, first, "M")?;
        if n == 0 || m == 0 || n > 64 || m > 64 {
            return Err(ReplayError { origin: origin.into(), line: Some(*l0), message: format!("array {n}x{m} out of range (1..=64)") });
        }
        let mut windows: BTreeMap<u64, TimingWindow> = BTreeMap::new();
        for (line, row) in rows {
            let w: u64 = num(origin, *line, row, "window")?;
            let (a_bits, w_bits): (u32, u32) = (num(origin, *line, row, "a_bits")?, num(origin, *line, row, "w_bits")?);
            if !brick::RTL_WIDTHS.contains(&a_bits) || !brick::RTL_WIDTHS.contains(&w_bits) {
                return Err(ReplayError { origin: origin.into(), line: Some(*line), message: format!("unsupported bit widths {a_bits}x{w_bits}") });
            }
            let tw = TimingWindow {
                start: num(origin, *line, row, "first_input_cycle")?,
                t: num(origin, *line, row, "T")?,
                k: num(origin, *line, row, "K")?,
                a_bits,
                w_bits,
                gap: num(origin, *line, row, "gap")?,
                skewed: row["skewed"] == "1",
            };
            let lanes = LanePlan::new(a_bits, w_bits, 8, 2).lanes as usize;
            if tw.t == 0 || tw.t as usize != tw.k.div_ceil(n * lanes) {
                r.mismatches.push(format!("{origin}:{line} {name}: T = {} but ceil(K / (N x lanes)) = {}", tw.t, tw.k.div_ceil(n * lanes)));
            }
            windows.entry(w).or_insert(tw);
        }
        let wins: Vec<&TimingWindow> = windows.values().collect();
        let scheduled: Vec<ScheduledWindow> =
            wins.iter().map(|w| ScheduledWindow { start: w.start, t: w.t.max(1), mode: (w.a_bits, w.w_bits), skewed: w.skewed }).collect();
        let hz = hazards(n as u64, m as u64, &scheduled);
        // Operands.
        let extreme = if name.contains("_min") { Some(true) } else if name.contains("_max") { Some(false) } else { None };
        let value = |bits: u32, rng: &mut u64| -> i32 {
            let (lo, hi) = brick::operand_range(bits, true);
            match extreme {
                Some(true) => lo as i32,
                Some(false) => hi as i32,
                None => (lo + (splitmix(rng) % (hi - lo + 1) as u64) as i64) as i32,
            }
        };
        let ops = TimingOperands {
            n,
            plans: wins.iter().map(|w| LanePlan::new(w.a_bits, w.w_bits, 8, 2)).collect(),
            x: wins.iter().map(|w| (0..w.k).map(|_| value(w.a_bits, &mut rng)).collect()).collect(),
            w: wins.iter().map(|w| (0..m).map(|_| (0..w.k).map(|_| value(w.w_bits, &mut rng)).collect()).collect()).collect(),
        };
        // Step the array over every skewed window (hazard windows are run too, so that the timing of
        // the others is undisturbed, but their values are not taken).
        let streams: Vec<Stream> = wins.iter().map(|w| Stream { start: w.start, windows: 1, t: w.t.max(1) }).collect();
        let mut observed: BTreeMap<(usize, usize), (u64, i64)> = BTreeMap::new();
        if wins.iter().all(|w| w.skewed) {
            let mut arr = SystolicArray::new(n, m, 32);
            let end = streams.iter().map(|s| s.end()).max().unwrap_or(0) + (n + m) as u64 + 4;
            let mut act = vec![None; n];
            for cycle in 0..end {
                for col in 0..m {
                    let (valid, v) = arr.output(col);
                    if valid {
                        if let Some(wi) = streams.iter().position(|s| s.window_of_result(cycle, n, col).is_some()) {
                            observed.insert((wi, col), (cycle, v));
                        } else {
                            r.mismatches.push(format!("{name}: column {col} valid in cycle {cycle} with no window due"));
                        }
                    }
                }
                for (row, a) in act.iter_mut().enumerate() {
                    *a = streams.iter().enumerate().find_map(|(wi, s)| s.act_slot(cycle, row).map(|(_, j)| act_handle(wi, j, row)));
                }
                let weight = |row: usize, col: usize, _: Option<u64>| {
                    streams.iter().enumerate().find_map(|(wi, s)| s.weight_slot(cycle, row, col).map(|(_, j)| weight_handle(wi, j, row, col)))
                };
                let clear = streams.iter().any(|s| s.clear_at(cycle, n));
                let valid = streams.iter().any(|s| s.valid_at(cycle, n));
                arr.step(&CycleInputs { act: &act, weight, clear, valid }, &ops);
            }
        }
        for (line, row) in rows {
            let wi = windows.keys().position(|k| *k == num::<u64>(origin, *line, row, "window").unwrap_or(0)).unwrap_or(0);
            let col: usize = num(origin, *line, row, "col")?;
            let id = format!("{origin}:{line} {name} window {wi} column {col}");
            let rtl_ok = row["match"] == "1";
            if col >= m {
                r.mismatches.push(format!("{id}: column out of range"));
                continue;
            }
            let hazard = hz[wi][col];
            match (hazard, rtl_ok) {
                (Some(_), false) => hazards_seen += 1,
                (Some(h), true) => r.mismatches.push(format!("{id}: flagged as a hazard ({h}) but the RTL result is correct")),
                (None, false) => r.mismatches.push(format!("{id}: the RTL result is wrong here but no hazard was recognised")),
                (None, true) => {}
            }
            r.cases += 1;
            if !wins[wi].skewed {
                continue;
            }
            // Timing (also for mode-switch hazards: valid timing does not depend on the mode).
            let Some(&(cycle, value)) = observed.get(&(wi, col)) else {
                r.mismatches.push(format!("{id}: no valid output observed"));
                continue;
            };
            let file_cycle: u64 = num(origin, *line, row, "valid_obs_cycle")?;
            if cycle != file_cycle {
                r.mismatches.push(format!("{id}: valid in cycle {cycle}, RTL {file_cycle}"));
            }
            if !row["interval"].is_empty() && wi > 0 {
                let interval: u64 = num(origin, *line, row, "interval")?;
                if let Some(&(prev, _)) = observed.get(&(wi - 1, col)) {
                    if cycle - prev != interval {
                        r.mismatches.push(format!("{id}: interval {} cycles, RTL {interval}", cycle - prev));
                    }
                    if interval != wins[wi].t + wins[wi].gap {
                        r.mismatches.push(format!("{id}: RTL interval {interval} is not T + gap"));
                    }
                }
            }
            timings += 1;
            if hazard.is_some() {
                continue;
            }
            let direct: i64 = ops.x[wi].iter().zip(&ops.w[wi][col]).map(|(a, b)| *a as i64 * *b as i64).sum();
            let direct = direct as i32 as i64; // the 32-bit accumulator wraps
            if value != direct {
                r.mismatches.push(format!("{id}: accumulator {value}, direct dot product {direct}"));
            }
            values_vs_direct += 1;
            if extreme.is_some() {
                let rtl: i64 = num(origin, *line, row, "rtl_acc")?;
                if value != rtl {
                    r.mismatches.push(format!("{id}: accumulator {value}, RTL {rtl}"));
                }
                values_vs_rtl += 1;
            }
        }
    }
    r.details = vec![
        ("valid cycles and intervals checked".into(), timings),
        ("accumulators checked against the direct dot product".into(), values_vs_direct),
        ("accumulators checked against the RTL's (min/max operands)".into(), values_vs_rtl),
        ("hazards recognised (not computed)".into(), hazards_seen),
    ];
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_files_are_errors_with_a_line() {
        let e = fusion_unit_vectors("a,b\n1,2\n", "v.csv").unwrap_err().to_string();
        assert!(e.contains("v.csv:1: missing column 'a_bits'"), "{e}");
        let header = "idx,module,a_bits,w_bits,a_signed,w_signed,lanes,kind,mode_hex,a_word_hex,w_word_hex,a_lanes,w_lanes,rtl_out,expected,match\n";
        let e = fusion_unit_vectors(&format!("{header}0,m,3,2,1,1,16,c,f,0,0,0,0,0,0,1\n"), "v.csv").unwrap_err().to_string();
        assert!(e.contains("v.csv:2: unsupported bit widths 3x2"), "{e}");
        let e = fusion_unit_vectors(&format!("{header}0,m,2,2,1,1,16,c,f,zz,0,0,0,0,0,1\n"), "v.csv").unwrap_err().to_string();
        assert!(e.contains("'zz' is not a 32-bit hex word"), "{e}");
    }

    #[test]
    fn a_wrong_output_is_reported() {
        let header = "idx,module,a_bits,w_bits,a_signed,w_signed,lanes,kind,mode_hex,a_word_hex,w_word_hex,a_lanes,w_lanes,rtl_out,expected,match\n";
        let good = format!("{header}0,signed_spatial_mult,8,8,1,1,1,c,0,02020202,03030303,2,3,6,6,1\n");
        assert!(fusion_unit_vectors(&good, "v").unwrap().ok());
        let bad = good.replace(",6,6,1", ",7,6,1");
        let r = fusion_unit_vectors(&bad, "v").unwrap();
        assert_eq!(r.mismatches.len(), 1);
        assert!(r.mismatches[0].contains("output 6, RTL 7"), "{:?}", r.mismatches);
    }
}
