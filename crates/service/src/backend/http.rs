//! Requests to the W&B backend with the retry behaviour users rely on.
//!
//! Three kinds of traffic, each with its own retry class (as wandb-core):
//! GraphQL and the file stream retry most failures (connection errors,
//! 5xx except 501, 4xx except 400/401/403/404/409/410/413/422; UpsertBucket
//! also retries 409), file transfers retry connection errors, 429 and 5xx
//! except 501. Backoff is `min × 2^attempt` plus up to 25% jitter, capped at
//! `max`, unless the response says `Retry-After`, which is used as given.
//! Every retry is logged and reported to the user through the network
//! status the SDK polls; nothing fails silently.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;

use super::BackendError;

/// Which failures are worth another attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryClass {
    /// GraphQL and the file stream.
    MostFailures,
    /// UpsertBucket: like `MostFailures`, and 409 (a conflict resolves).
    UpsertBucket,
    /// Uploads and downloads.
    FileTransfer,
}

impl RetryClass {
    fn retries(self, status: StatusCode) -> bool {
        let s = status.as_u16();
        match self {
            RetryClass::FileTransfer => s == 429 || (500..600).contains(&s) && s != 501,
            RetryClass::MostFailures | RetryClass::UpsertBucket => {
                if s == 409 {
                    return self == RetryClass::UpsertBucket;
                }
                if (400..500).contains(&s) {
                    return !matches!(s, 400 | 401 | 403 | 404 | 410 | 413 | 422);
                }
                s >= 500 && s != 501 || s >= 600
            }
        }
    }
}

/// How many attempts, how long to wait between them, how long each may take.
#[derive(Debug, Clone, Copy)]
pub struct RetryConfig {
    pub max_retries: u32,
    pub wait_min: Duration,
    pub wait_max: Duration,
    pub timeout: Option<Duration>,
}

impl RetryConfig {
    fn backoff(&self, attempt: u32) -> Duration {
        let base = self.wait_min.as_secs_f64() * 2f64.powi(attempt.min(30) as i32);
        let jittered = base * (1.0 + fastrand::f64() * 0.25);
        Duration::from_secs_f64(jittered.min(self.wait_max.as_secs_f64()))
    }
}

/// Retries the user should hear about (`network_status`).
#[derive(Debug, Default, Clone)]
pub struct NetworkEvents {
    pending: Arc<Mutex<Vec<(u16, String)>>>,
}

impl NetworkEvents {
    fn push(&self, status: u16, text: String) {
        if let Ok(mut p) = self.pending.lock()
            && p.len() < 64
        {
            p.push((status, text));
        }
    }

    /// The events since the last call.
    pub fn take(&self) -> Vec<(u16, String)> {
        self.pending
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default()
    }
}

/// `Retry-After` in seconds (possibly fractional) or as an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get("retry-after")?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(when.duration_since(SystemTime::now()).unwrap_or_default())
}

/// The server's own words about a failure: GraphQL `errors[].message`s, or
/// the body's start.
pub fn error_message(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        let messages: Vec<&str> = v
            .get("errors")
            .and_then(|e| e.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|e| e.get("message").and_then(|m| m.as_str()))
                    .collect()
            })
            .unwrap_or_default();
        if !messages.is_empty() {
            return messages.join("; ");
        }
        if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
            return e.to_string();
        }
    }
    let text = String::from_utf8_lossy(body);
    text.chars()
        .take(300)
        .collect::<String>()
        .trim()
        .to_string()
}

/// Whether a transport error's chain says the server's certificate was
/// refused. rustls says so in its errors' text, which is all that survives
/// the I/O error wrapping it (as Go's retryablehttp matches text too).
fn is_untrusted_certificate(chain: &str) -> bool {
    chain.contains("invalid peer certificate")
}

/// Sends a request (built anew for each attempt) until it succeeds, fails
/// for good, or `deadline` passes. `what` names it in logs and errors.
pub async fn send(
    build: impl Fn() -> reqwest::RequestBuilder,
    class: RetryClass,
    cfg: &RetryConfig,
    deadline: Option<tokio::time::Instant>,
    events: &NetworkEvents,
    what: &str,
) -> Result<(HeaderMap, Bytes), BackendError> {
    let mut attempt = 0u32;
    loop {
        let mut req = build();
        if let Some(t) = cfg.timeout {
            req = req.timeout(t);
        }
        // What the SDK prints: "<status> encountered (<text>), retrying".
        let mut shown = String::new();
        let started = std::time::Instant::now();
        let (wait, failure) = match req.send().await {
            Ok(resp) => {
                let status = resp.status();
                tracing::debug!(
                    status = status.as_u16(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    attempt,
                    "http: {what}"
                );
                let headers = resp.headers().clone();
                let body = resp.bytes().await.unwrap_or_default();
                if status.is_success() {
                    return Ok((headers, body));
                }
                let message = error_message(&body);
                shown = String::from_utf8_lossy(&body).chars().take(1000).collect();
                let failure = BackendError::Http {
                    what: what.to_string(),
                    status: status.as_u16(),
                    message,
                };
                if !class.retries(status) {
                    return Err(failure);
                }
                (
                    retry_after(&headers).unwrap_or_else(|| cfg.backoff(attempt)),
                    failure,
                )
            }
            Err(e) => {
                let message = crate::runlog::error_chain(&e);
                let permanent = e.is_builder() || is_untrusted_certificate(&message);
                let failure = BackendError::Transport {
                    what: what.to_string(),
                    message,
                };
                // As wandb-core (retryablehttp): a certificate that is not
                // trusted or a request that cannot be built will not get
                // better by asking again.
                if permanent {
                    return Err(failure);
                }
                (cfg.backoff(attempt), failure)
            }
        };
        if attempt >= cfg.max_retries {
            return Err(BackendError::RetriesExhausted(Box::new(failure)));
        }
        if let Some(deadline) = deadline
            && tokio::time::Instant::now() + wait > deadline
        {
            return Err(BackendError::TimedOut(Box::new(failure)));
        }
        let status = match &failure {
            BackendError::Http { status, .. } => *status,
            _ => 0,
        };
        tracing::warn!(
            "{failure}; retrying in {:.1}s (attempt {})",
            wait.as_secs_f64(),
            attempt + 1
        );
        if shown.is_empty() {
            shown = failure.to_string();
        }
        events.push(status, shown.trim().to_string());
        tokio::time::sleep(wait).await;
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_classes_follow_wandb_core() {
        let s = |c| StatusCode::from_u16(c).unwrap();
        for code in [408, 425, 429, 499, 500, 502, 503] {
            assert!(RetryClass::MostFailures.retries(s(code)), "{code}");
        }
        for code in [400, 401, 403, 404, 409, 410, 413, 422, 501] {
            assert!(!RetryClass::MostFailures.retries(s(code)), "{code}");
        }
        assert!(RetryClass::UpsertBucket.retries(s(409)));
        assert!(!RetryClass::UpsertBucket.retries(s(400)));
        assert!(RetryClass::FileTransfer.retries(s(429)));
        assert!(RetryClass::FileTransfer.retries(s(503)));
        assert!(!RetryClass::FileTransfer.retries(s(403)));
        assert!(!RetryClass::FileTransfer.retries(s(408)));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let cfg = RetryConfig {
            max_retries: 5,
            wait_min: Duration::from_secs(2),
            wait_max: Duration::from_secs(60),
            timeout: None,
        };
        let first = cfg.backoff(0).as_secs_f64();
        assert!((2.0..=2.5).contains(&first), "{first}");
        assert!(cfg.backoff(10) <= Duration::from_secs(60));
        let mut h = HeaderMap::new();
        h.insert("retry-after", "1.5".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_millis(1500)));
    }

    #[test]
    fn server_messages_are_extracted() {
        assert_eq!(
            error_message(br#"{"errors":[{"message":"a"},{"message":"b"}]}"#),
            "a; b"
        );
        assert_eq!(error_message(b"plain failure"), "plain failure");
    }
}
