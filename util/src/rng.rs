//! The workspace's one seeded generator: SplitMix64 (Steele, Lea and Flood, OOPSLA 2014), so
//! that every random choice (operands, initialisation, sampling, evolution) is a function of the
//! seed alone, independent of any crate's generator versions.

/// One SplitMix64 step on a raw state.
pub fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A SplitMix64 generator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rng(pub u64);

impl Rng {
    /// A generator for `seed` (mixed with a fixed constant, so seeds 0, 1, 2 start apart).
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5851_f42d_4c95_7f2d)
    }

    /// A generator starting from exactly `state` (no mixing).
    pub fn from_state(state: u64) -> Rng {
        Rng(state)
    }

    /// A generator for stream `i` of this seed (e.g. one per step), independent of how many
    /// numbers other streams drew.
    pub fn stream(seed: u64, i: u64) -> Rng {
        let mut r = Rng::new(seed);
        r.0 ^= i.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(17);
        r.next_u64();
        r
    }

    pub fn next_u64(&mut self) -> u64 {
        splitmix(&mut self.0)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() <= p
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u = self.unit().max(1e-300);
        let v = self.unit();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    /// Gamma(shape, 1) (Marsaglia and Tsang, ACM TOMS 2000; shapes below 1 by the
    /// `Gamma(shape + 1) * U^(1/shape)` boost).
    pub fn gamma(&mut self, shape: f64) -> f64 {
        if shape < 1.0 {
            let u = self.unit().max(1e-300);
            return self.gamma(shape + 1.0) * u.powf(1.0 / shape);
        }
        let d = shape - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let x = self.normal();
            let v = (1.0 + c * x).powi(3);
            if v <= 0.0 {
                continue;
            }
            let u = self.unit().max(1e-300);
            if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
                return d * v;
            }
        }
    }

    /// A probability vector from the symmetric Dirichlet(alpha) distribution over `n` outcomes.
    pub fn dirichlet(&mut self, alpha: f64, n: usize) -> Vec<f64> {
        let g: Vec<f64> = (0..n).map(|_| self.gamma(alpha).max(1e-300)).collect();
        let sum: f64 = g.iter().sum();
        g.into_iter().map(|x| x / sum).collect()
    }

    /// An index drawn with probabilities `p` (summing to 1).
    pub fn categorical(&mut self, p: &[f64]) -> usize {
        let u = self.unit();
        let mut acc = 0.0;
        for (i, &pi) in p.iter().enumerate() {
            acc += pi;
            if u < acc {
                return i;
            }
        }
        p.len() - 1
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_is_the_published_sequence() {
        // SplitMix64 from state 0 (the reference implementation's first outputs).
        let mut s = 0u64;
        assert_eq!(splitmix(&mut s), 0xe220_a839_7b1d_cdaf);
        assert_eq!(splitmix(&mut s), 0x6e78_9e6a_a1b9_65f4);
        let mut r = Rng::from_state(0);
        assert_eq!(r.next_u64(), 0xe220_a839_7b1d_cdaf);
    }

    #[test]
    fn gamma_and_dirichlet_have_their_moments() {
        let mut r = Rng::new(3);
        for shape in [0.5, 1.0, 2.5] {
            let n = 40_000;
            let v: Vec<f64> = (0..n).map(|_| r.gamma(shape)).collect();
            let mean = v.iter().sum::<f64>() / n as f64;
            let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
            assert!((mean - shape).abs() < 0.03 * shape.max(1.0), "shape {shape}: mean {mean}");
            assert!((var - shape).abs() < 0.08 * shape.max(1.0), "shape {shape}: variance {var}");
        }
        let p = r.dirichlet(0.5, 4);
        assert_eq!(p.len(), 4);
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12 && p.iter().all(|x| *x >= 0.0));
        // Dirichlet(0.5, 0.5, 0.5, 0.5): each component is Beta(0.5, 1.5), mean 1/4 and variance 1/16.
        let draws: Vec<f64> = (0..20_000).map(|_| r.dirichlet(0.5, 4)[0]).collect();
        let m = draws.iter().sum::<f64>() / draws.len() as f64;
        let v = draws.iter().map(|x| (x - m).powi(2)).sum::<f64>() / draws.len() as f64;
        assert!((m - 0.25).abs() < 0.01 && (v - 1.0 / 16.0).abs() < 0.004, "{m} {v}");
        let counts = (0..10_000).fold([0usize; 3], |mut c, _| {
            c[r.categorical(&[0.2, 0.5, 0.3])] += 1;
            c
        });
        assert!((counts[1] as f64 / 10_000.0 - 0.5).abs() < 0.02, "{counts:?}");
    }
}
