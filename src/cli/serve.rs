//! `zolder serve`: run the daemon until SIGTERM/SIGINT.

use std::path::Path;

use super::load_config;

#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(path: &Path, _args: Args) -> anyhow::Result<i32> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    tune_glibc_malloc();
    let cfg = match load_config(path) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let problems: Vec<_> = cfg.validate().into_iter().filter(|p| !p.warning).collect();
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("zolder: {}: key `{}`: {}", path.display(), p.key, p.message);
        }
        return Ok(super::EX_CONFIG);
    }
    // Who we run as: decided, ports bound and data_dir readied while still root, then
    // the drop — before the database, the mail or the network is touched.
    use crate::service::privilege::{self, ServePlan};
    match privilege::serve_plan(&cfg, nix::unistd::geteuid()) {
        Err(e) => {
            eprintln!("zolder serve: {e}");
            return Ok(super::EX_NOPERM);
        }
        Ok(ServePlan::DropTo(id)) => {
            if let Err(e) = crate::net::listener::prebind(&crate::service::listen_addrs(&cfg)) {
                eprintln!("zolder serve: {e}");
                return Ok(super::EX_UNAVAILABLE);
            }
            if let Err(e) =
                privilege::prepare_data_dir(&cfg, &id).and_then(|()| privilege::become_user(&id))
            {
                eprintln!("zolder serve: {e}");
                return Ok(super::EX_NOPERM);
            }
            tracing::info!(user = %id.name, uid = id.uid.as_raw(), gid = id.gid.as_raw(), "ports bound; running as `{}` from here on", id.name);
        }
        Ok(ServePlan::StayRoot) => {
            tracing::warn!("running as root (allow_root = true); `user = \"zolder\"` is safer")
        }
        Ok(ServePlan::AsIs) => {}
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(crate::service::run(cfg, path.to_path_buf()))?;
    Ok(super::EX_OK)
}

/// glibc malloc settings for a long-running daemon, set through `GLIBC_TUNABLES` by
/// re-executing this binary once (the tunables are read only at program start, and
/// the crate allows no `unsafe` for `mallopt`). `exec` keeps the process id.
///
/// Why: glibc raises its mmap threshold each time a large block is freed, after which
/// big short-lived buffers (argon2's 19 MiB per login, message bodies) come from
/// per-thread heap arenas and stay resident; with tokio's many blocking threads that
/// grew `serve` to hundreds of MiB and ~2.6 MiB per idle IMAP connection
/// (benches/imap-bench.sh). A fixed threshold and two arenas keep it small. Skipped
/// when the environment already sets malloc tunables, or when `exec` fails.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_glibc_malloc() {
    use std::os::unix::process::CommandExt as _;
    // The re-executed process has GLIBC_TUNABLES set, so this runs once.
    if std::env::var_os("GLIBC_TUNABLES").is_some()
        || std::env::vars_os().any(|(k, _)| k.to_string_lossy().starts_with("MALLOC_"))
    {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let err = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(
            "GLIBC_TUNABLES",
            "glibc.malloc.arena_max=2:glibc.malloc.mmap_threshold=131072:glibc.malloc.trim_threshold=1048576",
        )
        .exec();
    tracing::warn!(error = %err, "could not re-execute with malloc tunables; running as is");
}
