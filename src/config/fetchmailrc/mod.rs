//! The fetchmailrc importer: fetchmail 6.4's whole rcfile grammar → zolder accounts plus
//! warnings, and fetchmail's `.fetchids` seen-UID file → per-account seen UIDLs.
//!
//! Owns: [`lexer`] (flex rules and their longest-match quirks), [`parser`] (the yacc
//! grammar and fetchmail's ordering rules), [`convert`] (`defaults` merging, built-in
//! defaults, keyword → account mapping), [`fetchids`] (the UID file). Everything here
//! is pure — text in, result out — except [`load`], which reads the files for
//! `zolder check`, the fetch scheduler and `zolder import-fetchmailrc`. It does not touch
//! the database (`db::fetchids` stores seen UIDs) nor run anything.
//!
//! Every error and warning names the file, the line and the keyword. Keywords the
//! research marks MUST are honoured; SHOULD ones are honoured or mapped; the rest are
//! accepted with a warning. Deliberately accepted although fetchmail 6.4 refuses them:
//! `auth oauthbearer`/`xoauth2`, `passwordfile`/`passwordeval` (distribution builds and
//! fetchmail's `next` branch have them) and `idle` on several accounts or folders
//! (zolder keeps one IDLE connection per account and folder).
//!
//! # Security
//! A fetchmailrc is user input that may hold passwords. Parsing is bounded by the file
//! size ([`load::MAX_RC_BYTES`]); nothing in it is executed here (`preconnect` and
//! friends become argv lists, never shell strings). A file readable by group or others
//! that holds a password is refused, as fetchmail refuses it.

use std::fmt;
use std::path::{Path, PathBuf};

use super::account::AccountConfig;

pub mod ast;
pub mod convert;
pub mod fetchids;
pub mod lexer;
pub mod load;
pub mod netrc;
pub mod parser;

/// Fuzzing entry (fuzz/ `fetchmailrc`): `data` as a fetchmailrc, lexed, parsed and
/// converted. Errors are fine; panics are not.
#[doc(hidden)]
pub fn fuzz_parse(data: &[u8]) {
    let _ = lexer::Lexer::new(data).tokens();
    let opts = Options {
        invoking_user: "fuzz".into(),
        base_dir: PathBuf::from("/nonexistent"),
        hostname: Some("zolder.thuis".into()),
    };
    let _ = parse(data, Path::new("fuzz.fetchmailrc"), &opts);
}

#[cfg(test)]
mod tests;

pub use convert::split_command;
pub use fetchids::{FetchIds, parse_fetchids};
pub use load::{FetchmailrcError, fetchmailrc_stamp, load_accounts, read_fetchmailrc};

/// What the parser needs to know about the world (fetchmail asks the OS; we are told).
#[derive(Debug, Clone)]
pub struct Options {
    /// The user fetchmail would have run as: the default login and local name.
    pub invoking_user: String,
    /// The fetchmailrc's folder; relative paths in it (`passwordfile`, `sslcertfile`,
    /// `set idfile`) resolve against it, as fetchmail's `prependdir` does.
    pub base_dir: PathBuf,
    /// This machine's mail name: an `smtphost` naming it counts as local delivery.
    pub hostname: Option<String>,
}

/// The result of importing a fetchmailrc.
#[derive(Debug, Clone)]
pub struct Import {
    pub accounts: Vec<ImportedAccount>,
    /// Warnings about the file as a whole (`set` statements).
    pub warnings: Vec<Warning>,
    /// `set idfile`, resolved against the file's folder.
    pub idfile: Option<PathBuf>,
    /// `set postmaster`.
    pub postmaster: Option<String>,
    /// `set daemon` in seconds, as written.
    pub daemon: Option<i64>,
    /// The file itself holds a password (`password`, `esmtppassword`).
    pub inline_secret: bool,
}

/// One account and where it came from.
#[derive(Debug, Clone)]
pub struct ImportedAccount {
    pub account: AccountConfig,
    /// Line of its `poll`/`skip` keyword.
    pub line: usize,
    /// The poll name (label) as written.
    pub pollname: String,
    /// The protocol was `auto` (or not given): `account.protocol` is a guess that a
    /// probe of the server may correct.
    pub protocol_guessed: bool,
    /// `.fetchids` key: remote user …
    pub uid_user: String,
    /// … `@` the `via` host, else the poll name.
    pub uid_host: String,
    /// Warnings about this account, in file order.
    pub warnings: Vec<Warning>,
}

impl Import {
    /// Every warning once, file-level ones first (entries share `defaults` lines).
    pub fn all_warnings(&self) -> Vec<Warning> {
        let mut out: Vec<Warning> = Vec::new();
        for w in self
            .warnings
            .iter()
            .chain(self.accounts.iter().flat_map(|a| a.warnings.iter()))
        {
            if !out.contains(w) {
                out.push(w.clone());
            }
        }
        out
    }

    /// Whether the file holds a secret (decides the permission check).
    pub fn has_inline_secret(&self) -> bool {
        self.inline_secret
    }
}

/// Something the importer wants the user to know; never fatal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub file: PathBuf,
    pub line: usize,
    /// The fetchmailrc keyword it concerns (`mda`, `set daemon`, …).
    pub keyword: String,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: `{}`: {}",
            self.file.display(),
            self.line,
            self.keyword,
            self.message
        )
    }
}

/// A fetchmailrc that cannot be used: names the file, the line and the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ParseError {
    pub file: PathBuf,
    pub line: usize,
    /// The token where parsing stopped (`end of input` at the end).
    pub keyword: String,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: at `{}`: {}",
            self.file.display(),
            self.line,
            self.keyword,
            self.message
        )
    }
}

/// Parses fetchmailrc text (as read from `file`, which only names it in messages) into
/// zolder accounts. Passwords written in the file are kept in `account.password`.
pub fn parse(src: &[u8], file: &Path, opts: &Options) -> Result<Import, ParseError> {
    let named = |e: parser::SyntaxError| ParseError {
        file: file.to_path_buf(),
        line: e.line,
        keyword: e.keyword,
        message: e.message,
    };
    let parsed = parser::parse(src).map_err(named)?;
    convert::convert(file, opts, parsed.records, parsed.globals).map_err(named)
}
