//! The command line: one function per subcommand, `anyhow` only at this edge.
//!
//! Exit codes follow sysexits(3) where a caller (cron, fetchmail, procmail) reads them:
//! 0 ok, 64 usage, 65 data error, 67 unknown user, 69 unavailable, 70 software error,
//! 73 can't create, 75 temporary failure, 77 permission denied, 78 config error.

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

use crate::config::Config;

pub mod backup;
pub mod check;
pub mod deliver;
pub mod fetch;
pub mod flush;
pub mod import_fetchmailrc;
pub mod import_mail;
pub mod postdrop;
pub mod quarantine;
pub mod queue;
pub mod sendmail;
pub mod serve;
pub mod status;
pub mod user;

pub const EX_OK: i32 = 0;
pub const EX_USAGE: i32 = 64;
pub const EX_DATAERR: i32 = 65;
pub const EX_NOUSER: i32 = 67;
pub const EX_UNAVAILABLE: i32 = 69;
pub const EX_SOFTWARE: i32 = 70;
pub const EX_OSERR: i32 = 71;
pub const EX_CANTCREAT: i32 = 73;
pub const EX_TEMPFAIL: i32 = 75;
pub const EX_NOPERM: i32 = 77;
pub const EX_CONFIG: i32 = 78;

#[derive(Parser, Debug)]
#[command(
    name = "zolder",
    version,
    about = "The mail server in the attic: fetch, filter, store, serve and send a household's mail",
    after_help = "Example:\n  zolder --config /etc/zolder/zolder.toml check\n  zolder serve\n\nThe config is --config FILE, else $ZOLDER_CONFIG, else ./zolder.toml, else /etc/zolder/zolder.toml."
)]
pub struct Cli {
    /// Config file (default: $ZOLDER_CONFIG, ./zolder.toml, /etc/zolder/zolder.toml)
    #[arg(long, short = 'c', global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the daemon: scheduler, fetchers, IMAP/POP3/SMTP servers, relay timer.
    #[command(
        after_help = "Example:\n  zolder --config examples/zolder.toml serve\n\nSIGTERM/SIGINT drain and exit; SIGHUP reloads the config."
    )]
    Serve(serve::Args),
    /// Validate the config without running anything.
    #[command(
        after_help = "Example:\n  zolder --config /etc/zolder/zolder.toml check\n\nExit 0 when the config is usable, 78 when it has errors."
    )]
    Check(check::Args),
    /// Manage LAN users' passwords.
    #[command(subcommand)]
    User(user::UserCommand),
    /// Deliver one message from stdin to a local user (an MDA for fetchmail/procmail).
    #[command(
        after_help = "Example:\n  zolder deliver --user bouke --from alice@example.org < message.eml\n\nExit codes: 0 delivered, 65 unusable input, 67 unknown user, 73 can't create, 75 try again later."
    )]
    Deliver(deliver::Args),
    /// Index an existing Maildir or mbox into a user's spool.
    #[command(
        name = "import-mail",
        after_help = "Example:\n  zolder import-mail bouke /home/bouke/Maildir\n  zolder import-mail bouke /var/mail/bouke\n\nRunning it twice imports nothing twice."
    )]
    ImportMail(import_mail::Args),
    /// Print the zolder.toml equivalent of a fetchmailrc.
    #[command(
        name = "import-fetchmailrc",
        after_help = "Example:\n  zolder import-fetchmailrc ~/.fetchmailrc >> zolder.toml"
    )]
    ImportFetchmailrc(import_fetchmailrc::Args),
    /// Poll ISP accounts once now, then exit (the dial-up / cron way).
    #[command(
        after_help = "Example:\n  zolder fetch              # every account\n  zolder fetch hccnet-bouke # one account\n\nExit 0 when every account was polled, 75 when any failed temporarily (ISP down,\ndelivery deferred: try again later), 69 when an account needs the admin (TLS\ncertificate refused, login refused), 64 for an unknown account."
    )]
    Fetch(fetch::Args),
    /// Send the outgoing queue to the smarthost now (like `sendmail -q`).
    #[command(after_help = "Example (in /etc/ppp/ip-up.d/zolder):\n  zolder flush")]
    Flush(flush::Args),
    /// The sendmail-compatible injector (also reached as argv[0] = sendmail).
    #[command(
        after_help = "Example:\n  printf 'Subject: hi\\n\\nhello\\n' | zolder sendmail -t root"
    )]
    Sendmail(sendmail::Args),
    /// Show or manage the outgoing queue.
    #[command(after_help = "Example:\n  zolder queue list\n  zolder queue retry 3F2A")]
    Queue(queue::Args),
    /// Show or manage quarantined messages.
    #[command(after_help = "Example:\n  zolder quarantine list\n  zolder quarantine release 12")]
    Quarantine(quarantine::Args),
    /// What every part is doing: accounts, queue, scanners.
    #[command(after_help = "Example:\n  zolder status")]
    Status(status::Args),
    /// Snapshot data_dir while the daemon runs (or check a snapshot with --verify).
    #[command(
        after_help = "Example:\n  zolder backup /srv/backup/zolder --incremental\n  zolder backup --verify /srv/backup/zolder\n\nExit 0 done, 65 a snapshot that does not verify, 73 cannot write DEST."
    )]
    Backup(backup::Args),
    /// Restore a snapshot into an empty data_dir.
    #[command(
        after_help = "Example:\n  zolder restore /srv/backup/zolder/latest\n\nExit 0 restored, 65 the snapshot does not verify, 73 data_dir not empty or not writable."
    )]
    Restore(backup::RestoreArgs),
}

/// Entry point for the binary; returns the process exit code.
pub fn main() -> i32 {
    let argv0 = std::env::args_os()
        .next()
        .map(|a| {
            Path::new(&a)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
        .unwrap_or_default();
    // A setgid execution is the maildrop helper and nothing else, whatever argv[0].
    if nix::unistd::getegid() != nix::unistd::getgid() || argv0 == postdrop::NAME {
        let args: Vec<String> = std::env::args().skip(1).collect();
        return postdrop::main(&args);
    }
    if matches!(argv0.as_str(), "sendmail" | "mailq" | "newaliases") {
        return sendmail::main_compat(&argv0);
    }
    let cli = Cli::parse();
    // The daemon logs at info by default; one-shot commands only warn.
    let daemon_like = matches!(cli.command, Command::Serve(_));
    init_logging(if daemon_like {
        cli.verbose.max(1)
    } else {
        cli.verbose
    });
    let cfg_path = crate::config::locate(cli.config.as_deref());
    let res = match cli.command {
        Command::Serve(a) => serve::run(&cfg_path, a),
        Command::Check(a) => check::run(&cfg_path, a),
        Command::User(a) => user::run(&cfg_path, a),
        Command::Deliver(a) => deliver::run(&cfg_path, a),
        Command::ImportMail(a) => import_mail::run(&cfg_path, a),
        Command::ImportFetchmailrc(a) => import_fetchmailrc::run(&cfg_path, a),
        Command::Fetch(a) => fetch::run(&cfg_path, a),
        Command::Flush(a) => flush::run(&cfg_path, a),
        Command::Sendmail(a) => sendmail::run(&cfg_path, a),
        Command::Queue(a) => queue::run(&cfg_path, a),
        Command::Quarantine(a) => quarantine::run(&cfg_path, a),
        Command::Status(a) => status::run(&cfg_path, a),
        Command::Backup(a) => backup::run(&cfg_path, a),
        Command::Restore(a) => backup::restore(&cfg_path, a),
    };
    match res {
        Ok(code) => code,
        Err(e) => {
            eprintln!("zolder: {e:#}");
            EX_SOFTWARE
        }
    }
}

/// tracing to stderr; `-v`/`-vv` or RUST_LOG choose the level.
pub fn init_logging(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

/// Loads the config, printing a clear error (file, line, key, hint) on failure.
pub fn load_config(path: &Path) -> Result<Config, i32> {
    match Config::load(path) {
        Ok(c) => Ok(c),
        Err(e) => {
            eprintln!("zolder: {e}");
            Err(EX_CONFIG)
        }
    }
}
