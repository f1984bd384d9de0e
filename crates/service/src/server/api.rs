//! Public-API sessions: in wandb 0.31.0, `wandb.Api()` (and what the SDK
//! builds on it: `run.use_artifact`, `Artifact.wait()`, login checks) does
//! not talk HTTP itself. It opens a session with `api_init_request` (the
//! settings: base URL, key, headers) and sends `api_request`s that the
//! service executes against the backend: GraphQL documents forwarded as
//! given, authentication (Viewer), server features.
//!
//! Requests run on the runtime, not on the connection's thread, so a slow
//! backend never holds up the records of a run on the same connection.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use reqwest::header::{HeaderMap, HeaderValue};
use wandb_proto::pb;
use wandb_proto::pb::api_request::Request as ApiReq;
use wandb_proto::pb::api_response::Response as ApiResp;

use crate::backend::compat::Rewrite;
use crate::backend::{Backend, BackendConfig, BackendError, http};

/// The open sessions of this service, by ID.
#[derive(Default)]
pub struct ApiSessions {
    next: AtomicU64,
    sessions: Mutex<HashMap<String, Backend>>,
}

impl ApiSessions {
    /// `api_init_request`: a session for these settings.
    pub fn open(&self, settings: Option<pb::Settings>) -> pb::ServerApiInitResponse {
        let settings = settings.unwrap_or_default();
        let backend = BackendConfig::from_settings(&settings).and_then(Backend::new);
        match backend {
            Ok(backend) => {
                let id = format!("api-{}", self.next.fetch_add(1, Ordering::Relaxed) + 1);
                self.lock().insert(id.clone(), backend);
                pb::ServerApiInitResponse {
                    api_id: id,
                    error_message: String::new(),
                }
            }
            Err(e) => pb::ServerApiInitResponse {
                api_id: String::new(),
                error_message: e.to_string(),
            },
        }
    }

    /// `api_cleanup_request`.
    pub fn close(&self, id: &str) {
        self.lock().remove(id);
    }

    pub fn get(&self, id: &str) -> Option<Backend> {
        self.lock().get(id).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Backend>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn api_error(message: String, http_status: Option<u16>) -> pb::ApiResponse {
    pb::ApiResponse {
        response: Some(ApiResp::ApiErrorResponse(pb::ApiErrorResponse {
            message,
            error_type: None,
            http_status: http_status.map_or(0, i32::from),
        })),
    }
}

fn backend_error(e: &BackendError) -> pb::ApiResponse {
    api_error(e.to_string(), e.status())
}

/// Executes one `api_request` of a session.
pub async fn execute(backend: Option<Backend>, request: Option<ApiReq>) -> pb::ApiResponse {
    let Some(backend) = backend else {
        return api_error(
            "no such API session (api_init_request first, or it was cleaned up)".into(),
            None,
        );
    };
    match request {
        Some(ApiReq::AuthRequest(auth)) => match auth.request {
            Some(pb::auth_request::Request::AuthenticateRequest(_)) => {
                match backend.viewer().await {
                    Ok(v) => pb::ApiResponse {
                        response: Some(ApiResp::AuthResponse(pb::AuthResponse {
                            response: Some(pb::auth_response::Response::AuthenticateResponse(
                                pb::AuthenticateResponse {
                                    default_entity: v.entity,
                                    username: v.username,
                                    email: v.email,
                                    teams: v.teams,
                                    flags_json: v.flags_json,
                                },
                            )),
                        })),
                    },
                    Err(e) => backend_error(&e),
                }
            }
            _ => api_error(
                "access tokens (identity federation) are not supported by wandb-core-rs yet".into(),
                None,
            ),
        },
        Some(ApiReq::GraphqlRequest(gql)) => graphql(&backend, gql).await,
        Some(ApiReq::FeaturesRequest(f)) => match f.request {
            Some(pb::features_request::Request::Server(_)) => {
                let names = backend.server_features().await;
                let enabled = names
                    .iter()
                    .filter_map(|n| pb::ServerFeature::from_str_name(n))
                    .map(|f| f as i32)
                    .collect();
                pb::ApiResponse {
                    response: Some(ApiResp::FeaturesResponse(pb::FeaturesResponse {
                        response: Some(pb::features_response::Response::Server(
                            pb::ServerFeaturesResponse { enabled },
                        )),
                    })),
                }
            }
            _ => api_error(
                "organization features are not supported by wandb-core-rs yet".into(),
                None,
            ),
        },
        Some(other) => api_error(
            format!(
                "{} through the service is not supported by wandb-core-rs yet",
                api_request_name(&other)
            ),
            None,
        ),
        None => api_error("api_request without a request".into(), None),
    }
}

/// Forwards a GraphQL document; answers its `data` as JSON.
async fn graphql(backend: &Backend, gql: pb::GraphQlRequest) -> pb::ApiResponse {
    let mut variables: serde_json::Map<String, serde_json::Value> =
        if gql.variables_json.trim().is_empty() {
            serde_json::Map::new()
        } else {
            match serde_json::from_str(&gql.variables_json) {
                Ok(serde_json::Value::Object(m)) => m,
                Ok(serde_json::Value::Null) => serde_json::Map::new(),
                Ok(_) | Err(_) => {
                    return api_error("variables_json is not a JSON object".into(), None);
                }
            }
        };
    let rewrite = Rewrite {
        omit_variables: &gql.omit_variables,
        omit_fragments: &gql.omit_fragments,
        omit_fields: &gql.omit_fields,
        rename_fields: &gql.rename_fields,
    };
    let query = match rewrite.apply(&gql.query, &mut variables) {
        Ok(q) => q,
        Err(e) => return api_error(e, None),
    };
    let body = serde_json::json!({"query": query, "variables": variables}).to_string();
    let mut headers = HeaderMap::new();
    headers.insert(
        "X-WANDB-USERNAME",
        HeaderValue::from_str(&backend.config.username).unwrap_or(HeaderValue::from_static("")),
    );
    match backend.graphql_raw(body, headers).await {
        Ok(bytes) => {
            let answer: serde_json::Value = match serde_json::from_slice(&bytes) {
                Ok(v) => v,
                Err(e) => return api_error(format!("the answer is not JSON: {e}"), None),
            };
            let data = answer
                .get("data")
                .cloned()
                .unwrap_or(serde_json::Value::Null);
            let failed = answer
                .get("errors")
                .and_then(|e| e.as_array())
                .is_some_and(|e| !e.is_empty());
            if failed && data.is_null() {
                return api_error(http::error_message(&bytes), Some(200));
            }
            pb::ApiResponse {
                response: Some(ApiResp::GraphqlResponse(pb::GraphQlResponse {
                    data_json: data.to_string(),
                })),
            }
        }
        Err(e) => backend_error(&e),
    }
}

/// `authenticate` (a server request, used by `wandb login`): checks a key.
pub async fn authenticate(
    request: pb::ServerAuthenticateRequest,
) -> pb::ServerAuthenticateResponse {
    let settings = pb::Settings {
        api_key: Some(request.api_key),
        base_url: Some(request.base_url).filter(|b| !b.is_empty()),
        ..Default::default()
    };
    let result = match BackendConfig::from_settings(&settings).and_then(Backend::new) {
        Ok(backend) => backend.viewer().await,
        Err(e) => Err(e),
    };
    match result {
        Ok(v) => pb::ServerAuthenticateResponse {
            default_entity: v.entity,
            error_status: String::new(),
            info: None,
        },
        Err(e) => pb::ServerAuthenticateResponse {
            default_entity: String::new(),
            error_status: e.to_string(),
            info: None,
        },
    }
}

fn api_request_name(r: &ApiReq) -> &'static str {
    match r {
        ApiReq::ReadRunHistoryRequest(_) => "read_run_history",
        ApiReq::DownloadFileRequest(_) => "download_file",
        ApiReq::UploadFileRequest(_) => "upload_file",
        ApiReq::MarkRunFilesUploadedRequest(_) => "mark_run_files_uploaded",
        ApiReq::StopRunRequest(_) => "stop_run",
        ApiReq::CreateCustomChartRequest(_) => "create_custom_chart",
        ApiReq::RunQueueOperationRequest(_) => "run_queue_operation",
        ApiReq::OpenTelemetryRequest(_) => "open_telemetry",
        ApiReq::ReadRunConsoleLogsRequest(_) => "read_run_console_logs",
        ApiReq::AuthRequest(_) => "auth",
        ApiReq::GraphqlRequest(_) => "graphql",
        ApiReq::FeaturesRequest(_) => "features",
    }
}
