//! `zolder status`: what every part is doing — fetch accounts (last poll, result,
//! messages fetched, next poll, last error), the outgoing queue, the quarantine,
//! mailboxes and recent events. Read from the database, so it works whether or not the
//! daemon runs; the daemon serves the same report on `[listen] status`.

use std::path::Path;

use super::{EX_OK, load_config};
use crate::db;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Print the report as JSON (the same as the status page's /status.json).
    #[arg(long)]
    pub json: bool,
}

pub fn run(path: &Path, args: Args) -> anyhow::Result<i32> {
    let cfg = match load_config(path) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let conn = db::open(&cfg.db_path())?;
    let report = crate::status::gather(&cfg, &conn)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_text());
    }
    Ok(EX_OK)
}
