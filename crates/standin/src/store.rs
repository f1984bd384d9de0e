//! What the stand-in received, in SQLite, for tests to query: runs with
//! their parameters, config and summary; history, events and console lines
//! by line number (the file stream is idempotent by offset); uploaded files
//! with their bytes and SHA-256; alerts; and a log of every request.
//!
//! Shared runs (several writers, each file stream marked
//! `X-WANDB-USE-ASYNC-FILESTREAM` with its `X-WANDB-ASYNC-CLIENT-ID`) are
//! merged as W&B's backend merges them: each writer's offsets are its own,
//! every new line is appended after what any writer sent (a history row
//! gets the server's `_step`), a retry or console edit replaces only that
//! writer's line, and summary and config updates merge key by key instead
//! of replacing what the other writers sent.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS runs (
    entity TEXT NOT NULL, project TEXT NOT NULL, name TEXT NOT NULL,
    storage_id TEXT NOT NULL, display_name TEXT, notes TEXT, tags TEXT,
    group_name TEXT, job_type TEXT, host TEXT, program TEXT, sweep TEXT,
    config TEXT, summary TEXT, complete INTEGER NOT NULL DEFAULT 0,
    exitcode INTEGER, preempting INTEGER NOT NULL DEFAULT 0,
    stopped INTEGER NOT NULL DEFAULT 0, upserts INTEGER NOT NULL DEFAULT 0,
    finishes INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (entity, project, name));
CREATE TABLE IF NOT EXISTS client_lines (
    entity TEXT NOT NULL, project TEXT NOT NULL, run TEXT NOT NULL,
    file TEXT NOT NULL, client TEXT NOT NULL, client_line INTEGER NOT NULL,
    line INTEGER NOT NULL,
    PRIMARY KEY (entity, project, run, file, client, client_line));
CREATE TABLE IF NOT EXISTS lines (
    entity TEXT NOT NULL, project TEXT NOT NULL, run TEXT NOT NULL,
    file TEXT NOT NULL, line INTEGER NOT NULL, content TEXT NOT NULL,
    received_ms INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (entity, project, run, file, line));
CREATE TABLE IF NOT EXISTS files (
    entity TEXT NOT NULL, project TEXT NOT NULL, run TEXT NOT NULL,
    path TEXT NOT NULL, size INTEGER NOT NULL, sha256 TEXT NOT NULL,
    content BLOB NOT NULL, puts INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (entity, project, run, path));
CREATE TABLE IF NOT EXISTS uploaded (
    entity TEXT NOT NULL, project TEXT NOT NULL, run TEXT NOT NULL,
    path TEXT NOT NULL, PRIMARY KEY (entity, project, run, path));
CREATE TABLE IF NOT EXISTS alerts (
    entity TEXT, project TEXT, run TEXT, title TEXT, text TEXT,
    severity TEXT, wait_ms INTEGER);
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY, method TEXT NOT NULL, path TEXT NOT NULL,
    operation TEXT, status INTEGER NOT NULL, user_agent TEXT,
    auth TEXT, gzip INTEGER NOT NULL DEFAULT 0, body_len INTEGER NOT NULL,
    decoded_len INTEGER NOT NULL DEFAULT 0, x_headers TEXT NOT NULL DEFAULT '{}');
";

/// A run as stored.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RunRow {
    pub entity: String,
    pub project: String,
    pub name: String,
    pub storage_id: String,
    pub display_name: Option<String>,
    pub notes: Option<String>,
    pub tags: Vec<String>,
    pub group_name: Option<String>,
    pub job_type: Option<String>,
    pub host: Option<String>,
    pub program: Option<String>,
    /// The config as last upserted (`{key: {"value": v}}`).
    pub config: Value,
    /// The summary as last streamed.
    pub summary: Value,
    pub complete: bool,
    pub exitcode: Option<i64>,
    pub preempting: bool,
    pub stopped: bool,
    pub upserts: i64,
    /// How many times a file stream marked the run finished.
    pub finishes: i64,
}

/// A request the stand-in answered.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RequestRow {
    pub method: String,
    pub path: String,
    /// GraphQL operation, or `file_stream` / `upload`.
    pub operation: Option<String>,
    pub status: u16,
    pub user_agent: Option<String>,
    /// `Basic`, `Bearer`, or none.
    pub auth: Option<String>,
    pub gzip: bool,
    /// As it came (compressed, if it was).
    pub body_len: usize,
    /// Decompressed (the same when not compressed).
    pub decoded_len: usize,
    /// The `X-…` headers (W&B's own, the user's extra headers), names in
    /// lower case.
    pub x_headers: std::collections::BTreeMap<String, String>,
}

/// An uploaded file.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FileRow {
    pub path: String,
    pub size: u64,
    pub sha256: String,
    pub puts: u64,
}

/// Fields of an UpsertBucket, `None` meaning "leave as it is".
#[derive(Debug, Clone, Default)]
pub struct Upsert {
    pub entity: String,
    pub project: String,
    pub name: String,
    pub display_name: Option<String>,
    pub notes: Option<String>,
    pub tags: Option<Vec<String>>,
    pub group_name: Option<String>,
    pub job_type: Option<String>,
    pub host: Option<String>,
    pub program: Option<String>,
    pub sweep: Option<String>,
    pub config: Option<Value>,
    /// A shared run's writer: the config merges into what is there (each
    /// writer sends only its own), instead of replacing it.
    pub merge_config: bool,
}

/// Identifies a run.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RunKey {
    pub entity: String,
    pub project: String,
    pub name: String,
}

impl RunKey {
    pub fn new(entity: &str, project: &str, name: &str) -> Self {
        Self {
            entity: entity.into(),
            project: project.into(),
            name: name.into(),
        }
    }
}

/// The stand-in's storage. Cloning shares it.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
}

/// How many lines `file` of the run has.
fn lines_in(c: &Connection, key: &RunKey, file: &str) -> rusqlite::Result<i64> {
    c.query_row(
        "SELECT COALESCE(MAX(line) + 1, 0) FROM lines WHERE entity=?1 AND project=?2 AND run=?3 AND file=?4",
        params![key.entity, key.project, key.name, file],
        |r| r.get(0),
    )
}

fn json_or_null(text: Option<String>) -> Value {
    text.and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null)
}

impl Store {
    /// A store in memory, or in a file when `path` is given.
    pub fn open(path: Option<&Path>) -> rusqlite::Result<Self> {
        let conn = match path {
            Some(p) => Connection::open(p)?,
            None => Connection::open_in_memory()?,
        };
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(crate::artifacts::SCHEMA)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    pub(crate) fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> T {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        f(&conn).expect("stand-in store query")
    }

    /// Creates or updates a run; returns it and whether it was created.
    pub fn upsert(&self, u: &Upsert) -> (RunRow, bool) {
        let key = RunKey::new(&u.entity, &u.project, &u.name);
        let inserted = self.with(|c| {
            let exists: bool = c
                .query_row(
                    "SELECT 1 FROM runs WHERE entity=?1 AND project=?2 AND name=?3",
                    params![key.entity, key.project, key.name],
                    |_| Ok(true),
                )
                .optional()?
                .unwrap_or(false);
            if !exists {
                let storage_id = format!("UnVuOnYx{}", base64_id(&key));
                c.execute(
                    "INSERT INTO runs (entity, project, name, storage_id) VALUES (?1, ?2, ?3, ?4)",
                    params![key.entity, key.project, key.name, storage_id],
                )?;
            }
            let set = |col: &str, v: &Option<String>| -> rusqlite::Result<()> {
                if let Some(v) = v {
                    c.execute(
                        &format!(
                            "UPDATE runs SET {col}=?4 WHERE entity=?1 AND project=?2 AND name=?3"
                        ),
                        params![key.entity, key.project, key.name, v],
                    )?;
                }
                Ok(())
            };
            set("display_name", &u.display_name)?;
            set("notes", &u.notes)?;
            set("group_name", &u.group_name)?;
            set("job_type", &u.job_type)?;
            set("host", &u.host)?;
            set("program", &u.program)?;
            set("sweep", &u.sweep)?;
            set(
                "tags",
                &u.tags.as_ref().map(|t| serde_json::to_string(t).unwrap()),
            )?;
            let config = match (&u.config, u.merge_config) {
                (Some(new), true) => {
                    let old: Option<String> = c.query_row(
                        "SELECT config FROM runs WHERE entity=?1 AND project=?2 AND name=?3",
                        params![key.entity, key.project, key.name],
                        |r| r.get(0),
                    )?;
                    let mut merged = json_or_null(old);
                    merge_into(&mut merged, new);
                    Some(merged.to_string())
                }
                (new, _) => new.as_ref().map(|c| c.to_string()),
            };
            set("config", &config)?;
            c.execute(
                "UPDATE runs SET upserts = upserts + 1 WHERE entity=?1 AND project=?2 AND name=?3",
                params![key.entity, key.project, key.name],
            )?;
            Ok(!exists)
        });
        (self.run(&key).expect("just upserted"), inserted)
    }

    pub fn run(&self, key: &RunKey) -> Option<RunRow> {
        self.with(|c| {
            c.query_row(
                "SELECT entity, project, name, storage_id, display_name, notes, tags, group_name, job_type,
                        host, program, config, summary, complete, exitcode, preempting, stopped, upserts, finishes
                 FROM runs WHERE entity=?1 AND project=?2 AND name=?3",
                params![key.entity, key.project, key.name],
                row_to_run,
            )
            .optional()
        })
    }

    pub fn runs(&self) -> Vec<RunRow> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT entity, project, name, storage_id, display_name, notes, tags, group_name, job_type,
                        host, program, config, summary, complete, exitcode, preempting, stopped, upserts, finishes
                 FROM runs ORDER BY rowid",
            )?;
            st.query_map([], row_to_run)?.collect::<rusqlite::Result<Vec<_>>>()
        })
    }

    /// The lines of a file-stream file with when each arrived (Unix
    /// milliseconds), in line order: how late rows reach the backend.
    pub fn lines_received(&self, key: &RunKey, file: &str) -> Vec<(String, i64)> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT content, received_ms FROM lines WHERE entity = ?1 AND project = ?2 AND run = ?3 AND file = ?4 ORDER BY line",
            )?;
            st.query_map(params![key.entity, key.project, key.name, file], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
    }

    /// Stores lines of a file-stream file at consecutive line numbers from
    /// `offset` (replacing what was there: retries and console edits).
    pub fn put_lines(&self, key: &RunKey, file: &str, offset: i64, content: &[String]) {
        self.with(|c| {
            let mut st = c.prepare_cached(
                "INSERT OR REPLACE INTO lines (entity, project, run, file, line, content, received_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            let now = now_ms();
            for (i, line) in content.iter().enumerate() {
                st.execute(params![key.entity, key.project, key.name, file, offset + i as i64, line, now])?;
            }
            Ok(())
        })
    }

    /// A shared run's writer `client` sent lines from its own `offset`:
    /// each line it sends for the first time goes after every line of the
    /// file (a history row numbered there as `_step`); one it sent before
    /// (a retry, a console line edited) replaces its earlier version.
    pub fn put_lines_async(
        &self,
        key: &RunKey,
        file: &str,
        client: &str,
        offset: i64,
        content: &[String],
    ) {
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            let received = now_ms();
            for (i, text) in content.iter().enumerate() {
                let client_line = offset + i as i64;
                let known: Option<i64> = tx
                    .query_row(
                        "SELECT line FROM client_lines WHERE entity=?1 AND project=?2 AND run=?3 \
                         AND file=?4 AND client=?5 AND client_line=?6",
                        params![key.entity, key.project, key.name, file, client, client_line],
                        |r| r.get(0),
                    )
                    .optional()?;
                let line = match known {
                    Some(line) => line,
                    None => {
                        let line: i64 = tx.query_row(
                            "SELECT COALESCE(MAX(line) + 1, 0) FROM lines \
                             WHERE entity=?1 AND project=?2 AND run=?3 AND file=?4",
                            params![key.entity, key.project, key.name, file],
                            |r| r.get(0),
                        )?;
                        tx.execute(
                            "INSERT INTO client_lines VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                            params![
                                key.entity,
                                key.project,
                                key.name,
                                file,
                                client,
                                client_line,
                                line
                            ],
                        )?;
                        line
                    }
                };
                let text = if file == "wandb-history.jsonl" {
                    server_step(text, line)
                } else {
                    text.clone()
                };
                tx.execute(
                    "INSERT OR REPLACE INTO lines (entity, project, run, file, line, content, received_ms) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![key.entity, key.project, key.name, file, line, text, received],
                )?;
            }
            tx.commit()
        })
    }

    /// The lines each writer of a shared run sent to `file`, by client ID.
    pub fn lines_by_client(
        &self,
        key: &RunKey,
        file: &str,
    ) -> std::collections::BTreeMap<String, i64> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT client, COUNT(*) FROM client_lines \
                 WHERE entity=?1 AND project=?2 AND run=?3 AND file=?4 GROUP BY client",
            )?;
            st.query_map(params![key.entity, key.project, key.name, file], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect()
        })
    }

    /// Lines of a file-stream file, in line order.
    pub fn lines(&self, key: &RunKey, file: &str) -> Vec<(i64, String)> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT line, content FROM lines WHERE entity=?1 AND project=?2 AND run=?3 AND file=?4 ORDER BY line",
            )?;
            st
                .query_map(params![key.entity, key.project, key.name, file], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
    }

    pub fn line_count(&self, key: &RunKey, file: &str) -> i64 {
        self.with(|c| lines_in(c, key, file))
    }

    /// Forgets `file`'s lines from `from` on: a server that lost (or
    /// never got) the end of a run, for tests of what must then be kept.
    pub fn drop_lines_from(&self, key: &RunKey, file: &str, from: i64) {
        self.with(|c| {
            c.execute(
                "DELETE FROM lines WHERE entity=?1 AND project=?2 AND run=?3 AND file=?4 AND line>=?5",
                params![key.entity, key.project, key.name, file, from],
            )
        });
    }

    /// History rows as JSON objects.
    pub fn history(&self, key: &RunKey) -> Vec<Value> {
        self.json_lines(key, "wandb-history.jsonl")
    }

    /// System-metric events as JSON objects.
    pub fn events(&self, key: &RunKey) -> Vec<Value> {
        self.json_lines(key, "wandb-events.jsonl")
    }

    fn json_lines(&self, key: &RunKey, file: &str) -> Vec<Value> {
        self.lines(key, file)
            .into_iter()
            .map(|(_, l)| serde_json::from_str(&wandb_json(&l)).unwrap_or(Value::String(l)))
            .collect()
    }

    /// Console lines as stored: plain (`[ERROR ]<time> [[label] ]text`) or
    /// structured (a JSON object per line, with STRUCTURED_CONSOLE_LOGS).
    pub fn console_raw(&self, key: &RunKey) -> Vec<String> {
        self.lines(key, "output.log")
            .into_iter()
            .map(|(_, l)| l)
            .collect()
    }

    /// Console lines as the W&B UI shows them, in the plain form whichever
    /// form they were sent in.
    pub fn console(&self, key: &RunKey) -> Vec<String> {
        self.console_raw(key)
            .into_iter()
            .map(|l| plain_console_line(&l).unwrap_or(l))
            .collect()
    }

    pub fn set_summary(&self, key: &RunKey, summary: &str) {
        self.with(|c| {
            c.execute(
                "UPDATE runs SET summary=?4 WHERE entity=?1 AND project=?2 AND name=?3",
                params![key.entity, key.project, key.name, wandb_json(summary)],
            )
        });
    }

    /// A shared run's writer sent its summary: its keys replace theirs,
    /// the other writers' stay. `_step` is the server's: the last row's.
    pub fn merge_summary(&self, key: &RunKey, summary: &str) {
        let Ok(new) = serde_json::from_str::<Value>(&wandb_json(summary)) else {
            return;
        };
        // One critical section: writers' file streams arrive concurrently,
        // and a read here and a write later would lose another's keys.
        self.with(|c| {
            let old: Option<String> = c
                .query_row(
                    "SELECT summary FROM runs WHERE entity=?1 AND project=?2 AND name=?3",
                    params![key.entity, key.project, key.name],
                    |r| r.get(0),
                )
                .optional()?
                .flatten();
            let mut merged = json_or_null(old);
            merge_into(&mut merged, &new);
            let rows = lines_in(c, key, "wandb-history.jsonl")?;
            if let Value::Object(m) = &mut merged
                && rows > 0
            {
                m.insert("_step".into(), Value::from(rows - 1));
            }
            c.execute(
                "UPDATE runs SET summary=?4 WHERE entity=?1 AND project=?2 AND name=?3",
                params![key.entity, key.project, key.name, merged.to_string()],
            )
        });
    }

    /// A file stream marked the run finished with `exitcode`.
    pub fn finish(&self, key: &RunKey, exitcode: Option<i64>) {
        self.with(|c| {
            c.execute(
                "UPDATE runs SET complete=1, finishes=finishes+1, exitcode=COALESCE(?4, exitcode) \
                 WHERE entity=?1 AND project=?2 AND name=?3",
                params![key.entity, key.project, key.name, exitcode],
            )
        });
    }

    pub fn set_flag(&self, key: &RunKey, column: &str, value: i64) {
        assert!(matches!(
            column,
            "complete" | "exitcode" | "preempting" | "stopped"
        ));
        self.with(|c| {
            c.execute(
                &format!("UPDATE runs SET {column}=?4 WHERE entity=?1 AND project=?2 AND name=?3"),
                params![key.entity, key.project, key.name, value],
            )
        });
    }

    /// Makes sure a run exists (a file stream may arrive for a run created
    /// elsewhere).
    pub fn ensure_run(&self, key: &RunKey) {
        if self.run(key).is_none() {
            self.upsert(&Upsert {
                entity: key.entity.clone(),
                project: key.project.clone(),
                name: key.name.clone(),
                ..Default::default()
            });
        }
    }

    pub fn add_uploaded(&self, key: &RunKey, paths: &[String]) {
        self.with(|c| {
            for p in paths {
                c.execute(
                    "INSERT OR IGNORE INTO uploaded (entity, project, run, path) VALUES (?1, ?2, ?3, ?4)",
                    params![key.entity, key.project, key.name, p],
                )?;
            }
            Ok(())
        })
    }

    /// Paths the client reported as uploaded (file stream `uploaded`).
    pub fn uploaded(&self, key: &RunKey) -> Vec<String> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT path FROM uploaded WHERE entity=?1 AND project=?2 AND run=?3 ORDER BY path",
            )?;
            st.query_map(params![key.entity, key.project, key.name], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
    }

    pub fn put_file(&self, key: &RunKey, path: &str, content: &[u8]) {
        let sha = hex(&Sha256::digest(content));
        self.with(|c| {
            c.execute(
                "INSERT INTO files (entity, project, run, path, size, sha256, content) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (entity, project, run, path) DO UPDATE SET size=?5, sha256=?6, content=?7, puts=puts+1",
                params![key.entity, key.project, key.name, path, content.len() as i64, sha, content],
            )
        });
    }

    /// Uploaded files (their last version).
    /// The paths of [`files`](Self::files), sorted.
    pub fn file_paths(&self, key: &RunKey) -> Vec<String> {
        self.files(key).into_iter().map(|f| f.path).collect()
    }

    pub fn files(&self, key: &RunKey) -> Vec<FileRow> {
        self.with(|c| {
            let mut st =
                c.prepare("SELECT path, size, sha256, puts FROM files WHERE entity=?1 AND project=?2 AND run=?3 ORDER BY path")?;
            st
                .query_map(params![key.entity, key.project, key.name], |r| {
                    Ok(FileRow {
                        path: r.get(0)?,
                        size: r.get::<_, i64>(1)? as u64,
                        sha256: r.get(2)?,
                        puts: r.get::<_, i64>(3)? as u64,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
    }

    pub fn file_content(&self, key: &RunKey, path: &str) -> Option<Vec<u8>> {
        self.with(|c| {
            c.query_row(
                "SELECT content FROM files WHERE entity=?1 AND project=?2 AND run=?3 AND path=?4",
                params![key.entity, key.project, key.name, path],
                |r| r.get(0),
            )
            .optional()
        })
    }

    pub fn add_alert(&self, key: &RunKey, title: &str, text: &str, severity: &str, wait_ms: i64) {
        self.with(|c| {
            c.execute(
                "INSERT INTO alerts (entity, project, run, title, text, severity, wait_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![key.entity, key.project, key.name, title, text, severity, wait_ms],
            )
        });
    }

    /// `(title, text, severity)` of a run's alerts.
    pub fn alerts(&self, key: &RunKey) -> Vec<(String, String, String)> {
        self.with(|c| {
            let mut st = c.prepare("SELECT title, text, severity FROM alerts WHERE entity=?1 AND project=?2 AND run=?3")?;
            st
                .query_map(params![key.entity, key.project, key.name], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
    }

    pub fn log_request(&self, r: &RequestRow) {
        self.with(|c| {
            c.execute(
                "INSERT INTO requests (method, path, operation, status, user_agent, auth, gzip, body_len, decoded_len, x_headers)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    r.method,
                    r.path,
                    r.operation,
                    r.status,
                    r.user_agent,
                    r.auth,
                    r.gzip,
                    r.body_len as i64,
                    r.decoded_len as i64,
                    serde_json::to_string(&r.x_headers).unwrap_or_default()
                ],
            )
        });
    }

    /// Every request answered, in order.
    pub fn requests(&self) -> Vec<RequestRow> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT method, path, operation, status, user_agent, auth, gzip, body_len, decoded_len, x_headers FROM requests ORDER BY id",
            )?;
            st
                .query_map([], |r| {
                    Ok(RequestRow {
                        method: r.get(0)?,
                        path: r.get(1)?,
                        operation: r.get(2)?,
                        status: r.get::<_, i64>(3)? as u16,
                        user_agent: r.get(4)?,
                        auth: r.get(5)?,
                        gzip: r.get::<_, i64>(6)? != 0,
                        body_len: r.get::<_, i64>(7)? as usize,
                        decoded_len: r.get::<_, i64>(8)? as usize,
                        x_headers: serde_json::from_str(&r.get::<_, String>(9)?)
                            .unwrap_or_default(),
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
    }
}

fn row_to_run(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRow> {
    Ok(RunRow {
        entity: r.get(0)?,
        project: r.get(1)?,
        name: r.get(2)?,
        storage_id: r.get(3)?,
        display_name: r.get(4)?,
        notes: r.get(5)?,
        tags: r
            .get::<_, Option<String>>(6)?
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default(),
        group_name: r.get(7)?,
        job_type: r.get(8)?,
        host: r.get(9)?,
        program: r.get(10)?,
        config: json_or_null(r.get(11)?),
        summary: json_or_null(r.get(12)?),
        complete: r.get::<_, i64>(13)? != 0,
        exitcode: r.get(14)?,
        preempting: r.get::<_, i64>(15)? != 0,
        stopped: r.get::<_, i64>(16)? != 0,
        upserts: r.get(17)?,
        finishes: r.get(18)?,
    })
}

/// Puts `new`'s members into `into`, objects merged member by member,
/// anything else replaced.
fn merge_into(into: &mut Value, new: &Value) {
    match (into, new) {
        (Value::Object(old), Value::Object(new)) => {
            for (k, v) in new {
                match old.get_mut(k) {
                    Some(slot) => merge_into(slot, v),
                    None => {
                        old.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (into, new) => *into = new.clone(),
    }
}

/// A history row as the server keeps a shared run's: numbered by the
/// server (`line`), whatever its writer counted.
fn server_step(row: &str, line: i64) -> String {
    match serde_json::from_str::<Value>(&wandb_json(row)) {
        Ok(Value::Object(mut m)) => {
            m.insert("_step".into(), Value::from(line));
            Value::Object(m).to_string()
        }
        _ => row.to_string(),
    }
}

/// Lower-case hex, as digests are shown.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn base64_id(key: &RunKey) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD_NO_PAD
        .encode(format!("{}:{}:{}", key.entity, key.project, key.name))
}

/// W&B's JSON lines may hold `NaN`/`Infinity`; keep them parseable by
/// quoting them (tests compare values, and these are rare).
pub fn wandb_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = text;
    while let Some(ch) = rest.chars().next() {
        if !in_string
            && let Some(lit) = ["-Infinity", "Infinity", "NaN"]
                .iter()
                .find(|l| rest.starts_with(**l))
        {
            out.push('"');
            out.push_str(lit);
            out.push('"');
            rest = &rest[lit.len()..];
            continue;
        }
        if in_string {
            if escaped {
                escaped = false;
            } else if ch == '\\' {
                escaped = true;
            } else if ch == '"' {
                in_string = false;
            }
        } else if ch == '"' {
            in_string = true;
        }
        out.push(ch);
        rest = &rest[ch.len_utf8()..];
    }
    out
}

/// A structured console line (`{"level":"error","ts":…,"label":…,
/// "content":…}`) in the plain form; `None` for a plain line.
fn plain_console_line(line: &str) -> Option<String> {
    if !line.starts_with('{') {
        return None;
    }
    let v: Value = serde_json::from_str(line).ok()?;
    let o = v.as_object()?;
    let content = o.get("content")?.as_str()?;
    let ts = o.get("ts").and_then(Value::as_str).unwrap_or_default();
    let prefix = match o.get("level").and_then(Value::as_str) {
        Some("error") => "ERROR ",
        _ => "",
    };
    let label = o
        .get("label")
        .and_then(Value::as_str)
        .map(|l| format!("[{l}] "))
        .unwrap_or_default();
    Some(format!("{prefix}{ts} {label}{content}"))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_lines_files_and_requests() {
        let s = Store::open(None).unwrap();
        let key = RunKey::new("e", "p", "r1");
        let (run, inserted) = s.upsert(&Upsert {
            entity: "e".into(),
            project: "p".into(),
            name: "r1".into(),
            display_name: Some("first".into()),
            tags: Some(vec!["a".into()]),
            ..Default::default()
        });
        assert!(inserted && run.display_name.as_deref() == Some("first"));
        let (run, inserted) = s.upsert(&Upsert {
            entity: "e".into(),
            project: "p".into(),
            name: "r1".into(),
            notes: Some("n".into()),
            ..Default::default()
        });
        assert!(!inserted);
        assert_eq!(
            (
                run.display_name.as_deref(),
                run.notes.as_deref(),
                run.upserts
            ),
            (Some("first"), Some("n"), 2)
        );

        s.put_lines(
            &key,
            "wandb-history.jsonl",
            0,
            &["{\"a\":1}".into(), "{\"a\":NaN}".into()],
        );
        s.put_lines(&key, "wandb-history.jsonl", 1, &["{\"a\":2}".into()]);
        assert_eq!(
            s.history(&key),
            vec![serde_json::json!({"a": 1}), serde_json::json!({"a": 2})]
        );
        assert_eq!(s.line_count(&key, "wandb-history.jsonl"), 2);

        s.put_file(&key, "config.yaml", b"x: 1\n");
        s.put_file(&key, "config.yaml", b"x: 2\n");
        let files = s.files(&key);
        assert_eq!((files[0].size, files[0].puts), (5, 2));
        assert_eq!(s.file_content(&key, "config.yaml").unwrap(), b"x: 2\n");
    }

    #[test]
    fn a_shared_runs_writers_are_merged_not_overwritten() {
        let s = Store::open(None).unwrap();
        let key = RunKey::new("e", "p", "shared");
        s.ensure_run(&key);
        let h = "wandb-history.jsonl";
        // Two writers, each counting from its own offset 0, interleaved.
        s.put_lines_async(&key, h, "a", 0, &[r#"{"x":1,"_step":0}"#.into()]);
        s.put_lines_async(&key, h, "b", 0, &[r#"{"y":1,"_step":0}"#.into()]);
        s.put_lines_async(&key, h, "a", 1, &[r#"{"x":2,"_step":1}"#.into()]);
        // A retry of a's first row replaces only that row.
        s.put_lines_async(&key, h, "a", 0, &[r#"{"x":1,"_step":0}"#.into()]);
        assert_eq!(
            s.history(&key),
            vec![
                serde_json::json!({"x": 1, "_step": 0}),
                serde_json::json!({"y": 1, "_step": 1}),
                serde_json::json!({"x": 2, "_step": 2}),
            ]
        );
        assert_eq!(
            s.lines_by_client(&key, h),
            [("a".to_string(), 2), ("b".to_string(), 1)].into()
        );
        // Summaries and configs merge key by key; `_step` is the server's.
        s.merge_summary(&key, r#"{"x":2,"_step":1}"#);
        s.merge_summary(&key, r#"{"y":1,"_step":0}"#);
        assert_eq!(
            s.run(&key).unwrap().summary,
            serde_json::json!({"x": 2, "y": 1, "_step": 2})
        );
        for (config, merge) in [
            (
                serde_json::json!({"a": {"value": 1}, "_wandb": {"value": {"e": 1}}}),
                true,
            ),
            (
                serde_json::json!({"b": {"value": 2}, "_wandb": {"value": {"t": 2}}}),
                true,
            ),
        ] {
            s.upsert(&Upsert {
                entity: "e".into(),
                project: "p".into(),
                name: "shared".into(),
                config: Some(config),
                merge_config: merge,
                ..Default::default()
            });
        }
        assert_eq!(
            s.run(&key).unwrap().config,
            serde_json::json!({"a": {"value": 1}, "b": {"value": 2},
                               "_wandb": {"value": {"e": 1, "t": 2}}})
        );
        s.finish(&key, Some(3));
        let run = s.run(&key).unwrap();
        assert_eq!(
            (run.complete, run.finishes, run.exitcode),
            (true, 1, Some(3))
        );
    }

    #[test]
    fn non_finite_literals_become_strings() {
        assert_eq!(
            wandb_json(r#"{"a":NaN,"b":"NaN","c":-Infinity,"d":"é"}"#),
            r#"{"a":"NaN","b":"NaN","c":"-Infinity","d":"é"}"#
        );
    }

    #[test]
    fn structured_console_lines_read_as_plain_ones() {
        let l = r#"{"level":"error","ts":"2026-01-02T03:04:05.000006","label":"node1","content":"a <b>"}"#;
        assert_eq!(
            plain_console_line(l).as_deref(),
            Some("ERROR 2026-01-02T03:04:05.000006 [node1] a <b>")
        );
        let l = r#"{"level":"info","ts":"2026-01-02T03:04:05.000006","content":"x"}"#;
        assert_eq!(
            plain_console_line(l).as_deref(),
            Some("2026-01-02T03:04:05.000006 x")
        );
        assert_eq!(plain_console_line("2026-01-02T03:04:05.000006 x"), None);
    }

    #[test]
    fn concurrent_writers_summaries_all_merge() {
        // Writers' file streams land on parallel request handlers; none may
        // lose another's keys (this once dropped one writer in four).
        let s = Store::open(None).unwrap();
        let key = RunKey::new("e", "p", "shared");
        s.ensure_run(&key);
        let threads: Vec<_> = (0..8)
            .map(|w| {
                let s = s.clone();
                let key = key.clone();
                std::thread::spawn(move || {
                    for i in 0..50 {
                        s.merge_summary(&key, &format!(r#"{{"w{w}":{i}}}"#));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let summary = s.run(&key).unwrap().summary;
        for w in 0..8 {
            assert_eq!(summary[format!("w{w}")], 49, "{summary}");
        }
    }
}
