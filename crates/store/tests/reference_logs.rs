//! Our reader and writer against transaction logs written by W&B's own
//! wandb-core 0.31.0, generated here by running the real Python SDK offline
//! (see testkit's `python/scenarios.py`).

use std::collections::BTreeMap;
use std::time::Duration;

use prost::Message;
use testkit::{ReferenceRun, reference_runs};
use wandb_proto::pb;
use wandb_proto::wire::scan_record;
use wandb_store::txlog::{FlushPolicy, LogReader, LogWriter, ReadError};

fn read_all(run: &ReferenceRun) -> Vec<Vec<u8>> {
    let mut reader = LogReader::open(&run.path).unwrap();
    let mut records = Vec::new();
    while let Some((_, rec)) = reader
        .next_record()
        .unwrap_or_else(|e| panic!("{}: {e}", run.path.display()))
    {
        records.push(rec);
    }
    assert_eq!(
        reader.valid_len(),
        run.size,
        "{}: whole file is valid",
        run.scenario
    );
    records
}

#[test]
fn reads_every_record_the_reference_service_wrote() {
    let runs = reference_runs();
    let mut multi_chunk = 0;
    for run in runs {
        let records = read_all(run);
        assert_eq!(records.len() as u64, run.records, "{}", run.scenario);
        let mut counts = BTreeMap::new();
        for (i, bytes) in records.iter().enumerate() {
            let scan = scan_record(bytes).unwrap();
            assert_eq!(
                scan.num,
                Some(i as i64 + 1),
                "{}: nums are 1..N",
                run.scenario
            );
            *counts
                .entry(scan.record_type_name().unwrap().to_string())
                .or_insert(0u64) += 1;
            // And the full decode with our schema works on every record.
            let decoded = pb::Record::decode(&bytes[..]).unwrap();
            assert_eq!(decoded.num, i as i64 + 1);
        }
        assert_eq!(counts, run.counts, "{}: per-type counts", run.scenario);
        assert!(run.nums_consecutive);
        multi_chunk += run.chunks.first;
    }
    assert!(
        multi_chunk >= 6,
        "scenarios include records larger than a block"
    );
    assert!(
        runs.iter().any(|r| r.chunks.middle > 0),
        "scenarios include records spanning three or more blocks"
    );
}

#[test]
fn rewriting_the_records_gives_byte_identical_files() {
    let dir = tempfile::tempdir().unwrap();
    for (i, run) in reference_runs().iter().enumerate() {
        let path = dir.path().join(format!("rewrite-{i}.wandb"));
        let mut writer = LogWriter::create(&path, FlushPolicy::default()).unwrap();
        for rec in read_all(run) {
            writer.append_raw(&rec).unwrap();
        }
        writer.close().unwrap();
        assert!(
            std::fs::read(&path).unwrap() == std::fs::read(&run.path).unwrap(),
            "{}: rewritten log differs from wandb-core's",
            run.scenario
        );
    }
}

/// The records as the SDK sent them carry no `num`; our writer numbers them
/// itself and must land on wandb-core's bytes exactly.
#[test]
fn numbering_records_as_received_gives_byte_identical_files() {
    let dir = tempfile::tempdir().unwrap();
    for (i, run) in reference_runs().iter().enumerate() {
        let path = dir.path().join(format!("renumber-{i}.wandb"));
        let policy = FlushPolicy {
            interval: Duration::ZERO,
            max_buffered: 0,
        };
        let mut writer = LogWriter::create(&path, policy).unwrap();
        for (n, rec) in read_all(run).into_iter().enumerate() {
            // wandb-core writes `num` first (field 1, varint): strip it.
            assert_eq!(rec[0], 0x08, "{}: num leads the record", run.scenario);
            let varint_len = rec[1..].iter().position(|b| b & 0x80 == 0).unwrap() + 1;
            let sent = &rec[1 + varint_len..];
            assert_eq!(writer.append(sent).unwrap(), n as i64 + 1);
        }
        writer.close().unwrap();
        assert!(
            std::fs::read(&path).unwrap() == std::fs::read(&run.path).unwrap(),
            "{}: renumbered log differs from wandb-core's",
            run.scenario
        );
    }
}

/// A log cut at any byte yields exactly the records before the cut and says
/// where the valid data ends.
#[test]
fn truncation_of_a_reference_log_at_every_byte() {
    let run = reference_runs()
        .iter()
        .find(|r| r.scenario == "basic")
        .unwrap();
    let full = std::fs::read(&run.path).unwrap();
    let records = read_all(run);
    for cut in 0..full.len() {
        let bytes = &full[..cut];
        let mut reader = match LogReader::new(std::io::Cursor::new(bytes)) {
            Ok(r) => r,
            Err(ReadError::Header(_)) if cut < 7 => continue,
            Err(e) => panic!("cut {cut}: {e}"),
        };
        let mut n = 0;
        let end = loop {
            match reader.next_record() {
                Ok(Some((_, rec))) => {
                    assert_eq!(rec, records[n], "cut {cut}: record {n}");
                    n += 1;
                }
                Ok(None) => break None,
                Err(e) => break Some(e),
            }
        };
        match end {
            None => assert_eq!(
                reader.valid_len(),
                cut as u64,
                "cut {cut}: clean end only at a record end"
            ),
            Some(ReadError::Truncated { offset, .. }) => {
                assert_eq!(offset, reader.valid_len(), "cut {cut}");
                assert!(n < records.len());
            }
            Some(e) => panic!("cut {cut}: unexpected {e}"),
        }
    }
}
