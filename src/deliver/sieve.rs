//! Per-user Sieve filtering (RFC 5228 via sieve-rs): `fileinto`, `envelope`, `body`,
//! `variables`, `include`, `extlists`, `vacation`, `redirect`, `reject`, `imap4flags`,
//! `duplicate`, `spamtest`/`virustest`, `regex`, and the rest of what sieve-rs offers
//! except the extensions that would rewrite the stored message or send other mail
//! (`editheader`, `replace`, `enclose`, `convert`, `enotify`, `fcc`).
//!
//! Where things live (all under `data_dir/sieve/`):
//! ```text
//! <user>.sieve                 the user's script
//! before.sieve                 optional global script run first, for every user
//! include/<user>/<name>.sieve  `include :personal "<name>"`
//! global/<name>.sieve          `include :global "<name>"`
//! lists/<user>/<name>          `:list "<name>"`: one entry per line, `#` comments
//! ```
//! Scripts are compiled once and kept while their file's mtime and size stay the same.
//!
//! Never lose mail: a script that does not compile, a missing include, a runtime error
//! (CPU limit, disallowed extension) all end in a plain keep into INBOX, with the error
//! logged and returned in [`SieveOutcome::error`].
//!
//! The global before-script decides alone when it files, discards, redirects or
//! rejects; when it only keeps, the user's script runs next.
//!
//! Mail a script generates (vacation replies, redirects) is returned as
//! [`Generated`]: delivery never queues. Vacation's "replied already" memory
//! (`sieve_duplicates`) is only written by [`SieveOutcome::record`], which the pipeline
//! calls once the message is stored, so a delivery that fails and is retried still
//! answers.
//!
//! **sieve-rs quirk** (0.7.3, observed): a variable first `set` inside an `if` block is
//! empty after the block. Set variables at the top level first (`set "folder" "";`),
//! then assign inside blocks.
//!
//! # Security
//! Scripts are the users' own (written by the admin into data_dir); they run with a CPU
//! limit, at most 3 generated messages and 2 redirects per delivery. Include and list
//! names are restricted to plain file names, so a script cannot read other files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use ::sieve::compiler::grammar::Capability;
use ::sieve::{
    Compiler, Envelope as SieveEnvelope, Event, Input, MatchAs, Recipient, Runtime, Script, Sieve,
    SpamStatus, VirusStatus,
};
use tracing::{debug, warn};

use crate::db::quarantine as qdb;
use crate::db::{self, Connection};
use crate::message::Generated;

/// One thing the script decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SieveAction {
    /// Store in INBOX (or the envelope's folder), with IMAP flags.
    Keep { flags: Vec<String> },
    /// Store in `folder` ('.'-separated hierarchy as in IMAP names), with flags.
    FileInto {
        folder: String,
        flags: Vec<String>,
        create: bool,
    },
    /// Do not store (explicit `discard`).
    Discard,
    /// Refuse the message (`reject`): a permanent failure with this reason.
    Reject(String),
    /// Forwarded to this address (the copy is in [`SieveOutcome::generated`]).
    Redirect(String),
}

/// The result of running a user's scripts over one message.
#[derive(Debug, Clone, Default)]
pub struct SieveOutcome {
    pub actions: Vec<SieveAction>,
    pub generated: Vec<Generated>,
    /// `(id, expires)` to remember for the user once the message is stored.
    pub duplicates: Vec<(String, i64)>,
    /// A script problem (the actions are then a plain keep).
    pub error: Option<String>,
}

impl SieveOutcome {
    /// The fallback: keep in INBOX.
    pub fn keep() -> SieveOutcome {
        SieveOutcome {
            actions: vec![SieveAction::Keep { flags: vec![] }],
            ..Default::default()
        }
    }

    fn failed(error: String) -> SieveOutcome {
        SieveOutcome {
            error: Some(error),
            ..SieveOutcome::keep()
        }
    }

    /// Writes the vacation/duplicate memory. Call after the message is stored.
    pub fn record(&self, conn: &Connection, user: &str) -> db::Result<()> {
        for (id, expires) in &self.duplicates {
            qdb::record_duplicate(conn, user, id, *expires)?;
        }
        Ok(())
    }

    /// True when the only effect is an implicit/explicit keep.
    pub fn is_plain_keep(&self) -> bool {
        self.actions
            .iter()
            .all(|a| matches!(a, SieveAction::Keep { .. }))
    }
}

/// What the script sees about one delivery.
#[derive(Debug, Clone)]
pub struct SieveRequest<'a> {
    /// Local user name (script and list lookup).
    pub user: &'a str,
    /// The user's addresses; the first is the vacation `From:`.
    pub addresses: &'a [String],
    /// Envelope sender; `None` = `<>`.
    pub envelope_from: Option<&'a str>,
    /// The envelope recipient being delivered.
    pub envelope_to: &'a str,
    /// The message as it will be stored (scan headers included).
    pub message: &'a [u8],
    /// `(is_spam, score)` from the scan stage, for `spamtest`.
    pub spam: Option<(bool, f64)>,
    /// `Some(true)` infected, `Some(false)` scanned clean, `None` not scanned.
    pub virus: Option<bool>,
}

#[derive(Clone)]
struct Cached {
    mtime: Option<SystemTime>,
    len: u64,
    script: Result<Arc<Sieve>, String>,
}

/// Compiles, caches and runs the Sieve scripts of a data_dir.
pub struct SieveEngine {
    dir: PathBuf,
    mail_dir: PathBuf,
    compiler: Compiler,
    runtime: Runtime,
    cache: Mutex<HashMap<PathBuf, Cached>>,
}

/// What a script file holds, as far as the engine cares.
enum Loaded {
    Missing,
    Script(Arc<Sieve>),
    Broken(String),
}

fn plain_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 128
        && !n.starts_with('.')
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@' | '+'))
}

impl SieveEngine {
    pub fn new(data_dir: &Path, hostname: &str) -> SieveEngine {
        let runtime = Runtime::new()
            .without_capability(Capability::EditHeader)
            .without_capability(Capability::Replace)
            .without_capability(Capability::Enclose)
            .without_capability(Capability::Convert)
            .without_capability(Capability::Enotify)
            .without_capability(Capability::Fcc)
            .with_local_hostname(hostname.to_string())
            .with_protected_header("Received")
            .with_protected_header("Auto-Submitted")
            .with_max_redirects(2)
            .with_max_out_messages(3)
            .with_cpu_limit(20_000)
            .with_vacation_default_subject("Automated reply");
        SieveEngine {
            dir: data_dir.join("sieve"),
            mail_dir: data_dir.join("mail"),
            compiler: Compiler::new(),
            runtime,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn script_path(&self, user: &str) -> PathBuf {
        self.dir.join(format!("{user}.sieve"))
    }

    /// True when the user has a script or a global before-script exists.
    pub fn applies_to(&self, user: &str) -> bool {
        self.script_path(user).exists() || self.dir.join("before.sieve").exists()
    }

    /// Loads `path`, compiling it only when it changed since last time.
    fn load(&self, path: &Path) -> Loaded {
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Loaded::Missing,
            Err(e) => return Loaded::Broken(format!("{}: {e}", path.display())),
        };
        let (mtime, len) = (meta.modified().ok(), meta.len());
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cache.get(path)
            && c.mtime == mtime
            && c.len == len
        {
            return match &c.script {
                Ok(s) => Loaded::Script(s.clone()),
                Err(e) => Loaded::Broken(e.clone()),
            };
        }
        let script = match std::fs::read(path) {
            Ok(bytes) => self
                .compiler
                .compile(&bytes)
                .map(Arc::new)
                .map_err(|e| format!("{}: {e}", path.display())),
            Err(e) => Err(format!("{}: {e}", path.display())),
        };
        if let Err(e) = &script {
            warn!("sieve script does not compile: {e}");
        } else {
            debug!(path = %path.display(), "sieve script compiled");
        }
        cache.insert(
            path.to_path_buf(),
            Cached {
                mtime,
                len,
                script: script.clone(),
            },
        );
        match script {
            Ok(s) => Loaded::Script(s),
            Err(e) => Loaded::Broken(e),
        }
    }

    /// Runs the global before-script and the user's script. Never fails: problems
    /// end in a keep with [`SieveOutcome::error`] set.
    #[tracing::instrument(name = "sieve", skip_all, fields(user = req.user))]
    pub fn run(&self, conn: &Connection, req: &SieveRequest<'_>) -> SieveOutcome {
        let before = match self.load(&self.dir.join("before.sieve")) {
            Loaded::Missing => return self.run_user(conn, req),
            Loaded::Broken(e) => {
                // A broken global script must not switch off everyone's filters.
                warn!("before.sieve: {e}; running the user's script only");
                return self.run_user(conn, req);
            }
            Loaded::Script(s) => self.execute(conn, req, Script::Global("before".into()), s),
        };
        if let Some(e) = &before.error {
            warn!("before.sieve: {e}; delivering to INBOX");
            return before;
        }
        if !before.is_plain_keep() {
            return before;
        }
        // The before-script only kept: the user's script decides; mail the
        // before-script generated (a vacation, a redirect :copy) still goes.
        let mut user = self.run_user(conn, req);
        let mut generated = before.generated;
        generated.append(&mut user.generated);
        user.generated = generated;
        let mut duplicates = before.duplicates;
        duplicates.append(&mut user.duplicates);
        user.duplicates = duplicates;
        user
    }

    fn run_user(&self, conn: &Connection, req: &SieveRequest<'_>) -> SieveOutcome {
        match self.load(&self.script_path(req.user)) {
            Loaded::Missing => SieveOutcome::keep(),
            Loaded::Broken(e) => {
                warn!(user = req.user, "sieve: {e}; delivering to INBOX");
                SieveOutcome::failed(e)
            }
            Loaded::Script(s) => {
                let out = self.execute(conn, req, Script::Personal(req.user.to_string()), s);
                if let Some(e) = &out.error {
                    warn!(user = req.user, "sieve: {e}; delivering to INBOX");
                }
                out
            }
        }
    }

    fn include_path(&self, user: &str, name: &Script) -> Option<PathBuf> {
        match name {
            Script::Personal(n) if plain_name(n) => Some(
                self.dir
                    .join("include")
                    .join(user)
                    .join(format!("{n}.sieve")),
            ),
            Script::Global(n) if plain_name(n) => {
                Some(self.dir.join("global").join(format!("{n}.sieve")))
            }
            _ => None,
        }
    }

    fn list_contains(&self, user: &str, lists: &[String], values: &[String], how: MatchAs) -> bool {
        for list in lists {
            // Accept a bare name, or a URI whose last segment is the name
            // ("tag:zolder,2025:whitelist" → "whitelist").
            let name = list.rsplit([':', '/']).next().unwrap_or(list);
            if !plain_name(name) {
                continue;
            }
            let p = self.dir.join("lists").join(user).join(name);
            let Ok(text) = std::fs::read_to_string(&p) else {
                debug!(list = %p.display(), "sieve list not found");
                continue;
            };
            for entry in text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
            {
                let hit = values.iter().any(|v| match how {
                    MatchAs::Octet => v == entry,
                    MatchAs::Lowercase => v.eq_ignore_ascii_case(entry),
                    MatchAs::Number => match (v.trim().parse::<f64>(), entry.parse::<f64>()) {
                        (Ok(a), Ok(b)) => a == b,
                        _ => false,
                    },
                });
                if hit {
                    return true;
                }
            }
        }
        false
    }

    fn mailbox_exists(&self, user: &str, name: &str) -> bool {
        name.eq_ignore_ascii_case("INBOX")
            || self
                .mail_dir
                .join(user)
                .join("Maildir")
                .join(format!(".{name}"))
                .is_dir()
    }

    fn execute(
        &self,
        conn: &Connection,
        req: &SieveRequest<'_>,
        name: Script,
        script: Arc<Sieve>,
    ) -> SieveOutcome {
        let now = db::now();
        let user_address = req
            .addresses
            .first()
            .map(String::as_str)
            .unwrap_or(req.envelope_to);
        // sieve-rs parses the message itself: give it the copy whose MIME nesting is
        // bounded (message::mime_limits), so a hostile message cannot blow the stack.
        let parse_input = crate::message::mime_limits::bounded(req.message);
        let mut ctx = self
            .runtime
            .filter(&parse_input)
            .with_envelope(SieveEnvelope::From, req.envelope_from.unwrap_or(""))
            .with_envelope(SieveEnvelope::To, req.envelope_to)
            .with_user_address(user_address)
            .with_spam_status(match req.spam {
                Some((true, _)) => SpamStatus::Spam,
                Some((false, _)) => SpamStatus::Ham,
                None => SpamStatus::Unknown,
            })
            .with_virus_status(match req.virus {
                Some(true) => VirusStatus::Virus,
                Some(false) => VirusStatus::Clean,
                None => VirusStatus::Unknown,
            });
        let mut out = SieveOutcome::default();
        let mut created: HashMap<usize, Vec<u8>> = HashMap::new();
        let mut seen_now: Vec<String> = Vec::new();
        let mut input = Input::script(name, script);
        while let Some(r) = ctx.run(input) {
            input = match r {
                Err(e) => return SieveOutcome::failed(format!("runtime error: {e:?}")),
                Ok(ev) => match ev {
                    Event::IncludeScript { name, optional } => {
                        match self
                            .include_path(req.user, &name)
                            .map(|p| (self.load(&p), p))
                        {
                            Some((Loaded::Script(s), _)) => Input::script(name, s),
                            Some((Loaded::Missing, _)) | None if optional => Input::False,
                            Some((Loaded::Broken(e), _)) => return SieveOutcome::failed(e),
                            Some((Loaded::Missing, p)) => {
                                return SieveOutcome::failed(format!(
                                    "include {}: no such script",
                                    p.display()
                                ));
                            }
                            None => {
                                return SieveOutcome::failed(format!(
                                    "include {name:?}: not a plain script name"
                                ));
                            }
                        }
                    }
                    Event::MailboxExists { mailboxes, .. } => mailboxes
                        .iter()
                        .all(|m| match m {
                            ::sieve::Mailbox::Name(n) => self.mailbox_exists(req.user, n),
                            ::sieve::Mailbox::Id(_) => false,
                        })
                        .into(),
                    Event::ListContains {
                        lists,
                        values,
                        match_as,
                    } => self
                        .list_contains(req.user, &lists, &values, match_as)
                        .into(),
                    Event::DuplicateId { id, expiry, .. } => {
                        let seen = seen_now.contains(&id)
                            || qdb::duplicate_seen(conn, req.user, &id, now).unwrap_or(false);
                        if !seen {
                            seen_now.push(id.clone());
                            out.duplicates.push((id, now + expiry as i64));
                        }
                        seen.into()
                    }
                    Event::Keep { flags, .. } => {
                        out.actions.push(SieveAction::Keep { flags });
                        Input::True
                    }
                    Event::Discard => {
                        out.actions.push(SieveAction::Discard);
                        Input::True
                    }
                    Event::Reject { reason, .. } => {
                        out.actions.push(SieveAction::Reject(reason));
                        Input::True
                    }
                    Event::FileInto {
                        folder,
                        flags,
                        create,
                        ..
                    } => {
                        out.actions.push(SieveAction::FileInto {
                            folder,
                            flags,
                            create,
                        });
                        Input::True
                    }
                    Event::CreatedMessage {
                        message_id,
                        message,
                    } => {
                        created.insert(message_id, message);
                        Input::True
                    }
                    Event::SendMessage {
                        recipient,
                        message_id,
                        ..
                    } => {
                        let to = match recipient {
                            Recipient::Address(a) | Recipient::List(a) => vec![a],
                            Recipient::Group(g) => g,
                        };
                        if let Some(bytes) = created.get(&message_id) {
                            // RFC 3834 §2: never answer a message that was itself
                            // automatic (Auto-Submitted: anything but "no").
                            if auto_submitted(req.message) {
                                tracing::debug!(
                                    user = req.user,
                                    "vacation: no reply to an Auto-Submitted message"
                                );
                            } else {
                                // A message the script made (vacation): from <>, RFC 5230 §5.
                                out.generated.push(Generated {
                                    sender: None,
                                    recipients: to,
                                    bytes: bytes.clone(),
                                    reason: "vacation".into(),
                                });
                            }
                        } else {
                            for a in &to {
                                out.actions.push(SieveAction::Redirect(a.clone()));
                            }
                            // The message itself, unchanged, from the original sender.
                            out.generated.push(Generated {
                                sender: req.envelope_from.map(String::from),
                                recipients: to,
                                bytes: req.message.to_vec(),
                                reason: "redirect".into(),
                            });
                        }
                        Input::True
                    }
                    // No external functions, notifications or envelope changes here.
                    Event::Function { .. } => Input::False,
                    Event::SetEnvelope { .. } | Event::Notify { .. } => Input::True,
                },
            };
        }
        out
    }
}

/// Fuzzing entry (fuzz/ `sieve_input`): `data` as the message a Sieve script runs
/// on, through the same bounded copy delivery uses, with a script that walks every
/// part (`foreverypart`, `body`, `header :mime`). Must never panic nor overflow.
#[doc(hidden)]
pub fn fuzz_input(data: &[u8]) {
    use std::sync::OnceLock;
    static ENGINE: OnceLock<(Runtime, Arc<Sieve>)> = OnceLock::new();
    let (runtime, script) = ENGINE.get_or_init(|| {
        let script = Compiler::new()
            .compile(
                br#"require ["body", "mime", "foreverypart", "fileinto"];
foreverypart { if header :mime :contains "Content-Type" "text" { keep; } }
if body :text :contains "zolder" { fileinto "Junk"; }
if header :contains "subject" "x" { keep; }"#,
            )
            .expect("fuzz script compiles");
        (Runtime::new().with_cpu_limit(20_000), Arc::new(script))
    });
    let input = crate::message::mime_limits::bounded(data);
    let mut ctx = runtime.filter(&input);
    let mut next = Input::script(Script::Personal("fuzz".into()), script.clone());
    while let Some(r) = ctx.run(next) {
        next = match r {
            Err(_) => break,
            Ok(_) => Input::True,
        };
    }
}

/// Does the message carry `Auto-Submitted:` with a value other than `no` (RFC 3834 §5)?
fn auto_submitted(message: &[u8]) -> bool {
    crate::message::headers::get_all(message, "Auto-Submitted")
        .iter()
        .any(|v| {
            let token = v.split(';').next().unwrap_or("").trim();
            !token.is_empty() && !token.eq_ignore_ascii_case("no")
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::open_memory;

    const MAIL: &[u8] = b"From: Oma <oma@family.example>\r\nTo: Bouke <bouke@zolder.thuis>\r\n\
Subject: Hello there\r\nMessage-ID: <m1@family.example>\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\n\
See you on sunday for the invoice party.\r\n";

    struct Fx {
        dir: tempfile::TempDir,
        engine: SieveEngine,
        conn: Connection,
        addrs: Vec<String>,
    }

    fn fx() -> Fx {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("sieve")).unwrap();
        let engine = SieveEngine::new(dir.path(), "zolder.test");
        Fx {
            dir,
            engine,
            conn: open_memory().unwrap(),
            addrs: vec!["bouke@zolder.thuis".into()],
        }
    }

    impl Fx {
        fn write(&self, rel: &str, text: &str) {
            let p = self.dir.path().join("sieve").join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        fn run_from(&self, from: &str, msg: &[u8]) -> SieveOutcome {
            self.engine.run(
                &self.conn,
                &SieveRequest {
                    user: "bouke",
                    addresses: &self.addrs,
                    envelope_from: Some(from),
                    envelope_to: "bouke@zolder.thuis",
                    message: msg,
                    spam: None,
                    virus: None,
                },
            )
        }
        fn run(&self) -> SieveOutcome {
            self.run_from("oma@family.example", MAIL)
        }
    }

    fn fileinto(folder: &str) -> SieveAction {
        SieveAction::FileInto {
            folder: folder.into(),
            flags: vec![],
            create: false,
        }
    }

    #[test]
    fn no_script_keeps() {
        let f = fx();
        assert!(!f.engine.applies_to("bouke"));
        let o = f.run();
        assert_eq!(o.actions, [SieveAction::Keep { flags: vec![] }]);
        assert!(o.error.is_none());
    }

    #[test]
    fn whitelist_list_files_into_trusted() {
        let f = fx();
        f.write(
            "bouke.sieve",
            "require [\"fileinto\", \"extlists\", \"envelope\"];\n\
             if envelope :list \"from\" \"whitelist\" { fileinto \"Trusted\"; }\n",
        );
        f.write(
            "lists/bouke/whitelist",
            "# family\nOma@Family.example\nopa@family.example\n",
        );
        assert_eq!(f.run().actions, [fileinto("Trusted")]);
        let o = f.run_from("stranger@example.net", MAIL);
        assert_eq!(o.actions, [SieveAction::Keep { flags: vec![] }]);
        // Header form too (the maildrop one-liner).
        f.write(
            "bouke.sieve",
            "require [\"fileinto\", \"extlists\"];\n\
             if address :list \"from\" \"whitelist\" { fileinto \"Trusted\"; }\n",
        );
        assert_eq!(f.run().actions, [fileinto("Trusted")]);
    }

    #[test]
    fn syntax_error_keeps_and_says_why() {
        let f = fx();
        f.write(
            "bouke.sieve",
            "require \"fileinto\";\nif header :contains { fileinto \"X\" }\n",
        );
        let o = f.run();
        assert_eq!(o.actions, [SieveAction::Keep { flags: vec![] }]);
        assert!(
            o.error.as_deref().unwrap().contains("bouke.sieve"),
            "{:?}",
            o.error
        );
        // Fixed script: recompiled on change.
        f.write(
            "bouke.sieve",
            "require \"fileinto\";\nfileinto \"Fixed\";\n",
        );
        assert_eq!(f.run().actions, [fileinto("Fixed")]);
    }

    #[test]
    fn vacation_never_answers_auto_submitted_mail() {
        let f = fx();
        f.write(
            "bouke.sieve",
            "require \"vacation\";\nvacation :days 7 \"Away.\";\n",
        );
        for v in [
            "auto-generated",
            "auto-replied",
            "Auto-Notified; owner-email=x@y",
        ] {
            let msg = [format!("Auto-Submitted: {v}\r\n").as_bytes(), MAIL].concat();
            let o = f.run_from("oma@family.example", &msg);
            assert!(o.generated.is_empty(), "{v}: {:?}", o.generated);
            assert_eq!(o.actions, [SieveAction::Keep { flags: vec![] }]);
        }
        let msg = [b"Auto-Submitted: no\r\n".as_slice(), MAIL].concat();
        assert_eq!(f.run_from("oma@family.example", &msg).generated.len(), 1);
    }

    #[test]
    fn vacation_once_per_sender_per_period() {
        let f = fx();
        f.write(
            "bouke.sieve",
            "require \"vacation\";\nvacation :days 7 :subject \"Away\" \"On holiday until monday.\";\n",
        );
        let o = f.run();
        assert_eq!(o.actions, [SieveAction::Keep { flags: vec![] }]);
        assert_eq!(o.generated.len(), 1);
        let g = &o.generated[0];
        assert_eq!(g.reason, "vacation");
        assert_eq!(g.sender, None);
        assert_eq!(g.recipients, ["oma@family.example"]);
        let text = String::from_utf8_lossy(&g.bytes);
        assert!(text.contains("Subject: Away"), "{text}");
        assert!(text.contains("Auto-Submitted: auto-replied"));
        assert!(text.contains("On holiday until monday."));
        assert_eq!(o.duplicates.len(), 1);
        assert!(o.duplicates[0].1 >= db::now() + 7 * 86400 - 5);
        // Not yet recorded (delivery failed?): answers again.
        assert_eq!(f.run().generated.len(), 1);
        o.record(&f.conn, "bouke").unwrap();
        assert!(f.run().generated.is_empty());
        // Another sender gets a reply.
        assert_eq!(f.run_from("opa@family.example", MAIL).generated.len(), 1);
        // After the period: answered again.
        f.conn
            .execute("UPDATE sieve_duplicates SET expires = 1", [])
            .unwrap();
        assert_eq!(f.run().generated.len(), 1);
    }

    #[test]
    fn redirect_reject_discard_flags() {
        let f = fx();
        f.write("bouke.sieve", "redirect \"bouke@elders.example\";\n");
        let o = f.run();
        assert_eq!(
            o.actions,
            [SieveAction::Redirect("bouke@elders.example".into())]
        );
        assert_eq!(o.generated[0].reason, "redirect");
        assert_eq!(o.generated[0].bytes, MAIL);
        assert_eq!(o.generated[0].sender.as_deref(), Some("oma@family.example"));

        f.write(
            "bouke.sieve",
            "require \"reject\";\nreject \"No thanks.\";\n",
        );
        assert_eq!(f.run().actions, [SieveAction::Reject("No thanks.".into())]);

        f.write("bouke.sieve", "discard;\n");
        assert_eq!(f.run().actions, [SieveAction::Discard]);

        f.write(
            "bouke.sieve",
            "require [\"imap4flags\", \"fileinto\"];\naddflag \"\\\\Flagged\";\nfileinto \"Family\";\n",
        );
        assert_eq!(
            f.run().actions,
            [SieveAction::FileInto {
                folder: "Family".into(),
                flags: vec!["\\Flagged".into()],
                create: false
            }]
        );
    }

    #[test]
    fn body_variables_include_and_the_if_quirk() {
        let f = fx();
        f.write("include/bouke/common.sieve", "require \"fileinto\";\nif header :contains \"subject\" \"Hello\" { fileinto \"Greetings\"; }\n");
        f.write(
            "bouke.sieve",
            "require [\"include\", \"body\", \"variables\", \"fileinto\"];\n\
             set \"box\" \"\";\n\
             if body :contains \"invoice\" { set \"box\" \"Invoices\"; }\n\
             if not string :is \"${box}\" \"\" { fileinto \"${box}\"; }\n\
             include :personal \"common\";\n",
        );
        let o = f.run();
        assert!(o.actions.contains(&fileinto("Invoices")), "{:?}", o.actions);
        assert!(
            o.actions.contains(&fileinto("Greetings")),
            "{:?}",
            o.actions
        );
        // Missing non-optional include: keep, with the error.
        f.write(
            "bouke.sieve",
            "require \"include\";\ninclude :personal \"nope\";\n",
        );
        let o = f.run();
        assert!(o.error.is_some());
        assert_eq!(o.actions, [SieveAction::Keep { flags: vec![] }]);
        // Optional: fine.
        f.write(
            "bouke.sieve",
            "require \"include\";\ninclude :optional :personal \"nope\";\n",
        );
        assert!(f.run().error.is_none());
        // Path tricks refused.
        f.write(
            "bouke.sieve",
            "require \"include\";\ninclude :personal \"../../etc\";\n",
        );
        assert!(f.run().error.is_some());
    }

    #[test]
    fn before_script_decides_or_passes() {
        let f = fx();
        f.write("bouke.sieve", "require \"fileinto\";\nfileinto \"Mine\";\n");
        f.write("before.sieve", "require \"fileinto\";\nif header :contains \"subject\" \"SPAM\" { fileinto \"Junk\"; }\n");
        assert_eq!(f.run().actions, [fileinto("Mine")]);
        let spam = b"From: x@example.net\r\nSubject: SPAM offer\r\n\r\nbuy\r\n";
        assert_eq!(
            f.run_from("x@example.net", spam).actions,
            [fileinto("Junk")]
        );
        // A broken before-script does not stop the user's own filtering.
        f.write("before.sieve", "this is not sieve");
        assert_eq!(f.run().actions, [fileinto("Mine")]);
    }

    #[test]
    fn spamtest_sees_scan_result() {
        let f = fx();
        f.write(
            "bouke.sieve",
            "require [\"spamtest\", \"fileinto\", \"relational\", \"comparator-i;ascii-numeric\"];\n\
             if spamtest :value \"ge\" :comparator \"i;ascii-numeric\" \"5\" { fileinto \"Spammy\"; }\n",
        );
        let o = f.engine.run(
            &f.conn,
            &SieveRequest {
                user: "bouke",
                addresses: &f.addrs,
                envelope_from: Some("x@example.net"),
                envelope_to: "bouke@zolder.thuis",
                message: MAIL,
                spam: Some((true, 12.0)),
                virus: Some(false),
            },
        );
        assert_eq!(o.actions, [fileinto("Spammy")], "{:?}", o.error);
    }
}
