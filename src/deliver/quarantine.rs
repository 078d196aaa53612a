//! The quarantine: messages a scanner caught, held under `data_dir/quarantine/` with
//! their envelope and verdict indexed in the database, and the notice to the
//! postmaster in amavis' spirit ("A virus (X) was found … The message WAS NOT
//! delivered to …").
//!
//! Durability: the file is written to `quarantine/tmp/`, fsynced, renamed into
//! `quarantine/`, the folder fsynced, and only then is the index row committed; the
//! caller may then report the message as taken care of (ISP deletion, `250`). A crash
//! before the commit leaves an orphan file, never a row without a file. A re-fetch of
//! the same message (same delivery key) is quarantined once and notified once.
//!
//! The notice is *returned* as a [`Generated`] for the caller to queue; this module
//! never queues mail. It never notifies the envelope sender (viruses fake senders).
//!
//! Release re-runs delivery through a `Deliver` the caller builds without the scanner
//! that caught the message (`Scanner::without`), with delivery key `quarantine:<id>`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use mail_builder::MessageBuilder;
use mail_builder::headers::raw::Raw;
use mail_builder::mime::MimePart;
use mail_parser::MessageParser;
use tracing::info;

use super::scan::Verdict;
use crate::db::quarantine::{self as qdb, NewQuarantine, QuarantineRow};
use crate::db::{Connection, DbError};
use crate::message::{Envelope, Generated, Incoming, RawMessage, Source};

#[derive(Debug, thiserror::Error)]
pub enum QuarantineError {
    #[error("quarantine {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("quarantine index: {0}")]
    Db(#[from] DbError),
    #[error("quarantine: no message {0}")]
    NotFound(i64),
    #[error("quarantine: message {0} was released already")]
    Released(i64),
}

type Result<T> = std::result::Result<T, QuarantineError>;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> QuarantineError + '_ {
    move |source| QuarantineError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Who gets notices and how the notices are signed.
#[derive(Debug, Clone)]
pub struct NoticeSettings {
    /// This machine's name (`From: Content-filter at <hostname>`).
    pub hostname: String,
    /// The household's mail domain (the first of `local_domains`, else the host name):
    /// a bare postmaster name becomes `name@domain`, the notice comes from
    /// `postmaster@domain`.
    pub domain: String,
    /// The postmaster (a local user or an address).
    pub postmaster: String,
    /// Also tell the local recipients.
    pub notify_recipients: bool,
}

/// The quarantine folder of a data_dir.
#[derive(Debug, Clone)]
pub struct Quarantine {
    dir: PathBuf,
}

/// What [`Quarantine::hold`] did.
#[derive(Debug, Clone)]
pub struct Held {
    pub id: i64,
    /// False when the same delivery key was quarantined before (no new notice).
    pub new: bool,
    /// Notices to queue.
    pub notices: Vec<Generated>,
}

impl Quarantine {
    pub fn new(data_dir: &Path) -> Quarantine {
        Quarantine {
            dir: data_dir.join("quarantine"),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path_of(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// Stores `msg` durably, indexes it, and returns the notices to send.
    pub fn hold(
        &self,
        conn: &Connection,
        msg: &Incoming,
        scanner: &str,
        verdict: &Verdict,
        notice: &NoticeSettings,
    ) -> Result<Held> {
        let key = msg.envelope.idempotency_key.as_deref();
        if let Some(k) = key
            && let Some(id) = qdb::find_by_key(conn, k)?
        {
            return Ok(Held {
                id,
                new: false,
                notices: vec![],
            });
        }
        let file = self.write_durably(&msg.message.bytes)?;
        let parsed = MessageParser::default().parse_headers(&msg.message.bytes);
        let subject = parsed.as_ref().and_then(|m| m.subject()).map(String::from);
        let message_id = parsed
            .as_ref()
            .and_then(|m| m.message_id())
            .map(String::from);
        let reason = match verdict {
            Verdict::Infected(n) | Verdict::Banned(n) => n.clone(),
            v => v.describe(),
        };
        let id = qdb::insert(
            conn,
            &NewQuarantine {
                file: &file,
                sender: msg.envelope.sender.as_deref(),
                recipients: &msg.envelope.recipients,
                source: &source_text(&msg.envelope.source),
                scanner,
                verdict: verdict.kind(),
                reason: &reason,
                size: msg.message.len() as i64,
                subject: subject.as_deref(),
                message_id: message_id.as_deref(),
                idem_key: key,
            },
        )?;
        let Some(id) = id else {
            // Lost a race with another delivery of the same key: ours is redundant.
            let _ = std::fs::remove_file(self.path_of(&file));
            let id = key
                .map(|k| qdb::find_by_key(conn, k))
                .transpose()?
                .flatten()
                .unwrap_or(0);
            return Ok(Held {
                id,
                new: false,
                notices: vec![],
            });
        };
        info!(id, scanner, verdict = verdict.kind(), %reason, "quarantined");
        let _ = crate::db::log_event(
            conn,
            "scan",
            &format!("quarantine {id}"),
            &format!("{scanner}: {}", verdict.describe()),
        );
        let row = qdb::get(conn, id)?.ok_or(QuarantineError::NotFound(id))?;
        let mut notices = vec![build_notice(&row, &msg.message.bytes, notice, false)];
        if notice.notify_recipients {
            notices.push(build_notice(&row, &msg.message.bytes, notice, true));
        }
        Ok(Held {
            id,
            new: true,
            notices,
        })
    }

    /// tmp/ → fsync → rename → fsync dir. Returns the base name.
    fn write_durably(&self, bytes: &[u8]) -> Result<String> {
        let tmp_dir = self.dir.join("tmp");
        std::fs::create_dir_all(&tmp_dir).map_err(io(&tmp_dir))?;
        let name = format!("{}-{:016x}.eml", crate::db::now(), rand::random::<u64>());
        let tmp = tmp_dir.join(&name);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(io(&tmp))?;
        f.write_all(bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        drop(f);
        let dst = self.dir.join(&name);
        std::fs::rename(&tmp, &dst).map_err(io(&dst))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.dir))?;
        Ok(name)
    }

    /// The stored bytes of a quarantined message.
    pub fn read(&self, row: &QuarantineRow) -> Result<Vec<u8>> {
        let p = self.path_of(&row.file);
        std::fs::read(&p).map_err(io(&p))
    }

    /// The message and envelope to deliver for `release`; the key `quarantine:<id>`
    /// makes a repeated release store once.
    pub fn release_incoming(
        &self,
        conn: &Connection,
        id: i64,
    ) -> Result<(QuarantineRow, Incoming)> {
        let row = qdb::get(conn, id)?.ok_or(QuarantineError::NotFound(id))?;
        if row.released.is_some() {
            return Err(QuarantineError::Released(id));
        }
        let bytes = self.read(&row)?;
        let mut env = Envelope::new(
            row.sender.clone(),
            row.recipients.clone(),
            Source::Queue {
                queue_id: format!("quarantine-{id}"),
            },
        );
        env.idempotency_key = Some(format!("quarantine:{id}"));
        Ok((
            row,
            Incoming {
                envelope: env,
                message: RawMessage::new(bytes),
            },
        ))
    }

    /// After a successful release: mark the row and remove the file.
    pub fn finish_release(&self, conn: &Connection, row: &QuarantineRow) -> Result<()> {
        qdb::mark_released(conn, row.id)?;
        let _ = crate::db::log_event(conn, "scan", &format!("quarantine {}", row.id), "released");
        let p = self.path_of(&row.file);
        match std::fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&p)(e)),
        }
    }

    /// Deletes a message and its index row.
    pub fn delete(&self, conn: &Connection, id: i64) -> Result<()> {
        let row = qdb::get(conn, id)?.ok_or(QuarantineError::NotFound(id))?;
        let p = self.path_of(&row.file);
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&p)(e)),
        }
        qdb::delete(conn, id)?;
        let _ = crate::db::log_event(conn, "scan", &format!("quarantine {id}"), "deleted");
        Ok(())
    }
}

fn source_text(s: &Source) -> String {
    match s {
        Source::Fetch { account, .. } => format!("fetch:{account}"),
        Source::Submit { peer, .. } => format!("submit:{peer}"),
        Source::Local { user } => format!("local:{user}"),
        Source::Queue { queue_id } => format!("queue:{queue_id}"),
        Source::Import => "import".into(),
    }
}

/// The header section of a message (up to the first empty line), at most 64 KiB.
fn header_section(bytes: &[u8]) -> &[u8] {
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 2)
        .or_else(|| bytes.windows(2).position(|w| w == b"\n\n").map(|i| i + 1))
        .unwrap_or(bytes.len());
    &bytes[..end.min(64 * 1024)]
}

fn full_address(a: &str, domain: &str) -> String {
    if a.contains('@') {
        a.to_string()
    } else {
        format!("{a}@{domain}")
    }
}

/// The amavis-style notice for `row`, to the postmaster (or, with `to_recipients`, to
/// the local recipients with less detail).
pub fn build_notice(
    row: &QuarantineRow,
    original: &[u8],
    s: &NoticeSettings,
    to_recipients: bool,
) -> Generated {
    let sender = row
        .sender
        .as_deref()
        .map(|x| format!("<{x}>"))
        .unwrap_or_else(|| "<>".into());
    let (what, subject) = match row.verdict.as_str() {
        "infected" => (
            format!("A virus ({}) was found by {}.", row.reason, row.scanner),
            format!("VIRUS ({}) IN MAIL FROM {sender}", row.reason),
        ),
        "banned" => (
            format!(
                "Banned content ({}) was found by the attachment check.",
                row.reason
            ),
            format!(
                "BANNED CONTENTS ALERT ({}) IN MAIL FROM {sender}",
                first_words(&row.reason)
            ),
        ),
        "spam" => (
            format!("Spam ({}) was found by {}.", row.reason, row.scanner),
            format!("SPAM FROM {sender}"),
        ),
        _ => (
            format!(
                "The content filter ({}) held the message: {}.",
                row.scanner, row.reason
            ),
            format!("MAIL HELD BY CONTENT FILTER FROM {sender}"),
        ),
    };
    let rcpts: String = row
        .recipients
        .iter()
        .map(|r| format!("  <{r}>\n"))
        .collect();
    let mut text = format!("{what}\n\nThe message WAS NOT delivered to:\n{rcpts}\n");
    if to_recipients {
        text.push_str(&format!(
            "It is held by the mail server; ask {} if you expected this message\n\
             (quarantine number {}).\n",
            s.postmaster, row.id
        ));
    } else {
        text.push_str(&format!(
            "It is held in the quarantine as number {id} (file {file}).\n\
             To deliver it anyway:   zolder quarantine release {id}\n\
             To delete it:           zolder quarantine delete {id}\n",
            id = row.id,
            file = row.file
        ));
    }
    text.push_str(&format!(
        "\nEnvelope sender: {sender}\nSource: {}\nSubject: {}\nMessage-ID: {}\nSize: {} bytes\n",
        row.source,
        row.subject.as_deref().unwrap_or("(none)"),
        row.message_id
            .as_deref()
            .map(|m| format!("<{m}>"))
            .unwrap_or_else(|| "(none)".into()),
        row.size
    ));
    if !to_recipients {
        text.push_str("\nThe message's header section is attached.\n");
    }
    let from = format!("postmaster@{}", s.domain);
    let (hdr_to, env_to): (Vec<String>, Vec<String>) = if to_recipients {
        (row.recipients.clone(), row.recipients.clone())
    } else {
        (
            vec![full_address(&s.postmaster, &s.domain)],
            vec![s.postmaster.clone()],
        )
    };
    let msg_id = format!(
        "{}.{:08x}.quarantine-{}@{}",
        crate::db::now(),
        rand::random::<u32>(),
        row.id,
        s.hostname
    );
    let mut b = MessageBuilder::new()
        .from((format!("Content-filter at {}", s.hostname), from))
        .to(hdr_to.clone())
        .message_id(msg_id)
        .header("Auto-Submitted", Raw::new("auto-generated"))
        .header("X-Zolder-Quarantine", Raw::new(row.id.to_string()));
    // Plain ASCII subjects stay readable in the raw message (no RFC 2047 words).
    let subject = subject.replace(['\r', '\n'], " ");
    b = if subject.is_ascii() {
        b.header("Subject", Raw::new(subject))
    } else {
        b.subject(subject)
    };
    if to_recipients {
        b = b.text_body(text);
    } else {
        let headers = String::from_utf8_lossy(header_section(original)).into_owned();
        b = b.body(MimePart::new(
            "multipart/mixed",
            vec![
                MimePart::new("text/plain", text),
                MimePart::new("text/rfc822-headers", headers).transfer_encoding("quoted-printable"),
            ],
        ));
    }
    Generated {
        sender: None,
        recipients: env_to,
        bytes: b.write_to_vec().unwrap_or_default(),
        reason: "quarantine-notice".into(),
    }
}

fn first_words(s: &str) -> String {
    let s: String = s.chars().take(60).collect();
    s.replace(['\r', '\n'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::open_memory;

    fn incoming(key: Option<&str>) -> Incoming {
        let mut env = Envelope::new(
            Some("evil@example.org".into()),
            vec!["bouke@zolder.thuis".into()],
            Source::Fetch {
                account: "isp".into(),
                protocol: "pop3".into(),
                host: "pop.example".into(),
            },
        );
        env.idempotency_key = key.map(String::from);
        Incoming {
            envelope: env,
            message: RawMessage::new(
                b"From: evil@example.org\r\nSubject: invoice\r\nMessage-ID: <1@x>\r\n\r\nbody\r\n"
                    .to_vec(),
            ),
        }
    }

    fn settings() -> NoticeSettings {
        NoticeSettings {
            hostname: "zolder.test".into(),
            domain: "thuis.example".into(),
            postmaster: "sjoerd".into(),
            notify_recipients: true,
        }
    }

    #[test]
    fn hold_notice_release_delete() {
        let dir = tempfile::tempdir().unwrap();
        let q = Quarantine::new(dir.path());
        let c = open_memory().unwrap();
        let v = Verdict::Infected("Test.EICAR".into());
        let held = q
            .hold(&c, &incoming(Some("pop3:isp:1")), "clamd", &v, &settings())
            .unwrap();
        assert!(held.new);
        assert_eq!(held.notices.len(), 2);
        let n = String::from_utf8(held.notices[0].bytes.clone()).unwrap();
        assert!(
            n.contains("A virus (Test.EICAR) was found by clamd."),
            "{n}"
        );
        assert!(n.contains("WAS NOT delivered to:"));
        assert!(n.contains("<bouke@zolder.thuis>"));
        assert!(n.contains("Subject: VIRUS (Test.EICAR) IN MAIL FROM <evil@example.org>"));
        assert!(n.contains("Auto-Submitted: auto-generated"));
        assert!(n.contains("text/rfc822-headers"));
        // Addressed in the household's domain, not at the machine's host name.
        assert!(n.contains("To: <sjoerd@thuis.example>"), "{n}");
        assert!(n.contains("<postmaster@thuis.example>"), "{n}");
        assert!(!n.contains("sjoerd@zolder.test"), "{n}");
        assert_eq!(held.notices[0].recipients, ["sjoerd"]);
        assert_eq!(held.notices[0].sender, None);
        assert_eq!(held.notices[1].recipients, ["bouke@zolder.thuis"]);

        // Same delivery key again: no second copy, no second notice.
        let again = q
            .hold(&c, &incoming(Some("pop3:isp:1")), "clamd", &v, &settings())
            .unwrap();
        assert!(!again.new);
        assert_eq!(again.id, held.id);
        assert!(again.notices.is_empty());
        let files: Vec<_> = std::fs::read_dir(q.dir())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().is_file())
            .collect();
        assert_eq!(files.len(), 1);

        let (row, inc) = q.release_incoming(&c, held.id).unwrap();
        assert_eq!(inc.envelope.recipients, ["bouke@zolder.thuis"]);
        assert_eq!(
            inc.envelope.idempotency_key.as_deref(),
            Some("quarantine:1")
        );
        assert!(inc.message.bytes.starts_with(b"From: evil@example.org"));
        q.finish_release(&c, &row).unwrap();
        assert!(matches!(
            q.release_incoming(&c, held.id),
            Err(QuarantineError::Released(_))
        ));

        let other = q
            .hold(
                &c,
                &incoming(None),
                "banned",
                &Verdict::Banned("\"a.exe\": .exe file".into()),
                &settings(),
            )
            .unwrap();
        let n = String::from_utf8(other.notices[0].bytes.clone()).unwrap();
        assert!(n.contains("BANNED CONTENTS ALERT"), "{n}");
        q.delete(&c, other.id).unwrap();
        assert!(matches!(
            q.delete(&c, other.id),
            Err(QuarantineError::NotFound(_))
        ));
    }
}
