//! From a request path to a file inside a `--static` directory, or nothing.
//!
//! The path is percent-decoded once, segment by segment (the same decoding as the app's
//! `PATH_INFO`), and a segment that could step outside the directory is refused: `.`, `..`,
//! and any segment whose decoded bytes hold `/` (`%2f`), `\` or NUL. Symlinks are allowed
//! only when they resolve inside the directory: the joined path is canonicalized and must
//! still start with the (canonical) directory.

use std::ffi::OsStr;
use std::fs::{File, Metadata};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::wsgi::environ::{percent_decode, split_target};

/// The path of a request target, split into percent-decoded segments.
#[derive(Debug, PartialEq, Eq)]
pub struct RequestPath {
    /// The non-empty segments, each percent-decoded once.
    pub segments: Vec<Vec<u8>>,
    /// The path ends with `/`: it names a directory.
    pub trailing_slash: bool,
}

/// Splits the path of `target` (origin or absolute form; the query is dropped) into
/// percent-decoded segments. Empty segments (`//`) are skipped.
pub fn split_path(target: &[u8]) -> RequestPath {
    let (path, _query) = split_target(target);
    let segments = path
        .split(|&b| b == b'/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode(s).into_owned())
        .collect();
    RequestPath {
        segments,
        trailing_slash: path.len() > 1 && path.ends_with(b"/"),
    }
}

/// Whether a decoded segment may name a file inside the directory: not `.` or `..`, and
/// no `/`, `\` or NUL in it.
pub fn is_safe_segment(segment: &[u8]) -> bool {
    !segment.is_empty()
        && segment != b"."
        && segment != b".."
        && !segment.iter().any(|&b| matches!(b, b'/' | b'\\' | 0))
}

/// The file `segments` name under `root` (canonical), with `suffix` appended to the last
/// segment (`.br`, `.gz`, or nothing). `None` when a segment is unsafe, the file does not
/// exist, resolves outside `root` (a symlink pointing out), or is not a regular file.
pub fn resolve(root: &Path, segments: &[Vec<u8>], suffix: &str) -> Option<PathBuf> {
    let (last, parents) = segments.split_last()?;
    if !segments.iter().all(|s| is_safe_segment(s)) {
        return None;
    }
    let mut joined = root.to_path_buf();
    for segment in parents {
        joined.push(OsStr::from_bytes(segment));
    }
    let mut name = last.clone();
    name.extend_from_slice(suffix.as_bytes());
    joined.push(OsStr::from_bytes(&name));
    let canonical = std::fs::canonicalize(&joined).ok()?;
    if !canonical.starts_with(root) {
        return None;
    }
    canonical.is_file().then_some(canonical)
}

/// Opens a resolved file for reading, with its metadata taken from the open descriptor (so
/// the length and validators describe the bytes that will be sent). `O_NOFOLLOW`: the
/// canonical path has no symlink, so one appearing there since `resolve` is refused.
pub fn open(canonical: &Path) -> std::io::Result<(File, Metadata)> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(canonical)?;
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return Err(std::io::ErrorKind::NotFound.into());
    }
    Ok((file, metadata))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(list: &[&[u8]]) -> Vec<Vec<u8>> {
        list.iter().map(|s| s.to_vec()).collect()
    }

    #[test]
    fn paths_are_split_and_decoded_once() {
        let path = split_path(b"/static/css/a%20b.css?v=1");
        assert_eq!(path.segments, segs(&[b"static", b"css", b"a b.css"]));
        assert!(!path.trailing_slash);
        assert_eq!(
            split_path(b"/a/%252e%252e").segments,
            segs(&[b"a", b"%2e%2e"])
        );
        assert_eq!(
            split_path(b"/a/%2e%2e/b").segments,
            segs(&[b"a", b"..", b"b"])
        );
        assert_eq!(split_path(b"/a/x%2fy").segments, segs(&[b"a", b"x/y"]));
        assert!(split_path(b"/static/dir/").trailing_slash);
        assert!(!split_path(b"/").trailing_slash);
        assert_eq!(
            split_path(b"http://host/a//b").segments,
            segs(&[b"a", b"b"])
        );
    }

    #[test]
    fn unsafe_segments() {
        for bad in [&b".."[..], b".", b"a/b", b"a\\b", b"..\\x", b"a\0b", b""] {
            assert!(!is_safe_segment(bad), "{bad:?}");
        }
        for good in [&b"a.css"[..], b"..a", b"...", b"%2e%2e", b"caf\xc3\xa9"] {
            assert!(is_safe_segment(good), "{good:?}");
        }
    }

    #[test]
    fn resolution_stays_inside_the_root() {
        let base = std::env::temp_dir().join(format!("tidegate-path-test-{}", std::process::id()));
        let root = base.join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/a.txt"), b"a").unwrap();
        std::fs::write(root.join("sub/a.txt.gz"), b"gz").unwrap();
        std::fs::write(base.join("secret"), b"s").unwrap();
        std::os::unix::fs::symlink(base.join("secret"), root.join("out")).unwrap();
        std::os::unix::fs::symlink("sub/a.txt", root.join("in")).unwrap();
        let root = std::fs::canonicalize(&root).unwrap();
        let found = resolve(&root, &segs(&[b"sub", b"a.txt"]), "").unwrap();
        assert_eq!(found, root.join("sub/a.txt"));
        assert!(resolve(&root, &segs(&[b"sub", b"a.txt"]), ".gz").is_some());
        assert!(resolve(&root, &segs(&[b"sub", b"a.txt"]), ".br").is_none());
        assert!(resolve(&root, &segs(&[b"in"]), "").is_some());
        assert!(resolve(&root, &segs(&[b"out"]), "").is_none());
        assert!(resolve(&root, &segs(&[b"sub"]), "").is_none(), "directory");
        assert!(resolve(&root, &segs(&[b"..", b"secret"]), "").is_none());
        assert!(resolve(&root, &segs(&[b"sub", b"..", b"..", b"secret"]), "").is_none());
        assert!(resolve(&root, &[], "").is_none());
        assert!(open(&found).is_ok());
        std::fs::remove_dir_all(&base).unwrap();
    }
}
