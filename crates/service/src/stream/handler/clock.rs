//! The run clock behind `_runtime`, the exit record's runtime and
//! `_wandb.runtime`: it starts when the run starts (from what a resumed
//! run had already run), stops while the run is paused (`run._pause()`,
//! what notebooks send between cells) and at the exit, as wandb-core's.

use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub(crate) struct RunClock {
    /// Time counted while the clock ran before `running_since`.
    accumulated: Duration,
    running_since: Option<Instant>,
}

impl RunClock {
    /// A stopped clock that already shows `offset` seconds.
    pub(crate) fn with_offset(offset: f64) -> Self {
        Self {
            accumulated: Duration::try_from_secs_f64(offset.max(0.0)).unwrap_or_default(),
            running_since: None,
        }
    }

    /// Starts (or resumes) counting; a running clock is left as it is.
    pub(crate) fn start(&mut self) {
        self.running_since.get_or_insert_with(Instant::now);
    }

    /// Stops counting, keeping what was counted.
    pub(crate) fn stop(&mut self) {
        if let Some(since) = self.running_since.take() {
            self.accumulated += since.elapsed();
        }
    }

    /// Seconds counted so far.
    pub(crate) fn elapsed(&self) -> f64 {
        let running = self.running_since.map(|s| s.elapsed()).unwrap_or_default();
        (self.accumulated + running).as_secs_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_while_running_from_its_offset() {
        let mut c = RunClock::with_offset(10.0);
        assert_eq!(c.elapsed(), 10.0);
        c.start();
        std::thread::sleep(Duration::from_millis(30));
        c.stop();
        let counted = c.elapsed();
        assert!((10.03..10.5).contains(&counted), "{counted}");
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(c.elapsed(), counted, "a stopped clock stands still");
        c.start();
        c.start(); // no restart: time already counted stays
        assert!(c.elapsed() >= counted);
    }
}
