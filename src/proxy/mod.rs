//! Running behind proxies: which peers are trusted (`--forwarded-allow-ips`), the
//! `Forwarded` and `X-Forwarded-*` headers they send, the PROXY protocol header they may put
//! before the first request byte (`--proxy-protocol`), and the path prefix an app is mounted
//! under (`--root-path`).
//!
//! The parsers are pure functions ([`allow`], [`forwarded`], [`protocol`], [`root_path`]);
//! [`connection`] reads a PROXY header off a freshly accepted socket, and the WSGI environ
//! builder (`crate::wsgi::environ`) applies the forwarded headers, in one place for every
//! HTTP engine.

pub mod allow;
pub mod connection;
pub mod forwarded;
pub mod protocol;
pub mod root_path;

pub use allow::AllowList;

/// The proxy settings of a server, shared by its connections and its WSGI bridge.
#[derive(Debug, Clone, Default)]
pub struct ProxyConfig {
    /// `--forwarded-allow-ips`: the peers whose forwarding headers and PROXY headers are
    /// believed.
    pub allow: AllowList,
    /// `--proxy-protocol`: every connection from an allowed peer starts with a PROXY header.
    pub proxy_protocol: bool,
    /// `--root-path`, normalised (`""` when the app is mounted at `/`).
    pub root_path: String,
}

impl ProxyConfig {
    /// Builds the settings from the option values, or says which one is wrong and why.
    pub fn new(allow_ips: &str, proxy_protocol: bool, root_path: &str) -> Result<Self, String> {
        Ok(ProxyConfig {
            allow: AllowList::parse(allow_ips)
                .map_err(|e| format!("--forwarded-allow-ips: {e}"))?,
            proxy_protocol,
            root_path: root_path::normalise(root_path).map_err(|e| format!("--root-path: {e}"))?,
        })
    }
}
