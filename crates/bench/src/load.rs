//! Many real SDK processes sharing one service, as a node of data-parallel
//! workers or a sweep agent runs them: each process `wandb.init()`s its
//! own offline run, logs its rows and finishes, all at once, through one
//! service attached with `WANDB_SERVICE` (`wandb-core start` does the same
//! for users). Every run's log is checked to hold all its rows.
//!
//! On a small machine this measures Python as much as the service: 64
//! interpreters share the CPUs with it. The service's own CPU and memory
//! are the figures that are the service's.

use std::fmt::Write as _;
use std::path::Path;

use crate::Bench;
use crate::report::{self, Series, row, table_header};
use crate::sdk::{self, SdkRun};

/// One round: `processes` clients × `rows`, then every log checked.
pub fn run(
    binary: &Path,
    python: &Path,
    dir: &Path,
    processes: usize,
    rows: u64,
) -> anyhow::Result<SdkRun> {
    let _ = std::fs::remove_dir_all(dir);
    let result = sdk::run(binary, python, dir, rows, processes, false, None)?;
    for i in 0..processes {
        // The SDK links each process's run directory as `latest-run`.
        let log = dir.join(format!("client{i}/wandb/latest-run/run-bench-{i}.wandb"));
        // Fails unless every row is there, in order, with the exit.
        crate::ingest::verify(&log, rows)?;
    }
    let _ = std::fs::remove_dir_all(dir);
    Ok(result)
}

pub fn report(bench: &Bench) -> anyhow::Result<()> {
    let (processes, rows) = if bench.args.quick {
        (4, 1_000)
    } else {
        (bench.args.load_processes, bench.args.load_rows)
    };
    let mut results: [Vec<SdkRun>; 2] = [Vec::new(), Vec::new()];
    for _ in 0..bench.args.repeat {
        for (i, (name, bin)) in bench.binaries.iter().enumerate() {
            eprintln!("{processes} SDK processes × {rows} rows, {name}…");
            let dir = bench.scratch.join(format!("load-{name}"));
            results[i].push(run(bin, &bench.args.python, &dir, processes, rows)?);
        }
    }
    let mut md = report::heading(&format!(
        "{processes} SDK processes sharing one service, wandb-core-rs beside wandb-core 0.31.0"
    ));
    let _ = writeln!(
        md,
        "- {processes} Python processes at once, each `wandb.init()` (offline, attached to one \
         service through `WANDB_SERVICE`), {rows} × `run.log` of 10 scalars, `finish()`; every \
         run's log checked to hold all {rows} rows. `run.log` calls/s: all processes together, \
         over the slowest one's logging loop. Median [min–max] of {} round(s), the two \
         services alternating.\n",
        bench.args.repeat
    );
    table_header(&mut md, "figure");
    let series = |i: usize, f: &dyn Fn(&SdkRun) -> f64| Series(results[i].iter().map(f).collect());
    let figures: [report::Figure<SdkRun>; 5] = [
        ("`run.log` calls/s, all processes", |r| r.logs_per_s, 0),
        ("service CPU, whole round (s)", |r| r.usage.cpu_s, 2),
        ("service CPU s per 100k rows", |r| r.cpu_per_100k(), 3),
        ("service peak RSS (MiB)", |r| r.usage.peak_rss_mib, 1),
        ("slowest `finish()` (s)", |r| r.finish.as_secs_f64(), 2),
    ];
    for (label, f, digits) in figures {
        row(&mut md, label, &series(0, &f), &series(1, &f), digits);
    }
    let path = bench.out_dir.join("load.md");
    std::fs::write(&path, &md)?;
    eprintln!("{md}");
    eprintln!("written to {}", path.display());
    Ok(())
}
