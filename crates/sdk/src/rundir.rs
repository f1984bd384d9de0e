//! The run's directory and the settings the service gets at `inform_init`.
//!
//! The SDK, not the service, creates the run directory (the service only
//! writes into it; W&B's fails to open the transaction log when it is
//! missing), with the layout and the `settings` fields the Python SDK uses,
//! so either service writes the same files and `wandb sync` finds them.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use wandb_proto::pb;

use crate::error::{Error, Result};
use crate::settings::{Mode, Resolved};

/// Paths of one run.
#[derive(Debug, Clone)]
pub(crate) struct RunDir {
    pub wandb_dir: PathBuf,
    pub sync_dir: PathBuf,
    pub sync_file: PathBuf,
    pub files_dir: PathBuf,
    pub log_dir: PathBuf,
    pub timespec: String,
    pub start_time: f64,
}

impl RunDir {
    /// Creates `<root>/wandb/<offline-run|run>-<YYYYMMDD_HHMMSS>-<id>/` with
    /// `files/`, `logs/`, `tmp/code/`, and the `latest-run` and log symlinks.
    pub fn create(s: &Resolved) -> Result<Self> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let timespec = local_timespec(now.as_secs() as i64);
        let wandb_dir = s.root_dir.join("wandb");
        let run_mode = run_mode(s.mode);
        let name = format!("{run_mode}-{timespec}-{}", s.run_id);
        let sync_dir = wandb_dir.join(&name);
        let dir = RunDir {
            sync_file: sync_dir.join(format!("run-{}.wandb", s.run_id)),
            files_dir: sync_dir.join("files"),
            log_dir: sync_dir.join("logs"),
            wandb_dir,
            sync_dir,
            timespec,
            start_time: now.as_secs_f64(),
        };
        for d in [
            &dir.files_dir,
            &dir.log_dir,
            &dir.sync_dir.join("tmp").join("code"),
        ] {
            std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
        }
        // Convenience links, as the Python SDK makes them; failing to make
        // one (another process racing, a file system without links) is not
        // worth failing the run for.
        let links = [
            ("latest-run", PathBuf::from(&name)),
            ("debug.log", Path::new(&name).join("logs").join("debug.log")),
            (
                "debug-internal.log",
                Path::new(&name).join("logs").join("debug-internal.log"),
            ),
        ];
        for (link, target) in links {
            let link = dir.wandb_dir.join(link);
            let _ = std::fs::remove_file(&link);
            let _ = std::os::unix::fs::symlink(target, &link);
        }
        Ok(dir)
    }

    /// The `Settings` message for `inform_init`.
    pub fn settings(&self, s: &Resolved) -> pb::Settings {
        let offline = s.mode != Mode::Online;
        let str = |v: &Path| Some(v.to_string_lossy().into_owned());
        let exe = std::env::current_exe().ok();
        let program = exe
            .as_deref()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned());
        pb::Settings {
            api_key: s.api_key.clone(),
            base_url: Some(s.base_url.clone()),
            offline: Some(offline),
            mode: Some(
                if offline {
                    "offline"
                } else if s.shared {
                    "shared"
                } else {
                    "online"
                }
                .into(),
            ),
            shared: Some(s.shared),
            x_label: s.label.clone(),
            run_mode: Some(run_mode(s.mode).into()),
            run_id: Some(s.run_id.clone()),
            project: s.project.clone(),
            entity: s.entity.clone(),
            run_name: s.name.clone(),
            run_notes: s.notes.clone(),
            run_tags: Some(pb::ListStringValue {
                value: s.tags.clone(),
            }),
            run_group: s.group.clone(),
            run_job_type: s.job_type.clone(),
            resume: s.resume_str().map(String::from),
            root_dir: str(&s.root_dir),
            wandb_dir: str(&self.wandb_dir),
            sync_dir: str(&self.sync_dir),
            sync_file: str(&self.sync_file),
            log_dir: str(&self.log_dir),
            log_internal: str(&self.log_dir.join("debug-internal.log")),
            log_user: str(&self.log_dir.join("debug.log")),
            timespec: Some(self.timespec.clone()),
            start_datetime: Some(self.timespec.clone()),
            x_start_time: Some(self.start_time),
            program: program.clone(),
            program_abspath: exe.as_deref().and_then(str),
            x_executable: exe.as_deref().and_then(str),
            host: Some(hostname()),
            os: Some(os_string()),
            x_primary: Some(s.primary),
            // Console capture belongs to the Python SDK; a Rust program's
            // stdout is its own.
            console: Some("off".into()),
            x_save_requirements: Some(false),
            disable_git: Some(true),
            save_code: Some(false),
            x_disable_stats: Some(s.disable_stats),
            x_stats_sampling_interval: Some(s.stats_sampling_interval),
            x_stats_pid: Some(std::process::id() as i32),
            x_stats_disk_paths: Some(pb::ListStringValue {
                value: vec!["/".into()],
            }),
            x_disable_machine_info: Some(false),
            x_disable_meta: Some(false),
            x_update_finish_state: Some(s.update_finish_state),
            allow_offline_artifacts: Some(true),
            x_history_value_encoding: Some("json".into()),
            x_transaction_log_flush_interval: Some(15.0),
            x_file_stream_no_gzip: Some(false),
            init_timeout: Some(s.init_timeout.as_secs_f64()),
            finish_timeout: Some(0.0),
            silent: Some(true),
            ..Default::default()
        }
    }
}

fn run_mode(mode: Mode) -> &'static str {
    if mode == Mode::Online {
        "run"
    } else {
        "offline-run"
    }
}

/// `YYYYMMDD_HHMMSS` in local time, as the Python SDK names run directories.
fn local_timespec(secs: i64) -> String {
    // SAFETY: localtime_r writes into the zeroed `tm` we own.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        let t = secs as libc::time_t;
        libc::localtime_r(&t, &mut tm);
        tm
    };
    format!(
        "{:04}{:02}{:02}_{:02}{:02}{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

pub(crate) fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// `Linux-<release>-<machine>`, like Python's `platform.platform()` prefix.
fn os_string() -> String {
    // SAFETY: uname fills the zeroed struct we own.
    let u = unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut u) != 0 {
            return std::env::consts::OS.to_string();
        }
        u
    };
    let field = |f: &[libc::c_char]| {
        let bytes: Vec<u8> = f
            .iter()
            .take_while(|c| **c != 0)
            .map(|c| *c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    format!(
        "{}-{}-{}",
        field(&u.sysname),
        field(&u.release),
        field(&u.machine)
    )
}
