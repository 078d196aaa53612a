//! Who the daemon and the commands run as.
//!
//! `zolder serve` started as root binds its ports (see [`crate::net::listener::prebind`]),
//! then becomes the config's `user` — its uid and primary gid, supplementary groups
//! cleared — before it opens the database, reads mail or talks to the network. As
//! root without `user` it refuses to start unless `allow_root = true`.
//!
//! The one-shot commands that write into `data_dir` (`sendmail`, `flush`, `fetch`,
//! `deliver`) run by root act as the owner of `data_dir` (the `user`, else whoever owns
//! the folder), so root's cron mail never leaves a root-owned 0600 queue file the
//! daemon cannot read.
//!
//! # Security
//! The order is the one setuid programs must keep: `setgroups([])`, `setgid`, `setuid`;
//! afterwards getting root back (`setuid(0)`) must fail, which is checked.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::unistd::{Gid, Uid, User};

use crate::config::Config;

/// A system account to become.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub uid: Uid,
    pub gid: Gid,
}

impl Identity {
    fn from_user(u: User) -> Identity {
        Identity {
            name: u.name,
            uid: u.uid,
            gid: u.gid,
        }
    }

    /// Looks `name` up in the system's user database.
    pub fn lookup(name: &str) -> Result<Identity, String> {
        match User::from_name(name) {
            Ok(Some(u)) => Ok(Identity::from_user(u)),
            Ok(None) => Err(format!(
                "no such system user `{name}` (create it: useradd --system --shell /usr/sbin/nologin {name})"
            )),
            Err(e) => Err(format!("looking up user `{name}`: {e}")),
        }
    }
}

/// What `zolder serve` must do about its identity, decided from the config and the
/// effective uid it was started with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServePlan {
    /// Not root: run as we are.
    AsIs,
    /// Root with `allow_root = true` and no `user`.
    StayRoot,
    /// Root: bind, then become this user.
    DropTo(Identity),
}

/// Decides [`ServePlan`]; `Err` is the refusal to print (exit 77).
pub fn serve_plan(cfg: &Config, euid: Uid) -> Result<ServePlan, String> {
    if !euid.is_root() {
        return Ok(ServePlan::AsIs);
    }
    match &cfg.user {
        Some(name) => {
            let id = Identity::lookup(name).map_err(|e| format!("key `user`: {e}"))?;
            if id.uid.is_root() {
                return Err("key `user` names root; set an unprivileged account".into());
            }
            Ok(ServePlan::DropTo(id))
        }
        None if cfg.allow_root => Ok(ServePlan::StayRoot),
        None => Err(format!(
            "refusing to run as root: set `user = \"zolder\"` in {} (the daemon binds its \
             ports, then becomes that user), or `allow_root = true` to run as root anyway",
            cfg.path.display()
        )),
    }
}

/// Gets `data_dir` ready for `id` while still root: created (mode 0750, owned by `id`)
/// when missing; refused when it belongs to root, which the dropped daemon could not use.
pub fn prepare_data_dir(cfg: &Config, id: &Identity) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let d = &cfg.data_dir;
    match std::fs::metadata(d) {
        Ok(m) if m.uid() == id.uid.as_raw() => Ok(()),
        Ok(m) => Err(format!(
            "{}: owned by uid {}, but the daemon runs as `{}` (fix: chown -R {}: {})",
            d.display(),
            m.uid(),
            id.name,
            id.name,
            d.display()
        )),
        Err(_) => {
            std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o750))
                .map_err(|e| format!("{}: {e}", d.display()))?;
            nix::unistd::chown(d, Some(id.uid), Some(id.gid))
                .map_err(|e| format!("{}: chown: {e}", d.display()))
        }
    }
}

/// Becomes `id` for good: supplementary groups cleared, gid, then uid.
pub fn become_user(id: &Identity) -> Result<(), String> {
    let ctx = |what: &str, e: nix::Error| format!("becoming `{}`: {what}: {e}", id.name);
    nix::unistd::setgroups(&[]).map_err(|e| ctx("setgroups", e))?;
    nix::unistd::setgid(id.gid).map_err(|e| ctx("setgid", e))?;
    nix::unistd::setuid(id.uid).map_err(|e| ctx("setuid", e))?;
    if nix::unistd::setuid(Uid::from_raw(0)).is_ok() || nix::unistd::geteuid().is_root() {
        return Err(format!("becoming `{}`: root could be regained", id.name));
    }
    Ok(())
}

/// For one-shot commands that write into `data_dir`: when run by root, act as the
/// owner of `data_dir` (the config's `user`, else the folder's owner when that is
/// not root). Returns who we became, if anyone.
pub fn act_as_owner(cfg: &Config) -> Result<Option<Identity>, String> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    let id = match &cfg.user {
        Some(n) => Identity::lookup(n)?,
        None => match owner_of(&cfg.data_dir) {
            Some(uid) if !uid.is_root() => match User::from_uid(uid) {
                Ok(Some(u)) => Identity::from_user(u),
                _ => {
                    return Err(format!(
                        "{}: owner uid {uid} has no passwd entry",
                        cfg.data_dir.display()
                    ));
                }
            },
            _ => return Ok(None),
        },
    };
    if id.uid.is_root() {
        return Ok(None);
    }
    become_user(&id)?;
    Ok(Some(id))
}

fn owner_of(p: &Path) -> Option<Uid> {
    std::fs::metadata(p).ok().map(|m| Uid::from_raw(m.uid()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra: &str) -> Config {
        Config::from_str_at(
            &format!("hostname = \"z.test\"\n{extra}"),
            Path::new("/etc/zolder/zolder.toml"),
            false,
        )
        .unwrap()
    }

    #[test]
    fn root_needs_a_user_or_allow_root() {
        let root = Uid::from_raw(0);
        let e = serve_plan(&cfg(""), root).unwrap_err();
        assert!(
            e.contains("refusing to run as root") && e.contains("allow_root = true"),
            "{e}"
        );
        assert!(e.contains("/etc/zolder/zolder.toml"), "{e}");
        assert_eq!(
            serve_plan(&cfg("allow_root = true"), root),
            Ok(ServePlan::StayRoot)
        );
        assert_eq!(
            serve_plan(&cfg(""), Uid::from_raw(1000)),
            Ok(ServePlan::AsIs)
        );
        // `nobody` exists on every Debian system.
        match serve_plan(&cfg("user = \"nobody\""), root).unwrap() {
            ServePlan::DropTo(id) => {
                assert_eq!(id.name, "nobody");
                assert!(!id.uid.is_root());
            }
            p => panic!("{p:?}"),
        }
        let e = serve_plan(&cfg("user = \"no-such-user-zz\""), root).unwrap_err();
        assert!(e.contains("no such system user `no-such-user-zz`"), "{e}");
        assert!(
            serve_plan(&cfg("user = \"root\""), root)
                .unwrap_err()
                .contains("names root")
        );
    }
}
