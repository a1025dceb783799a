//! The original simulator's tile cost (`optimizer.get_stats_fast`) and its
//! exhaustive tiling and loop-order search (`optimize_for_order`), exactly.
//!
//! All sizes are in bits, all times in cycles (MODEL.md sections 3, 5, 6).
//! `tile_stats` (compiled for the tests) is a line-by-line port used as the specification;
//! [`search`] gives the same answer faster, by evaluating each tiling's
//! order-independent terms once and only the distinct loop orders.

use crate::units::ceil_div;

/// The five tiled loops, in the original's naming.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Loop {
    B = 0,
    Ow = 1,
    Oh = 2,
    Ic = 3,
    Oc = 4,
}

pub const LOOPS: [Loop; 5] = [Loop::B, Loop::Ow, Loop::Oh, Loop::Ic, Loop::Oc];

/// The 120 loop orders (outermost first) in the order the original visits them: the iteration
/// order of Python 2's `set(permutations(['B/b', 'OW/ow', 'OH/oh', 'IC/ic', 'OC/oc']))` (Python 2
/// hashes strings and tuples deterministically; printed by Python 2.7.18 on x86-64). Each order's
/// best tiling comes back in this order and the first one with the fewest cycles wins unless a
/// later one has strictly less energy, so when energies cannot compare (NaN: an SRAM bank CACTI
/// cannot model) the position in this list decides (sweep.csv's `loop_order` column shows it).
pub const ORIGINAL_ORDERS: [[Loop; 5]; 120] = {
    use Loop::*;
    [
    [Oc, Ic, B, Oh, Ow], [B, Oc, Ow, Ic, Oh], [Oh, B, Ow, Oc, Ic], [B, Ic, Oc, Ow, Oh],
    [Oc, B, Ow, Ic, Oh], [Oc, Ic, Oh, B, Ow], [Oh, Ow, Oc, Ic, B], [Oc, Oh, B, Ow, Ic],
    [Oc, Oh, Ic, B, Ow], [Ow, Oh, Ic, B, Oc], [Ic, Oh, Oc, B, Ow], [B, Oc, Ic, Ow, Oh],
    [Oh, Ow, Ic, Oc, B], [Oc, Ic, Ow, Oh, B], [B, Ic, Oh, Oc, Ow], [Oc, B, Ic, Ow, Oh],
    [B, Oc, Ic, Oh, Ow], [Oc, Ow, B, Ic, Oh], [Ic, Oc, Ow, B, Oh], [Ow, Ic, Oh, B, Oc],
    [Ow, Oc, Oh, B, Ic], [Oc, Ic, Ow, B, Oh], [Oh, B, Ic, Ow, Oc], [Ic, Oh, Ow, B, Oc],
    [Ow, B, Oc, Oh, Ic], [Oh, Oc, Ow, B, Ic], [Ow, Oh, Ic, Oc, B], [B, Oc, Oh, Ic, Ow],
    [B, Ow, Oc, Oh, Ic], [B, Ic, Ow, Oc, Oh], [Ow, Oh, B, Ic, Oc], [Ic, B, Oc, Oh, Ow],
    [Oh, B, Oc, Ow, Ic], [Ow, Ic, B, Oc, Oh], [Oh, Ic, B, Ow, Oc], [Oc, Oh, B, Ic, Ow],
    [B, Ow, Oh, Oc, Ic], [B, Ow, Oh, Ic, Oc], [B, Oh, Ow, Ic, Oc], [B, Ow, Oc, Ic, Oh],
    [Ow, B, Oc, Ic, Oh], [Ic, Oc, B, Oh, Ow], [Oh, Ow, Ic, B, Oc], [Oc, Ic, B, Ow, Oh],
    [Oh, Ic, Oc, B, Ow], [Oh, Ic, Oc, Ow, B], [Ic, Oh, B, Oc, Ow], [Oc, B, Oh, Ow, Ic],
    [B, Ic, Ow, Oh, Oc], [Ic, Ow, Oc, B, Oh], [Oc, B, Oh, Ic, Ow], [Ic, Oc, Ow, Oh, B],
    [Oh, Oc, Ic, Ow, B], [B, Oc, Oh, Ow, Ic], [Ic, Oh, Oc, Ow, B], [Oh, Ic, Ow, B, Oc],
    [Oh, B, Ic, Oc, Ow], [Ic, B, Ow, Oc, Oh], [Ow, Oh, Oc, B, Ic], [Oc, Ow, Oh, Ic, B],
    [Oh, Ow, Oc, B, Ic], [Ic, Ow, Oh, Oc, B], [Ow, B, Oh, Oc, Ic], [Ow, Oh, Oc, Ic, B],
    [Ow, Ic, Oc, B, Oh], [Oc, Ic, Oh, Ow, B], [Oh, Ic, Ow, Oc, B], [Ic, Oc, B, Ow, Oh],
    [Ic, Ow, B, Oc, Oh], [Oc, Oh, Ow, Ic, B], [Ow, Oc, B, Ic, Oh], [Ic, Oc, Oh, B, Ow],
    [Ow, B, Ic, Oh, Oc], [Oc, Ow, Oh, B, Ic], [Ic, B, Ow, Oh, Oc], [Oh, B, Ow, Ic, Oc],
    [B, Ic, Oc, Oh, Ow], [Ic, Oc, Oh, Ow, B], [Ic, B, Oc, Ow, Oh], [B, Oh, Oc, Ic, Ow],
    [Ow, Ic, Oc, Oh, B], [Oh, Ic, B, Oc, Ow], [Oh, Ow, B, Oc, Ic], [Oh, Oc, Ic, B, Ow],
    [Ic, Oh, B, Ow, Oc], [Oc, Oh, Ic, Ow, B], [Oh, Oc, B, Ow, Ic], [B, Ic, Oh, Ow, Oc],
    [Ow, B, Oh, Ic, Oc], [Ic, Ow, Oc, Oh, B], [Oc, Ow, Ic, B, Oh], [Oc, B, Ic, Oh, Ow],
    [Ow, Oc, Ic, Oh, B], [Ow, Ic, Oh, Oc, B], [Ow, Oc, Oh, Ic, B], [Oh, B, Oc, Ic, Ow],
    [Oh, Oc, B, Ic, Ow], [B, Oh, Ic, Ow, Oc], [Oc, Ow, B, Oh, Ic], [Ic, B, Oh, Ow, Oc],
    [Ic, Ow, B, Oh, Oc], [Ic, Oh, Ow, Oc, B], [B, Oh, Ow, Oc, Ic], [Ow, Oc, B, Oh, Ic],
    [B, Ow, Ic, Oh, Oc], [Ow, B, Ic, Oc, Oh], [Oc, Ow, Ic, Oh, B], [Ic, B, Oh, Oc, Ow],
    [Oh, Ow, B, Ic, Oc], [Ow, Oh, B, Oc, Ic], [Oc, B, Ow, Oh, Ic], [Oh, Oc, Ow, Ic, B],
    [Ow, Oc, Ic, B, Oh], [B, Oh, Ic, Oc, Ow], [B, Ow, Ic, Oc, Oh], [B, Oh, Oc, Ow, Ic],
    [Ow, Ic, B, Oh, Oc], [B, Oc, Ow, Oh, Ic], [Ic, Ow, Oh, B, Oc], [Oc, Oh, Ow, B, Ic],
    ]
};

/// A sequence of distinct loops (outermost first) as an index below 6^5.
#[inline]
fn seq_code(outer_to_inner: impl Iterator<Item = Loop>) -> usize {
    outer_to_inner.fold((0, 1), |(code, place), l| (code + (l as usize + 1) * place, place * 6)).0
}

/// For every sequence of distinct loops (outermost first, by [`seq_code`]): the position in
/// [`ORIGINAL_ORDERS`] of the first order whose loops of that set come in that sequence. A tiling
/// whose other loops have one tile costs the same under all those orders, and the original keeps
/// the first of them.
fn first_rank_table() -> &'static [u8; 7776] {
    static TABLE: std::sync::OnceLock<[u8; 7776]> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = [u8::MAX; 7776];
        for (rank, order) in ORIGINAL_ORDERS.iter().enumerate() {
            for mask in 0u32..32 {
                let code = seq_code(order.iter().copied().filter(|l| mask & (1 << *l as u32) != 0));
                t[code] = t[code].min(rank as u8);
            }
        }
        t
    })
}

impl Loop {
    pub fn label(self) -> &'static str {
        match self {
            Loop::B => "B/b",
            Loop::Ow => "OW/ow",
            Loop::Oh => "OH/oh",
            Loop::Ic => "IC/ic",
            Loop::Oc => "OC/oc",
        }
    }
}

/// The three buffered data types ("namespaces").
const WGT: usize = 0;
const ACT: usize = 1;
const OUT: usize = 2;

/// `tile_deps`: which loops index which namespace ([loop][namespace]).
const DEPS: [[bool; 3]; 5] = [
    // wgt   act    out
    [false, true, true], // B
    [false, true, true], // OW
    [false, true, true], // OH
    [true, true, false], // IC
    [true, false, true], // OC
];

/// Partial sums are 32-bit everywhere (the original's `oprec`).
pub const PSUM_BITS: u64 = 32;

/// One layer as the original sees it, on one array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Square kernel side.
    pub k: u64,
    /// Square output side.
    pub o: u64,
    pub s: u64,
    pub ic: u64,
    pub oc: u64,
    pub b: u64,
    /// Activation bits.
    pub iprec: u64,
    /// Weight bits.
    pub wprec: u64,
    pub im2col: bool,
    /// Array rows (N) and columns (M).
    pub n: u64,
    pub m: u64,
    /// Fusion-unit throughput multiplier (products per fusion unit per cycle).
    pub pf: u64,
    /// Half of each buffer, in bits (double buffering): [wgt, act, out].
    pub half_buffer_bits: [u64; 3],
    /// DRAM interface width, bits per cycle.
    pub if_width: u64,
}

/// `get_perf_factor`: floor(pmax / max(a, pmin)) * floor(pmax / max(w, pmin)).
pub fn perf_factor(pmax: u64, pmin: u64, a_bits: u64, w_bits: u64) -> u64 {
    (pmax / a_bits.max(pmin)) * (pmax / w_bits.max(pmin))
}

/// Tile sizes and their counts along each loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tiling {
    /// Tile size per loop (ow = oh: spatial tiles are square).
    pub size: [u64; 5],
    /// Number of tiles per loop.
    pub count: [u64; 5],
}

impl Tiling {
    fn new(p: &Problem, b: u64, o: u64, ic: u64, oc: u64) -> Self {
        Tiling {
            size: [b, o, o, ic, oc],
            count: [ceil_div(p.b, b), ceil_div(p.o, o), ceil_div(p.o, o), ceil_div(p.ic, ic), ceil_div(p.oc, oc)],
        }
    }

    pub fn describe(&self) -> String {
        LOOPS.iter().map(|l| format!("{}={}x{}", l.label(), self.count[*l as usize], self.size[*l as usize])).collect::<Vec<_>>().join("|")
    }
}

/// The raw counters of one (tiling, order), in bits and cycles.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawStats {
    pub total_cycles: u64,
    pub stall_cycles: u64,
    pub compute_cycles: u64,
    /// SRAM reads and writes: [wgt, act, out].
    pub sram_read: [u64; 3],
    pub sram_write: [u64; 3],
    pub dram_read: u64,
    pub dram_write: u64,
}

/// Energy weights used by the original to break cycle ties, in one unit (nJ per bit / per cycle).
/// A buffer CACTI cannot model has NaN figures, as in the original: every energy is then NaN, no
/// energy comparison holds, and the first mapping with the fewest cycles is kept.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TieBreakEnergy {
    pub core_per_cycle: f64,
    /// [wgt, act, out] read and write energy per bit.
    pub read_per_bit: [f64; 3],
    pub write_per_bit: [f64; 3],
    pub dram_per_bit: f64,
}

impl TieBreakEnergy {
    /// `Stats.get_energy`, summed in the original's order.
    pub fn energy(&self, s: &RawStats) -> f64 {
        let mut e = s.compute_cycles as f64 * self.core_per_cycle;
        e += s.sram_read[WGT] as f64 * self.read_per_bit[WGT];
        e += s.sram_write[WGT] as f64 * self.write_per_bit[WGT];
        e += s.sram_read[ACT] as f64 * self.read_per_bit[ACT];
        e += s.sram_write[ACT] as f64 * self.write_per_bit[ACT];
        e += s.sram_read[OUT] as f64 * self.read_per_bit[OUT];
        e += s.sram_write[OUT] as f64 * self.write_per_bit[OUT];
        e += s.dram_read as f64 * self.dram_per_bit;
        e += s.dram_write as f64 * self.dram_per_bit;
        e
    }
}

/// Order-independent part of one tiling's cost.
#[derive(Clone, Copy, Debug)]
struct TileTerms {
    /// Tile footprints [wgt, act, out], bits.
    footprint: [u64; 3],
    compute_cycles: u64,
    /// SRAM reads from the inner dataflow [wgt, act, out] and the extra out writes.
    inner_read: [u64; 3],
    inner_out_write: u64,
}

fn tile_terms(p: &Problem, t: &Tiling) -> Option<TileTerms> {
    let [b, ow, oh, ic, oc] = t.size;
    let k = p.k;
    let np = p.n * p.pf;
    let wgt = ceil_div(k * k * ic, np) * np * oc * p.wprec;
    let act = if p.im2col {
        ow * oh * k * k * ic * b * p.iprec
    } else {
        let iw = k + (ow - 1) * p.s;
        let ih = k + (oh - 1) * p.s;
        iw * ih * ic * b * p.iprec
    };
    let out = ow * oh * ceil_div(oc, p.m) * p.m * b * PSUM_BITS;
    let footprint = [wgt, act, out];
    if (0..3).any(|ns| footprint[ns] > p.half_buffer_bits[ns]) {
        return None;
    }
    let num_tiles: u64 = t.count.iter().product();
    // Inner dataflow: the cheapest of input/output/weight stationary by the original's bit proxy.
    let is_loop = ceil_div(oc, p.m) * p.m;
    let os_loop = if p.im2col { ceil_div(ic * k * k, np) * np } else { ceil_div(ic, np) * np * k * k };
    let ws_loop = b * oh * ow;
    let (is_l, os_l, ws_l) = (is_loop as u128, os_loop as u128, ws_loop as u128);
    let (ip, wp, op) = (p.iprec as u128, p.wprec as u128, PSUM_BITS as u128);
    let is_e = os_l * ws_l * (ip + is_l * (wp + op));
    let os_e = is_l * ws_l * (op + os_l * (ip + wp));
    let ws_e = os_l * is_l * (wp + ws_l * (ip + op));
    let min_e = is_e.min(os_e).min(ws_e);
    let macs = k * k * ic * oh * ow * b * oc;
    let (act_rd, out_rw, wgt_rd) = if is_e == min_e {
        (k * k * ic * oh * ow * b * p.iprec, macs * PSUM_BITS, macs * p.wprec)
    } else if os_e == min_e {
        (macs * p.iprec, oc * oh * ow * b * PSUM_BITS, macs * p.wprec)
    } else {
        (macs * p.iprec, macs * PSUM_BITS, k * k * ic * oc * p.wprec)
    };
    let compute_tile = if p.im2col {
        (b * oh * ow) * ceil_div(oc, p.m) * ceil_div(k * k * ic, np)
    } else {
        b * ceil_div(oc, p.m) * ow * oh * k * k * ceil_div(ic, np)
    };
    Some(TileTerms {
        footprint,
        compute_cycles: num_tiles * compute_tile,
        inner_read: [num_tiles * wgt_rd, num_tiles * act_rd, num_tiles * out_rw],
        inner_out_write: num_tiles * out_rw,
    })
}

/// Promote one namespace's fills through the loops, innermost first:
/// returns (total DRAM traffic, largest size that still fit in half the buffer).
#[inline]
fn promote(footprint: u64, limit: u64, ns: usize, inner_to_outer: &[Loop], count: &[u64; 5]) -> (u64, u64) {
    let mut size = footprint;
    let mut max = footprint;
    let mut promoting = true;
    for &l in inner_to_outer {
        let n = count[l as usize];
        if promoting {
            if DEPS[l as usize][ns] {
                size *= n;
                if size > limit {
                    promoting = false;
                } else {
                    max = size;
                }
            }
        } else {
            size *= n;
        }
    }
    (size, max)
}

fn finish(p: &Problem, terms: &TileTerms, t: &Tiling, inner_to_outer: &[Loop]) -> RawStats {
    let mut total = [0u64; 3];
    let mut max = [0u64; 3];
    for ns in 0..3 {
        (total[ns], max[ns]) = promote(terms.footprint[ns], p.half_buffer_bits[ns], ns, inner_to_outer, &t.count);
    }
    let dram_read = total[WGT] + total[ACT] + total[OUT];
    let dram_write = total[OUT];
    let initial = max[WGT] + max[ACT] + max[OUT];
    let final_ = max[OUT];
    let latency = ceil_div(initial, p.if_width) + ceil_div(final_, p.if_width);
    let middle = dram_read + dram_write - initial - final_;
    let memory_cycles = ceil_div(middle, p.if_width);
    let stall = memory_cycles.saturating_sub(terms.compute_cycles) + latency;
    RawStats {
        total_cycles: terms.compute_cycles + stall,
        stall_cycles: stall,
        compute_cycles: terms.compute_cycles,
        sram_read: [terms.inner_read[WGT], terms.inner_read[ACT], total[OUT] + terms.inner_read[OUT]],
        sram_write: [total[WGT], total[ACT], total[OUT] + terms.inner_out_write],
        dram_read,
        dram_write,
    }
}

/// `get_stats_fast` for one tiling and one loop order (`order[0]` outermost);
/// `None` when a tile does not fit in half of its buffer.
#[cfg(test)] // Used by the tests only (the crate does not export it).
pub fn tile_stats(p: &Problem, t: &Tiling, order: &[Loop; 5]) -> Option<RawStats> {
    let terms = tile_terms(p, t)?;
    let mut inner_to_outer = *order;
    inner_to_outer.reverse();
    Some(finish(p, &terms, t, &inner_to_outer))
}

/// Tile-size candidates along one dimension of extent `x`: min(2^i * unit, x) for
/// i = 0..=ceil(log2(ceil(x / unit))), without repeats.
pub fn candidates(x: u64, unit: u64) -> Vec<u64> {
    let steps = crate::units::ceil_log2(ceil_div(x, unit));
    let mut v: Vec<u64> = (0..=steps).map(|i| ((1u64 << i) * unit).min(x)).collect();
    v.dedup();
    v
}

/// The winning mapping of a search.
#[derive(Clone, Debug, PartialEq)]
pub struct Best {
    pub stats: RawStats,
    pub tiling: Tiling,
    /// Loop order, outermost first (loops with one tile placed outermost).
    pub order: [Loop; 5],
    pub energy: f64,
}

impl Best {
    pub fn describe_order(&self) -> String {
        self.order.iter().map(|l| l.label()).collect::<Vec<_>>().join(">")
    }
}

/// Every permutation of `0..k`, for k = 0..=5.
fn permutations(k: usize) -> Vec<Vec<usize>> {
    if k == 0 {
        return vec![vec![]];
    }
    let mut out = Vec::new();
    for p in permutations(k - 1) {
        for pos in 0..=p.len() {
            let mut q = p.clone();
            q.insert(pos, k - 1);
            out.push(q);
        }
    }
    out.sort();
    out
}

/// Whether a mapping of `cycles` and `energy` replaces the incumbent in the original's scan:
/// `best_cycles > cycles or (best_cycles == cycles and best_energy > energy)`. Comparisons with
/// NaN are false, so on equal cycles a NaN energy never replaces, and is never replaced.
#[inline]
fn replaces(cycles: u64, energy: f64, best: &Best) -> bool {
    cycles < best.stats.total_cycles || (cycles == best.stats.total_cycles && energy < best.energy)
}

/// The exhaustive search: minimum cycles, ties broken by minimum energy, remaining ties (equal
/// energies, or NaN energies that compare with nothing) by the original's visiting order: orders in
/// [`ORIGINAL_ORDERS`] sequence, then tilings b -> o -> ic -> oc. `None` when no tiling fits.
///
/// The same winner as [`search_naive`] (the original's scan), found differently: tilings outside,
/// only the distinct loop orders of each tiling inside (loops with one tile change nothing; OW and
/// OH are interchangeable), each standing for the first of the original's orders it covers. All
/// energies of a problem are NaN or none is (the per-bit figures are constants of the config).
pub fn search(p: &Problem, energy: &TieBreakEnergy) -> Option<Best> {
    let perms: Vec<Vec<Vec<usize>>> = (0..=5).map(permutations).collect();
    let ranks = first_rank_table();
    let cand_b = candidates(p.b, 1);
    let cand_o = candidates(p.o, 1);
    let cand_ic = candidates(p.ic, 1);
    let cand_oc = if p.im2col { candidates(p.oc, 1) } else { candidates(p.oc, p.m) };
    let mut best: Option<Best> = None;
    // The position in ORIGINAL_ORDERS of the best's order.
    let mut best_rank = u8::MAX;
    let mut nontrivial: Vec<Loop> = Vec::with_capacity(5);
    let mut seq: Vec<Loop> = Vec::with_capacity(5);
    for &b in &cand_b {
        for &o in &cand_o {
            for &ic in &cand_ic {
                for &oc in &cand_oc {
                    let t = Tiling::new(p, b, o, ic, oc);
                    let Some(terms) = tile_terms(p, &t) else { continue };
                    if let Some(bst) = &best {
                        // cycles >= compute + first fill + last drain, whatever the order.
                        let lower = terms.compute_cycles
                            + ceil_div(terms.footprint.iter().sum::<u64>(), p.if_width)
                            + ceil_div(terms.footprint[OUT], p.if_width);
                        if lower > bst.stats.total_cycles {
                            continue;
                        }
                    }
                    // Loops with one tile change nothing; OW and OH are interchangeable (same deps, same count).
                    nontrivial.clear();
                    nontrivial.extend(LOOPS.iter().copied().filter(|l| t.count[*l as usize] > 1));
                    let spatial_pair = nontrivial.contains(&Loop::Ow) && nontrivial.contains(&Loop::Oh);
                    for perm in &perms[nontrivial.len()] {
                        seq.clear();
                        seq.extend(perm.iter().map(|&i| nontrivial[i]));
                        if spatial_pair {
                            let pw = seq.iter().position(|l| *l == Loop::Ow);
                            let ph = seq.iter().position(|l| *l == Loop::Oh);
                            if pw > ph {
                                continue;
                            }
                        }
                        let stats = finish(p, &terms, &t, &seq);
                        let e = energy.energy(&stats);
                        let first_rank = || {
                            // seq is innermost first; the first original order it (or its OW/OH swap) stands for.
                            let rank = ranks[seq_code(seq.iter().rev().copied())];
                            if !spatial_pair {
                                return rank;
                            }
                            let swap = |l: Loop| match l {
                                Loop::Ow => Loop::Oh,
                                Loop::Oh => Loop::Ow,
                                l => l,
                            };
                            rank.min(ranks[seq_code(seq.iter().rev().map(|&l| swap(l)))])
                        };
                        let better = match &best {
                            None => true,
                            Some(bst) if replaces(stats.total_cycles, e, bst) => true,
                            // Not better, and not worse either: equal cycles, energies equal or NaN.
                            // The original met this mapping first if its order comes first (its
                            // tiling comes after the incumbent's, or is the incumbent's).
                            Some(bst) => {
                                stats.total_cycles == bst.stats.total_cycles
                                    && e.partial_cmp(&bst.energy) != Some(std::cmp::Ordering::Greater)
                                    && first_rank() < best_rank
                            }
                        };
                        if better {
                            best_rank = first_rank();
                            best = Some(Best { energy: e, stats, tiling: t, order: ORIGINAL_ORDERS[best_rank as usize] });
                        }
                    }
                }
            }
        }
    }
    best
}

/// The search as the original runs it: every order, in the original's sequence, and under each
/// every tiling, through [`tile_stats`], replacing the incumbent as the original does. Slow; the
/// specification [`search`] is tested against.
#[cfg(test)] // Used by the tests only (the crate does not export it).
pub fn search_naive(p: &Problem, energy: &TieBreakEnergy) -> Option<Best> {
    let cand_oc = if p.im2col { candidates(p.oc, 1) } else { candidates(p.oc, p.m) };
    let mut best: Option<Best> = None;
    for order in ORIGINAL_ORDERS {
        for &b in &candidates(p.b, 1) {
            for &o in &candidates(p.o, 1) {
                for &ic in &candidates(p.ic, 1) {
                    for &oc in &cand_oc {
                        let t = Tiling::new(p, b, o, ic, oc);
                        let Some(stats) = tile_stats(p, &t, &order) else { continue };
                        let e = energy.energy(&stats);
                        if best.as_ref().is_none_or(|bst| replaces(stats.total_cycles, e, bst)) {
                            best = Some(Best { stats, tiling: t, order, energy: e });
                        }
                    }
                }
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bf_e_energy() -> TieBreakEnergy {
        TieBreakEnergy {
            core_per_cycle: 0.235104,
            read_per_bit: [0.0213657e-3, 0.0594744e-3, 0.0331553e-3],
            write_per_bit: [0.0289162e-3, 0.113704e-3, 0.0730841e-3],
            dram_per_bit: 15e-3,
        }
    }

    fn bf_e(k: u64, o: u64, s: u64, ic: u64, oc: u64, b: u64, bits: (u64, u64), im2col: bool) -> Problem {
        Problem {
            k,
            o,
            s,
            ic,
            oc,
            b,
            iprec: bits.0,
            wprec: bits.1,
            im2col,
            n: 16,
            m: 32,
            pf: perf_factor(8, 2, bits.0, bits.1),
            half_buffer_bits: [65536 * 4, 32768 * 4, 16384 * 4],
            if_width: 192,
        }
    }

    #[test]
    fn candidates_follow_the_original() {
        assert_eq!(candidates(112, 1), vec![1, 2, 4, 8, 16, 32, 64, 112]);
        assert_eq!(candidates(1, 1), vec![1]);
        assert_eq!(candidates(64, 32), vec![32, 64]);
        assert_eq!(candidates(16, 32), vec![16]);
        assert_eq!(candidates(96, 32), vec![32, 64, 96]);
        assert_eq!(permutations(5).len(), 120);
    }

    #[test]
    fn perf_factor_table() {
        assert_eq!(perf_factor(8, 2, 8, 8), 1);
        assert_eq!(perf_factor(8, 2, 4, 8), 2);
        assert_eq!(perf_factor(8, 2, 2, 2), 16);
        assert_eq!(perf_factor(8, 2, 1, 1), 16);
        assert_eq!(perf_factor(8, 2, 6, 6), 1);
        assert_eq!(perf_factor(8, 2, 3, 8), 2);
        assert_eq!(perf_factor(8, 2, 16, 8), 0);
    }

    #[test]
    fn resnet_stem_matches_reference_row() {
        // layers.csv: resnet_stem_7x7s2, bf_e, B=1, 2/2 bits, im2col: 286985 cycles, 261897 stall.
        let p = bf_e(7, 112, 2, 3, 64, 1, (2, 2), true);
        let best = search(&p, &bf_e_energy()).unwrap();
        assert_eq!(best.stats.total_cycles, 286_985);
        assert_eq!(best.stats.stall_cycles, 261_897);
        assert_eq!(best.stats.compute_cycles, 25_088);
        assert_eq!(best.stats.sram_read, [236_027_904, 236_027_904, 51_380_224]);
        assert_eq!(best.stats.dram_read, 3_676_352 * 8);
    }

    #[test]
    fn original_orders_are_the_120_permutations() {
        let mut seen: Vec<[Loop; 5]> = ORIGINAL_ORDERS.to_vec();
        seen.sort_by_key(|o| o.map(|l| l as u8));
        seen.dedup();
        assert_eq!(seen.len(), 120);
        // sweep.csv's energy-invalid rows report the first two positions that can win.
        assert_eq!(ORIGINAL_ORDERS[0], [Loop::Oc, Loop::Ic, Loop::B, Loop::Oh, Loop::Ow]);
        assert_eq!(ORIGINAL_ORDERS[2], [Loop::Oh, Loop::B, Loop::Ow, Loop::Oc, Loop::Ic]);
    }

    /// `bf_e` energies with the WBUF figures CACTI could not give (NaN, as in the original).
    fn nan_wbuf_energy() -> TieBreakEnergy {
        let mut e = bf_e_energy();
        e.read_per_bit[WGT] = f64::NAN;
        e.write_per_bit[WGT] = f64::NAN;
        e
    }

    fn same_energy(a: f64, b: f64) -> bool {
        a == b || (a.is_nan() && b.is_nan())
    }

    proptest! {
        #![proptest_config(ProptestConfig { rng_seed: proptest::test_runner::RngSeed::Fixed(0x5eed), cases: 64, .. ProptestConfig::default() })]
        /// The fast search finds exactly what the original's 120-order scan finds: the same
        /// counters, energy, tiling and loop order, with the SRAM energies known or NaN.
        #[test]
        fn fast_search_equals_naive(
            k in prop::sample::select(vec![1u64, 3, 5]),
            o in 1u64..20, s in 1u64..3, ic in 1u64..300, oc in 1u64..300, b in prop::sample::select(vec![1u64, 2, 3, 16]),
            ib in prop::sample::select(vec![1u64, 2, 4, 8]), wb in prop::sample::select(vec![2u64, 4, 6, 8]),
            im2col in any::<bool>(), if_width in prop::sample::select(vec![64u64, 192, 4096]),
            nan in any::<bool>(),
        ) {
            let mut p = bf_e(k, o, s, ic, oc, b, (ib, wb), im2col);
            p.if_width = if_width;
            let e = if nan { nan_wbuf_energy() } else { bf_e_energy() };
            let fast = search(&p, &e);
            let slow = search_naive(&p, &e);
            prop_assert_eq!(fast.as_ref().map(|b| (b.stats, b.tiling, b.order)), slow.as_ref().map(|b| (b.stats, b.tiling, b.order)));
            if let (Some(f), Some(s)) = (fast, slow) {
                prop_assert!(same_energy(f.energy, s.energy), "{} vs {}", f.energy, s.energy);
                prop_assert_eq!(f.energy.is_nan(), nan);
            }
        }
    }
}
