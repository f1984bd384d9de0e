//! `wandb-core export`: a run's history, summary and config as files a
//! notebook reads (Parquet, CSV, JSON Lines). The work is in the
//! `wandb-export` crate; here are the flags, the messages and the exit
//! status.

use std::path::PathBuf;
use std::process::ExitCode;

use wandb_export::{Format, Options, Problem};

/// Exit status when the files were written but hold less than the logs:
/// a damaged log (what precedes the damage is in them) or, in a wandb
/// directory, a run whose log could not be read at all.
const INCOMPLETE: u8 = 3;

#[derive(Clone, Copy, clap::ValueEnum)]
enum FormatArg {
    Parquet,
    Csv,
    Jsonl,
}

#[derive(clap::Args)]
#[command(after_help = "\
Writes the history (one row per step, `_step` first, one column per metric;
`run_id` first for a wandb directory) to OUT, and one row per run (state,
`config.*`, `summary.*`) to OUT's sibling `<stem>.runs.<ext>`.

Exit status: 0 when everything was exported (a log that ends inside a record,
from a crash or a run still being written, exports all before it); 3 when the
files were written but a log was damaged (what precedes the damage is in
them) or a run in the directory could not be read; 1 when nothing was
written.")]
pub struct Args {
    /// A run's log (`run-<id>.wandb`), a run directory, or a wandb
    /// directory (every run in it).
    path: PathBuf,
    /// Output format [default: from --out's extension, else parquet].
    #[arg(long, value_enum)]
    format: Option<FormatArg>,
    /// The history file [default: `<run-id>.<ext>` for a run,
    /// `history.<ext>` for a wandb directory, in the current directory].
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Replace output files that exist.
    #[arg(long)]
    force: bool,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let opts = Options {
        input: args.path.clone(),
        format: args.format.map(|f| match f {
            FormatArg::Parquet => Format::Parquet,
            FormatArg::Csv => Format::Csv,
            FormatArg::Jsonl => Format::Jsonl,
        }),
        out: args.out.clone(),
        force: args.force,
        batch_rows: None,
    };
    let plan = wandb_export::plan(&opts)?;
    let report = wandb_export::export(&plan)?;
    for run in &report.runs {
        let log = run.log.display();
        match &run.problem {
            None => {}
            Some(Problem::Torn(e)) => eprintln!(
                "note: {log}: {e}; the run crashed or is still being written: exported the {} rows before it",
                run.rows
            ),
            Some(Problem::Damaged(e)) => eprintln!(
                "warning: {log}: damaged ({e}): exported the {} rows before the damage, nothing after",
                run.rows
            ),
            Some(Problem::Unreadable(e)) => eprintln!("warning: {log}: left out: {e}"),
        }
    }
    let exported = report
        .runs
        .iter()
        .filter(|r| !matches!(r.problem, Some(Problem::Unreadable(_))))
        .count();
    println!(
        "{}: {} rows × {} columns from {exported} run{}",
        report.history.display(),
        report.rows,
        report.columns,
        if exported == 1 { "" } else { "s" }
    );
    println!(
        "{}: one row per run (config.*, summary.*)",
        report.runs_table.display()
    );
    Ok(if report.incomplete() {
        ExitCode::from(INCOMPLETE)
    } else {
        ExitCode::SUCCESS
    })
}
