//! Address blocks (`ADDR/BITS`) and the `plaintext_from` list's syntax: which
//! peers may speak v1 in clear. A value type of the config, kept apart so the
//! config stays one screenful of types. Imports nothing else of the crate.

use std::net::IpAddr;

/// An address block, `ADDR/BITS` or a bare address (all its bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    bits: u8,
}

impl Cidr {
    /// 127.0.0.0/8 and ::1: the default `plaintext_from`.
    pub fn loopback() -> Vec<Cidr> {
        vec![
            Cidr { addr: IpAddr::from([127, 0, 0, 0]), bits: 8 },
            Cidr { addr: IpAddr::from(std::net::Ipv6Addr::LOCALHOST), bits: 128 },
        ]
    }

    /// True when `ip` is in the block. An IPv4-mapped IPv6 peer (a dual-stack
    /// listener's) is judged as the IPv4 address it is.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let prefix = |a: u128, b: u128, width: u32| {
            let bits = u32::from(self.bits);
            bits == 0 || (a ^ b) >> (width - bits) == 0
        };
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(a), IpAddr::V4(b)) => prefix(u32::from(a).into(), u32::from(b).into(), 32),
            (IpAddr::V6(a), IpAddr::V6(b)) => prefix(u128::from(a), u128::from(b), 128),
            _ => false,
        }
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Cidr, String> {
        let (addr, bits) = match s.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| format!("{s:?} is not an address block (expected ADDR/BITS)"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            None => max,
            Some(b) => match b.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("{s:?}: prefix length must be 0 to {max}")),
            },
        };
        Ok(Cidr { addr, bits })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let full = if self.addr.is_ipv4() { 32 } else { 128 };
        match self.bits == full {
            true => write!(f, "{}", self.addr),
            false => write!(f, "{}/{}", self.addr, self.bits),
        }
    }
}

/// `--plaintext-from`'s value: a block, or `none` for the empty list.
pub fn parse_plaintext_from(s: &str) -> Result<Option<Cidr>, String> {
    if s == "none" {
        Ok(None)
    } else {
        s.parse().map(Some)
    }
}

