//! Start-up and idle: spawn to complete port file, resident memory of an
//! idle service, binary size.

use std::path::Path;
use std::time::Duration;

use crate::process::{Service, proc_status_kib};

#[derive(Debug, Clone, Copy)]
pub struct Startup {
    pub spawn_to_port_file: Duration,
    pub idle_rss_mib: f64,
}

pub fn run(binary: &Path, dir: &Path) -> anyhow::Result<Startup> {
    std::fs::create_dir_all(dir)?;
    let cache = dir.join("cache");
    let service = Service::start(binary, dir, &[], &[("WANDB_CACHE_DIR", &cache)], None)?;
    let spawn_to_port_file = service.startup;
    // Let it settle, then read what it holds while idle.
    std::thread::sleep(Duration::from_millis(500));
    let idle_rss_mib = proc_status_kib(service.pid(), "VmRSS:") as f64 / 1024.0;
    service.teardown()?;
    Ok(Startup {
        spawn_to_port_file,
        idle_rss_mib,
    })
}

pub fn binary_size_mb(binary: &Path) -> f64 {
    std::fs::metadata(binary)
        .map(|m| m.len() as f64 / 1e6)
        .unwrap_or(0.0)
}
