//! Records to stdout as they are read, and `--follow`.
//!
//! Text mode is for reading, so what happened to the log is said in the
//! output itself (`# skipped corrupt data: …`); JSON mode is for `jq`, so
//! the same notes go to stderr and stdout stays one record per line. With
//! `--follow` the log is read again as it grows until the run's exit
//! record has been read, or until the file has gone `--idle-timeout`
//! without a write (its modification time, so a run that died long ago
//! ends at once).

use std::io::{BufWriter, Write};
use std::time::{Duration, SystemTime};

use super::gofmt::{self, Time};
use super::source::{Event, LogFile, Records};
use super::{InspectError, json, text};

/// How often a followed log is checked for more.
const POLL: Duration = Duration::from_millis(250);

const INCOMPLETE: &str =
    "reached the end of an incomplete .wandb file (the run may still be active or was interrupted)";

struct Printer<W: Write> {
    out: BufWriter<W>,
    json: bool,
}

impl<W: Write> Printer<W> {
    /// A note about the log: a comment line in text, stderr in JSON.
    fn note(&mut self, note: &str) -> std::io::Result<()> {
        if self.json {
            self.out.flush()?;
            eprintln!("wandb leet inspect: {note}");
            Ok(())
        } else {
            writeln!(self.out, "# {note}")
        }
    }
}

/// Prints every record; with `follow`, keeps printing new ones (see the
/// module docs) with that idle timeout (zero: none).
pub fn print(
    records: Records,
    log: &LogFile,
    json: bool,
    follow: Option<Duration>,
) -> Result<(), InspectError> {
    let printer = Printer {
        out: BufWriter::new(std::io::stdout().lock()),
        json,
    };
    print_to(records, log, printer, follow)
}

fn print_to<W: Write>(
    mut records: Records,
    log: &LogFile,
    mut printer: Printer<W>,
    follow: Option<Duration>,
) -> Result<(), InspectError> {
    let mut exited = false;
    let result = (|| -> Result<(), InspectError> {
        loop {
            let event = records.next_event()?;
            match event {
                Event::Record(index, rec) => {
                    exited |= rec.type_name == "exit";
                    let out = &mut printer.out;
                    if printer.json {
                        writeln!(out, "{}", json::record_line(index, &rec))
                    } else {
                        out.write_all(text::record_block(index, &rec).as_bytes())
                    }
                    .map_err(InspectError::Output)?;
                }
                Event::Skipped(why) => printer
                    .note(&format!("skipped corrupt data: {why}"))
                    .map_err(InspectError::Output)?,
                Event::Incomplete | Event::End => {
                    let Some(idle_timeout) = follow else {
                        if matches!(event, Event::Incomplete) {
                            printer.note(INCOMPLETE).map_err(InspectError::Output)?;
                        }
                        return Ok(());
                    };
                    if exited {
                        return Ok(());
                    }
                    printer.out.flush().map_err(InspectError::Output)?;
                    if !idle_timeout.is_zero() {
                        let idle = idle_for(log);
                        if idle >= idle_timeout.as_nanos() as i128 {
                            let note = format!(
                                "no writes for {}; the run may have crashed",
                                gofmt::duration_secs(idle)
                            );
                            printer.note(&note).map_err(InspectError::Output)?;
                            return Ok(());
                        }
                    }
                    std::thread::sleep(POLL);
                }
            }
        }
    })();
    let flushed = printer.out.flush().map_err(InspectError::Output);
    match result.and(flushed) {
        Err(InspectError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Nanoseconds since the log was last written.
fn idle_for(log: &LogFile) -> i128 {
    let modified = std::fs::metadata(&log.path).and_then(|m| m.modified());
    match modified {
        Ok(t) => Time::from_system(SystemTime::now()).nanos_since(Time::from_system(t)),
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;
    use wandb_proto::pb;
    use wandb_store::txlog::{FlushPolicy, LogWriter};

    use super::*;

    fn history(step: i64) -> Vec<u8> {
        pb::Record {
            record_type: Some(pb::record::RecordType::History(pb::HistoryRecord {
                item: vec![pb::HistoryItem {
                    key: "x".into(),
                    value_json: step.to_string(),
                    ..Default::default()
                }],
                step: Some(pb::HistoryStep { num: step }),
                ..Default::default()
            })),
            ..Default::default()
        }
        .encode_to_vec()
    }

    fn run(log: &LogFile, json: bool, follow: Option<Duration>) -> String {
        let mut buf = Vec::new();
        let printer = Printer {
            out: BufWriter::new(&mut buf),
            json,
        };
        print_to(Records::open(log).unwrap(), log, printer, follow).unwrap();
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn prints_json_lines_and_notes_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run-x.wandb");
        let mut writer = LogWriter::create(&path, FlushPolicy::default()).unwrap();
        writer.append_raw(&history(0)).unwrap();
        writer.append_raw(&history(1)).unwrap();
        writer.close().unwrap();
        let log = LogFile {
            path: path.clone(),
            display: "run-x.wandb".into(),
        };
        assert_eq!(
            run(&log, true, None),
            "{\"num\":1,\"type\":\"history\",\"history\":{\"item\":{\"x\":0},\"step\":{\"num\":0}}}\n\
             {\"num\":2,\"type\":\"history\",\"history\":{\"item\":{\"x\":1},\"step\":{\"num\":1}}}\n"
        );
        // Cut inside the last record.
        let len = std::fs::metadata(&path).unwrap().len();
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(len - 3).unwrap();
        let text = run(&log, false, None);
        assert!(
            text.starts_with("# record 1: history\nhistory: {\n"),
            "{text}"
        );
        assert!(text.ends_with(&format!("}}\n\n# {INCOMPLETE}\n")), "{text}");
        // Following a log nobody writes ends after the idle timeout.
        let text = run(&log, false, Some(Duration::from_millis(1)));
        assert!(text.contains("# no writes for "), "{text}");
    }
}
