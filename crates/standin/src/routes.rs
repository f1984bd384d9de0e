//! The HTTP side of the stand-in: the routes, their handlers, and the
//! checks every request goes through (key, injected failures, pacing, the
//! request log).

use std::io::Read;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use base64::Engine as _;
use serde_json::{Value, json};

use crate::store::{RequestRow, RunKey};
use crate::{Shared, UPLOAD_TOKEN_HEADER, artifacts, graphql};

/// Largest GraphQL or file stream body accepted.
const MAX_BODY: usize = 256 << 20;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/graphql", post(graphql_handler))
        .route(
            "/files/{entity}/{project}/{run}/file_stream",
            post(file_stream_handler),
        )
        .route(
            "/storage/{entity}/{project}/{run}/{*path}",
            put(upload_handler).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route(
            "/artifacts/blobs/md5/{hex}",
            put(artifact_blob_put)
                .get(artifact_blob_get)
                .layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route(
            "/artifacts/manifests/{id}",
            put(artifact_manifest_put).get(artifact_manifest_get),
        )
        .route(
            "/artifacts/parts/{upload}/{part}",
            put(artifact_part_put).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        // W&B's service sends file stream requests of about 10 MiB (axum's
        // default limit is 2 MiB).
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(shared.clone(), paced))
        .with_state(shared)
}

/// Answers no sooner than the configured latency after the request came.
async fn paced(
    State(shared): State<Arc<Shared>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let arrived = tokio::time::Instant::now();
    let response = next.run(request).await;
    shared.pace.latency(arrived).await;
    response
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(String::from)
}

fn auth_scheme(headers: &HeaderMap) -> Option<String> {
    header(headers, "authorization").and_then(|a| a.split_whitespace().next().map(String::from))
}

fn authorized(shared: &Shared, headers: &HeaderMap) -> bool {
    let Some(key) = &shared.config.api_key else {
        return true;
    };
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("api:{key}"))
    );
    header(headers, "authorization").as_deref() == Some(expected.as_str())
}

/// The injected failure for `target`, if one is due.
fn injected(shared: &Shared, target: &str) -> Option<Response> {
    let mut rules = shared.inject.lock().unwrap();
    let rule = rules
        .iter_mut()
        .find(|r| r.target == target && r.times > 0)?;
    rule.times -= 1;
    let status = StatusCode::from_u16(rule.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = match &rule.graphql_error {
        Some(message) => json!({"errors": [{"message": message}]}),
        None => json!({"errors": [{"message": "the stand-in injected failure"}]}),
    };
    let mut resp = (status, axum::Json(body)).into_response();
    if let Some(after) = &rule.retry_after
        && let Ok(v) = HeaderValue::from_str(after)
    {
        resp.headers_mut().insert("retry-after", v);
    }
    Some(resp)
}

fn log(
    shared: &Shared,
    headers: &HeaderMap,
    method: &str,
    path: &str,
    op: Option<String>,
    status: u16,
    len: usize,
) {
    log_sized(shared, headers, method, path, op, status, len, len);
}

/// [`log`] of a body that was compressed: `decoded` bytes once inflated.
#[allow(clippy::too_many_arguments)]
fn log_sized(
    shared: &Shared,
    headers: &HeaderMap,
    method: &str,
    path: &str,
    op: Option<String>,
    status: u16,
    len: usize,
    decoded: usize,
) {
    shared.store.log_request(&RequestRow {
        method: method.into(),
        path: path.into(),
        operation: op,
        status,
        user_agent: header(headers, "user-agent"),
        auth: auth_scheme(headers),
        gzip: header(headers, "content-encoding").as_deref() == Some("gzip"),
        body_len: len,
        decoded_len: decoded,
        x_headers: headers
            .iter()
            .filter(|(k, _)| k.as_str().starts_with("x-"))
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect(),
    });
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        axum::Json(json!({"errors": [{"message": "unauthorized"}]})),
    )
        .into_response()
}

fn decode_body(headers: &HeaderMap, body: &Bytes) -> Result<Vec<u8>, String> {
    if header(headers, "content-encoding").as_deref() == Some("gzip") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut out)
            .map_err(|e| format!("bad gzip body: {e}"))?;
        Ok(out)
    } else {
        Ok(body.to_vec())
    }
}

async fn graphql_handler(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req: graphql::Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            log(&shared, &headers, "POST", "/graphql", None, 400, body.len());
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"errors": [{"message": format!("bad request: {e}")}]})),
            )
                .into_response();
        }
    };
    let op = graphql::operation_name(&req);
    if let Some(op) = &op {
        shared.pace.unless_held(op).await;
    }
    if !authorized(&shared, &headers) {
        log(&shared, &headers, "POST", "/graphql", op, 401, body.len());
        return unauthorized();
    }
    if let Some(resp) = op.as_deref().and_then(|o| injected(&shared, o)) {
        log(
            &shared,
            &headers,
            "POST",
            "/graphql",
            op,
            resp.status().as_u16(),
            body.len(),
        );
        return resp;
    }
    let shared2 = shared.clone();
    let shared_run = header(&headers, "x-wandb-use-async-filestream").as_deref() == Some("true");
    let answer = tokio::task::spawn_blocking(move || {
        let variables = req
            .variables
            .as_ref()
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let ctx = graphql::Ctx {
            store: &shared2.store,
            config: &shared2.config,
            base_url: &shared2.base_url,
            variables,
            shared_run,
        };
        graphql::execute(&req, &ctx)
    })
    .await
    .unwrap_or_else(|e| json!({"errors": [{"message": format!("stand-in failure: {e}")}]}));
    log(&shared, &headers, "POST", "/graphql", op, 200, body.len());
    axum::Json(answer).into_response()
}

async fn file_stream_handler(
    State(shared): State<Arc<Shared>>,
    Path((entity, project, run)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = format!("/files/{entity}/{project}/{run}/file_stream");
    let op = Some("file_stream".to_string());
    shared.pace.unless_held("file_stream").await;
    if !authorized(&shared, &headers) {
        log(&shared, &headers, "POST", &path, op, 401, body.len());
        return unauthorized();
    }
    if let Some(resp) = injected(&shared, "file_stream") {
        log(
            &shared,
            &headers,
            "POST",
            &path,
            op,
            resp.status().as_u16(),
            body.len(),
        );
        return resp;
    }
    let mut decoded = body.len();
    let parsed = decode_body(&headers, &body).and_then(|raw| {
        decoded = raw.len();
        serde_json::from_slice::<Value>(&raw)
            .map_err(|e| format!("file stream body is not JSON: {e}"))
    });
    let request = match parsed {
        Ok(v) => v,
        Err(e) => {
            log(&shared, &headers, "POST", &path, op, 400, body.len());
            return (StatusCode::BAD_REQUEST, axum::Json(json!({"error": e}))).into_response();
        }
    };
    let key = RunKey::new(&entity, &project, &run);
    let store = shared.store.clone();
    // A shared run's writer: its lines are merged with the other writers'.
    let client = (header(&headers, "x-wandb-use-async-filestream").as_deref() == Some("true"))
        .then(|| header(&headers, "x-wandb-async-client-id").unwrap_or_default());
    let stopped = tokio::task::spawn_blocking(move || {
        store.ensure_run(&key);
        if let Some(files) = request.get("files").and_then(Value::as_object) {
            for (name, file) in files {
                let offset = file.get("offset").and_then(Value::as_i64).unwrap_or(0);
                let content: Vec<String> = file
                    .get("content")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|l| l.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default();
                match (name.as_str(), &client) {
                    ("wandb-summary.json", None) => {
                        if let Some(last) = content.last() {
                            store.set_summary(&key, last);
                        }
                    }
                    ("wandb-summary.json", Some(_)) => {
                        if let Some(last) = content.last() {
                            store.merge_summary(&key, last);
                        }
                    }
                    (_, None) => store.put_lines(&key, name, offset, &content),
                    (_, Some(client)) => {
                        store.put_lines_async(&key, name, client, offset, &content)
                    }
                }
            }
        }
        if let Some(uploaded) = request.get("uploaded").and_then(Value::as_array) {
            let paths: Vec<String> = uploaded
                .iter()
                .filter_map(|p| p.as_str().map(String::from))
                .collect();
            store.add_uploaded(&key, &paths);
        }
        if request.get("preempting").and_then(Value::as_bool) == Some(true) {
            store.set_flag(&key, "preempting", 1);
        }
        if request.get("complete").and_then(Value::as_bool) == Some(true) {
            store.finish(&key, request.get("exitcode").and_then(Value::as_i64));
        }
        store.run(&key).is_some_and(|r| r.stopped)
    })
    .await
    .unwrap_or(false);
    log_sized(
        &shared,
        &headers,
        "POST",
        &path,
        op,
        200,
        body.len(),
        decoded,
    );
    axum::Json(json!({"exitcode": null, "limits": {}, "stopped": stopped})).into_response()
}

/// The checks every upload PUT goes through: the upload token, then any
/// injected failure for `op`. `Some` is the answer to give instead.
fn refuse_upload(
    shared: &Shared,
    headers: &HeaderMap,
    url_path: &str,
    op: &str,
    len: usize,
) -> Option<Response> {
    let op_name = Some(op.to_string());
    if header(headers, UPLOAD_TOKEN_HEADER).as_deref() != Some(shared.config.upload_token.as_str())
    {
        log(shared, headers, "PUT", url_path, op_name, 403, len);
        return Some((StatusCode::FORBIDDEN, "missing or wrong upload token").into_response());
    }
    let resp = injected(shared, op)?;
    log(
        shared,
        headers,
        "PUT",
        url_path,
        op_name,
        resp.status().as_u16(),
        len,
    );
    Some(resp)
}

async fn upload_handler(
    State(shared): State<Arc<Shared>>,
    Path((entity, project, run, path)): Path<(String, String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let url_path = format!("/storage/{entity}/{project}/{run}/{path}");
    let op = Some("upload".to_string());
    shared.pace.unless_held("upload").await;
    if let Some(refused) = refuse_upload(&shared, &headers, &url_path, "upload", body.len()) {
        return refused;
    }
    // `Path` has percent-decoded the segments already (decoding again
    // would turn a file named `%41` into `A`).
    let key = RunKey::new(&entity, &project, &run);
    let file = path;
    let store = shared.store.clone();
    let len = body.len();
    let _ = tokio::task::spawn_blocking(move || store.put_file(&key, &file, &body)).await;
    log(&shared, &headers, "PUT", &url_path, op, 200, len);
    StatusCode::OK.into_response()
}

/// PUT of an artifact file (upload token required, as for run files).
async fn artifact_blob_put(
    State(shared): State<Arc<Shared>>,
    Path(hex): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let url_path = format!("/artifacts/blobs/md5/{hex}");
    let op = Some("artifact_upload".to_string());
    if let Some(refused) =
        refuse_upload(&shared, &headers, &url_path, "artifact_upload", body.len())
    {
        return refused;
    }
    let store = shared.store.clone();
    let len = body.len();
    let stored = tokio::task::spawn_blocking(move || artifacts::put_blob(&store, &hex, &body))
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
    let status = if stored.is_ok() { 200 } else { 400 };
    log(&shared, &headers, "PUT", &url_path, op, status, len);
    match stored {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e).into_response(),
    }
}

/// GET of an artifact file (no auth: the SDK downloads with plain requests).
async fn artifact_blob_get(
    State(shared): State<Arc<Shared>>,
    Path(hex): Path<String>,
    headers: HeaderMap,
) -> Response {
    let url_path = format!("/artifacts/blobs/md5/{hex}");
    let store = shared.store.clone();
    let blob = tokio::task::spawn_blocking(move || store.artifact_blob(&hex))
        .await
        .ok()
        .flatten();
    serve(&shared, &headers, &url_path, "artifact_download", blob)
}

/// A download: the bytes, or 404; logged either way.
fn serve(
    shared: &Shared,
    headers: &HeaderMap,
    url_path: &str,
    op: &str,
    content: Option<Vec<u8>>,
) -> Response {
    let status = if content.is_some() { 200 } else { 404 };
    log(
        shared,
        headers,
        "GET",
        url_path,
        Some(op.to_string()),
        status,
        0,
    );
    match content {
        Some(b) => b.into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn artifact_manifest_put(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let url_path = format!("/artifacts/manifests/{id}");
    let op = Some("artifact_manifest_upload".to_string());
    if let Some(refused) = refuse_upload(
        &shared,
        &headers,
        &url_path,
        "artifact_manifest_upload",
        body.len(),
    ) {
        return refused;
    }
    let len = body.len();
    match artifacts::put_manifest(&shared.store, id, &body) {
        Ok(()) => {
            log(&shared, &headers, "PUT", &url_path, op, 200, len);
            StatusCode::OK.into_response()
        }
        Err(e) => {
            log(&shared, &headers, "PUT", &url_path, op, 400, len);
            (StatusCode::BAD_REQUEST, e).into_response()
        }
    }
}

async fn artifact_manifest_get(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<i64>,
    headers: HeaderMap,
) -> Response {
    let url_path = format!("/artifacts/manifests/{id}");
    let manifest = artifacts::get_manifest(&shared.store, id);
    serve(
        &shared,
        &headers,
        &url_path,
        "artifact_manifest_download",
        manifest,
    )
}

/// PUT of a multipart upload's part: no token (W&B's service sends only
/// Content-MD5, Content-Length and Content-Type there); answers the ETag.
async fn artifact_part_put(
    State(shared): State<Arc<Shared>>,
    Path((upload, part)): Path<(String, i64)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let url_path = format!("/artifacts/parts/{upload}/{part}");
    let op = Some("artifact_part_upload".to_string());
    let len = body.len();
    if let Some(md5) = header(&headers, "content-md5") {
        use base64::Engine as _;
        use md5::Digest as _;
        let actual = base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(&body));
        if actual != md5 {
            log(&shared, &headers, "PUT", &url_path, op, 400, len);
            return (StatusCode::BAD_REQUEST, "Content-MD5 does not match").into_response();
        }
    }
    let store = shared.store.clone();
    let etag =
        tokio::task::spawn_blocking(move || artifacts::put_part(&store, &upload, part, &body))
            .await
            .unwrap_or_default();
    log(&shared, &headers, "PUT", &url_path, op, 200, len);
    ([(axum::http::header::ETAG, etag)], StatusCode::OK).into_response()
}
