//! The status and header strings an app passes to `start_response` again and again.
//!
//! Most apps send the same str objects with every response: literals such as `"200 OK"`
//! and `"Content-Type"`, module constants such as `"text/plain"`. Checking them and
//! converting them to bytes again cost more than the rest of `start_response` (~1,100
//! instructions for the two headers of a hello app). A str is immutable, so one that passed
//! the checks once passes them again: [`KnownStrings`] remembers, per object, what the
//! checks made of it. It holds a reference to every object it remembers, so no other object
//! can take the address of one while its entry lives, and an address compared equal is the
//! very same object.
//!
//! The cache is small and two-way set-associative by address: an entry is found by looking
//! at two slots, and a str the app makes afresh for each response (a computed
//! `Content-Length`) costs one replaced entry besides the ordinary checks. (Direct-mapped,
//! the hello app's two header names had landed in one slot and evicted each other.)

use bytes::Bytes;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyString;

use crate::wsgi::head::{self, Status};

/// Sets per table, of two entries each: room for the names and constant values of a
/// framework's usual responses many times over, so that two of them seldom share a set.
const SETS: usize = 32;

/// What a header name means for the response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderName {
    /// `Content-Length`: the engine frames the body with the length it declares.
    ContentLength,
    /// `Connection`: a hop-by-hop header that is honoured when it says `close`.
    Connection,
    /// Another hop-by-hop header (PEP 3333 forbids them to apps): dropped.
    HopByHop,
    /// Any other header, sent with this spelling.
    Sent(Bytes),
}

/// A checked header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderValue {
    /// The value as latin-1 bytes, free of control characters.
    pub bytes: Bytes,
    /// The value read as a Content-Length, if it is one.
    pub length: Option<u64>,
}

/// One remembered object and what its checks made of it.
type Entry<T> = Option<(Py<PyString>, T)>;

/// Statuses, header names and header values that passed the checks, by object.
#[derive(Default)]
pub struct KnownStrings {
    status: Entry<Status>,
    names: Table<HeaderName>,
    values: Table<HeaderValue>,
}

/// Objects and what their checks made of them, two-way set-associative by address.
struct Table<T> {
    /// Set `i` is entries `2i` (the newer) and `2i + 1`.
    entries: [Entry<T>; 2 * SETS],
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Table {
            entries: std::array::from_fn(|_| None),
        }
    }
}

impl<T: Clone> Table<T> {
    /// The first entry of `object`'s set: its address (above the allocator's 16-byte
    /// alignment) hashed by Fibonacci multiplication, whose top bits mix all of its bits.
    fn set_of(object: &Bound<'_, PyString>) -> usize {
        const SET_BITS: u32 = SETS.trailing_zeros();
        let address = (object.as_ptr() as usize >> 4) as u64;
        let set = address.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - SET_BITS);
        2 * set as usize
    }

    /// What the table remembers of this very object.
    fn find(&self, object: &Bound<'_, PyString>) -> Option<T> {
        let first = Self::set_of(object);
        self.entries[first..first + 2]
            .iter()
            .flatten()
            .find(|(known, _)| known.as_ptr() == object.as_ptr())
            .map(|(_, value)| value.clone())
    }

    /// Remembers `value` for `object`, as the newer entry of its set; the older one goes.
    fn remember(&mut self, object: &Bound<'_, PyString>, value: T) {
        let first = Self::set_of(object);
        self.entries.swap(first, first + 1);
        self.entries[first] = Some((object.clone().unbind(), value));
    }

    /// Whether the table remembers this very object.
    #[cfg(test)]
    fn holds(&self, object: &Bound<'_, PyString>) -> bool {
        self.find(object).is_some()
    }
}

/// What `entry` remembers of this very object.
fn hit<T: Clone>(entry: &Entry<T>, object: &Bound<'_, PyString>) -> Option<T> {
    match entry {
        Some((known, value)) if known.as_ptr() == object.as_ptr() => Some(value.clone()),
        _ => None,
    }
}

/// The longest value kept inline in one allocation: the buffer and its count make the
/// allocation 64 bytes.
const INLINE: usize = 55;

/// `bytes` in a buffer the cache and the responses share: one allocation for a short one,
/// whose clones only count references (a `Bytes` made from a `Vec` allocates a second
/// block on its first clone).
fn shared_bytes(bytes: &[u8]) -> Bytes {
    if bytes.len() <= INLINE {
        Bytes::from_owner(InlineValue::new(bytes))
    } else {
        Bytes::copy_from_slice(bytes)
    }
}

/// A short checked name or value, in the same allocation as the reference count of the
/// `Bytes` made of it.
struct InlineValue {
    len: u8,
    bytes: [u8; INLINE],
}

impl InlineValue {
    /// `value`, at most [`INLINE`] bytes long.
    fn new(value: &[u8]) -> Self {
        let mut bytes = [0; INLINE];
        bytes[..value.len()].copy_from_slice(value);
        InlineValue {
            len: value.len() as u8,
            bytes,
        }
    }
}

impl AsRef<[u8]> for InlineValue {
    fn as_ref(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// Whether something besides the app's header item and the caller holds `value`: a
/// constant the app will pass again. A long value made afresh for each response (a cookie)
/// is held by its header item alone; remembering it would cost a second allocation per
/// response and could never be used.
fn held_elsewhere(value: &Bound<'_, PyString>) -> bool {
    // SAFETY: reading the reference count of a live object; the caller holds the GIL (the
    // `Bound` proves it).
    unsafe { pyo3::ffi::Py_REFCNT(value.as_ptr()) > 2 }
}

fn value_error(message: String) -> PyErr {
    PyValueError::new_err(format!("start_response(): {message}"))
}

impl KnownStrings {
    /// The checked status `status`: `NNN Reason` (see [`head::parse_status`]).
    pub fn status(&mut self, status: &Bound<'_, PyString>) -> PyResult<Status> {
        if let Some(known) = hit(&self.status, status) {
            return Ok(known);
        }
        let checked = head::parse_status(&status.to_cow()?).map_err(value_error)?;
        self.status = Some((status.clone().unbind(), checked.clone()));
        Ok(checked)
    }

    /// The checked header name `name`: a token, classified for the engine.
    pub fn name(&mut self, name: &Bound<'_, PyString>) -> PyResult<HeaderName> {
        if let Some(known) = self.names.find(name) {
            return Ok(known);
        }
        let text = name.to_cow()?;
        head::check_header_name(&text).map_err(value_error)?;
        let checked = if text.eq_ignore_ascii_case("content-length") {
            HeaderName::ContentLength
        } else if text.eq_ignore_ascii_case("connection") {
            HeaderName::Connection
        } else if head::is_hop_by_hop(&text) {
            HeaderName::HopByHop
        } else {
            HeaderName::Sent(
                head::common_header_name(&text).unwrap_or_else(|| shared_bytes(text.as_bytes())),
            )
        };
        self.names.remember(name, checked.clone());
        Ok(checked)
    }

    /// The checked value `value` of the header `name`: latin-1, no control characters.
    pub fn value(
        &mut self,
        name: &Bound<'_, PyString>,
        value: &Bound<'_, PyString>,
    ) -> PyResult<HeaderValue> {
        if let Some(known) = self.values.find(value) {
            return Ok(known);
        }
        let text = value.to_cow()?;
        let latin1 = match head::check_header_value(&text) {
            Ok(bytes) => bytes,
            Err(fault) => return Err(value_error(fault.describe(&name.to_cow()?, &text))),
        };
        let length = head::parse_content_length(&latin1);
        // A short value costs one allocation whether remembered or not, so every one is
        // remembered: the constant ones are found again, and a value made afresh for each
        // response (a computed Content-Length) costs no more than it did uncached.
        let checked = HeaderValue {
            bytes: shared_bytes(&latin1),
            length,
        };
        if latin1.len() <= INLINE || held_elsewhere(value) {
            self.values.remember(value, checked.clone());
        }
        Ok(checked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_python(test: impl FnOnce(Python<'_>)) {
        Python::initialize();
        Python::attach(test);
    }

    #[test]
    fn a_str_is_checked_once_and_remembered_by_identity() {
        with_python(|py| {
            let mut known = KnownStrings::default();
            let name = PyString::new(py, "X-Custom");
            let first = known.name(&name).unwrap();
            assert_eq!(first, HeaderName::Sent(Bytes::from_static(b"X-Custom")));
            assert!(known.names.holds(&name));
            assert_eq!(known.name(&name).unwrap(), first);
            // An equal string that is another object is checked on its own.
            let other = PyString::new(py, "X-Custom");
            assert_eq!(known.name(&other).unwrap(), first);
        });
    }

    #[test]
    fn a_set_keeps_its_two_newest_objects() {
        with_python(|py| {
            let strings: Vec<_> = (0..20 * SETS)
                .map(|i| PyString::new(py, &format!("X-Header-{i}")))
                .collect();
            let first = Table::<HeaderName>::set_of(&strings[0]);
            let same_set: Vec<_> = strings
                .iter()
                .filter(|s| Table::<HeaderName>::set_of(s) == first)
                .take(3)
                .collect();
            assert_eq!(same_set.len(), 3, "no three strings share a set");
            let mut table = Table::<HeaderName>::default();
            for object in &same_set {
                table.remember(object, HeaderName::HopByHop);
            }
            assert!(!table.holds(same_set[0]));
            assert!(table.holds(same_set[1]));
            assert!(table.holds(same_set[2]));
            // Sets spread: the strings do not all land in a few of them.
            let mut used = [false; SETS];
            for object in &strings {
                used[Table::<HeaderName>::set_of(object) / 2] = true;
            }
            assert!(used.iter().all(|&u| u), "{used:?}");
        });
    }

    #[test]
    fn names_are_classified_for_the_engine() {
        with_python(|py| {
            let mut known = KnownStrings::default();
            let mut name = |text| {
                known
                    .name(&PyString::new(py, text))
                    .map_err(|e| e.to_string())
            };
            assert_eq!(name("content-LENGTH"), Ok(HeaderName::ContentLength));
            assert_eq!(name("Connection"), Ok(HeaderName::Connection));
            assert_eq!(name("Transfer-Encoding"), Ok(HeaderName::HopByHop));
            assert_eq!(
                name("ETag"),
                Ok(HeaderName::Sent(Bytes::from_static(b"ETag")))
            );
            let error = name("Bad Name").unwrap_err();
            assert!(error.contains("invalid header name"), "{error}");
        });
    }

    #[test]
    fn values_carry_their_length_and_refused_ones_are_not_remembered() {
        with_python(|py| {
            let mut known = KnownStrings::default();
            let name = PyString::new(py, "Content-Length");
            let value = PyString::new(py, " 42 ");
            let checked = known.value(&name, &value).unwrap();
            assert_eq!(checked.length, Some(42));
            assert_eq!(checked.bytes, &b" 42 "[..]);
            let bad = PyString::new(py, "a\r\nSet-Cookie: x");
            let error = known.value(&name, &bad).unwrap_err().to_string();
            assert!(error.contains("header injection refused"), "{error}");
            assert!(error.contains("Content-Length"), "{error}");
            assert!(!known.values.holds(&bad));
            assert!(known.value(&name, &bad).is_err());
            assert!(known.values.holds(&value));
        });
    }

    #[test]
    fn a_long_value_only_its_header_holds_is_not_remembered() {
        with_python(|py| {
            let mut known = KnownStrings::default();
            let name = PyString::new(py, "Set-Cookie");
            let long = "session=".to_string() + &"x".repeat(INLINE);
            let fresh = PyString::new(py, &long);
            // The reference a header item holds.
            let item = fresh.clone();
            assert_eq!(known.value(&name, &fresh).unwrap().bytes, long.as_bytes());
            assert!(known.values.entries.iter().all(Option::is_none));
            // Held by something else too, it is a constant: remembered.
            let holder = fresh.clone();
            assert_eq!(known.value(&name, &fresh).unwrap().bytes, long.as_bytes());
            assert!(known.values.holds(&fresh));
            drop((holder, item));
            // A short one costs nothing more to remember.
            let short = PyString::new(py, "13");
            assert_eq!(known.value(&name, &short).unwrap().bytes, &b"13"[..]);
            assert!(known.values.holds(&short));
        });
    }

    #[test]
    fn a_status_is_remembered_until_another_comes() {
        with_python(|py| {
            let mut known = KnownStrings::default();
            let ok = PyString::new(py, "200 OK");
            assert_eq!(known.status(&ok).unwrap().code, 200);
            assert_eq!(known.status(&ok).unwrap().code, 200);
            let missing = PyString::new(py, "404 Not Found");
            assert_eq!(known.status(&missing).unwrap().code, 404);
            assert!(known.status(&PyString::new(py, "20 OK")).is_err());
            assert_eq!(known.status(&missing).unwrap().line, &b"404 Not Found"[..]);
        });
    }
}
