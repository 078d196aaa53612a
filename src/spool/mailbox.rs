//! Mailbox management: LIST/STATUS information, CREATE, DELETE, RENAME, SUBSCRIBE,
//! and the user's usage for quota checks.
//!
//! Owns the mailbox rows of the index and the Maildir++ folder directories. It must
//! not read or write messages (that is `message.rs` and `store.rs`) and knows no
//! protocol.
//!
//! # Security
//! Mailbox names come from IMAP clients; every name passes `normalize_name` (no
//! empty levels, no `/`, no leading `.`) before it becomes a path, so a name cannot
//! leave the user's `Maildir/`.

use super::*;

impl Spool {
    pub(super) fn mailbox_row(
        &self,
        conn: &Connection,
        u: &UserEntry,
        name: &str,
    ) -> Result<MailboxRow> {
        dbs::mailbox(conn, &u.name, name)?.ok_or_else(|| SpoolError::NoMailbox {
            user: u.name.clone(),
            mailbox: name.to_string(),
        })
    }

    fn info(conn: &Connection, m: MailboxRow) -> Result<MailboxInfo> {
        let c = dbs::counts(conn, m.id)?;
        Ok(MailboxInfo {
            name: m.name,
            special_use: m.special_use,
            subscribed: m.subscribed,
            uidvalidity: m.uidvalidity,
            uidnext: m.uidnext,
            highestmodseq: m.highestmodseq,
            messages: c.messages,
            unseen: c.unseen,
        })
    }

    /// Every mailbox of `user`, by name, with message and unseen counts (LIST,
    /// LIST-STATUS). Does not sync with the disk; [`select`](Self::select) does.
    pub fn mailboxes(&self, user: &str) -> Result<Vec<MailboxInfo>> {
        let u = self.user(user)?;
        self.prepare_user(&u.name)?;
        let conn = self.conn()?;
        dbs::mailboxes(&conn, &u.name)?
            .into_iter()
            .map(|m| Self::info(&conn, m))
            .collect()
    }

    /// One mailbox's STATUS (no disk sync).
    pub fn status(&self, user: &str, mailbox: &str) -> Result<MailboxInfo> {
        let u = self.user(user)?;
        self.prepare_user(&u.name)?;
        let name = normalize_name(mailbox)?;
        let conn = self.conn()?;
        let m = self.mailbox_row(&conn, &u, &name)?;
        Self::info(&conn, m)
    }

    /// Creates a mailbox (IMAP CREATE).
    pub fn create_mailbox(&self, user: &str, mailbox: &str) -> Result<()> {
        let u = self.user(user)?;
        self.prepare_user(&u.name)?;
        let name = normalize_name(mailbox)?;
        let mut conn = self.conn()?;
        self.create_row(&mut conn, &u, &name, true)?;
        self.notify(&u.name, &name);
        Ok(())
    }

    pub(super) fn create_row(
        &self,
        conn: &mut Connection,
        u: &UserEntry,
        name: &str,
        fail_if_exists: bool,
    ) -> Result<MailboxRow> {
        if let Some(m) = dbs::mailbox(conn, &u.name, name)? {
            if fail_if_exists {
                return Err(SpoolError::MailboxExists {
                    user: u.name.clone(),
                    mailbox: name.to_string(),
                });
            }
            return Ok(m);
        }
        if let Store::Maildir(md) = self.store_of(u, name) {
            md.create(name != INBOX)
                .map_err(|e| SpoolError::io(md.root(), e))?;
            maildir::fsync_dir(&self.maildir_root(&u.name))
                .map_err(|e| SpoolError::io(self.maildir_root(&u.name), e))?;
        }
        let tx = write_tx(&mut *conn)?;
        let m = match dbs::mailbox(&tx, &u.name, name)? {
            Some(m) => m,
            None => dbs::create_mailbox(&tx, &u.name, name, None)?,
        };
        // A subscription kept for the name while it had no mailbox is now the
        // mailbox's own (new mailboxes start subscribed).
        dbs::forget_subscription(&tx, &u.name, name)?;
        dbs::bump_changes(&tx, &u.name)?;
        tx.commit()?;
        Ok(m)
    }

    /// Deletes a mailbox and its messages (IMAP DELETE). INBOX cannot be deleted.
    /// Sub-folders (`Name.Child`) are separate Maildir++ folders and stay.
    pub fn delete_mailbox(&self, user: &str, mailbox: &str) -> Result<()> {
        let u = self.user(user)?;
        self.prepare_user(&u.name)?;
        let name = normalize_name(mailbox)?;
        if name == INBOX {
            return Err(SpoolError::Protected(name));
        }
        let mut conn = self.conn()?;
        let m = self.mailbox_row(&conn, &u, &name)?;
        // Move the folder aside first (atomic), then forget it, then remove it: a crash
        // leaves at worst an ignored `.zolder-deleted…` folder, never half a mailbox.
        let Store::Maildir(md) = self.store_of(&u, &name) else {
            return Err(SpoolError::Protected(name));
        };
        let trash = self
            .maildir_root(&u.name)
            .join(format!(".zolder-deleted.{:016x}", rand::random::<u64>()));
        let moved = match std::fs::rename(md.root(), &trash) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(SpoolError::io(md.root(), e)),
        };
        let tx = write_tx(&mut conn)?;
        dbs::delete_mailbox(&tx, m.id)?;
        if m.subscribed {
            // Subscriptions outlive the mailbox (RFC 3501 §6.3.9).
            dbs::keep_subscription(&tx, &u.name, &name)?;
        }
        dbs::bump_changes(&tx, &u.name)?;
        tx.commit()?;
        if moved && let Err(e) = std::fs::remove_dir_all(&trash) {
            warn!(path = %trash.display(), "removing a deleted mailbox: {e}");
        }
        self.notify(&u.name, &name);
        Ok(())
    }

    /// Renames a mailbox and its sub-folders (IMAP RENAME). Renaming INBOX moves all
    /// its messages into a new mailbox and leaves INBOX empty (RFC 3501 6.3.5).
    pub fn rename_mailbox(&self, user: &str, from: &str, to: &str) -> Result<()> {
        let u = self.user(user)?;
        self.prepare_user(&u.name)?;
        let from = normalize_name(from)?;
        let to = normalize_name(to)?;
        if to == INBOX {
            return Err(SpoolError::MailboxExists {
                user: u.name.clone(),
                mailbox: to,
            });
        }
        if from == INBOX {
            self.create_mailbox(&u.name, &to)?;
            let uids: Vec<u32> = self
                .select(&u.name, INBOX)?
                .messages
                .iter()
                .map(|m| m.uid)
                .collect();
            self.move_messages(&u.name, INBOX, &uids, &to)?;
            return Ok(());
        }
        let mut conn = self.conn()?;
        let all = dbs::mailboxes(&conn, &u.name)?;
        if all.iter().any(|m| m.name == to) {
            return Err(SpoolError::MailboxExists {
                user: u.name.clone(),
                mailbox: to,
            });
        }
        let prefix = format!("{from}.");
        let moving: Vec<&MailboxRow> = all
            .iter()
            .filter(|m| m.name == from || m.name.starts_with(&prefix))
            .collect();
        if !moving.iter().any(|m| m.name == from) {
            return Err(SpoolError::NoMailbox {
                user: u.name.clone(),
                mailbox: from,
            });
        }
        let root = self.maildir_root(&u.name);
        let mut renames = Vec::new();
        for m in &moving {
            let new_name = format!("{to}{}", &m.name[from.len()..]);
            normalize_name(&new_name)?;
            renames.push((m.id, m.name.clone(), new_name));
        }
        for (_, old, new) in &renames {
            let (a, b) = (root.join(format!(".{old}")), root.join(format!(".{new}")));
            if let Err(e) = std::fs::rename(&a, &b)
                && e.kind() != io::ErrorKind::NotFound
            {
                return Err(SpoolError::io(a, e));
            }
        }
        maildir::fsync_dir(&root).map_err(|e| SpoolError::io(&root, e))?;
        let tx = write_tx(&mut conn)?;
        for (id, _, new) in &renames {
            dbs::rename_mailbox(&tx, *id, new)?;
        }
        dbs::bump_changes(&tx, &u.name)?;
        tx.commit()?;
        self.notify(&u.name, &to);
        Ok(())
    }

    /// SUBSCRIBE / UNSUBSCRIBE.
    pub fn subscribe(&self, user: &str, mailbox: &str, subscribed: bool) -> Result<()> {
        let u = self.user(user)?;
        self.prepare_user(&u.name)?;
        let name = normalize_name(mailbox)?;
        let mut conn = self.conn()?;
        let m = dbs::mailbox(&conn, &u.name, &name)?;
        let tx = write_tx(&mut conn)?;
        match m {
            Some(m) => dbs::set_subscribed(&tx, m.id, subscribed)?,
            // A name without a mailbox may be subscribed too (RFC 3501 §6.3.6).
            None if subscribed => dbs::keep_subscription(&tx, &u.name, &name)?,
            None => {
                if !dbs::forget_subscription(&tx, &u.name, &name)? {
                    return Err(SpoolError::NoMailbox {
                        user: u.name.clone(),
                        mailbox: name,
                    });
                }
            }
        }
        tx.commit()
    }

    /// Subscribed names that have no mailbox (LSUB, LIST (SUBSCRIBED)).
    pub fn subscriptions_without_mailbox(&self, user: &str) -> Result<Vec<String>> {
        let u = self.user(user)?;
        let conn = self.conn()?;
        Ok(dbs::kept_subscriptions(&conn, &u.name)?)
    }

    /// What `user`'s mailboxes hold together (bytes and messages), from the index:
    /// quota checks in delivery and IMAP.
    pub fn usage(&self, user: &str) -> Result<crate::db::quota::Usage> {
        let u = self.user(user)?;
        let conn = self.conn()?;
        Ok(crate::db::quota::usage(&conn, &u.name)?)
    }
}
