//! `--root-path`: the path prefix an app is mounted under (`SCRIPT_NAME`).

/// Normalises a root path: it must start with `/`; repeated slashes collapse and a trailing
/// slash is dropped, so `/app/` and `//app` mean `/app` and `/` means no prefix (`""`).
/// Errors say what is wrong: a relative path, `.` or `..` segments, a query or fragment,
/// percent escapes, or bytes that are not printable ASCII.
pub fn normalise(path: &str) -> Result<String, String> {
    if path.is_empty() {
        return Ok(String::new());
    }
    if !path.starts_with('/') {
        return Err(format!("{path:?} must start with '/' (e.g. /app)"));
    }
    if let Some(bad) = path.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!(
            "{path:?} contains {bad:?}; only printable ASCII without spaces is allowed"
        ));
    }
    if let Some(bad) = path.chars().find(|c| matches!(c, '?' | '#' | '%')) {
        return Err(format!(
            "{path:?} contains {bad:?}; give the decoded path, without query or fragment"
        ));
    }
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if segments.iter().any(|s| *s == "." || *s == "..") {
        return Err(format!("{path:?} must not contain '.' or '..' segments"));
    }
    Ok(segments.iter().map(|s| format!("/{s}")).collect())
}

/// Splits a request path into `SCRIPT_NAME` and `PATH_INFO` for an app mounted at `root`
/// (normalised, possibly empty): the path loses the prefix when it starts with it on a
/// segment boundary (`/app` and `/app/x` do, `/application` does not); any other path is
/// passed whole as `PATH_INFO`.
pub fn split<'a>(root: &str, path: &'a [u8]) -> &'a [u8] {
    match path.strip_prefix(root.as_bytes()) {
        Some(rest) if !root.is_empty() && (rest.is_empty() || rest.starts_with(b"/")) => rest,
        _ => path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_paths_are_normalised() {
        assert_eq!(normalise("").unwrap(), "");
        assert_eq!(normalise("/").unwrap(), "");
        assert_eq!(normalise("/app").unwrap(), "/app");
        assert_eq!(normalise("/app/").unwrap(), "/app");
        assert_eq!(normalise("//app//v1/").unwrap(), "/app/v1");
    }

    #[test]
    fn bad_root_paths_are_explained() {
        for (path, expected) in [
            ("app", "must start with '/'"),
            ("/a b", "printable ASCII"),
            ("/caf\u{e9}", "printable ASCII"),
            ("/app?x", "without query"),
            ("/a%20b", "decoded path"),
            ("/app/../x", "'..' segments"),
            ("/./x", "'.' or"),
        ] {
            let error = normalise(path).unwrap_err();
            assert!(error.contains(expected), "{path}: {error}");
        }
    }

    #[test]
    fn paths_lose_the_prefix_on_a_segment_boundary() {
        assert_eq!(split("/app", b"/app"), b"");
        assert_eq!(split("/app", b"/app/"), b"/");
        assert_eq!(split("/app", b"/app/x/y"), b"/x/y");
        assert_eq!(split("/app", b"/application"), b"/application");
        assert_eq!(split("/app", b"/other"), b"/other");
        assert_eq!(split("/app", b""), b"");
        assert_eq!(split("", b"/x"), b"/x");
    }
}
