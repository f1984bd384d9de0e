//! `wandb-core inspect`: a look inside a transaction log without W&B.
//!
//! Records stream to stdout as they are read, so on a damaged file the user
//! gets everything before the damage, then an error naming its offset.

use std::collections::BTreeMap;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use prost_reflect::{DynamicMessage, MessageDescriptor, SerializeOptions};
use wandb_proto::{descriptor_pool, wire};
use wandb_store::txlog::{LogReader, ReadError};

#[derive(clap::Args)]
pub struct Args {
    /// The `.wandb` file to read.
    file: PathBuf,
    /// Only records of this type (`history`, `summary`, `run`, …); repeatable.
    #[arg(long = "type", value_name = "TYPE")]
    types: Vec<String>,
    /// Print the number of records per type instead of the records.
    #[arg(long)]
    summary: bool,
    /// Skip past corrupt chunks (to the next block) instead of stopping.
    #[arg(long)]
    recover: bool,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    for t in &args.types {
        if !wire::record_type_names_all().any(|known| known == t) {
            let known: Vec<_> = wire::record_type_names_all().collect();
            bail!(
                "unknown record type {t:?}; known types: {}",
                known.join(", ")
            );
        }
    }
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    match inspect(args, &mut out) {
        Ok(code) => {
            out.flush().or_else(ignore_broken_pipe)?;
            Ok(code)
        }
        Err(e) if is_broken_pipe(&e) => Ok(ExitCode::SUCCESS),
        Err(e) => Err(e),
    }
}

/// A closed stdout (`inspect … | head`) ends the output quietly.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        let kind = cause
            .downcast_ref::<io::Error>()
            .map(io::Error::kind)
            .or_else(|| {
                cause
                    .downcast_ref::<serde_json::Error>()
                    .and_then(serde_json::Error::io_error_kind)
            });
        kind == Some(io::ErrorKind::BrokenPipe)
    })
}

fn ignore_broken_pipe(e: io::Error) -> io::Result<()> {
    if e.kind() == io::ErrorKind::BrokenPipe {
        Ok(())
    } else {
        Err(e)
    }
}

fn inspect(args: &Args, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let path = &args.file;
    let mut reader = LogReader::open(path).with_context(|| format!("{}", path.display()))?;
    let record_desc = descriptor_pool()
        .get_message_by_name("wandb_internal.Record")
        .expect("schema declares Record");
    let json_options = SerializeOptions::new().use_proto_field_name(true);

    let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut total = 0u64;
    let mut problems = 0u64;
    let mut buf = Vec::new();
    loop {
        let pos = match reader.next_into(&mut buf) {
            Ok(Some(pos)) => pos,
            Ok(None) => break,
            Err(err) => {
                let recoverable = matches!(err, ReadError::Corrupt { .. });
                problems += 1;
                out.flush()?;
                eprintln!(
                    "error: {}: {:#}; {total} records read before it (valid up to byte {})",
                    path.display(),
                    anyhow::Error::from(err),
                    reader.valid_len()
                );
                if args.recover && recoverable {
                    reader.recover();
                    continue;
                }
                break;
            }
        };
        total += 1;
        let scan = wire::scan_record(&buf).ok();
        let kind = scan.and_then(|s| s.record_type_name()).unwrap_or("unknown");
        *counts.entry(kind).or_default() += 1;
        if args.summary || (!args.types.is_empty() && !args.types.iter().any(|t| t == kind)) {
            continue;
        }
        write!(out, "{{\"offset\":{},\"num\":", pos.offset)?;
        match scan.and_then(|s| s.num) {
            Some(num) => write!(out, "{num}")?,
            None => write!(out, "null")?,
        }
        write!(out, ",\"type\":\"{kind}\",\"record\":")?;
        write_record_json(out, &record_desc, &buf, &json_options)?;
        writeln!(out, "}}")?;
    }

    if args.summary {
        let mut rows: Vec<_> = counts.into_iter().collect();
        rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        for (kind, n) in rows {
            writeln!(out, "{kind:<20} {n:>10}")?;
        }
        writeln!(out, "{:<20} {total:>10}", "total")?;
    }
    Ok(if problems == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The record in the protobuf JSON mapping (proto field names), or `null`
/// plus an `"error"` member when the payload does not decode.
fn write_record_json(
    out: &mut impl Write,
    desc: &MessageDescriptor,
    bytes: &[u8],
    options: &SerializeOptions,
) -> anyhow::Result<()> {
    match DynamicMessage::decode(desc.clone(), bytes) {
        Ok(msg) => {
            let mut ser = serde_json::Serializer::new(&mut *out);
            msg.serialize_with_options(&mut ser, options)?;
        }
        Err(e) => {
            write!(out, "null,\"error\":")?;
            serde_json::to_writer(&mut *out, &e.to_string())?;
        }
    }
    Ok(())
}
