//! The `.wandb` transaction log.
//!
//! Layout (LevelDB-style log, as wandb-core writes it): a 7-byte file header,
//! then the file is cut into 32 KiB blocks at absolute offsets; records are
//! split into chunks that never cross a block boundary, each with a 7-byte
//! header carrying an IEEE CRC-32 of its type byte and payload.
//!
//! * [`format`](mod@format): the constants and the chunk header.
//! * [`writer`]: appends records (assigning `num`), flushes on a policy,
//!   fsyncs on close.
//! * [`reader`]: validates and reassembles records, and stops with a precise
//!   offset on a torn or corrupt tail (or skips past corruption when asked).

pub mod format;
pub mod reader;
pub mod writer;

pub use reader::{CorruptKind, HeaderError, LogReader, ReadError, RecordPosition};
pub use writer::{FlushPolicy, LogWriter, WriteError};
