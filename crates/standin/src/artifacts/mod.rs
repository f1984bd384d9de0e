//! Artifacts: collections, versions, aliases, manifests and
//! content-addressed files, as the backend API W&B's service and the Python
//! SDK's public API use them (log_artifact, wait, use_artifact, download).
//!
//! File contents are stored once per MD5 (so a re-logged file that the
//! server already has gets a null upload URL: deduplication is visible);
//! versions are numbered at commit; `latest` and user aliases move to the
//! newest committed version; an artifact whose digest equals the latest
//! version's comes back `COMMITTED` (no new version).

use crate::graphql::GField;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use md5::{Digest, Md5};
use rusqlite::{OptionalExtension, params};
use serde_json::{Value, json};

use crate::graphql::Ctx;
use crate::store::{Store, hex};

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
    entity TEXT NOT NULL, project TEXT NOT NULL, run TEXT NOT NULL, artifact INTEGER NOT NULL);
";

/// A GraphQL id: base64 of `<Type>:<n>`, as W&B's are.
pub fn gid(kind: &str, n: i64) -> String {
    B64.encode(format!("{kind}:{n}"))
}

fn parse_gid(id: &str) -> Option<i64> {
    let raw = B64.decode(id).ok()?;
    let text = String::from_utf8(raw).ok()?;
    text.rsplit(':').next()?.parse().ok()
}

fn now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    // Days from the civil calendar (UTC), without a date crate.
    let (days, rem) = ((secs / 86400) as i64, secs % 86400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

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
    fn version_where(&self, clause: &str, p: &[&dyn rusqlite::ToSql]) -> Vec<Version> {
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

    fn latest_in(&self, collection: i64) -> Option<Version> {
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
    fn member_by_name(&self, entity: &str, project: &str, name: &str) -> Option<Member> {
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
    fn link_member(&self, portfolio: i64, artifact: i64) -> Option<Member> {
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
    fn version_by_name(&self, entity: &str, project: &str, name: &str) -> Option<Version> {
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
struct Member {
    version: Version,
    collection: i64,
    collection_name: String,
    typename: &'static str,
    index: Option<i64>,
    aliases: Vec<String>,
}

fn str_of(v: &Value) -> Option<String> {
    v.as_str().map(String::from)
}

/// `createArtifact(input)`.
pub fn create_artifact(field: &GField<'_>, ctx: &Ctx<'_>) -> Result<Value, String> {
    let input = ctx.arg(field, "input");
    let get = |k: &str| input.get(k).cloned().unwrap_or(Value::Null);
    let entity = str_of(&get("entityName")).unwrap_or_else(|| crate::DEFAULT_ENTITY.into());
    let project = str_of(&get("projectName")).ok_or("createArtifact: projectName is required")?;
    let name = str_of(&get("artifactCollectionName"))
        .ok_or("createArtifact: artifactCollectionName is required")?;
    let type_name =
        str_of(&get("artifactTypeName")).ok_or("createArtifact: artifactTypeName is required")?;
    let digest = str_of(&get("digest")).ok_or("createArtifact: digest is required")?;
    let store = ctx.store;
    let collection: i64 = store.with(|c| {
        c.execute(
            "INSERT OR IGNORE INTO art_collections (entity, project, name, type) VALUES (?1, ?2, ?3, ?4)",
            params![entity, project, name, type_name],
        )?;
        c.query_row(
            "SELECT id FROM art_collections WHERE entity = ?1 AND project = ?2 AND name = ?3",
            params![entity, project, name],
            |r| r.get(0),
        )
    });
    let existing_type: String = store.with(|c| {
        c.query_row(
            "SELECT type FROM art_collections WHERE id = ?1",
            params![collection],
            |r| r.get(0),
        )
    });
    if existing_type != type_name {
        return Err(format!(
            "artifact {name} already exists with type {existing_type}, not {type_name}"
        ));
    }
    let latest = store.latest_in(collection);
    let sequence = |latest: &Option<Version>| {
        json!({
            "__typename": "ArtifactSequence",
            "id": gid("ArtifactSequence", collection),
            "latestArtifact": latest.as_ref().map(|l| json!({
                "__typename": "Artifact", "id": gid("Artifact", l.id), "versionIndex": l.version_index,
            })),
        })
    };
    if get("enableDigestDeduplication").as_bool() == Some(true)
        && let Some(l) = latest.as_ref().filter(|l| l.digest == digest)
    {
        return Ok(json!({
            "__typename": "CreateArtifactPayload",
            "artifact": {"__typename": "Artifact", "id": gid("Artifact", l.id), "state": "COMMITTED",
                          "artifactSequence": sequence(&latest)},
        }));
    }
    let aliases: Vec<String> = get("aliases")
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.get("alias").and_then(Value::as_str).map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let tags: Vec<String> = get("tags")
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.get("tagName").and_then(Value::as_str).map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let id: i64 = store.with(|c| {
        c.execute(
            "INSERT INTO art_versions (collection, state, digest, description, metadata, ttl,
                history_step, run_name, client_id, sequence_client_id, pending_aliases, tags, created_at)
             VALUES (?1, 'PENDING', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            params![
                collection,
                digest,
                str_of(&get("description")),
                str_of(&get("metadata")),
                get("ttlDurationSeconds").as_i64(),
                get("historyStep").as_i64(),
                str_of(&get("runName")),
                str_of(&get("clientID")),
                str_of(&get("sequenceClientID")),
                json!(aliases).to_string(),
                json!(tags).to_string(),
                now(),
            ],
        )?;
        Ok(c.last_insert_rowid())
    });
    Ok(json!({
        "__typename": "CreateArtifactPayload",
        "artifact": {"__typename": "Artifact", "id": gid("Artifact", id), "state": "PENDING",
                      "artifactSequence": sequence(&latest)},
    }))
}

fn upload_headers(ctx: &Ctx<'_>) -> Value {
    json!([format!(
        "{}: {}",
        crate::UPLOAD_TOKEN_HEADER,
        ctx.config.upload_token
    )])
}

/// A variable given directly or inside `input`.
fn input_value(field: &GField<'_>, ctx: &Ctx<'_>, name: &str) -> Value {
    let direct = ctx.arg(field, name);
    if direct.is_null() {
        ctx.arg(field, "input")
            .get(name)
            .cloned()
            .unwrap_or(Value::Null)
    } else {
        direct
    }
}

fn manifest_answer(ctx: &Ctx<'_>, id: i64) -> Value {
    let url = format!("{}/artifacts/manifests/{id}", ctx.base_url);
    json!({
        "__typename": "CreateArtifactManifestPayload",
        "artifactManifest": {
            "__typename": "ArtifactManifest",
            "id": gid("ArtifactManifest", id),
            "file": {"__typename": "File", "id": gid("File", id), "uploadUrl": url,
                     "uploadHeaders": upload_headers(ctx), "directUrl": url},
        },
    })
}

/// The artifact version named by the input's `artifactID`, for operation
/// `op` (its name starts the error).
fn input_version(field: &GField<'_>, ctx: &Ctx<'_>, op: &str) -> Result<(i64, Version), String> {
    let id = str_of(&input_value(field, ctx, "artifactID"))
        .and_then(|s| parse_gid(&s))
        .ok_or_else(|| format!("{op}: bad artifactID"))?;
    let v = ctx
        .store
        .artifact_version(id)
        .ok_or_else(|| format!("{op}: no such artifact"))?;
    Ok((id, v))
}

/// `createArtifactManifest`: one manifest per (artifact, name), upserted.
pub fn create_manifest(field: &GField<'_>, ctx: &Ctx<'_>) -> Result<Value, String> {
    let (artifact, _) = input_version(field, ctx, "createArtifactManifest")?;
    let name =
        str_of(&input_value(field, ctx, "name")).unwrap_or_else(|| "wandb_manifest.json".into());
    let digest = str_of(&input_value(field, ctx, "digest")).unwrap_or_default();
    let id: i64 = ctx.store.with(|c| {
        c.execute(
            "INSERT INTO art_manifests (artifact, name, digest) VALUES (?1, ?2, ?3)
             ON CONFLICT(artifact, name) DO UPDATE SET digest = excluded.digest",
            params![artifact, name, digest],
        )?;
        c.query_row(
            "SELECT id FROM art_manifests WHERE artifact = ?1 AND name = ?2",
            params![artifact, name],
            |r| r.get(0),
        )
    });
    Ok(manifest_answer(ctx, id))
}

/// `updateArtifactManifest(input: {artifactManifestID, digest})`.
pub fn update_manifest(field: &GField<'_>, ctx: &Ctx<'_>) -> Result<Value, String> {
    let id = str_of(&input_value(field, ctx, "artifactManifestID"))
        .and_then(|s| parse_gid(&s))
        .ok_or("updateArtifactManifest: bad artifactManifestID")?;
    let digest = str_of(&input_value(field, ctx, "digest")).unwrap_or_default();
    let n = ctx.store.with(|c| {
        c.execute(
            "UPDATE art_manifests SET digest = ?2 WHERE id = ?1",
            params![id, digest],
        )
    });
    if n == 0 {
        return Err("updateArtifactManifest: no such manifest".into());
    }
    Ok(manifest_answer(ctx, id))
}

/// `createArtifactFiles`: an upload URL per file, null where the content
/// is already stored.
pub fn create_files(field: &GField<'_>, ctx: &Ctx<'_>) -> Result<Value, String> {
    let input = ctx.arg(field, "input");
    let specs = input
        .get("artifactFiles")
        .or_else(|| ctx.variables.get("artifactFiles"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut edges = Vec::with_capacity(specs.len());
    for spec in specs {
        let artifact = spec
            .get("artifactID")
            .and_then(Value::as_str)
            .and_then(parse_gid)
            .ok_or("createArtifactFiles: bad artifactID")?;
        let name = str_of(spec.get("name").unwrap_or(&Value::Null))
            .ok_or("createArtifactFiles: a file has no name")?;
        let md5_b64 = spec.get("md5").and_then(Value::as_str).unwrap_or_default();
        let hex = b64_to_hex(md5_b64)
            .ok_or_else(|| format!("createArtifactFiles: md5 of {name} is not base64"))?;
        let stored_by: Option<i64> = ctx.store.with(|c| {
            c.query_row(
                "SELECT first_artifact FROM art_blobs WHERE md5_hex = ?1",
                params![hex],
                |r| r.get(0),
            )
            .optional()
        });
        let birth = stored_by.unwrap_or(artifact);
        ctx.store.with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO art_files (artifact, name, md5_hex, birth) VALUES (?1, ?2, ?3, ?4)",
                params![artifact, name, hex, birth],
            )
        });
        let parts = spec.get("uploadPartsInput").and_then(Value::as_array);
        let url = format!("{}/artifacts/blobs/md5/{hex}", ctx.base_url);
        let multipart = match (parts, stored_by) {
            (Some(parts), None) => {
                let upload_id = format!("{artifact}-{hex}");
                Some(json!({
                    "uploadID": upload_id,
                    "uploadUrlParts": parts.iter().map(|p| {
                        let n = p.get("partNumber").and_then(Value::as_i64).unwrap_or(0);
                        json!({"partNumber": n, "uploadUrl": format!("{}/artifacts/parts/{upload_id}/{n}", ctx.base_url)})
                    }).collect::<Vec<_>>(),
                }))
            }
            _ => None,
        };
        edges.push(json!({"node": {
            "__typename": "File",
            "storagePath": format!("md5/{hex}"),
            "uploadUrl": if stored_by.is_some() { Value::Null } else { json!(url) },
            "uploadHeaders": upload_headers(ctx),
            "uploadMultipartUrls": multipart,
            "artifact": {"__typename": "Artifact", "id": gid("Artifact", birth)},
        }}));
    }
    Ok(json!({"__typename": "CreateArtifactFilesPayload", "files": {"edges": edges}}))
}

/// `completeMultipartUploadArtifact`: joins the parts into the blob.
pub fn complete_multipart(field: &GField<'_>, ctx: &Ctx<'_>) -> Result<Value, String> {
    let upload_id = str_of(&input_value(field, ctx, "uploadID")).ok_or("no uploadID")?;
    let (artifact, hex) = upload_id
        .split_once('-')
        .and_then(|(a, h)| Some((a.parse::<i64>().ok()?, h.to_string())))
        .ok_or("unknown uploadID")?;
    let parts = input_value(field, ctx, "completedParts");
    let parts = parts.as_array().ok_or("no completedParts")?;
    let mut whole = Vec::new();
    for p in parts {
        let n = p.get("partNumber").and_then(Value::as_i64).unwrap_or(0);
        let etag = p.get("hexMD5").and_then(Value::as_str).unwrap_or_default();
        let content: Vec<u8> = ctx
            .store
            .with(|c| {
                c.query_row(
                    "SELECT content FROM art_parts WHERE upload_id = ?1 AND part = ?2",
                    params![upload_id, n],
                    |r| r.get(0),
                )
                .optional()
            })
            .ok_or(format!("part {n} was not uploaded"))?;
        let part_hex = hex_md5(&content);
        if etag.trim_matches('"') != part_hex {
            return Err(format!("part {n}: ETag {etag} does not match its content"));
        }
        whole.extend_from_slice(&content);
    }
    if hex_md5(&whole) != hex {
        return Err("the parts do not add up to the file's MD5".into());
    }
    store_blob(ctx.store, &hex, &whole, artifact);
    ctx.store.with(|c| {
        c.execute(
            "DELETE FROM art_parts WHERE upload_id = ?1",
            params![upload_id],
        )
    });
    Ok(json!({"__typename": "CompleteMultipartUploadArtifactPayload", "digest": hex}))
}

fn hex_md5(bytes: &[u8]) -> String {
    hex(&Md5::digest(bytes))
}

/// A manifest digest (base64 MD5) as the hex that names stored content.
fn b64_to_hex(digest: &str) -> Option<String> {
    B64.decode(digest).ok().map(|raw| hex(&raw))
}

fn store_blob(store: &Store, hex: &str, content: &[u8], artifact: i64) {
    store.with(|c| {
        c.execute(
            "INSERT OR IGNORE INTO art_blobs (md5_hex, content, first_artifact) VALUES (?1, ?2, ?3)",
            params![hex, content, artifact],
        )
    });
}

/// `commitArtifact`: numbers the version, moves its aliases, checks that
/// every file of its manifest is stored.
pub fn commit(field: &GField<'_>, ctx: &Ctx<'_>) -> Result<Value, String> {
    let (id, v) = input_version(field, ctx, "commitArtifact")?;
    if v.state != "COMMITTED" {
        let manifest = ctx
            .store
            .artifact_manifest(id)
            .ok_or("commitArtifact: the manifest was not uploaded")?;
        let contents = manifest
            .get("contents")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let mut size = 0;
        for (path, entry) in &contents {
            size += entry.get("size").and_then(Value::as_i64).unwrap_or(0);
            if entry.get("ref").is_some() {
                continue;
            }
            let digest = entry
                .get("digest")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let hex = b64_to_hex(digest).unwrap_or_default();
            if ctx.store.artifact_blob(&hex).is_none() {
                return Err(format!("commitArtifact: {path} was never uploaded"));
            }
            ctx.store.with(|c| {
                c.execute(
                    "INSERT OR IGNORE INTO art_files (artifact, name, md5_hex, birth) VALUES (?1, ?2, ?3, ?1)",
                    params![id, path, hex],
                )
            });
        }
        let pending: Vec<String> = ctx.store.with(|c| {
            c.query_row(
                "SELECT pending_aliases FROM art_versions WHERE id = ?1",
                params![id],
                |r| r.get::<_, String>(0),
            )
            .map(|s| serde_json::from_str(&s).unwrap_or_default())
        });
        ctx.store.with(|c| {
            let index: i64 = c.query_row(
                "SELECT COUNT(*) FROM art_versions WHERE collection = ?1 AND state = 'COMMITTED'",
                params![v.collection],
                |r| r.get(0),
            )?;
            c.execute(
                "UPDATE art_versions SET state = 'COMMITTED', version_index = ?2, size = ?3, file_count = ?4 WHERE id = ?1",
                params![id, index, size, contents.len() as i64],
            )?;
            for alias in pending.iter().map(String::as_str).chain(["latest"]) {
                c.execute(
                    "INSERT OR REPLACE INTO art_aliases (collection, alias, artifact) VALUES (?1, ?2, ?3)",
                    params![v.collection, alias, id],
                )?;
            }
            Ok(())
        });
    }
    Ok(json!({"__typename": "CommitArtifactPayload",
              "artifact": {"__typename": "Artifact", "id": gid("Artifact", id), "digest": v.digest}}))
}

/// `useArtifact`: the run used this version.
pub fn use_artifact(field: &GField<'_>, ctx: &Ctx<'_>) -> Result<Value, String> {
    let (id, v) = input_version(field, ctx, "useArtifact")?;
    let entity = str_of(&input_value(field, ctx, "entityName"))
        .unwrap_or_else(|| crate::DEFAULT_ENTITY.into());
    let project = str_of(&input_value(field, ctx, "projectName")).unwrap_or_default();
    let run = str_of(&input_value(field, ctx, "runName")).unwrap_or_default();
    ctx.store.with(|c| {
        c.execute(
            "INSERT INTO art_uses (entity, project, run, artifact) VALUES (?1, ?2, ?3, ?4)",
            params![entity, project, run, id],
        )
    });
    Ok(json!({"__typename": "UseArtifactPayload", "artifact": artifact_json(ctx, &v)}))
}

/// `clientIDMapping(clientID)`.
pub fn client_id_mapping(field: &GField<'_>, ctx: &Ctx<'_>) -> Result<Value, String> {
    let client = str_of(&ctx.arg(field, "clientID")).unwrap_or_default();
    let id: Option<i64> = ctx.store.with(|c| {
        c.query_row(
            "SELECT id FROM art_versions WHERE client_id = ?1 OR sequence_client_id = ?1 ORDER BY id DESC LIMIT 1",
            params![client],
            |r| r.get(0),
        )
        .optional()
    });
    Ok(id.map_or(Value::Null, |id| json!({"serverID": gid("Artifact", id)})))
}

fn project_json(v: &Version) -> Value {
    json!({"__typename": "Project", "id": gid("Project", 1), "internalId": "1", "name": v.project,
           "entity": {"__typename": "Entity", "id": gid("Entity", 1), "name": v.entity}})
}

fn collection_json(v: &Version) -> Value {
    json!({"__typename": "ArtifactSequence", "id": gid("ArtifactSequence", v.collection),
           "name": v.name, "project": project_json(v)})
}

/// An artifact as the SDK's `ArtifactFragment` reads it.
pub fn artifact_json(ctx: &Ctx<'_>, v: &Version) -> Value {
    let manifest_id: Option<i64> = ctx.store.with(|c| {
        c.query_row(
            "SELECT id FROM art_manifests WHERE artifact = ?1 ORDER BY id DESC LIMIT 1",
            params![v.id],
            |r| r.get(0),
        )
        .optional()
    });
    let url = manifest_id.map(|m| format!("{}/artifacts/manifests/{m}", ctx.base_url));
    let mut sequence = collection_json(v);
    sequence["latestArtifact"] = ctx
        .store
        .latest_in(v.collection)
        .map(|l| json!({"__typename": "Artifact", "id": gid("Artifact", l.id), "versionIndex": l.version_index}))
        .unwrap_or(Value::Null);
    json!({
        "__typename": "Artifact",
        "id": gid("Artifact", v.id),
        "artifactSequence": sequence,
        "versionIndex": v.version_index,
        "artifactType": {"__typename": "ArtifactType", "name": v.type_name},
        "description": v.description,
        "metadata": v.metadata,
        "ttlDurationSeconds": v.ttl.filter(|t| *t > 0).unwrap_or(-2),
        "ttlIsInherited": v.ttl.is_none_or(|t| t < 0),
        "tags": v.tags.iter().enumerate().map(|(i, t)| json!({"__typename": "Tag", "id": gid("Tag", i as i64), "name": t})).collect::<Vec<_>>(),
        "historyStep": v.history_step,
        "state": v.state,
        "size": v.size,
        "digest": v.digest,
        "commitHash": (v.state == "COMMITTED").then(|| format!("{:012x}", v.id)),
        "fileCount": v.file_count,
        "createdAt": v.created_at,
        "updatedAt": v.created_at,
        "aliases": v.aliases.iter().map(|a| json!({
            "__typename": "ArtifactAlias",
            "id": gid("ArtifactAlias", v.id * 1000 + a.len() as i64),
            "alias": a,
            "artifactCollection": collection_json(v),
        })).collect::<Vec<_>>(),
        "currentManifest": url.map(|u| json!({"__typename": "ArtifactManifest",
            "id": gid("ArtifactManifest", manifest_id.unwrap_or(0)),
            "file": {"__typename": "File", "id": gid("File", manifest_id.unwrap_or(0)), "directUrl": u}})),
    })
}

fn membership_json(ctx: &Ctx<'_>, m: &Member) -> Value {
    let v = &m.version;
    let mut collection = collection_json(v);
    collection["__typename"] = json!(m.typename);
    collection["id"] = json!(gid(m.typename, m.collection));
    collection["name"] = json!(m.collection_name);
    json!({
        "__typename": "ArtifactCollectionMembership",
        "id": gid("ArtifactCollectionMembership", m.collection * 1_000_000 + v.id),
        "versionIndex": m.index,
        "createdAt": v.created_at,
        "aliases": m.aliases.iter().map(|a| json!({"__typename": "ArtifactAlias", "id": gid("ArtifactAlias", v.id * 1000 + a.len() as i64), "alias": a})).collect::<Vec<_>>(),
        "artifactCollection": collection,
        "artifact": artifact_json(ctx, v),
    })
}

/// `linkArtifact(input)`: links a version into a portfolio (made on first
/// use) with the next index there, and the given aliases plus `latest`.
pub fn link_artifact(field: &GField<'_>, ctx: &Ctx<'_>) -> Result<Value, String> {
    // By server ID, or by the client ID of an artifact saved from a draft.
    let id = match str_of(&input_value(field, ctx, "artifactID")).and_then(|s| parse_gid(&s)) {
        Some(id) => id,
        None => {
            let client = str_of(&input_value(field, ctx, "clientID")).unwrap_or_default();
            ctx.store
                .with(|c| {
                    c.query_row(
                        "SELECT id FROM art_versions WHERE client_id = ?1 ORDER BY id DESC LIMIT 1",
                        params![client],
                        |r| r.get(0),
                    )
                    .optional()
                })
                .ok_or("linkArtifact: no artifact with that ID or client ID")?
        }
    };
    let v = ctx
        .store
        .artifact_version(id)
        .ok_or("linkArtifact: no such artifact")?;
    let portfolio = str_of(&input_value(field, ctx, "artifactPortfolioName"))
        .ok_or("linkArtifact: no artifactPortfolioName")?;
    let entity = str_of(&input_value(field, ctx, "entityName")).unwrap_or_else(|| v.entity.clone());
    let project =
        str_of(&input_value(field, ctx, "projectName")).unwrap_or_else(|| v.project.clone());
    let aliases: Vec<String> = input_value(field, ctx, "aliases")
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.get("alias").and_then(Value::as_str).map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let collection: i64 = ctx.store.with(|c| {
        c.execute(
            "INSERT OR IGNORE INTO art_collections (entity, project, name, type, kind) VALUES (?1, ?2, ?3, ?4, 'PORTFOLIO')",
            params![entity, project, portfolio, v.type_name],
        )?;
        let (id, kind): (i64, String) = c.query_row(
            "SELECT id, kind FROM art_collections WHERE entity = ?1 AND project = ?2 AND name = ?3",
            params![entity, project, portfolio],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(if kind == "PORTFOLIO" { id } else { -1 })
    });
    if collection < 0 {
        return Err(format!("linkArtifact: {portfolio} is not a portfolio"));
    }
    ctx.store.with(|c| {
        let next: i64 = c.query_row(
            "SELECT COUNT(*) FROM art_links WHERE portfolio = ?1",
            params![collection],
            |r| r.get(0),
        )?;
        c.execute(
            "INSERT OR IGNORE INTO art_links (portfolio, artifact, version_index) VALUES (?1, ?2, ?3)",
            params![collection, id, next],
        )?;
        for alias in aliases.iter().map(String::as_str).chain(["latest"]) {
            c.execute(
                "INSERT OR REPLACE INTO art_aliases (collection, alias, artifact) VALUES (?1, ?2, ?3)",
                params![collection, alias, id],
            )?;
        }
        Ok(())
    });
    let m = ctx
        .store
        .link_member(collection, id)
        .ok_or("linkArtifact: the link was not stored")?;
    Ok(
        json!({"__typename": "LinkArtifactPayload", "versionIndex": m.index,
              "artifactMembership": membership_json(ctx, &m)}),
    )
}

/// `artifact(id)` at the root.
pub fn artifact_by_id(field: &GField<'_>, ctx: &Ctx<'_>) -> Result<Value, String> {
    let id = str_of(&ctx.arg(field, "id")).and_then(|s| parse_gid(&s));
    Ok(id
        .and_then(|id| ctx.store.artifact_version(id))
        .map_or(Value::Null, |v| artifact_json(ctx, &v)))
}

/// Artifact fields of `project(…)`: `artifact(name)`,
/// `artifactCollectionMembership(name)`, `artifactCollection(name)`,
/// `artifactType(name)`.
pub fn project_fields(
    field: &GField<'_>,
    ctx: &Ctx<'_>,
    entity: &str,
    project: &str,
    out: &mut Value,
) {
    use crate::graphql::find_subfield;
    // The `name` argument of a selected subfield.
    let named = |sub: &str| {
        find_subfield(field, sub).map(|f| str_of(&ctx.arg(f, "name")).unwrap_or_default())
    };
    if let Some(name) = named("artifact") {
        out["artifact"] = ctx
            .store
            .version_by_name(entity, project, &name)
            .map_or(Value::Null, |v| artifact_json(ctx, &v));
    }
    if let Some(name) = named("artifactCollectionMembership") {
        out["artifactCollectionMembership"] = ctx
            .store
            .member_by_name(entity, project, &name)
            .map_or(Value::Null, |m| membership_json(ctx, &m));
    }
    if let Some(name) = named("artifactType") {
        out["artifactType"] = json!({"__typename": "ArtifactType", "name": name});
    }
    if let Some(f) = find_subfield(field, "artifactCollection") {
        let coll = str_of(&ctx.arg(f, "name")).unwrap_or_default();
        let mut value = Value::Null;
        if let Some(m) = find_subfield(f, "artifactMembership") {
            let alias = str_of(&ctx.arg(m, "aliasName")).unwrap_or_else(|| "latest".into());
            if let Some(member) =
                ctx.store
                    .member_by_name(entity, project, &format!("{coll}:{alias}"))
            {
                let mut membership = membership_json(ctx, &member);
                membership["files"] = files_page(ctx, &member.version, m);
                value = membership["artifactCollection"].clone();
                value["artifactMembership"] = membership;
            }
        }
        out["artifactCollection"] = value;
    }
}

/// `files(after, first)` of a version: every manifest entry, by path.
fn files_page(ctx: &Ctx<'_>, v: &Version, membership: &GField<'_>) -> Value {
    let args = crate::graphql::find_subfield(membership, "files");
    let after = args
        .and_then(|f| str_of(&ctx.arg(f, "after")))
        .and_then(|c| c.parse::<usize>().ok())
        .unwrap_or(0);
    let first = args
        .and_then(|f| ctx.arg(f, "first").as_u64())
        .unwrap_or(5000) as usize;
    let manifest = ctx.store.artifact_manifest(v.id).unwrap_or(Value::Null);
    let entries: Vec<(String, Value)> = manifest
        .get("contents")
        .and_then(Value::as_object)
        .map(|o| o.iter().map(|(k, e)| (k.clone(), e.clone())).collect())
        .unwrap_or_default();
    let page: Vec<Value> = entries
        .iter()
        .enumerate()
        .skip(after)
        .take(first)
        .map(|(i, (name, e))| {
            let digest = e.get("digest").and_then(Value::as_str).unwrap_or_default();
            let hex = b64_to_hex(digest).unwrap_or_default();
            json!({"node": {
                "__typename": "File",
                "id": gid("File", v.id * 100_000 + i as i64),
                "name": name, "displayName": name,
                "url": format!("{}/artifacts/blobs/md5/{hex}", ctx.base_url),
                "directUrl": format!("{}/artifacts/blobs/md5/{hex}", ctx.base_url),
                "sizeBytes": e.get("size").cloned().unwrap_or(json!(0)),
                "storagePath": format!("md5/{hex}"),
                "mimetype": null, "updatedAt": v.created_at,
                "digest": digest, "md5": digest,
            }})
        })
        .collect();
    let end = after + page.len();
    json!({
        "__typename": "FileConnection",
        "pageInfo": {"__typename": "PageInfo", "endCursor": end.to_string(), "hasNextPage": end < entries.len()},
        "edges": page,
    })
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
