//! Appending records to a new transaction log.
//!
//! Records are framed into an in-memory buffer and written to the file on a
//! [`FlushPolicy`] (buffered size and age), on [`LogWriter::flush`], and on
//! [`LogWriter::close`], which also fsyncs. Framing follows wandb-core's writer
//! exactly, so the same records produce the same bytes.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use wandb_proto::wire::{self, WireError};

use super::format::{
    BLOCK_SIZE, CHUNK_HEADER_LEN, ChunkType, FILE_HEADER, block_remaining, chunk_crc,
};

/// When buffered records are handed to the operating system.
///
/// wandb-core flushes every 15 s; we flush much sooner so that a crash of the
/// service loses as little as possible and a reader following the file (the
/// sender, `sync --live`) sees records promptly. A flush is a `write(2)`, not
/// an fsync; durability against power loss comes from [`LogWriter::sync`] and
/// [`LogWriter::close`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushPolicy {
    /// Flush once the oldest unflushed record is this old (checked on append
    /// and by [`LogWriter::flush_if_due`]).
    pub interval: Duration,
    /// Flush once this many framed bytes are buffered.
    pub max_buffered: usize,
}

impl Default for FlushPolicy {
    fn default() -> Self {
        Self {
            interval: Duration::from_millis(500),
            max_buffered: 256 * 1024,
        }
    }
}

/// Errors of [`LogWriter`], naming the file concerned.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("transaction log {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The record to append is not a well-formed protobuf message, so its
    /// `num` cannot be set.
    #[error("transaction log {path}: record {num} is malformed")]
    Record {
        path: PathBuf,
        num: i64,
        #[source]
        source: WireError,
    },
}

/// Splits record payloads into chunks at absolute file offsets.
#[derive(Debug, Clone)]
struct Framer {
    /// Absolute offset where the next byte will go.
    offset: u64,
}

impl Framer {
    fn frame(&mut self, payload: &[u8], out: &mut Vec<u8>) {
        let mut rest = payload;
        let mut first = true;
        loop {
            let remaining = block_remaining(self.offset);
            if remaining < CHUNK_HEADER_LEN {
                // Too small for a chunk header: zero-fill to the next block.
                out.resize(out.len() + remaining, 0);
                self.offset += remaining as u64;
                continue;
            }
            // With exactly a header's worth left this emits an empty FIRST
            // chunk, as wandb-core does.
            let n = rest.len().min(remaining - CHUNK_HEADER_LEN);
            let last = n == rest.len();
            let chunk_type = match (first, last) {
                (true, true) => ChunkType::Full,
                (true, false) => ChunkType::First,
                (false, false) => ChunkType::Middle,
                (false, true) => ChunkType::Last,
            } as u8;
            let (body, tail) = rest.split_at(n);
            out.extend_from_slice(&chunk_crc(chunk_type, body).to_le_bytes());
            out.extend_from_slice(&(n as u16).to_le_bytes());
            out.push(chunk_type);
            out.extend_from_slice(body);
            self.offset += (CHUNK_HEADER_LEN + n) as u64;
            if last {
                return;
            }
            rest = tail;
            first = false;
        }
    }
}

// Chunk lengths are stored as u16; a block bounds them.
const _: () = assert!(BLOCK_SIZE <= u16::MAX as usize + 1);

/// Writes a new `run-<id>.wandb` file.
#[derive(Debug)]
pub struct LogWriter {
    path: PathBuf,
    file: File,
    framer: Framer,
    /// Framed bytes not yet written to the file.
    buf: Vec<u8>,
    /// Reused for numbering records.
    scratch: Vec<u8>,
    next_num: i64,
    policy: FlushPolicy,
    /// When the oldest record in `buf` was appended.
    oldest_unflushed: Option<Instant>,
}

impl LogWriter {
    /// Creates the file (failing if it exists, like wandb-core) and writes
    /// the file header through to the operating system.
    pub fn create(path: impl AsRef<Path>, policy: FlushPolicy) -> Result<Self, WriteError> {
        let path = path.as_ref().to_path_buf();
        let io_err = |source| WriteError::Io {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_err)?;
        file.write_all(&FILE_HEADER).map_err(io_err)?;
        Ok(Self {
            path,
            file,
            framer: Framer {
                offset: FILE_HEADER.len() as u64,
            },
            buf: Vec::with_capacity(policy.max_buffered.min(BLOCK_SIZE * 8)),
            scratch: Vec::new(),
            next_num: 1,
            policy,
            oldest_unflushed: None,
        })
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Length of the log once everything appended so far is flushed.
    pub fn len(&self) -> u64 {
        self.framer.offset
    }

    /// Length of the log in the file now (what a reader can see).
    pub fn flushed_len(&self) -> u64 {
        self.framer.offset - self.buf.len() as u64
    }

    /// Whether no record was appended yet.
    pub fn is_empty(&self) -> bool {
        self.next_num == 1 && self.framer.offset == FILE_HEADER.len() as u64
    }

    /// The `num` the next [`append`](Self::append) will assign.
    pub fn next_num(&self) -> i64 {
        self.next_num
    }

    /// Appends an encoded `Record`, setting its `num` to the next number
    /// (1, 2, 3, …) and keeping every other byte as given. Returns the number.
    pub fn append(&mut self, record: &[u8]) -> Result<i64, WriteError> {
        let num = self.next_num;
        let mut scratch = std::mem::take(&mut self.scratch);
        let numbered = wire::set_record_num(record, num, &mut scratch);
        let result = match numbered {
            Ok(()) => self.append_raw(&scratch).map(|()| num),
            Err(source) => Err(WriteError::Record {
                path: self.path.clone(),
                num,
                source,
            }),
        };
        self.scratch = scratch;
        if result.is_ok() {
            self.next_num += 1;
        }
        result
    }

    /// Appends a payload exactly as given, without numbering it (for copying
    /// records that already carry their `num`).
    pub fn append_raw(&mut self, payload: &[u8]) -> Result<(), WriteError> {
        self.framer.frame(payload, &mut self.buf);
        let now = Instant::now();
        let oldest = *self.oldest_unflushed.get_or_insert(now);
        if self.buf.len() >= self.policy.max_buffered
            || now.duration_since(oldest) >= self.policy.interval
        {
            self.flush()?;
        }
        Ok(())
    }

    /// Flushes if the oldest buffered record has waited for the policy's
    /// interval; for callers that tick while no records arrive. Returns whether
    /// it flushed.
    pub fn flush_if_due(&mut self) -> Result<bool, WriteError> {
        match self.oldest_unflushed {
            Some(t) if t.elapsed() >= self.policy.interval => self.flush().map(|()| true),
            _ => Ok(false),
        }
    }

    /// Writes buffered records to the file (no fsync).
    pub fn flush(&mut self) -> Result<(), WriteError> {
        if !self.buf.is_empty() {
            self.file
                .write_all(&self.buf)
                .map_err(|source| WriteError::Io {
                    path: self.path.clone(),
                    source,
                })?;
            self.buf.clear();
        }
        self.oldest_unflushed = None;
        Ok(())
    }

    /// Flushes and waits until the data is on stable storage.
    pub fn sync(&mut self) -> Result<(), WriteError> {
        self.flush()?;
        self.file.sync_data().map_err(|source| WriteError::Io {
            path: self.path.clone(),
            source,
        })
    }

    /// Flushes, fsyncs and closes the file; returns its length.
    pub fn close(mut self) -> Result<u64, WriteError> {
        self.flush()?;
        self.file.sync_all().map_err(|source| WriteError::Io {
            path: self.path.clone(),
            source,
        })?;
        Ok(self.framer.offset)
    }
}

impl Drop for LogWriter {
    /// A writer dropped without `close` still hands its buffer to the OS, so
    /// accepted records survive an early return or a panic elsewhere.
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            let _ = self.file.write_all(&self.buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::format::FILE_HEADER_LEN;
    use super::*;

    fn frame_at(offset: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        Framer { offset }.frame(payload, &mut out);
        out
    }

    #[test]
    fn small_record_is_one_full_chunk() {
        let out = frame_at(FILE_HEADER_LEN as u64, b"abc");
        assert_eq!(out.len(), 10);
        assert_eq!(&out[0..4], &chunk_crc(1, b"abc").to_le_bytes());
        assert_eq!(&out[4..7], &[3, 0, ChunkType::Full as u8]);
        assert_eq!(&out[7..], b"abc");
    }

    #[test]
    fn fewer_than_seven_bytes_left_are_zero_padding() {
        let offset = (BLOCK_SIZE - 6) as u64;
        let out = frame_at(offset, b"x");
        assert_eq!(&out[..6], &[0; 6]);
        assert_eq!(out[6 + 6], ChunkType::Full as u8);
        assert_eq!(out.len(), 6 + 8);
    }

    #[test]
    fn exactly_seven_bytes_left_hold_an_empty_first_chunk() {
        let offset = (BLOCK_SIZE - 7) as u64;
        let out = frame_at(offset, b"xy");
        assert_eq!(
            &out[..7],
            &[&chunk_crc(2, b"").to_le_bytes()[..], &[0, 0, 2]].concat()[..]
        );
        assert_eq!(
            &out[7..14],
            &[&chunk_crc(4, b"xy").to_le_bytes()[..], &[2, 0, 4]].concat()[..]
        );
        assert_eq!(&out[14..], b"xy");

        // An empty record there is a FULL chunk with no payload.
        let out = frame_at(offset, b"");
        assert_eq!(
            out,
            [&chunk_crc(1, b"").to_le_bytes()[..], &[0, 0, 1]].concat()
        );
    }

    #[test]
    fn large_record_spans_first_middle_last() {
        let payload = vec![0xabu8; 2 * BLOCK_SIZE];
        let out = frame_at(FILE_HEADER_LEN as u64, &payload);
        let first_len = BLOCK_SIZE - FILE_HEADER_LEN - CHUNK_HEADER_LEN;
        assert_eq!(out[6], ChunkType::First as u8);
        assert_eq!(u16::from_le_bytes([out[4], out[5]]) as usize, first_len);
        let middle = first_len + CHUNK_HEADER_LEN;
        assert_eq!(out[middle + 6], ChunkType::Middle as u8);
        let last = middle + BLOCK_SIZE;
        assert_eq!(out[last + 6], ChunkType::Last as u8);
        let last_len = payload.len() - first_len - (BLOCK_SIZE - CHUNK_HEADER_LEN);
        assert_eq!(
            u16::from_le_bytes([out[last + 4], out[last + 5]]) as usize,
            last_len
        );
        assert_eq!(out.len(), last + CHUNK_HEADER_LEN + last_len);
    }

    #[test]
    fn create_refuses_an_existing_file_and_numbers_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run-x.wandb");
        let mut w = LogWriter::create(&path, FlushPolicy::default()).unwrap();
        assert_eq!(
            std::fs::read(&path).unwrap(),
            FILE_HEADER,
            "header is written at once"
        );
        assert_eq!(w.append(&[0x12, 0x00]).unwrap(), 1);
        assert_eq!(w.append(&[0x12, 0x00]).unwrap(), 2);
        assert!(matches!(
            w.append(&[0x12, 0x05]),
            Err(WriteError::Record { num: 3, .. })
        ));
        assert_eq!(w.next_num(), 3, "a refused record does not use a number");
        let len = w.close().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), len);
        assert!(matches!(
            LogWriter::create(&path, FlushPolicy::default()),
            Err(WriteError::Io { .. })
        ));
    }

    #[test]
    fn flush_policy_bounds_the_buffer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run-y.wandb");
        let policy = FlushPolicy {
            interval: Duration::from_secs(3600),
            max_buffered: 1000,
        };
        let mut w = LogWriter::create(&path, policy).unwrap();
        w.append(&[0x12, 0x00]).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            7,
            "small record stays buffered"
        );
        assert!(!w.flush_if_due().unwrap());
        w.append(&[&[0x12, 0xe8, 0x07][..], &[0u8; 1000]].concat())
            .unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            w.len(),
            "size threshold flushes"
        );

        let policy = FlushPolicy {
            interval: Duration::ZERO,
            max_buffered: usize::MAX,
        };
        let path = dir.path().join("run-z.wandb");
        let mut w = LogWriter::create(&path, policy).unwrap();
        w.append(&[0x12, 0x00]).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            w.len(),
            "interval flushes"
        );
        drop(w);
    }

    #[test]
    fn drop_hands_buffered_records_to_the_os() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run-d.wandb");
        let policy = FlushPolicy {
            interval: Duration::from_secs(3600),
            max_buffered: usize::MAX,
        };
        let mut w = LogWriter::create(&path, policy).unwrap();
        w.append(&[0x12, 0x00]).unwrap();
        let len = w.len();
        drop(w);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), len);
    }
}
