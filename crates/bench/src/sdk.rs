//! Through the real Python SDK: `wandb.init()`, N × `run.log` of ten
//! scalars, `finish()`, in one process or in several sharing one service
//! (attached through `WANDB_SERVICE`, so the service process is the one we
//! measure); offline, or online against a backend ([`Online`]).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::process::{Service, Usage};

const WORKLOAD: &str = r#"
import os, sys, time, wandb
rows = int(os.environ["BENCH_ROWS"])
t0 = time.perf_counter()
run = wandb.init(project="bench")
t1 = time.perf_counter()
for i in range(rows):
    run.log({f"m{k}": i * 0.001 + k for k in range(10)})
t2 = time.perf_counter()
run.finish()
t3 = time.perf_counter()
print(f"{t1 - t0} {t2 - t1} {t3 - t2}")
"#;

#[derive(Debug, Clone)]
pub struct SdkRun {
    pub processes: usize,
    pub rows_per_process: u64,
    /// Rows logged per second, all processes together (wall time of the
    /// logging phase of the slowest).
    pub logs_per_s: f64,
    pub init: Duration,
    pub finish: Duration,
    pub usage: Usage,
}

impl SdkRun {
    pub fn cpu_per_100k(&self) -> f64 {
        self.usage.cpu_s * 100_000.0 / (self.rows_per_process * self.processes as u64) as f64
    }
}

/// The backend of an online run.
pub struct Online<'a> {
    pub base_url: &'a str,
    pub api_key: &'a str,
}

/// With `pinned`, the service runs on CPU 1 and the clients on CPU 0, so
/// neither's scheduling shapes the other's figures. Client `i` logs to run
/// `bench-<i>`.
pub fn run(
    binary: &Path,
    python: &Path,
    dir: &Path,
    rows: u64,
    processes: usize,
    pinned: bool,
    online: Option<&Online<'_>>,
) -> anyhow::Result<SdkRun> {
    std::fs::create_dir_all(dir)?;
    let cache = dir.join("cache");
    let service = Service::start(
        binary,
        dir,
        &[],
        &[("WANDB_CACHE_DIR", &cache)],
        pinned.then_some(1),
    )?;
    let token = service.token();
    let started = Instant::now();
    let children: Vec<_> = (0..processes)
        .map(|i| {
            let work = dir.join(format!("client{i}"));
            std::fs::create_dir_all(&work)?;
            let mut cmd = Command::new(python);
            if pinned {
                crate::process::pin(&mut cmd, 0);
            }
            match online {
                Some(o) => cmd
                    .env("WANDB_MODE", "online")
                    .env("WANDB_BASE_URL", o.base_url)
                    .env("WANDB_API_KEY", o.api_key),
                None => cmd.env("WANDB_MODE", "offline"),
            };
            cmd.args(["-c", WORKLOAD])
                .current_dir(&work)
                .env("WANDB_SERVICE", &token)
                .env("WANDB_DIR", &work)
                .env("WANDB_SILENT", "true")
                .env("WANDB_CACHE_DIR", &cache)
                .env("HOME", &work)
                .env("BENCH_ROWS", rows.to_string())
                .env("WANDB_RUN_ID", format!("bench-{i}"))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .context("start a Python client")
        })
        .collect::<anyhow::Result<_>>()?;
    let (mut init, mut log_phase, mut finish) = (0f64, 0f64, 0f64);
    for child in children {
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!("client failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let t: Vec<f64> = text
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        if t.len() != 3 {
            bail!("unexpected client output {text:?}");
        }
        init = init.max(t[0]);
        log_phase = log_phase.max(t[1]);
        finish = finish.max(t[2]);
    }
    let _ = started;
    let (usage, _) = service.teardown()?;
    Ok(SdkRun {
        processes,
        rows_per_process: rows,
        logs_per_s: (rows * processes as u64) as f64 / log_phase,
        init: Duration::from_secs_f64(init),
        finish: Duration::from_secs_f64(finish),
        usage,
    })
}
