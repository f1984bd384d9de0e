//! Running a service process under measurement: start it as our child
//! (`--pid` is us), find its socket from the port file, sample its peak
//! RSS while it runs, and collect its CPU time when it exits.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use prost::Message;
use wandb_proto::frame::encode_frame;
use wandb_proto::pb;

/// A `/proc/<pid>/status` field in KiB.
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// A service under measurement.
pub struct Service {
    pub child: Child,
    pub socket: PathBuf,
    /// Spawn to complete port file.
    pub startup: Duration,
    peak_kib: Arc<AtomicU64>,
    stop_sampling: Arc<AtomicBool>,
    sampler: Option<JoinHandle<()>>,
}

/// What a finished service cost.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    /// User + system CPU seconds of the service process.
    pub cpu_s: f64,
    /// Peak resident set (the kernel's high-water mark), MiB.
    pub peak_rss_mib: f64,
}

impl Service {
    /// Starts `binary` with a port file in `dir`, extra flags after; only on
    /// `cpu` when given.
    pub fn start(
        binary: &Path,
        dir: &Path,
        extra: &[&str],
        env: &[(&str, &Path)],
        cpu: Option<usize>,
    ) -> anyhow::Result<Self> {
        let port_file = dir.join("port.txt");
        let _ = std::fs::remove_file(&port_file);
        let mut cmd = Command::new(binary);
        cmd.arg("--port-filename")
            .arg(&port_file)
            .arg("--pid")
            .arg(std::process::id().to_string())
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        if let Some(cpu) = cpu {
            pin(&mut cmd, cpu);
        }
        let t0 = Instant::now();
        let child = cmd
            .spawn()
            .with_context(|| format!("start {}", binary.display()))?;
        let socket = loop {
            if let Ok(text) = std::fs::read_to_string(&port_file)
                && text.ends_with("EOF")
                && let Some(path) = text.lines().find_map(|l| l.strip_prefix("unix="))
            {
                break PathBuf::from(path);
            }
            if t0.elapsed() > Duration::from_secs(30) {
                bail!("{} wrote no port file", binary.display());
            }
            std::thread::sleep(Duration::from_micros(100));
        };
        let startup = t0.elapsed();
        let peak_kib = Arc::new(AtomicU64::new(0));
        let stop_sampling = Arc::new(AtomicBool::new(false));
        let sampler = {
            let (peak, stop, pid) = (peak_kib.clone(), stop_sampling.clone(), child.id());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    peak.fetch_max(proc_status_kib(pid, "VmHWM:"), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
        };
        Ok(Self {
            child,
            socket,
            startup,
            peak_kib,
            stop_sampling,
            sampler: Some(sampler),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn connect(&self) -> anyhow::Result<UnixStream> {
        UnixStream::connect(&self.socket)
            .with_context(|| format!("connect to {}", self.socket.display()))
    }

    /// The `WANDB_SERVICE` token for this service.
    pub fn token(&self) -> String {
        format!("3-{}-unix-{}", std::process::id(), self.socket.display())
    }

    /// Sends `inform_teardown` on a new connection and waits for the exit;
    /// returns the usage and how long the exit took.
    pub fn teardown(mut self) -> anyhow::Result<(Usage, Duration)> {
        let mut c = self.connect()?;
        let mut frame = Vec::new();
        encode_frame(&teardown().encode_to_vec(), &mut frame);
        let t0 = Instant::now();
        c.write_all(&frame)?;
        let usage = self.wait()?;
        Ok((usage, t0.elapsed()))
    }

    /// Waits for the process to exit; its CPU time comes from wait4().
    pub fn wait(&mut self) -> anyhow::Result<Usage> {
        let pid = self.child.id() as libc::pid_t;
        self.peak_kib
            .fetch_max(proc_status_kib(pid as u32, "VmHWM:"), Ordering::Relaxed);
        let mut status = 0;
        // SAFETY: an all-zero rusage is a valid value to be overwritten.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: waits for our own child, with valid out-pointers.
        let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if rc != pid {
            bail!("wait4 failed: {}", std::io::Error::last_os_error());
        }
        self.stop_sampling.store(true, Ordering::Relaxed);
        if let Some(s) = self.sampler.take() {
            let _ = s.join();
        }
        let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        Ok(Usage {
            cpu_s: secs(usage.ru_utime) + secs(usage.ru_stime),
            peak_rss_mib: self.peak_kib.load(Ordering::Relaxed) as f64 / 1024.0,
        })
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop_sampling.store(true, Ordering::Relaxed);
        if self.sampler.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs the command's process on one CPU only.
pub fn pin(cmd: &mut Command, cpu: usize) {
    use std::os::unix::process::CommandExt;
    // SAFETY: sched_setaffinity is async-signal-safe; the set is built on
    // the child's own stack before exec.
    unsafe {
        cmd.pre_exec(move || {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

pub fn teardown() -> pb::ServerRequest {
    pb::ServerRequest {
        server_request_type: Some(pb::server_request::ServerRequestType::InformTeardown(
            Default::default(),
        )),
        ..Default::default()
    }
}

/// Reads frames from a connection until one answers `request_id`.
pub fn wait_answer(conn: &mut UnixStream, request_id: &str) -> anyhow::Result<pb::ServerResponse> {
    loop {
        let mut header = [0u8; 5];
        conn.read_exact(&mut header).context("read an answer")?;
        let len = u32::from_le_bytes(header[1..].try_into().unwrap()) as usize;
        let mut payload = vec![0; len];
        conn.read_exact(&mut payload)?;
        let resp = pb::ServerResponse::decode(&payload[..])?;
        if resp.request_id == request_id {
            return Ok(resp);
        }
    }
}
