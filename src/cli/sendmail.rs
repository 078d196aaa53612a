//! `zolder sendmail` (to be built by its issue).

use std::path::Path;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub rest: Vec<String>,
}

pub fn run(_config: &Path, _args: Args) -> anyhow::Result<i32> {
    anyhow::bail!("`sendmail` is not built yet")
}

/// Called when the binary runs as `sendmail`, `mailq` or `newaliases`.
pub fn main_compat(_argv0: &str) -> i32 {
    eprintln!("sendmail: not built yet");
    super::EX_SOFTWARE
}
