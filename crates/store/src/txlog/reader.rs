//! Reading a transaction log back.
//!
//! The reader checks the file header, every chunk's CRC and the chunk
//! sequence, and reassembles records. It never panics on any input: a
//! problem is a [`ReadError`] with the absolute offset where it was found.
//!
//! End of data is not final: once more bytes are appended to the file, the
//! next call continues where the last one stopped. So the same reader serves
//! a finished log (where [`ReadError::Truncated`] means a torn tail) and a log
//! still being written (where it means "not complete yet"). After
//! [`ReadError::Corrupt`], [`LogReader::recover`] skips to the next block and
//! resumes at the next record that starts there, as wandb-core does.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use super::format::{
    BLOCK_SIZE, CHUNK_HEADER_LEN, ChunkType, FILE_HEADER_LEN, IDENT, MAGIC, VERSION, chunk_crc,
};

/// A problem with the 7-byte file header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("file is {len} bytes, shorter than the 7-byte header")]
    TooShort { len: usize },
    #[error("not a wandb transaction log: starts with {found:02x?}, expected \":W&B\"")]
    BadIdent { found: [u8; 4] },
    #[error("bad magic 0x{found:04x} in the file header (expected 0xbee1)")]
    BadMagic { found: u16 },
    #[error("unsupported transaction log version {found} (this reader knows version 0)")]
    UnsupportedVersion { found: u8 },
}

/// What was wrong with a chunk.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CorruptKind {
    #[error("checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    Checksum { stored: u32, computed: u32 },
    #[error("invalid chunk type {0}")]
    BadChunkType(u8),
    #[error("chunk of {len} bytes runs past the end of its block")]
    CrossesBlock { len: usize },
    #[error("{found:?} chunk where {expected}")]
    UnexpectedChunk {
        found: ChunkType,
        expected: &'static str,
    },
    #[error("zero-filled chunk header inside a multi-chunk record")]
    ZeroedInsideRecord,
}

/// Errors of [`LogReader`].
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("I/O error reading the transaction log")]
    Io(#[from] io::Error),
    #[error("bad transaction log header")]
    Header(#[from] HeaderError),
    /// A chunk failed validation; the records before it are good.
    #[error("corrupt chunk at byte {offset}: {kind}")]
    Corrupt { offset: u64, kind: CorruptKind },
    /// The data ends inside a chunk or inside a multi-chunk record that
    /// starts at `offset`: a torn tail, or a log whose writer has not
    /// flushed the rest yet.
    #[error(
        "log ends inside an incomplete record starting at byte {offset} ({available} bytes of it present)"
    )]
    Truncated { offset: u64, available: u64 },
}

/// Where a record sits in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordPosition {
    /// Offset of the record's first chunk header.
    pub offset: u64,
    /// Offset just past its last chunk.
    pub end: u64,
}

/// Reads records from a transaction log.
pub struct LogReader<R> {
    src: R,
    /// The current block; `block[..block_len]` holds the bytes read so far.
    block: Box<[u8]>,
    block_len: usize,
    /// Absolute offset of `block[0]`.
    block_start: u64,
    /// Position of the next chunk header within `block`.
    pos: usize,
    /// Payload of a multi-chunk record being assembled, and where it began.
    partial: Vec<u8>,
    partial_start: Option<u64>,
    /// After `recover`: skip continuation chunks of a record whose start was
    /// lost.
    resyncing: bool,
    /// End of the last complete record returned.
    valid_len: u64,
}

impl LogReader<File> {
    /// Opens a log file and validates its header. (Blocks are read whole, so
    /// no `BufReader`: it would only add a copy.)
    pub fn open(path: impl AsRef<Path>) -> Result<Self, ReadError> {
        Self::new(File::open(path)?)
    }
}

impl<R: Read> LogReader<R> {
    /// Starts reading `src` from its beginning; validates the file header.
    pub fn new(src: R) -> Result<Self, ReadError> {
        let mut reader = Self {
            src,
            block: vec![0; BLOCK_SIZE].into_boxed_slice(),
            block_len: 0,
            block_start: 0,
            pos: 0,
            partial: Vec::new(),
            partial_start: None,
            resyncing: false,
            valid_len: FILE_HEADER_LEN as u64,
        };
        reader.fill()?;
        let head = &reader.block[..reader.block_len];
        if head.len() < FILE_HEADER_LEN {
            return Err(HeaderError::TooShort { len: head.len() }.into());
        }
        if head[..4] != IDENT {
            let found = [head[0], head[1], head[2], head[3]];
            return Err(HeaderError::BadIdent { found }.into());
        }
        let magic = u16::from_le_bytes([head[4], head[5]]);
        if magic != MAGIC {
            return Err(HeaderError::BadMagic { found: magic }.into());
        }
        if head[6] != VERSION {
            return Err(HeaderError::UnsupportedVersion { found: head[6] }.into());
        }
        reader.pos = FILE_HEADER_LEN;
        Ok(reader)
    }

    /// Offset just past the last complete record read: the length of the
    /// valid prefix of the log.
    pub fn valid_len(&self) -> u64 {
        self.valid_len
    }

    /// Reads more of the current block from the source, if there is more.
    fn fill(&mut self) -> io::Result<()> {
        while self.block_len < BLOCK_SIZE {
            match self.src.read(&mut self.block[self.block_len..]) {
                Ok(0) => break,
                Ok(n) => self.block_len += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn offset_of(&self, pos: usize) -> u64 {
        self.block_start + pos as u64
    }

    /// The result when the available data runs out at `pos`.
    fn end_of_data(&self) -> Result<Option<RecordPosition>, ReadError> {
        let here = self.offset_of(self.pos.min(self.block_len));
        match self.partial_start {
            Some(start) => Err(ReadError::Truncated {
                offset: start,
                available: self.block_start + self.block_len as u64 - start,
            }),
            None if self.pos >= self.block_len => Ok(None),
            None => Err(ReadError::Truncated {
                offset: here,
                available: (self.block_len - self.pos) as u64,
            }),
        }
    }

    fn corrupt(&self, kind: CorruptKind) -> ReadError {
        ReadError::Corrupt {
            offset: self.offset_of(self.pos),
            kind,
        }
    }

    /// Reads the next record's payload into `out` (replacing its contents).
    ///
    /// `Ok(None)` means the data ends cleanly after the last record.
    pub fn next_into(&mut self, out: &mut Vec<u8>) -> Result<Option<RecordPosition>, ReadError> {
        loop {
            if self.pos >= BLOCK_SIZE
                || (self.block_len == BLOCK_SIZE && BLOCK_SIZE - self.pos < CHUNK_HEADER_LEN)
            {
                // Block done (or only zero padding left): move to the next one,
                // once the current block is complete on disk.
                self.fill()?;
                if self.block_len < BLOCK_SIZE {
                    self.pos = BLOCK_SIZE;
                    return self.end_of_data();
                }
                self.block_start += BLOCK_SIZE as u64;
                self.block_len = 0;
                self.pos = 0;
                self.fill()?;
            }

            if self.block_len - self.pos < CHUNK_HEADER_LEN {
                self.fill()?;
                if self.block_len - self.pos < CHUNK_HEADER_LEN {
                    return self.end_of_data();
                }
            }
            let header = &self.block[self.pos..self.pos + CHUNK_HEADER_LEN];
            let stored = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
            let len = u16::from_le_bytes([header[4], header[5]]) as usize;
            let type_byte = header[6];

            if stored == 0 && len == 0 && type_byte == 0 {
                // A zeroed area (pre-allocated or never written): wandb-core
                // skips the rest of the block.
                if self.partial_start.is_some() {
                    return Err(self.corrupt(CorruptKind::ZeroedInsideRecord));
                }
                if self.block_len < BLOCK_SIZE {
                    return self.end_of_data();
                }
                self.pos = BLOCK_SIZE;
                continue;
            }
            let Some(chunk_type) = ChunkType::from_byte(type_byte) else {
                return Err(self.corrupt(CorruptKind::BadChunkType(type_byte)));
            };
            let body = self.pos + CHUNK_HEADER_LEN;
            let end = body + len;
            if end > BLOCK_SIZE {
                return Err(self.corrupt(CorruptKind::CrossesBlock { len }));
            }
            if end > self.block_len {
                self.fill()?;
                if end > self.block_len {
                    return self.end_of_data();
                }
            }
            let payload = &self.block[body..end];
            let computed = chunk_crc(type_byte, payload);
            if computed != stored {
                return Err(self.corrupt(CorruptKind::Checksum { stored, computed }));
            }

            let chunk_offset = self.offset_of(self.pos);
            if self.resyncing {
                if matches!(chunk_type, ChunkType::Middle | ChunkType::Last) {
                    self.pos = end;
                    continue;
                }
                self.resyncing = false;
            }
            match (chunk_type, self.partial_start) {
                (ChunkType::Full, None) => {
                    out.clear();
                    out.extend_from_slice(payload);
                    self.pos = end;
                    return Ok(Some(self.complete(chunk_offset)));
                }
                (ChunkType::First, None) => {
                    self.partial.clear();
                    self.partial.extend_from_slice(payload);
                    self.partial_start = Some(chunk_offset);
                }
                (ChunkType::Middle, Some(_)) => self.partial.extend_from_slice(payload),
                (ChunkType::Last, Some(start)) => {
                    self.partial.extend_from_slice(payload);
                    std::mem::swap(out, &mut self.partial);
                    self.partial_start = None;
                    self.pos = end;
                    return Ok(Some(self.complete(start)));
                }
                (found, None) => {
                    return Err(self.corrupt(CorruptKind::UnexpectedChunk {
                        found,
                        expected: "a record should start (FULL or FIRST)",
                    }));
                }
                (found, Some(_)) => {
                    return Err(self.corrupt(CorruptKind::UnexpectedChunk {
                        found,
                        expected: "a record is continuing (MIDDLE or LAST)",
                    }));
                }
            }
            self.pos = end;
        }
    }

    fn complete(&mut self, offset: u64) -> RecordPosition {
        let end = self.offset_of(self.pos);
        self.valid_len = end;
        RecordPosition { offset, end }
    }

    /// Reads the next record into a new buffer.
    pub fn next_record(&mut self) -> Result<Option<(RecordPosition, Vec<u8>)>, ReadError> {
        let mut out = Vec::new();
        Ok(self.next_into(&mut out)?.map(|pos| (pos, out)))
    }

    /// After [`ReadError::Corrupt`]: drops the record being assembled and
    /// continues at the next block, skipping continuation chunks until a
    /// record starts.
    pub fn recover(&mut self) {
        self.partial.clear();
        self.partial_start = None;
        self.resyncing = true;
        self.pos = BLOCK_SIZE;
    }
}

impl<R: Read> Iterator for LogReader<R> {
    type Item = Result<(RecordPosition, Vec<u8>), ReadError>;

    /// Yields records until the clean end or the first error (which is
    /// yielded; a caller may [`recover`](LogReader::recover) and go on).
    fn next(&mut self) -> Option<Self::Item> {
        self.next_record().transpose()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::super::format::FILE_HEADER;
    use super::*;

    fn chunk(chunk_type: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = chunk_crc(chunk_type, payload).to_le_bytes().to_vec();
        out.extend_from_slice(&(payload.len() as u16).to_le_bytes());
        out.push(chunk_type);
        out.extend_from_slice(payload);
        out
    }

    fn read_all(bytes: &[u8]) -> (Vec<Vec<u8>>, Result<(), ReadError>) {
        let mut reader = match LogReader::new(Cursor::new(bytes)) {
            Ok(r) => r,
            Err(e) => return (Vec::new(), Err(e)),
        };
        let mut records = Vec::new();
        loop {
            match reader.next_record() {
                Ok(Some((_, r))) => records.push(r),
                Ok(None) => return (records, Ok(())),
                Err(e) => return (records, Err(e)),
            }
        }
    }

    #[test]
    fn header_errors_are_typed() {
        assert!(matches!(
            read_all(b":W&").1,
            Err(ReadError::Header(HeaderError::TooShort { len: 3 }))
        ));
        assert!(matches!(
            read_all(b"GIF89a\0").1,
            Err(ReadError::Header(HeaderError::BadIdent { .. }))
        ));
        assert!(matches!(
            read_all(&[b':', b'W', b'&', b'B', 0xE1, 0xBF, 0]).1,
            Err(ReadError::Header(HeaderError::BadMagic { found: 0xBFE1 }))
        ));
        assert!(matches!(
            read_all(&[b':', b'W', b'&', b'B', 0xE1, 0xBE, 1]).1,
            Err(ReadError::Header(HeaderError::UnsupportedVersion {
                found: 1
            }))
        ));
        let (records, end) = read_all(&FILE_HEADER);
        assert!(records.is_empty() && end.is_ok());
    }

    #[test]
    fn bad_checksum_reports_the_chunk_offset() {
        let mut bytes = FILE_HEADER.to_vec();
        bytes.extend(chunk(1, b"one"));
        let second = bytes.len() as u64;
        let mut bad = chunk(1, b"two");
        bad[8] ^= 1;
        bytes.extend(bad);
        let (records, end) = read_all(&bytes);
        assert_eq!(records, vec![b"one".to_vec()]);
        match end {
            Err(ReadError::Corrupt {
                offset,
                kind: CorruptKind::Checksum { .. },
            }) => assert_eq!(offset, second),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn continuation_without_start_is_corrupt() {
        let mut bytes = FILE_HEADER.to_vec();
        bytes.extend(chunk(4, b"tail"));
        assert!(matches!(
            read_all(&bytes).1,
            Err(ReadError::Corrupt {
                offset: 7,
                kind: CorruptKind::UnexpectedChunk { .. }
            })
        ));
    }

    #[test]
    fn torn_multi_chunk_record_is_truncated_at_its_start() {
        let mut bytes = FILE_HEADER.to_vec();
        bytes.extend(chunk(1, b"ok"));
        bytes.extend(chunk(2, b"begin"));
        let (records, end) = read_all(&bytes);
        assert_eq!(records, vec![b"ok".to_vec()]);
        match end {
            Err(ReadError::Truncated { offset, available }) => {
                assert_eq!(offset, 16);
                assert_eq!(available, 12);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn recover_skips_to_the_next_record_start() {
        // Block 0: a good record, then a corrupt one filling the block.
        let mut bytes = FILE_HEADER.to_vec();
        bytes.extend(chunk(1, b"good"));
        let filler = BLOCK_SIZE - bytes.len() - CHUNK_HEADER_LEN;
        let mut bad = chunk(2, &vec![1u8; filler]);
        bad[10] ^= 0xff;
        bytes.extend(bad);
        // Block 1: the LAST of the broken record, then a new record.
        bytes.extend(chunk(4, b"rest"));
        bytes.extend(chunk(1, b"after"));

        let mut reader = LogReader::new(Cursor::new(&bytes)).unwrap();
        assert_eq!(reader.next_record().unwrap().unwrap().1, b"good");
        assert!(matches!(
            reader.next_record(),
            Err(ReadError::Corrupt { .. })
        ));
        reader.recover();
        let (pos, rec) = reader.next_record().unwrap().unwrap();
        assert_eq!(rec, b"after");
        assert_eq!(pos.offset, (BLOCK_SIZE + CHUNK_HEADER_LEN + 4) as u64);
        assert!(reader.next_record().unwrap().is_none());
    }

    #[test]
    fn continues_when_the_file_grows() {
        let mut bytes = FILE_HEADER.to_vec();
        bytes.extend(chunk(1, b"first"));
        let full = {
            let mut b = bytes.clone();
            b.extend(chunk(1, b"second"));
            b
        };
        // A source that reveals the file in two steps, like a log being written.
        let cell = std::cell::Cell::new(bytes.len() + 3);
        struct Shared<'a> {
            data: &'a [u8],
            visible: &'a std::cell::Cell<usize>,
            pos: usize,
        }
        impl Read for Shared<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = buf.len().min(self.visible.get() - self.pos);
                buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
                self.pos += n;
                Ok(n)
            }
        }
        let mut reader = LogReader::new(Shared {
            data: &full,
            visible: &cell,
            pos: 0,
        })
        .unwrap();
        assert_eq!(reader.next_record().unwrap().unwrap().1, b"first");
        assert!(matches!(
            reader.next_record(),
            Err(ReadError::Truncated { .. })
        ));
        cell.set(full.len());
        assert_eq!(reader.next_record().unwrap().unwrap().1, b"second");
        assert!(reader.next_record().unwrap().is_none());
        assert_eq!(reader.valid_len(), full.len() as u64);
    }
}
