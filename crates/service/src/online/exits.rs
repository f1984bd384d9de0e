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
    /// The answer given, for exits asked after it.
    timed_out: AtomicBool,
}

impl Exits {
    /// `held`: exits asked before following began.
    pub(super) fn new(held: Vec<Option<Reply>>) -> Self {
        let asked = (!held.is_empty()).then(Instant::now);
        Exits {
            replies: Mutex::new(held),
            asked: watch::Sender::new(asked),
            answered: AtomicBool::new(false),
            timed_out: AtomicBool::new(false),
        }
    }

    /// Holds an exit until the run is finished; once it is, answers at once.
    pub(super) fn push(&self, reply: Option<Reply>) {
        {
            // Checked under the lock `answer` takes: no exit slips between.
            let mut replies = self.replies.lock().unwrap();
            if !self.answered.load(Ordering::SeqCst) {
                replies.push(reply);
                drop(replies);
                self.start_clock();
                return;
            }
        }
        answer(reply, self.timed_out.load(Ordering::SeqCst));
    }

    /// Starts the `finish_timeout` clock unless it runs already: at the
    /// first exit asked, or at the exit record in the log, whichever the
    /// follower meets first (it may meet the record and then wait on the
    /// server without reading its requests again).
    pub(super) fn start_clock(&self) {
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
        if timed_out {
            self.timed_out.store(true, Ordering::SeqCst);
        }
        let replies = {
            let mut held = self.replies.lock().unwrap();
            self.answered.store(true, Ordering::SeqCst);
            std::mem::take(&mut *held)
        };
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

    fn timed_out(rx: &flume::Receiver<bytes::Bytes>) -> bool {
        use prost::Message;
        let response = pb::ServerResponse::decode(rx.try_recv().expect("an answer")).unwrap();
        let Some(pb::server_response::ServerResponseType::ResultCommunicate(result)) =
            response.server_response_type
        else {
            panic!("not a result: {response:?}");
        };
        match result.result_type {
            Some(pb::result::ResultType::ExitResult(exit)) => exit.timed_out,
            other => panic!("not an exit result: {other:?}"),
        }
    }

    /// The follower may read the exit record and then wait on the server
    /// before it reads the exit request: the record alone starts the clock,
    /// and an exit asked after the time ran out hears `timed_out` too.
    #[tokio::test(start_paused = true)]
    async fn the_exit_record_starts_the_clock_and_late_exits_hear_timed_out() {
        let exits = Exits::new(Vec::new());
        let timeout = Some(Duration::from_secs(3));
        exits.start_clock();
        let start = Instant::now();
        exits.expired(timeout).await;
        assert_eq!(start.elapsed(), Duration::from_secs(3));
        exits.answer(true);
        // What the follower's last steps do: answer again, not timed out.
        exits.answer(false);
        let (tx, rx) = flume::bounded(4);
        let reply = Reply {
            request_id: "late".into(),
            to: crate::respond::Responder::new(tx, 0),
        };
        exits.push(Some(reply.clone()));
        assert!(timed_out(&rx));
        // A run finished in time answers later exits plainly.
        let finished = Exits::new(Vec::new());
        finished.answer(false);
        finished.push(Some(reply));
        assert!(!timed_out(&rx));
    }
}
