//! The file stream: history rows, system-metric events, the summary and
//! console lines, posted to `files/<entity>/<project>/<run>/file_stream`.
//!
//! Updates are merged in memory; the first request goes out at once, then
//! one per transmit interval (15 s by default), one at a time; a heartbeat
//! `{}` goes out after 30 s of silence; `preempting` goes out at once. Line
//! offsets make requests idempotent; console lines may be re-sent at their
//! offset with new content. The last request carries `complete` and the
//! exit code. A final failure is fatal for the stream: later data is
//! dropped, and the failure is reported, never silent.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::backend::Backend;

/// One update for the stream.
#[derive(Debug)]
pub enum FsMsg {
    History(String),
    Events(String),
    /// The whole current summary.
    Summary(String),
    /// A console line (global line number, text with its prefix).
    Console(u64, String),
    /// A run file whose upload succeeded.
    Uploaded(String),
    Preempting,
    /// Send everything, then `complete` with this exit code; answer when
    /// done (whether the stream is still healthy).
    Complete(i32, oneshot::Sender<bool>),
    /// Send everything pending now (no `complete`); answer when done.
    Flush(oneshot::Sender<bool>),
}

/// Where and how the stream posts.
pub struct FileStreamConfig {
    pub path: String,
    pub history_offset: i64,
    pub events_offset: i64,
    pub console_offset: u64,
    pub transmit_interval: Duration,
    pub heartbeat: Duration,
    /// Line data in one request at most (`x_file_stream_max_bytes`).
    pub max_bytes: usize,
    /// Line data held before a request goes out early (never more than
    /// `max_bytes`, and by default that): what bounds the stream's memory
    /// when a run logs faster than one request per transmit interval
    /// carries.
    pub buffer_bytes: usize,
    /// History and events lines longer than this are not sent (the
    /// backend would refuse them); the user is told
    /// (`x_file_stream_max_line_bytes`, else [`MAX_LINE`]). The summary's
    /// limit is never below [`MAX_LINE`], as with wandb-core.
    pub max_line: usize,
    pub gzip: bool,
    /// `stop_on_fatal_error`: a fatal error stops the run as a stop from
    /// the UI does (the SDK interrupts the script).
    pub stop_on_fatal: bool,
}

/// Events lines for the next request, kept as the request carries them:
/// JSON strings separated by commas, no allocation per line.
#[derive(Default)]
struct Lines {
    json: Vec<u8>,
    count: i64,
}

/// The history lines of the next request: the body's opening and the
/// lines, compressed as they arrive (whether or not the request will be).
///
/// Why: a request carries up to `max_bytes` (10 MiB) of lines, as
/// wandb-core's do, but holding them plain cost the service 57 MiB of peak
/// RSS at that size (`wandb-bench --online`, 50k rows at ~10k rows/s), so
/// requests went out at 4 MiB, and a run sent twice wandb-core's requests.
/// History rows compress about sixfold: compressed, a full request's lines
/// take under 2 MiB until they are sent (a plain request is inflated only
/// then, for the time it is in flight).
struct GzHistory {
    enc: flate2::write::GzEncoder<Vec<u8>>,
    count: i64,
}

impl GzHistory {
    /// Compressing into memory fails only on a bug in the compressor.
    const INFALLIBLE: &str = "gzip into a Vec cannot fail";

    fn start(offset: i64) -> Self {
        // Level 1: see `post`.
        let mut enc = flate2::write::GzEncoder::new(
            Vec::with_capacity(256 << 10),
            flate2::Compression::fast(),
        );
        write!(
            enc,
            "{{\"files\":{{\"wandb-history.jsonl\":{{\"offset\":{offset},\"content\":["
        )
        .expect(Self::INFALLIBLE);
        Self { enc, count: 0 }
    }

    fn push(&mut self, quoted: &str) {
        if self.count > 0 {
            self.enc.write_all(b",").expect(Self::INFALLIBLE);
        }
        self.enc
            .write_all(quoted.as_bytes())
            .expect(Self::INFALLIBLE);
        self.count += 1;
    }

    /// The whole body, compressed: `rest` follows the lines.
    fn finish(mut self, rest: &[u8]) -> Vec<u8> {
        self.enc.write_all(rest).expect(Self::INFALLIBLE);
        self.enc.finish().expect(Self::INFALLIBLE)
    }

    /// The whole body, plain; `plain_len`: about how long it is.
    fn finish_plain(self, rest: &[u8], plain_len: usize) -> Vec<u8> {
        use std::io::Read as _;
        let gz = self.finish(rest);
        let mut out = Vec::with_capacity(plain_len + 256);
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut out)
            .expect("what was just compressed inflates");
        out
    }
}

impl Lines {
    /// Adds a line, already quoted.
    fn push(&mut self, quoted: &str) {
        if self.count > 0 {
            self.json.push(b',');
        }
        self.json.extend_from_slice(quoted.as_bytes());
        self.count += 1;
    }
}

#[derive(Default)]
struct Pending {
    history: Option<GzHistory>,
    events: Lines,
    summary: Option<String>,
    console: BTreeMap<u64, String>,
    uploaded: Vec<String>,
    preempting: bool,
    bytes: usize,
    /// Lines left out for their length since the user was last told:
    /// the longest history row and summary.
    skipped: Skipped,
}

#[derive(Default)]
struct Skipped {
    history: Option<usize>,
    summary: Option<usize>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.history.is_none()
            && self.events.count == 0
            && self.summary.is_none()
            && self.console.is_empty()
            && self.uploaded.is_empty()
            && !self.preempting
    }
}

/// Takes an update into the next request, unless its lines would push the
/// request over `max_bytes`: then it is handed back, to go in the one
/// after.
fn accept(p: &mut Pending, m: FsMsg, cfg: &FileStreamConfig) -> Option<FsMsg> {
    // Lines are counted as the request carries them, quoted.
    let quoted = match &m {
        FsMsg::History(l) | FsMsg::Events(l) if l.len() <= cfg.max_line => {
            let mut q = String::with_capacity(l.len() + l.len() / 8 + 2);
            wandb_proto::json::write_str(l, &mut q);
            Some(q)
        }
        _ => None,
    };
    let len = match (&m, &quoted) {
        (_, Some(q)) => q.len() + 1,
        (FsMsg::Console(_, l), None) => l.len(),
        _ => 0,
    };
    if len > 0 && p.bytes > 0 && p.bytes + len > cfg.max_bytes {
        return Some(m);
    }
    merge(p, m, quoted, cfg);
    None
}

/// When the user was last told of lines left out for their length: at
/// most once a minute for each kind, in wandb-core's words, so a loop
/// logging oversized rows does not flood the console.
#[derive(Default)]
struct Told {
    history: Option<Instant>,
    summary: Option<Instant>,
}

impl Told {
    fn tell(&mut self, skipped: &mut Skipped, max: usize, warn: &impl Fn(String)) {
        let due =
            |last: Option<Instant>| last.is_none_or(|t| t.elapsed() >= Duration::from_secs(60));
        if let Some(len) = skipped.history
            && due(self.history)
        {
            skipped.history = None;
            self.history = Some(Instant::now());
            warn(format!(
                "Skipped uploading run.log() data that exceeded size limit ({len} > {max})."
            ));
        }
        if let Some(len) = skipped.summary
            && due(self.summary)
        {
            skipped.summary = None;
            self.summary = Some(Instant::now());
            let max = max.max(MAX_LINE);
            warn(format!(
                "Skipped uploading summary data that exceeded size limit ({len} > {max} bytes)."
            ));
        }
    }
}

/// Runs the stream until `Complete` (or the sender hangs up). Returns
/// whether it stayed healthy. `stopped` is set when the server says the
/// run was stopped from the UI; `warn` reports problems to the user.
pub async fn run(
    backend: Backend,
    mut cfg: FileStreamConfig,
    mut rx: mpsc::Receiver<FsMsg>,
    stopped: std::sync::Arc<std::sync::atomic::AtomicBool>,
    warn: impl Fn(String),
) -> bool {
    cfg.buffer_bytes = cfg.buffer_bytes.clamp(1, cfg.max_bytes.max(1));
    let mut pending = Pending::default();
    // An update that did not fit in the pending request; nothing more is
    // taken from the channel until it is in one (bounded memory).
    let mut waiting: Option<FsMsg> = None;
    let mut last_send: Option<Instant> = None;
    let mut fatal = false;
    let mut complete: Option<(i32, oneshot::Sender<bool>)> = None;
    let mut flush: Vec<oneshot::Sender<bool>> = Vec::new();
    let mut told = Told::default();
    // The sending side is gone: send what is pending, then stop.
    let mut closing = false;
    loop {
        if let Some(m) = waiting.take() {
            waiting = accept(&mut pending, m, &cfg);
        }
        // Told as soon as it happens, as wandb-core tells it.
        told.tell(&mut pending.skipped, cfg.max_line, &warn);
        let idle = pending.is_empty() && waiting.is_none();
        if (closing || !flush.is_empty()) && idle && complete.is_none() {
            for done in flush.drain(..) {
                let _ = done.send(!fatal);
            }
            if closing {
                return !fatal;
            }
        }
        // When may (or must) the next request go out?
        let now = Instant::now();
        let due = match last_send {
            None => now,
            Some(t) if pending.is_empty() => t + cfg.heartbeat,
            Some(t) => t + cfg.transmit_interval,
        };
        let urgent = pending.preempting || waiting.is_some() || pending.bytes >= cfg.buffer_bytes;
        let wait = if complete.is_some()
            || urgent
            || !flush.is_empty()
            || closing
            || (!pending.is_empty() && now >= due)
        {
            Duration::ZERO
        } else if pending.is_empty() && last_send.is_none() {
            Duration::from_secs(3600)
        } else {
            due.saturating_duration_since(now)
        };
        if !wait.is_zero() {
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(FsMsg::Complete(code, done)) => complete = Some((code, done)),
                    Some(FsMsg::Flush(done)) => flush.push(done),
                    Some(m) => waiting = accept(&mut pending, m, &cfg),
                    None => {
                        if pending.is_empty() {
                            told.tell(&mut pending.skipped, cfg.max_line, &warn);
                            return !fatal;
                        }
                        closing = true;
                    }
                },
                _ = tokio::time::sleep(wait) => {}
            }
            // Take what is already queued, as far as it fits, before
            // deciding.
            while waiting.is_none()
                && pending.bytes < cfg.buffer_bytes
                && let Ok(m) = rx.try_recv()
            {
                match m {
                    FsMsg::Complete(code, done) => complete = Some((code, done)),
                    FsMsg::Flush(done) => flush.push(done),
                    m => waiting = accept(&mut pending, m, &cfg),
                }
            }
            let idle = pending.is_empty() && waiting.is_none();
            if (!flush.is_empty() || closing) && idle && complete.is_none() {
                continue;
            }
            if complete.is_none()
                && flush.is_empty()
                && !closing
                && !pending.preempting
                && waiting.is_none()
                && pending.bytes < cfg.buffer_bytes
            {
                let now = Instant::now();
                let due_now = match last_send {
                    None => !pending.is_empty(),
                    Some(t) if pending.is_empty() => now >= t + cfg.heartbeat,
                    Some(t) => now >= t + cfg.transmit_interval,
                };
                if !due_now {
                    continue;
                }
            }
        }
        told.tell(&mut pending.skipped, cfg.max_line, &warn);
        // `complete` goes only once nothing else waits.
        let finishing = complete.is_some() && waiting.is_none();
        let body = build(
            &mut cfg,
            &mut pending,
            complete.as_ref().filter(|_| finishing).map(|(c, _)| *c),
        );
        let finishing = finishing && body.complete;
        last_send = Some(Instant::now());
        if !fatal {
            let _op = backend.operations.start(body.desc);
            match post(&backend, &cfg, body.bytes, body.gzipped).await {
                Ok(answer) => {
                    if answer.get("stopped").and_then(Value::as_bool) == Some(true) {
                        stopped.store(true, std::sync::atomic::Ordering::SeqCst);
                    }
                }
                Err(e) => {
                    fatal = true;
                    if cfg.stop_on_fatal {
                        stopped.store(true, std::sync::atomic::Ordering::SeqCst);
                    }
                    tracing::error!("filestream: fatal error: {e}");
                    warn(format!(
                        "Fatal error while uploading data. Some run data will not be synced, but it will still be written to disk. ({e})"
                    ));
                }
            }
        }
        if finishing {
            let (_, done) = complete.take().expect("finishing");
            let _ = done.send(!fatal);
            return !fatal;
        }
    }
}

/// The longest line the backend takes, by default (wandb-core's).
pub const MAX_LINE: usize = (10 << 20) - (100 << 10);

/// `quoted`: the history or events line as JSON (`None` if too long).
fn merge(p: &mut Pending, m: FsMsg, quoted: Option<String>, cfg: &FileStreamConfig) {
    match (m, quoted) {
        (FsMsg::History(l), None) => {
            tracing::warn!(
                "filestream: run history line too long, skipping ({} > {})",
                l.len(),
                cfg.max_line
            );
            p.skipped.history = p.skipped.history.max(Some(l.len()));
        }
        // As with wandb-core, system metrics are only logged.
        (FsMsg::Events(l), None) => {
            tracing::warn!(
                "filestream: system metrics line too long, skipping ({} > {})",
                l.len(),
                cfg.max_line
            );
        }
        (FsMsg::History(_), Some(q)) => {
            p.bytes += q.len() + 1;
            p.history
                .get_or_insert_with(|| GzHistory::start(cfg.history_offset))
                .push(&q);
        }
        (FsMsg::Events(_), Some(q)) => {
            p.bytes += q.len() + 1;
            p.events.push(&q);
        }
        // The summary is whole each time: a later, shorter one goes.
        (FsMsg::Summary(s), _) if s.len() > cfg.max_line.max(MAX_LINE) => {
            tracing::warn!(
                "filestream: run summary line too long, skipping ({} > {})",
                s.len(),
                cfg.max_line.max(MAX_LINE)
            );
            p.skipped.summary = p.skipped.summary.max(Some(s.len()));
        }
        (FsMsg::Summary(s), _) => p.summary = Some(s),
        (FsMsg::Console(n, l), _) => {
            p.bytes += l.len();
            if let Some(old) = p.console.insert(n, l) {
                p.bytes -= old.len();
            }
        }
        (FsMsg::Uploaded(f), _) => {
            if !p.uploaded.contains(&f) {
                p.uploaded.push(f);
            }
        }
        (FsMsg::Preempting, _) => p.preempting = true,
        (FsMsg::Complete(..) | FsMsg::Flush(_), _) => unreachable!("handled by the loop"),
    }
}

/// A request body, whether it carries `complete`, and what it sends in
/// words (the SDK's progress display).
struct Body {
    bytes: Bytes,
    /// Already compressed (the history lines were, as they came).
    gzipped: bool,
    complete: bool,
    desc: String,
}

/// Builds the next request body from what is pending: all history and
/// events lines (what was accepted fits in one request), the summary, one
/// contiguous run of console lines (the rest waits for the next request).
fn build(cfg: &mut FileStreamConfig, p: &mut Pending, complete: Option<i32>) -> Body {
    fn file(out: &mut Vec<u8>, first: &mut bool, name: &str, offset: i64, content: &[u8]) {
        if !std::mem::take(first) {
            out.push(b',');
        }
        let _ = write!(out, "\"{name}\":{{\"offset\":{offset},\"content\":[");
        out.extend_from_slice(content);
        out.extend_from_slice(b"]}");
    }
    let history = p.history.take();
    let plain_len = p.bytes;
    let mut parts = Vec::new();
    if let Some(h) = &history {
        parts.push(format!(
            "history steps {}-{}",
            cfg.history_offset,
            cfg.history_offset + h.count - 1
        ));
    }
    let mut first_file = true;
    let mut out = match &history {
        // The opening and the lines are in the compressor: what follows
        // them is built here.
        Some(h) => {
            cfg.history_offset += h.count;
            first_file = false;
            b"]}".to_vec()
        }
        None => b"{\"files\":{".to_vec(),
    };
    let events = std::mem::take(&mut p.events);
    if events.count > 0 {
        file(
            &mut out,
            &mut first_file,
            "wandb-events.jsonl",
            cfg.events_offset,
            &events.json,
        );
        cfg.events_offset += events.count;
    }
    if let Some(summary) = p.summary.take() {
        parts.push("summary".to_string());
        let mut quoted = String::new();
        wandb_proto::json::write_str(&summary, &mut quoted);
        file(
            &mut out,
            &mut first_file,
            "wandb-summary.json",
            0,
            quoted.as_bytes(),
        );
    }
    if let Some((&first, _)) = p.console.iter().next() {
        let mut run = String::new();
        let mut next = first;
        while let Some(line) = p.console.remove(&next) {
            if next > first {
                run.push(',');
            }
            wandb_proto::json::write_str(&line, &mut run);
            next += 1;
        }
        let offset = cfg.console_offset + first;
        parts.push(format!(
            "console lines {}-{}",
            offset,
            offset + (next - first) - 1
        ));
        file(
            &mut out,
            &mut first_file,
            "output.log",
            offset as i64,
            run.as_bytes(),
        );
    }
    if first_file {
        // No files: no "files" key.
        out.truncate(1);
    } else {
        out.push(b'}');
    }
    let field = |out: &mut Vec<u8>, text: &str| {
        if out.len() > 1 {
            out.push(b',');
        }
        out.extend_from_slice(text.as_bytes());
    };
    if !p.uploaded.is_empty() {
        let uploaded = serde_json::to_string(&std::mem::take(&mut p.uploaded)).unwrap_or_default();
        field(&mut out, &format!("\"uploaded\":{uploaded}"));
    }
    if std::mem::take(&mut p.preempting) {
        field(&mut out, "\"preempting\":true");
    }
    p.bytes = p.console.values().map(String::len).sum::<usize>();
    // `complete` goes with the last of the data (console lines that were
    // not contiguous need another request first).
    let complete = match complete {
        Some(code) if p.is_empty() => {
            field(&mut out, &format!("\"complete\":true,\"exitcode\":{code}"));
            true
        }
        _ => false,
    };
    out.push(b'}');
    let (bytes, gzipped) = match history {
        Some(h) if cfg.gzip => (Bytes::from(h.finish(&out)), true),
        Some(h) => (Bytes::from(h.finish_plain(&out, plain_len)), false),
        None => (Bytes::from(out), false),
    };
    Body {
        bytes,
        gzipped,
        complete,
        desc: if parts.is_empty() {
            "uploading data".to_string()
        } else {
            format!("uploading {}", parts.join(", "))
        },
    }
}

async fn post(
    backend: &Backend,
    cfg: &FileStreamConfig,
    body: Bytes,
    gzipped: bool,
) -> Result<Value, crate::backend::BackendError> {
    let bytes = if cfg.gzip && !gzipped {
        // Level 1: history lines compress well at any level, and level 6
        // cost 8.3 CPU-s to sync 1M rows (12.2 s wall, vs 7.8 s without
        // gzip) in `wandb-bench --sync`.
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        match enc.write_all(&body).and_then(|()| enc.finish()) {
            Ok(gz) => Bytes::from(gz),
            Err(_) => body,
        }
    } else {
        body
    };
    backend.file_stream(&cfg.path, bytes, cfg.gzip).await
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn cfg() -> FileStreamConfig {
        FileStreamConfig {
            path: "/files/e/p/r/file_stream".into(),
            history_offset: 10,
            events_offset: 0,
            console_offset: 3,
            transmit_interval: Duration::from_secs(15),
            heartbeat: Duration::from_secs(30),
            max_bytes: 10 << 20,
            buffer_bytes: 10 << 20,
            max_line: MAX_LINE,
            gzip: false,
            stop_on_fatal: false,
        }
    }

    /// Takes an update that fits.
    fn add(p: &mut Pending, m: FsMsg) {
        assert!(accept(p, m, &cfg()).is_none(), "fits");
    }

    /// The next body, parsed (and checked to be JSON).
    fn body(c: &mut FileStreamConfig, p: &mut Pending, complete: Option<i32>) -> Value {
        let body = build(c, p, complete);
        let value: Value = serde_json::from_slice(&body.bytes).expect("a JSON body");
        assert_eq!(body.complete, value.get("complete").is_some());
        value
    }

    #[test]
    fn gzipped_bodies_hold_what_plain_ones_do() {
        use std::io::Read as _;
        let updates = |history: bool, round: i64| {
            let mut u = Vec::new();
            if history {
                u.push(FsMsg::History(format!("{{\"a\":{round}}}")));
                u.push(FsMsg::History("{\"s\":\"q\\\"uote\\n\"}".into()));
            }
            u.push(FsMsg::Events("{\"system.cpu\":1}".into()));
            u.push(FsMsg::Summary("{\"a\":1}".into()));
            u.push(FsMsg::Console(round as u64, "line".into()));
            u.push(FsMsg::Uploaded("config.yaml".into()));
            u
        };
        for history in [true, false] {
            let mut plain = cfg();
            let mut gz = FileStreamConfig {
                gzip: true,
                ..cfg()
            };
            let (mut p, mut q) = (Pending::default(), Pending::default());
            for (round, complete) in [(0, None), (1, Some(3))] {
                for (m, n) in updates(history, round)
                    .into_iter()
                    .zip(updates(history, round))
                {
                    assert!(accept(&mut p, m, &plain).is_none());
                    assert!(accept(&mut q, n, &gz).is_none());
                }
                let a = build(&mut plain, &mut p, complete);
                let b = build(&mut gz, &mut q, complete);
                assert!(!a.gzipped);
                assert_eq!(b.gzipped, history);
                let b_json = if b.gzipped {
                    let mut text = String::new();
                    flate2::read::GzDecoder::new(&b.bytes[..])
                        .read_to_string(&mut text)
                        .expect("a gzip body");
                    text
                } else {
                    String::from_utf8(b.bytes.to_vec()).unwrap()
                };
                let a: Value = serde_json::from_slice(&a.bytes).unwrap();
                let b: Value = serde_json::from_str(&b_json).expect("a JSON body");
                assert_eq!(a, b, "history: {history}, round {round}");
                assert_eq!(plain.history_offset, gz.history_offset);
                assert!(p.is_empty() && q.is_empty());
            }
        }
    }

    #[test]
    fn bodies_carry_offsets_and_only_what_is_pending() {
        let mut c = cfg();
        let mut p = Pending::default();
        add(&mut p, FsMsg::History("{\"a\":1}".into()));
        add(
            &mut p,
            FsMsg::History("{\"a\":2,\"s\":\"q\\\"uote\"}".into()),
        );
        add(&mut p, FsMsg::Events("{\"system.cpu\":1}".into()));
        add(&mut p, FsMsg::Summary("{\"a\":2}".into()));
        add(&mut p, FsMsg::Console(0, "t line0".into()));
        add(&mut p, FsMsg::Console(1, "t line1".into()));
        add(&mut p, FsMsg::Uploaded("config.yaml".into()));
        assert_eq!(
            body(&mut c, &mut p, None),
            json!({
                "files": {
                    "wandb-history.jsonl": {"offset": 10, "content": ["{\"a\":1}", "{\"a\":2,\"s\":\"q\\\"uote\"}"]},
                    "wandb-events.jsonl": {"offset": 0, "content": ["{\"system.cpu\":1}"]},
                    "wandb-summary.json": {"offset": 0, "content": ["{\"a\":2}"]},
                    "output.log": {"offset": 3, "content": ["t line0", "t line1"]},
                },
                "uploaded": ["config.yaml"],
            })
        );
        assert!(p.is_empty());
        assert_eq!(p.bytes, 0);
        // An edited console line goes again at its offset; history moves on.
        add(&mut p, FsMsg::Console(1, "t line1 edited".into()));
        // (With the stream's own config: it knows where history is.)
        assert!(accept(&mut p, FsMsg::History("{\"a\":3}".into()), &c).is_none());
        assert_eq!(
            body(&mut c, &mut p, Some(0)),
            json!({
                "files": {
                    "wandb-history.jsonl": {"offset": 12, "content": ["{\"a\":3}"]},
                    "output.log": {"offset": 4, "content": ["t line1 edited"]},
                },
                "complete": true,
                "exitcode": 0,
            })
        );
        // A heartbeat is an empty object; preempting and complete alone.
        assert_eq!(body(&mut c, &mut Pending::default(), None), json!({}));
        let mut q = Pending::default();
        add(&mut q, FsMsg::Preempting);
        assert_eq!(body(&mut c, &mut q, None), json!({"preempting": true}));
        assert_eq!(
            body(&mut c, &mut Pending::default(), Some(3)),
            json!({"complete": true, "exitcode": 3})
        );
        // Offsets of any size.
        c.history_offset = i64::MAX - 5;
        assert!(accept(&mut p, FsMsg::History("{}".into()), &c).is_none());
        assert_eq!(
            body(&mut c, &mut p, None)["files"]["wandb-history.jsonl"]["offset"],
            json!(i64::MAX - 5)
        );
    }

    #[test]
    fn lines_over_the_limit_are_left_out_and_the_user_told_once_a_minute() {
        let mut c = cfg();
        c.max_line = 16;
        let mut p = Pending::default();
        for m in [
            FsMsg::History("{\"a\":1}".into()),
            FsMsg::History(format!("{{\"big\":\"{}\"}}", "x".repeat(20))),
            FsMsg::History(format!("{{\"big\":\"{}\"}}", "x".repeat(30))),
            FsMsg::Events(format!("{{\"system.x\":\"{}\"}}", "x".repeat(20))),
            FsMsg::Summary(format!("{{\"s\":\"{}\"}}", "x".repeat(MAX_LINE))),
        ] {
            assert!(accept(&mut p, m, &c).is_none());
        }
        let told = std::cell::RefCell::new(Vec::new());
        let warn = |m: String| told.borrow_mut().push(m);
        let mut t = Told::default();
        t.tell(&mut p.skipped, c.max_line, &warn);
        assert_eq!(
            *told.borrow(),
            [
                "Skipped uploading run.log() data that exceeded size limit (40 > 16).".to_string(),
                format!(
                    "Skipped uploading summary data that exceeded size limit ({} > {MAX_LINE} bytes).",
                    MAX_LINE + 8
                ),
            ]
        );
        // Only the line that fits goes: no summary (its limit is never
        // below the default), no events.
        assert_eq!(
            body(&mut c, &mut p, None),
            json!({"files": {"wandb-history.jsonl": {"offset": 10, "content": ["{\"a\":1}"]}}})
        );
        // Within the minute: counted, not told again yet.
        assert!(accept(&mut p, FsMsg::History("x".repeat(17)), &c).is_none());
        t.tell(&mut p.skipped, c.max_line, &warn);
        assert_eq!(told.borrow().len(), 2);
        assert_eq!(p.skipped.history, Some(17));
    }

    #[test]
    fn a_request_holds_at_most_max_bytes_of_lines() {
        let mut small = cfg();
        small.max_bytes = 36;
        let mut q = Pending::default();
        let mut handed_back = Vec::new();
        for i in 0..5 {
            if let Some(m) = accept(&mut q, FsMsg::History(format!("{{\"a\":{i}}}")), &small) {
                handed_back.push(m);
            }
        }
        // Three lines fit (7 bytes each, 12 quoted with a comma); the others
        // wait for the next request.
        assert_eq!(q.history.as_ref().map(|h| h.count), Some(3));
        assert_eq!(handed_back.len(), 2);
        let first = body(&mut small, &mut q, None);
        assert_eq!(
            first["files"]["wandb-history.jsonl"]["content"],
            json!(["{\"a\":0}", "{\"a\":1}", "{\"a\":2}"])
        );
        for m in handed_back {
            assert!(accept(&mut q, m, &small).is_none());
        }
        let second = body(&mut small, &mut q, Some(0));
        assert_eq!(second["files"]["wandb-history.jsonl"]["offset"], 13);
        assert_eq!(second["complete"], json!(true));
        // A line longer than a request is still sent, alone.
        let mut p = Pending::default();
        assert!(accept(&mut p, FsMsg::History("x".repeat(100)), &small).is_none());
        assert!(accept(&mut p, FsMsg::History("{}".into()), &small).is_some());
    }

    #[test]
    fn complete_waits_for_console_lines_that_are_not_contiguous() {
        let mut c = cfg();
        let mut p = Pending::default();
        add(&mut p, FsMsg::Console(0, "a".into()));
        add(&mut p, FsMsg::Console(2, "c".into()));
        let first = body(&mut c, &mut p, Some(0));
        assert!(first.get("complete").is_none());
        assert_eq!(first["files"]["output.log"]["content"], json!(["a"]));
        let second = body(&mut c, &mut p, Some(0));
        assert_eq!(second["files"]["output.log"]["offset"], 5);
        assert_eq!(second["complete"], json!(true));
    }
}
