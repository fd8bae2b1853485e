//! A response body the app handed over whole: a list or tuple of bytes.
//!
//! The usual small body (`[b"Hello, World!"]`, a short JSON document) had cost two
//! allocations on its way to the engine: a `Vec` for the pieces and a `Bytes` copy of each,
//! which the engine then copied once more into its staging buffer. Up to [`SMALL_BODY`]
//! bytes in all are copied instead into one inline buffer that travels inside the
//! response's event, which is boxed anyway.

use bytes::Bytes;

/// The largest body kept inline. Small enough that moving a [`WholeBody`] by value stays a
/// few vector moves: at 128 bytes each move was a call to `memcpy`, and the moves from the
/// app's list to the response's box cost what the allocations had.
pub const SMALL_BODY: usize = 96;

/// A body known up front.
#[derive(Debug, Clone)]
pub enum WholeBody {
    /// Up to [`SMALL_BODY`] bytes, the pieces copied together.
    Small(SmallBody),
    /// The pieces as they came.
    Pieces(Vec<Bytes>),
}

/// Up to [`SMALL_BODY`] bytes inline.
#[derive(Debug, Clone)]
pub struct SmallBody {
    len: u8,
    bytes: [u8; SMALL_BODY],
}

impl Default for WholeBody {
    /// An empty body.
    fn default() -> Self {
        WholeBody::Small(SmallBody {
            len: 0,
            bytes: [0; SMALL_BODY],
        })
    }
}

impl SmallBody {
    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl WholeBody {
    /// Adds `piece` at the end; `shared` makes a `Bytes` of it when the body is kept as
    /// pieces (a copy, or a buffer shared with its owner).
    pub fn push(&mut self, piece: &[u8], shared: impl FnOnce() -> Bytes) {
        match self {
            WholeBody::Small(small) => {
                let at = usize::from(small.len);
                if let Some(room) = small.bytes.get_mut(at..at + piece.len()) {
                    room.copy_from_slice(piece);
                    // At most SMALL_BODY (96), which fits a u8.
                    small.len = (at + piece.len()) as u8;
                } else {
                    let mut pieces = Vec::with_capacity(2);
                    if at > 0 {
                        pieces.push(Bytes::copy_from_slice(small.as_slice()));
                    }
                    pieces.push(shared());
                    *self = WholeBody::Pieces(pieces);
                }
            }
            WholeBody::Pieces(pieces) => pieces.push(shared()),
        }
    }

    /// How many bytes in all.
    pub fn len(&self) -> u64 {
        match self {
            WholeBody::Small(small) => u64::from(small.len),
            WholeBody::Pieces(pieces) => pieces.iter().map(|piece| piece.len() as u64).sum(),
        }
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Cuts the body to its first `limit` bytes.
    pub fn truncate(&mut self, mut limit: u64) {
        match self {
            WholeBody::Small(small) => {
                if limit < u64::from(small.len) {
                    small.len = limit as u8;
                }
            }
            WholeBody::Pieces(pieces) => {
                let mut kept = 0;
                for piece in pieces.iter_mut() {
                    if limit == 0 {
                        break;
                    }
                    if piece.len() as u64 > limit {
                        piece.truncate(limit as usize);
                    }
                    limit -= piece.len() as u64;
                    kept += 1;
                }
                pieces.truncate(kept);
            }
        }
    }

    /// The body as pieces, for the engines that take no other form (an empty body has
    /// none).
    pub fn into_pieces(self) -> Vec<Bytes> {
        match self {
            WholeBody::Small(small) if small.len == 0 => Vec::new(),
            WholeBody::Small(small) => vec![Bytes::copy_from_slice(small.as_slice())],
            WholeBody::Pieces(pieces) => pieces,
        }
    }
}

impl From<Vec<Bytes>> for WholeBody {
    fn from(pieces: Vec<Bytes>) -> Self {
        WholeBody::Pieces(pieces)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(pieces: &[&[u8]]) -> WholeBody {
        let mut body = WholeBody::default();
        for piece in pieces {
            body.push(piece, || Bytes::copy_from_slice(piece));
        }
        body
    }

    fn joined(body: WholeBody) -> Vec<u8> {
        body.into_pieces().concat()
    }

    #[test]
    fn small_pieces_are_kept_together_inline() {
        let body = body(&[b"Hello, ", b"World!", b""]);
        assert!(matches!(&body, WholeBody::Small(small) if small.as_slice() == b"Hello, World!"));
        assert_eq!(body.len(), 13);
        assert_eq!(joined(body), b"Hello, World!");
        assert!(WholeBody::default().is_empty());
        assert!(WholeBody::default().into_pieces().is_empty());
    }

    #[test]
    fn a_body_past_the_inline_size_becomes_pieces_in_order() {
        let exact = vec![b'x'; SMALL_BODY];
        assert!(matches!(body(&[&exact]), WholeBody::Small(_)));
        let big = vec![b'y'; SMALL_BODY];
        let grown = body(&[b"ab", &big, b"cd"]);
        let WholeBody::Pieces(pieces) = &grown else {
            panic!("still small");
        };
        assert_eq!(pieces.len(), 3);
        assert_eq!(grown.len(), 4 + SMALL_BODY as u64);
        assert_eq!(joined(grown), [&b"ab"[..], &big, b"cd"].concat());
        // A first piece too big for the inline buffer leaves no empty piece before it.
        let WholeBody::Pieces(pieces) = body(&[&[b'z'; SMALL_BODY + 1]]) else {
            panic!("still small");
        };
        assert_eq!(pieces.len(), 1);
    }

    #[test]
    fn truncation_keeps_the_first_bytes() {
        for mut body in [
            body(&[b"0123", b"4567"]),
            WholeBody::from(vec![
                Bytes::from_static(b"0123"),
                Bytes::from_static(b"4567"),
            ]),
        ] {
            body.truncate(5);
            assert_eq!(body.len(), 5);
            assert_eq!(joined(body), b"01234");
        }
        let mut pieces = WholeBody::from(vec![Bytes::from_static(b"0123"), Bytes::new()]);
        pieces.truncate(4);
        assert!(matches!(&pieces, WholeBody::Pieces(p) if p.len() == 1));
        let mut small = body(&[b"abc"]);
        small.truncate(10);
        assert_eq!(joined(small), b"abc");
    }
}
