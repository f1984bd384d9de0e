//! Reading artifacts: versions, memberships and file pages as the GraphQL
//! answers shape them, and the project fields that find them by name.

use rusqlite::{OptionalExtension, params};
use serde_json::{Value, json};

use super::tables::{Member, Version};
use super::{b64_to_hex, gid, parse_gid, str_of};
use crate::graphql::{Ctx, GField};

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

pub(super) fn membership_json(ctx: &Ctx<'_>, m: &Member) -> Value {
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
