//! systemd integration: socket activation (`LISTEN_FDS`) and readiness notification
//! (`sd_notify` over `NOTIFY_SOCKET`), both done by hand because each is a few lines of
//! a stable, documented protocol.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixDatagram;

use socket2::Socket;

use crate::gateway::ListenerInfo;
use crate::server::bind::{listener_info_for_tcp, Listener};

/// The first file descriptor systemd passes.
const SD_LISTEN_FDS_START: i32 = 3;

/// The listening sockets systemd passed to this process, if any. The variables are removed
/// so that workers and anything the app starts do not take them too.
pub fn activated_listeners() -> io::Result<Vec<(Listener, ListenerInfo)>> {
    let for_us = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|pid| pid.parse::<u32>().ok())
        .is_some_and(|pid| pid == std::process::id());
    let count: i32 = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    for name in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(name);
    }
    if !for_us || count <= 0 {
        return Ok(Vec::new());
    }
    let mut listeners = Vec::with_capacity(count as usize);
    for fd in SD_LISTEN_FDS_START..SD_LISTEN_FDS_START + count {
        // SAFETY: systemd passed these descriptors to this process (LISTEN_PID is ours),
        // open and owned by no one else here; the variables were removed above, so nothing
        // else will take ownership of them again.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        let socket = Socket::from(owned);
        socket.set_nonblocking(true)?;
        let local = socket.local_addr()?;
        if let Some(addr) = local.as_socket() {
            let listener: std::net::TcpListener = socket.into();
            let mut info = listener_info_for_tcp(addr);
            info.display.push_str(" (socket activation)");
            listeners.push((Listener::Tcp(listener), info));
        } else if local.is_unix() {
            let path = local
                .as_pathname()
                .map(|p| p.to_path_buf())
                .unwrap_or_default();
            let listener: std::os::unix::net::UnixListener = socket.into();
            let info = ListenerInfo {
                server_name: "localhost".into(),
                server_port: "80".into(),
                url_scheme: "http",
                display: format!("unix:{} (socket activation)", path.display()),
                environ: Default::default(),
            };
            // systemd owns the socket file: never remove it at exit.
            listeners.push((Listener::Unix(listener, None), info));
        } else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("fd {fd} from systemd is not a TCP or unix socket"),
            ));
        }
    }
    Ok(listeners)
}

/// Sends `state` (e.g. `READY=1`) to systemd when `NOTIFY_SOCKET` is set.
pub fn notify(state: &str) {
    let Ok(target) = std::env::var("NOTIFY_SOCKET") else {
        return;
    };
    let result = (|| -> io::Result<()> {
        let socket = UnixDatagram::unbound()?;
        if let Some(name) = target.strip_prefix('@') {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
            socket.send_to_addr(state.as_bytes(), &addr)?;
        } else {
            socket.send_to(state.as_bytes(), &target)?;
        }
        Ok(())
    })();
    if let Err(error) = result {
        tracing::warn!("sd_notify to {target:?} failed: {error}");
    }
}
