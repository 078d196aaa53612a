//! `zolder import-mail USER PATH`: copy an existing Maildir (with its Maildir++
//! folders) or an mbox file into a user's spool and index it — how a household moves
//! over from Dovecot or `/var/mail`, and how large test mailboxes are made quickly.
//!
//! Messages are stored byte for byte (no trace headers), keeping their flags (Maildir
//! info letters and Dovecot keywords; mbox `Status:`/`X-Status:`) and dates (file
//! mtime; the From_ line). Each message is recorded under the delivery key
//! `import:<sha256 of folder and bytes>`, so a second run stores nothing twice.
//! Writing goes through [`Spool::store_batch`] in batches (group commit).

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use sha2::{Digest, Sha256};

use super::{EX_DATAERR, EX_NOUSER, EX_OK, EX_TEMPFAIL, EX_USAGE};
use crate::spool::{self, Flags, Spool, StoreOutcome, StoreRequest, maildir, mbox};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The local user whose spool receives the mail.
    pub user: String,
    /// A Maildir (its `.Folder` subfolders come along) or an mbox file.
    pub path: PathBuf,
    /// Folder for an mbox file, or for the Maildir's top level (default INBOX).
    #[arg(long, value_name = "FOLDER")]
    pub folder: Option<String>,
    /// Messages per transaction.
    #[arg(long, default_value_t = 500, hide = true)]
    pub batch: usize,
}

/// One message to import.
enum Item {
    File {
        folder: String,
        path: PathBuf,
        flags: Flags,
        date: Option<i64>,
    },
    Mbox {
        folder: String,
        offset: u64,
        length: u64,
        date: Option<i64>,
    },
}

pub fn run(config: &Path, args: Args) -> anyhow::Result<i32> {
    let cfg = match super::load_config(config) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    if cfg.user(&args.user).is_none() {
        eprintln!(
            "zolder import-mail: no user `{}` in {} (add a [[users]] entry first)",
            args.user,
            config.display()
        );
        return Ok(EX_NOUSER);
    }
    let spool = Spool::open(&cfg)?;
    let user = spool
        .canonical_user(&args.user)
        .unwrap_or(&args.user)
        .to_string();
    let top = match args
        .folder
        .as_deref()
        .map(spool::normalize_name)
        .transpose()
    {
        Ok(f) => f.unwrap_or_else(|| spool::INBOX.to_string()),
        Err(e) => {
            eprintln!("zolder import-mail: --folder: {e}");
            return Ok(EX_USAGE);
        }
    };
    let src = &args.path;
    let meta = match std::fs::metadata(src) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("zolder import-mail: {}: {e}", src.display());
            return Ok(EX_USAGE);
        }
    };
    if let (Ok(a), Ok(b)) = (
        std::fs::canonicalize(src),
        std::fs::canonicalize(spool.maildir_root(&user)),
    ) && a.starts_with(&b)
    {
        eprintln!(
            "zolder import-mail: {} is {user}'s own Maildir; mail dropped there is indexed when the mailbox is opened",
            src.display()
        );
        return Ok(EX_USAGE);
    }

    let mut items = Vec::new();
    let mbox_file = if meta.is_dir() {
        if !maildir::Maildir::new(src).exists() {
            eprintln!(
                "zolder import-mail: {} is neither a Maildir (no cur/ and new/) nor an mbox file",
                src.display()
            );
            return Ok(EX_USAGE);
        }
        collect_maildir(src, &top, &mut items)?;
        None
    } else {
        let f = std::fs::File::open(src)?;
        let spans = mbox::scan(&f, 0)?;
        if spans.is_empty() && meta.len() > 0 {
            eprintln!(
                "zolder import-mail: {}: no `From ` line found; not an mbox file",
                src.display()
            );
            return Ok(EX_DATAERR);
        }
        for s in spans {
            items.push(Item::Mbox {
                folder: top.clone(),
                offset: s.offset,
                length: s.length,
                date: spool::parse_from_line_date(&s.from_line),
            });
        }
        Some(src.clone())
    };

    let bar = indicatif::ProgressBar::new(items.len() as u64);
    if std::io::stderr().is_terminal() {
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}, eta {eta})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
    } else {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let (mut stored, mut dup, mut failed) = (0u64, 0u64, 0u64);
    for chunk in items.chunks(args.batch.max(1)) {
        let mut reqs = Vec::with_capacity(chunk.len());
        for it in chunk {
            let (folder, bytes, flags, date) = match it {
                Item::File {
                    folder,
                    path,
                    flags,
                    date,
                } => match std::fs::read(path) {
                    Ok(b) => (folder, b, flags.clone(), *date),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        // Expunged by the old server while we ran.
                        bar.inc(1);
                        continue;
                    }
                    Err(e) => {
                        eprintln!("zolder import-mail: {}: {e}", path.display());
                        failed += 1;
                        bar.inc(1);
                        continue;
                    }
                },
                Item::Mbox {
                    folder,
                    offset,
                    length,
                    date,
                } => {
                    let p = mbox_file.as_deref().unwrap_or(src);
                    let b = mbox::read(p, *offset, *length)?;
                    let f = spool::mbox_status_flags(&b);
                    (folder, b, f, *date)
                }
            };
            let mut h = Sha256::new();
            h.update(folder.as_bytes());
            h.update([0]);
            h.update(&bytes);
            let mut r = StoreRequest::new(&user, folder, bytes);
            r.key = Some(format!("import:{}", hex::encode(h.finalize())));
            r.flags = flags;
            r.internal_date = date;
            reqs.push(r);
        }
        let n = reqs.len() as u64;
        for res in spool.store_batch(reqs) {
            match res {
                Ok(StoreOutcome::Stored { .. }) => stored += 1,
                Ok(StoreOutcome::Duplicate) => dup += 1,
                Err(e) => {
                    bar.suspend(|| eprintln!("zolder import-mail: {e}"));
                    failed += 1;
                }
            }
        }
        bar.inc(n);
    }
    bar.finish_and_clear();
    println!(
        "{}: {stored} imported, {dup} already present, {failed} failed",
        src.display()
    );
    Ok(if failed > 0 { EX_TEMPFAIL } else { EX_OK })
}

/// Lists the messages of a Maildir and its `.Folder` subfolders.
fn collect_maildir(root: &Path, top: &str, items: &mut Vec<Item>) -> anyhow::Result<()> {
    let keywords = dovecot_keywords(root);
    let mut folders = vec![(root.to_path_buf(), top.to_string())];
    let mut subs: Vec<_> = std::fs::read_dir(root)?
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            let name = n.strip_prefix('.')?.to_string();
            (maildir::Maildir::new(e.path()).exists() && spool::normalize_name(&name).is_ok())
                .then(|| (e.path(), name))
        })
        .collect();
    subs.sort();
    folders.extend(subs);
    for (dir, folder) in folders {
        let md = maildir::Maildir::new(&dir);
        let mut entries = md.list()?;
        entries.sort_by(|a, b| a.base.cmp(&b.base));
        for e in entries {
            let path = md.dir(e.sub).join(e.file_name());
            let mut flags = Flags::new();
            if let Some(info) = &e.info {
                flags = Flags::from_maildir_info(info);
                for c in info.chars().filter(char::is_ascii_lowercase) {
                    if let Some(k) = keywords.get(&c) {
                        flags.insert(k);
                    }
                }
            }
            let date = std::fs::metadata(&path)
                .ok()
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_secs() as i64);
            items.push(Item::File {
                folder: folder.clone(),
                path,
                flags,
                date,
            });
        }
    }
    Ok(())
}

/// Dovecot's `dovecot-keywords` file: "0 $Junk" means letter 'a' is `$Junk`.
fn dovecot_keywords(root: &Path) -> HashMap<char, String> {
    let mut map = HashMap::new();
    if let Ok(text) = std::fs::read_to_string(root.join("dovecot-keywords")) {
        for line in text.lines() {
            let mut p = line.splitn(2, ' ');
            if let (Some(Ok(i)), Some(k)) = (p.next().map(str::parse::<u8>), p.next())
                && i < 26
            {
                map.insert((b'a' + i) as char, k.trim().to_string());
            }
        }
    }
    map
}
