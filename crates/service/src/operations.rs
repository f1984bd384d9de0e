//! What a run's online sender is doing right now (uploading a file, the
//! file stream's next request, a run update, an artifact), for the SDK's
//! progress display: while `wandb.init()` and `run.finish()` wait, the SDK
//! polls the `operations` request twice a second and shows the answer
//! ("uploading config.yaml; uploading history steps 0-99"), in a terminal
//! as a live area, in a log file as one line per change.
//!
//! An operation is registered by [`Operations::start`] and ends when its
//! [`Operation`] guard is dropped, so an error path or a cancelled future
//! cannot leave it behind.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use wandb_proto::pb;

/// Operations listed in an answer (the rest are counted), as wandb-core.
const LISTED: usize = 10;

/// The ongoing operations of one run (clones share them).
#[derive(Debug, Clone, Default)]
pub struct Operations {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    /// In start order.
    ongoing: Vec<Ongoing>,
}

#[derive(Debug)]
struct Ongoing {
    id: u64,
    desc: String,
    started: Instant,
}

/// One ongoing operation; it ends when dropped.
#[derive(Debug)]
#[must_use = "the operation ends when this is dropped"]
pub struct Operation {
    ops: Operations,
    id: u64,
}

impl Operations {
    /// Registers an operation described by `desc` (what the user reads).
    pub fn start(&self, desc: impl Into<String>) -> Operation {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let id = inner.next_id;
        inner.next_id += 1;
        inner.ongoing.push(Ongoing {
            id,
            desc: desc.into(),
            started: Instant::now(),
        });
        Operation {
            ops: self.clone(),
            id,
        }
    }

    /// The answer to an `operations` request.
    pub fn stats(&self) -> pb::OperationStats {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        pb::OperationStats {
            total_operations: inner.ongoing.len() as i64,
            operations: inner
                .ongoing
                .iter()
                .take(LISTED)
                .map(|op| pb::Operation {
                    desc: op.desc.clone(),
                    runtime_seconds: op.started.elapsed().as_secs_f64(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }
}

impl Drop for Operation {
    fn drop(&mut self) {
        let mut inner = self.ops.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.ongoing.retain(|op| op.id != self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_listed_in_start_order_until_they_end() {
        let ops = Operations::default();
        let a = ops.start("uploading a.txt");
        let held: Vec<Operation> = (0..11).map(|i| ops.start(format!("op {i}"))).collect();
        let stats = ops.stats();
        assert_eq!(stats.total_operations, 12);
        assert_eq!(stats.operations.len(), LISTED);
        assert_eq!(stats.operations[0].desc, "uploading a.txt");
        drop(a);
        drop(held);
        let stats = ops.stats();
        assert_eq!(stats.total_operations, 0);
        assert!(stats.operations.is_empty());
    }
}
