//! A W&B backend stand-in for tests and for trying online mode without an
//! account. Loopback only.
//!
//! It speaks the HTTP API the W&B service uses (see the project's backend
//! notes): `POST /graphql` (Viewer, UpsertBucket, RunResumeStatus,
//! CreateRunFiles, ServerFeaturesQuery, OrganizationCoreWeaveOrganizationID,
//! NotifyScriptableRunAlert), `POST /files/<entity>/<project>/<run>/file_stream`
//! (idempotent by offset, console lines overwritten at their offset, gzip
//! bodies), and `PUT` to the upload URLs it hands out. Everything received
//! is kept in a [`Store`] (SQLite) that tests query. Failures can be
//! injected per operation ([`Inject`]); a run can be stopped from "the UI"
//! ([`StandIn::stop_run`]); answers can be slowed down or held
//! ([`StandIn::set_latency`], [`StandIn::hold`]).
//!
//! * [`graphql`]: operations, answered to the document's selection.
//! * [`store`]: the SQLite store.
//! * `routes`: the HTTP routes and their handlers.
//! * `tls`: HTTPS with a CA made at start ([`Config::tls`]).

pub mod artifacts;
pub mod graphql;
mod pace;
mod routes;
pub mod store;
mod tls;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

pub use store::{FileRow, RequestRow, RunKey, RunRow, Store};
pub use tls::TlsError;

/// The entity of the stand-in's only user.
pub const DEFAULT_ENTITY: &str = "standin";
/// Header the stand-in asks uploads to carry (through `uploadHeaders`).
pub const UPLOAD_TOKEN_HEADER: &str = "X-Standin-Upload-Token";

/// A failure to serve instead of the real answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Inject {
    /// A GraphQL operation name (`UpsertBucket`), `file_stream` or `upload`.
    pub target: String,
    pub status: u16,
    /// How many matching requests fail (then they succeed).
    pub times: u32,
    /// A `Retry-After` header value.
    pub retry_after: Option<String>,
    /// With status 200: answer `{"errors": [{"message": …}]}` instead.
    pub graphql_error: Option<String>,
}

impl std::str::FromStr for Inject {
    type Err = String;

    /// `target:status[:times[:retry_after]]`, e.g. `UpsertBucket:500:1`,
    /// `file_stream:429:1:1`, `upload:403:100`.
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() < 2 || parts.len() > 4 {
            return Err(format!(
                "{s:?}: expected target:status[:times[:retry_after]]"
            ));
        }
        Ok(Inject {
            target: parts[0].to_string(),
            status: parts[1].parse().map_err(|_| format!("{s:?}: bad status"))?,
            times: parts
                .get(2)
                .map_or(Ok(1), |t| t.parse())
                .map_err(|_| format!("{s:?}: bad count"))?,
            retry_after: parts.get(3).map(|r| r.to_string()),
            graphql_error: None,
        })
    }
}

/// How the stand-in behaves.
#[derive(Debug, Clone)]
pub struct Config {
    /// Required API key (`Authorization: Basic api:<key>`); `None` accepts
    /// anything.
    pub api_key: Option<String>,
    /// Server features reported by ServerFeaturesQuery.
    pub features: Vec<(String, bool)>,
    pub upload_token: String,
    pub inject: Vec<Inject>,
    /// Every answer waits this long after its request arrived (a slow or
    /// distant backend).
    pub latency: std::time::Duration,
    /// Serve HTTPS with a certificate for these names (host names or IP
    /// addresses), signed by a CA made at start ([`StandIn::ca_pem`]).
    pub tls: Option<Vec<String>>,
    /// The base URL clients reach it by, when not its own address (behind
    /// a proxy, under a name): the upload URLs it hands out use it.
    pub public_url: Option<String>,
}

/// The server features wandb 0.31 knows (its `ServerFeature` enum), all of
/// which the stand-in can report.
pub const SERVER_FEATURES: [&str; 37] = [
    "LARGE_FILENAMES",
    "ARTIFACT_TAGS",
    "CLIENT_IDS",
    "ARTIFACT_REGISTRY_SEARCH",
    "STRUCTURED_CONSOLE_LOGS",
    "ARTIFACT_COLLECTION_MEMBERSHIP_FILES",
    "ARTIFACT_COLLECTION_MEMBERSHIP_FILE_DOWNLOAD_HANDLER",
    "USE_ARTIFACT_WITH_ENTITY_AND_PROJECT_INFORMATION",
    "AUTOMATION_EVENT_RUN_METRIC",
    "AUTOMATION_EVENT_RUN_METRIC_CHANGE",
    "AUTOMATION_ACTION_NO_OP",
    "INCLUDE_ARTIFACT_TYPES_IN_REGISTRY_CREATION",
    "PROJECT_ARTIFACT_COLLECTION_MEMBERSHIP",
    "ARTIFACT_MEMBERSHIP_IN_LINK_ARTIFACT_RESPONSE",
    "TOTAL_COUNT_IN_FILE_CONNECTION",
    "ARTIFACT_COLLECTIONS_FILTERING_SORTING",
    "ARTIFACT_V2_DOWNLOAD_HANDLER_SUPPORTS_ARTIFACT_ID",
    "AUTOMATION_EVENT_RUN_METRIC_ZSCORE",
    "AUTOMATION_EVENT_RUN_STATE",
    "AUTOMATION_ACTION_PUSH_NOTIFICATION",
    "AUTOMATION_EVENT_ADD_ARTIFACT_TAG",
    "AUTOMATION_EVENT_ADD_COLLECTION_TAG",
    "AUTOMATION_EVENT_REMOVE_ARTIFACT_TAG",
    "AUTOMATION_EVENT_REMOVE_COLLECTION_TAG",
    "AUTOMATION_EVENT_UNLINK_ARTIFACT",
    "AUTOMATIONS_ON_USER",
    "AUTOMATION_LAST_EXECUTED_AT",
    "MARK_RUN_FILES_UPLOADED",
    "SWEEPS_QUERY_FILTERING",
    "AUTOMATION_SCOPE_ENTITY",
    "QUERY_AUTOMATIONS_ON_ENTITY",
    "AUTOMATIONS_ON_ORGANIZATION",
    "FILESTREAM_GZIP",
    "SWEEPS_LOCAL_SCHEDULER",
    "ARTIFACT_DIGEST_ALGORITHM",
    "AUTOMATION_ACTION_ARIA",
    "EVAL_TABLES_CES",
];

/// Which server features the stand-in reports as enabled: `all`, `none`,
/// or a comma-separated list of names (the rest reported disabled).
pub fn features(spec: &str) -> Vec<(String, bool)> {
    let spec = spec.trim();
    let on: Vec<&str> = match spec {
        "all" => SERVER_FEATURES.to_vec(),
        "none" | "" => Vec::new(),
        list => list
            .split(',')
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .collect(),
    };
    let mut out: Vec<(String, bool)> = SERVER_FEATURES
        .iter()
        .map(|f| (f.to_string(), on.contains(f)))
        .collect();
    // Names wandb 0.31 does not know are reported too (as a newer server
    // would): clients must ignore them.
    for f in on {
        if !SERVER_FEATURES.contains(&f) {
            out.push((f.to_string(), true));
        }
    }
    out
}

impl Default for Config {
    fn default() -> Self {
        Self {
            api_key: None,
            // As the W&B cloud: every feature on.
            features: features("all"),
            upload_token: "standin-token".into(),
            inject: Vec::new(),
            latency: std::time::Duration::ZERO,
            tls: None,
            public_url: None,
        }
    }
}

struct Shared {
    store: Store,
    config: Config,
    base_url: String,
    inject: Mutex<Vec<Inject>>,
    pace: pace::Pace,
}

/// A running stand-in; stops when dropped.
pub struct StandIn {
    pub base_url: String,
    /// Where it listens (the base URL may name another host).
    pub addr: SocketAddr,
    /// The CA to trust (PEM) when it serves HTTPS.
    pub ca_pem: Option<String>,
    pub store: Store,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StandIn {
    /// Starts on a loopback port of its own (`port` 0: any free port), on a
    /// thread with its own runtime, so synchronous tests can use it.
    pub fn spawn(config: Config, port: u16, store: Store) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind(("127.0.0.1", port))?;
        listener.set_nonblocking(true)?;
        let addr: SocketAddr = listener.local_addr()?;
        let tls = match &config.tls {
            Some(names) => Some(tls::generate(names).map_err(std::io::Error::other)?),
            None => None,
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let base_url = config
            .public_url
            .clone()
            .map(|u| u.trim_end_matches('/').to_string())
            .unwrap_or_else(|| format!("{scheme}://{addr}"));
        let ca_pem = tls.as_ref().map(|(ca, _)| ca.clone());
        let shared = Arc::new(Shared {
            inject: Mutex::new(config.inject.clone()),
            pace: pace::Pace::new(config.latency),
            store: store.clone(),
            config,
            base_url: base_url.clone(),
        });
        let app = routes::router(shared.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("standin".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("stand-in runtime");
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                    let stopped = async {
                        let _ = stopped.await;
                    };
                    match tls {
                        Some((_, config)) => {
                            let listener =
                                tls::TlsListener::new(listener, config).expect("TLS listener");
                            let _ = axum::serve(listener, app)
                                .with_graceful_shutdown(stopped)
                                .await;
                        }
                        None => {
                            let _ = axum::serve(listener, app)
                                .with_graceful_shutdown(stopped)
                                .await;
                        }
                    }
                });
            })?;
        Ok(Self {
            base_url,
            addr,
            ca_pem,
            store,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Adds a failure to serve.
    pub fn inject(&self, inject: Inject) {
        self.shared.inject.lock().unwrap().push(inject);
    }

    /// Delays every answer from now on (requests waiting already included)
    /// by `latency` after its request arrived.
    pub fn set_latency(&self, latency: std::time::Duration) {
        self.shared.pace.set_latency(latency);
    }

    /// Stops answering `target` requests (`file_stream`, `upload`, or a
    /// GraphQL operation name such as `UpsertBucket`) until [`release`].
    ///
    /// [`release`]: StandIn::release
    pub fn hold(&self, target: &str) {
        self.shared.pace.hold(target);
    }

    /// Answers `target` requests again, those waiting first.
    pub fn release(&self, target: &str) {
        self.shared.pace.release(target);
    }

    /// Marks a run stopped from the UI: the next file stream answer says so.
    pub fn stop_run(&self, key: &RunKey) {
        self.store.set_flag(key, "stopped", 1);
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
