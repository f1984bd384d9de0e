//! Saving an artifact to the backend: what `run.log_artifact` (online) and
//! a synced `artifact` record (offline runs) turn into.
//!
//! CreateArtifact (the server may already have this content: then nothing
//! is uploaded), a manifest placeholder, CreateArtifactFiles in batches
//! (a null upload URL means the server has the file already), the PUTs
//! (multipart with per-part MD5s for large files), the manifest itself,
//! CommitArtifact, and UseArtifact when asked. Errors read
//! `ArtifactSaver.<step>: <cause>`, as wandb-core's, since the SDK shows
//! them as they are.
//!
//! Long for one file, but one concept: one save, step by step, and the
//! link after it.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use md5::{Digest, Md5};
use serde_json::{Value, json};
use wandb_proto::pb;

use super::uploads::RunPath;
use crate::backend::Backend;
use crate::backend::http::RetryClass;

/// Files in one CreateArtifactFiles request (wandb-core starts at 25).
const BATCH: usize = 25;
/// PUTs in flight at once within a batch.
const PARALLEL_PUTS: usize = 8;
/// CreateArtifactFiles batches in flight at once (wandb-core: about 5).
const BATCHES_IN_FLIGHT: usize = 4;

/// Files at least this large go up in parts (wandb-core: 2 GiB);
/// `WANDB_X_ARTIFACT_MULTIPART_THRESHOLD` lowers it (tests).
fn multipart_threshold() -> u64 {
    env_u64("WANDB_X_ARTIFACT_MULTIPART_THRESHOLD").unwrap_or(2 << 30)
}

/// Part size: 100 MiB, or enough for at most 10 000 parts (4 KiB aligned);
/// `WANDB_X_ARTIFACT_MULTIPART_PART_SIZE` sets it (tests).
fn part_size(file_size: u64) -> u64 {
    if let Some(p) = env_u64("WANDB_X_ARTIFACT_MULTIPART_PART_SIZE") {
        return p.max(1);
    }
    let min = 100 << 20;
    let needed = file_size.div_ceil(10_000).div_ceil(4096) * 4096;
    needed.max(min)
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.parse().ok()
}

/// Why an artifact was not saved or linked: the step that failed, named as
/// wandb-core names it (the SDK shows the text as it is), and its cause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{step}: {cause}")]
pub struct ArtifactError {
    pub step: &'static str,
    pub cause: String,
}

/// Turns a step's failure into an [`ArtifactError`].
fn at<E: std::fmt::Display>(step: &'static str) -> impl FnOnce(E) -> ArtifactError {
    move |cause| ArtifactError {
        step,
        cause: cause.to_string(),
    }
}

/// One save.
pub struct SaveJob {
    pub artifact: pb::ArtifactRecord,
    pub history_step: i64,
    /// Where the SDK staged files; they are removed after a successful save
    /// (none when empty: sync keeps everything).
    pub staging_dir: String,
    /// The run the artifact belongs to, as the server knows it.
    pub run: RunPath,
}

/// A manifest entry as uploaded.
#[derive(Debug, Clone)]
struct Entry {
    path: String,
    digest: String,
    reference: String,
    size: i64,
    local_path: String,
    birth_artifact_id: String,
    skip_cache: bool,
    extra: Vec<(String, String)>,
}

/// Saves the artifact; returns its server ID.
pub async fn save(backend: &Backend, job: SaveJob) -> Result<String, ArtifactError> {
    let a = &job.artifact;
    let _op = backend
        .operations
        .start(format!("uploading artifact {}", a.name));
    let mut entries = entries_of(a).map_err(at("ArtifactSaver.readManifest"))?;
    entries.sort_by(|x, y| x.path.cmp(&y.path));
    // XXH128 artifacts need a server that takes them (its
    // ARTIFACT_DIGEST_ALGORITHM feature); without that, as wandb-core does,
    // the files are hashed with MD5 and the artifact digest recomputed.
    let mut digest = a.digest.clone();
    if a.digest_algorithm == "MANIFEST_XXH128" || entries.iter().any(is_xxh128) {
        digest = to_md5(&mut entries)
            .await
            .map_err(at("ArtifactSaver.rehash"))?;
    }
    let (entity, project) = (job.run.entity.clone(), job.run.project.clone());
    let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());

    // 1. The artifact.
    let mut input = json!({
        "entityName": entity,
        "projectName": project,
        "artifactTypeName": a.r#type,
        "artifactCollectionName": a.name,
        "runName": if a.user_created { None } else { Some(job.run.name.clone()) },
        "digest": digest,
        "digestAlgorithm": "MANIFEST_MD5",
        "description": opt(&a.description),
        "aliases": a.aliases.iter().map(|al| json!({"alias": al, "artifactCollectionName": a.name})).collect::<Vec<_>>(),
        "metadata": opt(&a.metadata),
        "ttlDurationSeconds": (a.ttl_duration_seconds != 0).then_some(a.ttl_duration_seconds),
        "historyStep": (job.history_step > 0).then_some(job.history_step),
        "enableDigestDeduplication": true,
        "distributedID": opt(&a.distributed_id),
        "clientID": a.client_id,
        "sequenceClientID": a.sequence_client_id,
        "artifactCollectionNames": null, "labels": null, "clientMutationId": null, "storageRegion": null,
    });
    if !a.tags.is_empty() {
        input["tags"] = json!(
            a.tags
                .iter()
                .map(|t| json!({"tagName": t, "tagCategoryName": null, "attributes": null}))
                .collect::<Vec<_>>()
        );
    }
    let created = gql(
        backend,
        "CreateArtifact",
        CREATE_ARTIFACT,
        json!({"input": input}),
    )
    .await
    .map_err(at("ArtifactSaver.createArtifact"))?;
    let art = &created["createArtifact"]["artifact"];
    let artifact_id = art["id"]
        .as_str()
        .ok_or_else(|| at("ArtifactSaver.createArtifact")("no artifact id in the answer"))?
        .to_string();
    let base_id = opt(&a.base_id).or_else(|| {
        art["artifactSequence"]["latestArtifact"]["id"]
            .as_str()
            .map(String::from)
    });
    match art["state"].as_str() {
        Some("COMMITTED") => {
            tracing::info!(
                "artifact {} already exists with the same content; no new version",
                a.name
            );
            if a.use_after_commit {
                use_artifact(backend, &artifact_id, &job).await?;
            }
            fill_cache(&entries, &job.staging_dir).await;
            remove_staged(&job.staging_dir, &entries);
            return Ok(artifact_id);
        }
        Some("PENDING") | Some("DELETED") => {}
        other => {
            return Err(at("ArtifactSaver.createArtifact")(format!(
                "unexpected artifact state {other:?}"
            )));
        }
    }

    // 2. A manifest to attach files to. Incremental artifacts send only
    // what changed since the base version; distributed ones a part each.
    let (manifest_name, manifest_type) = if !a.distributed_id.is_empty() {
        ("wandb_manifest.patch.json", "PATCH")
    } else if a.incremental_beta1 {
        ("wandb_manifest.incremental.json", "INCREMENTAL")
    } else {
        ("wandb_manifest.json", "FULL")
    };
    let manifest_vars = |digest: &str, include_upload: bool| {
        json!({
            "artifactID": artifact_id, "baseArtifactID": base_id,
            "name": manifest_name, "digest": digest,
            "entityName": entity, "projectName": project, "runName": job.run.name,
            "manifestType": manifest_type, "includeUpload": include_upload,
        })
    };
    let manifest = gql(
        backend,
        "CreateArtifactManifest",
        CREATE_MANIFEST,
        manifest_vars("", false),
    )
    .await
    .map_err(at("ArtifactSaver.createManifest"))?;
    let manifest_id = manifest["createArtifactManifest"]["artifactManifest"]["id"]
        .as_str()
        .ok_or_else(|| at("ArtifactSaver.createManifest")("nil createArtifactManifest"))?
        .to_string();

    // 3. The files.
    let local: Vec<usize> = (0..entries.len())
        .filter(|i| entries[*i].reference.is_empty() && !entries[*i].local_path.is_empty())
        .collect();
    {
        use futures::StreamExt as _;
        let snapshot = entries.clone();
        // Futures made up front: a closure inside the stream trips the
        // compiler's higher-ranked lifetime check when the save is spawned.
        let batches: Vec<_> = local
            .chunks(BATCH)
            .map(|batch| upload_batch(backend, &artifact_id, &manifest_id, &snapshot, batch))
            .collect();
        let births: Vec<Vec<(usize, String)>> = futures::stream::iter(batches)
            .buffer_unordered(BATCHES_IN_FLIGHT)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()
            .map_err(at("ArtifactSaver.uploadFiles"))?;
        for (i, birth) in births.into_iter().flatten() {
            entries[i].birth_artifact_id = birth;
        }
    }

    // 4. The manifest itself.
    let manifest_json = manifest_json(a, &entries);
    let digest = B64.encode(Md5::digest(manifest_json.as_bytes()));
    let upserted = if manifest_type == "FULL" {
        gql(
            backend,
            "CreateArtifactManifest",
            CREATE_MANIFEST,
            manifest_vars(&digest, true),
        )
        .await
        .map(|v| v["createArtifactManifest"].clone())
    } else {
        gql(
            backend,
            "UpdateArtifactManifest",
            UPDATE_MANIFEST,
            json!({"artifactManifestID": manifest_id, "digest": digest,
                   "baseArtifactID": null, "includeUpload": true}),
        )
        .await
        .map(|v| v["updateArtifactManifest"].clone())
    }
    .map_err(at("ArtifactSaver.upsertManifest"))?;
    let file = &upserted["artifactManifest"]["file"];
    let url = file["uploadUrl"]
        .as_str()
        .ok_or_else(|| at("ArtifactSaver.upsertManifest")("nil uploadURL"))?;
    backend
        .upload(
            url,
            &headers(&file["uploadHeaders"]),
            Bytes::from(manifest_json),
            "artifact manifest",
        )
        .await
        .map_err(at("ArtifactSaver.uploadManifest"))?;

    // 5. Commit, use.
    if a.finalize {
        gql(
            backend,
            "CommitArtifact",
            COMMIT_ARTIFACT,
            json!({"artifactID": artifact_id}),
        )
        .await
        .map_err(at("ArtifactSaver.commitArtifact"))?;
    }
    if a.use_after_commit {
        use_artifact(backend, &artifact_id, &job).await?;
    }
    fill_cache(&entries, &job.staging_dir).await;
    remove_staged(&job.staging_dir, &entries);
    Ok(artifact_id)
}

/// Copies saved files into the SDK's artifact cache
/// (`<cache>/artifacts/obj/md5/<hex[..2]>/<hex[2..]>`), as wandb-core does,
/// so `artifact.download()` on this machine reads them from disk.
async fn fill_cache(entries: &[Entry], staging_dir: &str) {
    let Some(root) = std::env::var_os("WANDB_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("wandb")))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/wandb")))
    else {
        return;
    };
    let entries: Vec<Entry> = entries
        .iter()
        .filter(|e| !e.local_path.is_empty() && !e.skip_cache && e.extra.is_empty())
        .cloned()
        .collect();
    let staging = PathBuf::from(staging_dir);
    let _ = tokio::task::spawn_blocking(move || {
        let objects = root.join("artifacts/obj/md5");
        let tmp = root.join("artifacts/tmp");
        for e in entries {
            let Ok(raw) = B64.decode(&e.digest) else {
                continue;
            };
            let hex = super::checksums::hex(&raw);
            let target = objects.join(&hex[..2]).join(&hex[2..]);
            if target.exists() {
                continue;
            }
            let staged = tmp.join(format!("{hex}.{}", std::process::id()));
            // A staged copy is removed right after: link it instead of
            // copying (a gigabyte copied cost more than the upload in
            // `wandb-bench --artifacts`); the user's own files are copied.
            let source = Path::new(&e.local_path);
            let linkable = !staging.as_os_str().is_empty() && source.starts_with(&staging);
            let copied = std::fs::create_dir_all(&tmp)
                .and_then(|()| std::fs::create_dir_all(target.parent().unwrap_or(&objects)))
                .and_then(|()| {
                    if linkable && std::fs::hard_link(source, &staged).is_ok() {
                        Ok(0)
                    } else {
                        std::fs::copy(source, &staged)
                    }
                })
                .and_then(|_| std::fs::rename(&staged, &target));
            if let Err(err) = copied {
                let _ = std::fs::remove_file(&staged);
                tracing::debug!("artifact cache: {}: {err}", e.local_path);
            }
        }
    })
    .await;
}

/// Links a saved artifact (by server ID, or by the client ID of a draft)
/// into a portfolio; returns its version index there.
pub async fn link(
    backend: &Backend,
    run: &RunPath,
    r: &pb::LinkArtifactRequest,
) -> Result<i32, ArtifactError> {
    let or = |s: &str, default: &str| {
        if s.is_empty() {
            default.to_string()
        } else {
            s.to_string()
        }
    };
    let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let answer = gql(
        backend,
        "LinkArtifact",
        LINK_ARTIFACT,
        json!({
            "artifactPortfolioName": r.portfolio_name,
            "entityName": or(&r.portfolio_entity, &run.entity),
            "projectName": or(&r.portfolio_project, &run.project),
            "aliases": r.portfolio_aliases.iter().map(|a| json!({"artifactCollectionName": r.portfolio_name, "alias": a})).collect::<Vec<_>>(),
            "clientId": opt(&r.client_id),
            "artifactId": opt(&r.server_id),
        }),
    )
    .await
    .map_err(at("ArtifactLinker"))?;
    answer["linkArtifact"]["versionIndex"]
        .as_i64()
        .map(|n| n as i32)
        .ok_or_else(|| at("ArtifactLinker")("no version index in the answer"))
}

fn is_xxh128(e: &Entry) -> bool {
    e.extra
        .iter()
        .any(|(k, v)| k == "alg" && v.trim_matches('"') == "XXH128")
}

/// Re-hashes XXH128 entries of local files with MD5; returns the artifact
/// digest: the hex MD5 of `wandb-artifact-manifest-v1` and `path:digest`
/// lines, by path.
async fn to_md5(entries: &mut [Entry]) -> Result<String, String> {
    for e in entries.iter_mut().filter(|e| is_xxh128(e)) {
        if e.reference.is_empty() && !e.local_path.is_empty() {
            let path = PathBuf::from(&e.local_path);
            let whole =
                tokio::task::spawn_blocking(move || super::checksums::part_hashes(&path, u64::MAX))
                    .await
                    .map_err(|err| err.to_string())?
                    .map_err(|err| format!("{}: {err}", e.local_path))?;
            let hex = whole
                .first()
                .map(|p| p.2.clone())
                .unwrap_or_else(|| super::checksums::hex(&Md5::digest(b"")));
            e.digest = B64.encode(super::checksums::unhex(&hex));
            e.extra.retain(|(k, _)| k != "alg");
        }
    }
    let mut text = String::from("wandb-artifact-manifest-v1\n");
    for e in entries.iter() {
        text.push_str(&format!("{}:{}\n", e.path, e.digest));
    }
    Ok(super::checksums::hex(&Md5::digest(text.as_bytes())))
}

async fn use_artifact(backend: &Backend, id: &str, job: &SaveJob) -> Result<(), ArtifactError> {
    let mut input = json!({
        "artifactID": id, "entityName": job.run.entity, "projectName": job.run.project,
        "runName": job.run.name, "usedAs": null, "clientMutationId": null,
    });
    // A server that takes them gets the artifact's own entity and project.
    if backend
        .server_feature("USE_ARTIFACT_WITH_ENTITY_AND_PROJECT_INFORMATION")
        .await
    {
        input["artifactEntityName"] = json!(job.run.entity);
        input["artifactProjectName"] = json!(job.run.project);
    }
    gql(
        backend,
        "UseArtifact",
        USE_ARTIFACT,
        json!({ "input": input }),
    )
    .await
    .map(|_| ())
    .map_err(at("gql.UseArtifact"))
}

async fn gql(backend: &Backend, op: &str, query: &str, vars: Value) -> Result<Value, String> {
    backend
        .graphql(op, query, vars, RetryClass::MostFailures, None)
        .await
        .map_err(|e| e.to_string())
}

/// `"Key: Value"` upload headers as pairs.
fn headers(v: &Value) -> Vec<(String, String)> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .filter_map(|h| h.split_once(':'))
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// One CreateArtifactFiles request and the PUTs it asks for.
/// Returns the birth artifact of each file (the artifact that first stored
/// its content).
async fn upload_batch(
    backend: &Backend,
    artifact_id: &str,
    manifest_id: &str,
    entries: &[Entry],
    batch: &[usize],
) -> Result<Vec<(usize, String)>, String> {
    let threshold = multipart_threshold();
    let mut specs = Vec::with_capacity(batch.len());
    let mut parts: Vec<Option<Vec<(u64, u64, String)>>> = Vec::with_capacity(batch.len());
    for &i in batch {
        let e = &entries[i];
        let size = e.size.max(0) as u64;
        let part_md5s = if size >= threshold {
            let path = PathBuf::from(&e.local_path);
            let ps = part_size(size);
            Some(
                tokio::task::spawn_blocking(move || super::checksums::part_hashes(&path, ps))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|err| format!("{}: {err}", e.local_path))?,
            )
        } else {
            None
        };
        specs.push(json!({
            "artifactID": artifact_id, "artifactManifestID": manifest_id,
            "name": e.path, "md5": e.digest, "mimetype": null,
            "uploadPartsInput": part_md5s.as_ref().map(|ps| ps.iter().enumerate().map(|(n, (_, _, hex))| json!({"partNumber": n + 1, "hexMD5": hex})).collect::<Vec<_>>()),
        }));
        parts.push(part_md5s);
    }
    let answer = gql(
        backend,
        "CreateArtifactFiles",
        CREATE_FILES,
        json!({"input": {"artifactFiles": specs, "storageLayout": "V2", "cloudRegionID": null, "clientMutationId": null}}),
    )
    .await?;
    let edges = answer["createArtifactFiles"]["files"]["edges"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if edges.len() != batch.len() {
        return Err(format!(
            "expected {} upload URLs, got {}",
            batch.len(),
            edges.len()
        ));
    }
    let mut puts = Vec::new();
    let mut births = Vec::with_capacity(batch.len());
    for ((&i, edge), part_md5s) in batch.iter().zip(&edges).zip(parts) {
        let node = &edge["node"];
        if let Some(birth) = node["artifact"]["id"].as_str() {
            births.push((i, birth.to_string()));
        }
        let Some(url) = node["uploadUrl"].as_str() else {
            continue; // the server has this content already
        };
        let e = entries[i].clone();
        let url = url.to_string();
        let hdrs = headers(&node["uploadHeaders"]);
        let multipart = part_md5s.map(|ps| {
            (
                ps,
                node["uploadMultipartUrls"].clone(),
                node["storagePath"].as_str().unwrap_or_default().to_string(),
                node["artifact"]["id"]
                    .as_str()
                    .unwrap_or(artifact_id)
                    .to_string(),
            )
        });
        let backend = backend.clone();
        puts.push(async move {
            match multipart {
                None => {
                    let path = e.local_path.clone();
                    let content = tokio::fs::read(&path)
                        .await
                        .map_err(|err| format!("{path}: {err}"))?;
                    // A file that changed size since it was added would
                    // corrupt the version. (Its MD5 is not computed again:
                    // that cost 1.7 CPU-s per GB in `wandb-bench
                    // --artifacts`; the server checks the content.)
                    if content.len() as i64 != e.size {
                        return Err(format!(
                            "{}: {path} changed after it was added to the artifact",
                            e.path
                        ));
                    }
                    // Content-MD5 goes only when the server's upload headers
                    // name it: signed URLs may not cover an extra header.
                    backend
                        .upload(&url, &hdrs, Bytes::from(content), "artifact file")
                        .await
                        .map_err(|err| format!("{}: {err}", e.path))
                }
                Some((ps, urls, storage_path, birth)) => {
                    upload_parts(&backend, &e, &hdrs, ps, &urls, &storage_path, &birth).await
                }
            }
        });
    }
    // A few at a time, in order of the batch.
    let mut pending = puts.into_iter();
    loop {
        let wave: Vec<_> = pending.by_ref().take(PARALLEL_PUTS).collect();
        if wave.is_empty() {
            break;
        }
        for r in futures::future::join_all(wave).await {
            r?;
        }
    }
    Ok(births)
}

/// A multipart upload: each part PUT with its Content-MD5, then
/// CompleteMultipartUploadArtifact with the parts' ETags.
async fn upload_parts(
    backend: &Backend,
    e: &Entry,
    headers: &[(String, String)],
    parts: Vec<(u64, u64, String)>,
    urls: &Value,
    storage_path: &str,
    birth: &str,
) -> Result<(), String> {
    let upload_id = urls["uploadID"].as_str().ok_or("no uploadID")?;
    let part_urls = urls["uploadUrlParts"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    // Only Content-Type of the upload headers goes with parts.
    let content_type = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let mut completed = Vec::with_capacity(parts.len());
    for (n, (offset, len, hex)) in parts.iter().enumerate() {
        let number = n as i64 + 1;
        let url = part_urls
            .iter()
            .find(|p| p["partNumber"].as_i64() == Some(number))
            .and_then(|p| p["uploadUrl"].as_str())
            .ok_or(format!("no URL for part {number}"))?;
        let path = PathBuf::from(&e.local_path);
        let (offset, len) = (*offset, *len);
        let content = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
            let mut f = std::fs::File::open(path)?;
            f.seek(SeekFrom::Start(offset))?;
            let mut buf = vec![0u8; len as usize];
            f.read_exact(&mut buf)?;
            Ok(buf)
        })
        .await
        .map_err(|err| err.to_string())?
        .map_err(|err| format!("{}: {err}", e.local_path))?;
        let part_headers = vec![
            (
                "Content-MD5".to_string(),
                B64.encode(super::checksums::unhex(hex)),
            ),
            ("Content-Type".to_string(), content_type.clone()),
        ];
        let etag = backend
            .upload_with_etag(url, &part_headers, Bytes::from(content), "artifact part")
            .await
            .map_err(|err| format!("{} part {number}: {err}", e.path))?
            .ok_or(format!("{} part {number}: no ETag in the answer", e.path))?;
        completed.push(json!({"partNumber": number, "hexMD5": etag}));
    }
    gql(
        backend,
        "CompleteMultipartUploadArtifact",
        COMPLETE_MULTIPART,
        json!({"completeMultipartAction": "Complete", "completedParts": completed,
               "artifactID": birth, "storagePath": storage_path, "uploadID": upload_id}),
    )
    .await
    .map(|_| ())
}

/// The manifest entries: from the record, or from the gzip JSON-lines file
/// the SDK writes for very large manifests (removed once read).
fn entries_of(a: &pb::ArtifactRecord) -> Result<Vec<Entry>, String> {
    let Some(m) = &a.manifest else {
        return Ok(Vec::new());
    };
    let mut out: Vec<Entry> = m
        .contents
        .iter()
        .map(|c| Entry {
            path: c.path.clone(),
            digest: c.digest.clone(),
            reference: c.r#ref.clone(),
            size: c.size,
            local_path: c.local_path.clone(),
            birth_artifact_id: c.birth_artifact_id.clone(),
            skip_cache: c.skip_cache,
            extra: c
                .extra
                .iter()
                .map(|x| (x.key.clone(), x.value_json.clone()))
                .collect(),
        })
        .collect();
    if !m.manifest_file_path.is_empty() {
        let path = &m.manifest_file_path;
        let read = (|| -> Result<Vec<Entry>, String> {
            let f = std::fs::File::open(path).map_err(|e| format!("{path}: {e}"))?;
            let mut text = String::new();
            flate2::read::GzDecoder::new(f)
                .read_to_string(&mut text)
                .map_err(|e| format!("{path}: {e}"))?;
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| {
                    let v: Value = serde_json::from_str(l).map_err(|e| format!("{path}: {e}"))?;
                    let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
                    Ok(Entry {
                        path: s("path"),
                        digest: s("digest"),
                        reference: s("ref"),
                        size: v["size"].as_i64().unwrap_or(0),
                        local_path: s("local_path"),
                        birth_artifact_id: s("birthArtifactID"),
                        skip_cache: v["skip_cache"].as_bool().unwrap_or(false),
                        extra: v["extra"]
                            .as_object()
                            .map(|o| o.iter().map(|(k, v)| (k.clone(), v.to_string())).collect())
                            .unwrap_or_default(),
                    })
                })
                .collect()
        })();
        let _ = std::fs::remove_file(path);
        out.extend(read?);
    }
    Ok(out)
}

/// The manifest file: `wandb-storage-policy-v1`, entries by path.
fn manifest_json(a: &pb::ArtifactRecord, entries: &[Entry]) -> String {
    use wandb_proto::json::write_str;
    let m = a.manifest.clone().unwrap_or_default();
    let mut out = String::from("{\"version\":1,\"storagePolicy\":");
    write_str(
        if m.storage_policy.is_empty() {
            "wandb-storage-policy-v1"
        } else {
            &m.storage_policy
        },
        &mut out,
    );
    out.push_str(",\"storagePolicyConfig\":{");
    let mut config: Vec<(String, String)> = m
        .storage_policy_config
        .iter()
        .map(|c| (c.key.clone(), c.value_json.clone()))
        .collect();
    if config.is_empty() {
        config.push(("storageLayout".into(), "\"V2\"".into()));
    }
    for (i, (k, v)) in config.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(k, &mut out);
        out.push(':');
        out.push_str(v);
    }
    out.push_str("},\"contents\":{");
    for (i, e) in entries.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(&e.path, &mut out);
        out.push_str(":{\"digest\":");
        write_str(&e.digest, &mut out);
        if !e.reference.is_empty() {
            out.push_str(",\"ref\":");
            write_str(&e.reference, &mut out);
        }
        out.push_str(&format!(",\"size\":{}", e.size));
        if !e.local_path.is_empty() {
            out.push_str(",\"local_path\":");
            write_str(&e.local_path, &mut out);
        }
        if !e.birth_artifact_id.is_empty() {
            out.push_str(",\"birthArtifactID\":");
            write_str(&e.birth_artifact_id, &mut out);
        }
        out.push_str(&format!(",\"skip_cache\":{}", e.skip_cache));
        if !e.extra.is_empty() {
            out.push_str(",\"extra\":{");
            for (j, (k, v)) in e.extra.iter().enumerate() {
                if j > 0 {
                    out.push(',');
                }
                write_str(k, &mut out);
                out.push(':');
                out.push_str(v);
            }
            out.push('}');
        }
        out.push('}');
    }
    out.push_str("}}");
    out
}

/// After a successful save, the SDK's staged copies are not needed.
fn remove_staged(staging_dir: &str, entries: &[Entry]) {
    if staging_dir.is_empty() {
        return;
    }
    let staging = Path::new(staging_dir);
    for e in entries {
        let p = Path::new(&e.local_path);
        if !e.local_path.is_empty() && p.starts_with(staging) {
            let _ = std::fs::remove_file(p);
        }
    }
}

const CREATE_ARTIFACT: &str = "mutation CreateArtifact($input: CreateArtifactInput!) { createArtifact(input: $input) { artifact { id state artifactSequence { latestArtifact { id } } } } }";
const CREATE_MANIFEST: &str = "mutation CreateArtifactManifest($artifactID: ID!, $baseArtifactID: ID, $name: String!, $digest: String!, $entityName: String!, $projectName: String!, $runName: String!, $manifestType: ArtifactManifestType!, $includeUpload: Boolean!) { createArtifactManifest(input: {artifactID: $artifactID, baseArtifactID: $baseArtifactID, name: $name, digest: $digest, entityName: $entityName, projectName: $projectName, runName: $runName, type: $manifestType}) { artifactManifest { id file { id uploadUrl @include(if: $includeUpload) uploadHeaders @include(if: $includeUpload) } } } }";
const CREATE_FILES: &str = "mutation CreateArtifactFiles($input: CreateArtifactFilesInput!) { createArtifactFiles(input: $input) { files { edges { node { storagePath uploadUrl uploadHeaders uploadMultipartUrls { uploadID uploadUrlParts { partNumber uploadUrl } } artifact { id } } } } } }";
const UPDATE_MANIFEST: &str = "mutation UpdateArtifactManifest($artifactManifestID: ID!, $digest: String, $baseArtifactID: ID, $includeUpload: Boolean!) { updateArtifactManifest(input: {artifactManifestID: $artifactManifestID, digest: $digest, baseArtifactID: $baseArtifactID}) { artifactManifest { id file { id uploadUrl @include(if: $includeUpload) uploadHeaders @include(if: $includeUpload) } } } }";
const LINK_ARTIFACT: &str = "mutation LinkArtifact($artifactPortfolioName: String!, $entityName: String!, $projectName: String!, $aliases: [ArtifactAliasInput!], $clientId: ID, $artifactId: ID) { linkArtifact(input: {artifactPortfolioName: $artifactPortfolioName, entityName: $entityName, projectName: $projectName, aliases: $aliases, artifactID: $artifactId, clientID: $clientId}) { versionIndex } }";
const COMPLETE_MULTIPART: &str = "mutation CompleteMultipartUploadArtifact($completeMultipartAction: CompleteMultipartAction!, $completedParts: [UploadPartsInput!]!, $artifactID: ID!, $storagePath: String!, $uploadID: String!) { completeMultipartUploadArtifact(input: {completeMultipartAction: $completeMultipartAction, completedParts: $completedParts, artifactID: $artifactID, storagePath: $storagePath, uploadID: $uploadID}) { digest } }";
const COMMIT_ARTIFACT: &str = "mutation CommitArtifact($artifactID: ID!) { commitArtifact(input: {artifactID: $artifactID}) { artifact { id digest } } }";
const USE_ARTIFACT: &str = "mutation UseArtifact($input: UseArtifactInput!) { useArtifact(input: $input) { artifact { id } } }";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_json_lists_entries_by_path_with_their_fields() {
        let entries = vec![
            Entry {
                path: "a.txt".into(),
                digest: "FlTehaFs3UCpvmssf4I5Pw==".into(),
                reference: String::new(),
                size: 16,
                local_path: "/staging/x".into(),
                birth_artifact_id: "QXJ0aWZhY3Q6MQ==".into(),
                skip_cache: false,
                extra: vec![],
            },
            Entry {
                path: "ref.txt".into(),
                digest: "abc".into(),
                reference: "file:///data/ref.txt".into(),
                size: 3,
                local_path: String::new(),
                birth_artifact_id: String::new(),
                skip_cache: false,
                extra: vec![("alg".into(), "\"XXH128\"".into())],
            },
        ];
        let json = manifest_json(&pb::ArtifactRecord::default(), &entries);
        assert_eq!(
            json,
            r#"{"version":1,"storagePolicy":"wandb-storage-policy-v1","storagePolicyConfig":{"storageLayout":"V2"},"contents":{"a.txt":{"digest":"FlTehaFs3UCpvmssf4I5Pw==","size":16,"local_path":"/staging/x","birthArtifactID":"QXJ0aWZhY3Q6MQ==","skip_cache":false},"ref.txt":{"digest":"abc","ref":"file:///data/ref.txt","size":3,"skip_cache":false,"extra":{"alg":"XXH128"}}}}"#
        );
        let v: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["contents"]["a.txt"]["size"], 16);
    }

    #[test]
    fn part_sizes_follow_wandb_core() {
        assert_eq!(part_size(1 << 30), 100 << 20);
        assert_eq!(part_size(5 << 40) % 4096, 0);
    }
}
