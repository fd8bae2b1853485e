//! The `--static` prefixes and directories, and which one a request path falls under.

use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::static_files::path::is_safe_segment;

/// One `--static URL_PREFIX=DIRECTORY`.
#[derive(Debug)]
pub struct Mount {
    /// The prefix's segments (`/assets/v1` is `["assets", "v1"]`).
    segments: Vec<Vec<u8>>,
    /// The directory, canonical (absolute, no symlinks), so that a resolved file can be
    /// checked to lie inside it.
    root: PathBuf,
}

impl Mount {
    /// The canonical directory files are served from.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

/// Every `--static` mount and the options they share.
#[derive(Debug)]
pub struct StaticSite {
    /// Longest prefix first, so the first match is the longest.
    mounts: Vec<Mount>,
    /// `--static-cache-control`, sent on every file answer (200, 206, 304).
    cache_control: Option<Bytes>,
}

impl StaticSite {
    /// Checks and records the mounts. Errors name the option and the problem: a prefix that
    /// does not start with `/` or has `.`/`..` segments, the same prefix twice, a directory
    /// that does not exist, or a Cache-Control value with control characters.
    pub fn new(mounts: &[(String, PathBuf)], cache_control: Option<&str>) -> Result<Self, String> {
        let mut checked: Vec<Mount> = Vec::with_capacity(mounts.len());
        for (prefix, directory) in mounts {
            let option = format!("--static {prefix}={}", directory.display());
            if !prefix.starts_with('/') {
                return Err(format!("{option}: the URL prefix must start with '/'"));
            }
            let segments: Vec<Vec<u8>> = prefix
                .split('/')
                .filter(|s| !s.is_empty())
                .map(|s| s.as_bytes().to_vec())
                .collect();
            if !segments.iter().all(|s| is_safe_segment(s)) {
                return Err(format!(
                    "{option}: the URL prefix must not contain '.', '..', '\\' or NUL segments"
                ));
            }
            if checked.iter().any(|m| m.segments == segments) {
                return Err(format!("{option}: the URL prefix {prefix} is given twice"));
            }
            let root = std::fs::canonicalize(directory)
                .map_err(|e| format!("{option}: directory {}: {e}", directory.display()))?;
            if !root.is_dir() {
                return Err(format!(
                    "{option}: {} is not a directory",
                    directory.display()
                ));
            }
            checked.push(Mount { segments, root });
        }
        checked.sort_by_key(|m| std::cmp::Reverse(m.segments.len()));
        let cache_control = match cache_control {
            Some(value) if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') => {
                return Err(format!(
                    "--static-cache-control {value:?}: control characters are not allowed"
                ))
            }
            Some(value) if !value.trim().is_empty() => {
                Some(Bytes::copy_from_slice(value.trim().as_bytes()))
            }
            _ => None,
        };
        Ok(StaticSite {
            mounts: checked,
            cache_control,
        })
    }

    /// The mount with the longest prefix that `segments` (a percent-decoded path) starts
    /// with, and the segments after the prefix. Prefixes match whole segments: `/static`
    /// covers `/static/a.css`, not `/staticky`.
    pub fn route<'p>(&self, segments: &'p [Vec<u8>]) -> Option<(&Mount, &'p [Vec<u8>])> {
        self.mounts
            .iter()
            .find(|m| segments.starts_with(&m.segments))
            .map(|m| (m, &segments[m.segments.len()..]))
    }

    /// The Cache-Control value to send, if one was configured.
    pub fn cache_control(&self) -> Option<&Bytes> {
        self.cache_control.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(path: &str) -> Vec<Vec<u8>> {
        path.split('/')
            .filter(|s| !s.is_empty())
            .map(|s| s.as_bytes().to_vec())
            .collect()
    }

    #[test]
    fn longest_prefix_wins_and_matches_whole_segments() {
        let dir = std::env::temp_dir();
        let site = StaticSite::new(
            &[
                ("/static".into(), dir.clone()),
                ("/static/big/".into(), dir.clone()),
                ("/".into(), dir.clone()),
            ],
            None,
        )
        .unwrap();
        let path = segs("/static/big/a.css");
        let (mount, rest) = site.route(&path).unwrap();
        assert_eq!(mount.segments, segs("/static/big"));
        assert_eq!(rest, &segs("a.css")[..]);
        let path = segs("/static/a.css");
        assert_eq!(site.route(&path).unwrap().0.segments, segs("/static"));
        let path = segs("/staticky");
        assert!(site.route(&path).unwrap().0.segments.is_empty());
        let only = StaticSite::new(&[("/static".into(), dir)], None).unwrap();
        assert!(only.route(&segs("/staticky/a")).is_none());
        assert!(only.route(&segs("/app")).is_none());
    }

    #[test]
    fn bad_options_are_named() {
        let dir = std::env::temp_dir();
        let err = StaticSite::new(&[("static".into(), dir.clone())], None).unwrap_err();
        assert!(
            err.contains("--static static=") && err.contains("start with '/'"),
            "{err}"
        );
        let err = StaticSite::new(&[("/a/../b".into(), dir.clone())], None).unwrap_err();
        assert!(err.contains("'..'"), "{err}");
        let missing = dir.join("tidegate-no-such-dir-for-tests");
        let err = StaticSite::new(&[("/s".into(), missing)], None).unwrap_err();
        assert!(
            err.starts_with("--static /s=") && err.contains("No such file"),
            "{err}"
        );
        let err = StaticSite::new(
            &[("/s".into(), dir.clone()), ("/s/".into(), dir.clone())],
            None,
        )
        .unwrap_err();
        assert!(err.contains("twice"), "{err}");
        let err = StaticSite::new(&[("/s".into(), dir)], Some("a\r\nX: y")).unwrap_err();
        assert!(err.starts_with("--static-cache-control"), "{err}");
    }
}
