//! `zolder user add|passwd|list|del|hash`: LAN users' passwords (argon2id in the
//! database). Mail folders are kept on `del` unless `--purge`.

use std::io::{BufRead, IsTerminal};
use std::path::Path;

use clap::Subcommand;

use super::{EX_DATAERR, EX_NOUSER, EX_OK, EX_USAGE, load_config};
use crate::auth::hash_password;
use crate::db;

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Add a user (or set the password of an existing one).
    #[command(
        after_help = "Example:\n  zolder user add bouke\n  echo 'secret' | zolder user add bouke --password-stdin"
    )]
    Add {
        name: String,
        /// Read the password from the first line of stdin instead of prompting.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Change a user's password.
    #[command(after_help = "Example:\n  zolder user passwd bouke")]
    Passwd {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users from the config and the database.
    #[command(after_help = "Example:\n  zolder user list")]
    List,
    /// Remove a user's password (mail is kept unless --purge).
    #[command(
        after_help = "Example:\n  zolder user del bouke\n  zolder user del bouke --purge   # also delete the mail"
    )]
    Del {
        name: String,
        /// Also delete the user's mail folders and index.
        #[arg(long)]
        purge: bool,
    },
    /// Print an argon2id hash for `password_hash` in the config.
    #[command(after_help = "Example:\n  echo 'secret' | zolder user hash --password-stdin")]
    Hash {
        #[arg(long)]
        password_stdin: bool,
    },
}

fn read_password(from_stdin: bool, confirm: bool) -> anyhow::Result<String> {
    if from_stdin || !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        let p = line.trim_end_matches(['\n', '\r']).to_string();
        anyhow::ensure!(!p.is_empty(), "empty password on stdin");
        return Ok(p);
    }
    let p = rpassword::prompt_password("Password: ")?;
    anyhow::ensure!(!p.is_empty(), "empty password");
    if confirm {
        let q = rpassword::prompt_password("Again: ")?;
        anyhow::ensure!(p == q, "the passwords differ");
    }
    Ok(p)
}

pub fn run(path: &Path, cmd: UserCommand) -> anyhow::Result<i32> {
    if let UserCommand::Hash { password_stdin } = cmd {
        let p = read_password(password_stdin, true)?;
        println!("{}", hash_password(&p).map_err(anyhow::Error::msg)?);
        return Ok(EX_OK);
    }
    let cfg = match load_config(path) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let conn = db::open(&cfg.db_path())?;
    match cmd {
        UserCommand::Add {
            name,
            password_stdin,
        }
        | UserCommand::Passwd {
            name,
            password_stdin,
        } => {
            if !crate::config::valid_user_name(&name) {
                eprintln!("zolder: `{name}` is not a valid user name (letters, digits, . - _)");
                return Ok(EX_USAGE);
            }
            if cfg.user(&name).is_none() {
                eprintln!(
                    "zolder: note: `{name}` has no [[users]] entry in {}; add one with its addresses so mail reaches it",
                    path.display()
                );
            }
            let p = match read_password(password_stdin, true) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("zolder: {e}");
                    return Ok(EX_DATAERR);
                }
            };
            let h = hash_password(&p).map_err(anyhow::Error::msg)?;
            db::users::set_password(&conn, &name, Some(&h))?;
            println!("password set for {name}");
            Ok(EX_OK)
        }
        UserCommand::List => {
            let stored = db::users::list(&conn)?;
            println!("{:<16} {:<8} {:<9} addresses", "user", "spool", "password");
            for u in &cfg.users {
                let pw = if stored
                    .iter()
                    .any(|(n, has, _)| n.eq_ignore_ascii_case(&u.name) && *has)
                {
                    "database"
                } else if u.password_hash.is_some() {
                    "config"
                } else {
                    "none"
                };
                println!(
                    "{:<16} {:<8} {:<9} {}",
                    u.name,
                    format!("{:?}", u.spool).to_lowercase(),
                    pw,
                    u.addresses.join(", ")
                );
            }
            for (n, has, _) in stored.iter().filter(|(n, _, _)| cfg.user(n).is_none()) {
                println!(
                    "{:<16} {:<8} {:<9} (not in the config: gets no mail)",
                    n,
                    "-",
                    if *has { "database" } else { "none" }
                );
            }
            Ok(EX_OK)
        }
        UserCommand::Del { name, purge } => {
            let had = db::users::delete(&conn, &name)?;
            if purge {
                let maildir = cfg.data_dir.join("mail").join(&name);
                let mbox = cfg.data_dir.join("spool").join(&name);
                if maildir.exists() {
                    std::fs::remove_dir_all(&maildir)?;
                }
                if mbox.exists() {
                    std::fs::remove_file(&mbox)?;
                }
                db::users::purge_mail_index(&conn, &name)?;
                println!("removed {name} and their mail");
            } else if had {
                println!("removed {name}'s password; mail kept (use --purge to delete it)");
            }
            if !had && !purge {
                eprintln!("zolder: no user `{name}` in the database");
                return Ok(EX_NOUSER);
            }
            Ok(EX_OK)
        }
        UserCommand::Hash { .. } => unreachable!(),
    }
}
