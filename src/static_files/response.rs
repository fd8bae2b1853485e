//! Answering a request for a static file: the response as a description (status, header
//! fields, what body to send), independent of the connection that will carry it.

use std::fs::File;
use std::path::Path;
use std::time::SystemTime;

use bytes::Bytes;

use crate::http::fields::HeaderFields;
use crate::static_files::conditional::{
    etag, if_range_holds, none_match_fails, not_modified_since, to_http_seconds,
};
use crate::static_files::config::StaticSite;
use crate::static_files::encoding::{choose, Coding};
use crate::static_files::path::{open, resolve, split_path};
use crate::static_files::range::{parse_range, RangeRequest};

/// What to send after the head.
#[derive(Debug)]
pub enum StaticBody {
    /// Nothing (HEAD, 304, 416; the head may still announce a length).
    Empty,
    /// A short text (the 404, 403 and 405 pages).
    Text(Bytes),
    /// `len` bytes of `file` from `offset`, for sendfile(2).
    File {
        /// The open file.
        file: File,
        /// Where the bytes start.
        offset: u64,
        /// How many bytes.
        len: u64,
    },
}

/// A response to a static file request.
#[derive(Debug)]
pub struct StaticResponse {
    /// The status code.
    pub status: u16,
    /// Its reason phrase.
    pub reason: &'static str,
    /// Header fields, without Content-Length, Date, Server or Connection (the engine adds
    /// those).
    pub headers: Vec<(Bytes, Bytes)>,
    /// The Content-Length to announce (for a HEAD, the GET body's length); `None` for 304.
    pub content_length: Option<u64>,
    /// The body to send.
    pub body: StaticBody,
}

impl StaticResponse {
    fn text(status: u16, reason: &'static str, is_head: bool) -> Self {
        StaticResponse {
            status,
            reason,
            headers: vec![header("Content-Type", "text/plain; charset=utf-8")],
            content_length: Some(reason.len() as u64),
            body: if is_head {
                StaticBody::Empty
            } else {
                StaticBody::Text(Bytes::from_static(reason.as_bytes()))
            },
        }
    }
}

fn header(name: &'static str, value: impl Into<Bytes>) -> (Bytes, Bytes) {
    (Bytes::from_static(name.as_bytes()), value.into())
}

/// The value of a header field; repeated fields are joined with `, ` (list fields).
fn field(headers: &HeaderFields, name: &[u8]) -> Option<Bytes> {
    let mut values = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v);
    let first = headers.share(values.next()?);
    let mut joined: Option<Vec<u8>> = None;
    for value in values {
        let joined = joined.get_or_insert_with(|| first.to_vec());
        joined.extend_from_slice(b", ");
        joined.extend_from_slice(value);
    }
    Some(joined.map_or(first, Bytes::from))
}

/// The Content-Type for a file name, with `charset=utf-8` for text.
pub fn content_type(path: &Path) -> String {
    let guess = mime_guess::from_path(path)
        .first_raw()
        .unwrap_or("application/octet-stream");
    if guess.starts_with("text/") || guess == "application/javascript" {
        format!("{guess}; charset=utf-8")
    } else {
        guess.to_string()
    }
}

impl StaticSite {
    /// [`StaticSite::respond`] for an app mounted at `root` (`--root-path`, normalised):
    /// a path under the root is first looked up without it, since a proxy that keeps the
    /// prefix sends `/app/static/app.css` for the `/static` mount (the URL the app builds
    /// with `SCRIPT_NAME`), as one that strips it sends `/static/app.css`. Otherwise, or
    /// when that finds no mount, the whole path is looked up.
    pub fn respond_mounted(
        &self,
        root: &str,
        method: &[u8],
        target: &[u8],
        headers: &HeaderFields,
    ) -> Option<StaticResponse> {
        let inner = crate::proxy::root_path::split(root, target);
        if inner.len() != target.len() {
            if let Some(answer) = self.respond(method, inner, headers) {
                return Some(answer);
            }
        }
        self.respond(method, target, headers)
    }

    /// Answers a request if its path lies under a `--static` prefix; `None` otherwise (the
    /// app answers it). Only GET and HEAD are served (405 with `Allow` for the others);
    /// unsafe paths, missing files, directories and symlinks leading out are 404.
    pub fn respond(
        &self,
        method: &[u8],
        target: &[u8],
        headers: &HeaderFields,
    ) -> Option<StaticResponse> {
        let path = split_path(target);
        let (mount, rest) = self.route(&path.segments)?;
        let is_head = method == b"HEAD";
        if method != b"GET" && !is_head {
            let mut answer = StaticResponse::text(405, "Method Not Allowed", false);
            answer.headers.push(header("Allow", "GET, HEAD"));
            return Some(answer);
        }
        let not_found = || Some(StaticResponse::text(404, "Not Found", is_head));
        if path.trailing_slash {
            return not_found();
        }
        let Some(identity) = resolve(mount.root(), rest, "") else {
            return not_found();
        };
        let br = resolve(mount.root(), rest, Coding::Brotli.suffix());
        let gz = resolve(mount.root(), rest, Coding::Gzip.suffix());
        let accept = field(headers, b"accept-encoding");
        let coding = choose(accept.as_deref(), br.is_some(), gz.is_some());
        let chosen = match coding {
            Some(Coding::Brotli) => br.as_deref(),
            Some(Coding::Gzip) => gz.as_deref(),
            None => None,
        }
        .unwrap_or(&identity);
        let (file, metadata) = match open(chosen) {
            Ok(opened) => opened,
            Err(error) if error.kind() == std::io::ErrorKind::PermissionDenied => {
                return Some(StaticResponse::text(403, "Forbidden", is_head));
            }
            Err(_) => return not_found(),
        };
        let size = metadata.len();
        let modified = metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        let tag = etag(size, modified, coding.map(Coding::name));

        // Sent on 200, 206 and 304 alike (RFC 9110 section 15.4.5 for the 304).
        let mut validators = vec![
            header("ETag", tag.clone()),
            header(
                "Last-Modified",
                httpdate::fmt_http_date(to_http_seconds(modified)),
            ),
        ];
        if let Some(cache_control) = self.cache_control() {
            validators.push(header("Cache-Control", cache_control.clone()));
        }
        if br.is_some() || gz.is_some() {
            validators.push(header("Vary", "Accept-Encoding"));
        }

        // If-None-Match decides when present; If-Modified-Since only when it is absent.
        let not_modified = match field(headers, b"if-none-match") {
            Some(list) => none_match_fails(&list, &tag),
            None => field(headers, b"if-modified-since")
                .is_some_and(|since| not_modified_since(&since, modified)),
        };
        if not_modified {
            return Some(StaticResponse {
                status: 304,
                reason: "Not Modified",
                headers: validators,
                content_length: None,
                body: StaticBody::Empty,
            });
        }

        let mut headers_out = vec![header("Content-Type", content_type(&identity))];
        if let Some(coding) = coding {
            headers_out.push(header("Content-Encoding", coding.name()));
        }
        headers_out.extend(validators);
        headers_out.push(header("Accept-Ranges", "bytes"));

        // Range is defined for GET only; If-Range makes it conditional on the validator.
        let range = match field(headers, b"range") {
            Some(range) if !is_head => {
                let applies = field(headers, b"if-range")
                    .is_none_or(|if_range| if_range_holds(&if_range, &tag, modified));
                if applies {
                    parse_range(&range, size)
                } else {
                    RangeRequest::Whole
                }
            }
            _ => RangeRequest::Whole,
        };
        let body = |offset: u64, len: u64| {
            if is_head {
                StaticBody::Empty
            } else {
                StaticBody::File { file, offset, len }
            }
        };
        Some(match range {
            RangeRequest::Whole => StaticResponse {
                status: 200,
                reason: "OK",
                headers: headers_out,
                content_length: Some(size),
                body: body(0, size),
            },
            RangeRequest::Partial { start, end } => {
                let len = end - start + 1;
                headers_out.push(header(
                    "Content-Range",
                    format!("bytes {start}-{end}/{size}"),
                ));
                StaticResponse {
                    status: 206,
                    reason: "Partial Content",
                    headers: headers_out,
                    content_length: Some(len),
                    body: body(start, len),
                }
            }
            RangeRequest::Unsatisfiable => StaticResponse {
                status: 416,
                reason: "Range Not Satisfiable",
                headers: vec![
                    header("Content-Range", format!("bytes */{size}")),
                    header("Content-Type", "text/plain; charset=utf-8"),
                ],
                content_length: Some(0),
                body: StaticBody::Empty,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    struct Fixture {
        base: PathBuf,
        site: StaticSite,
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.base);
        }
    }

    fn fixture(name: &str) -> Fixture {
        let base =
            std::env::temp_dir().join(format!("tidegate-static-{name}-{}", std::process::id()));
        let root = base.join("root");
        std::fs::create_dir_all(root.join("dir")).unwrap();
        std::fs::write(root.join("a.css"), b"body{}\n").unwrap();
        std::fs::write(root.join("a.css.gz"), b"GZ").unwrap();
        std::fs::write(root.join("a.css.br"), b"BRO").unwrap();
        std::fs::write(root.join("plain.txt"), b"0123456789").unwrap();
        let site = StaticSite::new(&[("/s".into(), root)], Some("public, max-age=60")).unwrap();
        Fixture { base, site }
    }

    fn h(list: &[(&'static str, &'static str)]) -> HeaderFields {
        HeaderFields::from_pairs(list)
    }

    fn get(
        site: &StaticSite,
        target: &str,
        headers: &[(&'static str, &'static str)],
    ) -> StaticResponse {
        site.respond(b"GET", target.as_bytes(), &h(headers))
            .unwrap()
    }

    fn value<'a>(response: &'a StaticResponse, name: &str) -> Option<&'a [u8]> {
        response
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v.as_ref())
    }

    #[test]
    fn paths_outside_the_prefixes_go_to_the_app() {
        let f = fixture("route");
        assert!(f
            .site
            .respond(b"GET", b"/app", &HeaderFields::default())
            .is_none());
        assert!(f
            .site
            .respond(b"POST", b"/sx/a.css", &HeaderFields::default())
            .is_none());
    }

    #[test]
    fn under_a_root_path_both_proxy_styles_reach_the_files() {
        let f = fixture("mounted");
        let status = |target: &str| {
            f.site
                .respond_mounted("/app", b"GET", target.as_bytes(), &HeaderFields::default())
                .map(|r| r.status)
        };
        assert_eq!(status("/app/s/plain.txt"), Some(200)); // the prefix kept
        assert_eq!(status("/s/plain.txt"), Some(200)); // the prefix stripped
        assert_eq!(status("/app/s/missing.txt"), Some(404));
        assert_eq!(status("/app"), None);
        assert_eq!(status("/application/s/plain.txt"), None); // not on a segment boundary
        assert_eq!(status("/app/x"), None);
        // Without a root path, nothing changes.
        let plain =
            f.site
                .respond_mounted("", b"GET", b"/app/s/plain.txt", &HeaderFields::default());
        assert!(plain.is_none());
    }

    #[test]
    fn files_with_their_headers() {
        let f = fixture("files");
        let r = get(&f.site, "/s/plain.txt", &[]);
        assert_eq!(r.status, 200);
        assert_eq!(r.content_length, Some(10));
        assert_eq!(
            value(&r, "content-type"),
            Some(&b"text/plain; charset=utf-8"[..])
        );
        assert_eq!(value(&r, "cache-control"), Some(&b"public, max-age=60"[..]));
        assert_eq!(value(&r, "vary"), None);
        assert!(matches!(
            r.body,
            StaticBody::File {
                offset: 0,
                len: 10,
                ..
            }
        ));
        let head = f
            .site
            .respond(b"HEAD", b"/s/plain.txt", &HeaderFields::default())
            .unwrap();
        assert_eq!((head.status, head.content_length), (200, Some(10)));
        assert!(matches!(head.body, StaticBody::Empty));
        let r = f
            .site
            .respond(b"POST", b"/s/plain.txt", &HeaderFields::default())
            .unwrap();
        assert_eq!(
            (r.status, value(&r, "allow")),
            (405, Some(&b"GET, HEAD"[..]))
        );
        for missing in [
            "/s/nope",
            "/s/dir",
            "/s/dir/",
            "/s",
            "/s/",
            "/s/plain.txt/",
            "/s/%2e%2e/root/a.css",
        ] {
            assert_eq!(get(&f.site, missing, &[]).status, 404, "{missing}");
        }
    }

    #[test]
    fn precompressed_siblings() {
        let f = fixture("coding");
        let r = get(&f.site, "/s/a.css", &[("Accept-Encoding", "gzip, br")]);
        assert_eq!(value(&r, "content-encoding"), Some(&b"br"[..]));
        assert_eq!(
            value(&r, "content-type"),
            Some(&b"text/css; charset=utf-8"[..])
        );
        assert_eq!(value(&r, "vary"), Some(&b"Accept-Encoding"[..]));
        assert_eq!(r.content_length, Some(3));
        let r = get(&f.site, "/s/a.css", &[("Accept-Encoding", "br;q=0, gzip")]);
        assert_eq!(value(&r, "content-encoding"), Some(&b"gzip"[..]));
        assert_eq!(r.content_length, Some(2));
        let r = get(&f.site, "/s/a.css", &[]);
        assert_eq!(value(&r, "content-encoding"), None);
        assert_eq!(value(&r, "vary"), Some(&b"Accept-Encoding"[..]));
        assert_eq!(r.content_length, Some(7));
    }

    #[test]
    fn conditional_requests() {
        let f = fixture("cond");
        let r = get(&f.site, "/s/plain.txt", &[]);
        let tag: &'static str = String::from_utf8(value(&r, "etag").unwrap().to_vec())
            .unwrap()
            .leak();
        let date: &'static str = String::from_utf8(value(&r, "last-modified").unwrap().to_vec())
            .unwrap()
            .leak();
        let r = get(&f.site, "/s/plain.txt", &[("If-None-Match", tag)]);
        assert_eq!((r.status, r.content_length), (304, None));
        assert_eq!(value(&r, "etag"), Some(tag.as_bytes()));
        assert_eq!(
            get(&f.site, "/s/plain.txt", &[("If-Modified-Since", date)]).status,
            304
        );
        // If-None-Match takes precedence over If-Modified-Since.
        let r = get(
            &f.site,
            "/s/plain.txt",
            &[("If-None-Match", "\"x\""), ("If-Modified-Since", date)],
        );
        assert_eq!(r.status, 200);
    }

    #[test]
    fn ranges() {
        let f = fixture("range");
        let r = get(&f.site, "/s/plain.txt", &[("Range", "bytes=2-4")]);
        assert_eq!((r.status, r.content_length), (206, Some(3)));
        assert_eq!(value(&r, "content-range"), Some(&b"bytes 2-4/10"[..]));
        assert!(matches!(
            r.body,
            StaticBody::File {
                offset: 2,
                len: 3,
                ..
            }
        ));
        let r = get(&f.site, "/s/plain.txt", &[("Range", "bytes=10-")]);
        assert_eq!(r.status, 416);
        assert_eq!(value(&r, "content-range"), Some(&b"bytes */10"[..]));
        let r = get(&f.site, "/s/plain.txt", &[("Range", "bytes=0-1,4-5")]);
        assert_eq!((r.status, r.content_length), (200, Some(10)));
        let r = get(
            &f.site,
            "/s/plain.txt",
            &[("Range", "bytes=0-1"), ("If-Range", "\"stale\"")],
        );
        assert_eq!(r.status, 200);
        let r = f
            .site
            .respond(b"HEAD", b"/s/plain.txt", &h(&[("Range", "bytes=0-1")]))
            .unwrap();
        assert_eq!(r.status, 200);
    }
}
