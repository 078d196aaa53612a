//! `zolder import-mail` (to be built by its issue).

use std::path::Path;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Arguments (not yet defined).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub rest: Vec<String>,
}

pub fn run(_config: &Path, _args: Args) -> anyhow::Result<i32> {
    anyhow::bail!("`import-mail` is not built yet")
}
