//! Properties of our writer and reader on random input: round trips of
//! random record sizes, and what the reader does with a log truncated or
//! corrupted at a random offset.

use std::io::Cursor;
use std::time::Duration;

use proptest::prelude::*;
use prost::Message;
use wandb_proto::pb;
use wandb_store::txlog::format::{BLOCK_SIZE, CHUNK_HEADER_LEN, FILE_HEADER_LEN};
use wandb_store::txlog::{FlushPolicy, LogReader, LogWriter, ReadError, RecordPosition};

/// Writes `records` verbatim with our writer and returns the file's bytes.
fn write_log(records: &[Vec<u8>]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run-test.wandb");
    // A tiny buffer exercises flushing in the middle of blocks too.
    let policy = FlushPolicy {
        interval: Duration::from_secs(60),
        max_buffered: 4096,
    };
    let mut writer = LogWriter::create(&path, policy).unwrap();
    for r in records {
        writer.append_raw(r).unwrap();
    }
    writer.close().unwrap();
    std::fs::read(&path).unwrap()
}

/// Records read with their positions.
type Records = Vec<(RecordPosition, Vec<u8>)>;

/// Reads until the first error or the end, never recovering; on a clean end
/// returns the valid length.
fn read_prefix(bytes: &[u8]) -> (Records, Result<u64, ReadError>) {
    let mut reader = match LogReader::new(Cursor::new(bytes)) {
        Ok(r) => r,
        Err(e) => return (Vec::new(), Err(e)),
    };
    let mut out = Vec::new();
    loop {
        match reader.next_record() {
            Ok(Some(rec)) => out.push(rec),
            Ok(None) => return (out, Ok(reader.valid_len())),
            Err(e) => return (out, Err(e)),
        }
    }
}

/// Record sizes that matter: tiny, typical rows, and several blocks long.
fn record() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => prop::collection::vec(any::<u8>(), 0..64),
        4 => prop::collection::vec(any::<u8>(), 64..2000),
        1 => prop::collection::vec(any::<u8>(), BLOCK_SIZE - 64..3 * BLOCK_SIZE),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn writer_then_reader_round_trips(records in prop::collection::vec(record(), 0..60)) {
        let bytes = write_log(&records);
        let (read, end) = read_prefix(&bytes);
        prop_assert_eq!(end.unwrap(), bytes.len() as u64);
        let payloads: Vec<_> = read.into_iter().map(|(_, r)| r).collect();
        prop_assert_eq!(payloads, records);
    }

    #[test]
    fn truncated_log_yields_a_prefix_and_says_where(
        records in prop::collection::vec(record(), 1..30),
        cut in any::<prop::sample::Index>(),
    ) {
        let bytes = write_log(&records);
        let cut = cut.index(bytes.len() + 1);
        let (read, end) = read_prefix(&bytes[..cut]);
        prop_assert!(read.len() <= records.len());
        for (i, (_, r)) in read.iter().enumerate() {
            prop_assert_eq!(r, &records[i]);
        }
        let valid = read.last().map_or(FILE_HEADER_LEN as u64, |(p, _)| p.end);
        match end {
            Ok(len) => {
                prop_assert_eq!(len, valid);
                // Only padding may follow the last record.
                prop_assert!(cut as u64 - valid < CHUNK_HEADER_LEN as u64);
            }
            Err(ReadError::Truncated { offset, .. }) => {
                prop_assert!(valid <= offset && offset <= cut as u64);
                prop_assert!(read.len() < records.len());
            }
            Err(ReadError::Header(_)) => prop_assert!(cut < FILE_HEADER_LEN),
            Err(other) => prop_assert!(false, "unexpected error {other}"),
        }
    }

    #[test]
    fn corruption_is_detected_and_recovery_keeps_what_it_can(
        records in prop::collection::vec(record(), 1..30),
        at in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let clean = write_log(&records);
        let (positions, _) = read_prefix(&clean);
        let positions: Vec<RecordPosition> = positions.into_iter().map(|(p, _)| p).collect();
        let at = FILE_HEADER_LEN + at.index(clean.len() - FILE_HEADER_LEN);
        let mut bytes = clean.clone();
        bytes[at] ^= flip;

        // Without recovery: a prefix of the records, and an error unless the
        // damage fell in zero padding.
        let (read, end) = read_prefix(&bytes);
        for (i, (_, r)) in read.iter().enumerate() {
            prop_assert_eq!(r, &records[i]);
        }
        if read.len() < records.len() {
            prop_assert!(end.is_err(), "records lost without an error");
        }

        // With recovery: records before the damage and records starting
        // after the next block boundary all come back, in order, unchanged.
        let mut reader = LogReader::new(Cursor::new(&bytes)).unwrap();
        let mut recovered = Vec::new();
        let mut errors = 0;
        loop {
            match reader.next_record() {
                Ok(Some((_, r))) => recovered.push(r),
                Ok(None) => break,
                Err(ReadError::Corrupt { .. }) => {
                    errors += 1;
                    prop_assert!(errors < 4, "recovery does not make progress");
                    reader.recover();
                }
                Err(ReadError::Truncated { .. }) => break,
                Err(other) => prop_assert!(false, "unexpected error {other}"),
            }
        }
        let next_block = (at / BLOCK_SIZE + 1) * BLOCK_SIZE;
        let must_keep: Vec<&Vec<u8>> = records
            .iter()
            .zip(&positions)
            .filter(|(_, p)| p.end <= at as u64 || p.offset >= next_block as u64)
            .map(|(r, _)| r)
            .collect();
        let mut it = recovered.iter();
        for want in must_keep {
            prop_assert!(it.any(|got| got == want), "a record outside the damaged block was lost");
        }
        let mut originals = records.iter();
        for got in &recovered {
            prop_assert!(originals.any(|r| r == got), "recovery produced a record that was never written");
        }
    }

    #[test]
    fn arbitrary_bytes_after_a_header_never_panic(
        body in prop::collection::vec(any::<u8>(), 0..3 * BLOCK_SIZE),
        recover in any::<bool>(),
    ) {
        let mut bytes = wandb_store::txlog::format::FILE_HEADER.to_vec();
        bytes.extend(body);
        let mut reader = LogReader::new(Cursor::new(&bytes)).unwrap();
        // Each step consumes input or ends.
        let mut steps = 0;
        loop {
            steps += 1;
            prop_assert!(steps <= bytes.len(), "the reader does not make progress");
            match reader.next_record() {
                Ok(Some((pos, _))) => prop_assert!(pos.end <= bytes.len() as u64),
                Ok(None) | Err(ReadError::Truncated { .. }) => break,
                Err(ReadError::Corrupt { offset, .. }) => {
                    prop_assert!(offset < bytes.len() as u64);
                    if !recover {
                        break;
                    }
                    reader.recover();
                }
                Err(other) => prop_assert!(false, "unexpected error {other}"),
            }
        }
    }

    #[test]
    fn numbered_records_decode_with_their_numbers(values in prop::collection::vec(".{0,300}", 1..50)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run-n.wandb");
        let mut writer = LogWriter::create(&path, FlushPolicy::default()).unwrap();
        for v in &values {
            let rec = pb::Record {
                record_type: Some(pb::record::RecordType::Summary(pb::SummaryRecord {
                    update: vec![pb::SummaryItem { key: "k".into(), value_json: serde_json_string(v), ..Default::default() }],
                    ..Default::default()
                })),
                ..Default::default()
            };
            writer.append(&rec.encode_to_vec()).unwrap();
        }
        writer.close().unwrap();
        let reader = LogReader::open(&path).unwrap();
        for (i, rec) in reader.enumerate() {
            let (_, bytes) = rec.unwrap();
            let rec = pb::Record::decode(&bytes[..]).unwrap();
            prop_assert_eq!(rec.num, i as i64 + 1);
            let Some(pb::record::RecordType::Summary(s)) = rec.record_type else { panic!("type") };
            prop_assert_eq!(&s.update[0].value_json, &serde_json_string(&values[i]));
        }
    }
}

fn serde_json_string(s: &str) -> String {
    format!("{s:?}")
}

/// Every position a record can start at relative to a block's end, for the
/// edge cases the format defines (fewer than 7 bytes left: padding; exactly
/// 7: an empty FIRST chunk).
#[test]
fn every_block_tail_size_round_trips() {
    for left in 0..=2 * CHUNK_HEADER_LEN {
        for second in [0usize, 1, 100, BLOCK_SIZE] {
            // First record ends `left` bytes before the end of block 0.
            let first_len = BLOCK_SIZE - FILE_HEADER_LEN - CHUNK_HEADER_LEN - left;
            let records = vec![vec![1u8; first_len], vec![2u8; second], vec![3u8; 5]];
            let bytes = write_log(&records);
            let (read, end) = read_prefix(&bytes);
            assert_eq!(
                end.unwrap(),
                bytes.len() as u64,
                "left {left} second {second}"
            );
            let payloads: Vec<_> = read.into_iter().map(|(_, r)| r).collect();
            assert_eq!(payloads, records, "left {left} second {second}");
        }
    }
}
