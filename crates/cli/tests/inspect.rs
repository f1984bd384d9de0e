//! `wandb-core inspect` on logs written by W&B's wandb-core, whole, cut
//! short and damaged.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use testkit::CommandExt as _;
use testkit::reference_runs;
use wandb_store::txlog::LogReader;
use wandb_store::txlog::format::BLOCK_SIZE;

fn inspect(args: &[&str], file: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wandb-core"))
        .arg("inspect")
        .args(args)
        .arg(file)
        .output_limited()
        .expect("run wandb-core")
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("utf-8 output")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn parse_summary(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .map(|line| {
            let mut parts = line.split_whitespace();
            let kind = parts.next().unwrap().to_string();
            let n = parts.next().unwrap().parse().unwrap();
            (kind, n)
        })
        .collect()
}

#[test]
fn summary_counts_match_the_records_in_reference_logs() {
    for run in reference_runs() {
        let out = inspect(&["--summary"], &run.path);
        assert!(out.status.success(), "{}: {}", run.scenario, stderr(&out));
        let mut counts = parse_summary(&stdout(&out));
        assert_eq!(
            counts.remove("total"),
            Some(run.records),
            "{}",
            run.scenario
        );
        assert_eq!(counts, run.counts, "{}", run.scenario);
    }
}

#[test]
fn prints_every_record_as_json_and_filters_by_type() {
    let run = reference_runs()
        .iter()
        .find(|r| r.scenario == "step_commit")
        .unwrap();
    let out = inspect(&[], &run.path);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len() as u64, run.records);
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["num"], i as u64 + 1);
        let kind = line["type"].as_str().unwrap();
        assert!(
            line["record"][kind].is_object(),
            "record {i} carries its {kind} body: {line}"
        );
    }
    // The first history row holds what was logged at step 0 (proto field
    // names, values as wandb-core normalised them).
    let history: Vec<_> = lines.iter().filter(|l| l["type"] == "history").collect();
    let items = history[0]["record"]["history"]["item"].as_array().unwrap();
    let value = |key: &str| {
        items
            .iter()
            .find(|i| i["nested_key"][0] == key)
            .map(|i| i["value_json"].as_str().unwrap().to_string())
    };
    assert_eq!(value("loss").as_deref(), Some("0.9"));
    assert_eq!(value("acc").as_deref(), Some("0.1"));
    assert_eq!(value("_step").as_deref(), Some("0"));

    let out = inspect(&["--type", "history", "--type", "exit"], &run.path);
    let kinds: Vec<String> = stdout(&out)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(kinds.len() as u64, run.counts["history"] + 1);
    assert!(kinds.iter().all(|k| k == "history" || k == "exit"));

    let out = inspect(&["--type", "histroy"], &run.path);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("unknown record type \"histroy\""),
        "{}",
        stderr(&out)
    );
}

/// Truncated at many offsets (every byte near the block boundaries that
/// multi-chunk records cross, a stride elsewhere): never a panic, always
/// the records before the cut, and an error naming the offset.
#[test]
fn truncated_logs_report_what_was_recovered() {
    let run = reference_runs()
        .iter()
        .find(|r| r.scenario == "large")
        .unwrap();
    let full = std::fs::read(&run.path).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cuts: Vec<usize> = (0..full.len()).step_by(4099).collect();
    for boundary in [BLOCK_SIZE, 2 * BLOCK_SIZE, 5 * BLOCK_SIZE] {
        cuts.extend(boundary - 9..boundary + 9);
    }
    cuts.extend(0..12);
    cuts.push(full.len());
    for cut in cuts.into_iter().filter(|c| *c <= full.len()) {
        let path = dir.path().join(format!("cut-{cut}.wandb"));
        std::fs::write(&path, &full[..cut]).unwrap();
        let out = inspect(&["--summary"], &path);
        let err = stderr(&out);
        assert!(!err.contains("panicked"), "cut {cut}: {err}");
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "cut {cut}: {:?}",
            out.status
        );

        // What the library reads from the same prefix is what was printed.
        let mut expected = 0;
        let mut valid = None;
        if let Ok(mut reader) = LogReader::new(std::io::Cursor::new(&full[..cut])) {
            while let Ok(Some(_)) = reader.next_record() {
                expected += 1;
            }
            valid = Some(reader.valid_len());
        }
        if out.status.success() {
            assert_eq!(
                valid,
                Some(cut as u64),
                "cut {cut}: a clean read ends at a record end"
            );
            assert_eq!(parse_summary(&stdout(&out))["total"], expected, "cut {cut}");
            continue;
        }
        match valid {
            None => assert!(err.contains("header"), "cut {cut}: {err}"),
            Some(valid) => {
                let counts = parse_summary(&stdout(&out));
                assert_eq!(counts["total"], expected, "cut {cut}");
                assert!(
                    err.contains(&format!("valid up to byte {valid}")),
                    "cut {cut}: {err}"
                );
                assert!(
                    err.contains(&format!("{expected} records read")),
                    "cut {cut}: {err}"
                );
            }
        }
    }
}

#[test]
fn corrupt_chunk_names_its_offset_and_recover_reads_on() {
    let run = reference_runs()
        .iter()
        .find(|r| r.scenario == "many_rows")
        .unwrap();
    let mut bytes = std::fs::read(&run.path).unwrap();
    // Damage a byte in the middle of block 10.
    let at = 10 * BLOCK_SIZE + BLOCK_SIZE / 2;
    bytes[at] ^= 0x5a;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("damaged.wandb");
    std::fs::write(&path, &bytes).unwrap();

    let out = inspect(&[], &path);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    let printed = stdout(&out).lines().count() as u64;
    assert!(printed > 0 && printed < run.records);
    let offset: u64 = err
        .split("corrupt chunk at byte ")
        .nth(1)
        .and_then(|s| s.split(':').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no offset in {err}"));
    assert!(
        offset <= at as u64 && (at as u64) - offset < BLOCK_SIZE as u64,
        "{err}"
    );

    let out = inspect(&["--recover", "--summary"], &path);
    assert_eq!(out.status.code(), Some(1), "damage is still reported");
    let recovered = parse_summary(&stdout(&out))["total"];
    assert!(recovered > printed, "recovery reads past the damaged block");
    assert!(recovered < run.records);
}

#[test]
fn a_file_that_is_not_a_log_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, "hello, world").unwrap();
    let out = inspect(&[], &path);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("not a wandb transaction log"),
        "{}",
        stderr(&out)
    );
    let out = inspect(&[], &dir.path().join("missing.wandb"));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("missing.wandb"), "{}", stderr(&out));
}
