//! `HOST`, `HOST:PORT`, `[V6]:PORT`, bare IPv6 literals, and nc's separate PORT.

use crate::proto::DEFAULT_PORT;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

fn port(s: &str) -> Result<u16, String> {
    s.parse::<u16>().map_err(|_| format!("bad port \"{s}\""))
}

impl Target {
    /// Parses `spec`; `extra_port` is nc's second argument and may not be
    /// combined with a port inside `spec`.
    pub fn parse(spec: &str, extra_port: Option<&str>) -> Result<Target, String> {
        let (host, inner_port) = if let Some(rest) = spec.strip_prefix('[') {
            let (h, after) = rest.split_once(']').ok_or_else(|| format!("\"{spec}\": missing ]"))?;
            match after {
                "" => (h, None),
                p => (h, Some(p.strip_prefix(':').ok_or_else(|| format!("\"{spec}\": expected :PORT after ]"))?)),
            }
        } else if spec.matches(':').count() > 1 {
            (spec, None) // a bare IPv6 literal
        } else {
            match spec.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (spec, None),
            }
        };
        if host.is_empty() {
            return Err(format!("\"{spec}\": empty host"));
        }
        let port = match (inner_port, extra_port) {
            (Some(_), Some(_)) => return Err(format!("\"{spec}\": port given twice")),
            (Some(p), None) | (None, Some(p)) => port(p)?,
            (None, None) => DEFAULT_PORT,
        };
        Ok(Target { host: host.to_string(), port })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(host: &str, port: u16) -> Target {
        Target { host: host.into(), port }
    }

    #[test]
    fn forms() {
        assert_eq!(Target::parse("127.0.0.1", None), Ok(t("127.0.0.1", 7075)));
        assert_eq!(Target::parse("host:99", None), Ok(t("host", 99)));
        assert_eq!(Target::parse("host", Some("99")), Ok(t("host", 99)));
        assert_eq!(Target::parse("[::1]:7075", None), Ok(t("::1", 7075)));
        assert_eq!(Target::parse("[::1]", Some("8")), Ok(t("::1", 8)));
        assert_eq!(Target::parse("::1", None), Ok(t("::1", 7075)));
        assert_eq!(t("::1", 5).to_string(), "[::1]:5");
        for bad in ["", ":5", "host:x", "host:70000", "[::1", "[::1]5"] {
            assert!(Target::parse(bad, None).is_err(), "{bad:?}");
        }
        assert!(Target::parse("host:1", Some("2")).is_err());
    }
}
