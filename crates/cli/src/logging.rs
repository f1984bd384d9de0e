//! The service's process-wide log, `<cache>/wandb/logs/core-debug-<time>.log`
//! where `<cache>` is `$WANDB_CACHE_DIR`, else the user's cache directory
//! (`$XDG_CACHE_HOME`, else `~/.cache`), JSON lines, as wandb-core keeps it;
//! each run's `logs/debug-core.log` links to it. `--log-level -4` (what the
//! SDK passes under `WANDB_DEBUG`/`WANDB_CORE_DEBUG`) adds DEBUG lines.
//!
//! The binary owns the subscriber: the service library only emits
//! `tracing` events, so a program embedding it (the Rust SDK) keeps its own.

use std::fs::{self, File};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::SystemTime;

use tracing_subscriber::EnvFilter;

fn cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("WANDB_CACHE_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CACHE_HOME")
                .filter(|d| !d.is_empty())
                .map(PathBuf::from)
        })
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    // Absolute, as the runs' links to it must be.
    std::path::absolute(base).ok().map(|b| b.join("wandb"))
}

/// `-4` debug, `0` info, `4` warn, `8` error: wandb-core's `--log-level`.
fn level_name(level: i32) -> &'static str {
    match level {
        i32::MIN..=-4 => "debug",
        -3..=3 => "info",
        4..=7 => "warn",
        _ => "error",
    }
}

/// Sends `tracing` output to the process-wide log file (or stderr when no
/// cache directory is writable). `WANDB_CORE_RS_LOG` overrides the level
/// with a `tracing` filter. Returns the file's path, if there is one.
pub fn init(level: i32) -> Option<PathBuf> {
    let filter = std::env::var("WANDB_CORE_RS_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(level_name(level)));
    let stamp = humantime::format_rfc3339_seconds(SystemTime::now())
        .to_string()
        .replace(['-', ':'], "")
        .replace('T', "_")
        .trim_end_matches('Z')
        .to_string();
    let file = cache_dir().and_then(|dir| {
        let dir = dir.join("logs");
        fs::create_dir_all(&dir).ok()?;
        let path = dir.join(format!("core-debug-{stamp}.log"));
        let file = File::options().create(true).append(true).open(&path).ok()?;
        Some((path, file))
    });
    let builder = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_env_filter(filter)
        .with_current_span(false);
    match file {
        Some((path, file)) => {
            let _ = builder.with_writer(Mutex::new(file)).try_init();
            Some(path)
        }
        None => {
            let _ = builder.with_writer(std::io::stderr).try_init();
            None
        }
    }
}
