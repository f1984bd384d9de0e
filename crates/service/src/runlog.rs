//! A run's own log, `logs/debug-internal.log`: JSON lines about that run
//! only (stream start and end, problems), for the person debugging it. Each
//! line also goes to the process-wide log through `tracing`.
//!
//! Lines are few (lifecycle and errors), so a plain unbuffered append is
//! enough. DEBUG lines (one per record, as wandb-core writes them) come only
//! when the process log is at debug level (the SDK's `WANDB_DEBUG`), where
//! the cost is asked for.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use wandb_proto::json;

#[derive(Debug, Clone)]
pub struct RunLog {
    run_id: Arc<str>,
    file: Option<Arc<Mutex<File>>>,
}

impl RunLog {
    /// Appends to `path` when given (the SDK creates the directory).
    pub fn open(run_id: &str, path: Option<&Path>) -> Self {
        let file = path.and_then(|p| {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| tracing::warn!(run = run_id, path = %p.display(), "cannot open the run log: {e}"))
                .ok()
        });
        Self {
            run_id: run_id.into(),
            file: file.map(|f| Arc::new(Mutex::new(f))),
        }
    }

    fn line(&self, level: &str, msg: &str) {
        let Some(file) = &self.file else { return };
        let mut line = String::with_capacity(msg.len() + 96);
        line.push_str("{\"time\":");
        json::write_str(
            &humantime::format_rfc3339_nanos(SystemTime::now()).to_string(),
            &mut line,
        );
        line.push_str(",\"level\":");
        json::write_str(level, &mut line);
        line.push_str(",\"msg\":");
        json::write_str(msg, &mut line);
        line.push_str(",\"run\":");
        json::write_str(&self.run_id, &mut line);
        line.push_str("}\n");
        if let Ok(mut f) = file.lock() {
            let _ = f.write_all(line.as_bytes());
        }
    }

    /// A DEBUG line, built only when it is wanted (the process log is at
    /// debug level).
    pub fn debug(&self, msg: impl FnOnce() -> String) {
        if tracing::enabled!(tracing::Level::DEBUG) {
            let msg = msg();
            tracing::debug!(run = %self.run_id, "{msg}");
            self.line("DEBUG", &msg);
        }
    }

    pub fn info(&self, msg: &str) {
        tracing::info!(run = %self.run_id, "{msg}");
        self.line("INFO", msg);
    }

    pub fn warn(&self, msg: &str) {
        tracing::warn!(run = %self.run_id, "{msg}");
        self.line("WARN", msg);
    }

    pub fn error(&self, msg: &str) {
        tracing::error!(run = %self.run_id, "{msg}");
        self.line("ERROR", msg);
    }
}

/// An error with its sources, for log lines and messages (a source whose
/// text its error already repeats is not repeated).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
