//! The systolic array: N x M fusion units, stepped cycle by cycle as the
//! ACT-lab RTL behaves (rtl/NOTES.md section 2), and the timing rules the fast
//! engine uses.
//!
//! Structure (m = output column, n = reduction row):
//! * activations enter row n at column 0 and are forwarded one column per
//!   cycle through one register per hop;
//! * weights are fed to every unit every cycle from its weight-buffer bank
//!   (nothing is stationary inside the array);
//! * partial sums go down the columns, one register per unit, into a
//!   per-column accumulator (`acc <= clear ? in : acc + in`, every cycle,
//!   wrapping at the accumulator width);
//! * `acc_clear` reaches column 0 through 1 register and `out_valid` through
//!   2; each further column adds one register to both.
//!
//! A *window* reduces `T` chunks into one result per column. With the window
//! starting at cycle `s`, row n gets activation chunk j at `s + j + n`,
//! unit (n, m) gets weight chunk j at `s + j + n + m`, clear is driven at
//! `s + N - 1` and valid at `s + T - 1 + N - 1`; column m's result is seen
//! in cycle `s + T + N + m`. Windows run back to back (every `T` cycles);
//! a window in another precision mode must start at least `N + M - 2` idle
//! cycles after the previous window's last chunk.

/// Where the array's operands come from: the product a fusion unit computes
/// for an activation handle and a weight handle (both opaque to the array).
pub trait Operands {
    fn product(&self, act: u64, weight: u64) -> i64;
}

/// One cycle's inputs.
pub struct CycleInputs<'a, W: Fn(usize, usize, Option<u64>) -> Option<u64>> {
    /// Activation handle entering each row at column 0.
    pub act: &'a [Option<u64>],
    /// Weight handle fed to unit (row, col) this cycle; it is also given the activation handle the
    /// unit sees this cycle (a feeder that keeps weights aligned with activations may use it).
    pub weight: W,
    pub clear: bool,
    pub valid: bool,
}

/// The array's registers.
#[derive(Clone, Debug)]
pub struct SystolicArray {
    pub n: usize,
    pub m: usize,
    /// Activation forwarding registers, [m * n + row]: what column m saw last cycle (NONE: nothing).
    fwd: Vec<u64>,
    /// Partial-sum registers, [m * n + row].
    psum: Vec<i64>,
    acc: Vec<i64>,
    acc_bits: u32,
    clear: Vec<bool>,
    valid_pre: bool,
    valid: Vec<bool>,
    /// Fusion-unit cycles stepped (units x cycles), for throughput reports.
    pub unit_cycles: u64,
}

/// An empty forwarding register (handles never take this value).
const NONE: u64 = u64::MAX;

fn wrap(v: i64, bits: u32) -> i64 {
    if bits >= 64 {
        v
    } else {
        let shift = 64 - bits;
        (v << shift) >> shift
    }
}

impl SystolicArray {
    /// An idle array; `acc_bits` is the accumulator width (4 x fusion_bits in the RTL).
    pub fn new(n: usize, m: usize, acc_bits: u32) -> Self {
        Self {
            n,
            m,
            fwd: vec![NONE; n * m],
            psum: vec![0; n * m],
            acc: vec![0; m],
            acc_bits,
            clear: vec![false; m],
            valid_pre: false,
            valid: vec![false; m],
            unit_cycles: 0,
        }
    }

    /// Column m's output as seen this cycle (state after the previous edge): (valid, accumulator).
    pub fn output(&self, col: usize) -> (bool, i64) {
        (self.valid[col], self.acc[col])
    }

    /// One clock edge.
    pub fn step<W: Fn(usize, usize, Option<u64>) -> Option<u64>>(&mut self, inp: &CycleInputs<'_, W>, ops: &impl Operands) {
        let n = self.n;
        for col in (0..self.m).rev() {
            // Accumulator: uses this column's clear register and the last row's partial sum (old state).
            let last = self.psum[col * n + n - 1];
            self.acc[col] = wrap(if self.clear[col] { last } else { self.acc[col] + last }, self.acc_bits);
            for row in (0..n).rev() {
                let act = if col == 0 { inp.act[row].unwrap_or(NONE) } else { self.fwd[(col - 1) * n + row] };
                let prod = if act == NONE {
                    0
                } else {
                    match (inp.weight)(row, col, Some(act)) {
                        Some(w) => ops.product(act, w),
                        None => 0,
                    }
                };
                let above = if row == 0 { 0 } else { self.psum[col * n + row - 1] };
                self.psum[col * n + row] = prod + above;
                self.fwd[col * n + row] = act;
            }
            self.clear[col] = if col == 0 { inp.clear } else { self.clear[col - 1] };
            self.valid[col] = if col == 0 { self.valid_pre } else { self.valid[col - 1] };
        }
        self.valid_pre = inp.valid;
        self.unit_cycles += (n * self.m) as u64;
    }
}

/// A run of back-to-back windows of `t` chunks each, the first starting at `start`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stream {
    pub start: u64,
    pub windows: u64,
    pub t: u64,
}

impl Stream {
    /// Cycles the stream occupies the array's inputs: windows x T.
    pub fn busy(&self) -> u64 {
        self.windows * self.t
    }
    /// First cycle after the last chunk enters row 0.
    pub fn end(&self) -> u64 {
        self.start + self.busy()
    }
    fn slot(&self, offset: i64) -> Option<(u64, u64)> {
        let u = offset - self.start as i64;
        (u >= 0 && (u as u64) < self.busy()).then(|| ((u as u64) / self.t, (u as u64) % self.t))
    }
    /// (window, chunk) of the activation row `row` receives in `cycle`.
    pub fn act_slot(&self, cycle: u64, row: usize) -> Option<(u64, u64)> {
        self.slot(cycle as i64 - row as i64)
    }
    /// (window, chunk) of the weight unit (row, col) receives in `cycle`.
    pub fn weight_slot(&self, cycle: u64, row: usize, col: usize) -> Option<(u64, u64)> {
        self.slot(cycle as i64 - row as i64 - col as i64)
    }
    /// Is `acc_clear` driven in `cycle` (lined up with row N-1's first chunk)?
    pub fn clear_at(&self, cycle: u64, n: usize) -> bool {
        self.slot(cycle as i64 - (n as i64 - 1)).is_some_and(|(_, j)| j == 0)
    }
    /// Is `out_valid` driven in `cycle` (lined up with row N-1's last chunk)?
    pub fn valid_at(&self, cycle: u64, n: usize) -> bool {
        self.slot(cycle as i64 - (n as i64 - 1)).is_some_and(|(_, j)| j == self.t - 1)
    }
    /// The cycle column `col`'s result of window `w` is seen: s + T + N + m.
    #[cfg(test)] // Used by the tests only (the crate does not export it).
    pub fn result_cycle(&self, w: u64, n: usize, col: usize) -> u64 {
        self.start + w * self.t + self.t + n as u64 + col as u64
    }
    /// Which window's result column `col` shows in `cycle`, if any.
    pub fn window_of_result(&self, cycle: u64, n: usize, col: usize) -> Option<u64> {
        let base = self.start + self.t + n as u64 + col as u64;
        (cycle >= base && (cycle - base).is_multiple_of(self.t) && (cycle - base) / self.t < self.windows).then(|| (cycle - base) / self.t)
    }
}

/// Cycles from a stream's last input to its last result being seen (pipeline drain): N + M - 1.
pub fn drain_cycles(n: u64, m: u64) -> u64 {
    n + m - 1
}

/// Idle cycles needed after a window's last chunk before a window in another precision mode: N + M - 2.
pub fn mode_switch_gap(n: u64, m: u64) -> u64 {
    n + m - 2
}

/// A window as scheduled on the array, for hazard checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScheduledWindow {
    pub start: u64,
    pub t: u64,
    /// Precision mode (activation bits, weight bits).
    pub mode: (u32, u32),
    /// Rows fed with the row skew (row n one cycle after row n-1).
    pub skewed: bool,
}

/// Why a window's result in a column cannot be trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hazard {
    /// Rows were not skewed: partial sums from different chunks meet.
    Unskewed,
    /// The global mode changed while this window's chunks were still in the column.
    ModeSwitch { gap: u64, needed: u64 },
}

impl std::fmt::Display for Hazard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hazard::Unskewed => write!(f, "unskewed input (rows must be fed one cycle apart)"),
            Hazard::ModeSwitch { gap, needed } => {
                write!(f, "precision switch after {gap} idle cycles (needs {needed})")
            }
        }
    }
}

/// For each window and column: the hazard that corrupts that result, if any.
pub fn hazards(n: u64, m: u64, windows: &[ScheduledWindow]) -> Vec<Vec<Option<Hazard>>> {
    windows
        .iter()
        .enumerate()
        .map(|(i, w)| {
            (0..m)
                .map(|col| {
                    if !w.skewed {
                        return Some(Hazard::Unskewed);
                    }
                    // The first later window in another mode switches the (global, combinational) mode.
                    let next = windows[i + 1..].iter().find(|x| x.mode != w.mode)?;
                    let last_chunk = w.start + w.t - 1 + (n - 1) + col;
                    let gap = next.start.saturating_sub(w.start + w.t);
                    (last_chunk >= next.start).then_some(Hazard::ModeSwitch { gap, needed: mode_switch_gap(n, m) })
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Operands that are plain numbers: handle = value + 2^31.
    struct Plain;
    impl Operands for Plain {
        fn product(&self, a: u64, w: u64) -> i64 {
            (a as i64 - (1 << 31)) * (w as i64 - (1 << 31))
        }
    }
    fn h(v: i64) -> u64 {
        (v + (1 << 31)) as u64
    }

    /// Run back-to-back windows of scalar dot products x[w][k] . W[m][k] and collect (window, col, cycle, value).
    fn run(n: usize, m: usize, x: &[Vec<i64>], wt: &[Vec<i64>]) -> Vec<(u64, usize, u64, i64)> {
        let k = x[0].len();
        let t = k.div_ceil(n) as u64;
        let s = Stream { start: 3, windows: x.len() as u64, t };
        let mut arr = SystolicArray::new(n, m, 32);
        let mut out = Vec::new();
        for cycle in 0..s.end() + (n + m) as u64 + 3 {
            for col in 0..m {
                let (valid, v) = arr.output(col);
                if valid {
                    out.push((s.window_of_result(cycle, n, col).unwrap(), col, cycle, v));
                }
            }
            let act: Vec<Option<u64>> = (0..n)
                .map(|row| s.act_slot(cycle, row).and_then(|(w, j)| x[w as usize].get(j as usize * n + row).map(|v| h(*v))))
                .collect();
            let weight = |row: usize, col: usize, _: Option<u64>| {
                s.weight_slot(cycle, row, col).and_then(|(_, j)| wt[col].get(j as usize * n + row).map(|v| h(*v)))
            };
            let inp = CycleInputs { act: &act, weight, clear: s.clear_at(cycle, n), valid: s.valid_at(cycle, n) };
            arr.step(&inp, &Plain);
        }
        out
    }

    #[test]
    fn results_are_dot_products_at_s_plus_t_plus_n_plus_m() {
        for (n, m, k, windows) in [(1usize, 1usize, 1usize, 3usize), (1, 1, 3, 2), (2, 2, 7, 3), (4, 4, 4, 3), (4, 2, 13, 2), (3, 5, 1, 4)] {
            let x: Vec<Vec<i64>> = (0..windows).map(|w| (0..k).map(|i| (i as i64 * 7 + w as i64 * 3) % 11 - 5).collect()).collect();
            let wt: Vec<Vec<i64>> = (0..m).map(|c| (0..k).map(|i| (i as i64 * 5 + c as i64) % 9 - 4).collect()).collect();
            let out = run(n, m, &x, &wt);
            assert_eq!(out.len(), windows * m, "{n}x{m} k={k}");
            let t = k.div_ceil(n) as u64;
            let s = Stream { start: 3, windows: windows as u64, t };
            for (w, col, cycle, v) in out {
                let expect: i64 = x[w as usize].iter().zip(&wt[col]).map(|(a, b)| a * b).sum();
                assert_eq!(v, expect, "{n}x{m} window {w} col {col}");
                assert_eq!(cycle, s.result_cycle(w, n, col));
                assert_eq!(cycle, 3 + w * t + t + n as u64 + col as u64);
            }
        }
    }

    #[test]
    fn mode_switch_hazards_follow_the_rtl() {
        // 4x4, T = 2, windows of modes 8x8 then 2x2 then 4x8 with gaps of 3 (RTL: columns 1..3 of the first two wrong).
        let mk = |gap: u64| {
            let mut v = Vec::new();
            let mut s = 0;
            for (i, mode) in [(8, 8), (2, 2), (4, 8)].into_iter().enumerate() {
                if i > 0 {
                    s += gap;
                }
                v.push(ScheduledWindow { start: s, t: 2, mode, skewed: true });
                s += 2;
            }
            v
        };
        let h3 = hazards(4, 4, &mk(3));
        let bad: Vec<Vec<bool>> = h3.iter().map(|w| w.iter().map(|h| h.is_some()).collect()).collect();
        assert_eq!(bad, vec![vec![false, true, true, true], vec![false, true, true, true], vec![false; 4]]);
        let h5 = hazards(4, 4, &mk(5));
        let bad: Vec<Vec<bool>> = h5.iter().map(|w| w.iter().map(|h| h.is_some()).collect()).collect();
        assert_eq!(bad, vec![vec![false, false, false, true], vec![false, false, false, true], vec![false; 4]]);
        assert!(hazards(4, 4, &mk(6)).iter().flatten().all(|h| h.is_none()));
        let same_mode = vec![ScheduledWindow { start: 0, t: 2, mode: (8, 8), skewed: true }, ScheduledWindow { start: 2, t: 2, mode: (8, 8), skewed: true }];
        assert!(hazards(4, 4, &same_mode).iter().flatten().all(|h| h.is_none()));
        let unskewed = vec![ScheduledWindow { start: 0, t: 2, mode: (8, 8), skewed: false }];
        assert_eq!(hazards(2, 2, &unskewed)[0], vec![Some(Hazard::Unskewed); 2]);
    }
}
