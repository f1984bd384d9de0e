//! Framing of the service socket: a `W` byte, a little-endian `u32` payload
//! length, then the payload (an encoded `ServerRequest` from the client, a
//! `ServerResponse` from the service).
//!
//! The length comes from the peer, so it is bounded by
//! [`FrameCodec::max_frame_len`] and memory is reserved only as bytes actually
//! arrive: a hostile length cannot make us allocate gigabytes up front.

use std::io;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// First byte of every frame.
pub const MAGIC: u8 = b'W';

/// Magic byte plus the `u32` length.
pub const HEADER_LEN: usize = 5;

/// Default bound on a frame's payload.
///
/// Large enough for the largest legitimate messages (a run record carrying a
/// big config, a long artifact manifest), small enough that a bogus length is
/// refused before it costs memory.
pub const DEFAULT_MAX_FRAME_LEN: usize = 256 << 20;

/// How much buffer a partially received frame may reserve ahead of the bytes
/// that arrived; growth beyond this follows the data.
const RESERVE_AHEAD: usize = 1 << 20;

/// Errors of [`FrameCodec`].
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The frame did not start with `W`: the peer does not speak this protocol
    /// or the stream lost its alignment.
    #[error("bad frame magic byte 0x{found:02x} (expected 0x57 'W')")]
    BadMagic { found: u8 },
    /// The announced (or, when encoding, the actual) payload length exceeds the
    /// configured maximum.
    #[error("frame payload of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: u64, max: usize },
    /// The connection ended in the middle of a frame.
    #[error("connection closed inside a frame ({buffered} bytes of it received)")]
    Truncated { buffered: usize },
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// A `tokio_util` codec for `W`-framed messages. Decodes to the payload bytes.
#[derive(Debug, Clone)]
pub struct FrameCodec {
    max_frame_len: usize,
}

impl Default for FrameCodec {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME_LEN)
    }
}

impl FrameCodec {
    /// A codec that refuses payloads longer than `max_frame_len` bytes.
    pub fn new(max_frame_len: usize) -> Self {
        Self { max_frame_len }
    }

    /// The largest payload this codec accepts or produces.
    pub fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }

    fn check_len(&self, len: u64) -> Result<usize, FrameError> {
        if len > self.max_frame_len as u64 || len > u64::from(u32::MAX) {
            return Err(FrameError::TooLarge {
                len,
                max: self.max_frame_len,
            });
        }
        Ok(len as usize)
    }
}

impl Decoder for FrameCodec {
    type Item = Bytes;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        let Some(&first) = src.first() else {
            return Ok(None);
        };
        // Check the magic as soon as it arrives, not once a header is complete.
        if first != MAGIC {
            return Err(FrameError::BadMagic { found: first });
        }
        if src.len() < HEADER_LEN {
            return Ok(None);
        }
        let len = u32::from_le_bytes([src[1], src[2], src[3], src[4]]);
        let len = self.check_len(u64::from(len))?;
        let total = HEADER_LEN + len;
        if src.len() < total {
            src.reserve((total - src.len()).min(RESERVE_AHEAD));
            return Ok(None);
        }
        src.advance(HEADER_LEN);
        Ok(Some(src.split_to(len).freeze()))
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        match self.decode(buf)? {
            Some(frame) => Ok(Some(frame)),
            None if buf.is_empty() => Ok(None),
            None => Err(FrameError::Truncated {
                buffered: buf.len(),
            }),
        }
    }
}

impl Encoder<&[u8]> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, payload: &[u8], dst: &mut BytesMut) -> Result<(), FrameError> {
        let len = self.check_len(payload.len() as u64)?;
        dst.reserve(HEADER_LEN + len);
        dst.put_u8(MAGIC);
        dst.put_u32_le(len as u32);
        dst.put_slice(payload);
        Ok(())
    }
}

impl Encoder<Bytes> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, payload: Bytes, dst: &mut BytesMut) -> Result<(), FrameError> {
        self.encode(payload.as_ref(), dst)
    }
}

/// Appends one frame holding `payload` to `out`, for callers that build
/// frames without a codec (load generators, the blocking SDK client).
pub fn encode_frame(payload: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(payload.len()).expect("a frame payload fits in u32");
    out.reserve(HEADER_LEN + payload.len());
    out.push(MAGIC);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(payload, &mut out);
        out
    }

    #[test]
    fn decodes_frames_split_at_every_byte() {
        let mut wire = frame(b"hello");
        wire.extend(frame(b""));
        wire.extend(frame(&[7u8; 300]));
        for split in 0..=wire.len() {
            let mut codec = FrameCodec::default();
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            for part in [&wire[..split], &wire[split..]] {
                buf.extend_from_slice(part);
                while let Some(f) = codec.decode(&mut buf).unwrap() {
                    got.push(f);
                }
            }
            assert_eq!(got.len(), 3, "split at {split}");
            assert_eq!(&got[0][..], b"hello");
            assert!(got[1].is_empty());
            assert_eq!(&got[2][..], &[7u8; 300][..]);
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn bad_magic_is_reported_on_the_first_byte() {
        let mut codec = FrameCodec::default();
        let mut buf = BytesMut::from(&b"G"[..]);
        match codec.decode(&mut buf) {
            Err(FrameError::BadMagic { found: b'G' }) => {}
            other => panic!("expected BadMagic, got {other:?}"),
        }
    }

    #[test]
    fn oversized_length_is_refused_without_allocating_it() {
        let mut codec = FrameCodec::new(1024);
        let mut buf = BytesMut::new();
        buf.put_u8(MAGIC);
        buf.put_u32_le(1025);
        match codec.decode(&mut buf) {
            Err(FrameError::TooLarge {
                len: 1025,
                max: 1024,
            }) => {}
            other => panic!("expected TooLarge, got {other:?}"),
        }

        // A legal but huge announced length reserves only a bounded amount.
        let mut codec = FrameCodec::new(u32::MAX as usize);
        let mut buf = BytesMut::new();
        buf.put_u8(MAGIC);
        buf.put_u32_le(u32::MAX);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        assert!(
            buf.capacity() <= RESERVE_AHEAD + 64,
            "reserved {}",
            buf.capacity()
        );
    }

    #[test]
    fn eof_inside_a_frame_is_an_error() {
        let mut codec = FrameCodec::default();
        let wire = frame(b"abcdef");
        let mut buf = BytesMut::from(&wire[..wire.len() - 1]);
        assert!(matches!(
            codec.decode_eof(&mut buf),
            Err(FrameError::Truncated { buffered: 10 })
        ));
        let mut empty = BytesMut::new();
        assert!(codec.decode_eof(&mut empty).unwrap().is_none());
    }

    #[test]
    fn encoder_matches_encode_frame_and_enforces_the_limit() {
        let mut codec = FrameCodec::new(8);
        let mut dst = BytesMut::new();
        codec.encode(&b"12345678"[..], &mut dst).unwrap();
        assert_eq!(&dst[..], &frame(b"12345678")[..]);
        assert!(matches!(
            codec.encode(&b"123456789"[..], &mut dst),
            Err(FrameError::TooLarge { len: 9, max: 8 })
        ));
    }
}
