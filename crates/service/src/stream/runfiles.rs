//! The run files writer. It finishes the run's files in `files/`:
//! `output.log` (console output through the emulator), `requirements.txt`,
//! `config.yaml` and `wandb-summary.json`. It also answers the requests that
//! must wait for everything before them (exit, poll_exit, shutdown).
//!
//! A dedicated thread: it does file I/O. Files are written through a
//! temporary file and a rename, so a reader never sees half a file.
//!
//! With `console_multipart`, the console goes to chunks instead,
//! `logs/output_<time>_<ns>.log`, a new one once a chunk holds
//! `console_chunk_max_bytes` or is `console_chunk_max_seconds` old, as
//! wandb-core writes them: a chunk starts at the line after the last one
//! its predecessor held, and lines of a closed chunk no longer change.

use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use wandb_proto::pb;

use crate::respond::Reply;
use crate::runlog::RunLog;
use crate::runstate::console::Console;

/// How often `output.log` is rewritten while output keeps coming.
const CONSOLE_DEBOUNCE: Duration = Duration::from_secs(2);

/// Work for the run files writer.
#[derive(Debug)]
pub enum FilesMsg {
    /// Text the user process wrote to stdout or stderr.
    Console { stderr: bool, text: String },
    /// Lines from `run.write_logs()`.
    LoggerLines(String),
    /// `requirements.txt` lines.
    Requirements(Vec<String>),
    /// A new `config.yaml`.
    Config(String),
    /// A new `wandb-summary.json`.
    Summary(String),
    /// Answer once everything before is done.
    Answer(Reply, Answer),
    /// The run exited: finalise files, then answer (if asked).
    Exit { reply: Option<Reply> },
}

/// The answers the run files writer gives.
#[derive(Debug, Clone, Copy)]
pub enum Answer {
    PollExit { done: bool },
    Shutdown,
}

/// When a console chunk is full (`console_multipart`); 0 / `None`: no limit.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Chunking {
    pub max_bytes: u64,
    pub max_age: Option<Duration>,
}

pub(crate) struct RunFiles {
    pub files_dir: PathBuf,
    pub output_name: Option<String>,
    pub chunking: Option<Chunking>,
    /// `x_primary`: only the primary writer of a run keeps its run-level
    /// files (`config.yaml`, `wandb-summary.json`); a secondary's would
    /// clobber the primary's in a shared directory, and are never uploaded.
    pub primary: bool,
    pub rx: flume::Receiver<FilesMsg>,
    /// Set once the run exited and its files are final (the online sender
    /// uploads them then).
    pub done: tokio::sync::watch::Sender<bool>,
    pub log: RunLog,
}

struct OutputFile {
    file: File,
    /// Length of the final part of the file (lines that no longer change).
    final_len: u64,
    /// The first console line (of the whole run) the file holds, and when
    /// it was begun (chunks).
    first_line: u64,
    began: Instant,
}

/// The console file (or current chunk) and where the console stands.
#[derive(Default)]
struct ConsoleFile {
    output: Option<OutputFile>,
    /// Final lines so far, over the whole run.
    lines_done: u64,
    /// Where the next chunk starts.
    next_first_line: u64,
}

impl RunFiles {
    pub fn run(self) {
        let mut console = Console::default();
        let mut output = ConsoleFile::default();
        let mut last_console_write = Instant::now();
        loop {
            let msg = match self.rx.recv_timeout(CONSOLE_DEBOUNCE) {
                Ok(msg) => Some(msg),
                Err(flume::RecvTimeoutError::Timeout) => None,
                Err(flume::RecvTimeoutError::Disconnected) => break,
            };
            match msg {
                None => {}
                Some(FilesMsg::Console { stderr, text }) => console.write(stderr, &text),
                Some(FilesMsg::LoggerLines(text)) => console.append_lines(&text),
                Some(FilesMsg::Requirements(lines)) => {
                    let mut text = lines.join("\n");
                    text.push('\n');
                    self.write_file("requirements.txt", &text);
                }
                Some(FilesMsg::Config(yaml)) if self.primary => {
                    self.write_file("config.yaml", &yaml)
                }
                Some(FilesMsg::Summary(json)) if self.primary => {
                    self.write_file("wandb-summary.json", &json)
                }
                Some(FilesMsg::Config(_) | FilesMsg::Summary(_)) => {}
                Some(FilesMsg::Answer(reply, answer)) => {
                    self.flush_console(&mut console, &mut output);
                    answer_now(&reply, answer);
                }
                Some(FilesMsg::Exit { reply }) => {
                    self.flush_console(&mut console, &mut output);
                    self.done.send_replace(true);
                    if let Some(reply) = reply {
                        reply.result(pb::result::ResultType::ExitResult(
                            pb::RunExitResult::default(),
                        ));
                    }
                }
            }
            if last_console_write.elapsed() >= CONSOLE_DEBOUNCE {
                self.flush_console(&mut console, &mut output);
                last_console_write = Instant::now();
            }
        }
        self.flush_console(&mut console, &mut output);
    }

    /// Appends finished lines and rewrites the editable tail of `output.log`
    /// (or of the current chunk, starting a new one when it is full).
    fn flush_console(&self, console: &mut Console, state: &mut ConsoleFile) {
        let Some(name) = &self.output_name else {
            console.drain_finished();
            return;
        };
        if !console.take_dirty() {
            return;
        }
        let result = (|| -> std::io::Result<()> {
            if state.output.is_none() {
                let path = match self.chunking {
                    None => PathBuf::from(name),
                    Some(_) => chunk_path(name, SystemTime::now()),
                };
                let path = self.files_dir.join(path);
                if let Some(dir) = path.parent() {
                    fs::create_dir_all(dir)?;
                }
                let file = OpenOptions::new()
                    .create(true)
                    .truncate(true)
                    .write(true)
                    .open(path)?;
                state.output = Some(OutputFile {
                    file,
                    final_len: 0,
                    first_line: state.next_first_line,
                    began: Instant::now(),
                });
            }
            let out = state.output.as_mut().expect("opened above");
            let mut finished = String::new();
            for line in console.drain_finished() {
                if state.lines_done >= out.first_line {
                    finished.push_str(&line);
                    finished.push('\n');
                }
                state.lines_done += 1;
            }
            let mut tail = String::new();
            let tail_lines = console.tail();
            for (i, line) in tail_lines.iter().enumerate() {
                if state.lines_done + i as u64 >= out.first_line {
                    tail.push_str(line);
                    tail.push('\n');
                }
            }
            out.file.seek(SeekFrom::Start(out.final_len))?;
            out.file.write_all(finished.as_bytes())?;
            out.final_len += finished.len() as u64;
            out.file.write_all(tail.as_bytes())?;
            let size = out.final_len + tail.len() as u64;
            out.file.set_len(size)?;
            if let Some(c) = self.chunking {
                let full = c.max_bytes > 0 && size >= c.max_bytes;
                let old = c.max_age.is_some_and(|age| out.began.elapsed() >= age);
                if full || old {
                    // The chunk keeps its lines as they are now.
                    state.next_first_line = state.lines_done + tail_lines.len() as u64;
                    state.output = None;
                }
            }
            Ok(())
        })();
        if let Err(e) = result {
            self.log.error(&format!("writing {name}: {e}"));
        }
    }

    fn write_file(&self, name: &str, content: &str) {
        if let Err(e) =
            wandb_store::write_atomically(&self.files_dir.join(name), content.as_bytes())
        {
            self.log.error(&format!("writing {name}: {e}"));
        }
    }
}

fn answer_now(reply: &Reply, answer: Answer) {
    match answer {
        Answer::PollExit { done } => reply.response(Some(
            pb::response::ResponseType::PollExitResponse(pb::PollExitResponse {
                done,
                pusher_stats: Some(Default::default()),
                file_counts: Some(Default::default()),
                operation_stats: Some(Default::default()),
                ..Default::default()
            }),
        )),
        Answer::Shutdown => reply.response(None),
    }
}

/// `name` as stem and extension (with its dot).
fn split_ext(name: &str) -> (&str, &str) {
    name.rfind('.')
        .map_or((name, ""), |i| (&name[..i], &name[i..]))
}

/// Whether `file` (a name in `files/logs/`) is a chunk of the console file
/// `name`, as [`chunk_path`] names them.
pub(crate) fn is_chunk_of(file: &str, name: &str) -> bool {
    let (base, ext) = split_ext(name);
    file.strip_prefix(base)
        .and_then(|rest| rest.strip_prefix('_'))
        .and_then(|rest| rest.strip_suffix(ext))
        .is_some_and(|stamp| {
            stamp.len() == 25 && stamp.chars().all(|c| c.is_ascii_digit() || c == '_')
        })
}

/// `logs/<base>_<YYYYMMDD_HHMMSS>_<nanoseconds>.<ext>` for the console file
/// `name` (`output.log`, `output_<label>.log`), as wandb-core names chunks
/// (in UTC: wandb-core uses the machine's zone).
pub(crate) fn chunk_path(name: &str, at: SystemTime) -> PathBuf {
    let (base, ext) = split_ext(name);
    let stamp = humantime::format_rfc3339_nanos(at).to_string();
    // 2026-12-05T23:53:43.123456789Z
    let (date, rest) = stamp.split_once('T').unwrap_or((&stamp, ""));
    let (time, nanos) = rest
        .trim_end_matches('Z')
        .split_once('.')
        .unwrap_or((rest, "0"));
    PathBuf::from("logs").join(format!(
        "{base}_{}_{}_{nanos:0>9}{ext}",
        date.replace('-', ""),
        time.replace(':', "")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_named_as_wandb_core_names_them() {
        let at = SystemTime::UNIX_EPOCH + Duration::new(1_796_513_623, 5_000);
        assert_eq!(
            chunk_path("output.log", at),
            PathBuf::from("logs/output_20261205_233343_000005000.log")
        );
        assert_eq!(
            chunk_path("output_node-1.log", at),
            PathBuf::from("logs/output_node-1_20261205_233343_000005000.log")
        );
        assert!(is_chunk_of(
            "output_20261205_233343_000005000.log",
            "output.log"
        ));
        assert!(!is_chunk_of(
            "output_node-1_20261205_233343_000005000.log",
            "output.log"
        ));
        assert!(!is_chunk_of("output.log", "output.log"));
    }
}
