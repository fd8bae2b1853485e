//! A request's header fields: where each name and value lies in the one buffer they
//! arrived in.
//!
//! An HTTP/1 head is taken out of the read buffer as one `Bytes`; its fields are spans of
//! it. Keeping each name and value as a `Bytes` of its own cost two reference-count
//! increments when the head was parsed and two decrements when the request ended, for every
//! field (~2,000 instructions for a browser's dozen headers); a span costs nothing to make
//! or drop.

use std::ops::Range;

use bytes::{Bytes, BytesMut};

/// Where one field's name and value lie in the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FieldSpan {
    name_at: u32,
    name_len: u32,
    value_at: u32,
    value_len: u32,
}

/// Header fields in the order received: names as sent, values as raw bytes.
#[derive(Debug, Clone, Default)]
pub struct HeaderFields {
    buffer: Bytes,
    spans: Vec<FieldSpan>,
}

/// The spans of fields, gathered while their buffer is still part of the read buffer.
#[derive(Debug, Default)]
pub struct FieldSpans(Vec<FieldSpan>);

impl FieldSpans {
    /// Room for `capacity` fields.
    pub fn with_capacity(capacity: usize) -> Self {
        FieldSpans(Vec::with_capacity(capacity))
    }

    /// Adds the field whose name and value lie at these ranges of the buffer to come.
    #[inline]
    pub fn push(&mut self, name: Range<usize>, value: Range<usize>) {
        // Every offset and length is at most the larger end.
        assert!(
            name.end.max(value.end) <= u32::MAX as usize,
            "a head over 4 GiB"
        );
        self.0.push(FieldSpan {
            name_at: name.start as u32,
            name_len: name.len() as u32,
            value_at: value.start as u32,
            value_len: value.len() as u32,
        });
    }
}

impl HeaderFields {
    /// The fields `spans` points at in `buffer`. A span past the buffer's end panics when
    /// it is read, as slicing does.
    pub fn new(buffer: Bytes, spans: FieldSpans) -> Self {
        HeaderFields {
            buffer,
            spans: spans.0,
        }
    }

    /// Fields from names and values held elsewhere (HTTP/2, tests): copied into one buffer.
    pub fn from_pairs<N: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(N, V)]) -> Self {
        let size = pairs
            .iter()
            .map(|(n, v)| n.as_ref().len() + v.as_ref().len())
            .sum();
        let mut buffer = BytesMut::with_capacity(size);
        let mut spans = FieldSpans::with_capacity(pairs.len());
        for (name, value) in pairs {
            let name_at = buffer.len();
            buffer.extend_from_slice(name.as_ref());
            let value_at = buffer.len();
            buffer.extend_from_slice(value.as_ref());
            spans.push(name_at..value_at, value_at..buffer.len());
        }
        HeaderFields::new(buffer.freeze(), spans)
    }

    /// How many fields.
    #[inline]
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The name of field `index`.
    #[inline]
    pub fn name(&self, index: usize) -> &[u8] {
        let span = &self.spans[index];
        self.piece(span.name_at, span.name_len)
    }

    /// The value of field `index`.
    #[inline]
    pub fn value(&self, index: usize) -> &[u8] {
        let span = &self.spans[index];
        self.piece(span.value_at, span.value_len)
    }

    /// The fields as `(name, value)`, in order.
    #[inline]
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.spans.iter().map(|span| {
            (
                self.piece(span.name_at, span.name_len),
                self.piece(span.value_at, span.value_len),
            )
        })
    }

    #[inline]
    fn piece(&self, at: u32, len: u32) -> &[u8] {
        let at = at as usize;
        &self.buffer[at..at + len as usize]
    }

    /// The value of the first field named `name` (without case).
    pub fn get(&self, name: &[u8]) -> Option<&[u8]> {
        self.iter()
            .find(|(field, _)| field.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
    }

    /// `piece` (a name or value from [`iter`](Self::iter) or [`get`](Self::get)) as a
    /// `Bytes` sharing the buffer, for whoever keeps it past the request.
    pub fn share(&self, piece: &[u8]) -> Bytes {
        self.buffer.slice_ref(piece)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_of_one_buffer_read_back_as_pushed() {
        let buffer = Bytes::from_static(b"GET / HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n");
        let mut spans = FieldSpans::with_capacity(2);
        spans.push(16..20, 22..23);
        spans.push(25..31, 33..36);
        let fields = HeaderFields::new(buffer.clone(), spans);
        assert_eq!(fields.len(), 2);
        let all: Vec<_> = fields.iter().collect();
        assert_eq!(all, [(&b"Host"[..], &b"x"[..]), (b"Accept", b"*/*")]);
        assert_eq!(fields.get(b"ACCEPT"), Some(&b"*/*"[..]));
        assert_eq!(fields.get(b"Cookie"), None);
        let shared = fields.share(fields.value(1));
        assert_eq!(shared, &b"*/*"[..]);
        // The same memory, not a copy.
        assert_eq!(shared.as_ptr(), buffer[33..].as_ptr());
    }

    #[test]
    fn pairs_are_copied_into_one_buffer() {
        let fields = HeaderFields::from_pairs(&[("host", "x"), ("cookie", "a=1"), ("cookie", "")]);
        let all: Vec<_> = fields.iter().collect();
        assert_eq!(
            all,
            [
                (&b"host"[..], &b"x"[..]),
                (b"cookie", b"a=1"),
                (b"cookie", b"")
            ]
        );
        assert_eq!(fields.iter().last(), Some((&b"cookie"[..], &b""[..])));
        assert!(HeaderFields::default().is_empty());
    }

    #[test]
    #[should_panic]
    fn a_span_past_the_buffer_is_refused() {
        let mut spans = FieldSpans::with_capacity(1);
        spans.push(0..4, 6..8);
        let fields = HeaderFields::new(Bytes::from_static(b"Host: x"), spans);
        let _ = fields.value(0);
    }
}
