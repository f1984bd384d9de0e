//! MD5s of artifact files, computed once.
//!
//! Multipart uploads need the MD5 of every part before the server says
//! whether it has the file, so re-logging an unchanged multi-gigabyte
//! checkpoint would read it again each time. Part hashes are remembered by
//! (path, size, modification time, part size) for the life of the service;
//! a large file's parts are hashed in parallel, each thread reading its own
//! range.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

use md5::{Digest, Md5};

/// `(offset, length, hex MD5)` of each part.
pub type Parts = Vec<(u64, u64, String)>;

#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    path: PathBuf,
    size: u64,
    modified: Option<SystemTime>,
    part: u64,
}

fn cache() -> &'static Mutex<HashMap<Key, Parts>> {
    static CACHE: OnceLock<Mutex<HashMap<Key, Parts>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// The parts of `path` of `part` bytes each, with their MD5s (from the
/// cache when the file has not changed).
pub fn part_hashes(path: &Path, part: u64) -> std::io::Result<Parts> {
    let meta = std::fs::metadata(path)?;
    let key = Key {
        path: path.to_path_buf(),
        size: meta.len(),
        modified: meta.modified().ok(),
        part,
    };
    if let Some(hit) = cache().lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Ok(hit.clone());
    }
    let parts = hash_parts(path, meta.len(), part)?;
    cache()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, parts.clone());
    Ok(parts)
}

fn hash_parts(path: &Path, size: u64, part: u64) -> std::io::Result<Parts> {
    let part = part.max(1);
    let ranges: Vec<(u64, u64)> = (0..size.div_ceil(part))
        .map(|i| (i * part, part.min(size - i * part)))
        .collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(4)
        .min(ranges.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Mutex<Vec<Option<String>>> = Mutex::new(vec![None; ranges.len()]);
    let failure: Mutex<Option<std::io::Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(&(offset, len)) = ranges.get(i) else {
                        return;
                    };
                    match hash_range(path, offset, len, &mut buf) {
                        Ok(hex) => results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(hex),
                        Err(e) => {
                            *failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
                            return;
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(e);
    }
    Ok(ranges
        .into_iter()
        .zip(results.into_inner().unwrap_or_else(|e| e.into_inner()))
        .map(|((o, l), h)| (o, l, h.unwrap_or_default()))
        .collect())
}

fn hash_range(path: &Path, offset: u64, len: u64, buf: &mut [u8]) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    f.seek(SeekFrom::Start(offset))?;
    let mut h = Md5::new();
    let mut left = len;
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        let n = f.read(&mut buf[..want])?;
        if n == 0 {
            return Err(std::io::Error::other("the file shrank while being hashed"));
        }
        h.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(hex(&h.finalize()))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of a hex digest (base64 digests are made from these).
pub fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len() / 2)
        .filter_map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_the_file_are_cached_and_follow_changes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, vec![7u8; 10_000]).unwrap();
        let parts = part_hashes(&p, 4096).unwrap();
        assert_eq!(
            parts.iter().map(|x| (x.0, x.1)).collect::<Vec<_>>(),
            [(0, 4096), (4096, 4096), (8192, 1808)]
        );
        assert_eq!(parts[0].2, hex(&Md5::digest(vec![7u8; 4096])));
        assert_eq!(parts[2].2, hex(&Md5::digest(vec![7u8; 1808])));
        assert_eq!(part_hashes(&p, 4096).unwrap(), parts);
        // Another size: hashed anew.
        std::fs::write(&p, vec![8u8; 5000]).unwrap();
        let changed = part_hashes(&p, 4096).unwrap();
        assert_eq!(changed.len(), 2);
        assert_eq!(changed[0].2, hex(&Md5::digest(vec![8u8; 4096])));
    }
}
