//! LEET on a big run, ours beside W&B's `wandb-core leet`: the time to the
//! first frame and until the whole run is read, peak memory, keypress to
//! redrawn frame, and CPU while nothing changes.
//!
//! The run is written straight to a log (`wandb_leet::synthetic`: N rows
//! of 10 metrics, a console line every 100 rows, system metrics every
//! 1,000), and each binary opens it in a pseudo-terminal of 160 × 45,
//! read through a terminal emulator (`testkit::pty`), as a user's terminal
//! would show it. "Read" is when the screen says so: ours shows the row
//! count in its header and drops "loading…"; W&B's shows the last step in
//! its summary. The key is the help overlay, opened and closed (`?` for
//! ours, `h` for W&B's): the same kind of redraw in both.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use testkit::pty::Tty;
use wandb_leet::synthetic::{self, Spec};

use crate::Bench;
use crate::report::{self, Series, row, table_header};

const LIMIT: Duration = Duration::from_secs(300);
const IDLE: Duration = Duration::from_secs(5);
const KEYS: usize = 20;

#[derive(Default)]
struct Figures {
    first_frame_s: Series,
    loaded_s: Series,
    peak_rss_mib: Series,
    key_ms: Series,
    idle_cpu_pct: Series,
}

/// CPU ticks (user + system) of a process.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rfind(')').map_or("", |i| &stat[i + 1..]);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    n(11) + n(12)
}

fn ticks_per_s() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

struct Who {
    name: &'static str,
    /// Text on the first frame.
    first: &'static str,
    help_key: &'static str,
    help_text: &'static str,
}

fn measure(binary: &Path, who: &Who, log: &Path, rows: u64, home: &Path, f: &mut Figures) {
    let mut cmd = Command::new(binary);
    cmd.args(["leet", "--no-observability", "--run-file"])
        .arg(log)
        .arg(log.parent().and_then(Path::parent).unwrap_or(log))
        .env("TERM", "xterm-256color")
        .env("HOME", home)
        .env("WANDB_CONFIG_DIR", home);
    let start = Instant::now();
    let mut tty = Tty::spawn(160, 45, LIMIT, cmd);
    tty.wait_for(who.first);
    f.first_frame_s.push(start.elapsed().as_secs_f64());
    let last_step = format!("{}", rows - 1);
    let all_rows = format!("{rows} rows");
    match who.name {
        "ours" => tty.wait_until("the whole run", |s| {
            s.contains(&all_rows) && !s.contains("loading")
        }),
        _ => tty.wait_until("the last step", |s| {
            s.lines()
                .any(|l| l.contains("_step") && l.contains(&last_step))
        }),
    };
    f.loaded_s.push(start.elapsed().as_secs_f64());
    let pid = tty.child.id();
    // Idle: nothing changes on screen or on disk.
    let before = cpu_ticks(pid);
    std::thread::sleep(IDLE);
    let idle = (cpu_ticks(pid) - before) as f64 / ticks_per_s() / IDLE.as_secs_f64();
    f.idle_cpu_pct.push(idle * 100.0);
    for _ in 0..KEYS {
        let t = Instant::now();
        tty.send(who.help_key);
        tty.wait_for(who.help_text);
        f.key_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        tty.send(who.help_key);
        tty.wait_until("the help closed", |s| !s.contains(who.help_text));
        f.key_ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    f.peak_rss_mib
        .push(crate::process::proc_status_kib(pid, "VmHWM:") as f64 / 1024.0);
    tty.send("q");
    let _ = tty.exit_status();
}

pub fn report(b: &Bench<'_>) -> anyhow::Result<()> {
    let rows = b.args.leet_rows;
    let dir = b.scratch.join("leet");
    let _ = std::fs::remove_dir_all(&dir);
    let wandb = dir.join("wandb");
    let mut spec = Spec::new("big", rows);
    spec.metrics = 10;
    spec.console_every = 100;
    spec.stats_every = 1000;
    let t = Instant::now();
    let log = synthetic::write_run(&wandb, spec)?;
    let write_s = t.elapsed().as_secs_f64();
    let size = std::fs::metadata(&log)?.len();
    eprintln!(
        "wrote {} ({} MiB) in {write_s:.1}s",
        log.display(),
        size >> 20
    );

    let whos = [
        Who {
            name: "ours",
            first: "LEET",
            help_key: "?",
            help_text: "pin the run",
        },
        Who {
            name: "theirs",
            first: "Metrics",
            help_key: "h",
            help_text: "Toggle this help screen",
        },
    ];
    let mut figures = [Figures::default(), Figures::default()];
    for rep in 0..b.args.repeat {
        for (i, (who, (_, binary))) in whos.iter().zip(b.binaries).enumerate() {
            eprintln!("leet {} (run {})", who.name, rep + 1);
            measure(binary, who, &log, rows, &dir, &mut figures[i]);
        }
    }
    let [ours, theirs] = &figures;
    let mut md = report::heading("LEET on a big run, wandb-core-rs beside wandb-core 0.31.0");
    writeln!(
        md,
        "\nA run of {rows} rows × 10 metrics (a console line every 100 rows, system metrics every \
         1,000), written straight to its log: {:.1} MiB. Each binary opens it with \
         `wandb-core leet --run-file LOG DIR` in a 160 × 45 pseudo-terminal; {} runs each, \
         alternating. Medians, with min–max.\n",
        size as f64 / 1048576.0,
        b.args.repeat
    )?;
    table_header(&mut md, "");
    row(
        &mut md,
        "first frame (s)",
        &ours.first_frame_s,
        &theirs.first_frame_s,
        3,
    );
    row(
        &mut md,
        "whole run read and drawn (s)",
        &ours.loaded_s,
        &theirs.loaded_s,
        3,
    );
    row(
        &mut md,
        "peak RSS (MiB)",
        &ours.peak_rss_mib,
        &theirs.peak_rss_mib,
        1,
    );
    row(
        &mut md,
        "key to redrawn frame (ms)",
        &ours.key_ms,
        &theirs.key_ms,
        1,
    );
    row(
        &mut md,
        "CPU while idle (% of a core)",
        &ours.idle_cpu_pct,
        &theirs.idle_cpu_pct,
        2,
    );
    writeln!(
        md,
        "\nKey to frame: {KEYS} openings and closings of the help overlay each run, timed from \
         the key written to the pty until the screen shows the change (the emulator is polled \
         every 2 ms, which bounds the resolution). Idle: CPU over {} s after the run is read, \
         nothing changing.\n\nCommand: `wandb-bench --leet --leet-rows {rows}`.",
        IDLE.as_secs()
    )?;
    report::save(b, "leet.md", &md)?;
    print!("{md}");
    Ok(())
}
