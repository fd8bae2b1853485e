//! The PROXY protocol header (HAProxy's specification, versions 1 and 2), as pure
//! functions over the bytes at the start of a connection.
//!
//! A proxy that speaks it sends one header before the first byte of the client's data,
//! naming the client's address. [`parse`] looks at the bytes received so far and says
//! whether they hold a whole header (and its exact length, so that not one byte of the
//! request after it is consumed), need more bytes, are no PROXY header at all, or are a
//! malformed one. This file uses only `std`, so the fuzz target can include it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The 12 bytes that start a version 2 header.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// What starts a version 1 header.
pub const V1_PREFIX: &[u8] = b"PROXY ";
/// The longest version 1 header, CRLF included.
pub const V1_MAX_LEN: usize = 107;
/// The fixed part of a version 2 header (signature, version and command, family, length).
pub const V2_HEADER_LEN: usize = 16;

/// What a complete header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyHeader {
    /// The connection carries a client's data: its source and the address it reached.
    Proxied {
        /// The client's address.
        source: SocketAddr,
        /// The address the client connected to.
        destination: SocketAddr,
    },
    /// The proxy speaks for itself (v2 `LOCAL`, e.g. a health check), or gives no address
    /// this server can use (v1 `UNKNOWN`, v2 `UNSPEC`, unix or datagram addresses): the
    /// connection's own addresses stay.
    Local,
}

/// The outcome of looking at the first bytes of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// A whole header of `len` bytes; the client's data starts right after it.
    Complete {
        /// What the header says.
        header: ProxyHeader,
        /// The header's length in bytes.
        len: usize,
    },
    /// The bytes so far start a header (or might): at least `at_least` bytes in all are
    /// needed to know more.
    Incomplete {
        /// The least total number of bytes worth waiting for.
        at_least: usize,
    },
    /// The data does not start with a PROXY header.
    NotProxy,
    /// A header that breaks the specification; the text says how.
    Invalid(String),
}

/// Parses the start of a connection.
pub fn parse(buf: &[u8]) -> Parsed {
    if buf.is_empty() {
        return Parsed::Incomplete { at_least: 1 };
    }
    let v2_len = buf.len().min(V2_SIGNATURE.len());
    if buf[..v2_len] == V2_SIGNATURE[..v2_len] {
        if buf.len() < V2_HEADER_LEN {
            return Parsed::Incomplete {
                at_least: V2_HEADER_LEN,
            };
        }
        return parse_v2(buf);
    }
    let v1_len = buf.len().min(V1_PREFIX.len());
    if buf[..v1_len] == V1_PREFIX[..v1_len] {
        return parse_v1(buf);
    }
    Parsed::NotProxy
}

fn parse_v1(buf: &[u8]) -> Parsed {
    let window = &buf[..buf.len().min(V1_MAX_LEN)];
    let Some(cr) = window.iter().position(|&b| b == b'\r') else {
        if buf.len() >= V1_MAX_LEN {
            return invalid("version 1 header without CRLF within 107 bytes");
        }
        if let Some(lf) = window.iter().position(|&b| b == b'\n') {
            return invalid(format!("bare LF at byte {lf} of a version 1 header"));
        }
        // The shortest possible end is CRLF right after what we have.
        return Parsed::Incomplete {
            at_least: buf.len() + 2,
        };
    };
    if let Some(lf) = window[..cr].iter().position(|&b| b == b'\n') {
        return invalid(format!("bare LF at byte {lf} of a version 1 header"));
    }
    match buf.get(cr + 1) {
        None => return Parsed::Incomplete { at_least: cr + 2 },
        Some(b'\n') => {}
        Some(_) => return invalid("CR not followed by LF in a version 1 header"),
    }
    let len = cr + 2;
    if len > V1_MAX_LEN {
        return invalid("version 1 header longer than 107 bytes");
    }
    let Ok(line) = std::str::from_utf8(&buf[V1_PREFIX.len()..cr]) else {
        return invalid("version 1 header is not ASCII");
    };
    let fields: Vec<&str> = line.split(' ').collect();
    let header = match fields.as_slice() {
        ["UNKNOWN", ..] => Ok(ProxyHeader::Local),
        ["TCP4", source, destination, source_port, destination_port] => {
            v1_addresses::<Ipv4Addr>(source, destination, source_port, destination_port)
        }
        ["TCP6", source, destination, source_port, destination_port] => {
            v1_addresses::<Ipv6Addr>(source, destination, source_port, destination_port)
        }
        [family, ..] if *family == "TCP4" || *family == "TCP6" => Err(format!(
            "version 1 {family} header needs exactly four fields separated by single spaces"
        )),
        [family, ..] => Err(format!(
            "unknown version 1 protocol {family:?} (expected TCP4, TCP6 or UNKNOWN)"
        )),
        [] => Err("empty version 1 header".to_string()),
    };
    match header {
        Ok(header) => Parsed::Complete { header, len },
        Err(why) => Parsed::Invalid(why),
    }
}

fn v1_addresses<A>(
    source: &str,
    destination: &str,
    source_port: &str,
    destination_port: &str,
) -> Result<ProxyHeader, String>
where
    A: std::str::FromStr + Into<IpAddr>,
{
    let address = |text: &str| {
        text.parse::<A>()
            .map(Into::into)
            .map_err(|_| format!("bad address {text:?} in a version 1 header"))
    };
    let port = |text: &str| {
        // Decimal, no sign, no leading zero (the specification's rule), at most 65535.
        let valid = !text.is_empty()
            && text.len() <= 5
            && text.bytes().all(|b| b.is_ascii_digit())
            && (text == "0" || !text.starts_with('0'));
        valid
            .then(|| text.parse::<u16>().ok())
            .flatten()
            .ok_or_else(|| format!("bad port {text:?} in a version 1 header"))
    };
    Ok(ProxyHeader::Proxied {
        source: SocketAddr::new(address(source)?, port(source_port)?),
        destination: SocketAddr::new(address(destination)?, port(destination_port)?),
    })
}

fn parse_v2(buf: &[u8]) -> Parsed {
    let version = buf[12] >> 4;
    let command = buf[12] & 0x0f;
    if version != 2 {
        return invalid(format!("unsupported PROXY protocol version {version}"));
    }
    let family = buf[13] >> 4;
    let transport = buf[13] & 0x0f;
    let body_len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    let len = V2_HEADER_LEN + body_len;
    if buf.len() < len {
        return Parsed::Incomplete { at_least: len };
    }
    let body = &buf[V2_HEADER_LEN..len];
    let header = match command {
        // LOCAL: the address block, if any, is ignored.
        0x0 => ProxyHeader::Local,
        0x1 => match (family, transport) {
            // TCP over IPv4: 4 + 4 address bytes, 2 + 2 port bytes.
            (0x1, 0x1) => {
                let Some(block) = body.get(..12) else {
                    return invalid(format!("TCP4 address block of {body_len} bytes (needs 12)"));
                };
                let ip = |at: usize| {
                    IpAddr::from(<[u8; 4]>::try_from(&block[at..at + 4]).unwrap_or_default())
                };
                ProxyHeader::Proxied {
                    source: SocketAddr::new(ip(0), u16::from_be_bytes([block[8], block[9]])),
                    destination: SocketAddr::new(ip(4), u16::from_be_bytes([block[10], block[11]])),
                }
            }
            // TCP over IPv6: 16 + 16 address bytes, 2 + 2 port bytes.
            (0x2, 0x1) => {
                let Some(block) = body.get(..36) else {
                    return invalid(format!("TCP6 address block of {body_len} bytes (needs 36)"));
                };
                let ip = |at: usize| {
                    IpAddr::from(<[u8; 16]>::try_from(&block[at..at + 16]).unwrap_or_default())
                };
                ProxyHeader::Proxied {
                    source: SocketAddr::new(ip(0), u16::from_be_bytes([block[32], block[33]])),
                    destination: SocketAddr::new(
                        ip(16),
                        u16::from_be_bytes([block[34], block[35]]),
                    ),
                }
            }
            // UNSPEC, unix sockets, datagrams: nothing a TCP peer address can hold; the
            // specification says to use the connection's own addresses then.
            (0x0..=0x3, 0x0..=0x2) => ProxyHeader::Local,
            _ => {
                return invalid(format!(
                    "unknown address family/transport byte 0x{:02x}",
                    buf[13]
                ))
            }
        },
        other => return invalid(format!("unknown version 2 command 0x{other:x}")),
    };
    // Whatever follows the address block (TLVs) is skipped.
    Parsed::Complete { header, len }
}

fn invalid(why: impl Into<String>) -> Parsed {
    Parsed::Invalid(why.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.push(0x20 | command);
        out.push(family);
        out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    fn proxied(source: &str, destination: &str, len: usize) -> Parsed {
        Parsed::Complete {
            header: ProxyHeader::Proxied {
                source: source.parse().unwrap(),
                destination: destination.parse().unwrap(),
            },
            len,
        }
    }

    #[test]
    fn version_1_headers() {
        let line = b"PROXY TCP4 192.0.2.7 10.0.0.1 56324 443\r\nGET / HTTP/1.1\r\n";
        assert_eq!(parse(line), proxied("192.0.2.7:56324", "10.0.0.1:443", 41));
        let line = b"PROXY TCP6 2001:db8::1 ::1 4711 8000\r\n";
        assert_eq!(
            parse(line),
            proxied("[2001:db8::1]:4711", "[::1]:8000", line.len())
        );
        let line = b"PROXY UNKNOWN whatever\r\nGET";
        assert_eq!(
            parse(line),
            Parsed::Complete {
                header: ProxyHeader::Local,
                len: 24
            }
        );
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\n"),
            Parsed::Complete {
                header: ProxyHeader::Local,
                len: 15
            }
        );
    }

    #[test]
    fn the_longest_version_1_header_fits() {
        // The specification's worst case: UNKNOWN with the longest TCP6 addresses.
        let line = b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
        assert_eq!(line.len(), V1_MAX_LEN);
        assert!(matches!(parse(line), Parsed::Complete { len: 107, .. }));
        let line = b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
        assert!(matches!(
            parse(line),
            Parsed::Complete {
                len: 104,
                header: ProxyHeader::Proxied { .. }
            }
        ));
    }

    #[test]
    fn partial_headers_ask_for_more() {
        let line = b"PROXY TCP4 192.0.2.7 10.0.0.1 56324 443\r\n";
        for cut in 0..line.len() {
            let expected_more =
                matches!(parse(&line[..cut]), Parsed::Incomplete { at_least } if at_least > cut);
            assert!(expected_more, "{cut}: {:?}", parse(&line[..cut]));
        }
        let header = v2(
            1,
            0x11,
            &[192, 0, 2, 7, 10, 0, 0, 1, 0x1f, 0x90, 0x01, 0xbb],
        );
        for cut in 0..header.len() {
            assert!(
                matches!(parse(&header[..cut]), Parsed::Incomplete { at_least } if at_least > cut && at_least <= header.len())
            );
        }
    }

    #[test]
    fn malformed_version_1_headers() {
        for bad in [
            &b"PROXY TCP4 192.0.2.7 10.0.0.1 56324\r\n"[..],
            b"PROXY TCP4 192.0.2.7  10.0.0.1 1 2\r\n",
            b"PROXY TCP4 2001:db8::1 10.0.0.1 1 2\r\n",
            b"PROXY TCP6 192.0.2.7 ::1 1 2\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 65536 2\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 01 2\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 -1 2\r\n",
            b"PROXY UDP4 192.0.2.7 10.0.0.1 1 2\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 1 2\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 1 2\rX",
            b"PROXY \xff\r\n",
            b"PROXY UNKNOWN a\nb\r\n",
        ] {
            assert!(
                matches!(parse(bad), Parsed::Invalid(_)),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = [&b"PROXY UNKNOWN "[..], &[b'x'; 100]].concat();
        assert!(matches!(parse(&long), Parsed::Invalid(_)));
    }

    #[test]
    fn version_2_headers() {
        let tcp4 = v2(
            1,
            0x11,
            &[192, 0, 2, 7, 10, 0, 0, 1, 0x1f, 0x90, 0x01, 0xbb],
        );
        assert_eq!(parse(&tcp4), proxied("192.0.2.7:8080", "10.0.0.1:443", 28));
        let mut block = Vec::new();
        block.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        block.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        block.extend_from_slice(&[0x12, 0x67, 0x1f, 0x40]);
        // A TLV (PP2_TYPE_AUTHORITY) after the addresses is skipped.
        block.extend_from_slice(&[0x02, 0x00, 0x03, b'a', b'.', b'b']);
        let mut tcp6 = v2(1, 0x21, &block);
        let len = tcp6.len();
        tcp6.extend_from_slice(b"GET / HTTP/1.1\r\n");
        assert_eq!(
            parse(&tcp6),
            proxied("[2001:db8::1]:4711", "[::1]:8000", len)
        );
        assert_eq!(
            parse(&v2(0, 0x00, &[])),
            Parsed::Complete {
                header: ProxyHeader::Local,
                len: 16
            }
        );
        assert_eq!(
            parse(&v2(1, 0x31, &[0; 216])),
            Parsed::Complete {
                header: ProxyHeader::Local,
                len: 232
            }
        );
    }

    #[test]
    fn malformed_version_2_headers() {
        let mut wrong_version = v2(1, 0x11, &[0; 12]);
        wrong_version[12] = 0x11;
        for bad in [
            wrong_version,
            v2(1, 0x11, &[0; 11]),
            v2(1, 0x21, &[0; 35]),
            v2(2, 0x11, &[0; 12]),
            v2(1, 0x41, &[0; 12]),
            v2(1, 0x13, &[0; 12]),
        ] {
            assert!(matches!(parse(&bad), Parsed::Invalid(_)), "{bad:?}");
        }
    }

    #[test]
    fn other_data_is_not_proxy() {
        for data in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"PRI * HTTP/2.0",
            b"POST",
            b"\r\n\r\nX",
            b"PROXX",
        ] {
            assert_eq!(parse(data), Parsed::NotProxy, "{data:?}");
        }
        assert_eq!(parse(b""), Parsed::Incomplete { at_least: 1 });
        assert_eq!(parse(b"\r\n"), Parsed::Incomplete { at_least: 16 });
        assert!(matches!(parse(b"PRO"), Parsed::Incomplete { .. }));
    }
}
