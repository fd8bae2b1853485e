//! `--forwarded-allow-ips`: the peers trusted to tell who the client is.

use std::net::IpAddr;

use crate::gateway::Peer;

/// The default list: the proxies on this machine.
pub const DEFAULT_ALLOW: &str = "127.0.0.1,::1";

/// A set of trusted addresses: single IPs, CIDR networks, or every address (`*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowList {
    /// `*`: every peer is trusted.
    Any,
    /// Only peers in one of these networks (a single IP is a /32 or /128 network).
    Networks(Vec<Network>),
}

/// An IP network: an address whose first `prefix` bits are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    address: IpAddr,
    prefix: u8,
}

impl Default for AllowList {
    fn default() -> Self {
        AllowList::parse(DEFAULT_ALLOW).unwrap_or(AllowList::Any)
    }
}

impl AllowList {
    /// Parses a comma-separated list of IPs (`10.1.2.3`, `::1`), networks (`10.0.0.0/8`,
    /// `fd00::/8`) and `*`. Spaces around entries are ignored; an empty list trusts no TCP
    /// peer. Errors name the entry and what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut networks = Vec::new();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if entry == "*" {
                return Ok(AllowList::Any);
            }
            networks.push(Network::parse(entry)?);
        }
        Ok(AllowList::Networks(networks))
    }

    /// Whether `ip` is trusted. An IPv4 address mapped into IPv6 (`::ffff:10.0.0.1`, what
    /// a dual-stack socket reports) matches the IPv4 entries.
    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        match self {
            AllowList::Any => true,
            AllowList::Networks(networks) => {
                let ip = ip.to_canonical();
                networks.iter().any(|network| network.contains(ip))
            }
        }
    }

    /// Whether a connection's peer is trusted. A unix-socket peer always is: only local
    /// processes with access to the socket file can connect, which is how a front server on
    /// the same machine reaches the app.
    pub fn allows_peer(&self, peer: &Peer) -> bool {
        match peer {
            Peer::Tcp(address) => self.allows_ip(address.ip()),
            Peer::Unix => true,
        }
    }
}

impl Network {
    fn parse(entry: &str) -> Result<Self, String> {
        let (address, prefix) = match entry.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (entry, None),
        };
        let address: IpAddr = address.parse().map_err(|_| {
            format!("{entry:?} is not an IP address, a network such as 10.0.0.0/8, or *")
        })?;
        let address = address.to_canonical();
        let bits = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(prefix) => match prefix.parse::<u8>() {
                Ok(prefix) if prefix <= bits => prefix,
                _ => {
                    return Err(format!(
                        "{entry:?}: the prefix length must be a number from 0 to {bits}"
                    ))
                }
            },
        };
        let network = Network { address, prefix };
        if network.masked(address) != address {
            return Err(format!(
                "{entry:?} has bits set after the /{prefix} prefix (did you mean {}/{prefix}?)",
                network.masked(address)
            ));
        }
        Ok(network)
    }

    /// `ip` with the bits after the prefix cleared.
    fn masked(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(v4) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::from((u32::from(v4) & mask).to_be_bytes())
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::from((u128::from(v6) & mask).to_be_bytes())
            }
        }
    }

    fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.address.is_ipv4() && self.masked(ip) == self.address
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_default_trusts_loopback_only() {
        let list = AllowList::default();
        assert!(list.allows_ip(ip("127.0.0.1")));
        assert!(list.allows_ip(ip("::1")));
        assert!(list.allows_ip(ip("::ffff:127.0.0.1")));
        assert!(!list.allows_ip(ip("127.0.0.2")));
        assert!(!list.allows_ip(ip("10.0.0.1")));
        assert!(list.allows_peer(&Peer::Unix));
    }

    #[test]
    fn networks_match_by_prefix() {
        let list = AllowList::parse(" 10.0.0.0/8 , fd00::/8,192.168.1.7").unwrap();
        assert!(list.allows_ip(ip("10.255.1.2")));
        assert!(!list.allows_ip(ip("11.0.0.1")));
        assert!(list.allows_ip(ip("fdab::1")));
        assert!(!list.allows_ip(ip("fe80::1")));
        assert!(list.allows_ip(ip("192.168.1.7")));
        assert!(!list.allows_ip(ip("192.168.1.8")));
        assert!(!list.allows_ip(ip("::1")));
        assert!(AllowList::parse("0.0.0.0/0")
            .unwrap()
            .allows_ip(ip("1.2.3.4")));
        assert!(!AllowList::parse("0.0.0.0/0").unwrap().allows_ip(ip("::2")));
        assert!(AllowList::parse("::/0")
            .unwrap()
            .allows_ip(ip("2001:db8::1")));
    }

    #[test]
    fn star_trusts_everyone_and_empty_no_one() {
        assert_eq!(AllowList::parse("10.0.0.1,*").unwrap(), AllowList::Any);
        assert!(AllowList::Any.allows_ip(ip("203.0.113.9")));
        let none = AllowList::parse("").unwrap();
        assert!(!none.allows_ip(ip("127.0.0.1")));
        assert!(none.allows_peer(&Peer::Unix));
    }

    #[test]
    fn bad_entries_are_named() {
        for (entry, expected) in [
            ("10.0.0", "not an IP address"),
            ("10.0.0.0/33", "from 0 to 32"),
            ("fd00::/129", "from 0 to 128"),
            ("10.0.0.0/x", "prefix length"),
            ("10.0.0.1/8", "did you mean 10.0.0.0/8"),
            ("localhost", "not an IP address"),
        ] {
            let error = AllowList::parse(entry).unwrap_err();
            assert!(error.contains(expected), "{entry}: {error}");
            assert!(error.contains(entry), "{entry}: {error}");
        }
    }
}
