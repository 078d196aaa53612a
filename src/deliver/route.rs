//! Recipient resolution: which local users (and which remote addresses, through
//! aliases) one envelope recipient stands for.
//!
//! Pure code over the config, no I/O. Order of lookup for an address:
//! 1. not one of our domains: a user's configured outside address
//!    (`bouke@provider.nl`), else a remote address (reachable only through an alias;
//!    given directly to local delivery it is refused);
//! 2. an alias, by full address or by local part (`[aliases] root = ["sjoerd"]`);
//!    an alias may name itself to mean "the user of that name too"
//!    (`bouke = ["bouke", "bouke@gmail.com"]`); any other cycle is a loop and is
//!    refused (5.4.6);
//! 3. a user's configured address, or a user's name (`bouke`, `bouke@zolder.thuis`);
//! 4. `postmaster` without an alias or user of that name → the configured postmaster.

use crate::config::Config;
use crate::message::{Address, RcptOutcome};

/// Where one recipient's copy goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A local user; `delivered_to` is the address for the `Delivered-To:` header.
    Local { user: String, delivered_to: String },
    /// A remote address reached through an alias: the message is forwarded.
    Remote { address: String, alias: String },
}

/// Alias nesting deeper than this is treated as a loop.
const MAX_DEPTH: usize = 16;

/// Resolves one envelope recipient. An error is the recipient's permanent outcome.
pub fn resolve(cfg: &Config, rcpt: &str) -> Result<Vec<Target>, RcptOutcome> {
    let mut out = Vec::new();
    let mut chain = Vec::new();
    expand(cfg, rcpt, &mut chain, &mut out)?;
    // One copy per user and per remote address.
    let mut seen = std::collections::HashSet::new();
    out.retain(|t| {
        seen.insert(match t {
            Target::Local { user, .. } => format!("u:{}", user.to_ascii_lowercase()),
            Target::Remote { address, .. } => format!("r:{}", address.to_ascii_lowercase()),
        })
    });
    Ok(out)
}

fn default_domain(cfg: &Config) -> &str {
    cfg.local_domains
        .first()
        .map(String::as_str)
        .unwrap_or(&cfg.hostname)
}

fn find_alias<'a>(cfg: &'a Config, a: &Address) -> Option<(&'a str, &'a Vec<String>)> {
    let full = a.key();
    let local = a.local.to_ascii_lowercase();
    // A full-address alias wins over a local-part one.
    cfg.aliases
        .iter()
        .find(|(k, _)| k.contains('@') && k.eq_ignore_ascii_case(&full))
        .or_else(|| {
            cfg.aliases
                .iter()
                .find(|(k, _)| !k.contains('@') && k.eq_ignore_ascii_case(&local))
        })
        .map(|(k, v)| (k.as_str(), v))
}

fn expand(
    cfg: &Config,
    addr: &str,
    chain: &mut Vec<String>,
    out: &mut Vec<Target>,
) -> Result<(), RcptOutcome> {
    let Some(a) = Address::parse(addr) else {
        return Err(RcptOutcome::PermFail(
            553,
            format!("5.1.3 <{addr}>: bad address syntax"),
        ));
    };
    if chain.len() > MAX_DEPTH {
        return Err(loop_error(chain, addr));
    }
    let key = a.key();
    let user_with_address = || {
        cfg.users.iter().find(|u| {
            u.addresses
                .iter()
                .filter_map(|x| Address::parse(x))
                .any(|x| x.key() == key)
        })
    };
    // Not one of our domains: a user's outside address, or a forward.
    if !a.is_bare() && !cfg.is_local_domain(&a.domain) {
        if let Some(u) = user_with_address() {
            out.push(Target::Local {
                user: u.name.clone(),
                delivered_to: a.to_string(),
            });
            return Ok(());
        }
        if chain.is_empty() {
            return Err(RcptOutcome::PermFail(
                550,
                format!("5.1.2 <{addr}>: {} is not a local domain", a.domain),
            ));
        }
        out.push(Target::Remote {
            address: a.to_string(),
            alias: chain.last().cloned().unwrap_or_default(),
        });
        return Ok(());
    }
    let local = a.local.to_ascii_lowercase();
    let delivered_to = if a.is_bare() {
        format!("{}@{}", a.local, default_domain(cfg))
    } else {
        a.to_string()
    };
    // Aliases.
    if let Some((name, targets)) = find_alias(cfg, &a) {
        let id = name.to_ascii_lowercase();
        if chain.contains(&id) {
            // `bouke = ["bouke", …]`: the alias names the user of the same name.
            if let Some(u) = cfg.user(&local) {
                out.push(Target::Local {
                    user: u.name.clone(),
                    delivered_to,
                });
                return Ok(());
            }
            return Err(loop_error(chain, addr));
        }
        chain.push(id);
        for t in targets {
            expand(cfg, t, chain, out)?;
        }
        chain.pop();
        return Ok(());
    }
    // A user's address or name.
    if let Some(u) = user_with_address().or_else(|| cfg.user(&local)) {
        out.push(Target::Local {
            user: u.name.clone(),
            delivered_to,
        });
        return Ok(());
    }
    // postmaster is always reachable (RFC 5321 4.5.1).
    if local == "postmaster" && !cfg.postmaster.eq_ignore_ascii_case("postmaster") {
        chain.push("postmaster".into());
        let pm = cfg.postmaster.clone();
        let r = expand(cfg, &pm, chain, out);
        chain.pop();
        return r;
    }
    Err(RcptOutcome::PermFail(
        550,
        format!("5.1.1 <{addr}>: no such user here"),
    ))
}

fn loop_error(chain: &[String], addr: &str) -> RcptOutcome {
    RcptOutcome::PermFail(
        554,
        format!("5.4.6 alias loop: {} → {addr}", chain.join(" → ")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn cfg() -> Config {
        Config::from_str_at(
            r#"
hostname = "zolder.thuis"
data_dir = "/tmp/x"
local_domains = ["zolder.thuis"]
postmaster = "sjoerd"
[[users]]
name = "bouke"
addresses = ["bouke@zolder.thuis", "Bouke@Provider.nl"]
[[users]]
name = "sjoerd"
[aliases]
root = ["sjoerd"]
family = ["bouke", "sjoerd", "oma@elders.nl"]
keepfwd = ["keepfwd", "x@remote.example"]
a = ["b"]
b = ["c"]
c = ["a"]
"bouke" = ["bouke", "bouke@gmail.example"]
"#,
            Path::new("/tmp/zolder.toml"),
            false,
        )
        .unwrap()
    }

    fn users(t: &[Target]) -> Vec<String> {
        t.iter()
            .map(|t| match t {
                Target::Local { user, .. } => user.clone(),
                Target::Remote { address, .. } => format!(">{address}"),
            })
            .collect()
    }

    #[test]
    fn lookups() {
        let c = cfg();
        let r = resolve(&c, "bouke@provider.nl").unwrap();
        assert_eq!(
            r,
            vec![Target::Local {
                user: "bouke".into(),
                delivered_to: "bouke@provider.nl".into()
            }]
        );
        assert_eq!(users(&resolve(&c, "root").unwrap()), ["sjoerd"]);
        assert_eq!(
            users(&resolve(&c, "ROOT@zolder.thuis").unwrap()),
            ["sjoerd"]
        );
        assert_eq!(
            users(&resolve(&c, "family@zolder.thuis").unwrap()),
            ["bouke", ">bouke@gmail.example", "sjoerd", ">oma@elders.nl"]
        );
        assert_eq!(users(&resolve(&c, "postmaster").unwrap()), ["sjoerd"]);
        assert_eq!(
            users(&resolve(&c, "sjoerd").unwrap()),
            ["sjoerd"],
            "a user without an alias"
        );
    }

    #[test]
    fn refusals() {
        let c = cfg();
        assert!(matches!(
            resolve(&c, "nobody"),
            Err(RcptOutcome::PermFail(550, _))
        ));
        assert!(matches!(
            resolve(&c, "someone@remote.example"),
            Err(RcptOutcome::PermFail(550, _))
        ));
        match resolve(&c, "a") {
            Err(RcptOutcome::PermFail(554, m)) => assert!(m.contains("loop"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            resolve(&c, "keepfwd"),
            Err(RcptOutcome::PermFail(554, _))
        ));
        assert!(matches!(
            resolve(&c, "a b"),
            Err(RcptOutcome::PermFail(553, _))
        ));
    }
}
