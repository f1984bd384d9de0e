//! Scaling: 1 to 32 SDK processes into one shared service, as the
//! workers of a node or the agents of a sweep share one. Total rows/s,
//! the service's CPU per 100k rows and its peak RSS, ours and the
//! reference's from the same run, as a table and as plots. On a machine
//! with few cores the Python clients take most of the CPU; the service's
//! own CPU and memory are the figures that are the service's.

use std::fmt::Write as _;

use crate::Bench;
use crate::report;
use crate::sdk::SdkRun;

pub fn report(b: &Bench) -> anyhow::Result<()> {
    let (counts, rows): (&[usize], u64) = if b.args.quick {
        (&[1, 2, 4], 1_000)
    } else {
        (&b.args.scaling_counts, b.args.load_rows)
    };
    let mut results: Vec<[SdkRun; 2]> = Vec::new();
    for &n in counts {
        let mut pair = Vec::new();
        for (name, bin) in &b.binaries {
            eprintln!("scaling: {n} SDK processes × {rows} rows, {name}…");
            let dir = b.scratch.join(format!("scaling-{name}"));
            pair.push(crate::load::run(bin, &b.args.python, &dir, n, rows)?);
        }
        let theirs = pair.pop().expect("two services");
        let ours = pair.pop().expect("two services");
        results.push([ours, theirs]);
    }
    let mut md = report::heading(
        "Scaling: SDK processes sharing one service, wandb-core-rs beside wandb-core 0.31.0",
    );
    let _ = writeln!(
        md,
        "- N Python processes at once, each `wandb.init()` (offline, attached to one service \
         through `WANDB_SERVICE`), {rows} × `run.log` of 10 scalars, `finish()`; every run's \
         log checked to hold all its rows. rows/s: all processes together over the slowest \
         one's logging loop. One run per point, the services alternating.\n\n\
         | processes | rows/s ours | theirs | ratio | CPU s / 100k rows ours | theirs | ratio \
         | peak RSS MiB ours | theirs | ratio |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for (n, [o, t]) in counts.iter().zip(&results) {
        let _ = writeln!(
            md,
            "| {n} | {:.0} | {:.0} | {:.2} | {:.3} | {:.3} | {:.3} | {:.1} | {:.1} | {:.3} |",
            o.logs_per_s,
            t.logs_per_s,
            o.logs_per_s / t.logs_per_s,
            o.cpu_per_100k(),
            t.cpu_per_100k(),
            o.cpu_per_100k() / t.cpu_per_100k(),
            o.usage.peak_rss_mib,
            t.usage.peak_rss_mib,
            o.usage.peak_rss_mib / t.usage.peak_rss_mib,
        );
    }
    let ns: Vec<u64> = counts.iter().map(|&n| n as u64).collect();
    let pick = |i: usize, f: fn(&SdkRun) -> f64| -> Vec<f64> {
        results.iter().map(|pair| f(&pair[i])).collect()
    };
    /// A plot: its file, title, unit and figure.
    type Plot = (&'static str, &'static str, &'static str, fn(&SdkRun) -> f64);
    let figures: [Plot; 3] = [
        (
            "scaling-throughput.svg",
            "Rows/s, all processes",
            "rows/s",
            |r| r.logs_per_s,
        ),
        (
            "scaling-cpu.svg",
            "Service CPU per 100k rows",
            "CPU s",
            SdkRun::cpu_per_100k,
        ),
        ("scaling-memory.svg", "Service peak RSS", "MiB", |r| {
            r.usage.peak_rss_mib
        }),
    ];
    let _ = writeln!(md);
    for (file, title, unit, f) in figures {
        report::plot(
            &b.out_dir.join(file),
            title,
            "SDK processes",
            unit,
            &ns,
            &pick(0, f),
            &pick(1, f),
        )?;
        let _ = writeln!(md, "![{title}]({file})");
    }
    let _ = writeln!(md, "\n{}", report::machine());
    report::save(b, "scaling.md", &md)
}
