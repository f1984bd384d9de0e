//! Time clients spend waiting for a run that cannot keep up.
//!
//! A run's input queue is bounded, so a run whose log writer falls behind
//! (a slow disk, a saturated CPU) makes the connections feeding it wait:
//! that is what keeps memory bounded. The online sender never causes it
//! (it reads the log back from disk at its own pace). Such waits are the
//! one way the service can slow a training loop, so they are counted
//! here, told to the user when they add up, and logged when the run ends:
//! never silent.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Waits shorter than this are the queue doing its job between two
/// batches, not worth a word.
const NOTABLE: Duration = Duration::from_millis(1);

/// How much waiting, since the last warning, earns a warning.
const WARN_AFTER: Duration = Duration::from_secs(1);

/// Waits by clients of one run; shared by its connections and its handler.
#[derive(Debug, Default)]
pub struct Backpressure {
    waits: AtomicU64,
    waited_us: AtomicU64,
}

/// Totals at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Waited {
    pub waits: u64,
    pub total: Duration,
}

impl Backpressure {
    /// A client's records waited `d` for room in the run's queue.
    pub(crate) fn record(&self, d: Duration) {
        if d >= NOTABLE {
            self.waits.fetch_add(1, Ordering::Relaxed);
            self.waited_us
                .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
        }
    }

    pub(crate) fn total(&self) -> Waited {
        Waited {
            waits: self.waits.load(Ordering::Relaxed),
            total: Duration::from_micros(self.waited_us.load(Ordering::Relaxed)),
        }
    }
}

/// The handler's view: what has been reported already.
#[derive(Debug, Default)]
pub(crate) struct Reporter {
    reported: Waited,
}

impl Reporter {
    /// A warning for the user if clients waited at least [`WARN_AFTER`]
    /// since the last one.
    pub(crate) fn warning(&mut self, now: Waited) -> Option<String> {
        let waited = now.total.saturating_sub(self.reported.total);
        if waited < WARN_AFTER {
            return None;
        }
        let waits = now.waits - self.reported.waits;
        self.reported = now;
        Some(format!(
            "wandb-core-rs: run.log() waited {:.1} s in all ({waits} times) because this run's \
             transaction log could not be written as fast as it was logged to (a slow disk or \
             a busy CPU). Nothing was dropped.",
            waited.as_secs_f64()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_waits_are_ignored_and_long_ones_warned_about_once() {
        let b = Backpressure::default();
        let mut r = Reporter::default();
        b.record(Duration::from_micros(200));
        assert_eq!(b.total(), Waited::default());
        for _ in 0..4 {
            b.record(Duration::from_millis(300));
        }
        let w = r.warning(b.total()).expect("1.2 s of waiting");
        assert!(w.contains("1.2 s") && w.contains("4 times"), "{w}");
        assert_eq!(r.warning(b.total()), None, "said once");
        b.record(Duration::from_millis(500));
        assert_eq!(r.warning(b.total()), None, "not yet another second");
        b.record(Duration::from_millis(600));
        assert!(r.warning(b.total()).unwrap().contains("2 times"));
    }
}
