//! Artifacts: collections, versions, aliases, manifests and
//! content-addressed files, as the backend API W&B's service and the Python
//! SDK's public API use them (log_artifact, wait, use_artifact, download).
//!
//! File contents are stored once per MD5 (so a re-logged file that the
//! server already has gets a null upload URL: deduplication is visible);
//! versions are numbered at commit; `latest` and user aliases move to the
//! newest committed version; an artifact whose digest equals the latest
//! version's comes back `COMMITTED` (no new version).
//!
//! Here the mutations (create, manifest, files, commit, use, link); the
//! tables in [`tables`], the read side in [`queries`].

mod queries;
mod tables;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use md5::{Digest, Md5};
use rusqlite::{OptionalExtension, params};
use serde_json::{Value, json};

use self::queries::membership_json;
pub use self::queries::{artifact_by_id, artifact_json, project_fields};
use self::tables::store_blob;
pub use self::tables::{SCHEMA, Version, get_manifest, put_blob, put_manifest, put_part};
use crate::graphql::{Ctx, GField};
use crate::store::hex;

/// A GraphQL id: base64 of `<Type>:<n>`, as W&B's are.
pub fn gid(kind: &str, n: i64) -> String {
    B64.encode(format!("{kind}:{n}"))
}

fn parse_gid(id: &str) -> Option<i64> {
    let raw = B64.decode(id).ok()?;
    let text = String::from_utf8(raw).ok()?;
    text.rsplit(':').next()?.parse().ok()
}

/// Now, as the API's `createdAt` (UTC, seconds, no zone suffix).
fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .trim_end_matches('Z')
        .to_string()
}

/// The names of an `aliases` input (`[{alias: …}, …]`).
fn alias_names(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.get("alias").and_then(Value::as_str).map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn str_of(v: &Value) -> Option<String> {
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
    let aliases = alias_names(&get("aliases"));
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
    let artifact_entity = str_of(&input_value(field, ctx, "artifactEntityName"));
    let artifact_project = str_of(&input_value(field, ctx, "artifactProjectName"));
    ctx.store.with(|c| {
        c.execute(
            "INSERT INTO art_uses (entity, project, run, artifact, artifact_entity, artifact_project)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![entity, project, run, id, artifact_entity, artifact_project],
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
    let aliases = alias_names(&input_value(field, ctx, "aliases"));
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
