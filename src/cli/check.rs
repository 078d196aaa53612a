//! `zolder check`: load and validate the config, print every problem with file, key
//! and hint. Exit 0 when usable (warnings allowed), 78 otherwise.

use std::path::Path;

use super::{EX_CONFIG, EX_OK};
use crate::config::Config;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Print nothing when the config is fine.
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn run(path: &Path, args: Args) -> anyhow::Result<i32> {
    let cfg = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            println!("error: {e}");
            return Ok(EX_CONFIG);
        }
    };
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let problems = cfg.validate();
    let mut errors = 0;
    for p in &problems {
        let top = p.key.split(['.', '[']).next().unwrap_or("");
        let line = crate::config::key_line(&text, &p.key)
            .or_else(|| crate::config::find_key_line(&text, top))
            .map(|l| format!(":{l}"))
            .unwrap_or_default();
        let what = if p.warning { "warning" } else { "error" };
        if !p.warning {
            errors += 1;
        }
        print!(
            "{what}: {}{line}: key `{}`: {}",
            path.display(),
            p.key,
            p.message
        );
        match &p.hint {
            Some(h) => println!(" (hint: {h})"),
            None => println!(),
        }
    }
    if errors > 0 {
        println!("{}: {errors} error(s)", path.display());
        return Ok(EX_CONFIG);
    }
    if !args.quiet {
        // The same list the daemon binds (web, webs and managesieve included).
        let listening: Vec<String> = crate::service::listen_addrs(&cfg)
            .into_iter()
            .map(|(n, a)| format!("{n} {a}"))
            .collect();
        // Accounts from `fetchmailrc = "…"` count too.
        let accounts = crate::config::fetchmailrc::load_accounts(&cfg)
            .map(|(a, _)| a.len())
            .unwrap_or(cfg.accounts.len());
        println!(
            "{}: ok — {} user(s), {} account(s), data in {}, listening: {}",
            path.display(),
            cfg.users.len(),
            accounts,
            cfg.data_dir.display(),
            if listening.is_empty() {
                "nothing".to_string()
            } else {
                listening.join(", ")
            }
        );
    }
    Ok(EX_OK)
}
