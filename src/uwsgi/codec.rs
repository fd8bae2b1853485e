//! The uwsgi request packet: a 4-byte header and a block of variables.
//!
//! The header is `modifier1` (u8; 0 means a WSGI request), the size of the block (u16,
//! little-endian) and `modifier2` (u8). The block is a sequence of pairs, each a key and a
//! value prefixed by its length (u16, little-endian). Pure functions with no I/O, unit
//! tested and fuzzed (`fuzz/`); the only dependency is `bytes`. No maintained crate on
//! crates.io implements this codec on its own, so it is written here from uWSGI's
//! protocol documentation.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Length of the packet header.
pub const HEADER_LEN: usize = 4;
/// `modifier1` of a WSGI request (what nginx's `uwsgi_modifier1` sends by default).
pub const MODIFIER_WSGI: u8 = 0;

/// A malformed packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecError(pub String);

impl std::fmt::Display for CodecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A request packet: its modifiers and its variables in the order sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// The request kind; [`MODIFIER_WSGI`] for WSGI.
    pub modifier1: u8,
    /// A sub-kind, unused for WSGI requests.
    pub modifier2: u8,
    /// The variables.
    pub vars: Vec<(Bytes, Bytes)>,
}

/// Takes one whole packet off the front of `buf`; what follows it (the request body) stays.
/// `Ok(None)`: more bytes are needed.
pub fn decode_packet(buf: &mut BytesMut) -> Result<Option<Packet>, CodecError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let size = usize::from(u16::from_le_bytes([buf[1], buf[2]]));
    if buf.len() < HEADER_LEN + size {
        return Ok(None);
    }
    let (modifier1, modifier2) = (buf[0], buf[3]);
    buf.advance(HEADER_LEN);
    let block = buf.split_to(size).freeze();
    let vars = if modifier1 == MODIFIER_WSGI {
        parse_vars(&block)?
    } else {
        Vec::new()
    };
    Ok(Some(Packet {
        modifier1,
        modifier2,
        vars,
    }))
}

fn read_len(rest: &mut &[u8]) -> Result<usize, CodecError> {
    if rest.len() < 2 {
        return Err(CodecError("variable length cut short".into()));
    }
    let len = usize::from(u16::from_le_bytes([rest[0], rest[1]]));
    *rest = &rest[2..];
    Ok(len)
}

/// Parses a variable block into key-value pairs.
pub fn parse_vars(block: &Bytes) -> Result<Vec<(Bytes, Bytes)>, CodecError> {
    let mut vars = Vec::new();
    let mut rest: &[u8] = block;
    while !rest.is_empty() {
        let key_len = read_len(&mut rest)?;
        if rest.len() < key_len {
            return Err(CodecError("variable name longer than its block".into()));
        }
        let key_start = block.len() - rest.len();
        rest = &rest[key_len..];
        let value_len = read_len(&mut rest)?;
        if rest.len() < value_len {
            return Err(CodecError("variable value longer than its block".into()));
        }
        let value_start = block.len() - rest.len();
        rest = &rest[value_len..];
        vars.push((
            block.slice(key_start..key_start + key_len),
            block.slice(value_start..value_start + value_len),
        ));
    }
    Ok(vars)
}

/// Appends a whole request packet with `vars` (used by tests and the fuzz target). Returns
/// an error if the block would not fit the 16-bit size.
pub fn encode_packet(
    out: &mut BytesMut,
    modifier1: u8,
    modifier2: u8,
    vars: &[(&[u8], &[u8])],
) -> Result<(), CodecError> {
    let mut block = BytesMut::new();
    for (key, value) in vars {
        for part in [key, value] {
            let len = u16::try_from(part.len())
                .map_err(|_| CodecError("variable longer than 65535 bytes".into()))?;
            block.put_u16_le(len);
            block.put_slice(part);
        }
    }
    let size = u16::try_from(block.len())
        .map_err(|_| CodecError("variable block longer than 65535 bytes".into()))?;
    out.put_u8(modifier1);
    out.put_u16_le(size);
    out.put_u8(modifier2);
    out.put_slice(&block);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packet_round_trips_and_leaves_the_body() {
        let mut buf = BytesMut::new();
        encode_packet(
            &mut buf,
            0,
            0,
            &[
                (b"REQUEST_METHOD", b"POST"),
                (b"EMPTY", b""),
                (b"PATH_INFO", b"/x"),
            ],
        )
        .unwrap();
        buf.extend_from_slice(b"body");
        let packet = decode_packet(&mut buf).unwrap().unwrap();
        assert_eq!(packet.modifier1, MODIFIER_WSGI);
        let vars: Vec<(&[u8], &[u8])> = packet.vars.iter().map(|(k, v)| (&k[..], &v[..])).collect();
        assert_eq!(
            vars,
            [
                (&b"REQUEST_METHOD"[..], &b"POST"[..]),
                (b"EMPTY", b""),
                (b"PATH_INFO", b"/x")
            ]
        );
        assert_eq!(&buf[..], b"body");
    }

    #[test]
    fn partial_packets_wait_for_more() {
        let mut whole = BytesMut::new();
        encode_packet(&mut whole, 0, 0, &[(b"A", b"1")]).unwrap();
        for cut in 0..whole.len() {
            let mut buf = BytesMut::from(&whole[..cut]);
            assert_eq!(decode_packet(&mut buf), Ok(None), "cut at {cut}");
        }
    }

    #[test]
    fn the_size_is_little_endian() {
        let mut buf = BytesMut::new();
        let value = vec![b'x'; 300];
        encode_packet(&mut buf, 0, 0, &[(b"K", &value)]).unwrap();
        let size = 2 + 1 + 2 + 300;
        assert_eq!(&buf[..4], &[0, (size & 0xff) as u8, (size >> 8) as u8, 0]);
    }

    #[test]
    fn malformed_blocks_are_errors() {
        for block in [
            &[1u8][..],
            &[5, 0, b'a'],
            &[1, 0, b'a'],
            &[1, 0, b'a', 9],
            &[1, 0, b'a', 3, 0, b'b'],
        ] {
            assert!(
                parse_vars(&Bytes::copy_from_slice(block)).is_err(),
                "{block:?}"
            );
        }
    }

    #[test]
    fn other_modifiers_are_reported_without_parsing() {
        let mut buf = BytesMut::from(&[100u8, 0, 0, 0][..]);
        let packet = decode_packet(&mut buf).unwrap().unwrap();
        assert_eq!(packet.modifier1, 100);
        assert!(packet.vars.is_empty());
    }
}
