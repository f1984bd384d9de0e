//! Following one TensorBoard log directory as its writer fills it.
//!
//! TensorFlow, PyTorch and tensorboardX write `events.out.tfevents.<secs>.
//! <host>…` files, a new one per writer session, appending records to the
//! newest. The reader goes through the directory's files in name order
//! (which is time order), forward only, and tails the last one: it moves
//! to the next file only once the current one is read to its end and a
//! later file exists (a writer never returns to an older file). A record
//! cut at the end of a file is waited for, never skipped.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use prost::Message;

use crate::proto::Event;
use crate::record::{self, RecordError};

/// A checksum that stays wrong this long is corruption, not a page the
/// writer has not flushed yet.
pub const CHECKSUM_GRACE: Duration = Duration::from_secs(30);
/// The most read from a file in one go: memory stays bounded whatever the
/// file's size.
const READ_CHUNK: u64 = 4 << 20;

/// Where a log directory's files are: the local filesystem, or a bucket
/// ([`crate::cloud`]).
pub trait Source: Send {
    /// Every file under the directory, as `/`-separated paths relative to
    /// it (subdirectories included).
    fn list(&mut self) -> std::io::Result<Vec<String>>;
    /// Appends the bytes of `key` from `offset` (at most `max`) to `into`;
    /// returns how many.
    fn read(
        &mut self,
        key: &str,
        offset: u64,
        max: u64,
        into: &mut Vec<u8>,
    ) -> std::io::Result<usize>;
    /// Where `key` is, to name it: a local path, or the object's URL.
    fn path(&self, key: &str) -> PathBuf;
    /// Whether [`Self::path`] is a file on this machine.
    fn is_local(&self) -> bool;
}

/// A directory on this machine.
struct Local {
    dir: PathBuf,
    /// The file being read, kept open between reads.
    open: Option<(String, File)>,
}

impl Source for Local {
    fn list(&mut self) -> std::io::Result<Vec<String>> {
        let mut keys = Vec::new();
        for entry in walkdir::WalkDir::new(&self.dir)
            .follow_links(false)
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_file())
        {
            let Ok(rel) = entry.path().strip_prefix(&self.dir) else {
                continue;
            };
            keys.push(
                rel.components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/"),
            );
        }
        Ok(keys)
    }

    fn read(
        &mut self,
        key: &str,
        offset: u64,
        max: u64,
        into: &mut Vec<u8>,
    ) -> std::io::Result<usize> {
        if self.open.as_ref().is_none_or(|(k, _)| k != key) {
            self.open = Some((key.to_string(), File::open(self.path(key))?));
        }
        let (_, file) = self.open.as_mut().expect("opened above");
        let read = file
            .seek(SeekFrom::Start(offset))
            .and_then(|_| file.take(max).read_to_end(into));
        if read.is_err() {
            // Opened again next time (the file may have been replaced).
            self.open = None;
        }
        read
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(key)
    }

    fn is_local(&self) -> bool {
        true
    }
}

/// Which files of the directory belong to this run.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only files written on this host (`…tfevents.<secs>.<host>…`).
    pub host: Option<String>,
    /// Only files started at or after this Unix time (seconds).
    pub start_time: Option<i64>,
}

impl Filter {
    fn pattern(&self) -> regex::Regex {
        let host = self
            .host
            .as_deref()
            .filter(|h| !h.is_empty())
            .map(|h| format!(r"\.{}", regex::escape(h)))
            .unwrap_or_default();
        regex::Regex::new(&format!(r"tfevents\.(\d+){host}")).expect("a valid pattern")
    }
}

/// What the directory has next.
#[derive(Debug)]
pub enum Next {
    /// A file became the one read (first sight of it): the path.
    File(PathBuf),
    Event(Box<Event>),
    /// Nothing more for now.
    Idle,
}

#[derive(Debug, thiserror::Error)]
pub enum LogDirError {
    #[error("{path}: {source}")]
    Record { path: PathBuf, source: RecordError },
    #[error("{path}: event at byte {offset} does not decode: {source}")]
    Decode {
        path: PathBuf,
        offset: u64,
        source: prost::DecodeError,
    },
}

struct Current {
    key: String,
    path: PathBuf,
    /// Bytes of the file consumed as whole records.
    consumed: u64,
    /// Bytes read from the file; those before `pos` are consumed.
    buf: Vec<u8>,
    /// Where the next record starts in `buf`: records are parsed in place
    /// and the buffer compacted only when read into again (draining its
    /// front per record would move the whole chunk each time).
    pos: usize,
}

impl Current {
    fn new(key: String, path: PathBuf) -> Self {
        Current {
            key,
            path,
            consumed: 0,
            buf: Vec::new(),
            pos: 0,
        }
    }
}

/// A log directory being followed.
pub struct LogDir {
    source: Box<dyn Source>,
    pattern: regex::Regex,
    start_time: Option<i64>,
    current: Option<Current>,
    bad_checksum_since: Option<Instant>,
    warnings: Vec<String>,
}

impl LogDir {
    /// A local directory.
    pub fn new(dir: impl Into<PathBuf>, filter: &Filter) -> Self {
        Self::with_source(
            Box::new(Local {
                dir: dir.into(),
                open: None,
            }),
            filter,
        )
    }

    /// A directory wherever `source` keeps it.
    pub fn with_source(source: Box<dyn Source>, filter: &Filter) -> Self {
        LogDir {
            source,
            pattern: filter.pattern(),
            start_time: filter.start_time.filter(|t| *t > 0),
            current: None,
            bad_checksum_since: None,
            warnings: Vec::new(),
        }
    }

    /// Whether its files are on this machine (and can be linked).
    pub fn is_local(&self) -> bool {
        self.source.is_local()
    }

    /// Problems met since the last call, for the run's log.
    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    /// The next event, a file newly started, or `Idle`. An error is
    /// corruption: the directory cannot be read further.
    pub fn poll(&mut self) -> Result<Next, LogDirError> {
        loop {
            let Some(cur) = self.current.as_mut() else {
                let Some((key, path)) = self.next_file(None) else {
                    return Ok(Next::Idle);
                };
                self.current = Some(Current::new(key, path.clone()));
                return Ok(Next::File(path));
            };
            match record::parse(&cur.buf[cur.pos..]) {
                Ok(Some((data, used))) => {
                    self.bad_checksum_since = None;
                    let offset = cur.consumed;
                    let event = Event::decode(data).map_err(|source| LogDirError::Decode {
                        path: cur.path.clone(),
                        offset,
                        source,
                    });
                    cur.pos += used;
                    cur.consumed += used as u64;
                    return event.map(|e| Next::Event(Box::new(e)));
                }
                Ok(None) => {}
                Err(source) => {
                    let since = *self.bad_checksum_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > CHECKSUM_GRACE {
                        return Err(LogDirError::Record {
                            path: cur.path.clone(),
                            source,
                        });
                    }
                    // Read the record again later: the writer may not have
                    // flushed all of it.
                    self.warnings.push(format!(
                        "{}: {source} at byte {}, will retry",
                        cur.path.display(),
                        cur.consumed
                    ));
                    cur.buf.clear();
                    cur.pos = 0;
                    return Ok(Next::Idle);
                }
            }
            self.bad_checksum_since = None;
            // Whether a later file exists is asked before reading to the
            // end, so that the end read is really the end.
            let key = cur.key.clone();
            let later = self.next_file(Some(&key));
            let cur = self.current.as_mut().expect("set above");
            match read_more(self.source.as_mut(), cur) {
                Ok(0) => {}
                Ok(_) => continue,
                Err(e) => {
                    self.warnings
                        .push(format!("{}: {e}; will retry", cur.path.display()));
                    return Ok(Next::Idle);
                }
            }
            let Some((key, path)) = later else {
                return Ok(Next::Idle);
            };
            if cur.buf.len() > cur.pos {
                self.warnings.push(format!(
                    "{}: ends with an incomplete record (maybe incomplete event) while {} exists",
                    cur.path.display(),
                    path.display()
                ));
                return Ok(Next::Idle);
            }
            self.current = Some(Current::new(key, path.clone()));
            return Ok(Next::File(path));
        }
    }

    /// The first tfevents file after `after` in name order (slash-separated
    /// paths relative to the directory, subdirectories included).
    fn next_file(&mut self, after: Option<&str>) -> Option<(String, PathBuf)> {
        let keys = match self.source.list() {
            Ok(keys) => keys,
            Err(e) => {
                // Not there yet, or the network: looked at again next time.
                self.warnings
                    .push(format!("listing the log directory: {e}"));
                return None;
            }
        };
        let best = keys
            .into_iter()
            .filter(|key| after.is_none_or(|a| key.as_str() > a) && self.accepts(key))
            .min()?;
        let path = self.source.path(&best);
        Some((best, path))
    }

    fn accepts(&self, key: &str) -> bool {
        if key.ends_with(".profile-empty") || key.ends_with(".sagemaker-uploaded") {
            return false;
        }
        let Some(caps) = self.pattern.captures(key) else {
            return false;
        };
        match self.start_time {
            None => true,
            Some(start) => caps[1].parse::<i64>().is_ok_and(|t| t >= start),
        }
    }
}

/// Reads what the file has past what is buffered (at most one chunk);
/// returns the bytes read.
fn read_more(source: &mut dyn Source, cur: &mut Current) -> std::io::Result<usize> {
    cur.buf.drain(..cur.pos);
    cur.pos = 0;
    let offset = cur.consumed + cur.buf.len() as u64;
    source.read(&cur.key, offset, READ_CHUNK, &mut cur.buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Kind, Summary, SummaryValue};
    use std::io::Write;

    fn event(step: i64, tag: &str, v: f32) -> Vec<u8> {
        record::frame(
            &Event {
                wall_time: 1.0,
                step,
                summary: Some(Summary {
                    value: vec![SummaryValue {
                        tag: tag.into(),
                        metadata: None,
                        kind: Some(Kind::SimpleValue(v)),
                    }],
                }),
            }
            .encode_to_vec(),
        )
    }

    fn drain(d: &mut LogDir) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            match d.poll().unwrap() {
                Next::Idle => return seen,
                Next::File(p) => {
                    seen.push(format!("file {}", p.file_name().unwrap().to_string_lossy()))
                }
                Next::Event(e) => seen.push(format!("step {}", e.step)),
            }
        }
    }

    #[test]
    fn files_in_order_growing_records_and_filters() {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        let mut d = LogDir::new(
            dir.path(),
            &Filter {
                host: Some("host".into()),
                start_time: Some(100),
            },
        );
        assert!(drain(&mut d).is_empty());
        // Filtered out: another host, too old, profiler leftovers.
        std::fs::write(p("events.out.tfevents.150.other"), event(9, "x", 1.0)).unwrap();
        std::fs::write(p("events.out.tfevents.50.host"), event(9, "x", 1.0)).unwrap();
        std::fs::write(p("events.out.tfevents.150.host.profile-empty"), b"").unwrap();
        let mut first = std::fs::File::create(p("events.out.tfevents.100.host")).unwrap();
        first.write_all(&event(0, "x", 1.0)).unwrap();
        // Half a record: waited for.
        let second = event(1, "x", 2.0);
        first.write_all(&second[..10]).unwrap();
        assert_eq!(
            drain(&mut d),
            ["file events.out.tfevents.100.host", "step 0"]
        );
        first.write_all(&second[10..]).unwrap();
        assert_eq!(drain(&mut d), ["step 1"]);
        // A later file: read once the first is done; empty files announced.
        std::fs::write(p("events.out.tfevents.200.host"), b"").unwrap();
        std::fs::write(p("events.out.tfevents.300.host"), event(2, "x", 3.0)).unwrap();
        assert_eq!(
            drain(&mut d),
            [
                "file events.out.tfevents.200.host",
                "file events.out.tfevents.300.host",
                "step 2"
            ]
        );
        // A file sorting before the current one is never read.
        std::fs::write(p("events.out.tfevents.250.host"), event(7, "x", 1.0)).unwrap();
        assert!(drain(&mut d).is_empty());
    }

    #[test]
    fn an_incomplete_record_holds_the_reader_on_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = LogDir::new(dir.path(), &Filter::default());
        let whole = event(0, "x", 1.0);
        std::fs::write(dir.path().join("events.out.tfevents.1.h"), &whole[..5]).unwrap();
        std::fs::write(
            dir.path().join("events.out.tfevents.2.h"),
            event(1, "x", 1.0),
        )
        .unwrap();
        assert_eq!(drain(&mut d), ["file events.out.tfevents.1.h"]);
        assert!(!d.take_warnings().is_empty());
    }

    #[test]
    fn subdirectories_are_read_and_a_bad_checksum_is_retried() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let mut bad = event(0, "x", 1.0);
        let n = bad.len();
        bad[n - 1] ^= 0xff;
        let path = dir.path().join("sub/events.out.tfevents.1.h");
        std::fs::write(&path, &bad).unwrap();
        let mut d = LogDir::new(dir.path(), &Filter::default());
        assert_eq!(drain(&mut d), ["file events.out.tfevents.1.h"]);
        assert_eq!(d.take_warnings().len(), 1);
        // Fixed by the writer (an unflushed page): read on the next try.
        std::fs::write(&path, event(0, "x", 1.0)).unwrap();
        assert_eq!(drain(&mut d), ["step 0"]);
    }
}
