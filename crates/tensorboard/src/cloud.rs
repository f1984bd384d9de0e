//! Log directories in a bucket: `s3://bucket/path` and `gs://bucket/path`,
//! read through the `object_store` crate with the usual credentials of
//! each cloud from the environment (`AWS_ACCESS_KEY_ID`, `AWS_REGION`,
//! `AWS_ENDPOINT_URL` for S3-compatible servers, `AWS_ALLOW_HTTP` for a
//! plain-HTTP one; `GOOGLE_APPLICATION_CREDENTIALS` for GCS).
//!
//! The reader is a plain thread; object stores are async, so each call
//! blocks on the service's runtime. Objects are listed and read by range
//! from where the reader left off, so a file replaced by a longer one (as
//! writers that upload on flush do) is read on from its old end.

use std::path::PathBuf;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;

use crate::logdir::Source;

/// Whether `dir` names a bucket rather than a local directory.
pub fn is_cloud(dir: &str) -> bool {
    ["s3://", "gs://", "az://"]
        .iter()
        .any(|p| dir.starts_with(p))
}

/// A log directory in a bucket.
pub struct Bucket {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    /// `s3://bucket/prefix`, to name objects.
    url: String,
    runtime: tokio::runtime::Handle,
}

/// Opens `url` (`s3://…` or `gs://…`); `runtime` runs the requests.
pub fn open(url: &str, runtime: tokio::runtime::Handle) -> Result<Bucket, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("{url}: not a bucket URL"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(format!("{url}: no bucket"));
    }
    let store: Arc<dyn ObjectStore> = match scheme {
        "s3" => Arc::new(
            object_store::aws::AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .build()
                .map_err(|e| format!("{url}: {e}"))?,
        ),
        "gs" => Arc::new(
            object_store::gcp::GoogleCloudStorageBuilder::from_env()
                .with_bucket_name(bucket)
                .build()
                .map_err(|e| format!("{url}: {e}"))?,
        ),
        other => {
            return Err(format!(
                "{url}: {other}:// log directories are not supported (s3:// and gs:// are)"
            ));
        }
    };
    let prefix = prefix.trim_matches('/').to_string();
    Ok(Bucket {
        store,
        url: format!("{scheme}://{bucket}/{prefix}"),
        prefix,
        runtime,
    })
}

impl Bucket {
    fn object(&self, key: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(key)
        } else {
            ObjectPath::from(format!("{}/{key}", self.prefix))
        }
    }
}

fn io_error(e: object_store::Error) -> std::io::Error {
    match e {
        object_store::Error::NotFound { .. } => {
            std::io::Error::new(std::io::ErrorKind::NotFound, e.to_string())
        }
        other => std::io::Error::other(other.to_string()),
    }
}

impl Source for Bucket {
    fn list(&mut self) -> std::io::Result<Vec<String>> {
        let prefix = (!self.prefix.is_empty()).then(|| ObjectPath::from(self.prefix.as_str()));
        let store = self.store.clone();
        let objects: Vec<object_store::ObjectMeta> = self
            .runtime
            .block_on(async move { store.list(prefix.as_ref()).try_collect().await })
            .map_err(io_error)?;
        let strip = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        Ok(objects
            .into_iter()
            .filter_map(|o| {
                o.location
                    .as_ref()
                    .strip_prefix(strip.as_str())
                    .map(String::from)
            })
            .collect())
    }

    fn read(
        &mut self,
        key: &str,
        offset: u64,
        max: u64,
        into: &mut Vec<u8>,
    ) -> std::io::Result<usize> {
        let store = self.store.clone();
        let object = self.object(key);
        let bytes = self.runtime.block_on(async move {
            let size = store.head(&object).await?.size;
            if offset >= size {
                return Ok(bytes::Bytes::new());
            }
            store
                .get_range(&object, offset..size.min(offset + max))
                .await
        });
        let bytes = bytes.map_err(io_error)?;
        into.extend_from_slice(&bytes);
        Ok(bytes.len())
    }

    fn path(&self, key: &str) -> PathBuf {
        PathBuf::from(format!("{}/{key}", self.url.trim_end_matches('/')))
    }

    fn is_local(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_bucket_and_a_prefix() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert!(is_cloud("s3://b/x") && is_cloud("gs://b") && !is_cloud("/s3/x"));
        // SAFETY-free: building a store does not connect.
        let b = open("s3://bucket/logs/train/", rt.handle().clone()).unwrap();
        assert_eq!(b.prefix, "logs/train");
        assert_eq!(
            b.path("events.out.tfevents.1.h"),
            PathBuf::from("s3://bucket/logs/train/events.out.tfevents.1.h")
        );
        assert!(open("s3://", rt.handle().clone()).is_err());
        assert!(open("az://account/container", rt.handle().clone()).is_err());
    }
}
