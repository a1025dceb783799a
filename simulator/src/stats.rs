//! What a simulation reports: per-layer statistics and their totals.

use crate::units::{Bits, Cycles, NanoJoules};
use serde::Serialize;
use std::ops::AddAssign;

/// Data moved, in bits, per buffer and for DRAM.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    pub wbuf_read: Bits,
    pub wbuf_write: Bits,
    pub ibuf_read: Bits,
    pub ibuf_write: Bits,
    pub obuf_read: Bits,
    pub obuf_write: Bits,
    pub dram_read: Bits,
    pub dram_write: Bits,
}

impl Counters {
    /// Every counter multiplied by `k` (a layer run `k` times).
    pub fn scaled(&self, k: u64) -> Self {
        Self {
            wbuf_read: self.wbuf_read * k,
            wbuf_write: self.wbuf_write * k,
            ibuf_read: self.ibuf_read * k,
            ibuf_write: self.ibuf_write * k,
            obuf_read: self.obuf_read * k,
            obuf_write: self.obuf_write * k,
            dram_read: self.dram_read * k,
            dram_write: self.dram_write * k,
        }
    }
}

impl AddAssign for Counters {
    fn add_assign(&mut self, o: Self) {
        self.wbuf_read += o.wbuf_read;
        self.wbuf_write += o.wbuf_write;
        self.ibuf_read += o.ibuf_read;
        self.ibuf_write += o.ibuf_write;
        self.obuf_read += o.obuf_read;
        self.obuf_write += o.obuf_write;
        self.dram_read += o.dram_read;
        self.dram_write += o.dram_write;
    }
}

/// Energy of a layer by component, in nJ.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct EnergyBreakdown {
    pub core: NanoJoules,
    pub wbuf: NanoJoules,
    pub ibuf: NanoJoules,
    pub obuf: NanoJoules,
    pub dram: NanoJoules,
    /// Leakage of core and buffers over the layer's cycles (0 in the reference model, which has none).
    pub leakage: NanoJoules,
}

impl EnergyBreakdown {
    pub fn total(&self) -> NanoJoules {
        self.core + self.wbuf + self.ibuf + self.obuf + self.dram + self.leakage
    }

    pub fn scaled(&self, k: f64) -> Self {
        Self {
            core: self.core * k,
            wbuf: self.wbuf * k,
            ibuf: self.ibuf * k,
            obuf: self.obuf * k,
            dram: self.dram * k,
            leakage: self.leakage * k,
        }
    }
}

impl AddAssign for EnergyBreakdown {
    fn add_assign(&mut self, o: Self) {
        self.core += o.core;
        self.wbuf += o.wbuf;
        self.ibuf += o.ibuf;
        self.obuf += o.obuf;
        self.dram += o.dram;
        self.leakage += o.leakage;
    }
}

/// Where the array's idle cycles went (cycle model).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StallBreakdown {
    /// Waiting for a DRAM read (a load) to finish.
    pub dram_read: Cycles,
    /// Waiting for a DRAM write (a store that frees an output half, or the layer's last store).
    pub dram_write: Cycles,
    /// The pipeline's drain after the last chunk (skew, partial-sum chain, accumulator).
    pub fill_drain: Cycles,
}

impl AddAssign for StallBreakdown {
    fn add_assign(&mut self, o: Self) {
        self.dram_read += o.dram_read;
        self.dram_write += o.dram_write;
        self.fill_drain += o.fill_drain;
    }
}

/// The result of simulating one layer (or the total of several).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LayerStats {
    pub name: String,
    /// Total cycles = compute + stall.
    pub cycles: Cycles,
    /// Cycles the array computes.
    pub compute_cycles: Cycles,
    /// Cycles the array waits (on memory, fill, drain).
    pub stall_cycles: Cycles,
    /// Latency at the config's clock, in milliseconds.
    pub latency_ms: f64,
    pub counters: Counters,
    /// Energy breakdown; `None` when the SRAM table has no figure for a buffer.
    pub energy: Option<EnergyBreakdown>,
    /// Multiply-accumulates the layer performs.
    pub macs: u64,
    /// The chosen mapping, in the model's own words (tiling and loop order).
    pub mapping: String,
    /// MACs / (cycles x the array's peak products per cycle at the layer's precision).
    pub utilization: f64,
    /// Stall attribution, for models that attribute stalls.
    pub stalls: Option<StallBreakdown>,
}

impl LayerStats {
    /// The sum of several layers' statistics, named `name`.
    pub fn total<'a>(name: &str, layers: impl IntoIterator<Item = &'a LayerStats>) -> LayerStats {
        let mut t = LayerStats {
            name: name.to_string(),
            cycles: Cycles::ZERO,
            compute_cycles: Cycles::ZERO,
            stall_cycles: Cycles::ZERO,
            latency_ms: 0.0,
            counters: Counters::default(),
            energy: Some(EnergyBreakdown::default()),
            macs: 0,
            mapping: String::new(),
            utilization: 0.0,
            stalls: Some(StallBreakdown::default()),
        };
        // Products the array could have done in the layers' cycles (at each layer's precision).
        let mut capacity = 0.0;
        for l in layers {
            if l.utilization > 0.0 {
                capacity += l.macs as f64 / l.utilization;
            }
            t.stalls = match (t.stalls, l.stalls) {
                (Some(mut a), Some(b)) => {
                    a += b;
                    Some(a)
                }
                _ => None,
            };
            t.cycles += l.cycles;
            t.compute_cycles += l.compute_cycles;
            t.stall_cycles += l.stall_cycles;
            t.latency_ms += l.latency_ms;
            t.counters += l.counters;
            t.macs += l.macs;
            t.energy = match (t.energy, l.energy) {
                (Some(mut a), Some(b)) => {
                    a += b;
                    Some(a)
                }
                _ => None,
            };
        }
        if capacity > 0.0 {
            t.utilization = t.macs as f64 / capacity;
        }
        t
    }

    /// Total energy in nJ, when known.
    pub fn energy_total_nj(&self) -> Option<f64> {
        self.energy.map(|e| e.total().get())
    }
}
