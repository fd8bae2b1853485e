//! The HTTP/2 engine: the `h2` crate does the framing, HPACK and flow control; each stream
//! becomes an [`Exchange`](crate::gateway::Exchange) for the WSGI bridge, exactly as an
//! HTTP/1.1 request does.
//!
//! [`conn`] drives a connection (settings, accepting streams, GOAWAY on stop or idle),
//! [`stream`] serves one stream (request head and limits, streamed body in both directions
//! under flow control), [`sniff`] tells an h2c preface from HTTP/1.1 on cleartext.

pub mod conn;
pub mod sniff;
pub mod stream;

/// The HTTP/2 connection preface a client sends first (RFC 9113 section 3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Which HTTP versions the listeners speak (`--http`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpVersions {
    /// HTTP/1.x only; ALPN offers only `http/1.1`.
    Http1,
    /// HTTP/2 only (ALPN `h2` on TLS; prior knowledge on cleartext).
    Http2,
    /// Both: ALPN offers `h2` and `http/1.1`; cleartext connections that open with the h2
    /// preface speak HTTP/2, the others HTTP/1.1.
    Auto,
}

impl HttpVersions {
    /// Parses `1`, `2` or `auto`.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "1" | "1.1" => Ok(HttpVersions::Http1),
            "2" => Ok(HttpVersions::Http2),
            "auto" => Ok(HttpVersions::Auto),
            other => Err(format!("--http {other:?}: expected 1, 2 or auto")),
        }
    }

    /// The ALPN protocol ids to offer on TLS, most preferred first.
    pub fn alpn(self) -> &'static [&'static [u8]] {
        match self {
            HttpVersions::Http1 => &[b"http/1.1"],
            HttpVersions::Http2 => &[b"h2"],
            HttpVersions::Auto => &[b"h2", b"http/1.1"],
        }
    }
}

/// HTTP/2 settings (`--http`, `--http2-max-concurrent-streams`,
/// `--http2-initial-window-size`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Http2Settings {
    /// Which versions are spoken.
    pub versions: HttpVersions,
    /// Streams a client may have open at once on one connection.
    pub max_concurrent_streams: u32,
    /// Bytes of request body a client may send on one stream before the app reads.
    pub initial_window_size: u32,
}

impl Default for Http2Settings {
    fn default() -> Self {
        Http2Settings {
            versions: HttpVersions::Auto,
            max_concurrent_streams: 100,
            initial_window_size: 1 << 20,
        }
    }
}

impl Http2Settings {
    /// Checks the values against what RFC 9113 allows.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_concurrent_streams == 0 {
            return Err("--http2-max-concurrent-streams must be at least 1".into());
        }
        if !(65_535..=(1u32 << 31) - 1).contains(&self.initial_window_size) {
            return Err(
                "--http2-initial-window-size must be between 65535 and 2147483647 bytes".into(),
            );
        }
        Ok(())
    }

    /// The window for the whole connection: room for a few streams' windows at once.
    pub fn connection_window_size(&self) -> u32 {
        let streams = self.max_concurrent_streams.clamp(1, 4);
        self.initial_window_size
            .saturating_mul(streams)
            .min((1u32 << 31) - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_alpn() {
        assert_eq!(HttpVersions::parse("auto"), Ok(HttpVersions::Auto));
        assert_eq!(HttpVersions::parse("1"), Ok(HttpVersions::Http1));
        assert_eq!(HttpVersions::parse("2").unwrap().alpn(), &[b"h2"]);
        assert!(HttpVersions::parse("3").is_err());
        assert_eq!(HttpVersions::Auto.alpn()[0], b"h2");
    }

    #[test]
    fn settings_bounds() {
        assert!(Http2Settings::default().validate().is_ok());
        let zero = Http2Settings {
            max_concurrent_streams: 0,
            ..Default::default()
        };
        assert!(zero.validate().is_err());
        let small = Http2Settings {
            initial_window_size: 100,
            ..Default::default()
        };
        assert!(small.validate().is_err());
        assert_eq!(Http2Settings::default().connection_window_size(), 4 << 20);
    }
}
