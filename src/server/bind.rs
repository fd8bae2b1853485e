//! Bind addresses: parsing `HOST:PORT`, `[V6]:PORT` and `unix:PATH`, and opening the
//! listening sockets with the options a server needs.

use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use socket2::{Domain, SockAddr, Socket, Type};

use crate::gateway::ListenerInfo;

/// Connections the kernel may queue before they are accepted (gunicorn's default).
pub const DEFAULT_BACKLOG: i32 = 2048;
/// The port used when an address names none (gunicorn's default).
const DEFAULT_PORT: u16 = 8000;

/// A parsed `--bind` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindAddress {
    /// A TCP host (name or IP) and port.
    Tcp {
        /// The host as written (brackets removed for IPv6).
        host: String,
        /// The port.
        port: u16,
    },
    /// A unix socket path.
    Unix(PathBuf),
}

impl std::fmt::Display for BindAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BindAddress::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            BindAddress::Tcp { host, port } => write!(f, "{host}:{port}"),
            BindAddress::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// Parses a bind address.
pub fn parse_bind(text: &str) -> Result<BindAddress, String> {
    let text = text.trim();
    if let Some(path) = text.strip_prefix("unix:") {
        if path.is_empty() {
            return Err(format!("{text:?}: unix: needs a socket path"));
        }
        return Ok(BindAddress::Unix(PathBuf::from(path)));
    }
    if text.is_empty() {
        return Err("empty address; expected HOST:PORT, [IPV6]:PORT or unix:PATH".into());
    }
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{text:?}: missing ']' after the IPv6 address"))?;
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("{text:?}: {host:?} is not an IPv6 address"));
        }
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| format!("{text:?}: expected ':PORT' after ']'"))?,
            ),
        };
        (host.to_string(), port)
    } else {
        match text.rsplit_once(':') {
            Some((host, _)) if host.contains(':') => {
                return Err(format!(
                    "{text:?}: write IPv6 addresses in brackets, as [::1]:8000"
                ))
            }
            Some((host, port)) => (host.to_string(), Some(port)),
            None => (text.to_string(), None),
        }
    };
    let port = match port {
        None => DEFAULT_PORT,
        Some(port) => port
            .parse::<u16>()
            .map_err(|_| format!("{text:?}: {port:?} is not a port number (0 to 65535)"))?,
    };
    let host = if host.is_empty() {
        "0.0.0.0".to_string()
    } else {
        host
    };
    if host.chars().any(|c| c.is_whitespace() || c == '/') {
        return Err(format!(
            "{text:?}: {host:?} is not a host name or IP address"
        ));
    }
    Ok(BindAddress::Tcp { host, port })
}

/// An open listening socket.
pub enum Listener {
    /// TCP.
    Tcp(std::net::TcpListener),
    /// A unix socket, with the path to remove at shutdown (none for sockets systemd owns).
    Unix(std::os::unix::net::UnixListener, Option<PathBuf>),
}

/// How listening sockets are opened.
#[derive(Debug, Clone, Copy)]
pub struct BindOptions {
    /// `--backlog`.
    pub backlog: i32,
    /// `--umask` applied while a unix socket file is created.
    pub umask: Option<u32>,
}

impl Default for BindOptions {
    fn default() -> Self {
        BindOptions {
            backlog: DEFAULT_BACKLOG,
            umask: None,
        }
    }
}

/// Opens the listening socket for `address`.
pub fn open(
    address: &BindAddress,
    options: BindOptions,
) -> Result<(Listener, ListenerInfo), String> {
    match address {
        BindAddress::Tcp { host, port } => open_tcp(host, *port, options.backlog),
        BindAddress::Unix(path) => open_unix(path, options),
    }
    .map_err(|e| format!("could not bind {address}: {e}"))
}

fn resolve(host: &str, port: u16) -> io::Result<SocketAddr> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let addrs: Vec<SocketAddr> = (host, port).to_socket_addrs()?.collect();
    // Prefer IPv4: "localhost" then answers clients that try 127.0.0.1.
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{host:?} resolves to no address"),
            )
        })
}

fn open_tcp(host: &str, port: u16, backlog: i32) -> io::Result<(Listener, ListenerInfo)> {
    let addr = resolve(host, port)?;
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    socket.set_nonblocking(true)?;
    let listener: std::net::TcpListener = socket.into();
    let info = listener_info_for_tcp(listener.local_addr()?);
    Ok((Listener::Tcp(listener), info))
}

/// What the environ and the log say about a TCP listener bound to `local`.
pub fn listener_info_for_tcp(local: SocketAddr) -> ListenerInfo {
    let display = match local {
        SocketAddr::V6(v6) => format!("http://[{}]:{}", v6.ip(), v6.port()),
        SocketAddr::V4(v4) => format!("http://{v4}"),
    };
    ListenerInfo {
        server_name: local.ip().to_string(),
        server_port: local.port().to_string(),
        url_scheme: "http",
        display,
        environ: Default::default(),
    }
}

fn open_unix(path: &std::path::Path, options: BindOptions) -> io::Result<(Listener, ListenerInfo)> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if !meta.file_type().is_socket() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "the path exists and is not a socket",
            ));
        }
        // A socket file left by a server that is gone can be replaced; a live one cannot.
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                "another server is listening on this socket",
            ));
        }
        std::fs::remove_file(path)?;
    }
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    let address = SockAddr::unix(path)?;
    let bound = match options.umask {
        // The socket file's permissions come from the umask in force at bind(2).
        Some(mask) => {
            // SAFETY: umask(2) cannot fail; the previous mask is restored right after.
            let previous = unsafe { libc::umask(mask as libc::mode_t) };
            let bound = socket.bind(&address);
            // SAFETY: as above.
            unsafe { libc::umask(previous) };
            bound
        }
        None => socket.bind(&address),
    };
    bound?;
    socket.listen(options.backlog)?;
    socket.set_nonblocking(true)?;
    let listener: std::os::unix::net::UnixListener = socket.into();
    let info = ListenerInfo {
        server_name: "localhost".to_string(),
        server_port: "80".to_string(),
        url_scheme: "http",
        display: format!("unix:{}", path.display()),
        environ: Default::default(),
    };
    Ok((Listener::Unix(listener, Some(path.to_path_buf())), info))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host: &str, port: u16) -> BindAddress {
        BindAddress::Tcp {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn parses_the_address_forms() {
        assert_eq!(
            parse_bind("127.0.0.1:8080").unwrap(),
            tcp("127.0.0.1", 8080)
        );
        assert_eq!(parse_bind("[::1]:9000").unwrap(), tcp("::1", 9000));
        assert_eq!(parse_bind("localhost").unwrap(), tcp("localhost", 8000));
        assert_eq!(parse_bind(":5000").unwrap(), tcp("0.0.0.0", 5000));
        assert_eq!(
            parse_bind("unix:/tmp/s.sock").unwrap(),
            BindAddress::Unix("/tmp/s.sock".into())
        );
    }

    #[test]
    fn refuses_bad_addresses() {
        for bad in [
            "",
            "unix:",
            "1.2.3.4:http",
            "1.2.3.4:70000",
            "::1:80",
            "[::1",
            "[nothost]:80",
            "[::1]80",
            "a b:80",
        ] {
            assert!(parse_bind(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn a_port_in_use_is_a_clear_error() {
        let (first, info) = open(&tcp("127.0.0.1", 0), BindOptions::default()).unwrap();
        let port: u16 = info.server_port.parse().unwrap();
        let error = open(&tcp("127.0.0.1", port), BindOptions::default())
            .err()
            .unwrap();
        assert!(
            error.starts_with(&format!("could not bind 127.0.0.1:{port}: ")),
            "{error}"
        );
        drop(first);
    }
}
