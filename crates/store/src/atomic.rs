//! Files replaced whole: a reader sees the old content or the new, never
//! half of either, even if the process dies midway.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `content` to `<path>.tmp`, syncs it, and renames it over `path`
/// (creating the directory if needed). The sync makes the rename safe
/// against a crash: without it a file can survive as zero bytes. These
/// files (run files, the port file) are written a few times per run, so
/// the cost is not felt.
pub fn write_atomically(path: &Path, content: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(content)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_whole_file_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("atomic-{}", std::process::id()));
        let path = dir.join("sub").join("f.json");
        write_atomically(&path, b"first, longer").unwrap();
        write_atomically(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        assert!(!dir.join("sub").join("f.json.tmp").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
