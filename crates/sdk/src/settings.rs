//! Settings for a run: built in code, read from `WANDB_*` variables as
//! the Python SDK reads them, code winning over the environment.
//!
//! Long for one file, but one concept: the `Settings` builder, a setter
//! and an environment variable per setting.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::value::Value;

/// Where the run goes.
///
/// ```
/// let s = wandb::Settings::new().mode(wandb::Mode::Offline);
/// # let _ = s;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Upload to the W&B backend while the run runs (needs an API key).
    Online,
    /// Write the run's transaction log only; upload later with `wandb sync`.
    Offline,
    /// Do nothing: every call succeeds and nothing is written.
    Disabled,
}

/// How to treat an existing run with the same ID (`WANDB_RESUME`).
///
/// ```
/// let s = wandb::Settings::new().run_id("run-42").resume(wandb::Resume::Allow);
/// # let _ = s;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    Allow,
    Must,
    Never,
    Auto,
}

impl Resume {
    fn as_str(self) -> &'static str {
        match self {
            Resume::Allow => "allow",
            Resume::Must => "must",
            Resume::Never => "never",
            Resume::Auto => "auto",
        }
    }
}

/// How the SDK reaches a wandb-core service.
///
/// ```
/// use wandb::{Settings, Transport};
/// // W&B's own service from a pip install, launched by path:
/// let s = Settings::new().transport(Transport::Launch(
///     "/venv/lib/python3.11/site-packages/wandb/bin/wandb-core".into(),
/// ));
/// // A service shared with other processes:
/// let t = Transport::Attach("3-1234-unix-/tmp/wandb-1234-1235-42/socket".into());
/// # let _ = (s, t);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Transport {
    /// `WANDB_SERVICE` if set, else [`Transport::InProcess`].
    Auto,
    /// Our service, running on background threads of this process: no
    /// binary, no setup.
    InProcess,
    /// A running service, by its `WANDB_SERVICE` token
    /// (`3-<pid>-unix-<path>` or `3-<pid>-tcp-localhost-<port>`); ours or
    /// W&B's.
    Attach(String),
    /// Launch a service binary (ours, or W&B's `wandb-core` from a pip
    /// install) as the Python SDK does, and stop it when the last run
    /// using it is finished.
    Launch(PathBuf),
}

/// What [`Run::log`](crate::Run::log) does when the queue to the service
/// is full (the service is not keeping up).
///
/// ```
/// use std::time::Duration;
/// let never_wait = wandb::Settings::new().queue_policy(wandb::QueuePolicy::Drop);
/// let wait_a_bit = wandb::Settings::new().queue_policy(wandb::QueuePolicy::Block(Duration::from_millis(100)));
/// # let _ = (never_wait, wait_a_bit);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueuePolicy {
    /// Wait for room up to this long, then return
    /// [`Error::QueueFull`](crate::Error::QueueFull) (nothing is lost
    /// silently). The default, with 30 s.
    Block(Duration),
    /// Drop the record at once and count it; the count is in
    /// [`Run::stats`](crate::Run::stats) and the finish report. For loops
    /// that must never wait.
    Drop,
}

/// Settings for [`init`](crate::init). Unset fields come from `WANDB_*`
/// variables, then defaults.
///
/// ```
/// use wandb::{Settings, Mode};
/// let settings = Settings::new()
///     .project("mnist")
///     .mode(Mode::Offline)
///     .name("baseline")
///     .tags(["cnn", "baseline"])
///     .config(&serde_json::json!({"lr": 0.001, "batch_size": 64}))?;
/// # Ok::<(), wandb::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub(crate) project: Option<String>,
    pub(crate) entity: Option<String>,
    pub(crate) mode: Option<Mode>,
    pub(crate) dir: Option<PathBuf>,
    pub(crate) run_id: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) notes: Option<String>,
    pub(crate) tags: Option<Vec<String>>,
    pub(crate) group: Option<String>,
    pub(crate) job_type: Option<String>,
    pub(crate) resume: Option<Resume>,
    pub(crate) api_key: Option<String>,
    pub(crate) base_url: Option<String>,
    pub(crate) config: Vec<(String, Value)>,
    pub(crate) transport: Option<Transport>,
    pub(crate) queue_capacity: Option<usize>,
    pub(crate) queue_policy: Option<QueuePolicy>,
    pub(crate) stats_sampling_interval: Option<f64>,
    pub(crate) disable_stats: Option<bool>,
    pub(crate) init_timeout: Option<Duration>,
    pub(crate) finish_timeout: Option<Duration>,
    pub(crate) shared: Option<bool>,
    pub(crate) label: Option<String>,
    pub(crate) primary: Option<bool>,
    pub(crate) update_finish_state: Option<bool>,
}

macro_rules! setter {
    ($(#[$doc:meta])* $name:ident: $t:ty) => {
        $(#[$doc])*
        pub fn $name(mut self, v: impl Into<$t>) -> Self {
            self.$name = Some(v.into());
            self
        }
    };
}

impl Settings {
    /// Empty settings: everything from the environment or defaults.
    ///
    /// ```
    /// let s = wandb::Settings::new();
    /// # let _ = s;
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    setter!(
        /// The W&B project (`WANDB_PROJECT`).
        ///
        /// ```
        /// let s = wandb::Settings::new().project("mnist");
        /// # let _ = s;
        /// ```
        project: String
    );
    setter!(
        /// The team or user that owns the run (`WANDB_ENTITY`; online, the
        /// API key's default entity when unset).
        ///
        /// ```
        /// let s = wandb::Settings::new().entity("my-team");
        /// # let _ = s;
        /// ```
        entity: String
    );
    setter!(
        /// Online, offline or disabled (`WANDB_MODE`: `online`, `offline`,
        /// `disabled`, also `run` and `dryrun`; `WANDB_DISABLED=true`).
        /// Default: online if an API key is set, else offline.
        ///
        /// ```
        /// let s = wandb::Settings::new().mode(wandb::Mode::Offline);
        /// # let _ = s;
        /// ```
        mode: Mode
    );
    setter!(
        /// The directory under which `wandb/` holds run directories
        /// (`WANDB_DIR`; default the current directory).
        ///
        /// ```
        /// let s = wandb::Settings::new().dir("/tmp/experiments");
        /// # let _ = s;
        /// ```
        dir: PathBuf
    );
    setter!(
        /// The run ID (`WANDB_RUN_ID`; default 8 random characters).
        ///
        /// ```
        /// let s = wandb::Settings::new().run_id("abc123");
        /// # let _ = s;
        /// ```
        run_id: String
    );
    setter!(
        /// The run's display name (`WANDB_NAME`).
        ///
        /// ```
        /// let s = wandb::Settings::new().name("baseline");
        /// # let _ = s;
        /// ```
        name: String
    );
    setter!(
        /// Notes (`WANDB_NOTES`).
        ///
        /// ```
        /// let s = wandb::Settings::new().notes("lr sweep, first try");
        /// # let _ = s;
        /// ```
        notes: String
    );
    setter!(
        /// The run group (`WANDB_RUN_GROUP`).
        ///
        /// ```
        /// let s = wandb::Settings::new().group("ablation-1");
        /// # let _ = s;
        /// ```
        group: String
    );
    setter!(
        /// The job type (`WANDB_JOB_TYPE`).
        ///
        /// ```
        /// let s = wandb::Settings::new().job_type("train");
        /// # let _ = s;
        /// ```
        job_type: String
    );
    setter!(
        /// Resume behaviour for an existing run ID (`WANDB_RESUME`).
        ///
        /// ```
        /// let s = wandb::Settings::new().run_id("abc123").resume(wandb::Resume::Allow);
        /// # let _ = s;
        /// ```
        resume: Resume
    );
    setter!(
        /// The API key (`WANDB_API_KEY`).
        ///
        /// ```
        /// let s = wandb::Settings::new().api_key("0123456789012345678901234567890123456789");
        /// # let _ = s;
        /// ```
        api_key: String
    );
    setter!(
        /// The W&B server (`WANDB_BASE_URL`; default `https://api.wandb.ai`).
        ///
        /// ```
        /// let s = wandb::Settings::new().base_url("https://wandb.example.com");
        /// # let _ = s;
        /// ```
        base_url: String
    );
    setter!(
        /// How to reach a service (default [`Transport::Auto`]).
        ///
        /// ```
        /// let s = wandb::Settings::new().transport(wandb::Transport::InProcess);
        /// # let _ = s;
        /// ```
        transport: Transport
    );
    setter!(
        /// Records that may wait for the service (default 8192); bounds the
        /// SDK's memory whatever the load.
        ///
        /// ```
        /// let s = wandb::Settings::new().queue_capacity(1024usize);
        /// # let _ = s;
        /// ```
        queue_capacity: usize
    );
    setter!(
        /// What `log` does when the queue is full (default
        /// `Block(30 s)`).
        ///
        /// ```
        /// let s = wandb::Settings::new().queue_policy(wandb::QueuePolicy::Drop);
        /// # let _ = s;
        /// ```
        queue_policy: QueuePolicy
    );
    setter!(
        /// Seconds between system-metrics samples (`x_stats_sampling_interval`,
        /// default 15).
        ///
        /// ```
        /// let s = wandb::Settings::new().stats_sampling_interval(5.0);
        /// # let _ = s;
        /// ```
        stats_sampling_interval: f64
    );
    setter!(
        /// Turn system metrics off (`x_disable_stats`).
        ///
        /// ```
        /// let s = wandb::Settings::new().disable_stats(true);
        /// # let _ = s;
        /// ```
        disable_stats: bool
    );
    setter!(
        /// How long `init` waits for the run to be created (`WANDB_INIT_TIMEOUT`
        /// seconds; default 90 s).
        ///
        /// ```
        /// let s = wandb::Settings::new().init_timeout(std::time::Duration::from_secs(30));
        /// # let _ = s;
        /// ```
        init_timeout: Duration
    );
    setter!(
        /// How long `finish` waits for the service to have everything
        /// written (and uploaded, online) before it returns
        /// [`Error::Timeout`](crate::Error::Timeout) (default 10 minutes).
        ///
        /// ```
        /// let s = wandb::Settings::new().finish_timeout(std::time::Duration::from_secs(60));
        /// # let _ = s;
        /// ```
        finish_timeout: Duration
    );

    /// One writer of a run that several processes write at once
    /// (distributed training; W&B's *shared mode*, `WANDB_MODE=shared`).
    /// Every writer uses the same [`run_id`](Self::run_id); `label` names
    /// this one (`WANDB_X_LABEL`: its console lines and system metrics are
    /// labelled with it, e.g. `rank-3` or the node's name); exactly one
    /// writer is the `primary` (`WANDB_X_PRIMARY`): it uploads the run's
    /// config, metadata and summary files and its exit finishes the run
    /// (unless [`update_finish_state`](Self::update_finish_state) says
    /// otherwise). The backend numbers the rows (`_step`) as they arrive
    /// from all writers; a shared run is online.
    ///
    /// ```
    /// let rank: u32 = 3;
    /// let s = wandb::Settings::new()
    ///     .run_id("ddp-run-1")
    ///     .shared(format!("rank-{rank}"), rank == 0);
    /// # let _ = s;
    /// ```
    pub fn shared(mut self, label: impl Into<String>, primary: bool) -> Self {
        self.shared = Some(true);
        self.label = Some(label.into());
        self.primary = Some(primary);
        self
    }

    setter!(
        /// Whether this writer's exit marks the run finished
        /// (`WANDB_X_UPDATE_FINISH_STATE`; default: shared writers only
        /// when primary, others always).
        ///
        /// ```
        /// // A primary that leaves finishing the run to a job script.
        /// let s = wandb::Settings::new().shared("head", true).update_finish_state(false);
        /// # let _ = s;
        /// ```
        update_finish_state: bool
    );

    /// Tags (`WANDB_TAGS`, comma-separated).
    ///
    /// ```
    /// let s = wandb::Settings::new().tags(["baseline", "cnn"]);
    /// # let _ = s;
    /// ```
    pub fn tags<S: Into<String>>(mut self, tags: impl IntoIterator<Item = S>) -> Self {
        self.tags = Some(tags.into_iter().map(Into::into).collect());
        self
    }

    /// The run's initial config, from anything that serialises to a map.
    ///
    /// ```
    /// #[derive(serde::Serialize)]
    /// struct Hyper { lr: f64, layers: u32 }
    /// let s = wandb::Settings::new().config(&Hyper { lr: 0.01, layers: 4 })?;
    /// # Ok::<(), wandb::Error>(())
    /// ```
    pub fn config<T: Serialize + ?Sized>(mut self, config: &T) -> Result<Self> {
        self.config.extend(config_items(config)?);
        Ok(self)
    }

    /// Settings from `WANDB_*` variables only.
    ///
    /// ```
    /// let from_env = wandb::Settings::from_env()?;
    /// # let _ = from_env;
    /// # Ok::<(), wandb::Error>(())
    /// ```
    pub fn from_env() -> Result<Self> {
        Self::from_vars(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    pub(crate) fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let mut s = Settings::new();
        s.project = var("WANDB_PROJECT");
        s.entity = var("WANDB_ENTITY");
        s.dir = var("WANDB_DIR").map(PathBuf::from);
        s.run_id = var("WANDB_RUN_ID");
        s.name = var("WANDB_NAME");
        s.notes = var("WANDB_NOTES");
        s.group = var("WANDB_RUN_GROUP");
        s.job_type = var("WANDB_JOB_TYPE");
        s.api_key = var("WANDB_API_KEY");
        s.base_url = var("WANDB_BASE_URL");
        s.tags = var("WANDB_TAGS").map(|t| {
            t.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(String::from)
                .collect()
        });
        if let Some(mode) = var("WANDB_MODE") {
            s.mode = Some(match mode.as_str() {
                "online" | "run" => Mode::Online,
                "offline" | "dryrun" => Mode::Offline,
                "disabled" => Mode::Disabled,
                "shared" => {
                    s.shared = Some(true);
                    Mode::Online
                }
                other => {
                    return Err(Error::InvalidSetting {
                        name: "WANDB_MODE",
                        reason: format!("{other:?} is not online, offline, shared or disabled"),
                    });
                }
            });
        }
        s.label = var("WANDB_X_LABEL");
        if let Some(v) = var("WANDB_X_PRIMARY") {
            s.primary = Some(is_true(&v));
        }
        if let Some(v) = var("WANDB_X_UPDATE_FINISH_STATE") {
            s.update_finish_state = Some(is_true(&v));
        }
        if var("WANDB_DISABLED").is_some_and(|v| is_true(&v)) {
            s.mode = Some(Mode::Disabled);
        }
        if let Some(r) = var("WANDB_RESUME") {
            s.resume = Some(match r.as_str() {
                "allow" => Resume::Allow,
                "must" => Resume::Must,
                "never" => Resume::Never,
                "auto" => Resume::Auto,
                other => {
                    return Err(Error::InvalidSetting {
                        name: "WANDB_RESUME",
                        reason: format!("{other:?} is not allow, must, never or auto"),
                    });
                }
            });
        }
        if let Some(t) = var("WANDB_INIT_TIMEOUT") {
            s.init_timeout = Some(seconds("WANDB_INIT_TIMEOUT", &t)?);
        }
        if let Some(token) = var("WANDB_SERVICE") {
            s.transport = Some(Transport::Attach(token));
        }
        if let Some(t) = var("WANDB_X_STATS_SAMPLING_INTERVAL") {
            s.stats_sampling_interval =
                Some(seconds("WANDB_X_STATS_SAMPLING_INTERVAL", &t)?.as_secs_f64());
        }
        if let Some(v) = var("WANDB_X_DISABLE_STATS") {
            s.disable_stats = Some(is_true(&v));
        }
        Ok(s)
    }

    /// These settings, with unset fields taken from `other` (code over
    /// environment: `code.or(env)`).
    ///
    /// ```
    /// let code = wandb::Settings::new().project("a");
    /// let env = wandb::Settings::new().project("b").name("n");
    /// let merged = code.or(env);
    /// # let _ = merged;
    /// ```
    pub fn or(self, other: Settings) -> Settings {
        let mut config = other.config;
        config.extend(self.config);
        Settings {
            project: self.project.or(other.project),
            entity: self.entity.or(other.entity),
            mode: self.mode.or(other.mode),
            dir: self.dir.or(other.dir),
            run_id: self.run_id.or(other.run_id),
            name: self.name.or(other.name),
            notes: self.notes.or(other.notes),
            tags: self.tags.or(other.tags),
            group: self.group.or(other.group),
            job_type: self.job_type.or(other.job_type),
            resume: self.resume.or(other.resume),
            api_key: self.api_key.or(other.api_key),
            base_url: self.base_url.or(other.base_url),
            config,
            transport: self.transport.or(other.transport),
            queue_capacity: self.queue_capacity.or(other.queue_capacity),
            queue_policy: self.queue_policy.or(other.queue_policy),
            stats_sampling_interval: self
                .stats_sampling_interval
                .or(other.stats_sampling_interval),
            disable_stats: self.disable_stats.or(other.disable_stats),
            init_timeout: self.init_timeout.or(other.init_timeout),
            finish_timeout: self.finish_timeout.or(other.finish_timeout),
            shared: self.shared.or(other.shared),
            label: self.label.or(other.label),
            primary: self.primary.or(other.primary),
            update_finish_state: self.update_finish_state.or(other.update_finish_state),
        }
    }

    /// Fills in defaults and checks values.
    pub(crate) fn resolve(self) -> Result<Resolved> {
        let shared = self.shared.unwrap_or(false);
        let mode = self.mode.unwrap_or(if self.api_key.is_some() || shared {
            Mode::Online
        } else {
            Mode::Offline
        });
        if shared && mode == Mode::Offline {
            return Err(Error::InvalidSetting {
                name: "mode",
                reason: "a shared run is written online (its writers are merged by the server)"
                    .into(),
            });
        }
        // Python's defaults: every writer primary and finishing the run
        // unless told; a shared writer that is not primary does not finish.
        let primary = self.primary.unwrap_or(true);
        let update_finish_state = self.update_finish_state.unwrap_or(!shared || primary);
        if mode == Mode::Online && self.api_key.is_none() {
            return Err(Error::InvalidSetting {
                name: "api_key",
                reason: "online mode needs an API key (WANDB_API_KEY or Settings::api_key)".into(),
            });
        }
        let run_id = match self.run_id {
            Some(id) => {
                if id.is_empty()
                    || !id
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
                {
                    return Err(Error::InvalidSetting {
                        name: "run_id",
                        reason: format!("{id:?}: use letters, digits, '-' and '_' only"),
                    });
                }
                id
            }
            None => random_id(8),
        };
        if let Some(i) = self.stats_sampling_interval
            && !(i.is_finite() && i >= 0.1)
        {
            return Err(Error::InvalidSetting {
                name: "stats_sampling_interval",
                reason: format!("{i} s (at least 0.1 s)"),
            });
        }
        let queue_capacity = self.queue_capacity.unwrap_or(8192);
        if queue_capacity == 0 {
            return Err(Error::InvalidSetting {
                name: "queue_capacity",
                reason: "must be at least 1".into(),
            });
        }
        let root_dir = match self.dir {
            Some(d) => d,
            None => std::env::current_dir().map_err(|e| Error::io(".", e))?,
        };
        let root_dir = if root_dir.is_absolute() {
            root_dir
        } else {
            std::env::current_dir()
                .map_err(|e| Error::io(".", e))?
                .join(root_dir)
        };
        Ok(Resolved {
            project: self.project,
            entity: self.entity,
            mode,
            root_dir,
            run_id,
            name: self.name,
            notes: self.notes,
            tags: self.tags.unwrap_or_default(),
            group: self.group,
            job_type: self.job_type,
            resume: self.resume,
            api_key: self.api_key,
            base_url: self
                .base_url
                .unwrap_or_else(|| "https://api.wandb.ai".into())
                .trim_end_matches('/')
                .to_string(),
            config: self.config,
            transport: self.transport.unwrap_or(Transport::Auto),
            queue_capacity,
            queue_policy: self
                .queue_policy
                .unwrap_or(QueuePolicy::Block(Duration::from_secs(30))),
            stats_sampling_interval: self.stats_sampling_interval.unwrap_or(15.0),
            disable_stats: self.disable_stats.unwrap_or(false),
            init_timeout: self.init_timeout.unwrap_or(Duration::from_secs(90)),
            finish_timeout: self.finish_timeout.unwrap_or(Duration::from_secs(600)),
            shared,
            label: self.label.filter(|l| !l.is_empty()),
            primary,
            update_finish_state,
        })
    }
}

/// Settings with every default applied.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub project: Option<String>,
    pub entity: Option<String>,
    pub mode: Mode,
    pub root_dir: PathBuf,
    pub run_id: String,
    pub name: Option<String>,
    pub notes: Option<String>,
    pub tags: Vec<String>,
    pub group: Option<String>,
    pub job_type: Option<String>,
    pub resume: Option<Resume>,
    pub api_key: Option<String>,
    pub base_url: String,
    pub config: Vec<(String, Value)>,
    pub transport: Transport,
    pub queue_capacity: usize,
    pub queue_policy: QueuePolicy,
    pub stats_sampling_interval: f64,
    pub disable_stats: bool,
    pub init_timeout: Duration,
    pub finish_timeout: Duration,
    /// Shared mode: one of several writers of the run.
    pub shared: bool,
    pub label: Option<String>,
    pub primary: bool,
    pub update_finish_state: bool,
}

impl Resolved {
    pub fn resume_str(&self) -> Option<&'static str> {
        self.resume.map(Resume::as_str)
    }
}

/// A serialisable map as `(key, value)` config items.
pub(crate) fn config_items<T: Serialize + ?Sized>(config: &T) -> Result<Vec<(String, Value)>> {
    let invalid = |reason: String| Error::InvalidValue {
        key: "config".into(),
        reason,
    };
    match serde_json::to_value(config).map_err(|e| invalid(e.to_string()))? {
        serde_json::Value::Object(map) => {
            let mut items = Vec::with_capacity(map.len());
            for (k, v) in map {
                if k.is_empty() {
                    return Err(Error::InvalidKey {
                        key: k,
                        reason: "config keys cannot be empty",
                    });
                }
                items.push((k, Value::from(v)));
            }
            Ok(items)
        }
        other => Err(invalid(format!(
            "a config is a map of keys to values, not {other}"
        ))),
    }
}

fn is_true(v: &str) -> bool {
    matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes")
}

fn seconds(name: &'static str, v: &str) -> Result<Duration> {
    v.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| Error::InvalidSetting {
            name,
            reason: format!("{v:?} is not a number of seconds"),
        })
}

/// Random `[a-z0-9]` characters, like the Python SDK's run IDs.
pub(crate) fn random_id(len: usize) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..len)
        .map(|_| CHARS[fastrand::usize(..CHARS.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn environment_is_read_like_the_python_sdk_and_code_wins() {
        let from_env = Settings::from_vars(env(&[
            ("WANDB_PROJECT", "p-env"),
            ("WANDB_ENTITY", "e"),
            ("WANDB_MODE", "dryrun"),
            ("WANDB_TAGS", "a, b,,c"),
            ("WANDB_RUN_GROUP", "g"),
            ("WANDB_JOB_TYPE", "train"),
            ("WANDB_RESUME", "allow"),
            ("WANDB_RUN_ID", "abc123"),
            ("WANDB_NAME", "n-env"),
            ("WANDB_NOTES", "notes"),
            ("WANDB_BASE_URL", "http://127.0.0.1:9/"),
            ("WANDB_DIR", "/tmp/x"),
            ("WANDB_SERVICE", "3-1-tcp-localhost-5"),
        ]))
        .unwrap();
        let r = Settings::new()
            .project("p-code")
            .or(from_env)
            .resolve()
            .unwrap();
        assert_eq!(r.project.as_deref(), Some("p-code"));
        assert_eq!(r.name.as_deref(), Some("n-env"));
        assert_eq!(r.mode, Mode::Offline);
        assert_eq!(r.tags, ["a", "b", "c"]);
        assert_eq!(r.resume, Some(Resume::Allow));
        assert_eq!(r.run_id, "abc123");
        assert_eq!(r.base_url, "http://127.0.0.1:9");
        assert_eq!(r.root_dir, PathBuf::from("/tmp/x"));
        assert_eq!(r.transport, Transport::Attach("3-1-tcp-localhost-5".into()));
        assert_eq!(r.group.as_deref(), Some("g"));
        assert_eq!(r.job_type.as_deref(), Some("train"));
    }

    #[test]
    fn bad_settings_are_clear_errors() {
        assert!(Settings::from_vars(env(&[("WANDB_MODE", "sideways")])).is_err());
        assert!(Settings::from_vars(env(&[("WANDB_RESUME", "maybe")])).is_err());
        assert!(Settings::new().mode(Mode::Online).resolve().is_err());
        assert!(Settings::new().run_id("a/b").resolve().is_err());
        assert!(
            Settings::new()
                .stats_sampling_interval(0.0)
                .resolve()
                .is_err()
        );
        assert!(Settings::new().config(&[1, 2]).is_err());
        let disabled = Settings::from_vars(env(&[("WANDB_DISABLED", "true")])).unwrap();
        assert_eq!(disabled.mode, Some(Mode::Disabled));
        let id = Settings::new().resolve().unwrap().run_id;
        assert_eq!(id.len(), 8);
    }

    #[test]
    fn shared_mode_as_the_python_sdk_reads_it() {
        // WANDB_MODE=shared with the writer's label and role, as a
        // launcher sets them per rank.
        let vars = env(&[
            ("WANDB_MODE", "shared"),
            ("WANDB_X_LABEL", "rank-1"),
            ("WANDB_X_PRIMARY", "false"),
            ("WANDB_API_KEY", "k"),
        ]);
        let r = Settings::from_vars(vars).unwrap().resolve().unwrap();
        assert_eq!(r.mode, Mode::Online);
        assert!(r.shared && !r.primary && !r.update_finish_state);
        assert_eq!(r.label.as_deref(), Some("rank-1"));
        // In code: the primary finishes the run unless told otherwise.
        let r = Settings::new()
            .api_key("k")
            .shared("rank-0", true)
            .resolve()
            .unwrap();
        assert!(r.shared && r.primary && r.update_finish_state);
        let r = Settings::new()
            .api_key("k")
            .shared("rank-0", true)
            .update_finish_state(false)
            .resolve()
            .unwrap();
        assert!(!r.update_finish_state);
        // Not shared: one writer, primary, finishing its run.
        let r = Settings::new().resolve().unwrap();
        assert!(!r.shared && r.primary && r.update_finish_state);
        // A shared run is online: offline is refused, no key is refused.
        let offline = Settings::new().mode(Mode::Offline).shared("a", true);
        assert!(offline.resolve().is_err());
        assert!(Settings::new().shared("a", true).resolve().is_err());
    }
}
