//! The syncs of a service, for the SDK's `init_sync` / `sync` /
//! `sync_status` requests (what `wandb sync` sends).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use wandb_proto::pb;

use super::paths::discover;
use super::session::{Message, Severity, SyncOptions, SyncSession};

/// Syncs asked for (`init_sync`) and running (`sync`), by ID.
#[derive(Default)]
pub struct Registry {
    next: AtomicU64,
    pending: Mutex<HashMap<String, pb::ServerInitSyncRequest>>,
    ongoing: Mutex<HashMap<String, Arc<SyncSession>>>,
}

impl Registry {
    /// Remembers the request; nothing is read until `sync`.
    pub fn init(&self, request: pb::ServerInitSyncRequest) -> String {
        let id = format!("sync-{}", self.next.fetch_add(1, Ordering::Relaxed));
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), request);
        id
    }

    /// Runs a sync to the end; returns the messages not yet handed out.
    pub async fn sync(&self, id: &str, parallelism: u32) -> Vec<pb::ServerSyncMessage> {
        let Some(request) = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id)
        else {
            return vec![to_proto(&Message {
                severity: Severity::Error,
                content: format!("Internal error: operation unknown or already started: {id}"),
            })];
        };
        let session = Arc::new(session_for(request, parallelism));
        self.ongoing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_string(), session.clone());
        session.run().await;
        self.ongoing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        session.take_new_messages().iter().map(to_proto).collect()
    }

    /// Progress and new messages of a running sync (empty otherwise).
    pub fn status(&self, id: &str) -> pb::ServerSyncStatusResponse {
        let session = self
            .ongoing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned();
        match session {
            Some(s) => pb::ServerSyncStatusResponse {
                stats: s.operation_stats(),
                new_messages: s.take_new_messages().iter().map(to_proto).collect(),
            },
            None => Default::default(),
        }
    }
}

fn session_for(request: pb::ServerInitSyncRequest, parallelism: u32) -> SyncSession {
    let cwd = PathBuf::from(&request.cwd);
    let mut problems = Vec::new();
    let mut paths = Vec::new();
    for p in &request.path {
        let path = Path::new(p);
        if path.is_absolute() {
            paths.push(path.to_path_buf());
        } else if cwd.is_absolute() {
            paths.push(cwd.join(path));
        } else {
            problems.push(format!("Failed to resolve \"{p}\", skipping."));
        }
    }
    let (targets, found_problems) = discover(&paths, &cwd);
    problems.extend(found_problems);
    let nonempty = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let options = SyncOptions {
        settings: request.settings.unwrap_or_default(),
        new_entity: nonempty(&request.new_entity),
        new_project: nonempty(&request.new_project),
        new_run_id: nonempty(&request.new_run_id),
        new_job_type: nonempty(&request.new_job_type),
        tag_replacements: request.tag_replacements,
        live: request.live,
        // `wandb beta sync --live` waits for the exit record, as wandb-core.
        stale_after: None,
        // The CLI filters synced runs itself.
        skip_synced: false,
        dry_run: false,
        parallelism: parallelism.max(1) as usize,
    };
    SyncSession::new(targets, problems, options, &cwd)
}

fn to_proto(m: &Message) -> pb::ServerSyncMessage {
    use pb::server_sync_message::Severity as S;
    pb::ServerSyncMessage {
        severity: match m.severity {
            Severity::Info => S::Info,
            Severity::Warning => S::Warning,
            Severity::Error => S::Error,
        } as i32,
        content: m.content.clone(),
    }
}
