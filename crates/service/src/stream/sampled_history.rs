//! Sampled history for the end-of-run sparklines (`sampled_history`).
//!
//! Per top-level numeric key, a reservoir sample of at most 48 values kept as
//! `f32` and returned in logging order, as wandb-core does. Memory is fixed
//! per key however long the run.

use crate::runstate::keys::{KeyId, Keys};

const RESERVOIR: usize = 48;

#[derive(Debug)]
struct Reservoir {
    seen: u64,
    /// (position in the stream, value).
    samples: Vec<(u64, f32)>,
}

/// Reservoirs for every numeric top-level key, indexed by key id.
#[derive(Debug)]
pub struct SampledHistory {
    keys: Vec<Option<Reservoir>>,
    rng: fastrand::Rng,
}

impl Default for SampledHistory {
    fn default() -> Self {
        Self {
            keys: Vec::new(),
            // Deterministic, so a run's sparklines do not depend on chance.
            rng: fastrand::Rng::with_seed(0x5eed),
        }
    }
}

impl SampledHistory {
    pub fn add(&mut self, key: KeyId, value: f64) {
        let i = key as usize;
        if self.keys.len() <= i {
            self.keys.resize_with(i + 1, || None);
        }
        let r = self.keys[i].get_or_insert_with(|| Reservoir {
            seen: 0,
            samples: Vec::new(),
        });
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

    /// `(key, values in logging order)` for every key, in first-seen order.
    pub fn sampled(&self, keys: &Keys) -> Vec<(String, Vec<f32>)> {
        self.keys
            .iter()
            .enumerate()
            .filter_map(|(id, r)| r.as_ref().map(|r| (id as KeyId, r)))
            .map(|(id, r)| {
                let mut s = r.samples.clone();
                s.sort_by_key(|(i, _)| *i);
                (
                    keys.info(id).dotted.clone(),
                    s.into_iter().map(|(_, v)| v).collect(),
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_all_values_up_to_the_reservoir_size_then_a_sorted_sample() {
        let mut keys = Keys::default();
        let (a, b) = (keys.top("a"), keys.top("b"));
        let mut s = SampledHistory::default();
        for i in 0..10 {
            s.add(a, i as f64);
        }
        assert_eq!(
            s.sampled(&keys)[0].1,
            (0..10).map(|i| i as f32).collect::<Vec<_>>()
        );
        for i in 0..10_000 {
            s.add(b, i as f64);
        }
        let sampled = s.sampled(&keys);
        let b = &sampled[1].1;
        assert_eq!(b.len(), RESERVOIR);
        assert!(b.windows(2).all(|w| w[0] < w[1]), "logging order");
    }
}
