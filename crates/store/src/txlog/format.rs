//! Byte layout shared by the writer and the reader.

/// File identifier at offset 0.
pub const IDENT: [u8; 4] = *b":W&B";
/// Magic following the identifier (stored little-endian: `E1 BE`).
pub const MAGIC: u16 = 0xBEE1;
/// The only format version wandb-core writes and reads.
pub const VERSION: u8 = 0;
/// Length of the file header: identifier, magic, version.
pub const FILE_HEADER_LEN: usize = 7;
/// The encoded file header.
pub const FILE_HEADER: [u8; FILE_HEADER_LEN] = [b':', b'W', b'&', b'B', 0xE1, 0xBE, VERSION];

/// Blocks start at absolute multiples of this size (the file header is part of
/// block 0).
pub const BLOCK_SIZE: usize = 32 * 1024;
/// CRC (u32 LE) + length (u16 LE) + chunk type.
pub const CHUNK_HEADER_LEN: usize = 7;

/// How a chunk relates to the record it carries part of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ChunkType {
    /// The whole record.
    Full = 1,
    /// The first part of a record continued in later blocks.
    First = 2,
    /// A part that is neither first nor last.
    Middle = 3,
    /// The last part.
    Last = 4,
}

impl ChunkType {
    pub fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(Self::Full),
            2 => Some(Self::First),
            3 => Some(Self::Middle),
            4 => Some(Self::Last),
            _ => None,
        }
    }
}

/// Plain (unmasked) IEEE CRC-32 over the type byte followed by the payload,
/// as wandb-core computes it.
pub fn chunk_crc(chunk_type: u8, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&[chunk_type]);
    hasher.update(payload);
    hasher.finalize()
}

/// Bytes left in the block that contains absolute offset `offset`.
pub fn block_remaining(offset: u64) -> usize {
    BLOCK_SIZE - (offset % BLOCK_SIZE as u64) as usize
}
