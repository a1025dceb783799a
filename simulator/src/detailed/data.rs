//! The operands a detailed run computes on (seeded random or given as JSON), the direct
//! convolution its output is checked against, and what the run measured ([`DetailedRun`]).

use crate::brick::operand_range;
use crate::cycle::{Mapping, Problem, RunTotals};
use crate::stats::LayerStats;
use bitfusion_util::splitmix;

/// Seeded operands of a layer: inputs [batch][in_h][in_w][in_c], weights [out_c][k][k][cig].
#[derive(Clone, Debug, PartialEq)]
pub struct LayerData {
    pub inputs: Vec<i32>,
    pub weights: Vec<i32>,
}

impl LayerData {
    /// Random signed operands in each tensor's bit range.
    pub fn random(p: &Problem, seed: u64) -> Self {
        let mut s = seed;
        let mut draw = |bits: u64| {
            let (lo, hi) = operand_range(bits as u32, true);
            (lo + (splitmix(&mut s) % (hi - lo + 1) as u64) as i64) as i32
        };
        let inputs = (0..p.batch * p.in_h * p.in_w * p.in_c).map(|_| draw(p.a_bits)).collect();
        let weights = (0..p.out_c * p.k * p.k * p.cig).map(|_| draw(p.w_bits)).collect();
        LayerData { inputs, weights }
    }

    pub(super) fn x(&self, p: &Problem, b: u64, y: i64, x: i64, c: u64) -> i32 {
        if y < 0 || x < 0 || y >= p.in_h as i64 || x >= p.in_w as i64 {
            return 0;
        }
        self.inputs[(((b * p.in_h + y as u64) * p.in_w + x as u64) * p.in_c + c) as usize]
    }

    pub(super) fn w(&self, p: &Problem, oc: u64, ky: u64, kx: u64, ci: u64) -> i32 {
        self.weights[(((oc * p.k + ky) * p.k + kx) * p.cig + ci) as usize]
    }

    /// The direct convolution, wrapped to 32 bits like the accumulators.
    pub fn direct(&self, p: &Problem) -> Vec<i64> {
        let mut out = vec![0i64; (p.batch * p.out_h * p.out_w * p.out_c) as usize];
        for b in 0..p.batch {
            for y in 0..p.out_h {
                for x in 0..p.out_w {
                    for oc in 0..p.out_c {
                        let g = oc / p.cog;
                        let mut acc = 0i64;
                        for ky in 0..p.k {
                            for kx in 0..p.k {
                                let iy = (y * p.stride + ky) as i64 - p.pad as i64;
                                let ix = (x * p.stride + kx) as i64 - p.pad as i64;
                                for ci in 0..p.cig {
                                    acc += self.x(p, b, iy, ix, g * p.cig + ci) as i64 * self.w(p, oc, ky, kx, ci) as i64;
                                }
                            }
                        }
                        out[(((b * p.out_h + y) * p.out_w + x) * p.out_c + oc) as usize] = acc as i32 as i64;
                    }
                }
            }
        }
        out
    }

    /// Operands given by the user: JSON `{"inputs": [...], "weights": [...]}` with inputs in
    /// [batch][in_h][in_w][in_c] order and weights in [out_c][k][k][in_c / groups] order, each value
    /// in its operand's signed range.
    pub fn from_json(text: &str, origin: &str, p: &Problem) -> Result<LayerData, String> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Doc {
            inputs: Vec<i64>,
            weights: Vec<i64>,
        }
        let doc: Doc = serde_json::from_str(text).map_err(|e| format!("{origin}: {e}"))?;
        let check = |what: &str, v: &[i64], len: u64, bits: u64| -> Result<Vec<i32>, String> {
            if v.len() as u64 != len {
                return Err(format!("{origin}: {what} has {} values, the layer needs {len}", v.len()));
            }
            let (lo, hi) = operand_range(bits as u32, true);
            if let Some((i, x)) = v.iter().enumerate().find(|(_, x)| **x < lo || **x > hi) {
                return Err(format!("{origin}: {what}[{i}] = {x} is outside the {bits}-bit signed range {lo}..={hi}"));
            }
            Ok(v.iter().map(|x| *x as i32).collect())
        };
        Ok(LayerData {
            inputs: check("inputs", &doc.inputs, p.batch * p.in_h * p.in_w * p.in_c, p.a_bits)?,
            weights: check("weights", &doc.weights, p.out_c * p.k * p.k * p.cig, p.w_bits)?,
        })
    }
}

/// What the detailed run measured.
#[derive(Clone, Debug, PartialEq)]
pub struct DetailedRun {
    pub mapping: Mapping,
    /// Cycles, stalls and accesses, as the fast engine's [`RunTotals`] counts them.
    pub totals: RunTotals,
    /// DRAM bus beats that carried the run's traffic.
    pub beats: u64,
    /// Fusion-unit cycles stepped.
    pub unit_cycles: u64,
    /// The layer's output [batch][out_h][out_w][out_c] (32-bit wrapped) and how many elements
    /// differ from the direct convolution.
    pub output: Vec<i64>,
    pub mismatches: usize,
    /// (start, end) of each tile's streaming.
    pub compute: Vec<(u64, u64)>,
}

impl DetailedRun {
    /// Does this run agree with the fast engine's statistics for the layer?
    pub fn agrees_with(&self, fast: &LayerStats) -> bool {
        self.totals.end == fast.cycles.0 && self.totals.compute_cycles == fast.compute_cycles.0
    }
}
