//! The run files writer. It finishes the run's files in `files/`:
//! `output.log` (console output through the emulator), `requirements.txt`,
//! `config.yaml` and `wandb-summary.json`. It also answers the requests that
//! must wait for everything before them (exit, poll_exit, shutdown).
//!
//! A dedicated thread: it does file I/O. Files are written through a
//! temporary file and a rename, so a reader never sees half a file.

use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

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

pub(crate) struct RunFiles {
    pub files_dir: PathBuf,
    pub output_name: Option<String>,
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
}

impl RunFiles {
    pub fn run(self) {
        let mut console = Console::default();
        let mut output: Option<OutputFile> = None;
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
                Some(FilesMsg::Config(yaml)) => self.write_file("config.yaml", &yaml),
                Some(FilesMsg::Summary(json)) => self.write_file("wandb-summary.json", &json),
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

    /// Appends finished lines and rewrites the editable tail of `output.log`.
    fn flush_console(&self, console: &mut Console, output: &mut Option<OutputFile>) {
        let Some(name) = &self.output_name else {
            console.drain_finished();
            return;
        };
        if !console.take_dirty() {
            return;
        }
        let result = (|| -> std::io::Result<()> {
            if output.is_none() {
                fs::create_dir_all(&self.files_dir)?;
                let file = OpenOptions::new()
                    .create(true)
                    .truncate(true)
                    .write(true)
                    .open(self.files_dir.join(name))?;
                *output = Some(OutputFile { file, final_len: 0 });
            }
            let out = output.as_mut().expect("opened above");
            let mut finished = String::new();
            for line in console.drain_finished() {
                finished.push_str(&line);
                finished.push('\n');
            }
            let mut tail = String::new();
            for line in console.tail() {
                tail.push_str(&line);
                tail.push('\n');
            }
            out.file.seek(SeekFrom::Start(out.final_len))?;
            out.file.write_all(finished.as_bytes())?;
            out.final_len += finished.len() as u64;
            out.file.write_all(tail.as_bytes())?;
            out.file.set_len(out.final_len + tail.len() as u64)?;
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
