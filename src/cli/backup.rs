//! `zolder backup DEST [--incremental]`, `zolder backup --verify SRC` and `zolder
//! restore SRC`: see [`crate::service::backup`].
//!
//! Exit codes: 0 done (or verified), 65 the snapshot does not verify, 73 cannot write
//! DEST or data_dir, 64 usage, 78 config.

use std::path::{Path, PathBuf};

use super::{EX_CANTCREAT, EX_DATAERR, EX_OK, EX_USAGE, load_config};
use crate::service::backup;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The folder of snapshots; a new one is made in it (DEST/<time>, DEST/latest).
    #[arg(value_name = "DEST", required_unless_present = "verify")]
    pub dest: Option<PathBuf>,
    /// Hard-link unchanged files from DEST/latest instead of copying and hashing them.
    #[arg(long)]
    pub incremental: bool,
    /// Check a snapshot (or DEST/latest) against its manifest, and its database.
    #[arg(long, value_name = "SRC", conflicts_with_all = ["dest", "incremental"])]
    pub verify: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct RestoreArgs {
    /// A snapshot, or a folder of snapshots (its `latest` is restored).
    #[arg(value_name = "SRC")]
    pub src: PathBuf,
}

pub fn run(path: &Path, args: Args) -> anyhow::Result<i32> {
    if let Some(src) = args.verify {
        return Ok(verify(&src));
    }
    let cfg = match load_config(path) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let Some(dest) = args.dest else {
        return Ok(EX_USAGE);
    };
    let mut last = std::time::Instant::now();
    let mut progress = |line: &str| {
        if last.elapsed() >= std::time::Duration::from_secs(1) {
            eprintln!("zolder backup: {line}");
            last = std::time::Instant::now();
        }
    };
    match backup::backup(
        &cfg.data_dir,
        &cfg.db_path(),
        &dest,
        args.incremental,
        &mut progress,
    ) {
        Ok(s) => {
            println!(
                "{}: {} files, {} bytes ({} hard-linked, {} copied, {} from the last snapshot)",
                s.snapshot.display(),
                s.files,
                s.bytes,
                s.linked,
                s.copied,
                s.reused
            );
            Ok(EX_OK)
        }
        Err(e) => {
            eprintln!("zolder backup: {e}");
            Ok(EX_CANTCREAT)
        }
    }
}

fn verify(src: &Path) -> i32 {
    let snap = backup::resolve(src);
    match backup::verify(&snap) {
        Ok((problems, n)) if problems.is_empty() => {
            println!(
                "{}: {n} files match the manifest; database sound",
                snap.display()
            );
            EX_OK
        }
        Ok((problems, n)) => {
            for p in &problems {
                eprintln!("zolder backup --verify: {}: {p}", snap.display());
            }
            eprintln!("{} problem(s) in {n} files", problems.len());
            EX_DATAERR
        }
        Err(e) => {
            eprintln!("zolder backup --verify: {e}");
            EX_DATAERR
        }
    }
}

pub fn restore(path: &Path, args: RestoreArgs) -> anyhow::Result<i32> {
    let cfg = match load_config(path) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    // Run by root: the restored files belong to the daemon's user.
    if let Err(e) = crate::service::privilege::act_as_owner(&cfg) {
        eprintln!("zolder restore: {e}");
        return Ok(super::EX_NOPERM);
    }
    let snap = backup::resolve(&args.src);
    match backup::restore(&snap, &cfg.data_dir, &cfg.db_path()) {
        Ok(n) => {
            println!(
                "restored {n} files from {} into {}",
                snap.display(),
                cfg.data_dir.display()
            );
            Ok(EX_OK)
        }
        Err(e) => {
            eprintln!("zolder restore: {e}");
            Ok(if e.contains("does not verify") {
                EX_DATAERR
            } else {
                EX_CANTCREAT
            })
        }
    }
}
