//! Mail addresses: splitting, normalising and the checks relay control relies on.

use std::fmt;

/// An address `local@domain` (or a bare local name when `domain` is empty).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Address {
    pub local: String,
    pub domain: String,
}

impl Address {
    /// Parses `local@domain`, `<local@domain>` or a bare `local`. The domain is
    /// lower-cased; the local part is kept as written (RFC 5321 says it is
    /// case-sensitive; lookups lower-case it themselves).
    pub fn parse(s: &str) -> Option<Address> {
        let s = s.trim();
        let s = s.strip_prefix('<').unwrap_or(s);
        let s = s.strip_suffix('>').unwrap_or(s);
        if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return None;
        }
        match s.rfind('@') {
            Some(at) => {
                let (l, d) = (&s[..at], &s[at + 1..]);
                if l.is_empty() || d.is_empty() {
                    return None;
                }
                Some(Address {
                    local: l.to_string(),
                    domain: d.trim_end_matches('.').to_ascii_lowercase(),
                })
            }
            None => Some(Address {
                local: s.to_string(),
                domain: String::new(),
            }),
        }
    }

    pub fn is_bare(&self) -> bool {
        self.domain.is_empty()
    }

    /// Lower-cased `local@domain` for lookups.
    pub fn key(&self) -> String {
        if self.domain.is_empty() {
            self.local.to_ascii_lowercase()
        } else {
            format!("{}@{}", self.local.to_ascii_lowercase(), self.domain)
        }
    }

    /// Relay tricks an open-relay test tries: `%` hacks, `!` bang paths, source
    /// routes (`@a,@b:user@c`), quoted local parts hiding an `@`.
    pub fn has_routing_tricks(raw: &str) -> bool {
        let s = raw.trim().trim_start_matches('<').trim_end_matches('>');
        s.starts_with('@')
            || s.contains('%')
            || s.contains('!')
            || s.contains(':')
            || s.contains('"')
            || s.matches('@').count() > 1
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.domain.is_empty() {
            write!(f, "{}", self.local)
        } else {
            write!(f, "{}@{}", self.local, self.domain)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_forms() {
        let a = Address::parse("<Bouke@Zolder.Thuis>").unwrap();
        assert_eq!(a.local, "Bouke");
        assert_eq!(a.domain, "zolder.thuis");
        assert_eq!(a.key(), "bouke@zolder.thuis");
        assert!(Address::parse("root").unwrap().is_bare());
        assert!(Address::parse("").is_none());
        assert!(Address::parse("a b@c").is_none());
        assert!(Address::parse("@c").is_none());
    }

    #[test]
    fn relay_tricks() {
        for t in [
            "user%remote.example@zolder.thuis",
            "remote.example!user@zolder.thuis",
            "@zolder.thuis:user@remote.example",
            "\"user@remote.example\"@zolder.thuis",
            "user@remote.example@zolder.thuis",
        ] {
            assert!(Address::has_routing_tricks(t), "{t}");
        }
        assert!(!Address::has_routing_tricks("bouke@zolder.thuis"));
    }
}
