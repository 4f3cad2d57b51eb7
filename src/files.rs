//! The relay's two ways with small files: one atomic writer (the cutover's
//! state file, the outbox) and one token-file reader (the admin tokens, for
//! the server and the CLI alike).

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `dir/name` so that a reader sees the old file or the
/// whole new one, never a part: a hidden temporary beside it, synced, then
/// renamed over it. The directory is not synced here (a caller writing
/// several files syncs it once).
pub fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, dir.join(name))
}

/// Syncs directory `dir`, so renames in it survive a crash.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// A bearer token from its file, surrounding white space (the trailing
/// newline) ignored; `None` for an empty file.
pub fn read_token(path: &Path) -> std::io::Result<Option<String>> {
    let token = std::fs::read_to_string(path)?;
    Ok(Some(token.trim().to_string()).filter(|t| !t.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_atomic_write_replaces_the_whole_file_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("ses-relay-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        write_atomically(&dir, "state.json", b"old").unwrap();
        write_atomically(&dir, "state.json", b"new\n").unwrap();
        sync_dir(&dir).unwrap();
        assert_eq!(std::fs::read(dir.join("state.json")).unwrap(), b"new\n");
        assert!(!dir.join(".state.json.tmp").exists());
        std::fs::write(dir.join("token"), " s3cret \n").unwrap();
        assert_eq!(
            read_token(&dir.join("token")).unwrap().as_deref(),
            Some("s3cret")
        );
        std::fs::write(dir.join("empty"), "\n").unwrap();
        assert_eq!(read_token(&dir.join("empty")).unwrap(), None);
        assert!(read_token(&dir.join("missing")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
