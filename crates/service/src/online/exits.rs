//! The exit answers a run's `finish()` waits for, and `finish_timeout`.
//!
//! An exit is answered once the run is complete on the server. With
//! `finish_timeout` (wandb ≥ 0.27) the user bounds that wait: when the
//! time runs out after the first exit was asked, the follower stops
//! sending, the exits are answered with `timed_out` (the SDK warns or
//! raises `TimeoutError`), and what was not sent stays in the transaction
//! log for `wandb sync`. Kept apart from the follower so that the timer
//! can answer the exits while the follower is dropped mid-await.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use wandb_proto::pb;

use crate::respond::Reply;

/// The exits asked of one run (shared by the follower and its timer).
pub(super) struct Exits {
    replies: Mutex<Vec<Option<Reply>>>,
    /// When the first exit was asked.
    asked: watch::Sender<Option<Instant>>,
    answered: AtomicBool,
}

impl Exits {
    /// `held`: exits asked before following began.
    pub(super) fn new(held: Vec<Option<Reply>>) -> Self {
        let asked = (!held.is_empty()).then(Instant::now);
        Exits {
            replies: Mutex::new(held),
            asked: watch::Sender::new(asked),
            answered: AtomicBool::new(false),
        }
    }

    /// Holds an exit until the run is finished; once it is, answers at once.
    pub(super) fn push(&self, reply: Option<Reply>) {
        if self.answered.load(Ordering::SeqCst) {
            answer(reply, false);
            return;
        }
        self.replies.lock().unwrap().push(reply);
        self.asked.send_if_modified(|a| {
            let first = a.is_none();
            if first {
                *a = Some(Instant::now());
            }
            first
        });
    }

    /// Answers every exit held; `timed_out` when `finish_timeout` ran out.
    pub(super) fn answer(&self, timed_out: bool) {
        self.answered.store(true, Ordering::SeqCst);
        let replies = std::mem::take(&mut *self.replies.lock().unwrap());
        for reply in replies {
            answer(reply, timed_out);
        }
    }

    /// Completes `timeout` after the first exit was asked, unless the exits
    /// were answered by then; never without a timeout.
    pub(super) async fn expired(&self, timeout: Option<Duration>) {
        let Some(timeout) = timeout else {
            return std::future::pending().await;
        };
        let mut asked = self.asked.subscribe();
        // Copied out at once: the guard must not live across an await.
        let at = asked
            .wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|at| *at);
        let Some(at) = at else {
            return std::future::pending().await;
        };
        tokio::time::sleep_until(at + timeout).await;
        if self.answered.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
    }
}

/// Answers one exit request.
pub(super) fn answer(reply: Option<Reply>, timed_out: bool) {
    if let Some(reply) = reply {
        reply.result(pb::result::ResultType::ExitResult(pb::RunExitResult {
            timed_out,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_timer_starts_at_the_first_exit_and_stops_once_answered() {
        let exits = Exits::new(Vec::new());
        let timeout = Some(Duration::from_secs(5));
        // No exit asked: no expiry, however long.
        let idle = tokio::time::timeout(Duration::from_secs(60), exits.expired(timeout)).await;
        assert!(idle.is_err());
        exits.push(None);
        let start = Instant::now();
        exits.expired(timeout).await;
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        // Answered in time: it never expires.
        let answered = Exits::new(vec![None]);
        answered.answer(false);
        let never = tokio::time::timeout(Duration::from_secs(60), answered.expired(timeout)).await;
        assert!(never.is_err());
        // Without a timeout, nothing expires.
        let none = tokio::time::timeout(Duration::from_secs(60), answered.expired(None)).await;
        assert!(none.is_err());
    }
}
