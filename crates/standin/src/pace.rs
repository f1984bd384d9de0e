//! Answer pacing: a backend that is slow (every answer delayed) or stalled
//! (one kind of request held until released).
//!
//! Services are judged by how they cope with a backend that does not keep
//! up: the training loop must not notice, memory must stay bounded, and
//! nothing may be lost. Benchmarks set a latency; tests hold the file
//! stream to prove that a service keeps reading its clients meanwhile.
//! Changes apply to requests already waiting, so releasing a hold lets
//! them through at once.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

#[derive(Debug, Clone, Default)]
struct State {
    latency: Duration,
    /// Targets (`file_stream`, `upload`, a GraphQL operation name) whose
    /// requests wait until released.
    held: Vec<String>,
}

/// The stand-in's pacing, shared by every request.
#[derive(Debug)]
pub(crate) struct Pace {
    state: watch::Sender<State>,
}

impl Pace {
    pub(crate) fn new(latency: Duration) -> Self {
        Self {
            state: watch::Sender::new(State {
                latency,
                held: Vec::new(),
            }),
        }
    }

    pub(crate) fn set_latency(&self, latency: Duration) {
        self.state.send_modify(|s| s.latency = latency);
    }

    pub(crate) fn hold(&self, target: &str) {
        self.state.send_modify(|s| {
            if !s.held.iter().any(|t| t == target) {
                s.held.push(target.to_string());
            }
        });
    }

    pub(crate) fn release(&self, target: &str) {
        self.state.send_modify(|s| s.held.retain(|t| t != target));
    }

    /// Waits until an answer to a request that arrived at `arrived` may go:
    /// the latency has passed since then.
    pub(crate) async fn latency(&self, arrived: Instant) {
        self.wait(None, arrived).await;
    }

    /// Waits while `target` is held.
    pub(crate) async fn unless_held(&self, target: &str) {
        self.wait(Some(target), Instant::now()).await;
    }

    async fn wait(&self, target: Option<&str>, arrived: Instant) {
        let mut rx = self.state.subscribe();
        loop {
            let (held, deadline) = {
                let s = rx.borrow_and_update();
                let held = target.is_some_and(|t| s.held.iter().any(|h| h == t));
                let deadline = if target.is_some() {
                    arrived
                } else {
                    arrived + s.latency
                };
                (held, deadline)
            };
            if !held && Instant::now() >= deadline {
                return;
            }
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                _ = tokio::time::sleep_until(deadline), if !held => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn latency_delays_and_changes_apply_to_waiting_requests() {
        let pace = std::sync::Arc::new(Pace::new(Duration::from_secs(1)));
        let t0 = Instant::now();
        pace.latency(t0).await;
        assert!(t0.elapsed() >= Duration::from_secs(1));

        // A request waiting out a long latency goes once it is lowered.
        pace.set_latency(Duration::from_secs(3600));
        let waiting = tokio::spawn({
            let pace = pace.clone();
            async move { pace.latency(Instant::now()).await }
        });
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!waiting.is_finished());
        pace.set_latency(Duration::ZERO);
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("released")
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn held_targets_wait_until_released() {
        let pace = std::sync::Arc::new(Pace::new(Duration::ZERO));
        pace.hold("file_stream");
        let held = tokio::spawn({
            let pace = pace.clone();
            async move { pace.unless_held("file_stream").await }
        });
        // Other targets are not held.
        tokio::time::timeout(Duration::from_millis(1), pace.unless_held("upload"))
            .await
            .expect("upload is not held");
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert!(!held.is_finished());
        pace.release("file_stream");
        tokio::time::timeout(Duration::from_secs(1), held)
            .await
            .expect("released")
            .unwrap();
    }
}
