//! Logging a directory as an artifact through the Python SDK, to the
//! backend stand-in: the first time (every file uploaded) and again
//! unchanged (nothing uploaded), with our service and with W&B's.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

use crate::Bench;
use crate::process::Service;
use crate::report::{self, Series, row, table_header};
use std::fmt::Write as _;

const KEY: &str = "benchartifactskey0123456789012345678901234";

const SCRIPT: &str = r#"
import os, sys, time, wandb
data = sys.argv[1]
run = wandb.init(project="bench-art", settings=wandb.Settings(x_disable_stats=True))
out = []
for attempt in range(2):
    t0 = time.perf_counter()
    art = wandb.Artifact("ckpt", "model")
    art.add_dir(data)
    t1 = time.perf_counter()
    run.log_artifact(art)
    art.wait()
    t2 = time.perf_counter()
    out.append((t1 - t0, t2 - t1, art.version))
run.finish()
print("TIMES", " ".join(f"{a:.3f},{b:.3f},{v}" for a, b, v in out))
"#;

/// Seconds for: adding the files (SDK hashing), then log_artifact + wait,
/// the first time and again; the service's CPU seconds in all.
#[derive(Debug, Clone, Copy)]
pub struct ArtifactRun {
    pub add_s: [f64; 2],
    pub save_s: [f64; 2],
    pub service_cpu_s: f64,
}

/// `files` files of `size` bytes under `dir`.
pub fn make_dir(dir: &Path, files: usize, size: usize) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut block = vec![0u8; size];
    for i in 0..files {
        // Distinct content per file (no dedup within the directory).
        for (j, b) in block.iter_mut().enumerate() {
            *b = (j.wrapping_mul(31) ^ i.wrapping_mul(7919)) as u8;
        }
        block[..8].copy_from_slice(&(i as u64).to_le_bytes());
        std::fs::write(dir.join(format!("part-{i:04}.bin")), &block)?;
    }
    Ok(())
}

pub fn run(
    service: &Path,
    python: &Path,
    data: &Path,
    scratch: &Path,
) -> anyhow::Result<ArtifactRun> {
    let _ = std::fs::remove_dir_all(scratch);
    std::fs::create_dir_all(scratch)?;
    let standin = crate::standin::fresh(KEY, std::time::Duration::ZERO)?;
    let svc = Service::start(service, scratch, &[], &[], None)?;
    let out = Command::new(python)
        .args(["-c", SCRIPT])
        .arg(data)
        .current_dir(scratch)
        .env("WANDB_SERVICE", svc.token())
        .env("WANDB_BASE_URL", &standin.base_url)
        .env("WANDB_API_KEY", KEY)
        .env("WANDB_MODE", "online")
        .env("WANDB_SILENT", "true")
        .env("WANDB_ERROR_REPORTING", "false")
        .env("HOME", scratch)
        .env("WANDB_DIR", scratch)
        .env("WANDB_CACHE_DIR", scratch.join("cache"))
        .env("WANDB_DATA_DIR", scratch.join("data"))
        .stdin(Stdio::null())
        .output()
        .context("run python")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!("python: {text}\n{}", String::from_utf8_lossy(&out.stderr));
    }
    let (usage, _) = svc.teardown()?;
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("TIMES "))
        .context("no TIMES line")?;
    let mut add_s = [0.0; 2];
    let mut save_s = [0.0; 2];
    for (i, part) in line.split_whitespace().take(2).enumerate() {
        let f: Vec<&str> = part.split(',').collect();
        add_s[i] = f[0].parse()?;
        save_s[i] = f[1].parse()?;
        if f[2] != "v0" {
            bail!(
                "attempt {i} made version {}, want v0 (unchanged content)",
                f[2]
            );
        }
    }
    Ok(ArtifactRun {
        add_s,
        save_s,
        service_cpu_s: usage.cpu_s,
    })
}

/// Logging a directory as an artifact, first and unchanged, ours and theirs.
pub fn report(bench: &Bench) -> anyhow::Result<()> {
    let (files, size) = if bench.args.quick {
        (20, 100_000)
    } else {
        (1000, 1 << 20)
    };
    let data = bench.scratch.join("artifact-data");
    let _ = std::fs::remove_dir_all(&data);
    make_dir(&data, files, size)?;
    let mut figures: [[Series; 5]; 2] = Default::default();
    for r in 0..bench.args.repeat {
        for (i, (name, bin)) in bench.binaries.iter().enumerate() {
            eprintln!("artifacts, {name}, run {}…", r + 1);
            let run = run(
                bin,
                &bench.args.python,
                &data,
                &bench.scratch.join("artifact-run"),
            )?;
            for (s, x) in figures[i].iter_mut().zip([
                run.save_s[0],
                run.save_s[1],
                run.add_s[0],
                run.add_s[1],
                run.service_cpu_s,
            ]) {
                s.push(x);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&data);
    let _ = std::fs::remove_dir_all(bench.scratch.join("artifact-run"));
    let mut md = report::heading(
        "Logging a directory as an artifact, wandb-core-rs beside wandb-core 0.31.0",
    );
    let _ = writeln!(
        md,
        "- {files} files of {size} bytes ({:.2} GB), `wandb.Artifact.add_dir` + `run.log_artifact` + `wait()` \
         through the Python SDK to the backend stand-in (in the bench process), then the same directory again \
         (unchanged: the server has it, nothing is uploaded); median [min–max] of {} run(s)\n",
        (files * size) as f64 / 1e9,
        bench.args.repeat
    );
    table_header(&mut md, "figure (s)");
    row(
        &mut md,
        "log_artifact + wait, first time",
        &figures[0][0],
        &figures[1][0],
        2,
    );
    row(
        &mut md,
        "log_artifact + wait, unchanged",
        &figures[0][1],
        &figures[1][1],
        2,
    );
    row(
        &mut md,
        "add_dir (SDK hashing), first time",
        &figures[0][2],
        &figures[1][2],
        2,
    );
    row(
        &mut md,
        "add_dir, unchanged",
        &figures[0][3],
        &figures[1][3],
        2,
    );
    row(
        &mut md,
        "service CPU, whole run",
        &figures[0][4],
        &figures[1][4],
        2,
    );
    std::fs::write(bench.out_dir.join("artifacts.md"), &md)?;
    print!("{md}");
    Ok(())
}
