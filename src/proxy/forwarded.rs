//! The forwarding headers a trusted proxy sends: RFC 7239 `Forwarded` and the de facto
//! `X-Forwarded-For`, `X-Forwarded-Proto`, `X-Forwarded-Host` and `X-Forwarded-Port`.
//!
//! The rules, in the order they apply:
//!
//! - Precedence: when the request carries any `X-Forwarded-*` header, those are used and
//!   `Forwarded` is ignored; `Forwarded` is used only when no `X-Forwarded-*` header is
//!   present. nginx, HAProxy (`option forwardfor`), Apache, Traefik and Caddy set
//!   `X-Forwarded-*` and pass a client's own `Forwarded` header through untouched, so
//!   preferring `Forwarded` would let any client behind them choose its address.
//! - The client in a list of addresses (`X-Forwarded-For`, or the `for=` of the
//!   `Forwarded` elements) is found from the right: each proxy appends the address it
//!   received the request from, so the rightmost entries were written by our own proxies.
//!   Entries that are trusted addresses (`--forwarded-allow-ips`) are skipped; the first
//!   one that is not is the client. If every entry is trusted, the leftmost is. If the
//!   entry reached is not an IP address (`unknown`, an obfuscated `_id`, garbage), the
//!   client is unknown and `REMOTE_ADDR` keeps the direct peer.
//! - `X-Forwarded-Proto`, `-Host` and `-Port` holding a list use its rightmost element, the
//!   one our own proxy wrote. A `Forwarded` element gives `proto=` and `host=` from the
//!   same element as the client's `for=`: the one the client-facing proxy wrote.
//! - Invalid values (a scheme other than `http`/`https`, a malformed host or port, an
//!   unparsable `Forwarded` header) are ignored: what the connection itself says is kept.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv6Addr};

use crate::proxy::AllowList;

/// The forwarding headers of one request, as merged header values (a field sent twice is
/// joined with `,`, which is also how these lists are written).
#[derive(Debug, Default, Clone, Copy)]
pub struct ForwardingHeaders<'a> {
    /// `Forwarded` (RFC 7239).
    pub forwarded: Option<&'a [u8]>,
    /// `X-Forwarded-For`.
    pub x_for: Option<&'a [u8]>,
    /// `X-Forwarded-Proto`.
    pub x_proto: Option<&'a [u8]>,
    /// `X-Forwarded-Host`.
    pub x_host: Option<&'a [u8]>,
    /// `X-Forwarded-Port`.
    pub x_port: Option<&'a [u8]>,
}

impl<'a> ForwardingHeaders<'a> {
    /// Whether an environ key names one of the forwarding headers.
    pub fn is_forwarding_key(key: &str) -> bool {
        matches!(
            key,
            "HTTP_FORWARDED"
                | "HTTP_X_FORWARDED_FOR"
                | "HTTP_X_FORWARDED_PROTO"
                | "HTTP_X_FORWARDED_HOST"
                | "HTTP_X_FORWARDED_PORT"
        )
    }

    /// Records `value` if `key` is a forwarding header's environ key.
    pub fn record(&mut self, key: &str, value: &'a [u8]) {
        let slot = match key {
            "HTTP_FORWARDED" => &mut self.forwarded,
            "HTTP_X_FORWARDED_FOR" => &mut self.x_for,
            "HTTP_X_FORWARDED_PROTO" => &mut self.x_proto,
            "HTTP_X_FORWARDED_HOST" => &mut self.x_host,
            "HTTP_X_FORWARDED_PORT" => &mut self.x_port,
            _ => return,
        };
        *slot = Some(value);
    }

    fn any_x_forwarded(&self) -> bool {
        self.x_for.is_some()
            || self.x_proto.is_some()
            || self.x_host.is_some()
            || self.x_port.is_some()
    }

    /// Whether the request carried none of the forwarding headers.
    pub fn is_empty(&self) -> bool {
        self.forwarded.is_none() && !self.any_x_forwarded()
    }
}

/// A client address a proxy reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddress {
    /// `REMOTE_ADDR`.
    pub ip: IpAddr,
    /// `REMOTE_PORT`, when the proxy gave one.
    pub port: Option<u16>,
}

/// What the trusted proxies say about the request, each part only when given and valid.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Forwarding {
    /// The client's address.
    pub client: Option<ClientAddress>,
    /// The scheme the client used (`http` or `https`).
    pub scheme: Option<&'static str>,
    /// The `Host` the client sent (`name`, `name:port`, `[v6]:port`).
    pub host: Option<String>,
    /// The port the client connected to.
    pub port: Option<u16>,
}

/// Reads the forwarding headers of a request from a trusted peer (see the module
/// documentation for the rules).
pub fn resolve(headers: &ForwardingHeaders<'_>, allow: &AllowList) -> Forwarding {
    if headers.is_empty() {
        return Forwarding::default();
    }
    if headers.any_x_forwarded() {
        return Forwarding {
            client: headers
                .x_for
                .and_then(|list| client_from_right(&split_list(list), allow)),
            scheme: headers.x_proto.and_then(last_element).and_then(scheme),
            host: headers
                .x_host
                .and_then(last_element)
                .filter(|h| split_host(h).is_some())
                .map(str::to_string),
            port: headers.x_port.and_then(last_element).and_then(port),
        };
    }
    let Some(elements) = headers.forwarded.and_then(parse_forwarded) else {
        return Forwarding::default();
    };
    let Some(chosen) = pick_from_right(elements.iter().map(|e| e.node()), allow) else {
        return Forwarding::default();
    };
    let element = &elements[chosen];
    Forwarding {
        client: element.node().ip(),
        scheme: element.proto.as_deref().and_then(scheme),
        host: element
            .host
            .as_deref()
            .filter(|h| split_host(h).is_some())
            .map(str::to_string),
        port: None,
    }
}

/// A node of a forwarding list: an IP (with a port when given) or something that names no
/// address (`unknown`, an obfuscated identifier, an invalid value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    Ip(ClientAddress),
    Opaque,
}

impl Node {
    fn ip(self) -> Option<ClientAddress> {
        match self {
            Node::Ip(address) => Some(address),
            Node::Opaque => None,
        }
    }
}

/// Parses `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]`, `[2001:db8::1]:80`;
/// an obfuscated port (`_abc`) counts as no port.
fn parse_node(text: &str) -> Node {
    let text = text.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Node::Ip(ClientAddress {
            ip: ip.to_canonical(),
            port: None,
        });
    }
    let (host, port_text) = if let Some(rest) = text.strip_prefix('[') {
        match rest.split_once(']') {
            Some((v6, "")) => (v6, None),
            Some((v6, tail)) => match tail.strip_prefix(':') {
                Some(port) => (v6, Some(port)),
                None => return Node::Opaque,
            },
            None => return Node::Opaque,
        }
    } else {
        match text.rsplit_once(':') {
            // A bare IPv6 address was handled above; here only IPv4:port remains.
            Some((v4, port)) if !v4.contains(':') => (v4, Some(port)),
            _ => return Node::Opaque,
        }
    };
    let ip = if text.starts_with('[') {
        host.parse::<Ipv6Addr>().map(IpAddr::V6).ok()
    } else {
        host.parse::<std::net::Ipv4Addr>().map(IpAddr::V4).ok()
    };
    let Some(ip) = ip else {
        return Node::Opaque;
    };
    let port = match port_text {
        None => None,
        Some(p) if p.starts_with('_') && is_obfuscated(p) => None,
        Some(p) => match port(p) {
            Some(port) => Some(port),
            None => return Node::Opaque,
        },
    };
    Node::Ip(ClientAddress {
        ip: ip.to_canonical(),
        port,
    })
}

/// RFC 7239 obfuscated identifier: `_` and then letters, digits, `.`, `_`, `-`.
fn is_obfuscated(text: &str) -> bool {
    text.len() > 1
        && text[1..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The index of the client's entry: walking from the right, the first node that is not a
/// trusted IP; the leftmost if all are trusted; `None` for an empty list.
fn pick_from_right(
    nodes: impl DoubleEndedIterator<Item = Node>,
    allow: &AllowList,
) -> Option<usize> {
    let nodes: Vec<Node> = nodes.collect();
    let mut chosen = None;
    for (index, node) in nodes.iter().enumerate().rev() {
        chosen = Some(index);
        match node {
            Node::Ip(address) if allow.allows_ip(address.ip) => continue,
            _ => break,
        }
    }
    chosen
}

fn client_from_right(entries: &[&str], allow: &AllowList) -> Option<ClientAddress> {
    let chosen = pick_from_right(entries.iter().map(|e| parse_node(e)), allow)?;
    parse_node(entries[chosen]).ip()
}

/// The comma-separated elements of a list header, trimmed, empty ones dropped; `None`
/// entries for a value that is not ASCII.
fn split_list(value: &[u8]) -> Vec<&str> {
    match std::str::from_utf8(value) {
        Ok(text) if text.is_ascii() => text
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .collect(),
        // Not ASCII: one entry that no address parses from.
        _ => vec!["?"],
    }
}

fn last_element(value: &[u8]) -> Option<&str> {
    split_list(value).last().copied()
}

fn scheme(text: &str) -> Option<&'static str> {
    if text.eq_ignore_ascii_case("https") {
        Some("https")
    } else if text.eq_ignore_ascii_case("http") {
        Some("http")
    } else {
        None
    }
}

fn port(text: &str) -> Option<u16> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u16>().ok().filter(|&p| p > 0)
}

/// Splits a `Host` value into the name (IPv6 without brackets) and the port, or `None`
/// when it is not a valid host: a DNS name or IPv4 address (letters, digits, `.`, `-`,
/// `_`), or a bracketed IPv6 address, then optionally `:port`.
pub fn split_host(host: &str) -> Option<(&str, Option<u16>)> {
    if host.is_empty() || host.len() > 255 {
        return None;
    }
    let (name, port_text) = if let Some(rest) = host.strip_prefix('[') {
        let (v6, tail) = rest.split_once(']')?;
        v6.parse::<Ipv6Addr>().ok()?;
        match tail {
            "" => (v6, None),
            _ => (v6, Some(tail.strip_prefix(':')?)),
        }
    } else {
        let (name, port_text) = match host.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        };
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
        if !valid {
            return None;
        }
        (name, port_text)
    };
    match port_text {
        None => Some((name, None)),
        Some(p) => Some((name, Some(port(p)?))),
    }
}

/// One element of a `Forwarded` header: its `for`, `proto` and `host` parameters
/// (`by` and extensions are read past).
#[derive(Debug, Default, PartialEq, Eq)]
struct Element<'a> {
    for_node: Option<Cow<'a, str>>,
    proto: Option<Cow<'a, str>>,
    host: Option<Cow<'a, str>>,
}

impl Element<'_> {
    fn node(&self) -> Node {
        self.for_node.as_deref().map_or(Node::Opaque, parse_node)
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Parses a `Forwarded` value (RFC 7239 section 4): elements separated by `,`, each of
/// `name=value` pairs separated by `;`, values tokens or quoted strings. `None` when the
/// value does not follow that grammar or repeats a parameter in one element.
fn parse_forwarded(value: &[u8]) -> Option<Vec<Element<'_>>> {
    let text = std::str::from_utf8(value).ok().filter(|t| t.is_ascii())?;
    let bytes = text.as_bytes();
    let mut elements = vec![Element::default()];
    let mut i = 0;
    let skip_ows = |i: &mut usize| {
        while *i < bytes.len() && matches!(bytes[*i], b' ' | b'\t') {
            *i += 1;
        }
    };
    loop {
        skip_ows(&mut i);
        if i == bytes.len() {
            break;
        }
        match bytes[i] {
            b',' => {
                elements.push(Element::default());
                i += 1;
                continue;
            }
            b';' => {
                i += 1;
                continue;
            }
            _ => {}
        }
        let start = i;
        while i < bytes.len() && is_tchar(bytes[i]) {
            i += 1;
        }
        let name = &text[start..i];
        if name.is_empty() || bytes.get(i) != Some(&b'=') {
            return None;
        }
        i += 1;
        let value: Cow<'_, str> = if bytes.get(i) == Some(&b'"') {
            i += 1;
            let mut unescaped = String::new();
            loop {
                match bytes.get(i)? {
                    b'"' => {
                        i += 1;
                        break;
                    }
                    b'\\' => {
                        unescaped.push(char::from(*bytes.get(i + 1)?));
                        i += 2;
                    }
                    &b => {
                        unescaped.push(char::from(b));
                        i += 1;
                    }
                }
            }
            Cow::Owned(unescaped)
        } else {
            let start = i;
            while i < bytes.len() && is_tchar(bytes[i]) {
                i += 1;
            }
            if start == i {
                return None;
            }
            Cow::Borrowed(&text[start..i])
        };
        skip_ows(&mut i);
        if i < bytes.len() && !matches!(bytes[i], b',' | b';') {
            return None;
        }
        let element = elements.last_mut()?;
        let slot = if name.eq_ignore_ascii_case("for") {
            &mut element.for_node
        } else if name.eq_ignore_ascii_case("proto") {
            &mut element.proto
        } else if name.eq_ignore_ascii_case("host") {
            &mut element.host
        } else {
            continue;
        };
        if slot.replace(value).is_some() {
            return None;
        }
    }
    // Empty list elements (`a, ,b`) are allowed by the list syntax and carry nothing.
    elements.retain(|e| *e != Element::default());
    Some(elements)
}

/// How the request looks to the app once the forwarded scheme, host and port apply.
#[derive(Debug, PartialEq, Eq)]
pub struct ServerView {
    /// `wsgi.url_scheme`.
    pub scheme: &'static str,
    /// A new `HTTP_HOST`, when it changes.
    pub http_host: Option<String>,
    /// A new `SERVER_NAME`, when a host is known.
    pub server_name: Option<String>,
    /// `SERVER_PORT`.
    pub server_port: u16,
}

/// Applies a forwarded scheme, host and port to what the connection says (`scheme`, and
/// the request's own `Host` header). `None` when the proxies forwarded none of the three.
///
/// `SERVER_PORT` is the forwarded port, else the port in the (forwarded or request) host,
/// else the scheme's default. A forwarded port also replaces the port in `HTTP_HOST`
/// (dropped when it is the scheme's default), so URLs built from `HTTP_HOST` carry it.
pub fn server_view(
    forwarding: &Forwarding,
    scheme: &'static str,
    request_host: Option<&str>,
) -> Option<ServerView> {
    if forwarding.scheme.is_none() && forwarding.host.is_none() && forwarding.port.is_none() {
        return None;
    }
    let scheme = forwarding.scheme.unwrap_or(scheme);
    let default_port = if scheme == "https" { 443 } else { 80 };
    let host = forwarding.host.as_deref().or(request_host);
    let split = host.and_then(split_host);
    let server_port = forwarding
        .port
        .or(split.and_then(|(_, port)| port))
        .unwrap_or(default_port);
    let mut http_host = forwarding.host.clone();
    if let (Some(port), Some((name, _))) = (forwarding.port, split) {
        let name = if name.contains(':') {
            format!("[{name}]")
        } else {
            name.to_string()
        };
        http_host = Some(if port == default_port {
            name
        } else {
            format!("{name}:{port}")
        });
    }
    Some(ServerView {
        scheme,
        http_host,
        server_name: split.map(|(name, _)| name.to_string()),
        server_port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow() -> AllowList {
        AllowList::parse("127.0.0.1,::1,10.0.0.0/8").unwrap()
    }

    fn client(ip: &str, port: Option<u16>) -> Option<ClientAddress> {
        Some(ClientAddress {
            ip: ip.parse().unwrap(),
            port,
        })
    }

    fn x(x_for: &str) -> Forwarding {
        resolve(
            &ForwardingHeaders {
                x_for: Some(x_for.as_bytes()),
                ..Default::default()
            },
            &allow(),
        )
    }

    fn fwd(value: &str) -> Forwarding {
        resolve(
            &ForwardingHeaders {
                forwarded: Some(value.as_bytes()),
                ..Default::default()
            },
            &allow(),
        )
    }

    #[test]
    fn x_forwarded_for_is_walked_from_the_right() {
        assert_eq!(x("203.0.113.7").client, client("203.0.113.7", None));
        // A client-supplied entry on the left cannot win over what our proxies appended.
        assert_eq!(
            x("6.6.6.6, 203.0.113.7").client,
            client("203.0.113.7", None)
        );
        assert_eq!(
            x("6.6.6.6, 203.0.113.7, 10.1.1.1, 127.0.0.1").client,
            client("203.0.113.7", None)
        );
        // Every entry trusted: the leftmost.
        assert_eq!(x("10.0.0.5,10.0.0.6").client, client("10.0.0.5", None));
        assert_eq!(x("2001:db8::1").client, client("2001:db8::1", None));
        assert_eq!(
            x("[2001:db8::1]:4711").client,
            client("2001:db8::1", Some(4711))
        );
        assert_eq!(
            x("203.0.113.7:1234").client,
            client("203.0.113.7", Some(1234))
        );
        assert_eq!(x("::ffff:203.0.113.7").client, client("203.0.113.7", None));
    }

    #[test]
    fn invalid_x_forwarded_for_keeps_the_peer() {
        for value in [
            "garbage",
            "unknown",
            "6.6.6.6, nonsense",
            "",
            "1.2.3.4:99999",
            "300.1.1.1",
            "caf\u{e9}",
        ] {
            assert_eq!(x(value).client, None, "{value}");
        }
    }

    #[test]
    fn x_forwarded_proto_host_port() {
        let headers = ForwardingHeaders {
            x_proto: Some(b"http, HTTPS"),
            x_host: Some(b"evil.example, app.example.com:8443"),
            x_port: Some(b"8443"),
            ..Default::default()
        };
        let got = resolve(&headers, &allow());
        assert_eq!(got.scheme, Some("https"));
        assert_eq!(got.host.as_deref(), Some("app.example.com:8443"));
        assert_eq!(got.port, Some(8443));
        assert_eq!(got.client, None);
        let bad = ForwardingHeaders {
            x_proto: Some(b"gopher"),
            x_host: Some(b"a b/c"),
            x_port: Some(b"0"),
            ..Default::default()
        };
        assert_eq!(resolve(&bad, &allow()), Forwarding::default());
    }

    #[test]
    fn forwarded_elements() {
        let got = fwd(r#"for=192.0.2.60;proto=https;host=example.com;by=203.0.113.43"#);
        assert_eq!(got.client, client("192.0.2.60", None));
        assert_eq!(got.scheme, Some("https"));
        assert_eq!(got.host.as_deref(), Some("example.com"));
        let got = fwd(r#"For="[2001:db8:cafe::17]:4711""#);
        assert_eq!(got.client, client("2001:db8:cafe::17", Some(4711)));
        let got =
            fwd(r#"for=6.6.6.6;proto=http, for=192.0.2.43;proto=https, for=10.0.0.9;proto=http"#);
        assert_eq!(got.client, client("192.0.2.43", None));
        assert_eq!(got.scheme, Some("https"));
        let got = fwd(r#"for="_hidden";proto=https"#);
        assert_eq!(got.client, None);
        assert_eq!(got.scheme, Some("https"));
        assert_eq!(fwd("for=unknown").client, None);
        assert_eq!(
            fwd(r#"for="[2001:db8::1]:_port""#).client,
            client("2001:db8::1", None)
        );
        assert_eq!(
            fwd(r#"for="10.0.0.1", for=192.0.2.1"#).client,
            client("192.0.2.1", None)
        );
        assert_eq!(fwd(r#"for=192.0.2.1;host="a\"b""#).host, None);
    }

    #[test]
    fn malformed_forwarded_is_ignored_whole() {
        for value in [
            "for",
            "for=",
            "for=1.2.3.4;for=5.6.7.8",
            r#"for="1.2.3.4"#,
            "for=1.2.3.4 proto=https",
            "=x",
            "for=1.2.3.4;proto=https\u{e9}",
        ] {
            assert_eq!(fwd(value), Forwarding::default(), "{value}");
        }
    }

    #[test]
    fn x_forwarded_headers_take_precedence_over_forwarded() {
        let headers = ForwardingHeaders {
            forwarded: Some(b"for=6.6.6.6;proto=https"),
            x_proto: Some(b"http"),
            ..Default::default()
        };
        let got = resolve(&headers, &allow());
        assert_eq!(got.client, None);
        assert_eq!(got.scheme, Some("http"));
    }

    #[test]
    fn hosts() {
        assert_eq!(split_host("example.com"), Some(("example.com", None)));
        assert_eq!(
            split_host("example.com:8080"),
            Some(("example.com", Some(8080)))
        );
        assert_eq!(split_host("[::1]:8080"), Some(("::1", Some(8080))));
        assert_eq!(split_host("[::1]"), Some(("::1", None)));
        for bad in [
            "", "a b", "a/b", "a:", "a:x", "[zz]", "[::1]x", "a:1:2", "a@b",
        ] {
            assert_eq!(split_host(bad), None, "{bad}");
        }
    }

    #[test]
    fn server_views() {
        let none = Forwarding::default();
        assert_eq!(server_view(&none, "http", Some("h")), None);
        let https = Forwarding {
            scheme: Some("https"),
            ..Default::default()
        };
        let view = server_view(&https, "http", Some("app.example")).unwrap();
        assert_eq!((view.scheme, view.server_port), ("https", 443));
        assert_eq!(view.server_name.as_deref(), Some("app.example"));
        assert_eq!(view.http_host, None);
        let host = Forwarding {
            host: Some("app.example:8443".into()),
            scheme: Some("https"),
            ..Default::default()
        };
        let view = server_view(&host, "http", Some("127.0.0.1:8000")).unwrap();
        assert_eq!(view.http_host.as_deref(), Some("app.example:8443"));
        assert_eq!(view.server_name.as_deref(), Some("app.example"));
        assert_eq!(view.server_port, 8443);
        let port = Forwarding {
            port: Some(8080),
            ..Default::default()
        };
        let view = server_view(&port, "http", Some("[::1]:9000")).unwrap();
        assert_eq!(view.http_host.as_deref(), Some("[::1]:8080"));
        assert_eq!(view.server_port, 8080);
        let port = Forwarding {
            port: Some(443),
            scheme: Some("https"),
            ..Default::default()
        };
        let view = server_view(&port, "http", Some("app.example:8000")).unwrap();
        assert_eq!(view.http_host.as_deref(), Some("app.example"));
    }
}
