//! Sampled history for the end-of-run sparklines (`sampled_history`).
//!
//! Per top-level numeric key, a reservoir sample of at most 48 values kept as
//! `f32` and returned in logging order, as wandb-core does. Memory is fixed
//! per key however long the run.

use indexmap::IndexMap;

const RESERVOIR: usize = 48;

#[derive(Debug)]
struct Reservoir {
    seen: u64,
    /// (position in the stream, value).
    samples: Vec<(u64, f32)>,
}

/// Reservoirs for every numeric top-level key.
#[derive(Debug)]
pub struct Sampler {
    keys: IndexMap<String, Reservoir>,
    rng: fastrand::Rng,
}

impl Default for Sampler {
    fn default() -> Self {
        Self {
            keys: IndexMap::new(),
            // Deterministic, so a run's sparklines do not depend on chance.
            rng: fastrand::Rng::with_seed(0x5eed),
        }
    }
}

impl Sampler {
    pub fn add(&mut self, key: &str, value: f64) {
        let r = match self.keys.get_mut(key) {
            Some(r) => r,
            None => self.keys.entry(key.to_string()).or_insert(Reservoir {
                seen: 0,
                samples: Vec::new(),
            }),
        };
        let index = r.seen;
        r.seen += 1;
        if r.samples.len() < RESERVOIR {
            r.samples.push((index, value as f32));
        } else {
            let j = self.rng.u64(0..r.seen) as usize;
            if j < RESERVOIR {
                r.samples[j] = (index, value as f32);
            }
        }
    }

    /// `(key, values in logging order)` for every key.
    pub fn sampled(&self) -> Vec<(String, Vec<f32>)> {
        self.keys
            .iter()
            .map(|(k, r)| {
                let mut s = r.samples.clone();
                s.sort_by_key(|(i, _)| *i);
                (k.clone(), s.into_iter().map(|(_, v)| v).collect())
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_all_values_up_to_the_reservoir_size_then_a_sorted_sample() {
        let mut s = Sampler::default();
        for i in 0..10 {
            s.add("a", i as f64);
        }
        assert_eq!(
            s.sampled()[0].1,
            (0..10).map(|i| i as f32).collect::<Vec<_>>()
        );
        for i in 0..10_000 {
            s.add("b", i as f64);
        }
        let b = &s.sampled()[1].1;
        assert_eq!(b.len(), RESERVOIR);
        assert!(b.windows(2).all(|w| w[0] < w[1]), "logging order");
    }
}
