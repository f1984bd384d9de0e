//! Reader throughput on a ~100 MB transaction log.
//!
//!     cargo bench -p wandb-store --bench read_throughput [-- SIZE_MB]
//!
//! The log holds what a training run writes: history rows of ten scalars
//! with their summary records, and now and then a record larger than a
//! block. Each pass reads the file from the page cache; beside our reader's
//! figure the bench measures the limit for the same bytes: a plain
//! sequential `read` of the file, and that read plus CRC-32 of every byte.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use prost::Message;
use wandb_proto::pb;
use wandb_store::txlog::{FlushPolicy, LogReader, LogWriter};

const PASSES: usize = 7;

fn history_row(step: i64) -> Vec<u8> {
    let item = |key: &str, value: String| pb::HistoryItem {
        nested_key: vec![key.to_string()],
        value_json: value,
        ..Default::default()
    };
    let mut items: Vec<_> = (0..10)
        .map(|k| {
            item(
                &format!("metric_{k}"),
                format!("{}", step as f64 * 0.001 + k as f64),
            )
        })
        .collect();
    items.push(item("_step", step.to_string()));
    items.push(item("_runtime", format!("{}", step as f64 * 0.01)));
    items.push(item("_timestamp", "1.7956821200655699e+09".to_string()));
    pb::Record {
        record_type: Some(pb::record::RecordType::History(pb::HistoryRecord {
            item: items,
            step: Some(pb::HistoryStep { num: step }),
            ..Default::default()
        })),
        ..Default::default()
    }
    .encode_to_vec()
}

fn summary_record(step: i64) -> Vec<u8> {
    pb::Record {
        record_type: Some(pb::record::RecordType::Summary(pb::SummaryRecord {
            update: (0..10)
                .map(|k| pb::SummaryItem {
                    nested_key: vec![format!("metric_{k}")],
                    value_json: format!("{}", step as f64 * 0.001 + k as f64),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })),
        ..Default::default()
    }
    .encode_to_vec()
}

fn write_log(path: &Path, target_bytes: u64) -> (u64, u64) {
    let mut writer = LogWriter::create(path, FlushPolicy::default()).unwrap();
    let big = pb::Record {
        record_type: Some(pb::record::RecordType::Config(pb::ConfigRecord {
            update: vec![pb::ConfigItem {
                key: "blob".into(),
                value_json: format!("\"{}\"", "x".repeat(100_000)),
                ..Default::default()
            }],
            ..Default::default()
        })),
        ..Default::default()
    }
    .encode_to_vec();
    let mut records = 0;
    let mut step = 0;
    while writer.len() < target_bytes {
        writer.append(&summary_record(step)).unwrap();
        writer.append(&history_row(step)).unwrap();
        records += 2;
        if step % 10_000 == 0 {
            writer.append(&big).unwrap();
            records += 1;
        }
        step += 1;
    }
    (writer.close().unwrap(), records)
}

fn median(mut v: Vec<Duration>) -> (Duration, Duration, Duration) {
    v.sort();
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn time_passes(mut pass: impl FnMut() -> u64, expect: u64) -> (Duration, Duration, Duration) {
    pass(); // warm the page cache
    let times = (0..PASSES)
        .map(|_| {
            let t = Instant::now();
            assert_eq!(pass(), expect);
            t.elapsed()
        })
        .collect();
    median(times)
}

fn main() {
    let size_mb: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(100);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run-bench.wandb");
    let (size, records) = write_log(&path, size_mb << 20);
    let mb = size as f64 / 1e6;

    let ours = time_passes(
        || {
            let mut reader = LogReader::open(&path).unwrap();
            let mut buf = Vec::new();
            let mut n = 0;
            while reader.next_into(&mut buf).unwrap().is_some() {
                n += 1;
            }
            n
        },
        records,
    );
    let read_only = time_passes(
        || {
            let mut f = File::open(&path).unwrap();
            let mut buf = vec![0u8; 1 << 20];
            let mut total = 0u64;
            loop {
                let n = f.read(&mut buf).unwrap();
                if n == 0 {
                    break total;
                }
                total += n as u64;
            }
        },
        size,
    );
    let read_crc = time_passes(
        || {
            let mut f = File::open(&path).unwrap();
            let mut buf = vec![0u8; 1 << 20];
            let mut total = 0u64;
            let mut h = crc32fast::Hasher::new();
            loop {
                let n = f.read(&mut buf).unwrap();
                if n == 0 {
                    std::hint::black_box(h.finalize());
                    break total;
                }
                h.update(&buf[..n]);
                total += n as u64;
            }
        },
        size,
    );

    println!(
        "transaction log: {mb:.1} MB, {records} records ({PASSES} passes from page cache, median [min–max])"
    );
    println!("| what | MB/s | records/s |");
    println!("| --- | ---: | ---: |");
    let row = |name: &str, (med, min, max): (Duration, Duration, Duration), with_records: bool| {
        let rate = |d: Duration| mb / d.as_secs_f64();
        let recs = if with_records {
            format!("{:.2} M", records as f64 / med.as_secs_f64() / 1e6)
        } else {
            "–".to_string()
        };
        println!(
            "| {name} | {:.0} [{:.0}–{:.0}] | {recs} |",
            rate(med),
            rate(max),
            rate(min)
        );
    };
    row("LogReader::next_into (CRC check + reassembly)", ours, true);
    row("limit: sequential read(2), 1 MiB buffer", read_only, false);
    row("limit: read(2) + CRC-32 of every byte", read_crc, false);
}
