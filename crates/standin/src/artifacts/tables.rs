//! The stand-in's artifact tables: collections, versions (with their
//! aliases, tags and files), manifests, content stored once per MD5, and
//! multipart parts; the queries the resolvers share.

use rusqlite::{OptionalExtension, params};
use serde_json::Value;

use super::hex_md5;
use crate::store::Store;

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS art_collections (
    id INTEGER PRIMARY KEY, entity TEXT NOT NULL, project TEXT NOT NULL,
    name TEXT NOT NULL, type TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT 'SEQUENCE', UNIQUE(entity, project, name));
CREATE TABLE IF NOT EXISTS art_links (
    portfolio INTEGER NOT NULL, artifact INTEGER NOT NULL, version_index INTEGER NOT NULL,
    PRIMARY KEY(portfolio, artifact));
CREATE TABLE IF NOT EXISTS art_versions (
    id INTEGER PRIMARY KEY, collection INTEGER NOT NULL, state TEXT NOT NULL,
    version_index INTEGER, digest TEXT NOT NULL, description TEXT, metadata TEXT,
    ttl INTEGER, history_step INTEGER, run_name TEXT, client_id TEXT,
    sequence_client_id TEXT, pending_aliases TEXT NOT NULL, tags TEXT NOT NULL,
    created_at TEXT NOT NULL, size INTEGER NOT NULL DEFAULT 0,
    file_count INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS art_aliases (
    collection INTEGER NOT NULL, alias TEXT NOT NULL, artifact INTEGER NOT NULL,
    PRIMARY KEY(collection, alias));
CREATE TABLE IF NOT EXISTS art_manifests (
    id INTEGER PRIMARY KEY, artifact INTEGER NOT NULL, name TEXT NOT NULL,
    digest TEXT NOT NULL, content BLOB, UNIQUE(artifact, name));
CREATE TABLE IF NOT EXISTS art_blobs (
    md5_hex TEXT PRIMARY KEY, content BLOB NOT NULL, first_artifact INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS art_files (
    artifact INTEGER NOT NULL, name TEXT NOT NULL, md5_hex TEXT NOT NULL,
    birth INTEGER NOT NULL, PRIMARY KEY(artifact, name));
CREATE TABLE IF NOT EXISTS art_parts (
    upload_id TEXT NOT NULL, part INTEGER NOT NULL, content BLOB NOT NULL,
    PRIMARY KEY(upload_id, part));
CREATE TABLE IF NOT EXISTS art_uses (
    entity TEXT NOT NULL, project TEXT NOT NULL, run TEXT NOT NULL, artifact INTEGER NOT NULL,
    artifact_entity TEXT, artifact_project TEXT);
";

/// One stored version, for tests and the resolvers.
#[derive(Debug, Clone, PartialEq)]
pub struct Version {
    pub id: i64,
    pub collection: i64,
    pub entity: String,
    pub project: String,
    pub name: String,
    pub type_name: String,
    pub state: String,
    pub version_index: Option<i64>,
    pub digest: String,
    pub description: Option<String>,
    pub metadata: Option<String>,
    pub ttl: Option<i64>,
    pub history_step: Option<i64>,
    pub tags: Vec<String>,
    pub aliases: Vec<String>,
    pub created_at: String,
    pub size: i64,
    pub file_count: i64,
    pub client_id: Option<String>,
}

const VERSION_COLUMNS: &str = "v.id, v.collection, c.entity, c.project, c.name, c.type, v.state,
    v.version_index, v.digest, v.description, v.metadata, v.ttl, v.history_step, v.tags,
    v.created_at, v.size, v.file_count, v.client_id";

impl Store {
    pub(super) fn version_where(&self, clause: &str, p: &[&dyn rusqlite::ToSql]) -> Vec<Version> {
        let sql = format!(
            "SELECT {VERSION_COLUMNS} FROM art_versions v JOIN art_collections c ON c.id = v.collection WHERE {clause} ORDER BY v.id"
        );
        let mut rows = self.with(|c| {
            let mut st = c.prepare(&sql)?;
            st.query_map(p, |r| {
                Ok(Version {
                    id: r.get(0)?,
                    collection: r.get(1)?,
                    entity: r.get(2)?,
                    project: r.get(3)?,
                    name: r.get(4)?,
                    type_name: r.get(5)?,
                    state: r.get(6)?,
                    version_index: r.get(7)?,
                    digest: r.get(8)?,
                    description: r.get(9)?,
                    metadata: r.get(10)?,
                    ttl: r.get(11)?,
                    history_step: r.get(12)?,
                    tags: serde_json::from_str(&r.get::<_, String>(13)?).unwrap_or_default(),
                    aliases: Vec::new(),
                    created_at: r.get(14)?,
                    size: r.get(15)?,
                    file_count: r.get(16)?,
                    client_id: r.get(17)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
        });
        for v in &mut rows {
            v.aliases = self.with(|c| {
                let mut st =
                    c.prepare("SELECT alias FROM art_aliases WHERE artifact = ?1 ORDER BY alias")?;
                st.query_map(params![v.id], |r| r.get(0))?
                    .collect::<rusqlite::Result<Vec<String>>>()
            });
        }
        rows
    }

    pub fn artifact_version(&self, id: i64) -> Option<Version> {
        self.version_where("v.id = ?1", &[&id]).pop()
    }

    /// Committed versions of a collection, oldest first.
    pub fn artifact_versions(&self, entity: &str, project: &str, name: &str) -> Vec<Version> {
        self.version_where(
            "c.entity = ?1 AND c.project = ?2 AND c.name = ?3 AND v.state = 'COMMITTED'",
            &[&entity, &project, &name],
        )
    }

    /// `(name, md5 hex, birth artifact id)` of a version's files.
    pub fn artifact_files(&self, id: i64) -> Vec<(String, String, i64)> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT name, md5_hex, birth FROM art_files WHERE artifact = ?1 ORDER BY name",
            )?;
            st.query_map(params![id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect()
        })
    }

    /// A stored file's content by MD5 (hex).
    pub fn artifact_blob(&self, md5_hex: &str) -> Option<Vec<u8>> {
        self.with(|c| {
            c.query_row(
                "SELECT content FROM art_blobs WHERE md5_hex = ?1",
                params![md5_hex],
                |r| r.get(0),
            )
            .optional()
        })
    }

    /// The uploaded manifest (JSON) of a version.
    pub fn artifact_manifest(&self, id: i64) -> Option<Value> {
        let content: Option<Vec<u8>> = self.with(|c| {
            c.query_row(
                "SELECT content FROM art_manifests WHERE artifact = ?1 AND content IS NOT NULL ORDER BY id DESC LIMIT 1",
                params![id],
                |r| r.get(0),
            )
            .optional()
        });
        content.and_then(|b| serde_json::from_slice(&b).ok())
    }

    /// Runs that used a version: `(entity, project, run)`.
    pub fn artifact_uses(&self, id: i64) -> Vec<(String, String, String)> {
        self.with(|c| {
            let mut st =
                c.prepare("SELECT entity, project, run FROM art_uses WHERE artifact = ?1")?;
            st.query_map(params![id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect()
        })
    }

    /// Each use's `artifactEntityName` and `artifactProjectName` (sent to
    /// servers with USE_ARTIFACT_WITH_ENTITY_AND_PROJECT_INFORMATION).
    pub fn artifact_use_origins(&self, id: i64) -> Vec<(Option<String>, Option<String>)> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT artifact_entity, artifact_project FROM art_uses WHERE artifact = ?1",
            )?;
            st.query_map(params![id], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
        })
    }

    pub(super) fn latest_in(&self, collection: i64) -> Option<Version> {
        let id: Option<i64> = self.with(|c| {
            c.query_row(
                "SELECT artifact FROM art_aliases WHERE collection = ?1 AND alias = 'latest'",
                params![collection],
                |r| r.get(0),
            )
            .optional()
        });
        id.and_then(|id| self.artifact_version(id))
    }

    /// `name` is `coll`, `coll:alias` or `coll:vN`; `coll` a sequence or a
    /// portfolio (linked versions).
    pub(super) fn member_by_name(&self, entity: &str, project: &str, name: &str) -> Option<Member> {
        let (coll, tag) = name.split_once(':').unwrap_or((name, "latest"));
        let (collection, kind): (i64, String) = self.with(|c| {
            c.query_row(
                "SELECT id, kind FROM art_collections WHERE entity = ?1 AND project = ?2 AND name = ?3",
                params![entity, project, coll],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
        })?;
        if kind == "PORTFOLIO" {
            let by_index = tag.strip_prefix('v').and_then(|n| n.parse::<i64>().ok());
            let artifact: i64 = match by_index {
                Some(n) => self.with(|c| {
                    c.query_row(
                        "SELECT artifact FROM art_links WHERE portfolio = ?1 AND version_index = ?2",
                        params![collection, n],
                        |r| r.get(0),
                    )
                    .optional()
                })?,
                None => self.with(|c| {
                    c.query_row(
                        "SELECT artifact FROM art_aliases WHERE collection = ?1 AND alias = ?2",
                        params![collection, tag],
                        |r| r.get(0),
                    )
                    .optional()
                })?,
            };
            return self.link_member(collection, artifact);
        }
        let v = self.version_by_name(entity, project, name)?;
        Some(Member {
            collection: v.collection,
            collection_name: v.name.clone(),
            typename: "ArtifactSequence",
            index: v.version_index,
            aliases: v.aliases.clone(),
            version: v,
        })
    }

    /// A version as a member of a portfolio it is linked into.
    pub(super) fn link_member(&self, portfolio: i64, artifact: i64) -> Option<Member> {
        let (name, index): (String, i64) = self.with(|c| {
            c.query_row(
                "SELECT c.name, l.version_index FROM art_links l JOIN art_collections c ON c.id = l.portfolio
                 WHERE l.portfolio = ?1 AND l.artifact = ?2",
                params![portfolio, artifact],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
        })?;
        let aliases = self.with(|c| {
            let mut st = c.prepare(
                "SELECT alias FROM art_aliases WHERE collection = ?1 AND artifact = ?2 ORDER BY alias",
            )?;
            st.query_map(params![portfolio, artifact], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()
        });
        Some(Member {
            collection: portfolio,
            collection_name: name,
            typename: "ArtifactPortfolio",
            index: Some(index),
            aliases,
            version: self.artifact_version(artifact)?,
        })
    }

    /// Versions linked into a portfolio: `(version index, artifact id)`.
    pub fn artifact_links(&self, entity: &str, project: &str, portfolio: &str) -> Vec<(i64, i64)> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT l.version_index, l.artifact FROM art_links l JOIN art_collections c ON c.id = l.portfolio
                 WHERE c.entity = ?1 AND c.project = ?2 AND c.name = ?3 ORDER BY l.version_index",
            )?;
            st.query_map(params![entity, project, portfolio], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
        })
    }

    /// `name` is `coll`, `coll:alias` or `coll:vN` of a sequence.
    pub(super) fn version_by_name(
        &self,
        entity: &str,
        project: &str,
        name: &str,
    ) -> Option<Version> {
        let (coll, tag) = name.split_once(':').unwrap_or((name, "latest"));
        let collection: i64 = self.with(|c| {
            c.query_row(
                "SELECT id FROM art_collections WHERE entity = ?1 AND project = ?2 AND name = ?3 AND kind = 'SEQUENCE'",
                params![entity, project, coll],
                |r| r.get(0),
            )
            .optional()
        })?;
        if let Some(n) = tag.strip_prefix('v').and_then(|n| n.parse::<i64>().ok()) {
            return self
                .version_where(
                    "v.collection = ?1 AND v.version_index = ?2",
                    &[&collection, &n],
                )
                .pop();
        }
        let id: i64 = self.with(|c| {
            c.query_row(
                "SELECT artifact FROM art_aliases WHERE collection = ?1 AND alias = ?2",
                params![collection, tag],
                |r| r.get(0),
            )
            .optional()
        })?;
        self.artifact_version(id)
    }
}

/// A version as seen through a collection: its own sequence, or a
/// portfolio it is linked into.
pub(super) struct Member {
    pub version: Version,
    pub collection: i64,
    pub collection_name: String,
    pub typename: &'static str,
    pub index: Option<i64>,
    pub aliases: Vec<String>,
}

pub(super) fn store_blob(store: &Store, hex: &str, content: &[u8], artifact: i64) {
    store.with(|c| {
        c.execute(
            "INSERT OR IGNORE INTO art_blobs (md5_hex, content, first_artifact) VALUES (?1, ?2, ?3)",
            params![hex, content, artifact],
        )
    });
}

/// PUT of a file's content: its MD5 must match the URL.
pub fn put_blob(store: &Store, hex: &str, body: &[u8]) -> Result<(), String> {
    if hex_md5(body) != hex {
        return Err("content does not match its MD5".into());
    }
    let first: Option<i64> = store.with(|c| {
        c.query_row(
            "SELECT artifact FROM art_files WHERE md5_hex = ?1 ORDER BY artifact LIMIT 1",
            params![hex],
            |r| r.get(0),
        )
        .optional()
    });
    store_blob(store, hex, body, first.unwrap_or(0));
    Ok(())
}

/// PUT of a manifest: JSON, kept as the version's manifest.
pub fn put_manifest(store: &Store, id: i64, body: &[u8]) -> Result<(), String> {
    serde_json::from_slice::<Value>(body).map_err(|e| format!("not JSON: {e}"))?;
    let n = store.with(|c| {
        c.execute(
            "UPDATE art_manifests SET content = ?2 WHERE id = ?1",
            params![id, body],
        )
    });
    if n == 0 {
        return Err("no such manifest".into());
    }
    Ok(())
}

pub fn get_manifest(store: &Store, id: i64) -> Option<Vec<u8>> {
    store.with(|c| {
        c.query_row(
            "SELECT content FROM art_manifests WHERE id = ?1 AND content IS NOT NULL",
            params![id],
            |r| r.get(0),
        )
        .optional()
    })
}

/// PUT of one part of a multipart upload; answers its ETag.
pub fn put_part(store: &Store, upload_id: &str, part: i64, body: &[u8]) -> String {
    store.with(|c| {
        c.execute(
            "INSERT OR REPLACE INTO art_parts (upload_id, part, content) VALUES (?1, ?2, ?3)",
            params![upload_id, part, body],
        )
    });
    format!("\"{}\"", hex_md5(body))
}
