//! TFRecord framing: how TensorFlow stores events in a tfevents file.
//!
//! Each record is `u64 length | u32 masked CRC-32C of the length | data |
//! u32 masked CRC-32C of the data`, little-endian. A file is read while
//! its writer still appends to it, so an incomplete record at the end is
//! not an error: the reader consumes nothing and tries again when more
//! bytes have arrived. A bad checksum may be transient too (files written
//! through mmap show stale pages for a moment); the caller decides how
//! long to keep retrying.

/// Why the bytes at the start of the buffer are not a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("unexpected {part} checksum: expected {expected:#010x}, calculated {calculated:#010x}")]
    Checksum {
        part: &'static str,
        expected: u32,
        calculated: u32,
    },
}

const HEADER: usize = 8 + 4;
const FOOTER: usize = 4;

/// TensorFlow's masking of CRCs stored next to the data they cover.
pub fn masked_crc32c(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// The first complete record in `buf`: its data and the bytes it took;
/// `Ok(None)` when `buf` holds only part of one.
pub fn parse(buf: &[u8]) -> Result<Option<(&[u8], usize)>, RecordError> {
    if buf.len() < HEADER {
        return Ok(None);
    }
    let len_bytes = &buf[..8];
    let expected = u32::from_le_bytes(buf[8..12].try_into().expect("4 bytes"));
    let calculated = masked_crc32c(len_bytes);
    if expected != calculated {
        return Err(RecordError::Checksum {
            part: "header",
            expected,
            calculated,
        });
    }
    let len = u64::from_le_bytes(len_bytes.try_into().expect("8 bytes"));
    // A length past the buffer (or past memory) is an incomplete record.
    let Some(end) = usize::try_from(len)
        .ok()
        .and_then(|l| l.checked_add(HEADER + FOOTER))
        .filter(|end| *end <= buf.len())
    else {
        return Ok(None);
    };
    let data = &buf[HEADER..end - FOOTER];
    let expected = u32::from_le_bytes(buf[end - FOOTER..end].try_into().expect("4 bytes"));
    let calculated = masked_crc32c(data);
    if expected != calculated {
        return Err(RecordError::Checksum {
            part: "payload",
            expected,
            calculated,
        });
    }
    Ok(Some((data, end)))
}

/// `data` framed as one record (for tests and tools that write tfevents).
pub fn frame(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + HEADER + FOOTER);
    let len = (data.len() as u64).to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc32c(data).to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_match_tensorflows() {
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(masked_crc32c(b"123456789"), 0xc78a_b0e5);
        assert_eq!(masked_crc32c(&[0u8; 8]), 0x0798_0329);
    }

    #[test]
    fn records_round_trip_and_partial_ones_wait() {
        let mut file = frame(b"first");
        file.extend(frame(b""));
        file.extend(frame(b"third record"));
        let mut at = 0;
        let mut seen = Vec::new();
        while let Some((data, used)) = parse(&file[at..]).unwrap() {
            seen.push(data.to_vec());
            at += used;
        }
        assert_eq!(
            seen,
            [b"first".to_vec(), Vec::new(), b"third record".to_vec()]
        );
        assert_eq!(at, file.len());
        // Every proper prefix of a record is "not yet", never an error.
        let one = frame(b"growing");
        for cut in 0..one.len() {
            assert_eq!(parse(&one[..cut]).unwrap(), None, "cut at {cut}");
        }
    }

    #[test]
    fn corruption_is_a_checksum_error() {
        let mut bad_header = frame(b"data");
        bad_header[0] ^= 1;
        assert!(matches!(
            parse(&bad_header),
            Err(RecordError::Checksum { part: "header", .. })
        ));
        let mut bad_data = frame(b"data");
        bad_data[13] ^= 1;
        assert!(matches!(
            parse(&bad_data),
            Err(RecordError::Checksum {
                part: "payload",
                ..
            })
        ));
    }
}
