//! A small seeded generator (SplitMix64) for weight initialisation, shuffles and sampling, so that
//! every random choice of training and sampling is a function of the seed alone, independent of
//! burn's and rand's generator versions.

/// SplitMix64 (Steele, Lea and Flood, OOPSLA 2014).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rng(pub u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5851_f42d_4c95_7f2d)
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
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
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
}

/// Fisher-Yates shuffle seeded with `seed`.
pub fn shuffle<T>(v: &mut [T], seed: u64) {
    let mut r = Rng::new(seed);
    for i in (1..v.len()).rev() {
        v.swap(i, r.below(i + 1));
    }
}
