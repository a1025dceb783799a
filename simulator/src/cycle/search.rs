//! The mapping search: a generic best-first [`branch_and_bound`] over a [`SearchTree`] (siblings
//! queued as sorted runs, one head at a time), and the cycle model's tree over it (families ->
//! tilings -> mappings, each refined by its flow bound before its timeline), with
//! [`SharedSearch`] (what the searches of one layer's output precisions share).
//!
//! Every tile size is drawn from the *balanced* sizes of its
//! dimension, ceil(X / c) for tile counts c = 1..=8, then powers of two up to
//! X; every combination that fits half of each buffer and every distinct loop
//! order is a candidate. Candidates are ranked by a lower bound on the
//! objective and evaluated exactly in that order until the next bound cannot
//! beat the best exact value: the result is the exact optimum over the
//! candidate set (branch and bound: provably pruned, deterministic).

use super::bounds::BaseBound;
use super::dma::{DmaSums, dma_cycles, dma_sums, final_store_sum};
use super::evaluate::{Evaluation, Evaluator};
use super::flow::FlowSums;
use super::problem::{Mapping, Problem, fits};
use super::tiling::{Family, families, family_candidates, order_groups};
use crate::cost::Objective;

/// The result of evaluating one mapping exactly.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Score {
    pub cycles: u64,
    pub energy_nj: f64,
}

/// A node of a search tree, as the branch and bound queues it: an inner node (a set of mappings)
/// to expand, or a leaf (one mapping) to evaluate exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Branch<N> {
    Inner(N),
    Leaf(N),
}

/// A search tree over mappings whose nodes carry lower bounds on the objective key of every
/// mapping below them.
pub(super) trait SearchTree {
    type Node: Copy;
    /// Push the children of an inner node (reached at `bound`) with their bounds onto `out`. A
    /// child may be the node itself again at a tighter bound (a refinement).
    fn expand(&mut self, node: Self::Node, bound: (f64, f64), out: &mut Vec<((f64, f64), Branch<Self::Node>)>);
    /// Evaluate a leaf exactly. `best` is the best score so far: the tree may give up (`None`) on a
    /// mapping it can prove to be worse, which never changes the result.
    fn exact(&mut self, leaf: Self::Node, best: Option<Score>) -> Option<Score>;
}

/// A queue entry: bound, then the order of pushing (a total order, so the search is deterministic),
/// the node, and (for a run's head in the heap) the range of its run still waiting.
#[derive(Clone, Copy)]
struct Queued<N>((f64, f64), u64, Branch<N>, (usize, usize));

impl<N> Queued<N> {
    /// The entry as the head of a run whose rest is `rest`.
    fn heading(self, rest: (usize, usize)) -> Self {
        Queued(self.0, self.1, self.2, rest)
    }
}

impl<N> PartialEq for Queued<N> {
    fn eq(&self, other: &Self) -> bool {
        self.1 == other.1
    }
}
impl<N> Eq for Queued<N> {}
impl<N> PartialOrd for Queued<N> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<N> Ord for Queued<N> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // Reversed: the standard heap is a max-heap.
        other.0.partial_cmp(&self.0).unwrap_or(std::cmp::Ordering::Equal).then(other.1.cmp(&self.1))
    }
}

/// Best-first branch and bound: take the node of lowest bound, expand it or evaluate it exactly,
/// and stop when no remaining bound can beat the best (starting from `initial`, the score of an
/// already evaluated mapping, if given). Returns the best leaf (None when nothing beat `initial`),
/// its score and how many leaves were evaluated exactly.
pub(super) fn branch_and_bound<T: SearchTree>(
    tree: &mut T,
    objective: Objective,
    initial: Option<Score>,
    roots: Vec<((f64, f64), Branch<T::Node>)>,
) -> (Option<(T::Node, Score)>, usize) {
    let mut best: Option<(Option<T::Node>, Score, (f64, f64))> = initial.map(|s| (None, s, objective.key(s.cycles as f64, s.energy_nj)));
    let limit = best.as_ref().map_or(f64::INFINITY, |(_, _, k)| k.0);
    let mut seq = 0u64;
    // Siblings wait in sorted runs and enter the heap one at a time, each when the one before it is
    // taken: the heap stays small, and nodes come out in exactly the order a heap of every node
    // would give (each run's head is its smallest).
    let mut runs: Vec<Queued<T::Node>> = Vec::new();
    let mut heap = std::collections::BinaryHeap::new();
    let mut queue = |heap: &mut std::collections::BinaryHeap<Queued<T::Node>>, runs: &mut Vec<Queued<T::Node>>, nodes: &mut dyn Iterator<Item = ((f64, f64), Branch<T::Node>)>, limit: f64| {
        let start = runs.len();
        runs.extend(nodes.filter(|(b, _)| b.0 <= limit).map(|(b, n)| {
            seq += 1;
            Queued(b, seq, n, (0, 0))
        }));
        // Queued orders in reverse (for the max-heap): sort descending to put the smallest first.
        runs[start..].sort_unstable_by(|a, b| b.cmp(a));
        if start < runs.len() {
            heap.push(runs[start].heading((start + 1, runs.len())));
        }
    };
    queue(&mut heap, &mut runs, &mut roots.into_iter(), limit);
    let (mut evaluated, mut children) = (0, Vec::new());
    while let Some(Queued(bound, _, node, (next, end))) = heap.pop() {
        if next < end {
            heap.push(runs[next].heading((next + 1, end)));
        }
        if let Some((_, _, key)) = &best {
            // Bounds only rise from here: stop once the primary bound exceeds the best primary value.
            if bound.0 > key.0 {
                break;
            }
        }
        match node {
            Branch::Inner(n) => {
                tree.expand(n, bound, &mut children);
                let limit = best.as_ref().map_or(f64::INFINITY, |(_, _, k)| k.0);
                // A child bounded above the best already would only be popped to stop the search.
                queue(&mut heap, &mut runs, &mut children.drain(..), limit);
            }
            Branch::Leaf(n) => {
                evaluated += 1;
                let Some(score) = tree.exact(n, best.as_ref().map(|b| b.1)) else { continue };
                let key = objective.key(score.cycles as f64, score.energy_nj);
                if best.as_ref().is_none_or(|(_, _, k)| key < *k) {
                    best = Some((Some(n), score, key));
                }
            }
        }
    }
    (best.and_then(|(n, s, _)| n.map(|n| (n, s))), evaluated)
}

/// What the mapping searches of one layer at several output precisions share (the output bits only
/// change the final stores): the candidate families, and, for each family as far as a search has
/// expanded it, its candidates, their loop-order groups, each group's tiling bound and DMA sums.
/// Pass the same value to consecutive [`super::CycleModel::best_mapping_shared`] calls.
pub struct SharedSearch {
    /// The problem the shared parts were computed for.
    problem: Problem,
    families: Vec<Family>,
    /// Per family: its range of groups once expanded.
    expanded: Vec<Option<(usize, usize)>>,
    cands: Vec<Mapping>,
    /// Per group: its range of candidates (orders of one tiling), tiling bound and DMA sums.
    groups: Vec<(usize, usize)>,
    bases: Vec<BaseBound>,
    sums: Vec<Option<DmaSums>>,
    /// Per group: its flow-bound class sums, once a mapping of it is evaluated under a cutoff.
    flows: Vec<Option<Box<FlowSums>>>,
}

impl SharedSearch {
    fn new(p: &Problem) -> SharedSearch {
        let families = families(p);
        // Room for a typical search (the vectors grow by whole families; under 64 KiB, so no mmap).
        SharedSearch {
            problem: *p,
            expanded: vec![None; families.len()],
            families,
            cands: Vec::with_capacity(512),
            groups: Vec::with_capacity(128),
            bases: Vec::with_capacity(128),
            sums: Vec::with_capacity(128),
            flows: Vec::with_capacity(128),
        }
    }

    /// The groups of family `f`, generating its candidates the first time.
    fn expand(&mut self, f: usize) -> (usize, usize) {
        if let Some(r) = self.expanded[f] {
            return r;
        }
        let first = self.cands.len();
        family_candidates(&self.problem, &self.families[f], &mut self.cands);
        let g0 = self.groups.len();
        for (s, e) in order_groups(&self.cands[first..]) {
            self.groups.push((first + s, first + e));
            self.bases.push(BaseBound::of(&self.problem, &self.cands[first + s]));
            self.sums.push(None);
            self.flows.push(None);
        }
        let r = (g0, self.groups.len());
        self.expanded[f] = Some(r);
        r
    }
}

/// The search tree of one problem: families, then tilings (groups of loop orders, first at their
/// tiling bound, then refined by their DMA work), then mappings (first at their own bound, then
/// refined by the flow bound, then evaluated).
#[derive(Clone, Copy, Debug)]
enum Node {
    Family(usize),
    Group(usize),
    Refined(usize),
    /// Candidate `.0` of group `.1`, at its mapping bound.
    Mapping(usize, usize),
    /// The same at its flow bound: a leaf.
    Flowed(usize, usize),
}

/// One mapping search over a [`SharedSearch`].
struct Searcher<'a> {
    model: Evaluator<'a>,
    p: &'a Problem,
    shared: &'a mut SharedSearch,
    /// Per group: DMA sums for this problem's output bits.
    sums: Vec<Option<DmaSums>>,
    /// The evaluation of the best mapping so far (the branch and bound keeps only scores).
    best_eval: Option<(Mapping, Evaluation)>,
}

impl Searcher<'_> {
    /// A group's tiling bound and DMA sums for this problem.
    fn group(&mut self, g: usize) -> (BaseBound, DmaSums) {
        let (from, p) = (self.shared.problem, self.p);
        let base = self.shared.bases[g].with_out_bits(&from, p);
        if self.sums.len() <= g {
            self.sums.resize(g + 1, None);
        }
        if self.sums[g].is_none() {
            let m = self.shared.cands[self.shared.groups[g].0];
            let shared = *self.shared.sums[g].get_or_insert_with(|| dma_sums(&from, &m, &base.counts));
            // Stores take at least as long at more bits: the shared problem's stores bound this
            // one's when it has no fewer output bits (variants come in increasing order).
            self.sums[g] = Some(if p.out_bits >= from.out_bits { shared } else { DmaSums { outputs: final_store_sum(p, &m, &base.counts), ..shared } });
        }
        (base, self.sums[g].expect("just filled"))
    }

    /// A group's flow-bound class sums, seeded from its tiling bound and DMA sums the first time.
    fn flow(&mut self, g: usize, base: &BaseBound, sums: &DmaSums) -> &mut FlowSums {
        let p = self.p;
        self.shared.flows[g].get_or_insert_with(|| Box::new(FlowSums::seeded(p, base, sums)))
    }
}

impl SearchTree for Searcher<'_> {
    type Node = Node;

    fn expand(&mut self, node: Node, bound: (f64, f64), out: &mut Vec<((f64, f64), Branch<Node>)>) {
        let (model, p) = (self.model, self.p);
        match node {
            Node::Family(f) => {
                let (g0, g1) = self.shared.expand(f);
                let from = self.shared.problem;
                for g in g0..g1 {
                    let base = self.shared.bases[g].with_out_bits(&from, p);
                    out.push((model.key_bound(p, base.array.max(base.dma_floor(p))), Branch::Inner(Node::Group(g))));
                }
            }
            Node::Group(g) | Node::Refined(g) => {
                let (base, sums) = self.group(g);
                if matches!(node, Node::Group(_)) {
                    // The group's DMA work with each operand loaded once bounds all its orders.
                    let refined = model.key_bound(p, base.array.max(sums.weights + sums.inputs + sums.outputs));
                    if refined > bound {
                        out.push((refined, Branch::Inner(Node::Refined(g))));
                        return;
                    }
                }
                let (s, e) = self.shared.groups[g];
                for i in s..e {
                    let m = self.shared.cands[i];
                    out.push((model.lower_bound(p, &m, &base, &sums), Branch::Inner(Node::Mapping(i, g))));
                }
            }
            Node::Mapping(i, g) => {
                // Keys order lexicographically, so the larger of two lower bounds is one too.
                let m = self.shared.cands[i];
                let (base, sums) = self.group(g);
                let refined = model.key_bound(p, self.flow(g, &base, &sums).bound(p, &m, &base.counts));
                let key = if refined > bound { refined } else { bound };
                out.push((key, Branch::Leaf(Node::Flowed(i, g))));
            }
            Node::Flowed(..) => unreachable!("evaluated mappings are leaves"),
        }
    }

    fn exact(&mut self, leaf: Node, best: Option<Score>) -> Option<Score> {
        let Node::Flowed(i, g) = leaf else { unreachable!("only flowed mappings are leaves") };
        let (model, p) = (self.model, self.p);
        let m = self.shared.cands[i];
        // Under the cycles objective a mapping slower than the best so far cannot win. Its flow bound
        // (its key here) is no more than the best's cycles, or the search would have stopped; first
        // the fine flow bound (per edge class), then the timeline, given up as soon as it is
        // provably slower (streaming or DMA).
        let cutoff = best.filter(|_| model.objective == Objective::Cycles).map(|b| b.cycles);
        let (base, sums) = self.group(g);
        if let Some(limit) = cutoff
            && self.flow(g, &base, &sums).fine_bound(p, &m, &base.counts) > limit
        {
            return None;
        }
        let e = model.evaluate_until(p, &m, cutoff, dma_cycles(p, &m, &base.counts, &sums))?;
        let s = score(&e);
        let key = |s: &Score| model.objective.key(s.cycles as f64, s.energy_nj);
        if best.is_none_or(|b| key(&s) < key(&b)) {
            self.best_eval = Some((m, e));
        }
        Some(s)
    }
}

/// An evaluation's (cycles, energy) for the search.
fn score(e: &Evaluation) -> Score {
    Score { cycles: e.cycles, energy_nj: e.energy.map_or(0.0, |x| x.total().get()) }
}

/// The best mapping of `p` under `model`'s objective, starting from `seed` as the incumbent and
/// reusing (and leaving in `shared`) the candidates and tiling bounds of a problem that differs
/// from `p` at most in its output bits ([`super::CycleModel::best_mapping_shared`]).
pub(super) fn best_mapping(model: Evaluator<'_>, p: &Problem, seed: Option<Mapping>, shared: &mut Option<SharedSearch>) -> Option<(Mapping, Evaluation, usize, usize)> {
    let initial = seed.filter(|m| fits(p, m)).and_then(|m| model.evaluate(p, &m).map(|e| (m, e)));
    if shared.as_ref().is_none_or(|c| Problem { out_bits: 0, ..c.problem } != Problem { out_bits: 0, ..*p }) {
        *shared = Some(SharedSearch::new(p));
    }
    let shared = shared.as_mut().expect("just filled");
    let roots: Vec<_> =
        shared.families.iter().enumerate().map(|(f, fam)| (model.key_bound(p, fam.bound(p)), Branch::Inner(Node::Family(f)))).collect();
    let initial_score = initial.as_ref().map(|(_, e)| score(e));
    let mut tree = Searcher { model, p, shared, sums: Vec::new(), best_eval: initial };
    let (found, evaluated) = branch_and_bound(&mut tree, model.objective, initial_score, roots);
    let tilings = tree.sums.iter().filter(|s| s.is_some()).count();
    let (m, e) = match found {
        Some((Node::Flowed(i, _), _)) => {
            let m = tree.shared.cands[i];
            match tree.best_eval.take() {
                Some((bm, e)) if bm == m => (m, e),
                _ => (m, model.evaluate(p, &m)?),
            }
        }
        // Nothing beat the seed.
        _ => tree.best_eval.take()?,
    };
    Some((m, e, tilings, evaluated))
}
