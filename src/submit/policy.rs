//! Relay control and sender checks for the SMTP server — the rules an open-relay test
//! probes (reference §2.3). Pure functions of the config, the client and the address.

use std::net::IpAddr;

use crate::config::Config;
use crate::message::Address;

use super::proto::Reply;

/// Where a recipient goes, or why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RcptDecision {
    Local,
    Remote,
    Reject(Reply),
}

/// Is `ip` in `lan_networks`?
pub fn in_lan(cfg: &Config, ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    };
    cfg.lan_networks.iter().any(|n| n.contains(&ip))
}

/// Names that always exist locally (they reach the postmaster or `aliases`).
const SPECIAL: &[&str] = &["postmaster", "root", "mailer-daemon", "abuse"];

/// Does someone answer to this local address (user name, user address, alias,
/// postmaster)? A `+extension` is ignored.
pub fn is_known_local(cfg: &Config, a: &Address) -> bool {
    let local = a.local.to_ascii_lowercase();
    let base = local.split('+').next().unwrap_or(&local).to_string();
    if SPECIAL.contains(&base.as_str()) || cfg.user(&base).is_some() {
        return true;
    }
    if cfg.aliases.keys().any(|k| k.eq_ignore_ascii_case(&base)) {
        return true;
    }
    let full = format!("{base}@{}", a.domain);
    cfg.users.iter().any(|u| {
        u.addresses
            .iter()
            .any(|x| x.eq_ignore_ascii_case(&full) || x.eq_ignore_ascii_case(&a.key()))
    })
}

/// Decides a `RCPT TO`. `may_relay` = the client is in `lan_networks` or authenticated
/// (or a local `sendmail -bs`).
pub fn check_rcpt(cfg: &Config, raw: &str, may_relay: bool) -> RcptDecision {
    if Address::has_routing_tricks(raw) {
        return RcptDecision::Reject(Reply::new(
            550,
            "5.7.1",
            "Sender-specified routing (%, !, source routes, quoted local parts) is not allowed",
        ));
    }
    let Some(a) = Address::parse(raw) else {
        return RcptDecision::Reject(Reply::new(501, "5.1.3", "Bad recipient address syntax"));
    };
    if a.is_bare() {
        // RFC 5321 allows only <postmaster> without a domain.
        if a.local.eq_ignore_ascii_case("postmaster") {
            return RcptDecision::Local;
        }
        return RcptDecision::Reject(Reply::new(501, "5.1.3", "Recipient address needs a domain"));
    }
    if cfg.is_local_domain(&a.domain) {
        if cfg.submit.reject_unknown_local && !is_known_local(cfg, &a) {
            return RcptDecision::Reject(Reply::new(550, "5.1.1", "No such user here"));
        }
        return RcptDecision::Local;
    }
    if may_relay {
        RcptDecision::Remote
    } else {
        RcptDecision::Reject(Reply::new(554, "5.7.1", "Relay access denied"))
    }
}

/// May `user` (authenticated) send with envelope sender `sender`? Their configured
/// addresses, and their name at any local domain.
pub fn owns_sender(cfg: &Config, user: &str, sender: &str) -> bool {
    let Some(a) = Address::parse(sender) else {
        return false;
    };
    if a.is_bare() {
        return a.local.eq_ignore_ascii_case(user);
    }
    if let Some(u) = cfg.user(user)
        && u.addresses.iter().any(|x| x.eq_ignore_ascii_case(&a.key()))
    {
        return true;
    }
    let base = a.local.split('+').next().unwrap_or("");
    base.eq_ignore_ascii_case(user) && cfg.is_local_domain(&a.domain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn cfg() -> Config {
        Config::from_str_at(
            r#"
hostname = "zolder.thuis"
local_domains = ["zolder.thuis"]
lan_networks = ["192.168.1.0/24", "127.0.0.1/32"]
[[users]]
name = "bouke"
addresses = ["bouke@zolder.thuis", "bouke@provider.nl"]
[aliases]
family = ["bouke"]
"#,
            Path::new("/tmp/z/zolder.toml"),
            false,
        )
        .unwrap()
    }

    #[test]
    fn open_relay_tricks_refused() {
        let c = cfg();
        for t in [
            "user@remote.example",
            "user%remote.example@zolder.thuis",
            "remote.example!user@zolder.thuis",
            "\"user@remote.example\"@zolder.thuis",
            "user@remote.example@zolder.thuis",
            "@zolder.thuis:user@remote.example",
        ] {
            assert!(
                matches!(check_rcpt(&c, t, false), RcptDecision::Reject(_)),
                "{t}"
            );
        }
        assert_eq!(
            check_rcpt(&c, "user@remote.example", true),
            RcptDecision::Remote
        );
        assert!(matches!(
            check_rcpt(&c, "user%remote.example@zolder.thuis", true),
            RcptDecision::Reject(_)
        ));
        assert_eq!(
            check_rcpt(&c, "bouke@zolder.thuis", false),
            RcptDecision::Local
        );
        assert_eq!(
            check_rcpt(&c, "Family@Zolder.Thuis", false),
            RcptDecision::Local
        );
        assert_eq!(check_rcpt(&c, "postmaster", false), RcptDecision::Local);
        match check_rcpt(&c, "nobody@zolder.thuis", true) {
            RcptDecision::Reject(r) => assert_eq!(r.code, 550),
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn lan_and_sender() {
        let c = cfg();
        assert!(in_lan(&c, "192.168.1.7".parse().unwrap()));
        assert!(in_lan(&c, "::ffff:192.168.1.7".parse().unwrap()));
        assert!(!in_lan(&c, "127.0.0.2".parse().unwrap()));
        assert!(owns_sender(&c, "bouke", "bouke@provider.nl"));
        assert!(owns_sender(&c, "bouke", "bouke+x@zolder.thuis"));
        assert!(!owns_sender(&c, "bouke", "sjoerd@zolder.thuis"));
    }
}
