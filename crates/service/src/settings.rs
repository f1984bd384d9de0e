//! The run settings a stream works from.
//!
//! `inform_init` carries the SDK's whole `Settings` message (~200 optional
//! fields); this is the typed view of the ones the service acts on, with
//! wandb's defaults, validated once when the stream starts.

use std::path::PathBuf;
use std::time::Duration;

use wandb_proto::pb;

/// Settings that make a run impossible to serve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error("settings have no run_id")]
    MissingRunId,
    #[error("run_id {0:?} is not a valid run ID (letters, digits, '-' and '_' only)")]
    InvalidRunId(String),
    #[error("settings have no sync_file (where the transaction log goes)")]
    MissingSyncFile,
}

/// Whether console output is captured (`output.log`), from the `console`
/// setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsoleCapture {
    Off,
    On,
}

/// How far a record the service has taken is on its way to disk before the
/// service goes on. The SDK's `run.log` expects no answer, so a record in
/// the service's queues when the service is killed is lost; users who
/// would rather pay throughput than lose any choose a stricter mode
/// (`WANDB_CORE_DURABILITY`, read when the service starts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Durability {
    /// Records reach the file whenever the writer catches up with its
    /// queue, or at the flush policy's interval under load.
    #[default]
    Buffered,
    /// Every record the run has taken is written to the file (handed to
    /// the OS) before the run takes more, and before any later request is
    /// answered: a SIGKILL of the service loses nothing it took.
    Written,
    /// As `Written`, and fsynced too: nothing taken is lost even to a power
    /// failure or a kernel crash.
    Synced,
}

impl std::str::FromStr for Durability {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "buffered" => Ok(Self::Buffered),
            "written" => Ok(Self::Written),
            "synced" => Ok(Self::Synced),
            _ => Err(format!(
                "invalid durability {s:?}: expected buffered, written or synced"
            )),
        }
    }
}

/// The typed view of a run's settings.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// The full message, returned to processes that attach to the run.
    pub raw: pb::Settings,
    pub run_id: String,
    pub offline: bool,
    /// `run-<id>.wandb`.
    pub sync_file: PathBuf,
    /// Where the transaction log is written: `sync_file`, except online
    /// with `x_skip_transaction_log`, where the log is still the sender's
    /// queue (so memory stays bounded however slow the network) but lies
    /// under a hidden name, `.run-<id>.wandb.queue`, and is removed once
    /// the run is sent. A run not sent in full keeps it as `sync_file`,
    /// for `wandb sync`.
    pub log_file: PathBuf,
    /// The run directory; run files go to `<sync_dir>/files`.
    pub sync_dir: PathBuf,
    pub log_dir: Option<PathBuf>,
    pub log_internal: Option<PathBuf>,
    pub console: ConsoleCapture,
    /// `output.log`, or `output_<label>.log` with a label.
    pub output_file_name: String,
    /// Whether this writer owns the run-level files (requirements, config,
    /// summary); false for secondary writers in shared mode.
    pub primary: bool,
    pub shared: bool,
    pub save_requirements: bool,
    pub skip_transaction_log: bool,
    pub server_side_derived_summary: bool,
    pub silent: bool,
    pub start_time: Option<f64>,
    pub flush_interval: Option<Duration>,
    /// Set by the service, not the SDK (see [`Durability`]).
    pub durability: Durability,
    /// `ignore_globs`: run files that are never uploaded.
    pub ignore: IgnoreGlobs,
}

/// The `ignore_globs` setting, matched against a run file's path relative
/// to `files/` (wandb's own files included, as wandb-core does).
///
/// Matching follows Go's `filepath.Match`, which wandb-core uses: `*` and
/// `?` stop at `/`, `[!a]`/`[^a]` negate a class. A pattern that does not
/// compile ignores nothing (Go's match fails with an error there). One
/// difference is left: globset reads `{a,b}` as alternatives, Go as text.
#[derive(Debug, Clone, Default)]
pub struct IgnoreGlobs {
    set: globset::GlobSet,
    /// The patterns that did not compile, for the run's log.
    pub invalid: Vec<String>,
}

impl IgnoreGlobs {
    pub fn new<'a>(patterns: impl IntoIterator<Item = &'a str>) -> Self {
        let mut builder = globset::GlobSetBuilder::new();
        let mut invalid = Vec::new();
        for p in patterns {
            match globset::GlobBuilder::new(p)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
            {
                Ok(glob) => {
                    builder.add(glob);
                }
                Err(_) => invalid.push(p.to_string()),
            }
        }
        let set = builder.build().unwrap_or_default();
        Self { set, invalid }
    }

    /// Whether the run file at `path` (relative to `files/`) is ignored.
    pub fn matches(&self, path: &str) -> bool {
        self.set.is_match(path)
    }
}

impl RunSettings {
    pub fn from_proto(raw: pb::Settings, stream_id: &str) -> Result<Self, SettingsError> {
        let run_id = raw
            .run_id
            .clone()
            .filter(|s| !s.is_empty())
            .or_else(|| Some(stream_id.to_string()).filter(|s| !s.is_empty()))
            .ok_or(SettingsError::MissingRunId)?;
        // The run ID becomes part of file names: refuse anything that could
        // escape the run directory.
        if !run_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            || run_id.len() > 128
        {
            return Err(SettingsError::InvalidRunId(run_id));
        }
        let sync_file = PathBuf::from(
            raw.sync_file
                .clone()
                .filter(|s| !s.is_empty())
                .ok_or(SettingsError::MissingSyncFile)?,
        );
        let sync_dir = raw
            .sync_dir
            .clone()
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .or_else(|| sync_file.parent().map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("."));
        let mode = raw.mode.clone().unwrap_or_default();
        let offline = raw.offline.unwrap_or(false) || mode == "offline" || mode == "dryrun";
        let skip_transaction_log = raw.x_skip_transaction_log.unwrap_or(false);
        let log_file = match sync_file.file_name() {
            Some(name) if skip_transaction_log && !offline => {
                sync_file.with_file_name(format!(".{}.queue", name.to_string_lossy()))
            }
            _ => sync_file.clone(),
        };
        let console = match raw.console.as_deref() {
            Some("off") => ConsoleCapture::Off,
            _ => ConsoleCapture::On,
        };
        let label = raw
            .x_label
            .clone()
            .filter(|l| !l.is_empty())
            .map(|l| sanitize_label(&l));
        let output_file_name = match label {
            Some(label) => format!("output_{label}.log"),
            None => "output.log".to_string(),
        };
        let flush_interval = raw
            .x_transaction_log_flush_interval
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(Duration::from_secs_f64);
        Ok(Self {
            run_id,
            offline,
            sync_file,
            log_file,
            sync_dir,
            log_dir: raw
                .log_dir
                .clone()
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
            log_internal: raw
                .log_internal
                .clone()
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
            console,
            output_file_name,
            primary: raw.x_primary.unwrap_or(true),
            shared: raw.shared.unwrap_or(false),
            save_requirements: raw.x_save_requirements.unwrap_or(true),
            skip_transaction_log,
            server_side_derived_summary: raw.x_server_side_derived_summary.unwrap_or(false),
            silent: raw.silent.unwrap_or(false),
            start_time: raw.x_start_time,
            flush_interval,
            durability: Durability::default(),
            ignore: IgnoreGlobs::new(
                raw.ignore_globs
                    .iter()
                    .flat_map(|l| l.value.iter().map(String::as_str)),
            ),
            raw,
        })
    }

    /// This writer's name among a shared run's writers, safe in a file
    /// name: its label (`x_label`, which the SDK always sets in shared
    /// mode), or `writer`.
    pub fn writer_label(&self) -> String {
        self.raw
            .x_label
            .as_deref()
            .filter(|l| !l.is_empty())
            .map(|l| sanitize_label(l).chars().take(64).collect())
            .unwrap_or_else(|| "writer".into())
    }

    /// `<sync_dir>/files`.
    pub fn files_dir(&self) -> PathBuf {
        self.sync_dir.join("files")
    }
}

/// Labels become part of a file name: keep them to a safe alphabet.
fn sanitize_label(label: &str) -> String {
    label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durability_names() {
        for (text, want) in [
            ("", Durability::Buffered),
            ("buffered", Durability::Buffered),
            ("Written", Durability::Written),
            (" synced ", Durability::Synced),
        ] {
            assert_eq!(text.parse::<Durability>(), Ok(want), "{text:?}");
        }
        let err = "fsync".parse::<Durability>().unwrap_err();
        assert!(err.contains("buffered, written or synced"), "{err}");
    }

    fn settings(run_id: &str) -> pb::Settings {
        pb::Settings {
            run_id: Some(run_id.into()),
            sync_file: Some("/tmp/r/run-x.wandb".into()),
            x_label: Some("../rank 0".into()),
            ..Default::default()
        }
    }

    #[test]
    fn derives_paths_and_defaults() {
        let s = RunSettings::from_proto(settings("abc123"), "abc123").unwrap();
        assert_eq!(s.sync_dir, PathBuf::from("/tmp/r"));
        assert_eq!(s.files_dir(), PathBuf::from("/tmp/r/files"));
        assert_eq!(s.output_file_name, "output____rank_0.log");
        assert!(s.primary && s.save_requirements && !s.offline);
    }

    #[test]
    fn ignore_globs_match_as_go_filepath_match_does() {
        let g = IgnoreGlobs::new([
            "requirements.txt",
            "sub/*.txt",
            "[!a]*.bin",
            "[^b]x",
            "a?c",
            "bad[",
        ]);
        for yes in ["requirements.txt", "sub/x.txt", "b.bin", "ax", "abc"] {
            assert!(g.matches(yes), "{yes}");
        }
        for no in [
            "sub/deep/x.txt",
            "x/requirements.txt",
            "a.bin",
            "bx",
            "a/c",
            "bad[",
        ] {
            assert!(!g.matches(no), "{no}");
        }
        assert_eq!(g.invalid, ["bad["]);
    }

    #[test]
    fn hostile_run_ids_are_refused() {
        for bad in ["../etc", "a/b", "", "x y"] {
            assert!(RunSettings::from_proto(settings(bad), "").is_err(), "{bad}");
        }
        let mut no_file = settings("ok");
        no_file.sync_file = None;
        assert_eq!(
            RunSettings::from_proto(no_file, "ok").unwrap_err(),
            SettingsError::MissingSyncFile
        );
    }
}
