//! What the online sender tells the run it sends: warnings for the user,
//! and that it is done (nothing more will come).
//!
//! The sender must never wait on its run (the run may itself be waiting
//! for the sender's exit answer), so telling is not a channel send that
//! can block. It must not lose anything silently either: the queue is
//! bounded, and when it is full the oldest warning leaves it for the run's
//! log, counted, and the user is told how many were left out.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::runlog::RunLog;

/// Warnings waiting for the run beyond this are summarised.
const QUEUED: usize = 64;

/// One thing the run hears from its sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    /// Show this to the user (the SDK prints it as a warning).
    Warn(String),
    /// The sender is done; no more events.
    Finished,
}

/// The sender's side and the run's side of one queue (clones share it).
#[derive(Clone)]
pub(crate) struct Events {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    /// One waiter: the run that drains the queue.
    ready: Notify,
    log: RunLog,
}

#[derive(Default)]
struct State {
    warnings: VecDeque<String>,
    /// Warnings that left the queue for the log only.
    left_out: u64,
    finished: bool,
    finished_taken: bool,
}

impl Events {
    pub(crate) fn new(log: RunLog) -> Self {
        Events {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                ready: Notify::new(),
                log,
            }),
        }
    }

    /// Queues a warning for the user; never waits.
    pub(crate) fn warn(&self, message: String) {
        let mut state = self.inner.state.lock().unwrap();
        if state.warnings.len() == QUEUED
            && let Some(oldest) = state.warnings.pop_front()
        {
            state.left_out += 1;
            self.inner
                .log
                .warn(&format!("{oldest} (not shown: too many warnings at once)"));
        }
        state.warnings.push_back(message);
        drop(state);
        self.inner.ready.notify_one();
    }

    /// Nothing more will be sent.
    pub(crate) fn finished(&self) {
        self.inner.state.lock().unwrap().finished = true;
        self.inner.ready.notify_one();
    }

    /// The next event, in the order they were told; after `Finished`, waits
    /// forever.
    pub(crate) async fn next(&self) -> Event {
        loop {
            if let Some(event) = self.take() {
                return event;
            }
            // A notification between `take` and here is kept as a permit.
            self.inner.ready.notified().await;
        }
    }

    fn take(&self) -> Option<Event> {
        let mut state = self.inner.state.lock().unwrap();
        if state.left_out > 0 {
            let n = std::mem::take(&mut state.left_out);
            return Some(Event::Warn(format!(
                "{n} earlier warning{} of this run were left out here; the run's debug-internal.log has them",
                if n == 1 { "" } else { "s" }
            )));
        }
        if let Some(message) = state.warnings.pop_front() {
            return Some(Event::Warn(message));
        }
        if state.finished && !state.finished_taken {
            state.finished_taken = true;
            return Some(Event::Finished);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events() -> Events {
        Events::new(RunLog::open("events-test", None))
    }

    #[tokio::test]
    async fn events_arrive_in_order_and_finished_comes_once() {
        let e = events();
        e.warn("a".into());
        e.warn("b".into());
        e.finished();
        assert_eq!(e.next().await, Event::Warn("a".into()));
        assert_eq!(e.next().await, Event::Warn("b".into()));
        assert_eq!(e.next().await, Event::Finished);
        let more = tokio::time::timeout(std::time::Duration::from_millis(20), e.next()).await;
        assert!(more.is_err(), "nothing after Finished");
    }

    #[tokio::test]
    async fn a_waiting_reader_wakes_for_a_warning() {
        let e = events();
        let reader = tokio::spawn({
            let e = e.clone();
            async move { e.next().await }
        });
        tokio::task::yield_now().await;
        e.warn("late".into());
        assert_eq!(reader.await.unwrap(), Event::Warn("late".into()));
    }

    #[tokio::test]
    async fn a_flood_is_summarised_not_dropped_silently() {
        let e = events();
        for i in 0..QUEUED + 10 {
            e.warn(format!("w{i}"));
        }
        match e.next().await {
            Event::Warn(m) => assert!(m.starts_with("10 earlier warnings"), "{m}"),
            other => panic!("{other:?}"),
        }
        // The newest QUEUED are all there, in order.
        for i in 10..QUEUED + 10 {
            assert_eq!(e.next().await, Event::Warn(format!("w{i}")));
        }
    }
}
