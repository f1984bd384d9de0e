//! Logs written here, exported, and read back: every cell, every format,
//! damaged and torn logs, and the refusals.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use prost::Message as _;
use wandb_export::{ExportError, Format, Options, Problem, Report};
use wandb_proto::pb::{self, record::RecordType};
use wandb_store::txlog::{FlushPolicy, LogWriter};

fn history(items: &[(&str, &str)]) -> pb::Record {
    pb::Record {
        record_type: Some(RecordType::History(pb::HistoryRecord {
            item: items
                .iter()
                .map(|(k, v)| pb::HistoryItem {
                    nested_key: k.split('.').map(str::to_string).collect(),
                    value_json: v.to_string(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn run_record(id: &str, config: &[(&str, &str)]) -> pb::Record {
    pb::Record {
        record_type: Some(RecordType::Run(pb::RunRecord {
            run_id: id.into(),
            project: "proj".into(),
            display_name: format!("name-{id}"),
            tags: vec!["t1".into()],
            config: Some(pb::ConfigRecord {
                update: config
                    .iter()
                    .map(|(k, v)| pb::ConfigItem {
                        key: k.to_string(),
                        value_json: v.to_string(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn summary(items: &[(&str, &str)]) -> pb::Record {
    pb::Record {
        record_type: Some(RecordType::Summary(pb::SummaryRecord {
            update: items
                .iter()
                .map(|(k, v)| pb::SummaryItem {
                    nested_key: k.split('.').map(str::to_string).collect(),
                    value_json: v.to_string(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn exit(code: i32) -> pb::Record {
    pb::Record {
        record_type: Some(RecordType::Exit(pb::RunExitRecord {
            exit_code: code,
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn write_log(path: &Path, records: &[pb::Record]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut w = LogWriter::create(path, FlushPolicy::default()).unwrap();
    for r in records {
        w.append(&r.encode_to_vec()).unwrap();
    }
    w.close().unwrap();
}

/// The run most tests export: every kind of value, sparse keys, nested
/// keys, a column of mixed types, a media dict.
fn sample_run(id: &str) -> Vec<pb::Record> {
    vec![
        run_record(
            id,
            &[
                ("lr", "0.01"),
                ("opt", r#"{"name":"adam","betas":[0.9,0.99]}"#),
                ("_wandb", r#"{"cli_version":"0.31.0"}"#),
            ],
        ),
        history(&[
            ("_step", "0"),
            ("loss", "1"),
            ("epoch", "0"),
            ("name", "\"s0\""),
            ("flag", "true"),
            ("sparse", "0"),
            ("mixed", "1"),
            ("_runtime", "0.5"),
        ]),
        summary(&[("loss", "1")]),
        history(&[
            ("_step", "1"),
            ("loss", "0.5"),
            ("epoch", "1"),
            ("name", "\"s,1\""),
            ("flag", "false"),
            ("mixed", "\"two\""),
            ("_runtime", "0.75"),
        ]),
        history(&[
            ("_step", "2"),
            ("loss", "NaN"),
            ("epoch", "2"),
            ("name", "\"s\\\"2\""),
            ("sparse", "20"),
            ("nested.a", "1"),
            ("nested.b.c", "2.5"),
            ("img", r#"{"_type":"image-file","path":"media/x.png"}"#),
        ]),
        history(&[
            ("_step", "3"),
            ("loss", "Infinity"),
            ("epoch", "3"),
            ("big", "1180591620717411303424"),
            ("none", "null"),
        ]),
        history(&[("_step", "10"), ("loss", "-Infinity"), ("late", "1.5")]),
        summary(&[("best", "0.1"), ("nested.deep", "\"x\"")]),
        exit(0),
    ]
}

fn scratch() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn export(
    input: &Path,
    out: &Path,
    format: Option<Format>,
    batch_rows: usize,
) -> Result<Report, ExportError> {
    let plan = wandb_export::plan(&Options {
        input: input.to_path_buf(),
        format,
        out: Some(out.to_path_buf()),
        force: false,
        batch_rows: Some(batch_rows),
    })?;
    wandb_export::export(&plan)
}

fn read_parquet(path: &Path) -> (Vec<RecordBatch>, BTreeMap<String, String>) {
    let (batches, kv, _) = read_parquet_groups(path);
    (batches, kv)
}

/// The batches, the key-value metadata and the number of row groups.
fn read_parquet_groups(path: &Path) -> (Vec<RecordBatch>, BTreeMap<String, String>, usize) {
    let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap();
    let groups = builder.metadata().num_row_groups();
    let kv: BTreeMap<String, String> = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .map(|kv| {
            kv.iter()
                .filter_map(|e| Some((e.key.clone(), e.value.clone()?)))
                .collect()
        })
        .unwrap_or_default();
    let batches = builder.build().unwrap().map(|b| b.unwrap()).collect();
    (batches, kv, groups)
}

/// A column of all batches as JSON-ish text per row ("null" for null).
fn column(batches: &[RecordBatch], name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for b in batches {
        let a = b
            .column_by_name(name)
            .unwrap_or_else(|| panic!("no column {name}"));
        for i in 0..a.len() {
            if a.is_null(i) {
                out.push("null".into());
                continue;
            }
            out.push(match a.data_type() {
                DataType::Int64 => a.as_primitive::<Int64Type>().value(i).to_string(),
                DataType::Float64 => format!("{:?}", a.as_primitive::<Float64Type>().value(i)),
                DataType::Boolean => a.as_boolean().value(i).to_string(),
                DataType::Utf8 => a.as_string::<i32>().value(i).to_string(),
                other => panic!("{other}"),
            });
        }
    }
    out
}

fn names(batches: &[RecordBatch]) -> Vec<String> {
    batches[0]
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect()
}

#[test]
fn one_run_to_parquet_every_cell() {
    let dir = scratch();
    let log = dir.path().join("run-abc.wandb");
    write_log(&log, &sample_run("abc"));
    let out = dir.path().join("out.parquet");
    let report = export(&log, &out, None, 2).unwrap();
    assert_eq!(report.rows, 5);
    assert!(!report.incomplete());
    assert_eq!(report.runs_table, dir.path().join("out.runs.parquet"));

    let (batches, kv, groups) = read_parquet_groups(&out);
    assert_eq!(groups, 3, "row groups of 2 rows");
    assert_eq!(
        names(&batches),
        [
            "_step",
            "big",
            "epoch",
            "flag",
            "img",
            "late",
            "loss",
            "mixed",
            "name",
            "nested.a",
            "nested.b.c",
            "none",
            "sparse",
            "_runtime"
        ]
    );
    let schema = batches[0].schema();
    let ty = |n: &str| schema.field_with_name(n).unwrap().data_type().clone();
    assert_eq!(ty("_step"), DataType::Int64);
    assert_eq!(ty("epoch"), DataType::Int64);
    assert_eq!(ty("loss"), DataType::Float64);
    assert_eq!(ty("big"), DataType::Float64);
    assert_eq!(ty("flag"), DataType::Boolean);
    assert_eq!(ty("name"), DataType::Utf8);
    assert_eq!(ty("mixed"), DataType::Utf8);
    assert_eq!(
        schema.field_with_name("mixed").unwrap().metadata()["wandb.type"],
        "json"
    );
    assert_eq!(
        schema.field_with_name("img").unwrap().metadata()["wandb.type"],
        "json"
    );
    assert!(
        schema
            .field_with_name("name")
            .unwrap()
            .metadata()
            .is_empty()
    );

    assert_eq!(column(&batches, "_step"), ["0", "1", "2", "3", "10"]);
    assert_eq!(
        column(&batches, "loss"),
        ["1.0", "0.5", "NaN", "inf", "-inf"]
    );
    assert_eq!(column(&batches, "epoch"), ["0", "1", "2", "3", "null"]);
    assert_eq!(
        column(&batches, "name"),
        ["s0", "s,1", "s\"2", "null", "null"]
    );
    assert_eq!(
        column(&batches, "flag"),
        ["true", "false", "null", "null", "null"]
    );
    assert_eq!(
        column(&batches, "sparse"),
        ["0", "null", "20", "null", "null"]
    );
    assert_eq!(
        column(&batches, "mixed"),
        ["1", "\"two\"", "null", "null", "null"]
    );
    assert_eq!(
        column(&batches, "nested.b.c"),
        ["null", "null", "2.5", "null", "null"]
    );
    assert_eq!(
        column(&batches, "img")[2],
        r#"{"_type":"image-file","path":"media/x.png"}"#
    );
    assert_eq!(column(&batches, "big")[3], "1.1805916207174113e21");
    assert_eq!(column(&batches, "none"), ["null"; 5]);
    assert_eq!(column(&batches, "late")[4], "1.5");
    assert_eq!(column(&batches, "_runtime")[..2], ["0.5", "0.75"]);

    let runs_json = &kv[wandb_export::METADATA_KEY];
    assert!(runs_json.contains(r#""config":{"lr":0.01,"opt":{"name":"adam","betas":[0.9,0.99]},"_wandb":{"cli_version":"0.31.0"}}"#), "{runs_json}");
    assert!(
        runs_json.contains(r#""summary":{"loss":1,"best":0.1,"nested":{"deep":"x"}}"#),
        "{runs_json}"
    );

    let (runs, _) = read_parquet(&dir.path().join("out.runs.parquet"));
    let runs_names = names(&runs);
    assert_eq!(
        runs_names[..15],
        [
            "run_id",
            "project",
            "entity",
            "name",
            "group",
            "job_type",
            "state",
            "exit_code",
            "start_time",
            "host",
            "notes",
            "tags",
            "history_rows",
            "log",
            "log_problem"
        ]
    );
    assert_eq!(
        runs_names[15..],
        [
            "config.lr",
            "config.opt.betas",
            "config.opt.name",
            "summary.best",
            "summary.loss",
            "summary.nested.deep"
        ]
    );
    assert_eq!(column(&runs, "run_id"), ["abc"]);
    assert_eq!(column(&runs, "state"), ["finished"]);
    assert_eq!(column(&runs, "exit_code"), ["0"]);
    assert_eq!(column(&runs, "name"), ["name-abc"]);
    assert_eq!(column(&runs, "entity"), ["null"]);
    assert_eq!(column(&runs, "tags"), [r#"["t1"]"#]);
    assert_eq!(column(&runs, "history_rows"), ["5"]);
    assert_eq!(column(&runs, "config.opt.betas"), ["[0.9,0.99]"]);
    assert_eq!(column(&runs, "summary.best"), ["0.1"]);
    assert_eq!(column(&runs, "log_problem"), ["null"]);
}

#[test]
fn a_wandb_directory_is_one_table_with_run_id_first() {
    let dir = scratch();
    let wandb = dir.path().join("wandb");
    write_log(
        &wandb.join("offline-run-20260101_000000-aaa/run-aaa.wandb"),
        &sample_run("aaa"),
    );
    write_log(
        &wandb.join("run-20260102_000000-bbb/run-bbb.wandb"),
        &[
            run_record("bbb", &[("lr", "0.1"), ("only_b", "true")]),
            history(&[
                ("_step", "0"),
                ("loss", "0.25"),
                ("run_id", "\"mine\""),
                ("b_only", "7"),
            ]),
            history(&[("_step", "1"), ("loss", "2")]),
        ],
    );
    // Not a run directory: skipped.
    std::fs::create_dir_all(wandb.join("latest-run")).unwrap();
    let out = dir.path().join("all.parquet");
    // The directory holding wandb/ finds it.
    let report = export(dir.path(), &out, None, 1000).unwrap();
    assert_eq!(report.rows, 7);
    let ids: Vec<&str> = report.runs.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["aaa", "bbb"], "oldest first");

    let (batches, _) = read_parquet(&out);
    let n = names(&batches);
    assert_eq!(n[..2], ["run_id", "_step"]);
    assert!(n.contains(&"run_id (logged)".to_string()), "{n:?}");
    assert_eq!(
        column(&batches, "run_id"),
        ["aaa", "aaa", "aaa", "aaa", "aaa", "bbb", "bbb"]
    );
    assert_eq!(
        column(&batches, "_step"),
        ["0", "1", "2", "3", "10", "0", "1"]
    );
    assert_eq!(column(&batches, "b_only")[5..], ["7", "null"]);
    assert_eq!(column(&batches, "b_only")[..5], ["null"; 5]);
    assert_eq!(column(&batches, "run_id (logged)")[5], "mine");
    assert_eq!(column(&batches, "loss")[5..], ["0.25", "2.0"]);

    let (runs, _) = read_parquet(&dir.path().join("all.runs.parquet"));
    assert_eq!(column(&runs, "run_id"), ["aaa", "bbb"]);
    assert_eq!(column(&runs, "state"), ["finished", "running"]);
    assert_eq!(column(&runs, "config.lr"), ["0.01", "0.1"]);
    assert_eq!(column(&runs, "config.only_b"), ["null", "true"]);
}

#[test]
fn csv_and_jsonl_hold_the_same_cells() {
    let dir = scratch();
    let log = dir.path().join("run-abc.wandb");
    write_log(&log, &sample_run("abc"));

    let out = dir.path().join("h.csv");
    export(&log, &out, None, 2).unwrap();
    let mut reader = csv::Reader::from_path(&out).unwrap();
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_string)
        .collect();
    let rows: Vec<BTreeMap<String, String>> = reader
        .records()
        .map(|r| {
            header
                .iter()
                .cloned()
                .zip(r.unwrap().iter().map(str::to_string))
                .collect()
        })
        .collect();
    assert_eq!(header[0], "_step");
    assert_eq!(rows.len(), 5);
    let col = |k: &str| rows.iter().map(|r| r[k].as_str()).collect::<Vec<_>>();
    assert_eq!(col("loss"), ["1.0", "0.5", "NaN", "inf", "-inf"]);
    assert_eq!(col("name"), ["s0", "s,1", "s\"2", "", ""]);
    assert_eq!(col("flag"), ["true", "false", "", "", ""]);
    assert_eq!(col("mixed"), ["1", "\"two\"", "", "", ""]);
    assert_eq!(col("big")[3], "1.1805916207174113e21");
    let mut reader = csv::Reader::from_path(dir.path().join("h.runs.csv")).unwrap();
    assert_eq!(&reader.headers().unwrap()[0], "run_id");
    assert_eq!(&reader.records().next().unwrap().unwrap()[0], "abc");

    let out = dir.path().join("h.jsonl");
    export(&log, &out, None, 2).unwrap();
    let text = std::fs::read_to_string(&out).unwrap();
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 5);
    assert_eq!(
        rows[0],
        serde_json::json!({"_step": 0, "epoch": 0, "flag": true, "loss": 1.0, "mixed": 1, "name": "s0", "sparse": 0, "_runtime": 0.5})
    );
    assert_eq!(rows[1]["mixed"], "two");
    assert_eq!(
        rows[2]["loss"],
        serde_json::Value::Null,
        "NaN is null in JSON"
    );
    assert_eq!(rows[2]["img"]["_type"], "image-file");
    assert_eq!(rows[2]["nested.b.c"], 2.5);
    assert!(rows[3].get("none").is_none() && rows[3].get("name").is_none());
    assert_eq!(
        rows[4],
        serde_json::json!({"_step": 10, "late": 1.5, "loss": null})
    );
    let runs = std::fs::read_to_string(dir.path().join("h.runs.jsonl")).unwrap();
    let run: serde_json::Value = serde_json::from_str(runs.trim()).unwrap();
    assert_eq!(run["config.opt.betas"], serde_json::json!([0.9, 0.99]));
    assert_eq!(run["tags"], serde_json::json!(["t1"]));
}

/// Flips a byte inside the log's second half: what precedes the damage is
/// exported, and the report says the export is incomplete.
#[test]
fn a_damaged_log_exports_what_precedes_the_damage() {
    let dir = scratch();
    let log = dir.path().join("run-dmg.wandb");
    let mut records = vec![run_record("dmg", &[])];
    for i in 0..4000 {
        records.push(history(&[
            ("_step", &i.to_string()),
            ("x", &format!("{i}.5")),
        ]));
    }
    write_log(&log, &records);
    let mut bytes = std::fs::read(&log).unwrap();
    let at = bytes.len() * 3 / 4;
    bytes[at] ^= 0xff;
    std::fs::write(&log, &bytes).unwrap();

    let out = dir.path().join("d.parquet");
    let report = export(&log, &out, None, 1000).unwrap();
    assert!(report.incomplete());
    let run = &report.runs[0];
    assert!(
        matches!(&run.problem, Some(Problem::Damaged(e)) if e.contains("corrupt chunk")),
        "{run:?}"
    );
    assert!(report.rows > 1000 && report.rows < 4000, "{}", report.rows);
    let (batches, _) = read_parquet(&out);
    let steps = column(&batches, "_step");
    assert_eq!(steps.len() as u64, report.rows);
    assert!(steps.iter().enumerate().all(|(i, s)| *s == i.to_string()));
    let (runs, _) = read_parquet(&dir.path().join("d.runs.parquet"));
    assert!(column(&runs, "log_problem")[0].starts_with("damaged: corrupt chunk"));
}

/// A log cut inside its last record (a crash) exports all before it and
/// is not called damaged.
#[test]
fn a_torn_tail_is_not_damage() {
    let dir = scratch();
    let log = dir.path().join("run-torn.wandb");
    write_log(&log, &sample_run("torn"));
    let len = std::fs::metadata(&log).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&log).unwrap();
    f.set_len(len - 3).unwrap();
    let report = export(&log, &dir.path().join("t.parquet"), None, 10).unwrap();
    assert!(!report.incomplete());
    assert!(matches!(report.runs[0].problem, Some(Problem::Torn(_))));
    assert_eq!(report.rows, 5, "only the exit record was cut");
}

#[test]
fn refusals_and_defaults() {
    let dir = scratch();
    let log = dir.path().join("run-abc.wandb");
    write_log(&log, &sample_run("abc"));
    let out = dir.path().join("x.parquet");
    export(&log, &out, None, 10).unwrap();
    // Both files exist now: no overwrite without --force.
    assert!(matches!(export(&log, &out, None, 10), Err(ExportError::Exists(p)) if p == out));
    std::fs::remove_file(&out).unwrap();
    assert!(
        matches!(export(&log, &out, None, 10), Err(ExportError::Exists(p)) if p.ends_with("x.runs.parquet"))
    );
    let plan = wandb_export::plan(&Options {
        input: log.clone(),
        format: None,
        out: Some(out.clone()),
        force: true,
        batch_rows: None,
    })
    .unwrap();
    wandb_export::export(&plan).unwrap();
    // No temporary files left behind.
    let mut left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["run-abc.wandb", "x.parquet", "x.runs.parquet"]);

    // Defaults: the format from --out, else Parquet; the file from the run ID.
    let plan = |input: &Path, out: Option<&str>, format| {
        wandb_export::plan(&Options {
            input: input.to_path_buf(),
            format,
            out: out.map(PathBuf::from),
            force: false,
            batch_rows: None,
        })
    };
    let p = plan(&log, None, None).unwrap();
    assert_eq!(
        (p.format, p.history.clone(), p.runs.clone()),
        (
            Format::Parquet,
            "abc.parquet".into(),
            "abc.runs.parquet".into()
        )
    );
    let p = plan(&log, Some("o/h.CSV"), None).unwrap();
    assert_eq!(
        (p.format, p.runs.clone()),
        (Format::Csv, "o/h.runs.CSV".into())
    );
    let p = plan(&log, None, Some(Format::Jsonl)).unwrap();
    assert_eq!(p.history, PathBuf::from("abc.jsonl"));
    let p = plan(&log, Some("noext"), Some(Format::Csv)).unwrap();
    assert_eq!(p.runs, PathBuf::from("noext.runs.csv"));

    // Bad input.
    assert!(matches!(
        plan(&dir.path().join("missing"), None, None),
        Err(ExportError::NotFound(_))
    ));
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert!(matches!(
        plan(&empty, None, None),
        Err(ExportError::NoRuns(_))
    ));
    let not_a_log = dir.path().join("notes.txt");
    std::fs::write(&not_a_log, "hello, world").unwrap();
    let err = export(&not_a_log, &dir.path().join("n.parquet"), None, 10).unwrap_err();
    assert!(matches!(err, ExportError::NotALog { .. }), "{err:?}");
    assert!(!dir.path().join("n.parquet").exists());
}

/// In a directory, a run whose log is not a log is left out and named;
/// the others are exported.
#[test]
fn an_unreadable_run_in_a_directory_is_left_out() {
    let dir = scratch();
    write_log(
        &dir.path().join("run-20260101_000000-ok/run-ok.wandb"),
        &sample_run("ok"),
    );
    let bad = dir.path().join("run-20260102_000000-bad/run-bad.wandb");
    std::fs::create_dir_all(bad.parent().unwrap()).unwrap();
    std::fs::write(&bad, b"garbage!").unwrap();
    let report = export(dir.path(), &dir.path().join("h.csv"), None, 10).unwrap();
    assert!(report.incomplete());
    assert_eq!(report.rows, 5);
    assert!(
        matches!(&report.runs[1].problem, Some(Problem::Unreadable(e)) if e.contains(":W&B")),
        "{:?}",
        report.runs
    );
}

/// A run without rows still has a `_step` column and its runs row.
#[test]
fn a_run_without_history() {
    let dir = scratch();
    let log = dir.path().join("run-e.wandb");
    write_log(&log, &[run_record("e", &[("lr", "1")]), exit(1)]);
    for ext in ["parquet", "csv", "jsonl"] {
        let out = dir.path().join(format!("e.{ext}"));
        let report = export(&log, &out, None, 10).unwrap();
        assert_eq!((report.rows, report.columns), (0, 1));
    }
    let (batches, _) = read_parquet(&dir.path().join("e.parquet"));
    assert!(batches.iter().all(|b| b.num_rows() == 0));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("e.csv")).unwrap(),
        "_step\n"
    );
    let (runs, _) = read_parquet(&dir.path().join("e.runs.parquet"));
    assert_eq!(column(&runs, "state"), ["failed"]);
    assert_eq!(column(&runs, "config.lr"), ["1"]);
}
