//! The W&B backend as the service sees it: GraphQL, the file stream and
//! file transfers over HTTP, with credentials only on URLs under the base
//! URL (never on upload URLs), and the retry policies of [`http`].
//!
//! * [`http`]: retries, backoff, `Retry-After`, network status for the SDK.
//! * [`graphql`]: the operations the service sends, with our documents.
//! * [`compat`]: rewrites of the public API's documents for older servers.

pub mod compat;
pub mod graphql;
pub mod http;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use wandb_proto::pb;

use self::http::{NetworkEvents, RetryClass, RetryConfig};

/// What the service says to the backend about itself.
pub const USER_AGENT: &str = concat!(
    "wandb-core/0.31.0 wandb-core-rs/",
    env!("CARGO_PKG_VERSION")
);

/// A failed exchange with the backend, with the server's message.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    #[error("{what}: HTTP {status}: {message}")]
    Http {
        what: String,
        status: u16,
        message: String,
    },
    #[error("{what}: {message}")]
    Transport { what: String, message: String },
    #[error("{what}: {message}")]
    GraphQL { what: String, message: String },
    #[error("{0} (retries exhausted)")]
    RetriesExhausted(Box<BackendError>),
    #[error("timed out while retrying: {0}")]
    TimedOut(Box<BackendError>),
    #[error("{0}")]
    Config(String),
    /// The request cannot be served as asked (the SDK raises a
    /// `UsageError`): a resume mode the run's existence contradicts.
    #[error("{0}")]
    Usage(String),
}

impl BackendError {
    /// The HTTP status behind the error, if any.
    pub fn status(&self) -> Option<u16> {
        match self {
            BackendError::Http { status, .. } => Some(*status),
            BackendError::RetriesExhausted(e) | BackendError::TimedOut(e) => e.status(),
            _ => None,
        }
    }
}

/// Connection settings from a run's (or API session's) settings.
#[derive(Debug, Clone)]
pub struct BackendConfig {
    /// Without a trailing slash.
    pub base_url: String,
    pub api_key: String,
    pub extra_headers: Vec<(String, String)>,
    pub username: String,
    pub email: String,
    pub server_side_derived_summary: bool,
    /// Shared mode (`mode="shared"`): this writer's ID among the run's
    /// writers, random per stream. The backend then takes the file stream
    /// asynchronously, ordering the rows of every writer itself.
    pub shared_client_id: Option<String>,
    /// `http_proxy`, `https_proxy`: W&B's traffic only, each for its scheme.
    pub http_proxy: Option<String>,
    pub https_proxy: Option<String>,
    /// `insecure_disable_ssl`: no certificate checks.
    pub insecure_disable_ssl: bool,
    pub graphql: RetryConfig,
    pub filestream: RetryConfig,
    pub transfer: RetryConfig,
}

fn secs(v: Option<f64>, default: f64) -> Duration {
    Duration::from_secs_f64(v.filter(|s| s.is_finite() && *s >= 0.0).unwrap_or(default))
}

impl BackendConfig {
    pub fn from_settings(s: &pb::Settings) -> Result<Self, BackendError> {
        let base_url = s
            .base_url
            .clone()
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| "https://api.wandb.ai".to_string())
            .trim_end_matches('/')
            .to_string();
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(BackendError::Config(format!(
                "base_url {base_url:?} is not an http(s) URL"
            )));
        }
        let api_key = s.api_key.clone().filter(|k| !k.is_empty()).ok_or_else(|| {
            BackendError::Config("no API key: set WANDB_API_KEY or run `wandb login`".into())
        })?;
        let extra_headers = s
            .x_extra_http_headers
            .as_ref()
            .map(|m| {
                m.value
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let retry = |max: Option<i32>,
                     min: Option<f64>,
                     max_wait: Option<f64>,
                     timeout: Option<f64>,
                     d: (u32, f64, f64, Option<f64>)| RetryConfig {
            max_retries: max.map(|m| m.max(0) as u32).unwrap_or(d.0),
            wait_min: secs(min, d.1),
            wait_max: secs(max_wait, d.2),
            timeout: timeout
                .or(d.3)
                .filter(|t| *t > 0.0)
                .map(Duration::from_secs_f64),
        };
        Ok(Self {
            base_url,
            api_key,
            extra_headers,
            username: s.username.clone().unwrap_or_default(),
            email: s.email.clone().unwrap_or_default(),
            server_side_derived_summary: s.x_server_side_derived_summary.unwrap_or(false),
            // A UUIDv7, as wandb-core 0.31 sends it.
            shared_client_id: s
                .shared
                .unwrap_or(false)
                .then(|| uuid::Uuid::now_v7().to_string()),
            http_proxy: s.http_proxy.clone().filter(|p| !p.is_empty()),
            https_proxy: s.https_proxy.clone().filter(|p| !p.is_empty()),
            insecure_disable_ssl: s.insecure_disable_ssl.unwrap_or(false),
            graphql: retry(
                s.x_graphql_retry_max,
                s.x_graphql_retry_wait_min_seconds,
                s.x_graphql_retry_wait_max_seconds,
                s.x_graphql_timeout_seconds,
                (20, 2.0, 60.0, Some(30.0)),
            ),
            filestream: retry(
                s.x_file_stream_retry_max,
                s.x_file_stream_retry_wait_min_seconds,
                s.x_file_stream_retry_wait_max_seconds,
                s.x_file_stream_timeout_seconds,
                (10085, 2.0, 60.0, Some(180.0)),
            ),
            transfer: retry(
                s.x_file_transfer_retry_max,
                s.x_file_transfer_retry_wait_min_seconds,
                s.x_file_transfer_retry_wait_max_seconds,
                s.x_file_transfer_timeout_seconds,
                (20, 2.0, 60.0, None),
            ),
        })
    }
}

/// A connection to one backend. Cheap to clone.
#[derive(Clone)]
pub struct Backend {
    pub config: Arc<BackendConfig>,
    client: reqwest::Client,
    pub events: NetworkEvents,
    /// What is being sent now, for the SDK's progress display.
    pub operations: crate::operations::Operations,
    /// The server's enabled features, asked once (see `server_features`).
    features: Arc<tokio::sync::OnceCell<Vec<String>>>,
}

impl Backend {
    pub fn new(config: BackendConfig) -> Result<Self, BackendError> {
        let mut builder = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .danger_accept_invalid_certs(config.insecure_disable_ssl);
        for proxy in proxies(&config)? {
            builder = builder.proxy(proxy);
        }
        let client = builder.build().map_err(|e| {
            BackendError::Config(format!("HTTP client: {}", crate::runlog::error_chain(&e)))
        })?;
        Ok(Self {
            config: Arc::new(config),
            client,
            events: NetworkEvents::default(),
            operations: Default::default(),
            features: Default::default(),
        })
    }

    fn auth(&self) -> String {
        let token = base64::engine::general_purpose::STANDARD
            .encode(format!("api:{}", self.config.api_key));
        format!("Basic {token}")
    }

    /// A request to a path under the base URL, with credentials and the
    /// configured extra headers.
    fn api_request(&self, path: &str, headers: &HeaderMap) -> reqwest::RequestBuilder {
        let mut req = self
            .client
            .post(format!("{}{path}", self.config.base_url))
            .header("Authorization", self.auth())
            .header("Content-Type", "application/json");
        for (k, v) in &self.config.extra_headers {
            req = req.header(k, v);
        }
        // The server derives summary aggregates from the history it gets
        // (GraphQL and the file stream, as wandb-core sends it).
        if self.config.server_side_derived_summary {
            req = req.header("X-WANDB-SERVER-SIDE-DERIVED-SUMMARY", "true");
        }
        // Shared mode: every request says so (the backend must not race two
        // writers' UpsertBucket of one run), naming the writer.
        if self.config.shared_client_id.is_some() {
            req = req.header("X-WANDB-USE-ASYNC-FILESTREAM", "true");
        }
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req
    }

    /// Posts a GraphQL document; returns `data` (GraphQL errors in a 200
    /// answer are failures, not retried).
    pub async fn graphql(
        &self,
        operation: &str,
        query: &str,
        variables: serde_json::Value,
        class: RetryClass,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<serde_json::Value, BackendError> {
        let body =
            serde_json::json!({"query": query, "variables": variables, "operationName": operation})
                .to_string();
        let mut headers = HeaderMap::new();
        headers.insert("X-WANDB-USERNAME", header_value(&self.config.username));
        headers.insert("X-WANDB-USER-EMAIL", header_value(&self.config.email));
        if let Some(id) = &self.config.shared_client_id {
            headers.insert("X-WANDB-CLIENT-ID", header_value(id));
        }
        let (_, bytes) = http::send(
            || self.api_request("/graphql", &headers).body(body.clone()),
            class,
            &self.config.graphql,
            deadline,
            &self.events,
            operation,
        )
        .await?;
        let v: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| BackendError::GraphQL {
                what: operation.to_string(),
                message: format!("answer is not JSON: {e}"),
            })?;
        if v.get("errors")
            .and_then(|e| e.as_array())
            .is_some_and(|e| !e.is_empty())
            && v.get("data").is_none_or(|d| d.is_null())
        {
            return Err(BackendError::GraphQL {
                what: operation.to_string(),
                message: http::error_message(&bytes),
            });
        }
        Ok(v.get("data").cloned().unwrap_or(serde_json::Value::Null))
    }

    /// Forwards a GraphQL request as given (the Python public API's), with
    /// its headers; returns the raw answer body.
    pub async fn graphql_raw(
        &self,
        body: String,
        headers: HeaderMap,
    ) -> Result<Bytes, BackendError> {
        let (_, bytes) = http::send(
            || self.api_request("/graphql", &headers).body(body.clone()),
            RetryClass::MostFailures,
            &self.config.graphql,
            None,
            &self.events,
            "GraphQL (public API)",
        )
        .await?;
        Ok(bytes)
    }

    /// Posts a file stream body to `path` (gzip-compressed when asked);
    /// returns the answer's JSON.
    pub async fn file_stream(
        &self,
        path: &str,
        body: Bytes,
        gzip: bool,
    ) -> Result<serde_json::Value, BackendError> {
        let mut headers = HeaderMap::new();
        if gzip {
            headers.insert("Content-Encoding", HeaderValue::from_static("gzip"));
        }
        if let Some(id) = &self.config.shared_client_id {
            headers.insert("X-WANDB-ASYNC-CLIENT-ID", header_value(id));
        }

        let (_, bytes) = http::send(
            || self.api_request(path, &headers).body(body.clone()),
            RetryClass::MostFailures,
            &self.config.filestream,
            None,
            &self.events,
            "file stream",
        )
        .await?;
        Ok(serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
    }

    /// PUTs bytes to an upload URL with the server's upload headers (never
    /// our credentials).
    pub async fn upload(
        &self,
        url: &str,
        headers: &[(String, String)],
        content: Bytes,
        what: &str,
    ) -> Result<(), BackendError> {
        self.upload_with_etag(url, headers, content, what)
            .await
            .map(|_| ())
    }

    /// Like [`Backend::upload`], returning the answer's `ETag` (multipart
    /// artifact parts need it).
    pub async fn upload_with_etag(
        &self,
        url: &str,
        headers: &[(String, String)],
        content: Bytes,
        what: &str,
    ) -> Result<Option<String>, BackendError> {
        let (answer, _) = http::send(
            || {
                let mut req = self.client.put(url).body(content.clone());
                // The configured extra headers go on every request, as
                // wandb-core sends them (credentials never do).
                for (k, v) in self.config.extra_headers.iter().chain(headers) {
                    if let (Ok(k), Ok(v)) =
                        (HeaderName::try_from(k.as_str()), HeaderValue::from_str(v))
                    {
                        req = req.header(k, v);
                    }
                }
                req
            },
            RetryClass::FileTransfer,
            &self.config.transfer,
            None,
            &self.events,
            what,
        )
        .await?;
        Ok(answer
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(String::from))
    }
}

/// The proxies of the settings, each for its scheme; a scheme without one
/// keeps the environment's (`HTTP_PROXY`/`HTTPS_PROXY`, minus `NO_PROXY`),
/// which reqwest would otherwise drop once any proxy is set: wandb-core's
/// routing. A `Proxy-Authorization` among the extra headers goes to the
/// proxy, also on CONNECT.
fn proxies(c: &BackendConfig) -> Result<Vec<reqwest::Proxy>, BackendError> {
    if c.http_proxy.is_none() && c.https_proxy.is_none() {
        return Ok(Vec::new()); // reqwest reads the environment itself
    }
    let env = |names: [&str; 2]| {
        names
            .iter()
            .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
    };
    let auth = c
        .extra_headers
        .iter()
        .find(|(k, v)| k.eq_ignore_ascii_case("proxy-authorization") && !v.is_empty())
        .and_then(|(_, v)| HeaderValue::from_str(v).ok());
    let bad = |name: &str, url: &str, e: reqwest::Error| {
        BackendError::Config(format!("{name} {url:?} is not a proxy URL: {e}"))
    };
    let mut out = Vec::new();
    let schemes: [(&str, &Option<String>, [&str; 2]); 2] = [
        ("http_proxy", &c.http_proxy, ["HTTP_PROXY", "http_proxy"]),
        (
            "https_proxy",
            &c.https_proxy,
            ["HTTPS_PROXY", "https_proxy"],
        ),
    ];
    for (name, setting, vars) in schemes {
        let (url, from_env) = match setting {
            Some(url) => (url.clone(), false),
            None => match env(vars) {
                Some(url) => (url, true),
                None => continue,
            },
        };
        let proxy = if name == "http_proxy" {
            reqwest::Proxy::http(&url)
        } else {
            reqwest::Proxy::https(&url)
        }
        .map_err(|e| bad(name, &url, e))?;
        let proxy = if from_env {
            proxy.no_proxy(reqwest::NoProxy::from_env())
        } else {
            proxy
        };
        out.push(match &auth {
            Some(auth) => proxy.custom_http_auth(auth.clone()),
            None => proxy,
        });
    }
    Ok(out)
}

fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}
