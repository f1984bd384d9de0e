//! Which log to read, and its records as W&B's inspector reports them.
//!
//! W&B reads the log with a reader that skips damage and says so: a
//! corrupt chunk costs the rest of its block ("skipped corrupt data: …"),
//! a record that does not decode is skipped, and a log that ends inside a
//! record "reached the end of an incomplete .wandb file". [`Records`] turns
//! the store's reader into those same events, for the printers, the
//! follower, the summary and the browser alike.

use std::fs::File;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};

use wandb_store::txlog::{CorruptKind, HeaderError, LogReader, ReadError};

use super::InspectError;
use super::gofmt::clean_path;
use super::record::{self, Decoded};
use crate::workspace;

/// The log to inspect, and the name to print for it.
#[derive(Debug, Clone)]
pub struct LogFile {
    pub path: PathBuf,
    /// As W&B prints it: `--run-file` as given, else the wandb directory
    /// joined with the run's directory and file, cleaned.
    pub display: String,
}

/// Finds the log: `--run-file`, else the run `latest-run` points at, else
/// the newest run in the directory.
pub fn resolve(wandb_dir: &Path, run_file: Option<&Path>) -> Result<LogFile, InspectError> {
    if let Some(file) = run_file {
        return Ok(LogFile {
            path: file.to_path_buf(),
            display: file.to_string_lossy().into_owned(),
        });
    }
    let latest = workspace::latest_run(wandb_dir)
        .map_err(|source| InspectError::WandbDir {
            dir: wandb_dir.to_path_buf(),
            source,
        })?
        .ok_or_else(|| InspectError::NoRuns {
            dir: wandb_dir.to_path_buf(),
        })?;
    let name = latest
        .log
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = latest.dir.to_string_lossy();
    let shown = if latest.dir.is_absolute() {
        format!("{dir}/{name}")
    } else {
        format!("{}/{dir}/{name}", wandb_dir.to_string_lossy())
    };
    Ok(LogFile {
        path: latest.log,
        display: clean_path(&shown),
    })
}

/// What reading the log produced next.
pub enum Event {
    /// A record that decoded, numbered from 1 among those.
    Record(u64, Decoded),
    /// Something skipped, and why (W&B's words).
    Skipped(String),
    /// Everything written so far is read; the log ends inside a record or
    /// inside its header. More may come if the run is still writing.
    Incomplete,
    /// Everything written so far is read; the log ends cleanly.
    End,
}

/// [`Event`], before decoding.
pub enum RawEvent<'a> {
    Record(&'a [u8]),
    Skipped(String),
    Incomplete,
    End,
}

/// The records of a log, read as far as they are written.
pub struct Records {
    log: LogFile,
    reader: Option<LogReader<File>>,
    buf: Vec<u8>,
    count: u64,
    /// Where the data after the last complete record starts (past any
    /// block skipped for damage): tells a corrupt chunk that continues a
    /// record from one that starts one.
    clean_from: u64,
}

impl Records {
    /// Opens the log; the header is read by the first [`Records::next_event`].
    pub fn open(log: &LogFile) -> Result<Self, InspectError> {
        File::open(&log.path).map_err(|source| InspectError::Open {
            path: log.path.clone(),
            source,
        })?;
        Ok(Self {
            log: log.clone(),
            reader: None,
            buf: Vec::new(),
            count: 0,
            clean_from: 0,
        })
    }

    /// The next event. A log still being written ends in
    /// [`Event::Incomplete`] or [`Event::End`]; calling again later
    /// continues where reading stopped.
    pub fn next_event(&mut self) -> Result<Event, InspectError> {
        let bytes = match self.next_raw()? {
            RawEvent::Record(bytes) => bytes,
            RawEvent::Skipped(why) => return Ok(Event::Skipped(why)),
            RawEvent::Incomplete => return Ok(Event::Incomplete),
            RawEvent::End => return Ok(Event::End),
        };
        match record::decode(bytes) {
            Ok(decoded) => {
                self.count += 1;
                Ok(Event::Record(self.count, decoded))
            }
            Err(reason) => Ok(Event::Skipped(format!(
                "transactionlog: error unmarshaling: {reason}"
            ))),
        }
    }

    /// [`Records::next_event`] without decoding: the record's bytes.
    pub fn next_raw(&mut self) -> Result<RawEvent<'_>, InspectError> {
        let reader = match &mut self.reader {
            Some(reader) => reader,
            None => {
                let file = File::open(&self.log.path).map_err(|source| InspectError::Open {
                    path: self.log.path.clone(),
                    source,
                })?;
                match LogReader::new(file) {
                    Ok(reader) => {
                        self.clean_from = reader.valid_len();
                        self.reader.insert(reader)
                    }
                    // An empty file: nothing written yet.
                    Err(ReadError::Header(HeaderError::TooShort { len: 0 })) => {
                        return Ok(RawEvent::End);
                    }
                    Err(ReadError::Header(HeaderError::TooShort { .. })) => {
                        return Ok(RawEvent::Incomplete);
                    }
                    Err(ReadError::Io(source)) => {
                        return Err(InspectError::Open {
                            path: self.log.path.clone(),
                            source,
                        });
                    }
                    Err(e) => {
                        return Err(InspectError::NotALog {
                            path: self.log.path.clone(),
                            reason: header_reason(&e),
                        });
                    }
                }
            }
        };
        match reader.next_into(&mut self.buf) {
            Ok(Some(pos)) => {
                self.clean_from = pos.end;
                Ok(RawEvent::Record(&self.buf))
            }
            Ok(None) => Ok(RawEvent::End),
            // A zeroed chunk header ends the block's data, and the block is
            // the last: the log ends there.
            Err(ReadError::Truncated { .. }) if zeroed_header(&self.log.path, self.clean_from) => {
                Ok(RawEvent::End)
            }
            Err(ReadError::Truncated { .. }) => Ok(RawEvent::Incomplete),
            Err(ReadError::Corrupt { offset, kind }) => {
                let within = continues_record(&self.log.path, self.clean_from, offset);
                // W&B checks a chunk's checksum before anything else.
                let kind = match kind {
                    CorruptKind::BadChunkType(_) | CorruptKind::UnexpectedChunk { .. }
                        if !chunk_checksum_ok(&self.log.path, offset) =>
                    {
                        CorruptKind::Checksum {
                            stored: 0,
                            computed: 0,
                        }
                    }
                    kind => kind,
                };
                reader.recover();
                let block = wandb_store::txlog::format::BLOCK_SIZE as u64;
                self.clean_from = (offset / block + 1) * block;
                Ok(RawEvent::Skipped(format!(
                    "transactionlog: {}: leveldb/record: {}",
                    if within {
                        "error reading"
                    } else {
                        "error getting next record"
                    },
                    corrupt_reason(&kind)
                )))
            }
            Err(ReadError::Header(_)) => Ok(RawEvent::Incomplete),
            Err(ReadError::Io(source)) => Err(InspectError::Read {
                path: self.log.path.clone(),
                source,
            }),
        }
    }
}

/// Whether the damaged chunk at `offset` continues a record begun after
/// `from` (anything but zero padding lies between them).
fn continues_record(path: &Path, from: u64, offset: u64) -> bool {
    if offset <= from {
        return false;
    }
    // A record spanning more than this certainly began before the damage.
    let limit = (offset - from).min(1 << 20);
    read_from(path, from, limit).is_some_and(|between| between.iter().any(|&b| b != 0))
}

/// Bytes of the file from `from` on, up to a limit.
fn read_from(path: &Path, from: u64, limit: u64) -> Option<Vec<u8>> {
    let mut file = File::open(path).ok()?;
    file.seek(SeekFrom::Start(from)).ok()?;
    let mut bytes = Vec::new();
    file.take(limit).read_to_end(&mut bytes).ok()?;
    Some(bytes)
}

/// Whether a whole chunk header of zeros is at `from`.
fn zeroed_header(path: &Path, from: u64) -> bool {
    let header = wandb_store::txlog::format::CHUNK_HEADER_LEN;
    read_from(path, from, header as u64)
        .is_some_and(|b| b.len() == header && b.iter().all(|&x| x == 0))
}

/// Whether the chunk at `offset` matches its checksum.
fn chunk_checksum_ok(path: &Path, offset: u64) -> bool {
    let header = wandb_store::txlog::format::CHUNK_HEADER_LEN;
    let Some(head) = read_from(path, offset, header as u64) else {
        return true;
    };
    let Ok(head) = <[u8; 7]>::try_from(head.as_slice()) else {
        return true;
    };
    let stored = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    let len = u64::from(u16::from_le_bytes([head[4], head[5]]));
    let Some(payload) = read_from(path, offset + header as u64, len) else {
        return true;
    };
    wandb_store::txlog::format::chunk_crc(head[6], &payload) == stored
}

fn corrupt_reason(kind: &CorruptKind) -> String {
    match kind {
        CorruptKind::Checksum { .. } => "invalid chunk (checksum mismatch)".to_string(),
        CorruptKind::CrossesBlock { len } => format!("chunk too long ({len})"),
        CorruptKind::BadChunkType(t) => format!("invalid chunk (chunk type {t})"),
        CorruptKind::UnexpectedChunk { .. } => "invalid chunk (out of order)".to_string(),
        CorruptKind::ZeroedInsideRecord => "invalid chunk (zeroed inside a record)".to_string(),
    }
}

/// Why the header is not a log's, in the words W&B uses.
fn header_reason(e: &ReadError) -> String {
    match e {
        ReadError::Header(HeaderError::BadIdent { found }) => {
            let text: String = found
                .iter()
                .map(|&b| match b {
                    b'"' | b'\\' => format!("\\{}", char::from(b)),
                    0x20..=0x7e => char::from(b).to_string(),
                    _ => format!("\\x{b:02x}"),
                })
                .collect();
            format!(
                "invalid W&B identifier: {:02X}{:02X}{:02X}{:02X} (\"{text}\")",
                found[0], found[1], found[2], found[3]
            )
        }
        ReadError::Header(HeaderError::BadMagic { found }) => {
            format!("invalid W&B magic: {found}")
        }
        ReadError::Header(HeaderError::UnsupportedVersion { .. }) => {
            "a newer wandb version is required to read this file".to_string()
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_log_as_w_and_b_does() {
        let dir = tempfile::tempdir().unwrap();
        let wandb = dir.path().join("wandb");
        let run = wandb.join("offline-run-20260101_000000-abc");
        std::fs::create_dir_all(&run).unwrap();
        std::fs::write(run.join("run-abc.wandb"), b"").unwrap();
        let given = format!("{}/./wandb/", dir.path().display());
        let log = resolve(Path::new(&given), None).unwrap();
        assert_eq!(
            log.display,
            format!(
                "{}/wandb/offline-run-20260101_000000-abc/run-abc.wandb",
                dir.path().display()
            )
        );
        std::os::unix::fs::symlink("offline-run-20260101_000000-abc", wandb.join("latest-run"))
            .unwrap();
        let log = resolve(&wandb, None).unwrap();
        assert!(log.path.ends_with("run-abc.wandb"));
        assert!(matches!(
            resolve(dir.path(), None),
            Err(InspectError::NoRuns { .. })
        ));
    }
}
