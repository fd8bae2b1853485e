//! Messages from a worker to its supervisor: one byte each, over a socketpair made before
//! the fork.

use std::io;
use std::os::unix::net::UnixStream;

/// The worker has loaded the app and serves.
pub const READY: u8 = b'R';
/// The worker's I/O loop is alive (sent every [`HEARTBEAT_INTERVAL`]).
pub const HEARTBEAT: u8 = b'H';
/// The worker is retiring (budget reached, hung request, code changed): start its
/// replacement now; it finishes its in-flight requests and exits.
pub const RETIRING: u8 = b'Q';

/// How often a worker says it is alive.
pub const HEARTBEAT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// A connected pair: (supervisor end, worker end).
pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
    let (supervisor, worker) = UnixStream::pair()?;
    supervisor.set_nonblocking(true)?;
    Ok((supervisor, worker))
}
