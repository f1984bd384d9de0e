//! The machine's limits for the same bytes: how fast a Unix socket moves the
//! ingest stream between two threads, and how fast the disk appends it.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Instant;

const CHUNK: usize = 256 * 1024;

/// GB/s through a Unix socket pair.
pub fn socket_gb_per_s(bytes: &[u8]) -> anyhow::Result<f64> {
    let (mut a, mut b) = UnixStream::pair()?;
    let total = bytes.len();
    let reader = std::thread::spawn(move || -> std::io::Result<usize> {
        let mut buf = vec![0u8; CHUNK];
        let mut got = 0;
        while got < total {
            let n = b.read(&mut buf)?;
            if n == 0 {
                break;
            }
            got += n;
        }
        Ok(got)
    });
    let t0 = Instant::now();
    for chunk in bytes.chunks(CHUNK) {
        a.write_all(chunk)?;
    }
    let got = reader
        .join()
        .map_err(|_| anyhow::anyhow!("reader panicked"))??;
    anyhow::ensure!(got == total, "socket lost bytes");
    Ok(total as f64 / 1e9 / t0.elapsed().as_secs_f64())
}

/// GB/s of sequential appends of `bytes` to a new file; with `fsync` the
/// clock includes the final fsync.
pub fn append_gb_per_s(bytes: &[u8], dir: &Path, fsync: bool) -> anyhow::Result<f64> {
    let path = dir.join("append.bin");
    let _ = std::fs::remove_file(&path);
    let t0 = Instant::now();
    let mut f = std::fs::File::create(&path)?;
    for chunk in bytes.chunks(CHUNK) {
        f.write_all(chunk)?;
    }
    if fsync {
        f.sync_all()?;
    }
    let secs = t0.elapsed().as_secs_f64();
    drop(f);
    std::fs::remove_file(&path)?;
    Ok(bytes.len() as f64 / 1e9 / secs)
}
