//! `/metrics` over HTTP, served by the supervisor from its own `poll(2)` loop.
//!
//! Why here and not on a thread or a runtime: the supervisor forks workers with
//! `os.fork()`, and forking a process that runs other threads is unsafe (a lock held by a
//! thread that does not exist in the child stays locked forever). So the supervisor stays
//! single-threaded: the metrics socket and the scrapers' connections are non-blocking
//! descriptors in the same `poll(2)` as its signal pipe and worker sockets, and each wake
//! does whatever reading and writing is possible without blocking. A scrape is a few KiB;
//! a slow or silent scraper is cut off after [`SCRAPE_TIMEOUT`], and at most
//! [`MAX_SCRAPES`] are open at once, so nothing a client does can stall the supervisor.
//! (A separate metrics process was the other choice; it would need its own lifecycle and
//! would add nothing a non-blocking socket in the existing loop does not give.)

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use super::exposition;
use super::shared::Region;

/// A scraper must send its request and read the answer within this time.
pub const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);
/// Scrape connections open at once; more are closed as they arrive.
pub const MAX_SCRAPES: usize = 16;
/// The longest request head accepted.
const MAX_REQUEST: usize = 8 * 1024;

/// The metrics listener and the scrapes in progress.
pub struct Endpoint {
    listener: TcpListener,
    scrapes: Vec<Scrape>,
}

struct Scrape {
    stream: TcpStream,
    request: Vec<u8>,
    response: Option<(Vec<u8>, usize)>,
    deadline: Instant,
}

impl Endpoint {
    /// Listens on `address` (`HOST:PORT`). Errors name the address.
    pub fn bind(address: &str) -> Result<Endpoint, String> {
        let addresses: Vec<_> = address
            .to_socket_addrs()
            .map_err(|e| format!("invalid --metrics-bind address {address:?}: {e}"))?
            .collect();
        let listener = TcpListener::bind(&addresses[..])
            .map_err(|e| format!("could not bind --metrics-bind {address}: {e}"))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("--metrics-bind {address}: {e}"))?;
        Ok(Endpoint {
            listener,
            scrapes: Vec::new(),
        })
    }

    /// The URL scrapers use, for the log.
    pub fn url(&self) -> String {
        match self.listener.local_addr() {
            Ok(std::net::SocketAddr::V6(addr)) => {
                format!("http://[{}]:{}/metrics", addr.ip(), addr.port())
            }
            Ok(addr) => format!("http://{addr}/metrics"),
            Err(_) => "?".into(),
        }
    }

    /// The descriptors to wait on, with the events wanted.
    pub fn pollfds(&self) -> impl Iterator<Item = libc::pollfd> + '_ {
        let listener = libc::pollfd {
            fd: self.listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        std::iter::once(listener).chain(self.scrapes.iter().map(|scrape| libc::pollfd {
            fd: scrape.stream.as_raw_fd(),
            events: if scrape.response.is_some() {
                libc::POLLOUT
            } else {
                libc::POLLIN
            },
            revents: 0,
        }))
    }

    /// Accepts, reads and answers whatever can be without blocking. `workers` is the
    /// number of live workers, reported as a gauge.
    pub fn service(&mut self, region: &Region, workers: usize) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if self.scrapes.len() >= MAX_SCRAPES || stream.set_nonblocking(true).is_err() {
                        continue; // dropped: closed at once
                    }
                    self.scrapes.push(Scrape {
                        stream,
                        request: Vec::new(),
                        response: None,
                        deadline: Instant::now() + SCRAPE_TIMEOUT,
                    });
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    tracing::debug!("metrics accept() failed: {error}");
                    break;
                }
            }
        }
        let now = Instant::now();
        self.scrapes
            .retain_mut(|scrape| now < scrape.deadline && scrape.advance(region, workers));
    }
}

impl Scrape {
    /// Makes what progress is possible; false once the scrape is over.
    fn advance(&mut self, region: &Region, workers: usize) -> bool {
        if self.response.is_none() {
            let mut buffer = [0u8; 2048];
            loop {
                match self.stream.read(&mut buffer) {
                    Ok(0) => return false,
                    Ok(n) => {
                        self.request.extend_from_slice(&buffer[..n]);
                        if let Some(response) = answer(&self.request, region, workers) {
                            self.response = Some((response, 0));
                            break;
                        }
                    }
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => return true,
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return false,
                }
            }
        }
        let Some((response, written)) = &mut self.response else {
            return true;
        };
        while *written < response.len() {
            match self.stream.write(&response[*written..]) {
                Ok(0) => return false,
                Ok(n) => *written += n,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return true,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
        false
    }
}

/// The full response to `request` once its head is complete (`None`: not yet).
fn answer(request: &[u8], region: &Region, workers: usize) -> Option<Vec<u8>> {
    let complete =
        request.windows(4).any(|w| w == b"\r\n\r\n") || request.windows(2).any(|w| w == b"\n\n");
    if !complete && request.len() <= MAX_REQUEST {
        return None;
    }
    if !complete {
        return Some(response(431, "Request Header Fields Too Large", "", false));
    }
    let line = request.split(|&b| b == b'\n').next().unwrap_or_default();
    let mut parts = line.trim_ascii().split(|&b| b == b' ');
    let (method, target) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    Some(match (method, path) {
        (b"GET" | b"HEAD", b"/metrics") => {
            let body = exposition::render(&region.totals(), workers);
            response(200, "OK", &body, method == b"HEAD")
        }
        (b"GET" | b"HEAD", _) => response(404, "Not Found", "not found: try /metrics\n", false),
        _ => response(405, "Method Not Allowed", "GET /metrics\n", false),
    })
}

fn response(status: u16, reason: &str, body: &str, head_only: bool) -> Vec<u8> {
    let content_type = if status == 200 {
        exposition::CONTENT_TYPE
    } else {
        "text/plain; charset=utf-8"
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_only_complete_heads() {
        let region = Region::map(1).unwrap();
        assert!(answer(b"GET /metrics HTTP/1.1\r\nHost: x\r\n", &region, 1).is_none());
        let ok = answer(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", &region, 1).unwrap();
        assert!(ok.starts_with(b"HTTP/1.1 200 OK\r\n"));
        let missing = answer(b"GET / HTTP/1.1\r\n\r\n", &region, 1).unwrap();
        assert!(missing.starts_with(b"HTTP/1.1 404 "));
        let post = answer(b"POST /metrics HTTP/1.1\r\n\r\n", &region, 1).unwrap();
        assert!(post.starts_with(b"HTTP/1.1 405 "));
        let huge = vec![b'a'; MAX_REQUEST + 1];
        assert!(answer(&huge, &region, 1)
            .unwrap()
            .starts_with(b"HTTP/1.1 431 "));
    }
}
