//! Static files answered by the engine itself (`--static URL_PREFIX=DIRECTORY`): such
//! requests never reach the app and never take a Python thread.
//!
//! [`StaticSite::respond`] takes a request head (method, target, header fields) and returns
//! `None` when the path lies under no prefix (the app answers it), else a
//! [`StaticResponse`]: the status, the header fields and the part of a file to send. It
//! knows nothing of connections, so the HTTP/1.1 loop (through [`http1`]) and any other
//! engine can call it.
//!
//! The parts: [`config`] holds the prefixes and routes a path to one, [`path`] turns the
//! rest of the path into a file inside the directory (or refuses it), [`conditional`],
//! [`range`] and [`encoding`] are the pure rules of RFC 9110 for validators, byte ranges and
//! `Accept-Encoding`, [`response`] puts them together.
//!
//! File look-ups (`stat`, `open`) run on the I/O thread, as nginx's do: on a local disk with
//! the metadata cached they take microseconds, less than handing them to another thread.

pub mod conditional;
pub mod config;
pub mod encoding;
pub mod http1;
pub mod path;
pub mod range;
pub mod response;

pub use config::StaticSite;
pub use response::{StaticBody, StaticResponse};
