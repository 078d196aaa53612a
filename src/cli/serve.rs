//! `zolder serve`: run the daemon until SIGTERM/SIGINT.

use std::path::Path;

use super::load_config;

#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(path: &Path, _args: Args) -> anyhow::Result<i32> {
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
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(crate::daemon::run(cfg, path.to_path_buf()))?;
    Ok(super::EX_OK)
}
